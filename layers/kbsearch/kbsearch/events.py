"""S3 change events as the indexer receives them: an SQS batch whose messages are S3 event notifications or
EventBridge ``Object Created`` / ``Object Deleted`` events, turned into one :class:`Change` per object.

Shapes (reference/aws.md, "S3 change events"):

- SQS record: ``messageId``, ``body`` (a JSON string), ``attributes.ApproximateReceiveCount``,
  ``attributes.SentTimestamp`` (epoch milliseconds, set by SQS when S3 or EventBridge sent the message).
- S3 notification body: ``{"Records": [{"eventName": "ObjectCreated:Put" | "ObjectRemoved:Delete" |
  "LifecycleExpiration:Delete" | ...,
  "eventTime", "s3": {"bucket": {"name"}, "object": {"key" (URL-encoded, spaces as ``+``), "size", "eTag",
  "versionId", "sequencer"}}}]}``; the ``s3:TestEvent`` message S3 sends when the configuration is saved is ignored.
- EventBridge body: ``{"source": "aws.s3", "detail-type": "Object Created" | "Object Deleted", "time",
  "detail": {"bucket": {"name"}, "object": {"key" (not encoded), "etag", "sequencer"}}}``.

A message that is not one of those (not JSON, another shape, a notification none of whose records is well formed)
is *poison*: it is reported as a batch item failure so SQS retries it and, after ``maxReceiveCount`` tries, moves
it to the dead-letter queue, without holding back the rest of its batch. A notification whose records are partly
malformed is applied: its well-formed records are changes, each malformed one is *ignored* with its reason
(``malformed record N of M``; retrying the message cannot mend it, and retried it reached the dead-letter queue
after five receives, its good records applied again each time). Keys of another bucket, outside the KB
prefix, not ``.md``, hidden (a name starting with '.', as a folder KB has them), or folder markers are *ignored*
with a reason (they can never become notes); the access file at the KB root (``_access.yaml``) is a change too.

Ordering: events are at-least-once and unordered. For one key, the greater ``sequencer`` is the later event
(:func:`sequencer_key`: hex strings compared after left-padding with zeros); sequencers of different keys are not
comparable. No qdrant, boto3 or numpy import here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kbsearch.access import ACCESS_FILE
from kbsearch.sources import hidden, is_note_name, note_path, path_problem, percent_decoded

_SURROGATE = re.compile("[\ud800-\udfff]")
#: The notification event names that remove an object: a delete (``ObjectRemoved:Delete``,
#: ``ObjectRemoved:DeleteMarkerCreated``) and a lifecycle rule's expiration (``LifecycleExpiration:Delete``,
#: ``LifecycleExpiration:DeleteMarkerCreated``).
REMOVED_EVENTS = ("ObjectRemoved:", "LifecycleExpiration:")

#: Sequencers are compared at this width (S3's are 16-18 hex digits today), and the DynamoDB log (string
#: comparison) stores them padded to it.
SEQUENCER_WIDTH = 64
#: What an S3 sequencer is: hex digits, at most :data:`SEQUENCER_WIDTH`; a message with any other is poison (it
#: cannot be ordered, nor stored: a 500,000-digit one failed the sequencer log's write, and every message of its
#: batch with it).
_SEQUENCER = re.compile(f"[0-9A-Fa-f]{{1,{SEQUENCER_WIDTH}}}")


def is_sequencer(value: object) -> bool:
    """Whether ``value`` is a sequencer as S3 sends one: hex text, at most :data:`SEQUENCER_WIDTH` digits."""
    return isinstance(value, str) and _SEQUENCER.fullmatch(value) is not None


def sequencer_key(sequencer: str) -> str:
    """The comparable form of an S3 sequencer: upper-case hex, left-padded with zeros (empty stays empty: unknown)."""
    s = sequencer.strip().upper()
    return s.rjust(SEQUENCER_WIDTH, "0") if s else ""


def newer(a: str, b: str) -> bool:
    """True when sequencer ``a`` is later than ``b`` for the same key (an unknown sequencer is never later)."""
    ka, kb = sequencer_key(a), sequencer_key(b)
    if not ka:
        return False
    if not kb:
        return True
    return (len(ka), ka) > (len(kb), kb)


@dataclass(frozen=True)
class Change:
    """One object that changed: where (``path``, the note's identity; ``key``, where to read it), what the event
    said (``removed``), its per-key order (``sequencer``), when it happened (``event_time``, epoch seconds, as the
    event says) and when its message reached the queue (``sent_time``: SQS's ``SentTimestamp``, epoch seconds)."""

    path: str
    key: str
    removed: bool
    sequencer: str = ""
    event_time: float | None = None
    message_id: str = ""
    sent_time: float | None = None


#: How long after a change S3 or EventBridge can still send its message (EventBridge retries a delivery for up
#: to 24 hours; S3's notifications arrive within seconds to minutes).
MAX_DELIVERY_S = 86_400.0
#: The oldest a message can be when it is applied: the dead-letter queue's retention (14 days; a message moved
#: back from it keeps its first enqueue time).
MAX_QUEUE_AGE_S = 14 * 86_400.0
#: The oldest a change can be when it is applied: a message's age plus the delivery window (used for a record
#: without a SentTimestamp to believe).
MAX_EVENT_AGE_S = MAX_QUEUE_AGE_S + MAX_DELIVERY_S
#: Clocks disagree by at most this much (an event time this far after its message was sent is still believed).
CLOCK_SKEW_S = 300.0


def lag_s(change: Change, now: float) -> tuple[float | None, bool]:
    """How long ``change`` took from happening to being applied at ``now``, and whether its event time could be
    believed. An event time is believed within what delivery allows: no later than its message's sending (plus
    clock skew) and no more than :data:`MAX_DELIVERY_S` before it (without a SentTimestamp to believe: within
    :data:`MAX_EVENT_AGE_S` of ``now``). One outside (year 1, the future, prose) is no lag: the time since the
    message reached the queue is used instead, a lower bound that still shows a queue backing up; with neither
    time usable, the lag is unknown (None). A SentTimestamp is believed within :data:`MAX_QUEUE_AGE_S` before
    ``now`` (no queue keeps a message longer) and clock skew after it."""
    sent = change.sent_time
    if sent is not None and not now - MAX_QUEUE_AGE_S <= sent <= now + CLOCK_SKEW_S:
        sent = None
    when = change.event_time
    if sent is not None:
        believed = when is not None and sent - MAX_DELIVERY_S <= when <= sent + CLOCK_SKEW_S
        return max(0.0, now - (when if believed and when is not None else sent)), believed
    if when is not None and now - MAX_EVENT_AGE_S <= when <= now + CLOCK_SKEW_S:
        return max(0.0, now - when), True
    return None, False


@dataclass
class Batch:
    """An SQS batch read: the changes to apply, the messages that failed to parse (poison), the keys ignored."""

    changes: list[Change] = field(default_factory=list)
    poison: list[dict[str, str]] = field(default_factory=list)  # {message_id, reason}
    ignored: list[dict[str, str]] = field(default_factory=list)  # {key, reason}
    messages: list[str] = field(default_factory=list)  # every message id, in order
    test_events: int = 0


def is_sqs_batch(event: Any) -> bool:
    """An SQS event source's invocation: ``Records`` from ``aws:sqs``."""
    records = event.get("Records") if isinstance(event, dict) else None
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    )


def _sent_time(record: dict[str, Any]) -> float | None:
    """SQS's ``attributes.SentTimestamp`` (epoch milliseconds as digits) in seconds; None when it is not that."""
    attributes = record.get("attributes")
    value = attributes.get("SentTimestamp") if isinstance(attributes, dict) else None
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 15:
        return None
    return int(value) / 1000


def _time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


class Scope:
    """Which keys are notes of this KB: the source's bucket and prefix (S3), or any key (a folder)."""

    def __init__(self, bucket: str | None, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix

    def why_not(self, bucket: str | None, key: str) -> str | None:
        """Why ``key`` cannot be a note of this KB (None: it can)."""
        if self.bucket is not None and bucket is not None and bucket != self.bucket:
            return f"bucket {bucket!r} is not the KB's bucket {self.bucket!r}"
        if not key.startswith(self.prefix):
            return f"outside the KB prefix {self.prefix!r}"
        if key.endswith("/"):
            return "a folder marker"
        if key == self.prefix + ACCESS_FILE:
            return None  # the KB's access file: its change re-derives every note's groups
        if not is_note_name(key):
            return "not a markdown note (.md)"
        path = note_path(key[len(self.prefix) :])
        problem = path_problem(path)
        if problem:
            return f"not a usable note path: {problem}"
        if hidden(path):  # as a folder's listing: never a note (a vault's .trash holds its deleted notes)
            return "a hidden file or folder (a name starting with '.': Obsidian's .trash, .obsidian)"
        return None

    def path(self, key: str) -> str:
        return note_path(key[len(self.prefix) :])


def _s3_record(record: Any, message_id: str, scope: Scope, batch: Batch) -> str | None:
    """One S3 notification record → a change (appended), an ignored key, or why the record is malformed."""
    if not isinstance(record, dict):
        return "a record that is not an object"
    name = record.get("eventName")
    s3 = record.get("s3")
    if not isinstance(name, str) or not isinstance(s3, dict):
        return "a record without eventName or s3"
    obj, bucket = s3.get("object"), s3.get("bucket")
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
        return "a record without s3.object.key"
    key, problem = notification_key(obj["key"])
    if problem:
        batch.ignored.append({"key": shown(obj["key"]), "reason": problem})
        return None
    bucket_name = bucket.get("name") if isinstance(bucket, dict) else None
    if name.startswith("ObjectCreated:"):
        removed = False
    elif name.startswith(REMOVED_EVENTS):
        removed = True
    else:
        batch.ignored.append({"key": shown(key), "reason": f"event {name!r} does not change a note"})
        return None
    return _add(batch, scope, bucket_name, key, removed, obj.get("sequencer"), record.get("eventTime"), message_id)


def notification_key(raw: str) -> tuple[str, str | None]:
    """A notification's ``s3.object.key`` (URL-encoded, spaces as ``+``) → the key, or why it is no key S3 sends.
    S3 encodes every ``%`` of a key as ``%25`` and the key is UTF-8: a ``%`` not followed by two hex digits (``%zz``,
    a lone ``%``) or escapes that decode to no UTF-8 (``%C3`` cut short, ``%E9``) would read as another key (the
    escape kept as text, or U+FFFD in place of the bytes), a key the event never named."""
    try:
        return percent_decoded(raw, plus=True), None
    except ValueError as exc:
        return raw, f"a key with {exc}: not a key S3 sent"


def shown(key: str) -> str:
    """A key as a log line or a report carries it: lone surrogates (JSON's ``\\ud800`` escapes, which no UTF-8
    log stream can write: the line was lost with a traceback) as ``\\ud800`` text."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8") if _SURROGATE.search(key) else key


def _add(
    batch: Batch, scope: Scope, bucket: Any, key: str, removed: bool, sequencer: Any, when: Any, message_id: str
) -> str | None:
    """Appends the change (or the ignored key); returns why the record is malformed, if it is."""
    reason = scope.why_not(bucket if isinstance(bucket, str) else None, key)
    if reason:
        batch.ignored.append({"key": shown(key), "reason": reason})
        return None
    seq = sequencer.strip() if isinstance(sequencer, str) else ""
    if seq and not is_sequencer(seq):
        return f"a sequencer that is not S3's (hex digits, at most {SEQUENCER_WIDTH})"
    change = Change(scope.path(key), key, removed, seq, _time(when), message_id)
    batch.changes.append(change)
    return None


def _eventbridge(body: dict[str, Any], message_id: str, scope: Scope, batch: Batch) -> str | None:
    kind = body.get("detail-type")
    detail = body.get("detail")
    if not isinstance(detail, dict):
        return "an EventBridge event without detail"
    obj, bucket = detail.get("object"), detail.get("bucket")
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
        return "an EventBridge event without detail.object.key"
    key = obj["key"]
    if kind not in ("Object Created", "Object Deleted"):
        batch.ignored.append({"key": shown(key), "reason": f"event {kind!r} does not change a note"})
        return None
    bucket_name = bucket.get("name") if isinstance(bucket, dict) else None
    return _add(
        batch, scope, bucket_name, key, kind == "Object Deleted", obj.get("sequencer"), body.get("time"), message_id
    )


def read_batch(event: dict[str, Any], scope: Scope) -> Batch:
    """An SQS event → its changes, poison messages and ignored keys. Never raises on a message's content."""
    batch = Batch()
    for record in event.get("Records") or []:
        message_id = str(record.get("messageId") or "")
        batch.messages.append(message_id)
        first = len(batch.changes)
        problem = _message(record.get("body"), message_id, scope, batch)
        if problem:
            batch.poison.append({"message_id": message_id, "reason": problem})
        sent = _sent_time(record)
        if sent is not None:
            batch.changes[first:] = [dataclasses.replace(c, sent_time=sent) for c in batch.changes[first:]]
    return batch


def _message(raw: Any, message_id: str, scope: Scope, batch: Batch) -> str | None:
    if not isinstance(raw, str):
        return "the message has no body"
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser recurses
        return "the message body is not JSON"
    if not isinstance(body, dict):
        return "the message body is not a JSON object"
    if body.get("Event") == "s3:TestEvent":
        batch.test_events += 1
        return None
    if body.get("source") == "aws.s3" and "detail-type" in body:
        return _eventbridge(body, message_id, scope, batch)
    records = body.get("Records")
    if not isinstance(records, list):
        return "neither an S3 notification nor an EventBridge S3 event"
    problems = [_s3_record(record, message_id, scope, batch) for record in records]  # every record is read
    bad = [(number, problem) for number, problem in enumerate(problems, 1) if problem]
    if not bad or len(bad) == len(records):  # nothing of it is an event: poison, kept by the dead-letter queue
        return bad[0][1] if bad else None
    for number, problem in bad:  # beside well-formed records: a retry cannot mend it, nor the records applied
        batch.ignored.append({"key": _record_key(records[number - 1]), "message_id": message_id,
                              "reason": f"malformed record {number} of {len(records)} ({problem}): skipped, the "
                                        "message's other records applied"})  # fmt: skip
    return None


def _record_key(record: Any) -> str:
    """A malformed record's key as a log line shows it (cut), or '' when it names none."""
    s3 = record.get("s3") if isinstance(record, dict) else None
    obj = s3.get("object") if isinstance(s3, dict) else None
    key = obj.get("key") if isinstance(obj, dict) else None
    return shown(key[:300]) if isinstance(key, str) else ""


def latest_per_key(changes: list[Change], name: Callable[[Change], str]) -> tuple[dict[str, Change], int]:
    """The latest change of each object by sequencer (without sequencers: the last given), by ``name`` (the key
    within the KB: sequencers of different keys are not comparable, twins spelling one path in two Unicode forms
    included), and how many changes were superseded or repeated within the batch."""
    latest: dict[str, Change] = {}
    for change in changes:
        held = latest.get(name(change))
        if held is None or newer(change.sequencer, held.sequencer) or not (change.sequencer or held.sequencer):
            latest[name(change)] = change
    return latest, len(changes) - len(latest)
