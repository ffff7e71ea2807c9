"""Dependencies that answer 200 with something built to hurt: through the real search service, with the loopback
provider fakes answering exactly the bytes given (``Fault(body=...)``)."""

from __future__ import annotations

import gzip
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
from kbsearch.providers.resilience import ProviderError, RetryPolicy, post_json, shared_client
from kbsearch.schemas import SearchRequest, SearchResponse
from kbsearch.search import SearchService
from kbsearch_tools.fakes import FakeEndpoint, FakeProvider, provider_env
from tests.conftest import ROOT, copy_store
from tests.integration.test_hostile_input import GOOD, SLACK_SECRET, form, request, slack_request


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
#: inside a JSON string: ~30 s of the search's CPU, 100 KB took 8 s; the budget bounds waiting, not work).
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


def test_rewrites_with_control_characters_or_nothing_to_search_are_cleaned_or_dropped(
    search: SearchService, deepinfra: FakeProvider
) -> None:
    """Control characters in a rewrite (NUL, a terminal's escape sequences, BEL, DEL, C1) are dropped from it, as
    the whitespace between its words is folded; a rewrite with no letter or digit left (NUL alone, punctuation,
    controls) is no search and is dropped (each was used as written: an embedding and a retrieval leg for
    ``\x00`` or ``!!!``, and ``meta.variants`` sent back the escape sequences a terminal acts on)."""
    rewrites = ["\x00", "\x01\x02\x03", "!!!", "...", " - ", "\x1b[2J\x1b]0;pwned\x07restore backup",
                "snap\x00shot\x7f restore\x85", "third"]  # fmt: skip
    deepinfra.fail("chat", body=chat_answer(json.dumps({"queries": rewrites})))
    answer, _ = _search(search, "restore qdrant snapshot")
    assert "expand" not in answer.meta.degraded
    assert answer.meta.variants == ["restore qdrant snapshot", "[2J]0;pwnedrestore backup", "snapshot restore", "third"]


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


# -- credentials no HTTP header can carry ------------------------------------------------------------------------

#: Keys as a paste into SSM or a shell can leave them: typographic quotes, a zero-width space or a no-break space
#: inside, a Cyrillic look-alike letter, an accent, a line break or NUL inside (surrounding whitespace is stripped:
#: `test_secrets_pasted_with_surrounding_whitespace_still_work`).
UNSENDABLE_KEYS = {
    "typographic quotes": "“{key}”",
    "zero-width space": "{key}\u200b",
    "no-break space": "{key}\u00a0x",
    "cyrillic look-alike": "{key}-к",
    "accent": "{key}é",
    "line break inside": "{key}\nx",
    "NUL inside": "{key}\x00x",
}


@pytest.fixture
def handler(bm25_index: Path, tmp_path: Path, load_search_app: Any) -> Any:
    def load(**env: str) -> Any:
        store = tmp_path / "q"
        copy_store(bm25_index, store)
        return load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"), **env)

    return load


@pytest.mark.parametrize("ssm", [False, True], ids=["environment", "ssm"])
@pytest.mark.parametrize("pasted", list(UNSENDABLE_KEYS.values()), ids=list(UNSENDABLE_KEYS))
def test_a_provider_key_no_header_can_carry_degrades_its_stage(
    handler: Any, deepinfra: FakeProvider, pasted: str, ssm: bool
) -> None:
    """The key went into the ``Authorization`` header as is: httpx raised ``UnicodeEncodeError`` (not an HTTP
    error): the expansion stage let it through, every search was a 500; reranking and embeddings counted it as
    an "unexpected failure" of the provider. Now: that stage degrades, its reason naming the setting, never the
    key; the provider is not called with it."""
    bad = pasted.format(key=deepinfra.api_key)
    if "\x00" in bad and not ssm:
        pytest.skip("no environment variable can hold a NUL")
    env = {k: v for k, v in provider_env(deepinfra, roles=("RERANKER", "EXPANSION")).items() if not k.endswith("KEY")}
    with mock_aws():
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
        if ssm:
            client = boto3.client("ssm", region_name="us-east-1")
            for name in ("RERANKER_API_KEY", "EXPANSION_API_KEY"):
                client.put_parameter(Name=f"/kb/{name}", Type="SecureString", Value=bad)
                env[f"{name}_PARAM"] = f"/kb/{name}"
        else:
            env |= {"RERANKER_API_KEY": bad, "EXPANSION_API_KEY": bad}
        call = handler(**env)
        result = call(request("POST", "/search", GOOD))
        parameters.clear_caches()
    assert result["statusCode"] == 200, result["body"]
    answer = json.loads(result["body"])
    assert answer["results"] and {"expand", "rerank"} <= set(answer["meta"]["degraded"]), answer["meta"]
    assert deepinfra.calls("chat") == [] and deepinfra.calls("rerank") == []
    assert bad not in result["body"]


@pytest.mark.parametrize("pasted", list(UNSENDABLE_KEYS.values()), ids=list(UNSENDABLE_KEYS))
def test_the_error_of_an_unsendable_key_names_its_setting_never_the_key(deepinfra: FakeProvider, pasted: str) -> None:
    bad = pasted.format(key=deepinfra.api_key)
    settings = Settings(**provider_env(deepinfra, roles=("EXPANSION",), fields=True) | {"expansion_api_key": bad})
    with pytest.raises(ProviderError) as caught:
        post_json(shared_client(), settings.expansion.primary, Secrets(settings), {"model": "m"}, RetryPolicy(), None)
    assert caught.value.kind == "auth" and "EXPANSION_API_KEY" in str(caught.value) and bad not in str(caught.value)
    assert deepinfra.calls("chat") == []


@pytest.mark.parametrize("pasted", list(UNSENDABLE_KEYS.values()), ids=list(UNSENDABLE_KEYS))
def test_a_qdrant_key_no_header_can_carry_is_a_503(pasted: str, load_search_app: Any) -> None:
    """The same for Qdrant Cloud's ``api-key`` header (the search's REST reads): a 500 before, now the documented
    503 with nothing of the key, and Qdrant never called."""
    if "\x00" in pasted:
        pytest.skip("no environment variable can hold a NUL")
    endpoint = FakeEndpoint().start()
    try:
        call = load_search_app(QDRANT_URL=endpoint.url, QDRANT_API_KEY=pasted.format(key="qdrant-key"))
        result = call(request("POST", "/search", GOOD))
    finally:
        endpoint.stop()
    assert result["statusCode"] == 503, result
    assert "qdrant-key" not in result["body"] and endpoint.requests == []


@pytest.mark.parametrize("pasted", list(UNSENDABLE_KEYS.values()), ids=list(UNSENDABLE_KEYS))
def test_a_sync_with_a_qdrant_key_no_header_can_carry_reports_it(pasted: str) -> None:
    """The indexer's qdrant-client raised ``UnicodeEncodeError`` out of the sync (a traceback, no report)."""
    endpoint = FakeEndpoint().start()
    key = pasted.format(key="qdrant-key")
    try:
        settings = Settings(qdrant_url=endpoint.url, qdrant_api_key=key, embedding_api_key=None)
        report = run_sync(settings, Secrets(settings), source_uri=str(ROOT / "sample-kb"))
    finally:
        endpoint.stop()
    assert report.error and "QDRANT_API_KEY" in report.error and key not in report.error
    assert endpoint.requests == []


# -- SSM failing on some parameters --------------------------------------------------------------------------------

#: SSM's own answers (JSON 1.1, as botocore parses them) to a ``GetParameters`` (all the SecureStrings in one call)
#: that Powertools swallows: it then lists every parameter of the batch as "not found". ``InvalidKeyId``: one
#: SecureString's KMS key is disabled, deleted or denied (its ``GetParameter`` fails alike; the others read);
#: ``InternalServerError``: SSM failing for a moment (the three attempts botocore makes; a read after them succeeds).
SSM_FAILURES = {
    "one SecureString that does not decrypt": ("InvalidKeyId", 400, "/kb/SLACK_SIGNING_SECRET", None),
    "SSM failing once (500, every attempt)": ("InternalServerError", 500, None, 3),
}


@pytest.mark.parametrize("failure", list(SSM_FAILURES.values()), ids=list(SSM_FAILURES))
def test_ssm_failing_on_a_batch_never_unsets_the_secrets_it_can_read(
    handler: Any,
    deepinfra: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    failure: tuple[str, int, str | None, int | None],
) -> None:
    """Powertools answers a ``GetParameters`` failing with ``InvalidKeyId`` or ``InternalServerError`` by listing
    every parameter asked as not found: every secret was unset for ``SECRETS_TTL_S`` (5 minutes; expansion and
    reranking degraded "no API key configured", Qdrant Cloud asked without its key), logged as "not found" once per
    process. Each is now read alone: the keys that read are used, the one that does not decrypt is an error of its
    own (never "not configured"), nothing is said to be missing."""
    import botocore.handlers
    from botocore.awsrequest import AWSResponse, HTTPHeaders
    from moto.core.botocore_stubber import MockRawResponse

    code, status, bad, times = failure
    answered: list[str] = []

    def ssm_answers(request: Any, **_: Any) -> Any:  # SSM over HTTP, before moto: the failing answer
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        if not target.startswith(("AmazonSSM.GetParameter", "AmazonSSM.GetParameters")):
            return None
        body = json.loads(request.body or b"{}")
        asked = body.get("Names") or [body.get("Name")]
        if (bad is not None and bad in asked) or (target.endswith(".GetParameters") and len(answered) < (times or 0)):
            answered.append(target)
            raw = json.dumps({"__type": code, "message": "injected"}).encode()
            headers = HTTPHeaders()
            headers["Content-Type"] = "application/x-amz-json-1.1"
            return AWSResponse(request.url, status, headers, MockRawResponse(raw))
        return None

    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [("before-send", ssm_answers),
                                                                 *botocore.handlers.BUILTIN_HANDLERS])  # fmt: skip
    secrets = {"RERANKER_API_KEY": deepinfra.api_key, "EXPANSION_API_KEY": deepinfra.api_key,
               "SLACK_SIGNING_SECRET": SLACK_SECRET}  # fmt: skip
    env = {k: v for k, v in provider_env(deepinfra, roles=("RERANKER", "EXPANSION")).items() if not k.endswith("KEY")}
    with mock_aws():
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
        client = boto3.client("ssm", region_name="us-east-1")
        for name, value in secrets.items():
            client.put_parameter(Name=f"/kb/{name}", Type="SecureString", Value=value)
            env[f"{name}_PARAM"] = f"/kb/{name}"
        call = handler(**env)
        result = call(request("POST", "/search", GOOD))
        slack = call(slack_request(form("help")))
        parameters.clear_caches()
    assert answered, "the failing answer was never given"
    # the JSON lines on stdout, or the records (where the logger's stream is another test's capture)
    logs = capsys.readouterr().out + "".join(f"{r.getMessage()} {getattr(r, 'error', '')}" for r in caplog.records)
    assert result["statusCode"] == 200, result["body"]
    meta = json.loads(result["body"])["meta"]
    assert meta["degraded"] == [] and meta["reranker"] == "deepinfra", meta
    # the secret that does not decrypt is SSM failing on it (503, the parameter and its error logged), not unset
    assert slack["statusCode"] == (503 if bad else 200), slack["body"]
    assert ("InvalidKeyId" in logs and "SLACK_SIGNING_SECRET" in logs) if bad else True
    assert "not found" not in logs and "not configured" not in slack["body"]
    assert deepinfra.api_key not in logs + slack["body"] and SLACK_SECRET not in logs + slack["body"]


# -- answers that are not the encoding they name -----------------------------------------------------------------

#: 200s whose Content-Encoding their bytes are not: httpx's ``DecodingError`` is no transport error, so it escaped
#: the outbound policy (expansion and the search's Qdrant reads: a 500; reranking: an "unexpected failure").
MISENCODED = {
    "gzip garbage": ("gzip", b"\x1f\x8b\x08 not gzip at all"),
    "gzip of something else": ("gzip", b"plain text"),
    "deflate garbage": ("deflate", b"not deflate"),
    "gzip, then deflate": ("gzip, deflate", gzip.compress(b'{"a": 1}')),
}


@pytest.mark.parametrize(("encoding", "body"), list(MISENCODED.values()), ids=list(MISENCODED))
def test_provider_answers_not_in_the_encoding_they_name_degrade_their_stage(
    handler: Any, encoding: str, body: bytes
) -> None:
    endpoint = FakeEndpoint().start()
    endpoint.body, endpoint.content_type, endpoint.headers = body, "application/json", {"Content-Encoding": encoding}
    try:
        call = handler(EXPANSION_URL=f"{endpoint.url}/v1/chat/completions", EXPANSION_API_KEY="k",
                       RERANKER_URL=f"{endpoint.url}/inference/v1/rerank", RERANKER_API_KEY="k")  # fmt: skip
        result = call(request("POST", "/search", GOOD))
    finally:
        endpoint.stop()
    assert result["statusCode"] == 200, result["body"]
    answer = json.loads(result["body"])
    assert answer["results"] and {"expand", "rerank"} <= set(answer["meta"]["degraded"]), answer["meta"]
    assert len(endpoint.requests) >= 2  # both were asked


@pytest.mark.parametrize(("encoding", "body"), list(MISENCODED.values()), ids=list(MISENCODED))
def test_a_qdrant_answer_not_in_the_encoding_it_names_is_a_503(
    encoding: str, body: bytes, load_search_app: Any
) -> None:
    endpoint = FakeEndpoint().start()
    endpoint.body, endpoint.content_type, endpoint.headers = body, "application/json", {"Content-Encoding": encoding}
    try:
        result = load_search_app(QDRANT_URL=endpoint.url, QDRANT_API_KEY="qdrant-key")(request("POST", "/search", GOOD))
    finally:
        endpoint.stop()
    assert result["statusCode"] == 503, result
    assert "Retry-After" in result["multiValueHeaders"], result


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_provider_answering_a_redirect_degrades_its_stage_never_used(handler: Any, status: int) -> None:
    """An expansion endpoint answering 3xx (a moved endpoint, a proxy's redirect) with a body that reads as an
    answer: the body was taken for the model's (any status under 400 was a success), rewrites the model never
    wrote searched. A redirect is not followed (the key would go where it says) nor read: `expand` degraded, the
    search answered."""
    endpoint = FakeEndpoint(status=status).start()
    endpoint.body = chat_answer(json.dumps({"queries": ["redirected rewrite"]}))
    endpoint.content_type = "application/json"
    endpoint.headers = {"Location": "https://elsewhere.example/v1/chat/completions"}
    try:
        call = handler(EXPANSION_URL=f"{endpoint.url}/v1/chat/completions", EXPANSION_API_KEY="k")
        result = call(request("POST", "/search", GOOD))
    finally:
        endpoint.stop()
    assert result["statusCode"] == 200, result["body"]
    answer = json.loads(result["body"])
    assert answer["results"] and "expand" in answer["meta"]["degraded"], answer["meta"]
    assert "redirected rewrite" not in json.dumps(answer["meta"]), answer["meta"]


class _ScoreOutOfRange(FakeProvider):
    """A reranker whose last document's score is ``score``, outside [0, 1] (DeepInfra's native contract answers a
    probability; Fireworks' standard one states no range, providers.md), the rest as the fake scores them."""

    score = 0.0

    def _rerank(self, body: dict[str, Any], fault: Any) -> tuple[int, Any]:
        status, answer = super()._rerank(body, fault)
        if status == 200 and "scores" in answer:
            answer["scores"][-1] = self.score
        elif status == 200:
            last = max(answer["data"], key=lambda item: item["index"])
            last["relevance_score"] = self.score
        return status, answer


@pytest.mark.parametrize("flavor", ["deepinfra", "fireworks"])
@pytest.mark.parametrize("score", [5.0, 1.7e308, -0.5, -1.7e308, 1.0000001])
def test_rerank_scores_outside_the_contracts_probability_are_no_answer(
    bm25_index: Path, tmp_path: Path, deepinfra: FakeProvider, flavor: str, score: float
) -> None:
    """Round 23c. The final score relies on rerank scores in [0, 1]: ``RERANK_WEIGHT=1`` uses them as they are, and
    an exact match stays first by standing 2 above them. A reranker answering 5.0 for one document put it above every
    exact match; 1.7e308 (x the prior's 1.1) made its score ``inf`` in the answer. DeepInfra's native contract
    answers a probability (providers.md): such an answer is ``malformed``, the fallback's scores are used. Fireworks'
    standard contract states no range (rev23): its scores are read as logits, through the logistic, so no fallback
    is asked and the bound holds the same."""
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    lying = _ScoreOutOfRange(flavor, api_key=f"{flavor[:2]}-test-key").start()
    lying.score = score
    try:
        env = provider_env(lying, deepinfra if flavor == "fireworks" else None, roles=("RERANKER",), fields=True)
        if flavor == "deepinfra":
            honest = FakeProvider("fireworks", api_key="fw-test-key").start()
            env |= provider_env(None, honest, roles=("RERANKER",), fields=True)
        else:  # Fireworks names the model in the body
            env |= {"reranker_model": FakeProvider.RERANK_MODEL["fireworks"], "reranker_fallback_model": "m"}
        settings = Settings(**env, qdrant_path=str(store), search_budget_s=3, rerank_weight=1.0, search_prior=True)
        service = SearchService(settings, Secrets(settings))
        try:
            answer = service.search(SearchRequest(query="restore snapshot", expand=False))
        finally:
            service.close()
        if flavor == "deepinfra":
            honest.stop()
    finally:
        lying.stop()
    assert answer.meta.degraded == (["rerank_fallback"] if flavor == "deepinfra" else []), answer.meta
    scores = [h.scores.rerank for h in answer.results]
    assert all(s is not None and 0 <= s <= 1 for s in scores), scores
    assert all(math.isfinite(h.score) and h.score < 3.3 for h in answer.results), answer.results
