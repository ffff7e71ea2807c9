"""eval/replay/capture_all.py: the listings it captures are every committed ``eval/classes*.yaml``, each listed corpus
is committed or built by it, a current capture is kept (and recorded once), a stale one is named with why."""

from __future__ import annotations

import importlib.util
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from kbsearch.fusion import analyse
from kbsearch.markdown import PARSE_VERSION
from kbsearch_tools.evaluate import load_classes
from tests.conftest import ROOT
from tests.unit.test_replay import _search, run_script

SCRIPT = ROOT / "eval" / "replay" / "capture_all.py"


def _module() -> ModuleType:
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("capture_all", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


capture_all = _module()


def _committed(pattern: str) -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--", pattern], cwd=ROOT, capture_output=True, text=True, check=True)
    return listed.stdout.split()


def test_the_listings_captured_are_every_committed_classes_yaml() -> None:
    """A new listing cannot be forgotten: with no ``--only`` the script captures every ``eval/classes*.yaml`` git
    holds, with both models."""
    picked, models = capture_all.chosen([])
    assert sorted(p.relative_to(ROOT).as_posix() for p in picked) == sorted(_committed(":(glob)eval/classes*.yaml"))
    assert len(picked) >= 9 and models == ["e5", "use"]


def test_every_listed_corpus_is_committed_shared_or_built_by_the_script() -> None:
    """A listing reading a corpus that is neither in the repository, nor the shared vault, nor one of the builders'
    would be captured with its classes skipped (``kbsearch eval`` skips a corpus that is not there)."""
    unbuilt = []
    for listing in capture_all.listings():
        for corpus in capture_all.corpora(listing):
            if corpus in capture_all.BUILDERS or corpus.startswith("../shared/") or _committed(corpus):
                continue
            unbuilt.append(f"{listing.name}: {corpus}")
    assert unbuilt == []
    for builder in capture_all.BUILDERS.values():
        assert (ROOT / builder).is_file(), builder


def _tiny(root: Path) -> Path:
    """A repository-shaped ``root`` with one listing, ``eval/classes-tiny.yaml``: the committed sample-kb class."""
    (root / "eval").mkdir()
    shutil.copytree(ROOT / "sample-kb", root / "sample-kb")
    shutil.copy(ROOT / "eval" / "sample-kb-queries.yaml", root / "eval" / "sample-kb-queries.yaml")
    listing = root / "eval" / "classes-tiny.yaml"
    listing.write_text("- class: sample-kb\n  corpus: sample-kb\n  queries: eval/sample-kb-queries.yaml\n")
    return listing


def _capture_of(listing: Path, root: Path, path: Path, edit: str = "", version: int = PARSE_VERSION) -> Path:
    """A capture of ``listing``'s classes as capture.py writes one, each class's searches its committed set
    (``edit``: ``query`` rewords the first query, ``drop`` leaves the last class out)."""
    classes, skipped = load_classes(listing, root)
    if skipped:
        pytest.skip(f"{listing.name}: {next(iter(skipped.values()))}")
    cells: dict[str, Any] = {}
    for c in classes:
        queries = [(q.query, frozenset(q.relevant)) for q in c.queries]
        if edit == "query":
            queries[0] = (queries[0][0] + " please", queries[0][1])
        rows = [(q, relevant, _search(q, set())[2], analyse(q), 10) for q, relevant in queries]
        cells[c.name] = {"rows": rows, "phases": {"lexical": 0.5, "dense": 0.5, "hybrid": 0.5},
                         "parse_version": version}  # fmt: skip
    if edit == "drop":
        cells.pop(classes[-1].name)
    with path.open("wb") as f:
        pickle.dump(cells, f)
    return path


@pytest.mark.parametrize(
    ("edit", "version", "why"),
    [("query", PARSE_VERSION, "tiny:sample-kb: 1 captured queries not in eval/sample-kb-queries.yaml"),
     ("drop", PARSE_VERSION, "1 of the listing's classes not captured (first: sample-kb)"),
     ("", PARSE_VERSION - 1, f"captured by PARSE_VERSION [{PARSE_VERSION - 1}], this tree reads notes by {PARSE_VERSION}")],
)  # fmt: skip
def test_a_capture_is_current_only_when_it_is_every_class_s_committed_set_read_by_this_parse_version(
    tmp_path: Path, edit: str, version: int, why: str
) -> None:
    listing = _tiny(tmp_path)
    capture = tmp_path / "e5-classes-tiny.pkl"
    assert capture_all.why_stale(capture, listing, tmp_path) == "not captured"
    assert capture_all.why_stale(_capture_of(listing, tmp_path, capture), listing, tmp_path) is None
    stale = capture_all.why_stale(_capture_of(listing, tmp_path, capture, edit, version), listing, tmp_path)
    assert stale is not None and stale.startswith(why), stale
    capture.write_bytes(b"not a pickle")
    assert str(capture_all.why_stale(capture, listing, tmp_path)).startswith("unreadable (")


def test_a_current_capture_is_kept_and_recorded_once(tmp_path: Path) -> None:
    """The script over a directory holding a current capture of the vault's listing runs no eval: it keeps it,
    says so, and records its path once however often it runs."""
    out, record = tmp_path / "caps", tmp_path / "caps.txt"
    out.mkdir()
    capture = _capture_of(ROOT / "eval" / "classes.yaml", ROOT, out / "e5-classes.pkl")
    for _ in range(2):
        done = run_script(SCRIPT, out, "--only", "classes", "--only", "e5", "--record", record)
        assert done.returncode == 0, done.stderr
        assert "e5-classes.pkl: current, kept" in done.stdout and "1 captures in" in done.stdout, done.stdout
    assert record.read_text().splitlines() == [str(capture)]
    assert not (out / "e5-classes.log").exists()


def test_an_unknown_only_is_refused_naming_the_listings_and_models(tmp_path: Path) -> None:
    done = run_script(SCRIPT, tmp_path, "--only", "classes-nope")
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "--only classes-nope: neither a listing (" in done.stderr and "classes-bil" in done.stderr
    assert "nor a model (e5, use)" in done.stderr
