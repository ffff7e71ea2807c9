"""Session 34's variants (fus34a, issue 19: the translated variant's BM25 leg, scaled by probes of its own terms):
trees for ``replay.py --compare`` over captures of the ``expanded`` phase made with this tree's retrieval (each
translated BM25 leg's terms probed alone, :func:`kbsearch.fusion.translation_terms`), one edit of
:func:`kbsearch.fusion.translation_scale` each (EVAL.md, "Session 34: ... (issue 19, fus34a)"):

    .venv/bin/python eval/replay/variants_s34_fus34a.py /tmp/fus34a/variants       # writes cov/, scale/, ...
    PYTHONPATH=/tmp/fus34a/variants/cov/layers/kbsearch:tools .venv/bin/python eval/replay/replay.py \\
        /work/main/.kbsearch/replay34/fus34a-*-expanded-*.pkl --compare /tmp/base34 --detail

The tree itself is the full form: the leg's chunks are shares of its attainable score (its present terms' probes
summed), times its coverage (present / probed), times its trust ``1 + confidence_gain · (best share − 0.5)``, as the
query's own leg is counted. The variants keep a part of that:

- ``scale``: the attainable score alone (no coverage, no trust);
- ``cov``: the coverage alone (shares of the leg's own top hit, as before, x present / probed);
- ``scale+cov``: both, no trust;
- ``damp``: the full form, but the trust never above 1 (the translation can only count less than before).

``/tmp/base34`` (main's tree) ignores the translation's probes: it replays what main's fusion does on the same legs.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "kbsearch"

_FULL = "    return attainable, len(found) / len(probes), max(0.0, 1.0 + p.confidence_gain * (best - 0.5))\n"
TREES = {
    "scale": _FULL.replace("len(found) / len(probes), max(0.0, 1.0 + p.confidence_gain * (best - 0.5))", "1.0, 1.0"),
    "cov": _FULL.replace(
        "attainable, len(found) / len(probes), max(0.0, 1.0 + p.confidence_gain * (best - 0.5))",
        "top, len(found) / len(probes), 1.0",
    ),
    "scale+cov": _FULL.replace("max(0.0, 1.0 + p.confidence_gain * (best - 0.5))", "1.0"),
    "damp": _FULL.replace(
        "max(0.0, 1.0 + p.confidence_gain * (best - 0.5))", "min(1.0, max(0.0, 1.0 + p.confidence_gain * (best - 0.5)))"
    ),
}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    for name, new in TREES.items():
        tree = out / name / "layers" / "kbsearch"
        if tree.exists():
            shutil.rmtree(tree)
        shutil.copytree(PACKAGE, tree, ignore=shutil.ignore_patterns("__pycache__"))
        path = tree / "kbsearch" / "fusion.py"
        text = path.read_text(encoding="utf-8")
        if text.count(_FULL) != 1:
            raise SystemExit(f"fusion.py changed: variant {name} no longer applies (update {__file__})")
        path.write_text(text.replace(_FULL, new), encoding="utf-8")
        print(f"{name}: {tree}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
