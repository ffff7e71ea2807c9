"""What a Markdown reader (CommonMark, as Obsidian reads it) takes a note's lines for, where the indexer, the note
graph and a read by path must agree with it: one place, so the parser (sections, links), the chunker (code blocks
kept whole) and the outline (sections read by path) never disagree with each other. And what Obsidian hides: its
``%%comments%%`` (:func:`hidden_comments`)."""

from __future__ import annotations

import re

_FENCE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})(.*)")


def fence_opened(line: str) -> str | None:
    """The fence (its run of backticks or tildes) ``line`` opens a code block with, or None. A run of backticks
    whose rest holds a backtick opens none (CommonMark 4.5: a backtick fence's info string holds no backtick): it is
    inline code, a one-line snippet pasted from Slack or a chat (```` ```kubectl get pods``` ````); taken for a
    fence never closed, it made the rest of the note one code block, its headings no sections and its links none."""
    m = _FENCE.match(line)
    if m is None:
        return None
    fence = m.group(1)
    return None if fence[0] == "`" and "`" in m.group(2) else fence


def fence_closed(line: str, fence: str) -> bool:
    """Whether ``line`` closes the code block ``fence`` opened (a run of its character at least as long, alone)."""
    closing = line.strip()
    return bool(closing) and set(closing) == {fence[0]} and len(closing) >= len(fence)


_TICKS = re.compile(r"`+")


def code_spans(line: str) -> list[tuple[int, int]]:
    """The (start, end) of each inline code span of ``line``, in order: a run of backticks up to the next run of
    exactly as many (CommonMark 6.1); a run that no run of its length follows is no span's, just backticks. Linear
    in the line: each run is paired once with the next of its length, found by one walk back from the end (a regex
    pairing a run with the next run it begins took a line of runs of every length, ``k`` backticks then ``a`` for k
    = n..1, cubic time: 80 KB 1 s, a 500 KB note 33 s, a sync stalled on one note)."""
    if "`" not in line:  # most lines: no run to pair
        return []
    runs = [(m.start(), m.end()) for m in _TICKS.finditer(line)]
    following: list[int | None] = [None] * len(runs)  # the index of the next run of the same length
    last: dict[int, int] = {}
    for i in range(len(runs) - 1, -1, -1):
        size = runs[i][1] - runs[i][0]
        following[i] = last.get(size)
        last[size] = i
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(runs):
        closing = following[i]
        if closing is None:
            i += 1
            continue
        spans.append((runs[i][0], runs[closing][1]))
        i = closing + 1
    return spans


_UNDERLINE = re.compile(r" {0,3}(=+|-+)[ \t]*")
#: Lines that are no paragraph's (a list item, a quote, a table row, HTML, an ATX heading, indented code, a rule):
#: no setext heading's text.
_NO_PARAGRAPH = re.compile(r"[ ]{0,3}(?:[-*+](?:[ \t]|$)|\d{1,9}[.)](?:[ \t]|$)|[>|<#]|(?:[-*_][ \t]*){3,}$)|[ ]{4}|\t")


def underline_level(line: str) -> int | None:
    """The level of the setext heading ``line`` underlines (1 under ``===``, 2 under ``---``) when the line above
    it alone opened a paragraph (see :func:`may_head`); None when it is no underline."""
    m = _UNDERLINE.fullmatch(line)
    return None if m is None else (1 if m.group(1)[0] == "=" else 2)


def may_head(line: str) -> bool:
    """Whether ``line``, opening a paragraph, can be a setext heading's text (an underline below it makes it one).
    Only a paragraph of one line is read so (a longer one is one too, to CommonMark; rare, left as prose)."""
    return bool(line.strip()) and _NO_PARAGRAPH.match(line) is None


_COMMENT = re.compile(r" {0,3}<!--")


def comment_opened(line: str) -> bool:
    """Whether ``line`` opens an HTML comment that goes on past it (CommonMark's HTML block: to the first line
    holding ``-->``). No reader shows what is inside, so no heading there is one: a section commented out filed
    the text after it under its hidden heading."""
    m = _COMMENT.match(line)
    return m is not None and "-->" not in line[m.end() :]


def comment_closed(line: str) -> bool:
    return "-->" in line


def hidden_comments(line: str, inside: bool) -> tuple[str, bool]:
    """``line`` without what Obsidian's comments hide (``%%`` to the next ``%%``, on one line or across lines: the
    reading view shows none of it, nor its headings or links), and whether a comment is still open after it.
    ``inside``: a comment opened on a line above. A code span keeps its ``%%`` (`` `%%` ``, the syntax's own help
    page); a fenced code block is never read here (the caller keeps it whole)."""
    if "%%" not in line:
        return ("", True) if inside else (line, False)
    spans = dict(code_spans(line))  # a span's start → just past its closing run
    kept: list[str] = []
    i, n, start = 0, len(line), 0
    while i < n:
        if inside:
            j = line.find("%%", i)
            if j < 0:
                return "".join(kept), True
            i = start = j + 2
            inside = False
            continue
        end = spans.get(i)
        if end is not None:  # a code span: kept as written
            i = end
            continue
        if line.startswith("%%", i):
            kept.append(line[start:i])
            inside = True
            i += 2
            continue
        i += 1
    if not inside:
        kept.append(line[start:])
    return "".join(kept), inside
