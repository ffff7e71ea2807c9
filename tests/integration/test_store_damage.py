"""What a disk and a crash do under kb-search on a laptop (round 22c): the embedded store's files cut short, zeroed
or garbled, the store on a read-only filesystem, its path a link to nowhere, the votes file on a full disk.
Through ``kbsearch`` processes and the search handler's API Gateway events; "equal to a clean build" means the
same point ids and payloads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Settings
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_indexer import snapshot


def kbsearch(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S,
                          check=False, env=subprocess_env(QDRANT_PATH=str(store)))  # fmt: skip


def index(store: Path, kb: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = kbsearch(store, "index", str(kb), "--json", *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _empty(f: Path) -> None:
    f.write_bytes(b"")


def _zeroed(f: Path) -> None:
    f.write_bytes(bytes(f.stat().st_size))


def _flipped(f: Path) -> None:
    data = bytearray(f.read_bytes())
    for i in range(0, len(data), 50):
        data[i] ^= 0xFF
    f.write_bytes(bytes(data))


DAMAGE: dict[str, tuple[str, Callable[[Path], None]]] = {
    "segment.json emptied": ("segments/*/segment.json", _empty),
    "version.info zeroed": ("segments/*/version.info", _zeroed),
    "edge_config.json garbled": ("edge_config.json", _flipped),
    "the WAL's first index garbled": ("wal/first-index", _flipped),
}


@pytest.mark.timeout(6 * PROCESS_TIMEOUT_S)
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_store_whose_files_cannot_be_loaded_names_the_file_and_rebuild_rebuilds_it(
    tmp_path: Path, damage: str
) -> None:
    """A shard Edge cannot load (a segment's state cut short by a crash, zeroed by a disk, a garbled config or WAL
    index) was reported as ``cannot open the embedded store at ...: Exception``, naming neither the file nor a way
    out, and ``kbsearch index --rebuild`` (documented to drop and rebuild the embedded store) failed the same way: it
    opened the shard before dropping it. Now the error carries Edge's reason and names ``--rebuild``, which drops
    the shard unopened and rebuilds it: the store then equals a clean build."""
    kb, store = ROOT / "sample-kb", tmp_path / "q"
    code, _, stderr = index(store, kb)
    assert code == 0, stderr
    pattern, damage_it = DAMAGE[damage]
    files = list((store / "edge" / "kb").glob(pattern))
    assert files, pattern
    for f in files:
        damage_it(f)
    proc = kbsearch(store, "search", "snapshot")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "Qdrant Edge cannot load its files" in proc.stderr and "kbsearch index --rebuild" in proc.stderr
    assert ": Exception" not in proc.stderr, proc.stderr
    code, report, stderr = index(store, kb)  # a plain sync cannot repair it: it says what to do
    assert code == 1 and report["incomplete"] is True, (report, stderr)
    assert "kbsearch index --rebuild" in report["error"], report["error"]
    code, report, stderr = index(store, kb, "--rebuild")
    assert code == 0 and report["error"] is None and report["rebuilt"], (report, stderr)
    proc = kbsearch(store, "search", "snapshot")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    code, _, _ = index(tmp_path / "clean", kb)
    assert code == 0
    assert snapshot(Settings(qdrant_path=str(store))) == snapshot(Settings(qdrant_path=str(tmp_path / "clean")))


def test_rebuild_never_deletes_a_store_another_process_has_open(tmp_path: Path) -> None:
    """``--rebuild`` now drops the shard without opening it: it still takes the store's owner lock first, so a store
    another process holds (here ``kbsearch serve``'s stand-in: a process holding the lock) is left whole."""
    kb, store = ROOT / "sample-kb", tmp_path / "q"
    code, _, stderr = index(store, kb)
    assert code == 0, stderr
    holder = subprocess.Popen(  # holds the owner lock as an open store does, until told to stop
        [*KBSEARCH_CMD[:1], "-c", "import fcntl, sys; f = open(sys.argv[1], 'rb'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(store / "edge" / "kb.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, report, stderr = index(store, kb, "--rebuild")
        assert code == 75 and "another process has it open" in report["error"], (report, stderr)  # session 25: 1
    finally:
        holder.communicate("", timeout=30)
    assert (store / "edge" / "kb" / "edge_config.json").is_file()
    proc = kbsearch(store, "search", "snapshot")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.timeout(4 * PROCESS_TIMEOUT_S)
@pytest.mark.parametrize("kind", ["dangling", "loop", "under a loop"])
def test_a_qdrant_path_through_a_link_to_nowhere_is_named_not_taken_for_an_index_never_built(
    tmp_path: Path, kind: str
) -> None:
    """``QDRANT_PATH`` a dangling symbolic link (a disk not mounted yet), a link loop, or a folder under one:
    ``kbsearch search`` said "run the indexer first", and the indexer then failed on ``File exists (os error 17)``
    or ``Too many levels of symbolic links``. Now both name the link, and nothing is created through it."""
    link = tmp_path / "store"
    link.symlink_to(tmp_path / "not-mounted" / "q" if kind == "dangling" else link)
    path = link / "q" if kind == "under a loop" else link
    expected = f"QDRANT_PATH {path} is not a folder ({link} is a symbolic link to nowhere: dangling, or a loop)"
    search = kbsearch(path, "search", "snapshot")
    assert search.returncode == 2 and "Traceback" not in search.stderr, search.stderr
    assert expected in search.stderr and "run the indexer" not in search.stderr, search.stderr
    code, report, stderr = index(path, ROOT / "sample-kb")
    assert code == 1 and report["error"] == f"index storage failed: {expected}: point it at a folder (created if " \
        "missing)", (report, stderr)  # fmt: skip
    assert not (tmp_path / "not-mounted").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["store"]


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """Mounts a folder read-only elsewhere (a bind mount, then remounted ``ro``: root cannot write through it, as
    it can through modes), unmounted afterwards whatever the test did; skipped where mounting is not permitted."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a read-only bind mount needs root")
    points: list[Path] = []

    def mount(folder: Path) -> Path:
        point = tmp_path / f"ro-{len(points)}"
        point.mkdir()
        done = subprocess.run(["mount", "--bind", str(folder), str(point)], capture_output=True, text=True,
                              check=False)  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"mount --bind is not permitted here: {done.stderr.strip()}")
        points.append(point)
        done = subprocess.run(["mount", "-o", "remount,bind,ro", str(point)], capture_output=True, text=True,
                              check=False)  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"remounting read-only is not permitted here: {done.stderr.strip()}")
        return point

    try:
        yield mount
    finally:
        for point in reversed(points):
            subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.mark.timeout(4 * PROCESS_TIMEOUT_S)
def test_a_store_on_a_read_only_filesystem_says_so_and_a_read_only_kb_is_indexed(
    tmp_path: Path, read_only: Callable[[Path], Path]
) -> None:
    """A built store on a read-only mount (a CI cache restored read-only, a container's read-only volume): Edge
    maps its files for writing even to search, so it cannot be opened; ``search`` and ``index`` said the store was
    ``Exception`` (before this round's first fix) and then that its files may be damaged, naming ``--rebuild``,
    which cannot write there either. Now both say the filesystem is read-only and what to do; nothing is written.
    A KB on a read-only mount is indexed like any other (held)."""
    store = tmp_path / "q"
    code, _, stderr = index(store, ROOT / "sample-kb")
    assert code == 0, stderr
    mounted = read_only(store)
    proc = kbsearch(mounted, "search", "snapshot")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "is on a read-only filesystem" in proc.stderr and "--rebuild" not in proc.stderr, proc.stderr
    code, report, stderr = index(mounted, ROOT / "sample-kb")
    assert code == 1 and "is on a read-only filesystem" in report["error"], (report, stderr)
    assert "--rebuild" not in report["error"]
    code, report, stderr = index(tmp_path / "q2", read_only(ROOT / "sample-kb"))
    assert code == 0 and report["error"] is None and report["added"] > 30, (report, stderr)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs of its own, unmounted afterwards whatever the test did; skipped where mounting is not
    permitted."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    point = tmp_path / "fs"
    point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(point)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_vote_the_full_disk_cuts_short_leaves_no_torn_line_and_the_votes_export(
    load_search_app: Any, bm25_index: Path, tmp_path: Path, small_tmpfs: Path
) -> None:
    """The votes file (``SLACK_FEEDBACK_FILE``, ``kbsearch serve``'s JSONL) on a disk that fills while a vote is
    appended: the line was written in part (up to the last free byte) and left so; the next vote was appended to
    that torn line, so it was lost, and ``kbsearch feedback export`` failed on every later run (``votes.jsonl:2:
    not a JSON vote``): no vote could be exported until the file was edited by hand. Now the cut-short write is
    taken back (the voter is told it could not be recorded), and once there is room the next vote is a line of its
    own: the export reads every vote."""
    from kbsearch.feedback import vote_record
    from kbsearch_tools.fakes import FakeEndpoint
    from tests.conftest import copy_store
    from tests.integration.test_slack_interactive import SECRET, ask, buttons, press, signed_event, wait_for

    votes = small_tmpfs / "votes.jsonl"
    first = vote_record("an earlier vote", {}, 0, ["en/intro.md"], 1, "up", "someone")
    line = json.dumps(first, ensure_ascii=False, separators=(",", ":"))
    first["query"] += " " * (4096 - 64 - len(line) - 2)  # a first line ending 64 bytes before its page's end
    votes.write_text(json.dumps(first, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    filler = small_tmpfs / "filler"
    with open(filler, "wb") as handle:  # every page of the filesystem taken but the votes file's last one
        size = 0
        while True:
            try:
                os.posix_fallocate(handle.fileno(), size, 4096)
            except OSError:
                break
            size += 4096
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    app = load_search_app(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1",
                          SLACK_FEEDBACK_FILE=str(votes), SLACK_TOP_K="3")  # fmt: skip
    hook = FakeEndpoint().start()
    try:
        found = buttons(ask(app, hook, "runbook"))
        app(signed_event("/slack/interactive", press(found["kb_vote_up"], hook.url + "/up", "1.1")))
        assert "could not be recorded" in wait_for(hook, 2)[-1]["text"]
        assert votes.read_bytes().endswith(b"\n")  # nothing of the vote the disk cut short
        filler.unlink()
        app(signed_event("/slack/interactive", press(found["kb_vote_down"], hook.url + "/down", "1.2")))
        assert "Thanks" in wait_for(hook, 3)[-1]["text"]
    finally:
        hook.stop()
    beir = tmp_path / "beir"
    proc = subprocess.run([*KBSEARCH_CMD, "feedback", "export", "--file", str(votes), "--beir", str(beir), "--kb",
                           str(ROOT / "sample-kb"), "--json"], capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, check=False, env=subprocess_env())  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, (proc.stdout, proc.stderr)
    records = [json.loads(raw) for raw in votes.read_text(encoding="utf-8").splitlines()]
    assert [r["vote"] for r in records] == ["up", "down"] and records[0]["query"].startswith("an earlier vote")


@pytest.mark.timeout(2 * PROCESS_TIMEOUT_S)
@pytest.mark.parametrize("cache", ["not a database", "a folder", "on a disk that fills"])
def test_an_oracle_cache_that_cannot_be_used_leaves_the_vectors_in_memory_with_one_warning(
    tmp_path: Path, small_tmpfs: Path, cache: str
) -> None:
    """``kbsearch index --oracle e5`` with its SQLite vector cache (``--oracle-cache``, default
    ``.kbsearch/oracle/e5.sqlite``) garbled, a folder in its place, or on a disk that fills as vectors are added:
    the first two were a ``sqlite3.DatabaseError`` / ``OperationalError`` traceback before any note was read, the
    last a traceback in the oracle's server for every embedding request after the disk filled (the embeddings
    answered 500, the sync stopped, exit 1). A cache is a cache: one warning naming the file, the vectors kept in
    memory for the run, the sync done."""
    from kbsearch_tools.oracle import unavailable
    from tests.integration.test_indexer import write_notes

    if unavailable("e5"):
        pytest.skip(unavailable("e5") or "")
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 30)
    if cache == "not a database":
        file = tmp_path / "e5.sqlite"
        file.write_bytes(bytes(range(256)) * 20)
    elif cache == "a folder":
        file = tmp_path / "e5.sqlite"
        file.mkdir()
    else:
        file = small_tmpfs / "e5.sqlite"
        (small_tmpfs / "filler").write_bytes(bytes(256 * 1024 - 24 * 1024))  # 24 KiB left: ~10 vectors' room
    proc = subprocess.run([*KBSEARCH_CMD, "index", str(kb), "--oracle", "e5", "--oracle-cache", str(file), "--json"],
                          capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, check=False,
                          env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")))  # fmt: skip
    assert "Traceback" not in proc.stderr and "Exception occurred" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    report = json.loads(proc.stdout)
    assert report["error"] is None and report["added"] == 30 and report["dense"] is True, report
    assert proc.stderr.count(f"oracle cache {file} cannot be used") == 1, proc.stderr


@pytest.mark.timeout(4 * PROCESS_TIMEOUT_S)
@pytest.mark.parametrize("body", ["", '{"embedding_model": "Qwen', "\x00" * 64, "[1, 2]"])
def test_a_collection_metadata_file_that_cannot_be_read_is_named_and_rebuild_repairs_it(
    tmp_path: Path, body: str
) -> None:
    """``<collection>.metadata.json`` beside the shard (the embedding the vectors were made with, the groups recorded
    on the chunks, the KB folder) emptied, cut short or zeroed: every sync stopped on ``cannot read the collection's
    metadata (JSONDecodeError)``, naming neither the file nor a way out (a JSON list was read as no metadata: the
    current embedding adopted for vectors of any model). Now the file and ``kbsearch index --rebuild`` are named, and
    that rebuilds the store; searches answer meanwhile (held)."""
    kb, store = ROOT / "sample-kb", tmp_path / "q"
    code, _, stderr = index(store, kb)
    assert code == 0, stderr
    metadata = store / "edge" / "kb.metadata.json"
    metadata.write_text(body, encoding="utf-8")
    proc = kbsearch(store, "search", "snapshot")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    code, report, stderr = index(store, kb)
    assert code == 1 and str(metadata) in report["error"] and "kbsearch index --rebuild" in report["error"], report
    code, report, stderr = index(store, kb, "--rebuild")
    assert code == 0 and report["error"] is None, (report, stderr)
    assert json.loads(metadata.read_text(encoding="utf-8"))["kb_source"] == str(kb)
    code, report, stderr = index(store, kb)
    assert code == 0 and report["error"] is None and report["unchanged"] > 30, (report, stderr)


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S)
def test_a_note_whose_mtime_no_date_can_hold_is_indexed_and_the_rest_too(tmp_path: Path, small_tmpfs: Path) -> None:
    """A KB on a filesystem that stores 64-bit times (tmpfs here; XFS, btrfs, NFS), one note's mtime past the year
    9999 or before year 1 (a bad clock, ``touch -d``, a restore tool): the listing turned it into a date, and the
    ``ValueError`` (``year 11476 is out of range``) stopped ``kbsearch index`` with a traceback: nothing indexed,
    every run. Now such a note is listed without a date (as an S3 object without one) and indexed like the others;
    a single note's lookup (an event run, ``--watch``) likewise. Odd mtimes within range (0, 2446, the same for every
    file) are held: the listing hashes the notes."""
    from kbsearch.sources import LocalSource, head
    from tests.integration.test_indexer import write_notes

    kb = small_tmpfs / "kb"
    kb.mkdir()
    write_notes(kb, 6)
    os.utime(kb / "n00.md", ns=(0, 300_000_000_000 * 10**9))  # year 11476
    os.utime(kb / "n01.md", ns=(0, -300_000_000_000 * 10**9))  # before year 1
    os.utime(kb / "n02.md", ns=(0, 0))
    code, report, stderr = index(tmp_path / "q", kb)
    assert code == 0 and report["error"] is None and report["added"] == 6, (report, stderr)
    found = head(LocalSource(kb), "n00.md")
    assert found is not None and found.modified is None and found.etag
    (kb / "n00.md").write_text((kb / "n00.md").read_text(encoding="utf-8") + "\nquokka\n", encoding="utf-8")
    os.utime(kb / "n00.md", ns=(0, 300_000_000_000 * 10**9))
    code, report, stderr = index(tmp_path / "q", kb)
    assert code == 0 and report["updated"] == 1 and report["unchanged"] == 5, (report, stderr)


@pytest.mark.timeout(4 * PROCESS_TIMEOUT_S)
@pytest.mark.parametrize("name", ["kb.state.json", "kb.metadata.json", "kb.sequencers.json"])
def test_a_fifo_in_place_of_a_file_beside_the_store_never_hangs_a_run(tmp_path: Path, name: str) -> None:
    """The files beside the shard that kb-search reads whole (the saved index state, the collection's metadata,
    ``--watch``'s sequencer log) replaced by a FIFO: ``kbsearch index`` hung for good on opening the state or the
    metadata (as on the lock file, round 21), and a watcher's sequencer log the same. Now each is opened without
    blocking and refused unless a regular file: the state is read from the points and saved anew, the metadata is
    named as unreadable with ``--rebuild``, the sequencer log starts afresh."""
    kb, store = ROOT / "sample-kb", tmp_path / "q"
    code, _, stderr = index(store, kb)
    assert code == 0, stderr
    fifo = store / "edge" / name
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    if name == "kb.sequencers.json":
        proc = subprocess.run([*KBSEARCH_CMD[:1], "-c", "import sys; from pathlib import Path; from kbsearch.sequencers "
                               "import FileSequencers; print(FileSequencers(Path(sys.argv[1])).get(['a.md']))", str(fifo)],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert proc.returncode == 0 and proc.stdout.strip() == "{}", proc.stderr
        return
    code, report, stderr = index(store, kb)
    if name == "kb.state.json":
        assert code == 0 and report["error"] is None and report["unchanged"] > 30, (report, stderr)
        assert fifo.is_file()  # saved anew in its place
    else:
        assert code == 1 and "kb.metadata.json is not a regular file" in report["error"], report
        assert "kbsearch index --rebuild" in report["error"]


@pytest.mark.timeout(5 * PROCESS_TIMEOUT_S)
def test_a_rebuild_that_cannot_delete_a_file_of_the_store_says_so_never_done(tmp_path: Path) -> None:
    """``kbsearch index --rebuild`` (or a rebuild for another embedding) on a store one of whose files cannot be
    deleted (``chattr +i``: immutable even to root; a file another user owns under a sticky folder): the deletion
    ignored every error, the run said ``sync done`` over the file left behind, and the store no longer opened
    (``failed to delete leftover segment: Operation not permitted``). Now the rebuild stops naming the file and the
    cause; once it can be deleted, the rebuild completes."""
    if os.geteuid() != 0 or not shutil.which("chattr"):
        pytest.skip("chattr +i needs root")
    kb, store = ROOT / "sample-kb", tmp_path / "q"
    code, _, stderr = index(store, kb)
    assert code == 0, stderr
    (segment,) = (store / "edge" / "kb" / "segments").glob("*/segment.json")
    done = subprocess.run(["chattr", "+i", str(segment)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {done.stderr.strip()}")
    try:
        code, report, stderr = index(store, kb, "--rebuild")
        assert code == 1 and report["incomplete"] is True and not report["rebuilt"], (report, stderr)
        assert "deleting the collection 'kb' failed" in report["error"] and "Operation not permitted" in report["error"]
        assert "segment.json" in report["error"], report["error"]
    finally:
        subprocess.run(["chattr", "-R", "-i", str(store)], check=False)  # wherever Edge moved it
    code, report, stderr = index(store, kb, "--rebuild")
    assert code == 0 and report["error"] is None, (report, stderr)
    proc = kbsearch(store, "search", "snapshot")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.timeout(5 * PROCESS_TIMEOUT_S)
def test_a_store_whose_payloads_cannot_be_read_names_edges_reason_and_rebuild(tmp_path: Path) -> None:
    """A shard that loads but whose payload page was zeroed (a disk's lost writes): every search stopped on ``Qdrant
    query failed (Exception)``, nothing to go on (and a sync on ``Qdrant scroll failed (Exception)`` when it read the
    points through a scroll). Now Edge's reason (``Failed to decompress LZ4 value``) and ``kbsearch index
    --rebuild`` are named, and that rebuilds it; a sync reading the index's state names the reason (held)."""
    kb, store = ROOT / "sample-kb", tmp_path / "q"
    code, _, stderr = index(store, kb)
    assert code == 0, stderr
    for page in (store / "edge" / "kb" / "segments").glob("*/payload_storage/page_0.dat"):
        _zeroed(page)
    proc = kbsearch(store, "search", "snapshot")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "(Exception)" not in proc.stderr, proc.stderr
    assert "Failed to decompress" in proc.stderr and "kbsearch index --rebuild" in proc.stderr, proc.stderr
    (store / "edge" / "kb.state.json").unlink()  # a sync that reads the points (a change, no saved state)
    code, report, stderr = index(store, kb)
    assert code == 1 and "(Exception)" not in report["error"], report["error"]
    assert "Failed to decompress" in report["error"], report["error"]
    code, report, stderr = index(store, kb, "--rebuild")
    assert code == 0 and report["error"] is None, (report, stderr)
    assert kbsearch(store, "search", "snapshot").returncode == 0
