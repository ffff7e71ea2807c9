"""SlackWorkerFunction: {"slack_job": {...}} (async invoke from the acknowledgement) → kbsearch.slack_worker.

Raises when the answer could not be posted, so Lambda retries the delivery (the request key is released first;
an answer that was posted is never posted twice) and, after its retries, sends it to the failure destination.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from kbsearch.config import Secrets, load_handler_settings
from kbsearch.providers.resilience import shared_client
from kbsearch.slack_worker import Deduper, DynamoDeduper, MemoryDeduper, handle_job

if TYPE_CHECKING:
    from kbsearch.search import SearchService

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"kbsearch"})
settings, config_problem = load_handler_settings()  # never raises at import; a job then logs it and apologises
secrets = Secrets(settings)
deduper: Deduper = DynamoDeduper(settings.slack_dedupe_table) if settings.slack_dedupe_table else MemoryDeduper()
_service: SearchService | None = None


def service() -> SearchService:
    global _service  # noqa: PLW0603 - one per container
    if config_problem is not None:
        raise config_problem
    if _service is None:
        from kbsearch.search import SearchService

        _service = SearchService(settings, secrets)
    return _service


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job = event.get("slack_job") if isinstance(event, dict) else None
    if not isinstance(job, dict):
        logger.error("event without slack_job; nothing to do")
        return {"status": "ignored"}
    status = handle_job(job, service, deduper, shared_client(), settings)
    logger.info("slack job done", extra={"status": status})
    return {"status": status}
