"""Round 34's adversarial pass (adv34): dependencies that answer slowly enough to beat every per-read timeout, on the
paths earlier rounds bounded least. Through the real interfaces: the indexer Lambda handler (``functions/indexer``)
given a scheduled event or an SQS batch of moto's S3 events, over a loopback Qdrant Cloud speaking its REST
contract (``test_hostile_notes.FakeQdrant``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.s3events import sqs_event
from tests.integration import test_events as events_tests
from tests.integration.test_events import BUCKET, PREFIX, TABLE, load_indexer
from tests.integration.test_hostile_notes import FakeQdrant, collection_info
from tests.integration.test_indexer import write_notes

aws = events_tests.aws  # moto's bucket and queue, the lease table

#: The indexer Lambda's timeout in these tests, and how long a test waits for the handler: Lambda ends the
#: invocation at its timeout, so a handler still running then gives no report at all.
LAMBDA_TIMEOUT_S = 12.0
WAIT_S = 40.0


@pytest.fixture
def dripping_qdrant(tmp_path: Path) -> Iterator[FakeQdrant]:
    """Qdrant Cloud answering every upsert one byte every 0.3 s: each read well within QDRANT_TIMEOUT_S (10 s), the
    whole answer ~50 s (a Qdrant under load, a proxy in front of it)."""
    fake = FakeQdrant(collection_info(tmp_path / "schema"), ok_upserts=1_000)
    fake.drip_on, fake.drip_s = "PUT /collections/kb/points", 0.3
    yield fake
    fake.stop()


def invoke_within_the_lambda(app: Any, event: dict[str, Any]) -> Any:
    """The handler's answer to ``event``, asserted to come before the Lambda's end (the test waits longer, so a
    handler that overruns fails here with how long it ran); an exception it raises is the answer."""
    outcome: list[Any] = []

    def invoke() -> None:
        try:
            outcome.append(app.lambda_handler(event, LambdaContext("kb-search-test-indexer", 1024, LAMBDA_TIMEOUT_S)))
        except Exception as exc:  # a scheduled run's failure: IndexerRunError naming the report's error
            outcome.append(exc)

    started = time.monotonic()
    run = threading.Thread(target=invoke, daemon=True)
    run.start()
    run.join(WAIT_S)
    took = time.monotonic() - started
    assert outcome, f"the handler was still running {took:.0f} s into a {LAMBDA_TIMEOUT_S:.0f} s Lambda"
    assert took < LAMBDA_TIMEOUT_S, f"answered {took:.1f} s in, past the Lambda's {LAMBDA_TIMEOUT_S:.0f} s"
    return outcome[0]


def helpers_ended(name: str, within_s: float = 10.0) -> None:
    """Wait (at most ``within_s``) for the helper threads named ``name`` (``kbsearch-s3``, ``note-read``) that a cut
    left reading to end, once the fake they read from is stopped (its drips end with it): the calls left running
    are counted per process (``resilience.abandoned_calls``), so the next test starts with none."""
    give_up = time.monotonic() + within_s
    while time.monotonic() < give_up and any(t.name == name and t.is_alive() for t in threading.enumerate()):
        time.sleep(0.05)


def dripped_run(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fake: Any, helper: str) -> tuple[Any, Any]:
    """The indexer handler's scheduled run with ``env`` (4 s kept before the Lambda's end, no embedding key), asserted
    to end within the Lambda (:func:`invoke_within_the_lambda`), against a ``fake`` endpoint that drips: (the
    handler's module, its answer). The fake is stopped after it and the ``helper`` threads its cut left reading
    waited for (:func:`helpers_ended`)."""
    env = env | {"DEADLINE_MARGIN_S": "4", "EMBEDDING_API_KEY": "", "EMBEDDING_API_KEY_PARAM": ""}
    try:
        app = load_indexer(monkeypatch, env)
        return app, invoke_within_the_lambda(app, {})
    finally:
        fake.stop()
        helpers_ended(helper)


def test_a_qdrant_that_drips_a_writes_answer_is_cut_at_the_runs_end_with_a_report(
    tmp_path: Path, dripping_qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduled run over a Qdrant that drips its upserts' answers must end before the Lambda does, its report
    naming the storage failure and the run's end, and the next run writes the notes. The indexer's Qdrant client
    (qdrant-client over httpx) bounded each socket read only, never the exchange: the handler ran past the
    Lambda's end (killed there: no report, the index lease held until it expires), as the providers' calls did
    before the wall-clock policy (RELIABILITY.md, "Slow senders")."""
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 3)
    env = {"KB_SOURCE": str(kb), "QDRANT_URL": dripping_qdrant.url, "DEADLINE_MARGIN_S": "4"}
    app = load_indexer(monkeypatch, env)
    result = invoke_within_the_lambda(app, {})
    assert dripping_qdrant.dripped >= 1
    assert isinstance(result, app.IndexerRunError), result
    assert "index storage failed: writing" in str(result) and "by the run's end" in str(result), result
    dripping_qdrant.drip_on = ""  # Qdrant well again: the next run writes every note (none was recorded)
    again = invoke_within_the_lambda(app, {})
    assert again["error"] is None and again["added"] == 3, again


def test_an_event_batch_whose_write_qdrant_drips_gives_its_messages_back_before_the_lambdas_end(
    aws: Any, dripping_qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same Qdrant under an S3 event batch (moto's bucket and queue, the handler given the SQS event): the batch
    ends before the Lambda does, the note's message given back (``batchItemFailures``) to be retried; then, Qdrant
    well again, the same messages are applied. Before, the handler ran past the Lambda's end (45 s into 12): the
    whole batch was retried after the queue's visibility timeout, with no word of why."""
    env = {"KB_SOURCE": f"s3://{BUCKET}/{PREFIX}", "QDRANT_URL": dripping_qdrant.url, "INDEX_LEASE_TABLE": TABLE,
           "DEADLINE_MARGIN_S": "4"}  # fmt: skip
    app = load_indexer(monkeypatch, env)
    aws.put(PREFIX + "ops/Plan.md", b"# Plan\n\nquokka\n")
    records = aws.receive()
    note = [r["messageId"] for r in records if "Plan.md" in r["body"]]
    assert note, records
    result = invoke_within_the_lambda(app, sqs_event(records))
    assert dripping_qdrant.dripped >= 1
    assert set(note) <= {item["itemIdentifier"] for item in result["batchItemFailures"]}, result
    dripping_qdrant.drip_on = ""
    assert invoke_within_the_lambda(app, sqs_event(records)) == {"batchItemFailures": []}


@pytest.fixture
def flaky_qdrant(tmp_path: Path) -> Iterator[FakeQdrant]:
    fake = FakeQdrant(collection_info(tmp_path / "schema"), ok_upserts=1_000)
    yield fake
    fake.stop()


REFUSALS = {  # what Qdrant Cloud answers the first upserts: rate limits (strict mode) and load shedding
    "429 Retry-After 1, twice": [(429, "1"), (429, "1")],
    "429 without Retry-After": [(429, None)],
    "503 Retry-After 1": [(503, "1")],
    "429 Retry-After 0": [(429, "0")],
}


@pytest.mark.parametrize("refusals", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_write_qdrant_refuses_for_now_is_sent_again_when_it_says(
    tmp_path: Path, flaky_qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch, refusals: list[tuple[int, str | None]]
) -> None:
    """Qdrant Cloud refusing a sync's upsert for now (429 under a write rate limit, qdrant-client's
    ``ResourceExhaustedResponse`` when it says ``Retry-After``; a 503 shedding load): nothing was written, so the
    write is sent again when Qdrant says (or after a short backoff), within the run's time, and the run completes.
    Before, the first refusal stopped the whole sync (``index storage failed: writing N points failed:
    ResourceExhaustedResponse``): a KB larger than one rate-limit window was written one window a run (an hour
    apart), every window embedded before the refusal paid for again."""
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 3)
    flaky_qdrant.refusals = list(refusals)
    env = {"KB_SOURCE": str(kb), "QDRANT_URL": flaky_qdrant.url, "DEADLINE_MARGIN_S": "4"}
    report = invoke_within_the_lambda(load_indexer(monkeypatch, env), {})
    assert isinstance(report, dict) and report["error"] is None, report
    assert report["added"] == 3 and not report["incomplete"], report
    assert not flaky_qdrant.refusals and flaky_qdrant.upserts > len(refusals)


def test_a_write_qdrant_refuses_for_longer_than_the_run_can_wait_fails_at_once_naming_the_wait(
    tmp_path: Path, flaky_qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 429 asking for an hour: the run does not sleep it out (nor past its end); it stops at once with the
    storage error naming the wait asked for, and the next run writes the notes."""
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 3)
    flaky_qdrant.refusals = [(429, "3600")]
    env = {"KB_SOURCE": str(kb), "QDRANT_URL": flaky_qdrant.url, "DEADLINE_MARGIN_S": "4"}
    app = load_indexer(monkeypatch, env)
    result = invoke_within_the_lambda(app, {})
    assert isinstance(result, app.IndexerRunError), result
    assert "index storage failed: writing" in str(result) and "3600" in str(result), result
    # refused before any wait (SentAgain raises this before it sleeps): no wall-clock bound a loaded machine can miss
    assert "more than this run can wait" in str(result), result
    again = invoke_within_the_lambda(app, {})
    assert again["error"] is None and again["added"] == 3, again


@pytest.mark.parametrize("what", ["listing", "read"])
def test_an_s3_that_drips_is_cut_at_the_runs_end_with_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    """The other half of "Still not covered": the KB's S3 (``AWS_ENDPOINT_URL_S3``, a loopback S3 speaking
    ListObjectsV2 and GetObject) dripping a listing page or a note's body one byte every 0.3 s (botocore's
    timeouts are per socket read: 20 s, four attempts). The scheduled run ends before the Lambda does: a listing
    cut is a failed listing (nothing deleted), a read cut skips the note naming the run's end, its last version
    kept. Before, the handler ran past the Lambda's end."""
    from tests.integration.test_fault_matrix import listing_xml

    note = b"# A\n\nquokka\n"
    s3 = FakeEndpoint().start()

    def respond(method: str, path: str) -> tuple[int, bytes, str]:
        listing = "list-type=2" in path
        s3.drip_s = 0.3 if listing == (what == "listing") else 0.0
        return (200, listing_xml([("a.md", note)]), "application/xml") if listing else (200, note, "text/markdown")

    s3.responder = respond
    env = {"KB_SOURCE": "s3://kb/", "AWS_ENDPOINT_URL_S3": s3.url, "QDRANT_PATH": str(tmp_path / "q")}
    app, result = dripped_run(monkeypatch, env, s3, "kbsearch-s3")
    if what == "listing":
        assert isinstance(result, app.IndexerRunError), result
        assert "listing s3://kb/ failed" in str(result) and "by the run's end" in str(result), result
    else:
        assert isinstance(result, dict) and result["added"] == 0, result
        (skipped,) = result["skipped"]
        assert skipped["path"] == "a.md" and "by the run's end" in skipped["reason"], skipped
