"""Round 32 (lines32): one line classifier (``kbsearch.markdown.read_body``) that a note's sections (what is
indexed), its outline (sections read by path, the note graph) and the tags written in its text all read, so they
agree on what a reader (CommonMark as Obsidian reads it) sees; a heading with nothing under it is found by its
words; a collection chunked by the older reading has each note read again by the next sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from kbsearch import notes
from kbsearch.chunking import chunk_note
from kbsearch.config import Secrets, Settings
from kbsearch.indexer import SyncReport, run_sync
from kbsearch.notes import body_tags, outline, parse_note
from kbsearch.qdrant import open_store
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import provider_settings
from tests.integration.test_notes_graph import write_kb
from tests.integration.test_review26 import metadata

#: name → (body, the sections' heading paths, the tags written in the text, the links): each a class of line the
#: three readers read differently before round 32 (unless marked "guard": read alike then too, kept so)
CASES: dict[str, tuple[str, list[tuple[str, ...]], list[str], list[str]]] = {
    # a fence in a quote is closed by the quote's end, as CommonMark closes it: the tag after it counted
    "quoted fence ended by the quote": (
        "> ```\n> #incode\nafter the quote #real\n\n## Next\n\nnext words\n",
        [(), ("Next",)],
        ["real"],
        [],
    ),
    # a fence in a quote (a callout's code) is code to the sections too: no link, its %% kept as written
    "quoted fence holding a link": (
        "> [!note] Pipes\n> ```md\n> [[Hidden]] #nottag 50%% off\n> ```\n\ntext [[Shown]]\n",
        [()],
        [],
        ["Shown"],
    ),
    # an indented code block is code: its %% opens no comment (which hid the rest: the next heading was lost)
    "indented code holding %%": ("Intro\n\n    set X=%%1\n\n## After\n\nafter words #t\n", [(), ("After",)], ["t"], []),
    "indented code holding a tag and a link": ("Intro\n\n    #notatag [[NotALink]]\n\nText #yes\n", [()], ["yes"], []),
    # guard: a list item's continuation is indented as code is, and is none
    "list continuation": ("- item\n\n    more #listtag [[Linked]]\n", [()], ["listtag"], ["Linked"]),
    # a $$ math block holds no tag, no link, no heading
    "math block": ("$$\n#notatag \\text{[[NoLink]]}\n# x\n$$\n\nafter #yes\n", [()], ["yes"], []),
    # guard: a $$ no later line closes is prose (a price): the rest of the note is read as ever
    "unclosed $$": ("$$ costs #yes\n\n## Head\n\ntext\n", [(), ("Head",)], ["yes"], []),
    # the line above a fence is no setext heading's text for a --- after the fence (the fence's last line was
    # taken off the section and the line made a heading)
    "underline after a fence": ("Text\n```\ncode\n```\n---\n\nmore\n", [()], [], []),
    # a fence in a list item, indented as the item's text (four spaces here): code, as any fence
    "fence in a list item": (
        "- Step\n\n    ```sh\n    run #notatag [[NotALink]]\n    ```\n\nafter #yes\n",
        [()],
        ["yes"],
        [],
    ),
    # a fence in a list item never closed ends with the item (a line at the margin), not with the note
    "fence in a list item ended by the item": (
        "- Step\n    ```\n    code #incode\nText at the margin #yes\n\n## Next\n\nwords\n",
        [(), ("Next",)],
        ["yes"],
        [],
    ),
    # guard: a fence in a list item closed at the margin (as written often) is closed there
    "fence in a list item closed at the margin": (
        "1. Step\n   ```bash\n   cmd #c\n```\n\n## Next\n\nwords\n",
        [(), ("Next",)],
        [],
        [],
    ),
    # guard: an HTML comment in a quote hides its tags
    "quoted comment": ("> <!--\n> #hidden\n> -->\n#shown\n", [()], ["shown"], []),
    # an HTML comment in a quote ends with the quote (it hid every tag after it)
    "quoted comment ended by the quote": (
        "> <!-- unclosed\n\n## Heading #t\n\nwords\n",
        [(), ("Heading #t",)],
        ["t"],
        [],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_sections_the_outline_and_the_tags_read_each_class_of_line_alike(name: str) -> None:
    read_alike(*CASES[name])


def read_alike(body: str, paths: list[tuple[str, ...]], tags: list[str], links: list[str]) -> None:
    """The sections' heading paths, the tags and the links of ``body``, and its outline agreeing with them."""
    note = parse_note("case.md", body.encode())
    assert [s.headings for s in note.sections] == paths, note.sections
    assert note.tags == tags and body_tags(body) == tags
    assert note.links == links
    # the outline holds the headings the sections are filed under, and no other
    assert {h.path for h in outline(body)} == {p for p in paths if p}


def test_a_fence_in_a_quote_is_kept_whole_as_written() -> None:
    body = "> ```md\n> [[Basic formatting syntax\\|Markdown syntax]] | 50%%\n> ```\n"
    (section,) = parse_note("q.md", body.encode()).sections
    assert section.text == body.rstrip("\n")


def test_a_setext_heading_starts_at_its_text_past_a_hidden_line() -> None:
    """A line a %%comment%% hides whole between a setext heading's text and its underline: the outline's section
    (what a read by path returns) started at the hidden line, not at the heading's text."""
    body = "Steps\n%%draft%%\n---\n\nrun it\n"
    (heading,) = outline(body)
    assert (heading.text, heading.start, heading.end) == ("Steps", 0, 6)
    assert [s.headings for s in parse_note("s.md", body.encode()).sections] == [("Steps",)]


#: notes with empty headings: a template's, a sibling's, the last; a heading over subsections; an H1 alone
EMPTY = {
    "template.md": "# Runbook\n\n## Symptoms\n\n## Zanzibar rollback steps\n\n## Contacts\n\ncall the duty phone\n",
    "last.md": "# Ops\n\n## Intro\n\nwords here\n\n## Quokka escalation\n",
    "parent.md": "# Guide\n\n## Setup\n\n### Install\n\ninstall words\n",
    "lonely.md": "# Lonely\n",
}


def test_a_heading_with_nothing_under_it_is_found_by_its_words_under_its_path(tmp_path: Path) -> None:
    """Template headings left empty, or a last heading, were in no chunk: a search for their words found nothing.
    Each is now a section of its own words (its chunk's heading path names it); a heading over subsections is in
    their paths already (no chunk of its own), and a note of its H1 alone is its one head chunk, as before."""
    assert [(s.headings, s.text) for s in parse_note("t.md", EMPTY["template.md"].encode()).sections] == [
        (("Symptoms",), "Symptoms"), (("Zanzibar rollback steps",), "Zanzibar rollback steps"),
        (("Contacts",), "call the duty phone")]  # fmt: skip
    assert [s.headings for s in parse_note("p.md", EMPTY["parent.md"].encode()).sections] == [("Setup", "Install")]
    lonely = parse_note("lonely.md", EMPTY["lonely.md"].encode())
    assert lonely.sections == [] and [c.heading for c in chunk_note(lonely)] == ["Lonely"]

    kb = write_kb(tmp_path / "kb", EMPTY)
    fake = FakeProvider("deepinfra", api_key="di-test-key").start()
    try:
        settings = provider_settings(fake, qdrant_path=str(tmp_path / "q"))
        report = run_sync(settings, Secrets(settings), source_uri=str(kb))
        assert report.added == 4 and report.error is None, report
        assert found(settings, "zanzibar rollback")[0] == ("template.md", "Runbook > Zanzibar rollback steps")
        assert found(settings, "quokka escalation")[0] == ("last.md", "Ops > Quokka escalation")
    finally:
        fake.stop()


def found(settings: Settings, query: str) -> list[tuple[str, str]]:
    """The (path, heading) of a search's first hits (no reranking, no expansion)."""
    service = SearchService(settings, Secrets(settings))
    try:
        hits = service.search(SearchRequest(query=query, top_k=3, rerank=False, expand=False)).results
        return [(h.path, h.heading) for h in hits]
    finally:
        service.close()


def sync_s3(root: Path, settings: Settings) -> SyncReport:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        for file in sorted(root.rglob("*.md")):
            s3.put_object(Bucket="kb-notes", Key="kb/" + file.relative_to(root).as_posix(), Body=file.read_bytes())
        report = run_sync(settings, Secrets(settings), source_uri="s3://kb-notes/kb/")
    assert report.error is None and not report.skipped and not report.incomplete, report
    return report


def test_notes_chunked_by_an_older_reading_are_read_again_by_the_next_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collection indexed before round 32 (no ``notes_reading`` recorded; its empty headings in no chunk, as
    round 31 chunked them) from S3: the next sync reads every note again though no etag changed, writes the
    chunks today's reading makes (the empty heading's words found), embeds only the new chunks (the others' stored
    vectors reused) and records the reading; the sync after that finds every note unchanged."""
    from kbsearch.markdown import PARSE_VERSION
    from kbsearch.qdrant.query import NOTES_READING

    kb = write_kb(tmp_path / "kb", EMPTY)
    fake = FakeProvider("deepinfra", api_key="di-test-key").start()
    try:
        settings = provider_settings(fake, qdrant_path=str(tmp_path / "q"))
        sections = notes._sections

        def round_31(read: Any, links: Any) -> Any:  # round 31 kept no section of an empty heading
            found, first_h1, empty = sections(read, links)
            return [s for i, s in enumerate(found) if i not in empty], first_h1, set()

        with monkeypatch.context() as patched:
            patched.setattr(notes, "_sections", round_31)
            assert sync_s3(kb, settings).added == 4
        assert metadata(settings).get(NOTES_READING) == PARSE_VERSION  # a new collection records it
        store = open_store(settings, Secrets(settings))
        try:  # what a kb-search before round 32 recorded: no reading
            store.set_metadata({k: v for k, v in store.metadata().items() if k != NOTES_READING})
        finally:
            store.close()
        assert ("template.md", "Runbook > Zanzibar rollback steps") not in found(settings, "zanzibar rollback")
        inputs = sum(len(c.body["input"]) for c in fake.calls("embeddings"))
        report = sync_s3(kb, settings)
        assert report.updated == 4 and report.added == 0 and report.unchanged == 0, report
        embedded = sum(len(c.body["input"]) for c in fake.calls("embeddings")) - inputs
        assert embedded == 3, (embedded, report)  # Symptoms, Zanzibar..., Quokka...: the others reused
        assert found(settings, "zanzibar rollback")[0] == ("template.md", "Runbook > Zanzibar rollback steps")
        assert found(settings, "quokka escalation")[0] == ("last.md", "Ops > Quokka escalation")
        assert metadata(settings).get(NOTES_READING) == PARSE_VERSION
        again = sync_s3(kb, settings)
        assert again.unchanged == 4 and again.updated == 0, again
    finally:
        fake.stop()
