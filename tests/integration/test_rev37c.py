"""Round 37 review: a cold review of walk37 (rev37c). The Slack tests go through the search function's handler with
Slack-signed API Gateway events (the worker's answer on a loopback `response_url`); the sync's through `kbsearch
index` spawned. Each fails on walk37's merge (a6b2699)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from kbsearch_tools.fakes import FakeEndpoint
from tests.conftest import index_bm25
from tests.integration.test_slack import SECRET, form, slack_event
from tests.integration.test_walk35 import _command, hook  # noqa: F401 (hook: a fixture)
from tests.integration.test_walk37 import _index, _warned, help_app  # noqa: F401 (help_app: a fixture)


def test_a_word_and_its_colon_in_prose_is_searched_not_refused_as_a_misspelt_filter(
    help_app: Any,  # noqa: F811
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """walk37 answers a `word:` one slip from a filter word with "is not a filter: did you mean …?" and searches
    nothing. People write words with a colon in prose: `Tax: how is a licence refunded`, `Patch: log out fails`,
    `Types: of account`, `Stats: sync`, `Alter: table` (tax/tag, patch/path, types/type, stats/status, alter/after):
    each was refused. A filter is written with its value attached (`tag:runbook`, walk37's `tga:account`), a word of
    prose with a space after its colon: only the first is a slip of a filter (still refused, at once)."""
    for text in ("Tax: manage account", "Patch: log out", "Types: of account settings", "Stats: account",
                 "Alter: account settings"):  # fmt: skip
        ack, answer = _command(help_app, hook, text)
        assert ack == f"Searching for “{text}”…", (text, ack)
        assert "Account settings" in json.dumps(answer), (text, answer)
    before = len(hook.requests)
    result = help_app(slack_event(form("tga:account manage log out", hook.url)))
    assert "`tga:` is not a filter: did you mean `tag:`?" in json.loads(result["body"])["text"], result["body"]
    time.sleep(0.3)
    assert len(hook.requests) == before  # the slip is still answered at once, nothing handed off


def test_a_key_value_pasted_twice_is_never_shown_by_the_sync(tmp_path: Path) -> None:
    """An admin pasted a key's value (not its id) into `api_keys`, twice (rotating, the old entry copied): the mapping
    is refused (a key given twice), and walk37's sync warning quotes the refusal, `ACCESS_GROUPS gives '<the key's
    value>' more than once`, into `kbsearch index`'s summary, its `--json` report and the indexer function's log.
    A key longer than any id is named by its length, never shown."""
    kb = tmp_path / "kb"
    (kb / "finance").mkdir(parents=True)
    (kb / "finance" / "Budget.md").write_text("# Budget\n\nquokka budget\n", encoding="utf-8")
    (kb / "_access.yaml").write_text("finance/: [finance]\n", encoding="utf-8")
    value = "Zq3xT8vNp2Lk9WmR4sYb7cHdJ5fGtA1eUiOoPq7w"
    twice = '{"api_keys": {"' + value + '": ["finance"], "' + value + '": ["hr"]}}'
    done = _index(kb, tmp_path / "q", "--json", ACCESS_GROUPS=twice)
    assert done.returncode == 0, done.stderr
    reasons = [w["reason"] for w in json.loads(done.stdout)["warnings"] if w["path"] == "ACCESS_GROUPS"]
    assert reasons == [
        "cannot be used, so every caller reads the public notes only: ACCESS_GROUPS gives a key of 40 characters "
        "more than once (in one object; not shown: an id is at most 24, so it may be a key's value)"
    ], reasons
    assert value not in done.stdout + done.stderr and value[:12] not in done.stdout + done.stderr
    badly = json.dumps({"api_keys": {"k7x2": ["finance"], value: ["Finance Team"]}})  # not a group name, too
    done = _index(kb, tmp_path / "q", "--json", ACCESS_GROUPS=badly)
    reasons = [w["reason"] for w in json.loads(done.stdout)["warnings"] if w["path"] == "ACCESS_GROUPS"]
    assert len(reasons) == 1 and "api key #2: 'Finance Team' is not a group name" in reasons[0], reasons
    assert value not in done.stdout + done.stderr and value[:12] not in done.stdout + done.stderr


def test_many_callers_of_a_group_to_come_are_one_warning_not_one_each(tmp_path: Path) -> None:
    """The admin gives 300 Slack users the group `auditors` before any note is restricted to it (the team's notes
    come next month). walk37's sync wrote one warning per caller: 300 lines in `kbsearch index`'s summary and 300
    WARNING lines in the indexer function's log, every hourly sync. It is one line per group now: how many callers
    hold it, the first few named, the rest counted; and past ten entries that match no caller (channels mapped by
    their #names) the rest are counted in one line."""
    kb = tmp_path / "kb"
    (kb / "finance").mkdir(parents=True)
    (kb / "finance" / "Budget.md").write_text("# Budget\n\nquokka budget\n", encoding="utf-8")
    (kb / "_access.yaml").write_text("finance/: [finance]\n", encoding="utf-8")
    slack = {f"T0001/C0001/U{n:04d}": ["auditors"] for n in range(300)}
    slack["T0001/C0002"] = ["finanse"]
    slack |= {f"T0001/#team-{n:02d}": ["finance"] for n in range(15)}  # channels by name: 15 entries, no caller
    done = _index(kb, tmp_path / "q", ACCESS_GROUPS=json.dumps({"slack": slack}))
    warned = _warned(done, "ACCESS_GROUPS")
    unmatched = [line for line in warned if "no caller" in line]
    assert len(unmatched) == 11 and unmatched[-1] == "warning ACCESS_GROUPS: and 5 more entries that match no caller"
    assert warned[11:] == [
        "warning ACCESS_GROUPS: 300 callers hold the group 'auditors', to which no note is restricted (the KB's "
        "groups: finance), so it adds nothing to public: slack 'T0001/C0001/U0000', slack 'T0001/C0001/U0001', "
        "slack 'T0001/C0001/U0002' and 297 more",
        "warning ACCESS_GROUPS: slack 'T0001/C0002' holds the group 'finanse', to which no note is restricted (the "
        "KB's groups: finance), so it adds nothing to public: did you mean 'finance'?",
    ], done.stdout


def test_a_local_key_is_named_never_by_its_id_the_hash_of_its_value(tmp_path: Path) -> None:
    """`kbsearch serve`'s local key's id is `local-` and 12 hex of its value's SHA-256. walk37's unheld-group warning
    named the key `api key 'local-<hash>' (KB_LOCAL_API_KEYS #1)`: 48 bits of an unsalted hash of a secret, in the
    sync's summary and log, from which a short key (`s3cr3t`) is found by trying words. It is named by its name."""
    kb = tmp_path / "kb"
    (kb / "finance").mkdir(parents=True)
    (kb / "finance" / "Budget.md").write_text("# Budget\n\nquokka budget\n", encoding="utf-8")
    (kb / "_access.yaml").write_text("finance/: [finance]\n", encoding="utf-8")
    done = _index(kb, tmp_path / "q", KB_LOCAL_API_KEYS="s3cr3t:financ")
    assert _warned(done, "ACCESS_GROUPS") == [
        "warning ACCESS_GROUPS: api key KB_LOCAL_API_KEYS #1 holds the group 'financ', to which no note is restricted "
        "(the KB's groups: finance), so it adds nothing to public: did you mean 'finance'?"
    ], done.stdout
    assert hashlib.sha256(b"s3cr3t").hexdigest()[:12] not in done.stdout + done.stderr


def test_a_note_s_double_star_and_caret_text_is_shown_not_taken_for_a_cut_or_a_block_id(
    load_search_app: Any,
    tmp_path: Path,
    hook: FakeEndpoint,  # noqa: F811
) -> None:
    """walk37 drops a `**` left without its pair (a snippet cut inside a bold run) and a `^id` closing a line
    (Obsidian's block id). A developer's note says `pass **kwargs to the client` and `needs react ^18`: Slack showed
    `pass kwargs to the client` and `needs react`. An opening `**` is dropped on the line the snippet cut (ending
    "…") only, and a block id holds a letter (`^b15695`, `^my-block`), so both lines are shown as written."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "Client.md").write_text(
        "# Wombat client\n\nTo configure the wombat client, pass **kwargs to the client\n\n"
        "The wombat widget needs react ^18\n\nSee the wombat guide. ^b15695\n",
        encoding="utf-8",
    )
    store = tmp_path / "q"
    index_bm25(kb, store)
    app = load_search_app(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1")
    _, answer = _command(app, hook, "wombat client")
    (shown,) = [b["text"]["text"] for b in answer["blocks"] if b["type"] == "section" and "Wombat" in b["text"]["text"]]
    assert "pass **kwargs to the client" in shown, shown
    assert "needs react ^18" in shown, shown
    assert "See the wombat guide." in shown and "^b15695" not in shown, shown
