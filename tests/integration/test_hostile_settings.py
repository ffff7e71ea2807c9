"""Settings that every request would trip over: one clear message at load (``/health`` names it, searches 503
``not_configured``), never a 500 per request. Through the search handler with API Gateway events."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from kbsearch.config import Settings
from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.integration.test_hostile_input import ACCESS_PARAM, handler, request

__all__ = ["handler"]  # the fixture, shared with test_hostile_input

#: Rerank URLs whose path names neither contract (``…/rerank``, ``…/v1/inference/<model>``), with the style left
#: ``auto``: building the reranker raised ``ValueError`` inside every search (a 500 each, the reason in the log).
NO_CONTRACT = ["http://127.0.0.1:9", "https://api.example.com/v1/rank", "https://api.example.com/rerank/v2",
               "https://api.example.com/v1/inference"]  # fmt: skip


@pytest.mark.parametrize("setting", ["RERANKER_URL", "RERANKER_FALLBACK_URL"])
@pytest.mark.parametrize("url", NO_CONTRACT)
def test_a_rerank_url_that_names_no_contract_is_one_message_at_load(
    setting: str, url: str, load_search_app: Any
) -> None:
    call = load_search_app(**{setting: url, f"{setting.removesuffix('URL')}API_KEY": "k"})
    health = call(build_event(HttpRequest("GET", "/health", "", [], b""), "/health", {}, "dev"))
    body = json.loads(health["body"])
    style = setting.removesuffix("URL") + "API_STYLE"
    assert health["statusCode"] == 200 and body["ready"] is False
    assert body["reasons"] == [f"invalid setting {style}: 'auto' cannot tell the rerank contract from {setting}'s "
                               "path (neither …/rerank nor …/v1/inference/<model>): set it to native or standard"]  # fmt: skip
    search = call(build_event(HttpRequest("GET", "/search", "q=x", [], b""), "/search", {}, "dev"))
    assert search["statusCode"] == 503 and json.loads(search["body"])["error"] == "not_configured"


@pytest.mark.parametrize("url", NO_CONTRACT)
@pytest.mark.parametrize("style", ["native", "standard"])
def test_a_rerank_url_with_its_style_named_is_accepted(url: str, style: str) -> None:
    settings = Settings(reranker_url=url, reranker_api_style=style, reranker_fallback_url=url,
                        reranker_fallback_api_style=style)  # fmt: skip
    assert settings.reranking.primary.api_style == style and settings.reranking.fallback.api_style == style


def test_a_caller_mapping_naming_each_key_once_is_used(handler: Any) -> None:
    """A key named twice in one object makes the mapping unreadable (``test_a_caller_mapping_that_is_not_one_gives_
    public_only``); the same keys in different objects are not repeats: the mapping is read, ``k1`` holds ``hr``."""
    value = '{"api_keys": {"k1": {"name": "portal", "groups": ["hr"]}, "k2": {"name": "x", "groups": ["hr"]}}}'
    with mock_aws():
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
        boto3.client("ssm", region_name="us-east-1").put_parameter(Name=ACCESS_PARAM, Type="SecureString", Value=value)
        who = request("GET", "/whoami", content_type=None)
        who["requestContext"]["identity"]["apiKeyId"] = "k1"
        result = handler(ACCESS_GROUPS_PARAM=ACCESS_PARAM)(who)
        parameters.clear_caches()
    assert sorted(json.loads(result["body"])["groups"]) == ["hr", "public"]
