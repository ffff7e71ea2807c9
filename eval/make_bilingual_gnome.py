"""Build a second KB *written* in two languages, from GNOME Help, and its query classes (issue 19, session 37, bil37).

eval/make_bilingual.py builds one from the Obsidian help vault; every finding about a KB of both languages rested on
that one KB. This builds a second one, held out, the same way from the GNOME Help corpus (``eval/gnome/``, 243 pages
in English and Russian paired by file name): each page is kept in Russian *or* in English, never both, alternately in
the order of sha1("bilg:" + page) (122 Russian, 121 English), at its own file name, so its chunks embed exactly the
text they embed in ``eval/gnome/{en,ru}/`` (the oracle caches already hold them). The KB is written to
``.kbsearch/bilg/`` (gitignored, rebuilt from the committed corpus), the query sets to ``eval/bilg/`` and the
manifest to ``eval/classes-bilg.yaml`` (committed). Cells replay as ``bilg:<class>``.

The classes, all over the one bilingual KB (labels: file names in it):

- ``known-item-en`` / ``-ru``: make_query_sets's known items, one from each page of that language, rare in the
  whole KB and labelled with every note of the KB holding every term (either language);
- ``title-en`` / ``-ru``: each page's own title asked in its language; ``title-en-to-ru`` / ``title-ru-to-en``:
  the other half's title of a page the KB holds in the other language;
- ``describe-en`` / ``-ru``: the page's ``<desc>`` (``eval/gnome/pages.yaml``) in the page's language;
  ``describe-en-to-ru`` / ``-ru-to-en``: the desc in the other language;
- ``question-en`` / ``-ru``: the hand-written GNOME questions (``eval/gnome/queries/gnome-question-*.yaml``, written
  blind in session 27) whose first answering page is kept in the question's language; ``cross-en-to-ru`` /
  ``cross-ru-to-en``: those whose first answering page is not (labels: every answering page, in whichever language
  the KB holds it).

    .venv/bin/python eval/make_bilingual_gnome.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_bilingual import (
    HERE,
    LANGS,
    ROOT,
    alternate,
    copy_pages,
    counted,
    paired_names,
    paired_sets,
    titles,
    write_sets,
)

GNOME = HERE / "gnome"
KB = ".kbsearch/bilg"  # the KB this builds, from the repository root
SETS = HERE / "bilg"


def choose(gnome: Path = GNOME) -> dict[str, str]:
    """page file name → the language kept: alternately Russian and English in the order of sha1("bilg:" + name)."""
    return alternate(paired_names(gnome), "bilg")


def build_kb(out: Path, gnome: Path = GNOME) -> dict[str, str]:
    """Write the bilingual KB into ``out`` (emptied first); file name → its language."""
    return copy_pages(gnome, out, choose(gnome))


def query_sets(kb: Path, chosen: dict[str, str], gnome: Path = GNOME) -> dict[str, list[dict[str, object]]]:
    pages = yaml.safe_load((gnome / "pages.yaml").read_text(encoding="utf-8"))
    describe = {lang: {n: pages[n[:-3]][lang] for n in chosen} for lang in LANGS}
    questions = {lang: yaml.safe_load((gnome / "queries" / f"gnome-question-{lang}.yaml").read_text(encoding="utf-8"))
                 for lang in LANGS}  # fmt: skip
    return paired_sets(kb, chosen, {"title": titles(gnome), "describe": describe}, questions)


def main() -> int:
    chosen = build_kb(ROOT / KB)
    print(counted(KB, chosen))
    header = (
        "# The query classes over a second KB written in two languages (issue 19, session 37, bil37): each page of\n"
        "# GNOME Help in Russian or in English, never both. Build the KB first (it is not committed):\n"
        "#   .venv/bin/python eval/make_bilingual_gnome.py   # writes .kbsearch/bilg/, eval/bilg/, this file\n"
        "# then `kbsearch eval --classes eval/classes-bilg.yaml`. Made by eval/make_bilingual_gnome.py.\n"
    )
    sets = query_sets(ROOT / KB, chosen)
    write_sets(sets, KB, SETS, HERE / "classes-bilg.yaml", "eval/make_bilingual_gnome.py", header)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
