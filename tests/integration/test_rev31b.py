"""Round 31's cold review (rev31b, RELIABILITY.md "Round 31 review: a cold review (rev31b)"): what the round's changes
opened, each test failing on the round's code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_adv30 import assert_indexed_and_read


@pytest.mark.parametrize(
    ("text", "phrase"),
    [("3\n-za03 0ba]> ", "0ba]"), ("3\u0410>[* a y\u04101\n0", "a y")],
    ids=["ascii", "cyrillic"],
)
def test_a_plain_note_labelled_deflate_that_raw_inflates_to_its_end_is_read_as_stored(
    text: str, phrase: str, tmp_path: Path
) -> None:
    """Round 31 read `Content-Encoding: deflate` that is not zlib's format as raw deflate, which has no header or
    checksum: a plain note under a label only (read as stored since round 30) whose bytes happen to inflate as raw
    deflate to their last byte (2 of 20,000 short random texts) was read as the bytes inflated, not UTF-8: skipped
    as `not valid UTF-8`, or lost to garbage. Now a raw stream that inflates text into bytes no note holds is a
    label over the note's own bytes."""
    assert_indexed_and_read(text.encode(), "deflate", text, tmp_path, phrase)
