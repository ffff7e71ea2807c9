"""MCP over stateless Streamable HTTP, hand-written (the official SDK costs ~0.4 s of import and a web stack).

One endpoint, POST only, JSON-RPC 2.0 answered with ``application/json``; no sessions, no SSE. Both eras:

- **2025-11-25 and earlier** (handshake): ``initialize`` → ``notifications/initialized`` (202) → ``tools/list``,
  ``tools/call``, ``ping``. Requests carry an optional ``MCP-Protocol-Version`` header naming a handshake version.
- **2026-07-28** (per-request envelope): no ``initialize``; every request has ``params._meta`` with
  ``io.modelcontextprotocol/protocolVersion`` and ``.../clientCapabilities``, and the headers
  ``MCP-Protocol-Version``, ``Mcp-Method`` (and ``Mcp-Name`` on ``tools/call``) must agree with the body
  (-32020 otherwise); an unsupported version is -32022 with ``data.supported`` (for a header naming a version of
  neither era on a request without the envelope: every version served, so a handshake-era client can fall back);
  ``server/discover`` describes the server; results carry ``resultType``, list results ``ttlMs`` and
  ``cacheScope``.

Every error on ``/mcp`` is a JSON-RPC error object, HTTP's too (405, and 413 for a body over 64 KiB, which the API
answers before routing).

Routing follows the SDK's rule: a request whose ``MCP-Protocol-Version`` header is present and not a handshake
version is a 2026-07-28 request; anything else is handshake-era.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from kbsearch import __version__
from kbsearch.api.body import BadBody, header, parse_json, require_json_media_type
from kbsearch.api.body import text as body_text
from kbsearch.errors import ConfigError
from kbsearch.schemas import MAX_QUERY_CHARS, MAX_TOP_K, SearchFilters, SearchRequest, SearchResponse

logger = logging.getLogger(__name__)

HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
MODERN_VERSIONS = ("2026-07-28",)
LATEST_HANDSHAKE = HANDSHAKE_VERSIONS[0]
PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
SERVER_INFO = {"name": "kb-search", "version": __version__}
CAPABILITIES: dict[str, Any] = {"tools": {"listChanged": False}}
INSTRUCTIONS = (
    "Search the company knowledge base (Russian and English markdown notes). Use kb_search with a few specific "
    "words; open a hit with kb_get_note(path) to read the whole note."
)

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
HEADER_MISMATCH, UNSUPPORTED_PROTOCOL_VERSION = -32020, -32022
#: A note path as kb_search returns it: relative, '/'-separated, no empty, '.' or '..' segment, no backslash, no
#: control character (NUL included).
HTTP_STATUS = {PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, HEADER_MISMATCH: 400,
               UNSUPPORTED_PROTOCOL_VERSION: 400, METHOD_NOT_FOUND: 404}  # fmt: skip


class KbSearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    query: StrictStr = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="what to look for (ru or en)")
    top_k: StrictInt = Field(default=5, ge=1, le=MAX_TOP_K, description="how many notes to return")
    tags: list[StrictStr] | None = Field(default=None, max_length=50, description="only notes with any of these tags")
    type: StrictStr | None = Field(default=None, description="only notes of this type (runbook, decision, ...)")
    status: StrictStr | None = Field(default=None, description="only notes with this status (active, draft, ...)")
    path_prefix: StrictStr | None = Field(default=None, max_length=500, description="only notes in this folder "
                                          "(e.g. 'ru/ранбуки'; '/' or '' is the whole KB)")  # fmt: skip


class KbGetNoteArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    path: StrictStr = Field(min_length=1, max_length=1024, description="the note's path, as kb_search returns it")


class NoteOut(BaseModel):
    path: str
    title: str
    frontmatter: dict[str, Any]
    body: str


def _input_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    return schema


TOOLS: list[dict[str, Any]] = [
    {
        "name": "kb_search",
        "title": "Search the knowledge base",
        "description": "Hybrid semantic + keyword search over the company knowledge base, reranked; one hit per "
        "note with its best section, snippet, tags and scores.",
        "inputSchema": _input_schema(KbSearchArgs),
        "outputSchema": SearchResponse.model_json_schema(),
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    },
    {
        "name": "kb_get_note",
        "title": "Read a note",
        "description": "The whole note (frontmatter and markdown body) at a path from kb_search.",
        "inputSchema": _input_schema(KbGetNoteArgs),
        "outputSchema": NoteOut.model_json_schema(),
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    },
]


class ToolFailure(Exception):
    """A tool ran but could not answer (unknown note, failed search): reported with ``isError``. Its message is
    public: it never carries a bucket, an endpoint, a server path or an exception's text (those go to the log)."""


@dataclass
class Tools:
    """What the tools call: the search service and a note reader (the KB source), both built lazily."""

    search: Callable[[SearchRequest], SearchResponse]
    read_note: Callable[[str], bytes]


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str]


def _rpc_error(id_: Any, code: int, message: str, data: Any = None, modern: bool = True) -> HttpAnswer:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    status = HTTP_STATUS.get(code, 200) if modern or code in (PARSE_ERROR, INVALID_REQUEST) else 200
    return HttpAnswer(status, {"jsonrpc": "2.0", "id": id_, "error": error}, {})


def body_error(exc: BadBody) -> HttpAnswer:
    """A body that cannot be read as JSON (not UTF-8, not a JSON media type, too deep, ...) as a JSON-RPC error."""
    if exc.status == 415:
        answer = _rpc_error(None, INVALID_REQUEST, f"Invalid Request: {exc.message}")
        return HttpAnswer(415, answer.body, {})
    return _rpc_error(None, PARSE_ERROR, f"Parse error: {exc.message}")


def _render_search(answer: SearchResponse) -> str:
    if not answer.results:
        return f"No notes found for “{answer.query}”."
    lines = [f"Results for “{answer.query}”:"]
    for hit in answer.results:
        lines.append(f"{hit.rank}. **{hit.title}** — {hit.heading}")
        lines.append(
            f"   `{hit.path}`" + (f" · tags: {', '.join(hit.tags)}" if hit.tags else "") + f" · score {hit.score:.3f}"
        )
        lines.append(f"   {hit.snippet}")
    if answer.meta.degraded:
        lines.append(f"(degraded: {', '.join(answer.meta.degraded)})")
    return "\n".join(lines)


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors())


class McpServer:
    def __init__(self, tools: Tools) -> None:
        self.tools = tools

    # -- HTTP -------------------------------------------------------------------------------------------------
    def handle(self, method: str, headers: Mapping[str, str], body: bytes | str | None) -> HttpAnswer:
        if method.upper() != "POST":
            answer = _rpc_error(None, INVALID_REQUEST, "Method Not Allowed: use POST")
            return HttpAnswer(405, answer.body, {"Allow": "POST"})
        lowered = {k.lower(): v for k, v in headers.items()}
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else (body or b"")
        try:
            require_json_media_type(header(headers, "content-type"))
            message = parse_json(body_text(raw))
        except BadBody as exc:
            return body_error(exc)
        if isinstance(message, list):
            return _rpc_error(None, INVALID_REQUEST, "JSON-RPC batches are not supported")
        if (
            not isinstance(message, dict)
            or message.get("jsonrpc") != "2.0"
            or not isinstance(message.get("method"), str)
        ):
            return _rpc_error(message.get("id") if isinstance(message, dict) else None, INVALID_REQUEST,
                              "Invalid Request: expected a JSON-RPC 2.0 request object")  # fmt: skip
        if "id" not in message:
            return HttpAnswer(202, None, {})  # a notification: acknowledged, nothing to do
        id_ = message["id"]
        if not isinstance(id_, str | int) or isinstance(id_, bool):
            return _rpc_error(None, INVALID_REQUEST, "Invalid Request: id must be a string or a number")
        params = message.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return _rpc_error(id_, INVALID_PARAMS, "params must be an object")
        version_header = lowered.get("mcp-protocol-version")
        if version_header is not None and version_header not in HANDSHAKE_VERSIONS:
            return self._modern(id_, message["method"], params, lowered)
        return self._legacy(id_, message["method"], params)

    # -- 2025-11-25 and earlier --------------------------------------------------------------------------------
    def _legacy(self, id_: Any, method: str, params: dict[str, Any]) -> HttpAnswer:
        if method == "initialize":
            requested = params.get("protocolVersion")
            version = requested if requested in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE
            result: dict[str, Any] = {
                "protocolVersion": version, "capabilities": CAPABILITIES, "serverInfo": SERVER_INFO,
                "instructions": INSTRUCTIONS,
            }  # fmt: skip
        elif method == "ping":
            result = {}
        elif method == "tools/list":
            result = {"tools": TOOLS}
        elif method == "tools/call":
            return self._call_tool(id_, params, modern=False)
        else:
            return _rpc_error(id_, METHOD_NOT_FOUND, f"Method not found: {method}", modern=False)
        return HttpAnswer(200, {"jsonrpc": "2.0", "id": id_, "result": result}, {})

    # -- 2026-07-28 ----------------------------------------------------------------------------------------------
    def _modern(self, id_: Any, method: str, params: dict[str, Any], headers: Mapping[str, str]) -> HttpAnswer:
        meta = params.get("_meta")
        if not isinstance(meta, dict) or PROTOCOL_VERSION_KEY not in meta or CLIENT_CAPABILITIES_KEY not in meta:
            requested = headers.get("mcp-protocol-version")
            if requested not in MODERN_VERSIONS:  # a version we do not speak: say which we do, not what _meta lacks
                return _rpc_error(id_, UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                                  {"supported": [*MODERN_VERSIONS, *HANDSHAKE_VERSIONS], "requested": requested})  # fmt: skip
            return _rpc_error(id_, INVALID_PARAMS, f"params._meta must carry {PROTOCOL_VERSION_KEY!r} and "
                              f"{CLIENT_CAPABILITIES_KEY!r}")  # fmt: skip
        version = meta[PROTOCOL_VERSION_KEY]
        if headers.get("mcp-protocol-version") != version:
            return _rpc_error(id_, HEADER_MISMATCH, "MCP-Protocol-Version header does not match params._meta")
        if headers.get("mcp-method") != method:
            return _rpc_error(id_, HEADER_MISMATCH, "Mcp-Method header does not match the request's method")
        if method == "tools/call" and params.get("name") is not None and headers.get("mcp-name") != params.get("name"):
            return _rpc_error(id_, HEADER_MISMATCH, "Mcp-Name header does not match the tool name")
        if not isinstance(version, str):
            return _rpc_error(id_, INVALID_PARAMS, "the protocol version must be a string")
        if version not in MODERN_VERSIONS:
            return _rpc_error(id_, UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                              {"supported": list(MODERN_VERSIONS), "requested": version})  # fmt: skip
        stamp = {"_meta": {SERVER_INFO_KEY: SERVER_INFO}, "resultType": "complete"}
        if method == "server/discover":
            result: dict[str, Any] = {
                "supportedVersions": list(MODERN_VERSIONS), "capabilities": CAPABILITIES,
                "instructions": INSTRUCTIONS, "ttlMs": 3_600_000, "cacheScope": "public", **stamp,
            }  # fmt: skip
        elif method == "ping":
            result = dict(stamp)
        elif method == "tools/list":
            result = {"tools": TOOLS, "ttlMs": 3_600_000, "cacheScope": "public", **stamp}
        elif method == "tools/call":
            answer = self._call_tool(id_, params, modern=True)
            if answer.body is not None and "result" in answer.body:
                answer.body["result"].update(stamp)
            return answer
        else:
            return _rpc_error(id_, METHOD_NOT_FOUND, f"Method not found: {method}")
        return HttpAnswer(200, {"jsonrpc": "2.0", "id": id_, "result": result}, {})

    # -- tools ----------------------------------------------------------------------------------------------------
    def _call_tool(self, id_: Any, params: dict[str, Any], modern: bool) -> HttpAnswer:
        name = params.get("name")
        arguments = params.get("arguments") or {}
        if name not in ("kb_search", "kb_get_note"):
            return _rpc_error(id_, INVALID_PARAMS, f"Unknown tool: {name!r}", modern=modern)
        if not isinstance(arguments, dict):
            result = self._error_result("arguments must be an object")
        else:
            try:
                result = self._kb_search(arguments) if name == "kb_search" else self._kb_get_note(arguments)
            except ValidationError as exc:
                result = self._error_result(f"invalid arguments for {name}: {_validation_text(exc)}")
            except ToolFailure as exc:
                result = self._error_result(str(exc))
            except Exception:  # the detail is for operators; the caller gets a public message
                logger.exception("MCP tool %s failed", name)
                result = self._error_result(f"{name} failed; try again shortly")
        return HttpAnswer(200, {"jsonrpc": "2.0", "id": id_, "result": result}, {})

    @staticmethod
    def _error_result(text: str) -> dict[str, Any]:
        return {"content": [{"type": "text", "text": text}], "isError": True}

    def _kb_search(self, arguments: dict[str, Any]) -> dict[str, Any]:
        args = KbSearchArgs.model_validate(arguments)
        filters = SearchFilters(
            tags=args.tags or None,
            type=[args.type] if args.type else None,
            status=[args.status] if args.status else None,
            path_prefix=args.path_prefix,
        )
        request = SearchRequest(query=args.query, top_k=args.top_k, filters=filters)
        try:
            answer = self.tools.search(request)
        except Exception:
            logger.exception("kb_search failed")
            raise ToolFailure("the search failed; try again shortly") from None
        return {
            "content": [{"type": "text", "text": _render_search(answer)}],
            "structuredContent": answer.model_dump(mode="json"),
            "isError": False,
        }

    def _kb_get_note(self, arguments: dict[str, Any]) -> dict[str, Any]:
        from kbsearch.notes import NoteError, decode_note, split_frontmatter
        from kbsearch.sources import NoteUnreadable, SourceError, note_path, path_problem

        args = KbGetNoteArgs.model_validate(arguments)
        path = note_path(args.path)  # the identity the indexer gave the note (NFC), whatever form the client sent
        problem = path_problem(path) or (None if path.lower().endswith(".md") else "note paths end in .md")
        if problem:
            raise ToolFailure(f"not a note path: {problem} (use kb_search to find one)")
        try:
            raw = self.tools.read_note(path)
        except NoteUnreadable as exc:  # a FIFO, a device, a dangling symlink, ...: its reason names no server path
            raise ToolFailure(f"the note at {path!r} cannot be read: {exc.reason}") from None
        except ConfigError as exc:  # names the setting to fix (KB_SOURCE), as /health does
            raise ToolFailure(f"kb_get_note is not configured: {exc}") from None
        except SourceError as exc:
            # The source's text names buckets, keys with their prefix or server folders: log it, say less.
            logger.warning("kb_get_note could not read a note", extra={"error": str(exc)})
            if str(exc).startswith("no note at"):
                raise ToolFailure(f"no note at {path!r}; use kb_search to find the right path") from None
            raise ToolFailure("the knowledge base cannot be read right now; try again shortly") from None
        try:
            text = decode_note(raw, max_bytes=4 * 1024 * 1024)
        except NoteError as exc:
            raise ToolFailure(f"the note at {path!r} cannot be read: {exc.reason}") from None
        try:
            frontmatter, body = split_frontmatter(text)  # the indexer's parser: linear, no alias expansion
        except NoteError:
            frontmatter, body = {}, text  # unusable frontmatter: still show the note as written
        title = str(frontmatter.get("title") or path.rsplit("/", 1)[-1].removesuffix(".md"))
        note = NoteOut(path=path, title=title, frontmatter=frontmatter, body=body.lstrip("\n"))
        return {
            "content": [{"type": "text", "text": text}],
            "structuredContent": note.model_dump(mode="json"),
            "isError": False,
        }
