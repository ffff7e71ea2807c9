"""The files the ``kbsearch`` command reads because an option names them (round 21): the event of ``invoke`` (a
file or stdin), ``--template``, ``--env-vars``, ``eval --queries`` and ``eval --classes``. Each given what a user can
name by mistake or a script can hand it: a device that never ends (``/dev/zero``, ``/dev/urandom``), stdin from one,
bytes that are not UTF-8. Each is a usage error of one line and exit 2, nothing on stdout; it was read whole into
memory (a ``MemoryError`` traceback under a memory limit, the host's memory filled without one) or decoded as it
came (a ``UnicodeDecodeError`` traceback)."""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

import pytest

from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env

#: The address space each run may have: enough for the command (it imports boto3 and the runtime), far less than a
#: device read whole would take.
MEMORY_LIMIT = 2 * 1024**3


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def kbsearch(args: list[str], stdin: Path | None = None) -> subprocess.CompletedProcess[str]:
    with open(stdin or "/dev/null", "rb") as given:
        proc = subprocess.run([*KBSEARCH_CMD, *args], stdin=given, capture_output=True, env=subprocess_env(),
                              cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False, preexec_fn=_limited)  # fmt: skip
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode(errors="replace")
    )


@pytest.fixture
def not_utf8(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("- query: café\n  relevant: [a.md]\n".encode("latin-1"))
    return path


EVENT = ["invoke", "SearchFunction", "--event"]
ENDLESS = [
    ([*EVENT, "/dev/zero"], None, "kbsearch invoke: error: event file /dev/zero is larger than 6,291,456 bytes"),
    ([*EVENT, "-"], Path("/dev/zero"), "kbsearch invoke: error: the event on stdin is larger than 6,291,456 bytes"),
    ([*EVENT, "events/health.json", "--template", "/dev/zero"], None,
     "kbsearch invoke: error: template /dev/zero is larger than 1,048,576 bytes"),
    (["serve", "--port", "0", "--template", "/dev/urandom"], None,
     "kbsearch serve: error: template /dev/urandom is larger than 1,048,576 bytes"),
    ([*EVENT, "events/health.json", "--env-vars", "/dev/urandom"], None,
     "kbsearch invoke: error: env vars file /dev/urandom is larger than 1,048,576 bytes"),
    (["eval", "--kb", "sample-kb", "--queries", "/dev/zero"], None,
     "kbsearch eval: error: queries file /dev/zero is larger than 67,108,864 bytes"),
    (["eval", "--classes", "/dev/zero"], None,
     "kbsearch eval: error: the class manifest /dev/zero is larger than 67,108,864 bytes"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "stdin", "said"), ENDLESS, ids=[" ".join(a[:1] + a[-2:]) for a, _, _ in ENDLESS])
def test_a_file_option_naming_a_stream_that_never_ends_is_a_usage_error(
    args: list[str], stdin: Path | None, said: str
) -> None:
    proc = kbsearch(args, stdin)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr[-2000:]
    assert proc.stderr == said + " (the most it may be): nothing read\n", proc.stderr[-2000:]


def test_a_file_option_naming_a_file_that_is_not_utf8_is_a_usage_error(not_utf8: Path) -> None:
    for args, said in [
        ([*EVENT, "events/health.json", "--template", str(not_utf8)], f"kbsearch invoke: error: template {not_utf8}"),
        (["eval", "--kb", "sample-kb", "--queries", str(not_utf8)], f"kbsearch eval: error: queries file {not_utf8}"),
        (["eval", "--classes", str(not_utf8)], f"kbsearch eval: error: the class manifest {not_utf8}"),
    ]:  # fmt: skip
        proc = kbsearch(args)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr[-2000:]
        assert proc.stderr == said + " is not UTF-8 (invalid byte at offset 12)\n", proc.stderr[-2000:]
