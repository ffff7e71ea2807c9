"""The search API's request and answer models (pydantic only: cheap to import on the handler's cold path).

Requests are strict: a number is a JSON number, a flag a JSON boolean, text a JSON string (``top_k: "5"``,
``rerank: "yes"``, ``min_score: NaN`` are 422, not coerced); ``min_score`` must be finite.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

MAX_QUERY_CHARS = 1000
MAX_TOP_K = 20
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ]|$)")  # a date first, then a time or nothing


#: How much of a failed validation is told back: the first errors, each field name cut. The names are the client's
#: own (an unknown field's, ``extra="forbid"``): each was listed whole, so one 60 KB name was sent back, 6,000
#: unknown fields made a 500 KB answer to a 64 KiB request, and over stdio a 4 MB line a 4 MB (or 30 MB) one.
MAX_ERRORS_SHOWN = 5
MAX_NAME_CHARS = 60


def shown_errors(errors: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """pydantic's errors as an answer tells them: the first :data:`MAX_ERRORS_SHOWN` as ``loc``, ``msg``, ``type``
    (a name in ``loc`` cut to :data:`MAX_NAME_CHARS` characters and ``...``), and how many there were."""
    shown: list[dict[str, Any]] = []
    count = 0
    for error in errors:
        count += 1
        if len(shown) < MAX_ERRORS_SHOWN:
            loc = [p[:MAX_NAME_CHARS] + "..." if isinstance(p, str) and len(p) > MAX_NAME_CHARS else p
                   for p in error.get("loc", ())]  # fmt: skip
            shown.append({"loc": loc, "msg": error.get("msg", "invalid value"), "type": error.get("type", "")})
    return shown, count


def errors_counted(count: int) -> str:
    """`` (N errors; the first M listed)`` when not every error is listed, else nothing."""
    return f" ({count} errors; the first {MAX_ERRORS_SHOWN} listed)" if count > MAX_ERRORS_SHOWN else ""


def folder_prefix(value: str | None) -> str | None:
    """A ``path_prefix`` as the index stores folders (``ru/ранбуки``: NFC, '/'-separated, no empty or '.'
    segment, no leading or trailing '/'); None for every spelling of the root (``""``, ``"/"``, ``"//"``,
    ``"./"``, ``"."``), which filters nothing. A backslash separates folders as '/' does (no indexed path has one);
    a '..' segment is refused (ValueError: a 422), and so is a folder no note's path can start with, as a note's
    path is checked (:func:`kbsearch.sources.path_problem`: a control character, more folders than a note may be
    deep; a hidden folder, :func:`kbsearch.sources.hidden`), whose filter was answered with no hits, silently."""
    from kbsearch.sources import hidden, path_problem

    if value is None:
        return None
    segments = unicodedata.normalize("NFC", value).replace("\\", "/").split("/")
    if ".." in (s.strip() for s in segments):
        raise ValueError("path_prefix cannot have a '..' segment: give a folder from the KB's root, e.g. 'ru/ранбуки'")
    kept = [s for s in segments if s.strip() not in ("", ".")]
    prefix = "/".join(kept)
    problem = path_problem(prefix + "/x.md") if prefix else None
    if prefix and not problem and hidden(prefix):
        problem = "a hidden folder (a name starting with '.'), whose files are never notes"
    if problem:
        raise ValueError(f"path_prefix names no folder a note can be in ({problem.replace('path', 'its path', 1)})")
    return prefix or None


def folder_spellings(prefix: str | None) -> list[str]:
    """The folders a ``path_prefix`` normalised by :func:`folder_prefix` matches: itself and, when its reader sees
    another folder in it, that one too (:func:`kbsearch.sources.shown_path`: ``ｅｎ／runbooks`` typed in full width,
    ``en/runbooks`` pasted with a zero-width space, a soft hyphen or a bidi mark: each was searched as written and
    answered with no hits, silently). The index holds folders as their notes' keys spell them, so a folder whose
    name does hold such a character is still matched as given. A reading that climbs out (full-width ``．．`` is
    ``..``) is dropped; one that is the root (a zero-width space alone) is the whole KB, as ``/`` is: ``[]``."""
    if not prefix:
        return []
    from kbsearch.sources import shown_path

    try:
        shown = folder_prefix(shown_path(prefix))
    except ValueError:  # ``..`` as read, or a folder no note can be in: the spelling as given alone
        return [prefix]
    if shown is None:
        return []
    return [prefix] if shown == prefix else [prefix, shown]


class SearchFilters(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tags: list[StrictStr] | None = Field(
        default=None,
        max_length=50,
        description="notes with any of these tags, as Obsidian's tag: search finds them: whatever the case, nested tags "
        "too (project finds Project/Beta), written in tags: or as #tag in the text",
    )
    type: list[StrictStr] | None = Field(default=None, max_length=20, description="note type(s)")
    status: list[StrictStr] | None = Field(default=None, max_length=20, description="note status(es)")
    path_prefix: StrictStr | None = Field(
        default=None, max_length=500, description="a folder, e.g. 'ru/ранбуки' ('/', '' and './' mean the whole KB)"
    )
    updated_after: dt.date | dt.datetime | None = Field(default=None, description="ISO date or date-time")

    @field_validator("tags", "type", "status", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("tags", "type", "status")
    @classmethod
    def _nfc(cls, value: list[str] | None) -> list[str] | None:
        """In NFC without what no reader sees, as the indexer stores them: ``й`` typed as ``и`` + U+0306 is the same
        tag, ``ops`` with a zero-width space is ``ops``. An empty value, which no note holds, is refused, never
        searched for nothing (it was answered with no hits, silently)."""
        if value is None:
            return None
        from kbsearch.lexical import visible

        out = [visible(v).strip() for v in value]
        if any(not v for v in out):
            raise ValueError("an empty value matches no note")
        # a control character (``tag:`` + U+0001 from a terminal or a Slack command) is in no stored value (YAML
        # holds none unescaped): it was searched, and answered 0 hits with nothing said
        bad = next((c for v in out for c in v if unicodedata.category(c) == "Cc"), None)
        if bad is not None:
            raise ValueError(f"a value holding a control character (U+{ord(bad):04X}) matches no note")
        return out

    @field_validator("tags")
    @classmethod
    def _as_stored(cls, value: list[str] | None) -> list[str] | None:
        """A tag as Obsidian shows it (``#ops``) is the tag ``ops``, as the indexer stores it; a tag holding a space
        or a comma (where the indexer splits a note's tags) is refused (each was an answer of no hits)."""
        if value is None:
            return None
        from kbsearch.lexical import TAG_BREAK, bare_tag

        out = [bare_tag(v) for v in value]
        for tag in out:
            if not tag:
                raise ValueError("a tag of '#' alone matches no note")
            if TAG_BREAK.search(tag):
                raise ValueError(f"a tag holds no space or comma (notes' tags are split there): give each of "
                                 f"{tag[:60]!r} as its own tag")  # fmt: skip
        return out

    @field_validator("path_prefix")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        return folder_prefix(value)

    @field_validator("updated_after", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        # ISO text only: pydantic would read digits as Unix time ("20260101" → 1970-08-23, silently)
        if value is None or isinstance(value, dt.date) or (isinstance(value, str) and _ISO_DATE.match(value)):
            return value
        raise ValueError("must be an ISO date or date-time string, e.g. 2026-01-01 or 2026-01-01T09:30:00Z")

    def is_empty(self) -> bool:
        return not (self.tags or self.type or self.status or self.path_prefix or self.updated_after)


def has_something_to_search(text: str) -> bool:
    """Whether a query holds a letter or a digit (any script): one of only zero-width characters, controls,
    punctuation or symbols has nothing to search for (the same rule as the expansion's rewrites)."""
    return any(c.isalnum() for c in text)


def searchable_query(value: str) -> str:
    """A query field's check: ValueError for a query with :func:`has_something_to_search` false."""
    if not has_something_to_search(value):
        raise ValueError("the query has no letter or digit: nothing to search for")
    return value


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    query: StrictStr = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: StrictInt = Field(default=5, ge=1, le=MAX_TOP_K)
    filters: SearchFilters = Field(default_factory=SearchFilters)
    rerank: StrictBool = True
    expand: StrictBool = True
    min_score: float | None = Field(
        default=None, strict=True, allow_inf_nan=False, description="drop hits whose final score is below this"
    )

    _query = field_validator("query")(searchable_query)

    @field_validator("filters", mode="before")
    @classmethod
    def _no_filters(cls, value: Any) -> Any:
        """``"filters": null`` is no filters, as a null filter inside them is that filter not given (it was a 422
        "Input should be a valid dictionary")."""
        return {} if value is None else value


class HitScores(BaseModel):
    rerank: float | None
    fusion: float


class Hit(BaseModel):
    rank: int
    doc_id: str
    path: str
    title: str
    heading: str
    snippet: str
    score: float
    scores: HitScores
    tags: list[str]
    type: str | None
    status: str | None
    updated: str | None
    links: list[str]


class SearchMeta(BaseModel):
    request_id: str | None
    variants: list[str]
    embedder: str
    reranker: str
    degraded: list[str]
    candidates: int
    timings_ms: dict[str, float]
    usage: dict[str, dict[str, int]]


class SearchResponse(BaseModel):
    query: str
    results: list[Hit]
    meta: SearchMeta


class ErrorResponse(BaseModel):
    error: str
    message: str


class WhoAmI(BaseModel):
    """``GET /whoami``: who the API key is (its id, never its value) and the groups it may read (always
    ``public``); search, kb_search and kb_get_note answer only from notes of these groups."""

    caller: str = Field(description="apikey:<API Gateway key id> (name), or anonymous")
    groups: list[str] = Field(description="the access groups this key may read")


# -- reading and browsing: GET /notes/{path}, kb_get_note, kb_list ----------------------------------------------------


class NoteRef(BaseModel):
    """A note a link leads to or comes from (``path`` null: a link no indexed note answers)."""

    target: str = Field(description="the link as written, without heading or alias; for a backlink, its path")
    path: str | None
    title: str | None


class NoteLinks(BaseModel):
    outgoing: list[NoteRef] = Field(description="the note's [[wiki-links]], resolved to notes where one matches")
    backlinks: list[NoteRef] = Field(description="the notes that link to this one")
    backlinks_truncated: bool = Field(description="more notes link here than are listed")


class SectionInfo(BaseModel):
    heading: str
    level: int
    path: list[str] = Field(description="the headings above it and itself")


class NoteResponse(BaseModel):
    path: str
    title: str
    frontmatter: dict[str, Any]
    body: str = Field(description="the markdown body, or the asked section with its subsections")
    section: list[str] | None = Field(description="the heading path of the returned section; null: the whole note")
    sections: list[SectionInfo] = Field(description="the note's headings, for asking one section")
    links: NoteLinks | None = Field(description="null when the index could not be read (see degraded)")
    degraded: list[str]
    truncated: list[str] = Field(
        default_factory=list,
        description="what was cut for the answer to fit one response (about 5 MB): 'body' (cut at a line: ask for "
        "a section), 'sections' (the first headings listed), 'links' (the first outgoing links listed), "
        "'frontmatter' (left out: over 512 KiB)",
    )


class FacetCount(BaseModel):
    value: str
    count: int = Field(description="notes with this value")


class RecentNote(BaseModel):
    path: str
    title: str
    updated: str | None
    type: str | None
    status: str | None
    tags: list[str]


class CatalogResponse(BaseModel):
    """What the filters accept, with note counts, and the most recently updated notes."""

    notes: int = Field(description="indexed notes (within path_prefix when given)")
    tags: list[FacetCount]
    types: list[FacetCount]
    statuses: list[FacetCount]
    folders: list[FacetCount] = Field(description="folders (every level) for path_prefix, most notes first")
    recent: list[RecentNote] = Field(description="by frontmatter 'updated', newest first")


#: The most one answer may take as a Lambda's response carries it (:func:`wire_bytes`): a synchronous invoke answers
#: at most 6 MB, and a note past it was API Gateway's 502; MCP's answer holds a note twice. What does not fit is cut
#: and named in ``truncated`` (:func:`kbsearch.browse.fit_note`). The rest of the 6 MB is the result's envelope.
ANSWER_BYTES = 5 * 1024 * 1024
#: A UTF-16 surrogate alone (from a ``\\ud800`` escape: a query string, a note's key): no UTF-8 encodes it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_utf8(value: Any, **options: Any) -> str:
    """``value`` as the API answers it (``kbsearch.api.responses.json_text`` gives Powertools' encoder): compact
    JSON in UTF-8, not ASCII-escaped (a Russian letter two bytes, not six). A lone surrogate stays its JSON escape
    (the same string to a JSON reader): raw, the body could not be encoded."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), **options)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def wire_bytes(value: Any) -> int:
    """What ``value`` takes in a Lambda's response, in bytes: its JSON as the API sends it (:func:`json_utf8`),
    escaped once more as the function result's ``body`` string, which the python3.13 runtime writes in UTF-8 too
    (awslambdaric's marshaller: ``ensure_ascii=False`` from python3.12). A Russian letter is 2 bytes there (it
    counted 7, ASCII-escaped twice, after answers became UTF-8), a control character 7 (``\\\\u0001``), a quote 4 (``\\\\\\"``)."""
    return len(json.dumps(json_utf8(value, default=str), ensure_ascii=False).encode("utf-8"))
