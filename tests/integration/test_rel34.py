"""Round 34's reliability debts (rel34), through the real interfaces: the indexer handler on moto's S3 and DynamoDB
(its lease table) with the embedded Qdrant; the CLIs spawned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.markdown import PARSE_VERSION
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import NOTES_READING, NOTES_READING_FROM
from tests.integration.test_lease import s3_kb_and_lease_table  # noqa: F401 (fixture)

# -- 1: after a lost lease the end of a sync writes nothing ---------------------------------------------------------


def _scheduled_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """test_lease's scheduled run of the bucket, notes of at most 1 KiB."""
    from tests.integration.test_lease import _scheduled_sync_of_the_bucket

    return _scheduled_sync_of_the_bucket(tmp_path, monkeypatch, MAX_NOTE_BYTES="1024")


def _collection(tmp_path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The collection's metadata and every point's payload (without its indexing time), by point id."""
    settings = Settings(qdrant_path=str(tmp_path / "qdrant"))
    store = open_store(settings, Secrets(settings))
    try:
        points = {
            pid: {k: v for k, v in payload.items() if k != "indexed_at"} for pid, payload in store.points().items()
        }
        return store.metadata(), points
    finally:
        store.close()


def test_a_sync_that_lost_its_lease_writes_nothing_at_its_end(
    s3_kb_and_lease_table: Any,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rev33b made every write of ``_index`` look at the lease; the end of the sync did not. A full sync reading
    every note again for a new reading (``notes_reading`` older than PARSE_VERSION), under new folder rules
    (`hr/: [hr, payroll]`), with `a-big.md` grown past MAX_NOTE_BYTES and `hr/pay.md` no longer UTF-8 (both
    skipped: the re-read's walk passes them), loses its lease at the third object read (`n00.md`): another run has
    taken it over. On main its end still wrote: the groups of the note it kept at its last good version, the
    restricted link targets, the re-read cursor (`after: hr/pay.md`: set back under a holder that had got further)
    and the groups of ``reach`` (`payroll`, into the metadata and every public chunk). Now the collection's metadata
    and every payload but the one written before the loss (`hr/pay.md`'s groups, under the rules read then) are as
    they were: the run that holds the lease writes them."""
    from tests.integration.test_lease import taken_over_at_the_third_note

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket="kb-notes", Key="_access.yaml", Body=b"hr/: [hr]\n")
    s3.put_object(Bucket="kb-notes", Key="a-big.md", Body=b"# Big\n\nsmall for now\n")
    s3.put_object(Bucket="kb-notes", Key="hr/pay.md", Body=b"# Pay\n\nsalary bands, see [[n01]]\n")
    first = _scheduled_run(tmp_path, monkeypatch)
    assert first.get("added") == 14 and not first.get("error"), first
    settings = Settings(qdrant_path=str(tmp_path / "qdrant"))
    store = open_store(settings, Secrets(settings))
    try:  # a collection recorded by the reading before today's: the next full sync reads every note again
        store.merge_metadata({NOTES_READING: PARSE_VERSION - 1})
    finally:
        store.close()
    s3.put_object(Bucket="kb-notes", Key="_access.yaml", Body=b"hr/: [hr, payroll]\n")
    s3.put_object(Bucket="kb-notes", Key="a-big.md", Body=b"# Big\n\n" + b"grown " * 400)
    s3.put_object(Bucket="kb-notes", Key="hr/pay.md", Body=b"# Pay\n\n\xff\xfe salary\n")
    metadata, points = _collection(tmp_path)

    lost = taken_over_at_the_third_note(s3_kb_and_lease_table)  # reads: _access.yaml, hr/pay.md, n00.md
    report = _scheduled_run(tmp_path, monkeypatch)
    assert lost.is_set()
    assert "lease index#kb was lost mid-run (another run took it over" in str(report.get("raised")), report
    after, now = _collection(tmp_path)
    assert after.get(NOTES_READING_FROM) == metadata.get(NOTES_READING_FROM) is None  # main: {"after": "hr/pay.md"}
    assert after == metadata  # main: the reach groups (payroll), the restricted link targets
    pay = {pid for pid, payload in points.items() if payload["path"] == "hr/pay.md"}
    assert {now[pid]["access"] == ["hr", "payroll"] for pid in pay} == {True}  # written before the loss
    changed = sorted({now[pid]["path"] for pid in points if pid not in pay and now[pid] != points[pid]})
    assert changed == [], changed  # main: every public note (its reach given `payroll`)


# -- 2: a $$ block closes as a fence does ---------------------------------------------------------------------------

#: each note's word after its math (or inside it, under a heading the math holds) to search by
MATH_KB = {
    "indented.md": "# Energy\n\n$$\nE = mc^2\n    $$\n## Inside the math\nquokka\n$$\n\n## After\n\nnumbat\n",
    "quoted.md": "# Quoted\n\n> $$\n> a^2\n> > $$\n> ## Inside too\n> wombat\n> $$\n\n## After\n\ndingo\n",
}


def test_math_closed_as_a_fence_is_indexed_so_and_an_older_reading_is_read_again(tmp_path: Path) -> None:
    """From moto's S3 to the embedded Qdrant, then the search service: the words inside a ``$$`` block whose
    ``    $$`` or ``> > $$`` line is its text are found under the note's own heading (main: under a heading inside
    the math, `Energy > Inside the math`, `Quoted > Inside too`). A collection recording round 33's reading (4)
    is read again by the next sync."""
    from tests.integration.test_lines32 import found, sync_s3
    from tests.integration.test_notes_graph import write_kb
    from tests.integration.test_rel33 import read_again_after

    kb = write_kb(tmp_path / "kb", MATH_KB)
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    assert sync_s3(kb, settings).added == len(MATH_KB)
    assert found(settings, "quokka")[:1] == [("indented.md", "Energy")]
    assert found(settings, "wombat")[:1] == [("quoted.md", "Quoted")]
    assert found(settings, "numbat")[:1] == [("indented.md", "Energy > After")]
    assert found(settings, "dingo")[:1] == [("quoted.md", "Quoted > After")]
    assert PARSE_VERSION >= 5
    read_again_after(4, kb, settings, len(MATH_KB))  # what a kb-search of round 33 recorded


# -- 3: KB_LOCAL_API_KEYS's entries numbered one way ----------------------------------------------------------------


def test_kbsearch_serve_numbers_a_local_key_alike_in_its_error_and_its_banner(tmp_path: Path) -> None:
    """``KB_LOCAL_API_KEYS=k1:hr,,k2:...``: the banner (and the caller's name) call the second key
    ``KB_LOCAL_API_KEYS #2``, but a bad group of that same key was ``entry 3`` (the empty entry counted). Both
    count the entries that give a key now, through the spawned ``kbsearch serve``."""
    import subprocess

    from kbsearch_tools.local.live import wait_until
    from kbsearch_tools.local.process import serve_process
    from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env

    kb = tmp_path / "kb"
    (kb / "hr").mkdir(parents=True)
    (kb / "hr" / "pay.md").write_text("# Pay\n\nsalary bands\n")
    (kb / "_access.yaml").write_text("hr/: [hr]\n")
    store = str(tmp_path / "q")
    env = subprocess_env(QDRANT_PATH=store)
    indexed = subprocess.run([*KBSEARCH_CMD, "index", str(kb)], capture_output=True, text=True, cwd=tmp_path,
                             env=env, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert indexed.returncode == 0, indexed.stderr[-2000:]
    with serve_process(subprocess_env(QDRANT_PATH=store, KB_LOCAL_API_KEYS="k1:hr,,k2:hrr"), cwd=ROOT) as served:
        wait_until(lambda: "KB_LOCAL_API_KEYS #" in served.text(), 20)  # the banner, printed at once
        banner = served.text()
    assert "(KB_LOCAL_API_KEYS #2; the index's groups: hr" in banner, banner
    for keys in ("k1:hr,,k2:hr+no!", ",k1:hr,,,k2:hr+no!,"):
        env = subprocess_env(QDRANT_PATH=store, KB_LOCAL_API_KEYS=keys, KB_SOURCE=str(kb))
        refused = subprocess.run([*KBSEARCH_CMD, "serve", "--port", "0"], capture_output=True, text=True, cwd=ROOT,
                                 env=env, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
        assert "KB_LOCAL_API_KEYS entry 2: expected key or key:group+group" in refused.stderr, (
            refused.stderr
        )  # main: 3, 5
