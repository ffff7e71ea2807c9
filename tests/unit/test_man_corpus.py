"""The committed man-page corpus (eval/man/) and its query classes (eval/classes-man.yaml): labels that name notes
that exist, known items held by every note they name, no NAME section left in a note, and exactly what
eval/make_man_corpus.py builds from the three .deb files (that check skips when the .deb files are not here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from kbsearch.lexical import tokenize
from kbsearch_tools.evaluate import load_classes
from kbsearch_tools.metrics import load_queries
from tests.conftest import ROOT

MANIFEST = ROOT / "eval" / "classes-man.yaml"
CORPUS = ROOT / "eval" / "man"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_man_corpus", ROOT / "eval" / "make_man_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_man_corpus"] = module
    spec.loader.exec_module(module)
    return module


def _manifest() -> list[dict[str, str]]:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


def test_the_eval_reads_every_man_class_and_each_is_big_enough() -> None:
    classes, skipped = load_classes(MANIFEST, ROOT)
    assert not skipped
    names = {c.name for c in classes}
    assert names == {f"man-{k}" for k in ("known-item-en", "known-item-ru", "describe-en", "describe-ru",
                                          "cross-en-to-ru", "cross-ru-to-en")}  # fmt: skip
    for c in classes:
        assert len(c.queries) >= 100, c.name


def assert_labels_hold(manifest: list[dict[str, str]]) -> None:
    """Every query of a manifest's classes names notes that exist; a known item's notes hold all its terms."""
    for m in manifest:
        corpus = ROOT / m["corpus"]
        for q in load_queries(ROOT / m["queries"]):
            assert q.relevant, (m["class"], q.query)
            for path in q.relevant:
                assert (corpus / path).is_file(), (m["class"], path)
            if "known-item" in m["class"]:
                terms = set(tokenize(q.query))
                for path in q.relevant:  # every relevant note holds every term of the query
                    assert terms <= set(tokenize((corpus / path).read_text(encoding="utf-8"))), (q.query, path)


def test_man_labels_name_existing_notes_and_known_items_are_in_them() -> None:
    assert_labels_hold(_manifest())


def test_man_notes_are_paired_and_hold_no_name_section() -> None:
    en, ru = ({p.name for p in (CORPUS / half).glob("*.md")} for half in ("en", "ru"))
    assert en == ru and len(en) >= 150
    descriptions = yaml.safe_load((CORPUS / "descriptions.yaml").read_text(encoding="utf-8"))
    assert {f"{stem}.md" for stem in descriptions} == en
    for half in ("en", "ru"):
        for path in (CORPUS / half).glob("*.md"):
            text = path.read_text(encoding="utf-8")
            assert "\n## NAME\n" not in text and "\n## ИМЯ\n" not in text, path
            assert "\nlicense: " in text, path


def test_man_describe_queries_are_the_descriptions_and_label_every_page_of_one() -> None:
    descriptions = yaml.safe_load((CORPUS / "descriptions.yaml").read_text(encoding="utf-8"))
    sets = {m["class"]: load_queries(ROOT / m["queries"]) for m in _manifest()}
    for lang, other in (("en", "ru"), ("ru", "en")):
        for name in (f"man-describe-{lang}", f"man-cross-{lang}-to-{other}"):
            for q in sets[name]:
                assert q.relevant == {f"{s}.md" for s, d in descriptions.items() if d[lang] == q.query}, q.query


def test_the_man_corpus_is_what_the_script_builds() -> None:
    module = _script()
    debs = Path(module.DEFAULT_DEBS)
    if not all((debs / name).is_file() for name in module.DEBS.values()):
        pytest.skip(f"the .deb files are not in {debs} (apt-get download manpages-ru manpages coreutils)")
    assert_committed_is_built(module, CORPUS, module.build_corpus(debs), "descriptions.yaml")


def assert_committed_is_built(module: ModuleType, corpus: Path, built: dict[str, str], meta: str) -> None:
    """The committed notes (``en/``, ``ru/``), the ``meta`` file beside them and the generated query sets are what
    the script (``module``) builds."""
    committed = {p.relative_to(corpus).as_posix(): p.read_text(encoding="utf-8")
                 for p in corpus.rglob("*") if p.is_file() and p.parent.name in ("en", "ru")}  # fmt: skip
    committed[meta] = (corpus / meta).read_text(encoding="utf-8")
    assert set(built) == set(committed)
    for rel, text in built.items():
        assert committed[rel] == text, rel
    for name, items in module.query_sets(corpus).items():
        on_disk = yaml.safe_load((corpus / "queries" / f"{name}.yaml").read_text(encoding="utf-8"))
        assert on_disk == items, name
