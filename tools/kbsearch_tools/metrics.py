"""Retrieval metrics (binary relevance) and labelled query sets.

Conventions (those of trec_eval / ranx): P@k divides by k even when fewer results come back; nDCG@k uses
gain 1 per relevant hit and log2(rank + 1) discounts, over the ideal ordering of all relevant documents;
MRR@k is 1/rank of the first relevant hit within k, else 0; Recall@k divides by the number of relevant
documents. A query without relevant documents scores 0 on every metric (it is still counted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kbsearch.errors import KbSearchError
from kbsearch_tools import read_file, utf8_text, yaml_problem


def precision_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return sum(1 for d in ranked[:k] if d in relevant) / k


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    if not relevant:
        return 0.0
    return sum(1 for d in ranked[:k] if d in relevant) / len(relevant)


def mrr_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if d in relevant:
            return 1.0 / (i + 1)
    return 0.0


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal


def summarize(runs: Sequence[tuple[Sequence[str], set[str]]]) -> dict[str, float]:
    """Mean P@5, nDCG@10, MRR@10, Recall@50 over (ranking, relevant set) pairs."""
    n = max(1, len(runs))
    return {
        "P@5": sum(precision_at(r, rel, 5) for r, rel in runs) / n,
        "nDCG@10": sum(ndcg_at(r, rel, 10) for r, rel in runs) / n,
        "MRR@10": sum(mrr_at(r, rel, 10) for r, rel in runs) / n,
        "Recall@50": sum(recall_at(r, rel, 50) for r, rel in runs) / n,
    }


@dataclass(frozen=True)
class LabelledQuery:
    query: str
    relevant: frozenset[str]
    kind: str | None = None  # what sort of query it is (the query sets' ``kind``: question, identifier, long...)
    filters: dict[str, Any] | None = None  # the search's filters (an exported vote's: ``metadata.filters``)


#: The largest queries file read (the KB's labelled sets are a few KB; BEIR's are read line by line).
MAX_QUERIES_BYTES = 64 * 1024 * 1024


def load_queries(path: str | Path) -> list[LabelledQuery]:
    """A YAML/JSON list of ``{query, relevant: [note paths]}`` (optional ``kind``: a string naming what sort of
    query it is, which ``kbsearch eval --classes`` reports separately)."""
    text = utf8_text(read_file(path, f"queries file {path}", MAX_QUERIES_BYTES), f"queries file {path}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KbSearchError(f"queries file {path} is not valid YAML/JSON: {yaml_problem(exc)}") from None
    if not isinstance(data, list):
        raise KbSearchError(f"queries file {path} must be a list of {{query, relevant}} items")
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("query"), str):
            raise KbSearchError(f"queries file {path}: item {i} has no query")
        relevant = item.get("relevant") or []
        if not isinstance(relevant, list):
            raise KbSearchError(f"queries file {path}: item {i}: relevant must be a list of paths")
        kind = item.get("kind")
        if kind is not None and not isinstance(kind, str):
            raise KbSearchError(f"queries file {path}: item {i}: kind must be a string")
        out.append(LabelledQuery(item["query"], frozenset(str(r) for r in relevant), kind or None))
    return out
