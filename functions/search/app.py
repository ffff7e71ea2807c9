"""SearchFunction: API Gateway (REST) → :class:`kbsearch.api.app.SearchApi` (routes for search, Slack and MCP).

The API is built once per container; this file only hands events to it. Import stays light: /health and the
Slack acknowledgement answer from a cold start without qdrant_client, numpy, boto3 or the X-Ray SDK.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from kbsearch.api.app import SearchApi

api = SearchApi()


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.handler(event, context)


try:  # present in the Lambda Python runtime (3.12+) when SnapStart is on
    from snapshot_restore_py import register_before_snapshot  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - not in a SnapStart runtime
    pass
else:  # pragma: no cover - exercised only inside Lambda
    register_before_snapshot(api.before_snapshot)
