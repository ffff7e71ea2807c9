"""What the dangling-link check (``indexer.dangling_links``) costs, timed in process on an embedded store (walk36b,
rev36e; committed in round 37 by tidy37: the two scripts had stayed in ``/tmp``).

The store is a KB folder indexed BM25 only into a fresh scratch store (``--kb``, the Obsidian vault by default), or
a store already built (``--store``), or rev36e's hub KB (``--hub N``: ``N`` notes ``n/00000.md``... each ``# Note
i`` linking ``[[hub]]``, and ``hub.md`` whose H1 is ``Centre``, so only its path answers the link; once indexed,
``hub.md`` is renamed ``hub2.md`` and synced again: every link dangles, and ``hub`` is hub.md's lost keys;
``--keep-hub``: no rename, the keys all still resolve). Every first chunk's ``l:`` keys are read with
``indexer._scrolled``, then ``time.perf_counter()`` is taken around ``dangling_links(store, lost, written)`` (median
of ``--calls`` calls, the whole repeated ``--runs`` times) for:

- ``every``: every note's keys written (a first index);
- ``one``: one note's keys written (a one-note sync or event);
- ``hub``: the path keys of the note most linked to lost (its rename, before it is written anew);
- ``nothing``: nothing written or gone (no read);
- ``total``: ``dangling_total(store)``, every dangling link of the index counted (rel37: the first sync after one
  that wrote; round 38's perf38 made it linear: at 10× the vault, ``--kb`` of ten copies, every title is ten notes').

Prints one JSON line per run.

    PYTHONPATH=layers/kbsearch:tools nice -n 5 .venv/bin/python eval/bench_dangling_links.py          # walk36b
    PYTHONPATH=layers/kbsearch:tools nice -n 5 .venv/bin/python eval/bench_dangling_links.py --hub 50000 \\
        --cases hub --calls 5                                                                       # rev36e
    PYTHONPATH=layers/kbsearch:tools nice -n 5 .venv/bin/python eval/bench_dangling_links.py --store STORE \
        --cases total --calls 3                                                                     # perf38
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import _scrolled, dangling_links, dangling_total, run_sync
from kbsearch.links import LINK_KEY, path_keys, stored_keys
from kbsearch.qdrant import open_store

VAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "kb" / "obsidian-help"
CASES = ("every", "one", "hub", "nothing", "total")


def hub_kb(folder: Path, notes: int) -> Path:
    """rev36e's KB: ``notes`` notes linking ``[[hub]]`` to ``hub.md``, which only its path names."""
    (folder / "n").mkdir(parents=True)
    for i in range(notes):
        (folder / "n" / f"{i:05d}.md").write_text(f"# Note {i}\n\nSee [[hub]].\n", encoding="utf-8")
    (folder / "hub.md").write_text("# Centre\n\nThe hub.\n", encoding="utf-8")
    return folder


def counted(total: int | None) -> tuple[int, list[dict[str, str]], bool]:
    """``dangling_total``'s answer as the check's (a count, no links listed, whether it was cut: then -1)."""
    return (-1 if total is None else total), [], total is None


def timed(call: Callable[[], tuple[int, list[dict[str, str]], bool]], calls: int) -> tuple[float, int]:
    """The median of ``calls`` calls, in ms, and the count the check answered."""
    times, found = [], 0
    for _ in range(calls):
        start = time.perf_counter()
        found = call()[0]
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--kb", type=Path, default=VAULT, help="a KB folder, indexed BM25 only into a scratch store")
    source.add_argument("--store", type=Path, help="an embedded store already built (QDRANT_PATH)")
    source.add_argument("--hub", type=int, help="rev36e's hub KB of this many linking notes, made and indexed")
    parser.add_argument("--keep-hub", action="store_true", help="with --hub: no rename, hub.md's keys still resolve")
    parser.add_argument("--cases", default=",".join(CASES), help=f"a comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--calls", type=int, default=7, help="calls per case, the median reported")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    if unknown := set(cases) - set(CASES):
        parser.error(f"--cases takes {','.join(CASES)}, got {','.join(sorted(unknown))}")
    if args.keep_hub and not args.hub:
        parser.error("--keep-hub keeps the hub of --hub N: give --hub")

    with tempfile.TemporaryDirectory(prefix="bench-dangling-") as scratch:
        path = args.store
        if path is None:
            kb = hub_kb(Path(scratch) / "kb", args.hub) if args.hub else args.kb
            path = Path(scratch) / "q"
            settings = Settings(
                qdrant_path=str(path), qdrant_url="", embedding_api_key=None, embedding_api_key_param=""
            )
            started = time.perf_counter()
            report = run_sync(settings, Secrets(settings), source_uri=str(kb))
            print(json.dumps({"indexed": report.added, "index_s": round(time.perf_counter() - started, 1)}), flush=True)
            if (
                args.hub and not args.keep_hub
            ):  # rev36e: hub.md renamed hub2.md and synced; the check then reads hub.md's lost keys
                (kb / "hub.md").rename(kb / "hub2.md")
                report = run_sync(settings, Secrets(settings), source_uri=str(kb))
                print(json.dumps({"renamed": "hub.md -> hub2.md", "dangling_links": report.dangling_links}), flush=True)
        settings = Settings(qdrant_path=str(path), qdrant_url="")
        store = open_store(settings, Secrets(settings))
        try:
            if not run(store, cases, args.calls, args.runs, "hub.md" if args.hub else None):
                parser.exit(2, f"{parser.prog}: error: the store holds no note to time the check on\n")
        finally:
            store.close()


def run(store: Any, cases: Sequence[str], calls: int, runs: int, hub: str | None) -> bool:
    """``hub``: the note whose keys ``hub`` loses (else the indexed note most linked to). False, timing nothing, when
    the store holds no note."""
    first_chunks = {"filter": {"must": [{"key": "chunk_index", "match": {"value": 0}}]}}
    firsts = list(_scrolled(store, [first_chunks], ["path", "graph_keys"], 1024))
    if not firsts:
        return False
    written: Mapping[str, Sequence[str]] = {p["path"]: stored_keys(p, LINK_KEY) for p in firsts}
    linked = Counter(key for keys in written.values() for key in keys)
    hub = hub or max(written, key=lambda p: sum(linked[k] for k in path_keys(p)))
    one = dict([next(iter(written.items()))])
    checks = {
        "every": lambda: dangling_links(store, set(), written),
        "one": lambda: dangling_links(store, set(), one),
        "hub": lambda: dangling_links(store, set(path_keys(hub)), {}),
        "nothing": lambda: dangling_links(store, set(), {}),
        "total": lambda: counted(dangling_total(store)),
    }
    facts = {"notes": len(firsts), "links": sum(map(len, written.values())), "hub": hub}
    facts["hub_linked_by"] = sum(linked[k] for k in path_keys(hub))
    print(json.dumps(facts, ensure_ascii=False), flush=True)
    for i in range(runs):
        line: dict[str, Any] = {"run": i + 1}
        for case in cases:
            ms, found = timed(checks[case], calls)
            line[case] = {"median_ms": round(ms, 2), "dangling": found}
        print(json.dumps(line), flush=True)
    return True


if __name__ == "__main__":
    main()
