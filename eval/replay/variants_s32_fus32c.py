"""Session 32's variants (fus32c) for ``eval/replay/replay.py --variants`` (EVAL.md, "Session 32: ... (fus32c)"):
an exact match of a query asked across languages. An English title over LibreOffice Help's Russian half ("Sorting
Data", "Version Management", "Animating Text") has no identifier; its words are common English words, "rare" in
that half only because its notes are Russian, so the notes holding them (its few English pages, Russian notes
quoting an English label) are pinned as exact matches over the answer the dense leg ranks first.

    .venv/bin/python eval/replay/replay.py /work/main/.kbsearch/replay32/*.pkl \\
        --variants eval/replay/variants_s32_fus32c.py --detail --changes [--only NAME]

``across pin: dense within k`` keeps the pin of a query with no identifier (and no menu path) whose own dense leg
puts first a note of another language than the query only for the pinned notes among dense's first ``k``;
``+divided`` applies it also where dense's first note is of the query's language but most of the leg's notes are
not (``_across``'s second case); ``or bm25 within 2`` keeps too the notes among BM25's first two (its lexical
value after the trust and ``_across``: fus32a's ``_about``). The first variant is the hook at the defaults. The
rule taken into ``fusion.py`` is ``across pin: dense within 3 or bm25 within 2``: over this branch (the rule on)
these pin variants move nothing more than it does, so replay them over main's tip
(``PYTHONPATH=/work/main/layers/kbsearch:/work/main/tools``) to see their counts.

``across close: W`` (``+divided`` as above): in a query asked across languages dense's close calls count at ``W``
instead of ``close_weight`` (1.0: in full), BM25's damped values no longer deciding dense's first few; replayed over
this branch (refused: e5 gains, USE loses, EVAL.md).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # replay.py, beside this file
from replay import default_scores

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float]]


def _asked_across(ctx: dict[str, Any], divided: bool) -> bool:
    """The query's own dense leg puts first a note of another language (``divided``: or most of its notes are)."""
    evidence = ctx["evidence"]
    legs = ctx["dense_legs"]
    if evidence.language is None or not legs:
        return False
    asked = legs[0]
    first = max(asked, key=lambda c: c.score).payload.get("lang")
    if first is None:
        return False
    if first != evidence.language:
        return True
    if not divided:
        return False
    recorded: dict[Any, Any] = {}
    for c in asked:
        recorded.setdefault(c.payload.get("path"), c.payload.get("lang"))
    same = sum(1 for lang in recorded.values() if lang == evidence.language)
    other = sum(1 for lang in recorded.values() if lang is not None and lang != evidence.language)
    return other > same


def across_pin(k: int, divided: bool = False, bm25: int = 0) -> Hook:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        scores = default_scores(rows, ctx)
        p, evidence, pinned = ctx["p"], ctx["evidence"], ctx["pinned"]
        if not pinned or evidence.identifiers or evidence.ui_path or not _asked_across(ctx, divided):
            return scores
        notes = {note: n for note, n, _, _ in rows}
        for i, (note, n, _, agreed) in enumerate(rows):
            if note not in pinned:
                continue
            dense_ok = n.dense > 0 and sum(1 for m in notes.values() if m.dense > n.dense) < k
            lex_ok = bm25 > 0 and n.lexical > 0 and sum(1 for m in notes.values() if m.lexical > n.lexical) < bm25
            if not (dense_ok or lex_ok):  # unpinned: take back the lead the fusion adds to a pinned note
                scores[i] -= (1.0 + p.lexical_weight) * (2 if agreed > 0 else 1)
        return scores

    return hook


VARIANTS = [
    ("defaults (hook)", default_scores),
    ("across pin: dense within 3", across_pin(3)),
    ("across pin: dense within 1", across_pin(1)),
    ("across pin: dense within 5", across_pin(5)),
    ("across pin: dense within 3 +divided", across_pin(3, divided=True)),
    ("across pin: dense within 3 or bm25 within 2", across_pin(3, bm25=2)),
]
VARIANTS += [
    ("across pin: dense within 3 or bm25 within 2 +divided", across_pin(3, divided=True, bm25=2)),
    ("across pin: dense within 3 or bm25 within 1", across_pin(3, bm25=1)),
]


def across_close(weight: float, divided: bool = False) -> Hook:
    """A query asked across languages: dense's close calls count at ``weight`` (1.0: in full) instead of
    ``close_weight``: BM25's values there are all damped (x ``cross_language``: by the leg's language or ``_across``),
    yet with the top of the dense scale compressed they still decide which of dense's first notes leads."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        scores = default_scores(rows, ctx)
        if not _asked_across(ctx, divided):
            return scores
        p = ctx["p"]
        for i, (_, n, _, _) in enumerate(rows):
            if n.dense > p.close:
                scores[i] += (weight - p.close_weight) * (n.dense - p.close)
        return scores

    return hook


VARIANTS += [
    ("across close: full", across_close(1.0)),
    ("across close: 0.75", across_close(0.75)),
    ("across close: full +divided", across_close(1.0, divided=True)),
]
