"""Hostile input from the AWS side of the indexer, through the real indexer handler on moto (bucket, queue, lease
table): notification keys S3 never sends, lifecycle expirations, and lease items edited by hand. Each is what a
careless operator, another tool or a forged message can put where the indexer reads; the answer is a skip with a
reason or a run that goes on, never a crash, a wrong key or a lease held for ever."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.events import Scope as KeyScope
from kbsearch.events import read_batch
from kbsearch.indexer import run_sync
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.local.template import load_template
from kbsearch_tools.s3events import NOTE_SUFFIXES, NOTIFIED_EVENTS, EventPath, eventbridge_body, sqs_event, sqs_record
from tests.conftest import ROOT
from tests.integration.test_events import BUCKET, PREFIX, TABLE, Indexer, aws, load_indexer, note, open_points, s3_calls

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
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_calls: list[str]
) -> None:
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
    assert indexer(records) == []
    assert sorted(p["path"] for p in open_points(indexer.settings()) if p["chunk_index"] == 0) == sorted(good)
    heads = s3_calls.count("HeadObject")
    assert heads == len(good), s3_calls  # one HEAD per good key, none for a key the event did not name
    ignored = read_batch(sqs_event(records), KeyScope(BUCKET, PREFIX)).ignored  # what the run logged, one a line
    for key in BAD_ESCAPES.values():
        reasons = {item["reason"] for item in ignored if item["key"] == key}
        assert len(reasons) == 1 and "not a key S3 sent" in next(iter(reasons)), (key, reasons)


# -- 2. lifecycle expirations ---------------------------------------------------------------------------------------


def test_the_bucket_notifies_what_the_template_subscribes() -> None:
    """The moto bucket of these tests is wired as template.yaml wires the stack's bucket (every event type)."""
    notes = load_template(ROOT / "template.yaml")["Resources"]["KbBucket"]["Properties"]["NotificationConfiguration"]
    events = [c["Event"] for c in notes["QueueConfigurations"]]
    assert events == list(NOTIFIED_EVENTS) * (len(NOTE_SUFFIXES) + 1) and "s3:LifecycleExpiration:*" in events


def test_notes_in_every_casing_of_md_reach_the_indexer_through_the_templates_rules(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bucket wired with template.yaml's own notification rules (the KB prefix filled in): a note saved as
    `.md`, `.mD`, `.Md` or `.MD` under the prefix raises its event and the handler applies it, saved and deleted;
    a `.MD` outside the prefix raises none (the rules had `.md` alone: S3's suffix filter is case-sensitive, so a
    `Guide.MD` raised no event and waited for the hourly sync, while the sync and the handler take it as a note)."""
    configs = load_template(ROOT / "template.yaml")["Resources"]["KbBucket"]["Properties"]["NotificationConfiguration"]
    wired = [{"QueueArn": aws.queue_arn, "Events": [c["Event"]], "Filter": {"Key": {"FilterRules": [
        dict(r, Value=PREFIX if r["Name"] == "prefix" else r["Value"]) for r in c["Filter"]["S3Key"]["Rules"]["Fn::If"][1]
    ]}}} for c in configs["QueueConfigurations"]]  # fmt: skip
    aws.s3.put_bucket_notification_configuration(
        Bucket=BUCKET, NotificationConfiguration={"QueueConfigurations": wired}
    )
    aws.receive()
    indexer = Indexer(monkeypatch, tmp_path, None)
    keys = [f"{PREFIX}Guide{i}{suffix}" for i, suffix in enumerate(NOTE_SUFFIXES)]
    for i, key in enumerate(keys):
        aws.put(key, note(i))
    aws.put("other/Guide.MD", note(9))
    records = aws.receive()
    assert len(records) == len(NOTE_SUFFIXES) and indexer(records) == []
    assert {p["path"] for p in open_points(indexer.settings())} == {k[len(PREFIX) :] for k in keys}
    for key in keys:
        aws.delete(key)
    records = aws.receive()
    assert len(records) == len(NOTE_SUFFIXES) and indexer(records) == []
    assert open_points(indexer.settings()) == []


@pytest.mark.parametrize("name", ["LifecycleExpiration:Delete", "LifecycleExpiration:DeleteMarkerCreated"])
def test_a_note_a_lifecycle_rule_expires_leaves_the_index_at_once(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A lifecycle rule expiring a note sends `LifecycleExpiration:*` (never `ObjectRemoved:*`): the bucket is
    subscribed to it and the event removes the note, through the queue as S3 sends it (it was neither subscribed
    nor read: `event ... does not change a note`, the note searchable until the next full sync). The same for the
    access file at the root, and for EventBridge's `Object Deleted` of a lifecycle expiration."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    subscribed = aws.s3.get_bucket_notification_configuration(Bucket=BUCKET)["QueueConfigurations"]
    assert all("s3:LifecycleExpiration:*" in c["Events"] for c in subscribed)
    aws.put(f"{PREFIX}_access.yaml", b"hr/: [hr]\n")
    for path in ("old.md", "hr/pay.md", "keep.md", "bridge.md"):
        aws.put(f"{PREFIX}{path}", note(len(path)))
    assert indexer(aws.receive()) == []
    groups = {p["path"]: p["access"] for p in open_points(indexer.settings())}
    assert groups["hr/pay.md"] == ["hr"]
    # the rule expires three objects: S3 sends the queue what it sends for a lifecycle expiration, nothing else
    for key in (f"{PREFIX}old.md", f"{PREFIX}_access.yaml", f"{PREFIX}bridge.md"):
        aws.s3.delete_object(Bucket=BUCKET, Key=key)
    aws.receive()  # moto notifies a DeleteObject call as ObjectRemoved: dropped, the rule's deletion sends no such
    for key in (f"{PREFIX}old.md", f"{PREFIX}_access.yaml"):
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=_notification(key, name))
    bridge = eventbridge_body(BUCKET, f"{PREFIX}bridge.md", True, "FF" * 9, "2026-12-04T00:00:00Z")
    body = json.loads(bridge)
    body["detail"].update({"reason": "Lifecycle Expiration", "deletion-type": "Permanently Deleted"})
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps(body))
    assert indexer(aws.receive()) == []
    after = {p["path"]: p["access"] for p in open_points(indexer.settings())}
    assert set(after) == {"hr/pay.md", "keep.md"}
    assert after["hr/pay.md"] == ["public"]  # the expired access file's rule no longer applies


# -- 4. lease items edited by hand ----------------------------------------------------------------------------------

#: ``expires_at`` values no holder writes (absent, of another DynamoDB type, beyond any TTL): the lease is free.
BROKEN_EXPIRIES: dict[str, dict[str, Any] | None] = {
    "absent": None, "a string": {"S": "2030-01-01T00:00:00Z"}, "a number as a string": {"S": "1900000000"},
    "a boolean": {"BOOL": True}, "null": {"NULL": True}, "a list": {"L": [{"N": "1"}]}, "a map": {"M": {}},
    "10^30": {"N": "1E+30"}, "38 nines": {"N": "9" * 38}, "a year ahead": {"N": str(int(time.time()) + 366 * 86400)},
    "a fraction, past": {"N": "1.5"}, "negative": {"N": "-1e30"},
}  # fmt: skip


def _put_lease(expires: dict[str, Any] | None, owner: dict[str, Any] | None = None) -> None:
    item = {"pk": {"S": "index#kb"}, "owner": owner or {"S": "hand-edit"}, "acquired_at": {"N": "1"}}
    if expires is not None:
        item["expires_at"] = expires
    boto3.client("dynamodb", region_name="us-east-1").put_item(TableName=TABLE, Item=item)


def _lease_item() -> dict[str, Any] | None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    return client.get_item(TableName=TABLE, Key={"pk": {"S": "index#kb"}}).get("Item")


@pytest.mark.parametrize("expires", list(BROKEN_EXPIRIES.values()), ids=list(BROKEN_EXPIRIES))
def test_a_hand_edited_lease_item_never_stops_the_indexer(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expires: dict[str, Any] | None
) -> None:
    """A lease item whose `expires_at` no holder writes: an event batch applies its notes and a scheduled run syncs,
    taking the lease over and releasing it (an absent or non-number expiry held the lease for ever, every full sync
    `skipped`; 10^30 too, and failed every event batch back to the queue; `1E+30` as the batch read it was a
    `ValueError` out of the handler)."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}a.md", note(1))
    _put_lease(expires)
    assert indexer(aws.receive()) == []
    assert {p["path"] for p in open_points(indexer.settings())} == {"a.md"}
    aws.put(f"{PREFIX}b.md", note(2))
    aws.receive()  # lost: the scheduled run finds it
    _put_lease(expires)
    report = indexer.app.lambda_handler({"full": True}, LambdaContext("kb-search-test-indexer", 2048, 900))
    assert report.get("status") != "skipped" and report["error"] is None, report
    assert {p["path"] for p in open_points(indexer.settings())} == {"a.md", "b.md"}
    assert _lease_item() is None  # taken over and released, not left for the next run


@pytest.mark.parametrize("expires_in", [100.5, 30])
@pytest.mark.parametrize("owner", [{"S": "another run"}, {"N": "5"}, None])
def test_a_lease_held_with_a_plausible_expiry_is_waited_on_and_named(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expires_in: float, owner: dict[str, Any] | None
) -> None:
    """A lease that is a holder's (its expiry within the longest TTL, a fraction too) still skips the full sync and
    fails the batch back, naming the holder and the expiry (a fraction was a `ValueError`, an owner of another type
    an `AttributeError`)."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    indexer.app.LEASE_RETRY_S = 0
    aws.receive()
    aws.put(f"{PREFIX}a.md", note(1))
    records = aws.receive()
    item: dict[str, Any] = {"pk": {"S": "index#kb"}, "expires_at": {"N": str(time.time() + expires_in)}}
    if owner is not None:
        item["owner"] = owner
    boto3.client("dynamodb", region_name="us-east-1").put_item(TableName=TABLE, Item=item)
    assert indexer(records) == [r["messageId"] for r in records]
    report = indexer.app.lambda_handler({"full": True}, LambdaContext("kb-search-test-indexer", 2048, 900))
    assert report["status"] == "skipped" and isinstance(report["expires_at"], int), report
    assert report["holder"] == (owner["S"] if owner and "S" in owner else "another run")


# -- the sequencer log's items edited by hand -----------------------------------------------------------------------

#: ``seq`` values the sequencer log never writes (it writes 64 upper-case hex digits).
BROKEN_SEQUENCERS: dict[str, dict[str, Any] | None] = {
    "absent": None, "a number": {"N": "5"}, "a list": {"L": [{"S": "01"}]}, "not hex": {"S": "Z" * 64},
    "short": {"S": "FF"}, "prose": {"S": "later"}, "lower case": {"S": "f" * 64}, "0X prefix": {"S": "0X" + "F" * 62},
    "underscores": {"S": "F_" * 32},
}  # fmt: skip


@pytest.mark.parametrize("seq", list(BROKEN_SEQUENCERS.values()), ids=list(BROKEN_SEQUENCERS))
def test_a_hand_edited_sequencer_item_never_blocks_a_notes_events(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seq: dict[str, Any] | None
) -> None:
    """The sequencer log's item of a note (``seq#<collection>#<path>``, in the lease table) holding a ``seq`` it never
    writes: the note's next event is applied and the item written over with its sequencer, after which the log
    orders events again (a replay is stale). No ``seq``, a number or a list was a `KeyError` failing every batch
    touching the note (to the dead-letter queue); text above every sequencer (`Z`, `FF`, lower case, `0X`) made every
    later event of the note `stale`, the note frozen at its old text until a full sync, for the item's life."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}a.md", note(1))
    assert indexer(aws.receive()) == []
    item: dict[str, Any] = {"pk": {"S": "seq#kb#a.md"}}
    if seq is not None:
        item["seq"] = seq
    boto3.client("dynamodb", region_name="us-east-1").put_item(TableName=TABLE, Item=item)
    aws.put(f"{PREFIX}a.md", note(1, first="edited by a later save"))
    records = aws.receive()
    assert indexer(records) == []
    assert "edited by a later save" in json.dumps(open_points(indexer.settings()))
    client = boto3.client("dynamodb", region_name="us-east-1")
    held = client.get_item(TableName=TABLE, Key={"pk": {"S": "seq#kb#a.md"}})["Item"]["seq"]["S"]
    sequencer = json.loads(records[0]["body"])["Records"][0]["s3"]["object"]["sequencer"]
    assert held == sequencer.rjust(64, "0")
    aws.put(f"{PREFIX}a.md", note(1, first="newer still"))
    newer = aws.receive()
    assert indexer(newer) == [] and indexer(records) == []  # the older event replayed after the newer: stale
    assert "newer still" in json.dumps(open_points(indexer.settings()))


# -- the local sequencer log (a JSON file beside the embedded store) edited by hand ---------------------------------

#: What the file can hold that it never writes (it writes ``{path: S3 sequencer}``), and how it was read.
BROKEN_SEQUENCER_FILES: dict[str, bytes] = {
    "not hex": json.dumps({"a.md": "Z" * 64}).encode(),
    "prose": json.dumps({"a.md": "later"}).encode(),
    "null": json.dumps({"a.md": None}).encode(),  # str(None): "NONE" sorted above every hex digit
    "a list": json.dumps({"a.md": ["01"]}).encode(),
    "an object": json.dumps({"a.md": {"seq": "01"}}).encode(),
    "longer than S3's": json.dumps({"a.md": "F" * 80}).encode(),
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "nested inside": b'{"a.md": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "truncated": b'{"a.md": "00',
    "not UTF-8": b'{"a.md": "\xff"}',
    "empty": b"",
    "a list at the top": b'["a.md"]',
}


def _indexer_with_a_local_sequencer_log(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Indexer, Path]:
    """The indexer handler without a lease table (its sequencers kept in the local log beside the embedded store),
    the note ``a.md`` applied by its first event; and that log's path."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    indexer.app = load_indexer(monkeypatch, {**indexer.env, "INDEX_LEASE_TABLE": ""})
    aws.receive()
    aws.put(f"{PREFIX}a.md", note(1))
    assert indexer(aws.receive()) == []
    return indexer, indexer.store / "kb.sequencers.json"


@pytest.mark.parametrize("raw", list(BROKEN_SEQUENCER_FILES.values()), ids=list(BROKEN_SEQUENCER_FILES))
def test_a_hand_edited_local_sequencer_file_never_blocks_a_notes_events(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: bytes
) -> None:
    """The embedded store's sequencer log (``<QDRANT_PATH>/<collection>.sequencers.json``, used without a lease
    table: the indexer on a local store, `kbsearch serve --watch`) edited by hand, cut short or garbled: the note's
    next event is applied and its sequencer written, after which a replay of an older event is stale again. Text
    above every sequencer (`Z`, prose, `null` read as the text `None`, a list as its `repr`, more than 64 digits) froze
    every later event of the note as `stale` (the note kept its old text until a full sync); nesting past the JSON
    parser's recursion limit was a `RecursionError` failing every batch, for good."""
    indexer, log = _indexer_with_a_local_sequencer_log(aws, tmp_path, monkeypatch)
    assert json.loads(log.read_text(encoding="utf-8")).keys() == {"a.md"}  # the log is this file
    log.write_bytes(raw)
    aws.put(f"{PREFIX}a.md", note(1, first="edited by a later save"))
    records = aws.receive()
    assert indexer(records) == []
    assert "edited by a later save" in json.dumps(open_points(indexer.settings()))
    sequencer = json.loads(records[0]["body"])["Records"][0]["s3"]["object"]["sequencer"]
    assert json.loads(log.read_text(encoding="utf-8"))["a.md"][0] == sequencer  # [sequencer, claimed at]
    aws.put(f"{PREFIX}a.md", note(1, first="newer still"))
    newer = aws.receive()
    assert indexer(newer) == [] and indexer(records) == []  # the older event replayed after the newer: stale
    text = json.dumps(open_points(indexer.settings()))
    assert "newer still" in text and "edited by a later save" not in text


def test_a_local_sequencer_file_that_cannot_be_written_fails_no_batch(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local sequencer log replaced by a folder (it cannot be written): every batch touching a note failed back
    (`IsADirectoryError` out of the log's write, after the note was applied), to the dead-letter queue after its
    retries, for good. The log is only the replay guard (an event applies what the source holds now): the batch
    applies, and an older event replayed after a newer one applies the newer text the source holds."""
    indexer, log = _indexer_with_a_local_sequencer_log(aws, tmp_path, monkeypatch)
    log.unlink()
    log.mkdir()
    aws.put(f"{PREFIX}a.md", note(1, first="edited by a later save"))
    records = aws.receive()
    aws.put(f"{PREFIX}a.md", note(1, first="newer still"))
    newer = aws.receive()
    assert indexer(newer) == [] and indexer(records) == []  # the older one, replayed after: what S3 holds now
    text = json.dumps(open_points(indexer.settings()))
    assert "newer still" in text and "edited by a later save" not in text
    assert log.is_dir()


# -- round 16: hidden files and folders -----------------------------------------------------------------------------

#: keys a folder KB never lists (a name starting with '.': Obsidian's trash and settings, a dot-file), each a note
HIDDEN_KEYS = (".trash/Old plan.md", ".obsidian/plugins/tool/README.md", "pub/.draft.md", "pub/.cache/x.md")


def test_hidden_files_and_folders_are_never_notes_on_s3_as_in_a_folder(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Obsidian's `.trash/` (a vault set to "move to Obsidian trash" keeps its deleted notes there), its
    `.obsidian/` folder, a dot-file note: the folder listing, `--watch` and the access file's root listing never read
    a name starting with '.', but the S3 listing and S3's events did, so README's own upload (`aws s3 sync
    ./my-vault ... --exclude ".obsidian/*"`) put the trash in the index: deleted notes searchable, the same vault
    giving another index from a folder than from S3; and macOS's AppleDouble companion of the access file
    (`._access.yaml`, written beside it on a shared drive and uploaded with it) looked like a misnamed access file
    at the root: every sync and event batch stopped on it. Now S3 is read as a folder is: the events ignore such
    keys with their reason, a full sync lists none (and removes what an earlier version indexed there)."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}._access.yaml", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    aws.put(f"{PREFIX}pub/open.md", note(1, first="zebrafinch"))
    for i, key in enumerate(HIDDEN_KEYS):
        aws.put(f"{PREFIX}{key}", note(10 + i, first="zebrafinch", second="deleted"))
    records = aws.receive()
    assert indexer(records) == []
    indexed = {p["path"] for p in open_points(indexer.settings())}
    assert indexed == {"pub/open.md"}, indexed
    ignored = [item for item in read_batch(sqs_event(records), KeyScope(BUCKET, PREFIX)).ignored
               if item["key"].endswith(".md")]  # fmt: skip
    assert {item["key"] for item in ignored} == {f"{PREFIX}{key}" for key in HIDDEN_KEYS}, ignored
    assert all("hidden" in item["reason"] for item in ignored), ignored
    report = run_sync(indexer.settings(), Secrets(indexer.settings()))
    assert report.error is None and report.added == 0 and report.deleted == 0, report
    assert {p["path"] for p in open_points(indexer.settings())} == {"pub/open.md"}
    folder = tmp_path / "vault"
    for key in ("pub/open.md", *HIDDEN_KEYS):
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(note(1, first="zebrafinch"))
    settings = Settings(qdrant_path=str(tmp_path / "from-folder"))
    assert run_sync(settings, Secrets(settings), source_uri=str(folder)).error is None
    assert {p["path"] for p in open_points(settings)} == indexed  # the same notes from a folder as from S3


def test_hidden_notes_an_older_version_indexed_from_s3_are_removed_by_the_next_full_sync(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index built before round 16 from S3 holds the vault's `.trash/` (deleted notes). The next full sync lists
    none of them, but looked each up once more before deleting it (a note an event batch may have written after
    the listing): the key is there, so it was kept, "not deleted: written after this run listed the KB", at every
    sync, forever: the deleted notes stayed searchable (RELIABILITY round 16 says they go). A hidden key is never
    listed, whatever its age: the look-up cannot save it."""
    from kbsearch import sources

    indexer = Indexer(monkeypatch, tmp_path, None)
    for i in range(3):
        aws.put(f"{PREFIX}pub/open {i}.md", note(i, first="zebrafinch"))
    aws.put(f"{PREFIX}.trash/old plan.md", note(10, first="zebrafinch", second="deleted"))
    with monkeypatch.context() as old:
        old.setattr(sources, "hidden", lambda path: False)  # the S3 listing of a version before round 16
        assert run_sync(indexer.settings(), Secrets(indexer.settings())).error is None
    assert ".trash/old plan.md" in {p["path"] for p in open_points(indexer.settings())}
    report = run_sync(indexer.settings(), Secrets(indexer.settings()))
    assert report.error is None and report.deleted == 1, (report.deleted, report.warnings)
    assert {p["path"] for p in open_points(indexer.settings())} == {f"pub/open {i}.md" for i in range(3)}


def test_hidden_notes_an_older_version_indexed_from_s3_go_past_the_mass_delete_guard(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same upgrade with a trash that is most of the index: the guard kept every deletion (the deleted notes
    searchable, every later real deletion held with them, until an operator reran with --allow-mass-delete). A
    hidden path can never be a note again: it goes whatever the guard says."""
    from kbsearch import sources

    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.put(f"{PREFIX}pub/open.md", note(1, first="zebrafinch"))
    for i in range(3):
        aws.put(f"{PREFIX}.trash/old {i}.md", note(10 + i, first="zebrafinch", second="deleted"))
    with monkeypatch.context() as old:
        old.setattr(sources, "hidden", lambda path: False)  # the S3 listing of a version before round 16
        assert run_sync(indexer.settings(), Secrets(indexer.settings())).error is None
    report = run_sync(indexer.settings(), Secrets(indexer.settings()))
    assert report.error is None and report.deletion_blocked is None, report
    assert {p["path"] for p in open_points(indexer.settings())} == {"pub/open.md"}


# -- round 18: one note path, two keys (Unicode twins) --------------------------------------------------------------


def test_an_event_of_a_keys_unicode_twin_applies_the_note_a_full_sync_indexes(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`café.md` composed (Linux) and decomposed (a macOS upload) are two S3 keys of one note path; a full sync
    indexes the composed one and skips the other with its reason. The events of either key now apply what a full
    sync would: the decomposed twin's upload and its deletion (the duplicate cleaned up) leave the composed note as
    it is (its upload replaced it with the twin's text, and its deletion removed the note while the composed key
    still held it, until the next full sync); an edit of the composed key whose sequencer is below the twin's is
    applied (sequencers of different keys are not comparable: it was dropped as stale); and once the composed key
    is deleted, the twin is the note. After each step the index equals a clean full sync of the bucket."""
    import unicodedata
    from urllib.parse import quote_plus

    from tests.integration.test_events import clean_full_sync, points

    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    nfc = unicodedata.normalize("NFC", "ru/Кафе café.md")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd

    def titles() -> dict[str, str]:
        return {p["path"]: p["title"] for p in open_points(indexer.settings()) if p["chunk_index"] == 0}

    def send(key: str, name: str, sequencer: str) -> list[str]:
        body = _notification(quote_plus(PREFIX + key, safe="/"), name, sequencer)
        return indexer([sqs_record(body, aws.queue_arn)])

    def as_a_full_sync() -> None:
        assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)

    aws.put(PREFIX + nfc, note(1))
    aws.put(PREFIX + "other.md", note(9))
    aws.receive()
    assert send(nfc, "ObjectCreated:Put", "10") == [] and send("other.md", "ObjectCreated:Put", "10") == []
    assert titles() == {nfc: "Note 1", "other.md": "Note 9"}
    aws.put(PREFIX + nfd, note(2))  # the twin uploaded: the full sync keeps the composed key's note
    aws.receive()
    assert send(nfd, "ObjectCreated:Put", "30") == []
    assert titles()[nfc] == "Note 1"  # was 'Note 2'
    as_a_full_sync()
    aws.put(PREFIX + nfc, note(3))  # an edit of the composed key, its sequencer below the twin's
    aws.receive()
    assert send(nfc, "ObjectCreated:Put", "20") == []
    assert titles()[nfc] == "Note 3"  # was dropped as stale (the twin's sequencer logged for the path)
    as_a_full_sync()
    aws.delete(PREFIX + nfd)  # the duplicate cleaned up
    aws.receive()
    assert send(nfd, "ObjectRemoved:Delete", "40") == []
    assert titles() == {nfc: "Note 3", "other.md": "Note 9"}  # the note was deleted
    as_a_full_sync()
    aws.put(PREFIX + nfd, note(4))
    aws.delete(PREFIX + nfc)  # now the twin is the only key of the path: it is the note
    aws.receive()
    assert send(nfc, "ObjectRemoved:Delete", "50") == []
    assert titles() == {nfc: "Note 4", "other.md": "Note 9"}
    as_a_full_sync()
    aws.delete(PREFIX + nfd)
    aws.receive()
    assert send(nfd, "ObjectRemoved:Delete", "60") == []
    assert titles() == {"other.md": "Note 9"}


def test_a_watched_folders_unicode_twin_files_are_applied_as_a_full_sync_indexes_them(tmp_path: Path) -> None:
    """The same twins in a folder (`kbsearch serve --watch` hands the saved files' names to the same event run): a
    save and a deletion of the decomposed file leave the composed note indexed, as a full sync has it; with the
    composed file gone, the decomposed one is the note."""
    import unicodedata

    from kbsearch.events import Change
    from kbsearch.indexer import ChangeSync, SyncOptions
    from kbsearch.qdrant import open_store
    from kbsearch.sources import LocalSource

    kb = tmp_path / "kb"
    kb.mkdir()
    nfc = unicodedata.normalize("NFC", "Кафе café.md")
    nfd = unicodedata.normalize("NFD", nfc)
    (kb / nfc).write_bytes(note(1))
    settings = Settings(qdrant_path=str(tmp_path / "q"))

    def save(name: str, body: bytes | None) -> dict[str, str]:
        if body is None:
            (kb / name).unlink()
        else:
            (kb / name).write_bytes(body)
        store = open_store(settings, Secrets(settings))
        try:
            ChangeSync(LocalSource(kb), store, None, SyncOptions()).apply([Change(path=nfc, key=name, removed=False)])
            return {p["path"]: p["title"] for p in store.points().values() if p["chunk_index"] == 0}
        finally:
            store.close()

    assert save(nfc, note(1)) == {nfc: "Note 1"}
    assert save(nfd, note(2)) == {nfc: "Note 1"}  # was 'Note 2'
    assert save(nfd, None) == {nfc: "Note 1"}  # was {}
    (kb / nfd).write_bytes(note(4))
    assert save(nfc, None) == {nfc: "Note 4"}
    assert save(nfd, None) == {}


def test_a_note_in_one_of_two_twin_folders_is_applied_as_a_full_sync_indexes_it(tmp_path: Path) -> None:
    """A folder whose name has two Unicode forms on disk (`é/` composed, from Linux, and decomposed, from a macOS
    sync), each holding other notes: the listing gives `é/x.md` from the decomposed folder, the only file that
    spells that path, and a full sync indexes it; its save (the event of its own name) is applied as that full sync
    has it, and a read by its path finds it. The lookup by path took the preferred folder (the composed one), found
    no `x.md` there and answered `no note at`: the full sync skipped the note it listed, the event deleted it, a
    read by path was a 404."""
    import unicodedata

    from kbsearch.events import Change
    from kbsearch.indexer import ChangeSync, SyncOptions
    from kbsearch.indexer import Indexer as FullSync
    from kbsearch.qdrant import open_store
    from kbsearch.sources import LocalSource

    kb = tmp_path / "kb"
    nfc = unicodedata.normalize("NFC", "é")
    nfd = unicodedata.normalize("NFD", nfc)
    (kb / nfd).mkdir(parents=True)
    (kb / nfc).mkdir()
    (kb / nfd / "x.md").write_bytes(note(1))
    (kb / nfc / "y.md").write_bytes(note(2))
    settings = Settings(qdrant_path=str(tmp_path / "q"))

    def titles(store: Any) -> dict[str, str]:
        return {p["path"]: p["title"] for p in store.points().values() if p["chunk_index"] == 0}

    store = open_store(settings, Secrets(settings))
    try:
        FullSync(LocalSource(kb), store, None).sync()
        synced = titles(store)
        assert synced == {f"{nfc}/x.md": "Note 1", f"{nfc}/y.md": "Note 2"}  # was skipped: 'no note at'
        (kb / nfd / "x.md").write_bytes(note(3))
        ChangeSync(LocalSource(kb), store, None, SyncOptions()).apply(
            [Change(path=f"{nfc}/x.md", key=f"{nfd}/x.md", removed=False)]
        )
        assert titles(store) == {f"{nfc}/x.md": "Note 3", f"{nfc}/y.md": "Note 2"}  # was deleted
    finally:
        store.close()
    assert LocalSource(kb).read_path(f"{nfc}/x.md") == note(3)  # was 'no note at'
