"""The exact matches a fusion change adds: per captured cell, the searches where this tree's
:func:`kbsearch.fusion.fuse` marks a note ``exact`` that another ``fusion.py``'s does not, how many of those notes
that fusion already ranked first, and how many are relevant. A rule that pins can fire without moving nDCG@10 (the
note was first already); this says how often it fires and how often it is right, on corpora it was not made on.

    git show 3003107:layers/kbsearch/kbsearch/fusion.py > /tmp/fusion_before.py
    .venv/bin/python eval/replay/new_pins.py /work/main/.kbsearch/replay32/*.pkl --before /tmp/fusion_before.py

A capture that is not the committed query sets is refused (``replay.py``'s check; ``--allow-stale`` reads it).
Prints per capture file and cell: ``fires`` (searches with a new exact note), ``first`` (of those, the note was the
other fusion's first already), ``relevant`` (the new exact note is one of the search's relevant notes).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import kbsearch.fusion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import load_module
from replay import load


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="+", type=Path)
    parser.add_argument("--before", type=Path, required=True, help="the fusion.py to compare the tree's with")
    parser.add_argument("--allow-stale", action="store_true", help="read a capture that is not the committed sets "
                        "(replay.py's --allow-stale: each such cell flagged STALE)")  # fmt: skip
    args = parser.parse_args(argv)
    before, after = load_module(args.before).fuse, kbsearch.fusion.fuse
    for path in args.captures:
        fires: Counter[str] = Counter()
        first: Counter[str] = Counter()
        right: Counter[str] = Counter()
        for (_, name), captured in load([path], check=True, allow_stale=args.allow_stale).items():
            for _, relevant, results, evidence, limit in captured["rows"]:
                old = before(results, evidence, limit, "hybrid")
                new = after(results, evidence, limit, "hybrid")
                added = {c.payload.get("path") for c in new if c.exact} - {
                    c.payload.get("path") for c in old if c.exact
                }
                if added:
                    fires[name] += 1
                    first[name] += bool(old) and old[0].payload.get("path") in added
                    right[name] += bool(added & set(relevant))
        for name in sorted(fires):
            print(f"{path.name:28} {name:24} fires {fires[name]:3}  first {first[name]:3}  relevant {right[name]:3}")
        print(f"{path.name:28} {'all':24} fires {fires.total():3}  first {first.total():3}  relevant {right.total():3}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
