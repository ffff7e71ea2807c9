"""YAML that gives one key more than once, in a note's frontmatter and in the access file: never resolved silently
(PyYAML keeps the last one, which can widen who reads a note). Through the indexer service on a folder, the
embedded store and the search service, as ``test_access_index`` drives them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbsearch.access import Scope
from kbsearch_tools.fakes import FakeProvider
from tests.integration.test_access_index import NOTES, access_by_path, settings_for, sync, visible, write_kb


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    """``test_access_index``'s KB: an HR folder restricted by the access file, a public folder."""
    root = tmp_path / "kb"
    write_kb(root, NOTES, "hr/: [hr]\nsecurity/incidents/: [security, oncall]\n")
    return root


#: one key given twice, in every spelling YAML allows: PyYAML keeps the last, so the wider group could win silently
ACCESS_TWICE = [
    "access: [hr]\naccess: [public]", "access: [public]\naccess: [hr]", "access: [hr]\n? access\n: [public]",
    "access: [hr]\n'access': public", "access: [hr]\ntitle: Pay\naccess: [hr]", "access: !!set {hr, public, hr}",
    'access: [hr]\n"\\x61ccess": [public]',
]  # fmt: skip


@pytest.mark.parametrize("declaration", ACCESS_TWICE)
def test_access_given_twice_skips_the_note(tmp_path: Path, kb: Path, deepinfra: FakeProvider, declaration: str) -> None:
    """A note whose frontmatter gives ``access`` more than once (the same spelling, quoted, an explicit ``? key``,
    an escape, a set naming a group twice): skipped with the reason and its old version removed, never resolved
    to one of them (PyYAML kept the last: ``[public]`` after ``[hr]`` made an HR note public)."""
    settings = settings_for(tmp_path, deepinfra)
    sync(settings, kb)
    (kb / "hr/Salary bands.md").write_text(f"---\n{declaration}\n---\n# Salary bands\nwelcome pay\n", "utf-8")
    report = sync(settings, kb)
    [skipped] = report.skipped
    assert skipped["path"] == "hr/Salary bands.md" and "more than once" in skipped["reason"], skipped
    assert "hr/Salary bands.md" not in access_by_path(settings)
    assert "hr/Salary bands.md" not in visible(settings, Scope.public())


@pytest.mark.parametrize(
    "rules",
    ["hr/: [hr]\nhr/: [public]\n", "hr/: [hr]\n'hr/': [public]\n", "hr/: [hr]\n? hr/\n: [public]\n",
     "hr/: [hr]\nops/: [ops]\nhr/: [hr]\n", "hr/: [hr, hr, public]\nx/: {a: 1, a: 2}\n"],
)  # fmt: skip
def test_an_access_file_giving_a_folder_twice_stops_the_sync(
    tmp_path: Path, kb: Path, deepinfra: FakeProvider, rules: str
) -> None:
    """``_access.yaml`` naming one folder twice (or a mapping with a key twice): the sync stops and nothing
    changes, as for any malformed access file (the last rule won silently: ``hr/: [public]`` opened HR)."""
    settings = settings_for(tmp_path, deepinfra)
    sync(settings, kb)
    before = access_by_path(settings)
    (kb / "_access.yaml").write_text(rules, encoding="utf-8")
    report = sync(settings, kb)
    if "hr, hr, public" in rules:  # a group named twice in a list is harmless; the mapping's repeated key is not
        assert report.error is not None and "more than once" in report.error
    else:
        assert report.error is not None and report.error.startswith("_access.yaml") and "more than once" in report.error
    assert access_by_path(settings) == before
    assert "hr/Salary bands.md" not in visible(settings, Scope.public())


def test_other_fields_given_twice_are_dropped_with_a_warning(tmp_path: Path, kb: Path, deepinfra: FakeProvider) -> None:
    settings = settings_for(tmp_path, deepinfra)
    (kb / "pub/Twice.md").write_text("---\ntitle: A\ntags: [x]\ntitle: B\n---\nwelcome twice\n", "utf-8")
    report = sync(settings, kb)
    assert [w["reason"] for w in report.warnings if w["path"] == "pub/Twice.md"] == [
        "frontmatter field 'title' dropped: given more than once"
    ]
    assert "pub/Twice.md" in visible(settings, Scope.public())  # indexed, titled by its file name
