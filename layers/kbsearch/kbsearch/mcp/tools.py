"""The MCP tools: ``kb_search`` (the search every caller makes, with every REST filter), ``kb_get_note`` (a note,
whole or one section, with its links and backlinks) and ``kb_list`` (the values the filters accept, with counts,
and the recent notes).

Schemas every client can fill: plain types with defaults (an array is an array, never ``anyOf [array, null]``,
which clients turn into a string), no ``$ref`` in inputs; each tool is read-only and has an ``outputSchema`` that
its ``structuredContent`` matches, next to a text rendering for clients that read text only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator

from kbsearch.schemas import (
    MAX_QUERY_CHARS,
    MAX_TOP_K,
    CatalogResponse,
    NoteResponse,
    SearchFilters,
    SearchRequest,
    SearchResponse,
    errors_counted,
    searchable_query,
    shown_errors,
)

if TYPE_CHECKING:
    from kbsearch.access import Scope
    from kbsearch.browse import BrowseService
    from kbsearch.providers.resilience import Deadline

logger = logging.getLogger(__name__)

_ISO_DATE = r"^$|^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?$"


#: A URI's scheme and ``//`` at the start of a path (``kb://note/en/x.md``): never a note's path (an empty segment).
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class KbSearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    query: StrictStr = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="what to look for (ru or en)")
    top_k: StrictInt = Field(default=5, ge=1, le=MAX_TOP_K, description="how many notes to return")
    tags: list[StrictStr] = Field(
        default=[],
        max_length=50,
        description="only notes with any of these tags (see kb_list), any case, nested tags too (project finds "
        "project/alpha), the notes' #tags in their text too",
    )
    # the bounds SearchFilters holds them to (types and statuses 20): a tool schema allowing 50 let 21 through to a
    # tool error naming `type`, an argument the tool does not have
    types: list[StrictStr] = Field(
        default=[], max_length=20, description="only notes of these types: runbook, adr, ..."
    )
    statuses: list[StrictStr] = Field(default=[], max_length=20, description="only notes with these statuses")
    path_prefix: StrictStr = Field(
        default="", max_length=500, description="only notes in this folder, e.g. 'ru/ранбуки'"
    )
    updated_after: StrictStr = Field(
        default="", pattern=_ISO_DATE, description="only notes updated after this ISO date or date-time"
    )
    rerank: StrictBool = Field(default=True, description="rerank the candidates with the cross-encoder")
    expand: StrictBool = Field(default=True, description="search with LLM-written variants of the query too")

    _tags = field_validator("tags", "types", "statuses", mode="before")(_one_or_many)
    _query = field_validator("query")(searchable_query)


class KbGetNoteArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    path: StrictStr = Field(min_length=1, max_length=1024, description="the note's path, as kb_search returns it")
    section: StrictStr = Field(
        default="", max_length=500, description="one section only: a heading ('Steps'), a heading path "
        "('Rotation > Steps') or a kb_search hit's heading as given; empty: the whole note",
    )  # fmt: skip


class KbListArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    path_prefix: StrictStr = Field(default="", max_length=500, description="count only notes in this folder")
    recent: StrictInt = Field(default=10, ge=0, le=50, description="how many recently updated notes to list")


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema as a tool's ``inputSchema``: no titles, nothing a client has to resolve."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema["additionalProperties"] = False
    return schema


READ_ONLY = {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True, "openWorldHint": False}

TOOLS: list[dict[str, Any]] = [
    {
        "name": "kb_search",
        "title": "Search the knowledge base",
        "description": "Hybrid semantic + keyword search over the company knowledge base (Russian and English), "
        "reranked; one hit per note with its best section, snippet, tags and scores. Filter by tags, types, statuses, "
        "folder (path_prefix) or date (updated_after); kb_list shows the values that exist.",
        "inputSchema": input_schema(KbSearchArgs),
        "outputSchema": SearchResponse.model_json_schema(),
        "annotations": {"title": "Search the knowledge base", **READ_ONLY},
    },
    {
        "name": "kb_get_note",
        "title": "Read a note",
        "description": "A note at a path from kb_search: its frontmatter and markdown, whole or one section by "
        "heading, its headings, the notes its [[links]] lead to and the notes that link to it (backlinks).",
        "inputSchema": input_schema(KbGetNoteArgs),
        "outputSchema": NoteResponse.model_json_schema(),
        "annotations": {"title": "Read a note", **READ_ONLY},
    },
    {
        "name": "kb_list",
        "title": "What is in the knowledge base",
        "description": "The values the kb_search filters accept, with how many notes have each: tags, types, "
        "statuses and folders; and the most recently updated notes.",
        "inputSchema": input_schema(KbListArgs),
        "outputSchema": CatalogResponse.model_json_schema(),
        "annotations": {"title": "What is in the knowledge base", **READ_ONLY},
    },
]
TOOL_NAMES = frozenset(t["name"] for t in TOOLS)


class ToolFailure(Exception):
    """A tool ran but could not answer (unknown note, failed search): reported with ``isError``. Its message is
    public: it never carries a bucket, an endpoint, a server path or an exception's text (those go to the log)."""


@dataclass
class Backend:
    """What the tools, resources and prompts call: the search (as the caller's transport runs it: metrics, request
    id and the caller's scope over HTTP; its second argument the most seconds it may take, None for its own
    budget), the browse service (notes, links, catalog), both built on first use, the caller's scope for the
    browse service's reads, and the time one request has (``SEARCH_BUDGET_S``, within the function's remaining
    time in Lambda), which a JSON-RPC batch's members share."""

    search: Callable[[SearchRequest, float | None], SearchResponse]
    browse: Callable[[], BrowseService]
    scope: Callable[[], Scope]
    budget_s: Callable[[], float]


def validation_text(exc: ValidationError) -> str:
    """The first errors, argument names cut (:func:`kbsearch.schemas.shown_errors`), and how many there were."""
    shown, count = shown_errors(exc.errors())
    text = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in shown)
    return text + errors_counted(count)


def error_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


def call_tool(backend: Backend, name: str, arguments: Any, deadline: Deadline | None = None) -> dict[str, Any]:
    """A known tool's result (``isError`` for bad arguments or a failure); the caller checks the name.
    ``deadline``: the batch's, within which the tool runs (None: the tool's own budget)."""
    if not isinstance(arguments, dict):
        return error_result("arguments must be an object")
    run = {"kb_search": _kb_search, "kb_get_note": _kb_get_note, "kb_list": _kb_list}[name]
    try:
        return run(backend, arguments, deadline)
    except ValidationError as exc:
        return error_result(f"invalid arguments for {name}: {validation_text(exc)}")
    except ToolFailure as exc:
        return error_result(str(exc))
    except Exception:  # the detail is for operators; the caller gets a public message
        logger.exception("MCP tool %s failed", name)
        return error_result(f"{name} failed; try again shortly")


def _ok(text: str, structured: BaseModel) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": structured.model_dump(mode="json"),
        "isError": False,
    }


#: kb_search's filter arguments, which take null for "not given".
_NULLABLE_FILTERS = frozenset({"tags", "types", "statuses", "path_prefix", "updated_after"})


def _kb_search(backend: Backend, arguments: dict[str, Any], deadline: Deadline | None) -> dict[str, Any]:
    # a filter given as null is a filter not given, as POST /search's ``filters`` take it (and the old ``type: null``
    # here): it was "Input should be a valid list"
    arguments = {k: v for k, v in arguments.items() if not (v is None and k in _NULLABLE_FILTERS)}
    for old, new in (("type", "types"), ("status", "statuses")):  # the first release's single-value names
        if old in arguments and new not in arguments and isinstance(arguments[old], str | type(None)):
            value = arguments.pop(old)
            arguments[new] = [value] if value else []
    args = KbSearchArgs.model_validate(arguments)
    try:
        updated_after = dt.datetime.fromisoformat(args.updated_after) if args.updated_after else None
    except ValueError as exc:  # a date-shaped value that is no date (2026-02-30)
        raise ToolFailure(f"invalid arguments for kb_search: updated_after: {exc}") from None
    try:
        filters = SearchFilters(
            tags=args.tags or None, type=args.types or None, status=args.statuses or None,
            path_prefix=args.path_prefix or None, updated_after=updated_after,
        )  # fmt: skip
    except ValidationError as exc:  # path_prefix with a '..' segment
        raise ToolFailure(f"invalid arguments for kb_search: {validation_text(exc)}") from None
    request = SearchRequest(query=args.query, top_k=args.top_k, filters=filters, rerank=args.rerank, expand=args.expand)
    from kbsearch.errors import IndexUnavailable
    from kbsearch.providers.resilience import Deadline

    # the hint of an answer with no hits is read within the request's time, not in a budget of its own after the
    # search's: a search that took all of SEARCH_BUDGET_S (near the Lambda's end) is answered, hint or none (rev34b)
    hint_by = deadline if deadline is not None else Deadline(backend.budget_s())
    try:
        answer = backend.search(request, None if deadline is None else deadline.remaining())
    except IndexUnavailable as exc:
        logger.warning("kb_search: index unavailable", extra={"error": str(exc)})
        raise ToolFailure(exc.public) from None
    except Exception:
        logger.exception("kb_search failed")
        raise ToolFailure("the search failed; try again shortly") from None
    try:
        unheld = [] if answer.results else backend.browse().unheld_filters(filters, backend.scope(), hint_by)
    except Exception:  # a hint is never worth the answer (as Slack's: slack_worker._unheld)
        logger.exception("kb_search: the unheld filters of an answer with no hits could not be read")
        unheld = []
    return _ok(render_search(answer, [f.said(_FILTER_ARGUMENTS[f.what], sentence=True) for f in unheld]), answer)


#: kb_search's argument of each filter :class:`~kbsearch.browse.UnheldFilter` names.
_FILTER_ARGUMENTS = {"tag": "tags", "type": "types", "status": "statuses", "folder": "path_prefix"}


def _kb_get_note(backend: Backend, arguments: dict[str, Any], deadline: Deadline | None) -> dict[str, Any]:
    from kbsearch.browse import NoteProblem
    from kbsearch.errors import IndexUnavailable
    from kbsearch.schemas import ANSWER_BYTES

    args = KbGetNoteArgs.model_validate(arguments)
    if _URI.match(args.path):  # a resource's URI (resources/list's): "path has an empty segment ('//')" named nothing
        raise ToolFailure("kb_get_note takes a note's path as kb_search returns it (e.g. en/Glossary.md), not a URI; "
                          "resources/read takes a kb://note/ URI")  # fmt: skip
    try:
        note = backend.browse().note(args.path, args.section or None, backend.scope(), deadline)
    except NoteProblem as exc:
        raise ToolFailure(str(exc)) from None
    except IndexUnavailable as exc:  # a restricted caller's read asks the index first
        logger.warning("kb_get_note: index unavailable", extra={"error": str(exc)})
        raise ToolFailure(exc.public) from None
    return fitted_note_result(note, ANSWER_BYTES - ENVELOPE_BYTES)


#: What a tool's answer leaves of one answer's bound for the JSON-RPC envelope around its result (the id included).
ENVELOPE_BYTES = 1024


def fitted_note_result(note: NoteResponse, max_bytes: int) -> dict[str, Any]:
    """``kb_get_note``'s result for ``note``, taking at most ``max_bytes`` (:func:`~kbsearch.schemas.wire_bytes`) when
    its body can be cut that far. It holds the note twice (the text rendering and ``structuredContent``): each is cut
    to half of it first; the text writes a frontmatter list as JSON inside a string (each quote and backslash escaped
    once more, up to twice what ``structuredContent`` takes), so a result still over is cut by what it is over."""
    from kbsearch.browse import fit_note
    from kbsearch.schemas import wire_bytes

    fitted = fit_note(note, max_bytes // 2)
    result = _ok(render_note(fitted), fitted)
    for _ in range(3):  # the body's bytes are the same in both halves: one pass nearly always does
        over = wire_bytes(result) - max_bytes
        if over <= 0 or not fitted.body:
            break
        fitted = fit_note(note, wire_bytes(fitted.model_dump(mode="json")) - (over + 1) // 2 - 64)
        result = _ok(render_note(fitted), fitted)
    return result


def _kb_list(backend: Backend, arguments: dict[str, Any], deadline: Deadline | None) -> dict[str, Any]:
    from kbsearch.errors import IndexUnavailable

    args = KbListArgs.model_validate(arguments)
    try:
        catalog = backend.browse().catalog(args.path_prefix or None, args.recent, backend.scope(), deadline)
    except ValueError as exc:
        raise ToolFailure(f"invalid arguments for kb_list: path_prefix: {exc}") from None
    except IndexUnavailable as exc:
        logger.warning("kb_list: index unavailable", extra={"error": str(exc)})
        raise ToolFailure(exc.public) from None
    return _ok(render_catalog(catalog), catalog)


# -- text for clients that read text only -------------------------------------------------------------------------
def render_search(answer: SearchResponse, unheld: Sequence[str] = ()) -> str:
    """``unheld``: for an answer with no hits, each filter value no note holds, as a sentence (a misspelt tag was
    "No notes found" alone: the assistant took the KB to have nothing on the question; walk34)."""
    if not answer.results:
        said = "".join(f"\n{line}" for line in unheld)
        tip = "\nkb_list shows the values the filters accept." if unheld else ""
        return f"No notes found for “{answer.query}”.{said}{tip}"
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


def render_note(note: NoteResponse) -> str:
    head = [f"path: {note.path}", f"title: {note.title}"]
    for key, value in note.frontmatter.items():
        if key != "title":
            head.append(f"{key}: {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}")
    if note.section:
        head.append(f"section: {' > '.join(note.section)}")
    parts = ["\n".join(head), note.body]
    if note.links is not None and (note.links.outgoing or note.links.backlinks):
        out = [f"- [[{r.target}]] → {r.path or '(no such note)'}" for r in note.links.outgoing]
        back = [f"- {r.path} ({r.title})" for r in note.links.backlinks]
        more = " (more not listed)" if note.links.backlinks_truncated else ""
        # a section's read lists the whole note's links: said so, or the assistant took each for one of the section's
        whole = " (of the whole note, not only this section)" if note.section else ""
        parts.append(
            f"Links{whole}:\n" + ("\n".join(out) or "none") + f"\nBacklinks{more}:\n" + ("\n".join(back) or "none")
        )
    elif note.links is None:
        parts.append("(links unavailable: the index could not be read)")
    if note.truncated:  # structuredContent's `truncated`, for clients that read the text only
        parts.append(f"(cut to fit one answer: {', '.join(note.truncated)}; kb_get_note(path, section) reads one "
                     "section at a time)")  # fmt: skip
    return "\n\n---\n\n".join(parts)


def render_catalog(catalog: CatalogResponse) -> str:
    def counts(items: list[Any]) -> str:
        return ", ".join(f"{f.value} ({f.count})" for f in items) or "none"

    lines = [
        f"{catalog.notes} note{'' if catalog.notes == 1 else 's'}.",
        f"tags: {counts(catalog.tags)}",
        f"types: {counts(catalog.types)}",
        f"statuses: {counts(catalog.statuses)}",
        f"folders (path_prefix): {counts(catalog.folders)}",
    ]
    if catalog.recent:
        lines.append("recently updated:")
        lines += [f"- {n.updated or '?'} `{n.path}` {n.title}" for n in catalog.recent]
    return "\n".join(lines)
