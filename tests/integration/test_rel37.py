"""Round 37: the debts round 36 left (rel37). Each test fails on main's code before its fix."""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kbsearch.links import GRAPH_KEYS, PATH_KEY
from kbsearch.qdrant.embedded import EdgeStore
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.s3events import EventPath
from tests.conftest import KBSEARCH_CMD, ROOT, subprocess_env
from tests.integration.test_adv36 import kept_or_counted
from tests.integration.test_events import PREFIX, Indexer, aws  # noqa: F401 (the moto fixture)
from tests.integration.test_lease import s3_kb_and_lease_table  # noqa: F401 (the moto fixture)
from tests.integration.test_rev36b import _read_all

LINKS = 1_100  # a note keeps its first 1,000 (notes.MAX_LINKS): two requests (512 link keys each) for targets


def _asks_for_targets(request: dict[str, Any]) -> bool:
    """A scroll for the first chunks a link could name (``graph_keys`` matching ``p:`` keys: paths and their tails)."""
    should = (request.get("filter") or {}).get("should") or []
    return any(c.get("key") == GRAPH_KEYS and str((c.get("match") or {}).get("any", [""])[0]).startswith(PATH_KEY)
               for c in should)  # fmt: skip


def test_a_scheduled_sync_near_its_deadline_cuts_the_dangling_link_check_and_says_so(
    aws: EventPath,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The dangling-link check ran after the index step whatever the run's deadline (``stop_at``): a sync writing
    notes of thousands of links (or renaming a note thousands link to), on a slow Qdrant, read every page past it,
    into the minute the Lambda keeps after it. Now no page is asked for after ``stop_at``: the check is cut, the
    run says so in a warning (the links found so far: those whose targets were read) and is not failed. The
    indexer function's scheduled run, moto S3, the embedded Qdrant whose scrolls for link targets take 5 s a
    request (Qdrant Cloud far away); the Lambda given 65 s, its margin 60 s: ``stop_at`` 5 s after the start."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    links = " ".join(f"[[missing-{i:04}]]" for i in range(LINKS))
    aws.put(f"{PREFIX}hub.md", f"# Hub\n\nSee {links}.\n".encode())
    aws.put(f"{PREFIX}missing-0007.md", b"# Seven\n\nthere\n")
    aws.receive()
    asked: list[int] = []
    scroll = EdgeStore.scroll

    def slow(self: EdgeStore, request: dict[str, Any], timeout_s: float) -> tuple[list[dict[str, Any]], Any]:
        if _asks_for_targets(request):
            asked.append(1)
            time.sleep(5.0)
        return scroll(self, request, timeout_s)

    monkeypatch.setattr(EdgeStore, "scroll", slow)
    report = indexer.app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 65))
    assert report["added"] == 2 and report["error"] is None and not report["incomplete"], report
    reasons = [w["reason"] for w in report["warnings"]]
    cut = [r for r in reasons if r.startswith("the check of the links left naming no note")]
    said = (
        f"the check of the links left naming no note was cut at the deadline: {report['dangling_links']} found so far"
    )
    assert cut == [said], reasons  # main: every request read, nothing said
    # the count of every dangling link of the KB (rel37's debt 4) is cut too, and says so: never a count made up
    assert report["dangling_total"] is None and any(r.endswith("counted (cut at the deadline)") for r in reasons)
    assert report["dangling_links"] in (0, 511) and len(asked) < 2, (report["dangling_links"], asked)


# -- debt 2: kbsearch serve's log lines, a launcher that never reads its stderr --------------------------------


def _ask(url: str, answered: list[int]) -> None:
    with urllib.request.urlopen(url, timeout=60) as response:
        answered.append(response.status)


def serve_with_stderr_unread(tmp_path: Path) -> subprocess.Popen[bytes]:
    """`kbsearch serve` spawned BM25 only over ``tmp_path``'s kb and store, its stderr pipe shrunk to one page (4096
    bytes, as adv36's stdio test does), for a test that does not read it."""
    process = subprocess.Popen([*KBSEARCH_CMD, "serve", "--host", "127.0.0.1", "--port", "0"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(tmp_path / "kb"),
                                                  EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM=""))  # fmt: skip
    assert process.stderr is not None
    fcntl.fcntl(process.stderr.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    return process


def served_at(process: subprocess.Popen[bytes]) -> str:
    """The server's URL from its banner; its stdout read from then on (a launcher reads what it parses), not stderr."""
    assert process.stdout is not None
    banner = process.stdout.readline().decode()
    assert " on http://" in banner, banner
    _read_all(process.stdout.fileno(), bytearray())
    return banner.split(" on ")[1].strip()


@pytest.mark.timeout(180)
def test_kbsearch_serve_answers_every_request_while_nobody_reads_its_stderr(tmp_path: Path) -> None:
    """`kbsearch serve` wrote its access line (one a request, INFO) straight to stderr: started by a launcher that
    pipes its stderr and never reads it, it blocked on the line after the pipe filled (~64 KiB, ~700 requests; here
    the pipe shrunk to one page, 4096 bytes, as adv36's stdio test does) and answered nothing more. Now its stderr
    is a relay (``kbsearch mcp``'s): a request's line is handed to a writer thread, and past its bound the oldest
    lines waiting go, counted (the relay's own test below). Spawned; stdout read (the banner), stderr not, 300 `GET /health`."""
    process = serve_with_stderr_unread(tmp_path)
    assert process.stderr is not None
    try:
        base = served_at(process)
        for i in range(300):
            answered: list[int] = []

            asking = threading.Thread(target=_ask, args=(f"{base}/health?i={i}", answered), daemon=True)
            asking.start()
            asking.join(30)
            assert answered, f"no answer to request {i} within 30 s: the server is blocked"  # main: request ~40
        said = bytearray()
        reader = _read_all(process.stderr.fileno(), said)  # the launcher reads at last
        time.sleep(1.0)
        process.terminate()
        assert process.wait(30) in (0, 143, -15)
        reader.join(10)
        text = said.decode()
        # 300 lines are within the relay's bound (256 K characters): every one waited and is read, in order
        at = [text.find(f'"GET /health?i={i} HTTP/1.1" 200') for i in range(300)]
        assert -1 not in at and at == sorted(at), text[-500:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


# -- debt 3: the relay drops the oldest lines, never the newest ------------------------------------------------


def test_the_stderr_relay_keeps_the_newest_lines_and_says_how_many_older_ones_went() -> None:
    """adv36's relay dropped what came once its bound was reached: a reader looking late (a client that reads
    stderr after the server died) found the first lines (start-up) and a count, never the last lines before the
    end, a crash's traceback among them. Now the oldest waiting lines go, whole, and the count stands where they
    were, before the newest; a traceback written last (one write of many lines) is read whole."""
    from kbsearch_tools.mcp_stdio import StderrRelay

    unread, err = os.pipe()
    fcntl.fcntl(err, fcntl.F_SETPIPE_SZ, 4096)
    target = os.fdopen(err, "w", encoding="utf-8")
    relay = StderrRelay(target, limit=8192)
    for i in range(3000):
        relay.write(f"WARNING kbsearch.search: line {i:08}...\n")
    trace = "Traceback (most recent call last):\n" + "".join(f'  File "x.py", line {n}\n' for n in range(40))
    relay.write(trace + "RuntimeError: the end\n")
    said = bytearray()
    reader = _read_all(unread, said)
    assert relay.drain(10)
    target.close()
    reader.join(10)
    os.close(unread)
    text = said.decode()
    assert text.endswith(trace + "RuntimeError: the end\n"), text[-300:]  # main: the count last, no traceback
    kept = text[: -len(trace) - len("RuntimeError: the end\n")]
    assert kept_or_counted(kept, lambda i: f"WARNING kbsearch.search: line {i:08}...") == 3000
    assert "line 00002999..." in kept


# -- debt 4: the links already dangling, counted at every run --------------------------------------------------


def test_kbsearch_index_counts_the_links_already_dangling_and_names_the_new_ones(tmp_path: Path) -> None:
    """An incremental `kbsearch index` said only the links its own changes left naming no note: a KB holding a
    dangling link said nothing of it on the next run, and an unchanged KB nothing at all, as if none dangled. Now
    every run of `kbsearch index` counts them all (one scroll of every note's first chunk) and names the new ones."""
    from tests.integration.test_walk36b import _index, _kb

    kb = _kb(tmp_path, {"a.md": "# A\n\nSee [[nowhere]].\n", "b.md": "# B\n\nSee [[a]].\n"})
    store = tmp_path / "q"
    assert _index(kb, store) == [
        "  dangling links: 1 wiki-link this run left naming no note; 1 in the KB in all",
        "  dangling a.md: [[nowhere]] names no note",
    ]
    (kb / "b.md").write_text("# B\n\nSee [[a]] and [[elsewhere]].\n")
    assert _index(kb, store) == [  # main: the new one only
        "  dangling links: 1 wiki-link this run left naming no note; 2 in the KB in all",
        "  dangling b.md: [[elsewhere]] names no note",
    ]
    assert _index(kb, store) == ["  dangling links: 2 wiki-links in the KB name no note, none new this run"]  # main: []
    # that run wrote nothing: its count is recorded with the notes it was made over, and the next run reports it
    # unread (one metadata read, no scroll of every note); the KB unchanged, the same line
    from kbsearch.config import Secrets, Settings
    from kbsearch.indexer import DANGLING_RECORD
    from kbsearch.qdrant import open_store

    settings = Settings(qdrant_path=str(store), embedding_api_key=None)
    opened = open_store(settings, Secrets(settings))
    try:
        recorded = opened.metadata()[DANGLING_RECORD]
    finally:
        opened.close()
    assert recorded["count"] == 2 and isinstance(recorded["notes"], str), recorded
    assert _index(kb, store) == ["  dangling links: 2 wiki-links in the KB name no note, none new this run"]


# -- debt 6: Intelligent-Tiering's archive tiers -----------------------------------------------------------------

REFUSED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidObjectState</Code><Message>The operation is not '
    b"valid for the object's access tier</Message><StorageClass>INTELLIGENT_TIERING</StorageClass>"
    b"<AccessTier>ARCHIVE_ACCESS</AccessTier><RequestId>R1</RequestId></Error>"
)


def _in_archive_access(keys: dict[str, tuple[str, int]], archived: list[bool]) -> None:
    """S3 as it answers for INTELLIGENT_TIERING objects (``keys``: key → ETag and size) in their Archive Access tier
    while ``archived[0]``: a GET 403 ``InvalidObjectState`` naming the tier, a HEAD naming it
    (``x-amz-archive-status``); moto has no such tier (it serves every INTELLIGENT_TIERING object), so the answers
    are made where botocore sends the request (its ``before-send`` hook, as test_rev36c's), first of the default
    session's handlers."""
    import boto3
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    from tests.integration.test_rev36c import _Body

    def send(request: Any, **_: Any) -> AWSResponse | None:
        key = request.url.split("?")[0].rsplit("/", 1)[-1]
        if not archived[0] or key not in keys:
            return None
        etag, size = keys[key]
        headers = HTTPHeaders()
        if request.method == "HEAD":
            for name, value in {"ETag": f'"{etag}"', "Content-Length": str(size), "x-amz-archive-status":
                                "ARCHIVE_ACCESS", "x-amz-storage-class": "INTELLIGENT_TIERING",
                                "Last-Modified": "Mon, 07 Dec 2026 12:00:00 GMT"}.items():  # fmt: skip
                headers[name] = value
            return AWSResponse(request.url, 200, headers, _Body(b""))
        headers["Content-Type"] = "application/xml"
        return AWSResponse(request.url, 403, headers, _Body(REFUSED))

    assert boto3.DEFAULT_SESSION is not None
    hooks: Any = boto3.DEFAULT_SESSION.events
    hooks.register_first("before-send.s3.GetObject", send)
    hooks.register_first("before-send.s3.HeadObject", send)


def test_a_note_in_intelligent_tierings_archive_tier_is_skipped_with_its_tier_kept_and_asked_about_by_a_head(
    s3_kb_and_lease_table: Any,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An INTELLIGENT_TIERING note in its Archive Access tier: the listing says INTELLIGENT_TIERING only (the tier
    is a HEAD's ``ArchiveStatus``), S3 refuses its GET. rel36's record of archived notes took GLACIER and
    DEEP_ARCHIVE only: such a note was asked for (a refused GET) at every sync that reads it, its reason S3's bare
    error. Now the reason names the tier, a note indexed before stays in the index (a full sync too), and it is
    recorded: later syncs ask with a HEAD, no GET, and read it once S3 moves it out of the archive tiers."""
    import boto3

    from kbsearch.config import Secrets, Settings
    from kbsearch.qdrant import open_store
    from tests.integration.test_lease import _load_indexer, _scheduled_sync_of_the_bucket, archived_in_the_bucket

    s3 = boto3.client("s3", region_name="us-east-1")
    it: Any = "INTELLIGENT_TIERING"  # (a Literal to the stubs)
    s3.put_object(Bucket="kb-notes", Key="cold.md", Body=b"# Cold\n\nquokka tiers\n", StorageClass=it)
    assert _scheduled_sync_of_the_bucket(tmp_path, monkeypatch).get("error") is None  # indexed while served
    s3.put_object(Bucket="kb-notes", Key="frozen.md", Body=b"# Frozen\n\nwombat tiers\n", StorageClass=it)
    heads = {k: s3.head_object(Bucket="kb-notes", Key=k) for k in ("cold.md", "frozen.md")}
    archived = [True]  # both in the Archive Access tier now: frozen.md before any sync read it
    _in_archive_access({k: (h["ETag"].strip('"'), h["ContentLength"]) for k, h in heads.items()}, archived)
    gets = archived_in_the_bucket()  # (no key put: the GETs asked for from now on)
    app = _load_indexer(monkeypatch)  # the environment the scheduled run set
    full = app.lambda_handler({"full": True}, LambdaContext("kb-search-test-indexer", 2048, 900))
    for key in ("cold.md", "frozen.md"):
        reason = " ".join(s["reason"] for s in full["skipped"] if s["path"] == key)
        assert "in S3 Intelligent-Tiering's ARCHIVE_ACCESS tier, not restored" in reason, full  # main: S3's error
    assert full["error"] is None and full["deleted"] == 0, full
    settings = Settings(qdrant_path=str(tmp_path / "qdrant"), embedding_api_key=None)
    store = open_store(settings, Secrets(settings))
    try:
        assert any(p.get("path") == "cold.md" for p in store.points().values())  # kept: never deleted for it
    finally:
        store.close()
    gets.clear()
    again = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    reason = " ".join(s["reason"] for s in again["skipped"] if s["path"] == "frozen.md")
    assert "frozen.md" not in gets, gets  # main: its GET asked for (and refused) at every sync
    assert "archived in S3 Intelligent-Tiering's archive tiers at this version" in reason, again
    archived[0] = False  # restored: out of the archive tiers, the HEAD names none, the GET is served
    gets.clear()
    thawed = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert "frozen.md" in gets and thawed["added"] == 1 and not thawed["skipped"], thawed
