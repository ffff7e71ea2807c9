"""End to end through ``kbsearch serve``: a signed /kb command (slack_sdk acting as Slack) → acknowledgement →
the worker's answer with buttons (on a loopback response_url) → Share in channel → 👍/👎 → ``kbsearch feedback
export --beir`` → ``kbsearch eval`` over the exported set; and the ``kbsearch slack`` helper against the same
server."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from kbsearch_tools.cli import main
from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.process import serve_process
from kbsearch_tools.slack_client import buttons, command_form, interaction_form
from tests.conftest import ROOT, copy_store, subprocess_env
from tests.unit.test_slack_render import block_kit_problems

SECRET = "e2e-signing-secret-0123456789abcdef"
USER = "U0E2E0001"


def as_slack(base: str, path: str, body: str) -> httpx.Response:
    """POST ``body`` signed by slack_sdk's SignatureVerifier, as Slack does."""
    ts = str(int(time.time()))
    signature = str(SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body))
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
               "X-Slack-Signature": signature}  # fmt: skip
    return httpx.post(base + path, content=body, headers=headers, timeout=10)


def next_post(hook: FakeEndpoint, before: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while len(hook.requests) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(hook.requests) > before, "the worker never answered"
    return hook.requests[before].body


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kbsearch_tools.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300, check=False)  # fmt: skip


def test_command_to_eval_through_kbsearch_serve(
    bm25_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    votes = tmp_path / "votes.jsonl"
    env = subprocess_env(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1",
                         SLACK_FEEDBACK_FILE=str(votes), KB_NOTE_URL_PATTERN="https://git.example.com/kb/{path_md}")  # fmt: skip
    hook = FakeEndpoint().start()
    try:
        with serve_process(env, cwd=ROOT) as server:
            base = server.base_url
            # 1. the command, signed as Slack signs it: acknowledged at once, answered with buttons
            body = command_form("in:en/runbooks restore a qdrant snapshot", hook.url + "/r1", USER, "T0E2E", "C0E2E")
            t0 = time.monotonic()
            ack = as_slack(base, "/slack/command", body)
            assert ack.status_code == 200 and time.monotonic() - t0 < 3  # Slack's own limit
            assert ack.json()["text"] == "Searching for “restore a qdrant snapshot”…"
            answer = next_post(hook, 0)
            assert not block_kit_problems(answer)
            found = buttons(answer)
            assert {"kb_share", "kb_vote_up", "kb_vote_down", "kb_open_1"} <= set(found)
            first_hit = found["kb_open_1"]["url"]
            assert (
                first_hit == "https://git.example.com/kb/en/runbooks/Runbook%20-%20restore%20a%20Qdrant%20snapshot.md"
            )

            # 2. Share in channel: the same answer, in the channel, with who asked
            t0 = time.monotonic()
            share = as_slack(base, "/slack/interactive",
                             interaction_form(found["kb_share"], hook.url + "/r1", USER, "T0E2E", "C0E2E"))  # fmt: skip
            assert share.status_code == 200 and share.text == "" and time.monotonic() - t0 < 3  # acked at once
            shared = next_post(hook, 1)
            assert shared["response_type"] == "in_channel" and f"asked by <@{USER}>" in json.dumps(shared)
            assert buttons(shared)["kb_open_1"]["url"] == first_hit

            # 3. 👍 on that answer
            up = interaction_form(found["kb_vote_up"], hook.url + "/r1", USER, "T0E2E", "C0E2E")
            assert as_slack(base, "/slack/interactive", up).status_code == 200
            assert "Thanks" in next_post(hook, 2)["text"]

            # 4. another question, judged 👎 by someone else
            body2 = command_form("ротация ключей", hook.url + "/r2", "U0E2E0002", "T0E2E", "C0E2E")
            assert as_slack(base, "/slack/command", body2).status_code == 200
            answer2 = next_post(hook, 3)
            down = interaction_form(buttons(answer2)["kb_vote_down"], hook.url + "/r2", "U0E2E0002", "T0E2E", "C0E2E")
            assert as_slack(base, "/slack/interactive", down).status_code == 200
            next_post(hook, 4)

            # 5. the kbsearch slack helper, against the same server: a command and a 👍, signed for us
            monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
            assert main(["slack", "--api", base, "--press", "kb_vote_up", "--json", "reindex", "from", "scratch"]) == 0
            deadline = time.monotonic() + 10
            while votes.read_text(encoding="utf-8").count("\n") < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        hook.stop()

    records = [json.loads(line) for line in votes.read_text(encoding="utf-8").splitlines()]
    assert [r["vote"] for r in records] == ["up", "down", "up"]
    assert records[0]["filters"] == {"path_prefix": "en/runbooks"}
    assert records[0]["hits"][0] == {"path": "en/runbooks/Runbook - restore a Qdrant snapshot.md", "rank": 1}
    assert all(USER not in line for line in votes.read_text(encoding="utf-8").splitlines())

    # 6. export the votes as a BEIR set, then score it with kbsearch eval
    out = tmp_path / "beir"
    export = run_cli("feedback", "export", "--beir", str(out), "--kb", str(ROOT / "sample-kb"), "--file", str(votes),
                     "--table", "", "--json", env=subprocess_env())  # fmt: skip
    assert export.returncode == 0, export.stderr
    summary = json.loads(export.stdout)
    assert summary["votes"] == 3 and summary["queries"] == 3 and summary["relevant"] >= 2
    evaluated = run_cli("eval", "--beir", str(out), "--phases", "lexical", "--json", env=subprocess_env())
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["queries"] == 3
    lexical = report["phases"]["lexical"]
    # the liked answers' notes are ids eval ranks, found near the top for their questions (were the exported ids not
    # the corpus's, every metric would be 0); the 👎 question has no relevant note and scores 0, so at most 2/3 (as
    # eval rounds it: with each vote's filters applied, the filtered 👍 finds all its notes, Recall@50 exactly 2/3)
    assert 0.5 <= lexical["MRR@10"] <= round(2 / 3, 4) and 0.4 <= lexical["Recall@50"] <= round(2 / 3, 4)


def test_print_curl_is_signed_as_slack_signs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    assert main(["slack", "--print-curl", "--response-url", "http://127.0.0.1:9999/r", "tag:runbook", "restore"]) == 0
    words = shlex.split(capsys.readouterr().out)
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    body = words[words.index("--data-binary") + 1]
    assert words[:3] == ["curl", "-sS", "http://127.0.0.1:3000/slack/command"]
    assert SignatureVerifier(SECRET).is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert "text=tag%3Arunbook+restore" in body and "response_url=http%3A%2F%2F127.0.0.1%3A9999%2Fr" in body
    monkeypatch.delenv("SLACK_SIGNING_SECRET")
    assert main(["slack", "--print-curl", "x"]) == 2
    assert "set SLACK_SIGNING_SECRET" in capsys.readouterr().err
