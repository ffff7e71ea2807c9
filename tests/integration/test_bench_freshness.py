"""``kbsearch bench freshness``'s deployed simulation at a small size: its checks hold (a burst converges to a full
sync with exactly the changed chunks embedded, replays embed nothing, random orders lose nothing)."""

from __future__ import annotations

from kbsearch_tools.bench_freshness import bench_deployed, format_freshness


def test_deployed_simulation_converges_and_loses_nothing() -> None:
    out = bench_deployed(window_s=10.0, singles=2, burst=12, orders=40, latency_ms=0.0, dims=64)
    assert out["seed"]["failed"] == 0
    for name in ("single_edit_s", "delete_s", "rename_s"):
        assert out[name]["n"] == 2 and out[name]["p50"] >= 10.0  # the batching window is part of the figure
    burst = out["burst"]
    assert burst["converged"] is True and burst["embedded_chunks"] == burst["changed_chunks"] == 12
    replay = out["duplicates_reordered"]
    assert replay["failed"] == 0 and replay["embedding_calls"] == 0
    assert out["orders"]["rounds"] == 40 and out["orders"]["lost_changes"] == 0 and out["orders"]["events"] > 40
    text = format_freshness({"load": (1.0, 1.0, 1.0), "load_after": (1.0, 1.0, 1.0), "deployed": out})
    assert "0 lost changes" in text and "converged to a full sync: True" in text
