"""Round 33 (rel33): the reliability debts round 32 left, through the real interfaces.

1. A run whose end comes while a window of chunks is being embedded: the scheduled indexer handler on moto's S3 and
   DynamoDB, the embedded Qdrant, the DeepInfra fake on loopback answering the first embedding requests and hanging
   on the next one past the Lambda's end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.qdrant import open_store
from kbsearch_tools.fakes import FakeProvider, provider_env
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.s3events import EventPath, sqs_event
from tests.integration.test_events import BUCKET, PREFIX, TABLE, load_indexer
from tests.integration.test_rel31 import aws, cloud_env  # noqa: F401 (fixtures)
from tests.integration.test_rel32 import Deployed, deployed  # noqa: F401 (fixture)

NOTES = 6  # one chunk each: n0.md .. n5.md


def indexed(settings: Settings) -> list[str]:
    """The paths the index holds a chunk of, with the dense vectors they hold."""
    store = open_store(settings, Secrets(settings))
    try:
        return sorted(p for p, st in store.indexed_state().items() if st.points)
    finally:
        store.close()


def one_chunk_a_request(aws: EventPath, tmp_path: Path, notes: dict[str, str], **env: str) -> dict[str, str]:  # noqa: F811
    """``notes`` (name: text) put in the bucket, after its notification set-up; the indexer's settings for it that
    embed one chunk a request, 64 dimensions, nothing sent again and the breaker out of the way, ``env`` added
    (the provider's are the caller's)."""
    aws.receive()  # (the bucket's notification set-up: no note's)
    for name, text in notes.items():
        aws.put(f"{PREFIX}{name}", text.encode())
    return {
        "KB_SOURCE": f"s3://{BUCKET}/{PREFIX}", "QDRANT_PATH": str(tmp_path / "q"), "INDEX_LEASE_TABLE": TABLE,
        "EMBEDDING_DIMENSIONS": "64", "PROVIDER_RETRIES": "0", "BREAKER_THRESHOLD": "100", "EMBEDDING_BATCH_SIZE": "1",
    } | env  # fmt: skip


def cut_after(
    aws: EventPath,  # noqa: F811
    deepinfra: FakeProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    answered: int,
) -> tuple[Any, Settings]:
    """n0.md .. n5.md put in the bucket; the indexer handler embedding one chunk a request, four chunks a window;
    the fake answering ``answered`` embedding requests, then hanging past any invocation's end (8 s)."""
    notes = {f"n{i}.md": f"# Note {i}\n\nwords of note number {i}\n" for i in range(NOTES)}
    env = one_chunk_a_request(aws, tmp_path, notes, EMBEDDING_CONCURRENCY="1", DEADLINE_MARGIN_S="1") | provider_env(
        deepinfra, roles=("EMBEDDING",)
    )
    deepinfra.fail("embeddings", hang_s=8.0, after=answered)
    return load_indexer(monkeypatch, env), Settings(
        **{k.lower(): v for k, v in env.items()} | {"index_lease_table": ""}
    )


@pytest.mark.parametrize(
    ("answered", "written"),
    [(2, ["n0.md", "n1.md"]), (5, ["n0.md", "n1.md", "n2.md", "n3.md", "n4.md"])],
    ids=["window embedded ahead", "last window"],
)
def test_a_run_whose_end_comes_mid_embedding_writes_what_was_embedded_and_leaves_the_rest_to_the_next_run(
    aws: EventPath,  # noqa: F811
    deepinfra: FakeProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    answered: int,
    written: list[str],
) -> None:
    """One chunk a request, four a window: n0..n3 are embedded in a thread while n4, n5 are read, then n4, n5.
    The fake answers ``answered`` requests and hangs on the next one past the Lambda's end (its calls' deadline,
    the invocation's end less 5 s). Before, the window being embedded was dropped whole, the notes embedded in it
    too, and the run said ``embedding failed`` (the handler raised: the invocation failed, and went to the alarmed
    failure queue). Now the notes whose every chunk was embedded are written; the others, read and not written, are
    left for the next run, which reads them (and only them) again; the summary says so."""
    app, settings = cut_after(aws, deepinfra, tmp_path, monkeypatch, answered)
    aws.receive()  # (the events lost: the scheduled run finds the notes)
    # 9 s: the calls' deadline 4 s in, when every note is long read and the fake hangs on request answered + 1
    report: dict[str, Any] = app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 9))
    assert report["error"] is None and report["incomplete"], report
    assert report["added"] == len(written) and report["remaining"] == NOTES - len(written), report
    assert report["unwritten"] == (
        f"{NOTES - len(written)} notes read and not written: their embedding did not finish before the run's end; "
        "the next run reads them again"
    ), report
    assert indexed(settings) == written
    deepinfra.heal()
    before = len(deepinfra.calls("embeddings"))
    again: dict[str, Any] = app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 900))
    assert again["added"] == NOTES - len(written) and again["unchanged"] == len(written), again
    assert not again["incomplete"] and again["unwritten"] is None, again
    assert len(deepinfra.calls("embeddings")) - before == NOTES - len(written)  # what was written is not embedded again
    assert indexed(settings) == [f"n{i}.md" for i in range(NOTES)]


def test_an_event_batch_cut_mid_embedding_gives_back_only_the_events_of_the_notes_it_did_not_write(
    aws: EventPath,  # noqa: F811
    deepinfra: FakeProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same cut in an SQS batch of the six notes' S3 events: the window n0..n3 is cut after n0 and n1 were
    embedded. Before, none was written and all six events were given back (the next delivery embedded n0 and n1
    again); now n0 and n1 are written and only the other four events are given back, which the retry applies."""
    app, settings = cut_after(aws, deepinfra, tmp_path, monkeypatch, answered=2)
    records = aws.receive()
    assert len(records) == NOTES
    result = app.lambda_handler(sqs_event(records), LambdaContext("kb-search-test-indexer", 2048, 9))
    failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
    assert len(failed) == NOTES - 2 and indexed(settings) == ["n0.md", "n1.md"], (failed, indexed(settings))
    deepinfra.heal()
    before = len(deepinfra.calls("embeddings"))
    retry = [r for r in records if r["messageId"] in failed]
    assert app.lambda_handler(sqs_event(retry), LambdaContext("kb-search-test-indexer", 2048, 900)) == {
        "batchItemFailures": []
    }
    assert indexed(settings) == [f"n{i}.md" for i in range(NOTES)]
    assert len(deepinfra.calls("embeddings")) - before == NOTES - 2


def test_a_re_read_cut_mid_embedding_writes_what_needs_nothing_and_its_progress_stops_at_the_first_unwritten_note(
    aws: EventPath,  # noqa: F811
    deepinfra: FakeProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full sync reading every note again for a new reading (the collection records reading 2), n0..n3 edited
    since: the edits go first, a window n0..n3 cut after n0 and n1 were embedded, while n4 and n5 (read again, their
    text unchanged: every chunk keeps its vector) were gathered. n0, n1, n4 and n5 are written; the progress stops
    before n2 (the first note read and not written), so the next run reads n2 and n3 (their edits) and, after the
    progress, n4 and n5 again, embeds only n2 and n3, and records the reading."""
    from kbsearch.markdown import PARSE_VERSION
    from kbsearch.qdrant.query import NOTES_READING
    from tests.integration.test_review26 import metadata

    app, settings = cut_after(aws, deepinfra, tmp_path, monkeypatch, answered=0)
    deepinfra.heal()
    aws.receive()
    assert app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 900))["added"] == NOTES
    for i in range(4):
        aws.put(f"{PREFIX}n{i}.md", f"# Note {i}\n\nedited words of note {i}\n".encode())
    aws.receive()
    store = open_store(settings, Secrets(settings))
    try:
        store.merge_metadata({NOTES_READING: 2})
    finally:
        store.close()
    deepinfra.fail("embeddings", hang_s=8.0, after=2)
    report: dict[str, Any] = app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 9))
    assert report["error"] is None and report["updated"] == 4 and report["remaining"] == 2, report
    assert report["notes_reading"] == (
        f"re-reading notes for reading {PARSE_VERSION}: 2 of {NOTES}; the next sync carries on"
    ), report
    assert metadata(settings)["notes_reading_from"]["after"] == "n1.md"
    deepinfra.heal()
    before = len(deepinfra.calls("embeddings"))
    again: dict[str, Any] = app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 900))
    assert again["updated"] == 4 and not again["incomplete"], again
    assert len(deepinfra.calls("embeddings")) - before == 2
    assert metadata(settings)[NOTES_READING] == PARSE_VERSION


#: 2. rev32b's CommonMark gaps in ``markdown.read_body``: in each note a ``%%`` in code (a batch file's ``%%1``)
#: that main read as prose, where it opens an Obsidian comment hiding the rest of the note, or a heading in code
GAPS = {
    # a closing fence indented four columns is the code's text
    "fence.md": "# Deploy\n\n```\nrun step\n    ```\n## Inside the code\nquokka in the code\n```\n\n## Real\n\nreal\n",
    # a fence quoted more deeply than the block's opening is the code's text
    "quoted.md": "# Batch\n\n> ```bat\n> > ```\n> set X=%%1\n> ```\n\n## After\n\nnumbat after the quote\n",
    # a list in a quote, a thematic break, a $$ block, an HTML comment: the list ended, indented code is code
    "quoted-list.md": "# Steps\n\n> - quoted item\n\n    set X=%%1\n\n## After\n\nwombat after the code\n",
    "break.md": "# Break\n\n- item\n\n* * *\n\n    set X=%%1\n\n## After\n\ndingo after the code\n",
    "math.md": "# Math\n\n- item\n\n$$\nx^2\n$$\n\n    set X=%%1\n\n## After\n\nbilby after the code\n",
    "comment.md": "# Comment\n\n- item\n\n<!--\nnote\n-->\n\n    set X=%%1\n\n## After\n\npotoroo after the code\n",
}


def test_code_commonmark_reads_as_code_is_indexed_as_code_and_an_older_reading_is_read_again(tmp_path: Path) -> None:
    """From moto's S3 to the embedded Qdrant, then the search service: each note's text after its code is found
    under its own heading (main: lost behind the ``%%`` it read as a comment's start, or filed under a heading
    inside the code). A collection recording the reading before this round (3) is read again by the next sync."""
    from kbsearch.markdown import PARSE_VERSION
    from tests.integration.test_lines32 import found, sync_s3
    from tests.integration.test_notes_graph import write_kb

    kb = write_kb(tmp_path / "kb", GAPS)
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    assert sync_s3(kb, settings).added == len(GAPS)
    assert found(settings, "quokka")[:1] == [("fence.md", "Deploy")]
    for path, word in [("quoted.md", "numbat"), ("quoted-list.md", "wombat"), ("break.md", "dingo"),
                       ("math.md", "bilby"), ("comment.md", "potoroo")]:  # fmt: skip
        title = GAPS[path].split("\n", 1)[0][2:]
        assert found(settings, word)[:1] == [(path, f"{title} > After")], path
    assert PARSE_VERSION >= 4
    read_again_after(3, kb, settings, len(GAPS))  # what a kb-search of round 32 recorded


def read_again_after(older: int, kb: Path, settings: Settings, notes: int) -> None:
    """A collection recording the reading ``older`` (a kb-search before today's): the next sync of ``kb`` from S3
    reads all its ``notes`` again and records today's reading; the sync after it reads none."""
    from kbsearch.markdown import PARSE_VERSION
    from kbsearch.qdrant.query import NOTES_READING
    from tests.integration.test_lines32 import sync_s3
    from tests.integration.test_review26 import metadata

    store = open_store(settings, Secrets(settings))
    try:
        store.merge_metadata({NOTES_READING: older})
    finally:
        store.close()
    again = sync_s3(kb, settings)
    assert again.updated == notes and metadata(settings)[NOTES_READING] == PARSE_VERSION, again
    assert sync_s3(kb, settings).unchanged == notes


def quokka_under_and_read_again(tmp_path: Path, body: str, heading: str, older: int) -> None:
    """The note ``steps.md`` of ``body`` indexed from S3: `quokka` is found under ``heading`` and the note holds the
    tag ``kept``; then a collection recording the reading ``older`` is read again (:func:`read_again_after`)."""
    from kbsearch.notes import parse_note
    from tests.integration.test_lines32 import found, sync_s3
    from tests.integration.test_notes_graph import write_kb

    kb = write_kb(tmp_path / "kb", {"steps.md": body})
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    assert sync_s3(kb, settings).added == 1
    assert found(settings, "quokka")[:1] == [("steps.md", heading)]
    assert parse_note("steps.md", body.encode()).tags == ["kept"]
    read_again_after(older, kb, settings, 1)


#: 3. rel32's stopped sync: the notes (a word each to search by) and the links between them
STOPPED_KB = {
    "pub/Welcome.md": b"# Welcome\n\nwelcome zebra: read [[Plan]], [[Secret]] and [[Nowhere]].\n",
    "Plan.md": b"# Plan\n\nthe plan quokka, after [[Welcome]]\n",
    "pub/Other.md": b"# Other\n\nanother numbat note, see [[Plan]]\n",
}
SECRET_NOTE = b"---\naccess: [hr]\n---\n# Secret\n\nthe secret wombat, see [[Plan]]\n"
WORDS = {"zebra": "pub/Welcome.md", "quokka": "Plan.md", "numbat": "pub/Other.md", "wombat": "Secret.md"}


def seen_by(app: Any, key_id: str) -> dict[str, Any]:
    """Everything the caller ``key_id`` gets from the search Lambda (API Gateway events) about the KB's notes: each
    word's hits and the links they show, each note read by path and its links in the note graph (the note list,
    ``GET /notes``, reads a facet test_rel31's loopback Qdrant Cloud does not serve)."""
    import json

    from kbsearch_tools.local.apigw import HttpRequest, build_event, parse_result

    def call(method: str, path: str, resource: str, params: dict[str, str], body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else b""
        event = build_event(HttpRequest(method, path, "", [("Content-Type", "application/json")], data), resource,
                            params, "dev")  # fmt: skip
        event["requestContext"]["identity"]["apiKeyId"] = key_id
        answer = parse_result(app(event))
        assert answer.status in (200, 404), answer.body
        return json.loads(answer.body) if answer.status == 200 else None

    out: dict[str, Any] = {"hits": {}, "hit links": set(), "graph": set()}
    for word in WORDS:
        hits = call("POST", "/search", "/search", {}, body={"query": word, "top_k": 10, "rerank": False})["results"]
        out["hits"][word] = sorted({h["path"] for h in hits if word in h["snippet"]})
        out["hit links"] |= {(h["path"], link) for h in hits for link in h["links"]}
    out["read"] = {}
    for path in sorted({*WORDS.values()}):
        note = call("GET", f"/notes/{path}", "/notes/{path+}", {"path": path})
        out["read"][path] = note is not None
        if note is not None:
            out["graph"] |= {(way, path, r["target"], r["path"]) for way in ("outgoing", "backlinks")
                             for r in note["links"][way]}  # fmt: skip
    return out


@pytest.mark.parametrize("by", ["event", "full sync"])
@pytest.mark.parametrize("change", ["made restricted", "made public", "a first restricted note"])
def test_a_search_between_a_stopped_syncs_stamps_and_its_record_hides_links_only(
    change: str,
    by: str,
    deployed: Deployed,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rel32's "Left" (3): a sync stopped between its stamps and its record (the notes written, the notes linking
    the changed keys given the new generation, the link targets not recorded) is healed only by a later writer (the
    event batch's retry, the hourly sync). In between, for a public and an hr caller, in the warm search container
    and a new one: every note the caller may read is found and read by path exactly as once healed (no note
    hidden, none shown it may not read), and the links shown (in hits and in the note graph) are a subset of those
    shown once healed (some hidden, the record being stale for them; none shown that the healed record hides: no
    scope leak). The stop is the Lambda's end right after ``stamp_links``, as test_rev32c makes it."""
    import kbsearch.indexer
    from tests.integration.test_rev32c import Killed

    plan = b"---\naccess: [hr]\n---\n" + STOPPED_KB["Plan.md"]
    before = STOPPED_KB | ({"Plan.md": plan} if change == "made public" else {})
    before |= {} if change == "a first restricted note" else {"Secret.md": SECRET_NOTE}
    warm = deployed.holding(before)
    for caller in ("id-pub", "id-hr"):
        seen_by(warm, caller)  # the warm container has answered (its metadata cached)
    real = kbsearch.indexer.stamp_links

    def stamped_then_killed(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(kbsearch.indexer, "stamp_links", stamped_then_killed)
    key, body = {"made restricted": ("Plan.md", plan), "made public": ("Plan.md", STOPPED_KB["Plan.md"]),
                 "a first restricted note": ("Secret.md", SECRET_NOTE)}[change]  # fmt: skip
    deployed.aws.put(f"{PREFIX}{key}", body)
    with pytest.raises(Killed):
        deployed.synced(by)
    monkeypatch.setattr(kbsearch.indexer, "stamp_links", real)
    between = {(c, container): seen_by(app, c) for c in ("id-pub", "id-hr")
               for container, app in (("warm", warm), ("new", deployed.search_app()))}  # fmt: skip
    deployed.synced("full sync")  # the heal
    healed = {c: seen_by(deployed.search_app(), c) for c in ("id-pub", "id-hr")}
    hidden = 0
    for (caller, container), seen in between.items():
        right = healed[caller]
        where = (caller, container)
        assert (seen["hits"], seen["read"]) == (right["hits"], right["read"]), where
        assert seen["hit links"] <= right["hit links"] and seen["graph"] <= right["graph"], where
        hidden += len(right["hit links"] - seen["hit links"]) + len(right["graph"] - seen["graph"])
    # the healed view is the change's: the public caller reads no restricted note and sees no link resolved to one
    pub = healed["id-pub"]
    restricted = {"Secret.md"} | ({"Plan.md"} if change == "made restricted" else set())
    assert {path for path, readable in pub["read"].items() if not readable} == restricted, pub["read"]
    assert not {g for g in pub["graph"] if g[3] in restricted} and healed["id-hr"]["read"]["Secret.md"]
    assert hidden > 0, "the stop hid no link: the test did not stop the sync between its stamps and its record"
