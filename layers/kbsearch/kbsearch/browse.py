"""Reading and browsing the KB besides search: one note (whole, or one section by heading) with its frontmatter,
outgoing links and backlinks; the values the filters accept, with counts, and the recent notes; every note, page by
page. One service for ``GET /notes/{path}``, the MCP tools and resources, and Slack, so that one place reads a note.

Every read is for a caller's :class:`~kbsearch.access.Scope`: the note's text comes from the KB source through
:class:`~kbsearch.reader.NoteReader` (a note the scope may not read is answered exactly as a missing one, and for
a restricted scope the index is asked first, so that no byte of such a note is read: the answer's time tells no
more than its text), and
every index read carries the scope's must-clause (:func:`kbsearch.qdrant.query.scope_clause`), so links, backlinks,
counts and pages never name what the caller may not read. The note's place in the link graph is one filtered Qdrant
query on the keys the indexer stores (:mod:`kbsearch.links`), never a scan; the catalog is Qdrant facets (payload
indexes) and one ordered query; a page of notes is one scroll. When the index cannot be read, a restricted
scope's read of a note is IndexUnavailable (the index decides first what it may read); an unrestricted one still
gets the note, without links, and says so in ``degraded`` (as does any read whose links query alone fails).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kbsearch.access import visible_links
from kbsearch.errors import ConfigError, IndexUnavailable, KbSearchError
from kbsearch.lexical import folded, tag_key
from kbsearch.links import (
    GRAPH_KEYS,
    LINK_KEY,
    NAME_KEY,
    OLD_GRAPH_FIELDS,
    PATH_KEY,
    Linkable,
    Resolver,
    anchored_keys,
    graph_clauses,
    link_key,
    link_keys,
    linkable,
    name_keys,
    path_keys,
    resolve,
    stored_keys,
    unanchored,
)
from kbsearch.providers.resilience import Deadline
from kbsearch.qdrant.query import (
    LINKS_AT,
    TAG_KEYS,
    Retriever,
    folders_clause,
    held_request,
    point_id,
    scope_clause,
    unreachable,
)
from kbsearch.schemas import (
    ANSWER_BYTES,
    CatalogResponse,
    FacetCount,
    NoteLinks,
    NoteRef,
    NoteResponse,
    RecentNote,
    SearchFilters,
    SectionInfo,
    folder_prefix,
    folder_spellings,
    wire_bytes,
)

if TYPE_CHECKING:
    from kbsearch.access import Scope
    from kbsearch.notes import Heading
    from kbsearch.reader import NoteReader
    from kbsearch.search import SearchService

logger = logging.getLogger(__name__)

MAX_NOTE_BYTES = 4 * 1024 * 1024
#: What each listed part of a note's answer may take at most (as ``ANSWER_BYTES`` counts): its headings (each
#: lists the headings above it, so a note of 20,000 headings under one of 100,000 characters listed 2 GB), its
#: outgoing links, its backlinks, its frontmatter (else left out); the body gets what is left.
PART_BYTES = 256 * 1024
FRONTMATTER_BYTES = 512 * 1024
#: Notes one graph search returns at most: the notes linking to a note (beyond it, ``backlinks_truncated``); the
#: notes its links may mean get this many besides one per link (:meth:`BrowseService._links`).
GRAPH_LIMIT = 500
#: The pages of :data:`GRAPH_LIMIT` a note read by name (:meth:`BrowseService._named`) reads at most: a name 10,000
#: notes share resolves among the first 10,000 in id order (rel36); each page one request within the read's budget.
NAMED_PAGES = 20
MAX_SECTION_CHARS = 500
PAGE_SIZE = 100
CURSOR_PREFIX = "n1."
_FIRST_CHUNK = {"key": "chunk_index", "match": {"value": 0}}
_NOTE_FIELDS = ["path", "title", "updated", "type", "status", "tags"]
#: a first chunk's fields the graph reads: its graph keys, and the three fields of a note a store made before holds
_GRAPH_FIELDS = ["path", "title", GRAPH_KEYS, LINKS_AT, *OLD_GRAPH_FIELDS.values()]


class NoteProblem(KbSearchError):
    """A note cannot be given. ``kind``: ``bad_path``, ``not_found``, ``no_section``, ``unreadable`` (the note's
    bytes) or ``unavailable`` (the KB source); the message is public (no bucket, folder or exception text)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class InvalidCursor(KbSearchError):
    """A page cursor this service did not issue (or whose note is gone)."""


def find_section(headings: list[Heading], wanted: str) -> Heading | None:
    """The heading ``wanted`` names: its text (``Steps``, ``## Steps``) or the tail of its heading path
    (``Rotation > Steps``), case- and whitespace-insensitive, both read as BM25 reads them
    (:func:`kbsearch.lexical.reading`: a heading saved in NFD, holding a soft hyphen or a zero-width space, or in full
    width, is named as its reader types it; it was a 404 ``no section`` listing a heading that looked the same); the first such heading. A
    heading that holds ``>`` itself (``Settings > Files and links``) is named by its text, or by a path ending in
    it (it was split there as a path, and could not be named at all)."""
    name = _as_path(wanted)
    if not name:
        return None
    seen: dict[str, str] = {}  # each heading's text read once (a note's headings repeat as its sections' paths)
    for heading in headings:
        path = [seen[h] if h in seen else seen.setdefault(h, _as_path(h)) for h in heading.path]
        ends = bool(path) and (name == path[-1] or name.endswith(" > " + path[-1]))  # cheap: most headings fail it
        if ends and any(" > ".join(path[-k:]) == name for k in range(1, len(path) + 1)):
            return heading
    return None


def _without_title(wanted: str, title: str) -> str:
    """``wanted`` without the note's title before it: a hit's ``heading`` is the title, then the section's heading
    path (:func:`kbsearch.chunking.chunk_note`), and a heading path holds the title only when an H1 repeats it (a
    vault whose titles are its notes' names holds none: ``Bases syntax > Types`` named no section of that note).
    '' when ``wanted`` does not start with the title."""
    name, head = _as_path(wanted), _as_path(title)
    return name[len(head) + 3 :] if head and name.startswith(head + " > ") else ""


#: A percent-escape, as a Markdown link's target holds one (``Three%20laws.md``).
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
#: A relative target's climbing start (``../``, ``./``), its note then named as a tail of a path names it.
_CLIMBS = re.compile(r"\A(?:\.\.?/)+")


def _as_path(text: str) -> str:
    """A section's name, or a heading's text, folded (:func:`kbsearch.lexical.folded`) as its parts between ``>``, each without a
    leading ``#``."""
    parts = (part.strip().lstrip("#").strip() for part in folded(text).split(">"))
    return " > ".join(part for part in parts if part)


def encode_cursor(path: str) -> str:
    return CURSOR_PREFIX + base64.urlsafe_b64encode(path.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: object) -> str:
    """The note path a cursor starts at; :class:`InvalidCursor` when it is not one :func:`encode_cursor` makes."""
    from kbsearch.sources import path_problem

    if not isinstance(cursor, str) or not cursor.startswith(CURSOR_PREFIX) or len(cursor) > 4096:
        raise InvalidCursor("unknown cursor")
    data = cursor[len(CURSOR_PREFIX) :]
    try:
        path = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidCursor("unknown cursor") from None
    if encode_cursor(path) != cursor or path_problem(path):
        raise InvalidCursor("unknown cursor")
    return path


def _linkable(point: object) -> Linkable | None:
    """A first chunk's point (with :data:`_GRAPH_FIELDS`) as a link can reach its note; None when it holds no path."""
    payload = point.get("payload") if isinstance(point, dict) else None
    return linkable(payload) if isinstance(payload, dict) else None


def _scoped(must: list[dict[str, Any]], scope: Scope) -> dict[str, Any]:
    """A filter of ``must`` and the scope's clause (none for an unrestricted scope), the clause inside the ``must``
    (never the filter's own ``should``, as the search's :func:`~kbsearch.qdrant.query.filter_json` writes it: a read
    adds a ``should`` of its own beside it, which would replace it)."""
    groups = scope.query_groups()
    return {"must": [*([] if groups is None else [scope_clause(groups)]), *must]}


def _str_list(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _cut_short(value: str, known: Iterable[str]) -> list[str]:
    """The shortest held value that ``value`` (three letters or more) begins, case aside (``prod``: ``production``,
    ``infra``: ``infrastructure``): a value cut short, which difflib's cutoff 0.6 no longer names (its ratio 0.57,
    0.53; they were named at 0.5: rev39a); as a list, as :func:`difflib.get_close_matches` answers."""
    start = value.casefold()
    if len(start) < 3:
        return []
    longer = [k for k in known if len(k) > len(value) and k.casefold().startswith(start)]
    return sorted(longer, key=lambda k: (len(k), k))[:1]


@dataclass(frozen=True)
class UnheldFilter:
    """A filter value no note the caller may read holds (a slip, ``runbok``), with the value meant, else the
    values some note holds (:meth:`BrowseService.unheld_filters`)."""

    what: str  # tag, type, status, folder
    value: str
    meant: str | None
    held: tuple[str, ...]

    def said(self, option: str, sentence: bool = False) -> str:
        """One line naming it as the caller gave it (``option``: ``--tag``, ``tags``, ``tag:``), the same words on
        every surface: ``no note has the tag 'runbok' (--tag): did you mean 'runbook'?``; ``sentence``: as one
        of an answer's sentences (capitalised, a full stop unless it asks)."""
        line = f"no note has the {self.what} {self.value!r} ({option})"
        if self.meant:
            line += f": did you mean {self.meant!r}?"
        elif not self.held:  # the list was printed empty: "the tags: "
            line += f": no note has any {self.what}"
        else:
            plural = "statuses" if self.what == "status" else f"{self.what}s"  # it said "the statuss: active"
            more = f" and {len(self.held) - 10} more" if len(self.held) > 10 else ""  # ", ...." closed the sentence
            line += f"; the {plural}: {', '.join(self.held[:10])}{more}"
        if not sentence:
            return line
        return line[:1].upper() + line[1:] + ("" if line.endswith("?") else ".")


def _index_only() -> Any:  # a browse service over the index alone reads no note
    raise KbSearchError("no KB source: this browse service reads the index alone")


class BrowseService:
    """Built once per container next to the search service, whose index connection (and slot) it shares."""

    def __init__(self, search: SearchService, reader: NoteReader) -> None:
        self.search = search
        self.reader = reader

    @classmethod
    def over_index(cls, search: SearchService) -> BrowseService:
        """One that reads the index alone (its catalog, :meth:`unheld_filters`), for callers with no KB source: the
        CLI's search, the Slack worker. A note's read is refused."""
        from kbsearch.reader import NoteReader

        return cls(search, NoteReader(_index_only))

    def unheld_filters(
        self, filters: SearchFilters | None, scope: Scope, within: Deadline | None = None
    ) -> list[UnheldFilter]:
        """For a search with no hits: each filter value no note ``scope`` may read holds, with the closest one that
        some note does (``runbok``: 'runbook'). A misspelt tag, type, status or folder was "no notes found" and
        nothing more on every surface but ``kbsearch search`` (walk34: ``kb_search``, Slack's ``tag:``). Read from
        the catalog's facets (:meth:`catalog`, within ``scope``: a value only notes the caller may not read hold is
        never named); a facet cut at its limit is not complete, so nothing is said of it, and a catalog that
        cannot be read says nothing."""
        import difflib

        from kbsearch.lexical import tag_keys

        wanted = {what: values for what, values in (
            ("tag", (filters.tags or []) if filters else []), ("type", (filters.type or []) if filters else []),
            ("status", (filters.status or []) if filters else []),
            ("folder", [filters.path_prefix] if filters and filters.path_prefix else []),
        ) if values}  # fmt: skip
        if not wanted:
            return []
        budget = _budget(self.search.settings.search_budget_s, within)
        try:
            keyed = "tag" in wanted and self.search.tag_keys_indexed(
                Deadline(min(budget, self.search.settings.qdrant_timeout_s))
            )
            held = self.search.read_index(
                lambda retriever, timeout_s: _held(retriever, Deadline(timeout_s), scope, wanted, keyed), budget
            )
        except (KbSearchError, ValueError, OSError):
            return []
        unheld = []
        for what, values in wanted.items():
            known = held.get(what)
            if known is None:  # cut at its limit (not complete), or the folder is held
                continue
            keys = set(tag_keys(known)) if what == "tag" else set()  # a tag filter matches as Obsidian's tag: search
            for value in values:
                if value in known or (what == "tag" and tag_key(value) in keys):
                    continue
                # a slip of the value (``runbok``, ``actve``: one letter), not any value sharing letters with it:
                # at 0.5, ``ops`` was answered "did you mean 'cost'?" (two of its three letters changed; walk39),
                # where the list of the values held says what there is
                meant = difflib.get_close_matches(value, known, n=1, cutoff=0.6) or _cut_short(value, known)
                unheld.append(UnheldFilter(what, value, meant[0] if meant else None, tuple(known)))
        return unheld

    # -- one note ---------------------------------------------------------------------------------------------------
    def note_text(self, path: str, scope: Scope, deadline: Deadline | None = None) -> tuple[str, str]:
        """The note at ``path`` as written (its identity, its decoded text) when ``scope`` may read it;
        :class:`NoteProblem` otherwise (``not_found`` too when the scope may not read it). A restricted scope's
        read asks the index first (:meth:`indexed`): :class:`~kbsearch.errors.IndexUnavailable` when it cannot be
        asked, for every path alike (503, as an unusable access file: an unreachable index must not turn readable
        notes into missing ones). ``deadline``: the request's, which the read (the index's answer included)
        shares (default: the reader's own budget)."""
        from kbsearch.sources import note_path, shown_path

        path = note_path(path)  # the identity the indexer gave the note (NFC), whatever form the client sent
        shown = note_path(shown_path(path))
        if shown == path or not shown:
            return self._note_text(path, scope, deadline)
        try:
            return self._note_text(path, scope, deadline)
        except NoteProblem as exc:
            # No note as given: the path its reader sees in it, copied with a zero-width space, a soft hyphen or a
            # bidi mark, typed in full width, a space after it (each was a 404 "no note at" a path that looked like
            # the note's, or a 400 suggesting ``.md`` after ``.md``). Its own "no note" names the path as given.
            if exc.kind not in ("not_found", "bad_path"):
                raise
            try:
                return self._note_text(shown, scope, deadline)
            except NoteProblem as again:
                if exc.kind == "not_found" and again.kind in ("not_found", "bad_path"):
                    raise exc from None
                if again.kind == "not_found":  # named as given, never by a path the caller did not send
                    raise NoteProblem("not_found", str(again).replace(repr(shown), repr(path), 1)) from None
                raise

    def _note_text(self, path: str, scope: Scope, deadline: Deadline | None) -> tuple[str, str]:
        """:meth:`note_text` of ``path`` as given (in NFC)."""
        from kbsearch.notes import NoteError, decode_note, link_parts
        from kbsearch.sources import NoteUnreadable, SourceError, path_problem

        problem = path_problem(path) or (None if path.lower().endswith(".md") else "note paths end in .md")
        if problem == "note paths end in .md" and not re.search(r"\.[A-Za-z0-9]{1,5}$", path):
            # a note named as a link names it (its path without .md, its file name, title or an alias) or by its
            # id (not an attachment: image.png): the path meant, when a note the scope may read is so named
            # a link as a note's text writes it (``[[Note#Steps|the steps]]``, ``Note#Steps``): its note part
            note, heading, _ = link_parts(path)
            try:
                meant = self._named(path, scope, deadline)
                if meant is None and note and note != path:
                    meant = self._named(note, scope, deadline)
                else:
                    heading = ""
            except IndexUnavailable:  # which note is so named cannot be told now: no claim either way
                raise NoteProblem("bad_path", f"not a note path: {problem} (use kb_search to find one)") from None
            if meant is not None:
                part = f" with section {heading!r}" if heading and not heading.startswith("^") else ""
                raise NoteProblem("bad_path", f"not a note path: {problem}: did you mean {meant!r}{part}? (use "
                                              "kb_search to find one)")  # fmt: skip
            folder = self._folder_named(path, scope, deadline)
            if folder is not None:
                raise NoteProblem("bad_path", f"not a note path: {folder}")
            raise NoteProblem("bad_path", f"not a note path: {problem}, and no note is named {path!r} nor has it as "
                                          "its id (use kb_search to find one)")  # fmt: skip
        if problem:
            meant = self._link_meant(path, scope, deadline)
            if meant is not None:
                raise NoteProblem("bad_path", f"not a note path: {problem}: did you mean {meant!r}? (use kb_search "
                                              "to find one)")  # fmt: skip
            folder = self._folder_named(path, scope, deadline) if path.endswith("/") else None
            if folder is not None:
                raise NoteProblem("bad_path", f"not a note path: {folder}")
            raise NoteProblem("bad_path", f"not a note path: {problem} (use kb_search to find one)")
        try:
            raw = self.reader.read(path, scope, self.indexed, None if deadline is None else deadline.remaining())
        except NoteUnreadable as exc:  # a FIFO, a device, a dangling symlink, ...: its reason names no server path
            raise NoteProblem("unreadable", f"the note at {path!r} cannot be read: {exc.reason}") from None
        except ConfigError as exc:  # names the setting to fix (KB_SOURCE), as /health does
            raise NoteProblem("unavailable", f"notes cannot be read: {exc}") from None
        except SourceError as exc:
            # The source's text names buckets, keys with their prefix or server folders: log it, say less.
            if str(exc).startswith("no note at"):  # the caller's miss, answered as such: not the operator's warning
                logger.info("no note at the path asked for", extra={"error": str(exc)})
                meant = self._link_meant(path, scope, deadline)
                if meant is not None:
                    raise NoteProblem("not_found", f"no note at {path!r}: did you mean {meant!r}? (use kb_search to "
                                                   "find one)") from None  # fmt: skip
                raise NoteProblem("not_found", f"no note at {path!r}; use kb_search to find the right path") from None
            logger.warning("a note could not be read", extra={"error": str(exc)})
            raise NoteProblem("unavailable", "the knowledge base cannot be read right now; try again shortly") from None
        try:
            return path, decode_note(raw, max_bytes=MAX_NOTE_BYTES)
        except NoteError as exc:
            raise NoteProblem("unreadable", f"the note at {path!r} cannot be read: {exc.reason}") from None

    def _folder_named(self, path: str, scope: Scope, deadline: Deadline | None) -> str | None:
        """What to tell a caller who handed a folder to a read by path (``ru/ранбуки`` as ``GET /notes`` and
        ``kb_list`` list folders, or ``en/runbooks/``): that it is a folder, of how many notes the caller may read,
        and how to list or search them; None when the caller may read no note in it (a folder of restricted notes is
        answered as one that is not there), ``path`` names no folder, or the index cannot say. It was ``path has an
        empty segment ('//')`` for the trailing '/', and ``no note is named ...`` without it. One facet count of the
        notes' first chunks in the folder, within the scope's clause, as the catalog counts them; on a miss only."""
        try:
            prefix = folder_prefix(path)
        except ValueError:
            return None
        folders = folders_clause(folder_spellings(prefix))
        if prefix is None or folders is None:
            return None
        where = _scoped([_FIRST_CHUNK, folders], scope)

        def count(retriever: Retriever, timeout_s: float) -> int:
            found = retriever.facet({"key": "chunk_index", "filter": where, "limit": 1, "exact": True}, timeout_s)
            return sum(c for v, c in found if v is not None and v != "")

        try:
            notes = self.search.read_index(count, None if deadline is None else deadline.remaining())
        except IndexUnavailable:
            return None
        if not notes:
            return None
        return (f"{prefix!r} is a folder of {notes} note{'' if notes == 1 else 's'}: list them with kb_list or GET "
                f"/notes (path_prefix {prefix!r}), or search them with kb_search's path_prefix")  # fmt: skip

    def _link_meant(self, path: str, scope: Scope, deadline: Deadline | None) -> str | None:
        """The note a Markdown link's target names when it was handed to a read as a path: percent-escaped as
        Obsidian writes one (``Three%20laws%20of%20motion.md``, which the vault's notes hold) or relative to the
        note that holds it (``../ops/Plan.md``), read as :func:`kbsearch.notes.markdown_link_note` reads a target,
        then named as ``[[...]]`` would name it (the linking note's folder is not known: a tail of a path names
        its note). None when ``path`` is no such target, names no note the scope may read, or the index cannot say."""
        from kbsearch.notes import markdown_link_note

        if not (_ESCAPE.search(path) or path.startswith(("./", "../"))):
            return None
        note = markdown_link_note(_CLIMBS.sub("", path), "")
        if not note or note == path:
            return None
        try:
            meant = self._named(note[:-3] if note.lower().endswith(".md") else note, scope, deadline)
        except IndexUnavailable:
            return None
        return meant if meant != path else None

    def _named(self, name: str, scope: Scope, deadline: Deadline | None) -> str | None:
        """The path of the note ``name`` means as ``[[name]]`` would (its path without ``.md``, a tail of it, its
        title or an alias), else of the note whose frontmatter ``id`` it is (a hit's ``doc_id``: ``KB-013``), among
        the notes ``scope`` may read: the graph's keys and the first chunks' ``doc_id``, scrolled
        :data:`GRAPH_LIMIT` at a time, at most :data:`NAMED_PAGES` pages (adv35: one query of 500, so a name more
        notes shared resolved among the first 500 in id order, not by the documented order; a note whose whole path
        is the name ends the reading at once, no other can rank before it). None when no note is so named (a name is
        no path: ``name + '.md'`` was suggested, a note that is not there for a title or an id, ``KB-013.md``);
        IndexUnavailable when the index cannot say."""
        key = link_key(name)
        new, old = self.search.graph_fields(deadline)
        keys = [] if key is None else [unanchored(key)]
        should: list[dict[str, Any]] = [*graph_clauses(PATH_KEY, keys, old, new),
                                        *graph_clauses(NAME_KEY, keys, old, new)]  # fmt: skip
        should.append({"key": "doc_id", "match": {"value": name.strip()}})
        request: dict[str, Any] = {
            "filter": {**_scoped([_FIRST_CHUNK], scope), "should": should},
            "limit": GRAPH_LIMIT,
            "with_payload": {"include": [*_GRAPH_FIELDS, "doc_id"]},
        }
        found: Linkable | None = None
        ids: list[str] = []

        def scrolled(retriever: Retriever, timeout_s: float) -> tuple[list[dict[str, Any]], str | None]:
            return retriever.scroll(dict(request), timeout_s)  # the page's offset as it is now

        for _ in range(NAMED_PAGES):
            points, offset = self.search.read_index(scrolled, None if deadline is None else deadline.remaining())
            named = [n for n in map(_linkable, points) if n is not None]
            best = None if key is None else resolve(key, "", [*named, *([] if found is None else [found])])
            found = best if best is not None else found
            ids += [p["payload"]["path"] for p in points if _linkable(p) and p["payload"].get("doc_id") == name.strip()]
            if offset is None or (found is not None and found.path_keys and found.path_keys[-1] in keys):
                break
            request["offset"] = offset
        if found is not None:
            return found.path
        return min(ids) if ids else None

    def indexed(self, path: str, groups: Sequence[str]) -> bool:
        """Whether the index holds the note at ``path`` for a caller holding ``groups``: one lookup of its first
        chunk by point id within the scope's clause (:func:`~kbsearch.qdrant.query.held_request`), the same work
        for a missing note, a forbidden one and a readable one, whatever their size. IndexUnavailable when the
        index cannot be read."""
        request = held_request(path, groups)
        points, _ = self.search.read_index(lambda r, timeout_s: r.scroll(request, timeout_s))
        return bool(points)

    def note(self, path: str, section: str | None, scope: Scope, within: Deadline | None = None) -> NoteResponse:
        """The note at ``path`` (as search returns it), whole or the section named ``section``, with its
        frontmatter, headings and links, as ``scope`` may see them; :class:`NoteProblem` when it cannot be given.
        The note's read and its links' share the request's budget (each was given all of it, and the restricted link
        list a third: 30 s at the default 10 s, past the function's timeout); links out of time are ``degraded``.
        ``within``: a deadline the budget ends by too (a JSON-RPC batch's)."""
        from kbsearch.notes import NoteError, cut_heading, outline, read_frontmatter, wiki_links

        budget = self.search.settings.search_budget_s
        deadline = Deadline(budget) if within is None else within.within(budget)
        path, text = self.note_text(path, scope, deadline)
        try:
            frontmatter, body, _ = read_frontmatter(text)  # the indexer's parser: linear, no alias expansion
        except NoteError:
            frontmatter, body = {}, text  # unusable frontmatter: still show the note as written
        body = body.lstrip("\n")
        headings = outline(body)
        stem = path.rsplit("/", 1)[-1][:-3]
        h1 = next((h.text for h in headings if h.level == 1), None)
        title = frontmatter.get("title")
        title = title.strip() if isinstance(title, str) and title.strip() else (h1 or stem)
        chosen = None
        if section is not None and section.strip():
            # a hit's heading is the title, then the section's heading path: a path that holds the title only when an
            # H1 repeats it, and the title alone names the note's head (the whole note, as such an H1's section is)
            chosen = find_section(headings, section) or find_section(headings, _without_title(section, title))
            if chosen is not None:
                body = "\n".join(body.split("\n")[chosen.start : chosen.end]).rstrip("\n")
            elif _as_path(section) != _as_path(title):
                # headings as the indexer cuts them: one heading can be most of a 4 MiB note, and each path repeats it
                shown = "; ".join(" > ".join(cut_heading(t) for t in h.path) for h in headings[:40]) or "none"
                raise NoteProblem("no_section", f"no section {section.strip()!r} in {path!r}; its headings: {shown}")
        degraded: list[str] = []
        targets, more_targets = wiki_links(text, path)  # more: past the first MAX_LINKS, never resolved nor listed
        try:
            links: NoteLinks | None = self._links(path, title, frontmatter.get("aliases"), targets, scope, deadline)
        except IndexUnavailable as exc:
            logger.warning("a note's links could not be read", extra={"error": str(exc)})
            links, degraded = None, ["links"]
        truncated: list[str] = []
        sections = _prefix(
            (
                SectionInfo(heading=cut_heading(h.text), level=h.level, path=[cut_heading(t) for t in h.path])
                for h in headings
            ),
            PART_BYTES,
        )
        if len(sections) < len(headings):
            truncated.append("sections")
        if links is not None:
            outgoing = _prefix(links.outgoing, PART_BYTES)
            backlinks = _prefix(links.backlinks, PART_BYTES)
            if more_targets or len(outgoing) < len(links.outgoing):
                truncated.append("links")
            links = NoteLinks(outgoing=outgoing, backlinks=backlinks,
                              backlinks_truncated=links.backlinks_truncated or len(backlinks) < len(links.backlinks))  # fmt: skip
        if wire_bytes(frontmatter) > FRONTMATTER_BYTES:
            frontmatter = {}
            truncated.append("frontmatter")
        return NoteResponse(
            path=path, title=cut_heading(title), frontmatter=frontmatter, body=body,
            section=[cut_heading(t) for t in chosen.path] if chosen else None, sections=sections,
            links=links, degraded=degraded, truncated=truncated,
        )  # fmt: skip

    def _links(
        self, path: str, title: str, aliases: object, targets: list[str], scope: Scope, deadline: Deadline
    ) -> NoteLinks:
        """Outgoing links resolved to notes and the backlinks, from one batch of two searches: the notes that link to
        any of this note's keys (at most :data:`GRAPH_LIMIT`), and the notes any of its links (or its own keys:
        namesakes) could mean (one per link and :data:`GRAPH_LIMIT` besides), among the notes
        ``scope`` may read (a link to any other stays unresolved, as a link to a missing note). Within
        ``deadline`` (IndexUnavailable once it has passed)."""
        if deadline.expired:
            raise IndexUnavailable("the request's budget was spent before the links were read")
        me = Linkable(path, title, tuple(path_keys(path)), tuple(name_keys(title, aliases)))
        own = list(dict.fromkeys(me.path_keys + me.name_keys))
        wanted = list(dict.fromkeys([*map(unanchored, link_keys(targets)), *own]))
        own += anchored_keys(path)  # a link from the root (``[[../ops/Runbook]]``) names this note by its whole path
        new, old = self.search.graph_fields(deadline)
        # two searches of one batch, each with its own limit: the notes linking here never crowd out the notes this
        # one's links mean (a hub every daily note links back to), and each of its links may find its note
        meant = [*graph_clauses(PATH_KEY, wanted, old, new), *graph_clauses(NAME_KEY, wanted, old, new)]
        linking = graph_clauses(LINK_KEY, own, old, new)
        searches = [
            {
                "filter": {**_scoped([_FIRST_CHUNK], scope), "should": should},
                "limit": limit,
                "with_payload": {"include": _GRAPH_FIELDS},
                "with_vector": False,
            }
            for should, limit in ((meant, len(wanted) + GRAPH_LIMIT), (linking, GRAPH_LIMIT))
            if should
        ]
        answers = iter(
            self.search.read_index(lambda r, timeout_s: r.query_batch(searches, timeout_s), deadline.remaining())
            if searches
            else []
        )
        candidates, linkers = next(answers) if meant else [], next(answers) if linking else []
        points = [*candidates, *linkers]
        by_path: dict[str, tuple[Linkable, list[str]]] = {}  # a note may be in both answers (a cycle)
        for point in points:
            linkable = _linkable(point)
            if linkable is not None:
                by_path.setdefault(linkable.path, (linkable, stored_keys(point["payload"], LINK_KEY)))
        notes = list(by_path.values())
        pool = [n for n, _ in notes if n.path != path] + [me]  # this note as it is now, even before a sync
        meaning = Resolver(pool)  # each link resolved among the notes holding its key alone, once a folder
        outgoing: list[NoteRef] = []
        seen: set[str] = set()
        for target in targets:
            key = link_key(target)
            if key is None or key in seen:
                continue
            seen.add(key)
            found = meaning(key, path)
            outgoing.append(NoteRef(target=target, path=found.path if found else None,
                                    title=found.title if found else None))  # fmt: skip
        if scope.restricted:  # as a search hit's links: no target that names only notes the caller may not read
            recorded = self.search.restricted_links(deadline, [p.get("payload") or {} for p in points])
            shown = set(visible_links([r.target for r in outgoing if r.path is None], recorded, scope))
            outgoing = [r for r in outgoing if r.path is not None or r.target in shown]
        # from the answer of the notes linking here alone: its limit is what backlinks_truncated says was reached
        linked = {point["payload"]["path"] for point in linkers if _linkable(point) is not None} - {path}
        backlinks = [
            NoteRef(target=source.path, path=source.path, title=source.title)
            for source, keys in sorted(notes, key=lambda n: n[0].path)
            if source.path in linked and any(k in own and meaning(k, source.path) is me for k in keys)
        ]
        return NoteLinks(outgoing=outgoing, backlinks=backlinks, backlinks_truncated=len(linkers) >= GRAPH_LIMIT)

    # -- what the filters accept ------------------------------------------------------------------------------------
    def catalog(
        self, path_prefix: str | None, recent: int, scope: Scope, within: Deadline | None = None
    ) -> CatalogResponse:
        """Tags, types, statuses and folders with their note counts (within ``path_prefix``), and the ``recent``
        most recently updated notes, of the notes ``scope`` may read: facets on the payload indexes and one ordered
        query, one index slot. ValueError for a ``path_prefix`` no folder can have (a '..' segment). ``within``: a
        deadline the read ends by (a JSON-RPC batch's; default: the request's budget)."""
        must: list[dict[str, Any]] = [_FIRST_CHUNK]
        prefix = folder_prefix(path_prefix)  # as search normalises it; ValueError for a '..' segment
        folders = folders_clause(folder_spellings(prefix))  # as given and as its reader sees it
        if folders:
            must.append(folders)
        where = _scoped(must, scope)
        budget = _budget(self.search.settings.search_budget_s, within)
        keyed = self.search.tag_keys_indexed(Deadline(min(budget, self.search.settings.qdrant_timeout_s)))

        def read(retriever: Retriever, timeout_s: float) -> CatalogResponse:
            # the six calls share the read's time (each was given all of it: six times the request's budget)
            deadline = Deadline(timeout_s)

            def left() -> float:
                remaining = deadline.remaining()
                if remaining <= 0:
                    raise unreachable("no answer within the request's budget")
                return remaining

            def facet(key: str, limit: int) -> list[FacetCount]:
                return _facet(retriever, key, where, limit, left())

            total = sum(c.count for c in facet("chunk_index", 1))
            latest: list[dict[str, Any]] = []
            if recent > 0:
                latest = retriever.query(
                    {"query": {"order_by": {"key": "updated", "direction": "desc"}}, "filter": where, "limit": recent,
                     "with_payload": {"include": _NOTE_FIELDS}, "with_vector": False},
                    left(),
                )  # fmt: skip
            spellings = facet("tags", TAG_FACET_VALUES)
            keys = {c.value: c.count for c in facet(TAG_KEYS, TAG_FACET_VALUES)} if keyed and spellings else {}
            return CatalogResponse(
                notes=total, tags=tag_counts(spellings, keys, 200), types=facet("type", 50),
                statuses=facet("status", 50),
                folders=facet("folders", 100), recent=[n for n in (_recent(p) for p in latest) if n is not None],
            )  # fmt: skip

        catalog = self.search.read_index(read, budget)
        logger.info("access", extra={"caller": scope.caller, "groups": scope.query_groups(), "results": catalog.notes})
        return catalog

    # -- every note, page by page -----------------------------------------------------------------------------------
    def page(
        self, cursor: str | None, scope: Scope, limit: int = PAGE_SIZE, within: Deadline | None = None
    ) -> tuple[list[RecentNote], str | None]:
        """One page of the notes ``scope`` may read (in the index's order) and the cursor of the next (None: the
        last page). A cursor is the path of the next page's first note; one that is not (no longer) such a note
        is :class:`InvalidCursor`. ``within``: a deadline the read ends by (a JSON-RPC batch's)."""
        start = decode_cursor(cursor) if cursor is not None else None
        request: dict[str, Any] = {
            "filter": _scoped([_FIRST_CHUNK], scope), "limit": limit + 1, "with_payload": {"include": _NOTE_FIELDS},
            "with_vector": False,
        }  # fmt: skip
        if start is not None:
            request["offset"] = point_id(start, 0)
        points, _ = self.search.read_index(
            lambda r, timeout_s: r.scroll(request, timeout_s), _budget(self.search.settings.search_budget_s, within)
        )
        notes = [n for n in (_recent(p) for p in points) if n is not None]
        logger.info("access", extra={"caller": scope.caller, "groups": scope.query_groups(), "results": len(notes)})
        if start is not None and (not notes or notes[0].path != start):
            raise InvalidCursor("unknown cursor")
        if len(notes) > limit:
            return notes[:limit], encode_cursor(notes[limit].path)
        return notes, None


def _recent(point: Any) -> RecentNote | None:
    payload = point.get("payload") if isinstance(point, dict) else None
    if not isinstance(payload, dict) or not isinstance(payload.get("path"), str):
        return None
    return RecentNote(
        path=payload["path"], title=_text(payload.get("title")) or payload["path"],
        updated=_text(payload.get("updated")), type=_text(payload.get("type")), status=_text(payload.get("status")),
        tags=_str_list(payload.get("tags")),
    )  # fmt: skip


#: How many tag spellings (``tags``) and tag keys (``tag_keys``) the catalog's facets read, of which the 200 most used
#: tags are listed: a tag written several ways is one entry (:func:`tag_counts`).
TAG_FACET_VALUES = 1000


def _facet(retriever: Retriever, key: str, where: dict[str, Any], limit: int, timeout_s: float) -> list[FacetCount]:
    """One facet of the notes ``where`` selects, exact counts, most first; no null or empty value."""
    hits = retriever.facet({"key": key, "filter": where, "limit": limit, "exact": True}, timeout_s)
    return [FacetCount(value=str(v), count=c) for v, c in hits if v is not None and v != ""]


#: The most values :meth:`BrowseService.unheld_filters` reads of a facet (the catalog's): a facet cut there is not
#: complete, so nothing is said of it.
_UNHELD_LIMITS = {"tag": 200, "type": 50, "status": 50, "folder": 100}


def _held(
    retriever: Retriever, deadline: Deadline, scope: Scope, wanted: dict[str, list[str]], keyed: bool
) -> dict[str, list[str] | None]:
    """The values the notes ``scope`` may read hold, of each kind ``wanted`` names (None: cut at its limit, or a
    folder some such note is in): the facets of those kinds alone. It read the whole catalog, whose ``folders``
    facet is ~8 ms of the 10x vault's ~9 whatever the filter (a tag's needs ~0.3 ms; rev34b). A folder:
    :func:`_folders_near`."""
    where = _scoped([_FIRST_CHUNK], scope)

    def left() -> float:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise unreachable("no answer within the request's budget")
        return remaining

    held: dict[str, list[str] | None] = {}
    for what in wanted:
        limit = _UNHELD_LIMITS[what]
        if what == "folder":
            held[what] = _folders_near(retriever, wanted[what][0], scope, limit, left)
            continue
        counted = _facet(retriever, what if what != "tag" else "tags", where, TAG_FACET_VALUES if what == "tag" else
                         limit, left())  # fmt: skip
        if what == "tag":
            keys = {c.value: c.count for c in _facet(retriever, TAG_KEYS, where, TAG_FACET_VALUES, left())} if (
                keyed and counted) else {}  # fmt: skip
            counted = tag_counts(counted, keys, limit)
        held[what] = None if len(counted) >= limit else [c.value for c in counted]
    return held


def _folders_near(
    retriever: Retriever, folder: str, scope: Scope, limit: int, left: Callable[[], float]
) -> list[str] | None:
    """For a ``path_prefix`` of no hits: None when a note ``scope`` may read is in it (looked for as the search
    matches it, in each of its spellings: ``ｅｎ/runbooks`` is ``en/runbooks`` too), else the folders beside it:
    the deepest folder above it that such a note is in, and the folders below that one (``c3/en/Base``: ``c3/en``,
    ``c3/en/Bases``, ...), or every folder when none is; None past ``limit`` of them (not complete). Each look is
    one point; one facet, of that folder's notes: the whole KB's folders were faceted (~8 ms of the 10x vault) and
    past the limit there, so a misspelt folder of a KB of more than 100 folders was never named (rev34b)."""

    def has_note(spellings: Sequence[str]) -> bool:
        clause = folders_clause(spellings)
        request = {"filter": _scoped([_FIRST_CHUNK, *([clause] if clause else [])], scope), "limit": 1,
                   "with_payload": False, "with_vector": False}  # fmt: skip
        return bool(retriever.scroll(request, left())[0])

    if has_note(folder_spellings(folder)):
        return None
    levels = folder.split("/")
    above = next((f for f in ("/".join(levels[:d]) for d in range(len(levels) - 1, 0, -1)) if has_note([f])), None)
    clause = folders_clause([above]) if above else None
    where = _scoped([_FIRST_CHUNK, *([clause] if clause else [])], scope)
    counted = _facet(retriever, "folders", where, limit, left())
    if len(counted) >= limit:
        return None
    return [c.value for c in counted if above is None or c.value == above or c.value.startswith(above + "/")]


def tag_counts(spellings: Sequence[FacetCount], keys: dict[str, int], limit: int) -> list[FacetCount]:
    """The catalog's tags: one entry a tag as a filter reads it (:func:`kbsearch.lexical.tag_key`: ``Tag``, ``TAG``
    and ``#tag`` are one), shown as most notes write it (of equal counts, the first the facet lists), counting the
    notes a filter on it finds (``keys``: the ``tag_keys`` facet, a tag's nested ones included, as the filter finds
    them); a tag whose key is not counted there (a collection without the ``tag_keys`` index, notes written before
    it) counts its spellings' notes. Most notes first, the first ``limit``."""
    groups: dict[str, list[FacetCount]] = {}
    for counted in spellings:
        key = tag_key(counted.value)
        if key:
            groups.setdefault(key, []).append(counted)
    out = []
    for key, spelt in groups.items():
        shown = max(spelt, key=lambda c: c.count)  # the first of the most used
        most = max(keys.get(key, 0), shown.count) if key in keys else sum(c.count for c in spelt)
        out.append(FacetCount(value=shown.value, count=most))
    out.sort(key=lambda c: -c.count)  # stable: equal counts keep the facet's order
    return out[:limit]


def _budget(budget_s: float, deadline: Deadline | None) -> float:
    """A read's budget: ``budget_s``, and no later than ``deadline`` when there is one (a batch's)."""
    return budget_s if deadline is None else max(0.0, min(budget_s, deadline.remaining()))


def _prefix(items: Any, budget: int) -> list[Any]:
    """The first of ``items`` (pydantic models) whose answer takes at most ``budget`` bytes (:func:`wire_bytes`);
    stops reading ``items`` there."""
    kept: list[Any] = []
    used = 0
    for item in items:
        used += wire_bytes(item.model_dump(mode="json")) + 1
        if used > budget:
            break
        kept.append(item)
    return kept


def fit_note(note: NoteResponse, max_bytes: int = ANSWER_BYTES) -> NoteResponse:
    """``note`` with its body cut (:func:`fit_text`) so that its answer takes at most ``max_bytes``
    (:func:`wire_bytes`), ``"body"`` added to ``truncated``; the same note when it fits. The other parts are bounded
    when the note is read (:meth:`BrowseService.note`), so what is left for the body is most of ``max_bytes``."""
    size = wire_bytes(note.model_dump(mode="json"))
    if size <= max_bytes:
        return note
    room = max_bytes - (size - wire_bytes(note.body)) - 32  # the flag's own bytes
    return note.model_copy(update={"body": fit_text(note.body, room), "truncated": [*note.truncated, "body"]})


def fit_text(text: str, max_bytes: int) -> str:
    """The longest start of ``text`` whose :func:`wire_bytes` are at most ``max_bytes``, cut at its last line end
    when that keeps at least half of it (a reader gets whole lines, a heading never in two)."""
    low, high = 0, len(text)  # wire_bytes grows with the prefix: a binary search, ~22 encodings of 4 MB
    while low < high:
        mid = (low + high + 1) // 2
        if wire_bytes(text[:mid]) <= max_bytes:
            low = mid
        else:
            high = mid - 1
    line = text.rfind("\n", 0, low)
    return text[: line if line > low // 2 else low]
