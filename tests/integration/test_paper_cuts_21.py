"""Paper cuts, round 21: what a new user still hit after round 20, each through the interface that user touches
(`kbsearch` as a process, `kbsearch serve` over HTTP)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.apigw import HttpRequest, build_event
from kbsearch_tools.local.process import serve_process
from kbsearch_tools.oracle import unavailable
from kbsearch_tools.slack_client import command_form, signed_headers
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_freshness import until
from tests.integration.test_paper_cuts_20 import WARMED, oracle_note

# -- kbsearch serve: a second Ctrl-C while it shuts down ---------------------------------------------------------------

BURST = 300  # notes saved at once: their sync (e5 cold, ~0.1 s a note) outlasts the first Ctrl-C by far


@pytest.mark.slow
@pytest.mark.timeout(900)  # e5 cold in the server, on a shared 2-core host
def test_a_second_ctrl_c_while_serve_shuts_down_still_releases_what_it_holds(tmp_path: Path) -> None:
    """The first Ctrl-C of `kbsearch serve --watch --oracle e5` during a sync begins the shut-down, which waits for
    the sync in hand; a second one cut that wait short and skipped every step after it: the hand-off socket's file
    was left in the store's folder, the passage warmer and the oracle were never stopped. Now the steps after it
    still run (without waiting), and the command ends as an interrupted one: one line, exit 130."""
    reason = unavailable("e5")
    if reason:
        pytest.skip(reason)
    kb, store = tmp_path / "kb", tmp_path / "q"
    kb.mkdir()
    (kb / "restore.md").write_text(oracle_note("Snapshot restore", "restore a snapshot of the collection"))
    args = ["--watch", str(kb), "--oracle", "e5", "--oracle-cache", str(tmp_path / "e5.sqlite")]
    sock = store / "kb.serve.sock"
    with serve_process(
        subprocess_env(QDRANT_PATH=str(store)), cwd=ROOT, args=args, timeout_s=PROCESS_TIMEOUT_S
    ) as served:
        until(lambda: served.text().count(WARMED) == 1, timeout_s=180, log=served.text)  # the initial sync's
        assert sock.exists()
        for i in range(BURST):
            (kb / f"burst{i}.md").write_text(oracle_note(f"Burst {i}", f"burst note number {i} about backups"))
        time.sleep(3)  # the watcher groups a burst for at most 1 s: its sync is under way
        assert f"{BURST} added" not in served.text(), "the burst's sync ended before the Ctrl-C: nothing was tried"
        served.process.send_signal(signal.SIGINT)  # the shut-down begins: it waits for the sync in hand
        time.sleep(0.5)
        served.process.send_signal(signal.SIGINT)
        try:
            served.process.wait(timeout=PROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            served.process.send_signal(signal.SIGUSR1)  # `kbsearch serve` prints every thread's stack on it
            time.sleep(2)
            raise AssertionError(f"serve did not stop on a second Ctrl-C:\n{served.text()[-6000:]}") from None
        time.sleep(0.2)  # the last lines drained
    text = served.text()
    # round 22: no traceback under load either. The burst's sync ran on under Python's own exit, which shuts the
    # indexer's embedding pool down: its next window failed ("cannot schedule new futures after shutdown"), logged
    # with its traceback after the last line (2 of 13 runs beside two busy loops; 0 of 30 since the sync stops at
    # its next note and the shut-down waits for the watcher's thread to end)
    assert served.process.returncode == 130 and "Traceback" not in text, text[-3000:]
    assert text.count("kbsearch serve: interrupted") == 1 and text.rstrip().endswith("kbsearch serve: interrupted")
    assert not sock.exists(), "the hand-off socket's file was left behind"


# -- kbsearch slack: the answer as Slack shows it ----------------------------------------------------------------------


def test_kbsearch_slack_shows_the_answer_as_slack_does_not_its_escapes(tmp_path: Path) -> None:
    """`kbsearch slack` printed the mrkdwn Slack receives: a note's `R&D` as `R&amp;D`, `a > b` as `a &gt; b`, a
    title linked by KB_NOTE_URL_PATTERN as `<https://...|Title>`. It shows what Slack shows now: the text, and a
    link's label with its URL."""
    kb, store = tmp_path / "kb", tmp_path / "q"
    kb.mkdir()
    (kb / "budget.md").write_text(
        "---\ntitle: R&D budget <2027>\n---\n# R&D budget <2027>\n\n"
        "The zorblax budget of R&D: spend > plan & <review> before March.\n"
    )
    env = subprocess_env(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET="local-secret",
                         SLACK_RESPONSE_HOSTS="127.0.0.1", KB_NOTE_URL_PATTERN="https://wiki.example.com/kb/{path}")  # fmt: skip
    indexed = subprocess.run([*KBSEARCH_CMD, "index", str(kb)], capture_output=True, text=True, env=env, cwd=ROOT,
                             timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert indexed.returncode == 0, indexed.stderr
    with serve_process(env, cwd=ROOT) as served:
        shown = subprocess.run([*KBSEARCH_CMD, "slack", "--api", served.base_url, "zorblax budget"],
                               capture_output=True, text=True, env=env, cwd=ROOT, timeout=PROCESS_TIMEOUT_S,
                               check=False)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "The zorblax budget of R&D: spend > plan & <review> before March." in shown.stdout, shown.stdout
    assert "*1. R&D budget <2027> (https://wiki.example.com/kb/budget)*" in shown.stdout, shown.stdout
    assert "&amp;" not in shown.stdout and "&gt;" not in shown.stdout and "&lt;" not in shown.stdout, shown.stdout


# -- --help: every option says what it does ---------------------------------------------------------------------------


def bare_entries(help_text: str) -> list[str]:
    """The options and arguments a `--help` lists without a word on what they do: an entry (two spaces in) with
    no text after its name, on its line or on the lines below it (further in)."""
    lines = help_text.splitlines()
    bare = []
    for i, line in enumerate(lines):
        if not line.startswith("  ") or line.startswith("   ") or line.strip() in ("", "COMMAND"):
            continue
        said = "  " in line.strip()
        follows = i + 1 < len(lines) and lines[i + 1].startswith("   ")
        if not said and not follows:
            bare.append(line.strip())
    return bare


def test_every_option_of_every_command_says_what_it_does() -> None:
    """`kbsearch search --help` listed `--no-rerank` and `--no-expand` (and its `query`), `eval` and `bench` their
    `--json`, `feedback` its `{export}`, with nothing said: a user had to read the code to know what they do."""
    top = subprocess.run([*KBSEARCH_CMD, "--help"], capture_output=True, text=True, env=subprocess_env(), cwd=ROOT,
                         timeout=PROCESS_TIMEOUT_S, check=True).stdout  # fmt: skip
    commands = [line.split()[0] for line in top.split("COMMAND\n", 1)[1].split("\noptions:")[0].splitlines()
                if line.startswith("    ") and not line.startswith("     ")]  # fmt: skip
    assert {"serve", "index", "search", "mcp", "eval", "feedback", "slack", "bench"} <= set(commands), top
    found = {}
    for command in commands:
        shown = subprocess.run([*KBSEARCH_CMD, command, "--help"], capture_output=True, text=True,
                               env=subprocess_env(COLUMNS="120"), cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=True)  # fmt: skip
        if bare_entries(shown.stdout):
            found[command] = bare_entries(shown.stdout)
    assert not found, found


# -- kbsearch search while a kbsearch serve holds the store -------------------------------------------------------------


def test_search_on_a_store_a_server_holds_names_the_process_and_what_to_do(tmp_path: Path) -> None:
    """`kbsearch search` while `kbsearch serve` held the embedded store said "index unavailable: cannot open the
    embedded store at ...: another process has it open": not which process, nor what to do about it."""
    store = tmp_path / "q"
    env = subprocess_env(QDRANT_PATH=str(store))
    indexed = subprocess.run([*KBSEARCH_CMD, "index", str(ROOT / "sample-kb")], capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert indexed.returncode == 0, indexed.stderr
    with serve_process(env | {"KB_SOURCE": str(ROOT / "sample-kb")}, cwd=ROOT) as served:
        assert httpx.get(served.base_url + "/search", params={"q": "snapshot"}, timeout=30).status_code == 200
        proc = subprocess.run([*KBSEARCH_CMD, "search", "snapshot"], capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert proc.returncode == 75 and proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr  # was 2
    assert proc.stderr.startswith("kbsearch search: error: index unavailable: the embedded store at "), proc.stderr
    assert f"(pid {served.process.pid}: kbsearch serve)" in proc.stderr, proc.stderr  # named since round 23
    assert "stop it, or search through that kbsearch serve (curl 'http://127.0.0.1:3000/search?q=" in proc.stderr


# -- kbsearch serve --watch with no folder named ------------------------------------------------------------------------


TEMPLATE = ["--template", str(ROOT / "template.yaml")]  # the server runs in a folder of its own


def test_serve_watch_without_a_folder_watches_the_kb_not_the_working_folder(tmp_path: Path) -> None:
    """`kbsearch serve --watch` with no FOLDER and no KB_SOURCE watched the working folder (`Path("")` is `.`, which
    passed the check meant for "nothing"): run in a checkout, it indexed every `.md` of it (401 notes: README,
    RELIABILITY, node_modules' READMEs) and its mass-delete guard held back the KB's. It watches the folder the index
    was built from now, and with no such record it says what to pass."""
    kb, work = tmp_path / "kb", tmp_path / "work"
    kb.mkdir()
    work.mkdir()
    (kb / "note.md").write_text("# Zorblax\n\nThe zorblax rotation runbook.\n")
    (work / "README.md").write_text("# Not a note of the KB\n\nA readme in the folder the server was started from.\n")
    built, empty = tmp_path / "q", tmp_path / "none"
    indexed = subprocess.run([*KBSEARCH_CMD, "index", str(kb)], capture_output=True, text=True,
                             env=subprocess_env(QDRANT_PATH=str(built)), cwd=work, timeout=PROCESS_TIMEOUT_S,
                             check=False)  # fmt: skip
    assert indexed.returncode == 0, indexed.stderr
    with serve_process(subprocess_env(QDRANT_PATH=str(built)), cwd=work, args=[*TEMPLATE, "--watch"]) as served:
        until(lambda: "initial sync" in served.text(), log=served.text)
        found = httpx.get(served.base_url + "/search", params={"q": "readme"}, timeout=30).json()["results"]
    assert f"watching {kb.resolve()} " in served.text(), served.text()
    assert "initial sync: 0 added" in served.text() and found == [], served.text()
    refused = subprocess.run([*KBSEARCH_CMD, "serve", "--port", "0", *TEMPLATE, "--watch"], capture_output=True, text=True,
                             env=subprocess_env(QDRANT_PATH=str(empty)), cwd=work, timeout=PROCESS_TIMEOUT_S,
                             check=False)  # fmt: skip
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert refused.stderr.strip().splitlines()[-1] == (
        "kbsearch serve: error: --watch needs a KB folder (got 'nothing'): pass --watch FOLDER or set KB_SOURCE to a "
        "folder; an S3 KB is synced by its S3 events when deployed"
    ), refused.stderr


# -- kbsearch serve: the Slack worker's known failures --------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "line"),
    [("response_url refuses", "local Slack worker failed: response_url did not take the answer"),
     ("index not built", "search for Slack failed: index unavailable")],
)  # fmt: skip
def test_the_slack_workers_known_failures_are_one_line_in_the_log_not_a_traceback(
    tmp_path: Path, case: str, line: str
) -> None:
    """`kbsearch slack --print-curl` with README's suggested listener (`python -m http.server`, which answers a POST
    501): the worker's retries failed as they should, and `kbsearch serve` logged "local Slack worker failed" with
    the whole traceback; so did a command before the index was built ("search for Slack failed", the user answered
    with an apology). Each is one line now (what failed), as the API logs its own 503."""
    store = tmp_path / "q"
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"),
                         SLACK_SIGNING_SECRET="local-secret", SLACK_RESPONSE_HOSTS="127.0.0.1")  # fmt: skip
    if case == "response_url refuses":
        indexed = subprocess.run([*KBSEARCH_CMD, "index"], capture_output=True, text=True, env=env, cwd=ROOT,
                                 timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
        assert indexed.returncode == 0, indexed.stderr
    hook = FakeEndpoint(status=501 if case == "response_url refuses" else 200).start()
    try:
        with serve_process(env, cwd=ROOT) as served:
            body = command_form("restore a snapshot", hook.url + "/hook", "U0LOCAL", "T0LOCAL", "C0LOCAL")
            ack = httpx.post(served.base_url + "/slack/command", content=body, timeout=30,
                             headers=signed_headers("local-secret", body))  # fmt: skip
            assert ack.status_code == 200, ack.text
            until(lambda: line in served.text(), log=served.text)
            until(lambda: bool(hook.requests), log=served.text)  # the answer (or the apology) was offered
            time.sleep(0.5)  # the rest of the log drained
    finally:
        hook.stop()
    text = served.text()
    assert "Traceback" not in text and "stack_trace" not in text, text[-3000:]


def test_search_on_a_store_whose_owner_lock_alone_is_held_names_the_process(tmp_path: Path, load_search_app) -> None:
    """The store's owner lock (`<collection>.lock`) is held without Edge's WAL lock while a sync reopens its shard
    (every QDRANT_EMBEDDED_GRAPH_FROM points) and while a first sync creates it: `kbsearch search` then said only
    "another process has it open", and `/health` read the store as ready, the pid being looked for on the WAL alone.
    A process holding the owner lock as the store takes it (an exclusive flock) stands for that moment."""
    store = tmp_path / "q"
    env = subprocess_env(QDRANT_PATH=str(store))
    indexed = subprocess.run([*KBSEARCH_CMD, "index", str(ROOT / "sample-kb")], capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert indexed.returncode == 0, indexed.stderr
    hold = ("import fcntl, sys; f = open(sys.argv[1], 'rb'); fcntl.flock(f.fileno(), fcntl.LOCK_EX); "
            "print('held', flush=True); sys.stdin.read()")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", hold, str(store / "edge" / "kb.lock")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        proc = subprocess.run([*KBSEARCH_CMD, "search", "snapshot"], capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
        call = load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"))
        health = json.loads(call(build_event(HttpRequest("GET", "/health", "", [], b""), "/health", {}, "dev"))["body"])
    finally:
        holder.communicate(timeout=PROCESS_TIMEOUT_S)
    assert health["ready"] is False and f"pid {holder.pid}" in " ".join(health["reasons"]), health
    assert proc.returncode == 75 and len(proc.stderr.splitlines()) == 1, proc.stderr  # held elsewhere (was 2)
    assert f"(pid {holder.pid}: a kbsearch serve or index?)" in proc.stderr, proc.stderr
