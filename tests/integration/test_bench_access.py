"""``kbsearch bench access`` on a small KB: the access change it measures is applied (half the notes restricted,
then relaxed), and its writes are one batched payload update whatever the number of notes."""

from __future__ import annotations

from kbsearch_tools.bench_access import bench_access, format_access
from tests.conftest import ROOT


def test_an_access_change_is_one_batched_write() -> None:
    results = bench_access(ROOT / "sample-kb", copies=4, runs=1)
    notes = results["notes"]
    assert notes > 0
    for kind in ("restrict", "relax"):
        row = results[kind]
        assert row["notes_changed"] == notes // 2  # copies 0 and 2 of 4
        assert row["calls"].get("set_payloads") == 1 and "set_payload" not in row["calls"], row["calls"]
        assert row["calls_total"] < 20
    assert "store calls" in format_access(results)
