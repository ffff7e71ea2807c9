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
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
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


# -- an argument holding a line break, in an error line -----------------------------------------------------------------

TEMPLATE = ["--template", str(ROOT / "template.yaml")]


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [(["index", "{tmp}/no\nsuch"], 2,
      "kbsearch index: error: KB folder {tmp}/no\\nsuch does not exist"),
     (["serve", *TEMPLATE, "--port", "0", "--host", "bad\nhost"], 1,
      "kbsearch serve: error: cannot listen on bad\\nhost:0: "),
     (["serve", *TEMPLATE, "--port", "0", "--watch", "{tmp}/x\ny"], 2,
      "kbsearch serve: error: --watch: KB folder {tmp}/x\\ny does not exist"),  # walk31: as kbsearch index says it
     (["eval", "--kb", "{tmp}", "--queries", "{tmp}/q\nz.yaml"], 2,
      "kbsearch eval: error: cannot read queries file {tmp}/q\\nz.yaml: no such file"),
     (["index", "{tmp}/e\nmpty"], 0, "  nothing to index: no notes in {tmp}/e\\nmpty: a note is a file ending in")],
)  # fmt: skip
def test_an_argument_holding_a_line_break_stays_one_line_in_its_message(
    args: list[str], code: int, line: str, tmp_path: Path
) -> None:
    """A path or `--host` holding a line break was printed raw: the error line broke in two, its second half
    reading as a line of its own. It is escaped (`\\n`), as a note's file name already was in the sync summary."""
    (tmp_path / "e\nmpty").mkdir()
    given = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    proc = subprocess.run([*KBSEARCH_CMD, *given], capture_output=True, text=True, cwd=tmp_path,
                          env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")), timeout=PROCESS_TIMEOUT_S,
                          check=False)  # fmt: skip
    expected = line.replace("{tmp}", str(tmp_path))
    shown = [text for text in (proc.stdout + proc.stderr).splitlines() if text.startswith(expected)]
    assert proc.returncode == code and "Traceback" not in proc.stderr and len(shown) == 1, (proc.stdout, proc.stderr)
    if code:
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
