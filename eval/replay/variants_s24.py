"""Session 24's fusion variants for ``eval/replay/replay.py --variants`` (EVAL.md, "Session 24"): each family
over a grid of its parameters, every one a hook over the fusion's per-note rows (see replay.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import fmean, pstdev
from typing import Any

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float]]


def defaults(rows: Rows, ctx: dict[str, Any]) -> list[float]:
    p = ctx["p"]
    return [dense + p.lexical_weight * n.lexical + p.rare_agreement * agreed for _, n, dense, agreed in rows]


def _weighted(rows: Rows, ctx: dict[str, Any], factor: float) -> list[float]:
    p = ctx["p"]
    return [dense + factor * p.lexical_weight * n.lexical + p.rare_agreement * agreed for _, n, dense, agreed in rows]


def combsum(beta: float, norm: str = "z", mnz: bool = False, gate: float = 0.0) -> Hook:
    """CombSUM (CombMNZ: × the legs that hold the note) of each leg normalised over the query's candidates
    (z-score or min-max), × beta, added where BM25's trust is at least ``gate``."""

    def scale(xs: list[float]) -> list[float]:
        if norm == "z":
            mean, sd = fmean(xs), pstdev(xs)
            return [(x - mean) / sd if sd > 0 else 0.0 for x in xs]
        low, high = min(xs), max(xs)
        return [(x - low) / (high - low) if high > low else 0.0 for x in xs]

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        base = defaults(rows, ctx)
        if ctx["gain"] < gate or len(rows) < 3:
            return base
        dense, lexical = scale([n.dense for _, n, _, _ in rows]), scale([n.lexical for _, n, _, _ in rows])
        legs = [((n.dense > 0) + (n.lexical > 0)) if mnz else 1 for _, n, _, _ in rows]
        return [b + beta * (d + x) * k for b, d, x, k in zip(base, dense, lexical, legs, strict=True)]

    return hook


def head_shape(k: int, alpha: float, flat0: float, low: float = 0.5, high: float = 2.0) -> Hook:
    """The lexical weight × clamp(1 + alpha × (flat0 − (dense 1st − dense k-th note)), low, high): a flat dense
    head (a weak model's close cosines) lets BM25 count more."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        dense = sorted((n.dense for _, n, _, _ in rows), reverse=True)
        if len(dense) < k:
            return defaults(rows, ctx)
        return _weighted(rows, ctx, min(high, max(low, 1 + alpha * (flat0 - (dense[0] - dense[k - 1])))))

    return hook


def query_length(alpha: float, n0: int, low: float = 0.6, high: float = 1.6) -> Hook:
    """The lexical weight × clamp(1 + alpha × (query terms − n0), low, high)."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        return _weighted(rows, ctx, min(high, max(low, 1 + alpha * (len(ctx["evidence"].terms) - n0))))

    return hook


def several_chunks(lam: float, m: int = 3) -> Hook:
    """A note's dense value + lam × the mean of its next m − 1 chunks' scaled cosines (max + λ·mean)."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        span, floor = ctx["span"], ctx["floor"]
        per: dict[str, list[float]] = {}
        for chunks in ctx["dense_legs"]:
            for c in chunks:
                per.setdefault(c.payload.get("path"), []).append(
                    max(0.0, (c.score - floor) / span) if span > 0 else 1.0
                )
        base = defaults(rows, ctx)
        out = []
        for b, (note, _, _, _) in zip(base, rows, strict=True):
            rest = sorted(per.get(note, []), reverse=True)[1:m]
            out.append(b + (lam * fmean(rest) if rest else 0.0))
        return out

    return hook


def geometric(beta: float, gate: float = 0.0) -> Hook:
    """Note-level agreement: + beta × sqrt(dense × lexical / the best lexical), where BM25's trust ≥ ``gate``."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        base = defaults(rows, ctx)
        best = max((n.lexical for _, n, _, _ in rows), default=0.0)
        if ctx["gain"] < gate or best <= 0:
            return base
        return [
            b + beta * math.sqrt(max(0.0, n.dense) * n.lexical / best)
            for b, (_, n, _, _) in zip(base, rows, strict=True)
        ]

    return hook


def tie_break(eps: float, k: int = 10) -> Hook:
    """Rerank-free tie-breaking: + eps × each leg's (k − rank)⁺ / 2k (matters only between near-equal notes)."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        by_dense = {r[0]: i for i, r in enumerate(sorted(rows, key=lambda r: -r[1].dense))}
        by_lexical = {r[0]: i for i, r in enumerate(sorted(rows, key=lambda r: -r[1].lexical))}
        return [b + eps * (max(0, k - by_dense[r[0]]) + max(0, k - by_lexical[r[0]])) / (2 * k)
                for b, r in zip(defaults(rows, ctx), rows, strict=True)]  # fmt: skip

    return hook


def lexical_lead(beta: float, lead: float, floor: float = 0.0) -> Hook:
    """BM25's first note + beta when it leads BM25's second by ``lead`` of its value or more and its lexical value
    (share × language × coverage × trust) is at least ``floor``: BM25 sure, and sure of one note."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        base = defaults(rows, ctx)
        ranked = sorted(((n.lexical, i) for i, (_, n, _, _) in enumerate(rows)), reverse=True)
        first = ranked[0][0] if ranked else 0.0
        if len(ranked) >= 2 and first > 0 and first >= floor and (first - ranked[1][0]) / first >= lead:
            base[ranked[0][1]] += beta
        return base

    return hook


VARIANTS: list[tuple[str, Hook]] = [
    *[(f"CombSUM z-score β {b}", combsum(b)) for b in (0.02, 0.05)],
    ("CombMNZ z-score β 0.03", combsum(0.03, mnz=True)),
    *[(f"CombSUM min-max β {b} trust ≥ {g}", combsum(b, "mm", gate=g)) for b in (0.03, 0.05, 0.1) for g in (0.0, 1.0)],
    *[
        (f"dense head k {k} α {a} flat0 {f}", head_shape(k, a, f))
        for k, a, f in ((3, 2, 0.2), (5, 1, 0.3), (10, 1, 0.5))
    ],
    *[(f"query length α {a} n0 {n}", query_length(a, n)) for a, n in ((0.05, 4), (0.05, 6), (0.1, 6), (-0.05, 6))],
    *[(f"several dense chunks λ {lam}", several_chunks(lam)) for lam in (0.05, 0.1)],
    *[(f"geometric agreement β {b} trust ≥ {g}", geometric(b, g)) for b in (0.02, 0.05, 0.1) for g in (0.0, 1.0)],
    *[(f"tie-break ε {e}", tie_break(e)) for e in (0.01, 0.02)],
    *[(f"BM25 lead β {b} lead ≥ {m}", lexical_lead(b, m)) for b, m in ((0.1, 0.3), (0.2, 0.2))],
    *[
        (f"BM25 lead β {b} lead ≥ {m} value ≥ {v}", lexical_lead(b, m, v))
        for b in (0.05, 0.0625, 0.075, 0.0875, 0.1, 0.125)
        for m in (0.05, 0.1, 0.15)
        for v in (0.25, 0.3, 0.35, 0.4)
    ],
]
