"""CPU time of the folder rules' matching on a 100k-note KB (what a full sync spends deciding every note's groups,
``kbsearch.access.note_access``; a read by path does it for one note): 100,000 paths drawn as a Russian and English
KB's are (half with Cyrillic folders or names, so the non-ASCII fold runs; a few with a variation selector, a
Hangul filler or a zero-width space), under an access file of 40 rules (``hr/``, ``ru/кадры/``, ...). Prints one
dict: the seconds for all paths and the microseconds per path, the median of ``--runs`` repeats. Compare two trees by
alternating runs::

    for i in 1 2 3 4 5; do for t in /work/main .; do
      echo "$t $(PYTHONPATH=$t/layers/kbsearch nice -n 5 .venv/bin/python eval/bench_access_fold.py)"; done; done
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time

from kbsearch.access import FolderRules, note_access

FOLDERS = ["hr", "ops", "en/runbooks", "ru/ранбуки", "ru/кадры", "security/incidents", "Проекты/2026", "team/secret",
           "docs/Обзор", "archive"]  # fmt: skip
MARKS = ["", "", "", "", "", "", "", "\ufe0f", "\u3164", "\u200b"]


def paths(n: int, seed: int = 33) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        folder = rng.choice(FOLDERS)
        if rng.random() < 0.02:
            folder += rng.choice(MARKS[7:])
        name = f"Заметка {i}" if rng.random() < 0.5 else f"Note {i}"
        out.append(f"{folder}/sub{i % 97}/{name}.md")
    return out


def rules() -> FolderRules:
    lines = [f"{f}/: [g{i}]" for i, f in enumerate(FOLDERS)]
    lines += [f"{f}/sub{j}/: [g{i}, x{j}]" for i, f in enumerate(FOLDERS[:3]) for j in range(10)]
    return FolderRules.parse(("\n".join(lines) + "\n").encode())


def main() -> None:
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    kb, folder_rules = paths(100_000), rules()
    times = []
    for _ in range(runs):
        start = time.process_time()
        for path in kb:
            note_access(path, None, folder_rules, "public")
        times.append(time.process_time() - start)
    median = statistics.median(times)
    print(json.dumps({"paths": len(kb), "rules": len(folder_rules.rules), "s": round(median, 3),
                      "us_per_path": round(median / len(kb) * 1e6, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
