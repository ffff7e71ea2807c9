"""An embedding signature change: the local embedded store rebuilds itself (make run, make run ORACLE=e5, and
back), and Qdrant Cloud rebuilds into a new collection behind the alias searches use, switched atomically when
complete (qdrant-client's local mode stands in for Qdrant Cloud: same aliases API)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import Indexer, SyncOptions, rebuild_behind_alias
from kbsearch.providers.embeddings import Embedder, build_embedder
from kbsearch.providers.resilience import Deadline, shared_client
from kbsearch.qdrant.store import Store
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch.sources import LocalSource
from kbsearch_tools.fakes import FakeProvider, provider_env
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, provider_settings, subprocess_env
from tests.integration.test_indexer import write_notes


def index(store: Path, *extra: str, **env: str) -> dict:
    proc = subprocess.run([*KBSEARCH_CMD, "index", str(ROOT / "sample-kb"), "--json", *extra], capture_output=True,
                          text=True, timeout=PROCESS_TIMEOUT_S, check=False, env=subprocess_env(QDRANT_PATH=str(store), **env))  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, (proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


@pytest.mark.timeout(5 * PROCESS_TIMEOUT_S + 30)
def test_the_local_store_rebuilds_itself_when_the_embedding_changes(deepinfra: FakeProvider, tmp_path: Path) -> None:
    """BM25 only (EMBEDDING_DIMENSIONS 1024 by default) → a 64-dimension model → another format → BM25 only."""
    store = tmp_path / "q"
    dense = {**provider_env(deepinfra, roles=["EMBEDDING"]), "EMBEDDING_DIMENSIONS": "64"}
    first = index(store)
    assert first["added"] > 30 and first["reembedded"] is None
    steps = [
        (dense, "it was built BM25 only, and this run embeds with Qwen/Qwen3-Embedding-8B"),  # walk31
        ({**dense, "EMBEDDING_INPUT_FORMAT": "e5"}, None),  # same size, another format: re-embedded in place
        (
            {},
            "it held Qwen/Qwen3-Embedding-8B vectors, and this run has no embedder (no EMBEDDING_API_KEY, no "
            "--oracle): BM25 only now; a run with that model re-embeds every note",
        ),  # walk31: what was dropped
    ]
    for env, rebuilt in steps:
        report = index(store, **env)
        assert report["error"] is None and not report["incomplete"], report
        if rebuilt is not None:
            assert report["reembedded"] == (
                f"the local collection was rebuilt and every note re-indexed ({rebuilt})"
            ), report["reembedded"]
            assert report["added"] == first["added"]
        else:
            assert report["updated"] == first["added"] and "every note is re-embedded" in report["reembedded"]
    proc = subprocess.run([*KBSEARCH_CMD, "search", "restore a qdrant snapshot"], capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, check=False, env=subprocess_env(QDRANT_PATH=str(store)))  # fmt: skip
    assert proc.returncode == 0 and "Runbook - restore a Qdrant snapshot" in proc.stdout, proc.stderr


@pytest.mark.timeout(2 * PROCESS_TIMEOUT_S + 30)
def test_rebuild_drops_and_rebuilds_the_local_store(tmp_path: Path) -> None:
    store = tmp_path / "q"
    first = index(store)
    again = index(store, "--rebuild")
    assert again["added"] == first["added"] and again["rebuilt"] == (
        "the local collection was dropped and rebuilt (--rebuild)"
    )


# -- Qdrant Cloud: a new collection behind the alias -------------------------------------------------------------


@pytest.fixture
def cloud() -> Iterator[Store]:
    """The admin store on the alias name, as run_sync opens Qdrant Cloud (not embedded)."""
    store = Store(QdrantClient(":memory:"), "kb", 64, embedded=False)
    yield store
    store.close()


def embedder_for(deepinfra: FakeProvider, **extra: object) -> Embedder:
    settings = provider_settings(deepinfra, None, **extra)
    embedder = build_embedder(settings, Secrets(settings), shared_client())
    assert embedder is not None
    return embedder


def searched(store: Store, embedder: Embedder | None) -> list[str]:
    settings = Settings(qdrant_collection="kb", embedding_dimensions=64)
    service = SearchService(settings, Secrets(settings), store=store, embedder=embedder, wire_providers=False)
    answer = service.search(SearchRequest(query="note", top_k=20, rerank=False, expand=False))
    assert answer.meta.degraded == [], answer.meta.degraded
    return sorted(hit.path for hit in answer.results)


def test_rebuild_switches_the_alias_only_when_complete(cloud: Store, deepinfra: FakeProvider, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 6)
    source, options = LocalSource(kb), SyncOptions()
    qwen = embedder_for(deepinfra)
    # a deployment from before aliases: a plain collection named "kb"
    plain = Indexer(source, cloud, qwen, options).sync()
    assert plain.added == 6 and cloud.alias_target("kb") is None
    everything = searched(cloud, qwen)
    assert len(everything) == 6

    # another model (same size, another input format): built beside, switched, the plain collection dropped
    e5 = embedder_for(deepinfra, embedding_input_format="e5")
    first = rebuild_behind_alias(cloud, source, e5, options)
    target = cloud.alias_target("kb")
    assert first.error is None and target is not None and target.endswith("-a"), first
    assert first.rebuilt == f"collection {target!r} built; the alias 'kb' now names it (was 'kb', dropped)"
    names = {c.name for c in cloud.client.get_collections().collections}
    assert names == {target} and searched(cloud, e5) == everything

    # interrupted: nothing switches, searches keep the complete collection
    write_notes(kb, 8)
    stopped = rebuild_behind_alias(cloud, source, qwen, options, stop_at=Deadline(0))
    assert stopped.incomplete and cloud.alias_target("kb") == target
    assert "not complete: the alias 'kb' still names" in str(stopped.rebuilt)
    assert searched(cloud, e5) == everything  # the old collection, whole
    # carried on: the same target collection, then switched; the previous one dropped
    done = rebuild_behind_alias(cloud, source, qwen, options)
    switched = cloud.alias_target("kb")
    assert done.error is None and not done.incomplete and switched not in (None, target)
    assert {c.name for c in cloud.client.get_collections().collections} == {switched}
    assert len(searched(cloud, qwen)) == 8

    # the same model again: the other name of the pair, never the live collection
    again = rebuild_behind_alias(cloud, source, qwen, options)
    assert cloud.alias_target("kb") not in (None, switched) and again.added == 8


def test_a_dimension_change_on_cloud_names_rebuild_and_drops_nothing(cloud: Store, deepinfra: FakeProvider,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 3)
    Indexer(LocalSource(kb), cloud, embedder_for(deepinfra), SyncOptions()).sync()
    before = cloud.count()
    smaller = Store(cloud.client, "kb", 32, embedded=False)
    report = Indexer(LocalSource(kb), smaller, embedder_for(deepinfra, embedding_dimensions=32), SyncOptions()).sync()
    assert report.error is not None and "kbsearch index --rebuild" in report.error and "alias 'kb'" in report.error
    assert cloud.count() == before > 0  # nothing dropped, nothing half-built
