"""``kbsearch bench peer``: kb-search next to the pipeline a user would pick instead, in the same run.

The peer is LlamaIndex as its documentation teaches it: ``SimpleDirectoryReader`` over the vault's ``.md`` files, an
``IngestionPipeline`` of ``MarkdownNodeParser`` (one node per heading section) and ``SentenceSplitter`` (sections over
the chunk size split, with overlap: the same 400 / 40 tokens as our chunker) and ``OpenAILikeEmbedding``, writing to a
``QdrantVectorStore`` on qdrant-client's local mode on disk (``QdrantClient(path=...)``); searches go through
``VectorStoreIndex.from_vector_store(...).as_retriever()``. Its Qdrant store does hybrid search only with fastembed's
sparse models, which are downloaded at run time, so the peer searches dense only.

Both sides embed through the same loopback fake of DeepInfra's OpenAI-compatible endpoint (answering at once), with
the same model name, dimensions and batch size, so both pay the same provider cost. Each step runs in its own child
process; its wall time is measured from the moment the parent spawns it (interpreter start and imports included)
to the moment the work is done (store closed, for an index), and its peak RSS is the child's own (``VmHWM``) plus
that of the processes it started (our index's parsing process): :func:`kbsearch_tools.bench.run_job`, an upper
bound.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
import unicodedata
from importlib import metadata
from pathlib import Path
from typing import Any

from kbsearch.chunking import DEFAULT_MAX_TOKENS, DEFAULT_OVERLAP_TOKENS
from kbsearch_tools.bench import _STORE_CHILD, _machine, copied_vault, host_cpu_s, own_cpu_s, run_job
from kbsearch_tools.fakes import FakeProvider

SIDES = ("kbsearch", "llamaindex")
BATCH_SIZE = 64
COLLECTION = "kb"

#: Our full index, as ``bench store`` runs it: ``run_sync`` into Qdrant Edge. The notes it indexed are read back
#: from the store after the clock and the RSS are taken.
_OURS_INDEX_CHILD = r"""
import json, os, resource, time
job = json.loads(os.environ["KB_BENCH_JOB"])
from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
settings = Settings.model_validate(job["settings"])
report = run_sync(settings, Secrets(settings), source_uri=job["kb"])
assert report.error is None, report.error
done = time.time()
rss = _own_peak_rss_mb()
own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu_s, children_cpu_s = own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime
from kbsearch.qdrant import open_store
store = open_store(settings, Secrets(settings))
paths, points = sorted(store.indexed_state()), store.count()
store.close()
print(json.dumps({"done": done, "peak_rss_mb": rss, "cpu_s": cpu_s, "children_cpu_s": children_cpu_s,
                  "chunks": report.chunks_upserted, "points": points, "paths": paths, "skipped": report.skipped}))
"""

#: The peer: index (``IngestionPipeline.run`` into ``QdrantVectorStore`` on local mode) or search (the retriever).
_PEER_CHILD = r"""
import json, os, resource, statistics, time
job = json.loads(os.environ["KB_BENCH_JOB"])
from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter
from llama_index.embeddings.openai_like import OpenAILikeEmbedding
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import QdrantClient
embed = OpenAILikeEmbedding(model_name=job["model"], api_base=job["api_base"], api_key=job["api_key"],
                            dimensions=job["dims"], embed_batch_size=job["batch_size"])
out = {}
t0 = time.perf_counter()
client = QdrantClient(path=job["store"])
store = QdrantVectorStore(client=client, collection_name=job["collection"], batch_size=job["batch_size"])
if job["mode"] == "index":
    documents = SimpleDirectoryReader(job["kb"], recursive=True, required_exts=[".md"]).load_data()
    pipeline = IngestionPipeline(
        transformations=[MarkdownNodeParser(),
                         SentenceSplitter(chunk_size=job["chunk_tokens"], chunk_overlap=job["overlap_tokens"]),
                         embed],
        vector_store=store,
    )
    nodes = pipeline.run(documents=documents)
    client.close()
    out["done"] = time.time()
    out["peak_rss_mb"] = _own_peak_rss_mb()
    out["chunks"] = len(nodes)
    out["paths"] = sorted({os.path.relpath(d.metadata["file_path"], job["kb"]) for d in documents})
    out["paths_with_chunks"] = sorted({os.path.relpath(n.metadata["file_path"], job["kb"]) for n in nodes})
    client = QdrantClient(path=job["store"])
    out["points"] = client.count(job["collection"], exact=True).count
    client.close()
else:
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
    retriever = index.as_retriever(similarity_top_k=10)
    out["open_s"] = time.perf_counter() - t0
    walls = []
    for i, text in enumerate(job["queries"]):
        t1 = time.perf_counter()
        hits = retriever.retrieve(text)
        if i >= 3:  # warm, as ours: the first searches are not counted
            walls.append((time.perf_counter() - t1) * 1000)
        assert hits, text
    out["search_p50_ms"] = statistics.median(walls)
    out["search_p95_ms"] = sorted(walls)[int(0.95 * (len(walls) - 1))]
    out["peak_rss_mb"] = _own_peak_rss_mb()
    client.close()
print(json.dumps(out))
"""


def _child(code: str, job: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs one step in a fresh interpreter (``env``: variables over this process's); ``wall_s`` is from spawning
    it to the ``done`` it reports (the whole process for a search); ``peak_rss_mb`` is its own peak
    (``own_peak_rss_mb``) plus that of the processes it started (``children_peak_rss_mb``: :func:`run_job`).
    ``others_cpu_s``: the CPU-seconds the rest of the machine took while it ran (busy time, steal included, less
    this process's and the job's), of which ``steal_s`` the hypervisor's: what slowed a job that needs both cores
    (BENCHMARKS.md, "Session 19")."""
    env = dict(os.environ, **(env or {}), KB_BENCH_JOB=json.dumps(job))
    (busy, steal), ours = host_cpu_s(), own_cpu_s()
    spawned = time.time()
    proc, children_mb = run_job(code, env)
    ended = time.time()
    (busy_after, steal_after), ours_after = host_cpu_s(), own_cpu_s()
    if proc.returncode != 0:
        raise RuntimeError(f"bench peer child ({job.get('mode')}) failed: {proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = out.get("done", ended) - spawned
    out["own_peak_rss_mb"], out["children_peak_rss_mb"] = out["peak_rss_mb"], children_mb
    out["peak_rss_mb"] += children_mb
    out["others_cpu_s"] = max(0.0, (busy_after - busy) - (ours_after - ours))
    out["steal_s"] = steal_after - steal
    return out


def _nfc(paths: list[str]) -> list[str]:
    return sorted(unicodedata.normalize("NFC", Path(p).as_posix()) for p in paths)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def bench_peer(
    kb: Path,
    copies: tuple[int, ...] = (1, 10),
    runs: int = 3,
    queries: int = 50,
    dims: int = 1024,
    progress: Any = None,
) -> dict[str, Any]:
    """Per vault size (copies of ``kb``), ``runs`` rounds of: full index by each side into a fresh store, then a
    search process over that store (3 warm-up queries, then ``queries`` timed ones), the sides alternating which
    goes first. Medians over the rounds; each round's store is deleted when its search is done."""
    import random

    fake = FakeProvider("deepinfra", api_key="bench-key").start()
    model = FakeProvider.EMBED_MODEL["deepinfra"]
    results: dict[str, Any] = {
        "kb": str(kb), "dims": dims, "batch_size": BATCH_SIZE, "queries": queries, "runs": runs,
        "chunk_tokens": DEFAULT_MAX_TOKENS, "overlap_tokens": DEFAULT_OVERLAP_TOKENS, "machine": _machine(),
        "versions": {p: _version(p) for p in ("llama-index-core", "llama-index-vector-stores-qdrant",
                                              "llama-index-embeddings-openai-like", "qdrant-client",
                                              "qdrant-edge-py")},
        "peer_search": "dense only (QdrantVectorStore's hybrid needs fastembed models downloaded at run time)",
    }  # fmt: skip
    rng = random.Random(5)
    vocabulary = ["sync", "plugin", "canvas", "vault", "graph", "link", "note", "publish", "theme", "hotkey", "file",
                  "backlinks", "tags", "search", "embed", "properties", "template", "daily", "mobile", "settings"]  # fmt: skip
    texts = [" ".join(rng.sample(vocabulary, 3)) + f" {i}" for i in range(queries + 3)]
    api_base = fake.embeddings_url.removesuffix("/embeddings")
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="kbsearch-bench-peer-") as tmp:
            root = Path(tmp)
            for n in copies:
                (root / f"kb{n}").mkdir()
                source = copied_vault(kb, n, root / f"kb{n}")
                measured: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
                for run in range(runs):
                    for side in SIDES if run % 2 == 0 else SIDES[::-1]:
                        store = root / f"q-{n}-{side}-{run}"
                        if side == "kbsearch":
                            values = {"qdrant_path": str(store), "qdrant_embedded": "edge", "embedding_dimensions": dims,
                                      "embedding_url": fake.embeddings_url, "embedding_api_key": fake.api_key,
                                      "embedding_model": model, "embedding_batch_size": BATCH_SIZE,
                                      "embedding_concurrency": 4}  # fmt: skip
                            index = _child(_OURS_INDEX_CHILD, {"mode": "index", "settings": values, "kb": str(source)})
                            search = _child(_STORE_CHILD, {"mode": "search", "settings": values, "queries": texts})
                        else:
                            job = {"store": str(store), "collection": COLLECTION, "model": model, "api_base": api_base,
                                   "api_key": fake.api_key, "dims": dims, "batch_size": BATCH_SIZE,
                                   "chunk_tokens": DEFAULT_MAX_TOKENS, "overlap_tokens": DEFAULT_OVERLAP_TOKENS}  # fmt: skip
                            index = _child(_PEER_CHILD, job | {"mode": "index", "kb": str(source)})
                            search = _child(_PEER_CHILD, job | {"mode": "search", "queries": texts})
                        shutil.rmtree(store, ignore_errors=True)
                        step = {"index": index, "search": search}
                        measured[side].append(step)
                        if progress:
                            progress({"copies": n, "side": side, "run": run + 1, "index_s": round(index["wall_s"], 1),
                                      "search_p50_ms": round(search["search_p50_ms"], 1)})  # fmt: skip
                shutil.rmtree(root / f"kb{n}", ignore_errors=True)
                rows.extend(_rows(n, measured))
    finally:
        fake.stop()
    results["rows"] = rows
    return results


def _rows(copies: int, measured: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    def median(side: str, step: str, key: str) -> float:
        return float(statistics.median(m[step][key] for m in measured[side]))

    # the same notes: what we indexed plus what we skipped with a reason (a broken note) is what the peer indexed
    skipped = measured["kbsearch"][0]["index"]["skipped"]
    ours_paths = _nfc(measured["kbsearch"][0]["index"]["paths"] + [s["path"] for s in skipped])
    peer_paths = _nfc(measured["llamaindex"][0]["index"]["paths_with_chunks"])
    rows = []
    for side in SIDES:
        first = measured[side][0]["index"]
        rows.append({
            "copies": copies, "side": side, "runs": len(measured[side]),
            "notes": len(first["paths_with_chunks"] if side == "llamaindex" else first["paths"]),
            "chunks": first["chunks"], "points": first["points"],
            "index_s": round(median(side, "index", "wall_s"), 2),
            "index_runs_s": [round(m["index"]["wall_s"], 2) for m in measured[side]],
            "index_peak_rss_mb": round(median(side, "index", "peak_rss_mb")),
            "open_s": round(median(side, "search", "open_s"), 3),
            "search_p50_ms": round(median(side, "search", "search_p50_ms"), 1),
            "search_peak_rss_mb": round(median(side, "search", "peak_rss_mb")),
        })  # fmt: skip
    ours, peer = rows
    ours["skipped"] = skipped
    ours["same_notes_as_peer"] = ours_paths == peer_paths
    ours["notes_only_ours"] = sorted(set(ours_paths) - set(peer_paths))[:20]
    ours["notes_only_peer"] = sorted(set(peer_paths) - set(ours_paths))[:20]
    ours["ratio_to_peer"] = {
        key: round(ours[key] / peer[key], 2) if peer[key] else None
        for key in ("index_s", "index_peak_rss_mb", "search_p50_ms", "search_peak_rss_mb")
    }
    return rows


def format_peer(results: dict[str, Any]) -> str:
    v = results["versions"]
    lines = [
        f"bench peer: {results['kb']} ({results['dims']} dims, batch {results['batch_size']}, fake embedder answering "
        f"at once; medians of {results['runs']} runs; {results['queries']} warm searches; "
        f"{results['machine']['cpus']} CPUs, Python {results['machine']['python']})",
        f"  kbsearch: run_sync into Qdrant Edge {v['qdrant-edge-py']} (4 embedding requests in flight), hybrid search",
        f"  llamaindex: llama-index-core {v['llama-index-core']} IngestionPipeline(MarkdownNodeParser, SentenceSplitter "
        f"{results['chunk_tokens']}/{results['overlap_tokens']}, OpenAILikeEmbedding) + QdrantVectorStore "
        f"{v['llama-index-vector-stores-qdrant']} on qdrant-client {v['qdrant-client']} local mode; retriever: "
        f"{results['peer_search']}",
        f"{'copies':>6} {'side':>10} {'notes':>6} {'chunks':>7} {'index s':>8} {'RSS MB':>7} {'open s':>7} "
        f"{'search p50 ms':>14} {'RSS MB':>7}",
    ]
    ours: dict[int, dict[str, Any]] = {}
    for r in results["rows"]:
        lines.append(
            f"{r['copies']:>6} {r['side']:>10} {r['notes']:>6} {r['chunks']:>7} {r['index_s']:>8} "
            f"{r['index_peak_rss_mb']:>7} {r['open_s']:>7} {r['search_p50_ms']:>14} {r['search_peak_rss_mb']:>7}"
        )
        if r["side"] == "kbsearch":
            ours[r["copies"]] = r
        elif r["copies"] in ours:
            o = ours[r["copies"]]
            ratio = o["ratio_to_peer"]
            same = (f"yes ({len(o['skipped'])} skipped by ours with a reason)" if o["skipped"] else "yes") if o[
                "same_notes_as_peer"] else (
                f"NO (only ours: {o['notes_only_ours'][:3]}, only LlamaIndex: {o['notes_only_peer'][:3]})"
            )  # fmt: skip
            lines.append(
                f"{'':>6} {'ours/peer':>10} {'':>6} {'':>7} {ratio['index_s']!s:>7}x {ratio['index_peak_rss_mb']!s:>6}x "
                f"{'':>7} {ratio['search_p50_ms']!s:>13}x {ratio['search_peak_rss_mb']!s:>6}x   same notes: {same}"
            )
    lines.append("(index s: process spawn to store closed, interpreter and imports included; RSS: the process's peak "
                 "plus its children's (our index's parsing process), an upper bound; open: store + retriever ready; "
                 "search p50: one whole search, query embedding included)")  # fmt: skip
    return "\n".join(lines)
