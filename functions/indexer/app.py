"""IndexerFunction: scheduled event → kbsearch.indexer.run_sync. Translation only.

Event (EventBridge Scheduler input, or an EventBridge rule event with the same keys under ``detail``):
``{"full": false, "allow_mass_delete": false, "rebuild": false}`` (``rebuild``: a new collection behind the
alias, switched when complete; see ``kbsearch index --rebuild``). Returns the sync report. A run that could not
list the KB, embed or write the index, or that is not configured, raises after logging its report, so the failure reaches the
OnFailure destination and its alarm. A run that finds another holding the index lease touches nothing and returns
``{"status": "skipped", "reason": "another run holds the lease", ...}``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from kbsearch.api.container import Container
from kbsearch.errors import KbSearchError
from kbsearch.indexer import run_sync
from kbsearch.lease import SKIPPED, LeaseHeld
from kbsearch.providers.resilience import Deadline

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"kbsearch"})
metrics = Metrics()
container = Container("KB_SOURCE")  # never raises at import; each run reports the problem
settings, secrets, config_problem = container.settings, container.secrets, container.config_problem

COUNTS = (
    "added", "updated", "deleted", "unchanged", "attachments_ignored", "chunks_upserted", "chunks_deleted",
    "embedding_calls", "embedding_tokens", "embedding_fallbacks",
)  # fmt: skip


class IndexerRunError(KbSearchError):
    """The run failed (listing or embedding); the report was logged."""


def _flag(event: dict[str, Any], name: str) -> bool:
    detail = event.get("detail")
    value = event.get(name, detail.get(name, False) if isinstance(detail, dict) else False)
    return value is True or (isinstance(value, str) and value.lower() == "true")


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    event = event if isinstance(event, dict) else {}
    if config_problem is not None:
        logger.error("indexer not configured", extra={"error": str(config_problem)})
        metrics.add_metric(name="not_configured", unit=MetricUnit.Count, value=1)
        raise IndexerRunError(str(config_problem))
    remaining_s = context.get_remaining_time_in_millis() / 1000
    try:
        report = run_sync(
            settings,
            secrets,
            full=_flag(event, "full"),
            allow_mass_delete=_flag(event, "allow_mass_delete"),
            rebuild=_flag(event, "rebuild"),
            stop_at=Deadline(remaining_s - settings.deadline_margin_s),
            call_deadline=Deadline(remaining_s - 5),
        ).to_dict()
    except LeaseHeld as held:
        logger.info("sync skipped", extra={"reason": SKIPPED, "holder": held.holder, "expires_at": held.expires_at})
        metrics.add_metric(name="lease_skipped", unit=MetricUnit.Count, value=1)
        return {"status": "skipped", "reason": SKIPPED, "holder": held.holder, "expires_at": held.expires_at}
    for name in COUNTS:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=report[name])
    metrics.add_metric(name="skipped", unit=MetricUnit.Count, value=len(report["skipped"]))
    metrics.add_metric(name="warnings", unit=MetricUnit.Count, value=len(report["warnings"]))
    metrics.add_metric(name="incomplete", unit=MetricUnit.Count, value=int(report["incomplete"]))
    metrics.add_metric(name="duration", unit=MetricUnit.Milliseconds, value=report["duration_ms"])
    logger.info("sync finished", extra={k: v for k, v in report.items() if k not in ("skipped", "warnings")})
    if report["error"]:
        raise IndexerRunError(report["error"])
    return report
