"""``kbsearch slack``: act as Slack against a running kb-search API (``kbsearch serve`` or a deployment) — sign a
``/kb`` command and button presses with the signing secret, receive the answers on a loopback ``response_url``
(the server must allow it: ``SLACK_RESPONSE_HOSTS=127.0.0.1``) and show them."""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from kbsearch import slack
from kbsearch.errors import KbSearchError
from kbsearch.slack import sign
from kbsearch_tools.fakes import FakeEndpoint


def signed_headers(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": sign(secret, stamp, body.encode())}  # fmt: skip


def command_form(text: str, response_url: str, user: str, team: str, channel: str, command: str = "/kb") -> str:
    return urlencode({"team_id": team, "team_domain": "local", "channel_id": channel, "channel_name": "local",
                      "user_id": user, "user_name": "local", "command": command, "text": text,
                      "response_url": response_url, "trigger_id": f"{time.time_ns()}.local", "api_app_id": "ALOCAL"})  # fmt: skip


#: What ``press`` shows for a Share pressed again on the same answer and page, when (as the server does since round
#: 22) nothing is posted for it.
REPEATED_SHARE = "(already shared from this answer: nothing posted again)"


def interaction_form(
    button: dict[str, Any], response_url: str, user: str, team: str, channel: str, message_ts: str = ""
) -> str:
    """A button press as Slack posts it; ``message_ts``: the answer message the button is on (Slack sends it in
    ``container``: the deployed Share posts once per message and page by it)."""
    action = {"type": "button", "action_id": button["action_id"], "block_id": "kb_answer",
              "text": button.get("text"), "action_ts": f"{time.time():.6f}"}  # fmt: skip
    if "value" in button:
        action["value"] = button["value"]
    container: dict[str, Any] = {"type": "message", "is_ephemeral": True}
    if message_ts:
        container["message_ts"] = message_ts
    payload = {"type": "block_actions", "user": {"id": user, "team_id": team}, "team": {"id": team},
               "channel": {"id": channel}, "container": container,
               "api_app_id": "ALOCAL", "trigger_id": f"{time.time_ns()}.local", "response_url": response_url,
               "actions": [action]}  # fmt: skip
    return urlencode({"payload": json.dumps(payload, ensure_ascii=False)})


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The buttons of an answer by action id (the actions block and each hit's Open)."""
    found: dict[str, dict[str, Any]] = {}
    for block in message.get("blocks") or []:
        for element in [*block.get("elements", []), block.get("accessory") or {}]:
            if isinstance(element, dict) and element.get("type") == "button":
                found[element["action_id"]] = element
    return found


_MRKDWN_LINK = re.compile(r"<([^<>|]+)\|([^<>]*)>|<([^<>|]+)>")
_MRKDWN_ENTITY = re.compile(r"&(amp|lt|gt);")


def _shown(text: dict[str, Any]) -> str:
    """A text object as Slack shows it: mrkdwn's links (``<url|label>``: the label and the URL, ``<@U123>``: as
    written) and its three escapes (``&amp;``, ``&lt;``, ``&gt;``) read; the terminal showed `R&amp;D` and `a
    &gt; b` where Slack shows `R&D` and `a > b`."""
    value = str(text.get("text", ""))
    if text.get("type") != "mrkdwn":
        return value

    def link(m: re.Match[str]) -> str:
        if m[3] is not None:
            return m[3] if "://" in m[3] or m[3].startswith("mailto:") else m[0]
        return f"{m[2]} ({m[1]})" if m[2] and m[2] != m[1] else m[1]

    value = _MRKDWN_LINK.sub(link, value)
    return _MRKDWN_ENTITY.sub(lambda m: {"amp": "&", "lt": "<", "gt": ">"}[m[1]], value)


def as_text(message: dict[str, Any]) -> str:
    """An answer as a terminal shows it: block texts in order, as Slack shows them, buttons as [labels]."""
    lines: list[str] = []
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind in ("header", "section"):
            lines.append(_shown(block["text"]))
        elif kind == "context":
            lines.append("  " + " · ".join(_shown(e) for e in block.get("elements", [])))
        elif kind == "divider":
            lines.append("")
        elif kind == "actions":
            lines.append(" ".join(f"[{e['text']['text']}: {e['action_id']}]" for e in block.get("elements", [])))
        if isinstance(block.get("accessory"), dict) and block["accessory"].get("url"):
            lines.append(f"  [Open: {block['accessory']['url']}]")
    return "\n".join(lines) if lines else str(message.get("text", ""))


#: What a server needs to post answers to ``kbsearch slack``'s loopback response_url.
RESPONSE_HOSTS_HINT = "SLACK_RESPONSE_HOSTS=127.0.0.1"
#: When ``kbsearch slack`` says why an answer may not come (a local search answers within a second or two).
HINT_AFTER_S = 5.0


@dataclass
class LocalSlack:
    """Slack's side of the conversation: signed requests out, answers in (on a loopback response_url)."""

    api: str
    secret: str
    user: str = "U0LOCAL"
    team: str = "T0LOCAL"
    channel: str = "C0LOCAL"
    timeout_s: float = 60.0
    hook: FakeEndpoint = field(default_factory=FakeEndpoint)
    #: told once when an answer is slow to come (the likely cause), while the wait goes on
    on_wait: Callable[[str], None] | None = None
    #: the answer message's ts, as Slack gives each message one (More replaces the message and keeps it)
    message_ts: str = ""
    #: (message ts, button value) of each Share pressed: the server posts a second one nothing
    shared: set[tuple[str, str]] = field(default_factory=set)
    #: how long a repeated Share waits for a post before saying none came (the server posts nothing for it)
    repeat_grace_s: float = 3.0

    def __enter__(self) -> LocalSlack:
        self.hook.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hook.stop()

    @property
    def response_url(self) -> str:
        return self.hook.url + "/response"

    def _post(self, path: str, body: str) -> httpx.Response:
        url = self.api.rstrip("/") + path
        try:
            return httpx.post(url, content=body, headers=signed_headers(self.secret, body), timeout=30)
        except httpx.ConnectError as exc:  # nothing listening there: most likely no server started yet
            # a run that failed (exit 1, README's rule), not a usage error (2): a ConnectionError is an OSError
            raise ConnectionError(
                f"cannot reach {url}: {exc}; is a kbsearch serve running there? Start one with "
                "SLACK_SIGNING_SECRET (the same value) and SLACK_RESPONSE_HOSTS=127.0.0.1 set, or pass --api URL"
            ) from None
        except httpx.HTTPError as exc:
            raise ConnectionError(f"cannot reach {url}: {exc}") from None

    def _refused(self, path: str, reply: httpx.Response) -> KbSearchError:
        """The server's refusal, and what to do when it is the pair's setting: a server with no signing secret
        (503 ``slack_not_configured``: a ``kbsearch serve`` started without it) or another one (401 "signature
        mismatch") was shown as its bare JSON, the setting to change left to the reader."""
        said = f"{path} answered {reply.status_code}: {reply.text[:300]}"
        try:
            body = reply.json()
        except ValueError:  # not JSON: an HTML error page of something else listening there
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if reply.status_code == 503 and error == "slack_not_configured":
            said += (f"; the server at {self.api} has no SLACK_SIGNING_SECRET: restart it with SLACK_SIGNING_SECRET "
                     f"(the same value as here) and {RESPONSE_HOSTS_HINT} set")  # fmt: skip
        elif reply.status_code == 401 and error == "unauthorized":
            said += (f"; the server at {self.api} checks another SLACK_SIGNING_SECRET than the one set here: give "
                     "both the same value")  # fmt: skip
        return KbSearchError(said)

    def _next_post(self, before: int) -> dict[str, Any]:
        posted = self._post_within(before, None)
        assert posted is not None  # without a limit of its own, only the client's timeout (an error) ends the wait
        return posted

    def _post_within(self, before: int, timeout_s: float | None) -> dict[str, Any] | None:
        """The next post on the response_url; None when none came within ``timeout_s``."""
        started = time.monotonic()
        told = self.on_wait is None
        while len(self.hook.requests) <= before:
            waited = time.monotonic() - started
            if timeout_s is not None and waited > timeout_s:
                return None
            if waited > self.timeout_s:
                raise KbSearchError(f"no answer on the response_url within {self.timeout_s:.0f} s (does the "
                                    f"server have {RESPONSE_HOSTS_HINT}?)")  # fmt: skip
            if not told and waited > HINT_AFTER_S and self.on_wait is not None:
                told = True  # a terminal silent for a minute, the cause named only at its end
                self.on_wait(f"no answer yet after {HINT_AFTER_S:.0f} s; waiting up to {self.timeout_s:.0f} s. A "
                             f"server without {RESPONSE_HOSTS_HINT} never sends one (it logs 'response_url "
                             "rejected')")  # fmt: skip
            time.sleep(0.05)
        body = self.hook.requests[before].body
        return body if isinstance(body, dict) else {"text": str(body)}

    def command(self, text: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Send ``/kb text``; the acknowledgement and, when the command searches, the answer."""
        before = len(self.hook.requests)
        reply = self._post("/slack/command", command_form(text, self.response_url, self.user, self.team, self.channel))
        if reply.status_code != 200:
            raise self._refused("/slack/command", reply)
        ack = reply.json()
        intent = slack.parse_text(slack.parse_command(command_form(text, "", "", "", "").encode()).text)
        if intent.kind != "search" or ack.get("text") != slack.ack(intent)["text"]:
            return ack, None  # help, usage or an apology (the hand-off failed), in the question's language: no worker
        answer = self._next_post(before)
        self.message_ts = f"{time.time():.6f}"  # the answer is a message of its own now
        return ack, answer

    def press(self, action_id: str, answer: dict[str, Any]) -> dict[str, Any] | None:
        """Press a button of ``answer``; what the worker posts back (None for an Open button)."""
        found = buttons(answer)
        if action_id not in found:
            # an Open button is a note's link: the server makes one only with a pattern for it (README lists them)
            why = ("; an Open button is a note's link, made when the server has KB_NOTE_URL_PATTERN set (e.g. "
                   "https://wiki.example.com/kb/{path})") if action_id.startswith("kb_open_") else ""  # fmt: skip
            raise KbSearchError(f"the answer has no {action_id} button (it has: {', '.join(found) or 'none'}){why}")
        before = len(self.hook.requests)
        button = found[action_id]
        form = interaction_form(button, self.response_url, self.user, self.team, self.channel, self.message_ts)
        reply = self._post("/slack/interactive", form)
        if reply.status_code != 200:
            raise self._refused("/slack/interactive", reply)
        if "url" in button:
            return None
        share = (self.message_ts, str(button.get("value", ""))) if action_id == "kb_share" else None
        if share is not None and share in self.shared:  # posted once already: the server posts nothing now
            posted = self._post_within(before, self.repeat_grace_s)
            return posted if posted is not None else {"text": REPEATED_SHARE}
        if share is not None:
            self.shared.add(share)
        return self._next_post(before)


def signed_curl(
    api: str, secret: str, text: str, response_url: str, user: str = "U0LOCAL", team: str = "T0LOCAL",
    channel: str = "C0LOCAL",
) -> str:  # fmt: skip
    """A curl command that sends ``/kb text`` signed (valid for Slack's 5 minutes), as ``user`` in ``channel`` of
    ``team`` (it signed as U0LOCAL whatever ``--user`` said)."""
    body = command_form(text, response_url, user, team, channel)
    headers = signed_headers(secret, body)
    parts = ["curl", "-sS", api.rstrip("/") + "/slack/command"]
    for name, value in headers.items():
        parts += ["-H", f"{name}: {value}"]
    parts += ["--data-binary", body]
    return " ".join(shlex.quote(p) for p in parts)
