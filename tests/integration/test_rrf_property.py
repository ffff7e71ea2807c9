"""Hypothesis property of the fusion: for random collections and queries, every candidate's score is exactly
Σ 1/(k + (rank + 1)/w - 1) over the prefetches (zero-based ranks, w the prefetch's weight: Σ 1/(k + rank) at equal
weights; the best chunk of its note), one candidate per note, in descending order."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient, models

from kbsearch.lexical import SparseVector
from kbsearch.retrieval import retrieve
from kbsearch.store import DENSE, SPARSE, ChunkPoint, EmbeddedRetriever, Store

DIMS = 4
vector = st.lists(st.floats(min_value=-1, max_value=1, allow_nan=False, width=32), min_size=DIMS, max_size=DIMS).filter(
    lambda v: sum(x * x for x in v) > 1e-3
)
sparse = st.dictionaries(st.integers(0, 15), st.floats(min_value=0.125, max_value=3, width=32), min_size=1, max_size=5)
point = st.tuples(st.integers(0, 6), vector, sparse)  # (note number, dense, sparse)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    points=st.lists(point, min_size=1, max_size=25),
    dense_queries=st.lists(vector, min_size=0, max_size=3),
    sparse_query=sparse,
    k=st.sampled_from([1, 2, 60]),
    limit=st.integers(1, 12),
    bm25_weight=st.sampled_from([1.0, 0.1, 0.5, 2.0]),
)
def test_fused_scores_are_reciprocal_rank_sums(points, dense_queries, sparse_query, k, limit, bm25_weight) -> None:
    client = QdrantClient(":memory:")
    store = Store(client, "kb", DIMS, embedded=True)
    store.ensure_collection()
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
    # the service's own retrieval call, on the embedded store
    candidates = retrieve(
        EmbeddedRetriever(store),
        dense_queries,
        query_sparse,
        None,
        limit=50,
        prefetch_limit=limit,
        rrf_k=k,
        bm25_weight=bm25_weight,
    )

    expected: dict[str, float] = {}
    rankings = [client.query_points("kb", query=q, using=DENSE, limit=limit).points for q in dense_queries]
    rankings.append(client.query_points("kb", query=models.SparseVector(indices=query_sparse.indices,
                                                                       values=query_sparse.values),
                                        using=SPARSE, limit=limit).points)  # fmt: skip
    doc_of: dict[str, str] = {}
    # Qdrant's weighted RRF: 1 / (k + (rank + 1) / w - 1); the BM25 prefetch weighs bm25_weight when there is a
    # dense one to weigh it against, every other prefetch 1
    weights = [1.0] * len(dense_queries) + [bm25_weight if dense_queries else 1.0]
    for ranking, w in zip(rankings, weights, strict=True):
        for rank, hit in enumerate(ranking):
            expected[str(hit.id)] = expected.get(str(hit.id), 0.0) + 1.0 / (k + (rank + 1) / w - 1)
            doc_of[str(hit.id)] = str((hit.payload or {})["doc_id"])
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
    client.close()
