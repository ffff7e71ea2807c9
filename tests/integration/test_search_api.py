"""/search through the real handler with API Gateway REST events (in-process) and over HTTP (kbsearch serve)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
from kbsearch.schemas import SearchResponse
from kbsearch_tools.fakes import FakeProvider, provider_env
from kbsearch_tools.local.apigw import HttpRequest, build_event
from kbsearch_tools.local.process import serve_process
from tests.conftest import ROOT, copy_store, subprocess_env

Handler = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture
def handler(bm25_index: Path, tmp_path: Path, load_search_app) -> Callable[..., Handler]:
    def load(**env: str) -> Handler:
        store = tmp_path / f"q-{uuid.uuid4().hex[:8]}"
        copy_store(bm25_index, store)
        return load_search_app(QDRANT_PATH=str(store), **env)

    return load


def event(method: str, path: str, body: Any = None, query: str = "", raw: bytes | None = None) -> dict[str, Any]:
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return build_event(HttpRequest(method, path, query, [("Content-Type", "application/json")], data), path, {}, "dev")


def body_of(result: dict[str, Any]) -> Any:
    return json.loads(result["body"])


def test_post_search_answers_with_the_contract(handler) -> None:
    call = handler()
    result = call(event("POST", "/search", {"query": "  restore a qdrant snapshot  ", "top_k": 3}))
    assert result["statusCode"] == 200
    answer = SearchResponse.model_validate(body_of(result))
    assert answer.query == "restore a qdrant snapshot" and len(answer.results) == 3
    assert answer.meta.request_id  # API Gateway's request id
    (timing,) = result["multiValueHeaders"]["Server-Timing"]
    assert [part.split(";")[0] for part in timing.split(", ")] == ["expand", "embed", "retrieve", "rerank", "total"]


def test_get_search_with_repeated_tags(handler) -> None:
    call = handler()
    result = call(event("GET", "/search", query="q=runbook&top_k=10&tags=security&tags=qdrant&rerank=false"))
    assert result["statusCode"] == 200
    hits = body_of(result)["results"]
    assert hits and all({"security", "qdrant"} & set(h["tags"]) for h in hits)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"query": ""}, ["body", "query"]),
        ({"query": "   "}, ["body", "query"]),
        ({"query": "x" * 1001}, ["body", "query"]),
        ({"query": "x", "top_k": 0}, ["body", "top_k"]),
        ({"query": "x", "top_k": 21}, ["body", "top_k"]),
        ({"query": "x", "top_k": "many"}, ["body", "top_k"]),
        ({"query": "x", "colour": "blue"}, ["body", "colour"]),
        ({"query": "x", "filters": {"owner": "me"}}, ["body", "filters", "owner"]),
        ({"query": "x", "filters": {"updated_after": "yesterday"}}, ["body", "filters", "updated_after"]),
        ({"query": 42}, ["body", "query"]),
        ({}, ["body", "query"]),
        ([1, 2], ["body"]),
    ],
)
def test_bad_bodies_get_422_with_field_errors(handler, body: Any, loc: list[Any]) -> None:
    result = handler()(event("POST", "/search", body))
    assert result["statusCode"] == 422
    answer = body_of(result)
    assert answer["error"] == "validation_error"
    assert any(d["loc"][: len(loc)] == loc for d in answer["detail"]), answer["detail"]
    assert all(d["msg"] for d in answer["detail"])


def test_not_json_and_oversized(handler) -> None:
    call = handler()
    not_json = call(event("POST", "/search", raw=b"{not json"))
    assert not_json["statusCode"] == 400 and body_of(not_json)["error"] == "invalid_json"
    big = call(event("POST", "/search", {"query": "x" * 70_000}))
    assert big["statusCode"] == 413 and body_of(big)["error"] == "payload_too_large"


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ("", ["query", "q"]),
        ("q=x&top_k=abc", ["query", "top_k"]),
        ("q=x&updated_after=soon", ["query", "updated_after"]),
    ],
)
def test_bad_query_strings_get_422(handler, query: str, loc: list[str]) -> None:
    result = handler()(event("GET", "/search", query=query))
    assert result["statusCode"] == 422
    assert any(d["loc"][: len(loc)] == loc for d in body_of(result)["detail"])


def test_qdrant_down_is_503_with_retry_after(handler) -> None:
    dead = FakeProvider("deepinfra").start()
    url = dead.base
    dead.stop()
    result = handler(QDRANT_URL=url, QDRANT_TIMEOUT_S="1")(event("POST", "/search", {"query": "x"}))
    assert result["statusCode"] == 503
    assert result["multiValueHeaders"]["Retry-After"] == ["5"]
    answer = body_of(result)
    assert answer["error"] == "index_unavailable" and "Traceback" not in result["body"]


def test_missing_collection_is_503(handler) -> None:
    result = handler(QDRANT_COLLECTION="nothing-here")(event("POST", "/search", {"query": "x"}))
    assert result["statusCode"] == 503 and "run the indexer" in body_of(result)["message"]


def test_openapi_and_docs(handler) -> None:
    call = handler()
    schema = body_of(call(event("GET", "/openapi.json")))
    assert {"get", "post"} <= set(schema["paths"]["/search"])
    assert "SearchResponse" in json.dumps(schema) and "SearchRequest" in json.dumps(schema)
    docs = call(event("GET", "/docs"))
    assert docs["statusCode"] == 200 and docs["multiValueHeaders"]["Content-Type"] == ["text/html"]
    assert "swagger" in docs["body"].lower() and "<\\/" not in json.dumps(schema)
    # the page shows the completed document /openapi.json serves (the API key scheme, /mcp), inlined
    embedded = docs["body"].split("spec: ", 1)[1]
    assert '"/mcp"' in embedded and '"ApiKey"' in embedded and '"ApiKey"' in json.dumps(schema)
    as_json = call(event("GET", "/docs", query="format=json"))  # the address the page gives its document
    assert body_of(as_json) == schema


def test_search_over_http_with_providers_end_to_end(bm25_index: Path, tmp_path: Path) -> None:
    """kbsearch serve + fake providers: the full pipeline over real HTTP, API keys on."""
    deepinfra = FakeProvider("deepinfra", api_key="di-key").start()
    fireworks = FakeProvider("fireworks", api_key="fw-key").start()
    store = tmp_path / "q"
    settings = Settings.model_validate(
        {"qdrant_path": str(store), "embedding_url": deepinfra.embeddings_url, "embedding_api_key": "di-key"}
    )
    run_sync(settings, Secrets(settings), source_uri=str(ROOT / "sample-kb"))
    env = subprocess_env(QDRANT_PATH=str(store), KB_LOCAL_API_KEYS="k1", **provider_env(deepinfra, fireworks))
    server = serve_process(env, cwd=ROOT)
    served = server.__enter__()
    try:
        base = served.base_url
        r = httpx.post(f"{base}/search", json={"query": "reranker outage"}, headers={"x-api-key": "k1"}, timeout=30)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["meta"]["reranker"] == "deepinfra" and answer["meta"]["embedder"] == "deepinfra"
        assert answer["meta"]["degraded"] == [] and len(answer["meta"]["variants"]) == 4
        assert "Server-Timing" in r.headers
        deepinfra.fail("rerank", status=503)
        r = httpx.get(f"{base}/search", params={"q": "reranker outage"}, headers={"x-api-key": "k1"}, timeout=30)
        assert r.json()["meta"]["reranker"] == "fireworks" and "rerank_fallback" in r.json()["meta"]["degraded"]
        assert httpx.get(f"{base}/search", params={"q": "x"}, timeout=10).status_code == 403
        for secret in ("di-key", "fw-key"):
            assert secret not in r.text
    finally:
        server.__exit__(None, None, None)
        deepinfra.stop()
        fireworks.stop()
    for secret in ("di-key", "fw-key"):
        assert secret not in served.text()  # nothing in the server's logs either
