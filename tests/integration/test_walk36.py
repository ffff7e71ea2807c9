"""Round 36: two new users' hours (walk36): a colleague who writes notes and expects them searchable seconds later,
and an assistant's user connecting over MCP, through the real interfaces (`kbsearch` spawned: `index`, `serve
--watch`, `mcp`). Each test fails on main's code before its fix."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_walk32 import watched_save


def _kbsearch(
    *args: str, cwd: Path | str = ROOT, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, cwd=cwd, env=subprocess_env(**env),
                          input=stdin, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip


def skipped_reasons(tmp_path: Path, notes: dict[str, str]) -> tuple[dict[str, str], subprocess.CompletedProcess[str]]:
    """``notes`` (name: text) in a folder indexed by `kbsearch index`: (each skipped note's reason by its name, the
    run)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, text in notes.items():
        (kb / name).write_text(text, encoding="utf-8")
    run = _kbsearch("index", str(kb), QDRANT_PATH=str(tmp_path / "q"))
    assert run.returncode == 0, run.stderr
    said = {line.split(": ", 1)[0].removeprefix("  skipped "): line.split(": ", 1)[1]
            for line in run.stdout.splitlines() if line.startswith("  skipped ")}  # fmt: skip
    return said, run


def test_a_frontmatter_slip_is_named_by_what_to_fix_not_only_its_line(tmp_path: Path) -> None:
    """`kbsearch index` said `invalid YAML frontmatter at line 2` of `title: Meeting: Q3 plan` (YAML's most common
    slip, a ': ' in a value), of a list or a quote left open and of a tab alike: its writer looked at a line that
    reads right. The reason says what YAML could not read there now, in a writer's words; PyYAML's own problem
    for the rest. No word of the note's text is quoted."""
    notes = {
        "colon.md": "---\ntitle: Meeting: Q3 plan\n---\n# Meeting\n\nbody\n",
        "list.md": "---\ntags: [hr, onboarding\nstatus: draft\n---\n# List\n\nbody\n",
        "quote.md": '---\ntitle: "Unclosed quote\n---\n# Quote\n\nbody\n',
        "tab.md": "---\ntitle: Tabbed\n\tstatus: draft\n---\n# Tab\n\nbody\n",
        "apostrophe.md": "---\ntitle: 'it's mine'\n---\n# Apostrophe\n\nbody\n",
        "at.md": "---\nowner: @maria\n---\n# At\n\nbody\n",
    }
    said, run = skipped_reasons(tmp_path, notes)
    assert said == {
        "apostrophe.md": "invalid YAML frontmatter at line 2: text after a value's closing quote (inside '...' a ' is "
        'written \'\', inside "..." a " is \\")',
        "at.md": "invalid YAML frontmatter at line 2: a value cannot begin with '@' (quote the value)",
        "colon.md": "invalid YAML frontmatter at line 2: ': ' where no key can begin (quote a value that holds ': ', "
        "or indent the line as its key's)",
        "list.md": "invalid YAML frontmatter at line 3: a list's [ not closed by ] (opened at line 2)",
        "quote.md": "invalid YAML frontmatter at line 2: a quoted value not closed",
        "tab.md": "invalid YAML frontmatter at line 3: a tab (YAML indents with spaces)",
    }, run.stdout
    assert "maria" not in run.stdout and "Meeting" not in run.stdout


def test_kbsearch_serve_watch_names_a_saved_note_s_warnings(tmp_path: Path) -> None:
    """A note saved under `kbsearch serve --watch` with a date that is no date (`updated: 2026-13-45`) was indexed
    without it, its line `1 changed note(s): 1 added, ...` saying nothing, where `kbsearch index` says `warning
    dated.md: frontmatter field 'updated' dropped: ...`; two notes sharing an `id` were said nowhere by the
    watch either. The watch's line names the sync's warnings as it names its skipped notes."""
    notes = {"a.md": "---\nid: KB-1\n---\n# A\n\nalpha\n", "b.md": "---\nid: KB-1\n---\n# B\n\nbeta\n"}
    dated = "---\ntitle: Dated\nupdated: 2026-13-45\n---\n# Dated\n\nwords\n"
    _, _, initial, saved = watched_save(tmp_path, notes, "dated.md", dated)
    assert initial.endswith(
        "; 2 warnings: a.md (frontmatter id 'KB-1' is also the id of b.md); b.md (frontmatter id 'KB-1' is also the "
        "id of a.md)"
    ), initial
    assert saved.endswith(
        "; 1 warning: dated.md (frontmatter field 'updated' dropped: a value at line 3 is not a valid date or time)"
    ), saved


def test_an_assistant_s_tool_over_an_index_not_built_names_the_command_that_builds_it(tmp_path: Path) -> None:
    """README's stdio config launched before `kbsearch index` ran (or with a `QDRANT_PATH` where none was built):
    `kb_search` and `kb_list` answered `the index has not been built yet: run the indexer first`, and the assistant
    told its user to "run the indexer", which names nothing they can run, while `GET /health` of the same store
    says `(kbsearch index <your KB folder>)`. An embedded store's tool error names the command now (a deployment's,
    on Qdrant Cloud, still says "run the indexer first": there the indexer is a function)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nwombats\n")
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "kb_search", "arguments": {"query": "x"}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "kb_list", "arguments": {}}},
    ]  # fmt: skip
    done = _kbsearch("mcp", "--kb", str(kb), stdin="".join(json.dumps(m) + "\n" for m in lines), cwd=tmp_path,
                     QDRANT_PATH=str(tmp_path / "never-built"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    answers = {m["id"]: m["result"] for m in map(json.loads, done.stdout.splitlines()) if m.get("id") in (2, 3)}
    for result in answers.values():
        assert result["isError"] is True and result["content"] == [
            {"type": "text", "text": f"no index in {tmp_path.resolve() / 'never-built'} (QDRANT_PATH; default "
             ".kbsearch/qdrant in the working folder): build it with kbsearch index <your KB folder>, or run this "
             "where you did; in an assistant's config, give QDRANT_PATH (the store's absolute path, where kbsearch "
             "index ran: <that folder>/.kbsearch/qdrant) in its \"env\""}
        ], result  # fmt: skip
    # walk38: over stdio the server is the user's own process, launched by their config: the folder it looked in is
    # theirs, and what the assistant needs to tell them which setting to fix (POST /mcp names none)
    assert len(answers) == 2


def test_a_pasted_log_over_the_size_limit_says_what_its_writer_can_do(tmp_path: Path) -> None:
    """A colleague pasted a 5 MB log into a note: `skipped ops/incident.md: too large: 5400000 bytes (limit 1048576,
    MAX_NOTE_BYTES)`. The setting is the operator's; the writer, who reads the same line, was told nothing they
    could do to have the note found. The reason says it now: split it, or keep the pasted text in a file that is
    no note and link it."""
    kb = tmp_path / "kb"
    (kb / "ops").mkdir(parents=True)
    (kb / "ops" / "incident.md").write_text("# Incident\n\n" + "ERROR worker connection reset by peer\n" * 150_000)
    size = (kb / "ops" / "incident.md").stat().st_size
    run = _kbsearch("index", str(kb), QDRANT_PATH=str(tmp_path / "q"))
    assert run.returncode == 0, run.stderr
    assert (
        f"  skipped ops/incident.md: too large: {size} bytes (limit 1048576, MAX_NOTE_BYTES): split it into smaller "
        "notes, or keep what was pasted into it (a log, an export) in a file not ending in .md and link that\n"
    ) in run.stdout, run.stdout
