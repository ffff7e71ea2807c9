"""An S3 object far larger than any note (a note replaced by gigabytes between the listing and the read, an object
that sends more than it declares): refused unread, or read no further than the cap, through the real S3 source
(boto3) against a loopback S3 that streams for as long as it is read."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from kbsearch.sources import MAX_FILE_BYTES
from kbsearch_tools.fakes import LoopbackHTTPServer
from tests.integration.test_fault_matrix import NOTE_B, indexed_store, listing_xml, s3_sync

_PIECE = b"\0" * (1 << 20)


class _HugeS3(BaseHTTPRequestHandler):
    """Lists ``a.md`` and ``b.md`` (small); ``a.md``'s GET streams zeros until the client stops reading, declaring
    ``mode``'s length: ``declared`` 20 GB, ``chunked`` none (chunks), ``close`` none (until the connection closes),
    ``lying`` 100 bytes."""

    mode = "declared"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if "list-type=2" in self.path:
            self._send(listing_xml([("a.md", b"# A\n\nsecond version of a"), ("b.md", NOTE_B)]), "application/xml")
        elif self.path.split("?")[0].endswith("/b.md"):
            self._send(NOTE_B, "application/octet-stream")
        else:
            self._stream()

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if self.mode == "declared":
            self.send_header("Content-Length", str(20 * 1024**3))
        elif self.mode == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif self.mode == "lying":
            self.send_header("Content-Length", "100")
        self.end_headers()
        self.close_connection = True
        try:
            if self.mode == "lying":  # declares 100 bytes, sends 200 MB past them on the same connection
                self.wfile.write(b"# A\n\n" + b"x" * 95)
            for _ in range(200 if self.mode != "declared" else 20 * 1024):
                self.wfile.write(b"100000\r\n" + _PIECE + b"\r\n" if self.mode == "chunked" else _PIECE)
        except OSError:
            return  # the client stopped reading

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def huge_s3(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Handler", (_HugeS3,), {"mode": request.param})
    server = LoopbackHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("huge_s3", ["declared", "chunked", "close"], indirect=True)
def test_an_object_over_the_cap_is_never_read_whole(huge_s3: str, tmp_path: Path) -> None:
    """20 GB declared: refused from its length, unread (``.read()`` of the whole body held it in memory); no
    length declared (chunks, or until the connection closes) and 200 MB sent: read to the cap (64 MiB) and
    refused. The note is skipped, its last version
    kept, the other note unchanged."""
    settings, before = indexed_store(tmp_path)
    report, after = s3_sync(settings, huge_s3)
    skipped = {s["path"]: s["reason"] for s in report.skipped}
    assert set(skipped) == {"a.md"} and f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB" in skipped["a.md"]
    assert after == before and report.deleted == 0 and report.error is None


@pytest.mark.parametrize("huge_s3", ["lying"], indirect=True)
def test_an_object_sending_more_than_it_declares_is_read_to_its_length(huge_s3: str, tmp_path: Path) -> None:
    """HTTP framing holds a body to its declared length: the 100 bytes are the note, the rest is never read."""
    settings, _ = indexed_store(tmp_path)
    report, after = s3_sync(settings, huge_s3)
    assert report.skipped == [] and report.updated == 1 and set(after) == {"a.md", "b.md"}
