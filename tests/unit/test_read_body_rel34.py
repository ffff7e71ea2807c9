"""Round 34 (rel34): a ``$$`` math block closes as a fenced code block does (rel33's fix for fences). Obsidian's math
is micromark's, whose ``$$`` blocks follow CommonMark's fenced code with dollars for backticks; so the oracle is
markdown-it-py (a CommonMark parser, in the dev dependencies only) reading the same note with each ``$$`` written
as a backtick fence: the lines it reads as that fence's are the lines ``read_body`` reads as math, and the note's
sections, tags and links follow (``tests.integration.test_lines32.read_alike``)."""

from __future__ import annotations

import pytest

from kbsearch.markdown import MATH, math_closed
from tests.integration.test_lines32 import read_alike
from tests.unit.test_read_body_rel33 import commonmark_code, read_code

#: name → (body, the sections' heading paths, the tags written in the text, the links); each read otherwise by
#: main's read_body (0106189) unless marked "guard"
CASES: dict[str, tuple[str, list[tuple[str, ...]], list[str], list[str]]] = {
    # a closing $$ indented four columns is the block's text: the block goes on
    "closing $$ indented four columns": (
        "$$\na^2\n    $$\n## Inside #inmath\n$$\n\n## After\n\nwords #yes\n",
        [(), ("After",)],
        ["yes"],
        [],
    ),
    "closing $$ indented by a tab": ("$$\na^2\n\t$$\n#inmath [[NotALink]]\n$$\n\nafter #yes\n", [()], ["yes"], []),
    # guard: up to three spaces before a closing $$ it closes
    "closing $$ indented three spaces": ("$$\na^2\n   $$\n## After\n\n#yes\n", [(), ("After",)], ["yes"], []),
    # a $$ quoted more deeply than the block's opening is its text (the block's content is "> $$")
    "deeper-quoted $$ in a quoted block": (
        "> $$\n> a^2\n> > $$\n> #inmath [[NotALink]]\n> $$\n\nafter #yes\n",
        [()],
        ["yes"],
        [],
    ),
    # a quoted $$ in a block opened at the margin is its text too
    "quoted $$ in a block at the margin": (
        "$$\na^2\n> $$\n## Inside #inmath\n$$\n\n## After\n\n#yes\n",
        [(), ("After",)],
        ["yes"],
        [],
    ),
    # guard: a list item's $$ block closes at the item's text's indentation (three columns past it at most)
    "math in a list item closed at its indentation": (
        "- Step\n\n    $$\n    x #notatag\n    $$\n\n## Next\n\n#yes\n",
        [(), ("Next",)],
        ["yes"],
        [],
    ),
}


def commonmark_fence(body: str) -> set[int]:
    """The non-blank lines CommonMark reads as a fenced block once each ``$$`` is written as a backtick fence."""
    return commonmark_code(body, ("fence",), body.replace("$$", "```"))


def read_math(body: str) -> set[int]:
    return read_code(body, MATH)


@pytest.mark.parametrize("name", list(CASES))
def test_math_lines_are_those_commonmark_reads_as_a_fence_of_dollars(name: str) -> None:
    body = CASES[name][0]
    assert read_math(body) == commonmark_fence(body)
    read_alike(*CASES[name])


def test_a_closing_dollars_line_is_quoted_as_deeply_and_indented_at_most_three_columns() -> None:
    assert math_closed("$$") and math_closed("   $$ ") and math_closed("$$$") and math_closed("> $$", depth=1)
    assert not math_closed("    $$") and not math_closed("\t$$") and not math_closed("> > $$", depth=1)
    assert not math_closed("> $$") and not math_closed("echo $$") and not math_closed("$$>")
    assert math_closed("      $$", indent=7)  # in a list item whose block opened four columns in


def test_a_block_no_later_line_closes_at_its_depth_is_prose_and_the_check_is_linear() -> None:
    """Whether a ``$$`` opens a block is read from the lines after it that close one at its quote depth within
    its indentation: ``$$ a`` over only deeper-quoted or indented ``$$`` lines opens none (main: each did)."""
    body = "$$\nx\n> $$\n\ntext #yes\n"
    assert read_math(body) == set()  # no closing at the margin: prose
    assert parse_tags(body) == ["yes"]
    many = "$$ a\n" * 20_000 + "    $$\n" * 20_000
    assert read_math(many) == set()  # (each opening a bisection, not a walk over the 20,000 lines after it)


def parse_tags(body: str) -> list[str]:
    from kbsearch.notes import parse_note

    return parse_note("case.md", body.encode()).tags
