"""``kbsearch bench growth``: how each cost grows with the vault (1x, 10x, 100x its notes), ours next to LlamaIndex
where the peer can run, from one command.

Per vault size (copies of the vault side by side, as ``bench store`` and ``bench peer`` make them) and per side, in
fresh processes: the full index (wall from spawning the process to the store closed, its peak RSS plus that of the
processes it started, an upper bound: :func:`kbsearch_tools.bench.run_job`; the store's size on disk), opening the
store and warm searches (3 warm-up queries, then ``queries``; p50 and p95 of the whole search), and, for ours, the
no-change sync as a whole ``kbsearch index`` command. ``baseline``: a source tree of another revision (``git worktree
add`` or ``git archive``), run as a third side in the same rounds, so before/after figures come from the same sitting.
The sides alternate which goes first each round. Sizes above ``max_full_runs_copies`` index once (the 100x vault takes
tens of minutes on two cores); smaller ones ``runs`` times, medians reported.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kbsearch_tools.bench import _STORE_CHILD, _machine, copied_vault
from kbsearch_tools.bench_peer import _OURS_INDEX_CHILD, _PEER_CHILD, BATCH_SIZE, COLLECTION, _child, _version
from kbsearch_tools.fakes import FakeProvider

VOCABULARY = ["sync", "plugin", "canvas", "vault", "graph", "link", "note", "publish", "theme", "hotkey", "file",
              "backlinks", "tags", "search", "embed", "properties", "template", "daily", "mobile", "settings"]  # fmt: skip


def _disk_mb(path: Path) -> float:
    """MB the store takes on disk (allocated blocks: sparse and preallocated files count as they are)."""
    from kbsearch.qdrant.space import allocated_bytes

    return allocated_bytes(path) / 2**20


def _tree_env(tree: Path | None) -> dict[str, str]:
    """The child's environment: ``tree``'s runtime and tools ahead of this checkout's (a baseline revision)."""
    if tree is None:
        return {}
    paths = [str(tree / "layers" / "kbsearch"), str(tree / "tools")]
    return {"PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def bench_growth(
    kb: Path,
    copies: tuple[int, ...] = (1, 10, 100),
    runs: int = 3,
    peer_copies: tuple[int, ...] = (1, 10),
    queries: int = 50,
    dims: int = 1024,
    baseline: Path | None = None,
    max_full_runs_copies: int = 10,
    progress: Any = None,
) -> dict[str, Any]:
    import random

    fake = FakeProvider("deepinfra", api_key="bench-key").start()
    model = FakeProvider.EMBED_MODEL["deepinfra"]
    rng = random.Random(5)
    texts = [" ".join(rng.sample(VOCABULARY, 3)) + f" {i}" for i in range(queries + 3)]
    sides = ["kbsearch"] + (["baseline"] if baseline else [])
    results: dict[str, Any] = {
        "kb": str(kb), "copies": list(copies), "runs": runs, "queries": queries, "dims": dims,
        "batch_size": BATCH_SIZE, "baseline": str(baseline) if baseline else None, "machine": _machine(),
        "load_before": os.getloadavg(),
        "versions": {p: _version(p) for p in ("qdrant-edge-py", "llama-index-core", "qdrant-client")},
    }  # fmt: skip
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="kbsearch-bench-growth-") as tmp:
            root = Path(tmp)
            for n in copies:
                (root / f"kb{n}").mkdir()
                source = copied_vault(kb, n, root / f"kb{n}")
                here = sides + (["llamaindex"] if n in peer_copies else [])
                rounds = runs if n <= max_full_runs_copies else 1
                measured: dict[str, list[dict[str, Any]]] = {side: [] for side in here}
                for r in range(rounds):
                    for side in here[r % len(here) :] + here[: r % len(here)]:
                        store = root / f"q-{n}-{side}-{r}"
                        step = _side(side, store, source, texts, fake, model, dims, baseline,
                                     no_change_runs=runs if r == rounds - 1 and side != "llamaindex" else 0)  # fmt: skip
                        shutil.rmtree(store, ignore_errors=True)
                        measured[side].append(step)
                        if progress:
                            progress({"copies": n, "side": side, "run": r + 1, "index_s": round(step["index_s"], 1),
                                      "index_rss_mb": round(step["index_rss_mb"]),
                                      "search_p50_ms": round(step["search_p50_ms"], 1)})  # fmt: skip
                shutil.rmtree(root / f"kb{n}", ignore_errors=True)
                rows.extend(_rows(n, measured))
    finally:
        fake.stop()
    results["rows"] = rows
    results["load_after"] = os.getloadavg()
    return results


def _side(
    side: str, store: Path, source: Path, texts: list[str], fake: FakeProvider, model: str, dims: int,
    baseline: Path | None, no_change_runs: int,
) -> dict[str, Any]:  # fmt: skip
    """One round of one side: full index, store size, search process, and (ours) the no-change command."""
    if side == "llamaindex":
        job = {"store": str(store), "collection": COLLECTION, "model": model,
               "api_base": fake.embeddings_url.removesuffix("/embeddings"), "api_key": fake.api_key, "dims": dims,
               "batch_size": BATCH_SIZE, "chunk_tokens": 400, "overlap_tokens": 40}  # fmt: skip
        index = _child(_PEER_CHILD, job | {"mode": "index", "kb": str(source)})
        size = _disk_mb(store)
        search = _child(_PEER_CHILD, job | {"mode": "search", "queries": texts})
        return {"chunks": index["chunks"], "index_s": index["wall_s"], "index_rss_mb": index["peak_rss_mb"],
                "index_own_rss_mb": index["own_peak_rss_mb"], "index_children_rss_mb": index["children_peak_rss_mb"],
                "index_others_cpu_s": index["others_cpu_s"], "index_steal_s": index["steal_s"],
                "store_mb": size, "open_s": search["open_s"], "search_p50_ms": search["search_p50_ms"],
                "search_p95_ms": search["search_p95_ms"], "search_rss_mb": search["peak_rss_mb"]}  # fmt: skip
    tree = baseline if side == "baseline" else None
    env = _tree_env(tree)
    values = {"qdrant_path": str(store), "qdrant_embedded": "edge", "embedding_dimensions": dims,
              "embedding_url": fake.embeddings_url, "embedding_api_key": fake.api_key, "embedding_model": model,
              "embedding_batch_size": BATCH_SIZE, "embedding_concurrency": 4}  # fmt: skip
    index = _child(_OURS_INDEX_CHILD, {"mode": "index", "settings": values, "kb": str(source)}, env)
    size = _disk_mb(store)
    search = _child(_STORE_CHILD, {"mode": "search", "settings": values, "queries": texts}, env)
    walls = []
    command_env = dict(os.environ, QDRANT_PATH=str(store), QDRANT_EMBEDDED="edge", EMBEDDING_DIMENSIONS=str(dims),
                       EMBEDDING_URL=fake.embeddings_url, EMBEDDING_API_KEY=fake.api_key, **env)  # fmt: skip
    for _ in range(no_change_runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kbsearch_tools.cli", "index", str(source), "--json"],
                       env=command_env, check=True, capture_output=True)  # fmt: skip
        walls.append(time.perf_counter() - t0)
    return {
        "chunks": index["chunks"], "index_s": index["wall_s"], "index_rss_mb": index["peak_rss_mb"],
        "index_own_rss_mb": index["own_peak_rss_mb"], "index_children_rss_mb": index["children_peak_rss_mb"],
        "index_others_cpu_s": index["others_cpu_s"], "index_steal_s": index["steal_s"],
        "index_cpu_s": index["cpu_s"], "index_children_cpu_s": index["children_cpu_s"], "store_mb": size,
        "open_s": search["open_s"], "search_p50_ms": search["search_p50_ms"],
        "search_p95_ms": search.get("search_p95_ms"), "search_majflt_p50": search.get("search_majflt_p50"),
        "retrieve_p50_ms": search["retrieve_p50_ms"],
        "retrieve_p95_ms": search["retrieve_p95_ms"], "search_rss_mb": search["peak_rss_mb"],
        "no_change_s": statistics.median(walls) if walls else None, "no_change_runs_s": walls,
    }  # fmt: skip


def _rows(copies: int, measured: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    def median(side: str, key: str) -> float | None:
        values = [m[key] for m in measured[side] if m.get(key) is not None]
        return round(float(statistics.median(values)), 3) if values else None

    rows = []
    for side, steps in measured.items():
        row: dict[str, Any] = {"copies": copies, "side": side, "runs": len(steps), "chunks": steps[0]["chunks"],
                               "index_runs_s": [round(s["index_s"], 2) for s in steps],
                               "index_others_cpu_runs_s": [round(s["index_others_cpu_s"], 1) for s in steps],
                               "index_steal_runs_s": [round(s["index_steal_s"], 1) for s in steps],
                               "index_cpu_runs_s": [round(s["index_cpu_s"], 2) for s in steps if "index_cpu_s" in s],
                               "index_children_cpu_runs_s": [round(s["index_children_cpu_s"], 2) for s in steps
                                                             if "index_children_cpu_s" in s]}  # fmt: skip
        for key in ("index_s", "index_cpu_s", "index_children_cpu_s", "index_rss_mb", "index_own_rss_mb",
                    "index_children_rss_mb", "store_mb", "open_s",
                    "search_p50_ms", "search_p95_ms", "search_majflt_p50", "retrieve_p50_ms", "retrieve_p95_ms",
                    "search_rss_mb", "no_change_s"):  # fmt: skip
            row[key] = median(side, key)
        row["no_change_runs_s"] = [round(x, 2) for s in steps for x in s.get("no_change_runs_s") or []]
        rows.append(row)
    ours = rows[0]
    compared = ("index_s", "index_rss_mb", "store_mb", "open_s", "search_p50_ms", "search_p95_ms", "search_rss_mb",
                "no_change_s")  # fmt: skip
    for other in rows[1:]:
        ours[f"ratio_to_{other['side']}"] = {
            key: round(ours[key] / other[key], 2) if ours.get(key) and other.get(key) else None for key in compared
        }
    return rows


def format_growth(results: dict[str, Any]) -> str:
    v = results["versions"]
    lines = [
        f"bench growth: {results['kb']} x {results['copies']} ({results['dims']} dims, batch {results['batch_size']}, "
        f"fake embedder answering at once; medians of {results['runs']} runs up to 10x, one full index above; "
        f"{results['queries']} warm searches; {results['machine']['cpus']} CPUs, load "
        f"{results['load_before'][0]:.1f} -> {results['load_after'][0]:.1f}; Qdrant Edge {v['qdrant-edge-py']}, "
        f"llama-index-core {v['llama-index-core']})",
        f"{'copies':>6} {'side':>10} {'chunks':>7} {'index s':>8} {'RSS MB':>7} {'store MB':>8} {'open s':>7} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'RSS MB':>7} {'no-change s':>11}",
    ]

    def cell(value: Any, width: int, digits: int = 2) -> str:
        return f"{'-' if value is None else round(value, digits) if digits else round(value):>{width}}"

    for r in results["rows"]:
        lines.append(
            f"{r['copies']:>6} {r['side']:>10} {r['chunks']:>7} {cell(r['index_s'], 8)} "
            f"{cell(r['index_rss_mb'], 7, 0)} {cell(r['store_mb'], 8, 0)} {cell(r['open_s'], 7)} "
            f"{cell(r['search_p50_ms'], 7, 1)} {cell(r['search_p95_ms'], 7, 1)} {cell(r['search_rss_mb'], 7, 0)} "
            f"{cell(r['no_change_s'], 11)}"
        )
        for key, ratio in r.items():
            if key.startswith("ratio_to_"):
                lines.append(
                    f"{'':>6} {'/' + key.removeprefix('ratio_to_'):>10} {'':>7} {cell(ratio['index_s'], 7)}x "
                    f"{cell(ratio['index_rss_mb'], 6)}x {cell(ratio['store_mb'], 7)}x {cell(ratio['open_s'], 6)}x "
                    f"{cell(ratio['search_p50_ms'], 6)}x {cell(ratio['search_p95_ms'], 6)}x "
                    f"{cell(ratio['search_rss_mb'], 6)}x {cell(ratio['no_change_s'], 10)}x"
                )
    lines.append("(index s: process spawn to store closed, imports included; index RSS: the process's peak plus its "
                 "children's (our parsing process), an upper bound; search RSS: the process's peak; p50/p95: one whole "
                 "warm search, ours hybrid, LlamaIndex dense; no-change: a whole `kbsearch index` command)")  # fmt: skip
    lines.append(
        "(others' CPU: CPU-seconds the rest of the machine took during each index run, the hypervisor's "
        "steal included; ours needs both cores, so each costs it ~0.5 s of wall: BENCHMARKS.md, session 19)"
    )
    for r in results["rows"]:
        lines.append(
            f"({r['copies']}x {r['side']}: index runs {r['index_runs_s']} s; others' CPU "
            f"{r['index_others_cpu_runs_s']} cpu-s, steal {r['index_steal_runs_s']})"
        )
        if r.get("index_cpu_runs_s"):
            lines.append(f"({r['copies']}x {r['side']}: the indexing process's own CPU {r['index_cpu_runs_s']} cpu-s, "
                         f"its children's (the parsing process) {r['index_children_cpu_runs_s']})")  # fmt: skip
        if r.get("search_majflt_p50") is not None:
            lines.append(f"({r['copies']}x {r['side']}: a warm search's major page faults, p50: "
                         f"{r['search_majflt_p50']:.0f}; reads from disk, whatever the load)")  # fmt: skip
        if r.get("index_children_rss_mb"):
            lines.append(f"({r['copies']}x {r['side']}: index RSS {r['index_own_rss_mb']:.0f} MB own + "
                         f"{r['index_children_rss_mb']:.0f} MB its children's)")  # fmt: skip
    return "\n".join(lines)
