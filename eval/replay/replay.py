"""Replay captured fusion inputs (``eval/replay/capture.py``) through the fusion, or through variants of it.

    .venv/bin/python eval/replay/replay.py .kbsearch/replay/*.pkl                 # the defaults, checked
    .venv/bin/python eval/replay/replay.py .kbsearch/replay/*.pkl --variants eval/replay/variants_s24.py

A capture file is named ``<model>-<anything>.pkl``. The defaults' replay is checked against the hybrid nDCG@10 the
eval measured (``OK``: within 0.00006); each cell's gap over its best leg is flagged ``SHORT`` under its target, and
each model's cells, ``SHORT`` and ``MISMATCH`` cells are counted. ``eval/replay/capture_all.py`` takes every capture
(each ``eval/classes*.yaml`` × e5, USE) with one command. A variants file defines ``VARIANTS``, a list of ``(name, hook)``: a hook is
called once per search with the fusion's per-note rows ``(note, _Note, dense after the close calls, rare-term
agreement)`` and a context (the dense scale, the BM25 trust ``gain``, the legs, the pinned notes...) and returns each
row's score (an exact match still gets its lead on top) or None for the defaults' scores (:func:`default_scores`,
which a hook imports to start from). The hooked module is
:mod:`kbsearch.fusion` itself with its last loop opened (:func:`hooked_fusion`): when that loop changes, this
stops with a message instead of replaying something else. Each variant prints the three cells issue 19 still
misses (session 27), the cells whose hybrid falls (and the largest fall), the cells that newly miss their target (same-language
questions +0.005 over the best leg, the rest −0.005) and the searches better / worse than the defaults;
``--detail`` adds every cell's hybrid before → after, its change, its gap (``SHORT``: under its target) and its
searches better / worse, ``--only NAME``
(repeatable) replays only those variants, ``--set NAME=VALUE`` (repeatable) sets a ``FusionParams`` field for the
defaults and every variant: ``--set lead_bonus=0`` replays the fusion as it was before session 25's clear-lead
bonus (the variants files up to session 24 score without it; session 25's add their own). ``--changes`` lists each
search a variant scores differently (its cell, nDCG@10 before → after, the query, its relevant notes).

A capture whose searches are not its class's committed set (its queries and relevant notes, in order, as
``kbsearch eval --classes`` loads them from the ``eval/classes*.yaml`` listing the class: a capture taken before the
set changed, such as replay32's ``stale-lo`` pair) is refused, each such cell named with what differs;
``--allow-stale`` replays it, each flagged ``STALE`` on stderr (:func:`stale_cells`; session 35). A class no listing
names (a capture file named outside ``<model>-<anything>.pkl``) or whose corpus is not here counts as such a cell.

A capture taken with ``--phases hybrid`` alone (bil37's ``bilg``) has its missing leg phases replayed from its
captured legs (:func:`legs_replayed`: ``fuse``'s ``dense`` and ``lexical`` modes, which read GIMP's captures' eval
phases exactly), so its cells' gaps print as every other capture's.

``MISMATCH`` means the tree replaying fuses differently from the tree that captured: the check is against the eval
of the capture's tree, so a change to the fusion (or ``analyse``) since the capture shows there. Session 27's
captures (taken after its two exact-match rules, before rev27's fixes: a checkout of ``02c051b`` replays them ``OK``
on all 54 cells) read ``MISMATCH`` on USE man-cross-ru-to-en alone when main replays them: 0.6938 against the
eval's 0.6936. That is rev27's ``8d8e694`` (a note of another language is an exact match by its BM25 share × the
cross-language weight), not the replay: ``--compare`` with ``02c051b`` reads the same evidence on all 6,772 searches
and moves one, "процесс запуска системы, основанный на UNIX System V Release 4" (0.333 → 0.356).

Two fusions compared (a change's searches better / worse, one command):

    git worktree add --detach /tmp/before 95ae0cd
    .venv/bin/python eval/replay/replay.py .kbsearch/replay/*.pkl --compare /tmp/before [--detail] [--changes]
    .venv/bin/python eval/replay/replay.py .kbsearch/replay/*.pkl --compare . --set lexical_weight=0.6

``--compare TREE`` replays the captures twice, each side in its own process with its tree's ``layers/kbsearch``
first on ``PYTHONPATH`` (``eval/replay/side.py``): TREE's fusion (the base) and this tree's (the ``kbsearch`` this
script imports: ``PYTHONPATH=/tmp/after/layers/kbsearch:tools`` makes another checkout this side). Each side re-derives
every search's query evidence with its own ``analyse`` (the identifiers and the query's language are
``lexical.py``'s, which a fusion change may change too) and says how many searches read differently from the
capture. The legs are the capture's: a probe the capture ran without paths that a side would have run with them
(a query that side reads as a lookup) counts through other legs' payloads only; each side counts those searches.
It prints every cell's hybrid on each side and the change, the gap and the searches better / worse overall
(``--detail``: per cell too; ``--changes``: each changed search). With ``--compare``, ``--set`` sets a field of this
tree's side only and ``--set-base`` of TREE's (``--compare . --set NAME=VALUE``: one setting of a sweep against the
defaults).

``--swaps`` counts, per cell and per model, the searches whose two legs swap their first two notes (dense's first
note, by the fusion's per-note dense value, is BM25's second by its lexical value after the trust, and BM25's first
is dense's second), which leg's first note was relevant (dense right, BM25 right, both, neither) and whose first
note the fusion put first. ``--exclude TEXT`` (repeatable) leaves out the cells whose class name holds TEXT
(``--exclude known-item``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import os
import pickle
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

import kbsearch.fusion
import kbsearch_tools
from kbsearch_tools.metrics import ndcg_at

sys.path.insert(0, str(Path(__file__).resolve().parent))
from texts import ROOT, attach, class_entries

SAME_LANGUAGE_QUESTIONS = {
    "question-en",
    "question-ru",
    "detail-en",
    "detail-ru",
    "gnome-question-en",
    "gnome-question-ru",
    "lo-question-en",
    "lo-question-ru",
    "debdoc-question-en",
    "debdoc-question-ru",
    "gimp-question-en",
    "gimp-question-ru",
}
OPEN_CELLS = [("e5", "question-en"), ("e5", "gnome-question-ru"), ("use", "gnome-question-en")]

_LOOP = """    lead = clear_lead(notes, p)
    # ``_across``'s close calls count no BM25 match, once the pins are decided and BM25's lead and dense's stray first
    # are read as the damping left them (rev35c: silenced before, dense's first holding the query's words read as a
    # stray, and BM25's sure first far down dense's leg gained the stray bonus over it)
    for note in silenced - pinned:
        notes[note].lexical = 0.0
    weight, close = p.lexical_weight, p.close
    scored = []
    for note, n in notes.items():
        dense = n.dense if n.dense <= close else close + p.close_weight * (n.dense - close)
        score = dense + weight * n.lexical + p.rare_agreement * agree.get(note, 0.0)
        if note in (lead, stray):  # one note (BM25's first); where both gates hold, the larger bonus
            score += max(p.lead_bonus if note == lead else 0.0, p.stray_bonus if note == stray else 0.0)
"""
_HOOKED = """    lead = clear_lead(notes, p)
    # ``_across``'s close calls count no BM25 match, once the pins are decided and BM25's lead and dense's stray first
    # are read as the damping left them (rev35c: silenced before, dense's first holding the query's words read as a
    # stray, and BM25's sure first far down dense's leg gained the stray bonus over it)
    for note in silenced - pinned:
        notes[note].lexical = 0.0
    weight, close = p.lexical_weight, p.close
    scored = []
    rows = []
    for note, n in notes.items():
        dense = n.dense if n.dense <= close else close + p.close_weight * (n.dense - close)
        rows.append((note, n, dense, agree.get(note, 0.0)))
    context = dict(evidence=evidence, top=top_cosine, floor=floor, span=span, gain=gain, coverage=coverage, p=p,
                   dense_legs=dense_legs, lexical_legs=lexical_legs, pinned=pinned, probes=probes, depth=depth,
                   lead=lead, stray=stray)
    hooked = HOOK(rows, context) if HOOK else None
    if hooked is None:
        hooked = DEFAULT_SCORES(rows, context)
    for i, (note, n, dense, agreed) in enumerate(rows):
        score = hooked[i]
"""
_TOP = "    top = max((chunks[0].score for _, chunks in cosines), default=0.0)\n"


def default_scores(rows: list[tuple[str, Any, float, float]], ctx: dict[str, Any]) -> list[float]:
    """Each row's score as ``_LOOP`` adds it up (dense after the close calls, BM25 × its weight, the rare-term
    agreement, the larger of BM25's clear-lead and stray-first bonuses; an exact match's lead comes on top): the
    hooked loop's scores when there is no hook or it answers None, and what a variants file's hook starts from
    (``from replay import default_scores``)."""
    p, lead, stray = ctx["p"], ctx["lead"], ctx["stray"]
    return [dense + p.lexical_weight * n.lexical + p.rare_agreement * agreed
            + max(p.lead_bonus if note == lead else 0.0, p.stray_bonus if note == stray else 0.0)
            for note, n, dense, agreed in rows]  # fmt: skip


def hooked_fusion() -> types.ModuleType:
    """:mod:`kbsearch.fusion` with a ``HOOK`` over its per-note scores (None: the module as it is)."""
    source = inspect.getsource(kbsearch.fusion)
    if source.count(_LOOP) != 1 or source.count(_TOP) != 1:
        raise SystemExit("kbsearch/fusion.py's scoring loop changed: update eval/replay/replay.py's _LOOP")
    source = source.replace(_LOOP, _HOOKED).replace(_TOP, _TOP + "    top_cosine = top\n") + "\nHOOK = None\n"
    module = types.ModuleType("kbsearch_fusion_hooked")
    module.__dict__["__name__"] = "kbsearch_fusion_hooked"
    module.__dict__["DEFAULT_SCORES"] = default_scores
    sys.modules[module.__name__] = module
    exec(compile(source, "kbsearch/fusion.py (hooked)", "exec"), module.__dict__)  # noqa: S102
    return module


def fused_paths(
    fusion: types.ModuleType, name: str, values: tuple[Any, Any], legs: tuple[Any, Any], evidence: Any, limit: int
) -> tuple[list[Any], list[Any]]:
    """One search's paths fused twice: with ``fusion.<name>`` set to ``values[0]`` over ``legs[0]``, then to
    ``values[1]`` over ``legs[1]`` (a replay hook, a rule swapped in), the first value put back whatever happens."""
    out: list[list[Any]] = []
    try:
        for value, results in zip(values, legs, strict=True):
            setattr(fusion, name, value)
            out.append([c.payload.get("path") for c in fusion.fuse(results, evidence, limit, "hybrid")])
    finally:
        setattr(fusion, name, values[0])
    return out[0], out[1]


def leg_firsts(rows: list[tuple[str, Any, float, float]]) -> tuple[int | None, float, float, int | None, float, float]:
    """Row index of dense's first note (by the per-note dense value), its value and the second's; the same for BM25
    (by the lexical value after the trust and the language factor). Ties: by note path."""
    d = lx = None
    d1 = d2 = l1 = l2 = 0.0
    for i, (note, n, _, _) in enumerate(rows):
        if n.dense > d1 or (d is not None and n.dense == d1 and note < rows[d][0]):
            d, d1, d2 = i, n.dense, d1
        elif n.dense > d2:
            d2 = n.dense
        if n.lexical > l1 or (lx is not None and n.lexical == l1 and note < rows[lx][0]):
            lx, l1, l2 = i, n.lexical, l1
        elif n.lexical > l2:
            l2 = n.lexical
    return d, d1, d2, lx, l1, l2


def current(evidence: Any) -> Any:
    """A captured query's evidence as this process's :mod:`kbsearch.fusion` reads it: a field the capturing tree's
    ``QueryEvidence`` did not have (``ui_path``, session 31: a capture of an older tree would read its class
    default) is derived by this tree's :func:`kbsearch.fusion.analyse`; the captured fields stay as they are."""
    fields = dataclasses.fields(kbsearch.fusion.QueryEvidence)
    missing = [f.name for f in fields if f.name not in vars(evidence)]
    if not missing:
        return evidence
    own = kbsearch.fusion.analyse(evidence.text)
    return kbsearch.fusion.QueryEvidence(**{f.name: getattr(own if f.name in missing else evidence, f.name)
                                            for f in fields})  # fmt: skip


def upgraded(captures: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A capture file's cells with each search's evidence :func:`current`."""
    for captured in captures.values():
        captured["rows"] = [(query, relevant, results, current(evidence), limit)
                            for query, relevant, results, evidence, limit in captured["rows"]]  # fmt: skip
    return captures


def cell_name(path: Path, name: str) -> str:
    """A captured class's cell name: the class's, or ``<corpus>:<class>`` for a capture of a corpus
    (``<model>-<kind>-<corpus>.pkl``) whose class names do not start with ``<corpus>-`` (the bilingual KB's
    ``title-en``, ``question-en``: the vault's capture has a ``question-en`` too, which it replaced)."""
    corpus = path.stem.split("-", 2)[2:]
    return name if not corpus or name.startswith(corpus[0] + "-") else f"{corpus[0]}:{name}"


def _unlisted(key: tuple[str, str], entries: dict[str, tuple[Path, dict[str, Any]]]) -> str:
    """Why a cell no listing names is refused, and, where a listed class has its name, how its capture's file name
    was read (``<model>-<kind>[-<corpus>].pkl``: ``fus34a-e5-expanded-bil.pkl`` reads as model ``fus34a``, its
    classes as corpus ``expanded-bil``'s)."""
    model, cell = key
    bare = cell.split(":", 1)[-1]
    listed = sorted(f"{c} ({listing.name})" for c, (listing, entry) in entries.items() if str(entry["class"]) == bare)
    if not listed:
        return "no eval/classes*.yaml lists its class"
    return (f"no eval/classes*.yaml lists {cell!r}, read from the file's name as model {model!r} (a capture is named "
            f"<model>-<kind>[-<corpus>].pkl); class {bare!r} is listed as {', '.join(listed)}")  # fmt: skip


def stale_cells(cells: dict[tuple[str, str], dict[str, Any]], root: Path = ROOT) -> dict[tuple[str, str], str]:
    """The cells whose captured searches are not their class's committed set: (model, cell) → what differs. Each
    cell's class is read as ``kbsearch eval --classes`` reads it (:func:`kbsearch_tools.evaluate.load_classes` on
    the ``eval/classes*.yaml`` listing it, :func:`texts.class_entries`: its ``queries:`` file, ``limit``,
    ``max_note_bytes``), and the capture's queries and relevant notes, in order, must be that set's. A class no
    listing names, or whose corpus is not here (its set cannot be read as the eval reads it), is reported too."""
    from kbsearch.errors import KbSearchError  # here: side.py imports this module under another tree's kbsearch
    from kbsearch_tools.evaluate import load_classes

    entries = class_entries(root)
    wanted: dict[Path, set[str]] = {}
    for _, cell in cells:
        if cell in entries:
            wanted.setdefault(entries[cell][0], set()).add(str(entries[cell][1]["class"]))
    sets: dict[tuple[Path, str], list[tuple[str, frozenset[str]]] | str] = {}
    for listing, names in wanted.items():
        try:
            classes, skipped = load_classes(listing, root, names)
        except KbSearchError as e:
            raise SystemExit(f"{listing}: {e}") from None
        for c in classes:
            sets[(listing, c.name)] = [(q.query, frozenset(q.relevant)) for q in c.queries]
        for name, reason in skipped.items():
            sets[(listing, name)] = f"its committed set cannot be read: {reason}"
    out: dict[tuple[str, str], str] = {}
    for key, captured in cells.items():
        if key[1] not in entries:
            out[key] = _unlisted(key, entries)
            continue
        listing, entry = entries[key[1]]
        committed = sets[(listing, str(entry["class"]))]
        if isinstance(committed, str):
            out[key] = committed
            continue
        rows = [(query, frozenset(relevant)) for query, relevant, *_ in captured["rows"]]
        if rows == committed:
            continue
        queries, judged = {q for q, _ in committed}, dict(committed)
        missing = [q for q, _ in rows if q not in queries]
        extra = [q for q in queries if q not in {q for q, _ in rows}]
        rejudged = [q for q, relevant in rows if q in judged and judged[q] != relevant]
        parts = [f"{len(missing)} captured queries not in {entry['queries']}" if missing else "",
                 f"{len(extra)} of its queries not captured" if extra else "",
                 f"{len(rejudged)} judged otherwise" if rejudged else ""]  # fmt: skip
        example = (missing or extra or rejudged or [""])[0]
        what = "; ".join(p for p in parts if p) or "its queries in another order"
        out[key] = f"{what}{f' (first: {example!r})' if example else ''}"
    return out


def load(
    paths: list[Path], texts: bool = True, check: bool = False, allow_stale: bool = False
) -> dict[tuple[str, str], dict[str, Any]]:
    """The captures' cells, (model, class) → ``rows`` and ``phases``; with ``texts``, each chunk's heading and text
    re-attached from its corpus (``eval/replay/texts.py``: the capture keeps path, doc_id and lang only). With
    ``check``, a capture holding a cell whose searches are not its class's committed set (:func:`stale_cells`: a
    capture taken before the set changed replays the old queries and judgements, silently) stops the load, each such
    cell named per capture; with ``allow_stale`` too, each is printed as ``STALE`` on stderr and the load goes on."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    came: dict[tuple[str, str], Path] = {}
    for path in paths:
        model = path.name.split("-")[0]
        try:
            with path.open("rb") as f:
                captures = pickle.load(f)  # noqa: S301 (a capture this tool wrote)
        except (OSError, EOFError, pickle.UnpicklingError) as e:
            raise SystemExit(f"{path}: not a capture of eval/replay/capture.py ({e or type(e).__name__})") from None
        for name, captured in upgraded(captures).items():
            key = (model, cell_name(path, name))
            if key in came:
                raise SystemExit(f"{path} and {came[key]} both hold {key[0]} {key[1]}: replay them apart")
            cells[key], came[key] = captured, path
    if check:
        stale = stale_cells(cells)
        lines = [f"{came[key]}: {key[0]} {key[1]}: {what}" for key, what in sorted(stale.items(), key=str)]
        if lines and not allow_stale:
            raise SystemExit("captures that are not the committed query sets (capture them again, or replay with "
                             "--allow-stale):\n" + "\n".join(lines))  # fmt: skip
        for line in lines:
            print(f"STALE {line}", file=sys.stderr)
    for captured in cells.values():
        legs_replayed(captured)
    return attach(cells) if texts else cells


def legs_replayed(captured: dict[str, Any]) -> None:
    """A capture taken with ``--phases hybrid`` alone (bil37's ``bilg``, fus36a's deep captures) has no leg phase to
    measure a gap against: each missing leg's nDCG@10 is the captured legs fused in that leg's own mode (one note per
    best chunk of the dense, or of the BM25, legs: :func:`kbsearch.fusion.fuse`'s ``dense`` and ``lexical``), the
    phase recorded in ``legs_replayed``. Over GIMP's captures, which hold both, this reads the eval's leg phases."""
    phases = captured["phases"]
    missing = [mode for mode in ("lexical", "dense") if mode not in phases]
    for mode in missing:
        phases[mode] = round(sum(ndcg_at([c.payload.get("path") for c in kbsearch.fusion.fuse(results, evidence, limit, mode)],
                                         set(relevant), 10)
                                 for _, relevant, results, evidence, limit in captured["rows"])
                             / max(1, len(captured["rows"])), 4)  # fmt: skip
    if missing:
        captured["legs_replayed"] = missing


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


def params_from(fusion: types.ModuleType, items: list[str], flag: str = "--set") -> Any:
    """``fusion.FusionParams`` with each ``NAME=VALUE`` of ``items`` set (that module's own fields)."""
    fields = {f.name: f.type for f in dataclasses.fields(fusion.FusionParams)}
    overrides: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in fields:
            raise SystemExit(f"{flag} {item}: FusionParams has no {name!r} (it has {', '.join(fields)})")
        try:
            overrides[name] = int(value) if fields[name] == "int" else float(value)
        except ValueError:
            raise SystemExit(f"{flag} {item}: {value!r} is not a number") from None
    return fusion.FusionParams(**overrides)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _target(name: str) -> float:
    return 0.005 if name.rpartition(":")[2] in SAME_LANGUAGE_QUESTIONS else -0.005


def _moved(base: list[float], variant: list[float]) -> tuple[int, int]:
    """The searches the variant scores better and worse than the base."""
    pairs = list(zip(base, variant, strict=True))
    return sum(b > a + 1e-9 for a, b in pairs), sum(b < a - 1e-9 for a, b in pairs)


def compare(name: str, cells: dict, base: dict, variant: dict, detail: bool = False, every_cell: bool = False) -> None:
    """The variant against the base: the open cells' gaps, the cells down, the cells newly short and the searches
    better / worse; every cell's hybrid on both sides with ``every_cell`` or ``detail`` (``detail``: and its
    searches better / worse)."""
    down, fails, better, worse, drop = [], [], 0, 0, 0.0
    gaps = {}
    for key in sorted(cells):
        phases = cells[key]["phases"]
        best = max(phases["lexical"], phases["dense"])
        before, after = _mean(base[key]), _mean(variant[key])
        gaps[key] = after - best
        up, fell = _moved(base[key], variant[key])
        better, worse = better + up, worse + fell
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
    if detail or every_cell:
        for key in sorted(cells):
            before, after = _mean(base[key]), _mean(variant[key])
            moved = "better/worse {}/{}".format(*_moved(base[key], variant[key])) if detail else ""
            print(f"    {key[0]:4} {key[1]:20} n={len(base[key]):4} hybrid {before:.4f} → {after:.4f} "
                  f"({after - before:+.4f}) gap {gaps[key]:+.4f}{'' if gaps[key] >= _target(key[1]) else ' SHORT'} "
                  f"{moved}".rstrip())  # fmt: skip


def changes(cells: dict, base: dict, variant: dict) -> None:
    """Every search the variant scores differently: its cell, nDCG@10 base → variant, the query, its relevant notes."""
    for key in sorted(cells):
        for (query, relevant, *_), a, b in zip(cells[key]["rows"], base[key], variant[key], strict=True):
            if abs(b - a) > 1e-9:
                print(f"    {key[0]:4} {key[1]:20} {a:.3f} → {b:.3f}  {query!r}  [{', '.join(sorted(relevant))}]")


def swaps(fusion: types.ModuleType, cells: dict, params: Any) -> dict[tuple[str, str], Counter[str]]:
    """Per cell, the searches whose legs swap their first two notes (dense's first note is BM25's second and BM25's
    first is dense's second, by the fusion's per-note dense value and lexical value after the trust): ``swapped``,
    which leg's first note is relevant (``dense``, ``bm25``, ``both``, ``neither``) and whose first note the fusion
    put first (``hybrid dense``, ``hybrid bm25``, ``hybrid other``)."""
    seen: dict[str, Any] = {}

    def record(rows: list[tuple[str, Any, float, float]], context: dict[str, Any]) -> None:
        seen["rows"] = rows

    out = {}
    fusion.HOOK = record
    try:
        for key, captured in cells.items():
            count: Counter[str] = Counter()
            for _, relevant, results, evidence, limit in captured["rows"]:
                seen.clear()
                fused = fusion.fuse(results, evidence, limit, "hybrid", params)
                rows = seen.get("rows", [])
                dense = [row[0] for row in sorted(rows, key=lambda row: -row[1].dense)[:2]]
                lexical = [row[0] for row in sorted(rows, key=lambda row: -row[1].lexical)[:2]]
                if len(rows) < 2 or dense != lexical[::-1]:
                    continue
                right = (dense[0] in relevant, lexical[0] in relevant)
                count["swapped"] += 1
                count[{(True, False): "dense", (False, True): "bm25", (True, True): "both"}.get(right, "neither")] += 1
                first = fused[0].payload.get("path") if fused else None
                count["hybrid " + ("dense" if first == dense[0] else "bm25" if first == lexical[0] else "other")] += 1
            out[key] = count
    finally:
        fusion.HOOK = None
    return out


def _swap_line(count: Counter[str]) -> str:
    return (f"swapped {count['swapped']:3}: dense right {count['dense']}, BM25 right {count['bm25']}, both "
            f"{count['both']}, neither {count['neither']}; hybrid's first is dense's {count['hybrid dense']}, "
            f"BM25's {count['hybrid bm25']}, another {count['hybrid other']}")  # fmt: skip


def print_swaps(found: dict[tuple[str, str], Counter[str]]) -> None:
    for key in sorted(found):
        print(f"{key[0]:4} {key[1]:20} {_swap_line(found[key])}")
    for model in sorted({m for m, _ in found}):
        cells = [count for (m, _), count in found.items() if m == model]
        print(f"{model:4} {len(cells)} cells{'':11} {_swap_line(sum(cells, Counter()))}")


SIDE = Path(__file__).with_name("side.py")


def _side(
    tree: Path, captures: list[Path], settings: list[str], flag: str, texts: bool = True
) -> subprocess.Popen[bytes]:
    """``side.py`` over the captures with ``tree``'s ``layers/kbsearch`` first on its ``PYTHONPATH``."""
    layer = tree / "layers" / "kbsearch"
    if not (layer / "kbsearch" / "fusion.py").is_file():
        raise SystemExit(f"--compare {tree}: no layers/kbsearch/kbsearch/fusion.py there (a checkout of kb-search)")
    tools = Path(kbsearch_tools.__file__).resolve().parents[1]  # this tree's metrics on both sides
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(layer.resolve()), str(tools)])}
    command = [sys.executable, str(SIDE), *map(str, captures), f"--flag={flag}", *([] if texts else ["--no-texts"])]
    for item in settings:
        command += ["--set", item]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def compare_trees(args: argparse.Namespace, cells: dict) -> int:
    """The captures replayed by TREE's fusion (the base) and by this tree's, each in its own process."""
    this = Path(kbsearch.fusion.__file__).resolve().parents[3]
    running = [_side(args.compare, args.captures, args.set_base, "--set-base", args.texts),
               _side(this, args.captures, args.set, "--set", args.texts)]  # fmt: skip
    answers = [
        (tree, process, *process.communicate()) for tree, process in zip((args.compare, this), running, strict=True)
    ]
    for tree, process, _, err in answers:
        if process.returncode != 0:
            raise SystemExit(f"{tree}'s side (eval/replay/side.py) exit {process.returncode}: {err.decode()[-2000:]}")
    sides = [pickle.loads(out) for _, _, out, _ in answers]  # noqa: S301 (side.py's own answer)
    for label, items, side in zip(("base", "this"), (args.set_base, args.set), sides, strict=True):
        searches = sum(len(side["scores"][key]) for key in cells)
        print(f"{label}: {side['root']}{' ' + ' '.join(items) if items else ''}: evidence re-derived by its analyse "
              f"reads differently from the capture's in {side['evidence']} of {searches} searches; its probes would "
              f"ask for paths otherwise in {side['probes']}")  # fmt: skip
    base, variant = ({key: side["scores"][key] for key in cells} for side in sides)
    compare(f"{args.compare} → this tree", cells, base, variant, args.detail, every_cell=True)
    if args.changes:
        changes(cells, base, variant)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="+", type=Path)
    parser.add_argument("--variants", type=Path, help="a Python file defining VARIANTS = [(name, hook), ...]")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a FusionParams field for the defaults and every variant (lead_bonus=0: session 24's); with --compare, "
        "for this tree's side only",
    )
    parser.add_argument("--only", action="append", help="replay only the variant of this name (repeatable)")
    parser.add_argument("--detail", action="store_true", help="every cell's hybrid, gap and searches better/worse")
    parser.add_argument("--changes", action="store_true", help="list every search a variant scores differently")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="TREE",
        help="replay TREE's fusion (a checkout: TREE/layers/kbsearch) against this tree's, each in its own process",
    )
    parser.add_argument(
        "--set-base",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --compare: a FusionParams field for TREE's side",
    )
    parser.add_argument("--swaps", action="store_true", help="count the searches whose legs swap their first two notes")
    parser.add_argument("--exclude", action="append", default=[], metavar="TEXT", help="leave out classes naming TEXT")
    parser.add_argument(
        "--allow-stale",
        action="store_true",
        help="replay a capture whose queries or judgements are not its class's committed set (each flagged STALE)",
    )
    parser.add_argument(
        "--no-texts",
        dest="texts",
        action="store_false",
        help="replay the captured payloads as they are (no chunk heading or text: eval/replay/texts.py)",
    )
    args = parser.parse_args(argv)
    if args.set_base and args.compare is None:
        parser.error("--set-base sets TREE's side of --compare TREE")
    if args.compare is not None and (args.variants or args.swaps):
        parser.error("--compare replays two trees' defaults: not with --variants or --swaps")
    if args.swaps and args.variants:
        parser.error("--swaps counts over the defaults' fusion: not with --variants")
    cells = {
        key: c
        for key, c in load(args.captures, args.compare is None and args.texts, True, args.allow_stale).items()
        if not any(text in key[1] for text in args.exclude)
    }
    if args.compare is not None:
        return compare_trees(args, cells)
    fusion = hooked_fusion()
    params = params_from(fusion, args.set)
    if args.swaps:
        print_swaps(swaps(fusion, cells, params))
        return 0
    base = run(fusion, cells, params=params)
    tally: dict[str, Counter[str]] = {}
    for key in sorted(cells):
        phases = cells[key]["phases"]
        replayed = _mean(base[key])
        gap = replayed - max(phases["lexical"], phases["dense"])
        same = "OK" if abs(replayed - phases["hybrid"]) < 6e-5 else f"MISMATCH (eval {phases['hybrid']:.4f})"
        short = gap < _target(key[1])
        print(f"{key[0]:4} {key[1]:20} n={len(base[key]):4} lexical {phases['lexical']:.4f} dense "
              f"{phases['dense']:.4f} hybrid {replayed:.4f} gap {gap:+.4f}{' SHORT' if short else ''} {same}")  # fmt: skip
        tally.setdefault(key[0], Counter()).update(cells=1, short=int(short), mismatch=int(same != "OK"))
    for model, count in sorted(tally.items()):
        print(f"{model}: {count['cells']} cells, {count['short']} SHORT, {count['mismatch']} MISMATCH")
    if args.variants:
        spec = importlib.util.spec_from_file_location("replay_variants", args.variants)
        if spec is None or spec.loader is None:
            raise SystemExit(f"cannot load {args.variants}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, hook in module.VARIANTS:
            if args.only is None or name in args.only:
                variant = run(fusion, cells, hook, params)
                compare(name, cells, base, variant, args.detail)
                if args.changes:
                    changes(cells, base, variant)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
