"""The sync: list the KB, diff it against what the index holds, (re)index what changed, remove what is gone.

Guarantees:
- unchanged notes (same etag, a complete set of chunks) are neither downloaded nor embedded;
- per note, the new chunks are upserted first and the old version's extra chunks deleted after, so the note is
  never missing from search; a crash anywhere leaves a state the next run repairs (a half-written note has no
  complete set of chunks for its etag, so it is redone);
- a failed listing deletes nothing; a run that would delete more than ``max_delete_ratio`` of the indexed notes
  deletes nothing unless allowed; an S3 note the listing lacks is looked up before it is deleted (an event batch
  may have written it after the listing);
- a bad note is skipped with a reason, and its last good version stays indexed: everything that happens to one
  note (read, decode, parse, chunk, payload) is isolated, whatever it raises;
- a note whose key is not a safe path, or whose key has the same NFC path as another key, is skipped with a
  reason; so is an entry the source lists with a problem (not a regular file, a dangling symlink, a folder that
  cannot be listed, ...), and what was indexed from it (or under that folder) stays; fields the note keeps but kb-search drops, and frontmatter ids shared by several notes, are warnings;
- a storage failure (a full disk, the embedded store's errors, Qdrant 5xx) ends the run with ``error`` set;
  what was written is consistent, and the next run converges;
- the run stops before its deadline and says ``incomplete``; the next run carries on;
- an index whose BM25 vectors were read with an older reading of text (``kbsearch.lexical.READING_VERSION``) has
  each chunk's read anew from its stored payload, nothing embedded, before the notes are synced; the new version is
  recorded only once every chunk holds it.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import gc
import hashlib
import json
import logging
import math
import os
import threading
import time
import unicodedata
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from kbsearch.access import (
    ACCESS_FILE,
    FROM_FRONTMATTER,
    MAX_REACH_SETS,
    PUBLIC,
    AccessDeclarationError,
    AccessFileError,
    CallerMap,
    CallerMapError,
    FolderRules,
    declared_access,
    group_sets,
    note_access,
    reach_of,
    reach_sets_target,
    reach_target,
    refuse_access_file_below_root,
    refuse_mistaken_access_file,
    restricted_links,
)
from kbsearch.chunking import Chunk, chunk_note, embed_text, lexical_text
from kbsearch.config import Secrets, Settings
from kbsearch.errors import ConfigError, LeaseLostError, StoreError, StoreHeld
from kbsearch.lexical import READING_VERSION, SparseVector, document_vector, tag_keys, text_language
from kbsearch.links import (
    LINK_KEY,
    NAME_KEY,
    OLD_GRAPH_FIELDS,
    PATH_KEY,
    RESOLVE_VERSION,
    ROOT,
    KeyFilter,
    Linkable,
    graph_clauses,
    graph_keys,
    keyed,
    keys_naming,
    link_keys,
    linkable,
    links_to_others,
    name_keys,
    names_a_note,
    path_keys,
    payload_aliases,
    stored_keys,
    unanchored,
)
from kbsearch.markdown import PARSE_VERSION
from kbsearch.providers.embeddings import Embedder, EmbeddingStats
from kbsearch.providers.resilience import Deadline, ProviderError
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import (
    BM25_READING,
    BM25_READING_FROM,
    GRAPH_KEYS_ONLY,
    LAST_SYNC_AT,
    LAST_SYNC_KIND,
    LINK_NAMES,
    LINKS_AT,
    LINKS_GENERATION,
    LINKS_PENDING,
    MAX_FIELD_CHARS,
    NOTES_READING,
    NOTES_READING_FROM,
    REACH,
    REACH_GROUPS,
    REACH_SETS,
    REBUILDING,
    RESTRICTED_LINKS,
    SIGNATURE_KEYS,
    SOURCE_KEY,
    TAG_KEYS,
    folders_of,
    links_generation,
    payload_links,
    reach_groups,
    reach_sets,
    signature_id,
    stored_links,
    token_groups,
)
from kbsearch.qdrant.store import (
    EMBED_HASH,
    GRAPH_FIELD,
    NAME_FIELD,
    PATHS_PER_OPERATION,
    ChunkPoint,
    NoteState,
    SchemaMismatchError,
    Store,
    add_state,
    next_page,
    paths_filter,
    recorded_access,
    storage_errors,
)
from kbsearch.sources import (
    LocalSource,
    NoteArchived,
    NoteUnreadable,
    Source,
    SourceError,
    SourceObject,
    head,
    hidden,
    listed,
    no_notes,
    open_source,
    path_problem,
    preferred,
    restored,
)
from kbsearch.timelimit import TimeLimit, TimeLimitHit, cancel_all
from kbsearch.tokens import counts

if TYPE_CHECKING:
    from kbsearch.events import Change
    from kbsearch.notes import Note

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
LinksLock = Callable[[], AbstractContextManager[Any]]


@dataclass
class SyncReport:
    source: str
    collection: str
    dense: bool
    full: bool = False
    notes_listed: int = 0
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    repaired: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    attachments_ignored: int = 0
    chunks_upserted: int = 0
    chunks_deleted: int = 0
    embedding_calls: int = 0
    embedding_tokens: int = 0
    embedding_fallbacks: int = 0
    duration_ms: int = 0
    incomplete: bool = False
    remaining: int = 0
    deletion_blocked: str | None = None
    error: str | None = None
    reembedded: str | None = None  # why every note is being re-embedded (model, format or dimensions changed)
    rebuilt: str | None = None  # --rebuild: the collection built and where the alias points now
    missed_by_events: int = 0  # changes this run found older than the event grace: no S3 event had delivered them
    access_updated: int = 0  # unchanged notes whose groups changed: payload updated, nothing re-embedded
    bm25_rewritten: int = 0  # chunks whose BM25 vector was read anew from their payload (an older reading)
    bm25_reading: str | None = None  # what became of an index read with an older BM25 reading (Indexer._reread_bm25)
    #: how far the notes read again for a new reading of their bodies got (Indexer._record_reading_progress)
    notes_reading: str | None = None
    no_notes: str | None = None  # the listing held no note: what a note is, where it was looked for (sources.no_notes)
    #: notes this run wrote that an event batch claimed meanwhile: read again and applied (Indexer._reapply_claimed)
    claimed_meanwhile: int = 0
    #: the notes this run read and did not write because their embedding did not come back, and why (Indexer._index)
    unwritten: str | None = None
    #: wiki-links this run left naming no note: those of the notes it wrote, and those of other notes that named a
    #: note it deleted or renamed (or a title or alias it changed); how many, and the first DANGLING_SHOWN by path
    #: (:func:`dangling_links`): ``{"path": the linking note, "link": the link's key}``
    dangling_links: int = 0
    dangling: list[dict[str, str]] = field(default_factory=list)
    #: every wiki-link of the index that names no note, this run's and the ones already there (a note's link to a key
    #: counted once): counted by a run whose options ask it (``count_dangling``: ``kbsearch index``, the scheduled
    #: run), None otherwise or when the run's deadline cut the count (:func:`dangling_total`)
    dangling_total: int | None = None
    #: the warnings of the access settings (``_access.yaml``, ``ACCESS_GROUPS``) a full sync found exactly as the
    #: last one that said them (the same rules file, the same lines): not said again (one WARNING line each, every
    #: hourly sync, forever, for a rule of a folder still to be filled); ``{"count", "since"}``, ``since`` the time
    #: of the sync that said them (:meth:`Indexer._fold_access_warnings`). None: none stand unsaid
    access_standing: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Parsed:
    obj: SourceObject
    kind: str  # added | updated
    note: Note
    access: tuple[list[str], str]  # groups, where they came from
    chunks: list[Chunk]
    points: list[ChunkPoint]  # payload and sparse vector built; the dense vector is added when the window is embedded


class _EmbeddingCut(Exception):
    """A window's embedding failed (``error``: the provider's, or the run's end) after some of its requests were
    answered: ``points`` are the window's, with the vectors that came back (the others still None)."""

    def __init__(self, error: ProviderError, window: list[_Parsed], points: list[ChunkPoint]) -> None:
        super().__init__(str(error))
        self.error, self.window, self.points = error, window, points


#: The cyclic garbage collector's first threshold while notes are written (Python's default: 700). A window's
#: answers are ~1,000 lists of 1,024 floats and its points as many payload dicts, all alive until the window is
#: written: at 700 allocations a young collection, and every tenth an older one, walked them again and again (10x
#: the vault: ~1,050 collections, 1.3-1.4 s of the indexing process's CPU under its one interpreter lock; at
#: 20,000, 257 and 0.4 s; BENCHMARKS.md, "Session 14"). Nothing escapes collection: cycles are found as before, later.
GC_YOUNG_WHILE_WRITING = 20_000


class _Collector:
    """The syncs that hold the collector's threshold raised (:func:`fewer_collections`), and what it was before."""

    lock = threading.Lock()
    held = 0
    before: tuple[int, int, int] | None = None


@contextlib.contextmanager
def fewer_collections(young: int = GC_YOUNG_WHILE_WRITING) -> Iterator[None]:
    """Raise the collector's first threshold to at least ``young`` while the block runs (process-wide: the first of
    overlapping blocks sets it, the last to leave puts back what it found)."""
    with _Collector.lock:
        if _Collector.held == 0:
            _Collector.before = before = gc.get_threshold()
            gc.set_threshold(max(young, before[0]), *before[1:])
        _Collector.held += 1
    try:
        yield
    finally:
        with _Collector.lock:
            _Collector.held -= 1
            if _Collector.held == 0 and _Collector.before is not None:
                gc.set_threshold(*_Collector.before)
                _Collector.before = None


#: NOTE_PARSE_LIMIT_S's default: the limit an entry of :data:`PARSE_REFUSED` that does not record one is read under
DEFAULT_PARSE_LIMIT_S: float = Settings.model_fields["note_parse_limit_s"].default


#: The most lines a sync says of the caller mapping's entries that match no caller (the rest are counted in one).
MAX_ACCESS_LINES = 10


@dataclass
class SyncOptions:
    full: bool = False
    allow_mass_delete: bool = False
    max_delete_ratio: float = 0.5
    max_note_bytes: int = 1024 * 1024
    chunk_max_tokens: int = 400
    chunk_overlap_tokens: int = 40
    window_chunks: int = 512  # chunks parsed ahead and embedded together (4 x batch size x concurrency)
    event_grace_s: float = 300.0  # a change younger than this may still have its event in flight (missed_by_events)
    access_default: str = PUBLIC  # public | deny (ACCESS_DEFAULT)
    #: the tokens of the group sets callers hold (:meth:`kbsearch.access.CallerMap.set_tokens`, :func:`caller_options`):
    #: a full sync gives them to chunks' ``reach`` and records them; none known: only the recorded ones are kept
    caller_sets: tuple[str, ...] = ()
    #: the callers of the caller mapping and their groups (:meth:`kbsearch.access.CallerMap.holders`): a full sync
    #: names a group one holds that no note is restricted to (a slip, ``finanse``: the caller reads public notes only)
    callers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: what kept the caller mapping from this sync (a key given twice, not JSON; SSM unreadable): a full sync says it
    callers_problem: str = ""
    #: its entries that match no caller (:meth:`kbsearch.access.CallerMap.problems`): a full sync names them
    callers_unmatched: tuple[str, ...] = ()
    #: the longest one note's parse, chunking and points may take (NOTE_PARSE_LIMIT_S), CPU time: past it the note is
    #: skipped, and not parsed again until it changes (:data:`PARSE_REFUSED`)
    parse_limit_s: float = DEFAULT_PARSE_LIMIT_S
    #: count every dangling link of the index after the run (:attr:`SyncReport.dangling_total`): one scroll of every
    #: note's first chunk; a run of the whole KB's listing asks it (``run_sync``), an event batch or a save does not
    count_dangling: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SyncOptions:
        options = cls(
            max_delete_ratio=settings.max_delete_ratio,
            max_note_bytes=settings.max_note_bytes,
            chunk_max_tokens=settings.chunk_max_tokens,
            chunk_overlap_tokens=settings.chunk_overlap_tokens,
            window_chunks=settings.embedding.batch_size * settings.embedding.concurrency * 4,
            event_grace_s=settings.event_grace_s,
            access_default=settings.access_default,
            parse_limit_s=settings.note_parse_limit_s,
        )
        for key, value in overrides.items():
            setattr(options, key, value)
        return options


class Indexer:
    def __init__(
        self,
        source: Source,
        store: Store,
        embedder: Embedder | None,
        options: SyncOptions | None = None,
        progress: Progress | None = None,
        links_lock: LinksLock | None = None,
        claims: Callable[[], Any] | None = None,
        parser: ParsingProcess | None = None,
    ) -> None:
        self.source = source
        self.store = store
        self.embedder = embedder
        self.options = options or SyncOptions()
        self.progress = progress
        #: where a run in a thread other than the main one parses its notes one at a time (a timer signal bounds a
        #: parse in a main thread only): ``kbsearch serve``'s live sync. None: such a run parses them unbounded
        self.parser = parser
        self._written_ids: dict[str, str] = {}  # path → doc_id of the notes this run wrote
        self._keys_written: dict[str, str] = {}  # path → key of the notes this run wrote or deleted
        #: the event batches' sequencer log, opened when the run ends (:meth:`_reapply_claimed`); None: no batches
        self.claims = claims
        self._names_written: dict[str, list[str]] = {}  # path → the title and alias link keys of the notes written
        self._links_written: dict[str, list[str]] = {}  # path → the link keys (``l:``) of the notes written
        self._kept: set[str] = set()  # paths (and folders, ending in '/') listed with a problem: never deleted
        self._dropped: set[str] = set()  # paths listed as links to other notes (``drop``): always deleted
        self._reuse: dict[str, dict[str, Any]] = {}  # path → embed_hash → stored dense vector (event-driven runs)
        #: notes a full sync rewrites only for their graph keys (their text unchanged), in the order it writes them:
        #: their stored dense vectors are read and kept, a batch at a time, instead of embedding them again
        #: (:meth:`_read_reuse`)
        self._regraph: list[str] = []
        self._regraph_at: dict[str, int] = {}  # path → its place in _regraph
        self._signature_id = ""
        self._reembed = False
        self._rules = FolderRules()
        self._access: dict[str, list[str] | None] = {}  # path → groups after this run (None: not known)
        self._state: dict[str, NoteState] = {}
        #: the titles' and aliases' keys (``n:``) of the notes this full sync deletes or rewrites, read before
        self._old_names: set[str] = set()
        #: held while the restricted link targets are rewritten (a short lease in the lease table, shared with the
        #: event batches; none locally, where the embedded store has one writer)
        self.links_lock: LinksLock = links_lock or contextlib.nullcontext
        #: groups to write (:meth:`_set_access`): (groups, where they came from) → the notes that get them
        self._pending_access: dict[tuple[tuple[str, ...], str], list[str]] = {}
        #: the groups this run gives a public chunk's ``reach`` (:meth:`_read_reach`), and those the collection
        #: recorded when the run began (every public chunk holds them)
        self._reach: list[str] = []
        self._reach_recorded: list[str] = []
        #: the generation of the recorded link targets when the run began: what its notes' ``links_at`` holds
        self._links_generation = 0
        self._reach_marked = False  # the collection records groups of reach (a store written before does not)
        #: the group-set tokens this run gives chunks' ``reach``, and those the collection recorded when it began
        self._sets: list[str] = []
        self._sets_recorded: list[str] = []
        #: notes whose stored chunk text is not what was embedded (:meth:`_reread_bm25`): read again from the KB
        self._reread_notes: set[str] = set()
        #: the collection records an older reading of notes' bodies than :data:`kbsearch.markdown.PARSE_VERSION`:
        #: this full sync reads every note again (:meth:`_classify`)
        self._reparse = False
        #: notes this full sync was to read again for today's reading (``regraph``) that could not be read (a
        #: transient S3 failure): they keep the older reading's chunks, so the reading is not recorded yet
        self._not_reread: list[str] = []
        #: how far earlier full syncs read notes again for today's reading (:data:`NOTES_READING_FROM`): the last
        #: path read in path order (None: none yet) and the notes before it that could not be read then
        self._reading_after: str | None = None
        self._reading_missed: frozenset[str] = frozenset()
        #: this full sync's notes, in path order, and those it had work for (:meth:`_record_reading_progress`)
        self._listed: list[str] = []
        self._work_paths: set[str] = set()
        self._passed: set[str] = set()  # the notes of its work it came to and did not write (skipped, refused)
        self._slow: dict[str, Refusal] = {}  # the notes this run found (or kept) too slow to parse
        #: whether a path is gone from the KB, as far as this run knows (a full sync: not listed; an event batch: a
        #: removed note); None: it knows of none. A refusal of a gone path is dropped (:meth:`_record_refused`)
        self._gone: Callable[[str], bool] | None = None
        self._refused_read: dict[str, Refusal] = {}  # the record as this run read it (:meth:`_refused`)
        #: the archived notes an earlier run could not read, path → :func:`archive_tag` (:data:`ARCHIVED_NOTES`), as
        #: this run read the record; and those this run found so (or kept)
        self._archived_read: dict[str, str] = {}
        self._archived_found: dict[str, str] = {}
        #: the access file's ETag as this full sync read its rules ("" none); None: the run read no rules
        self._rules_tag: str | None = None

    def sync(self, stop_at: Deadline | None = None, call_deadline: Deadline | None = None) -> SyncReport:
        """One sync run. ``stop_at``: no new work starts after it; ``call_deadline`` bounds provider calls."""
        started, began = time.monotonic(), time.time()
        self._rules_tag = None  # this run's (an Indexer kept for the next run must not compare with the last one's)
        report = SyncReport(
            source=self.source.uri, collection=self.store.collection, dense=self.embedder is not None,
            full=self.options.full,
        )  # fmt: skip
        try:
            self._sync(report, stop_at or Deadline(), call_deadline)
            if not self._lost(report, stop_at or Deadline()):
                self._reapply_claimed(report, began, stop_at or Deadline(), call_deadline)
                self._fold_access_warnings(report)
                record_sync(self.store, report, "full" if self.options.full else "reconcile")
        except LeaseLostError:  # a write refused once the lease was lost (Store.may_write): none sent since
            report.incomplete = True
        except StoreError as exc:
            report.error = str(exc) if isinstance(exc, SchemaMismatchError) else f"index storage failed: {exc}"
            report.incomplete = True
            logger.error("the index cannot be written; the run stops", extra={"error": report.error})
        finally:
            report.duration_ms = int((time.monotonic() - started) * 1000)
        return report

    def _fold_access_warnings(self, report: SyncReport) -> None:
        """A run that read the rules from its listing says the access settings' warnings only when they differ
        from those the last such run said (:data:`ACCESS_WARNED`: a digest of the access file's ETag and the
        lines): a rule for a folder a team has not filled yet, a group given ahead of its notes, were a WARNING line
        each at every hourly sync until the notes came (rev37c). Unchanged, they leave ``warnings`` and the report
        says how many stand and since when (``access_standing``); a change of the rules file, of the folders or
        groups a line names, or of the mapping's lines says them all again. Recorded only by a run without error
        (its checks all ran); a failed write of the record: said again next run."""
        if self._rules_tag is None or report.error:
            return
        said = [w for w in report.warnings if w["path"] in (ACCESS_FILE, "ACCESS_GROUPS")]
        digest = hashlib.md5(self._rules_tag.encode(), usedforsecurity=False)
        for line in sorted(f"{w['path']}\0{w['reason']}" for w in said):
            digest.update(f"\n{line}".encode())
        recorded = self.store.metadata().get(ACCESS_WARNED)
        if isinstance(recorded, dict) and recorded.get("digest") == digest.hexdigest():
            if said:
                report.warnings = [w for w in report.warnings if w not in said]
                report.access_standing = {"count": len(said), "since": recorded.get("since")}
            return
        since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with contextlib.suppress(StoreError, LeaseLostError):
            self.store.merge_metadata({ACCESS_WARNED: {"digest": digest.hexdigest(), "since": since}})

    def _reapply_claimed(
        self, report: SyncReport, began: float, stop_at: Deadline, call_deadline: Deadline | None
    ) -> None:
        """Before the run lets go of the index lease: the notes it wrote or deleted, and the access file, that an
        event batch claimed (``claims``, the sequencer log) since :data:`~kbsearch.sequencers.ABANDONED_S` before it
        began are read again and applied as they are now (:class:`ChangeSync`, no sequencer). Such a batch passed the lease check
        before this run took the lease, so it may have written a note's newer version (or its deletion) between
        this run's read of the older one and its write: the index held the older version, the batch's event was
        logged as applied, until the next sync. Claims older than that are of batches that had ended (no batch
        runs longer): what they wrote, this run's listing saw."""
        from kbsearch.events import Change
        from kbsearch.sequencers import ABANDONED_S

        if report.error:
            return
        # what this run wrote from its listing is written: its end recorded before the claims are read (and again
        # by record_sync). A batch that wrote a note's older read after this read (and after this run applied the
        # note again) finds the record once it has written and looks its notes up again
        # (ChangeSync._reapply_after_sync); one that wrote before it is in the claims read below. Recorded at the
        # end alone, a batch writing between the two found no end and checked nothing (rel39). Best effort: a store
        # that fails this write leaves the end to record_sync, as before (the run's notes are written)
        with contextlib.suppress(StoreError):
            self.store.merge_metadata({SYNC_ENDED: time.time()})
        prefix = getattr(self.source, "prefix", "")
        by_name = {(key[len(prefix) :] if prefix and key.startswith(prefix) else key): (path, key)
                   for path, key in self._keys_written.items()}  # fmt: skip
        # and the access file, whose rules this run gave every note: a batch that applied an older version of it
        # (read before this run read the newer) may have written its groups after this run's read of the index,
        # whether this run wrote them or found them right (a rule lost then put back: the notes it restricts stayed
        # public until the next sync); applied again, the rules as they are now go to every note (ChangeSync)
        by_name[ACCESS_FILE] = (ACCESS_FILE, prefix + ACCESS_FILE)
        # saved after this run read it (its event's batch failed back while this run holds the lease, claiming
        # nothing; or no log at all): this run gave every note the older rules' groups (rev36d)
        rules_moved = self._rules_moved(report)
        held: dict[str, tuple[str, float | None]] = {}
        try:  # the names ChangeSync._name logs claims under
            log = self.claims() if self.claims is not None else None  # None: no log (Qdrant Cloud, no lease table)
            held = log.claims(sorted(by_name)) if log is not None else {}
        except Exception as exc:  # the log unreachable: the run's writes stand, as before this check existed
            reason = f"{type(exc).__name__}: {str(exc)[:200]}"
            report.warnings.append({"path": "", "reason": f"the event batches' claims could not be read ({reason}): "
                                    "a note a batch wrote during this run may hold its older version until the "
                                    "next sync"})  # fmt: skip
            logger.warning("event claims not read after the sync", extra={"error": reason})
        recent = sorted(n for n, (_, at) in held.items() if at is not None and at >= began - ABANDONED_S)
        report.claimed_meanwhile = len(recent)
        if rules_moved and ACCESS_FILE not in recent:
            recent.append(ACCESS_FILE)
        if not recent:
            return
        again = ChangeSync(self.source, self.store, self.embedder, self.options, None, self.links_lock)
        again.kind = "full" if self.options.full else "reconcile"
        result = again.apply([Change(*by_name[n], removed=False) for n in recent], stop_at, call_deadline)
        for name in ("added", "updated", "deleted", "chunks_upserted", "chunks_deleted", "embedding_calls",
                     "embedding_tokens", "embedding_fallbacks", "access_updated"):  # fmt: skip
            setattr(report, name, getattr(report, name) + getattr(result, name))
        report.skipped += result.skipped
        report.warnings += result.warnings
        again_failed = (
            "an event batch claimed it during this run and applying it again failed: it may hold its older "
            "version until the next run"
        )
        if result.incomplete and lease_lost(stop_at):  # refused (Store.may_write): run_sync names the lost lease
            again_failed = ("an event batch claimed it during this run, which lost its index lease before applying it "
                            "again: the run holding the lease now reads it")  # fmt: skip
            report.incomplete = True
        report.warnings += [{"path": p, "reason": again_failed} for p in result.failed_paths]
        if result.error:
            report.error, report.incomplete = result.error, True

    def _access_tag(self, listing: list[SourceObject]) -> str:
        """The access file's ETag as this run lists it ("" when there is none): a folder's listing gives a file
        that is no note no ETag, so it is looked up (an MD5 of the file)."""
        found = next((obj for obj in listing if obj.path == ACCESS_FILE), None)
        if found is None or found.etag:
            return found.etag if found is not None else ""
        now = head(self.source, getattr(self.source, "prefix", "") + ACCESS_FILE)
        return now.etag if now is not None else ""

    def _rules_moved(self, report: SyncReport) -> bool:
        """Whether the access file changed (saved, deleted, created) since this run read its rules: one HEAD at
        the run's end (:meth:`_reapply_claimed`). False when the run read no rules, or the HEAD failed (a warning)."""
        if self._rules_tag is None:
            return False
        now = access_version(self.source, report.warnings, "not looked up again at the run's end", "during the run")
        return now is not None and now != self._rules_tag

    def _embedding_signature(self, report: SyncReport) -> None:
        """Compare the collection's recorded embedding (model, dimensions, input format) with the embedder's.
        Another model or format: every note is re-embedded, and until that completes the collection says it is
        rebuilding (searches then use BM25 only, never two models' vectors). Other dimensions: rebuilt afresh."""
        self._signature_id = ""
        self._reembed = False
        if self.embedder is None:
            if self.store.ensure_collection():
                self.store.merge_metadata(FRESH_METADATA)
            return
        wanted = self.embedder.signature
        self._signature_id = signature_id(wanted)
        try:
            fresh = not self.store.exists()
        except SchemaMismatchError:
            raise
        except StoreError:
            fresh = True  # e.g. an embedded store in an older format, which ensure_collection rebuilds
        if self.store.ensure_collection(wanted if fresh else None):
            self.store.merge_metadata(FRESH_METADATA)
            return
        recorded = self.store.metadata()
        before = {k: recorded.get(k) for k in SIGNATURE_KEYS}
        # set_metadata replaces the whole record: BM25's reading is carried (dropped, every chunk was rewritten
        # again), and whether every note holds its graph keys (a re-embed changes no note's keys)
        reading = {k: recorded[k] for k in (BM25_READING, BM25_READING_FROM, *CARRIED_METADATA)
                   if recorded.get(k) is not None}  # fmt: skip
        if recorded.get(REBUILDING) is None and (not any(before.values()) or before == wanted):
            if not any(before.values()):
                self.store.set_metadata({**wanted, **reading})  # built before signatures were recorded: adopt it
            return
        self._reembed = True
        report.reembedded = (
            f"embedding changed ({_describe(before)} → {_describe(wanted)}): every note is re-embedded; "
            "searches use BM25 only until this completes"
        )
        logger.warning("embedding changed: re-embedding every note", extra={"before": before, "after": wanted})
        if recorded.get(REBUILDING) != self._signature_id:
            # a re-embed begun now writes every note again, with today's reading: nothing to rewrite before it. One
            # begun by an earlier run keeps what that run recorded: an older code's run wrote its notes with the
            # older reading, and they are of the new model already, so this re-embed will not write them again
            reading = {BM25_READING: READING_VERSION} | {
                k: recorded[k] for k in CARRIED_METADATA if recorded.get(k) is not None
            }
        self.store.set_metadata({REBUILDING: self._signature_id, **reading})

    def _sync(self, report: SyncReport, stop_at: Deadline, call_deadline: Deadline | None) -> None:
        if self._lost(report, stop_at):  # lost before its first write (its start frozen past INDEX_LEASE_TTL_S)
            return
        try:
            self._embedding_signature(report)
        except SchemaMismatchError as exc:
            if not self.store.embedded:  # Qdrant Cloud is never dropped in place: searches would see it half-built
                raise SchemaMismatchError(
                    f"{str(exc).split('. Use another')[0]}. Run kbsearch index --rebuild: it builds a new collection "
                    f"and switches the alias {self.store.collection!r} to it when complete"
                ) from None
            # The embedded store is a local copy of the KB: rebuild it (make run, then make run ORACLE=e5, and back).
            held = self.store.metadata().get("embedding_model")
            self.store.drop()
            self._embedding_signature(report)
            why = str(exc).split(": ", 1)[-1].split(". Use another")[0]
            # "dense size 384 but EMBEDDING_DIMENSIONS=1024" said nothing to a run that embeds nothing, nor of an
            # index that held no vectors at all
            if held and self.embedder is None:
                why = (f"it held {held} vectors, and this run has no embedder (no EMBEDDING_API_KEY, no --oracle): "
                       "BM25 only now; a run with that model re-embeds every note")  # fmt: skip
            elif not held and self.embedder is not None:
                why = f"it was built BM25 only, and this run embeds with {self.embedder.signature['embedding_model']}"
            report.reembedded = f"the local collection was rebuilt and every note re-indexed ({why})"
            logger.warning("kbsearch: %s", report.reembedded)
        # a re-embed begun by this code records today's reading as it begins (it writes every note with it): current
        self._reread_bm25(report, stop_at)
        # notes chunked by an older reading of their bodies (kbsearch.markdown.PARSE_VERSION) are each read again
        # (_classify): their chunks may differ though their text did not
        metadata = self.store.metadata()
        recorded = metadata.get(NOTES_READING)
        self._reparse = recorded != PARSE_VERSION
        self._reading_after, self._reading_missed = None, frozenset()
        progress = metadata.get(NOTES_READING_FROM)
        if self._reparse and isinstance(progress, dict) and progress.get("version") == PARSE_VERSION:
            # an earlier full sync's deadline stopped the re-read: the notes up to there are read (a record of an
            # older reading, PARSE_VERSION bumped again mid-upgrade, counts for nothing)
            after, missed = progress.get("after"), progress.get("missed")
            self._reading_after = after if isinstance(after, str) else None
            self._reading_missed = frozenset(p for p in missed or () if isinstance(p, str))
        if self._reparse:
            logger.info("notes were chunked by an older reading: every note is read again, its unchanged chunks' "
                        "vectors kept", extra={"notes_reading": recorded, "now": PARSE_VERSION,
                                               "read_up_to": self._reading_after})  # fmt: skip
        self._not_reread, self._listed, self._work_paths, self._passed = [], [], set(), set()
        self._sync_notes(report, stop_at, call_deadline)
        if self._reparse:
            self._record_reading_progress(report)
        # a skipped note that is indexed keeps the old model's vectors: the re-embed is not done until a run embeds
        # it too (a note that was never indexed, a broken one say, holds no vectors and blocks nothing)
        stale = [s for s in report.skipped if self._stale(s["path"])] if self._reembed else []
        if stale and not report.incomplete:
            report.incomplete = True
            report.warnings.append({"path": "", "reason": f"re-embedding not finished: {len(stale)} note(s) "
                                    "skipped keep the previous model's vectors; searches stay BM25-only"})  # fmt: skip
        if self._reembed and not (report.incomplete or report.error) and self.embedder is not None:
            # the whole record replaced: every note was written with today's reading (the graph keys: below; what a
            # re-embed does not change, carried: whether every note holds its graph keys, the notes refused as slow)
            recorded = self.store.metadata()
            carried = {k: recorded[k] for k in CARRIED_METADATA if recorded.get(k) is not None}
            carried.pop(NOTES_READING_FROM, None)  # every note was read with today's reading: recorded below
            self.store.set_metadata({**self.embedder.signature, BM25_READING: READING_VERSION, **carried,
                                     NOTES_READING: PARSE_VERSION})  # fmt: skip
        self._record_reach(report)
        self._record_graph_keys(report)

    @staticmethod
    def _lost(report: SyncReport, stop_at: Deadline) -> bool:
        """Whether the run's index lease is lost (:func:`lease_lost`): then the run starts no more work (its
        first step, the claims of event batches at its end) and is incomplete. What it would write after the loss
        is refused by the store itself (:meth:`kbsearch.qdrant.store.Store.may_write`, under every write: rel35),
        so no write site checks the lease on its own: the run that took the lease over writes them, and a write of
        this run's after its own would set it back (rel34)."""
        if not lease_lost(stop_at):
            return False
        report.incomplete = True
        return True

    def _read_again(self, path: str) -> bool:
        """A full sync for a new reading reads this unchanged note again: no earlier run of it read the note (it
        comes after the last path they got to, or could not be read then)."""
        return self._reading_after is None or path > self._reading_after or path in self._reading_missed

    def _record_reading_progress(self, report: SyncReport) -> None:
        """After a full sync that read notes again for today's reading (:data:`kbsearch.markdown.PARSE_VERSION`):
        how far it got, in path order, from where the earlier ones stopped (:data:`NOTES_READING_FROM`). A note is
        done when written, or come to and not written (skipped, refused: as before, those do not hold the reading
        back), or there was nothing to do for it; the first note of its work it did not come to (its deadline, a
        failure) ends the walk. The notes it could not read (:attr:`_not_reread`) are kept as missed and read by
        the next sync. Once every note is done and none is missed, the reading is recorded (a run without error,
        complete); until then the next full sync carries on, however many runs the KB takes."""
        if report.error and not self._listed:
            return  # the listing or the access file failed: nothing was read
        done = self._written_ids.keys() | self._passed
        after = self._reading_after
        walked_to_end = True
        for path in self._listed:
            if after is not None and path <= after:
                continue
            if path in self._work_paths and path not in done:
                walked_to_end = False
                break
            after = path
        unread = set(self._not_reread)
        # the notes up to ``after`` not read with today's reading: those this run could not read, and the earlier
        # runs' it did not read again (gone from the KB: dropped); those after it are read again anyway
        missed = sorted(p for p in self._reading_missed | unread
                        if after is not None and p <= after and (p not in done or p in unread)
                        and not (self._gone and self._gone(p)))  # fmt: skip
        unreadable = len(missed)
        if unreadable > MAX_READING_MISSED:
            # the collection's metadata keeps at most that many (every search reads it): the progress stops before
            # the first note past them, which the next run reads again with every note after the progress
            at = bisect.bisect_left(self._listed, missed[MAX_READING_MISSED])
            after, missed, walked_to_end = (self._listed[at - 1] if at else None), missed[:MAX_READING_MISSED], False
        total = len(self._listed)
        read = bisect.bisect_right(self._listed, after) - len(missed) if after is not None else 0
        if missed:
            # recorded now, the reading would leave these notes chunked by the older one until their text changes
            logger.warning("notes not read again (unreadable this run): notes_reading is recorded by a later sync",
                           extra={"paths": missed[:20], "count": len(missed)})  # fmt: skip
        if walked_to_end and not missed and not (report.incomplete or report.error):
            self.store.merge_metadata({NOTES_READING: PARSE_VERSION, NOTES_READING_FROM: None})
            report.notes_reading = f"re-read notes for reading {PARSE_VERSION}: {total:,} of {total:,}; recorded"
            logger.info("kbsearch: %s", report.notes_reading)
            return
        if after != self._reading_after or missed != sorted(self._reading_missed):
            self.store.merge_metadata({NOTES_READING_FROM: {"version": PARSE_VERSION, "after": after,
                                                            "missed": missed}})  # fmt: skip
        report.notes_reading = (
            f"re-reading notes for reading {PARSE_VERSION}: {read:,} of {total:,}"
            + (f" ({unreadable:,} unreadable, read again next time)" if missed else "")
            + ("; the next sync carries on" if not walked_to_end or missed else "")
        )
        logger.info("kbsearch: %s", report.notes_reading)

    def _record_graph_keys(self, report: SyncReport) -> None:
        """Once every note's first chunk holds its ``graph_keys``, record it (:data:`GRAPH_KEYS_ONLY`): the graph's
        readers then stop matching the three fields a store made before held the keys in. A collection made with
        them records it when created; one made before, after the sync that rewrote its last note (each note's first
        chunk without them is rewritten by the next sync: :meth:`_classify`). Until then a complete sync reads the
        index's state once more to tell (Qdrant Edge: its saved state; Qdrant Cloud: a scroll of the state fields)."""
        if report.error or report.incomplete or self.store.metadata().get(GRAPH_KEYS_ONLY):
            return
        if all(st.graph for st in self.store.indexed_state().values()):
            self.store.merge_metadata({GRAPH_KEYS_ONLY: True})

    def _reread_bm25(self, report: SyncReport, stop_at: Deadline) -> None:
        """Make every chunk's BM25 vector today's reading of its text (:data:`kbsearch.lexical.READING_VERSION`)
        when the collection records an older one, or none (indexed before it was recorded): the text is rebuilt
        from the chunk's payload (:func:`stored_embed_text`: what the indexer tokenized), its vector written by an
        update of vectors, :data:`REREAD_PAGE` chunks a request; nothing is embedded, no dense vector or payload is
        touched. A chunk written anew meanwhile (another etag: an event batch that started before this run took
        the lease) is left as it was written. Where the run's deadline stops it, how far it got is recorded and the
        next sync carries on from there; a failure leaves the older version recorded (the next sync starts
        again). A chunk whose rebuilt text is not what its dense vector embedded (its ``embed_hash``) has its note
        read again from the KB in this run. Today's reading is recorded as soon as every chunk holds it."""
        metadata = self.store.metadata()
        recorded = metadata.get(BM25_READING)
        if recorded == READING_VERSION:
            return
        before = f"v{recorded}" if isinstance(recorded, int) else "unrecorded"
        carried = metadata.get(BM25_READING_FROM)
        request: dict[str, Any] = {"limit": REREAD_PAGE, "with_payload": {"include": REREAD_FIELDS}}
        if isinstance(carried, dict) and carried.get("version") == READING_VERSION and carried.get("after"):
            request["offset"] = carried["after"]
        total = self.store.count() if self.progress else 0
        seen: set[str] = set()
        mismatched = 0
        started = time.monotonic()
        while True:
            try:
                points, offset = self.store.scroll(request, 30.0)
            except StoreError as exc:  # named as the read it is (the state's reading names its own)
                raise StoreError(f"reading the chunks' texts for their BM25 vectors failed: {exc}") from None
            vectors: list[tuple[str, SparseVector]] = []
            versions: set[tuple[str, str | None]] = set()  # (path, etag) of the chunks rewritten
            for point in points:
                payload = point.get("payload") or {}
                text = stored_embed_text(payload)
                if text is None:
                    continue  # not a chunk the indexer wrote: nothing to read it from (a sync deletes it)
                path, etag, digest = payload["path"], payload.get("etag"), payload.get(EMBED_HASH)
                signature = payload.get("embedding")
                if isinstance(digest, str) and digest and embed_hash(str(signature or ""), text) != digest:
                    mismatched += 1
                    self._reread_notes.add(path)
                lexical = lexical_text(payload["chunk_index"], text, stored_note_id(payload))
                linked = links_to_others(payload_links(payload.get("links")), str(path), payload.get("title"))
                vectors.append((str(point["id"]), document_vector(lexical, links=linked)))
                versions.add((path, etag if isinstance(etag, str) else None))
            guard = [{"must": [{"key": "path", "match": {"value": path}}]
                      + ([{"key": "etag", "match": {"value": etag}}] if etag is not None else [])}
                     for path, etag in sorted(versions, key=repr)]  # fmt: skip
            if vectors:
                self._set_sparse(vectors, {"should": guard})
            report.bm25_rewritten += len(vectors)
            if self.progress and total:
                self.progress(min(report.bm25_rewritten, total), total, "(BM25 vectors read anew)")
            if next_page(offset, seen) is None:
                break
            request["offset"] = offset
            if stop_at.remaining() <= 0:  # the next sync carries on from the next page
                self.store.merge_metadata({BM25_READING_FROM: {"version": READING_VERSION, "after": offset}})
                report.incomplete = True
                report.bm25_reading = (
                    f"rewrote BM25 vectors of {report.bm25_rewritten} chunks (reading {before} -> v{READING_VERSION}) "
                    "before the run's deadline; the next sync carries on"
                )
                logger.warning("kbsearch: %s", report.bm25_reading)
                return
        if report.bm25_rewritten or mismatched:
            report.bm25_reading = (
                f"rewrote BM25 vectors of {report.bm25_rewritten} chunks (reading {before} -> v{READING_VERSION}) "
                f"in {time.monotonic() - started:.1f} s, nothing embedded"
            )
            logger.info("kbsearch: %s", report.bm25_reading)
        if mismatched:
            report.warnings.append({"path": "", "reason": f"{mismatched} chunk(s) of {len(self._reread_notes)} "
                                    "note(s) hold a text that is not what was embedded: those notes are read "
                                    "again from the KB"})  # fmt: skip
        # recorded now, whatever becomes of the notes' sync: every chunk holds today's reading, and what the run
        # writes next holds it too (recorded only by a run without error, a broken access file or a failing listing
        # had every run rewrite the whole index again)
        self.store.merge_metadata({BM25_READING: READING_VERSION, BM25_READING_FROM: None})

    def _set_sparse(self, vectors: list[tuple[str, SparseVector]], where: dict[str, Any]) -> None:
        """Write a page of BM25 vectors; a page that fails is written once more with only the points still there
        (Qdrant refuses an update naming a point that is gone: one an event batch deleted since the page was
        read, a note deleted or shortened)."""
        try:
            self.store.set_sparse(vectors, where)
        except LeaseLostError:
            raise
        except StoreError:
            ids = [pid for pid, _ in vectors]
            points, _ = self.store.scroll({"filter": {"must": [{"has_id": ids}]}, "limit": len(ids),
                                           "with_payload": False}, 30.0)  # fmt: skip
            present = {str(point["id"]) for point in points}
            if len(present) == len(ids):
                raise
            self.store.set_sparse([(pid, v) for pid, v in vectors if pid in present], where)

    def _stale(self, path: str) -> bool:
        """The note is indexed with vectors of another embedding than this run's."""
        st = self._state.get(path)
        return st is not None and st.embeddings != {self._signature_id}

    @fewer_collections()  # the listing and the index's state: objects per note, all alive until the run ends
    def _sync_notes(self, report: SyncReport, stop_at: Deadline, call_deadline: Deadline | None) -> None:
        try:
            listing = list(listed(self.source, stop_at))
        except SourceError as exc:
            report.error = str(exc)
            report.incomplete = True
            logger.error("listing failed; nothing changed", extra={"error": str(exc)})
            return
        try:
            self._rules = self._access_rules(listing)
            self._rules_tag = self._access_tag(listing)
        except (AccessFileError, SourceError) as exc:
            report.error = str(exc)
            report.incomplete = True
            logger.error("the access file cannot be used; nothing changed", extra={"error": str(exc)})
            return
        self._read_reach()
        notes = self._notes(report, listing)
        for said in self._rules.idle(obj.path for obj in listing if obj.is_note):
            report.warnings.append({"path": ACCESS_FILE, "reason": said})
        if not report.notes_listed:
            report.no_notes = no_notes(self.source.uri, sum(1 for obj in listing if not obj.is_note))
        state = self.store.indexed_state()
        self._state = state  # what the index held when this run listed the KB
        self._old_names = set()
        self._delete_missing(report, state, notes, stop_at)
        problems = tuple(k for k in self._kept if k.endswith("/"))  # folders listed with a problem: not gone
        self._gone = lambda p: p not in notes and p not in self._kept and not p.startswith(problems)

        work: list[tuple[SourceObject, str]] = []
        reread: list[SourceObject] = []
        self._access = {p: (list(a[0]) if (a := st.access()) else None) for p, st in state.items()}
        regraph: list[str] = []
        for path in sorted(notes):
            obj = notes[path]
            kind = self._classify(obj, state.get(path))
            if kind == "regraph":
                regraph.append(path)
                kind = "updated"
            if kind in ("unchanged", "repair") and not self._refresh_access(report, path, state[path]):
                reread.append(obj)
            if kind == "unchanged":
                report.unchanged += 1
            elif kind == "repair":
                report.unchanged += 1
                st = state[path]
                complete = st.complete_etag()
                n = len(st.chunks[complete]) if complete is not None else 0
                leftover = {i for idx in st.chunks.values() for i in idx if i >= n}
                self.store.delete_leftovers(path, n)
                report.chunks_deleted += len(leftover)
                report.repaired += 1
            else:
                # its last version stays searchable until the new one is written, and for good when that cannot
                # be (too large, unreadable, the run's deadline, the embedder down): under today's folder rules
                if path in state:
                    self._refresh_access(report, path, state[path])
                work.append((obj, kind))
        # the titles and aliases of the notes it rewrites, as indexed: links by a name a note no longer has become
        # links to no note (an event batch reads them with the notes it writes)
        rewritten = [obj.path for obj, _ in work if obj.path in state]
        self._old_names |= name_keys_of(self.store, rewritten) if rewritten else set()
        if regraph:
            # the notes whose text changed first, those only read again (a new reading, graph keys) after them, in
            # order: a run its deadline stops before the end (a large KB's first sync after an upgrade; no note is
            # marked as read again, so each run starts again at the first) never leaves an edit unindexed for them
            again = set(regraph)
            work = [w for w in work if w[0].path not in again] + [w for w in work if w[0].path in again]
        self._listed, self._work_paths = sorted(notes), {obj.path for obj, _ in work}
        self._written_ids = {}
        self._names_written, self._links_written = {}, {}
        self._graph_keys_missing([p for p, st in state.items() if not st.graph])
        if self.embedder is not None:  # vectors to keep
            self._regraph, self._regraph_at = regraph, {p: i for i, p in enumerate(regraph)}
        try:
            self._reread_access(report, reread, state, stop_at)
            self._index(report, work, state, stop_at, call_deadline)
            self._write_access()  # the groups of the notes that could not be indexed (their last good version)
        finally:
            self._regraph, self._regraph_at, self._reuse = [], {}, {}
            self._warn_duplicate_ids(report, notes, state)
        # a note rewritten for its graph keys alone was not changed: no event was missed for it
        missed = set(regraph)
        report.missed_by_events = self._missed_by_events(report, [w for w in work if w[0].path not in missed])
        self._record_restricted_links(report, notes)
        # the keys of the notes gone from the KB (one whose deletion was held back still holds them: nothing dangles)
        self._report_dangling(report, {k for path in state if path not in notes for k in keys_naming(path)}, stop_at)
        if self.options.count_dangling:
            self._count_dangling(report, stop_at, state)

    # -- access scopes ----------------------------------------------------------------------------------------
    def _access_rules(self, listing: list[SourceObject]) -> FolderRules:
        """The access file's folder rules (none when the KB has no access file); AccessFileError when unusable."""
        refuse_mistaken_access_file(obj.path for obj in listing if "/" not in obj.path)
        refuse_access_file_below_root(obj.path for obj in listing if not obj.folder)
        found = [obj for obj in listing if obj.path == ACCESS_FILE]
        if not found:
            return FolderRules()
        if found[0].problem is not None:  # listed, never read (a FIFO, a dangling link): the reason alone named no file
            raise AccessFileError(f"{ACCESS_FILE} cannot be read: {found[0].problem}")
        return FolderRules.parse(self.source.read(found[0]))

    def _refresh_access(self, report: SyncReport, path: str, st: NoteState) -> bool:
        """An unchanged note's groups, brought up to date without reading it when they come from the folder rules
        or the default (a payload update, nothing re-embedded). False when the note must be read to know them
        (indexed before access scopes, or a payload update cut short)."""
        recorded = st.access()
        if recorded is None:
            return False
        if recorded[1] == FROM_FRONTMATTER:  # same etag, same frontmatter, same groups
            self._access[path] = list(recorded[0])
            return True
        groups, source = note_access(path, None, self._rules, self.options.access_default)
        if (tuple(groups), source) != recorded:
            self._set_access(path, groups, source)
            report.access_updated += 1
            logger.info("access changed", extra={"path": path, "groups": groups, "from": source})
        self._access[path] = groups
        return True

    def _set_access(self, path: str, groups: list[str], source: str) -> None:
        """Give the note these groups (a payload update, nothing re-embedded), with the next :meth:`_write_access`:
        the notes that get the same groups are one operation."""
        self._pending_access.setdefault((tuple(groups), source), []).append(path)

    def _write_access(self) -> None:
        """Write the groups :meth:`_set_access` gathered: one batch of payload updates (on Qdrant Cloud one
        request per :data:`kbsearch.qdrant.store.OPERATIONS_PER_REQUEST` operations, one operation per set of
        groups), instead of a request per note (an access file change can give thousands of notes new groups)."""
        if not self._pending_access:
            return
        pending, self._pending_access = self._pending_access, {}
        self.store.set_payloads([(paths, {"access": list(groups), "access_from": source, REACH: self._reach_of(groups)})
                                 for (groups, source), paths in pending.items()])  # fmt: skip

    # -- reach: a caller of one group matched by one condition (kbsearch.qdrant.query.scope_clause) ------------
    def _read_reach(self) -> None:
        """The groups this run writes into a public chunk's ``reach``: those the collection records (every public
        chunk holds them) and those of the folder rules (a public chunk may hold any group: the search relies only
        on the recorded ones), read when the run has its rules, before it writes."""
        metadata = self.store.metadata()
        self._links_generation = links_generation(metadata.get(LINKS_GENERATION))
        self._reach_recorded, self._reach_marked = sorted(reach_groups(metadata)), REACH_GROUPS in metadata
        self._reach = reach_target(self._reach_recorded, (), self._rules)
        self._sets_recorded = sorted(reach_sets(metadata))
        self._sets = reach_sets_target(self._sets_recorded, self.options.caller_sets)

    def _reach_of(self, groups: Iterable[str]) -> list[str]:
        return reach_of(list(groups), self._reach, self._sets)

    def _record_reach(self, report: SyncReport) -> None:
        """A full sync's last step: give every public chunk's ``reach`` the groups of the index (the recorded ones,
        the folder rules', the indexed notes'), then record them in the collection's metadata, where a search reads
        which callers one ``match value`` serves (:func:`kbsearch.qdrant.query.scope_clause`); so the tokens of the
        group sets callers hold (``SyncOptions.caller_sets``, from the caller mapping), given to every public chunk
        and to every restricted chunk whose groups share one with the set. In this order: a group (a token) is
        recorded only once every chunk it serves holds it. Restricted chunks whose ``reach`` is not their groups
        (a store written before ``reach``, an older kb-search's write) are given theirs first. Public chunks an event batch wrote meanwhile with fewer groups are
        given them again once the groups are recorded (and by the batch itself when it ends: :func:`give_reach`).
        Every sync, one that wrote nothing too, gives the recorded groups to public chunks lacking them (a batch
        that died between its write and its catch-up left them so): a filtered scroll of one point when none does,
        beside the restricted chunks' one."""
        if report.error:
            return
        sets = reach_sets_target(self._sets_recorded, self.options.caller_sets)
        if len(sets) < len(set(self._sets_recorded) | set(self.options.caller_sets)):
            logger.warning("more group sets than reach tokens: their callers are matched by their groups (slower)",
                           extra={"tokens": len(sets), "cap": MAX_REACH_SETS})  # fmt: skip
        self._repair_restricted_reach(sets)
        self._report_unheld_groups(report)
        target = reach_target(self._reach_recorded, self._access.values(), self._rules)
        fresh = target != self._reach_recorded or sets != self._sets_recorded or not self._reach_marked
        give_reach(self.store, target, sets)  # a sync that wrote nothing too: a batch that died before catching up
        if fresh:
            self.store.merge_metadata({REACH_GROUPS: target, REACH_SETS: sets})
            give_reach(self.store, target, sets)  # a public chunk written meanwhile by a batch that read fewer
            self._repair_restricted_reach(sets)  # a restricted one so
        self._reach_recorded, self._reach_marked, self._sets_recorded = target, True, sets

    def _report_unheld_groups(self, report: SyncReport) -> None:
        """Warn of a caller mapping that cannot be used (every caller reads the public notes only), and of each group
        a caller of it holds that neither a folder rule nor an indexed note restricts a note to (``"T0123/C0456":
        ["finanse"]`` for ``finance``): the caller reads the public notes only, and the search cannot tell a slip
        from a group whose notes are still to come. With the group meant, when one is close. The KB's groups are
        named (they are the admin's own words), never a note."""
        import difflib

        if self.options.callers_problem:  # unusable: the search gives every caller public notes only (it is told)
            report.warnings.append({"path": "ACCESS_GROUPS", "reason": self.options.callers_problem})
        unmatched = self.options.callers_unmatched  # entries that match no caller (the rest of the mapping serves)
        for said in unmatched[:MAX_ACCESS_LINES]:
            report.warnings.append({"path": "ACCESS_GROUPS", "reason": said})
        if len(unmatched) > MAX_ACCESS_LINES:  # 500 channels mapped by #name were 500 lines each hourly sync
            report.warnings.append({"path": "ACCESS_GROUPS", "reason": f"and {len(unmatched) - MAX_ACCESS_LINES} "
                                    "more entries that match no caller"})  # fmt: skip
        if not self.options.callers:
            return
        current = set(reach_target([], self._access.values(), self._rules)) - {PUBLIC}
        holders: dict[str, list[str]] = {}  # an unheld group → its callers, in the mapping's order: a line a group
        for who, groups in self.options.callers:
            for group in sorted(set(groups) - current - {PUBLIC}):
                holders.setdefault(group, []).append(who)
        for group, whom in holders.items():
            meant = difflib.get_close_matches(group, sorted(current), n=1, cutoff=0.6)
            known = f"the KB's groups: {', '.join(sorted(current))}" if current else "the KB has none"
            hint = f"did you mean {meant[0]!r}?" if meant else ""
            said = f"to which no note is restricted ({known}), so it adds nothing to public"
            if len(whom) == 1:
                reason = f"{whom[0]} holds the group {group!r}, {said}" + (f": {hint}" if hint else "")
            else:  # 300 users given a group before its notes are written were 300 lines, every hourly sync
                named = ", ".join(whom[:3]) + (f" and {len(whom) - 3} more" if len(whom) > 3 else "")
                reason = f"{len(whom)} callers hold the group {group!r}, {said}: {named}" + (
                    f"; {hint}" if hint else ""
                )
            report.warnings.append({"path": "ACCESS_GROUPS", "reason": reason})

    def _repair_restricted_reach(self, sets: list[str]) -> None:
        """Give each restricted chunk whose ``reach`` is not its own groups its groups, from what the chunk records,
        without reading its note: a chunk with no ``reach`` (a store written before it) or with a public chunk's (a
        kb-search older than ``reach`` restricted the note by a payload update of ``access`` alone:
        :func:`kbsearch.qdrant.store.reach_fits`; a note that cannot be read again, too large or not text, kept it for
        good), or one lacking the token of a set of ``sets`` that shares one of its groups (a set new to the caller
        mapping: a payload update, nothing re-embedded), or holding the token of a set that shares none (an older
        writer changed its ``access`` alone). The chunks are written by groups (their ``reach``:
        :func:`kbsearch.access.reach_of`), :data:`PATHS_PER_OPERATION` notes at a time, each write selecting
        only chunks still so whose ``access`` holds every group written, so a note an event batch changed meanwhile
        is never given a group, nor a token of a set, it does not hold. One filtered scroll of one point when there
        are none (every full sync)."""
        lacking = [{"must": [{"key": "access", "match": {"any": sorted(token_groups(token))}}],
                    "must_not": [{"key": REACH, "match": {"value": token}}]} for token in sets]  # fmt: skip
        wider = [{"must": [{"key": REACH, "match": {"value": token}}],
                  "must_not": [{"key": "access", "match": {"any": sorted(token_groups(token))}}]} for token in sets]  # fmt: skip
        stale = {"must_not": [{"key": "access", "match": {"value": PUBLIC}}],
                 "should": [{"must": [{"is_empty": {"key": REACH}}], "must_not": [{"is_empty": {"key": "access"}}]},
                            {"key": REACH, "match": {"value": PUBLIC}}, *lacking, *wider]}  # fmt: skip
        if not self.store.has_points(stale):
            return
        by_groups: dict[tuple[str, ...], set[str]] = {}
        request: dict[str, Any] = {"filter": stale, "limit": 256, "with_payload": {"include": ["path", "access"]}}
        seen: set[str] = set()
        while True:
            points, offset = self.store.scroll(request, 30.0)
            for point in points:
                payload = point.get("payload") or {}
                path, groups = payload.get("path"), payload.get("access")
                if isinstance(path, str) and isinstance(groups, list) and all(isinstance(g, str) for g in groups):
                    by_groups.setdefault(tuple(sorted(set(groups))), set()).add(path)
            if next_page(offset, seen) is None:
                break
            request["offset"] = offset
        for held_groups, paths in sorted(by_groups.items()):
            ordered = sorted(paths)
            for i in range(0, len(ordered), PATHS_PER_OPERATION):
                held = [{"key": "access", "match": {"value": g}} for g in held_groups]
                where = {
                    **stale,
                    "must": [{"key": "path", "match": {"any": ordered[i : i + PATHS_PER_OPERATION]}}, *held],
                }
                self.store.set_payload_where(where, {REACH: reach_of(held_groups, (), sets)})

    def _keep_last_good(self, report: SyncReport, path: str) -> None:
        """A changed note that cannot be indexed keeps its last good version, under today's folder rules (a folder
        made restricted restricts it too)."""
        st = self._state.get(path)
        if st is not None:
            self._refresh_access(report, path, st)

    def _reread_access(
        self, report: SyncReport, objs: list[SourceObject], state: dict[str, NoteState], stop_at: Deadline
    ) -> None:
        """Unchanged notes whose groups the index does not record: read, parse, payload update (no embedding)."""
        self._write_access()  # the groups decided so far (folder rules, the default) go first
        if not objs:
            return  # a no-change run loads no YAML parser (tests/integration/test_hot_path.py)
        from kbsearch.notes import NoteError, parse_note

        for obj in objs:
            if stop_at.remaining() <= 0:
                report.incomplete = True
                report.remaining += 1
                continue
            try:
                note = parse_note(obj.path, self.source.read(obj), self.options.max_note_bytes)
                declared = declared_access(note.metadata, note.warnings)
            except AccessDeclarationError as exc:
                self._revoke(report, obj.path, exc.reason, state)
                continue
            except (SourceError, NoteError) as exc:
                # the note's recorded version stays, readable by nobody restricted until its groups are known
                self._skip(report, obj.path, getattr(exc, "reason", str(exc)))
                continue
            groups, source = note_access(obj.path, declared, self._rules, self.options.access_default)
            self._set_access(obj.path, groups, source)
            self._access[obj.path] = groups
            report.access_updated += 1
        self._write_access()

    def _revoke(self, report: SyncReport, path: str, reason: str, state: dict[str, NoteState]) -> None:
        """A note whose access declaration is unusable: skipped, and its indexed version removed, so that it is
        never served with groups its author no longer means."""
        if path in state:
            self.store.delete_note(path)
            report.chunks_deleted += state[path].points
            reason += "; its previous version was removed from the index"
        self._access.pop(path, None)
        self._skip(report, path, reason)

    def _record_restricted_links(self, report: SyncReport, notes: dict[str, SourceObject]) -> None:
        """Record (collection metadata) which link targets name only notes that are not public, with their groups,
        so that a search hides a link into a note its caller may not read. A note whose groups are unknown (listed
        but not indexed: skipped, or not reached) counts as readable by nobody.

        A run that changed nothing in the index, and finds the recorded list agreeing with what its listing
        implies by path, reads nothing more (the no-change sync stays one listing and one state read; event batches
        keep the list right between syncs). Otherwise the list is derived afresh from the index itself (paths,
        titles and aliases), under the ``links`` lease that event batches take for their own rewrites
        (:func:`record_restricted_links`): an event batch that started before this run took the index lease, and
        wrote a note this listing does not know, keeps its entry. No turn on the lease: the run is reported
        incomplete (the next one records it)."""
        from kbsearch.lease import LeaseError, LeaseHeld

        unknown = {path for path in notes if self._access.get(path) is None}
        changed = report.added or report.updated or report.deleted or report.access_updated or report.chunks_deleted
        if not changed and self._links_agree(notes):
            return
        try:
            forgotten = {k for path in self._state if path not in notes for k in path_keys(path)}  # gone from the KB
            forgotten |= self._old_names
            record_restricted_links(self.store, self.links_lock, unknown, wrote=list(self._names_written),
                                    since=self._links_generation, forgotten=forgotten)  # fmt: skip
        except (LeaseHeld, LeaseError) as exc:
            report.error = report.error or f"the restricted link targets were not recorded: {exc}"
            report.incomplete = True
            logger.error("restricted link targets not recorded; the next run records them",
                         extra={"error": str(exc)})  # fmt: skip

    def _links_agree(self, notes: dict[str, SourceObject]) -> bool:
        """The recorded list was derived from the index (this format, the public notes' keys recorded beside it)
        and agrees with the listing's notes: each key naming only restricted notes by path is there with at least
        their groups (a title or an alias of another note may add some), and no key naming a public note is."""
        metadata = self.store.metadata()
        recorded = metadata.get(RESTRICTED_LINKS)
        if metadata.get(LINKS_FORMAT) != LINKS_FORMAT_VERSION or not isinstance(recorded, dict):
            return False
        named = KeyFilter.from_json(metadata.get(LINK_NAMES))
        if named is None or named.count > named.capacity or stamped_unrecorded(metadata):
            return False
        if not recorded and all(PUBLIC in (self._access.get(path) or ()) for path in notes):
            return True  # every note public (no key is restricted) and none recorded: no key of a note to derive
        implied, public = restricted_links((path, self._access.get(path)) for path in notes)
        if any(key in recorded or key not in named for key in public):
            return False
        return all(isinstance(recorded.get(k), list) and set(g) <= set(recorded[k]) for k, g in implied.items())

    def _notes(self, report: SyncReport, listing: list[SourceObject]) -> dict[str, SourceObject]:
        """The listing's notes by path; keys that cannot be a note's identity, and all but one of the keys that
        share a path after Unicode normalisation, are skipped with a reason."""
        by_path: dict[str, dict[str, SourceObject]] = {}
        self._kept = set()
        self._dropped = set()
        for obj in listing:
            if obj.problem is not None:  # listed, never read: what was indexed from it stays (as for a bad note),
                if obj.is_note:  # but for an entry that can never be a note (``drop``: a link to another note)
                    report.notes_listed += not obj.folder
                    if not obj.drop:
                        self._kept.add(obj.path)
                    else:  # listed, so not a source gone missing: removed whatever the mass-delete guard says
                        self._dropped.add(obj.path)
                    self._skip(report, obj.path, obj.problem)
                continue
            if obj.is_note:
                report.notes_listed += 1
                problem = path_problem(obj.path)
                if problem:
                    self._skip(report, obj.path, f"{problem}: kb_get_note could not reach it")
                else:
                    by_path.setdefault(obj.path, {})[obj.key] = obj
        # the access file at the root is read, not ignored: a KB with one counted it as an attachment (walk33)
        report.attachments_ignored = sum(1 for obj in listing if not obj.is_note and obj.path != ACCESS_FILE)
        notes: dict[str, SourceObject] = {}
        for path, objs in by_path.items():
            winner = preferred(list(objs))
            notes[path] = objs[winner]
            for key in sorted(k for k in objs if k != winner):
                self._skip(report, path, f"key {key!r} is another Unicode form of the same path as {winner!r} "
                           f"(equal after NFC normalisation); only {winner!r} is indexed")  # fmt: skip
        return notes

    def _warn_duplicate_ids(
        self, report: SyncReport, notes: dict[str, SourceObject], state: dict[str, NoteState]
    ) -> None:
        """Frontmatter ids that several indexed notes share (search keeps one hit per path, so none hides), and an
        id that is the path of another note: a note's ``doc_id`` is its id, else its path, so both notes' hits
        carry that one ``doc_id``; the note declaring it is told (the other, which may declare nothing, was told
        its id was shared)."""
        paths_by_id: dict[str, list[str]] = {}
        for path in sorted(notes):
            doc_id = self._written_ids.get(path) or (state[path].doc_id() if path in state else None)
            if doc_id is not None and doc_id != path:  # a doc_id that is the note's own path declares no id
                paths_by_id.setdefault(doc_id, []).append(path)
        for doc_id, paths in sorted(paths_by_id.items()):
            for path in paths if len(paths) > 1 else []:
                others = ", ".join(p for p in paths if p != path)
                report.warnings.append(
                    {"path": path, "reason": f"frontmatter id {doc_id!r} is also the id of {others}"}
                )
            if doc_id in notes and doc_id not in paths:
                for path in paths:
                    report.warnings.append({"path": path, "reason": f"frontmatter id {doc_id!r} is the path of the "
                                            f"note {doc_id}: both notes' hits carry the doc_id {doc_id!r}"})  # fmt: skip

    def _missed_by_events(self, report: SyncReport, work: list[tuple[SourceObject, str]]) -> int:
        """Changes a reconciling run found that an event should already have applied: notes added or changed
        longer than ``event_grace_s`` ago (a younger one may still be in the queue), and deletions. Not counted
        on full or re-embedding runs, whose work is not changes."""
        if self.options.full or self._reembed:
            return 0
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.options.event_grace_s)
        old = 0
        for obj, _kind in work:
            try:
                modified = dt.datetime.fromisoformat(obj.modified) if obj.modified else None
            except ValueError:
                modified = None
            if modified is None or (modified if modified.tzinfo else modified.replace(tzinfo=dt.UTC)) < cutoff:
                old += 1
        return old + report.deleted

    def _classify(self, obj: SourceObject, st: NoteState | None) -> str:
        if st is None:
            return "added"
        if self.options.full or st.complete_etag() != obj.etag or obj.path in self._reread_notes:
            return "updated"
        if self.embedder is not None and not st.dense:
            return "updated"  # indexed before a key was configured: embed it now
        if self._reembed and st.embeddings != {self._signature_id}:
            return "updated"  # embedded with another model or input format
        if not st.graph or not st.tagged or (self._reparse and self._read_again(obj.path)):
            # indexed before the link graph was stored (as graph_keys), or before its tags' keys were (tag_keys, and
            # the tags written in its text), or chunked by an older reading of notes (PARSE_VERSION): its payload is
            # written now, its vectors kept for the chunks whose text is unchanged
            return "regraph"
        if st.has_orphans():
            return "repair"
        return "unchanged"

    def _report_dangling(self, report: SyncReport, lost: set[str], stop_at: Deadline) -> None:
        """Report the wiki-links this run left naming no note (:func:`dangling_links`): the links of the notes it
        wrote, and the links of any note to ``lost`` (the keys of the notes it deleted) or to a title or alias the
        notes it deleted or rewrote had (:attr:`_old_names`). Logged once (how many, the first few); a failed read
        is a warning; so is a check cut at the run's deadline (``stop_at``: what it found so far is reported)."""
        # a title or alias a rewritten note still has names it: only the names no note written has are looked up
        # (an edit of a note 50,000 notes link to by its title read those 50,000 first chunks at every save)
        kept = {key for keys in self._names_written.values() for key in keys}
        try:
            report.dangling_links, report.dangling, cut = dangling_links(
                self.store, lost | (self._old_names - kept), self._links_written, stop_at=stop_at.within()
            )  # its time, not its lease (within: a plain Deadline): it only reads, and a lost lease refuses writes
        except StoreError as exc:
            report.warnings.append({"path": "", "reason": f"{DANGLING_UNREAD} ({exc})"})
            # its own record: an event batch's record leaves the warnings out, and says dangling_links 0
            logger.warning(DANGLING_UNREAD, extra={"error": str(exc)})
            return
        if cut:  # the run's end came first: never its error (the notes are written), its own record and warning
            report.warnings.append({"path": "", "reason": DANGLING_CUT % report.dangling_links})
            logger.warning(DANGLING_CUT, report.dangling_links, extra={"dangling_links": report.dangling_links})
        if report.dangling_links:
            logger.warning(DANGLING_LOGGED, report.dangling_links,
                           extra={"dangling_links": report.dangling_links, "dangling": report.dangling})  # fmt: skip

    def _count_dangling(self, report: SyncReport, stop_at: Deadline, state: dict[str, NoteState]) -> None:
        """Count every dangling link of the index (:func:`dangling_total`) into the report; a failed read or a
        count cut at the run's deadline is a warning, never the run's error (the count stays None). A run that
        wrote and deleted nothing, over an index whose notes (path → versions, ``state`` as the run read it) are
        those the last count was made over (:data:`DANGLING_RECORD`), reports that count unread: an unchanged KB
        costs one metadata read, not a scroll of every note."""
        held = hashlib.md5(usedforsecurity=False)
        for path in sorted(state):
            held.update(f"{path}\0{sorted(state[path].chunks)}\n".encode())
        versions, quiet = held.hexdigest(), not self._written_ids and not report.deleted
        try:
            recorded = self.store.metadata().get(DANGLING_RECORD)
            same = (
                quiet
                and isinstance(recorded, dict)
                and recorded.get("notes") == versions
                and recorded.get("resolve") == RESOLVE_VERSION
            )  # counted as links resolve now (rel38)
            if same and isinstance(recorded, dict) and isinstance(recorded.get("count"), int):
                report.dangling_total = recorded["count"]
                return
            report.dangling_total = dangling_total(self.store, stop_at.within())
            record = {"count": report.dangling_total, "notes": versions if quiet else None, "resolve": RESOLVE_VERSION}
            if report.dangling_total is not None and record != recorded:  # (a write only when it changes)
                with contextlib.suppress(StoreError, LeaseLostError):  # not recorded: counted again next run
                    self.store.merge_metadata({DANGLING_RECORD: record})
        except StoreError as exc:
            report.warnings.append({"path": "", "reason": f"{DANGLING_UNCOUNTED} ({exc})"})
            logger.warning(DANGLING_UNCOUNTED, extra={"error": str(exc)})
            return
        if report.dangling_total is None:
            report.warnings.append({"path": "", "reason": f"{DANGLING_UNCOUNTED} (cut at the deadline)"})
            logger.warning(DANGLING_UNCOUNTED, extra={"error": "cut at the deadline"})

    def _delete_missing(
        self, report: SyncReport, state: dict[str, NoteState], notes: dict[str, SourceObject], stop_at: Deadline
    ) -> None:
        folders = tuple(p for p in self._kept if p.endswith("/"))
        gone = sorted(p for p in state if p not in notes and p not in self._kept and not p.startswith(folders))
        if not gone:
            return
        # a link to another note (``drop``) is listed: its removal is no sign of a source gone missing, and what is
        # indexed at its path may hold a restricted note's text under a public folder's rules (a version before
        # round 16 indexed it so): it goes even when the rest is held back
        dropped = [p for p in gone if p in self._dropped or hidden(p)]  # hidden: a trash an older version indexed
        held = len(gone) - len(dropped)
        share = held / max(1, len(state))
        if share > self.options.max_delete_ratio and not self.options.allow_mass_delete:
            report.deletion_blocked = (
                f"would delete {held} of {len(state)} indexed notes ({share:.0%} > "
                f"{self.options.max_delete_ratio:.0%}); nothing deleted"
                + (f" but {len(dropped)} link(s) to other notes or hidden file(s)" if dropped else "")
                + '. If that is intended, rerun with --allow-mass-delete (or {"allow_mass_delete": true} in the event)'
            )
            logger.warning("mass delete blocked", extra={"would_delete": held, "indexed": len(state)})
            gone = dropped
        # their titles and aliases name them too (links by those are to no note once they are gone): read first
        self._old_names |= name_keys_of(self.store, gone) if gone else set()
        for path in gone:
            if self._appeared(report, path):
                continue
            self.store.delete_note(path)
            self._keys_written[path] = getattr(self.source, "prefix", "") + path
            report.deleted += 1
            report.chunks_deleted += state[path].points

    def _appeared(self, report: SyncReport, path: str) -> bool:
        """An S3 note the listing lacks but the index holds is looked up once more before it is deleted: an event
        batch that started before this run took the index lease may have written it after the listing (it stays;
        the next run lists it). A lookup that fails deletes nothing either, as a failed listing does."""
        from kbsearch.sources import S3Source, current

        if not isinstance(self.source, S3Source):
            return False  # a folder has one writer (the embedded store's lock, kbsearch serve's sync lock)
        if hidden(path):
            return False  # the listing skips it whatever its age (a trash an older version indexed): it exists
        try:
            found = current(self.source, self.source.prefix + path) is not None  # under any key spelling the path
        except SourceError as exc:
            report.warnings.append({"path": path, "reason": f"not deleted: it could not be looked up ({exc})"})
            return True
        if found:
            report.warnings.append({"path": path, "reason": "not deleted: written after this run listed the KB"})
        return found

    def _skip(self, report: SyncReport, path: str, reason: str) -> None:
        report.skipped.append({"path": path, "reason": reason})
        logger.warning("note skipped: %s: %s", path, reason, extra={"path": path, "reason": reason})

    def _parse(self, report: SyncReport, obj: SourceObject, kind: str, outcome: ParseOutcome) -> _Parsed | None:
        """Everything that happens to one note before it is written; any failure skips the note, nothing else.
        ``outcome``: the note parsed (:meth:`_outcome`: here, or in a parsing process); what follows from it (skips,
        warnings, a revoked note) happens here, in the note's turn, either way."""
        if outcome.failure == "slow":  # not parsed again until it changes or the limit is raised (PARSE_REFUSED)
            held = self._refused_read.get(obj.path)
            kept = held is not None and held.refuses(obj.etag, self.options.parse_limit_s)
            self._slow[obj.path] = held if held is not None and kept else Refusal(obj.etag, self.options.parse_limit_s)
        if outcome.failure is not None:
            self._passed.add(obj.path)
        if outcome.failure == "large":
            self._skip(report, obj.path, outcome.reason)
            return None
        if outcome.failure == "access":
            self._revoke(report, obj.path, outcome.reason, self._state)
            return None
        if outcome.failure is not None:  # unreadable, not a note, or a bug: this note only
            indexed = self._state.get(obj.path)
            if self._reparse and outcome.failure in ("source", "ended") and indexed and obj.etag in indexed.chunks:
                self._not_reread.append(obj.path)  # unchanged, so chunked by the older reading; readable next time
            if outcome.failure == "bug":
                logger.error("note failed\n%s", outcome.trace, extra={"path": obj.path})
            self._skip(report, obj.path, outcome.reason)
            self._keep_last_good(report, obj.path)
            return None
        assert outcome.parsed is not None
        note, access, chunks, points = outcome.parsed
        for warning in note.warnings:
            report.warnings.append({"path": obj.path, "reason": warning})
        return _Parsed(obj, kind, note, access, chunks, points)

    @fewer_collections()
    def _index(
        self,
        report: SyncReport,
        work: list[tuple[SourceObject, str]],
        state: dict[str, NoteState],
        stop_at: Deadline,
        call_deadline: Deadline | None,
    ) -> None:
        """Parse, embed and write the notes of ``work``, a window of chunks at a time: each window is embedded in a
        thread while the window before it is written (the provider works while the store does; one window's
        requests in flight at a time, as before). A window's embedding is waited for before the next one starts, so
        a provider failure sends no request of a later window (BENCHMARKS.md, session 13); within its window, at
        ``EMBEDDING_CONCURRENCY`` above 1 (4 by default), the requests not yet sent when one fails, or when the
        lease is lost, are not sent (rel35; they were, rev33b); those in flight finish, and their answers are kept
        for the notes they complete. The cyclic garbage collector runs less often meanwhile
        (:func:`fewer_collections`).

        A window whose embedding fails, or is cut by the run's end (``call_deadline``), after some of its requests
        were answered has the notes whose every chunk came back written; the notes read and not written are left
        for the next run (a full sync finds them changed, or not read again; an event batch gives their events
        back), and the report says how many (:attr:`SyncReport.unwritten`, :attr:`SyncReport.remaining`)."""
        from concurrent.futures import Future, ThreadPoolExecutor

        stats = EmbeddingStats()
        window: list[_Parsed] = []
        embedding: tuple[list[_Parsed], Future[list[ChunkPoint]]] | None = None  # the window being embedded
        done = 0
        read: list[str] = []  # the notes parsed for a window, in order
        cut: ProviderError | None = None  # what stopped a window's embedding
        indexed_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        refused = self._refused(work)
        limit_s = self.options.parse_limit_s
        outcomes = self._parsed_elsewhere([w for w in work if not refuses(refused, w[0], limit_s)], indexed_at)
        ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kbsearch-embed")

        def embedded() -> tuple[list[_Parsed], list[ChunkPoint]] | None:
            """The window being embedded and its points, once its embedding is done (ProviderError: it failed)."""
            nonlocal embedding
            if embedding is None:
                return None
            waited, future = embedding
            embedding = None
            return waited, future.result()

        def held() -> bool:  # a window's requests not yet sent are not sent once the lease is lost
            return not lease_lost(stop_at)

        def write(ready: tuple[list[_Parsed], list[ChunkPoint]] | None) -> None:
            if ready is not None:
                self._write_window(report, ready[0], ready[1], state)

        def write_ready(gathered: list[_Parsed], points: list[ChunkPoint] | None = None) -> list[_Parsed]:
            """The notes of ``gathered`` that need nothing embedded written (:meth:`_write_unembedded`)."""
            points = points if points is not None else [point for parsed in gathered for point in parsed.points]
            return self._write_unembedded(report, gathered, points, state)

        try:
            try:
                for position, (obj, kind) in enumerate(work):
                    if stop_at.remaining() <= 0:
                        report.incomplete = True
                        write(embedded())  # a full window is written, as when it was embedded in turn
                        window = write_ready(window)
                        break
                    self._read_reuse(work, position)
                    outcome = self._outcome(obj, refused, outcomes, indexed_at, call_deadline)
                    if outcome is None:  # the run's end came before the note's parse did: the note is not to blame
                        report.incomplete = True
                        break
                    parsed = self._parse(report, obj, kind, outcome)
                    if self._regraph_at:
                        self._reuse.pop(obj.path, None)
                    done += 1
                    if parsed is not None:
                        window.append(parsed)
                        read.append(obj.path)
                    if sum(len(p.chunks) for p in window) >= self.options.window_chunks:
                        ready = embedded()
                        embedding = window, ahead.submit(self._embedded, window, stats, call_deadline, held)
                        write(ready)
                        window = []
                    if self.progress:
                        self.progress(done, len(work), obj.path)
                write(embedded())
                if window and not report.incomplete:
                    write((window, self._embedded(window, stats, call_deadline, held)))
            except _EmbeddingCut as stopped:
                # what came back is written: the notes whose every chunk was embedded; and of the window gathered
                # meanwhile (not sent), the notes that need nothing embedded, as at the run's deadline
                write_ready(stopped.window, stopped.points)
                if window and stopped.window is not window:
                    write_ready(window)
                cut = stopped.error
                report.incomplete = True
                # the provider's failure, not the run's end nor its lost lease (that one the run's report names)
                if (call_deadline is None or call_deadline.remaining() > 0) and not lease_lost(stop_at):
                    report.error = f"embedding failed: {cut}"
                    logger.error("embedding failed; the run stops, unchanged notes keep their last version",
                                 extra={"error": str(cut)})  # fmt: skip
            finally:
                ahead.shutdown(wait=True, cancel_futures=True)  # a window still embedding after a failure is dropped
                if outcomes is not None:
                    outcomes.close()  # notes parsed ahead of a deadline or a failure are dropped
                report.embedding_calls = stats.calls
                report.embedding_tokens = stats.tokens
                report.embedding_fallbacks = stats.fallbacks
        except LeaseLostError:  # a write refused, the lease lost (Store.may_write): what was read is counted below
            report.incomplete = True
        if report.incomplete or self._lost(report, stop_at):  # (a loss after its last note: nothing written since)
            unwritten = [p for p in read if p not in self._written_ids]
            self._count_unwritten(report, len(work) - done, unwritten, cut, lease_lost(stop_at))
        self._record_refused(work[:done])
        self._record_archived(work[:done])

    def _count_unwritten(
        self, report: SyncReport, unreached: int, unwritten: list[str], cut: ProviderError | None, lost: bool = False
    ) -> None:
        """A run stopped before the end of its work: the notes it did not come to and those it read and did not
        write (their embedding was not begun before its deadline, did not finish before its end, or failed; or
        ``lost``: its index lease was lost before they were written) are left for the next run; the report and the
        log say how many."""
        report.remaining += unreached + len(unwritten)
        if not unwritten:
            return
        why = ("the run lost its index lease before writing them" if lost
               else "their embedding was not begun before the run's deadline" if cut is None
               else "their embedding failed" if report.error else "their embedding did not finish before the run's end")  # fmt: skip
        report.unwritten = f"{len(unwritten):,} notes read and not written: {why}; the next run reads them again"
        logger.warning("kbsearch: %s", report.unwritten, extra={"paths": unwritten[:20], "count": len(unwritten)})

    def _outcome(
        self, obj: SourceObject, refused: dict[str, Refusal], outcomes: Iterator[ParseOutcome] | None, indexed_at: str,
        call_deadline: Deadline | None,
    ) -> ParseOutcome | None:  # fmt: skip
        """The note parsed (by the parsing process when there is one), within :attr:`SyncOptions.parse_limit_s`; a
        note whose parse ran past it on an earlier run, at this version (``refused``), is not parsed again unless the
        limit is now higher than the one it ran past. None when the run's end (``call_deadline``: a Lambda's) came
        before the parse's."""
        if refuses(refused, obj, self.options.parse_limit_s):  # never sent to the parsing process
            return ParseOutcome(failure="slow", reason=refused[obj.path].reason())
        tag = archive_tag(obj)
        if tag is not None and not self.options.full and self._archived_read.get(obj.path) == tag:
            try:  # a restore changes neither its ETag nor its class: one HEAD says whether S3 would serve it now
                thawed = restored(self.source, obj)
            except SourceError:  # S3 did not answer: the GET says (a refusal recorded again, anything else not)
                thawed = True
            if not thawed:  # not read (adv35: a GET refused at every sync, and named)
                self._archived_found[obj.path] = tag
                return ParseOutcome(failure="source", reason=archived_reason(obj))
        if outcomes is not None:
            outcome = next(outcomes)
        elif self.parser is not None and threading.current_thread() is not threading.main_thread():
            outcome = self._parsed_in_process(obj, indexed_at)
        else:
            outcome = parse_for_index(
                self.source, obj, self.options, self._rules, self._signature_id if self.embedder is not None else None,
                indexed_at, self._reuse.get(obj.path, {}), None if call_deadline is None else call_deadline.remaining(),
            )  # fmt: skip
        if tag is not None and outcome.archived:  # an archived object S3 would not give (not a 503): remembered
            self._archived_found[obj.path] = tag
        return None if outcome.failure == "deadline" else outcome

    def _parsed_in_process(self, obj: SourceObject, indexed_at: str) -> ParseOutcome:
        """The note read here and parsed by :attr:`parser`; the chunks whose text did not change keep their stored
        dense vectors (:attr:`_reuse`), as when it is parsed here."""
        assert self.parser is not None
        try:
            raw = b"" if obj.size > self.options.max_note_bytes else self.source.read(obj)  # (large: refused there)
        except SourceError as exc:
            return ParseOutcome(failure="source", reason=str(exc), archived=isinstance(exc, NoteArchived))
        signature = self._signature_id if self.embedder is not None else None
        outcome = self.parser.parse(obj, raw, self.options, self._rules, signature, indexed_at)
        reuse = self._reuse.get(obj.path, {})
        if outcome.parsed is not None and reuse and signature is not None:
            note, access, chunks, points = outcome.parsed
            points = [point if point.dense is not None else replace(point, dense=reuse.get(point.payload[EMBED_HASH]))
                      for point in points]  # fmt: skip
            outcome.parsed = (note, access, chunks, points)
        return outcome

    def _read_reuse(self, work: list[tuple[SourceObject, str]], position: int) -> None:
        """Before the note at ``position`` of a full sync's ``work`` is parsed: when it is rewritten only for its
        graph keys (:attr:`_regraph`: a store made before ``graph_keys``), the stored dense vectors of it and the next
        such notes, :data:`REUSE_BATCH` notes a read, kept in :attr:`_reuse` (its chunks' text did not change: each
        keeps its vector, nothing is embedded again; each note's are dropped once it is parsed)."""
        at = self._regraph_at.get(work[position][0].path)
        if at is None or work[position][0].path in self._reuse:
            return
        batch = self._regraph[at : at + REUSE_BATCH]
        read = stored_vectors(self.store.note_points(batch))
        self._reuse.update({path: read.get(path, {}) for path in batch})  # read: a note without vectors too

    def _graph_keys_missing(self, paths: list[str]) -> None:
        """Notes this run read the state of whose first chunk lacks ``graph_keys`` (``paths``: a store made before,
        or written into since by a kbsearch before them; rewritten by this run, or kept at their last good version)
        while the collection records that every note holds them: the record is
        cleared before they are rewritten, so the graph's readers match the old fields again until a sync records it
        anew (:meth:`_record_graph_keys`)."""
        if paths and self.store.metadata().get(GRAPH_KEYS_ONLY):
            logger.warning("notes without graph_keys in a collection recorded as having them: the record is cleared",
                           extra={"notes": len(paths)})  # fmt: skip
            self.store.merge_metadata({GRAPH_KEYS_ONLY: False})

    def _refused(self, work: list[tuple[SourceObject, str]]) -> dict[str, Refusal]:
        """The notes whose parse ran past :attr:`SyncOptions.parse_limit_s` on an earlier run, path → the etag it
        was of and the limit it ran past (the index's metadata, :data:`PARSE_REFUSED`): a note still at that etag is
        skipped unparsed while the limit is not higher. None read when there is no work and no path known gone.
        None for a full sync (:attr:`SyncOptions.full`: every note tried again, as its user asked; one that runs
        past the limit again is refused anew), which still reads the record to merge its findings into it."""
        self._slow, self._archived_found = {}, {}
        recorded = self.store.metadata() if work or self._gone is not None else {}  # one read for both records
        self._refused_read = self._refused_record(recorded) if recorded else {}
        self._archived_read = self._archived_record(recorded) if recorded else {}
        return {} if self.options.full else self._refused_read

    def _archived_record(self, recorded: dict[str, Any] | None = None) -> dict[str, str]:
        """:data:`ARCHIVED_NOTES` as ``recorded`` (the collection's metadata; read now when not given) holds it."""
        value = (self.store.metadata() if recorded is None else recorded).get(ARCHIVED_NOTES)
        entries = value.items() if isinstance(value, dict) else ()
        return {path: tag for path, tag in entries if isinstance(path, str) and isinstance(tag, str)}

    def _record_archived(self, reached: list[tuple[SourceObject, str]]) -> None:
        """Record which notes stay archived, merged into the record as it is now: an entry of a note this run came
        to is replaced by what it found (none: read, or changed), one of a path gone from the KB dropped, the others
        kept. Written only when that differs from the record."""
        came = {obj.path for obj, _ in reached}
        if not self._archived_read and not self._archived_found:  # none recorded when it began, none found: no read
            return
        record, gone = self._archived_record(), self._gone or (lambda _: False)
        kept = {p: t for p, t in record.items() if p not in came and not gone(p)} | self._archived_found
        if len(kept) > ARCHIVED_MAX:  # those recorded already stay, then the new by path: the same ones every run
            first = sorted(kept, key=lambda p: (p not in record, p))[:ARCHIVED_MAX]
            logger.warning("%d archived notes beyond the record's %d: asked for again at every sync",
                           len(kept) - ARCHIVED_MAX, ARCHIVED_MAX)  # fmt: skip
            kept = {p: kept[p] for p in first}
        if kept != record:
            self.store.merge_metadata({ARCHIVED_NOTES: kept})

    def _refused_record(self, recorded: dict[str, Any] | None = None) -> dict[str, Refusal]:
        recorded = self.store.metadata() if recorded is None else recorded
        value, limits = recorded.get(PARSE_REFUSED), recorded.get(PARSE_REFUSED_LIMITS)
        entries = value.items() if isinstance(value, dict) else ()
        limits = limits if isinstance(limits, dict) else {}
        return {path: read for path, entry in entries if (read := Refusal.read(entry, limits.get(path))) is not None}

    def _record_refused(self, reached: list[tuple[SourceObject, str]]) -> None:
        """Record which notes stay refused, merged into the record as it is now (another run, an event batch beside
        a full sync, may have written it since this one read it, :meth:`_refused`): an entry is dropped when this
        run knows better, that is when it reached that note (``reached``: the notes of its work it came to) at that
        version or the entry is the one it read, or it found the path gone from the KB (:attr:`_gone`) and the
        entry is the one it read; those it found slow, or skipped as such, are added (:attr:`_slow`), each keeping
        the record's entry instead when that is of the same version and ran past a higher limit (another run's under
        a higher ``NOTE_PARSE_LIMIT_S``: the last writer's lower one made the next run under a limit between the two
        parse the note once more). A note that changed, or was parsed again under a higher limit, and was parsed
        within it is so dropped, and is back.
        Written only when that differs from the record; read only when this run reached a note or knows which paths
        are gone."""
        came = {obj.path: obj.etag for obj, _ in reached}
        if not came and not self._slow and self._gone is None:
            return
        read, record = self._refused_read, self._refused_record()
        gone = self._gone or (lambda _: False)

        def known(path: str, entry: Refusal) -> bool:
            return (entry == read.get(path) and (path in came or gone(path))) or entry.etag == came.get(path)

        def higher(path: str, found: Refusal) -> Refusal:
            theirs = record.get(path)
            same = theirs is not None and theirs.etag == found.etag and theirs.ran_past() > found.ran_past()
            return cast(Refusal, theirs) if same else found

        kept = {p: e for p, e in record.items() if not known(p, e)} | {p: higher(p, e) for p, e in self._slow.items()}
        if kept != record:
            self.store.merge_metadata({PARSE_REFUSED: {path: entry.etag for path, entry in kept.items()},
                                       PARSE_REFUSED_LIMITS: {path: entry.written() for path, entry in kept.items()
                                                              if entry.limit_s is not None}})  # fmt: skip

    def _parsed_elsewhere(
        self, work: list[tuple[SourceObject, str]], indexed_at: str
    ) -> Generator[ParseOutcome, None, None] | None:
        """The notes of a large sync of a folder parsed in another process (:func:`parse_ahead`), in order, while
        this one embeds and writes: parsing is a third of a full index's CPU, and Qdrant Edge's calls hold this
        process's interpreter. None (parsed here, in turn) for fewer than
        :data:`PARSE_PROCESS_FROM` notes, another source, or a run that reuses stored vectors (an event run, a full
        sync rewriting notes for their graph keys alone)."""
        if len(work) < PARSE_PROCESS_FROM or type(self.source) is not LocalSource or self._reuse or self._regraph_at:
            return None
        signature = self._signature_id if self.embedder is not None else None
        return parse_ahead(self.source, [obj for obj, _ in work], self.options, self._rules, signature, indexed_at)

    def _write_unembedded(
        self, report: SyncReport, window: list[_Parsed], points: list[ChunkPoint], state: dict[str, NoteState]
    ) -> list[_Parsed]:
        """The notes of ``window`` (``points``: its points in order) whose every chunk holds its vector are written,
        one upsert, nothing embedded; the others are left for the next run (returned). At the run's deadline (the
        window being gathered: no embedder, or every chunk keeps its stored vector, a note read again for a new
        reading whose text did not change; they were dropped, so a run stopped before its window filled wrote none
        of the notes it read), and when a window's embedding failed or was cut by the run's end after some of its
        requests were answered (:class:`_EmbeddingCut`: the notes embedded were dropped with the rest). Not when
        the invocation's own end (``call_deadline``) stopped a parse: no time is left for a write then."""
        ready: list[_Parsed] = []
        ready_points: list[ChunkPoint] = []
        left: list[_Parsed] = []
        at = 0
        for parsed in window:
            mine = points[at : at + len(parsed.points)]
            at += len(parsed.points)
            if self.embedder is not None and any(point.dense is None for point in mine):
                left.append(parsed)
            else:
                ready.append(parsed)
                ready_points.extend(mine)
        if ready:
            self._write_window(report, ready, ready_points, state)
        return left

    def _embedded(
        self,
        window: list[_Parsed],
        stats: EmbeddingStats,
        call_deadline: Deadline | None,
        go_on: Callable[[], bool] | None = None,
    ) -> list[ChunkPoint]:
        """The window's points with their vectors (only chunks without one are embedded: an event-driven run
        reuses the vectors of chunks whose text is unchanged). ``go_on``: asked before each request is sent
        (:meth:`~kbsearch.providers.embeddings.Embedder.embed_documents`)."""
        points = [point for parsed in window for point in parsed.points]
        if self.embedder is not None:
            todo = [i for i, point in enumerate(points) if point.dense is None]
            chunks = [c for p in window for c in p.chunks]
            texts = [self.embedder.format_document(chunks[i].embed_text) for i in todo]
            known = [chunks[i].embed_counts for i in todo]
            vectors: list[list[float]] = [[] for _ in todo]  # filled as each request answers
            try:
                if texts:
                    self.embedder.embed_documents(texts, call_deadline, stats, known, into=vectors, go_on=go_on)
            except ProviderError as exc:
                raise _EmbeddingCut(exc, window, self._with_vectors(points, todo, vectors)) from exc
            points = self._with_vectors(points, todo, vectors)
        return points

    @staticmethod
    def _with_vectors(points: list[ChunkPoint], todo: list[int], vectors: list[list[float]]) -> list[ChunkPoint]:
        """``points`` with the vectors of those at ``todo`` that came back (an empty list: not embedded)."""
        points = list(points)
        for i, vector in zip(todo, vectors, strict=True):  # the lists the store writes
            if vector:
                points[i] = replace(points[i], dense=vector)
        return points

    def _write_window(
        self, report: SyncReport, window: list[_Parsed], points: list[ChunkPoint], state: dict[str, NoteState]
    ) -> None:
        if self.embedder is not None and isinstance(report, ChangeReport):
            report.chunks_reused += sum(1 for parsed in window for point in parsed.points if point.dense is not None)
        for parsed in window:  # who reaches each chunk, written with its groups (one payload)
            reach = self._reach_of(parsed.access[0])
            for point in parsed.points:
                point.payload[REACH] = reach
                point.payload[LINKS_AT] = self._links_generation  # see record_restricted_links
        # New versions first (one round trip per window), then each note's leftovers: a note is never missing.
        self.store.upsert(points)
        report.chunks_upserted += len(points)
        for parsed in window:
            old = state.get(parsed.obj.path)
            n = len(parsed.chunks)
            leftover = {i for idx in old.chunks.values() for i in idx if i >= n} if old else set()
            if leftover:
                self.store.delete_leftovers(parsed.obj.path, n)
                report.chunks_deleted += len(leftover)
            self._written_ids[parsed.obj.path] = parsed.note.doc_id
            self._keys_written[parsed.obj.path] = parsed.obj.key
            first = next((point.payload for point in parsed.points if point.chunk_index == 0), {})
            self._names_written[parsed.obj.path] = stored_keys(first, NAME_KEY)
            self._links_written[parsed.obj.path] = stored_keys(first, LINK_KEY)
            self._access[parsed.obj.path] = parsed.access[0]
            if parsed.kind == "added":
                report.added += 1
            else:
                report.updated += 1


@dataclass
class ParseOutcome:
    """What parsing one note for the index came to, with no side effect: its parts (note, (groups, where they came
    from), chunks, points), or why not (``failure``: large, source, note, access, bug, slow, deadline, ended; ``reason``)."""

    parsed: tuple[Note, tuple[list[str], str], list[Chunk], list[ChunkPoint]] | None = None
    failure: str | None = None
    reason: str = ""
    trace: str = ""  # a bug's traceback
    #: the source's failure was S3's refusal of an archived object (:class:`~kbsearch.sources.NoteArchived`): the one
    #: recorded in :data:`ARCHIVED_NOTES` (a 503 or a timeout is tried again at the next sync)
    archived: bool = False


def parse_for_index(
    source: Source,
    obj: SourceObject,
    options: SyncOptions,
    rules: FolderRules,
    signature_id: str | None,
    indexed_at: str,
    reuse: dict[str, Any],
    run_left_s: float | None = None,
) -> ParseOutcome:
    """Read, parse, chunk one note and build its points (payload, sparse vector; a reused dense vector from
    ``reuse``, embed hash → vector); ``signature_id``: the embedding's, None when the index is BM25 only. All but
    the read within :attr:`SyncOptions.parse_limit_s` of CPU time, else failure ``slow``, and within ``run_left_s``
    of wall-clock time when given (the run's end: a Lambda's timeout), else failure ``deadline`` (bounded in a
    main thread only, :class:`kbsearch.timelimit.TimeLimit`)."""
    note = TimeLimit(options.parse_limit_s, cpu=True)
    unbounded = run_left_s is None or not math.isfinite(run_left_s)  # no end (setitimer refuses an infinite one)
    if not unbounded and cast(float, run_left_s) <= 0:  # not read: the note is not reached (S3 not blamed for it)
        return ParseOutcome(failure="deadline", reason="the run's end came before the note's read")
    bounds = (note,) if unbounded else (note, TimeLimit(max(cast(float, run_left_s), 0.001)))
    try:
        try:
            return _parse_for_index(source, obj, options, rules, signature_id, indexed_at, reuse, bounds)
        finally:
            cancel_all(bounds)
    except TimeLimitHit as hit:  # in the parse, or as it ended: each timer is off once its cancel() returns
        if hit.limit is not note:
            return ParseOutcome(failure="deadline", reason="the run's end came before the note's parse did")
        return ParseOutcome(failure="slow", reason=slow_parse(options.parse_limit_s))


def _parse_for_index(
    source: Source, obj: SourceObject, options: SyncOptions, rules: FolderRules, signature_id: str | None,
    indexed_at: str, reuse: dict[str, Any], bounds: tuple[TimeLimit, ...],
) -> ParseOutcome:  # fmt: skip
    """:func:`parse_for_index`'s work; ``bounds`` started once the note is read."""
    import traceback

    from kbsearch.notes import NoteError, note_id, parse_note  # the YAML parser loads only when a note changed

    if obj.size > options.max_note_bytes:
        # the setting named (the one reading the report can raise it), and what its writer can do (round 36: a
        # pasted 5 MB log was "too large", nothing said of a way to have the note searchable)
        return ParseOutcome(failure="large", reason=(
            f"too large: {obj.size} bytes (limit {options.max_note_bytes}, MAX_NOTE_BYTES): split it into smaller "
            "notes, or keep what was pasted into it (a log, an export) in a file not ending in .md and link that"
        ))  # fmt: skip
    try:
        raw = source.read(obj)
        for bound in bounds:
            bound.start()
        note = parse_note(obj.path, raw, options.max_note_bytes)
        groups, access_from = note_access(
            obj.path, declared_access(note.metadata, note.warnings), rules, options.access_default
        )
        chunks = chunk_note(note, options.chunk_max_tokens, options.chunk_overlap_tokens)
        dense = signature_id is not None
        if dense:  # the embedding's token budget, counted here (the parsing process) instead of where it embeds
            chunks = [replace(chunk, embed_counts=counts(chunk.embed_text)) for chunk in chunks]
        signature = signature_id or ""
        language = text_language(note.title + "\n" + "\n".join(c.text for c in chunks))
        payloads = []
        links = stored_links(note.links)
        keys = tag_keys(note.tags)
        aliases = payload_aliases(note.metadata.get("aliases"))  # one list every chunk shares, as the title
        for chunk in chunks:
            payload = _payload(obj, note, chunk, len(chunks), indexed_at, dense, links, keys, aliases)
            payload["lang"] = language  # the note's language: what the fusion weighs a BM25 match by
            payload["embedding"] = signature if dense else ""  # which model/format embedded it
            payload[EMBED_HASH] = embed_hash(signature, chunk.embed_text) if dense else ""
            payload["access"], payload["access_from"] = groups, access_from
            payloads.append(payload)
        _check_storable(payloads)  # what the store must take
        reuse = reuse if dense else {}
        lexical_id = note_id(note.metadata)
        # what a re-read of the BM25 vectors reads (Indexer._reread_bm25): the payload's links, path and title
        linked = links_to_others(payload_links(links), note.path, note.title)
        points = [ChunkPoint(obj.path, chunk.index, payload,
                             document_vector(lexical_text(chunk.index, chunk.embed_text, lexical_id), links=linked),
                             reuse.get(payload[EMBED_HASH]))
                  for chunk, payload in zip(chunks, payloads, strict=True)]  # fmt: skip
    except SourceError as exc:
        return ParseOutcome(failure="source", reason=str(exc), archived=isinstance(exc, NoteArchived))
    except NoteError as exc:
        return ParseOutcome(failure="note", reason=exc.reason)
    except AccessDeclarationError as exc:
        return ParseOutcome(failure="access", reason=exc.reason)
    except Exception as exc:  # a bug or an input no rule above foresaw: this note only
        return ParseOutcome(failure="bug", reason=f"cannot be indexed ({type(exc).__name__})",
                            trace=traceback.format_exc())  # fmt: skip
    return ParseOutcome((note, (groups, access_from), chunks, points))


#: Metadata key of the index: the notes whose parse ran past :attr:`SyncOptions.parse_limit_s`, path → the etag of
#: the version that did; each is skipped unparsed, with a reason, while it stays at that version and the limit is
#: not raised above the one it ran past (:data:`PARSE_REFUSED_LIMITS`; a note whose parse never ends used to hold
#: every sync for as long). The etag alone, as every kbsearch since round 26 reads and writes it: the Lambdas of an
#: older version sharing the collection (a rolling deploy, a rollback) keep refusing these notes, and rewriting the
#: record they keep the limits' key as it is (round 28b wrote ``{"etag", "limit_s"}`` here, an entry an older
#: kbsearch dropped from the record at its next write of it, and parsed its note again).
#: The collection's record of the notes in an S3 archive class whose read S3 refused (``InvalidObjectState``): path →
#: :func:`archive_tag`. Such a note is not read again (nor its GET refused and reported anew at every sync) until its
#: ETag or storage class changes, a HEAD names a restored copy (:func:`~kbsearch.sources.restored`: a restore
#: changes neither), or a full sync (``kbsearch index --full``) tries it again.
ARCHIVED_NOTES = "archived_notes"
#: The entries :data:`ARCHIVED_NOTES` holds at most (rev36c). The record is the collection's metadata, which every
#: search reads (``GET /collections/{c}``, once a minute) and every sync reads and rewrites whole: unbounded, a
#: lifecycle rule archiving a bucket's 100,000 notes made it ~9 MB (Qdrant's default max_request_size_mb is 32).
#: Notes past it are asked for at every sync, S3 refusing each GET, as before the record.
ARCHIVED_MAX = 1000
#: The storage classes whose objects S3 may serve only once restored: GLACIER and DEEP_ARCHIVE always;
#: INTELLIGENT_TIERING when the object sits in its Archive Access or Deep Archive Access tier, which no listing
#: names (``ArchiveStatus`` is a HEAD's): such a note is recorded only once S3 refused its GET (``InvalidObjectState``).
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE", "INTELLIGENT_TIERING"})


def archive_tag(obj: SourceObject) -> str | None:
    """What :data:`ARCHIVED_NOTES` records of an archived note (its ETag and storage class); None for any other."""
    return f"{obj.etag}|{obj.storage_class}" if obj.storage_class in ARCHIVE_CLASSES else None


def archived_reason(obj: SourceObject) -> str:
    where = "Intelligent-Tiering's archive tiers" if obj.storage_class == "INTELLIGENT_TIERING" else obj.storage_class
    return (f"archived in S3 {where} at this version, not restored: an earlier run could not read it; "
            "asked about (a HEAD, no GET) at every sync, and read at the first after a restore, or when its ETag or "
            "storage class changes")  # fmt: skip


PARSE_REFUSED = "parse_refused"
#: Metadata key of the index: path → ``{"etag", "limit_s"}``, the limit the version at that etag ran past (of an
#: entry of :data:`PARSE_REFUSED`; one of another etag, or none, reads as :data:`DEFAULT_PARSE_LIMIT_S`).
PARSE_REFUSED_LIMITS = "parse_refused_limits"


@dataclass(frozen=True)
class Refusal:
    """One entry of :data:`PARSE_REFUSED`: the version (etag) of a note whose parse ran past ``limit_s``, that limit
    in :data:`PARSE_REFUSED_LIMITS` (round 28b's ``{"etag": ..., "limit_s": ...}`` in :data:`PARSE_REFUSED` still
    reads); an entry whose limit is not recorded (an older kbsearch's) reads as refused under the default limit
    (:data:`DEFAULT_PARSE_LIMIT_S`): a limit raised above it tries the note again."""

    etag: str
    limit_s: float | None  # None: not recorded (an entry written before it was)

    @classmethod
    def read(cls, entry: object, limit_entry: object = None) -> Refusal | None:
        """The entry as stored (``limit_entry``: its path's in :data:`PARSE_REFUSED_LIMITS`, read when of the same
        etag), None when it is neither form (another writer's: dropped when the record is next written)."""
        if isinstance(entry, str):
            limited = cls.read(limit_entry) if isinstance(limit_entry, dict) else None
            return limited if limited is not None and limited.etag == entry else cls(entry, None)
        if not isinstance(entry, dict) or not isinstance(entry.get("etag"), str):
            return None
        limit = entry.get("limit_s")
        try:  # (an integer past a float's range, which JSON allows, raises OverflowError)
            seconds = math.nan if isinstance(limit, bool) or not isinstance(limit, int | float) else float(limit)
        except OverflowError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            return cls(entry["etag"], None)  # (a limit of no use: read as not recorded)
        return cls(entry["etag"], seconds)

    def ran_past(self) -> float:
        """The limit its parse ran past (an entry without one: :data:`DEFAULT_PARSE_LIMIT_S`)."""
        return DEFAULT_PARSE_LIMIT_S if self.limit_s is None else self.limit_s

    def refuses(self, etag: str, limit_s: float) -> bool:
        """Whether the note at ``etag`` is still refused under the limit ``limit_s`` (a note that ran past a limit
        runs past any lower one)."""
        return etag == self.etag and limit_s <= self.ran_past()

    def reason(self) -> str:
        if self.limit_s is None:  # not known: an entry written before the limit was recorded
            default = f"{DEFAULT_PARSE_LIMIT_S:g} s"
            ran_past = f"NOTE_PARSE_LIMIT_S as it was then (not recorded: read as {default}, the default)"
        else:
            ran_past = f"{self.limit_s:g} s, NOTE_PARSE_LIMIT_S as it was then,"
        return (f"its parse ran past {ran_past} on an earlier run, at this version: not parsed again until it changes "
                f"or NOTE_PARSE_LIMIT_S is raised above that ({RETRY_REFUSED})")  # fmt: skip

    def written(self) -> dict[str, object]:
        """Its entry of :data:`PARSE_REFUSED_LIMITS`."""
        return {"etag": self.etag, "limit_s": self.limit_s}


def refuses(refused: dict[str, Refusal], obj: SourceObject, limit_s: float) -> bool:
    """Whether ``obj`` is a note :data:`PARSE_REFUSED` still refuses under ``limit_s``."""
    held = refused.get(obj.path)
    return held is not None and held.refuses(obj.etag, limit_s)


#: How a note refused as slow is tried again besides (the end of a refusal's reason).
RETRY_REFUSED = "a full sync (kbsearch index --full) tries it again"


def slow_parse(limit_s: float) -> str:
    """Why a note whose parse ran past ``limit_s`` on this run is skipped."""
    return (f"its parse ran past {limit_s:g} s, the time a note may take (NOTE_PARSE_LIMIT_S): not parsed again "
            f"until it changes ({RETRY_REFUSED})")  # fmt: skip


#: A sync of at least this many notes to (re)index from a folder parses them in another process: starting it costs
#: ~0.5 s of CPU (an interpreter and kb-search's parsing imports), parsing ~2.5 ms a note here.
PARSE_PROCESS_FROM = 500
PARSE_BATCH = 32  # notes per task sent to the parsing process
#: Batches the parsing process holds parsed and not yet read (256 notes): it goes on parsing through a Qdrant Edge
#: seal, which holds the indexing process's interpreter for seconds; what it holds is bounded (BENCHMARKS.md,
#: "Session 24: the parsing process goes on through a seal").
PARSE_AHEAD = 8
PARSE_POLL_S = 1.0  # how often a wait for the parsing process checks that it is still there
PARENT_POLL_S = 0.5  # how often a parsing process checks that the process that started it is still there


#: prctl(2)'s option: the signal the kernel sends this process when the thread that started it ends.
PR_SET_PDEATHSIG = 1


def _end_with_parent(parent: int) -> None:
    """In a parsing process: it ends once ``parent`` (the pid of the process that started it) is gone. Killed
    (``kill -9``, the OOM killer) mid-parse, ``kbsearch serve`` left its parsing process running, orphaned, until
    the parse ended (up to :attr:`SyncOptions.parse_limit_s` of CPU), then a BrokenPipeError traceback;
    ``kbsearch index``'s :func:`parse_ahead` process waited on its full queue for good.

    On Linux the kernel ends it (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, :func:`_killed_with_parent`): a parse that
    holds the interpreter's lock in C runs no thread of this process, and no timer signal's handler either, so
    only a signal the kernel acts on stops it. The kernel sends it when the *thread* that started the process ends,
    so the process is started from a thread that lasts as long as its parent (:func:`_start_lasting`). Elsewhere
    (macOS has no such call) and as a second guard, a thread watches the parent: there a parse held in C outlives
    its parent until it ends."""
    _killed_with_parent(parent)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="kbsearch-parent-watch", daemon=True).start()


def _killed_with_parent(parent: int) -> bool:
    """Linux: SIGKILL from the kernel to this process when its parent ends (:data:`PR_SET_PDEATHSIG`); ended at
    once if ``parent`` ended before that was asked (the process is then another's child). False where there is no
    such call (not Linux, no C library found): the parent-watching thread alone (:func:`_end_with_parent`)."""
    import sys

    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import signal

    try:
        asked = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no C library to call (a static or unusual build)
        asked = False
    if os.getppid() != parent:
        os._exit(0)
    return asked


_spawner_lock = threading.Lock()
_spawner: list[Any] = []  # the queue of the thread that starts processes (:func:`_start_lasting`), once started


def _start_lasting(process: Any) -> None:
    """``process.start()`` (with ``__main__`` hidden and SIGINT held, :func:`_main_hidden`,
    :func:`_interrupts_held`) in this process's main thread or, from any other thread, in one thread kept for
    it for the life of the process: the kernel's parent-death signal (:func:`_killed_with_parent`) follows the
    thread that started a process, and ``kbsearch serve`` starts its parsing process again from a sync's thread or
    from the thread of a ``kbsearch index`` handed to it, which ends: the process would have been killed with it."""

    def start() -> None:
        with _main_hidden(), _interrupts_held():
            process.start()

    if threading.current_thread() is threading.main_thread():
        start()
        return
    import queue

    with _spawner_lock:
        if not _spawner:
            tasks: queue.SimpleQueue[tuple[Callable[[], None], threading.Event, list[BaseException]]]
            tasks = queue.SimpleQueue()

            def serve() -> None:
                while True:
                    task, done, failed = tasks.get()
                    try:
                        task()
                    except BaseException as exc:  # handed to the caller, raised in its thread
                        failed.append(exc)
                    finally:
                        done.set()

            threading.Thread(target=serve, name="kbsearch-spawner", daemon=True).start()
            _spawner.append(tasks)
    done, failed = threading.Event(), cast(list[BaseException], [])
    _spawner[0].put((start, done, failed))
    done.wait()
    if failed:
        raise failed[0]


def _parse_batch(
    root: str, objs: list[SourceObject], options: SyncOptions, rules: FolderRules, signature_id: str | None,
    indexed_at: str, first: int, parsing: Any,
) -> list[ParseOutcome]:  # fmt: skip
    """The parsing process's task: :func:`parse_for_index` of each note of a folder, each note without its
    sections (the indexer reads a parsed note's id and warnings; its text is in the chunks, sent once). While a
    note is parsed, ``parsing`` (memory shared with the indexing process) holds its number (``first`` is the
    batch's first note's), else -1: a process killed mid-parse names the note it was parsing."""
    source = LocalSource(root)
    outcomes = []
    for number, obj in enumerate(objs, first):
        parsing.value = number
        outcomes.append(_sent(parse_for_index(source, obj, options, rules, signature_id, indexed_at, {})))
        parsing.value = -1
    return outcomes


def _sent(outcome: ParseOutcome) -> ParseOutcome:
    """A parsing process's outcome as it is sent back: the note without its sections (the indexer reads a parsed
    note's id and warnings; its text is in the chunks, sent once)."""
    if outcome.parsed is not None:
        note, access, chunks, points = outcome.parsed
        outcome.parsed = (replace(note, sections=[]), access, chunks, points)
    return outcome


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """While a process is spawned: a spawned Python imports the parent's ``__main__`` again (its script, or its
    ``-m`` module) before it runs anything, and a caller's script that indexes at import time, with no ``if
    __name__ == "__main__"`` guard, would then index again in it. The parsing process needs kb-search alone."""
    import sys
    import types

    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """While a process is spawned: SIGINT blocked in this thread, so that an interrupt arriving meanwhile is
    delivered here when this returns, not in the middle of the spawn. The process does not keep the block: Python
    3.10 and later clear the signal mask of a process that multiprocessing spawns (3.6 kept it), so a parsing
    process ignores SIGINT itself (:func:`_interrupts_ignored`)."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):  # no POSIX signal masks (Windows): nothing to hold
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _interrupts_ignored() -> None:
    """In a parsing process, first: SIGINT ignored, so only the indexing process answers a terminal's Ctrl-C, which
    reaches the whole foreground process group (the indexing process ends this one: :meth:`ParsingProcess.stop`,
    the pipe's end, :func:`_end_with_parent`). ``kbsearch serve --watch``'s parsing process printed a
    ``KeyboardInterrupt`` traceback (or its first line, ``Process kbsearch-parse-each:``) on every Ctrl-C, and
    ``parse_ahead``'s died of it; the mask :func:`_interrupts_held` set was meant to keep it out, and Python no
    longer passes it on. An interrupt during the process's start, before this runs (its imports, ~0.5 s), still
    reaches it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _parse_all(
    root: str, batches: list[list[SourceObject]], options: SyncOptions, rules: FolderRules, signature_id: str | None,
    indexed_at: str, results: Any, parent: int, parsing: Any,
) -> None:  # fmt: skip
    """The parsing process: each batch's :func:`_parse_batch` put on ``results`` with its number, in order. The
    queue's own thread writes them to the pipe, so parsing goes on while the indexing process reads nothing (Qdrant
    Edge's seals hold its interpreter for seconds: the process used to wait on a full pipe for them, its core idle),
    up to :data:`PARSE_AHEAD` batches it has not read. It ends with ``parent`` (:func:`_end_with_parent`).
    ``parsing``: the number of the note being parsed (:func:`_parse_batch`)."""
    _interrupts_ignored()
    _end_with_parent(parent)
    for number, batch in enumerate(batches):
        first = number * PARSE_BATCH
        results.put((number, _parse_batch(root, batch, options, rules, signature_id, indexed_at, first, parsing)))


def parse_ahead(
    source: LocalSource, objs: list[SourceObject], options: SyncOptions, rules: FolderRules,
    signature_id: str | None, indexed_at: str,
) -> Generator[ParseOutcome, None, None]:  # fmt: skip
    """:func:`parse_for_index` of each of ``objs``, in order, computed in one spawned process at most
    :data:`PARSE_AHEAD` batches ahead of the caller. A process that cannot start or dies (a platform without
    process support, memory) leaves the remaining notes to be parsed here, with a warning; the note it died
    parsing, if any (the kernel's OOM killer ends the process using the most memory), is skipped on this run
    (failure ``ended``, not recorded: a kill can be another program's doing), not parsed here, where it would end
    the indexing process too."""
    import multiprocessing
    import queue

    batches = [objs[i : i + PARSE_BATCH] for i in range(0, len(objs), PARSE_BATCH)]
    done = 0
    process = results = None
    parsing: Any = None
    try:
        context = multiprocessing.get_context("spawn")
        results = context.Queue(maxsize=PARSE_AHEAD)
        parsing = context.Value("q", -1, lock=False)  # the note being parsed there (one aligned word: no lock)
        process = context.Process(target=_parse_all, daemon=True, name="kbsearch-parse",
                                  args=(str(source.root), batches, options, rules, signature_id, indexed_at, results,
                                        os.getpid(), parsing))  # fmt: skip
        _start_lasting(process)
        while done < len(batches):
            try:
                number, outcomes = results.get(timeout=PARSE_POLL_S)
            except queue.Empty:
                if process.is_alive():
                    continue
                try:  # what it wrote before it ended is read first
                    number, outcomes = results.get(timeout=PARSE_POLL_S)
                except queue.Empty:
                    raise ChildProcessError(f"the parsing process ended ({process.exitcode})") from None
            if number != done:  # a batch it could not send (its queue's thread drops what fails to pickle)
                raise ChildProcessError(f"the parsing process sent batch {number} for batch {done}")
            done += 1
            yield from outcomes
    except Exception as exc:  # the process could not start, or died: the rest is parsed here
        logger.warning("kbsearch: notes are parsed in the indexing process (%s)", type(exc).__name__)
        code = process.exitcode if process is not None and process.pid is not None else None  # None: alive
        died_at = parsing.value if code is not None and parsing is not None else -1  # (-1: it died between notes)
        for number, obj in enumerate(objs[done * PARSE_BATCH :], done * PARSE_BATCH):
            if number == died_at:
                why = f"the parsing process ended while parsing it (exit code {code}): skipped on this run"
                yield ParseOutcome(failure="ended", reason=why)
                continue
            yield parse_for_index(source, obj, options, rules, signature_id, indexed_at, {})
    finally:
        if process is not None and process.pid is not None:
            if process.is_alive():  # notes parsed ahead of a deadline, a failure or Ctrl-C are dropped
                process.terminate()
            process.join(5.0)
            if process.is_alive():
                process.kill()
                process.join()
        if results is not None:
            results.close()


#: A note sent to a :class:`ParsingProcess` may take this many times :attr:`SyncOptions.parse_limit_s`, plus
#: :data:`PARSE_WALL_SLACK_S`, of wall-clock time before the process is killed: its own CPU limit ends a parse long
#: before (at a load of 8 per core a parse gets an eighth of one); this bounds what no signal reaches.
PARSE_WALL_FACTOR = 8.0
PARSE_WALL_SLACK_S = 10.0
#: why a note was not parsed by a :class:`ParsingProcess` that was stopped (:meth:`ParsingProcess.stop`)
PARSER_STOPPED = "not parsed: the parsing process was stopped (a shut-down); tried again on the next sync"


class _Given:
    """The bytes of one note read by the indexing process, as a parsing process's source."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def read(self, obj: SourceObject) -> bytes:
        return self.raw


def _parse_each(conn: Any, parent: int) -> None:
    """A :class:`ParsingProcess`: each note it is sent, :func:`parse_for_index` in this process's main thread (so
    within :attr:`SyncOptions.parse_limit_s` of CPU time), its outcome sent back; it ends when the pipe closes or
    ``parent`` ends (:func:`_end_with_parent`)."""
    _interrupts_ignored()
    _end_with_parent(parent)
    while True:
        try:
            obj, raw, options, rules, signature_id, indexed_at = conn.recv()
        except EOFError:
            return
        given = cast(Source, _Given(raw))
        outcome = _sent(parse_for_index(given, obj, options, rules, signature_id, indexed_at, {}))
        try:
            conn.send(outcome)
        except OSError:  # the pipe closed meanwhile (the parse was given up on, or the indexing process ended)
            return


class ParsingProcess:
    """One spawned process that parses notes one at a time for an indexer that runs in a thread, where no timer
    signal reaches (``kbsearch serve``'s live sync: ``--watch``, and a ``kbsearch index`` handed to it): there each
    note's parse is bounded by :attr:`SyncOptions.parse_limit_s` of CPU time as in a main thread, and the process
    is killed (and started again for the next note) if a note holds it past :data:`PARSE_WALL_FACTOR` times that
    in wall-clock time. Started by :meth:`start` or the first note (~0.5 s of CPU), kept for the next syncs; a note costs a pipe's round
    trip. A process that ends mid-parse (killed: memory) is started again and the note tried once more; ended
    twice, the note is skipped for this run."""

    def __init__(self) -> None:
        self._process: Any = None
        self._conn: Any = None
        self._lock = threading.Lock()
        self._stopped = False  # (:meth:`stop`)

    def parse(
        self, obj: SourceObject, raw: bytes, options: SyncOptions, rules: FolderRules, signature_id: str | None,
        indexed_at: str,
    ) -> ParseOutcome:  # fmt: skip
        """:func:`parse_for_index` of ``obj`` (``raw``: its bytes, read by the caller) in the process."""
        with self._lock:
            ended = None
            for _ in range(2):
                if self._stopped:
                    return ParseOutcome(failure="ended", reason=PARSER_STOPPED)
                answer = self._once((obj, raw, options, rules, signature_id, indexed_at), options.parse_limit_s)
                if isinstance(answer, ParseOutcome):
                    return answer
                ended = answer
            if self._stopped:
                return ParseOutcome(failure="ended", reason=PARSER_STOPPED)
            why = f"the parsing process ended twice while parsing it (exit code {ended}): skipped on this run"
            return ParseOutcome(failure="ended", reason=why)

    def _once(self, task: tuple[Any, ...], limit_s: float) -> ParseOutcome | int | None:
        """The task's outcome, or the exit code of the process that ended before it answered."""
        self._start()
        wall_s = limit_s * PARSE_WALL_FACTOR + PARSE_WALL_SLACK_S if limit_s > 0 else math.inf
        began = time.monotonic()
        try:
            self._conn.send(task)
            while not self._conn.poll(PARSE_POLL_S):
                if self._stopped or not self._process.is_alive():
                    break
                if time.monotonic() - began > wall_s:
                    self.close()
                    return ParseOutcome(failure="slow", reason=slow_parse(limit_s))
            else:
                return cast(ParseOutcome, self._conn.recv())
        except (EOFError, OSError):  # the pipe closed: the process ended
            pass
        process = self._process
        self.close()  # (joined: its exit code is known)
        return cast(int | None, process.exitcode)

    def start(self) -> ParsingProcess:
        """Start the process now (its interpreter and imports load meanwhile) rather than at the first note."""
        with self._lock:
            self._start()
        return self

    def _start(self) -> None:
        if self._process is not None:
            return
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        mine, theirs = context.Pipe()
        process = context.Process(target=_parse_each, args=(theirs, os.getpid()), daemon=True,
                                  name="kbsearch-parse-each")  # fmt: skip
        _start_lasting(process)
        theirs.close()
        self._process, self._conn = process, mine

    def stop(self) -> None:
        """End the process for good, from any thread, at once: a note it parses is answered as not parsed
        (:data:`PARSER_STOPPED`), and so is every later one. ``kbsearch serve``'s shut-down: a Ctrl-C or SIGTERM
        during a slow note's parse waited for the parse to end (up to :attr:`SyncOptions.parse_limit_s` of CPU, 30 s
        by default), and the sync then wrote the note."""
        self._stopped = True
        process = self._process
        if process is not None:
            with contextlib.suppress(OSError, ValueError):  # (ended, or closed, meanwhile)
                process.kill()

    def close(self) -> None:
        """End the process (started again on the next note)."""
        process, conn, self._process, self._conn = self._process, self._conn, None, None
        if conn is not None:
            conn.close()
        if process is not None:
            process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join()


def _describe(signature: dict[str, Any]) -> str:
    if not any(signature.values()):
        return "a model being re-embedded"
    return "/".join(str(signature.get(k)) for k in SIGNATURE_KEYS)


def _payload(
    obj: SourceObject, note: Note, chunk: Chunk, n_chunks: int, indexed_at: str, dense: bool, links: str | None,
    keys: list[str], aliases: list[str],
) -> dict[str, Any]:  # fmt: skip
    """A chunk's payload, one shape on every path (Edge and Qdrant Cloud); ``links``: the note's
    :func:`~kbsearch.qdrant.query.stored_links`, one string shared by its chunks; ``keys``: its tags'
    :func:`~kbsearch.lexical.tag_keys` (what a tag filter matches; ``[]`` when none: a first chunk without the field
    was written before it, and its note is rewritten by the next sync); ``aliases``: its
    :func:`~kbsearch.links.payload_aliases` (``[]``: no field)."""
    payload = {
        "doc_id": note.doc_id,
        "path": note.path,
        "folders": folders_of(note.path),
        "title": note.title,
        # the names a reader may ask the note by besides its title (the fusion reads them as it reads the title):
        # left out when none
        "aliases": aliases,
        "heading": chunk.heading,
        "chunk_index": chunk.index,
        "n_chunks": n_chunks,
        "text": chunk.text,
        "tags": note.tags,
        TAG_KEYS: keys,
        "type": note.type,
        "status": note.status,
        # what a search reads of it (a snippet when the chunk has no text); the whole summary is embedded with the
        # first chunk and kept in its ``meta``: 64 KiB repeated on each of a 1 MB note's 686 chunks made a 101 MB index
        "summary": note.summary[:MAX_FIELD_CHARS] if note.summary else note.summary,
        "ai_weight": note.ai_weight,
        "created": note.created,
        "updated": note.updated,
        # what a hit shows, whole (the graph's keys: graph_keys, on the first chunk): one string, left out when none
        "links": links,
        "etag": obj.etag,
        "indexed_at": indexed_at,
        "dense": dense,
    }
    for key in UNSET_OMITTED:
        if payload[key] is None:
            del payload[key]
    if links is None:  # a note without links: no field (every reader takes a missing one for none)
        del payload["links"]
    if not payload["aliases"]:  # nor without aliases
        del payload["aliases"]
    if chunk.index == 0:  # the note's free metadata and its place in the link graph (kbsearch.links), once per note
        payload["meta"] = note.metadata
        payload[GRAPH_FIELD] = graph_keys(path_keys(note.path), name_keys(note.title, note.metadata.get("aliases")),
                                          link_keys(note.links))  # fmt: skip
    return payload


#: Chunks a page when their BM25 vectors are read anew (:meth:`Indexer._reread_bm25`): one scroll and one update of
#: vectors each, a page's texts in memory (at 100x the vault, 315,000 chunks: 1,232 pages).
REREAD_PAGE = 256
#: What a chunk's BM25 vector is rebuilt from (:func:`stored_embed_text`), and checked with (its dense vector's hash).
#: Metadata a re-embed's replacing of the whole record keeps: whether every note holds its graph keys (a re-embed
#: changes no note's keys), the reading its notes were chunked with (a re-embed writes every note with today's and
#: records it when done) and the notes refused as slow to parse (their text did not change either).
#: What a new collection records: every note it will hold is written with its graph keys, and chunked as today's
#: code reads notes.
FRESH_METADATA = {GRAPH_KEYS_ONLY: True, NOTES_READING: PARSE_VERSION}
CARRIED_METADATA = (GRAPH_KEYS_ONLY, NOTES_READING, NOTES_READING_FROM, PARSE_REFUSED, PARSE_REFUSED_LIMITS)

#: The notes a full sync reading notes again for a new reading could not read (S3 failed on them) that the progress
#: it records keeps by path (:data:`~kbsearch.qdrant.query.NOTES_READING_FROM`, in the collection's metadata, which
#: every search reads): past them it stops before the next such note, and the next run reads again from there.
MAX_READING_MISSED = 32

#: Notes whose stored vectors one read brings, for a full sync rewriting notes for their graph keys alone.
REUSE_BATCH = 64


def stored_vectors(points: Iterable[tuple[dict[str, Any], list[float] | None]]) -> dict[str, dict[str, Any]]:
    """Notes' stored dense vectors (:meth:`Store.note_points`) as a run reuses them: path → embed hash → vector, for
    the chunks whose embed hash is recorded (a chunk whose text did not change keeps its vector)."""
    reuse: dict[str, dict[str, Any]] = {}
    for payload, vector in points:
        digest = payload.get(EMBED_HASH)
        if vector is not None and isinstance(digest, str) and digest:
            reuse.setdefault(str(payload.get("path")), {})[digest] = vector
    return reuse


REREAD_FIELDS = ["path", "title", "etag", "chunk_index", "heading", "text", "meta", "links", "embedding", EMBED_HASH]


def stored_embed_text(payload: dict[str, Any]) -> str | None:
    """The text a chunk embedded and BM25 indexed, rebuilt from its payload as :func:`_payload` writes it: its
    heading path, the note's summary (the first chunk's ``meta``, whole: ``summary`` is cut), its text
    (:func:`kbsearch.chunking.embed_text`). None when the payload is not one the indexer writes."""
    heading, text, index = payload.get("heading"), payload.get("text"), payload.get("chunk_index")
    if not (isinstance(payload.get("path"), str) and isinstance(heading, str) and isinstance(text, str)
            and type(index) is int):  # fmt: skip
        return None
    summary = None
    if index == 0 and isinstance(payload.get("meta"), dict):
        from kbsearch.notes import note_summary  # the YAML parser loads: only when an older reading is found

        summary = note_summary(payload["meta"])
    return embed_text(index, heading, summary, text)


def stored_note_id(payload: dict[str, Any]) -> str | None:
    """The note's front-matter ``id`` a first chunk's payload keeps (its ``meta``), which BM25 indexes with it
    (:func:`kbsearch.chunking.lexical_text`); None on any other chunk or when the note sets none."""
    meta = payload.get("meta") if payload.get("chunk_index") == 0 else None
    if not isinstance(meta, dict):
        return None
    from kbsearch.notes import note_id  # the YAML parser loads: only when an older reading is found

    return note_id(meta)


#: The front-matter fields a chunk's payload leaves out when the note does not set them, rather than storing a null:
#: every reader takes a missing field for null (``payload.get``), and a filter, facet or ordering on one matches,
#: counts or orders neither a null nor a missing value (``is_null`` is used on none of them). Each key costs the
#: store at every write (Edge's binding converts each value, ~5 us a key) and at every seal (each of the payload
#: indexes reads every payload whole again): a vault without front matter stored 6 nulls a chunk (BENCHMARKS.md,
#: "Session 17").
UNSET_OMITTED = ("type", "status", "summary", "ai_weight", "created", "updated")


def _check_storable(payloads: list[dict[str, Any]]) -> None:
    """Raise unless every payload is what the store must take (JSON without NaN or infinities, UTF-8 strings).
    The chunks of a note share the note's fields (the same objects), so the first payload is encoded in full and
    the others only in the values that are not the first's: a string is encoded (no work when it is ASCII), any
    other value is encoded as JSON. The same verdict as encoding each payload whole, at a fraction of the cost."""
    first = payloads[0] if payloads else {}
    json.dumps(first, allow_nan=False, ensure_ascii=False).encode("utf-8")
    for payload in payloads[1:]:
        for key, value in payload.items():
            if first.get(key) is value or type(value) in (int, bool) or value is None:
                continue
            if type(value) is str:
                if not value.isascii():
                    value.encode("utf-8")
            else:
                json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")


def rebuild_behind_alias(
    admin: Store,
    source: Source,
    embedder: Embedder | None,
    options: SyncOptions,
    progress: Progress | None = None,
    stop_at: Deadline | None = None,
    call_deadline: Deadline | None = None,
    links_lock: LinksLock | None = None,
) -> SyncReport:
    """``kbsearch index --rebuild`` on Qdrant Cloud: sync the KB into a new collection, and only when that run is
    complete point the alias (``admin.collection``, the name searches use) at it in one atomic request, then drop
    the collection it named before. Searches never see a half-built index. The new collection's name comes from the
    embedding signature (two names, so a rebuild with the same model never writes into the live one): an
    interrupted rebuild is carried on by the next ``--rebuild``, incrementally."""
    alias = admin.collection
    live = admin.alias_target(alias)
    tag = signature_id(embedder.signature) if embedder is not None else "bm25"
    target = next(name for name in (f"{alias}-{tag}-a", f"{alias}-{tag}-b") if name != live)
    report = Indexer(source, admin.sibling(target), embedder, options, progress, links_lock).sync(
        stop_at, call_deadline
    )
    report.collection = alias
    if report.error or report.incomplete or report.deletion_blocked:
        report.rebuilt = (
            f"collection {target!r} not complete: the alias {alias!r} still names "
            f"{live or 'the collection it named'}; run kbsearch index --rebuild again to carry on"
        )
        return report
    before = live or (alias if admin.exists() else None)
    try:
        admin.point_alias(alias, target)  # refused once the lease is lost, however late (Store.may_write: rev34a)
    except LeaseLostError:
        report.incomplete = True
        report.rebuilt = (
            f"collection {target!r} built, and the alias {alias!r} not switched to it: this run lost its index "
            f"lease first; the alias still names {live or 'the collection it named'}"
        )
        return report
    if live is not None and live != target:
        try:
            with storage_errors(f"dropping the previous collection {live!r}"):
                admin.sibling(live).drop()
        except LeaseLostError:  # switched, the lease lost since: the previous collection is left, nothing lost
            report.incomplete = True
            report.rebuilt = (
                f"collection {target!r} built; the alias {alias!r} now names it; the previous collection {live!r} "
                "was not dropped: this run lost its index lease first (drop it when no run uses it)"
            )
            return report
    report.rebuilt = f"collection {target!r} built; the alias {alias!r} now names it" + (
        f" (was {before!r}, dropped)" if before else ""
    )
    logger.warning("kbsearch: %s", report.rebuilt)
    return report


def run_sync(
    settings: Settings,
    secrets: Secrets,
    *,
    source_uri: str | None = None,
    full: bool = False,
    allow_mass_delete: bool = False,
    stop_at: Deadline | None = None,
    call_deadline: Deadline | None = None,
    progress: Progress | None = None,
    rebuild: bool = False,
) -> SyncReport:
    """Wire the configured source, store and embedder together and run one sync, holding the index lease
    (``INDEX_LEASE_TABLE``) for its duration: raises :class:`kbsearch.lease.LeaseHeld` when another run has it.
    ``rebuild``: Qdrant Cloud builds a new collection behind the alias (:func:`rebuild_behind_alias`); the
    embedded store is dropped and rebuilt in place."""
    from functools import partial

    from kbsearch.lease import LINKS_TTL_S, index_lease, short_lease
    from kbsearch.providers.embeddings import build_embedder

    source = open_source(source_uri or settings.kb_source, deadline=call_deadline)

    def links_lock() -> AbstractContextManager[Any]:
        """The lease event batches take to rewrite the restricted link targets. A sync waits out a holder that
        died (its lease expires) rather than leave the list unrecorded, but only into half the time it keeps
        after ``stop_at`` (``DEADLINE_MARGIN_S``): never past its own end."""
        left = (stop_at or Deadline()).remaining() + settings.deadline_margin_s / 2
        return short_lease(settings, "links", wait_s=max(1.0, min(LINKS_TTL_S + 10, left)), deadline=table_deadline)

    table_deadline = lease_table_deadline(call_deadline)
    with index_lease(settings, table_deadline) as lease:  # its DynamoDB calls end by the run's end too
        stop_at = _until_lease_lost(stop_at or Deadline(), lease)
        try:
            store = open_store(settings, secrets, rebuild=rebuild, deadline=call_deadline,
                               held=None if lease is None else lease.held)  # fmt: skip
        except StoreError as exc:
            report = SyncReport(source=source.uri, collection=settings.qdrant_collection, dense=False, full=full)
            report.error = storage_failed(settings, exc, source_uri or settings.kb_source, rebuild)
            report.incomplete = True
            return report
        try:
            embedder = build_embedder(settings, secrets, None)  # the shared client, made if a note is embedded
            options = SyncOptions.from_settings(
                settings,
                full=full,
                allow_mass_delete=allow_mass_delete,
                count_dangling=True,
                **caller_options(secrets),
            )
            if rebuild and not store.embedded:
                report = rebuild_behind_alias(
                    store, source, embedder, options, progress, stop_at, call_deadline, links_lock
                )
            else:
                if rebuild:
                    store.drop()
                claims = partial(
                    event_sequencers, settings, table_deadline
                )  # read when the run ends, its notes written
                report = Indexer(source, store, embedder, options, progress, links_lock, claims).sync(
                    stop_at, call_deadline
                )
                if rebuild and report.incomplete:  # a Ctrl-C, a deadline, a failed write: not "rebuilt"
                    report.rebuilt = (
                        "the local collection was dropped (--rebuild), and its rebuild stopped short: it holds "
                        f"the {report.added} notes indexed so far; the next run (no --rebuild needed) adds the rest"
                    )
                elif rebuild:
                    report.rebuilt = "the local collection was dropped and rebuilt (--rebuild)"
            try:
                _remember_source(store, source, report)
            except StoreError as exc:  # the index is written; only the convenience is lost
                logger.warning("could not record the KB folder in the collection", extra={"error": str(exc)})
        finally:
            try:
                store.close()
            except StoreError as exc:  # the writes may not be durable: the run did not complete
                closing: StoreError | None = exc
            else:
                closing = None
        if closing is not None:
            report.error = report.error or f"index storage failed: {closing}"
            report.incomplete = True
        if lease is not None and not lease.held():  # once it said no it says no (Lease.stopped), renewed since or not
            how = lease.stopped or ("another run took it over" if lease.lost else "its renewals failed")
            since = "; renewed since: nobody took it meanwhile" if lease.renewed_since_stopped() else ""
            report.error = report.error or (
                f"the index lease {lease.name} was lost mid-run ({how}; INDEX_LEASE_TTL_S {lease.ttl_s:g} s{since}); "
                "this run stopped at its next note and wrote none after the loss; the next run carries on"
            )
            report.incomplete = True
        return report


class _LeaseDeadline(Deadline):
    """The run's deadline, passed at once when its index lease is no longer surely held
    (:meth:`kbsearch.lease.Lease.held`: another run took it over after it expired, or its renewals failed for its
    time to live): the run starts no new work, as at its deadline (it went on writing to its last note beside the
    new holder, and reported success)."""

    def __init__(self, stop_at: Deadline, lease: Any) -> None:
        super().__init__()
        self.at, self._stop_at, self._lease = stop_at.at, stop_at, lease

    def held(self) -> bool:
        return bool(self._lease.held())

    def remaining(self) -> float:
        return 0.0 if not self.held() else self._stop_at.remaining()


def lease_lost(stop_at: Deadline) -> bool:
    """Whether ``stop_at`` is a run's :class:`_LeaseDeadline` whose index lease is no longer surely held: the run
    writes no note from then on (rev33b: the notes read before the loss were written at the stop, beside the new
    holder)."""
    return isinstance(stop_at, _LeaseDeadline) and not stop_at.held()


def _until_lease_lost(stop_at: Deadline, lease: Any) -> Deadline:
    """``stop_at``, or one that has passed once ``lease`` is lost (no lease table: ``stop_at`` as it is)."""
    return stop_at if lease is None else _LeaseDeadline(stop_at, lease)


def caller_options(secrets: Secrets) -> dict[str, Any]:
    """:class:`SyncOptions`' ``caller_sets`` and ``callers``, from the caller mapping the search reads
    (``ACCESS_GROUPS``: the SSM SecureString ``ACCESS_GROUPS_PARAM`` in Lambda): the tokens of the group sets callers
    hold (:meth:`kbsearch.access.CallerMap.set_tokens`) and who holds which groups. A mapping that cannot be read or
    understood gives none (a warning naming why, never a value): the sync goes on, its callers keep the tokens
    already recorded, and no caller is given a token it was not before."""
    try:
        mapping = CallerMap.parse(secrets.get("ACCESS_GROUPS"))
    except (ConfigError, CallerMapError) as exc:
        logger.warning("the caller mapping cannot be used: no new group-set tokens this sync (callers of several "
                       "groups new to it are matched by their groups)", extra={"error": str(exc)})  # fmt: skip
        unusable = isinstance(exc, CallerMapError)  # the search refuses it too; SSM unread here may serve the search
        problem = (f"cannot be used, so every caller reads the public notes only: {exc}" if unusable
                   else f"not read by this sync, so its callers were not checked: {exc}")  # fmt: skip
        return {"caller_sets": (), "callers": (), "callers_problem": problem}
    return {"caller_sets": tuple(mapping.set_tokens()), "callers": mapping.holders(),
            "callers_unmatched": tuple(mapping.problems())}  # fmt: skip


def _remember_source(store: Store, source: Source, report: SyncReport) -> None:
    """An embedded collection records the folder it was built from, so ``kbsearch serve`` without KB_SOURCE can
    still read notes (``kb_get_note``). Qdrant Cloud's collections are shared: they record no laptop's path."""
    if not store.embedded or not isinstance(source, LocalSource) or report.error:
        return
    folder = str(Path(source.uri).resolve())
    recorded = store.metadata()
    explain_other_folder(recorded, source, report)
    if recorded.get(SOURCE_KEY) != folder:
        store.set_metadata({**recorded, SOURCE_KEY: folder})


def explain_other_folder(recorded: dict[str, Any], source: Source, report: SyncReport) -> None:
    """A mass delete blocked because a second KB was indexed into the first one's store (the default
    ``.kbsearch/qdrant`` is one per working folder): "rerun with --allow-mass-delete" would delete the first KB's
    notes, which is not what was meant. Said instead: the folder the index was built from (``recorded``, the
    collection's metadata) and what keeps the two apart."""
    built_from = recorded.get(SOURCE_KEY)
    if not report.deletion_blocked or not isinstance(source, LocalSource) or not isinstance(built_from, str):
        return
    if built_from == str(Path(source.uri).resolve()):
        return
    blocked = report.deletion_blocked.split(". If that is intended", 1)[0]
    report.deletion_blocked = (
        f"{blocked}. This index was built from another folder, {built_from}, whose notes it keeps beside "
        "this one's: to keep this KB apart, index it into its own store (QDRANT_PATH=<another folder>); to "
        "replace that KB with this one, kbsearch index --rebuild"
    )


# -- event-driven runs: exactly the keys of an S3 event batch (or a watched folder's saves) ---------------------


def give_reach(store: Store, groups: list[str], sets: Iterable[str] = ()) -> bool:
    """Give every public chunk whose ``reach`` lacks one of ``groups`` or ``sets`` (the tokens of group sets), or
    ``public``, ``public``, ``groups`` and ``sets``: one payload write selecting exactly those chunks (by ``access``:
    a chunk made restricted meanwhile is not selected), after a filtered scroll of one point finds any (none:
    nothing written). True when written."""
    wanted = reach_of([PUBLIC], groups, sets)
    lacking = {"must": [{"key": "access", "match": {"value": PUBLIC}}],
               "should": [{"must_not": [{"key": REACH, "match": {"value": g}}]} for g in wanted]}  # fmt: skip
    if not store.has_points(lacking):
        return False
    store.set_payload_where(lacking, {REACH: wanted})
    return True


#: Collection metadata: when the last full sync (or reconcile) ended, epoch seconds, whatever its outcome: an event
#: batch that began before it checks the notes it wrote (:meth:`ChangeSync._reapply_after_sync`). Written twice by
#: a sync: before it reads the batches' claims (:meth:`Indexer._reapply_claimed`) and in its last record
SYNC_ENDED = "full_sync_ended"


def record_sync(store: Store, report: SyncReport, kind: str) -> None:
    """Record a successful run (no error, nothing left over) in the collection's metadata, for ``/health``; a full
    sync's end (:data:`SYNC_ENDED`) in any case, in the same write."""
    ended = {SYNC_ENDED: time.time()} if kind in ("full", "reconcile") else {}
    if report.error or report.incomplete:
        if ended:  # a sync cut at its deadline wrote notes too
            with contextlib.suppress(StoreError, LeaseLostError):
                store.merge_metadata(ended)
        return
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    store.merge_metadata({LAST_SYNC_AT: when, LAST_SYNC_KIND: kind, **ended})


#: Collection metadata: how the recorded restricted link targets were derived (2: from the index, names included;
#: 3: with the public notes' keys, ``LINK_NAMES``); a list recorded otherwise is derived afresh by the next full sync.
LINKS_FORMAT = "access_restricted_links_format"
LINKS_FORMAT_VERSION = 3


def link_carriers(
    store: Store, keys: set[str] | None = None, page: int = 1024
) -> tuple[dict[str, list[str] | None], dict[str, list[str]]]:
    """The indexed notes a link with one of ``keys`` can name (by a tail of their path, their ``p:`` graph keys, or
    by their title or an alias, ``n:``; :mod:`kbsearch.links`), or every indexed note (``keys`` None: each note's
    first chunk): (path → groups, None when the index records none usable; path → its name keys). A note a store
    made before has not rewritten yet is found and read by its old fields too (:data:`GRAPH_KEYS_ONLY`)."""
    requests: list[dict[str, Any]]
    if keys is None:
        requests = [{"filter": {"must": [{"key": "chunk_index", "match": {"value": 0}}]}}]
    else:
        ordered = sorted(keys)
        old = not store.metadata().get(GRAPH_KEYS_ONLY)
        requests = [{"filter": {"should": [*graph_clauses(PATH_KEY, ordered[i : i + 512], old),
                                           *graph_clauses(NAME_KEY, ordered[i : i + 512], old)]}}
                    for i in range(0, len(ordered), 512)]  # fmt: skip
    groups: dict[str, list[str] | None] = {}
    names: dict[str, list[str]] = {}
    for payload in _scrolled(store, requests, ["path", "access", "access_from", GRAPH_FIELD, NAME_FIELD], page):
        recorded = recorded_access(payload)
        groups[payload["path"]] = list(recorded[0]) if recorded is not None else None
        named = stored_keys(payload, NAME_KEY)
        if named:
            names.setdefault(payload["path"], []).extend(named)
    return groups, names


#: How many of a sync's dangling links its report names (the first by linking note and link): the rest are counted.
DANGLING_SHOWN = 10
#: The message of a sync's log record of its dangling links (``kbsearch serve --watch`` says them on its line instead)
DANGLING_LOGGED = "%d wiki-link(s) name no note"
#: The warning (and log record) of a sync whose dangling links could not be read (a store error): not the run's error
DANGLING_UNREAD = "the links left naming no note could not be read"
#: The warning (and log record) of a sync whose dangling-link check the run's deadline cut: what it found so far
DANGLING_CUT = "the check of the links left naming no note was cut at the deadline: %d found so far"


def access_version(source: Source, warnings: list[dict[str, str]], said: str, saved: str) -> str | None:
    """The access file's ETag now, one HEAD ("" when there is none); None when the source did not answer, with a
    warning (``said`` what was not done, ``saved`` when a save is then missed until its event or the next sync)."""
    try:
        now = head(source, getattr(source, "prefix", "") + ACCESS_FILE)
    except SourceError as exc:
        warnings.append({"path": ACCESS_FILE, "reason": f"{said} ({exc}): saved {saved}, it applies with its event "
                         "or the next sync"})  # fmt: skip
        return None
    return now.etag if now is not None else ""


def dangling_links(
    store: Store,
    lost: Collection[str],
    written: Mapping[str, Sequence[str]],
    shown: int = DANGLING_SHOWN,
    stop_at: Deadline | None = None,
) -> tuple[int, list[dict[str, str]], bool]:
    """The wiki-links that name no indexed note, among the links of the notes ``written`` (path → their link keys)
    and the links of every indexed note to one of the keys ``lost`` (a note deleted or renamed: its path's keys; a
    title or alias a note no longer has): how many (a note's link to a key counted once), the first ``shown`` by
    linking note and key, ``{"path": ..., "link": ...}``, and whether ``stop_at`` cut the check. A link resolves as
    the graph resolves it (:func:`kbsearch.links.resolve`: its path, a tail of it, a title, an alias) among every
    indexed note, whatever its groups: a link to a restricted note is not dangling. Scrolls of first chunks: those
    linking to ``lost``, then those the links could name (none when there is nothing to check). No page is asked
    for once ``stop_at`` has passed: the check is then cut, and counts only the links whose keys it resolved (the
    links it read to ``lost`` so far, and its targets' requests of 512 keys that were read to their end)."""
    if not lost and not any(written.values()):
        return 0, [], False
    old = not store.metadata().get(GRAPH_KEYS_ONLY)
    pairs = {(path, key) for path, keys in written.items() for key in keys}
    ordered = sorted(lost)
    linking: list[dict[str, Any]] = [{"filter": {"should": graph_clauses(LINK_KEY, ordered[i : i + 512], old)}}
                                     for i in range(0, len(ordered), 512)]  # fmt: skip
    cut = False
    try:
        for payload in _scrolled(store, linking, ["path", GRAPH_FIELD, OLD_GRAPH_FIELDS[LINK_KEY]], 1024, stop_at):
            pairs |= {(payload["path"], key) for key in stored_keys(payload, LINK_KEY) if key in lost}
    except _CheckCut:
        cut = True
    wanted = sorted({unanchored(key) for _, key in pairs})  # a key from the root: asked as its whole path
    notes: list[Linkable] = []
    resolved: set[str] = set()
    fields = ["path", "title", GRAPH_FIELD, OLD_GRAPH_FIELDS[PATH_KEY], OLD_GRAPH_FIELDS[NAME_KEY]]
    for i in range(0, len(wanted) if not cut else 0, 512):
        keys = wanted[i : i + 512]
        named = {"filter": {"should": [*graph_clauses(PATH_KEY, keys, old), *graph_clauses(NAME_KEY, keys, old)]}}
        try:
            for payload in _scrolled(store, [named], fields, 1024, stop_at):
                note = linkable(payload)
                if note is not None:
                    notes.append(note)
        except _CheckCut:
            cut = True
            break
        resolved.update(keys)
    by_key = keyed(notes)
    # a key many links name is answered once (a key from the root naming no note asked every namesake per link)
    names = {key: names_a_note(key, by_key.get(unanchored(key), ())) for key in {key for _, key in pairs}}
    dangling = sorted(p for p in pairs if unanchored(p[1]) in resolved and not names[p[1]])
    return len(dangling), [{"path": path, "link": key} for path, key in dangling[:shown]], cut


#: Metadata key of the index: what the last full sync said of the access settings, ``{"digest", "since"}``
#: (:meth:`Indexer._fold_access_warnings`)
ACCESS_WARNED = "access_warned"
#: Metadata key of the index: the last count of its dangling links (:func:`dangling_total`), ``{"count", "notes",
#: "resolve"}``, ``resolve`` the :data:`~kbsearch.links.RESOLVE_VERSION` it was made with, ``notes`` a digest of the indexed notes' paths and versions it was made over (None when the run that made it had
#: written: the next run counts again), so that a run over the same notes reports it unread
DANGLING_RECORD = "dangling_links_counted"
#: The warning of a run whose count of every dangling link could not be made (a store error, or its deadline)
DANGLING_UNCOUNTED = "the wiki-links of the whole index naming no note could not be counted"


def dangling_total(store: Store, stop_at: Deadline | None = None) -> int | None:
    """How many wiki-links of the whole index name no indexed note (a note's link to a key counted once), resolved
    as :func:`dangling_links` resolves them, among every note whatever its groups: one scroll of every note's first
    chunk (1,024 a page), its graph keys kept in memory (a few a note); a note is made a :class:`Linkable` only
    when a link's key is one of its own. None when ``stop_at`` passed before its last page."""
    requests: list[dict[str, Any]] = [{"filter": {"must": [{"key": "chunk_index", "match": {"value": 0}}]}}]
    fields = ["path", "title", GRAPH_FIELD, *(OLD_GRAPH_FIELDS[kind] for kind in (PATH_KEY, NAME_KEY, LINK_KEY))]
    by_key: dict[str, list[dict[str, Any]]] = {}
    links: list[tuple[str, str]] = []
    try:
        for payload in _scrolled(store, requests, fields, 1024, stop_at):
            merged = payload.get(GRAPH_FIELD)
            if isinstance(merged, list):  # one pass over the note's graph keys (p:, n:, l:)
                named = {k[2:] for k in merged if isinstance(k, str) and k[:2] in (PATH_KEY, NAME_KEY)}
                linked = {k[2:] for k in merged if isinstance(k, str) and k[:2] == LINK_KEY}
            else:  # a note a store made before graph_keys, not rewritten yet: its old fields
                named = {*stored_keys(payload, PATH_KEY), *stored_keys(payload, NAME_KEY)}
                linked = set(stored_keys(payload, LINK_KEY))
            for key in named:
                by_key.setdefault(key, []).append(payload)
            links.extend((payload["path"], key) for key in linked)
    except _CheckCut:
        return None
    made: dict[str, Linkable | None] = {}
    answered: dict[str, bool] = {}

    def names(key: str) -> bool:  # whether a link's key names a note: a key asked by many links is answered once
        if key not in answered:
            found = (made[p["path"]] if p["path"] in made else made.setdefault(p["path"], linkable(p))
                     for p in by_key.get(unanchored(key), ()))  # fmt: skip
            answered[key] = names_a_note(key, (note for note in found if note is not None))
        return answered[key]

    return sum(1 for _, key in links if not names(key))


class _CheckCut(Exception):
    """:func:`_scrolled`'s ``stop_at`` passed before its next page was asked for."""


def _scrolled(
    store: Store, requests: list[dict[str, Any]], fields: list[str], page: int, stop_at: Deadline | None = None
) -> Iterator[dict[str, Any]]:
    """The payloads (``fields`` of them) of the points each filter request selects, page by page; a point without
    a path is none of a note's. With ``stop_at``: :class:`_CheckCut` instead of a page asked for after it."""
    for request in requests:
        request |= {"limit": page, "with_payload": {"include": fields}}
        seen: set[str] = set()
        while True:
            if stop_at is not None and stop_at.remaining() <= 0:
                raise _CheckCut
            points, offset = store.scroll(request, 30.0)
            for point in points:
                payload = point.get("payload") or {}
                if isinstance(payload.get("path"), str):
                    yield payload
            if next_page(offset, seen) is None:
                break
            request["offset"] = offset


def name_keys_of(store: Store, paths: Sequence[str]) -> set[str]:
    """The title and alias keys (``n:``, :func:`kbsearch.links.name_keys`) of these indexed notes' first chunks."""
    ordered = sorted(paths)
    requests: list[dict[str, Any]] = [{"filter": {"must": [{"key": "chunk_index", "match": {"value": 0}},
                                                           paths_filter(ordered[i : i + 1024])["must"][0]]}}
                                      for i in range(0, len(ordered), 1024)]  # fmt: skip
    fields = ["path", GRAPH_FIELD, OLD_GRAPH_FIELDS[NAME_KEY]]
    return {key for payload in _scrolled(store, requests, fields, 1024) for key in stored_keys(payload, NAME_KEY)}


def stamp_links(store: Store, keys: Collection[str], generation: int, metadata: dict[str, Any]) -> None:
    """Give ``generation`` (:data:`~kbsearch.qdrant.query.LINKS_AT`) to every chunk of every note whose links name
    one of ``keys`` (its first chunk's ``l:`` graph keys; a note a store made before has not rewritten, by its old
    field too): a search holding link targets recorded before knows them stale for that note's links. A link from
    the root (``[[../Plan]]``: the key ``/plan``, adv38) names the note by its whole path: its notes are found
    under the anchored key too (they were not: a warm search kept showing it for a minute, rev38a)."""
    ordered = sorted({*keys, *(ROOT + key for key in keys if not key.startswith(ROOT))})
    old = not metadata.get(GRAPH_KEYS_ONLY)
    requests: list[dict[str, Any]] = [{"filter": {"should": graph_clauses(LINK_KEY, ordered[i : i + 512], old)}}
                                      for i in range(0, len(ordered), 512)]  # fmt: skip
    paths = sorted({payload["path"] for payload in _scrolled(store, requests, ["path"], 1024)})
    if paths:
        store.set_payloads([(paths, {LINKS_AT: generation})])


def unnamed_links(store: Store, restricted: Mapping[str, Any], named: Callable[[str], bool]) -> set[str]:
    """The keys of the indexed notes' links that name no note (neither a key of ``restricted`` nor one ``named``
    holds, the public notes' keys): whether such a link is shown depends on whether its caller is hidden a note at
    all (:func:`kbsearch.access.visible_links`), so when the distinct group sets of the restricted notes change
    (:func:`kbsearch.access.group_sets`: the first restricted note, a note of new groups, the last of some gone),
    the notes holding one are given the new generation too. One scroll of every note's first chunk."""
    requests: list[dict[str, Any]] = [{"filter": {"must": [{"key": "chunk_index", "match": {"value": 0}}]}}]
    fields = ["path", GRAPH_FIELD, OLD_GRAPH_FIELDS[LINK_KEY]]
    return {key for payload in _scrolled(store, requests, fields, 1024) for key in stored_keys(payload, LINK_KEY)
            if key not in restricted and not named(key)}  # fmt: skip


def stamped_unrecorded(metadata: dict[str, Any]) -> int:
    """The generation a sync gave notes and never recorded (it stopped between, :data:`LINKS_PENDING`); 0 when none."""
    pending = links_generation(metadata.get(LINKS_PENDING))
    return pending if pending > links_generation(metadata.get(LINKS_GENERATION)) else 0


def record_restricted_links(
    store: Store,
    links_lock: LinksLock,
    unknown: set[str],
    keys: set[str] | None = None,
    wrote: Collection[str] = (),
    since: int | None = None,
    forgotten: Collection[str] = (),
) -> bool:
    """Make the recorded restricted link targets (``RESTRICTED_LINKS``: link key → groups, for the keys that name
    only notes that are not public, by path, title or alias) what the index holds now; True when it was written.
    ``unknown``: notes in the KB the index does not hold, readable by nobody. ``keys`` None: the whole list,
    derived from every indexed note (a full sync, an access file change). Else only these keys: each is set from
    the notes that carry it, or dropped when none does; a list never recorded is left for a full sync. A key of the
    public notes' filter (``LINK_NAMES``) that no note carries any more (a public note deleted or moved) has the
    filter rebuilt from every indexed note: else a link to it stayed shown as a note's until a full sync.

    The list is one value that several writers rewrite (event batches applied at once, a full sync): the carriers
    are read again, and the list written, under ``links_lock`` (the ``links`` lease), after the writer's own
    writes to the index. So whichever writer goes last reads an index that holds every other writer's notes,
    and no entry is lost. A list already right is not written (a batch's keys that are right take no turn; the
    whole list is read once, under the lease).

    A search caches the metadata (Qdrant Cloud: a minute), and reads each hit's ``links_at``
    (:data:`~kbsearch.qdrant.query.LINKS_AT`) in its one query: when a write changes what the record says of a key
    recorded before, the generation (``LINKS_GENERATION``) goes up, and every note whose links name such a
    key is given it first, then the record is written. ``wrote``: the notes this run wrote, each with the
    generation it read at its start (``since``); when another writer recorded a newer one meanwhile, they are given
    the current one too (a note written after that writer gave its generation to the notes then indexed). A
    writer that finds a generation said (``LINKS_PENDING``) and never recorded derives the whole list, whatever its
    ``keys``: the stopped writer's keys are not known, and any generation recorded above its stamps is trusted.
    ``forgotten`` (a whole list's write): keys of notes gone from the KB; one the recorded public notes' filter held
    and no note carries any more changed too (a filter cannot be compared key by key)."""

    gone_keys = forgotten if keys is None else keys  # (a batch deriving the whole record: its keys may be gone)

    def wanted(keys: set[str] | None = keys) -> tuple[dict[str, Any], dict[str, Any] | None, set[str]]:
        """(the metadata as recorded, the values as they should be, None when there are none to update; the keys
        whose record changes, of a list recorded before)."""
        carriers, names = link_carriers(store, keys)
        carriers.update((path, None) for path in unknown if path not in carriers)
        restricted, public = restricted_links(carriers.items(), names)
        metadata = store.metadata()
        recorded = metadata.get(RESTRICTED_LINKS)
        if keys is None:
            before = recorded if isinstance(recorded, dict) else None  # none recorded: searches hid every link
            changed = (
                {k for k in {*before, *restricted} if before.get(k) != restricted.get(k)}
                if before is not None
                else set()
            )
            named = KeyFilter.from_json(metadata.get(LINK_NAMES)) if before is not None else None
            changed |= {k for k in gone_keys if named is not None and k in named and k not in public
                        and k not in restricted}  # fmt: skip
            # a public note new to the filter (the event that added it lost): a link to it was one to no note
            changed |= {k for k in public if named is not None and k not in named}
            if (
                before is not None
                and named is not None
                and group_sets(before.values()) != group_sets(restricted.values())
            ):
                changed |= unnamed_links(store, restricted, public.__contains__)
            return metadata, {RESTRICTED_LINKS: dict(restricted), LINK_NAMES: KeyFilter.of(public).to_json(),
                              LINKS_FORMAT: LINKS_FORMAT_VERSION}, changed  # fmt: skip
        if not isinstance(recorded, dict):
            return metadata, None, set()
        out = dict(recorded)
        for key in keys:
            if key in restricted and key not in public:
                out[key] = restricted[key]
            else:  # a public note has it, or no note does any more
                out.pop(key, None)
        values: dict[str, Any] = {RESTRICTED_LINKS: out}
        named = KeyFilter.from_json(metadata.get(LINK_NAMES))
        new = [key for key in sorted(public) if named is not None and key not in named]
        gone = [key for key in sorted(keys) if named is not None and key in named and key not in public
                and key not in out]  # fmt: skip
        if named is not None and (named.count + len(new) > named.capacity or gone):
            # full (more keys would make more names of no note read as a note's, shown, which is what the filter
            # hides), or holding a key no note has any more (a filter cannot forget one): rebuilt from every
            # indexed note, sized afresh (one scroll of the first chunks). A key the filter holds by chance (~1%)
            # costs the same scroll.
            every, every_names = link_carriers(store)
            values[LINK_NAMES] = KeyFilter.of(restricted_links(every.items(), every_names)[1]).to_json()
        elif named is not None and new:
            named.add(new)
            values[LINK_NAMES] = named.to_json()
        changed = {k for k in keys if recorded.get(k) != out.get(k)} | set(new) | set(gone)
        now_named = KeyFilter.from_json(values[LINK_NAMES]) if LINK_NAMES in values else named
        if now_named is not None and group_sets(recorded.values()) != group_sets(out.values()):
            changed |= unnamed_links(store, out, now_named.__contains__)
        return metadata, values, changed

    def written(metadata: dict[str, Any], values: dict[str, Any] | None) -> bool:
        return values is None or all(metadata.get(k) == v for k, v in values.items())

    def behind(metadata: dict[str, Any]) -> bool:
        return bool(wrote) and since is not None and links_generation(metadata.get(LINKS_GENERATION)) > since

    if keys is not None:  # a batch's few keys: read once outside the lease (most batches change nothing here)
        metadata, values, _ = wanted()
        if written(metadata, values) and not behind(metadata) and not stamped_unrecorded(metadata):
            return False  # already right: nothing written, no turn taken
    with links_lock():
        # a sync stopped between its stamps and its record left the record stale for keys no one knows now: the
        # whole record is derived from the index, by an event batch too (deriving its own keys only, then recording
        # a generation above the stamps, had searches trust that stale record for the stamped notes' links)
        whole = keys is None or bool(stamped_unrecorded(store.metadata()))
        # again: another writer may have changed the index or the list meanwhile
        metadata, values, changed = wanted(None if whole else keys)
        generation = links_generation(metadata.get(LINKS_GENERATION))
        if behind(metadata):
            store.set_payloads([(sorted(wrote), {LINKS_AT: generation})])
        if values is None:
            return False
        pending = stamped_unrecorded(metadata)  # a sync stopped between its stamps and its record: rise to them
        if written(metadata, values):
            if not pending:
                return False
            values = {}
        if changed:  # the notes whose links name a changed key first, then the record: never a stale record trusted
            # the time in ms when that is larger: it rises across a rebuild's new collection too (its record starts
            # from none, while a search may still hold the old collection's)
            generation = max(generation + 1, int(time.time() * 1000), pending)
            store.merge_metadata({LINKS_PENDING: generation})  # said first: a sync stopped after it is healed
            stamp_links(store, changed, generation, metadata)
            values[LINKS_GENERATION] = generation
        elif pending:
            values[LINKS_GENERATION] = pending
        # merged, not the whole record replaced from ``metadata``: another writer (the scheduled sync recording
        # BM25's reading, the reach groups) may have recorded a key since it was read
        store.merge_metadata(values)
    return True


def embed_hash(signature_id: str, embed_text: str) -> str:
    """What a chunk's dense vector depends on: the model signature and the embedded text."""
    import hashlib

    return hashlib.sha256(f"{signature_id}\0{embed_text}".encode()).hexdigest()[:24]


@dataclass
class ChangeReport(SyncReport):
    """A :class:`SyncReport` of an event-driven run, with what the events were and what became of them."""

    events: int = 0  # changes received (after ignored keys)
    keys: int = 0  # distinct notes among them
    duplicates: int = 0  # changes repeated or superseded within the batch
    stale: int = 0  # no newer than the last applied event of their note: nothing to do (replays, late arrivals)
    superseded: int = 0  # a later event of the note was claimed while this run wrote it: read and applied again
    chunks_reused: int = 0  # chunks of changed notes whose text did not change: their stored vector kept
    ignored: list[dict[str, str]] = field(default_factory=list)  # keys that can never be notes, with the reason
    poison: list[dict[str, str]] = field(default_factory=list)  # messages that are no event at all
    failed_messages: list[str] = field(default_factory=list)  # SQS message ids to retry (batchItemFailures)
    failed_paths: list[str] = field(default_factory=list)
    lag_s: list[float] = field(default_factory=list)  # per change that changed the index: event → searchable
    #: changes applied whose event time cannot be a lag (year 1, the future: events.lag_s): their lag is counted
    #: from their message's sending, or not at all
    times_refused: int = 0


class _ReadTracking:
    """The source, remembering which notes could not be read (an S3 error: retried), as opposed to notes that
    were read and are bad (skipped with a reason, like a full sync does)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.uri = source.uri
        self.unreadable: set[str] = set()

    def list(self) -> Any:
        return self.source.list()

    def read(self, obj: SourceObject) -> bytes:
        try:
            return self.source.read(obj)
        except SourceError:
            self.unreadable.add(obj.path)
            raise

    def read_path(self, path: str) -> bytes:
        return self.source.read_path(path)

    def root_names(self) -> Iterable[str]:
        return self.source.root_names()


def _until(items: Iterable[str], stop_at: Deadline | None, doing: str) -> Iterator[str]:
    """``items`` as they come, until ``stop_at``: a listing read page by page stops asking once the run's time is
    up (SourceError: the notes waiting on it are retried) instead of holding the run past its deadline."""
    for count, item in enumerate(items):
        if stop_at is not None and stop_at.expired:
            raise SourceError(f"{doing} ran past the run's deadline after {count} names; the notes are retried")
        yield item


#: How many times an event batch applies a note again because a later event of it was claimed while it wrote.
SUPERSEDED_ROUNDS = 5


class ChangeSync:
    """Applies changes (S3 events, or a watched folder's saves) to the index: only their keys are read (a HEAD,
    then a GET of what changed; never a listing of the notes), removed notes are deleted, and of a changed note only the chunks
    whose embedded text changed are embedded (the others keep their stored vector).

    Per note, the latest change by S3 ``sequencer`` wins; a change no newer than the one last applied (``sequencers``)
    is a no-op, so replays and late arrivals change nothing. A sequencer is claimed in the log before its note is
    written, and the log read again after: a later claim made meanwhile (another batch, which may have written
    first) has the note read and applied again (:meth:`_reapply_superseded`); a note not written gives its claim
    back (:meth:`_give_back`). What is applied is the key's *current* state (S3 is
    read-after-write consistent): a late ``Created`` of a deleted note finds no object and deletes nothing more. A
    note that cannot be read, a provider failure or a storage failure fails that note's messages (retried by SQS);
    the others complete. A change of the KB-root access file gives every indexed note its groups (a payload
    update); the restricted link targets follow every change of a note's groups in the same run."""

    def __init__(
        self,
        source: Source,
        store: Store,
        embedder: Embedder | None,
        options: SyncOptions | None = None,
        sequencers: Any = None,
        links_lock: Callable[[], AbstractContextManager[Any]] | None = None,
        parser: ParsingProcess | None = None,
    ) -> None:
        self.tracking = _ReadTracking(source)
        self.source = source
        self.indexer = Indexer(self.tracking, store, embedder, options, links_lock=links_lock, parser=parser)
        self.store = store
        self.sequencers = sequencers
        self._touched: set[str] = set()  # the batch's notes (read: present or gone)
        self._names: set[str] = set()  # the link keys of their titles and aliases, before and after the batch
        self._present: set[str] = set()  # the batch's notes that are in the KB now
        #: per note this batch applied, the ETag it read and wrote (None: applied as gone): what a check after a full
        #: sync that ended during the batch compares with the note now (:meth:`_reapply_after_sync`)
        self._applied: dict[str, str | None] = {}
        #: held while the restricted link targets are rewritten (run_changes: a short lease in the lease table)
        self.links_lock: Callable[[], AbstractContextManager[Any]] = links_lock or contextlib.nullcontext
        self.kind = "events"  # what the collection's last-sync record says ran (``watch`` under kbsearch serve)
        self._changed: set[str] = set()  # the batch's notes whose points this run wrote or deleted (lag samples)
        self._rules_claim = ""  # the access file's sequencer in the log when the batch began

    def apply(
        self,
        changes: list[Change],
        stop_at: Deadline | None = None,
        call_deadline: Deadline | None = None,
        report: ChangeReport | None = None,
    ) -> ChangeReport:
        from kbsearch.events import latest_per_key, newer
        from kbsearch.sequencers import abandoned

        started, began = time.monotonic(), time.time()
        self._changed, self._applied = set(), {}
        report = report or ChangeReport(source=self.source.uri, collection=self.store.collection,
                                        dense=self.indexer.embedder is not None)  # fmt: skip
        report.events += len(changes)
        self._names = set()
        latest, report.duplicates = latest_per_key(changes, self._name)
        report.keys = len(latest)
        failed: set[str] = set()
        paths = {change.path for change in latest.values()}
        applied: dict[str, str] = {}
        news: dict[str, list[Change]] = {}  # per path, the changes claimed in the log before the write
        try:
            self.indexer._embedding_signature(report)
            # the access file's claim too: a later one once the notes are written has them applied again
            # (_reapply_superseded)
            names = sorted({*latest, ACCESS_FILE})
            claims = self.sequencers.claims(names) if self.sequencers is not None and latest else {}
            self._rules_claim = claims.get(ACCESS_FILE, ("", None))[0]
            applied = {name: held for name, (held, _) in claims.items()}
            todo: dict[str, Change] = {}  # per path: what the source holds there now is applied (_apply_current)
            now = time.time()
            for name, change in latest.items():
                held, claimed_at = claims.get(name, ("", None))
                # claimed before the write (conditional: only a sequencer later than the logged one); one no later
                # than the logged one, or a later one claimed meanwhile, makes it stale; this event's own claim
                # left by a batch killed before its write (abandoned) does not
                current = held and not newer(change.sequencer, held)
                if (current and not abandoned(held, claimed_at, change.sequencer, now)) or not self._record(change):
                    report.stale += 1
                else:
                    todo.setdefault(change.path, change)
                    news.setdefault(change.path, []).append(change)
            done = self._apply_current(report, todo, failed, stop_at or Deadline(), call_deadline)
            self._reapply_superseded(report, todo, news, done, failed, stop_at or Deadline(), call_deadline)
            metadata = self._catch_up_reach(report)
            if self._reapply_after_sync(report, todo, done, failed, began, metadata, stop_at or Deadline(),
                                        call_deadline):  # fmt: skip
                self._catch_up_reach(report)  # the notes written again, with the groups recorded now
            record_sync(self.store, report, self.kind)
            self._record_lag(report, [todo[p] for p in done if p in self._changed])
        except LeaseLostError:  # only a sync's re-apply of claimed notes holds a lease (a batch's store has none):
            report.incomplete = True  # the lease's stop, no storage failure: the sync's report names the lost lease
            failed |= paths
        except StoreError as exc:
            report.error = str(exc) if isinstance(exc, SchemaMismatchError) else f"index storage failed: {exc}"
            report.incomplete = True
            failed |= paths
            logger.error("the index cannot be written; the batch is retried", extra={"error": report.error})
        except AccessFileError as exc:  # as a full sync: nothing changes (no note indexed, no group relaxed)
            report.error = str(exc)
            report.incomplete = True
            failed |= paths
            logger.error("the access file cannot be used; nothing changed, the batch is retried",
                         extra={"error": report.error})  # fmt: skip
        except Exception as exc:  # the sequencer log (DynamoDB) or anything unforeseen: retry the whole batch
            report.error = f"event run failed: {type(exc).__name__}: {str(exc)[:200]}"
            report.incomplete = True
            failed |= paths
            logger.exception("event run failed; the batch is retried")
        finally:
            report.duration_ms += int((time.monotonic() - started) * 1000)
        self._give_back([c for p in sorted(failed & set(news)) for c in news[p]], applied)
        report.failed_paths = sorted(failed)
        report.failed_messages = sorted({c.message_id for c in changes if c.path in failed and c.message_id})
        return report

    def _access_rules(self, stop_at: Deadline | None = None, paths: Iterable[str] = ()) -> FolderRules:
        """The access file's folder rules as they are now (one read of one key, no listing of the notes): a note that an
        event brings in gets the groups a full sync would give it. An unusable access file fails the batch's notes
        (they are retried, as a full sync refuses to run, and none is indexed; its deletions are applied: they widen
        nothing); an event of the access file itself applies it to every indexed note (:meth:`_apply_rules`). An
        access file under another name at the root (one listing of the root alone) fails them too, as it stops a
        full sync: its rules would not reach the notes events bring. Read only when the batch has a note to index
        or the access file's own event (:meth:`_apply_current`). A folder named ``_access.yaml`` (or a link to one)
        holds notes, not rules, as a full sync's listing has it (there its notes are listed under it and no entry is
        the access file): no rules, its notes indexed (the read of the folder failed every batch with a note to
        index, while full syncs indexed them). An access file in a folder above one of ``paths`` (the notes the batch
        indexes, as their keys spell them: ``hr/_access.yaml`` for ``hr/pay.md``; one HEAD per distinct folder, and
        one more for each of its NFC and NFD spellings that differs from the key's, as a full sync reads them as one
        folder) fails them too, as it stops a full sync: its rules are not read, and the notes it was written to
        restrict would be indexed public."""
        root_file = False

        def noting(names: Iterable[str]) -> Iterator[str]:  # whether the root listing gives the name as a file
            nonlocal root_file
            for name in names:
                root_file = root_file or name == ACCESS_FILE
                yield name

        refuse_mistaken_access_file(noting(_until(self.source.root_names(), stop_at, "listing the KB root")))
        prefix = getattr(self.source, "prefix", "")
        above = {path.rsplit("/", n)[0] for path in paths for n in range(1, path.count("/") + 1)}
        # the key's own spelling and both forms: a key can mix them (a Mac's NFD folder, an NFC one added below it)
        folders = sorted(
            {g for f in above for g in (f, unicodedata.normalize("NFC", f), unicodedata.normalize("NFD", f))}
        )
        for folder in _until(folders, stop_at, "looking for access files in the notes' folders"):
            if head(self.source, f"{prefix}{folder}/{ACCESS_FILE}") is not None:
                refuse_access_file_below_root([unicodedata.normalize("NFC", f"{folder}/{ACCESS_FILE}")])  # as listed
        key = prefix + ACCESS_FILE  # a GET by key: read_path would list when absent
        try:
            raw = self.source.read(SourceObject(path=ACCESS_FILE, key=key, etag="", size=0))
        except NoteUnreadable:
            if not root_file:  # a folder, or a link to one: the root listing leaves it out of its files
                return FolderRules()
            raise  # a FIFO, a dangling link: the full sync stops on it too
        except SourceError as exc:
            if str(exc).startswith("no note"):
                return FolderRules()
            raise
        return FolderRules.parse(raw)

    def _name(self, change: Change) -> str:
        """The name a change's sequencer is logged under: its key within the KB (sequencers of different keys are
        not comparable, and two keys can spell one note path in two Unicode forms); for a key already in NFC, the
        note's path (what the log held before twins were told apart)."""
        prefix = getattr(self.source, "prefix", "")
        return change.key[len(prefix) :] if prefix and change.key.startswith(prefix) else change.key or change.path

    def _record(self, change: Change) -> bool:
        """Claims ``change``'s sequencer in the log (before its note is written): False when a later one is claimed."""
        return self.sequencers is None or self.sequencers.put(self._name(change), change.sequencer)

    def _give_back(self, changes: list[Change], applied: dict[str, str]) -> None:
        """The claims of notes this batch failed to write are given back (the sequencer logged before, read at the
        batch's start, is put back if the claim is still this batch's): the retry of the message is then no
        stale event. Putting back an older sequencer than the one logged meanwhile is never wrong (an event it
        lets through applies what the source holds now); a later claim is left as it is. A give-back that fails
        is logged: the claim stays, and the retry is dropped as stale until the claim is abandoned
        (:func:`kbsearch.sequencers.abandoned`)."""
        from kbsearch.events import sequencer_key

        for change in changes:
            if self.sequencers is None or not change.sequencer:
                continue
            name = self._name(change)
            if sequencer_key(applied.get(name, "")) == sequencer_key(change.sequencer):
                continue  # an abandoned claim applied again: left as it is (put back, it would look fresh)
            try:
                self.sequencers.release(name, change.sequencer, applied.get(name, ""))
            except Exception as exc:  # the log unreachable: the claim stays (see above)
                logger.warning(
                    "a failed note's claim could not be given back; its retry applies it once the claim is abandoned",
                    extra={"path": change.path, "error": f"{type(exc).__name__}: {str(exc)[:200]}"},
                )

    def _reapply_superseded(
        self,
        report: ChangeReport,
        todo: dict[str, Change],
        news: dict[str, list[Change]],
        done: list[str],
        failed: set[str],
        stop_at: Deadline,
        call_deadline: Deadline | None,
    ) -> None:
        """Once the notes are written, the log is read again: a note of which a later event was claimed meanwhile
        may have been written by that event's batch before this batch's write landed (this batch read the older
        version first), so what the source holds now is read and applied again (that read comes after the other
        claim, so it is as new as the other batch's event at least); and so on while claims keep coming, at most
        :data:`SUPERSEDED_ROUNDS` times, after which the note's messages are retried (:meth:`_give_back`)."""
        from kbsearch.events import newer

        if self.sequencers is None:
            return
        seen = {self._name(c): c.sequencer for p in done for c in news.get(p, []) if c.sequencer}
        rules_seen = seen.get(ACCESS_FILE, self._rules_claim)
        check = [p for p in done if p in news]
        for _ in range(SUPERSEDED_ROUNDS):
            names = sorted({self._name(c) for p in check for c in news[p] if c.sequencer})
            if not names:
                return
            # the notes just written got their groups from the rules this batch read: a batch that applied a later
            # access file meanwhile (claimed after this one began) gave every indexed note its groups, these
            # perhaps before they were written (they kept the older rules' groups until the next sync)
            indexed = [p for p in check if p in self._present]
            held = self.sequencers.get(sorted({*names, ACCESS_FILE}) if indexed else names)
            again: dict[str, Change] = {}
            for path in check:
                for change in news[path]:
                    name = self._name(change)
                    if change.sequencer and newer(held.get(name, ""), seen[name]):
                        seen[name] = held[name]
                        again[path] = todo[path]
            if indexed and newer(held.get(ACCESS_FILE, ""), rules_seen):
                rules_seen = held[ACCESS_FILE]
                again.update({p: todo[p] for p in indexed})
            if not again:
                return
            report.superseded += len(again)
            check = self._apply_current(report, again, failed, stop_at, call_deadline)
        failed.update(check)  # claims still coming: retried (the later claims' batches apply what is there)
        logger.warning("notes claimed again on every re-read; their events are retried", extra={"paths": check})

    def _reapply_after_sync(
        self,
        report: ChangeReport,
        todo: dict[str, Change],
        done: list[str],
        failed: set[str],
        began: float,
        metadata: dict[str, Any],
        stop_at: Deadline,
        call_deadline: Deadline | None,
    ) -> bool:
        """A batch slower than a whole full sync: it read a note's older version, a newer one was saved (its event
        failed back while the sync held the lease: claimed nothing), the sync read and wrote the newer one and
        ended, then this batch wrote the older one: neither the sync's re-apply of claimed notes (it ran before
        this write) nor :meth:`_reapply_superseded` (no later claim) could see it, and the index held the older
        version until that event's retry or the next sync (rel37). So, when a full sync ended after this batch began
        (:data:`SYNC_ENDED`, read from the metadata :meth:`_catch_up_reach` reads anyway: no call on the common
        path; within the clocks' slack, ``CLOCK_SLACK_S``: rel39), each note this batch wrote is looked up again (one HEAD each, only then) and one whose ETag moved
        since this batch read it is read and applied again (``superseded``), at most :data:`SUPERSEDED_ROUNDS`
        times, then its messages are retried. True when a note was applied again."""
        from kbsearch.lease import CLOCK_SLACK_S
        from kbsearch.sources import current as current_entry

        ended = metadata.get(SYNC_ENDED)
        check = [p for p in done if p in todo and p != ACCESS_FILE]
        # the end is the sync's clock, ``began`` this batch's: another machine's (a laptop's kbsearch index beside
        # the Lambdas) may be seconds behind, so a record up to the clocks' slack before this batch began counts
        # (a batch that began just after a sync ended looks its notes up needlessly: harmless, a HEAD each)
        if not check or not isinstance(ended, int | float) or ended < began - CLOCK_SLACK_S:
            return False
        again_any = False
        for _ in range(SUPERSEDED_ROUNDS):
            moved: dict[str, Change] = {}
            for path in check:
                try:
                    now = current_entry(self.source, todo[path].key)
                except SourceError:
                    continue  # not looked up: as before this check (the next sync reads it)
                if (now.etag if now is not None else None) != self._applied.get(path):
                    moved[path] = todo[path]
            if not moved:
                return again_any
            again_any = True
            report.superseded += len(moved)
            logger.warning("notes saved again while a full sync ran during this batch: applied as they are now",
                           extra={"paths": sorted(moved)})  # fmt: skip
            check = self._apply_current(report, moved, failed, stop_at, call_deadline)
        failed.update(check)  # still moving: retried
        return again_any

    def _catch_up_reach(self, report: ChangeReport) -> dict[str, Any]:
        """A batch never records groups of ``reach`` (a full sync does, :meth:`Indexer._record_reach`); but one that
        read the recorded groups before a full sync recorded more wrote its chunks with fewer: once its writes are
        done, public chunks are given the groups and group-set tokens recorded now, restricted chunks the tokens of
        the sets that share one of their groups (only chunks lacking one are written). Every batch does so, whether
        it wrote or not, so that chunks an earlier batch wrote and then died before catching up (killed, its
        store failing at the catch-up) are given them by the next batch, its own retry included (which finds its
        note written and writes nothing): one metadata read and a filtered scroll of one point each for public and
        restricted chunks when none lacks anything."""
        metadata = self.store.metadata()
        recorded, sets = sorted(reach_groups(metadata)), sorted(reach_sets(metadata))
        give_reach(self.store, recorded, sets)
        self.indexer._repair_restricted_reach(sets)
        return metadata

    def _apply_rules(self, report: ChangeReport, stop_at: Deadline) -> bool:
        """The access file changed (created, edited or deleted): every indexed note's groups under the rules as
        they are now, as a full sync gives them: a payload update of the notes whose groups change (nothing is
        embedded; a note is read only when the index holds it without groups), then the restricted link targets
        recorded afresh. False when the deadline cut it short (the event is retried; what was updated is right)."""
        from kbsearch.sources import current

        indexer = self.indexer
        state = self.store.indexed_state()
        indexer._state = state
        indexer._access = {p: (list(a[0]) if (a := st.access()) else None) for p, st in state.items()}
        unknown: list[SourceObject] = []
        for path in sorted(state):
            if stop_at.remaining() <= 0:
                report.incomplete = True
                indexer._write_access()  # what was decided is written: the retry finds it done
                return False
            if not indexer._refresh_access(report, path, state[path]):
                try:  # indexed before access scopes, or an update cut short: read it, as a full sync does (the key
                    # it lists at the path, whichever Unicode form it is in)
                    obj = current(self.source, getattr(self.source, "prefix", "") + path)
                except SourceError as exc:
                    indexer._skip(report, path, str(exc))  # readable by no restricted caller meanwhile
                    continue
                if obj is not None:
                    unknown.append(obj)
        indexer._reread_access(report, unknown, state, stop_at)  # (writes the groups gathered above too)
        self._record_restricted_links(every_note=True)
        for said in indexer._rules.idle(state):  # a slip in the file just saved: said by the run its save triggers
            report.warnings.append({"path": ACCESS_FILE, "reason": said})
        return not report.incomplete

    def _rules_version(self, report: ChangeReport) -> str | None:
        """The access file's ETag now (:func:`access_version`)."""
        return access_version(self.source, report.warnings, "not looked up", "while this batch applied it")

    def _rules_kept(self, report: ChangeReport, before: str | None, stop_at: Deadline) -> bool:
        """After this batch gave every note its groups: whether the access file is still the version it read
        (``before``, looked up just before the read). A rules batch slower than a whole full sync wrote its older
        rules' groups after the sync had applied newer ones, and the newer version's event, failed back while the
        sync held the lease, claimed nothing (adv36b, rev36d): nothing else would apply them until its retry or the
        next sync. Saved since: the rules as they are now are read and applied again (``superseded``), at most
        :data:`SUPERSEDED_ROUNDS` times; False (the event is retried) when they keep changing, cannot be used, or
        the deadline cut an apply short."""
        for _ in range(SUPERSEDED_ROUNDS):
            now = self._rules_version(report)
            if before is None or now is None or now == before:
                return True  # unchanged, or not looked up (a warning says so)
            before = now
            report.superseded += 1
            logger.warning("the access file was saved while its batch applied it; applied again as it is now")
            try:
                self.indexer._rules = self._access_rules(stop_at)
            except (AccessFileError, SourceError) as exc:  # as a batch of it: the notes keep the groups they have
                report.error = str(exc) if isinstance(exc, AccessFileError) else f"access rules not read: {exc}"
                report.incomplete = True
                return False
            if not self._apply_rules(report, stop_at):
                return False
        return False

    def _record_restricted_links(self, every_note: bool = False) -> None:
        """Bring the restricted link targets (collection metadata, see :func:`kbsearch.access.visible_links`) up
        to date in this run. ``every_note`` (an access file change): the list is derived afresh from every indexed
        note. Else the keys of this batch's notes (whatever changed: a retry repairs what a failed attempt left):
        each is set from the notes that carry it in the index now, and a key no note carries any more (a deleted
        or moved note's) is dropped, so a link to a note gone answers as a link to a note that never existed. The
        batch's notes that are in the KB but not indexed (skipped) count as readable by nobody. A list never
        recorded is left for the next full sync (meanwhile searches hide every link). See
        :func:`record_restricted_links` for the lease batches take turns on."""
        unknown = self._present - set(self.indexer._access)  # notes in the KB the index does not hold (skipped)
        wrote, since = list(self.indexer._names_written), self.indexer._links_generation
        if every_note:
            record_restricted_links(self.store, self.links_lock, unknown, wrote=wrote, since=since)
            return
        keys = {k for p in self._touched for k in path_keys(p)} | self._names
        keys |= {k for p in self._touched for k in self.indexer._names_written.get(p, ())}
        if keys:
            record_restricted_links(self.store, self.links_lock, unknown, keys, wrote, since)

    def _record_lag(self, report: ChangeReport, changes: list[Change]) -> None:
        """The lag of each change this run made searchable (a note written or deleted, the access file applied);
        a change the index already held (a late or repeated event, one the hourly sync applied first) was
        searchable before this run, so this run's time is not its lag."""
        from kbsearch.events import lag_s

        now = time.time()
        for change in changes:
            if change.event_time is None and change.sent_time is None:
                continue  # no time at all (a watched folder's save): nothing to measure, nothing refused
            lag, believed = lag_s(change, now)
            if lag is not None:
                report.lag_s.append(round(lag, 3))
            if not believed:
                report.times_refused += 1
                logger.warning("an event time that cannot be a lag", extra={
                    "path": change.path, "event_time": change.event_time, "sent_time": change.sent_time,
                    "lag_s": lag})  # fmt: skip

    def _apply_current(
        self,
        report: ChangeReport,
        todo: dict[str, Change],
        failed: set[str],
        stop_at: Deadline,
        call_deadline: Deadline | None,
    ) -> list[str]:
        """Read each note's current state and make the index hold exactly it, then apply a change of the access
        file (to every note, the ones just written included), then bring the restricted link targets up to date:
        all in this run. The paths done (not failed)."""
        from kbsearch.sources import current as current_entry

        current: dict[str, SourceObject | None] = {}
        for path, change in sorted(todo.items()):
            if path == ACCESS_FILE:
                continue
            try:  # the key a full sync indexes at this path now, whichever of its spellings the event named
                current[path] = current_entry(self.source, change.key)
            except SourceError as exc:
                failed.add(path)
                logger.warning("note not readable; its event is retried", extra={"path": path, "error": str(exc)})
        rules_read = ACCESS_FILE in todo or any(obj is not None for obj in current.values())
        # the access file's version before its rules are read: looked up again once they are applied (rel37)
        rules_tag = self._rules_version(report) if ACCESS_FILE in todo else None
        if rules_read:  # deletions alone read no rules (a replay reads nothing at all): nothing is indexed under them
            try:
                prefix = getattr(self.source, "prefix", "")  # the folders as the keys spell them (a Mac's NFD)
                indexed = [obj.key[len(prefix) :] for obj in current.values() if obj is not None]
                self.indexer._rules = self._access_rules(stop_at, indexed)
            except (AccessFileError, SourceError) as exc:  # as a full sync: no note indexed, no group relaxed; but
                # a deletion widens nothing, so it is applied (it was held back with the rest, its note searchable)
                held = {p for p, obj in current.items() if obj is not None} | ({ACCESS_FILE} & set(todo))
                failed |= held
                current = {p: obj for p, obj in current.items() if obj is None}
                rules_read = False
                report.error = str(exc) if isinstance(exc, AccessFileError) else f"access rules not read: {exc}"
                report.incomplete = True
                logger.error("the access rules cannot be used; only deletions applied, the other events are retried",
                             extra={"error": report.error, "held": len(held)})  # fmt: skip
        self.indexer._read_reach()
        state: dict[str, NoteState] = {}
        points = self.store.note_points(list(current))
        for payload, _vector in points:
            add_state(state, payload)
            # the titles and aliases the notes had: links by them may change
            self._names.update(stored_keys(payload, NAME_KEY))
        reuse = stored_vectors(points)
        # each note's groups after this run (indexer._access): what the restricted link targets follow
        self.indexer._access = {p: (list(a[0]) if (a := st.access()) else None) for p, st in state.items()}
        self._touched = set(current)
        self._present = {p for p, obj in current.items() if obj is not None}
        self._applied.update({p: (obj.etag if obj is not None else None) for p, obj in current.items()})
        absent = self._touched - self._present
        self.indexer._gone = absent.__contains__ if absent else None  # (their refusals are dropped)
        done: list[str] = []
        work: list[tuple[SourceObject, str]] = []
        for path, obj in sorted(current.items()):
            if obj is None:
                if path in state:
                    self.store.delete_note(path)
                    self._changed.add(path)
                    report.deleted += 1
                    report.chunks_deleted += state[path].points
                self.indexer._access.pop(path, None)
                done.append(path)
                continue
            report.notes_listed += 1
            kind = self.indexer._classify(obj, state.get(path))
            if kind == "unchanged":
                self.indexer._refresh_access(report, path, state[path])  # under the rules as they are now
                report.unchanged += 1
                done.append(path)
            else:  # a repair too: rewriting it reuses every vector
                work.append((obj, "updated" if kind in ("repair", "regraph") else kind))
        self.indexer._graph_keys_missing([p for p, st in state.items() if not st.graph])
        self.indexer._reuse = reuse
        self.indexer._written_ids = {}
        self.indexer._names_written, self.indexer._links_written = {}, {}
        self.indexer._state = state  # a changed note that cannot be indexed keeps its last good version
        skipped_before = {s["path"] for s in report.skipped}
        self.indexer._write_access()  # the unchanged notes' groups under today's rules
        try:
            self.indexer._index(report, work, state, stop_at, call_deadline)
            self.indexer._write_access()  # the groups of the notes that could not be indexed (their last good version)
        finally:
            self.indexer._reuse = {}
        skipped = {s["path"] for s in report.skipped} - skipped_before
        self._changed.update(self.indexer._written_ids)
        for obj, _kind in work:
            path = obj.path
            if path in self.indexer._written_ids or (path in skipped and path not in self.tracking.unreadable):
                done.append(path)
            else:  # not reached (deadline), not embedded (provider down) or not readable: retried
                failed.add(path)
        self.tracking.unreadable.clear()
        if ACCESS_FILE in todo and rules_read:
            if self._apply_rules(report, stop_at) and self._rules_kept(report, rules_tag, stop_at):
                self._changed.add(ACCESS_FILE)
                return [*done, ACCESS_FILE]  # the whole list was recorded again
            failed.add(ACCESS_FILE)
        self._record_restricted_links()
        self.indexer._old_names = self._names  # the titles and aliases the batch's notes had
        self.indexer._report_dangling(
            report, {k for p in self._touched - self._present for k in keys_naming(p)}, stop_at
        )
        return done


def _scope_of(source: Source) -> Any:
    from kbsearch.events import Scope
    from kbsearch.sources import S3Source

    if isinstance(source, S3Source):
        return Scope(source.bucket, source.prefix)
    return Scope(None, "")


#: How far past the calls' end (``call_deadline``: the run's end less 5 s) the lease table may still be asked: its
#: bookkeeping (a claim given back, the lease released, the links lease) comes after the run's last provider, S3 and
#: Qdrant call, and is what lets the next delivery or run go on; each call still ends 2 s before the run's end.
LEASE_TABLE_GRACE_S = 3.0


def lease_table_deadline(call_deadline: Deadline | None) -> Deadline | None:
    """The point every DynamoDB call of a Lambda run ends by (:func:`kbsearch.lease.dynamodb_client`): the calls'
    end and :data:`LEASE_TABLE_GRACE_S`; None (``kbsearch index``): none."""
    return (
        None
        if call_deadline is None or call_deadline.at is None
        else call_deadline.within(reserve=-LEASE_TABLE_GRACE_S)
    )


def event_sequencers(settings: Settings, deadline: Deadline | None = None) -> Any:
    """Where the last applied sequencer per note is kept: the lease table (deployed), a file beside the embedded
    store, or nowhere (Qdrant Cloud without a lease table: current-state reads still converge). ``deadline``: each
    DynamoDB call ends by it (:func:`kbsearch.lease.dynamodb_client`)."""
    from kbsearch.lease import dynamodb_client
    from kbsearch.qdrant import beside_store
    from kbsearch.sequencers import DynamoSequencers, FileSequencers

    if settings.index_lease_table:
        return DynamoSequencers(settings.index_lease_table, settings.qdrant_collection, dynamodb_client(deadline))
    file = beside_store(settings, ".sequencers.json")
    return FileSequencers(file) if file is not None else None


def storage_failed(settings: Settings, exc: StoreError, source: str | None, rebuild: bool = False) -> str:
    """A run's error when its store would not open; for an embedded store another process holds, what to do about
    that holder (:func:`kbsearch.qdrant.readiness.held_for_syncs`): the indexer function run locally beside a
    ``kbsearch serve`` said only which process held it (walk33), where ``kbsearch index`` said what to do."""
    if not isinstance(exc, StoreHeld):
        return f"index storage failed: {exc}"
    from kbsearch.qdrant.readiness import held_for_syncs

    return f"index storage failed: {exc}{held_for_syncs(settings, source, rebuild)}"


def run_changes(
    settings: Settings,
    secrets: Secrets,
    event: dict[str, Any],
    *,
    source_uri: str | None = None,
    stop_at: Deadline | None = None,
    call_deadline: Deadline | None = None,
) -> ChangeReport:
    """One SQS batch of S3 change events (notifications or EventBridge): read, ordered, applied. While a full sync
    holds the index lease every message fails back to the queue (nothing is lost; the sync may already cover it).
    Poison messages fail (after ``maxReceiveCount`` tries SQS moves them to the dead-letter queue); the rest of
    the batch is applied."""
    from functools import partial

    from kbsearch.events import read_batch
    from kbsearch.lease import lease_holder, short_lease
    from kbsearch.providers.embeddings import build_embedder

    source = open_source(source_uri or settings.kb_source, deadline=call_deadline)
    batch = read_batch(event, _scope_of(source))
    report = ChangeReport(source=source.uri, collection=settings.qdrant_collection, dense=False)
    report.ignored, report.poison = batch.ignored, batch.poison
    for item in batch.ignored:  # a malformed record beside good ones (it names its message) is a warning
        (logger.warning if "message_id" in item else logger.info)(
            "event ignored: %s: %s", item["key"], item["reason"], extra=item
        )
    for item in batch.poison:
        logger.error("poison message: %s", item["reason"], extra=item)
    poison = [p["message_id"] for p in batch.poison]
    if not batch.changes:
        report.failed_messages = sorted(set(poison))
        return report
    table_deadline = lease_table_deadline(call_deadline)
    held = lease_holder(settings, deadline=table_deadline)
    if held is not None:
        report.error = f"a full sync holds the index lease ({held}); the events are retried"
        report.failed_messages = sorted({c.message_id for c in batch.changes} | set(poison))
        report.failed_paths = sorted({c.path for c in batch.changes})
        return report
    try:
        store = open_store(settings, secrets, deadline=call_deadline)
    except StoreError as exc:
        report.error, report.incomplete = storage_failed(settings, exc, source_uri or settings.kb_source), True
        report.failed_messages = sorted({c.message_id for c in batch.changes} | set(poison))
        return report
    try:
        embedder = build_embedder(settings, secrets, None)  # the shared client, made at its first call
        report.dense = embedder is not None
        options = SyncOptions.from_settings(settings)
        links_lock = partial(short_lease, settings, "links", deadline=table_deadline)  # batches take turns on the list
        sync = ChangeSync(source, store, embedder, options, event_sequencers(settings, table_deadline), links_lock)
        sync.apply(batch.changes, stop_at, call_deadline, report)
    finally:
        try:
            store.close()
        except StoreError as exc:
            report.error = report.error or f"index storage failed: {exc}"
            report.failed_messages = sorted({c.message_id for c in batch.changes})
    report.failed_messages = sorted(set(report.failed_messages) | set(poison))
    return report
