"""A search process has the kernel read ahead what a search reads of the embedded store, in the background, up to
QDRANT_EMBEDDED_READAHEAD_MB: first what every search reads whole (each sealed segment's int8 vectors, the unsealed
segment's floats), then what it reads at random (the payloads, the sealed segments' floats) only when each fits
whole; the indexer's store reads nothing ahead; and nothing about it can fail or change a search: no
``posix_fadvise``, a kernel that refuses every call, files named like the store's that are not regular files or
do not exist.

``os.posix_fadvise`` is replaced by a recorder that passes each call on to the real one (a collaborator of the
store: what the kernel was asked for is the observable)."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.qdrant import open_retriever, open_store

pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform (the fallback is local mode)")
pytestmark = pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise on this platform")

DIMS = 2048  # 5 sealed segments of 200 chunks: 2 MB of int8 vectors, so a 1 MB cap binds
POINTS = 1100


@pytest.fixture(scope="module")
def vectors() -> Any:
    import numpy as np

    v = np.random.default_rng(11).standard_normal((POINTS, DIMS))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, vectors: Any) -> Path:
    from kbsearch.lexical import SparseVector
    from kbsearch.qdrant.store import ChunkPoint

    root = tmp_path_factory.mktemp("readahead")
    settings = settings_for(root)
    store = open_store(settings, Secrets(settings))
    try:
        store.ensure_collection()
        for start in range(0, POINTS, 100):  # the indexer's windows: a segment sealed every 200 chunks
            store.upsert([ChunkPoint(f"n{i}.md", 0, {"path": f"n{i}.md", "text": "x" * 300},
                                     SparseVector([1], [1.0]), vectors[i]) for i in range(start, start + 100)])  # fmt: skip
    finally:
        store.close()
    return root


def settings_for(root: Path, **extra: Any) -> Settings:
    return Settings.model_validate(
        {"qdrant_path": str(root), "embedding_dimensions": DIMS, "qdrant_embedded_graph_from": 200, **extra}
    )


class Advice:
    """Records each ``posix_fadvise`` call (file, offset, length, advice) and passes it on, or raises ``error``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, error: OSError | None = None) -> None:
        self.calls: list[tuple[str, int, int, int]] = []
        self.threads: set[str] = set()
        self.error = error
        self.real = os.posix_fadvise
        monkeypatch.setattr(os, "posix_fadvise", self)

    def __call__(self, fd: int, offset: int, length: int, advice: int) -> None:
        self.calls.append((os.readlink(f"/proc/self/fd/{fd}"), offset, length, advice))
        self.threads.add(threading.current_thread().name)
        if self.error is not None:
            raise self.error
        self.real(fd, offset, length, advice)

    def bytes_by_file(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for path, _, length, _ in self.calls:
            out[path] = out.get(path, 0) + length
        return out


def search_and_wait(settings: Settings, vectors: Any) -> list[str]:
    """Open the store as the search does, wait for its readahead, and run a dense search: the paths it returns."""
    retriever = open_retriever(settings, Secrets(settings))
    try:
        reader = retriever.store._reader  # type: ignore[attr-defined]
        if reader is not None:
            reader.join(timeout=60)
            assert not reader.is_alive()
        query = vectors[3] + 0.3 * vectors[5]
        hits = retriever.query({"query": query.tolist(), "using": "dense", "limit": 10, "with_payload": ["path"]}, 10)
    finally:
        retriever.close()
    return [hit["payload"]["path"] for hit in hits]


@pytest.fixture(scope="module")
def unread(built: Path, vectors: Any) -> list[str]:
    """The search's answer with nothing read ahead: its best hits the exact nearest (int8 rescored)."""
    import numpy as np

    hits = search_and_wait(settings_for(built, qdrant_embedded_readahead_mb=0), vectors)
    query = vectors[3] + 0.3 * vectors[5]
    assert hits[:3] == [f"n{i}.md" for i in np.argsort(-(vectors @ query))[:3]]
    return hits


KINDS = ("quantized.data", "vectors/chunk_", "payload_storage/page_", "matrix.dat")  # the order read ahead


def kind(path: str) -> int:
    (index,) = [i for i, k in enumerate(KINDS) if k in path]
    return index


@pytest.fixture(scope="module")
def whole(built: Path, vectors: Any, unread: list[str]) -> dict[str, int]:
    """What the default cap reads ahead of the small store (everything a search reads): bytes by file."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        advice = Advice(monkeypatch)
        assert search_and_wait(settings_for(built), vectors) == unread
    shard = built / "edge" / "kb"
    quantized = sorted(shard.glob("segments/*/vector_storage-dense/quantized.data"))
    floats = sorted(shard.glob("segments/*/vector_storage-dense/vectors/chunk_*.mmap"))  # the unsealed segment's
    rescored = sorted(shard.glob("segments/*/vector_storage-dense/matrix.dat"))
    payloads = sorted(shard.glob("segments/*/payload_storage/page_*.dat"))
    assert len(quantized) == len(rescored) == 5 and floats and len(payloads) >= 6
    asked = advice.bytes_by_file()
    for file in [*quantized, *rescored]:  # whole: not sparse
        assert asked.get(str(file)) == file.stat().st_size, (file, asked)
    for file in [*floats, *payloads]:  # their data (Edge preallocates them sparse), not their holes
        assert 0 < asked[str(file)] <= os.stat(file).st_blocks * 512 < file.stat().st_size
    assert set(asked) == {str(p) for p in [*quantized, *floats, *payloads, *rescored]}
    assert {a for *_, a in advice.calls} == {os.POSIX_FADV_WILLNEED}
    assert advice.threads == {"kbsearch-readahead"}  # the open did not wait for it
    order = [kind(path) for path, *_ in advice.calls]
    assert order == sorted(order)  # the int8 vectors first, then the unsealed floats, the payloads, the floats
    for path, offset, length, _ in advice.calls:  # within the file, and no more than Linux reads in one call
        assert offset >= 0 and 0 < length <= 4 << 20 and offset + length <= Path(path).stat().st_size
    return asked


def test_a_search_process_reads_ahead_what_a_search_reads(whole: dict[str, int]) -> None:
    assert sum(whole.values()) < 16 << 20


@pytest.mark.parametrize("cap_mb", [1, 2, 3, 4, 6, 9])
def test_the_cap_bounds_it_and_what_is_read_at_random_is_read_whole_or_not_at_all(
    built: Path, vectors: Any, unread: list[str], whole: dict[str, int], monkeypatch: pytest.MonkeyPatch, cap_mb: int
) -> None:
    advice = Advice(monkeypatch)
    assert search_and_wait(settings_for(built, qdrant_embedded_readahead_mb=cap_mb), vectors) == unread
    asked = advice.bytes_by_file()
    assert 0 < sum(asked.values()) <= cap_mb << 20
    kinds = sorted({kind(path) for path in asked})
    assert kinds == list(range(len(kinds)))  # a prefix of the order
    by_kind = {k: [f for f in whole if kind(f) == k] for k in range(len(KINDS))}
    for k in kinds[:-1]:  # every kind before the last one asked: all of it
        assert all(asked.get(f) == whole[f] for f in by_kind[k])
    if kinds[-1] >= 2:  # read at random: all of it or none
        assert all(asked.get(f) == whole[f] for f in by_kind[kinds[-1]])
    elif sum(whole[f] for f in by_kind[kinds[-1]]) > sum(asked.get(f, 0) for f in by_kind[kinds[-1]]):
        assert sum(asked.values()) == cap_mb << 20  # read whole by every search: as much as the cap lets in


def test_0_or_the_indexers_store_asks_for_nothing(
    built: Path, vectors: Any, unread: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    advice = Advice(monkeypatch)
    assert search_and_wait(settings_for(built, qdrant_embedded_readahead_mb=0), vectors) == unread
    settings = settings_for(built)
    store = open_store(settings, Secrets(settings))  # the indexer's store: its writes would drop the pages anyway
    try:
        assert store.count() == POINTS
    finally:
        store.close()
    assert advice.calls == []


@pytest.mark.parametrize("error", [errno.EIO, errno.EBADF, errno.EINVAL, errno.ENOSYS])
def test_a_kernel_that_refuses_every_call_changes_nothing(
    built: Path, vectors: Any, unread: list[str], monkeypatch: pytest.MonkeyPatch, error: int
) -> None:
    failures: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    advice = Advice(monkeypatch, OSError(error, os.strerror(error)))
    assert search_and_wait(settings_for(built), vectors) == unread
    assert advice.calls and failures == []


def test_without_posix_fadvise_the_store_opens_and_searches(
    built: Path, vectors: Any, unread: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "posix_fadvise")
    settings = settings_for(built)
    retriever = open_retriever(settings, Secrets(settings))
    try:
        assert retriever.store._reader is None  # type: ignore[attr-defined]
    finally:
        retriever.close()
    assert search_and_wait(settings, vectors) == unread


def test_entries_named_like_the_stores_files_that_are_no_regular_file_are_skipped(
    tmp_path: Path, built: Path, vectors: Any, unread: list[str], whole: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO (opening it for reading would block), a device, a directory, a dangling symlink, a file that vanished
    between the listing and the open: each is skipped, the rest is read ahead, the search answers as before."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(built, root, symlinks=True)
    segments = sorted((root / "edge" / "kb").glob("segments/*/vector_storage-dense/quantized.data"))
    first, second = (s.parent / "vectors" for s in segments[:2])
    first.mkdir()
    second.mkdir()
    os.mkfifo(first / "chunk_90.mmap")
    (first / "chunk_91.mmap").symlink_to("/dev/zero")
    (first / "chunk_92.mmap").mkdir()
    (second / "chunk_93.mmap").symlink_to(tmp_path / "nowhere")
    vanishing = second / "chunk_94.mmap"
    vanishing.write_bytes(b"x" * 4096)
    real_open = os.open

    def open_after_unlink(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:  # the file goes before its open
        if Path(path) == vanishing:
            vanishing.unlink(missing_ok=True)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_after_unlink)
    advice = Advice(monkeypatch)
    assert search_and_wait(settings_for(root), vectors) == unread
    asked = advice.bytes_by_file()
    assert len(asked) == len(whole)
    assert not any("chunk_9" in path for path in asked) and all(path.startswith(str(root)) for path in asked), asked
    assert all(str(s) in asked for s in segments)


def test_closing_the_store_stops_the_readahead(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store closes while its readahead runs (here: at the readahead's first call): no further call."""
    settings = settings_for(built)
    opened: list[Any] = []

    class ClosingAdvice(Advice):
        def __call__(self, fd: int, offset: int, length: int, advice: int) -> None:
            super().__call__(fd, offset, length, advice)
            if len(self.calls) == 1:
                opened[0].close()

    advice = ClosingAdvice(monkeypatch)
    gate = threading.Lock()
    with gate:  # the retriever is known before the reader's first call can close it
        real_thread = threading.Thread

        def thread(*args: Any, **kwargs: Any) -> threading.Thread:
            target = kwargs["target"]

            def after_gate(*a: Any) -> Any:
                with gate:
                    return target(*a)

            return real_thread(*args, **{**kwargs, "target": after_gate})

        monkeypatch.setattr(threading, "Thread", thread)
        retriever = open_retriever(settings, Secrets(settings))
        opened.append(retriever)
    reader = retriever.store._reader  # type: ignore[attr-defined]
    reader.join(timeout=60)
    assert not reader.is_alive() and len(advice.calls) == 1
    retriever.close()


#: What read_ahead finds of each kind on the 100x vault's store (315,200 chunks, 1,024 dimensions, 31 sealed
#: segments; BENCHMARKS.md, "Session 37: 100x warm search"): MiB of int8 vectors, of the unsealed segment's floats,
#: of payloads, of sealed floats.
VAULT_100X_MIB = (308.8, 0.9, 351.0, 1230.3)


def test_the_default_cap_reads_the_100x_vaults_payloads_ahead_not_its_floats() -> None:
    """A search of the 100x vault reads ~150 payloads: not read ahead, each was a page fault from disk, 149 of a
    fresh process's 160 a search (perf37). The default cap takes them whole, and still not the sealed floats."""
    cap = Settings.model_fields["qdrant_embedded_readahead_mb"].default
    int8, unsealed, payloads, floats = VAULT_100X_MIB
    assert int8 + unsealed + payloads <= cap < int8 + unsealed + payloads + floats
