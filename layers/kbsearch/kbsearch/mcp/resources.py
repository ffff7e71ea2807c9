"""MCP resources (every note as ``kb://note/<path>``: listed page by page, readable, and one URI template) and the
prompt (``kb_answer``: answer a question from the KB with citations), for assistants that browse resources or
prompts rather than call tools. Failures are :class:`RpcError` (JSON-RPC errors); the protocol layer frames them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from kbsearch.mcp.tools import Backend

if TYPE_CHECKING:
    from kbsearch.providers.resilience import Deadline
    from kbsearch.schemas import RecentNote

INVALID_PARAMS, RESOURCE_NOT_FOUND, INTERNAL_ERROR = -32602, -32002, -32603
URI_PREFIX = "kb://note/"
TEMPLATES = [
    {
        "uriTemplate": URI_PREFIX + "{+path}",
        "name": "note",
        "title": "A note of the knowledge base",
        "description": "A markdown note by its path, as kb_search returns it (e.g. kb://note/en/Glossary.md)",
        "mimeType": "text/markdown",
    }
]
PROMPT_NAME = "kb_answer"
PROMPTS = [
    {
        "name": PROMPT_NAME,
        "title": "Answer from the knowledge base, with citations",
        "description": "Search the company knowledge base, read the relevant notes and answer with a citation "
        "(the note's path) for every claim; say so when the KB does not answer.",
        "arguments": [
            {"name": "question", "description": "what to answer (Russian or English)", "required": True},
        ],
    }
]
PROMPT_TEXT = """Answer the question below from the company knowledge base only.

1. Call kb_search with a few specific words from the question (try the other language too: the notes are in \
Russian and English). Use its filters (tags, types, statuses, path_prefix, updated_after) when the question names \
them; kb_list shows the values that exist.
2. Read the most relevant hits with kb_get_note (pass `section` to read one section of a long note); follow their \
links and backlinks when they lead to the answer.
3. Answer concisely. Cite every claim with the note's path in brackets, e.g. [en/runbooks/Runbook - rotate provider \
keys.md], and prefer notes with status active over draft or deprecated ones.
4. If the knowledge base does not answer the question, say so plainly and list what you searched for; never \
answer from general knowledge as if it came from the KB.

Question: {question}"""
MAX_QUESTION_CHARS = 4000


class RpcError(Exception):
    """A JSON-RPC error answer (code, public message, optional data)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def shown(value: str, limit: int = 60) -> str:
    """A client's string as an error message quotes it: its repr, cut to ``limit`` characters (a 60 KB name is
    not sent back)."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."


def clipped(value: str, limit: int) -> str:
    """A client's string as an error's ``data`` quotes it: cut to ``limit`` characters, ``...`` after the cut."""
    return value if len(value) <= limit else value[:limit] + "..."


def _about(uri: str, limit: int = 200) -> dict[str, str]:
    """A not-found error's ``data``: the URI asked for, cut to ``limit`` characters (``...`` after the cut): the
    whole of it was sent back, up to a megabyte of the client's own bytes per line."""
    return {"uri": clipped(uri, limit)}


def note_uri(path: str) -> str:
    """``kb://note/`` + the path, percent-encoded except ``/`` (an RFC 3986 URI for any note path)."""
    return URI_PREFIX + quote(path, safe="/")


def _unavailable(exc: Exception) -> RpcError:
    from kbsearch.errors import IndexUnavailable

    public = exc.public if isinstance(exc, IndexUnavailable) else "the knowledge base cannot be read right now"
    return RpcError(INTERNAL_ERROR, public)


def list_resources(backend: Backend, params: dict[str, Any], deadline: Deadline | None = None) -> dict[str, Any]:
    from kbsearch.browse import InvalidCursor
    from kbsearch.errors import IndexUnavailable

    cursor = params.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise RpcError(INVALID_PARAMS, "Invalid params: cursor must be a string")
    try:
        notes, next_cursor = backend.browse().page(cursor, backend.scope(), within=deadline)
    except InvalidCursor:
        raise RpcError(INVALID_PARAMS, "Invalid params: unknown cursor (use nextCursor from resources/list)") from None
    except IndexUnavailable as exc:
        raise _unavailable(exc) from None
    result: dict[str, Any] = {"resources": [_resource(n) for n in notes]}
    if next_cursor is not None:
        result["nextCursor"] = next_cursor
    return result


def _resource(note: RecentNote) -> dict[str, Any]:
    described = ", ".join(x for x in (note.type, note.status, f"updated {note.updated}" if note.updated else "") if x)
    resource: dict[str, Any] = {"uri": note_uri(note.path), "name": note.path, "title": note.title,
                                "mimeType": "text/markdown"}  # fmt: skip
    if described:
        resource["description"] = described
    return resource


#: The line that ends a note's text cut to fit one answer (resources/read has no other way to say so).
CUT_NOTICE = "[cut here: the note is longer than one answer holds; kb_get_note reads it section by section]"


def read_resource(backend: Backend, params: dict[str, Any], deadline: Deadline | None = None) -> dict[str, Any]:
    from kbsearch.browse import NoteProblem, fit_text
    from kbsearch.errors import IndexUnavailable
    from kbsearch.schemas import ANSWER_BYTES, wire_bytes

    uri = params.get("uri")
    if not isinstance(uri, str) or not uri:
        raise RpcError(INVALID_PARAMS, "Invalid params: uri must be a string")
    head = uri[: len(URI_PREFIX)]
    # a URI's scheme and host are case-insensitive (RFC 3986, 3.1 and 3.2.2): ``KB://Note/`` is ``kb://note/``; the
    # path is not. ASCII only: ``str.lower`` makes the Kelvin sign ``k``, and no such URI was ever handed out
    if not (head.isascii() and head.lower() == URI_PREFIX):
        raise RpcError(RESOURCE_NOT_FOUND, f"Resource not found: only {URI_PREFIX}<path> URIs exist", _about(uri))
    from kbsearch.sources import percent_decoded

    try:
        path = percent_decoded(uri[len(URI_PREFIX) :])
    except ValueError as exc:
        raise RpcError(RESOURCE_NOT_FOUND, f"Resource not found: the path has {exc}", _about(uri)) from None
    try:
        path, text = backend.browse().note_text(path, backend.scope(), deadline)
    except NoteProblem as exc:
        if exc.kind in ("bad_path", "not_found"):
            raise RpcError(RESOURCE_NOT_FOUND, f"Resource not found: {exc}", _about(uri)) from None
        if exc.kind == "unreadable":  # bytes that are no note: the KB's, not a fault of the server (nor listed)
            raise RpcError(RESOURCE_NOT_FOUND, str(exc), _about(uri)) from None
        raise RpcError(INTERNAL_ERROR, str(exc), _about(uri)) from None
    except IndexUnavailable as exc:  # a restricted caller's read asks the index first
        raise _unavailable(exc) from None
    if wire_bytes(text) > ANSWER_BYTES:  # past one answer (Lambda's 6 MB): whole lines, and a line that says so
        text = fit_text(text, ANSWER_BYTES - 1024) + f"\n\n{CUT_NOTICE}"
    return {"contents": [{"uri": note_uri(path), "mimeType": "text/markdown", "text": text}]}


def get_prompt(params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("name")
    if name != PROMPT_NAME:
        named = shown(name) if isinstance(name, str) else "(not a string)"
        raise RpcError(INVALID_PARAMS, f"Invalid params: unknown prompt {named} (prompts/list names {PROMPT_NAME!r})")
    arguments = params.get("arguments") or {}
    question = arguments.get("question") if isinstance(arguments, dict) else None
    if not isinstance(question, str) or not question.strip():
        raise RpcError(INVALID_PARAMS, "Invalid params: the prompt needs the argument 'question' (text)")
    if len(question) > MAX_QUESTION_CHARS:
        raise RpcError(INVALID_PARAMS, f"Invalid params: 'question' is longer than {MAX_QUESTION_CHARS} characters")
    return {
        "description": PROMPTS[0]["description"],
        "messages": [{"role": "user", "content": {"type": "text", "text": PROMPT_TEXT.format(question=question)}}],
    }
