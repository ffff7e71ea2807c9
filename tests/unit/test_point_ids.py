"""A chunk's integer id on the embedded store is the first 64 bits of its uuid5 (:func:`point_id`), computed without
making the ``UUID``: it must be that number for every path and chunk index, and fail where uuid5 fails (a path
holding a lone surrogate, which UTF-8 cannot encode)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbsearch.qdrant.query import POINT_NAMESPACE, point_id, point_number


def _uuid5_number(path: str, chunk_index: int) -> int:
    return uuid.uuid5(POINT_NAMESPACE, f"{path}#{chunk_index}").int >> 64


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8")), st.integers(min_value=0, max_value=10**6))
def test_point_number_is_the_first_64_bits_of_the_points_uuid5(path: str, chunk_index: int) -> None:
    number = point_number(path, chunk_index)
    assert number == _uuid5_number(path, chunk_index) == uuid.UUID(point_id(path, chunk_index)).int >> 64
    assert 0 <= number < 2**64


def test_known_ids_stay_what_stores_hold() -> None:
    for path, index in [("en/Sync.md", 0), ("ru/Заметки/x.md", 7), ("a b/c#d.md", 123)]:
        assert point_number(path, index) == _uuid5_number(path, index)


def test_a_path_uuid5_cannot_encode_fails_alike() -> None:
    with pytest.raises(UnicodeEncodeError):
        _uuid5_number("bad\udcff.md", 0)
    with pytest.raises(UnicodeEncodeError):
        point_number("bad\udcff.md", 0)
