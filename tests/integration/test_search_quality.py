"""The labelled sample-kb queries: hybrid retrieval is at least as good as either half alone.

The dense half here is the loopback fake (a bag-of-words hash, not a semantic model), so this guards the fusion
machinery, not model quality: fusing two rankings must not lose what either finds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch_tools.fakes import FakeProvider
from kbsearch_tools.metrics import load_queries, summarize
from tests.conftest import ROOT

QUERIES = ROOT / "eval" / "sample-kb-queries.yaml"


def test_query_set_is_well_formed() -> None:
    queries = load_queries(QUERIES)
    assert len(queries) >= 40
    assert any(any("а" <= ch <= "я" for ch in q.query) for q in queries)  # Russian ones too
    for q in queries:
        assert q.relevant, q.query
        for path in q.relevant:
            assert (ROOT / "sample-kb" / path).is_file(), path


def test_hybrid_is_at_least_as_good_as_lexical_and_dense(tmp_path: Path) -> None:
    fake = FakeProvider("deepinfra", api_key="k").start()
    try:
        settings = Settings.model_validate(
            {"qdrant_path": str(tmp_path / "q"), "embedding_url": fake.embeddings_url, "embedding_api_key": "k",
             "embedding_dimensions": 256,
             # the fake embedder hashes words (no semantics): the seed's equal-weight RRF, k = 60; the real-model
             # gates for the defaults are in test_oracle.py
             "rrf_k": 60, "search_bm25_weight": 1.0}
        )  # fmt: skip
        run_sync(settings, Secrets(settings), source_uri=str(ROOT / "sample-kb"))
        service = SearchService(settings, Secrets(settings))
        scores = {}
        for mode in ("lexical", "dense", "hybrid"):
            runs = []
            for q in load_queries(QUERIES):
                answer = service.evaluation_view(mode).search(
                    SearchRequest(query=q.query, top_k=20, rerank=False, expand=False)
                )
                runs.append(([h.path for h in answer.results], set(q.relevant)))
            scores[mode] = summarize(runs)
        service.close()
    finally:
        fake.stop()
    lexical, dense, hybrid = scores["lexical"], scores["dense"], scores["hybrid"]
    assert hybrid["P@5"] >= max(lexical["P@5"], dense["P@5"])
    assert hybrid["Recall@50"] >= max(lexical["Recall@50"], dense["Recall@50"])
    assert hybrid["nDCG@10"] >= dense["nDCG@10"] and hybrid["MRR@10"] >= dense["MRR@10"]
    assert hybrid["nDCG@10"] == pytest.approx(lexical["nDCG@10"], abs=0.03)
    assert hybrid["MRR@10"] >= 0.9
