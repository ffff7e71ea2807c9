"""Round 28b's review of round 28a: `kbsearch serve`'s connection limit making room by closing an idle connection.
The server is :func:`make_server`'s, on real loopback sockets; each test fails on main's code before its fix
(`PYTHONPATH=/work/main/layers/kbsearch:/work/main/tools`)."""

from __future__ import annotations

import socket
import time
from typing import Any, cast

from kbsearch_tools.local.server import IDLE_EVICT_AFTER_S, LocalApi, make_server
from kbsearch_tools.local.template import Template
from tests.conftest import ROOT
from tests.integration.test_adv28a import HEALTH, closed_by_server, read_answer


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A loopback TCP connection: the server's end, the client's."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=8)
        return listener.accept()[0], client


def test_a_connection_whose_request_has_reached_its_socket_is_never_closed_to_make_room() -> None:
    """A kept-alive connection is idle (closable to make room) from when its thread waits for a request until that
    thread sees the first byte. A request that has reached the socket before the thread wakes (it needs the GIL: on a
    loaded host, milliseconds) made it no less idle: the connection was closed with the request unread, the client
    answered nothing (under churn, `/tmp`-script in RELIABILITY "Round 28b", 35 requests of ~3,000 on main, 3 now).
    Here the one slot is held by a connection part way through its request, and an idle connection's thread is
    the one not yet woken (registered idle, its request waiting in the socket): a new connection is answered 429,
    and the idle one keeps its request."""
    server = cast(Any, make_server(LocalApi(Template(ROOT / "template.yaml")), "127.0.0.1", 0))
    server.max_connections = 1
    busy, busy_client = tcp_pair()
    idle, idle_client = tcp_pair()
    new, new_client = tcp_pair()
    try:
        server.process_request(busy, ("127.0.0.1", 1))  # the one slot: its thread waits for a request
        busy_client.sendall(b"GET /health HTTP/1.1\r\n")  # and reads one now: busy, never closable
        server.idle(idle)  # a connection waiting for its next request since now
        time.sleep(IDLE_EVICT_AFTER_S * 3)
        idle_client.sendall(HEALTH)  # its request arrives; its thread has not read it yet
        server.process_request(new, ("127.0.0.1", 2))
        assert not closed_by_server(idle_client), "the connection whose request had arrived was closed to make room"
        assert server.busy(idle), "the connection was marked closed: its request would never be read"
        assert read_answer(new_client).startswith(b"HTTP/1.1 429 Too Many Requests")
        busy_client.sendall(b"Host: localhost\r\n\r\n")
        busy_client.settimeout(8)
        assert read_answer(busy_client).startswith(b"HTTP/1.1 200")
    finally:
        for sock in (busy_client, idle_client, new_client, idle):
            sock.close()
        server.server_close()
