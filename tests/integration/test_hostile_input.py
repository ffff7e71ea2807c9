"""Hostile client input through the real handler (API Gateway REST events): never a 5xx, always the documented
envelope. Each class is tried with several members: media types, body bytes, JSON shapes, strict types, query
strings, MCP bodies and note paths, Slack bodies and replays (memory and DynamoDB via moto)."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import unicodedata
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
from moto import mock_aws

from kbsearch import slack
from kbsearch_tools.fakes import provider_env
from kbsearch_tools.local.apigw import HttpRequest, build_event
from kbsearch_tools.s3events import EventPath, eventbridge_body, sqs_record
from tests.conftest import ROOT, copy_store
from tests.integration import test_events as events
from tests.integration.mcp_checks import check_slot_answer, slot_messages
from tests.integration.test_events import aws  # noqa: F401 (a fixture: moto's bucket, queue and lease table)

Handler = Callable[[dict[str, Any]], dict[str, Any]]
SLACK_SECRET = "slack-signing-secret-789"
GOOD = json.dumps({"query": "restore a qdrant snapshot", "top_k": 2}).encode()


@pytest.fixture
def handler(bm25_index: Path, tmp_path: Path, load_search_app) -> Callable[..., Handler]:
    def load(**env: str) -> Handler:
        store = tmp_path / f"q-{uuid.uuid4().hex[:8]}"
        copy_store(bm25_index, store)
        return load_search_app(QDRANT_PATH=str(store), **{"KB_SOURCE": str(ROOT / "sample-kb"), **env})

    return load


def request(method: str, path: str, raw: bytes = b"", content_type: str | None = "application/json",
            query: str = "", headers: list[tuple[str, str]] | None = None) -> dict[str, Any]:  # fmt: skip
    hdrs = ([("Content-Type", content_type)] if content_type is not None else []) + (headers or [])
    return build_event(HttpRequest(method, path, query, hdrs, raw), path, {}, "dev")


def envelope(result: dict[str, Any], status: int, error: str) -> dict[str, Any]:
    assert result["statusCode"] == status, result
    assert result["multiValueHeaders"]["Content-Type"] == ["application/json"]
    answer = json.loads(result["body"])
    assert answer["error"] == error and answer["message"], answer
    return answer


# -- POST /search ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/octet-stream", "multipart/form-data; boundary=xyz",
     "application/x-www-form-urlencoded", "application/xml", "image/png", "application/json; charset=latin-1",
     "application/json; charset=utf-16", "application/json; charset=utf-8-sig", "application/json; charset=nonsense\x00",
     "json", ";"],
)  # fmt: skip
def test_non_json_media_types_are_415(handler, content_type: str) -> None:
    envelope(handler()(request("POST", "/search", GOOD, content_type)), 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "Application/JSON", "application/json; charset=UTF-8", 'application/json;charset="utf8"',
     "application/vnd.kb+json", "application/json; version=1",
     # US-ASCII is a subset of UTF-8 (a client library's default label; was a 415: adv24a's "left")
     "application/json; charset=us-ascii", "application/json; charset=US-ASCII", "application/json; charset=ascii"],
)  # fmt: skip
def test_json_media_types_are_accepted(handler, content_type: str | None) -> None:
    result = handler()(request("POST", "/search", GOOD, content_type))
    assert result["statusCode"] == 200, result["body"]
    assert len(json.loads(result["body"])["results"]) == 2


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"query": "caf\xe9"}', "bad_request"),  # Latin-1, not UTF-8
        (b"\xff\xfe" + '{"query": "x"}'.encode("utf-16-le"), "bad_request"),  # UTF-16 with its BOM
        ('{"query": "x"}'.encode("utf-32"), "bad_request"),
        (b'{"query": "\xed\xa0\x80"}', "bad_request"),  # an encoded surrogate is not UTF-8
        (b'{"query": "a\x00b"}', "invalid_json"),  # a raw NUL inside a string
        (b'{"query": "x"}\x00', "invalid_json"),
        (b'{"query": "\\ud800"}', "invalid_json"),  # a lone surrogate escape
        (b'{"query": "x", "filters": {"tags": ["\\udfff"]}}', "invalid_json"),
        (b'{"query": "x", "query": "y"}', "invalid_json"),  # duplicate keys
        (b'{"query": "x", "filters": {"tags": ["a"], "tags": ["b"]}}', "invalid_json"),
        (b'{"query": "x", "top_k": ' + b"9" * 5000 + b"}", "invalid_json"),
        (b'{"query": "x", "min_score": 0.' + b"1" * 5000 + b"}", "invalid_json"),
        (b'{"query": "x", "extra": -' + b"1" * 5000 + b"e5}", "invalid_json"),
        (b"[" * 1000 + b"]" * 1000, "invalid_json"),
        (b'{"query": "x", "filters": ' + b'{"a": ' * 900 + b"1" + b"}" * 900 + b"}", "invalid_json"),
        (b'{"query": "x", "filters": {"tags": ' + b"[" * 5000 + b"]" * 5000 + b"}}", "invalid_json"),
        (b"{not json", "invalid_json"),
        (b'{"query": "x"', "invalid_json"),
        (b"\xef\xbb\xbf\xef\xbb\xbf{}", "invalid_json"),  # one BOM is ignored, two are not
    ],
)
def test_body_bytes_and_json_shapes_are_400(handler, raw: bytes, error: str) -> None:
    assert len(raw) < 64 * 1024
    envelope(handler()(request("POST", "/search", raw)), 400, error)


def test_a_utf8_bom_is_ignored_and_nul_escapes_are_text(handler) -> None:
    call = handler()
    assert call(request("POST", "/search", b"\xef\xbb\xbf" + GOOD))["statusCode"] == 200
    assert call(request("POST", "/search", b'{"query": "qdrant \\u0000 snapshot"}'))["statusCode"] == 200


def test_bad_base64_from_the_gateway_is_400(handler) -> None:
    event = request("POST", "/search", GOOD)
    event.update(body="%%% not base64 %%%", isBase64Encoded=True)
    envelope(handler()(event), 400, "bad_request")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"query": "x", "top_k": "5"}, ["body", "top_k"]),
        ({"query": "x", "top_k": True}, ["body", "top_k"]),
        ({"query": "x", "top_k": 5.0}, ["body", "top_k"]),
        ({"query": "x", "top_k": None}, ["body", "top_k"]),
        ({"query": "x", "rerank": "yes"}, ["body", "rerank"]),
        ({"query": "x", "rerank": 1}, ["body", "rerank"]),
        ({"query": "x", "expand": "false"}, ["body", "expand"]),
        ({"query": "x", "min_score": "0.5"}, ["body", "min_score"]),
        ({"query": "x", "min_score": "NaN"}, ["body", "min_score"]),
        ({"query": "x", "min_score": True}, ["body", "min_score"]),
        ({"query": ["x"]}, ["body", "query"]),
        ({"query": "x", "filters": {"tags": [1]}}, ["body", "filters", "tags"]),
        ({"query": "x", "filters": {"path_prefix": 5}}, ["body", "filters", "path_prefix"]),
        ({"query": "x", "filters": {"updated_after": 20240101}}, ["body", "filters", "updated_after"]),
        ({"query": "x", "filters": {"updated_after": "2024-02-30"}}, ["body", "filters", "updated_after"]),
        ({"query": "x", "filters": []}, ["body", "filters"]),
    ],
)
def test_strict_types_are_422(handler, body: Any, loc: list[str]) -> None:
    answer = envelope(handler()(request("POST", "/search", json.dumps(body).encode())), 422, "validation_error")
    assert any(d["loc"][: len(loc)] == loc for d in answer["detail"]), answer["detail"]


#: Request bodies within the 64 KiB limit whose field *names* are the client's own bytes: one unknown field named by
#: 60 KB, 6,000 unknown fields, both inside ``filters``.
UNKNOWN_FIELDS = {
    "one 60 KB name": {"query": "x", "x" * 60_000: 1},
    "6,000 names": {"query": "x", **{f"a{i}": 0 for i in range(6_000)}},
    "a 60 KB name in filters": {"query": "x", "filters": {"x" * 60_000: 1}},
    "6,000 names in filters": {"query": "x", "filters": {f"a{i}": 0 for i in range(6_000)}},
}


def _bounded(answer: Any) -> None:
    text = json.dumps(answer)
    assert len(text) < 3_000 and "x" * 61 not in text and "a5999" not in text, text[:300]


@pytest.mark.parametrize("body", list(UNKNOWN_FIELDS.values()), ids=list(UNKNOWN_FIELDS))
def test_unknown_field_names_are_never_echoed_unbounded(handler, body: dict[str, Any]) -> None:
    """A 422 names at most the first few unknown fields, each cut to 60 characters, and says how many there are
    (each was listed whole: a 60 KB name sent back, 6,000 names a 500 KB answer to a 64 KiB request; over stdio, a
    4 MB line's name or 400,000 names a 30 MB answer). The same for ``kb_search``'s arguments over ``/mcp``."""
    call = handler()
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert len(raw) < 64 * 1024
    answer = envelope(call(request("POST", "/search", raw)), 422, "validation_error")
    _bounded(answer)
    assert answer["detail"] and all(d["type"] == "extra_forbidden" for d in answer["detail"]), answer
    many = len(body) > 2 or len(body.get("filters", {})) > 1
    assert ("6000 errors" in answer["message"]) == many, answer["message"]
    arguments = body if "filters" not in body else {"query": "x", **body["filters"]}
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "kb_search", "arguments": arguments}}
    result = call(request("POST", "/mcp", json.dumps(rpc, separators=(",", ":")).encode()))
    assert result["statusCode"] == 200, result["body"][:300]
    tool = json.loads(result["body"])["result"]
    assert tool["isError"] and "invalid arguments for kb_search" in tool["content"][0]["text"], tool
    _bounded(tool)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"])
def test_non_finite_min_score_is_422(handler, literal: bytes) -> None:
    answer = envelope(handler()(request("POST", "/search", b'{"query": "x", "min_score": ' + literal + b"}")),
                      422, "validation_error")  # fmt: skip
    assert any(d["loc"] == ["body", "min_score"] for d in answer["detail"])
    assert "NaN" not in json.dumps(answer) and "Infinity" not in json.dumps(answer)


@pytest.mark.parametrize("raw", [b"[]", b"[1, 2]", b'"query"', b"42", b"null", b"true", b"NaN", b"{}"])
def test_top_level_non_objects_are_422(handler, raw: bytes) -> None:
    envelope(handler()(request("POST", "/search", raw)), 422, "validation_error")


def test_empty_body_is_422(handler) -> None:
    envelope(handler()(request("POST", "/search", b"")), 422, "validation_error")


# -- GET /search ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("q=x&top_k=5.0", 422), ("q=x&top_k=1e999", 422), ("q=x&top_k=" + "9" * 5000, 422), ("q=x&top_k=-0", 422),
        ("q=x&top_k=NaN", 422), ("q=x&rerank=maybe", 422), ("q=x&updated_after=2024-13-45", 422),
        ("q=x&" + "&".join(["tags=t"] * 60), 422), ("q=" + "x" * 1001, 422), ("top_k=3", 422),
        ("q=%00", 422), ("q=%ff%fe", 422), ("q=%ed%a0%80", 422), ("q=a%00b&tags=%00", 422), ("q=%", 422),
        ("q=x&path_prefix=..%2F..%2Fetc", 422), ("q=x&q=y", 422), ("q=x&unknown=1", 200),
    ],
)  # fmt: skip
def test_hostile_query_strings_are_4xx_or_answers(handler, query: str, status: int) -> None:
    result = handler()(request("GET", "/search", query=query, content_type=None))
    assert result["statusCode"] == status, result["body"][:500]
    if status == 422:
        envelope(result, 422, "validation_error")


#: A single-valued parameter given twice (API Gateway: both in ``multiValueQueryStringParameters``, the last alone
#: in ``queryStringParameters``), per GET route.
REPEATED = [
    ("/search", "q=a&q=b", "q"), ("/search", "q=qdrant&q=qdrant", "q"), ("/search", "q=x&top_k=2&top_k=3", "top_k"),
    ("/search", "q=x&path_prefix=a&path_prefix=b", "path_prefix"), ("/search", "q=x&rerank=true&rerank=false", "rerank"),
    ("/search", "q=x&updated_after=2020-01-01&updated_after=2021-01-01", "updated_after"),
    ("/search", "q=x&expand=false&expand=false", "expand"), ("/search", "q=x&q=&q=y", "q"),
    ("/notes", "recent=1&recent=2", "recent"), ("/notes", "path_prefix=ru&path_prefix=..", "path_prefix"),
    ("/notes/adr/0001-record-architecture-decisions.md", "section=a&section=b", "section"),
    ("/docs", "format=json&format=html", "format"),
]  # fmt: skip


def test_a_single_valued_query_parameter_given_twice_is_422_naming_it(handler) -> None:
    """``GET /search?q=a&q=b`` was a generic 422 (`Input should be a valid string`); ``GET /notes?recent=1&recent=2``
    and ``?section=a&section=b`` were answered with the last value, silently. Every single-valued parameter of every
    GET route given more than once is a 422 naming it and how many times; the repeatable filters (``tags``, ``type``,
    ``status``) and parameters no route reads are answered as before."""
    call = handler()
    for path, query, name in REPEATED:
        answer = envelope(call(request("GET", path, query=query, content_type=None)), 422, "validation_error")
        assert f"'{name}'" in answer["message"] and "times" in answer["message"], (path, query, answer)
        assert answer["detail"] == [{"loc": ["query", name], "msg": answer["detail"][0]["msg"],
                                     "type": "repeated_parameter"}], answer  # fmt: skip
    for path, query in [("/search", "q=qdrant&tags=a&tags=b&type=x&type=y&status=s&status=t"),
                        ("/search", "q=qdrant&utm=1&utm=2"), ("/notes", "recent=1&utm=1&utm=2")]:  # fmt: skip
        assert call(request("GET", path, query=query, content_type=None))["statusCode"] == 200, query


#: A parameter a route reads, spelt as client libraries spell it (qs, jQuery, PHP and Rails send an array as
#: ``tags[]=a`` or ``tags[0]=a``), in another case or style, singular, or a field only ``POST /search`` takes.
MISSPELLED = [
    ("/search", "q=qdrant&tags[]=ops", "tags[]"), ("/search", "q=qdrant&tags%5B0%5D=ops&tags%5B1%5D=x", "tags[0]"),
    ("/search", "q=qdrant&tag=ops", "tag"), ("/search", "q=qdrant&Tags=ops", "Tags"),
    ("/search", "q=qdrant&pathPrefix=adr", "pathPrefix"), ("/search", "q=qdrant&path-prefix=adr", "path-prefix"),
    ("/search", "q=qdrant&min_score=0.99", "min_score"), ("/search", "q=qdrant&TOP_K=1", "TOP_K"),
    ("/search", "q=qdrant&types=runbook", "types"), ("/search", "q[]=qdrant", "q[]"),
    ("/notes", "pathPrefix=adr", "pathPrefix"), ("/notes", "Recent=3", "Recent"),
    ("/notes/adr/0001-record-architecture-decisions.md", "Section=Context", "Section"),
]  # fmt: skip


def test_a_filter_spelt_otherwise_is_422_never_an_unfiltered_answer(handler) -> None:
    """``GET /search?q=x&tags[]=ops`` (an array as qs, jQuery or PHP send it), ``tag=ops``, ``pathPrefix=hr``,
    ``min_score=0.5`` (a field of POST's body): each was ignored as a parameter no route reads, and the search
    answered unfiltered, 200, which the caller took for filtered. A parameter spelling one the route reads (or a
    field only POST takes) is a 422 naming it and what the route takes; parameters that spell nothing the route
    reads (``utm_source``, jQuery's ``_``) are still answered."""
    call = handler()
    for path, query, name in MISSPELLED:
        answer = envelope(call(request("GET", path, query=query, content_type=None)), 422, "validation_error")
        assert f"{name!r}" in answer["message"] and "not one GET" in answer["message"], (path, query, answer)
        assert answer["detail"][0]["loc"] == ["query", name] and answer["detail"][0]["type"] == "unknown_parameter"
    for path, query in [("/search", "q=qdrant&utm_source=mail&_=1764962400"), ("/notes", "recent=1&utm=1"),
                        ("/health", "Tags=x")]:  # fmt: skip
        assert call(request("GET", path, query=query, content_type=None))["statusCode"] == 200, query


NOTHING_TO_SEARCH = ["\u200b", "\u200b\u200d\ufeff", "\x00", "\x1b\x07\x7f", "!!!", "...", "?", "\u202e", "\ufffd", "🔥🔥",
                     "\u00a0\u2060", "— · —"]  # fmt: skip


@pytest.mark.parametrize("query", NOTHING_TO_SEARCH)
def test_a_query_with_no_letter_or_digit_is_422_never_a_search(handler, query: str) -> None:
    """A query of zero-width characters, controls, punctuation or symbols only has nothing to search for: 422 naming
    ``query`` on POST and GET, a tool error over MCP (each was searched: an expansion, an embedding and the rerank of
    whatever the dense leg found nearest to nothing, answered 200 as if relevant)."""
    call = handler()
    for result in (call(request("POST", "/search", json.dumps({"query": query}).encode())),
                   call(request("GET", "/search", query=urlencode({"q": query}), content_type=None))):  # fmt: skip
        answer = envelope(result, 422, "validation_error")
        assert "no letter or digit" in json.dumps(answer) and "query" in json.dumps(answer["detail"])
    answer = call_tool(call, "kb_search", {"query": query})
    assert answer["isError"] is True and "no letter or digit" in answer["content"][0]["text"], answer
    found = call(request("POST", "/search", json.dumps({"query": query + " qdrant"}).encode()))
    assert found["statusCode"] == 200 and json.loads(found["body"])["results"]  # a word beside them is searched


ROOTS = ["", "/", "//", "./", ".", " / ", "/./", ".//./", "\\"]
RU_RUNBOOKS = ["ru/ранбуки", "/ru/ранбуки/", "./ru/ранбуки", "ru//ранбуки", "ru/./ранбуки", "ru\\ранбуки",
               unicodedata.normalize("NFD", "ru/ранбуки"), " ru/ранбуки/ "]  # fmt: skip


def searched_paths(call: Handler, prefix: str | None, surface: str) -> list[str]:
    """The paths a search for "qdrant ключи" returns with ``path_prefix`` set to ``prefix``, through one surface."""
    filters = {} if prefix is None else {"path_prefix": prefix}
    if surface == "post":
        result = call(request("POST", "/search", json.dumps({"query": "qdrant ключи", "top_k": 20, "filters": filters})
                              .encode()))  # fmt: skip
    elif surface == "get":
        query = urlencode({"q": "qdrant ключи", "top_k": 20, **filters})
        result = call(request("GET", "/search", query=query, content_type=None))
    else:
        args = {"query": "qdrant ключи", "top_k": 20, **filters}
        answer = call_tool(call, "kb_search", args)
        assert answer["isError"] is False, answer
        return [hit["path"] for hit in answer["structuredContent"]["results"]]
    assert result["statusCode"] == 200, result["body"]
    return [hit["path"] for hit in json.loads(result["body"])["results"]]


NUMERIC_DATES = ["20260101", "1700000000", "0", "-1", "1700000000.5", "2026", "+20260101"]


@pytest.mark.parametrize("value", NUMERIC_DATES)
def test_updated_after_as_digits_is_422_never_unix_time(handler, value: str) -> None:
    """``updated_after`` written as digits (a compact date, Unix seconds, a year): 422 naming the field on POST and
    GET, a tool error over MCP; never read as Unix time (``20260101`` was 1970-08-23: a filter that kept every
    note, silently)."""
    call = handler()
    body = json.dumps({"query": "qdrant", "filters": {"updated_after": value}}).encode()
    for result in (call(request("POST", "/search", body)),
                   call(request("GET", "/search", query=urlencode({"q": "qdrant", "updated_after": value})))):  # fmt: skip
        assert result["statusCode"] == 422 and "updated_after" in result["body"], result["body"]
    tool = {"name": "kb_search", "arguments": {"query": "qdrant", "updated_after": value}}
    raw = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": tool}).encode()
    result = json.loads(call(request("POST", "/mcp", raw))["body"])["result"]
    assert result["isError"] and "updated_after" in result["content"][0]["text"]
    ok = call(request("GET", "/search", query="q=qdrant&updated_after=2026-01-01"))
    assert ok["statusCode"] == 200


@pytest.mark.parametrize("surface", ["post", "get", "mcp"])
def test_every_spelling_of_a_folder_means_that_folder(handler, surface: str) -> None:
    """The root in any spelling is the whole KB; a folder in any spelling is that folder (one normaliser behind
    POST /search, GET /search and kb_search)."""
    call = handler()
    everything = searched_paths(call, None, surface)
    assert len({p.split("/")[0] for p in everything}) >= 2  # ru and en
    for prefix in ROOTS:
        assert searched_paths(call, prefix, surface) == everything, repr(prefix)
    runbooks = searched_paths(call, "ru/ранбуки", surface)
    assert runbooks and all(p.startswith("ru/ранбуки/") for p in runbooks)
    for prefix in RU_RUNBOOKS:
        assert searched_paths(call, prefix, surface) == runbooks, repr(prefix)


@pytest.mark.parametrize("prefix", ["..", "../etc", "ru/../en", "ru/ .. /x", "/../"])
def test_a_folder_that_climbs_out_is_refused(handler, prefix: str) -> None:
    call = handler()
    raw = json.dumps({"query": "x", "filters": {"path_prefix": prefix}}).encode()
    answer = envelope(call(request("POST", "/search", raw)), 422, "validation_error")
    assert answer["detail"][0]["loc"][-1] == "path_prefix" and ".." in answer["detail"][0]["msg"]
    tool = call_tool(call, "kb_search", {"query": "x", "path_prefix": prefix})
    assert tool["isError"] is True and "path_prefix" in tool["content"][0]["text"]


@pytest.mark.parametrize("prefix", ["\x00", "ops\x00", "ops\x01x", "ru/\x1b[2J", "op\ts", "ops\x7f", "op\x85s",
                                    "/".join(["d"] * 33), ".trash", "pub/.obsidian"])  # fmt: skip
def test_a_folder_no_note_can_be_in_is_422_never_an_empty_answer(handler, prefix: str) -> None:
    """A `path_prefix` no note's path can start with (round 16): a control character (NUL, an escape sequence, a tab
    or DEL inside a name, C1's NEL), more folders than a note may be deep (33), a hidden folder (`.trash`, whose
    files are never notes, from a folder or S3): the indexer skips every such path,
    so each filter was searched and answered 200 with no hits, silently (GET /notes listed nothing). Now a 422
    naming `path_prefix` (a tool error over MCP), as for `..`; the same check as a note's path (`path_problem`)."""
    call = handler()
    raw = json.dumps({"query": "qdrant", "filters": {"path_prefix": prefix}}).encode()
    answer = envelope(call(request("POST", "/search", raw)), 422, "validation_error")
    assert answer["detail"][0]["loc"][-1] == "path_prefix", answer
    query = urlencode({"q": "qdrant", "path_prefix": prefix})
    answer = envelope(call(request("GET", "/search", query=query)), 422, "validation_error")
    assert answer["detail"][0]["loc"][-1] == "path_prefix", answer
    answer = envelope(call(request("GET", "/notes", query=urlencode({"path_prefix": prefix}))), 422, "validation_error")
    assert "path_prefix" in json.dumps(answer), answer
    for tool, arguments in (("kb_search", {"query": "qdrant"}), ("kb_list", {})):
        result = call_tool(call, tool, {**arguments, "path_prefix": prefix})
        assert result["isError"] is True and "path_prefix" in result["content"][0]["text"], (tool, result)
    assert call(request("GET", "/search", query="q=qdrant&path_prefix=en"))["statusCode"] == 200


def test_get_with_a_garbage_body_is_ignored(handler) -> None:
    result = handler()(request("GET", "/search", b"\xff\x00garbage", "text/plain", query="q=qdrant"))
    assert result["statusCode"] == 200


# -- /mcp -------------------------------------------------------------------------------------------------------------


def mcp(call: Handler, raw: bytes, content_type: str | None = "application/json") -> tuple[int, dict[str, Any]]:
    result = call(request("POST", "/mcp", raw, content_type))
    assert result["statusCode"] < 500 and result["multiValueHeaders"]["Content-Type"] == ["application/json"]
    answer = json.loads(result["body"])
    assert answer["jsonrpc"] == "2.0" and "id" in answer
    return result["statusCode"], answer


@pytest.mark.parametrize(
    "raw",
    [b'{"jsonrpc": "2.0", "id": 1, "method": "caf\xe9"}', b"\xff\xfe\x00\x00", b"{not json", b"",
     b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "method": "tools/list"}',
     b'{"jsonrpc": "2.0", "id": ' + b"7" * 5000 + b', "method": "ping"}',
     b'{"jsonrpc": "2.0", "id": NaN, "method": "ping"}', b'{"jsonrpc": "2.0", "id": 1, "method": "\\ud800"}',
     b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": ' + b"[" * 1000 + b"]" * 1000 + b"}",
     b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}\x00'],
)  # fmt: skip
def test_mcp_unparseable_bodies_are_parse_errors(handler, raw: bytes) -> None:
    status, answer = mcp(handler(), raw)
    assert status == 400 and answer["error"]["code"] == -32700 and answer["id"] is None


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_mcp_non_json_media_types_are_415(handler, content_type: str) -> None:
    status, answer = mcp(handler(), b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}', content_type)
    assert status == 415 and answer["error"]["code"] == -32600


@pytest.mark.parametrize(
    ("message", "code"),
    [("[]", -32600), ('"ping"', -32600), ("42", -32600), ("null", -32600), ('{"id": 1, "method": "ping"}', -32600),
     ('{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}', -32600), ('{"jsonrpc": "2.0", "id": 1, "method": 7}', -32600),
     ('{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}', -32602),
     ('{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 5}}', -32602)],
)  # fmt: skip
def test_mcp_invalid_requests(handler, message: str, code: int) -> None:
    status, answer = mcp(handler(), message.encode())
    assert status in (200, 400) and answer["error"]["code"] == code  # handshake-era tool errors travel in a 200


def mcp_post(call: Handler, body: Any, raw: bytes | None = None) -> tuple[int, Any]:
    """A JSON-RPC message (or ``raw`` bytes) to ``/mcp``: the status and the JSON answer (None: an empty body)."""
    data = raw if raw is not None else json.dumps(body).encode()
    result = call(request("POST", "/mcp", data, "application/json"))
    assert result["statusCode"] < 500
    return result["statusCode"], json.loads(result["body"]) if result["body"] else None


def test_a_clients_json_rpc_response_is_accepted_with_an_empty_202(handler) -> None:
    """Streamable HTTP: a JSON-RPC response (or notification) the server accepts is answered 202 with no body. A
    client's response was refused as an invalid request, an error carrying the client's own id, which a client can
    take for the answer to its request of that id; a message that is no response stays an invalid request."""
    app = handler()
    for response in (
        {"jsonrpc": "2.0", "id": 1, "result": {}},
        {"jsonrpc": "2.0", "id": "s-1", "error": {"code": -32601, "message": "no sampling here"}},
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "bad"}},
    ):
        status, body = mcp_post(app, response)
        assert (status, body) == (202, None), response
    for not_a_response in (
        {"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1, "message": "both"}},
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "result": {}},
        {"jsonrpc": "1.0", "id": 1, "result": {}},
    ):
        status, body = mcp_post(app, not_a_response)
        assert status == 400 and body["error"]["code"] == -32600, not_a_response


def test_an_id_that_is_a_number_but_no_integer_is_refused_in_words_that_say_so(handler) -> None:
    """MCP's request ids are strings or integers: ``1.5`` and ``1e2`` (a float to the parser) are refused, and the
    refusal said "id must be a string or a number", which both are."""
    app = handler()
    for raw in (b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}', b'{"jsonrpc": "2.0", "id": 1e2, "method": "ping"}'):
        status, body = mcp_post(app, None, raw=raw)
        assert status == 400 and body["error"]["code"] == -32600 and body["id"] is None, raw
        assert "string or an integer" in body["error"]["message"], body
    status, body = mcp_post(app, None, raw=b'{"jsonrpc": "2.0", "id": -0, "method": "ping"}')
    assert status == 200 and body == {"jsonrpc": "2.0", "id": 0, "result": {}}


def test_tool_arguments_that_are_no_object_are_refused_whatever_their_truth(handler) -> None:
    """``arguments`` that is no object is a tool error: ``[]``, ``""``, ``0`` and ``false`` were read as no
    arguments (``or {}``) and ran the tool, while ``[1]`` or ``"x"`` were refused; absent or null is none."""
    app = handler()
    for arguments in ([], "", 0, False, [1], "x", 1, 0.0):
        status, body = mcp_post(app, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                "params": {"name": "kb_list", "arguments": arguments}})  # fmt: skip
        result = body["result"]
        assert status == 200 and result["isError"], arguments
        assert result["content"][0]["text"] == "arguments must be an object", arguments
    for params in ({"name": "kb_list"}, {"name": "kb_list", "arguments": None}):
        status, body = mcp_post(app, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params})
        assert status == 200 and not body["result"]["isError"], params


@pytest.mark.parametrize("modern", [False, True], ids=["handshake-era", "2026-07-28"])
def test_mcp_params_of_every_json_type_in_every_slot(handler, modern: bool) -> None:
    """Every slot a method reads (a tool's or prompt's name and arguments, a URI, a cursor, the protocol version,
    capabilities, ``_meta``) holding every JSON type: a result or an error blaming the request, never a 500 or
    -32603 (a list or an object as a tool name was a 500: unhashable in the lookup)."""
    call = handler()
    for message, headers in slot_messages(modern):
        raw = json.dumps(message).encode()
        result = call(request("POST", "/mcp", raw, headers=list(headers.items())))
        assert result["statusCode"] < 500, (message["method"], result["body"][:300])
        check_slot_answer(message, json.loads(result["body"]))


PAD = {"pad": "я" * 40_000}  # 80,000 bytes of UTF-8 in a valid request


def rpc_error_object(result: dict[str, Any]) -> dict[str, Any]:
    """The answer is a JSON-RPC error object (never the REST envelope), whatever the HTTP status."""
    assert result["multiValueHeaders"]["Content-Type"] == ["application/json"], result
    answer = json.loads(result["body"])
    assert set(answer) == {"jsonrpc", "id", "error"} and answer["jsonrpc"] == "2.0", answer
    assert isinstance(answer["error"]["code"], int) and answer["error"]["message"], answer
    return answer["error"]


@pytest.mark.parametrize(
    ("event", "status", "code"),
    [
        # over 64 KiB: as text, as base64, and a valid JSON-RPC request padded past the limit
        (request("POST", "/mcp", b"x" * (64 * 1024 + 1)), 413, -32600),
        (request("POST", "/mcp", b"\xff" * (70 * 1024), "application/octet-stream"), 413, -32600),
        (
            request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": PAD}).encode()),
            413,
            -32600,
        ),
        # methods HTTP does not allow, with and without a body
        (request("GET", "/mcp", b"", None), 405, -32600),
        (request("GET", "/mcp", b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}'), 405, -32600),
        # media type, encoding and parse errors stay JSON-RPC too
        (request("POST", "/mcp", b"{}", "text/plain"), 415, -32600),
        (request("POST", "/mcp", b"\xff\xfe"), 400, -32700),
    ],
)
def test_every_mcp_error_is_a_json_rpc_error_object(handler, event: dict[str, Any], status: int, code: int) -> None:
    result = handler()(event)
    assert result["statusCode"] == status, result
    assert rpc_error_object(result)["code"] == code


@pytest.mark.parametrize("version", ["2030-01-01", "1999-12-31", "latest", "", "2025-11-25 ", "2026-07-28\t"])
@pytest.mark.parametrize("method", ["initialize", "tools/list", "server/discover", "ping"])
def test_mcp_unsupported_protocol_version_header_names_the_supported(handler, version: str, method: str) -> None:
    """A version of neither era in the header, on a request with no ``_meta`` envelope: -32022 naming every
    supported version (not a complaint about ``_meta``)."""
    raw = json.dumps({"jsonrpc": "2.0", "id": 3, "method": method, "params": {}}).encode()
    result = handler()(request("POST", "/mcp", raw, headers=[("MCP-Protocol-Version", version)]))
    assert result["statusCode"] == 400, result
    error = rpc_error_object(result)
    assert error["code"] == -32022 and error["data"]["requested"] == version
    assert "2026-07-28" in error["data"]["supported"] and "2025-11-25" in error["data"]["supported"]


INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                   "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}}).encode()  # fmt: skip
API_HOST = "abc123.execute-api.eu-west-1.amazonaws.com"  # the Host a deployed API is reached by
OTHER_ORIGINS = ["https://evil.example", "http://evil.example:3000", "null", "http://127.0.0.1.evil.example",
                 "http://localhost.evil.example:3000", "http://10.0.0.7", "http://[::2]:3000", "file://",
                 "chrome-extension://abcdef", "garbage", "http://", "http://[::1", ""]  # fmt: skip
LOCAL_ORIGINS = [None, "http://localhost:6274", "http://127.0.0.1:3000", "http://[::1]:8080", "https://app.localhost",
                 "http://127.5.5.5", "HTTP://LOCALHOST:6274"]  # fmt: skip


@pytest.mark.parametrize("name", ["Origin", "origin"])
@pytest.mark.parametrize(
    "origin", [*OTHER_ORIGINS, f"https://{API_HOST}.evil.example", "https://execute-api.eu-west-1.amazonaws.com"]
)
def test_mcp_refuses_web_pages_of_other_origins(handler, origin: str, name: str) -> None:
    """The MCP spec's DNS-rebinding guard: a request carrying an ``Origin`` that is not this machine (another site,
    ``null``, a look-alike host, a private address, not a URL) is 403 with a JSON-RPC error, before its body is
    read, whatever the method (it was answered: a page a user visits could read the KB through ``kbsearch serve``)."""
    call = handler()
    for method, raw in (("POST", INIT), ("POST", b"%%%"), ("GET", b"")):
        result = call(request(method, "/mcp", raw, headers=[("Host", API_HOST), (name, origin)]))
        assert result["statusCode"] == 403, (method, result["body"])
        assert rpc_error_object(result)["code"] == -32600


@pytest.mark.parametrize("origin", [*LOCAL_ORIGINS, f"https://{API_HOST}", f"https://{API_HOST.upper()}:443"])
def test_mcp_answers_clients_without_an_origin_and_pages_of_this_machine(handler, origin: str | None) -> None:
    """No ``Origin`` (every MCP client that is not a browser), a page of this machine, or the API's own /docs
    (``Origin`` naming the ``Host`` the request was sent to): answered."""
    headers = [("Host", API_HOST)] + ([("Origin", origin)] if origin is not None else [])
    result = handler()(request("POST", "/mcp", INIT, headers=headers))
    assert result["statusCode"] == 200, result["body"]
    assert json.loads(result["body"])["result"]["serverInfo"]["name"] == "kb-search"


def test_mcp_errors_of_the_server_itself_are_json_rpc(handler) -> None:
    """A fault of the route itself (here a header named by a number, which no JSON event can carry: events of other
    shapes are 400s before any route) is still a JSON-RPC error object, with nothing of the fault in it."""
    event = request("POST", "/mcp", b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}')
    event["headers"][7] = "x"
    result = handler()(event)
    assert result["statusCode"] == 500, result
    error = rpc_error_object(result)
    assert error["code"] == -32603 and "lower" not in error["message"]


EVENT_FIELDS = ["httpMethod", "path", "resource", "headers", "multiValueHeaders", "queryStringParameters",
                "multiValueQueryStringParameters", "pathParameters", "requestContext", "isBase64Encoded"]  # fmt: skip
NOT_THEIR_TYPE: list[Any] = [True, 5, "x", ["a"], {"a": 5}, {"a": [5]}]
OF_THEIR_TYPE = [("isBase64Encoded", True), ("resource", "x"), ("httpMethod", "x"), ("requestContext.requestId", "x"),
                 ("requestContext.identity", {"a": 5}), ("requestContext.identity", {"a": [5]})]  # fmt: skip


def test_an_event_no_gateway_sends_is_a_400_naming_the_field(handler) -> None:
    """A direct invoke with an event that is not a REST API proxy event (not an object, an HTTP API 2.0 event,
    any field the routes read missing or of another JSON type) is a 400 naming the field (a JSON-RPC error object
    on /mcp), never an exception out of the function (Lambda's error envelope: `KeyError: 'httpMethod'`) or a
    500. Such events were 110 of 220 tried here."""
    call = handler()
    wholes: list[Any] = [{}, [], "x", None, 5, {"version": "2.0", "routeKey": "GET /health", "rawPath": "/health"}]
    for whole in wholes:
        answer = envelope(call(whole), 400, "bad_request")
        assert answer["message"].startswith("not an API Gateway REST API proxy event: "), answer
    bases = [request("POST", "/search", GOOD), request("GET", "/search", content_type=None, query="q=qdrant"),
             request("GET", "/health", content_type=None),
             request("POST", "/mcp", b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}')]  # fmt: skip
    for base in bases:
        for field in [*EVENT_FIELDS, "requestContext.requestId", "requestContext.identity"]:
            for value in [KeyError, *NOT_THEIR_TYPE]:
                event = json.loads(json.dumps(base))
                where, _, name = field.rpartition(".")
                target = event[where] if where else event
                if value is KeyError:
                    target.pop(name, None)
                else:
                    target[name] = value
                result = call(event)
                assert result["statusCode"] < 500, (field, value, result)
                answer = json.loads(result["body"])
                rpc = answer.get("error") if isinstance(answer, dict) else None
                if isinstance(rpc, dict):  # /mcp answers JSON-RPC
                    message = rpc["message"]
                    assert "proxy event" not in message or rpc["code"] == -32600, answer
                else:
                    message = answer.get("message", "") if isinstance(answer, dict) else ""
                if "proxy event" in message:
                    assert result["statusCode"] == 400 and name in message, (field, value, message)
                else:  # what a route reads as it is: absent where it may be, or of its own type
                    assert value is KeyError or (field, value) in OF_THEIR_TYPE, (field, value, result)


def call_tool(call: Handler, name: str, arguments: Any) -> dict[str, Any]:
    raw = json.dumps(
        {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    )
    status, answer = mcp(call, raw.encode())
    assert status == 200, answer
    return answer["result"]


@pytest.mark.parametrize(
    "path",
    ["en/Glossary\x00.md", "en/Glossary.md\x00", "/etc/passwd.md", "../../etc/passwd.md", "en/../../x.md", "en//x.md",
     "./en/Glossary.md", "en\\Glossary.md", "en/Glossary.md/", "en/\x1b[31mred.md", "C:\\x.md", "en/x.txt"],
)  # fmt: skip
def test_hostile_note_paths_are_tool_errors(handler, path: str) -> None:
    result = call_tool(handler(), "kb_get_note", {"path": path})
    assert result["isError"] is True
    text = result["content"][0]["text"]
    assert "not a note path" in text and str(ROOT) not in text


@pytest.mark.parametrize(
    "arguments",
    [{"path": 5}, {"path": ["en/Glossary.md"]}, {"path": ""}, {"path": "x" * 2000 + ".md"}, {},
     {"query": "x", "top_k": "5"}, {"query": "x", "top_k": True}],
)  # fmt: skip
def test_bad_tool_arguments_are_tool_errors(handler, arguments: dict[str, Any]) -> None:
    name = "kb_search" if "query" in arguments else "kb_get_note"
    result = call_tool(handler(), name, arguments)
    assert result["isError"] is True and "invalid arguments" in result["content"][0]["text"]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(f"{record.getMessage()} {record.__dict__}")


def test_tool_errors_show_no_internals(handler, tmp_path: Path) -> None:
    """A missing KB folder, an unreadable S3 bucket, a missing index: the caller reads a public message, the log
    has the detail."""
    records = Records()
    for name in ("kbsearch.mcp", "kbsearch.browse"):  # the tools, and the note reads they share with REST
        logging.getLogger(name).addHandler(records)
    hidden = tmp_path / "srv" / "kb-private-folder"
    folder = call_tool(handler(KB_SOURCE=str(hidden)), "kb_get_note", {"path": "en/Glossary.md"})
    assert folder["isError"] and "kb-private-folder" not in json.dumps(folder) and "/srv" not in json.dumps(folder)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-private-bucket")
        call = handler(KB_SOURCE="s3://kb-private-bucket/secret-prefix/")
        missing = call_tool(call, "kb_get_note", {"path": "en/Glossary.md"})
        assert missing["isError"] and "no note at 'en/Glossary.md'" in missing["content"][0]["text"]
        gone = call_tool(handler(KB_SOURCE="s3://kb-no-such-bucket/p/"), "kb_get_note", {"path": "en/Glossary.md"})
    for result in (missing, gone):
        text = json.dumps(result)
        assert "kb-private-bucket" not in text and "secret-prefix" not in text and "kb-no-such-bucket" not in text
        assert "s3://" not in text and "NoSuch" not in text
    search = call_tool(handler(QDRANT_COLLECTION="no-such-collection"), "kb_search", {"query": "x"})
    assert search["isError"] and search["content"][0]["text"] == (
        "the index has not been built yet: run the indexer first (kbsearch index <your KB folder>)"  # (walk36)
    )
    for name in ("kbsearch.mcp", "kbsearch.browse"):
        logging.getLogger(name).removeHandler(records)
    logged = "\n".join(records.texts)
    assert "kb-private-folder" in logged and "kb-no-such-bucket" in logged  # the detail is in the log


# -- the caller mapping (ACCESS_GROUPS in SSM) -------------------------------------------------------------------------

ACCESS_PARAM = "/kb-search/test/access-groups"


@pytest.mark.parametrize(
    "value",
    [
        # nested past the parser's recursion limit, within SSM's 4 KB / 8 KB values (was a 500 on every request)
        "[" * 2000 + "]" * 2000,
        '{"api_keys": {"k1": ' + "[" * 2000 + "]" * 2000 + "}}",
        '{"slack": {"T1": ' + '{"":' * 1500 + "1" + "}" * 1500 + "}}",
        "{not json", "null", "[]", '"text"', "42", '{"api_keys": {"k1": ["hr"]}, "extra": 1}',
        '{"api_keys": {"k1": NaN}}', '{"api_keys": {"k1": [' + "9" * 5000 + "]}}",
        '{"api_keys": {"\ud800": ["hr"]}}', '{"api_keys": {"k1": {"groups": {"hr": 1}}}}',
        '{"api_keys": {"k1": ["h r"]}}', '{"slack": {"T1/C1/U1/X": ["hr"]}}',
        # a key given twice in one object (json kept the last silently: a grant or a revocation by position)
        '{"api_keys": {"k1": ["public"], "k1": ["hr"]}}', '{"api_keys": {"k1": ["hr"], "k1": ["public"]}}',
        '{"api_keys": {"k1": ["public"]}, "api_keys": {"k1": ["hr"]}}',
        '{"api_keys": {"k1": {"name": "portal", "groups": ["public"], "groups": ["hr"]}}}',
        '{"api_keys": {"k1": ["hr"]}, "slack": {"T1": ["staff"], "T1": ["hr"]}}',
        '{"api_keys": {"k1": ["hr"]}, "slack": {}, "slack": {"T1": ["hr"]}}',
    ],
    ids=lambda v: v[:24],
)  # fmt: skip
def test_a_caller_mapping_that_is_not_one_gives_public_only(handler, value: str) -> None:
    """The caller mapping as SSM hands it over (moto) but not a mapping, in every way a JSON parameter can be
    wrong (nesting past the parser's recursion limit, not JSON, other types, bad entries): every caller holds
    ``public`` only and every route answers, never a 500; the key that would have been granted ``hr`` too."""
    with mock_aws():
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
        boto3.client("ssm", region_name="us-east-1").put_parameter(Name=ACCESS_PARAM, Type="SecureString", Value=value)
        call = handler(ACCESS_GROUPS_PARAM=ACCESS_PARAM)
        for key_id in ("k1", None):
            who = request("GET", "/whoami", content_type=None)
            who["requestContext"]["identity"]["apiKeyId"] = key_id
            result = call(who)
            assert result["statusCode"] == 200, result["body"]
            assert json.loads(result["body"])["groups"] == ["public"]
        search = request("POST", "/search", GOOD)
        search["requestContext"]["identity"]["apiKeyId"] = "k1"
        assert call(search)["statusCode"] == 200
        tool = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "kb_list", "arguments": {}}}
        answer = call(request("POST", "/mcp", json.dumps(tool).encode()))
        assert answer["statusCode"] == 200 and not json.loads(answer["body"])["result"]["isError"]
        parameters.clear_caches()


WHITESPACE = {"newline": "\n", "crlf": "\r\n", "space": " ", "tab": "\t", "both ends": " \n", "lines": "\n\n"}


@pytest.mark.parametrize("ssm", [False, True], ids=["plain", "ssm"])
@pytest.mark.parametrize("pad", WHITESPACE.values(), ids=WHITESPACE.keys())
def test_secrets_pasted_with_surrounding_whitespace_still_work(handler, deepinfra, pad: str, ssm: bool) -> None:
    """Provider keys and the Slack signing secret with a newline, CRLF, spaces or tabs around them (a paste into
    SSM or a shell): searches answer undegraded and Slack requests verify (the key went into the Authorization
    header as is: every provider call failed as a "connection failed (LocalProtocolError)", retried, the breaker
    opened; every Slack request was a 401)."""
    secrets = {"RERANKER_API_KEY": deepinfra.api_key, "EXPANSION_API_KEY": deepinfra.api_key,
               "SLACK_SIGNING_SECRET": SLACK_SECRET}  # fmt: skip
    env = {k: v for k, v in provider_env(deepinfra, roles=("RERANKER", "EXPANSION")).items() if not k.endswith("KEY")}
    padded = {name: (pad if name != "EXPANSION_API_KEY" else "") + value + pad for name, value in secrets.items()}
    with mock_aws():
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
        if ssm:
            client = boto3.client("ssm", region_name="us-east-1")
            for name, value in padded.items():
                client.put_parameter(Name=f"/kb/{name}", Type="SecureString", Value=value)
                env[f"{name}_PARAM"] = f"/kb/{name}"
        else:
            env |= padded
        call = handler(**env)
        result = call(request("POST", "/search", GOOD))
        assert result["statusCode"] == 200, result["body"]
        meta = json.loads(result["body"])["meta"]
        assert meta["degraded"] == [] and meta["reranker"] == "deepinfra", meta
        assert call(slack_request(form("help")))["statusCode"] == 200
        parameters.clear_caches()


# -- /slack/command ---------------------------------------------------------------------------------------------------


def slack_request(raw: bytes, signed_body: bytes | None = None, ts: int | None = None) -> dict[str, Any]:
    stamp = str(int(time.time()) if ts is None else ts)
    signature = slack.sign(SLACK_SECRET, stamp, raw if signed_body is None else signed_body)
    headers = [("X-Slack-Request-Timestamp", stamp), ("X-Slack-Signature", signature)]
    return request("POST", "/slack/command", raw, "application/x-www-form-urlencoded", headers=headers)


def form(text: str, trigger: str = "t-1", command: str = "/kb") -> bytes:
    return urlencode({"command": command, "text": text, "user_id": "U1", "team_id": "T1", "channel_id": "C1",
                      "response_url": "https://hooks.slack.com/commands/1", "trigger_id": trigger}).encode()  # fmt: skip


def test_slacks_certificate_check_is_a_200_and_runs_nothing(handler) -> None:
    """Slack checks the command URL's certificate with a POST of ``ssl_check=1`` and a token, no command: a 200
    with an empty body (no acknowledgement, nothing handed on); unsigned, a 401 like any other request."""
    call = handler(SLACK_SIGNING_SECRET=SLACK_SECRET)
    body = urlencode({"ssl_check": "1", "token": "gIkuvaNzQIHg97ATvDxqgjtO"}).encode()
    result = call(slack_request(body))
    assert (result["statusCode"], result["body"]) == (200, ""), result["body"]
    assert call(slack_request(body, signed_body=b"something else"))["statusCode"] == 401


@pytest.mark.parametrize("raw", [b"text=caf\xe9", b"\xff\xfe\x00", b"\x00" * 10, "text=ёлки".encode("cp1251")])
def test_slack_non_utf8_body_with_a_bad_signature_is_401(handler, raw: bytes) -> None:
    call = handler(SLACK_SIGNING_SECRET=SLACK_SECRET)
    envelope(call(slack_request(raw, signed_body=b"something else")), 401, "unauthorized")
    text_event = slack_request(raw, signed_body=b"something else")
    text_event.update(body=raw.decode("latin-1"), isBase64Encoded=False)  # as text, not base64
    envelope(call(text_event), 401, "unauthorized")


HUGE_TEXTS = {
    "words": "restore snapshot " * 3500, "cyrillic": "ротация ключей " * 650, "emoji": "family " + "👩‍👩‍👧‍👦 " * 650,
    "entities": "x " + "&lt;&amp;&gt; " * 1800, "markup": "<!channel> *bold* `code` " * 1000, "share": "share " + "x y " * 10_000,
    "filters": "tag:runbook in:ru " + "snapshot " * 5000, "one word": "z" * 40_000,
    "open quotes": "restore ab:“x tag:“y " * 1500,
}  # fmt: skip


@pytest.mark.parametrize("text", HUGE_TEXTS.values(), ids=HUGE_TEXTS.keys())
def test_slack_huge_command_text_gets_a_short_acknowledgement(handler, text: str) -> None:
    """A signed command whose text fills the 64 KiB body (words, Cyrillic, emoji sequences, entities that escaping
    lengthens, markup, with ``share`` and filters): 200 and an acknowledgement that fits one Slack text block
    (3,000 characters), cut at a word and never inside an emoji (it echoed the whole text)."""
    raw = form(text)
    assert len(raw) < 64 * 1024
    result = handler(SLACK_SIGNING_SECRET=SLACK_SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1")(slack_request(raw))
    assert result["statusCode"] == 200, result["body"]
    ack = json.loads(result["body"])["text"]
    # the acknowledgement is said in the question's language (session 35, walk35): «…» closes a Russian one
    close = "»" if text.startswith("ротация") else "”"
    assert len(ack) <= 3000 and ack.endswith(f"{close}…"), ack[-50:]
    assert not unicodedata.category(ack[-4]).startswith("M") and f"\u200d{close}" not in ack


@pytest.mark.parametrize("raw", [b"text=caf\xe9", b"\xff\xfe", b"&".join([b"a=1"] * 101)])
def test_slack_signed_but_unreadable_form_is_400(handler, raw: bytes) -> None:
    envelope(handler(SLACK_SIGNING_SECRET=SLACK_SECRET)(slack_request(raw)), 400, "bad_request")


@pytest.mark.parametrize("command", ["/kbx", "/kb-admin", "/search", "kb", "", "/", "/кб", "/kb/", "/k b", "x" * 300])
def test_slack_commands_not_configured_get_no_answer(handler, command: str) -> None:
    """A correctly signed request for a command this app does not declare (another app's, or a typo in the
    manifest): a 400 naming the configured command, no acknowledgement and no search."""
    call = handler(SLACK_SIGNING_SECRET=SLACK_SECRET)
    answer = envelope(call(slack_request(form("restore a snapshot", command=command))), 400, "unknown_command")
    assert "/kb" in answer["message"] and "SLACK_COMMANDS" in answer["message"]


@pytest.mark.parametrize(("configured", "command"), [("/kb", "/kb"), ("/kb", "/KB"), ("/kb, /wiki", "/wiki"),
                                                     (" /wiki ,/kb-dev", "/kb-dev")])  # fmt: skip
def test_slack_configured_commands_are_answered(handler, configured: str, command: str) -> None:
    call = handler(SLACK_SIGNING_SECRET=SLACK_SECRET, SLACK_COMMANDS=configured)
    result = call(slack_request(form("help", command=command)))
    assert result["statusCode"] == 200, result["body"]
    other = call(slack_request(form("help", trigger="t-2", command="/other")))
    assert other["statusCode"] == 400


def test_slack_replay_within_the_window_is_401_in_memory(handler) -> None:
    call = handler(SLACK_SIGNING_SECRET=SLACK_SECRET)
    event = slack_request(form("help"))
    assert call(event)["statusCode"] == 200
    answer = envelope(call(json.loads(json.dumps(event))), 401, "unauthorized")
    assert answer["message"] == "replayed request"
    assert call(slack_request(form("help", trigger="t-2"), ts=int(time.time()) - 1))["statusCode"] == 200


def dedupe_table(name: str) -> Any:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")  # fmt: skip
    return ddb


def test_slack_replay_within_the_window_is_401_with_dynamodb(handler) -> None:
    with mock_aws():
        ddb = dedupe_table("kb-dedupe")
        first = handler(SLACK_SIGNING_SECRET=SLACK_SECRET, SLACK_DEDUPE_TABLE="kb-dedupe")
        second = handler(SLACK_SIGNING_SECRET=SLACK_SECRET, SLACK_DEDUPE_TABLE="kb-dedupe")  # another container
        event = slack_request(form("help"))
        assert first(event)["statusCode"] == 200
        assert envelope(second(event), 401, "unauthorized")["message"] == "replayed request"
        signature = dict(event["headers"])["X-Slack-Signature"]
        item = ddb.get_item(TableName="kb-dedupe", Key={"pk": {"S": f"slack-signature:{signature}"}})["Item"]
        assert 0 < int(item["expires_at"]["N"]) - time.time() <= slack.REPLAY_WINDOW_S
        forged = slack_request(form("help"))
        forged["body"] = base64.b64encode(form("help", trigger="other")).decode()
        assert second(forged)["statusCode"] == 401  # a bad signature never reaches the table
        assert ddb.scan(TableName="kb-dedupe")["Count"] == 1


def test_slack_replay_store_down_is_503(handler) -> None:
    with mock_aws():
        call = handler(SLACK_SIGNING_SECRET=SLACK_SECRET, SLACK_DEDUPE_TABLE="no-such-table")
        envelope(call(slack_request(form("help"))), 503, "slack_unavailable")


# -- the indexer's events -------------------------------------------------------------------------------------------


class _Kept(logging.Handler):
    """Keeps the records it is given (the function's logger does not propagate to pytest's)."""

    def __init__(self, kept: list[logging.LogRecord]) -> None:
        super().__init__()
        self.kept = kept

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append(record)


MALFORMED_RECORDS = {
    "null": None, "a number": 5, "no s3": {"eventName": "ObjectCreated:Put"},
    "key a list": {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": ["x.md"]}}},
    "a sequencer of prose": {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": events.BUCKET},
                             "object": {"key": f"{events.PREFIX}z.md", "sequencer": "not hex"}}},
}  # fmt: skip


@pytest.mark.parametrize("bad", MALFORMED_RECORDS.values(), ids=MALFORMED_RECORDS.keys())
def test_a_notification_with_one_malformed_record_still_applies_the_others(
    aws: EventPath,  # noqa: F811 (the fixture)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bad: Any,
) -> None:
    """Every well-formed record of a message whose records are partly malformed is applied, before the malformed
    one or after (the records after it were never read: their notes waited for the next full sync). Round 22: the
    malformed record is skipped with its reason in the log and the message is not retried (it was poison: retried
    five times, 90 minutes apart, its good records applied again each time, then dead-lettered, though no retry
    can mend it); a message none of whose records is well formed is still poison."""
    indexer = events.Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{events.PREFIX}before.md", events.note(1))
    aws.put(f"{events.PREFIX}after.md", events.note(2))
    records = [json.loads(message["body"])["Records"][0] for message in aws.receive()]
    mixed = sqs_record(json.dumps({"Records": [records[0], bad, records[1]]}), aws.queue_arn)
    logged: list[logging.LogRecord] = []
    handler = _Kept(logged)
    logging.getLogger("kbsearch.indexer").addHandler(handler)  # the function's logger (it does not propagate)
    try:
        assert indexer([mixed]) == []
    finally:
        logging.getLogger("kbsearch.indexer").removeHandler(handler)
    assert {p["path"] for p in events.open_points(indexer.settings())} == {"before.md", "after.md"}
    skipped = [r for r in logged if "malformed record 2 of 3" in r.getMessage()]
    assert len(skipped) == 1 and skipped[0].levelno == logging.WARNING, [r.getMessage() for r in logged]
    assert getattr(skipped[0], "message_id", None) == mixed["messageId"]
    only_bad = sqs_record(json.dumps({"Records": [bad, bad]}), aws.queue_arn)
    assert indexer([only_bad, mixed]) == [only_bad["messageId"]]  # nothing of it is an event: poison, alone


NO_RUN_EVENTS: dict[str, Any] = {
    "an array": [], "a string": "full", "null": None, "a number": 1,
    "an S3 notification sent directly": {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                                      "s3": {"object": {"key": "kb/x.md"}}}]},
    "no records": {"Records": []}, "records of nothing": {"Records": None},
    "one record not from SQS": {"Records": [{"eventSource": "aws:sqs", "messageId": "m1", "body": "{}"},
                                            {"eventSource": "aws:sns", "messageId": "m2"}]},
    "a misspelled flag": {"Full": True}, "a flag spelled with a dash": {"allow-mass-delete": True},
    "full yes": {"full": "yes"}, "full 1": {"full": 1}, "full null": {"full": None}, "rebuild a list": {"rebuild": [True]},
    "a flag wrong under detail": {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {"full": "yes"}},
    # round 18: EventBridge events of something else, a rule pointed at the function instead of the queue
    "EventBridge's Object Created sent directly": json.loads(eventbridge_body("kb-notes", "kb/x.md", False, "0A", "2026-12-05T00:00:00Z")),
    "EventBridge's Object Deleted sent directly": json.loads(eventbridge_body("kb-notes", "kb/x.md", True, "0B", "2026-12-05T00:00:00Z")),
    "a CloudTrail call": {"version": "0", "id": "c", "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3",
                          "detail": {"eventName": "PutObject", "requestParameters": {"key": "kb/x.md"}}},
    "a detail that is a list": {"detail-type": "Scheduled Event", "source": "aws.events", "detail": [{"full": True}]},
}  # fmt: skip
RUN_EVENTS: dict[str, Any] = {
    "empty": {}, "the schedule's input": {"full": False}, "flags as words": {"full": "TRUE", "rebuild": "false"},
    "a scheduled EventBridge event": {"version": "0", "id": "e", "detail-type": "Scheduled Event",
                                      "source": "aws.events", "account": "123456789012", "time": "2026-12-04T00:00:00Z",
                                      "region": "us-east-1", "resources": [], "detail": {}},
}  # fmt: skip


def test_an_indexer_event_that_is_no_scheduled_run_runs_nothing(
    aws: EventPath,  # noqa: F811 (the fixture)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An event that is neither an SQS batch nor a scheduled run (not an object, Records that are no SQS batch: S3
    invoking the function directly, an unknown field, a flag neither true nor false) raises naming what is wrong
    and writes nothing (each ran a sync: a direct S3 notification a sync per upload, `{"Full": true}` and
    `{"full": "yes"}` an incremental one, as if asked; round 18: EventBridge's S3 `Object Created` / `Object Deleted`
    and CloudTrail's calls sent to the function directly, a sync per change); a scheduled run's events still run."""
    from kbsearch_tools.local.runtime import LambdaContext

    indexer = events.Indexer(monkeypatch, tmp_path, None)
    aws.put(f"{events.PREFIX}a.md", events.note(1))
    for name, event in NO_RUN_EVENTS.items():
        with pytest.raises(indexer.app.IndexerRunError, match="not a scheduled run nor an SQS batch: ") as raised:
            indexer.app.lambda_handler(event, LambdaContext("kb-search-test-indexer", 2048, 900))
        assert len(str(raised.value)) < 300, name
        assert not indexer.store.exists(), name  # nothing run: the store was never opened
    for name, event in RUN_EVENTS.items():
        report = indexer.app.lambda_handler(event, LambdaContext("kb-search-test-indexer", 2048, 900))
        assert report["error"] is None and report["skipped"] == [], (name, report)
        assert {p["path"] for p in events.open_points(indexer.settings())} == {"a.md"}, name


# -- RELIABILITY.md --------------------------------------------------------------------------------------------------


def test_every_hostile_input_row_has_its_test() -> None:
    """Each row of RELIABILITY.md's "Hostile input" table names tests that exist in the hostile-input modules."""
    section = (ROOT / "RELIABILITY.md").read_text(encoding="utf-8").split("## Hostile input", 1)[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| where")]
    assert len(rows) >= 25, rows
    sources = "".join((ROOT / "tests/integration" / name).read_text() for name in
                      ("test_hostile_input.py", "test_serve_socket.py", "test_mcp_stdio.py",
                       "test_notes_graph.py", "test_slack_interactive.py", "test_local_runner.py",
                       "test_hostile_aws.py", "test_adv23a.py", "test_adv24a.py", "test_adv28a.py"))  # fmt: skip
    sources += (ROOT / "tests/unit/test_slack_render.py").read_text()  # Slack's rendering of hostile note text
    for row in rows:
        names = re.findall(r"`(test_\w+)`", row.rsplit("|", 2)[1])
        assert names, row
        for name in names:
            assert f"def {name}(" in sources, f"{name} (RELIABILITY.md) has no test"
