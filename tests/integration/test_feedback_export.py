"""``kbsearch feedback export --beir``: votes → a BEIR folder that ``kbsearch eval --beir`` reads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from kbsearch.feedback import FileFeedbackStore, vote_record
from kbsearch_tools.cli import main
from kbsearch_tools.evaluate import BeirDataset
from tests.conftest import ROOT

SAMPLE = ROOT / "sample-kb"
SNAPSHOT = "en/runbooks/Runbook - restore a Qdrant snapshot.md"
REINDEX = "en/runbooks/Runbook - reindex from scratch.md"
KEYS = "en/runbooks/Runbook - rotate provider keys.md"


def test_export_writes_a_beir_set_that_eval_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    votes = tmp_path / "feedback.jsonl"
    store = FileFeedbackStore(votes)
    # two people liked the snapshot answer; one changed their mind about the reindex answer (last vote wins)
    store.put(vote_record("restore a snapshot", {}, 0, [SNAPSHOT, REINDEX], 1, "up", "alice"))
    store.put(vote_record("restore a snapshot", {}, 0, [SNAPSHOT], 1, "up", "bob"))
    store.put(vote_record("reindex everything", {"tags": ["runbook"]}, 0, [KEYS], 1, "up", "alice"))
    store.put(vote_record("reindex everything", {"tags": ["runbook"]}, 0, [KEYS], 1, "down", "alice"))
    # a tie on one hit is judged not relevant; a deleted note is left out; junk lines are skipped
    store.put(vote_record("rotate keys", {}, 0, [KEYS, "en/gone.md"], 1, "up", "alice"))
    store.put(vote_record("rotate keys", {}, 0, [KEYS], 1, "down", "bob"))
    with votes.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "x", "vote": "maybe", "query": "q", "hits": []}) + "\n\n")
    out = tmp_path / "beir"
    assert main(["feedback", "export", "--beir", str(out), "--kb", str(SAMPLE), "--file", str(votes),
                 "--table", "", "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"votes": 5, "queries": 3, "judgements": 4, "relevant": 2, "documents": summary["documents"],
                       "unknown_paths": 1, "skipped_votes": 1, "skipped_notes": summary["skipped_notes"]}  # fmt: skip
    assert summary["documents"] >= 30 and summary["skipped_notes"] >= 1  # sample-kb has a broken note on purpose

    with (out / "qrels" / "test.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows[0] == ["query-id", "corpus-id", "score"]
    queries = {json.loads(line)["_id"]: json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()}
    by_text = {q["text"]: q for q in queries.values()}
    judged = {(by_text_id, path): int(score) for by_text_id, path, score in rows[1:]}
    snapshot_q, reindex_q, keys_q = (
        by_text[t]["_id"] for t in ("restore a snapshot", "reindex everything", "rotate keys")
    )
    assert judged == {(snapshot_q, SNAPSHOT): 1, (snapshot_q, REINDEX): 1, (reindex_q, KEYS): 0, (keys_q, KEYS): 0}
    assert by_text["reindex everything"]["metadata"] == {"filters": {"tags": ["runbook"]}}
    corpus = [json.loads(line) for line in (out / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    snapshot_doc = next(d for d in corpus if d["_id"] == SNAPSHOT)
    assert snapshot_doc["title"] and "---" not in snapshot_doc["text"][:3]  # the body, without its frontmatter

    dataset = BeirDataset.load(out)  # what `kbsearch eval --beir` reads
    relevant = {q.query: set(q.relevant) for q in dataset.queries}
    assert relevant == {"restore a snapshot": {SNAPSHOT, REINDEX}, "reindex everything": set(), "rotate keys": set()}

    assert main(["eval", "--beir", str(out), "--phases", "lexical", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["queries"] == 3 and report["index"]["notes"] == summary["documents"]
    assert report["phases"]["lexical"]["MRR@10"] > 0  # the liked snapshot runbook is found for its question


def test_export_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty_kb = tmp_path / "kb"
    empty_kb.mkdir()
    (tmp_path / "none.jsonl").write_text("")  # no votes yet (a votes file that is not there is an error of its own)
    code = main(["feedback", "export", "--beir", str(tmp_path / "o"), "--kb", str(empty_kb), "--file",
                 str(tmp_path / "none.jsonl"), "--table", ""])  # fmt: skip
    assert code == 2 and "no readable notes" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    code = main(["feedback", "export", "--beir", str(tmp_path / "o"), "--kb", str(SAMPLE), "--file", str(bad),
                 "--table", ""])  # fmt: skip
    assert code == 2 and "bad.jsonl:1: not a JSON vote" in capsys.readouterr().err


def test_export_from_dynamodb_votes_and_an_s3_kb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What a deployment has: the votes in SlackFeedbackTable, the KB in S3 (moto)."""
    import boto3
    from moto import mock_aws

    from kbsearch.feedback import DynamoFeedbackStore

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        for path in (SNAPSHOT, REINDEX, KEYS):
            s3.put_object(Bucket="kb-notes", Key=f"notes/{path}", Body=(SAMPLE / path).read_bytes())
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="votes", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")  # fmt: skip
        DynamoFeedbackStore("votes", ddb).put(vote_record("snapshot", {}, 0, [SNAPSHOT, KEYS], 1, "down", "h"))
        out = tmp_path / "beir"
        assert main(["feedback", "export", "--beir", str(out), "--kb", "s3://kb-notes/notes", "--table", "votes",
                     "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert (summary["votes"], summary["documents"], summary["judgements"], summary["relevant"]) == (1, 3, 2, 0)
    dataset = BeirDataset.load(out)
    assert [(q.query, set(q.relevant)) for q in dataset.queries] == [("snapshot", set())]
    assert set(dataset.corpus) == {SNAPSHOT, REINDEX, KEYS}
