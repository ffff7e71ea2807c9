"""``kbsearch bench freshness``: how long from a saved note to a search that finds it.

(a) **Deployed, simulated end to end** on moto: a bucket whose notifications go to an SQS queue (the template's
wiring), the notifications received from the queue as the Lambda SQS event and handed to the real indexer handler
(``functions/indexer/app.py``: a fresh import, moto S3/SQS/DynamoDB, the embedded store in place of Qdrant Cloud, a
loopback embedding fake of fixed latency). The SQS event source's batching window is *added*, not slept: a change
waits for the window, then for its batch's invocation, so put → searchable = window + (receive → handler done).
Scenarios: single edits, a burst of 500 edits (batches of 100, as the template's BatchSize), deletes, renames
(copy + delete), the burst's events again duplicated and shuffled (a no-op). The burst must end as the point set
of a clean full sync, with exactly the changed chunks embedded. Then 1,000 rounds of random edits/deletes whose
events are duplicated, shuffled and split into random batches (parsed as the handler parses them, applied by the
same :class:`kbsearch.indexer.ChangeSync` with the DynamoDB sequencer log): every round must end with the index
holding exactly what the bucket holds.

(b) **Local watch mode**: ``kbsearch serve --watch`` on ``copies`` copies of the vault; one note saved at a time,
then ``GET /search`` polled until it returns the note (the poll includes each search's own time, so the figure
errs high).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import random
import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kbsearch_tools import repo_root
from kbsearch_tools.fakes import FakeProvider, provider_env

BUCKET = "kb-bench"
PREFIX = "kb/"
TABLE = "kb-bench-lease"

NOTE = "---\ntitle: {title}\ntags: [bench]\n---\n# {title}\n\nIntro of {title}.\n\n## First\n\n{first}\n\n## Second\n\n{second}\n"


def _pct(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 3), "p95": round(p95, 3),
            "max": round(ordered[-1], 3)}  # fmt: skip


def _note(i: int, first: str = "first words", second: str = "second words") -> bytes:
    return NOTE.format(title=f"Bench note {i}", first=first, second=second).encode()


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _load_handler() -> Any:
    path = repo_root() / "functions" / "indexer" / "app.py"
    spec = importlib.util.spec_from_file_location(f"bench_indexer_{uuid.uuid4().hex}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_deployed(
    window_s: float = 10.0, singles: int = 20, burst: int = 500, orders: int = 1000, latency_ms: float = 100.0,
    dims: int = 256, progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    import logging

    import boto3
    from moto import mock_aws

    from kbsearch_tools.local.runtime import LambdaContext
    from kbsearch_tools.s3events import EventPath, sqs_event

    say = progress or (lambda _m: None)
    fake = FakeProvider("deepinfra", api_key="bench-key", latency={"embeddings": latency_ms / 1000}).start()
    out: dict[str, Any] = {"window_s": window_s, "embedding_latency_ms": latency_ms, "dims": dims}
    logging.getLogger("kbsearch").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="kbsearch-fresh-") as tmp, mock_aws():
        store = Path(tmp) / "events-store"
        env = {
            "KB_SOURCE": f"s3://{BUCKET}/{PREFIX}", "QDRANT_PATH": str(store), "INDEX_LEASE_TABLE": TABLE,
            "EMBEDDING_DIMENSIONS": str(dims), "POWERTOOLS_METRICS_NAMESPACE": "KbSearchBench", "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR",
            "POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1",
            **provider_env(fake, roles=["EMBEDDING"]),
        }  # fmt: skip
        try:
            # the handler's EMF metrics and JSON logs (stdout in Lambda) are not the bench's output
            with _env(env), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                boto3.client("dynamodb", region_name="us-east-1").create_table(
                    TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
                )  # fmt: skip
                path = EventPath(BUCKET, PREFIX).create()
                app = _load_handler()

                def invoke(records: list[dict[str, Any]]) -> tuple[float, list[str]]:
                    started = time.perf_counter()
                    failed: list[str] = []
                    for start in range(0, len(records), 100):  # the template's BatchSize
                        result = app.lambda_handler(
                            sqs_event(records[start : start + 100]), LambdaContext("kb-bench-indexer", 2048, 900)
                        )
                        failed += [f["itemIdentifier"] for f in result["batchItemFailures"]]
                    return time.perf_counter() - started, failed

                path.receive()  # the s3:TestEvent
                notes = 200
                for i in range(notes):
                    path.put(f"{PREFIX}notes/n{i:03}.md", _note(i))
                seconds, failed = invoke(path.receive())
                out["seed"] = {"notes": notes, "seconds": round(seconds, 2), "failed": len(failed)}
                say(f"seeded {notes} notes through events in {seconds:.1f} s")
                rng = random.Random(11)

                def timed(kind: str, i: int) -> float:
                    """One change (edit, delete or rename of note ``i``) → its event → the handler: put → done."""
                    t0 = time.perf_counter()
                    key = f"{PREFIX}notes/n{i:03}.md"
                    if kind == "edit":
                        path.put(key, _note(i, second=f"edit {i} {rng.random()}"))
                    elif kind == "delete":
                        path.delete(key)
                    else:  # a rename in S3: a copy, then a delete of the old key
                        new = f"{PREFIX}renamed/n{i:03}.md"
                        path.s3.copy_object(Bucket=BUCKET, Key=new, CopySource={"Bucket": BUCKET, "Key": key})
                        path.delete(key)
                    _took, failed = invoke(path.receive())
                    assert not failed, failed
                    return window_s + (time.perf_counter() - t0)

                out["single_edit_s"] = _pct([timed("edit", i) for i in rng.sample(range(notes), singles)])
                say(f"single edits: p50 {out['single_edit_s']['p50']} s, p95 {out['single_edit_s']['p95']} s")
                out["delete_s"] = _pct([timed("delete", i) for i in range(notes - singles, notes)])
                out["rename_s"] = _pct([timed("rename", i) for i in range(singles)])
                say(f"deletes p95 {out['delete_s']['p95']} s, renames p95 {out['rename_s']['p95']} s")

                # the burst: 500 edits, each of one section of one note
                keys = [f"{PREFIX}burst/b{i:03}.md" for i in range(burst)]
                for i, key in enumerate(keys):
                    path.put(key, _note(1000 + i))
                invoke(path.receive())
                calls_before = len(fake.calls("embeddings"))
                t0 = time.perf_counter()
                for i, key in enumerate(keys):
                    path.put(key, _note(1000 + i, second=f"burst edit {i}"))
                records = path.receive()
                done_at: list[float] = []
                for start in range(0, len(records), 100):
                    invoke(records[start : start + 100])
                    done_at += [window_s + time.perf_counter() - t0] * len(records[start : start + 100])
                inputs = [x for c in fake.calls("embeddings")[calls_before:] for x in (c.body or {}).get("input", [])]
                out["burst"] = {"edits": burst, "put_to_searchable_s": _pct(done_at), "embedded_chunks": len(inputs),
                                "changed_chunks": burst}  # fmt: skip
                # the burst's events again: duplicated and shuffled (all stale: nothing to do)
                again = records + rng.sample(records, len(records) // 3)
                rng.shuffle(again)
                before = len(fake.calls("embeddings"))
                took, failed = invoke(again)
                out["duplicates_reordered"] = {"events": len(again), "seconds": round(took, 2), "failed": len(failed),
                                               "embedding_calls": len(fake.calls("embeddings")) - before}  # fmt: skip
                out["burst"]["converged"] = _same_as_full_sync(store, Path(tmp) / "clean", env)
                say(f"burst of {burst}: p95 {out['burst']['put_to_searchable_s']['p95']} s, converged "
                    f"{out['burst']['converged']}, {len(inputs)} chunks embedded")  # fmt: skip
                out["orders"] = _random_orders(path, Path(tmp) / "orders-store", orders, rng, say)
        finally:
            fake.stop()
    return out


def _points(store: Path, env: dict[str, str]) -> dict[str, str]:
    import hashlib

    from kbsearch.config import Secrets, Settings
    from kbsearch.qdrant import open_store

    settings = Settings(qdrant_path=str(store), embedding_dimensions=int(env["EMBEDDING_DIMENSIONS"]))
    opened = open_store(settings, Secrets(settings))
    try:
        points = opened.points()
    finally:
        opened.close()
    out = {}
    for pid, payload in points.items():
        payload.pop("indexed_at", None)
        payload.pop("links_at", None)  # the link targets' generation: the store's history
        out[pid] = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return out


def _same_as_full_sync(store: Path, clean: Path, env: dict[str, str]) -> bool:
    from kbsearch.config import Secrets, Settings
    from kbsearch.indexer import run_sync

    with _env({**env, "QDRANT_PATH": str(clean), "INDEX_LEASE_TABLE": ""}):
        settings = Settings()
        report = run_sync(settings, Secrets(settings))
    return report.error is None and _points(store, env) == _points(clean, env)


def _random_orders(
    path: Any, store_path: Path, rounds: int, rng: random.Random, say: Callable[[str], None]
) -> dict[str, Any]:
    """Random edits and deletes of a few keys per round; the round's events duplicated, shuffled and applied in
    random batches (some applied twice, some late); after each round the index must hold what the bucket holds."""
    from kbsearch.config import Secrets, Settings
    from kbsearch.events import Scope, read_batch
    from kbsearch.indexer import ChangeSync, SyncOptions
    from kbsearch.qdrant import open_store
    from kbsearch.sequencers import DynamoSequencers
    from kbsearch.sources import S3Source, head
    from kbsearch_tools.s3events import sqs_event

    settings = Settings(qdrant_path=str(store_path), embedding_api_key=None, embedding_api_key_param="")
    store = open_store(settings, Secrets(settings))
    source = S3Source(BUCKET, PREFIX, path.s3)
    sync = ChangeSync(source, store, None, SyncOptions(), DynamoSequencers(TABLE, "orders"))
    scope = Scope(BUCKET, PREFIX)
    keys = [f"{PREFIX}orders/k{i}.md" for i in range(6)]
    lost = events = 0
    started = time.perf_counter()
    held: list[dict[str, Any]] = []  # messages delivered late, in a later round
    try:
        for r in range(rounds):
            for _ in range(rng.randint(1, 5)):
                key = rng.choice(keys)
                if rng.random() < 0.35:
                    path.delete(key)
                else:
                    path.put(key, _note(r, first=f"round {r} {rng.random()}"))
            records = path.receive() + held
            held = []
            delivered = records + rng.choices(records, k=rng.randint(0, len(records)))  # duplicates
            rng.shuffle(delivered)
            while delivered:
                n = rng.randint(1, len(delivered))
                batch, delivered = delivered[:n], delivered[n:]
                if rng.random() < 0.1 and delivered:  # a batch that comes back later (a retry)
                    held += batch
                    continue
                sync.apply(read_batch(sqs_event(batch), scope).changes)
                events += len(batch)
            if held:
                continue  # not every event is in yet: check at the end of a round that has them all
            indexed = store.note_points([k[len(PREFIX) :] for k in keys])
            state = {str(payload["path"]): payload["etag"] for payload, _vector in indexed}
            for key in keys:
                obj = head(source, key)
                if (obj.etag if obj else None) != state.get(key[len(PREFIX) :]):
                    lost += 1
        if held:
            sync.apply(read_batch(sqs_event(held), scope).changes)
    finally:
        store.close()
    result = {
        "rounds": rounds,
        "events": events,
        "lost_changes": lost,
        "seconds": round(time.perf_counter() - started, 1),
    }
    say(f"{rounds} random orders with duplicates: {lost} lost changes ({events} events)")
    return result


def bench_watch(kb: Path, copies: int = 10, saves: int = 20, latency_ms: float = 100.0, dims: int = 256,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    import httpx

    from kbsearch_tools.bench import copied_vault
    from kbsearch_tools.local.process import serve_process

    say = progress or (lambda _m: None)
    fake = FakeProvider("deepinfra", api_key="bench-key", latency={"embeddings": latency_ms / 1000}).start()
    out: dict[str, Any] = {"copies": copies, "embedding_latency_ms": latency_ms, "dims": dims}
    try:
        with tempfile.TemporaryDirectory(prefix="kbsearch-watch-") as tmp:
            root = Path(tmp) / "kb"
            root.mkdir()
            folder = copied_vault(kb, copies, root)
            if folder == kb:  # one copy: still a copy, the bench edits it
                import shutil

                shutil.copytree(kb, root / "copy-00", ignore=shutil.ignore_patterns(".*"))
                folder = root
            env = dict(os.environ, QDRANT_PATH=str(Path(tmp) / "q"), KB_SOURCE=str(folder),
                       EMBEDDING_DIMENSIONS=str(dims), POWERTOOLS_LOG_LEVEL="ERROR",
                       **provider_env(fake, roles=["EMBEDDING"]))  # fmt: skip
            notes = sorted(p for p in folder.rglob("*.md") if p.stat().st_size < 20_000)
            out["notes"] = len(list(folder.rglob("*.md")))
            t0 = time.perf_counter()
            with serve_process(env, cwd=repo_root(), args=["--watch"], timeout_s=120) as served:
                deadline = time.monotonic() + 1800
                while "initial sync" not in served.text():
                    if time.monotonic() > deadline or served.process.poll() is not None:
                        raise RuntimeError(
                            f"kbsearch serve --watch did not finish its first sync: {served.text()[-2000:]}"
                        )
                    time.sleep(0.2)
                out["initial_sync_s"] = round(time.perf_counter() - t0, 1)
                say(f"{out['notes']} notes: initial sync in {out['initial_sync_s']} s")
                rng = random.Random(3)
                latencies: list[float] = []
                missed = 0
                with httpx.Client(base_url=served.base_url, timeout=30) as client:
                    for n in range(saves):
                        note = rng.choice(notes)
                        word = f"freshmark{n}x{uuid.uuid4().hex[:6]}"
                        rel = note.relative_to(folder).as_posix()
                        text = note.read_text(encoding="utf-8")
                        started = time.perf_counter()
                        note.write_text(text + f"\n\n{word}\n", encoding="utf-8")
                        while True:
                            answer = client.get("/search", params={"q": word, "top_k": 5})
                            if answer.status_code == 200 and any(h["path"] == rel for h in answer.json()["results"]):
                                latencies.append(time.perf_counter() - started)
                                break
                            if time.perf_counter() - started > 60:
                                missed += 1  # reported, not hidden: a save the watcher never applied
                                say(f"{rel} not searchable 60 s after its save")
                                break
                        time.sleep(0.3)
                out["save_to_searchable_s"] = _pct(latencies)
                out["missed_saves"] = missed
                say(f"save → searchable: p50 {out['save_to_searchable_s']['p50']} s, "
                    f"p95 {out['save_to_searchable_s']['p95']} s")  # fmt: skip
    finally:
        fake.stop()
    return out


def bench_freshness(kb: Path, copies: int = 10, window_s: float = 10.0, singles: int = 20, burst: int = 500,
                    orders: int = 1000, saves: int = 20, latency_ms: float = 100.0, dims: int = 256,
                    parts: tuple[str, ...] = ("deployed", "watch"),
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    from kbsearch_tools.bench import _machine

    results: dict[str, Any] = {"machine": _machine(), "load": os.getloadavg()}
    if "deployed" in parts:
        results["deployed"] = bench_deployed(window_s, singles, burst, orders, latency_ms, dims, progress)
    if "watch" in parts:
        results["watch"] = bench_watch(kb, copies, saves, latency_ms, dims, progress)
    results["load_after"] = os.getloadavg()
    return results


def format_freshness(results: dict[str, Any]) -> str:
    lines = [f"load average before/after: {results['load']} / {results['load_after']}"]
    deployed = results.get("deployed")
    if deployed:
        w = deployed["window_s"]
        lines.append(f"deployed (simulated: moto S3 → SQS → indexer handler; batching window {w} s added)")
        for name in ("single_edit_s", "delete_s", "rename_s"):
            s = deployed[name]
            lines.append(f"  {name:<14} p50 {s['p50']:>7} s  p95 {s['p95']:>7} s  (n={s['n']}; target p95 ≤ {w + 3} s)")
        b = deployed["burst"]
        s = b["put_to_searchable_s"]
        lines.append(f"  burst of {b['edits']}: p50 {s['p50']} s, p95 {s['p95']} s; converged to a full sync: "
                     f"{b['converged']}; chunks embedded {b['embedded_chunks']} (changed {b['changed_chunks']})")  # fmt: skip
        d = deployed["duplicates_reordered"]
        lines.append(f"  {d['events']} duplicated + reordered events again: {d['seconds']} s, "
                     f"{d['embedding_calls']} embedding calls, {d['failed']} failed")  # fmt: skip
        o = deployed["orders"]
        lines.append(f"  {o['rounds']} random orders with duplicates: {o['lost_changes']} lost changes "
                     f"({o['events']} events, {o['seconds']} s)")  # fmt: skip
    watch = results.get("watch")
    if watch:
        s = watch["save_to_searchable_s"]
        lines.append(f"local watch ({watch['copies']}x vault, {watch['notes']} notes; initial sync "
                     f"{watch['initial_sync_s']} s): save → searchable p50 {s['p50']} s, p95 {s['p95']} s "
                     f"(n={s['n']}, missed {watch['missed_saves']}; target p95 ≤ 2 s)")  # fmt: skip
    return "\n".join(lines)
