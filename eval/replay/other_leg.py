"""Where a search's answer sits in the other language's part of the query's own dense leg (issue 19, fus36a).

    .venv/bin/python eval/replay/other_leg.py $CAPS

The captured dense leg (variant 0) holds the query's top ``SEARCH_PREFETCH_LIMIT`` chunks; its chunks of notes in
another language than the query, ranked alone, approximate a dense search filtered to that language. Per model and
cell: the searches, those with a note of another language in the leg (``oth``), those whose first relevant note is
of another language (``rel-oth``), and of those the first relevant note's rank among the whole leg's notes
(``all@1``/``all@3``/``all@10``: its rank there at most 1/3/10) and among the other language's notes alone
(``sub@1``/``sub@3``/``sub@10``), with the median rank in each (``-``: not in the leg).

``--offset`` reads instead, on the fusion's dense scale (0 at the floor, 1 at the best cosine: main's fusion replayed
through the hook of ``eval/replay/replay.py``), per model, cell and whose first note is right (the other language's
first, ``oth-right``; the query's language's, ``own-right``; ``neither``): the quartiles (10/25/50/75/90 %) of the
``offset`` (the least, over ranks 2..10, of the own language's r-th note's value minus the other language's r-th:
the model's own-language bias below the first notes) and of ``gap − offset`` (``gap``: the own language's first
minus the other's), the separator of ``eval/replay/variants_s36_fus36a.py``'s ``offset`` hooks (EVAL.md, session 36).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import hooked_fusion, load

SEEN: dict[str, Any] = {}


def _record(rows: list[tuple[str, Any, float, float]], ctx: dict[str, Any]) -> None:
    """A replay hook that scores nothing: it records the offset and the gap of the search (``--offset``)."""
    language = ctx["evidence"].language
    own: list[tuple[float, str]] = []
    other: list[tuple[float, str]] = []
    for note, n, _, _ in rows:
        lang = n.dense_chunk.payload.get("lang") if n.dense_chunk is not None and n.dense > 0 else None
        if lang is not None:
            (own if lang == language else other).append((n.dense, note))
    own.sort(reverse=True)
    other.sort(reverse=True)
    pairs = [own[r][0] - other[r][0] for r in range(1, min(10, len(own), len(other)))]
    if pairs:
        SEEN.update(offset=min(pairs), gap=own[0][0] - other[0][0], own=own[0][1], other=other[0][1])


def _quantiles(values: list[float]) -> str:
    v = sorted(values)
    return "/".join(f"{v[len(v) * q // 100]:+.2f}" for q in (10, 25, 50, 75, 90))


def offsets(cells: dict[tuple[str, str], dict[str, Any]]) -> None:
    fusion = hooked_fusion()
    fusion.HOOK = _record
    found: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    for (model, cell), captured in sorted(cells.items()):
        for _, relevant, results, evidence, limit in captured["rows"]:
            SEEN.clear()
            fusion.fuse(results, evidence, limit, "hybrid")
            if SEEN:
                kind = (
                    "oth-right" if SEEN["other"] in relevant else "own-right" if SEEN["own"] in relevant else "neither"
                )
                found[(model, cell, kind)].append((SEEN["offset"], SEEN["gap"] - SEEN["offset"]))
    for (model, cell, kind), rows in sorted(found.items()):
        if len(rows) >= 4:
            print(f"{model:5} {cell:26} {kind:9} n={len(rows):3} offset {_quantiles([o for o, _ in rows])} "
                  f"gap-offset {_quantiles([d for _, d in rows])}")  # fmt: skip


def ranked_notes(chunks: list[Any]) -> list[tuple[str, str | None]]:
    """The leg's notes by their best chunk, best first, each with its recorded language."""
    seen: dict[str, str | None] = {}
    for c in sorted(chunks, key=lambda c: -c.score):
        path = c.payload.get("path")
        if path and path not in seen:
            seen[path] = c.payload.get("lang")
    return list(seen.items())


def main(argv: list[str]) -> int:
    if "--offset" in argv:
        offsets(load([Path(a) for a in argv if a != "--offset"]))
        return 0
    cells = load([Path(a) for a in argv], texts=False)
    print(f"{'model':5} {'cell':28} {'n':>4} {'oth':>4} {'rel-oth':>7} {'all@1':>5} {'all@3':>5} {'all@10':>6} "
          f"{'sub@1':>5} {'sub@3':>5} {'sub@10':>6} {'med-all':>7} {'med-sub':>7}")  # fmt: skip
    for (model, cell), captured in sorted(cells.items()):
        n = oth = relo = 0
        a = [0, 0, 0]
        s = [0, 0, 0]
        ra: list[int] = []
        rs: list[int] = []
        for _, relevant, results, evidence, _ in captured["rows"]:
            own = [chunks for leg, chunks in results if leg.kind == "dense" and leg.variant == 0 and chunks]
            if not own or evidence.language is None:
                continue
            n += 1
            lang = evidence.language
            whole = ranked_notes(own[0])
            sub = [p for p, lg in whole if lg is not None and lg != lang]
            oth += bool(sub)
            rel_langs = {lg for p, lg in whole if p in relevant}
            if not rel_langs or all(lg == lang for lg in rel_langs):
                continue
            relo += 1
            paths = [p for p, _ in whole]
            r_all = min((paths.index(p) + 1 for p in relevant if p in paths), default=999)
            r_sub = min((sub.index(p) + 1 for p in relevant if p in sub), default=999)
            for i, k in enumerate((1, 3, 10)):
                a[i] += r_all <= k
                s[i] += r_sub <= k
            ra.append(r_all)
            rs.append(r_sub)
        med = lambda v: str(sorted(v)[len(v) // 2]) if v else "-"  # noqa: E731
        print(f"{model:5} {cell:28} {n:4} {oth:4} {relo:7} {a[0]:5} {a[1]:5} {a[2]:6} {s[0]:5} {s[1]:5} {s[2]:6} "
              f"{med(ra):>7} {med(rs):>7}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
