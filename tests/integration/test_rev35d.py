"""Session 35's cold review of rel35 (RELIABILITY.md, "Round 35 review: a cold review of rel35 (rev35d)"), each
through the real interfaces: the indexer Lambda handler over moto's S3 and DynamoDB, the embedded store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from kbsearch.sequencers import DynamoSequencers
from tests.integration.test_lease import (
    TABLE,
    _scheduled_sync_of_the_bucket,
    found_lost,
    s3_kb_and_lease_table,
    take_over,
)

__all__ = ["s3_kb_and_lease_table"]  # the fixture, shared with test_lease


def test_a_lease_lost_while_the_claims_are_applied_again_is_reported_as_the_lost_lease(
    s3_kb_and_lease_table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync's last step applies again the notes an event batch claimed during it (``_reapply_claimed``, a
    ChangeSync). rel35's guard refuses that step's writes once the lease is lost, and ChangeSync took the refusal as
    a storage failure: the run's error read "index storage failed: ... refused" (an operator looks at Qdrant) and
    each claimed note was "applying it again failed". Driven here: a batch's claim of n03.md logged in the
    sequencer table as the sync runs, and another run taking the lease over as the sync reads those claims
    (DynamoDB's BatchGetItem). The run's error names the lost lease, as a loss anywhere else in the run does, and
    no note is reported failed."""
    dynamodb = s3_kb_and_lease_table
    assert DynamoSequencers(TABLE, "kb").put("n03.md", "0065F1A0B0C0D0E001")  # a batch's claim, just now
    lost, read = found_lost(), list[float]()

    def claims_read(**_: Any) -> None:  # the sync's read of the claims: the lease taken over there
        if not read:
            read.append(time.monotonic())
            take_over(dynamodb, lost)

    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("after-call.dynamodb.BatchGetItem", claims_read)
    report = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert read and lost.is_set(), report
    raised = str(report.get("raised"))
    assert "lease index#kb was lost mid-run (another run took it over" in raised, report
    assert "index storage failed" not in raised, report
    assert "applying it again failed" not in raised, report
