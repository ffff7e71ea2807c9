"""What a run pays for only when it needs it: a no-change ``kbsearch index`` (the scheduled sync's usual case) loads
neither the YAML parser nor the stemmers nor the HTTP client, no index run loads numpy (vectors stay lists), and the
search function's SnapStart hook still loads the stemmers before the snapshot (the lexical module loads them on first
use)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kbsearch.config import Secrets
from kbsearch.indexer import run_sync
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import ROOT, provider_settings, subprocess_env

#: the HTTP client (httpx, httpcore, its TLS context) is made by the first call: a sync that embeds nothing makes none
NOT_ON_A_NO_CHANGE_SYNC = ("yaml", "snowballstemmer", "kbsearch.notes", "kbsearch.frontmatter", "httpx", "httpcore",
                           "kbsearch.providers.transport")  # fmt: skip
NEVER_IN_AN_INDEX_RUN = ("numpy",)  # vectors stay the lists the JSON decoder made, the form Qdrant Edge takes


def _imported(stderr: str) -> set[str]:
    """Top-level and dotted module names from ``python -X importtime`` output."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def _index(kb: Path, store: Path, deepinfra: FakeProvider) -> subprocess.CompletedProcess[str]:
    """``kbsearch index`` in a fresh interpreter, with its imports listed on stderr."""
    env = subprocess_env(QDRANT_PATH=str(store), EMBEDDING_URL=deepinfra.embeddings_url,
                         EMBEDDING_API_KEY=deepinfra.api_key, EMBEDDING_DIMENSIONS="64")  # fmt: skip
    command = [sys.executable, "-X", "importtime", "-m", "kbsearch_tools.cli", "index", str(kb), "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_a_no_change_sync_loads_only_what_it_needs(tmp_path: Path, deepinfra: FakeProvider) -> None:
    kb, store = tmp_path / "kb", tmp_path / "q"
    subprocess.run(["cp", "-a", str(ROOT / "sample-kb"), str(kb)], check=True)
    settings = provider_settings(deepinfra, qdrant_path=str(store))
    first = run_sync(settings, Secrets(settings), source_uri=str(kb))
    for skipped in first.skipped:  # a skipped note (sample-kb has a broken one) is parsed again on every run
        (kb / skipped["path"]).unlink()
    assert first.added > 0 and first.embedding_calls > 0 and not first.error

    done = _index(kb, store, deepinfra)
    report = json.loads(done.stdout)
    assert report["unchanged"] == first.added and report["embedding_calls"] == 0 and report["added"] == 0
    loaded = _imported(done.stderr)
    assert "kbsearch.indexer" in loaded and "qdrant_edge" in loaded  # the sync itself ran in this process
    unwanted = set(NOT_ON_A_NO_CHANGE_SYNC + NEVER_IN_AN_INDEX_RUN)
    assert not loaded & unwanted, sorted(loaded & unwanted)

    # a changed note does load them, and is indexed as before
    note = next(kb.rglob("*.md"))
    note.write_text(note.read_text(encoding="utf-8") + "\n\nOne more paragraph.\n", encoding="utf-8")
    done = _index(kb, store, deepinfra)
    report = json.loads(done.stdout)
    assert report["updated"] == 1 and report["embedding_calls"] == 1 and not report["error"]
    assert set(NOT_ON_A_NO_CHANGE_SYNC) <= _imported(done.stderr)
    assert not _imported(done.stderr) & set(NEVER_IN_AN_INDEX_RUN)


SNAPSHOT_CHILD = """
import sys
sys.path.insert(0, "functions/search")
import app
assert "snowballstemmer" not in sys.modules, "the handler's import loads the stemmers"
app.api.before_snapshot()
print("snowballstemmer" in sys.modules)
"""


def test_the_snapstart_hook_loads_the_stemmers_before_the_snapshot(tmp_path: Path) -> None:
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), POWERTOOLS_SERVICE_NAME="kb-search")
    done = subprocess.run([sys.executable, "-c", SNAPSHOT_CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"


INDEXER_INIT_CHILD = """
import sys
sys.path.insert(0, "functions/indexer")
import app
from kbsearch.providers import resilience
print(sorted(m for m in ("httpx", "httpcore", "kbsearch.providers.transport") if m in sys.modules),
      resilience._client is None)
"""


def test_the_indexer_function_imports_the_http_transport_in_its_init_phase(tmp_path: Path) -> None:
    """The indexer's run builds its embedder without a client (a no-change sync makes none); the function imports
    httpx, httpcore and the deadline transport at init, so a cold event run's first embedding does not pay their
    import inside the invocation (Lambda's init phase runs at full CPU; the client itself is made by that call)."""
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), POWERTOOLS_SERVICE_NAME="kb-search")
    done = subprocess.run([sys.executable, "-c", INDEXER_INIT_CHILD], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['httpcore', 'httpx', 'kbsearch.providers.transport'] True"


SEARCH_CLIENT_CHILD = """
import sys
sys.path.insert(0, "functions/search")
import app
from kbsearch.providers import resilience
print("httpx" in sys.modules, resilience._client is None)
app.api.before_snapshot()
print("kbsearch.providers.transport" in sys.modules, resilience._client is None)
"""


def test_the_search_functions_http_client_is_made_before_the_snapshot_not_in_a_search(tmp_path: Path) -> None:
    """The providers take ``None`` for the process's client, made by their first call (a sync that embeds nothing
    makes none); the search service still makes it when it is built, so SnapStart's hook holds it (its transport
    imported, its TLS context loaded) and a restored container's first search pays neither inside its budget. The
    function's own import stays light: no httpx before the hook."""
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), POWERTOOLS_SERVICE_NAME="kb-search")
    done = subprocess.run([sys.executable, "-c", SEARCH_CLIENT_CHILD], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True", "True", "False"]
