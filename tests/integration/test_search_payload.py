"""Searches fetch what they read, in the one Qdrant call (the house plan: one round trip per search): every leg of
the retrieval carries exactly the payload fields the fusion, the prior, the reranker's passage and a hit read
(``SEARCH_PAYLOAD``), none of the index's bookkeeping. Through the search service on the embedded store (Qdrant
Edge), with loopback provider fakes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import SEARCH_PAYLOAD, payload_links
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch_tools.bench import ByteCountingRetriever, point_json
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

    def query_legs(self, searches: list[dict[str, Any]], bare: Any, timeout_s: float) -> Any:
        answer = super().query_legs(searches, bare, timeout_s)
        self.calls.append(("batch", searches, [[point_json(c) for c in chunks] for chunks in answer]))
        return answer


def _service(store_path: Path, deepinfra: FakeProvider | None, **extra: object) -> tuple[SearchService, Recording]:
    settings = provider_settings(deepinfra, None, qdrant_path=str(store_path), **({"embedding_dimensions": DIMS}
                                                                                    | extra))  # fmt: skip
    service = SearchService(settings, Secrets(settings))
    recording = Recording(service.retriever)
    service._retriever = recording  # observe the store's answers; the search runs unchanged
    return service, recording


@pytest.mark.parametrize("rerank", [False, True])
@pytest.mark.parametrize("fusion", ["adaptive", "rrf"])
def test_one_call_carries_what_the_search_reads_and_nothing_else(
    store_path: Path, deepinfra: FakeProvider, fusion: str, rerank: bool
) -> None:
    service, recording = _service(store_path, deepinfra, search_fusion=fusion)
    try:
        answer = service.search(SearchRequest(query="restore a qdrant snapshot", top_k=3, rerank=rerank))
    finally:
        service.close()
    assert len(answer.results) == 3
    ((kind, sent, retrieved),) = recording.calls  # one Qdrant call, whatever the fusion and the reranking
    legs = retrieved if kind == "batch" else [retrieved]
    searches = sent if kind == "batch" else [sent]
    allowed = set(SEARCH_PAYLOAD["include"])
    assert sum(len(points) for points in legs) > 10
    assert all(set(p["payload"] or {}) <= allowed for points in legs for p in points)  # no etags, hashes, groups
    # the searches that ask for ids and scores alone (BM25 tails) get no payload at all
    bare = [points for s, points in zip(searches, legs, strict=True) if s.get("with_payload") is False]
    assert (fusion == "adaptive") == bool(bare) and not any(p["payload"] for points in bare for p in points)
    if rerank:
        assert answer.meta.reranker == "deepinfra"
        documents = deepinfra.calls("rerank")[0].body["documents"]
        assert len(documents) == answer.meta.candidates and all(d.strip() for d in documents)
    store = open_store(service.settings, Secrets(service.settings))
    try:
        stored = store.points()
    finally:
        store.close()
    for hit in answer.results:
        chunks = [p for p in stored.values() if p["path"] == hit.path]
        best = next(p for p in chunks if p["heading"] == hit.heading)
        assert (hit.title, hit.tags, hit.links, hit.type, hit.status) == (
            best["title"], best["tags"], payload_links(best.get("links")), best["type"], best["status"])  # fmt: skip
        assert hit.snippet.rstrip("…")[:40] in " ".join(best["text"].split())


def test_a_search_receives_less_than_whole_payloads_weigh(store_path: Path, deepinfra: FakeProvider) -> None:
    service, recording = _service(store_path, deepinfra)
    try:
        service.search(SearchRequest(query="snapshot restore runbook", top_k=10, rerank=False))
        received = recording.bytes
        kind, searches, _ = recording.calls[0]
        assert kind == "batch"
        whole = recording.inner.query_batch([s | {"with_payload": {"exclude": ["meta"]}} for s in searches], 10.0)
    finally:
        service.close()
    weighs = len(json.dumps({"result": whole}, ensure_ascii=False, default=str).encode())
    assert received < weighs, (received, weighs)


def test_a_note_s_aliases_are_in_every_chunk_s_payload_and_a_search_s(tmp_path: Path, deepinfra: FakeProvider) -> None:
    """rev34e: the fusion reads a query naming a note by an alias as it reads one naming it by its title
    (``fusion._names``), so the indexer writes the note's aliases (texts as written, ``12`` too, stripped, once each,
    the first eight of at most 100 characters: a longer one left out) into every chunk's payload, as the title, none
    when the note has none, and a search's one call carries them (``SEARCH_PAYLOAD``)."""
    from kbsearch.indexer import run_sync

    kb = tmp_path / "kb"
    kb.mkdir()
    long = "x" * 101
    (kb / "metadata.md").write_text(
        f"---\naliases: [' Свойства ', Frontmatter, '{long}', 12, Свойства]\n---\n# Метаданные\n\nсвойства заметки\n\n"
        "## Типы\n\nтекст, число, дата, свойства\n",
        encoding="utf-8",
    )
    (kb / "other.md").write_text("# Другое\n\nсвойства и ещё свойства\n", encoding="utf-8")
    (kb / "one.md").write_text("---\naliases: Одно имя\n---\n# One\n\nсвойства\n", encoding="utf-8")
    settings = provider_settings(deepinfra, None, qdrant_path=str(tmp_path / "q"), embedding_dimensions=DIMS)
    assert run_sync(settings, Secrets(settings), source_uri=str(kb)).added == 3
    store = open_store(settings, Secrets(settings))
    try:
        stored = list(store.points().values())
    finally:
        store.close()
    by_path: dict[str, list[Any]] = {}
    for p in stored:
        by_path.setdefault(p["path"], []).append(p.get("aliases"))
    assert len(by_path["metadata.md"]) == 2 and by_path["metadata.md"] == [["Свойства", "Frontmatter", "12"]] * 2
    assert by_path["one.md"] == [["Одно имя"]] and by_path["other.md"] == [None]
    service, recording = _service(tmp_path / "q", deepinfra)
    try:
        service.search(SearchRequest(query="Свойства", top_k=3, rerank=False))
    finally:
        service.close()
    carried = [p["payload"] for points in recording.calls[0][2] for p in points if p["payload"]]
    assert any(
        p.get("path") == "metadata.md" and p.get("aliases") == ["Свойства", "Frontmatter", "12"] for p in carried
    )
