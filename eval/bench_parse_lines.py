"""CPU time of reading notes' bodies: the Obsidian help vault and the adversarial notes of RELIABILITY.md (1 MB of
tags, an 800 KB line of code spans, a 500-deep list, nested fences, 80,000 empty headings) and of round 32's line
classes (indented code, ``$$`` lines, quoted fences, ``%%`` lines). Each is ``parse_note`` then ``outline``, as the
indexer and a read by path do; one dict of CPU seconds is printed. Compare two trees by alternating runs::

    for i in 1 2 3 4 5 6 7; do for t in /work/main .; do
      echo "$t $(PYTHONPATH=$t/layers/kbsearch nice -n 5 .venv/bin/python eval/bench_parse_lines.py)"; done; done
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from kbsearch.notes import decode_note, outline, parse_note, read_frontmatter

VAULT = Path("/work/shared/kb/obsidian-help")
MB = 1_000_000
NOTES = {
    "tags 140k": "".join(f"#t{i} " + ("\n" if i % 10 == 9 else "") for i in range(140_000)),
    "code spans 800KB line": "x " + "`a` " * 200_000,
    "list 500 deep": "".join("  " * (i % 500) + f"- item {i}\n" for i in range(MB // 520)),
    "fence4 holding 16k fences3": "````\n" + "```\ncode\n" * 16_000 + "````\n",
    "80k empty headings": "".join(f"## only{i}\n" for i in range(80_000)),
    "indented code 1MB": "intro\n\n" + "    code line here #x [[y]]\n" * (MB // 27),
    "$$ lines 1MB": "$$\n" * (MB // 3),
    "quoted fences 1MB": "> ```\n> code #x\n" * (MB // 16),
    "%% lines 1MB": "text %% a\nb %% c\n" * (MB // 16),
}


def cpu(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return round(time.process_time() - start, 4)


def main() -> None:
    raws = [(p.as_posix(), p.read_bytes()) for p in sorted(VAULT.rglob("*.md"))]

    def vault() -> None:
        for path, raw in raws:
            parse_note(path, raw)
            outline(read_frontmatter(decode_note(raw))[1])

    out = {"vault (parse+outline)": cpu(vault)}
    for name, body in NOTES.items():
        raw = body.encode()
        out[name] = cpu(lambda raw=raw, body=body: (parse_note("n.md", raw, 2 * MB), outline(body)))  # type: ignore[misc]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
