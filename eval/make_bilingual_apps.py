"""Build a fourth KB *written* in two languages, from GNOME applications' help, and its query classes (issue 19,
session 39, bil39).

Held out, and unlike ``bilgimp`` (session 38) it has ``describe-*`` classes: plain sentences whose words are spread
over several pages of the query's language, where session 37's rules lost. Nobody tuned on it: it is the Mallard help
of 14 GNOME applications in Debian bookworm (``usr/share/help/C/<app>/`` and ``usr/share/help/ru/<app>/`` of the
packages in ``DEBS``), not ``gnome-user-docs`` (that is ``eval/gnome/``).

**The corpus** (``eval/apps/en/``, ``eval/apps/ru/``, committed; rebuilt from the ``.deb`` files with ``--debs``):
each ``type="topic"`` page that both languages have, with a ``<desc>`` in both, converted by
``eval/make_gnome_corpus.py``'s Mallard converter (``parse_page``, ``page_titles``, ``to_markdown``: the same rules,
the ``<desc>`` not in the note), at ``<app>-<page>.md`` (apps share page ids such as ``index``). Left out: a page
whose converted body is under ``MIN_BODY`` characters in either language, and a page whose "Russian" is untranslated
English (under half of its Russian body's, title's or desc's letters Cyrillic: make_bilingual_gimp's
``cyrillic_share``, the check bil38 made for GIMP). The frontmatter ``license`` is ``LICENSE``: the apps' help is
CC-BY-SA 3.0 or 4.0 or GFDL, and its pages state theirs as text (``<license><p>``) or not at all, so each package's
``copyright`` is the reference. ``eval/apps/pages.yaml`` holds each page's ``<desc>`` in both languages.

**The KB**: each page kept in Russian *or* in English, never both, alternately in the order of sha1("bilapps:" +
file name), at its own file name with its own bytes; written to ``.kbsearch/bilapps/`` (gitignored). The sets go to
``eval/bilapps/``, the manifest to ``eval/classes-bilapps.yaml``; cells replay as ``bilapps:<class>``. The classes,
as ``bilg``'s (make_bilingual's ``paired_sets``):

- ``known-item-en`` / ``-ru``: make_query_sets's known items, one from each page of that language, rare in the whole
  KB and labelled with every note of the KB holding every term (either language);
- ``title-en`` / ``-ru`` and ``title-en-to-ru`` / ``-ru-to-en``: a page's title in its language and in the other;
- ``describe-en`` / ``-ru`` and ``describe-en-to-ru`` / ``-ru-to-en``: the page's ``<desc>`` in its language and
  in the other;
- no ``question-*`` / ``cross-*``: nobody has written questions for these pages.

A class of fewer than ``MIN_QUERIES`` queries is dropped (the script says which).

    apt-get download baobab cheese-common eog evince-common file-roller gedit-common gnome-calculator gnome-clocks \\
        gnome-logs gnome-system-monitor gnome-terminal-data seahorse simple-scan totem-common   # into DIR
    .venv/bin/python eval/make_bilingual_apps.py [--debs DIR]   # --debs: rebuild eval/apps/ from the .deb files
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_bilingual as bilingual
from make_bilingual_gimp import MIN_QUERIES, cyrillic_share
from make_gnome_corpus import MIN_BODY, Page, cut, page_titles, parse_page, to_markdown
from make_man_corpus import deb_members, write_corpus

APPS = bilingual.HERE / "apps"
KB = ".kbsearch/bilapps"  # the KB this builds, from the repository root
SETS = bilingual.HERE / "bilapps"
#: the packages, exactly (another version is another corpus: the committed one would no longer be what they build)
DEBS = (
    "baobab_43.0-1_amd64.deb",
    "cheese-common_43.0-1_all.deb",
    "eog_43.2-1_amd64.deb",
    "evince-common_43.1-2+deb12u1_all.deb",
    "file-roller_43.0-1_amd64.deb",
    "gedit-common_44.2-1_all.deb",
    "gnome-calculator_1%3a43.0.1-2_amd64.deb",
    "gnome-clocks_43.0-1_amd64.deb",
    "gnome-logs_43.0-1_amd64.deb",
    "gnome-system-monitor_42.0-2_amd64.deb",
    "gnome-terminal-data_3.46.8-1_all.deb",
    "seahorse_43.0-1_amd64.deb",
    "simple-scan_42.5-2_amd64.deb",
    "totem-common_43.0-2_all.deb",
)
HELP = {"en": "usr/share/help/C/", "ru": "usr/share/help/ru/"}
LICENSE = "see the package's copyright"  # the frontmatter's (the docstring says why)


def _apps(members: dict[str, bytes], lang: str) -> dict[str, dict[str, bytes]]:
    """app → page id → its ``.page`` bytes, of one language's help in one package."""
    out: dict[str, dict[str, bytes]] = {}
    for path, data in members.items():
        rest = path.removeprefix("./")
        if rest.startswith(HELP[lang]) and rest.endswith(".page") and rest.count("/") == HELP[lang].count("/") + 1:
            app, page = rest[len(HELP[lang]) :].split("/")
            out.setdefault(app, {})[page.removesuffix(".page")] = data
    return out


def _russian(page: Page) -> bool:
    return all(cyrillic_share(text) >= 0.5 for text in ("\n".join(page.body), page.title, page.desc))


def build_corpus(debs: Path) -> dict[str, str]:
    """``en/<app>-<page>.md`` / ``ru/<app>-<page>.md`` → the note's text, and ``pages.yaml``."""
    files: dict[str, str] = {}
    meta: dict[str, dict[str, str]] = {}
    for deb in DEBS:
        if not (debs / deb).is_file():
            raise FileNotFoundError(f"{debs / deb} is missing (apt-get download, the docstring's list)")
        members = deb_members(debs / deb)
        halves = {lang: _apps(members, lang) for lang in bilingual.LANGS}
        for app in sorted(set(halves["en"]) & set(halves["ru"])):
            pages: dict[str, dict[str, Page]] = {}
            for lang in bilingual.LANGS:
                titles: dict[str, str] = {}
                for source in halves[lang][app].values():
                    titles |= page_titles(source)
                pages[lang] = {pid: parse_page(src, titles) for pid, src in halves[lang][app].items()}
            for pid in sorted(set(pages["en"]) & set(pages["ru"])):
                pe, pr = pages["en"][pid], pages["ru"][pid]
                if pe.type != "topic" or pr.type != "topic" or not (pe.desc and pr.desc):
                    continue
                if min(len("\n\n".join(cut(p.body))) for p in (pe, pr)) < MIN_BODY or not _russian(pr):
                    continue
                name = f"{app}-{pid}"
                for lang, page in (("en", pe), ("ru", pr)):
                    text = to_markdown(page, lang)  # make_gnome_corpus's license line, this corpus's LICENSE
                    files[f"{lang}/{name}.md"] = text.replace("license: CC-BY-SA-3.0\n", f"license: {LICENSE}\n", 1)
                meta[name] = {"en": pe.desc, "ru": pr.desc}
    files["pages.yaml"] = (
        "# page → its <desc> in each language (not in the notes: the describe classes' queries).\n"
        "# Made by eval/make_bilingual_apps.py --debs.\n"
        + yaml.safe_dump(meta, allow_unicode=True, sort_keys=True, width=1000)
    )
    return files


def choose(apps: Path = APPS) -> dict[str, str]:
    """page file name → the language kept: alternately Russian and English in the order of sha1("bilapps:" + name)."""
    return bilingual.alternate(bilingual.paired_names(apps), "bilapps")


def build_kb(out: Path, apps: Path = APPS) -> dict[str, str]:
    """Write the bilingual KB into ``out`` (emptied first); file name → its language."""
    return bilingual.copy_pages(apps, out, choose(apps))


def every_set(kb: Path, chosen: dict[str, str], apps: Path = APPS) -> dict[str, list[dict[str, object]]]:
    """Every class, however small."""
    pages = yaml.safe_load((apps / "pages.yaml").read_text(encoding="utf-8"))
    describe = {lang: {n: pages[n[:-3]][lang] for n in chosen} for lang in bilingual.LANGS}
    asked = {"title": bilingual.titles(apps), "describe": describe}
    return bilingual.paired_sets(kb, chosen, asked, {lang: [] for lang in bilingual.LANGS})


def query_sets(kb: Path, chosen: dict[str, str], apps: Path = APPS) -> dict[str, list[dict[str, object]]]:
    """The classes of ``MIN_QUERIES`` queries or more."""
    return {name: items for name, items in every_set(kb, chosen, apps).items() if len(items) >= MIN_QUERIES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build eval/apps/ (with --debs), .kbsearch/bilapps/ and its sets.")
    parser.add_argument("--debs", type=Path, help="the folder holding the .deb files of DEBS: rebuild eval/apps/")
    args = parser.parse_args(argv)
    if args.debs is not None:
        files = build_corpus(args.debs)
        write_corpus(APPS, files)
        print(f"{APPS.relative_to(bilingual.ROOT)}: {sum(1 for r in files if r.startswith('en/'))} page pairs")
    chosen = build_kb(bilingual.ROOT / KB)
    print(bilingual.counted(KB, chosen))
    header = (
        "# The query classes over a fourth KB written in two languages (issue 19, session 39, bil39), held out: each\n"
        "# page of 14 GNOME applications' help whose Russian is Russian, in Russian or in English, never both. Build\n"
        "# the KB first (it is not committed):\n"
        "#   .venv/bin/python eval/make_bilingual_apps.py   # writes .kbsearch/bilapps/, eval/bilapps/, this file\n"
        "# then `kbsearch eval --classes eval/classes-bilapps.yaml`. Made by eval/make_bilingual_apps.py.\n"
    )
    every = every_set(bilingual.ROOT / KB, chosen)
    bilingual.write_kept(
        every, MIN_QUERIES, KB, SETS, bilingual.HERE / "classes-bilapps.yaml", "eval/make_bilingual_apps.py", header
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
