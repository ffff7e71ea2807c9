"""Round 35: a new user's hour (walk35). Slack answers in the asker's language: a Russian `/kb` got every word
kb-search says (the acknowledgement, "no notes found", the footer, the buttons, the hints, the usage, an apology) in
English (closing34). They follow the question's language now, judged as the search judges a query's
(`lexical.query_language`); the notes' titles and snippets are shown as they are. Each test goes through the search
function's handler with Slack-signed API Gateway events (the worker's answer on a loopback `response_url`), and
fails on main's code (3c36eb1)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.slack_client import buttons, interaction_form
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, copy_store, index_bm25, subprocess_env
from tests.integration.test_slack import SECRET, form, slack_event
from tests.integration.test_slack_e2e import next_post


def _said(message: dict[str, Any]) -> str:
    """Every text of a Slack message (its fallback, its blocks' texts, its buttons' labels), one string."""
    return json.dumps(message, ensure_ascii=False)


def _labels(message: dict[str, Any]) -> set[str]:
    return {b["text"]["text"] for b in buttons(message).values()}


@pytest.fixture
def hook() -> Any:
    endpoint = FakeEndpoint().start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def sample_app(load_search_app: Any, bm25_index: Path, tmp_path: Path) -> Any:
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    return load_search_app(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1")


def _command(app: Any, hook: FakeEndpoint, text: str, user: str = "U2147483697") -> tuple[str, dict[str, Any]]:
    """`/kb text` through the handler: the acknowledgement's text and the worker's answer."""
    before = len(hook.requests)
    body = form(text, f"{hook.url}/c{before}", trigger=f"{time.time_ns()}.1.x").replace("U2147483697", user)
    result = app(slack_event(body))
    assert result["statusCode"] == 200, result
    return json.loads(result["body"])["text"], next_post(hook, before)


def test_a_russian_question_is_answered_in_russian(sample_app: Any, hook: FakeEndpoint) -> None:
    """`/kb ротация ключей` was acknowledged "Searching for “ротация ключей”…" and answered "result 1 · 40 ms" with
    "Share in channel", "👍 Helpful" buttons. Now in Russian, the note's title as it is; and the buttons of that
    answer (More, a vote) answer in Russian too: the question they carry is Russian."""
    ack, answer = _command(sample_app, hook, "ротация ключей")
    assert ack == "Ищу «ротация ключей»…", ack
    text = _said(answer)
    assert "Ротация ключей провайдеров" in text and re.search(r"результат 1 · (\d+ мс|\d+\.\d с)", text), text
    assert answer["text"] == "1 заметка по запросу «ротация ключей»", answer["text"]
    assert {"Поделиться в канале", "👍 Полезно", "👎 Не помогло"} <= _labels(answer), _labels(answer)
    assert "Share in channel" not in text and "Helpful" not in text and "result 1" not in text, text
    vote = interaction_form(buttons(answer)["kb_vote_up"], f"{hook.url}/v", "U2147483697", "T0001", "C2147483705")
    assert sample_app(slack_event(vote, path="/slack/interactive"))["statusCode"] == 200
    assert next_post(hook, 1)["text"] == "Спасибо! Отмечено как полезное 👍"


def test_more_of_a_russian_answer_is_in_russian(sample_app: Any, hook: FakeEndpoint) -> None:
    """The More button of a Russian answer carries its question: its page two was "results 6–9" with English
    buttons, and the plural of the fallback text was English. Page two is Russian too, with Russian plurals."""
    _, first = _command(sample_app, hook, "снапшот qdrant коллекции")
    assert first["text"] == "5 заметок по запросу «снапшот qdrant коллекции»", first["text"]
    assert {"Поделиться в канале", "Ещё результаты"} <= _labels(first), _labels(first)
    more = interaction_form(buttons(first)["kb_more"], f"{hook.url}/m", "U2147483697", "T0001", "C2147483705")
    assert sample_app(slack_event(more, path="/slack/interactive"))["statusCode"] == 200
    page = next_post(hook, 1)
    assert page["replace_original"] is True and page["text"] == "5 заметок по запросу «снапшот qdrant коллекции»", page
    footer = [e["text"] for b in page["blocks"] if b["type"] == "context" for e in b["elements"]][-1]
    assert re.fullmatch(r"результаты 6–10 · (\d+ мс|\d+\.\d с)", footer), footer
    assert "Ещё результаты" in _labels(page) and "More results" not in _said(page), _labels(page)


def test_english_and_mixed_questions_follow_the_search_s_judgement(sample_app: Any, hook: FakeEndpoint) -> None:
    """The language is the search's own judgement of the question (`query_language`): a Russian question naming
    settings in Latin letters ("как задать QDRANT_URL и EMBEDDING_API_KEY") is Russian, though most of its letters
    are Latin; "how to rotate ключи" is English; an English question is answered as before."""
    ack, answer = _command(sample_app, hook, "как задать QDRANT_URL и EMBEDDING_API_KEY")
    assert ack == "Ищу «как задать QDRANT_URL и EMBEDDING_API_KEY»…", ack
    assert "Поделиться в канале" in _labels(answer), _labels(answer)
    ack, answer = _command(sample_app, hook, "how to rotate ключи")
    assert ack == "Searching for “how to rotate ключи”…", ack
    ack, answer = _command(sample_app, hook, "restore a qdrant snapshot")
    assert ack == "Searching for “restore a qdrant snapshot”…" and "Share in channel" in _labels(answer), answer
    assert "Runbook - restore a Qdrant snapshot" in _said(answer)


def test_no_hits_and_a_misspelt_filter_are_said_in_russian(sample_app: Any, hook: FakeEndpoint) -> None:
    """`/kb tag:ранбок ротация ключей` (a slip of the tag `ранбук`) answered "No notes found for “ротация ключей”. No
    note has the tag 'ранбок' (tag:): did you mean 'ранбук'? Try fewer or other words...". In Russian now, the tag
    as typed and as meant."""
    _, answer = _command(sample_app, hook, "tag:ранбок ротация ключей")
    (section,) = [b["text"]["text"] for b in answer["blocks"] if b["type"] == "section"]
    assert section == (
        "По запросу «ротация ключей» заметок не найдено. Ни у одной заметки нет тега «ранбок» (tag:): может быть, "
        "«ранбук»? Попробуйте меньше слов или другие слова, другой язык (русский ↔ английский), меньше фильтров или "
        "`/kb помощь`."
    ), section
    context = [e["text"] for b in answer["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert context == ["фильтры: тег `ранбок`"], context


def test_usage_errors_and_the_help_are_said_in_the_question_s_language(sample_app: Any, hook: FakeEndpoint) -> None:
    """A slip the user can fix (`after:вчера`, a filter without a question) and `/kb помощь` were answered in English;
    the filter words stay as typed (they are the command's syntax)."""
    result = sample_app(slack_event(form("after:вчера ротация ключей", hook.url)))
    text = json.loads(result["body"])["text"]
    assert text.startswith("Не получилось: `after:` принимает дату вида 2026-01-01, а не «вчера».\n\n*Поиск по базе"), (
        text
    )
    help_ru = json.loads(sample_app(slack_event(form("помощь", hook.url)))["body"])["text"]
    assert help_ru.startswith("*Поиск по базе знаний*") and "`/kb share <вопрос>`" in help_ru, help_ru
    help_en = json.loads(sample_app(slack_event(form("help", hook.url)))["body"])["text"]
    assert help_en.startswith("*Search the knowledge base*"), help_en
    english = json.loads(sample_app(slack_event(form("after:someday restore", hook.url)))["body"])["text"]
    assert english.startswith("Sorry: `after:` takes a date like 2026-01-01, not “someday”."), english
    time.sleep(0.3)
    assert hook.requests == []  # answered at once, nothing handed off


def test_a_search_that_fails_apologises_in_russian(load_search_app: Any, tmp_path: Path, hook: FakeEndpoint) -> None:
    """The index is not there (never built): the worker's apology was "Sorry, the search for “…” failed."."""
    app = load_search_app(QDRANT_PATH=str(tmp_path / "none"), SLACK_SIGNING_SECRET=SECRET,
                          SLACK_RESPONSE_HOSTS="127.0.0.1")  # fmt: skip
    ack, answer = _command(app, hook, "ротация ключей")
    assert ack == "Ищу «ротация ключей»…", ack
    assert answer["text"] == "Извините, поиск «ротация ключей» не удался. Попробуйте ещё раз через минуту.", answer


def test_a_scoped_user_and_a_share_are_answered_in_russian(
    load_search_app: Any, tmp_path: Path, hook: FakeEndpoint
) -> None:
    """A user whose Slack mapping gives `hr` sees the `hr` note, in a Russian answer; the channel's share of the same
    question (the channel may not read it) tells the asker, in Russian, that nothing was posted; a user without the
    mapping is told in Russian that nothing was found."""
    kb = tmp_path / "kb"
    (kb / "hr").mkdir(parents=True)
    (kb / "_access.yaml").write_text("hr/: [hr]\n")
    (kb / "hr" / "Зарплатные грейды.md").write_text("---\ntags: [hr]\n---\n# Зарплатные грейды\n\nГрейды зарплат.\n")
    (kb / "restore.md").write_text("---\ntags: [runbook]\n---\n# Restore a snapshot\n\nRestore the collection.\n")
    index_bm25(kb, tmp_path / "q")
    app = load_search_app(QDRANT_PATH=str(tmp_path / "q"), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1",
                          ACCESS_GROUPS=json.dumps({"slack": {"T0001/C2147483705/U0HR": ["hr"]}}))  # fmt: skip
    _, hr_answer = _command(app, hook, "грейды зарплат", user="U0HR")
    assert "*1. Зарплатные грейды*" in _said(hr_answer) and "Поделиться в канале" in _labels(hr_answer), hr_answer
    _, share = _command(app, hook, "share грейды зарплат", user="U0HR")
    assert share["response_type"] == "ephemeral" and "Зарплатные грейды" not in _said(share), share
    assert share["text"].startswith("По запросу «грейды зарплат» заметок не найдено. В канал ничего не отправлено"), (
        share["text"]
    )
    _, anyone = _command(app, hook, "грейды зарплат")
    assert anyone["text"].startswith("По запросу «грейды зарплат» заметок не найдено."), anyone["text"]


# -- the operator's deploy ------------------------------------------------------------------------------------------


def _kbsearch(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, cwd=ROOT, env=subprocess_env(**env),
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip


@pytest.mark.timeout(4 * PROCESS_TIMEOUT_S)
def test_an_operator_can_deploy_with_unlabelled_notes_denied(tmp_path: Path) -> None:
    """README's Access offers `ACCESS_DEFAULT=deny` (a note with no `access` and no folder rule is read by nobody),
    but the template had no parameter for it and set no `ACCESS_DEFAULT`: a deployed KB was `public` by default
    whatever the operator wanted, short of editing the template. `AccessDefault` sets it for every function; the
    indexer run as the template builds it (`kbsearch invoke IndexerFunction --parameter-overrides`) applies it."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "plain.md").write_text("# Unlabelled grades\n\nSalary grades, unlabelled.\n")
    (kb / "hr.md").write_text("---\naccess: [hr]\n---\n# Labelled grades\n\nSalary grades for hr.\n")
    env = {"KB_SOURCE": str(kb), "QDRANT_PATH": str(tmp_path / "q")}

    def titles(scope: str) -> list[str]:
        done = _kbsearch("search", "salary grades", "--scope", scope, "--json", **env)
        assert done.returncode == 0, done.stderr
        return sorted(hit["title"] for hit in json.loads(done.stdout)["results"])

    event = str(ROOT / "events" / "indexer_schedule.json")
    indexed = _kbsearch("invoke", "IndexerFunction", "--event", event, **env)
    assert indexed.returncode == 0 and '"errorType"' not in indexed.stdout, indexed.stdout + indexed.stderr
    assert titles("public") == ["Unlabelled grades"]  # the default: public, as before
    denied = _kbsearch("invoke", "IndexerFunction", "--event", event, "--parameter-overrides", "AccessDefault=deny",
                       **env)  # fmt: skip
    assert denied.returncode == 0 and '"errorType"' not in denied.stdout, denied.stdout + denied.stderr
    assert titles("public") == [], "an unlabelled note is read by nobody under AccessDefault=deny"
    assert titles("hr") == ["Labelled grades"]


@pytest.mark.timeout(4 * PROCESS_TIMEOUT_S)
def test_an_operator_can_name_the_slash_command_otherwise(tmp_path: Path, hook: FakeEndpoint) -> None:
    """A workspace with a `/kb` already: the admin names the app's command `/wiki` in the manifest, and every
    `/wiki` was refused 400 `unknown_command` (`SLACK_COMMANDS`, which the template never set and had no parameter
    for). `SlackCommands` sets it; the search function as the template builds it (`kbsearch invoke`) answers."""
    event_file = tmp_path / "wiki.json"
    body = form("restore a snapshot", f"{hook.url}/commands/1").replace("%2Fkb", "%2Fwiki")
    event_file.write_text(json.dumps(slack_event(body)))
    env = {"SLACK_SIGNING_SECRET": SECRET, "QDRANT_PATH": str(tmp_path / "q"), "SLACK_RESPONSE_HOSTS": "127.0.0.1"}

    def status(*overrides: str) -> tuple[int, str]:
        args = ("--parameter-overrides", *overrides) if overrides else ()
        done = _kbsearch("invoke", "SearchFunction", "--event", str(event_file), *args, **env)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        return result["statusCode"], json.loads(result["body"]).get("error", "")

    assert status() == (400, "unknown_command")  # the default, /kb: as before
    assert status("SlackCommands=/kb,/wiki") == (200, "")


def test_the_help_and_the_tips_name_the_app_s_own_command(
    load_search_app: Any, bm25_index: Path, tmp_path: Path, hook: FakeEndpoint
) -> None:
    """Under `SlackCommands=/wiki` the help said "`/kb <question>`", "`/kb share <question>`", and the tips of an
    answer of no hits "or `/kb help`": commands the workspace does not have (or another app's). They name the command
    the person typed now."""
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    app = load_search_app(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1",
                          SLACK_COMMANDS="/wiki")  # fmt: skip
    helped = app(slack_event(form("help", hook.url).replace("%2Fkb", "%2Fwiki")))
    text = json.loads(helped["body"])["text"]
    assert "`/wiki share <question>`" in text and "/kb" not in text, text
    body = form("tag:ранбок ротация ключей", f"{hook.url}/w").replace("%2Fkb", "%2Fwiki")
    assert app(slack_event(body))["statusCode"] == 200
    said = next_post(hook, 0)["text"]
    assert said.endswith("меньше фильтров или `/wiki помощь`.") and "/kb" not in said, said
