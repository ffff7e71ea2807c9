"""A fourth corpus for the per-class eval: LibreOffice Help's guide pages in English and Russian.

Nobody tuned the fusion on these pages (sessions 10-25 tuned it on the Obsidian help vault, session 22 checked it on
Debian's man pages, session 27 on GNOME Help, after which two exact-match rules were made with GNOME in view), so
``kbsearch eval --classes eval/classes-lo.yaml`` says once more whether the defaults hold on data they were not
chosen on.

**The corpus** (``eval/lo/en/``, ``eval/lo/ru/``): every guide page (``text/<app>/guide/<page>.html``) of Debian
bookworm's ``libreoffice-help-en-us`` and ``libreoffice-help-ru`` 4:7.4.7-1+deb12u14, paired by path, whose
converted body has at least ``MIN_BODY`` characters in both languages; one note per page per language,
``<app>-<page>.md`` (``swriter-anchor_object.md``). The converter below reads the page's ``<div id="DisplayArea">``
with the stdlib's HTML parser: frontmatter ``title`` (the ``<h1>``), ``page``, ``lang``, ``license``; ``<h2>`` as
``##``, ``<h3>``-``<h6>`` as ``###``; paragraphs, list items (``-`` or numbered), notes, tips and warnings, table
rows as lines (cells joined by ``|``), code blocks fenced; inline markup as its text (menu paths ``Format -
Character``, key combos ``Ctrl+F6``), a link as its text. Of a ``switch`` / ``switchinline`` only the branch a
Linux user of that page's application sees (the ``UNIX`` one, the application's, else the default). Dropped: the
``<meta>`` index keywords (they are the keyword class's queries), scripts, images, the "Related Topics" link lists
(from the ``related`` paragraph on), empty anchors. The body is cut at a paragraph boundary after ``MAX_BODY``
characters (``make_gnome_corpus.cut``).

**The query classes** (``eval/lo/queries/``), labels correct by construction:

- ``lo-keyword-en`` / ``-ru``: the help's own alphabetical index (``bookmarks.js``; ``objects -- anchoring
  options`` → ``objects anchoring options``, ``&#34;`` → ``"``) over its own language's notes, labelled with every corpus page the
  entry points to; entries pointing to 1-``MAX_RELEVANT`` corpus pages, in Russian only entries with a Cyrillic
  letter (the untranslated ones are English), ``KEYWORDS`` of them a language in sha1 order.
- ``lo-cross-en-to-ru`` / ``lo-cross-ru-to-en``: each page's title over the other language's notes (the title is in
  the note's frontmatter: a same-language title query would be trivial), labelled with every page of that title.
- ``lo-known-item-en`` / ``-ru``: for each note, an identifier its page marks up (a menu path ``Tools - Options``, a
  key combo ``Ctrl+Shift+F9``, a literal, an input, code) or that its text holds (a file extension ``.odt``, a
  number of 3+ digits), alone or with a rare word of the note's language, that at most 2 notes of the half hold;
  labelled with **every** note holding all the query's terms after kb-search's tokenizer
  (``make_man_corpus.known_items``). Queries matching more than 3 notes are dropped.
- ``lo-question-en`` / ``-ru``: hand-written questions (``--questions DIR``: ``lo-questions-en.yaml`` and
  ``-ru.yaml``, ``- query: ...`` / ``relevant: [<app>-<page>]``), copied as they are
  (``make_gnome_corpus.questions``); a question whose page is not in the corpus is dropped and counted.

Licence: LibreOffice's help is MPL-2.0 (Debian's ``copyright``: ``Files: *``, "Copyright 2000, 2010 Oracle and/or
its affiliates", "Copyright (c) 2000, 2010 LibreOffice contributors and/or their affiliates", some files including
Apache-2.0 material). See ``eval/lo/README.md``.

    apt-get download libreoffice-help-en-us=4:7.4.7-1+deb12u14 libreoffice-help-ru=4:7.4.7-1+deb12u14
    .venv/bin/python eval/make_lo_corpus.py [FOLDER] [--questions DIR]    # default .kbsearch/debs
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other corpora's code, run as a script or by a test
from make_gnome_corpus import _finder, _space, cut, write_classes
from make_man_corpus import MAX_RELEVANT, _rank, deb_members, described, known_items, write_corpus

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DEBS = ROOT / ".kbsearch" / "debs"
OUT = HERE / "lo"
VERSION = "4:7.4.7-1+deb12u14"
#: the packages, exactly (a different version is a different corpus: the rebuild test would fail); apt-get download
#: names them with the epoch's ':' as '%3a'
DEBS = {
    "en": "libreoffice-help-en-us_4%3a7.4.7-1+deb12u14_all.deb",
    "ru": "libreoffice-help-ru_4%3a7.4.7-1+deb12u14_all.deb",
}
HELP = {"en": "usr/share/libreoffice/help/en-US/", "ru": "usr/share/libreoffice/help/ru/"}
MIN_BODY = 300  # characters of the converted body, in both languages
KEYWORDS = 250  # index entries a language
LICENSE = "MPL-2.0"
QUESTIONS = {"en": "lo-questions-en.yaml", "ru": "lo-questions-ru.yaml"}

#: the application a ``switch`` branch is chosen for, by the folder under ``text/``
APP = {"swriter": "WRITER", "scalc": "CALC", "simpress": "IMPRESS", "sdraw": "DRAW", "smath": "MATH",
       "sbasic": "BASIC", "shared": ""}  # fmt: skip
_SYSTEMS = {"MAC", "WIN", "UNIX"}
_VOID = {"meta", "img", "br", "input", "link", "hr", "wbr", "source", "area", "col", "embed", "param", "track"}
_DROPPED = {"script", "style", "img", "meta", "noscript", "svg", "button", "nav", "input", "link"}
#: inline markup whose text is an identifier (a menu path, a key combo, a literal, an input, code)
_MARKED = {"menuitem", "keycode", "literal", "input"}
_EXTENSION = re.compile(r"(?<![\w.])\.[a-z][a-z0-9]{1,4}(?![\w.])")  # .odt, .xlsx, .csv
_FUNCTION = re.compile(r"(?<![\w.])[A-Z][A-Z0-9]{2,}(?:\.[A-Z0-9]+)*(?![\w.])")  # VLOOKUP, SUMIF, HTML, ISO
_CYR = re.compile(r"[А-Яа-яЁё]")


# -- HTML → a small tree -----------------------------------------------------------------------------------------------
@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):  # close up to the matching open element, if any
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(source: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(source)
    builder.close()
    return builder.root


def _find(node: Node, test: Callable[[Node], bool]) -> Node | None:
    for child in node.children:
        if isinstance(child, Node):
            if test(child):
                return child
            found = _find(child, test)
            if found is not None:
                return found
    return None


# -- the converter -----------------------------------------------------------------------------------------------------
@dataclass
class Page:
    id: str
    title: str
    body: list[str] = field(default_factory=list)  # markdown pieces: headings, paragraphs, list items, table rows
    identifiers: list[str] = field(default_factory=list)  # marked-up menu paths, key combos, literals, inputs, code


class Converter:
    """LibreOffice Help's HTML → markdown for one page of the application ``app`` (``swriter``...)."""

    def __init__(self, app: str) -> None:
        self.app = APP.get(app, "")
        self.identifiers: set[str] = set()
        self.ended = False  # the "Related Topics" list and everything after it are not the page's text

    def _branch(self, switch: Node) -> list[Node | str]:
        """The branch of a ``switch`` a Linux user of this page's application sees: the ``UNIX`` one, else the
        application's, else the default (the branch whose id starts with ``default``, or not marked hidden)."""
        branches = [c for c in switch.children if isinstance(c, Node)]
        for wanted in ("UNIX", self.app):
            chosen = [b for b in branches if wanted and wanted in b.classes]
            if chosen:
                return list(chosen[0].children)
        default = [b for b in branches if b.attrs.get("id", "").startswith("default") or "defaultinline" in b.classes]
        if default:
            return list(default[0].children)
        return [b for b in branches if not (b.classes & (_SYSTEMS | set(APP.values())))]

    def _is_end(self, node: Node) -> bool:
        return bool(node.classes & {"relatedtopics", "related"})

    # -- inline ----------------------------------------------------------------------------------------------------
    def inline(self, nodes: list[Node | str]) -> str:
        parts = []
        for child in nodes:
            if isinstance(child, str):
                parts.append(child)
                continue
            if child.tag in _DROPPED:
                continue
            if child.tag == "br":
                parts.append(" ")
                continue
            if child.classes & {"switch", "switchinline"}:
                parts.append(self.inline(self._branch(child)))
                continue
            text = self.inline(child.children)
            if child.classes & _MARKED or child.tag == "code" or ("emph" in child.classes and len(text.split()) >= 2):
                self.identifiers.add(_space(text))
            parts.append(text)
        return "".join(parts)

    # -- blocks ----------------------------------------------------------------------------------------------------
    def blocks(self, nodes: list[Node | str]) -> list[str]:
        out: list[str] = []
        loose: list[Node | str] = []  # inline content between blocks: one paragraph

        def flush() -> None:
            text = _space(self.inline(loose))
            if text:
                out.append(_paragraph(text))
            loose.clear()

        for child in nodes:
            if self.ended:
                break
            if isinstance(child, Node) and self._is_end(child):
                self.ended = True  # loose holds only what came before it
                break
            if isinstance(child, Node) and (child.tag in _BLOCK or _find(child, lambda n: n.tag in _BLOCK)):
                flush()
                out += self.block(child)
            else:
                loose.append(child)
        flush()
        return out

    def block(self, el: Node) -> list[str]:
        if el.tag in _DROPPED or "noteicon" in el.classes:
            return []
        if el.classes & {"switch", "switchinline"}:
            return self.blocks(self._branch(el))
        if el.tag == "h1":
            return []  # the title: the frontmatter's
        if el.tag in ("h2", "h3", "h4", "h5", "h6"):
            text = _space(self.inline(el.children))
            return [f"{'##' if el.tag == 'h2' else '###'} {text}"] if text else []
        if el.tag in ("ul", "ol"):
            items = [c for c in el.children if isinstance(c, Node) and c.tag == "li"]
            out = []
            for n, item in enumerate(items, 1):
                text = " ".join(self.blocks(item.children))
                if text:
                    out.append(f"{n}. {text}" if el.tag == "ol" else f"- {text}")
            return out
        if el.tag == "table":
            rows = []
            for row in _rows(el):
                cells = [" ".join(self.blocks(c.children)) for c in row]
                if any(cells):
                    rows.append(" | ".join(cells))
            return ["\n".join(rows)] if rows else []
        if el.tag == "pre":
            text = textwrap.dedent(_text(el).expandtabs(4)).strip("\n")
            lines = [line.rstrip() for line in text.splitlines()]
            self.identifiers.update(line.strip() for line in lines if line.strip())
            return ["```\n" + "\n".join(lines) + "\n```"] if any(lines) else []
        if el.tag == "p":
            text = _space(self.inline(el.children))
            return [_paragraph(text)] if text else []
        return self.blocks(el.children)  # div, span, li, td...: a block of blocks


_BLOCK = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "pre", "div", "li"}


def _paragraph(text: str) -> str:
    return re.sub(r"^([#>+-]|\d+\.)", r"\\\1", text)  # text, not markdown syntax


def _rows(table: Node) -> list[list[Node]]:
    rows: list[list[Node]] = []
    for child in table.children:
        if isinstance(child, Node) and child.tag == "tr":
            rows.append([c for c in child.children if isinstance(c, Node) and c.tag in ("td", "th")])
        elif isinstance(child, Node) and child.tag in ("thead", "tbody", "tfoot"):
            rows += _rows(child)
    return rows


def _text(node: Node) -> str:
    return "".join(c if isinstance(c, str) else _text(c) for c in node.children)


def parse_page(source: str, app: str, page_id: str) -> Page:
    """One guide page: its title (the ``<h1>``, else the ``<title>``) and its body's markdown pieces."""
    root = parse_html(source)
    area = _find(root, lambda n: n.attrs.get("id") == "DisplayArea")
    if area is None:
        raise ValueError(f"{page_id}: no <div id='DisplayArea'>")
    conv = Converter(app)
    h1 = _find(area, lambda n: n.tag == "h1")
    title_el = h1 if h1 is not None else _find(root, lambda n: n.tag == "title")
    title = _space(conv.inline(title_el.children)) if title_el is not None else ""
    conv.identifiers.clear()  # the title's markup is not the body's
    page = Page(id=page_id, title=title, body=conv.blocks(area.children))
    page.identifiers = sorted(i for i in conv.identifiers if i)
    return page


def to_markdown(page: Page, lang: str) -> str:
    meta = {"title": page.title, "page": page.id, "lang": lang, "license": LICENSE}
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=1000)
    return f"---\n{front}---\n\n" + "\n\n".join(cut(page.body)) + "\n"


# -- the index (bookmarks.js) ------------------------------------------------------------------------------------------
_BOOKMARK = re.compile(
    r'\{url:"[^"/]+/text/(\w+)/guide/([\w-]+)\.html[^"]*",\s*app:"\w*",\s*text:"((?:[^"\\]|\\.)*)"\}'
)


def index_entries(bookmarks: str) -> dict[str, set[str]]:
    """Each guide page (``<app>-<page>``) → the index entries pointing to it, as queries (``objects -- anchoring
    options`` → ``objects anchoring options``). The help writes a quote in an entry's text as an HTML character
    reference (``операции &#34;что если&#34;``): the query is the text a reader sees (``операции "что если"``)."""
    out: dict[str, set[str]] = {}
    for app, page, text in _BOOKMARK.findall(bookmarks):
        query = _space(html.unescape(text.replace("\\", "")).replace(" -- ", " ").replace("--", " "))
        if query:
            out.setdefault(f"{app}-{page}", set()).add(query)
    return out


# -- the corpus --------------------------------------------------------------------------------------------------------
def _sources(members: dict[str, bytes], lang: str) -> dict[str, tuple[str, str]]:
    """``<app>-<page>`` → (app, the page's HTML) for the guide pages of one language."""
    out = {}
    for path, data in members.items():
        m = re.fullmatch(re.escape(HELP[lang]) + r"text/(\w+)/guide/([\w-]+)\.html", path)
        if m:
            out[f"{m.group(1)}-{m.group(2)}"] = (m.group(1), data.decode("utf-8"))
    return out


def build_corpus(debs: Path) -> dict[str, str]:
    """``en/<app>-<page>.md`` / ``ru/<app>-<page>.md`` → the note's text, and ``pages.yaml`` (page → its title, index
    entries and identifiers a language)."""
    pages: dict[str, dict[str, Page]] = {}
    index: dict[str, dict[str, set[str]]] = {}
    for lang, deb in DEBS.items():
        if not (debs / deb).is_file():
            raise FileNotFoundError(f"{debs / deb} is missing (apt-get download {deb.split('_')[0]}={VERSION})")
        members = deb_members(debs / deb)
        pages[lang] = {pid: parse_page(html, app, pid) for pid, (app, html) in _sources(members, lang).items()}
        index[lang] = index_entries(members[HELP[lang] + "bookmarks.js"].decode("utf-8"))
    files: dict[str, str] = {}
    meta: dict[str, dict[str, object]] = {}
    for pid in sorted(set(pages["en"]) & set(pages["ru"])):
        pe, pr = pages["en"][pid], pages["ru"][pid]
        if not (pe.title and pr.title) or min(len("\n\n".join(cut(p.body))) for p in (pe, pr)) < MIN_BODY:
            continue
        files[f"en/{pid}.md"] = to_markdown(pe, "en")
        files[f"ru/{pid}.md"] = to_markdown(pr, "ru")
        meta[pid] = {
            "title": {"en": pe.title, "ru": pr.title},
            "index": {lang: sorted(index[lang].get(pid, ())) for lang in ("en", "ru")},
            "identifiers": {"en": pe.identifiers, "ru": pr.identifiers},
        }
    files["pages.yaml"] = (
        "# page → its title in each language (the cross classes' queries), the help index's entries pointing to it\n"
        "# (the keyword classes') and the identifiers its body marks up (the known-item classes' candidates).\n"
        "# Made by eval/make_lo_corpus.py.\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=True, width=1000)
    )
    return files


# -- the query classes -------------------------------------------------------------------------------------------------
def keywords(meta: dict[str, dict[str, Any]], lang: str) -> list[dict[str, object]]:
    """The index entries of ``lang`` pointing to 1-``MAX_RELEVANT`` corpus pages, labelled with all of them;
    ``KEYWORDS`` of them in sha1 order (in Russian, only entries with a Cyrillic letter)."""
    pages: dict[str, list[str]] = {}
    for pid in sorted(meta):
        for entry in meta[pid]["index"][lang]:
            pages.setdefault(entry, []).append(f"{pid}.md")
    chosen = [e for e in pages if len(pages[e]) <= MAX_RELEVANT and (lang == "en" or _CYR.search(e))]
    chosen = sorted(chosen, key=_rank)[:KEYWORDS]
    return [{"query": e, "kind": "keyword", "relevant": pages[e]} for e in chosen]


def _lo_finder(identifiers: dict[str, list[str]]) -> Callable[[str, str], list[str]]:
    marked = _finder(identifiers)  # GNOME's: the page's marked-up identifiers in the note, and its numbers

    def find(rel: str, body: str) -> list[str]:
        return sorted(set(marked(rel, body)) | set(_EXTENSION.findall(body)) | set(_FUNCTION.findall(body)))

    return find


def query_sets(corpus: Path) -> dict[str, list[dict[str, object]]]:
    meta = yaml.safe_load((corpus / "pages.yaml").read_text(encoding="utf-8"))
    sets: dict[str, list[dict[str, object]]] = {}
    for lang in ("en", "ru"):
        sets[f"lo-keyword-{lang}"] = keywords(meta, lang)
    for lang in ("en", "ru"):
        idents = {pid: m["identifiers"][lang] for pid, m in meta.items()}
        sets[f"lo-known-item-{lang}"] = known_items(corpus / lang, lang, _lo_finder(idents))
    titles = {pid: m["title"] for pid, m in meta.items()}
    for lang, over in (("en", "ru"), ("ru", "en")):
        sets[f"lo-cross-{lang}-to-{over}"] = described(titles, lang, over)
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build eval/lo/ from LibreOffice Help's .deb files (see the docstring)."
    )
    parser.add_argument(
        "debs", nargs="?", type=Path, default=DEFAULT_DEBS, help="the folder holding the two .deb files"
    )
    parser.add_argument("--questions", type=Path, help="the folder holding lo-questions-en.yaml and -ru.yaml")
    args = parser.parse_args(argv)
    files = build_corpus(args.debs)
    write_corpus(OUT, files)
    header = (
        "# The LibreOffice Help classes (a fourth corpus, measured blind in session 28): `kbsearch eval --classes eval/classes-lo.yaml`.\n"
        f"# Made by eval/make_lo_corpus.py from Debian's libreoffice-help-en-us and libreoffice-help-ru {VERSION}.\n"
    )
    sets = query_sets(OUT)
    write_classes(OUT, "make_lo_corpus.py", sets, args.questions, QUESTIONS, (HERE / "classes-lo.yaml", header))
    print(f"{sum(1 for r in files if r.startswith('en/'))} page pairs (max relevant {MAX_RELEVANT})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
