"""A note read by path on the request path (``GET /notes/{path}``, ``kb_get_note``) from an S3 that hangs or drips,
through the real search handler with API Gateway events: the answer comes within the request's budget, a 503
naming the knowledge base (never the bucket), whatever S3 does. botocore bounds each socket read (20 s, four
attempts), not the exchange: a hanging bucket held one read 100 s, past API Gateway's 29 s and the function's 28."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.apigw import HttpRequest, build_event

BUDGET_S = 2
#: the bound an answer must come within: 5x the budget, what a loaded 2-core machine keeps (as the fault matrix)
BOUND_S = 5 * BUDGET_S
NOTE = b"# A\n\nThe note a.\n"


@pytest.fixture
def slow_s3(request: pytest.FixtureRequest) -> Iterator[FakeEndpoint]:
    """An S3 endpoint answering every GET with :data:`NOTE` after 30 s (``hang``) or one byte every 0.3 s (``drip``,
    no single read ever times out)."""
    endpoint = FakeEndpoint().start()
    endpoint.body, endpoint.content_type = NOTE, "application/octet-stream"
    if request.param == "hang":
        endpoint.hang_s = 30.0
    else:
        endpoint.drip_s = 0.3
    yield endpoint
    endpoint.stop()


def _within_the_bound(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: answer.update(call()), daemon=True)
    thread.start()
    thread.join(BOUND_S)
    assert answer, f"no answer within {BOUND_S} s (the request's budget is {BUDGET_S} s)"
    return answer


def _get_note(app: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    event = build_event(HttpRequest("GET", "/notes/a.md", "", [], b""), "/notes/{path+}", {"path": "a.md"}, "dev")
    return app(event)


def _kb_get_note(app: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    raw = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                      "params": {"name": "kb_get_note", "arguments": {"path": "a.md"}}}).encode()  # fmt: skip
    event = build_event(HttpRequest("POST", "/mcp", "", [("Content-Type", "application/json")], raw), "/mcp", {}, "dev")
    return app(event)


@pytest.mark.parametrize("slow_s3", ["hang", "drip"], indirect=True)
@pytest.mark.parametrize("route", ["GET /notes/{path}", "kb_get_note"])
def test_a_note_read_from_a_slow_s3_is_answered_within_the_request_budget(
    slow_s3: FakeEndpoint, route: str, load_search_app
) -> None:
    qdrant = FakeEndpoint().start()  # the note's links are read after the note: an index that answers 404
    try:
        app = load_search_app(KB_SOURCE="s3://kb-notes/", AWS_ENDPOINT_URL_S3=slow_s3.url, QDRANT_URL=qdrant.url,
                              SEARCH_BUDGET_S=str(BUDGET_S))  # fmt: skip
        answer = _within_the_bound(lambda: (_get_note if route.startswith("GET") else _kb_get_note)(app))
    finally:
        qdrant.stop()
    assert slow_s3.requests, "S3 was never asked"
    body = json.loads(answer["body"])
    if route.startswith("GET"):
        assert answer["statusCode"] == 503 and body["error"] == "source_unavailable", answer
        message = body["message"]
    else:
        assert answer["statusCode"] == 200 and body["result"]["isError"] is True, answer
        message = body["result"]["content"][0]["text"]
    assert "try again" in message and "kb-notes" not in message and "127.0.0.1" not in message
