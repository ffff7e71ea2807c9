"""Round 36's reliability debts (RELIABILITY.md, "Round 36: debts (rel36)"), each through the real interfaces: the
index lease over moto's DynamoDB with the lease's own clock, the indexer's Qdrant Cloud store against a loopback
Qdrant, the indexer Lambda handler over moto's S3 and DynamoDB with DeepInfra's fake on loopback."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.errors import LeaseLostError
from kbsearch.lease import Lease, LeaseHeld
from kbsearch.qdrant.store import Store
from kbsearch_tools.fakes import FakeEndpoint, FakeProvider, provider_env
from tests.integration.test_lease import (
    NOTES,
    TABLE,
    Clock,
    Recording,
    _item,
    _scheduled_sync_of_the_bucket,
    dynamodb,
    s3_kb_and_lease_table,
)

__all__ = ["dynamodb", "s3_kb_and_lease_table"]  # the fixtures, shared with test_lease


def _qdrant_applying(endpoint: FakeEndpoint) -> Any:
    """A loopback Qdrant's answer to every request: each operation of a batch update ``completed``."""

    def respond(method: str, path: str) -> tuple[int, bytes, str]:
        sent = endpoint.requests[-1].body or {}
        done = [{"operation_id": i, "status": "completed"} for i, _ in enumerate(sent.get("operations", []))]
        return 200, json.dumps({"result": done, "status": "ok", "time": 0.001}).encode(), "application/json"

    return respond


def _throttle(client: Any, when: Any) -> list[int]:
    """Renewals (``UpdateItem``) of ``client`` refused ``ThrottlingException`` while ``when()``; the count refused."""
    from botocore.exceptions import ClientError

    refused: list[int] = []

    def throttled(**_: Any) -> None:
        if when():
            refused.append(1)
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateItem")

    client.meta.events.register("before-call.dynamodb.UpdateItem", throttled)
    return refused


def test_a_write_is_started_only_while_the_lease_holds_for_the_writes_own_timeout(dynamodb: Any) -> None:
    """closing35's Left: the guard (``Store.may_write``) asked whether the lease was held *now*, so a write sent
    with a second left was still in flight (up to ``QDRANT_TIMEOUT_S``) when another run could take the lease over,
    and landed beside that run's writes (Qdrant takes no fencing token). Now a write is started only while the lease
    holds for its timeout and the clocks' slack; short of that the store renews the lease first, and refuses the
    write when the renewal fails. Driven with the lease's own clock over moto's DynamoDB and the indexer's Qdrant
    Cloud store against a loopback Qdrant: at 10 s left (QDRANT_TIMEOUT_S 10) the write is sent on a renewed lease
    that a second run cannot take until the write is over (main sent it on the old lease: another run took it one
    second later); with the renewals throttled it is refused, nothing sent, and stays refused once renewed."""
    clock = Clock()
    recording = Recording(dynamodb)
    lease = Lease(TABLE, "index#kb", ttl_s=60, client=recording, clock=clock, owner="run-a")
    lease.acquire()
    throttling = [False]
    refused = _throttle(dynamodb, lambda: throttling[0])
    endpoint = FakeEndpoint().start()
    endpoint.responder = _qdrant_applying(endpoint)
    settings = Settings(qdrant_url=endpoint.url, qdrant_api_key="qdrant-test-key", qdrant_timeout_s=10)
    store = Store.cloud(settings, Secrets(settings), held=lease.held)
    write = [(["a.md"], {"access": ["public"], "access_from": "default"})]
    margin = 15.0  # QDRANT_TIMEOUT_S and the clocks' 5 s (kbsearch.lease.CLOCK_SLACK_S)
    try:
        store.set_payloads(write)  # 60 s left: sent, DynamoDB not asked
        assert len(endpoint.requests) == 1 and "update_item" not in recording.calls

        clock.now += 50  # 10 s left, less than the write's 15
        started = clock.now
        store.set_payloads(write)
        assert len(endpoint.requests) == 2, "the write was not sent"
        assert recording.calls.count("update_item") == 1, "the write was sent on a lease ending before it could"
        assert int(_item(dynamodb)["expires_at"]["N"]) >= started + margin  # type: ignore[index]
        other = Lease(TABLE, "index#kb", ttl_s=60, client=dynamodb, clock=lambda: started + margin, owner="run-b")
        with pytest.raises(LeaseHeld):  # while the write may still land, nobody else takes the lease
            other.acquire()

        clock.now += 50  # 10 s left again, and DynamoDB throttles every renewal
        throttling[0] = True
        with pytest.raises(LeaseLostError, match="for the 15 s a write may take"):
            store.set_payloads(write)
        assert len(endpoint.requests) == 2 and refused == [1], "sent, or the renewal not asked"
        throttling[0] = False
        assert lease.renew()  # the renewer's next beat succeeds: the run has stopped all the same
        with pytest.raises(LeaseLostError):
            store.set_payloads(write)
        assert len(endpoint.requests) == 2 and lease.renewed_since_stopped()
    finally:
        store.close()
        endpoint.stop()


def test_a_lease_too_short_for_a_write_is_refused_at_start() -> None:
    """A lease shorter than twice a write's margin had every write wait on a renewal (and, shorter than the margin,
    every write refused): ``INDEX_LEASE_TTL_S`` is checked against ``QDRANT_TIMEOUT_S`` at start."""
    from pydantic import ValidationError

    assert Settings(index_lease_table=TABLE, index_lease_ttl_s=30, qdrant_timeout_s=10).index_lease_ttl_s == 30
    with pytest.raises(ValidationError, match="at least twice QDRANT_TIMEOUT_S"):
        Settings(index_lease_table=TABLE, index_lease_ttl_s=60, qdrant_timeout_s=30)
    assert Settings(index_lease_ttl_s=60, qdrant_timeout_s=30).qdrant_timeout_s == 30  # no lease: the search's


class HeldUntilRenewedAgain(FakeProvider):
    """DeepInfra on loopback: its first embedding request (a window's, sent while the lease held) is answered once
    the sync's lease has lapsed (renewals throttled past its expiry, the sync's own ask refused too) and a renewal
    has then succeeded: the run, stopped by the lapse, waits on the window in flight while its lease comes back."""

    def __init__(self, refused: list[int], renewed: threading.Event, recover: threading.Event) -> None:
        super().__init__("deepinfra", api_key="di-test-key")
        self.refused, self.renewed, self.recover = refused, renewed, recover
        self.held_first = False

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        if "embeddings" in path and not self.held_first:
            self.held_first = True
            give_up = time.monotonic() + 120
            while len(self.refused) < 4 and time.monotonic() < give_up:  # 3 beats and the sync's own ask
                time.sleep(0.1)
            self.recover.set()
            self.renewed.wait(60)  # the renewer's next beat
        return super().handle(path, headers, raw)


def test_a_lease_that_lapses_and_comes_back_before_the_runs_end_is_reported(
    s3_kb_and_lease_table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rev35d's left (1), reasoned there, driven here: a 30 s lease whose renewals DynamoDB throttles; a window's
    embedding in flight; the sync's next note finds the lease past its expiry (its one renewal refused too) and
    stops, then waits on the window while the renewer's next beat succeeds. main then wrote the window on the
    renewed lease and reported the run `incomplete` with no error, read as a deadline's cut; the lease had lapsed,
    and another run could have taken it and written meanwhile. Now the lease, once found not held, stays so for the
    run: nothing is written after the lapse and the error names it."""
    recover, renewed = threading.Event(), threading.Event()
    assert boto3.DEFAULT_SESSION is not None
    events = boto3.DEFAULT_SESSION.events
    from botocore.exceptions import ClientError

    refused: list[int] = []

    def throttled(**_: Any) -> None:
        if not recover.is_set():
            refused.append(1)
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateItem")

    def answered(parsed: dict[str, Any], **_: Any) -> None:
        if recover.is_set() and "Error" not in parsed:
            renewed.set()

    def read(params: dict[str, Any], **_: Any) -> None:  # n06.md's read (the first window of four is embedding)
        if params.get("Key") == "n06.md":  # waits out three failed renewals (10, 20, 30 s): expired
            give_up = time.monotonic() + 120
            while len(refused) < 3 and time.monotonic() < give_up:
                time.sleep(0.2)

    events.register("before-call.dynamodb.UpdateItem", throttled)
    events.register("after-call.dynamodb.UpdateItem", answered)
    events.register("provide-client-params.s3.GetObject", read)
    deepinfra = HeldUntilRenewedAgain(refused, renewed, recover).start()
    env = {"EMBEDDING_DIMENSIONS": "64", "PROVIDER_RETRIES": "0", "EMBEDDING_BATCH_SIZE": "1",
           "EMBEDDING_CONCURRENCY": "1", "EMBEDDING_TIMEOUT_S": "120"} | provider_env(deepinfra, None, roles=("EMBEDDING",))  # fmt: skip
    try:
        report = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch, **env)
    finally:
        deepinfra.stop()
    assert len(refused) >= 4 and renewed.is_set(), (refused, report)
    raised = str(report.get("raised"))
    assert "lease index#kb was lost mid-run (its renewals failed" in raised, report
    assert "renewed since: nobody took it meanwhile" in raised, report
    assert deepinfra.held_first and report.get("added", 0) == 0, report  # the window in flight: not written
    assert _item(s3_kb_and_lease_table) is None  # released: nobody had taken it
    assert len(NOTES) == 12


NAMESAKES = 600  # t0000/Index.md ...: 531 of them come before the root Index.md in point-id order


def test_a_name_600_notes_share_resolves_to_the_note_the_documented_order_picks(
    load_search_app: Any, tmp_path: Path
) -> None:
    """adv35's left: `_named`, the lookup of a note by a name that is no path (`GET /notes/Index`, `kb_get_note`),
    was one query of at most 500 first chunks in id order. A KB with 600 folders each holding an `Index.md` and
    one at the root: the root note is the one `[[Index]]` means (its whole path is the name), but it came 532nd,
    and the answer suggested `t0000/Index.md`. Now the lookup reads the names page by page (bounded: 20 pages of
    500) and stops at a note whose whole path is the name."""
    from tests.integration.test_notes_graph import get, sync, write_kb

    notes = {"Index.md": "# The root index\n\nStart here.\n"}
    notes |= {f"t{i:04}/Index.md": f"# Index {i}\n\nTeam {i}.\n" for i in range(NAMESAKES)}
    folder = write_kb(tmp_path / "kb", notes)
    store = tmp_path / "q"
    settings = Settings(qdrant_path=str(store), qdrant_url="", embedding_api_key=None, embedding_api_key_param="")
    sync(settings, folder)
    api = load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(folder))
    status, body = get(api, "/notes/Index")
    assert status == 400, body
    assert "did you mean 'Index.md'?" in body["message"], body
    status, body = get(api, "/notes/t0042%2FIndex", raw_path="/notes/t0042/Index")  # a longer name: its own note
    assert status == 400 and "did you mean 't0042/Index.md'?" in body["message"], body


def test_a_stale_button_and_a_question_with_no_letters_are_answered_in_the_askers_language(
    load_search_app: Any, bm25_index: Path, tmp_path: Path
) -> None:
    """walk35's left: a button whose value kb-search cannot read any more (an answer of an older version) was
    answered in English, on a Russian answer too, and `/kb 🙂` (no letter to judge a language by) had its usage
    answer and help in English alone. Now an answer's actions block names its language (`kb_answer.ru`: Slack
    sends the pressed button's block_id with it), which the stale button's answer is said in; a block naming none
    (an answer posted before) and a command with no letters are answered in each language, English then Russian:
    Slack's command carries no locale (users.info's needs a bot token the app does not hold)."""
    from urllib.parse import parse_qsl, urlencode

    from tests.conftest import copy_store
    from tests.integration.test_slack_interactive import SECRET, ask, command_body, press, signed_event, wait_for

    store = tmp_path / "q"
    copy_store(bm25_index, store)
    app = load_search_app(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1",
                          SLACK_TOP_K="3")  # fmt: skip
    hook = FakeEndpoint().start()
    try:
        answer = ask(app, hook, "ротация ключей")
        actions = [b for b in answer["blocks"] if b["type"] == "actions"]
        assert [b["block_id"] for b in actions] == ["kb_answer.ru"], actions

        def stale_press(block_id: str, at: str) -> str:
            button = {"action_id": "kb_more", "text": {"type": "plain_text", "text": "Ещё"}, "value": "испорчено"}
            payload = json.loads(dict(parse_qsl(press(button, hook.url + "/old", at)))["payload"])
            payload["actions"][0]["block_id"] = block_id
            return urlencode({"payload": json.dumps(payload, ensure_ascii=False)})

        before = len(hook.requests)
        assert app(signed_event("/slack/interactive", stale_press("kb_answer.ru", "5.1")))["statusCode"] == 200
        said = wait_for(hook, before + 1)[-1]["text"]
        assert "kb-search уже не может прочитать" in said and "cannot read" not in said, said
        before = len(hook.requests)
        assert app(signed_event("/slack/interactive", stale_press("kb_answer", "5.2")))["statusCode"] == 200
        said = wait_for(hook, before + 1)[-1]["text"]
        assert "cannot read any more" in said and "уже не может прочитать" in said, said  # an older answer's

        for text in ("🙂", "share …"):
            result = app(signed_event("/slack/command", command_body(text, hook.url + "/c")))
            assert result["statusCode"] == 200
            said = json.loads(result["body"])["text"]
            assert "nothing to search for" in said and "искать нечего" in said, said
            assert "*Search the knowledge base*" in said and "*Поиск по базе знаний*" in said, said
    finally:
        hook.stop()


def test_an_archived_note_is_not_read_again_until_it_changes(
    s3_kb_and_lease_table: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """adv35's left: a note in S3 Glacier (a lifecycle transition; S3 refuses its GET, ``InvalidObjectState``) was
    asked for and skipped, botocore's error its reason, at every sync. Now the first sync that finds it so records
    its ETag and storage class; later syncs skip it unread, saying why and what tries it again, until its ETag or
    storage class changes (here: written again, STANDARD), when it is read and indexed. moto's S3, the indexer
    handler's scheduled sync."""
    from tests.integration.test_lease import archived_in_the_bucket

    s3 = boto3.client("s3", region_name="us-east-1")
    gets = archived_in_the_bucket("cold.md")

    def skipped(report: dict[str, Any]) -> str:
        return " ".join(s["reason"] for s in report.get("skipped", []) if s["path"] == "cold.md")

    first = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert gets.count("cold.md") == 1 and "InvalidObjectState" in skipped(first), first
    assert first.get("added") == len(NOTES), first
    second = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert gets.count("cold.md") == 1, "asked for again"
    assert "archived in S3 GLACIER at this version" in skipped(second), second
    s3.put_object(Bucket="kb-notes", Key="cold.md", Body=b"# Cold\n\nthawed words\n")  # restored as a new object
    third = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert gets.count("cold.md") == 2 and skipped(third) == "" and third.get("added") == 1, third
    fourth = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert gets.count("cold.md") == 2 and fourth.get("unchanged") == len(NOTES) + 1, fourth
