"""rev32b's reproduction of a new reading no run could finish (RELIABILITY.md, round 32, up32): 60 notes in a
folder, each read taking 50 ms (a slow S3), indexed, then ``notes_reading`` dropped (an index of the reading before
this code's); full syncs with a 1.5 s deadline each follow until one records the reading (at most 6). One line a
run: the notes it read, the reading recorded, the sync's ``notes_reading`` summary. Compare two trees::

    for t in /work/main .; do PYTHONPATH=$t/layers/kbsearch nice -n 5 .venv/bin/python eval/reading_runs.py; done
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import Indexer, SyncOptions
from kbsearch.providers.resilience import Deadline
from kbsearch.qdrant import open_store
from kbsearch.sources import LocalSource, SourceObject


class Slow(LocalSource):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def read(self, obj: SourceObject) -> bytes:
        self.reads.append(obj.path)
        time.sleep(0.05)
        return super().read(obj)


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    kb = tmp / "kb"
    kb.mkdir()
    for i in range(60):
        (kb / f"n{i:03}.md").write_text(f"# N{i}\n\nwords {i}\n\n## Empty\n")
    settings = Settings(qdrant_path=str(tmp / "q"))

    def run(deadline: Deadline | None = None) -> tuple[Any, list[str], Any]:
        source = Slow(kb)
        store = open_store(settings, Secrets(settings))
        try:
            report = Indexer(source, store, None, SyncOptions.from_settings(settings)).sync(deadline)
            return report, source.reads, store.metadata().get("notes_reading")
        finally:
            store.close()

    run()
    store = open_store(settings, Secrets(settings))
    try:
        store.set_metadata({k: v for k, v in store.metadata().items() if k != "notes_reading"})
    finally:
        store.close()
    for n in range(1, 7):
        report, reads, recorded = run(Deadline(1.5))
        span = f"{reads[0]}..{reads[-1]}" if reads else "-"
        print(
            f"run {n}: read {span} ({len(reads)}), notes_reading={recorded}, {getattr(report, 'notes_reading', None)}"
        )
        if recorded:
            break


if __name__ == "__main__":
    main()
