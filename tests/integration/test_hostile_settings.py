"""Settings that every request would trip over: one clear message at load (``/health`` names it, searches 503
``not_configured``), never a 500 per request. Through the search handler with API Gateway events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kbsearch.config import Settings
from kbsearch_tools.local.apigw import HttpRequest, build_event

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
