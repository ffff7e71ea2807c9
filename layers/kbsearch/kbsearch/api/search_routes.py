"""``POST /search`` and ``GET /search``: request → :class:`~kbsearch.search.SearchService` → JSON answer with
``Server-Timing``; an unreachable index is a 503 with ``Retry-After``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import ValidationError

from kbsearch.api.responses import unavailable, validation_error
from kbsearch.schemas import MAX_QUERY_CHARS, MAX_TOP_K, ErrorResponse, SearchFilters, SearchRequest, SearchResponse

RESULTS: dict[int, Any] = {
    200: {"description": "Results", "content": {"application/json": {"model": SearchResponse}}},
    503: {"description": "Index unavailable", "content": {"application/json": {"model": ErrorResponse}}},
}
_WHOLE_NUMBER = re.compile(r"[0-9]{1,6}")


def search_router(run: Callable[[SearchRequest, Router], SearchResponse]) -> Router:
    """The search routes; ``run`` performs one search for the current invocation (see ``SearchApi.search``)."""
    router = Router()

    def answer(request: SearchRequest) -> Response[Any]:
        from kbsearch.errors import IndexUnavailable

        try:
            found = run(request, router)
        except IndexUnavailable as exc:
            return unavailable("index_unavailable", exc.public)
        timing = ", ".join(f"{k};dur={v}" for k, v in found.meta.timings_ms.items())
        # the answer depends on the caller's access groups: no shared cache may hand it to another key
        headers = {"Server-Timing": timing, "Cache-Control": "private, no-store"}
        return Response(200, content_types.APPLICATION_JSON, found, headers=headers)

    @router.post(
        "/search",
        operation_id="search",
        summary="Search the knowledge base",
        responses={**RESULTS, 413: {"description": "Body too large",
                                    "content": {"application/json": {"model": ErrorResponse}}}},
    )  # fmt: skip
    def post_search(request: SearchRequest) -> Response[Any]:
        return answer(request)

    @router.get(
        "/search", operation_id="searchGet", summary="Search the knowledge base (query string)", responses=RESULTS
    )
    def get_search(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="the query")],
        top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = 5,
        tags: Annotated[
            list[str] | None,
            Query(
                description="repeatable: notes with any of these tags (any case, nested tags too: "
                "project finds Project/Beta; the text's #tags too)"
            ),
        ] = None,
        type: Annotated[list[str] | None, Query(description="repeatable")] = None,
        status: Annotated[list[str] | None, Query(description="repeatable")] = None,
        path_prefix: Annotated[str | None, Query(max_length=500)] = None,
        updated_after: Annotated[str | None, Query(description="ISO date or date-time")] = None,
        rerank: bool = True,
        expand: bool = True,
    ) -> Response[Any]:
        raw_top_k = (router.current_event.query_string_parameters or {}).get("top_k")
        if raw_top_k is not None and not _WHOLE_NUMBER.fullmatch(raw_top_k):  # strict: "5.0" or "+5" is not 5
            return validation_error(
                [{"loc": ("top_k",), "msg": "Input should be a whole number", "type": "int_type"}], location="query"
            )
        filters = {"tags": tags, "type": type, "status": status, "path_prefix": path_prefix,
                   "updated_after": updated_after}  # fmt: skip
        try:
            request = SearchRequest(
                query=q,
                top_k=top_k,
                filters=SearchFilters.model_validate({k: v for k, v in filters.items() if v is not None}),
                rerank=rerank,
                expand=expand,
            )
        except ValidationError as exc:
            return validation_error(exc.errors(), location="query")
        return answer(request)

    return router
