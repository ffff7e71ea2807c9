"""Round 39: the debts of ordering and concurrent syncs (rel39). Each test fails on main's code (1a0836b) before
its fix."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from kbsearch.config import Settings
from kbsearch.lease import Lease
from kbsearch_tools.local.template import load_template
from kbsearch_tools.s3events import EventPath
from tests.conftest import ROOT
from tests.integration.test_events import PREFIX, TABLE, Indexer, aws, note, open_points

__all__ = ["aws"]  # the fixture, shared with test_events

# -- a full sync longer than the held-back events' retries -------------------------------------------------------


def _longest_lease_hold_s() -> float:
    """The longest a full sync can hold the index lease, as deployed: the indexer function's timeout, then (a run
    killed at it releases nothing) its lease until it expires, ``INDEX_LEASE_TTL_S`` at its largest."""
    timeout = load_template(ROOT / "template.yaml")["Resources"]["IndexerFunction"]["Properties"]["Timeout"]
    ttl_bound = [m.le for m in Settings.model_fields["index_lease_ttl_s"].metadata if getattr(m, "le", None)]
    return float(timeout) + float(ttl_bound[0])


def test_a_save_held_back_by_the_longest_full_sync_is_applied_not_dead_lettered(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A note saved while a full sync holds the index lease, after the sync listed the KB: its event's batch is
    failed back (the lease) and must come back until the sync is over, since nothing else indexes this save before
    the next scheduled sync. The handler made it visible again 60 s after each receive: with the template's
    maxReceiveCount (5) SQS moved it to the events dead-letter queue 4 minutes into the sync (its alarm fired)
    and the save waited for the next scheduled run. Now each later receive waits longer, and the last comes after
    the longest a sync can hold the lease. The event source mapping's loop played by hand as in
    test_event_redrive (receive, invoke the real handler, let the reported messages come back); time is the
    retry delays the handler asks SQS for (a botocore hook reads them from its ChangeMessageVisibilityBatch call),
    and the sync's lease (moto's DynamoDB) is released once they add up to the longest hold."""
    from tests.integration.test_event_redrive import _template_queue, with_dead_letter_queue

    max_receives, _ = _template_queue()
    dlq_url = with_dead_letter_queue(aws, max_receives)
    indexer = Indexer(monkeypatch, tmp_path, None)
    asked: list[int] = []
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register(  # what the handler asks SQS: the retry delay of each held-back message
        "provide-client-params.sqs.ChangeMessageVisibilityBatch",
        lambda params, **_: asked.extend(e["VisibilityTimeout"] for e in params["Entries"]),
    )
    try:
        aws.receive()  # moto's s3:TestEvent
        sync = Lease(TABLE, "index#kb", ttl_s=600, client=boto3.client("dynamodb", region_name="us-east-1"),
                     owner="full sync")  # fmt: skip
        sync.acquire()  # raises LeaseHeld when another holds it
        aws.put(f"{PREFIX}saved.md", note(1))  # after the sync's listing: only its event brings it
        elapsed, longest, held = 0.0, _longest_lease_hold_s(), True
        for _ in range(max_receives + 3):  # the event source mapping's polls
            if held and elapsed >= longest:
                sync.release()  # the sync is over (or its killed run's lease expired)
                held = False
            batch = aws.receive(delete=False)
            if not batch:
                break
            failed = set(indexer(batch))
            for record in batch:
                if record["messageId"] in failed:  # visible again once its delay runs out: that time passes
                    elapsed += asked[-1]
                    aws.sqs.change_message_visibility(
                        QueueUrl=aws.queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
                    )
                else:
                    aws.sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=record["receiptHandle"])
        dead = aws.sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
        assert not dead, (asked, longest)  # main: dead-lettered after 4 × 60 s of a sync that may last 4,500 s
        assert [p["path"] for p in open_points(indexer.settings()) if p["chunk_index"] == 0] == ["saved.md"]
        assert asked[0] == 60, asked  # the common case, a sync of a few seconds: retried as soon as before
    finally:
        boto3.setup_default_session()  # a fresh session: the hook goes with the old one


def test_held_back_messages_whose_retry_delay_sqs_refused_are_said(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ChangeMessageVisibilityBatch answers 200 with the entries it refused (``Failed``: a receipt handle gone
    stale, a delay past what is left of a message's 12 hours): the handler read only the call's success, so such a
    message came back after the queue's visibility timeout (5,400 s), not at its retry delay, and nothing said so
    (rev39b's leftover). Now the refusals are logged, by code and count, no receipt handle."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()  # moto's s3:TestEvent
    sync = Lease(TABLE, "index#kb", ttl_s=600, client=boto3.client("dynamodb", region_name="us-east-1"),
                 owner="full sync")  # fmt: skip
    sync.acquire()
    try:
        aws.put(f"{PREFIX}saved.md", note(1))
        batch = aws.receive(delete=False)
        assert batch
        stale = [{**record, "receiptHandle": "stale-handle-of-an-earlier-receive"} for record in batch]
        caplog.clear()
        failed = set(indexer(stale))
        assert failed == {r["messageId"] for r in batch}  # held back by the sync, as before
        said = [r for r in caplog.records if r.getMessage().startswith("could not set the retry delay")]
        assert len(said) == 1 and vars(said[0])["refused"] == {"ReceiptHandleIsInvalid": len(batch)}, said
        assert "stale-handle" not in caplog.text
    finally:
        sync.release()
