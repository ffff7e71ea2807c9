"""Paper cuts, round 22: what a new user still hit after round 21, each through the interface that user touches
(the console script pip writes, `kbsearch` as a process, `kbsearch serve` over HTTP)."""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from kbsearch_tools.fakes import FakeProvider
from kbsearch_tools.local.process import serve_process
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
    assert done.returncode == 2 and "--watch: KB folder" in done.stderr and "does not exist" in done.stderr, done.stderr
    assert not (store / "kb.serve.sock").exists(), "the hand-off socket's file was left behind"


# -- the loopback fakes: quiet about a client that went away ----------------------------------------------------------


def _handled(base: str, before: set[threading.Thread], timeout_s: float = 30) -> None:
    """Until every connection made to the loopback server at ``base`` so far has been handled: one more request is
    answered (the server accepts in turn: each earlier connection's thread was started before it), then no
    connection's thread (socketserver's) started since ``before`` is left. Threads an earlier test of this worker
    left (a fake's keep-alive connection, a hung handler) are not this server's and are not waited for."""
    assert httpx.get(base + "/", timeout=timeout_s).status_code == 501  # (no GET there: http.server's answer)
    end = time.monotonic() + timeout_s
    while any("process_request_thread" in t.name for t in threading.enumerate() if t not in before):
        assert time.monotonic() < end, "a connection is still being handled"
        time.sleep(0.01)


def _reset_mid_request(port: int, head: bytes) -> None:
    """Send ``head`` (a request cut short), then reset the connection (RST), as a client whose deadline passed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_loopback_fake_is_quiet_about_a_client_gone_and_not_about_its_own_errors(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """CI logs showed a `ConnectionResetError` traceback from a fake's socketserver thread (`handle_error`) after a
    client reset its connection: no problem, but it read as one. The fakes' one server class is quiet about a client
    gone now, and still prints a traceback for anything else a connection raises."""
    before = set(threading.enumerate())
    fake = FakeProvider("deepinfra").start()
    try:
        port = fake.server.server_address[1]
        path = b"POST /v1/openai/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for _ in range(3):
            _reset_mid_request(port, path + b'Content-Length: 1000\r\n\r\n{"input": [')
        _handled(fake.base, before)
        quiet = capfd.readouterr().err
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # the fake's own ValueError
            sock.sendall(path + b"Content-Length: many\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):  # until the fake closes it: after it reported the error
                pass
        loud = capfd.readouterr().err
    finally:
        fake.stop()
    assert "Traceback" not in quiet and "ConnectionResetError" not in quiet, quiet
    assert "Traceback" in loud and "ValueError" in loud, loud


# -- kbsearch eval: the index it scores, as it is -----------------------------------------------------------------------


def test_eval_says_how_many_notes_it_indexed_and_which_it_skipped(tmp_path: Path) -> None:
    """`kbsearch eval --kb sample-kb` said "index: 36 docs" for an index of 35: the notes it listed, the one the
    indexer skipped (broken frontmatter) among them, and never which; a query that wants a skipped note cannot find
    it, and nothing said why. It counts the notes indexed now, says how many were skipped and names them (the JSON's
    `index.skipped_notes`); "1 queries" reads "1 query"."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "good.md").write_text("# Zorblax\n\nThe zorblax rotation runbook.\n")
    (kb / "broken.md").write_text("---\ntitle: [unclosed\n---\n# Broken\n\nzorblax too.\n")
    queries = tmp_path / "q.yaml"
    queries.write_text("- query: zorblax rotation\n  relevant: [broken.md]\n")
    args = ["eval", "--kb", str(kb), "--queries", str(queries), "--phases", "lexical"]
    shown = subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, env=subprocess_env(), cwd=ROOT,
                           timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "1 query; index: 1 doc (1 skipped), " in shown.stdout, shown.stdout
    assert "  not indexed: broken.md: invalid YAML frontmatter" in shown.stdout, shown.stdout
    as_json = subprocess.run([*KBSEARCH_CMD, *args, "--json"], capture_output=True, text=True, env=subprocess_env(),
                             cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    index = json.loads(as_json.stdout)["index"]
    assert index["notes"] == 1 and index["skipped"] == 1, index
    assert [item["path"] for item in index["skipped_notes"]] == ["broken.md"], index


# -- a store held by another process: which ----------------------------------------------------------------------------


def test_the_indexer_on_a_store_a_server_holds_names_the_process(tmp_path: Path) -> None:
    """`kbsearch invoke IndexerFunction` while a `kbsearch serve` held the embedded store answered "index storage
    failed: cannot open the embedded store at ...: another process has it open": not which process (round 21 named
    it for `kbsearch search` alone). The store's own error names it now, wherever it is opened."""
    kb, store = tmp_path / "kb", tmp_path / "q"
    kb.mkdir()
    (kb / "note.md").write_text("# Zorblax\n\nThe zorblax rotation runbook.\n")
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(kb))
    indexed = subprocess.run([*KBSEARCH_CMD, "index"], capture_output=True, text=True, env=env, cwd=ROOT,
                             timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert indexed.returncode == 0, indexed.stderr
    with serve_process(env, cwd=ROOT) as served:
        httpx.get(served.base_url + "/search?q=zorblax", timeout=PROCESS_TIMEOUT_S)  # the store opened
        invoked = subprocess.run([*KBSEARCH_CMD, "invoke", "IndexerFunction", "--event", "events/indexer_schedule.json"],
                                 capture_output=True, text=True, env=env, cwd=ROOT, timeout=PROCESS_TIMEOUT_S,
                                 check=False)  # fmt: skip
        pid = served.process.pid
    assert invoked.returncode == 1, invoked.stderr[-2000:]
    message = json.loads(invoked.stdout)["errorMessage"]
    assert f"another process has it open (pid {pid}: kbsearch serve)" in message, message  # named since round 23


# -- kbsearch slack with no server there -------------------------------------------------------------------------------


def test_kbsearch_slack_with_no_server_says_how_to_start_one() -> None:
    """`kbsearch slack "x"` before any server was started said "cannot reach http://127.0.0.1:3000/slack/command:
    [Errno 111] Connection refused": not that a `kbsearch serve` is what it talks to, nor the two settings that
    server needs for Slack. It is a run that failed (exit 1, README's rule), not a usage error (it was 2)."""
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    shown = subprocess.run([*KBSEARCH_CMD, "slack", "--api", f"http://127.0.0.1:{port}", "restore a snapshot"],
                           capture_output=True, text=True, env=subprocess_env(SLACK_SIGNING_SECRET="local-secret"),
                           cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert shown.returncode == 1 and not shown.stdout, (shown.returncode, shown.stdout)
    line = shown.stderr.strip()
    assert line.startswith(f"kbsearch slack: error: cannot reach http://127.0.0.1:{port}/slack/command"), line
    assert "is a kbsearch serve running there?" in line and "SLACK_RESPONSE_HOSTS=127.0.0.1" in line, line


# -- kbsearch search with no index where it looked ---------------------------------------------------------------------


def test_search_with_no_index_says_where_it_looked(tmp_path: Path) -> None:
    """`kbsearch search` run from another folder than the one `kbsearch index` ran in (the default store is
    .kbsearch/qdrant in the working folder) said "collection 'kb' does not exist: run the indexer first": not where
    it looked, nor that the folder it runs in decides."""
    env = subprocess_env()
    assert "QDRANT_PATH" not in env and "QDRANT_URL" not in env
    shown = subprocess.run([*KBSEARCH_CMD, "search", "restore a snapshot"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert shown.returncode == 2 and not shown.stdout, (shown.returncode, shown.stdout)
    expected = f"no index in {tmp_path.resolve() / '.kbsearch' / 'qdrant'} (QDRANT_PATH; default .kbsearch/qdrant in"
    assert expected in shown.stderr and "kbsearch index <your KB folder>" in shown.stderr, shown.stderr
    assert not (tmp_path / ".kbsearch").exists(), "a search made the store's folder"
