"""A fifth corpus for the per-class eval: Debian's own documentation in English and Russian, one note per section.

Nobody tuned the fusion on these pages (the Obsidian vault, Debian's man pages, GNOME Help and LibreOffice Help all
were looked at by some session before a rule was made), so ``kbsearch eval --classes eval/classes-debdoc.yaml`` is
the held-out check of everything the fusion learned on the four others (session 30, issue 19). It is what a company
KB looks like: commands, package and file names, config keys, procedures.

**The corpus** (``eval/debdoc/en/``, ``eval/debdoc/ru/``): the sections of three manuals of Debian bookworm, each
read straight from its English and Russian ``.deb`` (``DEBS``): the Debian Developer's Reference (Sphinx HTML: a
``<section id>``), the Debian FAQ and the Debian New Maintainers' Guide (DocBook HTML: a ``<div class="section">``
or ``chapter`` whose heading holds ``<a id>``). The two languages' sections are paired by that id (the translations
keep it); one note per section per language, ``<manual>-<id>.md`` (``faq-dpkg.md``), whose body is the section's
own text (up to its first subsection: a subsection is its own note), converted by ``make_lo_corpus.Converter`` (the
stdlib's HTML parser: paragraphs, list items, table rows, code blocks fenced; inline markup as its text), kept when
it has at least ``MIN_BODY`` characters in both languages, cut at a paragraph boundary after ``MAX_BODY``
(``make_gnome_corpus.cut``). Frontmatter: ``title`` (the heading without its number), ``page`` (the note's id),
``manual``, ``lang``, ``license``. Dropped: the heading (the title), the chapter's table of contents, the "¶"
permalinks. The identifiers a section marks up (``<code>``: DocBook's ``literal``, ``filename``, ``varname``...
and Sphinx's ``literal``; DocBook's ``command``, ``package``, ``application`` spans; code blocks' lines) are the
known-item candidates (``pages.yaml``).

**The query classes** (``eval/debdoc/queries/``), labels correct by construction except the hand-written ones:

- ``debdoc-known-item-en`` / ``-ru``: an identifier the section marks up (or a number of 3+ digits in its text),
  rare in the half, alone or with a rare word of the note's language; labelled with **every** note holding all the
  query's terms after kb-search's tokenizer (``make_man_corpus.known_items``, at most 3).
- ``debdoc-cross-en-to-ru`` / ``-ru-to-en``: each section's title over the other language's notes, labelled with
  every section of that title (``make_man_corpus.described``).
- ``debdoc-question-en`` / ``-ru``: hand-written questions (``--questions DIR``: ``debdoc-questions-en.yaml`` and
  ``-ru.yaml``), written blind (no search run on the corpus before they were committed) from sections chosen by a
  hash of their id; copied as they are (``make_gnome_corpus.questions``).

Licence: the Developer's Reference and the New Maintainers' Guide are GPL-2+; the FAQ is under Software in the
Public Interest's permission notice for verbatim and modified copies (``eval/debdoc/README.md`` quotes each
package's ``copyright``).

    apt-get download developers-reference=12.18 developers-reference-ru=12.18 debian-faq=11.1 debian-faq-ru=11.1 \\
        maint-guide=1.2.53 maint-guide-ru=1.2.53
    .venv/bin/python eval/make_debdoc_corpus.py [FOLDER] [--questions DIR]    # default .kbsearch/debs
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other corpora's code, run as a script or by a test
from make_gnome_corpus import _finder, _space, cut, write_classes
from make_lo_corpus import Converter, Node, _find, parse_html
from make_man_corpus import MAX_RELEVANT, deb_members, described, known_items, write_corpus

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DEBS = ROOT / ".kbsearch" / "debs"
MIN_BODY = 300  # characters of the converted body, in both languages


@dataclass(frozen=True)
class Manual:
    name: str  # the note's prefix
    debs: dict[str, str]  # lang → the .deb's file name, exactly (a different version is a different corpus)
    pages: dict[str, str]  # lang → a regex of the HTML files of its chapters, in the .deb
    license: str  # the notes' ``license`` (eval/debdoc/README.md quotes each package's terms)


MANUALS = (
    Manual(
        "devref",
        {"en": "developers-reference_12.18_all.deb", "ru": "developers-reference-ru_12.18_all.deb"},
        {
            "en": r"usr/share/developers-reference/(?!index|search|developers-reference)[\w-]+\.html",
            "ru": r"usr/share/developers-reference/ru/(?!index|search|developers-reference)[\w-]+\.html",
        },
        "GPL-2+",
    ),
    Manual(
        "faq",
        {"en": "debian-faq_11.1_all.deb", "ru": "debian-faq-ru_11.1_all.deb"},
        {
            "en": r"usr/share/doc/debian/FAQ/(?!index)[\w-]+\.en\.html",
            "ru": r"usr/share/doc/debian/FAQ/ru/(?!index)[\w-]+\.ru\.html",
        },
        "Debian-FAQ-notice",  # SPI's permission notice for verbatim and modified copies, quoted in the README
    ),
    Manual(
        "maint",
        {"en": "maint-guide_1.2.53_all.deb", "ru": "maint-guide-ru_1.2.53_all.deb"},
        {
            "en": r"usr/share/doc/maint-guide/html/(?!index)[\w-]+\.en\.html",
            "ru": r"usr/share/doc/maint-guide-ru/html/(?!index)[\w-]+\.ru\.html",
        },
        "GPL-2+",
    ),
)

#: DocBook's inline identifiers that are not ``<code>``: taken as code (``Converter`` collects ``<code>``'s text)
_IDENT_CLASSES = {"command", "package", "application", "systemitem", "envar", "userinput", "option", "replaceable"}
#: a section's parts that are not its text
_SKIPPED_CLASSES = {"titlepage", "toc", "headerlink", "navfooter", "navheader", "list-of-examples", "list-of-tables"}
_NUMBERED = re.compile(r"^(?:(?:Chapter|Appendix|Глава|Приложение)\s+)?[\dA-Z]+(?:\.\d+)*\.\s+")


@dataclass
class Section:
    id: str
    title: str
    body: list[str]
    identifiers: list[str]


#: DocBook's ``<div class>`` of a section (GIMP's manual: ``sect1``... , ``make_gimp_corpus.py``)
_SECTION_CLASSES = frozenset({"section", "chapter", "appendix"})


def _is_section(node: Node, classes: frozenset[str] = _SECTION_CLASSES) -> bool:
    return node.tag == "section" or (node.tag == "div" and bool(node.classes & classes))


def _heading(section: Node) -> Node | None:
    return _find(section, lambda n: n.tag in ("h1", "h2", "h3", "h4", "h5", "h6"))


def _section_id(section: Node) -> str:
    """Sphinx: the ``<section id>``; DocBook: the ``<a id>`` in the section's heading."""
    if section.tag == "section":
        return section.attrs.get("id", "")
    heading = _heading(section)
    anchor = _find(heading, lambda n: n.tag == "a" and "id" in n.attrs) if heading is not None else None
    return anchor.attrs["id"] if anchor is not None else section.attrs.get("id", "")


def _own(section: Node, classes: frozenset[str] = _SECTION_CLASSES) -> list[Node | str]:
    """The section's own content: no nested section, no heading (Sphinx's ``<hN>`` is a direct child), no title page
    or table of contents."""
    return [
        c
        for c in section.children
        if not (isinstance(c, Node) and (_is_section(c, classes) or c.tag in ("h1", "h2", "h3", "h4", "h5", "h6")))
    ]


def _prepare(node: Node, idents: frozenset[str] = frozenset(_IDENT_CLASSES)) -> None:
    """In place: DocBook's identifier spans become ``<code>``; title pages, tables of contents, permalinks go."""
    kept: list[Node | str] = []
    for child in node.children:
        if isinstance(child, Node):
            if child.classes & _SKIPPED_CLASSES:
                continue
            if child.tag == "span" and child.classes & idents:
                child.tag = "code"
            _prepare(child, idents)
        kept.append(child)
    node.children = kept


def _sections(node: Node, classes: frozenset[str] = _SECTION_CLASSES) -> list[Node]:
    out = []
    for child in node.children:
        if isinstance(child, Node):
            if _is_section(child, classes):
                out.append(child)
            out += _sections(child, classes)
    return out


def parse_sections(
    source: str,
    section_classes: frozenset[str] = _SECTION_CLASSES,
    ident_classes: frozenset[str] = frozenset(_IDENT_CLASSES),
) -> list[Section]:
    """Every section of one manual's HTML page, in document order: its id, title (the heading's text without its
    number and "¶") and the markdown pieces of its own text. ``section_classes``: the ``<div class>`` of a section;
    ``ident_classes``: the ``<span class>`` of an identifier (the defaults: Debian's manuals)."""
    root = parse_html(source)
    heads = []
    # ids and titles first: _prepare drops the title pages that hold DocBook's
    for sec in _sections(root, section_classes):
        sid, heading = _section_id(sec), _heading(sec)
        if sid and heading is not None:
            title = _space(Converter("").inline(heading.children)).rstrip("¶ ").strip()
            heads.append((sec, sid, _NUMBERED.sub("", title)))
    _prepare(root, ident_classes)
    out = []
    for sec, sid, title in heads:
        conv = Converter("")
        body = conv.blocks(_own(sec, section_classes))
        out.append(Section(sid, title, body, sorted(i for i in conv.identifiers if i)))
    return out


def to_markdown(section: Section, manual: Manual, note_id: str, lang: str) -> str:
    meta = {"title": section.title, "page": note_id, "manual": manual.name, "lang": lang, "license": manual.license}
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=1000)
    return f"---\n{front}---\n\n" + "\n\n".join(cut(section.body)) + "\n"


def _manual_sections(debs: Path, manual: Manual, lang: str) -> dict[str, Section]:
    deb = debs / manual.debs[lang]
    if not deb.is_file():
        raise FileNotFoundError(f"{deb} is missing (apt-get download {manual.debs[lang].split('_')[0]})")
    out: dict[str, Section] = {}
    members = deb_members(deb)
    for path in sorted(members):
        if re.fullmatch(manual.pages[lang], path):
            for sec in parse_sections(members[path].decode("utf-8")):
                out.setdefault(sec.id, sec)  # an id twice (none in these manuals): the first
    return out


def add_pair(
    files: dict[str, str], meta: dict[str, dict[str, object]], pair: dict[str, Section], manual: Manual, note_id: str
) -> None:
    """One note a language (``pair``: lang → its section) into ``files``, and its titles and identifiers into
    ``meta`` (``pages.yaml``)."""
    for lang, sec in pair.items():
        files[f"{lang}/{note_id}.md"] = to_markdown(sec, manual, note_id, lang)
    meta[note_id] = {
        "title": {lang: sec.title for lang, sec in pair.items()},
        "identifiers": {lang: sec.identifiers for lang, sec in pair.items()},
    }


def build_corpus(debs: Path) -> dict[str, str]:
    """``en/<manual>-<id>.md`` / ``ru/...`` → the note's text, and ``pages.yaml`` (note → its manual, title a
    language and the identifiers its section marks up)."""
    files: dict[str, str] = {}
    meta: dict[str, dict[str, object]] = {}
    for manual in MANUALS:
        secs = {lang: _manual_sections(debs, manual, lang) for lang in ("en", "ru")}
        for sid in sorted(set(secs["en"]) & set(secs["ru"])):
            se, sr = secs["en"][sid], secs["ru"][sid]
            if not (se.title and sr.title) or min(len("\n\n".join(cut(s.body))) for s in (se, sr)) < MIN_BODY:
                continue
            note_id = f"{manual.name}-{re.sub(r'[^A-Za-z0-9-]+', '-', sid).strip('-')}"
            add_pair(files, meta, {"en": se, "ru": sr}, manual, note_id)
    files["pages.yaml"] = (
        "# note → its section's title in each language (the cross classes' queries) and the identifiers the section\n"
        "# marks up (the known-item classes' candidates). Made by eval/make_debdoc_corpus.py.\n"
        + yaml.safe_dump(meta, allow_unicode=True, sort_keys=True, width=1000)
    )
    return files


def query_sets(corpus: Path, prefix: str = "debdoc") -> dict[str, list[dict[str, object]]]:
    """The generated classes of a corpus whose ``pages.yaml`` holds each note's title and identifiers a language
    (this one's and GIMP's manual's: ``prefix``)."""
    meta = yaml.safe_load((corpus / "pages.yaml").read_text(encoding="utf-8"))
    sets: dict[str, list[dict[str, object]]] = {}
    for lang in ("en", "ru"):
        idents = {pid: m["identifiers"][lang] for pid, m in meta.items()}
        sets[f"{prefix}-known-item-{lang}"] = known_items(corpus / lang, lang, _finder(idents))
    titles = {pid: m["title"] for pid, m in meta.items()}
    for lang, over in (("en", "ru"), ("ru", "en")):
        sets[f"{prefix}-cross-{lang}-to-{over}"] = described(titles, lang, over)
    return sets


def run(argv: list[str] | None, name: str, build: Callable[[Path], dict[str, str]], classes: str, source: str) -> int:
    """A manual corpus's command line (``name``: this one's and GIMP's; ``build``: its ``build_corpus``): build the notes
    from the ``.deb`` files, write them under ``eval/<name>/``, the generated and hand-written classes and the
    manifest ``eval/classes-<name>.yaml`` (its header: the ``classes`` are what, made from ``source``)."""
    out, questions = HERE / name, {lang: f"{name}-questions-{lang}.yaml" for lang in ("en", "ru")}
    parser = argparse.ArgumentParser(description=f"Build eval/{name}/ from {source} (see the docstring).")
    parser.add_argument("debs", nargs="?", type=Path, default=DEFAULT_DEBS, help="the folder holding the .deb files")
    parser.add_argument("--questions", type=Path, help=f"the folder holding {' and '.join(questions.values())}")
    args = parser.parse_args(argv)
    files = build(args.debs)
    write_corpus(out, files)
    header = (
        f"# {classes}: `kbsearch eval --classes eval/classes-{name}.yaml`.\n"
        f"# Made by eval/make_{name}_corpus.py from {source}.\n"
    )
    sets = query_sets(out, name)
    write_classes(
        out, f"make_{name}_corpus.py", sets, args.questions, questions, (HERE / f"classes-{name}.yaml", header)
    )
    print(f"{sum(1 for r in files if r.startswith('en/'))} note pairs (max relevant {MAX_RELEVANT})")
    return 0


def main(argv: list[str] | None = None) -> int:
    classes = "The Debian documentation classes (a fifth corpus, measured blind in session 30)"
    source = "Debian bookworm's developers-reference, debian-faq and maint-guide (en, ru)"
    return run(argv, "debdoc", build_corpus, classes, source)


if __name__ == "__main__":
    raise SystemExit(main())
