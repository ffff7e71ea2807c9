"""Session 30's variants (menu30) for ``eval/replay/replay.py --variants`` (EVAL.md, "Session 30: UI paths and
identifiers in the other language's notes"): what else could lift LibreOffice Help's Russian known items that are
English menu paths kept in Russian notes ("Format - Text - Uppercase"), other than the rule taken (a menu path is a
lookup, and its BM25 share pins a note of any language). They undo the language factor (x ``cross_language``) where
the fusion before session 30 applied it, so replay them over that fusion, with its package first on the path:

    git worktree add --detach /tmp/base30 098610f
    PYTHONPATH=/tmp/base30/layers/kbsearch .venv/bin/python eval/replay/replay.py .kbsearch/replay29/*.pkl \\
        --variants eval/replay/variants_s30_menu30.py --detail --changes

- ``path: BM25 in full``: a menu path's (:func:`kbsearch.fusion.is_ui_path`, this tree's) BM25 match in a note of
  another language than the query counts in full (no pin);
- ``path: BM25 and agreement in full``: and its rare-term agreement too;
- ``mixed script: BM25 in full``: the same for any query holding both Latin and Cyrillic words ("a Latin run inside
  Cyrillic text is never damped"), menu path or not;
- ``mixed script: BM25 and agreement in full``.

The rule taken is not a hook (it changes what is pinned): replay it as a tree, ``--compare /tmp/base30`` from this
branch (EVAL.md has both commands and the counts).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbsearch import fusion

Rows = list[tuple[str, Any, float, float]]
Hook = Callable[[Rows, dict[str, Any]], list[float]]

# this tree's fusion (the base on the path has no is_ui_path): its menu-path reading, nothing else
_SPEC = importlib.util.spec_from_file_location(
    "kbsearch_fusion_s30", Path(__file__).resolve().parents[2] / "layers/kbsearch/kbsearch/fusion.py"
)
assert _SPEC is not None and _SPEC.loader is not None
_THIS = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = _THIS  # its dataclasses look their module up
_SPEC.loader.exec_module(_THIS)
is_ui_path: Callable[[str], bool] = _THIS.is_ui_path

_LATIN = re.compile(r"[A-Za-z]")
_CYRILLIC = re.compile(r"[А-Яа-яЁё]")


def _mixed(text: str) -> bool:
    return bool(_LATIN.search(text)) and bool(_CYRILLIC.search(text))


def _lang(chunk: Any) -> str | None:
    return chunk.payload.get("lang") if chunk is not None else None


def variant(which: Callable[[str], bool], agreement_in_full: bool = False) -> Hook:
    """For a query ``which`` accepts, the query's own BM25 match (and with ``agreement_in_full`` its rare-term
    agreement) in a note of another language than the query counts in full."""

    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        p, evidence, lead, stray = ctx["p"], ctx["evidence"], ctx["lead"], ctx["stray"]
        language = evidence.language
        chosen = language is not None and which(evidence.text)
        out = []
        for note, n, dense, agreed in rows:
            lexical, agreement = n.lexical, agreed
            if chosen:
                its = n.lexical_chunk
                if its is not None and its is not n.translated_chunk and _lang(its) not in (None, language):
                    lexical = n.lexical / p.cross_language
                if agreement_in_full and agreed > 0 and _lang(n.dense_chunk or n.lexical_chunk) not in (None, language):
                    agreement = agreed / p.cross_language
            bonus = max(p.lead_bonus if note == lead else 0.0, p.stray_bonus if note == stray else 0.0)
            out.append(dense + p.lexical_weight * lexical + p.rare_agreement * agreement + bonus)
        return out

    return hook


assert fusion.FusionParams().cross_language > 0  # the hooks undo a damping by dividing by it

VARIANTS = [
    ("path: BM25 in full", variant(is_ui_path)),
    ("path: BM25 and agreement in full", variant(is_ui_path, agreement_in_full=True)),
    ("mixed script: BM25 in full", variant(_mixed)),
    ("mixed script: BM25 and agreement in full", variant(_mixed, agreement_in_full=True)),
]
