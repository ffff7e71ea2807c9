"""What the identifier pins do to questions: per captured class, the searches whose query is a question (more terms
than ``exact_max_terms``, no menu path) that names identifiers (:func:`kbsearch.lexical.identifier_terms`), fused as
they are and fused with no identifier (``identifiers`` emptied: such a question is then no lookup and pins nothing),
grouped by what made each identifier one: ``latin`` (a Latin word in a Russian query, no sign of a name), ``number``
(digits and dots only: "2.0", "502"), ``name`` (any other sign: ``_``, CamelCase, two capitals, a join).

    .venv/bin/python eval/replay/pins.py /work/main/.kbsearch/replay31/*.pkl [--changes]

Prints per (model, class, kind) the questions with such an identifier, how many pin a note, and the searches the pin
makes better / worse (nDCG@10 against the same search fused without identifiers); ``--changes`` lists each.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from kbsearch import fusion, lexical
from kbsearch_tools.metrics import ndcg_at

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import load

_NUMBER = re.compile(r"^[\d.,]+$")
_SIGN = re.compile(lexical._NAME_SIGNS + r"|[^\W_]-[^\W_]")


def kind(query: str) -> str:
    """How the query's identifiers are identifiers: the most telling kind among its words."""
    russian = lexical.query_language(query) == "ru"
    words = [w.strip(lexical._WORD_PUNCTUATION) for w in lexical.reading(query).split()]
    pattern = lexical._naming(words)
    kinds = set()
    for w in words:
        if pattern.search(w):
            kinds.add("number" if _NUMBER.match(w) else "name")
        elif russian and lexical._LATIN_LETTER.search(w) and not lexical._CYRILLIC_LETTER.search(w):
            kinds.add("latin")
    return "+".join(sorted(kinds)) or "?"


def leg_ranks(results: Any, note: str) -> str:
    """The note's rank in the dense legs and in the lexical legs (by score), ``dense/lexical``."""
    out = []
    for kinds in (("dense",), ("lexical", "lexical-tail")):
        chunks = sorted((c for leg, cs in results if leg.kind in kinds for c in cs), key=lambda c: -c.score)
        notes = list(dict.fromkeys(c.payload.get("path") for c in chunks if c.payload.get("path") is not None))
        out.append(str(notes.index(note) + 1) if note in notes else "-")
    return "/".join(out)


def paths(fused: list[Any]) -> list[str]:
    return [c.payload.get("path") for c in fused]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="+", type=Path)
    parser.add_argument("--changes", action="store_true")
    parser.add_argument("--all", action="store_true", help="with --changes: every pinning question, changed or not")
    args = parser.parse_args(argv)
    p = fusion.FusionParams()
    table: Counter[tuple[str, str, str, str]] = Counter()
    for (model, name), captured in sorted(load(args.captures).items()):
        for query, relevant, results, evidence, limit in captured["rows"]:
            if not evidence.identifiers or len(evidence.terms) <= p.exact_max_terms or fusion.is_ui_path(evidence.text):
                continue
            k = kind(evidence.text)
            table[(model, name, k, "n")] += 1
            pinned = [c for c in fusion.fuse(results, evidence, limit, "hybrid") if c.exact]
            if not pinned:
                continue
            table[(model, name, k, "pins")] += 1
            bare = dataclasses.replace(evidence, identifiers=frozenset())
            before = ndcg_at(paths(fusion.fuse(results, evidence, limit, "hybrid")), set(relevant), 10)
            after = ndcg_at(paths(fusion.fuse(results, bare, limit, "hybrid")), set(relevant), 10)
            if abs(before - after) > 1e-9 or args.all:
                if abs(before - after) > 1e-9:
                    table[(model, name, k, "better" if before > after else "worse")] += 1
                if args.changes:
                    print(f"{model} {name} [{k}] pin {after:.3f} -> {before:.3f} {query!r} "
                          f"pinned {[(c.payload.get('path'), leg_ranks(results, c.payload.get('path'))) for c in pinned]} "
                          f"relevant {[(r, leg_ranks(results, r)) for r in sorted(relevant)]}")  # fmt: skip
    cells = sorted({key[:3] for key in table})
    print(f"{'model':5} {'class':24} {'kind':12} {'n':>4} {'pins':>4} {'pin better':>10} {'pin worse':>9}")
    for cell in cells:
        print(f"{cell[0]:5} {cell[1]:24} {cell[2]:12} {table[(*cell, 'n')]:4} {table[(*cell, 'pins')]:4} "
              f"{table[(*cell, 'better')]:10} {table[(*cell, 'worse')]:9}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
