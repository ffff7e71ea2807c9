"""Issue 21's "poison message → DLQ after N tries without blocking the rest of its batch", end to end on moto: the
events queue and its dead-letter queue configured from template.yaml (``RedrivePolicy``), the SQS event source
mapping's loop played by hand as Lambda plays it with ``ReportBatchItemFailures`` (receive, invoke the real
indexer handler, delete what it did not report, let the reported messages come back), round 22's acceptance audit
(audit22a)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.local.template import load_template
from kbsearch_tools.s3events import EventPath
from tests.conftest import ROOT
from tests.integration.test_events import PREFIX, Indexer, aws, note, open_points

__all__ = ["aws"]  # the fixture, shared with test_events

POISON = json.dumps({"hello": "world"})  # a message that is no S3 event: no retry can mend it


def _template_queue() -> tuple[int, list[str]]:
    """The events queue's maxReceiveCount and the SQS event source's response types, as the template deploys them."""
    resources = load_template(ROOT / "template.yaml")["Resources"]
    queue = resources["IndexerEventQueue"]["Properties"]
    source = resources["IndexerFunction"]["Properties"]["Events"]["Changes"]["Properties"]
    dlq = queue["RedrivePolicy"]["deadLetterTargetArn"]
    assert dlq == {"Fn::GetAtt": ["IndexerEventDeadLetterQueue", "Arn"]}, dlq
    assert source["Queue"] == {"Fn::GetAtt": ["IndexerEventQueue", "Arn"]}, source
    return int(queue["RedrivePolicy"]["maxReceiveCount"]), list(source["FunctionResponseTypes"])


def with_dead_letter_queue(aws: EventPath, max_receives: int) -> str:
    """The events queue given a dead-letter queue after ``max_receives`` (its ``RedrivePolicy``); the DLQ's URL."""
    dlq_url: str = aws.sqs.create_queue(QueueName="kb-search-test-events-dlq")["QueueUrl"]
    dlq_arn = aws.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.sqs.set_queue_attributes(QueueUrl=aws.queue_url, Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}),
    })  # fmt: skip
    return dlq_url


def test_a_poison_message_reaches_the_events_dlq_after_max_receives_and_its_batch_is_applied_once(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message that is no S3 event (``{"hello": "world"}``: JSON, no S3 event) beside a good note's notification in one batch: the note is
    applied on the first receive and its message deleted, never seen again; the poison message alone comes back,
    and after the template's maxReceiveCount receives SQS moves it to the events dead-letter queue (whose alarm
    fires), the queue empty."""
    max_receives, response_types = _template_queue()
    assert response_types == ["ReportBatchItemFailures"] and max_receives >= 2
    dlq_url = with_dead_letter_queue(aws, max_receives)
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()  # moto's s3:TestEvent
    aws.put(f"{PREFIX}good.md", note(1))
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=POISON)
    received: dict[str, int] = {}
    for _ in range(max_receives + 3):  # the event source mapping's polls, each after the visibility timeout
        batch = aws.receive(delete=False)
        if not batch:
            break
        for record in batch:
            received[record["body"]] = received.get(record["body"], 0) + 1
        failed = set(indexer(batch))
        for record in batch:
            if record["messageId"] in failed:  # back to the queue: visible again once its timeout runs out
                aws.sqs.change_message_visibility(
                    QueueUrl=aws.queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
                )
            else:  # Lambda deletes what the function did not report
                aws.sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=record["receiptHandle"])
        assert [p["path"] for p in open_points(indexer.settings()) if p["chunk_index"] == 0] == ["good.md"]
    good = [body for body in received if body != POISON]
    assert len(good) == 1 and received[good[0]] == 1, received  # the note's message: applied once, never retried
    assert received[POISON] == max_receives, received
    dead: list[dict[str, Any]] = aws.sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dead] == [POISON]
    assert not aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10).get("Messages")
