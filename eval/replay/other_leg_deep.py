"""The ``offset`` rule (``eval/replay/variants_s36_fus36a.py``) with a whole dense leg of the other language, from a
capture whose query dense leg was also run 8x deeper (issue 19, fus36a; EVAL.md, session 36).

The simulation over the regular captures sees only the other-language notes of the query's top 100 chunks: a
same-language question's leg often holds fewer than the rule needs, so it cannot fire there. This replays a capture
taken by a throwaway tree whose ``batch_searches`` adds, after the query's dense search, the same search 8x deeper
with payloads (``Leg("dense-deep", 0)``; the fusion reads no such kind). For each search:

- *before*: the capture's legs without the deep one, fused as main fuses them (no hook);
- *after*: the same legs plus a dense leg of the other language's chunks of the deep search, the first
  ``limit`` of them (what a dense search filtered by the recorded ``lang`` would return: the same cosines, so the
  fusion's shared dense scale reads them; a leg with a ``language`` counts in no floor), fused with the hook.

    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/replay/other_leg_deep.py \\
        /work/main/.kbsearch/replay36/fus36a/e5-deep-bil.pkl ["offset 1.0 r3-20 median less 0.05" ...]

``--hubs`` counts instead, per query language, which note tops the other language's leg how often (its four most
frequent firsts). ``--changes`` lists each search the variant ranks worse (its query, relevant notes, first two notes before and after).
Prints per cell nDCG@10 before → after, its change and the searches better / worse, per variant (default: the
variants of ``variants_s36_fus36a.py``, the first, ``shift 0``, the control: the other language's leg read with no
lift, which must move nothing the rule does not).
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import fused_paths, hooked_fusion, load

from kbsearch_tools.metrics import ndcg_at

HERE = Path(__file__).resolve().parent


def variants() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("variants_s36_fus36a", HERE / "variants_s36_fus36a.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.VARIANTS + module.GRID)


def split(results: list[Any], language: str | None) -> tuple[list[Any], list[Any]]:
    """The capture's legs without the deep one, and the same plus the other language's leg."""
    base = [(leg, chunks) for leg, chunks in results if leg.kind != "dense-deep"]
    deep = [(leg, chunks) for leg, chunks in results if leg.kind == "dense-deep"]
    if not deep or language is None:
        return base, base
    chunks = deep[0][1]
    own = next(lg for lg, _ in base if lg.kind == "dense" and lg.variant == 0)
    other = [c for c in chunks if c.payload.get("lang") not in (None, language)][: own.limit]
    if not other:
        return base, base
    extra = type(own)("dense", 0, other[0].payload.get("lang"), limit=own.limit)
    return base, [*base, (extra, other)]


def fused_pair(fusion: Any, hook: Any, results: list[Any], evidence: Any, limit: int) -> tuple[list[Any], list[Any]]:
    """One search's paths as main fuses its captured legs (no hook), and with the other language's leg and ``hook``."""
    return fused_paths(fusion, "HOOK", (None, hook), split(results, evidence.language), evidence, limit)


def hubs(cells: dict[tuple[str, str], dict[str, Any]]) -> None:
    firsts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for (model, _), captured in cells.items():
        for _, _, results, evidence, _ in captured["rows"]:
            base, extended = split(results, evidence.language)
            if len(extended) > len(base):  # the other language's leg was added
                firsts[(model, str(evidence.language))][str(extended[-1][1][0].payload.get("path"))] += 1
    for (model, language), counted in sorted(firsts.items()):
        print(f"{model} {language} queries {sum(counted.values())}: {counted.most_common(4)}")


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv if a.endswith(".pkl")]
    if "--hubs" in argv:
        hubs(load(paths, texts=False))
        return 0
    changes = "--changes" in argv
    names = [a for a in argv if not a.endswith(".pkl") and a != "--changes"]
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    known = variants()
    chosen = {n: known[n] for n in names} if names else dict(list(known.items())[:5])
    cells = load(paths)
    fusion = hooked_fusion()
    for name, hook in chosen.items():
        print(name)
        better = worse = 0
        for (model, cell), captured in sorted(cells.items()):
            before, after = [], []
            for _, relevant, results, evidence, limit in captured["rows"]:
                a, b = fused_pair(fusion, hook, results, evidence, limit)
                before.append(ndcg_at(a, set(relevant), 10))
                after.append(ndcg_at(b, set(relevant), 10))
                if changes and after[-1] < before[-1] - 1e-9:
                    print(f"      worse {cell} {evidence.text!r} {sorted(relevant)}: {a[:2]} → {b[:2]}")
            fusion.HOOK = None
            up = sum(y > x + 1e-9 for x, y in zip(before, after, strict=True))
            down = sum(y < x - 1e-9 for x, y in zip(before, after, strict=True))
            better, worse = better + up, worse + down
            mb, ma = sum(before) / len(before), sum(after) / len(after)
            print(f"    {model:4} {cell:22} n={len(before):4} hybrid {mb:.4f} → {ma:.4f} ({ma - mb:+.4f}) "
                  f"better/worse {up}/{down}")  # fmt: skip
        print(f"    all: better/worse {better}/{worse}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
