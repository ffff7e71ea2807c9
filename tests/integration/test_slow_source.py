"""A note read by path on the request path (``GET /notes/{path}``, ``kb_get_note``) from an S3 that hangs or drips,
through the real search handler with API Gateway events: the answer comes within the request's budget, a 503
naming the knowledge base (never the bucket), whatever S3 does. botocore bounds each socket read (20 s, four
attempts), not the exchange: a hanging bucket held one read 100 s, past API Gateway's 29 s and the function's 28."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.conftest import copy_store
from tests.integration.test_fault_matrix import listing_xml

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


@pytest.mark.parametrize("slow_s3", ["hang"], indirect=True)
def test_a_note_read_abandoned_at_the_budget_ends_about_when_the_budget_does(
    slow_s3: FakeEndpoint, load_search_app
) -> None:
    """The read a 503 abandons (its helper thread) ends within 5x the budget of the request, while the bucket
    hangs 30 s: the request path's S3 client takes its timeouts from the budget (at most the budget to connect and
    per socket read, two attempts). It had the indexer's (20 s a socket read, four attempts): each abandoned read
    kept its thread ~100 s."""
    import time

    def reads() -> set[threading.Thread]:  # this test's: other tests' drips may still hold theirs
        return {t for t in threading.enumerate() if t.name == "note-read"} - before

    before = {t for t in threading.enumerate() if t.name == "note-read"}
    qdrant = FakeEndpoint().start()
    try:
        app = load_search_app(KB_SOURCE="s3://kb-notes/", AWS_ENDPOINT_URL_S3=slow_s3.url, QDRANT_URL=qdrant.url,
                              SEARCH_BUDGET_S=str(BUDGET_S))  # fmt: skip
        answer = _within_the_bound(lambda: _get_note(app))
        assert answer["statusCode"] == 503, answer
        give_up = time.monotonic() + BOUND_S
        while time.monotonic() < give_up and reads():
            time.sleep(0.1)
        assert not reads(), "the abandoned read is still reading"
    finally:
        qdrant.stop()


# -- the catalog: several index reads in one request --------------------------------------------------------------


class _SlowQdrant:
    """A loopback Qdrant answering the catalog's facets (a count for any key) and its ordered query (no points),
    each after ``delay_s``: slower than a healthy Qdrant, each answer within one call's timeout; a restricted read's
    lookup of the note (a scroll) at once, holding it."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.endpoint = FakeEndpoint().start()
        self.endpoint.responder = self.respond

    def respond(self, method: str, path: str) -> tuple[int, bytes, str] | None:
        import time

        if path.endswith("/points/scroll"):  # a restricted read's first question, the note held: at once
            result: Any = {"points": [{"id": 1, "payload": {}}], "next_page_offset": None}
            return 200, json.dumps({"result": result, "status": "ok", "time": 0.001}).encode(), "application/json"
        time.sleep(self.delay_s)
        if path.endswith("/facet"):
            result = {"hits": [{"value": 0, "count": 3}]}
        elif path.endswith("/points/query"):
            result = {"points": []}
        elif method == "GET" and path.rstrip("/").endswith("/collections/kb"):
            result = {"config": {"params": {}, "metadata": {"access_restricted_links": {}}}}
        else:
            return 404, b'{"status": {"error": "Not found"}}', "application/json"
        return 200, json.dumps({"result": result, "status": "ok", "time": 0.001}).encode(), "application/json"


def _get_catalog(app: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    return app(build_event(HttpRequest("GET", "/notes", "recent=5", [], b""), "/notes", {}, "dev"))


def _kb_list(app: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    raw = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                      "params": {"name": "kb_list", "arguments": {}}}).encode()  # fmt: skip
    event = build_event(HttpRequest("POST", "/mcp", "", [("Content-Type", "application/json")], raw), "/mcp", {}, "dev")
    return app(event)


@pytest.mark.parametrize("route", ["GET /notes", "kb_list"])
def test_the_catalog_s_index_reads_share_the_request_budget(route: str, load_search_app) -> None:
    """Five facets and an ordered query, one after another, each answered in 3/4 of the budget: the calls share the
    budget, so the second is cut off and the answer is the index's 503, within the budget. Each call was given the
    whole budget (its timeout was taken once, before the first): six calls took six times the budget, answered
    200 (with the default 10 s budget, a minute: past the gateway's 29 s)."""
    qdrant = _SlowQdrant(0.75 * BUDGET_S)
    try:
        app = load_search_app(QDRANT_URL=qdrant.endpoint.url, SEARCH_BUDGET_S=str(BUDGET_S))
        answer = _within_the_bound(lambda: (_get_catalog if route.startswith("GET") else _kb_list)(app))
    finally:
        qdrant.endpoint.stop()
    body = json.loads(answer["body"])
    if route.startswith("GET"):
        assert answer["statusCode"] == 503 and body["error"] == "index_unavailable", answer
    else:
        assert answer["statusCode"] == 200 and body["result"]["isError"] is True, answer
    assert len(qdrant.endpoint.requests) < 6  # the catalog stopped asking once its budget was spent


# -- a note and its links: two dependencies in one request --------------------------------------------------------

_NO_SUCH_KEY = b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"


@pytest.mark.parametrize("route", ["GET /notes/{path}", "kb_get_note"])
def test_a_note_and_its_links_share_the_request_budget(route: str, load_search_app) -> None:
    """S3 gives the note in 0.3 of the budget (no access file: a fast 404), and Qdrant answers the note's links in
    0.8 of it: the links' read gets what the note's left (at most 0.7), is cut off, and the note is answered with
    its links marked unavailable, within the budget. Each read was given the whole budget (and the restricted link
    list after them a third: 1.9 budgets here; 30 s at the default 10 s, past the function's 28 s timeout). The
    note's read has 0.7 of the budget to spare, and a slower machine only leaves the links less time: the outcome
    does not hang on how fast the runner is."""
    import time

    def s3(method: str, path: str) -> tuple[int, bytes, str] | None:
        if "list-type=2" in path:  # the access file looked for under another Unicode form: none
            return 200, listing_xml([]), "application/xml"
        if "_access.yaml" in path:
            return 404, _NO_SUCH_KEY, "application/xml"
        time.sleep(0.3 * BUDGET_S)
        return 200, NOTE, "application/octet-stream"

    source = FakeEndpoint().start()
    source.responder = s3
    qdrant = _SlowQdrant(0.8 * BUDGET_S)
    try:
        app = load_search_app(KB_SOURCE="s3://kb-notes/", AWS_ENDPOINT_URL_S3=source.url, QDRANT_URL=qdrant.endpoint.url,
                              SEARCH_BUDGET_S=str(BUDGET_S))  # fmt: skip
        answer = _within_the_bound(lambda: (_get_note if route.startswith("GET") else _kb_get_note)(app))
    finally:
        source.stop()
        qdrant.endpoint.stop()
    assert answer["statusCode"] == 200, answer
    body = json.loads(answer["body"])
    if route.startswith("GET"):
        assert "The note a." in body["body"] and body["links"] is None and body["degraded"] == ["links"], body
    else:
        text = body["result"]["content"][0]["text"]
        assert "The note a." in text and "links unavailable" in text, text


# -- round 18: a path S3 cannot hold --------------------------------------------------------------------------------

#: A note path within the 1,024 characters a note path may have, whose key is over the 1,024 bytes S3 allows a key
#: (Cyrillic: two bytes a letter): S3 answers a HEAD, a GET or a listing naming it 400 KeyTooLongError.
LONG_PATH = "кадры/" + "ж" * 600 + ".md"


@pytest.mark.parametrize("route", ["GET /notes/{path}", "kb_get_note"])
def test_a_path_longer_than_any_s3_key_is_no_note_never_a_503(
    route: str, load_search_app, bm25_index: Path, tmp_path: Path
) -> None:
    """A read by a path S3 can hold no key of (over 1,024 bytes once UTF-8 encoded, within the 1,024 characters of
    a note path) answers as for a note that is not there (404 `not_found`; a tool error saying so), S3 never asked
    about it. S3 answers such a key 400 KeyTooLongError, which was read as S3 failing: 503 `source_unavailable`,
    'try again shortly', for a request no retry can answer."""
    from urllib.parse import unquote, urlsplit

    s3 = FakeEndpoint().start()
    asked: list[int] = []

    def respond(method: str, path: str) -> tuple[int, bytes, str]:
        key = unquote(urlsplit(path).path).split("/", 2)[-1]
        if len(key.encode()) > 1024 or "ж" * 300 in unquote(path):
            asked.append(len(key.encode()))
            return (
                400,
                b"<Error><Code>KeyTooLongError</Code><Message>Your key is too long</Message></Error>",
                "application/xml",
            )
        if "list-type=2" in path:
            return 200, listing_xml([]), "application/xml"
        return (
            404,
            b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
            "application/xml",
        )

    s3.responder = respond
    copy_store(bm25_index, tmp_path / "q")  # (sample-kb's index: it holds no such note)
    try:
        app = load_search_app(KB_SOURCE="s3://kb-notes/", AWS_ENDPOINT_URL_S3=s3.url, QDRANT_PATH=str(tmp_path / "q"),
                              SEARCH_BUDGET_S=str(BUDGET_S))  # fmt: skip
        if route.startswith("GET"):
            event = build_event(
                HttpRequest("GET", f"/notes/{LONG_PATH}", "", [], b""), "/notes/{path+}", {"path": LONG_PATH}, "dev"
            )
        else:
            raw = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                              "params": {"name": "kb_get_note", "arguments": {"path": LONG_PATH}}}).encode()  # fmt: skip
            event = build_event(
                HttpRequest("POST", "/mcp", "", [("Content-Type", "application/json")], raw), "/mcp", {}, "dev"
            )
        answer = _within_the_bound(lambda: app(event))
    finally:
        s3.stop()
    body = json.loads(answer["body"])
    if route.startswith("GET"):
        assert answer["statusCode"] == 404 and body["error"] == "not_found", answer
    else:
        assert answer["statusCode"] == 200 and body["result"]["isError"] is True, answer
        assert "no note at" in body["result"]["content"][0]["text"], body
    assert asked == []
