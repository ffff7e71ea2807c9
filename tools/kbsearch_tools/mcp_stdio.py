"""``kbsearch mcp``: kb-search as an MCP server over stdio, the way desktop assistants launch servers.

- **local** (default): the embedded store (``QDRANT_PATH``) or Qdrant Cloud (``QDRANT_URL``) and the KB source
  (``KB_SOURCE`` / ``--kb``) through the same search and browse services as ``kbsearch serve``, read-only. Qdrant
  Edge lets one process open a store at a time, so the store is opened for a burst of calls and closed again after
  ``--idle-close`` seconds without one: ``kbsearch index`` (or ``serve``) can use it in between. While another
  process holds it, tools answer with an error that says so and what to do.
- **remote** (``--remote URL``): a bridge to a deployed instance's ``POST /mcp``: each line is forwarded with the
  API key (from the variable ``--api-key-env``, default ``KB_API_KEY``) and, in the 2026-07-28 era, the headers the
  body implies (``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name``); the answer (at most 32 MiB) is written back as it
  came, but that each request gets one response under its id (a request the answer left out a -32001; the remote's
  error of id null, for a request it could not read, under the request's id). The remote's refusals become JSON-RPC
  errors a person can act on (403 → "API key rejected").

stdout carries only MCP messages: anything else printed by accident goes to stderr, as do the logs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import urlsplit, urlunsplit

from kbsearch_tools.stderr_relay import StderrRelay, relay_stderr  # noqa: F401 (kbsearch mcp's, and its tests')

if TYPE_CHECKING:
    from kbsearch.mcp.stdio import Message

logger = logging.getLogger("kbsearch.mcp.stdio")

REMOTE_ERROR = -32001  # a server error (JSON-RPC's implementation-defined range): the remote refused or failed
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603
#: The one protocol version with JSON-RPC batches (``kbsearch.mcp.protocol.BATCH_VERSION``; not imported: the
#: protocol core loads the tools' schemas, which the bridge never needs).
BATCH_VERSION = "2025-03-26"
DEFAULT_API_KEY_ENV = "KB_API_KEY"
NAME_BEARING = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
#: The most of one answer the bridge reads: a deployment's answer is at most 6 MB (Lambda's limit), a note read
#: through ``kbsearch serve`` at most 4 MiB (escaped as JSON, at most six times that); more is no answer of ours.
_BOM = b"\xef\xbb\xbf"
MAX_REMOTE_ANSWER_BYTES = 32 * 1024 * 1024


def _without_httpx_cli() -> None:
    """``import httpx`` also imports httpx's own command-line client (rich, click, pygments: ~90 ms of a cold start
    where they are installed, as in the dev environment); this process never runs it, so it gets a stand-in."""
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    stand_in = types.ModuleType("httpx._main")

    def main(*_args: Any, **_kwargs: Any) -> None:
        raise SystemExit("httpx's command-line client is not loaded in kbsearch mcp")

    stand_in.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = stand_in


def _streams() -> tuple[BinaryIO, BinaryIO]:
    """stdin and the real stdout for MCP; ``sys.stdout`` itself points at stderr from here on."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr
    return sys.stdin.buffer, out


def _let_go(stdout: BinaryIO) -> None:
    """After the loop: a client that closed its end leaves unwritten bytes, which the interpreter would try (and
    fail, noisily) to flush at exit; point the descriptor at /dev/null instead (Python's documented remedy)."""
    try:
        stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())


# -- local --------------------------------------------------------------------------------------------------------
class IdleClose:
    """Runs each message under one lock and closes the index ``idle_s`` seconds after the last one (the next
    message reopens it), so another process may open the embedded store in between."""

    def __init__(self, close: Callable[[], None], idle_s: float) -> None:
        self._close = close
        self._idle_s = idle_s
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def __call__(self, handle: Callable[[bytes], Message | None], line: bytes) -> Message | None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            try:
                return handle(line)
            finally:
                if self._idle_s > 0:
                    self._timer = threading.Timer(self._idle_s, self._closed)
                    self._timer.daemon = True
                    self._timer.start()

    def _closed(self) -> None:
        with self._lock:
            self._close()

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._close()


def run_local(kb: str | None, idle_close_s: float, scope_text: str | None = None) -> int:
    _without_httpx_cli()
    from kbsearch.access import Scope
    from kbsearch.browse import BrowseService
    from kbsearch.config import Secrets, load_settings
    from kbsearch.errors import IndexUnavailable
    from kbsearch.mcp.protocol import McpServer, StdioSession
    from kbsearch.mcp.stdio import serve
    from kbsearch.mcp.tools import Backend
    from kbsearch.reader import NoteReader
    from kbsearch.search import SearchService
    from kbsearch.sources import is_s3_uri, open_source

    # the operator's own store: every note, unless --scope is given (as kbsearch search): an empty --scope (a
    # variable that was not set) holds no group but public, never every note
    scope = Scope.parse("kbsearch mcp", scope_text) if scope_text is not None else Scope.unrestricted("kbsearch mcp")
    stdin, stdout = _streams()
    settings = load_settings(**({"kb_source": kb} if kb else {}))
    if settings.kb_source and not is_s3_uri(settings.kb_source):
        open_source(settings.kb_source)  # a folder that is not there: said now, not "try again shortly" at each read
    service = SearchService(settings, Secrets(settings), locked_store=lambda: locked_store(settings))
    recorded: dict[str, Any] = {}
    try:  # say at once when the store cannot be opened (another process holds it): the log shows why
        recorded = service.read_index(lambda retriever, timeout_s: retriever.metadata(timeout_s))
    except IndexUnavailable as exc:
        # an assistant starts this server in a working folder of its own: where the store was looked for, and the
        # setting its config gives
        logger.warning("the index is not usable yet: %s", _located(exc, settings).public)
    model = recorded.get("embedding_model")
    if service.embedder is None and isinstance(model, str) and model:  # BM25 only: say so once, with what to give
        from kbsearch_tools.oracle import MODELS

        oracle = next((name for name, spec in MODELS.items() if spec[2] == model), None)
        logger.warning("the index holds %s vectors, but no embedder is configured, so searches are BM25 only: %s",
                       model, f"add --oracle {oracle} to kbsearch mcp's args (the model loads in this server), or "
                       f"serve it with kbsearch serve --oracle {oracle} and launch kbsearch mcp --remote "
                       "http://127.0.0.1:3000" if oracle else "give EMBEDDING_API_KEY in the config's env as the "
                       "indexer had it")  # fmt: skip
    source = settings.kb_source or _built_from(settings, recorded)
    if settings.kb_source:
        from kbsearch_tools import not_built_from

        other = not_built_from(settings, settings.kb_source, "--kb" if kb else "KB_SOURCE")
        if other:
            logger.warning("%s", other)
    if not source:
        logger.warning("KB_SOURCE is not set (or --kb), and the index does not record the folder it was built from: "
                       "kb_get_note and resources cannot read notes")  # fmt: skip
    from kbsearch_tools import groups_no_note_holds

    for line in groups_no_note_holds(settings, scope):  # an assistant's log pane: as kbsearch search says it
        logger.warning("%s", line)
    browse = cast(
        "BrowseService",
        _Locating(
            BrowseService(service, NoteReader(lambda: _opened(source), default=settings.access_default)), settings
        ),
    )  # fmt: skip  (its methods, each saying where it looked)
    search = _Locating(service, settings).search
    server = McpServer(Backend(search=lambda request, budget: search(request, scope=scope, budget_s=budget),
                               browse=lambda: browse, scope=lambda: scope,
                               budget_s=lambda: settings.search_budget_s))  # fmt: skip
    guard = IdleClose(service.close, idle_close_s)
    session = StdioSession(server)
    try:
        return serve(lambda line: guard(session.handle_line, line), stdin, stdout)
    finally:
        guard.stop()
        _let_go(stdout)


def _located(exc: Any, settings: Any) -> Any:
    """An index missing, said with where the store was looked for and the setting an assistant's config gives
    (walk38: the assistant's tool answer was "the index has not been built yet: run the indexer first", which the
    user had done, in the folder the config did not name); any other :class:`IndexUnavailable` as it is. Over
    stdio the server is the user's own process, so its answers may name the user's folders (``POST /mcp`` never
    does)."""
    from kbsearch.errors import IndexUnavailable
    from kbsearch.qdrant.readiness import missing_index

    where = missing_index(settings) if "run the indexer first" in str(exc) else None
    if not where:
        return exc
    return IndexUnavailable(str(exc), f'{where}; in an assistant\'s config, give QDRANT_PATH (the store\'s absolute '
                            'path, where kbsearch index ran: <that folder>/.kbsearch/qdrant) in its "env"')  # fmt: skip


class _Locating:
    """``target``'s methods, whose :class:`IndexUnavailable` for an index missing says where it was looked for
    (:func:`_located`): the search and the browse service of ``kbsearch mcp``."""

    def __init__(self, target: Any, settings: Any) -> None:
        self._target, self._settings = target, settings

    def __getattr__(self, name: str) -> Any:
        from kbsearch.errors import IndexUnavailable

        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except IndexUnavailable as exc:
                raise _located(exc, self._settings) from None

        return call


def _built_from(settings: Any, recorded: dict[str, Any]) -> str:
    """The folder an embedded index records it was built from (as ``kbsearch serve`` reads notes without
    KB_SOURCE), when it is still there; "" otherwise. Without it, ``kbsearch index sample-kb`` then ``kbsearch mcp``
    answered every ``kb_get_note`` "the knowledge base cannot be read right now; try again shortly"."""
    from kbsearch.qdrant.query import SOURCE_KEY

    folder = recorded.get(SOURCE_KEY) if settings.store_kind == "embedded" else None
    if not isinstance(folder, str) or not folder:
        return ""
    if not Path(folder).is_dir():
        logger.warning("the index was built from %s, which is no folder now: pass --kb or set KB_SOURCE", folder)
        return ""
    return folder


def _opened(source: str) -> Any:
    """The KB source notes are read from; a ConfigError naming what to set when there is none (its message is the
    answer's, not "try again shortly")."""
    from kbsearch.errors import ConfigError
    from kbsearch.sources import open_source

    if not source:
        raise ConfigError("no KB folder is known: start kbsearch mcp with --kb FOLDER or set KB_SOURCE")
    return open_source(source)


# -- remote ---------------------------------------------------------------------------------------------------------
def locked_store(settings: Any) -> str:
    """What an assistant is told when another process holds the local index: which ``kbsearch`` command (its pid,
    from its command line; no path) and advice for an assistant's server. The shared text said to stop "serve or
    index" whatever held it: a second assistant's ``kbsearch mcp`` lets go on its own, a sync ends."""
    from kbsearch.qdrant.readiness import held_message

    return held_message(
        settings,
        "the local index was open in another process a moment ago; call the tool again",
        {
            "kbsearch index": "a sync is writing it; call the tool again once it has ended",
            "kbsearch mcp": "another assistant's server, which lets go of it after its --idle-close seconds without "
            "a call (default 5): call the tool again then; for both assistants at once, run kbsearch serve and give "
            "each kbsearch mcp --remote http://127.0.0.1:3000",
            "kbsearch serve": "launch this server as kbsearch mcp --remote {url}{unsure} to search through it, or "
            "stop it",
        },
        "call the tool again once it has ended, or stop it",
    )


def mcp_url(url: str) -> str:
    """The deployment's ``/mcp`` endpoint from its base URL (or the endpoint itself); ValueError if not http(s)."""
    from kbsearch_tools import http_url_problem

    problem = http_url_problem(url)  # a port that is no number, bytes not UTF-8: every request was -32603 after
    if problem is not None:
        raise ValueError(f"--remote takes an http(s) URL, e.g. https://<api-id>.execute-api.<region>.amazonaws.com/prod "
                         f"({problem})")  # fmt: skip
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    if not path.endswith("/mcp"):
        path += "/mcp"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def shown_url(url: str) -> str:
    """A URL for messages: without user-info (a password never reaches a log or an answer)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "") if "@" in parts.netloc else parts.netloc
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _header_value(value: str) -> str:
    """``Mcp-Name`` as the SDK sends it: verbatim when printable ASCII, else ``=?base64?...?=``."""
    if value.isascii() and value.isprintable() and value == value.strip() and not value.startswith("=?base64?"):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="


class RemoteBridge:
    """Forwards each message to the remote within ``timeout_s`` of wall-clock time: the client's network backend is
    the outbound policy's (:func:`kbsearch.providers.transport.deadline_transport`), which holds every socket read
    to the request's deadline (httpx's own timeout is per read: a remote that dripped its answer held the request,
    and the assistant waiting on it, for ever)."""

    def __init__(self, url: str, api_key: str | None, api_key_env: str, timeout_s: float = 120.0) -> None:
        import httpx

        from kbsearch.providers.transport import deadline_transport

        self.url = mcp_url(url)
        self.shown = shown_url(self.url)
        # a key pasted with a line end or a no-break space around it is the key; one holding a character no header
        # can carry (httpx sends header values as ASCII) is answered per request, never a crash of the bridge
        self.api_key = api_key.strip() if api_key else None
        self.api_key_env = api_key_env
        self.key_problem = None
        if self.api_key and not _header_text(self.api_key):
            at = next(i for i, c in enumerate(self.api_key) if not _header_text(c))
            self.key_problem = (f"{api_key_env} holds a character an HTTP header cannot carry (character {at + 1} of "
                                "the key, not printable ASCII): set it to the API key's value as the console shows it")  # fmt: skip
        self.timeout_s = timeout_s
        self.max_answer_bytes = MAX_REMOTE_ANSWER_BYTES
        self.client = httpx.Client(transport=deadline_transport(), timeout=httpx.Timeout(timeout_s, connect=10.0),
                                   follow_redirects=False)  # fmt: skip
        self.handshake_version: str | None = None
        self.session_id: str | None = None

    def headers(self, message: Any) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        params = message.get("params") if isinstance(message, dict) else None
        meta = params.get("_meta") if isinstance(params, dict) else None
        if isinstance(meta, dict) and PROTOCOL_VERSION_KEY in meta:  # 2026-07-28: the headers mirror the body
            version = meta[PROTOCOL_VERSION_KEY]
            method = message.get("method")
            # a version that is no string still routes as 2026-07-28, where the remote refuses it as such
            headers["MCP-Protocol-Version"] = _header_value(
                version if isinstance(version, str) else json.dumps(version)
            )
            if isinstance(method, str):
                headers["Mcp-Method"] = _header_value(method)
                name = params.get(NAME_BEARING.get(method, "")) if isinstance(params, dict) else None
                if isinstance(name, str):
                    headers["Mcp-Name"] = _header_value(name)
        elif self.handshake_version:
            headers["MCP-Protocol-Version"] = self.handshake_version
        return headers

    def handle(self, line: bytes) -> list[Message]:
        """Forward one line; the messages to write back (none for a notification the remote accepted; a batch's
        answers as one array). Whatever fails in the bridge (no input found reaches that now: three did in round 22)
        answers the line's requests with a -32603 each and the bridge goes on, as the local server answers a
        failure; it ended ``kbsearch mcp`` with one line and exit 2, the client's pending requests unanswered."""
        try:
            return self._forward(line)
        except Exception as exc:  # the catch-all: logged by its class alone (a message may quote the key)
            logger.warning("the bridge failed on a message (%s); its requests are answered with -32603",
                           type(exc).__name__)  # fmt: skip
            return self._failed_line(
                line,
                f"the bridge to {self.shown} failed on this request "
                f"({type(exc).__name__}): send it again; if it fails again, report it",
            )

    def _failed_line(self, line: bytes, text: str) -> list[Message]:
        """A -32603 for each request of ``line`` (a batch's in one array, under their ids); nothing for a line of
        notifications and responses only."""
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            return [_error(None, INTERNAL_ERROR, text)]
        members = message if isinstance(message, list) else [message]
        ids = [_usable_id(m.get("id")) for m in members if isinstance(m, dict) and "id" in m and "method" in m]
        errors = [_error(id_, INTERNAL_ERROR, text) for id_ in ids]
        if isinstance(message, list):
            return [errors] if errors else []
        return [*errors]

    def _what_to_check(self, exc: Exception) -> str:
        """What to check when the remote cannot be reached: on this machine (README's ``--remote
        http://127.0.0.1:3000``) a refused connection is a ``kbsearch serve`` not running there, not "the network"."""
        import httpx

        url = httpx.URL(self.url)
        if isinstance(exc, httpx.ConnectError) and url.host in ("127.0.0.1", "localhost", "::1"):
            port = url.port or (443 if url.scheme == "https" else 80)
            return f"nothing listens on port {port} of this machine: is a kbsearch serve --port {port} running?"
        return "check the URL and the network"

    def _forward(self, line: bytes) -> list[Message]:
        import httpx

        from kbsearch.api.body import BadBody, parse_json
        from kbsearch.api.body import text as body_text
        from kbsearch.mcp.protocol import line_error

        try:
            message = parse_json(body_text(line))
        except BadBody as exc:
            return [line_error(exc)]
        id_ = _usable_id(message.get("id")) if isinstance(message, dict) else None
        if isinstance(message, list) and self.handshake_version != BATCH_VERSION:
            # this session decides, as a local server's does: the remote (stateless) cannot tell without a header
            era = (
                f"protocol version {self.handshake_version}"
                if self.handshake_version
                else "a session without initialize"
            )
            return [_error(None, INVALID_REQUEST, f"Invalid Request: JSON-RPC batches are part of MCP {BATCH_VERSION} "
                                                  f"only, not of {era}: send one message at a time")]  # fmt: skip
        # a request expects an answer; a notification or a client's response (no method) does not
        requests = [m for m in (message if isinstance(message, list) else [message])
                    if isinstance(m, dict) and "id" in m and "method" in m]  # fmt: skip
        is_request = bool(requests)

        def failed(text: str, data: Any = None) -> list[Message]:
            """The remote gave no JSON-RPC answer: each request its -32001 (a batch's in one array, under their
            ids: one error of id null answers none of them, and the client waited on each for ever)."""
            if isinstance(message, list) and requests:
                return [[_error(_usable_id(r["id"]), REMOTE_ERROR, text, data) for r in requests]]
            return [_error(id_, REMOTE_ERROR, text, data)]

        from kbsearch.providers.resilience import Deadline, ProviderError, bounded, read_capped

        if self.key_problem is not None:
            return failed(self.key_problem) if is_request else []
        try:
            with (
                bounded(Deadline(self.timeout_s)),
                self.client.stream("POST", self.url, content=line, headers=self.headers(message)) as response,
            ):
                raw = read_capped(response, self.max_answer_bytes, self.shown)
        except ProviderError:  # over the cap: refused from its declared length, or once that much has come
            limit = f"{self.max_answer_bytes // (1024 * 1024)} MiB"
            logger.warning("%s sent an answer over %s", self.shown, limit)
            return failed(f"{self.shown} sent an answer over {limit}, the most the bridge reads (no answer of "
                          "kb-search's is that large): check the URL")  # fmt: skip
        except httpx.TimeoutException:
            logger.warning("%s gave no complete answer within %g s", self.shown, self.timeout_s)
            return failed(f"{self.shown} gave no complete answer within {self.timeout_s:g} s (--timeout): try "
                          "again, or check the deployment")  # fmt: skip
        except httpx.DecodingError:  # a Content-Encoding its bytes are not: the remote answered, wrongly
            logger.warning("%s sent an answer not in the encoding it names", self.shown)
            return failed(f"{self.shown} sent an answer not in the encoding it names")
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            logger.warning("cannot reach %s (%s)", self.shown, reason)
            return failed(f"cannot reach {self.shown} ({reason}): {self._what_to_check(exc)}")
        session = response.headers.get("mcp-session-id")
        if session and _visible_ascii(session):
            self.session_id = session
        elif session:  # MCP: visible ASCII only; any other byte cannot be sent back (and stopped the bridge)
            logger.warning("%s sent an Mcp-Session-Id that is not visible ASCII; ignored", self.shown)
        batch = _batch_answers(response.headers.get("content-type", ""), raw) if isinstance(message, list) else None
        if batch is not None:  # the answers to a batch: one array, of the responses to its requests
            return self._batch_answering(requests, batch, response.status_code)
        answers = _messages(response.headers.get("content-type", ""), raw)
        # a batch answered as messages that are no array (an event stream, an object alone, a 413): its responses
        named = response.status_code == 413 or any(a.get("id") is not None for a in answers)
        if answers and requests and isinstance(message, list) and named:
            # the remote's own messages in the stream (a log notification, a request of its own) go on as they came,
            # each on its line, before the batch's array (they were dropped: a request of the remote's never answered)
            own = [a for a in answers if "method" in a]
            responses = [a for a in answers if "method" not in a]
            return [*own, *self._batch_answering(requests, responses, response.status_code)]
        if answers:
            return self._answering(message, answers, is_request, id_, response.status_code)
        if response.status_code in (200, 202) and not raw and not is_request:
            return []  # a notification (or a response), accepted
        text = self.refusal(response.status_code, raw)
        logger.warning("%s", text)  # it names the URL and the status (they were said twice on one line)
        return failed(text, {"status": response.status_code}) if is_request else []

    def _batch_answering(
        self, requests: list[dict[str, Any]], batch: list[dict[str, Any]], status: int
    ) -> list[Message]:
        """The remote's array for a batch's ``requests``: one response per request (a response to no request of the
        batch, or one more than the batch has requests of its id, dropped) and id-null errors as they came; a request
        the array left out gets a -32001 under its id (the client would wait on it for ever), as does every request
        of a batch answered with an empty array; a batch refused as too large to read (HTTP 413) with an error of id
        null gets that error under each request's id."""
        ours: list[dict[str, Any]] = []
        waiting = [r["id"] for r in requests if _usable_id(r["id"]) is not None]  # one entry per request
        unread = next((a for a in batch if a.get("id") is None and isinstance(a.get("error"), dict)), None)
        if status == 413 and waiting and unread is not None and not any(a.get("id") is not None for a in batch):
            # the remote could not read the batch (HTTP 413: over its body limit): its one error of id null answers
            # each request, under its id (passed on alone, it answered none: the client waited for ever). Any other
            # such error is the remote's verdict on the batch as a whole, read (more than 32 members: 400), passed on
            # as the local server answers it
            return [[{"jsonrpc": "2.0", "id": id_, "error": unread["error"]} for id_ in waiting]]
        for answer in batch:
            id_ = answer.get("id")
            match = next((i for i, w in enumerate(waiting) if _same_id(id_, w)), None)
            if id_ is None:
                ours.append(answer)
            elif match is not None:
                ours.append(answer)
                del waiting[match]
        if len(ours) < len(batch):
            logger.warning("%s answered with a response to another request, or twice to one; dropped", self.shown)
        if waiting:
            logger.warning("%s answered a batch without a response to %d of its requests", self.shown, len(waiting))
            left_out = f"{self.shown} answered the batch without a response to this request: send it again"
            ours += [_error(id_, REMOTE_ERROR, left_out) for id_ in waiting]
        return [ours] if ours else []

    def _answering(
        self, message: Any, answers: list[dict[str, Any]], is_request: bool, id_: Any, status: int
    ) -> list[Message]:
        """The remote's messages for ``message``: its requests and notifications, and the responses to this request
        (the same id, of the same JSON type; id null for a message with no usable id). A response to another id is
        dropped (the client would take it for another request's answer, or wait on its own for ever); a request
        left without one gets the remote's error of id null when it sent one (a request it could not read: over its
        body limit, not JSON to it), under the request's id, else a -32001."""
        # a message with no usable id (a notification, an id of no JSON-RPC type, not a request) is answered null
        ours = [a for a in answers if "method" in a or _same_id(a.get("id"), id_)]
        unread = next((a for a in answers if a.get("id") is None and isinstance(a.get("error"), dict)), None)
        if is_request and id_ is not None and not any("method" not in a for a in ours) and unread is not None:
            ours.append({"jsonrpc": "2.0", "id": id_, "error": unread["error"]})  # its answer, the id it could not read
        elif len(ours) < len(answers):
            logger.warning("%s answered with a response to another request; dropped", self.shown)
        for answer in ours:
            self._note_handshake(message, answer)
        if is_request and id_ is not None and not any("method" not in a for a in ours):
            ours.append(_error(id_, REMOTE_ERROR, f"{self.shown} answered HTTP {status} without a response to this "
                                                  "request (its answer named another id): check the URL"))  # fmt: skip
        return [*ours]

    def _note_handshake(self, message: Any, answer: dict[str, Any]) -> None:
        if isinstance(message, dict) and message.get("method") == "initialize":
            result = answer.get("result")
            version = result.get("protocolVersion") if isinstance(result, dict) else None
            if isinstance(version, str) and version and _visible_ascii(version):  # sent on in MCP-Protocol-Version
                self.handshake_version = version
            elif isinstance(version, str):  # a byte past ASCII stopped the bridge at the next request
                logger.warning("%s negotiated a protocol version no header can carry; not sent on", self.shown)

    def refusal(self, status: int, raw: bytes) -> str:
        """What an HTTP answer that is no JSON-RPC message means, in words a person can act on."""
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        said = body.get("message") if isinstance(body, dict) and isinstance(body.get("message"), str) else ""
        said = said or (body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else "")
        if status == 403 and said == "Missing Authentication Token":
            return (f"{self.shown} is not an endpoint of the API (HTTP 403 Missing Authentication Token): give the "
                    "deployment's base URL with its stage, e.g. https://<api-id>.execute-api.<region>.amazonaws.com/prod")  # fmt: skip
        if status in (401, 403):
            from kbsearch_tools import is_loopback

            # a local kbsearch serve's keys are its KB_LOCAL_API_KEYS: it named a stack output of a deployment
            # there is none of (walk34)
            local = is_loopback(urlsplit(self.url).hostname or "")
            key = "the deployment's API key (the stack output ApiKeyId's value)"
            held = "a valid key of this deployment (the stack output ApiKeyId's value)"
            if local:
                key = held = "one of the keys that kbsearch serve was started with (its KB_LOCAL_API_KEYS)"
            if not self.api_key:
                return f"no API key: {self.shown} answered HTTP {status}; set {self.api_key_env} to {key}"
            return f"API key rejected by {self.shown} (HTTP {status}): {self.api_key_env} does not hold {held}"
        if status == 429:
            return f"{self.shown} is throttling requests (HTTP 429): try again shortly"
        if status == 404:
            return f"no MCP endpoint at {self.shown} (HTTP 404): check the URL"
        if status in (200, 202) and not raw:  # a request's answer must carry its response
            return f"{self.shown} answered HTTP {status} with nothing, no response to this request: check the URL"
        if status in (200, 202) and not said:  # a body, but no JSON-RPC message the client could parse in it
            return (f"{self.shown} answered HTTP {status} with no JSON-RPC message a client can read (not JSON, or "
                    "NaN or Infinity in it): check the URL")  # fmt: skip
        detail = f": {said[:200]}" if said else ""
        return f"{self.shown} answered HTTP {status}{detail}"

    def close(self) -> None:
        self.client.close()


def _visible_ascii(text: str) -> bool:
    """What an ``Mcp-Session-Id`` may hold (MCP: visible ASCII, 0x21 to 0x7E)."""
    return all("!" <= c <= "~" for c in text)


def _header_text(text: str) -> bool:
    """Whether a header value can carry ``text`` as httpx sends it: printable ASCII (a space included)."""
    return all(" " <= c <= "~" for c in text)


def _usable_id(value: Any) -> str | int | None:
    """A message's id as a response may echo it (a string or an integer); None for any other."""
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def _same_id(a: Any, b: Any) -> bool:
    """JSON-RPC ids match as values of one JSON type (1 is not "1", nor true, nor 1.0)."""
    return type(a) is type(b) and a == b


def _error(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": id_, "error": error}


_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")


def _event_stream(content_type: str, body: bytes) -> bool:
    """Whether an answer is an event stream: the body decides when it shows (a ``Content-Type`` that lies, a proxy's
    or a remote's of another make, lost the answer: a JSON body named ``text/event-stream``, or events named
    ``application/json``), else the ``Content-Type``."""
    start = body.removeprefix(_BOM).lstrip()
    if start[:1] in (b"{", b"["):
        return False
    if start.startswith(_SSE_FIELDS):
        return True
    return content_type.split(";", maxsplit=1)[0].strip().lower() == "text/event-stream"


def _finite(literal: str) -> float:
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{literal} is out of a double's range")
    return value


def _refused(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(text: str) -> Any:
    """One JSON text of the remote's, or None: a leading BOM ignored (it cost the answer: "answered HTTP 200"), and
    what no strict JSON parser reads (NaN, Infinity, a number past a double's range) refused: passed on, it made a
    line the client cannot parse, and the request was never answered."""
    try:
        return json.loads(text.removeprefix("\ufeff"), parse_constant=_refused, parse_float=_finite)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser recurses
        return None


def _batch_answers(content_type: str, body: bytes) -> list[dict[str, Any]] | None:
    """A JSON body that is an array (a batch's answers): its JSON-RPC responses; None for anything else."""
    if _event_stream(content_type, body) or body.removeprefix(_BOM).lstrip()[:1] != b"[":
        return None
    value = _json(body.decode("utf-8", "replace"))
    if not isinstance(value, list):
        return None
    return [a for a in value if isinstance(a, dict) and a.get("jsonrpc") == "2.0" and ("result" in a or "error" in a)]


def _messages(content_type: str, body: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC messages in an answer: a JSON body, or the ``data:`` events of an event stream."""
    text = body.decode("utf-8", "replace")
    texts: list[str] = []
    if _event_stream(content_type, body):
        event: list[str] = []
        for raw in [*text.splitlines(), ""]:
            if raw.startswith("data:"):
                event.append(raw[5:].removeprefix(" "))
            elif not raw and event:
                texts.append("\n".join(event))
                event = []
    elif body:
        texts.append(text)
    out: list[dict[str, Any]] = []
    for each in texts:
        value = _json(each)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and item.get("jsonrpc") == "2.0" and ("result" in item or "error" in item
                                                                          or "method" in item):  # fmt: skip
                out.append(item)
    return out


def run_remote(url: str, api_key_env: str, timeout_s: float = 120.0) -> int:
    _without_httpx_cli()
    from kbsearch.mcp.stdio import ClientGone, serve, write_message

    stdin, stdout = _streams()
    api_key = os.environ.get(api_key_env) or None
    bridge = RemoteBridge(url, api_key, api_key_env, timeout_s)
    if api_key is None:
        # a local kbsearch serve asks for none unless KB_LOCAL_API_KEYS is set (then each request's error says to
        # set the variable): README's bridge to it warned in the assistant's log pane at every launch (walk33)
        from kbsearch_tools import is_loopback

        local = is_loopback(urlsplit(bridge.url).hostname or "")
        (logger.info if local else logger.warning)("%s is not set: requests go to %s without an API key",
                                                   api_key_env, bridge.shown)  # fmt: skip
    elif bridge.key_problem is not None:
        logger.warning("%s", bridge.key_problem)

    def handle(line: bytes) -> Message | None:
        answers = bridge.handle(line)
        try:
            for extra in answers[:-1]:  # an event stream may carry several messages; the last one is returned
                write_message(stdout, extra)
        except (BrokenPipeError, ValueError, OSError):  # was "kbsearch mcp: error: [Errno 32] Broken pipe", exit 2
            raise ClientGone from None
        return answers[-1] if answers else None

    try:
        return serve(handle, stdin, stdout)
    finally:
        bridge.close()
        _let_go(stdout)
