"""The adaptive fusion through the real stores: the same batch on Qdrant Edge, on qdrant-client's local mode and over
REST (Qdrant Cloud's JSON) fuses to the same ranking; equal scores rank the same way every run in every store; an
identifier's exact match comes first through the whole search service."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from kbsearch.config import Secrets
from kbsearch.errors import StoreError
from kbsearch.fusion import analyse, fuse, lexical_variants
from kbsearch.indexer import run_sync
from kbsearch.lexical import document_vector
from kbsearch.providers.resilience import shared_client
from kbsearch.qdrant.embedded import EdgeStore, EmbeddedRetriever
from kbsearch.qdrant.query import batch_searches, retrieve_legs
from kbsearch.qdrant.rest import QdrantRest
from kbsearch.qdrant.store import ChunkPoint, Store
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch_tools.fakes import FakeEndpoint, FakeProvider
from tests.conftest import ROOT, provider_settings

DIMS = 8
TEXTS = [
    ("en/a.md", "Rotate the provider keys without downtime", "en"),
    ("en/b.md", "Rotate the provider keys before the audit", "en"),
    ("en/c.md", "Restore a Qdrant snapshot after a failed upgrade", "en"),
    ("ru/d.md", "Ротация ключей провайдеров без простоя", "ru"),
    ("ru/e.md", "Восстановление снапшота Qdrant после обновления", "ru"),
] + [(f"en/tie{i}.md", "identical twin note about keys", "en") for i in range(6)]


def _vector(i: int) -> list[float]:
    v = [0.1] * DIMS
    v[i % DIMS] = 1.0
    return v


def _fill(store: Store) -> Store:
    store.ensure_collection()
    store.upsert([ChunkPoint(path, 0, {"path": path, "doc_id": path, "lang": lang, "title": path, "text": text},
                             document_vector(text), _vector(0 if "tie" in path else i))
                  for i, (path, text, lang) in enumerate(TEXTS)])  # fmt: skip
    return store


@pytest.fixture(params=["edge", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "edge":
        pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform")
        made: Store = EdgeStore(tmp_path, "kb", DIMS)
    else:
        made = Store(QdrantClient(":memory:"), "kb", DIMS, embedded=True)
    yield _fill(made)
    made.close()


QUERIES = ["rotate provider keys", "identical twin", "Qdrant", "ротация ключей", "keys"]


def _ranking(retriever: object, query: str, mode: str = "hybrid") -> list[tuple[str, float, bool]]:
    evidence = analyse(query)
    searches, legs = batch_searches([_vector(0)], lexical_variants(evidence, []), None, 50, probes=evidence.terms)
    results = retrieve_legs(retriever, searches, legs, 5.0)  # type: ignore[arg-type]
    return [(c.payload["path"], c.fusion, c.exact) for c in fuse(results, evidence, 20, mode)]


@pytest.mark.parametrize("query", QUERIES)
def test_equal_scores_rank_by_path_in_every_store_and_mode(store: Store, query: str) -> None:
    retriever = EmbeddedRetriever(store)
    for mode in ("lexical", "dense", "hybrid"):
        first = _ranking(retriever, query, mode)
        assert first and all(_ranking(retriever, query, mode) == first for _ in range(3))
        for (p1, s1, _), (p2, s2, _) in itertools.pairwise(first):
            assert (-s1, p1) < (-s2, p2)  # best first; equal scores in path order


def test_rest_edge_and_local_mode_fuse_the_same_batch_to_the_same_ranking(tmp_path: Path) -> None:
    pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform")
    edge = _fill(EdgeStore(tmp_path, "kb", DIMS))
    local = _fill(Store(QdrantClient(":memory:"), "kb", DIMS, embedded=True))
    qdrant = FakeEndpoint().start()
    qdrant.content_type = "application/json"
    try:
        for query in QUERIES:
            evidence = analyse(query)
            searches, _ = batch_searches([_vector(0)], lexical_variants(evidence, []), None, 50, probes=evidence.terms)
            # Qdrant Cloud answers the batch with what the engine found: the embedded store's answer, as JSON
            answers = edge.query_batch(searches, 5.0)
            qdrant.body = json.dumps({"result": [{"points": a} for a in answers], "status": "ok"}, default=str).encode()
            rest = QdrantRest(qdrant.url, "kb", lambda: None, shared_client(), 5.0)
            via_rest = _ranking(rest, query)
            assert qdrant.requests[-1].path == "/collections/kb/points/query/batch"
            assert via_rest == _ranking(EmbeddedRetriever(edge), query)
            # local mode computes identical vectors' cosines with float noise: its twins may swap among themselves
            twins = [("twin" if "tie" in p else p) for p, _, _ in via_rest]
            assert twins == [("twin" if "tie" in p else p) for p, _, _ in _ranking(EmbeddedRetriever(local), query)]
    finally:
        qdrant.stop()
        edge.close()
        local.close()


@pytest.fixture(scope="module")
def sample_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchService]:
    fake = FakeProvider("deepinfra", api_key="k").start()
    settings = provider_settings(fake, qdrant_path=str(tmp_path_factory.mktemp("q")), embedding_dimensions=64)
    run_sync(settings, Secrets(settings), source_uri=str(ROOT / "sample-kb"))
    service = SearchService(settings, Secrets(settings))
    yield service
    service.close()
    fake.stop()


@pytest.mark.parametrize("query", ["RERANK_HEDGE_MS", "что делает RERANK_HEDGE_MS", "rerank_hedge_ms hedging delay"])
def test_an_identifier_finds_its_note_first_through_the_service(sample_service: SearchService, query: str) -> None:
    answer = sample_service.search(SearchRequest(query=query, top_k=5, rerank=True, expand=False))
    assert answer.results[0].path == "en/runbooks/Runbook - reranker outage.md", [h.path for h in answer.results]
    assert answer.meta.degraded == []


ODD_PAYLOADS: list[dict[str, Any]] = [
    {"path": "en/ok.md", "title": "keys"}, {}, {"path": ""}, {"path": "x" * 5000}, {"title": "no path at all"},
    {"path": "ru/ok.md", "tags": ["keys"] * 3, "lang": "ru"},
]  # fmt: skip


@pytest.mark.parametrize("bad_path", [None, 5, ["a.md"], {"p": 1}])
def test_edge_reads_its_own_points_as_the_api_s_json_is_read(tmp_path: Path, bad_path: object) -> None:
    """Edge's legs are read straight from its points (query_legs), the other stores' from the Query API's JSON
    (read_legs over query_batch): the same chunks, in the same order, the same points dropped, for every payload
    the store may hold; a path that is not a string is a store that is not usable, on both."""
    pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform")
    from kbsearch.qdrant.query import read_legs

    store = EdgeStore(tmp_path, "kb", DIMS)
    try:
        store.ensure_collection()
        payloads = ODD_PAYLOADS + [{"path": f"en/tie{i}.md", "title": "keys"} for i in range(5)]
        store.upsert([ChunkPoint(str(p.get("path") or f"odd{i}"), i, p, document_vector("rotate the keys"),
                                 _vector(0)) for i, p in enumerate(payloads)])  # fmt: skip
        evidence = analyse("rotate keys")
        searches, legs = batch_searches(
            [_vector(0), _vector(1)], lexical_variants(evidence, []), None, 50, probes=evidence.terms
        )  # every point in every leg: ties ordered by id
        bare = [leg.bare for leg in legs]
        assert any(bare) and not all(bare)
        direct = store.query_legs(searches, bare, 5.0)
        assert direct == read_legs(store.query_batch(searches, 5.0), bare)
        assert {c.payload["path"] for chunks, b in zip(direct, bare, strict=True) if not b for c in chunks} <= {
            "en/ok.md", "ru/ok.md", *(f"en/tie{i}.md" for i in range(5))}  # fmt: skip
        assert all(c.payload == {} for chunks, b in zip(direct, bare, strict=True) if b for c in chunks)
        store.upsert([ChunkPoint("bad.md", 0, {"path": bad_path}, document_vector("rotate the keys"), _vector(0))])
        if bad_path is None:  # no path: dropped by both
            assert store.query_legs(searches, bare, 5.0) == read_legs(store.query_batch(searches, 5.0), bare)
        else:
            with pytest.raises(StoreError):
                store.query_legs(searches, bare, 5.0)
            with pytest.raises(StoreError):
                read_legs(store.query_batch(searches, 5.0), bare)
    finally:
        store.close()


def test_edge_reads_a_point_s_payload_once_per_batch_and_per_field_set(tmp_path: Path) -> None:
    """A chunk the dense and the BM25 legs both bring is one payload read (the same object in both legs: Edge
    converts a payload each time it is read); a search that asked for other fields reads its own, and a point
    dropped in one leg (no usable path) is dropped in every leg, as the Query API's JSON is read."""
    pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform")
    from kbsearch.qdrant.query import read_legs

    store = EdgeStore(tmp_path, "kb", DIMS)
    try:
        store.ensure_collection()
        payloads = [{"path": f"en/n{i}.md", "title": "keys", "text": "rotate the keys"} for i in range(6)]
        payloads.append({"title": "no path", "text": "rotate the keys"})
        store.upsert([ChunkPoint(f"p{i}", 0, p, document_vector("rotate the keys"), _vector(i))
                      for i, p in enumerate(payloads)])  # fmt: skip
        evidence = analyse("rotate keys")
        searches, legs = batch_searches([_vector(0)], lexical_variants(evidence, []), None, 50)
        searches.append({**searches[0], "with_payload": {"include": ["path"]}})  # other fields: read again
        bare = [leg.bare for leg in legs] + [False]
        read = store.query_legs(searches, bare, 5.0)
        assert read == read_legs(store.query_batch(searches, 5.0), bare)
        dense, lexical, own = read[0], read[1], read[-1]
        assert len(dense) == len(lexical) == len(own) == 6  # the pathless point dropped from each
        by_id = {c.id: c.payload for c in dense}
        assert all(c.payload is by_id[c.id] for c in lexical)
        assert all(c.payload == {"path": by_id[c.id]["path"]} for c in own)
    finally:
        store.close()


#: Payloads a store may hold that the indexer never writes: display fields of every wrong JSON type, fields of
#: megabytes or 100,000 items, numbers at the edges of what Edge and JSON carry, nested junk, a path alone, paths
#: the indexer refuses (a NUL, absolute, climbing, one character over the bound).
STORED_BY_ANOTHER: list[dict[str, Any]] = [
    {"title": 5}, {"title": ["a"]}, {"title": {"a": 1}}, {"title": None}, {"title": 1.0}, {"doc_id": True},
    {"tags": "a"}, {"tags": [1, 2]}, {"tags": [["a"]]}, {"tags": None}, {"links": {"a": 1}}, {"status": ["a"]},
    {"summary": 1.5}, {"updated": 20240101}, {"heading": None}, {"lang": 3}, {"ai_weight": "x"},
    {"ai_weight": 2**64 - 1}, {"ai_weight": -(2**63)}, {"ai_weight": 5e-324}, {"ai_weight": -0.0},
    {"title": "x" * 5_000_000}, {"text": "x" * 5_000_000}, {"tags": ["t"] * 100_000}, {"": 1},
    {"x": [[[[[[1]]]]]], "meta": {"a": [{"b": None}]}}, {"title": None, "text": None, "heading": None},
]  # fmt: skip
ODD_PATHS = ["a\x00b.md", "/etc/passwd.md", "../x.md", "y" * 1024, "y" * 1025]


def test_edge_and_the_query_api_json_read_every_stored_payload_alike(tmp_path: Path) -> None:
    """Edge's points read directly (query_legs, what the search does on the embedded store) and the same answer
    as Qdrant Cloud's JSON (written, then decoded by the outbound decoder and read_legs): the same chunks, scores
    and order, and the same verdict of every candidate made of them (StoreError or a candidate), for every payload
    another writer may have left in a store."""
    pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform")
    import uuid

    from kbsearch.providers.resilience import loads
    from kbsearch.qdrant.query import candidate, read_legs

    store = EdgeStore(tmp_path, "kb", DIMS)
    try:
        store.ensure_collection()
        payloads: list[dict[str, Any]] = [
            {"path": f"odd{i}.md", "text": "rotate the keys"} | p for i, p in enumerate(STORED_BY_ANOTHER)
        ]
        payloads += [{"path": p, "text": "rotate the keys"} for p in ODD_PATHS] + [{"path": "only.md"}]
        store.upsert([ChunkPoint(f"p{i}", 0, p, document_vector("rotate the keys"), _vector(i))
                      for i, p in enumerate(payloads)])  # fmt: skip
        evidence = analyse("rotate keys")
        searches, legs = batch_searches(
            [_vector(0), _vector(3)], lexical_variants(evidence, []), None, 100, probes=evidence.terms
        )
        bare = [leg.bare for leg in legs]

        def verdicts(read: list[list[Any]]) -> list[list[tuple[str, float, str]]]:
            out = []
            for chunks, b in zip(read, bare, strict=True):
                leg = []
                for c in chunks:
                    pid = str(uuid.UUID(int=c.id)) if isinstance(c.id, int) else c.id
                    try:
                        verdict = "bare" if b else repr(sorted(candidate(c.payload, 1.0).payload.items()))[:300]
                    except StoreError:
                        verdict = "StoreError"
                    leg.append((pid, c.score, verdict))
                out.append(leg)
            return out

        direct = verdicts(store.query_legs(searches, bare, 5.0))
        answer = json.dumps(store.query_batch(searches, 5.0), default=str).encode()
        assert direct == verdicts(read_legs(loads(answer), bare))
        assert sum(len(leg) for leg, b in zip(direct, bare, strict=True) if not b) >= len(payloads) - 2
    finally:
        store.close()


#: What a search may ask of a point's payload (Query API JSON), beside the search's own include list.
SELECTORS: list[Any] = [True, ["path", "title"], ["title"], {"include": ["path", "access"]}, {"exclude": ["title"]},
                        {"exclude": ["path"]}, [], False, None, "absent"]  # fmt: skip


@pytest.mark.parametrize("ids", ["numbers", "uuids"])
def test_edge_reads_every_payload_selector_as_the_api_s_json_within_the_scope(tmp_path: Path, ids: str) -> None:
    """The batch's payloads read by id after the searches (query_legs) are each search's own: for every selector a
    search may give (all fields, a list, include, exclude, none, absent), several selectors over the same points in
    one batch, beside bare searches (one asking for the same fields: read_leg keeps them; they were left out), in a store of integer ids and in one written before with UUIDs: the chunks,
    order and dropped points of read_legs over query_batch; and no chunk outside the caller's scope, a filter on
    every search, while the points by id are read without it."""
    pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform")
    import qdrant_edge as edge

    from kbsearch.qdrant.query import dense_search, filter_json, point_id, read_legs
    from kbsearch.qdrant.store import named_vectors

    payloads = [{"path": f"n{i}.md", "title": f"t{i}", "access": ["public"] if i % 2 else ["hr"]} for i in range(8)]
    payloads += [{"title": "no path", "access": ["public"]}, {"path": "", "access": ["public"]}]
    chunks = [ChunkPoint(str(p.get("path") or f"odd{i}.md"), 0, p, document_vector("rotate the keys"), _vector(i))
              for i, p in enumerate(payloads)]  # fmt: skip
    store = EdgeStore(tmp_path, "kb", DIMS)
    try:
        store.ensure_collection()
        if ids == "uuids":  # written as the version before wrote
            store.shard.update(edge.UpdateOperation.upsert_points(
                [edge.Point(id=point_id(c.path, 0), vector=named_vectors(c, edge.SparseVector), payload=c.payload)
                 for c in chunks]))  # fmt: skip
            store.close()
            store = EdgeStore(tmp_path, "kb", DIMS)
        else:
            store.upsert(chunks)
        scope = filter_json(groups=["public"])
        searches, bare = [], []
        for i, selector in enumerate(SELECTORS):
            search = {**dense_search(_vector(i), 10, 16), "with_vector": False, "filter": scope}
            if selector != "absent":
                search["with_payload"] = selector
            searches += [search, search, {**search, "with_payload": False}]
            bare += [False, True, True]  # a bare search's chunks keep what it asked for, as read_leg keeps them
        read = store.query_legs(searches, bare, 5.0)
        assert read == read_legs(store.query_batch(searches, 5.0), bare)
        paths = {c.payload["path"] for chunks, b in zip(read, bare, strict=True) if not b for c in chunks}
        assert paths == {f"n{i}.md" for i in range(1, 8, 2)}  # every public note, none of hr's
        assert {c.id for chunks in read for c in chunks} <= {
            c.id for c in store.query_legs([searches[2]], [True], 5.0)[0]}  # fmt: skip
    finally:
        store.close()
