"""Where the two legs disagree on their first note: does the query's *vocabulary held* by each first tell which leg
is right? (Session 35, fus35a: EVAL.md, "Session 35: which leg is right when the legs disagree (issue 19, fus35a)".)

    .venv/bin/python eval/replay/vocabulary.py $CAPS [--cells e5:gnome-question-ru,use:gnome-question-en]

A capture that is not the committed query sets is refused (``replay.py``'s check; ``--allow-stale`` reads it).

A note's vocabulary held is the share of the query's attainable BM25 score (the probes' best scores of its present
terms) whose terms its chunks the fusion holds (its dense and its BM25 chunk: title, heading path and text, read by
:func:`kbsearch.lexical.tokenize`) contain at all, however often; its rare terms held, how many of the query's rare
terms (fewer than ``PROBE_DEPTH`` chunks hold each) they contain. For every search with nothing pinned whose dense
first note (by the fusion's per-note dense value) is not BM25's first (by its lexical value after the trust and the
language factor) and exactly one of the two is relevant, it prints per model, corpus and class group (``Q``: the
same-language question classes) how often dense was right, the AUC of "dense's first holds more of the vocabulary
than BM25's" (and of the rare terms) for "dense is right", and, of the searches where the fusion's first is the
wrong one of the two, in how many the vocabulary points at the right one. ``--cells`` lists those searches of the
named cells, with both firsts' vocabulary and rare terms held, and each such cell's mean nDCG@10 as the fusion ranks
and as it would rank with the right one of the two firsts put first wherever the legs disagree (the ceiling of any
rule choosing between them).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import SAME_LANGUAGE_QUESTIONS, hooked_fusion, load

from kbsearch.lexical import term_id, tokenize
from kbsearch.qdrant.query import PROBE_DEPTH
from kbsearch_tools.metrics import ndcg_at

CORPORA = ("gnome", "debdoc", "man", "lo")
_TERMS: dict[str, frozenset[int]] = {}


def chunk_terms(chunk: Any) -> frozenset[int]:
    """The term ids of a chunk's title, heading path and text (cached by text)."""
    payload = chunk.payload
    text = f"{payload.get('title') or ''}\n{payload.get('heading') or ''}\n{payload.get('text') or ''}"
    held = _TERMS.get(text)
    if held is None:
        if len(_TERMS) > 200_000:
            _TERMS.clear()
        held = _TERMS[text] = frozenset(term_id(t) for t in tokenize(text))
    return held


def vocabulary(n: Any, weights: dict[int, float]) -> float:
    """The share of ``weights`` (term → its probe's best score) whose terms one of the note's chunks holds."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    chunks = [c for c in (n.dense_chunk, n.lexical_chunk) if c is not None]
    return max((sum(w for t, w in weights.items() if t in chunk_terms(c)) / total for c in chunks), default=0.0)


def rare_held(n: Any, rare: set[int]) -> int:
    """How many of the ``rare`` terms one of the note's chunks holds."""
    chunks = [c for c in (n.dense_chunk, n.lexical_chunk) if c is not None]
    return max((len(rare & chunk_terms(c)) for c in chunks), default=0)


def corpus(cell: str) -> str:
    if cell.startswith("bil:"):
        return "bil"
    head = cell.split("-", 1)[0]
    return head if head in CORPORA else "vault"


def auc(pairs: list[tuple[float, bool]]) -> float:
    """P(a dense-right search's value > a BM25-right one's), ties a half."""
    pos = [v for v, right in pairs if right]
    neg = [v for v, right in pairs if not right]
    if not pos or not neg:
        return float("nan")
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / len(pos) / len(neg)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="+", type=Path)
    parser.add_argument("--cells", default="", help="model:class,... whose disagreements the fusion loses are listed")
    parser.add_argument("--no-texts", dest="texts", action="store_false", help="no chunk heading or text re-attached")
    parser.add_argument("--allow-stale", action="store_true", help="read a capture that is not the committed sets "
                        "(replay.py's --allow-stale: each such cell flagged STALE)")  # fmt: skip
    args = parser.parse_args(argv)
    fusion = hooked_fusion()  # kbsearch.fusion, its scoring loop opened: the hook records each search's rows
    wanted = {tuple(c.split(":", 1)) for c in args.cells.split(",") if c}
    seen: dict[str, Any] = {}

    def record(rows: Any, context: dict[str, Any]) -> None:
        seen["rows"], seen["ctx"] = rows, context

    groups: dict[tuple[str, str, str], list[tuple[float, float, bool, bool]]] = defaultdict(list)
    listed: list[str] = []
    ceiling: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)  # per search: hybrid, right first
    cells = load(args.captures, args.texts, check=True, allow_stale=args.allow_stale)
    fusion.HOOK = record
    try:
        for (model, cell), captured in cells.items():
            group = "Q" if cell.split(":")[-1] in SAME_LANGUAGE_QUESTIONS else "other"
            for query, relevant, results, evidence, limit in captured["rows"]:
                seen.clear()
                fused = fusion.fuse(results, evidence, limit, "hybrid")
                ranked = [c.payload.get("path") for c in fused]
                scores = ceiling[(model, cell)] if (model, cell) in wanted else []
                scores.append((ndcg_at(ranked, set(relevant), 10),) * 2)
                rows, ctx = seen.get("rows"), seen.get("ctx")
                if not rows or ctx is None or ctx["pinned"] or not fused:
                    continue
                d = min(rows, key=lambda r: (-r[1].dense, r[0]))
                lx = min(rows, key=lambda r: (-r[1].lexical, r[0]))
                if d[0] == lx[0] or lx[1].lexical <= 0 or (d[0] in relevant) == (lx[0] in relevant):
                    continue
                good = d[0] if d[0] in relevant else lx[0]  # the right one of the two firsts, put first
                moved = ndcg_at([good, *(p for p in ranked if p != good)], set(relevant), 10)
                scores[-1] = (scores[-1][0], max(scores[-1][0], moved))
                probes, depth = ctx["probes"], ctx["depth"]
                weights = {t: probes[t] for t in evidence.terms if probes.get(t, 0.0) > 0}
                rare = {t for t in weights if depth.get(t, 0) < PROBE_DEPTH}
                dv, lv = vocabulary(d[1], weights), vocabulary(lx[1], weights)
                dr, lr = rare_held(d[1], rare), rare_held(lx[1], rare)
                dense_right = d[0] in relevant
                first = fused[0].payload.get("path")
                lost = first != (d[0] if dense_right else lx[0])
                groups[(model, corpus(cell), group)].append((dv - lv, dr - lr, dense_right, lost))
                if (model, cell) in wanted and lost:
                    listed.append(f"{model:4} {cell:22} {'dense' if dense_right else 'BM25 '} right, fused first "
                                  f"{'dense' if first == d[0] else 'BM25' if first == lx[0] else 'a third'}'s: "
                                  f"vocabulary dense {dv:.2f} BM25 {lv:.2f}, rare terms {dr}/{lr} of {len(rare)} | "
                                  f"{query[:60]}")  # fmt: skip
    finally:
        fusion.HOOK = None
    print(
        "model corpus  group    n  dense right  AUC vocabulary  AUC rare  lost: vocabulary points right / wrong / even"
    )
    for key in sorted(groups):
        found = groups[key]
        lost = [f for f in found if f[3]]
        right = sum((f[0] > 0) == f[2] and f[0] != 0 for f in lost)
        even = sum(f[0] == 0 for f in lost)
        print(f"{key[0]:5} {key[1]:7} {key[2]:5} {len(found):4} {sum(f[2] for f in found):12} "
              f"{auc([(f[0], f[2]) for f in found]):15.2f} {auc([(f[1], f[2]) for f in found]):9.2f}  "
              f"{right:3} / {len(lost) - right - even:3} / {even:3}")  # fmt: skip
    for line in listed:
        print(line)
    for key, cell_scores in ceiling.items():
        n = len(cell_scores)
        print(f"{key[0]:4} {key[1]:22} n={n}: hybrid {sum(h for h, _ in cell_scores) / n:.4f}, the right one of the "
              f"legs' two firsts always first {sum(b for _, b in cell_scores) / n:.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
