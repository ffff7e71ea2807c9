from __future__ import annotations

import base64
import json
from pathlib import Path

from kbsearch_tools.local.apigw import HttpRequest, build_event, parse_result
from kbsearch_tools.local.keys import parse_api_keys
from kbsearch_tools.local.runtime import LambdaContext, function_environment
from kbsearch_tools.local.server import LocalApi
from kbsearch_tools.local.template import Template

ROOT = Path(__file__).resolve().parents[2]


def test_event_has_the_rest_proxy_shape() -> None:
    req = HttpRequest(
        "GET", "/search", "q=a+b&tags=x&tags=y", [("Accept", "*/*"), ("X-Multi", "1"), ("X-Multi", "2")], b""
    )
    ev = build_event(req, "/search", {}, "dev", api_key="k")
    assert ev["httpMethod"] == "GET" and ev["resource"] == "/search" and ev["path"] == "/search"
    assert ev["queryStringParameters"] == {"q": "a b", "tags": "y"}
    assert ev["multiValueQueryStringParameters"] == {"q": ["a b"], "tags": ["x", "y"]}
    assert ev["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert ev["body"] is None and ev["isBase64Encoded"] is False
    ctx = ev["requestContext"]
    assert ctx["stage"] == "dev" and ctx["path"] == "/dev/search" and ctx["identity"]["apiKey"] == "k"
    assert ctx["requestId"]


def test_form_posts_arrive_base64_encoded() -> None:
    body = b"text=%D0%BF%D1%80%D0%B8%D0%B2%D0%B5%D1%82&command=%2Fkb"
    req = HttpRequest("POST", "/slack/command", "", [("Content-Type", "application/x-www-form-urlencoded")], body)
    ev = build_event(req, "/slack/command", {}, "dev")
    assert ev["isBase64Encoded"] is True
    assert base64.b64decode(ev["body"]) == body


def test_json_bodies_arrive_as_text() -> None:
    body = json.dumps({"query": "ёлки"}, ensure_ascii=False).encode()
    ev = build_event(
        HttpRequest("POST", "/search", "", [("Content-Type", "application/json")], body), "/search", {}, "dev"
    )
    assert ev["isBase64Encoded"] is False and json.loads(ev["body"]) == {"query": "ёлки"}


def test_result_translation_and_bad_results() -> None:
    resp = parse_result(
        {"statusCode": 201, "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}, "headers": {"X": "y"}, "body": "hi"}
    )
    assert resp.status == 201 and ("Set-Cookie", "a=1") in resp.headers and ("Set-Cookie", "b=2") in resp.headers
    assert resp.body == b"hi"
    b64 = parse_result({"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True})
    assert b64.body == b"\x00\x01"
    assert parse_result(None).status == 502
    assert parse_result({"body": "no status"}).status == 502


def test_routes_come_from_the_template() -> None:
    t = Template(ROOT / "template.yaml")
    routes = {(r.method, r.path): r for r in t.api_routes()}
    assert routes[("POST", "/search")].api_key_required
    assert routes[("POST", "/mcp")].api_key_required
    assert not routes[("GET", "/health")].api_key_required
    assert not routes[("POST", "/slack/command")].api_key_required
    assert t.stage_name() == "dev"


def test_unknown_route_and_oversized_body_without_loading_functions() -> None:
    api = LocalApi(Template(ROOT / "template.yaml"), parse_api_keys(" a , ,b "))
    assert api.api_keys == {"a": (), "b": ()}
    assert api.handle(HttpRequest("GET", "/nowhere", "", [], b"")).status == 403
    assert api.handle(HttpRequest("POST", "/search", "", [], b"")).status == 403  # key required, none given
    big = api.handle(HttpRequest("POST", "/search", "", [("x-api-key", "a")], b"x" * (10 * 1024 * 1024 + 1)))
    assert big.status == 413


def test_environment_precedence_and_ssm_names_dropped_locally() -> None:
    t = Template(ROOT / "template.yaml", {"Stage": "qa"})
    spec = t.function("SearchFunction")
    assert spec.environment["EMBEDDING_API_KEY_PARAM"] == "/kb-search/qa/deepinfra-api-key"
    # built from the stack's bucket, which exists only deployed: left unset locally, so the function names it
    assert "KB_SOURCE" not in spec.environment
    assert (
        Template(ROOT / "template.yaml", {"KbBucketName": "kb-b"})
        .function("SearchFunction")
        .environment["KB_SOURCE"]
        .startswith("s3://kb-b/")
    )  # a bucket given by name is kept
    env = function_environment(spec, "eu-west-1", {"QDRANT_COLLECTION": "shell"}, {"SearchFunction": {"KB_STAGE": "f"}})
    assert env["QDRANT_COLLECTION"] == "shell" and env["KB_STAGE"] == "f"
    assert "EMBEDDING_API_KEY_PARAM" not in env
    assert env["AWS_SAM_LOCAL"] == "true" and env["AWS_REGION"] == "eu-west-1"
    with_ssm = function_environment(spec, "eu-west-1", {}, None, use_ssm=True)
    assert with_ssm["SLACK_SIGNING_SECRET_PARAM"] == "/kb-search/qa/slack-signing-secret"
    custom = Template(ROOT / "template.yaml", {"SsmPrefix": "/corp/kb"}).function("IndexerFunction")
    assert custom.environment["QDRANT_API_KEY_PARAM"] == "/corp/kb/qdrant-api-key"


def test_lambda_context_counts_down() -> None:
    ctx = LambdaContext(function_name="f", memory_limit_in_mb=128, timeout_s=2)
    remaining = ctx.get_remaining_time_in_millis()
    assert 0 < remaining <= 2000
    assert ctx.invoked_function_arn.endswith(":function:f")
