"""Session 38's variants (same38, issue 19): a note's several chunks as evidence, simulated from the captures.

Every rule so far reads each leg as one best chunk per note. These hooks add, on top of the defaults' score
(:func:`replay.default_scores`: the close calls, BM25 x its weight after the trust, the rare-term agreement, the
lead and stray bonuses; the pins stay on top as the fusion decided them), a bounded credit from the note's other
chunks. Pre-registered in ``/work/notes/s38/same38-prereg.md`` (exact parameters there and below).

Per note: ``d1 >= d2 >= d3`` its distinct chunks' values on the fusion's dense scale (``(cos - floor) / span``,
clipped at 0) over every dense leg of the search (a chunk once, at its best); ``l1 >= l2 >= l3`` its chunks in the
query's own BM25 leg (``variant 0``), each read as the note's lexical value (after the trust, the language factor
and the coverage, and 0 where ``_across`` silenced it) x the chunk's score / the note's best chunk's score.

    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/replay/replay.py CAPTURE.pkl ... \\
        --variants eval/replay/variants_s38_same38.py --detail [--only NAME] [--changes]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import default_scores

Row = tuple[str, Any, float, float]


def _chunk_key(c: Any) -> Any:
    return (c.payload.get("path"), c.payload.get("chunk_index"), c.id)


def dense_values(ctx: dict[str, Any], within: int | None = None) -> dict[str, list[float]]:
    """Note → its distinct chunks' values on the dense scale, best first (``within``: only chunks among their leg's
    first ``within``)."""
    floor, span = ctx["floor"], ctx["span"]
    best: dict[Any, tuple[str, float]] = {}
    for chunks in ctx["dense_legs"]:
        for c in chunks[:within] if within else chunks:
            value = max(0.0, (c.score - floor) / span) if span > 0 else 1.0
            key = _chunk_key(c)
            if key not in best or value > best[key][1]:
                best[key] = (c.payload.get("path"), value)
    out: dict[str, list[float]] = {}
    for path, value in best.values():
        out.setdefault(path, []).append(value)
    for values in out.values():
        values.sort(reverse=True)
    return out


def own_lexical(ctx: dict[str, Any]) -> list[Any]:
    return next((chunks for leg, chunks in ctx["lexical_legs"] if leg.variant == 0), [])


def lexical_values(rows: list[Row], ctx: dict[str, Any], within: int | None = None) -> dict[str, list[float]]:
    """Note → its own-BM25-leg chunks' values (the note's lexical value x score / its best chunk's score)."""
    chunks = own_lexical(ctx)
    scores: dict[str, list[float]] = {}
    for c in chunks[:within] if within else chunks:
        scores.setdefault(c.payload.get("path"), []).append(c.score)
    out: dict[str, list[float]] = {}
    for note, n, _, _ in rows:
        its = n.lexical_chunk
        held = scores.get(note)
        if not held or its is None or its.score <= 0 or n.lexical <= 0 or its not in chunks:
            continue
        out[note] = sorted((n.lexical * min(1.0, s / its.score) for s in held), reverse=True)
    return out


def _nth(values: list[float] | None, i: int) -> float:
    return values[i] if values and len(values) > i else 0.0


def chunks_credit(dense_weight: float, lexical_weight: float, depth: int = 2, within: int | None = None) -> Callable:
    """The note's 2nd (``depth`` 2) or mean of 2nd and 3rd (``depth`` 3) chunk value, per leg, times the weight
    (BM25's times the fusion's lexical weight too)."""

    def hook(rows: list[Row], ctx: dict[str, Any]) -> list[float]:
        base = default_scores(rows, ctx)
        dense = dense_values(ctx, within) if dense_weight else {}
        lexical = lexical_values(rows, ctx, within) if lexical_weight else {}
        w = ctx["p"].lexical_weight
        out = []
        for (note, _, _, _), score in zip(rows, base, strict=True):
            d, lx = dense.get(note), lexical.get(note)
            if depth == 2:
                extra_d, extra_l = _nth(d, 1), _nth(lx, 1)
            else:
                extra_d, extra_l = (_nth(d, 1) + _nth(d, 2)) / 2, (_nth(lx, 1) + _nth(lx, 2)) / 2
            out.append(score + dense_weight * extra_d + w * lexical_weight * extra_l)
        return out

    return hook


def mnz(weight: float, within: int = 10, cap: int = 2) -> Callable:
    """CombMNZ-like: ``weight`` x the note's extra chunks (beyond one per leg) among the query's own dense leg's and
    own BM25 leg's first ``within`` chunks, at most ``cap``."""

    def hook(rows: list[Row], ctx: dict[str, Any]) -> list[float]:
        base = default_scores(rows, ctx)
        own_dense = ctx["dense_legs"][0] if ctx["dense_legs"] else []
        extra: dict[str, int] = {}
        for chunks in (own_dense[:within], own_lexical(ctx)[:within]):
            counted: dict[str, int] = {}
            for c in chunks:
                path = c.payload.get("path")
                counted[path] = counted.get(path, 0) + 1
            for path, m in counted.items():
                extra[path] = extra.get(path, 0) + m - 1
        return [
            score + weight * min(extra.get(note, 0), cap) for (note, _, _, _), score in zip(rows, base, strict=True)
        ]

    return hook


def note_agree(bonus: float, within: int = 5) -> Callable:
    """``bonus`` for a note among both legs' first ``within`` notes (by ``n.dense`` and by ``n.lexical``) whose
    dense chunk and BM25 chunk are different chunks of it."""

    def hook(rows: list[Row], ctx: dict[str, Any]) -> list[float]:
        base = default_scores(rows, ctx)
        by_dense = {r[0] for r in sorted(rows, key=lambda r: (-r[1].dense, r[0]))[:within] if r[1].dense > 0}
        by_lexical = {r[0] for r in sorted(rows, key=lambda r: (-r[1].lexical, r[0]))[:within] if r[1].lexical > 0}
        out = []
        for (note, n, _, _), score in zip(rows, base, strict=True):
            apart = (n.dense_chunk is not None and n.lexical_chunk is not None
                     and _chunk_key(n.dense_chunk) != _chunk_key(n.lexical_chunk))  # fmt: skip
            out.append(score + (bonus if apart and note in by_dense and note in by_lexical else 0.0))
        return out

    return hook


VARIANTS = [
    ("zero (the hook itself: must move nothing)", chunks_credit(0.0, 0.0)),
    ("second-dense-0.05", chunks_credit(0.05, 0.0)),
    ("second-dense-0.10", chunks_credit(0.10, 0.0)),
    ("second-bm25-0.05", chunks_credit(0.0, 0.05)),
    ("second-bm25-0.10", chunks_credit(0.0, 0.10)),
    ("second-both-0.10", chunks_credit(0.10, 0.10)),
    ("combsum3-both-0.10", chunks_credit(0.10, 0.10, depth=3)),
    ("second-both-top10-0.10", chunks_credit(0.10, 0.10, within=10)),
    ("mnz-top10-0.05", mnz(0.05)),
    ("note-agree-0.03", note_agree(0.03)),
    ("note-agree-0.05", note_agree(0.05)),
]
