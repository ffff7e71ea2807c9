"""``python -m kbsearch_tools.bench_seal`` as a spawned process on the sample KB: one seal per variant, the payload
indexes each variant names, and the graph keys split into the three fields they were before, on a note's first chunk
only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kbsearch_tools.bench_seal import split
from tests.conftest import ROOT, subprocess_env


def test_each_variant_seals_the_points_with_its_payload_indexes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kbsearch_tools.bench_seal", "--kb", str(ROOT / "sample-kb"), "--points", "120",
         "--runs", "2", "--dims", "8", "--variant", "all", "--variant", "as created", "--variant", "none", "--variant", "only absent",
         "--variant", "graph split", "--variant", "all but tags,type", "--drop", "tags,type", "--json"],
        env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert results["points"] == 120 and 0 < results["first_chunks"] < 120
    rows = {r["variant"]: r for r in results["rows"]}
    assert {label: r["indexes"] for label, r in rows.items()} == {
        "all": 11, "as created": 11, "none": 0, "only absent": 1, "graph split": 13, "all but tags,type": 9,
    }  # fmt: skip
    for row in rows.values():
        assert len(row["optimize_cpu_runs"]) == 2 and row["optimize_cpu_s"] > 0 and row["upsert_cpu_s"] > 0


def test_an_unknown_field_to_drop_is_named() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kbsearch_tools.bench_seal", "--kb", str(ROOT / "sample-kb"), "--points", "10",
         "--drop", "tags,nope"],
        env=subprocess_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "nope" in done.stderr and "Traceback" not in done.stderr


def test_graph_keys_split_each_key_by_its_prefix() -> None:
    first = {"path": "a.md", "chunk_index": 0, "graph_keys": ["p:a", "p:x/a", "n:alpha", "n:p:odd", "l:b"]}
    assert split(first) == {"path": "a.md", "chunk_index": 0, "path_keys": ["a", "x/a"], "name_keys": ["alpha", "p:odd"],
                            "link_keys": ["b"]}  # fmt: skip
    later = {"path": "a.md", "chunk_index": 1}
    assert split(later) == later


def test_a_store_given_other_payload_indexes_creates_those(tmp_path: Path) -> None:
    """What the tool measures with: an embedded store made with another set of payload indexes creates that set
    (and the default one, :data:`PAYLOAD_INDEXES` but the :data:`FIRST_VALUE_INDEXES`, which come with a value)."""
    from kbsearch.qdrant.embedded import EdgeStore
    from kbsearch.qdrant.query import FIRST_VALUE_INDEXES, PAYLOAD_INDEXES

    created = {}
    for name, wanted in (("some", {"path": "keyword", "chunk_index": "integer"}), ("default", None)):
        store = EdgeStore(tmp_path / name, "c", 8, payload_indexes=wanted)
        try:
            assert store.ensure_collection()
            created[name] = set(store.shard.info().payload_schema or {})
        finally:
            store.close()
    assert created == {"some": {"path", "chunk_index"}, "default": set(PAYLOAD_INDEXES) - FIRST_VALUE_INDEXES}
