"""``kbsearch mcp``: MCP over stdio, driven by the official SDK's stdio client (both eras) locally and as a bridge
(``--remote``) to a running ``kbsearch serve``; the remote's refusals in words; the embedded store shared with
other processes; and hostile input on the stdio surface (framing garbage, huge messages, stdin closed mid-call,
unknown resources, cursors never issued): JSON-RPC errors, no traceback, the server stays up."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.process import serve_process
from kbsearch_tools.mcp_stdio import mcp_url, shown_url
from tests.conftest import KBSEARCH_CMD, ROOT, copy_store, subprocess_env
from tests.integration.mcp_checks import check, check_slot_answer, slot_messages, walk

API_KEY = "stdio-test-key"
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip


@pytest.fixture
def store(bm25_index: Path, tmp_path: Path) -> Path:
    path = tmp_path / "q"
    copy_store(bm25_index, path)
    return path


def local_env(store: Path, **extra: str) -> dict[str, str]:
    return subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"), **extra)


def sdk_walk(args: list[str], env: dict[str, str], mode: str) -> dict[str, Any]:
    params = StdioServerParameters(command=sys.executable, args=[*KBSEARCH_CMD[1:], "mcp", *args], env=env, cwd=ROOT)

    async def main() -> dict[str, Any]:
        async with Client(params, mode=mode, read_timeout_seconds=120) as client:
            return await walk(client)

    return anyio.run(main)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_stdio_client_walks_everything_locally(store: Path, mode: str) -> None:
    check(sdk_walk([], local_env(store), mode))


@pytest.fixture
def served(store: Path) -> Iterator[Any]:
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"), KB_LOCAL_API_KEYS=API_KEY)
    with serve_process(env, cwd=ROOT) as server:
        yield server


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_stdio_client_walks_everything_through_the_remote_bridge(served: Any, mode: str) -> None:
    env = subprocess_env(KB_API_KEY=API_KEY)
    check(sdk_walk(["--remote", served.base_url], env, mode))
    assert "Traceback" not in served.text()


def run_lines(args: list[str], env: dict[str, str], lines: list[bytes], timeout: float = 120) -> tuple[list[Any], str]:
    """Write ``lines`` to ``kbsearch mcp`` and close stdin; every stdout line must be a JSON-RPC message."""
    proc = subprocess.run([*KBSEARCH_CMD, "mcp", *args], input=b"".join(lines), capture_output=True, env=env,
                          cwd=ROOT, timeout=timeout, check=False)  # fmt: skip
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    answers = [json.loads(line) for line in proc.stdout.split(b"\n") if line]
    assert all(a.get("jsonrpc") == "2.0" for a in answers), answers
    return answers, stderr


def line(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode() + b"\n"


def call(id_: int, name: str, arguments: Any) -> bytes:
    return line({"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": {"name": name, "arguments": arguments}})


def test_remote_refusals_are_readable_errors(served: Any) -> None:
    base = served.base_url
    cases = {
        "API key rejected": (["--remote", base], {"KB_API_KEY": "wrong-key"}),
        "no API key": (["--remote", base], {}),
        "not an endpoint": (["--remote", base + "/nowhere/x"], {"KB_API_KEY": API_KEY}),
        "cannot reach": (["--remote", "http://127.0.0.1:9"], {"KB_API_KEY": API_KEY}),
    }
    for expected, (args, extra) in cases.items():
        answers, stderr = run_lines(args, subprocess_env(**extra), [line(INIT)])
        (answer,) = answers
        assert answer["id"] == 1 and expected in answer["error"]["message"], (expected, answer)
        assert "wrong-key" not in json.dumps(answer) and "wrong-key" not in stderr
    # another variable holds the key: --api-key-env
    answers, _ = run_lines(["--remote", base, "--api-key-env", "MY_KB_KEY"], subprocess_env(MY_KB_KEY=API_KEY),
                           [line(INIT), call(2, "kb_list", {"recent": 1})])  # fmt: skip
    assert answers[0]["result"]["serverInfo"]["name"] == "kb-search" and not answers[1]["result"]["isError"]
    # the remote's JSON-RPC errors pass through as they are, 2026-07-28 headers derived from the body
    modern = {"jsonrpc": "2.0", "id": 3, "method": "resources/read",
              "params": {"uri": "kb://note/ru/нет такой.md", "_meta": META}}  # fmt: skip
    answers, _ = run_lines(["--remote", base], subprocess_env(KB_API_KEY=API_KEY), [line(modern)])
    assert answers[0]["error"]["code"] == -32002


DEEP = b"[" * 5000 + b"]" * 5000
REMOTE_GARBAGE = {
    "deep JSON": (DEEP, "application/json"), "deep event": (b"data: " + DEEP + b"\n\n", "text/event-stream"),
    "deep object": (b'{"jsonrpc": "2.0", "id": 1, "result": ' + DEEP + b"}", "application/json"),
    "not JSON": (b"<html>502 Bad Gateway</html>", "text/html"), "an array": (b"[1, 2]", "application/json"),
    "no result": (b'{"jsonrpc": "2.0", "id": 1}', "application/json"), "not UTF-8": (b"\xff\xfe{", "application/json"),
}  # fmt: skip


def two_requests_to_a_remote_answering(body: bytes, kind: str) -> list[Any]:
    """What ``kbsearch mcp --remote`` writes back for ``initialize`` and a ``kb_list`` call (ids 1 and 2) forwarded to
    an endpoint answering every request 200 with ``body`` as ``kind``."""
    remote = FakeEndpoint().start()
    remote.body, remote.content_type = body, kind
    try:
        answers, _ = run_lines(["--remote", remote.url], subprocess_env(KB_API_KEY=API_KEY),
                               [line(INIT), call(2, "kb_list", {})])  # fmt: skip
    finally:
        remote.stop()
    return answers


@pytest.mark.parametrize(("body", "kind"), REMOTE_GARBAGE.values(), ids=REMOTE_GARBAGE.keys())
def test_a_remote_answering_garbage_is_an_error_per_request(body: bytes, kind: str) -> None:
    """``--remote`` to an endpoint that answers 200 with no JSON-RPC message (nested past the JSON parser's
    recursion limit, as JSON or as an event, not JSON, the wrong shape): one readable error per request and the
    bridge keeps going (nesting was a RecursionError that ended the bridge with a traceback)."""
    answers = two_requests_to_a_remote_answering(body, kind)
    assert [a["id"] for a in answers] == [1, 2]
    assert all(a["error"]["code"] == -32001 and "HTTP 200" in a["error"]["message"] for a in answers), answers


NOTICE = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}
WRONG_IDS = {
    "another id": (json.dumps({"jsonrpc": "2.0", "id": 999, "result": {}}).encode(), "application/json"),
    "the id as text": (json.dumps({"jsonrpc": "2.0", "id": "1", "result": {}}).encode(), "application/json"),
    "the id null": (json.dumps({"jsonrpc": "2.0", "id": None, "result": {}}).encode(), "application/json"),
    "a notification and another id": (b"data: " + json.dumps(NOTICE).encode() + b"\n\ndata: "
                                      + json.dumps({"jsonrpc": "2.0", "id": 7, "result": {}}).encode() + b"\n\n",
                                      "text/event-stream"),
}  # fmt: skip


@pytest.mark.parametrize(("body", "kind"), WRONG_IDS.values(), ids=WRONG_IDS.keys())
def test_a_remote_answering_another_request_s_id_is_an_error_per_request(body: bytes, kind: str) -> None:
    """``--remote`` to an endpoint that answers 200 with a response naming another id (999, ``"1"`` for 1, null):
    the stray response is dropped and each request gets one -32001 error with its own id; the remote's notifications
    still pass (the stray answer was forwarded as it was: the client never saw an answer to its request, and could
    take the stray one for another request's)."""
    answers = two_requests_to_a_remote_answering(body, kind)
    responses = [a for a in answers if "method" not in a]
    assert [a["id"] for a in responses] == [1, 2], answers
    assert all(a["error"]["code"] == -32001 and "another id" in a["error"]["message"] for a in responses), answers
    assert [a for a in answers if "method" in a] == ([NOTICE, NOTICE] if kind == "text/event-stream" else [])


@pytest.mark.parametrize("status", [200, 202])
def test_a_remote_answering_a_request_with_nothing_is_an_error_per_request(status: int) -> None:
    """``--remote`` to an endpoint that answers every message with an empty 200 or 202 (a notification's answer):
    each request gets one -32001 error with its id and the bridge goes on; a notification and a client's response
    get nothing back. The empty answer was taken for a notification's whatever was sent, so nothing was written and
    the assistant waited on its request for ever."""
    remote = FakeEndpoint(status=status).start()
    remote.body, remote.content_type = b"", "application/json"
    try:
        answers, _ = run_lines(["--remote", remote.url], subprocess_env(KB_API_KEY=API_KEY), [
            line(INIT), line({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            line({"jsonrpc": "2.0", "id": "r", "result": {}}), call(2, "kb_list", {}),
        ])  # fmt: skip
    finally:
        remote.stop()
    assert [a["id"] for a in answers] == [1, 2], answers
    assert all(a["error"]["code"] == -32001 and f"HTTP {status}" in a["error"]["message"] for a in answers), answers


def test_a_remote_that_drips_its_answer_is_an_error_within_the_timeout() -> None:
    """``--remote`` to an endpoint that sends its answer one byte every 0.3 s (no single read ever times out): each
    request is a readable error once ``--timeout`` has passed, and the next one is forwarded. httpx's timeout is
    per read: the bridge held the request, and the assistant waiting on it, for as long as the remote dripped."""
    remote = FakeEndpoint().start()
    remote.body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {}}).encode() * 20
    remote.content_type, remote.drip_s = "application/json", 0.3
    try:  # 2 x 2 s of --timeout; the process's own limit, 30 s, is well short of the drip's ~4 minutes
        answers, _ = run_lines(["--remote", remote.url, "--timeout", "2"], subprocess_env(KB_API_KEY=API_KEY),
                               [line(INIT), call(2, "kb_list", {})], timeout=30)  # fmt: skip
    finally:
        remote.stop()
    assert [a["id"] for a in answers] == [1, 2]
    assert all(a["error"]["code"] == -32001 and "within 2 s" in a["error"]["message"] for a in answers), answers


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, compresslevel=9)


HUGE = {  # a JSON-RPC answer padded past the bridge's 32 MiB: sent whole, and as 40 KB of gzip inflating to it
    "33 MiB": ({}, b'{"jsonrpc": "2.0", "id": 1, "result": {"pad": "' + b"x" * (33 << 20) + b'"}}'),
    "gzip bomb": ({"Content-Encoding": "gzip"}, _gzip(b'{"jsonrpc": "2.0", "id": 1, "result": {"pad": "' + b" " * (40 << 20) + b'"}}')),
}  # fmt: skip


@pytest.mark.parametrize(("headers", "body"), HUGE.values(), ids=HUGE.keys())
def test_a_remote_answer_over_the_size_cap_is_an_error(headers: dict[str, str], body: bytes) -> None:
    """``--remote`` to an endpoint whose answer is larger than any of kb-search's (a note is at most 4 MiB, a
    deployment's answer 6 MB): one readable -32001 error naming the cap, the next request forwarded. The bridge read
    the whole answer into memory, then wrote it to stdout, whatever its size (a gzip bomb too)."""
    remote = FakeEndpoint().start()
    remote.body, remote.content_type, remote.headers = body, "application/json", headers
    try:
        answers, stderr = run_lines(["--remote", remote.url], subprocess_env(KB_API_KEY=API_KEY),
                                    [line(INIT), call(2, "kb_list", {})])  # fmt: skip
    finally:
        remote.stop()
    assert [a["id"] for a in answers] == [1, 2]
    assert all(a["error"]["code"] == -32001 and "over 32 MiB" in a["error"]["message"] for a in answers), answers
    assert "over 32 MiB" in stderr


def test_a_remote_answer_not_in_the_encoding_it_names_is_an_error() -> None:
    remote = FakeEndpoint().start()
    remote.body, remote.content_type = b'{"jsonrpc": "2.0", "id": 1, "result": {}}', "application/json"
    remote.headers = {"Content-Encoding": "gzip"}
    try:
        answers, _ = run_lines(["--remote", remote.url], subprocess_env(KB_API_KEY=API_KEY), [line(INIT)])
    finally:
        remote.stop()
    (answer,) = answers
    assert answer["error"]["code"] == -32001 and "not in the encoding it names" in answer["error"]["message"]


def test_remote_url_forms() -> None:
    assert mcp_url("https://abc.execute-api.eu-west-1.amazonaws.com/prod") == (
        "https://abc.execute-api.eu-west-1.amazonaws.com/prod/mcp"
    )
    assert mcp_url("http://127.0.0.1:3000/mcp/") == "http://127.0.0.1:3000/mcp"
    assert shown_url("https://user:secret-pass@host.example/prod/mcp") == "https://host.example/prod/mcp"
    for bad in ("ftp://x/y", "127.0.0.1:3000", "", "https://"):
        with pytest.raises(ValueError):
            mcp_url(bad)
    proc = subprocess.run([*KBSEARCH_CMD, "mcp", "--remote", "ftp://user:secret-pass@x/"], capture_output=True,
                          text=True, env=subprocess_env(), timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2 and "http(s) URL" in proc.stderr and "secret-pass" not in proc.stderr


# -- hostile input on stdio -----------------------------------------------------------------------------------------
GARBAGE = [
    b"not json\n", b"{\n", b"\xff\xfe\x00garbage\n", b"[]\n", b"[1, 2]\n", b"42\n", b'"text"\n', b"null\n",
    b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "id": 2}\n', b'{"jsonrpc": "2.0", "id": NaN, "method": "ping"}\n',
    b"[" * 5000 + b"]" * 5000 + b"\n", b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}\n',
    b'{"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}\n', b'{"jsonrpc": "2.0", "id": 1, "method": 7}\n',
    b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [1]}\n', b"\x00\x00\x00\n",
    b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": 5}}}\n',
]  # fmt: skip


@pytest.mark.parametrize("mode", ["local", "remote"])
def test_framing_garbage_gets_errors_and_the_server_stays_up(store: Path, mode: str, tmp_path: Path) -> None:
    lines = [
        *GARBAGE,
        b"\n",
        b"   \r\n",
        b"x" * (5 * 1024 * 1024) + b"\n",
        line(INIT),
        call(9, "kb_list", {"recent": 1}),
    ]
    if mode == "local":
        answers, _ = run_lines([], local_env(store), lines)
    else:
        env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"), KB_LOCAL_API_KEYS=API_KEY)
        with serve_process(env, cwd=ROOT) as server:
            answers, _ = run_lines(["--remote", server.base_url], subprocess_env(KB_API_KEY=API_KEY), lines)
            assert "Traceback" not in server.text()
    errors, (init, listing) = answers[:-2], answers[-2:]
    assert len(errors) == len(GARBAGE) + 1  # every garbage line and the oversized one; blank lines ignored
    assert all(e["error"]["code"] in (-32700, -32600, -32602, -32020, -32022) for e in errors), errors
    assert errors[-1]["error"]["code"] == -32600 and "over" in errors[-1]["error"]["message"]
    assert init["result"]["serverInfo"]["name"] == "kb-search"
    assert listing["id"] == 9 and not listing["result"]["isError"]


def test_huge_arguments_unknown_resources_and_cursors_never_issued(store: Path) -> None:
    lines = [
        call(1, "kb_search", {"query": "x" * 1_000_000}),
        call(2, "kb_search", {"query": "x", "tags": ["t"] * 100_000}),
        call(3, "kb_get_note", {"path": "a/" * 100_000 + "x.md"}),
        call(4, "kb_get_note", {"path": "en/Glossary.md", "section": "s" * 400}),
        call(5, "kb_search", {"query": "x", "updated_after": "2026-02-30"}),
        call(6, "kb_search", {"query": "x", "top_k": 10**30}),
        line({"jsonrpc": "2.0", "id": 7, "method": "resources/read", "params": {"uri": "kb://note/../../etc/passwd"}}),
        line({"jsonrpc": "2.0", "id": 8, "method": "resources/read", "params": {"uri": "kb://note/%FF.md"}}),
        line({"jsonrpc": "2.0", "id": 9, "method": "resources/read", "params": {"uri": 42}}),
        line({"jsonrpc": "2.0", "id": 10, "method": "resources/list", "params": {"cursor": "n1.AAAA"}}),
        line({"jsonrpc": "2.0", "id": 11, "method": "resources/list", "params": {"cursor": ["x"]}}),
        line({"jsonrpc": "2.0", "id": 12, "method": "prompts/get", "params": {"name": "kb_answer",
                                                                        "arguments": {"question": "q" * 10_000}}}),
        line({"jsonrpc": "2.0", "id": 13, "method": "tools/call", "params": {"name": "kb_search", "arguments": [1]}}),
        line({"jsonrpc": "2.0", "id": 14, "method": "ping"}),
    ]  # fmt: skip
    answers, _ = run_lines([], local_env(store), lines)
    by_id = {a["id"]: a for a in answers}
    assert sorted(by_id) == list(range(1, 15))
    for id_ in (1, 2, 3, 4, 5, 6, 13):
        assert by_id[id_]["result"]["isError"], by_id[id_]
    assert "query" in by_id[1]["result"]["content"][0]["text"] and "x" * 100 not in json.dumps(by_id[1])
    assert "no section" in by_id[4]["result"]["content"][0]["text"]
    assert by_id[7]["error"]["code"] == by_id[8]["error"]["code"] == -32002
    assert by_id[9]["error"]["code"] == by_id[10]["error"]["code"] == by_id[11]["error"]["code"] == -32602
    assert by_id[12]["error"]["code"] == -32602 and by_id[14]["result"] == {}


def test_unknown_argument_names_are_never_echoed_over_stdio(store: Path) -> None:
    """Tool arguments named by the client: a 1 MB name, 300,000 unknown names (3.6 MB, within a line's 4 MiB), both
    in ``kb_get_note`` and ``kb_list`` too: a tool error naming the first few, each cut to 60 characters, and how
    many (every name was listed whole: the 1 MB name sent back, 300,000 names a 13 MB line); the next request
    answered."""
    many = {f"a{i}": 0 for i in range(300_000)}
    lines = [
        call(1, "kb_search", {"query": "x", "y" * 1_000_000: 1}),
        call(2, "kb_search", {"query": "x", **many}),
        call(3, "kb_get_note", {"path": "en/Glossary.md", "y" * 1_000_000: 1}),
        call(4, "kb_list", many),
        line({"jsonrpc": "2.0", "id": 5, "method": "ping"}),
    ]
    answers, _ = run_lines([], local_env(store), lines)
    assert [a["id"] for a in answers] == [1, 2, 3, 4, 5]
    for answer in answers[:4]:
        text = json.dumps(answer)
        assert answer["result"]["isError"] and len(text) < 1_500 and "y" * 61 not in text, text[:300]
        assert "invalid arguments" in answer["result"]["content"][0]["text"], text[:300]
    assert "(300000 errors; the first 5 listed)" in answers[1]["result"]["content"][0]["text"]
    assert answers[4]["result"] == {}


def test_what_a_client_sends_is_never_echoed_unbounded(store: Path) -> None:
    """An invalid request's id that is no id (an object, an array of 100,000 arrays, a 1 MB object; ``true``)
    and a method name of 1 MB or 100,000 ``[`` characters: the error answers with id null (JSON-RPC's rule for an
    id it cannot use) and quotes a method cut to 60 characters (both were sent back whole: a megabyte of the
    client's own bytes per line); the server answers the next request. (Responses sent to the server: no line at
    all, :func:`test_a_clients_json_rpc_response_gets_no_line_back_over_stdio`.)"""
    big = {"k": "v" * 1_000_000}
    odd_ids = [{"x": [1, 2]}, [[1, 2, 3]] * 100_000, big, True]
    lines = [line({"jsonrpc": "1.0", "id": id_, "method": "ping"}) for id_ in odd_ids]
    lines += [
        line({"jsonrpc": "2.0", "id": 20 + i, "method": name})
        for i, name in enumerate(("m" * 1_000_000, "[" * 100_000))
    ]
    lines += [line({"jsonrpc": "2.0", "id": 40, "method": "ping"})]
    answers, _ = run_lines([], local_env(store), lines)
    assert [a["id"] for a in answers] == [None, None, None, None, 20, 21, 40]
    assert all(a["error"]["code"] == -32600 for a in answers[:4])
    for answer in answers[4:6]:
        assert answer["error"]["code"] == -32601 and len(answer["error"]["message"]) < 100, answer
    assert answers[-1]["result"] == {} and max(len(json.dumps(a)) for a in answers) < 300


def test_a_resource_uri_that_names_no_note_is_never_echoed_unbounded(store: Path) -> None:
    """``resources/read`` of a 1 MB URI (not ``kb://note/``, a path over the 1,024-character bound, not UTF-8
    once percent-decoded): -32002 whose ``data.uri`` quotes at most the first 200 characters (the whole URI was sent
    back in ``data``: a megabyte of the client's own bytes per line, 64 KB per request over HTTP)."""
    uris = ["z" * 1_000_000, "kb://note/" + "a" * 1_000_000 + ".md", "kb://note/%FF" * 80_000]
    lines = [line({"jsonrpc": "2.0", "id": i, "method": "resources/read", "params": {"uri": uri}})
             for i, uri in enumerate(uris, start=1)]  # fmt: skip
    answers, _ = run_lines([], local_env(store), [*lines, line({"jsonrpc": "2.0", "id": 9, "method": "ping"})])
    assert [a["id"] for a in answers] == [1, 2, 3, 9]
    for answer, uri in zip(answers[:3], uris, strict=True):
        assert answer["error"]["code"] == -32002, answer["error"]
        echoed = answer["error"]["data"]["uri"]
        assert len(echoed) <= 203 and uri.startswith(echoed.removesuffix("...")), echoed[:300]
    assert max(len(json.dumps(a)) for a in answers) < 600


def test_a_note_that_cannot_be_read_is_no_resource_never_an_internal_error(store: Path, tmp_path: Path) -> None:
    """``resources/read`` of a note in the KB whose bytes are no note (not UTF-8, UTF-16, NUL bytes, cut inside a
    letter, empty): -32002 with the reason, as ``resources/list`` does not list it and ``kb_get_note`` says it
    (it was -32603, JSON-RPC's "Internal error", the server's own fault, for what is the KB's)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    bad = {"latin1.md": "café".encode("latin-1"), "utf16.md": "\ufeff# U".encode("utf-16-le"),
           "nul.md": b"# N\x00", "cut.md": "# тек".encode()[:-1], "empty.md": b"  \n"}  # fmt: skip
    for name, raw in bad.items():
        (kb / name).write_bytes(raw)
    lines = [line({"jsonrpc": "2.0", "id": i, "method": "resources/read", "params": {"uri": f"kb://note/{name}"}})
             for i, name in enumerate(bad, start=1)]  # fmt: skip
    answers, _ = run_lines([], subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(kb)), lines)
    assert [a["id"] for a in answers] == list(range(1, len(bad) + 1))
    for answer, name in zip(answers, bad, strict=True):
        assert answer["error"]["code"] == -32002 and "cannot be read" in answer["error"]["message"], (name, answer)


def test_params_of_every_json_type_in_every_slot_over_stdio(store: Path) -> None:
    """The HTTP test's matrix (every slot of every method holding every JSON type, both eras) as stdio lines to one
    ``kbsearch mcp``: one answer each, none an internal error, and the server still answers after them."""
    messages = [message for modern in (False, True) for message, _ in slot_messages(modern)]
    for i, message in enumerate(messages, start=1):
        message["id"] = i
    answers, _ = run_lines([], local_env(store), [*map(line, messages), call(len(messages) + 1, "kb_list", {})])
    assert len(answers) == len(messages) + 1
    for message, answer in zip(messages, answers, strict=False):
        check_slot_answer(message, answer)
    assert not answers[-1]["result"]["isError"]


def test_a_clients_json_rpc_response_gets_no_line_back_over_stdio(store: Path) -> None:
    """stdio carries responses both ways: one from the client (to a request this server never sent) is taken and
    answered with nothing. It was answered with an invalid-request error bearing the client's own id, a line the
    client's SDK matches to its pending request of that id (here "q": the ping's answer came second)."""
    lines = [
        line({"jsonrpc": "2.0", "id": "q", "result": {}}),
        line({"jsonrpc": "2.0", "id": 7, "error": {"code": -32601, "message": "the client has no sampling"}}),
        line({"jsonrpc": "2.0", "id": "q", "method": "ping"}),
        call(8, "kb_list", []),
    ]
    answers, _ = run_lines([], local_env(store), lines)
    assert [a["id"] for a in answers] == ["q", 8], answers
    assert answers[0]["result"] == {}
    assert (
        answers[1]["result"]["isError"] and answers[1]["result"]["content"][0]["text"] == "arguments must be an object"
    )


def test_stdin_closed_mid_call_ends_quietly(store: Path) -> None:
    """The client writes a call and hangs up (closes stdin, and stdout too): no traceback, exit 0."""
    proc = subprocess.Popen([*KBSEARCH_CMD, "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=local_env(store), cwd=ROOT)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(call(1, "kb_search", {"query": "ротация ключей"}) + b'{"jsonrpc": "2.0", "id": 2, "meth')
    proc.stdin.close()  # mid-call, and mid-message
    proc.stdout.close()  # nobody reads the answer
    assert proc.wait(timeout=120) == 0
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read().decode("utf-8", "replace")


def test_the_embedded_store_is_shared_between_calls_and_refused_while_held(store: Path, tmp_path: Path) -> None:
    """A running serve holds the store: tools say so and what to do. Between bursts of calls, kbsearch mcp lets go
    of it (--idle-close), so kbsearch index can write while the assistant keeps its server."""
    env = local_env(store, KB_LOCAL_API_KEYS=API_KEY)
    with serve_process(env, cwd=ROOT) as server:
        import httpx

        assert httpx.get(f"{server.base_url}/search?q=x", headers={"x-api-key": API_KEY}, timeout=60).status_code == 200
        answers, stderr = run_lines([], local_env(store), [call(1, "kb_search", {"query": "x"})])
        text = answers[0]["result"]["content"][0]["text"]
        assert answers[0]["result"]["isError"] and "open in another process" in text and "--remote" in text
        assert "open in another process" in stderr  # said at start-up too
    proc = subprocess.Popen([*KBSEARCH_CMD, "mcp", "--idle-close", "0.2"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=local_env(store), cwd=ROOT)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(call(1, "kb_list", {"recent": 0}))
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["result"]["structuredContent"]["notes"] == 35
        time.sleep(1.0)  # idle: the store is closed
        kb = tmp_path / "kb"
        subprocess.run(["cp", "-r", str(ROOT / "sample-kb"), str(kb)], check=True)
        (kb / "en" / "Fresh note.md").write_text("# Fresh note\n\nwritten while the assistant runs\n", encoding="utf-8")
        index = subprocess.run([*KBSEARCH_CMD, "index", str(kb)], capture_output=True, text=True,
                               env=subprocess_env(QDRANT_PATH=str(store)), timeout=300, check=False)  # fmt: skip
        assert index.returncode == 0, index.stderr
        proc.stdin.write(call(2, "kb_list", {"recent": 0}))
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["result"]["structuredContent"]["notes"] == 36  # reopened, fresh
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
