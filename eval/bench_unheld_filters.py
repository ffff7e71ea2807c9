"""What the unheld-filter hint (walk34's ``BrowseService.unheld_filters``) adds to a filtered ``kb_search`` of no hits
(rev34b). ``kbsearch mcp`` is spawned per tree and run (its ``PYTHONPATH`` at that tree's ``layers/kbsearch`` and
``tools``) over one embedded store, ``--calls`` timed ``kb_search`` calls each after two warm ones; the trees
alternate ``--rounds`` times; printed: each run's median and the median of those, per argument set. A tree is any
checkout (``git archive <rev> layers tools | tar -x -C DIR``). The 10x vault of BENCHMARKS.md, BM25 only:

    mkdir -p /tmp/v10 && for i in $(seq 0 9); do cp -r ../shared/kb/obsidian-help /tmp/v10/c$i; done
    QDRANT_PATH=/tmp/q10 .venv/bin/kbsearch index /tmp/v10
    nice -n 5 .venv/bin/python eval/bench_unheld_filters.py --store /tmp/q10 --kb /tmp/v10 /tmp/base /tmp/walk .
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Filtered searches of no hits: a misspelt tag, a folder that holds notes, a misspelt folder, a misspelt type.
ARGUMENTS: list[dict[str, Any]] = [
    {"query": "zzqq", "tags": ["pluginz"]},
    {"query": "zzqq", "path_prefix": "c3/en/Bases"},
    {"query": "zzqq", "path_prefix": "c3/en/Base"},
    {"query": "zzqq", "types": ["referense"]},
]


def run(tree: Path, store: str, kb: str, arguments: dict[str, Any], calls: int) -> tuple[list[float], str]:
    """One ``kbsearch mcp`` of ``tree``: the wall of each timed call (ms) and the last answer's text."""
    env = dict(os.environ, PYTHONPATH=f"{tree}/layers/kbsearch:{tree}/tools", QDRANT_PATH=store)
    process = subprocess.Popen([sys.executable, "-m", "kbsearch_tools.cli", "mcp", "--kb", kb], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)  # fmt: skip
    assert process.stdin is not None and process.stdout is not None

    def send(message: dict[str, Any]) -> None:
        assert process.stdin is not None
        process.stdin.write(json.dumps(message) + "\n")
        process.stdin.flush()

    send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
          "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})  # fmt: skip
    process.stdout.readline()
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    walls, text = [], ""
    for i in range(calls + 2):
        started = time.perf_counter()
        send({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
              "params": {"name": "kb_search", "arguments": arguments}})  # fmt: skip
        answer = json.loads(process.stdout.readline())
        if i >= 2:
            walls.append((time.perf_counter() - started) * 1000)
        text = answer["result"]["content"][0]["text"]
    process.stdin.close()
    process.wait()
    return walls, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs="+", type=Path, help="checkouts to compare (each with layers/ and tools/)")
    parser.add_argument("--store", required=True, help="QDRANT_PATH of the indexed KB")
    parser.add_argument("--kb", required=True, help="the KB folder indexed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    for arguments in ARGUMENTS:
        medians: dict[Path, list[float]] = {tree: [] for tree in args.trees}
        text = ""
        for _ in range(args.rounds):
            for tree in args.trees:
                walls, text = run(tree, args.store, args.kb, arguments, args.calls)
                medians[tree].append(statistics.median(walls))
        print(json.dumps(arguments, ensure_ascii=False))
        for tree, runs in medians.items():
            print(f"  {tree}: runs {[round(m, 1) for m in runs]} -> median {statistics.median(runs):.1f} ms")
        print("  last answer:", text.replace("\n", " | "))


if __name__ == "__main__":
    main()
