"""Shared fixtures: a clean environment per test (no shell or .env leakage), repo paths, AWS via moto."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import SECRET_NAMES, Settings
from kbsearch.fakes import FakeProvider

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VAULT = SHARED / "kb" / "obsidian-help"
KBSEARCH_CMD = [sys.executable, "-m", "kbsearch.cli"]

_SETTING_VARS = {name.upper() for name in Settings.model_fields} | {f"{n}_PARAM" for n in SECRET_NAMES}
_LAMBDA_VARS = {
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_SAM_LOCAL",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "_HANDLER",
    "KB_LOCAL_API_KEYS",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test starts without kb-search settings, Lambda markers or real AWS credentials."""
    for name in list(os.environ):
        if name in _SETTING_VARS or name in _LAMBDA_VARS:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "KbSearchTest")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    # Settings also read ./.env: run each test from an empty folder unless it chooses otherwise.
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    yield


@pytest.fixture
def repo_root() -> Path:
    return ROOT


def subprocess_env(**extra: str) -> dict[str, str]:
    """The current (cleaned) environment plus ``extra``, for child processes."""
    env = {k: v for k, v in os.environ.items() if k not in _SETTING_VARS and k not in _LAMBDA_VARS}
    env.update(extra)
    return env


@pytest.fixture
def deepinfra() -> Iterator[FakeProvider]:
    fake = FakeProvider("deepinfra", api_key="di-test-key").start()
    yield fake
    fake.stop()


@pytest.fixture
def fireworks() -> Iterator[FakeProvider]:
    fake = FakeProvider("fireworks", api_key="fw-test-key").start()
    yield fake
    fake.stop()


def provider_settings(
    deepinfra: FakeProvider | None, fireworks: FakeProvider | None = None, **extra: object
) -> Settings:
    """Settings pointing at the loopback fakes (64-dim embeddings keep the tests quick)."""
    values: dict[str, object] = {"embedding_dimensions": 64, "provider_retries": 1}
    if deepinfra is not None:
        values |= {
            "embedding_url": deepinfra.embeddings_url,
            "embedding_api_key": deepinfra.api_key,
            "reranker_url": deepinfra.rerank_url,
            "reranker_api_key": deepinfra.api_key,
            "expansion_url": deepinfra.chat_url,
            "expansion_api_key": deepinfra.api_key,
        }
    if fireworks is not None:
        values |= {
            "embedding_fallback_url": fireworks.embeddings_url,
            "embedding_fallback_api_key": fireworks.api_key,
            "reranker_fallback_url": fireworks.rerank_url,
            "reranker_fallback_api_key": fireworks.api_key,
        }
    values |= extra
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def load_search_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Callable[[dict[str, Any]], Any]]]:
    """Imports functions/search/app.py afresh with the given environment, like a new container, and returns
    a function that invokes its handler with an event and a Lambda context."""
    import importlib.util
    import uuid

    from kbsearch.local.runtime import LambdaContext

    loaded: list[Any] = []

    def load(**env: str) -> Callable[[dict[str, Any]], Any]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.syspath_prepend(str(ROOT / "functions" / "search"))
        name = f"search_app_{uuid.uuid4().hex}"
        spec = importlib.util.spec_from_file_location(name, ROOT / "functions/search/app.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        loaded.append(module)

        def call(event: dict[str, Any]) -> Any:
            return module.lambda_handler(event, LambdaContext("kb-search-test-search", 1536, 28))

        call.module = module  # type: ignore[attr-defined]
        return call

    yield load
    for module in loaded:
        if module._service is not None:
            module._service.close()
