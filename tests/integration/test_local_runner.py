"""`kbsearch invoke` and `kbsearch serve` as a user runs them: real processes, real HTTP on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kbsearch_tools.local.process import serve_process
from tests.conftest import KBSEARCH_CMD, ROOT, subprocess_env

EVENTS = ROOT / "events"


def invoke(function: str, event: Path, *extra: str, **env: str) -> tuple[int, Any, str]:
    proc = subprocess.run(
        [*KBSEARCH_CMD, "invoke", function, "--event", str(event), *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=subprocess_env(**env),
        timeout=120,
        check=False,
    )
    out = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, out, proc.stderr


def test_invoke_health_prints_a_200(bm25_index: Path, tmp_path: Path) -> None:
    rc, result, _ = invoke("SearchFunction", EVENTS / "health.json", QDRANT_PATH=str(bm25_index))
    assert rc == 0
    assert result["statusCode"] == 200
    body = json.loads(result["body"])
    assert body == {
        "status": "ok",
        "ready": True,
        "reasons": [],
        "version": body["version"],
        "collection": "kb",
        "store": "embedded",
        "last_sync": None,  # the search path is not built by /health: unknown until a search has read it
    }
    # no index there yet: alive, not ready, and the reason says what to run
    rc, result, _ = invoke("SearchFunction", EVENTS / "health.json", QDRANT_PATH=str(tmp_path / "none"))
    body = json.loads(result["body"])
    assert rc == 0 and result["statusCode"] == 200 and body["ready"] is False
    assert body["reasons"] == [
        "the index has not been built yet: run the indexer first (kbsearch index <your KB folder>)"
    ]


def test_invoke_uses_template_env_and_shell_overrides() -> None:
    rc, result, _ = invoke("SearchFunction", EVENTS / "health.json", QDRANT_COLLECTION="from-shell")
    assert rc == 0 and json.loads(result["body"])["collection"] == "from-shell"


def test_invoke_env_vars_file_wins(tmp_path: Path) -> None:
    env_file = tmp_path / "env.json"
    env_file.write_text(
        json.dumps({"Parameters": {"QDRANT_COLLECTION": "p"}, "SearchFunction": {"QDRANT_URL": "https://q"}})
    )
    rc, result, _ = invoke("SearchFunction", EVENTS / "health.json", "--env-vars", str(env_file), QDRANT_COLLECTION="s")
    body = json.loads(result["body"])
    assert rc == 0 and body["collection"] == "p" and body["store"] == "cloud"


def test_invoke_parameter_overrides() -> None:
    rc, result, _ = invoke("SearchFunction", EVENTS / "health.json", "--parameter-overrides", "QdrantCollection=over")
    assert rc == 0 and json.loads(result["body"])["collection"] == "over"


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("invoke") / "q"
    proc = subprocess.run(
        [*KBSEARCH_CMD, "index", str(ROOT / "sample-kb"), "--json"],
        capture_output=True, text=True, env=subprocess_env(QDRANT_PATH=str(path)), check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("search.json", 200),
        ("search_get.json", 200),
        ("search_bad_request.json", 422),
        ("slack_command.json", 401),  # its timestamp is from 2018: stale (a freshly signed copy is tested below)
        ("mcp_tools_list.json", 200),
    ],
)
def test_invoke_every_api_event(event: str, status: int, sample_index: Path) -> None:
    rc, result, _ = invoke(
        "SearchFunction", EVENTS / event, QDRANT_PATH=str(sample_index), SLACK_SIGNING_SECRET="test-signing-secret",
        SLACK_RESPONSE_HOSTS="127.0.0.1",  # never post to Slack from a test
    )  # fmt: skip
    assert rc == 0
    assert result["statusCode"] == status
    assert "Traceback" not in result["body"]
    body = json.loads(result["body"])
    if event.startswith("search"):
        assert status != 200 or (body["results"] and body["meta"]["degraded"] == [])
    if event == "mcp_tools_list.json":
        assert {t["name"] for t in body["result"]["tools"]} == {"kb_search", "kb_get_note", "kb_list"}
    if status == 422:
        fields = {d["loc"][-1] for d in body["detail"]}
        assert {"query", "top_k", "colour"} <= fields


def test_invoke_errors_are_clear() -> None:
    proc = subprocess.run(
        [*KBSEARCH_CMD, "invoke", "NoSuchFunction", "--event", str(EVENTS / "health.json")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=subprocess_env(),
        check=False,
    )
    assert proc.returncode == 2
    assert "no function 'NoSuchFunction'" in proc.stderr and "SearchFunction" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_invoke_missing_event_file_is_clear() -> None:
    rc, _, err = invoke("SearchFunction", Path("/nonexistent/event.json"))
    assert rc == 2 and "cannot read event file" in err and "Traceback" not in err


UNREADABLE_JSON_FILES = {
    "deep arrays": ("[" * 5000 + "]" * 5000).encode(), "deep objects": ('{"a":' * 3000 + "1" + "}" * 3000).encode(),
    "Latin-1": '{"q": "café"}'.encode("latin-1"), "UTF-16": '{"q": "x"}'.encode("utf-16"), "binary": b"\x00\xff\xfe",
    "not JSON": b"{q: x}", "cut short": b'{"httpMethod": "GE',
}  # fmt: skip


@pytest.mark.parametrize("flag", ["--event", "--env-vars", "stdin"])
@pytest.mark.parametrize("content", UNREADABLE_JSON_FILES.values(), ids=UNREADABLE_JSON_FILES.keys())
def test_invoke_json_files_that_cannot_be_read_are_one_line(tmp_path: Path, flag: str, content: bytes) -> None:
    """An event (file or ``-``) or ``--env-vars`` file that is not UTF-8, not JSON, or nested past the parser's
    recursion limit: exit 2 and one line naming the file and what is wrong, never a traceback (nesting and bytes
    that are not UTF-8 were tracebacks)."""
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    args = {"--event": ["--event", str(bad)], "stdin": ["--event", "-"],
            "--env-vars": ["--event", str(EVENTS / "health.json"), "--env-vars", str(bad)]}[flag]  # fmt: skip
    proc = subprocess.run([*KBSEARCH_CMD, "invoke", "SearchFunction", *args], input=content if flag == "stdin" else b"",
                          capture_output=True, cwd=ROOT, env=subprocess_env(), check=False, timeout=60)  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2 and proc.stdout == b"", err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert ("event" if flag != "--env-vars" else "env vars file") in err
    assert any(what in err for what in ("not UTF-8", "not valid JSON")), err


NO_GATEWAY_EVENTS = {
    "empty": "{}", "an array": "[]", "a string": '"health"', "null": "null", "no path": '{"httpMethod": "GET"}',
    "HTTP API 2.0": json.dumps({"version": "2.0", "routeKey": "GET /health", "rawPath": "/health",
                                "requestContext": {"http": {"method": "GET", "path": "/health"}}}),
    "headers a list": json.dumps({"httpMethod": "GET", "path": "/health", "resource": "/health", "headers": ["x"],
                                  "requestContext": {"requestId": "r"}}),
}  # fmt: skip


@pytest.mark.parametrize("event", NO_GATEWAY_EVENTS.values(), ids=NO_GATEWAY_EVENTS.keys())
def test_invoke_search_with_an_event_no_gateway_sends_prints_a_400(tmp_path: Path, event: str) -> None:
    """`kbsearch invoke SearchFunction` with an event that is no REST API proxy event prints the function's 400
    naming what is wrong (it printed Lambda's error envelope, `{"errorType": "KeyError", "errorMessage":
    "'httpMethod'"}`, as the function raised)."""
    path = tmp_path / "event.json"
    path.write_text(event)
    rc, result, err = invoke("SearchFunction", path, QDRANT_PATH=str(tmp_path / "q"))
    assert rc == 0 and result["statusCode"] == 400, (result, err)
    assert json.loads(result["body"])["message"].startswith("not an API Gateway REST API proxy event: "), result
    assert "Traceback" not in err


def test_health_path_imports_nothing_heavy() -> None:
    """A fresh interpreter answers /health through the real handler without the heavy modules."""
    code = f"""
import json, sys
from kbsearch_tools.local.template import Template
from kbsearch_tools.local.runtime import LocalFunction, function_environment
import os
t = Template({str(ROOT / "template.yaml")!r})
spec = t.function("SearchFunction")
fn = LocalFunction(spec, t.region, function_environment(spec, t.region, os.environ))
event = json.load(open({str(EVENTS / "health.json")!r}))
result = fn.invoke(event)
heavy = [m for m in ("qdrant_client", "numpy", "boto3", "aws_xray_sdk", "grpc", "botocore.session", "httpx",
                   "aws_lambda_powertools.event_handler.openapi.models")  # ~200 ms of pydantic models, /docs only
         if m in sys.modules]
print(json.dumps({{"status": result["statusCode"], "heavy": heavy}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=subprocess_env(), check=True
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"status": 200, "heavy": []}


@pytest.fixture
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    env = {"QDRANT_PATH": str(tmp_path / "q"), **getattr(request, "param", {})}
    with serve_process(subprocess_env(**env), cwd=ROOT) as server:
        yield server.base_url


def test_serve_answers_health_over_http(served: str) -> None:
    t0 = time.monotonic()
    r = httpx.get(f"{served}/health", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["status"] == "ok"
    assert time.monotonic() - t0 < 10
    # API Gateway's answers for routes that do not exist
    r = httpx.get(f"{served}/nope", timeout=10)
    assert r.status_code == 403 and r.json() == {"message": "Missing Authentication Token"}
    r = httpx.post(f"{served}/search", json={"query": ""}, timeout=10)
    assert r.status_code == 422  # no keys configured: the route is open locally


@pytest.mark.parametrize("served", [{"KB_LOCAL_API_KEYS": "k1,k2"}], indirect=True)
def test_serve_honours_api_keys(served: str) -> None:
    assert httpx.post(f"{served}/search", json={"query": "x"}, timeout=10).status_code == 403
    assert (
        httpx.post(f"{served}/search", json={"query": "x"}, headers={"x-api-key": "bad"}, timeout=10).status_code == 403
    )
    assert (
        httpx.post(f"{served}/search", json={"query": ""}, headers={"x-api-key": "k2"}, timeout=10).status_code == 422
    )
    assert httpx.get(f"{served}/health", timeout=10).status_code == 200  # no key on health


@pytest.mark.parametrize(
    "served",
    [{"KB_LOCAL_API_KEYS": "k1:hr", "ACCESS_GROUPS": groups}
     for groups in ("[" * 5000 + "]" * 5000, '{"api_keys": ' + "[" * 5000 + "]" * 5000 + "}", "{not json", "[]",
                    '{"api_keys": [1]}', '{"api_keys": "x"}', '{"api_keys": {"kx": ["hr"], "kx": ["public"]}}',
                    '{"api_keys": {"kx": ["hr"]}, "api_keys": {}}')],
    indirect=True,
    ids=["deep", "deep inside", "not JSON", "a list", "api_keys a list", "api_keys a string", "a key id twice",
         "api_keys twice"],
)  # fmt: skip
def test_serve_with_a_shell_caller_mapping_that_is_not_one_gives_public_only(served: str) -> None:
    """``kbsearch serve`` merges the shell's ``ACCESS_GROUPS`` with the local keys' groups: a shell mapping that is
    no mapping (nested past the JSON parser's recursion limit, not JSON, a list, ``api_keys`` no object, a key
    given twice in one object) leaves every caller ``public`` only, and the routes answer (nesting was a 500 on
    every route that reads the caller; ``api_keys`` a list or a string stopped ``kbsearch serve`` at start-up with
    a traceback; a key given twice was merged as its last value, so the local key kept ``hr``)."""
    for _ in range(2):
        r = httpx.get(f"{served}/whoami", headers={"x-api-key": "k1"}, timeout=30)
        assert r.status_code == 200 and r.json()["groups"] == ["public"], r.text
    r = httpx.post(f"{served}/search", json={"query": "x"}, headers={"x-api-key": "k1"}, timeout=30)
    assert r.status_code in (200, 503), r.text  # 503: no index in this store; never a 500


@pytest.mark.parametrize("keys", ["k1:hr,k1", "k1,k1:hr", "k1:hr, k1 :security"])
def test_serve_with_a_local_key_given_twice_stops_naming_the_entry(keys: str, tmp_path: Path) -> None:
    """``KB_LOCAL_API_KEYS`` giving one key twice: one line naming the entry, never the key (the last entry won
    silently: ``k1:hr,k1`` gave ``k1`` public notes only, ``k1,k1:hr`` gave it ``hr``)."""
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_LOCAL_API_KEYS=keys)
    proc = subprocess.run([*KBSEARCH_CMD, "serve", "--port", "0"], capture_output=True, text=True, env=env,
                          cwd=ROOT, check=False, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout  # a setting error (exit 1 before round 27)
    assert proc.stderr.strip().splitlines() == [
        "kbsearch serve: error: KB_LOCAL_API_KEYS entry 2: gives a key an earlier entry gives (give each key once, "
        "with all its groups: key:group+group)"
    ], proc.stderr


def test_invoke_indexer_schedule_event(tmp_path: Path) -> None:
    env = {"KB_SOURCE": str(ROOT / "sample-kb"), "QDRANT_PATH": str(tmp_path / "q")}
    rc, report, _ = invoke("IndexerFunction", EVENTS / "indexer_schedule.json", **env)
    assert rc == 0, report
    assert report["added"] >= 30 and report["dense"] is False and report["incomplete"] is False
    assert [s["path"] for s in report["skipped"]] == ["en/Broken frontmatter.md"]
    rc, again, _ = invoke("IndexerFunction", EVENTS / "indexer_schedule.json", **env)
    assert rc == 0 and again["unchanged"] == report["added"] and again["embedding_calls"] == 0


def test_invoke_indexer_with_a_missing_source_fails_clearly(tmp_path: Path) -> None:
    env = {"KB_SOURCE": str(tmp_path / "nowhere"), "QDRANT_PATH": str(tmp_path / "q")}
    rc, result, _ = invoke("IndexerFunction", EVENTS / "indexer_schedule.json", **env)
    assert rc == 1
    assert result["errorType"] == "SourceError" and "does not exist" in result["errorMessage"]


def test_kbsearch_index_cli_json_and_summary(tmp_path: Path) -> None:
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"))
    cmd = [*KBSEARCH_CMD, "index", str(ROOT / "sample-kb")]
    first = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, check=False, timeout=120)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    for key in (
        "added", "updated", "deleted", "unchanged", "skipped", "attachments_ignored", "chunks_upserted",
        "chunks_deleted", "embedding_calls", "embedding_tokens", "duration_ms", "incomplete", "dense",
    ):  # fmt: skip
        assert key in report
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=120)
    assert second.returncode == 0
    assert "sync done" in second.stdout and "unchanged" in second.stdout
    assert "skipped en/Broken frontmatter.md: invalid YAML frontmatter" in second.stdout
    missing = subprocess.run([*KBSEARCH_CMD, "index"], capture_output=True, text=True, env=env, check=False)
    assert missing.returncode == 2 and "no KB source" in missing.stderr


def test_kbsearch_search_cli(sample_index: Path) -> None:
    env = subprocess_env(QDRANT_PATH=str(sample_index))
    table = subprocess.run(
        [*KBSEARCH_CMD, "search", "ротация ключей", "--top-k", "3"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert table.returncode == 0, table.stderr
    assert "Ротация ключей провайдеров" in table.stdout and "ru/ранбуки/Ротация ключей.md" in table.stdout
    as_json = subprocess.run(
        [*KBSEARCH_CMD, "search", "snapshot", "--tag", "runbook", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    answer = json.loads(as_json.stdout)
    assert answer["results"] and all("runbook" in h["tags"] for h in answer["results"])
    bad = subprocess.run(
        [*KBSEARCH_CMD, "search", "x", "--top-k", "99"], capture_output=True, text=True, env=env, check=False
    )
    assert bad.returncode == 2 and "--top-k: results are 1-20, got 99" in bad.stderr and "Traceback" not in bad.stderr


def test_invoke_freshly_signed_slack_event(tmp_path: Path, sample_index: Path) -> None:
    import base64
    import time

    from kbsearch.slack import sign

    event = json.loads((EVENTS / "slack_command.json").read_text())
    body = base64.b64decode(event["body"])
    ts = str(int(time.time()))
    for headers in (event["headers"], event["multiValueHeaders"]):
        signature = sign("test-signing-secret", ts, body)
        headers["X-Slack-Request-Timestamp"] = ts if headers is event["headers"] else [ts]
        headers["X-Slack-Signature"] = signature if headers is event["headers"] else [signature]
    fresh = tmp_path / "slack.json"
    fresh.write_text(json.dumps(event))
    rc, result, _ = invoke(
        "SearchFunction", fresh, QDRANT_PATH=str(sample_index), SLACK_SIGNING_SECRET="test-signing-secret",
        SLACK_RESPONSE_HOSTS="127.0.0.1",
    )  # fmt: skip
    assert rc == 0 and result["statusCode"] == 200
    assert json.loads(result["body"])["text"] == "Searching for “qdrant snapshot restore”…"


#: A votes file (``SLACK_FEEDBACK_FILE``) line that cannot be read: nested past the parser's recursion limit, not
#: UTF-8 (Latin-1, UTF-16), an encoded surrogate.
UNREADABLE_VOTES = {"nested": b"[" * 100_000 + b"]" * 100_000, "Latin-1": b'{"query": "caf\xe9"}',
                    "UTF-16": '{"query": "x"}'.encode("utf-16"), "a surrogate": b'{"query": "\xed\xa0\x80"}'}  # fmt: skip


@pytest.mark.parametrize("line", UNREADABLE_VOTES.values(), ids=UNREADABLE_VOTES.keys())
def test_feedback_export_of_a_votes_file_that_cannot_be_read_is_one_line(tmp_path: Path, line: bytes) -> None:
    """`kbsearch feedback export` over a votes file whose second line cannot be read: exit 2 and one line naming the
    file, the line and what is wrong, nothing written (nesting and bytes that are not UTF-8 were tracebacks). In
    DynamoDB (moto) a record nested so deep, or of another type, is left out as an unreadable record (nesting was a
    traceback there too); text that decodes is a vote like any other."""
    import boto3
    from moto import mock_aws

    from kbsearch.feedback import DynamoFeedbackStore, vote_record

    good = vote_record("snapshot", {}, 0, ["en/runbooks/Runbook - restore a Qdrant snapshot.md"], 1, "up", "h")
    votes = tmp_path / "votes.jsonl"
    votes.write_bytes(json.dumps(good).encode() + b"\n" + line + b"\n")
    proc = subprocess.run([*KBSEARCH_CMD, "feedback", "export", "--beir", str(tmp_path / "o"), "--kb",
                           str(ROOT / "sample-kb"), "--file", str(votes), "--table", ""],
                          capture_output=True, cwd=ROOT, env=subprocess_env(), check=False, timeout=120)  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "votes.jsonl:2:" in err and not (tmp_path / "o").exists(), err
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="votes", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")  # fmt: skip
        DynamoFeedbackStore("votes", ddb).put(good)
        text = line.decode("utf-8", "replace")
        records: list[dict[str, Any]] = [{"S": text}, {"N": "1"}, {"B": line}, {"L": []}]
        for i, record in enumerate(records):
            ddb.put_item(TableName="votes", Item={"id": {"S": f"hand-{i}"}, "record": record})
        queries = [r.get("query") for r in DynamoFeedbackStore("votes", ddb).scan()]  # never a RecursionError
        assert queries.count("snapshot") == 1 and (len(queries) == 1 or b"[[" not in line), queries
