"""``kbsearch.markdown.read_body`` on hostile shapes at two sizes (round 33 review, rev33b): CPU seconds, the
median of 3 reads, at n = 200,000 and twice that (a shape of ~2n characters), and their ratio (about 2: linear;
4: quadratic). Smaller sizes are noise on a shared box (at 100,000 the quoted lines read x3-5, then x2).

    PYTHONPATH=layers/kbsearch nice -n 5 .venv/bin/python eval/bench_read_body_shapes.py [--sizes N,N,...] [WORD ...]

(only the shapes whose name holds a WORD: ``'$$'`` for the math shapes)."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable

from kbsearch.markdown import read_body

SHAPES: dict[str, Callable[[int], str]] = {
    "a line of '* ' then a word": lambda n: "* " * n + "x\n",
    "a line of '- ' then a word": lambda n: "- " * n + "x\n",
    "a line of '-' and tabs": lambda n: "-\t \t" * n + "x\n",
    "a line of '_ '": lambda n: "_ " * n + "x\n",
    "a fence quoted n deep": lambda n: "> " * n + "```\n" + ("> " * n + "x\n") * 10,
    "a line quoted n deep": lambda n: "> " * n + "x\n",
    "fences quoted 0-49 deep": lambda n: "".join("> " * (i % 50) + "```\n" for i in range(n // 10)),
    "a line of backticks": lambda n: "`" * n + "\n",
    "spaces and tabs, a fence": lambda n: " \t" * n + "```\n",
    "'$$ a' lines never closed": lambda n: "$$ a\n" * (n // 5),
    "fences in items 0-39 deep": lambda n: "".join(" " * (i % 40) + "- ```\n" for i in range(n // 20)),
    "items and breaks": lambda n: "- a\n* * *\n" * (n // 10),
    "setext headings": lambda n: ("x\n" + "=" * 50 + "\n") * (n // 60),
    # round 34 (rev34a): rel34's $$ closings (by quote depth and indentation)
    "'$$' over indented '    $$'": lambda n: "$$\n" + "    $$\n" * (n // 7) + "$$\n",
    "'$$ a' over deeper '> $$'": lambda n: "$$ a\n" * (n // 10) + "> $$\n" * (n // 10),
    "'> $$' blocks of '> > $$'": lambda n: ("> $$\n" + "> > $$\n" * 20 + "> $$\n") * (n // 150),
    "quoted '> $$' then prose": lambda n: "> $$\n> x\n\n" * (n // 9) + "$$\n",
    "'$$' in items, closings far": lambda n: "- a\n  $$\n" * (n // 10) + "      $$\n",
    # rel35: every item's opening decided by the closings of its item alone (closings deeper than it, then one at
    # the margin after the item's end)
    "items' '$$ a' over deeper, closed after": lambda n: (
        "- a\n" + "  $$ a\n" * (n // 2) + "        $$\n" * (n // 2) + "Next\n$$\n"
    ),
    "'$$' quoted 0-49 deep": lambda n: "".join("> " * (i % 50) + "$$\n" for i in range(n // 20)),
    # round 35 review (rev35d): items' '$$' whose closings all come after every item (each opening asks the
    # closings of its own item: the bisections), items nested 0-39 deep, closings deeper than the items between them
    "items' '$$', every closing after them": lambda n: "- $$\n  a\n" * (n // 20) + "$$\n" * (n // 20),
    "items 0-39 deep of '$$', closed after": lambda n: (
        "".join(" " * (i % 40) + "- $$\n" for i in range(n // 40)) + "$$\n" * (n // 40)
    ),
    "ordered items' '$$' over deeper '$$'": lambda n: "1. $$\n   x\n      $$\n" * (n // 20) + "$$\n",
}


def cpu(body: str) -> float:
    times = []
    for _ in range(3):
        start = time.process_time()
        read_body(body)
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    import sys

    args = sys.argv[1:]
    sizes = [200_000, 400_000]
    if "--sizes" in args:  # --sizes 100000,200000,400000,800000: each doubling's ratio (rev35d)
        at = args.index("--sizes")
        sizes = [int(v) for v in args[at + 1].split(",")]
        del args[at : at + 2]
    only = args  # words a shape's name holds (each shape when none): "$$"
    for name, make in SHAPES.items():
        if only and not any(word in name for word in only):
            continue
        times = [cpu(make(n)) for n in sizes]
        ratios = " ".join(f"x{b / max(a, 1e-6):.1f}" for a, b in itertools.pairwise(times))
        print(f"{name:28s} " + " ".join(f"{t:.3f}" for t in times) + f" {ratios}", flush=True)


if __name__ == "__main__":
    main()
