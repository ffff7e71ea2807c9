"""A ``[[wiki-link]]``'s text names the note it points to, not the note it is in (EVAL.md, "Session 31: what a
wiki-link's text counts for in BM25 (link31)"). The sample KB's *Qdrant Cloud* links *Runbook - restore a Qdrant
snapshot* by its title from a two-line section; BM25 counted the title's words for that section, which then held the
query's words more densely than the runbook, and the README's first query ("restore a qdrant snapshot") answered
*Qdrant Cloud* first. A chunk quoting a linked note's name (four words or more) now counts the name's words only
where it holds them nowhere else; what it shows and embeds is unchanged. An index read before (BM25 reading 4) gets
the new vectors at its next sync, from the payloads' ``links``, without embedding anything; on the embedded store
(Qdrant Edge) and on the qdrant-client store Qdrant Cloud is written through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kbsearch import lexical
from kbsearch.chunking import chunk_note, lexical_text
from kbsearch.config import Secrets, Settings
from kbsearch.indexer import stored_embed_text, stored_note_id
from kbsearch.lexical import document_vector
from kbsearch.notes import parse_note
from kbsearch.qdrant.query import BM25_READING
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch_tools.fakes import FakeProvider
from tests.integration import test_bm25_reading as reading_tests
from tests.integration.test_access_index import write_kb
from tests.integration.test_bm25_reading import embedder_for, read, sync, synced_anew, vectors

kind = reading_tests.kind  # the fixtures: Qdrant Edge at a path, and the qdrant-client store Cloud is written through
stores = reading_tests.stores

SAMPLE_KB = Path(__file__).resolve().parents[2] / "sample-kb"
RUNBOOK = "en/runbooks/Runbook - restore a Qdrant snapshot.md"
LINKING = "en/providers/Qdrant Cloud.md"
#: the README's first query and the Slack walk's: the runbook answers both
QUERIES = ("restore a qdrant snapshot", "qdrant snapshot")

#: a note whose only English word is in a link (a Russian note linking an English title): the link still finds it;
#: and one that links a short name inline ("[[Search]]"): those words are the sentence's, and count
NOTES = {
    "ru/Резервные копии.md": "# Резервные копии\n\nПорядок описан в [[Grafana alerting escalation policy]].\n",
    "en/Settings.md": "# Settings\n\nFiles matching these filters are excluded from [[Search]] and [[Graph view]].\n",
    "en/Graph view.md": "# Graph view\n\nThe graph shows the notes and their links as a picture of dots.\n",
    "en/Grafana alerting escalation policy.md": "# Grafana alerting escalation policy\n\nPage the on-call.\n",
}


def first(store: Any, query: str, top_k: int = 5) -> list[str]:
    """The notes BM25 alone answers ``query`` with, best first."""
    settings = Settings(qdrant_collection="kb", embedding_dimensions=64)
    service = SearchService(settings, Secrets(settings), store=store, embedder=None, wire_providers=False)
    hits = service.search(SearchRequest(query=query, top_k=top_k, rerank=False, expand=False)).results
    return [h.path for h in hits]


def as_reading_4(store: Any) -> None:
    """Every chunk's BM25 vector as reading 4 made it (the link's words counted as the chunk's own), reading 4
    recorded."""
    old = [(pid, document_vector(lexical_text(p["chunk_index"], str(stored_embed_text(p)), stored_note_id(p))))
           for pid, p in store.points().items()]  # fmt: skip
    store.set_sparse(old, {"must": []})
    store.set_metadata({**store.metadata(), BM25_READING: 4})


def test_the_readmes_first_query_finds_the_runbook_not_the_note_that_links_it(
    kind: str, stores: Any, deepinfra: FakeProvider
) -> None:
    report = sync(stores(), SAMPLE_KB, embedder_for(deepinfra))
    assert report.error is None and report.added == 35, report
    for query in QUERIES:
        ranked = read(stores, lambda s, q=query: first(s, q))
        assert ranked[:2] == [RUNBOOK, LINKING], (query, ranked)


def test_an_index_read_before_counts_links_anew_at_its_next_sync_without_embedding(
    kind: str, stores: Any, deepinfra: FakeProvider
) -> None:
    """The sample KB as reading 4 indexed it answers *Qdrant Cloud* first; the next sync rewrites every chunk's
    BM25 vector from its payload (the links are there), embeds nothing, changes no dense vector and no payload, and
    the runbook comes first; the sync after it does nothing more."""
    embedder = embedder_for(deepinfra)
    assert sync(stores(), SAMPLE_KB, embedder).error is None
    assert lexical.READING_VERSION == 9
    read(stores, as_reading_4)
    assert read(stores, lambda s: first(s, QUERIES[0]))[0] == LINKING  # what the README's query answered
    before, after, payloads = synced_anew(stores, SAMPLE_KB, embedder, deepinfra, 4)
    changed = [pid for pid in after if after[pid][1] != before[pid][1]]
    assert LINKING in {payloads[pid]["path"] for pid in changed}
    assert all(payloads[pid].get("links") for pid in changed)  # only chunks of notes that link
    assert read(stores, lambda s: first(s, QUERIES[0]))[:2] == [RUNBOOK, LINKING]
    again = sync(stores(), SAMPLE_KB, embedder)
    assert again.bm25_rewritten == 0 and again.error is None and again.embedding_calls == 0


def test_a_word_only_a_link_brings_and_a_short_name_linked_inline_still_find_the_linking_note(
    kind: str, stores: Any, tmp_path: Path, deepinfra: FakeProvider
) -> None:
    folder = tmp_path / "kb"
    write_kb(folder, NOTES, None)
    assert sync(stores(), folder, embedder_for(deepinfra)).error is None
    assert "ru/Резервные копии.md" in read(stores, lambda s: first(s, "grafana escalation", 2))
    assert read(stores, lambda s: first(s, "excluded from search graph view"))[0] == "en/Settings.md"


def test_what_a_linking_chunk_shows_and_embeds_keeps_the_links_text() -> None:
    """Only its BM25 counts change: the chunk's text and embedded text hold the title (dense vectors, and the
    oracle caches keyed by the embedded text, are unchanged), and its sparse vector is the one without the link's
    repeated words."""
    note = parse_note(LINKING, (SAMPLE_KB / LINKING).read_bytes(), 1 << 20)
    (chunk,) = [c for c in chunk_note(note) if c.heading.endswith("Snapshots")]
    assert "described in Runbook - restore a Qdrant snapshot" in chunk.text
    assert chunk.embed_text.endswith(chunk.text)
    linked = document_vector(chunk.embed_text, links=note.links)
    plain = document_vector(chunk.embed_text)
    assert linked.indices == plain.indices  # every word still a term of the chunk (each is there outside the link)
    weights = dict(zip(linked.indices, linked.values, strict=True))
    plain_weights = dict(zip(plain.indices, plain.values, strict=True))
    for term in ("restor", "qdrant", "snapshot"):  # held outside the link too: counted there only
        assert weights[lexical.term_id(term)] < plain_weights[lexical.term_id(term)]
    assert weights[lexical.term_id("runbook")] == plain_weights[lexical.term_id("runbook")]  # only the link has it
    assert lexical.linked_tokens(lexical.tokenize("see the lucide menu svg"), ["lucide-menu.svg"]) == [False] * 4


@pytest.mark.parametrize(
    ("text", "links", "marked"),
    [
        ("Restore a Qdrant snapshot runbook today", ["Restore a Qdrant snapshot runbook"], [True] * 4 + [False]),
        ("Restore a Qdrant snapshot today", ["Restore a Qdrant snapshot"], [False] * 4),  # three words: the sentence's
        ("Restore Qdrant snapshot runbook, restore", ["Restore a Qdrant snapshot runbook", "Restore Qdrant snapshot runbook fully"],
         [True, True, True, True, False]),
        ("see ops/runbooks/Restore qdrant snapshot.md", ["ops/runbooks/Restore qdrant snapshot.md"], [False] + [True] * 6),
    ],
)  # fmt: skip
def test_which_words_quote_a_linked_name(text: str, links: list[str], marked: list[bool]) -> None:
    assert lexical.linked_tokens(lexical.tokenize(text), links) == marked


#: a note that links to its own section by its full title (``[[Own title#Section]]``, as written where Obsidian's
#: ``[[#Section]]`` would do): its heading path starts every chunk with the title, which is no other note's name
SELF_LINKING = {
    "en/Runbook - restore a Qdrant snapshot.md": (
        "# Runbook - restore a Qdrant snapshot\n\nRestore the snapshot with care: the steps are in "
        "[[Runbook - restore a Qdrant snapshot#Steps]].\n\n## Steps\n\nRestore the Qdrant snapshot from the bucket.\n"
    ),
}


def test_a_note_linking_to_itself_keeps_its_own_titles_words_at_indexing_and_when_read_anew(
    kind: str, stores: Any, tmp_path: Path, deepinfra: FakeProvider
) -> None:
    """A link's words are discounted because they name another note (rev31a): a link to the note itself names the
    note they are in, and its title heads every chunk's text (the heading path). Indexed, and read anew from the
    payloads after reading 4, every chunk's BM25 vector is the one its text makes without links (main's discounted
    the title's words in both chunks, the one without the link too)."""
    folder = tmp_path / "kb"
    write_kb(folder, SELF_LINKING, None)
    embedder = embedder_for(deepinfra)
    assert sync(stores(), folder, embedder).error is None

    def plain(store: Any) -> dict[str, tuple[list[int], list[float]]]:
        out = {}
        for pid, p in store.points().items():
            v = document_vector(lexical_text(p["chunk_index"], str(stored_embed_text(p)), stored_note_id(p)))
            out[pid] = (v.indices, [round(x, 6) for x in v.values])
        return out

    def stored() -> dict[str, tuple[list[int], list[float]]]:
        return {
            pid: (sparse[0], [round(x, 6) for x in sparse[1]]) for pid, (_, sparse) in read(stores, vectors).items()
        }

    expected = read(stores, plain)
    assert len(expected) == 2 and stored() == expected
    read(stores, as_reading_4)
    synced_anew(stores, folder, embedder, deepinfra, 4)
    assert stored() == expected
