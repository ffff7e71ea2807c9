"""The recorded language (the payload's ``lang``) of the fusion's first note, right or wrong, in each captured class.

    .venv/bin/python eval/replay/first_language.py .kbsearch/replay/e5-classes-lo.pkl --class lo-cross-en-to-ru

For each search of the class (``eval/replay/capture.py``'s file) the fusion (``fuse`` replayed as it is) ranks a
first note; this counts those notes by whether they are relevant and by the language the indexer recorded for them
(``ru``: at least a third of the note's letters Cyrillic, :func:`kbsearch.lexical.text_language`). A cross-language
class whose wrong first notes are mostly of the query's own language is one where BM25's same-language matches (in
full, not at ``cross_language``) beat the dense leg's cross-language answer.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections import Counter
from pathlib import Path

import kbsearch.fusion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import upgraded


def counts(captured: dict) -> Counter[tuple[bool, str | None]]:
    out: Counter[tuple[bool, str | None]] = Counter()
    for _, relevant, results, evidence, limit in captured["rows"]:
        fused = kbsearch.fusion.fuse(results, evidence, limit, "hybrid")
        if fused:
            first = fused[0].payload
            out[(first.get("path") in relevant, first.get("lang"))] += 1
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", type=Path)
    parser.add_argument("--class", dest="name", action="append", help="a class's name (repeatable; default: all)")
    args = parser.parse_args(argv)
    with args.capture.open("rb") as f:
        cells = upgraded(pickle.load(f))  # noqa: S301 (a capture capture.py wrote)
    for name in args.name or sorted(cells):
        if name not in cells:
            print(f"{name}: not in {args.capture} (classes: {', '.join(sorted(cells))})", file=sys.stderr)
            return 2
        found = counts(cells[name])
        cells_text = ", ".join(f"{'right' if ok else 'wrong'} {lang}: {n}" for (ok, lang), n in sorted(found.items(),
                               key=lambda item: (not item[0][0], str(item[0][1]))))  # fmt: skip
        print(f"{name}: {sum(found.values())} searches; first note {cells_text}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
