"""Round 31's cold review (rev31b, RELIABILITY.md "Round 31 review: a cold review (rev31b)"): what the round's changes
opened, each test failing on the round's code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets
from kbsearch.indexer import run_sync
from kbsearch.qdrant import open_store
from tests.integration.test_adv30 import assert_indexed_and_read
from tests.integration.test_notes_graph import write_kb
from tests.integration.test_tags31 import found, settings_of


@pytest.mark.parametrize(
    ("text", "phrase"),
    [("3\n-za03 0ba]> ", "0ba]"), ("3\u0410>[* a y\u04101\n0", "a y"), ("x", "x"), ("x ", "x")],
    ids=["ascii", "cyrillic", "one byte", "a zlib header"],
)
def test_a_plain_note_labelled_deflate_that_raw_inflates_to_its_end_is_read_as_stored(
    text: str, phrase: str, tmp_path: Path
) -> None:
    """Round 31 read `Content-Encoding: deflate` that is not zlib's format as raw deflate, which has no header or
    checksum: a plain note under a label only (read as stored since round 30) whose bytes happen to inflate as raw
    deflate to their last byte (2 of 20,000 short random texts) was read as the bytes inflated, not UTF-8: skipped
    as `not valid UTF-8`, or lost to garbage. Now a raw stream that inflates text into bytes no note holds is a
    label over the note's own bytes. A note shorter than any zlib stream so labelled (one byte, or `x `, a zlib
    header by chance) was skipped as `cut short` (de3d3bf too); now read by raw deflate's rule, as stored."""
    assert_indexed_and_read(text.encode(), "deflate", text, tmp_path, phrase)


def test_a_run_of_letters_after_a_hash_in_a_notes_text_is_no_tag_every_chunk_carries(
    tmp_path: Path, load_search_app: Any
) -> None:
    """Round 31 (tags31) read the tags written in a note's text with no bound on a tag's length: the front matter's
    64 KiB bounded the property's tags, but a `#` then 100,000 letters in the text was a tag stored, with its keys, on
    every chunk of its note (a 600 KB one on each of 884 chunks: 530 MB of payload to index one 1 MiB note, carried by
    each hit). Now a text's tag over 256 characters is not kept, with a warning; the note is indexed, its real tag
    found by a filter."""
    sections = "\n\n".join(f"## Part {i}\n\nquokka part {i}." for i in range(100))
    folder = write_kb(tmp_path / "kb", {"a.md": "# A\n\n#ops and #" + "a" * 100_000 + "\n\n" + sections + "\n"})
    settings = settings_of(tmp_path, folder)
    report = run_sync(settings, Secrets(settings), source_uri=str(folder))
    assert report.error is None and report.added == 1 and not report.skipped, report
    assert any("over 256 characters not kept" in w["reason"] for w in report.warnings), report.warnings
    store = open_store(settings, Secrets(settings))
    try:
        payloads = list(store.points().values())
    finally:
        store.close()
    assert len(payloads) > 50
    assert max(len(json.dumps([p.get("tags"), p.get("tag_keys")])) for p in payloads) < 100, payloads[0]["tags"]
    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(folder))
    try:
        assert found(call, ["OPS"]) == {"a.md"}
    finally:
        call.module.api.container.close()
