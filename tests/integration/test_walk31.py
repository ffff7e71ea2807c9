"""Round 31: a new user's hour (walk31): README followed from a fresh clone, through the real interfaces (`kbsearch`
spawned as a process, the way a user or an assistant starts it). Each test fails on main's code before its fix."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from kbsearch_tools.local.live import wait_until
from kbsearch_tools.local.process import serve_process
from kbsearch_tools.oracle import unavailable
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_walk30 import _STAND_IN_MODEL, INITIALIZE


def _cached(cache: Path) -> int:
    with sqlite3.connect(cache) as db:
        return sum(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for (table,) in  # noqa: S608
                   db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))  # fmt: skip


def _oracle_kb(kb: Path) -> Path:
    """A KB of two notes for the oracle's stand-in model (skipped where the e5 wheel does not install)."""
    reason = unavailable("e5")
    if reason:
        pytest.skip(reason)
    kb.mkdir(parents=True)
    (kb / "restore.md").write_text("# Restore a snapshot\n\nRestore the collection from its snapshot.\n")
    (kb / "rotate.md").write_text("# Rotate keys\n\nRotate the provider keys every quarter.\n")
    return kb


def _index_with_the_stand_in(kb: Path, env: dict[str, str], cache: Path) -> subprocess.CompletedProcess[str]:
    """`kbsearch index KB --oracle e5` with test_oracle's stand-in for the model (no inference); it succeeded."""
    indexed = subprocess.run([sys.executable, "-c", _STAND_IN_MODEL, "index", str(kb), "--oracle", "e5",
                              "--oracle-cache", str(cache)], capture_output=True, text=True, env=env,
                             cwd=cache.parent, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert indexed.returncode == 0, indexed.stderr
    return indexed


@pytest.mark.timeout(240)
def test_kbsearch_mcp_takes_the_oracle_and_reads_its_vectors_beside_the_store(tmp_path: Path) -> None:
    """README: `kbsearch index ... --oracle e5`, then `serve --oracle e5` and `search --oracle e5`; `kbsearch mcp`,
    the stdio server an assistant on the same laptop launches, had no `--oracle` (exit 2, "unrecognized
    arguments"): on that index its searches were BM25 only, and the way to the model was a second process (`serve
    --oracle` and `mcp --remote`). It takes `--oracle` now, the model loaded in the server. An assistant launches it
    in a working folder of its own, with QDRANT_PATH in its config's env: the oracle's cache is the one beside the
    store (where `kbsearch index --oracle` run in the checkout left the passages' vectors), not a new one in that
    folder (a cold cache embeds every candidate passage at the first rerank)."""
    project, assistant = tmp_path / "project", tmp_path / "assistant"
    kb = _oracle_kb(project / "kb")
    assistant.mkdir()
    indexed = subprocess.run([sys.executable, "-c", _STAND_IN_MODEL, "index", "kb", "--oracle", "e5"],
                             capture_output=True, text=True, env=subprocess_env(), cwd=project,
                             timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert indexed.returncode == 0, indexed.stderr
    cache = project / ".kbsearch" / "oracle" / "e5.sqlite"
    before = _cached(cache)
    search = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "kb_search", "arguments": {"query": "restore the snapshot", "expand": False}}}  # fmt: skip
    env = subprocess_env(QDRANT_PATH=str(project / ".kbsearch" / "qdrant"))
    mcp = subprocess.run([sys.executable, "-c", _STAND_IN_MODEL, "mcp", "--kb", str(kb), "--oracle", "e5"],
                         input=json.dumps(INITIALIZE) + "\n" + json.dumps(search) + "\n", capture_output=True,
                         text=True, env=env, cwd=assistant, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert mcp.returncode == 0, mcp.stderr
    answers = [json.loads(line) for line in mcp.stdout.splitlines()]
    assert answers[0]["result"]["serverInfo"]["name"] == "kb-search"
    result = answers[1]["result"]
    assert not result.get("isError"), result
    meta = result["structuredContent"]["meta"]
    assert (meta["embedder"], meta["reranker"], meta["degraded"]) == ("oracle-e5", "oracle-e5-biencoder", [])
    assert result["structuredContent"]["results"][0]["path"] == "restore.md"
    assert "BM25 only" not in mcp.stderr, mcp.stderr
    assert not (assistant / ".kbsearch").exists()  # no cache (nor anything else) made in the assistant's folder
    assert 0 < _cached(cache) - before <= 2, "the query's vector, and nothing else, was added to the cache beside"


def test_kbsearch_mcp_says_its_oracle_is_for_a_local_server_and_names_it_where_an_index_is_bm25_only(
    tmp_path: Path,
) -> None:
    """`--oracle` with `--remote` is refused as `--kb` is (the deployment embeds with its own model); and `kbsearch
    mcp` on an oracle index without it names the option in its log, beside the `serve` + `--remote` way."""
    bridged = subprocess.run([*KBSEARCH_CMD, "mcp", "--remote", "http://127.0.0.1:3000", "--oracle", "e5"],
                             input="", capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path,
                             timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert bridged.returncode == 2, bridged.stderr
    assert bridged.stdout == ""
    assert ("kbsearch mcp: error: --oracle is for a local server; with --remote the deployment embeds with its own "
            "models"
            in bridged.stderr), bridged.stderr  # fmt: skip


@pytest.mark.timeout(240)
def test_kbsearch_index_with_the_oracle_is_not_handed_to_a_server_that_embeds_otherwise(tmp_path: Path) -> None:
    """README: `kbsearch index sample-kb` and `kbsearch serve`, then "Real hybrid search with no keys": `kbsearch
    index ... --oracle e5`. With the plain server still running, the index was handed to it, which "syncs with its
    own settings": a BM25-only sync, `sync done ... [BM25 only (no EMBEDDING_API_KEY)]`, exit 0, the model loaded
    for nothing and no dense vector written. The server now refuses a sync whose embedding is not its own, naming
    both and what to do; the command fails (exit 2, a usage error: nothing synced). A plain `kbsearch index` (no
    embedder of its own) is still handed to it, to sync with the server's settings (`make run ORACLE=e5`'s way)."""
    kb = _oracle_kb(tmp_path / "kb")
    (kb / "rotate.md").unlink()  # added while the server runs
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"))
    plain = subprocess.run([*KBSEARCH_CMD, "index", str(kb)], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    with serve_process(env, cwd=ROOT):
        oracle = subprocess.run([sys.executable, "-c", _STAND_IN_MODEL, "index", str(kb), "--oracle", "e5",
                                 "--oracle-cache", str(tmp_path / "e5.sqlite")], capture_output=True, text=True,
                                env=env, cwd=tmp_path, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
        assert oracle.returncode == 2, oracle.stdout + oracle.stderr
        assert "sync done" not in oracle.stdout and "Traceback" not in oracle.stderr
        assert ("kbsearch index: error: the server holding the store could not sync: it syncs with BM25 only (no "
                "embedder), not intfloat/multilingual-e5-small (--oracle e5) as this kbsearch index would: stop that "
                "server and run kbsearch index again, or start it with the same embedding") in oracle.stderr  # fmt: skip
        (kb / "rotate.md").write_text("# Rotate keys\n\nRotate the provider keys every quarter.\n")
        handed = subprocess.run([*KBSEARCH_CMD, "index", str(kb), "--json"], capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
        assert handed.returncode == 0, handed.stderr
        assert "handed to the kbsearch serve" in handed.stderr
        assert json.loads(handed.stdout)["added"] == 1


def test_kbsearch_serve_started_where_no_index_is_says_so_in_its_banner(tmp_path: Path) -> None:
    """README: `kbsearch serve` after `kbsearch index sample-kb`. Started in another folder (or before the index),
    its banner said nothing of the index: routes, `try: curl .../health`, and every search a 503. `kbsearch search`
    and `kbsearch mcp` name where they looked; the banner now does too, and what to run (the hand-off line above it
    says the sync comes to this server). A server over a built index says nothing of the kind."""
    store = tmp_path / "q"
    env = subprocess_env(QDRANT_PATH=str(store))
    with serve_process(env, cwd=ROOT) as served:
        assert httpx.get(f"{served.base_url}/search", params={"q": "snapshot"}, timeout=30).status_code == 503
        said = (f"  no index in {store} (QDRANT_PATH; default .kbsearch/qdrant in the working folder): build it with "
                "kbsearch index <your KB folder>, or run this where you did; searches answer 503 until then\n")  # fmt: skip
        assert wait_until(lambda: said in served.output, 10), served.text()  # printed before it listened; drained
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nsnapshot\n")
    subprocess.run([*KBSEARCH_CMD, "index", str(kb)], env=env, cwd=tmp_path, capture_output=True, check=True,
                   timeout=PROCESS_TIMEOUT_S)  # fmt: skip
    with serve_process(env, cwd=ROOT) as served:
        assert httpx.get(f"{served.base_url}/search", params={"q": "snapshot"}, timeout=30).status_code == 200
        assert "no index" not in served.text()


@pytest.mark.timeout(240)
def test_an_oracle_index_served_or_searched_without_its_model_says_so_truly(tmp_path: Path) -> None:
    """`make run ORACLE=e5` (or `kbsearch index ... --oracle e5`), then `make run` or `kbsearch serve` without it:
    every search was BM25 only, `"embedder": "none"`, and nothing said why; `kbsearch search` and `kbsearch mcp`
    say it (walk30). The banner now does too, naming the option. And `kbsearch search` with a provider's key set
    (another model) said "no embedder is configured", which was false: it names the model configured now."""
    kb = _oracle_kb(tmp_path / "kb")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"))
    _index_with_the_stand_in(kb, env, tmp_path / "e5.sqlite")
    said = ("  note: the index holds intfloat/multilingual-e5-small vectors, but no embedder is configured, so searches "
            "are BM25 only: add --oracle e5\n")  # fmt: skip
    with serve_process(env, cwd=ROOT) as served:
        answer = httpx.get(f"{served.base_url}/search", params={"q": "snapshot"}, timeout=30).json()
        assert answer["meta"]["embedder"] == "none"
        assert wait_until(lambda: said in served.output, 10), served.text()
    mismatched = subprocess.run([*KBSEARCH_CMD, "search", "restore", "snapshot"], capture_output=True, text=True,
                                env={**env, "EMBEDDING_API_KEY": "k", "EMBEDDING_URL": "http://127.0.0.1:9/v1/openai/embeddings"},
                                cwd=tmp_path, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert mismatched.returncode == 0, mismatched.stderr
    assert "degraded: embed_mismatch" in mismatched.stdout
    assert "no embedder is configured" not in mismatched.stderr
    assert (
        "note: the index holds intfloat/multilingual-e5-small vectors, but the embedder configured is "
        "Qwen/Qwen3-Embedding-8B, so this search is BM25 only: add --oracle e5, or re-embed the index with "
        f"Qwen/Qwen3-Embedding-8B (kbsearch index {kb})"
    ) in mismatched.stderr  # fmt: skip  (walk32: the folder)


def test_a_note_over_the_size_limit_is_skipped_naming_the_setting(tmp_path: Path) -> None:
    """A KB of one large note (a 3.7 MB export): `skipped big.md: too large: 3751307 bytes (limit 1048576)`, and
    nothing said which setting holds the limit; README's table has it (`MAX_NOTE_BYTES`). The reason names it."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "big.md").write_text("# Big\n\n" + "snapshot restore words\n" * 60_000)
    size = (kb / "big.md").stat().st_size
    run = subprocess.run([*KBSEARCH_CMD, "index", str(kb)], capture_output=True, text=True, cwd=tmp_path,
                         env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")), timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"  skipped big.md: too large: {size} bytes (limit 1048576, MAX_NOTE_BYTES): " in run.stdout, run.stdout


def test_an_oracle_index_synced_without_the_oracle_says_what_was_dropped_and_why(tmp_path: Path) -> None:
    """`make run ORACLE=e5`, then `make run`: the plain sync rebuilds the embedded collection BM25 only (by design:
    "and back"), and its report said `re-embedding: the local collection was rebuilt and every note re-indexed (dense
    size 384 but EMBEDDING_DIMENSIONS=1024)`: a setting this run does not use, and not what was dropped. It names the
    model whose vectors were dropped, and why; and the way back (`dense size 1024 but EMBEDDING_DIMENSIONS=384`, of
    an index that held no vectors) says it was built BM25 only."""
    kb = _oracle_kb(tmp_path / "kb")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"))
    _index_with_the_stand_in(kb, env, tmp_path / "e5.sqlite")
    plain = subprocess.run([*KBSEARCH_CMD, "index", str(kb)], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert ("  re-embedding: the local collection was rebuilt and every note re-indexed (it held "
            "intfloat/multilingual-e5-small vectors, and this run has no embedder (no EMBEDDING_API_KEY, no --oracle): "
            "BM25 only now; a run with that model re-embeds every note)\n") in plain.stdout, plain.stdout  # fmt: skip
    again = _index_with_the_stand_in(kb, env, tmp_path / "e5.sqlite")
    assert ("  re-embedding: the local collection was rebuilt and every note re-indexed (it was built BM25 only, and "
            "this run embeds with intfloat/multilingual-e5-small)\n") in again.stdout, again.stdout  # fmt: skip


def test_health_names_the_kbsearch_command_holding_the_embedded_store(tmp_path: Path) -> None:
    """README: `kbsearch serve`, then `kbsearch invoke SearchFunction --event events/health.json`. The health's
    reason guessed, `(pid N: a kbsearch index or serve?)`, where `kbsearch index` beside it names the holder from its
    command line (`pid N: kbsearch serve`): the advice differs (wait for an index; stop a server or use it)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nsnapshot\n")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"))
    subprocess.run([*KBSEARCH_CMD, "index", str(kb)], env=env, cwd=tmp_path, capture_output=True, check=True,
                   timeout=PROCESS_TIMEOUT_S)  # fmt: skip
    with serve_process(env, cwd=ROOT) as served:
        assert httpx.get(f"{served.base_url}/search", params={"q": "snapshot"}, timeout=30).status_code == 200
        invoked = subprocess.run([*KBSEARCH_CMD, "invoke", "SearchFunction", "--event", "events/health.json"],
                                 env=env, cwd=ROOT, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S,
                                 check=False)  # fmt: skip
        pid = served.process.pid
    assert invoked.returncode == 0, invoked.stderr
    health = json.loads(json.loads(invoked.stdout)["body"])
    assert health["reasons"] == [f"the embedded store is open in another process (pid {pid}: kbsearch serve); "
                                 "searches answer once it closes"], health  # fmt: skip


def test_kbsearch_serve_watch_of_a_misspelt_folder_names_the_one_meant(tmp_path: Path) -> None:
    """`kbsearch serve --watch sampel-kb`: `--watch needs a KB folder (got 'sampel-kb'): pass --watch FOLDER or set
    KB_SOURCE to a folder` where `kbsearch index sampel-kb` and `kbsearch mcp --kb sampel-kb` name the folder
    beside it (`did you mean sample-kb?`). It says what they say now (a file given: that it is a file)."""
    (tmp_path / "sample-kb").mkdir()
    (tmp_path / "note.md").write_text("# A note\n")
    for given, said in (("sampel-kb", f"KB folder sampel-kb does not exist (in {tmp_path}): did you mean sample-kb?"),
                        ("note.md", "KB folder note.md is a file, not a folder")):  # fmt: skip
        run = subprocess.run([*KBSEARCH_CMD, "serve", "--watch", given, "--port", "0", "--template",
                              str(ROOT / "template.yaml")], capture_output=True, text=True, cwd=tmp_path,
                             env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")), timeout=PROCESS_TIMEOUT_S,
                             check=False)  # fmt: skip
        assert run.returncode == 2, run.stdout + run.stderr
        assert f"kbsearch serve: error: --watch: {said}" in run.stderr, run.stderr


def test_kbsearch_index_with_the_oracle_says_nothing_of_passages_all_cached(tmp_path: Path) -> None:
    """`make run ORACLE=e5` a second time: `kbsearch index: embedding the stand-in reranker's passages (texts not
    cached yet: ...)`, then `0 passages embedded in 0 s`: it announced work it did not do. A run with every passage
    cached says nothing of them; a first run says how many it embeds."""
    kb = _oracle_kb(tmp_path / "kb")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"))
    first = _index_with_the_stand_in(kb, env, tmp_path / "e5.sqlite")
    assert "kbsearch index: embedding the stand-in reranker's 2 passages not cached yet (once," in first.stderr
    assert "kbsearch index: 2 passages embedded in " in first.stderr
    again = _index_with_the_stand_in(kb, env, tmp_path / "e5.sqlite")
    assert "passages" not in again.stderr, again.stderr


def test_kbsearch_search_with_the_oracle_of_an_index_built_bm25_only_says_what_embeds_it(tmp_path: Path) -> None:
    """`kbsearch index sample-kb`, then README's `kbsearch search ... --oracle e5`: `dense retrieval off: BM25 only
    (reason=the index's dense vectors have 1024 dimensions, the embedder's 384)`, of an index that holds no dense
    vector (1024 is the size the collection was created with), and nothing of what to run. A note says it was built
    BM25 only and names the command that embeds it."""
    kb = _oracle_kb(tmp_path / "kb")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"))
    subprocess.run([*KBSEARCH_CMD, "index", str(kb)], env=env, cwd=tmp_path, capture_output=True, check=True,
                   timeout=PROCESS_TIMEOUT_S)  # fmt: skip
    searched = subprocess.run([sys.executable, "-c", _STAND_IN_MODEL, "search", "restore", "--oracle", "e5",
                               "--oracle-cache", str(tmp_path / "e5.sqlite")], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert searched.returncode == 0, searched.stderr
    assert "degraded: embed_mismatch" in searched.stdout
    assert ("note: the index was built BM25 only (it records no embedding model), so this search is BM25 only: kbsearch index "
            f"{kb} --oracle e5 embeds it with intfloat/multilingual-e5-small") in searched.stderr  # fmt: skip
