"""eval/selftest.py (session 30's index-time self-test of the legs): its queries from a corpus's own notes, and the
legs asked through the real indexer, the embedded Qdrant and the loopback embedding fake."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from kbsearch_tools.evaluate import _indexed
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import ROOT, provider_settings


def _selftest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("selftest_under_test", ROOT / "eval" / "selftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NOTES = {
    "backup.md": ("Backup schedule", "Changing the settings", "Nightly copies of the database run at two o'clock."),
    "rename.md": ("Rename a vault", "Changing the settings", "A vault folder is renamed from the vault switcher."),
    "theme.md": ("Dark theme", "Mobile colours", "The mobile app follows the system's dark or light theme."),
}
RU_TITLES = {"backup.md": "Расписание резервных копий", "rename.md": "Переименование хранилища"}


def _corpus(root: Path) -> Path:
    en, ru = root / "en", root / "ru"
    en.mkdir()
    ru.mkdir()
    for name, (title, heading, body) in NOTES.items():
        (en / name).write_text(f"---\ntitle: {title}\n---\n\n{body}\n\n## {heading}\n\n{body}\n", encoding="utf-8")
    for name, title in RU_TITLES.items():
        (ru / name).write_text(f"---\ntitle: {title}\n---\n\nТекст заметки.\n", encoding="utf-8")
    return en


def test_the_queries_are_titles_unshared_headings_and_the_other_language_s_titles(tmp_path: Path) -> None:
    items = _selftest().queries(_corpus(tmp_path), 10)
    assert sorted(items) == [
        ("across", "Переименование хранилища", "rename.md"),
        ("across", "Расписание резервных копий", "backup.md"),
        ("heading", "Mobile colours", "theme.md"),  # "Changing the settings" is two notes' heading: not asked
        ("title", "Backup schedule", "backup.md"),
        ("title", "Dark theme", "theme.md"),
        ("title", "Rename a vault", "rename.md"),
    ]


def test_unsure_and_close_are_bm25_s_small_margin_and_dense_s_close_second() -> None:
    selftest = _selftest()
    assert selftest.unsure([10.0, 9.0], 0.2) and not selftest.unsure([10.0, 7.0], 0.2)
    assert selftest.unsure([], 0.2)  # no BM25 hit at all: BM25 cannot tell
    assert selftest.close([0.9, 0.89, 0.5]) and not selftest.close([0.9, 0.8, 0.5])


def test_each_leg_is_asked_alone_and_scored_on_its_own_note(deepinfra: FakeProvider, tmp_path: Path) -> None:
    selftest = _selftest()
    corpus = _corpus(tmp_path)
    items = selftest.queries(corpus, 10)
    source = selftest.Sampled(corpus, {rel for _, _, rel in items})
    with _indexed(provider_settings(deepinfra, embedding_dimensions=256), source, None, 20) as (_, service, index):
        report = selftest.run(service, items, 0.2)
    assert index["notes"] == 3
    titles = report["title"]
    assert titles["n"] == 3 and titles["lexical_first"] == 1.0  # BM25 finds a note by its own title
    assert 0.0 < titles["dense_first"] <= 1.0  # the fake embeds the words: the dense leg answered too
    assert report["across"]["n"] == 2 and report["across"]["lexical_first"] == 0.0  # no Russian word in en/
    for row in report["rows"]:
        assert row["lexical"]["scores"] == sorted(row["lexical"]["scores"], reverse=True)
        assert row["dense"]["scores"], row  # no dense search fell back to BM25
