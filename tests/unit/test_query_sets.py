"""The committed per-class query sets (eval/classes/): well formed, big enough to tell 0.005 apart, labels that
point at notes that exist, and exactly what eval/make_query_sets.py builds from the vault (no hand edits)."""

from __future__ import annotations

import collections
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from kbsearch.lexical import tokenize
from kbsearch_tools.metrics import load_queries
from tests.conftest import ROOT, VAULT

MANIFEST = ROOT / "eval" / "classes.yaml"


def _manifest() -> list[dict[str, str]]:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


def test_every_class_has_enough_queries_and_a_corpus() -> None:
    classes = {m["class"]: m for m in _manifest()}
    for name in ("known-item-ru", "known-item-en", "question-ru", "question-en", "cross-en-to-ru", "cross-ru-to-en",
                 "long-ru", "long-en", "paraphrase-ru", "paraphrase-en", "detail-ru", "detail-en"):  # fmt: skip
        assert name in classes, name
        assert len(load_queries(ROOT / classes[name]["queries"])) >= 40, name
    for kind in ("question", "paraphrase", "long", "detail"):  # each hand-written class names its translation
        assert classes[f"{kind}-en"].get("parallel") == f"{kind}-ru", kind
        assert classes[f"{kind}-ru"].get("parallel") == f"{kind}-en", kind


def test_hand_written_items_are_whole_pairs_and_details_spread_over_pages() -> None:
    """Every hand-written item's texts whole (an unquoted comma in a flow mapping would end the value and make the
    rest a key of its own); the ``detail`` items at most two a page, and every item's texts used in the sets (own language and
    across)."""
    source = yaml.safe_load((ROOT / "eval" / "obsidian-help-questions.yaml").read_text(encoding="utf-8"))
    for item in source:  # every kind: 26 older items had been cut at their first comma
        assert set(item) == {"kind", "relevant", "en", "ru"}, item
        assert isinstance(item["en"], str) and isinstance(item["ru"], str), item
    details = [item for item in source if item["kind"] == "detail"]
    assert len(details) >= 60
    pages: dict[str, int] = {}
    for item in details:
        assert item["relevant"] and len(item["relevant"]) == len(set(item["relevant"])), item
        pages[item["relevant"][0]] = pages.get(item["relevant"][0], 0) + 1
    assert max(pages.values()) <= 2
    sets = {m["class"]: [q.query for q in load_queries(ROOT / m["queries"])] for m in _manifest()}
    assert sets["detail-en"] == [item["en"] for item in details]
    assert sets["detail-ru"] == [item["ru"] for item in details]
    assert sets["cross-en-to-ru"][-len(details) :] == sets["detail-en"]  # across languages too, after the others
    assert sets["cross-ru-to-en"][-len(details) :] == sets["detail-ru"]


@pytest.mark.skipif(not VAULT.is_dir(), reason="shared/kb/obsidian-help is not present")
def _labels_hold(corpus: Path, entry: dict[str, str]) -> None:
    """Every query of a manifest entry's class has labels, each a note of ``corpus``; a known item's relevant notes
    hold every term of the query."""
    for q in load_queries(ROOT / entry["queries"]):
        assert q.relevant, (entry["class"], q.query)
        for path in q.relevant:
            assert (corpus / path).is_file(), (entry["class"], path)
        if entry["class"].startswith("known-item"):
            terms = set(tokenize(q.query))
            for path in q.relevant:  # every relevant note holds every term of the query
                assert terms <= set(tokenize((corpus / path).read_text(encoding="utf-8"))), (q.query, path)


def _paired_kb(tmp_path: Path, script: str, corpus: str, halves: list[int]) -> tuple[object, Path, dict[str, str]]:
    """``eval/<script>.py``'s KB built into ``tmp_path``: each page once, in one language, with the bytes of
    ``eval/<corpus>/<language>/<page>``, ``halves`` (sorted) pages of each language; (module, KB, page → language)."""
    module = _script(script)
    kb = tmp_path / corpus
    chosen = module.build_kb(kb)  # type: ignore[attr-defined]
    assert sorted(chosen) == sorted(p.name for p in kb.glob("*.md"))
    assert sorted(collections.Counter(chosen.values()).values()) == halves
    for name, lang in chosen.items():
        assert (kb / name).read_bytes() == (ROOT / "eval" / corpus / lang / name).read_bytes()
    return module, kb, chosen


def _committed_as_built(listing: str, name: str, kb: Path, built: dict[str, list[object]]) -> None:
    """The manifest ``eval/<listing>`` lists ``built``'s classes in order over the KB ``name``, each committed set is
    the one built, and its labels hold over ``kb``."""
    manifest = yaml.safe_load((ROOT / "eval" / listing).read_text(encoding="utf-8"))
    assert [m["class"] for m in manifest] == list(built)
    for m in manifest:
        assert m["corpus"] == name
        committed = yaml.safe_load((ROOT / m["queries"]).read_text(encoding="utf-8"))
        assert committed == built[m["class"]], m["class"]
        _labels_hold(kb, m)


def test_labels_name_existing_notes_and_known_items_are_in_them() -> None:
    for m in _manifest():
        _labels_hold((ROOT / m["corpus"]).resolve(), m)


@pytest.mark.skipif(not VAULT.is_dir(), reason="shared/kb/obsidian-help is not present")
def test_the_sets_are_what_the_script_builds() -> None:
    spec = importlib.util.spec_from_file_location("make_query_sets", ROOT / "eval" / "make_query_sets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_query_sets"] = module
    spec.loader.exec_module(module)
    built = {f"known-item-{lang}": module.known_items(VAULT / lang, lang) for lang in ("ru", "en")}
    built |= module.questions(VAULT)
    for name, items in built.items():
        committed = yaml.safe_load((ROOT / "eval" / "classes" / f"{name}.yaml").read_text(encoding="utf-8"))
        assert committed == items, name


def _script(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, ROOT / "eval" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not VAULT.is_dir(), reason="shared/kb/obsidian-help is not present")
def test_the_bilingual_kb_holds_each_page_once_and_its_sets_are_what_the_script_builds(tmp_path: Path) -> None:
    """Session 33 (issue 19): the KB written in two languages keeps every page of the vault in Russian or in English,
    never both, about half each; the committed sets (eval/bil/) are what eval/make_bilingual.py builds over it,
    every label names a note of it, and a known item's relevant notes hold every term of the query."""
    module = _script("make_bilingual")
    kb = tmp_path / "bil"
    languages = module.build_kb(VAULT, kb)  # type: ignore[attr-defined]
    assert len(languages) == 173 and sorted(languages) == sorted(p.relative_to(kb).as_posix() for p in kb.rglob("*.md"))
    assert sorted(collections.Counter(languages.values()).values()) == [86, 87]
    chosen = module.choose(VAULT)  # type: ignore[attr-defined]
    for _, (lang, rel) in chosen.items():  # the page's own bytes, from the half it was kept in
        assert (kb / rel).read_bytes() == (VAULT / lang / rel).read_bytes()
    built = module.query_sets(VAULT, kb, languages)  # type: ignore[attr-defined]
    manifest = yaml.safe_load((ROOT / "eval" / "classes-bil.yaml").read_text(encoding="utf-8"))
    assert [m["class"] for m in manifest] == list(built)
    for m in manifest:
        assert m["corpus"] == module.KB  # type: ignore[attr-defined]
        committed = yaml.safe_load((ROOT / m["queries"]).read_text(encoding="utf-8"))
        assert committed == built[m["class"]], m["class"]
        _labels_hold(kb, m)
    for lang, other in (("en", "ru"), ("ru", "en")):  # a title asked in a language the KB holds the page in or not
        assert all(languages[q["relevant"][0]] == lang for q in built[f"title-{lang}"])
        assert all(languages[q["relevant"][0]] == other for q in built[f"title-{lang}-to-{other}"])
        assert all(languages[q["relevant"][0]] == lang for q in built[f"question-{lang}"])
        assert all(languages[q["relevant"][0]] == other for q in built[f"cross-{lang}-to-{other}"])
    for a, b in module.PARALLEL.items():  # type: ignore[attr-defined]  # the same items, the same order
        assert [q["relevant"] for q in built[a]] == [q["relevant"] for q in built[b]], (a, b)
        assert {m["class"]: m.get("parallel") for m in manifest}[a] == b
    codes = yaml.safe_load((ROOT / "eval" / "obsidian-help-codes.yaml").read_text(encoding="utf-8"))
    for item in codes:  # whole pairs (an unquoted comma would cut a value)
        assert set(item) == {"relevant", "en", "ru"} and isinstance(item["en"], str) and isinstance(item["ru"], str)
    assert [q["query"] for q in built["code-en"]] == [item["en"] for item in codes]


def test_the_held_out_bilingual_kb_holds_each_gnome_page_once_and_its_sets_are_what_the_script_builds(
    tmp_path: Path,
) -> None:
    """Session 37 (issue 19, bil37): the second KB written in two languages keeps each of GNOME Help's 243 pages in
    Russian or in English, never both, about half each, with the page's own bytes; the committed sets (eval/bilg/) are
    what eval/make_bilingual_gnome.py builds over it, every label names a note of it, a known item's relevant notes
    hold every term of the query, and each class asks in the language it names for a page in the language it names."""
    module, kb, chosen = _paired_kb(tmp_path, "make_bilingual_gnome", "gnome", [121, 122])
    built = module.query_sets(kb, chosen)  # type: ignore[attr-defined]
    assert len(built) == 14
    _committed_as_built("classes-bilg.yaml", module.KB, kb, built)  # type: ignore[attr-defined]
    for lang, other in (("en", "ru"), ("ru", "en")):
        for own, across in (("title", "title"), ("describe", "describe"), ("question", "cross")):
            assert all(chosen[q["relevant"][0]] == lang for q in built[f"{own}-{lang}"])
            to = f"{across}-{lang}-to-{other}"
            assert built[to] and all(chosen[q["relevant"][0]] == other for q in built[to])


def test_the_third_bilingual_kb_holds_each_gimp_page_once_whose_russian_is_russian_and_its_sets_are_what_the_script_builds(
    tmp_path: Path,
) -> None:
    """Session 38 (issue 19, bil38): the third KB written in two languages, held out, keeps each GIMP page whose
    Russian body is at least half Cyrillic (206 of 260: gimp-help-ru leaves paragraphs in English) in Russian or in
    English, never both, half each, with the page's own bytes; a page whose "Russian" is English is in neither; the
    committed sets (eval/bilgimp/) are what eval/make_bilingual_gimp.py builds over it, no class under 15 queries
    (question-en, 12, is dropped), there is no describe class (GIMP's pages have no <desc>), every label names a note
    of it, and each class asks in the language it names for a page in the language it names."""
    module, kb, chosen = _paired_kb(tmp_path, "make_bilingual_gimp", "gimp", [103, 103])
    share = module.cyrillic_share  # type: ignore[attr-defined]
    for page in (ROOT / "eval" / "gimp").glob("ru/*.md"):
        russian = share(page.read_text(encoding="utf-8").split("\n---\n", 1)[1]) >= 0.5
        assert (page.name in chosen) == russian, page.name
    every = module.every_set(kb, chosen)  # type: ignore[attr-defined]
    built = module.query_sets(kb, chosen)  # type: ignore[attr-defined]
    assert sorted(set(every) - set(built)) == ["question-en"] and len(every["question-en"]) < 15
    assert all(len(items) >= 15 for items in built.values()) and not any("describe" in name for name in built)
    assert len(built) == 9
    _committed_as_built("classes-bilgimp.yaml", module.KB, kb, built)  # type: ignore[attr-defined]
    for lang, other in (("en", "ru"), ("ru", "en")):
        for own, across in (("title", "title"), ("question", "cross")):
            assert all(chosen[q["relevant"][0]] == lang for q in built.get(f"{own}-{lang}", []))
            to = f"{across}-{lang}-to-{other}"
            assert built[to] and all(chosen[q["relevant"][0]] == other for q in built[to])
        cyrillic = [share(str(q["query"])) >= 0.5 for name in (f"title-{lang}", f"title-{lang}-to-{other}")
                    for q in built[name]]  # fmt: skip
        assert all(c == (lang == "ru") for c in cyrillic), lang


def test_the_fourth_bilingual_kb_holds_each_apps_page_once_whose_russian_is_russian_with_describe_classes(
    tmp_path: Path,
) -> None:
    """Session 39 (issue 19, bil39): the fourth KB written in two languages, held out, keeps each page of the GNOME
    applications' help corpus (eval/apps/, 173 pairs) in Russian or in English, never both, half each, with the
    page's own bytes; every Russian page's body, title and <desc> are at least half Cyrillic (untranslated pages are
    not in the corpus); the committed sets (eval/bilapps/) are what eval/make_bilingual_apps.py builds over it, ten
    classes of 15 queries or more with describe-* among them (each asks the page's <desc> from pages.yaml), every
    label names a note of it, and each class asks in the language it names for a page in the language it names."""
    module, kb, chosen = _paired_kb(tmp_path, "make_bilingual_apps", "apps", [86, 87])
    share = module.cyrillic_share  # type: ignore[attr-defined]
    for page in (ROOT / "eval" / "apps").glob("ru/*.md"):
        front, body = page.read_text(encoding="utf-8").split("\n---\n", 1)
        assert share(body) >= 0.5 and share(yaml.safe_load(front.removeprefix("---\n"))["title"]) >= 0.5, page.name
    pages = yaml.safe_load((ROOT / "eval" / "apps" / "pages.yaml").read_text(encoding="utf-8"))
    assert sorted(f"{name}.md" for name in pages) == sorted(chosen)
    assert all(share(p["ru"]) >= 0.5 and share(p["en"]) < 0.5 for p in pages.values())
    built = module.query_sets(kb, chosen)  # type: ignore[attr-defined]
    assert built == module.every_set(kb, chosen)  # type: ignore[attr-defined]  # nothing dropped
    assert len(built) == 10 and all(len(items) >= 15 for items in built.values())
    _committed_as_built("classes-bilapps.yaml", module.KB, kb, built)  # type: ignore[attr-defined]
    for lang, other in (("en", "ru"), ("ru", "en")):
        for kind in ("title", "describe"):
            assert all(chosen[q["relevant"][0]] == lang for q in built[f"{kind}-{lang}"])
            to = f"{kind}-{lang}-to-{other}"
            assert built[to] and all(chosen[q["relevant"][0]] == other for q in built[to])
            asked = [share(str(q["query"])) >= 0.5 for name in (f"{kind}-{lang}", to) for q in built[name]]
            assert all(c == (lang == "ru") for c in asked), (kind, lang)
        for name in (f"describe-{lang}", f"describe-{lang}-to-{other}"):
            assert all(q["query"] == pages[str(q["relevant"][0])[:-3]][lang] for q in built[name])


def test_the_apps_corpus_is_what_the_script_builds_from_the_debian_packages() -> None:
    """eval/apps/ (notes and pages.yaml) is what eval/make_bilingual_apps.py --debs builds from the pinned .deb files
    (skipped where they are not in .kbsearch/debs/)."""
    module = _script("make_bilingual_apps")
    debs = ROOT / ".kbsearch" / "debs"
    missing = [deb for deb in module.DEBS if not (debs / deb).is_file()]  # type: ignore[attr-defined]
    if missing:
        pytest.skip(f"{missing} not in {debs} (apt-get download: eval/make_bilingual_apps.py's docstring)")
    corpus = ROOT / "eval" / "apps"
    built = module.build_corpus(debs)  # type: ignore[attr-defined]
    committed = {p.relative_to(corpus).as_posix(): p.read_text(encoding="utf-8")
                 for p in corpus.glob("[er][nu]/*.md")} | {"pages.yaml": (corpus / "pages.yaml").read_text(encoding="utf-8")}  # fmt: skip
    assert sorted(built) == sorted(committed)
    for rel, text in built.items():
        assert committed[rel] == text, rel
