"""A second corpus for the per-class eval: Debian's Russian man pages and the English pages they translate.

Nobody tuned the fusion on these pages (sessions 10-17 tuned it on the Obsidian help vault), so
``kbsearch eval --classes eval/classes-man.yaml`` says whether the defaults hold on data they were not chosen on.

**The corpus** (``eval/man/en/``, ``eval/man/ru/``): every page of ``manpages-ru`` (4.18.1, Debian bookworm) whose
English original is in ``manpages`` (6.03) or ``coreutils`` (9.1), neither a ``.so`` redirect, converted from roff
to markdown by the small converter below (no groff: the same bytes on every machine): frontmatter ``title`` from the
NAME line's names (``ls, dir, vdir``), the page's licence, headings from ``.SH`` (``##``) and ``.SS`` (``###``).
**The NAME section is removed** (its description is the questions' target, not a copy in the note), and so are the
after-matter sections (authors, bug reports, copyright, see also, colophon, the translators' credits). The body
is cut at a paragraph boundary after ``MAX_BODY`` characters; ``PAIRS`` pairs at most (chosen by a hash of the
page name, so the set mixes sections). One note per page per language, ``<page>.<section>.md``, paired by name.

**The query classes** (``eval/man/queries/``), labels correct by construction:

- ``man-known-item-en`` / ``-ru``: for each note, an identifier from its body (an option ``--preserve-root``, a
  path ``/etc/fstab``, a constant or variable ``O_CLOEXEC``, ``LD_LIBRARY_PATH``, a function ``sigaction()``, a
  number of 3+ digits), alone or with a rare word of the note's language, that at most 2 notes of the half hold;
  labelled with **every** note holding all the query's terms after kb-search's tokenizer (as
  ``eval/make_query_sets.py`` does). Queries matching more than 3 notes are dropped.
- ``man-describe-en`` / ``-ru``: the NAME line's description ("list directory contents", "обзор сигналов") over
  its own language's notes, labelled with every page of that description (``ls``, ``dir`` and ``vdir`` share one).
- ``man-cross-en-to-ru`` / ``man-cross-ru-to-en``: the same descriptions over the other language's notes.

Licences: the English pages keep their own (``license`` in each note's frontmatter, from the page's SPDX line:
GPL-2.0-or-later, Linux-man-pages-copyleft, BSD…; coreutils' pages GPL-3.0-or-later); the Russian translations are
GPL-3+ (manpages-l10n, Debian's ``copyright``) over the original's licence. See ``eval/man/README.md``.

    apt-get download manpages-ru manpages coreutils     # into a folder (the exact versions: DEBS below)
    .venv/bin/python eval/make_man_corpus.py FOLDER      # default .kbsearch/debs
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import re
import shutil
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kbsearch.lexical import tokenize
from kbsearch.notes import parse_note, split_frontmatter

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DEBS = ROOT / ".kbsearch" / "debs"
OUT = HERE / "man"
#: the packages, exactly (a different version is a different corpus: the rebuild test would fail)
DEBS = {
    "manpages-ru": "manpages-ru_4.18.1-1_all.deb",
    "manpages": "manpages_6.03-2_all.deb",
    "coreutils": "coreutils_9.1-1_amd64.deb",
}
PAIRS = 200
MAX_BODY = 2500  # characters of a note's body (after the frontmatter): about 2 chunks of 400 tokens
MAX_RELEVANT = 3
#: sections that are not the page's content (credits, references, licences); the NAME section is dropped too
AFTER_MATTER = {
    "AUTHOR", "AUTHORS", "REPORTING BUGS", "COPYRIGHT", "SEE ALSO", "COLOPHON",
    "АВТОР", "АВТОРЫ", "ИНФОРМАЦИЯ ОБ ОШИБКАХ", "АВТОРСКИЕ ПРАВА", "СМ. ТАКЖЕ", "СМОТРИТЕ ТАКЖЕ", "ПЕРЕВОД",
}  # fmt: skip
NAME_SECTIONS = {"NAME", "ИМЯ", "НАЗВАНИЕ"}


# -- .deb reading (ar + tar.xz, no dpkg) ---------------------------------------------------------------------------
def deb_members(deb: Path) -> dict[str, bytes]:
    """The regular files of a .deb's data archive: path (``usr/share/man/...``) → bytes."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb}: not a .deb (ar) archive")
    pos, data = 8, None
    while pos + 60 <= len(raw):
        header = raw[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = raw[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            data = lzma.decompress(body) if name.endswith(".xz") else body
        pos += 60 + size + (size % 2)
    if data is None:
        raise ValueError(f"{deb}: no data.tar member")
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                out[member.name.removeprefix("./")] = f.read()
    return out


# -- roff → text ----------------------------------------------------------------------------------------------------
_NAMED = {
    "em": "—", "en": "–", "aq": "'", "dq": '"', "lq": "“", "rq": "”", "oq": "‘", "cq": "’", "Fo": "«", "Fc": "»",
    "bu": "•", "co": "©", "rg": "®", "tm": "™", "mu": "×", "di": "÷", "<=": "≤", ">=": "≥", "!=": "≠", "->": "→",
    "<-": "←", "hy": "-", "ti": "~", "ha": "^", "rs": "\\", "sl": "/", "ba": "|", "or": "|", "pl": "+", "mi": "-",
    "eq": "=", "lh": "☜", "rh": "☞", "de": "°", "+-": "±", "cu": "∪", "ca": "∩", "sc": "§", "ps": "¶",
}  # fmt: skip
_ESCAPE = re.compile(r"\\(?:\((..)|\[([^\]]*)\]|\*\((..)|\*\[([^\]]*)\]|\*(.)|f(?:\(..|\[[^\]]*\]|.)|s[-+]?\d+|"
                     r"[kh]'[^']*'|(.))")  # fmt: skip
_CHARS = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "t": " ", "'": "'", "`": "`", ".": "."}
_FONT_MACROS = {"B", "I", "SM", "SB", "BR", "RB", "IR", "RI", "BI", "IB"}


def _unescape(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        named = m.group(1) or m.group(2) or m.group(3) or m.group(4) or m.group(5)
        if named is not None:
            return _NAMED.get(named, "")
        char = m.group(6)
        if char is None:  # a font or size change, a motion
            return ""
        return _CHARS.get(char, "")  # \& \: \% \| \^ \c \, \/ and the rest: nothing

    return _ESCAPE.sub(one, text)


def _args(line: str) -> list[str]:
    """A request's arguments (double quotes group words)."""
    return [a[1:-1] if a.startswith('"') and a.endswith('"') and len(a) > 1 else a
            for a in re.findall(r'"[^"]*"?|\S+', line)]  # fmt: skip


@dataclass
class Page:
    names: str = ""
    description: str = ""
    sections: list[tuple[int, str, list[str]]] = field(default_factory=list)  # (level, heading, paragraphs)
    license: str = ""
    redirect: bool = False


def parse_roff(source: str) -> Page:
    page = Page()
    spdx = re.search(r"SPDX-License-Identifier:\s*(\S+)", source)
    older = re.search(r"%%%LICENSE_START\((\w+)\)", source)  # the pages' older licence markers
    page.license = spdx.group(1) if spdx else f"man-pages {older.group(1)} (the page's header)" if older else ""
    para: list[str] = []

    def flush() -> None:
        if para and page.sections:
            text = re.sub(r"\s+", " ", " ".join(para)).strip()
            if text:
                page.sections[-1][2].append(text)
        para.clear()

    in_table = table_rows = False
    for raw in source.splitlines():
        line = raw.rstrip()
        if line.startswith(('.\\"', "'\\\"", '\\"')) or line in (".", "'"):  # comments
            continue
        if line.startswith(".so "):
            page.redirect = True
            continue
        if in_table:  # tbl: options ("allbox;"), format lines (the last ends with "."), then the rows
            if line.startswith(".TE"):
                in_table = False
                flush()
            elif table_rows and not line.startswith((".", "'")):
                para.append(_unescape(line.replace("\t", " ")))
            elif line.endswith(".") and not line.startswith((".", "'")):
                table_rows = True
            continue
        if line.startswith((".", "'")):
            request, _, rest = line[1:].strip().partition(" ")
            if request in ("SH", "SS"):
                flush()
                heading = _unescape(" ".join(_args(rest))).strip().rstrip(":")
                page.sections.append((2 if request == "SH" else 3, heading, []))
            elif request in _FONT_MACROS:
                parts = [_unescape(a) for a in _args(rest)]
                para.append(("" if len(request) == 2 and request not in ("SM", "SB") else " ").join(parts))
            elif request in ("PP", "P", "LP", "IP", "TP", "HP", "sp", "br", "RS", "RE", "EX", "EE", "nf", "fi",
                             "TQ", "in", "ti"):  # fmt: skip
                flush()
                if request == "IP" and rest:
                    tag = _unescape(_args(rest)[0])
                    if tag not in ("•", "*", "-", ""):
                        para.append(tag)
            elif request == "TS":
                flush()
                in_table, table_rows = True, False
            elif request in ("UR", "MT"):
                pass  # the link's text follows; its address is not note text
            # every other request (.TH .ad .na .nh .hy .ne .ft .ds .de .UE .ME .ME .PD …): nothing to keep
            continue
        para.append(_unescape(line))
    flush()
    # NAME: "ls, dir, vdir \- list directory contents"
    for level, heading, paras in page.sections:
        if level == 2 and heading.upper() in NAME_SECTIONS and paras:
            names, sep, desc = " ".join(paras).partition(" - ")
            if not sep:
                names, sep, desc = " ".join(paras).partition(" — ")
            page.names, page.description = names.strip(), desc.strip()
            break
    return page


def to_markdown(page: Page, lang: str, stem: str, license_: str) -> str:
    """The note: frontmatter (title, page, lang, licence), then the sections after NAME up to ``MAX_BODY``
    characters (cut at a paragraph), without the after-matter."""
    out: list[str] = []
    size = 0
    for level, heading, paras in page.sections:
        if heading.upper() in NAME_SECTIONS or heading.upper() in AFTER_MATTER:
            continue
        block = [f"{'#' * level} {heading}"]
        block += [re.sub(r"^#", r"\\#", text) for text in paras]  # text, not a heading
        for piece in block:
            if size + len(piece) > MAX_BODY and size > 0:
                break
            out.append(piece)
            size += len(piece) + 2
        else:
            continue
        break
    while out and out[-1].startswith("#"):  # a heading the cut left without text
        out.pop()
    meta = {"title": page.names, "page": stem, "lang": lang, "license": license_}
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=1000)
    return f"---\n{front}---\n\n" + "\n\n".join(out) + "\n"


# -- the corpus ------------------------------------------------------------------------------------------------------
def _rank(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8"), usedforsecurity=False).hexdigest()


def _pages(members: dict[str, bytes], prefix: str) -> dict[str, str]:
    """``man7/signal.7`` → the page's roff source, for the gzipped pages under ``prefix``."""
    out = {}
    for path, data in members.items():
        m = re.fullmatch(re.escape(prefix) + r"(man\d/[^/]+\.\d\w*)\.gz", path)
        if m:
            out[m.group(1)] = gzip.decompress(data).decode("utf-8", errors="replace")
    return out


def build_corpus(debs: Path) -> dict[str, str]:
    """``en/signal.7.md`` / ``ru/signal.7.md`` → the note's text, and ``descriptions.yaml`` (page → (en, ru))."""
    for package, filename in DEBS.items():
        if not (debs / filename).is_file():
            raise FileNotFoundError(f"{debs / filename} is missing (apt-get download {package})")
    ru = _pages(deb_members(debs / DEBS["manpages-ru"]), "usr/share/man/ru/")
    en: dict[str, str] = {}
    for package in ("manpages", "coreutils"):
        en |= _pages(deb_members(debs / DEBS[package]), "usr/share/man/")
    pairs = []
    for key in sorted(set(ru) & set(en)):
        pr, pe = parse_roff(ru[key]), parse_roff(en[key])
        if pr.redirect or pe.redirect or not (pr.description and pe.description and pr.names and pe.names):
            continue
        if len(pe.description.split()) < 2 or len(pr.description.split()) < 2:
            continue
        pairs.append((key, pe, pr))
    pairs = sorted(pairs, key=lambda p: _rank(p[0]))[:PAIRS]
    files: dict[str, str] = {}
    descriptions: dict[str, dict[str, str]] = {}
    for key, pe, pr in sorted(pairs, key=lambda p: p[0]):
        stem = key.split("/", 1)[1]
        en_licence = pe.license or ("GPL-3.0-or-later" if key in ("man1/ls.1", "man1/cat.1", "man1/dir.1",
                                                                   "man1/vdir.1") else "see the page's source")  # fmt: skip
        files[f"en/{stem}.md"] = to_markdown(pe, "en", stem, en_licence)
        files[f"ru/{stem}.md"] = to_markdown(pr, "ru", stem, f"GPL-3.0-or-later (translation); {en_licence}")
        descriptions[stem] = {"en": pe.description, "ru": pr.description}
    files["descriptions.yaml"] = (
        "# page → its NAME line's description in each language (removed from the notes): the describe and cross\n"
        "# classes' queries. Made by eval/make_man_corpus.py.\n"
        + yaml.safe_dump(descriptions, allow_unicode=True, sort_keys=True, width=1000)
    )
    return files


# -- the query classes -----------------------------------------------------------------------------------------------
_IDENTS = (
    re.compile(r"(?<![\w-])--[a-z][a-z0-9]+(?:-[a-z0-9]+)+"),  # a long option with a dash inside
    re.compile(r"(?<![\w/])/(?:etc|dev|proc|sys|usr|var|run|lib|tmp|bin|sbin|boot|home)/[\w.+-]+(?:/[\w.+-]+)*(?<!\.)"),
    re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]\b"),  # O_CLOEXEC, LD_LIBRARY_PATH
    re.compile(r"\b[a-z_][a-z0-9_]{3,}(?=\(\))"),  # sigaction()
    re.compile(r"(?<![\w.])\d{3,}(?![\w.])"),  # 1024, 65535
)
_WORD = re.compile(r"(?<!\w)[^\W\d_]{6,}(?!\w)", re.UNICODE)
_CYR = re.compile(r"[А-Яа-яЁё]")


def _notes(half: Path) -> dict[str, str]:
    """path (relative to the half) → the text kb-search indexes of it (title and body)."""
    out = {}
    for path in sorted(half.glob("*.md")):
        raw = path.read_bytes()
        _, body = split_frontmatter(raw.decode("utf-8"))
        out[path.name] = f"{parse_note(path.name, raw).title}\n{body}"
    return out


def man_identifiers(rel: str, body: str) -> list[str]:
    """The identifiers a man page's body holds (options, paths, constants, functions, numbers)."""
    return sorted({m.group(0) for p in _IDENTS for m in p.finditer(body)})


def known_items(
    half: Path, lang: str, find: Callable[[str, str], list[str]] = man_identifiers
) -> list[dict[str, object]]:
    """One known-item query a note (when one makes it): an identifier ``find`` gives for the note (its file name and
    body), rare in the half, alone or with a rare word of the note's language; labelled with every note holding all
    its terms, at most ``MAX_RELEVANT``."""
    notes = _notes(half)
    terms = {rel: set(tokenize(text)) for rel, text in notes.items()}
    df: dict[str, int] = {}
    for ts in terms.values():
        for t in ts:
            df[t] = df.get(t, 0) + 1

    def relevant(query: str) -> list[str]:
        wanted = set(tokenize(query))
        return sorted(rel for rel, ts in terms.items() if wanted and wanted <= ts)

    def rare(token: str) -> bool:  # one of its terms in at most 2 notes (O_CLOEXEC: "o" is everywhere)
        ts = set(tokenize(token))
        return bool(ts) and min(df.get(t, 0) for t in ts) <= 2

    items: list[dict[str, object]] = []
    for n, rel in enumerate(sorted(notes, key=_rank)):
        body = notes[rel].split("\n", 1)[1]
        idents = find(rel, body)
        idents = [i for i in idents if rare(i) and len(tokenize(i)) <= 3]
        words = sorted({w for w in _WORD.findall(body) if bool(_CYR.search(w)) == (lang == "ru")})
        words = [w for w in words if rare(w)]
        word = min(words, key=lambda w: _rank(rel + w)) if words else None
        for ident in sorted(idents, key=lambda i: _rank(rel + i)):  # the first identifier that makes a query
            forms = [("identifier", [ident]), ("identifier+word", [ident, word] if word else [])]
            forms = forms[n % 2 :] + forms[: n % 2]  # alternate, so that the set mixes the forms
            kind, parts = next((k, p) for k, p in forms if p)
            query = " ".join(parts)
            rel_notes = relevant(query)
            if rel in rel_notes and len(rel_notes) <= MAX_RELEVANT:
                items.append({"query": query, "kind": kind, "relevant": rel_notes})
                break
    return items


def described(descriptions: dict[str, dict[str, str]], lang: str, over: str) -> list[dict[str, object]]:
    """Each distinct description in ``lang`` → every page of that description, as ``over``'s notes."""
    pages: dict[str, list[str]] = {}
    for stem in sorted(descriptions):
        pages.setdefault(descriptions[stem][lang], []).append(f"{stem}.md")
    kind = "describe" if lang == over else "cross"
    return [{"query": text, "kind": kind, "relevant": rels} for text, rels in pages.items()]


def query_sets(corpus: Path) -> dict[str, list[dict[str, object]]]:
    descriptions = yaml.safe_load((corpus / "descriptions.yaml").read_text(encoding="utf-8"))
    sets: dict[str, list[dict[str, object]]] = {}
    for lang in ("en", "ru"):
        sets[f"man-known-item-{lang}"] = known_items(corpus / lang, lang)
    for lang in ("en", "ru"):
        for over in ("en", "ru"):
            name = f"man-describe-{lang}" if lang == over else f"man-cross-{lang}-to-{over}"
            sets[name] = described(descriptions, lang, over)
    return sets


def write_corpus(out: Path, files: dict[str, str]) -> None:
    """The built files under ``out``, its ``en/`` and ``ru/`` halves replaced (a page no longer built is gone)."""
    for half in ("en", "ru"):
        shutil.rmtree(out / half, ignore_errors=True)
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def write_manifest(path: Path, header: str, entries: list[dict[str, str]]) -> None:
    """A ``--classes`` manifest: the entries sorted by corpus, then class."""
    entries = sorted(entries, key=lambda m: (m["corpus"], m["class"]))
    path.write_text(header + yaml.safe_dump(entries, sort_keys=False), encoding="utf-8")


def main() -> int:
    debs = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DEBS
    files = build_corpus(debs)
    write_corpus(OUT, files)
    queries = OUT / "queries"
    queries.mkdir(exist_ok=True)
    manifest = []
    for name, items in query_sets(OUT).items():
        over = name[-2:]
        header = f"# {len(items)} queries ({name}) over eval/man/{over}/, made by eval/make_man_corpus.py.\n"
        text = header + yaml.safe_dump(items, allow_unicode=True, sort_keys=False, width=1000)
        (queries / f"{name}.yaml").write_text(text, encoding="utf-8")
        entry = {"class": name, "corpus": f"eval/man/{over}", "queries": f"eval/man/queries/{name}.yaml"}
        manifest.append(entry)
        print(f"{name}: {len(items)} queries")
    header = (
        "# The man-page classes (a second corpus, not tuned on): `kbsearch eval --classes eval/classes-man.yaml`.\n"
        "# Made by eval/make_man_corpus.py from Debian's manpages-ru 4.18.1, manpages 6.03 and coreutils 9.1.\n"
    )
    write_manifest(HERE / "classes-man.yaml", header, manifest)
    print(f"{sum(1 for r in files if r.startswith('en/'))} page pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
