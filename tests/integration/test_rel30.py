"""Round 30: reliability debts left by round 29 (RELIABILITY "Round 30: debts (rel30)"), through the real interfaces:
`kbsearch serve` and `kbsearch index` spawned, the embedded store. Each test fails on main's code before its fix
(`PYTHONPATH=/work/main/layers/kbsearch:/work/main/tools`)."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.local.process import serve_process
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_adv28a import FEW_FILES, one_request, read_answer
from tests.integration.test_freshness import until

# -- 1: a revoked note's link under kbsearch serve --watch -----------------------------------------------------------


def _as(base_url: str, key: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(f"{base_url}{path}", method=method,
                                     headers={"x-api-key": key, "Content-Type": "application/json"},
                                     data=None if body is None else json.dumps(body).encode())  # fmt: skip
    with urllib.request.urlopen(request, timeout=PROCESS_TIMEOUT_S) as answer:
        return json.loads(answer.read())


def _links_shown(base_url: str, key: str) -> tuple[list[str], list[str]]:
    """(Welcome's outgoing links in the note graph, a search hit's links) as the caller with ``key`` gets them."""
    graph = _as(base_url, key, "GET", "/notes/pub/Welcome.md")["links"]["outgoing"]
    hits = _as(base_url, key, "POST", "/search", {"query": "welcome zebra", "top_k": 1})["results"]
    assert hits and hits[0]["path"] == "pub/Welcome.md", hits
    return sorted(str(link.get("target") or link.get("text") or link) for link in graph), sorted(hits[0]["links"])


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S)
def test_a_note_made_restricted_under_serve_watch_hides_its_link_at_the_next_request(tmp_path: Path) -> None:
    """adv29's "Left": the link targets a caller's links are checked against were cached with the collection's
    metadata for up to a minute, so after `kbsearch serve --watch` synced a public note turned `access: [hr]`, the
    public key still saw Welcome's link to it (47 s after the sync) in the note graph and in a search hit. Now the
    search reads the metadata again after any write of it in its process: the link is hidden at the next request,
    and still shown to the note's readers."""
    kb = tmp_path / "kb"
    (kb / "pub").mkdir(parents=True)
    (kb / "pub" / "Welcome.md").write_text("# Welcome\n\nwelcome zebra: read [[Plan]].\n")
    (kb / "Plan.md").write_text("---\naccess: [public]\n---\n# Plan\n\nthe plan\n")
    (kb / "Secret.md").write_text("---\naccess: [hr]\n---\n# Secret\n\nhidden\n")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb), EMBEDDING_API_KEY="",
                         EMBEDDING_API_KEY_PARAM="", KB_LOCAL_API_KEYS="pubk,hrk:hr")  # fmt: skip
    with serve_process(env, cwd=ROOT, args=["--watch"]) as served:
        until(lambda: "initial sync" in served.text(), log=served.text)
        graph, hit = _links_shown(served.base_url, "pubk")
        assert "Plan" in " ".join(graph) and "Plan" in hit, (graph, hit)

        (kb / "Plan.md").write_text("---\naccess: [hr]\n---\n# Plan\n\nthe plan\n")
        until(lambda: "1 updated" in served.text(), log=served.text)
        graph, hit = _links_shown(served.base_url, "pubk")
        assert "Plan" not in " ".join(graph) and "Plan" not in hit, (graph, hit)  # shown for up to a minute
        graph, hit = _links_shown(served.base_url, "hrk")
        assert "Plan" in " ".join(graph) and "Plan" in hit, (graph, hit)  # its readers still see it
    assert "Traceback" not in served.text(), served.text()[-3000:]


# -- 3: the request limit and the eviction age are settings ---------------------------------------------------------


@contextlib.contextmanager
def _served_with_few_files(tmp_path: Path, **settings: str) -> Iterator[tuple[int, list[str]]]:
    """`kbsearch serve` under `ulimit -n 256` (64 connections) with these settings; its port and, once it has
    ended, its stderr (one item)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nalpha\n")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb), EMBEDDING_API_KEY="",
                         EMBEDDING_API_KEY_PARAM="", **settings)  # fmt: skip
    server = subprocess.Popen([*FEW_FILES, *KBSEARCH_CMD, "serve", "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)  # fmt: skip
    err: list[str] = []
    try:
        assert server.stdout is not None
        yield int(server.stdout.readline().rsplit(":", 1)[1].strip().strip("/")), err
    finally:
        server.terminate()
        err.append(server.communicate(timeout=PROCESS_TIMEOUT_S)[1])


@pytest.mark.parametrize("name", ["KB_LOCAL_REQUEST_READ_S", "KB_LOCAL_SLOW_EVICT_AFTER_S"])
@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan", "3601"])
def test_a_request_limit_setting_that_is_not_seconds_stops_kbsearch_serve_at_start(name: str, value: str) -> None:
    """Both limits were constants (30 s, 5 s): a 10 MB body on a link under ~2.7 Mbit/s was answered 408 whatever
    its user wanted. Now settings; a value that is not seconds from 0.1 to 3600 is one line at start, exit 2."""
    proc = subprocess.run([*KBSEARCH_CMD, "serve", "--port", "0"], capture_output=True, text=True, cwd=ROOT,
                          env=subprocess_env(**{name: value}), timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr == f"kbsearch serve: error: {name} must be seconds from 0.1 to 3600, got {value!r}\n", (
        proc.stderr
    )
    assert proc.stdout == "", proc.stdout  # never began serving


def test_kbsearch_serve_times_a_request_out_at_kb_local_request_read_s(tmp_path: Path) -> None:
    """`KB_LOCAL_REQUEST_READ_S=1.5`: a request dripped a byte every 0.3 s is answered 408 and closed once it has
    been arriving 1.5 s (main's code ignored the setting: still reading at 6 s, under its fixed 30)."""
    with (
        _served_with_few_files(tmp_path, KB_LOCAL_REQUEST_READ_S="1.5") as (port, _),
        socket.create_connection(("127.0.0.1", port), timeout=8) as conn,
    ):
        conn.sendall(b"POST /search HTTP/1.1\r\nHost: localhost\r\n")
        started = time.monotonic()
        with contextlib.suppress(OSError):  # the server stops reading at the limit: a write may meet a reset
            while time.monotonic() - started < 6 and not select.select([conn], [], [], 0)[0]:
                conn.sendall(b"X")
                time.sleep(0.3)
        answer = read_answer(conn)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer


def test_kbsearch_serve_makes_room_after_kb_local_slow_evict_after_s(tmp_path: Path) -> None:
    """`KB_LOCAL_SLOW_EVICT_AFTER_S=1`: with the 64 connections each dripping its request, a new client 1.5 s later
    is served, the request arriving longest answered 408 (main's code: 429 until 5 s)."""
    with _served_with_few_files(tmp_path, KB_LOCAL_SLOW_EVICT_AFTER_S="1") as (port, err):
        pool = [socket.create_connection(("127.0.0.1", port), timeout=8) for _ in range(64)]
        try:
            for conn in pool:
                conn.sendall(b"POST /search HTTP/1.1\r\nHost: localhost\r\n")
                time.sleep(0.01)
            early = one_request(port)
            assert early.startswith(b"HTTP/1.1 429"), early  # none arriving 1 s yet
            started = time.monotonic()
            while time.monotonic() - started < 1.5:
                for conn in pool:
                    conn.sendall(b"X")
                time.sleep(0.3)
            other = one_request(port)
            assert other.startswith(b"HTTP/1.1 200"), other  # main's code: 429 (its 5 s not reached)
            assert read_answer(pool[0]).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        finally:
            for conn in pool:
                conn.close()
    assert "closing the request arriving longest (over 1 s)" in err[0], err[0][-3000:]
