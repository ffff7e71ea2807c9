"""The REST path to Qdrant Cloud (no qdrant_client on the search path): the JSON it sends is what qdrant_client
sends for the same query, and its answers are read the way the API returns them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from kbsearch.errors import StoreError
from kbsearch.fakes import FakeEndpoint
from kbsearch.lexical import SparseVector
from kbsearch.providers.http import shared_client
from kbsearch.retrieval import QdrantRest, filter_json, fusion_request


def drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) for v in value]
    return value


@pytest.fixture
def qdrant() -> Any:
    endpoint = FakeEndpoint().start()
    endpoint.content_type = "application/json"
    endpoint.body = json.dumps({"result": {"points": [{"id": "a", "version": 1, "score": 0.5,
                                                       "payload": {"doc_id": "n1"}}]},
                                "status": "ok", "time": 0.001}).encode()  # fmt: skip
    yield endpoint
    endpoint.stop()


def test_request_body_matches_qdrant_client(qdrant: FakeEndpoint) -> None:
    client = QdrantClient(url=qdrant.url, check_compatibility=False)
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    conditions: list[models.Condition] = [
        models.FieldCondition(key="tags", match=models.MatchAny(any=["runbook", "qdrant"])),
        models.FieldCondition(key="type", match=models.MatchAny(any=["runbook"])),
        models.FieldCondition(key="status", match=models.MatchAny(any=["active"])),
        models.FieldCondition(key="folders", match=models.MatchValue(value="ru/ранбуки")),
        models.FieldCondition(key="updated", range=models.DatetimeRange(gt=when)),
    ]
    qfilter = models.Filter(must=conditions)
    params = models.SearchParams(
        hnsw_ef=256, quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0)
    )
    client.query_points(
        "kb",
        prefetch=[
            models.Prefetch(query=[0.1, 0.2], using="dense", filter=qfilter, limit=50, params=params),
            models.Prefetch(query=[0.3, 0.4], using="dense", filter=qfilter, limit=50, params=params),
            models.Prefetch(query=models.SparseVector(indices=[1, 5], values=[1.0, 1.0]), using="bm25",
                            filter=qfilter, limit=50),
        ],
        query=models.RrfQuery(rrf=models.Rrf(k=60)),
        limit=150,
        with_payload=models.PayloadSelectorExclude(exclude=["meta"]),
    )  # fmt: skip
    sent = drop_none(qdrant.requests[-1].body)
    assert qdrant.requests[-1].path == "/collections/kb/points/query"
    ours = fusion_request(
        [[0.1, 0.2], [0.3, 0.4]],
        SparseVector([1, 5], [1.0, 1.0]),
        filter_json(tags=["runbook", "qdrant"], types=["runbook"], statuses=["active"], path_prefix="ru/ранбуки/",
                    updated_after=dt.date(2026, 1, 1)),
        prefetch_limit=50, hnsw_ef=256, rrf_k=60,
    )  # fmt: skip
    assert ours is not None
    # datetimes: compare instants, whatever the spelling of UTC
    for body in (sent, ours):
        for prefetch in body["prefetch"]:
            for cond in prefetch["filter"]["must"]:
                if "range" in cond and isinstance(cond["range"]["gt"], str):  # the filter may be shared
                    cond["range"]["gt"] = dt.datetime.fromisoformat(cond["range"]["gt"].replace("Z", "+00:00"))
    assert sent == drop_none(ours)


def test_rest_retriever_reads_answers_and_sends_the_key(qdrant: FakeEndpoint) -> None:
    rest = QdrantRest(qdrant.url, "kb", lambda: "qdrant-test-key", shared_client(), 2.0)
    points = rest.query({"prefetch": [], "query": {"rrf": {"k": 60}}, "limit": 1}, 2.0)
    assert points[0]["payload"] == {"doc_id": "n1"} and points[0]["score"] == 0.5
    assert qdrant.requests[-1].headers["api-key"] == "qdrant-test-key"
    qdrant.body = b'{"result": {"exists": true}, "status": "ok", "time": 0}'
    assert rest.exists() is True
    assert qdrant.requests[-1].path == "/collections/kb/exists"
    # the embedding signature the collection records (GET /collections/{c}: result.config.metadata)
    meta = {
        "embedding_model": "Qwen/Qwen3-Embedding-8B",
        "embedding_dimensions": 1024,
        "embedding_input_format": "qwen3",
    }
    qdrant.body = json.dumps({"result": {"status": "green", "config": {"params": {}, "metadata": meta}}}).encode()
    assert rest.metadata() == meta
    assert qdrant.requests[-1].path == "/collections/kb"
    qdrant.body = b'{"result": {"status": "green", "config": {"params": {}}}}'
    assert rest.metadata() == {}  # a collection built before signatures were recorded
    qdrant.body = b'{"result": {"points": []}}'
    with pytest.raises(StoreError):
        rest.metadata()


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, b"{}"), (401, b'{"status": {"error": "no"}}'), (200, b"not json"), (200, b'{"result": {"points": 5}}'),
     (200, b'{"result": {"points": [{"id": 1}]}}')],
)  # fmt: skip
def test_rest_retriever_turns_every_bad_answer_into_store_error(qdrant: FakeEndpoint, status: int, body: bytes) -> None:
    qdrant.status, qdrant.body = status, body
    rest = QdrantRest(qdrant.url, "kb", lambda: None, shared_client(), 2.0)
    with pytest.raises(StoreError):
        rest.query({"prefetch": [], "query": {"rrf": {"k": 60}}, "limit": 1}, 2.0)


def test_weighted_rrf_body_matches_qdrant_client_and_the_embedded_store_weighs_it(qdrant: FakeEndpoint) -> None:
    client = QdrantClient(url=qdrant.url, check_compatibility=False)
    params = models.SearchParams(
        hnsw_ef=256, quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0)
    )
    client.query_points(
        "kb",
        prefetch=[
            models.Prefetch(query=[0.1, 0.2], using="dense", limit=50, params=params),
            models.Prefetch(query=models.SparseVector(indices=[1], values=[1.0]), using="bm25", limit=50),
        ],
        query=models.RrfQuery(rrf=models.Rrf(k=60, weights=[1.0, 0.25])),
        limit=100,
        with_payload=models.PayloadSelectorExclude(exclude=["meta"]),
    )
    ours = fusion_request([[0.1, 0.2]], SparseVector([1], [1.0]), None, rrf_k=60, bm25_weight=0.25)
    assert ours is not None and ours["query"] == {"rrf": {"k": 60, "weights": [1.0, 0.25]}}
    assert drop_none(qdrant.requests[-1].body) == drop_none(ours)
    # weight 1.0 is the seed's plain RRF body; BM25 alone has nothing to weigh against
    plain = fusion_request([[0.1, 0.2]], SparseVector([1], [1.0]), None, bm25_weight=1.0)
    assert plain is not None and plain["query"] == {"rrf": {"k": 60}}
    lexical = fusion_request([], SparseVector([1], [1.0]), None, bm25_weight=0.25)
    assert lexical is not None and lexical["query"] == {"rrf": {"k": 60}}

    # The embedded store takes the same body and weighs ranks as Qdrant does: 1 / (k + (rank + 1) / w - 1).
    from kbsearch.retrieval import retrieve
    from kbsearch.store import ChunkPoint, EmbeddedRetriever, Store

    store = Store(QdrantClient(":memory:"), "kb", 2, embedded=True)
    store.ensure_collection()
    store.upsert([
        ChunkPoint("a.md", 0, {"doc_id": "a"}, SparseVector([1], [2.0]), [0.6, 0.8]),  # BM25 first, dense second
        ChunkPoint("b.md", 0, {"doc_id": "b"}, SparseVector([1], [1.0]), [1.0, 0.0]),  # dense first, BM25 second
    ])  # fmt: skip
    retriever = EmbeddedRetriever(store)
    ask = [[1.0, 0.0]], SparseVector([1], [1.0]), None
    tied = retrieve(retriever, *ask, rrf_k=60)
    assert tied[0].fusion == tied[1].fusion == 1 / 60 + 1 / 61  # one first place each: a tie at equal weights
    weighted = {c.payload["doc_id"]: c.fusion for c in retrieve(retriever, *ask, rrf_k=60, bm25_weight=0.5)}
    assert abs(weighted["a"] - (1 / (60 + 2 - 1) + 1 / 61)) < 1e-9
    assert abs(weighted["b"] - (1 / 60 + 1 / (60 + 4 - 1))) < 1e-9
    store.close()
