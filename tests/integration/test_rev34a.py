"""Round 34's cold review of rel34 (rev34a), through the real interfaces: the indexer handler on moto's S3 and
DynamoDB (its lease table) with the embedded Qdrant."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.qdrant import open_store
from tests.integration.test_lease import found_lost, s3_kb_and_lease_table, take_over  # noqa: F401 (fixture)
from tests.integration.test_rel34 import _collection, _scheduled_run


def _taken_over_after_reading_the_rules(dynamodb: Any, rules: bytes) -> threading.Event:
    """Botocore hooks on the default session: once the run has read ``_access.yaml`` (its first object read, right
    after the listing), the KB's admin writes ``rules`` into it and another run takes the lease over
    (test_lease's :func:`take_over`: the hook waits for the renewer to find it lost, then the event is set)."""
    lost, keys = found_lost(), []

    def asked(params: dict[str, Any], **_: Any) -> None:
        keys.append(params.get("Key"))

    def read(**_: Any) -> None:
        if keys[-1:] == ["_access.yaml"] and not lost.is_set():
            boto3.client("s3", region_name="us-east-1").put_object(Bucket="kb-notes", Key="_access.yaml", Body=rules)
            take_over(dynamodb, lost)

    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-parameter-build.s3.GetObject", asked)
    boto3.DEFAULT_SESSION.events.register("after-call.s3.GetObject", read)
    return lost


def test_a_sync_that_lost_its_lease_in_its_first_seconds_regroups_no_note(
    s3_kb_and_lease_table: Any,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rel34 left the writes before ``_index`` unchecked. A scheduled sync reads ``_access.yaml`` as it was
    (``ops/: [ops]``: `hr/` public), then its lease is lost: its admin restricts `hr/` again (``hr/: [hr]``) and
    the run that takes the lease over gives `hr/pay.md` the group `hr` (here: what the index already holds). On
    main the old run, before its first note, still wrote the groups its stale rules decided: `hr/pay.md` public,
    served to every caller (a leak of a restricted note until the next sync). Now it writes nothing once its lease
    is lost: `hr/pay.md` keeps `hr`, and nothing else in the collection changes."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket="kb-notes", Key="_access.yaml", Body=b"hr/: [hr]\n")
    s3.put_object(Bucket="kb-notes", Key="hr/pay.md", Body=b"# Pay\n\nsalary bands, see [[n01]]\n")
    first = _scheduled_run(tmp_path, monkeypatch)
    assert first.get("added") == 13 and not first.get("error"), first
    metadata, points = _collection(tmp_path)
    pay = {pid for pid, payload in points.items() if payload["path"] == "hr/pay.md"}
    assert pay and {points[pid]["access"] == ["hr"] for pid in pay} == {True}
    s3.put_object(Bucket="kb-notes", Key="_access.yaml", Body=b"ops/: [ops]\n")  # what the next run reads

    lost = _taken_over_after_reading_the_rules(s3_kb_and_lease_table, b"hr/: [hr]\n")
    report = _scheduled_run(tmp_path, monkeypatch)
    assert lost.is_set()
    assert "lease index#kb was lost mid-run (another run took it over" in str(report.get("raised")), report
    after, now = _collection(tmp_path)
    assert [now[pid]["access"] for pid in pay] == [["hr"]], [now[pid]["access"] for pid in pay]  # main: public
    changed = sorted({now[pid]["path"] for pid in points if now.get(pid) != points[pid]})
    assert changed == [], changed
    assert after == metadata


def test_a_sync_whose_lease_lapsed_before_its_first_write_writes_nothing(
    s3_kb_and_lease_table: Any,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run's process is frozen while it takes the lease (its ``PutItem`` answered after INDEX_LEASE_TTL_S, 30 s)
    and DynamoDB throttles its renewals: from its first step on, any other run may hold the lease. It had a BM25
    reading to bring up to date (``bm25_reading`` one back), a note gone from the bucket (`n05.md`) and `hr/` made
    public by its rules. On main it rewrote every chunk's BM25 vector and recorded the reading, deleted `n05.md` and
    gave `hr/pay.md` the group `public`, all beside whoever held the lease; now it writes nothing, its report naming
    the lease."""
    from botocore.exceptions import ClientError

    from kbsearch.lexical import READING_VERSION
    from kbsearch.qdrant.query import BM25_READING

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket="kb-notes", Key="_access.yaml", Body=b"hr/: [hr]\n")
    s3.put_object(Bucket="kb-notes", Key="hr/pay.md", Body=b"# Pay\n\nsalary bands\n")
    assert _scheduled_run(tmp_path, monkeypatch).get("added") == 13
    settings = Settings(qdrant_path=str(tmp_path / "qdrant"))
    store = open_store(settings, Secrets(settings))
    try:
        store.merge_metadata({BM25_READING: READING_VERSION - 1})
    finally:
        store.close()
    s3.put_object(Bucket="kb-notes", Key="_access.yaml", Body=b"ops/: [ops]\n")
    s3.delete_object(Bucket="kb-notes", Key="n05.md")
    metadata, points = _collection(tmp_path)

    taken: list[int] = []

    def frozen(**_: Any) -> None:  # the first PutItem: the run taking the lease
        if not taken:
            taken.append(1)
            time.sleep(31)

    def throttled(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateItem")

    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("after-call.dynamodb.PutItem", frozen)
    boto3.DEFAULT_SESSION.events.register("before-call.dynamodb.UpdateItem", throttled)
    report = _scheduled_run(tmp_path, monkeypatch)
    assert taken
    assert "lease index#kb was lost mid-run (its renewals failed" in str(report.get("raised")), report
    after, now = _collection(tmp_path)
    assert after.get(BM25_READING) == READING_VERSION - 1  # main: READING_VERSION
    assert now == points  # main: n05.md deleted, hr/pay.md public
    assert after == metadata


def test_math_in_a_list_item_ends_with_the_item_when_indexed_and_an_older_reading_is_read_again(
    tmp_path: Path,
) -> None:
    """From moto's S3 to the embedded Qdrant, then the search service: a ``$$`` block opened in a list item that no
    line of the item closes ends at the item's end, as a fence does; the heading after it is a heading and the
    words under it are found there (main: the math ran on to the next ``$$`` at the margin, `quokka` under the
    note's first heading, its tag lost). A collection recording rel34's reading (5) is read again."""
    from kbsearch.markdown import PARSE_VERSION
    from tests.integration.test_rel33 import quokka_under_and_read_again

    assert PARSE_VERSION >= 6
    body = "# Steps\n\n- item\n  $$\n  x\n## Heading #kept\n\nquokka\n\n$$\ny\n$$\n"
    # main: quokka under "Steps", no tag; 5: what rel34's kb-search recorded
    quokka_under_and_read_again(tmp_path, body, "Steps > Heading #kept", 5)
