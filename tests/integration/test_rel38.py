"""Round 38: the debts round 37 left (rel38). Each test fails on main's code (7ca88c1) before its fix."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_event_races import aws  # noqa: F401 (the moto fixture)
from tests.integration.test_walk37 import _index, _warned

# -- debt 1: the access admin's warnings, said once per change -------------------------------------------------


def _kb_with_rules(tmp_path: Path, rules: str) -> Path:
    kb = tmp_path / "kb"
    (kb / "en" / "Teams").mkdir(parents=True, exist_ok=True)
    (kb / "en" / "Teams" / "Deploy.md").write_text("# Deploy\n\nquokka deploy\n", encoding="utf-8")
    (kb / "Home.md").write_text("# Home\n\nquokka home\n", encoding="utf-8")
    (kb / "_access.yaml").write_text(rules, encoding="utf-8")
    return kb


def _standing(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("access settings:")]


def test_a_valid_rule_over_a_folder_still_empty_is_said_once_per_change_not_at_every_sync(tmp_path: Path) -> None:
    """A rule for a folder a team has not filled yet (`finance/: [finance]`) is valid, and every full sync said it
    again, one warning line each hour, forever (rev37c, walk37). Now a sync says the access settings' warnings when
    they differ from what the last sync said (the rules file, the lines); unchanged, the summary says how many stand
    and since when, and `--json` carries it; the rules saved anew, every warning is said again."""
    kb = _kb_with_rules(tmp_path, "en/Teams/: [teams]\nfinance/: [finance]\n")
    store = tmp_path / "q"
    rule = ("warning _access.yaml: the rule 'finance/' names no folder holding a note, so its groups (finance) "
            "restrict nothing")  # fmt: skip
    first = _index(kb, store)
    assert _warned(first, "_access.yaml") == [rule] and _standing(first) == [], first.stdout
    again = _index(kb, store)
    assert _warned(again, "_access.yaml") == [], again.stdout  # main: the same line, every sync
    standing = _standing(again)
    assert len(standing) == 1 and standing[0].startswith("access settings: 1 warning of _access.yaml"), again.stdout
    report = json.loads(_index(kb, store, "--json").stdout)
    assert report["warnings"] == [] and report["access_standing"]["count"] == 1, report
    # the rules changed (a rule added): what they say is said again, all of it
    (kb / "_access.yaml").write_text("en/Teams/: [teams]\nfinance/: [finance]\nlegal/: [legal]\n", encoding="utf-8")
    changed = _index(kb, store)
    assert len(_warned(changed, "_access.yaml")) == 2 and _standing(changed) == [], changed.stdout
    # the folder filled: nothing to say, and nothing standing
    (kb / "finance").mkdir()
    (kb / "finance" / "Budget.md").write_text("# Budget\n\nquokka budget\n", encoding="utf-8")
    filled = _index(kb, store)
    assert [w.split("'")[1] for w in _warned(filled, "_access.yaml")] == ["legal/"], filled.stdout
    assert _standing(_index(kb, store)) != [] and _warned(_index(kb, store), "_access.yaml") == []


def _invoke_scheduled(kb: Path, store: Path) -> list[dict[str, Any]]:
    done = subprocess.run([*KBSEARCH_CMD, "invoke", "IndexerFunction", "--event",
                           str(ROOT / "events" / "indexer_schedule.json")], capture_output=True, text=True, cwd=ROOT,
                          env=subprocess_env(KB_SOURCE=str(kb), QDRANT_PATH=str(store),
                                             ACCESS_GROUPS='{"slack": {"T0001": ["auditors"]}}'),
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 0 and '"errorType"' not in done.stdout, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines if '"message"' in line]


def test_the_scheduled_run_logs_the_access_settings_warnings_once_per_change(tmp_path: Path) -> None:
    """Deployed, each hourly run logged a WARNING `access setting` line for a rule over a folder still empty and for
    a group given ahead of its notes. The first run logs them; the next, unchanged, logs none and its `sync
    finished` line says how many stand (`access_standing`)."""
    kb = _kb_with_rules(tmp_path, "finance/: [finance]\n")
    store = tmp_path / "q"
    first = _invoke_scheduled(kb, store)
    assert [line["setting"] for line in first if line["message"] == "access setting"] == [
        "_access.yaml",
        "ACCESS_GROUPS",
    ], first
    second = _invoke_scheduled(kb, store)
    assert [line for line in second if line["message"] == "access setting"] == [], second  # main: both again
    finished = [line for line in second if line["message"] == "sync finished"]
    assert len(finished) == 1 and finished[0]["access_standing"]["count"] == 2, finished


# -- debt 2: the dangling-link count, versioned by how links resolve --------------------------------------------


def _rewrite_record(store: Path, count: int) -> None:
    """The dangling count's record as a kb-search whose links resolved otherwise left it (rel37's form: no
    ``resolve``; a count of links that resolve now): the notes are the same, so main reuses the count."""
    from kbsearch.config import Secrets, Settings
    from kbsearch.indexer import DANGLING_RECORD
    from kbsearch.qdrant import open_store

    settings = Settings(qdrant_path=str(store), embedding_api_key=None)
    opened = open_store(settings, Secrets(settings))
    try:
        recorded = opened.metadata()[DANGLING_RECORD]
        assert isinstance(recorded["notes"], str), recorded  # made by a run that wrote nothing: reused if it can be
        opened.merge_metadata({DANGLING_RECORD: {"count": count, "notes": recorded["notes"]}})
    finally:
        opened.close()


def _dangling_kb(tmp_path: Path) -> Path:
    kb = tmp_path / "kb"
    (kb / "ops").mkdir(parents=True)
    (kb / "ops" / "Runbook.md").write_text("# Runbook\n\nSee [[nowhere]].\n", encoding="utf-8")
    (kb / "team" / "sub").mkdir(parents=True)
    (kb / "team" / "sub" / "Child.md").write_text("# Child\n\nchild\n", encoding="utf-8")
    (kb / "team" / "Home.md").write_text("# Home\n\n[[../ops/Runbook]] and [[./sub/Child]].\n", encoding="utf-8")
    return kb


def test_kbsearch_index_counts_again_when_links_resolve_otherwise_than_when_it_counted(tmp_path: Path) -> None:
    """The KB-wide count of links naming no note is reused when a run writes nothing; it carried no version of how
    links resolve, so a kb-search resolving links otherwise (adv37's relative links: `[[../ops/Runbook]]` named no
    note before) kept reporting the count it made then. The record names the version it was made with now, and one
    made by another is made again."""
    kb, store = _dangling_kb(tmp_path), tmp_path / "q"
    for _ in range(2):  # the second run writes nothing: its count is recorded with the notes' digest
        done = _index(kb, store, "--json")
        assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dangling_total"] == 1
    _rewrite_record(store, 3)  # as counted when the two relative links named no note
    report = json.loads(_index(kb, store, "--json").stdout)
    assert report["dangling_total"] == 1, report["dangling_total"]  # main: 3, reused
    assert json.loads(_index(kb, store, "--json").stdout)["dangling_total"] == 1  # recorded anew, reused


def test_the_scheduled_run_counts_again_when_links_resolve_otherwise_than_when_it_counted(tmp_path: Path) -> None:
    """The same through the indexer function's scheduled run (its report's `dangling_total`)."""
    kb, store = _dangling_kb(tmp_path), tmp_path / "q"

    def total() -> int | None:
        done = subprocess.run([*KBSEARCH_CMD, "invoke", "IndexerFunction", "--event",
                               str(ROOT / "events" / "indexer_schedule.json")], capture_output=True, text=True,
                              cwd=ROOT, env=subprocess_env(KB_SOURCE=str(kb), QDRANT_PATH=str(store)),
                              timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
        assert done.returncode == 0 and '"errorType"' not in done.stdout, done.stdout + done.stderr
        finished = [json.loads(line) for line in (done.stdout + done.stderr).splitlines()
                    if line.startswith("{") and '"sync finished"' in line]  # fmt: skip
        return finished[-1]["dangling_total"]

    assert [total(), total()] == [1, 1]
    _rewrite_record(store, 3)
    assert total() == 1  # main: 3


# -- debt 3: a note batch slower than a whole full sync ---------------------------------------------------------


def _note_client(name: str, after: Any) -> Any:
    """An S3 client that calls ``after()`` once each of its reads (GET) of the note ``name`` has answered."""
    import boto3

    from tests.integration.test_event_races import REGION

    client = boto3.session.Session(region_name=REGION).client("s3")
    client.meta.events.register(
        "before-call.s3.GetObject", lambda params, context, **_: context.update(note=name in params["url_path"])
    )
    client.meta.events.register(
        "after-call.s3.GetObject", lambda context, **_: after() if context.get("note") else None
    )
    return client


def test_a_note_batch_slower_than_a_whole_full_sync_applies_the_version_saved_meanwhile(
    aws: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """v1 of a note is saved; its event's batch reads v1 and is slow. v2 is saved; its event's batch is failed back
    while the hourly full sync holds the lease (retried after the queue's visibility timeout, 5,400 s). The sync
    reads v2, writes it and ends, all while v1's batch works: then v1's batch writes v1. The sync's re-apply of
    claimed notes ran before that write, and the batch's re-read of the log finds no later claim: the index held v1
    until v2's retry or the next sync (rel37 left it). Now a batch that began before a full sync's recorded end looks
    each note it wrote up again (a HEAD, only then) and applies the one saved meanwhile. Through the batch's S3
    client (a botocore hook after its read of v1 saves v2 and runs the whole sync), moto's S3 and DynamoDB, the
    embedded store."""
    import boto3

    from kbsearch.events import Change
    from kbsearch.indexer import ChangeSync, Indexer, SyncOptions, event_sequencers
    from kbsearch.sources import S3Source
    from tests.integration.test_adv36b import RULES_V0, pay_kb
    from tests.integration.test_event_races import BUCKET, PREFIX, REGION

    settings, store = pay_kb(aws, tmp_path, "dynamodb", RULES_V0)
    try:
        key = f"{PREFIX}pub/Welcome.md"
        aws.put_object(Bucket=BUCKET, Key=key, Body=b"# Welcome\n\nzqversionone of the page\n")
        reports: list[Any] = []

        def after_read() -> None:  # v1 read: v2 saved, and a whole full sync runs and ends before v1's batch writes
            if reports:
                return
            aws.put_object(Bucket=BUCKET, Key=key, Body=b"# Welcome\n\nzqversiontwo of the page\n")
            sync_source = S3Source(BUCKET, PREFIX, client=boto3.session.Session(region_name=REGION).client("s3"))
            reports.append(Indexer(sync_source, store, None, SyncOptions(),
                                   claims=lambda: event_sequencers(settings)).sync())  # fmt: skip
            assert reports[0].error is None, reports

        change = Change("pub/Welcome.md", key, False, "0065F1A0B0C0D0E001")
        batch = ChangeSync(S3Source(BUCKET, PREFIX, client=_note_client("Welcome.md", after_read)), store, None,
                           SyncOptions(), event_sequencers(settings)).apply([change])  # fmt: skip
        assert reports and batch.error is None, (reports, batch)
        texts = " ".join(str(p.get("text")) for p in store.points().values() if p["path"] == "pub/Welcome.md")
        assert "zqversiontwo" in texts and "zqversionone" not in texts, texts  # main: v1, the older version
        assert batch.superseded == 1, batch
    finally:
        store.close()


# -- debt 4: what writes to file descriptor 2 below Python --------------------------------------------------------


@pytest.mark.timeout(240)
def test_kbsearch_serve_answers_after_thread_dumps_while_nobody_reads_its_stderr(tmp_path: Path) -> None:
    """`kill -USR1` makes `kbsearch serve` print every thread's stack (faulthandler): written by C code to file
    descriptor 2 from the signal's handler, past the stderr relay. Started by a launcher that pipes stderr and never
    reads it, the dumps filled the pipe and the next one blocked the thread the signal interrupted (the server's):
    no answer after. Now descriptor 2 itself is a pipe the relay drains (a dump of a few KiB appends and returns), so
    what faulthandler or a native library writes there waits, or is dropped and counted, like a log line. Spawned,
    the stderr pipe shrunk to one page and never read; 40 dumps, then `GET /health`; the dumps are there once read."""
    import signal
    import threading
    import time
    import urllib.request

    from tests.integration.test_rel37 import serve_with_stderr_unread, served_at
    from tests.integration.test_rev36b import _read_all

    process = serve_with_stderr_unread(tmp_path)
    assert process.stderr is not None
    try:
        base = served_at(process)
        for _ in range(40):
            process.send_signal(signal.SIGUSR1)
            time.sleep(0.05)
        answered: list[int] = []

        def ask() -> None:
            with urllib.request.urlopen(f"{base}/health", timeout=60) as response:
                answered.append(response.status)

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        asking.join(30)
        assert answered == [200], "no answer within 30 s after the thread dumps: the server is blocked"  # main
        said = bytearray()
        reader = _read_all(process.stderr.fileno(), said)
        time.sleep(1.0)
        process.terminate()
        assert process.wait(30) in (0, 143, -15)
        reader.join(10)
        assert b"Most recent call first" in said or b"Current thread" in said, bytes(said[-500:])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
