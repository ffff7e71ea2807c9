"""``kbsearch bench access``: what a change of the KB's access file costs the event path.

The vault is copied ``copies`` times (``copy-00/`` …) and indexed (BM25 only: an access change embeds nothing) into
the embedded store. Then, ``runs`` times: the access file is written restricting every other copy to ``hr`` (half
the notes change groups), and applied as the event of that one key (:class:`kbsearch.indexer.ChangeSync`, what the
indexer handler and ``kbsearch serve --watch`` run); then deleted (every note public again) and applied the same
way. Each application is timed, and its calls to the store are counted by kind (the store is the seam every
Qdrant request goes through: on Qdrant Cloud each counted write is one HTTP request). Reports the median seconds
and the calls of each kind.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

#: Store methods that reach Qdrant (each a request on Qdrant Cloud, or pages of requests for the scrolls).
COUNTED = ("set_payload", "set_payloads", "scroll", "indexed_state", "note_points", "metadata", "set_metadata",
           "merge_metadata", "upsert", "delete_note", "delete_leftovers")  # fmt: skip


class CountingStore:
    """A store whose calls are counted by method (every other attribute is the store's own)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in COUNTED or not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def bench_access(
    kb: Path, copies: int = 10, runs: int = 3, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    import shutil

    from kbsearch.config import Secrets, Settings
    from kbsearch.events import Change
    from kbsearch.indexer import ChangeSync, SyncOptions, run_sync
    from kbsearch.qdrant import open_store
    from kbsearch.qdrant.store import Store
    from kbsearch.sources import LocalSource

    say = progress or (lambda _m: None)
    results: dict[str, Any] = {"kb": str(kb), "copies": copies, "runs": runs}
    with tempfile.TemporaryDirectory(prefix="kb-bench-access-") as tmp:
        vault = Path(tmp) / "kb"
        for i in range(copies):
            shutil.copytree(kb, vault / f"copy-{i:02d}", ignore=shutil.ignore_patterns(".*", "_access.yaml"))
        settings = Settings(qdrant_path=str(Path(tmp) / "q"), qdrant_url="", embedding_api_key=None)
        say(f"indexing {copies} copies of {kb} (BM25 only)")
        indexed = run_sync(settings, Secrets(settings), source_uri=str(vault))
        if indexed.error:
            raise RuntimeError(f"indexing failed: {indexed.error}")
        results["notes"] = indexed.added
        rules = "".join(f"copy-{i:02d}/: [hr]\n" for i in range(0, copies, 2))
        store = open_store(settings, Secrets(settings))
        rows: dict[str, list[dict[str, Any]]] = {"restrict": [], "relax": []}
        try:
            for run in range(runs):
                for kind in ("restrict", "relax"):
                    if kind == "restrict":
                        (vault / "_access.yaml").write_text(rules, encoding="utf-8")
                    else:
                        (vault / "_access.yaml").unlink()
                    counting = CountingStore(store)
                    sync = ChangeSync(
                        LocalSource(vault), cast(Store, counting), None, SyncOptions.from_settings(settings)
                    )
                    started = time.perf_counter()
                    report = sync.apply([Change(path="_access.yaml", key="_access.yaml", removed=kind == "relax")])
                    seconds = time.perf_counter() - started
                    if report.error or report.failed_paths:
                        raise RuntimeError(f"the access change failed: {report.error or report.failed_paths}")
                    rows[kind].append({"seconds": round(seconds, 3), "notes_changed": report.access_updated,
                                       "calls": dict(sorted(counting.calls.items()))})  # fmt: skip
                    say(f"run {run + 1} {kind}: {seconds:.2f} s, {report.access_updated} notes, "
                        f"{sum(counting.calls.values())} store calls {dict(counting.calls)}")  # fmt: skip
        finally:
            store.close()
    for kind, measured in rows.items():
        results[kind] = {
            "seconds_median": round(statistics.median(r["seconds"] for r in measured), 3),
            "seconds": [r["seconds"] for r in measured],
            "notes_changed": measured[0]["notes_changed"],
            "calls": measured[0]["calls"],
            "calls_total": sum(measured[0]["calls"].values()),
        }
    return results


def format_access(results: dict[str, Any]) -> str:
    lines = [f"access file change on {results['copies']}x {results['kb']} ({results['notes']} notes, "
             f"median of {results['runs']})"]  # fmt: skip
    for kind in ("restrict", "relax"):
        row = results[kind]
        calls = ", ".join(f"{name} {n}" for name, n in row["calls"].items())
        lines.append(f"  {kind:<8} {row['notes_changed']:>5} notes changed  {row['seconds_median']:>7.3f} s "
                     f"{row['seconds']}  store calls {row['calls_total']}: {calls}")  # fmt: skip
    return "\n".join(lines)
