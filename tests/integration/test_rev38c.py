"""Round 38's cold review of walk38 and the lead's change to it (rev38c). Through the search function's handler
with API Gateway events, on an index ``kbsearch index`` built (the embedded Qdrant, BM25). Each test fails on the
tree it names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import index_bm25
from tests.integration.test_search_api import event

#: A note that opens with an ellipsis, as a quotation taken up mid-sentence is written: its own first paragraph,
#: not the overlap ``chunking.split_section`` opens a continuation with.
QUOTED = """---
title: Вомбат цитата
---
# Вомбат цитата

… и тогда зелёный вомбат сказал: «закладки храните в облаке».

Второй абзац: о том, где вомбат хранит закладки.
"""


def test_a_note_that_opens_with_an_ellipsis_keeps_its_first_paragraph_in_the_snippet(
    load_search_app: Any, tmp_path: Path
) -> None:
    """The lead's `search.snippet` (c2f0f33) drops a chunk's first paragraph when its text starts with `… `, taken
    for the overlap a continuation opens with. A note's first chunk is never a continuation: a note that opens with
    `… ` (a quotation taken up mid-sentence) lost its first paragraph, the one the search matched (`зелёный`), and
    showed `…` and its second. Fails on c2f0f33; passes on 7ca88c1 and here."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "Вомбат цитата.md").write_text(QUOTED, encoding="utf-8")
    index_bm25(kb, tmp_path / "q")
    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"))
    result = call(event("GET", "/search", query="q=%D0%B7%D0%B5%D0%BB%D1%91%D0%BD%D1%8B%D0%B9&rerank=false"))
    assert result["statusCode"] == 200, result["body"]
    hits = json.loads(result["body"])["results"]
    assert hits, result["body"]
    assert hits[0]["snippet"].startswith("… и тогда зелёный вомбат сказал"), hits[0]["snippet"]


def test_a_listed_english_word_with_a_filter_s_value_is_the_filter_mistyped(
    load_search_app: Any, tmp_path: Path
) -> None:
    """walk38's `slack.PROSE_KEYS` made every listed word a word of the question whatever its value, so
    `/kb alter:2026-01-01 refund` (one slip from `after:`, a date after it) and `/kb pat:en/Teams refund` (`path:`,
    a folder after it) were searched with the filter silently left out: every date, every folder. A listed word
    with the value its filter takes (a date for `after`/`since`, a folder with a `/` for `path`) is the filter
    mistyped and said at once, as `tga:` is; `tax:VAT`, `alter:ego`, `pat:dog` stay words. Fails on c2f0f33."""
    from tests.integration.test_slack import SECRET, form, slack_event

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "Refunds.md").write_text("# Refunds\n\nA refund includes the VAT; the tax is returned.\n", encoding="utf-8")
    index_bm25(kb, tmp_path / "q")
    app = load_search_app(
        QDRANT_PATH=str(tmp_path / "q"), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1"
    )
    hook = "http://127.0.0.1:9/u"  # never posted to: a mistyped filter is answered in the acknowledgement
    for typed, meant in (("alter:2026-01-01", "after"), ("sine:2026-01-01", "since"), ("pat:en/Teams", "path")):
        ack = json.loads(app(slack_event(form(f"{typed} refund", hook)))["body"])["text"]
        key = typed.split(":")[0]
        assert ack.startswith(f"Sorry: `{key}:` is not a filter: did you mean `{meant}:`?"), ack
    for words in ("tax:VAT refund", "alter:ego refund", "pat:dog refund"):
        ack = json.loads(app(slack_event(form(words, hook)))["body"])["text"]
        assert ack.split("\n")[0] == f"Searching for “{words}”…", ack
