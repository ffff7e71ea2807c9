"""Round 37: two new users' hours (walk37). The Slack user typing `/kb` as colleagues type it, and the access admin
giving teams their scopes from the README alone. The Slack tests go through the search function's handler with
Slack-signed API Gateway events (the worker's answer on a loopback `response_url`) and read the blocks as Slack
shows them; the admin's through `kbsearch index` spawned. Each fails on main's code (1fe9faf)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.fakes import FakeEndpoint
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, index_bm25, subprocess_env
from tests.integration.test_slack import SECRET, form, slack_event
from tests.integration.test_walk32 import watched_save
from tests.integration.test_walk35 import _command, hook  # noqa: F401 (hook: a fixture)

#: A help page as the Obsidian help writes them (the vault's en/User interface/Settings.md and en/Obsidian Sync
#: pages): a bold link, a block id closing a paragraph, and a paragraph long enough that the search's snippet (300
#: characters) ends inside a bold run.
ACCOUNT = """---
title: Account settings
tags: [account]
---
# Account settings

View your account information. Select **[Manage](https://obsidian.example/account)** to access account settings,
or select **Log out** to sign out on the app. By linking notes you build a network of knowledge. ^b15695
"""
LOGIN = (
    "---\ntitle: Login status\n---\n# Login status\n\n"
    + "Obsidian Sync has detected that you are not currently logged in and asks you to log back in on the app "
    + "in the account section of the settings. In some cases a community plugin can also prevent Obsidian Sync "
    + "from confirming the login status of your account, so please enter **Restricted mode for a moment** and "
    + "try again.\n"
)


@pytest.fixture
def help_app(load_search_app: Any, tmp_path: Path) -> Any:
    kb = tmp_path / "kb"
    (kb / "en" / "Sync").mkdir(parents=True)
    (kb / "en" / "Sync" / "Account settings.md").write_text(ACCOUNT, encoding="utf-8")
    (kb / "en" / "Sync" / "Login status.md").write_text(LOGIN, encoding="utf-8")
    (kb / "ru" / "Лицензии и оплата").mkdir(parents=True)
    (kb / "ru" / "Лицензии и оплата" / "Возврат.md").write_text(
        "# Политика возврата\n\nВозврат средств за лицензию возможен в течение 14 дней.\n", encoding="utf-8"
    )
    for n in range(9):  # folders enough that a list of them is cut
        (kb / "en" / f"Topic {n}").mkdir()
        (kb / "en" / f"Topic {n}" / "Note.md").write_text(f"# Topic {n}\n\nwombat {n}\n", encoding="utf-8")
    (kb / "ru" / "Лицензии").mkdir()
    (kb / "ru" / "Лицензии" / "Каталог.md").write_text("# Каталог лицензий\n\nЛицензия на каталог.\n", "utf-8")
    store = tmp_path / "q"
    index_bm25(kb, store)
    return load_search_app(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1")


def _sections(message: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]


def test_a_bold_link_a_cut_bold_run_and_a_block_id_read_as_slack_shows_them(
    help_app: Any,
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """The Slack user asked how to log out and read `Select **<https://…|Manage>*, … or select **Log out* …
    knowledge. ^b15695`: bold was read between the links, so `**[Manage](url)**` lost one pair of asterisks and every
    later bold run of the line was shifted by one; the block id is Obsidian's anchor, not text. A snippet the search
    cut inside a bold run ended `please enter **Restricted mode…`, the asterisks shown as they are."""
    _, answer = _command(help_app, hook, "manage account log out")
    (shown,) = [s for s in _sections(answer) if "Account settings" in s]
    assert "Select *<https://obsidian.example/account|Manage>* to access account settings" in shown, shown
    assert "or select *Log out* to sign out" in shown and "**" not in shown, shown
    assert shown.endswith("network of knowledge.") and "^b15695" not in shown, shown
    _, answer = _command(help_app, hook, "restricted mode login status")
    (shown,) = [s for s in _sections(answer) if "Login status" in s]
    assert "**" not in shown and "please enter Restricted" in shown and shown.endswith("…"), shown


def test_a_folder_in_russian_quotes_is_one_filter(
    help_app: Any,
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """A Russian keyboard's smart punctuation turns `"` into «…» (or „…“): `in:«ru/Лицензии и оплата» возврат` was
    the folder `«ru/Лицензии` and the question «и оплата» возврат», answered "no note has the folder «ru/Лицензии»".
    The folder is the quoted one now, as `in:"…"` and `in:“…”` are; the help says so."""
    for quoted in ("«ru/Лицензии и оплата»", "„ru/Лицензии и оплата“", '"ru/Лицензии и оплата"'):
        ack, answer = _command(help_app, hook, f"in:{quoted} возврат")
        assert ack == "Ищу «возврат»…", ack
        text = json.dumps(answer, ensure_ascii=False)
        assert "Политика возврата" in text and "в папке `ru/Лицензии и оплата`" in text, text
        assert "Каталог" not in text, text
    result = help_app(slack_event(form("помощь", hook.url)))
    assert "`in:«ru/как это»`" in json.loads(result["body"])["text"]


def _warned(done: subprocess.CompletedProcess[str], about: str) -> list[str]:
    """The lines of `kbsearch index`'s summary that warn of ``about`` (`_access.yaml`, `ACCESS_GROUPS`)."""
    assert done.returncode == 0, done.stderr
    return [line.strip() for line in done.stdout.splitlines() if line.strip().startswith(f"warning {about}")]


def _index(kb: Path, store: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, "index", str(kb), *args], capture_output=True, text=True, cwd=ROOT,
                          env=subprocess_env(QDRANT_PATH=str(store), **env), timeout=PROCESS_TIMEOUT_S,
                          check=False)  # fmt: skip


def test_a_folder_rule_that_names_no_folder_is_said_with_the_folder_meant(tmp_path: Path) -> None:
    """The admin restricted the teams' folder with a slip, `en/Team/: [teams]` for `en/Teams`: the sync said
    `sync done` and nothing else, and every note of `en/Teams` stayed readable by every caller. A rule whose folder
    holds no note is a warning of the sync now, naming the rule as written and the folder meant; the rule that
    matches is not named, and the notes' groups are as the rules say (the rule is not guessed into force)."""
    kb = tmp_path / "kb"
    for folder, name in (("en/Teams", "Deploy.md"), ("ru/Лицензии и оплата", "Возврат.md"), ("en", "Home.md")):
        (kb / folder).mkdir(parents=True, exist_ok=True)
        (kb / folder / name).write_text(f"# {name[:-3]}\n\nquokka {name[:-3]}\n", encoding="utf-8")
    (kb / "_access.yaml").write_text("en/Team/: [teams]\nru/Лицензии и оплата/: [finance]\n", encoding="utf-8")
    done = _index(kb, tmp_path / "q")
    warned = _warned(done, "_access.yaml")
    assert warned == [
        "warning _access.yaml: the rule 'en/Team/' names no folder holding a note, so its groups (teams) restrict "
        "nothing: did you mean 'en/Teams/'?"
    ], done.stdout
    report = json.loads(_index(kb, tmp_path / "q", "--json").stdout)  # said once per change (rel38): standing
    assert report["warnings"] == [] and report["access_standing"]["count"] == 1, report
    public = subprocess.run([*KBSEARCH_CMD, "search", "--scope", "public", "--json", "quokka"], capture_output=True,
                            text=True, cwd=ROOT, env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")),
                            timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    paths = sorted(hit["path"] for hit in json.loads(public.stdout)["results"])
    assert paths == ["en/Home.md", "en/Teams/Deploy.md"], public.stdout


def test_a_caller_s_group_no_note_is_restricted_to_is_said_by_the_sync(tmp_path: Path) -> None:
    """The admin gave a Slack user `finanse` for `finance` and an API key a group whose notes are not written yet:
    each caller read the public notes only, and nothing said so anywhere (`/whoami` answers what the mapping says;
    the search cannot tell a slip from a group to come). A full sync reads the same caller mapping (for its reach
    tokens): it names each caller holding a group no folder rule or note restricts a note to, with the group meant,
    never a key's value (a local key by its position)."""
    kb = tmp_path / "kb"
    (kb / "finance").mkdir(parents=True)
    (kb / "finance" / "Budget.md").write_text("# Budget\n\nquokka budget\n", encoding="utf-8")
    (kb / "Home.md").write_text("# Home\n\nquokka home\n", encoding="utf-8")
    (kb / "_access.yaml").write_text("finance/: [finance]\n", encoding="utf-8")
    mapping = {"api_keys": {"k7x2": {"name": "hr-portal", "groups": ["hr"]}},
               "slack": {"T0001/C0001/U0001": ["finanse"], "T0001": ["finance"]}}  # fmt: skip
    done = _index(kb, tmp_path / "q", ACCESS_GROUPS=json.dumps(mapping), KB_LOCAL_API_KEYS="s3cr3t-value:financ")
    warned = _warned(done, "ACCESS_GROUPS")  # a local key by its name alone (its id is its hash: rev37c)
    assert warned == [
        "warning ACCESS_GROUPS: api key 'k7x2' (hr-portal) holds the group 'hr', to which no note is restricted "
        "(the KB's groups: finance), so it adds nothing to public",
        "warning ACCESS_GROUPS: api key KB_LOCAL_API_KEYS #1 holds the group 'financ', to which no note "
        "is restricted (the KB's groups: finance), so it adds nothing to public: did you mean 'finance'?",
        "warning ACCESS_GROUPS: slack 'T0001/C0001/U0001' holds the group 'finanse', to which no note is restricted "
        "(the KB's groups: finance), so it adds nothing to public: did you mean 'finance'?",
    ], done.stdout
    assert "s3cr3t-value" not in done.stdout + done.stderr


def test_a_misspelt_filter_word_is_said_not_searched_for(
    help_app: Any,
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """`/kb tga:account log out` (the `tag:` typed fast) was searched for as the words `tga:account log out`, the
    filter silently not applied, and answered with every note that held the words. A `word:` one slip from a filter
    word (a letter wrong, missing or added, two swapped) is answered at once, in the question's language, naming the
    filter meant and how to search for the word itself; `error: timeout` and other words stay the question's."""
    result = help_app(slack_event(form("tga:account manage log out", hook.url)))
    assert json.loads(result["body"])["text"].startswith(
        "Sorry: `tga:` is not a filter: did you mean `tag:`? (to search for the word itself, leave out the colon)."
    ), result["body"]
    result = help_app(slack_event(form("afetr:2026-01-01 политика возврата", hook.url)))
    assert json.loads(result["body"])["text"].startswith(
        "Не получилось: `afetr:` — не фильтр: может быть, `after:`? (чтобы искать само слово, уберите двоеточие)."
    ), result["body"]
    time.sleep(0.3)
    assert hook.requests == []  # answered at once, nothing handed off
    ack, answer = _command(help_app, hook, "error: sync: log out")
    assert ack == "Searching for “error: sync: log out”…" and "Account settings" in json.dumps(answer), answer


def test_a_caller_mapping_that_cannot_be_used_is_said_by_the_sync(tmp_path: Path) -> None:
    """The admin pasted one key twice into the mapping (a key in two places): the search refuses the whole mapping
    and gives every caller the public notes only, logged by the search function at the next request, while the sync
    that read the same mapping said nothing (`kbsearch index`'s summary showed no line). It says so now, naming the
    problem as the search logs it (the key id, never a value)."""
    kb = tmp_path / "kb"
    (kb / "finance").mkdir(parents=True)
    (kb / "finance" / "Budget.md").write_text("# Budget\n\nquokka budget\n", encoding="utf-8")
    (kb / "_access.yaml").write_text("finance/: [finance]\n", encoding="utf-8")
    twice = '{"api_keys": {"k7x2": ["finance"], "k7x2": ["hr"]}}'
    done = _index(kb, tmp_path / "q", ACCESS_GROUPS=twice)
    warned = _warned(done, "ACCESS_GROUPS")
    assert warned == [
        "warning ACCESS_GROUPS: cannot be used, so every caller reads the public notes only: ACCESS_GROUPS gives "
        "'k7x2' more than once (in one object)"
    ], done.stdout


def test_the_indexer_function_logs_what_it_says_of_the_access_settings(tmp_path: Path) -> None:
    """Deployed, the admin reads the indexer's log, not a summary: its "sync finished" line leaves the warnings out
    (a note's are many). The access settings' warnings are few and the admin's: each is a log line of its own."""
    kb = tmp_path / "kb"
    (kb / "en" / "Teams").mkdir(parents=True)
    (kb / "en" / "Teams" / "Deploy.md").write_text("# Deploy\n\nquokka\n", encoding="utf-8")
    (kb / "_access.yaml").write_text("en/Team/: [teams]\n", encoding="utf-8")
    done = subprocess.run([*KBSEARCH_CMD, "invoke", "IndexerFunction", "--event",
                           str(ROOT / "events" / "indexer_schedule.json")], capture_output=True, text=True, cwd=ROOT,
                          env=subprocess_env(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"),
                                             ACCESS_GROUPS='{"slack": {"T0001": ["teamz"]}}'),
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 0 and '"errorType"' not in done.stdout, done.stdout + done.stderr
    lines = [json.loads(line) for line in (done.stdout + done.stderr).splitlines() if '"access setting"' in line]
    assert [(line["level"], line["setting"]) for line in lines] == [
        ("WARNING", "_access.yaml"),
        ("WARNING", "ACCESS_GROUPS"),
    ], lines
    assert "did you mean 'en/Teams/'?" in lines[0]["reason"], lines[0]
    assert "slack 'T0001' holds the group 'teamz'" in lines[1]["reason"], lines[1]


def test_a_long_list_of_folders_the_asker_may_read_ends_as_a_sentence(
    help_app: Any,
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """No note in the folder asked for, and more than ten folders the asker may read: the list ended `..., ru/x, ....`
    (the cut's dots and the sentence's). It says how many more now, in the question's language."""
    _, answer = _command(help_app, hook, "in:en/Nowhere manage account")
    (shown,) = _sections(answer)
    assert "; the folders: " in shown and " and 1 more." in shown and "..." not in shown, shown
    _, answer = _command(help_app, hook, "in:xqzwvk политика возврата")
    (shown,) = _sections(answer)
    assert "; есть: " in shown and " и ещё 4." in shown and "..." not in shown, shown


def test_mapping_entries_that_match_no_caller_are_said_never_a_pasted_key_value(tmp_path: Path) -> None:
    """The admin mapped a channel by its name (`T0123/#security`), a user by `@maria`, a team in lower case, and a
    key by its value where its id belongs: each entry matched no caller (its callers read public notes only) and
    nothing said so. The sync names each; a key's value is never shown (it is named by its place in `api_keys`,
    also where the unheld-group warning names its holder), and the admin is told to rotate it."""
    kb = tmp_path / "kb"
    (kb / "finance").mkdir(parents=True)
    (kb / "finance" / "Budget.md").write_text("# Budget\n\nquokka budget\n", encoding="utf-8")
    (kb / "_access.yaml").write_text("finance/: [finance]\n", encoding="utf-8")
    value = "Zq3xT8vNp2Lk9WmR4sYb7cHdJ5fGtA1eUiOo"
    mapping = {"api_keys": {value: ["financ"]},
               "slack": {"T0123/#security": ["finance"], "t0123": ["finance"], "T0123/C0456/@maria": ["finance"],
                         "T0123/C0456/U0789": ["finance"]}}  # fmt: skip
    done = _index(kb, tmp_path / "q", ACCESS_GROUPS=json.dumps(mapping))
    assert _warned(done, "ACCESS_GROUPS") == [
        "warning ACCESS_GROUPS: api key #1 of api_keys is 36 characters, not an id (API Gateway's are 10): if it is a "
        "key's value, map the key's id instead and rotate that key",
        "warning ACCESS_GROUPS: slack 'T0123/#security': '#security' is not a Slack channel id (C… or G…, as in "
        "channel_id, not its #name), so the entry matches no caller",
        "warning ACCESS_GROUPS: slack 'T0123/C0456/@maria': '@maria' is not a Slack user id (U… or W…, as in user_id, "
        "not an @name), so the entry matches no caller",
        "warning ACCESS_GROUPS: slack 't0123': 't0123' is not a Slack team id (T…, as in team_id), so the entry "
        "matches no caller",
        "warning ACCESS_GROUPS: api key #1 holds the group 'financ', to which no note is restricted (the KB's "
        "groups: finance), so it adds nothing to public: did you mean 'finance'?",
    ], done.stdout
    assert value not in done.stdout + done.stderr


def test_a_rule_naming_no_folder_is_said_by_the_run_its_save_triggers(tmp_path: Path) -> None:
    """The admin writes `_access.yaml` where `kbsearch serve --watch` (or an S3 event) sees the save: that run applies
    the rules to every indexed note but said nothing of a rule whose folder holds none; the next full sync would
    have. The run its save triggers says it now, on the watch's line (and the indexer function's log)."""
    _, _, initial, saved = watched_save(tmp_path, {"Home.md": "# Home\n\nquokka\n"}, "_access.yaml", "hr/: [hr]\n")
    assert "warning" not in initial, initial
    assert saved.endswith(
        "; 1 warning: _access.yaml (the rule 'hr/' names no folder holding a note, so its groups (hr) restrict nothing)"
    ), saved
