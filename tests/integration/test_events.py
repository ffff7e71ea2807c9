"""Event-driven indexing through the real indexer handler: S3 notifications that moto's bucket sends to moto's
SQS queue (and EventBridge bodies in AWS's shape), handed to ``functions/indexer/app.py`` as the Lambda SQS event.
Every class of event: ordinary, duplicate, reordered, poison, outside the prefix, lease held, provider down
mid-batch; and the result is always the point set of a clean full sync."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from moto import mock_aws

from kbsearch.access import Scope
from kbsearch.config import Secrets, Settings
from kbsearch.events import Scope as KeyScope
from kbsearch.events import newer, read_batch, sequencer_key
from kbsearch.indexer import run_sync
from kbsearch.lease import Lease
from kbsearch.links import KeyFilter
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import LINK_NAMES, REACH, REACH_GROUPS, RESTRICTED_LINKS
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch_tools.fakes import FakeProvider, provider_env
from kbsearch_tools.local.apigw import HttpRequest, build_event, parse_result
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.s3events import EventPath, eventbridge_body, sqs_event, sqs_record
from tests.conftest import ROOT, subprocess_env

BUCKET = "kb-notes"
PREFIX = "kb/"
TABLE = "kb-search-test-lease"

NOTE = """---
id: {id}
title: {title}
tags: [ops]
---
# {title}

Intro of {title}.

## First

First section of {title}: {first}.

## Second

Second section of {title}: {second}.
"""


def note(i: int, first: str = "alpha", second: str = "beta") -> bytes:
    return NOTE.format(id=f"n{i}", title=f"Note {i}", first=first, second=second).encode()


@pytest.fixture
def aws() -> Iterator[EventPath]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield EventPath(BUCKET, PREFIX).create()


def load_indexer(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Any:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(ROOT / "functions" / "indexer"))
    spec = importlib.util.spec_from_file_location(f"indexer_app_{uuid.uuid4().hex}", ROOT / "functions/indexer/app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Indexer:
    """The handler, as the SQS event source mapping calls it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeProvider | None) -> None:
        self.store = tmp_path / "events-store"
        self.env = {
            "KB_SOURCE": f"s3://{BUCKET}/{PREFIX}", "QDRANT_PATH": str(self.store), "INDEX_LEASE_TABLE": TABLE,
            "EMBEDDING_DIMENSIONS": "64", "PROVIDER_RETRIES": "0", "BREAKER_THRESHOLD": "100",
            "EMBEDDING_BATCH_SIZE": "2", "EMBEDDING_CONCURRENCY": "1",
        } | (provider_env(fake, roles=("EMBEDDING",)) if fake else {})  # fmt: skip
        self.app = load_indexer(monkeypatch, self.env)

    def __call__(self, records: list[dict[str, Any]]) -> list[str]:
        result = self.app.lambda_handler(sqs_event(records), LambdaContext("kb-search-test-indexer", 2048, 900))
        assert set(result) == {"batchItemFailures"}
        return [item["itemIdentifier"] for item in result["batchItemFailures"]]

    def settings(self, **extra: str) -> Settings:
        values = {k.lower(): v for k, v in self.env.items()} | {"index_lease_table": ""} | extra
        return Settings(**values)


def points(settings: Settings) -> dict[str, str]:
    """point id → hash of its payload (without the indexing time) and dense vector. A chunk's ``reach`` is checked
    here rather than hashed: a public chunk's holds the groups the collection recorded so far (full syncs record
    them and never take them back, so a store's history adds some), a restricted chunk's is its groups exactly."""
    store = open_store(settings, Secrets(settings))
    try:
        raw, recorded = store.points(), set(store.metadata().get(REACH_GROUPS) or ())
    finally:
        store.close()
    out = {}
    for pid, payload in raw.items():
        payload.pop("indexed_at", None)
        payload.pop("links_at", None)  # the link targets' generation: the store's history
        reach, groups = payload.pop(REACH, None), payload.get("access")
        if isinstance(groups, list):
            if "public" in groups:
                assert {"public", *recorded} <= set(reach or ()), (payload["path"], reach, recorded)
            else:
                assert reach == sorted(groups), (payload["path"], reach, groups)
        out[pid] = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return out


def clean_full_sync(indexer: Indexer, tmp_path: Path) -> dict[str, str]:
    """The point set a clean full sync of the bucket builds."""
    settings = indexer.settings(qdrant_path=str(tmp_path / f"clean-{uuid.uuid4().hex[:6]}"))
    report = run_sync(settings, Secrets(settings))
    assert report.error is None
    return points(settings)


@pytest.fixture
def s3_calls() -> Iterator[list[str]]:
    """Every S3 operation made through boto3's default session (botocore's event hooks), as the handler makes them."""
    calls: list[str] = []
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register(
        "before-call.s3",
        lambda model, params, **_: calls.append(
            model.name + ("/" if (params.get("query_string") or {}).get("delimiter") == "/" else "")
        ),
    )  # a listing of the root alone (Delimiter "/") as "ListObjectsV2/"
    yield calls
    boto3.setup_default_session()  # a fresh session: the hook goes with the old one


def test_events_index_exactly_their_keys_and_converge_to_a_full_sync(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deepinfra: FakeProvider, s3_calls: list[str]
) -> None:
    indexer = Indexer(monkeypatch, tmp_path, deepinfra)
    assert indexer(aws.receive()) == []  # the s3:TestEvent of the configuration: nothing to do
    for i in range(6):
        aws.put(f"{PREFIX}notes/n{i}.md", note(i))
    aws.put(f"{PREFIX}ru/с пробелом и+плюсом.md", note(9))  # a key S3 URL-encodes (spaces as '+')
    assert indexer(aws.receive()) == []
    assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)
    # change one section of one note: only that chunk is embedded again
    before = len(deepinfra.calls("embeddings"))
    aws.put(f"{PREFIX}notes/n1.md", note(1, second="gamma changed"))
    aws.delete(f"{PREFIX}notes/n2.md")
    records = aws.receive()
    s3_calls.clear()
    assert indexer(records) == []
    # the root's names (one listing of the root alone: no access file under another name), the access file (one
    # GET by key: none here), the two keys, one HEAD for an access file in the indexed note's folder (notes/: none
    # here); never a listing of the notes
    calls = ["GetObject", "GetObject", "HeadObject", "HeadObject", "HeadObject", "ListObjectsV2/"]
    assert sorted(s3_calls) == calls
    inputs = [i for call in deepinfra.calls("embeddings")[before:] for i in call.body["input"]]
    assert len(inputs) == 1 and "gamma changed" in inputs[0]
    assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)
    # a replay of the same messages is a no-op: nothing read or embedded
    before = len(deepinfra.calls("embeddings"))
    s3_calls.clear()
    assert indexer(records) == []
    assert len(deepinfra.calls("embeddings")) == before and s3_calls == []
    assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)


def test_an_event_gives_a_note_the_groups_a_full_sync_would(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Access scopes on the event path: the folder rules of the access file (read by key, never listed) and a
    frontmatter declaration apply to a note an event brings in exactly as a full sync applies them; an unusable
    access file fails the batch back to the queue rather than indexing the note public."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}_access.yaml", b"hr/: [hr]\nsecurity/incidents/: [security, oncall]\n")
    aws.put(f"{PREFIX}hr/pay.md", note(1))
    aws.put(f"{PREFIX}security/incidents/i1.md", note(2))
    aws.put(f"{PREFIX}security/open.md", note(3).replace(b"tags: [ops]", b"tags: [ops]\naccess: [finance]"))
    aws.put(f"{PREFIX}public.md", note(4))
    assert indexer(aws.receive()) == []
    assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)
    store = open_store(indexer.settings(), Secrets(indexer.settings()))
    try:
        groups = {p["path"]: sorted(p["access"]) for p in store.points().values()}
    finally:
        store.close()
    assert groups == {"hr/pay.md": ["hr"], "security/incidents/i1.md": ["oncall", "security"],
                      "security/open.md": ["finance"], "public.md": ["public"]}  # fmt: skip
    aws.put(f"{PREFIX}_access.yaml", b"hr/: hr: [\n")
    aws.put(f"{PREFIX}hr/pay.md", note(1, first="changed"))
    records = aws.receive()
    failed = indexer(records)
    assert failed and set(failed) <= {r["messageId"] for r in records}
    store = open_store(indexer.settings(), Secrets(indexer.settings()))
    try:
        assert all(sorted(p["access"]) == ["hr"] for p in store.points().values() if p["path"] == "hr/pay.md")
    finally:
        store.close()


def doc(title: str, body: str, front: str = "") -> bytes:
    return (f"---\n{front}---\n" if front else "").encode() + f"# {title}\n{body}\n".encode()


def hits_as(settings: Settings, scope: Scope, query: str = "welcome") -> dict[str, list[str]]:
    """What a caller with ``scope`` finds (a fresh search service, as a new container): path → the hit's links."""
    service = SearchService(settings, Secrets(settings), wire_providers=False)
    try:
        return {h.path: h.links for h in service.search(SearchRequest(query=query, top_k=20), scope=scope).results}
    finally:
        service.close()


CALLERS = {"api_keys": {"id-hr": ["hr"], "id-fin": ["finance"], "id-staff": ["staff"]}}


def api_hits(load_search_app: Any, settings: Settings, key_id: str | None) -> dict[str, list[str]]:
    """``POST /search`` through the search handler as API Gateway calls it, by the caller's key id (None: no key):
    path → the hit's links. A new container each time (closed after: the indexer opens the store next)."""
    app = load_search_app(QDRANT_PATH=settings.qdrant_path, ACCESS_GROUPS=json.dumps(CALLERS))
    try:
        body = json.dumps({"query": "welcome", "top_k": 20}).encode()
        request = HttpRequest("POST", "/search", "", [("Content-Type", "application/json")], body)
        event = build_event(request, "/search", {}, "dev", api_key=None)
        event["requestContext"]["identity"]["apiKeyId"] = key_id
        answer = parse_result(app(event))
        assert answer.status == 200, answer.body
        return {hit["path"]: hit["links"] for hit in json.loads(answer.body)["results"]}
    finally:
        app.module.api.container.close()


def restricted_list(settings: Settings) -> Any:
    store = open_store(settings, Secrets(settings))
    try:
        return store.metadata().get(RESTRICTED_LINKS)
    finally:
        store.close()


def assert_as_a_full_sync(indexer: Indexer, tmp_path: Path) -> None:
    """The points and the restricted link targets are what a clean full sync of the bucket builds, and the public
    notes' keys recorded hold every key the clean sync's do (a key of a note gone may stay until a full sync)."""
    clean = indexer.settings(qdrant_path=str(tmp_path / f"clean-{uuid.uuid4().hex[:6]}"))
    assert run_sync(clean, Secrets(clean)).error is None
    assert points(indexer.settings()) == points(clean)
    assert restricted_list(indexer.settings()) == restricted_list(clean)
    kept, built = link_names(indexer.settings()), link_names(clean)
    assert kept is not None and built is not None and kept.size == built.size
    assert all(k & b == b for k, b in zip(kept.bits, built.bits, strict=True))


def link_names(settings: Settings) -> KeyFilter | None:
    """The public notes' link keys as recorded in the collection's metadata."""
    store = open_store(settings, Secrets(settings))
    try:
        return KeyFilter.from_json(store.metadata().get(LINK_NAMES))
    finally:
        store.close()


def synced(indexer: Indexer, aws: EventPath, notes: dict[str, bytes]) -> Settings:
    """Puts ``notes`` (paths under the KB prefix, in order; ``_access.yaml`` among them), applies their events as one
    batch and runs the hourly reconcile once; the settings the index was built with."""
    for path, body in notes.items():
        aws.put(PREFIX + path, body)
    assert indexer(aws.receive()) == []
    settings = indexer.settings()
    assert run_sync(settings, Secrets(settings)).error is None
    return settings


def test_an_access_file_event_applies_to_every_note_at_once(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deepinfra: FakeProvider, load_search_app: Any
) -> None:
    """An event of the access file (created, changed, deleted) gives every indexed note its groups in the same
    run, by payload update (no embedding call), and records the restricted link targets: a folder newly restricted
    is invisible to a public caller on the next search, links into it are hidden; relaxed, it is visible again. An
    unusable access file fails the batch back to the queue and changes nothing."""
    indexer = Indexer(monkeypatch, tmp_path, deepinfra)
    aws.receive()
    notes = {
        "pub/welcome.md": doc("Welcome", "welcome handbook: read [[pay]] and [[Review|the review page]]"),
        "hr/pay.md": doc("Pay", "welcome pay bands"),
        "HR/Sub/review.md": doc("Review", "welcome review cycle"),  # the rule matches in any case, any depth
        "ops/runbook.md": doc("Runbook", "welcome runbook", "access: [oncall]\n"),  # the note's own word stands
    }
    settings = synced(indexer, aws, notes)  # the hourly reconcile, once, before the change
    everyone = {"pub/welcome.md", "hr/pay.md", "HR/Sub/review.md"}
    assert set(api_hits(load_search_app, settings, None)) == everyone

    def apply_without_embedding(records: list[dict[str, Any]]) -> list[str]:
        before = len(deepinfra.calls("embeddings"))
        failed = indexer(records)
        assert len(deepinfra.calls("embeddings")) == before  # a payload update: nothing embedded
        return failed

    aws.put(f"{PREFIX}_access.yaml", b"hr/: [hr]\n")  # hr/ restricted: one event, no reconcile
    assert apply_without_embedding(aws.receive()) == []
    assert api_hits(load_search_app, settings, None) == {"pub/welcome.md": []}  # nor the links into hr/
    as_hr = api_hits(load_search_app, settings, "id-hr")
    assert set(as_hr) == everyone and as_hr["pub/welcome.md"] == ["pay", "Review"]
    assert_as_a_full_sync(indexer, tmp_path)

    aws.put(f"{PREFIX}_access.yaml", b"hr/: [hr, finance]\nops/: [staff]\n")  # changed: widened to finance
    assert apply_without_embedding(aws.receive()) == []
    assert set(api_hits(load_search_app, settings, "id-fin")) == everyone
    assert set(api_hits(load_search_app, settings, "id-staff")) == {"pub/welcome.md"}  # frontmatter wins over ops/
    assert_as_a_full_sync(indexer, tmp_path)

    for bad in (b"hr/: [\n", b"hr/: []\n", b"- hr\n", b"hr/: &a [x]\nops/: *a\n", b"../x/: [a]\n"):
        before = points(settings)
        aws.put(f"{PREFIX}_access.yaml", bad)
        aws.put(f"{PREFIX}pub/new.md", doc("New", "welcome new"))  # a note in the same batch waits too
        records = aws.receive()
        assert sorted(apply_without_embedding(records)) == sorted(r["messageId"] for r in records)  # all retried
        assert points(settings) == before
        assert api_hits(load_search_app, settings, None) == {"pub/welcome.md": []}  # nothing opened up
        aws.delete(f"{PREFIX}pub/new.md")
        aws.receive()

    aws.delete(f"{PREFIX}_access.yaml")  # deleted: every folder rule gone, hr/ public again
    assert apply_without_embedding(aws.receive()) == []
    relaxed = api_hits(load_search_app, settings, None)
    assert set(relaxed) == everyone and relaxed["pub/welcome.md"] == ["pay", "Review"]
    assert_as_a_full_sync(indexer, tmp_path)


def test_note_events_keep_the_restricted_link_targets_current(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that changes a note's groups (new, edited, moved, deleted) records the restricted link targets in
    the same run: a link into a note just restricted is hidden from a caller who may not read it."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    settings = synced(indexer, aws, {"_access.yaml": b"hr/: [hr]\n",
                                     "pub/welcome.md": doc("Welcome", "welcome: see [[Plan]] and [[pay]]"),
                                     "hr/pay.md": doc("Pay", "pay bands")})  # fmt: skip
    # no note Plan yet: hidden from a caller from whom [[pay]] is hidden, as a link to a restricted note is
    assert hits_as(settings, Scope.public()) == {"pub/welcome.md": []}
    assert hits_as(settings, Scope.of("k", ["hr"]))["pub/welcome.md"] == ["Plan", "pay"]  # hidden nothing

    aws.put(f"{PREFIX}pub/plan.md", doc("Plan", "the plan", "access: [finance]\n"))  # new, restricted
    assert indexer(aws.receive()) == []
    assert hits_as(settings, Scope.public()) == {"pub/welcome.md": []}
    assert hits_as(settings, Scope.of("k", ["finance"]))["pub/welcome.md"] == ["Plan"]
    assert_as_a_full_sync(indexer, tmp_path)

    aws.put(f"{PREFIX}pub/plan.md", doc("Plan", "the plan"))  # edited: public now
    assert indexer(aws.receive()) == []
    assert hits_as(settings, Scope.public()) == {"pub/welcome.md": ["Plan"]}  # the batch recorded its name
    assert_as_a_full_sync(indexer, tmp_path)

    aws.delete(f"{PREFIX}pub/plan.md")  # moved into hr/ (delete + create): restricted by the folder rule
    aws.put(f"{PREFIX}hr/Plan.md", doc("Plan", "the plan"))
    assert indexer(aws.receive()) == []
    assert hits_as(settings, Scope.public()) == {"pub/welcome.md": []}
    assert hits_as(settings, Scope.of("k", ["hr"]))["pub/welcome.md"] == ["Plan", "pay"]
    assert_as_a_full_sync(indexer, tmp_path)

    aws.put(f"{PREFIX}pub/Plan.md", doc("Plan", "another plan"))  # a public note of the same name: shown
    assert indexer(aws.receive()) == []
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == ["Plan"]
    assert_as_a_full_sync(indexer, tmp_path)


def test_batches_applied_at_once_take_turns_on_the_link_list(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restricted link targets are one metadata value that batches applied at once would each rewrite from
    the same read: a rewrite takes a short lease in the lease table (``links#<collection>``), so a batch waits for
    the other's turn instead of dropping its entries; a holder that never lets go fails the batch back to the
    queue, and the retry repairs the list although its note was already written."""
    import threading

    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    settings = synced(indexer, aws, {"pub/welcome.md": doc("Welcome", "welcome: see [[Plan]]")})
    other = Lease(TABLE, "links#kb", ttl_s=60, owner="another batch")
    other.acquire()
    release = threading.Timer(1.0, other.release)
    release.start()
    aws.put(f"{PREFIX}pub/plan.md", doc("Plan", "the plan", "access: [finance]\n"))
    assert indexer(aws.receive()) == []  # waited for the other's turn, then wrote
    release.join()
    assert hits_as(settings, Scope.public()) == {"pub/welcome.md": []}

    stuck = Lease(TABLE, "links#kb", ttl_s=60, owner="a batch that hangs")
    stuck.acquire()
    aws.put(f"{PREFIX}pub/plan.md", doc("Plan", "the plan"))  # public again
    records = aws.receive()
    assert sorted(indexer(records)) == sorted(r["messageId"] for r in records)  # no turn: retried
    assert hits_as(settings, Scope.public()) == {"pub/welcome.md": []}  # (the list not yet rewritten)
    stuck.release()
    assert indexer(records) == []  # SQS delivers them again
    assert hits_as(settings, Scope.public()) == {"pub/welcome.md": ["Plan"]}
    assert_as_a_full_sync(indexer, tmp_path)


def test_the_handler_emits_index_lag_for_the_lag_alarm(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "KbSearch")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "kb-search")  # the template's Globals, which the indexer keeps
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}a.md", note(1))
    aws.put(f"{PREFIX}b.md", note(2))
    capsys.readouterr()
    assert indexer(aws.receive()) == []
    lags = []
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' in line:
            record = json.loads(line)
            (directive,) = record["_aws"]["CloudWatchMetrics"]
            assert directive["Namespace"] == "KbSearch" and record["service"] == "kb-search"
            if "IndexLagSeconds" in record:
                lags = record["IndexLagSeconds"]
    assert len(lags) == 2 and all(0 <= lag < 60 for lag in lags)


def test_late_created_never_resurrects_a_deleted_note_and_reorders_converge(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}a.md", note(1))
    aws.put(f"{PREFIX}a.md", note(1, first="second version"))
    aws.delete(f"{PREFIX}a.md")
    created_1, created_2, removed = aws.receive()
    assert indexer([removed]) == []  # the delete arrives first
    assert indexer([created_2, created_1]) == []  # then the older creates, reversed
    assert points(indexer.settings()) == {}
    # the same key comes back: its new event is later than every one applied
    aws.put(f"{PREFIX}a.md", note(1, first="third"))
    (created_3,) = aws.receive()
    assert indexer([created_1, created_3, removed, created_2]) == []
    assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)
    texts = " ".join(p["text"] for p in open_points(indexer.settings()))
    assert "third" in texts and "second version" not in texts


def open_points(settings: Settings) -> list[dict[str, Any]]:
    store = open_store(settings, Secrets(settings))
    try:
        return list(store.points().values())
    finally:
        store.close()


def test_poison_and_ignored_keys_never_block_the_rest_of_the_batch(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}good.md", note(1))
    (good,) = aws.receive()
    arn = aws.queue_arn
    poison = [
        sqs_record("not json {", arn), sqs_record("[1, 2]", arn), sqs_record('{"Records": "nope"}', arn),
        sqs_record(json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}), arn),
        sqs_record(json.dumps({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}), arn),
        sqs_record(json.dumps({"hello": "world"}), arn),
    ]  # fmt: skip

    def s3_body(key: str, bucket: str = BUCKET) -> str:
        record = json.loads(good["body"])["Records"][0]
        record["s3"]["object"]["key"] = key
        record["s3"]["bucket"]["name"] = bucket
        return json.dumps({"Records": [record]})

    ignored = [
        sqs_record(s3_body("elsewhere/x.md"), arn), sqs_record(s3_body(f"{PREFIX}image.png"), arn),
        sqs_record(s3_body(f"{PREFIX}folder/"), arn), sqs_record(s3_body(f"{PREFIX}x.md", "other-bucket"), arn),
        sqs_record(s3_body(f"{PREFIX}..%2Fescape.md"), arn),
        sqs_record(eventbridge_body(BUCKET, "outside/y.md", False, "01", "2026-12-03T09:00:00Z"), arn),
        # only the KB root's access file is one: not a folder's, another spelling, or outside the prefix
        sqs_record(s3_body(f"{PREFIX}hr/_access.yaml"), arn), sqs_record(s3_body(f"{PREFIX}_ACCESS.yaml"), arn),
        sqs_record(s3_body("_access.yaml"), arn),
    ]  # fmt: skip
    batch = [*poison[:3], good, *ignored, *poison[3:]]
    random.Random(7).shuffle(batch)
    failures = indexer(batch)
    assert sorted(failures) == sorted(r["messageId"] for r in poison)  # retried, then dead-lettered
    assert {p["path"] for p in open_points(indexer.settings())} == {"good.md"}
    reasons = read_batch(sqs_event(ignored), KeyScope(BUCKET, PREFIX)).ignored
    assert [r["reason"].split(" ")[0] for r in reasons] == [
        "outside", "not", "a", "bucket", "not", "outside", "not", "not", "outside"
    ]  # fmt: skip
    root = read_batch(sqs_event([sqs_record(s3_body(f"{PREFIX}_access.yaml"), arn)]), KeyScope(BUCKET, PREFIX))
    assert [(c.path, c.key) for c in root.changes] == [("_access.yaml", f"{PREFIX}_access.yaml")]
    assert not root.ignored and not root.poison


DEEP = "[" * 5000 + "]" * 5000  # past the JSON parser's recursion limit, far within SQS's 256 KiB
UNREADABLE_BODIES = {
    "deep arrays": DEEP, "deep objects": '{"a": ' * 3000 + "1" + "}" * 3000, "deep in Records": f'{{"Records": {DEEP}}}',
    "deep in a record": f'{{"Records": [{{"eventName": "ObjectCreated:Put", "s3": {DEEP}}}]}}',
    "deep EventBridge detail": f'{{"source": "aws.s3", "detail-type": "Object Created", "detail": {DEEP}}}',
    "a record that is null": '{"Records": [null]}', "eventName a number": '{"Records": [{"eventName": 5, "s3": {}}]}',
    "key a number": '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": 5}}}]}',
}  # fmt: skip


@pytest.mark.parametrize("body", UNREADABLE_BODIES.values(), ids=UNREADABLE_BODIES.keys())
def test_an_unreadable_message_fails_alone_whatever_its_nesting(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    """A message body nested past the JSON parser's recursion limit (anywhere in it), or with a field of the wrong
    type: that message alone is a batch item failure; the note in the same batch is applied (nesting was a
    RecursionError that failed the whole batch, every message counting towards the dead-letter queue)."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}good.md", note(1))
    (good,) = aws.receive()
    bad = sqs_record(body, aws.queue_arn)
    assert indexer([bad, good]) == [bad["messageId"]]
    assert {p["path"] for p in open_points(indexer.settings())} == {"good.md"}


SURROGATE_KEYS = {
    "EventBridge": lambda arn: sqs_record(eventbridge_body(BUCKET, f"{PREFIX}x\ud800.md", False, "0A", "2026-12-03T09:00:00Z"), arn),
    "notification": lambda arn: sqs_record(json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": BUCKET}, "object": {"key": f"{PREFIX}\udfff\ud800.md", "sequencer": "0B"}}}]}), arn),
    "event name": lambda arn: sqs_record(json.dumps({"Records": [{"eventName": "Object\ud800", "s3": {
        "bucket": {"name": BUCKET}, "object": {"key": f"{PREFIX}y\udc00.md"}}}]}), arn),
    "bucket": lambda arn: sqs_record(json.dumps({"Records": [{"eventName": "ObjectRemoved:Delete", "s3": {
        "bucket": {"name": "b\ud800"}, "object": {"key": f"{PREFIX}z.md"}}}]}), arn),
}  # fmt: skip


@pytest.mark.parametrize("make", SURROGATE_KEYS.values(), ids=SURROGATE_KEYS.keys())
def test_keys_with_lone_surrogates_are_ignored_and_logged(tmp_path: Path, make: Any) -> None:
    """An event whose key (or event name, or bucket) holds a lone surrogate (a ``\\ud800`` escape in the
    message's JSON): ignored with its reason, and the log line that says so is written, the surrogates as
    ``\\ud800`` text. The handler runs in a fresh interpreter whose stdout is strict UTF-8, as Lambda's is: no
    UTF-8 stream takes a lone surrogate, so the line was lost with a "Logging error" traceback."""
    event = tmp_path / "event.json"
    event.write_text(json.dumps(sqs_event([make("arn:aws:sqs:us-east-1:123456789012:q")])), encoding="ascii")
    code = f"""
import json, os
from kbsearch_tools.local.template import Template
from kbsearch_tools.local.runtime import LocalFunction, function_environment
t = Template({str(ROOT / "template.yaml")!r})
spec = t.function("IndexerFunction")
fn = LocalFunction(spec, t.region, function_environment(spec, t.region, os.environ))
result = fn.invoke(json.load(open({str(event)!r})))
print("RESULT", json.dumps(result))
"""
    env = subprocess_env(KB_SOURCE=f"s3://{BUCKET}/{PREFIX}", QDRANT_PATH=str(tmp_path / "q"),
                         AWS_DEFAULT_REGION="us-east-1", PYTHONIOENCODING="utf-8:strict")  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, cwd=ROOT, env=env, timeout=120, check=False
    )
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0 and 'RESULT {"batchItemFailures": []}' in out, err[-2000:]
    assert "Logging error" not in err and "Traceback" not in err, err[-2000:]
    ignored = [line for line in out.splitlines() if "event ignored" in line]
    assert len(ignored) == 1 and "\\\\ud" in ignored[0], out[-2000:]  # JSON writes the backslash as \\


def test_eventbridge_bodies_for_an_existing_bucket(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}eb note.md", Body=note(3))
    aws.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}gone.md", Body=note(4))
    aws.receive()  # the notifications are not used here: EventBridge delivers these
    arn = aws.queue_arn
    created = sqs_record(eventbridge_body(BUCKET, f"{PREFIX}eb note.md", False, "0A", "2026-12-03T09:00:00Z"), arn)
    gone = sqs_record(eventbridge_body(BUCKET, f"{PREFIX}gone.md", False, "0B", "2026-12-03T09:00:00Z"), arn)
    assert indexer([created, gone]) == []
    assert {p["path"] for p in open_points(indexer.settings())} == {"eb note.md", "gone.md"}
    aws.s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}gone.md")
    deleted = sqs_record(eventbridge_body(BUCKET, f"{PREFIX}gone.md", True, "0C", "2026-12-03T09:01:00Z"), arn)
    assert indexer([deleted, gone]) == []
    assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)


def test_lease_held_by_a_full_sync_fails_the_batch_back_to_the_queue(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}a.md", note(1))
    aws.put(f"{PREFIX}b.md", note(2))
    records = aws.receive(delete=False)  # in flight, as while the function runs
    lease = Lease(TABLE, "index#kb", ttl_s=600, client=boto3.client("dynamodb", region_name="us-east-1"), owner="full")
    lease.acquire()
    indexer.app.LEASE_RETRY_S = 0  # the handler makes them visible again this soon (60 s when deployed)
    assert sorted(indexer(records)) == sorted(r["messageId"] for r in records)
    assert not indexer.store.exists()  # untouched
    again = aws.receive()  # visible again at once, not after the queue's visibility timeout
    assert sorted(r["messageId"] for r in again) == sorted(r["messageId"] for r in records)
    lease.release()
    assert indexer(again) == []  # SQS delivers them again: nothing was lost
    assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)


def test_provider_down_mid_batch_fails_only_the_notes_not_written(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deepinfra: FakeProvider
) -> None:
    indexer = Indexer(monkeypatch, tmp_path, deepinfra)
    aws.receive()
    for i in range(8):
        aws.put(f"{PREFIX}n{i}.md", note(i))
    records = aws.receive()
    deepinfra.fail("embeddings", status=503, after=5)  # the first window (3 notes, 5 calls) passes, then down
    failures = indexer(records)
    assert 0 < len(failures) < len(records)
    indexed = {p["path"] for p in open_points(indexer.settings())}
    by_id = {r["messageId"]: r for r in records}
    failed_keys = {json.loads(by_id[m]["body"])["Records"][0]["s3"]["object"]["key"] for m in failures}
    assert indexed and indexed.isdisjoint({k.replace("kb%2F", "").replace(PREFIX, "") for k in failed_keys})
    deepinfra.heal()
    assert indexer([by_id[m] for m in failures]) == []  # the retry completes the batch
    assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)


def test_a_full_sync_reports_changes_no_event_delivered(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}a.md", note(1))
    aws.put(f"{PREFIX}b.md", note(2))
    assert indexer(aws.receive()) == []
    aws.put(f"{PREFIX}c.md", note(3))
    aws.delete(f"{PREFIX}a.md")
    aws.receive()  # these events are lost
    settings = indexer.settings()
    report = run_sync(settings, Secrets(settings), full=False)
    assert (report.added, report.deleted) == (1, 1)
    assert report.missed_by_events == 1  # the delete; the new note is younger than the grace period
    late = Settings(**(settings.model_dump() | {"event_grace_s": 0}))
    aws.put(f"{PREFIX}d.md", note(4))
    aws.receive()
    assert run_sync(late, Secrets(late)).missed_by_events == 1


@pytest.mark.parametrize("seed", range(5))
def test_random_orders_with_duplicates_lose_nothing(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Random edits, deletes and re-creates of a few keys; their events duplicated, shuffled and split into random
    batches, some of which fail and come back later: the index always ends as the bucket is."""
    rng = random.Random(seed)
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    pending: list[dict[str, Any]] = []
    for step in range(40):
        key = f"{PREFIX}k{rng.randrange(5)}.md"
        if rng.random() < 0.3:
            aws.delete(key)
        else:
            aws.put(key, note(step, first=f"v{step}"))
        pending += aws.receive()
        if rng.random() < 0.3 and pending:
            batch = rng.sample(pending, k=rng.randint(1, len(pending)))
            batch += rng.choices(pending, k=rng.randint(0, 3))  # duplicates
            rng.shuffle(batch)
            indexer(batch)
            pending = [r for r in pending if r not in batch or rng.random() < 0.2]  # some delivered again later
    rng.shuffle(pending)
    assert not pending or indexer(pending + pending[: len(pending) // 2]) == []
    assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)


def test_sequencer_comparison() -> None:
    assert newer("0065F1A0B0C0D0E100", "0065F1A0B0C0D0E0FF")
    assert newer("10", "0F") and not newer("0F", "10")
    assert newer("100", "FF")  # a longer sequencer is later once padded
    assert not newer("", "01") and newer("01", "") and not newer("0A", "0a")
    assert sequencer_key("a1") == "A1".rjust(64, "0")


def _s3_fault(fault: str) -> Any:
    """A botocore hook (boto3's default session: the handler's client) failing the S3 call ``fault`` names as S3
    answers once botocore's retries are spent: the root listing throttled or denied, its second page failing,
    the access file's GET failing."""
    from botocore.exceptions import ClientError

    def hook(model: Any, params: dict[str, Any], **_: Any) -> None:
        query = params.get("query_string") or {}
        listing_root = model.name == "ListObjectsV2" and query.get("delimiter") == "/"
        code = {"throttled": "SlowDown", "denied": "AccessDenied", "second page": "InternalError"}.get(fault, "")
        if listing_root and code and (fault != "second page" or query.get("continuation-token")):
            raise ClientError({"Error": {"Code": code, "Message": f"{code} (injected)"}}, "ListObjectsV2")
        if fault == "access file unreadable" and model.name == "GetObject" and "_access.yaml" in params["url_path"]:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "GetObject")

    return hook


@pytest.mark.parametrize(
    "fault", ["mistaken name", "unusable", "throttled", "denied", "second page", "access file unreadable"]
)
def test_deletions_apply_while_the_access_rules_cannot_be_read(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An event run reads the access rules (the root's names, then ``_access.yaml``) before it indexes a note;
    when they cannot be read (a look-alike of the access file at the root, an unusable file, the root listing
    throttled, denied or failing on its second page, the file's GET failing) the notes it would index are retried
    with the error named, and nothing is indexed under rules not read. A deletion widens nothing: it is applied
    (it was held back with the rest, the deleted note searchable, until the rules could be read: a look-alike left
    at the root held every deletion for good), and a batch of deletions alone reads no rules at all."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    for i in range(3):
        aws.put(f"{PREFIX}n{i}.md", note(i))
    assert indexer(aws.receive()) == []
    if fault == "second page":  # a root of 1,001 files: two pages of ListObjectsV2
        for i in range(1001):
            aws.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}att{i:04}.png", Body=b"")
    if fault == "mistaken name":
        aws.put(f"{PREFIX}_access.yml", b"n1.md: [hr]\n")
    if fault == "unusable":
        aws.put(f"{PREFIX}_access.yaml", b"hr/: [hr\n")
    aws.receive()  # the access file's own event (of the unusable one) is another test's
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call.s3", _s3_fault(fault))
    try:
        aws.delete(f"{PREFIX}n0.md")
        aws.put(f"{PREFIX}n3.md", note(3))
        records = aws.receive()
        keys = {r["messageId"]: unquote(json.loads(r["body"])["Records"][0]["s3"]["object"]["key"]) for r in records}
        caplog.clear()
        failures = indexer(records)
        assert [keys[m] for m in failures] == [f"{PREFIX}n3.md"]  # the new note waits; the deletion applied
        assert {p["path"] for p in open_points(indexer.settings())} == {"n1.md", "n2.md"}
        report = next(vars(r) for r in caplog.records if r.getMessage() == "event batch applied")
        assert report["deleted"] == 1 and report["added"] == 0 and report["failed_paths"] == ["n3.md"]
        named = {
            "mistaken name": "'_access.yml' looks like",
            "unusable": "_access.yaml",
            "throttled": "SlowDown",
            "denied": "AccessDenied",
            "second page": "InternalError",
            "access file unreadable": "_access.yaml",
        }
        assert named[fault] in report["error"], report["error"]
        aws.delete(f"{PREFIX}n1.md")  # deletions alone: applied, no rules read
        assert indexer(aws.receive()) == []
        assert {p["path"] for p in open_points(indexer.settings())} == {"n2.md"}
    finally:
        boto3.setup_default_session()
    if fault == "mistaken name":
        aws.delete(f"{PREFIX}_access.yml")
    if fault == "unusable":
        aws.put(f"{PREFIX}_access.yaml", b"hr/: [hr]\n")
    aws.receive()
    assert indexer([r for r in records if keys[r["messageId"]] == f"{PREFIX}n3.md"]) == []  # the retry
    assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)


def test_a_slow_root_listing_stops_at_the_run_s_deadline(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The root is listed a page (1,000 keys) at a time as its names are read; when each page answers slowly (a
    flat root of 3,000 files, S3 slow to answer) the run stops asking at its deadline instead of listing on past
    it: the note waiting on the rules is retried with the cause named, the deletion is applied, and the last
    page is never asked for (the listing went on to it, whatever the time left)."""
    import time

    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    for i in range(2):
        aws.put(f"{PREFIX}n{i}.md", note(i))
    assert indexer(aws.receive()) == []
    for i in range(3001):
        aws.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}att{i:04}.png", Body=b"")
    pages: list[str] = []

    def slow(model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name == "ListObjectsV2" and (params.get("query_string") or {}).get("delimiter") == "/":
            pages.append(model.name)
            time.sleep(2.0)

    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call.s3", slow)
    try:
        aws.delete(f"{PREFIX}n0.md")
        aws.put(f"{PREFIX}n2.md", note(2))
        records = aws.receive()
        keys = {r["messageId"]: unquote(json.loads(r["body"])["Records"][0]["s3"]["object"]["key"]) for r in records}
        caplog.clear()
        # 8 s left: the run's deadline is 6 s away (a quarter kept back); each page takes 2 s. (A 4 s Lambda and 1 s
        # pages failed on a loaded machine: the handler's own start took the 3 s, so neither the deletion nor S3 was
        # reached before the run's end. Twice the times keep the same pages and twice the slack.)
        result = indexer.app.lambda_handler(sqs_event(records), LambdaContext("kb-search-test-indexer", 2048, 8))
    finally:
        boto3.setup_default_session()
    failures = [item["itemIdentifier"] for item in result["batchItemFailures"]]
    assert [keys[m] for m in failures] == [f"{PREFIX}n2.md"]  # the new note waits; the deletion applied
    assert len(pages) <= 3  # of the 4 pages the root holds
    report = next(vars(r) for r in caplog.records if r.getMessage() == "event batch applied")
    # stopped between pages at the run's deadline, or (adv34) a page cut at the calls' deadline (here, an 8 s
    # Lambda, 2 s in: before the run's deadline at 6 s), or (rev34c) S3 not asked once that deadline had passed
    assert ("listing the KB root ran past the run's deadline" in report["error"]
            or "S3 gave no whole answer by the run's end" in report["error"]
            or "the run's end came before S3 was asked" in report["error"]), report["error"]  # fmt: skip
    assert report["deleted"] == 1 and report["added"] == 0
    assert {p["path"] for p in open_points(indexer.settings())} == {"n1.md"}


@pytest.mark.parametrize("first", ["created", "removed"])
def test_a_note_moved_into_a_restricted_folder_over_two_batches_hides_its_links_after_each(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    """A move (delete + create) whose two events arrive in two batches, either first, with the schedule's reconcile
    run between them: after each batch and the sync, a public caller sees a link to the note only while a public
    note of that name is in the index; the late second event changes nothing the sync did not already apply; the
    end is a clean full sync's (adv36b)."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    settings = synced(indexer, aws, {"_access.yaml": b"hr/: [hr]\n",
                                     "pub/welcome.md": doc("Welcome", "welcome: see [[Plan]]"),
                                     "pub/plan.md": doc("Plan", "the plan")})  # fmt: skip
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == ["Plan"]

    aws.delete(f"{PREFIX}pub/plan.md")
    aws.put(f"{PREFIX}hr/Plan.md", doc("Plan", "the plan"))
    removed, created = aws.receive()
    one, other = (created, removed) if first == "created" else (removed, created)
    assert indexer([one]) == []
    # created first: the public note is still indexed, its link shown. Removed first: the public notes' keys
    # (a filter that only grows between full syncs) still hold the gone note's, and no restricted note is indexed
    # under the name yet: the link is shown as a link to a note that was public, which tells nothing of hr/
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == ["Plan"]
    assert "hr/Plan.md" not in hits_as(settings, Scope.public(), "plan")
    assert hits_as(settings, Scope.of("k", ["hr"]))["pub/welcome.md"] == ["Plan"]
    assert run_sync(settings, Secrets(settings)).error is None  # the hourly reconcile, between the two batches
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == []
    assert indexer([other]) == []  # the late second half
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == []
    assert hits_as(settings, Scope.of("k", ["hr"]))["pub/welcome.md"] == ["Plan"]
    assert "hr/Plan.md" not in hits_as(settings, Scope.public(), "plan")
    assert_as_a_full_sync(indexer, tmp_path)
