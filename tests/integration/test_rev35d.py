"""Session 35's cold review of rel35 (RELIABILITY.md, "Round 35 review: a cold review of rel35 (rev35d)"), each
through the real interfaces: the indexer Lambda handler over moto's S3 and DynamoDB, the embedded store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from kbsearch.sequencers import DynamoSequencers
from kbsearch_tools.fakes import FakeProvider, provider_env
from tests.integration.test_lease import (
    NOTES,
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


class TakenOverAtTheFirstEmbedding(FakeProvider):
    """DeepInfra on loopback: its first embedding request is answered once another run has taken the index lease
    over and the sync's renewer has found it so (test_lease's take_over): the lease is lost between a window's
    requests."""

    def __init__(self, dynamodb: Any) -> None:
        super().__init__("deepinfra", api_key="di-test-key")
        self.dynamodb, self.lost = dynamodb, found_lost()

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        if "embeddings" in path and not self.lost.is_set():
            take_over(self.dynamodb, self.lost)
        return super().handle(path, headers, raw)


def test_a_windows_embedding_requests_not_yet_sent_are_not_sent_once_the_lease_is_lost(
    s3_kb_and_lease_table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rel35's left (4): ``Embedder.embed_documents(go_on=...)`` stops a window's queued requests once the run's
    index lease is lost, and no test drove it. Here: batches of one chunk, one at a time (a window of 4 notes), the
    lease taken over while DeepInfra answers the first. The window's other three requests are not sent (3c36eb1
    sent them: 4 requests, for notes the run would not write); the run's error names the lost lease, not "embedding
    failed"; once the other run has ended, the next run adds every note."""
    dynamodb = s3_kb_and_lease_table
    deepinfra = TakenOverAtTheFirstEmbedding(dynamodb).start()
    env = {"EMBEDDING_DIMENSIONS": "64", "PROVIDER_RETRIES": "0", "EMBEDDING_BATCH_SIZE": "1",
           "EMBEDDING_CONCURRENCY": "1"} | provider_env(deepinfra, None, roles=("EMBEDDING",))  # fmt: skip
    try:
        report = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch, **env)
        assert deepinfra.lost.is_set(), report
        sent = len(deepinfra.calls("embeddings"))
        raised = str(report.get("raised"))
        assert sent == 1, f"{sent} embedding requests sent, the lease lost during the first"
        assert "lease index#kb was lost mid-run (another run took it over" in raised, report
        assert "embedding failed" not in raised, report
        dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": "index#kb"}})  # the other run ends, releasing it
        again = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch, **env)
    finally:
        deepinfra.stop()
    assert again.get("error") is None and not again.get("incomplete"), again
    assert again["added"] + again["unchanged"] == len(NOTES), again
