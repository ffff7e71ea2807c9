"""Session 34's variants (fus34a, issue 19: the translated variant's BM25 leg, scaled by probes of its own terms):
trees for ``replay.py --compare`` over captures of the ``expanded`` phase made with this tree's retrieval (each
translated BM25 leg's terms probed alone, :func:`kbsearch.fusion.translation_terms`), one edit of
:func:`kbsearch.fusion.translation_scale` each (EVAL.md, "Session 34: ... (issue 19, fus34a)"):

    .venv/bin/python eval/replay/variants_s34_fus34a.py /tmp/fus34a/variants       # writes cov/, scale/, ...
    PYTHONPATH=/tmp/fus34a/variants/cov/layers/kbsearch:tools .venv/bin/python eval/replay/replay.py \\
        /work/main/.kbsearch/replay34/fus34a-$M-expanded-*.pkl --compare /tmp/base34 --detail      # M=e5, M=use

No variant passed (EVAL.md): the tree that holds the probes and this file's edits is the commit that adds this file
(the branch's tip reverts the probes); run it from a worktree of that commit.

The tree itself is the full form: the leg's chunks are shares of its attainable score (its present terms' probes
summed), times its coverage (present / probed), times its trust ``1 + confidence_gain · (best share − 0.5)``, as the
query's own leg is counted. The variants keep a part of that:

- ``scale``: the attainable score alone (no coverage, no trust);
- ``cov``: the coverage alone (shares of the leg's own top hit, as before, x present / probed);
- ``scale+cov``: both, no trust;
- ``damp``: the full form, but the trust never above 1 (the translation can only count less than before);
- ``trust``: the shares of the leg's own top hit as before, x the trust never above 1 (only the trust is read);
- ``rel``, ``rel-damp``, ``rel-scale+cov``, ``rel2-damp``: by its probes only where the translation's best share
  (``rel2``: x its coverage) is under the query's own leg's; elsewhere by its own top hit as before;
- ``closer``, ``closer-damp``: by its probes only where the query's own dense leg's best cosine is at least the
  translation's dense leg's (bil33's "closer leg"); elsewhere as before.

``/tmp/base34`` (main's tree) ignores the translation's probes: it replays what main's fusion does on the same legs.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "kbsearch"

_CALL = "            scale, covered, trust = translation_scale(chunks[0].score, theirs.get(leg.variant), p)\n"
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
    "trust": _FULL.replace(
        "attainable, len(found) / len(probes), max(0.0, 1.0 + p.confidence_gain * (best - 0.5))",
        "top, 1.0, min(1.0, max(0.0, 1.0 + p.confidence_gain * (best - 0.5)))",
    ),
}
_REL2 = (
    _CALL
    + """            mine = next((min(1.0, cs[0].score / attainable) * coverage for lg, cs in lexical_legs
                         if lg.variant == 0 and attainable > 0), 0.0)  # variant rel2
            if scale > 0 and min(1.0, chunks[0].score / scale) * covered >= mine:
                scale, covered, trust = chunks[0].score, 1.0, 1.0
"""
)


#: the ``rel`` variants: where the translation's best chunk reaches at least the share of its attainable score the
#: query's own leg's best chunk does (the translation's words are held more fully: its language is the answer's), the
#: translation counts by its own top hit as before; elsewhere by its probes (the full form, ``damp`` or ``scale+cov``)
_REL = (
    _CALL
    + """            mine = next((min(1.0, cs[0].score / attainable) for lg, cs in lexical_legs
                         if lg.variant == 0 and attainable > 0), 0.0)  # variant rel
            if scale > 0 and min(1.0, chunks[0].score / scale) >= mine:
                scale, covered, trust = chunks[0].score, 1.0, 1.0
"""
)
#: the ``closer`` variants: the translation counts by its probes only where the query's own dense leg's best cosine
#: is at least the translation's dense leg's (the query's language matches best: bil33's "closer leg"), elsewhere by
#: its own top hit as before
_CLOSER = (
    _CALL
    + """            ours = max((cs[0].score for lg, cs in cosines if lg.variant == 0), default=0.0)  # variant closer
            yours = max((cs[0].score for lg, cs in cosines if lg.language == leg.language), default=0.0)
            if yours > ours:
                scale, covered, trust = chunks[0].score, 1.0, 1.0
"""
)
EDITS = {name: [(_FULL, new)] for name, new in TREES.items()}
EDITS |= {"rel2-damp": [(_FULL, TREES["damp"]), (_CALL, _REL2)]}
EDITS |= {"closer": [(_CALL, _CLOSER)], "closer-damp": [(_FULL, TREES["damp"]), (_CALL, _CLOSER)]}
EDITS |= {"rel": [(_CALL, _REL)], "rel-damp": [(_FULL, TREES["damp"]), (_CALL, _REL)],
          "rel-scale+cov": [(_FULL, TREES["scale+cov"]), (_CALL, _REL)]}  # fmt: skip


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    for name, edits in EDITS.items():
        tree = out / name / "layers" / "kbsearch"
        if tree.exists():
            shutil.rmtree(tree)
        shutil.copytree(PACKAGE, tree, ignore=shutil.ignore_patterns("__pycache__"))
        path = tree / "kbsearch" / "fusion.py"
        text = path.read_text(encoding="utf-8")
        for old, new in edits:
            if text.count(old) != 1:
                raise SystemExit(f"fusion.py changed: variant {name} no longer applies (update {__file__})")
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
        print(f"{name}: {tree}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
