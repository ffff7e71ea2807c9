"""Session 29's variants (fus29b) for ``eval/replay/replay.py --variants`` (EVAL.md, "Session 29: dense's stray
first"): what was tried for USE's two short cells, gnome-question-en and lo-keyword-en, where BM25 has the answer
first and USE's dense leg ranks it past its first three. Each hook scores every note itself, with the taken rule's
bonus off (``--set stray_bonus=0``: the defaults are then main's fusion before the rule, ``819b19c``):

    .venv/bin/python eval/replay/replay.py /work/main/.kbsearch/replay29/*.pkl --set stray_bonus=0 \\
        --variants eval/replay/variants_s29_fus29b.py [--detail]

The families:

- ``lead dense≥v``: BM25's clear lead (``clear_lead``'s value and margin) gated by the note's own dense value
  instead of dense's first three (``or``: either gate);
- ``agree``: notes that both legs rank in their first ``top`` (a lexical value of at least ``lmin``) gain ``c``,
  over questions (a rank agreement, RRF-like, between the two legs);
- ``boost``: the whole BM25 leg × ``mult`` when dense's first ``k`` notes hold under ``a0`` of BM25's first note's
  lexical value on average (dense's top lacks the query's words);
- ``stray``: the rule taken (``fusion.stray_lead``) and its neighbours: BM25's first note + ``b`` wherever dense
  ranks it, when BM25 is sure (value ≥ ``lead_value``) of it by ``m`` of its value over its second, dense's first
  note holds under ``r0`` of that value, and dense's second note is above ``c2`` on the dense scale (``q``: over
  questions only, not lookups).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbsearch import fusion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import default_scores

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float]]


def _lexical_top(rows: Rows) -> tuple[str | None, float, float]:
    lead, first, second = None, 0.0, 0.0
    for note, n, _, _ in rows:
        if n.lexical > first:
            lead, first, second = note, n.lexical, first
        elif n.lexical > second:
            second = n.lexical
    return lead, first, second


def _by_dense(rows: Rows) -> list[tuple[str, Any, float, float]]:
    return sorted(rows, key=lambda row: (-row[1].dense, row[0]))


def _ranks(rows: Rows, value: Callable[[Any], float]) -> dict[str, int]:
    ordered = sorted((row for row in rows if value(row[1]) > 0), key=lambda row: (-value(row[1]), row[0]))
    return {row[0]: i for i, row in enumerate(ordered, 1)}


def lead_dense(dmin: float, bonus: float, either: bool) -> Hook:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        p, scores = ctx["p"], default_scores(rows, ctx)
        lead, first, second = _lexical_top(rows)
        if lead is None or first < p.lead_value or (first - second) / first < p.lead_margin:
            return scores
        dense = next(n.dense for note, n, _, _ in rows if note == lead)
        within = sum(n.dense > dense for _, n, _, _ in rows) < p.lead_within and dense > 0
        if not (dense >= dmin or (either and within)):
            return scores
        return [s - (p.lead_bonus if note == ctx["lead"] else 0.0) + (bonus if note == lead else 0.0)
                for s, (note, _, _, _) in zip(scores, rows, strict=True)]  # fmt: skip

    return hook


def agree(top: int, c: float, lmin: float) -> Hook:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        scores = default_scores(rows, ctx)
        if fusion.is_lookup(ctx["evidence"], ctx["p"]):
            return scores
        dense, lexical = _ranks(rows, lambda n: n.dense), _ranks(rows, lambda n: n.lexical)
        return [s + (c if dense.get(note, top + 1) <= top and lexical.get(note, top + 1) <= top
                     and n.lexical >= lmin else 0.0)
                for s, (note, n, _, _) in zip(scores, rows, strict=True)]  # fmt: skip

    return hook


def boost(k: int, a0: float, mult: float) -> Hook:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        p, scores = ctx["p"], default_scores(rows, ctx)
        _, first, _ = _lexical_top(rows)
        if first < p.lead_value:
            return scores
        if sum(n.lexical for _, n, _, _ in _by_dense(rows)[:k]) / k >= a0 * first:
            return scores
        return [s + p.lexical_weight * (mult - 1) * n.lexical for s, (_, n, _, _) in zip(scores, rows, strict=True)]

    return hook


def stray(r0: float, b: float, m: float, c2: float = 0.8, questions: bool = False) -> Hook:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        p, scores = ctx["p"], default_scores(rows, ctx)
        if questions and fusion.is_lookup(ctx["evidence"], p):
            return scores
        lead, first, second = _lexical_top(rows)
        if lead is None or lead == ctx["lead"] or first < p.lead_value or (first - second) / first < m:
            return scores
        ordered = _by_dense(rows)
        if len(ordered) < 2 or ordered[0][0] == lead or ordered[1][1].dense <= c2:
            return scores
        if ordered[0][1].lexical >= r0 * first:
            return scores
        return [s + (b if note == lead else 0.0) for s, (note, _, _, _) in zip(scores, rows, strict=True)]

    return hook


VARIANTS = (
    [("lead dense≥0.6 b=0.075", lead_dense(0.6, 0.075, False)),
     ("lead dense≥0.75 or first three, b=0.1", lead_dense(0.75, 0.1, True)),
     ("agree top=3 c=0.02 lmin=0.3", agree(3, 0.02, 0.3)),
     ("agree top=2 c=0.02 lmin=0", agree(2, 0.02, 0.0)),
     ("boost k=3 a0=0.5 x2", boost(3, 0.5, 2.0)),
     ("boost k=5 a0=0.5 x3", boost(5, 0.5, 3.0))]
    + [(f"stray r0=0.4 b={b} m=0.2", stray(0.4, b, 0.2)) for b in (0.075, 0.2, 0.3, 0.4)]
    + [(f"stray r0=0.4 b=0.2 m={m}", stray(0.4, 0.2, m)) for m in (0.15, 0.175, 0.25)]
    + [(f"stray r0={r} b=0.2 m=0.2", stray(r, 0.2, 0.2)) for r in (0.3, 0.5)]
    + [("stray r0=0.4 b=0.2 m=0.2 c2=0", stray(0.4, 0.2, 0.2, 0.0)),
       ("stray r0=0.4 b=0.2 m=0.2 questions", stray(0.4, 0.2, 0.2, questions=True))]
)  # fmt: skip
