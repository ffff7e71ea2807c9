"""SlackWorkerFunction: {"slack_job": {...}} (async invoke from the acknowledgement of a command or a button)
→ kbsearch.slack_worker.

Raises when the answer could not be posted, so Lambda retries the delivery (the request key is released first;
an answer that was posted is never posted twice) and, after its retries, sends it to the failure destination.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from kbsearch.api.container import Container
from kbsearch.feedback import open_feedback_store
from kbsearch.logcontext import invocation_context
from kbsearch.providers.resilience import Deadline, shared_client
from kbsearch.slack_worker import Deduper, DynamoDeduper, MemoryDeduper, handle_job

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"kbsearch"})
container = Container()  # never raises at import; a job then logs the problem and apologises
settings = container.settings
deduper: Deduper = DynamoDeduper(settings.slack_dedupe_table) if settings.slack_dedupe_table else MemoryDeduper()
feedback = open_feedback_store(settings.slack_feedback_table, settings.slack_feedback_file)


@invocation_context(logger)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job = event.get("slack_job") if isinstance(event, dict) else None
    if not isinstance(job, dict):
        logger.error("event without slack_job; nothing to do")
        return {"status": "ignored"}
    deadline = Deadline(context.get_remaining_time_in_millis() / 1000 - 2)
    status = handle_job(job, container.search, deduper, shared_client(), settings, deadline, feedback,
                        scope_for=container.slack_scope)  # fmt: skip
    logger.info("slack job done", extra={"status": status})
    return {"status": status}
