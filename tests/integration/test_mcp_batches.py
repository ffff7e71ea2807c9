"""JSON-RPC batches, which MCP 2025-03-26 (and no other version) says a server MUST accept: ``POST /mcp`` through
API Gateway events (stateless: a request without ``MCP-Protocol-Version`` may be a 2025-03-26 client's) and
``kbsearch mcp`` over stdio as a subprocess (the session knows what its ``initialize`` negotiated), locally and
through the ``--remote`` bridge. Raw JSON-RPC: the official SDK (2.x) sends no batches. JSON-RPC 2.0's rules, each
checked: an empty array is one error object; only notifications, no answer; every request its own response with its
id; an invalid member its own -32600; ``initialize`` never in a batch; the batch bounded in members, calls and time."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.fakes import FakeEndpoint, FakeProvider, provider_env
from kbsearch_tools.local.apigw import HttpRequest, build_event, parse_result
from kbsearch_tools.local.process import serve_process
from kbsearch_tools.local.runtime import LambdaContext
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, index_bm25, subprocess_env
from tests.integration.test_slow_source import _SlowQdrant

API_KEY = "batch-test-key"
#: The documented limits (README, RELIABILITY): the version with batches, members and calls a batch may hold.
BATCH_VERSION = "2025-03-26"
MAX_BATCH_MEMBERS = 32
MAX_BATCH_CALLS = 8


def request(id_: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        message["params"] = params
    return message


def search(id_: Any, query: str) -> dict[str, Any]:
    return request(id_, "tools/call", {"name": "kb_search", "arguments": {"query": query, "top_k": 2}})


def initialize(id_: Any, version: str) -> dict[str, Any]:
    return request(id_, "initialize", {"protocolVersion": version, "capabilities": {},
                                       "clientInfo": {"name": "batch-test", "version": "1"}})  # fmt: skip


NOTIFICATION = {"jsonrpc": "2.0", "method": "notifications/initialized"}
#: One batch of every kind of member: requests of three methods (one unknown), a notification, a client's response,
#: members that are no request (a number, an object without jsonrpc, a nested batch).
MIXED = [
    request(1, "ping"),
    NOTIFICATION,
    search("s", "ротация ключей"),
    42,
    {"id": 5, "method": "ping"},
    [request(6, "ping")],
    request(7, "no/such/method"),
    {"jsonrpc": "2.0", "id": 99, "result": {}},
    request(8, "tools/list"),
]


def check_mixed(answers: Any) -> None:
    """The answers to :data:`MIXED`: one array, each request's response under its own id, in order."""
    assert isinstance(answers, list), answers
    assert [a.get("id") for a in answers] == [1, "s", None, 5, None, 7, 8], answers
    ping, found, number, no_version, nested, unknown, tools = answers
    assert ping["result"] == {}
    assert found["result"]["isError"] is False and found["result"]["structuredContent"]["results"]
    for invalid in (number, no_version, nested):
        assert invalid["error"]["code"] == -32600, invalid
    assert unknown["error"]["code"] == -32601
    assert {t["name"] for t in tools["result"]["tools"]} == {"kb_search", "kb_get_note", "kb_list"}


# -- over HTTP (API Gateway events) ---------------------------------------------------------------------------------
@pytest.fixture
def app(load_search_app, bm25_store: Path):
    return load_search_app(QDRANT_PATH=str(bm25_store), KB_SOURCE=str(ROOT / "sample-kb"))


def post(app, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    hdrs = [("Content-Type", "application/json"), *(headers or {}).items()]
    event = build_event(HttpRequest("POST", "/mcp", "", hdrs, json.dumps(body).encode()), "/mcp", {}, "dev")
    result = parse_result(app(event))
    return result.status, json.loads(result.body) if result.body else None


def test_a_batch_without_a_version_header_is_answered_member_by_member(app) -> None:
    status, answers = post(app, MIXED)
    assert status == 200
    check_mixed(answers)
    status, answers = post(app, MIXED, {"MCP-Protocol-Version": BATCH_VERSION})  # named, as the bridge sends it
    assert status == 200
    check_mixed(answers)


@pytest.mark.parametrize("version", ["2024-11-05", "2025-06-18", "2025-11-25", "2026-07-28", "2031-01-01"])
def test_a_batch_from_a_client_of_another_version_is_refused_naming_the_version_that_allows_them(
    app, version: str
) -> None:
    status, answer = post(app, [request(1, "ping"), request(2, "tools/list")], {"MCP-Protocol-Version": version})
    assert status == 400 and isinstance(answer, dict) and answer["id"] is None, answer
    message = answer["error"]["message"]
    assert answer["error"]["code"] == -32600 and BATCH_VERSION in message and version in message


def test_an_empty_batch_is_one_error_object(app) -> None:
    status, answer = post(app, [])
    assert status == 400 and isinstance(answer, dict), answer
    assert answer["id"] is None and answer["error"]["code"] == -32600 and "empty" in answer["error"]["message"]


def test_a_batch_of_notifications_and_responses_only_gets_an_empty_202(app) -> None:
    status, answer = post(app, [NOTIFICATION, {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                               "params": {"requestId": 1}}, {"jsonrpc": "2.0", "id": 3, "result": {}}])  # fmt: skip
    assert status == 202 and answer is None


def test_initialize_inside_a_batch_is_refused_and_the_rest_answered(app) -> None:
    status, answers = post(app, [initialize(1, BATCH_VERSION), request(2, "ping")])
    assert status == 200 and [a["id"] for a in answers] == [1, 2]
    assert answers[0]["error"]["code"] == -32600 and "initialize" in answers[0]["error"]["message"]
    assert answers[1]["result"] == {}


def test_a_batch_over_the_member_or_call_limit_is_refused_whole(app) -> None:
    status, answers = post(app, [request(i, "ping") for i in range(MAX_BATCH_MEMBERS)])
    assert status == 200 and [a["id"] for a in answers] == list(range(MAX_BATCH_MEMBERS))
    status, answer = post(app, [request(i, "ping") for i in range(MAX_BATCH_MEMBERS + 1)])
    assert status == 400 and isinstance(answer, dict) and answer["error"]["code"] == -32600
    assert f"at most {MAX_BATCH_MEMBERS}" in answer["error"]["message"]
    calls = [search(i, f"query {i}") for i in range(MAX_BATCH_CALLS)]
    status, answers = post(app, calls)
    assert status == 200 and all(a["result"]["isError"] is False for a in answers), answers
    reads = [request(100, "resources/read", {"uri": "kb://note/en/Glossary.md"}), request(101, "resources/list")]
    status, answer = post(app, [*calls[: MAX_BATCH_CALLS - 1], *reads])  # reads count as calls too
    assert status == 400 and isinstance(answer, dict) and answer["error"]["code"] == -32600
    assert f"at most {MAX_BATCH_CALLS}" in answer["error"]["message"] and "tools/call" in answer["error"]["message"]


@pytest.fixture
def slow_reranker() -> Iterator[FakeProvider]:
    fake = FakeProvider("deepinfra", api_key="di-test-key", latency={"rerank": 1.5}).start()
    yield fake
    fake.stop()


@pytest.mark.parametrize("bound", ["SEARCH_BUDGET_S", "the function's remaining time"])
def test_a_batch_shares_one_requests_budget_and_members_past_it_are_timed_out(
    load_search_app, bm25_store: Path, slow_reranker: FakeProvider, bound: str
) -> None:
    """Searches whose reranker takes 1.5 s, with 2.5 s for the request (SEARCH_BUDGET_S=2.5, or a function with 3.5 s
    left, a second kept for the answer): the first search is reranked; the second gets the second left, its rerank
    cut (degraded), not a budget of its own; the six not started in time are -32001, never a Lambda timeout nor a
    500. The batch takes the budget, not eight searches' 12 s."""
    budget = {"SEARCH_BUDGET_S": "2.5"} if bound == "SEARCH_BUDGET_S" else {}
    app = load_search_app(QDRANT_PATH=str(bm25_store), KB_SOURCE=str(ROOT / "sample-kb"), **budget,
                          **provider_env(slow_reranker, roles=["RERANKER"]))  # fmt: skip
    assert post(app, search(0, "warm"))[0] == 200  # the container built, as a warm function's is
    slow_reranker.requests.clear()
    calls = [search(i, f"ключ {i}") for i in range(MAX_BATCH_CALLS)]
    event = build_event(HttpRequest("POST", "/mcp", "", [("Content-Type", "application/json")],
                                    json.dumps(calls).encode()), "/mcp", {}, "dev")  # fmt: skip
    timeout_s = 28.0 if bound == "SEARCH_BUDGET_S" else 3.5
    started = time.monotonic()
    result = parse_result(app.module.lambda_handler(event, LambdaContext("kb-search-test-search", 1536, timeout_s)))
    took = time.monotonic() - started
    status, answers = result.status, json.loads(result.body)
    assert status == 200 and [a["id"] for a in answers] == list(range(MAX_BATCH_CALLS))
    reranked, cut, *late = answers
    assert reranked["result"]["structuredContent"]["meta"]["degraded"] == [], reranked
    # the second gets what the first left: its rerank cut, or (on a host slow enough that under MIN_CALL_S was left)
    # not started; never a full rerank of its own
    if "error" in cut:
        assert cut["error"]["code"] == -32001, cut
    else:
        assert cut["result"]["isError"] is False and "rerank" in cut["result"]["structuredContent"]["meta"]["degraded"]
    assert all(a["error"]["code"] == -32001 and "budget" in a["error"]["message"] for a in late), late
    # a hang guard only (the members past the budget and the reranker's calls above are the proof): eight searches
    # would take 12 s, the budget 2.5 s
    assert took < 12.0, took
    assert len(slow_reranker.calls("rerank")) <= 2  # no member past the budget reached the provider


def test_a_read_in_a_batch_gets_what_is_left_of_the_batchs_budget(load_search_app) -> None:
    """Two kb_list calls against a Qdrant answering each of a catalog's six reads in 0.4 s, under SEARCH_BUDGET_S=4:
    the first takes 2.4 s (1.6 s to spare on a loaded host), the second gets what is left (1.6 s, or nothing:
    -32001), not a budget of its own (all twelve reads: 4.8 s for the batch)."""
    qdrant = _SlowQdrant(0.0)
    try:
        app = load_search_app(QDRANT_URL=qdrant.endpoint.url, SEARCH_BUDGET_S="4")
        listing = {"name": "kb_list", "arguments": {}}
        assert post(app, request(0, "tools/call", listing))[1]["result"]["isError"] is False  # a warm container
        qdrant.delay_s = 0.4
        qdrant.endpoint.requests.clear()
        status, answers = post(app, [request(i, "tools/call", listing) for i in (1, 2)])
    finally:
        qdrant.endpoint.stop()
    assert status == 200 and [a["id"] for a in answers] == [1, 2]
    assert answers[0]["result"]["isError"] is False, answers[0]
    assert answers[1].get("error", {}).get("code") == -32001 or answers[1]["result"]["isError"] is True, answers[1]
    reads = [r for r in qdrant.endpoint.requests if r.path.endswith(("/facet", "/points/query"))]
    assert 6 <= len(reads) < 12, len(reads)


def test_a_batch_answer_stays_well_under_lambdas_6_mb(load_search_app, tmp_path: Path) -> None:
    """Two notes of 0.8 MB of Cyrillic took 2.4 MB of JSON each while answers were ASCII-escaped (``\\u`` escapes):
    two were 4.9 MB, so each was read alone, one per batch. In UTF-8 (answers since session 24, and the python3.13
    runtime's result; the bound counts so since session 25) they take 0.8 MB each: one batch answers both, well
    under Lambda's 6 MB (a batch past the bound is still cut: the next test)."""
    from tests.conftest import lambda_result_bytes

    kb = tmp_path / "kb"
    kb.mkdir()
    text = "# Большая заметка\n\n" + "ключ ротация провайдер заметка. " * 14_000
    for i in (1, 2):
        (kb / f"big-{i}.md").write_text(text, encoding="utf-8")
    assert index_bm25(kb, tmp_path / "q").added == 2
    app = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb))
    reads = [request(i, "resources/read", {"uri": f"kb://note/big-{i}.md"}) for i in (1, 2)]
    status, alone = post(app, reads[1])
    assert status == 200 and alone["result"]["contents"][0]["text"] == text
    status, answers = post(app, reads)
    assert status == 200 and [a["id"] for a in answers] == [1, 2]
    assert [a["result"]["contents"][0]["text"] for a in answers] == [text, text]
    assert lambda_result_bytes(answers) < 2 * len(text.encode()) + 4096  # UTF-8, not escaped


def test_a_batch_of_notes_escaped_twice_over_stays_within_lambdas_6_mb(load_search_app, tmp_path: Path) -> None:
    """Three notes of 0.5 MB of quotes and backslashes (code, JSON, Windows paths): 1 MB of JSON each (a quote is
    two bytes), 3 MB for the batch, under a bound counted on that JSON, but each byte of it escaped once more in the
    Lambda's result (``\\"`` is four bytes there): 6.1 MB, past Lambda's 6 MB, a 502 from API Gateway. The batch
    is bounded by what Lambda carries: the last read is told to come on its own, and the answer fits
    (``check_response`` holds every answer of ``load_search_app`` to 6 MB)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    text = "# Quotes\n\n" + ('"\\' * 48 + "\n") * 5_300
    for i in (1, 2, 3):
        (kb / f"quoted-{i}.md").write_text(text, encoding="utf-8")
    assert index_bm25(kb, tmp_path / "q").added == 3
    app = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb))
    reads = [request(i, "resources/read", {"uri": f"kb://note/quoted-{i}.md"}) for i in (1, 2, 3)]
    status, answers = post(app, reads)
    assert status == 200 and [a["id"] for a in answers] == [1, 2, 3]
    assert [a["result"]["contents"][0]["text"] for a in answers[:2]] == [text, text]
    assert answers[2]["error"]["code"] == -32603 and "on its own" in answers[2]["error"]["message"]


# -- over stdio (kbsearch mcp) ----------------------------------------------------------------------------------------
def line(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode() + b"\n"


def stdio(args: list[str], env: dict[str, str], messages: list[Any]) -> list[Any]:
    """Every line ``kbsearch mcp`` writes for ``messages`` (one a line), stdin then closed."""
    proc = subprocess.run([*KBSEARCH_CMD, "mcp", *args], input=b"".join(line(m) for m in messages),
                          capture_output=True, env=env, cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    return [json.loads(raw) for raw in proc.stdout.split(b"\n") if raw]


def local_env(store: Path) -> dict[str, str]:
    return subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"))


def session(version: str | None) -> list[Any]:
    """A session negotiating ``version`` (None: no initialize), then every batch rule in turn, and a request alone."""
    opening = [initialize(0, version), NOTIFICATION] if version else []
    return [
        *opening,
        MIXED,
        [],
        [NOTIFICATION, {"jsonrpc": "2.0", "id": 50, "result": {}}],  # nothing to answer: no line at all
        [initialize(60, BATCH_VERSION), request(61, "ping")],
        [request(i, "ping") for i in range(MAX_BATCH_MEMBERS + 1)],
        request(70, "ping"),
    ]


def check_batch_session(answers: list[Any]) -> None:
    init, mixed, empty, with_initialize, too_many, alone = answers
    assert init["result"]["protocolVersion"] == BATCH_VERSION
    check_mixed(mixed)
    assert isinstance(empty, dict) and empty["error"]["code"] == -32600 and "empty" in empty["error"]["message"]
    assert [a["id"] for a in with_initialize] == [60, 61] and with_initialize[0]["error"]["code"] == -32600
    assert "initialize" in with_initialize[0]["error"]["message"] and with_initialize[1]["result"] == {}
    assert isinstance(too_many, dict) and f"at most {MAX_BATCH_MEMBERS}" in too_many["error"]["message"]
    assert alone == {"jsonrpc": "2.0", "id": 70, "result": {}}


def check_refused_session(answers: list[Any], refused_as: str) -> None:
    *_, alone = answers
    batches = answers[-6:-1] if refused_as != "a session without initialize" else answers[:-1]
    assert len(batches) == 5, answers  # every batch line, the notifications-only one too, is refused
    for answer in batches:
        assert isinstance(answer, dict) and answer["id"] is None and answer["error"]["code"] == -32600, answer
        assert BATCH_VERSION in answer["error"]["message"] and refused_as in answer["error"]["message"]
    assert alone == {"jsonrpc": "2.0", "id": 70, "result": {}}


def test_stdio_accepts_batches_in_a_2025_03_26_session_only(bm25_store: Path) -> None:
    env = local_env(bm25_store)
    check_batch_session(stdio([], env, session(BATCH_VERSION)))
    check_refused_session(stdio([], env, session("2025-11-25")), "protocol version 2025-11-25")
    check_refused_session(stdio([], env, session(None)), "a session without initialize")


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S + 30)
def test_the_remote_bridge_forwards_a_2025_03_26_sessions_batches_and_refuses_the_others(bm25_store: Path) -> None:
    env = subprocess_env(QDRANT_PATH=str(bm25_store), KB_SOURCE=str(ROOT / "sample-kb"), KB_LOCAL_API_KEYS=API_KEY)
    with serve_process(env, cwd=ROOT) as server:
        args, client_env = ["--remote", server.base_url], subprocess_env(KB_API_KEY=API_KEY)
        check_batch_session(stdio(args, client_env, session(BATCH_VERSION)))
        check_refused_session(stdio(args, client_env, session("2025-06-18")), "protocol version 2025-06-18")
        check_refused_session(stdio(args, client_env, session(None)), "a session without initialize")
        assert "Traceback" not in server.text()


def test_a_stdio_batch_of_calls_naming_a_version_in_meta_shares_the_batchs_budget(
    bm25_store: Path, slow_reranker: FakeProvider
) -> None:
    """A 2025-03-26 session's batch whose searches name 2026-07-28 in ``params._meta`` (stdio routes each member by
    its ``_meta``): they share the batch's one budget as any member does (SEARCH_BUDGET_S=2.5, a reranker of 1.5 s,
    after a search alone has warmed the process): the first answered, every later one cut at what is left
    (``degraded: ["rerank"]``) or -32001. The one in hand when the budget ran out got a budget of its own (the
    second reranked in full: 3 s for a batch of 2.5)."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    calls = [request(i, "tools/call", {"name": "kb_search", "arguments": {"query": f"ключ {i}", "top_k": 2},
                                       "_meta": meta}) for i in range(MAX_BATCH_CALLS)]  # fmt: skip
    env = subprocess_env(QDRANT_PATH=str(bm25_store), KB_SOURCE=str(ROOT / "sample-kb"), SEARCH_BUDGET_S="2.5",
                         **provider_env(slow_reranker, roles=["RERANKER"]))  # fmt: skip
    init, warm, answers = stdio([], env, [initialize(0, BATCH_VERSION), NOTIFICATION, search("w", "warm"), calls])
    assert init["result"]["protocolVersion"] == BATCH_VERSION and warm["result"]["isError"] is False
    assert [a["id"] for a in answers] == list(range(MAX_BATCH_CALLS)), answers
    first, *later = answers
    assert first["result"]["isError"] is False, first
    for answer in later:  # none reranked in full: given a budget of its own, the second was
        if "error" in answer:
            assert answer["error"]["code"] == -32001, answer
        else:
            assert "rerank" in answer["result"]["structuredContent"]["meta"]["degraded"], answer
    assert "error" in later[-1], later  # the last ones were never started
    assert len(slow_reranker.calls("rerank")) <= 3  # the warm-up's and two: none past the budget reached it


@pytest.mark.parametrize("failure", ["HTTP 429", "no answer"])
def test_the_remote_bridge_answers_each_request_of_a_batch_the_remote_failed(failure: str) -> None:
    """A 2025-03-26 session through ``--remote``, whose remote answers the batch with no JSON-RPC (API Gateway's 429
    of a usage plan, or a connection dropped): each request of the batch gets its -32001 under its own id, in one
    array, as a request alone does. It got one error of id null, which answers none of them: the client waited on
    each for ever."""
    remote = FakeEndpoint().start()
    opened = {"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": BATCH_VERSION, "capabilities": {},
                                                      "serverInfo": {"name": "kb-search", "version": "1"}}}  # fmt: skip
    answered: list[str] = []

    def respond(method: str, path: str) -> tuple[int, bytes, str]:
        answered.append(path)
        if len(answered) == 1:
            return 200, json.dumps(opened).encode(), "application/json"
        if failure == "HTTP 429":
            return 429, b'{"message":"Too Many Requests"}', "application/json"
        return 0, b"", "application/json"

    remote.responder = respond
    try:
        init, answers = stdio(["--remote", remote.url], subprocess_env(KB_API_KEY=API_KEY),
                              [initialize(0, BATCH_VERSION), [request(1, "ping"), NOTIFICATION, search("s", "ключ")]])  # fmt: skip
    finally:
        remote.stop()
    assert init["result"]["protocolVersion"] == BATCH_VERSION and len(answered) == 2
    assert isinstance(answers, list) and [a["id"] for a in answers] == [1, "s"], answers
    assert all(a["error"]["code"] == -32001 for a in answers), answers


@pytest.mark.parametrize("method", [["tools/call"], {"name": "kb_search"}])
def test_a_batch_member_whose_method_is_no_string_is_its_own_invalid_request(app, method: Any) -> None:
    """A member whose ``method`` is an array or an object (unhashable): the batch's count of calls and its time check
    looked it up in a set, a TypeError that failed the whole request (HTTP 500; over stdio -32603 and a traceback in
    the log). It is that member's -32600, and the others are answered."""
    status, answers = post(app, [request(1, "ping"), {"jsonrpc": "2.0", "id": 2, "method": method}, request(3, "ping")])
    assert status == 200 and [a["id"] for a in answers] == [1, 2, 3], answers
    assert answers[1]["error"]["code"] == -32600 and answers[0]["result"] == answers[2]["result"] == {}
