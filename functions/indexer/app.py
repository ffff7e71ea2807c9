"""IndexerFunction: scheduled event → kbsearch.indexer.run_sync. Translation only.

Event (EventBridge Scheduler input, or an EventBridge rule event with the same keys under ``detail``):
``{"full": false, "allow_mass_delete": false}``. Returns the sync report. A run that could not list the KB,
embed or write the index raises after logging its report, so the failure reaches the OnFailure destination and
its alarm.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from kbsearch.config import Secrets, load_settings
from kbsearch.errors import KbSearchError
from kbsearch.indexer import run_sync
from kbsearch.providers.http import Deadline

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"kbsearch"})
metrics = Metrics()
settings = load_settings()
settings.require("KB_SOURCE")
secrets = Secrets(settings)

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
    remaining_s = context.get_remaining_time_in_millis() / 1000
    report = run_sync(
        settings,
        secrets,
        full=_flag(event, "full"),
        allow_mass_delete=_flag(event, "allow_mass_delete"),
        stop_at=Deadline(remaining_s - settings.deadline_margin_s),
        call_deadline=Deadline(remaining_s - 5),
    ).to_dict()
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
