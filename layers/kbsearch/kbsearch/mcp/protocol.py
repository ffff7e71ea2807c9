"""The MCP protocol core, hand-written (the official SDK costs ~0.4 s of import and a web stack): JSON-RPC 2.0 in
both protocol eras, for stateless Streamable HTTP (``POST /mcp``: one endpoint, POST only, answers in
``application/json``, no sessions, no SSE) and for stdio (``kbsearch mcp``: one message a line). Both eras:

- **2025-11-25 and earlier** (handshake): ``initialize`` → ``notifications/initialized`` (202) → ``tools/list``,
  ``tools/call``, ``resources/list``, ``resources/templates/list``, ``resources/read``, ``prompts/list``,
  ``prompts/get``, ``ping``. HTTP requests carry an optional ``MCP-Protocol-Version`` header naming a handshake
  version.
- **2026-07-28** (per-request envelope): no ``initialize``; every request has ``params._meta`` with
  ``io.modelcontextprotocol/protocolVersion`` and ``.../clientCapabilities``, and the headers
  ``MCP-Protocol-Version``, ``Mcp-Method`` (and ``Mcp-Name`` on ``tools/call``, ``prompts/get``,
  ``resources/read``) must agree with the body over HTTP (-32020 otherwise); an unsupported version is -32022 with
  ``data.supported`` (for a header naming a version of neither era on a request without the envelope: every
  version served, so a handshake-era client can fall back); ``server/discover`` describes the server; results
  carry ``resultType``, list results ``ttlMs`` and ``cacheScope``.

Every error on ``/mcp`` is a JSON-RPC error object, HTTP's too (405, and 413 for a body over 64 KiB, which the API
answers before routing).

JSON-RPC batches (an array of messages) exist in MCP 2025-03-26 alone (2025-06-18 removed them; 2026-07-28 has
none): accepted over stdio when the session's ``initialize`` negotiated 2025-03-26, over HTTP (stateless) when the
request has no ``MCP-Protocol-Version`` header (2025-03-26 clients send none; later ones send it on every request
after ``initialize``) or names 2025-03-26; refused (-32600, naming the version) otherwise. A batch holds at most
:data:`MAX_BATCH_MEMBERS` messages, :data:`MAX_BATCH_CALLS` of them calls that read the index or the notes; its
members share the one time budget of a request and an answer of at most :data:`MAX_BATCH_ANSWER_BYTES`.

Routing follows the SDK's rule: over HTTP, a request whose ``MCP-Protocol-Version`` header is present and not a
handshake version is a 2026-07-28 request; over stdio, one whose ``params._meta`` names a protocol version; anything
else is handshake-era. The tools are :mod:`kbsearch.mcp.tools`; resources and the prompt :mod:`kbsearch.mcp.resources`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kbsearch import __version__
from kbsearch.api.body import BadBody, header, parse_json, require_json_media_type
from kbsearch.api.body import text as body_text
from kbsearch.mcp.resources import (
    PROMPTS,
    TEMPLATES,
    RpcError,
    clipped,
    get_prompt,
    list_resources,
    read_resource,
    shown,
)
from kbsearch.mcp.tools import TOOL_NAMES, TOOLS, Backend, call_tool
from kbsearch.providers.resilience import Deadline
from kbsearch.schemas import ANSWER_BYTES

logger = logging.getLogger(__name__)

HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
MODERN_VERSIONS = ("2026-07-28",)
LATEST_HANDSHAKE = HANDSHAKE_VERSIONS[0]
PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
SERVER_INFO = {"name": "kb-search", "version": __version__}
CAPABILITIES: dict[str, Any] = {
    "tools": {"listChanged": False},
    "resources": {"listChanged": False, "subscribe": False},
    "prompts": {"listChanged": False},
}
INSTRUCTIONS = (
    "Search the company knowledge base (Russian and English markdown notes). Use kb_search with a few specific "
    "words (kb_list shows the tags, types, statuses and folders its filters accept); open a hit with "
    "kb_get_note(path), or one section of it with kb_get_note(path, section), and follow its links and backlinks. "
    "The prompt kb_answer answers a question with citations."
)
#: Methods whose name parameter the 2026-07-28 ``Mcp-Name`` header mirrors.
NAME_BEARING_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
HEADER_MISMATCH, UNSUPPORTED_PROTOCOL_VERSION = -32020, -32022
#: A batch member not run because the batch's time budget was spent (the SDK's code for a request timed out).
REQUEST_TIMEOUT = -32001

#: The one protocol version with JSON-RPC batches (added in 2025-03-26, removed in 2025-06-18).
BATCH_VERSION = "2025-03-26"
#: The most messages one batch may hold: clients batch a few messages (a notification with the requests it
#: precedes, the calls one step of an agent makes); a 64 KiB body holds ~1,500 pings, each an answer to build.
MAX_BATCH_MEMBERS = 32
#: The most members of one batch that read the index or the notes (:data:`CALL_METHODS`): each is a search or a
#: read that one request would make, and the batch shares that one request's budget (``SEARCH_BUDGET_S``, 10 s,
#: within the function's 28 s): 8 searches of ~1 s each fit it; more would be answered out of time anyway, and
#: the usage plan, which counts requests, would let one request cost 800 searches' provider calls.
MAX_BATCH_CALLS = 8
#: The methods :data:`MAX_BATCH_CALLS` counts: those that search, read notes or read the index.
CALL_METHODS = frozenset({"tools/call", "resources/read", "resources/list"})
#: A call member is started only with this much of the batch's budget left (a search with less is bound to fail).
MIN_CALL_S = 0.5
#: The most one batch's answer may take as a Lambda's response carries it (``kbsearch.schemas.wire_bytes``: its JSON,
#: escaped once more inside the function's result; the bound one note read is cut to, ``schemas.ANSWER_BYTES``):
#: Lambda answers at most 6 MB, and that second escape grows a ``\u`` escape to 7 bytes and a quote or a backslash to
#: 4 (a bound of 3 MiB on the JSON as sent let three reads of 0.5 MB notes of quotes answer 6.15 MB, a 502); a member
#: whose answer would take the batch past this is answered with an error saying to send it on its own.
MAX_BATCH_ANSWER_BYTES = ANSWER_BYTES
HTTP_STATUS = {PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, HEADER_MISMATCH: 400,
               UNSUPPORTED_PROTOCOL_VERSION: 400, METHOD_NOT_FOUND: 404}  # fmt: skip


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: dict[str, Any] | list[dict[str, Any]] | None  # a list: a batch's answers
    headers: dict[str, str]


def _is_response(message: Any) -> bool:
    """A JSON-RPC response (a client's answer to a server's request): an id and exactly one of result and error,
    no method. Streamable HTTP accepts it with an empty 202 and stdio writes nothing back; before, it was refused
    as an invalid request, an error the client could take for the answer to one of its own requests (same id)."""
    return (
        isinstance(message, dict)
        and message.get("jsonrpc") == "2.0"
        and "method" not in message
        and "id" in message
        and ("result" in message) != ("error" in message)
    )


def _echoed_id(message: Any) -> str | int | None:
    """The id an error about an invalid request answers with: the request's when it is one (a string or a
    number), else null, as JSON-RPC asks (an object or array sent as an id was sent back, however large)."""
    id_ = message.get("id") if isinstance(message, dict) else None
    return id_ if isinstance(id_, str | int) and not isinstance(id_, bool) else None


def _error_object(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": id_, "error": error}


def _rpc_error(id_: Any, code: int, message: str, data: Any = None, modern: bool = True) -> HttpAnswer:
    status = HTTP_STATUS.get(code, 200) if modern or code in (PARSE_ERROR, INVALID_REQUEST) else 200
    return HttpAnswer(status, _error_object(id_, code, message, data), {})


def _unsupported(id_: Any, requested: str | None) -> HttpAnswer:
    """-32022 (400) for an ``MCP-Protocol-Version`` header naming no version this server speaks, with those it does."""
    return _rpc_error(id_, UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                      {"supported": [*MODERN_VERSIONS, *HANDSHAKE_VERSIONS], "requested": _cut(requested)})  # fmt: skip


def body_error(exc: BadBody) -> HttpAnswer:
    """A body that cannot be read as JSON (not UTF-8, not a JSON media type, too deep, ...) as a JSON-RPC error."""
    if exc.status == 415:
        answer = _rpc_error(None, INVALID_REQUEST, f"Invalid Request: {exc.message}")
        return HttpAnswer(415, answer.body, {})
    return _rpc_error(None, PARSE_ERROR, f"Parse error: {exc.message}")


def line_error(exc: BadBody) -> dict[str, Any]:
    """A stdio line that cannot be read as JSON, as a JSON-RPC parse error that names what was sent: a line (a
    person typing messages by hand was told "the request body is not valid JSON", HTTP's word)."""
    return _error_object(None, PARSE_ERROR, f"Parse error: {exc.message.replace('the request body', 'the line')}")


def allowed_origin(origin: str | None, host_header: str | None = None) -> bool:
    """Whether a request with this ``Origin`` header may reach the MCP endpoint: MCP clients send none (desktop
    assistants, the SDKs, server-side connectors); a browser sends one, and only a page of this machine (``localhost``,
    a loopback address: the inspector, a local tool) or of the API itself (``Host``: its own /docs) may call. Any
    other origin (``null`` included) is a web page that a cross-site request points here, refused as the spec
    requires (403). A rebound name that is its own origin cannot reach a deployment (API Gateway routes by its own
    names) nor ``kbsearch serve`` on loopback (it answers only a ``Host`` of this machine)."""
    if origin is None:
        return True
    try:
        parts = urlsplit(origin.strip())
        host = parts.hostname
        own = urlsplit("//" + host_header.strip()).hostname if host_header else None
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    if host in (own, "localhost") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_refusal(headers: Mapping[str, str]) -> HttpAnswer | None:
    """403 for a request whose ``Origin`` (``headers`` with lower-case names) may not reach the endpoint."""
    if allowed_origin(headers.get("origin"), headers.get("host")):
        return None
    answer = _rpc_error(None, INVALID_REQUEST, "Forbidden: requests from web pages of other origins are refused")
    return HttpAnswer(403, answer.body, {})


def decode_header_value(value: str | None) -> str | None:
    """An ``Mcp-Name`` header as the SDK encodes it: verbatim, or ``=?base64?<UTF-8 in base64>?=`` for values that
    are not printable ASCII (a resource URI with Cyrillic); None when the sentinel does not decode."""
    if value is None or not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    payload = value[len("=?base64?") : -2]
    try:
        decoded = base64.b64decode(payload, validate=True)
        return decoded.decode("utf-8") if base64.b64encode(decoded).decode("ascii") == payload else None
    except (binascii.Error, UnicodeDecodeError):
        return None


class McpServer:
    """The protocol core. :meth:`handle` answers one HTTP request (``POST /mcp``); :class:`StdioSession` one line
    of the stdio transport; both run :meth:`handle_message`, which answers one JSON-RPC message (or a batch) in
    either era."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # -- HTTP -------------------------------------------------------------------------------------------------
    def handle(self, method: str, headers: Mapping[str, str], body: bytes | str | None) -> HttpAnswer:
        lowered = {k.lower(): v for k, v in headers.items()}
        refused = origin_refusal(lowered)  # the spec's DNS-rebinding guard: a web page of another site
        if refused is not None:
            return refused
        if method.upper() != "POST":
            answer = _rpc_error(None, INVALID_REQUEST, "Method Not Allowed: use POST")
            return HttpAnswer(405, answer.body, {"Allow": "POST"})
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else (body or b"")
        try:
            require_json_media_type(header(headers, "content-type"))
            message = parse_json(body_text(raw))
        except BadBody as exc:
            return body_error(exc)
        return self.handle_message(message, lowered)

    # -- one message, either transport ---------------------------------------------------------------------------
    def handle_message(
        self, message: Any, headers: Mapping[str, str] | None, session_version: str | None = None
    ) -> HttpAnswer:
        """One decoded JSON-RPC message, or a batch of them. ``headers`` (lower-case names): the HTTP request's,
        which choose the era and must agree with a 2026-07-28 body; None on stdio, where the body's ``_meta`` alone
        decides and ``session_version`` (what the session's ``initialize`` negotiated) whether batches exist."""
        if isinstance(message, list):
            return self._batch(message, headers, session_version)
        return self._one(message, headers, None)

    def _one(self, message: Any, headers: Mapping[str, str] | None, deadline: Deadline | None) -> HttpAnswer:
        if isinstance(message, list):  # a batch inside a batch
            return _rpc_error(None, INVALID_REQUEST, "Invalid Request: a batch member must be a request object, "
                              "not a batch")  # fmt: skip
        if _is_response(message):  # the client answering a request: this server sends none, so nothing to match
            return HttpAnswer(202, None, {})  # accepted as the transport asks (202, no body; nothing on stdio)
        if (
            not isinstance(message, dict)
            or message.get("jsonrpc") != "2.0"
            or not isinstance(message.get("method"), str)
        ):
            return _rpc_error(_echoed_id(message), INVALID_REQUEST,
                              "Invalid Request: expected a JSON-RPC 2.0 request object")  # fmt: skip
        if "id" not in message:
            return HttpAnswer(202, None, {})  # a notification: acknowledged, nothing to do
        id_ = message["id"]
        if not isinstance(id_, str | int) or isinstance(id_, bool):
            return _rpc_error(None, INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
        params = message.get("params", {})
        if params is None:
            params = {}
        # the era first: over HTTP the header names it, whatever params hold (params that are no object were a 400
        # in either era, where a 2025-11-25 client is answered 200 for every other error about its params)
        version_header = headers.get("mcp-protocol-version") if headers is not None else None
        header_modern = version_header is not None and version_header not in HANDSHAKE_VERSIONS
        if not isinstance(params, dict):  # over stdio no _meta to read: the status is not sent anyway
            if header_modern and version_header not in MODERN_VERSIONS:  # a version we do not speak: say which we do
                return _unsupported(id_, version_header)
            return _rpc_error(id_, INVALID_PARAMS, "params must be an object", modern=header_modern)
        if headers is not None:
            modern = header_modern
        else:
            meta = params.get("_meta")
            modern = isinstance(meta, dict) and PROTOCOL_VERSION_KEY in meta
        if modern:  # in a batch too (over stdio a member's _meta decides): within the batch's deadline
            return self._modern(id_, message["method"], params, headers, deadline)
        return self._legacy(id_, message["method"], params, deadline)

    # -- JSON-RPC batches (2025-03-26) ------------------------------------------------------------------------------
    def _batch(self, batch: list[Any], headers: Mapping[str, str] | None, session_version: str | None) -> HttpAnswer:
        """A JSON-RPC batch, by JSON-RPC 2.0's rules: each request answered in its own response (its id), in an
        array; an invalid member its own -32600; notifications and responses nothing (no member answered: 202,
        no body); an empty array one -32600 (not an array). Refused whole (one -32600) outside 2025-03-26, over
        :data:`MAX_BATCH_MEMBERS` members or :data:`MAX_BATCH_CALLS` calls. The members share one time budget
        (``Backend.budget_s``): a request not started within it is answered -32001; a call is started only with
        :data:`MIN_CALL_S` left, and runs within what is left."""
        from kbsearch.schemas import wire_bytes

        refused = self._batch_refusal(batch, headers, session_version)
        if refused is not None:
            return _rpc_error(None, INVALID_REQUEST, f"Invalid Request: {refused}")
        deadline = Deadline(self.backend.budget_s())
        answers: list[dict[str, Any]] = []
        size = 2  # the array's brackets
        for member in batch:
            is_request = isinstance(member, dict) and "id" in member and "method" in member
            if is_request and member.get("method") == "initialize":
                answer = _rpc_error(_echoed_id(member), INVALID_REQUEST, "Invalid Request: initialize must not be "
                                    "part of a JSON-RPC batch (MCP 2025-03-26): send it on its own")  # fmt: skip
            elif is_request and deadline.remaining() < (MIN_CALL_S if _is_call(member) else 0):
                answer = _rpc_error(_echoed_id(member), REQUEST_TIMEOUT, "Request timed out: the batch's time budget "
                                    "was spent before this request; send it again on its own or in a smaller batch")  # fmt: skip
            else:
                answer = self._member(member, headers, deadline)
            body = answer.body
            if not isinstance(body, dict):  # a notification's or a response's: nothing to answer
                continue
            length = wire_bytes(body) + 1
            if size + length > MAX_BATCH_ANSWER_BYTES:
                body = _error_object(_echoed_id(member), INTERNAL_ERROR, f"its answer ({length:,} bytes) would take "
                                     f"the batch's answer past {MAX_BATCH_ANSWER_BYTES // (1024 * 1024)} MiB; send "
                                     "it on its own")  # fmt: skip
                length = wire_bytes(body) + 1
            size += length
            answers.append(body)
        if not answers:
            return HttpAnswer(202, None, {})
        return HttpAnswer(200, answers, {})

    def _batch_refusal(
        self, batch: list[Any], headers: Mapping[str, str] | None, session_version: str | None
    ) -> str | None:
        """Why ``batch`` is refused as a whole, or None."""
        if headers is not None:  # stateless HTTP: a 2025-03-26 client sends no version header
            named = headers.get("mcp-protocol-version")
            era = None if named in (None, BATCH_VERSION) else f"protocol version {shown(named)}"
        else:
            era = None if session_version == BATCH_VERSION else (
                f"protocol version {session_version}" if session_version else "a session without initialize"
            )  # fmt: skip
        if era is not None:
            return (f"JSON-RPC batches are part of MCP {BATCH_VERSION} only, not of {era}: send one message at a "
                    "time")  # fmt: skip
        if not batch:
            return "an empty batch"
        if len(batch) > MAX_BATCH_MEMBERS:
            return f"a batch of {len(batch):,} messages; at most {MAX_BATCH_MEMBERS} a batch"
        calls = sum(1 for m in batch if _is_call(m))
        if calls > MAX_BATCH_CALLS:
            return (f"a batch of {calls} calls (tools/call, resources/read, resources/list); at most "
                    f"{MAX_BATCH_CALLS} a batch, which shares one request's time: send the rest in another batch")  # fmt: skip
        return None

    def _member(self, member: Any, headers: Mapping[str, str] | None, deadline: Deadline) -> HttpAnswer:
        """One member's answer; a failure is that member's -32603 (logged), never the batch's."""
        try:
            return self._one(member, headers, deadline)
        except Exception:
            logger.exception("MCP batch member failed")
            return _rpc_error(_echoed_id(member), INTERNAL_ERROR, "Internal error")

    # -- 2025-11-25 and earlier --------------------------------------------------------------------------------
    def _legacy(self, id_: Any, method: str, params: dict[str, Any], deadline: Deadline | None = None) -> HttpAnswer:
        if method == "initialize":
            requested = params.get("protocolVersion")
            version = requested if requested in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE
            result: dict[str, Any] = {
                "protocolVersion": version, "capabilities": CAPABILITIES, "serverInfo": SERVER_INFO,
                "instructions": INSTRUCTIONS,
            }  # fmt: skip
            return HttpAnswer(200, {"jsonrpc": "2.0", "id": id_, "result": result}, {})
        return self._dispatch(id_, method, params, modern=False, deadline=deadline)

    # -- 2026-07-28 ----------------------------------------------------------------------------------------------
    def _modern(
        self,
        id_: Any,
        method: str,
        params: dict[str, Any],
        headers: Mapping[str, str] | None,
        deadline: Deadline | None = None,
    ) -> HttpAnswer:
        meta = params.get("_meta")
        if not isinstance(meta, dict) or PROTOCOL_VERSION_KEY not in meta or CLIENT_CAPABILITIES_KEY not in meta:
            requested = headers.get("mcp-protocol-version") if headers is not None else None
            if headers is not None and requested not in MODERN_VERSIONS:
                return _unsupported(id_, requested)  # a version we do not speak: say which we do, not what _meta lacks
            return _rpc_error(id_, INVALID_PARAMS, f"params._meta must carry {PROTOCOL_VERSION_KEY!r} and "
                              f"{CLIENT_CAPABILITIES_KEY!r}")  # fmt: skip
        version = meta[PROTOCOL_VERSION_KEY]
        if headers is not None:
            if headers.get("mcp-protocol-version") != version:
                return _rpc_error(id_, HEADER_MISMATCH, "MCP-Protocol-Version header does not match params._meta")
            if headers.get("mcp-method") != method:
                return _rpc_error(id_, HEADER_MISMATCH, "Mcp-Method header does not match the request's method")
            name_key = NAME_BEARING_METHODS.get(method)
            named = params.get(name_key) if name_key else None
            if named is not None and decode_header_value(headers.get("mcp-name")) != named:
                return _rpc_error(id_, HEADER_MISMATCH, f"Mcp-Name header does not match the request's {name_key}")
        if not isinstance(version, str):
            return _rpc_error(id_, INVALID_PARAMS, "the protocol version must be a string")
        if version not in MODERN_VERSIONS:
            return _rpc_error(id_, UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                              {"supported": list(MODERN_VERSIONS), "requested": _cut(version)})  # fmt: skip
        if method == "server/discover":
            result: dict[str, Any] = {
                "supportedVersions": list(MODERN_VERSIONS), "capabilities": CAPABILITIES,
                "instructions": INSTRUCTIONS, "ttlMs": 3_600_000, "cacheScope": "public", **_stamp(),
            }  # fmt: skip
            return HttpAnswer(200, {"jsonrpc": "2.0", "id": id_, "result": result}, {})
        answer = self._dispatch(id_, method, params, modern=True, deadline=deadline)
        if isinstance(answer.body, dict) and "result" in answer.body:
            answer.body["result"].update(_stamp())
        return answer

    # -- the methods of both eras --------------------------------------------------------------------------------
    def _dispatch(
        self, id_: Any, method: str, params: dict[str, Any], modern: bool, deadline: Deadline | None = None
    ) -> HttpAnswer:
        try:
            result = self._result(method, params, modern, deadline)
        except RpcError as exc:
            return _rpc_error(id_, exc.code, exc.message, exc.data, modern=modern)
        return HttpAnswer(200, {"jsonrpc": "2.0", "id": id_, "result": result}, {})

    def _result(self, method: str, params: dict[str, Any], modern: bool, deadline: Deadline | None) -> dict[str, Any]:
        listing = {"ttlMs": 60_000, "cacheScope": "private"} if modern else {}  # the KB changes; keys may differ
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": TOOLS, **({"ttlMs": 3_600_000, "cacheScope": "public"} if modern else {})}
        if method == "tools/call":
            name = params.get("name")
            if not isinstance(name, str):  # a list or an object cannot even be looked up (unhashable)
                raise RpcError(INVALID_PARAMS, "Invalid params: the tool name must be a string")
            if name not in TOOL_NAMES:
                known = ", ".join(tool["name"] for tool in TOOLS)  # an assistant's typo: what it may call instead
                raise RpcError(INVALID_PARAMS, f"Unknown tool: {shown(name)} (tools: {known})")
            arguments = params.get("arguments")  # absent or null: no arguments; any other non-object is refused
            return call_tool(self.backend, str(name), {} if arguments is None else arguments, deadline)
        if method == "resources/list":
            return {**list_resources(self.backend, params, deadline), **listing}
        if method == "resources/templates/list":
            return {"resourceTemplates": TEMPLATES, **listing}
        if method == "resources/read":
            return read_resource(self.backend, params, deadline)
        if method == "prompts/list":
            return {"prompts": PROMPTS, **listing}
        if method == "prompts/get":
            return get_prompt(params)
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {shown(method)}")


class StdioSession:
    """One stdio connection (``kbsearch mcp``): :meth:`handle_line` answers a line, and the session remembers the
    protocol version its ``initialize`` negotiated, which decides whether JSON-RPC batches exist (2025-03-26)."""

    def __init__(self, server: McpServer) -> None:
        self.server = server
        self.version: str | None = None

    def handle_line(self, line: bytes) -> dict[str, Any] | list[dict[str, Any]] | None:
        """One line of the stdio transport (a JSON-RPC message or batch) → the answer to write back (None:
        nothing, the line held notifications only). Never raises: garbage is a parse error, an unexpected failure
        -32603."""
        try:
            message = parse_json(body_text(line))
        except BadBody as exc:
            return line_error(exc)
        try:
            answer = self.server.handle_message(message, None, self.version).body
        except Exception:  # a bug must not end the session: the client gets an error, the log the traceback
            logger.exception("MCP message failed")
            return _rpc_error(_echoed_id(message), INTERNAL_ERROR, "Internal error").body
        if isinstance(message, dict) and message.get("method") == "initialize" and isinstance(answer, dict):
            result = answer.get("result")
            version = result.get("protocolVersion") if isinstance(result, dict) else None
            if isinstance(version, str):
                self.version = version
        return answer


def _is_call(member: Any) -> bool:
    """Whether a batch member is a request of :data:`CALL_METHODS` (a method that is no string, even one no set can
    hold, is none: that member is its own -32600)."""
    method = member.get("method") if isinstance(member, dict) and "id" in member else None
    return isinstance(method, str) and method in CALL_METHODS


#: The most characters of a version a client named that an unsupported-version error's ``data.requested`` quotes.
REQUESTED_CHARS = 60


def _cut(requested: str | None) -> str | None:
    """A protocol version the client named, as ``data.requested`` quotes it: cut to :data:`REQUESTED_CHARS` (it was
    sent back whole: a 1 MB ``_meta`` version over stdio was a 1 MB line back, a header 10 KiB over HTTP)."""
    return None if requested is None else clipped(requested, REQUESTED_CHARS)


def _stamp() -> dict[str, Any]:
    return {"_meta": {SERVER_INFO_KEY: SERVER_INFO}, "resultType": "complete"}
