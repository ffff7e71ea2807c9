"""Round 35 (rel35): a ``$$`` in a list item opens a block only when a line of the item closes it. rev34a ended an
item's block at the item's end, but whether it opened was still decided by any later closing within its
indentation, even one after the item's end: the item's lines were math, their tags and links lost, or prose, as an
unrelated ``$$`` further on said (rev34a's left (1)). Now the item's own lines decide, as a ``$$`` at the margin
is prose when no later line closes it. The oracle is rel34's (markdown-it-py with each ``$$`` written as a backtick
fence) in one direction: no line is read as math that CommonMark does not read as a fence's (an unclosed fence is
code to its container's end in CommonMark; an unclosed ``$$`` is prose here, by design since round 32)."""

from __future__ import annotations

import pytest

from tests.integration.test_lines32 import read_alike
from tests.unit.test_read_body_rel34 import commonmark_fence, read_math

#: name → (body, the lines read as math, the sections' heading paths, the tags written in the text, the links); each
#: read otherwise by main's read_body (3c36eb1) unless marked "guard"
CASES: dict[str, tuple[str, set[int], list[tuple[str, ...]], list[str], list[str]]] = {
    "an item's $$ whose only closing comes after the item's end": (
        "- item\n  $$\n  x #tag [[Link]]\nNext\n\n$$\n", set(), [()], ["tag"], ["Link"],
    ),
    "a heading in an item under a $$ closed after the item": (
        "- item\n  $$\n  ## Inside #kept\n  quokka\nNext\n\n$$\n",
        set(), [(), ("Inside #kept",)], ["kept"], [],
    ),
    "an ordered item's $$ closed by a later item's closing": (
        "1. a\n   $$\n   x #one\n2. b\n   $$\n", set(), [()], ["one"], [],
    ),
    # guard: closed in its item
    "math closed in its item": ("- a\n  $$\n  x #notatag\n  $$\nNext #yes\n", {1, 2, 3}, [()], ["yes"], []),
    # guard: closed in its item past a blank line
    "math closed in its item past a blank line": ("- a\n  $$\n\n  x #no\n  $$\n- b #yes\n", {1, 3, 4}, [()], ["yes"], []),
    # guard: a closing at the margin closes it (it does not end the item)
    "math in an item closed at the margin": ("- a\n  $$\n  x #no\n$$\n- b #yes\n", {1, 2, 3}, [()], ["yes"], []),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_an_items_dollars_open_a_block_only_when_a_line_of_the_item_closes_it(name: str) -> None:
    body, math, paths, tags, links = CASES[name]
    assert read_math(body) == math
    assert read_math(body) <= commonmark_fence(body)
    read_alike(body, paths, tags, links)
