"""Round 33 (rel33): rev32b's CommonMark gaps in ``kbsearch.markdown.read_body``, the one line classifier. Each case
is read as CommonMark reads it: the lines markdown-it-py (a CommonMark parser, in the dev dependencies only: never
imported by kb-search) takes for code are the lines ``read_body`` calls code, and the note's sections, tags and links
follow from that (``tests.integration.test_lines32.read_alike``)."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from kbsearch.markdown import CODE, fence_closed, read_body
from tests.integration.test_lines32 import read_alike

#: name → (body, the sections' heading paths, the tags written in the text, the links); each read otherwise by
#: main's read_body (79823fe) unless marked "guard"
CASES: dict[str, tuple[str, list[tuple[str, ...]], list[str], list[str]]] = {
    # a closing fence indented four columns is the block's text (CommonMark example 133): the block goes on
    "closing fence indented four columns": (
        "```\naaa\n    ```\n## Inside #incode\n```\n\n## After\n\nwords #yes\n",
        [(), ("After",)],
        ["yes"],
        [],
    ),
    "closing fence indented by a tab": (
        "~~~\naaa\n\t~~~\n#incode [[NotALink]]\n~~~\n\nafter #yes\n",
        [()],
        ["yes"],
        [],
    ),
    # guard: up to three spaces before a closing fence it closes (example 131)
    "closing fence indented three spaces": ("```\naaa\n   ```\n## After\n\n#yes\n", [(), ("After",)], ["yes"], []),
    # a fence quoted more deeply than the block's opening is its text (the block's content is "> ```")
    "deeper-quoted fence in a quoted block": (
        "> ```\n> > ```\n> #incode [[NotALink]]\n> ```\n\nafter #yes\n",
        [()],
        ["yes"],
        [],
    ),
    # guard: a list item's fence closes at the item's text's indentation (three columns past it at most)
    "fence in a list item closed at its indentation": (
        "- Step\n\n    ```sh\n    run #notatag\n    ```\n\n## Next\n\n#yes\n",
        [(), ("Next",)],
        ["yes"],
        [],
    ),
    # a list in a quote ends with the quote: indented code after it is code
    "list item in a quote": ("> - quoted item\n\n    #notatag [[NotALink]]\n\nafter #yes\n", [()], ["yes"], []),
    # a thematic break is no list item (``* * *``), and at the margin ends a list
    "thematic break of stars": ("- item\n\n* * *\n\n    #notatag [[NotALink]]\n\nafter #yes\n", [()], ["yes"], []),
    "thematic break under an item": ("- item\n***\n\n    #notatag [[NotALink]]\n\nafter #yes\n", [()], ["yes"], []),
    # a thematic break is a block: indented code may follow it with no blank line between (not a paragraph's line)
    "indented code under a thematic break": (
        "Text\n\n***\n    #notatag [[NotALink]]\n\nafter #yes\n",
        [()],
        ["yes"],
        [],
    ),
    # an HTML comment at the margin ends a list
    "comment after a list": (
        "- item\n\n<!--\nnote to self\n-->\n\n    #notatag [[NotALink]]\n\nafter #yes\n",
        [()],
        ["yes"],
        [],
    ),
    # guard: a list item's continuation is indented as code is, and is none
    "list continuation": ("- item\n\n    more #listtag [[Linked]]\n", [()], ["listtag"], ["Linked"]),
}

#: math is Obsidian's (micromark's math extension), not CommonMark's: no oracle here
MATH_CASES: dict[str, tuple[str, list[tuple[str, ...]], list[str], list[str]]] = {
    # a $$ block at the margin ends a list
    "math block after a list": (
        "- item\n\n$$\nx^2\n$$\n\n    #notatag [[NotALink]]\n\nafter #yes\n",
        [()],
        ["yes"],
        [],
    ),
    "one-line math after a list": ("- item\n\n$$x$$\n\n    #notatag [[NotALink]]\n\nafter #yes\n", [()], ["yes"], []),
}


def commonmark_code(body: str, types: tuple[str, ...] = ("fence", "code_block"), parsed: str | None = None) -> set[int]:
    """The numbers of the non-blank lines CommonMark (markdown-it-py) reads as code: fenced or indented blocks
    (``types``), of ``body`` or of ``parsed`` (the same lines otherwise written: rel34's ``$$`` as fences)."""
    lines = body.split("\n")
    code: set[int] = set()
    for token in MarkdownIt("commonmark").parse(body if parsed is None else parsed):
        if token.type in types and token.map:
            code.update(i for i in range(*token.map) if lines[i].strip())
    return code


def read_code(body: str, kind: int = CODE) -> set[int]:
    """The numbers of the non-blank lines ``read_body`` reads as ``kind`` (code; rel34: math)."""
    return {i for i, (read, line, *_) in enumerate(read_body(body)) if read == kind and line.strip()}


@pytest.mark.parametrize("name", list(CASES))
def test_code_lines_are_those_commonmark_reads_as_code(name: str) -> None:
    body = CASES[name][0]
    assert read_code(body) == commonmark_code(body)
    read_alike(*CASES[name])


@pytest.mark.parametrize("name", list(MATH_CASES))
def test_a_math_block_at_the_margin_ends_a_list(name: str) -> None:
    body = MATH_CASES[name][0]
    assert read_code(body) == {body.split("\n").index("    #notatag [[NotALink]]")}
    read_alike(*MATH_CASES[name])


def test_a_closing_fence_is_indented_at_most_three_columns() -> None:
    from kbsearch.markdown import indentation

    assert [indentation(s) for s in ("```", "   ```", "\t```", "  \t```", " \t ```")] == [0, 3, 4, 4, 5]
    assert fence_closed("   ```", "```") and not fence_closed("    ```", "```") and not fence_closed("\t```", "```")
    assert fence_closed("      ```", "```", indent=7)  # in a list item whose fence opened four columns in
