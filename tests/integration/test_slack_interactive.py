"""Slack buttons: POST /slack/interactive (signed like the command, acting as Slack with slack_sdk), Share in
channel, More results, Open, 👍/👎 stored as votes; forged, stale and replayed presses, double presses, expired
response_urls."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import boto3
import pytest
from moto import mock_aws
from slack_sdk.signature import SignatureVerifier

from kbsearch import slack
from kbsearch.config import Secrets, Settings
from kbsearch.feedback import DynamoFeedbackStore, FileFeedbackStore, latest_votes, vote_record
from kbsearch.providers.resilience import shared_client
from kbsearch.search import SearchService
from kbsearch.slack_render import AnswerState
from kbsearch.slack_worker import MemoryDeduper, handle_job
from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.conftest import copy_store
from tests.integration.test_access_leaks import CALLER_MAP, assert_no_leak, leak_kb  # noqa: F401 (a fixture)
from tests.unit.test_slack_render import block_kit_problems

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
USER = "U2147483697"


def signed_event(path: str, body: str, ts: int | None = None, secret: str = SECRET) -> dict[str, Any]:
    """An API Gateway event for ``body`` signed by slack_sdk, as Slack signs it."""
    stamp = str(int(time.time()) if ts is None else ts)
    signature = str(SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body))
    headers = [("Content-Type", "application/x-www-form-urlencoded"), ("X-Slack-Request-Timestamp", stamp),
               ("X-Slack-Signature", signature)]  # fmt: skip
    return build_event(HttpRequest("POST", path, "", headers, body.encode()), path, {}, "dev")


def command_body(text: str, response_url: str, trigger: str = "111.222.333") -> str:
    return urlencode({"team_id": "T0001", "channel_id": "C2147483705", "user_id": USER, "command": "/kb",
                      "text": text, "response_url": response_url, "trigger_id": trigger, "api_app_id": "A1"})  # fmt: skip


def press(button: dict[str, Any], response_url: str, action_ts: str = "1700000000.000100", user: str = USER,
          kind: str = "block_actions", message_ts: str = "1700000000.000001") -> str:  # fmt: skip
    """The form Slack posts when ``button`` (from one of our answers) is pressed."""
    action = {"type": "button", "action_id": button["action_id"], "block_id": "kb_answer", "action_ts": action_ts,
              "text": button["text"], **({"value": button["value"]} if "value" in button else {})}  # fmt: skip
    payload = {"type": kind, "user": {"id": user, "username": "someone", "team_id": "T0001"},
               "team": {"id": "T0001", "domain": "example"}, "channel": {"id": "C2147483705", "name": "general"},
               "container": {"type": "message", "message_ts": message_ts, "is_ephemeral": True},
               "api_app_id": "A1", "trigger_id": "9.8.7", "response_url": response_url, "actions": [action]}  # fmt: skip
    return urlencode({"payload": json.dumps(payload, ensure_ascii=False)})


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for block in message["blocks"]:
        for element in [*block.get("elements", []), block.get("accessory") or {}]:
            if element.get("type") == "button":
                found[element["action_id"]] = element
    return found


@pytest.fixture
def hook() -> Iterator[FakeEndpoint]:
    endpoint = FakeEndpoint().start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def votes_file(tmp_path: Path) -> Path:
    return tmp_path / "votes" / "feedback.jsonl"


@pytest.fixture
def app(load_search_app, bm25_index: Path, tmp_path: Path, votes_file: Path):
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    return load_search_app(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1",
                           SLACK_FEEDBACK_FILE=str(votes_file), SLACK_TOP_K="3",
                           KB_NOTE_URL_PATTERN="https://git.example.com/kb/blob/main/{path_md}")  # fmt: skip


def wait_for(endpoint: FakeEndpoint, count: int, timeout: float = 20.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while len(endpoint.requests) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(endpoint.requests) >= count, f"{len(endpoint.requests)} posts, expected {count}"
    return [r.body for r in endpoint.requests]


def ask(app, hook: FakeEndpoint, text: str, path: str = "/answer") -> dict[str, Any]:
    result = app(signed_event("/slack/command", command_body(text, hook.url + path, trigger=f"t-{time.time_ns()}")))
    assert result["statusCode"] == 200
    before = len(hook.requests)
    return wait_for(hook, before + 1)[-1]


def test_answer_buttons_share_more_open_and_votes(app, hook: FakeEndpoint, votes_file: Path) -> None:
    answer = ask(app, hook, "tag:runbook runbook")
    assert not block_kit_problems(answer)
    found = buttons(answer)
    assert {"kb_share", "kb_more", "kb_vote_up", "kb_vote_down", "kb_open_1"} <= set(found)
    assert found["kb_open_1"]["url"].startswith("https://git.example.com/kb/blob/main/en/runbooks/")
    shown = AnswerState.decode(found["kb_vote_up"]["value"]).hits
    assert len(shown) == 3

    # Share in channel: the same answer, in the channel, saying who asked; no private buttons
    result = app(signed_event("/slack/interactive", press(found["kb_share"], hook.url + "/share", "1.1")))
    assert result["statusCode"] == 200 and result["body"] == ""
    shared = wait_for(hook, 2)[-1]
    assert shared["response_type"] == "in_channel" and shared["replace_original"] is False
    assert f"asked by <@{USER}>" in json.dumps(shared)
    assert quote(shown[0], safe="/") in json.dumps(shared, ensure_ascii=False)  # the same hits, linked
    assert "kb_share" not in buttons(shared) and not block_kit_problems(shared)

    # More results: the next page replaces the private answer
    app(signed_event("/slack/interactive", press(found["kb_more"], hook.url + "/more", "1.2")))
    more = wait_for(hook, 3)[-1]
    assert more["replace_original"] is True and more["response_type"] == "ephemeral"
    page2 = AnswerState.decode(buttons(more)["kb_vote_up"]["value"])
    assert page2.page == 1 and not set(page2.hits) & set(shown)
    footer = "result 4 · " if len(page2.hits) == 1 else "results 4–"  # one hit: "result 4" (round 24)
    assert footer in json.dumps(more, ensure_ascii=False)

    # Open is a URL button: Slack still sends the press; it is acknowledged and nothing else happens
    assert (
        app(signed_event("/slack/interactive", press(found["kb_open_1"], hook.url + "/open", "1.3")))["statusCode"]
        == 200
    )

    # 👍 then 👎 on the same answer by the same person: one vote, the last one
    app(signed_event("/slack/interactive", press(found["kb_vote_up"], hook.url + "/up", "1.4")))
    assert "Thanks" in wait_for(hook, 4)[-1]["text"]
    app(signed_event("/slack/interactive", press(found["kb_vote_down"], hook.url + "/down", "1.5")))
    wait_for(hook, 5)
    time.sleep(0.3)
    assert len(hook.requests) == 5  # nothing for Open
    records = [json.loads(line) for line in votes_file.read_text(encoding="utf-8").splitlines()]
    assert [r["vote"] for r in records] == ["up", "down"]
    (latest,) = latest_votes(iter(records))
    assert latest["vote"] == "down" and latest["query"] == "runbook" and latest["filters"] == {"tags": ["runbook"]}
    assert latest["hits"] == [{"path": p, "rank": i + 1} for i, p in enumerate(shown)]
    dumped = votes_file.read_text(encoding="utf-8")
    assert USER not in dumped and "T0001" not in dumped and "C2147483705" not in dumped  # only a salted hash
    assert latest["voter"] == slack.voter_hash(SECRET, "T0001", USER) != slack.voter_hash("other", "T0001", USER)


@pytest.mark.parametrize("case", ["forged", "stale_past", "stale_future", "replayed", "tampered", "unsigned"])
def test_bad_interactions_are_401_and_nothing_runs(app, hook: FakeEndpoint, case: str) -> None:
    state = AnswerState("runbook").encode()
    body = press({"action_id": "kb_share", "text": {"type": "plain_text", "text": "Share"}, "value": state},
                 hook.url + "/x")  # fmt: skip
    now = int(time.time())
    if case == "forged":
        event = signed_event("/slack/interactive", body, secret="not-the-secret")
    elif case == "stale_past":
        event = signed_event("/slack/interactive", body, ts=now - 301)
    elif case == "stale_future":
        event = signed_event("/slack/interactive", body, ts=now + 301)
    elif case == "replayed":
        event = signed_event("/slack/interactive", body)
        assert app(event)["statusCode"] == 200  # the original
        wait_for(hook, 1)
    elif case == "tampered":
        event = signed_event("/slack/interactive", body)
        event["body"] = signed_event("/slack/interactive", body.replace("kb_share", "kb_more"))["body"]
        event["headers"] = dict(event["headers"], **{"X-Slack-Signature": "v0=" + "1" * 64})
    else:
        event = signed_event("/slack/interactive", body)
        event["headers"] = {"Content-Type": "application/x-www-form-urlencoded"}
        event["multiValueHeaders"] = {"Content-Type": ["application/x-www-form-urlencoded"]}
    result = app(event)
    assert result["statusCode"] == 401 and json.loads(result["body"])["error"] == "unauthorized"
    time.sleep(0.3)
    assert len(hook.requests) == (1 if case == "replayed" else 0)


@pytest.mark.parametrize("text", ["share \u200b", "share !!!", "\u200b\u200d", "share tag:runbook …", "🔥", "\x00"])
def test_a_command_with_nothing_to_search_is_a_usage_answer_never_a_post(app, hook: FakeEndpoint, text: str) -> None:
    """``/kb`` text whose question has no letter or digit (zero-width characters, punctuation, emoji, a NUL), with
    ``share`` too: the usage answer at once, nothing searched and nothing posted (it was searched, and with
    ``share`` "No notes found for “\u200b”" was posted to the whole channel)."""
    result = app(signed_event("/slack/command", command_body(text, hook.url + "/n", trigger=f"t-{time.time_ns()}")))
    assert result["statusCode"] == 200
    ack = json.loads(result["body"])
    assert ack["response_type"] == "ephemeral" and "no letter or digit" in ack["text"], ack
    time.sleep(0.5)
    assert hook.requests == []


def test_double_press_is_one_action(app, hook: FakeEndpoint) -> None:
    """Slack's retry of a press (same action_ts, action_id and user) is signed afresh: both are acknowledged,
    one runs."""
    button = {"action_id": "kb_share", "text": {"type": "plain_text", "text": "Share"},
              "value": AnswerState("reindex from scratch").encode()}  # fmt: skip
    first = app(signed_event("/slack/interactive", press(button, hook.url + "/s", "1700000001.000200")))
    time.sleep(1.1)  # a new timestamp: a new signature, so it is not a replay
    second = app(signed_event("/slack/interactive", press(button, hook.url + "/s", "1700000001.000200")))
    assert first["statusCode"] == second["statusCode"] == 200
    wait_for(hook, 1)
    other_user = app(signed_event("/slack/interactive", press(button, hook.url + "/s", "1700000001.000200", "U999")))
    assert other_user["statusCode"] == 200
    wait_for(hook, 2)
    time.sleep(0.5)
    assert len(hook.requests) == 2  # the double press once, the other person's press once


def test_share_pressed_twice_by_a_person_posts_once(app, hook: FakeEndpoint) -> None:
    """A person's double click on Share is two presses (two action_ts, as Slack sends them): the answer is posted
    to the channel once (issue 24: "a button pressed twice → one action"). Share on another answer message (a new
    /kb, its own message_ts) or the next page (another value) still posts."""
    button = {"action_id": "kb_share", "text": {"type": "plain_text", "text": "Share"},
              "value": AnswerState("reindex from scratch").encode()}  # fmt: skip
    for ts in ("1700000002.000100", "1700000002.000900"):  # the second click, a moment later
        assert app(signed_event("/slack/interactive", press(button, hook.url + "/s", ts)))["statusCode"] == 200
    wait_for(hook, 1)
    time.sleep(1.0)
    assert len(hook.requests) == 1, [r.body for r in hook.requests]
    other_message = press(button, hook.url + "/s", "1700000003.000100", message_ts="1700000003.000001")
    assert app(signed_event("/slack/interactive", other_message))["statusCode"] == 200
    wait_for(hook, 2)
    page_two = {**button, "value": AnswerState("reindex from scratch", page=1).encode()}
    assert app(signed_event("/slack/interactive", press(page_two, hook.url + "/s", "1700000004.000100")))[
        "statusCode"] == 200  # fmt: skip
    wait_for(hook, 3)
    assert all(r.body["response_type"] == "in_channel" for r in hook.requests)


@pytest.mark.parametrize(
    ("body", "status"),
    [("payload=%7B", 400), ("nopayload=1", 400), ("payload=%5B%5D", 400), ("payload=" + "%5B" * 5000, 400),
     ("payload=" + "%5B" * 5000 + "%5D" * 5000, 400), ("payload=" + "x" * 300_000, 400), ("payload=" + "x" * 1_100_000, 413), ("payload=%FF%FE", 400),
     ("payload=" + json.dumps({"type": "view_submission"}), 200),
     ("payload=" + json.dumps({"type": "block_actions", "actions": [{"action_id": "elsewhere"}]}), 200),
     ("payload=" + json.dumps({"type": "block_actions", "actions": [{"action_id": "kb_share", "value": "x"}]}), 400),
     ("payload=" + json.dumps({"type": "block_actions", "actions": "x"}), 200)],
)  # fmt: skip
def test_signed_but_unusable_payloads(app, hook: FakeEndpoint, body: str, status: int) -> None:
    result = app(signed_event("/slack/interactive", body))
    assert result["statusCode"] == status, result
    time.sleep(0.2)
    assert hook.requests == []


SURROGATE_FIELDS = ["user.id", "team.id", "channel.id", "response_url", "trigger_id", "actions.0.value",
                    "actions.0.action_ts"]  # fmt: skip


@pytest.mark.parametrize("field", SURROGATE_FIELDS)
@pytest.mark.parametrize("text", ["\ud800", "U1\udfff", "\udc00\ud800"], ids=["high", "low", "reversed-pair"])
def test_lone_surrogates_in_a_signed_press_are_400_and_nothing_runs(
    app, hook: FakeEndpoint, field: str, text: str
) -> None:
    """JSON's ``\\ud800`` escapes decode to text that no encoder takes (the press's request key, the voter's
    hash, the post): in any field the worker reads, a 400 at the acknowledgement, never a 500 there or a failing
    worker. An escaped emoji (a proper pair) is text like any other."""
    action = ("kb_vote_up", "kb_share", "kb_more")[SURROGATE_FIELDS.index(field) % 3]  # each button, in turn
    button = {"action_id": action, "text": {"type": "plain_text", "text": "b"},
              "value": AnswerState("reindex from scratch").encode()}  # fmt: skip
    payload = json.loads(dict(parse_qsl(press(button, hook.url + "/s", f"1.{time.time_ns()}")))["payload"])
    *parents, last = field.split(".")
    target = payload
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = (target[last] if last != "response_url" else hook.url + "/s") + text
    body = urlencode({"payload": json.dumps(payload)})  # ensure_ascii: the surrogates travel as \u escapes
    result = app(signed_event("/slack/interactive", body))
    assert result["statusCode"] == 400, result
    assert json.loads(result["body"])["error"] == "bad_request"
    target[last] = target[last].replace(text, "\ud83d\ude00")  # 😀 as JSON escapes it: answered
    payload["actions"][0]["action_ts"] = f"2.{time.time_ns()}"
    ok = app(signed_event("/slack/interactive", urlencode({"payload": json.dumps(payload)})))
    assert ok["statusCode"] == 200, ok
    assert len(wait_for(hook, 1)) == 1  # the valid press only


NO_STATES = {
    "deep arrays": "[" * 990 + "]" * 990, "unclosed arrays": "[" * 1999, "nested objects": '{"q":' * 399 + "1" + "}" * 399,
    "not JSON": "{q: x}", "an array": '["q"]', "null": "null", "query a number": '{"q": 5}', "empty query": '{"q": " "}',
    "page -1": '{"q": "x", "p": -1}', "page true": '{"q": "x", "p": true}', "hits not text": '{"q": "x", "h": [1]}',
    "filters a list": '{"q": "x", "f": []}', "too long": '{"q": "' + "x" * 2001 + '"}', "empty": "",
}  # fmt: skip


@pytest.mark.parametrize("value", NO_STATES.values(), ids=NO_STATES.keys())
def test_a_button_value_that_is_no_state_gets_a_polite_answer(app, hook: FakeEndpoint, value: str) -> None:
    """A signed press whose button value is no answer state kb-search wrote, of every kind (nested past the JSON
    parser's recursion limit within Slack's 2,000 characters, not JSON, the wrong types, too long): the
    acknowledgement and one polite answer, never a failing worker (nesting was a RecursionError in it)."""
    button = {"action_id": "kb_more", "text": {"type": "plain_text", "text": "More"}, "value": value}
    assert (
        app(signed_event("/slack/interactive", press(button, hook.url + "/old", f"3.{time.time_ns()}")))["statusCode"]
        == 200
    )
    assert "run `/kb` again" in wait_for(hook, 1)[0]["text"]


def test_a_stale_button_value_gets_a_polite_answer(app, hook: FakeEndpoint) -> None:
    button = {"action_id": "kb_more", "text": {"type": "plain_text", "text": "More"}, "value": "from an old version"}
    assert app(signed_event("/slack/interactive", press(button, hook.url + "/old")))["statusCode"] == 200
    assert "run `/kb` again" in wait_for(hook, 1)[0]["text"]


@pytest.mark.parametrize("status", [404, 410])
def test_expired_response_url_is_logged_and_not_retried(bm25_index: Path, tmp_path: Path, status: int,
                                                        caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    gone = FakeEndpoint(status=status).start()
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    settings = Settings(qdrant_path=str(store), slack_response_hosts="127.0.0.1",
                        slack_feedback_file=str(tmp_path / "v.jsonl"))  # fmt: skip
    service = SearchService(settings, Secrets(settings))
    deduper = MemoryDeduper()
    try:
        for kind in ("kb_share", "kb_vote_up"):
            interaction = slack.Interaction(kind, AnswerState("runbook", hits=("a.md",)).encode(with_hits=True),
                                            f"1.{kind}", USER, "T1", "C1", gone.url + "/expired", "t", "voter")  # fmt: skip
            job = interaction.to_job()
            assert handle_job(job, lambda: service, deduper, shared_client(), settings) == "expired"
            assert handle_job(job, lambda: service, deduper, shared_client(), settings) == "duplicate"
        command = slack.parse_command(command_body("runbook", gone.url + "/c").encode()).to_job()
        assert handle_job(command, lambda: service, deduper, shared_client(), settings) == "expired"
    finally:
        service.close()
        gone.stop()
    assert len(gone.requests) == 3  # one attempt each: no retry storm
    assert "response_url refused the answer; not retrying" in caplog.text
    assert (tmp_path / "v.jsonl").read_text().count('"vote":"up"') == 1  # the vote was kept


def test_dynamodb_feedback_store_with_moto() -> None:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="votes", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")  # fmt: skip
        store = DynamoFeedbackStore("votes", ddb)
        up = vote_record("вопрос", {"tags": ["a"]}, 0, ["a.md", "b.md"], 1, "up", "h1")
        store.put(up)
        store.put(vote_record("вопрос", {"tags": ["a"]}, 0, ["a.md", "b.md"], 1, "down", "h1"))  # replaces
        store.put(vote_record("вопрос", {"tags": ["a"]}, 0, ["a.md", "b.md"], 1, "up", "h2"))  # another person
        for i in range(30):  # enough to page the scan
            store.put(vote_record(f"q{i}" + "x" * 20_000, {}, 0, ["c.md"], 1, "up", "h3"))
        records = list(store.scan())
        assert len(records) == 32
        mine = [r for r in records if r["id"] == up["id"]]
        assert len(mine) == 1 and mine[0]["vote"] == "down" and mine[0]["hits"][1] == {"path": "b.md", "rank": 2}
        item = ddb.get_item(TableName="votes", Key={"id": {"S": up["id"]}})["Item"]
        assert set(item) == {"id", "time", "vote", "record"}


def test_file_feedback_store_reads_what_it_wrote(tmp_path: Path) -> None:
    store = FileFeedbackStore(tmp_path / "a" / "b.jsonl")
    assert list(store.scan()) == []
    store.put(vote_record("q", {}, 1, ["x.md"], 6, "up", "h"))
    (record,) = list(store.scan())
    assert record["hits"] == [{"path": "x.md", "rank": 6}] and record["page"] == 1
    with pytest.raises(ValueError):
        vote_record("q", {}, 0, [], 1, "meh", "h")


def test_a_press_on_a_long_russian_answer_is_taken(app, hook: FakeEndpoint) -> None:
    """Slack sends the message a button was pressed on; percent-encoded Russian text triples it past 64 KiB."""
    button = {"action_id": "kb_share", "text": {"type": "plain_text", "text": "Share"},
              "value": AnswerState("ротация ключей").encode()}  # fmt: skip
    form = dict(parse_qsl(press(button, hook.url + "/long")))
    payload = json.loads(form["payload"])
    payload["message"] = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "ключ " * 600}}] * 8}
    body = urlencode({"payload": json.dumps(payload, ensure_ascii=False)})
    assert len(body) > 64 * 1024
    assert app(signed_event("/slack/interactive", body))["statusCode"] == 200
    assert wait_for(hook, 1)[0]["response_type"] == "in_channel"


def test_worker_function_stores_a_vote_in_dynamodb_once(monkeypatch: pytest.MonkeyPatch, hook: FakeEndpoint,
                                                        bm25_index: Path, tmp_path: Path) -> None:  # fmt: skip
    """SlackWorkerFunction's handler with the template's tables (moto): a 👍 job is stored once, answered once."""
    import importlib.util

    from kbsearch_tools.local.runtime import LambdaContext
    from tests.conftest import ROOT

    store = tmp_path / "q"
    copy_store(bm25_index, store)
    for key, value in {"QDRANT_PATH": str(store), "SLACK_RESPONSE_HOSTS": "127.0.0.1", "SLACK_DEDUPE_TABLE": "dedupe",
                       "SLACK_FEEDBACK_TABLE": "votes"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        for table, key in (("dedupe", "pk"), ("votes", "id")):
            ddb.create_table(TableName=table, KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                             AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                             BillingMode="PAY_PER_REQUEST")  # fmt: skip
        spec = importlib.util.spec_from_file_location("slack_worker_app_test", ROOT / "functions/slack_worker/app.py")
        assert spec and spec.loader
        app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)
        interaction = slack.Interaction("kb_vote_down", AnswerState("runbook", hits=("a.md", "b.md")).encode(with_hits=True),
                                        "1700.1", USER, "T1", "C1", hook.url + "/v", "t", "f" * 32)  # fmt: skip
        context = LambdaContext("kb-search-dev-slack-worker", 1536, 60)
        assert app.lambda_handler({"slack_job": interaction.to_job()}, context) == {"status": "posted"}
        assert app.lambda_handler({"slack_job": interaction.to_job()}, context) == {"status": "duplicate"}
        (item,) = ddb.scan(TableName="votes")["Items"]
        record = json.loads(item["record"]["S"])
        assert (
            record["vote"] == "down" and record["voter"] == "f" * 32 and [h["rank"] for h in record["hits"]] == [1, 2]
        )
    assert len(hook.requests) == 1 and "not helpful" in hook.requests[0].body["text"]


@pytest.fixture
def leak_app(load_search_app, leak_kb: tuple[Path, Path], tmp_path: Path):  # noqa: F811 (the imported fixture)
    kb, store = leak_kb
    copy_store(store, tmp_path / "q")
    return load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb), ACCESS_DEFAULT="deny",
                           ACCESS_GROUPS=json.dumps(CALLER_MAP), SLACK_SIGNING_SECRET=SECRET,
                           SLACK_RESPONSE_HOSTS="127.0.0.1", SLACK_TOP_K="10")  # fmt: skip


def test_share_button_posts_only_what_the_channel_may_read(leak_app, hook: FakeEndpoint) -> None:
    """U-sec reads hr + security notes in C-hr; pressing Share posts the answer searched with the channel's scope
    (hr), so no security note reaches the channel; the private answer had them."""
    body = urlencode({"team_id": "T1", "channel_id": "C-hr", "user_id": "U-sec", "command": "/kb", "text": "welcome",
                      "response_url": hook.url + "/p", "trigger_id": "t-leak"})  # fmt: skip
    assert leak_app(signed_event("/slack/command", body))["statusCode"] == 200
    private = wait_for(hook, 1)[0]
    assert "zqsectoken" in json.dumps(private, ensure_ascii=False) or "Incident review" in json.dumps(private)
    share = buttons(private)["kb_share"]
    form = dict(parse_qsl(press(share, hook.url + "/p", "9.1", user="U-sec")))
    payload = json.loads(form["payload"])
    payload["team"], payload["channel"] = {"id": "T1"}, {"id": "C-hr"}
    assert (
        leak_app(signed_event("/slack/interactive", urlencode({"payload": json.dumps(payload)})))["statusCode"] == 200
    )
    shared = wait_for(hook, 2)[1]
    assert shared["response_type"] == "in_channel"
    posted = json.dumps(shared, ensure_ascii=False)
    assert_no_leak(posted, {"hr"}, "Share in C-hr")
    assert "Salary bands" in posted  # what the channel may read is there
