"""The embedded store's saved index state (``<collection>.state.json`` beside the Edge shard): a sync that changes
nothing reads it instead of every point's payload, and it never stands in for points it does not describe: after
every kind of change, by the indexer or by an event-driven run, it says what the points say; a write it did not
see (a process killed before closing the store) and every kind of unusable file send the next sync back to the
points."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.errors import StoreError
from kbsearch.events import Change
from kbsearch.indexer import ChangeSync, SyncOptions, run_sync
from kbsearch.lexical import SparseVector
from kbsearch.qdrant import open_store
from kbsearch.qdrant.store import ChunkPoint, NoteState
from kbsearch.sources import LocalSource
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import PROCESS_TIMEOUT_S, ROOT, provider_settings, subprocess_env

pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform (the fallback is local mode)")

SAMPLE = ROOT / "sample-kb"


def state_file(settings: Settings) -> Path:
    return Path(settings.qdrant_path) / "edge" / f"{settings.qdrant_collection}.state.json"


def saved_state(settings: Settings) -> dict[str, NoteState]:
    """What the saved file says, decoded."""
    _header, body = state_file(settings).read_text(encoding="utf-8").split("\n", 1)
    return {path: NoteState.decode(value) for path, value in json.loads(body).items()}


def points_state(settings: Settings) -> dict[str, NoteState]:
    """What the points say: the state read from every point, with no saved file to start from."""
    state_file(settings).unlink(missing_ok=True)
    store = open_store(settings, Secrets(settings))
    try:
        return store.indexed_state()
    finally:
        store.close()


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    folder = tmp_path / "kb"
    shutil.copytree(SAMPLE, folder)
    return folder


@pytest.fixture
def settings(tmp_path: Path, deepinfra: FakeProvider) -> Settings:
    return provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"))


def sync(settings: Settings, kb: Path) -> dict[str, object]:
    report = run_sync(settings, Secrets(settings), source_uri=str(kb))
    assert report.error is None, report.error
    return report.to_dict()


def test_the_saved_state_says_what_the_points_say_after_every_kind_of_change(settings: Settings, kb: Path) -> None:
    first = sync(settings, kb)
    notes = int(first["added"])  # type: ignore[call-overload]
    assert notes >= 35 and saved_state(settings) == points_state(settings)

    # a sync that changes nothing uses the file as it is (not rewritten) and finds nothing to do
    before = state_file(settings).stat().st_mtime_ns
    again = sync(settings, kb)
    assert (again["unchanged"], again["added"], again["updated"], again["deleted"]) == (notes, 0, 0, 0)
    assert state_file(settings).stat().st_mtime_ns == before

    notes_md = [kb / path for path in sorted(saved_state(settings))]  # indexed notes (a broken one is not)
    longest = max(notes_md, key=lambda p: p.stat().st_size)
    notes_md.remove(longest)
    changes: list[tuple[str, Callable[[], object]]] = [
        ("a note grows", lambda: longest.write_text(longest.read_text(encoding="utf-8") * 3, encoding="utf-8")),
        ("a note shrinks to one chunk", lambda: longest.write_text("# Short\n\nNow one line.\n", encoding="utf-8")),
        ("a note is deleted", notes_md[0].unlink),
        ("a note is added", lambda: (kb / "en" / "brand new.md").write_text("# New\n\nfresh text\n", encoding="utf-8")),
        ("a note declares groups", lambda: notes_md[1].write_text(
            "---\naccess: [hr]\n---\n" + notes_md[1].read_text(encoding="utf-8"), encoding="utf-8")),
        ("a folder is restricted", lambda: (kb / "_access.md").write_text(
            "---\nfolders:\n  ru/: [ops]\n---\n", encoding="utf-8")),
    ]  # fmt: skip
    for what, change in changes:
        change()
        report = sync(settings, kb)
        assert report["added"] or report["updated"] or report["deleted"] or report["access_updated"], what
        assert saved_state(settings) == points_state(settings), what
        settled = sync(settings, kb)  # from the saved state: nothing left to do
        assert (settled["added"], settled["updated"], settled["deleted"], settled["access_updated"]) == (0, 0, 0, 0)


@pytest.mark.parametrize("state_read_first", [False, True], ids=["event-run", "after-a-sync-in-process"])
def test_an_event_driven_run_keeps_the_saved_state_true(settings: Settings, kb: Path, state_read_first: bool) -> None:
    """Edits, a deletion, and a new note written twice (added, then edited) in one process: as an event-driven run
    does, and as kbsearch serve --watch does after its sync has read the state."""
    sync(settings, kb)
    rel, gone_rel = sorted(saved_state(settings))[2:4]
    target = kb / rel
    target.write_text(target.read_text(encoding="utf-8") + "\n\nOne more paragraph about snapshots.\n", "utf-8")
    (kb / gone_rel).unlink()
    new = kb / "en" / "written twice.md"
    new.write_text("# Twice\n\nfirst version\n", encoding="utf-8")
    store = open_store(settings, Secrets(settings))
    try:
        if state_read_first:
            store.indexed_state()
        changes = ChangeSync(LocalSource(kb), store, None, SyncOptions())
        report = changes.apply([Change(path=rel, key=rel, removed=False), Change(path=gone_rel, key=gone_rel,
                                removed=True), Change(path="en/written twice.md", key="en/written twice.md",
                                removed=False)])  # fmt: skip
        new.write_text("# Twice\n\nsecond version, " + "longer " * 800 + "\n", encoding="utf-8")
        again = changes.apply([Change(path="en/written twice.md", key="en/written twice.md", removed=False)])
    finally:
        store.close()
    assert (report.updated, report.deleted, report.added, again.updated) == (1, 1, 1, 1)
    assert saved_state(settings) == points_state(settings)
    assert gone_rel not in saved_state(settings) and "en/written twice.md" in saved_state(settings)


WRITE_AND_DIE = r"""
import os, sys
from kbsearch.config import Secrets, Settings
from kbsearch.errors import StoreError
from kbsearch.qdrant import open_store
settings = Settings(qdrant_path=sys.argv[1], embedding_dimensions=64)
store = open_store(settings, Secrets(settings))
store.delete_note(sys.argv[2])
store.set_payload(sys.argv[3], {"access": ["nobody"], "access_from": "folder"})
store.flush_writes()
os._exit(0)  # killed before closing the store: the saved state never hears of these writes
"""


def test_writes_the_saved_state_did_not_see_send_the_sync_back_to_the_points(settings: Settings, kb: Path) -> None:
    sync(settings, kb)
    paths = sorted(points_state(settings))
    sync(settings, kb)  # the file is saved again and valid
    deleted, restricted = paths[0], paths[1]
    done = subprocess.run(
        [sys.executable, "-c", WRITE_AND_DIE, settings.qdrant_path, deleted, restricted],
        env=subprocess_env(), capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert deleted in saved_state(settings)  # the file still describes the shard before the writes
    report = sync(settings, kb)
    assert report["added"] == 1  # the deleted note is indexed again
    assert report["access_updated"] == 1  # and the groups nobody declared are put right
    assert saved_state(settings) == points_state(settings)


def _with_body(body: str) -> Callable[[Path], object]:
    """The file's own (valid) fingerprint over another body."""
    return lambda f: f.write_text(f.read_text(encoding="utf-8").split("\n", 1)[0] + "\n" + body, encoding="utf-8")


def _truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


DAMAGES: dict[str, Callable[[Path], object]] = {
    "truncated": _truncate,
    "garbage": lambda f: f.write_bytes(b"\x00\xff garbage \x80" * 50),
    "empty": lambda f: f.write_bytes(b""),
    "missing": Path.unlink,
    "another-fingerprint": lambda f: f.write_text("[0]\n{}", encoding="utf-8"),
    "body-not-an-object": _with_body("[]"),
    "body-wrong-shape": _with_body('{"a.md": [1, 2]}'),
    "body-wrong-types": _with_body('{"a.md": [{"e": "x"}, {"e": [1]}, true, 1, {}, [], [], true]}'),
    "body-int-for-bool": _with_body('{"a.md": [{"e": 1}, {"e": [1]}, 1, 1, {}, [], [], true]}'),
    "bad-access": _with_body('{"a.md": [{"e": 1}, {"e": [1]}, true, 1, {}, [], [[["g"], 5]], true]}'),
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_an_unusable_saved_state_is_read_from_the_points(
    settings: Settings, kb: Path, damage: Callable[[Path], object]
) -> None:
    first = sync(settings, kb)
    damage(state_file(settings))
    report = sync(settings, kb)
    assert (report["unchanged"], report["added"], report["updated"], report["deleted"]) == (first["added"], 0, 0, 0)
    assert saved_state(settings) == points_state(settings)  # saved anew


def test_another_stores_saved_state_is_not_used(tmp_path: Path, deepinfra: FakeProvider, kb: Path) -> None:
    one = provider_settings(deepinfra, qdrant_path=str(tmp_path / "one"))
    two = provider_settings(deepinfra, qdrant_path=str(tmp_path / "two"))
    sync(one, kb)
    (kb / sorted(saved_state(one))[0]).unlink()
    sync(two, kb)  # one note fewer
    shutil.copyfile(state_file(one), state_file(two))
    report = sync(two, kb)
    assert (report["added"], report["deleted"]) == (0, 0)  # not told of a note the store does not hold
    assert saved_state(two) == points_state(two)


REFUSED = {
    "dense-of-other-dimensions": ([0.5] * 3, SparseVector([1], [1.0])),
}


@pytest.mark.parametrize("vectors", REFUSED.values(), ids=REFUSED.keys())
def test_points_the_engine_refused_are_not_in_the_saved_state(
    settings: Settings, kb: Path, vectors: tuple[list[float], SparseVector]
) -> None:
    """A write the engine refuses (here: a vector of other dimensions) leaves no trace in the saved state."""
    sync(settings, kb)
    store = open_store(settings, Secrets(settings))
    try:
        store.indexed_state()  # the state is known: a new note's state would come from what is written
        payload = {"path": "en/new.md", "chunk_index": 0, "n_chunks": 1, "etag": "e", "dense": True, "doc_id": "x"}
        chunk = ChunkPoint("en/new.md", 0, payload, vectors[1], vectors[0])
        with pytest.raises(StoreError):
            store.upsert([chunk])
    finally:
        store.close()
    assert saved_state(settings) == points_state(settings)
    assert "en/new.md" not in saved_state(settings)
