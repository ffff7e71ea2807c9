"""Slack answers: note Markdown → Slack mrkdwn, and search answers → Block Kit within Slack's published limits.

Standard library only. Everything taken from a note is escaped (``&``, ``<``, ``>``), so text a note carries
(``<!channel>``, ``<@U123>``, ``&lt;``) stays inert; the only ``<…>`` in an answer are links this module writes.
Every regular expression has bounded repetition, so any text converts in time linear in its length.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from kbsearch.schemas import Hit, SearchResponse
from kbsearch.slack_words import answer_block_id, degraded, notes_found, say

# Block Kit's published limits (https://api.slack.com/reference/block-kit).
MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_HEADER_CHARS = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_CONTEXT_TEXT = 2000  # a context element's text (kept under the section limit with room to spare)
MAX_ACTIONS = 25
MAX_BUTTON_TEXT = 75
MAX_ACTION_ID = 255
MAX_BUTTON_VALUE = 2000
MAX_BUTTON_URL = 3000
MAX_MESSAGE_CHARS = 12_000  # Slack truncates a message at about 13k characters of text; this leaves a margin
SNIPPET_BUDGET = 1200  # mrkdwn characters of snippet per hit at most

# Action ids of the buttons (the interactions endpoint dispatches on them).
ACTION_SHARE = "kb_share"
ACTION_MORE = "kb_more"
ACTION_UP = "kb_vote_up"
ACTION_DOWN = "kb_vote_down"
ACTION_OPEN = "kb_open"  # a URL button: Slack opens the link and still sends an interaction, which is ignored

_USER_ID = re.compile(r"[UW][A-Z0-9]{2,30}")
# Control characters (but tab and newline) and the bidirectional embeddings, overrides and isolates, which let
# text reorder what follows it on screen.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def escape(text: str) -> str:
    """mrkdwn escaping: only ``&``, ``<`` and ``>`` (Slack's rule)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clean(text: str) -> str:
    """Note text as a person should see it: no control or bidi-override characters, line ends normalised."""
    return _UNSAFE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def cut(text: str, limit: int) -> str:
    """Plain text cut to ``limit`` characters at a word boundary when there is one, with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[: max(0, limit - 1)]
    space = head.rfind(" ")
    if space > limit // 2:
        head = head[:space]
    return _drop_joiners(head.rstrip()) + "…"


def _drop_joiners(text: str) -> str:
    """A cut must not leave a zero-width joiner or a variation selector dangling (half an emoji sequence)."""
    while text and (text[-1] in "\u200d\ufe0e\ufe0f" or unicodedata.category(text[-1]) == "Mn"):
        text = text[:-1]
    return text


#: Slack's bold and strike marks, which mrkdwn cannot escape, as look-alikes in plain text: a title's ``*`` ended
#: the hit's bold title early (``*1. C* guide*``), and two ``~`` struck out the words between them.
_MARKS = str.maketrans({"*": "\u2217", "~": "\u223c"})


def _plain(text: str, limit: int) -> str:
    return _fit_line(clean(text).replace("\n", " "), lambda t: _no_fence(escape(t)), limit) or ""


def mrkdwn_plain(text: str, limit: int) -> str:
    """Plain note text (a title, a heading, a question) as escaped mrkdwn within ``limit`` characters, its ``*``
    and ``~`` shown as ∗ and ∼ (they would be read as bold and strike marks)."""
    return _plain(text.translate(_MARKS), limit)


def code_plain(text: str, limit: int) -> str:
    """Plain note text (a path, a tag) as an inline code span, as written (a backtick inside would end it: shown
    as ˋ)."""
    return f"`{_plain(text.replace('`', 'ˋ'), limit)}`"


# -- inline Markdown ------------------------------------------------------------------------------------------------

#: A run of characters stops at the next ``[`` (``<`` in an autolink; a link's URL at the next ``](``, so that
#: ``?a[0]=1`` or ``http://[::1]/`` stay links) and is possessive (``{m,n}+``: what follows it is a character its
#: class excludes, so giving characters back can never make a match). So each ``[`` scans only to the next one, each
#: URL only to the next ``](``: a snippet of 10,000 ``[``, or of ``[x](`` repeated, took 1 s and 3.6 s (every ``[``
#: tried against up to 300 characters, or a URL's 2,000, and every way to give them back). A wiki-link's target
#: cannot hold ``[`` (Obsidian refuses it in a name); a link's label with brackets in it is shown from its inner ``[``.
_URL = r"(?:[^)\s\]]|\](?!\())"  # a URL's character: no ``)`` or space, and a ``]`` only when no ``(`` follows
_INLINE = re.compile(
    r"(?P<code>(?P<ticks>`{1,3})(?P<code_text>[^`\n]{1,500}?)(?P=ticks))"
    r"|(?P<image>!\[(?P<alt>[^\[\]\n]{0,300}+)\]\((?P<img_url>" + _URL + r"{1,2000}+)(?:\s+\"[^\"\n]{0,300}+\")?\))"
    r"|(?P<link>\[(?P<label>[^\[\]\n]{1,300}+)\]\((?P<url>" + _URL + r"{1,2000}+)(?:\s+\"[^\"\n]{0,300}+\")?\))"
    r"|(?P<wiki>\[\[(?P<target>[^\[\]|\n]{1,300}+)(?:\|(?P<alias>[^\[\]\n]{1,300}+))?\]\])"
    r"|(?P<auto><(?P<auto_url>(?:https?://|mailto:)[^<>\s]{1,2000}+)>)"
)
_EMPHASIS = re.compile(
    r"\*\*(?=\S)(?P<b1>[^\n]{1,500}?)(?<=\S)\*\*"
    r"|(?<![\w_])__(?=\S)(?P<b2>[^\n]{1,500}?)(?<=\S)__(?![\w_])"
    r"|~~(?=\S)(?P<s>[^\n~]{1,500}?)(?<=\S)~~"
    r"|(?<![\w*])\*(?=[^\s*])(?P<i1>[^\n*]{1,500}?)(?<=[^\s*])\*(?![\w*])"
    r"|(?<![\w_])_(?=[^\s_])(?P<i2>[^\n_]{1,500}?)(?<=[^\s_])_(?![\w_])"
)
_SAFE_URL = re.compile(r"(?:https?://[^\s/?#]+|mailto:)[^\s]*", re.IGNORECASE)


def _emphasis(escaped: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group("b1") is not None or m.group("b2") is not None:
            inner = m.group("b1") if m.group("b1") is not None else m.group("b2")
            return f"*{inner}*"
        if m.group("s") is not None:
            return f"~{m.group('s')}~"
        return f"_{m.group('i1') if m.group('i1') is not None else m.group('i2')}_"

    return _EMPHASIS.sub(sub, escaped)


def safe_url(url: str) -> str | None:
    """An http(s) or mailto URL made safe inside ``<…|…>``; anything else is None (shown as text)."""
    url = clean(url).strip()
    if not _SAFE_URL.fullmatch(url):
        return None
    return url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


def _label(text: str) -> str:
    return escape(text).replace("|", "¦")


def link(url: str, label: str) -> str:
    """``<url|label>`` when the URL is safe, else the label alone (escaped)."""
    target = safe_url(url)
    if target is None:
        return _label(label)
    return f"<{target}|{_label(label)}>" if label.strip() else f"<{target}>"


#: Obsidian's block id (``^b15695``, ``^my-block``) closing a line, or a line of its own: a link's anchor, never
#: text a reader is meant to see (a snippet ended "create a network of knowledge. ^b15695").
#: An id holds a letter: ``react ^18`` and ``2^10 is ^1024`` closing a line are text (walk37 dropped them).
_BLOCK_ID = re.compile(r"(?:^|[ \t]+)\^(?=[0-9-]*[A-Za-z])[A-Za-z0-9-]{1,64}[ \t]*$")
#: A ``**`` or ``~~`` the emphasis pass left without its pair, closing a word, or opening one on a line the snippet
#: cut (ending "…"): a snippet cut inside a bold run (``select **Disable…``), shown by Slack as the asterisks
#: themselves. An opening one on a whole line is text: ``pass **kwargs to the client`` (walk37 dropped it).
_UNPAIRED = re.compile(r"(?<=\S)(?:\*\*|~~)(?!\S)")
_UNPAIRED_OPENING = re.compile(r"(?<!\S)(?:\*\*|~~)(?=\S)")
#: Where a converted link, code span or wiki-link stands while bold and italics are read (characters ``clean``
#: drops from note text, so no note can hold them).
_HOLE = re.compile("\x00([0-9]+)\x01")


def inline(text: str) -> str:
    """One line of Markdown as mrkdwn: code spans, links, images (their alt text), wiki-links, bold, italics,
    strike-through; the rest escaped. Bold and italics are read over the whole line, links and code spans held in
    their place, so ``**[Manage](url)**`` is a bold link (read between the links, its ``**`` pairs were split:
    ``**<url|Manage>*``, and every later bold run of the line shifted by one); a ``**`` left without its pair is
    dropped, as is a closing block id."""
    text = _BLOCK_ID.sub("", text.replace("\x00", "").replace("\x01", ""))
    held: list[str] = []
    out: list[str] = []
    pos = 0
    for m in _INLINE.finditer(text):
        out.append(escape(text[pos : m.start()]))
        pos = m.end()
        if m.group("code") is not None:
            held.append(f"`{escape(m.group('code_text'))}`")
        elif m.group("image") is not None:
            held.append(escape(m.group("alt")) or "(image)")
        elif m.group("link") is not None:
            held.append(link(m.group("url"), m.group("label")))
        elif m.group("wiki") is not None:
            alias = m.group("alias")
            shown = alias if alias else m.group("target").split("#", 1)[0] or m.group("target")
            held.append(_label(shown))
        else:
            target = safe_url(m.group("auto_url"))
            held.append(f"<{target}>" if target else escape(m.group(0)))
        out.append(f"\x00{len(held) - 1}\x01")
    out.append(escape(text[pos:]))
    converted = _UNPAIRED.sub("", _emphasis("".join(out)))
    if text.rstrip().endswith("…"):  # the snippet's cut: a bold run it opened is cut off
        converted = _UNPAIRED_OPENING.sub("", converted)
    return _HOLE.sub(lambda m: held[int(m.group(1))], converted)


# -- block Markdown ---------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^[ \t]{0,3}(?P<fence>`{3,}|~{3,})")
#: An ATX heading: its text is the rest of the line without trailing spaces and ``#`` (stripped in Python: a lazy
#: ``(.*?)[ \t#]*$`` re-read the rest of the line at every character, 18 s for 40 KB of `` #``).
_HEADING = re.compile(r"^[ \t]{0,3}(#{1,6})[ \t]+(.*)$")
_BULLET = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+(?:\[(?P<task>[ xX])\][ \t]+)?(?P<rest>.*)$")
_NUMBERED = re.compile(r"^(?P<indent>[ \t]*)(?P<num>[0-9]{1,9})[.)][ \t]+(?P<rest>.*)$")
#: One or more quote marks (nested quotes, flattened: Slack quotes one level), read once: taking one level at a time
#: copied the rest of the line at each, 4 s for 80 KB of ``>``.
_QUOTE = re.compile(r"(?>[ \t]{0,3}>[ \t]?)+")
_CALLOUT = re.compile(r"^\[!(?P<kind>[A-Za-z-]{1,30})\][+-]?[ \t]*(?P<title>.*)$")
_TICKS = re.compile(r"`{3,}")
_RULE = re.compile(r"^[ \t]{0,3}([-*_])([ \t]*\1){2,}[ \t]*$")


def _no_fence(text: str) -> str:
    """Backtick runs of three or more inside text would open or close a Slack code block: break them."""
    return _TICKS.sub(lambda m: "\u200b".join(m.group(0)), text) if "```" in text else text


def _prose_line(line: str) -> str:
    return _no_fence(_prose(line))


def _code_line(line: str) -> str:
    return _no_fence(escape(line))


def _prose(line: str) -> str:
    """One line outside code: headings bold, bullets as •, tasks as ☐/☑, quotes (and callouts) as quotes."""
    if _RULE.match(line):
        return "───"
    heading = _HEADING.match(line)
    if heading:
        from kbsearch.markdown import heading_text  # (not at import: the Slack acknowledgement imports this module)

        text = heading_text(heading.group(2))
        return f"*{inline(text)}*" if text else ""
    quote_match = _QUOTE.match(line)
    if quote_match:
        rest = line[quote_match.end() :]  # Slack quotes one level: nested quotes are flattened
        callout = _CALLOUT.match(rest)
        if callout:
            title = callout.group("title")
            kind = callout.group("kind").capitalize()
            rest_text = f"*{escape(kind)}:* {inline(title)}" if title else f"*{escape(kind)}*"
            return ">" + rest_text
        return ">" + _prose(rest) if rest.strip() else ">"
    bullet = _BULLET.match(line)
    if bullet:
        depth = len(bullet.group("indent").expandtabs(4)) // 2
        mark = {None: "•" if depth == 0 else "◦", " ": "☐", "x": "☑", "X": "☑"}[bullet.group("task")]
        return "    " * min(depth, 4) + f"{mark} {inline(bullet.group('rest'))}"
    numbered = _NUMBERED.match(line)
    if numbered:
        depth = len(numbered.group("indent").expandtabs(4)) // 2
        return "    " * min(depth, 4) + f"{numbered.group('num')}. {inline(numbered.group('rest'))}"
    return inline(line.strip())


@dataclass
class _Code:
    lines: list[str] = field(default_factory=list)


def _units(markdown: str) -> list[str | _Code]:
    """Source lines of prose (str) and code blocks (their lines, fences dropped; an unclosed fence runs to the
    end of the text, as CommonMark reads it)."""
    units: list[str | _Code] = []
    code: _Code | None = None
    fence = ""
    blank = False
    for line in clean(markdown).split("\n"):
        opener = _FENCE.match(line)
        if code is not None:
            if opener and opener.group("fence")[0] == fence[0] and len(opener.group("fence")) >= len(fence):
                code = None
                rest = line.strip()[len(opener.group("fence")) :].strip()
                if rest:  # text after a closing fence (a snippet's "…"): prose
                    units.append(rest)
            else:
                code.lines.append(line.expandtabs(4).rstrip())
            continue
        if opener:
            fence = opener.group("fence")
            code = _Code()
            units.append(code)
            blank = False
            continue
        if not line.strip():
            if units and not blank:
                units.append("")
            blank = True
            continue
        blank = False
        units.append(line)
    while units and units[-1] == "":
        units.pop()
    return _tables(units)


_TABLE_ROW = re.compile(r"^[ \t]{0,3}\|.*\|[ \t]*$")
_TABLE_RULE = re.compile(r"^[ \t]*\|?(?:[ \t]*:?-+:?[ \t]*\|)+[ \t]*(?::?-+:?[ \t]*)?$")
_CELL_MARKUP = (  # the runs read as in _INLINE (linear: an 80 KB row of ``![x](`` took 2-3 s)
    (re.compile(r"!?\[([^\[\]\n]{0,300}+)\]\(" + _URL + r"{0,2000}+\)"), r"\1"),  # [text](url), ![alt](url) → the text
    (re.compile(r"\[\[[^\[\]|\n]{1,300}+\|([^\[\]\n]{1,300}+)\]\]"), r"\1"),  # [[note|alias]] → the alias
    (re.compile(r"\[\[([^\[\]\n]{1,300}+)\]\]"), r"\1"),
    (re.compile(r"\*\*|__|~~|`"), ""),
)
TABLE_CELL_CHARS = 40


def _cells(row: str) -> list[str]:
    """A table row's cells as plain text (links, wiki-links, emphasis and code marks dropped before the row is
    split, so an alias's ``|`` is not a column; an escaped ``\\|`` is shown as ¦)."""
    row = row.replace("\\|", "¦")
    for pattern, replacement in _CELL_MARKUP:
        row = pattern.sub(replacement, row)
    return [cut(c.strip(), TABLE_CELL_CHARS) for c in row.strip().strip("|").split("|")]


def _tables(units: list[str | _Code]) -> list[str | _Code]:
    """Runs of two or more Markdown table rows → a code block of aligned columns (Slack has no tables; in
    monospace with padded cells they read as one), the alignment row as a rule under the header."""
    out: list[str | _Code] = []
    run: list[str] = []

    def flush() -> None:
        if len(run) < 2:
            out.extend(run)
        else:
            rows = [_cells(r) for r in run if not _TABLE_RULE.match(r)]
            ruled = _TABLE_RULE.match(run[1]) is not None
            widths = [max((len(r[i]) for r in rows if i < len(r)), default=0) for i in range(max(map(len, rows)))]
            lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
            if ruled and lines:
                lines.insert(1, "  ".join("-" * w for w in widths))
            out.append(_Code(lines))
        run.clear()

    for unit in units:
        if isinstance(unit, str) and _TABLE_ROW.match(unit):
            run.append(unit)
            continue
        flush()
        out.append(unit)
    flush()
    return out


def _prefix(source: str, size: int, spans: list[tuple[int, int]]) -> str:
    """``source`` cut to ``size`` at a word boundary, moved back to the start of any inline construct (a link, a
    code span, a bold run) it would split, with "…"."""
    head = cut(source, size)[:-1]
    for start, end in spans:
        if start < len(head) < end and start > 0:
            head = source[:start].rstrip()
    return _drop_joiners(head) + "…"


def _fit_line(source: str, convert: Any, room: int) -> str | None:
    """The longest word-boundary prefix of ``source`` whose conversion plus "…" fits in ``room``; None if even a
    few characters do not."""
    spans = [m.span() for m in _INLINE.finditer(source)] + [m.span() for m in _EMPHASIS.finditer(source)]
    size = min(len(source), room)
    while size > 0:
        candidate = convert(_prefix(source, size, spans)) if size < len(source) else convert(source)
        if len(candidate) <= room:
            return candidate
        size = min(size - 1, int(size * room / max(1, len(candidate))))
    return None


def to_mrkdwn(markdown: str, limit: int) -> str:
    """Markdown as mrkdwn in at most ``limit`` characters. A cut falls at a line boundary (a too-long line at a
    word boundary, with "…"); a code block is whole or cut at a line boundary with its fence closed."""
    out: list[str] = []
    used = 0

    def room() -> int:
        return limit - used - (1 if out else 0)

    def add(piece: str) -> None:
        nonlocal used
        used += len(piece) + (1 if out else 0)
        out.append(piece)

    for unit in _units(markdown):
        if isinstance(unit, str):
            piece = _prose_line(unit) if unit else ""
            if len(piece) <= room():
                add(piece)
                continue
            partial = _fit_line(unit, _prose_line, room() - 1) if room() > 8 else None
            if partial is not None:
                add(partial if partial.endswith("…") else partial + "…")
            break
        while unit.lines and not unit.lines[-1].strip():
            unit.lines.pop()
        body = [_code_line(line) for line in unit.lines]
        whole = "```\n" + "\n".join(body) + "\n```" if body else "```\n```"
        if len(whole) <= room():
            add(whole)
            continue
        budget = room() - len("```\n") - len("\n…\n```")
        kept: list[str] = []
        size = 0
        for line in body:
            if size + len(line) + 1 > budget:
                if not kept and budget > 8:  # one huge line: cut inside it (at an entity boundary)
                    head = _fit_line(unit.lines[len(kept)], _code_line, budget - 1)
                    if head is not None:
                        kept.append(head)
                break
            kept.append(line)
            size += len(line) + 1
        if kept:
            add("```\n" + "\n".join(kept) + ("\n```" if kept[-1].endswith("…") else "\n…\n```"))
        break
    return "\n".join(out)


# -- links to notes -----------------------------------------------------------------------------------------------


def note_url(pattern: str, path: str) -> str | None:
    """A note's URL from ``KB_NOTE_URL_PATTERN``: ``{path}`` is the note path without ``.md``, ``{path_md}`` with
    it (both percent-encoded, ``/`` kept). None when there is no pattern or the result is not http(s)."""
    if not pattern:
        return None
    stem = path[:-3] if path.lower().endswith(".md") else path
    url = pattern.replace("{path_md}", quote(path, safe="/")).replace("{path}", quote(stem, safe="/"))
    if not re.match(r"https?://[^\s/?#]+", url) or len(url) > MAX_BUTTON_URL or any(c in url for c in " <>|\n"):
        return None
    return url


def url_pattern(kb_note_url_pattern: str, kb_base_url: str) -> str:
    """``KB_NOTE_URL_PATTERN``, else the older ``KB_BASE_URL`` (``<base>/<path with .md>``, as it always was)."""
    if kb_note_url_pattern:
        return kb_note_url_pattern
    return f"{kb_base_url.rstrip('/')}/{{path_md}}" if kb_base_url else ""


# -- the state a button carries -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerState:
    """What a button needs to redo or judge an answer: the question, its filters, the page shown, and (votes) the
    paths of the hits shown, in rank order."""

    query: str
    filters: Mapping[str, Any] = field(default_factory=dict)
    page: int = 0
    hits: tuple[str, ...] = ()

    def encode(self, with_hits: bool = False) -> str:
        data: dict[str, Any] = {"q": self.query, "p": self.page}
        if self.filters:
            data["f"] = dict(self.filters)
        if with_hits:
            data["h"] = list(self.hits)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)

    @classmethod
    def decode(cls, value: str) -> AnswerState:
        """Raises ValueError for anything that is not a state this module wrote."""
        if len(value) > MAX_BUTTON_VALUE:
            raise ValueError("button value too long")
        try:
            data = json.loads(value)
        except RecursionError:  # nested deeper than the parser recurses
            raise ValueError("button value nested too deep") from None
        if not isinstance(data, dict) or not isinstance(data.get("q"), str) or not data["q"].strip():
            raise ValueError("button value has no query")
        page = data.get("p", 0)
        filters = data.get("f", {})
        hits = data.get("h", [])
        if not isinstance(page, int) or isinstance(page, bool) or not 0 <= page < 20:
            raise ValueError("bad page")
        if not isinstance(filters, dict) or not isinstance(hits, list) or not all(isinstance(h, str) for h in hits):
            raise ValueError("bad filters or hits")
        return cls(data["q"], filters, page, tuple(hits))


# -- answers ----------------------------------------------------------------------------------------------------


def _button(text: str, action_id: str, value: str | None = None, url: str | None = None,
            style: str | None = None) -> dict[str, Any]:  # fmt: skip
    button: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": text[:MAX_BUTTON_TEXT],
                                                         "emoji": True}, "action_id": action_id[:MAX_ACTION_ID]}  # fmt: skip
    if value is not None:
        button["value"] = value
    if url is not None:
        button["url"] = url
    if style is not None:
        button["style"] = style
    return button


def _context(*texts: str) -> dict[str, Any]:
    elements = [{"type": "mrkdwn", "text": t[:MAX_CONTEXT_TEXT]} for t in texts if t][:MAX_CONTEXT_ELEMENTS]
    return {"type": "context", "elements": elements}


def describe_filters(filters: Mapping[str, Any], language: str = "en") -> str:
    """The filters in words, mrkdwn-escaped: ``tag runbook · type decision · in ru/ранбуки · after 2026-01-01``
    (Russian: ``тег runbook · … · в папке ru/ранбуки · после 2026-01-01``)."""
    parts = []
    for key, word in (("tags", "tag"), ("type", "type"), ("status", "status")):
        values = filters.get(key) or []
        if values:
            parts.append(f"{say(language, word)} " + ", ".join(code_plain(str(v), 60) for v in values[:10]))
    if filters.get("path_prefix"):
        parts.append(f"{say(language, 'in')} {code_plain(str(filters['path_prefix']), 120)}")
    if filters.get("updated_after"):
        parts.append(f"{say(language, 'after')} {mrkdwn_plain(str(filters['updated_after']), 32)}")
    return " · ".join(parts)


def _hit_blocks(hit: Hit, pattern: str, snippet_room: int, language: str = "en") -> list[dict[str, Any]]:
    url = note_url(pattern, hit.path)
    title = mrkdwn_plain(hit.title or hit.path, 200)
    head = f"*{hit.rank}. <{url.replace('&', '&amp;')}|{title.replace('|', '¦')}>*" if url else f"*{hit.rank}. {title}*"
    body = to_mrkdwn(hit.snippet, max(0, min(snippet_room, MAX_SECTION_CHARS - len(head) - 1)))
    section: dict[str, Any] = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": head + ("\n" + body if body else "")},
    }
    if url:
        section["accessory"] = _button(say(language, "open"), f"{ACTION_OPEN}_{hit.rank}", url=url)
    heading = hit.heading
    if heading.startswith(hit.title + " > "):
        heading = heading[len(hit.title) + 3 :]
    elif heading == hit.title:
        heading = ""
    facts = []
    if heading:
        facts.append("§ " + mrkdwn_plain(heading.replace(" > ", " › "), 300))
    if hit.type:
        facts.append(mrkdwn_plain(hit.type, 60))
    if hit.status and hit.status not in ("active", "published"):
        facts.append(mrkdwn_plain(hit.status, 60))
    if hit.tags:
        facts.append(" ".join(code_plain(t, 40) for t in hit.tags[:6]))
    if hit.updated:
        facts.append(say(language, "updated", date=mrkdwn_plain(hit.updated, 32)))
    if not url:
        facts.append(code_plain(hit.path, 300))
    return [section, _context(*facts)]


def _text_size(blocks: list[dict[str, Any]]) -> int:
    total = 0
    for block in blocks:
        total += len(block.get("text", {}).get("text", ""))
        total += sum(len(e.get("text", "")) for e in block.get("elements", []) if isinstance(e.get("text"), str))
    return total


@dataclass(frozen=True)
class View:
    """How to show one answer: shared or private, which page, who asked (shares), links, buttons."""

    share: bool = False
    page: int = 0
    per_page: int = 5
    max_results: int = 20  # the search's top_k ceiling: no "More" past it
    url_pattern: str = ""
    asked_by: str = ""  # a Slack user id; shared answers say "asked by <@U…>"
    filters: Mapping[str, Any] = field(default_factory=dict)
    buttons: bool = True
    language: str = "en"  # kb-search's own words: the question's language (:func:`kbsearch.slack_words.language_of`)
    command: str = "/kb"  # the slash command the tips name (the app's, ``SLACK_COMMANDS``)

    @property
    def top_k(self) -> int:
        """What to ask the search for: every page up to this one, plus one hit to know whether there is more."""
        return max(1, min(self.max_results, (self.page + 1) * self.per_page + 1))


def _took(ms: float, language: str = "en") -> str:
    """How long a search took, for the footer: under a second in milliseconds (a BM25 search of 40 ms was shown
    "0.0 s", which reads as no time measured), else seconds with one decimal."""
    return say(language, "ms", n=f"{ms:.0f}") if ms < 999.5 else say(language, "s", n=f"{ms / 1000:.1f}")


def render_answer(answer: SearchResponse, view: View, unheld: Sequence[str] = ()) -> dict[str, Any]:
    """Block Kit for ``response_url``: a header, a section and a context per hit (title as a link or bold, the
    snippet in mrkdwn, an Open button; heading path, type, tags, path), a footer in words, and the buttons
    (private answers): Share in channel, More results, 👍, 👎. Within every limit of Block Kit for any note.
    ``unheld``: with no hits, each filter value no note holds, as a sentence, said before the tips. kb-search's own
    words are said in ``view.language``; the notes' titles, snippets, tags and paths as they are."""
    lang = view.language
    response_type = "in_channel" if view.share else "ephemeral"
    start = view.page * view.per_page
    hits = answer.results[start : start + view.per_page]
    query_plain = cut(clean(answer.query).replace("\n", " "), MAX_HEADER_CHARS - 20)
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"🔎 {query_plain}"[:MAX_HEADER_CHARS], "emoji": True},
        }
    ]
    intro = []
    if view.share and hits and _USER_ID.fullmatch(view.asked_by):  # no hits: told to the asker alone
        intro.append(say(lang, "asked_by", user=f"<@{view.asked_by}>"))
    if view.filters:
        intro.append(say(lang, "filters", filters=describe_filters(view.filters, lang)))
    if intro:
        blocks.append(_context(*intro))
    if not hits:
        # a share of nothing is told to the asker alone: it posted "No notes found ... Try fewer or other words" (tips
        # for the asker) to the whole channel (walk34)
        found = say(lang, "no_hits_page" if view.page else "no_hits", query=mrkdwn_plain(answer.query, 200))
        said = "".join(f"{mrkdwn_plain(line, 400)} " for line in unheld[:5])
        # searched with the channel's scope: the asker's own /kb may find notes the channel may not read (rev34b)
        unshared = f" {say(lang, 'unshared')}" if view.share else ""
        text = f"{found}{unshared} {said}{say(lang, 'tips', command=view.command)}"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        return {"response_type": "ephemeral", "replace_original": False, "text": text, "blocks": blocks}

    footer_room = 1500  # footer context + buttons
    room = MAX_MESSAGE_CHARS - _text_size(blocks) - footer_room
    per_hit = max(200, min(SNIPPET_BUDGET, room // max(1, len(hits)) - 600))
    shown: list[Hit] = []
    for hit in hits:
        if len(blocks) + 2 > MAX_BLOCKS - 3:
            break
        hit_blocks = _hit_blocks(hit, view.url_pattern, per_hit, lang)
        if _text_size(blocks) + _text_size(hit_blocks) > MAX_MESSAGE_CHARS - footer_room:
            break
        blocks.extend(hit_blocks)
        blocks.append({"type": "divider"})
        shown.append(hit)
    blocks.pop()  # the last divider

    first, last = start + 1, start + len(shown)
    counted = say(lang, "result", first=first) if first == last else say(lang, "results", first=first, last=last)
    footer = [f"{counted} · {_took(answer.meta.timings_ms.get('total', 0.0), lang)}"]
    if answer.meta.degraded:
        footer.append("⚠️ " + escape(degraded(lang, answer.meta.degraded)))
    blocks.append(_context(*footer))

    state = AnswerState(answer.query, dict(view.filters), view.page, tuple(h.path for h in shown))
    if view.buttons and not view.share:
        plain, voted = state.encode(), state.encode(with_hits=True)
        if len(voted) > MAX_BUTTON_VALUE:
            voted = plain  # the hits are found again when the vote arrives
        if len(plain) <= MAX_BUTTON_VALUE:
            elements = [_button(say(lang, "share"), ACTION_SHARE, plain, style="primary")]
            if len(answer.results) > start + view.per_page:  # the search asks for one more than it shows
                more = AnswerState(answer.query, dict(view.filters), view.page + 1).encode()
                elements.append(_button(say(lang, "more"), ACTION_MORE, more))
            elements += [
                _button(say(lang, "helpful"), ACTION_UP, voted),
                _button(say(lang, "not_helpful"), ACTION_DOWN, voted),
            ]
            blocks.append({"type": "actions", "block_id": answer_block_id(lang), "elements": elements})
        else:
            blocks.append(_context(say(lang, "too_long")))
    fallback = notes_found(lang, len(shown), mrkdwn_plain(answer.query, 200))
    return {"response_type": response_type, "replace_original": False, "text": fallback, "blocks": blocks}
