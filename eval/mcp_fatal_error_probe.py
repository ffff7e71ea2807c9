"""Probe (rev38b): does ``kbsearch mcp``'s fatal-error traceback reach its stderr? Spawns ``kbsearch mcp`` from the
tree given (``TREE/layers/kbsearch`` and ``TREE/tools`` on ``PYTHONPATH``) with ``PYTHONFAULTHANDLER=1`` over an
empty store, sends ``initialize``, waits for its answer, sends SIGSEGV, reads stderr to its end and prints the
exit code and whether ``Fatal Python error: Segmentation fault`` was there. Racy on rel38 (1a34a98: the traceback
went into a pipe drained by a thread of the dying process), so a probe and not a test (the test is
``test_rev38b.py::test_kbsearch_serve_s_fatal_error_traceback_reaches_its_stderr``, made deterministic with a full
stderr page, which ``kbsearch mcp`` has no way to fill).

    for r in 1 2 3; do for t in /tmp/rev38b/rel38 .; do .venv/bin/python eval/mcp_fatal_error_probe.py $t; done; done
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

INITIALIZE = (b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
              b'"capabilities":{},"clientInfo":{"name":"probe","version":"1"}}}\n')  # fmt: skip


def main() -> int:
    tree = Path(sys.argv[1]).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=f"{tree}/layers/kbsearch:{tree}/tools", PYTHONFAULTHANDLER="1",
                   QDRANT_PATH=f"{tmp}/q", KB_SOURCE=tmp, EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM="")  # fmt: skip
        process = subprocess.Popen([sys.executable, "-m", "kbsearch_tools.cli", "mcp"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        process.stdin.write(INITIALIZE)
        process.stdin.flush()
        process.stdout.readline()
        process.send_signal(signal.SIGSEGV)
        said = process.stderr.read()
        process.wait(60)
    print(f"{tree}: exit {process.returncode}, traceback {'there' if b'Fatal Python error' in said else 'LOST'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
