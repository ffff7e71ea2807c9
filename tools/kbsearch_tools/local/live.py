"""Live sync under ``kbsearch serve``: the serving process owns the embedded store, so it is the one that writes.

- :class:`LiveIndex`: the search function's own store (the one its searches read), one sync at a time: a full
  (incremental) sync, or the changed notes only (:class:`kbsearch.indexer.ChangeSync`: a stat + MD5 of each
  changed file, never a walk of the folder; unchanged chunks keep their vectors). Writes go note by note (new
  chunks first, old extras after), so searches keep answering from the previous state while a sync runs.
- :class:`Watcher` (``--watch``): watchfiles (inotify, FSEvents) with a debounce; where those are missing, or
  with ``--poll``, a walk of the folder's stats every 250 ms (nanosecond modification times, sizes, inodes). Whatever the editor does (write in place, temporary file + rename, delete +
  create, a burst, a ``git checkout`` of hundreds of notes) the changed paths are applied from what is on disk
  now, so the index converges to exactly what a full sync builds. A change of the access file (``_access.yaml``
  at the root) applies to every note's groups in the same run (a payload update). A change that is not a note (a
  folder moved in or out) runs the incremental full sync.
- :class:`HandoffServer`: a unix socket beside the store (``<QDRANT_PATH>/<collection>.serve.sock``, mode 0600,
  the peer's uid checked), through which ``kbsearch index`` hands its sync to the server holding the store
  instead of failing on the store's lock. One JSON line each way: ``{"source", "full", "allow_mass_delete"}`` →
  the sync report.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from kbsearch.access import ACCESS_FILE
from kbsearch.errors import KbSearchError
from kbsearch.events import Change
from kbsearch.indexer import (
    DANGLING_CUT,
    DANGLING_LOGGED,
    DANGLING_UNREAD,
    ChangeReport,
    ChangeSync,
    Indexer,
    ParsingProcess,
    SyncOptions,
    SyncReport,
    caller_options,
    explain_other_folder,
)
from kbsearch.providers.resilience import Deadline
from kbsearch.sources import LocalSource, hidden, is_note_name, open_source

logger = logging.getLogger(__name__)
#: The watcher's thread (:class:`SaidByTheWatchLine` knows its syncs by it).
WATCH_THREAD = "kbsearch-watch"

SOCKET_SUFFIX = ".serve.sock"
POLL_S = 0.25  # --poll: how often the folder's stats are compared
#: --poll: a note whose mtime is this close to the clock when its stat is taken is read again once it is older: the
#: coarsest file system timestamps kept (FAT's 2 s), with the margin of a share's clock a little ahead of this one.
RACY_S = 3.0
RACY_NS = int(RACY_S * 1e9)
#: The kind a polled path carries when it is read again only because its mtime was recent (its stat unchanged).
RECHECK = "recheck"
MAX_REQUEST_BYTES = 64 * 1024


class LiveIndex:
    """Syncs into the store a running search service reads. ``container`` is the search function's
    :class:`kbsearch.api.container.Container`."""

    def __init__(self, container: Any) -> None:
        from kbsearch.providers.embeddings import build_embedder
        from kbsearch.providers.resilience import shared_client
        from kbsearch.qdrant.embedded import EmbeddedRetriever

        self.settings = container.settings
        self.secrets = container.secrets  # the caller mapping (KB_LOCAL_API_KEYS' groups): the group-set tokens
        retriever = container.search().retriever  # opens the embedded store the searches use
        if not isinstance(retriever, EmbeddedRetriever):
            raise KbSearchError("live sync needs the embedded store (QDRANT_URL is set: the deployed indexer syncs)")
        self.store = retriever.store
        self.embedder = build_embedder(self.settings, container.secrets, shared_client())
        self.lock = threading.Lock()  # one sync at a time: the watcher's and a handed-off `kbsearch index`
        #: where the syncs, run in threads, parse their notes: within NOTE_PARSE_LIMIT_S each, as in a main thread
        self.parser = ParsingProcess().start()
        self.last: dict[str, Any] | None = None
        #: called after each sync (the store written), outside the lock, with the note paths it applied (None: a
        #: full sync, any note): each must return at once
        self.after_sync: list[Callable[[list[str] | None], None]] = []

    def options(self, **overrides: Any) -> SyncOptions:
        return SyncOptions.from_settings(self.settings, **overrides)

    def full(
        self, source: str, full: bool = False, allow_mass_delete: bool = False, stop_at: Deadline | None = None
    ) -> SyncReport:
        """``stop_at``: no note is started after it (the watcher's, when the server shuts down)."""
        with self.lock:
            options = self.options(full=full, allow_mass_delete=allow_mass_delete, **caller_options(self.secrets))
            kb = open_source(source)
            report = Indexer(kb, self.store, self.embedder, options, parser=self.parser).sync(stop_at)
            if report.deletion_blocked:  # a second KB's folder handed to this server's store
                explain_other_folder(self.store.metadata(), kb, report)
            self._flush(report.chunks_upserted + report.chunks_deleted)
            self.last = {"kind": "full" if full else "reconcile", "report": report.to_dict()}
        self._synced(None)
        return report

    def changes(self, folder: Path, paths: Iterable[str], stop_at: Deadline | None = None) -> ChangeReport:
        """Apply the notes at these relative paths as they are on disk now (present: indexed; absent: deleted);
        ``stop_at``: no note is started after it."""
        with self.lock:
            changes = [Change(path=_nfc(p), key=p, removed=False) for p in sorted(set(paths))]
            sync = ChangeSync(LocalSource(folder), self.store, self.embedder, self.options(), parser=self.parser)
            sync.kind = "watch"
            report = sync.apply(changes, stop_at)
            self._flush(report.chunks_upserted + report.chunks_deleted)
            self.last = {"kind": "watch", "report": report.to_dict()}
        self._synced([c.path for c in changes if c.path != ACCESS_FILE])  # (the access file changes no passage)
        return report

    def _synced(self, paths: list[str] | None) -> None:
        for listener in self.after_sync:
            listener(paths)

    def payloads(self, paths: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The payloads of these notes' points (None: every point), read between syncs (never half a sync's
        writes): a save under ``--watch`` reads its own note's points, not the whole store's."""
        with self.lock:
            if paths is None:
                return list(self.store.points().values())
            from kbsearch.qdrant.store import next_page

            wanted = sorted(set(paths))
            out: list[dict[str, Any]] = []
            for start in range(0, len(wanted), 512):
                request: dict[str, Any] = {
                    "filter": {"must": [{"key": "path", "match": {"any": wanted[start : start + 512]}}]},
                    "limit": 1024, "with_payload": True,
                }  # fmt: skip
                seen: set[str] = set()
                while True:
                    points, offset = self.store.scroll(request, 30.0)
                    out.extend(p["payload"] for p in points if isinstance(p.get("payload"), dict))
                    if next_page(offset, seen) is None:  # (a page named twice is a StoreError, not a loop)
                        break
                    request["offset"] = offset
            return out

    def _flush(self, written: int) -> None:
        """Make the writes durable without closing the store the searches use (Edge: flush; its segments are
        merged when the server stops, or here after a large sync)."""
        flush = getattr(self.store, "flush_writes", None)
        if callable(flush):
            flush(optimize=written >= 2000)


def _nfc(path: str) -> str:
    from kbsearch.sources import note_path

    return note_path(path)


class Watcher:
    """Watches ``folder`` and applies its changes to ``live`` (a daemon thread)."""

    def __init__(
        self,
        live: LiveIndex,
        folder: Path,
        step_ms: int = 100,
        debounce_ms: int = 1000,
        poll: bool = False,
        on_sync: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.live = live
        self.folder = folder.resolve()
        self.step_ms = step_ms
        self.debounce_ms = debounce_ms
        self.poll = poll
        self.on_sync = on_sync
        self.stop_event = threading.Event()
        #: the syncs' ``stop_at``, passed at :meth:`stop`: the sync in hand starts no note after it (a window of
        #: notes already being embedded is written), so it ends soon after the stop, not with the process
        self.stop_at = Deadline()
        self.ready = threading.Event()
        self.ended = threading.Event()  # the thread's last step: nothing it runs is left
        self.mode = "polling" if poll else "native"
        self.known: set[str] = set()
        self.retry: set[str] = set()  # paths a batch could not apply (an unusable access file, a provider down)
        self.said_skips: dict[str, str] = {}  # a skipped note's reason as a line said it last (by its NFC path)
        self._thread: threading.Thread | None = None

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, name=WATCH_THREAD, daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: bool = True) -> None:
        """Stop watching, and the sync in hand at its next note; ``wait``: for that sync too (up to 10 s)."""
        self.stop_at.at = time.monotonic()
        self.stop_event.set()
        if wait:
            self.join(10)

    def join(self, timeout_s: float) -> bool:
        """Wait for the watcher's thread to end (up to ``timeout_s``); whether it has. A sync left running in it
        when the process exits runs under Python's own shut-down, which stops the indexer's embedding pool: its
        next window then failed with "cannot schedule new futures after shutdown", a traceback after the
        command's last line."""
        if self._thread is None:
            return True
        # an Event, not Thread.join: a join a Ctrl-C interrupted (the first Ctrl-C's wait, cut by a second) marks
        # the thread stopped while it runs on (Python 3.11's threading), and every later join returns at once
        return self.ended.wait(timeout_s)

    def _run(self) -> None:
        try:
            changes = self._open_watch()  # first: a save during the initial sync is then not missed
            report = self.live.full(str(self.folder), stop_at=self.stop_at)
            self._known_from_store()
            self._report("initial sync", report.to_dict())
            self.ready.set()
            for batch in changes:
                if self.stop_event.is_set():
                    return
                self._apply(batch)
        except Exception:  # the server keeps serving; a broken watcher says so once
            if self.stop_event.is_set():  # the shut-down took what the sync needed (the oracle, Python's pools)
                logger.debug("kbsearch serve --watch: a sync cut short by the shut-down", exc_info=True)
                return
            logger.exception("kbsearch serve --watch: the watcher stopped; restart kbsearch serve to resume")
        finally:
            self.ready.set()
            self.ended.set()

    def _known_from_store(self) -> None:
        with self.live.lock:
            self.known = set(self.live.store.indexed_state())

    def _open_watch(self) -> Iterator[set[tuple[Any, str]]]:
        """The watch, already watching: native file events (watchfiles), else polling."""
        if self.poll:
            changes = self._polling()
            next(changes)
            return changes
        import watchfiles

        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # "N changes detected" on every save otherwise
        try:
            events = watchfiles.watch(
                self.folder, debounce=self.debounce_ms, step=self.step_ms, stop_event=self.stop_event,
                force_polling=False, raise_interrupt=False, yield_on_timeout=True, rust_timeout=200,
            )  # fmt: skip
            next(events)  # creates the watcher; what it saw so far the initial sync covers
        except (OSError, RuntimeError) as exc:  # inotify missing or out of watches: poll instead
            logger.warning("kbsearch serve --watch: native file events unavailable (%s); polling instead", exc)
            self.poll, self.mode = True, "polling"
            return self._open_watch()
        return events

    def _snapshot(self) -> dict[str, tuple[int, int, int]]:
        """Every visible note's (mtime in ns, size, inode): what polling compares. watchfiles' own polling compares
        modification times in whole seconds, and misses a second save (or a rename over) within the same second."""
        found: dict[str, tuple[int, int, int]] = {}
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                root_rules = name == ACCESS_FILE and dirpath == str(self.folder)
                if name.startswith(".") or not (is_note_name(name) or root_rules):
                    continue
                full = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    info = os.stat(full)
                    found[full] = (info.st_mtime_ns, info.st_size, info.st_ino)
        return found

    def _polling(self) -> Iterator[set[tuple[Any, str]]]:
        """Changed note paths, every ``POLL_S`` (a walk of stats), once they have been quiet for one more poll
        (at most ``debounce_ms``). A note whose mtime was within :data:`RACY_S` of the clock when its stat was taken
        is read once more when that mtime is older (git's "racily clean" entries): a save in the same timestamp tick
        as the one before it (a file system's coarse clock: FAT's 2 s, an SMB or NFS server's 1 s) keeps the mtime,
        and a save of the same size in place (a checkbox ticked) then left the stat as it was, the note unindexed."""
        taken = time.time_ns()
        previous = self._snapshot()
        racy = {p: stat for p, stat in previous.items() if stat[0] > taken - RACY_NS}
        yield set()
        pending: set[str] = set()
        rechecked: set[str] = set()  # of ``pending``, the notes read again only because their mtime was recent
        first_seen = 0.0
        while not self.stop_event.wait(POLL_S):
            taken = time.time_ns()
            current = self._snapshot()
            changed = {p for p in current.keys() | previous.keys() if current.get(p) != previous.get(p)}
            previous = current
            for path in changed:  # a stat seen with a recent mtime is not trusted until that mtime is old
                racy.pop(path, None)
                rechecked.discard(path)
                if path in current and current[path][0] > taken - RACY_NS:
                    racy[path] = current[path]
            due = {p for p, stat in racy.items() if stat[0] <= taken - RACY_NS}
            for path in due:  # old enough now: the content is read once more (its MD5; unchanged costs no embedding)
                del racy[path]
            rechecked |= {p for p in due if p in current and p not in changed and p not in pending}
            changed |= {p for p in due if p in current}
            if changed and not pending:
                first_seen = time.monotonic()
            pending |= changed
            quiet = not changed or time.monotonic() - first_seen >= self.debounce_ms / 1000
            if pending and quiet:
                yield {(RECHECK if p in rechecked else None, p) for p in pending}
                pending, rechecked = set(), set()
            else:
                yield set()

    def _apply(self, batch: set[tuple[Any, str]]) -> None:
        if not batch:
            return
        again = {item for item in batch if item[0] == RECHECK}
        if again and len(again) < len(batch):  # saves and notes read again only for a recent mtime: a line each, so
            self._apply(batch - again)  # a read again that finds nothing new is in no count (round 36 review)
            self._apply(again)
            return
        notes: set[str] = set()
        rescan = False
        rules = self._access_file_target()
        for _kind, raw in batch:
            if rules is not None and raw and os.path.realpath(raw) == rules:
                notes.add(ACCESS_FILE)  # the file the access file links to: its edit is the access file's
            rel = os.path.relpath(os.path.abspath(raw), self.folder).replace(os.sep, "/") if raw else ""
            if not rel or rel == "." or rel.startswith("../") or hidden(rel):
                continue
            is_dir = Path(raw).is_dir()
            if (is_note_name(rel) or rel == ACCESS_FILE) and not is_dir:
                notes.add(rel)  # the access file: every note's groups, applied in the same run
                continue
            holds_known = any(k.startswith(_nfc(rel) + "/") for k in self.known)
            if is_dir != holds_known:
                # a folder moved in (there, none of its notes known) or out (gone, its notes known): its notes have
                # no events of their own. A folder that is there with known notes only changed its entries (what
                # polling reports for every save): those files have their own events.
                rescan = True
        gone = [p for p in notes if p != ACCESS_FILE and not (self.folder / p).is_file()]
        if len(gone) > self.live.settings.max_delete_ratio * len(self.known):
            # most of the index gone at once (a share unmounted under its mount point, the folder emptied): the
            # full sync decides, under its mass-delete guard (each note's change alone deleted them all, and the
            # share back re-embedded every note)
            rescan = True
        if rescan:
            report = self.live.full(str(self.folder), stop_at=self.stop_at).to_dict()
            self._known_from_store()
            self._report("folder change: incremental sync", report)
        elif notes:
            notes |= self.retry  # what failed before is applied again with the next change (as SQS redelivers)
            changed = self.live.changes(self.folder, notes, self.stop_at)
            self.retry = {p for p in notes if _nfc(p) in changed.failed_paths}
            for path in notes:
                if _nfc(path) in changed.failed_paths or path == ACCESS_FILE:
                    continue
                if (self.folder / path).is_file():
                    self.known.add(_nfc(path))
                else:
                    self.known.discard(_nfc(path))
            done = changed.to_dict()
            skipped = {_nfc(s["path"]) for s in done.get("skipped") or [] if s.get("path")}
            for path in {_nfc(p) for p in notes} - skipped:
                self.said_skips.pop(path, None)  # read and not skipped: its next skip is news again
            if again:  # read again only for a recent mtime: a note skipped for the reason its line said is no news
                done["skipped"] = [s for s in done.get("skipped") or []
                                   if self.said_skips.get(_nfc(s.get("path") or "")) != s.get("reason")]  # fmt: skip
            if not again or any(done.get(k) for k in ("added", "updated", "deleted", "error", "skipped")):
                self._report(f"{len(notes)} changed note(s)", done)  # (a read again that found nothing: no line)

    def _access_file_target(self) -> str | None:
        """The file the root's access file links to, when it is a link (None otherwise): file events name the file
        written, so an edit of the target arrived as a change of a file that is neither a note nor the access file
        and was dropped, its rules never applied while the server ran (polling stats the link itself). A target
        outside the KB folder is no access file (a sync stops: "symlink to a file outside the KB folder")."""
        link = self.folder / ACCESS_FILE
        if not link.is_symlink():
            return None
        return os.path.realpath(link)

    def _report(self, what: str, report: dict[str, Any]) -> None:
        from kbsearch_tools.cli import _one_line  # (imported here: the CLI imports this module)

        for skip in report.get("skipped") or []:  # said now: a note read again and skipped the same way is not news
            if skip.get("path"):
                self.said_skips[_nfc(skip["path"])] = skip.get("reason", "")
        if report.get("error") and self.stop_event.is_set():
            # a second Ctrl-C stops the oracle under a sync in hand: its failure is the shut-down's, not a line
            # after "interrupted" (the store is crash-safe; the next sync applies what this one did not)
            logger.debug("kbsearch serve --watch: %s cut short by the shut-down: %s", what, report["error"])
            return
        stopped = " (stopped by the shut-down: the next start syncs the rest)" if (
            report.get("incomplete") and self.stop_event.is_set()) else ""  # fmt: skip
        line = (
            f"kbsearch serve --watch: {what}: {report['added']} added, {report['updated']} updated, "
            f"{report['deleted']} deleted in {report['duration_ms']} ms{stopped}"
            + (f"; error: {report['error']}" if report.get("error") else "")
            + (f"; deletion blocked: {report['deletion_blocked']}" if report.get("deletion_blocked") else "")
            + skipped_text(report.get("skipped") or [], more_from=f"kbsearch index {shlex.quote(str(self.folder))}")
            # what kbsearch index lists as warnings (a field dropped, an id shared): searchable, not as written
            + skipped_text(report.get("warnings") or [], said="warning")
            # wiki-links left naming no note (a renamed note's, a saved note's): as kbsearch index lists them
            + skipped_text(dangling_said(report), said="dangling link", total=report.get("dangling_links") or 0)
            # a folder with no note (a mistyped --watch, the vault's parent): said as kbsearch index says it
            + (f"; nothing to index: {_one_line(report['no_notes'])}" if report.get("no_notes") else "")
        )
        print(line, file=sys.stderr, flush=True)
        if self.on_sync is not None:
            self.on_sync(what, report)


def dangling_said(report: dict[str, Any]) -> list[dict[str, str]]:
    """A sync report's dangling links (the first few it names) as notes with a reason, for :func:`skipped_text`."""
    return [{"path": d["path"], "reason": f"[[{d['link']}]] names no note"} for d in report.get("dangling") or []]


def skipped_text(
    skipped: list[dict[str, str]], shown: int = 3, more_from: str = "", said: str = "", total: int = 0
) -> str:
    """The notes a sync skipped, for its one line: a saved note that is not searchable says why (a broken
    frontmatter, say), as ``kbsearch index`` does; the first ``shown`` with their reasons, then how many more
    (``more_from``: the command that names them all). ``said="warning"``: the report's warnings the same way (``1
    warning: a.md (frontmatter field 'updated' dropped: ...)``; one of the whole run, with no path, by its reason).
    ``total``: how many there are when ``skipped`` holds only the first of them (a report's dangling links)."""
    from kbsearch_tools.cli import _one_line  # a path's control characters escaped, as kbsearch index shows them

    if not skipped:
        return ""
    named = "; ".join(
        f"{_one_line(s['path'])} ({_one_line(s['reason'])})" if s.get("path") else _one_line(s["reason"])
        for s in skipped[:shown]
    )
    listed = f" ({more_from} names each)" if more_from else ""
    total = max(total, len(skipped))
    more = f"; and {total - shown} more{listed}" if total > shown else ""
    what = f"{said}{'' if total == 1 else 's'}" if said else "skipped"
    return f"; {total} {what}: {named}{more}"


class SaidByTheWatchLine(logging.Filter):
    """Drops the indexer's ``note skipped`` record of a sync the watcher runs (its thread): the watch's own line
    names the note and why (``1 skipped: broken.md (invalid YAML frontmatter at line 2)``), and Lambda's JSON record
    of the same, above it, said it twice (three times in ``make run``: the index's summary first). A sync handed to
    the server keeps its record: the handing ``kbsearch index`` prints the report. ``kbsearch -v serve`` keeps all."""

    def filter(self, record: logging.LogRecord) -> bool:
        watching = threading.current_thread().name == WATCH_THREAD
        dangling = record.msg in (DANGLING_LOGGED, DANGLING_UNREAD, DANGLING_CUT)  # said on the watch's line
        said = str(record.msg).startswith("note skipped: ") or dangling
        return not (watching and record.levelno == logging.WARNING and said)


# -- hand-off: `kbsearch index` → the server holding the store ----------------------------------------------


def socket_path(settings: Any) -> Path | None:
    """Where a server holding this embedded store listens for hand-offs (None for Qdrant Cloud)."""
    from kbsearch.qdrant import beside_store

    return beside_store(settings, SOCKET_SUFFIX)


class HandoffServer:
    """A unix socket only this user can reach; each connection: one request line, one report line."""

    def __init__(self, live_factory: Callable[[], LiveIndex], path: Path) -> None:
        self.live_factory = live_factory
        self.path = path
        self._live: LiveIndex | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HandoffServer | None:
        """Listen; None (with a log line) when the socket cannot be made (path too long, folder not writable)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                if _answering(self.path):
                    logger.warning("another kbsearch serve already listens at %s", self.path)
                    return None
                self.path.unlink()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                sock.bind(str(self.path))
            finally:
                os.umask(old)
            os.chmod(self.path, 0o600)
            sock.listen(4)
        except OSError as exc:
            logger.warning("kbsearch serve: no hand-off socket at %s (%s)", self.path, exc.strerror or exc)
            return None
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="kbsearch-handoff", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
            self._sock = None

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                if not _same_user(conn):
                    _send(conn, {"error": "refused: another user"})
                    return
                request = _read_line(conn)
                conn.settimeout(None)  # a sync takes as long as it takes
                answer = self._run(request)
            except (OSError, ValueError) as exc:
                answer = {"error": f"bad hand-off request ({type(exc).__name__})"}
            with contextlib.suppress(OSError):
                _send(conn, answer)

    def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        source = request.get("source")
        if not isinstance(source, str) or not source:
            return {"error": "no source"}
        if self._live is None:
            self._live = self.live_factory()
        if request.get("embedding") is not None:  # a client that would embed says with what (a plain one, nothing:
            # it syncs with the server's settings, as `make run ORACLE=e5` and a `kbsearch index` beside it do)
            ours = self._live.embedder.signature if self._live.embedder is not None else None
            if request["embedding"] != ours:
                return {"error": f"it syncs with {_embedding_named(ours)}, not {_embedding_named(request['embedding'])} "
                        "as this kbsearch index would: stop that server and run kbsearch index again, or start it "
                        "with the same embedding (kbsearch serve --oracle <model>, or the same EMBEDDING_* "
                        "settings) and it takes the sync"}  # fmt: skip
        try:
            report = self._live.full(
                source, full=request.get("full") is True, allow_mass_delete=request.get("allow_mass_delete") is True
            )
        except KbSearchError as exc:
            return {"error": str(exc)}
        return {"report": report.to_dict()}


def _embedding_named(signature: Any) -> str:
    """An embedder's signature (``Embedder.signature``; None: BM25 only) as the one at the terminal set it."""
    from kbsearch_tools.oracle import MODELS

    if not isinstance(signature, dict):
        return "BM25 only (no embedder)"
    model = signature.get("embedding_model")
    oracle = next((name for name, spec in MODELS.items() if spec[2] == model), None)
    return f"{model} (--oracle {oracle})" if oracle else f"{model}"


def _same_user(conn: socket.socket) -> bool:
    """The peer's uid (SO_PEERCRED, Linux) is ours; elsewhere the socket file's 0600 mode is the check."""
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:
        return True
    raw = conn.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return bool(uid == os.getuid())


def _read_line(conn: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
    value = json.loads(data.decode("utf-8") or "{}")
    if not isinstance(value, dict):
        raise ValueError("request is not an object")
    return value


def _send(conn: socket.socket, value: dict[str, Any]) -> None:
    conn.sendall(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8") + b"\n")


def _answering(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


class NoServer(Exception):
    """No server listens for hand-offs."""


def hand_off(
    path: Path,
    source: str,
    full: bool,
    allow_mass_delete: bool,
    embedding: dict[str, Any] | None,
    timeout_s: float = 3600,
) -> dict[str, Any]:
    """Ask the server at ``path`` to run the sync; its report. :class:`NoServer` when nothing listens there.
    ``embedding``: the signature of the embedder this sync would use; a server that embeds otherwise refuses (it
    syncs with its own settings: ``kbsearch index --oracle e5`` handed to a plain ``kbsearch serve`` was a BM25-only
    sync, exit 0). None (no embedder configured here): the server's settings, whatever they are."""
    if not path.exists():
        raise NoServer(str(path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        try:
            conn.connect(str(path))
        except OSError:
            raise NoServer(str(path)) from None
        conn.settimeout(timeout_s)
        _send(conn, {"source": source, "full": full, "allow_mass_delete": allow_mass_delete, "embedding": embedding})
        answer = _read_line(conn)
    if "error" in answer:
        raise KbSearchError(f"the server holding the store could not sync: {answer['error']}")
    report = answer.get("report")
    if not isinstance(report, dict):
        raise KbSearchError("the server holding the store answered without a report")
    return report


def wait_until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()
