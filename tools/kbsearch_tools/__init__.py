"""kb-search's developer tooling: the ``kbsearch`` command (index, search, serve, invoke, eval, bench), the local
Lambda runtime, provider fakes and evaluation. Installed by ``make install``; never part of the Lambda layer (the
runtime package ``kbsearch`` imports nothing from here)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kbsearch.errors import KbSearchError


class TemplateError(KbSearchError):
    """template.yaml cannot be read, or does not define what was asked for."""


def repo_root() -> Path:
    """The kb-search checkout this tooling runs from (template.yaml beside tools/), else the current folder."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "template.yaml").is_file() else Path.cwd()


def read_file(
    path: str | os.PathLike[str], what: str, limit: int, error: type[Exception] = KbSearchError, stdin: bool = False
) -> bytes:
    """The bytes of a file an option names (with ``stdin``, ``-`` is stdin), at most ``limit``: ``error`` saying
    ``cannot read <what>`` or that it is larger than ``limit`` (``/dev/zero``, ``/dev/urandom``, a pipe that never
    ends, a file named by mistake). Each was read whole into memory: a ``MemoryError`` traceback, or the host's
    memory filled first."""
    try:
        if stdin and str(path) == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as handle:
                raw = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > limit:
        raise error(f"{what} is larger than {limit:,} bytes (the most it may be): nothing read")
    return raw


def utf8_text(raw: bytes, what: str, error: type[Exception] = KbSearchError) -> str:
    """A file's bytes as text (UTF-8, a byte-order mark dropped); ``error`` naming the first byte that is not."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8 (invalid byte at offset {exc.start})") from None
