"""The captured searches whose query's language this tree judges otherwise than the capture did, replayed with this
tree's judgement: each such search's nDCG@10 with the captured evidence and with this tree's
(:func:`kbsearch.fusion.analyse` of the query; the query's own BM25 legs, which the capture labelled with the old
language, relabelled: a BM25 search does not depend on the label, only the fusion reads it). EVAL.md, session 36
(the lead): a Latin name beside a Russian word.

    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/replay/language_flips.py CAPTURE...
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import replay

from kbsearch import fusion
from kbsearch_tools.metrics import ndcg_at


def relabelled(results: list, old: str | None, new: str | None) -> list:
    out = []
    for leg, chunks in results:
        own = leg.variant == 0 and leg.kind.startswith("lexical") and leg.language == old
        out.append((dataclasses.replace(leg, language=new) if own else leg, chunks))
    return out


def main(argv: list[str]) -> int:
    cells = replay.load([Path(a) for a in argv], check=True)
    total = [0, 0, 0]
    for (model, name), captured in sorted(cells.items()):
        for query, relevant, results, evidence, limit in captured["rows"]:
            now = fusion.analyse(query)
            if now.language == evidence.language:
                continue
            before = ndcg_at([c.payload.get("path") for c in fusion.fuse(results, evidence, limit, "hybrid", None)],
                             set(relevant), 10)  # fmt: skip
            moved = relabelled(results, evidence.language, now.language)
            after = ndcg_at([c.payload.get("path") for c in fusion.fuse(moved, now, limit, "hybrid", None)],
                            set(relevant), 10)  # fmt: skip
            total[0] += 1
            total[1] += after > before + 1e-9
            total[2] += after < before - 1e-9
            print(f"{model} {name}: {evidence.language} -> {now.language}  {before:.3f} -> {after:.3f}  {query}")
    print(f"{total[0]} searches judged otherwise: {total[1]} better, {total[2]} worse")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
