"""How long the indexer's DynamoDB calls (the index lease, the event sequencer claims) and its SSM read can take
against a peer that stalls, with the botocore settings they are made with (rel35, adv34's left): a loopback endpoint
(``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL_SSM``) that accepts and never answers (``hole``), or that
answers one byte every ``--drip`` seconds (``drip``: each read within botocore's read timeout). Each call runs on a
thread given up on after ``--cap`` seconds ("> cap": not bounded by botocore at all).

    PYTHONPATH=layers/kbsearch .venv/bin/python eval/bench_aws_stalls.py [--drip 0.5] [--cap 90]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\n\r\n{}"


def serve(kind: str, drip_s: float) -> tuple[int, threading.Event]:
    """A loopback endpoint that holds every connection (``hole``) or drips a small answer (``drip``)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()

    def hold(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1.0)
            with contextlib.suppress(OSError):
                conn.recv(65536)
            for byte in ANSWER if kind == "drip" else b"":
                if stop.wait(drip_s):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
            stop.wait()

    def accept() -> None:
        while not stop.is_set():
            conn, _ = listener.accept()
            threading.Thread(target=hold, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1], stop


def timed(call: Callable[[], Any], cap_s: float) -> str:
    done: list[str] = []

    def run() -> None:
        started = time.monotonic()
        try:
            call()
            outcome = "answered"
        except Exception as exc:
            outcome = type(exc).__name__
        done.append(f"{time.monotonic() - started:.1f} s ({outcome})")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(cap_s)
    return done[0] if done else f"> {cap_s:.0f} s (still waiting)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drip", type=float, default=0.5)
    parser.add_argument("--cap", type=float, default=90.0)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")  # noqa: S106 (none)
    from kbsearch.config import Secrets, Settings
    from kbsearch.lease import Lease
    from kbsearch.sequencers import DynamoSequencers

    settings = Settings(embedding_api_key_param="/kb/key", embedding_api_key=None)
    for kind in ("hole", "drip"):
        port, stop = serve(kind, args.drip)
        url = f"http://127.0.0.1:{port}"
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = os.environ["AWS_ENDPOINT_URL_SSM"] = url
        lease = Lease("t", "index#kb", 300)
        calls: dict[str, Callable[[], Any]] = {
            "lease acquire (PutItem)": lease.acquire,
            "lease renew (UpdateItem)": lease.renew,
            "lease release (DeleteItem)": lease.release,
            "sequencer claims (BatchGetItem)": lambda: DynamoSequencers("t", "kb").claims(["a.md"]),
            "sequencer put (PutItem)": lambda: DynamoSequencers("t", "kb").put("a.md", "0001"),
            "SSM secret (GetParameters)": lambda: Secrets(settings).get("EMBEDDING_API_KEY"),
        }
        for name, call in calls.items():
            print(f"{kind:5} {name:34} {timed(call, args.cap)}", flush=True)
        stop.set()


if __name__ == "__main__":
    main()
