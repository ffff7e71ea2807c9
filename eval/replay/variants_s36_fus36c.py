"""Session 36's variants (fus36c, issue 19): hubs in the dense leg, a CSLS-style correction, simulated.

fus36a found a few notes first in the other language's dense leg for most queries (e5: *Импорт заметок* for 285 of
460 Russian queries): hubness. CSLS (Conneau et al. 2018) discounts a document by ``r_d``, its mean cosine to its
``k`` nearest neighbours. ``eval/replay/hubs.py`` computes ``r`` for every chunk of every eval corpus from the
oracle's vector cache (``k`` 10, the chunks of the note itself excluded): ``r`` over all chunks of the corpus, ``r
across`` over the other language's chunks only (``r`` where the corpus has fewer than 10 of them).

Each hook recomputes every note's dense value from the captured dense legs with each chunk's cosine lowered by
``λ × (r_chunk − median r of the corpus)`` (on the fusion's own scale: the same top and floor), the note's value its
best corrected chunk's, then scores as the defaults do (close calls, BM25 × its weight, the rare-term agreement, the
lead and stray bonuses). It reads the captured top 100 chunks only (a chunk the correction would have brought in from
below them is not there), and the leads, strays and pins the fusion decided before the loop stay as they were
(read from the uncorrected cosines). CSLS's own weight is λ 0.5 (``2·cos − r`` ranks as ``cos − r / 2``).

The hook finds a search's corpus by its chunks (the one table holding every captured dense chunk's path, index and
text) and the model from ``FUS36C_MODEL`` or the capture files named on the command line (one model per run).

    HUBS_CACHE=/tmp/fus36c-e5.sqlite .venv/bin/python eval/replay/replay.py $E5CAPS \\
        --variants eval/replay/variants_s36_fus36c.py --detail      # FUS36C_GRID=1: the λ grid; FUS36C_SCALED=1, FUS36C_OCCURRENCE=1
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hubs import Table, tables


def _model() -> str:
    named = os.environ.get("FUS36C_MODEL")
    if named:
        return named
    models = {Path(a).name.split("-")[0] for a in sys.argv if a.endswith(".pkl")}
    if len(models) != 1:
        raise SystemExit("variants_s36_fus36c: one model per run (FUS36C_MODEL=e5|use, or captures of one model)")
    return models.pop()


TABLES: dict[str, Table] = tables(_model())


def _stats(values: list[float]) -> tuple[float, float]:
    """The median and the p10-p90 spread (``statistics.quantiles``, deciles)."""
    deciles = statistics.quantiles(values, n=10)
    return statistics.median(values), deciles[-1] - deciles[0]


#: corpus → (median r, its spread), (median r across, its spread)
STATS = {
    corpus: (_stats([v[1] for v in t.values()]), _stats([v[2] for v in t.values()]))
    for corpus, t in TABLES.items()
    if t
}
#: corpus → the median and p10-p90 spread of log(1 + k-occurrence across) (``hubs.py``'s fourth column)
OCCURRENCE = {corpus: _stats([math.log1p(v[3]) for v in t.values()]) for corpus, t in TABLES.items() if t}
UNFOUND = [0, 0]  # searches whose corpus no table identifies, searches seen


def _corpus(dense_legs: list[list[Any]]) -> str | None:
    """The corpus whose table holds every dense chunk's text under its path and index (a chunk the cache has no
    vector for, one or two a corpus, excepted: it is not corrected)."""
    chunks = [
        (c.payload.get("path"), c.payload.get("chunk_index"), c.payload.get("text")) for leg in dense_legs for c in leg
    ]
    for corpus, table in TABLES.items():
        held = [table[(path, index)][0] == text for path, index, text in chunks if (path, index) in table]
        if held and all(held) and len(held) >= len(chunks) - 2:
            return corpus
    return None


def _hooked(
    rows: list[tuple[str, Any, float, float]], ctx: dict[str, Any], value: Callable[[str, Any, float, float], float]
) -> list[float] | None:
    """The hooks' one walk: the search's corpus found from its dense legs' chunks (counted in ``UNFOUND``), each
    chunk's corrected value on the dense scale, ``value(corpus, chunk, floor, span)``, each note given its best."""
    legs = ctx["dense_legs"]
    if not legs or ctx["span"] <= 0:
        return None
    UNFOUND[1] += 1
    corpus = _corpus(legs)
    if corpus is None:
        UNFOUND[0] += 1
        return None
    floor, span = ctx["floor"], ctx["span"]
    corrected: dict[str, float] = {}
    for leg in legs:
        for c in leg:
            corrected_value = value(corpus, c, floor, span)
            path = c.payload["path"]
            if corrected_value > corrected.get(path, -1.0):
                corrected[path] = corrected_value
    return _scores(rows, ctx, corrected)


def occurrence(mu: float) -> Any:
    """Each chunk's value on the dense scale lowered by ``mu × max(0, (log(1 + N) − median) / spread)``, ``N`` its
    k-occurrence across (how many chunks of the other language have it among their 10 nearest of its language): a
    hub of the other language's leg, counted over the corpus's own chunks as stand-ins for queries; only above the
    median (a note rarely anyone's neighbour is not raised)."""

    def value(corpus: str, c: Any, floor: float, span: float) -> float:
        median, spread = OCCURRENCE[corpus]
        row = TABLES[corpus].get((c.payload["path"], c.payload["chunk_index"]))
        z = max(0.0, (math.log1p(row[3]) - median) / spread) if row is not None and spread > 0 else 0.0
        return max(0.0, (c.score - floor) / span - mu * z)

    return lambda rows, ctx: _hooked(rows, ctx, value)


def _scores(rows: list[tuple[str, Any, float, float]], ctx: dict[str, Any], corrected: dict[str, float]) -> list[float]:
    """The defaults' scores with each note's dense value its best corrected chunk's."""
    p, lead, stray = ctx["p"], ctx["lead"], ctx["stray"]
    out = []
    for note, n, _, agreed in rows:
        value = corrected.get(note, n.dense) if n.dense_chunk is not None else n.dense
        dense = value if value <= p.close else p.close + p.close_weight * (value - p.close)
        bonus = max(p.lead_bonus if note == lead else 0.0, p.stray_bonus if note == stray else 0.0)
        out.append(dense + p.lexical_weight * n.lexical + p.rare_agreement * agreed + bonus)
    return out


def csls(lam: float, across: bool, scaled: bool = False) -> Any:
    """``scaled``: each chunk's value on the dense scale lowered by ``lam × (r − median) / spread`` (the corpus's
    p10-p90 of r) instead of its cosine by ``lam × (r − median)``: the same share of the scale whatever the query's
    cosines span (a cross-language query's are compressed: a fixed cosine outweighs them)."""
    column = 2 if across else 1

    def value(corpus: str, c: Any, floor: float, span: float) -> float:
        median, spread = STATS[corpus][column - 1]
        r = TABLES[corpus].get((c.payload["path"], c.payload["chunk_index"]), ("", median, median))[column]
        if scaled:
            return max(0.0, (c.score - floor) / span - lam * (r - median) / spread)
        return max(0.0, (c.score - lam * (r - median) - floor) / span)

    return lambda rows, ctx: _hooked(rows, ctx, value)


def unfound() -> str:
    return f"{UNFOUND[0]} of {UNFOUND[1]} hooked searches matched no corpus table"


VARIANTS = [
    ("csls 0 (the hook itself: must move nothing)", csls(0.0, False)),
    ("csls r 0.5", csls(0.5, False)),
    ("csls r-across 0.5", csls(0.5, True)),
    ("csls r-across 1.0", csls(1.0, True)),
]
if os.environ.get("FUS36C_GRID"):
    VARIANTS = VARIANTS[:1] + [(f"csls {'r-across' if a else 'r'} {lam}", csls(lam, a))
                               for a in (False, True) for lam in (0.25, 0.5, 1.0, 2.0)]  # fmt: skip
if os.environ.get("FUS36C_OCCURRENCE"):
    VARIANTS = VARIANTS[:1] + [(f"occurrence {mu}", occurrence(mu)) for mu in (0.02, 0.05, 0.1)]
if os.environ.get("FUS36C_SCALED"):
    VARIANTS = VARIANTS[:1] + [(f"csls scaled {'r-across' if a else 'r'} {lam}", csls(lam, a, True))
                               for a in (False, True) for lam in (0.02, 0.05, 0.1)]  # fmt: skip


__import__("atexit").register(lambda: print(f"variants_s36_fus36c: {unfound()}", file=sys.stderr))
