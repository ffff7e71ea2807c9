"""An index built with an older BM25 reading of text (round 15's, before NFKC: ``x²`` the token ``x²``, full-width
``ｑｄｒａｎｔ`` a token of its own, a stress mark splitting its word) gets every chunk's sparse vector read anew by
the next sync, from the chunk's stored payload: no embedding call, dense vectors and payloads untouched; on the
embedded store (Qdrant Edge) and on the qdrant-client store Qdrant Cloud is written through."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from kbsearch import indexer, lexical
from kbsearch.config import Secrets, Settings
from kbsearch.errors import StoreError
from kbsearch.indexer import Indexer, SyncOptions, SyncReport
from kbsearch.providers.embeddings import Embedder, build_embedder
from kbsearch.providers.resilience import Deadline, shared_client
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import BM25_READING, BM25_READING_FROM, DENSE, SPARSE
from kbsearch.qdrant.store import Store
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch.sources import LocalSource
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import provider_settings
from tests.integration.test_access_index import write_kb

#: notes whose words round 15's reading (NFC, without what no reader sees: ``lexical.visible``) read otherwise than
#: today's: a superscript digit, full-width letters, a Russian stress mark; the summary is BM25-indexed too
NOTES = {
    "fit.md": "---\nsummary: Least squares of the x² term\n---\n# Curve fit\n\nThe residual is small.\n",
    "wide.md": "# Snapshots\n\nRestore the \uff51\uff44\uff52\uff41\uff4e\uff54 snapshots nightly.\n",
    "stress.md": "# Учёт\n\nВе\u0301домость хранится у казначея.\n",
    "plain.md": "# Plain\n\nThe wombat burrow survey of the garden.\n",
}
#: query (as a reader types it) → the note BM25 must find first
FINDS = {"x²": "fit.md", "squares": "fit.md", "qdrant": "wide.md", "ведомость": "stress.md", "wombat": "plain.md"}
#: what round 15's reading made of these queries' notes: each query misses its note in such an index
MISSED = {"x²", "qdrant", "ведомость"}


@pytest.fixture(params=["edge", "cloud"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    folder = tmp_path / "kb"
    write_kb(folder, NOTES, None)
    return folder


@pytest.fixture
def stores(kind: str, tmp_path: Path, deepinfra: FakeProvider) -> Iterator[Any]:
    """Opens the store of ``kind``: Qdrant Edge at a path (reopened each time, as each run opens it), or the
    qdrant-client store Qdrant Cloud is written through (in memory: one store for the test)."""
    settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"), qdrant_collection="kb")
    cloud = Store(QdrantClient(":memory:"), "kb", 64, embedded=False) if kind == "cloud" else None

    def opened() -> Store:
        return cloud if cloud is not None else open_store(settings, Secrets(settings))

    yield opened
    if cloud is not None:
        cloud.close()


def embedder_for(deepinfra: FakeProvider) -> Embedder:
    settings = provider_settings(deepinfra)
    embedder = build_embedder(settings, Secrets(settings), shared_client())
    assert embedder is not None
    return embedder


def sync(store: Store, kb: Path, embedder: Embedder, stop_at: Deadline | None = None) -> SyncReport:
    try:
        return Indexer(LocalSource(kb), store, embedder, SyncOptions()).sync(stop_at)
    finally:
        if store.embedded:
            store.close()


def index_as_round_15(opened: Any, kb: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """The KB indexed as kb-search read text before round 16 (NFC without invisible characters, no NFKC, marks
    kept: ``lexical.visible``), its collection recording no reading (none was recorded then)."""
    with monkeypatch.context() as patched:
        patched.setattr(lexical, "reading", lexical.visible)
        lexical._STEMS.clear()
        first = sync(opened(), kb, embedder)
    lexical._STEMS.clear()
    assert first.added == len(NOTES) and first.error is None, first
    store = opened()
    try:
        store.set_metadata({k: v for k, v in store.metadata().items() if k != BM25_READING})
    finally:
        if store.embedded:
            store.close()


def vectors(store: Store) -> dict[str, tuple[list[float], tuple[list[int], list[float]]]]:
    """point id → (its dense vector, its BM25 vector's indices and values)."""
    out: dict[str, tuple[list[float], tuple[list[int], list[float]]]] = {}
    if store.embedded:
        import qdrant_edge as edge

        records, _ = store.shard.scroll(edge.ScrollRequest(limit=10_000, with_payload=False, with_vector=True))  # type: ignore[attr-defined]
    else:
        records, _ = store.client.scroll(store.collection, limit=10_000, with_payload=False, with_vectors=True)
    for record in records:
        named = record.vector
        sparse = named.get(SPARSE)
        terms = (list(sparse.indices), [round(float(v), 6) for v in sparse.values]) if sparse is not None else ([], [])
        out[str(record.id)] = ([round(float(x), 6) for x in named[DENSE]], terms)
    return out


def first_hits(store: Store) -> dict[str, str | None]:
    """Each query of :data:`FINDS` → the first note BM25 finds for it (the search without an embedder: BM25 alone,
    so the dense leg finds nothing for it)."""
    settings = Settings(qdrant_collection="kb", embedding_dimensions=64)
    service = SearchService(settings, Secrets(settings), store=store, embedder=None, wire_providers=False)
    out: dict[str, str | None] = {}
    for query in FINDS:
        hits = service.search(SearchRequest(query=query, top_k=5, rerank=False, expand=False)).results
        out[query] = hits[0].path if hits else None
    return out


def read(opened: Any, what: Any) -> Any:
    store = opened()
    try:
        return what(store)
    finally:
        if store.embedded:
            store.close()


def synced_anew(opened: Any, kb: Path, embedder: Embedder, deepinfra: FakeProvider, older: int) -> tuple[Any, Any, Any]:
    """The next sync of an index a reading ``older`` wrote: it rewrites every chunk's BM25 vector, embeds nothing,
    changes no dense vector and no payload. Returns the vectors before and after, and the payloads."""
    before = read(opened, vectors)
    payloads = read(opened, lambda s: s.points())
    calls = len(deepinfra.calls("embeddings"))
    report = sync(opened(), kb, embedder)
    assert report.error is None and report.bm25_rewritten == len(before) and report.embedding_calls == 0, report
    assert str(report.bm25_reading).startswith(
        f"rewrote BM25 vectors of {len(before)} chunks (reading v{older} -> v{lexical.READING_VERSION})"
    )
    assert len(deepinfra.calls("embeddings")) == calls
    after = read(opened, vectors)
    assert {pid: v[0] for pid, v in after.items()} == {pid: v[0] for pid, v in before.items()}  # dense untouched
    assert read(opened, lambda s: s.points()) == payloads
    return before, after, payloads


def test_an_older_reading_is_rewritten_without_embedding(
    kind: str, stores: Any, kb: Path, deepinfra: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next sync finds the collection recording no reading: every chunk's BM25 vector is read anew from its
    payload (its heading path, its note's summary, its text), nothing is embedded, no dense vector or payload
    changes, and the words round 15 read otherwise are found; the sync after that does nothing more."""
    embedder = embedder_for(deepinfra)
    index_as_round_15(stores, kb, embedder, monkeypatch)
    before = read(stores, vectors)
    payloads = read(stores, lambda s: s.points())
    stale = read(stores, first_hits)
    assert {q for q, note in stale.items() if note != FINDS[q]} == MISSED, stale  # the index is an old one
    calls = len(deepinfra.calls("embeddings"))

    report = sync(stores(), kb, embedder)
    assert report.error is None and not report.incomplete and report.unchanged == len(NOTES), report
    assert report.bm25_rewritten == len(before) and report.embedding_calls == 0
    assert str(report.bm25_reading).startswith(
        f"rewrote BM25 vectors of {len(before)} chunks (reading unrecorded -> v{lexical.READING_VERSION})"
    ), report.bm25_reading
    assert len(deepinfra.calls("embeddings")) == calls and report.warnings == []
    after = read(stores, vectors)
    assert {pid: v[0] for pid, v in after.items()} == {pid: v[0] for pid, v in before.items()}  # dense untouched
    assert read(stores, lambda s: s.points()) == payloads
    assert sum(after[pid][1] != before[pid][1] for pid in after) == 3  # the chunks holding those words
    assert read(stores, first_hits) == FINDS
    assert read(stores, lambda s: s.metadata().get(BM25_READING)) == lexical.READING_VERSION

    again = sync(stores(), kb, embedder)
    assert again.bm25_rewritten == 0 and again.bm25_reading is None and again.error is None
    assert read(stores, vectors) == after and len(deepinfra.calls("embeddings")) == calls


class FailingStore:
    """The real store, its ``n``-th write of BM25 vectors failing (a Qdrant 5xx, a full disk)."""

    def __init__(self, inner: Store, n: int) -> None:
        self.inner, self.n, self.writes = inner, n, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def set_sparse(self, vectors: Any, where: Any) -> None:
        self.writes += 1
        if self.writes == self.n:
            raise StoreError("rewriting the BM25 vectors of 2 points failed: 503")
        self.inner.set_sparse(vectors, where)


def test_a_rewrite_that_fails_halfway_is_done_by_the_next_sync(
    kind: str, stores: Any, kb: Path, deepinfra: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails the second page: the run reports the error and records no reading (some chunks hold the
    old one); the next sync reads every chunk anew and records it."""
    embedder = embedder_for(deepinfra)
    index_as_round_15(stores, kb, embedder, monkeypatch)
    monkeypatch.setattr(indexer, "REREAD_PAGE", 2)
    store = stores()
    failed = sync(FailingStore(store, 2), kb, embedder)  # type: ignore[arg-type]
    if store.embedded:
        store.close()
    assert failed.error is not None and "503" in failed.error and failed.bm25_rewritten == 2, failed
    assert read(stores, lambda s: s.metadata().get(BM25_READING)) is None
    assert read(stores, first_hits) != FINDS

    done = sync(stores(), kb, embedder)
    total = len(read(stores, vectors))
    assert done.error is None and done.bm25_rewritten == total and done.embedding_calls == 0, done
    assert read(stores, first_hits) == FINDS
    assert read(stores, lambda s: s.metadata().get(BM25_READING)) == lexical.READING_VERSION


class SlowStore(FailingStore):
    """The real store, the run's deadline passing while it writes the first page of BM25 vectors."""

    def __init__(self, inner: Store, stop_at: Deadline) -> None:
        super().__init__(inner, 0)
        self.stop_at = stop_at

    def set_sparse(self, vectors: Any, where: Any) -> None:
        self.inner.set_sparse(vectors, where)
        self.stop_at.at = time.monotonic() - 1


def test_a_rewrite_stopped_by_the_deadline_is_carried_on_where_it_stopped(
    kind: str, stores: Any, kb: Path, deepinfra: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's deadline passes after the first page: the run is incomplete and records how far it got; the next
    sync rewrites only the chunks after it, then records the reading."""
    embedder = embedder_for(deepinfra)
    index_as_round_15(stores, kb, embedder, monkeypatch)
    monkeypatch.setattr(indexer, "REREAD_PAGE", 2)
    stop_at = Deadline()
    store = stores()
    stopped = sync(SlowStore(store, stop_at), kb, embedder, stop_at)  # type: ignore[arg-type]
    if store.embedded:
        store.close()
    assert stopped.incomplete and stopped.error is None and stopped.bm25_rewritten == 2, stopped
    assert "the next sync carries on" in str(stopped.bm25_reading)
    carried = read(stores, lambda s: s.metadata())
    assert BM25_READING not in carried and carried[BM25_READING_FROM]["version"] == lexical.READING_VERSION

    done = sync(stores(), kb, embedder)
    total = len(read(stores, vectors))
    assert done.error is None and not done.incomplete and done.bm25_rewritten == total - 2, done
    assert read(stores, first_hits) == FINDS
    recorded = read(stores, lambda s: s.metadata())
    assert recorded.get(BM25_READING) == lexical.READING_VERSION and BM25_READING_FROM not in recorded


def test_a_chunk_whose_stored_text_is_not_what_was_embedded_has_its_note_read_again(
    kind: str, stores: Any, kb: Path, deepinfra: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk's text rebuilt from its payload is checked against the hash of what its dense vector embedded
    (``embed_hash``): where they differ (a payload a store gave back otherwise than it was written), its BM25
    vector cannot be trusted to be the note's, so the note is read again from the KB in the same run (and embedded:
    that note only); the others are rewritten from their payloads."""
    embedder = embedder_for(deepinfra)
    index_as_round_15(stores, kb, embedder, monkeypatch)
    read(stores, lambda s: s.set_payload("wide.md", {"embed_hash": "0" * 24}))
    calls = len(deepinfra.calls("embeddings"))

    report = sync(stores(), kb, embedder)
    assert report.error is None and report.updated == 1 and report.unchanged == len(NOTES) - 1, report
    assert report.embedding_calls == 1 and len(deepinfra.calls("embeddings")) == calls + 1
    assert report.warnings == [{"path": "", "reason": "1 chunk(s) of 1 note(s) hold a text that is not what was "
                                "embedded: those notes are read again from the KB"}]  # fmt: skip
    assert read(stores, first_hits) == FINDS
    hashes = read(stores, lambda s: {p["path"]: p["embed_hash"] for p in s.points().values()})
    assert hashes["wide.md"] != "0" * 24


class DeletesMeanwhile(FailingStore):
    """The real store, a note deleted (by an event batch, say) between the read of a page and its write."""

    def __init__(self, inner: Store, path: str) -> None:
        super().__init__(inner, 0)
        self.path = path

    def set_sparse(self, vectors: Any, where: Any) -> None:
        if self.path:
            self.inner.delete_note(self.path)
            self.path = ""
        self.inner.set_sparse(vectors, where)


def test_a_note_deleted_while_its_page_is_rewritten_fails_nothing(
    kind: str, stores: Any, kb: Path, deepinfra: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Qdrant refuses an update of vectors naming a point that is gone: the page is written again with the points
    still there, and the run goes on (the note, still in the KB, is indexed again by the same sync)."""
    embedder = embedder_for(deepinfra)
    index_as_round_15(stores, kb, embedder, monkeypatch)
    store = stores()
    report = sync(DeletesMeanwhile(store, "stress.md"), kb, embedder)  # type: ignore[arg-type]
    if store.embedded:
        store.close()
    assert report.error is None and report.added == 1 and report.unchanged == len(NOTES) - 1, report
    assert read(stores, first_hits) == FINDS
    assert read(stores, lambda s: s.metadata().get(BM25_READING)) == lexical.READING_VERSION


def test_a_re_embed_begun_with_an_older_reading_is_not_taken_for_a_rewrite(
    kind: str, stores: Any, kb: Path, deepinfra: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """review17: a re-embed (another model) begun by a run of the older code and finished by this one. The older
    run wrote every note with the new model and the older reading, then its deadline stopped it before recording
    the model; this code's next run sees the re-embed in progress, skips the rewrite of BM25 vectors, finds every
    note already of the new model (nothing to write) and, the re-embed complete, recorded today's reading: the
    notes kept the older reading's tokens for good (``x²`` never found again)."""
    from kbsearch.qdrant.query import REBUILDING, signature_id

    embedder = embedder_for(deepinfra)
    index_as_round_15(stores, kb, embedder, monkeypatch)
    store = stores()
    try:  # the older code's re-embed, stopped after writing every note: the collection still says it is rebuilding
        store.set_metadata({**store.metadata(), REBUILDING: signature_id(embedder.signature)})
    finally:
        if store.embedded:
            store.close()
    report = sync(stores(), kb, embedder)
    assert report.error is None and not report.incomplete, report
    assert read(stores, first_hits) == FINDS  # failed: x², qdrant, ведомость missed, and reading 3 recorded
    assert read(stores, lambda s: s.metadata().get(BM25_READING)) == lexical.READING_VERSION


def test_a_key_configured_for_a_bm25_only_index_does_not_rewrite_every_chunk_again(
    kind: str, stores: Any, kb: Path, deepinfra: FakeProvider
) -> None:
    """review17: an index built without an embedding key (BM25 only, today's reading recorded); a key configured,
    the next run adopts the embedding (``set_metadata``, which replaces the whole record) and dropped the reading:
    it then rewrote every chunk's BM25 vector, which were current."""
    store = stores()
    try:
        first = Indexer(LocalSource(kb), store, None, SyncOptions()).sync()
    finally:
        if store.embedded:
            store.close()
    assert first.error is None and read(stores, lambda s: s.metadata().get(BM25_READING)) == lexical.READING_VERSION
    report = sync(stores(), kb, embedder_for(deepinfra))
    assert report.error is None and report.updated == len(NOTES), report  # embedded now
    assert report.bm25_rewritten == 0, report.bm25_reading  # was every chunk: the reading had been dropped


def test_a_run_whose_notes_cannot_be_synced_records_the_rewrite_it_finished(
    kind: str, stores: Any, kb: Path, deepinfra: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """review17: the rewrite finishes, then the notes' sync stops on an error of its own (an access file that
    cannot be used, a listing that fails): every chunk holds today's reading, but the version was recorded only by
    a run without error, so each run rewrote the whole index again for as long as the access file stayed broken
    (every 15 minutes: 1,232 update requests at 100x the vault on Cloud, every dense graph rebuilt on Edge)."""
    embedder = embedder_for(deepinfra)
    index_as_round_15(stores, kb, embedder, monkeypatch)
    (kb / "_access.yaml").write_text("hr/: off\n", encoding="utf-8")  # a bare yes/no word: the sync stops
    first = sync(stores(), kb, embedder)
    assert first.error and "yes/no switch" in first.error, first
    assert first.bm25_rewritten > 0
    again = sync(stores(), kb, embedder)
    assert again.error and again.bm25_rewritten == 0, again.bm25_reading  # was every chunk, every run
    assert read(stores, first_hits) == FINDS
