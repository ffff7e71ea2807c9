"""What writing points costs the indexing process in Qdrant Edge (``python -m kbsearch_tools.bench_upsert``, issue 25).

Qdrant Edge's Python binding converts a point's payload value by value under the interpreter lock (~3 µs a string:
BENCHMARKS.md, "Session 24"), and a chunk's payload repeats its note's values (title, folders, tags, summary,
links, etag, access ...) on every chunk. This writes ``--points`` real chunk payloads (the vault copied side by side
as ``bench growth`` copies it, each note parsed by ``parse_for_index`` as the indexer does, with its ``reach``, its
real BM25 vector and a random dense vector of ``--dims``) into a fresh embedded store (``EdgeStore``) in batches of
256, as the indexer writes them, then seals it (``optimize()``), and times the process's CPU for each part. Two
variants, each once a round (the order alternating), medians of ``--runs``:

- ``shared once``: ``EdgeStore.upsert`` as it is (a note's shared values set once on its points after their upsert);
- ``whole``: ``EdgeStore.upsert`` of a store made with ``share_payloads=False``: each point with its whole payload
  (the store's write before session 26).

It checks that both stores hold the same payloads, point for point.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kbsearch_tools.bench_seal import BATCH, note, parse_vault_args, vault_parser, vault_points

VARIANTS = ("shared once", "whole")


def write_once(
    work: Path, found: list[tuple[dict[str, Any], Any]], variant: str, dims: int, seed: int
) -> dict[str, Any]:
    """One fresh store, the points written in batches, then sealed: CPU seconds by part, and the stored payloads."""
    from kbsearch.qdrant.embedded import EdgeStore
    from kbsearch.qdrant.store import ChunkPoint

    store = EdgeStore(Path(tempfile.mkdtemp(dir=work)), "upsert", dims, graph_from=len(found),
                      share_payloads=variant == "shared once")  # fmt: skip
    rng = random.Random(seed)
    vectors = [[rng.uniform(-1.0, 1.0) for _ in range(dims)] for _ in range(BATCH)]
    try:
        store.ensure_collection()  # its segment sealed at len(found) points: the seal timed below
        store.graph_from = len(found) + 1  # and not by the last upsert's cycle
        write = 0.0
        for start in range(0, len(found), BATCH):
            batch = [ChunkPoint(p["path"], p["chunk_index"], p, s, vectors[i])
                     for i, (p, s) in enumerate(found[start : start + BATCH])]  # fmt: skip
            c0 = time.process_time()
            store.upsert(batch)
            write += time.process_time() - c0
        c0 = time.process_time()
        store.shard.optimize()
        seal = time.process_time() - c0
        records, _ = store.scroll({"limit": len(found) + 1, "with_payload": True}, 60.0)
        payloads = {r["id"]: json.dumps(r["payload"], sort_keys=True) for r in records}
    finally:
        store.close()
    return {"write_cpu_s": write, "seal_cpu_s": seal, "payloads": payloads}


def bench_upsert(kb: Path, points: int, runs: int, dims: int, progress: Any = None) -> dict[str, Any]:
    import shutil

    with tempfile.TemporaryDirectory(prefix="kbsearch-upsert-") as tmp:
        work = Path(tmp)
        found = vault_points(kb, points, work)
        measured: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
        stored: dict[str, dict[Any, str]] = {}
        for round_ in range(runs):
            for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
                row = write_once(work, found, variant, dims, seed=round_)
                stored[variant] = row.pop("payloads")
                measured[variant].append(row)
                if progress:
                    progress(f"round {round_ + 1} {variant}: write {row['write_cpu_s']:.2f}, "
                             f"seal {row['seal_cpu_s']:.2f} cpu-s")  # fmt: skip
                for entry in work.iterdir():  # the store just measured; the copied vault stays
                    if (entry / "edge").is_dir():
                        shutil.rmtree(entry)
    rows = []
    for variant, got in measured.items():
        write, seal = [r["write_cpu_s"] for r in got], [r["seal_cpu_s"] for r in got]
        rows.append({"variant": variant, "write_cpu_s": round(statistics.median(write), 3),
                     "seal_cpu_s": round(statistics.median(seal), 3),
                     "write_cpu_runs": [round(c, 3) for c in write], "seal_cpu_runs": [round(c, 3) for c in seal]})  # fmt: skip
    same = stored["shared once"] == stored["whole"] and len(stored["whole"]) == len(found)
    return {"points": len(found), "dims": dims, "runs": runs, "same_payloads": same, "rows": rows}


def format_upsert(results: dict[str, Any]) -> str:
    lines = [
        f"{results['points']} points written in batches of {BATCH}, {results['dims']}-d, then sealed; medians of "
        f"{results['runs']}; the same payloads stored: {results['same_payloads']}",
        f"{'variant':<12} {'write cpu':>9} {'seal cpu':>8}  write runs / seal runs",
    ]
    for r in results["rows"]:
        runs = (
            ", ".join(f"{c:.2f}" for c in r["write_cpu_runs"])
            + " / "
            + ", ".join(f"{c:.2f}" for c in r["seal_cpu_runs"])
        )
        lines.append(f"{r['variant']:<12} {r['write_cpu_s']:>9.3f} {r['seal_cpu_s']:>8.3f}  {runs}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = vault_parser("python -m kbsearch_tools.bench_upsert", __doc__ or "",
                          "points written (default 10,000: one seal)", "rounds, both variants in each (default 3)")  # fmt: skip
    args = parse_vault_args(parser, argv)
    results = bench_upsert(args.kb, args.points, args.runs, args.dims, note)
    print(json.dumps(results, indent=2) if args.json else format_upsert(results))
    return 0 if results["same_payloads"] else 1


if __name__ == "__main__":
    sys.exit(main())
