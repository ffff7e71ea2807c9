"""Probes of ``kbsearch serve`` over pipes (round 37's figures from scripts left in /tmp, committed in round 38 by
rel38: rel37's ``/tmp/rel37/time_serve.py`` and rev37b's ``/tmp/rev37b/exit.py``). Each spawns ``kbsearch serve``
from the tree given (``TREE/layers/kbsearch`` and ``TREE/tools`` on ``PYTHONPATH``; the functions are this
checkout's), BM25 only, over a KB of one note indexed into a store in a temporary folder, and prints one line.

- ``health TREE``: its stderr to a file (an access line a request), 500 ``GET /health``: the median time of
  requests 51-500 in ms (rel37: main 1.02-1.13 ms, the relay 1.11-1.20 ms);
- ``exit TREE``: stdout and stderr pipes shrunk to 4 KiB and never read past the banner, 120 ``POST /search``, then
  SIGTERM: the exit code and the seconds to exit (rev37b: the relays' one shared 2 s drain, 4.4 → 2.3 s).

    .venv/bin/python eval/serve_pipes_probe.py health /tmp/base38
    .venv/bin/python eval/serve_pipes_probe.py exit .
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _spawn(tree: Path, work: Path, stdout: object, stderr: object) -> subprocess.Popen[bytes]:
    (work / "kb").mkdir()
    (work / "kb" / "alpha.md").write_text("# Alpha\n\nalpha beta gamma\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=f"{tree}/layers/kbsearch:{tree}/tools", QDRANT_PATH=str(work / "q"),
               KB_SOURCE=str(work / "kb"), EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM="")  # fmt: skip
    subprocess.run([sys.executable, "-m", "kbsearch_tools.cli", "index", str(work / "kb")], cwd=ROOT, env=env,
                   capture_output=True, check=True)  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "kbsearch_tools.cli", "serve", "--port", "0"], cwd=ROOT,
                               stdout=stdout, stderr=stderr, env=env)  # type: ignore[arg-type]  # fmt: skip
    atexit.register(lambda: process.poll() is None and process.kill())  # a probe that fails leaves no server
    return process


def health(tree: Path) -> str:
    with tempfile.TemporaryDirectory() as folder, open(Path(folder) / "serve.err", "wb") as err:
        process = _spawn(tree, Path(folder), subprocess.PIPE, err)
        assert process.stdout is not None
        base = process.stdout.readline().decode().split(" on ")[1].strip()
        times = []
        for _ in range(500):
            started = time.perf_counter()
            with urllib.request.urlopen(f"{base}/health") as response:  # noqa: S310 (loopback)
                response.read()
            times.append(time.perf_counter() - started)
        process.terminate()
        process.wait(30)
    return f"{tree}: GET /health median of requests 51-500 {statistics.median(times[50:]) * 1000:.2f} ms"


def exit_time(tree: Path) -> str:
    with tempfile.TemporaryDirectory() as folder:
        process = _spawn(tree, Path(folder), subprocess.PIPE, subprocess.PIPE)
        assert process.stdout is not None and process.stderr is not None
        for stream in (process.stdout, process.stderr):
            fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, 4096)
        base = process.stdout.readline().decode().split(" on ")[1].strip()
        while not process.stdout.readline().startswith(b"try: "):
            pass
        for _ in range(120):
            request = urllib.request.Request(f"{base}/search", data=json.dumps({"query": "alpha"}).encode(),  # noqa: S310
                                             headers={"content-type": "application/json"})  # fmt: skip
            urllib.request.urlopen(request, timeout=30).read()  # noqa: S310 (loopback)
        started = time.perf_counter()
        process.terminate()
        code = process.wait(30)
    return f"{tree}: exit {code} after {time.perf_counter() - started:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("probe", choices=("health", "exit"))
    parser.add_argument("tree", type=Path)
    args = parser.parse_args()
    print(health(args.tree.resolve()) if args.probe == "health" else exit_time(args.tree.resolve()))


if __name__ == "__main__":
    main()
