"""How far ``kbsearch.markdown.read_body`` reads code where CommonMark does (round 33, rel33): random notes of 1-12
lines drawn from lines its classifier finds hard (fences indented or quoted, list items, thematic breaks, HTML
comments, indented code), the non-blank lines each reads as code compared with markdown-it-py's (a CommonMark parser;
a dev dependency, never imported by kb-search). No ``$$`` or ``%%``: they are Obsidian's, not CommonMark's.

    PYTHONPATH=layers/kbsearch .venv/bin/python eval/commonmark_code_check.py [SEED] [--against OTHER_TREE]

prints how many notes differ; with ``--against``, also how many this tree reads as CommonMark does and the other
does not (better), and the reverse (worse), with the first few of those."""

from __future__ import annotations

import argparse
import importlib.util
import random
from types import ModuleType

from markdown_it import MarkdownIt

import kbsearch.markdown as here

LINES = ["```", "    ```", "\t```", "   ```", "~~~", "> ```", "> > ```", ">     ```", "- item", "1. step",
         "> - quoted item", "* * *", "***", "---", "- - -", "<!--", "-->", "    code #x", "\tcode", "text", "", "",
         "## Head", "  - nested", "      ```", "    more"]  # fmt: skip
_MD = MarkdownIt("commonmark")


def commonmark(body: str) -> set[int]:
    lines = body.split("\n")
    out: set[int] = set()
    for token in _MD.parse(body):
        if token.type in ("fence", "code_block") and token.map:
            out.update(i for i in range(*token.map) if lines[i].strip())
    return out


def code(module: ModuleType, body: str) -> set[int]:
    return {i for i, (kind, line, *_) in enumerate(module.read_body(body)) if kind == module.CODE and line.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seed", nargs="?", type=int, default=33)
    parser.add_argument("--notes", type=int, default=3000)
    parser.add_argument("--against", help="another checkout's root: its layers/kbsearch/kbsearch/markdown.py")
    args = parser.parse_args()
    other = None
    if args.against:
        spec = importlib.util.spec_from_file_location("other", f"{args.against}/layers/kbsearch/kbsearch/markdown.py")
        assert spec and spec.loader
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
    rng = random.Random(args.seed)
    differ = better = worse = 0
    shown: list[str] = []
    for _ in range(args.notes):
        body = "\n".join(rng.choice(LINES) for _ in range(rng.randint(1, 12))) + "\n"
        truth = commonmark(body)
        agrees = code(here, body) == truth
        differ += not agrees
        if other is not None:
            theirs = code(other, body) == truth
            better += agrees and not theirs
            worse += theirs and not agrees
            if theirs and not agrees and len(shown) < 3:
                shown.append(f"  worse: {body!r} CommonMark {sorted(truth)}, here {sorted(code(here, body))}")
    print(f"{differ} of {args.notes} notes differ from CommonMark in their code lines")
    if other is not None:
        print(f"against {args.against}: better {better}, worse {worse}", *shown, sep="\n")


if __name__ == "__main__":
    main()
