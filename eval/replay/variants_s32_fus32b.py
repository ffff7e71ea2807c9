"""Session 32's variants (fus32b) for ``eval/replay/replay.py --variants`` (EVAL.md, "Session 32: ... (fus32b)"):
a note BM25 proves holds every term of a short query (its chunk's score is above what any chunk missing one term
could reach: the attainable score less the smallest present term's probe), alone of the BM25 leg's notes.

    .venv/bin/python eval/replay/replay.py /work/main/.kbsearch/replay32/*.pkl \\
        --variants eval/replay/variants_s32_fus32b.py --detail --changes

- ``complete: pin``: in a lookup (:func:`kbsearch.fusion.is_lookup`) with nothing pinned, that one note gets an
  exact match's lead;
- ``complete: stray bonus``: it gets ``stray_bonus`` instead (wherever dense ranks it);
- ``complete ≤3 terms: pin``: the same pin for a query of at most three terms;
- ``complete undamped: pin`` / ``stray bonus``: the pin (the bonus) only for a note whose match counts in full
  (not x ``cross_language``, by the leg's language or ``_across``).

These bound completeness over every term of the query. The rule fus32b proposed (``sole_complete`` in
``kbsearch.fusion`` at commit ``73c0a1a``) bounds it over the lookup's required terms (its identifiers when it has
any), which keeps "faxes configuring LibreOffice" and drops GNOME's "Press Super+Tab." loss; it is a tree, replayed
with ``--compare`` against a worktree of ``73c0a1a`` (EVAL.md has the commands and the counts of each). The lead
refused it on the e5 LibreOffice capture, held out from it (EVAL.md, session 32, fus32b: 1 search better, 2 worse).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kbsearch import fusion

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float]]


def complete_notes(rows: Rows, ctx: dict[str, Any], undamped: bool = False) -> list[str]:
    """The notes whose own BM25 chunk holds every present term of the query, provably: its score is above the
    attainable score less the smallest present term's probe (a chunk missing a term scores at most that)."""
    evidence, probes = ctx["evidence"], ctx["probes"]
    present = [probes[t] for t in evidence.terms if probes.get(t, 0.0) > 0]
    if len(present) < 2 or len(present) < len(evidence.terms):
        return []
    attainable = sum(present)
    bound = attainable - min(present)
    out = []
    for note, n, _, _ in rows:
        its = n.lexical_chunk
        if its is not None and its is not n.translated_chunk and its.score > bound:
            # undamped: its lexical value is its share x coverage x trust, not x cross_language (``_across``)
            full = min(1.0, its.score / attainable) * ctx["coverage"] * ctx["gain"]
            if not undamped or n.lexical > 0.5 * full:
                out.append(note)
    return out


def variant(kind: str, max_terms: int | None = None, undamped: bool = False) -> Hook:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        p, evidence, lead, stray, pinned = ctx["p"], ctx["evidence"], ctx["lead"], ctx["stray"], ctx["pinned"]
        short = fusion.is_lookup(evidence, p) if max_terms is None else len(evidence.terms) <= max_terms
        done = complete_notes(rows, ctx, undamped) if short and not pinned else []
        chosen = done[0] if len(done) == 1 else None
        out = []
        for note, n, dense, agreed in rows:
            bonus = max(p.lead_bonus if note == lead else 0.0, p.stray_bonus if note == stray else 0.0)
            score = dense + p.lexical_weight * n.lexical + p.rare_agreement * agreed + bonus
            if note == chosen:
                score += (1.0 + p.lexical_weight) if kind == "pin" else max(0.0, p.stray_bonus - bonus)
            out.append(score)
        return out

    return hook


VARIANTS = [
    ("complete: pin", variant("pin")),
    ("complete: stray bonus", variant("bonus")),
    ("complete <=3 terms: pin", variant("pin", 3)),
    ("complete undamped: pin", variant("pin", undamped=True)),
    ("complete undamped: stray bonus", variant("bonus", undamped=True)),
]
