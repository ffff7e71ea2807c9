"""Round 39 review: walk39's merged change read cold (rev39a). Through the search function's handler: Slack-signed API
Gateway events (the worker's answer on a loopback `response_url`) on an index `kbsearch index` built (the embedded
Qdrant, BM25). Each fails on walk39's merge (650c86d)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.fakes import FakeEndpoint
from tests.conftest import index_bm25
from tests.integration.test_slack import SECRET
from tests.integration.test_walk35 import _command, hook  # noqa: F401 (hook: a fixture)
from tests.integration.test_walk37 import _sections


@pytest.fixture
def review_app(load_search_app: Any, tmp_path: Path) -> Any:
    kb = tmp_path / "kb"
    (kb / "en").mkdir(parents=True)
    (kb / "en" / "Deploy.md").write_text(
        "---\ntags: [production, infrastructure]\n---\n# Deploy\n\nHow to back up and deploy the service.\n",
        encoding="utf-8",
    )
    (kb / "en" / "Cost.md").write_text("---\ntags: [cost]\n---\n# Cloud cost\n\nThe monthly bill.\n", encoding="utf-8")
    (kb / "ru").mkdir()
    (kb / "ru" / "Настройки.md").write_text(
        "# Настройки\n\nКак открыть настройки сайта и добавить вложение к заметке.\n", encoding="utf-8"
    )
    index_bm25(kb, tmp_path / "q")
    return load_search_app(
        QDRANT_PATH=str(tmp_path / "q"), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1"
    )


def test_an_english_question_in_capitals_naming_a_russian_word_is_answered_in_english(
    review_app: Any,
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """walk39 took a Russian word in lower case for the sign that the capitals before it are a name ("IT AS A
    SERVICE договор"), so every English question in capitals quoting a Russian word in lower case turned Russian:
    `/kb HOW DO I OPEN настройки` was acknowledged "Ищу «…»…", though "How do I open настройки" is English, and so
    was "HOW TO ADD A вложение TO A NOTE", whose English goes on after the Russian word. A question word opening
    it, or a function word in capitals after the Russian word, keeps it the English sentence it is; walk39's name
    before a Russian word stays Russian."""
    for english in ("HOW DO I OPEN настройки", "WHAT IS THE сайт", "HOW TO ADD A вложение TO A NOTE"):
        ack, answer = _command(review_app, hook, english)
        assert ack == f"Searching for “{english}”…", ack
        assert any("Настройки" in s for s in _sections(answer)), answer
    ack, _ = _command(review_app, hook, "IT AS A SERVICE договор")
    assert ack == "Ищу «IT AS A SERVICE договор»…", ack


def test_the_acknowledgement_names_a_filter_only_where_it_could_take_the_value(
    review_app: Any,
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """`/kb alter:ego refund` was acknowledged with "(`alter:` is searched as a word, not as a filter; the filter is
    `after:`)": `after:` takes a date, and `alter:` with a date is refused at once as the slip it is (rev38c), so
    the note named a filter that could not have been meant. And `/kb tab:guide TAB:howto sync` said its note twice,
    once per casing of the key. Said once, and never for a date's filter; `tab:guide` still says it."""
    ack, _ = _command(review_app, hook, "alter:ego refund")
    assert ack == "Searching for “alter:ego refund”…", ack
    ack, _ = _command(review_app, hook, "tab:guide TAB:howto deploy")
    assert ack.split("\n")[1:] == ["(`tab:` is searched as a word, not as a filter; the filter is `tag:`)"], ack


def test_a_tag_cut_short_is_still_answered_with_the_tag_it_begins(
    review_app: Any,
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """walk39 raised the 'did you mean' cutoff to 0.6 so that `tag:ops` was no longer answered 'cost'; it also took
    the answer from a tag cut short: `/kb tag:prod deploy` had been answered "did you mean 'production'?" (difflib's
    ratio 0.57) and `tag:infra` 'infrastructure' (0.53); both only listed the tags. A held value the typed one
    begins (three letters or more) is named again; `tag:ops` still lists the tags."""
    for typed, meant in (("prod", "production"), ("infra", "infrastructure"), ("PROD", "production")):
        _, answer = _command(review_app, hook, f"tag:{typed} zzqq")
        said = " ".join(_sections(answer))
        assert f"No note has the tag '{typed}' (tag:): did you mean '{meant}'?" in said, said
    _, answer = _command(review_app, hook, "tag:ops zzqq")
    said = " ".join(_sections(answer))
    assert "No note has the tag 'ops' (tag:); the tags: " in said and "did you mean" not in said, said
