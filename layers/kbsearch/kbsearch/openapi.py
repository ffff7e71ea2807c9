"""The parts of the OpenAPI document that Powertools cannot derive: the API key scheme, the JSON-RPC ``/mcp``
endpoint and Slack's form-encoded ``/slack/command``. Plain data: cheap to import."""

from __future__ import annotations

import copy
from typing import Any

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}
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
                    "schema": {
                        "type": "object",
                        "required": ["jsonrpc", "method"],
                        "properties": {
                            "jsonrpc": {"type": "string", "enum": ["2.0"]},
                            "id": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                            "method": {"type": "string"},
                            "params": {"type": "object"},
                        },
                    }
                }
            },
        },
        "responses": {
            "200": _json(_RPC_RESPONSE, "A JSON-RPC response (result or error)"),
            "202": {"description": "A notification, acknowledged"},
            "400": _json(_RPC_ERROR, "Parse error, invalid request or params, header mismatch, unsupported version"),
            "404": _json(_RPC_ERROR, "Method not found (2026-07-28 requests)"),
        },
    },
    "get": {
        "summary": "Not supported: the server sends no SSE stream",
        "operationId": "mcpGet",
        "security": [{"ApiKey": []}],
        "responses": {"405": _json(_ERROR, "Use POST")},
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
                    }
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
            "401": _json(_ERROR, "Not signed by Slack, or too old"),
            "503": _json(_ERROR, "The signing secret is not configured"),
        },
    }
}


def complete(schema: dict[str, Any], key_required_paths: tuple[str, ...] = ("/search",)) -> dict[str, Any]:
    """Powertools' document plus the API key scheme, ``/mcp`` and ``/slack/command``."""
    doc = copy.deepcopy(schema)
    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {})["ApiKey"] = {"type": "apiKey", "in": "header", "name": "x-api-key"}
    paths = doc.setdefault("paths", {})
    for path in key_required_paths:
        for operation in paths.get(path, {}).values():
            operation["security"] = [{"ApiKey": []}]
            operation.setdefault("responses", {})["413"] = _json(_ERROR, "Body over 64 KiB")
            operation["responses"]["503"] = _json(_ERROR, "The index is unavailable (with Retry-After)")
    paths["/mcp"] = copy.deepcopy(MCP_PATH)
    paths["/slack/command"] = copy.deepcopy(SLACK_PATH)
    return doc
