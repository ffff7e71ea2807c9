"""POST /mcp with the official MCP SDK as the client, in both eras, in-process and over real HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import jsonschema
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from kbsearch_tools.local.apigw import HttpRequest, build_event, parse_result
from kbsearch_tools.local.process import serve_process
from tests.conftest import ROOT, copy_store, subprocess_env
from tests.integration.mcp_checks import check, find_mcp_error, walk

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


@pytest.fixture
def app(load_search_app, bm25_index: Path, tmp_path: Path):
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    return load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"))


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []


def in_process_client(app, mode: str, recorder: Recorder | None = None) -> Client:
    """The SDK's HTTP client on a mock transport that turns each request into an API Gateway event."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        headers = [(k, v) for k, v in request.headers.items()]
        if recorder is not None:
            recorder.requests.append((request.method, dict(request.headers), json.loads(body) if body else None))
        event = build_event(HttpRequest(request.method, request.url.path, request.url.query.decode()
                                        if isinstance(request.url.query, bytes) else str(request.url.query),
                                        headers, body), "/mcp", {}, "dev")  # fmt: skip
        answer = parse_result(app(event))
        return httpx2.Response(answer.status, headers=answer.headers, content=answer.body)

    http_client = httpx2.AsyncClient(transport=httpx2.MockTransport(handle))
    return Client(streamable_http_client("http://kb.local/mcp", http_client=http_client), mode=mode)


def run(coro_fn: Any, *args: Any) -> Any:
    return anyio.run(coro_fn, *args)


def tool_schemas(tools: Any) -> dict[str, dict[str, Any]]:
    return {t.name: t.output_schema for t in tools.tools}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_client_walks_every_tool_resource_and_prompt_in_process(app, mode: str) -> None:
    recorder = Recorder()

    async def main() -> dict[str, Any]:
        async with in_process_client(app, mode, recorder) as client:
            return await walk(client)

    check(run(main))
    methods = [body["method"] for _, _, body in recorder.requests if body]
    if mode == "auto":
        assert methods[0] == "server/discover" and "initialize" not in methods
        named = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
        calls = [(h, b) for _, h, b in recorder.requests if b and b["method"] in named]
        assert all(h["mcp-method"] == b["method"] for h, b in calls)
        assert all(h["mcp-protocol-version"] == MODERN for h, _ in calls)
    else:
        assert methods[:2] == ["initialize", "notifications/initialized"]
    assert {"resources/list", "resources/read", "prompts/get", "tools/call"} <= set(methods)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_bad_arguments_and_unknown_notes_are_tool_errors(app, mode: str) -> None:
    async def main() -> list[Any]:
        async with in_process_client(app, mode) as client:
            return [
                await client.call_tool("kb_search", {"query": ""}),
                await client.call_tool("kb_search", {"query": "x", "top_k": 99}),
                await client.call_tool("kb_search", {"query": "x", "colour": "blue"}),
                await client.call_tool("kb_get_note", {"path": "en/does-not-exist.md"}),
                await client.call_tool("kb_get_note", {"path": "../../etc/passwd.md"}),
                await client.call_tool("kb_get_note", {"path": "attachments/architecture.svg"}),
            ]

    empty, too_many, unknown_field, missing, escape, not_a_note = run(main)
    for result in (empty, too_many, unknown_field, missing, escape, not_a_note):
        assert result.is_error
    assert "query" in empty.content[0].text and "top_k" in too_many.content[0].text
    assert "colour" in unknown_field.content[0].text
    assert "no note at" in missing.content[0].text and "kb_search" in missing.content[0].text
    assert "not a note path" in escape.content[0].text and ".." in escape.content[0].text
    assert "not a note" in not_a_note.content[0].text


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_unknown_tool_is_a_protocol_error(app, mode: str) -> None:
    async def main() -> None:
        async with in_process_client(app, mode) as client:
            await client.call_tool("kb_delete_everything", {})

    with pytest.raises(BaseException) as info:
        run(main)
    error = find_mcp_error(info.value)
    assert error is not None and error.error.code == -32602 and "kb_delete_everything" in error.error.message


def post(app, body: Any, headers: dict[str, str] | None = None, method: str = "POST", raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    hdrs = [("Content-Type", "application/json"), *(headers or {}).items()]
    result = parse_result(app(build_event(HttpRequest(method, "/mcp", "", hdrs, data), "/mcp", {}, "dev")))
    return result.status, dict(result.headers), json.loads(result.body) if result.body else None


def modern_headers(method: str, name: str | None = None, version: str = MODERN) -> dict[str, str]:
    headers = {"MCP-Protocol-Version": version, "Mcp-Method": method}
    if name:
        headers["Mcp-Name"] = name
    return headers


def test_protocol_errors(app) -> None:
    # wrong protocol version: -32022 with the supported list
    meta = {**META, "io.modelcontextprotocol/protocolVersion": "2030-01-01"}
    status, _, body = post(app, {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}},
                           modern_headers("tools/list", version="2030-01-01"))  # fmt: skip
    assert status == 400 and body["error"]["code"] == -32022 and body["error"]["data"]["supported"] == [MODERN]
    # header and body disagree: -32020
    request = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "kb_search", "arguments": {"query": "x"}, "_meta": META}}  # fmt: skip
    status, _, body = post(app, request, modern_headers("tools/list"))
    assert status == 400 and body["error"]["code"] == -32020
    status, _, body = post(app, request, modern_headers("tools/call", name="kb_get_note"))
    assert status == 400 and body["error"]["code"] == -32020
    status, _, body = post(
        app, request, {**modern_headers("tools/call", "kb_search"), "MCP-Protocol-Version": "2026-07-29"}
    )
    assert status == 400 and body["error"]["code"] == -32020
    # modern request without the envelope
    status, _, body = post(
        app, {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}}, modern_headers("tools/list")
    )
    assert status == 400 and body["error"]["code"] == -32602
    # parse error, a batch from a client past 2025-03-26 (test_mcp_batches.py), not a request, unknown method
    status, _, body = post(app, None, raw=b"{not json")
    assert status == 400 and body["error"]["code"] == -32700
    status, _, body = post(app, [{"jsonrpc": "2.0", "id": 1, "method": "ping"}], {"MCP-Protocol-Version": "2025-11-25"})
    assert status == 400 and body["error"]["code"] == -32600
    status, _, body = post(app, {"id": 1, "method": "ping"})
    assert status == 400 and body["error"]["code"] == -32600
    status, _, body = post(app, {"jsonrpc": "2.0", "id": 4, "method": "sampling/createMessage",
                                 "params": {"_meta": META}}, modern_headers("sampling/createMessage"))  # fmt: skip
    assert status == 404 and body["error"]["code"] == -32601
    status, _, body = post(app, {"jsonrpc": "2.0", "id": 5, "method": "sampling/createMessage"})
    assert status == 200 and body["error"]["code"] == -32601
    # Mcp-Name mirrors resources/read's uri (base64-wrapped when not ASCII, as the SDK sends it)
    uri = "kb://note/ru/ранбуки/Ротация ключей.md"
    read = {"jsonrpc": "2.0", "id": 6, "method": "resources/read", "params": {"uri": uri, "_meta": META}}
    status, _, body = post(app, read, modern_headers("resources/read", name="kb://note/en/Glossary.md"))
    assert status == 400 and body["error"]["code"] == -32020
    wrapped = "=?base64?" + base64.b64encode(uri.encode()).decode() + "?="
    status, _, body = post(app, read, modern_headers("resources/read", name=wrapped))
    assert status == 200 and "Ротация ключей провайдеров" in body["result"]["contents"][0]["text"]
    # notifications are acknowledged with an empty 202
    status, _, body = post(app, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert status == 202 and body is None
    # GET: 405 with Allow
    status, headers, _ = post(app, None, method="GET", raw=b"")
    assert status == 405 and headers["Allow"] == "POST"


def test_modern_results_carry_result_type_and_cache_hints(app) -> None:
    status, _, body = post(app, {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": META}},
                           modern_headers("server/discover"))  # fmt: skip
    result = body["result"]
    assert status == 200 and result["supportedVersions"] == [MODERN] and result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "kb-search"
    _, _, body = post(app, {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": META}},
                      modern_headers("tools/list"))  # fmt: skip
    assert body["result"]["resultType"] == "complete" and body["result"]["ttlMs"] >= 0
    assert body["result"]["cacheScope"] in ("public", "private")
    _, _, body = post(app, {"jsonrpc": "2.0", "id": 3, "method": "initialize",
                            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                       "clientInfo": {"name": "t", "version": "1"}}})  # fmt: skip
    assert body["result"]["protocolVersion"] == "2025-11-25" and "resultType" not in body["result"]


@pytest.fixture
def served_with_keys(bm25_index: Path, tmp_path: Path) -> Iterator[str]:
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"), KB_LOCAL_API_KEYS="mcp-key")
    with serve_process(env, cwd=ROOT) as server:
        yield server.base_url


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_client_over_http_with_an_api_key(served_with_keys: str, mode: str) -> None:
    async def main() -> Any:
        http_client = httpx2.AsyncClient(headers={"x-api-key": "mcp-key"}, timeout=60)
        async with Client(streamable_http_client(f"{served_with_keys}/mcp", http_client=http_client), mode=mode) as c:
            tools = await c.list_tools()
            result = await c.call_tool("kb_search", {"query": "ротация ключей", "tags": ["ранбук"]})
            return tools, result

    tools, result = run(main)
    assert not result.is_error
    jsonschema.validate(result.structured_content, tool_schemas(tools)["kb_search"])
    assert all("ранбук" in hit["tags"] for hit in result.structured_content["results"])


def test_missing_api_key_is_403_through_serve(served_with_keys: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    assert httpx.post(f"{served_with_keys}/mcp", json=body, timeout=10).status_code == 403
    assert (
        httpx.post(f"{served_with_keys}/mcp", json=body, headers={"x-api-key": "wrong"}, timeout=10).status_code == 403
    )
    ok = httpx.post(f"{served_with_keys}/mcp", json=body, headers={"x-api-key": "mcp-key"}, timeout=10)
    names = {t["name"] for t in ok.json()["result"]["tools"]}
    assert ok.status_code == 200 and names == {"kb_search", "kb_get_note", "kb_list"}
    get = httpx.get(f"{served_with_keys}/mcp", headers={"x-api-key": "mcp-key"}, timeout=10)
    assert get.status_code == 405 and get.headers["allow"] == "POST"


def test_a_resource_uri_s_scheme_and_host_are_read_in_any_case_its_path_is_not(app) -> None:
    """RFC 3986: a URI's scheme and host are case-insensitive, so ``KB://NOTE/en/Glossary.md`` names the note
    ``kb://note/en/Glossary.md`` does (it was -32002, adv39's leftover); the path keeps its case, and a look-alike
    of the scheme outside ASCII (the Kelvin sign, which ``str.lower`` makes ``k``) names nothing."""

    def read(uri: str) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": 7, "method": "resources/read", "params": {"uri": uri}}
        status, _, answer = post(app, body)
        assert status == 200
        return answer

    for uri in ("KB://NOTE/en/Glossary.md", "Kb://Note/en/Glossary.md", "kb://note/en/Glossary.md"):
        contents = read(uri)["result"]["contents"][0]
        assert contents["uri"] == "kb://note/en/Glossary.md" and contents["text"]
    for uri in ("kb://note/EN/GLOSSARY.MD", "\u212ab://note/en/Glossary.md", "kb:/note/en/Glossary.md"):
        assert read(uri)["error"]["code"] == -32002, uri
