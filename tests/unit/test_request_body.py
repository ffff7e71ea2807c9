"""kbsearch.api.body: total on any input (a value or a BadBody, nothing else) and linear on 64 KiB worst cases."""

from __future__ import annotations

import base64
import contextlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbsearch.api.body import MAX_DEPTH, BadBody, parse_json, raw_bytes, require_json_media_type, text

SIZE = 64 * 1024


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_are_a_value_or_a_bad_body(data: bytes) -> None:
    try:
        parse_json(text(data))
    except BadBody as exc:
        assert exc.status == 400 and exc.code in ("bad_request", "invalid_json")


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)))  # fmt: skip
def test_json_documents_round_trip_or_are_refused_for_a_reason(value: object) -> None:
    document = json.dumps(value)
    try:
        assert parse_json(document, allow_constants=True) == json.loads(document) or document.count("NaN")
    except BadBody as exc:
        assert exc.code == "invalid_json", exc.message


def test_depth_limit_is_exact() -> None:
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(BadBody, match="nested"):
        parse_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert parse_json(json.dumps({"q": "[" * 1000})) == {"q": "[" * 1000}  # brackets inside strings do not count


@pytest.mark.parametrize(
    "document",
    ["[" * SIZE, "{" * SIZE, '"' + "\\" * (SIZE - 2) + '"', '"' + "\\u" * (SIZE // 2 - 1), "1" * SIZE,
     '{"a":' * (SIZE // 5), "[" + "1," * (SIZE // 2 - 1) + "1]", '"' + "\\ud800" * (SIZE // 6) + '"'],
)  # fmt: skip
def test_worst_cases_are_fast(document: str) -> None:
    t0 = time.perf_counter()
    with contextlib.suppress(BadBody):
        parse_json(document)
    assert time.perf_counter() - t0 < 5.0  # a guard against super-linear parsing, not a benchmark


def test_raw_bytes_and_media_types() -> None:
    assert raw_bytes({"body": base64.b64encode(b"\xff").decode(), "isBase64Encoded": True}) == b"\xff"
    assert raw_bytes({"body": None}) == b"" and raw_bytes({}) == b""
    for event in ({"body": "!!", "isBase64Encoded": True}, {"body": "\ud800"}, {"body": 5}):
        with pytest.raises(BadBody):
            raw_bytes(event)
    for ok in (None, "", "application/json", "application/problem+json; charset=UTF-8"):
        require_json_media_type(ok)
    for bad in ("text/json", "application/jsonx", "application/json; charset=iso-8859-1", "*/*"):
        with pytest.raises(BadBody) as info:
            require_json_media_type(bad)
        assert info.value.status == 415
