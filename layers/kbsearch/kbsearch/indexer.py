"""The sync: list the KB, diff it against what the index holds, (re)index what changed, remove what is gone.

Guarantees:
- unchanged notes (same etag, a complete set of chunks) are neither downloaded nor embedded;
- per note, the new chunks are upserted first and the old version's extra chunks deleted after, so the note is
  never missing from search; a crash anywhere leaves a state the next run repairs (a half-written note has no
  complete set of chunks for its etag, so it is redone);
- a failed listing deletes nothing; a run that would delete more than ``max_delete_ratio`` of the indexed notes
  deletes nothing unless allowed;
- a bad note is skipped with a reason, and its last good version stays indexed: everything that happens to one
  note (read, decode, parse, chunk, payload) is isolated, whatever it raises;
- a note whose key is not a safe path, or whose key has the same NFC path as another key, is skipped with a
  reason; so is an entry the source lists with a problem (not a regular file, a dangling symlink, a folder that
  cannot be listed, ...), and what was indexed from it (or under that folder) stays; fields the note keeps but kb-search drops, and frontmatter ids shared by several notes, are warnings;
- a storage failure (a full disk, the embedded store's errors, Qdrant 5xx) ends the run with ``error`` set;
  what was written is consistent, and the next run converges;
- the run stops before its deadline and says ``incomplete``; the next run carries on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbsearch.chunking import Chunk, chunk_note
from kbsearch.config import Secrets, Settings
from kbsearch.errors import StoreError
from kbsearch.lexical import document_vector
from kbsearch.providers.embeddings import Embedder, EmbeddingStats
from kbsearch.providers.resilience import Deadline, ProviderError
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import REBUILDING, SIGNATURE_KEYS, SOURCE_KEY, folders_of, signature_id
from kbsearch.qdrant.store import ChunkPoint, NoteState, SchemaMismatchError, Store, storage_errors
from kbsearch.sources import LocalSource, Source, SourceError, SourceObject, open_source, path_problem, preferred

if TYPE_CHECKING:
    from kbsearch.notes import Note

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Parsed:
    obj: SourceObject
    kind: str  # added | updated
    note: Note
    chunks: list[Chunk]
    points: list[ChunkPoint]  # payload and sparse vector built; the dense vector is added when the window is embedded


@dataclass
class SyncOptions:
    full: bool = False
    allow_mass_delete: bool = False
    max_delete_ratio: float = 0.5
    max_note_bytes: int = 1024 * 1024
    chunk_max_tokens: int = 400
    chunk_overlap_tokens: int = 40
    window_chunks: int = 512  # chunks parsed ahead and embedded together (4 x batch size x concurrency)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SyncOptions:
        options = cls(
            max_delete_ratio=settings.max_delete_ratio,
            max_note_bytes=settings.max_note_bytes,
            chunk_max_tokens=settings.chunk_max_tokens,
            chunk_overlap_tokens=settings.chunk_overlap_tokens,
            window_chunks=settings.embedding.batch_size * settings.embedding.concurrency * 4,
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
    ) -> None:
        self.source = source
        self.store = store
        self.embedder = embedder
        self.options = options or SyncOptions()
        self.progress = progress
        self._written_ids: dict[str, str] = {}  # path → doc_id of the notes this run wrote
        self._kept: set[str] = set()  # paths (and folders, ending in '/') listed with a problem: never deleted
        self._state: dict[str, NoteState] = {}  # what the index held when this run listed the KB
        self._signature_id = ""
        self._reembed = False

    def sync(self, stop_at: Deadline | None = None, call_deadline: Deadline | None = None) -> SyncReport:
        """One sync run. ``stop_at``: no new work starts after it; ``call_deadline`` bounds provider calls."""
        started = time.monotonic()
        report = SyncReport(
            source=self.source.uri, collection=self.store.collection, dense=self.embedder is not None,
            full=self.options.full,
        )  # fmt: skip
        try:
            self._sync(report, stop_at or Deadline(), call_deadline)
        except StoreError as exc:
            report.error = str(exc) if isinstance(exc, SchemaMismatchError) else f"index storage failed: {exc}"
            report.incomplete = True
            logger.error("the index cannot be written; the run stops", extra={"error": report.error})
        finally:
            report.duration_ms = int((time.monotonic() - started) * 1000)
        return report

    def _embedding_signature(self, report: SyncReport) -> None:
        """Compare the collection's recorded embedding (model, dimensions, input format) with the embedder's.
        Another model or format: every note is re-embedded, and until that completes the collection says it is
        rebuilding (searches then use BM25 only, never two models' vectors). Other dimensions: rebuilt afresh."""
        self._signature_id = ""
        self._reembed = False
        if self.embedder is None:
            self.store.ensure_collection()
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
            return
        recorded = self.store.metadata()
        before = {k: recorded.get(k) for k in SIGNATURE_KEYS}
        if recorded.get(REBUILDING) is None and (not any(before.values()) or before == wanted):
            if not any(before.values()):
                self.store.set_metadata(wanted)  # built before signatures were recorded: adopt it as is
            return
        self._reembed = True
        report.reembedded = (
            f"embedding changed ({_describe(before)} → {_describe(wanted)}): every note is re-embedded; "
            "searches use BM25 only until this completes"
        )
        logger.warning("embedding changed: re-embedding every note", extra={"before": before, "after": wanted})
        self.store.set_metadata({REBUILDING: self._signature_id})

    def _sync(self, report: SyncReport, stop_at: Deadline, call_deadline: Deadline | None) -> None:
        try:
            self._embedding_signature(report)
        except SchemaMismatchError as exc:
            if not self.store.embedded:  # Qdrant Cloud is never dropped in place: searches would see it half-built
                raise SchemaMismatchError(
                    f"{str(exc).split('. Use another')[0]}. Run kbsearch index --rebuild: it builds a new collection "
                    f"and switches the alias {self.store.collection!r} to it when complete"
                ) from None
            # The embedded store is a local copy of the KB: rebuild it (make run, then make run ORACLE=e5, and back).
            self.store.drop()
            self._embedding_signature(report)
            why = str(exc).split(": ", 1)[-1].split(". Use another")[0]
            report.reembedded = f"the local collection was rebuilt and every note re-indexed ({why})"
            logger.warning("kbsearch: %s", report.reembedded)
        self._sync_notes(report, stop_at, call_deadline)
        # a skipped note that is indexed keeps the old model's vectors: the re-embed is not done until a run embeds
        # it too (a note that was never indexed, a broken one say, holds no vectors and blocks nothing)
        stale = [s for s in report.skipped if self._stale(s["path"])] if self._reembed else []
        if stale and not report.incomplete:
            report.incomplete = True
            report.warnings.append({"path": "", "reason": f"re-embedding not finished: {len(stale)} note(s) "
                                    "skipped keep the previous model's vectors; searches stay BM25-only"})  # fmt: skip
        if self._reembed and not (report.incomplete or report.error) and self.embedder is not None:
            self.store.set_metadata(self.embedder.signature)

    def _stale(self, path: str) -> bool:
        """The note is indexed with vectors of another embedding than this run's."""
        st = self._state.get(path)
        return st is not None and st.embeddings != {self._signature_id}

    def _sync_notes(self, report: SyncReport, stop_at: Deadline, call_deadline: Deadline | None) -> None:
        try:
            listing = list(self.source.list())
        except SourceError as exc:
            report.error = str(exc)
            report.incomplete = True
            logger.error("listing failed; nothing changed", extra={"error": str(exc)})
            return
        notes = self._notes(report, listing)
        state = self.store.indexed_state()
        self._state = state

        self._delete_missing(report, state, notes)

        work: list[tuple[SourceObject, str]] = []
        for path in sorted(notes):
            obj = notes[path]
            kind = self._classify(obj, state.get(path))
            if kind == "unchanged":
                report.unchanged += 1
            elif kind == "repair":
                st = state[path]
                complete = st.complete_etag()
                n = len(st.chunks[complete]) if complete is not None else 0
                leftover = {i for idx in st.chunks.values() for i in idx if i >= n}
                self.store.delete_leftovers(path, n)
                report.chunks_deleted += len(leftover)
                report.repaired += 1
                report.unchanged += 1
            else:
                work.append((obj, kind))
        self._written_ids = {}
        try:
            self._index(report, work, state, stop_at, call_deadline)
        finally:
            self._warn_duplicate_ids(report, notes, state)

    def _notes(self, report: SyncReport, listing: list[SourceObject]) -> dict[str, SourceObject]:
        """The listing's notes by path; keys that cannot be a note's identity, and all but one of the keys that
        share a path after Unicode normalisation, are skipped with a reason."""
        by_path: dict[str, dict[str, SourceObject]] = {}
        self._kept = set()
        for obj in listing:
            if obj.problem is not None:  # listed, never read: what was indexed from it stays (as for a bad note)
                if obj.is_note:
                    report.notes_listed += not obj.folder
                    self._kept.add(obj.path)
                    self._skip(report, obj.path, obj.problem)
                continue
            if obj.is_note:
                report.notes_listed += 1
                problem = path_problem(obj.path)
                if problem:
                    self._skip(report, obj.path, f"{problem}: kb_get_note could not reach it")
                else:
                    by_path.setdefault(obj.path, {})[obj.key] = obj
        report.attachments_ignored = sum(1 for obj in listing if not obj.is_note)
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
        """Frontmatter ids that several indexed notes share (search keeps one hit per path, so none hides)."""
        paths_by_id: dict[str, list[str]] = {}
        for path in sorted(notes):
            doc_id = self._written_ids.get(path) or (state[path].doc_id() if path in state else None)
            if doc_id is not None:
                paths_by_id.setdefault(doc_id, []).append(path)
        for doc_id, paths in sorted(paths_by_id.items()):
            for path in paths if len(paths) > 1 else []:
                others = ", ".join(p for p in paths if p != path)
                report.warnings.append(
                    {"path": path, "reason": f"frontmatter id {doc_id!r} is also the id of {others}"}
                )

    def _classify(self, obj: SourceObject, st: NoteState | None) -> str:
        if st is None:
            return "added"
        if self.options.full or st.complete_etag() != obj.etag:
            return "updated"
        if self.embedder is not None and not st.dense:
            return "updated"  # indexed before a key was configured: embed it now
        if self._reembed and st.embeddings != {self._signature_id}:
            return "updated"  # embedded with another model or input format
        if st.has_orphans():
            return "repair"
        return "unchanged"

    def _delete_missing(self, report: SyncReport, state: dict[str, NoteState], notes: dict[str, SourceObject]) -> None:
        folders = tuple(p for p in self._kept if p.endswith("/"))
        gone = sorted(p for p in state if p not in notes and p not in self._kept and not p.startswith(folders))
        if not gone:
            return
        share = len(gone) / max(1, len(state))
        if share > self.options.max_delete_ratio and not self.options.allow_mass_delete:
            report.deletion_blocked = (
                f"would delete {len(gone)} of {len(state)} indexed notes ({share:.0%} > "
                f"{self.options.max_delete_ratio:.0%}); nothing deleted. If that is intended, rerun with "
                '--allow-mass-delete (or {"allow_mass_delete": true} in the event)'
            )
            logger.warning("mass delete blocked", extra={"would_delete": len(gone), "indexed": len(state)})
            return
        for path in gone:
            self.store.delete_note(path)
            report.deleted += 1
            report.chunks_deleted += state[path].points

    def _skip(self, report: SyncReport, path: str, reason: str) -> None:
        report.skipped.append({"path": path, "reason": reason})
        logger.warning("note skipped: %s: %s", path, reason, extra={"path": path, "reason": reason})

    def _parse(self, report: SyncReport, obj: SourceObject, kind: str, indexed_at: str) -> _Parsed | None:
        """Everything that happens to one note before it is written; any failure skips the note, nothing else."""
        from kbsearch.notes import NoteError, parse_note  # the YAML parser loads only when a note changed

        if obj.size > self.options.max_note_bytes:
            self._skip(report, obj.path, f"too large: {obj.size} bytes (limit {self.options.max_note_bytes})")
            return None
        try:
            raw = self.source.read(obj)
            note = parse_note(obj.path, raw, self.options.max_note_bytes)
            chunks = chunk_note(note, self.options.chunk_max_tokens, self.options.chunk_overlap_tokens)
            dense = self.embedder is not None
            points = []
            for chunk in chunks:
                payload = _payload(obj, note, chunk, len(chunks), indexed_at, dense)
                payload["embedding"] = self._signature_id if dense else ""  # which model/format embedded it
                json.dumps(payload, allow_nan=False, ensure_ascii=False).encode("utf-8")  # what the store must take
                points.append(ChunkPoint(obj.path, chunk.index, payload, document_vector(chunk.embed_text), None))
        except SourceError as exc:
            self._skip(report, obj.path, str(exc))
            return None
        except NoteError as exc:
            self._skip(report, obj.path, exc.reason)
            return None
        except Exception as exc:  # a bug or an input no rule above foresaw: this note only
            logger.exception("note failed", extra={"path": obj.path})
            self._skip(report, obj.path, f"cannot be indexed ({type(exc).__name__})")
            return None
        for warning in note.warnings:
            report.warnings.append({"path": obj.path, "reason": warning})
        return _Parsed(obj, kind, note, chunks, points)

    def _index(
        self,
        report: SyncReport,
        work: list[tuple[SourceObject, str]],
        state: dict[str, NoteState],
        stop_at: Deadline,
        call_deadline: Deadline | None,
    ) -> None:
        stats = EmbeddingStats()
        window: list[_Parsed] = []
        done = 0
        indexed_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        try:
            for position, (obj, kind) in enumerate(work):
                if stop_at.remaining() <= 0:
                    report.incomplete = True
                    report.remaining = len(work) - position + len(window)
                    break
                parsed = self._parse(report, obj, kind, indexed_at)
                done += 1
                if parsed is not None:
                    window.append(parsed)
                if sum(len(p.chunks) for p in window) >= self.options.window_chunks:
                    self._write_window(report, window, state, stats, call_deadline)
                    window = []
                if self.progress:
                    self.progress(done, len(work), obj.path)
            if window and not report.incomplete:
                self._write_window(report, window, state, stats, call_deadline)
            elif window:
                report.remaining = report.remaining or len(window)
        except ProviderError as exc:
            report.error = f"embedding failed: {exc}"
            report.incomplete = True
            logger.error("embedding failed; the run stops, unchanged notes keep their last version",
                         extra={"error": str(exc)})  # fmt: skip
        finally:
            report.embedding_calls = stats.calls
            report.embedding_tokens = stats.tokens
            report.embedding_fallbacks = stats.fallbacks

    def _write_window(
        self,
        report: SyncReport,
        window: list[_Parsed],
        state: dict[str, NoteState],
        stats: EmbeddingStats,
        call_deadline: Deadline | None,
    ) -> None:
        points = [point for parsed in window for point in parsed.points]
        if self.embedder is not None:
            texts = [self.embedder.format_document(c.embed_text) for p in window for c in p.chunks]
            vectors = self.embedder.embed_documents(texts, call_deadline, stats)  # one array; rows go to the store
            points = [replace(point, dense=vector) for point, vector in zip(points, vectors, strict=True)]
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
            if parsed.kind == "added":
                report.added += 1
            else:
                report.updated += 1


def _describe(signature: dict[str, Any]) -> str:
    if not any(signature.values()):
        return "a model being re-embedded"
    return "/".join(str(signature.get(k)) for k in SIGNATURE_KEYS)


def _payload(
    obj: SourceObject, note: Note, chunk: Chunk, n_chunks: int, indexed_at: str, dense: bool
) -> dict[str, Any]:
    return {
        "doc_id": note.doc_id,
        "path": note.path,
        "folders": folders_of(note.path),
        "title": note.title,
        "heading": chunk.heading,
        "chunk_index": chunk.index,
        "n_chunks": n_chunks,
        "text": chunk.text,
        "tags": note.tags,
        "type": note.type,
        "status": note.status,
        "summary": note.summary,
        "ai_weight": note.ai_weight,
        "created": note.created,
        "updated": note.updated,
        "links": note.links,
        "etag": obj.etag,
        "indexed_at": indexed_at,
        "dense": dense,
        "meta": note.metadata,
    }


def rebuild_behind_alias(
    admin: Store,
    source: Source,
    embedder: Embedder | None,
    options: SyncOptions,
    progress: Progress | None = None,
    stop_at: Deadline | None = None,
    call_deadline: Deadline | None = None,
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
    report = Indexer(source, admin.sibling(target), embedder, options, progress).sync(stop_at, call_deadline)
    report.collection = alias
    if report.error or report.incomplete or report.deletion_blocked:
        report.rebuilt = (
            f"collection {target!r} not complete: the alias {alias!r} still names "
            f"{live or 'the collection it named'}; run kbsearch index --rebuild again to carry on"
        )
        return report
    before = live or (alias if admin.exists() else None)
    admin.point_alias(alias, target)
    if live is not None and live != target:
        with storage_errors(f"dropping the previous collection {live!r}"):
            admin.sibling(live).drop()
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
    from kbsearch.lease import index_lease
    from kbsearch.providers.embeddings import build_embedder
    from kbsearch.providers.resilience import shared_client

    source = open_source(source_uri or settings.kb_source)
    with index_lease(settings):
        try:
            store = open_store(settings, secrets)
        except StoreError as exc:
            report = SyncReport(source=source.uri, collection=settings.qdrant_collection, dense=False, full=full)
            report.error, report.incomplete = f"index storage failed: {exc}", True
            return report
        try:
            embedder = build_embedder(settings, secrets, shared_client())
            options = SyncOptions.from_settings(settings, full=full, allow_mass_delete=allow_mass_delete)
            if rebuild and not store.embedded:
                report = rebuild_behind_alias(store, source, embedder, options, progress, stop_at, call_deadline)
            else:
                if rebuild:
                    store.drop()
                report = Indexer(source, store, embedder, options, progress).sync(stop_at, call_deadline)
                if rebuild:
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
        return report


def _remember_source(store: Store, source: Source, report: SyncReport) -> None:
    """An embedded collection records the folder it was built from, so ``kbsearch serve`` without KB_SOURCE can
    still read notes (``kb_get_note``). Qdrant Cloud's collections are shared: they record no laptop's path."""
    if not store.embedded or not isinstance(source, LocalSource) or report.error:
        return
    folder = str(Path(source.uri).resolve())
    recorded = store.metadata()
    if recorded.get(SOURCE_KEY) != folder:
        store.set_metadata({**recorded, SOURCE_KEY: folder})
