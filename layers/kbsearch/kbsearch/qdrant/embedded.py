"""The embedded store (laptops, CI, ``make run``, evaluation): Qdrant Edge, Qdrant's own engine in-process.

One Edge shard per collection at ``QDRANT_PATH/edge/<collection>``: HNSW and the sparse index on disk, payload
indexes, filters, prefetch + RRF in one query. It speaks the Query API JSON of :mod:`kbsearch.qdrant.query` (the
same request the search sends to Qdrant Cloud over REST, the same filters the indexer deletes by), translated here
into Edge's request objects.

When the platform has no ``qdrant-edge-py`` wheel, the store falls back to qdrant-client's local mode at
``QDRANT_PATH`` itself, with a one-line notice. The two formats never mix: an Edge store that finds only
local-mode data at ``QDRANT_PATH`` refuses to search it (and names the command that rebuilds it); the indexer
rebuilds it, removing the old local-mode files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import re
import shutil
import stat
import threading
import uuid
from collections.abc import Hashable, Iterator, Mapping, Sequence
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, cast

from kbsearch.config import EDGE_GRAPH_FROM
from kbsearch.errors import StoreError, StoreHeld
from kbsearch.lexical import SparseVector
from kbsearch.qdrant import space
from kbsearch.qdrant.query import (
    DENSE,
    DENSE_SIZE,
    FIRST_VALUE_INDEXES,
    MAX_PATH_CHARS,
    PAYLOAD_INDEXES,
    RESCORE_ONCE,
    SPARSE,
    TENANT_INDEXES,
    ScoredChunk,
    dense_size,
    holds_value,
    index_missing,
    leg_read,
    path_filter,
    point_id,
    point_number,
    read_leg,
    scored_chunk,
    settled,
    settled_search,
)
from kbsearch.qdrant.readiness import NOT_A_FOLDER, owner_lock, path_problem
from kbsearch.qdrant.store import (
    EMBED_HASH,
    NAME_FIELD,
    STATE_FIELDS,
    ChunkPoint,
    NoteState,
    Store,
    add_state,
    check_vectors,
    is_tenant,
    metadata_written,
    named_vectors,
    paths_filter,
    payload_operations,
    storage_errors,
    writes,
)

if TYPE_CHECKING:
    import qdrant_edge as edge

    from kbsearch.config import Settings

logger = logging.getLogger(__name__)

FALLBACK_NOTICE = (
    "kbsearch: no Qdrant Edge wheel for this platform (pip install qdrant-edge-py); "
    "the embedded store runs on qdrant-client's slower local mode"
)
#: What a caller is told when the embedded store is held by another process (Edge locks its WAL; local mode its
#: folder): the cause, not "unreachable".
HELD_ELSEWHERE = (
    "another process has the embedded store open (a kbsearch index or serve?); searches answer once it closes"
)
#: What a caller is told when Qdrant Edge cannot load the shard's files (truncated, zeroed or garbled by a crash or a
#: disk, or unreadable): the index is a copy of the KB, rebuilt by the command named.
#: The way out of a store whose files are damaged (the index is a copy of the KB): every message naming damage ends
#: with it (:func:`rebuild_damaged`).
REBUILD_DAMAGED = "rebuild it with: kbsearch index --rebuild <your KB folder>"
UNLOADABLE = f"the embedded store's files cannot be loaded (damaged?): {REBUILD_DAMAGED}"
#: What a caller is told when the shard is on a read-only filesystem (Edge maps its files for writing even to search).
READ_ONLY = (
    "the embedded store is on a read-only filesystem, and Qdrant Edge opens its files for writing even to search: "
    "make its folder (QDRANT_PATH) writable, or copy it to one that is"
)
#: Characters of Qdrant Edge's own reason kept in the error (it names the file and what was wrong with it).
REASON_CHARS = 400
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}$")
SCROLL_PAGE = 2048
#: How a sealed segment's dense vectors are quantised, as ``edge_config.json`` spells it: int8 from the 99% quantile
#: (Qdrant's recommended scalar setting); a search rescores its oversampled candidates with the stored floats.
QUANTIZATION: dict[str, Any] = {"scalar": {"type": "int8", "quantile": 0.99}}
#: The saved index state's format (``<collection>.state.json``): another number, or other ``STATE_FIELDS``, and a
#: saved state is ignored (read again from the points, and saved anew). 2: a note's state says whether its first chunk
#: holds ``tag_keys`` (round 31).
STATE_FORMAT = 2
#: A saved state is refreshed note by note (a filtered scroll of the notes written since) up to this share of its
#: notes; past it, from a scroll of every point (one pass beats tens of thousands of path filters).
REFRESH_SHARE = 0.25
#: Paths per filtered scroll when refreshing notes (a ``match any`` of this many keywords).
REFRESH_BATCH = 1024
#: What a search reads of each segment, read ahead in this order when a search process opens the store, up to
#: ``QDRANT_EMBEDDED_READAHEAD_MB``: (files, read whole by every search). First what every search reads whole: each
#: sealed segment's int8 vectors (the dense leg scans them all) and the floats of the segment not yet sealed (scanned
#: exactly). Then what a search reads at random, each only when all of it fits in what is left: the payloads (of
#: the hits) and the sealed segments' floats (the candidates it rescores): once they are in the page cache, a page
#: fault there maps its neighbours too, so the process's RSS grows with them (10x the vault: 37 and 122 MB, search
#: RSS 318 -> 413 MB, warm p50 -12%; 100x: 351 MB, read by the default cap, and 1.2 GB, left to the searches: a
#: search reads ~150 payloads, each a page fault from disk when not read ahead). BENCHMARKS.md, "Reading ahead",
#: "Session 37: 100x warm search".
SEALED_FLOATS = "vector_storage-*/matrix.dat"
READAHEAD: tuple[tuple[str, bool], ...] = (
    ("vector_storage-*/quantized.data", True), ("vector_storage-*/vectors/chunk_*.mmap", True),
    ("payload_storage/page_*.dat", False), (SEALED_FLOATS, False),
)  # fmt: skip
#: Bytes asked for per ``POSIX_FADV_WILLNEED``: Linux reads at most its readahead window (a few MB) per call.
READAHEAD_STEP = 4 << 20


def local_mode_data(root: Path) -> bool:
    """True when ``root`` holds a qdrant-client local-mode store (its ``meta.json`` and ``collection/``)."""
    meta = root / "meta.json"
    if not meta.is_file() or not (root / "collection").is_dir():
        return False
    try:
        return isinstance(json.loads(meta.read_text(encoding="utf-8")).get("collections"), dict)
    except (OSError, ValueError, AttributeError):
        return False


def rebuild_hint(collection: str) -> str:
    return f"rebuild it with: kbsearch index <your KB folder>   (QDRANT_COLLECTION={collection})"


def edge_reason(exc: BaseException | str) -> str:
    """Qdrant Edge's own reason for a failure (it names the file and the fault) on one line, cut to
    :data:`REASON_CHARS`."""
    return " ".join(str(exc).split())[:REASON_CHARS]


def rebuild_damaged(root: Path | None = None) -> str:
    """:data:`REBUILD_DAMAGED`, and the store it is about when ``root`` is given (for the CLI and the log only:
    a caller of ``serve`` is told the public text)."""
    return REBUILD_DAMAGED + (f"   (QDRANT_PATH={root})" if root is not None else "")


def edge_failure(action: str, exc: Exception) -> StoreError:
    """A read Qdrant Edge could not answer: its reason (a payload page zeroed by a disk is ``Failed to decompress
    LZ4 value``) and the way out, for the CLI and the log; it was the exception's class alone (``Qdrant scroll failed
    (Exception)``), every sync and search stopping on it with nothing to go on."""
    reason = edge_reason(exc)
    return StoreError(
        f"Qdrant {action} failed ({type(exc).__name__}{': ' + reason if reason else ''}); if the "
        f"embedded store's files are damaged, {rebuild_damaged()}"
    )


#: Points whose BM25 vectors are read back at each open (:meth:`EdgeStore._check_sparse`); with at least
#: ``SPARSE_SAMPLE_MIN`` points read, all of them empty is damage (a chunk with no word has an empty one).
SPARSE_SAMPLE, SPARSE_SAMPLE_MIN = 32, 8
#: Loads a shard in a child process (:func:`probe_load`): exit 0 loaded, 1 refused with a Python exception.
_PROBE = (
    "import sys, qdrant_edge\n"
    "try:\n    qdrant_edge.EdgeShard.load(sys.argv[1], None).close()\n"
    "except Exception:\n    sys.exit(1)\n"
)
#: How long a probe may take (the load itself takes ~0.4 s at 10x the vault).
PROBE_TIMEOUT_S = 120.0


def probe_load(shard: Path) -> str | None:
    """Load ``shard`` in a child process: None when the child lived (loaded, or refused with an exception this
    process's own load will report), else how it died (the signal, and Edge's last words: its panic or the
    allocation that failed)."""
    import signal
    import subprocess
    import sys

    try:
        child = subprocess.run([sys.executable, "-c", _PROBE, str(shard)], capture_output=True,
                               timeout=PROBE_TIMEOUT_S, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):  # no child could be run, or it hung: let this process try
        return None
    if child.returncode >= 0:
        return None
    try:
        how = signal.Signals(-child.returncode).name
    except ValueError:
        how = f"signal {-child.returncode}"
    said = [ln.strip() for ln in child.stderr.decode("utf-8", "replace").splitlines()
            if "panicked" in ln or "memory allocation" in ln or ln.startswith("Error")]  # fmt: skip
    return edge_reason(f"{how}{': ' + said[0] if said else ''}")


def open_embedded(settings: Settings, search: bool = False, rebuild: bool = False) -> Store:
    """Qdrant Edge when its wheel is installed, else qdrant-client's local mode (with a one-line notice);
    ``QDRANT_EMBEDDED=local`` asks for local mode. ``search``: the store is opened to search it (an Edge store
    then has what a search reads read ahead, :meth:`EdgeStore.read_ahead`). ``rebuild``: an Edge collection is
    dropped unopened (``kbsearch index --rebuild``), so a shard whose files cannot be loaded is rebuilt too."""
    root = Path(settings.qdrant_path)
    collection = settings.qdrant_collection
    problem = path_problem(root)
    if problem is not None:
        raise StoreError(problem, NOT_A_FOLDER)
    if settings.qdrant_embedded == "local":
        return open_local_mode(root, collection, settings.embedding_dimensions)
    try:
        import qdrant_edge  # noqa: F401
    except ImportError:
        logger.warning(FALLBACK_NOTICE)
        return open_local_mode(root, collection, settings.embedding_dimensions)
    store = EdgeStore(
        root, collection, settings.embedding_dimensions, hnsw_m=settings.qdrant_embedded_hnsw_m,
        graph_from=settings.qdrant_embedded_graph_from, load=not rebuild,
    )  # fmt: skip
    if rebuild:
        store.drop()
    if search:
        store.read_ahead(settings.qdrant_embedded_readahead_mb << 20)
    return store


def open_local_mode(root: Path, collection: str, dimensions: int) -> Store:
    from qdrant_client import QdrantClient

    if (root / "edge" / collection / "edge_config.json").is_file():
        raise StoreError(
            f"the embedded store at {root} was built by Qdrant Edge, which is not installed here: "
            "pip install qdrant-edge-py, or delete the folder and run kbsearch index"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        client = QdrantClient(path=str(root))
    except RuntimeError as exc:  # already open by another process
        raise StoreHeld(f"cannot open the embedded store at {root}: another process has it open ({exc})",
                        HELD_ELSEWHERE) from None  # fmt: skip
    return Store(client, collection, dimensions, embedded=True)


class EdgeStore(Store):
    """The indexer's :class:`Store` and the search's retrieval call, on one Qdrant Edge shard."""

    def __init__(
        self,
        root: Path,
        collection: str,
        dimensions: int,
        hnsw_m: int = 0,
        graph_from: int = EDGE_GRAPH_FROM,
        load: bool = True,
        payload_indexes: Mapping[str, str] | None = None,
        share_payloads: bool = True,
    ) -> None:
        if not COLLECTION_NAME.match(collection):
            raise StoreError(f"QDRANT_COLLECTION {collection!r} is not a usable name (letters, digits, _ . -)")
        self.collection = collection
        self.dimensions = dimensions
        self.hnsw_m = (
            hnsw_m  # a sealed segment's graph degree; 0: none, its int8 vectors scanned (QDRANT_EMBEDDED_HNSW_M)
        )
        self.graph_from = graph_from  # points in a segment before it is sealed (QDRANT_EMBEDDED_GRAPH_FROM)
        # the payload indexes a shard this store creates gets with the collection: PAYLOAD_INDEXES but the
        # FIRST_VALUE_INDEXES, which it creates before it writes the first point holding a value for their field
        # (another set, all of it created with the collection: what one costs a seal, python -m
        # kbsearch_tools.bench_seal)
        self.payload_indexes = dict(
            {k: v for k, v in PAYLOAD_INDEXES.items() if k not in FIRST_VALUE_INDEXES}
            if payload_indexes is None else payload_indexes
        )  # fmt: skip
        self.first_value_indexes = (
            {k: v for k, v in PAYLOAD_INDEXES.items() if k in FIRST_VALUE_INDEXES} if payload_indexes is None else {}
        )
        # a note's shared payload values handed to Edge once (upsert; False: with every point, as before session 26:
        # what that saves, python -m kbsearch_tools.bench_upsert)
        self.share_payloads = share_payloads
        self.embedded = True
        self.root = root
        self.path = root / "edge" / collection
        self._lock = threading.RLock()
        self._open_shard: edge.EdgeShard | None = None  # the shard (:attr:`_shard`)
        self._absent_known: frozenset[str] | None = None  # of the open shard (see _absent)
        self._written = False
        self._open_need = space.OPEN_RESERVE
        self._since_cycle = 0  # points written since the shard was last optimised and reopened
        # The index's state (what indexed_state returns), saved beside the shard so that a sync that changes nothing
        # reads one file instead of every point's payload (see "state" below).
        self._state_checked = False  # the saved state was compared with the shard before this process touched it
        self._saved: list[Any] | None = None  # the saved file's fingerprint, when it described the shard then
        self._state: dict[str, NoteState] | None = None  # the state as of the last read, but for ``_dirty``
        self._dirty: set[str] = set()  # notes written since ``_state`` (or the saved file) was exact
        # notes with no points in ``_state`` whose every point this process wrote, once each: their state is the
        # payloads written, kept as compact JSON (a full index of the 100x vault holds 34,600 of them)
        self._fresh: dict[str, str] = {}
        self._closing = threading.Event()  # tells a readahead still running that the shard closed
        self._reader: threading.Thread | None = None
        self._readahead_bytes = 0  # what :meth:`read_ahead` was allowed (0: nothing read ahead)
        self._ids_numeric: bool | None = None  # the points' id kind (see _numeric_ids), once known
        self._owner: BinaryIO | None = None  # the lock file, open while this process owns the shard (see _own)
        if load and (self.path / "edge_config.json").is_file():
            self._shard = self._load()
            self._check_sparse()

    @property
    def _shard(self) -> edge.EdgeShard | None:
        """The open shard (None: none is): each one opened or created anew has its schema read again
        (:meth:`_absent`)."""
        return self._open_shard

    @_shard.setter
    def _shard(self, shard: edge.EdgeShard | None) -> None:
        self._open_shard, self._absent_known = shard, None

    @property
    def _owner_file(self) -> Path:
        return owner_lock(self.path)

    def _own(self) -> None:
        """Take the shard for this process, from before it is created or opened until :meth:`close`: an exclusive
        ``flock`` on a file beside it, released by the kernel when the process ends. Edge's own lock (its WAL's)
        is taken only once a shard exists and is let go while :meth:`_cycle` reopens it, so two syncs into a store
        not built yet both created it, into the same files (the other's run failed on a segment file gone, "Storage
        file not found", or its flush did), and a process opening the store while a sync cycled could take it from
        the sync. Now the second process is told another holds the store, and nothing of the shard is touched. A
        lock file that cannot be made (a read-only folder) leaves Edge's lock alone, as before. A store dropped
        without :meth:`close` lets go of both with its last reference, as of Edge's alone before."""
        if self._owner is not None:
            return
        try:
            self._owner_file.parent.mkdir(parents=True, exist_ok=True)
            # read-only and non-blocking: a FIFO in its place (or a link to a device) opens at once, never waits
            fd = os.open(self._owner_file, os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except OSError:
            return
        handle = os.fdopen(fd, "rb")  # closed (and the lock let go) with the store's last reference too
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise StoreHeld(self._held_elsewhere(), HELD_ELSEWHERE) from None
        self._owner = handle

    def _held_elsewhere(self) -> str:
        """The store is held by another process: which (its pid, from ``/proc/locks``), for the operator who must
        stop it. It said only "another process has it open" (``kbsearch invoke IndexerFunction`` while a
        ``kbsearch serve`` holds the store, ``kbsearch eval --store``, ``kbsearch mcp``); the API's answer keeps
        its public reason."""
        from kbsearch.qdrant.readiness import holder_named, lock_holder

        holder = lock_holder(self._owner_file) or lock_holder(self.path / "wal")
        who = f" (pid {holder}: {holder_named(holder)})" if holder else ""
        return f"cannot open the embedded store at {self.path}: another process has it open{who}"

    def _disown(self) -> None:
        handle, self._owner = self._owner, None
        if handle is not None:
            handle.close()

    def read_ahead(self, limit_bytes: int) -> None:
        """Have the kernel read what a search reads of each segment (:data:`READAHEAD`, up to ``limit_bytes``)
        into the page cache, from a background thread, without waiting for it. Edge drops its files from the page
        cache when a shard closes and maps them for random access (no readahead), so a fresh process's first
        searches otherwise read them in 4 KiB page faults (0.5 s for the first search at 10x the vault, 1.6 s at
        100x; with this, 0.12 s and 0.3 s), and at 10x every search reads the floats it rescores with from
        disk. Linux only (``os.posix_fadvise``); best effort: a file that cannot be read is left to the search,
        which reports it; the store's lock is not taken (nothing of the shard is touched)."""
        if limit_bytes <= 0 or self._shard is None or not hasattr(os, "posix_fadvise"):
            return
        self._readahead_bytes = limit_bytes
        self._closing = threading.Event()
        self._reader = threading.Thread(
            target=read_ahead, args=(self.path, limit_bytes, self._closing), name="kbsearch-readahead", daemon=True
        )
        self._reader.start()

    def _tuning(self) -> dict[str, Any]:
        """The segment settings, as ``edge_config.json`` spells them. A segment takes new points until it holds
        ``graph_from`` of them; then the optimiser seals it: its vectors again as int8 (scalar quantisation, the 99%
        quantile), which a dense search scans and rescores with the floats (the search's ``quantization`` params),
        and its HNSW graph when ``hnsw_m`` > 0. No segment grows past that size, so each seal is bounded in time and
        memory. Deleted points are vacuumed when they are a fifth of a segment (Qdrant's default). Dense vectors
        live on disk (mapped, read on demand: neither opening the store nor a no-change sync reads them, and a
        process's memory does not grow with the collection)."""
        segment_kb = max(1, self.graph_from * self.dimensions * 4 // 1024)  # Qdrant sizes segments by vector bytes
        return {
            "m": self.hnsw_m, "ef_construct": 100, "on_disk": True, "max_segment_size": segment_kb,
            "indexing_threshold": segment_kb, "quantization": QUANTIZATION,
        }  # fmt: skip

    def _config(self) -> edge.EdgeConfig:
        import qdrant_edge as edge

        t = self._tuning()
        scalar = t["quantization"]["scalar"]
        return edge.EdgeConfig(
            vectors={DENSE: edge.EdgeVectorParams(size=self.dimensions, distance=edge.Distance.Cosine,
                                                  on_disk=t["on_disk"])},
            sparse_vectors={SPARSE: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)},
            hnsw_config=edge.HnswIndexConfig(m=t["m"], ef_construct=t["ef_construct"], full_scan_threshold=10_000),
            quantization_config=edge.ScalarQuantizationConfig(type=edge.ScalarType.Int8, quantile=scalar["quantile"]),
            optimizers=edge.EdgeOptimizersConfig(indexing_threshold=t["indexing_threshold"],
                                                 max_segment_size=t["max_segment_size"]),
        )  # fmt: skip

    def _load(self, config: edge.EdgeConfig | None = None) -> edge.EdgeShard:
        import qdrant_edge as edge

        # what opening (and then reading) may allocate: checked again before each query (kbsearch serve)
        holes = space.unbacked_bytes(self.path) if space.reads_allocate(self.path) else 0
        self._open_need = holes + space.OPEN_RESERVE
        space.require(self.path, self._open_need, "opening the index")
        owned = self._owner is not None
        self._own()
        try:
            with self._opening():
                return edge.EdgeShard.load(str(self.path), config)
        except StoreError:
            if not owned:
                self._disown()
            raise
        except Exception as exc:  # the shard's WAL is locked by another process, or the files are damaged
            if not owned:
                self._disown()
            if "WouldBlock" in str(exc):
                raise StoreHeld(self._held_elsewhere(), HELD_ELSEWHERE) from None
            if space.read_only(self.path):  # damaged is not what to suggest: --rebuild cannot write there either
                raise StoreError(f"cannot open the embedded store at {self.path}: it is on a read-only filesystem, "
                                 "and Qdrant Edge opens its files for writing even to search: make its folder "
                                 f"writable, or copy it to a writable QDRANT_PATH   (QDRANT_PATH={self.root})",
                                 READ_ONLY) from None  # fmt: skip
            # Edge's reason names the file and the fault (a segment.json cut short by a crash, say); it was
            # reported as its class alone ("Exception"), and no command could rebuild the store (--rebuild opened
            # it first, and failed the same way)
            reason = edge_reason(exc) or type(exc).__name__
            raise StoreError(f"cannot open the embedded store at {self.path}: Qdrant Edge cannot load its files "
                             f"({reason}); if they are damaged, {rebuild_damaged(self.root)}",
                             UNLOADABLE) from None  # fmt: skip

    def _check_sparse(self) -> None:
        """Read a sample of the points' BM25 vectors back and search the sparse leg with one of them, which must find
        a point. A zeroed page of the sparse vectors (``vector_storage-bm25/store/page_0.dat``: a disk's lost
        writes) loads, and every search then answered 0 hits from its lexical leg with nothing said (and a sync that
        found no note changed said ``sync done``): its vectors read back empty. Now the store is named damaged, with
        ``--rebuild``. Costs a scroll of :data:`SPARSE_SAMPLE` points and one sparse query per open."""
        import qdrant_edge as edge

        shard = self._shard
        if shard is None:
            return
        try:
            records, _ = shard.scroll(edge.ScrollRequest(limit=SPARSE_SAMPLE, with_payload=False,
                                                         with_vector=[SPARSE]))  # fmt: skip
            # a point written without a sparse vector has none (not an empty one): not counted
            named = [r.vector.get(SPARSE) for r in records if isinstance(r.vector, dict)]
            vectors = [v for v in named if isinstance(v, edge.SparseVector)]
            held = [v for v in vectors if len(v.indices)]
            found = len(vectors) < SPARSE_SAMPLE_MIN and not held  # too few to tell
            if held:  # the sparse leg must find a point by a stored vector (its index read, not only its storage;
                # not that point itself: points sharing their words tie, and any of them may come first)
                probe = edge.QueryRequest(limit=1, query=edge.Query.Nearest(held[0], using=SPARSE),
                                          with_payload=False)  # fmt: skip
                found = bool(shard.query(probe))
        except Exception as exc:  # a read that fails is reported by the search that makes it (edge_failure)
            logger.debug("the sparse check could not read the store: %s", type(exc).__name__)
            return
        if not found:
            self._shard = None
            with contextlib.suppress(Exception):
                shard.close()
            self._disown()
            raise StoreError(f"cannot use the embedded store at {self.path}: its BM25 (sparse) vectors read back "
                             "empty or unsearchable, so every keyword search would find nothing: its files are "
                             f"damaged: {rebuild_damaged(self.root)}", UNLOADABLE)  # fmt: skip

    @property
    def _opening_file(self) -> Path:
        return self.path.parent / f"{self.collection}.opening"

    @contextlib.contextmanager
    def _opening(self) -> Iterator[None]:
        """Mark the shard as being opened, for as long as Edge loads it. Some damage makes Edge abort the process
        while loading (a bit-flipped ``mutable_id_tracker.mappings``: a 48 GB allocation, ``SIGABRT``; or ``SIGBUS``),
        which no Python code can catch or explain: it left Rust's message and exit -6, every run, naming no way out.
        A mark left behind says the last open never finished: this open first loads the shard in a child process
        (:func:`probe_load`), and when that dies too the store is named damaged with ``--rebuild`` instead of the
        process aborting again; when the child loads it (the last opener was killed, say), it is opened as ever.
        Costs one file created and removed per open (the owner lock is held: no other process opens it meanwhile);
        best effort where the file cannot be written (a read-only folder)."""
        path = self._opening_file
        if path.is_file():
            died = probe_load(self.path)
            if died is not None:
                raise StoreError(f"cannot open the embedded store at {self.path}: Qdrant Edge aborts loading its "
                                 f"files ({died}); they are damaged: {rebuild_damaged(self.root)}",
                                 UNLOADABLE)  # fmt: skip
        mark: Path | None = path
        try:
            path.write_bytes(b"%d\n" % os.getpid())
        except OSError:
            mark = None
        try:
            yield
        finally:  # loaded, or refused with an exception this process reports: either way it lived through it
            if mark is not None:
                with contextlib.suppress(OSError):
                    mark.unlink()

    @property
    def shard(self) -> edge.EdgeShard:
        if self._shard is None:
            raise StoreError(f"collection {self.collection!r} does not exist in {self.root}")
        return self._shard

    def close(self) -> None:
        """Flush and close; a failure to make the writes durable (a full disk) is a StoreError for the report.
        After writes, the optimiser runs once: it seals only a segment past ``graph_from`` points and vacuums
        only a segment a fifth deleted, so it returns at once when nothing pays (nothing to seal:
        a full index of the 10x vault spent 17% of its time and doubled its memory re-writing its one segment)."""
        self._closing.set()
        with self._lock:
            if self._shard is None:
                self._disown()
                return
            try:
                if self._written:
                    need = space.allocated_bytes(self.path) + space.CREATE_RESERVE
                    space.require(self.path, need, "optimising the index after the sync")
                    with storage_errors("flushing the embedded store"):
                        self._shard.optimize()
                        self._shard.flush()
                self._save_state()
            finally:
                shard, self._shard = self._shard, None
                with contextlib.suppress(Exception):
                    shard.close()
                self._disown()

    def _cycle(self) -> None:
        """Optimise (seal the segment that just reached ``graph_from`` points), flush, and reopen: the
        pages written and built so far are unmapped, so a long index streams through a bounded memory instead
        of holding every vector it wrote (at 100x the vault, 1.3 GB of vectors)."""
        space.require(self.path, space.allocated_bytes(self.path) + space.CREATE_RESERVE, "optimising the index")
        with self._lock, storage_errors("optimising the embedded store"):
            self.shard.optimize()
            self.shard.flush()
            self.shard.close()
            self._shard = None
            self._shard = self._load()
            self._since_cycle = 0

    def flush_writes(self, optimize: bool = False) -> None:
        """Make the writes so far durable while the store stays open (a long-running ``kbsearch serve`` that
        syncs); ``optimize`` also merges segments (what :meth:`close` does once per sync)."""
        with self._lock:
            if self._shard is None or not self._written:
                return
            if optimize:
                need = space.allocated_bytes(self.path) + space.CREATE_RESERVE
                space.require(self.path, need, "optimising the index after the sync")
            with storage_errors("flushing the embedded store"):
                if optimize:
                    self._shard.optimize()
                self._shard.flush()
            if optimize:
                self._save_state()

    # -- schema -----------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        if self._shard is None and local_mode_data(self.root):
            raise StoreError(
                f"{self.root} holds an index from qdrant-client's local mode, which the embedded Qdrant Edge store "
                f"does not read; {rebuild_hint(self.collection)}",
                f"the embedded store holds an index Qdrant Edge does not read; {rebuild_hint(self.collection)}",
            )
        return self._shard is not None

    # -- the embedding signature (model, dimensions, input format) the collection was built with ---------------
    @property
    def _metadata_file(self) -> Path:
        return self.path.parent / f"{self.collection}.metadata.json"

    def metadata(self) -> dict[str, Any]:
        """What Qdrant Cloud keeps as collection metadata; an Edge shard has none, so a file beside it."""
        try:
            with space.open_regular(self._metadata_file) as handle:
                data = json.loads(handle.read().decode("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:
            problem: str | None = str(exc) if type(exc) is ValueError else type(exc).__name__
        else:
            problem = None if isinstance(data, dict) else "not a JSON object"
        if problem is not None:
            # it records the embedding the vectors were made with and the groups recorded on the chunks: neither
            # can be guessed (read as none, another model's vectors would be adopted); a sync stopped on it for good
            # with "cannot read the collection's metadata (JSONDecodeError)", naming neither the file nor a way out
            raise StoreError(f"cannot read the collection's metadata ({problem}) in {self._metadata_file}: "
                             f"{rebuild_damaged(self.root)}", UNLOADABLE) from None  # fmt: skip
        return data

    @writes
    def set_metadata(self, metadata: dict[str, Any]) -> None:
        with storage_errors("recording the collection's metadata"):
            tmp = self._metadata_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({k: v for k, v in metadata.items() if v is not None}), encoding="utf-8")
            tmp.replace(self._metadata_file)
        metadata_written()

    @writes
    def merge_metadata(self, values: dict[str, Any]) -> None:
        with self._lock:
            self.set_metadata(self.metadata() | values)

    def metadata_stamp(self) -> Hashable:
        """This process's metadata writes (:func:`~kbsearch.qdrant.store.metadata_written`) and the metadata file's
        identity (inode, size, modification time; None when there is none): a stat, no read of the file."""
        try:
            found = os.stat(self._metadata_file)
        except OSError:
            return super().metadata_stamp(), None
        return super().metadata_stamp(), (found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)

    @writes
    def drop(self) -> None:
        self._closing.set()
        with self._lock:
            if self._shard is None and self.path.exists():
                self._own()  # never delete the files of a shard another process has open
            if self._shard is not None:
                with contextlib.suppress(Exception):
                    self._shard.close()
                self._shard = None
            with storage_errors(f"deleting the collection {self.collection!r}"):
                # every file, or an error naming the one that stays: ignore_errors left an immutable (chattr +i) or
                # undeletable segment behind a rebuild that said "done", and the store no longer opened
                if self.path.exists():
                    shutil.rmtree(self.path)
                self._metadata_file.unlink(missing_ok=True)
                metadata_written()
                self._state_file.unlink(missing_ok=True)
                self._opening_file.unlink(missing_ok=True)
            self._state_checked, self._saved, self._state, self._dirty = True, None, None, set()
            self._fresh, self._ids_numeric = {}, None

    @writes
    def ensure_collection(self, signature: dict[str, Any] | None = None) -> bool:
        import qdrant_edge as edge

        if self._shard is not None:
            self.check_schema()
            self._tune()
            self.ensure_payload_indexes()
            return False
        if local_mode_data(self.root):
            logger.warning(
                "kbsearch: %s held an index from qdrant-client's local mode; rebuilding it in Qdrant Edge", self.root
            )
            with storage_errors("removing the local-mode index"):
                for name in ("collection", "meta.json", ".lock"):
                    target = self.root / name
                    if target.is_dir():
                        shutil.rmtree(target)
                    elif target.exists():
                        target.unlink()
        space.require(self.root, space.CREATE_RESERVE, "creating the collection")
        with self._lock:
            self._own()
            if (self.path / "edge_config.json").is_file():  # created by a process that held it until now
                self._shard = self._load()
                return self.ensure_collection(signature)
        with self._lock, storage_errors(f"creating the collection {self.collection!r}"):
            self._state_file.unlink(missing_ok=True)
            self._shard = edge.EdgeShard.create(str(self.path), self._config())
            self._state_checked, self._saved, self._state, self._dirty = True, None, {}, set()
            self._fresh, self._ids_numeric = {}, True
            for name, kind in self.payload_indexes.items():
                self._shard.update(edge.UpdateOperation.create_field_index(name, edge_index_schema(name, kind)))
            self._written = True
        self.set_metadata(signature or {})
        return True

    def _tune(self) -> None:
        """Give a collection made with other graph or segment settings (an earlier version's, or other
        QDRANT_EMBEDDED_* values) the current ones: they apply to the segments the optimiser writes from now on."""
        try:
            config = json.loads((self.path / "edge_config.json").read_text(encoding="utf-8"))
            hnsw, optimizers = config.get("hnsw_config") or {}, config.get("optimizers") or {}
            dense = (config.get("vectors") or {}).get(DENSE) or {}
        except (OSError, ValueError, AttributeError):
            return  # check_schema has just read it; a race with a deletion is the next call's to report
        current = {"m": hnsw.get("m"), "ef_construct": hnsw.get("ef_construct"), "on_disk": dense.get("on_disk"),
                   "max_segment_size": optimizers.get("max_segment_size"),
                   "indexing_threshold": optimizers.get("indexing_threshold"),
                   "quantization": config.get("quantization_config")}  # fmt: skip
        wanted = self._tuning()
        if current != wanted:
            self._check_state()
            changed = sorted(k for k in wanted if current.get(k) != wanted[k])
            logger.warning(
                "kbsearch: the embedded store's segment settings changed (%s); the next sync that writes re-seals "
                "every segment once with them (keeping their sizes; a graph is rebuilt when QDRANT_EMBEDDED_HNSW_M "
                "> 0): minutes at 100x the vault", ", ".join(changed),
            )  # fmt: skip
            with self._lock, storage_errors("updating the collection's settings"):
                self.shard.close()
                self._shard = None
                self._shard = self._load(self._config())

    @writes
    def ensure_payload_indexes(self) -> None:
        """Create the payload indexes a shard made by an older version lacks (``access``), and make a
        :data:`TENANT_INDEXES` index made before without ``is_tenant`` a tenant index (Edge rebuilds it in place
        from the payloads; the segments written from then on group their points by its values). The
        :data:`FIRST_VALUE_INDEXES` are not among them: they come with their field's first value (:meth:`upsert`)."""
        with self._lock, storage_errors("creating payload indexes"):
            schema = self.shard.info().payload_schema or {}
            self._create_indexes(
                {
                    name: kind
                    for name, kind in self.payload_indexes.items()
                    if name not in schema or (name in TENANT_INDEXES and not is_tenant(schema[name]))
                }
            )

    def _create_indexes(self, wanted: Mapping[str, str]) -> None:
        """Create these payload indexes (field -> kind) in the shard (under the store's lock)."""
        import qdrant_edge as edge

        if not wanted:
            return
        space.require(self.path, space.CREATE_RESERVE, "creating payload indexes")
        self._check_state()
        for name, kind in wanted.items():
            self._absent_known = None  # the schema changes
            self.shard.update(edge.UpdateOperation.create_field_index(name, edge_index_schema(name, kind)))
            self._written = True

    def _absent(self) -> frozenset[str]:
        """The :data:`FIRST_VALUE_INDEXES` fields the shard has no index of: no point holds a value of them
        (:meth:`_index_values` creates the index before the first such point is written), so every filter, facet
        and ordering on one is settled here (:func:`kbsearch.qdrant.query.settled`) rather than sent to Edge, which
        would read every candidate's payload to find nothing, or refuse. Read of the shard's own schema, so it holds
        across a close and reopen (none in a store made before: it has every index), once per shard object this
        store opens and again after it creates an index (the only schema change; no other process writes the shard
        while this one holds it)."""
        if not self.first_value_indexes:
            return frozenset()
        with self._lock:
            if self._absent_known is None:
                schema = self.shard.info().payload_schema or {}
                self._absent_known = frozenset(n for n in self.first_value_indexes if n not in schema)
            return self._absent_known

    def _index_values(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Before a write of ``payloads``: create the index of each :data:`FIRST_VALUE_INDEXES` field the shard has
        none of and one of them holds a value of (:func:`kbsearch.qdrant.query.holds_value`). Under the store's
        lock, before the write (a search never sees a value its field's index does not hold)."""
        absent = self._absent()
        if absent:
            self._create_indexes({name: kind for name, kind in self.first_value_indexes.items()
                                  if name in absent and any(holds_value(p.get(name)) for p in payloads)})  # fmt: skip

    def _settled_filter(self, where: dict[str, Any] | None) -> edge.Filter | Literal[False] | None:
        """A filter's JSON as Edge takes it, :func:`settled` for the fields without their index first: False when
        it matches no point (nothing is asked), None when it matches every point."""
        verdict = settled(where, self._absent())
        if isinstance(verdict, bool):
            return None if verdict else False
        return edge_filter(verdict)

    def _edge_config(self) -> dict[str, Any]:
        try:
            config = json.loads((self.path / "edge_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = None
        if not isinstance(config, dict):
            raise StoreError(f"the embedded store at {self.path} has no readable edge_config.json")
        return config

    def dense_size(self) -> int | None:
        return dense_size(self._edge_config().get("vectors"))

    def rescore_once(self) -> bool:
        """Whether a dense search should rescore its candidates once per search rather than in each sealed segment
        (:func:`kbsearch.qdrant.query.dense_search`): when the sealed segments' floats are not all read ahead into
        the page cache (:data:`READAHEAD`: their kind is read only when it fits whole in what is left of the cap),
        rescoring in each segment reads ``2 x limit`` of them per segment from disk (100x the vault: 12,400 a
        search, its RSS +460 MB); when they are (10x) or there are none, rescoring once costs more than it saves."""
        floats = self._allocated(SEALED_FLOATS)
        before = sum(self._allocated(pattern) for pattern, _ in READAHEAD if pattern != SEALED_FLOATS)
        return floats > 0 and before + floats > self._readahead_bytes

    def _allocated(self, pattern: str) -> int:
        """Bytes on disk of the segments' files matching ``pattern`` (sparse holes not counted)."""
        total = 0
        for file in self.path.glob(f"segments/*/{pattern}"):
            with contextlib.suppress(OSError):
                total += file.stat().st_blocks * 512
        return total

    def check_schema(self) -> None:
        config = self._edge_config()
        dense = (config.get("vectors") or {}).get(DENSE)
        sparse = (config.get("sparse_vectors") or {}).get(SPARSE)
        check_vectors(
            self.collection, self.dimensions, f"delete {self.path}",
            dense=dense if isinstance(dense, dict) else None, sparse=sparse if isinstance(sparse, dict) else None,
        )  # fmt: skip

    # -- state --------------------------------------------------------------------------------------------------
    # A sync that changes nothing must not cost what the index holds: reading every point's state fields is linear
    # in the store (315,200 payloads at 100x the vault). So the state is saved beside the shard when a process that
    # knows it closes the store, with the shard's fingerprint: each segment's version (the number of the last
    # operation that changed it: Edge bumps it on every write, WAL replay included) and the point count. A later
    # process uses the file only while the shard still has that fingerprint; it reads the points of the notes it
    # writes again before saving, and every point only when it has no valid state to start from.
    @property
    def _state_file(self) -> Path:
        return self.path.parent / f"{self.collection}.state.json"

    def _fingerprint(self) -> list[Any]:
        import qdrant_edge as edge

        with self._lock:
            manifest = self.shard.snapshot_manifest()
            points = int(self.shard.count(edge.CountRequest(exact=True)))
        segments = sorted([str(k), int(v["segment_version"])] for k, v in manifest.items())
        return [STATE_FORMAT, STATE_FIELDS, points, segments]

    def _check_state(self) -> None:
        """Before this process reads the state or changes the shard: is the saved state the shard's?"""
        if self._state_checked or self._shard is None:
            return
        self._state_checked = True
        try:
            with space.open_regular(self._state_file) as handle:
                header = json.loads(handle.readline(1 << 20))
            self._saved = header if header == self._fingerprint() else None
        except Exception:  # no file, a damaged one, or a shard Edge cannot describe: the points are read instead
            self._saved = None

    def _writing(self, paths: set[str]) -> None:
        """Before a write of these notes' points: their state is read again before it is saved."""
        self._check_state()
        self._dirty |= paths
        for path in paths:
            self._fresh.pop(path, None)

    def _upserted(self, chunks: list[ChunkPoint]) -> None:
        """After an upsert: a note the state knows had no points (an added note; every note of a full index into
        a new store) gets its state from the payloads written, as a scroll would read them, unless a chunk is
        written twice; any other note's state is read again before it is saved."""
        notes: dict[str, NoteState] = {}
        for chunk in chunks:
            path, index = chunk.path, chunk.chunk_index
            if path not in notes and path in self._fresh:
                notes[path] = NoteState.decode(json.loads(self._fresh[path]))
            elif path not in notes and (self._state is None or path in self._state or path in self._dirty):
                self._writing({path})
                continue
            note = notes.get(path)
            as_itself = chunk.payload.get("path") == path and chunk.payload.get("chunk_index") == index
            if not as_itself or (note and any(index in i for i in note.chunks.values())):
                notes.pop(path, None)
                self._writing({path})  # written twice (or not as itself): read again
                continue
            add_state(notes, chunk.payload)
        for path, note in notes.items():
            if path not in self._dirty:
                self._fresh[path] = json.dumps(note.encode(), separators=(",", ":"))

    def _read_saved(self) -> dict[str, NoteState] | None:
        """The saved state (its fingerprint checked by :meth:`_check_state`); None when it cannot be used (and
        then it is saved anew)."""
        if self._saved is None:
            return None
        try:
            with space.open_regular(self._state_file) as handle:
                header, body = json.loads(handle.readline()), json.loads(handle.read())
            if header == self._saved and isinstance(body, dict):
                return {str(path): NoteState.decode(value) for path, value in body.items()}
        except (OSError, ValueError, TypeError):
            pass
        self._saved = None
        return None

    def _current_state(self) -> dict[str, NoteState]:
        """The state now: the saved or last-read state with the notes written since read again, else every point."""
        self._check_state()
        state = self._state if self._state is not None else self._read_saved()
        if state is not None and len(self._dirty) <= REFRESH_SHARE * max(len(state) + len(self._fresh), 1):
            dirty = sorted(self._dirty)
            for i in range(0, len(dirty), REFRESH_BATCH):
                paths = dirty[i : i + REFRESH_BATCH]
                for path in paths:
                    state.pop(path, None)
                selector = edge_filter({"must": [{"key": "path", "match": {"any": paths}}]})
                for _, payload in self._scroll(STATE_FIELDS, selector):
                    add_state(state, payload)
            state.update((path, NoteState.decode(json.loads(note))) for path, note in self._fresh.items())
        else:
            state = {}
            for _, payload in self._scroll(STATE_FIELDS):
                add_state(state, payload)
        self._state, self._dirty, self._fresh = state, set(), {}
        return state

    def indexed_state(self) -> dict[str, NoteState]:
        # the shard's lock is taken page by page (a search of kbsearch serve waits for a page, not for the whole
        # state); the state itself is the syncing thread's, as the writes are
        with storage_errors("reading the index's state"):
            return dict(self._current_state())

    def _save_state(self) -> None:
        """Save the state beside the shard (after its writes are flushed) when this process knows it and the file
        does not say it; best effort: a state that cannot be saved is read from the points next time."""
        if not self._state_checked or (self._state is None and self._saved is None):
            return  # never looked at, or nothing known: a file that no longer fits is never used
        try:
            fingerprint = self._fingerprint()
            if fingerprint == self._saved and not self._dirty and not self._fresh:
                return
            state = self._current_state()
            body = json.dumps({path: st.encode() for path, st in state.items()}, ensure_ascii=False,
                              separators=(",", ":"))  # fmt: skip
            header = json.dumps(fingerprint, separators=(",", ":"))
            space.require(self.path, 2 * (len(body) + len(header)) + space.WRITE_RESERVE, "saving the index state")
            tmp = self._state_file.with_suffix(".tmp")
            with tmp.open("w", encoding="utf-8") as handle:
                handle.write(header + "\n" + body)
            tmp.replace(self._state_file)
            self._saved = fingerprint
        except Exception as exc:  # the index is written; only the next sync's shortcut is lost
            logger.info("kbsearch: the index state was not saved (%s); the next sync reads it from the points",
                        type(exc).__name__)  # fmt: skip
            with contextlib.suppress(OSError):
                self._state_file.unlink(missing_ok=True)
                self._state_file.with_suffix(".tmp").unlink(missing_ok=True)

    def _scroll(
        self, fields: list[str] | bool, selector: edge.Filter | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point (or those ``selector`` matches) as (id, payload with ``fields``)."""
        import qdrant_edge as edge

        if fields and selector is None:
            self._prefetch_payload()
        offset: Any = None
        while True:
            with self._lock:
                records, offset = self.shard.scroll(
                    edge.ScrollRequest(offset=offset, limit=SCROLL_PAGE, filter=selector, with_payload=fields,
                                       with_vector=False)
                )  # fmt: skip
            for record in records:
                yield str(record.id), dict(record.payload or {})
            if offset is None:
                return

    def _prefetch_payload(self) -> None:
        """Read the payload files once, in order, before a scroll that reads every payload. Edge drops its
        files from the page cache when a shard closes, and maps the payload for random access (no readahead):
        a fresh process then reads it in 4 KiB page faults, ~1 s for the 10x vault's 35 MB against ~0.05 s
        sequentially. Best effort: an unreadable file is the scroll's to report."""
        buffer = bytearray(1 << 20)
        for file in sorted(self.path.glob("segments/*/payload_storage/*.dat")):
            with contextlib.suppress(OSError), file.open("rb", buffering=0) as handle:
                while handle.readinto(buffer):
                    pass

    def note_points(self, paths: list[str]) -> list[tuple[dict[str, Any], list[float] | None]]:
        import qdrant_edge as edge

        if not paths:
            return []
        selector = edge_filter({"must": [{"key": "path", "match": {"any": sorted(set(paths))}}]})
        out: list[tuple[dict[str, Any], list[float] | None]] = []
        offset: Any = None
        while True:
            with self._lock, storage_errors("reading notes' points"):
                records, offset = self.shard.scroll(
                    edge.ScrollRequest(offset=offset, limit=SCROLL_PAGE, filter=selector,
                                       with_payload=[*STATE_FIELDS, EMBED_HASH, NAME_FIELD], with_vector=[DENSE])
                )  # fmt: skip
            for record in records:
                vectors = record.vector if isinstance(record.vector, dict) else {}
                dense = vectors.get(DENSE)
                out.append(
                    (
                        dict(record.payload or {}),
                        [float(x) for x in cast(list[float], dense)] if isinstance(dense, list) else None,
                    )
                )
            if offset is None:
                return out

    def count(self) -> int:
        import qdrant_edge as edge

        with self._lock:
            return int(self.shard.count(edge.CountRequest(exact=True)))

    # -- writes ------------------------------------------------------------------------------------------------
    @writes
    def upsert(self, chunks: list[ChunkPoint]) -> None:
        """Writes ``chunks``; each note's values that all its chunks here share are handed to Edge once, by a
        ``set_payload`` of the note's points after their upsert (:func:`shared_payloads`: the stored payloads are
        the chunks' own), as Edge converts a payload value by value under the interpreter lock."""
        import qdrant_edge as edge

        ids = point_number if self._numeric_ids() else point_id
        own, notes = shared_payloads(chunks) if self.share_payloads else ([c.payload for c in chunks], [])
        points = [
            edge.Point(id=ids(c.path, c.chunk_index), vector=named_vectors(c, edge.SparseVector), payload=payload)
            for c, payload in zip(chunks, own, strict=True)
        ]
        if points:
            space.require(self.path, space.points_bytes(chunks), f"writing {len(points)} points")
            shared = [
                edge.UpdateOperation.set_payload([ids(c.path, c.chunk_index) for c in members], payload)
                for members, payload in notes
            ]
            with self._lock, storage_errors(f"writing {len(points)} points"):
                self._check_state()
                self._index_values([c.payload for c in chunks])
                try:
                    self.shard.update(edge.UpdateOperation.upsert_points(points))
                    for operation in shared:
                        self.shard.update(operation)
                except BaseException:  # written in part, or not at all: these notes are read again
                    self._writing({c.path for c in chunks})
                    raise
                self._upserted(chunks)
                self._written = True
                self._since_cycle += len(points)
            if self._since_cycle >= self.graph_from:
                self._cycle()

    def _numeric_ids(self) -> bool:
        """Whether this store's points have integer ids (:func:`point_number`): every store this version creates.
        A store written before holds UUIDs (:func:`point_id`) and keeps them, so that a note written again replaces
        its points instead of doubling them; known from one point, read once per open."""
        import qdrant_edge as edge

        if self._ids_numeric is None:
            with self._lock, storage_errors("reading a point's id"):
                records, _ = self.shard.scroll(edge.ScrollRequest(limit=1, with_payload=False, with_vector=False))
            self._ids_numeric = not records or type(records[0].id) is int
        return self._ids_numeric

    def _delete(self, path: str, from_chunk: int | None) -> None:
        import qdrant_edge as edge

        selector = edge_filter(path_filter(path, from_chunk))
        space.require(self.path, space.OPEN_RESERVE, "deleting a note's points")  # a WAL record
        with self._lock, storage_errors("deleting a note's points"):
            self._writing({path})
            self.shard.update(edge.UpdateOperation.delete_points_by_filter(selector))
            self._written = True

    @writes
    def set_payload(self, path: str, payload: dict[str, Any]) -> None:
        """Set ``payload``'s fields on every chunk of the note (vectors untouched: nothing is re-embedded)."""
        import qdrant_edge as edge

        need = space.WRITE_FACTOR * len(json.dumps(payload, default=str)) + space.WRITE_RESERVE
        space.require(self.path, need, "updating a note's payload")
        with self._lock, storage_errors("updating a note's payload"):
            self._writing({path})
            self._index_values([payload])
            self.shard.update(edge.UpdateOperation.set_payload_by_filter(edge_filter(path_filter(path)), payload))
            self._written = True

    @writes
    def set_payloads(self, updates: Sequence[tuple[Sequence[str], dict[str, Any]]]) -> None:
        """Set each payload's fields on every chunk of its notes: one ``set_payload_by_filter`` per payload and
        :data:`~kbsearch.qdrant.store.PATHS_PER_OPERATION` notes (what one operation of Qdrant's batch update is)."""
        import qdrant_edge as edge

        for paths, payload in payload_operations(updates):
            need = space.WRITE_FACTOR * len(json.dumps(payload, default=str)) * len(paths) + space.WRITE_RESERVE
            space.require(self.path, need, "updating notes' payloads")
            with self._lock, storage_errors("updating notes' payloads"):
                self._writing(set(paths))
                self._index_values([payload])
                self.shard.update(edge.UpdateOperation.set_payload_by_filter(edge_filter(paths_filter(paths)), payload))
                self._written = True

    @writes
    def set_sparse(self, vectors: Sequence[tuple[str, SparseVector]], where: dict[str, Any]) -> None:
        """Give these points these BM25 vectors where ``where`` still selects them: one Edge ``update_vectors``
        with that condition (dense vectors and payloads untouched). A point of a sealed segment is moved to the
        segment taking writes, so these count toward its seal as written points do (:meth:`_cycle`)."""
        import qdrant_edge as edge

        if not vectors:
            return
        numeric = self._numeric_ids()
        points = [edge.PointVectors(_as_number(pid) if numeric else pid,
                                    {SPARSE: edge.SparseVector(indices=v.indices, values=v.values)})
                  for pid, v in vectors]  # fmt: skip
        moved = 4 * self.dimensions + space.POINT_OVERHEAD  # its dense vector and payload are written again too
        need = space.WRITE_FACTOR * sum(moved + 12 * len(v) for _, v in vectors) + space.WRITE_RESERVE
        space.require(self.path, need, f"rewriting the BM25 vectors of {len(points)} points")
        with self._lock, storage_errors(f"rewriting the BM25 vectors of {len(points)} points"):
            selector = self._settled_filter(where)
            if selector is False:
                return
            self._check_state()
            self.shard.update(edge.UpdateOperation.update_vectors(points, selector))
            self._written = True
            self._since_cycle += len(points)
        if self._since_cycle >= self.graph_from:
            self._cycle()

    def has_points(self, where: dict[str, Any]) -> bool:
        """Whether any point matches ``where`` (a filter's JSON): one Edge scroll of one point, no payload."""
        import qdrant_edge as edge

        with self._lock, storage_errors("reading the index"):
            selector = self._settled_filter(where)
            if selector is False:
                return False
            records, _ = self.shard.scroll(edge.ScrollRequest(limit=1, filter=selector, with_payload=False,
                                                              with_vector=False))  # fmt: skip
        return bool(records)

    @writes
    def set_payload_where(self, where: dict[str, Any], payload: dict[str, Any]) -> None:
        """Set ``payload``'s fields on every point ``where`` (a filter's JSON) selects: one Edge update."""
        import qdrant_edge as edge

        space.require(self.path, space.WRITE_FACTOR * len(json.dumps(payload)) + space.WRITE_RESERVE,
                      "updating points' payloads")  # fmt: skip
        with self._lock, storage_errors("updating points' payloads"):
            selector = self._settled_filter(where)
            if selector is False:
                return
            self._check_state()
            self._index_values([payload])
            self.shard.update(
                edge.UpdateOperation.set_payload_by_filter(
                    selector if selector is not None else edge_filter({}), payload
                )
            )
            self._written = True

    @writes
    def delete_note(self, path: str) -> None:
        self._delete(path, None)

    @writes
    def delete_leftovers(self, path: str, n_chunks: int) -> None:
        self._delete(path, n_chunks)

    # -- the search's one call ---------------------------------------------------------------------------------
    def query(self, request: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
        """Run Query API JSON (see :func:`edge_request`); ``timeout_s`` is moot in-process."""
        return self.query_batch([request], timeout_s)[0]

    def scroll(self, request: dict[str, Any], timeout_s: float) -> tuple[list[dict[str, Any]], str | None]:
        """Run a scroll request's JSON (filter, limit, offset, with_payload). An ``offset`` is a point id as Qdrant
        Cloud's are written (a UUID: :func:`point_id`) or as this store returned it; a store of integer ids reads
        a UUID as :func:`point_number` of the same chunk (they order alike: the pages are the same), and so the ids
        of a ``has_id`` condition (:func:`kbsearch.qdrant.query.held_request`)."""
        import qdrant_edge as edge

        with self._lock:  # settled against the indexes the shard has when it is read (a write may add one)
            offset, where = request.get("offset"), request.get("filter")
            try:
                where = settled(where, self._absent())
                if where is False:
                    return [], None
                where = None if where is True else where
                if self._numeric_ids():
                    offset = _as_number(offset) if isinstance(offset, str) else offset
                    where = _numbered(where) if isinstance(where, dict) else where
                translated = edge.ScrollRequest(
                    offset=offset, limit=int(request.get("limit", 10)),
                    filter=_filter(where), with_payload=_with_payload(request.get("with_payload", True)),
                    with_vector=False,
                )  # fmt: skip
            except (KeyError, TypeError, ValueError) as exc:
                raise StoreError(f"cannot run this scroll on the embedded store ({exc})") from None
            space.require(self.path, self._open_need, "reading notes")  # a disk that filled since the shard was opened
            try:
                records, offset = self.shard.scroll(translated)
            except Exception as exc:
                raise edge_failure("scroll", exc) from None
        return [{"id": str(r.id), "payload": r.payload} for r in records], None if offset is None else str(offset)

    def facet(self, request: dict[str, Any], timeout_s: float) -> list[tuple[Any, int]]:
        """Run a facet request's JSON (key, filter, limit, exact)."""
        import qdrant_edge as edge

        with self._lock:  # settled against the indexes the shard has when it is read (a write may add one)
            try:
                absent = self._absent()
                where = settled(request.get("filter"), absent)
                if str(request["key"]) in absent or where is False:  # no point holds a value of it, or none is counted
                    return []  # (Edge refuses a facet of a field without its index)
                translated = edge.FacetRequest(
                    key=str(request["key"]), limit=int(request.get("limit", 10)), exact=bool(request.get("exact", False)),
                    filter=None if where is True else _filter(where),
                )  # fmt: skip
            except (KeyError, TypeError, ValueError) as exc:
                raise StoreError(f"cannot run this facet on the embedded store ({exc})") from None
            space.require(self.path, self._open_need, "counting notes")  # a disk that filled since the shard was opened
            try:
                hits = self.shard.facet(translated).hits
            except Exception as exc:
                raise edge_failure("facet", exc) from None
        return [(hit.value, int(hit.count)) for hit in hits]

    def query_batch(self, searches: list[dict[str, Any]], timeout_s: float) -> list[list[dict[str, Any]]]:
        """Several Query API searches as one Edge batch (one planned pass over the segments): the Query API's
        answers, but for the point ids, ``uuid.UUID`` (``json.dumps(..., default=str)`` writes the JSON)."""
        # the ids as Edge gives them (uuid.UUID: its str() is the JSON's id, and they order, hash and compare
        # alike): a search reads hundreds of points, and the string is a third of what one costs here
        return [[{"id": p.id, "score": p.score, "payload": p.payload} for p in points]
                for points in self._batch(searches)]  # fmt: skip

    def query_legs(
        self, searches: list[dict[str, Any]], bare: Sequence[bool], timeout_s: float
    ) -> list[list[ScoredChunk]]:
        """The batch's answers read straight from Edge's points into chunks (:func:`edge_leg`), each point's payload
        read once: the batch runs as ids and scores alone, then the points the searches asked payloads for are
        read by id, once each per set of fields (:meth:`_payloads`), under the same lock (nothing is written
        between). Edge reads a point's whole stored payload to return any of it (~12-20 us a point), per search:
        the query's dense leg and its BM25 head rank many of the same chunks, so the union is read once instead
        (a search of bench search's 5,000 chunks: 200 payload reads -> ~147, ~1 ms less). The chunks, their order and
        the points dropped are the Query API answer's (:func:`kbsearch.qdrant.query.read_legs` over
        :meth:`query_batch`). Qdrant Cloud's batch stays one request (:mod:`kbsearch.qdrant.rest`)."""
        if len(searches) != len(bare):
            raise StoreError("Qdrant's answer is not what the API returns")
        # per search, the fields it asked for (None: a bare search, or one that asked for none: its points name no
        # note, and are dropped as its JSON answer's are)
        wanted = [None if b else search.get("with_payload") or None for search, b in zip(searches, bare, strict=True)]
        plain = [search if want is None else {**search, "with_payload": False}
                 for search, want in zip(searches, wanted, strict=True)]  # fmt: skip
        with self._lock:
            answers = self._batch(plain)
            if len(answers) != len(bare):
                raise StoreError("Qdrant's answer is not what the API returns")
            asked: dict[str, tuple[Any, dict[Any, None]]] = {}  # fields -> (the selector, the points, in order)
            for points, want in zip(answers, wanted, strict=True):
                if want is not None:
                    asked.setdefault(repr(want), (want, {}))[1].update(dict.fromkeys(p.id for p in points))
            read = {key: self._payloads(list(ids), want) for key, (want, ids) in asked.items()}
        return [edge_leg(points, read[repr(want)] if want is not None else {}) if not b
                else bare_leg(points) if not search.get("with_payload") else asked_bare(points)
                for points, want, b, search in zip(answers, wanted, bare, plain, strict=True)]  # fmt: skip

    def _payloads(self, ids: list[Any], with_payload: Any) -> dict[Any, dict[str, Any] | None]:
        """The payloads of the points ``ids`` (as a search returned them), the fields ``with_payload`` selects, by
        point id: a usable one (its path a string of a length the indexer writes) as it is, None for a point whose
        payload names no note (no path, an empty or overlong one: dropped, as a search's answer is read). A path
        that is not a string is a store that is not usable (StoreError)."""
        try:
            selector = _with_payload(with_payload)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"cannot run this query on the embedded store ({exc})") from None
        try:
            records = self.shard.retrieve(ids, selector, False)
        except Exception as exc:
            raise edge_failure("query", exc) from None
        out: dict[Any, dict[str, Any] | None] = {}
        for record in records:
            payload = record.payload
            path = payload.get("path") if type(payload) is dict else None
            if type(path) is not str:
                if path is not None:
                    raise StoreError("Qdrant's answer is not what the API returns")
                out[record.id] = None
            else:
                out[record.id] = payload if path and len(path) <= MAX_PATH_CHARS else None
        return out

    def _batch(self, searches: list[dict[str, Any]]) -> list[list[Any]]:
        """The searches as one Edge batch: Edge's scored points, per search. A search on a field without its index
        (:meth:`_absent`) is settled first (:func:`kbsearch.qdrant.query.settled_search`); one that finds no point
        so is answered without Edge."""
        import qdrant_edge as edge

        with self._lock:
            absent = self._absent()
            asked = [settled_search(s, absent) for s in searches]
            sent = [s for s in asked if s is not None]
            try:
                batch = edge.QueryBatchRequest([edge_request(s) for s in sent])
            except (KeyError, TypeError, ValueError) as exc:
                raise StoreError(f"cannot run this query on the embedded store ({exc})") from None
            if not sent:
                return [[] for _ in searches]
            space.require(self.path, self._open_need, "searching")  # a disk that filled since the shard was opened
            try:
                answers = cast(list[list[Any]], self.shard.query_batch(batch))
            except Exception as exc:
                raise edge_failure("query", exc) from None
        if len(answers) != len(sent):
            raise StoreError("Qdrant's answer is not what the API returns")
        each = iter(answers)
        return [next(each) if s is not None else [] for s in asked]


#: Payload fields every point keeps in its own upsert: a note whose shared values a crash kept from being written
#: is still found by its path (and deleted or rewritten by it), and its state, with no ``etag``, says "changed".
OWN_FIELDS = frozenset({"path", "chunk_index"})


_ABSENT = object()


def same_value(a: Any, b: Any) -> bool:
    """Whether two payload values are stored alike: equal and of the same types all the way down (``1``, ``1.0``
    and ``True`` are equal in Python and three different JSON values)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(map(same_value, a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same_value(v, b[k]) for k, v in a.items())
    return bool(a == b)


def shared_payloads(
    chunks: Sequence[ChunkPoint],
) -> tuple[list[dict[str, Any]], list[tuple[list[ChunkPoint], dict[str, Any]]]]:
    """Each chunk's payload less the values it shares with every other chunk of its note in ``chunks`` (its title,
    path's folders, tags, summary, links, etag, access ...), and per note of two chunks or more here, (its chunks,
    those shared values): upserting the first and setting the second on the note's points stores every chunk's
    payload whole, with each shared value converted by Edge once per note instead of once per chunk (``edge.Point``
    converts a payload value by value, ~3 µs a string, under the interpreter lock). :data:`OWN_FIELDS` stay with
    each point."""
    by_note: dict[str, list[int]] = {}
    for i, chunk in enumerate(chunks):
        by_note.setdefault(chunk.path, []).append(i)
    own = [c.payload for c in chunks]
    notes: list[tuple[list[ChunkPoint], dict[str, Any]]] = []
    for members in by_note.values():
        if len(members) < 2:
            continue
        first, rest = chunks[members[0]].payload, [chunks[i].payload for i in members[1:]]
        shared = {
            key: value
            for key, value in first.items()
            if key not in OWN_FIELDS and all((v := p.get(key, _ABSENT)) is value or same_value(v, value) for p in rest)
        }
        if not shared:
            continue
        for i in members:
            own[i] = {key: value for key, value in chunks[i].payload.items() if key not in shared}
        notes.append(([chunks[i] for i in members], shared))
    return own, notes


def edge_leg(points: Sequence[Any], payloads: dict[Any, dict[str, Any] | None]) -> list[ScoredChunk]:
    """:func:`kbsearch.qdrant.query.read_leg` for Edge's own scored points of a search that asked for payloads, by
    the same rules (a point without a usable path dropped, a score that is not finite: the store is not usable),
    read from the binding's attributes (its id an int, or a ``uuid.UUID`` in a store written before; its score a
    float): a search reads ~700 points, and a dict made of each, then read again, cost as much as the conversion
    itself. ``payloads``: each point's payload, read once for the batch (:meth:`EdgeStore._payloads`: None for
    one that names no note; a point it lacks has none)."""
    out: list[ScoredChunk] = []
    dropped = 0
    finite = math.isfinite
    usable = payloads.get
    for point in points:
        score = point.score
        if type(score) is not float or not finite(score):
            raise StoreError("Qdrant's answer is not what the API returns")
        pid = point.id  # an int (this version's stores), a uuid.UUID (a store written before)
        payload = usable(pid)
        if payload is None:
            dropped += 1
            continue
        out.append(ScoredChunk(pid if type(pid) is int else pid.int if type(pid) is uuid.UUID else str(pid),
                               score, payload))  # fmt: skip
    return leg_read(out, dropped)


def asked_bare(points: Sequence[Any]) -> list[ScoredChunk]:
    """A bare search that asked for payloads anyway (no search of the fusion's does): its points as the Query API's
    JSON is read (:func:`kbsearch.qdrant.query.read_leg`, bare: a point kept whatever its payload, the payload kept
    when it names a note, or has no path)."""
    return read_leg([{"id": p.id, "score": p.score, "payload": p.payload} for p in points], True)


def bare_leg(points: Sequence[Any]) -> list[ScoredChunk]:
    """A search's ids and scores (it asked for no payload), by :func:`edge_leg`'s rules, read a column at a time:
    a search's bare legs hold ~550 points, and a loop's body per point cost twice as much."""
    ids = [point.id for point in points]
    scores = [point.score for point in points]
    if not set(map(type, scores)) <= _FLOAT or not all(map(math.isfinite, scores)):
        raise StoreError("Qdrant's answer is not what the API returns")
    if not set(map(type, ids)) <= _INT:  # a store written before: uuid.UUID ids
        ids = [pid if type(pid) is int else pid.int if type(pid) is uuid.UUID else str(pid) for pid in ids]
    return leg_read(list(map(scored_chunk, zip(ids, scores, repeat(_EMPTY)))), 0)


_FLOAT, _INT = {float}, {int}
_EMPTY: dict[str, Any] = {}  # a bare chunk's payload (never written to)


def read_ahead(shard: Path, limit_bytes: int, stop: threading.Event | None = None) -> int:
    """Ask the kernel (``POSIX_FADV_WILLNEED``: it reads asynchronously) for the files of :data:`READAHEAD` in each
    of the shard's segments, their data only (a file's holes are skipped), in its order, until ``limit_bytes``, a
    kind read at random that does not fit whole, or ``stop``; the bytes asked for. Best effort: a file that vanished,
    is not a regular file, or cannot be read is skipped."""
    advise = getattr(os, "posix_fadvise", None)
    asked = 0
    if advise is None:
        return asked
    for pattern, whole in READAHEAD:
        with contextlib.ExitStack() as opened:
            ranges = [(fd, extent) for fd in _regular_files(sorted(shard.glob(f"segments/*/{pattern}")), opened)
                      for extent in _data_extents(fd)]  # fmt: skip
            if not whole and asked + sum(end - start for _, (start, end) in ranges) > limit_bytes:
                return asked
            for fd, (start, end) in ranges:
                for offset in range(start, end, READAHEAD_STEP):
                    if asked >= limit_bytes or (stop is not None and stop.is_set()):
                        return asked
                    length = min(READAHEAD_STEP, end - offset, limit_bytes - asked)
                    with contextlib.suppress(OSError):
                        advise(fd, offset, length, os.POSIX_FADV_WILLNEED)
                    asked += length
    return asked


def _regular_files(files: list[Path], opened: contextlib.ExitStack) -> Iterator[int]:
    """Descriptors of the regular files among ``files`` (closed with ``opened``); the others skipped."""
    for file in files:
        try:
            fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO does not block the open
        except OSError:
            continue
        opened.callback(os.close, fd)
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.fstat(fd).st_mode):
                yield fd


def _data_extents(fd: int) -> Iterator[tuple[int, int]]:
    """The (start, end) byte ranges of an open file that hold data (Edge preallocates its files sparse: 992 MB of
    payload pages at 100x the vault hold 371 MB); the whole file where the file system cannot tell."""
    try:
        size = os.fstat(fd).st_size
    except OSError:
        return
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: only a hole from here on
                yield offset, size
            return
        yield start, end
        offset = end


class EmbeddedRetriever:
    """The search's retrieval call (:class:`kbsearch.qdrant.query.Retriever`) on a store opened in this process:
    the embedded store (Edge or local mode), or any :class:`Store` given to the search service."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _present(self) -> Store:
        if not self.store.exists():
            raise index_missing(self.store.collection, embedded=True)
        return self.store

    def metadata(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """The collection's metadata, with the size of its dense vectors (``DENSE_SIZE``) from its config."""
        with storage_errors("reading the collection's metadata"):
            store = self._present()
            recorded = {k: v for k, v in store.metadata().items() if k not in (DENSE_SIZE, RESCORE_ONCE)}
            size = store.dense_size()
            once = isinstance(store, EdgeStore) and store.rescore_once()
        return recorded | ({DENSE_SIZE: size} if size is not None else {}) | ({RESCORE_ONCE: True} if once else {})

    def metadata_stamp(self) -> Hashable:
        """The store's :meth:`~kbsearch.qdrant.store.Store.metadata_stamp` (a counter of this process's writes, and
        the metadata file's identity for Qdrant Edge): a sync in this process (``kbsearch serve --watch``, a
        ``kbsearch index`` handed to the server) changes it, and the search reads the metadata again."""
        return self.store.metadata_stamp()

    def query(self, request: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
        return self._present().query(request, timeout_s)

    def scroll(self, request: dict[str, Any], timeout_s: float) -> tuple[list[dict[str, Any]], str | None]:
        return self._present().scroll(request, timeout_s)

    def facet(self, request: dict[str, Any], timeout_s: float) -> list[tuple[Any, int]]:
        return self._present().facet(request, timeout_s)

    def query_batch(self, searches: list[dict[str, Any]], timeout_s: float) -> list[list[dict[str, Any]]]:
        return self._present().query_batch(searches, timeout_s)

    def query_legs(
        self, searches: list[dict[str, Any]], bare: Sequence[bool], timeout_s: float
    ) -> list[list[ScoredChunk]]:
        return self._present().query_legs(searches, bare, timeout_s)

    def close(self) -> None:
        self.store.close()


# -- Query API JSON -> Qdrant Edge ----------------------------------------------------------------------------
def edge_index_schema(name: str, kind: str) -> Any:
    """The payload index of field ``name`` (a :data:`PAYLOAD_INDEXES` kind) as Edge takes it: a keyword index in
    :data:`TENANT_INDEXES` with ``is_tenant``, any other its schema type alone."""
    import qdrant_edge as edge

    if name in TENANT_INDEXES:
        return edge.KeywordIndexParams(is_tenant=True)
    return getattr(edge.PayloadSchemaType, kind.capitalize())


def edge_request(request: dict[str, Any]) -> edge.QueryRequest:
    """The Query API body (``POST /collections/{c}/points/query``) as an Edge ``QueryRequest``: prefetches
    (nearest dense / sparse, filter, params, limit), the query (nearest, ``{"rrf": {"k", "weights"}}``,
    ``{"fusion": "rrf" | "dbsf"}``), filter, limit, with_payload, with_vector."""
    import qdrant_edge as edge

    return edge.QueryRequest(
        limit=int(request.get("limit", 10)),
        offset=request.get("offset"),
        query=_query(request.get("query"), request.get("using")),
        prefetches=[_prefetch(p) for p in _as_list(request.get("prefetch"))],
        filter=_filter(request.get("filter")),
        params=_params(request.get("params")),
        score_threshold=request.get("score_threshold"),
        with_payload=_with_payload(request.get("with_payload", False)),
        with_vector=bool(request.get("with_vector", False)),
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _prefetch(p: dict[str, Any]) -> edge.Prefetch:
    import qdrant_edge as edge

    return edge.Prefetch(
        limit=int(p.get("limit", 10)),
        query=_query(p.get("query"), p.get("using")),
        prefetches=[_prefetch(q) for q in _as_list(p.get("prefetch"))],
        params=_params(p.get("params")),
        filter=_filter(p.get("filter")),
        score_threshold=p.get("score_threshold"),
    )


def _query(q: Any, using: str | None) -> Any:
    import qdrant_edge as edge

    if q is None:
        return None
    if isinstance(q, dict) and "nearest" in q:
        q = q["nearest"]
    if isinstance(q, dict) and "order_by" in q:
        order = q["order_by"]
        order = order if isinstance(order, dict) else {"key": order}
        direction = edge.Direction.Desc if order.get("direction") == "desc" else edge.Direction.Asc
        return edge.OrderBy(str(order["key"]), direction=direction, start_from=order.get("start_from"))
    if isinstance(q, dict) and "rrf" in q:
        rrf = q["rrf"] or {}
        weights = rrf.get("weights")
        return edge.Fusion.Rrf(k=int(rrf.get("k", 2)), weights=[float(w) for w in weights] if weights else None)
    if isinstance(q, dict) and "fusion" in q:
        if q["fusion"] == "rrf":
            return edge.Fusion.Rrf(k=2)
        if q["fusion"] == "dbsf":
            return edge.Fusion.Dbsf()
        raise ValueError(f"unknown fusion {q['fusion']!r}")
    if isinstance(q, dict) and "indices" in q:
        return edge.Query.Nearest(edge.SparseVector(indices=list(q["indices"]), values=list(q["values"])), using=using)
    if isinstance(q, list) or hasattr(q, "tolist"):
        return edge.Query.Nearest(q, using=using)
    raise ValueError(f"unsupported query {type(q).__name__}")


def _params(p: dict[str, Any] | None) -> edge.SearchParams | None:
    import qdrant_edge as edge

    if not p:
        return None
    quantization = p.get("quantization")
    return edge.SearchParams(
        hnsw_ef=p.get("hnsw_ef"),
        exact=bool(p.get("exact", False)),
        quantization=edge.QuantizationSearchParams(
            ignore=bool(quantization.get("ignore", False)),
            rescore=quantization.get("rescore"),
            oversampling=quantization.get("oversampling"),
        )
        if quantization
        else None,
        indexed_only=bool(p.get("indexed_only", False)),
    )


def _as_number(point: str) -> int:
    """A point id as Qdrant Cloud's are written (a UUID: :func:`point_id`) or as a store of integer ids returned it
    (digits), as that store's integer (:func:`point_number` of the same chunk)."""
    return int(point) if point.isdigit() else uuid.UUID(point).int >> 64


def _numbered(f: dict[str, Any]) -> dict[str, Any]:
    """A filter's JSON with the ids of its ``has_id`` conditions (at any depth) as a store of integer ids holds
    them (:func:`_as_number`)."""

    def condition(c: Any) -> Any:
        if not isinstance(c, dict):
            return c
        if "has_id" in c:
            return {**c, "has_id": [_as_number(i) if isinstance(i, str) else i for i in _as_list(c["has_id"])]}
        return _numbered(c) if any(k in c for k in ("must", "should", "must_not")) else c

    return {k: ([condition(c) for c in _as_list(v)] if k in ("must", "should", "must_not") else v)
            for k, v in f.items()}  # fmt: skip


def _filter(f: dict[str, Any] | None) -> edge.Filter | None:
    return edge_filter(f) if f else None


def edge_filter(f: dict[str, Any]) -> edge.Filter:
    """A filter's JSON (``{"must", "should", "must_not"}``) as an Edge ``Filter``."""
    import qdrant_edge as edge

    return edge.Filter(
        must=[_condition(c) for c in _as_list(f.get("must"))] or None,
        should=[_condition(c) for c in _as_list(f.get("should"))] or None,
        must_not=[_condition(c) for c in _as_list(f.get("must_not"))] or None,
    )


def _condition(c: dict[str, Any]) -> Any:
    import qdrant_edge as edge

    if any(k in c for k in ("must", "should", "must_not")):
        return _filter(c)
    if "has_id" in c:
        return edge.HasIdCondition(point_ids=set(c["has_id"]))
    if "is_empty" in c:
        return edge.IsEmptyCondition(key=c["is_empty"]["key"])
    if "is_null" in c:
        return edge.IsNullCondition(key=c["is_null"]["key"])
    key = c["key"]
    if "match" in c:
        m = c["match"]
        if "value" in m:
            return edge.FieldCondition(key=key, match=edge.MatchValue(value=m["value"]))
        if "any" in m:
            return edge.FieldCondition(key=key, match=edge.MatchAny(any=list(m["any"])))
        if "except" in m:
            return edge.FieldCondition(key=key, match=edge.MatchExcept(except_=list(m["except"])))
        if "text" in m:
            return edge.FieldCondition(key=key, match=edge.MatchText(text=m["text"]))
        raise ValueError(f"unsupported match on {key!r}")
    if "range" in c:
        bounds = {k: v for k, v in c["range"].items() if k in ("gt", "gte", "lt", "lte") and v is not None}
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in bounds.values()):
            return edge.FieldCondition(key=key, range=edge.RangeFloat(**{k: float(v) for k, v in bounds.items()}))
        return edge.FieldCondition(key=key, range=edge.RangeDateTime(**{k: str(v) for k, v in bounds.items()}))
    raise ValueError(f"unsupported condition on {key!r}")


def _with_payload(w: Any) -> Any:
    import qdrant_edge as edge

    if isinstance(w, dict):
        if "exclude" in w:
            return edge.PayloadSelector.Exclude(list(w["exclude"]))
        if "include" in w:
            return edge.PayloadSelector.Include(list(w["include"]))
        raise ValueError("unsupported with_payload")
    if isinstance(w, list):
        return [str(k) for k in w]
    return bool(w)
