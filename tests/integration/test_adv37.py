"""Round 37's adversarial pass (adv37): input nobody had tested, through the real interfaces (RELIABILITY.md,
"Round 37: the adversarial pass (adv37)")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
from kbsearch_tools.local.apigw import HttpRequest, build_event, parse_result
from tests.integration.test_events import CALLERS
from tests.integration.test_hostile_notes import _each_query_finds_its_note, mcp_event
from tests.integration.test_notes_graph import get, sync, write_kb

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


def test_a_section_whose_heading_holds_a_look_alike_is_found_by_the_heading_its_reader_sees(
    load_search_app: Any, tmp_path: Path
) -> None:
    """`?section=` and `kb_get_note`'s `section` naming a heading that holds a letter of the other script (`Ошибка
    ЕRR-4012` with a Cyrillic `Е`, `Сanary rollout` with a Cyrillic `С`, `Новая пaпка` with a Latin `a`): the name
    as its reader types it (and as an assistant echoes it back from the search's hit) was a 404 `no_section` listing
    a heading that looked the same. Headings and names are compared with such words read in one script
    (`lexical.folded`); another word is still a 404."""
    headings = {"Ошибка \u0415RR-4012": "ошибка ERR-4012", "\u0421anary rollout": "Canary rollout",
                "Новая п\x61пка": "новая папка"}  # fmt: skip
    body = "".join(f"## {heading}\n\ntext of {i}\n\n" for i, heading in enumerate(headings))
    folder = write_kb(tmp_path / "kb", {"Odd.md": f"# Odd\n\n{body}"})
    store = tmp_path / "q"
    settings = Settings(qdrant_path=str(store), qdrant_url="", embedding_api_key=None, embedding_api_key_param="")
    sync(settings, folder)
    app = load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(folder))
    for i, (heading, typed) in enumerate(headings.items()):
        for asked in (typed, heading, f"Odd > {typed}"):
            status, answer = get(app, "/notes/Odd.md", {"section": asked})
            assert status == 200 and answer["section"] == ["Odd", heading], (ascii(asked), answer)
            assert f"text of {i}" in answer["body"], answer
        result = json.loads(app(mcp_event("kb_get_note", {"path": "Odd.md", "section": typed}))["body"])["result"]
        assert result["structuredContent"]["section"] == ["Odd", heading], (ascii(typed), result)
    status, answer = get(app, "/notes/Odd.md", {"section": "ERR-4013"})  # another name: still a 404
    assert status == 404 and answer["error"] == "no_section", answer


def links_as(load_search_app: Any, settings: Settings, key_id: str | None, path: str) -> dict[str, Any]:
    """``GET /notes/{path}``'s ``links`` as the caller with ``key_id`` (None: no key) gets them, a new container."""
    app = load_search_app(QDRANT_PATH=settings.qdrant_path, ACCESS_GROUPS=json.dumps(CALLERS))
    try:
        event = build_event(HttpRequest("GET", f"/notes/{path}", "", [], b""), "/notes/{path+}", {"path": path}, "dev")
        event["requestContext"]["identity"]["apiKeyId"] = key_id
        answer = parse_result(app(event))
        assert answer.status == 200, answer.body
        return dict(json.loads(answer.body)["links"])
    finally:
        app.module.api.container.close()


def test_wiki_links_relative_to_the_linking_note_resolve_as_obsidian_writes_them(
    tmp_path: Path, load_search_app: Any
) -> None:
    """Obsidian's "New link format: Relative path to file" (Settings > Files and links) writes wiki-links from the
    linking note's folder: `[[../ops/Runbook|Runbook]]`, `[[./sub/Child]]`. A Markdown link so was resolved (round
    21), a wiki-link was not: `../ops/Runbook` answered as a link to no note (`path` null, no backlink on the
    runbook, counted among the sync's dangling links) and `./sub/Child` as `sub/Child` from the KB's root (a note
    `sub/Child.md` there, not the one beside the linking note). A wiki-link's `./` and `../` are read from the
    linking note's folder too; one climbing out of the KB is no link; a restricted target is still hidden from a
    caller who cannot read it, and shown to one who can."""
    folder = write_kb(tmp_path / "kb", {
        "_access.yaml": "hr/: [hr]\n",
        "pub/Welcome.md": "# Welcome\n\nSee [[../ops/Runbook|Runbook]], [[./sub/Child]], [[../hr/Pay|pay]] and "
                          "[[../../Outside]].\n",
        "ops/Runbook.md": "# Runbook\n\nsteps\n",
        "pub/sub/Child.md": "# Child\n\nthe one beside\n",
        "sub/Child.md": "# Child\n\nthe one at the root\n",
        "hr/Pay.md": "# Pay\n\nbands\n",
    })  # fmt: skip
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    report = run_sync(settings, Secrets(settings), source_uri=str(folder))
    assert report.error is None and report.dangling_links == 0, report.dangling
    public = links_as(load_search_app, settings, None, "pub/Welcome.md")
    assert [(r["target"], r["path"]) for r in public["outgoing"]] == [
        ("ops/Runbook", "ops/Runbook.md"), ("pub/sub/Child", "pub/sub/Child.md"),
    ]  # fmt: skip
    hr = links_as(load_search_app, settings, "id-hr", "pub/Welcome.md")
    assert [(r["target"], r["path"]) for r in hr["outgoing"]] == [
        ("ops/Runbook", "ops/Runbook.md"), ("pub/sub/Child", "pub/sub/Child.md"), ("hr/Pay", "hr/Pay.md"),
    ]  # fmt: skip
    for note in ("ops/Runbook.md", "pub/sub/Child.md"):
        assert [r["path"] for r in links_as(load_search_app, settings, None, note)["backlinks"]] == ["pub/Welcome.md"]
    assert links_as(load_search_app, settings, None, "sub/Child.md")["backlinks"] == []
