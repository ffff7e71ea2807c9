"""The API's error envelopes, in one place: ``{"error": code, "message": text}`` (plus ``detail`` for validation
errors), as a Powertools ``Response`` or, before routing, as a raw API Gateway proxy result; and on ``/mcp``, whose
clients read JSON-RPC, every error as a JSON-RPC error object (``{"jsonrpc": "2.0", "id": null, "error": {...}}``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.shared.json_encoder import Encoder

from kbsearch.schemas import json_utf8

RETRY_AFTER_S = "5"


def json_text(value: Any) -> str:
    """``value`` as the API answers it (every JSON body: search, notes, MCP over HTTP, errors): compact UTF-8 JSON
    (:func:`kbsearch.schemas.json_utf8`, with Powertools' encoder). ASCII-escaped (Powertools' default), a Russian
    answer took six bytes a letter (``\\u0440``) where UTF-8 takes two."""
    return json_utf8(value, cls=Encoder)


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"error": code, "message": message},
        headers=headers,
    )


def unavailable(code: str, message: str) -> Response[Any]:
    """503 with ``Retry-After``: the caller may try again shortly."""
    return error(503, code, message, {"Retry-After": RETRY_AFTER_S})


def validation_error(errors: Iterable[Mapping[str, Any]], location: str | None = None) -> Response[Any]:
    """422 listing the first errors, field names cut (:func:`kbsearch.schemas.shown_errors`), and how many."""
    from kbsearch.schemas import errors_counted, shown_errors

    detail, count = shown_errors(errors)
    for entry in detail:
        entry["loc"] = ([location] if location else []) + entry["loc"]
    message = "the request is not valid" + errors_counted(count)
    return Response(
        status_code=422,
        content_type=content_types.APPLICATION_JSON,
        body={"error": "validation_error", "message": message, "detail": detail},
    )


def gateway_error(status: int, code: str, message: str, detail: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The same envelope as a proxy result, for answers given before the router runs (``detail``: field-level
    errors, as :func:`validation_error` lists them)."""
    return {
        "statusCode": status,
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "body": json_text({"error": code, "message": message} | ({"detail": detail} if detail is not None else {})),
        "isBase64Encoded": False,
    }


def repeated_parameter_error(name: str, count: int) -> dict[str, Any]:
    """422 for a single-valued query parameter given more than once (:func:`kbsearch.api.body.repeated_parameter`),
    as a proxy result, in :func:`validation_error`'s envelope."""
    detail = [{"loc": ["query", name], "msg": f"given {count} times; takes one value", "type": "repeated_parameter"}]
    message = f"the query parameter '{name}' is given {count} times; it takes one value"
    return gateway_error(422, "validation_error", message, detail)


def misspelled_parameter_error(name: str, route: str, known: tuple[str, ...]) -> dict[str, Any]:
    """422 for a query parameter spelling one a filtering GET takes otherwise, or naming one only POST takes
    (:func:`kbsearch.api.body.misspelled_parameter`)."""
    shown = name if len(name) <= 60 else name[:59] + "…"
    takes = ", ".join(known)
    detail = [{"loc": ["query", shown], "msg": f"not a parameter of GET {route}; it takes {takes} (a list: "
               "the parameter repeated, tags=a&tags=b)", "type": "unknown_parameter"}]  # fmt: skip
    return gateway_error(422, "validation_error", f"the query parameter {shown!r} is not one GET {route} takes "
                         f"(it takes {takes}); it was not applied", detail)  # fmt: skip


#: The routes whose errors are JSON-RPC error objects, never the REST envelope.
RPC_ROUTES = frozenset({"/mcp"})
#: JSON-RPC's codes for a request that is not one (a body too large, a method HTTP does not allow) and for a fault
#: of the server's own.
RPC_INVALID_REQUEST, RPC_INTERNAL_ERROR = -32600, -32603


def rpc_body(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}


def rpc_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(status, content_types.APPLICATION_JSON, rpc_body(code, message), headers=headers)


def gateway_rpc_error(status: int, code: int, message: str) -> dict[str, Any]:
    """:func:`rpc_error` as a proxy result, for answers given before the router runs."""
    return dict(gateway_error(status, "", ""), body=json_text(rpc_body(code, message)))
