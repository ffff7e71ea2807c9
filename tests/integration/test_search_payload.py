"""Searches fetch what they return: every leg of the retrieval carries only what the fusion and the prior read
(``SEARCH_PAYLOAD``), the reranker's candidates get the passage fields, and the hits alone get their whole payload,
fetched by point id under the search's own filter (a chunk that left the index or the scope in between is dropped,
never shown). Through the search service on the embedded store (Qdrant Edge), with loopback provider fakes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets
from kbsearch.qdrant import open_store
from kbsearch.qdrant.embedded import EmbeddedRetriever
from kbsearch.qdrant.query import (
    HIT_PAYLOAD,
    PASSAGE_PAYLOAD,
    SEARCH_PAYLOAD,
    Candidate,
    complete,
    filter_json,
    point_id,
)
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch_tools.bench import ByteCountingRetriever
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import provider_settings
from tests.integration import test_search
from tests.integration.test_search import DIMS

indexed, store_path = test_search.indexed, test_search.store_path  # sample-kb indexed once, a copy per test


class Recording(ByteCountingRetriever):
    """Every request and answer of the store, in order."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.calls: list[tuple[str, Any, Any]] = []

    def query(self, request: dict[str, Any], timeout_s: float) -> Any:
        answer = super().query(request, timeout_s)
        self.calls.append(("query", request, answer))
        return answer

    def query_batch(self, searches: list[dict[str, Any]], timeout_s: float) -> Any:
        answer = super().query_batch(searches, timeout_s)
        self.calls.append(("batch", searches, answer))
        return answer


def _ids(node: Any) -> list[str]:
    """The point ids a fetch asks for, wherever its filter nests them."""
    if isinstance(node, dict):
        return list(node["has_id"]) if "has_id" in node else [i for v in node.values() for i in _ids(v)]
    return [i for v in node for i in _ids(v)] if isinstance(node, list) else []


def _service(store_path: Path, deepinfra: FakeProvider | None, **extra: object) -> tuple[SearchService, Recording]:
    settings = provider_settings(deepinfra, None, qdrant_path=str(store_path), **({"embedding_dimensions": DIMS}
                                                                                    | extra))  # fmt: skip
    service = SearchService(settings, Secrets(settings))
    recording = Recording(service.retriever)
    service._retriever = recording  # observe the store's answers; the search runs unchanged
    return service, recording


@pytest.mark.parametrize("fusion", ["adaptive", "rrf"])
def test_legs_carry_what_the_fusion_reads_and_hits_their_whole_payload(
    store_path: Path, deepinfra: FakeProvider, fusion: str
) -> None:
    service, recording = _service(store_path, deepinfra, search_fusion=fusion)
    try:
        answer = service.search(SearchRequest(query="restore a qdrant snapshot", top_k=3, rerank=False))
    finally:
        service.close()
    assert len(answer.results) == 3
    retrieval, *fetches = recording.calls
    legs = retrieval[2] if retrieval[0] == "batch" else [retrieval[2]]
    allowed = set(SEARCH_PAYLOAD["include"])
    assert sum(len(points) for points in legs) > 10
    assert all(set(p["payload"]) <= allowed for points in legs for p in points)  # no text, links, tags, meta

    ((kind, request, hits),) = fetches  # no rerank: one fetch, for the hits alone
    assert kind == "query" and request["with_payload"] == HIT_PAYLOAD
    assert len(_ids(request["filter"])) == 3 and len(hits) == 3
    store = open_store(service.settings, Secrets(service.settings))
    try:
        stored = store.points()
    finally:
        store.close()
    for hit in answer.results:
        chunks = [p for p in stored.values() if p["path"] == hit.path]
        best = next(p for p in chunks if p["heading"] == hit.heading)
        assert (hit.title, hit.tags, hit.links, hit.type, hit.status) == (
            best["title"], best["tags"], best["links"], best["type"], best["status"])  # fmt: skip
        assert hit.snippet.rstrip("…")[:40] in " ".join(best["text"].split())


def test_the_reranker_reads_passages_fetched_for_its_candidates_only(store_path: Path, deepinfra: FakeProvider) -> None:
    service, recording = _service(store_path, deepinfra)
    try:
        answer = service.search(SearchRequest(query="how do I rotate the API keys", top_k=2, rerank=True))
    finally:
        service.close()
    assert answer.meta.reranker == "deepinfra" and len(answer.results) == 2
    _, (kind, passages, got), (_, hits, _) = recording.calls
    assert kind == "query" and passages["with_payload"] == PASSAGE_PAYLOAD
    assert len(got) == answer.meta.candidates and all(set(p["payload"]) == {"title", "heading", "text"} for p in got)
    documents = deepinfra.calls("rerank")[0].body["documents"]
    assert len(documents) == answer.meta.candidates and all(d.strip() for d in documents)
    assert hits["with_payload"] == HIT_PAYLOAD and len(_ids(hits["filter"])) == 2


def test_a_search_receives_a_fraction_of_the_bytes_whole_payloads_weigh(
    store_path: Path, deepinfra: FakeProvider
) -> None:
    service, recording = _service(store_path, deepinfra)
    try:
        service.search(SearchRequest(query="snapshot restore runbook", top_k=10, rerank=False))
        received = recording.bytes
        kind, searches, _ = recording.calls[0]
        assert kind == "batch"
        whole = recording.inner.query_batch([s | {"with_payload": HIT_PAYLOAD} for s in searches], 10.0)
    finally:
        service.close()
    weighs = len(json.dumps({"result": whole}, ensure_ascii=False).encode())
    assert received < 0.5 * weighs, (received, weighs)


def test_a_chunk_gone_or_out_of_scope_since_the_retrieval_is_dropped_not_shown(store_path: Path) -> None:
    settings = provider_settings(None, None, qdrant_path=str(store_path), embedding_dimensions=DIMS)
    store = open_store(settings, Secrets(settings))
    retriever = EmbeddedRetriever(store)
    try:
        stored = store.points()
        firsts = sorted((p for p in stored.values() if p["chunk_index"] == 0), key=lambda p: p["path"])[:3]
        candidates = [Candidate({k: p[k] for k in ("path", "chunk_index")}, 1.0 - i / 10) for i, p in enumerate(firsts)]
        store.delete_note(firsts[1]["path"])  # deleted after the retrieval found it
        kept = complete(retriever, candidates, HIT_PAYLOAD, None, 10.0)
        assert [c.payload["path"] for c in kept] == [firsts[0]["path"], firsts[2]["path"]]
        assert all(c.payload["text"] == stored[point_id(c.payload["path"], 0)]["text"] for c in kept)

        fresh = [Candidate({"path": firsts[0]["path"], "chunk_index": 0}, 1.0)]
        other_folder = filter_json(path_prefix="no/such/folder")  # the caller's filter holds for the fetch too
        assert complete(retriever, fresh, HIT_PAYLOAD, other_folder, 10.0) == []
        assert "meta" not in complete(retriever, fresh, HIT_PAYLOAD, None, 10.0)[0].payload
    finally:
        store.close()
