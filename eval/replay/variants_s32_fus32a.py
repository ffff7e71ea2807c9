"""Session 32's variants (fus32a) for ``eval/replay/replay.py --variants`` (EVAL.md, "Session 32: question pins
near a leg's top, and what else was tried for the question cells (fus32a)"). Each hook scores every note over main's
fusion: the rule this session takes is off (``--set question_pin_within=0 --set question_pin_lexical=0``), so the
defaults are main's ``3003107``:

    .venv/bin/python eval/replay/replay.py /work/main/.kbsearch/replay32/*.pkl --set question_pin_within=0 \\
        --set question_pin_lexical=0 --variants eval/replay/variants_s32_fus32a.py [--only NAME] [--detail] [--changes]

The families (the first variant is the hook at the defaults: it must move nothing):

- ``both firsts``: when the two legs disagree on their first note (dense's by the fusion's dense value, BM25's by
  its lexical value after the trust and the language factor) and the fused first is a third note, the two legs'
  firsts are lifted just above every other note (in their fused order between themselves), gated by BM25 sure
  (its first's value at least ``lead_value``, ahead of its second by ``bm`` of its value; None: no gate), dense
  clear (its second note at most ``dc`` on the dense scale; 1.0: no gate) and ``questions`` (no lookups);
  searches with a pinned exact match are left as they are;
- ``unsure``: BM25 unsure of everything (its first note's lexical value under ``t``; ``share<s``: its best share
  of the attainable score, before the trust and the language factor, under ``s``): dense's close calls count in
  full (``full``), BM25's weight is halved (``half``) or both;
- ``sure stray``: ``fusion.stray_lead`` with a second tier, BM25 ahead of its second by ``m2`` of its value lets
  dense's first hold up to ``r2`` of that value;
- ``question pin``: fus31's rule A over main (a question naming identifiers in passing pins a note only near a
  leg's top), judged after the trust and ``_across``; ``′``: not in a Russian question writing a foreign proper
  name (A′); ``″``: BM25 judged by the note's own share before the trust and the language factor (A″); ``path``: a
  note whose path holds one of the query's identifiers keeps its pin; ``bm25 within k``: BM25's first k notes
  count as its top (the rule taken is ``question pin A′ bm25 within 2``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbsearch import fusion, lexical

sys.path.insert(0, str(Path(__file__).resolve().parent))  # replay.py, beside this file
from replay import default_scores, leg_firsts

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float]]


def defaults() -> Hook:
    return default_scores


def both_firsts(bm: float | None, dc: float, questions: bool = False) -> Hook:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        scores = default_scores(rows, ctx)
        p = ctx["p"]
        if ctx["pinned"] or (questions and fusion.is_lookup(ctx["evidence"], p)):
            return scores
        d, d1, d2, lx, l1, l2 = leg_firsts(rows)
        if d is None or lx is None or d == lx or d1 <= 0 or l1 <= 0:
            return scores
        if bm is not None and (l1 < p.lead_value or (l1 - l2) / l1 < bm):
            return scores
        if d2 > dc:
            return scores
        others = max((s for i, s in enumerate(scores) if i not in (d, lx)), default=None)
        if others is None or (others <= max(scores[d], scores[lx]) and others <= min(scores[d], scores[lx])):
            return scores  # both already above every other note
        hi, lo = (d, lx) if scores[d] >= scores[lx] else (lx, d)
        if others < scores[hi]:  # the higher first is already first: only the other is lifted above the third
            scores[lo] = max(scores[lo], others + 1e-9)
        else:
            scores[hi] = others + 2e-9
            scores[lo] = others + 1e-9
        return scores

    return hook


VARIANTS = (
    [("defaults (hook)", defaults())]
    + [(f"both firsts bm={bm} dc={dc}", both_firsts(bm, dc)) for bm in (None, 0.075, 0.2) for dc in (1.0, 0.9, 0.8)]
    + [(f"both firsts bm={bm} dc={dc} questions", both_firsts(bm, dc, True)) for bm in (0.075, 0.2)
       for dc in (1.0, 0.8)]
)  # fmt: skip


def unsure(t: float, mode: str, questions: bool = True) -> Hook:
    """BM25 unsure of everything (its first note's lexical value, after the trust, under ``t``): its noise must not
    tip dense's close calls. ``full``: the dense value counts in full (no close-call compression); ``half``: BM25's
    weight halved; ``both``: the two."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        scores = default_scores(rows, ctx)
        p = ctx["p"]
        if ctx["pinned"] or (questions and fusion.is_lookup(ctx["evidence"], p)):
            return scores
        first = max((n.lexical for _, n, _, _ in rows), default=0.0)
        if first >= t:
            return scores
        out = []
        for score, (_, n, dense, _) in zip(scores, rows, strict=True):
            full = n.dense - dense if mode in ("full", "both") else 0.0
            half = 0.5 * p.lexical_weight * n.lexical if mode in ("half", "both") else 0.0
            out.append(score + full - half)
        return out

    return hook


VARIANTS += [(f"unsure t={t} {m}", unsure(t, m)) for t in (0.2, 0.3) for m in ("full", "half", "both")]
VARIANTS += [("unsure t=0.3 full all", unsure(0.3, "full", False))]


def unsure_share(s: float) -> Hook:
    """As :func:`unsure` ``full``, BM25 judged by its best note's own share of the attainable score (before the trust
    and the language factor: ``confidence``), under ``s``; questions only."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        scores = default_scores(rows, ctx)
        p = ctx["p"]
        if ctx["pinned"] or fusion.is_lookup(ctx["evidence"], p):
            return scores
        if max((n.confidence for _, n, _, _ in rows), default=0.0) >= s:
            return scores
        return [sc + n.dense - dense for sc, (_, n, dense, _) in zip(scores, rows, strict=True)]

    return hook


VARIANTS += [(f"unsure share<{s}", unsure_share(s)) for s in (0.3, 0.35, 0.4, 0.45)]


def sure_stray(m2: float, r2: float, b: float = 0.2) -> Hook:
    """``fusion.stray_lead`` with a second tier: BM25 far surer of its first note (ahead of its second by ``m2`` of
    its value, ``stray_margin`` is 0.2) lets dense's first hold more of the query's words (under ``r2`` of BM25's
    first's value, ``stray_share`` is 0.4); the rest of the gate as the rule's (value ≥ ``lead_value``, dense's
    second a close call)."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        scores = default_scores(rows, ctx)
        p = ctx["p"]
        if ctx["stray"] is not None:
            return scores
        d, _d1, d2, lx, l1, l2 = leg_firsts(rows)
        if d is None or lx is None or d == lx or l1 < p.lead_value or (l1 - l2) / l1 < m2 or d2 <= p.close:
            return scores
        if rows[d][1].lexical >= r2 * l1:
            return scores
        if rows[lx][0] == ctx["lead"]:
            scores[lx] += b - p.lead_bonus
        else:
            scores[lx] += b
        return scores

    return hook


VARIANTS += [(f"sure stray m2={m} r2={r}", sure_stray(m, r)) for m in (0.3, 0.4, 0.5) for r in (0.6, 0.8)]


# --- A question's pin, judged by evidence other than the legs' ranks (fus31's rule A and its exceptions) ---------

_LATIN_WORD = re.compile(r"[a-z]", re.IGNORECASE)
_CYRILLIC_WORD = re.compile(r"[а-яё]", re.IGNORECASE)


def _names(evidence: Any) -> frozenset[int]:
    """fus31's ``lexical.proper_names`` (``6a54313``, not on main): the Latin words a Russian query writes with a
    capital ("Logseq", "Dataview"), as term ids."""
    if evidence.language != "ru":
        return frozenset()
    out: set[int] = set()
    for raw in lexical.reading(evidence.text).split():
        word = raw.strip(lexical._WORD_PUNCTUATION)
        if word[:1].isupper() and _LATIN_WORD.match(word) and not _CYRILLIC_WORD.search(word):
            out.update(lexical.term_id(t) for t in lexical.tokenize(word))
    return frozenset(out)


def _path_terms(note: str) -> frozenset[int]:
    """The note's path as BM25 terms (its folders and file name: "vsock.7.md", "Import notes/Import from Airtable.md")."""
    return frozenset(lexical.term_id(t) for t in lexical.tokenize(note.replace("/", " ").replace("_", " ")))


def question_pin(within: int, names: bool, path: bool, share: bool, lwithin: int = 1) -> Hook:
    """fus31's rule A over main: in a question naming identifiers in passing (more than ``exact_max_terms`` of its
    terms are no identifier, no menu path) a pinned note keeps its pin only where BM25 has it first (``share``: by its
    own share of the attainable score, before the trust and the language factor, fus31's A″; else by its lexical
    value) or dense among its first ``within``; ``names``: A′, not in a Russian question writing a foreign proper
    name; ``path``: and a note whose path holds one of the query's identifiers keeps its pin (the identifier names
    the note itself: "vsock.7.md" for "Linux VSOCK address family")."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        scores = default_scores(rows, ctx)
        p, evidence, pinned = ctx["p"], ctx["evidence"], ctx["pinned"]
        if not pinned or evidence.ui_path or not evidence.identifiers:
            return scores
        if sum(1 for t in evidence.terms if t not in evidence.identifiers) <= p.exact_max_terms:
            return scores
        if names and _names(evidence) & evidence.identifiers:
            return scores
        value = (lambda n: n.confidence) if share else (lambda n: n.lexical)
        for i, (note, n, _, agreed) in enumerate(rows):
            if note not in pinned:
                continue
            own = value(n)
            about = (own > 0 and sum(value(m) > own for _, m, _, _ in rows) < lwithin) or (
                n.dense > 0 and sum(m.dense > n.dense for _, m, _, _ in rows) < within
            )
            if about or (path and _path_terms(note) & evidence.identifiers):
                continue
            scores[i] -= (1.0 + p.lexical_weight) * (2 if agreed > 0 else 1)
        return scores

    return hook


VARIANTS += [
    (f"question pin A{'′' if n else ''}{'″' if s else ''}{' path' if pa else ''}", question_pin(3, n, pa, s))
    for n in (False, True) for s in (False, True) for pa in (False, True)
]  # fmt: skip
VARIANTS += [
    (f"question pin A{'′' if n else ''} bm25 within {k}", question_pin(3, n, False, False, k))
    for n in (False, True) for k in (2, 3)
]  # fmt: skip


def dense_second(bm: float | None, dc: float, lexical: bool = False) -> Hook:
    """When the fused first is a third note (neither leg's first), dense's first note (``lexical``: BM25's) is kept
    in the first two: lifted just above the fused second, the fused first left first. Gates as :func:`both_firsts`."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        scores = default_scores(rows, ctx)
        p = ctx["p"]
        if ctx["pinned"]:
            return scores
        d, _, d2, lx, l1, l2 = leg_firsts(rows)
        if d is None or lx is None or d == lx or l1 <= 0:
            return scores
        if (bm is not None and (l1 < p.lead_value or (l1 - l2) / l1 < bm)) or d2 > dc:
            return scores
        order = sorted(range(len(rows)), key=lambda i: (-scores[i], rows[i][0]))
        keep = lx if lexical else d
        if order[0] in (d, lx) or keep in order[:2]:
            return scores
        scores[keep] = scores[order[1]] + 1e-9
        return scores

    return hook


VARIANTS += [(f"dense first second bm={bm} dc={dc}", dense_second(bm, dc)) for bm in (None, 0.2) for dc in (1.0, 0.9)]
VARIANTS += [("bm25 first second", dense_second(None, 1.0, True))]
