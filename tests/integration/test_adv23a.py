"""Round 23a, the adversarial pass (part A): request bodies with a Content-Encoding, ambiguous API keys, empty list
filters, note names in other cases, listings whose last page is not the last. Through the search handler with API
Gateway events, ``kbsearch serve`` at the socket, the indexer against moto and a loopback S3."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kbsearch_tools.local.apigw import HttpRequest, build_event
from kbsearch_tools.local.process import ServeProcess, serve_process
from tests.conftest import ROOT, subprocess_env
from tests.integration.test_hostile_input import GOOD, call_tool, envelope, handler, request

__all__ = ["handler"]  # the fixture, shared with test_hostile_input

PLAIN_MCP = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
#: 10 MiB of spaces after a JSON object, gzipped to ~10 KiB: what a decoder without a bound would inflate.
BOMB = gzip.compress(GOOD + b" " * (10 * 1024 * 1024))


def _coded(path: str, raw: bytes, codings: list[str], multi: bool = False) -> dict[str, Any]:
    """A POST of ``raw`` labelled with ``codings``: one header line each (``multi``), or one comma-separated line."""
    lines = [("Content-Encoding", c) for c in codings] if multi else [("Content-Encoding", ", ".join(codings))]
    return build_event(HttpRequest("POST", path, "", [("Content-Type", "application/json"), *lines], raw), path, {},
                       "dev")  # fmt: skip


#: (the body, the Content-Encoding lines, one line per coding)
CODED_BODIES = {
    "gzip": (gzip.compress(GOOD), ["gzip"], False),
    "x-gzip": (gzip.compress(GOOD), ["x-gzip"], False),
    "deflate": (zlib.compress(GOOD), ["deflate"], False),
    "br (bytes no decoder here reads)": (b"\x1b\x2c\x00\xf8\xa5\x40" + GOOD, ["br"], False),
    "gzip, gzip": (gzip.compress(gzip.compress(GOOD)), ["gzip", "gzip"], False),
    "identity, gzip on two lines": (gzip.compress(GOOD), ["identity", "gzip"], True),
    "an unknown coding": (GOOD, ["x-made-up"], False),
    "a plain body labelled gzip": (GOOD, ["GZIP"], False),
    "a gzip bomb": (BOMB, ["gzip"], False),
}


@pytest.mark.parametrize("case", list(CODED_BODIES))
def test_a_body_with_a_content_coding_is_415_naming_it_never_read_as_json(handler, case: str) -> None:
    """A body sent with a Content-Encoding other than identity is refused with 415, the coding named and
    ``Accept-Encoding: identity`` (RFC 9110 12.5.3), on ``/search`` (the REST envelope) and ``/mcp`` (a JSON-RPC
    error): the bytes were read as JSON as they came, a gzipped body a 400 "not valid UTF-8" (a fault the caller did
    not make) and a plain one labelled gzip answered as if unlabelled. Nothing is decoded, so a bomb inflates to
    nothing. ``identity`` alone (any case) is a body as it is."""
    raw, codings, multi = CODED_BODIES[case]
    call = handler()
    answer = envelope(call(_coded("/search", raw, codings, multi)), 415, "unsupported_media_type")
    assert "Content-Encoding" in answer["message"] and "identity" in answer["message"], answer
    rpc = call(_coded("/mcp", raw[:60000] if case != "a gzip bomb" else raw, codings, multi))
    assert rpc["statusCode"] == 415 and rpc["multiValueHeaders"]["Accept-Encoding"] == ["identity"], rpc
    error = json.loads(rpc["body"])
    assert error["id"] is None and error["error"]["code"] == -32600 and "Content-Encoding" in error["error"]["message"]


@pytest.mark.parametrize("coding", ["identity", "Identity", " identity ", ""])
def test_a_body_whose_content_coding_is_identity_is_read_as_it_is(handler, coding: str) -> None:
    call = handler()
    found = call(_coded("/search", GOOD, [coding]))
    assert found["statusCode"] == 200, found["body"]
    assert call(_coded("/mcp", PLAIN_MCP, [coding]))["statusCode"] == 200


def test_a_get_with_a_content_coding_and_no_body_is_answered(handler) -> None:
    event = request("GET", "/search", content_type=None, query="q=qdrant", headers=[("Content-Encoding", "gzip")])
    assert handler()(event)["statusCode"] == 200


# -- two API keys -----------------------------------------------------------------------------------------------------


def _with_keys(event: dict[str, Any], *lines: str) -> dict[str, Any]:
    event["headers"] = {**(event.get("headers") or {}), "x-api-key": lines[-1]}
    event["multiValueHeaders"] = {**(event.get("multiValueHeaders") or {}), "x-api-key": list(lines)}
    event["requestContext"]["identity"]["apiKeyId"] = "k-hr"  # the key API Gateway validated, one of them
    return event


# one key twice is answered (rev23: test_rev23.py::test_an_event_naming_one_api_key_twice_is_answered_with_its_scope)
@pytest.mark.parametrize("lines", [("k1-aaaaaaaaaaaaaaaaaaaa", "k2-bbbbbbbbbbbbbbbbbbbb"),
                                   ("k1-aaaaaaaaaaaaaaaaaaaa, k2-bbbbbbbbbbbbbbbbbbbb",),
                                   ("k1-aaaaaaaaaaaaaaaaaaaa", "k1-aaaaaaaaaaaaaaaaaaaa, k2-bbbbbbbbbbbbbbbbbbbb")])  # fmt: skip
def test_an_event_naming_two_api_keys_is_400_naming_the_header(handler, lines: tuple[str, ...]) -> None:
    """``x-api-key`` on two lines (API Gateway's ``multiValueHeaders``) or two keys in one (``a, b``): whichever key
    API Gateway validated (its ``apiKeyId``), the function cannot tell which scope the caller meant; it answered with
    that key's scope (the wider one, when it was). 400 naming the header, on ``/mcp`` as a JSON-RPC error."""
    call = handler(ACCESS_GROUPS=json.dumps({"api_keys": {"k-hr": {"name": "hr", "groups": ["hr"]}}}))
    answer = envelope(call(_with_keys(request("GET", "/whoami", content_type=None), *lines)), 400, "bad_request")
    assert "x-api-key" in answer["message"] and "k1-" not in answer["message"], answer
    rpc = call(_with_keys(request("POST", "/mcp", PLAIN_MCP), *lines))
    assert rpc["statusCode"] == 400 and json.loads(rpc["body"])["error"]["code"] == -32600, rpc


def test_an_event_naming_one_api_key_is_answered_with_its_scope(handler) -> None:
    call = handler(ACCESS_GROUPS=json.dumps({"api_keys": {"k-hr": {"name": "hr", "groups": ["hr"]}}}))
    result = call(_with_keys(request("GET", "/whoami", content_type=None), "k1-aaaaaaaaaaaaaaaaaaaa"))
    assert result["statusCode"] == 200 and "hr" in json.loads(result["body"])["groups"], result


@pytest.fixture(scope="module")
def served_with_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    store = tmp_path_factory.mktemp("adv23a") / "q"
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"),
                         KB_LOCAL_API_KEYS="pubkey,hrkey:hr")  # fmt: skip
    with serve_process(env, cwd=ROOT) as process:
        yield process
    text = process.text()
    assert "Traceback" not in text and "pubkey" not in text and "hrkey" not in text, text[-3000:]


@pytest.mark.parametrize("keys", [["pubkey", "hrkey"], ["hrkey", "pubkey"], ["hrkey", "nokey"], ["nokey", "hrkey"],
                                  ["pubkey, hrkey"], ["hrkey,hrkey,pubkey"]])  # fmt: skip
def test_serve_refuses_a_request_naming_two_api_keys(served_with_keys: ServeProcess, keys: list[str]) -> None:
    """At ``kbsearch serve`` the first ``x-api-key`` line was taken: ``hrkey`` then ``pubkey`` was answered with the
    hr scope, ``hrkey`` then a wrong key too; two keys in one line matched no key (403). Each is a 400 naming the
    header now; one key is answered as before."""
    headers = [("x-api-key", k) for k in keys]
    with httpx.Client(base_url=served_with_keys.base_url, timeout=30) as client:
        refused = client.get("/whoami", headers=headers)
        assert refused.status_code == 400 and "x-api-key" in refused.json()["message"], refused.text
        assert "hrkey" not in refused.text and "pubkey" not in refused.text
        assert client.get("/whoami", headers={"x-api-key": "hrkey"}).json()["groups"] == ["hr", "public"]
        assert client.get("/whoami", headers={"x-api-key": "pubkey"}).json()["groups"] == ["public"]


@pytest.mark.parametrize("coding", ["gzip", "deflate, gzip", "br"])
def test_serve_refuses_a_coded_body_with_415_and_accept_encoding(served_with_keys: ServeProcess, coding: str) -> None:
    with httpx.Client(base_url=served_with_keys.base_url, timeout=30) as client:
        answer = client.post("/search", content=gzip.compress(GOOD),
                             headers={"x-api-key": "pubkey", "Content-Type": "application/json",
                                      "Content-Encoding": coding})  # fmt: skip
        assert answer.status_code == 415 and answer.headers["accept-encoding"] == "identity", answer.text
        assert answer.json()["error"] == "unsupported_media_type" and "Content-Encoding" in answer.json()["message"]


# -- empty list filters -----------------------------------------------------------------------------------------------

LIST_FILTERS = {"tags": "tags", "type": "types", "status": "statuses"}  # POST's filter name → kb_search's argument


def _post_paths(call: Any, filters: dict[str, Any]) -> list[str] | int:
    raw = json.dumps({"query": "qdrant ключи", "top_k": 20, "rerank": False, "filters": filters}).encode()
    result = call(request("POST", "/search", raw))
    return (
        [h["path"] for h in json.loads(result["body"])["results"]]
        if result["statusCode"] == 200
        else result["statusCode"]
    )


def _tool_paths(call: Any, arguments: dict[str, Any]) -> list[str] | str:
    answer = call_tool(call, "kb_search", {"query": "qdrant ключи", "top_k": 20, "rerank": False, **arguments})
    if answer["isError"]:
        return "tool error: " + answer["content"][0]["text"]
    return [hit["path"] for hit in answer["structuredContent"]["results"]]


@pytest.mark.parametrize("name", list(LIST_FILTERS))
def test_an_empty_list_filter_is_no_filter_and_null_too_on_every_surface(handler, name: str) -> None:
    """``filters.tags: []`` (and ``type``, ``status``) filters nothing, on ``POST /search`` and ``kb_search`` alike
    (an assistant fills an optional list it leaves empty with ``[]``: the tool's own default); ``null`` is a filter
    not given, on both: ``kb_search`` refused ``tags: null`` (and ``types``, ``statuses``, ``path_prefix``,
    ``updated_after``) as "Input should be a valid list" while POST took it as no filter and ``kb_search`` took its
    old ``type: null`` as none. An empty value (``[""]``, ``tags=`` on GET) matches no note and is refused
    everywhere."""
    call = handler()
    unfiltered = _post_paths(call, {})
    assert isinstance(unfiltered, list) and unfiltered
    assert _post_paths(call, {name: []}) == unfiltered
    assert _post_paths(call, {name: None}) == unfiltered
    assert _post_paths(call, {name: [""]}) == 422
    tool = LIST_FILTERS[name]
    assert _tool_paths(call, {}) == unfiltered
    assert _tool_paths(call, {tool: []}) == unfiltered
    assert _tool_paths(call, {tool: None}) == unfiltered
    assert str(_tool_paths(call, {tool: [""]})).startswith("tool error: ")
    for other in ("path_prefix", "updated_after"):
        assert _tool_paths(call, {other: None}) == unfiltered, other
    got = call(request("GET", "/search", content_type=None, query=f"q=qdrant&{name}="))
    assert got["statusCode"] == 422, got["body"]


# -- a listing whose last page is not the last ------------------------------------------------------------------------

#: ``{token asked for ("" first) → (the page's notes by index, IsTruncated, NextContinuationToken)}``
FALSELY_FINAL: dict[str, dict[str, tuple[range, bool | None, str | None]]] = {
    "ended, names a next page": {"": (range(4), False, "T1"), "T1": (range(4, 6), False, None)},
    "no IsTruncated, names a next page": {"": (range(4), None, "T1"), "T1": (range(4, 6), False, None)},
    "an empty page going on, then the rest": {"": (range(0), True, "T1"), "T1": (range(6), False, None)},
}  # fmt: skip


@pytest.mark.parametrize("lie", list(FALSELY_FINAL))
def test_a_listing_page_that_says_it_ended_but_names_a_next_page_deletes_nothing(tmp_path: Path, lie: str) -> None:
    """Six notes indexed; then S3 lists four of them on a page that says the listing ended (``IsTruncated`` false, or
    absent) while naming a next page (``NextContinuationToken``) holding the other two. The listing stopped there and
    the full sync deleted the two (a third of the KB, under the mass-delete guard's half); it is a failed listing now,
    naming what S3 did, nothing deleted. An empty page that goes on is followed (S3 may send one), every note kept."""
    import threading
    from urllib.parse import parse_qs, urlsplit

    import boto3
    from botocore.config import Config

    from kbsearch.config import Secrets, Settings
    from kbsearch.indexer import Indexer, SyncOptions
    from kbsearch.qdrant import open_store
    from kbsearch.sources import LocalSource, S3Source
    from kbsearch_tools.fakes import FakeEndpoint
    from tests.integration.test_lying_objects import _listing_page

    notes = [(f"n{i}.md", f"# N{i}\n\nnote {i}".encode()) for i in range(6)]
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, text in notes:
        (kb / name).write_bytes(text)
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    store = open_store(settings, Secrets(settings))
    try:
        Indexer(LocalSource(kb), store, None).sync()
    finally:
        store.close()
    endpoint = FakeEndpoint().start()

    def respond(method: str, path: str) -> tuple[int, bytes, str]:
        if "list-type=2" not in path:  # a HEAD of a note the listing lacks: gone
            return 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml"
        token = parse_qs(urlsplit(path).query).get("continuation-token", [""])[0]
        indices, truncated, following = FALSELY_FINAL[lie][token]
        page = _listing_page([notes[i] for i in indices], bool(truncated), following)
        if truncated is None:
            page = page.replace(b"<IsTruncated>false</IsTruncated>", b"")
        return 200, page, "application/xml"

    endpoint.responder = respond
    client = boto3.client(
        "s3", endpoint_url=endpoint.url, region_name="us-east-1",
        config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )  # fmt: skip
    store = open_store(settings, Secrets(settings))
    outcome: list[Any] = []
    try:
        sync = threading.Thread(
            target=lambda: outcome.append(Indexer(S3Source("kb", "", client), store, None, SyncOptions()).sync()),
            daemon=True,
        )
        sync.start()
        sync.join(60)
        assert outcome, "the sync is still listing after 60 s"
        after = sorted({p["path"] for p in store.points().values()})
    finally:
        endpoint.stop()
        store.close()
    report = outcome[0]
    assert after == [name for name, _ in notes] and report.deleted == 0, report
    if lie.startswith("an empty page"):
        assert not report.error, report.error
    else:
        assert report.error == "listing s3://kb/ failed: S3 said the listing ended but named a next page", report


# -- note names in other cases ----------------------------------------------------------------------------------------

CASED_NAMES = ["x.MD", "y.Md", "sub/z.mD", "w.markdown", "v.MARKDOWN", "u.md.txt"]


def test_change_events_and_the_full_sync_take_the_same_names_for_notes(tmp_path: Path, monkeypatch: Any) -> None:
    """``x.MD``, ``y.Md``, ``z.mD`` are notes to the full sync and to a change event for them alike (one predicate,
    ``sources.is_note_name``, which ``serve --watch`` applies too); ``.markdown`` and ``.md.txt`` to neither. The
    bucket's notification rules (one per casing of ``.md``, events23) send an event for each of the three."""
    from moto import mock_aws

    from kbsearch.config import Secrets
    from kbsearch.indexer import run_sync
    from kbsearch_tools.s3events import sqs_record
    from tests.integration.test_events import BUCKET, PREFIX, TABLE, Indexer, note, open_points

    with mock_aws():
        import boto3

        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        )  # fmt: skip
        from kbsearch_tools.s3events import EventPath

        aws = EventPath(BUCKET, PREFIX).create()
        indexer = Indexer(monkeypatch, tmp_path, None)
        aws.receive()  # S3's test event
        aws.put(f"{PREFIX}good.md", note(1))
        (good,) = aws.receive()
        for i, name in enumerate(CASED_NAMES, 2):
            aws.put(f"{PREFIX}{name}", note(i))
        # since events23 the bucket notifies every casing of `.md` (one rule per casing), nothing else
        assert len(aws.receive()) == 3

        def created(key: str) -> dict[str, Any]:
            record = json.loads(good["body"])["Records"][0]
            record["s3"]["object"]["key"] = key
            return sqs_record(json.dumps({"Records": [record]}), aws.queue_arn)

        assert indexer([good, *(created(f"{PREFIX}{n}") for n in CASED_NAMES)]) == []
        by_events = {p["path"] for p in open_points(indexer.settings())}
        settings = indexer.settings(qdrant_path=str(tmp_path / "full"))
        assert run_sync(settings, Secrets(settings)).error is None
        by_full_sync = {p["path"] for p in open_points(settings)}
    assert by_events == by_full_sync == {"good.md", "x.MD", "y.Md", "sub/z.mD"}


def test_filters_null_is_no_filters(handler) -> None:
    """``"filters": null`` on ``POST /search`` is no filters, as a null filter inside them is that filter not given
    (it was a 422 "Input should be a valid dictionary"); a list or a string there stays a 422."""
    call = handler()
    assert _post_paths(call, None) == _post_paths(call, {})  # type: ignore[arg-type]
    odds: list[Any] = [[], "tags"]
    for odd in odds:
        raw = json.dumps({"query": "qdrant", "filters": odd}).encode()
        assert call(request("POST", "/search", raw))["statusCode"] == 422


def test_kb_search_advertises_the_list_bounds_it_enforces(handler) -> None:
    """``kb_search``'s input schema allowed 50 ``types`` and ``statuses``; the search holds them to 20, so 21 (valid
    by the schema an assistant reads) was a tool error naming ``type``, an argument the tool does not have. The
    schema says 20 now, and 21 is refused naming ``types`` / ``statuses``."""
    from kbsearch.schemas import SearchFilters

    call = handler()
    raw = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    tools = json.loads(call(request("POST", "/mcp", raw))["body"])["result"]["tools"]
    schema = next(t for t in tools if t["name"] == "kb_search")["inputSchema"]["properties"]
    bounds = {name: field.metadata for name, field in SearchFilters.model_fields.items()}
    for argument, name in (("tags", "tags"), ("types", "type"), ("statuses", "status")):
        enforced = next(m.max_length for m in bounds[name] if hasattr(m, "max_length"))
        assert schema[argument]["maxItems"] == enforced, (argument, schema[argument])
        answer = call_tool(call, "kb_search", {"query": "qdrant", argument: [f"v{i}" for i in range(enforced + 1)]})
        assert answer["isError"] and f"{argument}: " in answer["content"][0]["text"], answer


# -- kbsearch serve: connection options --------------------------------------------------------------------------------


def _raw_exchange(base_url: str, data: bytes) -> bytes:
    """Send ``data`` without ending our side and read until the server closes (or 30 s pass)."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("connection", ["Connection: keep-alive, close", "Connection: keep-alive\r\nConnection: close",
                                        "Connection: Upgrade, CLOSE", "Connection: close"])  # fmt: skip
def test_serve_closes_the_connection_when_a_connection_option_says_close(
    served_with_keys: ServeProcess, connection: str
) -> None:
    """``close`` among a request's connection options (RFC 9112 9.6) closes the connection after the answer, whatever
    else the header lists and in whichever of several headers: http.server compared the first header whole, so
    ``keep-alive, close`` kept the connection open, and the request pipelined after it was answered too (a client
    reading to the end of the answer waited out the idle timeout). The request after it gets no answer."""
    first = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n{connection}\r\n\r\n".encode()
    raw = _raw_exchange(served_with_keys.base_url, first + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200") == 1, raw[:2000]


def test_serve_reads_header_values_without_the_white_space_around_them(served_with_keys: ServeProcess) -> None:
    """RFC 9110 5.5: white space around a field value is not part of it. http.server kept the trailing white space, so
    ``x-api-key: hrkey `` (a key pasted with a space or a tab after it) was no key, a 403, and the function got
    ``Content-Type`` and every other header with it."""
    for value in ("hrkey ", "hrkey\t", " \thrkey  "):
        raw = _raw_exchange(served_with_keys.base_url, f"GET /whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {value}"
                            "\r\nConnection: close\r\n\r\n".encode())  # fmt: skip
        assert raw.startswith(b"HTTP/1.1 200") and b'"hr"' in raw, (value, raw[:500])
    raw = _raw_exchange(served_with_keys.base_url, b"GET /whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: hr key"
                        b"\r\nConnection: close\r\n\r\n")  # fmt: skip
    assert raw.startswith(b"HTTP/1.1 403"), raw[:300]


# -- the indexer: an access file that cannot be read -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["a FIFO", "a dangling symlink"])
def test_an_access_file_that_is_no_file_stops_the_sync_naming_it(tmp_path: Path, kind: str) -> None:
    """The KB's ``_access.yaml`` a FIFO or a link to nowhere: the full sync stops (the rules cannot be known, so no
    note may be indexed as public), as for an access file that is not YAML, and says which file: the error was the
    reason alone, ``not a regular file (a FIFO)``, naming no file of a KB that may hold thousands."""
    import os

    from tests.integration.test_hostile_notes import kbsearch_index

    kb = tmp_path / "kb"
    (kb / "hr").mkdir(parents=True)
    (kb / "a.md").write_text("# A\n\nalpha\n", encoding="utf-8")
    (kb / "hr" / "pay.md").write_text("# Pay\n\nsalaries\n", encoding="utf-8")
    if kind == "a FIFO":
        os.mkfifo(kb / "_access.yaml")
    else:
        (kb / "_access.yaml").symlink_to(tmp_path / "nowhere.yaml")
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code != 0 and report["error"].startswith("_access.yaml cannot be read: "), (code, report, stderr)
    assert report["added"] == 0, report
