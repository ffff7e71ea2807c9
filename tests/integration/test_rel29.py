"""Round 29: reliability debts left by round 28 (RELIABILITY "Round 29: debts (rel29)"), through the real interfaces:
`kbsearch serve` and `kbsearch index` spawned. Each test fails on main's code before its fix
(`PYTHONPATH=/work/main/layers/kbsearch:/work/main/tools`)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.integration.test_adv28a import one_request, read_answer, served_with_few_files

# -- 1: a client dripping its requests on every connection ----------------------------------------------------------


def test_requests_dripped_on_every_connection_make_room_for_another_client_once_slow(tmp_path: Path) -> None:
    """rev28b's "Left": 64 connections (the limit under `ulimit -n 256`) each sending its request a byte every 0.5 s
    (every read within the 10 s idle timeout; a request within 30 s each, again and again) were all busy, never
    closed to make room: every other client was answered 429 for as long as they dripped. Now, with every slot taken
    and none idle, the request arriving longest (5 s or more) is answered 408 and closed, and the new client is
    served; the others keep dripping."""
    with served_with_few_files(tmp_path) as (port, err):
        pool = [socket.create_connection(("127.0.0.1", port), timeout=8) for _ in range(64)]
        try:
            for conn in pool:
                conn.sendall(b"POST /search HTTP/1.1\r\nHost: localhost\r\n")
                time.sleep(0.01)  # the first begun first: the one arriving longest
            early = one_request(port)
            assert early.startswith(b"HTTP/1.1 429"), early  # arriving under 5 s: still busy, never closed
            started = time.monotonic()
            while time.monotonic() - started < 6:  # a byte a connection every 0.5 s, past SLOW_EVICT_AFTER_S (5 s)
                for conn in pool:
                    conn.sendall(b"X")
                time.sleep(0.5)
            other = one_request(port)
            assert other.startswith(b"HTTP/1.1 200"), other  # it was a 429 Too Many Requests
            timed_out = read_answer(pool[0])
            assert timed_out.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), timed_out
            assert b"Connection: close\r\n" in timed_out and timed_out.endswith(b'{"message": "Request Timeout"}')
            for conn in pool[1:]:  # the rest were not closed: their requests end and are answered
                conn.sendall(b"-Y: 1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                assert read_answer(conn).startswith(b"HTTP/1.1 "), "answered"
        finally:
            for conn in pool:
                conn.close()
    said = "making room: 64 connections open at once, none idle; closing the request arriving longest"
    assert said in err[0], err[0][-3000:]
    assert "Traceback" not in err[0], err[0][-3000:]
