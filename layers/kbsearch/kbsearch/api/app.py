"""The search function's API: one Powertools REST resolver with the search, Slack and MCP routers, errors as
exception handlers (the documented envelope, never a traceback), body checks before routing, metrics and X-Ray
spans per search. Built once per container by ``functions/search/app.py``.

Import stays light (``/health`` and the Slack acknowledgement answer from a cold start): qdrant_client, numpy,
boto3 and the X-Ray SDK load inside the routes that need them, once per container.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from kbsearch.api import body
from kbsearch.api.container import Container
from kbsearch.api.mcp_routes import mcp_router
from kbsearch.api.notes_routes import notes_router
from kbsearch.api.responses import (
    RPC_INTERNAL_ERROR,
    RPC_INVALID_REQUEST,
    RPC_ROUTES,
    error,
    gateway_error,
    gateway_rpc_error,
    json_text,
    misspelled_parameter_error,
    repeated_parameter_error,
    rpc_error,
    unavailable,
    validation_error,
)
from kbsearch.api.search_routes import search_router
from kbsearch.api.slack_routes import slack_router
from kbsearch.config import running_in_lambda
from kbsearch.errors import ConfigError
from kbsearch.health import health_status
from kbsearch.logcontext import invocation_context
from kbsearch.schemas import SearchRequest, SearchResponse, WhoAmI

MAX_BODY_BYTES = 64 * 1024
#: Slack's button payloads carry the message they were pressed on (up to ~13k characters of text and the buttons'
#: values, percent-encoded: a Russian answer triples in size), so that route takes more.
MAX_BODY_BYTES_BY_ROUTE = {"/slack/interactive": 1024 * 1024}
#: Routes whose body is JSON for Powertools' validation: their body is checked first (bytes, media type, UTF-8),
#: so a body Powertools would choke on (not UTF-8, a form, ...) is a 4xx, never a 500.
JSON_BODY_ROUTES = frozenset({("POST", "/search")})


#: The libraries whose calls appear in the traces: the providers, Qdrant and Slack over httpx; SSM, DynamoDB and
#: Lambda over botocore.
TRACED_MODULES = ("botocore", "httpx")


class Tracing:
    """An X-Ray subsegment per search stage, only in Lambda with tracing on (locally there is nothing to send
    traces to); the tracer and the X-Ray SDK load on the first search."""

    def __init__(self) -> None:
        self.enabled = running_in_lambda() and os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() not in (
            "1",
            "true",
        )
        self._tracer: Any = None

    def warm(self) -> None:
        if self.enabled and self._tracer is None:
            from aws_lambda_powertools import Tracer

            # only what a search calls: the SDK's patch_all also imports and patches sqlite3, requests, SQLAlchemy,
            # ... wherever they are installed
            self._tracer = Tracer(patch_modules=TRACED_MODULES)

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self.warm()
        with self._tracer.provider.in_subsegment(f"## {name}"):
            yield


class SearchApi:
    def __init__(self, container: Container | None = None) -> None:
        self.container = container or Container()
        self.logger = Logger()
        copy_config_to_registered_loggers(source_logger=self.logger, include={"kbsearch"})
        self.metrics = Metrics()
        self.tracing = Tracing()
        self.app = app = APIGatewayRestResolver(
            enable_validation=True,
            json_body_deserializer=lambda text: body.parse_json(text, allow_constants=True),
            serializer=json_text,
        )
        # Our own /docs, not ``enable_swagger``: that builds Powertools' OpenAPI models at import (~200 ms of every
        # cold start), and it would show Powertools' document rather than the completed one /openapi.json serves.
        app.get("/health", operation_id="health", summary="Liveness and readiness")(self._health)
        app.get(
            "/whoami", operation_id="whoami",
            summary="The caller's access scope: the groups whose notes its API key may read",
            responses={200: {"description": "The caller and its groups",
                             "content": {"application/json": {"model": WhoAmI}}}},
        )(self._whoami)  # fmt: skip
        app.get("/openapi.json", include_in_schema=False)(self._openapi)
        app.get("/docs", include_in_schema=False)(self._docs)
        app.include_router(search_router(self.search))
        app.include_router(slack_router(self.container))
        app.include_router(mcp_router(self.container, self.search))
        app.include_router(notes_router(self.container))
        app.exception_handler(ConfigError)(self._not_configured)
        app.exception_handler(RequestValidationError)(lambda exc: validation_error(exc.errors()))
        app.exception_handler(body.BadBody)(lambda exc: error(exc.status, exc.code, exc.message))
        app.not_found(self._not_found)
        app.exception_handler(Exception)(self._unexpected)
        self.handler = invocation_context(self.logger)(self._handle)

    # -- one search, as every route makes it ------------------------------------------------------------------

    def search(self, request: SearchRequest, router: Router, budget_s: float | None = None) -> SearchResponse:
        """The search for the current invocation (its request id and remaining time), with metrics recorded;
        ``budget_s``: the most it may take besides (what a JSON-RPC batch has left)."""
        context = router.lambda_context
        remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else None
        request_id = cast(APIGatewayProxyEvent, router.current_event).request_context.request_id
        from kbsearch.errors import IndexUnavailable

        self.tracing.warm()  # before the service exists: X-Ray instruments httpx clients made after it patches httpx
        event = router.current_event.raw_event
        try:
            # the scope is resolved inside the search's budget, after its secrets (the caller mapping among them)
            answer = self.container.search().search(
                request,
                request_id,
                remaining,
                self.tracing.span,
                scope=lambda t: self.container.api_scope(event, t),
                budget_s=budget_s,
            )
        except IndexUnavailable as exc:
            self.logger.error("index unavailable", extra={"error": str(exc)})
            self.metrics.add_metric(name="IndexUnavailable", unit=MetricUnit.Count, value=1)
            self.container.readiness.search_failed(exc.public)
            raise
        self.container.readiness.search_answered()
        self._record(answer)
        return answer

    def _record(self, answer: SearchResponse) -> None:
        add, meta = self.metrics.add_metric, answer.meta
        for stage, ms in meta.timings_ms.items():
            add(name=f"Latency_{stage}", unit=MetricUnit.Milliseconds, value=ms)
        for stage in meta.degraded:
            add(name=f"Degraded_{stage}", unit=MetricUnit.Count, value=1)
        add(name="Degraded", unit=MetricUnit.Count, value=int(bool(meta.degraded)))
        for kind, by_provider in meta.usage.items():
            for provider, tokens in by_provider.items():
                add(name=f"Tokens_{kind}_{provider}", unit=MetricUnit.Count, value=tokens)

    def before_snapshot(self) -> None:
        """SnapStart: build the search path (providers, retrieval, stemmers, schemas) before the snapshot, so a
        restored container answers its first search without those imports. A misconfigured function still
        publishes (its searches answer 503 not_configured), so the deploy does not fail far from the cause."""
        if self.container.config_problem is None:
            self.tracing.warm()  # first: the service's httpx client is instrumented only if made after the patch
            self.container.search()
            from kbsearch.lexical import tokenize

            tokenize("snapshot")  # the stemmers load on first use

    # -- routes of the app itself -------------------------------------------------------------------------------

    def _health(self) -> dict[str, Any]:
        container = self.container
        status = health_status(container.settings, container.config_problem, container.index_problems())
        status["last_sync"] = container.last_sync()  # freshness: the last successful indexer run, its age
        return status

    def _whoami(self) -> WhoAmI:
        scope = self.container.api_scope(self.app.current_event.raw_event)
        self.logger.info("access", extra={"caller": scope.caller, "groups": scope.query_groups(), "results": 0})
        return WhoAmI(caller=scope.caller, groups=sorted(scope.groups or ()))

    def _openapi(self) -> Response[Any]:
        return Response(200, content_types.APPLICATION_JSON, self._openapi_document())

    def _docs(self) -> Response[Any]:
        """Swagger UI over the same document as ``/openapi.json`` (its script and styles inlined, as Powertools
        serves them: the page needs nothing from the internet). The page names ``/docs?format=json`` as its
        document's address, so that answers the document too."""
        from pathlib import Path

        query = self.app.current_event.query_string_parameters or {}
        if query.get("format") == "json":
            return self._openapi()

        from aws_lambda_powertools.event_handler.openapi import swagger_ui

        assets = Path(swagger_ui.__file__).parent
        # "</" escaped so no string in the document can close the page's <script>
        spec = json.dumps(self._openapi_document(), indent=2).replace("</", "<\\/")
        script = (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
        style = (assets / "swagger-ui.min.css").read_text(encoding="utf-8")
        page = swagger_ui.generate_swagger_html(spec, script, style, "", None)
        return Response(200, content_types.TEXT_HTML, page)

    def _openapi_document(self) -> dict[str, Any]:
        from aws_lambda_powertools.event_handler.openapi.models import Server

        from kbsearch.openapi import complete

        # The stage prefix as callers see it (/prod on API Gateway's URL; none under a custom domain or locally),
        # decided as Powertools decides it for /docs.
        context = self.app.current_event.request_context
        stage = context.stage
        base = f"/{stage}" if stage and stage != "$default" and (context.path or "").startswith(f"/{stage}") else ""
        version = health_status(self.container.settings)["version"]
        schema = self.app.get_openapi_json_schema(title="kb-search", version=version, servers=[Server(url=base or "/")])
        return complete(json.loads(schema))

    # -- errors -------------------------------------------------------------------------------------------------

    def _not_configured(self, exc: ConfigError) -> Response[Any]:
        self.logger.error("not configured", extra={"error": str(exc)})
        # The import-time problem names the setting to fix; any other ConfigError (SSM unreadable) may carry AWS
        # account details, so callers get a generic message and operators the log line.
        known = exc is self.container.config_problem
        return unavailable("not_configured", str(exc) if known else "the service cannot read its configuration")

    def _not_found(self, _exc: NotFoundError) -> Response[Any]:
        event = self.app.current_event
        return error(404, "not_found", f"no route for {event.http_method} {event.path}")

    def _unexpected(self, exc: Exception) -> Response[Any]:
        # Logged with its traceback for operators; the caller sees no internals.
        self.logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
        message = "unexpected error; see the logs with this request's id"
        if self._rpc_route():
            return rpc_error(500, RPC_INTERNAL_ERROR, f"Internal error: {message}")
        return error(500, "internal_error", message)

    def _rpc_route(self) -> bool:
        """Whether the current request is on a route that answers JSON-RPC (its errors too)."""
        return self.app.current_event.resource in RPC_ROUTES

    # -- the handler ----------------------------------------------------------------------------------------------

    def _handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        problem = body.event_problem(event)
        if problem is not None:  # a direct invoke with an event no gateway sends: nothing of it is read further
            self.logger.warning("not an API Gateway REST proxy event", extra={"problem": problem})
            message = f"not an API Gateway REST API proxy event: {problem}"
            if isinstance(event, dict) and any(event.get(name) in RPC_ROUTES for name in ("resource", "path")
                                               if isinstance(event.get(name), str)):  # fmt: skip
                return private(gateway_rpc_error(400, RPC_INVALID_REQUEST, f"Invalid Request: {message}"))
            return private(gateway_error(400, "bad_request", message))
        limit = MAX_BODY_BYTES_BY_ROUTE.get(str(event.get("resource") or ""), MAX_BODY_BYTES)
        if body.size(event) > limit:
            if (event.get("resource") or event.get("path")) in RPC_ROUTES:
                return private(gateway_rpc_error(413, RPC_INVALID_REQUEST, "Invalid Request: the body is over 64 KiB"))
            return private(gateway_error(413, "payload_too_large", f"the body is over {limit // 1024} KiB"))
        rpc = (event.get("resource") or event.get("path")) in RPC_ROUTES
        keys = body.repeated_api_key(event)
        twice = body.repeated_single_header(event)
        if keys or twice:
            message = (f"x-api-key names {keys} keys; send one (which scope was meant cannot be told)" if keys
                       else f"{twice} is given more than once with different values; send it once")  # fmt: skip
            if rpc:
                return private(gateway_rpc_error(400, RPC_INVALID_REQUEST, f"Invalid Request: {message}"))
            return private(gateway_error(400, "bad_request", message))
        coding = body.content_coding_problem(event)
        if coding is not None:
            refused = (gateway_rpc_error(415, RPC_INVALID_REQUEST, f"Invalid Request: {coding}") if rpc
                       else gateway_error(415, "unsupported_media_type", coding))  # fmt: skip
            refused["multiValueHeaders"]["Accept-Encoding"] = list(body.ACCEPTED_CODINGS)
            return private(refused)
        try:
            event = body.checked_json_event(event, JSON_BODY_ROUTES)
        except body.BadBody as exc:
            return private(gateway_error(exc.status, exc.code, exc.message))
        repeated = body.repeated_parameter(event)
        if repeated is not None:
            return private(repeated_parameter_error(*repeated))
        misspelled = body.misspelled_parameter(event)
        if misspelled is not None:
            return private(misspelled_parameter_error(*misspelled))
        try:
            return private(self.app.resolve(event, context))
        finally:
            if self.metrics.metric_set:
                self.metrics.flush_metrics()


#: What every answer tells HTTP caches: it depends on the caller's key (sent in ``x-api-key``, which no shared cache
#: keys on) and on the live index, so no CDN or proxy in front of the API may keep it for the next caller.
CACHE_CONTROL = "private, no-store"


def private(result: dict[str, Any]) -> dict[str, Any]:
    """The Lambda proxy result with ``Cache-Control: private, no-store`` unless the route set its own."""
    multi = result.get("multiValueHeaders")
    single = result.get("headers")
    present = {str(k).lower() for k in (*(multi or {}), *(single or {}))}
    if "cache-control" not in present:
        if isinstance(multi, dict):
            multi["Cache-Control"] = [CACHE_CONTROL]
        else:
            result["headers"] = {**(single or {}), "Cache-Control": CACHE_CONTROL}
    return result
