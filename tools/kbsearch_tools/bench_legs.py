"""``kbsearch bench legs``: where a warm search's one Qdrant call spends its time on an embedded store that already
exists (``QDRANT_PATH``, e.g. the 100x vault's), leg by leg and engine setting by engine setting.

The search service runs ``queries`` warm hybrid searches (no expansion, no rerank, the loopback fake embedder
answering at once from its own process, as in ``bench growth``; each stage's time from the answer's
``timings_ms``) and the batch of each is recorded as the service built it (``batch_searches``: the dense leg,
the BM25 legs, the one-term probes). Each recorded batch is then run again on the store, ``runs`` times each
(medians), as a whole (``query_legs``) and leg by leg (the searches are also run a second time through the
service: a search's first run maps the pages of the vectors and payloads it touches in this process), and the dense leg under the engine's settings: the
search's ``hnsw_ef`` and others, graph segments only (``indexed_only``: what the segments not yet given a graph
cost is the difference), exact everywhere, and without its payload. Nothing is written to the store.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from kbsearch_tools.bench_growth import VOCABULARY

#: the dense leg's variants: label → what changes in its ``params`` (or the request)
DENSE_VARIANTS: dict[str, dict[str, Any]] = {
    "as the search asks": {},
    "hnsw_ef 64": {"params": {"hnsw_ef": 64}},
    "hnsw_ef 128": {"params": {"hnsw_ef": 128}},
    "graph segments only": {"params": {"indexed_only": True}},
    "exact everywhere": {"params": {"exact": True}},
    "no payload": {"with_payload": False},
}


LEG_KINDS = ("dense", "bm25", "bm25 ids only", "probes")


def _kind(search: dict[str, Any]) -> str:
    """Which leg a search of the batch is: dense (the query's, or a rewrite's), BM25 with payload, BM25 as ids and
    scores only (a leg's tail), or a one-term probe (one term of weight 1)."""
    from kbsearch.qdrant.query import DENSE

    if search.get("using") == DENSE:
        return "dense"
    query = (search.get("query") or {}).get("nearest") or {}
    if isinstance(query, dict) and query.get("values") == [1.0] and len(query.get("indices") or ()) == 1:
        return "probes"
    return "bm25" if search.get("with_payload") else "bm25 ids only"


def _timed(store: Any, searches: list[dict[str, Any]], runs: int) -> float:
    """Median milliseconds of ``runs`` calls of ``query_legs`` (the search's call) with these searches."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        store.query_legs(searches, [s.get("with_payload") is False for s in searches], 30.0)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _variant(search: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(search)
    for key, value in change.items():
        if key == "params":
            out["params"] = {**(out.get("params") or {}), **value}
        else:
            out[key] = value
    return out


#: The fake embedder in a process of its own (a search process does not share its GIL with the fake's server).
_FAKE_CHILD = r"""
import json, sys
from kbsearch_tools.fakes import FakeProvider
fake = FakeProvider("deepinfra", api_key="bench-key").start()
print(json.dumps({"url": fake.embeddings_url, "key": fake.api_key}), flush=True)
sys.stdin.read()
fake.stop()
"""


def bench_legs(queries: int = 30, runs: int = 3, progress: Any = None) -> dict[str, Any]:
    import random

    from kbsearch.config import Secrets, Settings
    from kbsearch.qdrant.embedded import EdgeStore, EmbeddedRetriever
    from kbsearch.schemas import SearchRequest
    from kbsearch.search import SearchService
    from kbsearch_tools.bench import _machine

    fake = subprocess.Popen(
        [sys.executable, "-c", _FAKE_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert fake.stdout is not None and fake.stdin is not None
    where = json.loads(fake.stdout.readline())
    os.environ.update(EMBEDDING_URL=where["url"], EMBEDDING_API_KEY=where["key"])
    settings = Settings()
    rng = random.Random(5)
    texts = [" ".join(rng.sample(VOCABULARY, 3)) + f" {i}" for i in range(queries + 3)]
    t0 = time.perf_counter()
    service = SearchService(settings, Secrets(settings))
    recorded: list[list[dict[str, Any]]] = []
    try:
        retriever = service.retriever
        if not isinstance(retriever, EmbeddedRetriever):
            raise SystemExit("bench legs measures the embedded store: unset QDRANT_URL, set QDRANT_PATH")
        store = retriever.store
        if not isinstance(store, EdgeStore):
            raise SystemExit("bench legs measures Qdrant Edge (QDRANT_EMBEDDED=edge)")
        retriever.metadata(10.0)
        open_s = time.perf_counter() - t0
        batch = store.query_legs

        calls: list[float] = []

        def recording(searches: list[dict[str, Any]], bare: Any, timeout_s: float) -> Any:
            recorded.append(copy.deepcopy(searches))
            t0 = time.perf_counter()
            try:
                return batch(searches, bare, timeout_s)
            finally:
                calls.append((time.perf_counter() - t0) * 1000)

        store.query_legs = recording  # type: ignore[method-assign]  # records what the search asks, unchanged
        whole = []
        stages: dict[str, list[float]] = {}
        for i, text in enumerate(texts):
            t0 = time.perf_counter()
            answer = service.search(SearchRequest(query=text, top_k=10, rerank=False, expand=False))
            if i >= 3:
                whole.append((time.perf_counter() - t0) * 1000)
                for stage, ms in answer.meta.timings_ms.items():
                    stages.setdefault(stage, []).append(ms)
        store.query_legs = batch  # type: ignore[method-assign]
        warm = recorded[3:]
        again = []  # the same searches once more: what is left once their pages are mapped in this process
        for text in texts[3:]:
            t0 = time.perf_counter()
            service.search(SearchRequest(query=text, top_k=10, rerank=False, expand=False))
            again.append((time.perf_counter() - t0) * 1000)
        legs: dict[str, list[float]] = {"whole batch": [], **{k: [] for k in LEG_KINDS}}
        dense: dict[str, list[float]] = {label: [] for label in DENSE_VARIANTS}
        counts: dict[str, int] = {}
        for n, searches in enumerate(warm):
            legs["whole batch"].append(_timed(store, searches, runs))
            kinds = {k: [s for s in searches if _kind(s) == k] for k in LEG_KINDS}
            for kind, group in kinds.items():
                if group:
                    legs[kind].append(_timed(store, group, runs))
                counts[kind] = counts.get(kind, 0) + len(group)
            for label, change in DENSE_VARIANTS.items():  # the dense legs: the query's, and a rewrite's (ids only)
                dense[label].append(_timed(store, [_variant(s, change) for s in kinds["dense"]], runs))
            if progress:
                progress({"query": n + 1, "whole_ms": round(legs["whole batch"][-1], 1)})
        info = store.shard.info()
        return {
            "store": str(store.root), "points": int(info.points_count), "segments": int(info.segments_count),
            "queries": len(warm), "runs": runs,
            "open_s": open_s, "search_p50_ms": statistics.median(whole),
            "stages_p50_ms": {k: statistics.median(v) for k, v in stages.items() if any(v)},
            "search_call_p50_ms": statistics.median(calls[3:]), "search_again_p50_ms": statistics.median(again),
            "legs_per_search": {k: v / max(1, len(warm)) for k, v in counts.items()},
            "legs_p50_ms": {k: statistics.median(v) for k, v in legs.items() if v},
            "dense_p50_ms": {k: statistics.median(v) for k, v in dense.items() if v},
            "machine": _machine(), "load": os.getloadavg(),
        }  # fmt: skip
    finally:
        service.close()
        fake.stdin.close()
        fake.wait(timeout=30)


def format_legs(r: dict[str, Any]) -> str:
    lines = [
        f"bench legs: {r['store']} ({r['points']:,} points in {r['segments']} segments; {r['queries']} warm "
        f"searches, each batch re-run {r['runs']} times, medians; load {r['load'][0]:.1f})",
        f"open (service + store) {r['open_s']:.2f} s; whole search p50 {r['search_p50_ms']:.1f} ms (the same searches "
        f"again: {r['search_again_p50_ms']:.1f} ms); legs per search: "
        + ", ".join(f"{k} {v:.1f}" for k, v in r["legs_per_search"].items()),
    ]
    lines.append("the search's stages (timings_ms, p50 each): " + ", ".join(
        f"{k} {v:.1f}" for k, v in r["stages_p50_ms"].items()))  # fmt: skip
    lines.append(f"the search's own query_legs call (first run of each batch): p50 {r['search_call_p50_ms']:.1f} ms")
    lines.append("the recorded batches re-run on the store:")
    lines += [f"  {k:<28} {v:8.1f} ms" for k, v in r["legs_p50_ms"].items()]
    lines.append("dense leg alone:")
    lines += [f"  {k:<28} {v:8.1f} ms" for k, v in r["dense_p50_ms"].items()]
    return "\n".join(lines)
