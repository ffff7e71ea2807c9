"""``Store.set_payloads``: many notes' payload updates as few Qdrant calls, the same contract on every store.

Qdrant Edge (the embedded default) and qdrant-client's local mode (its fallback; the same class serves Qdrant
Cloud) are each given notes of one and several chunks, updates of many notes at once (past one operation's
``match any`` and past one request's operations), a note named twice, notes never named: every chunk of a named
note gets the payload and keeps everything else (other fields, its vectors), others are untouched, and the index
state the indexer reads says so after the store is reopened. Against Qdrant Cloud's REST API (a loopback server
speaking its JSON), the updates of thousands of notes are one ``POST /collections/{c}/points/batch`` of
``set_payload`` operations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Settings
from kbsearch.lexical import document_vector
from kbsearch.qdrant.embedded import open_embedded
from kbsearch.qdrant.store import OPERATIONS_PER_REQUEST, PATHS_PER_OPERATION, ChunkPoint, Store
from kbsearch_tools.fakes import FakeEndpoint

DIMS = 32


def chunks(path: str, n: int) -> list[ChunkPoint]:
    out = []
    for i in range(n):
        payload = {"path": path, "chunk_index": i, "n_chunks": n, "etag": "e1", "dense": True, "title": path,
                   "access": ["public"], "access_from": "default", "text": f"text of {path} {i}"}  # fmt: skip
        out.append(
            ChunkPoint(path, i, payload, document_vector(f"words of {path}"), [float(i + 1)] + [0.5] * (DIMS - 1))
        )
    return out


def open_kind(kind: str, root: Path) -> Store:
    return open_embedded(Settings(qdrant_path=str(root), qdrant_embedded=kind, embedding_dimensions=DIMS))


@pytest.mark.parametrize("kind", ["edge", "local"])
def test_set_payloads_updates_every_chunk_of_the_named_notes_only(tmp_path: Path, kind: str) -> None:
    store = open_kind(kind, tmp_path / "q")
    store.ensure_collection()
    many = [f"bulk/n{i:04d}.md" for i in range(PATHS_PER_OPERATION + 37)]  # past one operation's paths
    small = [f"small/s{i:03d}.md" for i in range(OPERATIONS_PER_REQUEST + 3)]  # one payload each: past a request
    points = [c for p in many for c in chunks(p, 1)] + [c for p in small for c in chunks(p, 2)]
    points += chunks("multi/long note.md", 5) + chunks("other/untouched.md", 3) + chunks("twice.md", 2)
    store.upsert(points)
    before = {pid: dict(p) for pid, p in store.points().items()}
    vectors_before = {str(payload["path"]): vector for payload, vector in store.note_points(["multi/long note.md"])}

    hr = {"access": ["hr"], "access_from": "folder:bulk"}
    updates: list[tuple[list[str], dict[str, Any]]] = [([*many, "multi/long note.md", "twice.md"], hr)]
    updates += [([p], {"access": [f"g{i}"], "access_from": "frontmatter"}) for i, p in enumerate(small)]
    updates.append((["twice.md"], {"access": ["finance"], "access_from": "frontmatter"}))  # the later one wins
    updates.append(([], {"access": ["nobody"], "access_from": "frontmatter"}))  # names no note: nothing
    store.set_payloads(updates)
    store.set_payloads([])  # nothing to do

    expected: dict[str, tuple[list[str], str]] = {p: (["hr"], "folder:bulk") for p in [*many, "multi/long note.md"]}
    expected |= {p: ([f"g{i}"], "frontmatter") for i, p in enumerate(small)}
    expected["twice.md"] = (["finance"], "frontmatter")
    expected["other/untouched.md"] = (["public"], "default")
    after = store.points()
    assert after.keys() == before.keys()
    for pid, payload in after.items():
        path = payload["path"]
        assert (payload["access"], payload["access_from"]) == expected[path], path
        rest = {k: v for k, v in payload.items() if k not in ("access", "access_from")}
        assert rest == {k: v for k, v in before[pid].items() if k not in ("access", "access_from")}
    assert {str(p["path"]): v for p, v in store.note_points(["multi/long note.md"])} == vectors_before
    store.close()

    reopened = open_kind(kind, tmp_path / "q")  # what the indexer reads (Edge: its saved state, kept right)
    try:
        state = reopened.indexed_state()
        assert {path: st.access() for path, st in state.items()} == {
            path: (tuple(groups), source) for path, (groups, source) in expected.items()
        }
    finally:
        reopened.close()


def test_against_qdrant_cloud_thousands_of_notes_are_one_batch_request() -> None:
    """qdrant-client against a loopback server answering as Qdrant does: the updates go out as Qdrant's batch
    update, one ``set_payload`` operation by a ``path`` filter per payload and up to PATHS_PER_OPERATION notes."""
    from qdrant_client import QdrantClient

    endpoint = FakeEndpoint().start()

    def respond(method: str, path: str) -> tuple[int, bytes, str] | None:
        sent = endpoint.requests[-1].body
        done = [{"operation_id": i, "status": "completed"} for i, _ in enumerate(sent.get("operations", []))]
        return 200, json.dumps({"result": done, "status": "ok", "time": 0.001}).encode(), "application/json"

    endpoint.responder = respond
    client = QdrantClient(url=endpoint.url, check_compatibility=False, timeout=10)
    try:
        store = Store(client, "kb", DIMS, embedded=False)
        restricted = [f"copy-00/n{i:04d}.md" for i in range(1500)]
        public = [f"copy-01/n{i:04d}.md" for i in range(700)]
        store.set_payloads([(restricted, {"access": ["hr"], "access_from": "folder:copy-00"}),
                            (public, {"access": ["public"], "access_from": "default"})])  # fmt: skip
        [request] = endpoint.requests
        assert request.path.startswith("/collections/kb/points/batch")
        operations = request.body["operations"]
        assert len(operations) == 3  # 1,500 notes: two operations of at most PATHS_PER_OPERATION; 700: one
        named: dict[str, list[str]] = {}
        for op in operations:
            (condition,) = op["set_payload"]["filter"]["must"]
            assert condition["key"] == "path" and len(condition["match"]["any"]) <= PATHS_PER_OPERATION
            named.setdefault(op["set_payload"]["payload"]["access_from"], []).extend(condition["match"]["any"])
        assert sorted(named["folder:copy-00"]) == sorted(restricted) and sorted(named["default"]) == sorted(public)

        endpoint.requests.clear()
        store.set_payloads([([f"n{i}.md"], {"access": [f"g{i}"], "access_from": "frontmatter"})
                            for i in range(OPERATIONS_PER_REQUEST * 2 + 1)])  # fmt: skip
        assert [len(r.body["operations"]) for r in endpoint.requests] == [OPERATIONS_PER_REQUEST] * 2 + [1]
    finally:
        client.close()
        endpoint.stop()
