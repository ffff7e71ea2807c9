"""CPU time of reading notes' bodies: the Obsidian help vault and the adversarial notes of RELIABILITY.md (1 MB of
tags, an 800 KB line of code spans, a 500-deep list, nested fences, 80,000 empty headings) and of round 32's line
classes (indented code, ``$$`` lines, quoted fences, ``%%`` lines). Each is ``parse_note`` then ``outline``, as the
indexer and a read by path do; one dict of CPU seconds is printed. Compare two trees by alternating runs::

    for i in 1 2 3 4 5 6 7; do for t in /work/main .; do
      echo "$t $(PYTHONPATH=$t/layers/kbsearch nice -n 5 .venv/bin/python eval/bench_parse_lines.py)"; done; done

``--chunks``: each adversarial note's chunks and their characters instead (is what it indexes bounded?).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kbsearch.chunking import chunk_note
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
    # rev32b: $$ opening lines of prose, a $$ block never closed, quotes nested 200 deep, empty heading ladders
    "$$ text lines 1MB": "$$ x\n" * (MB // 5),
    "$$ never closed 1MB": "$$\n" + "x #t\n## h\n" * (MB // 10),
    "nested quotes 500KB": "".join("> " * (i % 200) + "x #t\n" for i in range(2_500)),
    "80k empty H1-H6 ladders": "".join(f"{'#' * (1 + i % 6)} h{i}\n" for i in range(80_000)),
    # five heading levels of 30,000 characters each over 20,000 H6, empty or with a line each: each chunk repeats
    # its heading path (is what it indexes bounded?)
    "long paths over 20k empty H6": "".join(f"{'#' * n} {chr(96 + n) * 30_000}\n" for n in range(1, 6))
    + "".join(f"###### e{i}\n" for i in range(20_000)),
    "long paths over 20k H6 with text": "".join(f"{'#' * n} {chr(96 + n) * 30_000}\n" for n in range(1, 6))
    + "".join(f"###### e{i}\nt\n" for i in range(20_000)),
}


def cpu(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return round(time.process_time() - start, 4)


def sizes() -> None:
    """``--chunks``: what each adversarial note is indexed as (chunks, and the characters of their text and heading
    paths): whether a note's chunks and payload stay bounded by its size."""
    out = {}
    for name, body in NOTES.items():
        chunks = chunk_note(parse_note("n.md", body.encode(), 2 * MB))
        out[name] = {"bytes": len(body.encode()), "chunks": len(chunks),
                     "chars": sum(len(c.text) + len(c.heading) for c in chunks)}  # fmt: skip
    print(json.dumps(out))


def main() -> None:
    if "--chunks" in sys.argv[1:]:
        sizes()
        return
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
