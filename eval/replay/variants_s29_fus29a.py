"""Session 29's variants (fus29a) for ``eval/replay/replay.py --variants`` (EVAL.md, "Session 29: known items in a
KB of the query's language"): what :func:`kbsearch.fusion._across` (session 28), the rare-term agreement's
language factor and the order of exact matches could do for LibreOffice Help's known items. They undo or keep
``_across``'s damping per note (a note it damped: the query's own BM25 match in a note of the query's language while
the dense leg's first note is in another), so replay them over the fusion *before* session 29's two rules, with that
tree's package first on the path:

    git worktree add --detach /tmp/base29 819b19c
    PYTHONPATH=/tmp/base29/layers/kbsearch .venv/bin/python eval/replay/replay.py .kbsearch/replay29/*.pkl \\
        --variants eval/replay/variants_s29_fus29a.py --detail

- ``spare agree``: ``_across`` does not damp the notes holding every rare term of the query (the rare-term
  agreement's few notes);
- ``spare agree, KB of the query's language``: the same only when most of the dense leg's notes are in the query's
  language (the rule taken);
- ``... agreement >= 0.9``: and only a note holding those terms at 0.9 of their attainable score or more;
- ``no damping, KB of the query's language``: ``_across`` does nothing when most of the dense leg's notes are in
  the query's language (``first K``: most of its first K notes by the dense value);
- ``agreement without the language factor``: the rare-term agreement counts in full in a note of another language
  (an English menu path kept in a Russian note), ``+ spare agree`` with the first;
- ``exact matches holding every rare term first``: an exact match that is one of the rare-term agreement's notes
  gets the exact match's lead (1 + ``lexical_weight``) once more (``lead x 1``: the second rule taken), or ``+x``.

They score after BM25's clear lead was judged on the damped values (the tree's order), so a note they spare gets no
lead bonus it would have got; the rule as taken judges the lead after sparing (the counts are the same here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kbsearch import fusion

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float]]


def _lang(chunk: Any) -> str | None:
    return chunk.payload.get("lang") if chunk is not None else None


def _across_fired(ctx: dict[str, Any]) -> bool:
    """Whether ``_across`` damped: the first note of the query's own dense leg is in another language."""
    language = ctx["evidence"].language
    legs = ctx["dense_legs"]
    if language is None or not legs:
        return False
    first = _lang(max(legs[0], key=lambda c: c.score))
    return first is not None and first != language


def _damped(n: Any, language: str) -> bool:
    its = n.lexical_chunk
    return its is not None and its is not n.translated_chunk and _lang(its) == language


def _mostly_mine(rows: Rows, language: str, first: int | None) -> bool:
    held = [n for _, n, _, _ in rows if n.dense_chunk is not None]
    if first is not None:
        held = sorted(held, key=lambda n: -n.dense)[:first]
    return 2 * sum(_lang(n.dense_chunk) == language for n in held) > len(held)


def variant(spare: str = "none", first: int | None = None, least: float = 0.0, agreement_in_full: bool = False) -> Hook:
    """``spare``: ``none`` (``_across`` as it is), ``agree`` (its notes always), ``agree-mine`` (its notes in a KB
    of the query's language), ``all-mine`` (every note in a KB of the query's language)."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        p, evidence, lead = ctx["p"], ctx["evidence"], ctx["lead"]
        language = evidence.language
        fired = _across_fired(ctx)
        mine = fired and spare in ("agree-mine", "all-mine") and _mostly_mine(rows, language, first)
        out = []
        for note, n, dense, agreed in rows:
            lexical = n.lexical
            if fired and _damped(n, language):
                kept = {"agree": agreed > 0 and agreed >= least, "agree-mine": mine and agreed > 0 and agreed >= least,
                        "all-mine": mine}.get(spare, False)  # fmt: skip
                if kept:
                    lexical /= p.cross_language
            agreement = agreed
            if agreement_in_full and agreed > 0 and language is not None:
                its = n.dense_chunk or n.lexical_chunk
                if _lang(its) not in (None, language):
                    agreement = agreed / p.cross_language
            out.append(dense + p.lexical_weight * lexical + p.rare_agreement * agreement
                       + (p.lead_bonus if note == lead else 0.0))  # fmt: skip
        return out

    return hook


def pinned_first(extra: float | None) -> Hook:
    """An exact match holding every rare term of the query gets ``extra`` (None: 1 + ``lexical_weight``, the
    exact match's lead once more) on top of the exact match's lead."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        p, lead, pinned = ctx["p"], ctx["lead"], ctx["pinned"]
        more = 1.0 + p.lexical_weight if extra is None else extra
        return [dense + p.lexical_weight * n.lexical + p.rare_agreement * agreed
                + (p.lead_bonus if note == lead else 0.0) + (more if note in pinned and agreed > 0 else 0.0)
                for note, n, dense, agreed in rows]  # fmt: skip

    return hook


assert fusion.FusionParams().cross_language > 0  # the hooks undo a damping by dividing by it

VARIANTS = [
    ("spare agree", variant("agree")),
    ("spare agree, KB of the query's language", variant("agree-mine")),
    ("spare agree, KB of the query's language, agreement >= 0.9", variant("agree-mine", least=0.9)),
    ("no damping, KB of the query's language", variant("all-mine")),
    *((f"no damping, KB of the query's language, first {k}", variant("all-mine", first=k)) for k in (5, 10, 20)),
    ("agreement without the language factor", variant(agreement_in_full=True)),
    ("agreement without the language factor + spare agree", variant("agree", agreement_in_full=True)),
    ("exact matches holding every rare term first (lead x 1)", pinned_first(None)),
    *((f"exact matches holding every rare term first (+{x})", pinned_first(x)) for x in (0.3, 0.5, 1.0)),
]
