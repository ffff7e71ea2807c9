"""SEARCH_CANDIDATES notes reach the reranker whenever the index has that many matching notes, even when every
note has many matching chunks (prefetches count chunks; grouping keeps one per note)."""

from __future__ import annotations

from pathlib import Path

from kbsearch.config import Secrets
from kbsearch.indexer import run_sync
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import provider_settings

SECTION = "## Part {j}\n\nRestore the qdrant snapshot, step {j} of note {i}: check the collection and the indexer.\n"


def test_fifty_notes_reach_the_reranker_when_notes_have_many_chunks(deepinfra: FakeProvider, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    for i in range(70):
        body = "\n".join(SECTION.format(i=i, j=j) for j in range(6))
        (kb / f"note{i:02d}.md").write_text(f"# Snapshot note {i}\n\n{body}", encoding="utf-8")
    settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"), expansion_api_key=None)
    report = run_sync(settings, Secrets(settings), source_uri=str(kb))
    assert report.chunks_upserted == 70 * 6 and report.error is None

    def documents_reranked(**extra: object) -> tuple[int, int]:
        service = SearchService(settings.model_copy(update=extra), Secrets(settings))
        try:
            answer = service.search(SearchRequest(query="restore the qdrant snapshot", expand=False))
        finally:
            service.close()
        return answer.meta.candidates, len(deepinfra.calls("rerank")[-1].body["documents"])

    assert documents_reranked() == (50, 50)
    # prefetches count chunks: two legs of 20 chunks cannot hold 50 notes, and the reranker gets what there is
    short = documents_reranked(search_prefetch_limit=20)
    assert short[0] == short[1] <= 40
