"""`kbsearch serve` at the socket: raw bytes from clients that frame requests wrongly, use odd methods or protocol
versions, send huge headers or hang up mid-answer. Every answer is API Gateway's JSON shape (never a 5xx or an
HTML page) or a quiet close, and the server's log never holds a traceback."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from kbsearch_tools.local.process import ServeProcess, serve_process
from kbsearch_tools.local.server import LocalApi, make_server
from kbsearch_tools.local.template import Template
from tests.conftest import ROOT, subprocess_env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    store = tmp_path_factory.mktemp("socket") / "q"
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"))
    with serve_process(env, cwd=ROOT) as process:
        yield process
    text = process.text()
    assert "Traceback" not in text and "<html" not in text.lower(), text[-3000:]


def address(base_url: str) -> tuple[str, int]:
    url = urlsplit(base_url)
    assert url.hostname and url.port
    return url.hostname, url.port


def exchange(base_url: str, data: bytes, half_close: bool = True, timeout: float = 15.0) -> bytes:
    """Send raw bytes, optionally end our side, and read until the server closes."""
    with socket.create_connection(address(base_url), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def drip(sock: socket.socket, byte: bytes, seconds: float) -> bytes:
    """``byte`` sent every 0.3 s (each within an idle timeout) for ``seconds`` or until the server closes the
    connection; what it answered meanwhile."""
    received, began = b"", time.monotonic()
    while time.monotonic() - began < seconds:
        try:
            sock.sendall(byte)
        except OSError:
            break
        time.sleep(0.3)
        sock.setblocking(False)
        try:
            chunk = sock.recv(65536)
            received += chunk
            if not chunk:
                break
        except BlockingIOError:
            pass
        except OSError:
            break
        finally:
            sock.setblocking(True)
    return received


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of HTTP/1.1 responses (each with a Content-Length)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), raw[:300]
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return out


def gateway_error(raw: bytes, status: int) -> None:
    (answer,) = responses(raw)
    assert answer[0] == status, answer
    assert answer[1]["content-type"] == "application/json"
    assert set(json.loads(answer[2])) == {"message"}


def req(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("utf-8") + b"\r\n" + body


@pytest.mark.parametrize("length", ["abc", "-1", "+5", "5 5", "0x10", "1e3", "", "9" * 30, "٣"])
def test_content_length_that_is_not_a_number_is_400(served: ServeProcess, length: str) -> None:
    raw = exchange(served.base_url, req(f"POST /search HTTP/1.1\nHost: 127.0.0.1\nContent-Length: {length}\n", b"{}"))
    gateway_error(raw, 400)


def test_two_content_lengths_and_a_short_body_are_400(served: ServeProcess) -> None:
    two = req("POST /search HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 2\nContent-Length: 3\n", b"{}")
    gateway_error(exchange(served.base_url, two), 400)
    short = req(
        "POST /search HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nContent-Length: 100\n", b'{"q"'
    )
    gateway_error(exchange(served.base_url, short), 400)


def test_a_body_longer_than_its_length_is_a_request_then_garbage(served: ServeProcess) -> None:
    data = req(
        "POST /search HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nContent-Length: 2\n", b"{}garbage\r\n"
    )
    (first, second) = responses(exchange(served.base_url, data))
    assert first[0] == 422 and json.loads(first[2])["error"] == "validation_error"
    assert second[0] == 400 and json.loads(second[2]) == {"message": "Bad Request"}


def test_content_length_over_10_mb_is_413(served: ServeProcess) -> None:
    gateway_error(
        exchange(served.base_url, req("POST /search HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 10485761\n")), 413
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [("Transfer-Encoding: chunked\n", 411), ("Transfer-Encoding: gzip, chunked\n", 411),
     ("Transfer-Encoding: chunked\nContent-Length: 4\n", 400)],
)  # fmt: skip
def test_chunked_bodies_are_refused(served: ServeProcess, headers: str, status: int) -> None:
    raw = exchange(served.base_url, req(f"POST /search HTTP/1.1\nHost: 127.0.0.1\n{headers}", b"2\r\n{}\r\n0\r\n\r\n"))
    gateway_error(raw, status)


@pytest.mark.parametrize(
    "line",
    ["TRACE / HTTP/1.1", "TRACE /search HTTP/1.1", "CONNECT example.com:443 HTTP/1.1", "PROPFIND /search HTTP/1.1",
     "MKCOL /x HTTP/1.1", "DELETE /search HTTP/1.1", "PUT /health HTTP/1.1", "BREW /pot HTTP/1.1",
     "OPTIONS * HTTP/1.1", "GET http://127.0.0.1/nowhere HTTP/1.1"],
)  # fmt: skip
def test_methods_without_a_route_are_403(served: ServeProcess, line: str) -> None:
    raw = exchange(served.base_url, req(f"{line}\nHost: 127.0.0.1\n"))
    (answer,) = responses(raw)
    assert answer[0] == 403 and json.loads(answer[2]) == {"message": "Missing Authentication Token"}


@pytest.mark.parametrize(
    "data",
    [b"GET /health\r\n", b"GET /\r\n\r\n", b"HELLO\r\n\r\n", b"GET / HTTP/2.0\r\n\r\n", b"GET / HTTP/1.1.1\r\n\r\n",
     b"GET / FTP/1.0\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)), b"\r\n\r\n",
     b"\x00\x00\x00\x00\r\n\r\n", b"GET / HTTP/1.1 extra\r\n\r\n", b"GET http://[::1/health HTTP/1.1\r\n\r\n",
     b"GET /\xff\xfe\x00 HTTP/1.1\r\n\xff: \xfe\r\n\r\n"],
)  # fmt: skip
def test_garbage_and_other_protocols_are_400_or_a_quiet_close(served: ServeProcess, data: bytes) -> None:
    raw = exchange(served.base_url, data)
    if raw:
        for status, headers, body in responses(raw):
            assert status in (400, 403) and headers["content-type"] == "application/json" and b"message" in body


def test_http_09_gets_a_quiet_close(served: ServeProcess) -> None:
    assert exchange(served.base_url, b"GET /health\r\n") == b""


@pytest.mark.parametrize(
    "headers",
    ["X-Big: " + "a" * 70_000 + "\n", "".join(f"X-H{i}: v\n" for i in range(150)),
     "".join(f"X-H{i}: " + "b" * 1000 + "\n" for i in range(12))],
)  # fmt: skip
def test_huge_headers_are_431(served: ServeProcess, headers: str) -> None:
    gateway_error(exchange(served.base_url, req(f"GET /health HTTP/1.1\nHost: 127.0.0.1\n{headers}")), 431)


def test_a_request_line_over_64_kib_is_414(served: ServeProcess) -> None:
    gateway_error(exchange(served.base_url, req("GET /health?q=" + "x" * 70_000 + " HTTP/1.1\nHost: 127.0.0.1\n")), 414)


def test_clients_that_hang_up_mid_answer(served: ServeProcess) -> None:
    """`curl .../docs | head`: the client reads a little and resets the connection; then the server still answers."""
    for path in ("/docs", "/openapi.json", "/health"):
        for _ in range(3):
            sock = socket.create_connection(address(served.base_url), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            sock.sendall(req(f"GET {path} HTTP/1.1\nHost: 127.0.0.1\n"))
            assert sock.recv(64).startswith(b"HTTP/1.1 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close → RST
            sock.close()
        sock = socket.create_connection(address(served.base_url), timeout=10)
        sock.sendall(req(f"GET {path} HTTP/1.1\nHost: 127.0.0.1\n"))
        sock.close()  # before reading anything
    time.sleep(0.5)
    assert httpx.get(f"{served.base_url}/health", timeout=10).status_code == 200
    assert "Traceback" not in served.text()


def test_a_stalled_client_is_disconnected_quietly() -> None:
    """A body that never arrives: the connection is closed after the idle timeout, with nothing sent."""
    api = LocalApi(Template(ROOT / "template.yaml"))
    server = make_server(api, "127.0.0.1", 0, idle_timeout_s=1.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        t0 = time.monotonic()
        stalled = req("POST /search HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 100\n", b"{")
        assert exchange(base, stalled, half_close=False) == b""
        assert (
            exchange(base, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n", half_close=False) == b""
        )  # headers unfinished
        assert time.monotonic() - t0 < 10  # two idle timeouts of 1 s; a stalled client never ends by itself
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_client_dripping_its_request_is_disconnected_at_the_request_limit(where: str) -> None:
    """A request sent one byte every 0.3 s (each read within the idle timeout of 1 s), in its headers or its body:
    the connection is answered 408 and closed at the whole request's limit (2 s here; 30 s by default; closed quietly
    before round 29), and
    the server answers the next client (the idle timeout bounded each read, not the request: a header dripped a byte
    every 9 s held its connection and thread for a day, a body for as long as its Content-Length said). A request
    sent whole is answered, however long its route then takes."""
    api = LocalApi(Template(ROOT / "template.yaml"))
    server = make_server(api, "127.0.0.1", 0, idle_timeout_s=1.0, read_limit_s=2.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        head = b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n"
        t0 = time.monotonic()
        with socket.create_connection(address(base), timeout=15) as sock:
            sock.sendall(head if where == "body" else head[:20])
            if where == "body":
                sock.sendall(b"\r\n{")
            received = drip(sock, b"x" if where == "body" else b"X", 12)
        took = time.monotonic() - t0
        assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), (took, received)
        assert b"Connection: close\r\n" in received and received.endswith(b'{"message": "Request Timeout"}')
        assert took < 10, took  # the 2 s limit (checked every 0.5 s) with a 5x margin for a loaded machine
        answer = exchange(base, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert responses(answer)[0][0] == 200
    finally:
        server.shutdown()
        server.server_close()


OTHER_HOSTS = ["evil.example", "evil.example:3000", "127.0.0.1.evil.example", "localhost.evil.example", "10.0.0.7",
               "[::2]:3000", "x", "", "[::1", "0.0.0.0:3000"]  # fmt: skip
THIS_MACHINE = ["127.0.0.1", "127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}", "127.9.9.9",
                "app.localhost:{port}"]  # fmt: skip


@pytest.mark.parametrize("host", OTHER_HOSTS)
@pytest.mark.parametrize("path", ["/health", "/search?q=x", "/notes", "/whoami", "/docs", "/mcp"])
def test_requests_naming_another_host_are_403_on_loopback(served: ServeProcess, host: str, path: str) -> None:
    """DNS rebinding: a web page of another site whose name now resolves to 127.0.0.1 reaches ``kbsearch serve``
    with its own ``Host``. Bound to loopback, every route answers such a request 403 (they were answered: the
    page could read the KB); requests naming this machine are answered."""
    gateway_error(exchange(served.base_url, req(f"GET {path} HTTP/1.1\nHost: {host}\n")), 403)
    if host and host != "[::1":  # the host in the request target (absolute form), the Host header this machine's
        target = f"GET http://{host}{path} HTTP/1.1\nHost: 127.0.0.1\n"
        gateway_error(exchange(served.base_url, req(target)), 403)
    if path == "/mcp":  # the rebound page's own origin: what /mcp's Origin check lets through, the Host check stops
        body = b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}'
        head = f"POST /mcp HTTP/1.1\nHost: {host}\nOrigin: http://{host}\nContent-Length: {len(body)}\n"
        gateway_error(exchange(served.base_url, req(head, body)), 403)


@pytest.mark.parametrize("host", THIS_MACHINE)
def test_requests_naming_this_machine_are_answered(served: ServeProcess, host: str) -> None:
    port = address(served.base_url)[1]
    ((status, _, body),) = responses(
        exchange(served.base_url, req(f"GET /health HTTP/1.1\nHost: {host.format(port=port)}\n"))
    )
    assert status == 200 and json.loads(body)["status"] == "ok"
    ((status, _, _),) = responses(exchange(served.base_url, b"GET /health HTTP/1.0\r\n\r\n"))  # no Host at all
    assert status == 200


def test_bound_beyond_loopback_every_host_is_answered() -> None:
    """``--host 0.0.0.0`` (a container, another machine): the names it is reached by cannot be known, so the Host
    is not checked (README says so)."""
    server = make_server(LocalApi(Template(ROOT / "template.yaml")), "0.0.0.0", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        raw = exchange(
            f"http://127.0.0.1:{server.server_address[1]}", req("GET /health HTTP/1.1\nHost: evil.example\n")
        )
        ((status, _, _),) = responses(raw)
        assert status == 200
    finally:
        server.shutdown()
        server.server_close()


#: A NUL in a header's value or name, on the Host (where the loopback check answered 403 and kept the connection),
#: the API key (403 from the key check), a header the function reads or one nothing reads; a line that is no header
#: before the Host (the headers' parser stopped there: the Host was dropped and a foreign one answered).
NUL_HEADERS = ["Host: 127.0.0.1\x00.evil.example", "Host: localhost\x00", "Host: \x00", "x-api-key: key\x00",
               "Content-Type: application/json\x00; charset=utf-8", "X-Anything: a\x00b",
               "Origin: http://127.0.0.1\x00.evil.example", "X-\x00: 1\nHost: evil.example",
               "no colon here\nHost: evil.example", "\x00\nHost: evil.example"]  # fmt: skip


@pytest.mark.parametrize("header", NUL_HEADERS)
@pytest.mark.parametrize("path", ["/health", "/search?q=x", "/mcp"])
def test_a_header_holding_a_nul_is_400_and_the_connection_closed(served: ServeProcess, header: str, path: str) -> None:
    """RFC 9110 (5.5): a field value holding NUL is invalid and is rejected; the server answers 400 with
    ``Connection: close`` and reads nothing more from that connection (a NUL in the Host was answered 403 and the
    connection kept open for the client's next request, which was answered; a line that is no header ended the
    headers there, the Host after it dropped: `evil.example` answered as a request with no Host)."""
    host = "" if "Host:" in header else "Host: 127.0.0.1\n"
    first = req(f"GET {path} HTTP/1.1\n{host}{header}\n")
    second = req("GET /health HTTP/1.1\nHost: 127.0.0.1\n")
    raw = exchange(served.base_url, first + second)
    (answer,) = responses(raw)  # one answer: the second request on the connection is never read
    assert answer[0] == 400 and answer[1]["connection"] == "close", answer
    assert set(json.loads(answer[2])) == {"message"}


#: Host headers RFC 9112 (3.2) tells a server to refuse: two (the loopback check read the first: `127.0.0.1` then
#: `evil.example` was answered), none in HTTP/1.1; and a bare CR inside a field value (RFC 9110 5.5).
HOST_LINES = ["Host: 127.0.0.1\nHost: evil.example\n", "Host: evil.example\nHost: 127.0.0.1\n",
              "Host: 127.0.0.1\nHost: 127.0.0.1\n", "Host: localhost\nhost: localhost\n", "X-Nothing: 1\n",
              "Host: 127.0.0.1\rX-Injected: 1\n", "Host: 127.0.0.1\nX-A: a\rb\n"]  # fmt: skip


@pytest.mark.parametrize("lines", HOST_LINES)
def test_two_hosts_or_none_in_http_11_are_400_and_the_connection_closed(served: ServeProcess, lines: str) -> None:
    raw = exchange(served.base_url, req(f"GET /health HTTP/1.1\n{lines}") + req("GET /health HTTP/1.1\nHost: [::1]\n"))
    (answer,) = responses(raw)
    assert answer[0] == 400 and answer[1]["connection"] == "close", answer
    ((status, _, _),) = responses(exchange(served.base_url, b"GET /health HTTP/1.0\r\n\r\n"))  # HTTP/1.0: no Host
    assert status == 200


@pytest.fixture(scope="module")
def served_kb(tmp_path_factory: pytest.TempPathFactory, bm25_index: Path) -> Iterator[ServeProcess]:
    """``kbsearch serve`` over sample-kb indexed (BM25), for the tests that need a search to find something."""
    store = tmp_path_factory.mktemp("socket-kb") / "q"
    shutil.copytree(bm25_index, store)
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"))
    with serve_process(env, cwd=ROOT) as process:
        yield process
    assert "Traceback" not in process.text(), process.text()[-3000:]


def test_a_request_target_written_in_utf8_is_read_as_utf8(served_kb: ServeProcess) -> None:
    """``curl '.../search?q=ротация'`` sends the query's UTF-8 bytes unencoded, a browser and API Gateway's edge
    percent-encode them: both are one search. http.server reads the request line as Latin-1, so each byte was a
    letter of its own (``Ñ\x80Ð¾...`` searched: 200, nothing found) and a note path so written a 404."""
    word, path = "ротация ключей", "ru/ранбуки/Ротация ключей.md"

    def get(target: bytes) -> tuple[int, dict[str, Any]]:
        head = b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        ((status, _, body),) = responses(exchange(served_kb.base_url, head))
        return status, json.loads(body)

    for query in (word.encode(), quote(word).encode()):
        status, body = get(b"/search?q=" + query.replace(b" ", b"+"))
        assert status == 200 and body["query"] == word, body
        assert body["results"] and body["results"][0]["path"] == path
    for target in (path.replace(" ", "%20").encode(), quote(path).encode()):  # letters as they are, or escaped
        status, body = get(b"/notes/" + target)
        assert status == 200 and body["path"] == path, body
    status, body = get(b"/notes/caf\xe9.md")  # a byte no UTF-8 holds: as its escape %E9 is answered
    assert status == 400 and body["error"] == "bad_path", body


@pytest.mark.parametrize("body", [b"", b'{"query": "snapshot"}'])
def test_an_empty_line_before_a_request_is_ignored(served_kb: ServeProcess, body: bytes) -> None:
    """RFC 9112 2.2: a server ignores an empty line before a request line (some clients send a CRLF after a POST
    body). It was read as an empty request and the connection closed: the request after it was never answered."""
    first = (
        req(f"POST /search HTTP/1.1\nHost: 127.0.0.1\nContent-Length: {len(body)}\n", body)
        if body
        else req("GET /health HTTP/1.1\nHost: 127.0.0.1\n")
    )
    raw = exchange(served_kb.base_url, first + b"\r\n" + req("GET /health HTTP/1.1\nHost: 127.0.0.1\n"))
    assert [status for status, _, _ in responses(raw)] == [200, 200]
    (answer,) = responses(exchange(served_kb.base_url, b"\r\n" + req("GET /health HTTP/1.1\nHost: 127.0.0.1\n")))
    assert answer[0] == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [("Content-Length: 10485761\n", 413), ("Transfer-Encoding: chunked\n", 411), ("Content-Length: x\n", 400),
     ("Content-Length: 2\nContent-Length: 3\n", 400), ("Content-Length: 2\n" + "X-Big: " + "a" * 11_000 + "\n", 431)],
)  # fmt: skip
def test_a_body_that_will_be_refused_gets_no_100_continue(served: ServeProcess, headers: str, status: int) -> None:
    """``Expect: 100-continue``: the client waits for "100 Continue" before sending its body. For a body refused
    unread (too large, chunked, a broken length, headers too large) the final status comes instead (RFC 9110
    10.1.1); "100 Continue" was sent first, so a client sent its whole body into a connection being closed."""
    head = f"POST /search HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nExpect: 100-continue\n{headers}"
    raw = exchange(served.base_url, req(head))
    assert not raw.startswith(b"HTTP/1.1 100"), raw[:200]
    gateway_error(raw, status)


def test_a_body_that_can_be_read_gets_100_continue_then_its_answer(served_kb: ServeProcess) -> None:
    body = b'{"query": "snapshot"}'
    head = f"POST /search HTTP/1.1\nHost: 127.0.0.1\nExpect: 100-continue\nContent-Length: {len(body)}\n"
    with socket.create_connection(address(served_kb.base_url), timeout=15) as sock:
        sock.sendall(req(head))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        sock.shutdown(socket.SHUT_WR)
        raw = b"".join(iter(lambda: sock.recv(65536), b""))
    ((status, _, answer),) = responses(raw)
    assert status == 200 and json.loads(answer)["results"]


@pytest.mark.parametrize(
    "target", ["//health", "///health?x=1", "http://127.0.0.1//health", "http://localhost///health?x=1"]
)
def test_leading_slashes_are_the_path_not_a_host(served: ServeProcess, target: str) -> None:
    """`curl http://127.0.0.1:3000//health` means the path `/health`. A target whose path starts with `//` was read
    by `urlsplit` as naming the host `health` (403 "Forbidden", on a Python older than 3.11.4, whose http.server does
    not fold the slashes first) or, in absolute form, as no route (403 "Missing Authentication Token"): a 403 that
    reads as a key problem. Leading slashes fold into one now, as http.server folds them."""
    ((status, headers, body),) = responses(exchange(served.base_url, req(f"GET {target} HTTP/1.1\nHost: 127.0.0.1\n")))
    assert status == 200 and json.loads(body)["status"] == "ok", (status, body)
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("line", "status"),
    [("get /health HTTP/1.1", 400), ("Get /health HTTP/1.1", 400), ("post /search HTTP/1.1", 400),
     ("GET /health HTTP/1.9", 505), ("GET /health HTTP/1.2", 505), ("GET /health HTTP/0.9", 505),
     ("GET /health HTTP/1.01", 400), ("GET /health HTTP/01.1", 400)],
)  # fmt: skip
def test_a_lower_case_method_or_an_unserved_version_is_refused(served: ServeProcess, line: str, status: int) -> None:
    """http.server answered `get /health` as GET (methods are case-sensitive, RFC 9110 9.1: API Gateway's edge
    refuses it), `HTTP/1.9` and `HTTP/1.01` as HTTP/1.1, and `HTTP/0.9` in a three-word line with a bare body and
    no status line. Now 400 for a method with a lower-case letter or a malformed version, 505 for a version other
    than HTTP/1.0 and 1.1, each in API Gateway's JSON, the connection closed."""
    raw = exchange(served.base_url, req(f"{line}\nHost: 127.0.0.1\n"))
    gateway_error(raw, status)
    assert responses(raw)[0][1]["connection"] == "close"


def test_the_server_header_does_not_name_the_python_version(served: ServeProcess) -> None:
    """`Server: kbsearch-local Python/3.11.7` told every client the interpreter's exact version."""
    for data in (req("GET /health HTTP/1.1\nHost: 127.0.0.1\n"), req("get /health HTTP/1.1\nHost: 127.0.0.1\n")):
        ((_, headers, _),) = responses(exchange(served.base_url, data))
        assert headers["server"] == "kbsearch-local", headers
