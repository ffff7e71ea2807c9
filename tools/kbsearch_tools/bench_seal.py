"""What one Qdrant Edge seal costs per payload index (``python -m kbsearch_tools.bench_seal``, issue 25).

A seal (``optimize()`` of a segment that reached ``QDRANT_EMBEDDED_GRAPH_FROM`` points, 10,000: three at 10x the
vault) builds every payload index of the segment again, each from every point's payload, under the indexing
process's interpreter lock. This writes ``--points`` real chunk payloads (the vault's notes, copied side by side as
``bench growth`` copies them, parsed as the indexer parses them, their real BM25 vectors; random dense vectors of
``--dims``) into a fresh embedded store (``EdgeStore``, its settings) with a set of payload indexes, in batches of
256 as the indexer writes them (``upsert``), then times its shard's ``optimize()``: the process's CPU (every thread; Edge's seal runs in the
calling thread, holding the lock) and its wall. Variants, each in every round (the order rotating round by round,
medians of ``--runs``):

- ``all``: the 11 of ``PAYLOAD_INDEXES``, all created with the collection (a store made before session 26's
  first-value indexes); ``none``: no payload index (the floor);
- ``as created``: the store's own (``EdgeStore`` without ``payload_indexes``): ``PAYLOAD_INDEXES`` but the
  ``FIRST_VALUE_INDEXES`` with the collection, each of those before the first point holding a value for its field
  (on a vault without front matter, none of them; on the Obsidian help vault ``tags`` and ``tag_keys``, from the two
  notes with tags in their text, since round 31);
- ``only FIELD``: one index alone, for each of the 11; ``only absent``: one keyword index of a field no point holds
  (what an index costs a seal for the payload reads alone, with no value to index);
- ``all but FIELD[,FIELD...]``: the 11 less these, for each ``--drop``;
- ``graph split``: the payload shape before session 26 (the 10 other indexes and, in place of ``graph_keys``, one
  keyword index each for ``path_keys``, ``name_keys`` and ``link_keys``, a note's ``p:``, ``n:`` and ``l:`` graph
  keys unprefixed, on its first chunk only as ``graph_keys`` is).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kbsearch.links import GRAPH_KEYS, OLD_GRAPH_FIELDS, stored_keys

#: the graph's three keyword fields before session 26 (``graph split``), by the prefix of their keys in ``graph_keys``
SPLIT = dict(OLD_GRAPH_FIELDS)
ABSENT = "no_such_field"
BATCH = 256


def vault_points(kb: Path, points: int, work: Path) -> list[tuple[dict[str, Any], Any]]:
    """``points`` chunks of ``kb`` copied side by side, as the indexer builds them: (payload with ``reach``, BM25)."""
    from kbsearch.access import FolderRules, reach_of
    from kbsearch.indexer import SyncOptions, parse_for_index
    from kbsearch.qdrant.query import REACH
    from kbsearch.sources import LocalSource
    from kbsearch_tools.bench import copied_vault

    found: list[tuple[dict[str, Any], Any]] = []
    copies = 1
    while not found or len(found) < points:
        found = []
        copies *= 2
        root = copied_vault(kb, copies, Path(tempfile.mkdtemp(dir=work)))
        source, options = LocalSource(root), SyncOptions()
        for obj in sorted(source.list(), key=lambda o: o.path):
            if not obj.is_note:
                continue
            outcome = parse_for_index(source, obj, options, FolderRules(), "bench", "2026-12-06T00:00:00Z", {})
            if outcome.parsed is None:
                continue
            groups = outcome.parsed[1][0]
            for point in outcome.parsed[3]:
                point.payload[REACH] = reach_of(groups, ())
                found.append((point.payload, point.sparse))
            if len(found) >= points:
                return found[:points]
    return found[:points]


def split(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with its ``graph_keys`` as the three fields they were before session 26 (unprefixed; none on a
    chunk past the first, which holds no ``graph_keys``)."""
    if GRAPH_KEYS not in payload:
        return payload
    out = {k: v for k, v in payload.items() if k != GRAPH_KEYS}
    for prefix, field in SPLIT.items():
        out[field] = stored_keys(payload, prefix)
    return out


def variants(drop: list[str]) -> dict[str, tuple[dict[str, str] | None, bool]]:
    """label → (payload indexes: field → kind, None for the store's own; whether the payload's graph keys are split
    in three fields)."""
    from kbsearch.qdrant.query import PAYLOAD_INDEXES

    out: dict[str, tuple[dict[str, str] | None, bool]] = {
        "all": (dict(PAYLOAD_INDEXES), False), "as created": (None, False), "none": ({}, False),
    }  # fmt: skip
    for name, kind in PAYLOAD_INDEXES.items():
        out[f"only {name}"] = ({name: kind}, False)
    out["only absent"] = ({ABSENT: "keyword"}, False)
    for fields in drop:
        left_out = {f.strip() for f in fields.split(",")}
        unknown = sorted(left_out - set(PAYLOAD_INDEXES))
        if unknown:
            raise SystemExit(f"--drop: {', '.join(unknown)} is not one of {', '.join(PAYLOAD_INDEXES)}")
        out[f"all but {fields}"] = ({k: v for k, v in PAYLOAD_INDEXES.items() if k not in left_out}, False)
    others = {k: v for k, v in PAYLOAD_INDEXES.items() if k != GRAPH_KEYS}
    out["graph split"] = (others | dict.fromkeys(SPLIT.values(), "keyword"), True)
    return out


def seal_once(
    work: Path,
    found: list[tuple[dict[str, Any], Any]],
    indexes: dict[str, str] | None,
    in_three: bool,
    dims: int,
    seed: int,
) -> dict[str, float]:
    """One fresh store with these payload indexes (None: the store's own), the points written as the indexer writes
    them (``upsert``, in batches), then its shard's ``optimize()``; CPU and wall seconds, and the payload indexes the
    shard had at the seal."""
    from kbsearch.qdrant.embedded import EdgeStore
    from kbsearch.qdrant.store import ChunkPoint

    store = EdgeStore(Path(tempfile.mkdtemp(dir=work)), "seal", dims, graph_from=len(found),
                      payload_indexes=indexes)  # fmt: skip
    try:
        store.ensure_collection()  # its segments sealed at len(found) points: the seal below
        store.graph_from = len(found) + 1  # and not by the last upsert (its cycle), so that it is timed alone
        rng = random.Random(seed)
        upsert_cpu = 0.0
        for start in range(0, len(found), BATCH):
            batch = []
            for payload, sparse in found[start : start + BATCH]:
                vector = [rng.uniform(-1.0, 1.0) for _ in range(dims)]
                written = split(payload) if in_three else payload
                batch.append(ChunkPoint(payload["path"], payload["chunk_index"], written, sparse, vector))
            c0 = time.process_time()
            store.upsert(batch)
            upsert_cpu += time.process_time() - c0
        held = len(store.shard.info().payload_schema or {})
        c0, w0 = time.process_time(), time.perf_counter()
        store.shard.optimize()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    finally:
        store.close()
    return {"upsert_cpu_s": upsert_cpu, "optimize_cpu_s": cpu, "optimize_wall_s": wall, "indexes": held}


def bench_seal(kb: Path, points: int, runs: int, dims: int, only: list[str] | None, drop: list[str],
               progress: Any = None) -> dict[str, Any]:  # fmt: skip
    import shutil

    chosen = variants(drop)
    if only:
        unknown = [label for label in only if label not in chosen]
        if unknown:
            raise SystemExit(f"--variant: unknown {', '.join(unknown)}; known: {', '.join(chosen)}")
        chosen = {label: chosen[label] for label in only}
    with tempfile.TemporaryDirectory(prefix="kbsearch-seal-") as tmp:
        work = Path(tmp)
        found = vault_points(kb, points, work)
        graph = sum(1 for payload, _ in found if GRAPH_KEYS in payload)
        measured: dict[str, list[dict[str, float]]] = {label: [] for label in chosen}
        labels = list(chosen)
        for round_ in range(runs):
            order = labels[round_ % len(labels) :] + labels[: round_ % len(labels)]
            for label in order:
                indexes, in_three = chosen[label]
                row = seal_once(work, found, indexes, in_three, dims, seed=round_)
                measured[label].append(row)
                if progress:
                    progress(f"round {round_ + 1} {label}: optimize {row['optimize_cpu_s']:.2f} cpu-s")
                for entry in work.iterdir():  # the store just measured; the copied vault stays
                    if (entry / "edge").is_dir():
                        shutil.rmtree(entry)
    rows = []
    for label, got in measured.items():
        cpu = [r["optimize_cpu_s"] for r in got]
        rows.append({
            "variant": label, "indexes": got[0]["indexes"],
            "optimize_cpu_s": round(statistics.median(cpu), 3), "optimize_cpu_runs": [round(c, 3) for c in cpu],
            "optimize_wall_s": round(statistics.median(r["optimize_wall_s"] for r in got), 3),
            "upsert_cpu_s": round(statistics.median(r["upsert_cpu_s"] for r in got), 3),
        })  # fmt: skip
    return {"points": len(found), "first_chunks": graph, "dims": dims, "runs": runs, "rows": rows}


def format_seal(results: dict[str, Any]) -> str:
    base = {r["variant"]: r["optimize_cpu_s"] for r in results["rows"]}
    floor = base.get("none")
    lines = [
        f"one seal of {results['points']} points ({results['first_chunks']} notes' first chunks), "
        f"{results['dims']}-d, medians of {results['runs']}",
        f"{'variant':<24} {'idx':>3} {'optimize cpu':>12} {'over none':>9} {'wall':>6} {'upsert cpu':>10}  runs",
    ]
    for r in results["rows"]:
        over = f"{r['optimize_cpu_s'] - floor:+.3f}" if floor is not None else ""
        runs = ", ".join(f"{c:.2f}" for c in r["optimize_cpu_runs"])
        lines.append(f"{r['variant']:<24} {r['indexes']:>3} {r['optimize_cpu_s']:>12.3f} {over:>9} "
                     f"{r['optimize_wall_s']:>6.2f} {r['upsert_cpu_s']:>10.2f}  {runs}")  # fmt: skip
    return "\n".join(lines)


def vault_parser(prog: str, doc: str, points_help: str, runs_help: str) -> argparse.ArgumentParser:
    """The options of a measurement over the vault's real chunk points (this one's and ``bench_upsert``'s)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--kb", type=Path, default=Path("../shared/kb/obsidian-help"), help="the vault to copy")
    parser.add_argument("--points", type=int, default=10_000, help=points_help)
    parser.add_argument("--runs", type=int, default=3, help=runs_help)
    parser.add_argument("--dims", type=int, default=1024, help="dense vector size (default 1,024)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def parse_vault_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if not args.kb.is_dir():
        parser.error(f"--kb {args.kb} is not a folder")
    if args.points < 1 or args.runs < 1 or args.dims < 1:
        parser.error("--points, --runs and --dims take a positive number")
    return args


def note(message: str) -> None:
    """A round's progress, on stderr."""
    print(f"  {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = vault_parser("python -m kbsearch_tools.bench_seal", __doc__ or "",
                          "points a seal (default 10,000: GRAPH_FROM)", "rounds, every variant once in each (default 3)")  # fmt: skip
    parser.add_argument("--variant", action="append", help="run only this variant (repeatable; default: all)")
    parser.add_argument(
        "--drop", action="append", default=[], help="add 'all but FIELD[,FIELD...]': the 11 less these (repeatable)"
    )
    args = parse_vault_args(parser, argv)
    results = bench_seal(args.kb, args.points, args.runs, args.dims, args.variant, args.drop, note)
    print(json.dumps(results, indent=2) if args.json else format_seal(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
