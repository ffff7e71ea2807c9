"""Session 36's variants (fus36a, issue 19): a dense leg of the other language's notes, simulated from the captures.

In a KB written in both languages (``eval/make_bilingual.py``) e5 ranks notes of the query's own language first, so
an answer in the other language sits below them in the query's dense leg. The captured dense leg (variant 0, the top
``SEARCH_PREFETCH_LIMIT`` chunks) holds, among them, the notes of the other language: ranked alone they approximate
a dense search filtered to that language (``eval/replay/other_leg.py``: e5 ``bil:cross-en-to-ru``, 79 searches whose
answer is Russian: 14 have it first in the whole leg, 60 first among the Russian notes alone). The hooks below give
that sub-leg a say. ``gap`` is the distance, on the fusion's dense scale (0 at the floor, 1 at the best cosine), from
the best note of the query's language down to the best note of another language (the "closer leg": within the
model's own calibration, not raw cosines); nothing changes where it is 0 or less (the other language already leads:
``_across``'s case) or where the leg holds no note of another language (a KB of one language):

- ``shift f G``: where ``0 < gap < G``, every note of another language has its dense value raised by ``f × gap``
  (``f`` 1: the sub-leg's first ties with the own leg's first, and the close calls and BM25 decide between them);
- ``third w G k``: where ``0 < gap < G``, the sub-leg's first ``k`` notes gain ``w × (1 − (rank − 1) / k)`` (a third
  leg of its own weight, by rank);
- ``offset f rS-D STAT less M``: every note of another language raised by ``f`` × the two sub-legs' systematic offset
  (the ``STAT``, median or least, over ranks ``S``..``D`` of the own language's r-th note's dense value minus the other
  language's r-th, less ``M``; nothing where that is 0 or less, or where either sub-leg holds fewer than ``S`` notes):
  the model's own-language bias, read from each search's leg below its first notes, so that an answer standing out
  of its own leg stays ahead; ``agree``: not where dense's first note, of the query's language, is BM25's first too;
  ``firsts K``: only the sub-leg's first ``K`` notes raised.

EVAL.md, "Session 36: a dense leg of the other language's notes, simulated (issue 19, fus36a)": a negative result.

    .venv/bin/python eval/replay/other_leg.py $CAPS
    .venv/bin/python eval/replay/replay.py $CAPS --variants eval/replay/variants_s36_fus36a.py --detail
    FUS36A_GRID=1 .venv/bin/python eval/replay/replay.py /work/main/.kbsearch/replay33/{e5,use}-classes-bil.pkl \
        /work/main/.kbsearch/replay32/{e5,use}-classes.pkl --variants eval/replay/variants_s36_fus36a.py --detail
"""

from __future__ import annotations

from typing import Any


def _score(note: str, n: Any, value: float, agreed: float, ctx: dict[str, Any]) -> float:
    p, lead, stray = ctx["p"], ctx["lead"], ctx["stray"]
    dense = value if value <= p.close else p.close + p.close_weight * (value - p.close)
    bonus = max(p.lead_bonus if note == lead else 0.0, p.stray_bonus if note == stray else 0.0)
    return dense + p.lexical_weight * n.lexical + p.rare_agreement * agreed + bonus


def _gated(rows: list[tuple[str, Any, float, float]], ctx: dict[str, Any], limit: float) -> tuple[float, list[int]]:
    """The gap (the query's language's best dense value − another language's best) and the rows of another
    language's notes, best dense first, where ``0 < gap < limit``; else no rows."""
    language = ctx["evidence"].language
    if language is None:
        return 0.0, []
    own, other = _curves(rows, language)
    gap = (own[0] if own else 0.0) - rows[other[0]][1].dense if other else 0.0
    return (gap, other) if 0.0 < gap < limit else (0.0, [])


def shift(f: float, limit: float) -> Any:
    def hook(rows: list[tuple[str, Any, float, float]], ctx: dict[str, Any]) -> list[float] | None:
        gap, other = _gated(rows, ctx, limit)
        if not other:
            return None
        raised = set(other)
        return [_score(note, n, n.dense + f * gap if i in raised else n.dense, agreed, ctx)
                for i, (note, n, _, agreed) in enumerate(rows)]  # fmt: skip

    return hook


def third(w: float, limit: float, k: int) -> Any:
    def hook(rows: list[tuple[str, Any, float, float]], ctx: dict[str, Any]) -> list[float] | None:
        _, other = _gated(rows, ctx, limit)
        if not other:
            return None
        gain = {i: w * (1 - r / k) for r, i in enumerate(other[:k])}
        return [_score(note, n, n.dense, agreed, ctx) + gain.get(i, 0.0)
                for i, (note, n, _, agreed) in enumerate(rows)]  # fmt: skip

    return hook


def _curves(rows: list[tuple[str, Any, float, float]], language: str) -> tuple[list[float], list[int]]:
    """The dense values of the query's language's notes, best first, and the rows of another language's, best
    first."""
    own, other = [], []
    for i, (_, n, _, _) in enumerate(rows):
        c = n.dense_chunk
        if c is None or n.dense <= 0.0:
            continue
        lang = c.payload.get("lang")
        if lang == language:
            own.append(n.dense)
        elif lang is not None:
            other.append(i)
    own.sort(reverse=True)
    other.sort(key=lambda i: (-rows[i][1].dense, rows[i][0]))
    return own, other


def lifted(
    rows: list[tuple[str, Any, float, float]], language: str, start: int, depth: int, stat: str, margin: float
) -> tuple[float, list[int]]:
    """The ``offset`` lift (the ``stat`` over ranks ``start``..``depth`` of the own language's r-th note's dense
    value − the other language's r-th, less ``margin``; 0 where no rank pairs) and the other language's rows."""
    own, other = _curves(rows, language)
    pairs = sorted(own[r] - rows[other[r]][1].dense for r in range(start - 1, min(depth, len(own), len(other))))
    if not pairs:
        return 0.0, other
    return {"median": pairs[len(pairs) // 2], "mean": sum(pairs) / len(pairs), "min": pairs[0]}[stat] - margin, other


def offset(
    f: float, start: int, depth: int, stat: str = "median", margin: float = 0.0, agree: bool = False, firsts: int = 0
) -> Any:
    """The other language's notes raised by ``f`` x the two sub-legs' systematic offset: the median (or the mean,
    the least) over ranks ``start``..``depth`` of (the own language's r-th note − the other's r-th), not the first
    notes' gap: an answer standing out of its own leg stays ahead of the other's first."""

    def hook(rows: list[tuple[str, Any, float, float]], ctx: dict[str, Any]) -> list[float] | None:
        language = ctx["evidence"].language
        if language is None:
            return None
        lift, other = lifted(rows, language, start, depth, stat, margin)
        if lift <= 0.0:
            return None
        if agree:  # the legs agree on a note of the query's language: dense's first is BM25's first
            first = max(range(len(rows)), key=lambda i: (rows[i][1].dense, rows[i][0]))
            best = max(range(len(rows)), key=lambda i: (rows[i][1].lexical, rows[i][0]))
            if (
                first == best
                and rows[first][1].lexical > 0.0
                and rows[first][1].dense_chunk.payload.get("lang") == language
            ):
                return None
        raised = set(other[:firsts] if firsts else other)
        return [_score(note, n, n.dense + f * lift if i in raised else n.dense, agreed, ctx)
                for i, (note, n, _, agreed) in enumerate(rows)]  # fmt: skip

    return hook


#: The shift grid and the third leg (bilingual KB only: ``--only`` each, or all with ``GRID``), then the offsets
#: replayed over every capture.
GRID = [(f"shift {f} G {g}", shift(f, g)) for f in (0.5, 1.0) for g in (0.3, 0.45, 0.6, 2.0)]
GRID += [(f"third {w} G {g} k {k}", third(w, g, k)) for w in (0.1, 0.2) for g in (0.3, 0.45) for k in (1, 3)]
GRID += [(f"offset 1.0 r{s}-{d} {st} less {m}", offset(1.0, s, d, st, m))
         for s, d, st in ((2, 10, "min"), (2, 10, "median"), (3, 20, "median"))
         for m in (0.0, 0.05, 0.1, 0.15, 0.2)]  # fmt: skip
GRID += [(f"offset 1.0 r{s}-{d} {st} less {m} firsts {k}", offset(1.0, s, d, st, m, False, k))
         for s, d, st in ((2, 10, "min"), (3, 20, "median")) for m in (0.0, 0.05) for k in (1, 2)]  # fmt: skip
VARIANTS = [
    ("shift 0 (the hook itself: must move nothing)", shift(0.0, 2.0)),
    ("offset 1.0 r2-10 min less 0.05", offset(1.0, 2, 10, "min", 0.05)),
    ("offset 1.0 r3-20 median less 0.05", offset(1.0, 3, 20, "median", 0.05)),
    ("offset 1.0 r3-20 median less 0.1", offset(1.0, 3, 20, "median", 0.1)),
    ("offset 1.0 r3-20 median less 0.05 agree", offset(1.0, 3, 20, "median", 0.05, True)),
]
if __import__("os").environ.get("FUS36A_GRID"):
    VARIANTS = VARIANTS[:1] + GRID
