"""Round 39: the debts of ordering and concurrent syncs (rel39), between a full sync and an event batch. Each test
fails on main's code (1a0836b) before its fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3

from tests.integration.test_event_races import aws  # noqa: F401 (the moto fixture)

# -- the full sync's end and a batch that writes between its re-check and its end record ------------------------


def test_a_batch_writing_between_a_full_syncs_recheck_and_its_end_record_applies_the_newer_version(
    aws: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """v1 of a note is saved; its event's batch passes the lease check, claims v1 and reads it, and is slow. v2 is
    saved (its event's batch failed back: the sync holds the lease). The full sync writes v2, reads the batches'
    claims, finds v1's and writes what S3 holds (v2) again, and then, before it records its end
    (``full_sync_ended``), v1's batch writes v1 and reads the metadata: no sync ended since it began, so it checks
    nothing; the sync records its end after. The index held v1 (S3: v2) until v2's retry. Now the sync records
    its end before it reads the claims as well: a batch that writes after that read finds the record and looks its
    notes up again, and one that wrote before it is in the claims the sync re-applies. Driven through the batch's
    S3 client (a botocore hook after its read of v1 saves v2 and lets the sync run) and the sync's store (its first
    write of ``full_sync_ended`` lets the batch finish first); moto's S3 and DynamoDB, the embedded store."""
    import threading
    import time

    from kbsearch.events import Change
    from kbsearch.indexer import SYNC_ENDED, ChangeSync, Indexer, SyncOptions, event_sequencers
    from kbsearch.sources import S3Source
    from tests.integration.test_adv36b import RULES_V0, pay_kb
    from tests.integration.test_event_races import BUCKET, REGION
    from tests.integration.test_event_races import PREFIX as KB
    from tests.integration.test_rel38 import _note_client

    settings, store = pay_kb(aws, tmp_path, "dynamodb", RULES_V0)
    try:
        store.merge_metadata({SYNC_ENDED: time.time() - 3600})  # the last sync before these, an hour ago
        key = f"{KB}pub/Welcome.md"
        aws.put_object(Bucket=BUCKET, Key=key, Body=b"# Welcome\n\nzqversionone of the page\n")
        read_v1, go = threading.Event(), threading.Event()

        def after_read() -> None:  # v1 read by the batch: v2 saved, then the sync runs until its end record
            if not read_v1.is_set():
                aws.put_object(Bucket=BUCKET, Key=key, Body=b"# Welcome\n\nzqversiontwo of the page\n")
                read_v1.set()
                assert go.wait(60)

        results: list[Any] = []
        change = Change("pub/Welcome.md", key, False, "0065F1A0B0C0D0E001")
        batch = threading.Thread(target=lambda: results.append(ChangeSync(
            S3Source(BUCKET, KB, client=_note_client("Welcome.md", after_read)), store, None, SyncOptions(),
            event_sequencers(settings),
        ).apply([change])), daemon=True)  # fmt: skip
        batch.start()
        assert read_v1.wait(60)

        class SyncStore:
            """The sync's store: at its first record of ``full_sync_ended`` v1's batch ends first."""

            def __init__(self, inner: Any) -> None:
                self._inner = inner

            def merge_metadata(self, values: dict[str, Any]) -> None:
                if SYNC_ENDED in values and not go.is_set():
                    go.set()
                    batch.join(60)
                self._inner.merge_metadata(values)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._inner, name)

        sync_source = S3Source(BUCKET, KB, client=boto3.session.Session(region_name=REGION).client("s3"))
        sync_store: Any = SyncStore(store)
        report = Indexer(sync_source, sync_store, None, SyncOptions(),
                         claims=lambda: event_sequencers(settings)).sync()  # fmt: skip
        assert go.is_set() and not batch.is_alive() and results and results[0].error is None, results
        assert report.error is None, report
        texts = " ".join(str(p.get("text")) for p in store.points().values() if p["path"] == "pub/Welcome.md")
        assert "zqversiontwo" in texts and "zqversionone" not in texts, texts  # main: v1, the older version
    finally:
        store.close()


# -- the batch's clock against the sync's ---------------------------------------------------------------------


def test_a_note_batch_overlapping_a_sync_whose_clock_runs_behind_still_applies_the_version_saved_meanwhile(
    aws: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """rel38's batch slower than a whole full sync, the sync run by a machine whose clock is a few seconds behind
    the batch's (``kbsearch index`` on a laptop against the Lambdas' index: the house allows clocks
    ``CLOCK_SLACK_S``, 5 s, apart): the sync really ended during the batch, its record (``full_sync_ended``, its
    own clock) says a second before the batch began, and the batch compared it with its own start without slack:
    it checked nothing and the index held v1 (S3: v2) until v2's retry. Now the comparison allows the clocks'
    slack. The sync runs whole after the batch's read of v1 (rel38's test), then its record is what the laptop's
    clock said."""
    import time

    from kbsearch.events import Change
    from kbsearch.indexer import SYNC_ENDED, ChangeSync, Indexer, SyncOptions, event_sequencers
    from kbsearch.sources import S3Source
    from tests.integration.test_adv36b import RULES_V0, pay_kb
    from tests.integration.test_event_races import BUCKET, REGION
    from tests.integration.test_event_races import PREFIX as KB
    from tests.integration.test_rel38 import _note_client

    settings, store = pay_kb(aws, tmp_path, "dynamodb", RULES_V0)
    try:
        key = f"{KB}pub/Welcome.md"
        aws.put_object(Bucket=BUCKET, Key=key, Body=b"# Welcome\n\nzqversionone of the page\n")
        reports: list[Any] = []
        before_batch = [0.0]

        def after_read() -> None:  # v1 read: v2 saved, and a whole full sync runs and ends before v1's batch writes
            if reports:
                return
            aws.put_object(Bucket=BUCKET, Key=key, Body=b"# Welcome\n\nzqversiontwo of the page\n")
            sync_source = S3Source(BUCKET, KB, client=boto3.session.Session(region_name=REGION).client("s3"))
            reports.append(Indexer(sync_source, store, None, SyncOptions(),
                                   claims=lambda: event_sequencers(settings)).sync())  # fmt: skip
            store.merge_metadata({SYNC_ENDED: before_batch[0] - 1.0})  # the end as the laptop's clock said it

        change = Change("pub/Welcome.md", key, False, "0065F1A0B0C0D0E001")
        batch_source = S3Source(BUCKET, KB, client=_note_client("Welcome.md", after_read))
        before_batch[0] = time.time()
        batch = ChangeSync(batch_source, store, None, SyncOptions(), event_sequencers(settings)).apply([change])
        assert reports and reports[0].error is None and batch.error is None, (reports, batch)
        texts = " ".join(str(p.get("text")) for p in store.points().values() if p["path"] == "pub/Welcome.md")
        assert "zqversiontwo" in texts and "zqversionone" not in texts, texts  # main: v1, the older version
        assert batch.superseded == 1, batch
    finally:
        store.close()
