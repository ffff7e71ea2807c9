"""Our metric code against trec_eval (pytrec_eval) on a fixture with ties and queries without relevant docs."""

from __future__ import annotations

import random

import pytest
import pytrec_eval

from kbsearch_tools.metrics import mrr_at, ndcg_at, precision_at, recall_at


def trec_order(run: dict[str, float]) -> list[str]:
    """trec_eval's ranking: score descending, ties broken by document id descending."""
    return [d for d, _ in sorted(run.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def fixture() -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    rng = random.Random(5)
    qrels: dict[str, dict[str, int]] = {}
    runs: dict[str, dict[str, float]] = {}
    docs = [f"d{i:03d}" for i in range(120)]
    for q in range(25):
        qid = f"q{q:02d}"
        relevant = rng.sample(docs, rng.randint(0, 8))
        qrels[qid] = {d: 1 for d in relevant} | {d: 0 for d in rng.sample(docs, 3) if d not in relevant}
        if not any(qrels[qid].values()):
            qrels[qid] = qrels[qid] or {"d000": 0}  # a query without relevant documents
        retrieved = rng.sample(docs, rng.randint(0, 70))
        # coarse scores: many ties, which trec_eval breaks by document id
        runs[qid] = {d: float(rng.randint(0, 9)) for d in retrieved}
    return qrels, runs


def test_metrics_match_trec_eval() -> None:
    qrels, runs = fixture()
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"P_5", "ndcg_cut_10", "recip_rank", "recall_50"})
    expected = evaluator.evaluate(runs)
    assert any(not any(v for v in q.values()) for q in qrels.values())  # the fixture has empty queries
    assert any(len(set(r.values())) < len(r) for r in runs.values())  # and ties
    for qid, run in runs.items():
        ranking = trec_order(run)
        relevant = {d for d, rel in qrels[qid].items() if rel > 0}
        ref = expected[qid]
        assert precision_at(ranking, relevant, 5) == pytest.approx(ref["P_5"])
        assert ndcg_at(ranking, relevant, 10) == pytest.approx(ref["ndcg_cut_10"])
        assert recall_at(ranking, relevant, 50) == pytest.approx(ref["recall_50"])
        first = next((i for i, d in enumerate(ranking) if d in relevant), None)
        # trec_eval's recip_rank is uncut; MRR@10 is the same when the first hit is within 10, else 0
        assert mrr_at(ranking, relevant, 10) == pytest.approx(
            ref["recip_rank"] if first is not None and first < 10 else 0.0
        )


def test_edge_cases() -> None:
    assert precision_at([], {"a"}, 5) == 0.0
    assert ndcg_at(["a"], set(), 10) == 0.0 and recall_at(["a"], set(), 50) == 0.0
    assert ndcg_at(["a", "b"], {"a", "b"}, 10) == pytest.approx(1.0)
    assert precision_at(["a"], {"a"}, 5) == pytest.approx(0.2)  # divides by k, as trec_eval
