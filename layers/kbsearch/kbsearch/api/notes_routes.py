"""``GET /notes/{path}`` (one note, whole or one section, with its headings, links and backlinks) and ``GET /notes``
(the values the search filters accept, with counts, and the recent notes): the same reads as the MCP tools
``kb_get_note`` and ``kb_list``, through :class:`kbsearch.browse.BrowseService`."""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from kbsearch.api.container import Container
from kbsearch.api.responses import error, unavailable, validation_error

#: HTTP status per :class:`kbsearch.browse.NoteProblem` kind.
PROBLEM_STATUS = {"bad_path": 400, "not_found": 404, "no_section": 404, "unreadable": 422, "unavailable": 503}
#: What a note's problem tells a REST caller to search with: the service's text names the MCP tool (``use
#: kb_search to find one``), which a ``curl`` of ``GET /notes/KB-020`` or of a path no note has was told (walk33).
REST_SEARCH = ("use kb_search", "use GET /search?q=...")
_WHOLE_NUMBER = re.compile(r"[0-9]{1,3}")
MAX_RECENT = 50


def notes_router(container: Container) -> Router:
    router = Router()

    def query() -> dict[str, str]:
        return router.current_event.query_string_parameters or {}

    @router.get("/notes/.+", include_in_schema=False)
    def get_note() -> Response[Any]:
        from kbsearch.browse import MAX_SECTION_CHARS, NoteProblem, fit_note
        from kbsearch.errors import IndexUnavailable

        event = router.current_event
        raw = (event.get("pathParameters") or {}).get("path")
        if raw is None:  # no {path+} parameter (a hand-made event): the path after /notes/
            raw = event.path.split("/notes/", 1)[1]
        from kbsearch.sources import percent_decoded

        try:
            path = percent_decoded(raw)  # API Gateway REST passes path parameters percent-encoded
        except ValueError as exc:
            return error(400, "bad_path", f"the note path has {exc}")
        section = query().get("section")
        if section is not None and len(section.strip()) > MAX_SECTION_CHARS:  # as documented, and as kb_get_note
            return validation_error(
                [{"loc": ("section",), "msg": f"at most {MAX_SECTION_CHARS} characters", "type": "string_too_long"}],
                "query",
            )
        try:
            note = container.browse().note(path, section, container.api_scope(event.raw_event))
        except NoteProblem as exc:
            status = PROBLEM_STATUS.get(exc.kind, 400)
            said = str(exc).replace(*REST_SEARCH)
            if status == 503:
                return unavailable("source_unavailable", said)
            return error(status, exc.kind, said)
        except IndexUnavailable as exc:
            return unavailable("index_unavailable", exc.public)
        return Response(200, content_types.APPLICATION_JSON, fit_note(note))  # within Lambda's 6 MB answer

    @router.get("/notes", include_in_schema=False)
    def get_catalog() -> Response[Any]:
        from kbsearch.errors import IndexUnavailable

        params = query()
        recent = params.get("recent", "10")
        if not _WHOLE_NUMBER.fullmatch(recent) or int(recent) > MAX_RECENT:
            return validation_error(
                [{"loc": ("recent",), "msg": f"a whole number from 0 to {MAX_RECENT}", "type": "int_type"}], "query"
            )
        prefix = params.get("path_prefix")
        if prefix is not None and len(prefix) > 500:
            return validation_error([{"loc": ("path_prefix",), "msg": "at most 500 characters"}], "query")
        try:
            catalog = container.browse().catalog(
                prefix, int(recent), container.api_scope(router.current_event.raw_event)
            )
        except ValueError as exc:  # a '..' segment
            return validation_error([{"loc": ("path_prefix",), "msg": str(exc), "type": "value_error"}], "query")
        except IndexUnavailable as exc:
            return unavailable("index_unavailable", exc.public)
        return Response(200, content_types.APPLICATION_JSON, catalog)

    return router
