"""Round 33 review (rev33b): a cold review of rel33's partial-window write, through the real interfaces: the
scheduled indexer handler on moto's S3 and DynamoDB, the embedded Qdrant, the DeepInfra and Fireworks fakes on
loopback (one failing after N requests, the other hanging past the Lambda's end after N)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import stored_embed_text
from kbsearch.qdrant import open_store
from kbsearch_tools.fakes import FakeProvider, fake_embedding, provider_env
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.s3events import EventPath
from tests.integration.test_events import BUCKET, PREFIX, TABLE, load_indexer
from tests.integration.test_lease import s3_kb_and_lease_table  # noqa: F401 (fixture)
from tests.integration.test_rel31 import aws, cloud_env  # noqa: F401 (fixtures)

NOTES = 10  # note i holds i % 3 + 1 sections, one chunk each: 19 chunks
DIMS = 64


def stored(settings: Settings) -> dict[str, dict[int, tuple[str, list[float]]]]:
    """path → chunk index → (the text the chunk embedded, rebuilt from its payload; its dense vector)."""
    import qdrant_edge as edge

    store = open_store(settings, Secrets(settings))
    try:
        records, _ = store.shard.scroll(edge.ScrollRequest(limit=10_000, with_payload=True, with_vector=True))  # type: ignore[attr-defined]
    finally:
        store.close()
    out: dict[str, dict[int, tuple[str, list[float]]]] = {}
    for record in records:
        payload = record.payload
        if not isinstance(payload.get("path"), str) or type(payload.get("chunk_index")) is not int:
            continue  # (the collection's metadata point)
        text = stored_embed_text(payload)
        assert text is not None, payload
        vector = [float(x) for x in (record.vector.get("dense") or [])]
        out.setdefault(payload["path"], {})[payload["chunk_index"]] = (text, vector)
    return out


def unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def test_a_window_cut_with_requests_in_flight_and_the_fallback_mid_window_writes_whole_notes_with_their_own_vectors(
    aws: EventPath,  # noqa: F811
    deepinfra: FakeProvider,
    fireworks: FakeProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rel33's left (6), driven: one chunk a request, three requests in flight (a window of 12 chunks: n0..n5
    embedded ahead while n6..n9 are read, then n6..n9), DeepInfra failing (500) after 4 requests, each later one
    answered by Fireworks, which answers 5 and then hangs past the Lambda's end. Which of the 19 requests come back
    depends on the threads; whatever they are, every note written holds every one of its chunks, each with the
    vector of its own text (no answer written to another chunk), the others are counted as left, and the next run
    embeds exactly the chunks of the notes not written. Evidence: it passes on main too."""
    aws.receive()  # (the bucket's notification set-up: no note's)
    chunks = {}
    for i in range(NOTES):
        parts = i % 3 + 1
        chunks[f"n{i}.md"] = parts
        body = "".join(f"## Part {j}\n\nword{i}x{j} and shared words of part {j}\n\n" for j in range(parts))
        aws.put(f"{PREFIX}n{i}.md", f"# Note {i}\n\n{body}".encode())
    env = {
        "KB_SOURCE": f"s3://{BUCKET}/{PREFIX}", "QDRANT_PATH": str(tmp_path / "q"), "INDEX_LEASE_TABLE": TABLE,
        "EMBEDDING_DIMENSIONS": str(DIMS), "PROVIDER_RETRIES": "0", "BREAKER_THRESHOLD": "100",
        "EMBEDDING_BATCH_SIZE": "1", "EMBEDDING_CONCURRENCY": "3", "DEADLINE_MARGIN_S": "1",
    } | provider_env(deepinfra, fireworks, roles=("EMBEDDING",))  # fmt: skip
    deepinfra.fail("embeddings", status=500, after=4)
    fireworks.fail("embeddings", hang_s=8.0, after=5)
    app = load_indexer(monkeypatch, env)
    settings = Settings(**{k.lower(): v for k, v in env.items()} | {"index_lease_table": ""})
    aws.receive()
    report: dict[str, Any] = app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 9))
    first = stored(settings)
    assert report["error"] is None and report["incomplete"], report
    assert 1 <= len(first) < NOTES and report["added"] == len(first), (report, sorted(first))
    assert report["remaining"] == NOTES - len(first), report
    assert report["unwritten"].startswith(f"{NOTES - len(first)} notes read and not written"), report
    assert report["embedding_fallbacks"] >= 1, report  # some notes' chunks came from Fireworks
    for path, held in first.items():
        assert sorted(held) == list(range(chunks[path])), (path, sorted(held))  # the whole note, no chunk missing
        for index, (text, vector) in held.items():
            assert len(vector) == DIMS, (path, index)
            cosine = sum(a * b for a, b in zip(unit(vector), unit(fake_embedding(text, DIMS)), strict=True))
            assert cosine > 0.9999, (path, index, cosine)  # its own text's vector
    deepinfra.heal()
    fireworks.heal()
    before = len(deepinfra.calls("embeddings"))
    again: dict[str, Any] = app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 900))
    assert again["added"] == NOTES - len(first) and again["unchanged"] == len(first), again
    assert not again["incomplete"] and again["unwritten"] is None, again
    left = sum(n for path, n in chunks.items() if path not in first)
    assert len(deepinfra.calls("embeddings")) - before == left  # the notes written are not embedded again
    final = stored(settings)
    assert {p: sorted(h) for p, h in final.items()} == {p: list(range(n)) for p, n in chunks.items()}
    assert all(final[p] == first[p] for p in first)  # what the cut run wrote is kept as it was


def test_a_full_sync_that_loses_its_lease_writes_no_note_after_the_loss(
    s3_kb_and_lease_table: Any,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Round 23c made a sync whose lease another run took over stop "at its next note". But the notes it had read
    before (n00, n01: no embedder, so they wait in the window being gathered) were still written after the loss, at
    the stop, beside the new holder: a write that lands after the holder's own can put back an older version, or a
    note the holder deleted. Now nothing is written once the lease is lost: they are left for the run that holds it
    (``remaining``), and the summary says why."""
    from tests.integration.test_lease import _scheduled_sync_of_the_bucket, taken_over_at_the_third_note

    lost = taken_over_at_the_third_note(s3_kb_and_lease_table)
    report = _scheduled_sync_of_the_bucket(tmp_path, monkeypatch)
    assert lost.is_set()
    assert "lease index#kb was lost mid-run (another run took it over" in str(report.get("raised")), report
    assert "wrote none after the loss; the next run carries on" in str(report.get("raised")), report
    settings = Settings(qdrant_path=str(tmp_path / "qdrant"))
    store = open_store(settings, Secrets(settings))
    try:
        written = sorted(p for p, st in store.indexed_state().items() if st.points)
    finally:
        store.close()
    assert written == [], written  # main: n00, n01 and n02 (read before the loss), written after it
