"""Round 36's cold review of rel36 (RELIABILITY.md, "Round 36 review: a cold review of rel36 (rev36c)"), each
through the real interfaces: the indexer Lambda handler's scheduled sync over moto's S3 and DynamoDB (S3's answers
shaped with botocore's own ``before-send`` hook, where an HTTP answer is made), the search Lambda handler given
API Gateway events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from tests.integration.test_lease import (
    NOTES,
    _scheduled_sync_of_the_bucket,
    archived_in_the_bucket,
    dynamodb,
    s3_kb_and_lease_table,
)

__all__ = ["dynamodb", "s3_kb_and_lease_table"]  # the fixtures, shared with test_lease

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.'
    b"</Message><RequestId>R1</RequestId></Error>"
)


class _Body:
    """An HTTP answer's raw body as botocore reads it (``stream()``)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Any:
        yield self.data


def _xml() -> HTTPHeaders:
    headers = HTTPHeaders()
    headers["Content-Type"] = "application/xml"
    return headers


def _slowed_down(key: str, when: Any) -> list[int]:
    """S3 answers a GET of ``key`` 503 SlowDown (its throttling, which any object may get) while ``when()``: an
    answer made where botocore sends the request, first of the session's handlers; the count so answered."""
    answered: list[int] = []

    def send(request: Any, **_: Any) -> AWSResponse | None:
        if not when() or not request.url.split("?")[0].endswith(f"/{key}"):
            return None
        answered.append(1)
        return AWSResponse(request.url, 503, _xml(), _Body(SLOW_DOWN))

    assert boto3.DEFAULT_SESSION is not None
    hooks: Any = boto3.DEFAULT_SESSION.events  # a before-send handler answers in botocore's stead: typed None-only
    hooks.register_first("before-send.s3.GetObject", send)
    return answered


def _skipped(report: dict[str, Any], path: str) -> str:
    return " ".join(s["reason"] for s in report.get("skipped", []) if s["path"] == path)


def test_an_archived_note_whose_get_failed_for_another_reason_is_read_at_the_next_sync(
    s3_kb_and_lease_table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rel36 recorded an archived-class note (GLACIER) as archived whatever its GET failed of: a restored object
    (readable, its class and ETag unchanged) whose GET S3 answered 503 SlowDown once was then skipped unread at every
    scheduled sync ("archived in S3 GLACIER at this version"), out of the index until someone ran a full sync, which
    the schedule never does. Only S3's ``InvalidObjectState`` (the object is not restored) records it now."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket="kb-notes", Key="cold.md", Body=b"# Cold\n\nthawed words\n", StorageClass="GLACIER")
    s3.restore_object(Bucket="kb-notes", Key="cold.md", RestoreRequest={"Days": 7})
    throttled = [True]
    answered = _slowed_down("cold.md", lambda: throttled[0])
    first = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert answered and "SlowDown" in _skipped(first, "cold.md"), first
    assert first.get("added") == len(NOTES), first
    throttled[0] = False  # S3 answers again
    second = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert _skipped(second, "cold.md") == "" and second.get("added") == 1, second


def test_the_archived_notes_record_is_bounded(
    s3_kb_and_lease_table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rel36's record of archived notes (the collection's metadata, which every search reads and every sync
    rewrites whole) held every archived note a bucket has: 100,000 of them made it ~10 MB. It holds at most
    ``ARCHIVED_MAX`` now (here 2 of 4 GLACIER notes; the others are asked for at every sync, S3 refusing the GET),
    the same ones at every run: those recorded first."""
    from kbsearch import indexer

    monkeypatch.setattr(indexer, "ARCHIVED_MAX", 2, raising=False)  # main has no bound to set
    cold = [f"cold{i}.md" for i in range(4)]
    gets = archived_in_the_bucket(*cold)
    first = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert sorted(k for k in gets if k in cold) == cold and all(
        "InvalidObjectState" in _skipped(first, k) for k in cold
    )
    for _ in range(2):
        gets.clear()
        again = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
        assert sorted(k for k in gets if k in cold) == ["cold2.md", "cold3.md"], gets  # cold0, cold1 recorded
        assert all("archived in S3 GLACIER at this version" in _skipped(again, k) for k in cold[:2]), again
        assert all("InvalidObjectState" in _skipped(again, k) for k in cold[2:]), again


def test_a_restored_archived_note_is_read_at_the_next_scheduled_sync(
    s3_kb_and_lease_table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rel36's skip reason told the operator to restore an archived note, but a restore changes neither its ETag nor
    its storage class: the note stayed skipped unread until a full sync, which the schedule never runs and which
    re-embeds the whole KB. A recorded note is now asked about with one HEAD (no GET while S3 says it is not
    restored); once S3 names a restored copy (``Restore: ongoing-request="false"``) the scheduled sync reads it."""
    s3 = boto3.client("s3", region_name="us-east-1")
    gets = archived_in_the_bucket("cold.md")
    first = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert gets.count("cold.md") == 1 and "InvalidObjectState" in _skipped(first, "cold.md"), first
    second = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert gets.count("cold.md") == 1 and "archived in S3 GLACIER" in _skipped(second, "cold.md"), second
    assert "restore" in _skipped(second, "cold.md"), second
    s3.restore_object(Bucket="kb-notes", Key="cold.md", RestoreRequest={"Days": 7})
    third = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert _skipped(third, "cold.md") == "" and third.get("added") == 1, third
    assert gets.count("cold.md") == 2


def test_a_forged_block_id_on_a_stale_button_is_answered_in_both_languages_never_a_500(
    load_search_app: Any, bm25_index: Path, tmp_path: Path
) -> None:
    """rel36's ``kb_answer.ru`` block ids as a forger sends them (a signed request: a workspace member's client):
    an unknown or doubled suffix, 10 KB of one, a number, an object, null. Each is answered 200 in both languages
    (the block names no language kb-search says), nothing echoed back, never a 500 (held on rel36's code: a probe)."""
    import json
    from urllib.parse import parse_qsl, urlencode

    from kbsearch_tools.fakes import FakeEndpoint
    from tests.conftest import copy_store
    from tests.integration.test_slack_interactive import SECRET, press, signed_event, wait_for

    store = tmp_path / "q"
    copy_store(bm25_index, store)
    app = load_search_app(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1")
    hook = FakeEndpoint().start()
    try:
        for at, block_id in enumerate(
            ["kb_answer.xx", "kb_answer.ru.ru", "kb_answer." + "ru" * 5000, 7, {"a": 1}, None]
        ):
            button = {"action_id": "kb_more", "text": {"type": "plain_text", "text": "More"}, "value": "garbled"}
            payload = json.loads(dict(parse_qsl(press(button, hook.url + "/old", f"6.{at}")))["payload"])
            payload["actions"][0]["block_id"] = block_id
            body = urlencode({"payload": json.dumps(payload, ensure_ascii=False)})
            before = len(hook.requests)
            assert app(signed_event("/slack/interactive", body))["statusCode"] == 200, block_id
            said = wait_for(hook, before + 1)[-1]["text"]
            assert "cannot read any more" in said and "уже не может прочитать" in said, (block_id, said)
            assert "rururu" not in said and "xx" not in said
    finally:
        hook.stop()
