"""Round 30: the adversarial pass (adv30): classes no round had tried, through the real interfaces (`kbsearch`
spawned as a process, loopback dependencies). Each test fails on main's code before its fix."""

from __future__ import annotations

import gzip
import os
import subprocess
import threading
import zlib
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import Indexer, SyncOptions
from kbsearch.qdrant import open_store
from kbsearch.sources import S3Source
from kbsearch_tools.fakes import FakeEndpoint
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, subprocess_env

# -- 1: Qdrant Cloud answering the indexer's qdrant-client more than it can hold ----------------------------------


def gzip_of_spaces(mib: int) -> bytes:
    """A gzip body inflating to ``mib`` MiB of spaces (JSON's white space): ~4.5 KB a MiB compressed."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = b" " * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(mib)) + packer.flush()


def test_an_indexer_qdrant_answer_inflating_to_a_gibibyte_is_refused_within_a_bound(tmp_path: Path) -> None:
    """The indexer reaches Qdrant Cloud through qdrant-client, whose httpx client read any answer whole into memory
    (the search's calls are capped by the outbound policy, 64 MiB): Qdrant (or whatever answers at QDRANT_URL)
    answering its first request with 4.6 MB of gzip inflating to 1 GiB took `kbsearch index` to ~2.2 GB of memory
    before it failed as not JSON (`Qdrant is not reachable (JSONDecodeError)`); the indexer Lambda has 2,048 MB, so
    it would have been killed, every run. Now every answer is read at most QDRANT_ANSWER_BYTES (256 MiB) decoded:
    the run stops at once naming that, the process well under 1 GiB."""
    endpoint = FakeEndpoint().start()
    endpoint.body = gzip_of_spaces(1024)
    endpoint.content_type = "application/json"
    endpoint.headers = {"Content-Encoding": "gzip"}
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nquokka\n")
    out = tmp_path / "out.txt"
    try:
        with out.open("w") as sink:
            proc = subprocess.Popen([*KBSEARCH_CMD, "index", str(kb)], stdout=sink, stderr=subprocess.STDOUT,
                                    cwd=tmp_path, env=subprocess_env(QDRANT_URL=endpoint.url))  # fmt: skip
            watchdog = threading.Timer(PROCESS_TIMEOUT_S, proc.kill)
            watchdog.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)  # this process's own peak memory, not the test's
            finally:
                watchdog.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        endpoint.stop()
    said = out.read_text()
    assert proc.returncode == 1, said
    assert usage.ru_maxrss * 1024 < 1 << 30, (usage.ru_maxrss, said)  # ru_maxrss is in KiB on Linux
    assert "Qdrant's answer is over the 268435456-byte limit" in said, said


# -- 2: notes stored compressed on S3 (Content-Encoding) --------------------------------------------------------

NOTE = "# Quokka runbook\n\nRestore the quokka snapshot, then check it.\n"


def _stored(coding: str) -> tuple[bytes, str]:
    """The object's bytes and its Content-Encoding for each way a note is found stored."""
    if coding == "gzip":
        return gzip.compress(NOTE.encode()), "gzip"
    if coding == "deflate":
        return zlib.compress(NOTE.encode()), "deflate"
    if coding == "gzip in two members":  # `cat head.gz tail.gz`, as gzip itself reads it
        half = len(NOTE) // 2
        return gzip.compress(NOTE[:half].encode()) + gzip.compress(NOTE[half:].encode()), "gzip"
    if coding == "labelled gzip, plain":
        return NOTE.encode(), "gzip"
    if coding == "identity, aws-chunked":
        return NOTE.encode(), "aws-chunked"
    raise AssertionError(coding)


@pytest.mark.parametrize(
    "coding", ["gzip", "deflate", "gzip in two members", "labelled gzip, plain", "identity, aws-chunked"]
)
def test_a_note_stored_compressed_on_s3_is_indexed_and_read_as_its_text(coding: str, tmp_path: Path) -> None:
    """`aws s3 cp --content-encoding gzip` (or a deploy that gzips what it uploads) stores the note's gzip and the
    header: S3 answers both, and every HTTP client decodes it. The indexer read the bytes as stored: the note was
    skipped as `binary content (NUL bytes)`, lost from the index with a reason that named no cause. Now a gzip or
    deflate note (gzip of several members too) is indexed and read by path as its text; a label over plain bytes, or an upload's framing
    (`aws-chunked`), reads as stored, as before."""
    assert_indexed_and_read(*_stored(coding), NOTE, tmp_path)


def assert_indexed_and_read(
    body: bytes, label: str, text: str, tmp_path: Path, phrase: str = "Restore the quokka snapshot"
) -> None:
    """``body`` stored on moto's S3 as ``a.md`` with ``Content-Encoding: label`` is indexed (by the indexer over
    ``S3Source``, into the embedded store) with ``phrase`` in a chunk, and read by path as ``text``."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        s3.put_object(Bucket="kb-notes", Key="a.md", Body=body, ContentEncoding=label)
        settings = Settings(qdrant_path=str(tmp_path / "q"))
        store = open_store(settings, Secrets(settings))
        try:
            report = Indexer(S3Source("kb-notes", "", s3), store, None, SyncOptions()).sync()
            texts = [p["text"] for p in store.points().values()]
        finally:
            store.close()
        read = S3Source("kb-notes", "", s3).read_path("a.md")
    assert report.skipped == [] and report.added == 1, report
    assert any(phrase in t for t in texts), texts
    assert read == text.encode(), read[:80]


@pytest.mark.parametrize(
    ("body", "label", "reason"),
    [(b"\x1b" * 40, "br", "stored compressed (Content-Encoding: br), which kb-search does not decode"),
     (gzip.compress(NOTE.encode()), "gzip, gzip", "stored compressed (Content-Encoding: gzip, gzip), which"),
     (gzip.compress(NOTE.encode())[:-12], "gzip", "stored compressed (Content-Encoding: gzip) and cut short"),
     (b"\x1f\x8b" + b"\x00" * 30, "gzip", "stored compressed (Content-Encoding: gzip) but does not inflate"),
     (gzip_of_spaces(65), "gzip", "larger than 64 MiB once inflated (Content-Encoding: gzip)")],
    ids=["br", "gzip twice", "gzip cut short", "gzip damaged", "gzip bomb"],
)  # fmt: skip
def test_a_note_stored_in_a_coding_not_read_is_skipped_naming_it(
    body: bytes, label: str, reason: str, tmp_path: Path
) -> None:
    """A coding kb-search does not decode, or gzip that does not inflate whole, is skipped naming the coding (it was
    `binary content (NUL bytes)` or `not valid UTF-8`); a gzip inflating past the 64 MiB a note's object may hold
    is refused at that bound, never inflated whole; the note beside it is indexed."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        s3.put_object(Bucket="kb-notes", Key="a.md", Body=body, ContentEncoding=label)
        s3.put_object(Bucket="kb-notes", Key="b.md", Body=NOTE.encode())
        settings = Settings(qdrant_path=str(tmp_path / "q"))
        store = open_store(settings, Secrets(settings))
        try:
            report = Indexer(S3Source("kb-notes", "", s3), store, None, SyncOptions()).sync()
        finally:
            store.close()
    assert report.added == 1 and [s["path"] for s in report.skipped] == ["a.md"], report
    assert reason in report.skipped[0]["reason"], report.skipped


def test_a_note_stored_as_many_gzip_members_is_read_in_time_linear_in_its_size(tmp_path: Path) -> None:
    """rev30b: gzip of many members (``cat``'d gzip files; here 838,860 empty members, 16 MiB, before the note's)
    was inflated member by member, each member's leftover copied from the rest of the body and the output so far
    copied again: time in the square of the size (3.2 MB of members took 25.7 s, 64 MiB about 3 hours; the indexer
    Lambda timed out on such a note every run once MAX_NOTE_BYTES was raised, and a read by path of a note replaced
    by one held the route as long). Now the body is fed in slices: the note is indexed in seconds. The sync runs in
    a thread given PROCESS_TIMEOUT_S (main's code needed ~700 s)."""
    body = gzip.compress(b"", mtime=0) * (16 * 1024 * 1024 // 20) + gzip.compress(NOTE.encode())
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        s3.put_object(Bucket="kb-notes", Key="a.md", Body=body, ContentEncoding="gzip")
        settings = Settings(qdrant_path=str(tmp_path / "q"))
        store = open_store(settings, Secrets(settings))
        reports = []
        options = SyncOptions(max_note_bytes=len(body))  # MAX_NOTE_BYTES raised (a note's gzip is listed by its size)
        sync = threading.Thread(
            target=lambda: reports.append(Indexer(S3Source("kb-notes", "", s3), store, None, options).sync()),
            daemon=True,
        )
        try:
            sync.start()
            sync.join(PROCESS_TIMEOUT_S)
            assert not sync.is_alive(), "the sync of one 16 MiB gzip note did not end"
            texts = [p["text"] for p in store.points().values()]
        finally:
            if not sync.is_alive():
                store.close()
    assert reports and reports[0].skipped == [] and reports[0].added == 1, reports
    assert any("Restore the quokka snapshot" in t for t in texts), texts


def test_the_indexer_reaches_qdrant_cloud_through_the_proxy_its_environment_names(tmp_path: Path) -> None:
    """rev30b: the capped transport given to qdrant-client (CappedAnswers) replaced httpx's own, and httpx reads
    HTTP(S)_PROXY/ALL_PROXY/NO_PROXY only when no transport is given: `kbsearch index` behind a proxy (a corporate
    network, a VPC that reaches out through one) went straight to QDRANT_URL and failed as `Qdrant is not
    reachable (ConnectError)`, while the search (its own httpx client) went through the proxy. Here the proxy is a
    loopback endpoint and Qdrant's host does not resolve: qdrant-client's requests must reach the proxy."""
    proxy = FakeEndpoint().start()
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nquokka\n")
    env = subprocess_env(QDRANT_URL="http://qdrant.invalid:6333", HTTP_PROXY=proxy.url, http_proxy=proxy.url)
    for name in ("NO_PROXY", "no_proxy"):
        env.pop(name, None)
    try:
        done = subprocess.run([*KBSEARCH_CMD, "index", str(kb)], capture_output=True, text=True, cwd=tmp_path,
                              env=env, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    finally:
        proxy.stop()
    asked = [r.path for r in proxy.requests if "python-client" in r.headers.get("user-agent", "")]
    assert asked and all(p.startswith("http://qdrant.invalid:6333/") for p in asked), (asked, done.stderr[-2000:])
