"""Hypothesis property of the fusion on the embedded store (Qdrant Edge): for random collections and queries, every
candidate's score is exactly Σ 1/(k + rank) over the prefetches (zero-based ranks, the best chunk of its note), one
candidate per note, in descending order. With RRF weights (``{"rrf": {"k", "weights"}}``) the engine scores
Σ 1/(k − 1 + (rank + 1)/w), which is the same sum when every w is 1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kbsearch.lexical import SparseVector
from kbsearch.qdrant.embedded import EdgeStore, EmbeddedRetriever
from kbsearch.qdrant.query import DENSE, SPARSE, fusion_request, group, retrieve
from kbsearch.qdrant.store import ChunkPoint

qdrant_edge = pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform")

DIMS = 4
vector = st.lists(st.floats(min_value=-1, max_value=1, allow_nan=False, width=32), min_size=DIMS, max_size=DIMS).filter(
    lambda v: sum(x * x for x in v) > 1e-3
)
sparse = st.dictionaries(st.integers(0, 15), st.floats(min_value=0.125, max_value=3, width=32), min_size=1, max_size=5)
point = st.tuples(st.integers(0, 6), vector, sparse)  # (note number, dense, sparse)


@pytest.fixture(scope="module")
def edge_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeStore]:
    store = EdgeStore(Path(tmp_path_factory.mktemp("rrf")), "kb", DIMS)
    store.ensure_collection()
    yield store
    store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    points=st.lists(point, min_size=1, max_size=25),
    dense_queries=st.lists(vector, min_size=0, max_size=3),
    sparse_query=sparse,
    k=st.sampled_from([1, 2, 60]),
    limit=st.integers(1, 12),
    weighted=st.booleans(),
    data=st.data(),
)
def test_fused_scores_are_reciprocal_rank_sums(
    edge_store, points, dense_queries, sparse_query, k, limit, weighted, data
) -> None:
    store = edge_store
    # one store for all examples (creating one costs ~1 s): start each one empty (its ids as Edge takes them)
    ids: list[Any] = [int(i) if i.isdigit() else i for i in store.points()]
    if ids:
        store.shard.update(qdrant_edge.UpdateOperation.delete_points(ids))
    assert store.count() == 0
    chunks = []
    per_note: dict[int, int] = {}
    for note, dense, terms in points:
        index = per_note.get(note, 0)
        per_note[note] = index + 1
        items = sorted(terms.items())
        chunks.append(ChunkPoint(f"n{note}.md", index, {"doc_id": f"n{note}", "path": f"n{note}.md", "chunk_index": index},
                                 SparseVector([i for i, _ in items], [w for _, w in items]), dense))  # fmt: skip
    store.upsert(chunks)
    query_sparse = SparseVector(sorted(sparse_query), [sparse_query[i] for i in sorted(sparse_query)])
    weights = [1.0] * (len(dense_queries) + 1)
    if weighted:
        # the service's own request, with weights as issue 13's weighted RRF sends them
        request = fusion_request(dense_queries, query_sparse, None, prefetch_limit=limit, rrf_k=k)
        assert request is not None
        weights = data.draw(st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0]), min_size=len(weights),
                                     max_size=len(weights)))  # fmt: skip
        request["query"]["rrf"]["weights"] = weights
        candidates = group(store.query(request, 5.0), 50)
    else:
        # the service's own retrieval call, on the embedded store
        candidates = retrieve(
            EmbeddedRetriever(store), dense_queries, query_sparse, None, limit=50, prefetch_limit=limit, rrf_k=k
        )

    expected: dict[str, float] = {}
    rankings = [store.query({"query": q, "using": DENSE, "limit": limit, "with_payload": True}, 5.0)
                for q in dense_queries]  # fmt: skip
    rankings.append(store.query({"query": {"indices": query_sparse.indices, "values": query_sparse.values},
                                 "using": SPARSE, "limit": limit, "with_payload": True}, 5.0))  # fmt: skip
    doc_of: dict[str, str] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        for rank, hit in enumerate(ranking):
            expected[hit["id"]] = expected.get(hit["id"], 0.0) + 1.0 / (k - 1 + (rank + 1) / w)
            doc_of[hit["id"]] = str(hit["payload"]["doc_id"])
    best: dict[str, float] = {}
    for pid, score in expected.items():
        best[doc_of[pid]] = max(best.get(doc_of[pid], 0.0), score)

    docs = [c.payload["doc_id"] for c in candidates]
    assert len(docs) == len(set(docs))  # one hit per note
    assert sorted(docs) == sorted(best)  # every note any prefetch found, and no other
    for c in candidates:
        assert abs(c.fusion - best[c.payload["doc_id"]]) < 1e-6
    fusion = [c.fusion for c in candidates]
    assert fusion == sorted(fusion, reverse=True)
