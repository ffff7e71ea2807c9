"""/kb slash command: signatures (acting as Slack with slack_sdk), acknowledgement, worker, Block Kit, retries."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import httpx
import pytest
from moto import mock_aws
from slack_sdk.signature import SignatureVerifier

from kbsearch import slack
from kbsearch.config import Secrets, Settings
from kbsearch.providers.resilience import shared_client
from kbsearch.schemas import Hit, HitScores, SearchMeta, SearchResponse
from kbsearch.search import SearchService
from kbsearch.slack_render import View, render_answer
from kbsearch.slack_worker import DynamoDeduper, MemoryDeduper, SlackPostError, handle_job, post_to_slack
from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.apigw import HttpRequest, build_event
from kbsearch_tools.local.process import serve_process
from tests.conftest import ROOT, copy_store, subprocess_env

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
VECTOR_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&"
    "channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&"
    "response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
    "trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
VECTOR_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_slacks_documented_test_vector() -> None:
    assert slack.sign(SECRET, "1531420618", VECTOR_BODY.encode()) == VECTOR_SIGNATURE
    headers = {"X-Slack-Request-Timestamp": "1531420618", "X-Slack-Signature": VECTOR_SIGNATURE}
    slack.verify(SECRET, headers, VECTOR_BODY.encode(), now=1531420618 + 299)
    with pytest.raises(slack.SlackAuthError, match="stale"):
        slack.verify(SECRET, headers, VECTOR_BODY.encode(), now=1531420618 + 301)


def test_agrees_with_slack_sdk_both_ways() -> None:
    verifier = SignatureVerifier(SECRET)
    ts = str(int(time.time()))
    body = "command=%2Fkb&text=hello"
    ours = slack.sign(SECRET, ts, body.encode())
    assert verifier.is_valid(body, ts, ours)
    theirs = str(verifier.generate_signature(timestamp=ts, body=body))
    slack.verify(SECRET, {"x-slack-request-timestamp": ts, "x-slack-signature": theirs}, body.encode())


@pytest.mark.parametrize(
    ("text", "kind", "query", "share"),
    [("", "help", "", False), ("help", "help", "", False), ("share", "help", "", False),
     ("qdrant snapshot", "search", "qdrant snapshot", False), ("share ротация ключей", "search", "ротация ключей", True),
     ("  Share   x ", "search", "x", True)],
)  # fmt: skip
def test_text_parsing(text: str, kind: str, query: str, share: bool) -> None:
    intent = slack.parse_text(text.strip())
    assert (intent.kind, intent.query, intent.share) == (kind, query, share)


@pytest.mark.parametrize(
    ("text", "query", "filters", "share"),
    [("tag:runbook type:decision in:ru/ранбуки after:2026-01-01 ротация ключей", "ротация ключей",
      {"tags": ["runbook"], "type": ["decision"], "path_prefix": "ru/ранбуки", "updated_after": "2026-01-01"}, False),
     ("share restore tag:a,b tag:b snapshot", "restore snapshot", {"tags": ["a", "b"]}, True),
     ('in:"en/how to/" status:active,draft how', "how", {"path_prefix": "en/how to", "status": ["active", "draft"]}, False),
     ("in:“ru/мои заметки” вопрос", "вопрос", {"path_prefix": "ru/мои заметки"}, False),
     ("error: timeout on http://x.example/a:b", "error: timeout on http://x.example/a:b", {}, False),
     ("TAG:Runbook since:2026-01-01T10:00:00Z x", "x", {"tags": ["Runbook"], "updated_after": "2026-01-01T10:00:00Z"}, False)],
)  # fmt: skip
def test_filters_in_the_command(text: str, query: str, filters: dict, share: bool) -> None:
    intent = slack.parse_text(text)
    assert (intent.kind, intent.query, intent.filters, intent.share) == ("search", query, filters, share)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("tag: runbook", "`tag:` needs a value"), ("tag:, x", "`tag:` needs a value"), ("after:yesterday x", "takes a date"),
     ("after:2026-13-45 x", "bad filter"), ("in:a in:b x", "given twice"), ("in:/ x", "needs a folder"),
     ("tag:runbook", "need a question"), ("share type:decision", "need a question"), ('in:"" x', "needs a value"),
     ("in:" + "p" * 600 + " x", "bad filter"), (" ".join(f"tag:t{i}" for i in range(60)) + " x", "bad filter")],
)  # fmt: skip
def test_malformed_filters_answer_with_the_usage(text: str, problem: str) -> None:
    intent = slack.parse_text(text)
    assert intent.kind == "usage" and problem in intent.error
    answer = slack.ack(intent)
    assert problem in answer["text"] and "`tag:runbook`" in answer["text"]  # the usage, not an empty result


# -- through the handler ------------------------------------------------------------------------------------------


@pytest.fixture
def response_url() -> Iterator[FakeEndpoint]:
    endpoint = FakeEndpoint().start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def app(load_search_app, bm25_index: Path, tmp_path: Path):
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    return load_search_app(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1")


def form(text: str, response_url: str, trigger: str = "13345224609.738474920.8088930838d88f008e0") -> str:
    return urlencode({
        "token": "gIkuvaNzQIHg97ATvDxqgjtO", "team_id": "T0001", "channel_id": "C2147483705", "user_id": "U2147483697",
        "command": "/kb", "text": text, "response_url": response_url, "trigger_id": trigger, "api_app_id": "A123",
    })  # fmt: skip


def slack_event(body: str, ts: int | None = None, secret: str = SECRET, b64: bool = True, headers: Any = None,
                path: str = "/slack/command") -> dict:  # fmt: skip
    stamp = str(int(time.time()) if ts is None else ts)
    sig = slack.sign(secret, stamp, body.encode())
    hdrs = [("X-Slack-Request-Timestamp", stamp), ("X-Slack-Signature", sig)] if headers is None else headers
    content_type = "application/x-www-form-urlencoded" if b64 else "text/plain"
    return build_event(HttpRequest("POST", path, "", [("Content-Type", content_type), *hdrs], body.encode()),
                       path, {}, "dev")  # fmt: skip


@pytest.mark.parametrize("b64", [True, False])
def test_signed_command_is_acknowledged_then_answered(app, response_url: FakeEndpoint, b64: bool) -> None:
    event = slack_event(form("restore <qdrant> & snapshot", response_url.url + "/commands/1"), b64=b64)
    assert event["isBase64Encoded"] is b64
    result = app(event)
    assert result["statusCode"] == 200
    ack = json.loads(result["body"])
    assert ack == {"response_type": "ephemeral", "text": "Searching for “restore &lt;qdrant&gt; &amp; snapshot”…"}
    assert response_url.wait(20), "the worker never answered"
    (post,) = response_url.requests
    assert post.path == "/commands/1" and post.body["response_type"] == "ephemeral"
    assert len(post.body["blocks"]) >= 3 and [b["type"] for b in post.body["blocks"][-2:]] == ["context", "actions"]
    assert "Runbook - restore a Qdrant snapshot" in json.dumps(post.body, ensure_ascii=False)


@pytest.mark.parametrize(
    "case",
    ["forged", "stale_past", "stale_future", "missing_headers", "non_integer_ts", "huge_ts", "negative_ts",
     "bad_version", "tampered_body"],
)  # fmt: skip
def test_bad_requests_are_401_and_nothing_runs(app, response_url: FakeEndpoint, case: str) -> None:
    body = form("qdrant", response_url.url)
    now = int(time.time())
    if case == "forged":
        event = slack_event(body, secret="not-the-secret")
    elif case == "stale_past":
        event = slack_event(body, ts=now - 301)
    elif case == "stale_future":  # a minute past the skew: the request is signed a moment (or on a loaded CI
        event = slack_event(body, ts=now + 360)  # machine, a few seconds) before the check reads the clock
    elif case == "missing_headers":
        event = slack_event(body, headers=[])
    elif case == "non_integer_ts":
        event = slack_event(body, headers=[("X-Slack-Request-Timestamp", "soon"), ("X-Slack-Signature", "v0=00")])
    elif case in ("huge_ts", "negative_ts"):  # a 400-digit timestamp used to overflow the skew check (a 503)
        ts = "9" * 400 if case == "huge_ts" else "-1"
        event = slack_event(body, headers=[("X-Slack-Request-Timestamp", ts), ("X-Slack-Signature", "v0=00")])
    elif case == "bad_version":
        sig = slack.sign(SECRET, str(now), body.encode()).replace("v0=", "v1=")
        event = slack_event(body, headers=[("X-Slack-Request-Timestamp", str(now)), ("X-Slack-Signature", sig)])
    else:
        event = slack_event(body)
        event["body"] = base64.b64encode(form("something else", response_url.url).encode()).decode()
    result = app(event)
    assert result["statusCode"] == 401, result
    answer = json.loads(result["body"])
    assert answer["error"] == "unauthorized" and "Traceback" not in result["body"]
    time.sleep(0.3)
    assert response_url.requests == []  # no hand-off, no search


def test_replayed_request_is_rejected_after_the_window(app, response_url: FakeEndpoint) -> None:
    body = form("qdrant", response_url.url)
    old = slack_event(body, ts=int(time.time()) - 400)  # captured earlier, replayed now
    assert app(old)["statusCode"] == 401


def test_malformed_filter_answers_the_usage_at_once(app, response_url: FakeEndpoint) -> None:
    result = app(slack_event(form("after:someday runbooks", response_url.url)))
    assert result["statusCode"] == 200
    text = json.loads(result["body"])["text"]
    assert "`after:` takes a date" in text and "in:ru/ранбуки" in text
    time.sleep(0.3)
    assert response_url.requests == []


def test_filtered_command_searches_with_the_filters(app, response_url: FakeEndpoint) -> None:
    result = app(slack_event(form("type:runbook in:en/runbooks restore &amp; snapshot", response_url.url + "/f")))
    assert json.loads(result["body"])["text"] == "Searching for “restore &amp; snapshot”…"
    assert response_url.wait(20)
    body = json.dumps(response_url.requests[0].body, ensure_ascii=False)
    assert "Runbook - restore a Qdrant snapshot" in body and "filters: type `runbook` · in `en/runbooks`" in body
    paths = re.findall(r"`(en/[^`]+\.md|ru/[^`]+\.md)`", body)
    assert paths and all(p.startswith("en/runbooks/") for p in paths)


@pytest.mark.parametrize(
    ("text", "said"),
    [("How do I use Синхронизация", "Searching for “How do I use Синхронизация”…"),
     ("Can I rename Заметки", "Searching for “Can I rename Заметки”…"),
     ("Edit Layer Attributes опускать", "Ищу «Edit Layer Attributes опускать»…"),
     ("Where is Настройки", "Searching for “Where is Настройки”…"),  # session 37 (lang37): a Russian label
     ("HOW DO I USE Синхронизация", "Searching for “HOW DO I USE Синхронизация”…"),  # typed in capitals
     ("Aperçu Préférences Général опускать", "Ищу «Aperçu Préférences Général опускать»…"),  # accented labels
     ('Где Кнопка "Open in new tab"', 'Ищу «Где Кнопка "Open in new tab"»…'),  # session 37 review (rev37a): a
     ("Ошибка out of memory При Индексации", "Ищу «Ошибка out of memory При Индексации»…")],  # Russian sentence
)  # fmt: skip
def test_an_english_question_naming_a_russian_term_is_answered_in_english(
    app, response_url: FakeEndpoint, text: str, said: str
) -> None:
    """The answer's language is the query's (:func:`kbsearch.lexical.query_language`): an English question whose
    first word and "I" open with a capital is English, though it names a Russian term; a label quoted from an
    English interface beside a Russian word is a Russian query (EVAL.md, session 36 review, rev36a). In an English
    sentence a Cyrillic word opening with a capital is a Russian label, a sentence in capitals is English, and an
    accented Latin label is a label too (EVAL.md, session 37, lang37); only in a sentence opening in English: a
    Russian sentence quoting an English phrase keeps its capitalised Russian words (session 37 review, rev37a)."""
    result = app(slack_event(form(text, response_url.url)))
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["text"] == said
    assert response_url.wait(20), "the worker never answered"


def test_help_answers_at_once_without_a_worker(app, response_url: FakeEndpoint) -> None:
    result = app(slack_event(form("help", response_url.url)))
    assert result["statusCode"] == 200 and "/kb share" in json.loads(result["body"])["text"]
    time.sleep(0.3)
    assert response_url.requests == []


def test_unconfigured_secret_is_503(load_search_app, tmp_path: Path) -> None:
    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"))
    assert call(slack_event(form("x", "https://hooks.slack.com/x")))["statusCode"] == 503


@pytest.mark.parametrize("route", ["/slack/command", "/slack/interactive"])
def test_acknowledgement_imports_nothing_heavy_in_lambda(tmp_path: Path, route: str) -> None:
    """A fresh interpreter as a real Lambda: the ack path records the signature in DynamoDB (the replay guard) and
    hands off through the Lambda Invoke API (loopback fakes of both), and imports none of qdrant_client, numpy or
    the X-Ray SDK (boto3 is what the replay guard and the hand-off need)."""
    lambda_api = FakeEndpoint(status=202).start()
    dynamodb = FakeEndpoint(status=200).start()
    dynamodb.body, dynamodb.content_type = b"{}", "application/x-amz-json-1.0"
    try:
        event = slack_event(form("qdrant snapshot", "https://hooks.slack.com/commands/1"))
        if route == "/slack/interactive":  # a 👍 press on an answer
            action = {"action_id": "kb_vote_up", "value": '{"q":"qdrant snapshot","p":0}', "action_ts": "1.2"}
            payload = {"type": "block_actions", "user": {"id": "U1"}, "team": {"id": "T1"}, "actions": [action],
                       "response_url": "https://hooks.slack.com/actions/1"}  # fmt: skip
            body = urlencode({"payload": json.dumps(payload)})
            event = slack_event(body, path=route)
        code = f"""
import json, sys
sys.path.insert(0, {str(ROOT / "functions" / "search")!r})
import importlib.util
spec = importlib.util.spec_from_file_location("app", {str(ROOT / "functions/search/app.py")!r})
app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)
from kbsearch_tools.local.runtime import LambdaContext
result = app.lambda_handler(json.loads(sys.stdin.read()), LambdaContext("kb-search-dev-search", 1536, 28))
heavy = [m for m in ("qdrant_client", "numpy", "aws_xray_sdk", "grpc") if m in sys.modules]
print(json.dumps({{"status": result["statusCode"], "heavy": heavy, "body": result["body"]}}))
"""
        env = subprocess_env(
            AWS_LAMBDA_FUNCTION_NAME="kb-search-dev-search", QDRANT_URL="https://example.invalid:6333",
            SLACK_SIGNING_SECRET=SECRET, SLACK_WORKER_FUNCTION="kb-search-dev-slack-worker",
            AWS_ENDPOINT_URL_LAMBDA=lambda_api.url, POWERTOOLS_TRACE_DISABLED="true",
            SLACK_DEDUPE_TABLE="kb-search-dev-slack", AWS_ENDPOINT_URL_DYNAMODB=dynamodb.url,
        )  # fmt: skip
        proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(event), capture_output=True, text=True,
                              env=env, check=False, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["status"] == 200 and out["heavy"] == [], out
        (invoke,) = lambda_api.requests
        assert invoke.path == "/2015-03-31/functions/kb-search-dev-slack-worker/invocations"
        assert invoke.headers.get("x-amz-invocation-type") == "Event"
        job = invoke.body["slack_job"]
        if route == "/slack/command":
            assert job["text"] == "qdrant snapshot"
        else:
            assert job["kind"] == "action" and job["action_id"] == "kb_vote_up" and len(job["voter"]) == 32
            assert "U1" not in job["voter"]
        (put,) = dynamodb.requests
        assert put.headers.get("x-amz-target") == "DynamoDB_20120810.PutItem"
        assert put.body["TableName"] == "kb-search-dev-slack"
        assert put.body["Item"]["pk"]["S"] == "slack-signature:" + dict(event["headers"])["X-Slack-Signature"]
    finally:
        lambda_api.stop()
        dynamodb.stop()


# -- the worker ---------------------------------------------------------------------------------------------------


def answer_with(n: int, title: str = "T & <b>", degraded: list[str] | None = None) -> SearchResponse:
    hits = [
        Hit(rank=i + 1, doc_id=f"d{i}", path=f"ru/папка/{i}.md", title=f"{title} {i}", heading=f"{title} {i} > Section",
            snippet="x" * 5000, score=0.5, scores=HitScores(rerank=0.5, fusion=0.01), tags=["a&b", "<t>"],
            type="runbook", status="active", updated=None, links=[])
        for i in range(n)
    ]  # fmt: skip
    meta = SearchMeta(request_id="r", variants=["q"], embedder="none", reranker="none", degraded=degraded or [],
                      candidates=n, timings_ms={"total": 812.0}, usage={})  # fmt: skip
    return SearchResponse(query="q <&>", results=hits, meta=meta)


def test_block_kit_limits_and_escaping() -> None:
    view = View(share=True, per_page=10, url_pattern="https://kb.example.com/{path}")
    message = render_answer(answer_with(60, degraded=["rerank"]), view)
    blocks = message["blocks"]
    assert message["response_type"] == "in_channel"
    assert len(blocks) <= 50
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(t) <= 3000 for t in sections)
    text = json.dumps(blocks, ensure_ascii=False)
    assert "T &amp; &lt;b&gt;" in text and "<b>" not in text
    assert "`a&amp;b`" in text and "`&lt;t&gt;`" in text
    assert "<https://kb.example.com/ru/%D0%BF%D0%B0%D0%BF%D0%BA%D0%B0/0|" in text  # a link, no .md
    context = blocks[-1]["elements"]
    assert "812 ms" in context[0]["text"] and "not reranked" in context[1]["text"]  # under a second: ms (round 24)
    plain = render_answer(answer_with(2), View())
    assert plain["response_type"] == "ephemeral" and "`ru/папка/0.md`" in json.dumps(plain, ensure_ascii=False)


def test_no_hits_is_a_friendly_message() -> None:
    message = render_answer(answer_with(0), View())
    assert "No notes found" in message["text"] and "/kb help" in message["text"]


def settings_for(store: Path) -> Settings:
    return Settings(qdrant_path=str(store), slack_response_hosts="127.0.0.1")


def test_worker_posts_once_for_duplicate_deliveries(bm25_index: Path, tmp_path: Path, response_url) -> None:
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    settings = settings_for(store)
    service = SearchService(settings, Secrets(settings))
    job = slack.parse_command(form("share ротация ключей", response_url.url + "/r").encode()).to_job()
    deduper = MemoryDeduper()
    try:
        assert handle_job(job, lambda: service, deduper, shared_client(), settings) == "posted"
        assert handle_job(job, lambda: service, deduper, shared_client(), settings) == "duplicate"
    finally:
        service.close()
    (post,) = response_url.requests
    assert post.body["response_type"] == "in_channel"
    assert "Ротация ключей провайдеров" in json.dumps(post.body, ensure_ascii=False)


def test_worker_retries_a_failing_response_url_and_reposts_after_failure(tmp_path: Path) -> None:
    flaky = FakeEndpoint(fail_times=2).start()
    settings = settings_for(tmp_path / "none")
    broken = SearchService(settings, Secrets(settings))  # no index there: the search fails → an apology
    try:
        job = slack.parse_command(form("qdrant", flaky.url + "/r", trigger="t-1").encode()).to_job()
        deduper = MemoryDeduper()
        assert handle_job(job, lambda: broken, deduper, shared_client(), settings) == "posted"
        assert [r.body["text"] for r in flaky.requests][-1].startswith("Sorry, the search for “qdrant” failed")
        assert len(flaky.requests) == 3  # 2 failures, then delivered
        flaky.fail_times, flaky.requests = 10, []
        job2 = slack.parse_command(form("qdrant", flaky.url + "/r", trigger="t-2").encode()).to_job()
        with pytest.raises(SlackPostError):
            handle_job(job2, lambda: broken, deduper, shared_client(), settings)
        assert deduper.claim("t-2")  # released: a retried delivery may post
    finally:
        broken.close()
        flaky.stop()


def test_response_url_must_be_slack(tmp_path: Path, response_url) -> None:
    settings = Settings(qdrant_path=str(tmp_path / "q"))  # default: only hooks.slack.com over https
    job = slack.parse_command(form("x", response_url.url).encode()).to_job()
    assert handle_job(job, lambda: None, MemoryDeduper(), shared_client(), settings) == "rejected"  # type: ignore[arg-type,return-value]
    assert response_url.requests == []
    assert slack.allowed_response_url("https://hooks.slack.com/commands/1", ("hooks.slack.com",))
    assert not slack.allowed_response_url("http://hooks.slack.com/commands/1", ("hooks.slack.com",))
    assert not slack.allowed_response_url("https://evil.example/hooks.slack.com", ("hooks.slack.com",))


def test_post_to_slack_gives_up_on_4xx_at_once() -> None:
    endpoint = FakeEndpoint(status=404).start()
    try:
        with pytest.raises(SlackPostError, match="refused"):
            post_to_slack(shared_client(), endpoint.url, {"text": "x"}, sleep=lambda _s: None)
        assert len(endpoint.requests) == 1
    finally:
        endpoint.stop()


def test_dynamodb_deduper_with_moto() -> None:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="dedupe", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")  # fmt: skip
        deduper = DynamoDeduper("dedupe", ddb)
        assert deduper.claim("k") and not deduper.claim("k")
        deduper.release("k")
        assert deduper.claim("k")


def test_end_to_end_through_kbsearch_serve(bm25_index: Path, tmp_path: Path, response_url) -> None:
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    env = subprocess_env(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1")
    with serve_process(env, cwd=ROOT) as server:
        base = server.base_url
        body = form("reindex from scratch", response_url.url + "/hook")
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
                   "X-Slack-Signature": str(SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body))}  # fmt: skip
        t0 = time.monotonic()
        r = httpx.post(f"{base}/slack/command", content=body, headers=headers, timeout=10)
        assert r.status_code == 200 and time.monotonic() - t0 < 3
        assert r.json()["text"].startswith("Searching for")
        assert response_url.wait(20)
        assert "Runbook - reindex from scratch" in json.dumps(response_url.requests[0].body)
        replay = httpx.post(f"{base}/slack/command", content=body, headers=headers, timeout=10)  # same signature
        assert replay.status_code == 401 and replay.json()["message"] == "replayed request"
        assert len(response_url.requests) == 1
        forged = dict(headers, **{"X-Slack-Signature": "v0=" + "0" * 64})
        assert httpx.post(f"{base}/slack/command", content=body, headers=forged, timeout=10).status_code == 401


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_response_url_answering_a_redirect_is_refused_never_posted(status: int) -> None:
    """A `response_url` (or a proxy before it) answering 3xx: the answer was not taken (nothing follows a redirect
    with the message), yet the post counted as delivered, the vote or the answer lost with nothing logged. Now
    refused at once, as a 4xx is (one request, `refused ... HTTP 3xx`)."""
    endpoint = FakeEndpoint(status=status).start()
    try:
        with pytest.raises(SlackPostError, match=f"refused the answer \\(HTTP {status}\\)"):
            post_to_slack(shared_client(), endpoint.url, {"text": "x"}, sleep=lambda _s: None)
        assert len(endpoint.requests) == 1
    finally:
        endpoint.stop()
