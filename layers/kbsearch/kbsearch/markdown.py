"""What a Markdown reader (CommonMark, as Obsidian reads it) takes a note's lines for, where the indexer, the note
graph and a read by path must agree with it: one place, so the parser (sections, links), the chunker (code blocks
kept whole), the outline (sections read by path) and the tags written in a note's text never disagree with each
other: :func:`read_body` says once what each line of a body is (code, math, comment, hidden, heading, prose), and
the three readers of lines in :mod:`kbsearch.notes` consume it. And what Obsidian hides: its ``%%comments%%``
(:func:`hidden_comments`)."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

#: The version of how a note's body is read into sections (:func:`read_body`, what a chunk holds): a collection
#: recording another (``notes_reading``) has each note read again by the next full sync. 2: round 32's one line
#: classifier (a fence in a quote, indented code and ``$$`` math read as code; an empty heading a section). 3: a
#: ``$$`` block closed by a line of ``$$`` alone or by its quote's end, opened by none whose text holds a ``$``. 4:
#: a closing fence indented four columns or more (past the item's text, in a list item) or quoted more deeply than
#: its opening is code, not a closing; a list item in a quote, a thematic break, a ``$$`` block or an HTML comment at
#: the margin no longer keep (or start) a list's tracking, so indented code after them is code (round 33). 5: a
#: closing ``$$`` indented four columns or more, or quoted otherwise than its opening, is math, not a closing (round 34).
#: 6: a ``$$`` block opened in a list item ends at a line at the margin (the item's end), as a fence does (rev34a).
#: 7: a ``$$`` in a list item opens a block only when a line of the item closes it (a closing after the item's end
#: made the item's lines math, rel35). 8: a relative link (``[[../ops/Runbook]]``) is kept from the KB's root
#: (``/ops/Runbook``), its graph key anchored there, so it names the note at that whole path or none (adv38).
#: 9: a link whose path ends in ``/`` (``[[ops/]]``, ``[Runbooks](runbooks/)``) names a folder, no note: it was the
#: link ``ops``, resolved to a note of that name (adv39).
PARSE_VERSION = 9

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


def indentation(line: str) -> int:
    """The columns of ``line``'s leading spaces and tabs (a tab to the next multiple of four, as CommonMark counts)."""
    columns = 0
    for char in line:
        if char == " ":
            columns += 1
        elif char == "\t":
            columns += 4 - columns % 4
        else:
            break
    return columns


def fence_closed(line: str, fence: str, indent: int = 3) -> bool:
    """Whether ``line`` closes the code block ``fence`` opened: a run of its character at least as long, alone,
    indented at most ``indent`` columns (CommonMark 4.5: up to three; in a list item, three past the item's text).
    A fence line indented more is the block's text: it closed the block, and the code after it was read as prose
    (its ``## lines`` headings, its ``#words`` tags)."""
    closing = line.strip()
    return bool(closing) and set(closing) == {fence[0]} and len(closing) >= len(fence) and indentation(line) <= indent


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


_HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+(?=[^ \t])")  # up to three spaces before: CommonMark, Obsidian


def heading_text(rest: str) -> str:
    """What follows an ATX heading's ``#`` marks, without its closing ``#`` run (one that follows a space or tab:
    ``# Using C#`` keeps its ``#``); linear in the line (no backtracking)."""
    text = rest.rstrip(" \t")
    closed = text.rstrip("#")
    if closed != text and (not closed or closed[-1] in " \t"):
        text = closed.rstrip(" \t")
    return text.strip()


def atx_heading(line: str) -> tuple[int, str] | None:
    """An ATX heading line → (level, text without a closing ``#`` run); None when ``line`` is none (or empty)."""
    m = _HEADING.match(line)
    if m is None:
        return None
    text = heading_text(line[m.end() :])
    return (len(m.group(1)), text) if text else None


# What a line of a note's body is to a reader (:func:`read_body`): the kinds of :data:`BodyLine`.
PROSE = 0  #: a paragraph's line, a list item, a quote, a table row (and a line left of a %%comment%%)
BLANK = 1  #: empty or white space (a paragraph ends)
HEADING = 2  #: an ATX heading, or a setext heading's text (the line above its underline)
UNDERLINE = 3  #: a setext heading's underline (``===``, ``---``): no text of its own
CODE = 4  #: a fenced code block's line (its fences too, one in a quote or callout too) or an indented code block's
MATH = 5  #: a ``$$`` math block's line (its ``$$`` lines too)
COMMENT = 6  #: an HTML comment's line (``<!--`` to the line holding ``-->``)
HIDDEN = 7  #: a line Obsidian's ``%%comment%%`` hides whole

#: One line of a body as :func:`read_body` reads it: (kind, the line as shown, heading level, heading text). The
#: line as shown is the line as written but for what a ``%%comment%%`` hides (a code or math line: as written); the
#: level and text are a heading's (0 and "" for any other kind).
BodyLine = tuple[int, str, int, str]

_QUOTE = re.compile(r"(?: {0,3}>[ ]?)+")
_LIST_ITEM = re.compile(r" {0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
#: A thematic break (CommonMark 4.1): three or more of one of ``*``, ``-``, ``_``, spaces and tabs between; it is
#: no list item (``* * *``, ``- - -``) and, at the margin, ends a list.
_BREAK = re.compile(r" {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})")
_BREAK_FIRST = ("*", "-", "_", " ")  # (the regex is tried only on a line starting with one: most lines are words)
_INDENTED = re.compile(r"(?: {4}|[ ]{0,3}\t)[ \t]*\S")  # four columns of indentation, then text


def unquoted(line: str) -> tuple[str, int]:
    """``line`` without its blockquote (or callout) markers, and how many ``>`` it is nested in."""
    if ">" not in line:
        return line, 0
    m = _QUOTE.match(line)
    return (line, 0) if m is None else (line[m.end() :], m.group().count(">"))


def math_fence(line: str) -> tuple[int, int] | None:
    """(how many ``>`` it is quoted in, its indentation) when ``line`` is two dollars or more alone after its quote
    markers (blanks aside): a line that may close a ``$$`` math block. None otherwise: a line merely holding ``$$``
    closes none (a shell's ``echo $$`` in a code block below closed a block a prose line opened, ``$$ is the
    shell's PID``, the fence after it opened one never closed, and the note's next sections, tags and links were
    lost)."""
    if "$$" not in line:
        return None
    inner, depth = unquoted(line) if ">" in line else (line, 0)
    if inner.strip(" \t$"):
        return None
    return depth, (indentation(inner) if inner[:1] in (" ", "\t") else 0)


def math_closed(line: str, depth: int = 0, indent: int = 3) -> bool:
    """Whether ``line`` closes a ``$$`` math block opened ``depth`` quotes deep: dollars alone
    (:func:`math_fence`), quoted exactly as deeply and indented at most ``indent`` columns, as a closing fence
    (micromark's math follows CommonMark's fenced code with dollars; :func:`fence_closed`): ``> > $$`` in a block
    opened at ``> $$``, and ``    $$``, are the block's text (round 34)."""
    if not depth and line[:1] == "$":  # most closings: at the margin, unquoted (main's one test)
        return not line.strip(" \t$") and "$$" in line
    found = math_fence(line)
    return found is not None and found[0] == depth and found[1] <= indent


def _math_closings(lines: list[str]) -> dict[int, tuple[list[int], list[int]]]:
    """For each quote depth, the lines that may close a ``$$`` block there (:func:`math_fence`), ascending, and
    the least indentation of each one's and those after it: whether a block opened at a line is closed later is a
    bisection, whatever the note holds. Under ``-1``: every such line, whatever its depth or indentation (what a
    quoted opening needs: the block ends with its quote anyway, and micromark needs no closing there; rev32b's
    callout ended by the callout), its indentations not read."""
    margin: list[int] = []  # (most closings: unquoted, at the margin)
    other: dict[int, list[tuple[int, int]]] = {}
    for number, text in enumerate(lines):
        if "$$" not in text:
            continue
        if text[:1] == "$" and not text.strip(" \t$"):
            margin.append(number)
            continue
        fence = math_fence(text)
        if fence is not None:
            other.setdefault(fence[0], []).append((number, fence[1]))
    closings = {depth: ([number for number, _ in found], list(accumulate((i for _, i in reversed(found)), min))[::-1])
                for depth, found in other.items()}  # fmt: skip
    if margin and 0 in other:
        merged = sorted([(number, 0) for number in margin] + other[0])
        closings[0] = ([n for n, _ in merged], list(accumulate((i for _, i in reversed(merged)), min))[::-1])
    elif margin:
        closings[0] = (margin, [0] * len(margin))
    every = sorted(n for at, _ in closings.values() for n in at) if len(closings) > 1 else None
    closings[-1] = (every if every is not None else next(iter(closings.values()), ([], []))[0], [])
    return closings


def _item_closings(lines: list[str], later: Sequence[int]) -> tuple[list[int], list[int]]:
    """For the closings at the margin's depth (``later``, ascending): the lines that end a list item (at the margin,
    neither blank nor a closing ``$$``: what ends an item's math block in :func:`read_body`), ascending, and each
    closing's least indentation of it and the closings after it before the next such line. Whether a block
    opened in an item is closed in the item is then two bisections (rel35: a closing after the item's end counted,
    so an item's ``$$`` was math or prose as an unrelated ``$$`` further on said)."""
    enders = [n for n, text in enumerate(lines) if text[:1] not in ("", " ", "\t")
              and not (text[:1] == "$" and not text.strip(" \t$") and "$$" in text)]  # fmt: skip
    least = [0] * len(later)
    for k in range(len(later) - 1, -1, -1):
        found = math_fence(lines[later[k]])
        indent = found[1] if found is not None else 0
        if k + 1 < len(later) and bisect_right(enders, later[k + 1]) == bisect_right(enders, later[k]):
            indent = min(indent, least[k + 1])
        least[k] = indent
    return enders, least


def read_body(body: str) -> list[BodyLine]:
    """What each line of a note's body (split at ``\\n``) is to a reader, CommonMark as Obsidian reads it: the one
    place the note's sections (what is indexed), its outline (sections read by path, the note graph) and the tags
    written in its text are read from, so they never disagree. Linear in the body.

    - A fenced code block (:func:`fence_opened`, also in a quote or callout: ``> ```css``) to its closing fence, or
      to the end of its quote (a line quoted less deeply: CommonMark closes the block with the quote), or to the
      end of the note; in a list item, indented as the item's text (any depth), to its closing fence or to a line
      at the margin (the item's end): :data:`CODE`, read as written (no heading, link, tag or comment there). A
      closing fence is indented at most three columns (three past the opening fence's, in a list item) and quoted
      exactly as deeply as the opening one (``> > ```` in a block opened at ``> ```` is its text).
    - An indented code block: a line of four columns of indentation where a paragraph cannot go on (the note's
      start, after a blank line, a heading or another block), and the lines after it so indented (blank lines
      between); not in a list (a list item's continuation is indented so: a list is open from a list item at
      the margin, not in a quote, to a paragraph at the margin after a blank line, a heading, a thematic break, a
      fence, a ``$$`` block or an HTML comment at the margin): :data:`CODE`.
    - A ``$$`` math block (Obsidian's): a line opening with ``$$`` (nothing after it holding a ``$``, as a
      fence's info string holds no backtick) to the next line of ``$$`` alone, quoted as deeply and indented at most
      three columns (:func:`math_closed`), or to the end of its quote or callout or list item (as a fence), or
      ``$$x$$`` on one line; a ``$$`` no later line closes (in a list item, no later line of the item) is prose:
      :data:`MATH`, read as written.
    - What an Obsidian ``%%comment%%`` hides (:func:`hidden_comments`) is out of the line as shown; a line all of
      it hidden is :data:`HIDDEN` (a paragraph neither ends nor opens there).
    - An HTML comment (:func:`comment_opened`, also in a quote: to ``-->`` or the end of its quote):
      :data:`COMMENT`.
    - An ATX heading (``## Text``, up to three spaces before) or a setext one (a line alone in its paragraph,
      :func:`may_head`, over ``===`` or ``---``): :data:`HEADING` with its level and text, the underline
      :data:`UNDERLINE`.
    - Anything else: :data:`BLANK` or :data:`PROSE`.
    """
    lines = body.split("\n")
    out: list[BodyLine] = []
    fence: str | None = None
    fence_depth = comment_depth = math_depth = 0  # how deep in quotes a fence, an HTML comment or math opened
    fence_in_item = False  # the fence opened indented in a list item: a line at the margin (but its closing fence)
    # ends the item, and the fence with it
    fence_indent = 3  # the columns a closing fence may be indented (the opening one's and three, in a list item)
    math_indent = 3  # the columns a closing ``$$`` may be indented (as a fence's)
    math_in_item = False  # the math opened indented in a list item: a line at the margin ends it (as a fence's)
    math = hidden = comment = indented = in_list = False
    opens = True  # a paragraph opens at this line (the start, after a blank line, a heading or another block)
    above = -1  # the index of the line above when it alone opened a paragraph (a setext heading's text)
    closings: dict[int, tuple[list[int], list[int]]] | None = None  # whether a math block is closed (by depth)
    item_closings: tuple[list[int], list[int]] | None = None  # whether a list item's is closed in the item
    for number, written in enumerate(lines):
        if fence is not None:
            inner, depth = unquoted(written) if fence_depth else (written, 0)
            closes = depth == fence_depth and fence_closed(inner, fence, fence_indent)  # (a deeper quote: text)
            at_margin = fence_in_item and written[:1] not in ("", " ", "\t") and not closes
            if depth >= fence_depth and not at_margin:
                out.append((CODE, written, 0, ""))
                if closes:
                    fence, opens = None, True
                continue
            fence, opens = None, True  # the quote (or list item) ended, and the code block in it
        if math and (not math_depth or unquoted(written)[1] >= math_depth):
            closes = math_closed(written, math_depth, math_indent)
            if not (math_in_item and written[:1] not in ("", " ", "\t") and not closes):
                out.append((MATH, written, 0, ""))
                if closes:
                    math, opens = False, True
                continue
        if math:
            math, opens = False, True  # the quote (or callout) ended, and the math block in it
        if not hidden and not comment and (indented or (opens and not in_list)) and _INDENTED.match(written):
            out.append((CODE, written, 0, ""))
            indented, opens, above = True, True, -1
            continue
        line = written
        if line.strip():
            indented = False  # (past a blank line, an indented code block goes on)
        if hidden or "%%" in line:
            shown, hidden = hidden_comments(line, hidden)
            if line.strip() and not shown.strip():
                out.append((HIDDEN, written, 0, ""))
                continue  # all of it hidden: not a line of the note's text
            line = shown
        inner, depth = unquoted(line) if ">" in line else (line, 0)
        if comment and depth < comment_depth:
            comment = False  # the quote ended, and the comment in it
        if comment or ("<!--" in inner and comment_opened(inner)):
            out.append((COMMENT, line, 0, ""))
            if not comment:
                comment, comment_depth = True, depth
                in_list = in_list and (depth > 0 or line[:1] in (" ", "\t"))  # a comment at the margin ends a list
            else:
                comment = not comment_closed(line)
            above, opens = -1, not comment
            continue
        opened = None
        if "`" in inner or "~" in inner:
            # in a list, a fence is indented as its item's text is, four columns or more under a nested item
            opened = fence_opened(inner.lstrip(" \t") if in_list and depth == 0 else inner)
        if opened is not None:
            fence_in_item = in_list and depth == 0 and inner[:1] in (" ", "\t")
            fence_indent = indentation(inner) + 3 if fence_in_item else 3
            out.append((CODE, line, 0, ""))  # (its info string without what a %%comment%% hides, as ever)
            fence, fence_depth, above = opened, depth, -1
            in_list = in_list and inner[:1] in (" ", "\t")  # a fence at the margin ends a list
            continue
        if "$$" in inner and inner.lstrip(" ").startswith("$$"):
            if "$$" in inner.lstrip(" ")[2:]:
                out.append((MATH, written, 0, ""))
                above, opens, in_list = -1, True, in_list and (depth > 0 or inner[:1] in (" ", "\t"))
                continue
            if closings is None:
                closings = _math_closings(lines)
            in_item = in_list and depth == 0 and inner[:1] in (" ", "\t")
            math_indent = indentation(inner) + 3 if in_item else 3
            later, least = closings.get(0 if depth == 0 else -1, ((), ()))  # (a quoted one: any later line)
            at = bisect_right(later, number)
            closed = at < len(later) and (depth or least[at] <= math_indent)
            if closed and in_item:  # by a line of the item (before a line at the margin ends it)
                item_closings = item_closings or _item_closings(lines, later)
                enders, least_in = item_closings
                closed = bisect_right(enders, number) == bisect_right(enders, later[at]) and least_in[at] <= math_indent
            if closed and "$" not in inner.lstrip(" ")[2:]:
                out.append((MATH, written, 0, ""))
                math, math_depth, math_in_item, above = True, depth, in_item, -1
                in_list = in_list and (depth > 0 or inner[:1] in (" ", "\t"))  # a math block at the margin ends a list
                continue
        level = underline_level(line) if above >= 0 else None
        if level is not None:
            text = out[above][1]
            out[above] = (HEADING, text, level, text.strip())
            out.append((UNDERLINE, line, level, ""))
            above, opens, in_list = -1, True, False
            continue
        parsed = atx_heading(line) if "#" in line else None
        if parsed is not None:
            out.append((HEADING, line, *parsed))
            above, opens, in_list = -1, True, False
            continue
        blank = not line.strip()
        out.append((BLANK if blank else PROSE, line, 0, ""))
        if depth == 0 and line[:1] in _BREAK_FIRST and _BREAK.fullmatch(line):
            # a thematic break, no list item (``* * *``): a block of its own
            in_list = in_list and line[:1] in (" ", "\t")  # at the margin: the list ended
            above, opens = -1, True
            continue
        if depth == 0 and _LIST_ITEM.match(line):  # (a list in a quote ends with its quote)
            in_list = True
        elif not blank and opens and line[:1] not in (" ", "\t"):
            in_list = False  # a paragraph at the margin after a blank line: the list ended
        above = len(out) - 1 if opens and may_head(line) else -1
        opens = blank
    return out
