"""Session 29 (fus29c)'s variants for ``eval/replay/replay.py --variants`` (EVAL.md, "Session 29: an English
title over a Russian half whose English pages draw dense's first note"): who decides that a search goes across
languages, for :func:`kbsearch.fusion._across` (session 28: the first note of the query's own dense leg). On
LibreOffice Help's Russian half, e5's first note for an English title is one of the half's 69 English-language
pages in 164 of 418 searches (96 of them wrong), so session 28's rule does not fire there, and the English pages'
BM25 matches count in full.

- ``majority k``: the language of most of the dense leg's first *k* notes decides, instead of the first note's.
- ``first or majority k``: the first note, or most of the first *k* notes, in another language (``leg``: all of
  the leg's notes; ``leg, chunks``: most of its chunks).
- ``first or any k``: the first note, or any of the first *k* notes, in another language.
- ``..., agreement kept``: in the cases the first note does not decide, a note the rare-term agreement names keeps
  its match (the rule taken: ``first or majority leg, agreement kept``); ``..., agreement kept always``: in every
  case ``_across`` damps.

Each scores over main's fusion *before* session 29's rule (``_across`` as session 28 left it: the hook undoes or
adds the damping of the query's own BM25 matches in notes of its language) and judges BM25's clear lead again on
the changed values, as the rule does. Replay them with that tree's package first on the path:

    git worktree add --detach /tmp/base 819b19c
    PYTHONPATH=/tmp/base/layers/kbsearch:tools .venv/bin/python eval/replay/replay.py .kbsearch/replay29/*.pkl \\
        --variants eval/replay/variants_s29_fus29c.py --detail
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kbsearch import fusion

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float] | None]


def _language(chunk: Any) -> str | None:
    lang = chunk.payload.get("lang") if chunk is not None else None
    return lang if isinstance(lang, str) else None


def _first_languages(chunks: list[Any], k: int | None, notes: bool = True) -> list[str | None]:
    """The languages of the first ``k`` notes of a dense leg (by cosine, each note once; ``k`` None: all of them;
    ``notes`` False: of its chunks)."""
    seen: dict[Any, str | None] = {}
    for c in sorted(chunks, key=lambda c: -c.score):
        path = c.payload.get("path") if notes else c.id
        if path not in seen:
            seen[path] = _language(c)
            if k is not None and len(seen) >= k:
                break
    return list(seen.values())


def _own_same(n: Any, language: str) -> bool:
    """The note's lexical value is the query's own BM25 match in a note of the query's language (what ``_across``
    damps)."""
    its = n.lexical_chunk
    return its is not None and its is not n.translated_chunk and _language(its) == language


def decide(kind: str, k: int | None, notes: bool = True, keep: str = "") -> Hook:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float] | None:
        p, evidence = ctx["p"], ctx["evidence"]
        language = evidence.language
        legs = ctx["dense_legs"]  # the query's own leg first (a capture has no translated variant)
        if language is None or not legs:
            return None
        firsts = _first_languages(legs[0], k, notes)
        first = max(legs[0], key=lambda c: c.score)
        if not firsts or _language(first) is None:
            return None
        first_across = _language(first) != language
        across = sum(1 for lang in firsts if lang is not None and lang != language)
        within = sum(1 for lang in firsts if lang == language)
        if kind == "majority":
            want = across > within
        elif kind == "first or majority":
            want = first_across or across > within
        else:  # first or any
            want = first_across or across > 0
        agreed = {note for note, _, _, a in rows if a > 0}
        kept = agreed if (keep == "always" and want) or (keep == "new" and want and not first_across) else set()
        if want == first_across and not (keep == "always" and first_across):
            return None
        notes_ = {}
        for note, n, _, _ in rows:
            m = copy.copy(n)
            if _own_same(m, language):
                if first_across:  # session 28's rule damped it: back to the full value
                    m.lexical /= p.cross_language
                if want and note not in kept:
                    m.lexical *= p.cross_language
            notes_[note] = m
        lead = fusion.clear_lead(notes_, p)
        return [dense + p.lexical_weight * notes_[note].lexical + p.rare_agreement * agreed_
                + (p.lead_bonus if note == lead else 0.0) for note, _, dense, agreed_ in rows]  # fmt: skip

    return hook


VARIANTS = (
    [(f"majority {k}", decide("majority", k)) for k in (3, 5, 10)]
    + [(f"first or majority {k}", decide("first or majority", k)) for k in (3, 5, 10, 20)]
    + [
        ("first or majority leg", decide("first or majority", None)),
        ("first or majority leg, chunks, agreement kept", decide("first or majority", None, False, "new")),
        ("first or majority leg, agreement kept", decide("first or majority", None, True, "new")),
        ("first or majority leg, agreement kept always", decide("first or majority", None, True, "always")),
    ]
    + [(f"first or any {k}", decide("first or any", k)) for k in (2, 3, 5)]
)
