"""A third corpus for the per-class eval: GNOME Help (the desktop's user guide) in English and its Russian translation.

Nobody tuned the fusion on these pages (sessions 10-25 tuned it on the Obsidian help vault, session 22 checked it on
Debian's man pages), so ``kbsearch eval --classes eval/classes-gnome.yaml`` says again whether the defaults hold on
data they were not chosen on.

**The corpus** (``eval/gnome/en/``, ``eval/gnome/ru/``): every ``type="topic"`` page of ``gnome-user-docs`` 43.0-2
(Debian bookworm; ``usr/share/help/C/gnome-help/`` and ``usr/share/help/ru/gnome-help/``, paired by file name; the
``guide`` pages are link lists and are skipped) whose converted body has at least ``MIN_BODY`` characters in both
languages, converted from Mallard XML to markdown by the small converter below: frontmatter ``title`` (the page's
``<title>``), ``page``, ``lang``, ``license``; ``<section>`` titles as ``##`` / ``###`` headings; paragraphs, lists,
steps (numbered), notes, term lists, table rows as lines; inline markup as its text (``<keyseq>`` as ``Ctrl+C``,
``<guiseq>`` as ``Settings ▸ Sound``, code, commands, files, input and output in backticks); a link as its text,
an empty ``<link xref="x"/>`` as the target's title (what GNOME Help shows), an empty ``href`` link as its address.
Dropped: ``<info>`` (credits, the Russian translators' credits, revisions, links), ``<media>``, ``<comment>``,
``<include>``, ``<links>`` (generated link lists), and the branches of ``<if:choose>`` that standard GNOME does
not show (``platform:gnome-classic``, ``action:install``). **The page's ``<desc>`` is not in the note**: it is the
describe queries' text. The body is cut at a paragraph boundary after ``MAX_BODY`` characters.

**The query classes** (``eval/gnome/queries/``), labels correct by construction:

- ``gnome-describe-en`` / ``-ru``: each page's ``<desc>`` over its own language's notes, labelled with every page of
  that description;
- ``gnome-cross-en-to-ru`` / ``gnome-cross-ru-to-en``: the same descriptions over the other language's notes;
- ``gnome-known-item-en`` / ``-ru``: for each note, an identifier its page marks up (a key ``Backspace`` or key
  sequence ``Super+Tab``, a command, a file path, code or input, a GUI label of two words or more) or a number of
  3+ digits, alone or with a rare word of the note's language, that at most 2 notes of the half hold; labelled
  with **every** note holding all the query's terms after kb-search's tokenizer (``make_man_corpus.known_items``).
  Queries matching more than 3 notes are dropped.
- ``gnome-question-en`` / ``-ru``: hand-written questions (``--questions DIR``: ``gnome-questions-en.yaml`` and
  ``-ru.yaml``, ``- query: ...`` / ``relevant: [<page-id>]``), copied as they are; a question whose page is not in
  the corpus is dropped and counted.

Licence: GNOME Help is CC-BY-SA 3.0 (Debian's ``copyright``: "Copyright (C) 2010 - 2014 Shaun McCance"; each page
names its authors in its ``<info>``). See ``eval/gnome/README.md``.

    apt-get download gnome-user-docs=43.0-2                              # into a folder (DEB below)
    .venv/bin/python eval/make_gnome_corpus.py [FOLDER] [--questions DIR]    # default .kbsearch/debs
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make_man_corpus, run as a script or loaded by a test
from make_man_corpus import MAX_RELEVANT, deb_members, described, known_items, write_corpus, write_manifest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DEBS = ROOT / ".kbsearch" / "debs"
OUT = HERE / "gnome"
#: the package, exactly (a different version is a different corpus: the rebuild test would fail)
DEB = "gnome-user-docs_43.0-2_all.deb"
PREFIX = {"en": "usr/share/help/C/gnome-help/", "ru": "usr/share/help/ru/gnome-help/"}
MIN_BODY = 300  # characters of the converted body, in both languages
MAX_BODY = 2500  # as the man pages: about 2 chunks of 400 tokens
LICENSE = "CC-BY-SA-3.0"
QUESTIONS = {"en": "gnome-questions-en.yaml", "ru": "gnome-questions-ru.yaml"}

MAL = "{http://projectmallard.org/1.0/}"
IF = "{http://projectmallard.org/if/1.0/}"
#: not the page's text: metadata, media, editorial comments, XInclude, generated link lists, ITS rules
_DROPPED = {"info", "media", "comment", "include", "links", "rules", "thumb"}
_CODE = {"code", "cmd", "file", "input", "output", "sys"}  # inline, in backticks
#: a branch standard GNOME does not show (GNOME Classic's, an install button)
_HIDDEN_TEST = re.compile(r"(?<!!)platform:gnome-classic|action:")


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""  # comments and processing instructions: ""


def _space(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class Page:
    id: str
    type: str
    title: str
    desc: str
    body: list[str] = field(default_factory=list)  # markdown pieces: headings, paragraphs, list items, table rows
    identifiers: list[str] = field(default_factory=list)  # marked-up keys, commands, files, GUI labels (2+ words)


class Converter:
    """Mallard → markdown for one language; ``titles`` maps ``page`` and ``page#section`` ids to their titles (an
    empty ``<link xref>`` shows its target's)."""

    def __init__(self, titles: dict[str, str]) -> None:
        self.titles = titles
        self.identifiers: set[str] = set()

    # -- inline ------------------------------------------------------------------------------------------------------
    def inline(self, el: ET.Element) -> str:
        parts = [el.text or ""]
        for child in el:
            parts.append(self._inline_one(child))
            parts.append(child.tail or "")
        return "".join(parts)

    def _inline_one(self, el: ET.Element) -> str:
        name = _local(el.tag)
        if not name or name in _DROPPED:
            return ""
        if name == "keyseq":
            keys = [_space(self.inline(k)) for k in el if _local(k.tag) == "key"]
            text = "+".join(keys) if keys else _space(self.inline(el))
            self.identifiers.add(text)
            return text
        if name == "guiseq":
            guis = [_space(self.inline(g)) for g in el if _local(g.tag) == "gui"]
            return " ▸ ".join(guis) if guis else _space(self.inline(el))
        if name == "link" and not _space(self.inline(el)):
            xref, href = el.get("xref"), el.get("href")
            if xref:
                return self.titles.get(xref) or self.titles.get(xref.split("#", 1)[0], "")
            return href or ""
        if name == "choose":
            return " ".join(self.inline(b) for b in self._branch(el))
        text = _space(self.inline(el))
        if name in _CODE:
            self.identifiers.add(text)
            return f"`{text}`" if text else ""
        if name == "key" or (name == "gui" and len(text.split()) >= 2):
            self.identifiers.add(text)
        return text

    # -- blocks ------------------------------------------------------------------------------------------------------
    def _branch(self, choose: ET.Element) -> list[ET.Element]:
        """The children of an ``<if:choose>`` that standard GNOME shows: the first ``<if:when>`` whose test it
        passes, else the ``<if:else>``."""
        for child in choose:
            if _local(child.tag) == "when" and not _HIDDEN_TEST.search(child.get("test", "")):
                return [child]
        return [c for c in choose if _local(c.tag) == "else"]

    def blocks(self, el: ET.Element, depth: int) -> list[str]:
        """The markdown pieces of a block container's children (``depth``: the section nesting)."""
        out: list[str] = []
        for child in el:
            out += self.block(child, depth)
        return out

    def block(self, el: ET.Element, depth: int) -> list[str]:
        name = _local(el.tag)
        if not name or name in _DROPPED or name in ("title", "desc"):  # titles: read by their parent
            return []
        if name == "section":
            heading = next((c for c in el if _local(c.tag) == "title"), None)
            head = [f"{'#' * min(depth + 2, 3)} {_space(self.inline(heading))}"] if heading is not None else []
            return head + self.blocks(el, depth + 1)
        if name == "p":
            text = _space(self.inline(el))
            return [re.sub(r"^([#>+-]|\d+\.)", r"\\\1", text)] if text else []  # text, not markdown syntax
        if name in ("list", "steps"):
            items = [c for c in el if _local(c.tag) == "item"]
            marks = [f"{n}." for n in range(1, len(items) + 1)] if name == "steps" else ["-"] * len(items)
            return [f"{mark} {text}" for mark, item in zip(marks, items, strict=True)
                    if (text := _item(self.blocks(item, depth), len(mark) + 1))]  # fmt: skip
        if name == "terms":
            out = []
            for item in (c for c in el if _local(c.tag) == "item"):
                terms = [_space(self.inline(t)) for t in item if _local(t.tag) == "title"]
                text = _item(self.blocks(item, depth), 2)
                if text.startswith("```"):  # a block first: on lines of its own under the term
                    text = f"\n\n  {text}"
                out.append(f"- {' / '.join(terms)}:{'' if text.startswith(chr(10)) else ' '}{text}" if text
                           else f"- {' / '.join(terms)}")  # fmt: skip
            return out
        if name == "table":
            rows = []
            for row in el.iter(f"{MAL}tr"):
                cells = [" ".join(self.blocks(td, depth)) or _space(self.inline(td)) for td in row]
                if any(cells):
                    rows.append(" | ".join(cells))
            title = next((c for c in el if _local(c.tag) == "title"), None)
            head = [_space(self.inline(title))] if title is not None else []
            return ["\n".join(head + rows)] if rows else head
        if name in ("code", "screen"):
            if len(el):
                self.inline(el)  # (its inline children's identifiers: a command's <input>)
            text = "".join(el.itertext()).strip("\n")  # as printed: no inline markup inside a fence
            self.identifiers.update(line.strip() for line in text.splitlines() if line.strip())
            return [f"```\n{text}\n```"] if text.strip() else []
        if name == "choose":
            return [piece for b in self._branch(el) for piece in self.blocks(b, depth)]
        if name == "if" and _HIDDEN_TEST.search(el.get("test", "")):
            return []
        if name in ("note", "figure", "example", "item", "when", "else", "if", "div", "td", "subtitle", "quote"):
            titles = [_space(self.inline(c)) for c in el if _local(c.tag) == "title"]
            return [t for t in titles if t] + self.blocks(el, depth)
        # anything else: a block of blocks if it holds any, else its text
        if len(el) and all(_local(c.tag) in ("p", "list", "steps", "note", "table") for c in el):
            return self.blocks(el, depth)
        text = _space(self.inline(el))
        return [text] if text else []


def _item(pieces: list[str], indent: int) -> str:
    """A list item's blocks as one item's markdown: paragraphs joined on its line; a fenced block (``code``,
    ``screen``) on lines of its own, indented under the item, and what follows it a paragraph of the item."""
    out, pad = "", " " * indent
    for piece in pieces:
        if piece.startswith("```"):
            fence = "\n".join(pad + line if line else line for line in piece.split("\n"))
            out = f"{out}\n\n{fence}" if out else fence.lstrip(" ")
        elif out.endswith("```"):
            out += f"\n\n{pad}{piece}"
        else:
            out += f" {piece}" if out else piece
    return out


def _child(el: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in el if _local(c.tag) == name), None)


def parse_page(source: bytes, titles: dict[str, str]) -> Page:
    """One ``.page``: its id, type, title, ``<desc>`` (in ``<info>``) and body."""
    root = ET.fromstring(source)  # noqa: S314  (a pinned Debian package's files, not untrusted input)
    conv = Converter(titles)
    info, title = _child(root, "info"), _child(root, "title")
    desc = _child(info, "desc") if info is not None else None
    page = Page(
        id=root.get("id", ""),
        type=root.get("type", ""),
        title=_space(conv.inline(title)) if title is not None else "",
        desc=_space(conv.inline(desc)) if desc is not None else "",
    )
    conv.identifiers.clear()  # the title's and the desc's markup are not the body's
    page.body = conv.blocks(root, 0)
    page.identifiers = sorted(i for i in conv.identifiers if i)
    return page


def page_titles(source: bytes) -> dict[str, str]:
    """``page`` → its title and ``page#section`` → the section's, for empty xref links."""
    root = ET.fromstring(source)  # noqa: S314  (as above)
    conv = Converter({})
    pid = root.get("id", "")
    out = {}
    title = _child(root, "title")
    if title is not None:
        out[pid] = _space(conv.inline(title))
    for section in root.iter(f"{MAL}section"):
        heading = _child(section, "title")
        if section.get("id") and heading is not None:
            out[f"{pid}#{section.get('id')}"] = _space(conv.inline(heading))
    return out


def cut(body: list[str]) -> list[str]:
    """The body up to ``MAX_BODY`` characters, cut before the piece that would pass it; no heading left last."""
    out: list[str] = []
    size = 0
    for piece in body:
        if size + len(piece) > MAX_BODY and size > 0:
            break
        out.append(piece)
        size += len(piece) + 2
    while out and out[-1].startswith("#"):
        out.pop()
    return out


def to_markdown(page: Page, lang: str) -> str:
    meta = {"title": page.title, "page": page.id, "lang": lang, "license": LICENSE}
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=1000)
    return f"---\n{front}---\n\n" + "\n\n".join(cut(page.body)) + "\n"


# -- the corpus ------------------------------------------------------------------------------------------------------
def _sources(members: dict[str, bytes], lang: str) -> dict[str, bytes]:
    prefix = PREFIX[lang]
    return {p[len(prefix) : -len(".page")]: data for p, data in members.items()
            if p.startswith(prefix) and p.endswith(".page") and "/" not in p[len(prefix) :]}  # fmt: skip


def build_corpus(debs: Path) -> dict[str, str]:
    """``en/<page>.md`` / ``ru/<page>.md`` → the note's text, ``pages.yaml`` (page → desc and identifiers a
    language)."""
    if not (debs / DEB).is_file():
        raise FileNotFoundError(f"{debs / DEB} is missing (apt-get download gnome-user-docs=43.0-2)")
    members = deb_members(debs / DEB)
    pages: dict[str, dict[str, Page]] = {}
    for lang in ("en", "ru"):
        sources = _sources(members, lang)
        titles: dict[str, str] = {}
        for source in sources.values():
            titles |= page_titles(source)
        pages[lang] = {name: parse_page(source, titles) for name, source in sources.items()}
    files: dict[str, str] = {}
    meta: dict[str, dict[str, object]] = {}
    for name in sorted(set(pages["en"]) & set(pages["ru"])):
        pe, pr = pages["en"][name], pages["ru"][name]
        if pe.type != "topic" or pr.type != "topic" or not (pe.desc and pr.desc):
            continue
        if min(len("\n\n".join(cut(p.body))) for p in (pe, pr)) < MIN_BODY:
            continue
        files[f"en/{name}.md"] = to_markdown(pe, "en")
        files[f"ru/{name}.md"] = to_markdown(pr, "ru")
        meta[name] = {"en": pe.desc, "ru": pr.desc, "identifiers": {"en": pe.identifiers, "ru": pr.identifiers}}
    files["pages.yaml"] = (
        "# page → its <desc> in each language (not in the notes: the describe and cross classes' queries) and the\n"
        "# identifiers its body marks up (the known-item queries' candidates). Made by eval/make_gnome_corpus.py.\n"
        + yaml.safe_dump(meta, allow_unicode=True, sort_keys=True, width=1000)
    )
    return files


# -- the query classes -----------------------------------------------------------------------------------------------
_NUMBER = re.compile(r"(?<![\w.])\d{3,}(?![\w.])")


def _finder(identifiers: dict[str, list[str]]) -> Callable[[str, str], list[str]]:
    def find(rel: str, body: str) -> list[str]:
        """The page's marked-up identifiers that are in the note (the cut may have dropped some), and its numbers."""
        marked = {i for i in identifiers.get(rel.removesuffix(".md"), []) if i in body}
        return sorted(marked | set(_NUMBER.findall(body)))

    return find


def query_sets(corpus: Path) -> dict[str, list[dict[str, object]]]:
    meta = yaml.safe_load((corpus / "pages.yaml").read_text(encoding="utf-8"))
    descriptions = {name: {"en": m["en"], "ru": m["ru"]} for name, m in meta.items()}
    sets: dict[str, list[dict[str, object]]] = {}
    for lang in ("en", "ru"):
        idents = {name: m["identifiers"][lang] for name, m in meta.items()}
        sets[f"gnome-known-item-{lang}"] = known_items(corpus / lang, lang, _finder(idents))
    for lang in ("en", "ru"):
        for over in ("en", "ru"):
            name = f"gnome-describe-{lang}" if lang == over else f"gnome-cross-{lang}-to-{over}"
            sets[name] = described(descriptions, lang, over)
    return sets


def questions(path: Path, half: Path) -> tuple[list[dict[str, object]], list[str]]:
    """The hand-written questions as the eval reads them (``relevant``: ``<page>.md``), and those dropped because a
    page they name is not in ``half``."""
    kept, dropped = [], []
    for item in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
        rels = [f"{page}.md" for page in item["relevant"]]
        if rels and all((half / rel).is_file() for rel in rels):
            kept.append({"query": item["query"], "kind": "question", "relevant": rels})
        else:
            dropped.append(str(item["query"]))
    return kept, dropped


def _write_set(
    out: Path, script: str, name: str, items: list[dict[str, object]], note: str = "", comments: str = ""
) -> None:
    corpus = out.relative_to(ROOT).as_posix()
    header = f"# {len(items)} queries ({name}) over {corpus}/{name[-2:]}/, made by eval/{script}{note}.\n"
    header += comments
    text = header + yaml.safe_dump(items, allow_unicode=True, sort_keys=False, width=1000)
    (out / "queries" / f"{name}.yaml").write_text(text, encoding="utf-8")
    print(f"{name}: {len(items)} queries")


def write_classes(
    out: Path,
    script: str,
    sets: dict[str, list[dict[str, object]]],
    questions_dir: Path | None,
    question_files: dict[str, str],
    manifest: tuple[Path, str],
) -> None:
    """A corpus's query sets under ``out/queries/`` (the generated ``sets``; ``<prefix>-question-<lang>`` copied from
    ``questions_dir``'s ``question_files`` when given, else kept as committed) and its ``--classes`` manifest
    (``manifest``: its path and header). Shared by the GNOME Help and LibreOffice Help corpora."""
    (out / "queries").mkdir(exist_ok=True)
    names = []
    for name, items in sets.items():
        _write_set(out, script, name, items)
        names.append(name)
    prefix = next(iter(sets)).split("-", 1)[0]
    for lang in ("en", "ru"):
        name = f"{prefix}-question-{lang}"
        if questions_dir is not None:
            kept, dropped = questions(questions_dir / question_files[lang], out / lang)
            source = (questions_dir / question_files[lang]).read_text(encoding="utf-8").splitlines()
            comments = "".join(f"{line}\n" for line in itertools.takewhile(lambda x: x.startswith("#"), source))
            note = f" from {question_files[lang]}, hand-written; {len(dropped)} dropped (a page not in the corpus)"
            _write_set(out, script, name, kept, note, "# The source file's header:\n" + comments)
            for text in dropped:
                print(f"  dropped ({name}): {text}")
        if (out / "queries" / f"{name}.yaml").is_file():
            names.append(name)
    corpus = out.relative_to(ROOT).as_posix()
    entries = [{"class": n, "corpus": f"{corpus}/{n[-2:]}", "queries": f"{corpus}/queries/{n}.yaml"} for n in names]
    write_manifest(manifest[0], manifest[1], entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build eval/gnome/ from gnome-user-docs' .deb (see the docstring).")
    parser.add_argument("debs", nargs="?", type=Path, default=DEFAULT_DEBS, help=f"the folder holding {DEB}")
    parser.add_argument("--questions", type=Path, help="the folder holding gnome-questions-en.yaml and -ru.yaml")
    args = parser.parse_args(argv)
    files = build_corpus(args.debs)
    write_corpus(OUT, files)
    header = (
        "# The GNOME Help classes (a third corpus, measured blind in session 27): `kbsearch eval --classes eval/classes-gnome.yaml`.\n"
        "# Made by eval/make_gnome_corpus.py from Debian's gnome-user-docs 43.0-2.\n"
    )
    sets = query_sets(OUT)
    write_classes(OUT, "make_gnome_corpus.py", sets, args.questions, QUESTIONS, (HERE / "classes-gnome.yaml", header))
    print(f"{sum(1 for r in files if r.startswith('en/'))} page pairs (max relevant {MAX_RELEVANT})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
