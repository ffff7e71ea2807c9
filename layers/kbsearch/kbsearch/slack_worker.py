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
from kbsearch.errors import IndexUnavailable, KbSearchError
from kbsearch.feedback import FeedbackStore, open_feedback_store, vote_record
from kbsearch.providers.resilience import Deadline, Outbound, ProviderError, RetryPolicy, send
from kbsearch.schemas import MAX_QUERY_CHARS, SearchFilters, SearchRequest, SearchResponse
from kbsearch.slack import Interaction, SlashCommand, ack, allowed_response_url, apology, parse_text
from kbsearch.slack_render import ACTION_MORE, ACTION_SHARE, ACTION_UP, AnswerState, View, render_answer, url_pattern
from kbsearch.slack_words import block_language, language_of, say, unheld_sentence

if TYPE_CHECKING:
    from kbsearch.search import SearchService

logger = logging.getLogger(__name__)


class SlackPostError(KbSearchError):
    """``response_url`` did not take the answer (after retries). ``permanent``: Slack refused it (4xx)."""

    def __init__(self, message: str, status: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent


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
            raise SlackPostError(f"response_url refused the answer (HTTP {exc.status})", exc.status, True) from None
        raise SlackPostError(f"response_url did not take the answer ({exc.kind})") from None


SlackScope = Callable[[str, str, str | None, bool], Scope]


def _public_only(team: str, channel: str, _user: str | None, _share: bool) -> Scope:
    return Scope.public(f"slack:{team}/{channel}")


def slack_search(
    service: Callable[[], SearchService],
    state: AnswerState,
    view: View,
    deadline: Deadline,
    scope: Scope | Callable[[float], Scope],
) -> SearchResponse:
    """The one search call behind every Slack answer (a command, Share, More, a vote that lost its hits), within
    the caller's ``scope`` (an answer shared into the channel: the channel's)."""
    request = SearchRequest(
        query=state.query[:MAX_QUERY_CHARS], top_k=view.top_k, filters=SearchFilters.model_validate(state.filters)
    )
    return service().search(request, remaining_s=deadline.remaining() if deadline.at else None, scope=scope)


def answer_view(settings: Settings, **kwargs: Any) -> View:
    """How this deployment shows answers: hits per page, links to notes, the slash command its tips name (a
    button's answer: the first of ``SLACK_COMMANDS``); ``kwargs`` set the rest."""
    pattern = url_pattern(settings.kb_note_url_pattern, settings.kb_base_url)
    kwargs.setdefault("command", _first_command(settings))
    return View(per_page=settings.slack_top_k, url_pattern=pattern, **kwargs)


def _first_command(settings: Settings) -> str:
    """The app's slash command as ``SLACK_COMMANDS`` names it first (``/kb`` by default)."""
    return next((name.strip() for name in settings.slack_commands.split(",") if name.strip()), "/kb")


def handle_job(
    job: dict[str, Any],
    service: Callable[[], SearchService],
    deduper: Deduper,
    client: httpx.Client,
    settings: Settings,
    deadline: Deadline | None = None,
    feedback: FeedbackStore | None = None,
    scope_for: SlackScope | None = None,
) -> str:
    """Answer one slash command or one button press within ``deadline`` (the invocation's remaining time).
    Returns ``posted``, ``duplicate``, ``rejected`` or ``expired`` (Slack refused the post: the response_url is
    spent or expired, and retrying cannot help); raises SlackPostError when a retry may succeed.
    ``scope_for(team, channel, user, share)``: the caller's scope (default: ``public`` only); an answer shared
    into the channel is searched with the channel's scope."""
    deadline = deadline or Deadline()
    if job.get("kind") == "action":
        action = Interaction.from_job(job)
        return handle_action(action, service, deduper, client, settings, deadline, feedback, scope_for)
    command = SlashCommand.from_job(job)
    if not _allowed(command.response_url, settings):
        return "rejected"
    if not deduper.claim(command.request_key):
        logger.info("duplicate delivery ignored", extra={"request_key": command.request_key})
        return "duplicate"
    intent = parse_text(command.text)
    if intent.kind != "search":
        payload: dict[str, Any] = ack(intent, command.command.strip())
    else:
        state = AnswerState(intent.query, intent.filters)
        view = answer_view(settings, share=intent.share, asked_by=command.user_id, filters=intent.filters,
                           language=intent.language, command=command.command.strip())  # fmt: skip
        who = scope_for or _public_only
        # resolved inside the search's budget, after its secrets are read (the caller mapping comes with them)
        scope = lambda _t: who(command.team_id, command.channel_id, command.user_id, intent.share)  # noqa: E731
        payload = _answer(service, state, view, deadline, scope)
    return _deliver(client, command.response_url, payload, deduper, command.request_key, deadline)


def _allowed(url: str, settings: Settings) -> bool:
    hosts = tuple(h.strip() for h in settings.slack_response_hosts.split(",") if h.strip())
    if allowed_response_url(url, hosts):
        return True
    logger.error("response_url rejected", extra={"host": url.split("/")[2:3]})
    return False


def _answer(
    service: Callable[[], SearchService],
    state: AnswerState,
    view: View,
    deadline: Deadline,
    scope: Scope | Callable[[float], Scope],
) -> dict[str, Any]:
    try:
        answer = slack_search(service, state, view, deadline, scope)
    except IndexUnavailable as exc:  # known (not built, held, Qdrant down): one line, as the API's 503 logs it
        logger.error("search for Slack failed: index unavailable", extra={"error": str(exc)})
        return apology(state.query)
    except Exception:
        logger.exception("search for Slack failed")
        return apology(state.query)
    return render_answer(answer, view, _unheld(service, state, view, deadline, scope) if not answer.results else ())


#: The ``/kb`` word of each filter :class:`~kbsearch.browse.UnheldFilter` names.
_FILTER_WORDS = {"tag": "tag:", "type": "type:", "status": "status:", "folder": "in:"}


def _unheld(
    service: Callable[[], SearchService],
    state: AnswerState,
    view: View,
    deadline: Deadline,
    scope: Scope | Callable[[float], Scope],
) -> list[str]:
    """For an answer with no hits: each filter value no note the caller may read holds (``tag:runbok``), with the
    one meant, in the answer's language; it was "No notes found" and "fewer filters" alone (walk34). Within the caller's scope (the
    channel's for a share), so a value only notes it may not read hold is never named; nothing past page one. Not
    for a share: it searched with the channel's scope, so it told an `hr` user, whose own `/kb tag:hr` had just shown
    an `hr` note, "No note has the tag 'hr' (tag:)" (rev34b); the share's answer says what a share holds instead."""
    from kbsearch.browse import BrowseService

    if view.page or view.share or not state.filters:
        return []
    try:
        caller = scope(max(0.05, deadline.remaining())) if callable(scope) else scope
        filters = SearchFilters.model_validate(state.filters)
        unheld_ = BrowseService.over_index(service()).unheld_filters(filters, caller, deadline)
    except Exception:  # a hint is never worth the answer
        logger.exception("the unheld filters of a Slack answer could not be read")
        return []
    return [unheld_sentence(view.language, filter_, _FILTER_WORDS[filter_.what]) for filter_ in unheld_]


def _deliver(
    client: httpx.Client, url: str, payload: dict[str, Any], deduper: Deduper, key: str, deadline: Deadline
) -> str:
    try:
        post_to_slack(client, url, payload, deadline=deadline)
    except SlackPostError as exc:
        if exc.permanent:  # 4xx: the response_url is used up or expired (30 min); a retry would only fail again
            logger.warning("response_url refused the answer; not retrying", extra={"status": exc.status})
            return "expired"
        deduper.release(key)  # let a retried delivery try again
        raise
    return "posted"


def handle_action(
    interaction: Interaction,
    service: Callable[[], SearchService],
    deduper: Deduper,
    client: httpx.Client,
    settings: Settings,
    deadline: Deadline,
    feedback: FeedbackStore | None = None,
    scope_for: SlackScope | None = None,
) -> str:
    """One button press, at most once (Slack's retries share ``action_ts`` + ``action_id`` + user): Share posts
    the same answer to the channel (searched with the channel's scope), More replaces the answer with its next
    page, 👍/👎 store a vote (More and a vote that lost its hits search with the presser's scope)."""
    if not _allowed(interaction.response_url, settings):
        return "rejected"
    key = interaction.request_key
    if not deduper.claim(key):
        logger.info("duplicate button press ignored", extra={"action": interaction.action_id})
        return "duplicate"
    try:
        state = AnswerState.decode(interaction.value)
    except ValueError:
        logger.warning("button value not understood", extra={"action": interaction.action_id})
        # no question to judge a language by: the answer's, as its block names it (else each language)
        lang = block_language(interaction.block_id)
        payload: dict[str, Any] = {"response_type": "ephemeral", "replace_original": False,
                                   "text": say(lang, "stale_button", command=_first_command(settings))}  # fmt: skip
        return _deliver(client, interaction.response_url, payload, deduper, key, deadline)
    share = interaction.action_id == ACTION_SHARE
    lang = language_of(state.query)  # the answer the button is on was said in its question's language
    who = scope_for or _public_only
    scope = lambda _t: who(interaction.team_id, interaction.channel_id, interaction.user_id, share)  # noqa: E731
    if share:
        view = answer_view(settings, share=True, asked_by=interaction.user_id, page=state.page, filters=state.filters,
                           language=lang)  # fmt: skip
        payload = _answer(service, state, view, deadline, scope)
    elif interaction.action_id == ACTION_MORE:
        view = answer_view(settings, page=state.page, filters=state.filters, language=lang)
        payload = _answer(service, state, view, deadline, scope)
        payload["replace_original"] = payload.get("response_type") == "ephemeral" and "blocks" in payload
    else:
        payload = _vote(interaction, state, service, settings, deadline, feedback, scope)
    return _deliver(client, interaction.response_url, payload, deduper, key, deadline)


def _vote(
    interaction: Interaction,
    state: AnswerState,
    service: Callable[[], SearchService],
    settings: Settings,
    deadline: Deadline,
    feedback: FeedbackStore | None,
    scope: Scope | Callable[[float], Scope],
) -> dict[str, Any]:
    vote = "up" if interaction.action_id == ACTION_UP else "down"
    view = answer_view(settings, page=state.page, filters=state.filters)
    paths = list(state.hits)
    try:
        if not paths:  # the button could not carry them (long paths): the same search finds them again
            answer = slack_search(service, state, view, deadline, scope)
            start = state.page * view.per_page
            paths = [h.path for h in answer.results[start : start + view.per_page]]
        record = vote_record(state.query, state.filters, state.page, paths, state.page * view.per_page + 1, vote,
                             interaction.voter or "anonymous")  # fmt: skip
        store = feedback or open_feedback_store(settings.slack_feedback_table, settings.slack_feedback_file)
        store.put(record)
    except Exception:
        logger.exception("the vote could not be stored")
        text = say(language_of(state.query), "vote_failed")
    else:
        logger.info("vote stored", extra={"vote": vote, "hits": len(paths)})
        text = say(language_of(state.query), "thanks_up" if vote == "up" else "thanks_down")
    return {"response_type": "ephemeral", "replace_original": False, "text": text}
