"""Session 34's cold review of adv34 (rev34c): the helper threads a Lambda run's S3 reads are waited on from
(``resilience.call_within``), through the indexer Lambda handler (``functions/indexer``) warm across runs, over a
loopback S3 (``AWS_ENDPOINT_URL_S3``) that drips every note's body; Qdrant Cloud's refused writes sent again
(``qdrant.rest.SentAgain``) by a sync whose index lease another run took over meanwhile (moto's DynamoDB, the
loopback Qdrant of ``test_hostile_notes``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest

from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.runtime import LambdaContext
from tests.integration import test_adv34 as adv34_tests
from tests.integration import test_events as events_tests
from tests.integration.test_adv34 import helpers_ended, invoke_within_the_lambda
from tests.integration.test_events import TABLE, load_indexer
from tests.integration.test_fault_matrix import listing_xml
from tests.integration.test_hostile_notes import FakeQdrant
from tests.integration.test_indexer import write_notes

aws = events_tests.aws  # moto's bucket and queue, the lease table
flaky_qdrant = adv34_tests.flaky_qdrant  # the loopback Qdrant Cloud, refusing the upserts its ``refusals`` say

#: At most this many S3 reads run on past their run's end (``kbsearch.sources.MAX_ABANDONED``).
MAX_ABANDONED = 2
#: Notes in the KB: each read past the run's end is one more thread left reading if a read is started after it.
NOTES = 8


def s3_helpers() -> list[threading.Thread]:
    """The helper threads S3 reads run on (``S3Source``: ``kbsearch-s3``) still alive."""
    return [t for t in threading.enumerate() if t.name == "kbsearch-s3" and t.is_alive()]


def test_reads_of_a_dripping_s3_leave_no_pile_of_threads_across_a_warm_lambdas_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm indexer Lambda's scheduled runs over an S3 that drips every note's body (one byte every 0.3 s, each
    read ~30 s): each run ends in time (adv34), but every read its run's end cut keeps its thread reading, and
    adv34 started a new one for every note it came to after that end (waited on for 0 s, so each was reported as
    "S3 gave no whole answer", which S3 had not been asked for yet): 8 threads (and 8 sockets) after one run,
    growing with every run. Now no read starts once the run's end has passed (the note is not reached, as when a
    local folder's run ends: the run is incomplete, its remaining counted), and at most MAX_ABANDONED reads run on
    past their run's end: while they do, S3 is not asked (a listing so refused fails the run naming them, nothing
    deleted; a read, its note kept as it was)."""
    note = b"# A\n\n" + b"quokka " * 14 + b"\n"  # ~100 bytes: ~30 s dripped
    names = [f"n{i}.md" for i in range(NOTES)]
    s3 = FakeEndpoint().start()

    def respond(method: str, path: str) -> tuple[int, bytes, str]:
        listing = "list-type=2" in path
        s3.drip_s = 0.0 if listing else 0.3
        return (
            (200, listing_xml([(n, note) for n in names]), "application/xml")
            if listing
            else (200, note, "text/markdown")
        )

    s3.responder = respond
    env = {"KB_SOURCE": "s3://kb/", "AWS_ENDPOINT_URL_S3": s3.url, "QDRANT_PATH": str(tmp_path / "q"),
           "DEADLINE_MARGIN_S": "4", "EMBEDDING_API_KEY": "", "EMBEDDING_API_KEY_PARAM": ""}  # fmt: skip
    before = len(s3_helpers())
    try:
        app = load_indexer(monkeypatch, env)
        for run in range(3):
            result = invoke_within_the_lambda(app, {})
            alive = len(s3_helpers()) - before
            assert alive <= MAX_ABANDONED, f"{alive} S3 reads still running after run {run + 1}"
            if isinstance(result, app.IndexerRunError):  # S3 not asked while the cut reads run: the run fails
                assert run > 0 and "reads from S3 cut at a run's end are still running" in str(result), result
                continue
            assert isinstance(result, dict) and result["added"] == 0, result
            reasons = [s["reason"] for s in result["skipped"]]
            # only a read S3 was asked for is said to be S3's fault; the notes after the run's end are not reached
            assert len([r for r in reasons if "S3 gave no whole answer" in r]) <= 1, reasons
            assert result["incomplete"] and result["remaining"] >= NOTES - 1, result
    finally:
        s3.stop()
        helpers_ended("kbsearch-s3")


def leased_run_on_cloud(monkeypatch: pytest.MonkeyPatch, kb: Path, qdrant_url: str, event: dict[str, Any]) -> Any:
    """The indexer handler's run of ``event`` over the folder ``kb`` into the Qdrant at ``qdrant_url``, under the
    index lease (a renewal every 20 s): (the handler's module, its report or the IndexerRunError it raised).
    boto3's default session (where :func:`tests.integration.test_lease.found_lost` hooks) is reset after it."""
    env = {
        "KB_SOURCE": str(kb),
        "QDRANT_URL": qdrant_url,
        "INDEX_LEASE_TABLE": TABLE,
        "INDEX_LEASE_TTL_S": "60",
        "QDRANT_TIMEOUT_S": "25",
    }  # fmt: skip  (a renewal every 20 s, within a request's 25 s; a lease of at least twice 25 + 5 s: rel36)
    app = load_indexer(monkeypatch, env)
    try:
        result: Any = app.lambda_handler(event, LambdaContext("kb-search-test-indexer", 1024, 120))
    except app.IndexerRunError as exc:
        result = exc
    finally:
        boto3.setup_default_session()
    return app, result


def test_a_write_qdrant_refused_is_not_sent_again_once_another_run_holds_the_lease(
    aws: Any, tmp_path: Path, flaky_qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduled sync's upsert refused for now (429, ``Retry-After: 1``); while it waits, its index lease is taken
    over by another run (as one does an expired lease: the renewals failed for its time to live) and the renewer
    finds it lost. adv34's SentAgain sent the write again after the wait all the same: this run's version of the
    notes written beside (or over a later write of) the lease's new holder, which rounds 23c and rel34 stop every
    other write of a run that lost its lease from doing. Now the write is not sent again once the lease is not
    held: the run ends naming the refusal and the lost lease, and nothing reaches Qdrant after the loss."""
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 3)
    from tests.integration.test_lease import found_lost, take_over

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    writes_at_loss: list[int] = []

    def taken_over() -> None:  # as Qdrant refuses the write: another run takes the lease; its renewer finds it lost
        take_over(dynamodb, lost)
        writes_at_loss.append(flaky_qdrant.upserts)

    boto3.setup_default_session()
    lost = found_lost()
    flaky_qdrant.refusals, flaky_qdrant.on_refusal = [(429, "1")], taken_over
    app, result = leased_run_on_cloud(monkeypatch, kb, flaky_qdrant.url, {})
    assert writes_at_loss == [1], writes_at_loss
    assert flaky_qdrant.upserts == 1, f"{flaky_qdrant.upserts - 1} upserts sent after the lease was lost"
    assert isinstance(result, app.IndexerRunError), result
    assert "HTTP 429, not sent again: this run lost its index lease" in str(result), result


#: At most this many note reads by path a request's budget cut may still run (``kbsearch.reader.MAX_ABANDONED``).
MAX_ABANDONED_READS = 4


def test_note_reads_from_a_dripping_s3_leave_no_pile_of_threads_across_a_warm_search_lambdas_requests(
    load_search_app: Any,
) -> None:
    """The request path's reads by path (``GET /notes/{path}``, ``kb_get_note``) over an S3 that drips (one byte
    every 0.3 s): each request is answered within its budget (round 23), but each read it gave up on kept reading
    on its helper thread (~30 s here; a note of some KiB, hours), one more thread and socket at every request of the
    warm container. Now at most MAX_ABANDONED_READS run on: while they do, a read is not started and the request is
    the same 503 at once, naming no bucket."""
    from tests.integration.test_slow_source import BUDGET_S, NOTE, _get_note

    def reads() -> int:
        return len({t for t in threading.enumerate() if t.name == "note-read" and t.is_alive()} - before)

    before = {t for t in threading.enumerate() if t.name == "note-read"}
    s3, qdrant = FakeEndpoint().start(), FakeEndpoint().start()
    s3.body, s3.content_type, s3.drip_s = NOTE, "application/octet-stream", 0.3
    try:
        app = load_search_app(KB_SOURCE="s3://kb-notes/", AWS_ENDPOINT_URL_S3=s3.url, QDRANT_URL=qdrant.url,
                              SEARCH_BUDGET_S=str(BUDGET_S))  # fmt: skip
        for request in range(MAX_ABANDONED_READS + 2):
            answer = _get_note(app)
            body = json.loads(answer["body"])
            assert answer["statusCode"] == 503 and body["error"] == "source_unavailable", answer
            assert "try again" in body["message"] and "kb-notes" not in body["message"], body
            assert reads() <= MAX_ABANDONED_READS, f"{reads()} reads still running after request {request + 1}"
    finally:
        s3.stop()
        qdrant.stop()
        helpers_ended("note-read")
