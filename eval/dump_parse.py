"""Every note's parse as JSON lines: a before/after diff of the parser is one command.

For each ``*.md`` under the directories given (sorted by path), one line: the path, title, tags, links (and whether
the note names more), warnings, sections (heading path, text), outline (level, text, path, start, end of each
heading) and chunks (heading path, text: what the indexer stores, at the default budget), or the reason the note is
skipped. The parse is whichever ``kbsearch`` is first on ``PYTHONPATH``::

    PYTHONPATH=/work/main/layers/kbsearch .venv/bin/python eval/dump_parse.py DIR... > before.jsonl
    PYTHONPATH=layers/kbsearch .venv/bin/python eval/dump_parse.py DIR... > after.jsonl
    .venv/bin/python eval/dump_parse.py --diff before.jsonl after.jsonl   # counts, then each note that differs

``--diff`` prints how many notes differ in each part (sections, outline, tags, links, chunks...) and, per note,
which parts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def dump(path: Path, root: Path) -> dict[str, Any]:
    from kbsearch.chunking import chunk_note
    from kbsearch.notes import NoteError, decode_note, outline, parse_note, read_frontmatter

    rel = path.relative_to(root).as_posix()
    raw = path.read_bytes()
    try:
        note = parse_note(rel, raw)
    except NoteError as exc:
        return {"path": rel, "skipped": exc.reason}
    _, body, _ = read_frontmatter(decode_note(raw))
    return {
        "path": rel,
        "title": note.title,
        "tags": note.tags,
        "links": note.links,
        "warnings": note.warnings,
        "sections": [[list(s.headings), s.text] for s in note.sections],
        "outline": [[h.level, h.text, list(h.path), h.start, h.end] for h in outline(body)],
        "chunks": [[c.heading, c.text] for c in chunk_note(note)],
    }


def diff(before: Path, after: Path) -> int:
    def read(p: Path) -> dict[str, dict[str, Any]]:
        return {(d := json.loads(line))["root"] + "/" + d["path"]: d for line in p.open(encoding="utf-8")}

    old, new = read(before), read(after)
    parts: dict[str, int] = {}
    changed: list[str] = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, {}), new.get(key, {})
        differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        for k in differ:
            parts[k] = parts.get(k, 0) + 1
        if differ:
            changed.append(f"{key}: {', '.join(differ)}")
    print(f"notes: {len(old)} before, {len(new)} after; {len(changed)} differ")
    for k, n in sorted(parts.items()):
        print(f"  {k}: {n}")
    print("\n".join(changed))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="directories of notes (each walked for *.md)")
    parser.add_argument("--diff", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="compare two dumps")
    args = parser.parse_args(argv)
    if args.diff:
        return diff(*args.diff)
    for root in args.dirs:
        for path in sorted(root.rglob("*.md")):
            line = {"root": root.as_posix(), **dump(path, root)}
            sys.stdout.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BrokenPipeError:  # read by head: what it did not read is not wanted
        sys.stderr.close()
        raise SystemExit(0) from None
