"""Paper cuts, round 20: what a new user still hit after round 19, each through the interface that user touches
(the console script pip writes, `kbsearch` as a process, `kbsearch serve` over HTTP)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from kbsearch.config import Secrets, Settings
from kbsearch.qdrant import open_store
from kbsearch.search import passage
from kbsearch_tools.local.process import serve_process
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.oracle import _Cache, unavailable
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_events import load_indexer
from tests.integration.test_freshness import search_paths, until


def run(*args: str, cwd: Path | str = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, check=False,
                          env=subprocess_env(**env), cwd=cwd)  # fmt: skip


# -- Ctrl-C while the console script loads the CLI ------------------------------------------------------------------


def console_script(folder: Path) -> Path:
    """The `kbsearch` console script as pip writes it from pyproject.toml's [project.scripts]: what a user runs."""
    module, function = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["kbsearch"].split(":")
    script = folder / "kbsearch"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\nif __name__ == '__main__':\n"
                      f"    sys.argv[0] = sys.argv[0].removesuffix('.exe')\n    sys.exit({function}())\n")  # fmt: skip
    script.chmod(0o755)
    return script


IMPORT_LINE = "import time:"


def imported(line: str) -> str:
    """The module a `-X importtime` line reports as imported (printed once its import is complete)."""
    return line.rsplit("|", 1)[-1].strip()


def interrupt_after(script: Path, args: list[str], module: str | None, env: dict[str, str]) -> tuple[int, list[str]]:
    """Start `kbsearch ARGS`, wait until Python reports MODULE imported (None: not at all), then send SIGINT every
    2 ms, as a key held down does, until the process ends; its exit code and its stderr but the import lines."""
    process = subprocess.Popen([str(script), *args], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)  # fmt: skip
    assert process.stderr is not None
    seen = threading.Event()
    lines: list[str] = []

    def read() -> None:  # all along: a full pipe would stop the process mid-import
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if module is None or (line.startswith(IMPORT_LINE) and imported(line) == module):
                seen.set()
        seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen.wait(PROCESS_TIMEOUT_S), f"{module} was never imported"
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            process.send_signal(signal.SIGINT)
            time.sleep(0.002)
        process.wait(timeout=PROCESS_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=PROCESS_TIMEOUT_S)
    return process.returncode, [line for line in lines if not line.startswith(IMPORT_LINE)]


@pytest.mark.timeout(10 * PROCESS_TIMEOUT_S)
def test_ctrl_c_while_the_console_script_loads_the_cli_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """A Ctrl-C in the first ~50 ms of any command (the console script importing the CLI: argparse, logging,
    typing, kb-search's modules; then reading its arguments) was Python's KeyboardInterrupt traceback. Python's
    import report (PYTHONPROFILEIMPORTTIME, Python's own, nothing of kb-search) says where the process is: the
    interrupts start after each module the CLI imports in turn, from kb-search's first to the CLI's arguments read,
    and keep coming until the process ends."""
    script = console_script(tmp_path)
    env = subprocess_env(PYTHONPROFILEIMPORTTIME="1", QDRANT_PATH=str(tmp_path / "q"))
    args = ["mcp", "--kb", str(ROOT / "sample-kb")]  # runs until stdin closes: only the interrupt ends it
    listing = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env, cwd=ROOT,
                             timeout=PROCESS_TIMEOUT_S, check=True)  # fmt: skip
    modules = [imported(line) for line in listing.stderr.splitlines() if line.startswith(IMPORT_LINE)]
    first, cli = modules.index("kbsearch"), modules.index("kbsearch_tools.cli")  # kb-search's first, the CLI
    moments = modules[first : cli + 4]  # and the modules argparse imports reading the arguments
    assert len(moments) >= 10, modules
    for module in moments:
        code, stderr = interrupt_after(script, args, module, env)
        assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in stderr), (module, stderr)
        assert code == 130 and stderr[-1] == "kbsearch mcp: interrupted", (module, code, stderr)
        assert sum("interrupted" in line for line in stderr) == 1, (module, stderr)


# -- a KB with no notes -----------------------------------------------------------------------------------------------


@pytest.mark.timeout(4 * PROCESS_TIMEOUT_S + 30)
def test_indexing_a_folder_without_notes_says_what_was_looked_for_and_where(tmp_path: Path) -> None:
    """`kbsearch index` of an empty folder, or of one without .md notes, reported "0 listed" and nothing else."""
    empty, others = tmp_path / "empty", tmp_path / "kb"
    empty.mkdir()
    (others / ".obsidian").mkdir(parents=True)
    (others / ".obsidian" / "hidden.md").write_text("# hidden\n")
    (others / "readme.txt").write_text("not a note\n")
    (others / "Note.markdown").write_text("# not .md\n")
    expected = {
        empty: f"no notes in {empty}: a note is a file ending in .md, outside hidden files and folders (a name "
        "starting with '.'); no file listed there",
        others: f"no notes in {others}: a note is a file ending in .md, outside hidden files and folders (a name "
        "starting with '.'); 2 other files listed there",
    }
    for folder, fact in expected.items():
        # given relatively: named in full
        shown = run("index", folder.name, cwd=tmp_path, QDRANT_PATH=str(tmp_path / "q"))
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
        assert f"  nothing to index: {fact}" in shown.stdout.splitlines(), shown.stdout
        as_json = run("index", str(folder), "--json", QDRANT_PATH=str(tmp_path / "q"))
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout)["no_notes"] == fact
    full = run("index", str(ROOT / "sample-kb"), "--json", QDRANT_PATH=str(tmp_path / "q2"))
    assert json.loads(full.stdout)["no_notes"] is None and "nothing to index" not in full.stdout


def test_an_s3_prefix_that_lists_nothing_says_so_in_the_scheduled_run_report(monkeypatch: pytest.MonkeyPatch,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    """The scheduled IndexerFunction (and `kbsearch index s3://...`) on a prefix with no notes: a typo'd KB_SOURCE
    prefix read as an empty KB, "0 listed"."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        s3.put_object(Bucket="kb-notes", Key="kb/en/Note.md", Body=b"# Note\n\nbody\n")
        s3.put_object(Bucket="kb-notes", Key="img/picture.png", Body=b"png")
        context = LambdaContext("kb-search-test-indexer", 2048, 900)
        reports = {}
        for prefix in ("kbb/", "img/"):
            app = load_indexer(monkeypatch, {"KB_SOURCE": f"s3://kb-notes/{prefix}",
                                             "QDRANT_PATH": str(tmp_path / prefix.replace("/", "_"))})  # fmt: skip
            reports[prefix] = app.lambda_handler({}, context)
    assert reports["kbb/"]["notes_listed"] == 0 and reports["kbb/"]["error"] is None
    assert reports["kbb/"]["no_notes"] == (
        "no notes under s3://kb-notes/kbb/: a note is a key ending in .md, outside hidden files and folders (a name "
        "starting with '.'); no object listed there: check the bucket and prefix (KB_SOURCE)"
    )
    assert reports["img/"]["no_notes"] == (
        "no notes under s3://kb-notes/img/: a note is a key ending in .md, outside hidden files and folders (a name "
        "starting with '.'); 1 other object listed there"
    )


# -- one message per failure of kbsearch index ----------------------------------------------------------------------


def failing_index(kind: str, tmp_path: Path) -> tuple[list[str], dict[str, str], str]:
    """`kbsearch index` arguments and settings that fail one way, and the start of the report's error."""
    if kind == "store":  # Qdrant not reachable: a closed loopback port
        return [str(ROOT / "sample-kb")], {"QDRANT_URL": "http://127.0.0.1:9"}, "index storage failed: "
    if kind == "access file":
        kb = tmp_path / "kb"
        kb.mkdir()
        (kb / "Note.md").write_text("# Note\n\nbody\n")
        (kb / "_access.yaml").write_text("folders: [\n")
        return [str(kb)], {"QDRANT_PATH": str(tmp_path / "q")}, "_access.yaml: "
    if kind == "listing":  # an S3 endpoint that refuses connections
        env = {"QDRANT_PATH": str(tmp_path / "q"), "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # fmt: skip
        return ["s3://kb-notes/kb"], env, "listing s3://kb-notes/kb/ failed: "
    env = {"QDRANT_PATH": str(tmp_path / "q"), "EMBEDDING_API_KEY": "k", "PROVIDER_RETRIES": "0",
           "EMBEDDING_URL": "http://127.0.0.1:9/v1/openai"}  # fmt: skip
    return [str(ROOT / "sample-kb")], env, "embedding failed: "


@pytest.mark.parametrize("kind", ["store", "access file", "listing", "embedding"])
@pytest.mark.timeout(2 * PROCESS_TIMEOUT_S + 30)
def test_a_failed_index_run_says_its_error_once(kind: str, tmp_path: Path) -> None:
    """Each failure of the run logged an ERROR line repeating the error the summary (or the JSON) then printed."""
    args, env, error = failing_index(kind, tmp_path)
    for extra in ([], ["--json"]):
        proc = run("index", *args, *extra, **env)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        reported = json.loads(proc.stdout)["error"] if extra else proc.stdout.split("\n  error: ", 1)[1].strip()
        assert reported.startswith(error), proc.stdout
        detail = reported.removeprefix(error)[:40]  # what the failure itself said
        assert (proc.stdout + proc.stderr).count(detail) == 1, (proc.stdout, proc.stderr)
        # nothing else either: botocore's "INFO botocore.credentials: Found credentials in environment variables."
        assert all(line.startswith("note: ") for line in proc.stderr.splitlines()), proc.stderr


# -- kbsearch serve --oracle: the passages of a sync it runs ----------------------------------------------------------

WARMED = "the stand-in reranker's passages of the last sync embedded"


def oracle_note(title: str, body: str) -> str:
    return f"# {title}\n\n{body}\n\n## Steps\n\nFirst {body}, then check the collection again.\n"


def cached(cache: Path, store: Path, paths: set[str] | None = None) -> tuple[int, int]:
    """How many of the store's passages (of the notes at ``paths``; None: all) the oracle's cache holds, of how
    many: what a search's rerank would otherwise embed inside its budget."""
    settings = Settings(qdrant_path=str(store))
    opened = open_store(settings, Secrets(settings))
    try:
        payloads = [p for p in opened.points().values() if paths is None or p["path"] in paths]
    finally:
        opened.close()
    vectors = _Cache("e5", cache)
    texts = {passage(p, settings.rerank_passage_tokens) for p in payloads}
    return sum(vectors.get(vectors.key(t, False)) is not None for t in texts), len(texts)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["watch", "handed"])
@pytest.mark.timeout(900)  # e5 cold in the server, on a shared 2-core host
def test_serve_with_the_oracle_embeds_the_passages_of_each_sync_it_runs(tmp_path: Path, mode: str) -> None:
    """`kbsearch serve --oracle e5`: a note saved under `--watch`, or a `kbsearch index` handed to the server, was
    synced but its passages were not embedded for the stand-in reranker, so the first searches after it ran the
    model on them inside their budget (flake19 warmed them after `kbsearch index --oracle` only). Now the server
    embeds them in the background after each sync it runs, and a Ctrl-C mid-way stops it at once, cleanly."""
    reason = unavailable("e5")
    if reason:
        pytest.skip(reason)
    kb, store, cache = tmp_path / "kb", tmp_path / "q", tmp_path / "e5.sqlite"
    kb.mkdir()
    (kb / "restore.md").write_text(oracle_note("Snapshot restore", "restore a snapshot of the collection"))
    env = subprocess_env(QDRANT_PATH=str(store))

    def sync() -> None:  # the watcher syncs by itself; a `kbsearch index` hands its sync to the server
        if mode == "handed":
            handed = subprocess.run([*KBSEARCH_CMD, "index", str(kb)], capture_output=True, text=True, env=env,
                                    cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
            assert handed.returncode == 0 and "handed to the kbsearch serve" in handed.stderr, handed.stderr

    args = [*(["--watch", str(kb)] if mode == "watch" else []), "--oracle", "e5", "--oracle-cache", str(cache)]
    with serve_process(env, cwd=ROOT, args=args, timeout_s=PROCESS_TIMEOUT_S) as served:
        sync()
        until(lambda: served.text().count(WARMED) == 1, timeout_s=180, log=served.text)  # the first sync's
        (kb / "rotation.md").write_text(oracle_note("Key rotation", "rotate the zorblax keys every quarter"))
        sync()
        until(lambda: "rotation.md" in search_paths(served.base_url, "zorblax"), log=served.text)
        until(lambda: served.text().count(WARMED) == 2, timeout_s=180, log=served.text)
        for i in range(12):  # a burst: the server is still embedding it when Ctrl-C comes
            (kb / f"burst{i}.md").write_text(oracle_note(f"Burst {i}", f"burst note number {i} about backups"))
        sync()
        until(lambda: "burst11.md" in search_paths(served.base_url, "burst number 11"), log=served.text)
        served.process.send_signal(signal.SIGINT)
        try:  # a cold model on a loaded host: the step in hand and the searches in flight end first
            served.process.wait(timeout=3 * PROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            served.process.send_signal(signal.SIGUSR1)  # `kbsearch serve` prints every thread's stack on it
            time.sleep(2)
            raise AssertionError(f"serve did not stop on Ctrl-C:\n{served.text()[-6000:]}") from None
    assert served.process.returncode == 0 and "Traceback" not in served.text(), served.text()[-3000:]
    assert served.text().count(WARMED) == 2, served.text()[-3000:]  # the burst's warming was stopped, not finished
    held, of = cached(cache, store, {"restore.md", "rotation.md"})
    assert held == of > 0  # every passage a rerank can be sent for the synced notes: no model work in a search


# -- a new user's walk: feedback, the access file, slack, invoke ------------------------------------------------------


@pytest.mark.parametrize("aws", ["no region", "not reachable"])
def test_feedback_export_from_a_votes_table_aws_cannot_serve_is_one_line(tmp_path: Path, aws: str) -> None:
    """`kbsearch feedback export --table votes` with no AWS region configured was botocore's NoRegionError
    traceback (and AWS not reachable, or no such table, its ClientError's)."""
    env = subprocess_env()
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        env.pop(name, None)
    env["AWS_CONFIG_FILE"] = str(tmp_path / "none")  # no ~/.aws/config region either
    if aws == "not reachable":
        env |= {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}  # fmt: skip
    proc = subprocess.run([*KBSEARCH_CMD, "feedback", "export", "--beir", str(tmp_path / "beir"), "--kb",
                           str(ROOT / "sample-kb"), "--table", "votes"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    cause = "NoRegionError: You must specify a region." if aws == "no region" else "EndpointConnectionError: "
    assert proc.stderr.startswith(f"kbsearch feedback: error: cannot read the votes table 'votes': {cause}"), (
        proc.stderr
    )
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == "", proc.stderr
    assert not (tmp_path / "beir").exists()


def test_a_broken_access_file_is_not_called_frontmatter_and_its_line_is_the_files(tmp_path: Path) -> None:
    """`_access.yaml` that is not valid YAML read "_access.yaml: invalid YAML frontmatter at line 3" for a
    problem on its line 2: its author looked for a `---` block in a file that has none, one line too far down."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "Note.md").write_text("# Note\n\nbody\n")
    (kb / "_access.yaml").write_text("hr/: [hr]\n- finance\n")  # line 2: a list item in a mapping
    proc = run("index", str(kb), "--json", QDRANT_PATH=str(tmp_path / "q"))
    assert proc.returncode == 1 and json.loads(proc.stdout)["error"] == (
        "_access.yaml: invalid YAML at line 2: a '- ' list item where a 'key: value' line belongs"  # (walk36)
    )


@pytest.mark.timeout(2 * PROCESS_TIMEOUT_S + 30)
def test_kbsearch_slack_says_why_no_answer_comes_while_it_waits(tmp_path: Path) -> None:
    """Against a server without SLACK_RESPONSE_HOSTS=127.0.0.1 (the answer is never posted) `kbsearch slack` sat
    silent for a minute before naming the cause."""
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), SLACK_SIGNING_SECRET="s3cret")
    with serve_process(env, cwd=ROOT) as served:
        slack = subprocess.Popen([*KBSEARCH_CMD, "slack", "--api", served.base_url, "snapshot"], env=env, cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert slack.stderr is not None
            line = slack.stderr.readline()  # its first line, before the 60 s wait ends (it says so: no clock here)
        finally:
            slack.kill()
            slack.communicate(timeout=PROCESS_TIMEOUT_S)
    assert line.startswith("kbsearch slack: no answer yet after 5 s; waiting up to 60 s. A server without "
                           "SLACK_RESPONSE_HOSTS=127.0.0.1 never sends one"), line  # fmt: skip


def test_invoke_names_stdin_as_the_event_it_could_not_read() -> None:
    """`--event -` with a body that is not JSON read "event - is not valid JSON"."""
    proc = subprocess.run([*KBSEARCH_CMD, "invoke", "SearchFunction", "--event", "-"], input="{x", text=True,
                          capture_output=True, env=subprocess_env(), cwd=ROOT, timeout=PROCESS_TIMEOUT_S,
                          check=False)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.startswith("kbsearch invoke: error: the event on stdin is not valid JSON: "), proc.stderr


def test_a_misspelt_setting_is_named_beside_the_one_it_missed(tmp_path: Path) -> None:
    """`KBSOURCE=... kbsearch index` said "no KB source ... or set KB_SOURCE" and `EMBEDING_API_KEY` indexed BM25
    only "(no EMBEDDING_API_KEY)", the variable that was set never named; the indexer function likewise."""
    index = run("index", KBSOURCE=str(ROOT / "sample-kb"), QDRANT_PATH=str(tmp_path / "q"))
    assert index.returncode == 2, index.stderr
    # named once, where it is missed (the CLI's note of near misses leaves KB_SOURCE's to this line: cuts24)
    assert index.stderr.strip().splitlines() == [
        "kbsearch index: error: no KB source: pass a folder or s3://bucket/prefix, or set KB_SOURCE (KBSOURCE is set: "
        "a typo for KB_SOURCE?)",
    ]
    bm25 = run("index", str(ROOT / "sample-kb"), EMBEDING_API_KEY="k", QDRANT_PATH=str(tmp_path / "q"))
    assert bm25.returncode == 0 and ("[BM25 only (no EMBEDDING_API_KEY) (EMBEDING_API_KEY is set: a typo for "
                                     "EMBEDDING_API_KEY?)]") in bm25.stdout.splitlines()[0], bm25.stdout  # fmt: skip
    invoked = run("invoke", "IndexerFunction", "--event", "events/indexer_schedule.json", KB_SORCE="x",
                  QDRANT_PATH=str(tmp_path / "q"))  # fmt: skip
    assert json.loads(invoked.stdout)["errorMessage"] == ("missing required setting KB_SOURCE: set the environment "
                                                          "variable KB_SOURCE (KB_SORCE is set: a typo for KB_SOURCE?)")  # fmt: skip
    plain = run("index", QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE_NOTES="x", HOME_DIR="y")  # far from any setting
    assert plain.stderr.strip().endswith("or set KB_SOURCE"), plain.stderr


@pytest.mark.parametrize("buffered", [False, True])
def test_output_read_by_something_that_stops_reading_ends_quietly(tmp_path: Path, buffered: bool) -> None:
    """`kbsearch search x | head -1`, the reader gone before the answer was written: "kbsearch search: error:
    [Errno 32] Broken pipe" and exit 1, or (stdout buffered) Python's "Exception ignored ... BrokenPipeError" and
    exit 120. Now nothing, and 141, what a shell reports for a writer its reader left."""
    store = tmp_path / "q"
    assert run("index", str(ROOT / "sample-kb"), QDRANT_PATH=str(store)).returncode == 0
    env = subprocess_env(QDRANT_PATH=str(store), PYTHONUNBUFFERED="" if buffered else "1")
    process = subprocess.Popen([*KBSEARCH_CMD, "search", "snapshot"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, cwd=ROOT)  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first line
    err = process.stderr.read().decode()
    assert process.wait(timeout=PROCESS_TIMEOUT_S) == 141 and err == "", err


def test_a_broken_pipe_that_is_not_the_output_is_an_error_not_a_quiet_141(tmp_path: Path) -> None:
    """The quiet 141 is for a reader of stdout that went away. Any other EPIPE (a write into a pipe no one reads:
    the hand-off socket of a `kbsearch serve` stopping, a FIFO or a pipe named as an output file) was taken for it:
    stdout sent to /dev/null, nothing said, the shell told the output was cut, the command's work lost unnoticed.
    Here `feedback export` writes its BEIR corpus into a pipe whose reader is closed (stdout itself is fine)."""
    import os

    from kbsearch.feedback import vote_record

    votes = tmp_path / "votes.jsonl"
    good = vote_record("snapshot", {}, 0, ["en/runbooks/Runbook - restore a Qdrant snapshot.md"], 1, "up", "h")
    votes.write_text(json.dumps(good) + "\n", encoding="utf-8")
    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader: a write there is EPIPE
    out = tmp_path / "beir"
    out.mkdir()
    (out / "corpus.jsonl").symlink_to(f"/proc/self/fd/{write_end}")  # the command's own descriptor of the pipe
    try:
        proc = subprocess.run([*KBSEARCH_CMD, "feedback", "export", "--beir", str(out), "--kb",
                               str(ROOT / "sample-kb"), "--file", str(votes), "--table", ""], capture_output=True,
                              text=True, env=subprocess_env(), cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False,
                              pass_fds=(write_end,))  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert proc.stderr == "kbsearch feedback: error: [Errno 32] Broken pipe\n", proc.stderr


def test_the_passage_warmer_reads_only_the_notes_a_sync_applied(tmp_path: Path, load_search_app: Any) -> None:
    """`kbsearch serve --oracle`'s warmer re-read every point of the store after every sync (a one-note save under
    `--watch` included: ~0.3 cpu-s on the help vault, ~3 s at 10x, in the searching process). A watched save now
    hands the warmer its notes' paths and the round reads those notes' points alone; a full sync (or a hand-off)
    still reads every point. Through the search function's own container and store, as `kbsearch serve` builds
    them; the oracle is a recording stand-in (what the warmer asks of it is the contract under test)."""
    from kbsearch_tools.local.live import LiveIndex
    from kbsearch_tools.oracle import PassageWarmer

    kb = tmp_path / "kb"
    kb.mkdir()
    for name in ("alpha", "beta", "gamma"):
        (kb / f"{name}.md").write_text(f"# {name.title()}\n\n{name} text about backups\n\n## More\n\n{name} more\n")
    app = load_search_app(QDRANT_PATH=str(tmp_path / "q"), EMBEDDING_API_KEY="")
    live = LiveIndex(app.module.api.container)
    synced: list[list[str] | None] = []
    live.after_sync.append(synced.append)
    assert live.full(str(kb)).error is None and synced == [None]
    (kb / "beta.md").write_text("# Beta\n\nbeta text changed\n")
    assert live.changes(kb, ["beta.md"]).error is None and synced[-1] == ["beta.md"]
    assert {p["path"] for p in live.payloads(["beta.md"])} == {"beta.md"}
    assert {p["path"] for p in live.payloads(None)} == {"alpha.md", "beta.md", "gamma.md"}

    asked: list[set[str]] = []
    done = threading.Event()

    class Recording:  # what PassageWarmer asks of the oracle
        def idle(self, quiet_s: float) -> bool:
            return True

        def uncached_passages(self, payloads: Any, max_tokens: int) -> list[str]:
            asked.append({p["path"] for p in payloads})
            done.set()
            return []

    warmer = PassageWarmer(Recording(), live.payloads, 300).start()  # type: ignore[arg-type]
    try:
        live.after_sync.append(warmer.wake)
        (kb / "gamma.md").write_text("# Gamma\n\ngamma changed\n")
        assert live.changes(kb, ["gamma.md"]).error is None
        assert done.wait(30) and asked == [{"gamma.md"}]
        done.clear()
        assert live.full(str(kb)).error is None
        assert done.wait(30) and asked[-1] == {"alpha.md", "beta.md", "gamma.md"}
    finally:
        warmer.stop()
        app.module.api.container.close()
