"""Copies of replay captures with each chunk's ``title`` (session 33: the fusion reads it, :func:`kbsearch.fusion.
_across`; ``capture.py`` keeps it since, the captures made before cut it), read from the class's corpus as the
indexer reads it (:func:`kbsearch.notes.parse_note`: the front matter's ``title``, else the first H1, else the
file's name). The captures are read, never written: the copies go to ``OUT/<the capture's folder>/<its name>``.

    .venv/bin/python eval/replay/titled.py /tmp/titled /work/main/.kbsearch/replay32/*.pkl \\
        /work/main/.kbsearch/replay33/*-classes-bil.pkl [--bil .kbsearch/bil]

A capture ``<model>-<kind>.pkl`` holds the classes of ``eval/classes.yaml``, ``<model>-<kind>-<corpus>.pkl`` those of
``eval/classes-<corpus>.yaml``; each class's ``corpus`` is read from there (from the repository root), the
bilingual KB's from ``--bil`` (``eval/make_bilingual.py`` writes it; not committed). A note its corpus no longer
holds, or that does not parse, keeps no title (counted per capture).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path
from typing import Any

import yaml

from kbsearch.notes import NoteError, parse_note

ROOT = Path(__file__).resolve().parents[2]


def titles(corpus: Path) -> dict[str, str]:
    """Each note's path (from the corpus root, as the indexer records it) → its title."""
    out = {}
    for path in sorted(corpus.rglob("*.md")):
        name = path.relative_to(corpus).as_posix()
        try:
            out[name] = parse_note(name, path.read_bytes()).title
        except NoteError:
            continue  # the indexer skips it too: no chunk of it is in any capture
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("captures", nargs="+", type=Path)
    parser.add_argument("--bil", type=Path, default=ROOT / ".kbsearch" / "bil", help="the bilingual KB's folder")
    args = parser.parse_args(argv)
    read: dict[Path, dict[str, str]] = {}
    for capture in args.captures:
        corpus_name = capture.stem.split("-", 2)[2:]
        manifest = ROOT / "eval" / (f"classes-{corpus_name[0]}.yaml" if corpus_name else "classes.yaml")
        corpora = {c["class"]: c["corpus"] for c in yaml.safe_load(manifest.read_text(encoding="utf-8"))}
        with capture.open("rb") as f:
            cells: dict[str, dict[str, Any]] = pickle.load(f)  # noqa: S301 (a capture capture.py wrote)
        untitled = 0
        for name, captured in cells.items():
            corpus = corpora[name]
            root = (args.bil if corpus == ".kbsearch/bil" else ROOT / corpus).resolve()
            if root not in read:
                read[root] = titles(root)
            known = read[root]
            for _, _, results, _, _ in captured["rows"]:
                for _, chunks in results:
                    for c in chunks:
                        title = known.get(c.payload.get("path")) if c.payload else None
                        if title is None:
                            untitled += bool(c.payload)
                        else:
                            c.payload["title"] = title
        target = args.out / capture.parent.name / capture.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as f:
            pickle.dump(cells, f, protocol=5)
        print(f"{target}: {untitled} chunks with no title", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
