"""The parts of the OpenAPI document that Powertools cannot derive: the API key scheme, the JSON-RPC ``/mcp``
endpoint, Slack's form-encoded ``/slack/command``, the answers API Gateway gives before the function runs
(403 without a key, 411 for a body without a length, 413 over 10 MB, in its ``{"message"}`` shape) and the links
between operations that stateful testing follows (a search → the same search by query string → its top hit read
over MCP). Plain data: cheap to import."""

from __future__ import annotations

import copy
from typing import Any

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}
#: A body the JSON routes cannot read as sent: its media type, or a content coding (nothing is decoded).
_UNSUPPORTED = (
    "The body is not application/json in UTF-8, or has a Content-Encoding other than identity "
    "(answered with Accept-Encoding: identity)"
)
_CODED = "The body has a Content-Encoding other than identity (answered with Accept-Encoding: identity)"
_GATEWAY_ERROR = {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}}
_RPC_ERROR = {
    "type": "object",
    "required": ["jsonrpc", "error"],
    "properties": {
        "jsonrpc": {"type": "string", "enum": ["2.0"]},
        "id": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {}},
        },
    },
}
_RPC_RESPONSE = {
    "type": "object",
    "required": ["jsonrpc"],
    "properties": {
        "jsonrpc": {"type": "string", "enum": ["2.0"]},
        "id": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
        "result": {"type": "object"},
        "error": _RPC_ERROR["properties"]["error"],  # type: ignore[index]
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


MCP_PATH: dict[str, Any] = {
    "post": {
        "summary": "MCP (Model Context Protocol) over stateless Streamable HTTP: JSON-RPC 2.0",
        "operationId": "mcp",
        "security": [{"ApiKey": []}],
        "parameters": [
            {"name": "MCP-Protocol-Version", "in": "header", "required": False, "schema": {"type": "string"}},
            {"name": "Mcp-Method", "in": "header", "required": False, "schema": {"type": "string"}},
            {"name": "Mcp-Name", "in": "header", "required": False, "schema": {"type": "string"}},
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "examples": {
                        "initialize": {
                            "value": {
                                "jsonrpc": "2.0",
                                "id": 1,
                                "method": "initialize",
                                "params": {
                                    "protocolVersion": "2025-11-25",
                                    "capabilities": {},
                                    "clientInfo": {"name": "example", "version": "1"},
                                },
                            }
                        },
                        "toolsList": {"value": {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}},
                        "kbSearch": {
                            "value": {
                                "jsonrpc": "2.0",
                                "id": 3,
                                "method": "tools/call",
                                "params": {
                                    "name": "kb_search",
                                    "arguments": {"query": "restore a qdrant snapshot", "top_k": 3},
                                },
                            }
                        },
                        "kbGetNote": {
                            "value": {
                                "jsonrpc": "2.0",
                                "id": 4,
                                "method": "tools/call",
                                "params": {"name": "kb_get_note", "arguments": {"path": "en/Glossary.md"}},
                            }
                        },
                    },
                    "schema": {
                        "type": "object",
                        "required": ["jsonrpc", "method"],
                        "properties": {
                            "jsonrpc": {"type": "string", "enum": ["2.0"]},
                            "id": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                            "method": {"type": "string"},
                            "params": {"type": "object"},
                        },
                    },
                }
            },
        },
        "responses": {
            "200": _json(_RPC_RESPONSE, "A JSON-RPC response (result or error)"),
            "202": {"description": "A notification, acknowledged"},
            "400": _json(_RPC_ERROR, "Parse error, invalid request or params, header mismatch, unsupported version"),
            "404": _json(_RPC_ERROR, "Method not found (2026-07-28 requests)"),
            "413": _json(_RPC_ERROR, "Body over 64 KiB"),
            "415": _json(_RPC_ERROR, _UNSUPPORTED),
        },
    },
    "get": {
        "summary": "Not supported: the server sends no SSE stream",
        "operationId": "mcpGet",
        "security": [{"ApiKey": []}],
        "responses": {"405": _json(_RPC_ERROR, "Use POST (a JSON-RPC error object, as every error on /mcp)")},
    },
}

SLACK_PATH: dict[str, Any] = {
    "post": {
        "summary": "Slack /kb slash command (authenticated by Slack's request signature, not an API key)",
        "operationId": "slackCommand",
        "parameters": [
            {"name": "X-Slack-Signature", "in": "header", "required": False, "schema": {"type": "string"}},
            {"name": "X-Slack-Request-Timestamp", "in": "header", "required": False, "schema": {"type": "string"}},
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "example": {
                        "command": "/kb",
                        "text": "help",
                        "user_id": "U1",
                        "channel_id": "C1",
                        "team_id": "T1",
                        "response_url": "https://hooks.slack.com/commands/T1/1/x",
                        "trigger_id": "1.2.3",
                    },
                    "schema": {
                        "type": "object",
                        "properties": {
                            name: {"type": "string"}
                            for name in (
                                "command",
                                "text",
                                "user_id",
                                "channel_id",
                                "team_id",
                                "response_url",
                                "trigger_id",
                                "api_app_id",
                            )
                        },
                    },
                }
            },
        },
        "responses": {
            "200": _json(
                {
                    "type": "object",
                    "required": ["text"],
                    "properties": {"response_type": {"type": "string"}, "text": {"type": "string"}},
                },
                "Acknowledgement (the answer follows on response_url)",
            ),
            "400": _json(_ERROR, "Signed, but the form is not readable (not UTF-8, too many fields)"),
            "401": _json(_ERROR, "Not signed by Slack, too old, or a replay of an accepted request"),
            "503": _json(_ERROR, "The signing secret is not configured, or the replay store is unavailable"),
        },
    }
}


SLACK_INTERACTIVE_PATH: dict[str, Any] = {
    "post": {
        "summary": "Slack button presses on /kb answers (authenticated by Slack's request signature, not an API key)",
        "operationId": "slackInteractive",
        "parameters": copy.deepcopy(SLACK_PATH["post"]["parameters"]),
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["payload"],
                        "properties": {"payload": {"type": "string", "description": "block_actions JSON"}},
                    }
                }
            },
        },
        "responses": {
            "200": {"description": "Acknowledged (empty body); the worker answers on response_url"},
            "400": _json(_ERROR, "Signed, but not an interaction payload (no payload field, not JSON)"),
            "401": _json(_ERROR, "Not signed by Slack, too old, or a replay of an accepted request"),
            "503": _json(_ERROR, "The signing secret is not configured, or the replay store is unavailable"),
        },
    }
}


SEARCH_EXAMPLES: dict[str, Any] = {
    "runbook": {"value": {"query": "restore a qdrant snapshot", "top_k": 3}},
    "filtered": {"value": {"query": "ротация ключей", "filters": {"tags": ["security"], "path_prefix": "ru/"},
                           "rerank": False, "expand": False, "min_score": 0.0}},
}  # fmt: skip


def _search_links(get_id: str | None, post_id: str | None) -> dict[str, dict[str, Any]]:
    """Links out of a search answer: the same query through the other /search form, and its top hit over MCP."""
    read_top_hit = {
        "operationId": "mcp",
        "requestBody": {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "kb_get_note", "arguments": {"path": "$response.body#/results/0/path"}},
        },
    }
    links: dict[str, dict[str, Any]] = {"ReadTopHit": read_top_hit}
    if get_id:
        links["SearchByQueryString"] = {"operationId": get_id, "parameters": {"query.q": "$response.body#/query"}}
    if post_id:
        links["SearchByBody"] = {"operationId": post_id, "requestBody": {"query": "$response.body#/query"}}
    return links


def _model(components: dict[str, Any], model: Any) -> dict[str, Any]:
    """A pydantic model's schema under ``components.schemas`` (its nested models too); a ``$ref`` to it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = components.setdefault("schemas", {})
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def notes_paths(components: dict[str, Any]) -> dict[str, Any]:
    """``GET /notes/{path}`` and ``GET /notes`` (Powertools cannot describe a greedy ``{path+}`` route)."""
    from kbsearch.schemas import CatalogResponse, NoteResponse

    note, catalog = _model(components, NoteResponse), _model(components, CatalogResponse)
    return {
        "/notes/{path}": {
            "get": {
                "summary": "Read a note (whole or one section) with its headings, links and backlinks",
                "operationId": "getNote",
                "parameters": [
                    {"name": "path", "in": "path", "required": True,
                     "example": "en/runbooks/Runbook - restore a Qdrant snapshot.md",  # has a "Steps" section
                     "description": "the note's path as search returns it (percent-encoded; '/' may stay as is)",
                     "schema": {"type": "string", "minLength": 4, "maxLength": 1024, "pattern": "\\.md$"}},
                    {"name": "section", "in": "query", "required": False, "example": "Steps",
                     "description": "a heading ('Steps'), the tail of a heading path ('Rotation > Steps'), "
                                    "or a search hit's heading as given",
                     "schema": {"type": "string", "maxLength": 500}},
                ],
                "responses": {
                    "200": _json(note, "The note"),
                    "400": _json(_ERROR, "Not a note path (control characters, '..', empty segments, not .md)"),
                    "404": _json(_ERROR, "No note at this path, or no such section (the message lists the headings)"),
                    "422": _json(_ERROR, "The note's bytes cannot be read (not UTF-8, binary, too large)"),
                    "503": _json(_ERROR, "The KB source, or the index a caller's read asks first, is unavailable "
                                         "(with Retry-After)"),
                },
            }
        },
        "/notes": {
            "get": {
                "summary": "What the search filters accept (tags, types, statuses, folders) with counts; recent notes",
                "operationId": "listNotes",
                "parameters": [
                    {"name": "path_prefix", "in": "query", "required": False, "example": "en/runbooks",
                     "schema": {"type": "string", "maxLength": 500}},
                    {"name": "recent", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 0, "maximum": 50, "default": 10}},
                ],
                "responses": {
                    "200": _json(catalog, "Filter values with note counts, and the recent notes"),
                    "422": _json(_ERROR, "A parameter out of range"),
                    "503": _json(_ERROR, "The index is unavailable (with Retry-After)"),
                },
            }
        },
    }  # fmt: skip


def complete(
    schema: dict[str, Any],
    key_required_paths: tuple[str, ...] = ("/search", "/mcp", "/whoami", "/notes", "/notes/{path}"),
) -> dict[str, Any]:
    """Powertools' document plus the API key scheme, ``/mcp``, ``/slack/command``, API Gateway's own answers and
    the links between the search operations."""
    doc = copy.deepcopy(schema)
    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {})["ApiKey"] = {
        "type": "apiKey", "in": "header", "name": "x-api-key",
        "description": "Each key reads the notes of its access groups (and public ones): GET /whoami names them. "
                       "/search and the MCP tools answer only from those notes; a note outside them is answered "
                       "as a note that does not exist.",
    }  # fmt: skip
    paths = doc.setdefault("paths", {})
    paths["/mcp"] = copy.deepcopy(MCP_PATH)
    paths["/slack/command"] = copy.deepcopy(SLACK_PATH)
    paths["/slack/interactive"] = copy.deepcopy(SLACK_INTERACTIVE_PATH)
    paths.update(notes_paths(components))
    search = paths.get("/search", {})
    for method, operation in search.items():
        responses = operation.setdefault("responses", {})
        responses["413"] = _json(_ERROR, "Body over 64 KiB")
        responses["503"] = _json(_ERROR, "The index is unavailable (with Retry-After)")
        if method == "post":
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content is not None:
                content["examples"] = copy.deepcopy(SEARCH_EXAMPLES)
            responses["400"] = _json(_ERROR, "The body is not UTF-8 or not JSON (too deep, duplicate keys, ...)")
            responses["415"] = _json(_ERROR, _UNSUPPORTED)
        for parameter in operation.get("parameters", []):
            if parameter.get("name") == "q":
                parameter["example"] = "reranker outage"
        if "200" in responses:
            get_id = search.get("get", {}).get("operationId")
            post_id = search.get("post", {}).get("operationId")
            responses["200"]["links"] = _search_links(get_id if method == "post" else None, post_id)
    for path, item in paths.items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            if not operation.get("parameters") and "requestBody" not in operation:
                responses.pop("422", None)  # nothing to validate (GET /health): Powertools lists one anyway
            if path in key_required_paths:
                operation["security"] = [{"ApiKey": []}]
                responses["403"] = _json(_GATEWAY_ERROR, "API Gateway: no valid x-api-key")
                two_keys = "x-api-key names more than one key"
                if "400" in responses:
                    entry = responses["400"]
                    entry["description"] = f"{entry.get('description', '')}; or {two_keys}".lstrip("; ")
                    schema = entry.get("content", {}).get("application/json", {}).get("schema")
                    if schema is not None:
                        entry["content"]["application/json"]["schema"] = {"anyOf": [schema, _GATEWAY_ERROR]}
                else:
                    responses["400"] = _json({"anyOf": [_ERROR, _GATEWAY_ERROR]}, two_keys)
                if path == "/mcp":
                    responses["403"] = _json(
                        {"anyOf": [_GATEWAY_ERROR, _RPC_ERROR]},
                        "API Gateway: no valid x-api-key; or (JSON-RPC) an Origin of another site's web page",
                    )
            if method in ("post", "put", "patch"):
                responses["411"] = _json(_GATEWAY_ERROR, "API Gateway: a body without a Content-Length")
                responses.setdefault("415", _json(_ERROR, _CODED))
                big = responses.get("413", {}).get("content", {}).get("application/json", {}).get("schema")
                responses["413"] = _json(
                    {"anyOf": [big or _ERROR, _GATEWAY_ERROR]}, "Body over 64 KiB (10 MB at the gateway)"
                )
    return doc
