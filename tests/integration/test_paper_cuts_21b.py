"""Paper cuts, round 21's leftovers: `kbsearch serve` on SIGTERM, an `S3://` source in upper case, an argument
holding a line break in an error line; each through `kbsearch` as a process (S3 through moto)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from kbsearch_tools import cli
from kbsearch_tools.local.process import serve_process
from tests.conftest import PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_freshness import until

# -- kbsearch serve: SIGTERM shuts down as a Ctrl-C does --------------------------------------------------------------


def test_sigterm_shuts_serve_down_releasing_what_it_holds(tmp_path: Path) -> None:
    """`kill <pid>` (`docker stop`, systemd) ended `kbsearch serve` at once: the hand-off socket's file stayed in the
    store's folder, the watcher's sync was cut, the oracle never stopped. It shuts down as the first Ctrl-C does now,
    every step, then one line and 143 (128 + SIGTERM), no traceback."""
    kb, store = tmp_path / "kb", tmp_path / "q"
    kb.mkdir()
    (kb / "note.md").write_text("# Zorblax\n\nThe zorblax rotation runbook.\n")
    sock = store / "kb.serve.sock"
    with serve_process(subprocess_env(QDRANT_PATH=str(store)), cwd=ROOT, args=["--watch", str(kb)]) as served:
        until(lambda: "initial sync" in served.text() and sock.exists(), log=served.text)
        served.process.send_signal(signal.SIGTERM)
        try:
            served.process.wait(timeout=PROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve did not stop on SIGTERM:\n{served.text()[-6000:]}") from None
        until(lambda: served.text().rstrip().endswith("kbsearch serve: terminated"), timeout_s=5, log=served.text)
    text = served.text()
    assert served.process.returncode == 143 and "Traceback" not in text, (served.process.returncode, text[-3000:])
    assert text.count("kbsearch serve: terminated") == 1, text[-3000:]
    assert not sock.exists(), "the hand-off socket's file was left behind"


# -- an S3 source's scheme in any case --------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["S3", "s3"])
def test_an_s3_source_whose_scheme_is_upper_case_is_s3_not_a_folder(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kbsearch index 'S3://bucket/prefix'` was read as a local folder (`S3:/kb-notes/kb`, not there): a URI's
    scheme is case-insensitive (RFC 3986 3.1)."""
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "q"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        s3.put_object(Bucket="kb-notes", Key="kb/en/Note.md", Body=b"# Zorblax\n\nThe zorblax rotation runbook.\n")
        code = cli.main(["index", f"{scheme}://kb-notes/kb", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["notes_listed"] == 1 and report["error"] is None, report
