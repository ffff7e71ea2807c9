"""Replay captured fusion inputs (``eval/replay/capture.py``) through the fusion, or through variants of it.

    .venv/bin/python eval/replay/replay.py .kbsearch/replay/*.pkl                 # the defaults, checked
    .venv/bin/python eval/replay/replay.py .kbsearch/replay/*.pkl --variants eval/replay/variants_s24.py

A capture file is named ``<model>-<anything>.pkl``. The defaults' replay is checked against the hybrid nDCG@10 the
eval measured (``OK``: within 0.00006). A variants file defines ``VARIANTS``, a list of ``(name, hook)``: a hook is
called once per search with the fusion's per-note rows ``(note, _Note, dense after the close calls, rare-term
agreement)`` and a context (the dense scale, the BM25 trust ``gain``, the legs, the pinned notes...) and returns each
row's score (an exact match still gets its lead on top) or None for the defaults' scores. The hooked module is
:mod:`kbsearch.fusion` itself with its last loop opened (:func:`hooked_fusion`): when that loop changes, this
stops with a message instead of replaying something else. Each variant prints the three cells issue 19 still
misses (session 27), the cells whose hybrid falls (and the largest fall), the cells that newly miss their target (same-language
questions +0.005 over the best leg, the rest −0.005) and the searches better / worse than the defaults;
``--detail`` adds every cell's hybrid, its change and its gap (``SHORT``: under its target), ``--only NAME``
(repeatable) replays only those variants, ``--set NAME=VALUE`` (repeatable) sets a ``FusionParams`` field for the
defaults and every variant: ``--set lead_bonus=0`` replays the fusion as it was before session 25's clear-lead
bonus (the variants files up to session 24 score without it; session 25's add their own).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import kbsearch.fusion
from kbsearch_tools.metrics import ndcg_at

SAME_LANGUAGE_QUESTIONS = {
    "question-en",
    "question-ru",
    "detail-en",
    "detail-ru",
    "gnome-question-en",
    "gnome-question-ru",
}
OPEN_CELLS = [("e5", "question-en"), ("e5", "gnome-question-ru"), ("use", "gnome-question-en")]

_LOOP = """    lead = clear_lead(notes, p)
    weight, close = p.lexical_weight, p.close
    scored = []
    for note, n in notes.items():
        dense = n.dense if n.dense <= close else close + p.close_weight * (n.dense - close)
        score = dense + weight * n.lexical + p.rare_agreement * agree.get(note, 0.0)
        if note == lead:
            score += p.lead_bonus
"""
_HOOKED = """    lead = clear_lead(notes, p)
    weight, close = p.lexical_weight, p.close
    scored = []
    rows = []
    for note, n in notes.items():
        dense = n.dense if n.dense <= close else close + p.close_weight * (n.dense - close)
        rows.append((note, n, dense, agree.get(note, 0.0)))
    context = dict(evidence=evidence, top=top_cosine, floor=floor, span=span, gain=gain, coverage=coverage, p=p,
                   dense_legs=dense_legs, lexical_legs=lexical_legs, pinned=pinned, probes=probes, depth=depth,
                   lead=lead)
    hooked = HOOK(rows, context) if HOOK else None
    for i, (note, n, dense, agreed) in enumerate(rows):
        if hooked is None:
            score = dense + weight * n.lexical + p.rare_agreement * agreed + (p.lead_bonus if note == lead else 0.0)
        else:
            score = hooked[i]
"""
_TOP = "    top = max((chunks[0].score for _, chunks in cosines), default=0.0)\n"


def hooked_fusion() -> types.ModuleType:
    """:mod:`kbsearch.fusion` with a ``HOOK`` over its per-note scores (None: the module as it is)."""
    source = inspect.getsource(kbsearch.fusion)
    if source.count(_LOOP) != 1 or source.count(_TOP) != 1:
        raise SystemExit("kbsearch/fusion.py's scoring loop changed: update eval/replay/replay.py's _LOOP")
    source = source.replace(_LOOP, _HOOKED).replace(_TOP, _TOP + "    top_cosine = top\n") + "\nHOOK = None\n"
    module = types.ModuleType("kbsearch_fusion_hooked")
    module.__dict__["__name__"] = "kbsearch_fusion_hooked"
    sys.modules[module.__name__] = module
    exec(compile(source, "kbsearch/fusion.py (hooked)", "exec"), module.__dict__)  # noqa: S102
    return module


def load(paths: list[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    cells = {}
    for path in paths:
        model = path.name.split("-")[0]
        with path.open("rb") as f:
            for name, captured in pickle.load(f).items():  # noqa: S301 (a capture this tool wrote)
                cells[(model, name)] = captured
    return cells


def run(
    fusion: types.ModuleType, cells: dict[tuple[str, str], dict[str, Any]], hook: Any = None, params: Any = None
) -> dict:
    fusion.HOOK = hook
    try:
        return {key: [ndcg_at([c.payload.get("path") for c in fusion.fuse(results, evidence, limit, "hybrid", params)],
                              set(relevant), 10)
                      for _, relevant, results, evidence, limit in captured["rows"]]
                for key, captured in cells.items()}  # fmt: skip
    finally:
        fusion.HOOK = None


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _target(name: str) -> float:
    return 0.005 if name in SAME_LANGUAGE_QUESTIONS else -0.005


def compare(name: str, cells: dict, base: dict, variant: dict, detail: bool = False) -> None:
    down, fails, better, worse, drop = [], [], 0, 0, 0.0
    gaps = {}
    for key in sorted(cells):
        phases = cells[key]["phases"]
        best = max(phases["lexical"], phases["dense"])
        before, after = _mean(base[key]), _mean(variant[key])
        gaps[key] = after - best
        better += sum(b > a + 1e-9 for a, b in zip(base[key], variant[key], strict=True))
        worse += sum(b < a - 1e-9 for a, b in zip(base[key], variant[key], strict=True))
        if after < before - 1e-9:
            down.append(f"{key[0]} {key[1]} {after - before:+.4f}")
            drop = max(drop, before - after)
        if after - best < _target(key[1]) <= before - best:
            fails.append(f"{key[0]} {key[1]} {after - best:+.4f}")
    open_cells = "  ".join(f"{m} {c} {gaps[(m, c)]:+.4f}" for m, c in OPEN_CELLS if (m, c) in gaps)
    print(f"{name}: [{open_cells}] cells down {len(down)} (largest {drop:.4f}), newly short {fails or 'none'}, "
          f"searches better/worse {better}/{worse}")  # fmt: skip
    if down:
        print("    down: " + "; ".join(down))
    if detail:
        for key in sorted(cells):
            after = _mean(variant[key])
            print(f"    {key[0]:4} {key[1]:20} hybrid {after:.4f} ({after - _mean(base[key]):+.4f}) gap {gaps[key]:+.4f}"
                  f"{'' if gaps[key] >= _target(key[1]) else ' SHORT'}")  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="+", type=Path)
    parser.add_argument("--variants", type=Path, help="a Python file defining VARIANTS = [(name, hook), ...]")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a FusionParams field for the defaults and every variant (lead_bonus=0: session 24's)",
    )
    parser.add_argument("--only", action="append", help="replay only the variant of this name (repeatable)")
    parser.add_argument("--detail", action="store_true", help="print every cell's hybrid and gap for each variant")
    args = parser.parse_args(argv)
    cells = load(args.captures)
    fusion = hooked_fusion()
    fields = {f.name: f.type for f in dataclasses.fields(fusion.FusionParams)}
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in fields:
            raise SystemExit(f"--set {item}: FusionParams has no {name!r} (it has {', '.join(fields)})")
        overrides[name] = int(value) if fields[name] == "int" else float(value)
    params = fusion.FusionParams(**overrides)
    base = run(fusion, cells, params=params)
    for key in sorted(cells):
        phases = cells[key]["phases"]
        replayed = _mean(base[key])
        gap = replayed - max(phases["lexical"], phases["dense"])
        same = "OK" if abs(replayed - phases["hybrid"]) < 6e-5 else f"MISMATCH (eval {phases['hybrid']:.4f})"
        print(f"{key[0]:4} {key[1]:20} n={len(base[key]):4} lexical {phases['lexical']:.4f} dense "
              f"{phases['dense']:.4f} hybrid {replayed:.4f} gap {gap:+.4f} {same}")  # fmt: skip
    if args.variants:
        spec = importlib.util.spec_from_file_location("replay_variants", args.variants)
        if spec is None or spec.loader is None:
            raise SystemExit(f"cannot load {args.variants}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, hook in module.VARIANTS:
            if args.only is None or name in args.only:
                compare(name, cells, base, run(fusion, cells, hook, params), args.detail)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
