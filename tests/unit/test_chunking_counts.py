"""The chunker keeps running character counts instead of re-estimating the growing join at every step: it must cut
exactly where re-reading the join does. The reference below is the straightforward (quadratic) formulation the
chunker had before; both are run on the same texts and must agree piece for piece."""

from __future__ import annotations

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from kbsearch.chunking import _blocks, split_section
from kbsearch.tokens import counts, estimate_tokens


def _reference_oversized(block: str, is_code: bool, max_tokens: int) -> list[str]:
    from kbsearch.chunking import _SENTENCE

    units = block.split("\n") if is_code else [s for s in _SENTENCE.split(block) if s]
    pieces: list[str] = []
    current: list[str] = []
    joiner = "\n" if is_code else " "
    for unit in units:
        if estimate_tokens(unit) > max_tokens:
            unit_parts: list[str] = []
            part: list[str] = []
            for word in unit.split(" "):
                if part and estimate_tokens(" ".join([*part, word])) > max_tokens:
                    unit_parts.append(" ".join(part))
                    part = []
                rest = word
                while estimate_tokens(rest) > max_tokens:
                    unit_parts.append(rest[:max_tokens])
                    rest = rest[max_tokens:]
                part.append(rest)
            if part:
                unit_parts.append(" ".join(part))
        else:
            unit_parts = [unit]
        for piece in unit_parts:
            if current and estimate_tokens(joiner.join([*current, piece])) > max_tokens:
                pieces.append(joiner.join(current))
                current = []
            current.append(piece)
    if current:
        pieces.append(joiner.join(current))
    return pieces


def _reference_tail(text: str, tokens: int) -> str:
    if tokens <= 0:
        return ""
    out: list[str] = []
    for word in reversed(text.split()):
        if estimate_tokens(" ".join([word, *out])) > tokens:
            break
        out.insert(0, word)
    return " ".join(out)


def reference_split(text: str, max_tokens: int, overlap_tokens: int) -> list[str]:
    if estimate_tokens(text) <= max_tokens:
        return [text]
    units: list[tuple[str, bool]] = []
    for block, is_code in _blocks(text):
        if estimate_tokens(block) > max_tokens:
            units.extend((piece, is_code) for piece in _reference_oversized(block, is_code, max_tokens))
        else:
            units.append((block, is_code))
    chunks: list[str] = []
    current: list[str] = []
    last_code = False
    for block, is_code in units:
        if current and estimate_tokens("\n\n".join([*current, block])) > max_tokens:
            chunks.append("\n\n".join(current))
            overlap = "" if (last_code or is_code) else _reference_tail(current[-1], overlap_tokens)
            current = (
                [f"… {overlap}"] if overlap and estimate_tokens(overlap) + estimate_tokens(block) < max_tokens else []
            )
        current.append(block)
        last_code = is_code
    if current:
        chunks.append("\n\n".join(current))
    return chunks


WORDS = ["qdrant", "снапшот", "restore", "ключей", "2024", "v1.16", "—", "…", "a", "x" * 60, "Z" * 900, "7" * 500,
         "```", "~~~", "# Heading", "!", "?", "end.", "ё", "\t", "😀"]  # fmt: skip
SEPARATORS = [" ", "  ", "\n", "\n\n", "\n\n\n", ". ", "! ", "\n```\n", "\n    "]


@st.composite
def sections(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), max_size=400))
    return "".join(word + sep for word, sep in parts) + draw(st.text(max_size=40))


@settings(max_examples=250, deadline=None)
@given(sections(), st.sampled_from([20, 60, 120, 400]), st.sampled_from([0, 5, 40]))
def test_running_counts_cut_exactly_where_the_join_is_reread(text: str, max_tokens: int, overlap: int) -> None:
    assert split_section(text, max_tokens, overlap) == reference_split(text, max_tokens, overlap)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=2000), st.sampled_from([10, 50, 400]))
def test_running_counts_on_any_text(text: str, max_tokens: int) -> None:
    assert split_section(text, max_tokens, 10) == reference_split(text, max_tokens, 10)


def test_a_long_section_is_split_in_linear_time() -> None:
    """A long paragraph of short words (one sentence, so it is split word by word): re-reading the growing join at
    every word made the work grow with the piece size, words x max_tokens (a 480 KB paragraph: 5.5 s on the
    development machine; the running counts 0.35 s). Judged by how the work grows, not by a clock bound: pieces
    16x larger must not cost 4x the CPU (the running counts: ~0.85x here, the re-reading: ~14x), each size's best
    of 3 runs, interleaved so that both see the same host. A fixed 2.5 s bound failed on a busy host: 4.8 s of wall
    clock and 2.5 s of the thread's own CPU with 6 workers and 2 CPU hogs on 2 cores, ~0.65 s idle."""
    text = " ".join(f"w{i % 97}" for i in range(20_000))
    best = {100: float("inf"), 1600: float("inf")}
    for _ in range(3):
        for max_tokens in (100, 1600):
            started = time.thread_time()
            pieces = split_section(text, max_tokens, 10)
            best[max_tokens] = min(best[max_tokens], time.thread_time() - started)
            assert all(estimate_tokens(p) <= max_tokens for p in pieces) and len(pieces) > 2
    assert best[1600] < 4 * best[100], best


# -- counts: one character class per run, exactly what matching each character of each class gives ---------------

_EVERY_CLASS = st.text(
    st.one_of(
        st.characters(codec="utf-8"),  # any scalar value: letters of every script, marks, Nd of every script
        st.sampled_from("²³½Ⅻ٣໓𝟘_ \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2028\u2029\u3000\u200b\ufeff"),
    ),
    max_size=300,
)


def _reference_counts(text: str) -> tuple[int, int, int]:
    letters = len(re.findall(r"[^\W\d_]", text))
    digits = len(re.findall(r"\d", text))
    return letters, digits, len(text) - letters - digits - len(re.findall(r"\s", text))


@settings(max_examples=400, deadline=None)
@given(_EVERY_CLASS)
def test_counts_match_the_per_character_classes(text: str) -> None:
    """Letters, digits and other symbols as the three per-character regexes count them, for every class of
    character the estimate sees: other scripts' digits (Nd), numerals that are not digits (², Ⅻ: letters here),
    underscores, every Unicode whitespace ``\\s`` knows (and the zero-width ones it does not)."""
    assert counts(text) == _reference_counts(text)


def test_counts_match_the_per_character_classes_for_every_code_point() -> None:
    """Every Unicode scalar value, a block of 4,096 at a time (and each block's first 64 one by one): letters,
    digits and symbols as the per-character regexes count them."""
    import sys

    scalars = "".join(chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i <= 0xDFFF)
    for start in range(0, len(scalars), 4096):
        block = scalars[start : start + 4096]
        assert counts(block) == _reference_counts(block), hex(ord(block[0]))
        for ch in block[:64]:
            assert counts(ch) == _reference_counts(ch), hex(ord(ch))


def _reference_longest_prefix(text: str, max_tokens: int) -> int:
    """The search as it was: every probe re-estimates the whole prefix."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate_tokens(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return lo


@settings(max_examples=300, deadline=None)
@given(_EVERY_CLASS, st.integers(min_value=0, max_value=120))
def test_the_longest_prefix_is_found_from_the_counts_below_it(text: str, max_tokens: int) -> None:
    """The prefix search adds the counts of the stretch it probes to those below its lower bound (counts are per
    character): the same cut as re-estimating every prefix, for every class of character, and through
    ``truncate_tokens`` the same text."""
    from kbsearch.tokens import _longest_prefix_within

    assert _longest_prefix_within(text, max_tokens) == _reference_longest_prefix(text, max_tokens)
    assert counts(text) == tuple(map(sum, zip(counts(text[:7]), counts(text[7:]), strict=True)))
