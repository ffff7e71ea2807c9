"""A learned fusion against the rules, leave one corpus out (EVAL.md, "Session 29: a learned fusion, leave one
corpus out"): would a linear scorer fitted on three corpora rank the fourth better than :mod:`kbsearch.fusion`?

    .venv/bin/python eval/replay/learn.py .kbsearch/replay/*.pkl --cost 200      # every scorer, µs a search (~6 min)
    .venv/bin/python eval/replay/learn.py .kbsearch/replay/*.pkl --scorer anchored --l2 1    # one scorer (~4 min)

A capture file is named ``<model>-classes[-<corpus>].pkl`` (``eval/replay/capture.py``); its corpus is the part
after ``classes`` (none: the vault). Each search is fused once by the hooked fusion (``replay.hooked_fusion``)
with a hook that records, per note, what the fusion computed: the dense value after the close calls and before
them, BM25's lexical value (after the trust and the cross-language damping), its confidence, the rare-term
agreement, BM25's clear lead, the note's 1 / (1 + rank) in each leg, whether the note is in the query's language,
and dense and lexical times the query's kind (a lookup, identifiers, the number of terms, BM25's coverage and
trust, the dense span, a Russian query, each leg's margin between its first two notes). The fusion's own score is
``1·dense + 0.7·lexical + 0.3·agreement + 0.075·lead``: a point of this linear family.

Three scorers are fitted with numpy, each by gradient descent (Adam), each search's list weighted by 1 / the
searches of its cell (every cell counts the same, as its target does):

- ``listwise``: softmax cross-entropy over each search's candidates (the relevant notes the target), from zero,
  ``--l2`` towards zero;
- ``anchored``: the same from the fusion's own weights, ``--l2`` towards them (a learned correction of the rules;
  a larger ``--l2`` keeps it nearer them);
- ``pairwise``: a relevant note above a non-relevant one (logistic), each pair weighted by what swapping the two
  changes the search's nDCG@10 at the current scores (LambdaRank), from zero.

Pinned exact matches stay first under every scorer (the hook adds 1,000 to their learned score; the fusion adds its
own lead on top): the identifier guarantee is kept, and the learned score orders the pinned notes among themselves
and everything after them. Training lists hold each search's notes in the first ``--depth`` of the fusion's ranking,
of the dense leg's or of the lexical leg's, pinned notes left out (their place is fixed); a search with no relevant
note among them is left out of training. Every figure printed is the hooked fusion's own ranking (every note, the
real tie-breaks), nDCG@10 per search as ``replay.py`` scores it; a cell whose rules' replay is not the hybrid
nDCG@10 its capture's eval measured reads ``MISMATCH`` (as ``replay.py``'s ``OK`` check).

For each corpus the scorers are fitted on the other three (both models) and score it; then one scorer is fitted on
all four (in sample: an upper bound) and the weights of the folds are compared with it. Per cell it prints the
fusion's hybrid and gap, each scorer's, the searches better / worse than the fusion and whether the cell meets its
target (gap ≥ −0.005, same-language questions ≥ +0.005, known items hybrid ≥ 0.98). ``--cost N`` times, over N
searches of each capture, ``fuse()`` with the learned hook (the first scorer's weights fitted on all four) against
the hooked module without one (the default scores in the same loop), each search both ways ``--repeat`` times, the
fastest kept: the median difference is what building the features and the dot product add to a search.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import SAME_LANGUAGE_QUESTIONS, hooked_fusion, load

from kbsearch_tools.metrics import ndcg_at

NOTE_FEATURES = [
    "dense",  # after the close calls (what the fusion adds)
    "lexical",  # after the trust and the cross-language damping
    "agreement",  # the rare-term agreement
    "lead",  # BM25's clear lead
    "dense raw",  # before the close calls
    "confidence",  # the note's share of the attainable BM25 score
    "dense 1/(1+rank)",
    "lexical 1/(1+rank)",
    "same language",
]
QUERY_FEATURES = [
    "lookup",
    "identifiers",
    "log terms",
    "coverage",
    "trust",
    "span",
    "russian",
    "dense margin",  # the dense leg's first note's raw value − its second's
    "lexical margin",  # BM25's first note's lexical value − its second's
]
FEATURES = (
    NOTE_FEATURES
    + [f"dense×{q}" for q in QUERY_FEATURES]
    + [f"lexical×{q}" for q in QUERY_FEATURES]
    + ["same language×lexical"]
)
PINNED = 1000.0
Rows = list[tuple[str, Any, float, float]]


def _language(n: Any) -> str | None:
    chunk = n.dense_chunk or n.lexical_chunk or n.translated_chunk
    return chunk.payload.get("lang") if chunk is not None else None


def _ranks(values: np.ndarray) -> np.ndarray:
    """1 / (1 + rank) by value, best first; 0 for a note without a value."""
    order = np.argsort(-values, kind="stable")
    out = np.empty(len(values))
    out[order] = 1.0 / (1.0 + np.arange(len(values)))
    return np.where(values > 0, out, 0.0)


def _margin(values: np.ndarray) -> float:
    """The first value − the second (the first alone: itself)."""
    if len(values) < 2:
        return float(values.max(initial=0.0))
    first, second = np.partition(values, -2)[-2:][::-1]
    return float(first - second)


def features(rows: Rows, ctx: dict[str, Any], fusion: Any) -> np.ndarray:
    """One row of :data:`FEATURES` per note of the search."""
    evidence, p = ctx["evidence"], ctx["p"]
    k = len(rows)
    x = np.zeros((k, len(FEATURES)))
    lead = ctx["lead"]
    for i, (note, n, dense, agreed) in enumerate(rows):
        x[i, :6] = (dense, n.lexical, agreed, note == lead, n.dense, n.confidence)
        x[i, 8] = evidence.language is not None and _language(n) == evidence.language
    x[:, 6] = _ranks(x[:, 4])
    x[:, 7] = _ranks(x[:, 1])
    query = np.array([
        fusion.is_lookup(evidence, p),
        bool(evidence.identifiers),
        np.log1p(len(evidence.terms)) / 3.0,
        ctx["coverage"],
        ctx["gain"] / 2.0,
        ctx["span"],
        evidence.language == "ru",
        _margin(x[:, 4]),
        _margin(x[:, 1]),
    ], dtype=float)  # fmt: skip
    m = len(NOTE_FEATURES)
    q = len(QUERY_FEATURES)
    x[:, m : m + q] = x[:, :1] * query
    x[:, m + q : m + 2 * q] = x[:, 1:2] * query
    x[:, m + 2 * q] = x[:, 8] * x[:, 1]
    return x


def rules_weights(p: Any) -> np.ndarray:
    """The fusion's own score in :data:`FEATURES`."""
    w = np.zeros(len(FEATURES))
    w[:4] = (1.0, p.lexical_weight, p.rare_agreement, p.lead_bonus)
    return w


def record(fusion: Any, cells: dict) -> dict:
    """Per cell, per search: the notes, their features, which are pinned, which are relevant, the fusion's rank."""
    seen: dict[str, Any] = {}

    def hook(rows: Rows, ctx: dict[str, Any]) -> None:
        seen["rows"], seen["ctx"] = rows, ctx

    out = {}
    fusion.HOOK = hook
    try:
        for key, captured in cells.items():
            searches = []
            for _, relevant, results, evidence, limit in captured["rows"]:
                seen.clear()
                fused = [c.payload.get("path") for c in fusion.fuse(results, evidence, limit, "hybrid")]
                rows = seen.get("rows", [])
                notes = [row[0] for row in rows]
                x = features(rows, seen["ctx"], fusion) if rows else np.zeros((0, len(FEATURES)))
                pinned = np.array([note in seen["ctx"]["pinned"] for note in notes], dtype=bool)
                rank = {note: i for i, note in enumerate(fused)}
                searches.append({"notes": notes, "x": x, "pinned": pinned,
                                 "relevant": np.array([note in relevant for note in notes], dtype=bool),
                                 "wanted": len(relevant),
                                 "fused": np.array([rank.get(note, 10**6) for note in notes])})  # fmt: skip
            out[key] = searches
    finally:
        fusion.HOOK = None
    return out


def training_lists(cells: list[list[dict]], depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Padded (search, candidate, feature) arrays of every cell's searches: each search's unpinned notes among the
    first ``depth`` of the fusion's, the dense leg's or the lexical leg's ranking; the relevance target; the mask;
    each search's weight (1 / the searches of its cell trained on: every cell counts the same, as its target does)."""
    lists = []
    for searches in cells:
        kept = []
        for s in searches:
            x = s["x"]
            if not len(x):
                continue
            near = (s["fused"] < depth) | (x[:, 6] >= 1.0 / depth) | (x[:, 7] >= 1.0 / depth)
            keep = near & ~s["pinned"]
            if s["relevant"][keep].any() and (~s["relevant"][keep]).any():
                kept.append((x[keep], s["relevant"][keep]))
        lists += [(x, r, 1.0 / len(kept)) for x, r in kept]
    if not lists:
        raise SystemExit("no search to train on: none has a relevant and a non-relevant note among its candidates")
    width = max(len(r) for _, r, _ in lists)
    xs = np.zeros((len(lists), width, len(FEATURES)))
    target = np.zeros((len(lists), width))
    mask = np.zeros((len(lists), width), dtype=bool)
    weight = np.array([w for _, _, w in lists])
    for i, (x, r, _) in enumerate(lists):
        xs[i, : len(r)], mask[i, : len(r)] = x, True
        target[i, : len(r)] = r / r.sum()
    return xs, target, mask, weight / weight.sum()


def fit(data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], start: np.ndarray, prior: np.ndarray, l2: float,
        steps: int = 400, rate: float = 0.02) -> np.ndarray:  # fmt: skip
    """Softmax cross-entropy over each list (the relevant notes the target; each list by its weight), + ``l2`` ·
    |w − prior|², by Adam."""
    xs, target, mask, weight = data
    w = start.copy()
    m1, m2 = np.zeros_like(w), np.zeros_like(w)
    for t in range(1, steps + 1):
        s = np.where(mask, xs @ w, -np.inf)
        s -= s.max(axis=1, keepdims=True)
        prob = np.exp(s)
        prob /= prob.sum(axis=1, keepdims=True)
        grad = np.einsum("sk,skf->f", (prob - target) * weight[:, None], xs) + 2 * l2 * (w - prior)
        m1 = 0.9 * m1 + 0.1 * grad
        m2 = 0.999 * m2 + 0.001 * grad**2
        w -= rate * (m1 / (1 - 0.9**t)) / (np.sqrt(m2 / (1 - 0.999**t)) + 1e-8)
    return w


def fit_pairwise(data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], start: np.ndarray, prior: np.ndarray,
                 l2: float, steps: int = 400, rate: float = 0.02, block: int = 2000) -> np.ndarray:  # fmt: skip
    """Pairwise (a relevant note above a non-relevant one, logistic), each pair weighted by what swapping the two
    would change the list's nDCG@10 at the current scores (LambdaRank), + ``l2`` · |w − prior|², by Adam."""
    xs, target, mask, weight = data
    discount = np.where(np.arange(xs.shape[1]) < 10, 1.0 / np.log2(np.arange(xs.shape[1]) + 2.0), 0.0)
    relevant = target > 0
    ideal = np.array([discount[: min(10, int(r.sum()))].sum() for r in relevant])
    w = start.copy()
    m1, m2 = np.zeros_like(w), np.zeros_like(w)
    for t in range(1, steps + 1):
        grad = 2 * l2 * (w - prior)
        for lo in range(0, len(xs), block):
            x, m, rel = xs[lo : lo + block], mask[lo : lo + block], relevant[lo : lo + block]
            s = np.where(m, x @ w, -np.inf)
            rank = np.argsort(np.argsort(-s, axis=1, kind="stable"), axis=1)
            d = discount[rank]
            pairs = rel[:, :, None] & (m & ~rel)[:, None, :]  # i relevant, j not
            swap = np.abs(d[:, :, None] - d[:, None, :]) / ideal[lo : lo + block, None, None]
            diff = np.where(pairs, s[:, :, None] - np.where(m, s, 0.0)[:, None, :], 0.0)
            lam = (
                np.where(pairs, swap / (1.0 + np.exp(np.clip(diff, -50, 50))), 0.0)
                * weight[lo : lo + block, None, None]
            )
            # d loss / d w = Σ λ_ij (x_j − x_i)
            grad += np.einsum("sj,sjf->f", lam.sum(axis=1), x) - np.einsum("si,sif->f", lam.sum(axis=2), x)
        m1 = 0.9 * m1 + 0.1 * grad
        m2 = 0.999 * m2 + 0.001 * grad**2
        w -= rate * (m1 / (1 - 0.9**t)) / (np.sqrt(m2 / (1 - 0.999**t)) + 1e-8)
    return w


def learned_hook(w: np.ndarray, fusion: Any) -> Callable[[Rows, dict[str, Any]], list[float]]:
    def hook(rows: Rows, ctx: dict[str, Any]) -> list[float]:
        scores = features(rows, ctx, fusion) @ w
        pinned = ctx["pinned"]
        return [float(s) + (PINNED if row[0] in pinned else 0.0) for s, row in zip(scores, rows, strict=True)]

    return hook


def replay(fusion: Any, cells: dict, hook: Any) -> dict:
    """Per cell, each search's nDCG@10 by the hooked fusion (None: the fusion's own scores)."""
    fusion.HOOK = hook
    try:
        return {key: [ndcg_at([c.payload.get("path") for c in fusion.fuse(results, evidence, limit, "hybrid")],
                              set(relevant), 10) for _, relevant, results, evidence, limit in captured["rows"]]
                for key, captured in cells.items()}  # fmt: skip
    finally:
        fusion.HOOK = None


def meets(name: str, hybrid: float, gap: float) -> bool:
    floor = 0.005 if name in SAME_LANGUAGE_QUESTIONS else -0.005
    return gap >= floor - 1e-9 and (hybrid >= 0.98 - 1e-9 if "known-item" in name else True)


def corpus_of(path: Path) -> str:
    stem = path.stem.split("-", 1)[1] if "-" in path.stem else path.stem
    rest = stem.removeprefix("classes").lstrip("-")
    return rest or "vault"


def report(cells: dict, base: dict, sides: dict[str, dict], corpus: dict) -> dict[str, list[int]]:
    """Every cell: the fusion's hybrid and gap, each side's, its searches better / worse; the totals per side."""
    totals = {name: [0, 0, 0] for name in ["rules", *sides]}  # better, worse, cells meeting
    header = f"{'corpus':6} {'model':4} {'class':20} {'n':>4} {'rules':>7} {'gap':>8}"
    for name in sides:
        header += f" | {name:>8} {'gap':>8} {'b/w':>7}"
    print(header)
    for key in sorted(cells, key=lambda k: (corpus[k], k)):
        phases = cells[key]["phases"]
        best = max(phases["lexical"], phases["dense"])
        before = float(np.mean(base[key]))
        ok = meets(key[1], before, before - best)
        totals["rules"][2] += ok
        line = f"{corpus[key]:6} {key[0]:4} {key[1]:20} {len(base[key]):4} {before:7.4f} {before - best:+8.4f}"
        line += ("" if ok else "*") + ("" if abs(before - phases["hybrid"]) < 6e-5 else " MISMATCH")
        for name, side in sides.items():
            after = float(np.mean(side[key]))
            up = sum(b > a + 1e-9 for a, b in zip(base[key], side[key], strict=True))
            down = sum(b < a - 1e-9 for a, b in zip(base[key], side[key], strict=True))
            good = meets(key[1], after, after - best)
            totals[name][0] += up
            totals[name][1] += down
            totals[name][2] += good
            line += f"{'' if ok else ' '} | {after:8.4f} {after - best:+8.4f}{'' if good else '*'} {up:3}/{down:<3}"
        print(line)
    return totals


def cost(fusion: Any, cells_by_file: dict[Path, dict], w: np.ndarray, n: int, repeat: int) -> None:
    hook = learned_hook(w, fusion)
    for path, cells in cells_by_file.items():
        searches = [(results, evidence, limit) for c in cells.values() for _, _, results, evidence, limit in c["rows"]]
        searches = searches[:: max(1, len(searches) // n)][:n]
        plain, learned = [], []
        for results, evidence, limit in searches:
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(repeat):
                for on in (False, True):
                    fusion.HOOK = hook if on else None
                    start = time.perf_counter()
                    fusion.fuse(results, evidence, limit, "hybrid")
                    times[on].append(time.perf_counter() - start)
            fusion.HOOK = None
            plain.append(min(times[False]) * 1e6)
            learned.append(min(times[True]) * 1e6)
        diff = statistics.median(b - a for a, b in zip(plain, learned, strict=True))
        print(f"{path.name}: {len(searches)} searches, rules p50 {statistics.median(plain):.1f} µs, learned p50 "
              f"{statistics.median(learned):.1f} µs, median difference {diff:+.1f} µs")  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="+", type=Path)
    parser.add_argument("--depth", type=int, default=20, help="training lists: the first this many of each ranking")
    parser.add_argument("--l2", type=float, default=0.01, help="the L2 penalty (towards 0, or the rules' weights)")
    parser.add_argument("--steps", type=int, default=400, help="the listwise scorers' steps of gradient descent")
    parser.add_argument("--pair-steps", type=int, default=100, help="the pairwise scorer's (each ~0.5 s)")
    parser.add_argument("--scorer", action="append", choices=["listwise", "anchored", "pairwise"],
                        help="fit only this scorer (repeatable; default: all three)")  # fmt: skip
    parser.add_argument("--cost", type=int, default=0, metavar="N", help="time the learned hook over N searches")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    args.scorer = args.scorer or ["listwise", "anchored", "pairwise"]
    fusion = hooked_fusion()
    p = fusion.FusionParams()
    rules = rules_weights(p)
    by_file = {path: load([path]) for path in args.captures}
    cells = {key: c for loaded in by_file.values() for key, c in loaded.items()}
    corpus = {key: corpus_of(path) for path, loaded in by_file.items() for key in loaded}
    corpora = sorted(set(corpus.values()))
    if len(corpora) < 2:
        raise SystemExit(f"leave one corpus out needs captures of two corpora or more (these are all {corpora[0]})")
    started = time.perf_counter()
    recorded = record(fusion, cells)
    base = replay(fusion, cells, None)
    print(f"{len(cells)} cells, {sum(len(s) for s in recorded.values())} searches, features recorded and the rules "
          f"replayed in {time.perf_counter() - started:.0f} s")  # fmt: skip

    def data(keys: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return training_lists([recorded[key] for key in keys], args.depth)

    zero = np.zeros(len(FEATURES))
    scorers = {"listwise": (fit, zero, args.steps), "anchored": (fit, rules, args.steps),
               "pairwise": (fit_pairwise, zero, args.pair_steps)}  # fmt: skip
    scorers = {name: scorer for name, scorer in scorers.items() if name in args.scorer}
    sides: dict[str, dict] = {name: {} for name in scorers}
    weights: dict[str, dict[str, np.ndarray]] = {name: {} for name in scorers}
    for held in corpora:
        train = [key for key in cells if corpus[key] != held]
        test = {key: cells[key] for key in cells if corpus[key] == held}
        lists = data(train)
        for name, (fitter, start, steps) in scorers.items():
            w = fitter(lists, start, start, args.l2, steps)
            weights[name][held] = w
            sides[name].update(replay(fusion, test, learned_hook(w, fusion)))
        print(f"fold {held}: trained on {len(lists[0])} searches of {', '.join(c for c in corpora if c != held)}")
    print("\nLeave one corpus out (each corpus scored by the scorers fitted on the other three; * = short):")
    totals = report(cells, base, sides, corpus)
    for name, (up, down, good) in totals.items():
        extra = f", searches better / worse than the rules {up} / {down}" if name != "rules" else ""
        print(f"{name}: cells meeting their target {good} of {len(cells)}{extra}")

    lists = data(list(cells))
    inside: dict[str, dict] = {}
    for name, (fitter, start, steps) in scorers.items():
        w = fitter(lists, start, start, args.l2, steps)
        weights[name]["all"] = w
        inside[f"{name} all"] = replay(fusion, cells, learned_hook(w, fusion))
    print("\nFitted on all four corpora, scored in sample (an upper bound):")
    totals = report(cells, base, inside, corpus)
    for name, (up, down, good) in totals.items():
        extra = f", searches better / worse than the rules {up} / {down}" if name != "rules" else ""
        print(f"{name}: cells meeting their target {good} of {len(cells)}{extra}")

    for name in scorers:
        folds = np.array([weights[name][c] for c in corpora])
        every = weights[name]["all"]
        cosines = [float(f @ every / (np.linalg.norm(f) * np.linalg.norm(every))) for f in folds]
        print(f"\n{name}: weights per fold (without {', '.join(corpora)}), on all four, std across the folds; "
              f"cosine of each fold's weights with all four's: {', '.join(f'{c:.3f}' for c in cosines)}")  # fmt: skip
        print(f"    {'feature':24}" + "".join(f"{c:>8}" for c in corpora) + f"{'all':>8}{'std':>8}{'rules':>8}")
        for i, feature in enumerate(FEATURES):
            print(f"    {feature:24}" + "".join(f"{v:8.3f}" for v in folds[:, i])
                  + f"{every[i]:8.3f}{folds[:, i].std():8.3f}{rules[i]:8.3f}")  # fmt: skip
    if args.cost:
        print()
        cost(fusion, by_file, weights[args.scorer[0]]["all"], args.cost, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
