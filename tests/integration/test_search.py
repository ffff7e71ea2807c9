"""The search service over sample-kb/ in the embedded store, with loopback DeepInfra/Fireworks fakes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.errors import IndexUnavailable
from kbsearch.indexer import run_sync
from kbsearch.lexical import query_vector
from kbsearch.providers.embeddings import query_text
from kbsearch.providers.resilience import CircuitBreaker
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import DENSE, SPARSE
from kbsearch.schemas import SearchFilters, SearchRequest, SearchResponse
from kbsearch.search import SearchService
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import ROOT, copy_store, provider_settings

SAMPLE = ROOT / "sample-kb"
DIMS = 256  # the fake embedder hashes words into dimensions: more dimensions, fewer collisions


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample-kb indexed once (dense from the fake embedder + BM25); each test gets its own copy."""
    fake = FakeProvider("deepinfra", api_key="di-test-key").start()
    try:
        store = tmp_path_factory.mktemp("index") / "q"
        settings = Settings.model_validate(
            {"qdrant_path": str(store), "embedding_url": fake.embeddings_url, "embedding_api_key": fake.api_key,
             "embedding_dimensions": DIMS}
        )  # fmt: skip
        report = run_sync(settings, Secrets(settings), source_uri=str(SAMPLE))
        assert report.added >= 35 and report.dense
    finally:
        fake.stop()
    return store


@pytest.fixture
def store_path(indexed: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "q"
    copy_store(indexed, dest)
    return dest


@pytest.fixture
def make_service(store_path: Path) -> Iterator:
    services: list[SearchService] = []

    def make(deepinfra: FakeProvider | None, fireworks: FakeProvider | None = None, **extra: object) -> SearchService:
        for earlier in services:  # the embedded store opens in one client at a time
            earlier.close()
        settings = provider_settings(
            deepinfra, fireworks, qdrant_path=str(store_path), **({"embedding_dimensions": DIMS} | extra)
        )
        service = SearchService(settings, Secrets(settings))
        services.append(service)
        return service

    yield make
    for s in services:
        s.close()


def ask(service: SearchService, query: str, **kwargs: object) -> SearchResponse:
    return service.search(SearchRequest(query=query, **kwargs))  # type: ignore[arg-type]


def paths(answer: SearchResponse) -> list[str]:
    return [h.path for h in answer.results]


def test_full_pipeline_request_shapes(make_service, deepinfra: FakeProvider, fireworks: FakeProvider) -> None:
    service = make_service(deepinfra, fireworks)
    answer = ask(service, "restore a qdrant snapshot", top_k=5)
    assert answer.results and answer.results[0].path == "en/runbooks/Runbook - restore a Qdrant snapshot.md"
    meta = answer.meta
    assert meta.degraded == [] and meta.embedder == "deepinfra" and meta.reranker == "deepinfra"
    assert len(meta.variants) == 4 and meta.variants[0] == "restore a qdrant snapshot"
    assert set(meta.timings_ms) == {"expand", "embed", "retrieve", "rerank", "total"}
    assert set(meta.usage) == {"expansion", "embedding", "rerank"}
    # one embedding request for all variants, each with Qwen's query instruction
    (embed,) = deepinfra.calls("embeddings")
    assert embed.body["input"] == [query_text(v) for v in meta.variants]
    assert all(t.startswith("Instruct: Given a web search query") and "\nQuery:" in t for t in embed.body["input"])
    # one native rerank request: the query repeated per document, "documents" (not "passages")
    (rerank,) = deepinfra.calls("rerank")
    assert set(rerank.body) == {"queries", "documents"}
    assert rerank.body["queries"] == ["restore a qdrant snapshot"] * len(rerank.body["documents"])
    assert len(rerank.body["documents"]) == meta.candidates
    assert not fireworks.requests  # nothing went to the fallback
    # scores: the final order blends the rerank and fused orders (RERANK_WEIGHT); both are reported
    assert [h.score for h in answer.results] == sorted((h.score for h in answer.results), reverse=True)
    assert all(h.scores.fusion > 0 and h.scores.rerank is not None for h in answer.results)


def test_one_hit_per_note_and_top_k(make_service, deepinfra: FakeProvider) -> None:
    answer = ask(make_service(deepinfra), "runbook qdrant indexer keys", top_k=20)
    assert len(paths(answer)) == len(set(paths(answer))) and len(answer.results) <= 20
    assert [h.rank for h in answer.results] == list(range(1, len(answer.results) + 1))
    assert len(ask(make_service(None), "runbook", top_k=2).results) == 2


def test_no_keys_is_bm25_only_and_not_degraded(make_service) -> None:
    answer = ask(make_service(None), "ротация ключей")
    assert answer.meta.embedder == "none" and answer.meta.reranker == "none" and answer.meta.degraded == []
    assert answer.results[0].path == "ru/ранбуки/Ротация ключей.md"
    assert answer.results[0].scores.rerank is None


def test_yo_and_ye_meet(make_service) -> None:
    assert "ru/глоссарий/Термины.md" in paths(ask(make_service(None), "елочка"))


@pytest.mark.parametrize(
    "fault",
    [{"status": 500}, {"status": 503}, {"status": 429, "retry_after": "1"}, {"garbage": True}, {"short": True},
     {"nan": True}, {"hang_s": 1.5}, {"status": 401}],
)  # fmt: skip
def test_each_reranker_fault_goes_to_the_fallback(make_service, deepinfra, fireworks, fault: dict) -> None:
    deepinfra.fail("rerank", **fault)
    service = make_service(deepinfra, fireworks, rerank_timeout_s=1.0, rerank_hedge_ms=0)
    answer = ask(service, "reranker outage")
    assert answer.meta.reranker == "fireworks" and answer.meta.degraded == ["rerank_fallback"]
    (fw,) = fireworks.calls("rerank")
    assert fw.body["model"] == "accounts/fireworks/models/qwen3-reranker-8b"
    assert fw.body["query"] == "reranker outage" and fw.body["top_n"] == len(fw.body["documents"])
    assert "instruction" not in fw.body and "queries" not in fw.body
    assert answer.results[0].scores.rerank is not None


def test_reranker_connection_refused_goes_to_the_fallback(make_service, fireworks: FakeProvider) -> None:
    dead = FakeProvider("deepinfra", api_key="di-test-key").start()
    dead.stop()
    service = make_service(dead, fireworks, rerank_hedge_ms=0)
    answer = ask(service, "reranker outage", expand=False)
    assert "rerank_fallback" in answer.meta.degraded and answer.meta.reranker == "fireworks"


def test_both_rerankers_down_keeps_the_fusion_order(make_service, deepinfra, fireworks) -> None:
    deepinfra.fail("rerank", status=500)
    fireworks.fail("rerank", status=503)
    answer = ask(make_service(deepinfra, fireworks, rerank_hedge_ms=0), "reranker outage")
    assert answer.meta.reranker == "none" and answer.meta.degraded == ["rerank"]
    fusion = [h.scores.fusion for h in answer.results]
    assert fusion == sorted(fusion, reverse=True) and all(h.scores.rerank is None for h in answer.results)


def test_hedge_wins_when_the_primary_is_slow(make_service, deepinfra, fireworks) -> None:
    deepinfra.fail("rerank", hang_s=60.0)
    service = make_service(deepinfra, fireworks, rerank_hedge_ms=150, rerank_timeout_s=30, search_budget_s=28)
    t0 = time.monotonic()
    answer = ask(service, "reranker outage", expand=False)
    elapsed = time.monotonic() - t0
    assert answer.meta.reranker == "fireworks" and "rerank_fallback" in answer.meta.degraded
    # ~0.3 s here; the bound is far above that (a loaded machine) and far below the primary's 30 s timeout
    assert elapsed < 10.0, "waited for the primary instead of hedging"
    hedge_sent = fireworks.calls("rerank")[0].at - deepinfra.calls("rerank")[0].at
    assert 0.1 <= hedge_sent < 5.0


def test_fast_primary_is_not_hedged(make_service, deepinfra, fireworks) -> None:
    answer = ask(make_service(deepinfra, fireworks, rerank_hedge_ms=500), "reranker outage", expand=False)
    assert answer.meta.reranker == "deepinfra" and not fireworks.calls("rerank")


def test_breaker_opens_and_closes(make_service, deepinfra, fireworks) -> None:
    deepinfra.fail("rerank", status=500)
    service = make_service(deepinfra, fireworks, rerank_hedge_ms=0, breaker_threshold=2, breaker_cooldown_s=0.5)
    assert service.reranking is not None
    for _ in range(4):
        assert ask(service, "qdrant", expand=False).meta.reranker == "fireworks"
    assert len(deepinfra.calls("rerank")) == 2  # open after 2 failures: primary skipped
    deepinfra.heal()
    time.sleep(0.6)  # cooldown over: a trial call goes to the primary and closes the breaker
    assert ask(service, "qdrant", expand=False).meta.reranker == "deepinfra"
    assert ask(service, "qdrant", expand=False).meta.reranker == "deepinfra"
    assert isinstance(service.reranking.breaker, CircuitBreaker) and not service.reranking.breaker.is_open


def test_expansion_timeout_goes_on_without_it(make_service, deepinfra) -> None:
    deepinfra.fail("chat", hang_s=60.0)
    service = make_service(deepinfra, None, expansion_budget_ms=200)
    t0 = time.monotonic()
    answer = ask(service, "snapshot restore")
    assert time.monotonic() - t0 < 5.0  # ~0.3 s: cut at the 200 ms budget, not at the 60 s hang
    assert answer.meta.degraded == ["expand"] and answer.meta.variants == ["snapshot restore"]
    assert answer.results


@pytest.mark.parametrize("fault", [{"status": 500}, {"short": True}, {"garbage": True}])
def test_expansion_failure_never_fails_the_query(make_service, deepinfra, fault: dict) -> None:
    deepinfra.fail("chat", **fault)
    answer = ask(make_service(deepinfra), "snapshot restore")
    assert answer.meta.degraded == ["expand"] and answer.results


def test_expansion_is_cached_in_the_warm_container(make_service, deepinfra) -> None:
    service = make_service(deepinfra)
    first = ask(service, "snapshot restore")
    second = ask(service, "snapshot restore")
    assert len(deepinfra.calls("chat")) == 1 and first.meta.variants == second.meta.variants
    assert "expansion" not in second.meta.usage


def test_expansion_translation_finds_the_other_language(make_service, deepinfra) -> None:
    service = make_service(deepinfra)
    english = "en/runbooks/Runbook - rotate provider keys.md"

    def fusion(answer: SearchResponse) -> float:
        return next((h.scores.fusion for h in answer.results if h.path == english), 0.0)

    # the fake reranker is monolingual: look at retrieval, every candidate (evaluation depth)
    plain = service.evaluation_view("hybrid", 100).search(
        SearchRequest(query="ротация ключей", rerank=False, expand=False)
    )
    expanded = service.evaluation_view("hybrid", 100).search(SearchRequest(query="ротация ключей", rerank=False))
    assert "rotate keys" in expanded.meta.variants
    # The translated variant ranks the English note first (1/60); without it the note shares no term and has zero
    # dense similarity, so it can only come in among the zero-similarity ties that fill a prefetch over a
    # collection this small (at most 1/60, in an order that is the engine's).
    assert fusion(expanded) >= 1 / 60 - 1e-9 and fusion(expanded) > fusion(plain)
    assert paths(expanded)[0] == "ru/ранбуки/Ротация ключей.md"


def test_embedding_down_falls_back_to_lexical(make_service, deepinfra, fireworks) -> None:
    deepinfra.fail("embeddings", status=500)
    fireworks.fail("embeddings", status=500)
    answer = ask(make_service(deepinfra, fireworks), "qdrant snapshot")
    assert "embed" in answer.meta.degraded and answer.meta.embedder == "none" and answer.results


def test_embedding_fallback_is_flagged(make_service, deepinfra, fireworks) -> None:
    deepinfra.fail("embeddings", status=503)
    answer = ask(make_service(deepinfra, fireworks), "qdrant snapshot", expand=False)
    assert answer.meta.embedder == "fireworks" and answer.meta.degraded == ["embed_fallback"]


def test_qdrant_unreachable_is_index_unavailable(tmp_path: Path) -> None:
    dead = FakeProvider("deepinfra").start()
    url = dead.base
    dead.stop()
    settings = Settings(qdrant_url=url, qdrant_timeout_s=1)
    service = SearchService(settings, Secrets(settings))
    with pytest.raises(IndexUnavailable, match="Qdrant"):
        ask(service, "anything")


def test_missing_collection_is_index_unavailable(tmp_path: Path) -> None:
    settings = Settings(qdrant_path=str(tmp_path / "empty"))
    service = SearchService(settings, Secrets(settings))
    try:
        with pytest.raises(IndexUnavailable, match="run the indexer"):
            ask(service, "anything")
    finally:
        service.close()


def test_filters(make_service) -> None:
    service = make_service(None)

    def find(**filters: object) -> list[str]:
        return paths(ask(service, "runbook qdrant keys index", top_k=20, filters=SearchFilters(**filters)))  # type: ignore[arg-type]

    assert find(tags=["security"]) and all("rotate" in p or "Ротация" in p for p in find(tags=["security"]))
    assert set(find(type=["decision"])) <= {p for p in find() if "ADR" in p or "решения" in p} | set(
        find(type=["decision"])
    )
    decisions = find(type=["decision"])
    assert decisions and all("ADR" in p or "решения/" in p for p in decisions)
    drafts = find(status=["draft"])
    assert drafts and all(p in {"en/MCP for assistants.md", "en/Only frontmatter.md"} for p in drafts)
    ru = find(path_prefix="ru/ранбуки/")
    assert ru and all(p.startswith("ru/ранбуки/") for p in ru)
    recent = find(updated_after="2026-10-01")
    assert recent and "en/runbooks/Runbook - rotate provider keys.md" not in recent  # updated 2026-10-01, not after
    assert "en/Slack bot.md" in find(updated_after="2026-10-01", tags=["slack"])
    assert find(tags=["no-such-tag"]) == []


def test_rrf_scores_are_the_sum_over_prefetches(make_service, deepinfra, store_path: Path) -> None:
    """The seed's RrfQuery(k=60), equal weights: score = Σ 1 / (60 + rank), rank zero-based in each prefetch."""
    service = make_service(deepinfra, search_fusion="rrf", rrf_k=60, search_bm25_weight=1.0, search_prefetch_limit=50)
    query = "qdrant snapshot restore"
    answer = ask(service, query, top_k=10, rerank=False, expand=False)
    service.close()
    settings = Settings(qdrant_path=str(store_path))
    store = open_store(settings, Secrets(settings))
    try:
        (text,) = deepinfra.calls("embeddings")[0].body["input"]
        from kbsearch_tools.fakes import fake_embedding

        vector = fake_embedding(text, DIMS)
        norm = sum(x * x for x in vector) ** 0.5
        vector = [x / norm for x in vector]
        sparse = query_vector(query)
        # each prefetch alone, through the store's own Query API call
        dense_hits = store.query({"query": vector, "using": DENSE, "limit": 50, "with_payload": True}, 5)
        sparse_hits = store.query(
            {"query": {"indices": sparse.indices, "values": sparse.values}, "using": SPARSE, "limit": 50,
             "with_payload": True}, 5
        )  # fmt: skip
        expected: dict[str, float] = {}
        for hits in (dense_hits, sparse_hits):
            for rank, hit in enumerate(hits):
                expected[hit["id"]] = expected.get(hit["id"], 0.0) + 1 / (60 + rank)
        best: dict[str, float] = {}
        payloads = {p["id"]: p["payload"] or {} for p in dense_hits + sparse_hits}
        for pid, score in expected.items():
            doc = payloads[pid]["doc_id"]
            best[doc] = max(best.get(doc, 0.0), score)
    finally:
        store.close()
    for result in answer.results:
        assert result.scores.fusion == pytest.approx(best[result.doc_id], abs=1e-6)
    # the best notes, best first (notes whose rank sums tie may come in either order)
    top = sorted(best.values(), reverse=True)[: len(answer.results)]
    assert [h.scores.fusion for h in answer.results] == pytest.approx(top, abs=1e-6)


def test_min_score_and_prior(make_service, deepinfra) -> None:
    service = make_service(deepinfra)
    everything = ask(service, "qdrant", top_k=20, expand=False)
    cut = everything.results[2].score
    assert all(h.score >= cut for h in ask(service, "qdrant", top_k=20, expand=False, min_score=cut).results)
    with_prior = make_service(deepinfra, search_prior=True)
    answer = ask(with_prior, "qdrant", top_k=20, expand=False)
    assert [h.score for h in answer.results] == sorted((h.score for h in answer.results), reverse=True)
