"""Round 37's adversarial pass (adv37): input nobody had tested, through the real interfaces (RELIABILITY.md,
"Round 37: the adversarial pass (adv37)")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import SyncReport, run_sync
from tests.integration.test_access_links import note_links
from tests.integration.test_hostile_notes import _each_query_finds_its_note
from tests.integration.test_notes_graph import write_kb

#: Notes holding a letter of the other script that looks like the one meant: a code with a Cyrillic `Е`, an English
#: word with a Cyrillic `С` (on a Russian keyboard, the key of the Latin `C`: a layout switched a letter late), Russian
#: words with a Latin `a` and `c` (pasted from a chat, an OCR'd scan); the plain spellings of the words a query writes
#: with a look-alike; and a note that holds the code's number alone, so that BM25 has another note to put first
#: when it misses the code's letters.
LOOK_ALIKES = {
    "runbook.md": "При выгрузке падает \u0415RR-4012: перезапустите экспорт.",
    "ports.md": "Port 4012 is open; 4012 also serves the admin panel.",
    "canary.md": "The \u0421anary rollout waits for the smoke tests.",
    "folders.md": "Заметки лежат в п\x61пке хранилища; можно \x63оздать новую.",  # Latin a, c
    "cpu.md": "CPU throttling slows the indexer on small instances.",
    "sync.md": "Синхронизация выключается при обновлении.",
}
#: query → the note it names. The first four name a note by the word its reader sees, where the note holds a
#: look-alike; the last three write the look-alike in the query (`СPU` with a Cyrillic `С`, `ЕRR-4012` with a
#: Cyrillic `Е`, `cинхронизация` with a Latin `c`) and name the note that holds the plain word.
LOOK_ALIKE_FINDS = [
    ("ERR-4012", "runbook.md"),
    ("canary", "canary.md"),
    ("папке", "folders.md"),
    ("создать", "folders.md"),
    ("\u0421PU", "cpu.md"),
    ("\u0415RR-4012", "runbook.md"),
    ("\x63инхронизация", "sync.md"),
]


def synced_kb(tmp_path: Path, notes: dict[str, str]) -> tuple[Settings, SyncReport]:
    """``notes`` (path → text) written to a KB folder and synced by the indexer into an embedded Qdrant (no
    provider: BM25 and the graph); the settings and the sync's report."""
    folder = write_kb(tmp_path / "kb", notes)
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    return settings, run_sync(settings, Secrets(settings), source_uri=str(folder))


def test_words_mixing_latin_and_cyrillic_look_alikes_are_found_by_the_word_their_reader_sees(
    tmp_path: Path, load_search_app
) -> None:
    """A word holding one letter of the other script (`ЕRR-4012` with a Cyrillic `Е`; `пaпке` with a Latin `a`: a
    keyboard layout switched for one key, text pasted from a chat) looks, to its reader, like the word in one
    script; BM25 read another word (`еrr`, a token no query typed in Latin makes; `пaпке`, no Russian stem), so a
    search for the code or the word missed the note (BM25-only: the note holding the code's number alone came
    first, or no hit at all), and a query typing the look-alike missed the plain note. A word mixing the scripts
    is read in the one script its reader sees (`lexical.one_script`): each is found."""
    _each_query_finds_its_note(tmp_path, load_search_app, LOOK_ALIKES, LOOK_ALIKE_FINDS)


def test_wiki_links_relative_to_the_linking_note_resolve_as_obsidian_writes_them(
    tmp_path: Path, load_search_app: Any
) -> None:
    """Obsidian's "New link format: Relative path to file" (Settings > Files and links) writes wiki-links from the
    linking note's folder: `[[../ops/Runbook|Runbook]]`, `[[./sub/Child]]`. A Markdown link so was resolved (round
    24b), a wiki-link was not: `../ops/Runbook` answered as a link to no note (`path` null, no backlink on the
    runbook, counted among the sync's dangling links) and `./sub/Child` as `sub/Child` from the KB's root (a note
    `sub/Child.md` there, not the one beside the linking note). A wiki-link's `./` and `../` are read from the
    linking note's folder too; one climbing out of the KB is no link; a restricted target is still hidden from a
    caller who cannot read it, and shown to one who can."""
    settings, report = synced_kb(tmp_path, {
        "_access.yaml": "hr/: [hr]\n",
        "pub/Welcome.md": "# Welcome\n\nSee [[../ops/Runbook|Runbook]], [[./sub/Child]], [[../hr/Pay|pay]] and "
                          "[[../../Outside]].\n",
        "ops/Runbook.md": "# Runbook\n\nsteps\n",
        "pub/sub/Child.md": "# Child\n\nthe one beside\n",
        "sub/Child.md": "# Child\n\nthe one at the root\n",
        "hr/Pay.md": "# Pay\n\nbands\n",
    })  # fmt: skip
    assert report.error is None and report.dangling_links == 0, report.dangling
    public = note_links(load_search_app, settings, None, "pub/Welcome.md")
    assert [(r["target"], r["path"]) for r in public["outgoing"]] == [
        ("/ops/Runbook", "ops/Runbook.md"), ("/pub/sub/Child", "pub/sub/Child.md"),
    ]  # fmt: skip (adv38: a relative link is kept from the root)
    hr = note_links(load_search_app, settings, "id-hr", "pub/Welcome.md")
    assert [(r["target"], r["path"]) for r in hr["outgoing"]] == [
        ("/ops/Runbook", "ops/Runbook.md"), ("/pub/sub/Child", "pub/sub/Child.md"), ("/hr/Pay", "hr/Pay.md"),
    ]  # fmt: skip
    for note in ("ops/Runbook.md", "pub/sub/Child.md"):
        assert [r["path"] for r in note_links(load_search_app, settings, None, note)["backlinks"]] == ["pub/Welcome.md"]
    assert note_links(load_search_app, settings, None, "sub/Child.md")["backlinks"] == []
