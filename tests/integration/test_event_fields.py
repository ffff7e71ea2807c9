"""S3 change events whose fields hold what S3 never sends (and keys at S3's edges), through the real indexer handler
as the SQS event source calls it (moto: bucket, queue, DynamoDB lease and sequencer tables). Whatever one message
holds, the rest of its batch is applied and only that message can be a batch item failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbsearch_tools.s3events import EventPath, sqs_record
from tests.integration.test_events import BUCKET, PREFIX, Indexer, aws, note, open_points

__all__ = ["aws"]  # the fixture, shared with test_events


def _record(key: str, name: str = "ObjectCreated:Put", **obj: object) -> str:
    return json.dumps({"Records": [{"eventName": name, "eventTime": obj.pop("time", "2026-12-03T09:00:00Z"),
                                    "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, **obj}}}]})  # fmt: skip


#: Messages S3 would not send, each next to a good note's event in one batch. A sequencer that is no S3 sequencer
#: is poison (it cannot be ordered or stored); the rest are applied or ignored with their reason.
ODD_FIELDS = {
    "sequencer of 500,000 hex digits": _record(f"{PREFIX}odd.md", sequencer="F" * 500_000),
    "sequencer not hex": _record(f"{PREFIX}odd.md", sequencer="not hex at all!"),
    "sequencer a number": _record(f"{PREFIX}odd.md", sequencer=12345),
    "size negative, a string, huge": _record(f"{PREFIX}odd.md", size=-1, eTag=5, versionId=[]),
    "eventTime far away": _record(f"{PREFIX}odd.md", time="0001-01-01T00:00:00+23:59"),
    "eventTime not a time": _record(f"{PREFIX}odd.md", time="yesterday"),
    "key over S3's 1,024 bytes": _record(f"{PREFIX}{'ж' * 1200}.md"),
    "key not UTF-8 once decoded": _record(f"{PREFIX}caf%E9.md"),
    "key ending in %": _record(f"{PREFIX}odd%.md"),
    "unknown event name": _record(f"{PREFIX}odd.md", name="ObjectRestore:Completed"),
}


@pytest.mark.parametrize("body", list(ODD_FIELDS.values()), ids=list(ODD_FIELDS))
def test_a_message_with_odd_fields_never_fails_the_rest_of_its_batch(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}good.md", note(1))
    (good,) = aws.receive()
    odd = sqs_record(body, aws.queue_arn)
    failed = indexer([odd, good])
    assert good["messageId"] not in failed and set(failed) <= {odd["messageId"]}
    if "sequencer" in body and "12345" not in body:  # no S3 sequencer: poison, alone (it failed the whole batch)
        assert failed == [odd["messageId"]]
    assert "good.md" in {p["path"] for p in open_points(indexer.settings())}
    assert indexer([odd, good]) == failed  # a redelivery: the same verdict, nothing else fails
