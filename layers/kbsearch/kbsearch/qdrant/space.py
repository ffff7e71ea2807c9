"""Free space for the embedded store: checked before Qdrant Edge touches its memory-mapped files.

Edge writes through memory maps. On a full filesystem a write to a mapped page cannot fail with ENOSPC: the kernel
kills the process with SIGBUS (exit 135, no report, on tmpfs even a search that opens the shard, which fills the
holes of its preallocated files). So every operation that may touch unbacked pages first asks ``statvfs`` whether
the space it may need is there, and stops with :class:`StorageFull` (a StoreError: the indexer's report and exit 1;
a 503 naming the cause for a search) when it is not:

- opening a shard (search or index): ``OPEN_RESERVE``, and on a filesystem in memory (tmpfs), where reading a
  hole of a mapped file allocates it, the unbacked bytes of its segment files too; the search repeats the check
  before each query, so a disk that fills under a running ``kbsearch serve`` is a 503, and one that is freed
  answers again with no restart;
- creating a collection: ``CREATE_RESERVE`` (measured: 8 payload indexes preallocate ~2 MiB each, plus the WAL's
  first pages and the vector files' first chunks, ~18 MiB for sample-kb on tmpfs);
- each window of writes: ``WRITE_FACTOR`` x (vector + sparse + payload bytes + ``POINT_OVERHEAD``) per chunk, plus
  ``WRITE_RESERVE`` (the WAL, the segment and the payload indexes each hold a copy);
- the optimisation at the end of a sync (segments are rewritten into a new one): the shard's allocated size plus
  ``CREATE_RESERVE``.

The estimate is deliberately high: a refusal names the space needed and the space free; a crash names nothing.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from kbsearch.errors import StoreError

if TYPE_CHECKING:
    from kbsearch.qdrant.store import ChunkPoint

MIB = 1 << 20
OPEN_RESERVE = 4 * MIB
CREATE_RESERVE = 24 * MIB
WRITE_RESERVE = 8 * MIB
WRITE_FACTOR = 3
POINT_OVERHEAD = 2048  # id tracker, versions, payload-index entries of one point


class StorageFull(StoreError):
    """The filesystem holding the embedded store has not got the space an operation may need."""

    def __init__(self, path: Path, action: str, need: int, free: int) -> None:
        super().__init__(
            f"not enough free space for the embedded store at {path}: {action} needs about {_mib(need)}, "
            f"{_mib(free)} free. Free some space (or set QDRANT_PATH to a larger disk), then run it again",
            f"the disk holding the embedded store is full ({action} needs about {_mib(need)}, {_mib(free)} free): "
            "free some space; searches answer again once it is",
        )
        self.need, self.free = need, free


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


#: Filesystems whose files live in memory: reading a hole of a shared mapping allocates a page there (on a disk
#: it reads zeros and allocates nothing, so there only writes are counted).
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "shm", "devtmpfs", "hugetlbfs"})


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding ``path`` (the longest mount point above it in ``/proc/self/mounts``);
    None where that file does not exist."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as handle:
            mounts = handle.read(1 << 20).splitlines()
    except OSError:
        return None
    here = os.path.realpath(_existing(path))
    best, kind = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])  # "\040" is a space
        inside = here == point or here.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def reads_allocate(path: Path) -> bool:
    return filesystem_type(path) in MEMORY_FILESYSTEMS


def _existing(path: Path) -> Path:
    here = path
    while not here.exists() and here != here.parent:
        here = here.parent
    return here


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened to read if it is a regular file (else a ``ValueError``), with ``O_NONBLOCK``: a FIFO in the
    place of a file beside the shard (the saved state, the metadata) hung ``kbsearch index`` for good on its open."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"{path.name} is not a regular file")
    return os.fdopen(fd, "rb")


def read_only(path: Path) -> bool:
    """Whether the filesystem holding ``path`` (its nearest existing ancestor) is mounted read-only."""
    try:
        return bool(os.statvfs(_existing(path)).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path`` (its nearest existing
    ancestor); None when that cannot be asked."""
    try:
        info = os.statvfs(_existing(path))
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def unbacked_bytes(folder: Path, skip: str = "wal") -> int:
    """The holes of the files under ``folder`` (apparent size minus allocated blocks): what touching every page
    of their memory maps could allocate. ``skip``: a top-level folder not counted (the WAL is written, not read)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        if Path(dirpath) == folder:
            dirnames[:] = [d for d in dirnames if d != skip]
        for name in filenames:
            try:
                info = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += max(0, info.st_size - info.st_blocks * 512)
    return total


def allocated_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


def points_bytes(chunks: Sequence[ChunkPoint]) -> int:
    """What writing ``chunks`` may take, all copies counted (see the module's note)."""
    raw = 0
    for c in chunks:
        dense = 0 if c.dense is None else 4 * len(c.dense)
        payload = len(json.dumps(c.payload, ensure_ascii=False, default=str).encode("utf-8"))
        raw += dense + 12 * len(c.sparse) + payload + POINT_OVERHEAD
    return WRITE_FACTOR * raw + WRITE_RESERVE


def require(path: Path, need: int, action: str) -> None:
    """:class:`StorageFull` unless ``need`` bytes are free where ``path`` lives."""
    free = free_bytes(path)
    if free is not None and free < need:
        raise StorageFull(path, action, need, free)
