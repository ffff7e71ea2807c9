"""The Slack worker: run the search for a slash command and post Block Kit to its ``response_url``.

Runs in ``SlackWorkerFunction`` (invoked asynchronously by the acknowledgement) or, locally, in a thread of
``kbsearch serve``. Each command is answered at most once: the request key is claimed before posting and
released if posting fails, so a retried delivery posts exactly one answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from kbsearch.access import Scope
from kbsearch.config import Settings
from kbsearch.errors import KbSearchError
from kbsearch.providers.resilience import Deadline, Outbound, ProviderError, RetryPolicy, send
from kbsearch.schemas import MAX_QUERY_CHARS, SearchRequest
from kbsearch.slack import HELP_TEXT, SlashCommand, allowed_response_url, apology, parse_text, render_answer

if TYPE_CHECKING:
    from kbsearch.search import SearchService

logger = logging.getLogger(__name__)


class SlackPostError(KbSearchError):
    """``response_url`` did not take the answer (after retries)."""


class Deduper(Protocol):
    def claim(self, key: str) -> bool: ...

    def release(self, key: str) -> None: ...


class MemoryDeduper:
    """One process (``kbsearch serve``): a set of claimed keys."""

    def __init__(self) -> None:
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, key: str) -> bool:
        with self._lock:
            if key in self._keys:
                return False
            self._keys.add(key)
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._keys.discard(key)


class DynamoDeduper:
    """Across Lambda invocations: a conditional put on a DynamoDB table (``pk`` key, ``expires_at`` TTL)."""

    def __init__(self, table: str, client: Any = None, ttl_s: int = 86_400) -> None:
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.table = table
        self.client = client
        self.ttl_s = ttl_s

    def claim(self, key: str) -> bool:
        try:
            self.client.put_item(
                TableName=self.table,
                Item={"pk": {"S": key}, "expires_at": {"N": str(int(time.time()) + self.ttl_s)}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def release(self, key: str) -> None:
        self.client.delete_item(TableName=self.table, Key={"pk": {"S": key}})


def post_to_slack(
    client: httpx.Client,
    url: str,
    payload: dict[str, Any],
    attempts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
) -> None:
    """POST JSON to a response_url under the shared outbound policy: connection errors, timeouts, 429 and 5xx
    are retried with backoff (5 s a try, 30 s in all unless ``deadline`` is sooner); other 4xx give up."""
    policy = RetryPolicy(attempts=attempts, base_delay_s=0.5, max_delay_s=4.0, timeout_s=5.0)
    call = Outbound("slack", "POST", url, payload, expect_json=False, max_bytes=64 * 1024)
    try:
        send(client, call, policy, (deadline or Deadline()).within(30.0), sleep)
    except ProviderError as exc:
        if exc.kind in {"client", "auth"}:
            raise SlackPostError(f"response_url refused the answer (HTTP {exc.status})") from None
        raise SlackPostError(f"response_url did not take the answer ({exc.kind})") from None


SlackScope = Callable[[str, str, str | None, bool], Scope]


def _public_only(team: str, channel: str, _user: str | None, _share: bool) -> Scope:
    return Scope.public(f"slack:{team}/{channel}")


def handle_job(
    job: dict[str, Any],
    service: Callable[[], SearchService],
    deduper: Deduper,
    client: httpx.Client,
    settings: Settings,
    deadline: Deadline | None = None,
    scope_for: SlackScope | None = None,
) -> str:
    """Answer one slash command within ``deadline`` (the invocation's remaining time). Returns ``posted``,
    ``duplicate`` or ``rejected``; raises SlackPostError. ``scope_for(team, channel, user, share)``: the caller's
    scope (default: ``public`` only); an answer shared into the channel is searched with the channel's scope."""
    deadline = deadline or Deadline()
    command = SlashCommand.from_job(job)
    hosts = tuple(h.strip() for h in settings.slack_response_hosts.split(",") if h.strip())
    if not allowed_response_url(command.response_url, hosts):
        logger.error("response_url rejected", extra={"host": command.response_url.split("/")[2:3]})
        return "rejected"
    if not deduper.claim(command.request_key):
        logger.info("duplicate delivery ignored", extra={"request_key": command.request_key})
        return "duplicate"
    intent = parse_text(command.text)
    if intent.kind == "help":
        payload: dict[str, Any] = {"response_type": "ephemeral", "text": HELP_TEXT}
    else:
        try:
            request = SearchRequest(query=intent.query[:MAX_QUERY_CHARS], top_k=settings.slack_top_k)
            who = scope_for or _public_only
            answer = service().search(
                request, remaining_s=deadline.remaining() if deadline.at else None,
                scope=lambda _t: who(command.team_id, command.channel_id, command.user_id, intent.share),
            )  # fmt: skip
        except Exception:
            logger.exception("search for Slack failed")
            payload = apology(intent.query)
        else:
            payload = render_answer(answer, intent.share, settings.kb_base_url or None)
    try:
        post_to_slack(client, command.response_url, payload, deadline=deadline)
    except SlackPostError:
        deduper.release(command.request_key)  # let a retried delivery try again
        raise
    return "posted"
