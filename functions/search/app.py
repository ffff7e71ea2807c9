"""SearchFunction: API Gateway (REST) → kbsearch services. Translation only; no search logic lives here.

Module import must stay light (health and Slack acknowledgement answer from a cold start): anything that pulls
qdrant_client, numpy, boto3 or the X-Ray SDK is imported inside the route that needs it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext

from kbsearch.config import load_settings
from kbsearch.health import health_status

logger = Logger()
settings = load_settings()
app = APIGatewayRestResolver(enable_validation=True)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"error": code, "message": message},
        headers=headers,
    )


@app.get("/health")
def get_health() -> dict[str, Any]:
    return health_status(settings)


@app.get("/openapi.json")
def get_openapi() -> Response[Any]:
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(title="kb-search", version=health_status(settings)["version"]),
    )


@app.get("/search")
@app.post("/search")
def search_not_ready() -> Response[Any]:
    return _error(501, "not_implemented", "search is not deployed in this version")


@app.post("/slack/command")
def slack_not_ready() -> Response[Any]:
    return _error(501, "not_implemented", "the Slack command is not deployed in this version")


@app.route("/mcp", method=["GET", "POST"])
def mcp_not_ready() -> Response[Any]:
    return _error(501, "not_implemented", "the MCP endpoint is not deployed in this version")


@app.not_found
def not_found(_exc: NotFoundError) -> Response[Any]:
    return _error(404, "not_found", f"no route for {app.current_event.http_method} {app.current_event.path}")


@app.exception_handler(Exception)
def unexpected(exc: Exception) -> Response[Any]:
    # Logged with its traceback for operators; the caller sees no internals.
    logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
    return _error(500, "internal_error", "unexpected error; see the logs with this request's id")


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
