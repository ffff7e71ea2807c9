"""Running ``kbsearch serve`` as a child process (tests, ``kbsearch bench load``): its banner gives the URL, and
its output is drained continuously. A pipe nobody reads fills after 64 KiB and then blocks the server on its
next log line or metrics flush, which looks exactly like a hung request."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass
class ServeProcess:
    process: subprocess.Popen[str]
    base_url: str
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.output)


def _drain(stream: IO[str], sink: list[str]) -> None:
    for line in stream:
        sink.append(line)


@contextmanager
def serve_process(
    env: Mapping[str, str],
    cwd: str | Path | None = None,
    host: str = "127.0.0.1",
    timeout_s: float = 60.0,
    args: Sequence[str] = (),
) -> Iterator[ServeProcess]:
    process = subprocess.Popen(
        [sys.executable, "-m", "kbsearch_tools.cli", "serve", "--host", host, "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(env), cwd=cwd,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    output: list[str] = []
    banner = process.stdout.readline()
    if " on http://" not in banner:
        process.kill()
        rest = process.stderr.read()
        raise RuntimeError(f"kbsearch serve did not start: {banner}{rest}")
    output.append(banner)
    for stream in (process.stdout, process.stderr):
        threading.Thread(target=_drain, args=(stream, output), daemon=True).start()
    try:
        yield ServeProcess(process, banner.split(" on ")[1].strip(), output)
    finally:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
