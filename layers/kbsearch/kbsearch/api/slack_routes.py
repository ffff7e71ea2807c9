"""``POST /slack/command`` and ``POST /slack/interactive`` (buttons): verify Slack's signature over the raw bytes,
refuse replays, acknowledge at once and hand the work off (an asynchronous invoke of the worker in Lambda, a thread
locally)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from kbsearch.api import body
from kbsearch.api.container import Container
from kbsearch.api.responses import error
from kbsearch.config import running_in_lambda
from kbsearch.errors import KbSearchError

if TYPE_CHECKING:
    from kbsearch import slack

logger = logging.getLogger(__name__)


class SlackEdge:
    """The per-container pieces of the Slack acknowledgement, built on first use."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self._handoff: Callable[[dict[str, Any]], None] | None = None
        self._seen: slack.SeenSignatures | None = None
        self._lock = threading.Lock()

    def handoff(self) -> Callable[[dict[str, Any]], None]:
        """Lambda: an asynchronous invoke of the worker function. Locally: a thread running the same worker code
        against this process's search service (one embedded store client per process)."""
        with self._lock:
            if self._handoff is None:
                from kbsearch.api.handoff import LambdaHandoff, ThreadHandoff

                settings = self.container.settings
                if running_in_lambda() and settings.slack_worker_function:
                    self._handoff = LambdaHandoff(settings.slack_worker_function)
                else:
                    from kbsearch.feedback import open_feedback_store
                    from kbsearch.providers.resilience import shared_client
                    from kbsearch.slack_worker import MemoryDeduper, handle_job

                    deduper, service, scope = MemoryDeduper(), self.container.search, self.container.slack_scope
                    votes = open_feedback_store(settings.slack_feedback_table, settings.slack_feedback_file)
                    self._handoff = ThreadHandoff(
                        lambda job: handle_job(
                            job, service, deduper, shared_client(), settings, feedback=votes, scope_for=scope
                        )
                    )
            return self._handoff

    def seen(self) -> slack.SeenSignatures:
        """Signatures already accepted: the Slack DynamoDB table in Lambda (shared by every container), memory
        locally."""
        with self._lock:
            if self._seen is None:
                from kbsearch import slack

                table = self.container.settings.slack_dedupe_table
                if table:
                    from kbsearch.slack_worker import DynamoDeduper

                    self._seen = DynamoDeduper(table, ttl_s=slack.REPLAY_WINDOW_S)
                else:
                    self._seen = slack.MemorySeenSignatures()
            return self._seen


#: The longest a request whose signature does not verify waits for the signing secret read again from SSM: Slack
#: gives up on an answer after 3 s.
REREAD_S = 1.5


def slack_router(container: Container) -> Router:
    router = Router()
    edge = SlackEdge(container)

    def verified() -> tuple[str, bytes] | Response[Any]:
        """The signing secret and the raw body once Slack's signature over it checks out and it was not seen
        before; else the 401 (or a 503: no signing secret, or the store of seen signatures is down). Commands and
        interactions share this one check."""
        from kbsearch import slack

        began = time.monotonic()
        secret = container.secrets.get("SLACK_SIGNING_SECRET")
        if not secret:
            logger.error("SLACK_SIGNING_SECRET is not configured")
            # the setting's name (never a value): only the server's log named it, not what the caller is shown
            return error(503, "slack_not_configured", "the Slack signing secret is not configured: set "
                         "SLACK_SIGNING_SECRET (deployed: the stage's slack-signing-secret SSM parameter)")  # fmt: skip
        event = router.current_event
        headers = dict(event.headers or {})
        raw = body.raw_bytes(event.raw_event)  # the exact bytes Slack signed: checked before anything decodes them
        try:
            try:
                slack.verify(secret, headers, raw)
            except slack.SlackAuthError as exc:
                # the secret regenerated in Slack and stored in SSM: read it again (at most every 15 s), not at the
                # cache's end (SECRETS_TTL_S): every command was a 401 meanwhile; within Slack's 3 s for an answer
                again = container.secrets.reread("SLACK_SIGNING_SECRET", REREAD_S, began) if exc.mismatch else None
                if not again or again == secret:
                    raise
                slack.verify(again, headers, raw)
                secret = again
            slack.reject_replay(edge.seen(), headers)  # only signatures that verified reach the store
        except slack.SlackAuthError as exc:
            logger.warning("Slack request rejected", extra={"reason": str(exc)})
            return error(401, "unauthorized", str(exc))
        except Exception:
            logger.exception("the store of seen Slack signatures failed")
            return error(503, "slack_unavailable", "cannot check this request right now; try again shortly")
        return secret, raw

    @router.post("/slack/command", include_in_schema=False)
    def slack_command() -> Response[Any]:
        from kbsearch import slack

        checked = verified()
        if isinstance(checked, Response):
            return checked
        _secret, raw = checked
        try:
            command = slack.parse_command(raw)
        except KbSearchError as exc:
            return error(400, "bad_request", str(exc))
        if slack.is_ssl_check(raw):  # Slack checking the certificate of the command's URL: nothing to run
            return Response(200, content_types.TEXT_PLAIN, "")
        answered = container.settings.slack_command_names
        if command.command.strip().lower() not in answered:  # another app's command sent to this URL: no search
            logger.warning("Slack command not configured", extra={"command": command.command[:100]})
            names = ", ".join(sorted(answered))
            return error(400, "unknown_command", f"this app answers {names} (SLACK_COMMANDS), not that command")
        intent = slack.parse_text(command.text)
        if intent.kind == "search":
            try:
                edge.handoff()(command.to_job())
            except Exception:
                logger.exception("Slack hand-off failed")
                return Response(200, content_types.APPLICATION_JSON, slack.apology(intent.query))
        return Response(200, content_types.APPLICATION_JSON, slack.ack(intent, command.command.strip()))

    @router.post("/slack/interactive", include_in_schema=False)
    def slack_interactive() -> Response[Any]:
        """A button press: verified and replay-checked like a command, acknowledged with an empty 200 at once; the
        worker does the rest (and answers each press once)."""
        from kbsearch import slack

        checked = verified()
        if isinstance(checked, Response):
            return checked
        secret, raw = checked
        try:
            interaction = slack.parse_interaction(raw)
        except KbSearchError as exc:
            return error(400, "bad_request", str(exc))
        if interaction is not None:
            job = interaction.to_job()
            if interaction.action_id in ("kb_vote_up", "kb_vote_down"):
                job["voter"] = slack.voter_hash(secret, interaction.team_id, interaction.user_id)
            try:
                edge.handoff()(job)
            except Exception:
                logger.exception("Slack hand-off failed")
                return error(503, "slack_unavailable", "cannot act on this button right now; try again shortly")
        return Response(200, content_types.TEXT_PLAIN, "")

    return router
