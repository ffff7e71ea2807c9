"""What a change to the fusion costs a search: ``fuse()`` over captured searches (``eval/replay/capture.py``), the
tree's :mod:`kbsearch.fusion` against another copy of ``fusion.py`` (the one before the change), alternating.

    git show main:layers/kbsearch/kbsearch/fusion.py > /tmp/fusion_before.py
    .venv/bin/python eval/replay/cost.py .kbsearch/replay/*.pkl --before /tmp/fusion_before.py --repeat 7

Each search is fused by both modules in turn, ``--repeat`` times each, and keeps each module's fastest time (the
least disturbed by other work on the host); per capture file it prints the median over its searches of each
module's time and of the per-search difference (after − before), in µs.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import kbsearch.fusion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import load


def load_module(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("kbsearch_fusion_before", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def fastest(fuse: Any, search: tuple[Any, Any, int]) -> float:
    results, evidence, limit = search
    start = time.perf_counter()
    fuse(results, evidence, limit, "hybrid")
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="+", type=Path)
    parser.add_argument("--before", type=Path, required=True, help="the fusion.py to compare the tree's with")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    before, after = load_module(args.before).fuse, kbsearch.fusion.fuse
    for path in args.captures:
        classes = load([path])  # each chunk's heading and text re-attached (eval/replay/texts.py)
        searches = [
            (results, evidence, limit) for c in classes.values() for _, _, results, evidence, limit in c["rows"]
        ]
        old, new = [], []
        for search in searches:
            times: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(args.repeat):
                times["before"].append(fastest(before, search))
                times["after"].append(fastest(after, search))
            old.append(min(times["before"]) * 1e6)
            new.append(min(times["after"]) * 1e6)
        diff = statistics.median(b - a for a, b in zip(old, new, strict=True))
        print(f"{path.name}: {len(searches)} searches, before p50 {statistics.median(old):.1f} µs, after p50 "
              f"{statistics.median(new):.1f} µs, median difference {diff:+.1f} µs")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
