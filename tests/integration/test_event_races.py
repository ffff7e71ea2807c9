"""Two event batches applying one note at once, in every order their steps can interleave.

Batch A applies the note's older event (the note as first saved), batch B its later one (B's thread saves the note
again, or deletes it, when it starts: its event cannot exist before). Each run's steps are parked at gates placed
through real seams, and a cooperative scheduler lets exactly one run go on at a time, so an interleaving is one
sequence of choices, replayed deterministically: the S3 reads (a botocore hook on the ``HeadObject`` of the note,
the client given to the source's constructor: what decides the version applied), the index writes (a store
wrapper given to :class:`ChangeSync`: ``upsert``, ``delete_note``) and the sequencer log's calls (a wrapper of the
log given to :class:`ChangeSync`: ``get``, ``put``, over moto's DynamoDB or the local file). The choices are
enumerated depth first until every interleaving has run; each on its own note, all in one collection, which must
end as a clean full sync of the bucket builds it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from kbsearch.config import Secrets, Settings
from kbsearch.errors import StoreError
from kbsearch.events import Change
from kbsearch.indexer import ChangeSync, SyncOptions, run_sync
from kbsearch.qdrant import open_store
from kbsearch.sequencers import DynamoSequencers, FileSequencers
from kbsearch.sources import S3Source

BUCKET = "kb-races"
PREFIX = "kb/"
TABLE = "kb-search-test-races"
REGION = "us-east-1"
ACTORS = ("A", "B")


def note(version: str) -> bytes:
    return f"---\ntitle: Raced\n---\n# Raced\n\nThe {version} version of the raced note.\n".encode()


class Turns:
    """A cooperative scheduler: each actor (a thread named after it) parks at every gate; once every actor is parked
    or done, the next one to go on is picked, by ``choices`` while they last, then the first one parked (by name).
    ``decisions`` lists (chosen, how many could go) per pick; ``trace`` the steps in the order they ran."""

    def __init__(self, choices: list[int]) -> None:
        self.choices = choices
        self.cond = threading.Condition()
        self.parked: dict[str, str] = {}
        self.done: set[str] = set()
        self.running: str | None = None
        self.decisions: list[tuple[int, int]] = []
        self.trace: list[str] = []
        self.errors: list[BaseException] = []

    def gate(self, step: str) -> None:
        me = threading.current_thread().name
        if me not in ACTORS:
            return
        with self.cond:
            self.parked[me] = step
            self.running = None
            self.cond.notify_all()
            if not self.cond.wait_for(lambda: self.running == me, timeout=60):
                raise RuntimeError(f"{me} was never let on at {step}")

    def run(self, actors: dict[str, Callable[[], None]]) -> None:
        def body(name: str, work: Callable[[], None]) -> None:
            try:
                if name != ACTORS[0]:  # the first starts at once (the other's start is anywhere among its steps)
                    self.gate("start")
                work()
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)
            finally:
                with self.cond:
                    self.done.add(name)
                    self.running = None
                    self.cond.notify_all()

        threads = [threading.Thread(target=body, args=(n, w), name=n, daemon=True) for n, w in actors.items()]
        for thread in threads:
            thread.start()
        with self.cond:
            while True:
                settled = self.cond.wait_for(
                    lambda: self.running is None and len(self.parked) + len(self.done) == len(actors), timeout=60
                )
                assert settled, f"the runs did not settle: {self.trace}"
                if len(self.done) == len(actors):
                    break
                options = sorted(self.parked)
                k = len(self.decisions)
                pick = self.choices[k] if k < len(self.choices) else 0
                self.decisions.append((pick, len(options)))
                self.running = options[pick]
                self.trace.append(f"{self.running}:{self.parked.pop(self.running)}")
                self.cond.notify_all()
        for thread in threads:
            thread.join(timeout=60)


class GatedStore:
    """The store, its writes of notes parked at the scheduler's gate first."""

    def __init__(self, store: Any, turns: Turns) -> None:
        self._store, self._turns = store, turns

    def upsert(self, chunks: Any) -> None:
        self._turns.gate("write")
        self._store.upsert(chunks)

    def delete_note(self, path: str) -> None:
        self._turns.gate("write")
        self._store.delete_note(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class GatedLog:
    """The sequencer log, its writes parked at the scheduler's gate first, and its reads once the run wrote to it
    (a read before, the stale check, only drops what a claim would refuse: not gated, fewer interleavings)."""

    def __init__(self, log: Any, turns: Turns) -> None:
        self._log, self._turns = log, turns
        self._wrote = False

    def get(self, paths: list[str]) -> dict[str, str]:
        if self._wrote:
            self._turns.gate("log get")
        return dict(self._log.get(paths))

    def put(self, path: str, sequencer: str) -> bool:
        self._turns.gate("log put")
        self._wrote = True
        return bool(self._log.put(path, sequencer))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield s3


def by_path(settings: Settings) -> dict[str, dict[str, str]]:
    """note path → point id → hash of its payload (without the indexing time and the collection-wide ``reach``)."""
    store = open_store(settings, Secrets(settings))
    try:
        raw = store.points()
    finally:
        store.close()
    out: dict[str, dict[str, str]] = {}
    for pid, payload in raw.items():
        payload.pop("indexed_at", None)
        payload.pop("links_at", None)  # the link targets' generation: the store's history
        payload.pop("reach", None)
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        out.setdefault(str(payload["path"]), {})[pid] = digest
    return out


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("log_kind", "later"), [("dynamodb", "saved again"), ("dynamodb", "deleted"),
                                                 ("file", "saved again")])  # fmt: skip
def test_two_batches_applying_one_note_end_as_a_full_sync_in_every_interleaving(
    aws: Any, tmp_path: Path, log_kind: str, later: str
) -> None:
    """Batch A applies the note's first save (sequencer ...01), batch B its later save or deletion (...02), made
    by B's thread as it starts. Every interleaving of their S3 reads, index writes and sequencer log calls leaves
    the index as a clean full sync builds it (before the fix: A read v1, B read v2 and wrote it, A wrote v1, A
    recorded ...01 and B ...02, both accepted: the index held v1, S3 v2, no batch failed)."""
    settings = Settings(kb_source=f"s3://{BUCKET}/{PREFIX}", qdrant_path=str(tmp_path / "store"),
                        index_lease_table=TABLE if log_kind == "dynamodb" else "", embedding_api_key=None)  # fmt: skip
    session = boto3.session.Session(region_name=REGION)
    s3_client = session.client("s3")
    turns_now: list[Turns] = []

    def on_head(params: dict[str, Any], **_: Any) -> None:
        if turns_now and params.get("Key", "").endswith(".md"):
            turns_now[0].gate("read")

    s3_client.meta.events.register("before-parameter-build.s3.HeadObject", on_head)
    source = S3Source(BUCKET, PREFIX, client=s3_client)
    store = open_store(settings, Secrets(settings))
    log: Any = DynamoSequencers(TABLE, "kb", client=session.client("dynamodb")) if log_kind == "dynamodb" else (
        FileSequencers(tmp_path / "kb.sequencers.json"))  # fmt: skip
    traces: dict[str, list[str]] = {}
    pending: list[list[int]] = [[]]
    try:
        while pending:
            choices = pending.pop()
            turns = Turns(choices)
            turns_now[:] = [turns]
            key = f"{PREFIX}n{len(traces):04d}.md"
            aws.put_object(Bucket=BUCKET, Key=key, Body=note("first"))
            path = key[len(PREFIX) :]

            def apply(change: Change, turns: Turns = turns) -> None:
                sync = ChangeSync(source, GatedStore(store, turns), None, SyncOptions(), GatedLog(log, turns))  # type: ignore[arg-type]
                report = sync.apply([change])
                assert report.error is None and not report.failed_paths, report

            def batch_b(key: str = key, path: str = path, apply: Callable[[Change], None] = apply) -> None:
                if later == "deleted":
                    aws.delete_object(Bucket=BUCKET, Key=key)
                else:
                    aws.put_object(Bucket=BUCKET, Key=key, Body=note("second"))
                apply(Change(path, key, later == "deleted", "0065F1A0B0C0D0E002"))

            def batch_a(key: str = key, path: str = path, apply: Callable[[Change], None] = apply) -> None:
                apply(Change(path, key, False, "0065F1A0B0C0D0E001"))

            turns.run({"A": batch_a, "B": batch_b})
            turns_now.clear()
            assert not turns.errors, (turns.trace, turns.errors)
            traces[path] = turns.trace
            for k in range(len(choices), len(turns.decisions)):  # every other pick after the prefix: run later
                chosen, n = turns.decisions[k]
                prefix = [c for c, _ in turns.decisions[:k]]
                pending.extend([*prefix, alt] for alt in range(chosen + 1, n))
    finally:
        store.close()
    assert len(traces) > 10  # the interleavings were enumerated (the count depends on the steps a run takes)
    clean = Settings(**(settings.model_dump() | {"qdrant_path": str(tmp_path / f"clean-{uuid.uuid4().hex[:6]}")}))
    assert run_sync(clean, Secrets(clean)).error is None
    built, held = by_path(clean), by_path(settings)
    wrong = {p: traces[p] for p in traces if held.get(p) != built.get(p)}
    assert not wrong, f"{len(wrong)} of {len(traces)} interleavings left the index unlike a full sync: {wrong}"


class FailingStore(GatedStore):
    """The store, its writes of notes failing (the storage down)."""

    def upsert(self, chunks: Any) -> None:
        raise StoreError("injected: the index cannot be written")


@pytest.mark.parametrize("log_kind", ["dynamodb", "file"])
def test_a_batch_that_fails_to_write_gives_its_claim_back(aws: Any, tmp_path: Path, log_kind: str) -> None:
    """A batch claims its event's sequencer before the write; when the write fails, the claim is given back (the
    sequencer logged before, none here), so the message's retry is applied, not dropped as stale (a claim left in
    the log made the retry stale: the note stayed out of the index until the next full sync)."""
    settings = Settings(kb_source=f"s3://{BUCKET}/{PREFIX}", qdrant_path=str(tmp_path / "store"),
                        index_lease_table=TABLE if log_kind == "dynamodb" else "", embedding_api_key=None)  # fmt: skip
    log: Any = DynamoSequencers(TABLE, "kb") if log_kind == "dynamodb" else FileSequencers(tmp_path / "kb.seq.json")
    source = S3Source(BUCKET, PREFIX, client=boto3.client("s3", region_name=REGION))
    aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}a.md", Body=note("first"))
    change = Change("a.md", f"{PREFIX}a.md", False, "0065F1A0B0C0D0E001", message_id="m1")
    store = open_store(settings, Secrets(settings))
    try:
        failing = FailingStore(store, Turns([]))
        report = ChangeSync(source, failing, None, SyncOptions(), log).apply([change])  # type: ignore[arg-type]
        assert report.failed_messages == ["m1"] and report.error
        assert log.get(["a.md"]) == {}  # given back
        retry = ChangeSync(source, store, None, SyncOptions(), log).apply([change])
        assert retry.error is None and retry.stale == 0 and retry.added == 1
        assert log.get(["a.md"]) != {}
        replay = ChangeSync(source, store, None, SyncOptions(), log).apply([change])
        assert replay.stale == 1 and replay.added == 0  # applied once: a replay is stale again
    finally:
        store.close()


class KilledStore(GatedStore):
    """The store, the batch killed at its first write of a note (a Lambda timeout, a SIGKILL: no ``except`` runs)."""

    def upsert(self, chunks: Any) -> None:
        raise SystemExit("injected: the batch is killed before its write")


@pytest.mark.parametrize("log_kind", ["dynamodb", "file"])
def test_a_claim_left_by_a_killed_batch_is_abandoned_after_the_longest_run(
    aws: Any, tmp_path: Path, log_kind: str
) -> None:
    """A batch killed between its claim and its write leaves the claim in the log (no give-back runs). Its
    message's retry comes after the queue's visibility timeout; by then no batch that claimed can still run, so a
    claim of the retried event itself older than ABANDONED_S is abandoned: the retry applies the note (before: it
    was dropped as stale, the note kept out of the index until the next full sync). A claim younger than that
    (a duplicate delivery while the first batch may still run) stays stale, as before."""
    from kbsearch.sequencers import ABANDONED_S

    settings = Settings(kb_source=f"s3://{BUCKET}/{PREFIX}", qdrant_path=str(tmp_path / "store"),
                        index_lease_table=TABLE if log_kind == "dynamodb" else "", embedding_api_key=None)  # fmt: skip
    file = tmp_path / "kb.seq.json"

    def log(clock: Any) -> Any:  # a new process's log (the killed one's memory is gone)
        return DynamoSequencers(TABLE, "kb", clock=clock) if log_kind == "dynamodb" else FileSequencers(file, clock)

    source = S3Source(BUCKET, PREFIX, client=boto3.client("s3", region_name=REGION))
    old = {"a.md": Change("a.md", f"{PREFIX}a.md", False, "0065F1A0B0C0D0E001", message_id="ma")}
    fresh = {"b.md": Change("b.md", f"{PREFIX}b.md", False, "0065F1A0B0C0D0E001", message_id="mb")}
    for path in (*old, *fresh):
        aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}{path}", Body=note("first"))
    store = open_store(settings, Secrets(settings))
    try:
        for changes, ago in ((old, 2 * ABANDONED_S), (fresh, 1.0)):
            killed = KilledStore(store, Turns([]))
            with pytest.raises(SystemExit):
                ChangeSync(source, killed, None, SyncOptions(), log(lambda ago=ago: time.time() - ago)).apply(  # type: ignore[arg-type]
                    list(changes.values())
                )
        assert set(log(time.time).get(["a.md", "b.md"])) == {"a.md", "b.md"}  # both claims left behind
        assert store.indexed_state() == {}
        retry = ChangeSync(source, store, None, SyncOptions(), log(time.time)).apply([*old.values(), *fresh.values()])
        assert retry.error is None and not retry.failed_messages, retry
        assert (retry.added, retry.stale) == (1, 1)  # a.md applied; b.md's claim may be a batch still running
        assert set(store.indexed_state()) == {"a.md"}
    finally:
        store.close()
