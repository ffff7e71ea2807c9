"""``python -m kbsearch_tools.bench_upsert`` as a spawned process on the sample KB: both variants written and sealed
in each round, the same payloads stored by both, and bad options named without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT, subprocess_env


def test_both_variants_write_and_seal_the_same_payloads() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kbsearch_tools.bench_upsert", "--kb", str(ROOT / "sample-kb"), "--points", "150",
         "--runs", "2", "--dims", "8", "--json"],
        env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert results["points"] == 150 and results["same_payloads"] is True
    rows = {r["variant"]: r for r in results["rows"]}
    assert set(rows) == {"shared once", "whole"}
    for row in rows.values():
        assert len(row["write_cpu_runs"]) == 2 and row["write_cpu_s"] > 0 and row["seal_cpu_s"] > 0


def test_a_bad_option_is_named() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kbsearch_tools.bench_upsert", "--kb", str(ROOT / "sample-kb"), "--runs", "0"],
        env=subprocess_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "positive number" in done.stderr and "Traceback" not in done.stderr
