"""What session 26's review of its own merged change found, each through the indexer's real interface (the loopback
DeepInfra, Qdrant Edge and qdrant-client's local mode): a re-embed keeps the record of the graph keys and of the
notes refused as slow; a collection recorded as holding ``graph_keys`` everywhere that gets a note without them (an
older kbsearch wrote it) has the record cleared, so that note's links are still answered; a note rewritten only for
its graph keys is no change an event missed; the run's end given as no end bounds nothing; a skipped note's path is
shown on one line, escaped; and every time limit is cancelled even when one fires during another's cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import PARSE_REFUSED, Indexer, SyncOptions, SyncReport, parse_for_index
from kbsearch.providers.embeddings import build_embedder
from kbsearch.providers.resilience import Deadline, shared_client
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import GRAPH_KEYS_ONLY, REBUILDING
from kbsearch.sources import LocalSource
from kbsearch.timelimit import TimeLimit, TimeLimitHit
from kbsearch_tools.fakes import FakeProvider
from kbsearch_tools.local.live import skipped_text
from tests.conftest import provider_settings
from tests.integration.test_notes_graph import NOTES, as_written_before, write_kb


def sync(settings: Settings, kb: Path, **options: Any) -> SyncReport:
    store = open_store(settings, Secrets(settings))
    try:
        embedder = build_embedder(settings, Secrets(settings), shared_client())
        chosen = SyncOptions.from_settings(settings)
        for name, value in options.items():
            setattr(chosen, name, value)
        return Indexer(LocalSource(kb), store, embedder, chosen).sync(Deadline(600))
    finally:
        store.close()


def metadata(settings: Settings) -> dict[str, Any]:
    store = open_store(settings, Secrets(settings))
    try:
        return store.metadata()
    finally:
        store.close()


def merge_metadata(settings: Settings, values: dict[str, Any]) -> None:
    store = open_store(settings, Secrets(settings))
    try:
        store.merge_metadata(values)
    finally:
        store.close()


@pytest.fixture(params=["edge", "local"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_finished_reembed_keeps_the_graph_keys_record_and_the_notes_refused_as_slow(
    backend: str, deepinfra: FakeProvider, tmp_path: Path
) -> None:
    """A re-embed replaces the collection's whole metadata record when it completes: whether every note holds its
    graph keys (a re-embed changes no note's keys) and which notes were refused as slow (their text is the same)
    are kept, where they were dropped (the graph's readers then asked for the old fields, which a collection made now
    has no index of; each slow note was parsed again, 30 s of CPU, twice per re-embed)."""
    kb = write_kb(tmp_path / "kb", NOTES)
    qwen = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"), qdrant_embedded=backend)
    assert sync(qwen, kb).added == len(NOTES)
    assert metadata(qwen)[GRAPH_KEYS_ONLY] is True
    # a note listed with a problem (a dangling link: never read, not gone): no run reaches it, nor drops its entry
    (kb / "gone").mkdir()
    (kb / "gone" / "slow.md").symlink_to(kb / "nowhere.md")
    refused = {"gone/slow.md": "etag-of-a-slow-version"}
    merge_metadata(qwen, {PARSE_REFUSED: refused})

    e5 = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"), qdrant_embedded=backend,
                           embedding_input_format="e5")  # fmt: skip
    report = sync(e5, kb)
    assert report.reembedded is not None and report.updated == len(NOTES) and not report.incomplete, report
    after = metadata(e5)
    assert REBUILDING not in after and after["embedding_input_format"] == "e5"
    assert after.get(GRAPH_KEYS_ONLY) is True and after.get(PARSE_REFUSED) == refused, after


def test_a_note_without_graph_keys_in_a_collection_recorded_as_having_them_clears_the_record(
    backend: str, tmp_path: Path
) -> None:
    """A kbsearch before ``graph_keys`` writing into a collection recorded as holding them everywhere (a rollback,
    an older CLI) leaves a note with only the three old fields. The next sync clears the record before it rewrites
    such notes; when one of them cannot be rewritten (its new version is broken: its last good version stays), the
    record stays cleared, and the note's links are still found through the old fields. Before, the record stayed
    and the readers asked ``graph_keys`` alone: the note's links were lost until every such note was rewritten."""
    from kbsearch.browse import BrowseService
    from kbsearch.reader import NoteReader
    from kbsearch.search import SearchService
    from kbsearch.sources import open_source
    from tests.integration.test_notes_graph import ALL

    kb = write_kb(tmp_path / "kb", NOTES)
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="", qdrant_embedded=backend, kb_source=str(kb))  # fmt: skip
    assert sync(settings, kb).added == len(NOTES)
    as_written_before(settings, ["Alpha.md"])
    merge_metadata(settings, {GRAPH_KEYS_ONLY: True})  # as the collection recorded it before the old write
    (kb / "Alpha.md").write_text("---\ntitle: [unclosed\n---\n# Alpha\n\nBack to [[Hub]].\n", encoding="utf-8")

    report = sync(settings, kb)
    assert [s["path"] for s in report.skipped] == ["Alpha.md"], report.skipped
    assert metadata(settings).get(GRAPH_KEYS_ONLY) is not True
    search = SearchService(settings, Secrets(settings), wire_providers=False)
    try:
        browse = BrowseService(search, NoteReader(lambda: open_source(settings.kb_source)))
        note = browse.note("Hub.md", None, ALL)
        assert note.links is not None and note.degraded == []
        backlinks = [link.path for link in note.links.backlinks]
    finally:
        search.close()
    assert "Alpha.md" in backlinks, backlinks


def test_notes_rewritten_for_their_graph_keys_alone_are_no_change_an_event_missed(
    backend: str, deepinfra: FakeProvider, tmp_path: Path
) -> None:
    """A reconciling sync after an upgrade rewrites every note of a store made before ``graph_keys``; none of them
    changed, so none is counted as a change an S3 event should have applied (``missed_by_events``, the metric that
    says events are being lost): only the one note that did change."""
    kb = write_kb(tmp_path / "kb", NOTES)
    settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"), qdrant_embedded=backend)
    assert sync(settings, kb).added == len(NOTES)
    as_written_before(settings, NOTES)
    (kb / "Alpha.md").write_text(NOTES["Alpha.md"].replace("fine print", "finer print"), encoding="utf-8")
    report = sync(settings, kb, event_grace_s=0.0)
    assert report.updated == len(NOTES) and report.missed_by_events == 1, report


@pytest.mark.timeout(0)  # no test-runner alarm: its timer, honoured as the earlier one, would hide the run's end
def test_a_run_whose_end_is_no_end_bounds_no_parse(tmp_path: Path) -> None:
    """``run_left_s`` infinite (a run given no end): the note parses, bounded by its CPU limit alone (``setitimer``
    refuses an infinite timer: every note was skipped, "cannot be indexed (OverflowError)")."""
    from kbsearch.access import FolderRules

    kb = write_kb(tmp_path / "kb", {"a.md": "# A\n\ntext\n"})
    source = LocalSource(kb)
    (obj,) = [o for o in source.list() if o.path == "a.md"]
    outcome = parse_for_index(source, obj, SyncOptions(), FolderRules(), None, "2026-12-06T00:00:00+00:00", {},
                              float("inf"))  # fmt: skip
    assert outcome.failure is None, outcome.reason


def test_a_skipped_notes_line_shows_its_path_and_reason_escaped() -> None:
    """``serve --watch``'s line names the notes a sync skipped: a path with control characters (exactly the ones
    skipped for them) is shown escaped on the one line, as ``kbsearch index`` shows it, never as terminal escape
    codes or a forged second line."""
    line = skipped_text([{"path": "evil\x1b[2J\nforged.md", "reason": "path contains a control character\r"}])
    assert "\x1b" not in line and "\n" not in line and "\r" not in line
    assert "evil\\x1b[2J\\nforged.md" in line and "character\\r" in line


class _Fires(TimeLimit):
    """A limit whose own signal arrives during its first cancel (the work ended right at its limit): its first
    cancel raises its hit before disarming, as a SIGPROF landing between the check and the disarming does."""

    def __init__(self) -> None:
        super().__init__(30.0, cpu=True)
        self.cancels = 0

    def cancel(self) -> None:
        self.cancels += 1
        if self.cancels == 1:
            raise TimeLimitHit(self)


class _Counted(TimeLimit):
    def __init__(self) -> None:
        super().__init__(30.0)
        self.cancels = 0

    def cancel(self) -> None:
        self.cancels += 1


def test_every_limit_is_cancelled_even_when_one_fires_during_a_cancel() -> None:
    """The first limit's signal arrives during its own cancel: it is cancelled again (disarmed), the second limit
    is still cancelled (its wall-clock timer would otherwise raise in whatever code ran next, a Lambda's write), and
    the hit is raised once both are off."""
    from kbsearch.timelimit import cancel_all

    first, second = _Fires(), _Counted()
    with pytest.raises(TimeLimitHit) as hit:
        cancel_all((first, second))
    assert hit.value.limit is first and first.cancels == 2 and second.cancels == 1
