"""Round 33 (rel33): the reliability debts round 32 left, through the real interfaces.

1. A run whose end comes while a window of chunks is being embedded: the scheduled indexer handler on moto's S3 and
   DynamoDB, the embedded Qdrant, the DeepInfra fake on loopback answering the first embedding requests and hanging
   on the next one past the Lambda's end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.qdrant import open_store
from kbsearch_tools.fakes import FakeProvider, provider_env
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.s3events import EventPath
from tests.integration.test_events import BUCKET, PREFIX, TABLE, aws, load_indexer  # noqa: F401

NOTES = 6  # one chunk each: n0.md .. n5.md


def indexed(settings: Settings) -> list[str]:
    """The paths the index holds a chunk of, with the dense vectors they hold."""
    store = open_store(settings, Secrets(settings))
    try:
        return sorted(p for p, st in store.indexed_state().items() if st.points)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("answered", "written"),
    [(2, ["n0.md", "n1.md"]), (5, ["n0.md", "n1.md", "n2.md", "n3.md", "n4.md"])],
    ids=["window embedded ahead", "last window"],
)
def test_a_run_whose_end_comes_mid_embedding_writes_what_was_embedded_and_leaves_the_rest_to_the_next_run(
    aws: EventPath,  # noqa: F811
    deepinfra: FakeProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    answered: int,
    written: list[str],
) -> None:
    """One chunk a request, four a window: n0..n3 are embedded in a thread while n4, n5 are read, then n4, n5.
    The fake answers ``answered`` requests and hangs on the next one past the Lambda's end (its calls' deadline,
    the invocation's end less 5 s). Before, the window being embedded was dropped whole, the notes embedded in it
    too, and the run said ``embedding failed`` (the handler raised: the invocation failed, its alarm fired, Lambda
    ran it again). Now the notes whose every chunk was embedded are written; the others, read and not written, are
    left for the next run, which reads them (and only them) again; the summary says so."""
    for i in range(NOTES):
        aws.put(f"{PREFIX}n{i}.md", f"# Note {i}\n\nwords of note number {i}\n".encode())
    aws.receive()
    env = {
        "KB_SOURCE": f"s3://{BUCKET}/{PREFIX}", "QDRANT_PATH": str(tmp_path / "q"), "INDEX_LEASE_TABLE": TABLE,
        "EMBEDDING_DIMENSIONS": "64", "PROVIDER_RETRIES": "0", "BREAKER_THRESHOLD": "100",
        "EMBEDDING_BATCH_SIZE": "1", "EMBEDDING_CONCURRENCY": "1", "DEADLINE_MARGIN_S": "1",
    } | provider_env(deepinfra, roles=("EMBEDDING",))  # fmt: skip
    app = load_indexer(monkeypatch, env)
    settings = Settings(**{k.lower(): v for k, v in env.items()} | {"index_lease_table": ""})
    deepinfra.fail("embeddings", hang_s=8.0, after=answered)
    # 9 s: the calls' deadline 4 s in, when every note is long read and the fake hangs on request answered + 1
    report: dict[str, Any] = app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 9))
    assert report["error"] is None and report["incomplete"], report
    assert report["added"] == len(written) and report["remaining"] == NOTES - len(written), report
    assert report["unwritten"] == (
        f"{NOTES - len(written)} notes read and not written: their embedding did not finish before the run's end; "
        "the next run reads them again"
    ), report
    assert indexed(settings) == written
    deepinfra.heal()
    before = len(deepinfra.calls("embeddings"))
    again: dict[str, Any] = app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 900))
    assert again["added"] == NOTES - len(written) and again["unchanged"] == len(written), again
    assert not again["incomplete"] and again["unwritten"] is None, again
    assert len(deepinfra.calls("embeddings")) - before == NOTES - len(written)  # what was written is not embedded again
    assert indexed(settings) == [f"n{i}.md" for i in range(NOTES)]
