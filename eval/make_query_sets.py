"""Build the per-class query sets over the Obsidian help vault (../shared/kb/obsidian-help) into eval/classes/.

Two sources:

- **known item** (generated here, deterministically): for every note of a half, 1-3 tokens taken from the note
  itself — an identifier (a code span, a word with digits, ``_``, ``.``, ``:`` or inner capitals: ``date_modify``,
  ``app.json``, ``Ctrl``), a name (a capitalised word inside a sentence), a name and a rare word, or (when nothing else fits)
  two rare words of the half's language — that few notes contain. The relevant notes
  are exactly the notes that contain every term of the query (after kb-search's own tokenizer: lower case, stop words,
  Snowball stems), so the labels are correct by construction. Queries matching more than 3 notes are dropped.
- **questions** (``eval/obsidian-help-questions.yaml``, written by hand in English and Russian with the same meaning,
  labelled by frontmatter permalink): plain questions, paraphrases, questions about one section of a long note, and
  questions about one fact stated in a page's body (``detail``). Each kind makes its own class per language (its
  own language over its own half: ``question-en``, ``detail-ru``…), and every item is also used across languages
  over the other half (``cross-en-to-ru``, ``cross-ru-to-en``: all the kinds together).

``eval/classes.yaml`` (the manifest ``kbsearch eval --classes`` reads) names each class's corpus and query file.

    .venv/bin/python eval/make_query_sets.py [VAULT]
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import yaml

from kbsearch.lexical import tokenize
from kbsearch.notes import parse_note, split_frontmatter

HERE = Path(__file__).resolve().parent
DEFAULT_VAULT = HERE.parent.parent / "shared" / "kb" / "obsidian-help"
OUT = HERE / "classes"
MAX_RELEVANT = 3
CORPUS = "../shared/kb/obsidian-help"  # the vault, from the repository root

_CODE = re.compile(r"`([^`\n]{3,40})`")
_WORD = re.compile(r"[^\W_](?:[\w.:/+-]*[^\W_])?", re.UNICODE)
_IDENT = re.compile(r"\d|_|[a-z][A-Z]|[.:/+]\w")
_CLEAN = re.compile(r"^[\w.:/+#-]+$")
#: a capitalised word after a lower-case one (not the start of a sentence): a name
_NAME = re.compile(r"(?<=[a-zа-яё,] )([A-ZА-ЯЁ][\w-]{3,})")
_CYR = re.compile(r"[А-Яа-яЁё]")
_LAT = re.compile(r"[A-Za-z]")
#: the kinds of eval/obsidian-help-questions.yaml: one same-language class per kind and language
HAND_KINDS = ("question", "paraphrase", "long", "detail")


def _notes(half: Path) -> dict[str, tuple[str, str, str]]:
    """path (relative to the half) → (permalink, title, body text)."""
    out: dict[str, tuple[str, str, str]] = {}
    for path in sorted(half.rglob("*.md")):
        rel = path.relative_to(half).as_posix()
        raw = path.read_bytes()
        meta, body = split_frontmatter(raw.decode("utf-8-sig"))
        permalink = meta.get("permalink") if isinstance(meta, dict) else None
        out[rel] = (str(permalink or ""), parse_note(rel, raw).title, body)
    return out


def _rank(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8"), usedforsecurity=False).hexdigest()


def known_items(half: Path, language: str) -> list[dict[str, object]]:
    return known_items_in(_notes(half), language)


def known_items_in(
    notes: dict[str, tuple[str, str, str]], language: str, sources: set[str] | None = None
) -> list[dict[str, object]]:
    """The known items of ``notes`` (path → permalink, title, body): one from each note of ``sources`` (every
    note when None), its terms rare in and its labels drawn from every note (a KB written in two languages:
    eval/make_bilingual.py)."""
    terms = {rel: set(tokenize(f"{title}\n{body}")) for rel, (_, title, body) in notes.items()}
    df: dict[str, int] = {}
    for ts in terms.values():
        for t in ts:
            df[t] = df.get(t, 0) + 1
    script = _CYR if language == "ru" else _LAT

    def relevant(query: str) -> list[str]:
        wanted = set(tokenize(query))
        return sorted(rel for rel, ts in terms.items() if wanted and wanted <= ts)

    def rare(token: str) -> bool:
        ts = set(tokenize(token))
        return bool(ts) and all(df.get(t, 0) <= 2 for t in ts)

    items: list[dict[str, object]] = []
    for n, rel in enumerate(sorted(notes if sources is None else sources, key=_rank)):
        _, _, body = notes[rel]
        text = re.sub(r"\[\[[^\]]*\]\]|\]\([^)]*\)|https?://\S+", " ", body)  # link targets are not note text
        idents = sorted({m.group(1).strip() for m in _CODE.finditer(text) if _CLEAN.match(m.group(1).strip())} |
                        {w for w in _WORD.findall(text) if _IDENT.search(w) and len(w) >= 3})  # fmt: skip
        idents = [i for i in idents if rare(i) and len(tokenize(i)) <= 3]
        names = sorted({m.group(1) for m in _NAME.finditer(text) if not _IDENT.search(m.group(1))})
        names = [w for w in names if rare(w)]
        words = sorted({w for w in _WORD.findall(text) if len(w) >= 6 and not _IDENT.search(w) and script.search(w)
                        and not (_CYR.search(w) and _LAT.search(w))})  # fmt: skip
        words = [w for w in words if rare(w) and w not in names]
        ident = min(idents, key=lambda i: _rank(rel + i)) if idents else None
        name = min(names, key=lambda i: _rank(rel + i)) if names else None
        word = min(words, key=lambda w: _rank(rel + w)) if words else None
        pair = sorted(words, key=lambda w: _rank(rel + w))[:2]
        forms = [("identifier", [ident] if ident else []), ("name", [name] if name else []),
                 ("name+word", [name, word] if name and word else []),
                 ("identifier+word", [ident, word] if ident and word else [])]  # fmt: skip
        forms = forms[n % 4 :] + forms[: n % 4]  # rotate, so that the set mixes the forms
        forms.append(("words", pair if len(pair) == 2 else []))  # two rare words: only when nothing else fits
        for kind, parts in forms:
            if not parts:
                continue
            query = " ".join(parts)
            rel_notes = relevant(query)
            if rel in rel_notes and len(rel_notes) <= MAX_RELEVANT:
                items.append({"query": query, "kind": kind, "relevant": rel_notes})
                break
    return items


def questions(vault: Path) -> dict[str, list[dict[str, object]]]:
    halves = {lang: {pl: rel for rel, (pl, _, _) in _notes(vault / lang).items() if pl} for lang in ("en", "ru")}
    source = yaml.safe_load((HERE / "obsidian-help-questions.yaml").read_text(encoding="utf-8"))
    sets: dict[str, list[dict[str, object]]] = {}
    for item in source:
        if item["kind"] not in HAND_KINDS:
            raise ValueError(f"unknown kind {item['kind']!r} (not one of {', '.join(HAND_KINDS)}): {item['en']}")
        for lang in ("en", "ru"):
            for over in ("en", "ru"):
                name = f"{item['kind']}-{lang}" if lang == over else f"cross-{lang}-to-{over}"
                relevant = [halves[over][pl] for pl in item["relevant"]]
                sets.setdefault(name, []).append({"query": item[lang], "kind": item["kind"], "relevant": relevant})
    return sets


def main() -> int:
    vault = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_VAULT
    OUT.mkdir(exist_ok=True)
    sets = {f"known-item-{lang}": known_items(vault / lang, lang) for lang in ("ru", "en")} | questions(vault)
    manifest = []
    for name, items in sets.items():
        over = name.rsplit("-", 1)[1] if name.startswith(("known", *HAND_KINDS)) else name[-2:]
        out = OUT / f"{name}.yaml"
        header = f"# {len(items)} queries ({name}) over obsidian-help/{over}/, made by eval/make_query_sets.py.\n"
        out.write_text(header + yaml.safe_dump(items, allow_unicode=True, sort_keys=False, width=1000), "utf-8")
        entry = {"class": name, "corpus": f"{CORPUS}/{over}", "queries": f"eval/classes/{name}.yaml"}
        kind = name.rsplit("-", 1)[0]
        if kind in HAND_KINDS:  # made from one list of pairs: query i translates query i
            entry["parallel"] = f"{kind}-{'ru' if over == 'en' else 'en'}"
        manifest.append(entry)
        print(f"{out.relative_to(HERE)}: {len(items)} queries")
    manifest.append({"class": "sample-kb", "corpus": "sample-kb", "queries": "eval/sample-kb-queries.yaml"})
    manifest.sort(key=lambda m: (m["corpus"], m["class"]))
    header = (
        "# The query classes `kbsearch eval --classes eval/classes.yaml` scores, each over its corpus (paths from the\n"
        "# repository root; a corpus that is absent is skipped). Made by eval/make_query_sets.py. `parallel`: the class\n"
        "# holding the same queries in the other language, in the same order (the expanded phase's translations).\n"
    )
    (HERE / "classes.yaml").write_text(header + yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False), "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
