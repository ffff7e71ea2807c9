"""Session 34's variants (fus34b) for ``eval/replay/replay.py --variants`` (EVAL.md, "Session 34: ... (issue 19,
fus34b)"): a page's title asked in the language its page is *not* written in, over a KB written in both languages.
Replayed over main's fusion (the rule's own switch off: ``--set unnamed_within=0`` on this tree), so each hook
adds its own version of the rule:

    .venv/bin/python eval/replay/replay.py /work/main/.kbsearch/replay33/*-classes-bil.pkl \\
        /work/main/.kbsearch/replay32/*.pkl --set unnamed_within=0 \\
        --variants eval/replay/variants_s34_fus34b.py --detail --changes

The query's own-language BM25 matches are then notes that *mention* the title (a CLI reference's section of that
name, a glossary line, link lists), while the titled page is in the other language, which only dense can bring.
Each hook damps the query's own BM25 matches in notes of the query's language (x ``cross_language``, as
:func:`kbsearch.fusion._across` does) where ``_across`` damped nothing and nothing is pinned, for a label (at most
``PATH_ITEM_WORDS`` terms, no identifier, no menu path) that no note of the query's language the legs carried is
titled by (word for word, :func:`kbsearch.lexical.words`); BM25's clear-lead and stray-first bonuses are read again
after the damping. They differ in what else they ask:

- ``A untitled label``: nothing else;
- ``B ... other language within K``: dense ranks a note of another language among its first K notes;
- ``C ... many alike``: and more than ``exact_notes`` notes score within ``close`` of BM25's first;
- ``D ... a KB of both``: and at least 20% of the notes on the dense scale are of another language (the rule taken,
  ``kbsearch.fusion._unnamed``; D with K=5 replays as this tree with the switch on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replay import default_scores

from kbsearch import fusion
from kbsearch.lexical import words

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float] | None]


def _language(n: Any, cache: dict[str, str | None]) -> str | None:
    its = n.dense_chunk or n.lexical_chunk
    return fusion._note_language(its.payload, cache) if its is not None else None


def _damped(ctx: dict[str, Any], language: str, cache: dict[str, str | None]) -> bool:
    """Whether ``_across`` damped the query's own-language matches (its early returns read again from the query's
    own dense leg, the first of ``dense_legs``)."""
    legs = ctx["dense_legs"]
    if not legs:
        return False
    first = max(legs[0], key=lambda c: c.score)
    theirs = fusion._note_language(first.payload, cache)
    if theirs is None:
        return False
    if theirs != language:
        return True
    recorded: dict[Any, Any] = {}
    for c in legs[0]:
        recorded.setdefault(c.payload.get("path"), c.payload.get("lang"))
    same = sum(1 for lang in recorded.values() if lang == language)
    other = sum(1 for lang in recorded.values() if lang is not None and lang != language)
    return other > same


def untitled(within: int | None = None, alike: bool = False, share: float = 0.0) -> Hook:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float] | None:
        evidence, p = ctx["evidence"], ctx["p"]
        language = evidence.language
        if language is None or ctx["pinned"] or evidence.identifiers or evidence.ui_path:
            return None
        if not evidence.terms or len(evidence.terms) > fusion.PATH_ITEM_WORDS:
            return None
        cache: dict[str, str | None] = {}
        if _damped(ctx, language, cache):
            return None
        named = words(evidence.text)
        langs = {note: _language(n, cache) for note, n, _, _ in rows}
        for note, n, _, _ in rows:
            its = n.lexical_chunk or n.dense_chunk
            if langs[note] == language and its is not None and words(str(its.payload.get("title") or "")) == named:
                return None
        if alike:
            first = max((n.lexical for _, n, _, _ in rows), default=0.0)
            if first <= 0 or sum(n.lexical >= p.close * first for _, n, _, _ in rows) <= p.exact_notes:
                return None
        if within is not None:
            scaled = [(note, n) for note, n, _, _ in rows if n.dense > 0 and n.dense_chunk is not None]
            ranked = sorted(scaled, key=lambda row: (-row[1].dense, row[0]))[:within]
            if not any(langs[note] not in (None, language) for note, _ in ranked):
                return None
            known = [langs[note] for note, _ in scaled if langs[note] is not None]
            if sum(lang != language for lang in known) < share * len(known):
                return None
        notes = {}
        for note, n, _, _ in rows:
            its = n.lexical_chunk
            if its is not None and its is not n.translated_chunk and langs[note] == language:
                n.lexical *= p.cross_language
            notes[note] = n
        ctx = dict(ctx, lead=fusion.clear_lead(notes, p), stray=fusion.stray_lead(notes, p))
        return default_scores(rows, ctx)

    return hook


VARIANTS = [("A untitled label", untitled())]
VARIANTS += [(f"B untitled label, other language within {k}", untitled(k)) for k in (3, 5)]
VARIANTS += [(f"C untitled label, other language within {k}, many alike", untitled(k, True)) for k in (3, 5, 10)]
VARIANTS += [
    (f"D untitled label, other language within {k}, many alike, a KB of both ({s:.0%})", untitled(k, True, s))
    for k, s in ((3, 0.2), (5, 0.2), (10, 0.2), (5, 0.1), (5, 0.3))
]
VARIANTS += [
    (f"E untitled label, other language within {k}, a KB of both ({s:.0%})", untitled(k, False, s))
    for k, s in ((3, 0.2), (5, 0.2), (10, 0.2))
]
