"""Hostile notes through the parser's public interface (parse_note): YAML that parses but cannot be built, alias
bombs, deep nesting, huge frontmatter, and arbitrary bytes / arbitrary YAML (Hypothesis). The parser only ever
raises NoteError, runs in time linear in its input, and what it returns is what a payload can hold."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kbsearch.chunking import chunk_note
from kbsearch.frontmatter import MAX_DEPTH, MAX_FRONTMATTER_CHARS
from kbsearch.notes import Note, NoteError, parse_note

INT64 = 2**63


def note(front: str, body: str = "# Title\n\nBody text.\n") -> bytes:
    return f"---\n{front}\n---\n{body}".encode()


def assert_payload_types(parsed: Note) -> None:
    """What the index payload promises: JSON without NaN, string keys, ints within int64, ISO dates."""

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            assert all(isinstance(k, str) for k in value)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            assert -INT64 <= value < INT64
        elif isinstance(value, float):
            assert math.isfinite(value)
        else:
            assert isinstance(value, str)
            value.encode("utf-8")  # no lone surrogates

    walk(parsed.metadata)
    json.dumps(parsed.metadata, allow_nan=False).encode("utf-8")
    assert isinstance(parsed.doc_id, str) and isinstance(parsed.title, str)
    assert all(isinstance(t, str) for t in parsed.tags)
    assert parsed.ai_weight is None or math.isfinite(parsed.ai_weight)
    for when in (parsed.created, parsed.updated):
        assert when is None or (isinstance(when, str) and when[:4].isdigit())
    for chunk in chunk_note(parsed):
        chunk.embed_text.encode("utf-8")


# -- values YAML can parse but Python cannot build: the field goes, the note stays ------------------------------


@pytest.mark.parametrize(
    ("front", "field", "reason"),
    [
        ("updated: 2024-02-30", "updated", "not a valid date"),
        ("updated: 2024-13-45", "updated", "not a valid date"),
        ("created: 2023-02-29", "created", "not a valid date"),
        ("updated: 2024-06-31T10:00:00Z", "updated", "not a valid date"),
        ("when: 0000-01-01", "when", "not a valid date"),
        ("ai_weight: !!float abc", "ai_weight", "not a valid float"),
        ("x: !!float 1.2.3", "x", "not a valid float"),
        ("x: !!timestamp nope", "x", "not a valid date"),
        ("x: !!timestamp 2024-99-99", "x", "not a valid date"),
        ("x: !!int twelve", "x", "not a valid int"),
        ("x: !!int ''", "x", "not a valid int"),  # found by the Hypothesis test below: PyYAML raised IndexError
        ("x: !!float", "x", "not a valid float"),
        ("x: !!bool maybe", "x", "not a valid bool"),
        ("blob: !!binary '!!! not base64 !!!'", "blob", "not a valid binary"),
        ("x: !!python/object/apply:os.system ['echo hi']", "x", "unsupported YAML tag"),
        ("x: !!python/name:os.system", "x", "unsupported YAML tag"),
        ("x: !custom thing", "x", "unsupported YAML tag"),
        ("x: !!set [a, b]", "x", "unsupported YAML tag"),
        ("x: {a: !!float nope}", "x", "not a valid float"),
        ("x: [1, !!int nope]", "x", "not a valid int"),
        ("x: {<<: [1, 2]}", "x", "merge key"),
    ],
)
def test_unbuildable_values_drop_their_field_with_a_warning(front: str, field: str, reason: str) -> None:
    parsed = parse_note("n.md", note(f"title: Kept\ntags: [a]\n{front}"))
    assert parsed.title == "Kept" and parsed.tags == ["a"]
    assert field not in parsed.metadata
    assert any(field in w and reason in w for w in parsed.warnings), parsed.warnings
    assert_payload_types(parsed)


@pytest.mark.parametrize(
    ("front", "expected"),
    [
        ("n: " + "7" * 5000, {"n": "7" * 5000}),  # past Python's int-str limit: the digits, as text
        ("n: 99999999999999999999", {"n": "99999999999999999999"}),  # beyond int64
        ("n: -9223372036854775808", {"n": -(2**63)}),
        ("n: 0x1F\nm: 017\nb: 0b101", {"n": 31, "m": 15, "b": 5}),
        ("f: .nan\ng: -.inf\nh: 1.5", {"f": None, "g": None, "h": 1.5}),
        ("s: !!set {b, a}", {"s": ["b", "a"]}),
        ("o: !!omap [x: 1, y: 2]", {"o": {"x": 1, "y": 2}}),
        ("p: !!pairs [x: 1, x: 2]", {"p": [["x", 1], ["x", 2]]}),
        ("<<: {a: 1, b: 2}\nb: 3", {"a": 1, "b": 3}),
        ("m: {<<: [{a: 1}, {a: 2, c: 3}], d: 4}", {"m": {"a": 1, "c": 3, "d": 4}}),
        (
            "1: one\nnull: n\ntrue: t\n2024-01-02: d\n1.5: f",
            {"1": "one", "null": "n", "true": "t", "2024-01-02": "d", "1.5": "f"},
        ),
        ("d: 2024-02-29\nt: 2001-12-14 21:59:43.10 -5", {"d": "2024-02-29", "t": "2001-12-14T21:59:43.100000-05:00"}),
        ('s: "\\ud83d\\ude00 and \\ud800"', {"s": "😀 and \ufffd"}),
        ("b: !!binary aGVsbG8gd29ybGQ=", {"b": "aGVsbG8gd29ybGQ="}),
        ("e: !!str 2024-02-30", {"e": "2024-02-30"}),
    ],
)
def test_values_are_normalised_into_payload_types(front: str, expected: dict[str, Any]) -> None:
    parsed = parse_note("n.md", note(front))
    assert parsed.metadata == expected and parsed.warnings == []
    assert_payload_types(parsed)


def test_complex_keys_drop_their_entry_and_dates_that_are_not_dates_leave_the_date_fields() -> None:
    parsed = parse_note("n.md", note("? [a, b]\n: list key\n? {k: v}\n: map key\nupdated: last week\nok: 1"))
    assert parsed.metadata == {"updated": "last week", "ok": 1}
    assert parsed.updated is None  # the date field the filters use holds ISO dates only
    assert sum("list or a mapping" in w for w in parsed.warnings) == 2
    assert any("'updated'" in w and "not an ISO date" in w for w in parsed.warnings)


def test_valid_dates_and_datetimes_are_iso() -> None:
    parsed = parse_note("n.md", note("created: 2025-03-01\nupdated: '2025-11-02 10:30'"))
    assert (parsed.created, parsed.updated, parsed.warnings) == ("2025-03-01", "2025-11-02T10:30:00", [])


# -- refused outright: the note is skipped with a reason ---------------------------------------------------------

BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


@pytest.mark.parametrize(
    "front",
    [
        BILLION_LAUGHS,  # 9^9 strings when expanded
        "a: &a [*a]",  # recursive
        "a: &a {b: *a}",
        "base: &b {x: 1}\nnote: {<<: *b}",  # merge through an alias
        "a: &x 1\nb: *x",  # even a harmless one: aliases are not expanded at all
        "x: [" + ", ".join(f"&a{i} [" * 1 + "1]" for i in range(50)) + ", *a0]",
    ],
)
def test_aliases_are_refused_in_linear_time(front: str) -> None:
    started = time.perf_counter()
    with pytest.raises(NoteError, match="alias"):
        parse_note("bomb.md", note(front))
    assert (
        time.perf_counter() - started < 10.0
    )  # a guard against super-linear blow-ups (those took 15-300+ s), not a benchmark


def test_an_alias_bomb_at_the_size_limit_is_refused_fast() -> None:
    layers = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 60)}]\n" for i in range(1, 300))
    front = "l0: &l0 [lol]\n" + layers
    front = front[: MAX_FRONTMATTER_CHARS - 100].rsplit("\n", 1)[0]
    started = time.perf_counter()
    with pytest.raises(NoteError, match="alias"):
        parse_note("bomb.md", note(front))
    assert time.perf_counter() - started < 10.0  # a guard against super-linear blow-ups, not a benchmark


@pytest.mark.parametrize(
    ("front", "reason"),
    [
        ("x: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested deeper"),
        ("x: " + "[" * 60_000, "nested deeper"),  # would recurse in PyYAML's composer
        ("x: " + "{a: " * 15_000, "nested deeper"),
        ("".join(" " * i + "k:\n" for i in range(40)), "nested deeper"),
        ("k: v\n" * (MAX_FRONTMATTER_CHARS // 5 + 1), "frontmatter too large"),
        ("- a\n- b", "not a mapping"),
        ("just text", "not a mapping"),
        ("a: [1, 2", "invalid YAML"),
        ("a: \x07", "invalid YAML"),
        ("%YAML 1.1\n---\na: 1\n---\nb: 2", "invalid YAML"),
    ],
)
def test_unusable_frontmatter_skips_the_note_with_a_reason(front: str, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(NoteError, match=reason):
        parse_note("bad.md", note(front))
    assert (
        time.perf_counter() - started < 30.0
    )  # under 0.5 s unloaded (PyYAML scans up to 1,024 chars ahead per simple key); bounds a loaded CI


# -- the whole parser, on anything ---------------------------------------------------------------------------------

YAML_PIECES = [
    "a", "b", "key", ":", ": ", "-", "- ", "\n", "  ", " ", "[", "]", "{", "}", ",", "&a ", "*a", "&b ", "*b",
    "!!float ", "!!int ", "!!timestamp ", "!!binary ", "!!set ", "!!omap ", "!!pairs ", "!!python/object:os.system ",
    "!!str ", "!x ", "<<", "? ", "'", '"', "|", ">", "#", "2024-02-30", "2024-13-45", "1e400", ".nan", "9" * 30,
    "0x1F", "1:30:00", "~", "null", "true", "\\ud800", "\t", "...", "%", "@", "`", "=", "ё", "\u00a0",
]  # fmt: skip


@st.composite
def yaml_notes(draw: st.DrawFn) -> bytes:
    front = "".join(draw(st.lists(st.sampled_from(YAML_PIECES), max_size=80)))
    body = draw(st.text(max_size=200))
    return f"---\n{front}\n---\n{body}".encode("utf-8", "surrogatepass")


def parse_quickly(raw: bytes) -> None:
    started = time.perf_counter()
    try:
        parsed = parse_note("fuzz.md", raw)
    except NoteError as exc:
        assert exc.reason
    else:
        assert_payload_types(parsed)
    assert time.perf_counter() - started < 10.0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_notes())
def test_arbitrary_yaml_frontmatter_only_ever_raises_note_error(raw: bytes) -> None:
    parse_quickly(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_ever_raise_note_error(raw: bytes) -> None:
    parse_quickly(raw)
    parse_quickly(b"---\n" + raw + b"\n---\n# t\n")


@pytest.mark.parametrize(
    "body",
    [
        "# a" + " " * 256_000 + "b",  # a heading line of spaces: the old heading regex backtracked quadratically
        "# " + "# " * 128_000 + "x",
        "`a" * 128_000,
        "[[a" * 85_000,
        "[[" + "|" * 256_000,
        "```\n" * 64_000,
        "\n" * 256_000 + "x",
        "".join("`" * k + "a" for k in range(700, 0, -1)),  # backtick runs of every length: 28 s at 500 KB (round 25)
        "[a](x(yy" * 32_000,  # a Markdown link's parenthesised target, never closed
        "[a](x 'y" * 32_000,  # a Markdown link's quoted title, never closed
    ],
    ids=[
        "heading-spaces",
        "heading-hashes",
        "backticks",
        "wikilinks",
        "pipes",
        "fences",
        "newlines",
        "backtick-runs",
        "link-parens",
        "link-titles",
    ],
)
def test_pathological_markdown_is_parsed_and_chunked_in_linear_time(body: str) -> None:
    started = time.perf_counter()
    chunk_note(parse_note("big.md", body.encode()))
    assert (
        time.perf_counter() - started < 30.0
    )  # under 0.7 s unloaded; the old heading regex took minutes on the first case
