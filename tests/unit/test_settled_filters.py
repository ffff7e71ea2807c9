"""Filters settled for fields no point holds a value of (:func:`kbsearch.qdrant.query.settled`,
:func:`~kbsearch.qdrant.query.settled_search`): what the embedded store does before Edge sees a filter on a
front-matter field whose index is not there yet. Edge's own answers with and without the index are compared in
tests/integration/test_first_value_indexes.py; these pin the rules themselves."""

from __future__ import annotations

from typing import Any

import pytest

from kbsearch.qdrant.query import NO_POINT, filter_json, fusion_request, holds_value, settled, settled_search

ABSENT = frozenset({"type", "status", "updated", "tags", "tag_keys"})
PATH = {"key": "path", "match": {"value": "a.md"}}
TYPE = {"key": "type", "match": {"any": ["memo"]}}


@pytest.mark.parametrize(
    ("where", "verdict"),
    [
        (None, True),
        ({"must": [TYPE]}, False),
        ({"must": [PATH]}, {"must": [PATH]}),
        ({"must": [PATH, TYPE]}, False),
        ({"must": [{"key": "updated", "range": {"gt": "2026-01-01T00:00:00+00:00"}}]}, False),
        ({"must": [{"key": "status", "match": {"text": "act"}}]}, False),
        ({"must": [{"is_empty": {"key": "tags"}}]}, True),
        ({"must": [{"is_empty": {"key": "tags"}}, PATH]}, {"must": [PATH]}),
        ({"must_not": [TYPE]}, True),
        ({"must_not": [TYPE, PATH]}, {"must_not": [PATH]}),
        ({"must_not": [{"is_empty": {"key": "type"}}]}, False),
        ({"should": [TYPE]}, False),
        ({"should": [TYPE, PATH]}, {"should": [PATH]}),
        ({"should": [{"is_empty": {"key": "status"}}, PATH], "must": [PATH]}, {"must": [PATH]}),
        ({"must": [{"must_not": [TYPE]}, PATH]}, {"must": [PATH]}),
        ({"must": [{"should": [TYPE, {"must": [TYPE]}]}]}, False),
        ({"must": TYPE}, False),  # one condition in place of a list, as Qdrant takes it
        # a count of 0 values: what Edge counts for a missing field
        ({"must": [{"key": "tags", "values_count": {"lt": 1}}]}, True),
        ({"must": [{"key": "tags", "values_count": {"gte": 0, "lte": 3}}]}, True),
        ({"must": [{"key": "tags", "values_count": {"gt": 0}}]}, False),
        ({"must": [{"key": "tags", "values_count": {"gte": 1}}]}, False),
        # not settled: what only the payload tells (a null), or a rule kept for Qdrant
        ({"must": [{"is_null": {"key": "type"}}]}, {"must": [{"is_null": {"key": "type"}}]}),
        ({"must": [{"key": "type", "match": {"except": ["memo"]}}]}, {"must": [{"key": "type", "match": {"except": ["memo"]}}]}),
        ({"must": [TYPE], "min_should": {"conditions": [PATH], "min_count": 1}},
         {"must": [TYPE], "min_should": {"conditions": [PATH], "min_count": 1}}),
    ],
)  # fmt: skip
def test_a_filter_on_fields_without_a_value_is_settled(where: dict[str, Any] | None, verdict: Any) -> None:
    assert settled(where, ABSENT) == verdict
    assert settled(where, ()) == (where if where is not None else True)  # nothing absent: as it is


def test_a_filter_with_nothing_to_settle_is_the_same_object() -> None:
    where = filter_json(path_prefix="ops", groups=["public", "hr"])
    assert where is not None and settled(where, ABSENT) is where


def test_the_search_filters_on_front_matter_match_nothing_without_the_index() -> None:
    for where in (filter_json(types=["memo"], groups=["public"]), filter_json(statuses=["active"], groups=["public"]),
                  filter_json(tags=["x"], groups=["public"])):  # fmt: skip
        assert settled(where, ABSENT) is False
    scoped = filter_json(groups=["public", "hr"], path_prefix="ops")
    assert settled(scoped, {"type"}) == scoped


def test_a_search_that_finds_nothing_is_not_asked() -> None:
    fused = fusion_request([[0.1, 0.2]], None, filter_json(types=["memo"]), prefetch_limit=5)
    assert fused is not None and settled_search(fused, ABSENT) is None
    newest = {"query": {"order_by": {"key": "updated", "direction": "desc"}}, "filter": {"must": [PATH]}, "limit": 5}
    assert settled_search(newest, ABSENT) is None and settled_search(newest, {"type"}) is newest
    plain = fusion_request([[0.1, 0.2]], None, {"must": [PATH]}, prefetch_limit=5)
    assert plain is not None and settled_search(plain, ABSENT) is plain


def test_a_prefetch_that_finds_nothing_keeps_its_place_in_the_fusion() -> None:
    fused = fusion_request([[0.1, 0.2], [0.3, 0.4]], None, None, prefetch_limit=5, bm25_weight=2.0)
    assert fused is not None
    fused["prefetch"][0]["filter"] = {"must": [TYPE]}
    fused["prefetch"][1]["filter"] = {"must": [{"is_empty": {"key": "tags"}}, PATH]}
    out = settled_search(fused, ABSENT)
    assert out is not None and out is not fused and "filter" not in out
    assert out["prefetch"][0] == {"limit": 5, "filter": NO_POINT}
    assert out["prefetch"][1]["filter"] == {"must": [PATH]} and out["prefetch"][1]["query"] == [0.3, 0.4]
    assert fused["prefetch"][0]["filter"] == {"must": [TYPE]}  # the request itself is left as it was


@pytest.mark.parametrize(
    ("value", "held"), [(None, False), ([], False), ("", True), ("memo", True), (["a"], True), ([None], True)]
)
def test_what_holds_a_value(value: Any, held: bool) -> None:
    """Qdrant's ``is_empty`` holds for a missing field, a null and an empty list; anything else makes the index."""
    assert holds_value(value) is held
