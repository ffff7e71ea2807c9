"""Where the two legs disagree on their first note and one of them is right: which one, and does it show?

    .venv/bin/python eval/replay/disagree.py /work/main/.kbsearch/replay32/*.pkl

For each search with nothing pinned whose dense first note (by the fusion's per-note dense value) is not BM25's first
(by its lexical value after the trust and the language factor) and exactly one of the two is relevant: which leg was
right, and whether the fusion's first note is relevant. Counted per model, per group (the same-language question
classes, ``Q``, and every other class) and per *chunk agreement* of each leg's first note (``dA``/``lA``: the note's
best dense chunk is its best BM25 chunk, the two legs point at the same passage; ``d-``/``l-``: they do not). Session
33 (fus33a, EVAL.md) read it for a per-search signal that tells the e5 cases (dense right) from the USE ones (BM25
right) on the same evidence.
"""

from __future__ import annotations

import pickle
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import SAME_LANGUAGE_QUESTIONS, hooked_fusion, upgraded

FUSION = hooked_fusion()


def _same_chunk(n: Any) -> bool:
    return n.dense_chunk is not None and n.lexical_chunk is not None and n.dense_chunk.id == n.lexical_chunk.id


def main(paths: list[str]) -> int:
    seen: dict[str, Any] = {}

    def record(rows: Any, context: dict[str, Any]) -> None:
        seen["rows"], seen["pinned"] = rows, context["pinned"]

    count: Counter[tuple[str, ...]] = Counter()
    FUSION.HOOK = record
    try:
        for path in paths:
            model = Path(path).name.split("-")[0]
            with open(path, "rb") as f:
                cells = upgraded(pickle.load(f))  # noqa: S301 (a capture capture.py wrote)
            for name, captured in cells.items():
                group = "Q" if name in SAME_LANGUAGE_QUESTIONS else "other"
                for _, relevant, results, evidence, limit in captured["rows"]:
                    seen.clear()
                    fused = FUSION.fuse(results, evidence, limit, "hybrid")
                    rows = seen.get("rows")
                    if not rows or seen["pinned"]:
                        continue
                    d = min(rows, key=lambda r: (-r[1].dense, r[0]))
                    lx = min(rows, key=lambda r: (-r[1].lexical, r[0]))
                    if d[0] == lx[0] or lx[1].lexical <= 0 or (d[0] in relevant) == (lx[0] in relevant):
                        continue
                    key = (model, group, "dA" if _same_chunk(d[1]) else "d-", "lA" if _same_chunk(lx[1]) else "l-")
                    count[(*key, "dense" if d[0] in relevant else "bm25")] += 1
                    count[(*key, "hybrid")] += bool(fused) and fused[0].payload.get("path") in relevant
    finally:
        FUSION.HOOK = None
    for cell in sorted({k[:4] for k in count}):
        print(f"{' '.join(cell):16} dense right {count[(*cell, 'dense')]:4}  BM25 right {count[(*cell, 'bm25')]:4}  "
              f"hybrid's first right {count[(*cell, 'hybrid')]:4}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
