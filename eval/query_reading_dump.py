"""Every query of the sets in ``eval/`` (the ``query``/``text``/``q`` strings of ``eval/**/*.yaml`` and
``*.jsonl``) with its language (``lexical.query_language``) and its BM25 tokens (``lexical.tokenize``), as one JSON
object on stdout. Run it on two trees (``PYTHONPATH=<tree>/layers/kbsearch``) and compare the objects: which
queries a change of the reading moves (walk39: none of 7,016)."""

from __future__ import annotations

import glob
import json
import sys
from typing import Any

import yaml

from kbsearch.lexical import query_language, tokenize


def _queries(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("query", "text", "q") and isinstance(value, str):
                out.add(value)
            else:
                _queries(value, out)
    elif isinstance(node, list):
        for value in node:
            _queries(value, out)


def main() -> None:
    found: set[str] = set()
    for path in sorted(glob.glob("eval/**/*.yaml", recursive=True) + glob.glob("eval/**/*.jsonl", recursive=True)):
        with open(path, encoding="utf-8") as f:
            try:
                if path.endswith(".jsonl"):
                    for line in f:
                        _queries(json.loads(line), found)
                else:
                    _queries(yaml.safe_load(f), found)
            except (ValueError, yaml.YAMLError) as exc:
                print(f"skipped {path}: {exc}", file=sys.stderr)
    json.dump({q: [query_language(q), tokenize(q)] for q in sorted(found)}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
