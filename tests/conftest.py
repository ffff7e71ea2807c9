"""Shared fixtures: a clean environment per test (no shell or .env leakage), repo paths, AWS via moto."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kbsearch.config import SECRET_NAMES, Settings

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
