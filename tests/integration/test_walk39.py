"""Round 39: a new user's hour (walk39), and round 38's query-side leftovers. Through the search function's handler:
Slack-signed API Gateway events (the worker's answer on a loopback `response_url`) and REST `GET /search`, on an
index `kbsearch index` built (the embedded Qdrant, BM25). Each fails on main's code (1a0836b)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from kbsearch_tools.fakes import FakeEndpoint
from tests.conftest import index_bm25
from tests.integration.test_search_api import event
from tests.integration.test_slack import SECRET
from tests.integration.test_walk35 import _command, hook  # noqa: F401 (hook: a fixture)
from tests.integration.test_walk37 import _sections


@pytest.fixture
def walk_app(load_search_app: Any, tmp_path: Path) -> Any:
    kb = tmp_path / "kb"
    (kb / "en").mkdir(parents=True)
    (kb / "en" / "Guides.md").write_text(
        "---\ntags: [guide]\n---\n# Sync guide\n\nHow to set up sync between devices, step by step.\n",
        encoding="utf-8",
    )
    (kb / "en" / "Inventory.md").write_text(
        "# Inventory classes\n\nThe ABC analysis ranks stock items by their share of the yearly spend.\n",
        encoding="utf-8",
    )
    (kb / "en" / "Cost.md").write_text("---\ntags: [cost]\n---\n# Cloud cost\n\nThe monthly bill.\n", encoding="utf-8")
    (kb / "ru").mkdir()
    (kb / "ru" / "Договоры.md").write_text(
        "# Договоры\n\nДоговор на IT-услуги подписывает финансовый директор.\n", encoding="utf-8"
    )
    index_bm25(kb, tmp_path / "q")
    return load_search_app(
        QDRANT_PATH=str(tmp_path / "q"), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1"
    )


def test_a_listed_english_word_typed_for_a_filter_is_searched_and_the_acknowledgement_says_so(
    walk_app: Any,
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """`/kb tab:guide sync` (`tab:` typed for `tag:`) was acknowledged "Searching for “tab:guide sync”…" and
    searched with no filter, nothing said: `tab` is an English word (`slack.PROSE_KEYS`, as `tax` of `tax:VAT`), and
    a tag is any word, so no value tells the slip from the word. It is still searched as words; the acknowledgement
    now says that `tab:` was a word and names the filter, in the question's language."""
    ack, answer = _command(walk_app, hook, "tab:guide sync")
    lines = ack.split("\n")
    assert lines[0] == "Searching for “tab:guide sync”…", ack
    assert lines[1:] == ["(`tab:` is searched as a word, not as a filter; the filter is `tag:`)"], ack
    assert any("Sync guide" in s for s in _sections(answer)), answer
    ack, _ = _command(walk_app, hook, "tab:guide как настроить синхронизацию")
    assert ack.split("\n")[1:] == ["(`tab:` ищется как слово, это не фильтр; фильтр пишется `tag:`)"], ack
    ack, _ = _command(walk_app, hook, "tag:guide sync")  # the filter itself: nothing to say
    assert "\n" not in ack and "is searched as a word" not in ack, ack


def test_an_acronym_typed_in_both_scripts_finds_the_latin_acronym(walk_app: Any) -> None:
    """`АВC` (a Cyrillic `А` and `В`, a Latin `C`: what a chat's paste or an OCR'd scan writes) was read as the
    Russian word `авс` (the majority of its letters), and found nothing: the note writes `ABC`. A word in capitals of
    at most three letters, each one the two scripts write alike, typed in both, is the acronym in Latin letters, in
    notes and queries alike (`READING_VERSION` 9). A word in lower case keeps the majority rule (`вeс` is `вес`)."""
    for query in ("\u0410\u0412C analysis", "\u0410\u0412C", "A\u0412\u0421"):
        result = walk_app(event("GET", "/search", query=f"q={quote(query)}&rerank=false"))
        assert result["statusCode"] == 200, result["body"]
        paths = [hit["path"] for hit in json.loads(result["body"])["results"]]
        assert paths[:1] == ["en/Inventory.md"], (query, paths)


def test_a_russian_word_after_an_english_name_in_capitals_is_a_russian_question(
    walk_app: Any,
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """`/kb IT AS A SERVICE договор` was acknowledged in English: a query opening with an English function word in
    capitals and holding another (`IT`, `AS`, `A`) was read as an English sentence in capitals (lang37), so the one
    Russian word was outvoted. A sentence in capitals quotes a Russian label with its capital ("WHERE IS
    Настройки"); a Russian word in lower case is the question's own, and the capitals before it a name. Answered in
    Russian now; the English sentences in capitals stay English."""
    ack, answer = _command(walk_app, hook, "IT AS A SERVICE договор")
    assert ack == "Ищу «IT AS A SERVICE договор»…", ack
    assert any("Договоры" in s for s in _sections(answer)), answer
    for english in ("HOW DO I USE Синхронизация", "WHERE IS Настройки", "HOW TO SET UP SYNC"):
        ack, _ = _command(walk_app, hook, english)
        assert ack.startswith("Searching for “"), ack


def test_a_tag_no_note_holds_is_not_answered_with_an_unlike_one(
    walk_app: Any,
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """`/kb tag:ops backup` (the README's kind of tag; this KB has none) was answered "No note has the tag 'ops'
    (tag:): did you mean 'cost'?": two of its three letters changed, no slip (difflib's ratio 0.57 met the 0.5
    cutoff). The answer lists the tags there are instead; a one-letter slip is still named (`gude`: 'guide')."""
    _, answer = _command(walk_app, hook, "tag:ops backup")
    said = " ".join(_sections(answer))
    assert "No note has the tag 'ops' (tag:); the tags: " in said and "cost" in said, said
    assert "did you mean" not in said, said
    _, answer = _command(walk_app, hook, "tag:gude backup")
    said = " ".join(_sections(answer))
    assert "No note has the tag 'gude' (tag:): did you mean 'guide'?" in said, said
