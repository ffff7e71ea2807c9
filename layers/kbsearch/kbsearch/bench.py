"""``kbsearch bench``: reproducible measurements against loopback fakes and the embedded store."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kbsearch.config import Secrets, Settings
from kbsearch.fakes import FakeProvider
from kbsearch.indexer import run_sync


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }


def _settings(store: Path, fake: FakeProvider | None, **extra: Any) -> Settings:
    values: dict[str, Any] = {"qdrant_path": str(store), "embedding_dimensions": extra.pop("dims", 1024)}
    if fake is not None:
        values |= {"embedding_url": fake.embeddings_url, "embedding_api_key": fake.api_key}
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
            env = dict(os.environ, QDRANT_PATH=str(store), EMBEDDING_URL=fake.embeddings_url,
                       EMBEDDING_API_KEY=fake.api_key, EMBEDDING_DIMENSIONS=str(dims))  # fmt: skip
            command = []
            for _ in range(runs):
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "kbsearch.cli", "index", str(kb), "--json"],
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
