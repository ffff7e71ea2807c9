"""The index lease (kbsearch.lease) in DynamoDB via moto: one run at a time for the indexer handler and
``kbsearch index``; a second run leaves everything alone and says so."""

from __future__ import annotations

import importlib.util
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from kbsearch.lease import SKIPPED, Lease, LeaseError, LeaseHeld
from kbsearch_tools.cli import EXIT_LEASE_HELD, main
from kbsearch_tools.local.runtime import LambdaContext
from tests.conftest import ROOT
from tests.unit.test_template import LEASE_ACTIONS

TABLE = "kb-search-test-lease"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recording:
    """A real (moto) DynamoDB client that records which API operations it was asked for."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if callable(attr) and not name.startswith("_") and name != "exceptions":
            with self._lock:
                self.calls.append(name)
        return attr


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _item(client: Any, name: str = "index#kb") -> dict[str, Any] | None:
    item: dict[str, Any] | None = client.get_item(TableName=TABLE, Key={"pk": {"S": name}}).get("Item")
    return item


def test_second_run_sees_the_lease_and_leaves_it_alone(dynamodb: Any) -> None:
    clock = Clock()
    first = Lease(TABLE, "index#kb", ttl_s=60, client=dynamodb, clock=clock, owner="run-a")
    second = Lease(TABLE, "index#kb", ttl_s=60, client=dynamodb, clock=clock, owner="run-b")
    first.acquire()
    with pytest.raises(LeaseHeld) as held:
        second.acquire()
    assert held.value.holder == "run-a" and held.value.expires_at == int(clock.now + 60)
    assert str(held.value).startswith(f"{SKIPPED} (held by run-a until 2027-")
    assert _item(dynamodb)["owner"] == {"S": "run-a"}  # type: ignore[index]
    second.release()  # not the holder: nothing happens
    assert _item(dynamodb)["owner"] == {"S": "run-a"}  # type: ignore[index]
    other = Lease(TABLE, "index#other-collection", ttl_s=60, client=dynamodb, clock=clock, owner="run-b")
    other.acquire()  # another collection has its own lease


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_touch_it(dynamodb: Any) -> None:
    clock = Clock()
    first = Lease(TABLE, "index#kb", ttl_s=60, client=dynamodb, clock=clock, owner="run-a")
    second = Lease(TABLE, "index#kb", ttl_s=60, client=dynamodb, clock=clock, owner="run-b")
    first.acquire()
    clock.now += 30
    assert first.renew() and _item(dynamodb)["expires_at"] == {"N": str(int(clock.now + 60))}  # type: ignore[index]
    clock.now += 59
    with pytest.raises(LeaseHeld):
        second.acquire()  # renewed: still held
    clock.now += 2
    second.acquire()  # expired: taken over
    assert not first.renew() and first.lost
    first.release()
    assert _item(dynamodb)["owner"] == {"S": "run-b"}  # type: ignore[index]
    second.release()
    assert _item(dynamodb) is None


def test_a_holder_is_sure_of_its_lease_only_until_the_expiry_it_last_wrote(dynamodb: Any) -> None:
    """Round 23c: what a run checks before each note (``Lease.held``). By the clock the expiry is written and read
    by, not the monotonic clock alone, which stands still while a laptop running ``kbsearch index`` sleeps though
    the lease's expiry passes: another run may take it meanwhile."""
    clock = Clock()
    lease = Lease(TABLE, "index#kb", ttl_s=60, client=dynamodb, clock=clock, owner="run-a")
    assert not lease.held()  # not acquired
    lease.acquire()
    assert lease.held()
    clock.now += 59
    assert lease.held()
    assert lease.renew() and lease.held()
    clock.now += 61  # past the renewed expiry with no renewal since (a sleep): held asks DynamoDB (rev23)
    assert lease.held()  # nobody took it: renewed, sure again (throttled: test_rev23.py)
    assert lease.renew() and lease.held()
    Lease(TABLE, "index#kb", ttl_s=60, client=dynamodb, clock=lambda: clock.now + 120, owner="run-b").acquire()
    assert lease.held()  # until the next renewal tells...
    assert not lease.renew() and lease.lost and not lease.held()


def test_context_manager_renews_while_held_and_releases(dynamodb: Any) -> None:
    recording = Recording(dynamodb)
    with Lease(TABLE, "index#kb", ttl_s=0.3, client=recording, owner="run-a") as lease:
        assert _item(dynamodb)["owner"] == {"S": "run-a"}  # type: ignore[index]
        deadline = time.monotonic() + 30  # renewals every ttl/3 s; a loaded machine may be slow to schedule them
        while recording.calls.count("update_item") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert recording.calls.count("update_item") >= 2 and not lease.lost
    assert _item(dynamodb) is None
    operations = {
        "put_item": "dynamodb:PutItem",
        "update_item": "dynamodb:UpdateItem",
        "delete_item": "dynamodb:DeleteItem",
    }
    assert {operations[c] for c in recording.calls} <= LEASE_ACTIONS  # what the template grants the indexer


def test_a_missing_table_is_a_clear_error(dynamodb: Any) -> None:
    with pytest.raises(LeaseError, match="cannot take the lease in table nope: ResourceNotFoundException"):
        Lease("nope", "index#kb", client=dynamodb).acquire()


def _load_indexer(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location(f"indexer_app_{uuid.uuid4().hex}", ROOT / "functions/indexer/app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_indexer_handler_skips_while_another_run_holds_the_lease(
    dynamodb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "qdrant"
    app = _load_indexer(monkeypatch, KB_SOURCE=str(ROOT / "sample-kb"), QDRANT_PATH=str(store), INDEX_LEASE_TABLE=TABLE)
    other = Lease(TABLE, "index#kb", ttl_s=600, client=dynamodb, owner="laptop:42:abcd")
    other.acquire()
    result = app.lambda_handler({"full": False}, LambdaContext("kb-search-test-indexer", 2048, 900))
    assert result["status"] == "skipped" and result["reason"] == "another run holds the lease"
    assert result["holder"] == "laptop:42:abcd" and result["expires_at"] > time.time()
    assert not store.exists()  # the index was never opened
    other.release()
    report = app.lambda_handler({"full": False}, LambdaContext("kb-search-test-indexer", 2048, 900))
    assert report["added"] > 0 and report["error"] is None
    assert _item(dynamodb) is None  # released after the run


def test_kbsearch_index_skips_while_the_scheduled_run_holds_the_lease(
    dynamodb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    monkeypatch.setenv("INDEX_LEASE_TABLE", TABLE)
    Lease(TABLE, "index#kb", ttl_s=600, client=dynamodb, owner="lambda:1:feed").acquire()
    assert main(["index", str(ROOT / "sample-kb")]) == EXIT_LEASE_HELD
    out = capsys.readouterr().out
    assert out.startswith("skipped: another run holds the lease (held by lambda:1:feed until ")
    assert not (tmp_path / "qdrant").exists()


def test_kbsearch_index_against_cloud_without_a_lease_table_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:9")  # nothing listens: the run itself then fails
    monkeypatch.setenv("QDRANT_TIMEOUT_S", "0.5")
    assert main(["index", "--json", str(ROOT / "sample-kb")]) != 0
    assert "INDEX_LEASE_TABLE is not set" in capsys.readouterr().err


NOTES = {f"n{i:02}.md": f"# Note {i}\n\nwords of note {i}\n".encode() for i in range(12)}


@pytest.fixture
def s3_kb_and_lease_table() -> Iterator[Any]:
    """moto's S3 holding :data:`NOTES` in ``kb-notes`` and the lease table; the default session fresh (the tests'
    botocore hooks go on it, and with it)."""
    with mock_aws():
        boto3.setup_default_session()
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        for key, body in NOTES.items():
            s3.put_object(Bucket="kb-notes", Key=key, Body=body)
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield dynamodb
        boto3.setup_default_session()


def _scheduled_sync_of_the_bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """The indexer handler's scheduled run over ``s3://kb-notes/`` with the lease table, a lease of 30 s (renewed
    every 10 s), and ``env``; its report, or what it raised (a run whose report has an error raises)."""
    app = _load_indexer(
        monkeypatch, KB_SOURCE="s3://kb-notes/", QDRANT_PATH=str(tmp_path / "qdrant"), INDEX_LEASE_TABLE=TABLE,
        INDEX_LEASE_TTL_S="30", **env,
    )  # fmt: skip
    try:
        report: dict[str, Any] = app.lambda_handler({"full": False}, LambdaContext("kb-search-test-indexer", 2048, 900))
    except Exception as exc:  # the run failed: its report is in the log
        return {"raised": str(exc)}
    return report


def archived_in_the_bucket(*keys: str, body: bytes = b"# Cold\n\nfrozen words\n") -> list[str]:
    """``keys`` put in moto's ``kb-notes`` in S3 GLACIER (S3 refuses their GET until restored), and the list of the
    keys every GET of the default session asks for from now on (botocore's ``provide-client-params`` hook)."""
    s3 = boto3.client("s3", region_name="us-east-1")
    for key in keys:
        s3.put_object(Bucket="kb-notes", Key=key, Body=body, StorageClass="GLACIER")
    gets: list[str] = []

    def read(params: dict[str, Any], **_: Any) -> None:
        gets.append(params.get("Key", ""))

    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("provide-client-params.s3.GetObject", read)
    return gets


def found_lost() -> threading.Event:
    """A botocore hook on the default session: the event is set when a renewal finds the lease taken over."""
    lost = threading.Event()

    def renewed(parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            lost.set()

    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("after-call.dynamodb.UpdateItem", renewed)
    return lost


def take_over(dynamodb: Any, lost: threading.Event) -> None:
    """Another run takes the lease over (what its take-over of an expired lease writes); wait for the renewer to
    find it so (:func:`found_lost`)."""
    dynamodb.put_item(TableName=TABLE, Item={
        "pk": {"S": "index#kb"}, "owner": {"S": "other:1:cafe"},
        "expires_at": {"N": str(int(time.time()) + 600)}, "acquired_at": {"N": str(int(time.time()))},
    })  # fmt: skip
    assert lost.wait(60), "the renewer never tried to renew"
    # the hook runs inside the renewal's call, before the renewer marks its lease lost and stops (rel35: the call
    # now runs on a helper thread, which widened that gap): wait for the renewer to end
    give_up = time.monotonic() + 10
    while time.monotonic() < give_up and any(
        t.name == "kbsearch-lease" and t.is_alive() for t in threading.enumerate()
    ):
        time.sleep(0.01)


def taken_over_at_the_third_note(dynamodb: Any) -> threading.Event:
    """Botocore hooks on the default session: at the third note read, another run takes the lease over
    (:func:`take_over`), and the read waits for the renewer to find it so; the event is set then."""
    lost, reads = found_lost(), []

    def read(**_: Any) -> None:
        reads.append(1)
        if len(reads) == 3:
            take_over(dynamodb, lost)

    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call.s3.GetObject", read)
    return lost


def test_a_full_sync_whose_lease_is_taken_over_mid_run_stops_and_says_so(
    s3_kb_and_lease_table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 23c: the lease runs out under a running sync (its renewals failed for longer than its time to live:
    DynamoDB throttled, the process frozen) and another run takes it over. The renewer finds it lost, but the sync
    went on writing beside the new holder until its last note, reporting success. It stops now at the next note,
    as at its deadline, its report naming the lost lease; the new holder's lease is left alone."""
    dynamodb = s3_kb_and_lease_table
    lost = taken_over_at_the_third_note(dynamodb)
    report = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert lost.is_set()
    assert _item(dynamodb)["owner"] == {"S": "other:1:cafe"}  # type: ignore[index]
    assert report.get("added", 0) < len(NOTES), report
    assert "lease index#kb was lost mid-run (another run took it over" in str(report.get("raised")), report


def test_a_full_sync_whose_lease_renewals_fail_past_its_expiry_stops_and_says_so(
    s3_kb_and_lease_table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 23c: DynamoDB throttling every renewal (``ThrottlingException``) for longer than the lease lives. The
    run went on to its last note with a lease that had expired (any event batch, or another sync, free to run beside
    it: ``lease_holder`` finds no holder), reporting success. It stops now at the next note once its expiry has
    passed without a renewal, its report naming the lease."""
    from botocore.exceptions import ClientError

    failed, reads = [], []

    def throttled(**_: Any) -> None:
        failed.append(1)
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateItem")

    def read(**_: Any) -> None:  # the third note read waits out three failed renewals (10, 20, 30 s): expired
        reads.append(1)
        if len(reads) == 3:
            waited = time.monotonic() + 120
            while len(failed) < 3 and time.monotonic() < waited:
                time.sleep(0.2)
            assert len(failed) >= 3, "the renewer never tried to renew"

    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call.s3.GetObject", read)
    boto3.DEFAULT_SESSION.events.register("before-call.dynamodb.UpdateItem", throttled)
    report = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert report.get("added", 0) < len(NOTES), report
    assert "lease index#kb was lost mid-run (its renewals failed" in str(report.get("raised")), report
    assert _item(s3_kb_and_lease_table) is None  # released: nobody had taken it
