"""The indexer's payload check encodes a note's shared fields once, not once per chunk: it must refuse exactly what
encoding every payload whole refuses (NaN and infinities, lone surrogates, values JSON cannot hold)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kbsearch.indexer import _check_storable

_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(codec=None, exclude_categories=())),  # lone surrogates included
    st.sampled_from([math.nan, math.inf, "\ud800", "ok", "снапшот", b"bytes", {1, 2}, ("a", 1)]),
)  # fmt: skip
_VALUES = st.recursive(_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                            max_size=4), max_leaves=12)  # fmt: skip


def _whole(payloads: list[dict[str, Any]]) -> bool:
    try:
        for payload in payloads:
            json.dumps(payload, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, TypeError):
        return False
    return True


def _shared(payloads: list[dict[str, Any]]) -> bool:
    try:
        _check_storable(payloads)
    except (ValueError, TypeError):
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["title", "tags", "meta", "links", "summary"]), _VALUES, max_size=5),
    st.lists(st.dictionaries(st.sampled_from(["heading", "text", "chunk_index", "extra"]), _VALUES, max_size=4),
             min_size=1, max_size=5),
)  # fmt: skip
def test_the_shared_fields_check_gives_the_whole_payloads_verdict(
    note: dict[str, Any], chunks: list[dict[str, Any]]
) -> None:
    payloads = [{**note, **chunk} for chunk in chunks]  # the note's values are the same objects in every payload
    assert _shared(payloads) == _whole(payloads)
