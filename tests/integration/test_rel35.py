"""Round 35's reliability debts (rel35), through the real interfaces: the indexer's store (the embedded Qdrant Edge
shard and Qdrant Cloud over the loopback REST fake of ``test_hostile_notes``) under an index lease in moto's
DynamoDB that a second holder takes over; the indexer Lambda handler's ``--rebuild`` on Qdrant Cloud."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import Indexer, SyncOptions
from kbsearch.lease import Lease
from kbsearch.lexical import SparseVector
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import point_id
from kbsearch.qdrant.store import ChunkPoint, Store
from kbsearch.sources import LocalSource
from kbsearch_tools.fakes import FakeEndpoint, FakeProvider, provider_env
from kbsearch_tools.local.runtime import LambdaContext
from tests.integration import test_adv34 as adv34_tests
from tests.integration import test_events as events_tests
from tests.integration.test_events import TABLE, load_indexer
from tests.integration.test_hostile_notes import FakeQdrant
from tests.integration.test_indexer import write_notes
from tests.integration.test_lease import found_lost, take_over
from tests.integration.test_rel33 import one_chunk_a_request, quokka_under_and_read_again
from tests.integration.test_rev34c import leased_run_on_cloud

aws = events_tests.aws  # moto's bucket and queue, the lease table
flaky_qdrant = adv34_tests.flaky_qdrant  # the loopback Qdrant Cloud

PATH = "n00.md"
WHERE = {"must": [{"key": "path", "match": {"value": PATH}}]}

#: Every write of the indexer's store, called as a sync calls it. A store method that is not here is a read
#: (:data:`READS`): a write added to the store and to neither list fails the test below.
WRITES: dict[str, Callable[[Store], Any]] = {
    "ensure_collection": lambda s: s.ensure_collection(),
    "ensure_payload_indexes": lambda s: s.ensure_payload_indexes(),
    "set_metadata": lambda s: s.set_metadata({"x": 1}),
    "merge_metadata": lambda s: s.merge_metadata({"x": 1}),
    "drop": lambda s: s.drop(),
    "upsert": lambda s: s.upsert(
        [ChunkPoint(PATH, 0, {"path": PATH, "chunk_index": 0, "text": "x"}, SparseVector([1], [1.0]), None)]
    ),
    "set_payload": lambda s: s.set_payload(PATH, {"x": 1}),
    "set_payloads": lambda s: s.set_payloads([([PATH], {"x": 1})]),
    "set_sparse": lambda s: s.set_sparse([(point_id(PATH, 0), SparseVector([1], [1.0]))], WHERE),
    "set_payload_where": lambda s: s.set_payload_where(WHERE, {"x": 1}),
    "delete_note": lambda s: s.delete_note(PATH),
    "delete_leftovers": lambda s: s.delete_leftovers(PATH, 0),
    "point_alias": lambda s: s.point_alias("kb-alias", s.collection),
}
READS = {
    "sibling", "may_write", "alias_target", "cloud", "close", "exists", "metadata", "dense_size", "metadata_stamp",
    "check_schema", "indexed_state", "note_points", "points", "count", "query", "scroll", "facet", "query_batch",
    "query_legs", "has_points", "read_ahead", "flush_writes", "rescore_once",
}  # fmt: skip


def methods(store: Store) -> set[str]:
    return {n for n in dir(type(store)) if not n.startswith("_") and callable(getattr(type(store), n, None))}


def taken_over(dynamodb: Any) -> Lease:
    """This run's index lease, acquired, then taken over by a second holder as one takes an expired lease (this
    run's renewals failed for longer than its time to live: its clock is moved past the expiry, no renewer runs)."""
    now = [time.time()]
    ours = Lease(TABLE, "index#kb", 30, client=dynamodb, clock=lambda: now[0])
    ours.acquire()
    assert ours.held()
    now[0] += 60
    Lease(TABLE, "index#kb", 30, client=dynamodb, clock=lambda: now[0], owner="other:1:cafe").acquire()
    return ours


@pytest.mark.parametrize("kind", ["embedded", "cloud"])
def test_every_write_of_the_store_is_refused_once_another_run_holds_the_lease(
    aws: Any, tmp_path: Path, flaky_qdrant: FakeQdrant, kind: str
) -> None:
    """rel34 and rev34a checked the lease at each of about a dozen write sites of a sync (``Indexer._lost``): a
    write added later had to remember its own check. The store now refuses every write itself once the run that
    opened it no longer holds its index lease (``open_store(held=...)``, as ``SentAgain`` asks before each resend):
    each write method, called as no sync step guards it, raises ``LeaseLostError`` and sends nothing; reads still
    answer. What the new holder sees: the collection, points and metadata, exactly as they were before the loss."""
    from kbsearch.errors import LeaseLostError  # (rel35's: main's code fails here)

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    if kind == "embedded":
        settings = Settings(qdrant_path=str(tmp_path / "q"))
        kb = tmp_path / "kb"
        kb.mkdir()
        write_notes(kb, 3)
        first = open_store(settings, Secrets(settings))
        try:
            assert Indexer(LocalSource(kb), first, None, SyncOptions()).sync().added == 3
        finally:
            first.close()
    else:
        settings = Settings(qdrant_url=flaky_qdrant.url, qdrant_api_key=SecretStr("qdrant-test-key"))
    lease = taken_over(dynamodb)
    store = open_store(settings, Secrets(settings), held=lease.held)
    try:
        before = (store.points(), store.metadata()) if kind == "embedded" else None
        assert methods(store) - READS == set(WRITES)
        refused = []
        for name, call in WRITES.items():
            if kind == "embedded" and name == "point_alias":
                continue  # inherited, never called: aliases are Qdrant Cloud's (the embedded store has no client)
            with pytest.raises(LeaseLostError, match="no longer holds its index lease") as caught:
                call(store)
            assert "qdrant-test-key" not in str(caught.value)
            refused.append(name)
        assert not lease.held() and lease.lost
        assert store.exists()  # reads answer
        if kind == "embedded":
            assert (store.points(), store.metadata()) == before
    finally:
        store.close()
    if kind == "embedded":  # the new holder opens the store: nothing of this run's after the loss
        again = open_store(settings, Secrets(settings))
        try:
            assert (again.points(), again.metadata()) == before
            assert len({p["path"] for p in again.points().values()}) == 3
        finally:
            again.close()
    else:
        assert flaky_qdrant.writes == [], flaky_qdrant.writes
    assert len(refused) == len(WRITES) - (kind == "embedded")


def test_a_rebuild_on_qdrant_cloud_does_not_switch_the_alias_once_its_lease_is_lost(
    aws: Any, tmp_path: Path, flaky_qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rev34a's left (5): ``--rebuild`` on Qdrant Cloud (the handler given ``{"rebuild": true}``) builds a new
    collection behind the alias and switches the alias when the sync is complete. A run whose lease is taken over
    after its sync's last check, as it reads the aliases to switch them, switched the alias all the same (and
    dropped the collection that had the alias's name), under the new holder's feet. Now the switch is refused by
    the store (asked after that read, just before the switch is sent): the alias and the collections stay as they
    were, and the run says the lease was lost."""
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 3)
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    writes_at_loss: list[int] = []
    alias_reads: list[str] = []

    def requested(line: str) -> None:  # the second read of the aliases is the switch's: the lease is taken then
        if line == "GET /aliases":
            alias_reads.append(line)
            if len(alias_reads) == 2:
                take_over(dynamodb, lost)
                writes_at_loss.append(len(flaky_qdrant.writes))

    boto3.setup_default_session()
    lost = found_lost()
    flaky_qdrant.on_request = requested
    app, result = leased_run_on_cloud(monkeypatch, kb, flaky_qdrant.url, {"rebuild": True})
    assert len(alias_reads) == 2 and writes_at_loss, alias_reads
    assert any(w.startswith("PUT /collections/kb-bm25-a/points") for w in flaky_qdrant.writes)  # the sync wrote
    after = flaky_qdrant.writes[writes_at_loss[0] :]
    assert after == [], f"written after the lease was lost: {after}"
    assert flaky_qdrant.aliases == {}
    assert isinstance(result, app.IndexerRunError), result
    assert "index lease" in str(result) and "lost mid-run" in str(result), result


FAILURES = {  # a batch no endpoint answers: what decides the run's embedding; the requests one batch sends
    "DeepInfra 500 after 1, Fireworks 500": ({"status": 500, "after": 1}, {"status": 500}, 1),
    "DeepInfra 401, no fallback": ({"status": 401}, None, 2),  # (sent again once, its key read again)
}
ONE_CHUNK_NOTES = 24
CONCURRENCY = 4


@pytest.mark.parametrize(("primary", "fallback", "tries"), FAILURES.values(), ids=FAILURES.keys())
def test_no_queued_embedding_request_is_sent_once_a_batch_has_failed(
    aws: Any,
    deepinfra: FakeProvider,
    fireworks: FakeProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    primary: dict[str, Any],
    fallback: dict[str, Any] | None,
    tries: int,
) -> None:
    """closing34 / rev33b's (2): at ``EMBEDDING_CONCURRENCY`` 4 the window's batches were all queued in a pool whose
    exit waits for them: once one failed for good (the fallback exhausted, a 401), every batch still queued was
    sent all the same (rev33b counted 16 of 16 with the breaker out of the way; 16 + 14 with Fireworks), each one
    paid for or failing, for notes the run would not write. Now no batch not yet sent is sent: at most those in
    flight when the failure came (one per worker). The run's report and the next run are as before."""
    notes = {f"n{i:02d}.md": f"# Note {i}\n\nword{i} and a few shared words\n" for i in range(ONE_CHUNK_NOTES)}
    env = one_chunk_a_request(aws, tmp_path, notes, EMBEDDING_CONCURRENCY=str(CONCURRENCY)) | provider_env(
        deepinfra, fireworks if fallback is not None else None, roles=("EMBEDDING",)
    )
    deepinfra.fail("embeddings", **primary)
    if fallback is not None:
        fireworks.fail("embeddings", **fallback)
    app = load_indexer(monkeypatch, env)
    aws.receive()
    try:
        result: Any = app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 120))
    except app.IndexerRunError as exc:
        result = exc
    sent = len(deepinfra.calls("embeddings"))
    answered = primary.get("after", 0)
    # the answered ones, then at most one failing request per worker (those in flight when the first failed)
    assert sent <= answered + CONCURRENCY * tries, f"{sent} requests for {ONE_CHUNK_NOTES} batches sent to DeepInfra"
    if fallback is not None:
        assert len(fireworks.calls("embeddings")) <= CONCURRENCY, len(fireworks.calls("embeddings"))
    assert isinstance(result, app.IndexerRunError) and "embedding failed" in str(result), result
    deepinfra.heal()
    fireworks.heal()
    again: dict[str, Any] = app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 120))
    assert again["error"] is None and not again["incomplete"], again
    assert again["added"] + again["unchanged"] == ONE_CHUNK_NOTES, again


def test_an_s3_head_that_drips_is_cut_at_the_runs_end_and_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """adv34's left: the indexer's S3 HEAD (a note the listing lacks is looked up once more before it is deleted,
    ``Indexer._appeared``; an event batch's ``head_key``) kept botocore's per-read timeouts (20 s a read, 4
    attempts), which an S3 dripping its answer one byte every 0.5 s never trips: the scheduled run was still in
    that HEAD past the Lambda's end (killed there: no report, the lease held until it expires). Now the HEAD ends
    by the run's end as rev34c's GETs do: the note is not deleted (it could not be looked up), the run reports."""
    from tests.integration.test_adv34 import helpers_ended, invoke_within_the_lambda
    from tests.integration.test_fault_matrix import listing_xml

    notes = {"a.md": b"# A\n\nquokka\n", "b.md": b"# B\n\nwombat\n"}
    listed = dict(notes)
    s3 = FakeEndpoint().start()

    def respond(method: str, path: str) -> tuple[int, bytes, str]:
        s3.drip_s = 0.5 if method == "HEAD" else 0.0
        if "list-type=2" in path:
            return 200, listing_xml(list(listed.items())), "application/xml"
        name = path.split("?", maxsplit=1)[0].rsplit("/", 1)[-1]
        return (200, notes[name], "text/markdown") if name in notes else (404, b"", "application/xml")

    s3.responder = respond
    env = {"KB_SOURCE": "s3://kb/", "AWS_ENDPOINT_URL_S3": s3.url, "QDRANT_PATH": str(tmp_path / "q"),
           "DEADLINE_MARGIN_S": "4", "EMBEDDING_API_KEY": "", "EMBEDDING_API_KEY_PARAM": ""}  # fmt: skip
    try:
        app = load_indexer(monkeypatch, env)
        first = invoke_within_the_lambda(app, {})
        assert isinstance(first, dict) and first["added"] == 2, first
        del listed["b.md"]  # gone from the listing; its HEAD drips
        result = invoke_within_the_lambda(app, {})
    finally:
        s3.stop()
        helpers_ended("kbsearch-s3")
    assert any(r.path.startswith("/kb/b.md") for r in s3.requests), [r.path for r in s3.requests]
    assert isinstance(result, dict) and result["deleted"] == 0, result
    (warning,) = [w for w in result["warnings"] if w["path"] == "b.md"]
    assert "not deleted: it could not be looked up" in warning["reason"], warning
    assert "by the run's end" in warning["reason"], warning


def test_an_items_dollars_closed_only_after_the_item_are_indexed_as_prose_and_an_older_reading_is_read_again(
    tmp_path: Path,
) -> None:
    """From moto's S3 to the embedded Qdrant, then the search service: a ``$$`` in a list item that no line of the
    item closes (the only closing comes after the item's end) is prose, so the heading in the item is a heading
    and the words under it are found there (main: the item's lines were math, ``quokka`` under the note's first
    heading, the tag lost). A collection recording rev34a's reading (6) is read again."""
    from kbsearch.markdown import PARSE_VERSION

    assert PARSE_VERSION == 9  # adv39: a link to a folder is none
    body = "# Steps\n\n- item\n  $$\n  ## Inside #kept\n  quokka\nNext\n\n$$\n"
    # main: quokka under "Steps", no tag; 6: what rev34a's kb-search recorded
    quokka_under_and_read_again(tmp_path, body, "Steps > Inside #kept", 6)


def test_a_dynamodb_that_drips_is_cut_at_the_runs_end_with_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """adv34's left: the indexer's DynamoDB calls (the index lease, the links lease, the event sequencers) kept
    botocore's per-read timeouts (5 s a read, 3 attempts): a lease table endpoint that drips its answer one byte
    every 0.5 s (each read well within them; ``eval/bench_aws_stalls.py``: 41-46 s a call) held the scheduled run's
    lease acquisition past the Lambda's end (killed there: no report). Now every DynamoDB call of a Lambda run ends
    by the run's end (``lease.dynamodb_client(deadline)``), as its S3 reads do: the run fails naming the lease table
    and the run's end, inside the Lambda's time."""
    from tests.integration.test_adv34 import dripped_run

    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 2)
    dynamodb = FakeEndpoint().start()
    dynamodb.drip_s = 0.5
    dynamodb.responder = lambda method, path: (200, b"{}", "application/x-amz-json-1.0")
    for key, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.url}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    env = {"KB_SOURCE": str(kb), "QDRANT_PATH": str(tmp_path / "q"), "INDEX_LEASE_TABLE": TABLE}
    _, result = dripped_run(monkeypatch, env, dynamodb, "kbsearch-dynamodb")
    assert dynamodb.requests, "the lease table was never asked"
    assert isinstance(result, Exception), result
    assert f"cannot take the lease in table {TABLE}" in str(result), result
    assert "by the run's end" in str(result), result
