"""Schemathesis against the app's own OpenAPI document, through `kbsearch serve` on loopback (providers faked):
generated cases over /search (GET, POST), /mcp and /slack/command; no 5xx, every answer as documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from kbsearch.config import Secrets
from kbsearch.fakes import FakeProvider
from kbsearch.indexer import run_sync
from kbsearch.local.process import serve_process
from tests.conftest import ROOT, provider_settings, subprocess_env

API_KEY = "fuzz-api-key"
EXAMPLES = 260  # per operation: 4 operations (GET /mcp aside) → 1,040 generated cases


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    deepinfra = FakeProvider("deepinfra", api_key="di-test-key").start()
    fireworks = FakeProvider("fireworks", api_key="fw-test-key").start()
    store = tmp_path_factory.mktemp("fuzz") / "q"
    settings_ = provider_settings(deepinfra, fireworks, qdrant_path=str(store))
    run_sync(settings_, Secrets(settings_), source_uri=str(ROOT / "sample-kb"))
    env = subprocess_env(
        QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"), KB_LOCAL_API_KEYS=API_KEY,
        EMBEDDING_DIMENSIONS="64", SLACK_SIGNING_SECRET="test-signing-secret", SLACK_RESPONSE_HOSTS="127.0.0.1",
        EMBEDDING_URL=deepinfra.embeddings_url, EMBEDDING_API_KEY=deepinfra.api_key,
        EMBEDDING_FALLBACK_URL=fireworks.embeddings_url, EMBEDDING_FALLBACK_API_KEY=fireworks.api_key,
        RERANKER_URL=deepinfra.rerank_url, RERANKER_API_KEY=deepinfra.api_key,
        RERANKER_FALLBACK_URL=fireworks.rerank_url, RERANKER_FALLBACK_API_KEY=fireworks.api_key,
        EXPANSION_URL=deepinfra.chat_url, EXPANSION_API_KEY=deepinfra.api_key,
        POWERTOOLS_LOG_LEVEL="WARNING",
    )  # fmt: skip
    try:
        with serve_process(env, cwd=ROOT) as served:
            yield served.base_url
    finally:
        deepinfra.stop()
        fireworks.stop()


@pytest.fixture(scope="module")
def api_schema(server: str) -> schemathesis.BaseSchema:
    document = httpx.get(f"{server}/openapi.json", headers={"x-api-key": API_KEY}, timeout=10).json()
    return schemathesis.openapi.from_dict(document).include(path_regex="^/(search|mcp|slack/command)$")


def test_generated_requests(api_schema: schemathesis.BaseSchema, server: str) -> None:
    """Each operation gets EXAMPLES generated cases (schemathesis' strategies driven by Hypothesis directly:
    its pytest plugin does not run under this pytest)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]
    labels = sorted(op.label for op in operations)
    assert labels == ["GET /mcp", "GET /search", "POST /mcp", "POST /search", "POST /slack/command"], labels
    counted: dict[str, int] = {}
    for operation in operations:
        label = operation.label

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  phases=(Phase.explicit, Phase.generate))  # fmt: skip
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=server, headers={"x-api-key": API_KEY}, timeout=30)
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance, content_type_conformance]
            )
            assert "Traceback" not in response.text
            counted[label] = counted.get(label, 0) + 1  # noqa: B023 - check() runs inside this iteration

        check()
    total = sum(counted[label] for label in counted if label != "GET /mcp")
    assert total >= 1000, counted


def test_schema_documents_every_route(api_schema: schemathesis.BaseSchema, server: str) -> None:
    document = httpx.get(f"{server}/openapi.json", headers={"x-api-key": API_KEY}, timeout=10).json()
    assert {"/search", "/mcp", "/slack/command", "/health"} <= set(document["paths"])
    assert document["paths"]["/search"]["post"]["security"] == [{"ApiKey": []}]
    assert "security" not in document["paths"]["/slack/command"]["post"]
    assert Path(ROOT / "template.yaml").read_text().count("Path: /mcp") == 2  # POST and GET routes exist
