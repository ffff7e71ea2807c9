"""Storage exhaustion under the embedded engine (Qdrant Edge), on a real small filesystem: a tmpfs mounted for the
test (root only; skipped with the reason where mounting is not permitted). On a full tmpfs Edge's memory-mapped
writes (and, on tmpfs, even the reads of a shard being opened) kill the process with SIGBUS; the free-space guard
turns each into a clear error: the JSON report and exit 1 for `kbsearch index`, a 503 naming the cause for a
search while `kbsearch serve` stays up, and everything answers again once space is freed. (The RLIMIT_FSIZE test
in test_hostile_notes.py covers the write path that fails with an error instead of a signal.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import Indexer, SyncOptions
from kbsearch.qdrant import open_store, space
from kbsearch.sources import LocalSource
from kbsearch_tools.local.process import serve_process
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_indexer import snapshot, write_notes

MIB = 1 << 20


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 288 MiB tmpfs of its own (sample-kb's index takes ~18 MiB; opening it on tmpfs may fill ~170 MiB of
    holes: the ``reach`` payload index added ~7 MiB of them, and 256 MiB left 3 MiB too little once freed),
    unmounted afterwards."""
    point = tmp_path / "fs"
    point.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=288m", "tmpfs", str(point)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


class Filler:
    """Takes the filesystem's free space down to ``leave`` bytes with one preallocated file, and gives it back."""

    def __init__(self, root: Path) -> None:
        self.file = root / "filler"

    def leave(self, leave: int) -> None:
        self.free()
        free = space.free_bytes(self.file.parent)
        assert free is not None and free > leave
        with open(self.file, "wb") as handle:
            os.posix_fallocate(handle.fileno(), 0, free - leave)

    def free(self) -> None:
        self.file.unlink(missing_ok=True)


def index(kb: Path, store: Path) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run([*KBSEARCH_CMD, "index", str(kb), "--json"], capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, check=False, env=subprocess_env(QDRANT_PATH=str(store)))  # fmt: skip
    assert proc.returncode not in (-7, 135), f"killed by SIGBUS: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout), proc.stderr


@pytest.mark.timeout(5 * PROCESS_TIMEOUT_S + 30)
@pytest.mark.parametrize("leave_mib", [1, 8, 20, 60])
def test_index_on_a_full_tmpfs_is_exit_1_with_the_report(tmpfs: Path, tmp_path: Path, leave_mib: int) -> None:
    """Whatever the free space (too little to create the collection, to open it, to write, to optimise), never a
    SIGBUS: exit 1, the JSON report naming the space needed and free; then, space freed, the run converges."""
    kb = tmp_path / "kb"
    shutil.copytree(ROOT / "sample-kb", kb)
    store = tmpfs / "q"
    filler = Filler(tmpfs)
    if leave_mib > 8:  # an index already there: it grows, then the disk is full
        code, _, stderr = index(kb, store)
        assert code == 0, stderr
        write_notes(kb, 40, prefix="more-")
    filler.leave(leave_mib * MIB)
    code, report, stderr = index(kb, store)
    assert code == 1 and "Traceback" not in stderr, (report, stderr)
    assert report["error"].startswith("index storage failed: not enough free space for the embedded store"), report
    assert "MiB free" in report["error"] and report["incomplete"] is True
    filler.free()
    code, report, stderr = index(kb, store)
    assert code == 0 and report["error"] is None and not report["incomplete"], (report, stderr)
    code, _, _ = index(kb, tmp_path / "clean")  # a clean build on the ordinary disk
    assert code == 0
    assert snapshot(Settings(qdrant_path=str(store))) == snapshot(Settings(qdrant_path=str(tmp_path / "clean")))


def test_the_disk_filling_during_a_sync_stops_it_between_windows(tmpfs: Path, tmp_path: Path) -> None:
    """The guard runs before every window of writes, not only at the start: the disk fills while the sync runs
    (after its 10th note), the next window is refused, what was written is consistent, and the next run converges."""
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 60)
    settings = Settings(qdrant_path=str(tmpfs / "q"))
    filler = Filler(tmpfs)

    def fill_after_ten(done: int, _total: int, _path: str) -> None:
        if done == 10:
            filler.leave(2 * MIB)

    store = open_store(settings, Secrets(settings))
    try:
        report = Indexer(LocalSource(kb), store, None, SyncOptions(window_chunks=4), fill_after_ten).sync()
    finally:
        filler.free()  # the shard closes (and optimises) with room again
        store.close()
    assert report.error is not None and "not enough free space" in report.error and "writing" in report.error
    assert report.incomplete and 0 < report.added < 60
    store = open_store(settings, Secrets(settings))
    try:
        again = Indexer(LocalSource(kb), store, None, SyncOptions(window_chunks=4)).sync()
    finally:
        store.close()
    assert again.error is None and again.added == 60 - report.added


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S + 30)
def test_serve_stays_up_and_answers_503_naming_the_cause_until_space_is_freed(tmpfs: Path) -> None:
    store = tmpfs / "q"
    proc = subprocess.run([*KBSEARCH_CMD, "index", str(ROOT / "sample-kb")], capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, check=False, env=subprocess_env(QDRANT_PATH=str(store)))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    filler = Filler(tmpfs)
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"))
    with serve_process(env, cwd=ROOT) as server:
        search = f"{server.base_url}/search?q=restore+a+snapshot&top_k=3"
        assert httpx.get(search, timeout=60).status_code == 200  # opened with room to spare
        filler.leave(MIB)
        for _ in range(3):
            full = httpx.get(search, timeout=60)
            assert full.status_code == 503 and full.headers["retry-after"] == "5", full.text
            assert full.json()["message"].startswith("the disk holding the embedded store is full"), full.json()
        health = httpx.get(f"{server.base_url}/health", timeout=60).json()
        assert health["ready"] is False and health["reasons"][0].startswith("the disk holding the embedded store")
        filler.free()
        assert httpx.get(search, timeout=60).status_code == 200
        assert httpx.get(f"{server.base_url}/health", timeout=60).json()["ready"] is True
        assert server.process.poll() is None  # never killed
    assert "Bus error" not in server.text() and "Traceback" not in server.text()


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S + 30)
def test_a_search_process_opening_a_full_tmpfs_store_is_an_error_not_a_sigbus(tmpfs: Path) -> None:
    store = tmpfs / "q"
    proc = subprocess.run([*KBSEARCH_CMD, "index", str(ROOT / "sample-kb")], capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, check=False, env=subprocess_env(QDRANT_PATH=str(store)))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    filler = Filler(tmpfs)
    filler.leave(20 * MIB)  # the index is there; reading it on tmpfs would fill ~140 MiB of holes
    proc = subprocess.run([*KBSEARCH_CMD, "search", "snapshot"], capture_output=True, text=True, timeout=120,
                          check=False, env=subprocess_env(QDRANT_PATH=str(store)))  # fmt: skip
    assert proc.returncode == 2 and "not enough free space for the embedded store" in proc.stderr, proc.stderr
    filler.free()
    proc = subprocess.run([*KBSEARCH_CMD, "search", "snapshot"], capture_output=True, text=True, timeout=120,
                          check=False, env=subprocess_env(QDRANT_PATH=str(store)))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
