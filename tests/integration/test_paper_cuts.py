"""The paper cuts a new user hits, each through the interface that user touches: `kbsearch index/search/invoke/
serve` as processes, the search handler with API Gateway events, the OpenAPI document and the README."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kbsearch_tools.cli import _ProgressBar
from kbsearch_tools.fakes import FakeProvider, provider_env
from kbsearch_tools.local.apigw import HttpRequest, build_event
from kbsearch_tools.local.process import serve_process
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env

EVENTS = ROOT / "events"
URL_SETTINGS = ["QDRANT_URL", "EMBEDDING_URL", "EMBEDDING_FALLBACK_URL", "RERANKER_URL", "RERANKER_FALLBACK_URL",
                "EXPANSION_URL", "KB_BASE_URL"]  # fmt: skip
BAD_URLS = {
    "htp://x": "has the scheme 'htp', not http or https",
    "qdrant.example.com:6333": "has the scheme 'qdrant.example.com'",
    "https://": "has no host",
    "https://x:99999": "is not a valid URL",
    "https://x:port": "is not a valid URL",
    "https://x y": "contains whitespace",
    " https://x": "contains whitespace",
    "ftp://x": "has the scheme 'ftp'",
    "x": "has no scheme",
    "https://[::1": "is not a valid URL",
}


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, check=False,
                          env=subprocess_env(**env), cwd=ROOT)  # fmt: skip


# -- URL settings ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", list(BAD_URLS))
@pytest.mark.timeout(2 * PROCESS_TIMEOUT_S + 30)
def test_a_bad_qdrant_url_is_one_message_naming_the_variable(value: str, tmp_path: Path) -> None:
    for args in (("index", str(ROOT / "sample-kb")), ("search", "snapshot")):
        proc = run(*args, QDRANT_URL=value, QDRANT_PATH=str(tmp_path / "q"))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[-1] == (f"kbsearch {args[0]}: error: invalid setting QDRANT_URL: {BAD_URLS[value]}"
                             + lines[-1].split(BAD_URLS[value], 1)[1]), lines  # fmt: skip
        assert value.strip() not in lines[-1] or value.strip() == "x"  # a URL may carry credentials: not echoed


@pytest.mark.parametrize("name", URL_SETTINGS)
def test_every_url_setting_is_checked_at_load(name: str, load_search_app) -> None:
    """In the handler: /health is alive, not ready, and names the variable; searches answer 503 not_configured."""
    call = load_search_app(**{name: "htp://x"})
    health = call(build_event(HttpRequest("GET", "/health", "", [], b""), "/health", {}, "dev"))
    body = json.loads(health["body"])
    assert health["statusCode"] == 200 and body["ready"] is False
    assert body["reasons"] == [f"invalid setting {name}: has the scheme 'htp', not http or https (expected "
                               "http(s)://host[:port][/path], or empty)"]  # fmt: skip
    search = call(build_event(HttpRequest("GET", "/search", "q=x", [], b""), "/search", {}, "dev"))
    assert search["statusCode"] == 503 and json.loads(search["body"])["error"] == "not_configured"


@pytest.mark.parametrize("value", ["", "http://127.0.0.1:6333", "https://xyz.cloud.qdrant.io:6333/",
                                   "http://[::1]:6333", "https://user:pw@host/path?x=1"])  # fmt: skip
def test_good_urls_pass(value: str) -> None:
    from kbsearch.config import Settings

    assert Settings(qdrant_url=value, kb_base_url=value).qdrant_url == value


# -- QDRANT_PATH ----------------------------------------------------------------------------------------------------


@pytest.mark.timeout(2 * PROCESS_TIMEOUT_S + 30)
@pytest.mark.parametrize("inside", [False, True])
def test_a_qdrant_path_that_is_a_file_is_named_not_taken_for_an_index_never_built(tmp_path: Path,
                                                                                 inside: bool) -> None:  # fmt: skip
    """`kbsearch search` said "collection 'kb' does not exist: run the indexer first", and the indexer then failed
    on a NotADirectoryError of a file inside the store."""
    file = tmp_path / "store.md"
    file.write_text("not a folder\n")
    path = file / "q" if inside else file
    search = run("search", "snapshot", QDRANT_PATH=str(path))
    index = run("index", str(ROOT / "sample-kb"), QDRANT_PATH=str(path))
    expected = f"QDRANT_PATH {path} is not a folder ({file} is a file): point it at a folder"
    assert search.returncode == 2 and "Traceback" not in search.stderr, search.stderr
    assert expected in search.stderr and "run the indexer" not in search.stderr, search.stderr
    assert index.returncode == 1 and "Traceback" not in index.stderr, index.stderr
    assert expected in index.stdout and "NotADirectoryError" not in index.stdout, index.stdout
    assert file.read_text() == "not a folder\n"


def test_an_empty_qdrant_path_is_refused_not_read_as_the_working_folder(tmp_path: Path) -> None:
    """QDRANT_PATH= (a variable meant to be set, empty) put the store in ./edge of wherever the command ran."""
    proc = subprocess.run([*KBSEARCH_CMD, "index", str(ROOT / "sample-kb")], capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, check=False, env=subprocess_env(QDRANT_PATH=""),
                          cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("kbsearch index: error: invalid setting QDRANT_PATH: "
                                                           "empty"), proc.stderr  # fmt: skip
    assert list(tmp_path.iterdir()) == []


# -- /health readiness ---------------------------------------------------------------------------------------------

HOLD = """
import sys, time
import qdrant_edge
shard = qdrant_edge.EdgeShard.load(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def held(bm25_store: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the embedded store open (as a running `kbsearch index` does)."""
    pytest.importorskip("qdrant_edge", reason="no Qdrant Edge wheel on this platform")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(bm25_store / "edge" / "kb")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    yield holder
    holder.terminate()
    holder.wait(timeout=30)


def health_of(call: Any) -> dict[str, Any]:
    result = call(build_event(HttpRequest("GET", "/health", "", [], b""), "/health", {}, "dev"))
    assert result["statusCode"] == 200
    return json.loads(result["body"])


def search_status(call: Any) -> tuple[int, dict[str, Any]]:
    result = call(build_event(HttpRequest("GET", "/search", "q=snapshot", [], b""), "/search", {}, "dev"))
    return result["statusCode"], json.loads(result["body"])


def test_health_is_not_ready_before_the_index_is_built(load_search_app, tmp_path: Path) -> None:
    call = load_search_app(QDRANT_PATH=str(tmp_path / "empty"))
    body = health_of(call)
    assert body["ready"] is False and "run the indexer first" in body["reasons"][0]
    status, answer = search_status(call)
    assert status == 503 and "run the indexer first" in answer["message"]


def test_health_says_another_process_holds_the_store_and_recovers(
    load_search_app, bm25_store: Path, held: subprocess.Popen[str]
) -> None:
    call = load_search_app(QDRANT_PATH=str(bm25_store))
    body = health_of(call)
    assert body["ready"] is False and f"pid {held.pid}" in body["reasons"][0], body
    status, answer = search_status(call)
    assert status == 503 and answer["message"].startswith("the local index is open in another process"), answer
    assert health_of(call)["reasons"] == [answer["message"]]  # the search's own finding, no second probe
    held.terminate()
    held.wait(timeout=30)
    status, _ = search_status(call)  # the store is free: the search opens it and answers
    assert status == 200
    assert health_of(call) == {**health_of(call), "ready": True, "reasons": []}


def test_health_makes_no_round_trip(load_search_app, bm25_store: Path) -> None:
    """Qdrant Cloud: /health asks nothing of Qdrant; a failed search makes it not ready (with the search's public
    reason) until a search answers."""
    from kbsearch_tools.fakes import FakeEndpoint

    qdrant = FakeEndpoint().start()
    try:
        qdrant.content_type, qdrant.status, qdrant.body = "application/json", 404, b'{"status": {"error": "no"}}'
        call = load_search_app(QDRANT_URL=qdrant.url)
        for _ in range(5):
            assert health_of(call)["ready"] is True
        assert qdrant.requests == []
        status, answer = search_status(call)
        assert status == 503 and health_of(call)["reasons"] == [answer["message"]]
        qdrant.status = 200

        def empty(method: str, path: str) -> tuple[int, bytes, str] | None:  # one empty list per search sent
            sent = qdrant.requests[-1].body
            n = len(sent.get("searches") or []) if isinstance(sent, dict) else 0
            if path.endswith("/points/query/batch"):
                return 200, json.dumps({"result": [{"points": []}] * n}).encode(), "application/json"
            return 200, b'{"result": {"points": []}}', "application/json"

        qdrant.responder = empty
        assert search_status(call)[0] == 200
        searched = len(qdrant.requests)
        for _ in range(5):
            assert health_of(call)["ready"] is True
        # five probes: at most one metadata read (the last sync's time, cached a minute), never one per probe
        assert [r.path for r in qdrant.requests[searched:]] in ([], ["/collections/kb"])
    finally:
        qdrant.stop()


def test_invoke_search_says_the_known_cause(bm25_store: Path, held: subprocess.Popen[str]) -> None:
    proc = run("invoke", "SearchFunction", "--event", str(EVENTS / "search.json"), QDRANT_PATH=str(bm25_store))
    result = json.loads(proc.stdout)
    assert result["statusCode"] == 503, result
    assert json.loads(result["body"])["message"].startswith("the local index is open in another process")


def test_search_counts_its_results_in_english(bm25_store: Path) -> None:
    lines = {n: run("search", "qdrant snapshot", "--top-k", str(n), QDRANT_PATH=str(bm25_store)).stdout.splitlines()[0]
             for n in (1, 2)}  # fmt: skip
    assert lines[1].startswith("1 result for 'qdrant snapshot' in "), lines
    assert lines[2].startswith("2 results for 'qdrant snapshot' in "), lines


def test_invoke_indexer_without_kb_source_names_the_setting(tmp_path: Path) -> None:
    proc = run("invoke", "IndexerFunction", "--event", str(EVENTS / "indexer_schedule.json"),
               QDRANT_PATH=str(tmp_path / "q"))  # fmt: skip
    result = json.loads(proc.stdout)
    assert proc.returncode == 1 and "s3:///" not in proc.stdout, proc.stdout
    assert result["errorMessage"] == "missing required setting KB_SOURCE: set the environment variable KB_SOURCE"


# -- kbsearch serve's address ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_on_a_port_that_is_none_is_a_usage_error(port: str) -> None:
    """--port 99999 was an OverflowError's traceback from socket.bind."""
    proc = run("serve", "--port", port)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"kbsearch serve: error: argument --port: expected a port 0-65535 (0 picks a free one), got {port!r}"
    )


def serve_refused(args: list[str], cwd: Path, **env: str) -> tuple[str, int, str]:
    """`kbsearch serve ARGS`: (its first stdout line, "" when it ended without one; its exit code; its stderr). A
    server that starts listening (the banner) is killed."""
    proc = subprocess.Popen([*KBSEARCH_CMD, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env=subprocess_env(**env))  # fmt: skip
    try:
        banner = proc.stdout.readline() if proc.stdout else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate(timeout=PROCESS_TIMEOUT_S)
    return banner, proc.returncode, stderr


@pytest.mark.parametrize("host", ["", " "])
def test_serve_on_an_empty_host_is_a_usage_error_never_every_interface(tmp_path: Path, host: str) -> None:
    """Round 21: `kbsearch serve --host "$HOST"` with HOST unset listened on every interface (the socket takes an
    empty address for 0.0.0.0), without the loopback's Host check, and said so only as `http://:3000`; the default is
    this machine only (the class of round 18's `kbsearch mcp --scope ""`)."""
    banner, returncode, stderr = serve_refused(["--host", host, "--port", "0"], ROOT, QDRANT_PATH=str(tmp_path / "q"))
    assert banner == "" and returncode == 2, banner
    assert stderr.strip().splitlines()[-1] == (
        f"kbsearch serve: error: argument --host: expected an address to listen on, got {host!r}: an empty one is "
        "every interface; write 0.0.0.0 to mean that"
    ), stderr


@pytest.mark.parametrize("watch", [["--watch"], ["--watch", ""]])
def test_serve_watch_naming_no_folder_never_watches_the_working_folder(tmp_path: Path, watch: list[str]) -> None:
    """Round 21: `kbsearch serve --watch` with KB_SOURCE unset, or `--watch "$KB"` with KB unset, watched and
    indexed the working folder (`Path("")` is `.`, so the check for "nothing" never held): a home folder's notes
    served, public, to whoever asked."""
    (tmp_path / "private.md").write_text("# Private\nnot for the KB\n", encoding="utf-8")
    args = ["--port", "0", "--template", str(ROOT / "template.yaml"), *watch]
    banner, returncode, stderr = serve_refused(args, tmp_path, QDRANT_PATH=str(tmp_path / "q"))
    assert banner == "" and returncode == 2, banner
    assert stderr.strip().splitlines()[-1] == (
        "kbsearch serve: error: --watch needs a KB folder (got 'nothing'): pass --watch FOLDER or set KB_SOURCE to a "
        "folder; an S3 KB is synced by its S3 events when deployed"
    ), stderr
    assert not (tmp_path / "q" / "edge" / "kb").exists(), "nothing indexed"


def test_serve_on_a_port_in_use_names_it_and_what_to_do(tmp_path: Path) -> None:
    """It said only "[Errno 98] Address already in use"."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run("serve", "--port", str(port), QDRANT_PATH=str(tmp_path / "q"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"kbsearch serve: error: cannot listen on 127.0.0.1:{port}: Address already in use (another kbsearch "
        "serve?): stop it, or pass another --port (0 picks a free one)"
    ), proc.stderr


# -- kbsearch mcp's options -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", ["inf", "nan", "-1", "1e12", "soon"])
def test_mcp_idle_close_takes_seconds_a_timer_can_wait(seconds: str) -> None:
    """--idle-close inf answered the first message, then a thread's OverflowError traceback; nan and -1 were taken
    as 0 (kept open) without a word."""
    proc = run("mcp", "--kb", str(ROOT / "sample-kb"), "--idle-close", seconds)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "kbsearch mcp: error: argument --idle-close: expected seconds from 0 (keeps the index open) to 86400, got "
        f"{seconds!r}"
    ), proc.stderr


def test_mcp_on_a_kb_folder_that_is_not_there_says_so_at_start(tmp_path: Path) -> None:
    """It started, and every kb_get_note answered "the knowledge base cannot be read right now; try again shortly"."""
    missing = tmp_path / "no-such-kb"
    proc = run("mcp", "--kb", str(missing), QDRANT_PATH=str(tmp_path / "q"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    said = proc.stderr.strip().splitlines()[-1]
    assert said == f"kbsearch mcp: error: KB folder {missing} does not exist", proc.stderr


@pytest.mark.parametrize("local", [["--kb", "sample-kb"], ["--scope", "hr"], ["--idle-close", "0"]])
def test_mcp_remote_with_a_local_option_is_a_usage_error(local: list[str]) -> None:
    """--remote forwards to a deployment, which reads its own KB with the API key's groups: a local option given
    with it was dropped without a word."""
    proc = run("mcp", "--remote", "http://127.0.0.1:9", *local)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"kbsearch mcp: error: {local[0]} is for a local server; with --remote the deployment reads its own KB "
        "with the API key's groups"
    ), proc.stderr


# -- kbsearch bench's numbers ---------------------------------------------------------------------------------------

#: Each was taken and failed deep in the benchmark (a traceback: a median of nothing, a division by zero, the
#: settings model refusing it) or ran on nonsense (0 of -1 requests answered, exit 0; a price of NaN).
BAD_BENCH_NUMBERS = [
    ("index", "--runs", "0", "expected an integer from 1 up"),
    ("coldstart", "--runs", "-1", "expected an integer from 1 up"),
    ("search", "--queries", "0", "expected an integer from 1 up"),
    ("search", "--chunks", "nan", "expected an integer from 1 up"),
    ("search", "--dims", "0", "expected an integer from 32 to 4096"),
    ("search", "--budget-s", "nan", "expected seconds from 0.001 to 28"),
    ("search", "--budget-s", "-1", "expected seconds from 0.001 to 28"),
    ("search", "--latency-ms", "inf", "expected a number from 0 up"),
    ("load", "--requests", "-1", "expected an integer from 1 up"),
    ("freshness", "--singles", "-1", "expected an integer from 1 up"),
    ("freshness", "--window-s", "nan", "expected a number from 0 up"),
]


@pytest.mark.parametrize(("kind", "option", "value", "expected"), BAD_BENCH_NUMBERS)
def test_bench_numbers_out_of_range_are_usage_errors(kind: str, option: str, value: str, expected: str) -> None:
    proc = run("bench", kind, f"{option}={value}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"kbsearch bench: error: argument {option}: {expected}, got {value!r}"
    ), proc.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["cost", "--price", "embedding=nan"], "'embedding=nan'"),
    (["cost", "--price", "embedding=-1"], "'embedding=-1'"),
    (["cost", "--price", "embeddings=1"], "'embeddings=1'"),
    (["store", "--engines", "edge,bogus"], "--engines takes edge, local or both (edge,local), got 'edge,bogus'"),
])  # fmt: skip
def test_bench_prices_and_engines_that_are_none_are_usage_errors(args: list[str], expected: str) -> None:
    proc = run("bench", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("kbsearch bench: error: ") and expected in proc.stderr


def test_bench_runs_given_are_the_runs_made(bm25_store: Path) -> None:
    """`kbsearch bench legs --runs 5` ran 3: a kind's own default (3) replaced the option whenever it held the
    general one (5), as --queries 200 became 30, 50 or 60."""
    proc = run("bench", "legs", "--runs", "5", "--queries", "2", "--json", QDRANT_PATH=str(bm25_store))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["runs"] == 5


# -- kbsearch eval's options ----------------------------------------------------------------------------------------

EVAL_KB = ["eval", "--kb", "sample-kb", "--queries", "eval/sample-kb-queries.yaml"]


@pytest.mark.parametrize(("args", "expected"), [
    # --limit 0 scored all 44 queries, --limit -1 all but the last (a slice)
    ([*EVAL_KB, "--limit", "0"], "argument --limit: expected an integer from 1 up, got '0'"),
    ([*EVAL_KB, "--limit", "-1"], "argument --limit: expected an integer from 1 up, got '-1'"),
    # a gap is never below -NaN: every class passed the gate
    (["eval", "--classes", "eval/classes.yaml", "--gate", "nan"], "argument --gate: expected a number from 0 to 1, "
                                                                  "got 'nan'"),
    # without --classes these were dropped: --gate gated nothing and exited 0
    ([*EVAL_KB, "--gate", "0.1"], "--gate is for --classes MANIFEST"),
    ([*EVAL_KB, "--only", "x"], "--only is for --classes MANIFEST"),
])  # fmt: skip
def test_eval_options_that_would_score_something_else_are_usage_errors(args: list[str], expected: str) -> None:
    proc = run(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"kbsearch eval: error: {expected}", proc.stderr


# -- kbsearch feedback and slack -------------------------------------------------------------------------------------


def test_feedback_export_into_an_empty_folder_name_or_from_a_votes_file_not_there_is_refused(tmp_path: Path) -> None:
    """--beir "" wrote corpus.jsonl, queries.jsonl and qrels/ into the working folder; --file with a typo exported
    "0 votes" with exit 0."""
    (tmp_path / "votes.jsonl").write_text("")
    beir = subprocess.run([*KBSEARCH_CMD, "feedback", "export", "--beir", "", "--kb", str(ROOT / "sample-kb"),
                           "--file", "votes.jsonl"], capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S,
                          check=False, env=subprocess_env(), cwd=tmp_path)  # fmt: skip
    missing = run("feedback", "export", "--beir", str(tmp_path / "set"), "--kb", "sample-kb", "--file",
                  str(tmp_path / "no-votes.jsonl"))  # fmt: skip
    assert beir.returncode == 2 and beir.stderr.strip().splitlines()[-1] == (
        "kbsearch feedback: error: --beir needs a folder to write the BEIR set into"
    ), beir.stderr
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1] == (
        f"kbsearch feedback: error: votes file {tmp_path / 'no-votes.jsonl'} does not exist"
    ), missing.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["votes.jsonl"]


@pytest.mark.parametrize(("args", "expected"), [
    (["--print-curl", "--press", "kb_more"], "--press needs the answer to press on: it cannot go with --print-curl"),
    (["--response-url", "http://127.0.0.1:9/r"], "--response-url is for --print-curl (kbsearch slack receives the "
                                                 "answers itself)"),
])  # fmt: skip
def test_slack_options_that_would_be_dropped_are_usage_errors(args: list[str], expected: str) -> None:
    proc = run("slack", "restore a snapshot", *args, SLACK_SIGNING_SECRET="local-secret")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"kbsearch slack: error: {expected}", proc.stderr


# -- serve without KB_SOURCE ---------------------------------------------------------------------------------------


def get_note(base: str, path: str) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "kb_get_note", "arguments": {"path": path}},
    }
    answer = httpx.post(f"{base}/mcp", json=body, timeout=60)
    assert answer.status_code == 200
    return answer.json()["result"]


def test_serve_without_kb_source_reads_notes_from_the_folder_the_index_was_built_from(tmp_path: Path) -> None:
    store = tmp_path / "q"
    proc = run("index", "sample-kb", QDRANT_PATH=str(store))  # a relative folder: recorded as an absolute one
    assert proc.returncode == 0, proc.stderr
    template = ("--template", str(ROOT / "template.yaml"))
    with serve_process(subprocess_env(QDRANT_PATH=str(store)), cwd=tmp_path, args=template) as server:  # elsewhere
        note = get_note(server.base_url, "en/Glossary.md")
    assert note["isError"] is False and note["structuredContent"]["title"]


def test_serve_without_kb_source_and_no_record_names_the_setting(tmp_path: Path) -> None:
    """An index that records no folder (built before this was recorded, or from S3)."""
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "none"))
    with serve_process(env, cwd=tmp_path, args=("--template", str(ROOT / "template.yaml"))) as server:
        note = get_note(server.base_url, "en/Glossary.md")
    text = note["content"][0]["text"]
    assert note["isError"] is True and "KB_SOURCE is not set" in text and "try again" not in text


# -- Ctrl-C during kbsearch index ---------------------------------------------------------------------------------


@pytest.fixture
def slow_embedder() -> Iterator[FakeProvider]:
    fake = FakeProvider("deepinfra", api_key="di-test-key", latency={"embeddings": 0.5}).start()
    yield fake
    fake.stop()


def start_index(slow_embedder: FakeProvider, store: Path, *extra: str) -> subprocess.Popen[str]:
    env = subprocess_env(QDRANT_PATH=str(store), EMBEDDING_DIMENSIONS="64", EMBEDDING_BATCH_SIZE="2",
                         **provider_env(slow_embedder, roles=["EMBEDDING"]))  # fmt: skip
    process = subprocess.Popen([*KBSEARCH_CMD, "index", str(ROOT / "sample-kb"), *extra], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while not slow_embedder.calls("embeddings") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slow_embedder.calls("embeddings"), "the run never started embedding"
    return process


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S + 30)  # the interrupted run, the run that finishes it, the wait
def test_ctrl_c_during_index_prints_one_line_and_the_partial_summary(slow_embedder: FakeProvider, tmp_path: Path,
                                                                    as_json: bool) -> None:  # fmt: skip
    process = start_index(slow_embedder, tmp_path / "q", *(["--json"] if as_json else []))
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=PROCESS_TIMEOUT_S)
    assert process.returncode == 130, (out, err)
    assert err.strip().splitlines() == [
        "kbsearch index: interrupted; stopping after the notes in flight (Ctrl-C again to stop now)"
    ], err
    if as_json:
        report = json.loads(out)
        assert report["incomplete"] is True and report["remaining"] > 0 and report["error"] is None
    else:
        assert out.startswith("sync INCOMPLETE: ") and "notes left for the next run" in out
    slow_embedder.latency = {}
    again = run("index", str(ROOT / "sample-kb"), "--json", QDRANT_PATH=str(tmp_path / "q"), EMBEDDING_DIMENSIONS="64",
                **provider_env(slow_embedder, roles=["EMBEDDING"]))  # fmt: skip
    assert again.returncode == 0, again.stderr  # the store is consistent: the next run carries on
    finished = json.loads(again.stdout)
    assert finished["incomplete"] is False and finished["added"] > 0


@pytest.mark.timeout(2 * PROCESS_TIMEOUT_S + 30)
def test_a_second_ctrl_c_stops_at_once_with_one_line(slow_embedder: FakeProvider, tmp_path: Path) -> None:
    process = start_index(slow_embedder, tmp_path / "q")
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=PROCESS_TIMEOUT_S)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "kbsearch index: interrupted"


@pytest.mark.timeout(2 * PROCESS_TIMEOUT_S + 30)
def test_ctrl_c_at_a_terminal_during_a_large_index_stops_as_a_small_one_does(slow_embedder: FakeProvider,
                                                                           tmp_path: Path) -> None:  # fmt: skip
    """A folder of PARSE_PROCESS_FROM notes or more is parsed in a second process, which a terminal's Ctrl-C reaches
    too (the whole foreground process group): it used to die with a traceback of its own (or send the interrupt
    back as the indexer's), so the one line and the partial summary of a small folder became a traceback and
    "interrupted"; and `kbsearch bench search` hung for good at exit, waiting for it."""
    from kbsearch.indexer import PARSE_PROCESS_FROM

    kb = tmp_path / "kb"
    kb.mkdir()
    for i in range(PARSE_PROCESS_FROM + 20):
        (kb / f"note {i}.md").write_text(f"# Note {i}\n\nword{i} zebra\n", encoding="utf-8")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), EMBEDDING_DIMENSIONS="64", EMBEDDING_BATCH_SIZE="2",
                         **provider_env(slow_embedder, roles=["EMBEDDING"]))  # fmt: skip
    process = subprocess.Popen([*KBSEARCH_CMD, "index", str(kb)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while len(slow_embedder.calls("embeddings")) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)  # the parsing process has parsed ahead and waits for its next batch
        assert len(slow_embedder.calls("embeddings")) >= 8, "the run never got to embedding"
        os.killpg(process.pid, signal.SIGINT)  # what a terminal does: the indexer and its parsing process
        out, err = process.communicate(timeout=PROCESS_TIMEOUT_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, (out, err)
    assert err.strip().splitlines() == [
        "kbsearch index: interrupted; stopping after the notes in flight (Ctrl-C again to stop now)"
    ], err
    assert out.startswith("sync INCOMPLETE: ") and "notes left for the next run" in out, out
    slow_embedder.latency = {}
    again = run("index", str(kb), "--json", QDRANT_PATH=str(tmp_path / "q"), EMBEDDING_DIMENSIONS="64",
                **provider_env(slow_embedder, roles=["EMBEDDING"]))  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["incomplete"] is False


# -- OpenAPI, README, progress bar --------------------------------------------------------------------------------


def test_openapi_has_readable_operation_ids_and_no_422_without_input(load_search_app, bm25_store: Path) -> None:
    call = load_search_app(QDRANT_PATH=str(bm25_store))
    doc = json.loads(call(build_event(HttpRequest("GET", "/openapi.json", "", [], b""), "/openapi.json", {}, "dev"))
                     ["body"])  # fmt: skip
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z][A-Za-z]*", i) for i in ids), ids
    assert "422" not in doc["paths"]["/health"]["get"]["responses"]
    assert (
        "422" in doc["paths"]["/search"]["get"]["responses"] and "422" in doc["paths"]["/search"]["post"]["responses"]
    )


def test_readme_mcp_json_names_the_default_stage() -> None:
    from kbsearch_tools.local.template import load_template

    stage = load_template(ROOT / "template.yaml")["Parameters"]["Stage"]["Default"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(\{\n  \"mcpServers\".*?)```", readme, re.DOTALL)]
    assert blocks, "no .mcp.json example in the README"
    for block in blocks:
        for server in block["mcpServers"].values():
            assert server["url"].endswith(f"/{stage}/mcp"), server["url"]


def test_the_first_eta_waits_until_it_means_something() -> None:
    bar = _ProgressBar()
    assert bar.eta(1, 300, now=100.0) == "  --"  # the first report: nothing measured yet
    assert bar.eta(3, 300, now=100.2) == "  --"  # too few notes, too little time
    assert bar.eta(8, 300, now=100.5) == "  --"  # under a second
    assert bar.eta(11, 300, now=102.0) == "  58s"  # 10 notes in 2 s since the first report, 289 left


def test_progress_off_a_terminal_is_a_plain_line_a_minute_and_nothing_for_a_short_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With stderr a log (CI, `2> file`), `kbsearch index` drew no progress at all: the vault's first index with
    `--oracle e5` (~30 minutes) said nothing until its summary. It writes a plain line each minute of work now, and
    none in a run shorter than that (so a short run's stderr stays empty)."""
    bar = _ProgressBar()
    assert not bar.enabled  # capsys's stderr is no terminal
    for done, now in [(1, 0.0), (50, 30.0), (100, 59.9), (120, 61.0), (200, 90.0), (299, 125.0), (300, 200.0)]:
        bar(done, 300, "en/Note.md", now=now)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["120/300 notes (40%), eta 92s", "299/300 notes (99%), eta 0s"], lines
    short = _ProgressBar()
    for done, now in [(1, 0.0), (150, 20.0), (300, 40.0)]:
        short(done, 300, "en/Note.md", now=now)
    assert capsys.readouterr().err == ""


def test_progress_of_a_second_run_on_one_bar_starts_its_own_minute_and_rate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`kbsearch eval` indexes each corpus of its classes through one bar: the second index's first note, a minute
    after the first index began, was logged as `1/534 notes (0%), eta --` (its CI log). A run on the bar with another
    total, or counting from below where the last stopped, starts its own minute and its own rate."""
    bar = _ProgressBar()
    for done, now in [(1, 0.0), (349, 70.0)]:  # the first corpus: one line at 70 s
        bar(done, 349, "en/a.md", now=now)
    for done, now in [(1, 100.0), (300, 150.0), (400, 161.0)]:  # the second: its first minute ends at 160 s
        bar(done, 534, "ru/b.md", now=now)
    assert capsys.readouterr().err.splitlines() == ["400/534 notes (74%), eta 20s"]
