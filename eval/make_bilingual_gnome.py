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

import hashlib
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_bilingual import LANGS, _unique, write_sets
from make_query_sets import _notes, known_items_in

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GNOME = HERE / "gnome"
KB = ".kbsearch/bilg"  # the KB this builds, from the repository root
SETS = HERE / "bilg"


def choose(gnome: Path = GNOME) -> dict[str, str]:
    """page file name → the language kept: alternately Russian and English in the order of sha1("bilg:" + name)."""
    halves = {lang: sorted(p.name for p in (gnome / lang).glob("*.md")) for lang in LANGS}
    if halves["en"] != halves["ru"] or not halves["en"]:
        raise SystemExit(f"{gnome}: the halves are not the same pages paired by file name")
    order = sorted(halves["en"], key=lambda n: hashlib.sha1(f"bilg:{n}".encode(), usedforsecurity=False).hexdigest())
    return {name: ("ru", "en")[n % 2] for n, name in enumerate(order)}


def build_kb(out: Path, gnome: Path = GNOME) -> dict[str, str]:
    """Write the bilingual KB into ``out`` (emptied first); file name → its language."""
    chosen = choose(gnome)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name, lang in chosen.items():
        (out / name).write_bytes((gnome / lang / name).read_bytes())
    return chosen


def _other(lang: str) -> str:
    return "ru" if lang == "en" else "en"


def query_sets(kb: Path, chosen: dict[str, str], gnome: Path = GNOME) -> dict[str, list[dict[str, object]]]:
    notes = _notes(kb)
    sets: dict[str, list[dict[str, object]]] = {}
    for lang in LANGS:
        sets[f"known-item-{lang}"] = known_items_in(notes, lang, {n for n, lg in chosen.items() if lg == lang})
    titles = {lang: {rel: title for rel, (_, title, _) in _notes(gnome / lang).items()} for lang in LANGS}
    pages = yaml.safe_load((gnome / "pages.yaml").read_text(encoding="utf-8"))
    for lang in LANGS:
        other = _other(lang)
        asked = {"title": titles[lang], "describe": {n: pages[n[:-3]][lang] for n in chosen}}
        for kind, text in asked.items():
            own = [{"query": text[n], "kind": kind, "relevant": [n]} for n in sorted(chosen) if chosen[n] == lang]
            across = [{"query": text[n], "kind": kind, "relevant": [n]} for n in sorted(chosen) if chosen[n] != lang]
            sets[f"{kind}-{lang}"] = _unique(own)
            sets[f"{kind}-{lang}-to-{other}"] = _unique(across)
    for lang in LANGS:
        hand = yaml.safe_load((gnome / "queries" / f"gnome-question-{lang}.yaml").read_text(encoding="utf-8"))
        for item in hand:
            answer = chosen[item["relevant"][0]]
            name = f"question-{lang}" if answer == lang else f"cross-{lang}-to-{answer}"
            sets.setdefault(name, []).append({"query": item["query"], "kind": item["kind"],
                                              "relevant": list(item["relevant"])})  # fmt: skip
    return sets


def main() -> int:
    chosen = build_kb(ROOT / KB)
    print(f"{KB}: {sum(1 for lg in chosen.values() if lg == 'ru')} Russian and "
          f"{sum(1 for lg in chosen.values() if lg == 'en')} English pages")  # fmt: skip
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
