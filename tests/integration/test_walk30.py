"""Round 30: a new user's hour (walk30): README followed from a fresh clone, as far as this machine runs it, through
the real interfaces (`kbsearch` spawned as a process, the way a user or an assistant starts it). Each test fails on
main's code before its fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kbsearch_tools.oracle import unavailable
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_oracle import _INTERRUPTED_WARM

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
    assert "QDRANT_PATH" in said[0] and '"env"' in said[0], said
    assert not (elsewhere / ".kbsearch").exists()  # looking made no store there


#: ``kbsearch`` with test_oracle's stand-in for the model (deterministic unit vectors of e5's size, no inference),
#: its Ctrl-C never reached: the warm-up's one batch holds every passage
_STAND_IN_MODEL = (
    "import kbsearch_tools.oracle\nkbsearch_tools.oracle.OracleProvider.WARM_BATCH = 10**9\n" + _INTERRUPTED_WARM
)


def test_kbsearch_search_of_an_oracle_index_says_it_is_bm25_only_and_takes_the_oracle_itself(tmp_path: Path) -> None:
    """README: `kbsearch index ... --oracle e5` and `kbsearch serve --oracle e5`. A new user's next command,
    `kbsearch search`, had no `--oracle` (exit 2, "unrecognized arguments"), and without it searched the index's
    BM25 alone saying only "(embedder none, reranker none)": the dense vectors the index was built with were unused
    and nothing said how to use them; `kbsearch mcp` on that index said nothing at all. `kbsearch search` now says
    so on stderr, naming the option, and takes `--oracle` as `index`, `serve` and `eval` do; `kbsearch mcp` says so
    in its log, naming the way to reach the model (a `kbsearch serve --oracle` and `--remote`)."""
    reason = unavailable("e5")
    if reason:
        pytest.skip(reason)
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "restore.md").write_text("# Restore a snapshot\n\nRestore the collection from its snapshot.\n")
    (kb / "rotate.md").write_text("# Rotate keys\n\nRotate the provider keys every quarter.\n")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"))
    cache = ["--oracle-cache", str(tmp_path / "e5.sqlite")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _STAND_IN_MODEL, *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip

    indexed = run("index", str(kb), "--oracle", "e5", *cache)
    assert indexed.returncode == 0, indexed.stderr
    plain = subprocess.run([*KBSEARCH_CMD, "search", "restore", "snapshot"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert "(embedder none, reranker none)" in plain.stdout
    assert ("note: the index holds intfloat/multilingual-e5-small vectors, but no embedder is configured, so this "
            "search is BM25 only: add --oracle e5") in plain.stderr  # fmt: skip
    mcp = subprocess.run([*KBSEARCH_CMD, "mcp", "--kb", str(kb)], input=json.dumps(INITIALIZE) + "\n",
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=PROCESS_TIMEOUT_S,
                         check=False)  # fmt: skip
    assert mcp.returncode == 0, mcp.stderr
    assert ("the index holds intfloat/multilingual-e5-small vectors, but no embedder is configured, so searches are "
            "BM25 only: add --oracle e5 to kbsearch mcp's args (the model loads in this server), or serve it with "
            "kbsearch serve --oracle e5 and launch kbsearch mcp --remote http://127.0.0.1:3000") in mcp.stderr  # fmt: skip
    dense = run("search", "restore", "snapshot", "--oracle", "e5", *cache)
    assert dense.returncode == 0, dense.stderr
    assert "(embedder oracle-e5, reranker oracle-e5-biencoder)" in dense.stdout, dense.stdout
    assert "restore.md" in dense.stdout and "note:" not in dense.stderr


def test_kbsearch_eval_without_keys_names_the_oracle_beside_the_key_a_skipped_phase_needs(tmp_path: Path) -> None:
    """README's Evaluation section on a machine with no keys: `kbsearch eval --kb sample-kb --queries ...` skips
    dense, hybrid and reranked saying "needs an embedding provider (EMBEDDING_API_KEY)", a key this user does not
    have, when the same command's `--oracle e5` runs those phases with no key at all. The reason names it now."""
    proc = subprocess.run([*KBSEARCH_CMD, "eval", "--kb", str(ROOT / "sample-kb"), "--queries",
                           str(ROOT / "eval" / "sample-kb-queries.yaml"), "--phases", "lexical,dense,reranked",
                           "--limit", "2"], capture_output=True, text=True, cwd=tmp_path,
                          env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")), timeout=PROCESS_TIMEOUT_S,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        "dense      skipped: needs an embedding provider (EMBEDDING_API_KEY, or --oracle e5: a model on " in proc.stdout
    )
    assert "reranked   skipped: needs an embedding provider (EMBEDDING_API_KEY, or --oracle e5" in proc.stdout
