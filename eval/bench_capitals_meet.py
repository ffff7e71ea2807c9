"""The cost of ``lexical._capitals_meet`` and ``lexical._lowered`` (BM25's reading of a note) on three texts, for this
tree and another tree's ``lexical.py`` loaded beside it (rev39a: walk39's scan looked beside every Latin capital of an
English note in capitals). It first checks that both answer alike. BENCHMARKS.md, "Round 39 review".

    git show 650c86d:layers/kbsearch/kbsearch/lexical.py > /tmp/lexical_650.py
    PYTHONPATH=layers/kbsearch .venv/bin/python eval/bench_capitals_meet.py /tmp/lexical_650.py
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
import timeit
from pathlib import Path

from kbsearch import lexical

VAULT_NOTE = Path(__file__).resolve().parents[1] / "../shared/kb/obsidian-help/ru/Интерфейс пользователя/Вкладки.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="the other tree's lexical.py")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("other_lexical", args.other)
    assert spec is not None and spec.loader is not None
    other = importlib.util.module_from_spec(spec)
    sys.modules["other_lexical"] = other  # its dataclasses look their module up
    spec.loader.exec_module(other)
    texts = {
        "English in capitals, one em dash, 100 KB": ("ERROR: CONNECTION TIMEOUT AT HOST EXAMPLE — RETRY " * 2000)[
            :100000
        ],
        "the vault's ru/Интерфейс пользователя/Вкладки.md": VAULT_NOTE.read_text(encoding="utf-8"),
        "ERROR ОШИБКА repeated, 100 KB": ("ERROR ОШИБКА " * 8000)[:100000],
    }
    for name, text in texts.items():
        assert other._capitals_meet(text) == lexical._capitals_meet(text), name
        assert other._lowered(text) == lexical._lowered(text), name
        for label, module in (("other", other), ("this tree", lexical)):
            medians = []
            for function in ("_capitals_meet", "_lowered"):
                call = functools.partial(getattr(module, function), text)
                runs = sorted(timeit.repeat(call, number=20, repeat=7))
                medians.append(f"{runs[3] / 20 * 1000:.3f} ms")
            print(f"{name} | {label} | _capitals_meet {medians[0]} | _lowered {medians[1]}")


if __name__ == "__main__":
    main()
