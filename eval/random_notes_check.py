"""Random notes through ``parse_note`` and ``chunk_note`` (round 35 review, rev35d): 1-25 lines drawn from ``$$``
lines (indented, quoted, in list items, ordered and nested), fences, headings (ATX and setext), thematic breaks
and prose, each word unique. Counts the notes that raise, whose ``read_body`` does not answer one reading per line,
or that lose a word (no chunk's heading or text holds it), and the slowest note's CPU time.

    PYTHONPATH=layers/kbsearch .venv/bin/python eval/random_notes_check.py [SEED] [NOTES]"""

from __future__ import annotations

import random
import re
import sys
import time

from kbsearch.chunking import chunk_note
from kbsearch.markdown import read_body
from kbsearch.notes import parse_note

SHAPES = ["$$", "   $$", "    $$", "> $$", "> > $$", "$$ W", "- W", "  $$", "W", "", "", "## W", "> W", "\t$$",
          ">$$", "  - W", "1. W", "   > $$", "> ## W", "W $$", "> > W", ">", "- $$", "  - $$", "      $$", "$$W$$",
          "```", "- ```", "  ```", "W\n===", "* * *", "  W", "    W", "1. $$", "   $$ W", "- > $$", "$$ $"]  # fmt: skip


def main() -> None:
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    notes = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    rng = random.Random(seed)
    crashes = lost = 0
    worst = 0.0
    for _ in range(notes):
        words: list[str] = []
        lines = []
        for _ in range(rng.randint(1, 25)):
            shape = rng.choice(SHAPES)
            while "W" in shape:
                words.append(f"zq{len(words)}x")
                shape = shape.replace("W", words[-1], 1)
            lines.append(shape)
        body = "\n".join(lines)
        started = time.process_time()
        try:
            if len(read_body(body)) != len(body.split("\n")):
                raise AssertionError("not one reading per line")
            chunks = chunk_note(parse_note("n.md", ("# T\n\n" + body + "\n").encode()))
        except Exception as exc:  # counted, the first shown
            crashes += 1
            if crashes == 1:
                print("raised:", repr(exc), repr(body))
            continue
        worst = max(worst, time.process_time() - started)
        text = " ".join(f"{chunk.heading} {chunk.text}" for chunk in chunks)
        missing = [word for word in words if not re.search(rf"\b{word}\b", text)]
        if missing:
            lost += 1
            if lost == 1:
                print("lost:", missing, repr(body))
    print(f"seed {seed}: {notes} notes, {crashes} raised, {lost} with a word lost, slowest {worst * 1000:.1f} ms")


if __name__ == "__main__":
    main()
