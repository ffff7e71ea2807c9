"""Round 36's cold review of adv36b (rev36d): MCP over HTTP through API Gateway events. A request whose
``MCP-Protocol-Version`` header names a version this server does not speak is answered -32022 with the versions it
does (``data.supported``), whatever its ``params`` hold: with ``params`` an array (or any other non-object) it was
-32602 "params must be an object", which tells the client nothing of the version it must change (the same request
with an object as ``params`` was -32022)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from kbsearch.events import Change
from kbsearch.indexer import ChangeSync, Indexer, SyncOptions, event_sequencers
from kbsearch.sources import S3Source
from tests.conftest import ROOT
from tests.integration.test_adv36b import access_of, pay_kb, rules_client
from tests.integration.test_event_races import BUCKET, PREFIX, REGION, aws
from tests.integration.test_mcp_batches import post

__all__ = ["aws"]  # the fixture, shared with test_event_races


@pytest.fixture
def app(load_search_app, bm25_store: Path):
    return load_search_app(QDRANT_PATH=str(bm25_store), KB_SOURCE=str(ROOT / "sample-kb"))


def call(id_: int, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


@pytest.mark.parametrize("version", ["2031-01-01", "banana", "", "2026-07-28 "])
def test_an_unsupported_version_header_is_named_whatever_params_hold(app, version: str) -> None:
    headers = {"MCP-Protocol-Version": version, "Mcp-Method": "tools/call", "Mcp-Name": "kb_search"}
    status, as_object = post(app, call(1, {"name": "kb_search", "arguments": {"query": "deploy"}}), headers)
    assert (status, as_object["error"]["code"]) == (400, -32022), as_object
    for params in (["kb_search", {"query": "deploy"}], "kb_search", 42, True):
        got, body = post(app, call(2, params), headers)
        assert (got, body["error"]["code"], body["id"]) == (400, -32022, 2), f"params {params!r}: {got} {body}"
        assert "2026-07-28" in body["error"]["data"]["supported"], body


@pytest.mark.parametrize("params", [["kb_search"], "kb_search", 42])
def test_a_notification_with_params_no_object_is_accepted_in_every_era(app, params: Any) -> None:
    for headers in ({}, {"MCP-Protocol-Version": "2025-11-25"}, {"MCP-Protocol-Version": "2031-01-01"}):
        status, body = post(app, {"jsonrpc": "2.0", "method": "notifications/initialized", "params": params}, headers)
        assert (status, body) == (202, None), (headers, status, body)


# -- the access file saved while a full sync runs, its event failed back (the sync holds the lease) ----------------

RULES_OPEN = b"pub/: [public]\n"  # hr/ falls to the default: public
RULES_HR = b"hr/: [hr]\n"


@pytest.mark.parametrize(
    ("log_kind", "before", "saved", "after"),
    [
        ("none", RULES_OPEN, RULES_HR, ("hr",)),  # a rule added: the note must not stay public
        ("dynamodb", RULES_OPEN, RULES_HR, ("hr",)),
        ("dynamodb", RULES_HR, None, ("public",)),  # deleted: no rules, as a full sync gives them
        ("dynamodb", RULES_OPEN, b"hr/: [hr\n", ("public",)),  # unusable: nothing changes, the run names it
    ],
    ids=["added-no-log", "added-dynamodb", "deleted", "unusable"],
)
def test_a_full_sync_applies_the_access_file_saved_after_it_read_the_rules(
    aws: Any, tmp_path: Path, log_kind: str, before: bytes, saved: bytes | None, after: tuple[str, ...]
) -> None:
    """The hourly full sync reads the access file (no ``hr/`` rule) and then the rule is saved. Its event's batch
    finds the sync holding the index lease and is failed back to the queue (retried after the visibility timeout,
    5,400 s) without claiming anything in the sequencer log, so adv36b's re-apply (which looks at claims) never
    saw it, and with no log at all (Qdrant Cloud without a lease table) nothing looks. The sync wrote or refreshed
    every note's groups under the rules it read: hr/Pay.md public until the next sync (an hour). Now the sync, before
    it lets go of the lease, compares the access file's ETag with the one it read (one HEAD) and applies it again
    when it changed. Before: ``{('public',)} == {('hr',)}``."""
    settings, store = pay_kb(aws, tmp_path, log_kind, before)
    try:
        initial = access_of(store, "hr/Pay.md")
        saved_once: list[bool] = []

        def after_rules() -> None:  # the sync has read the rules: the file changes
            if not saved_once:
                saved_once.append(True)
                if saved is None:
                    aws.delete_object(Bucket=BUCKET, Key=f"{PREFIX}_access.yaml")
                else:
                    aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}_access.yaml", Body=saved)

        client = rules_client(after_rules)
        claims = (lambda: event_sequencers(settings)) if log_kind == "dynamodb" else None
        report = Indexer(S3Source(BUCKET, PREFIX, client=client), store, None, SyncOptions(full=True),
                         claims=claims).sync()  # fmt: skip
        assert saved_once, "the sync never read the access file"
        if saved is not None and saved.endswith(b"[hr\n"):
            assert report.error and "_access.yaml" in report.error, report
            assert access_of(store, "hr/Pay.md") == initial, "an unusable access file changes nothing"
        else:
            assert report.error is None, report
            assert access_of(store, "hr/Pay.md") == {after}, "the access file as it is now decides"
            assert report.access_updated >= 1, report
        assert access_of(store, "pub/Welcome.md") == {("public",)}
    finally:
        store.close()


def test_a_rules_batch_that_read_older_rules_than_a_later_batch_applied_ends_with_the_newer(
    aws: Any, tmp_path: Path
) -> None:
    """The rules change twice: r2 (the hr/ rule lost) and r3 (put back). r2's batch reads r2, then r3 is saved and
    its batch runs to its end (the index already restricts hr/: nothing to change); r2's batch then reads the
    index and gives hr/ notes r2's groups (public). Its re-read of the log after its writes finds r3's later claim
    and applies the access file again as it is now: hr/Pay.md ends restricted, never older rules over newer
    (held; the sequencer log in DynamoDB, as deployed)."""
    settings, store = pay_kb(aws, tmp_path, "dynamodb", RULES_HR)
    try:
        assert access_of(store, "hr/Pay.md") == {("hr",)}
        aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}_access.yaml", Body=RULES_OPEN)  # r2
        plain = S3Source(BUCKET, PREFIX, client=boto3.session.Session(region_name=REGION).client("s3"))
        later: list[Any] = []

        def r3_batch() -> None:  # r2's batch has read r2: r3 saved and applied to its end
            if not later:
                aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}_access.yaml", Body=RULES_HR)
                r3 = Change("_access.yaml", f"{PREFIX}_access.yaml", False, "0065F1A0B0C0D0E003")
                later.append(ChangeSync(plain, store, None, SyncOptions(), event_sequencers(settings)).apply([r3]))

        client = rules_client(r3_batch)
        r2 = Change("_access.yaml", f"{PREFIX}_access.yaml", False, "0065F1A0B0C0D0E002")
        report = ChangeSync(S3Source(BUCKET, PREFIX, client=client), store, None, SyncOptions(),
                            event_sequencers(settings)).apply([r2])  # fmt: skip
        assert later and later[0].error is None and not later[0].failed_paths, later
        assert report.error is None and not report.failed_paths, report
        assert report.superseded >= 1 and report.access_updated >= 2, (
            report
        )  # r2's groups were written, then r3 applied again by r2's batch
        assert access_of(store, "hr/Pay.md") == {("hr",)}, "r3 restricts hr/: older rules must not stay"
        assert access_of(store, "pub/Welcome.md") == {("public",)}
    finally:
        store.close()
