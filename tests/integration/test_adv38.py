"""Round 38's adversarial pass (adv38): input nobody had tested, through the real interfaces (RELIABILITY.md,
"Round 38: the adversarial pass (adv38)")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kbsearch.config import Secrets
from kbsearch.indexer import run_sync
from tests.integration.test_access_links import note_links
from tests.integration.test_adv37 import synced_kb
from tests.integration.test_hostile_notes import _each_query_finds_its_note


def test_a_relative_link_whose_note_is_missing_links_no_namesake_in_another_folder(
    tmp_path: Path, load_search_app: Any
) -> None:
    """`[[../Runbook]]` in `pub/Welcome.md` names the note `Runbook.md` at the KB's root; with none there, Obsidian
    leaves the link unresolved. adv37's relative reading made it the link `Runbook`, a name: it resolved to
    `ops/Runbook.md` (an outgoing link the writer never meant, a backlink on the runbook, no dangling link counted),
    and `[[./Guide]]` (no `pub/Guide.md`) to the root's `Guide.md`. A relative link is now anchored at the root: it
    names the note at its whole path or none. Once `Runbook.md` is written at the root, the link resolves to it; once
    it is deleted, the sync counts the link dangling again."""
    notes = {
        "pub/Welcome.md": "# Welcome\n\nSee [[../Runbook]], [[./Guide|the guide]] and [[../ops/Runbook|ops]].\n",
        "ops/Runbook.md": "# Runbook\n\nsteps\n",
        "Guide.md": "# Guide\n\nthe guide at the root\n",
    }
    settings, report = synced_kb(tmp_path, notes)
    assert report.error is None, report.error
    welcome = note_links(load_search_app, settings, None, "pub/Welcome.md")
    assert [(r["target"], r["path"]) for r in welcome["outgoing"]] == [
        ("/Runbook", None), ("/pub/Guide", None), ("/ops/Runbook", "ops/Runbook.md"),
    ]  # fmt: skip
    assert report.dangling_links == 2, report.dangling
    assert note_links(load_search_app, settings, None, "Guide.md")["backlinks"] == []
    runbook = note_links(load_search_app, settings, None, "ops/Runbook.md")["backlinks"]
    assert [r["path"] for r in runbook] == ["pub/Welcome.md"]  # through [[../ops/Runbook]] alone

    folder = tmp_path / "kb"
    (folder / "Runbook.md").write_text("# Root runbook\n\nat the root\n", encoding="utf-8")
    again = run_sync(settings, Secrets(settings), source_uri=str(folder))
    assert again.error is None and again.dangling_total == 1, again
    welcome = note_links(load_search_app, settings, None, "pub/Welcome.md")
    assert welcome["outgoing"][0]["path"] == "Runbook.md", welcome["outgoing"]
    assert [r["path"] for r in note_links(load_search_app, settings, None, "Runbook.md")["backlinks"]] == [
        "pub/Welcome.md"
    ]

    (folder / "Runbook.md").unlink()
    gone = run_sync(settings, Secrets(settings), source_uri=str(folder))
    assert gone.error is None and gone.dangling == [{"path": "pub/Welcome.md", "link": "/runbook"}], gone.dangling
    assert gone.dangling_total == 2, gone
    assert note_links(load_search_app, settings, None, "pub/Welcome.md")["outgoing"][0]["path"] is None


#: Codes whose letters are all Cyrillic look-alikes (`А4`, `1С`, the `А2` of `Б1-А2`), one note written with the other
#: script's letter (`Б1-A2` with a Latin `A`), and a note holding `Б1` alone twice, which BM25 puts first when it
#: misses the code's second half.
CYRILLIC_CODES = {
    "paper.md": "Печать на листах \u04104, альбомная ориентация.",
    "onec.md": "Выгрузка из 1\u0421 в таблицу раз в сутки.",
    "part.md": "Деталь \u04111-\x412 лежит на складе.",
    "other.md": "Детали \u04111-\u04113 и \u04111-\u04114: \u04111 на полке.",
}
CYRILLIC_CODE_FINDS = [("A4", "paper.md"), ("1C", "onec.md"), ("\u04111-\u04102", "part.md"), ("\u04104", "paper.md")]


def test_a_code_in_cyrillic_look_alikes_is_found_by_the_latin_code(tmp_path: Path, load_search_app: Any) -> None:
    """`А4` with a Cyrillic `А` (the paper size as Russian text writes it), `1С` with a Cyrillic `С` (the software):
    one script, so adv37's reading of look-alikes kept them, and `A4`, `1C` typed in Latin found nothing (BM25 only);
    `Б1-А2` typed in Cyrillic missed the note writing `Б1-A2` with a Latin `A` (the code split at the hyphen, `а2`
    against `a2`: the note holding `Б1` alone came first). A code whose letters are all Cyrillic look-alikes is read
    as the Latin code (`lexical.one_script`)."""
    _each_query_finds_its_note(tmp_path, load_search_app, CYRILLIC_CODES, CYRILLIC_CODE_FINDS)
