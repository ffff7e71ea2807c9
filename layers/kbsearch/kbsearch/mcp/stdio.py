"""MCP over stdio: the transport desktop assistants launch. JSON-RPC messages, one per line (UTF-8, no embedded
newline) on stdin; answers one per line on stdout, which carries nothing else; the loop ends when stdin closes.

Linear and bounded: a line longer than :data:`MAX_LINE_BYTES` is skipped to its end and answered with an error
(the rest of the stream keeps its framing); blank lines are ignored; a client that goes away mid-answer ends the
loop quietly. Answers are written as UTF-8 JSON (a Russian letter two bytes, and readable by whoever types at the
server), as MCP's stdio transport says; no text a note holds can break a line: JSON escapes every control character,
and U+0085, U+2028, U+2029 (line breaks to some readers) and lone surrogates (no UTF-8 encodes them) are written as their
``\\u`` escapes, the same strings to a JSON reader.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, BinaryIO

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 4 * 1024 * 1024
INVALID_REQUEST = -32600
#: What one line carries: a JSON-RPC message, or a batch's answers (an array, MCP 2025-03-26).
Message = dict[str, Any] | list[dict[str, Any]]


class ClientGone(Exception):
    """Raised by a ``handle`` that writes messages of its own (the bridge: an event stream's several) and finds
    stdout closed: the loop ends quietly, as when its own answer cannot be written."""


def read_message(stream: BinaryIO, limit: int = MAX_LINE_BYTES) -> tuple[bytes | None, bool]:
    """The next line (None at the end of the stream) and whether it was over ``limit`` (then it is dropped)."""
    line = stream.readline(limit + 1)
    if not line:
        return None, False
    if len(line) <= limit or line.endswith(b"\n"):
        return line, False
    while True:  # skip the rest of the oversized line, a bounded chunk at a time
        rest = stream.readline(limit)
        if not rest or rest.endswith(b"\n"):
            return b"", True


#: What is written as its ``\\u`` escape in a UTF-8 line: lone surrogates (no UTF-8 encodes them) and U+0085,
#: U+2028, U+2029 (line breaks to a reader that splits as Python's ``str.splitlines`` does, which JSON leaves as
#: they are; the other characters it breaks at are below U+0020, which JSON escapes).
_ESCAPED = re.compile("[\ud800-\udfff\u0085\u2028\u2029]")


def write_message(stream: BinaryIO, message: Message) -> None:
    """One message, one line of UTF-8 JSON. It was ASCII JSON: ``\\u0440...``, six bytes a Cyrillic letter (three
    times UTF-8's) and unreadable at a terminal; the HTTP answers were made UTF-8 in round 24."""
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str)
    stream.write(_ESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8") + b"\n")
    stream.flush()


def serve(
    handle: Callable[[bytes], Message | None],
    stdin: BinaryIO,
    stdout: BinaryIO,
    limit: int = MAX_LINE_BYTES,
) -> int:
    """Answer every line of ``stdin`` on ``stdout`` with ``handle`` until stdin closes; 0 when it does."""
    while True:
        try:
            line, too_long = read_message(stdin, limit)
        except (OSError, ValueError):  # stdin closed under us
            return 0
        if line is None:
            return 0
        if too_long:
            answer: Message | None = {
                "jsonrpc": "2.0", "id": None,
                "error": {"code": INVALID_REQUEST, "message": f"Invalid Request: a message over {limit} bytes"},
            }  # fmt: skip
        elif not line.strip():
            continue
        else:
            try:
                answer = handle(line.rstrip(b"\r\n"))
            except ClientGone:
                logger.info("stdout closed; stopping")
                return 0
        if answer is None:
            continue
        try:
            write_message(stdout, answer)
        except (BrokenPipeError, ValueError, OSError):  # the client closed its end: nobody is listening
            logger.info("stdout closed; stopping")
            return 0
