"""Session 24's debts (debts24): what session 23 left, each through the real interface."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env


def _kbsearch(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, env=subprocess_env(**env), cwd=ROOT,
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip


def _call(id_: int, name: str, arguments: dict[str, Any]) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": "tools/call",
                       "params": {"name": name, "arguments": arguments}}) + "\n"  # fmt: skip


# -- a second kbsearch mcp on a store another one holds ------------------------------------------------------------


def test_a_second_mcp_on_a_store_another_mcp_holds_names_it_and_says_it_lets_go(tmp_path: Path) -> None:
    """Two assistants each launch `kbsearch mcp` on one local index. The second one's tool error said "(a running
    kbsearch serve or kbsearch index) ... stop that process": it names the holder (its pid: kbsearch mcp) and the
    advice that fits (it lets go after --idle-close; call again then, or share one kbsearch serve)."""
    store = tmp_path / "q"
    assert _kbsearch("index", "sample-kb", QDRANT_PATH=str(store)).returncode == 0
    first = subprocess.Popen([*KBSEARCH_CMD, "mcp", "--kb", "sample-kb", "--idle-close", "0"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env=subprocess_env(QDRANT_PATH=str(store)), cwd=ROOT)  # fmt: skip
    assert first.stdin is not None and first.stdout is not None
    try:
        first.stdin.write(_call(1, "kb_list", {}))
        first.stdin.flush()
        assert json.loads(first.stdout.readline())["result"]["isError"] is False  # the store is open, and kept
        second = subprocess.run([*KBSEARCH_CMD, "mcp", "--kb", "sample-kb"], input=_call(1, "kb_search", {"query": "x"}),
                                capture_output=True, text=True, env=subprocess_env(QDRANT_PATH=str(store)), cwd=ROOT,
                                timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    finally:
        first.stdin.close()
        first.wait(timeout=PROCESS_TIMEOUT_S)
    assert second.returncode == 0, second.stderr
    answer = json.loads(second.stdout.splitlines()[0])["result"]
    text = answer["content"][0]["text"]
    assert answer["isError"] is True
    assert f"(pid {first.pid}: kbsearch mcp)" in text, text
    assert "--idle-close" in text and "call the tool again" in text, text
    assert "serve or kbsearch index" not in text and str(store) not in text, text  # no path said
    assert "Traceback" not in second.stderr

