"""SearchFunction: API Gateway (REST) → kbsearch services. Translation only; no search logic lives here.

Module import must stay light (health and Slack acknowledgement answer from a cold start): anything that pulls
qdrant_client, numpy, boto3 or the X-Ray SDK is imported inside the route that needs it, once per container.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from kbsearch.api import body
from kbsearch.config import Secrets, load_handler_settings, running_in_lambda
from kbsearch.errors import ConfigError
from kbsearch.health import health_status
from kbsearch.schemas import MAX_QUERY_CHARS, MAX_TOP_K, ErrorResponse, SearchFilters, SearchRequest, SearchResponse

if TYPE_CHECKING:
    from kbsearch import slack
    from kbsearch.mcp_server import McpServer
    from kbsearch.search import SearchService
    from kbsearch.sources import Source

MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_S = "5"

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"kbsearch"})
metrics = Metrics()
settings, config_problem = load_handler_settings()  # never raises: /health reports it, searches answer 503
secrets = Secrets(settings)
app = APIGatewayRestResolver(
    enable_validation=True, json_body_deserializer=lambda text: body.parse_json(text, allow_constants=True)
)
app.enable_swagger(path="/docs", title="kb-search", version=health_status(settings)["version"])

_service: SearchService | None = None
_tracer: Any = None
_slack_handoff: Callable[[dict[str, Any]], None] | None = None
_mcp_server: McpServer | None = None
_kb_source: Source | None = None
_seen_signatures: slack.SeenSignatures | None = None


def service() -> SearchService:
    """The search service, built on the first search of this container (SnapStart snapshots it warm)."""
    global _service  # noqa: PLW0603 - one per container
    if config_problem is not None:
        raise config_problem
    if _service is None:
        from kbsearch.search import SearchService

        _service = SearchService(settings, secrets)
    return _service


def _tracing_enabled() -> bool:
    return running_in_lambda() and os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() not in ("1", "true")


@contextlib.contextmanager
def _span(name: str) -> Iterator[None]:
    """An X-Ray subsegment per stage. The tracer (and the X-Ray SDK) loads on the first search, and only in Lambda
    with tracing on: locally there is nothing to send traces to."""
    global _tracer  # noqa: PLW0603
    if not _tracing_enabled():
        yield
        return
    if _tracer is None:
        from aws_lambda_powertools import Tracer

        _tracer = Tracer()
    with _tracer.provider.in_subsegment(f"## {name}"):
        yield


def _before_snapshot() -> None:
    """SnapStart: import the search path (providers, retrieval, stemmers, schemas) and build its clients before
    the snapshot, so a restored container answers its first search without those imports. Plain cold starts stay
    light for /health and Slack: this runs only in SnapStart's checkpoint phase. A misconfigured function still
    publishes (its searches answer 503 not_configured), so the deploy does not fail far from the cause."""
    if config_problem is not None:
        return
    service()
    if _tracing_enabled():
        from aws_lambda_powertools import Tracer

        global _tracer  # noqa: PLW0603
        _tracer = _tracer or Tracer()


try:  # present in the Lambda Python runtime (3.12+) when SnapStart is on
    from snapshot_restore_py import register_before_snapshot  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - not in a SnapStart runtime
    pass
else:  # pragma: no cover - exercised only inside Lambda
    register_before_snapshot(_before_snapshot)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"error": code, "message": message},
        headers=headers,
    )


@app.get("/health")
def get_health() -> dict[str, Any]:
    return health_status(settings, config_problem)


def _base_path() -> str:
    """The stage prefix as callers see it (``/prod`` on API Gateway's URL; empty under a custom domain or
    locally), decided as Powertools decides it for /docs."""
    context = app.current_event.request_context
    stage = context.stage
    return f"/{stage}" if stage and stage != "$default" and (context.path or "").startswith(f"/{stage}") else ""


@app.get("/openapi.json", include_in_schema=False)
def get_openapi() -> Response[Any]:
    import json

    from aws_lambda_powertools.event_handler.openapi.models import Server

    from kbsearch.openapi import complete

    generated = json.loads(
        app.get_openapi_json_schema(
            title="kb-search", version=health_status(settings)["version"], servers=[Server(url=_base_path() or "/")]
        )
    )
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=complete(generated))


def _run_search(request: SearchRequest) -> Response[Any]:
    from kbsearch.search import IndexUnavailable

    context = app.lambda_context
    remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else None
    try:
        answer = service().search(request, app.current_event.request_context.request_id, remaining, _span)
    except IndexUnavailable as exc:
        logger.error("index unavailable", extra={"error": str(exc)})
        metrics.add_metric(name="IndexUnavailable", unit=MetricUnit.Count, value=1)
        return _error(503, "index_unavailable", exc.public, {"Retry-After": RETRY_AFTER_S})
    meta = answer.meta
    for stage, ms in meta.timings_ms.items():
        metrics.add_metric(name=f"Latency_{stage}", unit=MetricUnit.Milliseconds, value=ms)
    for stage in meta.degraded:
        metrics.add_metric(name=f"Degraded_{stage}", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Degraded", unit=MetricUnit.Count, value=int(bool(meta.degraded)))
    for kind, by_provider in meta.usage.items():
        for provider, tokens in by_provider.items():
            metrics.add_metric(name=f"Tokens_{kind}_{provider}", unit=MetricUnit.Count, value=tokens)
    timing = ", ".join(f"{k};dur={v}" for k, v in meta.timings_ms.items())
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=answer,
        headers={"Server-Timing": timing},
    )


@app.post(
    "/search",
    summary="Search the knowledge base",
    responses={
        200: {"description": "Results", "content": {"application/json": {"model": SearchResponse}}},
        413: {"description": "Body too large", "content": {"application/json": {"model": ErrorResponse}}},
        503: {"description": "Index unavailable", "content": {"application/json": {"model": ErrorResponse}}},
    },
)
def post_search(request: SearchRequest) -> Response[Any]:
    return _run_search(request)


@app.get(
    "/search",
    summary="Search the knowledge base (query string)",
    responses={
        200: {"description": "Results", "content": {"application/json": {"model": SearchResponse}}},
        503: {"description": "Index unavailable", "content": {"application/json": {"model": ErrorResponse}}},
    },
)
def get_search(
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="the query")],
    top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = 5,
    tags: Annotated[list[str] | None, Query(description="repeatable: any of these tags")] = None,
    type: Annotated[list[str] | None, Query(description="repeatable")] = None,
    status: Annotated[list[str] | None, Query(description="repeatable")] = None,
    path_prefix: Annotated[str | None, Query(max_length=500)] = None,
    updated_after: Annotated[str | None, Query(description="ISO date or date-time")] = None,
    rerank: bool = True,
    expand: bool = True,
) -> Response[Any]:
    raw_top_k = (app.current_event.query_string_parameters or {}).get("top_k")
    if raw_top_k is not None and not re.fullmatch(r"[0-9]{1,6}", raw_top_k):  # strict: "5.0" or "+5" is not 5
        return _validation_error([{"loc": ("top_k",), "msg": "Input should be a whole number", "type": "int_type"}],
                                 location="query")  # fmt: skip
    filters = {"tags": tags, "type": type, "status": status, "path_prefix": path_prefix, "updated_after": updated_after}
    try:
        request = SearchRequest(
            query=q,
            top_k=top_k,
            filters=SearchFilters.model_validate({k: v for k, v in filters.items() if v is not None}),
            rerank=rerank,
            expand=expand,
        )
    except ValidationError as exc:
        return _validation_error(exc.errors(), location="query")
    return _run_search(request)


def _handoff() -> Callable[[dict[str, Any]], None]:
    """Lambda: an asynchronous invoke of the worker function. Locally: a thread running the same worker code
    against this process's search service (one embedded store client per process)."""
    global _slack_handoff  # noqa: PLW0603
    if _slack_handoff is None:
        from kbsearch.handoff import LambdaHandoff, ThreadHandoff

        if running_in_lambda() and settings.slack_worker_function:
            _slack_handoff = LambdaHandoff(settings.slack_worker_function)
        else:
            from kbsearch.providers.resilience import shared_client
            from kbsearch.slack_worker import MemoryDeduper, handle_job

            deduper = MemoryDeduper()
            _slack_handoff = ThreadHandoff(lambda job: handle_job(job, service, deduper, shared_client(), settings))
    return _slack_handoff


def _seen() -> slack.SeenSignatures:
    """Signatures already accepted: the Slack DynamoDB table in Lambda (shared by every container), memory locally."""
    global _seen_signatures  # noqa: PLW0603 - one per container
    if _seen_signatures is None:
        from kbsearch import slack

        if settings.slack_dedupe_table:
            from kbsearch.slack_worker import DynamoDeduper

            _seen_signatures = DynamoDeduper(settings.slack_dedupe_table, ttl_s=slack.REPLAY_WINDOW_S)
        else:
            _seen_signatures = slack.MemorySeenSignatures()
    return _seen_signatures


@app.post("/slack/command", include_in_schema=False)
def slack_command() -> Response[Any]:
    from kbsearch import slack
    from kbsearch.errors import KbSearchError

    secret = secrets.get("SLACK_SIGNING_SECRET")
    if not secret:
        logger.error("SLACK_SIGNING_SECRET is not configured")
        return _error(503, "slack_not_configured", "the Slack signing secret is not configured")
    event = app.current_event
    headers = dict(event.headers or {})
    raw = body.raw_bytes(event.raw_event)  # the exact bytes Slack signed: checked before anything decodes them
    try:
        slack.verify(secret, headers, raw)
        slack.reject_replay(_seen(), headers)  # only signatures that verified reach the store
    except slack.SlackAuthError as exc:
        logger.warning("Slack request rejected", extra={"reason": str(exc)})
        return _error(401, "unauthorized", str(exc))
    except Exception:
        logger.exception("the store of seen Slack signatures failed")
        return _error(503, "slack_unavailable", "cannot check this request right now; try again shortly")
    try:
        command = slack.parse_command(raw)
    except KbSearchError as exc:
        return _error(400, "bad_request", str(exc))
    intent = slack.parse_text(command.text)
    if intent.kind == "search":
        try:
            _handoff()(command.to_job())
        except Exception:
            logger.exception("Slack hand-off failed")
            return Response(200, content_types.APPLICATION_JSON, slack.apology(intent.query))
    return Response(200, content_types.APPLICATION_JSON, slack.ack(intent))


def _mcp() -> McpServer:
    global _mcp_server  # noqa: PLW0603 - one per container
    if _mcp_server is None:
        from kbsearch.mcp_server import McpServer, Tools
        from kbsearch.sources import open_source

        def search(request: SearchRequest) -> SearchResponse:
            context = app.lambda_context
            remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else None
            return service().search(request, app.current_event.request_context.request_id, remaining, _span)

        def read_note(path: str) -> bytes:
            global _kb_source  # noqa: PLW0603
            if _kb_source is None:
                _kb_source = open_source(settings.kb_source)
            return _kb_source.read_path(path)

        _mcp_server = McpServer(Tools(search=search, read_note=read_note))
    return _mcp_server


@app.route("/mcp", method=["GET", "POST", "DELETE"], include_in_schema=False)
def mcp_endpoint() -> Response[Any]:
    from kbsearch.mcp_server import body_error

    event = app.current_event
    try:
        raw = body.raw_bytes(event.raw_event)
    except body.BadBody as exc:
        answer = body_error(exc)
    else:
        answer = _mcp().handle(event.http_method, dict(event.headers or {}), raw)
    if answer.body is None:
        return Response(status_code=answer.status, body="", headers=answer.headers)
    return Response(answer.status, content_types.APPLICATION_JSON, answer.body, headers=answer.headers)


def _validation_error(errors: Any, location: str | None = None) -> Response[Any]:
    detail = [
        {
            "loc": ([location] if location else []) + list(e.get("loc", ())),
            "msg": e.get("msg", "invalid value"),
            "type": e.get("type", ""),
        }
        for e in errors
    ]
    return Response(
        status_code=422,
        content_type=content_types.APPLICATION_JSON,
        body={"error": "validation_error", "message": "the request is not valid", "detail": detail},
    )


@app.exception_handler(ConfigError)
def not_configured(exc: ConfigError) -> Response[Any]:
    logger.error("not configured", extra={"error": str(exc)})
    # The import-time problem names the setting to fix; any other ConfigError (SSM unreadable) may carry AWS
    # account details, so callers get a generic message and operators the log line.
    message = str(exc) if exc is config_problem else "the service cannot read its configuration; see the logs"
    return _error(503, "not_configured", message, {"Retry-After": RETRY_AFTER_S})


@app.exception_handler(RequestValidationError)
def invalid_request(exc: RequestValidationError) -> Response[Any]:
    return _validation_error(exc.errors())


@app.exception_handler(body.BadBody)
def bad_body(exc: body.BadBody) -> Response[Any]:
    return _error(exc.status, exc.code, exc.message)


@app.not_found
def not_found(_exc: NotFoundError) -> Response[Any]:
    return _error(404, "not_found", f"no route for {app.current_event.http_method} {app.current_event.path}")


@app.exception_handler(Exception)
def unexpected(exc: Exception) -> Response[Any]:
    # Logged with its traceback for operators; the caller sees no internals.
    logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
    return _error(500, "internal_error", "unexpected error; see the logs with this request's id")


def _body_size(event: dict[str, Any]) -> int:
    raw = event.get("body") or ""
    if not isinstance(raw, str):
        return 0
    if event.get("isBase64Encoded"):
        return len(raw) * 3 // 4
    return len(raw.encode("utf-8", "surrogatepass"))


#: Routes whose body is JSON for Powertools' validation: their body is checked here first (bytes, media type,
#: UTF-8), so a body Powertools would choke on (not UTF-8, a form, ...) is a 4xx, never a 500.
JSON_BODY_ROUTES = frozenset({("POST", "/search")})


def _checked(event: dict[str, Any]) -> dict[str, Any]:
    """For a JSON-body route: the event with its body as checked UTF-8 text and a plain JSON Content-Type
    (Powertools then parses it with :func:`kbsearch.api.body.parse_json`). Raises :class:`body.BadBody`."""
    route = (str(event.get("httpMethod") or "").upper(), event.get("resource") or event.get("path"))
    if route not in JSON_BODY_ROUTES:
        return event
    raw = body.raw_bytes(event)
    body.require_json_media_type(body.header(event.get("headers"), "content-type"))
    checked = dict(event, body=body.text(raw) if raw else None, isBase64Encoded=False)
    headers = {k: v for k, v in (event.get("headers") or {}).items() if str(k).lower() != "content-type"}
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if str(k).lower() != "content-type"}
    checked["headers"] = {**headers, "Content-Type": "application/json"}
    checked["multiValueHeaders"] = {**multi, "Content-Type": ["application/json"]}
    return checked


def _gateway_error(status: int, code: str, message: str) -> dict[str, Any]:
    import json

    return {
        "statusCode": status,
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "body": json.dumps({"error": code, "message": message}),
        "isBase64Encoded": False,
    }


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if _body_size(event) > MAX_BODY_BYTES:
        return _gateway_error(413, "payload_too_large", "the body is over 64 KiB")
    try:
        event = _checked(event)
    except body.BadBody as exc:
        return _gateway_error(exc.status, exc.code, exc.message)
    try:
        return app.resolve(event, context)
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
