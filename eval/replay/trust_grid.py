"""Each (corpus, model) pair's best ``lexical_weight`` × ``close_weight``, replayed (session 30, trust30).

    .venv/bin/python eval/replay/trust_grid.py .kbsearch/replay29/*.pkl [--weights 0.5,0.7,1.0] [--closes 0.3,0.5]

Replays every capture (one file: one corpus, one model) through this tree's fusion at each point of the grid and
prints, per capture: the defaults' mean hybrid nDCG@10 over its cells (each cell counts once), the cells short of
their target (:func:`replay._target`; known items also under 0.98) and their summed shortfall, then the point with
the least shortfall (ties: the higher mean) and the point with the highest mean, each with its searches better /
worse than the defaults. This is the ceiling a per-collection setting could reach (EVAL.md, session 28), for the
self-test (``eval/selftest.py``) to be compared with.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import replay  # this folder's script, imported for its replay

import kbsearch.fusion


def shortfall(name: str, gap: float, hybrid: float) -> float:
    """How far a cell is under its targets (0: met)."""
    short = max(0.0, replay._target(name) - gap)
    if "known-item" in name:
        short += max(0.0, 0.98 - hybrid)
    return short


def summary(cells: dict, scores: dict) -> tuple[float, int, float]:
    """(mean hybrid over the cells, cells short, summed shortfall)."""
    means, short, total = [], 0, 0.0
    for key, captured in cells.items():
        hybrid = replay._mean(scores[key])
        gap = hybrid - max(captured["phases"]["lexical"], captured["phases"]["dense"])
        s = shortfall(key[1], gap, hybrid)
        means.append(hybrid)
        short += s > 1e-9
        total += s
    return sum(means) / len(means), short, total


def moved(base: dict, scores: dict) -> tuple[int, int]:
    better = worse = 0
    for key, before in base.items():
        up, down = replay._moved(before, scores[key])
        better, worse = better + up, worse + down
    return better, worse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="+", type=Path)
    parser.add_argument("--weights", default="0.5,0.6,0.7,0.8,0.9,1.0,1.2")
    parser.add_argument("--closes", default="0.3,0.4,0.5,0.6,0.7,0.8")
    args = parser.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",")]
    closes = [float(c) for c in args.closes.split(",")]
    fusion = kbsearch.fusion
    defaults = fusion.FusionParams()
    for path in args.captures:
        cells = replay.load([path])
        base = replay.run(fusion, cells, params=defaults)
        mean0, short0, total0 = summary(cells, base)
        rows = []
        for w in weights:
            for c in closes:
                scores = replay.run(fusion, cells, params=fusion.FusionParams(lexical_weight=w, close_weight=c))
                rows.append((w, c, *summary(cells, scores), *moved(base, scores)))
        least = min(rows, key=lambda r: (round(r[4], 4), -r[2]))
        best = max(rows, key=lambda r: r[2])
        print(f"{path.name:26} defaults (W {defaults.lexical_weight}, C {defaults.close_weight}): mean {mean0:.4f}, "
              f"short {short0} ({total0:.4f})")  # fmt: skip
        for label, r in (("least short", least), ("best mean", best)):
            print(f"    {label:11} W {r[0]:.1f} C {r[1]:.1f}: mean {r[2]:.4f} ({r[2] - mean0:+.4f}), short {r[3]} "
                  f"({r[4]:.4f}), searches better/worse {r[5]}/{r[6]}")  # fmt: skip
        for w in weights:
            line = "  ".join(f"{r[2] - mean0:+.4f}/{r[3]}" for r in rows if r[0] == w)
            print(f"    W {w:.1f}: {line}   (C {', '.join(map(str, closes))}: mean change / cells short)")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
