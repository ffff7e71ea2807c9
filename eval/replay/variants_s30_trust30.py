"""Session 30 (trust30, issue 19): how far to trust the dense leg, per collection. EVAL.md, "Session 30: a
per-collection trust in the dense leg (trust30)".

The question was whether an index-time self-test (``eval/selftest.py``: the notes' own titles, headings and their
other-language titles as queries, no labels from people) could tell each (corpus, model) pair's best
``lexical_weight`` (W) and ``close_weight`` (C). Each pair's best point is read off the grid
(``eval/replay/trust_grid.py``); the variants below are the settings a per-model rule would give, each replayed on
every capture (all 70 cells) so that what a setting does on the pairs it was not read from shows too:

    .venv/bin/python eval/replay/trust_grid.py .kbsearch/replay29/*.pkl
    .venv/bin/python eval/replay/replay.py .kbsearch/replay29/*.pkl --variants eval/replay/variants_s30_trust30.py --detail

A hook re-scores the fusion's per-note rows with its own W and C (the close calls' top part of the dense scale at C,
BM25 at W; the rare-term agreement and the clear-lead / stray bonuses as the defaults give them): the same as
``--set lexical_weight=W --set close_weight=C``, as variants so that one command shows them side by side. The
self-test's rule (W 1.2 C 0.3 for the USE pairs, the defaults for e5's) is the last variant over ``use-*.pkl`` alone:

    .venv/bin/python eval/replay/replay.py .kbsearch/replay29/use-*.pkl --variants eval/replay/variants_s30_trust30.py \
        --only "trust BM25 most: W 1.2 C 0.3 (USE LibreOffice's and man's best; the self-test rule's USE setting)"
"""

from __future__ import annotations

from typing import Any


def setting(weight: float, close_weight: float) -> Any:
    def hook(rows: list[tuple[str, Any, float, float]], context: dict[str, Any]) -> list[float]:
        p, lead, stray = context["p"], context["lead"], context["stray"]
        out = []
        for note, n, _, agreed in rows:
            dense = n.dense if n.dense <= p.close else p.close + close_weight * (n.dense - p.close)
            bonus = max(p.lead_bonus if note == lead else 0.0, p.stray_bonus if note == stray else 0.0)
            out.append(dense + weight * n.lexical + p.rare_agreement * agreed + bonus)
        return out

    return hook


VARIANTS = [
    ("defaults W 0.7 C 0.5 (the hook itself: must move nothing)", setting(0.7, 0.5)),
    ("trust BM25 more: W 1.0 C 0.5 (session 28: USE lo-keyword-en)", setting(1.0, 0.5)),
    ("trust BM25 more at close calls: W 0.7 C 0.4", setting(0.7, 0.4)),
    ("trust dense more at close calls: W 0.7 C 0.6 (session 28: e5 GNOME)", setting(0.7, 0.6)),
    ("trust dense more: W 0.8 C 0.8 (e5 GNOME's best, trust_grid)", setting(0.8, 0.8)),
    ("trust BM25 more: W 1.2 C 0.6 (USE GNOME's best, trust_grid)", setting(1.2, 0.6)),
    (
        "trust BM25 most: W 1.2 C 0.3 (USE LibreOffice's and man's best; the self-test rule's USE setting)",
        setting(1.2, 0.3),
    ),
]
