"""Session 33's variants (fus33b) for ``eval/replay/replay.py --variants`` (EVAL.md, "Session 33: ... (fus33b)"):
what else the lookup's whole-phrase pin (``kbsearch.fusion.sole_complete``) could have asked of its note, replayed
over this tree (the rule in). Each hook finds the note as the rule does (in a lookup or a label of at most three
terms, two present or more, one note alone whose own BM25 chunk scores above the attainable score less the
smallest required term's probe, else BM25's first; its match counting in full; after ``_across``, which the rule
checks before) and pins it when its own test holds; the rule's pin is kept as it is.

    .venv/bin/python eval/replay/replay.py /work/main/.kbsearch/replay32/*.pkl \\
        --variants eval/replay/variants_s33_fus33b.py --detail --changes

- ``every word held, no phrase``: fus32b's rule (session 32, refused; with labels too): the proven note pinned
  wherever its words stand (no BM25's first: without a phrase test it pins every lookup's first);
- ``phrase, dense's first not asked``: side by side in its chunk, whatever dense's first holds;
- ``phrase in the heading path only``: side by side in its title > headings;
- ``every probe >= 2.5, no phrase``: each present term's probe best at least 2.5 (a word in most chunks of a
  collection has a low IDF: "LibreOffice" in LibreOffice Help, 1.96), its words anywhere (the proven note only).

The captured payloads carry no heading or text: ``replay.py`` re-attaches them (``eval/replay/texts.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kbsearch import fusion

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float]]


def sole(rows: Rows, ctx: dict[str, Any], fallback: bool = True) -> tuple[str | None, Any]:
    """The rule's note before its phrase tests (``sole_complete``'s first half): in a lookup or a label of at most
    ``PATH_ITEM_WORDS`` terms, the one note proven to hold every required term, else (``fallback``) BM25's first;
    and its ``_Note``."""
    evidence, probes, p = ctx["evidence"], ctx["probes"], ctx["p"]
    present = [t for t in evidence.terms if probes.get(t, 0.0) > 0]
    required = [probes[t] for t in fusion.required_terms(evidence) if t in probes]
    short = fusion.is_lookup(evidence, p) or len(evidence.terms) <= fusion.PATH_ITEM_WORDS
    if ctx["pinned"] or not short or len(present) < 2 or ctx["coverage"] < 1.0 or not required:
        return None, None
    attainable = sum(probes[t] for t in present)
    bound = attainable - min(required)
    found = [(note, n) for note, n, _, _ in rows
             if n.lexical_chunk is not None and n.lexical_chunk is not n.translated_chunk
             and n.lexical_chunk.score > bound]  # fmt: skip
    if len(found) > 1:
        return None, None
    if not found and not fallback:
        return None, None
    if not found:
        first = min(rows, key=lambda row: (-row[1].lexical, row[0]))
        if first[1].lexical_chunk is None or first[1].lexical_chunk is first[1].translated_chunk:
            return None, None
        found = [(first[0], first[1])]
    note, n = found[0]
    full = ctx["gain"] * min(1.0, n.lexical_chunk.score / attainable)
    return (note, n) if full > 0 and n.lexical >= 0.5 * full else (None, None)


def variant(test: Callable[[Any, Rows, dict[str, Any]], bool], fallback: bool = True) -> Hook:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        p, lead, stray = ctx["p"], ctx["lead"], ctx["stray"]
        note, n = sole(rows, ctx, fallback)
        chosen = note if note is not None and test(n, rows, ctx) else None
        out = []
        for name, m, dense, agreed in rows:
            bonus = max(p.lead_bonus if name == lead else 0.0, p.stray_bonus if name == stray else 0.0)
            score = dense + p.lexical_weight * m.lexical + p.rare_agreement * agreed + bonus
            out.append(score + (1.0 + p.lexical_weight if name == chosen else 0.0))
        return out

    return hook


def _heading(n: Any, rows: Rows, ctx: dict[str, Any]) -> bool:
    c = n.lexical_chunk
    return fusion.phrase_place(c, ctx["evidence"].terms) == 2


def _probes(n: Any, rows: Rows, ctx: dict[str, Any]) -> bool:
    probes = ctx["probes"]
    return all(probes[t] >= 2.5 for t in ctx["evidence"].terms if probes.get(t, 0.0) > 0)


VARIANTS = [
    ("every word held, no phrase", variant(lambda n, rows, ctx: True, fallback=False)),
    (
        "phrase, dense's first not asked",
        variant(lambda n, rows, ctx: fusion.phrase_place(n.lexical_chunk, ctx["evidence"].terms) > 0),
    ),
    ("phrase in the heading path only", variant(_heading)),
    ("every probe >= 2.5, no phrase", variant(_probes, fallback=False)),
]
