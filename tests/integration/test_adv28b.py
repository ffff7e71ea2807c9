"""Round 28b: the adversarial pass (data, time, the indexer's debts, a new user's walk), through the real
interfaces: `kbsearch index` spawned as a process, the indexer service on a folder and the embedded store. Each
test fails on main's code before its fix."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.qdrant import open_store
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_adv26 import SLOW_NOTE

# -- 1: a raised NOTE_PARSE_LIMIT_S brings back a note refused under a lower one ------------------------------------


def index_under(kb: Path, store: Path, limit: str, *args: str) -> dict[str, Any]:
    env = subprocess_env(QDRANT_PATH=str(store), EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM="",
                         NOTE_PARSE_LIMIT_S=limit)  # fmt: skip
    proc = subprocess.run([*KBSEARCH_CMD, "index", str(kb), "--json", *args], env=env, capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, check=False, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return dict(json.loads(proc.stdout))


def slow_reason(report: dict[str, Any]) -> str | None:
    reasons = [s["reason"] for s in report["skipped"] if s["path"] == "slow.md"]
    return reasons[0] if reasons else None


def store_metadata(store: Path) -> dict[str, Any]:
    settings = Settings(qdrant_path=str(store))
    opened = open_store(settings, Secrets(settings))
    try:
        return dict(opened.metadata())
    finally:
        opened.close()


def merge_store_metadata(store: Path, values: dict[str, Any]) -> None:
    settings = Settings(qdrant_path=str(store))
    opened = open_store(settings, Secrets(settings))
    try:
        opened.merge_metadata(values)
    finally:
        opened.close()


def test_a_note_refused_as_slow_is_parsed_again_once_the_limit_is_raised_above_the_one_it_ran_past(
    tmp_path: Path,
) -> None:
    """`parse_refused` held path → etag alone: a note refused under NOTE_PARSE_LIMIT_S=0.25 stayed refused under
    120 (it parses in ~1 s) until it changed, and README told the user to edit it. Now each entry holds the limit
    it ran past: a run under that limit or a lower one skips it unparsed, naming that limit; a run under a higher one
    parses it again (indexed, the entry dropped)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "good.md").write_text("# Good\n\nA good note.\n")
    (kb / "slow.md").write_bytes(SLOW_NOTE)
    store = tmp_path / "q"
    first = index_under(kb, store, "0.25")
    assert (slow_reason(first) or "").startswith("its parse ran past 0.25 s"), first
    lower = index_under(kb, store, "0.1")  # ran past 0.25 s: runs past 0.1 s, not parsed
    why = slow_reason(lower) or ""
    assert "ran past 0.25 s" in why and "0.1" not in why and "on an earlier run" in why, why
    raised = index_under(kb, store, "120")
    assert slow_reason(raised) is None and raised["added"] == 1, raised
    assert store_metadata(store).get("parse_refused") == {}
    index_under(kb, store, "0.25")  # the note as it is indexed: kept (its last good version), not refused
    (kb / "slow.md").write_bytes(SLOW_NOTE + b"\nsaved again\n")
    index_under(kb, store, "0.25")
    assert store_metadata(store)["parse_refused_limits"]["slow.md"]["limit_s"] == 0.25


def test_a_refusal_recorded_before_its_limit_was_still_reads_as_refused_under_the_default_limit(
    tmp_path: Path,
) -> None:
    """An index written by a kbsearch before this one holds path → etag: it still reads (the note is skipped
    unparsed under the default limit, saying the limit was not recorded) and a limit raised past the default parses
    the note again; an entry of neither form (another writer's) is dropped, never a failure."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "good.md").write_text("# Good\n\nA good note.\n")
    store = tmp_path / "q"
    index_under(kb, store, "30")
    (kb / "slow.md").write_bytes(SLOW_NOTE)
    first = index_under(kb, store, "0.25")
    entry = store_metadata(store)["parse_refused"]["slow.md"]
    etag = entry if isinstance(entry, str) else entry["etag"]
    assert first["added"] == 0, first
    older = {"slow.md": etag, "odd.md": {"limit_s": 3}, "x.md": [1]}
    merge_store_metadata(store, {"parse_refused": older, "parse_refused_limits": None})  # (no limits recorded)
    default = index_under(kb, store, "30")
    why = slow_reason(default) or ""
    assert "not recorded" in why and "30 s" in why, why
    raised = index_under(kb, store, "60")
    assert slow_reason(raised) is None and raised["added"] == 1, raised
    assert store_metadata(store).get("parse_refused") == {}


# -- 2: a collection with no payload index at all is not one made before graph_keys ---------------------------------


def test_link_reads_on_a_collection_with_no_payload_index_at_all_match_graph_keys(
    tmp_path: Path, load_search_app: Any
) -> None:
    """A collection whose ``payload_schema`` is ``{}`` was read as made before ``graph_keys`` (round 27's fallback
    for strict mode): the graph's readers matched the old fields alone, which a collection written since
    ``graph_keys`` never holds, so on a Qdrant without strict mode (unindexed filters answered) a note's links and a
    note named by its title were lost. Decided: the fallback is for a collection that has payload indexes and none
    of ``graph_keys`` (the indexer creates them all at once); with none at all, ``graph_keys`` (and the old fields)
    are matched as on any collection. In strict mode such a collection refuses every filter whichever field it
    names: no choice of fields answers there (the indexer's first run creates the indexes)."""
    from kbsearch_tools.local.apigw import HttpRequest, build_event
    from tests.integration.test_adv26 import GRAPH_KB, StrictQdrant, filtered_fields
    from tests.integration.test_hostile_notes import collection_info, mcp_event
    from tests.integration.test_notes_graph import write_kb

    class UnindexedQdrant(StrictQdrant):
        """Qdrant without strict mode and no payload index: every filter answered, ``payload_schema`` ``{}``."""

        def _answer(self, method: str, target: str) -> tuple[int, bytes, str]:
            body: Any = self.endpoint.requests[-1].body or {}
            self.indexed = set() if method == "GET" else filtered_fields(body) | {str(body.get("key"))}
            return super()._answer(method, target)

    folder = write_kb(tmp_path / "kb", GRAPH_KB)
    fake = UnindexedQdrant(collection_info(tmp_path / "schema", embedding_dimensions=32))
    try:
        fake.exists = True
        app = load_search_app(QDRANT_URL=fake.url, QDRANT_API_KEY="k", KB_SOURCE=str(folder),
                              EMBEDDING_DIMENSIONS="32", EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM="")  # fmt: skip
        app(build_event(HttpRequest("GET", "/notes/Runbook", "", [], b""), "/notes/{path+}", {"path": "Runbook"},
                        "dev"))  # fmt: skip
        app(mcp_event("kb_get_note", {"path": "ops/Runbook.md"}))
        assert "graph_keys" in fake.asked, fake.asked
    finally:
        fake.stop()


# -- 3: a parsing process killed mid-parse names the note it was parsing ---------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the processes' parents from /proc")
def test_a_note_that_ends_parse_aheads_process_is_skipped_not_parsed_in_the_indexing_process(tmp_path: Path) -> None:
    """`kbsearch index` of 500 notes or more parses them in ``parse_ahead``'s process. Killed while it parsed a
    note (the kernel's OOM killer ends the process using the most memory), the indexing process parsed the rest
    itself, that note first: the note that ended one process was given to the next (an OOM kill of the indexer,
    every run). Now the parsing process marks the note it is parsing in memory shared with the indexer (no write
    a note): that note is skipped on this run with the reason, the others parsed and indexed."""
    from tests.integration.test_indexer import write_notes
    from tests.integration.test_rev27b import BIG_SLOW_NOTE, _children, _cpu_s

    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 520)
    (kb / "0-slow.md").write_bytes(BIG_SLOW_NOTE)  # first in order: parsed for ~10 s of CPU
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM="",
                         NOTE_PARSE_LIMIT_S="120", MAX_NOTE_BYTES=str(10**8))  # fmt: skip
    proc = subprocess.Popen([*KBSEARCH_CMD, "index", str(kb), "--json"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    try:
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        parser = None
        while parser is None and time.monotonic() < deadline:
            found = [p for p in _children(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
            parser = found[0] if found else None
            time.sleep(0.02)
        assert parser is not None
        while _cpu_s(parser) < 2.0 and time.monotonic() < deadline:  # started (~0.5 s), then into the slow note
            time.sleep(0.02)
        os.kill(parser, signal.SIGKILL)
        out, err = proc.communicate(timeout=PROCESS_TIMEOUT_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err, err
    report = json.loads(out)
    assert report["skipped"] == [{"path": "0-slow.md", "reason": "the parsing process ended while parsing it "
                                  "(exit code -9): skipped on this run"}], report["skipped"]  # fmt: skip
    assert report["added"] == 520, report


# -- 4: time: an `updated` Python reads and Qdrant's datetime index cannot --------------------------------------------


def test_an_updated_date_time_written_any_iso_way_is_filtered_and_listed_by_its_instant(
    tmp_path: Path, load_search_app: Any
) -> None:
    """``updated`` is read by Python's ISO reader and stored as its ISO text, which Qdrant's ``datetime`` index
    reads for the ``updated_after`` filter and the recent list. A UTC offset holding seconds (``+03:00:30``, fractions
    too) was stored as written: no RFC 3339 reader (Qdrant's) takes it, so the note was in no ``updated_after`` filter
    and no recent list, with no warning; RFC 3339's lower-case ``t``/``z`` was dropped as not a date. Now such an
    offset is stored as the same instant in UTC, lower case is read; the forms that held (``Z``, ``+03:00``, naive
    as UTC, a date, before 1970, year 1, the future) are checked beside them: each note is found by a filter a minute
    before its instant and not by one a minute after, and listed by GET /notes in the order of its instant."""
    from kbsearch_tools.local.apigw import HttpRequest, build_event

    instants = {  # note → (its `updated` as written, the instant in UTC)
        "seconds": ("2024-06-01T10:00:00+03:00:30", "2024-06-01T06:59:30"),
        "minus-seconds": ("2024-06-01T10:00:00-00:00:45", "2024-06-01T10:00:45"),
        "fraction": ("'2024-06-01T10:00:00+03:00:30.5'", "2024-06-01T06:59:29.5"),
        "lower": ("2024-06-05t10:00:00z", "2024-06-05T10:00:00"),
        "zulu": ("2024-06-01T10:00:00.123Z", "2024-06-01T10:00:00.123"),
        "offset": ("2024-06-01T10:00:00+03:00", "2024-06-01T07:00:00"),
        "naive": ("2024-06-01 10:00", "2024-06-01T10:00:00"),
        "date": ("2024-06-02", "2024-06-02T00:00:00"),
        "before-1970": ("1901-05-03", "1901-05-03T00:00:00"),
        "year-1": ("0001-01-02", "0001-01-02T00:00:00"),
        "future": ("2999-01-01", "2999-01-01T00:00:00"),
    }
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, (written, _) in instants.items():
        (kb / f"{name}.md").write_text(f"---\nupdated: {written}\n---\n# {name}\n\nquokka {name}\n")
    report = index_under(kb, tmp_path / "q", "30")
    assert report["added"] == len(instants) and not report.get("warnings"), report.get("warnings")
    app = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb), EMBEDDING_API_KEY="",
                          EMBEDDING_API_KEY_PARAM="", AUTH_MODE="none")  # fmt: skip

    def found(after: dt.datetime) -> set[str]:
        body = json.dumps({"query": "quokka", "top_k": 20, "filters": {"updated_after": after.isoformat()}, "rerank": False,
                           "expand": False}).encode()  # fmt: skip
        event = build_event(HttpRequest("POST", "/search", "", [("Content-Type", "application/json")], body),
                            "/search", {}, "dev")  # fmt: skip
        answer = app(event)
        assert answer["statusCode"] == 200, answer
        return {hit["path"][:-3] for hit in json.loads(answer["body"])["results"]}

    missed = []
    for name, (_, instant) in instants.items():
        when = dt.datetime.fromisoformat(instant).replace(tzinfo=dt.UTC)
        before, after = when - dt.timedelta(minutes=1), when + dt.timedelta(minutes=1)
        if name == "year-1":
            before = when - dt.timedelta(hours=1)
        if name not in found(before) or name in found(after):
            missed.append(name)
    assert missed == [], missed
    listed = app(build_event(HttpRequest("GET", "/notes", "recent=20", [], b""), "/notes", {}, "dev"))
    order = [note["path"][:-3] for note in json.loads(listed["body"])["recent"]]
    assert order == sorted(instants, key=lambda n: instants[n][1], reverse=True), order


# -- 5: S3 keys and events: S3's own encoding, a versioned bucket, 1,000 records, duplicates and disorder ------------


def test_a_thousand_s3_records_in_s3s_encoding_on_a_versioned_bucket_converge_to_a_full_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Notification records built as S3 sends them (moto sends none for a versioned bucket's deletions): keys
    URL-encoded with spaces as ``+`` (a literal ``+`` as ``%2B``, a literal ``%2B`` as ``%252B``), Cyrillic in NFC
    and NFD, a case-only rename; a non-current version deleted by its id (the note stays), a delete marker (the
    note goes), the marker deleted (the note is back); 1,000 records over 100 SQS messages, each record sent twice
    and the messages shuffled. Held: every message applied, the index equal to a clean full sync after each step
    (each record's key is read at its current state, so a version's or marker's deletion applies what S3 holds)."""
    import random
    import unicodedata
    from urllib.parse import quote_plus

    from moto import mock_aws

    from kbsearch_tools.s3events import sqs_record
    from tests.integration.test_events import BUCKET, PREFIX, TABLE, Indexer, clean_full_sync, points

    sequence = [0x0065F1A0B0C0D0E0]

    def record(key: str, name: str, version: str | None) -> dict[str, Any]:
        sequence[0] += 1
        obj = {"key": quote_plus(key, safe="/"), "size": 10, "eTag": "0" * 32, "sequencer": f"{sequence[0]:016X}00"}
        return {
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "eventName": name, "s3": {"s3SchemaVersion": "1.0", "configurationId": "notes",
                                      "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
                                      "object": obj | ({"versionId": version} if version else {})},
        }  # fmt: skip

    def deliver(indexer: Indexer, records: list[dict[str, Any]], queue_arn: str) -> None:
        shuffled = records + records  # each record delivered twice (at-least-once), in no order
        random.Random(28).shuffle(shuffled)
        bodies = [json.dumps({"Records": shuffled[i : i + 20]}) for i in range(0, len(shuffled), 20)]
        failed = indexer([sqs_record(body, queue_arn) for body in bodies])
        assert failed == [], failed

    names = ["a+b c.md", "literal %2B.md", "sp  two.md", "Ёжик.md", unicodedata.normalize("NFD", "йод.md"),
             "case/Note.md", "deep/" + "x" * 200 + ".md"]  # fmt: skip
    names += [f"bulk/n{i}.md" for i in range(500 - len(names))]
    with mock_aws():
        import boto3

        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        )  # fmt: skip
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        queue_arn = "arn:aws:sqs:us-east-1:123456789012:kb-search-test-events"
        indexer = Indexer(monkeypatch, tmp_path, None)

        def put(name: str, text: str) -> str:
            return str(s3.put_object(Bucket=BUCKET, Key=PREFIX + name, Body=text.encode())["VersionId"])

        records = []
        for n, name in enumerate(names):
            first = put(name, f"# N{n}\n\nquokka first {n}\n")
            records.append(record(PREFIX + name, "ObjectCreated:Put", first))
            records.append(record(PREFIX + name, "ObjectCreated:Put", put(name, f"# N{n}\n\nquokka second {n}\n")))
        assert len(records) == 1000
        deliver(indexer, records, queue_arn)
        assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)

        versions = s3.list_object_versions(Bucket=BUCKET, Prefix=PREFIX + "a+b c.md")["Versions"]
        old = next(v["VersionId"] for v in versions if not v["IsLatest"])
        s3.delete_object(Bucket=BUCKET, Key=PREFIX + "a+b c.md", VersionId=old)  # an old version: the note stays
        marker = s3.delete_object(Bucket=BUCKET, Key=PREFIX + "Ёжик.md")["VersionId"]  # a delete marker: it goes
        s3.delete_object(Bucket=BUCKET, Key=PREFIX + "case/Note.md")  # a case-only rename: note.md replaces it
        renamed = put("case/note.md", "# note\n\nquokka renamed\n")
        deliver(indexer, [record(PREFIX + "a+b c.md", "ObjectRemoved:Delete", old),
                          record(PREFIX + "Ёжик.md", "ObjectRemoved:DeleteMarkerCreated", marker),
                          record(PREFIX + "case/Note.md", "ObjectRemoved:DeleteMarkerCreated", None),
                          record(PREFIX + "case/note.md", "ObjectCreated:Put", renamed)], queue_arn)  # fmt: skip
        held = points(indexer.settings())
        assert held == clean_full_sync(indexer, tmp_path)
        s3.delete_object(Bucket=BUCKET, Key=PREFIX + "Ёжик.md", VersionId=marker)  # the marker deleted: it is back
        deliver(indexer, [record(PREFIX + "Ёжик.md", "ObjectRemoved:Delete", marker)], queue_arn)
        assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path) != held


# -- 6: a new user's walk --------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("make") is None, reason="runs the Makefile")
def test_make_install_says_when_the_venv_it_keeps_is_not_the_python_asked_for(tmp_path: Path) -> None:
    """`make install PYTHON=python3.13` (or `PYENV_VERSION=3.13.0 make install`) over a .venv made with 3.11 did
    nothing and said nothing: the user believed they tested on 3.13. Now `make install` says which Python the venv
    it keeps runs and how to change it; one made with the Python asked for says nothing more."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=PROCESS_TIMEOUT_S)
    (venv / ".installed-stamp").touch()  # installed, newer than the lock: make installs nothing
    other = tmp_path / "python3.99"
    other.write_text("#!/bin/sh\necho 3.99\n")
    other.chmod(0o755)

    def install(python: str) -> str:
        proc = subprocess.run(["make", "-s", "-C", str(ROOT), "install", f"VENV={venv}", f"PYTHON={python}", "NPM="],
                              capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout + proc.stderr

    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    said = install(str(other))
    assert f"was made with Python {mine} and is kept, not {other}'s 3.99" in said, said
    assert install(sys.executable).strip() == "", "a venv of the Python asked for gets no note"


# -- 7: scale inside one note: a note over a read by path's bound, indexed under a raised MAX_NOTE_BYTES -----------


def indexed_large(kb: Path, store: Path, load_search_app: Any, notes: int) -> Any:
    """The search app on ``kb`` indexed by `kbsearch index` under MAX_NOTE_BYTES=8000000 (``notes`` added)."""
    env = subprocess_env(QDRANT_PATH=str(store), EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM="",
                         MAX_NOTE_BYTES="8000000")  # fmt: skip
    proc = subprocess.run([*KBSEARCH_CMD, "index", str(kb), "--json"], env=env, capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, check=False, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0 and json.loads(proc.stdout)["added"] == notes, proc.stdout[-2000:] + proc.stderr
    return load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(kb), EMBEDDING_API_KEY="",
                           EMBEDDING_API_KEY_PARAM="", MAX_NOTE_BYTES="8000000")  # fmt: skip


def test_a_note_a_search_finds_but_too_large_to_read_by_path_is_said_too_large_not_missing(
    tmp_path: Path, load_search_app: Any
) -> None:
    """MAX_NOTE_BYTES raised to 8 MB (README: larger notes are skipped): a 4.5 MB note of one line is indexed and
    found by a search, but a read by path (GET /notes, kb_get_note) returns at most 4 MiB: to any caller the API
    serves (public included) it answered 404 `no note at 'big.md'; use kb_search to find the right path`, the path
    kb_search had just given (an operator's unrestricted read said `too large`). Now the note the index holds for
    the caller is said too large (422, a tool error), as to the operator; one it does not hold stays missing."""
    from kbsearch_tools.local.apigw import HttpRequest, build_event
    from tests.integration.test_hostile_notes import mcp_event

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "big.md").write_text("# Big\n\n" + "quokka " * 650_000 + "\n")  # one line, 4.5 MB
    app = indexed_large(kb, tmp_path / "q", load_search_app, 1)
    found = app(build_event(HttpRequest("GET", "/search", "q=quokka", [], b""), "/search", {}, "dev"))
    assert [hit["path"] for hit in json.loads(found["body"])["results"]] == ["big.md"], found
    read = app(build_event(HttpRequest("GET", "/notes/big.md", "", [], b""), "/notes/{path+}", {"path": "big.md"},
                           "dev"))  # fmt: skip
    assert read["statusCode"] == 422, read
    assert "too large" in json.loads(read["body"])["message"], read["body"]
    tool = json.loads(app(mcp_event("kb_get_note", {"path": "big.md"}))["body"])["result"]
    assert tool["isError"] and "too large" in tool["content"][0]["text"], tool
    other = app(build_event(HttpRequest("GET", "/notes/none.md", "", [], b""), "/notes/{path+}",
                            {"path": "none.md"}, "dev"))  # fmt: skip
    assert other["statusCode"] == 404, other
