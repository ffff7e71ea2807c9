"""A sixth corpus for the per-class eval: GIMP's user manual in English and Russian, one note per help page.

Nobody tuned the fusion on these pages (the Obsidian vault, Debian's man pages, GNOME Help, LibreOffice Help,
Debian's documentation and the bilingual KB all were looked at by some session before a fusion rule was made), so
``kbsearch eval --classes eval/classes-gimp.yaml`` is a held-out check of what the fusion learned on the others
(session 36, issue 19). It is a product manual: menu paths, filter and tool names, options, shortcuts, numbers.

**The corpus** (``eval/gimp/en/``, ``eval/gimp/ru/``): the pages of the GIMP 2.10 user manual, read straight from
Debian bookworm's ``gimp-help-en`` and ``gimp-help-ru`` ``.deb`` files (``MANUAL``; DocBook HTML chunked one page per
help id). One note per **page**, not per section: a page is what GIMP's F1 help opens, its file name is its help id
(``gimp-filter-red-eye-removal``), the same in both languages, and the subsections inside a page have no stable id
of their own (DocBook's generated ``idmNNNN`` anchors, which differ between the two builds). A note's body is the
page's top section's own text followed by each subsection (``## <its title>`` and its own text), converted by
``make_debdoc_corpus.parse_sections`` (``make_lo_corpus.Converter`` underneath), cut at a paragraph boundary after
``MAX_BODY`` characters (``make_gnome_corpus.cut``), kept when it holds at least ``MIN_BODY`` characters in both
languages. Of the pairs kept, ``SIZE`` are taken, those whose sha1 of the page id sorts first: a sample of every
chapter, sized so that both models' evals run in well under an hour on two shared cores. Frontmatter: ``title``
(the page's heading without its number), ``page``, ``manual`` (``gimp``), ``lang``, ``license``. The identifiers a
page marks up (menus, submenus and menu items, labels of the dialogs' options, buttons, file names, commands,
parameters, user input, and key combinations such as ``Shift+Ctrl+J``) are the known-item candidates
(``pages.yaml``).

**The query classes** (``eval/gimp/queries/``), labels correct by construction except the hand-written ones:

- ``gimp-known-item-en`` / ``-ru``: an identifier the page marks up (or a number of 3+ digits in its text), rare in
  the half, alone or with a rare word of the note's language; labelled with **every** note holding all the query's
  terms after kb-search's tokenizer (``make_man_corpus.known_items``, at most 3).
- ``gimp-cross-en-to-ru`` / ``-ru-to-en``: each page's title over the other language's notes, labelled with every
  page of that title (``make_man_corpus.described``).
- ``gimp-question-en`` / ``-ru``: hand-written questions (``--questions DIR``: ``gimp-questions-en.yaml`` and
  ``-ru.yaml``), written blind (no search run on the corpus before they were committed) from pages chosen by sha1
  of their id; copied as they are (``make_gnome_corpus.questions``).

Licence: GNU FDL 1.2 or later, no invariant sections (``eval/gimp/README.md`` quotes the package's ``copyright``).

    apt-get download gimp-help-en=2.10.34-2 gimp-help-ru=2.10.34-2
    .venv/bin/python eval/make_gimp_corpus.py [FOLDER] [--questions DIR]    # default .kbsearch/debs
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other corpora's code, run as a script or by a test
from make_debdoc_corpus import (
    _SECTION_CLASSES,
    MIN_BODY,
    Manual,
    Section,
    add_pair,
    parse_sections,
    run,
)
from make_debdoc_corpus import query_sets as debdoc_query_sets
from make_gnome_corpus import cut
from make_man_corpus import deb_members

SIZE = 260  # page pairs taken (by sha1 of the page id) of those kept
MANUAL = Manual(
    "gimp",
    {"en": "gimp-help-en_2.10.34-2_all.deb", "ru": "gimp-help-ru_2.10.34-2_all.deb"},
    {"en": r"usr/share/gimp/2\.0/help/en/([\w.-]+)\.html", "ru": r"usr/share/gimp/2\.0/help/ru/([\w.-]+)\.html"},
    "GFDL-1.2+",
)
#: GIMP's DocBook names its sections by depth
SECTIONS = _SECTION_CLASSES | {"sect1", "sect2", "sect3", "sect4", "sect5"}
#: the spans GIMP's manual marks up as a name the user types or clicks
IDENTS = frozenset(
    {"guimenu", "guisubmenu", "guimenuitem", "guilabel", "guibutton", "filename", "command", "parameter", "userinput"}
    | {"code", "keycombo"}
)
#: two or more keys pressed together, ``<span class="keycap">`` each: one identifier (``Shift+Ctrl+J``)
_COMBO = re.compile(
    r'<span class="keycap">(?:(?!</span>).)*</span>(?:\s*\+\s*<span class="keycap">(?:(?!</span>).)*</span>)+', re.S
)


def parse_page(source: str) -> Section | None:
    """One help page as one note: its top section's id and title, its own text, then each subsection's title as a
    ``##`` heading and its own text; the identifiers of all of them. None when the page holds no section (the
    book's title page, the index, the glossary's letters)."""
    source = _COMBO.sub(lambda m: f'<span class="keycombo">{m.group(0)}</span>', source)
    sections = parse_sections(source, SECTIONS, IDENTS)
    if not sections:
        return None
    top, rest = sections[0], sections[1:]
    body = list(top.body)
    for sub in rest:
        if sub.body:
            body += ([f"## {sub.title}"] if sub.title else []) + sub.body
    idents = sorted(set(top.identifiers).union(*(s.identifiers for s in rest)))
    return Section(top.id, top.title, body, idents)


def _pages(debs: Path, lang: str) -> dict[str, Section]:
    deb = debs / MANUAL.debs[lang]
    if not deb.is_file():
        raise FileNotFoundError(f"{deb} is missing (apt-get download {MANUAL.debs[lang].split('_')[0]}=2.10.34-2)")
    out: dict[str, Section] = {}
    for path, data in sorted(deb_members(deb).items()):
        match = re.fullmatch(MANUAL.pages[lang], path)
        if match:
            page = parse_page(data.decode("utf-8"))
            if page is not None:
                out[match.group(1)] = page
    return out


def _size(sec: Section) -> int:
    return len("\n\n".join(cut(sec.body)))


def build_corpus(debs: Path) -> dict[str, str]:
    """``en/<page>.md`` / ``ru/<page>.md`` → the note's text, and ``pages.yaml`` (page → its title a language and
    the identifiers it marks up)."""
    pages = {lang: _pages(debs, lang) for lang in ("en", "ru")}
    kept = [
        name
        for name in sorted(set(pages["en"]) & set(pages["ru"]))
        if pages["en"][name].title
        and pages["ru"][name].title
        and min(_size(pages[lg][name]) for lg in pages) >= MIN_BODY
    ]
    taken = sorted(sorted(kept, key=lambda n: hashlib.sha1(n.encode(), usedforsecurity=False).hexdigest())[:SIZE])
    files: dict[str, str] = {}
    meta: dict[str, dict[str, object]] = {}
    for name in taken:
        add_pair(files, meta, {lang: pages[lang][name] for lang in ("en", "ru")}, MANUAL, name)
    files["pages.yaml"] = (
        "# page → its title in each language (the cross classes' queries) and the identifiers the page marks up\n"
        f"# (the known-item classes' candidates). {len(kept)} pairs kept, {len(taken)} taken. Made by eval/make_gimp_corpus.py.\n"
        + yaml.safe_dump(meta, allow_unicode=True, sort_keys=True, width=1000)
    )
    return files


def query_sets(corpus: Path) -> dict[str, list[dict[str, object]]]:
    return debdoc_query_sets(corpus, "gimp")


def main(argv: list[str] | None = None) -> int:
    classes = "The GIMP manual classes (a sixth corpus, measured blind in session 36)"
    return run(argv, "gimp", build_corpus, classes, "Debian bookworm's gimp-help-en and gimp-help-ru 2.10.34-2")


if __name__ == "__main__":
    raise SystemExit(main())
