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
        # what the rest of the machine took during each index run (a run slowed by it can be told apart)
        assert len(row["index_others_cpu_runs_s"]) == len(row["index_steal_runs_s"]) == 1
        assert row["index_others_cpu_runs_s"][0] >= 0 and row["index_steal_runs_s"][0] >= 0
        assert len(row["index_cpu_runs_s"]) == 1 and abs(row["index_cpu_s"] - row["index_cpu_runs_s"][0]) < 0.01
        assert row["index_cpu_s"] > 0
        # the pages a warm search waited for the disk for (a count: the load does not change it)
        assert row["search_majflt_p50"] >= 0 and 2 * row["search_majflt_p50"] == int(2 * row["search_majflt_p50"])
    assert rows[(2, "kbsearch")]["chunks"] == 2 * rows[(1, "kbsearch")]["chunks"]
    assert rows[(1, "kbsearch")]["chunks"] == rows[(1, "baseline")]["chunks"]
    assert set(rows[(1, "kbsearch")]["ratio_to_baseline"]) >= {"index_s", "search_p50_ms", "no_change_s"}
    table = format_growth(results)
    assert "/baseline" in table and "no-change" in table and "others' CPU" in table
    assert "a warm search's major page faults, p50" in table


def test_index_peak_rss_counts_the_parsing_process(tmp_path: Path) -> None:
    """A full index of enough notes parses them in a spawned process; the index step's peak RSS is the indexing
    process's plus that process's (an upper bound), not the indexing process's alone; its CPU is reported apart
    (the indexing process's own, the processes it waited for)."""
    from kbsearch.indexer import PARSE_PROCESS_FROM
    from kbsearch_tools.bench_peer import _OURS_INDEX_CHILD, _child
    from kbsearch_tools.fakes import FakeProvider

    kb = tmp_path / "kb"
    kb.mkdir()
    for i in range(PARSE_PROCESS_FROM + 20):
        (kb / f"note {i:04d}.md").write_text(f"# Note {i}\n\nThe vault syncs note {i} to every device.\n", "utf-8")
    fake = FakeProvider("deepinfra", api_key="bench-key").start()
    try:
        values = {"qdrant_path": str(tmp_path / "q"), "qdrant_embedded": "edge", "embedding_dimensions": 32,
                  "embedding_url": fake.embeddings_url, "embedding_api_key": fake.api_key,
                  "embedding_model": FakeProvider.EMBED_MODEL["deepinfra"]}  # fmt: skip
        index = _child(_OURS_INDEX_CHILD, {"mode": "index", "settings": values, "kb": str(kb)}, subprocess_env())
    finally:
        fake.stop()
    assert index["chunks"] == PARSE_PROCESS_FROM + 20
    # the parsing process is an interpreter with kb-search's parsing imports: tens of MB, counted on top
    assert index["children_peak_rss_mb"] > 20
    assert index["peak_rss_mb"] == index["own_peak_rss_mb"] + index["children_peak_rss_mb"]
    # and its CPU, the indexing process's and apart from it the parsing process's (which read and chunked all 520)
    assert index["cpu_s"] > 0.1 and index["children_cpu_s"] > 0.1


def test_job_peak_rss_counts_the_processes_it_starts() -> None:
    """A bench job that starts a child touching 200 MB for a second: the job's peak RSS is its own plus the
    child's (read from outside, as the child ran), not its own alone; a job that starts none adds nothing. The
    job is spawned while this process holds 300 MB more than it did: the job's own figure is still its own (its
    ``ru_maxrss`` starts at the spawning process's peak, 896 MB under a pytest worker)."""
    from kbsearch_tools.bench_peer import _child

    held = bytearray(300 * 2**20)
    held[:: 2**12] = b"x" * len(held[:: 2**12])  # resident, page by page
    hold = "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    code = (
        "import json, os, subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', {'import time; ' + hold!r}], check=True)\n"
        "print(json.dumps({'peak_rss_mb': _own_peak_rss_mb()}))\n"
    )
    started = _child(code, {"mode": "index"}, subprocess_env())
    assert started["own_peak_rss_mb"] < 150  # the job itself never held the 200 MB, nor this process's 300
    assert started["children_peak_rss_mb"] >= 200
    assert started["peak_rss_mb"] == started["own_peak_rss_mb"] + started["children_peak_rss_mb"]
    # and the CPU the rest of the machine took meanwhile: the job's and its child's are not counted in it
    assert started["others_cpu_s"] >= 0 and started["steal_s"] >= 0
    alone = _child("import json\nprint(json.dumps({'peak_rss_mb': _own_peak_rss_mb()}))", {"mode": "search"},
                   subprocess_env())  # fmt: skip
    assert alone["children_peak_rss_mb"] == 0 and alone["peak_rss_mb"] == alone["own_peak_rss_mb"] < 150
    del held


def test_own_cpu_counts_the_jobs_this_process_waited_for() -> None:
    """A bench job's CPU, and that of the processes it waited for, is the bench's own (``own_cpu_s``), so it is not
    counted as the rest of the machine's; the machine's busy and stolen CPU only grow."""
    import subprocess
    import sys

    from kbsearch_tools.bench import host_cpu_s, own_cpu_s

    (busy, steal), ours = host_cpu_s(), own_cpu_s()
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    code = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {spin!r}], check=True)"
    subprocess.run([sys.executable, "-c", code], check=True)
    (busy_after, steal_after), ours_after = host_cpu_s(), own_cpu_s()
    assert ours_after - ours >= 0.3  # the grandchild's spin, through the child that waited for it
    assert busy_after >= busy and steal_after >= steal
