"""``kbsearch bench peer`` on a tiny KB, through the CLI: both sides index the same notes of the KB and its copy
(hidden folders and attachments left out by both), each side's store holds what it reports, and the table comes out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kbsearch_tools.bench_peer import format_peer
from tests.conftest import KBSEARCH_CMD, subprocess_env

NOTES = {
    "en/Getting started.md": "---\ntitle: Getting started\ntags: [guide]\n---\n# Getting started\n\nInstall the app "
    "and open a vault.\n\n## Sync\n\nSync keeps the vault the same on every device.\n",
    "en/Plugins/Canvas.md": "# Canvas\n\nCanvas lays notes out on a board.\n\n## Cards\n\n"
    + " ".join(f"card{i} links a note to the board" for i in range(120))
    + "\n",
    "ru/Синхронизация.md": "# Синхронизация\n\nСинхронизация хранилища между устройствами.\n",
    "Publish.md": "Publish a vault as a website.\n\n### Themes\n\nA theme changes how the site looks.\n",
}


def _kb(root: Path) -> Path:
    kb = root / "kb"
    for path, text in NOTES.items():
        (kb / path).parent.mkdir(parents=True, exist_ok=True)
        (kb / path).write_text(text, encoding="utf-8")
    (kb / ".obsidian").mkdir()
    (kb / ".obsidian" / "workspace.md").write_text("# not a note\n", encoding="utf-8")
    (kb / "attachments").mkdir()
    (kb / "attachments" / "board.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return kb


#: One bench peer run starts a process per side, copy count and step (each paying its interpreter and imports,
#: llama-index's ~5 s among them): ~16 s for one copy count and ~30 s for two on an idle 2-core machine, 50 s with
#: 2 test workers, past the old 110 s with 4 on a busy host. Its limit is ~10x the idle figure, the test's above it.
BENCH_TIMEOUT_S = 300


def _bench(kb: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KBSEARCH_CMD, "bench", "peer", "--kb", str(kb), "--runs", "1", "--queries", "3", "--dims", "32", *extra],
        capture_output=True, text=True, env=subprocess_env(), check=False, timeout=BENCH_TIMEOUT_S,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(BENCH_TIMEOUT_S + 30)
def test_bench_peer_indexes_the_same_notes_on_both_sides(tmp_path: Path) -> None:
    proc = _bench(_kb(tmp_path), "--copies", "1,2", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    rows = {(r["copies"], r["side"]): r for r in results["rows"]}
    assert set(rows) == {(n, side) for n in (1, 2) for side in ("kbsearch", "llamaindex")}
    for (copies, _side), row in rows.items():
        assert row["notes"] == len(NOTES) * copies
        assert row["chunks"] >= row["notes"] and row["points"] == row["chunks"]
        assert row["index_s"] > 0 and row["index_peak_rss_mb"] > 0
        assert row["search_p50_ms"] > 0 and row["search_peak_rss_mb"] > 0
    for copies in (1, 2):
        ours = rows[(copies, "kbsearch")]
        assert ours["same_notes_as_peer"], (ours["notes_only_ours"], ours["notes_only_peer"])
        assert ours["skipped"] == []
        assert ours["ratio_to_peer"]["index_s"] == round(ours["index_s"] / rows[(copies, "llamaindex")]["index_s"], 2)
    # the long section is split by both, to about the same size
    assert rows[(1, "kbsearch")]["chunks"] > len(NOTES) and rows[(1, "llamaindex")]["chunks"] > len(NOTES)
    assert results["versions"]["llama-index-core"].startswith("0.14.")

    table = format_peer(results).splitlines()
    assert table[0].startswith(f"bench peer: {tmp_path / 'kb'}")
    assert sum(line.split()[:2] in (["1", "kbsearch"], ["2", "llamaindex"]) for line in table) == 2
    assert sum("ours/peer" in line and "same notes: yes" in line for line in table) == 2


@pytest.mark.slow
@pytest.mark.timeout(BENCH_TIMEOUT_S + 30)
def test_bench_peer_prints_its_table_and_refuses_a_missing_kb(tmp_path: Path) -> None:
    proc = _bench(_kb(tmp_path), "--copies", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("bench peer: ") and "medians of 1 runs" in lines[0]
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["copies", "side"])
    assert [line.split()[:2] for line in lines[header + 1 : header + 3]] == [["1", "kbsearch"], ["1", "llamaindex"]]
    assert lines[header + 3].split()[0] == "ours/peer"
    assert "same notes: yes" in lines[header + 3]
    assert "1x llamaindex run 1" in proc.stderr

    missing = _bench(tmp_path / "nowhere")
    assert missing.returncode != 0
    assert "does not exist" in missing.stderr
    no_runs = subprocess.run([*KBSEARCH_CMD, "bench", "peer", "--kb", str(tmp_path / "kb"), "--runs", "0"],
                             capture_output=True, text=True, env=subprocess_env(), check=False, timeout=60)  # fmt: skip
    assert no_runs.returncode == 2 and "argument --runs: expected an integer from 1 up, got '0'" in no_runs.stderr
