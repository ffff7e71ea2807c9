"""Build a KB *written* in two languages from the Obsidian help vault, and its query classes (issue 19, session 33).

Every other corpus of eval/ is a translated help set: both languages of the same pages, or one language with some
pages left untranslated. A company KB is authored in two languages: a topic exists in Russian only or in English
only, and people ask in either. This script makes that shape from the vault (../shared/kb/obsidian-help): for each
of its 173 pages (the ``en/`` and ``ru/`` halves paired by frontmatter ``permalink``) it keeps the Russian or the
English version, never both, alternately in the order of sha1("bil:" + permalink) (87 Russian, 86 English), at the
page's own path in its half (so a page's chunks embed exactly the text they embed in the vault: the oracle caches
already hold them). The KB is written to ``.kbsearch/bil/`` (gitignored: the vault is not copied into the
repository); the query sets to ``eval/bil/`` and the manifest to ``eval/classes-bil.yaml`` (committed).

The classes, all over the one bilingual KB (labels: paths in it):

- ``known-item-en`` / ``-ru``: make_query_sets's known items (an identifier, a name, a name and a rare word, two
  rare words), one from each page of that language, rare in the whole KB and labelled with every note of the KB
  holding every term (either language), so the labels are correct by construction;
- ``title-en`` / ``-ru``: each page's own title, asked in its language (the page is the answer); where dense's
  first note is in the other language, the shape rev32d left untested;
- ``title-en-to-ru`` / ``title-ru-to-en``: the other half's title of a page the KB holds in one language only (the
  English title of a Russian page…);
- ``question-en`` / ``-ru``: eval/obsidian-help-questions.yaml's hand-written items (questions, paraphrases, long,
  detail) whose answer page is in the question's language; ``cross-en-to-ru`` / ``cross-ru-to-en``: the same
  items where it is not (labels: every answering page, in whichever language the KB holds it);
- ``code-en`` / ``-ru``: eval/obsidian-help-codes.yaml, questions naming a code or an acronym in passing ("PDF",
  "AES-256", "ISO 8601"), every item in both languages; kind ``same`` or ``across`` by the answer's language.

    .venv/bin/python eval/make_bilingual.py [VAULT]
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_query_sets import HAND_KINDS, _notes, known_items_in

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_VAULT = ROOT.parent / "shared" / "kb" / "obsidian-help"
KB = ".kbsearch/bil"  # the KB this builds, from the repository root
SETS = HERE / "bil"
LANGS = ("en", "ru")
#: the classes holding the same items in the other language, in the same order (both built from one list of pages
#: or items, kept in one language): what the ``expanded`` phase's oracle answers as a query's translation
_PAIRS = (("question-en", "cross-ru-to-en"), ("question-ru", "cross-en-to-ru"), ("title-en", "title-ru-to-en"),
          ("title-ru", "title-en-to-ru"), ("code-en", "code-ru"))  # fmt: skip
PARALLEL = {a: b for pair in _PAIRS for a, b in (pair, pair[::-1])}


def choose(vault: Path) -> dict[str, tuple[str, str]]:
    """permalink → (the language kept, the page's path in that half): alternately Russian and English in the
    order of sha1("bil:" + permalink)."""
    halves = {lang: {pl: rel for rel, (pl, _, _) in _notes(vault / lang).items()} for lang in LANGS}
    if set(halves["en"]) != set(halves["ru"]) or "" in halves["en"]:
        raise SystemExit(f"{vault}: the halves are not the same pages paired by permalink")
    order = sorted(halves["en"], key=lambda pl: hashlib.sha1(f"bil:{pl}".encode(), usedforsecurity=False).hexdigest())
    return {pl: (lang, halves[lang][pl]) for n, pl in enumerate(order) for lang in [("ru", "en")[n % 2]]}


def build_kb(vault: Path, out: Path) -> dict[str, str]:
    """Write the bilingual KB into ``out`` (emptied first); path → its language."""
    chosen = choose(vault)
    if out.exists():
        shutil.rmtree(out)
    languages: dict[str, str] = {}
    for lang, rel in chosen.values():
        if rel in languages:
            raise SystemExit(f"{rel}: two pages at one path")
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((vault / lang / rel).read_bytes())
        languages[rel] = lang
    return languages


def query_sets(vault: Path, kb: Path, languages: dict[str, str]) -> dict[str, list[dict[str, object]]]:
    chosen = choose(vault)
    notes = _notes(kb)
    sets: dict[str, list[dict[str, object]]] = {}
    for lang in LANGS:
        sets[f"known-item-{lang}"] = known_items_in(notes, lang, {r for r, lg in languages.items() if lg == lang})
    titles = {lang: {pl: title for pl, title, _ in _notes(vault / lang).values()} for lang in LANGS}
    for lang in LANGS:
        own, across = [], []
        for pl, (kept, rel) in sorted(chosen.items(), key=lambda item: item[1][1]):
            if kept == lang:
                own.append({"query": titles[lang][pl], "kind": "title", "relevant": [rel]})
            else:
                across.append({"query": titles[lang][pl], "kind": "title", "relevant": [rel]})
        other = "ru" if lang == "en" else "en"
        sets[f"title-{lang}"] = _unique(own)
        sets[f"title-{lang}-to-{other}"] = _unique(across)
    hand = yaml.safe_load((HERE / "obsidian-help-questions.yaml").read_text(encoding="utf-8"))
    for item in hand:
        if item["kind"] not in HAND_KINDS:
            raise ValueError(f"unknown kind {item['kind']!r}: {item['en']}")
        answer = chosen[item["relevant"][0]][0]
        relevant = [chosen[pl][1] for pl in item["relevant"]]
        for lang in LANGS:
            name = f"question-{lang}" if answer == lang else f"cross-{lang}-to-{answer}"
            sets.setdefault(name, []).append({"query": item[lang], "kind": item["kind"], "relevant": relevant})
    codes = yaml.safe_load((HERE / "obsidian-help-codes.yaml").read_text(encoding="utf-8"))
    for item in codes:
        answer = chosen[item["relevant"][0]][0]
        relevant = [chosen[pl][1] for pl in item["relevant"]]
        for lang in LANGS:
            kind = "same" if answer == lang else "across"
            sets.setdefault(f"code-{lang}", []).append({"query": item[lang], "kind": kind, "relevant": relevant})
    return sets


def paired_names(corpus: Path) -> list[str]:
    """The file names of ``corpus``'s pages, the same in its ``en/`` and ``ru/`` halves (else SystemExit)."""
    halves = {lang: sorted(p.name for p in (corpus / lang).glob("*.md")) for lang in LANGS}
    if halves["en"] != halves["ru"] or not halves["en"]:
        raise SystemExit(f"{corpus}: the halves are not the same pages paired by file name")
    return halves["en"]


def titles(corpus: Path) -> dict[str, dict[str, str]]:
    """language → page file name → its title, over ``corpus``'s ``en/`` and ``ru/`` halves."""
    return {lang: {rel: title for rel, (_, title, _) in _notes(corpus / lang).items()} for lang in LANGS}


def counted(kb: str, chosen: dict[str, str]) -> str:
    """``<kb>: N Russian and M English pages``."""
    return (f"{kb}: {sum(1 for lg in chosen.values() if lg == 'ru')} Russian and "
            f"{sum(1 for lg in chosen.values() if lg == 'en')} English pages")  # fmt: skip


def alternate(names: list[str], salt: str) -> dict[str, str]:
    """name → the language kept: alternately Russian and English in the order of sha1(salt + ":" + name)."""
    order = sorted(names, key=lambda n: hashlib.sha1(f"{salt}:{n}".encode(), usedforsecurity=False).hexdigest())
    return {name: ("ru", "en")[n % 2] for n, name in enumerate(order)}


def copy_pages(corpus: Path, out: Path, chosen: dict[str, str]) -> dict[str, str]:
    """Write each page of ``chosen`` (file name → language) into ``out`` (emptied first) with the bytes of
    ``corpus/<language>/<name>``; returns ``chosen``."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name, lang in chosen.items():
        (out / name).write_bytes((corpus / lang / name).read_bytes())
    return chosen


def other(lang: str) -> str:
    return "ru" if lang == "en" else "en"


def paired_sets(
    kb: Path,
    chosen: dict[str, str],
    asked: dict[str, dict[str, dict[str, str]]],
    questions: dict[str, list[dict[str, object]]],
) -> dict[str, list[dict[str, object]]]:
    """The classes over a KB of pages paired by file name (``chosen``: name → the language kept): known items of each language; for each ``asked`` kind (kind → language → page →
    its text in that language) the page's text in its own language (``<kind>-<lang>``) and in the other
    (``<kind>-<lang>-to-<other>``); the hand-written ``questions`` (language → items, labels file names) by the
    language their first answering page is kept in (``question-<lang>`` or ``cross-<lang>-to-<other>``)."""
    notes = _notes(kb)
    sets: dict[str, list[dict[str, object]]] = {}
    for lang in LANGS:
        sets[f"known-item-{lang}"] = known_items_in(notes, lang, {n for n, lg in chosen.items() if lg == lang})
    for lang in LANGS:
        for kind, texts in asked.items():
            text = texts[lang]
            own = [{"query": text[n], "kind": kind, "relevant": [n]} for n in sorted(chosen) if chosen[n] == lang]
            across = [{"query": text[n], "kind": kind, "relevant": [n]} for n in sorted(chosen) if chosen[n] != lang]
            sets[f"{kind}-{lang}"] = _unique(own)
            sets[f"{kind}-{lang}-to-{other(lang)}"] = _unique(across)
    for lang in LANGS:
        for item in questions[lang]:
            answer = chosen[str(item["relevant"][0])]  # type: ignore[index]
            name = f"question-{lang}" if answer == lang else f"cross-{lang}-to-{answer}"
            sets.setdefault(name, []).append({"query": item["query"], "kind": item["kind"],
                                              "relevant": list(item["relevant"])})  # type: ignore[call-overload]  # fmt: skip
    return sets


def _unique(items: list[dict[str, object]]) -> list[dict[str, object]]:
    """Titles asked once: a title two pages share (none in the vault today) would have two answers."""
    count: dict[object, int] = {}
    for item in items:
        count[item["query"]] = count.get(item["query"], 0) + 1
    return [item for item in items if count[item["query"]] == 1]


def write_sets(
    sets: dict[str, list[dict[str, object]]],
    kb: str,
    out: Path,
    listing: Path,
    script: str,
    header: str,
    parallel: dict[str, str] | None = None,
) -> None:
    """Each class's set into ``out`` (``<class>.yaml``, a header line naming its KB and ``script``) and the manifest
    ``listing`` (``header`` first; a class's ``parallel`` where ``parallel`` names one)."""
    out.mkdir(exist_ok=True)
    manifest = []
    for name, items in sets.items():
        path = out / f"{name}.yaml"
        line = f"# {len(items)} queries ({name}) over the bilingual KB {kb}, made by {script}.\n"
        path.write_text(line + yaml.safe_dump(items, allow_unicode=True, sort_keys=False, width=1000), "utf-8")
        entry = {"class": name, "corpus": kb, "queries": path.relative_to(ROOT).as_posix()}
        if parallel and name in parallel:  # the same items in the other language, in the same order (expanded phase)
            entry["parallel"] = parallel[name]
        manifest.append(entry)
        print(f"{path.relative_to(HERE)}: {len(items)} queries")
    listing.write_text(header + yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False), "utf-8")


def write_kept(
    every: dict[str, list[dict[str, object]]],
    minimum: int,
    kb: str,
    out: Path,
    listing: Path,
    script: str,
    header: str,
) -> None:
    """:func:`write_sets` for the classes of ``every`` with ``minimum`` queries or more; each other class is named as
    dropped (a held-out KB's small classes: make_bilingual_gimp.py, make_bilingual_apps.py)."""
    for name, items in every.items():
        if len(items) < minimum:
            print(f"{name}: {len(items)} queries, under {minimum}: dropped")
    write_sets({n: items for n, items in every.items() if len(items) >= minimum}, kb, out, listing, script, header)


def main() -> int:
    vault = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_VAULT
    languages = build_kb(vault, ROOT / KB)
    print(f"{KB}: {sum(1 for lg in languages.values() if lg == 'ru')} Russian and "
          f"{sum(1 for lg in languages.values() if lg == 'en')} English pages")  # fmt: skip
    header = (
        "# The query classes over a KB written in two languages (issue 19, session 33): each page of the Obsidian\n"
        "# help vault in Russian or in English, never both. Build the KB first (it is not committed):\n"
        "#   .venv/bin/python eval/make_bilingual.py        # writes .kbsearch/bil/, eval/bil/, this file\n"
        "# then `kbsearch eval --classes eval/classes-bil.yaml` (make eval-bil). Made by eval/make_bilingual.py.\n"
    )
    sets = query_sets(vault, ROOT / KB, languages)
    write_sets(sets, KB, SETS, HERE / "classes-bil.yaml", "eval/make_bilingual.py", header, PARALLEL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
