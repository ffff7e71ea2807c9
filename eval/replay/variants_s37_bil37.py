"""Session 37's variants (bil37, issue 19): fus36a's dense leg of the other language's notes, gated by the KB's
language mix, with its hubs discounted.

fus36a (EVAL.md, session 36) lifted the other language's notes of a query's dense leg by e5's own-language bias read
below the first notes (``offset``: the median or least, over ranks S..D, of the own language's r-th note's dense value
minus the other language's r-th, less a margin). Two costs stopped it: (1) a KB of one language with a few pages of
the other (their few pages top the other language's leg); (2) with the whole other-language leg (a real filtered
search), hubs (the same few other-language pages near every query: *Импорт заметок* first for 285 of 460 Russian
queries) take first places from same-language answers. The variants here add what fus36a named and did not build:

- **the gate**: the share of the KB's notes in its minority language (``text_language`` per note, what the indexer
  records as ``lang``) must be at least :data:`SHARE` (a quarter: "a language of the KB" holds at least one note in
  four; the translated help sets' untranslated pages reach 0.224 at most, Debian's, and the two KBs authored in two
  languages, the sample KB 0.306, the bilingual ones ≈0.5): below it the hook answers None (the KB pays nothing);
- **the hub discount**: a note of the other language is not lifted (``hub q``), or lifted less (``hubscale``), by
  its k-occurrence across (``eval/replay/hubs.py``: how many chunks of the other language have one of its chunks
  among their 10 nearest of its language, summed over its chunks; computable at index time from the stored vectors,
  no query needed): ``hub q`` skips the notes above the q-quantile of their language's notes in the KB;
  ``hubscale`` multiplies the lift by min(1, (1 + median) / (1 + occurrence)).

The driver (``eval/replay/other_leg_gated.py``) sets :data:`CORPUS` (the cell's corpus directory), :data:`SHARES`
(corpus → minority share) and :data:`HUBS` (corpus → note path → occurrence, and the per-language quantiles) before
each cell.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from variants_s36_fus36a import _score, lifted  # fus36a's scoring and lift, unchanged

#: the gate: the minority language's share of the KB's notes at which the other language's leg is read
SHARE = 0.25
CORPUS: str = ""
SHARES: dict[str, float] = {}
#: corpus → (note path → (its language, its k-occurrence across summed over its chunks))
HUBS: dict[str, dict[str, tuple[str, float]]] = {}
#: corpus → note → its nearest note of another language (``other_leg_gated.sibling_table``)
SIBLINGS: dict[str, dict[str, str]] = {}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def offset(
    f: float,
    start: int,
    depth: int,
    stat: str = "median",
    margin: float = 0.0,
    hub: float | None = None,
    hubscale: bool = False,
    gate: bool = True,
    sibling: bool = False,
) -> Any:
    """fus36a's ``offset`` (the other language's notes raised by ``f`` × the sub-legs' systematic offset less
    ``margin``), only where the KB's minority share reaches :data:`SHARE` (``gate``), hubs discounted."""

    def hook(rows: list[tuple[str, Any, float, float]], ctx: dict[str, Any]) -> list[float] | None:
        language = ctx["evidence"].language
        if language is None or (gate and SHARES.get(CORPUS, 0.0) < SHARE):
            return None
        lift, other = lifted(rows, language, start, depth, stat, margin)
        if lift <= 0.0:
            return None
        table = HUBS.get(CORPUS, {})
        per_note = {i: lift for i in other}
        if hub is not None or hubscale:
            for i in other:
                lang, occ = table.get(rows[i][0], ("", 0.0))
                peers = [o for lg, o in table.values() if lg == lang]
                if hub is not None and occ > _quantile(peers, hub):
                    per_note[i] = 0.0
                if hubscale:
                    per_note[i] *= min(1.0, (1.0 + _quantile(peers, 0.5)) / (1.0 + occ))
        if sibling:  # not the dense first's own-subject page of the other language (either's nearest is the other)
            near = SIBLINGS.get(CORPUS, {})
            first = max(range(len(rows)), key=lambda i: (rows[i][1].dense, rows[i][0]))
            for i in other:
                if near.get(rows[i][0]) == rows[first][0] or near.get(rows[first][0]) == rows[i][0]:
                    per_note[i] = 0.0
        return [_score(note, n, n.dense + f * per_note[i] if i in per_note else n.dense, agreed, ctx)
                for i, (note, n, _, agreed) in enumerate(rows)]  # fmt: skip

    return hook


BASES = [(2, 10, "min", 0.05), (3, 20, "median", 0.05), (3, 20, "median", 0.1), (2, 10, "min", 0.1)]
VARIANTS: list[tuple[str, Any]] = [("offset 0 (the hook itself: must move nothing)", offset(0.0, 2, 10, "min", 0.0))]
for s, d, st, m in BASES:
    label = f"offset r{s}-{d} {st} less {m}"
    VARIANTS.append((label, offset(1.0, s, d, st, m)))
    VARIANTS += [(f"{label} hub {q}", offset(1.0, s, d, st, m, hub=q)) for q in (0.8, 0.9, 0.95)]
    VARIANTS.append((f"{label} hubscale", offset(1.0, s, d, st, m, hubscale=True)))
#: tried after the held-out KB's USE result (a sibling lost its page's first place): not held-out evidence
VARIANTS += [("offset r2-10 min less 0.05 hub 0.9 sibling", offset(1.0, 2, 10, "min", 0.05, hub=0.9, sibling=True)),
             ("offset r3-20 median less 0.05 hub 0.9 sibling", offset(1.0, 3, 20, "median", 0.05, hub=0.9,
                                                                        sibling=True))]  # fmt: skip
if os.environ.get("BIL37_ONLY"):
    VARIANTS = [v for v in VARIANTS if v[0] in os.environ["BIL37_ONLY"].split(";")]
