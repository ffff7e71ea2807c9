"""``kbsearch bench legs`` through the CLI on a small embedded store: the searches' batches are recorded and re-run
whole, leg by leg and with the dense leg's engine settings, and the table comes out; nothing is written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kbsearch.config import Secrets
from kbsearch.indexer import run_sync
from kbsearch_tools.bench_legs import DENSE_VARIANTS, format_legs
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import KBSEARCH_CMD, ROOT, provider_settings, subprocess_env

pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform (the fallback is local mode)")


def test_legs_are_measured_on_an_existing_store(tmp_path: Path, deepinfra: FakeProvider) -> None:
    settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"), embedding_dimensions=32)
    report = run_sync(settings, Secrets(settings), source_uri=str(ROOT / "sample-kb"))
    assert report.error is None
    state = tmp_path / "q" / "edge" / "kb.state.json"
    before = state.stat().st_mtime_ns
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), EMBEDDING_DIMENSIONS="32",
                         EMBEDDING_MODEL=settings.embedding_model)  # fmt: skip
    done = subprocess.run(
        [*KBSEARCH_CMD, "bench", "legs", "--queries", "3", "--runs", "1", "--json"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert results["points"] == report.chunks_upserted and results["queries"] == 3
    assert set(results["dense_p50_ms"]) == set(DENSE_VARIANTS)
    assert {"whole batch", "dense", "bm25"} <= set(results["legs_p50_ms"])
    assert all(v > 0 for v in results["legs_p50_ms"].values()) and results["search_call_p50_ms"] > 0
    assert results["legs_per_search"]["dense"] == 1
    assert state.stat().st_mtime_ns == before  # searched, never written
    assert "dense leg alone" in format_legs(results)
