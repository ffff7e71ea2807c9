"""Round 25, the adversarial pass (adv25): notes that stalled a sync's parser, frontmatter values of a type the
field cannot hold, and what else the round found. Through the indexer service on a folder, the search handler's
API Gateway events on the embedded store, and ``kbsearch`` spawned as a process. Each test fails on the tree before
its fix (main at ``ede5e03``)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Settings
from kbsearch.notes import parse_note
from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, subprocess_env
from tests.integration.test_adv24b import get_note, search
from tests.integration.test_hostile_notes import mcp_event
from tests.integration.test_notes_graph import sync, write_kb


def _served(tmp_path: Path, load_search_app: Any, notes: dict[str, str]) -> tuple[Any, Any]:
    """``notes`` written to a folder, indexed (BM25 only), and the search handler serving them; (app, report)."""
    folder = write_kb(tmp_path / "kb", notes)
    store = tmp_path / "q"
    settings = Settings(qdrant_path=str(store), qdrant_url="", embedding_api_key=None, embedding_api_key_param="")
    report = sync(settings, folder)
    return load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(folder)), report


# -- a line of backtick runs --------------------------------------------------------------------------------------


def _runs(n: int) -> str:
    """``n`` backticks and a letter, then n-1 and a letter, ... down to one: no run is followed by one of its
    length, so no run opens a code span; then a wiki-link, which is prose."""
    return "".join("`" * k + "a" for k in range(n, 0, -1)) + " [[Target]]"


def _parse_cpu(body: str) -> float:
    """The best of three runs' CPU time of parsing a note of ``body``."""
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()
        parse_note("runs.md", ("# Runs\n" + body + "\n").encode())
        best = min(best, time.thread_time() - started)
    return best


def test_a_line_of_backtick_runs_of_every_length_is_parsed_in_linear_time() -> None:
    """Inline code was found by a regex pairing a run with the next run it begins: a line of runs of every length
    (``k`` backticks then a letter, k = n..1) made it try each run against every later one, and each length of each:
    80 KB took 1 s, a 500 KB note 33 s of one core, and a sync waited on its parser for as long (a note must never
    stall a sync). Judged by how the work grows, not by a clock: a line 16 times as long (n x 4) must cost less than
    64 times the CPU (linear: ~16x; the regex: ~200x). And the link after the runs is a link of the graph."""
    small, large = _parse_cpu(_runs(150)), _parse_cpu(_runs(600))
    assert large < 64 * max(small, 1e-4), (small, large)
    assert parse_note("runs.md", _runs(600).encode()).links == ["Target"]


def test_a_code_span_is_closed_only_by_a_run_of_its_length() -> None:
    """CommonMark's code spans: a run of backticks up to the next run of exactly as many; a wiki-link inside one
    is code, one outside is a link. (The regex closed a run at the start of any longer run, and made a span of a
    run's tail: the same links here, kept so by this test.)"""
    note = parse_note("spans.md", b"# S\n``a ` [[In]] `` [[Out]] `x` [[Out2]] ``` never closed [[Out3]]\n")
    assert note.links == ["Out", "Out2", "Out3"]


# -- a Markdown link to a note named with parentheses ---------------------------------------------------------------


def test_a_markdown_link_to_a_note_named_with_parentheses_is_a_link(tmp_path: Path, load_search_app: Any) -> None:
    """``[Meeting](Meeting%20(2024).md)``: Obsidian writes a link to a note named with parentheses so (its spaces
    encoded, its parentheses not), and CommonMark reads one level of balanced parentheses as part of the target; a
    title may be in ``'`` or in parentheses too. Each was no link: the note's outgoing links empty, the target's
    backlinks none. A path out of the KB and a URL stay no links; the other parsing is linear (the shapes above)."""
    notes = {
        "Meeting (2024).md": "# Meeting\n\nminutes\n",
        "ops/Plan (v2).md": "# Plan\n\n## Steps\n\nsteps\n",
        "Alpha.md": "# Alpha\n\nalpha\n",
        "Beta.md": "# Beta\n\nbeta\n",
        "notes/Links.md": "# Links\n\nSee [the meeting](../Meeting%20(2024).md), [the plan](../ops/Plan%20(v2).md#Steps),"
        " [alpha](../Alpha.md 'Alpha'), [beta](../Beta.md (Beta)).\n\nNot notes: [wiki](https://e.org/a_(b)), "
        "[out](../../Out%20(1).md).\n",
    }
    app, report = _served(tmp_path, load_search_app, notes)
    assert report.skipped == [], report.skipped
    links = get_note(app, "notes/Links.md")["links"]["outgoing"]
    assert [link["path"] for link in links] == ["Meeting (2024).md", "ops/Plan (v2).md", "Alpha.md", "Beta.md"], links
    for path in ("Meeting (2024).md", "ops/Plan (v2).md", "Alpha.md", "Beta.md"):
        assert [b["path"] for b in get_note(app, path)["links"]["backlinks"]] == ["notes/Links.md"], path


# -- a one-text field holding a list or a mapping -----------------------------------------------------------------


def test_a_text_field_holding_a_list_or_a_mapping_is_not_used_and_said(tmp_path: Path, load_search_app: Any) -> None:
    """``title: [Restore, Rollback]``, ``id:`` over a ``- KB-7`` line, ``type: [runbook, guide]``, ``status: {a:
    1}``, ``summary`` a list, ``tags: [[ops, db], backup]`` (Obsidian's property editor writes a property made a list
    so): each was read as its Python spelling, ``['Restore', 'Rollback']`` the title of every hit and the head of
    every chunk's heading path, ``['KB-7']`` the hit's ``doc_id``, ``['runbook', 'guide']`` a type and ``['ops',
    'db']`` a tag no filter can name, and nothing was said. Now none of them is used (the title is the note's H1,
    the id its path) and the sync's report says each, once."""
    note = ("---\ntitle: [Restore, Rollback]\nid:\n  - KB-7\ntype: [runbook, guide]\nstatus: {a: 1}\n"
            "summary: [one, two]\ntags: [[ops, db], backup]\naliases: {a: 1}\n---\n# Restore the database\n\nSteps to restore "
            "the quokka database from a snapshot.\n")  # fmt: skip
    app, report = _served(tmp_path, load_search_app, {"ops/restore.md": note})
    said = [w["reason"] for w in report.warnings if w["path"] == "ops/restore.md"]
    for field in ("title", "id", "type", "status", "summary"):
        assert sum(f"field '{field}' not used" in reason for reason in said) == 1, said
    assert any("'tags': a list is no tag" in reason for reason in said), said
    assert any("'aliases': a mapping is no alias" in reason for reason in said), said
    [hit] = search(app, "quokka database snapshot")
    assert hit["title"] == "Restore the database", hit
    assert hit["doc_id"] == "ops/restore.md", hit
    assert hit["tags"] == ["backup"] and hit.get("type") is None and hit.get("status") is None, hit
    assert "[" not in json.dumps(hit.get("heading", "")), hit
    body = get_note(app, "ops/restore.md")
    assert body["title"] == "Restore the database", body
    event = build_event(HttpRequest("GET", "/notes", "", [], b""), "/notes", {}, "dev")
    listed = json.loads(app(event)["body"])
    assert "['runbook', 'guide']" not in json.dumps(listed, ensure_ascii=False), listed


# -- an id that is another note's path ----------------------------------------------------------------------------


def test_an_id_that_is_another_notes_path_is_said_of_the_note_declaring_it(
    tmp_path: Path, load_search_app: Any
) -> None:
    """``id: ops/b.md`` in ``a.md``, beside ``ops/b.md`` declaring no id: a note's ``doc_id`` is its id, else its
    path, so both hits carry ``ops/b.md``. The report told *both* notes ``frontmatter id 'ops/b.md' is also the id
    of ...``, ``ops/b.md`` (which declares nothing) among them, on every run. Now the note declaring it is told, once
    a run, what it shares; the other is told nothing. A note whose id is its own path shares nothing."""
    notes = {"a.md": "---\nid: ops/b.md\n---\n# Alpha\n\nzebra crossing\n", "ops/b.md": "# Beta\n\nzebra stripes\n",
             "c.md": "---\nid: c.md\n---\n# Gamma\n\nzebra\n"}  # fmt: skip
    app, report = _served(tmp_path, load_search_app, notes)
    expected = [{"path": "a.md", "reason": "frontmatter id 'ops/b.md' is the path of the note ops/b.md: both notes' "
                 "hits carry the doc_id 'ops/b.md'"}]  # fmt: skip
    assert report.warnings == expected
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    assert sync(settings, tmp_path / "kb").warnings == expected  # unchanged notes too
    assert sorted(hit["doc_id"] for hit in search(app, "zebra")) == ["c.md", "ops/b.md", "ops/b.md"]


# -- a note named by what is no path ------------------------------------------------------------------------------


def _bad_path(app: Any, name: str) -> tuple[str, str]:
    """``GET /notes/{name}``'s 400 message and ``kb_get_note``'s error text, for ``name``."""
    event = build_event(HttpRequest("GET", "/notes/" + name, "", [], b""), "/notes/{path+}", {"path": name}, "dev")
    answer = app(event)
    assert answer["statusCode"] == 400, answer
    tool = json.loads(app(mcp_event("kb_get_note", {"path": name}))["body"])["result"]
    assert tool["isError"] is True, tool
    return json.loads(answer["body"])["message"], tool["content"][0]["text"]


def _both(said: str) -> tuple[str, str]:
    """The same problem as ``GET /notes/{name}`` says it (its search is ``GET /search``: walk33) and as
    ``kb_get_note`` does (its search is the ``kb_search`` tool)."""
    return said.replace("use kb_search", "use GET /search?q=..."), said


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_a_note_asked_for_by_what_is_no_path_names_the_note_meant_or_none(
    tmp_path: Path, load_search_app: Any, engine: str
) -> None:
    """``GET /notes/KB-013`` (the ``doc_id`` a hit carries) and ``kb_get_note`` of it answered "did you mean
    'KB-013.md'?", a note that is not there; a note's title (``Qdrant Cloud``, as a hit shows it) was answered with
    the title + ``.md`` at the root, not the note's path. A name that is no path is now read as ``[[name]]`` reads
    (its path without ``.md``, a tail of it, its title or an alias), else as a frontmatter id, among the notes the
    caller may read: the path of the note meant, or none; a restricted note's title or id is answered to a public
    caller as a name no note has. On Qdrant Edge and on qdrant-client's local mode."""
    notes = {
        "en/providers/Qdrant Cloud.md": "---\nid: KB-013\naliases: [Managed Qdrant]\n---\n# Qdrant Cloud\n\nquokka\n",
        "hr/salaries.md": "---\nid: HR-1\naccess: [hr]\ntitle: Salary bands\n---\nzebrafinch\n",
    }
    folder = write_kb(tmp_path / "kb", notes)
    store = tmp_path / "q"
    settings = Settings(qdrant_path=str(store), qdrant_url="", embedding_api_key=None, embedding_api_key_param="",
                        qdrant_embedded=engine)  # fmt: skip
    assert sync(settings, folder).skipped == []
    app = load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(folder), QDRANT_EMBEDDED=engine)
    meant = "not a note path: note paths end in .md: did you mean 'en/providers/Qdrant Cloud.md'? (use kb_search to find one)"
    for name in ("Qdrant Cloud", "providers/Qdrant Cloud", "Managed Qdrant", "qdrant cloud", "KB-013"):
        assert _bad_path(app, name) == _both(meant), name
    for name in ("Salary bands", "HR-1", "Nothing here", "kb-013"):
        none = f"not a note path: note paths end in .md, and no note is named {name!r} nor has it as its id (use kb_search to find one)"
        assert _bad_path(app, name) == _both(none), name


def test_a_name_asked_for_while_the_index_cannot_say_claims_nothing(tmp_path: Path, load_search_app: Any) -> None:
    """With no index to ask (not built yet), a name that is no path is answered without a claim either way: not
    "did you mean 'KB-013.md'?" (a note not there), nor "no note is named" (which cannot be told)."""
    folder = write_kb(tmp_path / "kb", {"ops/a.md": "---\nid: KB-013\n---\n# A\n\nquokka\n"})
    app = load_search_app(QDRANT_PATH=str(tmp_path / "never-built"), KB_SOURCE=str(folder))
    said = "not a note path: note paths end in .md (use kb_search to find one)"
    assert _bad_path(app, "KB-013") == _both(said)


# -- a .env saved with a byte-order mark --------------------------------------------------------------------------


def test_a_dotenv_saved_with_a_byte_order_mark_is_read_whole(tmp_path: Path) -> None:
    """A ``.env`` saved as "UTF-8 with BOM" (Notepad, some Windows editors): its first setting's name began with
    U+FEFF, so ``KB_SOURCE=kb`` on its first line was ignored and ``kbsearch index`` said ``no KB source: ... set
    KB_SOURCE (\ufeffKB_SOURCE is set: a typo for KB_SOURCE?)``, the mark invisible: "KB_SOURCE is set: a typo for
    KB_SOURCE?". The mark is no part of the name: the folder is indexed into the store the second line names."""
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "note.md").write_text("# Note\n\nquokka\n", encoding="utf-8")
    (tmp_path / ".env").write_bytes(b"\xef\xbb\xbfKB_SOURCE=kb\r\nQDRANT_PATH=store\r\n")
    proc = subprocess.run([*KBSEARCH_CMD, "index", "--json"], cwd=tmp_path, capture_output=True, text=True,
                          env=subprocess_env(EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM=""),
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["added"] == 1, proc.stdout
    assert "typo" not in proc.stderr and (tmp_path / "store").is_dir(), proc.stderr


# -- a note in a legacy 8-bit encoding ----------------------------------------------------------------------------


def test_a_note_in_an_8_bit_encoding_is_skipped_saying_where_and_what_to_do(tmp_path: Path) -> None:
    """A Russian note saved in Windows-1251 or KOI8-R (a KB's older files, a Windows tool's default), an English one
    in Latin-1: skipped with ``not UTF-8 (invalid byte at offset 2)`` and no more, while a note in UTF-16 is told to
    be saved as UTF-8. Now the line an editor shows and what to do; the rest of the KB indexed."""
    kb = write_kb(tmp_path / "kb", {"ok.md": "# Ok\n\nquokka\n"})
    text = "# Ключи\n\nРотация ключей, café\n"
    for encoding in ("cp1251", "koi8-r", "latin-1"):
        (kb / f"{encoding}.md").write_bytes(text.encode(encoding, errors="replace"))
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    report = sync(settings, kb)
    assert report.added == 1, report
    reasons = {s["path"]: s["reason"] for s in report.skipped}
    assert reasons == {
        "cp1251.md": "not UTF-8 (invalid byte at offset 2, line 1): save the note as UTF-8 (Windows-1251, KOI8-R "
        "or Latin-1 are not read)",
        "koi8-r.md": "not UTF-8 (invalid byte at offset 2, line 1): save the note as UTF-8 (Windows-1251, KOI8-R "
        "or Latin-1 are not read)",
        "latin-1.md": "not UTF-8 (invalid byte at offset 28, line 3): save the note as UTF-8 (Windows-1251, KOI8-R "
        "or Latin-1 are not read)",
    }, reasons


# -- kbsearch mcp without KB_SOURCE ------------------------------------------------------------------------------


def _mcp_read(cwd: Path, path: str, *options: str) -> tuple[dict[str, Any], str]:
    """``kbsearch mcp`` (no KB_SOURCE) over stdio in ``cwd``: ``kb_get_note`` of ``path``'s result, and stderr."""
    lines = [{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
              "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
             {"jsonrpc": "2.0", "method": "notifications/initialized"},
             {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "kb_get_note",
              "arguments": {"path": path}}}]  # fmt: skip
    shown = subprocess.run([*KBSEARCH_CMD, "mcp", *options], input="".join(json.dumps(m) + "\n" for m in lines),
                           capture_output=True, text=True, cwd=cwd, env=subprocess_env(), timeout=PROCESS_TIMEOUT_S,
                           check=False)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout.splitlines()[-1])["result"], shown.stderr


def test_kbsearch_mcp_without_kb_source_reads_notes_from_the_folder_the_index_was_built_from(tmp_path: Path) -> None:
    """``kbsearch index kb`` then ``kbsearch mcp`` (an assistant's config naming no ``--kb``): every ``kb_get_note``
    answered "the knowledge base cannot be read right now; try again shortly", which no retry changes, while
    ``kbsearch serve`` reads notes from the folder the index records it was built from. ``kbsearch mcp`` does the
    same; with no index (or one that records no folder) the answer names what to pass."""
    write_kb(tmp_path / "kb", {"ops/restore.md": "# Restore\n\nquokka steps\n"})
    indexed = subprocess.run([*KBSEARCH_CMD, "index", "kb"], cwd=tmp_path, capture_output=True, text=True,
                             env=subprocess_env(EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM=""),
                             timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert indexed.returncode == 0, indexed.stderr
    result, stderr = _mcp_read(tmp_path, "ops/restore.md")
    assert result["isError"] is False and result["structuredContent"]["title"] == "Restore", (result, stderr)
    assert "cannot read notes" not in stderr, stderr
    (tmp_path / "empty").mkdir()
    result, stderr = _mcp_read(tmp_path / "empty", "ops/restore.md")
    assert result["isError"] is True and result["content"][0]["text"] == (
        "notes cannot be read: no KB folder is known: start kbsearch mcp with --kb FOLDER or set KB_SOURCE"
    ), result
