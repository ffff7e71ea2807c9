"""S3 objects whose answer is not the object: a body cut short of the length its answer declares (the connection
closed early, at a character boundary or inside one). Through the real S3 source (boto3) and the indexer against a
loopback S3; what is checked is the index, after the faulty run and after the next healthy one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.qdrant import open_store
from tests.integration.test_fault_matrix import NOTE_B, indexed_store, listing_xml, s3_sync

#: The new version of ``a.md``: Cyrillic (two bytes a letter), its last word said once, at the very end.
NEW_A = ("# A\n\n" + "привет мир\n" * 200 + "\nзаключение").encode()
#: Where a cut body ends: after whole lines (valid UTF-8: a shorter note that parses) or inside a letter.
CUTS = {"at a line": NEW_A.index(b"\n", 1000) + 1, "inside a letter": NEW_A.index("мир".encode(), 1000) + 1}


class _LyingS3(BaseHTTPRequestHandler):
    """Lists ``a.md`` (:data:`NEW_A`) and ``b.md``; ``a.md``'s GET declares its whole length and, while ``cut`` is
    set, sends that many bytes of it and closes the connection."""

    cut: int | None = None
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if "list-type=2" in self.path:
            body, send = listing_xml([("a.md", NEW_A), ("b.md", NOTE_B)]), None
        else:
            body = NEW_A if self.path.split("?")[0].endswith("/a.md") else NOTE_B
            send = type(self).cut if body is NEW_A else None
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if send is None else body[:send])
        if send is not None:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def lying_s3() -> Iterator[type[_LyingS3]]:
    handler = type("Handler", (_LyingS3,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def _texts(settings: Settings, path: str) -> str:
    store = open_store(settings, Secrets(settings))
    try:
        return "\n".join(p["text"] for p in store.points().values() if p["path"] == path)
    finally:
        store.close()


@pytest.mark.parametrize("cut", list(CUTS))
def test_a_body_cut_short_of_its_declared_length_is_never_indexed(
    lying_s3: type[_LyingS3], cut: str, tmp_path: Path
) -> None:
    """The GET declares the note's whole length and the connection closes after part of it: the note is skipped
    (its last version kept), and the next run reads it whole. A cut at a line boundary was indexed as the note,
    under the listing's ETag of the whole note, so no later run read it again: its end was gone from the index
    until the note next changed."""
    settings, before = indexed_store(tmp_path)
    lying_s3.cut = CUTS[cut]
    report, after = s3_sync(settings, lying_s3.url)  # type: ignore[attr-defined]
    skipped = {s["path"]: s["reason"] for s in report.skipped}
    assert set(skipped) == {"a.md"} and "ended after" in skipped["a.md"], report
    assert after == before and report.deleted == 0 and report.error is None

    lying_s3.cut = None  # S3 answers whole again
    report, after = s3_sync(settings, lying_s3.url)  # type: ignore[attr-defined]
    assert report.skipped == [] and report.updated == 1, report
    assert "заключение" in _texts(settings, "a.md")
