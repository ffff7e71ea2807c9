"""Embedding calls against loopback DeepInfra/Fireworks fakes: contract, retries, fallback, faults."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import Indexer
from kbsearch.providers.embeddings import Embedder, EmbeddingStats, build_embedder, query_text
from kbsearch.providers.resilience import CircuitBreaker, Deadline, ProviderError, shared_client
from kbsearch.qdrant import open_store
from kbsearch.sources import LocalSource
from kbsearch.tokens import counts
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import provider_settings

DOCS = ["Qdrant snapshot restore runbook", "Ротация ключей DeepInfra", "third text"]


def embedder_for(settings: Settings) -> Embedder:
    embedder = build_embedder(settings, Secrets(settings), shared_client())
    assert embedder is not None
    return embedder


def test_request_shapes_match_each_provider(deepinfra: FakeProvider, fireworks: FakeProvider) -> None:
    embedder = embedder_for(provider_settings(deepinfra, fireworks))
    stats = EmbeddingStats()
    vectors = embedder.embed_documents(DOCS, stats=stats)
    body = deepinfra.calls("embeddings")[0].body
    assert body == {"model": "Qwen/Qwen3-Embedding-8B", "input": DOCS, "dimensions": 64, "encoding_format": "float"}
    assert all(not t.startswith("Instruct:") for t in body["input"])  # documents get no instruction
    assert len(vectors) == 3 and all(len(v) == 64 for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-9) for v in vectors)  # L2-normalised
    assert stats.calls == 1 and stats.tokens > 0 and stats.providers == {"deepinfra": 1}
    # the fallback's own contract: no encoding_format (Fireworks rejects unknown fields)
    assert embedder.fallback is not None
    embedder.fallback.embed(DOCS)
    fw = fireworks.calls("embeddings")[0].body
    assert fw == {"model": "fireworks/qwen3-embedding-8b", "input": DOCS, "dimensions": 64}


def test_query_instruction_format() -> None:
    assert query_text("как восстановить снапшот") == (
        "Instruct: Given a web search query, retrieve relevant passages that answer the query\n"
        "Query:как восстановить снапшот"
    )


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500},
        {"status": 503},
        {"status": 429},
        {"garbage": True},
        {"wrong_dim": 32},
        {"short": True},
        {"nan": True},
        {"status": 404},
        {"hang_s": 2.0},
    ],
)
def test_each_primary_fault_goes_to_the_fallback(deepinfra: FakeProvider, fireworks: FakeProvider, fault: dict) -> None:
    deepinfra.fail("embeddings", **fault)
    embedder = embedder_for(provider_settings(deepinfra, fireworks, embedding_timeout_s=1.0))
    stats = EmbeddingStats()
    vectors = embedder.embed_documents(DOCS, stats=stats)
    assert len(vectors) == 3 and stats.fallbacks == 1 and stats.providers == {"fireworks": 1}
    assert len(fireworks.calls("embeddings")) == 1


def test_retry_after_is_honoured_then_primary_succeeds(deepinfra: FakeProvider, fireworks: FakeProvider) -> None:
    deepinfra.fail("embeddings", status=429, retry_after="1", times=1)
    embedder = embedder_for(provider_settings(deepinfra, fireworks))
    stats = EmbeddingStats()
    embedder.embed_documents(DOCS, stats=stats)
    first, second = deepinfra.calls("embeddings")
    assert second.at - first.at >= 0.95
    assert stats.fallbacks == 0 and not fireworks.calls("embeddings")


def test_a_retry_after_past_what_the_primary_can_wait_goes_to_the_fallback_at_once(
    deepinfra: FakeProvider, fireworks: FakeProvider
) -> None:
    """DeepInfra rate-limits for a minute (429, ``Retry-After: 60``, past the 10 s a retry waits at most): the
    primary was retried after 10 s each time, refused each time, before the fallback was asked; now the fallback
    is asked after the first answer."""
    deepinfra.fail("embeddings", status=429, retry_after="60")
    embedder = embedder_for(provider_settings(deepinfra, fireworks, provider_retries=3))
    stats = EmbeddingStats()
    vectors = embedder.embed_documents(DOCS, stats=stats)
    assert len(vectors) == 3 and stats.fallbacks == 1 and stats.providers == {"fireworks": 1}
    assert len(deepinfra.calls("embeddings")) == 1


def test_transient_500_is_retried_on_the_primary(deepinfra: FakeProvider) -> None:
    deepinfra.fail("embeddings", status=502, times=1)
    embedder = embedder_for(provider_settings(deepinfra, None, provider_retries=2))
    embedder.embed_documents(DOCS)
    assert len(deepinfra.calls("embeddings")) == 2


def test_connection_refused_goes_to_the_fallback(fireworks: FakeProvider) -> None:
    dead = FakeProvider("deepinfra", api_key="k").start()
    url = dead.embeddings_url
    dead.stop()  # nothing listens there now
    settings = provider_settings(None, fireworks, embedding_url=url, embedding_api_key="k")
    stats = EmbeddingStats()
    embedder_for(settings).embed_documents(DOCS, stats=stats)
    assert stats.fallbacks == 1


def test_both_down_raises_a_provider_error_without_secrets(deepinfra: FakeProvider, fireworks: FakeProvider) -> None:
    deepinfra.fail("embeddings", status=500)
    fireworks.fail("embeddings", status=503)
    with pytest.raises(ProviderError) as info:
        embedder_for(provider_settings(deepinfra, fireworks)).embed_documents(DOCS)
    assert "503" in str(info.value)
    assert deepinfra.api_key not in str(info.value) and fireworks.api_key not in str(info.value)


def test_both_down_during_a_sync_loses_nothing(
    tmp_path: Path, deepinfra: FakeProvider, fireworks: FakeProvider
) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nfirst version")
    settings = provider_settings(deepinfra, fireworks, qdrant_path=str(tmp_path / "q"))
    secrets = Secrets(settings)

    def sync() -> dict:
        store = open_store(settings, secrets)
        try:
            report = Indexer(LocalSource(kb), store, build_embedder(settings, secrets, shared_client())).sync()
            return {"report": report, "points": store.points()}
        finally:
            store.close()

    sync()
    (kb / "a.md").write_text("# A\n\nsecond version")
    deepinfra.fail("embeddings", status=500)
    fireworks.fail("embeddings", status=500)
    out = sync()
    assert out["report"].error and out["report"].incomplete and out["report"].updated == 0
    assert [p["text"] for p in out["points"].values()] == ["first version"]
    deepinfra.heal()
    fireworks.heal()
    out = sync()
    assert out["report"].updated == 1 and [p["text"] for p in out["points"].values()] == ["second version"]


def test_batches_by_count_and_tokens(deepinfra: FakeProvider) -> None:
    embedder = embedder_for(provider_settings(deepinfra, None, embedding_batch_size=4, embedding_batch_tokens=300))
    texts = [f"text {i}" for i in range(10)] + ["long " * 400]  # one text over the token budget goes alone
    assert [len(b) for b in embedder.batches(texts)] == [4, 4, 2, 1]
    stats = EmbeddingStats()
    vectors = embedder.embed_documents(texts, stats=stats)
    assert stats.calls == 4 and len(vectors) == 11
    assert sorted(len(c.body["input"]) for c in deepinfra.calls("embeddings")) == [1, 2, 4, 4]


@pytest.mark.parametrize("input_format", ["qwen3", "e5", "none"])
def test_batches_from_counts_taken_where_notes_are_parsed_are_the_batches_of_the_texts(
    deepinfra: FakeProvider, input_format: str
) -> None:
    """The indexer hands the embedder each chunk's token counts, taken where the note was parsed (the parsing
    process, for a large sync), instead of having the indexing process count every text again: the batches are
    those of the formatted texts (e5's ``passage: `` prefix included), whatever mix of scripts, digits and symbols."""
    embedder = embedder_for(provider_settings(deepinfra, None, embedding_batch_size=8, embedding_batch_tokens=300,
                                              embedding_input_format=input_format))  # fmt: skip
    raw = ["Ротация ключей DeepInfra " * k for k in range(1, 30, 4)] + ["x1 22 333 4444 " * 20, "", "```py\nf(x)\n```",
           "long " * 400, "emoji 🙂 — «кавычки» 12:30", "a\u00a0b\tc\n\nd"] + [f"text {i}" for i in range(12)]  # fmt: skip
    texts = [embedder.format_document(t) for t in raw]
    counted = embedder.batches(texts)
    assert len(counted) > 4 and max(map(len, counted)) == 8  # both bounds decide somewhere
    assert embedder.batches(texts, [counts(t) for t in raw]) == counted
    assert embedder.batches(texts, [None] * len(raw)) == counted  # a text whose counts are unknown is counted here


def test_a_sync_does_not_count_its_texts_again_to_batch_them(
    tmp_path: Path, deepinfra: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting each chunk's tokens again where it is embedded cost the 10x vault's index ~1-2 s of its indexing
    process's one interpreter lock (BENCHMARKS.md, "Session 23"): a sync batches from the counts taken as the notes
    were parsed, and its requests are the batches counting the texts gives."""
    from kbsearch.providers import embeddings

    kb = tmp_path / "kb"
    kb.mkdir()
    for i in range(6):
        body = "\n\n".join(
            f"## Part {j}\n\n" + f"Ротация ключей {i} {j}. Plugin sync note {i}. " * 12 for j in range(4)
        )
        (kb / f"n{i}.md").write_text(f"# Note {i}\n\n{body}\n", encoding="utf-8")
    settings = provider_settings(deepinfra, None, qdrant_path=str(tmp_path / "q"), embedding_batch_size=16,
                                 embedding_batch_tokens=400, embedding_concurrency=1)  # fmt: skip
    secrets = Secrets(settings)
    counted: list[str] = []
    real = embeddings.estimate_tokens

    def counting(text: str) -> int:
        counted.append(text)
        return real(text)

    monkeypatch.setattr(embeddings, "estimate_tokens", counting)
    store = open_store(settings, secrets)
    try:
        report = Indexer(LocalSource(kb), store, build_embedder(settings, secrets, shared_client())).sync()
    finally:
        store.close()
    monkeypatch.undo()
    assert report.error is None and report.added == 6 and counted == []
    requests = [c.body["input"] for c in deepinfra.calls("embeddings")]
    texts = [text for inputs in requests for text in inputs]
    assert len(texts) == report.chunks_upserted and len(requests) > 1
    assert [len(inputs) for inputs in requests] == [len(b) for b in embedder_for(settings).batches(texts)]


def test_concurrency_is_bounded(deepinfra: FakeProvider) -> None:
    deepinfra.latency_s = 0.2
    embedder = embedder_for(provider_settings(deepinfra, None, embedding_batch_size=1, embedding_concurrency=3))
    t0 = time.monotonic()
    embedder.embed_documents([f"t{i}" for i in range(6)])
    elapsed = time.monotonic() - t0
    starts = sorted(c.at for c in deepinfra.calls("embeddings"))
    assert len(starts) == 6
    # at most 3 requests can arrive within one latency period of each other
    assert all(starts[i + 3] - starts[i] >= 0.15 for i in range(3))
    assert elapsed >= 0.35


def test_breaker_skips_a_failing_primary(deepinfra: FakeProvider, fireworks: FakeProvider) -> None:
    deepinfra.fail("embeddings", status=500)
    embedder = embedder_for(provider_settings(deepinfra, fireworks, provider_retries=0))
    embedder.breaker = CircuitBreaker(threshold=2, cooldown_s=60)
    for _ in range(5):
        embedder.embed_one_batch(["x"])
    assert len(deepinfra.calls("embeddings")) == 2 and len(fireworks.calls("embeddings")) == 5


def test_breaker_half_opens_after_cooldown() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown_s=10, clock=lambda: now[0])
    breaker.failure()
    assert not breaker.is_open
    breaker.failure()
    assert breaker.is_open
    now[0] = 10.5
    assert not breaker.is_open  # trial allowed
    breaker.success()
    assert not breaker.is_open


def test_401_refreshes_the_key_from_ssm_once(deepinfra: FakeProvider) -> None:
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        ssm.put_parameter(Name="/kb/test/di", Value="stale-key", Type="SecureString")
        settings = Settings(
            embedding_url=deepinfra.embeddings_url,
            embedding_api_key_param="/kb/test/di",
            embedding_dimensions=64,
            provider_retries=0,
        )
        secrets = Secrets(settings)
        embedder = build_embedder(settings, secrets, shared_client())
        assert embedder is not None
        assert secrets.get("EMBEDDING_API_KEY") == "stale-key"  # cached
        ssm.put_parameter(Name="/kb/test/di", Value=deepinfra.api_key, Type="SecureString", Overwrite=True)
        embedder.embed_documents(["hello"])  # 401 → refresh → retry with the rotated key
        auths = [c.headers["authorization"] for c in deepinfra.calls("embeddings")]
        assert auths == ["Bearer stale-key", f"Bearer {deepinfra.api_key}"]
        # a key that stays wrong is an auth error after one refresh, not a loop
        ssm.put_parameter(Name="/kb/test/di", Value="wrong-again", Type="SecureString", Overwrite=True)
        secrets.refresh()
        with pytest.raises(ProviderError, match="HTTP 401"):
            embedder.embed_documents(["hello"])


# -- garbled and extreme numbers: the query path and the document path (a batch of the indexer's) agree ---------

GOOD = [0.5] * 64


def _vectors_from(deepinfra: FakeProvider, second: list[Any], path: str) -> list[list[float]]:
    """Two embeddings (a good one, then ``second``) as the provider's answer, through the query or document path."""
    deepinfra.fail("embeddings", body=json.dumps({"data": [{"index": 0, "embedding": GOOD},
                                                           {"index": 1, "embedding": second}]}).encode())  # fmt: skip
    settings = provider_settings(deepinfra, None, provider_retries=0)
    embedder = build_embedder(settings, Secrets(settings), shared_client(), for_queries=path == "query")
    assert embedder is not None
    if path == "query":
        return embedder.embed_one_batch(["a", "b"], Deadline(5))[0].vectors
    vectors = embedder.embed_documents(["a", "b"])
    assert len(vectors) == 2 and all(len(row) == 64 and {type(x) for x in row} == {float} for row in vectors)
    return vectors


USABLE: dict[str, list[Any]] = {
    "underflowing squares": [1e-200] + [0.0] * 63,
    "overflowing squares": [1e200] * 64,
    "subnormal": [5e-324] * 64,
    "near the float limit": [1.7e308] + [0.0] * 63,
    "integers": [3, -4] + [0] * 62,
}


@pytest.mark.parametrize("path", ["query", "document"])
@pytest.mark.parametrize("name", list(USABLE))
def test_extreme_but_usable_embeddings_are_normalised_exactly(deepinfra: FakeProvider, path: str, name: str) -> None:
    vector = USABLE[name]
    good, unit = _vectors_from(deepinfra, list(vector), path)
    assert good == pytest.approx([0.125] * 64, rel=1e-12)
    assert abs(sum(x * x for x in unit) - 1.0) < 1e-9
    peak = max(abs(x) for x in vector)
    assert unit == pytest.approx([x / peak / math.sqrt(sum((y / peak) ** 2 for y in vector))
                                  for x in vector], rel=1e-9, abs=1e-300)  # fmt: skip


UNUSABLE: dict[str, tuple[list[Any], str]] = {
    "norm overflows": ([1e308] * 64, "no usable length"),
    "zero": ([0.0] * 64, "zero or not finite"),
    "negative zero": ([-0.0] * 64, "zero or not finite"),
    "booleans": ([True] * 64, "non-numeric"),
    "strings": (["0.5"] * 64, "non-numeric"),
    "nulls": ([None] * 64, "non-numeric"),
    "nested lists": ([[0.5]] * 64, "non-numeric"),
    "one string among numbers": ([0.5] * 63 + ["x"], "non-numeric"),
}


@pytest.mark.parametrize("path", ["query", "document"])
@pytest.mark.parametrize("name", list(UNUSABLE))
def test_garbled_embeddings_are_the_providers_failure(deepinfra: FakeProvider, path: str, name: str) -> None:
    vector, reason = UNUSABLE[name]
    with pytest.raises(ProviderError) as info:
        _vectors_from(deepinfra, vector, path)
    assert info.value.kind == "malformed" and "embedding 1" in str(info.value) and reason in str(info.value)


@pytest.mark.parametrize("path", ["query", "document"])
def test_an_integer_too_large_for_a_float_is_refused_when_the_answer_is_decoded(deepinfra: FakeProvider,
                                                                                path: str) -> None:  # fmt: skip
    """As 1e400 is: the one decoder of every outbound answer refuses numbers no float can hold."""
    with pytest.raises(ProviderError) as info:
        _vectors_from(deepinfra, [10**400] + [0.0] * 63, path)
    assert info.value.kind == "malformed" and "out of range" in str(info.value)
