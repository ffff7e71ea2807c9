"""The hard-link check's cost and its false positives (review17): a read of a listed note walks nothing (the
listing told it), and a file met under another spelling of its own name is not "another note"."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kbsearch import sources
from kbsearch.sources import HARD_LINKED_NOTE, LocalSource, NoteUnreadable, _hard_linked_elsewhere


def test_reading_the_listed_notes_of_a_kb_whose_notes_have_names_outside_it_walks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KB backed up by ``cp -al`` / rsnapshot: every note has a second name outside it. The listing lists each as a
    note; a sync's read of each walked the whole KB (35,000 notes: 35,000 walks of 35,000 lstat, over an hour)."""
    kb, snapshot = tmp_path / "kb", tmp_path / "snapshot"
    kb.mkdir()
    snapshot.mkdir()
    for i in range(20):
        (kb / f"n{i}.md").write_text(f"# N{i}\n\nbody {i}\n", encoding="utf-8")
        os.link(kb / f"n{i}.md", snapshot / f"n{i}.md")
    source = LocalSource(str(kb))
    listed = [o for o in source.list() if not o.problem]
    assert len(listed) == 20
    walks: list[tuple[object, ...]] = []
    real_walk = os.walk

    def counted(*args: Any, **kwargs: Any) -> Any:
        walks.append(args)
        return real_walk(*args, **kwargs)

    monkeypatch.setattr(sources.os, "walk", counted)
    for obj in listed:
        assert source.read(obj).startswith(b"# N")
    assert walks == []  # was 20: one walk of the KB per note read


def test_a_read_by_path_still_refuses_a_hard_linked_note(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    (kb / "hr").mkdir(parents=True)
    (kb / "pub").mkdir()
    (kb / "hr" / "pay.md").write_text("# Pay\n\nsecret\n", encoding="utf-8")
    os.link(kb / "hr" / "pay.md", kb / "pub" / "pay.md")
    source = LocalSource(str(kb))
    for path in ("hr/pay.md", "pub/pay.md"):
        with pytest.raises(NoteUnreadable) as caught:
            source.read_path(path)
        assert caught.value.reason == HARD_LINKED_NOTE
    assert {o.key: o.problem for o in source.list()} == {"hr/pay.md": HARD_LINKED_NOTE, "pub/pay.md": HARD_LINKED_NOTE}


def test_a_note_met_under_another_spelling_of_its_own_name_is_no_hard_link(tmp_path: Path) -> None:
    """On macOS (APFS/HFS+ are case- and normalisation-insensitive) ``read_path("Note.md")`` or the NFC form of an
    NFD name finds the file by that spelling, and the walk meets it as the folder spells it: a note whose other name
    is outside the KB was refused as a hard link to "another note" (itself). Simulated here: the check is asked
    about the file at a spelling the walk does not produce, as it is on such a file system."""
    kb, outside = tmp_path / "kb", tmp_path / "outside"
    kb.mkdir()
    outside.mkdir()
    (kb / "note.md").write_text("# Note\n", encoding="utf-8")
    os.link(kb / "note.md", outside / "note.md")
    info = os.stat(kb / "note.md")
    assert not _hard_linked_elsewhere(str(kb / "Note.md"), info, str(kb))  # itself, spelled otherwise
    assert not _hard_linked_elsewhere(str(kb / "note.md"), info, str(kb))
    os.link(kb / "note.md", kb / "twin.md")  # now a second name in the KB: refused at either spelling
    info = os.stat(kb / "note.md")
    assert _hard_linked_elsewhere(str(kb / "Note.md"), info, str(kb))
    assert _hard_linked_elsewhere(str(kb / "note.md"), info, str(kb))
