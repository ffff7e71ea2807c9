"""What parsing a note in ``kbsearch serve``'s parsing process costs against parsing it in the syncing thread
(``python -m kbsearch_tools.bench_parse_process [FOLDER] [--runs N]``, round 27).

``kbsearch serve``'s syncs run in threads, where no timer signal bounds a note's parse: they send each note to a
kept parsing process (:class:`kbsearch.indexer.ParsingProcess`). From a thread other than the main one, as the live
sync runs, this parses every note of ``FOLDER`` (default: the Obsidian vault's ``en/``) once in the thread
(:func:`kbsearch.indexer.parse_for_index`, unbounded there) and once through the process (the note read here, its
outcome sent back), alternating, ``--runs`` times; it prints the median per note of each, in milliseconds, as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

DEFAULT_FOLDER = Path(__file__).resolve().parents[2].parent / "shared" / "kb" / "obsidian-help" / "en"


def measure(folder: Path, runs: int) -> dict[str, Any]:
    from kbsearch.access import FolderRules
    from kbsearch.indexer import ParsingProcess, SyncOptions, parse_for_index
    from kbsearch.sources import LocalSource

    source = LocalSource(folder)
    objs = [obj for obj in source.list() if obj.path.endswith(".md") and obj.problem is None]
    options, rules = SyncOptions(), FolderRules()
    parser = ParsingProcess().start()
    here: list[float] = []
    there: list[float] = []

    def run() -> None:
        for _ in range(runs):
            began = time.perf_counter()
            for obj in objs:
                parse_for_index(source, obj, options, rules, None, "now", {})
            here.append(time.perf_counter() - began)
            began = time.perf_counter()
            for obj in objs:
                parser.parse(obj, source.read(obj), options, rules, None, "now")
            there.append(time.perf_counter() - began)

    try:
        thread = threading.Thread(target=run, name="kbsearch-bench-parse")
        thread.start()
        thread.join()
    finally:
        parser.close()
    return {
        "notes": len(objs), "runs": runs,
        "thread_ms_per_note": round(statistics.median(here) / len(objs) * 1e3, 3),
        "process_ms_per_note": round(statistics.median(there) / len(objs) * 1e3, 3),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kbsearch_tools.bench_parse_process", description=__doc__)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER, help="a folder of notes")
    parser.add_argument("--runs", type=int, default=7, help="rounds, each way (default 7)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.folder, args.runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
