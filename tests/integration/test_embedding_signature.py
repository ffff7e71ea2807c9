"""The collection records the model, dimensions and input format its vectors were made with: a change re-embeds
every note (with a report line), and a search never compares vectors of two models (BM25 only, flagged)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import Indexer, SyncOptions, SyncReport
from kbsearch.providers.embeddings import build_embedder
from kbsearch.providers.resilience import Deadline, shared_client
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import (
    DENSE_SIZE,
    LAST_SYNC_KIND,
    REBUILDING,
    SIGNATURE_KEYS,
    dense_size,
    signature_id,
    signature_mismatch,
)
from kbsearch.qdrant.rest import QdrantRest
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch.sources import LocalSource
from kbsearch_tools.fakes import FakeEndpoint, FakeProvider, provider_env
from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.conftest import provider_settings

NOTES = {
    "snapshot.md": "# Restore a snapshot\n\nRestore the Qdrant collection from a snapshot file.\n",
    "keys.md": "# Rotate keys\n\nRotate the provider API keys without downtime.\n",
    "reranker.md": "# Reranker outage\n\nWhen the reranker is down, results keep the fused order.\n",
}


def settings_for(deepinfra: FakeProvider, tmp_path: Path, **extra: Any) -> Settings:
    return provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"), **extra)


def sync(settings: Settings, kb: Path, stop_at: Deadline | None = None) -> SyncReport:
    store = open_store(settings, Secrets(settings))
    try:
        embedder = build_embedder(settings, Secrets(settings), shared_client())
        return Indexer(LocalSource(kb), store, embedder, SyncOptions.from_settings(settings)).sync(stop_at)
    finally:
        store.close()


def recorded(settings: Settings) -> tuple[dict[str, Any], set[str]]:
    store = open_store(settings, Secrets(settings))
    try:
        return store.metadata(), {str(p.get("embedding")) for p in store.points().values()}
    finally:
        store.close()


def search(settings: Settings, query: str) -> Any:
    service = SearchService(settings, Secrets(settings))
    try:
        return service.search(SearchRequest(query=query, rerank=False, expand=False))
    finally:
        service.close()


def make_kb(tmp_path: Path) -> Path:
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, text in NOTES.items():
        (kb / name).write_text(text, encoding="utf-8")
    return kb


def test_the_collection_records_its_embedding_and_a_format_change_reembeds(
    deepinfra: FakeProvider, tmp_path: Path
) -> None:
    kb = make_kb(tmp_path)
    qwen = settings_for(deepinfra, tmp_path)
    first = sync(qwen, kb)
    assert first.added == 3 and first.reembedded is None
    sig = {"embedding_model": "Qwen/Qwen3-Embedding-8B", "embedding_dimensions": 64, "embedding_input_format": "qwen3"}
    meta, ids = recorded(qwen)
    assert {k: meta[k] for k in SIGNATURE_KEYS} == sig and ids == {signature_id(sig)}
    assert meta[LAST_SYNC_KIND] == "reconcile"  # beside the signature: the last sync (what /health reports)
    assert sync(qwen, kb).unchanged == 3  # same signature: nothing re-embedded

    e5 = settings_for(deepinfra, tmp_path, embedding_input_format="e5")
    # Searching the qwen3 index with the e5 format: BM25 only, flagged; never two formats' vectors compared.
    answer = search(e5, "restore snapshot")
    assert "embed_mismatch" in answer.meta.degraded and answer.meta.embedder == "none"
    assert answer.results[0].path == "snapshot.md"
    assert search(qwen, "restore snapshot").meta.degraded == []

    before = len(deepinfra.calls("embeddings"))
    second = sync(e5, kb)
    assert second.updated == 3 and second.unchanged == 0
    assert second.reembedded is not None
    assert "Qwen/Qwen3-Embedding-8B/64/qwen3 → Qwen/Qwen3-Embedding-8B/64/e5" in second.reembedded
    sent = [t for call in deepinfra.calls("embeddings")[before:] for t in call.body["input"]]
    assert sent and all(t.startswith("passage: ") for t in sent)
    meta, ids = recorded(e5)
    assert meta["embedding_input_format"] == "e5" and REBUILDING not in meta and ids == {signature_id(meta)}
    answer = search(e5, "restore snapshot")
    assert answer.meta.degraded == [] and answer.meta.embedder == "deepinfra"
    query_inputs = deepinfra.calls("embeddings")[-1].body["input"]
    assert query_inputs == ["query: restore snapshot"]


def test_an_interrupted_reembed_keeps_searches_on_bm25_until_it_completes(
    deepinfra: FakeProvider, tmp_path: Path
) -> None:
    kb = make_kb(tmp_path)
    qwen = settings_for(deepinfra, tmp_path)
    sync(qwen, kb)
    none = settings_for(deepinfra, tmp_path, embedding_input_format="none")
    stopped = sync(none, kb, stop_at=Deadline(0))
    assert stopped.incomplete and stopped.reembedded is not None and stopped.updated == 0
    assert REBUILDING in recorded(none)[0]
    for settings in (qwen, none):  # the vectors are of two formats now: neither may compare with them
        assert "embed_mismatch" in search(settings, "rotate keys").meta.degraded
    done = sync(none, kb)
    assert done.updated == 3 and not done.incomplete
    assert recorded(none)[0]["embedding_input_format"] == "none"
    assert search(none, "rotate keys").meta.degraded == []


def test_other_dimensions_rebuild_the_collection(deepinfra: FakeProvider, tmp_path: Path) -> None:
    kb = make_kb(tmp_path)
    sync(settings_for(deepinfra, tmp_path), kb)
    small = settings_for(deepinfra, tmp_path, embedding_dimensions=32)
    report = sync(small, kb)
    assert report.added == 3 and report.reembedded is not None
    assert "rebuilt" in report.reembedded and "dense size 64 but EMBEDDING_DIMENSIONS=32" in report.reembedded
    assert recorded(small)[0]["embedding_dimensions"] == 32
    assert search(small, "reranker outage").meta.degraded == []


def test_a_note_skipped_during_a_reembed_keeps_the_reembed_open(deepinfra: FakeProvider, tmp_path: Path) -> None:
    """A skipped note keeps the old model's vectors, so the re-embed is not done: the run says incomplete, the
    collection keeps saying it is rebuilding (searches stay BM25-only), and the next good run finishes it."""
    kb = make_kb(tmp_path)
    qwen = settings_for(deepinfra, tmp_path)
    sync(qwen, kb)
    (kb / "keys.md").write_bytes(b"# Rotate keys\n\n\xff\xfe not UTF-8 any more\n")
    e5 = settings_for(deepinfra, tmp_path, embedding_input_format="e5")
    partial = sync(e5, kb)
    assert [s["path"] for s in partial.skipped] == ["keys.md"] and partial.incomplete
    assert any("re-embedding not finished" in w["reason"] for w in partial.warnings)
    assert REBUILDING in recorded(e5)[0]
    assert "embed_mismatch" in search(e5, "restore snapshot").meta.degraded
    (kb / "keys.md").write_text(NOTES["keys.md"], encoding="utf-8")
    done = sync(e5, kb)
    assert not done.incomplete and done.skipped == []
    meta, ids = recorded(e5)
    assert REBUILDING not in meta and ids == {signature_id(meta)}
    assert search(e5, "restore snapshot").meta.degraded == []


def post_search(call: Any, query: str) -> tuple[int, dict[str, Any]]:
    raw = json.dumps({"query": query, "top_k": 5, "rerank": False, "expand": False}).encode()
    event = build_event(HttpRequest("POST", "/search", "", [("Content-Type", "application/json")], raw),
                        "/search", {}, "dev")  # fmt: skip
    result = call(event)
    return result["statusCode"], json.loads(result["body"])


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_an_index_built_bm25_only_is_searched_bm25_only_by_an_embedder_of_other_dimensions(
    deepinfra: FakeProvider, tmp_path: Path, load_search_app: Any, engine: str
) -> None:
    """An index built with no embedder records no signature; its dense vectors have the default size (1,024).
    A search service whose embedder has other dimensions asked it for vectors of its own size, which Qdrant
    refuses: every search was a 503. The search reads the collection's dense size with its metadata: other
    dimensions answer BM25 only, flagged ``embed_mismatch``, without an embedding call; the same dimensions
    embed as before; a sync with the embedder records its signature and dense retrieval is back."""
    kb = make_kb(tmp_path)
    bare = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", qdrant_embedded=engine, embedding_api_key=None,
                    embedding_api_key_param="")  # fmt: skip
    assert sync(bare, kb).added == 3
    assert all(recorded(bare)[0].get(k) is None for k in SIGNATURE_KEYS)
    env = {k.upper(): v for k, v in provider_env(deepinfra, roles=["EMBEDDING"]).items()}
    for dims in ("64", "32", "4096"):
        before = len(deepinfra.calls("embeddings"))
        call = load_search_app(QDRANT_PATH=str(tmp_path / "q"), QDRANT_EMBEDDED=engine, EMBEDDING_DIMENSIONS=dims,
                               **env)  # fmt: skip
        status, body = post_search(call, "restore snapshot")
        assert status == 200, body
        assert body["meta"]["degraded"] == ["embed_mismatch"] and body["meta"]["embedder"] == "none"
        assert body["results"][0]["path"] == "snapshot.md"
        assert len(deepinfra.calls("embeddings")) == before  # never embedded what nothing can compare with
        call.module.api.container.close()  # one process per embedded store: the next "container" opens it
    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"), QDRANT_EMBEDDED=engine, EMBEDDING_DIMENSIONS="1024",
                           **env)  # fmt: skip
    status, body = post_search(call, "restore snapshot")  # the collection's size: dense asked, as before
    assert status == 200 and body["meta"]["degraded"] == [] and body["meta"]["embedder"] == "deepinfra"
    call.module.api.container.close()
    small = settings_for(deepinfra, tmp_path, qdrant_embedded=engine)
    assert sync(small, kb).incomplete is False and recorded(small)[0]["embedding_dimensions"] == 64
    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"), QDRANT_EMBEDDED=engine, EMBEDDING_DIMENSIONS="64",
                           **env)  # fmt: skip
    status, body = post_search(call, "restore snapshot")
    assert status == 200 and body["meta"]["degraded"] == [] and body["meta"]["embedder"] == "deepinfra"
    assert body["results"][0]["path"] == "snapshot.md"


class CloudCollection:
    """A loopback Qdrant Cloud holding one collection: ``GET /collections/kb`` answers its info as Qdrant writes
    it (qdrant_client's own model of a collection with a 1,024-dimension ``dense`` vector and the ``bm25`` sparse
    one), and a query whose dense vector has another size gets Qdrant's 400 (``Wrong input: Vector dimension
    error``); other queries get one point."""

    def __init__(self, endpoint: FakeEndpoint, metadata: dict[str, Any] | None) -> None:
        from qdrant_client import QdrantClient, models

        client = QdrantClient(":memory:")
        client.create_collection(
            "kb", vectors_config={"dense": models.VectorParams(size=1024, distance=models.Distance.COSINE)},
            sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)}, metadata=metadata,
        )  # fmt: skip
        self.info = client.get_collection("kb").model_dump(mode="json")
        client.close()
        self.endpoint = endpoint
        endpoint.responder = self.respond

    def dense_sizes(self, value: Any) -> list[int]:
        if isinstance(value, list):
            return [n for v in value for n in self.dense_sizes(v)]
        if not isinstance(value, dict):
            return []
        query = value.get("query")
        vector = query.get("nearest") if isinstance(query, dict) else query  # {"nearest": [...]} or [...]
        own = [len(vector)] if value.get("using") == "dense" and isinstance(vector, list) else []
        return own + [n for v in value.values() for n in self.dense_sizes(v)]

    def respond(self, method: str, path: str) -> tuple[int, bytes, str] | None:
        if method == "GET" and path == "/collections/kb":
            return 200, json.dumps({"result": self.info, "status": "ok", "time": 0.001}).encode(), "application/json"
        sent = self.endpoint.requests[-1].body
        wrong = [n for n in self.dense_sizes(sent) if n != 1024]
        if wrong:
            error = f"Wrong input: Vector dimension error: expected dim: 1024, got {wrong[0]}"
            return 400, json.dumps({"status": {"error": error}, "time": 0.001}).encode(), "application/json"
        hit = {"id": 1, "version": 1, "score": 0.5,
               "payload": {"path": "snapshot.md", "title": "Restore a snapshot", "heading": "Restore a snapshot",
                           "text": "Restore the Qdrant collection from a snapshot file."}}  # fmt: skip
        one = {"points": [hit]}
        result: Any = [one for _ in sent.get("searches", [])] if path.endswith("/batch") else one
        return 200, json.dumps({"result": result, "status": "ok", "time": 0.001}).encode(), "application/json"


@pytest.mark.parametrize("metadata", [None, {"last_sync_kind": "full"}], ids=["no metadata", "no signature"])
def test_a_cloud_collection_recording_no_signature_is_never_asked_for_vectors_of_another_size(
    deepinfra: FakeProvider, load_search_app: Any, metadata: dict[str, Any] | None
) -> None:
    """The same on Qdrant Cloud (REST): the search's ``GET /collections/{c}`` (its metadata read) says the dense
    size too; other dimensions: BM25 only, flagged, no dense vector sent (Qdrant's 400 was a 503 on every
    search); the collection's own size: dense sent, undegraded."""
    endpoint = FakeEndpoint().start()
    try:
        cloud = CloudCollection(endpoint, metadata)
        env = {k.upper(): v for k, v in provider_env(deepinfra, roles=["EMBEDDING"]).items()}
        for dims, degraded in (("64", ["embed_mismatch"]), ("2048", ["embed_mismatch"]), ("1024", [])):
            endpoint.requests.clear()
            call = load_search_app(QDRANT_URL=endpoint.url, QDRANT_API_KEY="qdrant-test-key",
                                   EMBEDDING_DIMENSIONS=dims, **env)  # fmt: skip
            status, body = post_search(call, "restore snapshot")
            assert status == 200, body
            assert body["meta"]["degraded"] == degraded and body["results"][0]["path"] == "snapshot.md"
            sent = [r.body for r in endpoint.requests if isinstance(r.body, dict)]
            assert sent and (cloud.dense_sizes(sent) == [] if degraded else set(cloud.dense_sizes(sent)) == {1024})
    finally:
        endpoint.stop()


@pytest.mark.parametrize(
    "vectors",
    [None, [], "dense", {"size": 64, "distance": "Cosine"}, {"dense": None}, {"dense": {"size": "64"}},
     {"dense": {"size": True}}, {"dense": {"size": -64}}, {"dense": {"size": 0}}, {"dense": {"size": 64.0}},
     {"dense": {"size": None}}, {"dense": {}}],
    ids=["null", "array", "string", "unnamed", "dense null", "size text", "size bool", "negative", "zero", "float",
         "size null", "no size"],
)  # fmt: skip
def test_a_dense_size_the_collection_does_not_state_is_never_guessed(vectors: Any) -> None:
    """A collection info whose vector config does not state an integer size (another vector layout, a Qdrant
    answer of the wrong types) leaves the search as it was: no mismatch claimed, dense asked (a wrong guess would
    turn dense retrieval off for good); a metadata value named like the derived key is not taken for it."""
    assert dense_size(vectors) is None
    wanted = {"embedding_model": "m", "embedding_dimensions": 64, "embedding_input_format": "qwen3"}
    assert signature_mismatch({DENSE_SIZE: dense_size(vectors)}, wanted) is None
    assert (
        signature_mismatch({DENSE_SIZE: 1024}, wanted)
        == "the index's dense vectors have 1024 dimensions, the embedder's 64"
    )
    endpoint = FakeEndpoint().start()
    try:
        info = {"status": "green", "config": {"params": {"vectors": vectors}, "metadata": {DENSE_SIZE: 1024}}}
        endpoint.responder = lambda method, path: (200, json.dumps({"result": info, "status": "ok"}).encode(),
                                                   "application/json")  # fmt: skip
        rest = QdrantRest(endpoint.url, "kb", lambda: None, shared_client(), 2.0)
        assert rest.metadata(2.0) == {}
    finally:
        endpoint.stop()
