"""A large sync of a folder embeds its notes in the parsing process (:func:`kbsearch.indexer.parse_ahead`): the
indexing process only writes. The same vectors stored, the same failure semantics as embedding in the indexing
process: a failed call stops the run with no request after it, and what it counted is counted."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from kbsearch import indexer
from kbsearch.config import Secrets, Settings
from kbsearch.indexer import Indexer, SyncOptions, SyncReport
from kbsearch.providers.embeddings import Embedder, build_embedder
from kbsearch.providers.resilience import Deadline, ProviderError, shared_client
from kbsearch.qdrant.query import DENSE
from kbsearch.sources import LocalSource
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import provider_settings
from tests.integration.test_indexer import assert_exact_chunks, snapshot, store_for, write_notes


def stored_vectors(settings: Settings) -> dict[str, list[float]]:
    """point id → its dense vector as the store gives it back."""
    store = store_for(settings)
    try:
        if store.embedded and type(store).__name__ == "EdgeStore":
            import qdrant_edge as edge

            scroll = edge.ScrollRequest(limit=10_000, with_payload=False, with_vector=True)
            records, _ = store.shard.scroll(scroll)  # type: ignore[attr-defined]
        else:
            records, _ = store.client.scroll(store.collection, limit=10_000, with_payload=False, with_vectors=True)
        return {str(r.id): [float(x) for x in r.vector[DENSE]] for r in records}
    finally:
        store.close()


def sync(kb: Path, settings: Settings, elsewhere: bool, monkeypatch: pytest.MonkeyPatch, **run: Any) -> SyncReport:
    """One sync of ``kb``, its notes parsed (and embedded) in another process or not (``elsewhere``)."""
    monkeypatch.setattr(indexer, "PARSE_PROCESS_FROM", 1 if elsewhere else 10**9)
    monkeypatch.setattr(indexer, "PARSE_BATCH", 4)
    store = store_for(settings)
    try:
        embedder = build_embedder(settings, Secrets(settings), shared_client())
        return Indexer(LocalSource(kb), store, embedder, SyncOptions.from_settings(settings, window_chunks=16)).sync(
            **run
        )
    finally:
        store.close()


@pytest.fixture
def parent_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many texts each embedding call of this (the indexing) process embedded."""
    calls: list[int] = []
    embed = Embedder.embed_documents

    def counted(self: Embedder, texts: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(texts))
        return embed(self, texts, *args, **kwargs)

    monkeypatch.setattr(Embedder, "embed_documents", counted)
    return calls


@pytest.mark.parametrize("embedded", ["edge", "local"])
def test_a_large_sync_embeds_in_the_parsing_process_and_stores_the_same_vectors(
    tmp_path: Path, deepinfra: FakeProvider, monkeypatch: pytest.MonkeyPatch, parent_calls: list[int], embedded: str
) -> None:
    """The indexing process makes no embedding call (the parsing process does, counted in the report); the
    collection is the one a sync embedding in the indexing process writes: payloads, and the dense vectors the
    store gives back, exactly (a float32 row sent is what the store keeps of the embedder's float64 list)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 30)
    reports, collections = [], []
    for elsewhere in (False, True):
        settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / f"q-{elsewhere}"), qdrant_embedded=embedded)
        before, requests = len(parent_calls), len(deepinfra.calls("embeddings"))
        report = sync(kb, settings, elsewhere, monkeypatch)
        assert not report.incomplete and report.error is None and report.added == 30
        sent = deepinfra.calls("embeddings")[requests:]
        assert report.embedding_calls == len(sent) > 0
        assert (len(parent_calls) > before) is not elsewhere  # the parsing process embedded them, or this one did
        reports.append(report)
        collections.append((snapshot(settings), stored_vectors(settings)))
        assert_exact_chunks(settings, kb)
    assert collections[0][0] == collections[1][0]
    assert collections[0][1] == collections[1][1] and len(collections[1][1]) == reports[1].chunks_upserted
    assert reports[0].embedding_tokens == reports[1].embedding_tokens
    assert reports[0].chunks_upserted == reports[1].chunks_upserted


@pytest.mark.parametrize("status", [400, 503])
def test_a_provider_failure_in_the_parsing_process_stops_the_run_with_no_request_after_it(
    tmp_path: Path, deepinfra: FakeProvider, monkeypatch: pytest.MonkeyPatch, parent_calls: list[int], status: int
) -> None:
    """The provider fails from its sixth request on (for good): embedding in the parsing process, as in the indexing
    process, the run stops with the same error, the failed request (and its retries) the last one sent, whatever
    batches were queued behind it; the calls that answered are counted; the next run completes."""
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 40)
    outcomes = []
    for elsewhere in (False, True):
        deepinfra.heal()
        deepinfra.fail("embeddings", status=status, after=5)
        settings = provider_settings(
            deepinfra, qdrant_path=str(tmp_path / f"q-{elsewhere}"), embedding_concurrency=1, embedding_batch_size=2
        )
        before, requests = len(parent_calls), len(deepinfra.calls("embeddings"))
        report = sync(kb, settings, elsewhere, monkeypatch)
        sent = deepinfra.calls("embeddings")[requests:]
        attempts = 1 if status == 400 else 2  # provider_retries=1: a 503 is tried twice
        assert len(sent) == 5 + attempts  # nothing after the failed request
        assert report.incomplete and report.embedding_calls == 5 and report.added < 40
        assert (len(parent_calls) > before) is not elsewhere
        outcomes.append(report.error)
        deepinfra.heal()
        resumed = sync(kb, settings, elsewhere, monkeypatch)
        assert not resumed.incomplete and resumed.added + resumed.unchanged == 40
        assert_exact_chunks(settings, kb)
    assert outcomes[0] == outcomes[1] and str(outcomes[1]).startswith("embedding failed: deepinfra: ")


def test_the_run_deadline_stops_the_parsing_process_embedding_and_the_next_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow provider and a run deadline that passes mid-run: no batch's requests start after it (a request
    already started may end after it), the run is incomplete, and the next run completes the index."""
    slow = FakeProvider("deepinfra", api_key="di-test-key", latency_s=0.05).start()
    try:
        kb = tmp_path / "kb"
        kb.mkdir()
        write_notes(kb, 80)
        settings = provider_settings(slow, qdrant_path=str(tmp_path / "q"), embedding_concurrency=1)
        stop_at = Deadline(1.5)
        report = sync(kb, settings, True, monkeypatch, stop_at=stop_at)
        assert report.incomplete and report.error is None and 0 < report.added < 80
        assert stop_at.at is not None
        starts = [r.at for r in slow.calls("embeddings")]
        assert starts and report.embedding_calls == len(starts)
        assert max(starts) < stop_at.at + 1.0  # at most the batch being embedded when time was up
        resumed = sync(kb, settings, True, monkeypatch)
        assert not resumed.incomplete and resumed.added + resumed.updated + resumed.unchanged == 80
        assert_exact_chunks(settings, kb)
    finally:
        slow.stop()


def test_a_provider_error_pickles_as_it_is() -> None:
    """The parsing process hands its failure over pickled: the same text, provider, kind and status."""
    exc = ProviderError("deepinfra", "server", "HTTP 503: busy", status=503)
    back = pickle.loads(pickle.dumps(exc))  # noqa: S301 - bytes this test made
    assert type(back) is ProviderError and str(back) == str(exc) == "deepinfra: HTTP 503: busy"
    assert (back.provider, back.kind, back.status, back.retryable) == ("deepinfra", "server", 503, True)
