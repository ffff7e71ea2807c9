"""Round 38: a new user's hour (walk38), and round 37's Slack leftovers. The Slack tests go through the search
function's handler with Slack-signed API Gateway events (the worker's answer on a loopback `response_url`) and read
the blocks as Slack shows them. Each fails on main's code (7ca88c1)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.fakes import FakeEndpoint
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, index_bm25
from tests.integration.test_slack import SECRET, form, slack_event
from tests.integration.test_walk35 import _command, hook  # noqa: F401 (hook: a fixture)
from tests.integration.test_walk37 import _sections

#: The Obsidian help's way of naming a button (ru/Интерфейс пользователя/Настройки.md): the icon embedded after it.
SETTINGS = """---
title: Настройки
---
# Настройки

В левой боковой панели выберите **Настройки** ![[lucide-cog.svg#icon]]. Вы также можете открыть настройки через
палитру команд ![](images/palette.png), а схема окна ![схема окна](images/window.png "Окно") показывает где.
"""


def _bookmarks() -> str:
    """A section as long as the help's Bookmarks page (ru/Плагины/Закладки.md): callouts, each a quoted numbered
    list, so the section is cut into chunks and a chunk's overlap is taken from a quoted list."""
    callouts = []
    for n in range(12):
        callouts.append(
            f"> [!todo]- Добавить закладку {n}\n>\n> **Палитра команд**:\n>\n"
            f"> 1. Нажмите `Ctrl+P` (или `Cmd+P` в macOS), чтобы открыть [[Палитра команд|палитру команд]].\n"
            f"> 2. Выберите команду **Добавить блок {n} под курсором в закладки**.\n"
        )
    callouts.append("> [!todo]- Вомбат\n>\n> 1. Нажмите **Вомбат**, чтобы добавить вомбата в закладки.\n")
    return "# Закладки\n\n## Добавить закладку\n\n" + "\n".join(callouts)


@pytest.fixture
def help_app(load_search_app: Any, tmp_path: Path) -> Any:
    kb = tmp_path / "kb"
    (kb / "ru").mkdir(parents=True)
    (kb / "ru" / "Настройки.md").write_text(SETTINGS, encoding="utf-8")
    (kb / "ru" / "Закладки.md").write_text(_bookmarks(), encoding="utf-8")
    (kb / "en").mkdir()
    (kb / "en" / "Refunds.md").write_text(
        "# Refunds\n\nA refund of a licence includes the VAT paid; the tax is returned with it.\n", encoding="utf-8"
    )
    index_bm25(kb, tmp_path / "q")
    return load_search_app(
        QDRANT_PATH=str(tmp_path / "q"), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1"
    )


def test_a_snippet_starts_at_a_line_not_inside_a_quoted_list(
    help_app: Any,
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """A long section is cut into chunks, each but the first starting with the end of the one before it, and that
    overlap was its last words joined: `… палитру команд. > 2. Выберите команду …`, a quote's `>` and a list's
    number mid-line, shown so by Slack (and by every surface: it is the hit's snippet). The snippet now starts
    after the overlap, at the chunk's next paragraph (after a line `…`), so the quote and the list read as they are
    written; the index's text is unchanged (the lead: an overlap read otherwise would move the ranking)."""
    _, answer = _command(help_app, hook, "вомбат закладки")
    shown = [s for s in _sections(answer) if s.startswith("*1. Закладки*\n")]
    assert shown, json.dumps(answer, ensure_ascii=False)
    for section in shown:
        body = section.split("\n", 1)[1]
        assert not re.search(r"[^\n](?:>|&gt;) ?[0-9]+\. ", body), section  # a quoted list's mark inside a line
        assert re.match(r"…\n>", body), section  # from a paragraph's start: the callout's first line


def test_a_real_word_before_a_colon_is_searched_a_slip_of_a_filter_word_is_said(
    help_app: Any,
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """`/kb tax:VAT refund` was answered "`tax:` is not a filter: did you mean `tag:`?": `tax` is one slip from
    `tag`, and rev37c only spared words with a space after their colon. A key that is an English word (`tax`,
    `typo`, `stats`) is a word of the question now; a slip that is no word (`tga:`, `stauts:`) is still said at once,
    and a filter word's own form (`types:`) is still taken for it."""
    ack, answer = _command(help_app, hook, "tax:VAT refund")
    assert ack.startswith("Searching for “tax:VAT refund”…"), ack
    assert any("Refunds" in s for s in _sections(answer)), answer
    for typed, meant in (("tga:account refund", "tag"), ("stauts:draft refund", "status"), ("types:x refund", "type")):
        result = help_app(slack_event(form(typed, f"{hook.url}/u")))  # said at once: no worker, no answer
        ack = json.loads(result["body"])["text"]
        assert ack.startswith(f"Sorry: `{typed.split(':')[0]}:` is not a filter: did you mean `{meant}:`?"), ack


def _stdio(cwd: Path, env: dict[str, str], *messages: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """`kbsearch mcp` as an assistant's config launches it: a fresh environment (HOME, no PATH, no venv), a working
    folder of the assistant's own; one JSON-RPC message a line. Its answers, and its stderr (the log pane)."""
    lines = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in messages)
    done = subprocess.run([*KBSEARCH_CMD, "mcp", *env.pop("ARGS").split("\0")], input=lines, capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def test_an_assistant_s_tool_error_says_where_the_index_was_looked_for(tmp_path: Path) -> None:
    """The README's config launched with its `env` left out (or a QDRANT_PATH mistyped): the log pane said where the
    store was looked for, but the assistant's `kb_search` and `kb_list` answered "the index has not been built yet:
    run the indexer first", and the assistant told the user to run `kbsearch index`, which they had done, in another
    folder. The tool's answer names the folder looked in and the setting the config gives."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "Home.md").write_text("# Home\n\nquokka\n", encoding="utf-8")
    index_bm25(kb, tmp_path / "checkout" / ".kbsearch" / "qdrant")
    elsewhere = tmp_path / "assistant"
    elsewhere.mkdir()
    env = {"HOME": str(tmp_path), "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "ARGS": f"--kb\0{kb}"}
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "walk38", "version": "1"}}
    answers, log = _stdio(
        elsewhere,
        env,
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "kb_search", "arguments": {"query": "q"}},
        },
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "kb_list", "arguments": {}}},
    )
    for answer in answers[1:]:
        said = answer["result"]["content"][0]["text"]
        assert answer["result"]["isError"] is True, answer
        assert f"no index in {elsewhere.resolve()}/.kbsearch/qdrant" in said and "give QDRANT_PATH" in said, said
        assert "has not been built yet" not in said, said
    assert "give QDRANT_PATH" in log, log


def test_a_home_folder_typed_with_a_tilde_in_an_assistant_s_config_is_said_with_its_absolute_path(
    tmp_path: Path,
) -> None:
    """The README's config with the paths typed as at a shell, `"args": ["mcp", "--kb", "~/kb"]` and
    `"QDRANT_PATH": "~/kb-index"`: an assistant launches the command with no shell, so `~` is a folder's name.
    `kbsearch mcp` exited with "KB folder ~/kb does not exist (in <the assistant's folder>)", and the tool answer of
    the index said a folder `<the assistant's folder>/~/kb-index`; neither said why. Both say now that `~` is not
    expanded and give the absolute path it would be."""
    home = tmp_path / "home"
    (home / "kb").mkdir(parents=True)
    (home / "kb" / "Home.md").write_text("# Home\n\nquokka\n", encoding="utf-8")
    index_bm25(home / "kb", home / "kb-index")
    elsewhere = tmp_path / "assistant"
    elsewhere.mkdir()
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "walk38", "version": "1"}}
    first = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}) + "\n"
    env = {"HOME": str(home), "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "QDRANT_PATH": str(home / "kb-index")}
    done = subprocess.run([*KBSEARCH_CMD, "mcp", "--kb", "~/kb"], input=first, capture_output=True, text=True,
                          cwd=elsewhere, env=env, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode != 0 and not done.stdout, done
    assert f"'~' is not expanded here (no shell reads these settings): give the absolute path, {home}/kb" in (
        done.stderr
    ), done.stderr
    answers, _ = _stdio(
        elsewhere,
        {**env, "QDRANT_PATH": "~/kb-index", "ARGS": f"--kb\0{home / 'kb'}"},
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "kb_search", "arguments": {"query": "q"}},
        },
    )
    said = answers[1]["result"]["content"][0]["text"]
    assert f"give the absolute path, {home}/kb-index" in said, said
    assert not (elsewhere / "~").exists()  # looking made no folder named ~
