"""``kbsearch bench search --fusions`` through the CLI: one store searched with each fusion query by query, each
fusion's figures and the paired difference come out; a list that is not two or more known fusions is refused."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import KBSEARCH_CMD, subprocess_env

pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform (the fallback is local mode)")


def test_fusions_are_compared_on_one_store() -> None:
    done = subprocess.run(
        [*KBSEARCH_CMD, "bench", "search", "--fusions", "adaptive,rrf", "--chunks", "200", "--queries", "4",
         "--dims", "32", "--json"],
        env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert results["fusions"] == ["adaptive", "rrf"] and results["indexed_chunks"] == 200
    for fusion in ("adaptive", "rrf"):
        assert results[fusion]["retrieve_ms"]["p50"] > 0 and results[fusion]["total_ms"]["p50"] > 0
    assert set(results["rrf"]["minus_first_p50"]) == {"total", "retrieve"} and "minus_first_p50" not in results[
        "adaptive"]  # fmt: skip


@pytest.mark.parametrize("fusions", ["adaptive", "adaptive,adaptive", "adaptive,rff", ","])
def test_a_fusion_list_that_is_not_two_known_ones_is_refused(fusions: str) -> None:
    done = subprocess.run([*KBSEARCH_CMD, "bench", "search", "--fusions", fusions], env=subprocess_env(),
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2 and "--fusions: two or more of adaptive, rrf, dbsf" in done.stderr
    assert "Traceback" not in done.stderr
