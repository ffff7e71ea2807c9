"""Round 36's adversarial pass, part two (adv36b): MCP over HTTP through API Gateway events, as a hand-rolled client
speaks it. ``params`` that is no object is -32602 in either era, but its HTTP status is the era's: a 2025-11-25 (or
earlier) client is answered 200 for a JSON-RPC error about its params, as it is for every other such error (an
unknown tool); it was 400, decided before the era was read."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import boto3
import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.events import Change
from kbsearch.indexer import ChangeSync, Indexer, SyncOptions, event_sequencers
from kbsearch.qdrant import open_store
from kbsearch.sources import S3Source
from tests.conftest import ROOT
from tests.integration.test_event_races import BUCKET, PREFIX, REGION, TABLE, aws
from tests.integration.test_mcp_batches import post

__all__ = ["aws"]  # the fixture, shared with test_event_races

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


@pytest.fixture
def app(load_search_app, bm25_store: Path):
    return load_search_app(QDRANT_PATH=str(bm25_store), KB_SOURCE=str(ROOT / "sample-kb"))


def call(id_: int, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


@pytest.mark.parametrize("version", [None, "2025-11-25", "2025-06-18", "2025-03-26"])
def test_params_that_are_no_object_get_the_status_of_the_clients_era(app, version: str | None) -> None:
    headers = {"MCP-Protocol-Version": version} if version else {}
    # the era's status for an error about params: an unknown tool's
    status, unknown = post(app, call(1, {"name": "kb_no_such_tool", "arguments": {}}), headers)
    assert unknown["error"]["code"] == -32602 and status == 200, (status, unknown)
    for params in (["kb_search", {"query": "deploy"}], "kb_search", 42, True):
        got, body = post(app, call(2, params), headers)
        assert body["error"]["code"] == -32602 and body["id"] == 2, body
        assert got == status, f"params {params!r} under {version}: HTTP {got}, an unknown tool's {status}"


def test_params_that_are_no_object_are_still_400_for_a_2026_07_28_client(app) -> None:
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "kb_no_such_tool"}
    status, unknown = post(app, call(1, {"name": "kb_no_such_tool", "arguments": {}, "_meta": META}), headers)
    assert unknown["error"]["code"] == -32602 and status == 400, (status, unknown)
    got, body = post(app, call(2, ["kb_search"]), {**headers, "Mcp-Name": "kb_search"})
    assert (got, body["error"]["code"], body["id"]) == (400, -32602, 2), body


# -- the access file: an event batch and the schedule's full sync at once ------------------------------------------

RULES_V0 = b"hr/: [hr]\n"
RULES_V1 = b"pub/: [public]\n"  # the hr/ rule lost by mistake: hr/ falls to the default, public
RULES_V2 = RULES_V0  # put back seconds later


def access_of(store: Any, path: str) -> set[tuple[str, ...]]:
    return {tuple(p.get("access") or ()) for p in store.points().values() if p["path"] == path}


def rules_client(after: Any) -> Any:
    """An S3 client that calls ``after()`` once each of its reads of the access file has answered."""
    client = boto3.session.Session(region_name=REGION).client("s3")
    client.meta.events.register(
        "before-call.s3.GetObject",
        lambda params, context, **_: context.update(rules="_access.yaml" in params["url_path"]),
    )
    client.meta.events.register(
        "after-call.s3.GetObject", lambda context, **_: after() if context.get("rules") else None
    )
    return client


def pay_kb(aws: Any, tmp_path: Path, log_kind: str, rules: bytes) -> tuple[Settings, Any]:
    """The bucket's KB (these rules, hr/Pay.md, pub/Welcome.md), indexed by a first sync into an embedded store;
    the sequencer log in DynamoDB (``dynamodb``), beside the store (``file``) or none (anything else)."""
    settings = Settings(kb_source=f"s3://{BUCKET}/{PREFIX}", qdrant_path=str(tmp_path / "store"),
                        index_lease_table=TABLE if log_kind == "dynamodb" else "", embedding_api_key=None)  # fmt: skip
    aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}_access.yaml", Body=rules)
    aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}hr/Pay.md", Body=b"# Pay\n\nzqpaybands of every grade\n")
    aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}pub/Welcome.md", Body=b"# Welcome\n\nwelcome aboard\n")
    store = open_store(settings, Secrets(settings))
    try:
        first = S3Source(BUCKET, PREFIX, client=boto3.session.Session(region_name=REGION).client("s3"))
        assert Indexer(first, store, None, SyncOptions()).sync().added == 2
    except BaseException:
        store.close()
        raise
    return settings, store


@pytest.mark.parametrize("log_kind", ["dynamodb", "file"])
def test_a_full_sync_applies_again_an_access_file_an_event_batch_claimed_while_it_ran(
    aws: Any, tmp_path: Path, log_kind: str
) -> None:
    """The access file loses its ``hr/`` rule (v1) and gets it back (v2) seconds later. v1's event batch passed the
    lease check just before the hourly full sync took the lease and read v1; v2 is saved, and its event's batch is
    failed back while the sync holds the lease (retried after the queue's visibility timeout). The sync reads v2
    and the index as it was (hr/ restricted: nothing to change), then v1's batch writes its groups (hr/ public).
    The sync, before it lets go, applies again the access file a batch claimed during it, as it does the notes it
    wrote: hr/Pay.md ends restricted. Before: public (a note readable by every caller) until v2's retry or the next
    sync, an hour. Driven through the batch's S3 client (a botocore hook after its read of v1 saves v2 and starts
    the sync) and the sync's store (its read of the index's state lets the batch finish)."""
    settings, store = pay_kb(aws, tmp_path, log_kind, RULES_V0)
    try:
        assert access_of(store, "hr/Pay.md") == {("hr",)}
        aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}_access.yaml", Body=RULES_V1)

        read_v1, go = threading.Event(), threading.Event()

        def after_rules() -> None:
            if not read_v1.is_set():
                aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}_access.yaml", Body=RULES_V2)  # v2 saved
                read_v1.set()
                assert go.wait(60)

        batch_client = rules_client(after_rules)
        results: list[Any] = []
        change = Change("_access.yaml", f"{PREFIX}_access.yaml", False, "0065F1A0B0C0D0E001")
        batch = threading.Thread(target=lambda: results.append(ChangeSync(
            S3Source(BUCKET, PREFIX, client=batch_client), store, None, SyncOptions(), event_sequencers(settings)
        ).apply([change])), daemon=True)  # fmt: skip
        batch.start()
        assert read_v1.wait(60)

        class SyncStore:
            """The sync's store: once it has read the index's state, v1's batch writes."""

            def __init__(self, inner: Any) -> None:
                self._inner = inner

            def indexed_state(self) -> Any:
                state = self._inner.indexed_state()
                if not go.is_set():
                    go.set()
                    batch.join(60)
                return state

            def __getattr__(self, name: str) -> Any:
                return getattr(self._inner, name)

        sync_source = S3Source(BUCKET, PREFIX, client=boto3.session.Session(region_name=REGION).client("s3"))
        sync_store: Any = SyncStore(store)
        report = Indexer(sync_source, sync_store, None, SyncOptions(),
                         claims=lambda: event_sequencers(settings)).sync()  # fmt: skip
        assert not batch.is_alive() and results and results[0].error is None, results
        assert results[0].access_updated >= 1, results  # the batch did make hr/ public after the sync's read
        assert report.error is None, report
        assert access_of(store, "hr/Pay.md") == {("hr",)}, "v2 restricts hr/: the note must not stay public"
        assert access_of(store, "pub/Welcome.md") == {("public",)}
    finally:
        store.close()


@pytest.mark.parametrize("log_kind", ["dynamodb"])  # the file log's store has one writer: batches never overlap
def test_a_note_batch_that_read_the_rules_before_a_batch_applied_new_ones_gives_its_notes_the_new_ones(
    aws: Any, tmp_path: Path, log_kind: str
) -> None:
    """hr/ notes are uploaded (their batch reads the access file: no rule for hr/, public) and the access file gets
    its ``hr/`` rule seconds later; that event's batch runs at once (no lease between batches) and gives every
    indexed note its groups, before the first batch has written its notes (a batch of many notes embeds for
    seconds). The note batch, once it has written, reads the access file's claim again (with its notes' own): a
    later claim has it apply its notes under the rules as they are now: hr/New.md ends restricted. Before: public
    until the next sync (an hour). Driven through the note batch's S3 client (a botocore hook after its read of
    the access file saves the rule and runs the other batch to its end)."""
    settings = Settings(kb_source=f"s3://{BUCKET}/{PREFIX}", qdrant_path=str(tmp_path / "store"),
                        index_lease_table=TABLE if log_kind == "dynamodb" else "", embedding_api_key=None)  # fmt: skip
    aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}_access.yaml", Body=RULES_V1)
    aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}pub/Welcome.md", Body=b"# Welcome\n\nwelcome aboard\n")
    store = open_store(settings, Secrets(settings))
    try:
        plain = S3Source(BUCKET, PREFIX, client=boto3.session.Session(region_name=REGION).client("s3"))
        assert Indexer(plain, store, None, SyncOptions()).sync().added == 1
        aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}hr/New.md", Body=b"# New\n\nzqnewbands of every grade\n")
        other: list[Any] = []

        def rule_batch() -> None:  # the access file's event, applied to its end by another batch
            aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}_access.yaml", Body=RULES_V0)
            rules = Change("_access.yaml", f"{PREFIX}_access.yaml", False, "0065F1A0B0C0D0E002")
            other.append(ChangeSync(plain, store, None, SyncOptions(), event_sequencers(settings)).apply([rules]))

        client = rules_client(lambda: rule_batch() if not other else None)
        change = Change("hr/New.md", f"{PREFIX}hr/New.md", False, "0065F1A0B0C0D0E001")
        report = ChangeSync(S3Source(BUCKET, PREFIX, client=client), store, None, SyncOptions(),
                            event_sequencers(settings)).apply([change])  # fmt: skip
        assert other and other[0].error is None and not other[0].failed_paths, other
        assert report.error is None and not report.failed_paths and report.added == 1, report
        assert access_of(store, "hr/New.md") == {("hr",)}, "the rules say hr/: the new note must not be public"
        assert access_of(store, "pub/Welcome.md") == {("public",)}
    finally:
        store.close()
