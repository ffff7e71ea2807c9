"""The MCP Inspector's CLI (npm ``@modelcontextprotocol/inspector``, pinned in tools/inspector, installed by ``make
install`` where npm is) lists and calls every tool with every argument it can pass, reads resources and gets the
prompt: over stdio (``kbsearch mcp``) and over HTTP with the API key header (``kbsearch serve``). Its arguments
are typed by how they parse (``tags=["a","b"]`` is an array), which the plain schemas accept."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.local.process import serve_process
from tests.conftest import ROOT, copy_store, subprocess_env

INSPECTOR = ROOT / "tools" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"
API_KEY = "inspector-key"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed (the Inspector CLI needs it)"),
    pytest.mark.skipif(not INSPECTOR.exists(), reason="the Inspector CLI is not installed: make inspector (needs npm)"),
]


@pytest.fixture
def store(bm25_index: Path, tmp_path: Path) -> Path:
    path = tmp_path / "q"
    copy_store(bm25_index, path)
    return path


def inspect(target: list[str], env: dict[str, str], *args: str) -> Any:
    """One Inspector CLI call; its JSON answer (it prints a deprecation banner first)."""
    proc = subprocess.run([str(INSPECTOR), "--cli", *target, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=180, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout[proc.stdout.index("{") :])


CALLS: list[tuple[str, list[str]]] = [
    ("kb_search", ["query=ротация ключей", "top_k=3", 'tags=["ранбук","безопасность"]', 'types=["runbook"]',
                   'statuses=["active"]', "path_prefix=ru/ранбуки", "updated_after=2020-01-01", "rerank=false",
                   "expand=false"]),
    ("kb_search", ["query=restore a qdrant snapshot"]),
    ("kb_get_note", ["path=en/architecture/System overview.md", "section=Components"]),
    ("kb_get_note", ["path=ru/ранбуки/Ротация ключей.md"]),
    ("kb_list", ["path_prefix=en", "recent=3"]),
    ("kb_list", []),
]  # fmt: skip


def walk(target: list[str], env: dict[str, str]) -> None:
    tools = inspect(target, env, "--method", "tools/list")["tools"]
    assert {t["name"] for t in tools} == {"kb_search", "kb_get_note", "kb_list"}
    for name, arguments in CALLS:
        result = inspect(target, env, "--method", "tools/call", "--tool-name", name,
                         *(["--tool-arg", *arguments] if arguments else []))  # fmt: skip
        assert result.get("isError") is not True, (name, result)
        assert result["structuredContent"], name
        if name == "kb_search" and "tags" in " ".join(arguments):
            hits = result["structuredContent"]["results"]
            assert hits and all(h["path"].startswith("ru/ранбуки/") for h in hits)
    resources = inspect(target, env, "--method", "resources/list")["resources"]
    glossary = next(r["uri"] for r in resources if r["uri"].endswith("Glossary.md"))
    read = inspect(target, env, "--method", "resources/read", "--uri", glossary)
    assert "Glossary" in read["contents"][0]["text"]
    templates = inspect(target, env, "--method", "resources/templates/list")
    assert templates["resourceTemplates"][0]["uriTemplate"] == "kb://note/{+path}"
    assert [p["name"] for p in inspect(target, env, "--method", "prompts/list")["prompts"]] == ["kb_answer"]
    prompt = inspect(target, env, "--method", "prompts/get", "--prompt-name", "kb_answer",
                     "--prompt-args", "question=how do I rotate keys?")  # fmt: skip
    assert "how do I rotate keys?" in prompt["messages"][0]["content"]["text"]


def test_inspector_cli_over_stdio(store: Path) -> None:
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"))
    walk([sys.executable, "-m", "kbsearch_tools.cli", "mcp"], env)


@pytest.fixture
def served(store: Path) -> Iterator[Any]:
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"), KB_LOCAL_API_KEYS=API_KEY)
    with serve_process(env, cwd=ROOT) as server:
        yield server


def test_inspector_cli_over_http_with_the_api_key_header(served: Any) -> None:
    target = [f"{served.base_url}/mcp", "--transport", "http", "--header", f"x-api-key: {API_KEY}"]
    walk(target, subprocess_env())
    assert "Traceback" not in served.text()
