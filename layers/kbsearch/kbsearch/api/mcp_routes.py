"""``/mcp``: the MCP server (stateless Streamable HTTP): the tools ``kb_search`` (the same search a user makes),
``kb_get_note`` and ``kb_list`` (the browse service), the notes as resources and the ``kb_answer`` prompt."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from kbsearch.api import body
from kbsearch.api.container import Container
from kbsearch.schemas import SearchRequest, SearchResponse

if TYPE_CHECKING:
    from kbsearch.mcp.protocol import McpServer


def mcp_router(container: Container, run: Callable[[SearchRequest, Router, float | None], SearchResponse]) -> Router:
    router = Router()
    built: dict[str, McpServer] = {}
    lock = threading.Lock()

    def budget_s() -> float:
        """The time one request has: ``SEARCH_BUDGET_S``, within the function's remaining time (a second kept)."""
        context = router.lambda_context
        budget = container.settings.search_budget_s
        if context is not None:
            budget = min(budget, context.get_remaining_time_in_millis() / 1000 - 1.0)
        return budget

    def server() -> McpServer:
        with lock:
            if "mcp" not in built:
                from kbsearch.mcp.protocol import McpServer
                from kbsearch.mcp.tools import Backend

                built["mcp"] = McpServer(Backend(
                    search=lambda request, budget: run(request, router, budget), browse=container.browse,
                    # the caller's scope: a note it may not read is answered as a note that is not there
                    scope=lambda: container.api_scope(router.current_event.raw_event), budget_s=budget_s,
                ))  # fmt: skip
            return built["mcp"]

    @router.route("/mcp", method=["GET", "POST", "DELETE"], include_in_schema=False)
    def mcp_endpoint() -> Response[Any]:
        from kbsearch.mcp.protocol import body_error, origin_refusal

        event = router.current_event
        headers = dict(event.headers or {})
        refused = origin_refusal({k.lower(): v for k, v in headers.items()})  # before the body is read
        try:
            raw = body.raw_bytes(event.raw_event) if refused is None else b""
        except body.BadBody as exc:
            answer = body_error(exc)
        else:
            answer = refused or server().handle(event.http_method, headers, raw)
        if answer.body is None:
            return Response(status_code=answer.status, body="", headers=answer.headers)
        return Response(answer.status, content_types.APPLICATION_JSON, answer.body, headers=answer.headers)

    return router
