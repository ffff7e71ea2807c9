"""Build a third KB *written* in two languages, from GIMP's manual, and its query classes (issue 19, session 38, bil38).

Held out: built for the ranking helpers of session 38 to judge their pre-registered rules on; nobody reads its
individual searches (per-cell figures only, EVAL.md "Session 38: a third KB of both languages ..."). It is built as
eval/make_bilingual_gnome.py builds ``bilg`` (the shared parts are make_bilingual's ``alternate``, ``copy_pages``,
``paired_sets`` and ``write_sets``), from the GIMP manual corpus (``eval/gimp/``, 260 pages in English and Russian
paired by file name).

**The pages whose Russian is English are left out.** gimp-help-ru leaves paragraphs untranslated and shows the English
text in their place (``eval/gimp/README.md``): in 54 of the 260 Russian notes under half of the body's letters are
Cyrillic, and 22 of those keep the English title. A KB *authored* in two languages has no such pages: a page kept
"in Russian" would be an English page, its Russian title class would ask in English, and its other-language title
would be its own. So the pool is the 206 pages whose Russian body is at least half Cyrillic letters (the rule
eval/gimp/questions/ used for the Russian questions), and of those each page is kept in Russian *or* in English,
never both, alternately in the order of sha1("bilgimp:" + page) (103 and 103), at its own file name with its own
bytes, so its chunks embed exactly the text they embed in ``eval/gimp/{en,ru}/`` (the oracle caches hold them). The
KB is written to ``.kbsearch/bilgimp/`` (gitignored), the sets to ``eval/bilgimp/`` and the manifest to
``eval/classes-bilgimp.yaml`` (committed). Cells replay as ``bilgimp:<class>``.

The classes (as bilg's where the data exists):

- ``known-item-en`` / ``-ru``: make_query_sets's known items, one from each page of that language, rare in the whole
  KB and labelled with every note of the KB holding every term (either language);
- ``title-en`` / ``-ru``: each page's own title in its language; ``title-en-to-ru`` / ``title-ru-to-en``: the other
  half's title of a page the KB holds in the other language;
- no ``describe-*``: GIMP's pages carry no ``<desc>`` (pages.yaml holds titles and identifiers only);
- ``question-en`` / ``-ru``: the blind hand-written GIMP questions (``eval/gimp/queries/gimp-question-*.yaml``,
  session 36) whose first answering page is kept in the question's language; ``cross-en-to-ru`` /
  ``cross-ru-to-en``: those whose first answering page is not. A question whose first answering page is out of
  the pool is dropped (10 English ones); so is a class of fewer than ``MIN_QUERIES`` queries (the script says which).

    .venv/bin/python eval/make_bilingual_gimp.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_bilingual as bilingual
from make_query_sets import _notes

GIMP = bilingual.HERE / "gimp"
KB = ".kbsearch/bilgimp"  # the KB this builds, from the repository root
SETS = bilingual.HERE / "bilgimp"
MIN_QUERIES = 15  # a class of fewer queries is dropped: one search would move its cell by more than 0.06
_LETTER = re.compile(r"[^\W\d_]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")


def cyrillic_share(text: str) -> float:
    """The share of ``text``'s letters that are Cyrillic."""
    letters = _LETTER.findall(text)
    return sum(1 for c in letters if _CYRILLIC.match(c)) / len(letters) if letters else 0.0


def choose(gimp: Path = GIMP) -> dict[str, str]:
    """page file name → the language kept, of the pages paired by file name whose Russian body is at least half
    Cyrillic letters: alternately Russian and English in the order of sha1("bilgimp:" + name)."""
    russian = _notes(gimp / "ru")
    return bilingual.alternate(
        [name for name in bilingual.paired_names(gimp) if cyrillic_share(russian[name][2]) >= 0.5], "bilgimp"
    )


def build_kb(out: Path, gimp: Path = GIMP) -> dict[str, str]:
    """Write the bilingual KB into ``out`` (emptied first); file name → its language."""
    return bilingual.copy_pages(gimp, out, choose(gimp))


def every_set(kb: Path, chosen: dict[str, str], gimp: Path = GIMP) -> dict[str, list[dict[str, object]]]:
    """Every class, however small."""
    questions: dict[str, list[dict[str, object]]] = {}
    for lang in bilingual.LANGS:
        hand = yaml.safe_load((gimp / "queries" / f"gimp-question-{lang}.yaml").read_text(encoding="utf-8"))
        kept = [{**item, "relevant": [n for n in item["relevant"] if n in chosen]} for item in hand
                if item["relevant"][0] in chosen]  # fmt: skip
        questions[lang] = kept
    return bilingual.paired_sets(kb, chosen, {"title": bilingual.titles(gimp)}, questions)


def query_sets(kb: Path, chosen: dict[str, str], gimp: Path = GIMP) -> dict[str, list[dict[str, object]]]:
    """The classes of ``MIN_QUERIES`` queries or more."""
    return {name: items for name, items in every_set(kb, chosen, gimp).items() if len(items) >= MIN_QUERIES}


def main() -> int:
    chosen = build_kb(bilingual.ROOT / KB)
    print(bilingual.counted(KB, chosen))
    header = (
        "# The query classes over a third KB written in two languages (issue 19, session 38, bil38), held out: each\n"
        "# page of GIMP's manual whose Russian is Russian, in Russian or in English, never both. Build the KB first\n"
        "# (it is not committed):\n"
        "#   .venv/bin/python eval/make_bilingual_gimp.py   # writes .kbsearch/bilgimp/, eval/bilgimp/, this file\n"
        "# then `kbsearch eval --classes eval/classes-bilgimp.yaml`. Made by eval/make_bilingual_gimp.py.\n"
    )
    every = every_set(bilingual.ROOT / KB, chosen)
    bilingual.write_kept(
        every, MIN_QUERIES, KB, SETS, bilingual.HERE / "classes-bilgimp.yaml", "eval/make_bilingual_gimp.py", header
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
