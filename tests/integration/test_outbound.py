"""The one outbound policy (kbsearch.providers.resilience) against loopback servers that drip, hang, echo keys
and answer garbage: wall-clock deadlines, size caps, strict JSON, redaction, failover that cannot be starved."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Endpoint, Secrets, Settings
from kbsearch.providers.embeddings import build_embedder
from kbsearch.providers.rerankers import build_reranking
from kbsearch.providers.resilience import (
    CircuitBreaker,
    Deadline,
    Outbound,
    ProviderError,
    RetryPolicy,
    failover,
    loads,
    post_json,
    redact,
    send,
    shared_client,
    usage_tokens,
)
from kbsearch.providers.transport import deadline_transport
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch.slack_worker import SlackPostError, post_to_slack
from kbsearch_tools.fakes import FakeEndpoint, FakeProvider
from tests.conftest import copy_store, provider_settings


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    fake = FakeEndpoint().start()
    yield fake
    fake.stop()


def timed(fn: Any) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        fn()
    except BaseException as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


# -- wall-clock deadlines ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("every_s", [0.02, 0.2])
def test_a_dripping_server_is_cut_off_at_the_deadline(endpoint: FakeEndpoint, every_s: float) -> None:
    """Each byte arrives well inside any per-read timeout; only a wall-clock deadline ends the call."""
    endpoint.drip_s = every_s
    endpoint.body, endpoint.content_type = json.dumps({"data": "x" * 500}).encode(), "application/json"
    call = Outbound("dripper", "POST", endpoint.url + "/v1", {"q": 1})
    elapsed, exc = timed(lambda: send(shared_client(), call, RetryPolicy(attempts=1, timeout_s=30), Deadline(1.0)))
    assert isinstance(exc, ProviderError) and exc.kind == "timeout", exc
    assert 0.9 <= elapsed < 5.0, elapsed  # the whole answer would take 10 s or more


def test_the_attempt_timeout_is_wall_clock_too(endpoint: FakeEndpoint) -> None:
    endpoint.drip_s = 0.2  # the head alone takes 15 s or more
    call = Outbound("dripper", "GET", endpoint.url + "/x", expect_json=False)
    elapsed, exc = timed(lambda: send(shared_client(), call, RetryPolicy(attempts=2, timeout_s=0.5), Deadline(30)))
    assert isinstance(exc, ProviderError) and exc.kind == "timeout"
    assert elapsed < 7.0  # two attempts of 0.5 s plus one short backoff (~1.2 s)


def test_a_server_that_never_accepts_is_bounded() -> None:
    """A listening socket whose backlog is never served: connect succeeds at the kernel, nothing answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/x"
        elapsed, exc = timed(
            lambda: send(shared_client(), Outbound("mute", "POST", url, {}), RetryPolicy(attempts=1), Deadline(0.7))
        )
    assert isinstance(exc, ProviderError) and exc.kind == "timeout"
    assert elapsed < 3.5  # the 0.7 s deadline; nothing would ever answer


def port_of(endpoint: FakeEndpoint) -> int:
    return int(endpoint.url.rsplit(":", 1)[1].split("/")[0])


def client_resolving(resolve: Any) -> Any:
    import httpx

    return httpx.Client(transport=deadline_transport(resolve=resolve))


def test_a_resolver_that_hangs_is_bounded_by_the_deadline(endpoint: FakeEndpoint) -> None:
    """DNS is part of the call: a lookup that never answers costs the deadline, not the resolver's own timeouts."""
    release = threading.Event()

    def hung(host: str, port: int) -> list[Any]:
        release.wait(30)
        return socket.getaddrinfo("127.0.0.1", port)

    call = Outbound("slow-dns", "POST", f"http://provider.invalid:{port_of(endpoint)}/v1", {})
    with client_resolving(hung) as client:
        elapsed, exc = timed(lambda: send(client, call, RetryPolicy(attempts=1), Deadline(0.5)))
    release.set()
    assert isinstance(exc, ProviderError) and exc.kind == "timeout", exc
    assert 0.45 <= elapsed < 2.5 and endpoint.requests == []  # the 0.5 s deadline, not the 30 s lookup


@pytest.mark.parametrize(
    "failure",
    [socket.gaierror(-2, "Name or service not known"), OSError("resolver down"), UnicodeError("label empty")],
)
def test_a_name_that_does_not_resolve_is_a_connect_error(endpoint: FakeEndpoint, failure: OSError) -> None:
    def broken(host: str, port: int) -> list[Any]:
        raise failure

    call = Outbound("no-dns", "POST", f"http://provider.invalid:{port_of(endpoint)}/v1", {})
    with client_resolving(broken) as client, pytest.raises(ProviderError) as caught:
        send(client, call, RetryPolicy(attempts=2, base_delay_s=0.01), Deadline(5))
    assert caught.value.kind == "connect" and "Traceback" not in str(caught.value)


def test_a_host_name_the_resolver_cannot_encode_is_a_connect_error_not_a_crash() -> None:
    """An empty label (a typo'd ``..`` in QDRANT_URL) or one over 63 characters: the system resolver raises
    UnicodeError, not OSError."""
    for host in ("my-cluster..cloud.qdrant.example", "x" * 64 + ".example"):
        call = Outbound("typo", "GET", f"http://{host}:6333/collections", expect_json=False)
        with pytest.raises(ProviderError) as caught:
            send(shared_client(), call, RetryPolicy(attempts=1), Deadline(5))
        assert caught.value.kind == "connect", caught.value


def test_every_resolved_address_is_tried_in_order(endpoint: FakeEndpoint) -> None:
    """A name with a dead address first (an old record; the fake listens on 127.0.0.1 only, so 127.0.0.2 refuses)
    still reaches the live one."""
    asked: list[str] = []

    def two_records(host: str, port: int) -> list[Any]:
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]  # fmt: skip

    endpoint.body, endpoint.content_type = b'{"ok": true}', "application/json"
    call = Outbound("two-records", "POST", f"http://provider.invalid:{port_of(endpoint)}/v1", {})
    with client_resolving(two_records) as client:
        answer = send(client, call, RetryPolicy(attempts=1), Deadline(5))
    assert answer.data == {"ok": True} and asked == ["provider.invalid"] and len(endpoint.requests) == 1


def test_retries_never_sleep_past_the_deadline(endpoint: FakeEndpoint) -> None:
    endpoint.status, endpoint.headers = 503, {"Retry-After": "30"}
    slept: list[float] = []
    call = Outbound("busy", "POST", endpoint.url, {})
    with pytest.raises(ProviderError, match="HTTP 503"):
        send(shared_client(), call, RetryPolicy(attempts=5), Deadline(2.0), sleep=slept.append)
    assert slept == [] and len(endpoint.requests) == 1


@pytest.mark.parametrize("value", ["-5", "NaN", "inf", "Wed, 21 Oct 2015 07:28:00 GMT", "soon", "1e400"])
def test_any_retry_after_is_safe(endpoint: FakeEndpoint, value: str) -> None:
    endpoint.status, endpoint.headers = 429, {"Retry-After": value}
    slept: list[float] = []
    with pytest.raises(ProviderError, match="HTTP 429"):
        send(shared_client(), Outbound("busy", "POST", endpoint.url, {}), RetryPolicy(attempts=2), Deadline(5),
             sleep=slept.append)  # fmt: skip
    assert len(slept) == 1 and 0 <= slept[0] <= 10


@pytest.mark.parametrize("deadline_s", [30.0, 5.0])
def test_a_retry_after_longer_than_the_call_can_wait_fails_at_once_naming_the_rate_limit(
    endpoint: FakeEndpoint, deadline_s: float
) -> None:
    """A 429 asking for 60 s, more than the policy's ``max_delay_s`` (10 s) and, at 5 s, more than the deadline:
    the call was retried after 10 s (a retry the provider said it would refuse, again and again until the
    attempts ran out: 30 s of a 900 s indexer run before the fallback was asked) or failed as a bare "HTTP 429". It
    fails at once, once asked, saying the provider rate-limits it and for how long; a Retry-After of 0 (or a date
    past) is retried after the backoff, never in a tight loop."""
    endpoint.status, endpoint.headers = 429, {"Retry-After": "60"}
    slept: list[float] = []
    with pytest.raises(ProviderError) as caught:
        send(shared_client(), Outbound("busy", "POST", endpoint.url, {}), RetryPolicy(attempts=4, max_delay_s=10),
             Deadline(deadline_s), sleep=slept.append)  # fmt: skip
    assert slept == [] and len(endpoint.requests) == 1, slept
    assert caught.value.kind == "rate_limited" and caught.value.status == 429
    assert "rate limited (HTTP 429)" in str(caught.value) and "60s before a retry (Retry-After)" in str(caught.value)

    endpoint.requests.clear()
    endpoint.headers = {"Retry-After": "0"}
    with pytest.raises(ProviderError, match=r"rate limited \(HTTP 429\)"):
        send(shared_client(), Outbound("busy", "POST", endpoint.url, {}),
             RetryPolicy(attempts=4, base_delay_s=0.5, max_delay_s=10), Deadline(deadline_s), sleep=slept.append)  # fmt: skip
    assert len(slept) == 3 and len(endpoint.requests) == 4 and all(0 <= s <= 2.0 for s in slept), slept


# -- untrusted answers --------------------------------------------------------------------------------------------

GARBAGE = {
    "html": b"<html>502 Bad Gateway</html>",
    "nan literal": b'{"a": NaN}',
    "infinity literal": b'{"a": -Infinity}',
    "overflowing number": b'{"a": 1e999}',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "not utf-8": b'{"a": "\xff\xfe"}',
    "truncated": b'{"data": [1, 2',
    "empty": b"",
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_answers_are_malformed_errors(endpoint: FakeEndpoint, name: str) -> None:
    endpoint.body, endpoint.content_type = GARBAGE[name], "application/json"
    with pytest.raises(ProviderError) as info:
        send(shared_client(), Outbound("junk", "POST", endpoint.url, {}), RetryPolicy(attempts=1), Deadline(5))
    assert info.value.kind == "malformed"


def test_answers_over_the_size_cap_are_refused(endpoint: FakeEndpoint) -> None:
    endpoint.body, endpoint.content_type = b'{"a": "' + b"x" * 200_000 + b'"}', "application/json"
    call = Outbound("big", "POST", endpoint.url, {}, max_bytes=100_000)
    with pytest.raises(ProviderError, match="limit") as info:
        send(shared_client(), call, RetryPolicy(attempts=1), Deadline(5))
    assert info.value.kind == "malformed"


def test_strict_json_and_usage_parsing() -> None:
    assert loads(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    for raw in GARBAGE.values():
        with pytest.raises(ValueError):
            loads(raw)
    usage: Any
    for usage in (None, "12", [], {}, -3, 2**64, True, {"total_tokens": None}, {"total_tokens": "7"}):
        assert usage_tokens({"usage": usage}, "usage.total_tokens", "usage") == 0
    assert usage_tokens({"usage": {"prompt_tokens": None, "total_tokens": 9}}, "usage.prompt_tokens",
                        "usage.total_tokens") == 9  # fmt: skip
    assert usage_tokens([1, 2], "usage.total_tokens") == 0


USAGE_GARBAGE = [None, "many", -1, 10**30, {"x": 1}, [1], 1.5e300]


@pytest.mark.parametrize("usage", USAGE_GARBAGE, ids=range(len(USAGE_GARBAGE)))
def test_garbled_usage_never_breaks_embeddings_or_reranking(deepinfra: FakeProvider, usage: Any) -> None:
    settings = provider_settings(deepinfra)
    secrets = Secrets(settings)
    embed_answer = {"data": [{"index": 0, "embedding": [0.5] * 64}], "usage": {"prompt_tokens": usage}}
    deepinfra.fail("embeddings", body=json.dumps(embed_answer).encode())
    embedder = build_embedder(settings, secrets, shared_client(), for_queries=True)
    assert embedder is not None
    result, _ = embedder.embed_one_batch(["q"], Deadline(5))
    assert result.tokens == 0 and len(result.vectors[0]) == 64
    deepinfra.fail("rerank", body=json.dumps({"scores": [0.1, 0.9], "input_tokens": usage}).encode())
    reranking = build_reranking(settings, secrets, shared_client())
    assert reranking is not None
    outcome = reranking.rerank("q", ["a", "b"], Deadline(5))
    assert outcome.ranked is not None and outcome.ranked.scores == [0.1, 0.9] and outcome.ranked.tokens == 0


BAD_VECTORS = [["0.5"] * 64, [True] * 64, [None] * 64, [[0.1]] * 64, [0.0] * 64, [0.5] * 63, "abc", None]


@pytest.mark.parametrize("vector", BAD_VECTORS, ids=range(len(BAD_VECTORS)))
def test_embeddings_of_the_wrong_shape_are_provider_failures(deepinfra: FakeProvider, vector: Any) -> None:
    settings = provider_settings(deepinfra)
    deepinfra.fail("embeddings", body=json.dumps({"data": [{"index": 0, "embedding": vector}]}).encode())
    embedder = build_embedder(settings, Secrets(settings), shared_client(), for_queries=True)
    assert embedder is not None
    with pytest.raises(ProviderError) as info:
        embedder.embed_one_batch(["q"], Deadline(5))
    assert info.value.kind == "malformed"


V = [0.5] * 64
#: Answers of the right type whose positions lie: an embedding or score for an input that was not sent, two for one
#: input, one missing, positions that are not integers; scores that are text. For two inputs each.
LYING_POSITIONS: list[tuple[str, str, Any]] = [
    *[("deepinfra", "embeddings", {"data": data}) for data in (
        [{"index": 0, "embedding": V}, {"index": 2, "embedding": V}], [{"index": 0, "embedding": V}] * 2,
        [{"index": -1, "embedding": V}, {"index": 0, "embedding": V}],
        [{"index": "0", "embedding": V}, {"index": "1", "embedding": V}],
        [{"index": 0.0, "embedding": V}, {"index": 1, "embedding": V}], [{"index": 0, "embedding": V}],
        [{"index": i, "embedding": V} for i in range(3)], [None, {"index": 1, "embedding": V}],
        [{"index": 10**30, "embedding": V}, {"index": 1, "embedding": V}],
    )],
    *[("deepinfra", "rerank", {"scores": scores}) for scores in (
        [0.1], [0.1, 0.2, 0.3], ["0.1", "0.2"], [0.1, None], {"0": 0.1, "1": 0.2}, [[0.1], [0.2]],
    )],
    *[("fireworks", "rerank", {"data": data}) for data in (
        [{"index": 0, "relevance_score": 0.1}, {"index": 2, "relevance_score": 0.2}],
        [{"index": 1, "relevance_score": 0.1}, {"index": 1, "relevance_score": 0.2}],
        [{"index": -1, "relevance_score": 0.1}, {"index": 0, "relevance_score": 0.2}],
        [{"index": "0", "relevance_score": 0.1}, {"index": "1", "relevance_score": 0.2}],
        [{"index": 0, "relevance_score": "0.1"}, {"index": 1, "relevance_score": 0.2}],
        [{"index": 0.0, "relevance_score": 0.1}, {"index": 1, "relevance_score": 0.2}],
        [{"index": 0, "relevance_score": 0.1}], [{"index": 0}, {"index": 1}], [1, 2],
        [{"index": i, "relevance_score": 0.1} for i in range(3)],
    )],
]  # fmt: skip


@pytest.mark.parametrize(("flavor", "operation", "answer"), LYING_POSITIONS, ids=range(len(LYING_POSITIONS)))
def test_answers_whose_positions_lie_are_provider_failures(flavor: str, operation: str, answer: Any) -> None:
    """A 200 of the right shape whose positions or scores do not fit the two inputs sent: a ``malformed`` failure
    of that call (the fallback is asked), never a vector or score given to the wrong input, never a 500."""
    fake = FakeProvider(flavor, api_key=f"{flavor[:2]}-test-key").start()
    try:
        settings = provider_settings(fake)
        fake.fail(operation, body=json.dumps(answer).encode())
        if operation == "embeddings":
            embedder = build_embedder(settings, Secrets(settings), shared_client(), for_queries=True)
            assert embedder is not None
            with pytest.raises(ProviderError) as info:
                embedder.embed_one_batch(["a", "b"], Deadline(5))
            assert info.value.kind == "malformed"
        else:
            reranking = build_reranking(settings, Secrets(settings), shared_client())
            assert reranking is not None and reranking.primary.style == (
                "native" if flavor == "deepinfra" else "standard"
            )
            with pytest.raises(ProviderError) as info:
                reranking.primary.rerank("q", ["a", "b"], Deadline(5))
            assert info.value.kind == "malformed"
            assert reranking.rerank("q", ["a", "b"], Deadline(5)).ranked is None  # no scores at all, not wrong ones
    finally:
        fake.stop()


#: A 200 whose body is the provider's error shape (providers.md): DeepInfra's ``detail`` (a string or an object),
#: Fireworks' ``error`` object, one echoing the key.
ERRORS_WITH_200: list[tuple[str, str, Any, str]] = [
    ("deepinfra", "embeddings", {"detail": {"error": "Model is loading"}}, "Model is loading"),
    ("deepinfra", "rerank", {"detail": "model overloaded, retry later"}, "model overloaded, retry later"),
    ("fireworks", "rerank", {"error": {"type": "server_error", "message": "shedding load"}}, "shedding load"),
    ("fireworks", "embeddings", {"error": {"message": "key {key} is revoked"}}, "key [redacted] is revoked"),
]


@pytest.mark.parametrize(("flavor", "operation", "body", "said"), ERRORS_WITH_200, ids=range(len(ERRORS_WITH_200)))
def test_a_200_carrying_the_providers_error_names_it(flavor: str, operation: str, body: Any, said: str) -> None:
    """It was used as no answer (``malformed``, the fallback asked) but said ``expected 2 embeddings, got no`` or
    ``expected 2 scores, got none``: the provider's own reason was lost to the logs. Now the reason is the
    provider's message, never the key it echoes."""
    fake = FakeProvider(flavor, api_key=f"{flavor[:2]}-test-key").start()
    try:
        settings = provider_settings(fake)
        fake.fail(operation, body=json.dumps(body).encode().replace(b"{key}", fake.api_key.encode()))
        with pytest.raises(ProviderError) as info:
            if operation == "embeddings":
                embedder = build_embedder(settings, Secrets(settings), shared_client(), for_queries=True)
                assert embedder is not None
                embedder.embed_one_batch(["a", "b"], Deadline(5))
            else:
                reranking = build_reranking(settings, Secrets(settings), shared_client())
                assert reranking is not None
                reranking.primary.rerank("q", ["a", "b"], Deadline(5))
        assert info.value.kind == "malformed"
        assert f"answered 200 with an error: {said}" in str(info.value) and fake.api_key not in str(info.value)
    finally:
        fake.stop()


# -- secrets stay inside ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "echo",
    ["bad key Bearer {key}", "invalid api key: {key}", "key {key} is revoked", "Authorization={key}",
     '{{"detail": "token {key} expired"}}'],
)  # fmt: skip
def test_a_provider_that_echoes_the_key_never_gets_it_into_an_error(endpoint: FakeEndpoint, echo: str) -> None:
    key = "di-secret-value-123"
    settings = Settings.model_validate({"embedding_api_key": key})
    endpoint.status, endpoint.body = 401, echo.format(key=key).encode()
    target = Endpoint("deepinfra", endpoint.url + "/v1/openai/embeddings", "m", "EMBEDDING_API_KEY")
    with pytest.raises(ProviderError) as info:
        post_json(shared_client(), target, Secrets(settings), {"input": ["x"]}, RetryPolicy(attempts=1), Deadline(5))
    assert key not in str(info.value) and "[redacted]" in str(info.value)
    assert len(endpoint.requests) == 2  # one refresh after the 401, then the error


def test_redact_removes_known_values_and_bearer_tokens() -> None:
    assert redact("x Bearer abcdef123456 y", []) == "x Bearer [redacted] y"
    assert redact("the value s3cr3t-val leaked", ["s3cr3t-val"]) == "the value [redacted] leaked"
    assert redact("nothing here", ["", "ab"]) == "nothing here"


# -- failover -------------------------------------------------------------------------------------------------------


def test_a_stuck_primary_never_starves_the_fallback(deepinfra: FakeProvider, fireworks: FakeProvider) -> None:
    """More concurrent searches than the old 8-thread pool, each with a primary reranker that drips for ever: each
    still gets the fallback's answer shortly after the hedge delay."""
    settings = provider_settings(deepinfra, fireworks, rerank_hedge_ms=200, rerank_timeout_s=5, breaker_threshold=100)
    deepinfra.fail("rerank", drip_s=0.05)
    reranking = build_reranking(settings, Secrets(settings), shared_client())
    assert reranking is not None

    def one(i: int) -> tuple[float, bool]:
        started = time.monotonic()
        outcome = reranking.rerank(f"query {i}", ["alpha doc", "query doc"], Deadline(6))
        return time.monotonic() - started, outcome.ranked is not None and outcome.fell_back

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(one, range(24)))
    assert all(ok for _, ok in results)
    assert max(elapsed for elapsed, _ in results) < 2.5, results


def test_slow_primaries_open_the_breaker(deepinfra: FakeProvider, fireworks: FakeProvider) -> None:
    settings = provider_settings(deepinfra, fireworks, rerank_hedge_ms=100, breaker_threshold=2, breaker_cooldown_s=60)
    deepinfra.latency["rerank"] = 1.0  # answers, but always after the hedge and after the fallback
    reranking = build_reranking(settings, Secrets(settings), shared_client())
    assert reranking is not None
    for _ in range(2):
        outcome = reranking.rerank("q", ["a"], Deadline(5))
        assert outcome.fell_back and outcome.hedged
    time.sleep(1.2)  # the slow primaries finish, successfully: they still count as failures
    assert reranking.breaker.is_open
    before = len(deepinfra.calls("rerank"))
    outcome = reranking.rerank("q", ["a"], Deadline(5))
    assert outcome.fell_back and not outcome.hedged and len(deepinfra.calls("rerank")) == before
    assert any("circuit open" in m for m in outcome.errors)


def test_a_fallback_is_built_only_with_its_url_and_key(deepinfra: FakeProvider, fireworks: FakeProvider) -> None:
    full = provider_settings(deepinfra, fireworks, reranker_fallback_api_style="native")
    embedder = build_embedder(full, Secrets(full), shared_client())
    reranking = build_reranking(full, Secrets(full), shared_client())
    assert embedder is not None and embedder.fallback is not None and embedder.fallback.endpoint.name == "fireworks"
    assert reranking is not None and reranking.fallback is not None
    assert (reranking.primary.style, reranking.fallback.style) == ("native", "native")  # the fallback's own style
    for missing in ({"embedding_fallback_url": "", "reranker_fallback_url": ""},
                    {"embedding_fallback_api_key": None, "reranker_fallback_api_key": None}):  # fmt: skip
        settings = full.model_copy(update=missing)
        embedder = build_embedder(settings, Secrets(settings), shared_client())
        reranking = build_reranking(settings, Secrets(settings), shared_client())
        assert embedder is not None and embedder.fallback is None
        assert reranking is not None and reranking.fallback is None
    no_primary = full.model_copy(update={"embedding_api_key": None, "reranker_url": ""})
    assert build_embedder(no_primary, Secrets(no_primary), shared_client()) is None
    assert build_reranking(no_primary, Secrets(no_primary), shared_client()) is None


def test_the_embedder_honours_the_breaker_settings(deepinfra: FakeProvider, fireworks: FakeProvider) -> None:
    settings = provider_settings(deepinfra, fireworks, breaker_threshold=1, breaker_cooldown_s=120)
    embedder = build_embedder(settings, Secrets(settings), shared_client(), for_queries=True)
    assert embedder is not None
    assert (embedder.breaker.threshold, embedder.breaker.cooldown_s) == (1, 120)
    deepinfra.fail("embeddings", status=503)
    _, fell_back = embedder.embed_one_batch(["q"], Deadline(5))
    assert fell_back and embedder.breaker.is_open
    calls = len(deepinfra.calls("embeddings"))
    embedder.embed_one_batch(["q"], Deadline(5))
    assert len(deepinfra.calls("embeddings")) == calls  # skipped while open


def test_a_slow_primary_leaves_the_fallback_half_the_time() -> None:
    seen: list[float] = []

    def primary(deadline: Deadline) -> str:
        seen.append(deadline.remaining())
        raise ProviderError("p", "timeout", "slow")

    def fallback(deadline: Deadline) -> str:
        seen.append(deadline.remaining())
        return "ok"

    outcome = failover(primary, fallback, CircuitBreaker(), Deadline(2.0))
    assert outcome.value == "ok" and outcome.fell_back
    assert seen[0] <= 1.01 and seen[1] > 1.5


def test_failover_converts_unexpected_errors_in_hedged_calls() -> None:
    def primary(_d: Deadline) -> str:
        raise RuntimeError("boom")

    def fallback(_d: Deadline) -> str:
        raise KeyError("x")

    outcome = failover(primary, fallback, CircuitBreaker(), Deadline(2.0), hedge_delay_s=0.05)
    assert outcome.value is None and len(outcome.errors) == 2
    assert all(isinstance(e, ProviderError) for e in outcome.errors)


# -- Slack response_url -------------------------------------------------------------------------------------------


def test_a_dripping_response_url_is_bounded(endpoint: FakeEndpoint) -> None:
    endpoint.drip_s = 0.2  # the head alone takes 15 s or more
    elapsed, exc = timed(lambda: post_to_slack(shared_client(), endpoint.url, {"text": "x"}, deadline=Deadline(1.5)))
    assert isinstance(exc, SlackPostError)
    assert elapsed < 7.5


def test_the_shared_client_is_one_per_process() -> None:
    clients: list[Any] = []
    threads = [threading.Thread(target=lambda: clients.append(shared_client())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in clients}) == 1


# -- a whole search -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("remaining_s", [2.5, 6.0])
def test_a_search_with_every_dependency_dripping_answers_before_the_lambda_times_out(
    bm25_index: Path, tmp_path: Path, deepinfra: FakeProvider, fireworks: FakeProvider, remaining_s: float
) -> None:
    """Expansion, embeddings and rerank (primary and fallback) all drip: the search still answers, BM25-only in
    the fusion order, before the invocation's remaining time runs out (1 s kept for the handler)."""
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    # the index's own dense size (the fixture's default 1,024): with another, embedding is not even tried
    settings = provider_settings(
        deepinfra, fireworks, qdrant_path=str(store), search_budget_s=20, embedding_dimensions=1024
    )
    for fake in (deepinfra, fireworks):
        for operation in ("chat", "embeddings", "rerank"):
            fake.fail(operation, drip_s=0.05)
    service = SearchService(settings, Secrets(settings))
    try:
        started = time.monotonic()
        answer = service.search(SearchRequest(query="restore qdrant snapshot"), remaining_s=remaining_s)
        elapsed = time.monotonic() - started
    finally:
        service.close()
    assert elapsed < remaining_s, elapsed  # before the invocation times out (1 s of it is kept for the handler)
    assert answer.results and set(answer.meta.degraded) == {"expand", "embed", "rerank"}


# -- what a cold review found ---------------------------------------------------------------------------------------


def test_a_score_too_large_for_a_float_is_a_provider_failure_not_a_500(deepinfra: FakeProvider) -> None:
    settings = provider_settings(deepinfra, rerank_hedge_ms=0, breaker_threshold=1)
    deepinfra.fail("rerank", body=b'{"scores": [1' + b"0" * 400 + b", 0.5]}")
    reranking = build_reranking(settings, Secrets(settings), shared_client())
    assert reranking is not None
    outcome = reranking.rerank("q", ["a", "b"], Deadline(5))
    assert outcome.ranked is None and any(
        w in m for w in ("malformed", "score", "out of range") for m in outcome.errors
    )
    assert reranking.breaker.is_open  # a garbled answer is the provider's failure


@pytest.mark.parametrize("vector", [[1e-200] + [0.0] * 63, [1e200] * 64], ids=["underflow", "overflow"])
def test_tiny_and_huge_embeddings_normalise_exactly(deepinfra: FakeProvider, vector: list[float]) -> None:
    """Sum-of-squares norms underflow to 0 (a ZeroDivisionError, a 500) or overflow to inf (an all-zero vector);
    the norm is taken without either."""
    settings = provider_settings(deepinfra)
    deepinfra.fail("embeddings", body=json.dumps({"data": [{"index": 0, "embedding": vector}]}).encode())
    embedder = build_embedder(settings, Secrets(settings), shared_client(), for_queries=True)
    assert embedder is not None
    result, _ = embedder.embed_one_batch(["q"], Deadline(5))
    (unit,) = result.vectors
    assert abs(sum(x * x for x in unit) - 1.0) < 1e-9


def test_a_spent_budget_is_not_counted_against_the_dependency(deepinfra: FakeProvider) -> None:
    settings = provider_settings(deepinfra, rerank_hedge_ms=0, breaker_threshold=1)
    reranking = build_reranking(settings, Secrets(settings), shared_client())
    assert reranking is not None
    for _ in range(3):
        outcome = reranking.rerank("q", ["a"], Deadline(0.0))
        assert outcome.ranked is None
    assert not reranking.breaker.is_open and deepinfra.calls("rerank") == []


def test_a_key_at_the_edge_of_the_error_text_is_still_redacted(endpoint: FakeEndpoint) -> None:
    key = "di-secret-value-123"
    settings = Settings.model_validate({"embedding_api_key": key})
    endpoint.status, endpoint.body = 401, json.dumps({"detail": "x" * 190 + " bad key " + key}).encode()
    target = Endpoint("deepinfra", endpoint.url + "/v1/openai/embeddings", "m", "EMBEDDING_API_KEY")
    with pytest.raises(ProviderError) as info:
        post_json(shared_client(), target, Secrets(settings), {"input": ["x"]}, RetryPolicy(attempts=1), Deadline(5))
    assert "di-secret" not in str(info.value) and "di-s" not in str(info.value).split("bad key")[-1]


def test_rereading_a_rotated_key_stays_within_the_deadline(
    endpoint: FakeEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider answers 401, the key is re-read from SSM, and SSM is now slow: the call still ends at its deadline
    (the re-read gets what the attempt has left, not SSM's own 5 s)."""
    ssm = FakeEndpoint().start()
    answer = json.dumps({"Parameters": [{"Name": "/kb/di", "Type": "SecureString", "Value": "di-secret-value-123",
                                         "Version": 1}], "InvalidParameters": []}).encode()  # fmt: skip
    served: list[int] = []

    def respond(_method: str, _path: str) -> tuple[int, bytes, str] | None:
        served.append(1)
        if len(served) > 1:
            time.sleep(4.5)  # every read after the first is slow
        return 200, answer, "application/x-amz-json-1.1"

    ssm.responder = respond
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", ssm.url)
    try:
        settings = Settings.model_validate({"embedding_api_key_param": "/kb/di"})
        secrets = Secrets(settings)
        secrets.prefetch()
        endpoint.status, endpoint.body = 401, b'{"detail": "invalid key"}'
        target = Endpoint("deepinfra", endpoint.url + "/v1/openai/embeddings", "m", "EMBEDDING_API_KEY")
        elapsed, exc = timed(
            lambda: post_json(
                shared_client(), target, secrets, {"input": ["x"]}, RetryPolicy(attempts=1), Deadline(1.0)
            )
        )
    finally:
        ssm.stop()
    assert isinstance(exc, ProviderError) and len(served) == 2
    assert elapsed < 5.0, elapsed  # two quick 401s and one SSM read inside the 1 s deadline
