"""Session 28's variants for ``eval/replay/replay.py --variants`` (EVAL.md, "Session 28: BM25's same-language
matches when dense answers across languages"): the query's own BM25 matches in notes of its language × ``f`` when
the dense leg's first note is in another language, over every search (``damp``) or only over questions, not lookups
(``damp_questions``). They score after BM25's clear lead was judged on the undamped values (the rule as taken judges
it after), and over the fusion *before* the rule, so replay them with that tree's package first on the path:

    git worktree add /tmp/pre28 c49880e
    PYTHONPATH=/tmp/pre28/layers/kbsearch .venv/bin/python eval/replay/replay.py .kbsearch/replay/*.pkl \\
        --variants eval/replay/variants_s28.py --detail
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kbsearch import fusion

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float]]


def _language(n: Any) -> str | None:
    chunk = n.dense_chunk or n.lexical_chunk or n.translated_chunk
    return chunk.payload.get("lang") if chunk is not None else None


def damp(f: float) -> Hook:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        p, evidence, lead = ctx["p"], ctx["evidence"], ctx["lead"]
        first = _language(max(rows, key=lambda row: row[1].dense)[1]) if rows else None
        across = evidence.language is not None and first is not None and first != evidence.language
        out = []
        for note, n, dense, agreed in rows:
            lexical = n.lexical * (f if across and _language(n) == evidence.language else 1.0)
            out.append(dense + p.lexical_weight * lexical + p.rare_agreement * agreed
                       + (p.lead_bonus if note == lead else 0.0))  # fmt: skip
        return out

    return hook


def damp_questions(f: float) -> Hook:
    damped, plain = damp(f), damp(1.0)

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        return (plain if fusion.is_lookup(ctx["evidence"], ctx["p"]) else damped)(rows, ctx)

    return hook


VARIANTS = [(f"damp {f}", damp(f)) for f in (0.1, 0.3, 0.5, 0.7)] + [
    (f"damp questions {f}", damp_questions(f)) for f in (0.1, 0.2, 0.3)
]
