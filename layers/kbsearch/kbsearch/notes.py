"""A markdown note (YAML frontmatter, Obsidian wiki-links) → metadata, sections with heading paths, links.

Parsing never raises anything but :class:`NoteError`, whose ``reason`` says why the note was skipped.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

from kbsearch.errors import KbSearchError
from kbsearch.frontmatter import MAX_FRONTMATTER_CHARS, FrontmatterError, iso_date, parse_frontmatter
from kbsearch.lexical import MAX_TAG_KEY_CHARS, TAG_BREAK, bare_tag, tag_key, visible
from kbsearch.links import MAX_KEYS
from kbsearch.markdown import (
    CODE,
    COMMENT,
    HEADING,
    HIDDEN,
    MATH,
    UNDERLINE,
    BodyLine,
    code_spans,
    read_body,
    unquoted,
)

#: A note's distinct link targets kept (the first ones; its text still shows every link): a note of 80,000
#: distinct ``[[links]]`` took 25 s to parse (each checked against every one before it) and, its list carried by
#: each of its 571 chunks, 3 minutes and 14.9 GB to index.
MAX_LINKS = MAX_KEYS
#: A note's tags kept (the first ones; a search hit shows at most this many).
MAX_TAGS = 100
#: A heading (or title) as the heading path of its chunks carries it: every chunk of the section repeats its path,
#: stored and embedded, so a 549 KB heading over a 1 MB note's 388 chunks made a 1.3 GB index (6.4 GB of memory,
#: 77 s). A longer heading is cut in the path; its whole text opens its section, indexed once.
MAX_HEADING_CHARS = 1000


def cut_heading(text: str) -> str:
    return text if len(text) <= MAX_HEADING_CHARS else text[: MAX_HEADING_CHARS - 1].rstrip() + "…"


MAX_NOTE_BYTES = 1024 * 1024

KNOWN_KEYS = (
    "id", "title", "status", "source", "tags", "type", "summary", "ai_weight", "created", "updated",
    "aliases", "description", "permalink",
)  # fmt: skip
#: Fields whose values are text to every reader (Obsidian shows them as written, YAML 1.2): read as written, never
#: typed by YAML 1.1's rules (a tag `no` was indexed as `False`, `on` as `True`, `010` as `8`, `12:30` as `750`;
#: a filter for the tag as written missed the note). ``created``/``updated`` stay dates, ``ai_weight`` a number.
TEXT_FIELDS = frozenset({"id", "title", "status", "source", "tags", "type", "summary", "aliases", "description",
                         "permalink"})  # fmt: skip
#: Fields naming groups: ``access: [no, on, 0777]`` names the groups ``no``, ``on`` and ``0777`` (YAML 1.1 made them
#: false, true and 511, and the note was skipped as declaring no group name; a date-time was rewritten as its ISO
#: form, a group nobody wrote); a bare switch word (``access: no``) is refused with its reason (see
#: :func:`kbsearch.frontmatter.parse_frontmatter`).
NAME_FIELDS = frozenset({"access"})

_FRONTMATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)(?:\r?\n)?^(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S | re.M)
_OPENING = re.compile(r"---[ \t]*(?:\n|\Z)")  # a frontmatter block's first line (text as decode_note gives it)
#: What Python's ``splitlines`` and YAML 1.1 take for a line break but Markdown readers do not (VT, FF, the
#: information separators, NEL, LS, PS): a ``---`` they end opens no frontmatter.
_OTHER_BREAKS = re.compile("[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_LINE_KEYS = re.compile(r"^[ \t]*([^\s:#][^:\n]{0,80}):", re.M)
_DASHES_LINE = re.compile(r"^---[ \t]*$", re.M)
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
              (b"\xfe\xff", "UTF-16"))  # fmt: skip
_WIKILINK = re.compile(r"(!?)\[\[([^\[\]\n]+?)\]\]")
#: A Markdown link, ``[text](target)`` or ``[text](<target with spaces>)``, maybe with a title in ``"``, ``'`` or
#: parentheses (an image's ``![`` is no link to a note). A target may hold balanced parentheses, one level
#: (``Meeting%20(2024).md``: Obsidian writes a note named with them so, and CommonMark reads it as one target; it
#: was no link). Possessive and bracket-free, so a line of brackets or parentheses is read in linear time.
_MD_LINK = re.compile(
    r"(?<!!)\[[^\[\]\n]*+\]\((?:<([^<>\n]++)>|((?:[^\s()<>\[\]]|\([^\s()<>\[\]]*+\))++))"
    r"(?:[ \t]+(?:\"[^\"\n]*+\"|'[^'\n]*+'|\([^()\n]*+\)))?\)"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_OTHER_FILE = re.compile(r"\.[A-Za-z0-9]{1,8}$")


class NoteError(KbSearchError):
    """The note cannot be indexed; ``reason`` is short and safe to report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Section:
    headings: tuple[str, ...]  # heading texts from the outermost down (the note title not included)
    text: str


@dataclass
class Note:
    path: str
    title: str
    doc_id: str
    metadata: dict[str, Any]
    tags: list[str]
    type: str | None
    status: str | None
    summary: str | None
    ai_weight: float | None
    created: str | None
    updated: str | None
    links: list[str]
    sections: list[Section] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # fields dropped or not understood; the note is indexed


def _json_safe(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def normalize_tags(value: Any) -> list[str]:
    """Tags from a string (comma/space separated), a list, or ``#tag`` forms → unique strings, in order. A list or
    a mapping where a tag is (``tags: [[a, b]]``, ``tags: {ops: 1}``) is none (see :func:`_not_text`)."""
    items: list[Any]
    if value is None or isinstance(value, dict):
        items = []
    elif isinstance(value, str):
        items = TAG_BREAK.split(value)
    elif isinstance(value, list | tuple | set):
        items = [p for v in value if v is not None and not isinstance(v, list | tuple | set | dict)
                 for p in (TAG_BREAK.split(v) if isinstance(v, str) else [v])]  # fmt: skip
    else:
        items = [value]
    out: dict[str, None] = {}  # an ordered set: a list's ``in`` made 12,700 tags (64 KiB) a quadratic 0.6 s
    for item in items:
        tag = bare_tag(str(_json_safe(item)))
        if tag:
            out[tag] = None
    return list(out)


#: A tag written in a note's text, as Obsidian reads one (the vault's ``Editing and formatting/Tags.md``): ``#`` at
#: a line's start or after a space, then letters, digits, ``_``, ``-``, ``/`` and other characters that are no
#: ASCII punctuation, no space and no Unicode punctuation of the General/Supplemental Punctuation and CJK Symbols
#: blocks (emoji are tags' too). Not after another character: a URL's ``#fragment``, ``[[Note#Heading]]``, ``&#123;``,
#: ``C#``; not ``# Heading`` (a space after the ``#``). Possessive: linear in the line.
_BODY_TAG = re.compile(r"(?<!\S)#([^\s!-,.:-@\[-\^`{-~\u2000-\u206f\u2e00-\u2e7f\u3000-\u303f]++)")

_INLINE_COMMENT = re.compile(r"<!--.*?(?:-->|$)")


def body_tags(body: str) -> list[str]:
    """The tags written in a note's text (``#ops``, ``#inbox/to-read``), in order, unique, as written: what
    Obsidian counts as the note's tags besides its ``tags`` property. Not in code (a fenced block, one in a quote or
    callout too, an indented block, a code span), a ``$$`` math block, an HTML comment or an Obsidian
    ``%%comment%%`` (no reader sees a tag there: :func:`kbsearch.markdown.read_body`), and not a tag of digits alone
    (``#1984``: Obsidian's rule, at least one character that is no digit)."""
    return _tags_of(read_body(body)) if "#" in body else []


_SKIPPED_BY_TAGS = frozenset({CODE, MATH, COMMENT, HIDDEN, UNDERLINE})


def _tags_of(read: list[BodyLine]) -> list[str]:
    """:func:`body_tags` of a body :func:`~kbsearch.markdown.read_body` has read."""
    out: dict[str, None] = {}
    for kind, shown, _, _ in read:
        if kind in _SKIPPED_BY_TAGS or "#" not in shown:
            continue
        line = unquoted(shown)[0]
        spans = code_spans(line)
        if spans:  # each code span one backtick (a tag neither in it nor glued to it), the line rebuilt once (a
            # span at a time copied the line: 50,000 spans on an 800 KB line, 3.9 s)
            ends = [0, *(end for _, end in spans)]
            line = "`".join(line[ends[i] : start] for i, (start, _) in enumerate(spans)) + "`" + line[ends[-1] :]
        if "<!--" in line:
            line = _INLINE_COMMENT.sub(" ", line)
        for m in _BODY_TAG.finditer(line):
            tag = m.group(1).rstrip("/")
            if tag and not tag.replace("/", "").isdecimal():
                out[visible(tag)] = None
    return list(out)


def _bounded_tags(value: Any, warnings: list[str], written: list[str]) -> list[str]:
    """The note's tags, its ``tags`` property's (as written) then those written in its text (:func:`body_tags`) that
    are none of them whatever the case (``#TAG`` after ``#Tag`` or ``tags: [tag]`` is that one) and at most
    :data:`~kbsearch.lexical.MAX_TAG_KEY_CHARS` long (with a warning for longer ones), the first :data:`MAX_TAGS`
    (with a warning when there are more): every chunk of the note stores them and every search hit of it carries them (12,700 tags on each of 517 chunks: 2.5 GB to index one
    938 KB note, a 158 MB index, 76 KB of tags per chunk read back by each search it matched)."""
    tags = normalize_tags(value)
    known = {tag_key(t) for t in tags}
    long = 0
    for tag in written:  # the text's (:func:`body_tags`): each tag once, as first written (Obsidian shows a tag so)
        if len(tag) > MAX_TAG_KEY_CHARS:  # a run of letters after a '#', no tag a reader writes: every chunk of the
            # note would carry it (a 600 KB one on each of 884 chunks: 530 MB of payload, RELIABILITY.md "Round 31
            # review"); the property's tags are bounded by the front matter's size
            long += 1
            continue
        key = tag_key(tag)
        if key not in known:
            known.add(key)
            tags.append(tag)
    if long:
        warnings.append(f"tags: {long} written in the text over {MAX_TAG_KEY_CHARS} characters not kept")
    if len(tags) > MAX_TAGS:
        warnings.append(f"tags: {len(tags)} given, the first {MAX_TAGS} kept")
    return tags[:MAX_TAGS]


#: The fields read as one text each: a list or a mapping there is no text (see :func:`_not_text`).
ONE_TEXT_FIELDS = ("id", "title", "type", "status", "summary", "description")


def _not_text(meta: dict[str, Any]) -> list[str]:
    """Warnings for the fields read as one text (and the items of ``tags`` and ``aliases``, each a text) that hold
    a list or a mapping instead (``title: [Restore, Rollback]``, ``id:`` over a ``- KB-1`` line, ``type: {a: 1}``,
    ``tags: [[a, b]]``, as Obsidian's property editor writes a property made a list): they are not used (an alias
    that is no text never was: now it is said). Read as text, each was its Python spelling (``['Restore', 'Rollback']``: the title of every hit and heading path, an id, a type or a tag no
    filter can name, ``{'a': '1'}``)."""
    warnings = [f"frontmatter field {key!r} not used: {_kind(meta[key])} where one text is read "
                f"(write {key}: <text>)" for key in ONE_TEXT_FIELDS if isinstance(meta.get(key), list | dict)]  # fmt: skip
    for key, one in (("tags", "tag"), ("aliases", "alias")):  # lists of texts: a list or mapping in one is none
        value = meta.get(key)
        if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, list | dict) for v in value)):
            inner = value if isinstance(value, dict) else next(v for v in value if isinstance(v, list | dict))
            warnings.append(f"frontmatter field {key!r}: {_kind(inner)} is no {one}, left out (write {key}: [a, b])")
    return warnings


def _kind(value: Any) -> str:
    return "a list" if isinstance(value, list) else "a mapping"


def _text_or_none(value: Any) -> str | None:
    """One text field's value as text; None when unset or when it is a list or a mapping (no one text)."""
    if value is None or isinstance(value, list | dict):
        return None
    text = str(_json_safe(value)).strip()
    return text or None


def note_id(meta: dict[str, Any]) -> str | None:
    """A note's front-matter ``id`` as text, from :func:`read_frontmatter`'s metadata or a first chunk's ``meta``."""
    return _text_or_none(meta.get("id"))


def note_summary(meta: dict[str, Any]) -> str | None:
    """A note's summary, from its frontmatter (``summary``, else ``description``) as :func:`read_frontmatter` gives
    it, or as a first chunk's payload keeps it (``meta``: the indexer rebuilds that chunk's text from it)."""
    return _text_or_none(meta.get("summary")) or _text_or_none(meta.get("description"))


def _facet_or_none(value: Any) -> str | None:
    """A ``type`` or ``status``: text in NFC without what no reader sees (a zero-width space, a soft hyphen), the
    form search filters compare with."""
    text = _text_or_none(value)
    return None if text is None else (visible(text).strip() or None)


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def link_parts(inner: str) -> tuple[str, str, str]:
    """``target#heading|alias`` → (the linked note's name, the heading, the alias), each stripped. In a table the
    pipe is written ``\\|`` (a bare one ends the cell), as Obsidian writes it: the same link (the backslash ended
    the note's name, a note no link could resolve to; no note name holds a backslash in Obsidian). A name copied
    with its brackets (``[[Note#Steps]]``, ``![[Note]]``) is read inside them."""
    text = inner.strip()
    if text.endswith("]]") and text.startswith(("[[", "![[")):
        text = text[text.index("[[") + 2 : -2]
    target, _, alias = text.replace("\\|", "|").partition("|")
    note, _, fragment = target.partition("#")
    return note.strip(), fragment.strip(), alias.strip()


def _link_display(inner: str) -> tuple[str, str]:
    """``target#heading|alias`` → (what a reader sees, the linked note's name) (:func:`link_parts`)."""
    note, fragment, alias = link_parts(inner)
    if alias:
        return alias, note
    if fragment and not fragment.startswith("^"):
        return (f"{note} > {fragment}" if note else fragment), note
    return note or fragment.lstrip("^"), note


class LinkSet(dict[str, None]):
    """A note's link targets: an ordered set of at most :data:`MAX_LINKS`; ``more`` when the note names others
    past them (a note read by path says its link list was cut). ``folder``: the linking note's folder, which a
    Markdown link's relative path (``../ops/Note.md``) starts from."""

    more = False

    def __init__(self, folder: str = "") -> None:
        super().__init__()
        self.folder = folder

    def add(self, note: str) -> None:
        if note and len(self) < MAX_LINKS:
            self.setdefault(note, None)
        elif note and note not in self:
            self.more = True


def markdown_link_note(target: str, folder: str) -> str | None:
    """The note a Markdown link's target names (``Note.md``, ``ops/Note%20name.md#Heading``, ``../ops/Note.md``
    relative to ``folder``, ``Note`` without its extension), as a wiki-link's note part names it; None for a URL
    (any scheme, ``//host``), a file of another kind, a heading of the same note (``#x``) or a path out of the KB.
    Obsidian writes links so when "Use [[Wikilinks]]" is off."""
    if _SCHEME.match(target) or target.startswith("//"):
        return None
    note = unquote(target.partition("#")[0]).strip()
    if not note:
        return None
    if not note.lower().endswith(".md") and _OTHER_FILE.search(note):
        return None  # a file of another kind (``index.html``, ``report.pdf``); ``Note`` alone is a note's name
    return relative_note(note, folder)


def relative_note(note: str, folder: str) -> str | None:
    """A link's note part as a path from the KB's root: ``../ops/Note`` and ``./Note`` relative to ``folder`` (the
    linking note's), as Obsidian writes links under "New link format: Relative path to file", a Markdown link's or a
    wiki-link's alike; None for a path out of the KB or one naming a folder (``./``, ``../``, ``..``: no note, where
    the folder's name read as a note's named ``pub.md`` or a note titled ``pub``: rev37d); any other name as written
    (a name, or a path from the root). A relative path is given from the root with a leading ``/``
    (``/ops/Note``): its link names the note at that whole path or none, never a namesake in another folder, as
    Obsidian leaves it unresolved (adv38; its key: :func:`kbsearch.links.link_key`). A path whose last part is
    empty, ``.`` or ``..`` names a folder whatever its start (``[[ops/]]``, ``[[/ops/]]``, ``[Runbooks](runbooks/)``,
    a folder's index page as a wiki exported from Git or MkDocs links it; ``[x](ops/.)``): no note, where it was read
    as the note named ``ops`` (adv39)."""
    if note.rpartition("/")[2] in ("", ".", ".."):
        return None
    if not note.startswith(("./", "../")):
        return note
    segments = note.split("/")
    if segments[-1] in ("", ".", ".."):
        return None  # a folder
    parts = folder.split("/") if folder else []
    for segment in segments:
        if segment == "..":
            if not parts:
                return None  # out of the KB
            parts.pop()
        elif segment not in ("", "."):
            parts.append(segment)
    return "/" + "/".join(parts)  # from the root: only the note at this whole path (kbsearch.links.link_key)


def _render_links(line: str, links: LinkSet) -> str:
    """Wiki-links and embeds in one line of prose → their display text; their targets and those of Markdown links
    to notes (left as written) are added to ``links``."""

    def repl(m: re.Match[str]) -> str:
        shown, note = _link_display(m.group(2))
        links.add(relative_note(note, links.folder) or "")
        return shown

    def prose(text: str) -> str:
        if "](" in text:
            for m in _MD_LINK.finditer(text):
                note = markdown_link_note(m.group(1) or m.group(2), links.folder)
                if note:
                    links.add(note)
        return _WIKILINK.sub(repl, text)

    parts: list[str] = []
    pos = 0
    for start, end in code_spans(line):  # `[[x]]` inside inline code stays as written
        parts.append(prose(line[pos:start]))
        parts.append(line[start:end])
        pos = end
    parts.append(prose(line[pos:]))
    return "".join(parts)


_WIDE = (("utf-32-le", "UTF-32"), ("utf-32-be", "UTF-32"), ("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"))


def _wide_without_mark(raw: bytes) -> str | None:
    """``UTF-16`` or ``UTF-32`` when ``raw`` (holding NUL bytes) is text in one of them saved without a byte-order
    mark (its NULs the high bytes of its ASCII characters: ``iconv -t UTF-16LE``, .NET without a preamble, export
    tools), else None: decoded strictly, it holds no NUL, at least a tenth of it ASCII (the spaces, line breaks and
    marks of any note but one in Chinese or Japanese, which stays "binary content") and all but one in a hundred of
    its characters printable or white space. Bytes that are no text fail one or another (a pair of NULs decodes to
    U+0000; pairs of ASCII bytes to CJK ideographs); fewer than 16 characters are too few to tell."""
    for encoding, name in _WIDE:
        if len(raw) % (4 if name == "UTF-32" else 2):
            continue
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if len(text) < 16 or "\x00" in text or sum(c < "\x80" for c in text) * 10 < len(text):
            continue  # too short to tell, or not the few ASCII characters (spaces, line breaks, marks) text holds
        if sum(not (c.isprintable() or c.isspace()) for c in text) <= len(text) // 100:
            return name
    return None


def decode_note(raw: bytes, max_bytes: int = MAX_NOTE_BYTES) -> str:
    if len(raw) > max_bytes:
        raise NoteError(f"too large: {len(raw)} bytes (limit {max_bytes})")
    for bom, encoding in _WIDE_BOMS:  # UTF-32's marks first: UTF-32-LE's starts with UTF-16-LE's
        if raw.startswith(bom):
            raise NoteError(f"{encoding} text, not UTF-8 (save the note as UTF-8)")
    if b"\x00" in raw:
        wide = _wide_without_mark(raw)
        raise NoteError(f"{wide} text without a byte-order mark, not UTF-8 (save the note as UTF-8)" if wide
                        else "binary content (NUL bytes)")  # fmt: skip
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # the line an editor shows, and what to do: a note in Windows-1251 or KOI8-R (a Russian KB's older files) was
        # "not UTF-8 (invalid byte at offset 2)", and no more
        line = raw.count(b"\n", 0, exc.start) + 1
        raise NoteError(
            f"not UTF-8 (invalid byte at offset {exc.start}, line {line}): save the note as UTF-8 "
            "(Windows-1251, KOI8-R or Latin-1 are not read)"
        ) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise NoteError("empty note")
    return text


def note_head(raw: bytes) -> bytes:
    """The start of ``raw`` that :func:`read_frontmatter` reads of a note (its frontmatter, bounded to
    ``MAX_FRONTMATTER_CHARS``, and as much again after it, each character at most 4 bytes of UTF-8), cut where a
    character starts: what a note too large to decode whole declares (its ``access``) is read from it."""
    end = min(len(raw), (3 * MAX_FRONTMATTER_CHARS + 2048) * 4)
    while 0 < end < len(raw) and raw[end] & 0xC0 == 0x80:  # (a continuation byte: the character started before)
        end -= 1
    return raw[:end]


def read_frontmatter(text: str) -> tuple[dict[str, Any], str, list[str]]:
    """Decoded note text → (JSON-safe frontmatter, body, warnings); :class:`NoteError` when the frontmatter is
    unusable (see :mod:`kbsearch.frontmatter`: linear time, no alias expansion, size and depth limits)."""
    m = _FRONTMATTER.match(text)
    if m is None:
        if _OPENING.match(text):  # what follows may be metadata (``access`` among it): never read it as prose
            raise NoteError("frontmatter is not closed: the first line is '---' and no later line is '---' or '...'")
        _refuse_hidden_opening(text)
        return {}, text, []
    try:
        front = parse_frontmatter(m.group(1), TEXT_FIELDS, NAME_FIELDS)
    except FrontmatterError as exc:
        raise NoteError(exc.reason) from None
    if m.group(0).rstrip().endswith("..."):
        _refuse_access_after_dots(text[m.end() :])
    return front.data, text[m.end() :], front.warnings


def _refuse_access_after_dots(body: str) -> None:
    """:class:`NoteError` when a frontmatter closed by YAML's ``...`` is followed, before the next ``---`` line (or
    within a frontmatter's size, with none), by a line declaring ``access``: Obsidian closes a frontmatter only at
    ``---``, so its author sees that line among the note's properties (or the block unclosed), while it was prose
    here (the note indexed public)."""
    end = _DASHES_LINE.search(body, 0, MAX_FRONTMATTER_CHARS)  # none: Obsidian finds the frontmatter unclosed
    from kbsearch.access import declares_access

    if declares_access(_LINE_KEYS.findall(body, 0, end.start() if end else MAX_FRONTMATTER_CHARS)):
        raise NoteError("the frontmatter closes at '...' and a line after it, before the next '---', declares "
                        "access: Obsidian reads that line as frontmatter (it closes only at '---'); close the "
                        "frontmatter with '---'")  # fmt: skip


def _refuse_hidden_opening(text: str) -> None:
    """:class:`NoteError` when the first line reads ``---`` but for what a reader cannot see before it or after it
    (a second byte-order mark, a zero-width or no-break space, a space or tab, a soft hyphen) and the block it opens
    declares ``access`` (its spelling or a look-alike): that block is prose to every reader, so the note declared
    nothing and went public. Blank lines before ``---`` stay prose, as Obsidian reads them."""
    first, newline, rest = text.partition("\n")
    _refuse_other_breaks(text, first)
    if not newline or len(first) > 200 or first.rstrip("\r") == "---":
        return
    shown = "".join(c for c in first if not c.isspace() and unicodedata.category(c) not in ("Cf", "Zs"))
    block = _FRONTMATTER.match("---\n" + rest) if shown == "---" else None
    if block is None:
        return
    from kbsearch.access import declares_access

    try:
        keys = parse_frontmatter(block.group(1)).data.keys()
    except FrontmatterError:
        return
    if declares_access(keys):
        raise NoteError(f"the first line is {first.rstrip(chr(13))!a}, not '---': the frontmatter after it declares "
                        "access but no reader reads it (remove what precedes '---')")  # fmt: skip


def _refuse_other_breaks(text: str, first: str) -> None:
    """:class:`NoteError` when the first line reads ``---`` up to a line break no Markdown reader breaks lines at
    (U+2028, NEL, a form feed, ...: pasted from a word processor) and the block it opens, read with those as line
    breaks, declares ``access``: no reader takes it for frontmatter, so the note declared nothing and went public."""
    opening = _OTHER_BREAKS.search(first, 0, 200)
    if opening is None or first[: opening.start()].strip(" \t") != "---":
        return
    from kbsearch.access import declares_access

    seen = _OTHER_BREAKS.sub("\n", text[: MAX_FRONTMATTER_CHARS + 1024])
    block = _FRONTMATTER.match(seen)
    try:  # a block never closed: the keys its lines start with (an unclosed frontmatter is never prose either)
        keys = parse_frontmatter(block.group(1)).data.keys() if block else _LINE_KEYS.findall(seen)
    except FrontmatterError:
        return
    if declares_access(keys):
        raise NoteError(f"the first line '---' ends with {opening.group()!a}, not a line break: the frontmatter "
                        "after it declares access but no reader reads it (save the note with ordinary line breaks)")  # fmt: skip


def split_frontmatter(text: str) -> tuple[dict[str, Any], str]:
    meta, body, _ = read_frontmatter(text)
    return meta, body


def _date_or_none(meta: dict[str, Any], key: str, warnings: list[str]) -> str | None:
    value = meta.get(key)
    if value is None or value == "":
        return None
    when = iso_date(value)
    if when is None:
        shown = str(value) if len(str(value)) <= 40 else str(value)[:37] + "..."
        warnings.append(f"frontmatter field {key!r} dropped: {shown!r} is not an ISO date or date-time")
    return when


def _sections(read: list[BodyLine], links: LinkSet) -> tuple[list[Section], str | None, set[int]]:
    """A body :func:`~kbsearch.markdown.read_body` has read → sections under their heading stack, the first H1 (a
    title candidate), and which sections are an empty heading's: a heading with no text under it before the next
    heading of its level or above (or the note's end) is a section of its own text (its words found under its
    heading path; a heading with subsections is in their paths already)."""
    sections: list[Section] = []
    empty: set[int] = set()
    stack: list[tuple[int, str]] = []
    lines: list[str] = []
    first_h1: str | None = None
    bare: tuple[int, str] | None = None  # the last heading opened (level, whole text) while no text follows it

    def flush(level: int) -> None:
        nonlocal bare
        text = "\n".join(lines).strip("\n")
        if text.strip():
            sections.append(Section(tuple(h for _, h in stack), text))
        elif bare is not None and level <= bare[0]:  # the heading holds nothing, nor has it subsections
            empty.add(len(sections))
            sections.append(Section(tuple(h for _, h in stack), bare[1]))
        bare = None
        lines.clear()

    for kind, shown, level, text in read:
        if kind in (CODE, MATH):
            lines.append(shown)  # as written
        elif kind == HEADING:
            flush(level)
            whole = _render_links(text, links)
            heading = cut_heading(whole)
            if level == 1 and first_h1 is None:
                first_h1 = heading
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
            bare = (level, whole)
            if heading != whole:
                lines.append(whole)  # searchable once, in its section, not repeated by every chunk's path
        elif kind not in (UNDERLINE, HIDDEN):
            lines.append(_render_links(shown, links))  # prose, an HTML comment's line (its links as ever)
    flush(0)
    return sections, first_h1, empty


def parse_note(path: str, raw: bytes, max_bytes: int = MAX_NOTE_BYTES) -> Note:
    text = decode_note(raw, max_bytes)
    meta, body, warnings = read_frontmatter(text)
    warnings += _not_text(meta)
    links = LinkSet(path.rsplit("/", 1)[0] if "/" in path else "")
    read = read_body(body)
    sections, first_h1, empty = _sections(read, links)
    stem = path.rsplit("/", 1)[-1]
    stem = stem[:-3] if stem.lower().endswith(".md") else stem
    title = _text_or_none(meta.get("title")) or first_h1 or stem
    if len(title) > MAX_HEADING_CHARS:
        warnings.append(f"title: {len(title)} characters, the first {MAX_HEADING_CHARS} kept")
        title = cut_heading(title)
    # The H1 that repeats the title is not a level of the heading path.
    if first_h1 is not None and first_h1 == title:
        # an empty H1 that is the title (a note of its H1 alone) is the note's head chunk, no section of its own
        sections = [s for i, s in enumerate(sections) if i not in empty or s.headings != (title,)]
        sections = [Section(s.headings[1:] if s.headings[:1] == (title,) else s.headings, s.text) for s in sections]
    return Note(
        path=path,
        title=title,
        doc_id=note_id(meta) or path,
        metadata=meta,
        tags=_bounded_tags(meta.get("tags"), warnings, _tags_of(read) if "#" in body else []),
        type=_facet_or_none(meta.get("type")),
        status=_facet_or_none(meta.get("status")),
        summary=note_summary(meta),
        ai_weight=_float_or_none(meta.get("ai_weight")),
        created=_date_or_none(meta, "created", warnings),
        updated=_date_or_none(meta, "updated", warnings),
        links=list(links),
        sections=sections,
        warnings=warnings,
    )


@dataclass(frozen=True)
class Heading:
    """One ATX heading of a note's body: its level, text (wiki-links shown as a reader sees them), the heading
    path down to it, and the lines of its section (``start`` is the heading line; ``end`` the first line of the
    next heading at the same or a higher level, so a section holds its subsections)."""

    level: int
    text: str
    path: tuple[str, ...]
    start: int
    end: int


def outline(body: str) -> list[Heading]:
    """The body's headings in order, as :func:`parse_note` reads them (:func:`kbsearch.markdown.read_body`);
    linear in the body."""
    read = read_body(body)
    headings: list[Heading] = []
    stack: list[tuple[int, str]] = []
    open_at: list[int] = []  # indexes into ``headings`` whose end is not known yet
    for number, (kind, _, level, written) in enumerate(read):
        if kind != HEADING:
            continue
        text = _render_links(written, LinkSet())
        while open_at and headings[open_at[-1]].level >= level:
            done = open_at.pop()
            headings[done] = replace(headings[done], end=number)
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, text))
        headings.append(Heading(level, text, tuple(t for _, t in stack), number, len(read)))
        open_at.append(len(headings) - 1)
    return headings


def wiki_links(text: str, path: str = "") -> tuple[list[str], bool]:
    """The note parts of a note's ``[[wiki-links]]`` and embeds, in order, unique, the first :data:`MAX_LINKS`
    (code spans and fences skipped, as :func:`parse_note` does), and whether the note names more; the
    frontmatter, when readable, is not searched."""
    try:
        _, body, _ = read_frontmatter(text)
    except NoteError:
        body = text
    links = LinkSet(path.rsplit("/", 1)[0] if "/" in path else "")
    _sections(read_body(body), links)
    return list(links), links.more
