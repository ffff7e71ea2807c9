"""Round 32 (up32): a new reading of the notes finishes on a KB of any size. A full sync that reads every note again
for a new :data:`kbsearch.markdown.PARSE_VERSION` records how far it got (``notes_reading_from``): a run its deadline
stops (a large KB, a Lambda's time limit) is carried on by the next, and the reading is recorded once the last note
is read. Before, each run started again at the first note and the reading was never recorded. Moto S3, the indexer,
the embedded Qdrant; the deadline comes after a number of reads (as in test_rev32b)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

import kbsearch.indexer
from kbsearch.config import Secrets, Settings
from kbsearch.events import Change
from kbsearch.indexer import MAX_READING_MISSED, ChangeSync, Indexer, SyncOptions, SyncReport
from kbsearch.markdown import PARSE_VERSION
from kbsearch.providers.embeddings import build_embedder
from kbsearch.providers.resilience import Deadline, shared_client
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import NOTES_READING
from kbsearch.sources import S3Source, SourceError, SourceObject
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import provider_settings
from tests.integration.test_lines32 import EMPTY, found
from tests.integration.test_rev32b import Counting, OneUnreadable, StopsAfterReads, indexed_by_round_31
from tests.integration.test_review26 import metadata


class CountingS3(OneUnreadable):
    """S3 as it is, the notes read by this run counted (none failing)."""

    def __init__(self, inner: S3Source) -> None:
        super().__init__(inner, "")
        self.failing = False
        self.read_paths: list[str] = []

    def read(self, obj: SourceObject) -> bytes:
        self.read_paths.append(obj.path)
        return super().read(obj)


class AfterReads(Deadline):
    """A run's deadline that comes once ``source`` has read ``reads`` notes (a Lambda's time limit, in notes)."""

    def __init__(self, source: CountingS3, reads: int) -> None:
        super().__init__(None)
        self.source, self.reads = source, reads

    def remaining(self) -> float:
        return 0.0 if len(self.source.read_paths) >= self.reads else 60.0


NOTES_READING_FROM = "notes_reading_from"  # (a literal: this test runs against main's code, which has none)


@pytest.fixture
def kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[S3Source, Settings]]:
    """n000.md .. n029.md in S3 (n029 a runbook whose empty heading round 31 did not index), indexed with round
    31's reading and no ``notes_reading`` recorded: a collection a kb-search before round 32 built."""
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    texts = {f"n{i:03}.md": EMPTY["template.md"] if i == 29 else f"# Note {i}\n\nwords of note number {i}\n"
             for i in range(30)}  # fmt: skip
    with mock_aws():
        source = indexed_by_round_31(texts, settings, monkeypatch)
        yield source, settings


def sync(source: S3Source | CountingS3, settings: Settings, reads: int | None = None, window: int = 1) -> SyncReport:
    store = open_store(settings, Secrets(settings))
    try:
        stop_at = AfterReads(source, reads) if reads is not None and isinstance(source, CountingS3) else None
        return Indexer(source, store, None, SyncOptions.from_settings(settings, window_chunks=window)).sync(stop_at)
    finally:
        store.close()


@pytest.mark.parametrize("window", [1, 512])
def test_successive_runs_stopped_by_their_deadline_finish_a_new_reading(
    kb: tuple[S3Source, Settings], window: int
) -> None:
    """rev32b's reproduction: each run can read 12 of the 30 notes. Before, each read n000..n011 and the reading
    was never recorded; now the three runs read the KB once between them and the third records it. A window of
    512 chunks (the default) is never full here: the notes gathered in it at the deadline need nothing embedded
    and are written (they were dropped: the run wrote none of the notes it read)."""
    source, settings = kb
    firsts, reports = [], []
    for _ in range(3):
        counting = CountingS3(source)
        reports.append(sync(counting, settings, reads=12, window=window))
        firsts.append(counting.read_paths[:1])
    assert firsts == [["n000.md"], ["n012.md"], ["n024.md"]], firsts
    assert reports[0].incomplete and reports[0].notes_reading == (
        f"re-reading notes for reading {PARSE_VERSION}: 12 of 30; the next sync carries on"
    ), reports[0]
    assert metadata(settings)[NOTES_READING] == PARSE_VERSION, reports[-1]
    assert reports[-1].notes_reading == f"re-read notes for reading {PARSE_VERSION}: 30 of 30; recorded"
    assert metadata(settings).get(NOTES_READING_FROM) is None
    assert found(settings, "zanzibar rollback")[0] == ("n029.md", "Runbook > Zanzibar rollback steps")
    counting = CountingS3(source)
    last = sync(counting, settings)
    assert last.unchanged == 30 and counting.read_paths == [], last


def test_changes_and_event_batches_between_runs_neither_reset_nor_skip_the_progress(
    kb: tuple[S3Source, Settings],
) -> None:
    """Between a run stopped at n009 and the next: n003 (read already) edited and applied by an event batch, a
    note added before the progress, n002 renamed past it, n020 deleted. The next run reads what is left and only
    that: the added and renamed notes, n010 onwards; then the reading is recorded."""
    source, settings = kb
    first = CountingS3(source)
    sync(first, settings, reads=10)
    assert first.read_paths[-1] == "n009.md", first.read_paths
    s3 = source.client
    s3.put_object(Bucket="kb-notes", Key="kb/n003.md", Body=b"# Note 3\n\nthe quetzal migration plan\n")
    store = open_store(settings, Secrets(settings))
    try:
        applied = ChangeSync(source, store, None).apply([Change(path="n003.md", key="kb/n003.md", removed=False)])
        assert applied.updated == 1, applied
    finally:
        store.close()
    assert metadata(settings)[NOTES_READING_FROM]["after"] == "n009.md"
    s3.put_object(Bucket="kb-notes", Key="kb/n004b.md", Body=b"# Added\n\nan added note\n")
    s3.copy_object(Bucket="kb-notes", Key="kb/n025b.md", CopySource={"Bucket": "kb-notes", "Key": "kb/n002.md"})
    s3.delete_object(Bucket="kb-notes", Key="kb/n002.md")
    s3.delete_object(Bucket="kb-notes", Key="kb/n020.md")
    second = CountingS3(source)
    report = sync(second, settings)
    want = ["n004b.md", "n025b.md"] + [f"n{i:03}.md" for i in range(10, 30) if i != 20]
    assert sorted(second.read_paths) == sorted(want), second.read_paths
    assert report.deleted == 2 and report.added == 2 and not report.incomplete, report
    assert metadata(settings)[NOTES_READING] == PARSE_VERSION
    assert found(settings, "quetzal migration")[0][0] == "n003.md"


def test_progress_of_an_older_reading_counts_for_nothing(
    kb: tuple[S3Source, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PARSE_VERSION bumped again mid-upgrade: the next run reads every note again, from the first (a guard: main
    always started at the first note)."""
    source, settings = kb
    sync(CountingS3(source), settings, reads=12)
    monkeypatch.setattr(kbsearch.indexer, "PARSE_VERSION", PARSE_VERSION + 1)
    again = CountingS3(source)
    report = sync(again, settings)
    assert again.read_paths == [f"n{i:03}.md" for i in range(30)], again.read_paths
    assert metadata(settings)[NOTES_READING] == PARSE_VERSION + 1, report


def test_a_note_unreadable_in_a_stopped_run_is_read_by_the_next_one(kb: tuple[S3Source, Settings]) -> None:
    """S3 fails on n003 during a run its deadline stops at n011: the progress goes past it, n003 is kept as missed
    (it holds the older reading's chunks) and read first by the next run, which carries on at n012; the reading is
    recorded only once n003 was read too."""
    source, settings = kb
    first = CountingS3(source)
    first.path, first.failing = "n003.md", True
    stopped = sync(first, settings, reads=12)
    assert [s["path"] for s in stopped.skipped] == ["n003.md"], stopped
    assert stopped.notes_reading == (
        f"re-reading notes for reading {PARSE_VERSION}: 11 of 30 (1 unreadable, read again next time); "
        "the next sync carries on"
    ), stopped
    second = CountingS3(source)
    sync(second, settings, reads=12)
    assert second.read_paths[:2] == ["n003.md", "n012.md"], second.read_paths
    assert metadata(settings).get(NOTES_READING) is None
    third = CountingS3(source)
    done = sync(third, settings)
    assert third.read_paths[0] == "n023.md" and metadata(settings)[NOTES_READING] == PARSE_VERSION, done


class ManyUnreadable(CountingS3):
    """S3 failing on every note of ``paths`` (a throttled or flaky bucket), the notes read counted."""

    def __init__(self, inner: S3Source, paths: set[str]) -> None:
        super().__init__(inner)
        self.unreadable = paths

    def read(self, obj: SourceObject) -> bytes:
        if obj.path in self.unreadable:
            raise SourceError(f"{obj.path}: SlowDown")
        return super().read(obj)


def test_the_notes_a_run_could_not_read_again_are_kept_by_path_only_as_many_as_the_metadata_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 fails on more notes than the progress keeps by path (every search reads the collection's metadata): the
    progress stops before the first note past them, the summary counts every unreadable note, and the next run
    reads the kept ones and every note from there on, then records the reading. Before, every unreadable path was
    kept in the metadata, however many."""
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    count = MAX_READING_MISSED + 30
    names = [f"n{i:03}.md" for i in range(count)]
    with mock_aws():
        source = indexed_by_round_31({n: f"# Note {n}\n\nwords of {n}\n" for n in names}, settings, monkeypatch)
        failing = set(names[5 : 5 + MAX_READING_MISSED + 8])
        first = sync(ManyUnreadable(source, failing), settings)
        progress = metadata(settings)[NOTES_READING_FROM]
        kept = names[5 : 5 + MAX_READING_MISSED]
        assert progress["missed"] == kept and progress["after"] == kept[-1], progress
        assert first.notes_reading == (
            f"re-reading notes for reading {PARSE_VERSION}: 5 of {count} ({len(failing)} unreadable, read again next "
            "time); the next sync carries on"
        ), first
        second = CountingS3(source)
        done = sync(second, settings)
        assert second.read_paths == names[5:], second.read_paths
        assert metadata(settings)[NOTES_READING] == PARSE_VERSION, done


def test_a_reembed_between_runs_keeps_the_progress_and_records_the_reading_when_done(
    deepinfra: FakeProvider, tmp_path: Path
) -> None:
    """A re-read stopped at n002; a re-embed (another input format) begins in a run stopped at once: its
    replacing of the whole metadata keeps the progress; the re-embed writes every note with today's reading and,
    complete, records it and drops the progress."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for i in range(6):
        (kb / f"n{i:03}.md").write_text(f"# Note {i}\n\nwords of note number {i}\n")
    qwen = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"))

    def run(settings: Settings, source: Counting, stop_at: Deadline | None = None) -> SyncReport:
        store = open_store(settings, Secrets(settings))
        try:
            embedder = build_embedder(settings, Secrets(settings), shared_client())
            options = SyncOptions.from_settings(settings, window_chunks=1)
            return Indexer(source, store, embedder, options).sync(stop_at)
        finally:
            store.close()

    assert run(qwen, Counting(kb)).added == 6
    store = open_store(qwen, Secrets(qwen))
    try:
        store.set_metadata({k: v for k, v in store.metadata().items() if k != NOTES_READING})
    finally:
        store.close()
    source = Counting(kb)
    run(qwen, source, StopsAfterReads(source, 3))
    assert metadata(qwen)[NOTES_READING_FROM]["after"] == "n002.md", source.read_paths
    e5 = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"), embedding_input_format="e5")
    begun = run(e5, Counting(kb), Deadline(0))
    assert begun.reembedded is not None and begun.incomplete, begun
    assert metadata(e5)[NOTES_READING_FROM]["after"] == "n002.md"
    done = run(e5, Counting(kb))
    assert done.updated == 6 and not done.incomplete, done
    meta = metadata(e5)
    assert meta[NOTES_READING] == PARSE_VERSION and meta.get(NOTES_READING_FROM) is None, meta
