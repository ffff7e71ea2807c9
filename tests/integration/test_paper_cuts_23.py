"""Paper cuts, round 23: what a new user still hit after round 22, each through the interface that user touches
(`kbsearch` as a process, its stderr a terminal where the cut was a terminal's)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import termios
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.fakes import FakeProvider, provider_env
from kbsearch_tools.local.process import serve_process
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_paper_cuts import run, start_index


def _kbsearch(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, env=subprocess_env(**env), cwd=ROOT,
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip


# -- a typo: what was meant ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "usage", "said"),
    [
        ([], "usage: kbsearch [-h]", "\n    search       search the index from the command line"),
        ([], "usage: kbsearch [-h]", "\nkbsearch: error: give a command (kbsearch COMMAND --help: its options)\n"),
        (
            ["serch", "x"],
            "usage: kbsearch [-h]",
            "kbsearch: error: argument COMMAND: invalid choice: 'serch': did you mean 'search'? (choose from 'serve', ",
        ),
        (
            ["search", "x", "--top-kk", "3"],
            "usage: kbsearch search [-h]",
            "kbsearch search: error: unrecognized arguments: --top-kk 3 (--top-kk: did you mean --top-k?)",
        ),
        (
            ["search", "ротация", "--top-k", "3", "ключей"],
            "usage: kbsearch search [-h]",
            "kbsearch search: error: unrecognized arguments: ключей (a query's words go together, before or after the "
            "options)",
        ),
        (
            ["search", "x", "--tags=ops"],
            "usage: kbsearch search [-h]",
            "kbsearch search: error: unrecognized arguments: --tags=ops (--tags: did you mean --tag?)",
        ),
        (
            ["index", "--jsn", "sample-kb"],
            "usage: kbsearch index [-h]",
            "kbsearch index: error: unrecognized arguments: --jsn (--jsn: did you mean --json?)",
        ),
        (
            ["index", "--oracle", "e6", "sample-kb"],
            "usage: kbsearch index [-h]",
            "kbsearch index: error: argument --oracle: invalid choice: 'e6': did you mean 'e5'? (choose from 'e5', ",
        ),
        (
            ["bench"],
            "usage: kbsearch bench [-h]",
            "kbsearch bench: error: the following arguments are required: {index,search,store,",
        ),
        (
            ["feedback", "--beir", "out"],
            "usage: kbsearch feedback [-h]",
            "kbsearch feedback: error: the following arguments are required: {export}",
        ),
    ],
)
def test_a_misspelt_command_option_or_choice_names_the_one_meant(args: list[str], usage: str, said: str) -> None:
    """A typo was argparse's bare refusal: `kbsearch serch x` listed the commands without saying which was meant,
    and an unknown option of a command (`kbsearch search x --top-kk 3`, `--tags` for `--tag`) was the top-level
    parser's error, under its usage (`kbsearch [-h] [--version] [-v] COMMAND ...`), `kbsearch: error:`, with no
    command named nor the option meant. `kbsearch bench` with no benchmark said "required: what" (the argument's
    internal name), `kbsearch feedback` "required: action", and `kbsearch` alone "required: COMMAND", not which
    commands there are. Now the closest command, choice or option is named,
    under the command's own usage, a missing choice is named by its choices, and `kbsearch` alone shows its help
    (on stderr); usage errors stay exit 2."""
    shown = _kbsearch(*args)
    assert shown.returncode == 2 and not shown.stdout, (shown.returncode, shown.stdout)
    assert shown.stderr.startswith(usage), shown.stderr
    assert said in shown.stderr, shown.stderr
    assert "Traceback" not in shown.stderr


def test_a_query_of_several_words_needs_no_quotes(tmp_path: Path) -> None:
    """`kbsearch search ротация ключей` (README quotes its example, a user types it bare, as `kbsearch slack`
    takes its words) was "kbsearch: error: unrecognized arguments: ключей", exit 2. The words are the query now,
    joined by a space: the same answer as the quoted query."""
    kb, store = tmp_path / "kb", tmp_path / "q"
    kb.mkdir()
    (kb / "rotation.md").write_text("# Ротация ключей\n\nКлючи провайдеров меняются раз в квартал.\n")
    (kb / "other.md").write_text("# Отпуск\n\nКак оформить отпуск: заявление за две недели.\n")
    indexed = _kbsearch("index", str(kb), QDRANT_PATH=str(store))
    assert indexed.returncode == 0, indexed.stderr
    bare = _kbsearch("search", "ротация", "ключей", "--top-k", "1", "--json", QDRANT_PATH=str(store))
    quoted = _kbsearch("search", "ротация ключей", "--top-k", "1", "--json", QDRANT_PATH=str(store))
    assert bare.returncode == 0, bare.stderr
    assert json.loads(bare.stdout)["query"] == "ротация ключей", bare.stdout
    assert json.loads(bare.stdout)["results"][0]["path"] == "rotation.md", bare.stdout
    assert quoted.returncode == 0, quoted.stderr
    hits = [json.loads(shown.stdout)["results"] for shown in (bare, quoted)]
    assert hits[0] == hits[1], hits


# -- the progress bar in a terminal narrower than it -----------------------------------------------------------------


def _index_on_a_terminal(tmp_path: Path, columns: int, env_columns: str | None) -> str:
    """`kbsearch index sample-kb` with stderr a terminal ``columns`` wide (``COLUMNS=env_columns`` when given):
    what the terminal received."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"))
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    if env_columns is not None:
        env["COLUMNS"] = env_columns
    received = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every end of the slave closed
                return
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    try:
        process = subprocess.Popen([*KBSEARCH_CMD, "index", "sample-kb"], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=slave, env=env, cwd=ROOT)  # fmt: skip
        os.close(slave)
        reader.start()
        out, _ = process.communicate(timeout=PROCESS_TIMEOUT_S)
        reader.join(timeout=PROCESS_TIMEOUT_S)
    finally:
        os.close(master)
    assert process.returncode == 0, received.decode(errors="replace")
    assert b"sync done:" in out
    return received.decode()


@pytest.mark.parametrize(("columns", "env_columns"), [(80, None), (200, "40"), (40, None), (24, None)])
def test_the_progress_bar_fits_the_terminal_it_is_drawn_in(
    tmp_path: Path, columns: int, env_columns: str | None
) -> None:
    """The bar `kbsearch index` draws on a terminal was 89 columns whatever the terminal's width: wider than an
    80-column terminal, so each redraw wrapped, `\\r` went back to the start of the wrapped part only, and the bar
    scrolled the screen a line per note (three at `COLUMNS=40`). It fits now: at most the width less one (a line
    reaching the last column wraps in some terminals), the terminal's width that stderr is, or `COLUMNS`."""
    width = int(env_columns) if env_columns is not None else columns
    shown = _index_on_a_terminal(tmp_path, columns, env_columns)
    drawn = [part for line in shown.replace("\r\n", "\n").split("\n") for part in line.split("\r") if " eta " in part]
    assert drawn, shown
    assert max(len(part) for part in drawn) <= width - 1, [part for part in drawn if len(part) >= width]
    assert any("/36 eta" in part or "/35 eta" in part for part in drawn), drawn


# -- kbsearch slack against a server that cannot check its signature ------------------------------------------------


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S)
@pytest.mark.parametrize(
    ("server_secret", "said"),
    [
        (
            None,
            "has no SLACK_SIGNING_SECRET: restart it with SLACK_SIGNING_SECRET (the same value as here) and "
            "SLACK_RESPONSE_HOSTS=127.0.0.1 set",
        ),
        ("another-secret", "checks another SLACK_SIGNING_SECRET than the one set here: give both the same value"),
    ],
)
def test_kbsearch_slack_refused_by_the_server_says_which_setting(server_secret: str | None, said: str) -> None:
    """README's Slack walk exports the secret in one shell and starts `kbsearch serve` in another: a server started
    without it answered `kbsearch slack` "/slack/command answered 503: {"error":"slack_not_configured",...}", one
    with another value "answered 401: {...signature mismatch}", the setting to change left to the reader. Each
    now says which setting and where; still exit 2 (a setting error), stdout empty."""
    extra = {"SLACK_RESPONSE_HOSTS": "127.0.0.1"} | ({"SLACK_SIGNING_SECRET": server_secret} if server_secret else {})
    with serve_process(subprocess_env(**extra), cwd=ROOT) as served:
        shown = _kbsearch("slack", "--api", served.base_url, "restore a snapshot", SLACK_SIGNING_SECRET="local-secret")
    assert shown.returncode == 2 and not shown.stdout, (shown.returncode, shown.stdout)
    line = shown.stderr.strip()
    assert line.startswith("kbsearch slack: error: /slack/command answered "), line
    assert f"; the server at {served.base_url} {said}" in line, line


# -- an interrupted --rebuild ------------------------------------------------------------------------------------------


@pytest.fixture
def slow_embedder() -> Iterator[FakeProvider]:
    fake = FakeProvider("deepinfra", api_key="di-test-key", latency={"embeddings": 0.5}).start()
    yield fake
    fake.stop()


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S + 30)
def test_an_interrupted_rebuild_does_not_say_rebuilt(slow_embedder: FakeProvider, tmp_path: Path) -> None:
    """`kbsearch index --rebuild` stopped by Ctrl-C (the walk: the vault, 0.8 s in) printed "rebuild: the local
    collection was dropped and rebuilt (--rebuild)" over "0 added ... 337 notes left for the next run": the store
    was dropped and holds only what was indexed before the Ctrl-C (a search answered 0 results). The line says
    so now, and that the next run needs no --rebuild; that run completes the index."""
    store = tmp_path / "q"
    process = start_index(slow_embedder, store, "--rebuild")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=PROCESS_TIMEOUT_S)
    assert process.returncode == 130, (out, err)
    assert out.startswith("sync INCOMPLETE: ") and "notes left for the next run" in out, out
    assert "dropped and rebuilt" not in out, out
    line = next(line for line in out.splitlines() if line.startswith("  rebuild: "))
    assert line.startswith("  rebuild: the local collection was dropped (--rebuild), and its rebuild stopped short: "
                           "it holds the "), line  # fmt: skip
    assert line.endswith(" notes indexed so far; the next run (no --rebuild needed) adds the rest"), line
    slow_embedder.latency = {}
    again = run("index", str(ROOT / "sample-kb"), "--json", QDRANT_PATH=str(store), EMBEDDING_DIMENSIONS="64",
                **provider_env(slow_embedder, roles=["EMBEDDING"]))  # fmt: skip
    assert again.returncode == 0, again.stderr
    finished = json.loads(again.stdout)
    assert finished["incomplete"] is False and finished["added"] > 0 and finished["rebuilt"] is None, finished


# -- two kbsearch commands at once: which holds the store, and what to do ------------------------------------------------


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S + 30)
def test_a_store_another_kbsearch_index_holds_is_named_with_what_to_do(
    slow_embedder: FakeProvider, tmp_path: Path
) -> None:
    """Two commands at once (the walk: a second `kbsearch index` of the vault 1.5 s after the first, a
    `kbsearch search` meanwhile) were told "another process has it open (pid N: a kbsearch serve or index?)", and
    the advice was a server's: the index "stop that process ... a kbsearch serve of this version takes the sync",
    the search "stop it, or search through that kbsearch serve (curl ...)": wrong for a sync, which lets go when it
    ends. The holder is named from its command line (`kbsearch index`: the command alone, none of its arguments),
    and the advice is that command's. The refused run's summary said "0 listed, 0 added ..." (a KB found empty):
    it says nothing was listed, read or written."""
    store = tmp_path / "q"
    first = start_index(slow_embedder, store)  # embedding slowly: it holds the store
    try:
        pid = first.pid
        second = run("index", str(ROOT / "sample-kb"), QDRANT_PATH=str(store), EMBEDDING_DIMENSIONS="64",
                     **provider_env(slow_embedder, roles=["EMBEDDING"]))  # fmt: skip
        searched = run("search", "snapshot", QDRANT_PATH=str(store))
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=PROCESS_TIMEOUT_S)
    assert second.returncode == 75, second.stderr  # held elsewhere (session 25: was 1)
    assert "0 listed" not in second.stdout, second.stdout  # it listed nothing: the store would not open
    assert second.stdout.splitlines()[1] == "  nothing listed, read or written: the run stopped at its start"
    error = next(line for line in second.stdout.splitlines() if line.startswith("  error: "))
    assert error.endswith(f"another process has it open (pid {pid}: kbsearch index): another kbsearch index is "
                          "syncing into it; run this again once it has ended"), error  # fmt: skip
    assert searched.returncode == 75 and not searched.stdout, searched.stdout  # held elsewhere (session 25: was 2)
    assert searched.stderr.strip().endswith(
        f"is open in another process (pid {pid}: kbsearch index); search once that sync has ended"
    ), searched.stderr


# -- feedback export of no votes, eval of no queries -----------------------------------------------------------------------


def test_an_export_of_no_votes_says_so_and_eval_refuses_to_score_nothing(tmp_path: Path) -> None:
    """The walk, before any vote: `kbsearch feedback export --beir DIR --kb sample-kb` said "0 votes → 0 queries
    ..." and "score it: kbsearch eval --beir DIR", and that eval printed a table of 0.000 for no query at all,
    exit 0: a measured zero to the eye. Its "left out: ... 1 unreadable notes" named no note. Now the export says
    there is nothing to score yet and where a vote comes from, names each note left out of the corpus; eval of a
    set (or a query file) with no query is an error naming it, exit 2, stdout empty."""
    beir = tmp_path / "beir"
    exported = _kbsearch("feedback", "export", "--beir", str(beir), "--kb", "sample-kb",
                         SLACK_FEEDBACK_FILE=str(tmp_path / "votes.jsonl"))  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert "score it" not in exported.stdout, exported.stdout
    assert (f"nothing to score yet: no votes in {tmp_path / 'votes.jsonl'} (SLACK_FEEDBACK_FILE); a vote is a "
            "👍/👎 pressed on a Slack answer") in exported.stdout, exported.stdout  # fmt: skip
    assert "1 unreadable note\n" in exported.stderr, exported.stderr
    assert "  not in the corpus: en/Broken frontmatter.md: invalid YAML frontmatter" in exported.stderr
    scored = _kbsearch("eval", "--beir", str(beir), QDRANT_PATH=str(tmp_path / "q"))
    assert scored.returncode == 2 and not scored.stdout, (scored.returncode, scored.stdout)
    assert scored.stderr.strip() == (f"kbsearch eval: error: no queries to score in {beir}: qrels/test.tsv judges "
                                     "none (a kbsearch feedback export of no votes writes none)"), scored.stderr  # fmt: skip
    empty = tmp_path / "q.yaml"
    empty.write_text("[]\n")
    listed = _kbsearch("eval", "--kb", "sample-kb", "--queries", str(empty))
    assert listed.returncode == 2 and not listed.stdout, (listed.returncode, listed.stdout)
    assert listed.stderr.strip() == f"kbsearch eval: error: no queries to score in {empty}: it lists none"


# -- a KB path that is a file ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["index", "{note}"],
        ["mcp", "--kb", "{note}"],
        ["eval", "--kb", "{note}", "--queries", "eval/sample-kb-queries.yaml"],
        ["feedback", "export", "--beir", "{tmp}/beir", "--kb", "{note}"],
    ],
)
def test_a_kb_path_that_is_a_file_is_called_a_file(args: list[str], tmp_path: Path) -> None:
    """`kbsearch index sample-kb/en/Onboarding.md` (one note) said "KB folder ... does not exist or is not a
    folder": it exists, so a user looked for a typo in the path. It says the path is a file, and that a KB is a
    folder of notes (or an S3 prefix); exit 2, stdout empty."""
    note = ROOT / "sample-kb" / "en" / "Onboarding.md"
    assert note.is_file()
    filled = [arg.format(note=note, tmp=tmp_path) for arg in args]
    shown = subprocess.run([*KBSEARCH_CMD, *filled], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")), cwd=ROOT, timeout=PROCESS_TIMEOUT_S,
                           check=False)  # fmt: skip
    assert shown.returncode == 2 and not shown.stdout, (shown.returncode, shown.stdout)
    assert shown.stderr.strip() == (f"kbsearch {args[0]}: error: KB folder {note} is a file, not a folder: give the "
                                    "folder of the notes (or s3://bucket/prefix); one note alone is not a KB"), shown.stderr  # fmt: skip


def test_a_store_a_kbsearch_mcp_holds_is_named_with_what_to_do(tmp_path: Path) -> None:
    """The same for a `kbsearch mcp` holding the store (an assistant's server, between its calls and its
    `--idle-close`): "pid N: a kbsearch serve or index?", and a server's advice. It is named, and the advice is that
    it lets go once idle."""
    store = tmp_path / "q"
    indexed = _kbsearch("index", "sample-kb", QDRANT_PATH=str(store))
    assert indexed.returncode == 0, indexed.stderr
    mcp = subprocess.Popen([*KBSEARCH_CMD, "mcp", "--kb", "sample-kb", "--idle-close", "0"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           env=subprocess_env(QDRANT_PATH=str(store)), cwd=ROOT)  # fmt: skip
    assert mcp.stdin is not None and mcp.stdout is not None
    try:
        listed = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "kb_list", "arguments": {}}}
        mcp.stdin.write(json.dumps(listed) + "\n")
        mcp.stdin.flush()
        assert json.loads(mcp.stdout.readline())["result"]["isError"] is False  # the store is open, and kept
        searched = _kbsearch("search", "snapshot", QDRANT_PATH=str(store))
    finally:
        mcp.stdin.close()
        mcp.wait(timeout=PROCESS_TIMEOUT_S)
    assert searched.returncode == 75 and not searched.stdout, searched.stdout  # held elsewhere (session 25: was 2)
    assert searched.stderr.strip().endswith(
        f"is open in another process (pid {mcp.pid}: kbsearch mcp); it lets go of the store after --idle-close "
        "seconds without a call (default 5; 0 keeps it): search then, or stop it"
    ), searched.stderr


# -- an unknown MCP tool ---------------------------------------------------------------------------------------------------


def _mcp_calls(tmp_path: Path, *calls: dict[str, Any]) -> list[dict[str, Any]]:
    """`kbsearch mcp --kb sample-kb` over stdio (an index of sample-kb in ``tmp_path``): the answers to ``calls``."""
    store = str(tmp_path / "q")
    if not (tmp_path / "q").exists():
        assert _kbsearch("index", "sample-kb", QDRANT_PATH=store).returncode == 0
    start = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
             "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
    lines = [start, {"jsonrpc": "2.0", "method": "notifications/initialized"}, *calls]
    shown = subprocess.run([*KBSEARCH_CMD, "mcp", "--kb", "sample-kb"], input="".join(json.dumps(m) + "\n" for m in lines),
                           capture_output=True, text=True, env=subprocess_env(QDRANT_PATH=store), cwd=ROOT,
                           timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()[1:]]


def test_a_note_path_without_md_names_the_path_meant(tmp_path: Path) -> None:
    """`kb_get_note` of `ru/ранбуки/Ротация ключей` (a note named as a hit's title shows it) answered "not a note
    path: note paths end in .md (use kb_search to find one)": the path meant is one step away, and it says it. A
    path with another extension (an attachment) is not given one."""
    tool = "kb_get_note"
    answers = _mcp_calls(
        tmp_path,
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool,
         "arguments": {"path": "ru/ранбуки/Ротация ключей"}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool,
         "arguments": {"path": "ru/ранбуки/Ротация ключей.md"}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": tool,
         "arguments": {"path": "en/diagram.png"}}},
    )  # fmt: skip
    first, meant, attachment = (answer["result"] for answer in answers)
    assert first["isError"] is True
    assert first["content"][0]["text"] == ("not a note path: note paths end in .md: did you mean 'ru/ранбуки/Ротация "
                                           "ключей.md'? (use kb_search to find one)"), first  # fmt: skip
    assert meant["isError"] is False and meant["structuredContent"]["title"] == "Ротация ключей провайдеров", meant
    assert attachment["content"][0]["text"] == "not a note path: note paths end in .md (use kb_search to find one)"


def test_an_unknown_mcp_tool_lists_the_tools(tmp_path: Path) -> None:
    """`tools/call` of `kb_serch` over `kbsearch mcp` answered -32602 "Unknown tool: 'kb_serch'": an assistant (or
    whoever speaks JSON-RPC by hand) was not told what it may call instead. The error lists the tools."""
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
         "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "kb_serch", "arguments": {}}},
    ]  # fmt: skip
    shown = subprocess.run([*KBSEARCH_CMD, "mcp", "--kb", "sample-kb"], input="".join(json.dumps(m) + "\n" for m in lines),
                           capture_output=True, text=True, env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")),
                           cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    error = json.loads(shown.stdout.splitlines()[1])["error"]
    assert error == {"code": -32602, "message": "Unknown tool: 'kb_serch' (tools: kb_search, kb_get_note, kb_list)"}


# -- a search of no hits through a filter value no note holds --------------------------------------------------------------


def test_a_search_of_no_hits_names_the_filter_value_no_note_holds(tmp_path: Path) -> None:
    """The walk, with README's filters: `kbsearch search restore --tag runbok` (or `--type Runbook`, `--status
    actve`, `--path-prefix runbooks` for `en/runbooks`) answered "0 results" with nothing said: a typo in a filter
    reads as a KB with no answer. A search of no hits now names each filter value no note holds and the closest one
    that a note does (the index's facets, as kb_list reads them); a value that exists says nothing; `--json` (the
    API's answer) is unchanged."""
    store = str(tmp_path / "q")
    assert _kbsearch("index", "sample-kb", QDRANT_PATH=store).returncode == 0
    cases = {
        ("--tag", "runbok"): "no note has the tag 'runbok' (--tag): did you mean 'runbook'?",
        ("--type", "Runbook"): "no note has the type 'Runbook' (--type): did you mean 'runbook'?",
        ("--status", "actve"): "no note has the status 'actve' (--status): did you mean 'active'?",
        ("--path-prefix", "runbooks"): "no note has the folder 'runbooks' (--path-prefix): did you mean 'en/runbooks'?",
    }
    for (option, value), said in cases.items():
        shown = _kbsearch("search", "restore", option, value, QDRANT_PATH=store)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.splitlines()[0].startswith("0 results for 'restore'"), shown.stdout
        assert shown.stdout.splitlines()[1:] == [f"  {said}"], shown.stdout
        assert shown.stderr == "", shown.stderr
    held = _kbsearch("search", "zzzzqx", "--tag", "runbook", QDRANT_PATH=store)  # a value notes hold: nothing said
    assert held.returncode == 0 and held.stdout.splitlines()[1:] == [], held.stdout
    as_json = _kbsearch("search", "restore", "--tag", "runbok", "--json", QDRANT_PATH=store)
    assert json.loads(as_json.stdout)["results"] == [] and "did you mean" not in as_json.stdout + as_json.stderr


# -- kbsearch mcp started at a terminal ------------------------------------------------------------------------------------


def test_kbsearch_mcp_at_a_terminal_says_what_it_is_and_how_it_ends(tmp_path: Path) -> None:
    """A person trying `kbsearch mcp` at a terminal (it is in README's quick start) sat before a command that said
    nothing and seemed to hang: it waits for JSON-RPC on stdin. At a terminal it says what it is, how to speak to
    it, and that Ctrl-D ends it, on stderr; stdout stays the protocol's alone, and with stdin a pipe (an assistant)
    nothing is said."""
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen([*KBSEARCH_CMD, "mcp", "--kb", "sample-kb"], stdin=slave, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True,
                                   env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")), cwd=ROOT)  # fmt: skip
        os.close(slave)
        os.write(master, b"\x04")  # Ctrl-D: the end of its input, read once it reads
        out, err = process.communicate(timeout=PROCESS_TIMEOUT_S)
    finally:
        os.close(master)
    assert process.returncode == 0, err
    first = err.splitlines()[0] if err else ""
    assert first.startswith("kbsearch mcp: an MCP server on stdin/stdout, for an assistant to launch"), first
    assert "Ctrl-D ends it" in first and out == "", (first, out)
    piped = subprocess.run([*KBSEARCH_CMD, "mcp", "--kb", "sample-kb"], input="", capture_output=True, text=True,
                           env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")), cwd=ROOT, timeout=PROCESS_TIMEOUT_S,
                           check=False)  # fmt: skip
    assert piped.returncode == 0 and "an MCP server on stdin/stdout" not in piped.stderr, piped.stderr


def test_a_run_whose_listing_failed_says_nothing_was_listed(tmp_path: Path) -> None:
    """`kbsearch index s3://...` whose listing failed (no credentials, an endpoint refusing connections) printed
    "0 listed, 0 added, ... 0 upserted" above its error: a KB found empty, to the eye. It says nothing was listed,
    read or written, then the error, once."""
    shown = _kbsearch("index", "s3://kb-notes/kb", QDRANT_PATH=str(tmp_path / "q"), AWS_ACCESS_KEY_ID="x",
                      AWS_SECRET_ACCESS_KEY="y", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL="http://127.0.0.1:9")  # fmt: skip
    assert shown.returncode == 1, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("sync INCOMPLETE: s3://kb-notes/kb/ → collection 'kb'"), lines
    assert lines[1] == "  nothing listed, read or written: the run stopped at its start", lines
    assert lines[2].startswith("  error: listing s3://kb-notes/kb/ failed: ") and len(lines) == 3, lines
