"""Round 31: reliability debts left by round 30 (RELIABILITY "Round 31: debts (rel31)"), through the real interfaces:
the indexer and search handlers, moto's S3 and its events, the store the tests use for Qdrant Cloud. Each test fails
on main's code before its fix (`PYTHONPATH=/work/main/layers/kbsearch:/work/main/tools`) unless said otherwise."""

from __future__ import annotations

import zlib
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import Indexer, SyncOptions
from kbsearch.qdrant import open_store
from kbsearch.sources import S3Source

# -- 2: Content-Encoding: deflate over raw deflate (no zlib header) -------------------------------------------------

NOTE = "# Quokka runbook\n\nRestore the quokka snapshot, then check it.\n"


def raw_deflate(data: bytes) -> bytes:
    """Deflate with no zlib header or checksum (RFC 1951), as some servers and tools send under `deflate`."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("body", "expect"),
    [(raw_deflate(NOTE.encode()), NOTE), (raw_deflate(NOTE.encode() * 400), NOTE * 400),
     (NOTE.encode(), NOTE), (b"c" + NOTE.encode(), "c" + NOTE), (zlib.compress(NOTE.encode()), NOTE)],
    ids=["raw deflate", "raw deflate, 25 KB", "labelled, plain", "labelled, plain starting like a raw block",
         "zlib deflate"],
)  # fmt: skip
def test_a_note_stored_as_raw_deflate_on_s3_is_indexed_and_read_as_its_text(
    body: bytes, expect: str, tmp_path: Path
) -> None:
    """rev30b's "Left" (2): `Content-Encoding: deflate` over raw deflate (RFC 1951, no zlib header: what some servers
    send, and what browsers read after zlib's format fails) was read as stored and skipped as `binary content (NUL
    bytes)` or `not valid UTF-8`. Now zlib's format is tried, then raw deflate; bytes in neither (a label only) read
    as stored, as before. The raw cases fail on main's code; the plain and zlib ones guard the rest."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        s3.put_object(Bucket="kb-notes", Key="a.md", Body=body, ContentEncoding="deflate")
        settings = Settings(qdrant_path=str(tmp_path / "q"))
        store = open_store(settings, Secrets(settings))
        try:
            report = Indexer(S3Source("kb-notes", "", s3), store, None, SyncOptions()).sync()
            texts = [p["text"] for p in store.points().values()]
        finally:
            store.close()
        read = S3Source("kb-notes", "", s3).read_path("a.md")
    assert report.skipped == [] and report.added == 1, report
    assert any("Restore the quokka snapshot" in t for t in texts), texts
    assert read == expect.encode(), read[:80]
