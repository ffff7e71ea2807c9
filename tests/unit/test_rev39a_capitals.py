"""rev39a: where :func:`kbsearch.lexical._capitals_meet` looks (it tells :func:`kbsearch.lexical.tokenize` whether a
text may hold an acronym typed in both scripts, ``АВC``): its shortcuts answer as one scan of the whole text does."""

from __future__ import annotations

import pytest

from kbsearch.lexical import _CAPITALS_LOOKED_AT, _CAPITALS_MEET, _capitals_meet, tokenize

MANY = "ERROR CONNECTION TIMEOUT " * _CAPITALS_LOOKED_AT  # more Latin capitals than are looked beside one by one


@pytest.mark.parametrize(
    "text",
    [
        "\u0410\u0412C analysis",  # АВC: Cyrillic А, В and a Latin C
        "x A\u0412\u0421",
        "\u0422\u0412 TV",  # capitals of each script, never side by side
        MANY + "\u2014 RETRY",  # an English text in capitals with one character not ASCII: no Cyrillic capital
        MANY + "\u041e\u0428\u0418\u0411\u041a\u0410 \u0410\u0412C",  # past the ones looked at: the scan finds АВC
        MANY + "\u041e\u0428\u0418\u0411\u041a\u0410",  # both scripts, never side by side
    ],
)
def test_where_capitals_of_the_two_scripts_meet_is_answered_as_a_scan_answers(text: str) -> None:
    assert _capitals_meet(text) == (_CAPITALS_MEET.search(text) is not None)


def test_an_acronym_in_both_scripts_after_many_latin_capitals_is_still_read_in_latin() -> None:
    """Past the capitals looked beside one by one, the acronym is found by the scan, as it is in a short text."""
    assert tokenize(MANY + "\u0410\u0412C")[-1] == tokenize("\u0410\u0412C")[-1] == "abc"
