"""Round 23b's adversarial pass (RELIABILITY.md, "Round 23b"): the embedded store's damage that Qdrant Edge aborts
on or answers wrong, the ``--remote`` MCP bridge against a loopback remote answering whatever it is given,
``kbsearch slack --press`` and ``kbsearch eval`` of exported votes, through ``kbsearch`` processes."""

from __future__ import annotations

import json
import subprocess
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
