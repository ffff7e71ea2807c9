"""The ``/kb`` command's text read in linear time, whatever quotes it leaves open (``kbsearch.slack.parse_text``
runs on the acknowledgement path, inside Slack's 3 s)."""

from __future__ import annotations

import time

import pytest

from kbsearch.slack import parse_text

#: Texts built to make the word pattern rescan: every ``key:“`` left open read to the end of the text (200 KB of
#: them took ~15 s; within the 64 KiB body a form-encoded command can be, ~0.3 s of the 3 s).
OPEN_QUOTES = {
    "unknown keys, typographic": "ab:“x " * 33_000,
    "filter keys, typographic": "tag:“x " * 28_000,
    "unknown keys, straight": 'ab:"x ' * 33_000,
    "mixed": 'ab:“x cd:"y ef:”z ' * 11_000,
}


@pytest.mark.parametrize("text", list(OPEN_QUOTES.values()), ids=list(OPEN_QUOTES))
def test_open_quotes_are_read_in_linear_time(text: str) -> None:
    started = time.monotonic()
    intent = parse_text(text)
    assert time.monotonic() - started < 2.0  # milliseconds unloaded
    assert intent.kind in ("search", "usage")


@pytest.mark.parametrize(
    ("text", "status", "question"),
    [
        ("status:“two words” restore", ["two words"], "restore"),
        ('status:"two words" restore', ["two words"], "restore"),
        ("restore ab:“open quote", None, "restore ab:“open quote"),
        ("ab:“x ab:“y” restore", None, "ab:“x ab:“y” restore"),
    ],
)
def test_quoted_values_still_read(text: str, status: list[str] | None, question: str) -> None:
    intent = parse_text(text)
    assert intent.kind == "search" and intent.query == question
    assert intent.filters.get("status") == status


def test_a_quoted_tag_no_note_can_hold_is_a_usage_answer() -> None:
    """A tag with a space (the indexer splits a note's tags there) matches no note: the usage, never a search."""
    intent = parse_text('tag:"two words" restore')
    assert intent.kind == "usage" and "no space or comma" in (intent.error or ""), intent
    assert parse_text("tag:#ops restore").filters.get("tags") == ["#ops"]  # read as stored by the search: `ops`
