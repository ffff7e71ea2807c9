"""YAML frontmatter → a JSON-safe mapping, in time and memory linear in its size, or a :class:`FrontmatterError`.

PyYAML's own loaders build whatever the YAML says: aliases expand without limit (a 320-byte "billion laughs"
note took 97 s and 1.1 GB), ``2024-02-30`` or ``!!float abc`` raise plain ``ValueError`` deep in the constructor,
a 5,000-digit integer trips Python's int-string limit, nesting recurses. Here only PyYAML's scanner and parser
run (both iterative); the node tree is built from their events under three limits, and every value is built
by this module into the types a payload can hold (str, int within int64, finite float, bool, None, list, dict
with string keys):

- refused (the whole frontmatter fails): more than :data:`MAX_FRONTMATTER_CHARS`, aliases (``*name``), nesting
  deeper than :data:`MAX_DEPTH`, more than one document, YAML syntax errors, a root that is not a mapping;
- dropped with a warning (the rest of the note is kept): a top-level field whose value YAML can parse but
  Python cannot build (a date that does not exist, ``!!float abc``, ``!!timestamp nope``, ``!!binary`` that is
  not base64, ``!!python/...`` and other unknown tags, a bad merge ``<<``, a key that is a list or a mapping), and a
  field given more than once, or holding a mapping that gives a key more than once (``access: [hr]`` then
  ``access: [public]``: PyYAML would keep the last, silently; in ``_access.yaml`` that fails the sync);
- normalised: dates and times → ISO text, integers beyond int64 → their digits as text, NaN/inf → None,
  sets → lists, ``!!omap`` → mappings, ``!!pairs`` → ``[key, value]`` lists, ``!!binary`` → its base64 text,
  non-string keys → text, merge keys ``<<`` (inline mappings only: aliases are refused) → merged, lone
  surrogates in strings → U+FFFD.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml import events
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FRONTMATTER_CHARS = 64 * 1024
MAX_DEPTH = 16
INT64 = 2**63
_MAX_INT_CHARS = 40  # longer integer literals are kept as text (they cannot be int64 anyway)

_T = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_T}{n}" for n in ("null", "bool", "int", "float", "str", "timestamp", "binary", "value", "merge")}
_SEQ_TAGS = {f"{_T}seq", f"{_T}omap", f"{_T}pairs"}
_MAP_TAGS = {f"{_T}map", f"{_T}set"}


class FrontmatterError(Exception):
    """The frontmatter cannot be used at all; ``reason`` is short and safe to report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Unbuildable(Exception):
    """One value YAML parsed but kb-search cannot build; its top-level field is dropped. ``mark``: where the value
    is, when the reason names the value's line instead of quoting it."""

    def __init__(self, reason: str, mark: Any = None) -> None:
        super().__init__(reason)
        self.reason, self.mark = reason, mark

    def said(self, first_line: int) -> str:
        """The reason, a value's line before it when it has one (``a value at line 4 is not a valid int``)."""
        return f"a value{_line(self.mark, first_line)} {self.reason}" if self.mark is not None else self.reason


@dataclass
class Frontmatter:
    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _line(mark: Any, first_line: int = 2) -> str:
    """Where ``mark`` is in the file: the text starts on ``first_line`` (2 in a note: after the opening '---')."""
    return f" at line {mark.line + first_line}" if mark is not None else ""  # marks are 0-based


def _mark(event: events.Event) -> Any:
    return event.start_mark  # PyYAML's stubs type the C and the Python marks apart; nodes take either


def _compose(text: str, first_line: int = 2) -> tuple[Node | None, yaml.SafeLoader]:
    """One document's node tree from the parser's events: no aliases, bounded depth, no recursion in PyYAML."""
    root: Node | None = None
    stack: list[tuple[Node, list[Any]]] = []
    documents = 0
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters and lone surrogates
        while True:
            event = loader.get_event()
            if isinstance(event, events.AliasEvent):
                raise FrontmatterError(
                    f"frontmatter uses a YAML alias{_line(event.start_mark, first_line)}: a value cannot begin with '*' "
                    "(quote the value; aliases are not expanded: they allow exponential 'billion laughs' documents)"
                )
            if isinstance(event, events.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise FrontmatterError("frontmatter holds more than one YAML document")
                continue
            if isinstance(event, events.StreamEndEvent):
                break
            if isinstance(event, events.StreamStartEvent | events.DocumentEndEvent):
                continue
            node: Node
            if isinstance(event, events.ScalarEvent):
                tag = event.tag
                if tag is None or tag == "!":
                    tag = loader.resolve(ScalarNode, event.value, event.implicit)
                node = ScalarNode(tag, event.value, _mark(event), None, style=event.style)
            elif isinstance(event, events.SequenceStartEvent | events.MappingStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise FrontmatterError(
                        f"frontmatter nested deeper than {MAX_DEPTH} levels{_line(event.start_mark, first_line)}"
                    )
                kind: type[SequenceNode | MappingNode] = (
                    SequenceNode if isinstance(event, events.SequenceStartEvent) else MappingNode
                )
                tag = event.tag
                if tag is None or tag == "!":
                    tag = loader.resolve(kind, None, event.implicit)
                node = kind(tag, [], _mark(event), None)
                stack.append((node, []))
                continue
            elif isinstance(event, events.SequenceEndEvent | events.MappingEndEvent):
                node, items = stack.pop()
                node.value = (
                    items if isinstance(node, SequenceNode) else list(zip(items[::2], items[1::2], strict=True))
                )
            else:  # pragma: no cover - PyYAML has no other event types
                raise FrontmatterError(f"unexpected YAML event {type(event).__name__}")
            if stack:
                stack[-1][1].append(node)
            else:
                root = node
    except yaml.YAMLError as exc:
        raise FrontmatterError(
            f"invalid YAML frontmatter{_line(getattr(exc, 'problem_mark', None), first_line)}{_said(exc, first_line, text)}"
        ) from None
    return root, loader


#: PyYAML's words for what it was reading when it failed, and what its writer most likely left open there.
_OPENED = {
    "while parsing a flow sequence": "a list's [ not closed by ]",
    "while parsing a flow mapping": "a { not closed by }",
    "while scanning a quoted scalar": "a quoted value not closed",
    "while scanning a double-quoted scalar": 'a "quoted" value not closed',
    "while scanning a single-quoted scalar": "a 'quoted' value not closed",
}

#: PyYAML's contexts of a tag it could not read: a value beginning with '!'.
_TAGGED = ("while parsing a tag", "while scanning a tag", "while scanning a tag directive")


def _said(exc: yaml.YAMLError, first_line: int, text: str = "") -> str:
    """What the writer of a frontmatter PyYAML refused can fix, after its line (round 36: "at line 2" alone left
    ``title: Meeting: Q3 plan`` a riddle): the common slips in words (a ': ' in a value, a list or a quote left
    open, a tab, a value YAML reads as a list, a tag, an alias), else PyYAML's problem itself; the line a bracket or
    quote was opened on when it is another. Nothing of the note is quoted but a character (round 36 review: PyYAML's
    ``found undefined tag handle '!...!'`` quoted the note's text; a closing ] was called a closing quote)."""
    problem, context = getattr(exc, "problem", None), getattr(exc, "context", None)
    if not isinstance(problem, str):
        return ""
    opened, mark = _OPENED.get(context) if isinstance(context, str) else None, getattr(exc, "context_mark", None)
    if problem.startswith("mapping values are not allowed") and _first_colon(text, getattr(exc, "problem_mark", None)):
        # `title` then `owner: me`, or `  owner: me` under `title: x`: the key is right, what is above it is not
        said = "a key where none can begin (the line above is no 'key: value', or this one is indented under it)"
    elif problem.startswith("mapping values are not allowed"):
        said = "': ' where no key can begin (quote a value that holds ': ', or indent the line as its key's)"
    elif problem.startswith("found character '\\t'"):
        said = "a tab (YAML indents with spaces)"
    elif problem.startswith("found character ") and problem.endswith(" that cannot start any token"):
        said = f"a value cannot begin with {problem.split()[2]} (quote the value)"
    elif problem in ("expected <block end>, but found '<scalar>'", "expected <block end>, but found ','") and (
        _before(text, getattr(exc, "problem_mark", None)) in ("]", "}")
    ):  # `title: [Draft] Q3 plan`, `related: [[A]], [[B]]`: a list or a mapping, then more text
        said = "a value that begins with [ or { is read as a list or a mapping (quote the whole value)"
    elif problem == "expected <block end>, but found '<scalar>'" and _before(
        text, getattr(exc, "problem_mark", None)
    ) in ("'", '"'):
        said = "text after a value's closing quote (inside '...' a ' is written '', inside \"...\" a \" is \\\")"
    elif problem.startswith("found undefined tag handle") or context in _TAGGED:  # `!draft! x`
        said = "a value cannot begin with '!' (quote the value)"
    elif isinstance(context, str) and context.startswith(("while scanning an alias", "while scanning an anchor")):
        said = f"a value cannot begin with {'*' if 'alias' in context else '&'!r} (quote the value)"
    elif problem == "expected <block end>, but found '-'":
        said = "a '- ' list item where a 'key: value' line belongs"
    elif opened is not None and (problem.startswith("expected ',' or") or "end of stream" in problem):
        at = getattr(exc, "problem_mark", None)
        elsewhere = mark is not None and (at is None or at.line != mark.line)
        said = opened + (f" (opened at line {mark.line + first_line})" if mark is not None and elsewhere else "")
    else:  # PyYAML's words, with no run of the note's text in them (a character, a token's kind, at most)
        said = re.sub(r"'([^']{2,})'", lambda m: m[0] if m[1][0] in "<\\" else "'...'", problem)
    return f": {said}"


def _first_colon(text: str, mark: Any) -> bool:
    """Whether the ':' at ``mark`` is the first ': ' of its line (a key's, not one inside a value)."""
    index = getattr(mark, "index", None)
    return isinstance(index, int) and bool(text) and ": " not in text[:index].rsplit("\n", 1)[-1]


def _before(text: str, mark: Any) -> str:
    """The last character before ``mark`` on its line, spaces aside ('' when there is none, or no mark)."""
    index = getattr(mark, "index", None)
    if not isinstance(index, int) or not text:
        return ""
    line = text[:index].rsplit("\n", 1)[-1].rstrip(" \t")
    return line[-1:]


def _text(value: str) -> str:
    """Lone surrogates (from ``"\\ud800"`` escapes) cannot be stored as UTF-8 JSON: pairs are joined, the rest
    become U+FFFD."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value


def _scalar(node: ScalarNode, loader: yaml.SafeLoader, written: bool = False) -> Any:
    tag, value = node.tag, node.value
    if tag not in _SCALAR_TAGS:
        raise _Unbuildable(f"unsupported YAML tag {tag}")
    name = tag[len(_T) :]
    if written and tag in _TYPED_SCALARS and name != "null":  # a text field: `no`, `010`, `1.10`, `12:30` as written
        return _text(value)
    try:
        if name in ("str", "value", "merge"):
            return _text(value)
        if name == "null":
            return None
        if name == "bool":
            return loader.construct_yaml_bool(node)
        if name == "int":
            if len(value) > _MAX_INT_CHARS:
                return _text(value)
            integer: int = loader.construct_yaml_int(node)
            return integer if -INT64 <= integer < INT64 else value
        if name == "float":
            number: float = loader.construct_yaml_float(node)
            return number if math.isfinite(number) else None
        if name == "timestamp":
            when = loader.construct_yaml_timestamp(node)
            return when.isoformat()
        # binary: kept as its base64 text, once it is known to be base64
        compact = "".join(value.split())
        base64.b64decode(compact, validate=True)
        return compact
    except (
        Exception
    ):  # PyYAML's constructors raise ValueError, IndexError, KeyError, AttributeError, binascii.Error ...
        # the value is not quoted: a field dropped here may hold a secret (`api_key: !!int sk-...`), and the reason
        # goes to the sync's summary, its log and `serve --watch`'s line; the field, its line and the type find it
        kind = "date or time" if name == "timestamp" else name
        raise _Unbuildable(f"is not a valid {kind}", node.start_mark) from None


#: Scalars YAML types by how they look (``01`` an octal 1, ``1.10`` the float 1.1, ``0x1F``, ``1_000``, ``+1``,
#: ``1:30`` a sexagesimal 90, ``~`` null, ``yes`` true, a date): as a key they are names, read as written.
_TYPED_SCALARS = {f"{_T}{n}" for n in ("null", "bool", "int", "float", "timestamp")}


def _key(node: Node, loader: yaml.SafeLoader) -> str:
    """A key as written: a folder rule ``01: [hr]`` or ``1.10: [hr]`` names the folder ``01`` or ``1.10`` (the key
    was the value YAML reads, ``1`` or ``1.1``, and the rule reached no folder: its notes were indexed public). A
    key with no text is ``null``."""
    if not isinstance(node, ScalarNode):
        raise _Unbuildable("a key that is a list or a mapping")
    if node.tag in _TYPED_SCALARS:
        return _text(node.value) if node.value.strip() else "null"
    return str(_scalar(node, loader))


def _build(node: Node, loader: yaml.SafeLoader, written: bool = False) -> Any:
    """A node → its JSON-safe value; ``written``: typed scalars (but null) as their text (:func:`parse_frontmatter`)."""
    if isinstance(node, ScalarNode):
        return _scalar(node, loader, written)
    if isinstance(node, SequenceNode):
        if node.tag not in _SEQ_TAGS:
            raise _Unbuildable(f"unsupported YAML tag {node.tag}")
        items = [_build(item, loader, written) for item in node.value]
        if node.tag == f"{_T}seq":
            return items
        if not all(isinstance(i, dict) and len(i) == 1 for i in items):
            raise _Unbuildable(f"{node.tag[len(_T) :]} entries must be single-key mappings")
        if node.tag == f"{_T}omap":
            return {k: v for i in items for k, v in i.items()}
        return [[k, v] for i in items for k, v in i.items()]
    assert isinstance(node, MappingNode)
    if node.tag not in _MAP_TAGS:
        raise _Unbuildable(f"unsupported YAML tag {node.tag}")
    out: dict[str, Any] = {}
    merged: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.tag == f"{_T}merge":
            merged = _merge(value_node, loader) | merged
            continue
        key = _key(key_node, loader)
        if key in out:
            raise _Unbuildable(f"the key {key[:40]!r} is given more than once")
        out[key] = _build(value_node, loader, written)
    if node.tag == f"{_T}set":
        return list(out)
    return merged | out  # explicit keys win over merged ones


def _merge(node: Node, loader: yaml.SafeLoader) -> dict[str, Any]:
    sources = node.value if isinstance(node, SequenceNode) else [node]
    out: dict[str, Any] = {}
    for source in reversed(sources):  # earlier mappings in a merge list win
        value = _build(source, loader)
        if not isinstance(value, dict):
            raise _Unbuildable("a merge key (<<) must hold a mapping or a list of mappings")
        out |= value
    return out


def _scalars(node: Node, keys_only: bool) -> Iterator[str]:
    """The texts of the scalars in ``node`` (``keys_only``: of its mappings' keys, at any depth of lists)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ScalarNode):
            yield str(item.value)
        elif isinstance(item, SequenceNode):
            stack.extend(item.value)
        elif isinstance(item, MappingNode):
            stack.extend(k for k, _ in item.value)
            if not keys_only:
                stack.extend(v for _, v in item.value)


#: ``names=EVERY_FIELD``: every top-level field names things (the access file: each folder's groups).
EVERY_FIELD = frozenset({"\x00every field"})


def _switch(node: Node) -> str | None:
    """The word of a value YAML 1.1 reads as a yes/no switch (``no``, ``off``, ``true`` ...), alone, unquoted."""
    return node.value if isinstance(node, ScalarNode) and node.tag == f"{_T}bool" else None


def parse_frontmatter(
    text: str, as_written: frozenset[str] = frozenset(), names: frozenset[str] = frozenset(), first_line: int = 2
) -> Frontmatter:
    """The YAML between the ``---`` lines → JSON-safe data and warnings; :class:`FrontmatterError` if unusable.
    ``as_written``: top-level fields that are text to their reader (a note's tags, type, status, title ...), whose
    scalars are kept as written rather than typed by YAML 1.1's rules, as Obsidian (YAML 1.2) shows them: ``no``,
    ``yes``, ``on``, ``off`` stay words (not false/true), ``010`` stays ``010`` (not the octal 8), ``0x10``, ``1.10``,
    ``1_000``, ``12:30`` (not the sexagesimal 750), ``.inf`` as written; ``~``/``null``/nothing stay null.
    ``names``: fields whose value names groups (a note's ``access``, in any case; every rule of the access file
    with :data:`EVERY_FIELD`): read as written too (``[no, on, 0777]`` names the groups ``no``, ``on``, ``0777``),
    but a bare switch word (``access: no``, ``hr/: off``, ``true``) is dropped with a warning: it reads as a yes/no
    answer, and whether it meant everyone or nobody is not known. Fields are compared in lower case, spaces around
    them left out. ``first_line``: the line of the file the text starts on, for the lines problems name (a note's
    frontmatter starts after its opening ``---``; the access file is YAML from its first line)."""
    if len(text) > MAX_FRONTMATTER_CHARS:
        raise FrontmatterError(f"frontmatter too large: {len(text)} characters (limit {MAX_FRONTMATTER_CHARS})")
    if not text.strip():
        return Frontmatter({})
    root, loader = _compose(text, first_line)
    if root is None or (isinstance(root, ScalarNode) and root.tag == f"{_T}null"):
        return Frontmatter({})
    if not isinstance(root, MappingNode) or root.tag not in _MAP_TAGS:
        raise FrontmatterError("frontmatter is not a mapping of keys to values")
    result = Frontmatter({})
    merged: dict[str, Any] = {}
    seen: set[str] = set()
    repeated: set[str] = set()
    for key_node, value_node in root.value:
        try:
            if isinstance(key_node, ScalarNode) and key_node.tag == f"{_T}merge":
                merged = _merge(value_node, loader) | merged
                continue
            key = _key(key_node, loader)
        except _Unbuildable as exc:
            result.warnings.append(
                f"frontmatter entry{_line(key_node.start_mark, first_line)} dropped: {exc.said(first_line)}"
            )
            # the fields the entry named, as a reader sees them (a tagged or complex key `!x access`, a merge of
            # `{access: [hr], x: !x y}`): their reader learns they were dropped (`access` was read as undeclared)
            from kbsearch.access import declares_access

            merge = isinstance(key_node, ScalarNode) and key_node.tag == f"{_T}merge"
            for name in dict.fromkeys(_scalars(value_node if merge else key_node, keys_only=merge)):
                if declares_access([name]):
                    result.warnings.append(f"frontmatter field {name!r} dropped: in that entry")
            continue
        if key in seen:  # which one was meant is unknown (PyYAML keeps the last): neither is used
            if key not in repeated:
                repeated.add(key)
                result.data.pop(key, None)
                result.warnings.append(f"frontmatter field {key!r} dropped: given more than once")
            continue
        seen.add(key)
        folded = key.strip().casefold()
        naming = names is EVERY_FIELD or folded in names
        if naming and (word := _switch(value_node)) is not None:
            shown = word if len(word) <= 40 else word[:37] + "..."
            result.warnings.append(f"frontmatter field {key!r} dropped: {shown!r} reads as a yes/no switch, not a "
                                   f"group; write [{shown}] for a group of that name, [public] for everyone")  # fmt: skip
            continue
        try:
            result.data[key] = _build(value_node, loader, naming or key in as_written or folded in as_written)
        except _Unbuildable as exc:
            result.data.pop(key, None)
            result.warnings.append(f"frontmatter field {key!r} dropped: {exc.said(first_line)}")
    result.data = merged | result.data
    return result


def iso_date(value: Any) -> str | None:
    """An ISO date or date-time (as YAML or a person writes it, RFC 3339's lower-case ``t`` and ``z`` too) → its
    ISO text; None when it is not one. A UTC offset holding seconds (``+03:00:30``, Python reads it; no RFC 3339
    reader does) is written as the same instant in UTC: Qdrant's ``datetime`` index cannot read it, so the note was
    in no ``updated_after`` filter and no recent list, silently."""
    if not isinstance(value, str):
        return None
    text = value.strip().upper()  # (digits, signs and the letters T, Z, W: nothing else is upper-cased)
    try:
        if len(text) == 10:
            return dt.date.fromisoformat(text).isoformat()
        when = dt.datetime.fromisoformat(text)
        offset = when.utcoffset()
        if offset is not None and (offset.seconds % 60 or offset.microseconds):
            when = when.astimezone(dt.UTC)
    except (ValueError, OverflowError):  # (overflow: such an offset moving a date past year 1 or 9999)
        return None
    return when.isoformat()
