"""Probes of ``kbsearch mcp``'s stderr relay (``mcp_stdio.relay_stderr``) at its edges (rev36b's ``shut.py``,
``drive.py``, ``drive2.py``, ``handlers.py`` and ``bytesprobe.py``; committed in round 37 by tidy37: they had
stayed in ``/tmp``). Each prints what it saw; the tests that hold the behaviour are ``tests/integration/
test_adv36.py`` and ``test_rev36b.py``'s relay tests.

- ``full N [--crash]``: a child relays ``N`` log lines of 80 characters (then raises, with ``--crash``) into a
  4 KiB stderr pipe nobody reads: its exit code and how long it took to exit (rev36b: exit 0 in ~2.2 s, the
  drain's 2 s, no fatal error at shut-down; ``HUNG`` and the pipe's tail if it did not exit in 20 s);
- ``after N [--crash]``: the same child under ``subprocess.run(stderr=PIPE)``: its exit code, the bytes read,
  whether the traceback is among them (rev36b: 5,000 lines and a crash, exit 1). ``run`` reads the pipe while the
  child writes, so this is not a client that reads stderr only after the exit (round 37: every line and the
  traceback arrive, 519,321 bytes);
- ``handlers``: after ``relay_stderr()`` and the imports of ``kbsearch mcp``'s local and remote paths, the logging
  handlers of any logger that still hold another stream than the relay (rev36b: none);
- ``bytes``: ``bytes`` written to the relay are refused to their writer and the next line still reaches stderr
  (rev36b, on 4c42133's relay: ``drained False in 3.0 s; written: b''``).

    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/stderr_relay_check.py full 5000 --crash
    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/stderr_relay_check.py after 5000 --crash
    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/stderr_relay_check.py handlers
    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/stderr_relay_check.py bytes
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import logging
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any

from kbsearch_tools import mcp_stdio


def child(lines: int, crash: bool) -> None:
    logging.basicConfig(handlers=[logging.StreamHandler(sys.stderr)])
    mcp_stdio.relay_stderr()
    for i in range(lines):
        logging.warning("line %d %s", i, "x" * 80)
    if crash:
        raise RuntimeError("crash at the end: the traceback a client needs")


def child_command(lines: int, crash: bool) -> list[str]:
    return [sys.executable, __file__, "child", str(lines), *(["--crash"] if crash else [])]


def full(lines: int, crash: bool) -> None:
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 4096)
    started = time.monotonic()
    proc = subprocess.Popen(child_command(lines, crash), stderr=write)
    os.close(write)
    try:
        rc: Any = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        rc = "HUNG"
    print("rc", rc, "in", round(time.monotonic() - started, 1), "s")
    if rc == "HUNG":
        data = b""
        while select.select([read], [], [], 0.5)[0] and (chunk := os.read(read, 65536)):
            data += chunk
        print(data[-600:].decode(errors="replace"))
        proc.kill()
    os.close(read)


def after(lines: int, crash: bool) -> None:
    proc = subprocess.run(child_command(lines, crash), stderr=subprocess.PIPE, timeout=30, check=False)
    err = proc.stderr.decode()
    tail = err[-200:].replace("\n", "|")
    print("rc", proc.returncode, "bytes", len(err), "traceback", "RuntimeError" in err, "| tail:", tail)


def handlers() -> None:
    logging.basicConfig(level=logging.INFO, handlers=[logging.StreamHandler(sys.stderr)])
    relay = mcp_stdio.relay_stderr()
    for name in ("kbsearch_tools.cli", "kbsearch.search", "kbsearch.browse", "kbsearch.mcp.protocol",
                 "kbsearch.mcp.stdio", "kbsearch.mcp.tools", "kbsearch.reader", "kbsearch.qdrant.embedded",
                 "kbsearch.api.app", "kbsearch_tools.oracle", "httpx", "qdrant_client"):  # fmt: skip
        try:
            importlib.import_module(name)
        except ImportError as exc:
            print(f"not imported: {name} ({exc})")
    loggers: list[tuple[str, Any]] = [("root", logging.getLogger()), *logging.Logger.manager.loggerDict.items()]
    bad = []
    for name, logger in loggers:
        for handler in getattr(logger, "handlers", []):
            stream = getattr(handler, "stream", None)
            if stream is not None and stream is not relay:
                bad.append((name, type(handler).__name__, getattr(stream, "name", stream)))
    print("handlers not through the relay:", bad)


def refused_bytes() -> None:
    read, write = os.pipe()
    target, got = os.fdopen(write, "w"), bytearray()

    def drain_pipe() -> None:
        while chunk := os.read(read, 65536):
            got.extend(chunk)

    threading.Thread(target=drain_pipe, daemon=True).start()
    relay = mcp_stdio.StderrRelay(target)
    try:
        relay.write(b"bytes\n")  # type: ignore[arg-type]  # what the probe is about
        print("accepted bytes")
    except TypeError as exc:
        print("refused:", exc)
    time.sleep(0.5)
    relay.write("the line after it\n")
    started = time.monotonic()
    drained = relay.drain(3)
    took = round(time.monotonic() - started, 1)
    target.flush()  # the relay's target is this buffered pipe: what it was given reaches the reader now
    time.sleep(0.2)
    print("drained", drained, "in", took, "s; written:", bytes(got))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for what in ("full", "after", "child"):
        p = sub.add_parser(what, help=None if what == "child" else f"the {what} probe")
        p.add_argument("lines", type=int)
        p.add_argument("--crash", action="store_true")
    sub.add_parser("handlers")
    sub.add_parser("bytes")
    args = parser.parse_args()
    if args.what == "child":
        child(args.lines, args.crash)
    elif args.what == "full":
        full(args.lines, args.crash)
    elif args.what == "after":
        after(args.lines, args.crash)
    elif args.what == "handlers":
        handlers()
    else:
        refused_bytes()


if __name__ == "__main__":
    main()
