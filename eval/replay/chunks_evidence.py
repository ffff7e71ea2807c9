"""How much a note's several chunks tell a relevant note from the one the fusion put above it (same38, session 38).

For each search of the same-language question classes (``replay.SAME_LANGUAGE_QUESTIONS``) the defaults' fusion is
run with a hook that only reads its per-note rows (it scores nothing). Two notes are compared per search: the
fusion's first note and, where that first is not relevant, the best-ranked relevant note (``lost``); where it is,
the fused second note (``won``: the pair a chunk credit could swap the wrong way). For each pair it counts which note
has the larger value of each chunk-evidence reading (``variants_s38_same38``'s): ``d2`` its second distinct chunk on
the dense scale, ``l2`` its second chunk in the query's own BM25 leg, ``m`` its chunks among the own dense leg's
first 10 plus the own BM25 leg's first 10, and ``chunks`` how many chunks it has in the dense legs at all (a long
note has more). A reading is evidence when, in lost pairs, the relevant note holds more (it would lift it) and, in
won pairs, the fused first holds more (it would keep it): ``helps`` = lost pairs relevant-more + won pairs first-more,
``hurts`` = lost pairs wrong-more + won pairs second-more.

    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/replay/chunks_evidence.py CAPTURE.pkl ...
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import SAME_LANGUAGE_QUESTIONS, hooked_fusion, load
from variants_s38_same38 import dense_values, lexical_values, own_lexical

READINGS = ("d2", "l2", "m", "chunks")


def readings(rows: list[Any], ctx: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Note → each reading's value."""
    dense, lexical = dense_values(ctx), lexical_values(rows, ctx)
    own_dense = ctx["dense_legs"][0] if ctx["dense_legs"] else []
    firsts = Counter(c.payload.get("path") for c in own_dense[:10])
    firsts.update(c.payload.get("path") for c in own_lexical(ctx)[:10])
    out = {}
    for note, *_ in rows:
        d, lx = dense.get(note, []), lexical.get(note, [])
        out[note] = {
            "d2": d[1] if len(d) > 1 else 0.0,
            "l2": lx[1] if len(lx) > 1 else 0.0,
            "m": float(firsts.get(note, 0)),
            "chunks": float(len(d)),
        }
    return out


def main(argv: list[str]) -> int:
    cells = load([Path(a) for a in argv if a.endswith(".pkl")])
    fusion = hooked_fusion()
    seen: dict[str, Any] = {}

    def hook(rows: list[Any], ctx: dict[str, Any]) -> None:
        seen["read"] = readings(rows, ctx)

    for model in sorted({m for m, _ in cells}):
        tally = {r: Counter() for r in READINGS}
        pairs = Counter()
        for (m, cell), captured in sorted(cells.items()):
            if m != model or cell.rpartition(":")[2] not in SAME_LANGUAGE_QUESTIONS:
                continue
            for _, relevant, results, evidence, limit in captured["rows"]:
                fusion.HOOK = hook
                ranked = [c.payload.get("path") for c in fusion.fuse(results, evidence, limit, "hybrid")]
                fusion.HOOK = None
                read = seen.pop("read", {})
                if len(ranked) < 2:
                    continue
                if ranked[0] in relevant:
                    kind, good, bad = "won", ranked[0], ranked[1]
                else:
                    found = next((note for note in ranked if note in relevant), None)
                    if found is None:
                        continue
                    kind, good, bad = "lost", found, ranked[0]
                pairs[kind] += 1
                for r in READINGS:
                    g, b = read.get(good, {}).get(r, 0.0), read.get(bad, {}).get(r, 0.0)
                    tally[r][(kind, "helps" if g > b else "hurts" if b > g else "even")] += 1
        print(f"{model}: {pairs['lost']} lost pairs (the relevant note below the fused first), {pairs['won']} won")
        for r in READINGS:
            t = tally[r]
            print(f"    {r:7} lost: relevant more {t[('lost', 'helps')]:3}, wrong more {t[('lost', 'hurts')]:3}, even "
                  f"{t[('lost', 'even')]:3} | won: first more {t[('won', 'helps')]:3}, second more "
                  f"{t[('won', 'hurts')]:3}, even {t[('won', 'even')]:3}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
