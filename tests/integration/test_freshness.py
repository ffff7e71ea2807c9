"""Freshness you can see: ``/health`` reports the last successful sync and its age, from the collection's
metadata, without a round trip per probe."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.conftest import ROOT


def event(method: str, path: str, query: str = "") -> dict[str, Any]:
    return build_event(HttpRequest(method, path, query, [], b""), path, {}, "dev")


def test_health_reports_the_last_sync_and_its_age(tmp_path: Path, load_search_app: Callable[..., Any]) -> None:
    store = tmp_path / "q"
    settings = Settings(qdrant_path=str(store))
    assert run_sync(settings, Secrets(settings), source_uri=str(ROOT / "sample-kb")).error is None
    call = load_search_app(QDRANT_PATH=str(store))
    health = json.loads(call(event("GET", "/health"))["body"])
    assert health["status"] == "ok" and health["last_sync"] is None  # /health alone never builds the search path
    assert call(event("GET", "/search", "q=restore+snapshot"))["statusCode"] == 200
    health = json.loads(call(event("GET", "/health"))["body"])
    last = health["last_sync"]
    assert last["kind"] == "reconcile" and 0 <= last["age_s"] < 300
    assert dt.datetime.fromisoformat(last["at"]) <= dt.datetime.now(dt.UTC)
    service = call.module.api.container.search()
    reads: list[float] = []
    retriever = service.retriever
    original = retriever.metadata

    def counting(timeout_s: float = 10.0) -> dict[str, Any]:
        reads.append(time.monotonic())
        return original(timeout_s)

    retriever.metadata = counting  # count the store reads behind the probes (the probe itself runs unpatched)
    started = time.monotonic()
    for _ in range(20):
        assert json.loads(call(event("GET", "/health"))["body"])["last_sync"]["at"] == last["at"]
    elapsed = time.monotonic() - started
    assert len(reads) <= 1 + elapsed / 2  # at most one read per 2 s on the embedded store, not one per probe
