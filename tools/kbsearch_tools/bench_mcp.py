"""``kbsearch bench mcp``: the cold start of ``kbsearch mcp`` as a desktop assistant sees it: from launching the
process to the answer of its first tool call (``kb_search``), over stdio, in each protocol era:

- 2025-11-25: ``initialize`` → answer → ``notifications/initialized`` + ``tools/call``;
- 2026-07-28: ``server/discover`` → answer → ``tools/call`` (each with its ``_meta`` envelope).

The KB is indexed once (BM25, into a temporary embedded store); every run is a new process, as each assistant
start is. Target: at most 1 s on the sample KB. The median of ``runs`` is reported with every run's figures."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kbsearch_tools import repo_root

TARGET_S = 1.0
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
QUERY = {"name": "kb_search", "arguments": {"query": "ротация ключей", "top_k": 5}}


def _command() -> list[str]:
    """What an assistant's config launches: the ``kbsearch`` script beside this interpreter."""
    script = Path(sys.executable).with_name("kbsearch")
    return [str(script), "mcp"] if script.exists() else [sys.executable, "-m", "kbsearch_tools.cli", "mcp"]


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode() + b"\n"


def _answer(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert proc.stdout is not None
    raw = proc.stdout.readline()
    if not raw:
        raise RuntimeError("kbsearch mcp closed stdout before answering")
    answer: dict[str, Any] = json.loads(raw)
    return answer


def one_run(env: dict[str, str], era: str) -> dict[str, float]:
    """Launch, handshake (or discover), call kb_search; seconds from launch to each answer."""
    started = time.perf_counter()
    proc = subprocess.Popen(_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env)  # fmt: skip
    assert proc.stdin is not None
    try:
        if era == "2025-11-25":
            proc.stdin.write(_line({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": era, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}))  # fmt: skip
            proc.stdin.flush()
            first = _answer(proc)
            ready = time.perf_counter() - started
            proc.stdin.write(_line({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            proc.stdin.write(_line({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": QUERY}))
        else:
            proc.stdin.write(_line({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": META}}))
            proc.stdin.flush()
            first = _answer(proc)
            ready = time.perf_counter() - started
            proc.stdin.write(_line({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                    "params": {**QUERY, "_meta": META}}))  # fmt: skip
        proc.stdin.flush()
        answer = _answer(proc)
        tool = time.perf_counter() - started
        if "result" not in first or answer.get("result", {}).get("isError") is not False:
            raise RuntimeError(f"kbsearch mcp did not answer the call: {answer}")
        if not answer["result"]["structuredContent"]["results"]:
            raise RuntimeError("the first search found nothing: the index is not the sample KB's")
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    return {"ready_s": round(ready, 3), "first_tool_s": round(tool, 3)}


def bench_mcp(kb: Path | None = None, runs: int = 5) -> dict[str, Any]:
    from kbsearch.config import Secrets, Settings
    from kbsearch.indexer import run_sync

    kb = kb or repo_root() / "sample-kb"
    with tempfile.TemporaryDirectory(prefix="kbsearch-bench-mcp-") as tmp:
        store = Path(tmp) / "q"
        settings = Settings(qdrant_path=str(store), qdrant_url="", embedding_api_key=None, embedding_api_key_param="")
        report = run_sync(settings, Secrets(settings), source_uri=str(kb))
        if report.error:
            raise RuntimeError(f"indexing {kb} failed: {report.error}")
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("QDRANT_", "EMBEDDING_", "RERANK", "EXPANSION"))
        }
        env.update(QDRANT_PATH=str(store), KB_SOURCE=str(kb))
        eras: dict[str, Any] = {}
        for era in ("2025-11-25", "2026-07-28"):
            rows = [one_run(env, era) for _ in range(runs)]
            median = statistics.median(r["first_tool_s"] for r in rows)
            eras[era] = {
                "first_tool_s_median": round(median, 3),
                "ready_s_median": round(statistics.median(r["ready_s"] for r in rows), 3),
                "runs": rows,
                "meets_target": median <= TARGET_S,
            }
    return {"kb": str(kb), "notes": report.added, "command": " ".join(_command()), "target_s": TARGET_S,
            "load_average": [round(x, 2) for x in os.getloadavg()], "eras": eras}  # fmt: skip


def format_mcp(results: dict[str, Any]) -> str:
    lines = [
        f"kbsearch mcp cold start on {results['kb']} ({results['notes']} notes): launch → first kb_search answer",
        f"command: {results['command']}; load average {results['load_average']}",
    ]
    for era, r in results["eras"].items():
        runs = ", ".join(f"{x['first_tool_s']}" for x in r["runs"])
        verdict = "meets" if r["meets_target"] else "MISSES"
        lines.append(f"  {era}: median {r['first_tool_s_median']} s (first answer {r['ready_s_median']} s); "
                     f"runs: {runs}; {verdict} the {results['target_s']} s target")  # fmt: skip
    return "\n".join(lines)
