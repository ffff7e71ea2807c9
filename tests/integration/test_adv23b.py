"""Round 23b's adversarial pass (RELIABILITY.md, "Round 23b"): the embedded store's damage that Qdrant Edge aborts
on or answers wrong, the ``--remote`` MCP bridge against a loopback remote answering whatever it is given,
``kbsearch slack --press`` and ``kbsearch eval`` of exported votes, through ``kbsearch`` processes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.fakes import FakeEndpoint
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env

API_KEY = "adv23b-test-key"


def request(id_: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        message["params"] = params
    return message


def line(message: Any) -> bytes:
    return json.dumps(message).encode() + b"\n"


def _strict_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def bridge(remote: FakeEndpoint, messages: list[Any], cmd: list[str] | None = None) -> tuple[list[Any], str]:
    """Every line ``kbsearch mcp --remote`` writes for ``messages``, parsed as a strict client parses (NaN and
    Infinity are no JSON), and its stderr; it must end as stdin does."""
    proc = subprocess.run([*(cmd or KBSEARCH_CMD), "mcp", "--remote", remote.url], capture_output=True,
                          input=b"".join(line(m) for m in messages), env=subprocess_env(KB_API_KEY=API_KEY), cwd=ROOT,
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    lines = [raw for raw in proc.stdout.split(b"\n") if raw]
    return [json.loads(raw, parse_constant=_strict_constant) for raw in lines], stderr


# -- the --remote bridge ------------------------------------------------------------------------------------------------

OK = b'{"jsonrpc": "2.0", "id": 1, "result": {"said": "ok"}}'
READABLE = {
    "a UTF-8 BOM before the JSON": (b"\xef\xbb\xbf" + OK, "application/json"),
    "events named application/json": (b"event: message\ndata: " + OK + b"\n\n", "application/json"),
    "JSON named text/event-stream": (OK, "text/event-stream"),
}


@pytest.mark.parametrize(("body", "content_type"), READABLE.values(), ids=READABLE.keys())
def test_the_remote_bridge_reads_an_answer_with_a_bom_or_a_content_type_that_lies(
    body: bytes, content_type: str
) -> None:
    """A remote (a proxy, a gateway of another make) answering with a BOM before its JSON, or naming JSON as an event
    stream or the reverse: the answer was there, but the bridge dropped it and told the client "answered HTTP 200".
    The body decides what it is when it shows (``{``/``[`` or an event's field), and a BOM is ignored."""
    remote = FakeEndpoint().start()
    remote.responder = lambda _method, _path: (200, body, content_type)
    try:
        answers, _ = bridge(remote, [request(1, "ping")])
    finally:
        remote.stop()
    assert answers == [json.loads(OK)], answers


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-1e999"])
def test_the_remote_bridge_never_writes_a_line_no_strict_client_can_parse(value: str) -> None:
    """A remote whose answer holds NaN, Infinity or a number past a double's range (Python's json reads them):
    the bridge wrote ``NaN``/``Infinity`` on the line, which no strict JSON parser (a JavaScript client's) reads, so
    the request was never answered. It is now that request's -32001, saying what was wrong."""
    body = b'{"jsonrpc": "2.0", "id": 1, "result": {"score": %s}}' % value.encode()
    remote = FakeEndpoint().start()
    remote.responder = lambda _method, _path: (200, body, "application/json")
    try:
        answers, _ = bridge(remote, [request(1, "ping")])
    finally:
        remote.stop()
    assert len(answers) == 1 and answers[0]["id"] == 1 and answers[0]["error"]["code"] == -32001, answers
    assert "NaN or Infinity" in answers[0]["error"]["message"], answers


#: ``kbsearch mcp`` with a fault nobody foresaw inside the bridge: the module's reading of the remote's answer fails
#: on an answer holding ``boom`` (what a bug in the bridge would do). Injected below the bridge's loop, never in it.
FAULTY_BRIDGE = [
    KBSEARCH_CMD[0], "-c",
    "import sys\n"
    "from kbsearch_tools import mcp_stdio\n"
    "from kbsearch_tools.cli import main\n"
    "real = mcp_stdio._messages\n"
    "def faulty(content_type, body):\n"
    "    if b'boom' in body:\n"
    "        raise KeyError('boom')\n"
    "    return real(content_type, body)\n"
    "mcp_stdio._messages = faulty\n"
    "sys.exit(main(sys.argv[1:]))\n",
]  # fmt: skip


def test_a_failure_nobody_foresaw_in_the_bridge_answers_its_requests_and_the_bridge_goes_on() -> None:
    """Round 22b left the bridge without a catch-all: an exception nobody foresaw in it ended ``kbsearch mcp`` with
    one line and exit 2, the request unanswered and every later one too (the assistant's server gone). The line's
    requests now get a -32603 each (a batch's in one array) and the next request is forwarded as ever."""
    bodies = [b'{"jsonrpc": "2.0", "id": 1, "result": {"x": "boom"}}', OK.replace(b'"id": 1', b'"id": 2')]
    remote = FakeEndpoint().start()
    remote.responder = lambda _method, _path: (200, bodies.pop(0), "application/json")
    try:
        answers, stderr = bridge(remote, [request(1, "ping"), request(2, "ping")], cmd=FAULTY_BRIDGE)
    finally:
        remote.stop()
    assert [a["id"] for a in answers] == [1, 2], answers
    assert answers[0]["error"]["code"] == -32603 and "KeyError" in answers[0]["error"]["message"], answers
    assert answers[1] == {"jsonrpc": "2.0", "id": 2, "result": {"said": "ok"}}, answers
    assert "the bridge failed on a message (KeyError)" in stderr, stderr


def test_the_bridge_stops_quietly_when_the_client_closed_its_end_mid_event_stream() -> None:
    """A remote answering with an event stream of several messages (a log notification, then the response) to a
    client that has closed its end (an assistant quitting): the bridge's write of the first message failed outside
    the loop's guard, and ``kbsearch mcp`` ended on ``error: [Errno 32] Broken pipe``, exit 2. It stops quietly as it
    does when the response itself cannot be written."""
    notice = b'{"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}'
    remote = FakeEndpoint().start()
    remote.responder = lambda _method, _path: (200, b"data: " + notice + b"\n\ndata: " + OK + b"\n\n",
                                               "text/event-stream")  # fmt: skip
    proc = subprocess.Popen([*KBSEARCH_CMD, "mcp", "--remote", remote.url], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(KB_API_KEY=API_KEY),
                            cwd=ROOT)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdout.close()  # the client is gone: nothing reads what the bridge writes
        proc.stdin.write(line(request(1, "ping")))
        proc.stdin.flush()
        code = proc.wait(timeout=PROCESS_TIMEOUT_S)
        stderr = proc.stderr.read().decode("utf-8", "replace")
    finally:
        remote.stop()
        if proc.poll() is None:
            proc.kill()
    assert code == 0 and "Broken pipe" not in stderr and "Traceback" not in stderr, (code, stderr)


# -- the embedded store: damage Qdrant Edge aborts on -------------------------------------------------------------------


def kbsearch(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S,
                          check=False, env=subprocess_env(QDRANT_PATH=str(store)))  # fmt: skip


def index(store: Path, kb: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = kbsearch(store, "index", str(kb), "--json", *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


@pytest.mark.timeout(8 * PROCESS_TIMEOUT_S)
def test_a_store_edge_aborts_on_is_named_damaged_with_rebuild_from_the_next_run_on(tmp_path: Path) -> None:
    """A bit flipped in a segment's ``mutable_id_tracker.mappings`` (its length field: Edge then asks for a 48 GB
    allocation) makes Qdrant Edge abort the process while loading the shard: no Python code can catch that, and
    every later ``search``, ``index`` and ``serve`` aborted the same way (exit -6, Rust's message, no way out named).
    The first run still aborts; it leaves the shard's opening mark, so the next run loads the shard in a child
    process first and, when that dies too, says the store is damaged and names ``--rebuild``, which rebuilds it."""
    kb, store = ROOT / "sample-kb", tmp_path / "q"
    code, _, stderr = index(store, kb)
    assert code == 0, stderr
    for mappings in (store / "edge" / "kb" / "segments").glob("*/mutable_id_tracker.mappings"):
        data = bytearray(mappings.read_bytes())
        data[12] ^= 0x80
        mappings.write_bytes(bytes(data))
    first = kbsearch(store, "search", "snapshot")
    assert first.returncode < 0, (first.returncode, first.stderr[-2000:])  # the abort itself: out of our hands
    assert (store / "edge" / "kb.opening").is_file()
    for args in (("search", "snapshot"), ("search", "snapshot")):  # every run from then on, not only the next
        proc = kbsearch(store, *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr[-2000:])
        assert "Qdrant Edge aborts loading its files (SIGABRT" in proc.stderr, proc.stderr
        assert "kbsearch index --rebuild" in proc.stderr, proc.stderr
    code, report, stderr = index(store, kb)
    assert code == 1 and "aborts loading its files" in report["error"], (report, stderr)
    assert "kbsearch index --rebuild" in report["error"], report["error"]
    code, report, stderr = index(store, kb, "--rebuild")
    assert code == 0 and report["error"] is None and report["rebuilt"], (report, stderr)
    assert not (store / "edge" / "kb.opening").exists()
    assert kbsearch(store, "search", "snapshot").returncode == 0


def test_an_opening_mark_left_by_a_killed_opener_costs_one_probe_and_the_store_opens(tmp_path: Path) -> None:
    """The mark is left by any process that died while loading the shard, a ``kill -9`` too: then the files are
    whole, the child loads them, and the store opens as ever (the mark gone)."""
    kb, store = ROOT / "sample-kb", tmp_path / "q"
    code, _, stderr = index(store, kb)
    assert code == 0, stderr
    (store / "edge" / "kb.opening").write_text("12345\n")
    proc = kbsearch(store, "search", "snapshot", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["results"], proc.stderr
    assert not (store / "edge" / "kb.opening").exists()


@pytest.mark.timeout(6 * PROCESS_TIMEOUT_S)
def test_a_zeroed_bm25_page_is_named_damaged_never_zero_hits(tmp_path: Path) -> None:
    """A zeroed page of the sparse vectors (``vector_storage-bm25/store/page_0.dat``: a disk's lost writes) loads,
    and every search answered 0 hits from its lexical leg, exit 0, nothing said; a sync with no note changed said
    ``sync done``. At open the store now reads a sample of BM25 vectors back and searches with one: they read back
    empty, so the store is named damaged with ``--rebuild`` (search and index alike), which rebuilds it."""
    kb, store = ROOT / "sample-kb", tmp_path / "q"
    code, _, stderr = index(store, kb)
    assert code == 0, stderr
    proc = kbsearch(store, "search", "snapshot", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["results"], proc.stderr
    for page in (store / "edge" / "kb" / "segments").glob("*/vector_storage-bm25/store/page_0.dat"):
        page.write_bytes(bytes(page.stat().st_size))
    proc = kbsearch(store, "search", "snapshot", "--json")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, (proc.returncode, proc.stdout, proc.stderr)
    assert "BM25 (sparse) vectors read back empty" in proc.stderr and "kbsearch index --rebuild" in proc.stderr
    code, report, stderr = index(store, kb)
    assert code == 1 and "kbsearch index --rebuild" in report["error"], (report, stderr)
    code, report, stderr = index(store, kb, "--rebuild")
    assert code == 0 and report["error"] is None, (report, stderr)
    proc = kbsearch(store, "search", "snapshot", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["results"], proc.stderr


# -- kbsearch slack --press -------------------------------------------------------------------------------------------

SECRET = "adv23b-signing-secret-0123456789abcdef"


def test_kbsearch_slack_share_pressed_twice_posts_once_as_the_deployed_path_does(bm25_store: Path) -> None:
    """``kbsearch slack --press kb_share --press kb_share`` posted the answer to the channel twice: its presses carried
    no ``container.message_ts``, so the server keyed each press by its ``action_ts`` (round 22's fix keys Share by
    the message and the button's value, as Slack sends them). The local client now gives its answer message a ts
    as Slack does, so the second Share posts nothing, and the client says so."""
    from kbsearch_tools.local.process import serve_process

    env = subprocess_env(QDRANT_PATH=str(bm25_store), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1")
    with serve_process(env, cwd=ROOT) as server:
        proc = subprocess.run([*KBSEARCH_CMD, "slack", "--api", server.base_url, "--json", "--press", "kb_share",
                               "--press", "kb_share", "snapshot"], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    steps = json.loads(proc.stdout)
    presses = [s["message"] for s in steps if s["step"] == "pressed kb_share"]
    assert len(presses) == 2, steps
    assert presses[0].get("response_type") == "in_channel", presses[0]
    assert presses[1] == {"text": "(already shared from this answer: nothing posted again)"}, presses[1]


# -- kbsearch eval of exported votes ------------------------------------------------------------------------------------


def test_eval_of_exported_votes_applies_each_votes_filters(tmp_path: Path) -> None:
    """A 👍 cast on ``/kb type:runbook snapshot`` (and one on ``in:en/runbooks snapshot``) judges the runbook the
    best answer among runbooks; ``kbsearch eval --beir`` of the exported votes searched the whole KB, where a
    reference note outranks it for "snapshot", so each vote scored MRR 0.5 for an answer that was first. The export
    now carries each note's path and frontmatter, and eval searches each query with its vote's filters: 1.0."""
    runbook = "en/runbooks/Runbook - restore a Qdrant snapshot.md"
    votes = tmp_path / "votes.jsonl"
    records = [
        {"id": f"v{i}", "time": f"2026-12-05T00:00:0{i}+00:00", "query": "snapshot", "filters": filters, "page": 1,
         "hits": [{"path": runbook, "rank": 1}], "vote": "up", "voter": "0" * 32}
        for i, filters in enumerate([{"type": ["runbook"]}, {"path_prefix": "en/runbooks"}])
    ]  # fmt: skip
    votes.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "beir"
    export = subprocess.run([*KBSEARCH_CMD, "feedback", "export", "--beir", str(out), "--kb", str(ROOT / "sample-kb"),
                             "--file", str(votes), "--table", "", "--json"], capture_output=True, text=True, cwd=ROOT,
                            env=subprocess_env(), timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert export.returncode == 0 and json.loads(export.stdout)["queries"] == 2, export.stderr
    evaluated = subprocess.run([*KBSEARCH_CMD, "eval", "--beir", str(out), "--phases", "lexical", "--json"],
                               capture_output=True, text=True, cwd=ROOT, env=subprocess_env(),
                               timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["queries"] == 2 and report["phases"]["lexical"]["MRR@10"] == 1.0, report


# -- filters holding a control character --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["\u0001", "ops\u0000", "\u007f", "run\tbook"])
def test_a_filter_value_holding_a_control_character_is_a_422_never_zero_hits(
    bm25_store: Path, load_search_app: Any, value: str
) -> None:
    """``tags``/``type``/``status`` holding an ASCII control character (``/kb tag:`` + U+0001, a terminal's stray
    byte, ``%01`` in a URL): no stored value holds one (the invisible characters removed from both sides are Unicode
    format characters, not these), so the search answered 200 with 0 hits and nothing said, as an empty value did
    before round 20. It is a 422 naming the character now, POST and GET alike."""
    from urllib.parse import quote

    from kbsearch_tools.local.apigw import HttpRequest, build_event

    app = load_search_app(QDRANT_PATH=str(bm25_store), KB_SOURCE=str(ROOT / "sample-kb"))
    body = json.dumps({"query": "snapshot", "filters": {"tags": [value]}}).encode()
    post = build_event(HttpRequest("POST", "/search", "", [("Content-Type", "application/json")], body), "/search",
                       {}, "dev")  # fmt: skip
    get = build_event(HttpRequest("GET", "/search", f"q=snapshot&type={quote(value)}", [], b""), "/search", {}, "dev")
    for event in (post, get):
        result = app(event)
        assert result["statusCode"] == 422, result
        assert "control character" in result["body"], result["body"]
