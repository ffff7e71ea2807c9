"""The searches of a captured class where hybrid ranks the answer below one of its legs: what costs a cell.

    .venv/bin/python eval/replay/searches.py .kbsearch/replay/e5-classes-gnome.pkl --class gnome-cross-en-to-ru

For each search of the class (``eval/replay/capture.py``'s file): the rank of its first relevant note in the dense
leg, in the lexical leg (the ``lexical`` legs of the search merged by BM25 score: one a language when the query's
language is not certain), and in the fusion's answer (``fuse`` replayed as it is), each one's nDCG@10, and the
first notes of the fusion (with its rank in each leg, and ``pinned`` when the fusion pinned it as an exact match)
and of dense. A search is listed when hybrid's nDCG@10 is under the better leg's, with the loss; ``--all`` lists
every search. The listed losses over the class's n are what hybrid loses search by search to the better leg of
each; the cell's gap compares class means (hybrid against the better *phase*, whose searches are run apart: the
legs here are the fusion's inputs), where searches one leg got right and hybrid too offset part of it.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path
from typing import Any

from kbsearch_tools.metrics import ndcg_at

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import hooked_fusion, upgraded

FUSION = hooked_fusion()  # kbsearch.fusion, its scoring loop opened: the hook below only records what was pinned


def _notes(chunks: list[Any]) -> list[str]:
    """The leg's notes in order, each once (a note's first chunk places it)."""
    seen: dict[str, None] = {}
    for c in chunks:
        path = c.payload.get("path")
        if path is not None:
            seen.setdefault(path, None)
    return list(seen)


def _rank(notes: list[str], relevant: frozenset[str]) -> str:
    return next((str(i) for i, n in enumerate(notes, 1) if n in relevant), "-")


def _first(hybrid: list[str], dense: list[str], lexical: list[str], pinned: set[str]) -> str:
    """The fusion's first note, its rank in each leg (``dense/lexical``), ``pinned`` when it is an exact match."""
    if not hybrid:
        return "-"
    top = hybrid[0]
    pin = ", pinned" if top in pinned else ""
    return f"{top} {_rank(dense, frozenset({top}))}/{_rank(lexical, frozenset({top}))}{pin}"


def _fuse(results: Any, evidence: Any, limit: int) -> tuple[list[str], set[str]]:
    """The fusion's notes, best first, and the exact matches it pinned."""
    pinned: set[str] = set()

    def record(rows: Any, context: dict[str, Any]) -> None:
        pinned.update(context["pinned"])

    FUSION.HOOK = record
    try:
        fused = FUSION.fuse(results, evidence, limit, "hybrid")
    finally:
        FUSION.HOOK = None
    return [c.payload["path"] for c in fused if c.payload.get("path") is not None], pinned


def rows(captured: dict[str, Any]) -> list[tuple[str, str, str, str, float, float, float, str, str]]:
    """(query, dense rank, lexical rank, hybrid rank, dense nDCG@10, lexical nDCG@10, hybrid nDCG@10, hybrid's first
    note, dense's first note) a search."""
    out = []
    for query, relevant, results, evidence, limit in captured["rows"]:
        dense = _notes([c for leg, chunks in results if leg.kind == "dense" for c in chunks])
        lexical = _notes(sorted((c for leg, chunks in results if leg.kind == "lexical" for c in chunks),
                                key=lambda c: -c.score))  # fmt: skip
        hybrid, pinned = _fuse(results, evidence, limit)
        out.append((query, _rank(dense, relevant), _rank(lexical, relevant), _rank(hybrid, relevant),
                    ndcg_at(dense, set(relevant), 10), ndcg_at(lexical, set(relevant), 10),
                    ndcg_at(hybrid, set(relevant), 10), _first(hybrid, dense, lexical, pinned), dense[0] if dense else "-"))  # fmt: skip
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", type=Path)
    parser.add_argument("--class", dest="name", required=True, help="the class's name in the capture")
    parser.add_argument("--all", action="store_true", help="every search, not only those hybrid loses")
    args = parser.parse_args(argv)
    with args.capture.open("rb") as f:
        cells = upgraded(pickle.load(f))  # noqa: S301 (a capture capture.py wrote)
    if args.name not in cells:
        print(f"{args.name}: not in {args.capture} (classes: {', '.join(sorted(cells))})", file=sys.stderr)
        return 2
    found = rows(cells[args.name])
    lost = 0.0
    print(
        f"{'dense':>5} {'lex':>4} {'hyb':>4}  {'loss':>6}  query  [hybrid's first note dense/lexical rank, dense's first note]"
    )
    for query, rd, rl, rh, nd, nl, nh, first, dfirst in found:
        loss = max(nd, nl) - nh
        if loss > 1e-9:
            lost += loss
        if args.all or loss > 1e-9:
            print(
                f"{rd:>5} {rl:>4} {rh:>4}  {-loss if loss > 1e-9 else nh - max(nd, nl):+.3f}  {query}  [{first}, {dfirst}]"
            )
    n = len(found)
    print(f"{args.name}: {n} searches, hybrid under its better leg in {sum(max(r[4], r[5]) > r[6] + 1e-9 for r in found)}"
          f" (losses {lost:.3f}, {lost / n:.4f} of the class's mean), above both in "
          f"{sum(r[6] > max(r[4], r[5]) + 1e-9 for r in found)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
