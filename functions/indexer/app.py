"""IndexerFunction: scheduled event → kbsearch.indexer.run_sync; SQS batch of S3 change events →
kbsearch.indexer.run_changes. Translation only.

Scheduled event (EventBridge Scheduler input, or an EventBridge rule event with the same keys under ``detail``):
``{"full": false, "allow_mass_delete": false, "rebuild": false}`` (``rebuild``: a new collection behind the
alias, switched when complete; see ``kbsearch index --rebuild``). Any other event (not an object, ``Records`` that
are no SQS batch, another key, a flag neither true nor false, an EventBridge event whose ``detail`` holds more than
the flags: S3's ``Object Created`` sent to the function instead of its queue) runs nothing and raises naming what is wrong. Returns the sync report; ``missed_by_events``
(changes no event had delivered) is also a metric.

SQS event (``Records`` from ``aws:sqs``: S3 notifications or EventBridge ``Object Created``/``Object Deleted``):
returns ``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`` for the messages to retry (a note that
could not be read or embedded, a full sync holding the lease, a poison message); metrics ``IndexLagSeconds``
(event time → searchable, per change that changed the index; an event time delivery cannot explain, e.g. year 1 or
the future, counts from the message's SentTimestamp: :func:`kbsearch.events.lag_s`) and the run's counts. Messages held back by a full sync are made
visible again after ``LEASE_RETRY_S`` instead of the queue's visibility timeout, each later receive longer
(:func:`lease_retry_s`), so that a long full sync never sends them to the dead-letter queue. A run that could not list the KB,
embed or write the index, or that is not configured, raises after logging its report, so the failure reaches the
OnFailure destination and its alarm. A run that finds another holding the index lease touches nothing and returns
``{"status": "skipped", "reason": "another run holds the lease", ...}``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from kbsearch.access import ACCESS_FILE
from kbsearch.api.container import Container
from kbsearch.errors import KbSearchError
from kbsearch.indexer import ChangeReport, run_changes, run_sync
from kbsearch.lease import SKIPPED, LeaseHeld
from kbsearch.logcontext import invocation_context
from kbsearch.providers.resilience import Deadline
from kbsearch.providers.transport import deadline_transport  # noqa: F401 - httpx imported in the init phase

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"kbsearch"})
metrics = Metrics()
container = Container("KB_SOURCE")  # never raises at import; each run reports the problem
settings, secrets, config_problem = container.settings, container.secrets, container.config_problem

COUNTS = (
    "added", "updated", "deleted", "unchanged", "attachments_ignored", "chunks_upserted", "chunks_deleted",
    "embedding_calls", "embedding_tokens", "embedding_fallbacks", "bm25_rewritten",
)  # fmt: skip


EVENT_COUNTS = (
    "events", "keys", "duplicates", "stale", "superseded", "added", "updated", "deleted", "unchanged",
    "chunks_upserted", "chunks_deleted", "chunks_reused", "embedding_calls", "embedding_tokens", "times_refused",
)  # fmt: skip
LEASE_RETRY_S = 60  # a batch held back by a full sync is retried this soon, not after the visibility timeout
#: each later receive of a message still held back waits this many times longer (60, 240, 960, 3,840 s): the
#: fourth retry (the fifth receive, the template's maxReceiveCount) comes 5,100 s after the first receive, past the
#: longest a full sync can hold the lease (the function's 900 s, then a killed run's lease until its expiry,
#: INDEX_LEASE_TTL_S at most 3,600 s). At a flat 60 s a sync running 4 minutes past a save sent its event to the
#: dead-letter queue (its alarm), and the note, saved after the sync's listing, waited for the next scheduled sync
LEASE_RETRY_GROWTH = 4
SQS_MAX_VISIBILITY_S = 43_200  # what ChangeMessageVisibility accepts at most (12 hours)


class IndexerRunError(KbSearchError):
    """The run failed (listing or embedding); the report was logged."""


FLAGS = ("full", "allow_mass_delete", "rebuild")
#: The keys of an EventBridge event (a rule's target; the flags, if any, under ``detail``).
EVENTBRIDGE_KEYS = frozenset(
    {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
)


def _flag(event: dict[str, Any], name: str) -> bool:
    detail = event.get("detail")
    value = event.get(name, detail.get(name, False) if isinstance(detail, dict) else False)
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _not_a_run(event: Any) -> str | None:
    """Why ``event`` (not an SQS batch) is no scheduled run, or None. A scheduled run is an object of the flags
    (EventBridge Scheduler's input, a manual invoke: ``{}`` is an incremental sync), or an EventBridge event with
    them under ``detail``; each flag true or false (or those words as text). Anything else runs nothing: a sync
    started by a direct S3 notification, a misspelled ``Full`` or ``"full": "yes"`` (read as an incremental sync)
    would do what no one asked for."""
    if not isinstance(event, dict):
        return "the event is not a JSON object"
    if "Records" in event:
        return "an event with Records that is not an SQS batch (S3 changes reach the indexer through its queue)"
    unknown = sorted(str(key) for key in event if key not in FLAGS and key not in EVENTBRIDGE_KEYS)
    if unknown:
        names = ", ".join(repr(name[:60]) for name in unknown[:5])
        return f"unknown field(s) {names}; a scheduled run takes {', '.join(FLAGS)}"
    detail = event.get("detail")
    if detail is not None and not isinstance(detail, dict):
        return "an EventBridge event whose detail is not an object"
    others = sorted(str(key) for key in (detail or {}) if key not in FLAGS)
    if others:  # an S3 change (EventBridge's Object Created), a CloudTrail call: an event of something else
        kind, source = str(event.get("detail-type", ""))[:60], str(event.get("source", ""))[:60]
        return (f"an EventBridge event {kind!r} from {source!r} (S3 changes reach the indexer through its queue: "
                f"point the rule at the queue); a scheduled run's detail holds {', '.join(FLAGS)} only")  # fmt: skip
    for name in FLAGS:
        for value in (event.get(name, False), detail.get(name, False) if isinstance(detail, dict) else False):
            if not (isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false"))):
                return f"{name} is neither true nor false"
    return None


def lease_retry_s(record: dict[str, Any]) -> int:
    """When a message a full sync held back is retried: :data:`LEASE_RETRY_S` after its first receive, each later
    receive :data:`LEASE_RETRY_GROWTH` times longer (its ``ApproximateReceiveCount``; a count SQS never sends reads
    as the first)."""
    attributes = record.get("attributes")
    count = attributes.get("ApproximateReceiveCount") if isinstance(attributes, dict) else None
    receives = int(count) if isinstance(count, str) and count.isascii() and count.isdigit() else 1
    return min(SQS_MAX_VISIBILITY_S, LEASE_RETRY_S * LEASE_RETRY_GROWTH ** min(max(receives, 1) - 1, 16))


def _retry_soon(event: dict[str, Any], message_ids: set[str]) -> None:
    """Best effort: make these messages visible again at :func:`lease_retry_s` (ChangeMessageVisibilityBatch)."""
    records = [r for r in event.get("Records", []) if r.get("messageId") in message_ids and r.get("receiptHandle")]
    if not records:
        return
    try:
        import boto3

        _, _, _, region, account, name = str(records[0].get("eventSourceARN", "")).split(":", 5)
        sqs = boto3.client("sqs", region_name=region)
        url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        refused: dict[str, int] = {}
        for start in range(0, len(records), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": r["receiptHandle"], "VisibilityTimeout": lease_retry_s(r)}
                for i, r in enumerate(records[start : start + 10])
            ]
            answer = sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            for failed in answer.get("Failed") or ():  # a batch call answers 200 with the entries it refused
                code = str(failed.get("Code") or "refused")[:80]
                refused[code] = refused.get(code, 0) + 1
    except Exception as exc:  # they come back after the visibility timeout instead
        logger.warning("could not shorten the retry delay", extra={"error": type(exc).__name__})
        return
    if refused:  # each such message comes back after the queue's visibility timeout, not at its retry delay
        logger.warning(
            "could not set the retry delay of %d held-back message(s)",
            sum(refused.values()),
            extra={"refused": refused},
        )


def handle_changes(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    remaining_s = context.get_remaining_time_in_millis() / 1000
    report: ChangeReport = run_changes(
        settings,
        secrets,
        event,
        stop_at=Deadline(max(1.0, remaining_s - min(settings.deadline_margin_s, remaining_s / 4))),
        call_deadline=Deadline(max(1.0, remaining_s - 5)),
    )
    data = report.to_dict()
    for name in EVENT_COUNTS:
        metrics.add_metric(name=f"events_{name}", unit=MetricUnit.Count, value=data[name])
    metrics.add_metric(name="events_ignored", unit=MetricUnit.Count, value=len(report.ignored))
    metrics.add_metric(name="events_poison", unit=MetricUnit.Count, value=len(report.poison))
    metrics.add_metric(name="events_failed", unit=MetricUnit.Count, value=len(report.failed_messages))
    # wiki-links the batch left naming no note: the count, and the first few in the log line below (``dangling``)
    metrics.add_metric(name="dangling_links", unit=MetricUnit.Count, value=report.dangling_links)
    for lag in sorted(report.lag_s, reverse=True)[:100]:  # the slowest 100 (a metric holds at most 100 values)
        metrics.add_metric(name="IndexLagSeconds", unit=MetricUnit.Seconds, value=max(0.0, lag))
    summary = {k: v for k, v in data.items() if k not in ("skipped", "warnings", "ignored", "lag_s")}
    summary["lag_max_s"] = max(report.lag_s, default=None)
    logger.info("event batch applied", extra=summary)
    _log_access_settings(data["warnings"])
    failed = set(report.failed_messages)
    if failed and report.error and "holds the index lease" in report.error:
        _retry_soon(event, failed)
    return {"batchItemFailures": [{"itemIdentifier": m} for m in sorted(failed)]}


def _log_access_settings(warnings: list[dict[str, str]]) -> None:
    """The run's warnings of the access settings (a rule naming no folder, a caller's unheld group), a log line each:
    the admin's, a few at most (the run's summary line leaves its warnings out: a note's are many)."""
    for warning in warnings:
        if warning["path"] in (ACCESS_FILE, "ACCESS_GROUPS"):
            logger.warning("access setting", extra={"setting": warning["path"], "reason": warning["reason"]})


@metrics.log_metrics
@invocation_context(logger)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from kbsearch.events import is_sqs_batch

    sqs = is_sqs_batch(event)
    if sqs and config_problem is not None:  # every message goes back (and, in the end, to the dead-letter queue)
        logger.error("indexer not configured", extra={"error": str(config_problem)})
        metrics.add_metric(name="not_configured", unit=MetricUnit.Count, value=1)
        return {"batchItemFailures": [{"itemIdentifier": r.get("messageId", "")} for r in event["Records"]]}
    if sqs:
        return handle_changes(event, context)
    problem = _not_a_run(event)
    if problem is not None:  # nothing run: the failure reaches the OnFailure destination and its alarm
        logger.error("not an event the indexer runs on", extra={"error": problem})
        metrics.add_metric(name="not_an_event", unit=MetricUnit.Count, value=1)
        raise IndexerRunError(f"not a scheduled run nor an SQS batch: {problem}")
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
    metrics.add_metric(name="dangling_links", unit=MetricUnit.Count, value=report["dangling_links"])
    metrics.add_metric(name="incomplete", unit=MetricUnit.Count, value=int(report["incomplete"]))
    metrics.add_metric(name="missed_by_events", unit=MetricUnit.Count, value=report["missed_by_events"])
    metrics.add_metric(name="duration", unit=MetricUnit.Milliseconds, value=report["duration_ms"])
    logger.info("sync finished", extra={k: v for k, v in report.items() if k not in ("skipped", "warnings")})
    _log_access_settings(report["warnings"])
    if report["error"]:
        raise IndexerRunError(report["error"])
    return report
