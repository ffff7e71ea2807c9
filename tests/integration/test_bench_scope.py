"""``kbsearch bench search --scope`` on a small KB: the copies it restricts take the scope's groups in turn (each
alone, then all together), so a caller of two groups finds chunks of each and of both; such a caller excludes
nothing, and every search is one Qdrant call. The indexer reads the scope from the caller mapping, as deployed: a
scope of two groups is one match of its set's reach token, one group one match of the group."""

from __future__ import annotations

from kbsearch_tools.bench import bench_scope, format_scope
from tests.conftest import ROOT


def test_the_restricted_copies_hold_each_of_the_scopes_groups_and_both() -> None:
    results = bench_scope(ROOT / "sample-kb", copies=6, scope="hr,security", queries=6, dims=64)
    assert results["restricted"] == {"copy-00": ["hr"], "copy-02": ["security"], "copy-04": ["hr", "security"]}
    for name in ("unrestricted", "scoped"):
        assert results[name]["qdrant_calls_per_search"] == [1]
    assert results["scoped"]["mean_hits"] == results["unrestricted"]["mean_hits"] > 0  # it may read every copy
    assert "copy-04 hr+security" in format_scope(results)
    assert results["clause"] == {"key": "reach", "match": {"value": "hr+security"}}
    one = bench_scope(ROOT / "sample-kb", copies=4, scope="public", queries=2, dims=64)
    assert one["restricted"] == {"copy-00": ["hr"], "copy-02": ["hr"]}  # a caller of no group: hr, as before
    assert one["clause"] == {"key": "access", "match": {"value": "public"}}
    hr = bench_scope(ROOT / "sample-kb", copies=2, scope="hr", queries=2, dims=64)
    assert hr["clause"] == {"key": "reach", "match": {"value": "hr"}}


def test_the_copies_can_be_restricted_to_other_groups_than_the_scopes() -> None:
    """``--restrict``: a one-group caller on a store whose copies are restricted to more groups excludes some (here the
    ``security`` copy): the selective one-match scope, measured against one that excludes nothing."""
    selective = bench_scope(ROOT / "sample-kb", copies=4, scope="hr", queries=4, dims=64, restrict="hr,security")
    assert selective["restricted"] == {"copy-00": ["hr"], "copy-02": ["security"]}
    assert selective["scope"] == ["hr", "public"]
    assert selective["clause"] == {"key": "reach", "match": {"value": "hr"}}
    assert selective["scoped"]["qdrant_calls_per_search"] == [1]
    assert 0 < selective["scoped"]["mean_hits"] <= selective["unrestricted"]["mean_hits"]
    assert "copy-02 security" in format_scope(selective)
