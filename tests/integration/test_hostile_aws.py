"""Hostile input from the AWS side of the indexer, through the real indexer handler on moto (bucket, queue, lease
table): notification keys S3 never sends, lifecycle expirations, and lease items edited by hand. Each is what a
careless operator, another tool or a forged message can put where the indexer reads; the answer is a skip with a
reason or a run that goes on, never a crash, a wrong key or a lease held for ever."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.s3events import EventPath, sqs_record
from tests.integration.test_events import BUCKET, PREFIX, Indexer, aws, note, open_points, s3_calls

__all__ = ["aws", "s3_calls"]  # fixtures, shared with test_events


def _notification(key: str, name: str = "ObjectCreated:Put", sequencer: str | None = None) -> str:
    obj: dict[str, Any] = {"key": key, "size": 10, "eTag": "0" * 32}
    if sequencer:
        obj["sequencer"] = sequencer
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "eventName": name,
        "userIdentity": {"principalId": "s3.amazonaws.com"}, "requestParameters": {"sourceIPAddress": "s3.amazonaws.com"},
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"}, "object": obj},
    }]})  # fmt: skip


# -- 1. percent-escapes S3 never sends ------------------------------------------------------------------------------

#: Keys whose percent-encoding no S3 notification has (S3 sends '%' as %25, and keys are UTF-8), each of which read as
#: another key: the escape kept as text (`a%zz.md`) or U+FFFD in place of its bytes (`�.md`).
BAD_ESCAPES = {
    "%zz": f"{PREFIX}a%zz.md", "a lone %": f"{PREFIX}100%.md", "% and one hex digit": f"{PREFIX}a%2.md",
    "% at a folder's end": f"{PREFIX}x%/a.md", "%C3 cut short": f"{PREFIX}%C3.md", "%C3 then (": f"{PREFIX}a%C3%28.md",
    "Latin-1 %E9": f"{PREFIX}caf%E9.md", "an encoded surrogate": f"{PREFIX}%ED%A0%80.md",
    "%FF": f"{PREFIX}%FF.md",
}  # fmt: skip


def test_notification_keys_with_escapes_s3_never_sends_are_skipped_with_a_reason(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_calls: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Each bad key, created and removed, beside good notes whose keys S3 encodes (`+` for a space, `%2B` for a `+`,
    `%20`, `%25`): the bad ones ignored with their reason and never read (no HEAD: it was made for `a%zz.md` and for
    `\ufffd.md`, keys the event never named, and a removal applied to them), the good ones indexed under their own
    keys, no message failed."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    good = {"a b.md": "a+b.md", "a+b.md": "a%2Bb.md", "c d.md": "c%20d.md", "%zz.md": "%25zz.md"}
    for path in good:
        aws.put(f"{PREFIX}{path}", note(len(path)))
        aws.receive()  # moto's own notifications: the encodings below are S3's, written out
    records = [sqs_record(_notification(f"{PREFIX}{key}", sequencer="0A"), aws.queue_arn) for key in good.values()]
    for i, key in enumerate(BAD_ESCAPES.values()):
        for name in ("ObjectCreated:Put", "ObjectRemoved:Delete", "LifecycleExpiration:Delete"):
            records.append(sqs_record(_notification(key, name, f"{i + 1:02X}"), aws.queue_arn))
    s3_calls.clear()
    capsys.readouterr()
    assert indexer(records) == []
    assert sorted(p["path"] for p in open_points(indexer.settings()) if p["chunk_index"] == 0) == sorted(good)
    heads = s3_calls.count("HeadObject")
    assert heads == len(good), s3_calls  # one HEAD per good key, none for a key the event did not name
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    ignored = [line for line in lines if str(line.get("message")).startswith("event ignored: ")]
    for key in BAD_ESCAPES.values():
        reasons = {line["reason"] for line in ignored if line["key"] == key}
        assert len(reasons) == 1 and "not a key S3 sent" in next(iter(reasons)), (key, reasons)
