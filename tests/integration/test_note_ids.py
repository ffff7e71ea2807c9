"""A note is found by its front-matter ``id`` (``KB-013``, ``ADR-003``, ``42``): the id is read by BM25 with the note's
first chunk (:func:`kbsearch.chunking.lexical_text`), not embedded. Before session 24 no text held it, and a search
for ``KB-013`` answered other notes (sample-kb: the Slack bot, onboarding, MCP). An index built before then (BM25
reading 3) gets the ids at its next sync, read from the first chunks' stored ``meta``, without embedding anything;
on the embedded store (Qdrant Edge) and on the qdrant-client store Qdrant Cloud is written through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kbsearch import lexical
from kbsearch.chunking import embed_text
from kbsearch.config import Secrets, Settings
from kbsearch.indexer import stored_embed_text
from kbsearch.lexical import document_vector
from kbsearch.qdrant.query import BM25_READING
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch_tools.fakes import FakeProvider
from tests.integration import test_bm25_reading as reading_tests
from tests.integration.test_access_index import write_kb
from tests.integration.test_bm25_reading import embedder_for, read, sync, synced_anew

kind = reading_tests.kind  # the fixtures: Qdrant Edge at a path, and the qdrant-client store Cloud is written through
stores = reading_tests.stores

NOTES = {
    "providers/Qdrant Cloud.md": "---\nid: KB-013\ntitle: Qdrant Cloud\n---\nThe index lives in a managed cluster.\n",
    "adr/Serverless.md": "---\nid: ADR-003\n---\n# Serverless on Lambda\n\nWe run on Lambda.\n\n## Costs\n\nPennies.\n",
    "numbers.md": "---\nid: 42\n---\n# Answers\n\nThe numbers we keep.\n",
    "plain.md": "# Plain\n\nA note without an id about clusters and Lambda.\n",
    "mentions.md": "# Mentions\n\nSee the ADR about Lambda and the managed cluster.\n",
}
#: the id as a reader types it → the note it names
IDS = {"KB-013": "providers/Qdrant Cloud.md", "kb-013": "providers/Qdrant Cloud.md", "ADR-003": "adr/Serverless.md",
       "42": "numbers.md"}  # fmt: skip


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    folder = tmp_path / "kb"
    write_kb(folder, NOTES, None)
    return folder


def first_hits(store: Any, embedder: Any) -> dict[str, str | None]:
    """Each id of :data:`IDS` → the first note a search for it answers (``embedder``: None for BM25 alone)."""
    settings = Settings(qdrant_collection="kb", embedding_dimensions=64)
    service = SearchService(settings, Secrets(settings), store=store, embedder=embedder, wire_providers=False)
    out: dict[str, str | None] = {}
    for query in IDS:
        hits = service.search(SearchRequest(query=query, top_k=3, rerank=False, expand=False)).results
        out[query] = hits[0].path if hits else None
    return out


@pytest.mark.parametrize("dense", [False, True], ids=["bm25", "hybrid"])
def test_a_note_is_found_first_by_its_front_matter_id(
    kind: str, stores: Any, kb: Path, deepinfra: FakeProvider, dense: bool
) -> None:
    embedder = embedder_for(deepinfra)
    report = sync(stores(), kb, embedder)
    assert report.error is None and report.added == len(NOTES), report
    assert read(stores, lambda s: first_hits(s, embedder if dense else None)) == IDS


def test_an_index_read_before_ids_gets_them_at_its_next_sync_without_embedding(
    kind: str, stores: Any, kb: Path, deepinfra: FakeProvider
) -> None:
    """The index as reading 3 wrote it: each chunk's BM25 vector its embedded text alone, reading 3 recorded. The
    next sync rewrites the BM25 vectors (the first chunks' now hold the id), embeds nothing, changes no dense vector
    and no payload, and the ids are found; the sync after it does nothing more."""
    embedder = embedder_for(deepinfra)
    assert sync(stores(), kb, embedder).error is None
    assert lexical.READING_VERSION == 9

    def as_reading_3(store: Any) -> None:
        old = [(pid, document_vector(str(stored_embed_text(payload)))) for pid, payload in store.points().items()]
        store.set_sparse(old, {"must": []})
        store.set_metadata({**store.metadata(), BM25_READING: 3})

    read(stores, as_reading_3)
    assert read(stores, lambda s: first_hits(s, None)) != IDS  # the old index does not know the ids
    before, after, _ = synced_anew(stores, kb, embedder, deepinfra, 3)
    assert sum(after[pid][1] != before[pid][1] for pid in after) == 3  # the first chunks of the three notes with ids
    assert read(stores, lambda s: first_hits(s, None)) == IDS
    assert read(stores, lambda s: first_hits(s, embedder)) == IDS
    again = sync(stores(), kb, embedder)
    assert again.bm25_rewritten == 0 and again.error is None and again.embedding_calls == 0


def test_the_id_is_read_by_bm25_and_not_embedded() -> None:
    """A note given an id is not embedded again: the text its dense vector embeds is unchanged."""
    from kbsearch.chunking import chunk_note, lexical_text
    from kbsearch.notes import note_id, parse_note

    for path, text in NOTES.items():
        note = parse_note(path, text.encode(), 1 << 20)
        for chunk in chunk_note(note):
            assert chunk.embed_text == embed_text(chunk.index, chunk.heading, note.summary, chunk.text)
            expected = note_id(note.metadata) if chunk.index == 0 else None
            lexical_form = lexical_text(chunk.index, chunk.embed_text, note_id(note.metadata))
            assert lexical_form == (f"{chunk.embed_text}\n\n{expected}" if expected else chunk.embed_text)
