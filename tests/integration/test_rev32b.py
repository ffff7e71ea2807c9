"""Round 32 review (rev32b): a cold review of lines32's one line classifier. A ``$$`` math block is closed only
by a line of ``$$`` alone (a shell's ``echo $$`` in a code block below closed a block a prose line opened, and the
fence after it hid the rest of the note), and opened by none whose text holds a ``$``; a full sync that could not
read a note again for today's reading does not record the reading (that note kept the older chunks for good)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from kbsearch import notes
from kbsearch.config import Secrets, Settings
from kbsearch.indexer import Indexer, SyncOptions, SyncReport
from kbsearch.markdown import PARSE_VERSION
from kbsearch.providers.resilience import Deadline
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import NOTES_READING
from kbsearch.sources import LocalSource, S3Source, SourceError, SourceObject
from tests.integration.test_lines32 import EMPTY, found, read_alike
from tests.integration.test_review26 import metadata

#: a note on shell variables: ``$$`` is the shell's PID, in the text and in the code below it
SHELL = (
    "## Special variables\n\n{line}\n\n## Example\n\nPrint it:\n\n```bash\necho $$\n```\n\n"
    "## Cleanup\n\nRemove the #tmpfile [[Temp files]].\n"
)
#: name → (body, the sections' heading paths, the tags, the links)
CASES: dict[str, tuple[str, list[tuple[str, ...]], list[str], list[str]]] = {
    # a $$ opening a line of prose is closed by no "echo $$" below (a line merely holding $$)
    "prose $$ and a code block's echo $$": (
        SHELL.format(line="$$ is the PID of the shell."),
        [("Special variables",), ("Example",), ("Cleanup",)],
        ["tmpfile"],
        ["Temp files"],
    ),
    # a $$ whose text holds a $ opens no block (a fence's info string holds no backtick): a math block below
    # does not close it
    "prose $$ with a $ after it, a math block below": (
        "$$ is the PID, $? the status.\n\n## Math\n\nSee [[Formulas]] #math\n\n$$\nx^2\n$$\n",
        [(), ("Math",)],
        ["math"],
        ["Formulas"],
    ),
    # a $$ block in a callout ends with the callout, as a fence does (micromark's math: "no closing sequence in a
    # block quote"): a math block further down closed it, every heading and tag between lost
    "math in a callout ended by the callout": (
        "> [!note]\n> $$\n> x #nottag\n\n## Heading\n\nwords #yes\n\n$$\ny\n$$\n",
        [(), ("Heading",)],
        ["yes"],
        [],
    ),
    # guard: Obsidian's block, $$ alone on its lines, in a callout too, is math
    "math block in a callout": ("> [!tip]\n> $$\n> #nottag\n> $$\n\nafter #yes\n", [()], ["yes"], []),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_math_block_is_closed_by_a_line_of_dollars_alone(name: str) -> None:
    read_alike(*CASES[name])


class OneUnreadable:
    """S3 as it is, but for one note whose GetObject fails (a reset connection) while ``failing`` is set."""

    def __init__(self, inner: S3Source, path: str) -> None:
        self.inner, self.path, self.failing = inner, path, True
        self.uri = inner.uri

    def list(self) -> Iterator[SourceObject]:
        return iter(self.inner.list())

    def read(self, obj: SourceObject) -> bytes:
        if self.failing and obj.path == self.path:
            raise SourceError(f"{obj.path}: connection reset")
        return self.inner.read(obj)

    def read_path(self, path: str) -> bytes:
        return self.inner.read_path(path)

    def root_names(self) -> Iterable[str]:
        return self.inner.root_names()


SECTIONS = notes._sections


def round_31(read: object, links: object) -> object:
    """Round 31's reading of a note: no section of an empty heading (what PARSE_VERSION 3 reads anew)."""
    found_, first_h1, empty = SECTIONS(read, links)  # type: ignore[arg-type]
    return [s for i, s in enumerate(found_) if i not in empty], first_h1, set()


def indexed_by_round_31(texts: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch) -> S3Source:
    """These notes in S3 (moto: within ``mock_aws``), indexed with round 31's reading and no ``notes_reading``
    recorded: a collection a kb-search before round 32 built."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="kb-notes")
    for name, text in texts.items():
        s3.put_object(Bucket="kb-notes", Key=f"kb/{name}", Body=text.encode())
    source = S3Source("kb-notes", "kb", s3)
    with monkeypatch.context() as patched:
        patched.setattr(notes, "_sections", round_31)
        assert sync(source, settings).added == len(texts)
    store = open_store(settings, Secrets(settings))
    try:  # what a kb-search before round 32 recorded: no reading
        store.set_metadata({k: v for k, v in store.metadata().items() if k != NOTES_READING})
    finally:
        store.close()
    return source


def sync(source: OneUnreadable | S3Source, settings: Settings) -> SyncReport:
    store = open_store(settings, Secrets(settings))
    try:
        return Indexer(source, store, None, SyncOptions.from_settings(settings)).sync()
    finally:
        store.close()


def test_a_full_sync_that_could_not_read_a_note_again_records_no_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collection chunked by round 31's reading (no ``notes_reading``); the upgrade sync cannot read one note
    (S3 fails on it): the reading was recorded all the same, so that note kept round 31's chunks (its empty
    heading never indexed) until its text changed. Now the reading waits, and the next sync reads it again."""
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    with mock_aws():
        source = indexed_by_round_31(EMPTY, settings, monkeypatch)

        flaky = OneUnreadable(source, "template.md")
        upgrade = sync(flaky, settings)
        assert upgrade.updated == 3 and [s["path"] for s in upgrade.skipped] == ["template.md"], upgrade
        assert not upgrade.incomplete and upgrade.error is None, upgrade
        assert metadata(settings).get(NOTES_READING) is None  # template.md still holds round 31's chunks
        assert ("template.md", "Runbook > Zanzibar rollback steps") not in found(settings, "zanzibar rollback")

        flaky.failing = False
        after = sync(flaky, settings)
        # template.md read again; the others were read by the upgrade sync (up32: its progress is recorded)
        assert after.updated == 1 and after.unchanged == 3 and not after.skipped, after
        assert metadata(settings).get(NOTES_READING) == PARSE_VERSION
        assert found(settings, "zanzibar rollback")[0] == ("template.md", "Runbook > Zanzibar rollback steps")
        again = sync(flaky, settings)
        assert again.unchanged == 4 and again.updated == 0, again


class StopsAfterReads(Deadline):
    """A run's deadline that comes once ``source`` has read ``reads`` notes (a Lambda's 15 minutes, counted in
    notes): the indexer asks it before each note, as it asks the clock."""

    def __init__(self, source: Counting, reads: int) -> None:
        super().__init__(None)
        self.source, self.reads = source, reads

    def remaining(self) -> float:
        return 0.0 if len(self.source.read_paths) >= self.reads else 60.0


class Counting(LocalSource):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read_paths: list[str] = []

    def read(self, obj: SourceObject) -> bytes:
        self.read_paths.append(obj.path)
        return super().read(obj)


def test_an_edit_is_indexed_before_the_notes_read_again_for_a_new_reading(tmp_path: Path) -> None:
    """The first full sync after an upgrade reads every note again; one its deadline stops reads them in path
    order from the first each time (nothing marks a note read again), so an edited note late in that order was
    never indexed by a run stopped before it. Now the edited notes go first."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for name in "abcdef":
        (kb / f"{name}.md").write_text(f"# {name.upper()}\n\nwords of {name}\n")
    settings = Settings(qdrant_path=str(tmp_path / "q"))

    def sync(source: Counting, stop_at: Deadline | None = None) -> SyncReport:
        store = open_store(settings, Secrets(settings))
        try:
            return Indexer(source, store, None, SyncOptions.from_settings(settings, window_chunks=1)).sync(stop_at)
        finally:
            store.close()

    assert sync(Counting(kb)).added == 6
    store = open_store(settings, Secrets(settings))
    try:  # an index of the reading before this code's
        store.set_metadata({k: v for k, v in store.metadata().items() if k != NOTES_READING})
    finally:
        store.close()
    (kb / "f.md").write_text("# F\n\nwords of f, and the quetzal migration plan\n")
    source = Counting(kb)
    stopped = sync(source, StopsAfterReads(source, 2))
    assert stopped.incomplete and source.read_paths[0] == "f.md", (stopped, source.read_paths)
    assert found(settings, "quetzal migration")[0][0] == "f.md"
