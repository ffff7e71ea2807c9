"""``kbsearch serve``: the template's API routes over HTTP without Docker (what ``sam local start-api`` does).

Each request becomes an API Gateway REST proxy event for the function that owns the route; the result becomes
the HTTP response. Like API Gateway: unknown routes answer 403 "Missing Authentication Token", routes that
require an API key answer 403 "Forbidden" without a valid ``x-api-key`` (when ``KB_LOCAL_API_KEYS`` is set),
bodies over 10 MB answer 413. Each function is one warm container: its calls run one at a time.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from kbsearch.local.apigw import HttpRequest, HttpResponse, build_event, error_response, parse_result
from kbsearch.local.runtime import LocalFunction, function_environment
from kbsearch.local.template import ApiRoute, Template

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024


def parse_api_keys(value: str | None) -> frozenset[str]:
    return frozenset(k.strip() for k in (value or "").split(",") if k.strip())


class LocalApi:
    """Routes requests to the template's functions (loaded on first use) and applies API Gateway's checks."""

    def __init__(
        self,
        template: Template,
        api_keys: frozenset[str] = frozenset(),
        env_vars: Mapping[str, Mapping[str, str]] | None = None,
        use_ssm: bool = False,
    ) -> None:
        self.template = template
        self.routes = template.api_routes()
        self.stage = template.stage_name()
        self.api_keys = api_keys
        self._env_vars = env_vars
        self._use_ssm = use_ssm
        self._functions: dict[str, LocalFunction] = {}
        self._lock = threading.Lock()

    def function(self, logical_id: str) -> LocalFunction:
        with self._lock:
            fn = self._functions.get(logical_id)
            if fn is None:
                spec = self.template.function(logical_id)
                env = function_environment(
                    spec, self.template.region, os.environ, self._env_vars, use_ssm=self._use_ssm
                )
                fn = self._functions[logical_id] = LocalFunction(spec, self.template.region, env)
            return fn

    def _route(self, method: str, path: str) -> tuple[ApiRoute, dict[str, str]] | None:
        for route in self.routes:
            params = route.matches(method, path)
            if params is not None:
                return route, params
        return None

    def _key_ok(self, request: HttpRequest) -> str | None:
        given = next((v for k, v in request.headers if k.lower() == "x-api-key"), None)
        if given is None:
            return None
        for key in self.api_keys:
            if secrets.compare_digest(given.encode(), key.encode()):
                return key
        return None

    def handle(self, request: HttpRequest) -> HttpResponse:
        if len(request.body) > MAX_BODY_BYTES:
            return error_response(413, "Request Too Long")
        found = self._route(request.method, request.path)
        if found is None:
            return error_response(403, "Missing Authentication Token")
        route, params = found
        api_key = None
        if route.api_key_required and self.api_keys:
            api_key = self._key_ok(request)
            if api_key is None:
                return error_response(403, "Forbidden")
        event = build_event(request, route.path, params, self.stage, api_key)
        try:
            result = self.function(route.function_id).invoke(event)
        except Exception:
            logger.exception("%s raised; answering 502 as API Gateway does", route.function_id)
            return error_response(502, "Internal server error")
        return parse_result(result)


class _Handler(BaseHTTPRequestHandler):
    server_version = "kbsearch-local"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls
    api: LocalApi

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(error_response(413, "Request Too Long"))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = HttpRequest(
            method=self.command,
            path=url.path or "/",
            query=url.query,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
        )
        self._send(self.api.handle(request))

    def _send(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        names = {k.lower() for k, _ in response.headers}
        for key, value in response.headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        if "content-type" not in names:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of clients then sees resets and SYN retries of 1-3 s.
    request_queue_size = 128
    daemon_threads = True


def make_server(api: LocalApi, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"api": api})
    server = _Server((host, port), handler)
    return server
