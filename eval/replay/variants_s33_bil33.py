"""Session 33's variants (bil33, issue 19: a KB written in two languages): trees for ``replay.py --compare`` (A, B,
C1, C2, below) and hooks for ``replay.py --variants`` over captures of the ``expanded`` phase (``VARIANTS``, at the
end: the translated variant's legs).

Each variant changes what the fusion reads before its scoring loop (``_across``'s damping, the query's foreign proper
names), which a ``--variants`` hook cannot reach: so each is a copy of this tree's ``layers/kbsearch`` with one edit,
replayed against the base with ``--compare`` (EVAL.md, "Session 33: ... (issue 19, bil33)"):

    .venv/bin/python eval/replay/variants_s33_bil33.py /tmp/bil33/variants          # writes A/, B/, C1/, C2/
    PYTHONPATH=/tmp/bil33/variants/A/layers/kbsearch:tools .venv/bin/python eval/replay/replay.py \\
        /work/main/.kbsearch/replay32/*.pkl /work/main/.kbsearch/replay33/*-classes-bil.pkl --compare /tmp/base33 --detail

- ``A``: ``_across`` holds only where the query's language is the minority of its own dense leg's notes (a
  translated KB's leftover pages), not where the leg is balanced or mostly of the query's language with a first
  note of the other (a KB written in both: the query's language's notes are answers, not leftovers).
- ``B``: fus32c's gate off (a plain query asked across languages pins its exact matches wherever the legs rank
  them, as before session 32): what that gate does in a KB written in both languages.
- ``C1``: an acronym or a code written in capitals ("PDF", "SSO", "AES-256", "ISO27001") is no foreign proper name
  of a Russian question: such a question is gated as the same English question is (rev32a's asymmetry, one way).
- ``C3``: a question naming an identifier keeps its pin on a note of another language than the question wherever
  the legs rank it (the identifier is what ties the question to a page written in the other language: e5's dense leg
  ranks its own language first, BM25's other words are the question's language).
- ``C2``: an English question's acronyms and codes in capitals are names too: it keeps its pin as the Russian one
  does (the asymmetry, the other way).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "kbsearch"

#: variant A replaces ``_across``'s block from its first line to the line holding its last words (read from the tree)
_ACROSS = ("    if theirs != language and not agree:\n", "first note in one language, most in the other\n")
_ACROSS_A = """    recorded: dict[Any, Any] = {}  # the leg's notes (each once) and the language each records
    for c in asked:
        payload = c.payload
        recorded.setdefault(payload.get("path"), payload.get("lang"))
    same = sum(1 for lang in recorded.values() if lang == language)
    other = sum(1 for lang in recorded.values() if lang is not None and lang != language)
    if other <= same:  # variant A: the query's language is no minority of the leg (a KB written in both)
        return False
    divided = False if theirs != language and not agree else (other > same if theirs == language else same > other)
"""
_NAMES = """    if (language or query_language(query)) != "ru":
        return frozenset()
    out: set[str] = set()
    for raw in reading(query).split():
        word = raw.strip(_WORD_PUNCTUATION)
        first = next((c for c in word if c.isalnum()), "")  # "3D", "2FA" open with a number: no name
        if first.isupper() and"""
_NAMES_C1 = _NAMES.replace(
    "        if first.isupper() and",
    """        letters = [c for c in word if c.isalpha()]
        if len(letters) >= 2 and all(c.isupper() for c in letters):  # variant C1: an acronym or a code is no name
            continue
        if first.isupper() and""",
)
_NAMES_C2 = _NAMES.replace(
    """    if (language or query_language(query)) != "ru":
        return frozenset()
    out: set[str] = set()""",
    """    out: set[str] = set()
    if (language or query_language(query)) != "ru":  # variant C2: an English question's acronyms are names too
        for raw in reading(query).split():
            word = raw.strip(_WORD_PUNCTUATION)
            letters = [c for c in word if c.isalpha()]
            if len(letters) >= 2 and all(c.isupper() for c in letters) and _LATIN_LETTER.search(word):
                out.update(tokenize(word))
        return frozenset(out)""",
)
_GATE = "and (questioned(evidence, p) or (across and not evidence.identifiers and not evidence.ui_path))"
_GATE_B = "and questioned(evidence, p)  # variant B: fus32c's gate off"
_KEPT = "kept = {note for note in pinned if note not in answered and _about(notes[note], notes, p)}"
_KEPT_C3 = (
    "kept = {note for note in pinned if note not in answered and (_about(notes[note], notes, p) or (questioned("
    "evidence, p) and _note_language((notes[note].lexical_chunk or notes[note].dense_chunk or "
    "brought[note]).payload, languages) not in (None, language)))}  # variant C3"
)
TREES = {"A": ("fusion.py", _ACROSS, _ACROSS_A), "B": ("fusion.py", _GATE, _GATE_B), "C3": ("fusion.py", _KEPT, _KEPT_C3), "C1": ("lexical.py", _NAMES, _NAMES_C1),
            "C2": ("lexical.py", _NAMES, _NAMES_C2)}  # fmt: skip


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    for name, (module, replaced, new) in TREES.items():
        tree = out / name / "layers" / "kbsearch"
        if tree.exists():
            shutil.rmtree(tree)
        shutil.copytree(PACKAGE, tree, ignore=shutil.ignore_patterns("__pycache__"))
        path = tree / "kbsearch" / module
        text = path.read_text(encoding="utf-8")
        old = replaced if isinstance(replaced, str) else "\0"
        if isinstance(replaced, tuple):  # (its first line, its last line's end): the block between, as the tree has it
            start = text.find(replaced[0])
            end = text.find(replaced[1], start) if start >= 0 else -1
            old = text[start : end + len(replaced[1])] if end >= 0 else "\0"
        if text.count(old) != 1:
            raise SystemExit(f"{module} changed: variant {name} no longer applies (update {__file__})")
        path.write_text(text.replace(old, new), encoding="utf-8")
        print(f"{name}: {tree}")
    return 0


# -- the translated variant's legs (``replay.py --variants``, over captures of the ``expanded`` phase) ----------------
# In a KB of both languages a translating expansion finds the other language's pages on the query's topic: the
# same-language questions lose 0.13-0.17 (EVAL.md, session 33). These hooks weigh the translation's legs down:
# ``k_lex`` x a note's BM25 value where the translation's leg gave it (its share of that leg's own top hit), ``k_dense``
# x a note's dense value from the translation's legs (the query's own dense leg, the first, counts in full).
#
#     .venv/bin/python eval/replay/replay.py /work/main/.kbsearch/replay33/*-expanded-bil.pkl \
#         --variants eval/replay/variants_s33_bil33.py --detail


def _default(rows: list[tuple[str, Any, float, float]], ctx: dict[str, Any]) -> list[float]:
    p, lead, stray = ctx["p"], ctx["lead"], ctx["stray"]
    return [dense + p.lexical_weight * n.lexical + p.rare_agreement * agreed
            + max(p.lead_bonus if note == lead else 0.0, p.stray_bonus if note == stray else 0.0)
            for note, n, dense, agreed in rows]  # fmt: skip


def translation(k_lex: float, k_dense: float, sure: float = 0.0) -> Any:
    """``sure``: only where the query's own BM25 leg's best share (read back from the trust ``gain``) is at least
    that: the query's words found in full in a note of its own language."""

    def hook(rows: list[tuple[str, Any, float, float]], ctx: dict[str, Any]) -> list[float]:
        p, lead, stray, legs = ctx["p"], ctx["lead"], ctx["stray"], ctx["dense_legs"]
        best = (ctx["gain"] - 1.0) / p.confidence_gain + 0.5 if p.confidence_gain else 1.0
        if best < sure:
            return _default(rows, ctx)
        span, floor = ctx["span"], ctx["floor"]
        own: dict[Any, float] = {}  # the query's own dense leg's value of each note
        for c in legs[0] if legs else ():
            value = max(0.0, (c.score - floor) / span) if span > 0 else 1.0
            note = c.payload.get("path")
            own[note] = max(own.get(note, 0.0), value)
        scores = []
        for note, n, _, agreed in rows:
            dense = max(own.get(note, 0.0), k_dense * n.dense) if len(legs) > 1 else n.dense
            dense = dense if dense <= p.close else p.close + p.close_weight * (dense - p.close)
            lexical = n.lexical
            if n.translated_chunk is not None and n.lexical_chunk is n.translated_chunk:
                lexical *= k_lex
            bonus = max(p.lead_bonus if note == lead else 0.0, p.stray_bonus if note == stray else 0.0)
            scores.append(dense + p.lexical_weight * lexical + p.rare_agreement * agreed + bonus)
        return scores

    return hook


VARIANTS = [("defaults (hook)", _default)] + [
    (f"translation: bm25 x{k_lex}, dense x{k_dense}", translation(k_lex, k_dense))
    for k_lex, k_dense in ((0.5, 1.0), (0.25, 1.0), (0.0, 1.0), (1.0, 0.9), (1.0, 0.8), (0.5, 0.9), (0.25, 0.8))
]
VARIANTS += [
    (f"translation where own bm25 >= {sure}: bm25 x{k_lex}", translation(k_lex, 1.0, sure))
    for sure in (0.6, 0.75, 0.9)
    for k_lex in (0.5, 0.25)
]


def closer(k_lex: float, margin: float = 0.0, both: bool = False) -> Any:
    """The language whose dense leg matches best holds the answer: where the query's own dense leg's best cosine is
    at least the translation's (+ ``margin``), the translation's BM25 values count ``k_lex``; with ``both``, where the
    translation's is higher, the query's own BM25 values in notes of the query's language count ``k_lex`` too."""

    def hook(rows: list[tuple[str, Any, float, float]], ctx: dict[str, Any]) -> list[float]:
        p, lead, stray, legs = ctx["p"], ctx["lead"], ctx["stray"], ctx["dense_legs"]
        if len(legs) < 2 or not legs[0] or not legs[1]:
            return _default(rows, ctx)
        own, theirs = max(c.score for c in legs[0]), max(c.score for c in legs[1])
        language = ctx["evidence"].language
        scores = []
        for note, n, dense, agreed in rows:
            lexical = n.lexical
            by_translation = n.translated_chunk is not None and n.lexical_chunk is n.translated_chunk
            own_side = not by_translation and n.lexical_chunk is not None
            own_side = own_side and n.lexical_chunk.payload.get("lang") == language
            if (by_translation and own >= theirs + margin) or (both and own_side and own < theirs + margin):
                lexical *= k_lex
            bonus = max(p.lead_bonus if note == lead else 0.0, p.stray_bonus if note == stray else 0.0)
            scores.append(dense + p.lexical_weight * lexical + p.rare_agreement * agreed + bonus)
        return scores

    return hook


VARIANTS += [
    (f"closer leg: translation bm25 x{k}{' +both' if both else ''}", closer(k, 0.0, both))
    for k in (0.0, 0.25, 0.5)
    for both in (False, True)
]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
