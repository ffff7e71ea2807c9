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
