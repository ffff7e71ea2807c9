"""Whether ``kbsearch.markdown.read_body`` loses text or crashes on random notes (round 33 review, rev33b): notes of
1-14 lines drawn from lines its classifier finds hard (fences indented, quoted, in items; thematic breaks; ``$$``
blocks; setext underlines; tables; links; tags), each word a unique token. Each note is parsed (``parse_note``)
and chunked (``chunk_note``); a token found in no chunk (heading or text), tag or title is lost text. No ``%%`` or
``<!--``: they hide text by design.

    PYTHONPATH=layers/kbsearch .venv/bin/python eval/read_body_text_check.py [SEED] [--notes N]

prints how many notes crashed and how many lost a token, with the first few."""

from __future__ import annotations

import argparse
import random
import re
import traceback
from collections.abc import Iterator

from kbsearch.chunking import chunk_note
from kbsearch.notes import parse_note

SHAPES = ["```", "    ```", "\t```", "   ```", "~~~", "````", "> ```", "> > ```", ">     ```", "- W", "1. W",
          "> - W", "* * *", "***", "---", "- - -", "    W", "\tW", "W", "W W", "", "", "## W", "# W", "  - W",
          "      ```", "    W", "> W", "> > W", "W\n===", "- ```", "  ```", "$$", "$$ W $$", "> $$", "    $$",
          "```python", "- W\n\n      W", "| W | W |", "<div>", "</div>", "[[W]]", "#W"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seed", nargs="?", type=int, default=1)
    parser.add_argument("--notes", type=int, default=3000)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    crashed = lost = 0
    for _ in range(args.notes):
        counter = iter(range(10_000))

        def token(_match: re.Match[str], tokens: Iterator[int] = counter) -> str:
            return f"zq{next(tokens):03d}"

        body = "\n".join(re.sub("W", token, rng.choice(SHAPES)) for _ in range(rng.randint(1, 14))) + "\n"
        try:
            note = parse_note("n.md", ("# T\n\n" + body).encode())
            chunks = chunk_note(note)
        except Exception:
            crashed += 1
            if crashed <= 3:
                print("crash:", repr(body))
                traceback.print_exc()
            continue
        text = " ".join([*(c.heading + " " + c.text for c in chunks), *note.tags, note.title or ""])
        missing = sorted(w for w in set(re.findall(r"zq\d{3}", body)) if w not in text)
        if missing:
            lost += 1
            if lost <= 5:
                print("lost:", missing, repr(body))
    print(f"{crashed} crashed, {lost} lost text, of {args.notes} notes")


if __name__ == "__main__":
    main()
