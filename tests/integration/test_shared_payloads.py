"""The embedded store hands a note's shared payload values to Qdrant Edge once per note (``EdgeStore.upsert``: each
point's own values in the upsert, the values all the note's chunks share in one ``set_payload`` of its points after
it), and stores every chunk's payload exactly as given, as local mode (which writes each payload whole) does; a note
whose shared values were never written (the process died between the two) is found by its path and rewritten by the
next sync."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
from kbsearch.lexical import document_vector
from kbsearch.qdrant import open_store
from kbsearch.qdrant.embedded import OWN_FIELDS, EdgeStore, open_embedded, shared_payloads
from kbsearch.qdrant.query import point_number
from kbsearch.qdrant.store import ChunkPoint, Store
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import ROOT, provider_settings

pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform (the fallback is local mode)")

DIMS = 32
SAMPLE = ROOT / "sample-kb"


def chunk(path: str, index: int, **values: Any) -> ChunkPoint:
    payload = {"path": path, "chunk_index": index, **values}
    return ChunkPoint(path, index, payload, document_vector(f"words of {path} {index}"), [float(index + 1)] * DIMS)


def batches() -> list[list[ChunkPoint]]:
    """Notes of several chunks sharing strings, lists and an object, values equal in Python but not in JSON (1, 1.0,
    True), a value on one chunk only, one that differs on one chunk; a note of one chunk; a chunk written twice in
    one batch (the later one counts); a note across two batches."""
    note = {"title": "Sync", "folders": ["a", "a/b"], "tags": [], "etag": "e1", "n_chunks": 3, "dense": True,
            "links": "x\ny", "access": ["public"], "meta": {"k": [1, "v"]}}  # fmt: skip
    first = [
        chunk("a/b/sync.md", 0, **note, weight=1, text="one", extra="only here"),
        chunk("a/b/sync.md", 1, **note, weight=1.0, text="two"),
        chunk("a/b/sync.md", 2, **note, weight=True, text="three"),
        chunk("a/one.md", 0, title="One", etag="e2", n_chunks=1, text="alone", access=["public"]),
        chunk("a/twice.md", 0, title="Old", etag="e3", n_chunks=2, text="old"),
        chunk("a/twice.md", 1, title="Twice", etag="e3", n_chunks=2, text="b"),
        chunk("a/twice.md", 0, title="Twice", etag="e3", n_chunks=2, text="new"),
        chunk("a/split.md", 0, title="Split", etag="e4", n_chunks=4, text="s0", tags=["t"]),
        chunk("a/split.md", 1, title="Split", etag="e4", n_chunks=4, text="s1", tags=["t"]),
    ]
    second = [
        chunk("a/split.md", 2, title="Split", etag="e4", n_chunks=4, text="s2", tags=["t"]),
        chunk("a/split.md", 3, title="Split", etag="e5", n_chunks=4, text="s3", tags=["u"]),
    ]
    return [first, second]


def stored(store: Store) -> dict[tuple[str, int], str]:
    """Every point's payload as JSON with sorted keys (so that 1, 1.0 and true differ), by (path, chunk)."""
    points, _ = store.scroll({"limit": 100, "with_payload": True}, 10.0)
    return {(p["payload"]["path"], p["payload"]["chunk_index"]): json.dumps(p["payload"], sort_keys=True)
            for p in points}  # fmt: skip


def written(groups: list[list[ChunkPoint]]) -> dict[tuple[str, int], str]:
    return {(c.path, c.chunk_index): json.dumps(c.payload, sort_keys=True) for group in groups for c in group}


def test_a_notes_shared_values_are_set_once_and_only_values_every_chunk_holds_alike() -> None:
    first, _ = batches()
    own, notes = shared_payloads(first)
    by_path = {members[0].path: (len(members), payload) for members, payload in notes}
    assert set(by_path) == {"a/b/sync.md", "a/twice.md", "a/split.md"}  # a note of one chunk here: written whole
    count, shared = by_path["a/b/sync.md"]
    assert count == 3
    assert shared == {"title": "Sync", "folders": ["a", "a/b"], "tags": [], "etag": "e1", "n_chunks": 3,
                      "dense": True, "links": "x\ny", "access": ["public"], "meta": {"k": [1, "v"]}}  # fmt: skip
    assert own[0] == {"path": "a/b/sync.md", "chunk_index": 0, "weight": 1, "text": "one", "extra": "only here"}
    assert own[2] == {"path": "a/b/sync.md", "chunk_index": 2, "weight": True, "text": "three"}
    assert own[3] is first[3].payload
    assert by_path["a/twice.md"] == (3, {"etag": "e3", "n_chunks": 2})  # "Old" on one of the three: not shared
    for payload in own:
        assert payload.keys() >= OWN_FIELDS


@pytest.mark.parametrize("kind", ["edge", "local"])
def test_every_chunk_is_stored_with_its_payload_exactly(tmp_path: Path, kind: str) -> None:
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_embedded=kind, embedding_dimensions=DIMS)
    groups = batches()
    store = open_embedded(settings)
    try:
        store.ensure_collection()
        for group in groups:
            store.upsert(group)
    finally:
        store.close()
    want = written(groups)
    want[("a/twice.md", 0)] = json.dumps(groups[0][6].payload, sort_keys=True)  # written twice: the later one
    store = open_embedded(settings)
    try:
        assert isinstance(store, EdgeStore) == (kind == "edge")
        assert stored(store) == want
        state = store.indexed_state()
        assert sorted(state["a/b/sync.md"].chunks["e1"]) == [0, 1, 2]
        assert state["a/split.md"].chunks == {"e4": {0, 1, 2}, "e5": {3}}
    finally:
        store.close()


def test_a_note_whose_shared_values_were_never_written_is_rewritten_by_the_next_sync(
    tmp_path: Path, deepinfra: FakeProvider
) -> None:
    settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"), embedding_dimensions=64)
    report = run_sync(settings, Secrets(settings), source_uri=str(SAMPLE))
    assert report.error is None and report.added >= 35
    store = open_store(settings, Secrets(settings))
    assert isinstance(store, EdgeStore)
    try:
        whole = stored(store)
        path = max({p for p, _ in whole}, key=lambda p: sum(1 for q, _ in whole if q == p))  # a note of many chunks
        keys = sorted(k for k in whole if k[0] == path)
        assert len(keys) >= 3
        chunks = [ChunkPoint(path, i, json.loads(whole[(path, i)]), document_vector(""), None) for _, i in keys]
        own, notes = shared_payloads(chunks)
        assert notes and "etag" in notes[0][1] and "access" in notes[0][1]
        import qdrant_edge as edge

        # what the store holds when the process dies after the upsert and before the note's set_payload
        for c, payload in zip(chunks, own, strict=True):
            store.shard.update(edge.UpdateOperation.overwrite_payload([point_number(path, c.chunk_index)], payload))
        assert store.indexed_state()[path].chunks.keys() == {""}  # no etag: the note reads as changed
    finally:
        store.close()

    again = run_sync(settings, Secrets(settings), source_uri=str(SAMPLE))
    assert again.error is None and again.updated + again.repaired >= 1 and again.added == 0
    store = open_store(settings, Secrets(settings))
    try:
        after = stored(store)
    finally:
        store.close()
    for key in keys:
        mine, theirs = json.loads(after[key]), json.loads(whole[key])
        mine.pop("indexed_at", None), theirs.pop("indexed_at", None)
        mine.pop("links_at", None), theirs.pop("links_at", None)  # the link targets' generation: history
        assert mine == theirs
