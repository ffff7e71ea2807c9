"""Session 36 review of walk36b and a leftover of rev36b (rev36e)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from kbsearch.errors import StoreError
from kbsearch.indexer import DANGLING_UNREAD
from kbsearch.qdrant.embedded import EdgeStore
from kbsearch_tools.s3events import EventPath
from tests.integration.test_events import PREFIX, Indexer, aws  # noqa: F401 (the moto fixture)
from tests.integration.test_walk36 import skipped_reasons
from tests.integration.test_walk36b import _logged

SECRET = "sk-live-4f9a2c7e1b"
LINKERS = 300


def test_kbsearch_index_names_a_dropped_fields_type_never_its_value(tmp_path: Path) -> None:
    """A frontmatter field dropped for a value its type cannot hold quoted up to 40 characters of that value
    (`api_key: !!int sk-live-...` said `'sk-live-...' is not a valid int`) in `kbsearch index`'s summary, its JSON
    log and `serve --watch`'s line: a secret in a log. The warning names the field, the type and the line only."""
    notes = {
        "key.md": f"---\ntitle: Keys\napi_key: !!int {SECRET}\n---\n# Keys\n\nbody\n",
        "nested.md": f"---\ntitle: Nested\nsecrets:\n  - !!float {SECRET}\n---\n# Nested\n\nbody\n",
        "date.md": "---\ntitle: Dated\nupdated: 2026-13-45\n---\n# Dated\n\nbody\n",
    }
    said, run = skipped_reasons(tmp_path, notes)
    assert said == {}
    out = run.stdout + run.stderr
    assert SECRET not in out and "sk-live" not in out and "2026-13-45" not in out
    warned = {line.split(": ", 1)[0].strip(): line.split(": ", 1)[1] for line in run.stdout.splitlines()
              if line.strip().startswith("warning ")}  # fmt: skip
    assert warned == {
        "warning key.md": "frontmatter field 'api_key' dropped: a value at line 3 is not a valid int",
        "warning nested.md": "frontmatter field 'secrets' dropped: a value at line 4 is not a valid float",
        "warning date.md": "frontmatter field 'updated' dropped: a value at line 3 is not a valid date or time",
    }, run.stdout


def test_an_s3_event_editing_a_note_many_link_to_reads_none_of_them_for_dangling_links(
    aws: EventPath,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An event batch (or a sync) rewriting a note checked every link to the titles and aliases the note had, kept
    or not: one edit of a note 300 notes link to by its title read those 300 notes' first chunks, and a note 50,000
    notes link to would be read in full on every save of it. A title or alias the rewritten note still has names
    it: only the names it no longer has are looked up. Counted: the points the store's scrolls returned while the
    edit's batch ran (the handler, moto S3 and SQS, the embedded Qdrant)."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}hub.md", b"---\ntitle: Hub\naliases: [Centre]\n---\n# Hub\n\nthe hub\n")
    for i in range(LINKERS):
        aws.put(f"{PREFIX}n/{i:03}.md", f"# Note {i}\n\nSee [[Hub]] and [[Centre]].\n".encode())
    assert indexer(aws.receive()) == []
    read: list[int] = []
    scroll = EdgeStore.scroll

    def counted(self: EdgeStore, request: dict[str, Any], timeout_s: float) -> tuple[list[dict[str, Any]], Any]:
        points, offset = scroll(self, request, timeout_s)
        read.append(len(points))
        return points, offset

    monkeypatch.setattr(EdgeStore, "scroll", counted)
    caplog.clear()
    aws.put(f"{PREFIX}hub.md", b"---\ntitle: Hub\naliases: [Centre]\n---\n# Hub\n\nthe hub, edited\n")
    assert indexer(aws.receive()) == []
    batch = _logged(caplog, "event batch applied")
    assert batch["dangling_links"] == 0, batch
    assert sum(read) < LINKERS, read  # main: the 300 linking notes' first chunks, and their targets
    # the alias dropped: the 300 links to it are read, and said
    read.clear()
    caplog.clear()
    aws.put(f"{PREFIX}hub.md", b"---\ntitle: Hub\n---\n# Hub\n\nthe hub, no alias\n")
    assert indexer(aws.receive()) == []
    batch = _logged(caplog, "event batch applied")
    assert batch["dangling_links"] == LINKERS, batch
    assert batch["dangling"] == [{"path": f"n/{i:03}.md", "link": "centre"} for i in range(10)]


def test_an_s3_event_batch_whose_dangling_link_read_fails_says_so_in_its_log(
    aws: EventPath,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failed read of the links a change left dangling is a warning, never the run's error, as walk36b says; but
    on the S3-event path the warning went nowhere (the batch's record leaves ``warnings`` out, no metric counts
    them) and its record said ``dangling_links: 0``: a check that could not run read as a KB with no dangling link.
    The failure is its own WARNING record now, with the store's error; the deletion is applied all the same."""
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}notes/target.md", b"# Target\n\nhere\n")
    aws.put(f"{PREFIX}ops/linker.md", b"# Linker\n\nSee [[target]].\n")
    assert indexer(aws.receive()) == []
    scroll = EdgeStore.scroll

    def refusing(self: EdgeStore, request: dict[str, Any], timeout_s: float) -> tuple[list[dict[str, Any]], Any]:
        if '"l:' in json.dumps(request):  # a scroll of the notes linking to a key: the check's first read
            raise StoreError("Qdrant scroll failed (ResponseHandlingException)")
        return scroll(self, request, timeout_s)

    monkeypatch.setattr(EdgeStore, "scroll", refusing)
    caplog.clear()
    aws.delete(f"{PREFIX}notes/target.md")
    indexer_log = logging.getLogger("kbsearch.indexer")  # the Lambda's logger set-up keeps it from the root's
    indexer_log.addHandler(caplog.handler)
    level = indexer_log.level  # a level another test of this worker left must not hide the warning
    indexer_log.setLevel(logging.INFO)
    try:
        assert indexer(aws.receive()) == []
    finally:
        indexer_log.removeHandler(caplog.handler)
        indexer_log.setLevel(level)
    assert _logged(caplog, "event batch applied") == {"dangling_links": 0, "dangling": []}
    said = [r for r in caplog.records if r.getMessage() == DANGLING_UNREAD]
    assert [(r.levelname, getattr(r, "error", None)) for r in said] == [
        ("WARNING", "Qdrant scroll failed (ResponseHandlingException)")
    ], [r.getMessage() for r in caplog.records]
    monkeypatch.setattr(EdgeStore, "scroll", scroll)
    aws.put(f"{PREFIX}notes/target.md", b"# Target\n\nback\n")
    assert indexer(aws.receive()) == []  # the store answers again: the deletion was applied (the note is new)
    assert _logged(caplog, "event batch applied")["dangling_links"] == 0
