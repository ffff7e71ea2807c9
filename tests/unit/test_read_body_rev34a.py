"""Round 34's cold review of rel34 (rev34a): a ``$$`` block opened in a list item ends with the item, as a fenced
code block does (rel33's ``fence_in_item``). rel34 made a closing ``$$`` count only at its opening's quote depth and
indentation; an item's block no line closes in the item then ran past the item's end to a later ``$$`` at the
margin, and the headings, tags and links between were read as math (lost as such). The oracle is rel34's:
markdown-it-py reading the note with each ``$$`` written as a backtick fence."""

from __future__ import annotations

import pytest

from tests.integration.test_lines32 import read_alike
from tests.unit.test_read_body_rel34 import commonmark_fence, read_math

#: name → (body, the sections' heading paths, the tags written in the text, the links); each read otherwise by
#: main's read_body (0e0f321) unless marked "guard"
CASES: dict[str, tuple[str, list[tuple[str, ...]], list[str], list[str]]] = {
    "an item's unclosed $$ ends at a heading at the margin": (
        "- item\n  $$\n  x\n## Heading #tag\n\ntext [[Link]]\n\n$$\ny\n$$\n",
        [(), ("Heading #tag",)],
        ["tag"],
        ["Link"],
    ),
    "an item's unclosed $$ ends at a paragraph at the margin": (
        "1. Step\n   $$\n   a^2\nNext #yes [[Link]]\n\n$$\nb\n$$\n",
        [()],
        ["yes"],
        ["Link"],
    ),
    # guard: a block closed in its item
    "math in a list item closed at its indentation": (
        "- Step\n\n    $$\n    x #notatag\n    $$\n\n## Next\n\n#yes\n",
        [(), ("Next",)],
        ["yes"],
        [],
    ),
    # guard: the next item after a closed block
    "math closed, then the next item": ("- a\n  $$\n  x #notatag\n  $$\n- b #yes\n", [()], ["yes"], []),
}


#: rel35: an item's ``$$`` no line of the item closes is prose (here the later closings come after the item's end);
#: CommonMark reads it as an unclosed fence, code to the item's end. The lines after the item are read alike.
ITEM_PROSE = {
    "an item's unclosed $$ ends at a heading at the margin": {1, 2},
    "an item's unclosed $$ ends at a paragraph at the margin": {1, 2},
}


@pytest.mark.parametrize("name", list(CASES))
def test_an_items_math_ends_with_the_item_as_a_fence_of_dollars_does(name: str) -> None:
    body = CASES[name][0]
    assert read_math(body) == commonmark_fence(body) - ITEM_PROSE.get(name, set())
    read_alike(*CASES[name])
