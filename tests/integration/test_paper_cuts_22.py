"""Paper cuts, round 22: what a new user still hit after round 21, each through the interface that user touches
(the console script pip writes, `kbsearch` as a process, `kbsearch serve` over HTTP)."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import pytest

from kbsearch_tools.oracle import unavailable
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_paper_cuts_20 import IMPORT_LINE, console_script, imported

# -- kbsearch serve: SIGTERM during its start-up ----------------------------------------------------------------------

#: Moments of `kbsearch serve --oracle e5 --watch`'s start-up, each a line its stderr shows: the CLI imported by the
#: console script (the command not begun), the oracle's module imported (its model loading next), the oracle
#: started (the functions imported, the store opened, the hand-off socket and the watcher started next).
START_UP = {
    "cli loaded": f"{IMPORT_LINE}.*| kbsearch_tools.cli",
    "oracle loading": f"{IMPORT_LINE}.*| kbsearch_tools.oracle",
    "functions importing": "oracle: ",
}


def _seen(line: str, moment: str) -> bool:
    if moment.startswith(IMPORT_LINE):
        return line.startswith(IMPORT_LINE) and imported(line) == moment.rsplit("| ", 1)[1]
    return line.startswith(moment)


def terminate_at(script: Path, args: list[str], moment: str, env: dict[str, str]) -> tuple[int, list[str]]:
    """Start `kbsearch ARGS`, send one SIGTERM once its stderr shows ``moment``'s line, wait for it to end: its exit
    code and its stderr but the import lines."""
    process = subprocess.Popen([str(script), *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)  # fmt: skip
    assert process.stderr is not None
    seen = threading.Event()
    lines: list[str] = []

    def read() -> None:  # all along: a full pipe would stop the process
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if _seen(line, moment):
                seen.set()
        seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen.wait(PROCESS_TIMEOUT_S), f"{moment!r} never came"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=PROCESS_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=PROCESS_TIMEOUT_S)
    return process.returncode, [line for line in lines if not line.startswith(IMPORT_LINE)]


@pytest.mark.slow
@pytest.mark.timeout(4 * PROCESS_TIMEOUT_S)
@pytest.mark.parametrize("moment", list(START_UP))
def test_sigterm_during_serve_start_up_ends_it_as_later(moment: str, tmp_path: Path) -> None:
    """Since round 21 a SIGTERM (`kill`, `docker stop`, systemd) shuts a listening `kbsearch serve` down: its line,
    143. Before it listened, a SIGTERM was Python's default: the process gone, no line, its shell code from the
    signal (a `Popen` reads -15), whatever start-up had begun left as it was. Now it is the same at every moment
    from the console script's first import of the CLI: what has started is stopped (the hand-off socket's file
    removed), then `kbsearch serve: terminated` and exit 143, no traceback."""
    reason = unavailable("e5")
    if reason:
        pytest.skip(reason)
    kb, store = tmp_path / "kb", tmp_path / "q"
    kb.mkdir()
    (kb / "note.md").write_text("# Zorblax\n\nThe zorblax rotation runbook.\n")
    env = subprocess_env(PYTHONPROFILEIMPORTTIME="1", QDRANT_PATH=str(store))
    args = ["serve", "--port", "0", "--watch", str(kb), "--oracle", "e5", "--oracle-cache", str(tmp_path / "e5.sqlite")]
    code, stderr = terminate_at(console_script(tmp_path), args, START_UP[moment], env)
    assert not any("Traceback" in line for line in stderr), (moment, stderr)
    assert code == 143 and stderr[-1] == "kbsearch serve: terminated", (moment, code, stderr)
    assert sum("terminated" in line for line in stderr) == 1, (moment, stderr)
    assert not (store / "kb.serve.sock").exists(), "the hand-off socket's file was left behind"


def test_a_serve_start_up_that_fails_leaves_no_socket_file(tmp_path: Path) -> None:
    """`kbsearch serve --watch /no/such/folder` said why and stopped (exit 2), but it had started the hand-off
    socket first and left its file in the store's folder (the next start removes it). A start-up that fails runs
    the shut-down's steps for what it had begun, as one that is interrupted."""
    store = tmp_path / "q"
    done = subprocess.run([*KBSEARCH_CMD, "serve", "--port", "0", "--watch", str(tmp_path / "missing")],
                          capture_output=True, text=True, env=subprocess_env(QDRANT_PATH=str(store)), cwd=ROOT,
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 2 and "--watch needs a KB folder" in done.stderr, done.stderr
    assert not (store / "kb.serve.sock").exists(), "the hand-off socket's file was left behind"
