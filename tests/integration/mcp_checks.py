"""One walk through everything kb-search's MCP server offers, with the official SDK client, and the checks on what
comes back: shared by the HTTP tests (in-process and over ``kbsearch serve``) and the stdio tests (``kbsearch mcp``
local and ``--remote``), so every transport answers the same questions the same way. The sample KB is assumed."""

from __future__ import annotations

from typing import Any

import jsonschema
from mcp import Client
from mcp.shared.exceptions import MCPError

NOTE = "ru/ранбуки/Ротация ключей.md"
LINKED = "en/architecture/System overview.md"


def find_mcp_error(exc: BaseException) -> MCPError | None:
    if isinstance(exc, MCPError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = find_mcp_error(inner)
        if found is not None:
            return found
    return None


async def rpc_error(call: Any) -> MCPError:
    """The JSON-RPC error an SDK call raises (failing when it returns instead)."""
    try:
        await call
    except BaseException as exc:
        found = find_mcp_error(exc)
        if found is None:
            raise
        return found
    raise AssertionError("expected a JSON-RPC error")


async def walk(client: Client) -> dict[str, Any]:
    """List and call every tool (with every argument it takes), every resource method and the prompt."""
    out: dict[str, Any] = {"tools": await client.list_tools()}
    out["search"] = await client.call_tool("kb_search", {"query": "restore a qdrant snapshot", "top_k": 3})
    out["search_filtered"] = await client.call_tool("kb_search", {
        "query": "ротация ключей", "top_k": 5, "tags": ["ранбук"], "types": ["runbook"], "statuses": ["active"],
        "path_prefix": "ru/ранбуки", "updated_after": "2020-01-01", "rerank": False, "expand": False,
    })  # fmt: skip
    out["note"] = await client.call_tool("kb_get_note", {"path": NOTE})
    out["linked"] = await client.call_tool("kb_get_note", {"path": LINKED})
    out["section"] = await client.call_tool("kb_get_note", {"path": LINKED, "section": "Components"})
    out["list"] = await client.call_tool("kb_list", {"path_prefix": "en", "recent": 3})
    out["list_default"] = await client.call_tool("kb_list", {})
    resources: list[Any] = []
    cursor = None
    pages = 0
    while True:
        page = await client.list_resources(cursor=cursor)
        resources += page.resources
        pages += 1
        cursor = page.next_cursor
        if cursor is None or pages > 20:
            break
    out["resources"] = resources
    out["read"] = await client.read_resource(next(r.uri for r in resources if str(r.uri).endswith("Glossary.md")))
    out["read_cyrillic"] = await client.read_resource(next(r.uri for r in resources if r.name == NOTE))
    out["templates"] = await client.list_resource_templates()
    out["prompts"] = await client.list_prompts()
    out["prompt"] = await client.get_prompt("kb_answer", {"question": "как ротировать ключи?"})
    out["unknown_resource"] = await rpc_error(client.read_resource("kb://note/en/No such note.md"))
    out["foreign_resource"] = await rpc_error(client.read_resource("file:///etc/passwd"))
    out["bad_cursor"] = await rpc_error(client.list_resources(cursor="n1.bm93aGVyZS5tZA", cache_mode="bypass"))
    out["unknown_prompt"] = await rpc_error(client.get_prompt("kb_delete", {}))
    out["unknown_tool"] = await rpc_error(client.call_tool("kb_delete_everything", {}))
    return out


def check(out: dict[str, Any]) -> None:
    """What every transport must answer for :func:`walk` (structured content validated against output schemas)."""
    tools = {t.name: t for t in out["tools"].tools}
    assert set(tools) == {"kb_search", "kb_get_note", "kb_list"}
    for tool in tools.values():
        schema = tool.input_schema
        assert schema["type"] == "object" and tool.annotations is not None and tool.annotations.read_only_hint
        for prop in schema["properties"].values():
            assert "anyOf" not in prop and "oneOf" not in prop and "$ref" not in prop, prop  # plain types only
            assert "type" in prop
    for key in ("search", "search_filtered", "note", "linked", "section", "list", "list_default"):
        result = out[key]
        assert not result.is_error, (key, result.content)
        name = {"search": "kb_search", "search_filtered": "kb_search", "list": "kb_list", "list_default": "kb_list"}
        jsonschema.validate(result.structured_content, tools[name.get(key, "kb_get_note")].output_schema)
        assert result.content[0].text
    paths = [hit["path"] for hit in out["search"].structured_content["results"]]
    assert "en/runbooks/Runbook - restore a Qdrant snapshot.md" in paths
    filtered = out["search_filtered"].structured_content["results"]
    assert filtered and all(h["path"].startswith("ru/ранбуки/") and "ранбук" in h["tags"] for h in filtered)
    note = out["note"].structured_content
    assert note["frontmatter"]["id"] == "KB-122" and note["body"].startswith("# Ротация ключей провайдеров")
    linked = out["linked"].structured_content["links"]
    assert "en/providers/DeepInfra.md" in [r["path"] for r in linked["outgoing"]]
    assert "en/Onboarding.md" in [r["path"] for r in linked["backlinks"]]
    section = out["section"].structured_content
    assert section["section"][-1] == "Components" and section["body"].startswith("## Components")
    listing = out["list"].structured_content
    assert listing["notes"] > 10 and len(listing["recent"]) == 3 and listing["tags"]
    assert all(n["path"].startswith("en/") for n in listing["recent"])
    resources = out["resources"]
    names = [r.name for r in resources]
    assert len(names) == len(set(names)) == out["list_default"].structured_content["notes"]
    assert all(str(r.uri).startswith("kb://note/") and r.mime_type == "text/markdown" for r in resources)
    (content,) = out["read"].contents
    assert content.mime_type == "text/markdown" and "Glossary" in content.text
    (cyrillic,) = out["read_cyrillic"].contents
    assert "Ротация ключей провайдеров" in cyrillic.text
    (template,) = out["templates"].resource_templates
    assert template.uri_template == "kb://note/{+path}"
    assert [p.name for p in out["prompts"].prompts] == ["kb_answer"]
    message = out["prompt"].messages[0]
    assert message.role == "user" and "как ротировать ключи?" in message.content.text
    assert "kb_search" in message.content.text and "cite" in message.content.text.lower()
    assert out["unknown_resource"].error.code == -32002 and "no note at" in out["unknown_resource"].error.message
    assert out["foreign_resource"].error.code == -32002
    assert out["bad_cursor"].error.code == -32602 and "cursor" in out["bad_cursor"].error.message
    assert out["unknown_prompt"].error.code == -32602
    assert out["unknown_tool"].error.code == -32602 and "kb_delete_everything" in out["unknown_tool"].error.message


# -- params of every JSON type in every slot: shared by the HTTP and stdio hostile-input tests ----------------------
#: One value of every JSON type (and the strings that matter: empty, huge), for every slot a method reads.
JSON_VALUES: list[Any] = [None, True, 0, -1, 1.5, 1e300, "", "x" * 60_000, [], ["kb_search"], {}, {"name": "kb_search"}]
#: (method, the params it is sent with, the slot that gets each value)
PARAM_SLOTS: list[tuple[str, dict[str, Any], str]] = [
    ("tools/call", {"name": "kb_list", "arguments": {}}, "name"),
    ("tools/call", {"name": "kb_list", "arguments": {}}, "arguments"),
    ("resources/read", {"uri": "kb://note/en/Glossary.md"}, "uri"),
    ("resources/list", {}, "cursor"),
    ("prompts/get", {"name": "kb_answer", "arguments": {"question": "q"}}, "name"),
    ("prompts/get", {"name": "kb_answer", "arguments": {"question": "q"}}, "arguments"),
    (
        "initialize",
        {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}},
        "protocolVersion",
    ),
    ("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}, "capabilities"),
    ("tools/list", {}, "cursor"),
    ("ping", {}, "_meta"),
]


def slot_messages(modern: bool) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Every (method, slot, value) as a JSON-RPC request (ids 1, 2, ...) with the HTTP headers its era sends (the
    2026-07-28 envelope in ``_meta`` and the headers that must match it; ``initialize`` is handshake-only)."""
    out: list[tuple[dict[str, Any], dict[str, str]]] = []
    for method, base, slot in PARAM_SLOTS:
        if modern and (method == "initialize" or slot == "_meta"):
            continue
        for value in JSON_VALUES:
            params = {**base, slot: value}
            headers: dict[str, str] = {}
            if modern:
                params["_meta"] = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                   "io.modelcontextprotocol/clientCapabilities": {}}  # fmt: skip
                headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
                named = params.get("uri" if method == "resources/read" else "name")
                if method in ("tools/call", "prompts/get", "resources/read") and isinstance(named, str):
                    headers["Mcp-Name"] = named if named.isascii() and len(named) < 1000 else "x"
            out.append(({"jsonrpc": "2.0", "id": len(out) + 1, "method": method, "params": params}, headers))
    return out


def check_slot_answer(message: dict[str, Any], answer: dict[str, Any]) -> None:
    """A result, or an error that blames the request (never -32603, the server's own fault), with the request's
    id, its message echoing no more than a few dozen characters of it (``data.uri`` of -32002 is the URI asked
    for, as the spec has it)."""
    assert answer.get("id") == message["id"], (message["method"], answer)
    error = answer.get("error")
    if error is not None:
        assert error["code"] in (-32600, -32601, -32602, -32002, -32020, -32022), (message["method"], answer)
        assert "x" * 100 not in error["message"], (message["method"], error["message"][:300])
    else:
        assert "x" * 100 not in str(answer["result"].get("content")), (message["method"], str(answer)[:300])
