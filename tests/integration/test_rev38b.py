"""Round 38 review (rev38b): a cold review of rel38. Each test fails on rel38's merge (1a34a98) before its fix."""

from __future__ import annotations

import fcntl
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import KBSEARCH_CMD, ROOT, subprocess_env
from tests.integration.test_rev36b import _read_all


def _spawn(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    (tmp_path / "kb").mkdir(exist_ok=True)
    return subprocess.Popen([*KBSEARCH_CMD, *args], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env=subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(tmp_path / "kb"),
                                               EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM="", **env))  # fmt: skip


def _said_until_dead(process: subprocess.Popen[bytes], sig: int, ready: bytes) -> bytes:
    """Wait for ``ready`` on stdout, fill the unread stderr pipe (shrunk to one page) with `kill -USR1`'s thread
    dumps so that nothing more gets through until it is read, send ``sig``, then read stderr: all of it, once the
    process is gone. A launcher that reads stderr only at the end (or a terminal scrolled back) sees the same."""
    assert process.stdout is not None and process.stderr is not None
    fcntl.fcntl(process.stderr.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    out = bytearray()
    out_reader = _read_all(process.stdout.fileno(), out)
    until = time.monotonic() + 90
    while ready not in out and time.monotonic() < until and process.poll() is None:
        time.sleep(0.1)
    assert ready in out, bytes(out[-500:])
    for _ in range(10):  # a few KiB each: the page full
        process.send_signal(signal.SIGUSR1)
        time.sleep(0.05)
    time.sleep(1.0)
    process.send_signal(sig)
    time.sleep(1.0)
    said = bytearray()
    readers = [_read_all(process.stderr.fileno(), said), out_reader]
    process.wait(60)
    for reader in readers:
        reader.join(10)
    return bytes(said)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGABRT])
def test_kbsearch_serve_s_fatal_error_traceback_reaches_its_stderr(tmp_path: Path, sig: int) -> None:
    """rel38 made file descriptor 2 of `kbsearch serve` a pipe a thread of the same process drains. A fatal error
    (a segfault in a native library, an abort) is what `PYTHONFAULTHANDLER=1` / `-X faulthandler` is for: its
    handler writes "Fatal Python error" and every thread's stack to descriptor 2, then the process dies at once,
    its draining thread with it: the traceback stayed in the pipe, or in the relay's memory behind a launcher's
    full pipe, and died with it: the launcher saw a process gone without a word (before rel38 it was there). Now
    the fatal-error handler writes to the descriptor as it was, straight."""
    process = _spawn(tmp_path, "serve", "--host", "127.0.0.1", "--port", "0", PYTHONFAULTHANDLER="1")
    try:
        said = _said_until_dead(process, sig, b"try: curl")
        assert process.returncode == -sig
        assert b"Fatal Python error" in said, said[-2000:]  # rel38: not there
        assert (b"Segmentation fault" if sig == signal.SIGSEGV else b"Aborted") in said, said[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


_LAST_WORDS = """
import os, sys
from kbsearch_tools.stderr_relay import relay_stderr
relay_stderr("kbsearch serve")
for i in range(2000):  # as a native library, a child process or sys.__stderr__ would: on descriptor 2, below Python
    os.write(2, b"a native library says line %d of 2000\\n" % i)
os.write(2, b"its last line\\n")
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("code", [0, 3])
def test_what_is_written_to_descriptor_2_just_before_exit_reaches_stderr(code: int) -> None:
    """rel38's drained pipe for descriptor 2 was not emptied at exit: the exit drain waited on the relay, not on the
    pipe (rel38's own "Left"), so what a native library, a child process or ``sys.__stderr__`` wrote in the last
    instant died in the pipe: the last lines before an end, what a reader looking late wants. Spawned: 2,000 lines
    written to descriptor 2 after `relay_stderr`, then exit; all of them reach stderr, the last one too, in order,
    nothing else (the exit's mark never shown). rel38: stderr ended a few hundred lines in, or was empty."""
    done = subprocess.run([sys.executable, "-c", _LAST_WORDS, str(code)], check=False, cwd=ROOT, capture_output=True,
                          env=subprocess_env(), timeout=60)  # fmt: skip
    assert done.returncode == code
    lines = done.stderr.decode().splitlines()
    assert lines[-1:] == ["its last line"], lines[-3:]  # rel38: not there
    assert lines[:-1] == [f"a native library says line {i} of 2000" for i in range(2000)]
