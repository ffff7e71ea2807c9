"""Where ``kbsearch.markdown.read_body`` reads ``$$`` math CommonMark does not (round 34 review, rev34a): random
notes of 1-10 lines drawn from ``$$`` lines indented, quoted and in list items, quotes, items and headings; the
non-blank lines ``read_body`` reads as math compared with those markdown-it-py (a dev dependency, never imported by
kb-search) reads as a fenced block once each ``$$`` is written as a backtick fence (rel34's oracle). ``read_body``
reads a ``$$`` no later line closes as prose by design (CommonMark reads an unclosed fence to its container's
end), so the count that matters is of notes with a line read as math that CommonMark reads otherwise: text lost to
math (its headings, tags and links).

    PYTHONPATH=layers/kbsearch .venv/bin/python eval/math_commonmark_check.py [SEED] [--notes N] [--against TREE]"""

from __future__ import annotations

import argparse
import importlib.util
import random
from types import ModuleType

from markdown_it import MarkdownIt

import kbsearch.markdown as here

LINES = ["$$", "   $$", "    $$", "> $$", "> > $$", "$$ x", "- item", "  $$", "text", "", "", "## H", "> text",
         "\t$$", ">$$", "  - sub", "1. one", "   > $$", "> ## QH", "x $$", "> > text", ">"]  # fmt: skip
_MD = MarkdownIt("commonmark")


def commonmark(body: str) -> set[int]:
    lines = body.split("\n")
    out: set[int] = set()
    for token in _MD.parse(body.replace("$$", "```")):
        if token.type == "fence" and token.map:
            out.update(i for i in range(*token.map) if lines[i].strip())
    return out


def math(module: ModuleType, body: str) -> set[int]:
    return {i for i, (kind, line, *_) in enumerate(module.read_body(body)) if kind == module.MATH and line.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seed", nargs="?", type=int, default=101)
    parser.add_argument("--notes", type=int, default=20_000)
    parser.add_argument("--against", help="another checkout's root: its layers/kbsearch/kbsearch/markdown.py")
    args = parser.parse_args()
    trees: dict[str, ModuleType] = {"here": here}
    if args.against:
        spec = importlib.util.spec_from_file_location("other", f"{args.against}/layers/kbsearch/kbsearch/markdown.py")
        assert spec and spec.loader
        trees["other"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(trees["other"])
    rng = random.Random(args.seed)
    more = dict.fromkeys(trees, 0)
    for _ in range(args.notes):
        body = "\n".join(rng.choice(LINES) for _ in range(rng.randint(1, 10))) + "\n"
        truth = commonmark(body)
        for name, module in trees.items():
            more[name] += bool(math(module, body) - truth)
    for name, count in more.items():
        print(f"{name}: {count} of {args.notes} notes read a line as math that CommonMark does not")


if __name__ == "__main__":
    main()
