"""Reading a note by its path for a caller (``kb_get_note``, ``GET /notes/{path}``, ``resources/read``, a link's
target): the note comes from the KB source and is handed over only when the caller's
:class:`~kbsearch.access.Scope` may read it, decided exactly as the indexer decides it (the note's frontmatter
``access``, the access file's folder rules, the default). A note the caller may not read is answered exactly as a
note that does not exist: the same :class:`~kbsearch.sources.SourceError`, the same message, so "forbidden" and
"missing" cannot be told apart.

Nor by the time the answer takes: for a restricted caller the index is asked first (``indexed``: one ``has_id``
lookup of the note's first chunk within the caller's scope, :func:`kbsearch.qdrant.query.held_request`, whose cost
does not depend on the note), and the source is read only for a note the index holds for this caller. A note that
is not there and one the caller may not read cost the same: no byte of either is read (reading a forbidden 4 MB
note from S3 to parse its frontmatter, and then answering "missing", told that it was there by the time it took).
The note's own frontmatter is still checked once read, so the stricter of the index and the source wins: a note
narrowed in the source but not yet re-indexed stays unreadable. A note the index does not hold for the caller (not
yet indexed, skipped by the indexer: too large, unusable frontmatter) is missing to a restricted caller; an
unrestricted one (operator tools) reads the source as it is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kbsearch.access import (
    ACCESS_FILE,
    PUBLIC,
    AccessDeclarationError,
    AccessFileError,
    FolderRules,
    Scope,
    declared_access,
    note_access,
)
from kbsearch.sources import NoteUnreadable, SourceError, entry_problem, note_path, path_problem

if TYPE_CHECKING:
    from kbsearch.sources import Source

logger = logging.getLogger(__name__)

#: At most this many reads by path a request's budget gave up on may still run in this process (a warm search
#: Lambda's requests share them); while they do, a read is not started: the request's answer is the same 503.
MAX_ABANDONED = 4

#: ``indexed(path, groups)``: whether the index holds the note at ``path`` for a caller holding ``groups``;
#: :class:`~kbsearch.errors.IndexUnavailable` when the index cannot be asked.
Indexed = Callable[[str, Sequence[str]], bool]


def missing(path: str) -> SourceError:
    """What a read of a note that does not exist raises (the sources' own message)."""
    return SourceError(f"no note at {path!r}")


class NoteReader:
    """Built once per container over the KB source (opened lazily); the access file is read at most once per
    ``rules_ttl_s``. ``budget_s``: how long one read may take, the access file's included (None: no bound)."""

    def __init__(
        self, source: Callable[[], Source], default: str = PUBLIC, rules_ttl_s: float = 60.0, max_bytes: int = 0,
        budget_s: float | None = None,
    ) -> None:  # fmt: skip
        self.budget_s = budget_s
        self._source_factory = source
        self._source: Source | None = None
        self.default = default
        self.rules_ttl_s = rules_ttl_s
        self.max_bytes = max_bytes or 4 * 1024 * 1024
        self._rules: tuple[float, FolderRules | AccessFileError] | None = None
        self._lock = threading.Lock()

    @property
    def source(self) -> Source:
        with self._lock:
            if self._source is None:
                self._source = self._source_factory()
            return self._source

    def rules(self) -> FolderRules:
        """The access file's rules (cached); AccessFileError when it is unusable, SourceError when unreadable. A
        folder named ``_access.yaml`` (or a link to one) holds notes, not rules, as the indexer has it: no rules
        (every restricted read was 503 while it was there)."""
        now = time.monotonic()
        cached = self._rules
        if cached is None or now - cached[0] > self.rules_ttl_s:
            try:
                raw = self.source.read_path(ACCESS_FILE)
            except NoteUnreadable:
                if ACCESS_FILE in self.source.root_names():  # a FIFO, a dangling link: as the indexer, unusable
                    raise
                found: FolderRules | AccessFileError = FolderRules()  # a folder: not among the root's files
            except SourceError as exc:
                if not str(exc).startswith("no note at"):
                    raise
                found = FolderRules()
            else:
                try:
                    found = FolderRules.parse(raw)
                except AccessFileError as exc:
                    found = exc
            cached = self._rules = (now, found)
        if isinstance(cached[1], AccessFileError):
            raise cached[1]
        return cached[1]

    def read(self, path: str, scope: Scope, indexed: Indexed | None = None, budget_s: float | None = None) -> bytes:
        """The note's bytes when ``scope`` may read it; else :func:`missing` (as for a note that is not there).
        ``indexed``: the index, asked first for a restricted scope (every surface that serves callers passes it,
        :class:`kbsearch.browse.BrowseService`; without it the source alone decides, as an operator's tool may).
        Other SourceErrors (a bad path, an unreadable source) pass through as they are, and so does the index's
        :class:`~kbsearch.errors.IndexUnavailable` (alike for every path). One audit line per read: the caller,
        its groups and whether a note was returned (never the note's text). ``budget_s``: the time it has
        (default: the reader's ``budget_s``)."""
        found = 0
        try:
            raw = self._bounded(
                lambda: self._read(path, scope, indexed), self.budget_s if budget_s is None else budget_s
            )
            found = 1
            return raw
        finally:
            logger.info("access", extra={"caller": scope.caller, "groups": scope.query_groups(), "results": found})

    def _bounded(self, read: Callable[[], bytes], budget_s: float | None) -> bytes:
        """``read`` within ``budget_s`` of wall-clock time (SourceError after it): S3's client bounds each socket
        read (20 s, four attempts), not the exchange, so a bucket that hung or dripped held a read by path 100 s,
        past the gateway's 29 s and the function's own timeout. The abandoned read ends when botocore gives up (an
        S3 that drips never makes it): while :data:`MAX_ABANDONED` still run, no read is started (each request of a
        warm Lambda left one more thread and socket reading)."""
        if budget_s is None:
            return read()
        from kbsearch.providers.resilience import TooManyAbandoned, abandoned_calls, call_within

        try:
            return call_within(read, budget_s, "note-read", abandoned_calls("note-read", MAX_ABANDONED))
        except TooManyAbandoned:
            raise SourceError(f"the knowledge base is answering too slowly: {MAX_ABANDONED} earlier reads are still "
                              "running") from None  # fmt: skip
        except TimeoutError:
            raise SourceError(f"the knowledge base did not answer within {budget_s:.1f} s") from None

    def _read(self, path: str, scope: Scope, indexed: Indexed | None) -> bytes:
        """What a restricted caller is told, and the work done to tell it, depends only on what it may read: while
        the access file is unusable, every read is "cannot be read right now" (a missing path too); a note the
        index does not hold for the caller is missing without a byte of it read (an entry that is no note, a FIFO
        or a dangling symlink, is told as such only in a folder the caller may read by the rules, from its metadata
        alone); else the existence of paths the caller may not read would show in the kind of answer, or in its
        time."""
        from kbsearch.notes import NoteError, decode_note, note_head, read_frontmatter

        wanted = note_path(path)
        if scope.groups is None:
            return self.source.read_path(wanted)
        try:
            rules = self.rules()  # before the note: a broken access file answers alike for every path
        except AccessFileError as exc:
            logger.error("the access file is unusable; restricted callers read nothing", extra={"error": str(exc)})
            raise SourceError("the access rules cannot be read") from None
        problem = path_problem(wanted)
        if problem:  # as the source says it (the index is not asked for a path no note can have)
            raise SourceError(f"{wanted!r} is not a note path: {problem}")
        if indexed is not None and not indexed(wanted, sorted(scope.groups)):
            # not indexed, or not for this caller: alike, and nothing of the note is read to tell which
            if scope.can_read(note_access(wanted, None, rules, self.default)[0]):
                reason = entry_problem(self.source, wanted)  # a FIFO where the caller may read: its metadata only
                if reason is not None:
                    raise NoteUnreadable(wanted, reason)
            raise missing(wanted)
        try:
            raw = self.source.read_path(wanted)
        except NoteUnreadable:  # no note can be there, so no declaration: the folder rules decide who is told
            if not scope.can_read(note_access(wanted, None, rules, self.default)[0]):
                raise missing(wanted) from None
            raise
        # over this read's bound but held by the index for this caller (an indexer whose MAX_NOTE_BYTES is above it):
        # its declaration is read from its first bytes, and only a caller it lets read the note is told it is too
        # large (it was "no note at" the path a hit had just named); told first, that said a note made another
        # group's since the last sync was there, and its size
        large = indexed is not None and len(raw) > self.max_bytes
        try:
            head = note_head(raw) if large else raw
            metadata, _, warnings = read_frontmatter(decode_note(head, len(head) if large else self.max_bytes))
            declared = declared_access(metadata, warnings)
        except (NoteError, AccessDeclarationError):
            # the indexer skips such a note: to a restricted caller it is not there
            raise missing(wanted) from None
        groups, _ = note_access(wanted, declared, rules if declared is None else FolderRules(), self.default)
        if not scope.can_read(groups):
            raise missing(wanted)
        if large:
            raise NoteUnreadable(wanted, f"too large: {len(raw)} bytes (limit {self.max_bytes})")
        return raw
