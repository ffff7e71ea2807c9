"""``kbsearch bench``: reproducible measurements against loopback fakes and the embedded store."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
from kbsearch_tools import repo_root
from kbsearch_tools.fakes import FakeEndpoint, FakeProvider, provider_env
from kbsearch_tools.local.process import serve_process


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }


def _settings(store: Path, fake: FakeProvider | None, **extra: Any) -> Settings:
    values: dict[str, Any] = {"qdrant_path": str(store), "embedding_dimensions": extra.pop("dims", 1024)}
    values |= provider_env(fake, roles=["EMBEDDING"], fields=True)
    return Settings(**(values | extra))


def bench_index(
    kb: Path,
    latency_ms: float = 150.0,
    batch_sizes: tuple[int, ...] = (16, 32, 64),
    concurrencies: tuple[int, ...] = (1, 4, 8),
    runs: int = 5,
    dims: int = 1024,
    progress: Any = None,
) -> dict[str, Any]:
    """Full syncs over a grid of batch size x concurrency with a fake embedder of fixed latency, then the
    no-change sync (in-process and as a whole ``kbsearch index`` command), medians of ``runs``."""
    fake = FakeProvider("deepinfra", api_key="bench-key", latency_s=latency_ms / 1000).start()
    results: dict[str, Any] = {"kb": str(kb), "latency_ms": latency_ms, "dims": dims, "machine": _machine()}
    try:
        with tempfile.TemporaryDirectory(prefix="kbsearch-bench-") as tmp:
            root = Path(tmp)
            grid = []
            for batch in batch_sizes:
                for conc in concurrencies:
                    store = root / f"full-{batch}-{conc}"
                    settings = _settings(store, fake, dims=dims, embedding_batch_size=batch, embedding_concurrency=conc)
                    before = len(fake.requests)
                    report = run_sync(settings, Secrets(settings), source_uri=str(kb))
                    seconds = report.duration_ms / 1000
                    row = {
                        "batch_size": batch,
                        "concurrency": conc,
                        "notes": report.added,
                        "chunks": report.chunks_upserted,
                        "requests": len(fake.requests) - before,
                        "tokens": report.embedding_tokens,
                        "seconds": round(seconds, 2),
                        "chunks_per_s": round(report.chunks_upserted / seconds, 1) if seconds else None,
                    }
                    grid.append(row)
                    if progress:
                        progress(row)
            results["full_sync"] = grid

            sparse_store = root / "sparse"
            sparse = _settings(sparse_store, None, dims=dims)
            report = run_sync(sparse, Secrets(sparse), source_uri=str(kb))
            results["full_sync_sparse_only_s"] = round(report.duration_ms / 1000, 2)

            # No change: the store from the first grid run is complete and matches the KB.
            store = root / f"full-{batch_sizes[0]}-{concurrencies[0]}"
            settings = _settings(store, fake, dims=dims)
            in_process = []
            for _ in range(runs):
                t0 = time.perf_counter()
                report = run_sync(settings, Secrets(settings), source_uri=str(kb))
                in_process.append(time.perf_counter() - t0)
                assert report.embedding_calls == 0 and report.unchanged == report.notes_listed - len(report.skipped)
            env = dict(os.environ, QDRANT_PATH=str(store), EMBEDDING_DIMENSIONS=str(dims),
                       **provider_env(fake, roles=["EMBEDDING"]))  # fmt: skip
            command = []
            for _ in range(runs):
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "kbsearch_tools.cli", "index", str(kb), "--json"],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                command.append(time.perf_counter() - t0)
            results["no_change_sync"] = {
                "runs": runs,
                "in_process_median_s": round(statistics.median(in_process), 3),
                "command_median_s": round(statistics.median(command), 3),
            }
    finally:
        fake.stop()
    return results


def format_index(results: dict[str, Any]) -> str:
    lines = [
        f"bench index: {results['kb']} (fake embedder {results['latency_ms']:.0f} ms/request, "
        f"{results['dims']} dims; {results['machine']['cpus']} CPUs, Python {results['machine']['python']})",
        f"{'batch':>6} {'conc':>5} {'notes':>6} {'chunks':>7} {'requests':>9} {'tokens':>9} {'seconds':>8} {'chunks/s':>9}",
    ]
    for r in results["full_sync"]:
        lines.append(
            f"{r['batch_size']:>6} {r['concurrency']:>5} {r['notes']:>6} {r['chunks']:>7} {r['requests']:>9} "
            f"{r['tokens']:>9} {r['seconds']:>8} {r['chunks_per_s']:>9}"
        )
    nc = results["no_change_sync"]
    lines.append(f"full sync without embeddings (BM25 only, store-bound): {results['full_sync_sparse_only_s']} s")
    lines.append(
        f"no-change sync, median of {nc['runs']}: {nc['in_process_median_s']} s in process, "
        f"{nc['command_median_s']} s as a whole `kbsearch index` command"
    )
    return "\n".join(lines)


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": round(statistics.median(ordered), 1), "p95": pick(0.95), "p99": pick(0.99)}


def synthetic_kb(folder: Path, chunks: int, seed: int = 7) -> int:
    """About ``chunks`` chunks of KB-like text: notes of 5 sections, words drawn from sample-kb's vocabulary."""
    import random
    import re

    sample = repo_root() / "sample-kb"
    words = sorted({w for p in sample.rglob("*.md") for w in re.findall(r"\w{3,}", p.read_text("utf-8").lower())})
    if not words:
        words = [f"word{i}" for i in range(2000)]
    rng = random.Random(seed)
    notes = max(1, chunks // 5)
    for n in range(notes):
        sections = [f"## {' '.join(rng.sample(words, 3))}\n\n{' '.join(rng.choices(words, k=60))}\n" for _ in range(5)]
        tags = ", ".join(rng.sample(["ops", "runbook", "adr", "qdrant", "lambda", "security"], 2))
        body = f"---\ntitle: Note {n} {' '.join(rng.sample(words, 2))}\ntags: [{tags}]\ntype: reference\n---\n"
        (folder / f"n{n:05d}.md").write_text(body + "\n".join(sections), encoding="utf-8")
    return notes


class ByteCountingRetriever:
    """The search's retriever, adding up what each answer weighs as Query API JSON (what Qdrant Cloud sends for
    it over the network; the embedded store hands the same points over in-process): bench search's bytes per
    search. Everything else is the wrapped retriever's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._counted = 0
        self._answers: list[tuple[Any, bool]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def bytes(self) -> int:
        """What the answers so far weigh, encoded when asked (after a search, not inside its timed stages)."""
        import json

        for answer, legs in self._answers:
            points = [[point_json(c) for c in chunks] for chunks in answer] if legs else answer  # chunks as points
            self._counted += len(json.dumps({"result": points}, ensure_ascii=False, default=str).encode("utf-8"))
        self._answers.clear()
        return self._counted

    def _count(self, answer: Any, legs: bool = False) -> Any:
        # the search reads it and does not change it (read_leg copies what it cuts)
        self._answers.append((answer, legs))
        return answer

    def query(self, request: dict[str, Any], timeout_s: float) -> Any:
        return self._count(self.inner.query(request, timeout_s))

    def query_batch(self, searches: list[dict[str, Any]], timeout_s: float) -> Any:
        return self._count(self.inner.query_batch(searches, timeout_s))

    def query_legs(self, searches: list[dict[str, Any]], bare: Any, timeout_s: float) -> Any:
        return self._count(self.inner.query_legs(searches, bare, timeout_s), legs=True)


def point_json(chunk: Any) -> dict[str, Any]:
    """A leg's scored chunk as the Query API point it was read from (an Edge id's integer as its UUID; a bare
    search's point with no payload)."""
    import uuid

    pid = str(uuid.UUID(int=chunk.id)) if isinstance(chunk.id, int) else chunk.id
    return {"id": pid, "score": chunk.score, "payload": chunk.payload or None}


def bench_search(
    chunks: int = 5000,
    queries: int = 200,
    concurrency: int = 8,
    expansion_ms: float = 400,
    embedding_ms: float = 100,
    rerank_ms: float = 300,
    primary_hang: bool = False,
    dims: int = 1024,
    progress: Any = None,
    drip: str = "none",
    budget_s: float | None = None,
) -> dict[str, Any]:
    """End-to-end latency of SearchService.search with fake providers of fixed latency over an embedded store of
    ``chunks`` generated chunks. Own overhead = total - time the fakes spent answering - Qdrant time."""
    import random
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from kbsearch.schemas import SearchRequest
    from kbsearch.search import SearchService

    latency = {"chat": expansion_ms / 1000, "embeddings": embedding_ms / 1000, "rerank": rerank_ms / 1000}
    deepinfra = FakeProvider("deepinfra", api_key="bench-di", latency=latency).start()
    fireworks = FakeProvider("fireworks", api_key="bench-fw", latency=latency).start()
    if primary_hang:
        deepinfra.fail("rerank", hang_s=30.0)
    results: dict[str, Any] = {
        "chunks": chunks, "queries": queries, "dims": dims, "primary_hang": primary_hang, "drip": drip,
        "latency_ms": {"expansion": expansion_ms, "embedding": embedding_ms, "rerank": rerank_ms},
        "machine": _machine(),
    }  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="kbsearch-bench-") as tmp:
            root = Path(tmp)
            (root / "kb").mkdir()
            synthetic_kb(root / "kb", chunks)
            deepinfra.latency = {}  # index at full speed
            settings = Settings.model_validate(
                {
                    "qdrant_path": str(root / "q"), "embedding_dimensions": dims,
                    "embedding_batch_size": 64, "embedding_concurrency": 4,
                } | provider_env(deepinfra, fireworks, fields=True) | ({"search_budget_s": budget_s} if budget_s else {})
            )  # fmt: skip
            # said before the build: a run of few queries said nothing for its first ~25 s on 2 cores (walk33)
            if progress:
                progress(f"indexing {chunks} generated chunks into a throw-away store (fake embedder at full speed)")
            report = run_sync(settings, Secrets(settings), source_uri=str(root / "kb"))
            results["indexed_chunks"] = report.chunks_upserted
            if progress:
                progress(f"indexed {report.chunks_upserted} chunks in {report.duration_ms / 1000:.1f} s; searching "
                         f"{queries} queries one at a time, then {concurrency} in flight")  # fmt: skip
            results["budget_s"] = settings.search_budget_s
            deepinfra.latency = latency
            # --drip: the providers send every answer one byte per 50 ms (no read ever times out): "primary"
            # drips DeepInfra (expansion, embeddings, reranker), "all" drips Fireworks too.
            for fake in {"none": (), "primary": (deepinfra,), "all": (deepinfra, fireworks)}[drip]:
                for operation in ("chat", "embeddings", "rerank"):
                    fake.fail(operation, drip_s=0.05)
            service = SearchService(settings, Secrets(settings))
            counter = ByteCountingRetriever(service.retriever)
            service._retriever = counter  # the store's answers, weighed; the search itself unchanged
            rng = random.Random(11)
            vocabulary = ["qdrant", "snapshot", "restore", "rotate", "keys", "reranker", "индексатор", "ключей",
                          "lambda", "runbook", "embedding", "fusion", "снапшот", "deploy", "budget"]  # fmt: skip
            texts = [f"{' '.join(rng.sample(vocabulary, 3))} q{i}" for i in range(queries)]  # unique: no cache hits
            service.search(SearchRequest(query="warm up the store"))  # open the store once, as a warm container

            fakes = (deepinfra, fireworks)
            rows = []
            for text in texts:
                before = [len(f.requests) for f in fakes]
                received = counter.bytes
                t0 = time.perf_counter()
                answer = service.search(SearchRequest(query=text))
                wall = (time.perf_counter() - t0) * 1000
                received = counter.bytes - received
                provider = sum(r.served_s for f, b in zip(fakes, before, strict=True) for r in f.requests[b:]) * 1000
                timings = answer.meta.timings_ms
                rows.append({
                    "total": wall, "provider": provider, "qdrant": timings["retrieve"], "rerank": timings["rerank"],
                    "overhead": wall - provider - timings["retrieve"], "degraded": bool(answer.meta.degraded),
                    "bytes": received,
                })  # fmt: skip
                if progress and len(rows) % 50 == 0:
                    progress(f"{len(rows)}/{queries} queries")
            results["concurrency_1"] = {
                "total_ms": _percentiles([r["total"] for r in rows]),
                "provider_ms": _percentiles([r["provider"] for r in rows]),
                "qdrant_ms": _percentiles([r["qdrant"] for r in rows]),
                "rerank_stage_ms": _percentiles([r["rerank"] for r in rows]),
                "overhead_ms": _percentiles([r["overhead"] for r in rows]),
                "bytes_received": _percentiles([r["bytes"] for r in rows]),
                "degraded_share": round(sum(r["degraded"] for r in rows) / len(rows), 3),
                "over_budget": sum(r["total"] > settings.search_budget_s * 1000 for r in rows),
            }
            lock = threading.Lock()  # one embedded store client; Qdrant Cloud serves concurrent readers itself
            walls: list[float] = []

            def one(text: str) -> None:
                t0 = time.perf_counter()
                service.search(SearchRequest(query=text + " c"))
                with lock:
                    walls.append((time.perf_counter() - t0) * 1000)

            if concurrency > 1:  # --concurrency 1 is the run above (its figures are not replaced by a second one)
                t0 = time.perf_counter()
                with ThreadPoolExecutor(max_workers=concurrency) as pool:
                    list(pool.map(one, texts))
                elapsed = time.perf_counter() - t0
                results[f"concurrency_{concurrency}"] = {
                    "total_ms": _percentiles(walls),
                    "throughput_qps": round(len(walls) / elapsed, 1),
                }
            service.close()
    finally:
        deepinfra.stop()
        fireworks.stop()
    return results


def bench_scope(
    kb: Path,
    copies: int = 10,
    scope: str = "hr",
    queries: int = 200,
    dims: int = 1024,
    progress: Any = None,
    restrict: str | None = None,
) -> dict[str, Any]:
    """What an access scope costs a warm search: the vault copied ``copies`` times, every other copy restricted
    by an ``_access.yaml`` folder rule (:func:`restricted_copies`: to the scope's groups in turn, each alone and then
    all together; ``hr`` for a scope of ``public`` alone), indexed by the real indexer (fake embedder answering at
    once); then the same queries searched unrestricted (no clause) and with ``scope`` (the clause on every prefetch
    and the fused query), interleaved query by query, hybrid retrieval with no expansion or reranking. Counts the
    Qdrant calls each search makes. The scope is an API key's of the caller mapping (``ACCESS_GROUPS``), which the
    indexer reads as a deployment's does: a scope of two groups or more has its set's reach token, and the clause
    the search sends is reported. ``restrict``: the groups the copies are restricted to in turn instead of the
    scope's (``hr,security`` with the scope ``hr``: a one-group caller that excludes the ``security`` copies)."""
    import random

    from kbsearch.access import CallerMap, Scope
    from kbsearch.qdrant import open_store
    from kbsearch.qdrant.embedded import EmbeddedRetriever
    from kbsearch.qdrant.query import reach_recorded, scope_clause
    from kbsearch.schemas import SearchRequest
    from kbsearch.search import SearchService

    class Counting:
        """The embedded retriever, counting the queries it runs (one per search is the promise)."""

        def __init__(self, inner: EmbeddedRetriever) -> None:
            self.inner, self.calls = inner, 0

        def metadata(self, timeout_s: float) -> dict[str, Any]:
            return self.inner.metadata(timeout_s)

        def metadata_stamp(self) -> Any:
            return self.inner.metadata_stamp()

        def query(self, request: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
            self.calls += 1
            return self.inner.query(request, timeout_s)

        def query_batch(self, searches: list[dict[str, Any]], timeout_s: float) -> list[list[dict[str, Any]]]:
            self.calls += 1  # one round trip for every leg (POST .../points/query/batch)
            return self.inner.query_batch(searches, timeout_s)

        def query_legs(self, searches: list[dict[str, Any]], bare: Any, timeout_s: float) -> Any:
            self.calls += 1  # the same round trip, read into each leg's chunks
            return self.inner.query_legs(searches, bare, timeout_s)

        def scroll(self, request: dict[str, Any], timeout_s: float) -> tuple[list[dict[str, Any]], str | None]:
            self.calls += 1
            return self.inner.scroll(request, timeout_s)

        def facet(self, request: dict[str, Any], timeout_s: float) -> list[tuple[Any, int]]:
            self.calls += 1
            return self.inner.facet(request, timeout_s)

        def close(self) -> None:
            self.inner.close()

    caller = Scope.parse("bench", scope)
    own = sorted((caller.groups or set()) - {"public"})
    mapping = json.dumps({"api_keys": {"bench-key-id": {"name": "bench", "groups": own}}}) if own else None
    if mapping is not None:  # the caller as the search resolves it, from the mapping the indexer read too
        caller = CallerMap.parse(mapping).for_api_key("bench-key-id")
    fake = FakeProvider("deepinfra", api_key="bench-key").start()
    results: dict[str, Any] = {"kb": str(kb), "copies": copies, "scope": sorted(caller.groups or ["*"]),
                               "queries": queries, "dims": dims, "machine": _machine()}  # fmt: skip
    rng = random.Random(5)
    vocabulary = ["sync", "plugin", "canvas", "vault", "graph", "link", "note", "publish", "theme", "hotkey", "file",
                  "backlinks", "tags", "search", "embed", "properties", "template", "daily", "mobile", "settings"]  # fmt: skip
    texts = [" ".join(rng.sample(vocabulary, 3)) + f" {i}" for i in range(queries)]
    try:
        with tempfile.TemporaryDirectory(prefix="kbsearch-bench-") as tmp:
            root = Path(tmp)
            (root / "kb").mkdir()
            source = copied_vault(kb, copies, root / "kb")
            copied_groups = Scope.parse("bench", restrict).groups if restrict is not None else caller.groups
            restricted = restricted_copies(copies, copied_groups or ())
            results["restricted"] = restricted
            if restricted:
                rules = "".join(f"{folder}/: [{', '.join(groups)}]\n" for folder, groups in restricted.items())
                (source / "_access.yaml").write_text(rules, encoding="utf-8")
            settings = Settings.model_validate({
                "qdrant_path": str(root / "q"), "embedding_dimensions": dims, "embedding_batch_size": 64,
                "embedding_concurrency": 4, **provider_env(fake, roles=["EMBEDDING"], fields=True),
                "access_groups": mapping,
            })  # fmt: skip
            t0 = time.perf_counter()
            report = run_sync(settings, Secrets(settings), source_uri=str(source))
            results["chunks"], results["index_s"] = report.chunks_upserted, round(time.perf_counter() - t0, 1)
            if progress:
                progress(f"indexed {report.chunks_upserted} chunks in {results['index_s']} s")
            service = SearchService(settings, Secrets(settings), store=open_store(settings, Secrets(settings)))
            counting = Counting(service.retriever)  # type: ignore[arg-type]
            service._retriever = counting  # the service's own retriever, counted
            groups = caller.query_groups()
            recorded = reach_recorded(counting.metadata(5.0))
            results["clause"] = scope_clause(groups, recorded) if groups is not None else None
            everyone = Scope.unrestricted("bench")
            for text in texts[:10]:  # warm: the store's pages, the stemmers, the metadata cache
                service.search(SearchRequest(query=text, rerank=False, expand=False), scope=caller)
            rows: dict[str, list[dict[str, float]]] = {"unrestricted": [], "scoped": []}
            for i, text in enumerate(texts):
                order = [("unrestricted", everyone), ("scoped", caller)]
                for name, who in order if i % 2 == 0 else order[::-1]:
                    before = counting.calls
                    t0 = time.perf_counter()
                    answer = service.search(SearchRequest(query=text, rerank=False, expand=False), scope=who)
                    wall = (time.perf_counter() - t0) * 1000
                    rows[name].append({"total": wall, "retrieve": answer.meta.timings_ms["retrieve"],
                                       "calls": counting.calls - before, "hits": len(answer.results)})  # fmt: skip
                if progress and (i + 1) % 50 == 0:
                    progress(f"{i + 1}/{queries} query pairs")
            service.close()
    finally:
        fake.stop()
    for name, measured in rows.items():
        results[name] = {
            "total_ms": _percentiles([r["total"] for r in measured]),
            "retrieve_ms": _percentiles([r["retrieve"] for r in measured]),
            "qdrant_calls_per_search": sorted({r["calls"] for r in measured}),
            "mean_hits": round(statistics.mean(r["hits"] for r in measured), 2),
        }
    paired = [s["total"] - u["total"] for u, s in zip(rows["unrestricted"], rows["scoped"], strict=True)]
    results["added_ms_p50"] = round(statistics.median(paired), 2)
    results["added_retrieve_ms_p50"] = round(
        statistics.median(s["retrieve"] - u["retrieve"] for u, s in zip(rows["unrestricted"], rows["scoped"],
                                                                           strict=True)), 2)  # fmt: skip
    return results


def restricted_copies(copies: int, groups: Iterable[str]) -> dict[str, list[str]]:
    """The copies :func:`bench_scope` restricts (every other one, from the first) → their groups: the scope's groups
    but ``public`` (``hr`` when it holds no other) in turn, each alone and then all of them together, so that a
    caller of two groups finds chunks of each and chunks of both. A caller of them all excludes nothing."""
    own = sorted(set(groups) - {"public"}) or ["hr"]
    kinds = [[g] for g in own] + ([own] if len(own) > 1 else [])
    return {f"copy-{i:02d}": kinds[k % len(kinds)] for k, i in enumerate(range(0, copies, 2))} if copies > 1 else {}


def bench_fusions(
    fusions: list[str], chunks: int = 5000, queries: int = 200, dims: int = 1024, progress: Any = None
) -> dict[str, Any]:
    """What the fusion costs a warm search: bench search's store (``chunks`` generated chunks) searched with each
    ``SEARCH_FUSION`` in turn, query by query (the order turned every query), one store shared by the services,
    the fakes answering at once (expansion and embedding; no rerank: the fusion is what differs). Reports each
    fusion's end-to-end and retrieve percentiles and the p50 of the paired differences against the first."""
    import random

    from kbsearch.qdrant import open_store
    from kbsearch.schemas import SearchRequest
    from kbsearch.search import SearchService

    deepinfra = FakeProvider("deepinfra", api_key="bench-di").start()
    fireworks = FakeProvider("fireworks", api_key="bench-fw").start()
    results: dict[str, Any] = {"fusions": fusions, "chunks": chunks, "queries": queries, "dims": dims,
                               "machine": _machine()}  # fmt: skip
    rows: dict[str, list[dict[str, float]]] = {f: [] for f in fusions}
    try:
        with tempfile.TemporaryDirectory(prefix="kbsearch-bench-") as tmp:
            root = Path(tmp)
            (root / "kb").mkdir()
            synthetic_kb(root / "kb", chunks)
            settings = Settings.model_validate({
                "qdrant_path": str(root / "q"), "embedding_dimensions": dims, "embedding_batch_size": 64,
                "embedding_concurrency": 4,
            } | provider_env(deepinfra, fireworks, fields=True))  # fmt: skip
            report = run_sync(settings, Secrets(settings), source_uri=str(root / "kb"))
            results["indexed_chunks"] = report.chunks_upserted
            store = open_store(settings, Secrets(settings))
            services = {}
            for fusion in fusions:
                own = Settings.model_validate(settings.model_dump() | {"search_fusion": fusion})
                services[fusion] = SearchService(own, Secrets(own), store=store)
            rng = random.Random(11)
            vocabulary = ["qdrant", "snapshot", "restore", "rotate", "keys", "reranker", "индексатор", "ключей",
                          "lambda", "runbook", "embedding", "fusion", "снапшот", "deploy", "budget"]  # fmt: skip
            texts = [f"{' '.join(rng.sample(vocabulary, 3))} q{i}" for i in range(queries)]
            for service in services.values():  # warm: the store's pages, the stemmers, the metadata cache
                for i in range(5):
                    service.search(SearchRequest(query=f"warm up the store {i}", rerank=False))
            for i, text in enumerate(texts):
                order = fusions[i % len(fusions) :] + fusions[: i % len(fusions)]
                for fusion in order:
                    t0 = time.perf_counter()
                    answer = services[fusion].search(SearchRequest(query=f"{text} {fusion}", rerank=False))
                    rows[fusion].append({"total": (time.perf_counter() - t0) * 1000,
                                         "retrieve": answer.meta.timings_ms["retrieve"]})  # fmt: skip
                if progress and (i + 1) % 50 == 0:
                    progress(f"{i + 1}/{queries} queries")
            store.close()
    finally:
        deepinfra.stop()
        fireworks.stop()
    first = rows[fusions[0]]
    for fusion, measured in rows.items():
        results[fusion] = {
            "total_ms": _percentiles([r["total"] for r in measured]),
            "retrieve_ms": _percentiles([r["retrieve"] for r in measured]),
        }
        if fusion != fusions[0]:
            results[fusion]["minus_first_p50"] = {
                key: round(statistics.median(a[key] - b[key] for a, b in zip(first, measured, strict=True)), 2)
                for key in ("total", "retrieve")
            }
    return results


def format_fusions(results: dict[str, Any]) -> str:
    first = results["fusions"][0]
    lines = [
        f"bench search --fusions {','.join(results['fusions'])}: {results['indexed_chunks']} chunks, "
        f"{results['queries']} queries each, alternating, fakes answering at once, no rerank",
        f"{'':22}{'p50':>9}{'p95':>9}{'p99':>9}",
    ]
    for fusion in results["fusions"]:
        for key in ("total_ms", "retrieve_ms"):
            p = results[fusion][key]
            lines.append(f"{fusion + ' ' + key.split('_')[0]:<22}{p['p50']:>9}{p['p95']:>9}{p['p99']:>9}")
    for fusion in results["fusions"][1:]:
        d = results[fusion]["minus_first_p50"]
        lines.append(f"{first} - {fusion} (p50 of paired differences): {d['total']} ms end to end, "
                     f"{d['retrieve']} ms in retrieval")  # fmt: skip
    return "\n".join(lines)


def format_scope(results: dict[str, Any]) -> str:
    restricted = ", ".join(f"{folder} {'+'.join(groups)}" for folder, groups in results["restricted"].items())
    lines = [
        f"bench search --scope {','.join(results['scope'])}: {results['chunks']} chunks ({results['copies']}x "
        f"vault, every other copy restricted: {restricted}), {results['queries']} warm query pairs, hybrid, no "
        "rerank",
        f"{'':22}{'p50':>9}{'p95':>9}{'p99':>9}   qdrant calls/search",
    ]
    for name in ("unrestricted", "scoped"):
        for key in ("total_ms", "retrieve_ms"):
            p = results[name][key]
            lines.append(f"{name + ' ' + key.split('_')[0]:<22}{p['p50']:>9}{p['p95']:>9}{p['p99']:>9}   "
                         f"{results[name]['qdrant_calls_per_search']}")  # fmt: skip
    lines.append(f"scope adds (p50 of paired differences): {results['added_ms_p50']} ms end to end, "
                 f"{results['added_retrieve_ms_p50']} ms in retrieval")  # fmt: skip
    lines.append(f"scope clause: {json.dumps(results.get('clause'))}")
    return "\n".join(lines)


def format_search(results: dict[str, Any]) -> str:
    lat = results["latency_ms"]
    c1 = results["concurrency_1"]
    lines = [
        f"bench search: {results['indexed_chunks']} chunks, {results['queries']} queries, fakes: expansion "
        f"{lat['expansion']:.0f} ms, embedding {lat['embedding']:.0f} ms, rerank {lat['rerank']:.0f} ms"
        + (" (primary reranker hanging)" if results["primary_hang"] else "")
        + (f" (dripping: {results['drip']}, budget {results['budget_s']:g} s)" if results["drip"] != "none" else ""),
        f"{'':22}{'p50':>9}{'p95':>9}{'p99':>9}",
    ]
    for name, key in (("end to end", "total_ms"), ("providers (fakes)", "provider_ms"), ("qdrant", "qdrant_ms"),
                      ("rerank stage", "rerank_stage_ms"), ("own overhead", "overhead_ms")):  # fmt: skip
        p = c1[key]
        lines.append(f"{name:<22}{p['p50']:>9}{p['p95']:>9}{p['p99']:>9}")
    for key, value in results.items():
        if key.startswith("concurrency_") and key != "concurrency_1":
            p = value["total_ms"]
            lines.append(
                f"{'e2e at ' + key.split('_')[1] + ' in flight':<22}{p['p50']:>9}{p['p95']:>9}{p['p99']:>9}"
                f"   {value['throughput_qps']} queries/s"
            )
    b = c1["bytes_received"]
    lines.append(f"bytes received per search (the store's answers as Query API JSON): p50 {b['p50'] / 1024:.1f} KiB, "
                 f"p95 {b['p95'] / 1024:.1f} KiB")  # fmt: skip
    lines.append(f"degraded answers: {c1['degraded_share']:.1%}; over the budget: {c1['over_budget']}")
    return "\n".join(lines)


_COLDSTART_CHILD = r"""
import json, os, resource, sys, time
# The layer ships neither rich nor click; where the dev environment has them (schemathesis), `import httpx` loads
# them for its command line (~50 ms). Hidden here, as in the layer, so the figure is what a function pays.
sys.modules.update(dict.fromkeys(("rich", "click")))
t0 = time.perf_counter()
from kbsearch_tools.local.runtime import LocalFunction, function_environment
from kbsearch_tools.local.template import Template
template = Template(os.environ["KB_BENCH_TEMPLATE"])
spec = template.function("SearchFunction")
harness = time.perf_counter() - t0
t1 = time.perf_counter()
env = function_environment(spec, template.region, os.environ)
if os.environ.get("KB_BENCH_XRAY_DAEMON"):  # tracing on as deployed: the X-Ray SDK in Lambda mode, sampled
    env.pop("AWS_SAM_LOCAL")  # Powertools turns tracing off when it is set at all
    env.update(LAMBDA_TASK_ROOT=os.getcwd(), AWS_XRAY_DAEMON_ADDRESS=os.environ["KB_BENCH_XRAY_DAEMON"],
               _X_AMZN_TRACE_ID="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
fn = LocalFunction(spec, template.region, env)
health = fn.invoke(json.loads(os.environ["KB_BENCH_HEALTH"]))
t2 = time.perf_counter()
search = fn.invoke(json.loads(os.environ["KB_BENCH_SEARCH"]))
t3 = time.perf_counter()
assert health["statusCode"] == 200 and search["statusCode"] == 200, search
print(json.dumps({"import_health_s": t2 - t1, "first_search_s": t3 - t2, "import_first_search_s": t3 - t1,
                  "process_first_search_s": time.time() - float(os.environ["KB_BENCH_SPAWNED"]),
                  "degraded": json.loads(search["body"])["meta"]["degraded"],
                  "harness_s": harness, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "qdrant_client_imported": "qdrant_client" in sys.modules,
                  "xray_sdk_imported": "aws_xray_sdk" in sys.modules}))
"""


def _fake_ssm(values: dict[str, str]) -> FakeEndpoint:
    """A loopback SSM Parameter Store answering GetParameters (AWS JSON 1.1) with these SecureString values."""
    import json

    params = [{"Name": name, "Type": "SecureString", "Value": value, "Version": 1, "DataType": "text",
               "ARN": f"arn:aws:ssm:us-east-1:123456789012:parameter{name}"} for name, value in values.items()]  # fmt: skip
    endpoint = FakeEndpoint().start()
    endpoint.content_type = "application/x-amz-json-1.1"
    endpoint.body = json.dumps({"Parameters": params, "InvalidParameters": []}).encode()
    return endpoint


def _top_imports(stderr: str, top: int) -> list[dict[str, Any]]:
    """Top-level packages by the import time spent in their own modules (``python -X importtime`` self times,
    summed per package), so qdrant_client is charged to qdrant_client, not to the kbsearch module importing it."""
    totals: dict[str, int] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        own, _cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        if not own.isdigit():
            continue
        package = name.split(".")[0]
        totals[package] = totals.get(package, 0) + int(own)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return [{"module": name, "ms": round(us / 1000, 1)} for name, us in ranked]


def _fake_qdrant_cloud(root: Path) -> FakeEndpoint:
    """A loopback stand-in for Qdrant Cloud's REST API answering the search's calls (the batch of the adaptive
    fusion, or the one fused query) with sample-kb chunks."""
    import json

    from kbsearch.chunking import chunk_note
    from kbsearch.notes import NoteError, parse_note

    points: list[dict[str, Any]] = []
    for path in sorted((root / "sample-kb").rglob("*.md"))[:50]:
        rel = path.relative_to(root / "sample-kb").as_posix()
        try:
            note = parse_note(rel, path.read_bytes())
        except NoteError:
            continue
        chunk = chunk_note(note)[0]
        points.append({"id": len(points), "version": 1, "score": 1 / (60 + len(points)),
                       "payload": {"doc_id": note.doc_id, "path": rel, "title": note.title, "heading": chunk.heading,
                                   "text": chunk.text, "tags": note.tags, "type": note.type, "status": note.status}})  # fmt: skip
    exists = json.dumps({"result": {"exists": True}, "status": "ok", "time": 0.0}).encode()
    query = json.dumps({"result": {"points": points}, "status": "ok", "time": 0.001}).encode()
    endpoint = FakeEndpoint().start()

    def respond(method: str, path: str) -> tuple[int, bytes, str]:
        if path.endswith("/exists"):
            return 200, exists, "application/json"
        if path.endswith("/points/query/batch"):  # the adaptive fusion's one call: the same points for every search
            searches = len((endpoint.requests[-1].body or {}).get("searches") or [])
            batch = {"result": [{"points": points}] * searches, "status": "ok", "time": 0.001}
            return 200, json.dumps(batch).encode(), "application/json"
        return 200, query, "application/json"

    endpoint.responder = respond
    return endpoint


def bench_coldstart(runs: int = 7, top: int = 10) -> dict[str, Any]:
    """Fresh interpreter per run: import the search handler + first /health, and + first /search (zero-latency
    fakes, full pipeline), against the embedded store of sample-kb and against Qdrant Cloud's REST API (a
    loopback fake). Medians of ``runs``; peak RSS; top imports of the embedded run."""
    import json

    from kbsearch_tools.local.apigw import HttpRequest, build_event

    root = repo_root()
    deepinfra = FakeProvider("deepinfra", api_key="bench-di").start()
    fireworks = FakeProvider("fireworks", api_key="bench-fw").start()
    cloud = _fake_qdrant_cloud(root)
    providers = provider_env(deepinfra, fireworks)
    keys = {k.removesuffix("_API_KEY"): v for k, v in providers.items() if k.endswith("_API_KEY")}
    keys["QDRANT"] = "bench-qdrant"
    ssm = _fake_ssm({f"/kb-search/bench/{name.lower()}": value for name, value in keys.items()})
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # stands in for the X-Ray daemon: counts segments
    daemon.bind(("127.0.0.1", 0))
    daemon.setblocking(False)
    modes: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="kbsearch-cold-") as tmp:
            store = Path(tmp) / "q"
            settings = Settings.model_validate(
                {"qdrant_path": str(store)} | provider_env(deepinfra, roles=["EMBEDDING"], fields=True)
            )
            run_sync(settings, Secrets(settings), source_uri=str(root / "sample-kb"))
            health = build_event(HttpRequest("GET", "/health", "", [], b""), "/health", {}, "dev")
            body = json.dumps({"query": "restore a qdrant snapshot"}).encode()
            search = build_event(
                HttpRequest("POST", "/search", "", [("Content-Type", "application/json")], body), "/search", {}, "dev"
            )
            base_env = dict(
                os.environ,
                KB_BENCH_TEMPLATE=str(root / "template.yaml"), KB_BENCH_HEALTH=json.dumps(health),
                KB_BENCH_SEARCH=json.dumps(search), POWERTOOLS_METRICS_DISABLED="true", **providers,
            )  # fmt: skip
            envs = {
                "embedded": dict(base_env, QDRANT_PATH=str(store), QDRANT_URL=""),
                "cloud": dict(base_env, QDRANT_URL=cloud.url, QDRANT_API_KEY="bench-qdrant"),
                # as deployed: every key from SSM (loopback), X-Ray tracing on (sampled, sent to a loopback daemon)
                "cloud+ssm+xray": dict(
                    {k: v for k, v in base_env.items() if not k.endswith("_API_KEY")},
                    QDRANT_URL=cloud.url,
                    AWS_ENDPOINT_URL_SSM=ssm.url,
                    AWS_ACCESS_KEY_ID="bench",
                    AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - fake credentials for the loopback SSM
                    KB_BENCH_XRAY_DAEMON=f"127.0.0.1:{daemon.getsockname()[1]}",
                    **{f"{name}_API_KEY_PARAM": f"/kb-search/bench/{name.lower()}" for name in keys},
                ),
            }
            for mode, env in envs.items():
                samples = []
                for _ in range(runs):
                    env["KB_BENCH_SPAWNED"] = repr(time.time())
                    out = subprocess.run(
                        [sys.executable, "-c", _COLDSTART_CHILD], env=env, capture_output=True, text=True, check=True
                    )
                    samples.append(json.loads(out.stdout.strip().splitlines()[-1]))
                env["KB_BENCH_SPAWNED"] = repr(time.time())
                traced = subprocess.run(
                    [sys.executable, "-X", "importtime", "-c", _COLDSTART_CHILD],
                    env=env, capture_output=True, text=True, check=True,
                )  # fmt: skip
                modes[mode] = {
                    "import_health_s": round(statistics.median(s["import_health_s"] for s in samples), 3),
                    "import_first_search_s": round(statistics.median(s["import_first_search_s"] for s in samples), 3),
                    "process_first_search_s": round(statistics.median(s["process_first_search_s"] for s in samples), 3),
                    "first_search_degraded": sum(bool(s["degraded"]) for s in samples),
                    "xray_sdk_imported": any(s["xray_sdk_imported"] for s in samples),
                    "ssm_requests": len(ssm.requests) if "ssm" in mode else 0,
                    "peak_rss_mb": round(max(s["peak_rss_mb"] for s in samples), 1),
                    "qdrant_client_imported": any(s["qdrant_client_imported"] for s in samples),
                    "top_imports": _top_imports(traced.stderr, top),
                }
                if "xray" in mode:
                    datagrams = 0
                    with contextlib.suppress(BlockingIOError):
                        while daemon.recv(65536):
                            datagrams += 1
                    modes[mode]["xray_segments_sent"] = datagrams
    finally:
        deepinfra.stop()
        fireworks.stop()
        cloud.stop()
        ssm.stop()
        daemon.close()
    return {"runs": runs, "modes": modes, "machine": _machine()}


def format_coldstart(results: dict[str, Any]) -> str:
    lines = [f"bench coldstart: fresh interpreter, median of {results['runs']} runs"]
    for mode, m in results["modes"].items():
        lines += [
            f"  {mode} store:",
            f"    import handler + first /health:              {m['import_health_s'] * 1000:7.0f} ms",
            f"    import handler + first /search (fakes 0 ms): {m['import_first_search_s'] * 1000:7.0f} ms",
            f"    process start to first /search answered:     {m['process_first_search_s'] * 1000:7.0f} ms",
            f"    first searches degraded: {m['first_search_degraded']} of {results['runs']}; SSM requests: "
            f"{m['ssm_requests']}; X-Ray SDK loaded: {m['xray_sdk_imported']}; "
            f"segments sent: {m.get('xray_segments_sent', 0)}",
            f"    peak RSS: {m['peak_rss_mb']:.1f} MB; qdrant_client imported: {m['qdrant_client_imported']}",
            "    top imports (time in each package's own modules):",
        ]
        lines += [f"      {t['module']:<26}{t['ms']:>8.1f} ms" for t in m["top_imports"][:6]]
    return "\n".join(lines)


#: $ per 1M tokens. rerank: DeepInfra's published price for Qwen3-Reranker-8B (shared/reference/providers.md);
#: embedding and expansion: assumptions to override with --price, as their prices are not in the reference.
DEFAULT_PRICES = {"expansion": 0.10, "embedding": 0.01, "rerank": 0.05}


def bench_cost(queries: int = 60, prices: dict[str, float] | None = None) -> dict[str, Any]:
    """Tokens per query per stage from the usage the fakes report (counted like the real APIs, ~4/3 tokens a
    word), over sample-kb with the default settings, priced per 1M tokens → $ per 1,000 queries."""
    from kbsearch.schemas import SearchRequest
    from kbsearch.search import SearchService
    from kbsearch_tools.metrics import load_queries

    price = DEFAULT_PRICES | (prices or {})
    root = repo_root()
    texts = [q.query for q in load_queries(root / "eval" / "sample-kb-queries.yaml")]
    deepinfra = FakeProvider("deepinfra", api_key="bench-di").start()
    try:
        with tempfile.TemporaryDirectory(prefix="kbsearch-cost-") as tmp:
            settings = Settings.model_validate({
                "qdrant_path": str(Path(tmp) / "q"), "expansion_cache_size": 0,
                **provider_env(deepinfra, fields=True),
            })  # fmt: skip
            report = run_sync(settings, Secrets(settings), source_uri=str(root / "sample-kb"))
            service = SearchService(settings, Secrets(settings))
            totals: dict[str, int] = {}
            n = 0
            for i in range(queries):
                answer = service.search(SearchRequest(query=texts[i % len(texts)]))
                for kind, by_provider in answer.meta.usage.items():
                    totals[kind] = totals.get(kind, 0) + sum(by_provider.values())
                n += 1
            service.close()
    finally:
        deepinfra.stop()
    per_query = {kind: tokens / n for kind, tokens in totals.items()}
    dollars = {kind: per_query[kind] * price.get(kind, 0.0) / 1_000_000 * 1000 for kind in per_query}
    return {
        "queries": n,
        "index_tokens": report.embedding_tokens,
        "tokens_per_query": {k: round(v, 1) for k, v in per_query.items()},
        "prices_per_million_tokens": price,
        "usd_per_1000_queries": {k: round(v, 5) for k, v in dollars.items()},
        "usd_per_1000_queries_total": round(sum(dollars.values()), 5),
        "machine": _machine(),
    }


def format_cost(results: dict[str, Any]) -> str:
    lines = [f"bench cost: {results['queries']} queries over sample-kb, default settings (fakes count tokens)",
             f"{'stage':<12}{'tokens/query':>14}{'$/1M tokens':>13}{'$/1000 queries':>16}"]  # fmt: skip
    for kind, tokens in results["tokens_per_query"].items():
        lines.append(f"{kind:<12}{tokens:>14.1f}{results['prices_per_million_tokens'].get(kind, 0):>13.3f}"
                     f"{results['usd_per_1000_queries'][kind]:>16.5f}")  # fmt: skip
    lines.append(f"{'total':<12}{'':>14}{'':>13}{results['usd_per_1000_queries_total']:>16.5f}")
    lines.append(f"indexing sample-kb once: {results['index_tokens']} embedding tokens")
    return "\n".join(lines)


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def bench_load(requests: int = 10_000, concurrency: int = 32, max_seconds: float = 900.0,
               progress: Any = None) -> dict[str, Any]:  # fmt: skip
    """A bounded load test of ``kbsearch serve`` on 127.0.0.1 with fake providers (zero latency): a mix of
    POST /search (80%, unique queries), GET /health (10%) and MCP tools/list (10%). Stops after ``requests`` or
    ``max_seconds``. Reports errors, latency percentiles and the server's RSS after the first and last 1,000."""
    import itertools
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from kbsearch_tools.metrics import load_queries

    root = repo_root()
    texts = [q.query for q in load_queries(root / "eval" / "sample-kb-queries.yaml")]
    deepinfra = FakeProvider("deepinfra", api_key="load-di").start()
    fireworks = FakeProvider("fireworks", api_key="load-fw").start()
    results: dict[str, Any] = {"requests": requests, "concurrency": concurrency, "machine": _machine()}
    try:
        with tempfile.TemporaryDirectory(prefix="kbsearch-load-") as tmp:
            store = Path(tmp) / "q"
            env = dict(
                os.environ, QDRANT_PATH=str(store), KB_SOURCE=str(root / "sample-kb"), KB_LOCAL_API_KEYS="load-key",
                POWERTOOLS_LOG_LEVEL="WARNING", POWERTOOLS_METRICS_DISABLED="true", **provider_env(deepinfra, fireworks),
            )  # fmt: skip
            subprocess.run([sys.executable, "-m", "kbsearch_tools.cli", "index", str(root / "sample-kb"), "--json"],
                           env=env, check=True, capture_output=True)  # fmt: skip
            with serve_process(env) as served:
                server, base = served.process, served.base_url
                headers = {"x-api-key": "load-key"}
                counter = itertools.count()
                lock = threading.Lock()
                latencies: list[float] = []
                errors: dict[str, int] = {}
                rss: dict[str, float] = {}
                deadline = time.monotonic() + max_seconds
                client = httpx.Client(limits=httpx.Limits(max_connections=concurrency), timeout=30.0)

                def one(_: int) -> None:
                    i = next(counter)
                    if time.monotonic() > deadline:
                        return
                    kind = i % 10
                    t0 = time.perf_counter()
                    try:
                        if kind == 0:
                            r = client.get(f"{base}/health")
                        elif kind == 1:
                            r = client.post(f"{base}/mcp", headers=headers,
                                            json={"jsonrpc": "2.0", "id": i, "method": "tools/list"})  # fmt: skip
                        else:
                            r = client.post(f"{base}/search", headers=headers,
                                            json={"query": f"{texts[i % len(texts)]} {i}", "top_k": 5})  # fmt: skip
                        status = r.status_code
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__  # type: ignore[assignment]
                    elapsed = (time.perf_counter() - t0) * 1000
                    with lock:
                        latencies.append(elapsed)
                        if status != 200:
                            errors[str(status)] = errors.get(str(status), 0) + 1
                        done = len(latencies)
                        if done == 1000:
                            rss["after_first_1000_mb"] = _rss_mb(server.pid)
                    if progress and done % 1000 == 0:
                        progress(f"{done}/{requests}")

                t0 = time.perf_counter()
                with ThreadPoolExecutor(max_workers=concurrency) as pool:
                    list(pool.map(one, range(requests)))
                elapsed = time.perf_counter() - t0
                rss["after_last_1000_mb"] = _rss_mb(server.pid)
                client.close()
    finally:
        deepinfra.stop()
        fireworks.stop()
    first, last = rss.get("after_first_1000_mb", 0.0), rss.get("after_last_1000_mb", 0.0)
    results.update({
        "completed": len(latencies), "errors": errors, "seconds": round(elapsed, 1),
        "throughput_rps": round(len(latencies) / elapsed, 1), "latency_ms": _percentiles(latencies),
        "rss_mb": {"after_first_1000": round(first, 1), "after_last_1000": round(last, 1)},
        "rss_growth_pct": round((last - first) / first * 100, 1) if first else None,
        "provider_requests": len(deepinfra.requests) + len(fireworks.requests),
    })  # fmt: skip
    return results


def format_load(results: dict[str, Any]) -> str:
    lat = results["latency_ms"]
    return "\n".join([
        f"bench load: {results['completed']}/{results['requests']} requests at concurrency {results['concurrency']} "
        f"against kbsearch serve on 127.0.0.1 in {results['seconds']} s ({results['throughput_rps']} req/s)",
        f"  errors: {sum(results['errors'].values())} {results['errors'] or ''}",
        f"  latency ms: p50 {lat['p50']}, p95 {lat['p95']}, p99 {lat['p99']}",
        f"  server RSS: {results['rss_mb']['after_first_1000']} MB after the first 1,000, "
        f"{results['rss_mb']['after_last_1000']} MB after the last ({results['rss_growth_pct']}% growth)",
    ])  # fmt: skip


def _parents() -> dict[int, int]:
    """Every process's parent (Linux ``/proc``; empty elsewhere)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    parents[int(name)] = int(handle.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):  # ended meanwhile
                continue
    return parents


def _peak_mb(pid: int | str) -> float:
    """The process's peak resident memory since it started its program (``VmHWM``; ``"self"``: this process), in
    MB; 0 when gone (or no ``/proc``)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def host_cpu_s() -> tuple[float, float]:
    """The machine's CPU-seconds so far, all cores: busy (everything but idle and iowait, the hypervisor's steal
    included) and stolen (the hypervisor ran something else on this VM's cores); (0, 0) without ``/proc/stat``."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            ticks = [int(x) for x in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, ticks[7] / hz


def own_cpu_s() -> float:
    """CPU-seconds of this process and of the children it has waited for (theirs include the children they waited
    for): what a bench job took, with this process's own threads (a fake provider, the RSS sampler)."""
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))  # fmt: skip


#: Put ahead of every job's code by :func:`run_job`: ``_own_peak_rss_mb()``, the job's own peak RSS. Not its
#: ``ru_maxrss``: Linux gives a process the peak of the one it was spawned from (``subprocess`` spawns by vfork, the
#: exec'd job starting with its parent's peak: a bench job spawned by a 900 MB test process read 896 MB).
JOB_PRELUDE = inspect.getsource(_peak_mb) + (
    "def _own_peak_rss_mb():\n"
    "    import resource\n"
    "    return _peak_mb('self') or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
)


def run_job(code: str, env: dict[str, str], every_s: float = 0.5) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``python -c code`` to the end, and the peak RSS of the processes it starts (its parsing process, say):
    every ``every_s`` each descendant's own peak (``VmHWM``) is read from here, outside the job (no lock or CPU
    taken from it), and the largest reading of each is summed: an upper bound on their peak together (each at its
    own peak, as if all peaked at once). A descendant that lives less than ``every_s`` may be missed (a ``uname``
    a library runs once, say). Not the children's ``RUSAGE_CHILDREN``: Linux gives a child that execs the peak
    RSS of the process it was forked from (at least the job's own RSS when it was spawned). The job reports its
    own peak with ``_own_peak_rss_mb()``, which :data:`JOB_PRELUDE` defines ahead of ``code``."""
    import threading

    proc = subprocess.Popen([sys.executable, "-c", JOB_PRELUDE + code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    peaks: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while True:
            parents, tree, more = _parents(), {proc.pid}, {proc.pid}
            while more:  # the job's children, theirs, ...
                more = {pid for pid, parent in parents.items() if parent in tree} - tree
                tree |= more
            for pid in tree - {proc.pid}:
                peaks[pid] = max(peaks.get(pid, 0.0), _peak_mb(pid))
            if stop.wait(every_s):
                return

    sampler = threading.Thread(target=sample, name="kbsearch-bench-rss", daemon=True)
    sampler.start()
    out, err = proc.communicate()
    stop.set()
    sampler.join()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), sum(peaks.values())


_STORE_CHILD = r"""
import json, os, resource, statistics, sys, time
t_start = time.perf_counter()
job = json.loads(os.environ["KB_BENCH_JOB"])
from kbsearch.config import Secrets, Settings
from kbsearch_tools import repo_root
settings = Settings.model_validate(job["settings"])
out = {}
if job["mode"] == "index":
    from kbsearch.indexer import run_sync
    report = run_sync(settings, Secrets(settings), source_uri=job["kb"])
    assert report.error is None, report.error
    out = {"seconds": time.perf_counter() - t_start, "notes": report.added, "chunks": report.chunks_upserted}
else:
    from kbsearch.schemas import SearchRequest
    from kbsearch.search import SearchService
    service = SearchService(settings, Secrets(settings))
    t0 = time.perf_counter()
    service.retriever.metadata(10.0)  # opens the store; IndexMissing when the sync left nothing
    out["open_s"] = time.perf_counter() - t0
    out["process_to_open_s"] = time.perf_counter() - t_start
    retrieve, total, faults = [], [], []
    for i, text in enumerate(job["queries"]):
        majflt = resource.getrusage(resource.RUSAGE_SELF).ru_majflt
        t0 = time.perf_counter()
        answer = service.search(SearchRequest(query=text, top_k=10, rerank=False, expand=False))
        if i >= 3:  # warm: the first searches load the shard's pages
            total.append((time.perf_counter() - t0) * 1000)
            retrieve.append(answer.meta.timings_ms["retrieve"])
            # pages the search waited for the disk for (the store's files not yet in the page cache): what a fresh
            # process's searches cost beyond the CPU, counted whatever the machine's load
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_majflt - majflt)
        assert answer.results, text
    out["search_majflt_p50"] = statistics.median(faults)
    out["retrieve_p50_ms"] = statistics.median(retrieve)
    out["retrieve_p95_ms"] = sorted(retrieve)[int(0.95 * (len(retrieve) - 1))]
    out["search_p50_ms"] = statistics.median(total)
    out["search_p95_ms"] = sorted(total)[int(0.95 * (len(total) - 1))]
    service.close()
out["peak_rss_mb"] = _own_peak_rss_mb()
print(json.dumps(out))
"""


def copied_vault(vault: Path, copies: int, into: Path) -> Path:
    """``copies`` copies of a vault side by side (``copy-00/…``): the same notes at other paths, other doc ids."""
    import shutil

    if copies == 1:
        return vault
    for i in range(copies):
        shutil.copytree(vault, into / f"copy-{i:02d}", ignore=shutil.ignore_patterns(".*"))
    return into


def bench_store(
    kb: Path,
    copies: tuple[int, ...] = (1, 10),
    engines: tuple[str, ...] = ("edge", "local"),
    queries: int = 50,
    runs: int = 3,
    dims: int = 1024,
    progress: Any = None,
) -> dict[str, Any]:
    """The embedded store under the product's own calls, per vault size and engine (Qdrant Edge, qdrant-client's
    local mode), each step in a fresh process: full index (fake embedder answering at once), opening the store,
    warm hybrid searches (one dense prefetch + BM25, RRF; no expansion or rerank), the no-change sync as a whole
    ``kbsearch index`` command (median of ``runs``), with each process's peak RSS."""
    import json
    import random

    fake = FakeProvider("deepinfra", api_key="bench-key").start()
    results: dict[str, Any] = {"kb": str(kb), "dims": dims, "queries": queries, "runs": runs, "machine": _machine()}
    rng = random.Random(5)
    vocabulary = ["sync", "plugin", "canvas", "vault", "graph", "link", "note", "publish", "theme", "hotkey", "file",
                  "backlinks", "tags", "search", "embed", "properties", "template", "daily", "mobile", "settings"]  # fmt: skip
    texts = [" ".join(rng.sample(vocabulary, 3)) + f" {i}" for i in range(queries + 3)]

    def child(job: dict[str, Any]) -> dict[str, Any]:
        done, children_mb = run_job(_STORE_CHILD, dict(os.environ, KB_BENCH_JOB=json.dumps(job)))
        if done.returncode != 0:
            raise RuntimeError(f"bench child failed: {done.stderr[-2000:]}")
        out = dict(json.loads(done.stdout.strip().splitlines()[-1]))
        out["peak_rss_mb"] += children_mb  # the index's parsing process with it
        return out

    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="kbsearch-bench-") as tmp:
            root = Path(tmp)
            for n in copies:
                (root / f"kb{n}").mkdir()
                source = copied_vault(kb, n, root / f"kb{n}")
                for engine in engines:
                    store = root / f"q-{n}-{engine}"
                    values = {"qdrant_path": str(store), "qdrant_embedded": engine, "embedding_dimensions": dims,
                              "embedding_batch_size": 64, "embedding_concurrency": 4,
                              **provider_env(fake, roles=["EMBEDDING"], fields=True)}  # fmt: skip
                    index = child({"mode": "index", "settings": values, "kb": str(source)})
                    search = child({"mode": "search", "settings": values, "queries": texts})
                    env = dict(os.environ, QDRANT_PATH=str(store), QDRANT_EMBEDDED=engine,
                               EMBEDDING_DIMENSIONS=str(dims), **provider_env(fake, roles=["EMBEDDING"]))  # fmt: skip
                    walls = []
                    for _ in range(runs):
                        t0 = time.perf_counter()
                        subprocess.run([sys.executable, "-m", "kbsearch_tools.cli", "index", str(source), "--json"],
                                       env=env, check=True, capture_output=True)  # fmt: skip
                        walls.append(time.perf_counter() - t0)
                    row = {
                        "copies": n, "engine": engine, "notes": index["notes"], "chunks": index["chunks"],
                        "index_s": round(index["seconds"], 2), "index_peak_rss_mb": round(index["peak_rss_mb"]),
                        "open_s": round(search["open_s"], 3), "process_to_open_s": round(search["process_to_open_s"], 3),
                        "retrieve_p50_ms": round(search["retrieve_p50_ms"], 1),
                        "retrieve_p95_ms": round(search["retrieve_p95_ms"], 1),
                        "search_p50_ms": round(search["search_p50_ms"], 1),
                        "search_peak_rss_mb": round(search["peak_rss_mb"]),
                        "no_change_command_s": round(statistics.median(walls), 2),
                    }  # fmt: skip
                    rows.append(row)
                    if progress:
                        progress(row)
    finally:
        fake.stop()
    results["rows"] = rows
    return results


def format_store(results: dict[str, Any]) -> str:
    lines = [
        f"bench store: {results['kb']} ({results['dims']} dims, fake embedder answering at once; "
        f"{results['queries']} warm searches, no-change sync median of {results['runs']}; "
        f"{results['machine']['cpus']} CPUs, Python {results['machine']['python']})",
        f"{'copies':>6} {'engine':>6} {'notes':>6} {'chunks':>7} {'index s':>8} {'RSS MB':>7} {'open s':>7} "
        f"{'retr p50':>9} {'retr p95':>9} {'search p50':>10} {'RSS MB':>7} {'no-change s':>12}",
    ]
    for r in results["rows"]:
        lines.append(
            f"{r['copies']:>6} {r['engine']:>6} {r['notes']:>6} {r['chunks']:>7} {r['index_s']:>8} "
            f"{r['index_peak_rss_mb']:>7} {r['open_s']:>7} {r['retrieve_p50_ms']:>9} {r['retrieve_p95_ms']:>9} "
            f"{r['search_p50_ms']:>10} {r['search_peak_rss_mb']:>7} {r['no_change_command_s']:>12}"
        )
    lines.append("(index: whole process, full sync; RSS: the process's peak plus its children's, an upper bound; "
                 "open: open + metadata; retr: the one Qdrant call per search)")  # fmt: skip
    return "\n".join(lines)
