"""S3 change events whose fields hold what S3 never sends (and keys at S3's edges), through the real indexer handler
as the SQS event source calls it (moto: bucket, queue, DynamoDB lease and sequencer tables). Whatever one message
holds, the rest of its batch is applied and only that message can be a batch item failure."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
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


def _at(offset_s: float) -> str:
    return dt.datetime.fromtimestamp(time.time() + offset_s, dt.UTC).isoformat().replace("+00:00", "Z")


def _sent(offset_s: float) -> str:
    return str(int((time.time() + offset_s) * 1000))


H, D = 3600.0, 86400.0
#: (event time, or a function of the time the case runs, SQS SentTimestamp: seconds from now or None for a record
#: without it) → the lag the metric must carry (bounds in seconds; None: no sample) and whether the event time is
#: believed. Times relative to now are taken when the case runs, not when the module is collected (a suite runs
#: for minutes).
LAG_CASES = {
    "year 1": ("0001-01-01T00:00:00+23:59", 0.0, (0, 60), False),
    "year 9999": ("9999-12-31T23:59:59Z", 0.0, (0, 60), False),
    "two hours ahead": (lambda: _at(2 * H), 0.0, (0, 60), False),
    "three days before its sending": (lambda: _at(-3 * D), 0.0, (0, 60), False),
    "prose": ("yesterday", 0.0, (0, 60), False),
    "a Unix number": (1_000_000_000, 0.0, (0, 60), False),
    # real lag, never hidden
    "sent 2 h ago, 10 s after the change": (lambda: _at(-2 * H - 10), -2 * H, (2 * H, 2 * H + 120), True),
    "EventBridge retried for 20 h": (lambda: _at(-20 * H), 0.0, (20 * H, 20 * H + 120), True),
    "year 1, held 3 days in the queue": ("0001-01-01T00:00:00Z", -3 * D, (3 * D, 3 * D + 120), False),
    "no SentTimestamp, an hour ago": (lambda: _at(-H), None, (H, H + 120), True),
    "no SentTimestamp, year 1": ("0001-01-01T00:00:00Z", None, None, False),
}


def _lags_and_counts(out: str) -> tuple[list[float], dict[str, float]]:
    """The invocation's ``IndexLagSeconds`` values and its ``events_*`` counts, from its metrics (EMF lines)."""
    lags: list[float] = []
    counts: dict[str, float] = {}
    for line in out.splitlines():
        if '"_aws"' in line:
            record = json.loads(line)
            lags += record.get("IndexLagSeconds", [])
            counts |= {k[len("events_") :]: sum(v) for k, v in record.items() if k.startswith("events_")}
    return lags, counts


def test_event_times_that_cannot_be_a_lag_never_trip_the_lag_alarm_and_real_lag_still_shows(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``IndexLagSeconds`` (the lag alarm's metric, Maximum over 5 minutes against 300 s) was now − eventTime for
    every applied change: an event of year 1 put 63 billion seconds in it, and the alarm fired on a lie. An event
    time is now believed only within what delivery allows around its message's SentTimestamp; otherwise the lag
    counts from the sending (a queue that held a message for days still shows), or, with neither, is unknown."""
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "KbSearch")
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    for i, (name, (case_time, sent, expected, believed)) in enumerate(LAG_CASES.items()):
        key = f"{PREFIX}lag{i}.md"
        when = case_time() if callable(case_time) else case_time
        aws.put(key, note(i))
        aws.receive()
        record = sqs_record(_record(key, time=when, sequencer=f"{i + 1:02X}"), aws.queue_arn,
                            sent_ms=None if sent is None else _sent(sent))  # fmt: skip
        if sent is None:
            del record["attributes"]["SentTimestamp"]
        capsys.readouterr()
        assert indexer([record]) == [], name
        lags, counts = _lags_and_counts(capsys.readouterr().out)
        assert counts["added"] == 1 and counts["times_refused"] == (0 if believed else 1), (name, counts)
        if expected is None:
            assert lags == [], (name, lags)
        else:
            assert len(lags) == 1 and expected[0] <= lags[0] < expected[1], (name, lags)


def test_a_change_the_index_already_holds_gives_no_lag_sample(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A message delivered days late (held in the queue, or moved back from the dead-letter queue) whose change
    the hourly sync already applied: the note was searchable long before this run, so the days are not its lag.
    A deletion of a note the index never held, the same. A change that writes still gives its sample."""
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "KbSearch")
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}late.md", note(1))
    aws.receive()
    settings = indexer.settings()
    assert run_sync(settings, Secrets(settings)).added == 1  # the hourly sync applied it first
    late = sqs_record(_record(f"{PREFIX}late.md", time=_at(-3 * D), sequencer="0A"), aws.queue_arn,
                      sent_ms=_sent(-3 * D + 5))  # fmt: skip
    gone = sqs_record(_record(f"{PREFIX}never.md", "ObjectRemoved:Delete", time=_at(-3 * D), sequencer="0B"),
                      aws.queue_arn, sent_ms=_sent(-3 * D + 5))  # fmt: skip
    capsys.readouterr()
    assert indexer([late, gone]) == []
    lags, counts = _lags_and_counts(capsys.readouterr().out)
    assert lags == [] and counts["unchanged"] == 1 and counts["deleted"] == 0, counts
    aws.put(f"{PREFIX}late.md", note(1, first="edited"))
    edit = sqs_record(_record(f"{PREFIX}late.md", time=_at(-30), sequencer="0C"), aws.queue_arn)
    assert indexer([edit]) == []
    lags, counts = _lags_and_counts(capsys.readouterr().out)
    assert counts["updated"] == 1 and len(lags) == 1 and 30 <= lags[0] < 120


@pytest.mark.parametrize(
    ("sent", "when", "expected"),
    [("abc", -30, (30, 120)), ("-1", -30, (30, 120)), ("1e12", -30, (30, 120)), ("9" * 40, -30, (30, 120)),
     ("", -30, (30, 120)), ("１２３", -30, (30, 120)), (12345, -30, (30, 120)), (None, -30, (30, 120)),
     ("99999999999999", "0001-01-01T00:00:00Z", None), ("0", "0001-01-01T00:00:00Z", None), ("0", -30, (30, 120))],
    ids=["prose", "negative", "exponent", "40 digits", "empty", "full-width digits", "a number", "null",
         "year 5138", "the epoch, year 1", "the epoch, 30 s ago"],
)  # fmt: skip
def test_a_sent_timestamp_sqs_never_writes_is_not_believed(
    aws: EventPath,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sent: object,
    when: object,
    expected: tuple[float, float] | None,
) -> None:
    """The record's own SentTimestamp, when it is not SQS's (epoch milliseconds as ASCII digits, not in the future):
    the lag falls back to the event time's own window, and the batch is applied as ever; nor is one older than any
    queue keeps a message (the epoch)."""
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "KbSearch")
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}sent.md", note(1))
    aws.receive()
    record = sqs_record(_record(f"{PREFIX}sent.md", time=_at(when) if isinstance(when, int) else when,
                                sequencer="0A"), aws.queue_arn)  # fmt: skip
    record["attributes"]["SentTimestamp"] = sent
    capsys.readouterr()
    assert indexer([record]) == []
    lags, counts = _lags_and_counts(capsys.readouterr().out)
    assert counts["added"] == 1
    if expected is None:
        assert lags == []
    else:
        assert len(lags) == 1 and expected[0] <= lags[0] < expected[1], lags


def test_a_watched_folders_saves_have_no_time_to_refuse(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``kbsearch serve --watch`` applies a folder's saves as changes with no event time and no SentTimestamp: no
    lag sample, nothing counted as refused, no warning per save (each saved note logged one before)."""
    from kbsearch.events import Change
    from kbsearch.indexer import ChangeSync
    from kbsearch.qdrant import open_store
    from kbsearch.sources import LocalSource

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_bytes(note(1))
    (kb / "b.md").write_bytes(note(2))
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    store = open_store(settings, Secrets(settings))
    try:
        with caplog.at_level(logging.WARNING, logger="kbsearch"):
            report = ChangeSync(LocalSource(kb), store, None).apply(
                [Change(path="a.md", key="a.md", removed=False), Change(path="b.md", key="b.md", removed=False)]
            )
    finally:
        store.close()
    assert report.added == 2 and report.lag_s == [] and report.times_refused == 0
    assert not [r for r in caplog.records if "cannot be a lag" in r.getMessage()]


#: Keys whose notification spelling (URL-encoded, a space as ``+``) a second decoding, or none, would misread.
ENCODED_KEYS = ["a+b.md", "a b.md", "100%.md", "c++ guide.md", "%41.md", "x%2By.md", "é+é.md", "q?.md", "h#1.md"]


def test_keys_holding_plus_percent_and_reserved_characters_are_applied_and_removed_as_named(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 22 (held): S3 sends ``a+b.md`` as ``a%2Bb.md``, ``a b.md`` as ``a+b.md``, ``%41.md`` as ``%2541.md``;
    each is indexed and deleted at its own path, none taken for another (decoded twice, ``%41.md`` would be
    ``A.md``; read without ``+`` as a space, ``a b.md`` would be ``a+b.md``)."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    for key in ENCODED_KEYS:
        aws.put(f"{PREFIX}{key}", note(1))
    assert indexer(aws.receive()) == []
    assert {p["path"] for p in open_points(indexer.settings())} == set(ENCODED_KEYS)
    for key in ENCODED_KEYS[::2]:
        aws.delete(f"{PREFIX}{key}")
    assert indexer(aws.receive()) == []
    assert {p["path"] for p in open_points(indexer.settings())} == set(ENCODED_KEYS[1::2])
