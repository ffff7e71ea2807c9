"""Round 37: the debts round 36 left (rel37), debt 5: a rules batch (``_access.yaml``) slower than a whole full
sync. Through the batch's S3 client, moto's S3 and DynamoDB, the embedded store, as test_adv36b's races are driven;
fails on main's code before the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from kbsearch.events import Change
from kbsearch.indexer import ChangeSync, Indexer, SyncOptions, event_sequencers
from kbsearch.sources import S3Source
from tests.integration.test_adv36b import RULES_V0, RULES_V1, RULES_V2, access_of, pay_kb, rules_client
from tests.integration.test_event_races import BUCKET, PREFIX, REGION, aws

__all__ = ["aws"]  # the fixture, shared with test_event_races


@pytest.mark.parametrize("log_kind", ["dynamodb"])
def test_a_rules_batch_slower_than_a_whole_full_sync_applies_the_rules_saved_meanwhile(
    aws: Any, tmp_path: Path, log_kind: str
) -> None:
    """The access file loses its ``hr/`` rule (v1); v1's event batch reads v1 and is slow (a large index to
    update, a slow Qdrant). v2 puts the rule back; its event's batch is failed back while the hourly sync holds the
    lease (retried after the queue's visibility timeout, 5,400 s). The sync reads v2 and ends, all of it while v1's
    batch works: then v1's batch writes its groups (hr/ public). The sync's re-apply and its ETag check ran before
    that write; the batch's own re-check found no later claim (v2's batch claimed nothing). hr/Pay.md stayed
    readable by every caller until v2's retry or the next sync. Now the batch looks the access file up before its
    read and after applying it: saved meanwhile, it applies the rules as they are now. Through the batch's S3 client
    (a botocore hook after its read of v1 saves v2 and runs the whole sync), moto's S3 and DynamoDB, the embedded
    store."""
    prefix = PREFIX
    settings, store = pay_kb(aws, tmp_path, log_kind, RULES_V0)
    try:
        assert access_of(store, "hr/Pay.md") == {("hr",)}
        aws.put_object(Bucket=BUCKET, Key=f"{prefix}_access.yaml", Body=RULES_V1)
        reports: list[Any] = []

        def after_rules() -> None:  # v1 read: v2 saved, and a whole full sync runs and ends before v1's batch writes
            if reports:
                return
            aws.put_object(Bucket=BUCKET, Key=f"{prefix}_access.yaml", Body=RULES_V2)
            sync_source = S3Source(BUCKET, prefix, client=boto3.session.Session(region_name=REGION).client("s3"))
            reports.append(Indexer(sync_source, store, None, SyncOptions(),
                                   claims=lambda: event_sequencers(settings)).sync())  # fmt: skip
            assert reports[0].error is None and access_of(store, "hr/Pay.md") == {("hr",)}, reports

        change = Change("_access.yaml", f"{prefix}_access.yaml", False, "0065F1A0B0C0D0E001")
        batch = ChangeSync(S3Source(BUCKET, prefix, client=rules_client(after_rules)), store, None, SyncOptions(),
                           event_sequencers(settings)).apply([change])  # fmt: skip
        assert reports and batch.error is None, (reports, batch)
        assert access_of(store, "hr/Pay.md") == {("hr",)}, "v2 restricts hr/: main leaves it public"
        assert batch.superseded >= 1 and access_of(store, "pub/Welcome.md") == {("public",)}, batch
    finally:
        store.close()
