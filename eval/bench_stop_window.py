"""What a full sync leaves at its deadline (``stop_at``: ``DEADLINE_MARGIN_S`` before a Lambda's end) and what
embedding it there would cost (rel34, round 33's left (1)). A first sync of a KB folder (the Obsidian vault by
default) into a fresh embedded store, the DeepInfra fake answering each embedding request after ``--latency``
seconds, ``EMBEDDING_BATCH_SIZE``/``EMBEDDING_CONCURRENCY`` at their defaults (a window of 512 chunks), stopped by
``stop_at`` ``--stop`` seconds in, its calls bounded ``--margin`` seconds later (the Lambda's end). Prints one dict:

- ``written`` notes and chunks, the chunks embedded a second before the deadline (``rate``);
- ``left_gathered``: the notes read, parsed and not embedded at the deadline (the gathered window: what round
  33 counts as ``unwritten`` and the next run reads again) and their chunks;
- ``embed_left_s``: what embedding them would take at that rate, beside ``margin_s``;
- ``reparse_ms``: what the next run spends reading them again (the parse of their text, CPU);
- ``tail_s``: from the deadline to the run's return (the window embedded ahead, the writes, the records).

    PYTHONPATH=layers/kbsearch:tools nice -n 5 .venv/bin/python eval/bench_stop_window.py --latency 1.0 --stop 8
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
from kbsearch.notes import parse_note
from kbsearch.providers.resilience import Deadline
from kbsearch.qdrant import open_store
from kbsearch_tools.fakes import FakeProvider, provider_env

VAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "kb" / "obsidian-help"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kb", default=str(VAULT))
    parser.add_argument("--latency", type=float, default=1.0, help="seconds the fake takes per embedding request")
    parser.add_argument("--stop", type=float, default=8.0, help="stop_at, seconds into the run")
    parser.add_argument("--margin", type=float, default=60.0, help="DEADLINE_MARGIN_S: the calls' end after stop_at")
    args = parser.parse_args()
    fake = FakeProvider("deepinfra", latency={"embeddings": args.latency}).start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            os.environ.update(provider_env(fake, roles=("EMBEDDING",)))
            os.environ.update({"QDRANT_PATH": str(Path(folder) / "q"), "EMBEDDING_DIMENSIONS": "64"})
            settings = Settings()
            began = time.monotonic()
            stop_at = Deadline(args.stop)
            report = run_sync(settings, Secrets(settings), source_uri=args.kb, stop_at=stop_at,
                              call_deadline=Deadline(args.stop + args.margin))  # fmt: skip
            tail = time.monotonic() - began - args.stop
            store = open_store(settings, Secrets(settings))
            try:
                state = store.indexed_state()
            finally:
                store.close()
        written = {p for p, st in state.items() if st.points}
        chunks = sum(st.points for st in state.values())
        notes = {p.relative_to(args.kb).as_posix(): p for p in Path(args.kb).rglob("*.md")}
        # the gathered window: the notes after the last one written, read before the deadline (the summary's count)
        unwritten = int(report.unwritten.split(" ", 1)[0].replace(",", "")) if report.unwritten else 0
        left = [p for p in sorted(notes) if p not in written][:unwritten]
        started = time.process_time()
        left_chunks = sum(len(parse_note(p, notes[p].read_bytes()).sections) for p in left)
        reparse = time.process_time() - started
        rate = chunks / args.stop
        print(json.dumps({
            "latency_s": args.latency, "stop_s": args.stop, "margin_s": args.margin,
            "written": {"notes": len(written), "chunks": chunks}, "rate_chunks_s": round(rate, 1),
            "left_gathered": {"notes": len(left), "chunks": left_chunks},
            "embed_left_s": round(left_chunks / rate, 2) if rate else None,
            "reparse_ms": round(reparse * 1000, 1), "tail_s": round(tail, 2),
            "remaining": report.remaining, "unwritten": report.unwritten,
        }))  # fmt: skip
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
