"""Round 36's adversarial pass (adv36): MCP over stdio as a hostile (or merely careless) client speaks it.

A client may pipe the server's stderr and never read it (MCP's stdio transport lets a client "capture, forward, or
ignore" it; mark3labs/mcp-go#956 is one such client): once the pipe is full, every log line the server writes
blocks it, and with it the JSON-RPC loop. ``kbsearch mcp`` is spawned over stdio, its providers a loopback endpoint
answering 503 (DeepInfra down: each search logs that it fell back to BM25), its stderr a pipe shrunk to one page
that nobody reads.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.process import serve_process
from tests.conftest import KBSEARCH_CMD, ROOT, subprocess_env

INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
#: Each answer's limit: a search against a provider answering 503 at once takes well under a second.
ANSWER_S = 30.0


@pytest.fixture
def provider_down() -> Iterator[FakeEndpoint]:
    endpoint = FakeEndpoint(status=503).start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


def _line(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode() + b"\n"


def _answer(stdout: Any, timeout: float) -> dict[str, Any] | None:
    """The next stdout line as JSON, or None when none came within ``timeout``."""
    ready, _, _ = select.select([stdout], [], [], timeout)
    if not ready:
        return None
    raw = stdout.readline()
    return json.loads(raw) if raw else None


@pytest.mark.timeout(300)
def test_a_client_that_never_reads_stderr_is_answered_every_call(bm25_store: Path, provider_down: FakeEndpoint) -> None:
    base = provider_down.url
    env = subprocess_env(
        QDRANT_PATH=str(bm25_store), KB_SOURCE=str(ROOT / "sample-kb"), EMBEDDING_API_KEY="test-key",
        EMBEDDING_URL=f"{base}/v1/openai/embeddings", EMBEDDING_FALLBACK_URL=f"{base}/inference/v1/embeddings",
        RERANKER_URL=f"{base}/v1/inference/Qwen/Qwen3-Reranker-8B", RERANKER_FALLBACK_URL=f"{base}/v1/rerank",
    )  # fmt: skip
    unread, err = os.pipe()
    fcntl.fcntl(err, fcntl.F_SETPIPE_SZ, 4096)  # a pipe of one page: a few dozen warnings fill it (64 KiB: ~700)
    proc = subprocess.Popen([*KBSEARCH_CMD, "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                            env=env, cwd=ROOT)  # fmt: skip
    os.close(err)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(_line(INIT))
        proc.stdin.flush()
        assert _answer(proc.stdout, ANSWER_S) is not None
        for i in range(1, 121):  # each logs "embedding failed; BM25 only (...)" (~100 bytes): 12 KB, past the pipe
            query = {"query": f"rotate the api key {i}"}
            proc.stdin.write(_line({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                    "params": {"name": "kb_search", "arguments": query}}))  # fmt: skip
            proc.stdin.flush()
            answer = _answer(proc.stdout, ANSWER_S)
            assert answer is not None, f"no answer to call {i} within {ANSWER_S:.0f} s: the server is blocked"
            assert answer["id"] == i and not answer["result"].get("isError"), answer
        assert provider_down.requests  # asked, then skipped while its circuit is open: each search still warns
        proc.stdin.close()  # the client ends the session, still not reading stderr: the server exits on its own
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    said = b""
    while select.select([unread], [], [], 0)[0]:
        chunk = os.read(unread, 65536)
        if not chunk:
            break
        said += chunk
    os.close(unread)
    text = said.decode("utf-8", "replace")
    assert "embedding failed; BM25 only" in text and "Traceback" not in text, text


def kept_or_counted(text: str, line: Callable[[int], str]) -> int:
    """How many writes ``text`` (what a relay wrote) accounts for, each of the ``line(i)`` for i = 0, 1, ... either
    kept whole and in order or counted on the relay's line of its own where it is missing (at least one count:
    the tests write past the bound). The writer thread may take what waits before the writes end (a loaded
    machine starts it late): a gap, its count, then more lines kept (rev36b)."""
    at, counts = 0, 0
    for said in text.splitlines():
        if said.startswith("kbsearch mcp: "):
            assert said.endswith(" log lines were dropped: nobody read stderr while they were written"), said
            at, counts = at + int(said.split()[2].replace(",", "")), counts + 1
        else:
            assert said == line(at), (said, at)
            at += 1
    assert counts >= 1, text[-300:]
    return at


def test_the_log_lines_a_slow_stderr_reader_missed_are_counted_once_it_reads() -> None:
    """The relay over a real pipe nobody reads yet: writes never wait; what passes its limit is dropped and counted,
    and the count follows what was kept once the reader reads; a reader that closes its end ends the relay."""
    from kbsearch_tools.mcp_stdio import StderrRelay  # (imported here: main's code, which has none, collects)

    unread, err = os.pipe()
    fcntl.fcntl(err, fcntl.F_SETPIPE_SZ, 4096)
    target = os.fdopen(err, "w", encoding="utf-8")
    relay = StderrRelay(target, limit=8192)
    started = time.monotonic()
    for i in range(2000):  # 2000 lines of 40 characters: 80 KB, ten times what the pipe and the relay hold
        relay.write(f"WARNING kbsearch.search: line {i:08}...\n")
    assert time.monotonic() - started < 5  # never waited on the pipe
    said = bytearray()

    def read_all() -> None:  # the client starts reading stderr at last
        while chunk := os.read(unread, 65536):
            said.extend(chunk)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    assert relay.drain(10)
    target.close()
    reader.join(10)
    os.close(unread)
    assert said.endswith(b"WARNING kbsearch.search: line 00001999...\n")  # the newest kept: the oldest go (rel37)
    assert kept_or_counted(said.decode(), lambda i: f"WARNING kbsearch.search: line {i:08}...") == 2000
    relay.write("after the target closed\n")  # the writer thread finds it closed: dropped, never raised
    assert relay.drain(5)


# -- kbsearch serve --watch --poll: a second save its stat cannot tell --------------------------------------------


@pytest.mark.timeout(120)
def test_a_second_save_in_the_same_timestamp_tick_is_indexed_by_polling(tmp_path: Path) -> None:
    """``--poll`` (network shares, container mounts: where file events are missing) told a change by a note's
    (mtime, size, inode). A file system whose timestamps are coarse (FAT's and exFAT's 2 s, SMB and NFS servers' 1 s;
    the kernel's tick on a local disk) gives a save within the same tick as the one before it that one's mtime: a
    checkbox ticked (``[ ]`` to ``[x]``, the same size) and saved in place just after a poll saw the save before. Here
    the second save is given the first one's mtime, as such a file system gives it (and the first an mtime a few
    seconds ahead, as a share's clock may be: the second save must land within the tick however loaded the machine)."""
    from tests.integration.test_freshness import search_paths, until
    from tests.integration.test_notes_graph import write_kb

    text = "---\ntitle: Toggle\n---\n# Toggle\n\n- [{mark}] {word}\n"
    kb = write_kb(tmp_path / "kb", {"en/Toggle.md": text.format(mark=" ", word="placeholder"),
                                    "en/Other.md": "# Other\n\nsomething else\n"})  # fmt: skip
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb), EMBEDDING_API_KEY="",
                         EMBEDDING_API_KEY_PARAM="")  # fmt: skip
    note = kb / "en" / "Toggle.md"
    with serve_process(env, cwd=ROOT, args=["--watch", "--poll"]) as served:
        base, log = served.base_url, served.text
        until(lambda: "initial sync" in log(), log=log)
        with note.open("r+") as handle:  # saved in place (same inode), as VS Code saves
            handle.write(text.format(mark=" ", word="zebrafirst"))
            handle.truncate()
        ahead = time.time_ns() + 6 * 10**9  # the share's clock 6 s ahead: a loaded machine has that long to index it
        os.utime(note, ns=(ahead, ahead))
        until(lambda: search_paths(base, "zebrafirst") == ["en/Toggle.md"], log=log)  # a poll saw the first save
        first = os.stat(note)
        with note.open("r+") as handle:  # the box ticked: the same size, in the same tick
            handle.write(text.format(mark="x", word="yaksecond1"))
            handle.truncate()
        os.utime(note, ns=(first.st_atime_ns, first.st_mtime_ns))
        after = os.stat(note)
        assert (after.st_mtime_ns, after.st_size, after.st_ino) == (first.st_mtime_ns, first.st_size, first.st_ino)
        until(lambda: search_paths(base, "yaksecond1") == ["en/Toggle.md"], timeout_s=30, log=log)
        assert search_paths(base, "zebrafirst") == []
        time.sleep(4)  # past RACY_S (3 s): every recent stat read again by now, and a read finding nothing says nothing
        lines = [line for line in log().splitlines() if "changed note(s)" in line]
        assert len(lines) == 2 and all("0 added, 1 updated, 0 deleted" in line for line in lines), lines
