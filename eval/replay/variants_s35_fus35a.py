r"""Session 35's variants (fus35a) for ``eval/replay/replay.py --variants`` (EVAL.md, "Session 35: which leg is
right when the legs disagree, a negative result (issue 19, fus35a)"): same-language questions where dense's first
note and BM25's first disagree. Replayed over main's fusion (3c36eb1), every capture:

    CAPS=$(sed 's#\.kbsearch#/work/main/.kbsearch#g' /work/notes/s34/caps.txt)
    .venv/bin/python eval/replay/replay.py $CAPS --variants eval/replay/variants_s35_fus35a.py --detail --changes

The evidence each hook adds is a note's *vocabulary held* (``vocabulary.vocabulary``: the share of the query's
attainable BM25 score whose terms the note's dense or BM25 chunk holds at all, however often) or its *rare terms
held* (``vocabulary.rare_held``: how many of the query's rare terms, fewer than ``PROBE_DEPTH`` chunks hold each,
such a chunk holds). ``eval/replay/vocabulary.py`` measures how well each tells the right leg (AUC per model,
corpus and class group). Every variant is read off the legs' first notes (dense's by its dense value, BM25's by its
lexical value after the trust and the language factor), as ``clear_lead`` and ``stray_lead`` read them:

- ``S vocabulary stray m=M bonus=B``: BM25's first gains B (``stray_bonus`` or ``lead_bonus``) where BM25 is sure
  of it (``lead_value``, ``lead_margin`` ahead of its second), dense's first is another note and a close call (its
  second above ``close``), and dense's first holds at least M less of the vocabulary than BM25's first
  (``stray_lead``'s stray judged by the words held, not by BM25's value); ``S ..., no question``: only where
  :func:`kbsearch.fusion.questioned` is false and the query has at most 6 terms;
- ``R``: no clear-lead bonus where dense's first holds at least as much of the vocabulary as BM25's first (BM25's
  lead is term frequency); ``R+clear``: only where dense's first is clear of its second (second at or under
  ``close``);
- ``M``: the legs' firsts are each other's seconds; the one holding strictly more of the vocabulary gains B (BM25's
  first loses its bonus where dense's holds more);
- ``F``: where BM25's first would come before dense's first, dense's first gains B when it holds at least as much
  of the vocabulary (``terms>=4``: in a query of four terms or more) or, ``F rare``, more of the rare terms;
- ``G``: ``F rare`` with ``lead_bonus`` wherever BM25's first stands (not only where it would come first);
- ``H``: where dense's first holds more rare terms, the clear-lead bonus is dense's first's instead of BM25's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replay import default_scores, leg_firsts
from vocabulary import rare_held, vocabulary

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float] | None]


def _vocabulary(ctx: dict[str, Any]) -> tuple[dict[int, float], float]:
    probes = ctx["probes"]
    weights = {t: probes[t] for t in ctx["evidence"].terms if probes.get(t, 0.0) > 0}
    return weights, sum(weights.values())


def stray(margin: float, bonus: str) -> Hook:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float] | None:
        p = ctx["p"]
        d, _, d2, lx, l1, l2 = leg_firsts(rows)
        if d is None or lx is None or d == lx or l1 < p.lead_value or (l1 - l2) / l1 < p.lead_margin:
            return None
        if d2 <= p.close:
            return None
        weights, attainable = _vocabulary(ctx)
        if attainable <= 0:
            return None
        if vocabulary(rows[d][1], weights) > vocabulary(rows[lx][1], weights) - margin:
            return None
        scores = default_scores(rows, ctx)
        note = rows[lx][0]
        had = max(p.lead_bonus if note == ctx["lead"] else 0.0, p.stray_bonus if note == ctx["stray"] else 0.0)
        gain = p.stray_bonus if bonus == "stray" else p.lead_bonus
        scores[lx] += max(0.0, gain - had)
        return scores

    return hook


def refused(clear: bool) -> Hook:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float] | None:
        p, lead = ctx["p"], ctx["lead"]
        if lead is None or lead == ctx["stray"]:
            return None
        d, _, d2, lx, _, _ = leg_firsts(rows)
        if d is None or lx is None or d == lx or rows[lx][0] != lead or (clear and d2 > p.close):
            return None
        weights, attainable = _vocabulary(ctx)
        if attainable <= 0 or vocabulary(rows[d][1], weights) < vocabulary(rows[lx][1], weights):
            return None
        scores = default_scores(rows, ctx)
        scores[lx] -= p.lead_bonus
        return scores

    return hook


VARIANTS = [(f"S vocabulary stray m={m} bonus={b}", stray(m, b)) for b in ("stray", "lead") for m in (0.2, 0.3, 0.4)]
VARIANTS += [("R lead refused where dense's first holds as much", refused(False)), ("R+clear", refused(True))]


def mutual(bonus: str) -> Hook:
    """``M``: the legs' firsts are each other's seconds (a swap: dense's first is BM25's second and BM25's first is
    dense's second); the one of the two holding strictly more of the query's vocabulary gains the bonus over the
    other (BM25's first loses its clear-lead bonus where dense's first holds more)."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float] | None:
        p = ctx["p"]
        d, _, _, lx, _, _ = leg_firsts(rows)
        if d is None or lx is None or d == lx:
            return None
        dn, ln = rows[d][1], rows[lx][1]
        if (
            sum(n.lexical > dn.lexical for _, n, _, _ in rows) != 1
            or sum(n.dense > ln.dense for _, n, _, _ in rows) != 1
        ):
            return None
        weights, attainable = _vocabulary(ctx)
        if attainable <= 0:
            return None
        hd, hl = vocabulary(dn, weights), vocabulary(ln, weights)
        if hd == hl:
            return None
        scores = default_scores(rows, ctx)
        gain = p.stray_bonus if bonus == "stray" else p.lead_bonus
        if hd > hl:
            had = max(
                p.lead_bonus if rows[lx][0] == ctx["lead"] else 0.0,
                p.stray_bonus if rows[lx][0] == ctx["stray"] else 0.0,
            )
            scores[lx] -= had
            scores[d] += gain
        else:
            scores[lx] += gain
        return scores

    return hook


def plain(hook: Hook) -> Hook:
    """The hook only for a query that is no question (:func:`kbsearch.fusion.questioned` false)."""
    from kbsearch import fusion

    def inner(rows: Rows, ctx: dict[str, Any]) -> list[float] | None:
        if fusion.questioned(ctx["evidence"], ctx["p"]) or len(ctx["evidence"].terms) > 6:
            return None
        return hook(rows, ctx)

    return inner


VARIANTS += [(f"M mutual swap, vocabulary decides, bonus={b}", mutual(b)) for b in ("lead", "stray")]
VARIANTS += [("S m=0.3 bonus=lead, no question", plain(stray(0.3, "lead")))]


def dense_holds(bonus: str, min_terms: int = 0, by: str = "vocabulary", behind: bool = True) -> Hook:
    """``F``: where BM25's first note would come before dense's first (another note), dense's first gains the bonus
    when it holds at least as much of the query's vocabulary as BM25's first (``by=rare``: more of the query's rare
    terms, fewer than ``PROBE_DEPTH`` chunks hold each), in a query of at least ``min_terms`` terms."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float] | None:
        p = ctx["p"]
        if len(ctx["evidence"].terms) < min_terms:
            return None
        d, _, _, lx, _, _ = leg_firsts(rows)
        if d is None or lx is None or d == lx:
            return None
        scores = default_scores(rows, ctx)
        if behind and scores[lx] <= scores[d]:
            return None
        weights, attainable = _vocabulary(ctx)
        if attainable <= 0:
            return None
        if by == "rare":
            rare = {t for t in weights if ctx["depth"].get(t, 0) < 8}
            if not rare or rare_held(rows[d][1], rare) <= rare_held(rows[lx][1], rare):
                return None
        elif vocabulary(rows[d][1], weights) < vocabulary(rows[lx][1], weights):
            return None
        scores[d] += p.stray_bonus if bonus == "stray" else p.lead_bonus
        return scores

    return hook


VARIANTS += [
    (f"F dense's first holds as much, bonus={b}, terms>={k}", dense_holds(b, k))
    for b in ("lead", "stray")
    for k in (0, 4)
]
VARIANTS += [(f"F rare, bonus={b}", dense_holds(b, 0, "rare")) for b in ("lead", "stray")]
VARIANTS += [("G rare, bonus=lead, wherever BM25's first stands", dense_holds("lead", 0, "rare", False))]


def lead_moved() -> Hook:
    """``H``: where dense's first note (not BM25's first) holds more of the query's rare terms than BM25's first,
    the clear-lead bonus is dense's first's: BM25's first loses it if it had it, dense's first gains it (one note
    gains ``lead_bonus``, as in the scoring loop; the stray bonus is left as it is)."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float] | None:
        p = ctx["p"]
        d, _, _, lx, _, _ = leg_firsts(rows)
        if d is None or lx is None or d == lx:
            return None
        weights, _ = _vocabulary(ctx)
        rare = {t for t in weights if ctx["depth"].get(t, 0) < 8}
        if not rare or rare_held(rows[d][1], rare) <= rare_held(rows[lx][1], rare):
            return None
        scores = default_scores(rows, ctx)
        note = rows[lx][0]
        if note == ctx["lead"]:  # it keeps its stray bonus, if it has that too (the larger of the two counts)
            scores[lx] -= p.lead_bonus - (min(p.lead_bonus, p.stray_bonus) if note == ctx["stray"] else 0.0)
        scores[d] += p.lead_bonus
        return scores

    return hook


VARIANTS += [("H lead moved to dense's first holding more rare terms", lead_moved())]
