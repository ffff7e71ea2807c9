"""``kbsearch bench growth`` through the CLI on a tiny KB: every size and side measured (index, store size, open,
warm search p50/p95, ours' no-change command), a baseline source tree run as a side of the same rounds, and the
ratios and the table come out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from kbsearch_tools.bench_growth import format_growth
from tests.conftest import KBSEARCH_CMD, ROOT, subprocess_env
from tests.integration.test_bench_peer import _kb


def test_growth_measures_each_size_and_side_in_the_same_rounds(tmp_path: Path) -> None:
    kb = _kb(tmp_path)
    baseline = tmp_path / "baseline"  # this checkout's committed tree stands in for another revision
    baseline.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", "layers", "tools"], capture_output=True,
                             check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
    done = subprocess.run(
        [*KBSEARCH_CMD, "bench", "growth", "--kb", str(kb), "--copies", "1,2", "--runs", "1", "--peer-copies", "none",
         "--queries", "3", "--dims", "32", "--baseline", str(baseline), "--json"],
        env=subprocess_env(), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    rows = {(r["copies"], r["side"]): r for r in results["rows"]}
    assert set(rows) == {(1, "kbsearch"), (1, "baseline"), (2, "kbsearch"), (2, "baseline")}
    for (copies, _), row in rows.items():
        assert row["chunks"] > 4 * copies and row["store_mb"] > 0 and row["index_rss_mb"] > 0
        assert 0 < row["search_p50_ms"] <= row["search_p95_ms"] and row["open_s"] > 0
        assert row["no_change_s"] > 0 and len(row["no_change_runs_s"]) == 1
    assert rows[(2, "kbsearch")]["chunks"] == 2 * rows[(1, "kbsearch")]["chunks"]
    assert rows[(1, "kbsearch")]["chunks"] == rows[(1, "baseline")]["chunks"]
    assert set(rows[(1, "kbsearch")]["ratio_to_baseline"]) >= {"index_s", "search_p50_ms", "no_change_s"}
    table = format_growth(results)
    assert "/baseline" in table and "no-change" in table
