"""One side of ``eval/replay/replay.py --compare``: the captures replayed through the :mod:`kbsearch.fusion` this
process imports (``replay.py`` starts it with a tree's ``layers/kbsearch`` first on ``PYTHONPATH``), each search's
query evidence re-derived by that tree's own :func:`kbsearch.fusion.analyse`.

    PYTHONPATH=/tmp/before/layers/kbsearch:tools .venv/bin/python eval/replay/side.py .kbsearch/replay/*.pkl \\
        [--set NAME=VALUE] > side.pkl

Writes a pickle to stdout: the tree's ``layers/kbsearch`` (``root``), each cell's nDCG@10 per search (``scores``),
how many searches' evidence reads differently from the capture's (``evidence``) and in how many the capture's
probes carry paths for other terms than this tree would ask paths for (``probes``: the legs are the capture's).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path
from typing import Any

from kbsearch import fusion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import load, params_from, run


def _named(results: Any) -> tuple[frozenset[int], frozenset[int]]:
    """The terms the capture probed, and those it probed with paths."""
    probes = [leg for leg, _ in results if leg.kind == "probe"]
    return frozenset(leg.term for leg in probes), frozenset(leg.term for leg in probes if not leg.bare)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="+", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--flag", default="--set", help="the option replay.py was given these settings by")
    parser.add_argument("--no-texts", dest="texts", action="store_false", help="no chunk heading or text re-attached")
    args = parser.parse_args(argv)
    params = params_from(fusion, args.set, args.flag)
    cells = load(args.captures, args.texts)
    differ = unprobed = 0
    for captured in cells.values():
        rows = []
        for query, relevant, results, evidence, limit in captured["rows"]:
            own = fusion.analyse(evidence.text)
            differ += own != evidence
            probed, named = _named(results)
            unprobed += fusion.path_probes(own, params) & probed != named
            rows.append((query, relevant, results, own, limit))
        captured["rows"] = rows
    answer = {
        "root": str(Path(fusion.__file__).resolve().parents[1]),
        "scores": run(fusion, cells, params=params),
        "evidence": differ,
        "probes": unprobed,
    }
    pickle.dump(answer, sys.stdout.buffer, protocol=5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
