"""Round 30: the adversarial pass (adv30): classes no round had tried, through the real interfaces (`kbsearch`
spawned as a process, loopback dependencies). Each test fails on main's code before its fix."""

from __future__ import annotations

import os
import subprocess
import threading
import zlib
from pathlib import Path

from kbsearch_tools.fakes import FakeEndpoint
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, subprocess_env

# -- 1: Qdrant Cloud answering the indexer's qdrant-client more than it can hold ----------------------------------


def gzip_of_spaces(mib: int) -> bytes:
    """A gzip body inflating to ``mib`` MiB of spaces (JSON's white space): ~4.5 KB a MiB compressed."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = b" " * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(mib)) + packer.flush()


def test_an_indexer_qdrant_answer_inflating_to_a_gibibyte_is_refused_within_a_bound(tmp_path: Path) -> None:
    """The indexer reaches Qdrant Cloud through qdrant-client, whose httpx client read any answer whole into memory
    (the search's calls are capped by the outbound policy, 64 MiB): Qdrant (or whatever answers at QDRANT_URL)
    answering its first request with 4.6 MB of gzip inflating to 1 GiB took `kbsearch index` to ~2.2 GB of memory
    before it failed as not JSON (`Qdrant is not reachable (JSONDecodeError)`); the indexer Lambda has 2,048 MB, so
    it would have been killed, every run. Now every answer is read at most QDRANT_ANSWER_BYTES (256 MiB) decoded:
    the run stops at once naming that, the process well under 1 GiB."""
    endpoint = FakeEndpoint().start()
    endpoint.body = gzip_of_spaces(1024)
    endpoint.content_type = "application/json"
    endpoint.headers = {"Content-Encoding": "gzip"}
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nquokka\n")
    out = tmp_path / "out.txt"
    try:
        with out.open("w") as sink:
            proc = subprocess.Popen([*KBSEARCH_CMD, "index", str(kb)], stdout=sink, stderr=subprocess.STDOUT,
                                    cwd=tmp_path, env=subprocess_env(QDRANT_URL=endpoint.url))  # fmt: skip
            watchdog = threading.Timer(PROCESS_TIMEOUT_S, proc.kill)
            watchdog.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)  # this process's own peak memory, not the test's
            finally:
                watchdog.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        endpoint.stop()
    said = out.read_text()
    assert proc.returncode == 1, said
    assert usage.ru_maxrss * 1024 < 1 << 30, (usage.ru_maxrss, said)  # ru_maxrss is in KiB on Linux
    assert "Qdrant's answer is over the 268435456-byte limit" in said, said
