"""Round 36's cold review of adv36b (rev36d): MCP over HTTP through API Gateway events. A request whose
``MCP-Protocol-Version`` header names a version this server does not speak is answered -32022 with the versions it
does (``data.supported``), whatever its ``params`` hold: with ``params`` an array (or any other non-object) it was
-32602 "params must be an object", which tells the client nothing of the version it must change (the same request
with an object as ``params`` was -32022)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.integration.test_mcp_batches import post


@pytest.fixture
def app(load_search_app, bm25_store: Path):
    return load_search_app(QDRANT_PATH=str(bm25_store), KB_SOURCE=str(ROOT / "sample-kb"))


def call(id_: int, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


@pytest.mark.parametrize("version", ["2031-01-01", "banana", "", "2026-07-28 "])
def test_an_unsupported_version_header_is_named_whatever_params_hold(app, version: str) -> None:
    headers = {"MCP-Protocol-Version": version, "Mcp-Method": "tools/call", "Mcp-Name": "kb_search"}
    status, as_object = post(app, call(1, {"name": "kb_search", "arguments": {"query": "deploy"}}), headers)
    assert (status, as_object["error"]["code"]) == (400, -32022), as_object
    for params in (["kb_search", {"query": "deploy"}], "kb_search", 42, True):
        got, body = post(app, call(2, params), headers)
        assert (got, body["error"]["code"], body["id"]) == (400, -32022, 2), f"params {params!r}: {got} {body}"
        assert "2026-07-28" in body["error"]["data"]["supported"], body


@pytest.mark.parametrize("params", [["kb_search"], "kb_search", 42])
def test_a_notification_with_params_no_object_is_accepted_in_every_era(app, params: Any) -> None:
    for headers in ({}, {"MCP-Protocol-Version": "2025-11-25"}, {"MCP-Protocol-Version": "2031-01-01"}):
        status, body = post(app, {"jsonrpc": "2.0", "method": "notifications/initialized", "params": params}, headers)
        assert (status, body) == (202, None), (headers, status, body)
