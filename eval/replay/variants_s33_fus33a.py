"""Session 33's variants (fus33a, issue 19): the close-call weight per collection, decided from evidence the
collection gives (EVAL.md, "Session 33: a per-collection close-call weight (issue 19, fus33a)").

The question: can a collection tell, from its own searches and no labels, how far its dense leg's close calls are to
be trusted (``close_weight``, 0.5 for every collection), so that e5's gains where USE loses on the same evidence
(fus32a's "BM25 unsure: dense's close calls in full", fus32c's "across: dense's close calls in full") are taken
where they win? One capture file is one collection (one corpus, one model), so each capture is replayed in its own
process: the first variant, ``collect``, reads every search of the collection and keeps its statistics; the variants
after it read them (a collection's searches are the evidence it gives: in a deployment, the searches it served).

    for f in /work/main/.kbsearch/replay32/*.pkl; do
      .venv/bin/python eval/replay/replay.py $f --variants eval/replay/variants_s33_fus33a.py --detail; done

The statistics (printed by ``collect``, per collection; BM25's first and dense's first by the fusion's per-note
lexical value after the trust and dense value; pinned searches left out):

- ``agree``: of the searches where BM25 is sure of one note (its first note's value at least ``lead_value``, ahead
  of its second by ``stray_margin`` of it), the share whose dense first is that note. A strong dense model agrees
  with a sure BM25 more often;
- ``close``: the mean count of notes in the top of the dense scale (above ``close``): a weak model's flat top
  cosines put more notes there;
- ``gap``: the median distance between dense's first and second note on the dense scale.

The families (the first variant is the hook at the defaults: it must move nothing):

- ``C=x``: ``close_weight`` x for every search (what a per-collection setting could reach: read per capture);
  ``questions``: for questions only (no lookup), lookups keep 0.5;
- ``unsure t C=c`` (fus32a's): BM25 unsure of everything (its first note's value under t), a question: dense's close
  calls count at c (1.0: in full);
- ``lead b within w``: the clear lead (``fusion.clear_lead``) with its bonus b and its reach w into dense's first
  notes (the defaults: 0.075 within 3); ``lead 0``: none;
- ``crowd<=k`` / ``crowd>=k``: a variant only where the search's own dense top holds at most / at least k notes
  above ``close`` (per search: a weak model's flat top shows in the search itself);
- ``by agree>=a: ...``: a variant only in a collection whose ``agree`` is at least a (the rule a collection could
  decide for itself). Only meaningful with one capture a process (the loop above): over several captures at once,
  ``agree`` mixes their collections.

The named variants over every capture at once (the families that read no collection statistic):

    .venv/bin/python eval/replay/replay.py /work/main/.kbsearch/replay32/*.pkl \\
        --variants eval/replay/variants_s33_fus33a.py --only "lead 0.075 within 5" --changes
"""

from __future__ import annotations

import atexit
import dataclasses
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbsearch import fusion

sys.path.insert(0, str(Path(__file__).resolve().parent))  # replay.py, beside this file
from replay import default_scores, leg_firsts

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float]]

#: The collection's statistics, read by ``collect`` over every search of the capture this process replays.
SEEN: dict[str, list[float]] = {"agree": [], "agree_q": [], "close": [], "gap": []}


def collect(rows: Rows, ctx: dict[str, Any]) -> list[float]:
    """The defaults' scores; records the search's statistics for the collection."""
    p = ctx["p"]
    if not ctx["pinned"]:
        d, d1, d2, lx, l1, l2 = leg_firsts(rows)
        if d is not None:
            SEEN["close"].append(sum(1 for _, n, _, _ in rows if n.dense > p.close))
            SEEN["gap"].append(d1 - d2)
        if d is not None and lx is not None and l1 >= p.lead_value and (l1 - l2) / l1 >= p.stray_margin:
            SEEN["agree"].append(1.0 if d == lx else 0.0)
            if not fusion.is_lookup(ctx["evidence"], p):
                SEEN["agree_q"].append(1.0 if d == lx else 0.0)
    return default_scores(rows, ctx)


def agree(name: str = "agree") -> float:
    return statistics.fmean(SEEN[name]) if SEEN[name] else 0.0


def _report() -> None:
    if SEEN["gap"]:
        print(f"collection: agree {agree():.3f} (of {len(SEEN['agree'])} sure searches), questions "
              f"{agree('agree_q'):.3f} (of {len(SEEN['agree_q'])}), close "
              f"{statistics.fmean(SEEN['close']):.2f}, gap {statistics.median(SEEN['gap']):.3f}")  # fmt: skip


atexit.register(_report)


def _close_at(rows: Rows, ctx: dict[str, Any], c: float) -> list[float]:
    """The defaults' scores with the top of the dense scale (above ``close``) counted at ``c``, not ``close_weight``."""
    p = ctx["p"]
    return [score + (n.dense if n.dense <= p.close else p.close + c * (n.dense - p.close)) - dense
            for score, (_, n, dense, _) in zip(default_scores(rows, ctx), rows, strict=True)]  # fmt: skip


def close_weight(c: float, questions: bool = False) -> Hook:
    """``close_weight`` c for every search (``questions``: for questions only, lookups keep 0.5)."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        if questions and fusion.is_lookup(ctx["evidence"], ctx["p"]):
            return default_scores(rows, ctx)
        return _close_at(rows, ctx, c)

    return hook


def unsure(t: float, c: float = 1.0) -> Hook:
    """fus32a's: BM25 unsure of everything (its first note's value under ``t``), a question (no lookup, nothing
    pinned): dense's close calls count at ``c`` (1.0: in full)."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        if ctx["pinned"] or fusion.is_lookup(ctx["evidence"], ctx["p"]):
            return default_scores(rows, ctx)
        if max((n.lexical for _, n, _, _ in rows), default=0.0) >= t:
            return default_scores(rows, ctx)
        return _close_at(rows, ctx, c)

    return hook


def by_agree(a: float, inner: Hook) -> Hook:
    """``inner`` in a collection whose ``agree`` (read by ``collect`` before) is at least ``a``; else the defaults."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        return inner(rows, ctx) if agree() >= a else default_scores(rows, ctx)

    return hook


VARIANTS: list[tuple[str, Hook]] = [("collect (the defaults: must move nothing)", collect)]
VARIANTS += [(f"C={c}", close_weight(c)) for c in (0.3, 0.4, 0.6, 0.7, 0.8, 1.0)]
VARIANTS += [(f"C={c} questions", close_weight(c, questions=True)) for c in (0.7, 1.0)]
VARIANTS += [(f"unsure t={t} C={c}", unsure(t, c)) for t in (0.2, 0.3) for c in (0.75, 1.0)]


def lead(bonus: float, within: int, margin: float | None = None) -> Hook:
    """``fusion.clear_lead`` with its bonus, its reach into dense's first notes (``lead_within``) and its margin set:
    BM25's sure first note, among dense's first ``within``, gains ``bonus`` (the stray's bonus as it is)."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        p = ctx["p"]
        q = dataclasses.replace(p, lead_bonus=bonus, lead_within=within,
                                lead_margin=p.lead_margin if margin is None else margin)  # fmt: skip
        mine = fusion.clear_lead({note: n for note, n, _, _ in rows}, q) if bonus > 0 else None
        stray = ctx["stray"]
        return [dense + p.lexical_weight * n.lexical + p.rare_agreement * agreed
                + max(bonus if note == mine else 0.0, p.stray_bonus if note == stray else 0.0)
                for note, n, dense, agreed in rows]  # fmt: skip

    return hook


VARIANTS += [("lead 0", lead(0.0, 3))]
VARIANTS += [
    (f"lead {b} within {w}", lead(b, w)) for b in (0.075, 0.15, 0.25) for w in (3, 5, 8) if (b, w) != (0.075, 3)
]


def _crowd(rows: Rows, p: Any) -> int:
    """How many notes the dense leg has in the top of its scale (above ``close``): a flat top, this search's."""
    return sum(1 for _, n, _, _ in rows if n.dense > p.close)


def by_crowd(low: int, high: int, inner: Hook) -> Hook:
    """``inner`` where the search's own dense top holds ``low`` to ``high`` notes above ``close`` (per search, not
    per collection: a weak model's flat top is seen in the search itself); else the defaults."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        return inner(rows, ctx) if low <= _crowd(rows, ctx["p"]) <= high else default_scores(rows, ctx)

    return hook


VARIANTS += [(f"crowd>={k}: lead 0.075 within 5", by_crowd(k, 10**6, lead(0.075, 5))) for k in (3, 4, 6)]
VARIANTS += [(f"crowd<={k}: C={c} questions", by_crowd(0, k, close_weight(c, questions=True)))
             for k in (1, 2) for c in (0.6, 1.0)]  # fmt: skip
VARIANTS += [(f"by agree>={a}: crowd<=2: C={c} questions", by_agree(a, by_crowd(0, 2, close_weight(c, questions=True))))
             for a in (0.78, 0.83) for c in (0.6, 0.7)]  # fmt: skip
