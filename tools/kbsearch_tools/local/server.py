"""``kbsearch serve``: the template's API routes over HTTP without Docker (what ``sam local start-api`` does).

Each request becomes an API Gateway REST proxy event for the function that owns the route; the result becomes
the HTTP response. Like API Gateway: unknown routes answer 403 "Missing Authentication Token", routes that
require an API key answer 403 "Forbidden" without a valid ``x-api-key`` (when ``KB_LOCAL_API_KEYS`` is set),
bodies over 10 MB answer 413. Each function is one warm container: its calls run one at a time.

At the socket it answers as API Gateway does, in its ``{"message": ...}`` JSON, never with a traceback in the log
or an HTML page: a header holding a NUL, CR or LF, a line among the headers that is none, two ``Host`` headers or an
HTTP/1.1 request without one → 400 and the connection closed, a ``Content-Length`` that is not one
number → 400, a body shorter than its ``Content-Length`` →
400 (or a quiet close when the client stalls past the idle timeout), a request still arriving :data:`REQUEST_READ_S`
after its first byte (a byte at a time) → 408 and the connection closed, ``Transfer-Encoding`` → 411 (400 with a
``Content-Length`` too), headers over 10 KiB → 431, a request line that is not HTTP/1.x or a method in lower case
(``get``) → 400 (HTTP/0.9: a quiet close), HTTP/1.x other than 1.0 and 1.1 (``HTTP/1.9``) → 505, any method the
template has no route for (TRACE, CONNECT, PROPFIND, ...) → 403 "Missing Authentication Token". A client that
hangs up (``curl .../docs | head``) ends its connection quietly. Bytes outside ASCII in the request line are read
as their percent-escapes (``curl '.../search?q=ротация'``); an empty line before a request line is ignored (RFC 9112
2.2); ``Expect: 100-continue`` gets no "100 Continue" for a body that is refused unread; a target's leading slashes
are one (``//health`` is ``/health``, never a host). ``Server`` names no Python version. At most
:func:`connection_limit` connections are served at once; one past it closes the connection that has waited longest
for a request (idle at least :data:`IDLE_EVICT_AFTER_S` with nothing come on it: a client's kept-alive connection
between requests, or one that has sent nothing yet) and is served; when none has, the one whose request has been
arriving longest, :data:`SLOW_EVICT_AFTER_S` or more, is answered 408 and closed to make room; else the new one is
answered 429 and closed.

Bound to a loopback address (the default, 127.0.0.1), it answers only requests whose ``Host`` (and target, when in
absolute form) names this machine (``localhost``, a loopback address): anything else is 403 "Forbidden", so a web
page whose domain an attacker re-points at 127.0.0.1 (DNS rebinding) cannot read the KB through it. Bound elsewhere (``--host 0.0.0.0``, a
container), every Host is answered.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import math
import os
import re
import secrets
import select
import socket
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

from kbsearch_tools import is_loopback
from kbsearch_tools.local.apigw import HttpRequest, HttpResponse, build_event, error_response, parse_result
from kbsearch_tools.local.keys import caller_mapping, local_key_id
from kbsearch_tools.local.runtime import LocalFunction, function_environment
from kbsearch_tools.local.template import ApiRoute, Template

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_HEADER_BYTES = 10 * 1024  # API Gateway's limit on the total size of request headers
IDLE_TIMEOUT_S = 10.0  # a client that sends nothing (or stalls mid-body) for this long is disconnected
#: A client has this long to send a whole request (its line, headers and body, from its first byte);
#: one that drips it (a byte within each idle timeout) is answered 408 and closed (nginx's ``client_header_timeout``
#: answers so). The idle timeout bounds each read, not the request: a header sent one byte every 9 s held its
#: connection and thread for the ~10 KiB headers may take (a day), a body one byte every 9 s for as long as its
#: Content-Length (10 MB) said.
REQUEST_READ_S = 30.0
#: When every connection is taken and none is idle, a request still arriving after this long (its first byte came
#: this long ago, the rest not yet) is answered 408 and its connection closed to make room for a new one: a client
#: dripping its requests a byte at a time on every connection held every slot (busy connections were never closed),
#: a request up to :data:`REQUEST_READ_S` each, again and again. A client on a network a server is run on sends a
#: request's head in milliseconds and its largest body (10 MB) in a few seconds.
SLOW_EVICT_AFTER_S = 5.0
#: The most connections served at once (each its thread and file descriptor; :func:`connection_limit`): a connection
#: past it takes the place of the connection idle longest (:data:`IDLE_EVICT_AFTER_S`), else is answered 429 and closed.
MAX_CONNECTIONS = 512
#: A connection waiting this long for a request (between two of a kept-alive connection, or since it was accepted) is
#: closed to make room for a new one when :data:`MAX_CONNECTIONS` are open (RFC 9112 9.3: a server may close an idle
#: connection at any time; a client retries a request it had not yet sent). Not at once: a burst of clients that have
#: just connected, or a pool reusing a connection it was just answered on, are about to send theirs.
IDLE_EVICT_AFTER_S = 0.1
FILES_KEPT = 128  # file descriptors left to the rest of the process (the store's files, the functions' sockets)
ACCEPT_BACKOFF_S = 0.05  # the wait after an accept() that failed for want of a file descriptor
REFUSAL_LOG_S = 60.0
_CONTENT_LENGTH = re.compile(r"[0-9]{1,12}")
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_GATEWAY_MESSAGES = {
    400: "Bad Request", 403: "Missing Authentication Token", 408: "Request Timeout", 411: "Length Required",
    413: "Request Too Long", 414: "Request-URI Too Long", 431: "Request Header Fields Too Large",
    505: "HTTP Version Not Supported",
}  # fmt: skip
_HTTP_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")  # RFC 9112 2.3: one digit each side of the dot


class LocalApi:
    """Routes requests to the template's functions (loaded on first use) and applies API Gateway's checks."""

    def __init__(
        self,
        template: Template,
        api_keys: Mapping[str, tuple[str, ...]] | None = None,
        env_vars: Mapping[str, Mapping[str, str]] | None = None,
        use_ssm: bool = False,
    ) -> None:
        self.template = template
        self.routes = template.api_routes()
        self.stage = template.stage_name()
        self.api_keys = dict(api_keys or {})
        self._env_vars = env_vars
        self._use_ssm = use_ssm
        self._functions: dict[str, LocalFunction] = {}
        self._lock = threading.Lock()

    def function(self, logical_id: str) -> LocalFunction:
        with self._lock:
            fn = self._functions.get(logical_id)
            if fn is None:
                spec = self.template.function(logical_id)
                env = function_environment(
                    spec, self.template.region, os.environ, self._env_vars, use_ssm=self._use_ssm
                )
                mapping = caller_mapping(self.api_keys, env.get("ACCESS_GROUPS", os.environ.get("ACCESS_GROUPS")))
                if mapping is not None:
                    env["ACCESS_GROUPS"] = mapping
                fn = self._functions[logical_id] = LocalFunction(spec, self.template.region, env)
            return fn

    def _route(self, method: str, path: str) -> tuple[ApiRoute, dict[str, str]] | None:
        for route in self.routes:
            params = route.matches(method, path)
            if params is not None:
                return route, params
        return None

    def _key_ok(self, request: HttpRequest) -> str | None:
        named = _api_keys_named(request)
        given = named[0] if named else next((v for k, v in request.headers if k.lower() == "x-api-key"), None)
        if given is None:
            return None
        for key in self.api_keys:
            if secrets.compare_digest(given.encode(), key.encode()):
                return key
        return None

    def refusal(self, request: HttpRequest) -> HttpResponse | None:
        """API Gateway's answer to a request it refuses from its line and headers (no route, no valid key), or None.
        Asked before the body too (``Expect: 100-continue``): such a request never gets "100 Continue"."""
        found = self._route(request.method, request.path)
        if found is None:
            return error_response(403, "Missing Authentication Token")
        if found[0].api_key_required and self.api_keys:
            if len(_api_keys_named(request)) > 1:  # which key's scope was meant cannot be told: the first was taken
                return error_response(400, "Bad Request: x-api-key names more than one key; send one")
            if self._key_ok(request) is None:
                return error_response(403, "Forbidden")
        return None

    def handle(self, request: HttpRequest) -> HttpResponse:
        if len(request.body) > MAX_BODY_BYTES:
            return error_response(413, "Request Too Long")
        refused = self.refusal(request)
        if refused is not None:
            return refused
        found = self._route(request.method, request.path)
        assert found is not None  # refusal() answered a request with no route
        route, params = found
        api_key = self._key_ok(request) if route.api_key_required and self.api_keys else None
        event = build_event(request, route.path, params, self.stage, api_key, stage_in_path=False)
        if api_key is not None:
            event["requestContext"]["identity"]["apiKeyId"] = local_key_id(api_key)
        try:
            result = self.function(route.function_id).invoke(event)
        except Exception:
            logger.exception("%s raised; answering 502 as API Gateway does", route.function_id)
            return error_response(502, "Internal server error")
        return parse_result(result)


def _connection_options(values: list[str]) -> set[str]:
    """The connection options of a request's ``Connection`` headers (RFC 9110 7.6.1: a comma list, any case)."""
    return {option.strip().lower() for value in values for option in value.split(",")}


def _api_keys_named(request: HttpRequest) -> list[str]:
    """The different keys a request names in ``x-api-key``, in order: its lines, and the members of a comma-separated
    one (RFC 9110 5.3; a local key holds no comma, ``KB_LOCAL_API_KEYS`` separates keys with it). One key sent twice
    (a proxy repeating the header, or ``k, k``) is one key."""
    members = (m.strip() for k, v in request.headers if k.lower() == "x-api-key" for m in v.split(","))
    return list(dict.fromkeys(m for m in members if m))


class _HeaderLines:
    """The request's stream as ``http.client.parse_headers`` reads it (line by line), keeping the lines it read: the
    bytes of the header lines, which the parsed headers no longer show."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.lines: list[bytes] = []

    def readline(self, limit: int = -1) -> bytes:
        line: bytes = self.stream.readline(limit)
        self.lines.append(line)
        return line


class _Handler(BaseHTTPRequestHandler):
    server_version = "kbsearch-local"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls
    timeout = IDLE_TIMEOUT_S  # socket reads and writes: a stalled client is dropped, not waited for
    api: LocalApi
    header_lines: tuple[bytes, ...] = ()  # the request's header lines as sent (parse_request)
    raw_requestline: bytes  # http.server's, set by handle_one_request before parse_request
    loopback_only = False  # bound to a loopback address: only requests naming this machine in Host are answered
    refused_unread: HttpResponse | None = None  # a request refused before its body, without "100 Continue"

    def handle_one_request(self) -> None:
        server = cast(_Server, self.server)
        server.watch(self.connection)  # until the request is read (_serve), or this exchange ends
        # this exchange's request, until its line is parsed: a 408 to one timed out in its line (``GET /hea``) is
        # written as HTTP/1.1 (it raised AttributeError: no version yet) and has its body (the last request on the
        # connection may have been a HEAD), and the access log names no earlier request
        self.command, self.request_version, self.requestline = "", "HTTP/1.1", ""
        arrived = False
        try:
            arrived = self._request_arrives(server)
            if arrived:
                super().handle_one_request()
        finally:
            if not server.unwatch(self.connection):  # its request timed out (:meth:`_Server.time_out`)
                self.close_connection = True
                if arrived:  # begun: 408 (a connection that sent nothing of a request is closed quietly)
                    with contextlib.suppress(OSError):
                        self._write(error_response(408, _GATEWAY_MESSAGES[408]), close=True)

    def _request_arrives(self, server: _Server) -> bool:
        """Waits for the first byte of the next request (or of the first), the connection idle meanwhile: the server
        may close it to make room for another (:meth:`_Server.process_request`). False when the connection ended
        (the client closed it, the server did, or nothing came within the idle timeout)."""
        server.idle(self.connection)
        arrived = False
        try:
            # buffered: a pipelined request already read is there at once
            arrived = bool(cast(io.BufferedReader, self.rfile).peek(1))
        except TimeoutError:
            logger.debug("%s: idle past the timeout; closed", self.client_address[0])
        finally:
            arrived = server.busy(self.connection) and arrived
        if arrived:
            server.arriving(self.connection)
        if not arrived:
            self.close_connection = True
        return arrived

    def handle(self) -> None:
        try:
            super().handle()
        except OSError as exc:  # the client hung up, reset or stalled: nobody is left to answer
            logger.debug("%s: connection ended (%s)", self.client_address[0], type(exc).__name__)
            self.close_connection = True

    def parse_request(self) -> bool:
        self.refused_unread = None
        if self.raw_requestline in (b"\r\n", b"\n"):
            # RFC 9112 2.2: an empty line before a request line is ignored (a client's CRLF after a POST body); it was
            # read as an empty request and the connection closed, unanswered, with the next request on it
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return False
        # Each byte outside ASCII percent-encoded, as a browser and API Gateway's edge send them: ``curl
        # '.../search?q=отпуск'`` sends the query's UTF-8 as it is, which http.server read as Latin-1, one letter a
        # byte (`Ð¾ÑÐ¿ÑÑÐº` searched: a 200 with nothing in it), and split at the bytes Latin-1 reads as spaces
        # (0xA0, 0x85: the `Р` of a note path, `à`: a 400). Now the query and the path are UTF-8 where escaped, and a
        # byte no UTF-8 holds gets the answer its escape gets.
        self.raw_requestline = _NON_ASCII.sub(lambda m: b"%%%02X" % m[0][0], self.raw_requestline)
        words = str(self.raw_requestline, "iso-8859-1").split()
        if len(words) == 2:  # HTTP/0.9 has no status line or headers to answer with: close quietly
            self.close_connection = True
            return False
        reader, self.rfile = self.rfile, _HeaderLines(self.rfile)  # type: ignore[assignment]
        try:
            parsed = super().parse_request()
        finally:
            self.header_lines = tuple(cast(_HeaderLines, self.rfile).lines)
            self.rfile = reader
        if parsed and "close" in _connection_options(self.headers.get_all("Connection") or []):
            # RFC 9112 9.6: `close` among the options closes the connection after the answer; http.server compared
            # the first Connection header whole, so `keep-alive, close` (or a second header saying close) kept it open
            # and a client reading to the end of the answer waited out the idle timeout
            self.close_connection = True
        return parsed and self._line_answerable()

    def _line_answerable(self) -> bool:
        """Whether the request line is one API Gateway's edge answers, else refused (False). http.server took a
        lower-case method (`get /health`) for GET, read `HTTP/1.9` (and `HTTP/1.01`) as HTTP/1.1, and answered
        `HTTP/0.9` with a bare body and no status line. Methods are case-sensitive (RFC 9110 9.1): one with a
        lower-case letter is no method of the API's, a 400; a version is `HTTP/` digit `.` digit (else 400), and
        of those only HTTP/1.0 and HTTP/1.1 are served (505 for the rest; a major version over 1 is http.server's
        505, answered 400 as before in :meth:`send_error`)."""
        version = self.request_version
        status = None
        if self.command != self.command.upper() or not _HTTP_VERSION.fullmatch(version):
            status = 400
        elif version not in ("HTTP/1.0", "HTTP/1.1"):
            status = 505
        if status is None:
            return True
        self.request_version = "HTTP/1.1"  # a status line and headers, whatever was sent
        self._fail(status)
        return False

    def version_string(self) -> str:
        """The ``Server`` header: the server's name alone (http.server adds the Python version after it)."""
        return self.server_version

    def __getattr__(self, name: str) -> Any:
        # Every method reaches the router (TRACE, CONNECT, PROPFIND, ...): API Gateway answers a method a route does
        # not have with 403 "Missing Authentication Token", not an HTML 501.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, header lines too long, ...) in API Gateway's JSON shape."""
        if self.request_version in ("", "HTTP/0.9") or not self.request_version.startswith("HTTP/1."):
            self.request_version = "HTTP/1.1"  # answer with a status line and headers whatever was sent
        self._fail(400 if code >= 500 else code)  # 501 (unknown method syntax) and 505 (HTTP/2 line) are 400s there

    def _fail(self, status: int) -> None:
        self._fail_with(error_response(status, _GATEWAY_MESSAGES.get(status, "Bad Request")))

    def _fail_with(self, response: HttpResponse) -> None:
        self.close_connection = True
        self._send(response, close=True)

    def _framing_refusal(self) -> int | None:
        """The status refusing the body as the headers frame it (no body read), or None when it can be read."""
        lengths = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding") is not None:
            return 400 if lengths else 411
        if lengths and (len(set(lengths)) != 1 or not _CONTENT_LENGTH.fullmatch(lengths[0].strip())):
            return 400
        return 413 if lengths and int(lengths[0]) > MAX_BODY_BYTES else None

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue`` asks whether to send the body: not for one that will be refused unread (RFC 9110
        10.1.1: the final status instead). "100 Continue" went first whatever the headers said, so a client sent
        its 20 MB before the 413, into a connection being closed."""
        if self._framing_refusal() is not None or self._header_bytes() > MAX_HEADER_BYTES:
            return True  # no 100: _serve answers with the refusal at once
        # nor for a request API Gateway refuses from its headers (no route, a wrong or missing key, a Host not this
        # machine's): "100 Continue" went first and the client sent its body to hear the 403
        try:
            request = self._request(urlsplit(_target(self.path)), b"")
        except ValueError:
            return True  # _serve answers its 400
        self.refused_unread = self._host_refusal(request) or self.api.refusal(request)
        if self.refused_unread is not None:
            return True
        return super().handle_expect_100()

    def _body(self) -> bytes | None:
        """The request body, or None after answering (or dropping) a request whose framing is wrong."""
        refusal = self._framing_refusal()
        if refusal is not None:
            self._fail(refusal)
            return None
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return b""
        length = int(lengths[0])
        body = self.rfile.read(length) if length else b""
        if len(body) != length:  # the client ended its side before sending the whole body
            self._fail(400)
            return None
        return body

    def _header_bytes(self) -> int:
        return sum(len(k) + len(v) for k, v in self.headers.items())

    def _serve(self) -> None:
        if self._header_bytes() > MAX_HEADER_BYTES:
            self._fail(431)
            return
        if self._malformed_headers():
            self._fail(400)
            return
        try:
            url = urlsplit(_target(self.path))
        except ValueError:  # e.g. an absolute URL with a broken IPv6 host
            self._fail(400)
            return
        if self.refused_unread is not None:  # refused without "100 Continue": the body may or may not follow
            self._fail_with(self.refused_unread)
            return
        body = self._body()
        if body is None:
            return
        if not cast(_Server, self.server).unwatch(self.connection):  # read whole: the route takes as long as it takes
            return  # (timed out meanwhile: answered 408, handle_one_request)
        request = self._request(url, body)
        refused = self._host_refusal(request)
        self._send(refused or self.api.handle(request))

    def _request(self, url: Any, body: bytes) -> HttpRequest:
        return HttpRequest(
            method=self.command,
            path=_target(url.path or "/"),
            query=url.query,
            # RFC 9110 5.5: the white space around a field value is not part of it (http.server kept the trailing:
            # `x-api-key: key ` pasted with a space was no key, a 403)
            headers=[(name, value.strip(" \t")) for name, value in self.headers.items()],
            body=body,
            source_ip=self.client_address[0],
        )

    def _host_refusal(self, request: HttpRequest) -> HttpResponse | None:
        url = urlsplit(_target(self.path))
        if self.loopback_only and not (_local_host(self.headers.get("Host")) and _local_host(url.netloc or None)):
            # DNS rebinding: a web page of another site whose name now resolves to 127.0.0.1 sends its own Host; a
            # request target in absolute form (`GET http://evil.example/search`) names the host instead of the Host
            # header (RFC 9112 3.2.2), and was answered whatever host it named
            return error_response(403, "Forbidden")
        return None

    def _malformed_headers(self) -> bool:
        """Headers a server must reject (the connection's framing is then not trusted: 400 and closed). RFC 9110
        5.5: a field holding NUL, CR or LF. A line that is no header (no colon, a NUL in the name) ends the parsed
        headers there (a defect): the Host after it was dropped, and the request answered as one without a Host.
        RFC 9112 3.2: more than one Host, or none in HTTP/1.1 (the first of two was checked and another named)."""
        if self.headers.defects or any(c in k or c in v for k, v in self.headers.items() for c in "\x00\r\n"):
            return True
        # a CR not ending its line: the headers' parser breaks lines there too (`Host: a\rX-Injected: 1` was two)
        if any(b"\r" in line.removesuffix(b"\n").removesuffix(b"\r") for line in self.header_lines):
            return True
        hosts = self.headers.get_all("Host") or []
        return len(hosts) > 1 or (not hosts and self.request_version == "HTTP/1.1")

    def _send(self, response: HttpResponse, close: bool = False) -> None:
        if not cast(_Server, self.server).unwatch(self.connection):  # timed out: its 408 is the answer
            self.close_connection = True
            return
        self._write(response, close)

    def _write(self, response: HttpResponse, close: bool) -> None:
        self.send_response(response.status)
        names = {k.lower() for k, _ in response.headers}
        for key, value in response.headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        if "content-type" not in names:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), (format % args).translate(self._control_char_table))


def connection_limit() -> int:
    """How many connections the server holds open at once (:data:`MAX_CONNECTIONS`, fewer when the process may
    open fewer files: half of what its ``RLIMIT_NOFILE`` leaves past :data:`FILES_KEPT`, at least 8)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # no POSIX limits (Windows)
        return MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(8, min(MAX_CONNECTIONS, (soft - FILES_KEPT) // 2))


_TOO_MANY_BODY = json.dumps({"message": "Too Many Requests"}).encode()  # API Gateway's throttling answer
_TOO_MANY = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
             b"Retry-After: 1\r\nConnection: close\r\n\r\n%s") % (len(_TOO_MANY_BODY), _TOO_MANY_BODY)  # fmt: skip


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of clients then sees resets and SYN retries of 1-3 s.
    request_queue_size = 128
    daemon_threads = True
    read_limit_s = REQUEST_READ_S
    slow_evict_after_s = SLOW_EVICT_AFTER_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading: dict[Any, float] = {}  # connection → when its request must have been read
        self._arriving: dict[Any, float] = {}  # connection → when the first byte of its request came (till read)
        self._timed_out: set[Any] = set()  # connections whose request timed out, until their threads end
        self._reading_lock = threading.Lock()
        self._reaper: threading.Thread | None = None
        self.max_connections = connection_limit()
        self._open = 0  # connections being served (each its thread)
        self._open_lock = threading.Lock()
        self._refused_at: dict[str, float] = {}  # when each kind of refusal was last logged
        self._idle: dict[Any, float] = {}  # connection → since when it has waited for a request
        self._evicted: set[Any] = set()  # connections closed to make room, until their threads see it
        self._idle_lock = threading.Lock()

    def get_request(self) -> tuple[Any, Any]:
        """accept(); out of file descriptors (other programs', or a limit below ours), it waits a moment: the
        listening socket stays readable, and the loop that calls this span a core at 100 % until one closed."""
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self._refusing(f"cannot accept a connection ({errno.errorcode.get(exc.errno, exc.errno)})")
                time.sleep(ACCEPT_BACKOFF_S)
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        """Each connection its thread, up to :attr:`max_connections` at once; past it, the connection idle longest
        is closed to make room (:meth:`_evict_idle`: one client's pool of kept-alive connections held every slot, and
        every other client was answered 429 for as long as it kept them busy enough not to time out), else the new
        connection is answered 429 at once, as API Gateway answers a client it throttles, and closed (a flood of
        idle connections used to take a thread each, then every file descriptor: the server span a core, every
        other client waiting for the idle ones to time out)."""
        with self._open_lock:
            full = self._open >= self.max_connections
            if not full or self._evict_idle() or self._evict_slow():
                self._open += 1
                full = False
        if not full:
            try:
                super().process_request(request, client_address)
            except BaseException:  # no thread started: the connection is not held
                self._closed()
                raise
            return
        self._refusing(f"{self.max_connections} connections open at once")
        with contextlib.suppress(OSError):
            request.setblocking(False)
            with contextlib.suppress(OSError):  # what the client sent already (closing on unread bytes resets the
                request.recv(MAX_HEADER_BYTES)  # connection: the client could lose the answer)
            request.send(_TOO_MANY)
        self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._reading_lock:
                self._timed_out.discard(request)
            self._closed()

    def idle(self, connection: Any) -> None:
        """``connection`` waits for a request from now: it may be closed to make room (:meth:`_evict_idle`)."""
        with self._idle_lock:
            self._idle[connection] = time.monotonic()

    def busy(self, connection: Any) -> bool:
        """``connection`` has a request coming (or has ended): no longer closable to make room. False when it was
        closed to make room meanwhile: its request, if one comes, is never read."""
        with self._idle_lock:
            self._idle.pop(connection, None)
            if connection in self._evicted:
                self._evicted.discard(connection)
                return False
            return True

    def _evict_idle(self) -> bool:
        """Closes the connection that has waited longest for a request, when it has waited :data:`IDLE_EVICT_AFTER_S`
        at least and nothing has come on it (its thread then ends, and with it its slot); False when none has. A
        connection whose next request has reached its socket but not yet its thread (waking it takes the GIL, and
        on a loaded host milliseconds) is no idle one: it was closed with the request unread, unanswered and the
        connection reset, though the client had found its kept-alive connection open when it sent the request
        (RELIABILITY "Round 28b review")."""
        with self._idle_lock:
            waited = time.monotonic() - IDLE_EVICT_AFTER_S
            connection = next((c for c, since in sorted(self._idle.items(), key=lambda item: item[1])
                               if since <= waited and not _readable(c)), None)  # fmt: skip
            if connection is None:
                return False
            del self._idle[connection]
            self._evicted.add(connection)
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)  # its wait for a request ends at once, with nothing read
        self._refusing(f"{self.max_connections} connections open at once; closing the one idle longest", "evict")
        return True

    def _evict_slow(self) -> bool:
        """Times out (:meth:`time_out`: 408) the connection whose request has been arriving longest, when it has been
        arriving :attr:`slow_evict_after_s` at least; False when none has. A connection whose request has been read
        whole (its route running) or whose answer is being written is never one. Each candidate is tried, oldest
        first, in the same hold of the lock as the choice: the one chosen was taken alone, and when its request
        was read whole just before (:meth:`unwatch`), the next one arriving long enough was not tried (the new
        client was answered 429)."""
        waited = time.monotonic() - self.slow_evict_after_s
        with self._reading_lock:
            candidates = [c for c, since in sorted(self._arriving.items(), key=lambda item: item[1]) if since <= waited]
            connection = next((c for c in candidates if self._mark_timed_out(c)), None)
        if connection is None:
            return False
        self._shut_reading(connection)
        self._refusing(f"{self.max_connections} connections open at once, none idle; closing the request arriving "
                       f"longest (over {self.slow_evict_after_s:g} s)", "slow")  # fmt: skip
        return True

    def _closed(self) -> None:
        with self._open_lock:
            self._open -= 1

    def _refusing(self, why: str, kind: str = "refuse") -> None:
        now = time.monotonic()
        if now - self._refused_at.get(kind, -REFUSAL_LOG_S) >= REFUSAL_LOG_S:  # a line a minute, not one a connection
            self._refused_at[kind] = now
            verb = "refusing connections" if kind == "refuse" else "making room"
            logger.warning("kbsearch serve: %s: %s", verb, why)

    def watch(self, connection: Any) -> None:
        with self._reading_lock:
            self._reading[connection] = time.monotonic() + self.read_limit_s
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="request-read-limit", daemon=True)
                self._reaper.start()

    def arriving(self, connection: Any) -> None:
        """The first byte of ``connection``'s request has come: it has :attr:`read_limit_s` from now to arrive whole
        (the wait for that byte is the idle timeout's: it counted against the request, so a kept-alive client that
        began its next request 9 s after the last answer had 21 s of the 30), and it may be timed out to make room
        (:meth:`_evict_slow`)."""
        with self._reading_lock:
            if connection in self._reading:
                now = time.monotonic()
                self._reading[connection] = now + self.read_limit_s
                self._arriving[connection] = now

    def unwatch(self, connection: Any) -> bool:
        """``connection``'s request is read (or its exchange is over): no longer timed out. False when it was timed out
        first (:meth:`time_out`): its thread answers nothing but the 408, and runs no route."""
        with self._reading_lock:
            self._reading.pop(connection, None)
            self._arriving.pop(connection, None)
            return connection not in self._timed_out

    def time_out(self, connection: Any) -> bool:
        """Ends the read of ``connection``'s request: its thread's read ends at once (``SHUT_RD``: the end of the
        stream) and it answers 408, if the request had begun, and closes the connection
        (:meth:`_Handler.handle_one_request`). The thread answers, not this one: no other answer can be half written
        on it. False when the request has been read meanwhile (:meth:`unwatch` came first)."""
        with self._reading_lock:
            if not self._mark_timed_out(connection):
                return False
        self._shut_reading(connection)
        return True

    def _mark_timed_out(self, connection: Any) -> bool:
        """(Under ``_reading_lock``.) ``connection``'s request no longer read, its thread to answer 408; False when
        it has been read meanwhile."""
        if self._reading.pop(connection, None) is None:
            return False
        self._arriving.pop(connection, None)
        self._timed_out.add(connection)
        return True

    @staticmethod
    def _shut_reading(connection: Any) -> None:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RD)

    def _reap(self) -> None:
        """Times out the connections whose request is still being read past its time (:meth:`time_out`: 408, or a
        quiet close for one that has sent nothing of it); ends when no request is being read (the next
        :meth:`watch` starts it again)."""
        while True:
            time.sleep(min(0.25, self.read_limit_s / 4))
            now = time.monotonic()
            with self._reading_lock:
                late = [c for c, until in self._reading.items() if until <= now]
            for connection in late:
                if self.time_out(connection):
                    logger.info("a client took over %.0f s to send its request; closed", self.read_limit_s)
            with self._reading_lock:
                done = not self._reading
                if done:
                    self._reaper = None
            if done:
                return

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver prints a traceback to stderr for anything a connection raises; a client going away is not
        an error, and anything else is logged once, through logging."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            logger.debug("%s: connection ended (%s)", client_address[0], type(error).__name__)
            return
        logger.error("connection from %s failed: %s", client_address[0], type(error).__name__)


def _readable(connection: socket.socket) -> bool:
    """Whether bytes (or the client's end of the connection) wait on ``connection``, without waiting for them."""
    try:
        poller = select.poll()
    except AttributeError:  # no poll() (Windows): select()'s descriptors are not bounded there
        return bool(select.select([connection], [], [], 0)[0])
    poller.register(connection, select.POLLIN)
    return bool(poller.poll(0))


def _target(path: str) -> str:
    """A request target's path with its leading slashes folded into one (`//health` is `/health`), as http.server
    does since Python 3.11.4 (gh-87389) before the target reaches :meth:`_Handler._serve`: on an older 3.11, and in
    a target in absolute form (`http://127.0.0.1//health`), `//health` was read as the host `health` (403
    "Forbidden" on loopback) or as no route (403 "Missing Authentication Token"), either read as a key problem."""
    return "/" + path.lstrip("/") if path.startswith("/") else path


def _local_host(value: str | None) -> bool:
    """A request's ``Host`` header names this machine (or there is none: HTTP/1.0)."""
    if value is None:
        return True
    try:
        host = urlsplit("//" + value.strip()).hostname
    except ValueError:
        return False
    return host is not None and is_loopback(host)


def make_server(
    api: LocalApi,
    host: str,
    port: int,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
    read_limit_s: float = REQUEST_READ_S,
    slow_evict_after_s: float = SLOW_EVICT_AFTER_S,
) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"api": api, "timeout": idle_timeout_s, "loopback_only": is_loopback(host)})
    server = _Server((host, port), handler)
    server.read_limit_s, server.slow_evict_after_s = read_limit_s, slow_evict_after_s
    return server


#: The settings of :data:`REQUEST_READ_S` and :data:`SLOW_EVICT_AFTER_S` (``kbsearch serve`` only, as
#: ``KB_LOCAL_API_KEYS``), and the seconds each may be.
REQUEST_READ_SETTING, SLOW_EVICT_SETTING = "KB_LOCAL_REQUEST_READ_S", "KB_LOCAL_SLOW_EVICT_AFTER_S"
LIMIT_RANGE_S = (0.1, 3600.0)


def request_limits(environ: Mapping[str, str]) -> tuple[float, float]:
    """(the request limit, the eviction age) from ``KB_LOCAL_REQUEST_READ_S`` and ``KB_LOCAL_SLOW_EVICT_AFTER_S``
    (unset or empty: :data:`REQUEST_READ_S`, :data:`SLOW_EVICT_AFTER_S`); ValueError naming the setting when one is
    not seconds within :data:`LIMIT_RANGE_S` (NaN, inf, 0 and negatives too)."""
    low, high = LIMIT_RANGE_S
    found = []
    for name, default in ((REQUEST_READ_SETTING, REQUEST_READ_S), (SLOW_EVICT_SETTING, SLOW_EVICT_AFTER_S)):
        raw = (environ.get(name) or "").strip()
        try:
            seconds = float(raw) if raw else default
        except ValueError:
            seconds = math.nan
        if not low <= seconds <= high:  # NaN too
            raise ValueError(f"{name} must be seconds from {low:g} to {high:g}, got {raw!r}")
        found.append(seconds)
    return found[0], found[1]
