"""Round 36's adversarial pass, part two (adv36b): MCP over HTTP through API Gateway events, as a hand-rolled client
speaks it. ``params`` that is no object is -32602 in either era, but its HTTP status is the era's: a 2025-11-25 (or
earlier) client is answered 200 for a JSON-RPC error about its params, as it is for every other such error (an
unknown tool); it was 400, decided before the era was read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.integration.test_mcp_batches import post

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


@pytest.fixture
def app(load_search_app, bm25_store: Path):
    return load_search_app(QDRANT_PATH=str(bm25_store), KB_SOURCE=str(ROOT / "sample-kb"))


def call(id_: int, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


@pytest.mark.parametrize("version", [None, "2025-11-25", "2025-06-18", "2025-03-26"])
def test_params_that_are_no_object_get_the_status_of_the_clients_era(app, version: str | None) -> None:
    headers = {"MCP-Protocol-Version": version} if version else {}
    # the era's status for an error about params: an unknown tool's
    status, unknown = post(app, call(1, {"name": "kb_no_such_tool", "arguments": {}}), headers)
    assert unknown["error"]["code"] == -32602 and status == 200, (status, unknown)
    for params in (["kb_search", {"query": "deploy"}], "kb_search", 42, True):
        got, body = post(app, call(2, params), headers)
        assert body["error"]["code"] == -32602 and body["id"] == 2, body
        assert got == status, f"params {params!r} under {version}: HTTP {got}, an unknown tool's {status}"


def test_params_that_are_no_object_are_still_400_for_a_2026_07_28_client(app) -> None:
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "kb_no_such_tool"}
    status, unknown = post(app, call(1, {"name": "kb_no_such_tool", "arguments": {}, "_meta": META}), headers)
    assert unknown["error"]["code"] == -32602 and status == 400, (status, unknown)
    got, body = post(app, call(2, ["kb_search"]), {**headers, "Mcp-Name": "kb_search"})
    assert (got, body["error"]["code"], body["id"]) == (400, -32602, 2), body
