"""eval/replay/learn.py over a tiny synthetic capture of two corpora (capture.py's format, real legs and chunks).

Each search: dense ranks x (0.9) above y (0.85), BM25 ranks y (10) above x (8); the fusion puts y first (BM25's
clear lead between dense's close first two). In every search below x is the answer: a scorer fitted on one corpus
learns to follow dense there, and puts x first in the other corpus too.
"""

from __future__ import annotations

import pickle
import re
import subprocess
from pathlib import Path

from kbsearch.fusion import analyse
from kbsearch.qdrant.query import Leg
from tests.conftest import ROOT
from tests.unit.test_replay import _chunks, run_script

LEARN = ROOT / "eval" / "replay" / "learn.py"
QUERIES = ["where is the backup schedule set", "how do I rename a vault folder", "which plugin exports a graph",
           "can I sync two devices offline"]  # fmt: skip


def _search(query: str) -> tuple:
    dense = _chunks([("x", 0.9), ("y", 0.85), ("z", 0.5), ("w", 0.4)])
    lexical = _chunks([("y", 10.0), ("x", 8.0), ("z", 2.0)])
    results = [(Leg("dense"), dense), (Leg("lexical"), lexical)]
    return (query, frozenset({"x.md"}), results, analyse(query), 10)


def _captures(root: Path) -> list[Path]:
    """The vault (``e5-classes.pkl``) and the man pages (``e5-classes-man.pkl``), one class each; each class's
    lexical and dense phases 0.7 and 1.0 (dense's first note is x), its hybrid as the fusion replays it (0.631)."""
    paths = []
    for name, cell in (("e5-classes.pkl", "question-en"), ("e5-classes-man.pkl", "man-question-en")):
        path = root / name
        rows = [_search(f"{query} {i}") for i, query in enumerate(QUERIES)]
        with path.open("wb") as f:
            pickle.dump({cell: {"rows": rows, "phases": {"lexical": 0.7, "dense": 1.0, "hybrid": 0.6309}}}, f)
        paths.append(path)
    return paths


def _learn(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_script(LEARN, *args)


def test_the_rules_weights_give_the_fusions_ranking_back(tmp_path: Path) -> None:
    """Unfitted (no step), the anchored scorer is the fusion's own score over the recorded features."""
    done = _learn(*_captures(tmp_path), "--scorer", "anchored", "--steps", "0")
    assert done.returncode == 0, done.stderr
    assert "anchored: cells meeting their target 0 of 2, searches better / worse than the rules 0 / 0" in done.stdout
    assert "MISMATCH" not in done.stdout  # the hooked fusion replays the capture's hybrid


def test_a_scorer_fitted_on_one_corpus_scores_the_other(tmp_path: Path) -> None:
    done = _learn(*_captures(tmp_path), "--scorer", "listwise", "--steps", "200")
    assert done.returncode == 0, done.stderr
    folds = done.stdout.split("Fitted on all four")[0]
    assert "fold man: trained on 4 searches of vault" in folds
    assert "fold vault: trained on 4 searches of man" in folds
    # every held-out search now puts x first: nDCG@10 0.6309 → 1.0, both cells meet their target
    assert re.search(r"man +e5 +man-question-en +4 +0\.6309 +-0\.3691\* +\| +1\.0000 +\+0\.0000 +4/0", folds), folds
    assert re.search(r"vault +e5 +question-en +4 +0\.6309 +-0\.3691\* +\| +1\.0000 +\+0\.0000\* +4/0", folds), folds
    assert "listwise: cells meeting their target 1 of 2, searches better / worse than the rules 8 / 0" in folds


def test_one_corpus_is_refused_with_a_reason(tmp_path: Path) -> None:
    done = _learn(_captures(tmp_path)[0])
    assert done.returncode == 1
    assert "leave one corpus out needs captures of two corpora or more" in done.stderr
    assert "Traceback" not in done.stderr
