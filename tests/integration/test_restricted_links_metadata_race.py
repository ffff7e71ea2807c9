"""review17: the restricted link list is written into the collection's metadata by event batches too (no lease
shared with the scheduled sync): written by replacing the whole record from a read made a moment before, it
wiped what another writer recorded meanwhile (BM25's reading, how far its rewrite got: the next sync rewrote the
whole index again, or started its rewrite over)."""

from __future__ import annotations

import contextlib
from typing import Any

from qdrant_client import QdrantClient

from kbsearch import lexical
from kbsearch.indexer import record_restricted_links
from kbsearch.qdrant.query import BM25_READING, RESTRICTED_LINKS
from kbsearch.qdrant.store import Store


class RacedStore:
    """The store, the scheduled sync recording BM25's reading just after the links' writer read the metadata."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.raced = inner, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def metadata(self) -> dict[str, Any]:
        snapshot = self.inner.metadata()
        if not self.raced:
            self.raced = True
            self.inner.merge_metadata({BM25_READING: lexical.READING_VERSION})  # the sync, between read and write
        return snapshot


def test_a_restricted_link_list_written_meanwhile_keeps_the_bm25_reading() -> None:
    store = Store(QdrantClient(":memory:"), "kb", 64, embedded=False)
    try:
        store.ensure_collection({"model": "m", "dimensions": 64})
        raced = RacedStore(store)
        assert record_restricted_links(raced, contextlib.nullcontext, set(), None) is True  # type: ignore[arg-type]
        recorded = store.metadata()
        assert recorded.get(RESTRICTED_LINKS) == {}
        assert recorded.get(BM25_READING) == lexical.READING_VERSION  # was wiped: set_metadata from the snapshot
    finally:
        store.close()
