"""Session 37's cold review of adv37 (rev37d): look-alike letters and relative wiki-links, through the real
interfaces (RELIABILITY.md, "Round 37 review: a cold review of adv37 (rev37d)")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.test_access_links import note_links
from tests.integration.test_adv37 import synced_kb
from tests.integration.test_hostile_notes import _each_query_finds_its_note

#: A hex code whose letters were typed on a Russian layout (Cyrillic `С` and `А`: two look-alikes against the Latin
#: `x`, so adv37's "most of its letters" read it as the Cyrillic `0хса`), and a Kazakh word with a Latin `e` (`ә`
#: was no Cyrillic letter to adv37's fold, so the Cyrillic `к` and the Latin `e` tied and the word became `әke`).
CODES_AND_ALPHABETS = {
    "register.md": "Регистр 0x\u0421\u0410 хранит флаги прерываний.",
    "ports.md": "Port CA and register 0xCB hold the mask.",
    "family.md": "Менің \u04d9\u043a\x65 инженер болып жұмыс істейді.",
    "ukrainian.md": "Довiдка мiстить iнформацiю про налаштування.",  # Latin i: a Russian keyboard has no і
}
FINDS = [
    ("0xCA", "register.md"),
    ("0x\u0421\u0410", "register.md"),
    ("\u04d9\u043a\u0435", "family.md"),
    ("\u0456нформацію", "ukrainian.md"),
]


def test_a_code_typed_on_the_other_layout_and_kazakh_and_ukrainian_words_are_read_as_their_reader_sees_them(
    tmp_path: Path, load_search_app: Any
) -> None:
    """`0xСА` (Cyrillic `С`, `А`) is the code `0xCA` to its reader: adv37 read it as the Cyrillic `0хса` (two
    Cyrillic look-alikes outvote one Latin `x`), so a search for `0xCA` found nothing. A word holding a digit is a
    code, read in Latin where it can be. `әкe` (Kazakh, a Latin `e`): `ә` is a Cyrillic letter no Latin one looks
    like, so the word is Cyrillic (`әке`); adv37 did not count `ә` (nor `ң`, `ї`, `є`...) as Cyrillic and read `әke`,
    which the plain `әке` did not find. `iнформацiю` (Ukrainian typed on a Russian keyboard, which has no `і`: the
    Latin `i` stands for it) stayed a mixed word no query typed: a Latin `i` in a word that cannot be Latin is `і`."""
    _each_query_finds_its_note(tmp_path, load_search_app, CODES_AND_ALPHABETS, FINDS)


def test_a_relative_link_to_a_folder_links_no_note_named_as_the_folder(tmp_path: Path, load_search_app: Any) -> None:
    """`[[./]]` in `pub/Welcome.md`, `[[../]]` in `a/b/Deep.md` and `[Home](./)` name a folder, not a note: adv37's
    relative reading made them the links `pub` and `a`, which resolved to the root notes `pub.md` and `a.md` (a
    backlink from a note that never linked them, an outgoing link the writer never wrote). Now no link."""
    settings, report = synced_kb(tmp_path, {
        "pub/Welcome.md": "# Welcome\n\nUp: [[./]], [Home](./) and [[./Child]].\n",
        "pub/Child.md": "# Child\n\nbeside\n",
        "a/b/Deep.md": "# Deep\n\nBack to [[../]] or [[..]].\n",
        "pub.md": "# Pub\n\nthe root note named pub\n",
        "a.md": "# A\n\nthe root note named a\n",
    })  # fmt: skip
    assert report.error is None, report.error
    welcome = note_links(load_search_app, settings, None, "pub/Welcome.md")
    assert [(r["target"], r["path"]) for r in welcome["outgoing"]] == [("/pub/Child", "pub/Child.md")]
    assert note_links(load_search_app, settings, None, "a/b/Deep.md")["outgoing"] == []
    for note in ("pub.md", "a.md"):
        assert note_links(load_search_app, settings, None, note)["backlinks"] == [], note
