"""Round 29: the adversarial pass (adv29): a new user's first hour from a fresh clone, scopes under every caller,
the S3 event path, through the real interfaces (`kbsearch` spawned as a process). Each test fails on main's code
before its fix."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from kbsearch_tools.s3events import EventPath
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_events import aws as aws  # noqa: PLC0414 (the fixture, shared)

# -- 1: a file an option names: not there, or YAML that does not parse --------------------------------------------

TEMPLATE = str(ROOT / "template.yaml")
EVENT = str(ROOT / "events" / "health.json")


def kbsearch(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, cwd=cwd, timeout=PROCESS_TIMEOUT_S,
                          env=subprocess_env(QDRANT_PATH=str(cwd / "q")), check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "said"),
    [(["invoke", "SearchFunction", "-e", EVENT, "--template", "templat.yaml"],
      "kbsearch invoke: error: cannot read template {tmp}/templat.yaml: no such file: did you mean "
      "{tmp}/template.yaml?"),
     (["invoke", "SearchFunction", "-e", EVENT, "--template", TEMPLATE, "--env-vars", "env.jsn"],
      "kbsearch invoke: error: cannot read env vars file env.jsn: no such file (in {tmp}): did you mean env.json?"),
     (["eval", "--kb", "kb", "--queries", "queries.yml"],
      "kbsearch eval: error: cannot read queries file queries.yml: no such file (in {tmp}): did you mean "
      "queries.yaml?"),
     (["eval", "--classes", "clases.yaml"],
      "kbsearch eval: error: cannot read the class manifest clases.yaml: no such file (in {tmp}): did you mean "
      "classes.yaml?"),
     (["eval", "--classes", "dangling.yaml"],
      "kbsearch eval: error: cannot read the class manifest dangling.yaml: a symbolic link to nothing")],
)  # fmt: skip
def test_a_file_an_option_names_that_is_not_there_names_the_one_meant(
    args: list[str], said: str, tmp_path: Path
) -> None:
    """Only `--event` named the file meant: `--template`, `--env-vars`, `--queries` and `--classes` said "No such
    file or directory", the typo (or the working folder) left to be found. Each now says where a relative one was
    looked for and the file beside it with the closest name, as `--event` does."""
    for name in ("template.yaml", "env.json", "queries.yaml", "classes.yaml"):
        (tmp_path / name).write_text("[]\n")
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "gone.yaml")
    (tmp_path / "kb").mkdir()
    proc = kbsearch(tmp_path, *args)
    assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)
    assert proc.stderr.strip() == said.replace("{tmp}", str(tmp_path)), proc.stderr


@pytest.mark.parametrize(
    ("args", "what"),
    [(["invoke", "SearchFunction", "-e", EVENT, "--template", "{bad}"], "kbsearch invoke: error: template {bad}"),
     (["eval", "--kb", "kb", "--queries", "{bad}"], "kbsearch eval: error: queries file {bad}"),
     (["eval", "--classes", "{bad}"], "kbsearch eval: error: the class manifest {bad}")],
)  # fmt: skip
def test_a_yaml_file_an_option_names_that_does_not_parse_is_one_line_with_its_line_and_column(
    args: list[str], what: str, tmp_path: Path
) -> None:
    """PyYAML's message is several lines naming the text `"<unicode string>"` with an excerpt and a caret: the error
    line showed it as escaped newlines (`while parsing a flow sequence\\n  in "<unicode string>", line 1, column
    4:\\n    a: [b\\n       ^\\nexpected ...`). Now one line: where in the file, what, and since where."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [b\nc: d\n")
    (tmp_path / "kb").mkdir()
    proc = kbsearch(tmp_path, *[arg.replace("{bad}", str(bad)) for arg in args])
    assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)
    assert proc.stderr.strip().startswith(what.replace("{bad}", str(bad)) + " is not valid YAML"), proc.stderr
    assert proc.stderr.strip().endswith(
        ": line 2, column 2: expected ',' or ']', but got ':' (while parsing a flow sequence from line 1, column 4)"
    ), proc.stderr
    assert "\\n" not in proc.stderr and "<unicode string>" not in proc.stderr, proc.stderr


# -- 3: the S3 event path: one note's identity spelled by two keys -------------------------------------------------


def test_two_keys_spelling_one_notes_path_in_nfc_and_nfd_converge_to_a_full_sync_through_events(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A note's identity is its path in NFC: `йод.md` typed on Linux (NFC) and uploaded from a Mac (NFD) are two
    keys of one note. Both created, then one deleted, then the other: after each step the index equals a clean full
    sync of the bucket (the event run reads the note's current state under every spelling). Held."""
    import datetime as dt
    import json
    import unicodedata
    from urllib.parse import quote_plus

    from kbsearch_tools.s3events import sqs_record
    from tests.integration.test_events import BUCKET, PREFIX, Indexer, clean_full_sync, points

    sequence = [0x0065F1A0B0C0D0E0]

    def record(key: str, name: str) -> dict[str, object]:
        sequence[0] += 1
        obj = {"key": quote_plus(key, safe="/"), "size": 10, "eTag": "0" * 32, "sequencer": f"{sequence[0]:016X}00"}
        return {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventTime": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "eventName": name, "s3": {"bucket": {"name": BUCKET}, "object": obj}}  # fmt: skip

    def deliver(*records: dict[str, object]) -> None:
        assert indexer([sqs_record(json.dumps({"Records": [r]}), aws.queue_arn) for r in records]) == []

    nfc, nfd = "папка/йод.md", unicodedata.normalize("NFD", "папка/йод.md")
    assert nfc != nfd
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + "other.md", Body=b"# Other\n\nquokka other\n")
    aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + nfc, Body="# Йод NFC\n\nquokka linux\n".encode())
    deliver(record(PREFIX + "other.md", "ObjectCreated:Put"), record(PREFIX + nfc, "ObjectCreated:Put"))
    assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)
    aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + nfd, Body="# Йод NFD\n\nquokka mac\n".encode())
    deliver(record(PREFIX + nfd, "ObjectCreated:Put"))
    assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path)
    aws.s3.delete_object(Bucket=BUCKET, Key=PREFIX + nfc)
    deliver(record(PREFIX + nfc, "ObjectRemoved:Delete"))
    one_left = points(indexer.settings())
    assert one_left == clean_full_sync(indexer, tmp_path)
    aws.s3.delete_object(Bucket=BUCKET, Key=PREFIX + nfd)
    deliver(record(PREFIX + nfd, "ObjectRemoved:Delete"))
    assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path) != one_left


# -- 1: Ctrl-C at a terminal running `kbsearch serve --watch` --------------------------------------------------------


def test_ctrl_c_at_a_terminal_stops_kbsearch_serve_watch_without_its_parsing_process_traceback(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the whole foreground process group: `kbsearch serve --watch`'s parsing process
    printed a `KeyboardInterrupt` traceback (`Process kbsearch-parse-each:`, then the frames of its `conn.recv()`,
    cut short when the server killed it). The SIGINT block the server spawned it under is not passed on by Python
    3.10 and later; the parsing process now ignores SIGINT itself, and the server stops as README says (0)."""
    import os
    import signal
    import time

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "note.md").write_text("# Note\n\nA note parsed in the server's parsing process.\n")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb), EMBEDDING_API_KEY="",
                         EMBEDDING_API_KEY_PARAM="")  # fmt: skip
    process = subprocess.Popen([*KBSEARCH_CMD, "serve", "--port", "0", "--watch"], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while time.monotonic() < deadline and not any("initial sync: 1 added" in x for x in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert any("initial sync: 1 added" in x for x in lines), "".join(lines)  # parsed in the parsing process
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)  # what a terminal does: the server and its parsing process
        rest, _ = process.communicate(timeout=PROCESS_TIMEOUT_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    out = "".join(lines) + rest
    assert process.returncode == 0, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out and "Process kbsearch-parse" not in out, out


def test_kbsearch_serve_watch_of_a_folder_with_no_note_says_so_as_kbsearch_index_does(tmp_path: Path) -> None:
    """`kbsearch index` of a folder holding no note says `nothing to index: no notes in <folder>: a note is ...`;
    `kbsearch serve --watch` of the same folder (a mistyped path, the vault's parent holding only its attachments)
    said `initial sync: 0 added, 0 updated, 0 deleted` and served an empty index with nothing more."""
    from kbsearch_tools.local.process import serve_process
    from tests.integration.test_freshness import until

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "image.png").write_bytes(b"\x89PNG")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb), EMBEDDING_API_KEY="",
                         EMBEDDING_API_KEY_PARAM="")  # fmt: skip
    with serve_process(env, cwd=ROOT, args=["--watch"]) as served:
        until(lambda: "initial sync" in served.text(), log=served.text)
        line = next(x for x in served.text().splitlines() if "initial sync" in x)
    assert line.startswith("kbsearch serve --watch: initial sync: 0 added, 0 updated, 0 deleted in "), line
    assert line.endswith(f"; nothing to index: no notes in {kb}: a note is a file ending in .md, outside hidden "
                         "files and folders (a name starting with '.'); 1 other file listed there"), line  # fmt: skip
