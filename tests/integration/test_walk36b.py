"""Round 36: links a change leaves dangling (walk36b). A note renamed (or deleted) while others link to it by
``[[target]]`` left those links naming no note (``path: null`` in the graph), and no sync said so; nor did a sync say
a saved note's link to a note that is not there. Each sync now reports them where it reports skipped notes and
warnings: `kbsearch index`'s summary (spawned), `kbsearch serve --watch`'s line (spawned), the indexer Lambda's log
and run summary on the S3-event (SQS) and the scheduled paths (moto, the embedded Qdrant). Each test fails on main's
code before the change."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.local.live import wait_until
from kbsearch_tools.local.process import serve_process
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.s3events import EventPath
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_events import PREFIX, Indexer, aws  # noqa: F401 (the moto fixture)

TARGET = "# Quokka facts\n\nQuokkas smile.\n"  # named by its file name only: its title is another name
LINKER = "---\ntitle: Linker\n---\n# Linker\n\nSee [[target]], [[Target#Smiles|them]] and [[Quokka facts]].\n"
PAY = "---\naccess: [hr]\n---\n# Pay\n\nAs in [[notes/target]].\n"


def _index(kb: Path, store: Path) -> list[str]:
    run = subprocess.run([*KBSEARCH_CMD, "index", str(kb)], capture_output=True, text=True, cwd=ROOT, check=False,
                         env=subprocess_env(QDRANT_PATH=str(store)), timeout=PROCESS_TIMEOUT_S)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return [line for line in run.stdout.splitlines() if line.startswith("  dangling")]


def _kb(tmp_path: Path, notes: dict[str, str]) -> Path:
    kb = tmp_path / "kb"
    for name, text in notes.items():
        (kb / name).parent.mkdir(parents=True, exist_ok=True)
        (kb / name).write_text(text)
    return kb


def test_kbsearch_index_names_the_links_a_rename_leaves_dangling(tmp_path: Path) -> None:
    """`notes/target.md` renamed: `kbsearch index` said `1 added, 1 deleted` and nothing of the links to it. It
    names each link that now names no note, by the note holding it (a link by the note's title still resolves, as
    the graph resolves it; a link repeated with a heading counts once); so does a title a note no longer has. The summary is the operator's: a restricted
    note holding such a link is named, as its skipped notes and warnings are."""
    kb = _kb(tmp_path, {"notes/target.md": TARGET, "ops/linker.md": LINKER, "hr/pay.md": PAY,
                        "_access.yaml": "hr/: [hr]\n"})  # fmt: skip
    store = tmp_path / "q"
    assert _index(kb, store) == []
    (kb / "notes/target.md").rename(kb / "notes/renamed.md")
    assert _index(kb, store) == [
        "  dangling links: 2 wiki-links this run left naming no note; 2 in the KB in all",
        "  dangling hr/pay.md: [[notes/target]] names no note",
        "  dangling ops/linker.md: [[target]] names no note",
    ]
    # an unchanged KB: nothing new, the two still there counted (rel37), not named again
    assert _index(kb, store) == ["  dangling links: 2 wiki-links in the KB name no note, none new this run"]
    (kb / "notes/renamed.md").rename(kb / "notes/target.md")  # renamed back: they resolve again, nothing said
    assert _index(kb, store) == []
    (kb / "notes/target.md").write_text(TARGET.replace("Quokka facts", "Quokka notes"))  # its title changed
    assert _index(kb, store) == [
        "  dangling links: 1 wiki-link this run left naming no note; 1 in the KB in all",
        "  dangling ops/linker.md: [[quokka facts]] names no note",
    ]


def test_kbsearch_index_counts_ten_thousand_dangling_links_and_names_the_first(tmp_path: Path) -> None:
    """A KB of 10,000 links to notes that are not there: the summary says how many and names the first ten (by
    note and link), the same on every run; `--json` holds the count and those ten."""
    notes = {f"n{i}.md": f"# N{i}\n\n" + " ".join(f"[[gone {i}-{j:04d}]]" for j in range(1000)) for i in range(10)}
    kb = _kb(tmp_path, notes)
    lines = _index(kb, tmp_path / "q")
    assert lines == [
        "  dangling links: 10000 wiki-links this run left naming no note (the first 10 by note); 10000 in the KB in all",
        *(f"  dangling n0.md: [[gone 0-{j:04d}]] names no note" for j in range(10)),
    ]
    (kb / "n0.md").write_text(notes["n0.md"] + "\nmore\n")
    run = subprocess.run([*KBSEARCH_CMD, "index", str(kb), "--json"], capture_output=True, text=True, cwd=ROOT,
                         env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")), timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    report = json.loads(run.stdout)
    assert report["dangling_links"] == 1000  # the links of the note it wrote
    assert report["dangling_total"] == 10_000  # and every one of the KB's (rel37)
    assert report["dangling"] == [{"path": "n0.md", "link": f"gone 0-{j:04d}"} for j in range(10)]


def test_kbsearch_serve_watch_names_the_links_a_save_or_a_rename_leaves_dangling(tmp_path: Path) -> None:
    """Under `kbsearch serve --watch`, a saved note's link to no note and a renamed note's links were said by no
    line. The sync's line names them as it names skipped notes (the first three, then how many more), and the
    indexer's JSON record of the same is left out, as its `note skipped` records are."""
    kb = _kb(tmp_path, {"notes/target.md": TARGET, "ops/linker.md": LINKER})
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"))
    with serve_process(env, cwd=ROOT, args=("--watch", str(kb))) as served:
        assert wait_until(lambda: "initial sync:" in served.text(), 60), served.text()
        (kb / "new.md").write_text("# New\n\nSee [[Nowhere]] and [[target]].\n")
        assert wait_until(lambda: "1 changed note(s)" in served.text(), 30), served.text()
        (kb / "notes/target.md").rename(kb / "notes/moved.md")
        assert wait_until(lambda: "2 changed note(s)" in served.text(), 30), served.text()
        output = served.text()
    assert "name no note" not in output, output  # the indexer's log record of them: the line says them, once
    lines = output.splitlines()
    initial = next(line for line in lines if "initial sync:" in line)
    assert "dangling" not in initial, initial
    saved = next(line for line in lines if "1 changed note(s)" in line)
    assert saved.endswith("; 1 dangling link: new.md ([[nowhere]] names no note)"), saved
    renamed = next(line for line in lines if "2 changed note(s)" in line)
    assert renamed.endswith(
        "; 2 dangling links: new.md ([[target]] names no note); ops/linker.md ([[target]] names no note)"
    ), renamed


def _logged(caplog: pytest.LogCaptureFixture, message: str) -> dict[str, Any]:
    """The extras of the last log record with ``message`` (the handler's JSON line holds them as keys)."""
    record = [r for r in caplog.records if r.getMessage() == message][-1]
    return {k: v for k, v in vars(record).items() if k in ("dangling_links", "dangling")}


def test_the_indexer_lambda_reports_the_links_a_deletion_leaves_dangling(
    aws: EventPath,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The indexer function: an S3 event batch that deletes a note others link to, and a scheduled run that finds
    another gone, each say which links now name no note, in the run's log record (and metric) and, for the
    scheduled run, the summary it returns."""
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "KbSearch")
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}notes/target.md", TARGET.encode())
    aws.put(f"{PREFIX}ops/linker.md", LINKER.encode())
    aws.put(f"{PREFIX}ops/other.md", b"# Other\n\nSee [[ops/other-target]].\n")
    aws.put(f"{PREFIX}ops/other-target.md", b"# Other target\n\nhere\n")
    assert indexer(aws.receive()) == []
    capsys.readouterr()
    caplog.clear()
    aws.delete(f"{PREFIX}notes/target.md")
    assert indexer(aws.receive()) == []
    out = capsys.readouterr().out
    batch = _logged(caplog, "event batch applied")
    assert batch["dangling_links"] == 2, batch  # its file name and its title (the H1) named it
    assert batch["dangling"] == [{"path": "ops/linker.md", "link": "quokka facts"},
                                 {"path": "ops/linker.md", "link": "target"}]  # fmt: skip
    assert any('"dangling_links"' in line and '"_aws"' in line for line in out.splitlines()), out
    aws.delete(f"{PREFIX}ops/other-target.md")
    aws.receive()  # its event never delivered: the scheduled run finds the deletion itself
    report = indexer.app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 900))
    assert report["deleted"] == 1 and report["dangling_links"] == 1, report
    assert report["dangling"] == [{"path": "ops/other.md", "link": "ops/other-target"}]
    assert _logged(caplog, "sync finished")["dangling"] == report["dangling"]
