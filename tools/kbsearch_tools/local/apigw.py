"""API Gateway REST (v1) proxy integration, both ways: an HTTP request → a Lambda event, a result → a response."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

#: Content types that API Gateway hands to Lambda base64-encoded (binary media types, and form posts so a
#: signature can be checked over the exact bytes).
_BINARY_PREFIXES = ("application/x-www-form-urlencoded", "multipart/form-data", "application/octet-stream")


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"


def _multi(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        single[key] = value  # API Gateway keeps the last value in the single-value map
        multi.setdefault(key, []).append(value)
    return single, multi


def build_event(
    request: HttpRequest,
    resource: str,
    path_parameters: dict[str, str],
    stage: str,
    api_key: str | None = None,
    stage_in_path: bool = True,
) -> dict[str, Any]:
    """The REST proxy event API Gateway would send. ``stage_in_path``: the request came through the default
    execute-api URL (``requestContext.path`` starts with ``/{stage}``); False is a custom domain's mapping, which
    is what ``kbsearch serve`` is, since it answers at the root."""
    headers, multi_headers = _multi(request.headers)
    query, multi_query = _multi(parse_qsl(request.query, keep_blank_values=True))
    content_type = next((v for k, v in request.headers if k.lower() == "content-type"), "")
    body: str | None
    if not request.body:
        body, is_b64 = None, False
    elif content_type.lower().startswith(_BINARY_PREFIXES):
        body, is_b64 = base64.b64encode(request.body).decode("ascii"), True
    else:
        try:
            body, is_b64 = request.body.decode("utf-8"), False
        except UnicodeDecodeError:
            body, is_b64 = base64.b64encode(request.body).decode("ascii"), True
    now = time.time()
    request_id = str(uuid.uuid4())
    return {
        "resource": resource,
        "path": request.path,
        "httpMethod": request.method.upper(),
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": resource,
            "httpMethod": request.method.upper(),
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{stage}{request.path}" if stage_in_path else request.path,
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "sourceIp": request.source_ip,
                "userAgent": headers.get("User-Agent") or headers.get("user-agent"),
                "apiKey": api_key,
                "apiKeyId": None if api_key is None else "local",
            },
            "domainName": "localhost",
            "apiId": "local",
        },
        "body": body,
        "isBase64Encoded": is_b64,
    }


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def parse_result(result: Any) -> HttpResponse:
    """A Lambda proxy result → HTTP response; a malformed one is a 502, as API Gateway answers."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        return error_response(502, "Internal server error")
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, values in (result.get("multiValueHeaders") or {}).items():
        for value in values or []:
            headers.append((key, str(value)))
        seen.add(key.lower())
    for key, value in (result.get("headers") or {}).items():
        if key.lower() not in seen:
            headers.append((key, str(value)))
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
    return HttpResponse(int(result["statusCode"]), headers, body)


def error_response(status: int, message: str, extra_headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    """API Gateway's own error shape: ``{"message": ...}``."""
    body = json.dumps({"message": message}).encode("utf-8")
    return HttpResponse(status, [("Content-Type", "application/json"), *(extra_headers or [])], body)
