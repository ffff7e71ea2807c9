"""The deployed event path on moto: a bucket whose notifications (:data:`NOTIFIED_EVENTS`, suffix .md in each
casing, :data:`NOTE_SUFFIXES`, the KB prefix; and the access file at the KB root) go to an SQS queue, and the SQS event source's side: messages received from that queue and handed
to the indexer as the Lambda SQS event (``Records`` with ``messageId``, ``receiptHandle``, ``body``,
``attributes``, ``eventSource: aws:sqs``, ``eventSourceARN``).

The notification bodies are moto's (``{"Records": [{"eventName", "eventTime", "s3": {"bucket", "object"}}]}``,
keys URL-encoded, the ``s3:TestEvent`` when the configuration is saved). moto leaves out the object's
``sequencer``; :meth:`EventPath.receive` adds one as S3 does: hex, growing per key with every change, in the
order the changes happened. EventBridge bodies (``Object Created`` / ``Object Deleted``) are built by
:func:`eventbridge_body` in the shape AWS documents. Used by the tests and ``kbsearch bench freshness``.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

REGION = "us-east-1"
#: The events the bucket notifies the queue of, as template.yaml subscribes them (tests/unit/test_template.py).
NOTIFIED_EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*")
ACCOUNT = "123456789012"
#: The note suffixes the bucket notifies, one rule each (S3's suffix rules are case-sensitive; a note is ``.md`` in
#: any case), as template.yaml has them.
NOTE_SUFFIXES = (".md", ".mD", ".Md", ".MD")


def sqs_record(
    body: str, queue_arn: str, message_id: str | None = None, receive_count: int = 1, sent_ms: str | None = None
) -> dict[str, Any]:
    """One record of the Lambda SQS event (what the event source mapping hands the function); ``sent_ms``: SQS's
    ``SentTimestamp`` (epoch milliseconds; default: now, a message just sent)."""
    sent = sent_ms if sent_ms is not None else str(int(time.time() * 1000))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": uuid.uuid4().hex,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count), "SentTimestamp": sent,
            "SenderId": "AIDAIT2UOQQY3AUEKVGXU", "ApproximateFirstReceiveTimestamp": sent,
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }  # fmt: skip


def sqs_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


def eventbridge_body(bucket: str, key: str, deleted: bool, sequencer: str, time: str, etag: str = "") -> str:
    """An EventBridge S3 event as a rule delivers it to SQS (the key is not URL-encoded)."""
    detail: dict[str, Any] = {
        "version": "0",
        "bucket": {"name": bucket},
        "object": {"key": key, "sequencer": sequencer} | ({} if deleted else {"size": 1, "etag": etag}),
        "request-id": uuid.uuid4().hex[:16].upper(),
        "requester": ACCOUNT,
        "reason": "DeleteObject" if deleted else "PutObject",
    }
    if deleted:
        detail["deletion-type"] = "Permanently Deleted"
    return json.dumps({
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Deleted" if deleted else "Object Created",
        "source": "aws.s3", "account": ACCOUNT, "time": time, "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"], "detail": detail,
    })  # fmt: skip


@dataclass
class EventPath:
    """A moto bucket + queue wired as the template wires them. Create inside ``moto.mock_aws()``."""

    bucket: str
    prefix: str
    queue: str = "kb-search-test-events"
    s3: Any = None
    sqs: Any = None
    queue_url: str = ""
    queue_arn: str = ""
    _sequence: int = 0x0065F1A0B0C0D0E0
    _last: dict[str, str] = field(default_factory=dict)

    def create(self) -> EventPath:
        import boto3

        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.queue_url = self.sqs.create_queue(QueueName=self.queue)["QueueUrl"]
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        self.queue_arn = attrs["Attributes"]["QueueArn"]
        self.s3.create_bucket(Bucket=self.bucket)
        prefix = [{"Name": "prefix", "Value": self.prefix}] if self.prefix else []
        notes = [[{"Name": "suffix", "Value": suffix}, *prefix] for suffix in NOTE_SUFFIXES]
        rules = [{"Name": "suffix", "Value": "_access.yaml"}, *prefix]  # the access file (template.yaml)
        self.s3.put_bucket_notification_configuration(
            Bucket=self.bucket,
            NotificationConfiguration={"QueueConfigurations": [{
                "QueueArn": self.queue_arn, "Events": list(NOTIFIED_EVENTS),
                "Filter": {"Key": {"FilterRules": filters}},
            } for filters in (*notes, rules)]},
        )  # fmt: skip
        return self

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def receive(self, limit: int = 10_000, delete: bool = True) -> list[dict[str, Any]]:
        """Every message waiting in the queue as Lambda SQS records (their receipt handles), with the ``sequencer``
        S3 would have put in each notification; ``delete``: removed from the queue (the caller now owns them),
        else in flight, as the event source mapping leaves them while the function runs."""
        out: list[dict[str, Any]] = []
        while len(out) < limit:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
            )
            messages = answer.get("Messages", [])
            if not messages:
                break
            for message in messages:
                attributes = message.get("Attributes", {})
                record = sqs_record(self._sequenced(message["Body"]), self.queue_arn, message["MessageId"],
                                    receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
                                    sent_ms=attributes.get("SentTimestamp"))  # fmt: skip
                record["receiptHandle"] = message["ReceiptHandle"]
                out.append(record)
            if not delete:
                continue
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
        return out

    def _sequenced(self, body: str) -> str:
        data = json.loads(body)
        for record in data.get("Records", []) if isinstance(data, dict) else []:
            obj = record.get("s3", {}).get("object", {})
            if "sequencer" not in obj:
                self._sequence += 1
                obj["sequencer"] = f"{self._sequence:016X}00"
        return json.dumps(data)
