"""Deploy-time behaviour of the handlers, through API Gateway events: no crash at import on configuration
(/health says why it is not ready, searches answer 503 not_configured), /openapi.json names its stage, and the
metrics the alarms in template.yaml watch are the ones the search handler emits."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.local.apigw import HttpRequest, build_event
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.local.template import load_template
from tests.conftest import ROOT, copy_store


def event(method: str, path: str, body: Any = None, query: str = "", stage: str = "dev") -> dict[str, Any]:
    data = b"" if body is None else json.dumps(body).encode()
    return build_event(HttpRequest(method, path, query, [("Content-Type", "application/json")], data), path, {}, stage)


def body_of(result: dict[str, Any]) -> Any:
    return json.loads(result["body"])


def _load(monkeypatch: pytest.MonkeyPatch, function: str, **env: str) -> Any:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = ROOT / "functions" / function / "app.py"
    spec = importlib.util.spec_from_file_location(f"{function}_app_{uuid.uuid4().hex}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the import itself must not raise
    return module


def test_search_in_lambda_without_qdrant_url_is_alive_but_not_ready(load_search_app) -> None:
    call = load_search_app(AWS_LAMBDA_FUNCTION_NAME="kb-search-dev-search")
    health = call(event("GET", "/health"))
    assert health["statusCode"] == 200
    status = body_of(health)
    assert status["status"] == "ok" and status["ready"] is False
    assert status["reasons"] == ["missing required setting QDRANT_URL: set the environment variable QDRANT_URL"]
    for result in (
        call(event("POST", "/search", {"query": "restore a snapshot"})),
        call(event("GET", "/search", query="q=restore")),
    ):
        assert result["statusCode"] == 503
        assert body_of(result) == {"error": "not_configured", "message": status["reasons"][0]}
        assert result["multiValueHeaders"]["Retry-After"] == ["5"]


def test_an_invalid_setting_is_named_not_raised(load_search_app) -> None:
    call = load_search_app(EMBEDDING_DIMENSIONS="lots")
    status = body_of(call(event("GET", "/health")))
    assert status["ready"] is False and status["reasons"][0].startswith("invalid setting EMBEDDING_DIMENSIONS")
    result = call(event("POST", "/search", {"query": "x"}))
    assert result["statusCode"] == 503 and "EMBEDDING_DIMENSIONS" in body_of(result)["message"]


def test_indexer_imports_without_configuration_and_each_run_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _load(monkeypatch, "indexer", AWS_LAMBDA_FUNCTION_NAME="kb-search-dev-indexer")
    context = LambdaContext("kb-search-dev-indexer", 2048, 900)
    with pytest.raises(app.IndexerRunError, match="QDRANT_URL"):  # → OnFailure queue → alarm
        app.lambda_handler({"full": False}, context)
    app = _load(monkeypatch, "indexer", QDRANT_URL="https://xyz.cloud.qdrant.io:6333")
    with pytest.raises(app.IndexerRunError, match="missing required setting KB_SOURCE"):
        app.lambda_handler({"full": False}, context)


def test_slack_worker_imports_without_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _load(monkeypatch, "slack_worker", AWS_LAMBDA_FUNCTION_NAME="kb-search-dev-slack-worker")
    assert app.lambda_handler({}, LambdaContext("kb-search-dev-slack-worker", 1536, 60)) == {"status": "ignored"}


@pytest.fixture
def search_app(bm25_index: Path, tmp_path: Path, load_search_app):
    def load(**env: str):
        store = tmp_path / f"q-{uuid.uuid4().hex[:8]}"
        copy_store(bm25_index, store)
        return load_search_app(QDRANT_PATH=str(store), **env)

    return load


def test_openapi_names_the_stage_like_docs(search_app) -> None:
    call = search_app()
    on_api_gateway = body_of(call(event("GET", "/openapi.json", stage="prod")))
    assert on_api_gateway["servers"] == [{"url": "/prod"}]
    docs = call(event("GET", "/docs", stage="prod"))
    assert docs["statusCode"] == 200 and '"url": "/prod"' in docs["body"].replace("'", '"')
    custom_domain = event("GET", "/openapi.json", stage="prod")
    custom_domain["requestContext"]["path"] = "/openapi.json"  # a custom domain maps the stage away
    assert body_of(call(custom_domain))["servers"] == [{"url": "/"}]


def test_alarmed_metrics_are_the_ones_the_search_handler_emits(search_app, capsys: pytest.CaptureFixture[str]) -> None:
    template = load_template(ROOT / "template.yaml")
    resources = template["Resources"]
    namespace = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    service = resources["SearchFunction"]["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    call = search_app(POWERTOOLS_METRICS_NAMESPACE=namespace, POWERTOOLS_SERVICE_NAME=service)
    capsys.readouterr()
    assert call(event("POST", "/search", {"query": "restore a qdrant snapshot"}))["statusCode"] == 200
    emitted: dict[str, Any] = {}
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' in line:
            record = json.loads(line)
            for directive in record["_aws"]["CloudWatchMetrics"]:
                assert directive["Namespace"] == namespace and directive["Dimensions"] == [["service"]]
                for metric in directive["Metrics"]:
                    emitted[metric["Name"]] = record[metric["Name"]]
            assert record["service"] == service
    assert emitted["Degraded"] == [0.0]  # one 0/1 value per search: Sum / SampleCount is the degraded share
    assert len(emitted["Latency_total"]) == 1 and emitted["Latency_total"][0] > 0
    alarmed = {
        props["MetricName"]: props["Dimensions"]
        for props in (r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm")
        if props.get("Namespace") == namespace
    }
    alarmed |= {
        q["MetricStat"]["Metric"]["MetricName"]: q["MetricStat"]["Metric"]["Dimensions"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        for q in r["Properties"].get("Metrics", [])
        if "MetricStat" in q and q["MetricStat"]["Metric"]["Namespace"] == namespace
    }
    # the indexer's freshness metric: tests/integration/test_events.py checks the indexer handler emits it
    assert alarmed.pop("IndexLagSeconds") == [{"Name": "service", "Value": "kb-search"}]
    assert set(alarmed) == {"Latency_total", "Degraded"} and set(alarmed) <= set(emitted)
    assert all(dims == [{"Name": "service", "Value": service}] for dims in alarmed.values())
