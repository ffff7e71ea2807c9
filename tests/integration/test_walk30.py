"""Round 30: a new user's hour (walk30): README followed from a fresh clone, as far as this machine runs it, through
the real interfaces (`kbsearch` spawned as a process, the way a user or an assistant starts it). Each test fails on
main's code before its fix."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip


def test_kbsearch_mcp_started_by_an_assistant_away_from_the_index_says_where_it_looked_and_what_to_set(
    tmp_path: Path,
) -> None:
    """An assistant launches `kbsearch mcp` in a working folder of its own: README's config without its `env`
    (QDRANT_PATH) looks for the index in that folder's `.kbsearch/qdrant`. The log pane said only "the index is not
    usable yet: the index has not been built yet: run the indexer first", though the index had been built, and
    every call answered the same; `kbsearch search` in the same place names the folder it looked in. The line now
    names it too, and the setting to give in the config's `env`."""
    elsewhere = tmp_path / "assistant"
    elsewhere.mkdir()
    env = subprocess_env()
    env.pop("QDRANT_PATH", None)
    proc = subprocess.run([*KBSEARCH_CMD, "mcp", "--kb", str(ROOT / "sample-kb")], input=json.dumps(INITIALIZE) + "\n",
                          capture_output=True, text=True, cwd=elsewhere, env=env, timeout=PROCESS_TIMEOUT_S,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["result"]["serverInfo"]["name"] == "kb-search"
    said = [line for line in proc.stderr.splitlines() if "index" in line]
    assert said, proc.stderr
    assert f"no index in {elsewhere / '.kbsearch' / 'qdrant'}" in said[0], said
    assert 'QDRANT_PATH' in said[0] and '"env"' in said[0], said
    assert not (elsewhere / ".kbsearch").exists()  # looking made no store there
