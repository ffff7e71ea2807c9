"""The collection records the model, dimensions and input format its vectors were made with: a change re-embeds
every note (with a report line), and a search never compares vectors of two models (BM25 only, flagged)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import Indexer, SyncOptions, SyncReport
from kbsearch.providers.embeddings import build_embedder
from kbsearch.providers.resilience import Deadline, shared_client
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import LAST_SYNC_KIND, REBUILDING, SIGNATURE_KEYS, signature_id
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch.sources import LocalSource
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import provider_settings

NOTES = {
    "snapshot.md": "# Restore a snapshot\n\nRestore the Qdrant collection from a snapshot file.\n",
    "keys.md": "# Rotate keys\n\nRotate the provider API keys without downtime.\n",
    "reranker.md": "# Reranker outage\n\nWhen the reranker is down, results keep the fused order.\n",
}


def settings_for(deepinfra: FakeProvider, tmp_path: Path, **extra: Any) -> Settings:
    return provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"), **extra)


def sync(settings: Settings, kb: Path, stop_at: Deadline | None = None) -> SyncReport:
    store = open_store(settings, Secrets(settings))
    try:
        embedder = build_embedder(settings, Secrets(settings), shared_client())
        return Indexer(LocalSource(kb), store, embedder, SyncOptions.from_settings(settings)).sync(stop_at)
    finally:
        store.close()


def recorded(settings: Settings) -> tuple[dict[str, Any], set[str]]:
    store = open_store(settings, Secrets(settings))
    try:
        return store.metadata(), {str(p.get("embedding")) for p in store.points().values()}
    finally:
        store.close()


def search(settings: Settings, query: str) -> Any:
    service = SearchService(settings, Secrets(settings))
    try:
        return service.search(SearchRequest(query=query, rerank=False, expand=False))
    finally:
        service.close()


def make_kb(tmp_path: Path) -> Path:
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, text in NOTES.items():
        (kb / name).write_text(text, encoding="utf-8")
    return kb


def test_the_collection_records_its_embedding_and_a_format_change_reembeds(
    deepinfra: FakeProvider, tmp_path: Path
) -> None:
    kb = make_kb(tmp_path)
    qwen = settings_for(deepinfra, tmp_path)
    first = sync(qwen, kb)
    assert first.added == 3 and first.reembedded is None
    sig = {"embedding_model": "Qwen/Qwen3-Embedding-8B", "embedding_dimensions": 64, "embedding_input_format": "qwen3"}
    meta, ids = recorded(qwen)
    assert {k: meta[k] for k in SIGNATURE_KEYS} == sig and ids == {signature_id(sig)}
    assert meta[LAST_SYNC_KIND] == "reconcile"  # beside the signature: the last sync (what /health reports)
    assert sync(qwen, kb).unchanged == 3  # same signature: nothing re-embedded

    e5 = settings_for(deepinfra, tmp_path, embedding_input_format="e5")
    # Searching the qwen3 index with the e5 format: BM25 only, flagged; never two formats' vectors compared.
    answer = search(e5, "restore snapshot")
    assert "embed_mismatch" in answer.meta.degraded and answer.meta.embedder == "none"
    assert answer.results[0].path == "snapshot.md"
    assert search(qwen, "restore snapshot").meta.degraded == []

    before = len(deepinfra.calls("embeddings"))
    second = sync(e5, kb)
    assert second.updated == 3 and second.unchanged == 0
    assert second.reembedded is not None
    assert "Qwen/Qwen3-Embedding-8B/64/qwen3 → Qwen/Qwen3-Embedding-8B/64/e5" in second.reembedded
    sent = [t for call in deepinfra.calls("embeddings")[before:] for t in call.body["input"]]
    assert sent and all(t.startswith("passage: ") for t in sent)
    meta, ids = recorded(e5)
    assert meta["embedding_input_format"] == "e5" and REBUILDING not in meta and ids == {signature_id(meta)}
    answer = search(e5, "restore snapshot")
    assert answer.meta.degraded == [] and answer.meta.embedder == "deepinfra"
    query_inputs = deepinfra.calls("embeddings")[-1].body["input"]
    assert query_inputs == ["query: restore snapshot"]


def test_an_interrupted_reembed_keeps_searches_on_bm25_until_it_completes(
    deepinfra: FakeProvider, tmp_path: Path
) -> None:
    kb = make_kb(tmp_path)
    qwen = settings_for(deepinfra, tmp_path)
    sync(qwen, kb)
    none = settings_for(deepinfra, tmp_path, embedding_input_format="none")
    stopped = sync(none, kb, stop_at=Deadline(0))
    assert stopped.incomplete and stopped.reembedded is not None and stopped.updated == 0
    assert REBUILDING in recorded(none)[0]
    for settings in (qwen, none):  # the vectors are of two formats now: neither may compare with them
        assert "embed_mismatch" in search(settings, "rotate keys").meta.degraded
    done = sync(none, kb)
    assert done.updated == 3 and not done.incomplete
    assert recorded(none)[0]["embedding_input_format"] == "none"
    assert search(none, "rotate keys").meta.degraded == []


def test_other_dimensions_rebuild_the_collection(deepinfra: FakeProvider, tmp_path: Path) -> None:
    kb = make_kb(tmp_path)
    sync(settings_for(deepinfra, tmp_path), kb)
    small = settings_for(deepinfra, tmp_path, embedding_dimensions=32)
    report = sync(small, kb)
    assert report.added == 3 and report.reembedded is not None
    assert "rebuilt" in report.reembedded and "dense size 64 but EMBEDDING_DIMENSIONS=32" in report.reembedded
    assert recorded(small)[0]["embedding_dimensions"] == 32
    assert search(small, "reranker outage").meta.degraded == []


def test_a_note_skipped_during_a_reembed_keeps_the_reembed_open(deepinfra: FakeProvider, tmp_path: Path) -> None:
    """A skipped note keeps the old model's vectors, so the re-embed is not done: the run says incomplete, the
    collection keeps saying it is rebuilding (searches stay BM25-only), and the next good run finishes it."""
    kb = make_kb(tmp_path)
    qwen = settings_for(deepinfra, tmp_path)
    sync(qwen, kb)
    (kb / "keys.md").write_bytes(b"# Rotate keys\n\n\xff\xfe not UTF-8 any more\n")
    e5 = settings_for(deepinfra, tmp_path, embedding_input_format="e5")
    partial = sync(e5, kb)
    assert [s["path"] for s in partial.skipped] == ["keys.md"] and partial.incomplete
    assert any("re-embedding not finished" in w["reason"] for w in partial.warnings)
    assert REBUILDING in recorded(e5)[0]
    assert "embed_mismatch" in search(e5, "restore snapshot").meta.degraded
    (kb / "keys.md").write_text(NOTES["keys.md"], encoding="utf-8")
    done = sync(e5, kb)
    assert not done.incomplete and done.skipped == []
    meta, ids = recorded(e5)
    assert REBUILDING not in meta and ids == {signature_id(meta)}
    assert search(e5, "restore snapshot").meta.degraded == []
