"""Session 25's variants for ``eval/replay/replay.py --variants`` (EVAL.md, "Session 25"): session 24's candidate,
BM25's clear lead, and its neighbours over every cell of both models and both corpora; then the same rule gated by
where the dense leg ranks BM25's sure note (the bonus only when dense has it within its first ``within`` notes).

    .venv/bin/python eval/replay/replay.py .kbsearch/replay/*.pkl --set lead_bonus=0 --variants eval/replay/variants_s25.py
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbsearch import fusion

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float]]

_spec = importlib.util.spec_from_file_location("variants_s24", Path(__file__).with_name("variants_s24.py"))
assert _spec is not None and _spec.loader is not None
_s24 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_s24)
defaults: Hook = _s24.defaults


def clear_lead(beta: float, lead: float, floor: float, within: int | None = None) -> Hook:
    """BM25's first note + beta when its lexical value (share × language × coverage × trust) is at least ``floor``
    and leads BM25's second note by ``lead`` of its value or more (session 24's ``lexical_lead``); with ``within``,
    only when the dense leg ranks that note among its first ``within`` notes. Decided by
    :func:`kbsearch.fusion.clear_lead` itself, and scored over the fusion without it: replay with
    ``--set lead_bonus=0``."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        base = defaults(rows, ctx)
        params = dataclasses.replace(
            ctx["p"], lead_bonus=beta, lead_margin=lead, lead_value=floor, lead_within=within or len(rows) + 1
        )
        note = fusion.clear_lead({note: n for note, n, _, _ in rows}, params)
        if note is not None:
            base[next(i for i, row in enumerate(rows) if row[0] == note)] += beta
        return base

    return hook


BETAS = (0.0625, 0.075, 0.0875)
LEADS = (0.075, 0.1, 0.125)
VALUES = (0.3, 0.35)

VARIANTS: list[tuple[str, Hook]] = [
    # session 24's candidate (β 0.075, lead ≥ 0.1, value ≥ 0.3) and its neighbours
    *[(f"BM25 lead β {b} lead ≥ {m} value ≥ {v}", clear_lead(b, m, v)) for b in BETAS for m in LEADS for v in VALUES],
    # gated by dense's rank of the note: within its first 3 notes, over a wider grid of lead and value
    *[
        (f"BM25 lead β {b} lead ≥ {m} value ≥ {v} dense top 3", clear_lead(b, m, v, 3))
        for b in BETAS
        for m in (0.05, *LEADS)
        for v in (0.25, *VALUES)
    ],
    # within its first 2, 4 or 5 notes
    *[
        (f"BM25 lead β 0.075 lead ≥ {m} value ≥ {v} dense top {k}", clear_lead(0.075, m, v, k))
        for k in (2, 4, 5)
        for m in (0.05, *LEADS)
        for v in (0.25, *VALUES)
    ],
]
