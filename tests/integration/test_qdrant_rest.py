"""The REST path to Qdrant Cloud (no qdrant_client on the search path): the JSON it sends is what qdrant_client
sends for the same query, the embedded store (Qdrant Edge) turns that JSON into the request one would write with
Edge's own API, and REST answers are read the way the API returns them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from kbsearch.errors import IndexMissing, StoreError
from kbsearch.lexical import SparseVector
from kbsearch.providers.resilience import shared_client
from kbsearch.qdrant.embedded import edge_filter, edge_request
from kbsearch.qdrant.query import (
    SEARCH_PAYLOAD,
    batch_searches,
    filter_json,
    fusion_request,
    path_filter,
    retrieve,
    retrieve_legs,
)
from kbsearch.qdrant.rest import QdrantRest
from kbsearch_tools.fakes import FakeEndpoint


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


def client_dense(kind: Any, vector: list[float], qfilter: Any, limit: int, once: bool, **more: Any) -> Any:
    """A dense search as qdrant_client writes it (``kind``: ``models.Prefetch`` or ``models.QueryRequest``):
    rescored in each segment, or (``once``) the int8 candidates, not rescored inside the segments, and the query
    over them that rescores them exactly."""
    nearest = models.NearestQuery(nearest=vector)
    if not once:
        return kind(query=nearest, using="dense", filter=qfilter, limit=limit, params=models.SearchParams(
            hnsw_ef=256, quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0)), **more)  # fmt: skip
    candidates = models.Prefetch(query=nearest, using="dense", filter=qfilter, limit=2 * limit, params=models.SearchParams(
        hnsw_ef=256, quantization=models.QuantizationSearchParams(rescore=False)))  # fmt: skip
    exact = models.SearchParams(quantization=models.QuantizationSearchParams(ignore=True))
    return kind(prefetch=[candidates], query=nearest, using="dense", filter=qfilter, limit=limit, params=exact, **more)


def edge_by_hand(weights: list[float] | None) -> Any:
    """The same query written with Qdrant Edge's own API (qdrant.tech/documentation/edge)."""
    edge = pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform")
    qfilter = edge.Filter(must=[
        edge.Filter(should=[edge.FieldCondition(key="tags", match=edge.MatchAny(any=["runbook", "qdrant"])),
                            edge.FieldCondition(key="tag_keys", match=edge.MatchAny(any=["runbook", "qdrant"]))]),
        edge.FieldCondition(key="type", match=edge.MatchAny(any=["runbook"])),
        edge.FieldCondition(key="status", match=edge.MatchAny(any=["active"])),
        edge.FieldCondition(key="folders", match=edge.MatchValue(value="ru/ранбуки")),
        edge.FieldCondition(key="updated", range=edge.RangeDateTime(gt="2026-01-01T00:00:00+00:00")),
    ], should=[edge.FieldCondition(key="access", match=edge.MatchValue(value="hr")),
               edge.FieldCondition(key="access", match=edge.MatchValue(value="public"))])  # fmt: skip
    params = edge.SearchParams(hnsw_ef=256, quantization=edge.QuantizationSearchParams(rescore=True, oversampling=2.0))
    return edge.QueryRequest(
        limit=150,
        prefetches=[
            edge.Prefetch(limit=50, query=edge.Query.Nearest([0.1, 0.2], using="dense"), filter=qfilter, params=params),
            edge.Prefetch(limit=50, query=edge.Query.Nearest([0.3, 0.4], using="dense"), filter=qfilter, params=params),
            edge.Prefetch(limit=50, query=edge.Query.Nearest(edge.SparseVector(indices=[1, 5], values=[1.0, 1.0]),
                                                             using="bm25"), filter=qfilter),
        ],
        query=edge.Fusion.Rrf(k=60, weights=weights),
        filter=qfilter,  # the caller's scope on the fused query too, not only on each leg
        with_payload=edge.PayloadSelector.Include(SEARCH_PAYLOAD["include"]),
        with_vector=False,
    )  # fmt: skip


@pytest.mark.parametrize("weights", [None, [1.0, 0.5, 2.0]])
def test_request_body_matches_qdrant_client_and_edge(qdrant: FakeEndpoint, weights: list[float] | None) -> None:
    client = QdrantClient(url=qdrant.url, check_compatibility=False)
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    conditions: list[models.Condition] = [
        models.Filter(
            should=[
                models.FieldCondition(key="tags", match=models.MatchAny(any=["runbook", "qdrant"])),
                models.FieldCondition(key="tag_keys", match=models.MatchAny(any=["runbook", "qdrant"])),
            ]
        ),
        models.FieldCondition(key="type", match=models.MatchAny(any=["runbook"])),
        models.FieldCondition(key="status", match=models.MatchAny(any=["active"])),
        models.FieldCondition(key="folders", match=models.MatchValue(value="ru/ранбуки")),
        models.FieldCondition(key="updated", range=models.DatetimeRange(gt=when)),
    ]
    scope: list[models.Condition] = [  # the caller's scope: the filter's own should
        models.FieldCondition(key="access", match=models.MatchValue(value="hr")),
        models.FieldCondition(key="access", match=models.MatchValue(value="public")),
    ]
    qfilter = models.Filter(must=conditions, should=scope)
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
        query=models.RrfQuery(rrf=models.Rrf(k=60, weights=weights)),
        query_filter=qfilter,
        limit=150,
        with_payload=models.PayloadSelectorInclude(include=SEARCH_PAYLOAD["include"]),
    )  # fmt: skip
    sent = drop_none(qdrant.requests[-1].body)
    assert qdrant.requests[-1].path == "/collections/kb/points/query"
    ours = fusion_request(
        [[0.1, 0.2], [0.3, 0.4]],
        SparseVector([1, 5], [1.0, 1.0]),
        filter_json(tags=["runbook", "qdrant"], types=["runbook"], statuses=["active"], path_prefix="ru/ранбуки/",
                    updated_after=dt.date(2026, 1, 1), groups=["public", "hr"]),
        prefetch_limit=50, hnsw_ef=256, rrf_k=60,
    )  # fmt: skip
    assert ours is not None
    if weights:  # weighted RRF (issue 13) adds one weight per prefetch to the same JSON
        ours["query"]["rrf"]["weights"] = weights
    # the embedded store runs what Edge's own API would build (Edge objects compare by their full repr)
    assert repr(edge_request(ours)) == repr(edge_by_hand(weights))
    # datetimes: compare instants, whatever the spelling of UTC
    for body in (sent, ours):
        for filtered in [*body["prefetch"], body]:
            for cond in filtered["filter"]["must"]:
                if "range" in cond and isinstance(cond["range"]["gt"], str):  # the filter may be shared
                    cond["range"]["gt"] = dt.datetime.fromisoformat(cond["range"]["gt"].replace("Z", "+00:00"))
    assert sent == drop_none(ours)


@pytest.mark.parametrize("from_chunk", [None, 3])
def test_delete_filter_is_one_json_for_qdrant_client_and_edge(qdrant: FakeEndpoint, from_chunk: int | None) -> None:
    """The indexer's deletes use the same filter JSON everywhere: what qdrant_client sends for the filter one would
    write with its models, validated into those models for Cloud / local mode, translated for Edge."""
    conditions: list[models.Condition] = [models.FieldCondition(key="path", match=models.MatchValue(value="ru/a.md"))]
    # from a chunk on: every point of the note but chunks 0..from_chunk-1 (a chunk_index of no type included)
    others: list[models.Condition] | None = None
    if from_chunk is not None:
        others = [models.FieldCondition(key="chunk_index", match=models.MatchAny(any=list(range(from_chunk))))]
    by_hand = models.Filter(must=conditions, must_not=others)
    qdrant.body = b'{"result": {"operation_id": 1, "status": "completed"}, "status": "ok", "time": 0.001}'
    QdrantClient(url=qdrant.url, check_compatibility=False).delete("kb", models.FilterSelector(filter=by_hand))
    assert qdrant.requests[-1].path == "/collections/kb/points/delete?wait=true"
    ours = path_filter("ru/a.md", from_chunk)
    assert drop_none(qdrant.requests[-1].body) == {"filter": ours}
    assert models.Filter.model_validate(ours) == by_hand
    edge = pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform")
    must = [edge.FieldCondition(key="path", match=edge.MatchValue(value="ru/a.md"))]
    must_not = None
    if from_chunk is not None:
        must_not = [edge.FieldCondition(key="chunk_index", match=edge.MatchAny(any=list(range(from_chunk))))]
    assert repr(edge_filter(ours)) == repr(edge.Filter(must=must, must_not=must_not))


def test_rest_retriever_reads_answers_and_sends_the_key(qdrant: FakeEndpoint) -> None:
    rest = QdrantRest(qdrant.url, "kb", lambda: "qdrant-test-key", shared_client(), 2.0)
    points = rest.query({"prefetch": [], "query": {"rrf": {"k": 60}}, "limit": 1}, 2.0)
    assert points[0]["payload"] == {"doc_id": "n1"} and points[0]["score"] == 0.5
    assert qdrant.requests[-1].headers["api-key"] == "qdrant-test-key"
    assert qdrant.requests[-1].path == "/collections/kb/points/query"
    # the embedding signature the collection records (GET /collections/{c}: result.config.metadata)
    meta = {
        "embedding_model": "Qwen/Qwen3-Embedding-8B",
        "embedding_dimensions": 1024,
        "embedding_input_format": "qwen3",
    }
    qdrant.body = json.dumps({"result": {"status": "green", "config": {"params": {}, "metadata": meta}}}).encode()
    assert rest.metadata(2.0) == meta
    assert qdrant.requests[-1].path == "/collections/kb"
    qdrant.body = b'{"result": {"status": "green", "config": {"params": {}}}}'
    assert rest.metadata(2.0) == {}  # a collection built before signatures were recorded
    qdrant.body = b'{"result": {"points": []}}'
    with pytest.raises(StoreError):
        rest.metadata(2.0)


def test_a_missing_collection_is_the_query_s_own_404(qdrant: FakeEndpoint) -> None:
    qdrant.status, qdrant.body = 404, b'{"status": {"error": "Not found: Collection `kb` doesn\'t exist!"}}'
    rest = QdrantRest(qdrant.url, "kb", lambda: None, shared_client(), 2.0)
    with pytest.raises(IndexMissing):
        rest.query({"prefetch": [], "query": {"rrf": {"k": 60}}, "limit": 1}, 2.0)
    assert len(qdrant.requests) == 1  # one round trip: no separate exists call


DEEP = b'{"result": {"points": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
BAD_ANSWERS = [
    (500, b"{}"), (401, b'{"status": {"error": "no"}}'), (200, b"not json"), (200, b"<html>502</html>"),
    (200, b'{"result": {"points": 5}}'), (200, b'{"result": null}'), (200, b"[]"), (200, DEEP),
    (200, b'{"result": {"points": [{"id": 1}]}}'),
    (200, b'{"result": {"points": [{"id": 1, "score": null, "payload": {}}]}}'),
    (200, b'{"result": {"points": [{"id": 1, "score": "0.5", "payload": {}}]}}'),
    (200, b'{"result": {"points": [{"id": 1, "score": NaN, "payload": {}}]}}'),
    (200, b'{"result": {"points": [{"id": 1, "score": Infinity, "payload": {}}]}}'),
    (200, b'{"result": {"points": [{"id": 1, "score": 1e999, "payload": {}}]}}'),
    (200, b'{"result": {"points": [{"id": 1, "score": true, "payload": {}}]}}'),
    (200, b'{"result": {"points": [{"id": 1, "score": 0.5, "payload": "text"}]}}'),
    (200, b'{"result": {"points": [{"id": 1, "score": 0.5, "payload": {"path": "a.md", "title": 5}}]}}'),
    (200, b'{"result": {"points": [{"id": 1, "score": 0.5, "payload": {"path": "a.md", "tags": [1, 2]}}]}}'),
    (200, b'{"result": {"points": [{"id": 1, "score": 0.5, "payload": {"path": "a.md", "tags": "a"}}]}}'),
    (200, b'{"result": {"points": [{"id": 1, "score": 0.5, "payload": {"path": "a.md", "text": {"a": 1}}}]}}'),
    (200, b'{"result": {"points": [{"id": 1, "score": 0.5, "payload": {"path": 5}}]}}'),
    (200, b'{"result": {"points": [{"id": 1, "score": 0.5, "payload": {"path": ["a.md"]}}]}}'),
    (200, b'{"result": {"points": ["x"]}}'),
    (200, b"\xff\xfe{}"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body"), BAD_ANSWERS, ids=range(len(BAD_ANSWERS)))
def test_rest_retriever_turns_every_bad_answer_into_store_error(qdrant: FakeEndpoint, status: int, body: bytes) -> None:
    qdrant.status, qdrant.body, qdrant.content_type = status, body, "application/json"
    rest = QdrantRest(qdrant.url, "kb", lambda: None, shared_client(), 2.0)
    with pytest.raises(StoreError):
        retrieve(rest, [[1.0, 0.0]], None, None, timeout_s=2.0)


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
        with_payload=models.PayloadSelectorInclude(include=SEARCH_PAYLOAD["include"]),
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
    from kbsearch.qdrant.embedded import EmbeddedRetriever
    from kbsearch.qdrant.store import ChunkPoint, Store

    store = Store(QdrantClient(":memory:"), "kb", 2, embedded=True)
    store.ensure_collection()
    store.upsert([
        ChunkPoint("a.md", 0, {"path": "a.md", "doc_id": "a"}, SparseVector([1], [2.0]), [0.6, 0.8]),  # BM25 first, dense second
        ChunkPoint("b.md", 0, {"path": "b.md", "doc_id": "b"}, SparseVector([1], [1.0]), [1.0, 0.0]),  # dense first, BM25 second
    ])  # fmt: skip
    retriever = EmbeddedRetriever(store)
    ask = [[1.0, 0.0]], SparseVector([1], [1.0]), None
    tied = retrieve(retriever, *ask, rrf_k=60)
    assert tied[0].fusion == tied[1].fusion == 1 / 60 + 1 / 61  # one first place each: a tie at equal weights
    weighted = {c.payload["doc_id"]: c.fusion for c in retrieve(retriever, *ask, rrf_k=60, bm25_weight=0.5)}
    assert abs(weighted["a"] - (1 / (60 + 2 - 1) + 1 / 61)) < 1e-9
    assert abs(weighted["b"] - (1 / 60 + 1 / (60 + 4 - 1))) < 1e-9
    store.close()


# -- the adaptive fusion's one call: POST /points/query/batch ------------------------------------------------
@pytest.mark.parametrize("once", [False, True])
def test_batch_body_matches_qdrant_client_and_every_leg_carries_the_filter(qdrant: FakeEndpoint, once: bool) -> None:
    """The batch the adaptive fusion sends (a dense search per variant: the query's with payloads, a rewrite's ids
    and scores; BM25 per language, each with its tail of ids and scores; one-term probes of ids and scores) is the JSON qdrant_client sends for the same searches, and the request's filter
    reaches every search of it."""
    scope = filter_json(tags=["runbook"], path_prefix="ru/ранбуки")
    searches, legs = batch_searches(
        [[0.1, 0.2], [0.3, 0.4]], [(SparseVector([1, 5], [1.0, 1.0]), "en"), (SparseVector([7], [1.0]), "ru")],
        scope, prefetch_limit=200, hnsw_ef=256, probes=[1, 5], rescore_once=once,
    )  # fmt: skip
    assert [leg.kind for leg in legs] == [
        "dense", "dense", "lexical", "lexical-tail", "lexical", "lexical-tail", "probe", "probe"
    ]  # fmt: skip
    assert [leg.language for leg in legs if leg.kind.startswith("lexical")] == ["en", "en", "ru", "ru"]
    assert all(s["filter"] == scope for s in searches)
    qdrant.body = json.dumps({"result": [{"points": []} for _ in searches], "status": "ok", "time": 0.001}).encode()
    qfilter = models.Filter.model_validate(scope)
    payload = models.PayloadSelectorInclude(include=SEARCH_PAYLOAD["include"])
    QdrantClient(url=qdrant.url, check_compatibility=False).query_batch_points("kb", [
        client_dense(models.QueryRequest, [0.1, 0.2], qfilter, 200, once, with_payload=payload, with_vector=False),
        client_dense(models.QueryRequest, [0.3, 0.4], qfilter, 50, once, with_payload=False, with_vector=False),
        models.QueryRequest(query=models.SparseVector(indices=[1, 5], values=[1.0, 1.0]), using="bm25",
                            filter=qfilter, limit=100, with_payload=payload, with_vector=False),
        models.QueryRequest(query=models.SparseVector(indices=[1, 5], values=[1.0, 1.0]), using="bm25",
                            filter=qfilter, limit=308, offset=92, with_payload=False, with_vector=False),
        models.QueryRequest(query=models.SparseVector(indices=[7], values=[1.0]), using="bm25", filter=qfilter,
                            limit=100, with_payload=payload, with_vector=False),
        models.QueryRequest(query=models.SparseVector(indices=[7], values=[1.0]), using="bm25", filter=qfilter,
                            limit=308, offset=92, with_payload=False, with_vector=False),
        models.QueryRequest(query=models.SparseVector(indices=[1], values=[1.0]), using="bm25", filter=qfilter,
                            limit=8, with_payload=False, with_vector=False),
        models.QueryRequest(query=models.SparseVector(indices=[5], values=[1.0]), using="bm25", filter=qfilter,
                            limit=8, with_payload=False, with_vector=False),
    ])  # fmt: skip
    assert qdrant.requests[-1].path == "/collections/kb/points/query/batch"
    assert drop_none(qdrant.requests[-1].body) == {"searches": drop_none(searches)}
    # what Cloud is sent over REST is that same body
    rest = QdrantRest(qdrant.url, "kb", lambda: "qdrant-test-key", shared_client(), 2.0)
    assert retrieve_legs(rest, searches, legs, 2.0) == [(leg, []) for leg in legs]
    assert qdrant.requests[-1].path == "/collections/kb/points/query/batch"
    assert qdrant.requests[-1].body == {"searches": searches}
    assert qdrant.requests[-1].headers["api-key"] == "qdrant-test-key"


def test_batch_answers_are_read_per_leg_with_ties_in_point_id_order(qdrant: FakeEndpoint) -> None:
    qdrant.body = json.dumps({"result": [
        {"points": []},
        {"points": [{"id": "b", "score": 2.0, "payload": {"path": "b.md"}},
                    {"id": "a", "score": 2.0, "payload": {"path": "a.md"}},
                    {"id": "c", "score": 3.0, "payload": {"path": "c.md"}}, {"id": "n", "score": 2.5},
                    {"id": "m", "score": 2.4, "payload": {}}]},
        {"points": [{"id": "e", "score": 1.0}, {"id": "d", "score": 1.0}]},
        {"points": [{"id": "z", "score": 1.5, "payload": {"path": "z.md"}}, {"id": "y", "score": 1.4},
                    {"id": "x", "score": 1.3, "payload": {}}]},
    ]}).encode()  # fmt: skip
    rest = QdrantRest(qdrant.url, "kb", lambda: None, shared_client(), 2.0)
    searches, legs = batch_searches([[0.1, 0.2]], [(SparseVector([1], [1.0]), "en")], None, probes=[1])
    (_, dense), (_, lexical), (_, tail), (_, probe) = retrieve_legs(rest, searches, legs, 2.0)
    assert dense == []
    assert [c.id for c in lexical] == ["c", "a", "b"]  # equal scores: by point id; no payload path: dropped
    assert [(c.id, c.payload) for c in tail] == [("d", {}), ("e", {})]  # asked for ids and scores: kept as such
    # a probe asks for ids and scores: each is kept (its payload, which Qdrant would not send, is read as sent)
    assert [(c.id, c.score) for c in probe] == [("z", 1.5), ("y", 1.4), ("x", 1.3)]


BAD_BATCH_ANSWERS = [
    b'{"result": {"points": []}}', b'{"result": [{"points": []}]}', b'{"result": [{"points": []}, 5]}',
    b'{"result": [{"points": []}, {"points": {"a": 1}}]}', b'{"result": [{"points": []}, {}]}',
    b'{"result": [{"points": []}, {"points": [{"id": 1, "score": NaN}]}]}',
    b'{"result": [{"points": []}, {"points": [{"id": 1, "score": 0.5, "payload": {"path": 5}}]}]}',
    b'{"result": null}', b"[]",
]  # fmt: skip


@pytest.mark.parametrize("body", BAD_BATCH_ANSWERS, ids=range(len(BAD_BATCH_ANSWERS)))
def test_a_batch_answer_of_the_wrong_shape_is_store_error(qdrant: FakeEndpoint, body: bytes) -> None:
    qdrant.body = body
    rest = QdrantRest(qdrant.url, "kb", lambda: None, shared_client(), 2.0)
    searches, legs = batch_searches([[1.0, 0.0]], [(SparseVector([1], [1.0]), "en")], None)
    with pytest.raises(StoreError):
        retrieve_legs(rest, searches, legs, 2.0)
