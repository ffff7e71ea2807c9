"""Session 34's cold review of adv34 (rev34c): the helper threads a Lambda run's S3 reads are waited on from
(``resilience.call_within``), through the indexer Lambda handler (``functions/indexer``) warm across runs, over a
loopback S3 (``AWS_ENDPOINT_URL_S3``) that drips every note's body."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kbsearch_tools.fakes import FakeEndpoint
from tests.integration.test_adv34 import invoke_within_the_lambda
from tests.integration.test_events import load_indexer
from tests.integration.test_fault_matrix import listing_xml

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
        s3.drip_s = 0.0
        s3.stop()
