"""Dependencies that answer 200 with something built to hurt: through the real search service, with the loopback
provider fakes answering exactly the bytes given (``Fault(body=...)``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.schemas import SearchRequest, SearchResponse
from kbsearch.search import SearchService
from kbsearch_tools.fakes import FakeProvider, provider_env
from tests.conftest import copy_store


def chat_answer(content: Any, **message: Any) -> bytes:
    """An OpenAI-compatible chat completion whose message holds ``content`` (and any other ``message`` fields)."""
    return json.dumps(
        {
            "id": "chatcmpl-x",
            "object": "chat.completion",
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, **message}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
        ensure_ascii=False,
    ).encode()


@pytest.fixture
def search(bm25_index: Path, tmp_path: Path, deepinfra: FakeProvider) -> Iterator[SearchService]:
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    # the index is BM25-only: expansion and reranking from the fake, no embedder
    env = provider_env(deepinfra, roles=("EXPANSION", "RERANKER"), fields=True)
    settings = Settings(**env, qdrant_path=str(store), search_budget_s=3, expansion_variants=3)
    service = SearchService(settings, Secrets(settings))
    yield service
    service.close()


def _search(service: SearchService, query: str) -> tuple[SearchResponse, float]:
    started = time.monotonic()
    answer = service.search(SearchRequest(query=query))
    return answer, time.monotonic() - started


#: Chat answers whose content made the variant parser backtrack (quadratic in the answer: 200 KB of whitespace
#: inside a JSON string took ~50 s of the search's CPU, past any budget, as the budget bounds waiting, not work).
BACKTRACKING = {
    "spaces inside a rewrite": json.dumps({"queries": ["a" + " " * 200_000 + "b"]}),
    "newlines inside a rewrite": json.dumps({"queries": ["a" + "\n" * 200_000 + "b"]}),
    "spaces between JSON tokens": '{"queries": ["a"' + " " * 200_000 + "]}",
    "unclosed <think> blocks": "<think>" * 30_000 + '["a"]',
    "fence openers": "```json\n" * 25_000 + '["a"]',
}


@pytest.mark.parametrize("content", list(BACKTRACKING.values()), ids=list(BACKTRACKING))
def test_an_expansion_answer_built_to_backtrack_costs_no_time(
    search: SearchService, deepinfra: FakeProvider, content: str
) -> None:
    deepinfra.fail("chat", body=chat_answer(content))
    answer, elapsed = _search(search, "restore qdrant snapshot")
    assert elapsed < 15, elapsed  # 5x the 3 s budget; the parser answers in microseconds unloaded
    assert answer.results and "expand" in answer.meta.degraded and answer.meta.variants == ["restore qdrant snapshot"]


#: Answers that are 200s with no rewrites to use: no content (a refusal, tool calls instead), content of another
#: type, no choices, 10,000 rewrites (far over the 300 tokens asked for: refused unread, as any answer over 16 KiB).
NO_REWRITES = {
    "content null": chat_answer(None),
    "tool calls instead": chat_answer(
        None, tool_calls=[{"id": "c", "type": "function", "function": {"name": "search", "arguments": "{}"}}]
    ),
    "content a list of parts": chat_answer([{"type": "text", "text": '{"queries": ["a"]}'}]),
    "content a number": chat_answer(12),
    "10,000 rewrites": chat_answer(json.dumps({"queries": [f"rewrite {i}" for i in range(10_000)]})),
    "no choices": b'{"choices": []}',
}


@pytest.mark.parametrize("body", list(NO_REWRITES.values()), ids=list(NO_REWRITES))
def test_an_expansion_answer_without_usable_rewrites_degrades_the_stage(
    search: SearchService, deepinfra: FakeProvider, body: bytes
) -> None:
    deepinfra.fail("chat", body=body)
    answer, _ = _search(search, "restore qdrant snapshot")
    assert answer.results and "expand" in answer.meta.degraded and answer.meta.variants == ["restore qdrant snapshot"]


def test_rewrites_that_are_the_query_or_each_other_in_another_form_are_one_search(
    search: SearchService, deepinfra: FakeProvider
) -> None:
    """NFD, full-width letters, another case, zero-width spaces and joiners, a bidi mark, extra whitespace: the
    same search again (a wasted embedding and retrieval leg each), kept out; at most ``n`` rewrites are used."""
    query = "Café résumé"
    same = [
        "Cafe\u0301 re\u0301sume\u0301",  # NFD
        "ＣＡＦÉ RÉSUMÉ",  # full-width, upper case
        "Caf\u200bé\u200d résumé",  # zero-width space and joiner
        "\u200fCafé résumé",  # right-to-left mark
        "  café   résumé ",
        "\u200b",
    ]
    rewrites = [*same, "coffee shop CV", "COFFEE SHOP CV", "coffee\u00a0shop cv", "кафе резюме", "third", "fourth"]
    deepinfra.fail("chat", body=chat_answer(json.dumps({"queries": rewrites}, ensure_ascii=False)))
    answer, _ = _search(search, query)
    assert "expand" not in answer.meta.degraded
    assert answer.meta.variants == [query, "coffee shop CV", "кафе резюме", "third"]


#: The ways models wrap a good answer: still read (the linear parser replaced regular expressions).
WRAPPED = {
    "bare object": '{"queries": ["one", "two"]}',
    "bare list": '["one", "two"]',
    "fenced": '```json\n{"queries": ["one", "two"]}\n```',
    "fenced without a language": '```\n["one", "two"]\n```  ',
    "fenced on one line": '```json {"queries": ["one", "two"]}```',
    "after a think block": '<think>maybe {"queries": ["no"]}</think>\n{"queries": ["one", "two"]}',
    "two think blocks and prose": '<think>a</think><think>[b]</think> Here: ["one", "two"]',
}


@pytest.mark.parametrize("content", list(WRAPPED.values()), ids=list(WRAPPED))
def test_wrapped_expansion_answers_are_still_read(search: SearchService, deepinfra: FakeProvider, content: str) -> None:
    deepinfra.fail("chat", body=chat_answer(content))
    answer, _ = _search(search, "restore qdrant snapshot")
    assert "expand" not in answer.meta.degraded
    assert answer.meta.variants == ["restore qdrant snapshot", "one", "two"]
