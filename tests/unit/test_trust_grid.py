"""eval/replay/trust_grid.py over test_replay's synthetic capture: dense ranks x (0.9) above y (0.85), BM25 ranks y
above x. Only with BM25 weighed 0 **and** dense's close calls counted in full (``close_weight`` 1) does the fusion
put x first: so a grid point moves searches only if the script sets both fields."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.unit.test_replay import _capture, run_script

GRID = ROOT / "eval" / "replay" / "trust_grid.py"


def test_each_point_sets_both_weights_and_counts_the_searches_it_moves(tmp_path: Path) -> None:
    done = run_script(GRID, *_capture(tmp_path), "--weights", "0,0.7", "--closes", "0.5,1.0")
    assert done.returncode == 0, done.stderr
    e5, use = done.stdout.split("use-classes.pkl")
    # e5 question-en: the search whose answer is x gains, the one whose answer is y loses: the mean does not move
    assert "W 0.0: +0.0000/0  +0.0000/0" in e5 and "W 0.7: +0.0000/0  +0.0000/0" in e5
    # use detail-ru: its y search puts x first at (0, 1.0) alone (its x-and-y search keeps both on top)
    assert "W 0.0: +0.0000/0  -0.1845/0" in use and "W 0.7: +0.0000/0  +0.0000/0" in use
    assert "best mean   W 0.0 C 0.5: mean 1.0000 (+0.0000)" in use


def test_one_point_reports_its_searches_better_and_worse(tmp_path: Path) -> None:
    done = run_script(GRID, *_capture(tmp_path), "--weights", "0", "--closes", "1.0")
    assert done.returncode == 0, done.stderr
    e5, use = done.stdout.split("use-classes.pkl")
    assert "searches better/worse 1/1" in e5
    assert "mean 0.8155 (-0.1845), short 0 (0.0000), searches better/worse 0/1" in use


def test_a_known_item_cell_under_0_98_is_short_even_above_its_best_leg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(GRID.parent))  # trust_grid imports replay.py beside it
    spec = importlib.util.spec_from_file_location("trust_grid_under_test", GRID)
    assert spec is not None and spec.loader is not None
    grid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grid)
    assert grid.shortfall("lo-known-item-ru", 0.01, 0.97) == 0.98 - 0.97
    assert grid.shortfall("question-en", 0.002, 0.9) == 0.005 - 0.002  # a same-language question: +0.005 asked
    assert grid.shortfall("cross-en-to-ru", -0.004, 0.7) == 0.0
