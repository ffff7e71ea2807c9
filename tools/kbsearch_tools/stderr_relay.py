"""stderr that never blocks its writer: ``kbsearch mcp`` and ``kbsearch serve`` log through it (round 36, 37);
``kbsearch serve``'s stdout too, where its functions log as in Lambda (rev37b).

A process launched with its stderr piped to a parent that never reads it (MCP lets a client "capture, forward, or
ignore" it; a launcher may do the same to ``kbsearch serve``) blocked on its next log line once the pipe's 64 KiB
were full: every call after it went unanswered. Here a write appends to memory and returns; a writer thread writes
what waits. Past the bound the **oldest** waiting lines go, never the newest (a crash's traceback, the last lines
before an end, are what a reader looking late wants), and a line of its own says how many went, where they were.
"""

from __future__ import annotations

import atexit
import codecs
import collections
import io
import logging
import os
import sys
import threading
import time
from typing import TextIO


class StderrRelay(io.TextIOBase):
    """stderr for a process whose parent may not read it: what is written (log lines, a stray ``print``) is handed
    to a writer thread, so no write ever waits on the reader. At most ``limit`` characters wait; past that the
    oldest whole lines waiting are dropped (the newest line is kept however long, with the line not yet ended),
    and once the writer takes what waits, their count goes first, on a line of its own, where the gap is
    (``<name>: N log lines were dropped: nobody read stderr while they were written``). A line the writer took
    before its end arrived, whose end was then dropped, is ended before the count (rev36b: a print's text and its
    newline are two writes; no line is glued to another, none blank, none counted twice). A target that cannot be
    written (closed) drops everything after. At exit what still waits is given :data:`EXIT_DRAIN_S` (``atexit``)."""

    EXIT_DRAIN_S = 2.0

    def __init__(
        self, target: TextIO, limit: int = 256 * 1024, name: str = "kbsearch mcp", stream: str = "stderr"
    ) -> None:
        self._target = target
        self._stream = stream  # what the count's line says nobody read
        self._limit = limit
        self._name = name
        self._lines: collections.deque[str] = collections.deque()  # whole lines waiting, oldest first
        self._tail = ""  # the last line written, not yet ended
        self._size = 0  # the characters of _lines and _tail
        self._dropped = 0  # the whole lines dropped since the writer last took what waited
        self._continues = False  # the first line waiting ends one the writer took without its end
        self._broken = False  # that line's end was dropped: the writer ends it before the count
        self._writing = False
        self._gone = False  # the target cannot be written (closed): everything from then on is dropped
        self._cond = threading.Condition()
        self._fd: int | None = None  # the descriptor it stands for, once that is a pipe it drains (_relay_fd)
        threading.Thread(target=self._run, name="kbsearch-stderr", daemon=True).start()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._target.isatty()

    def fileno(self) -> int:
        return self._target.fileno() if self._fd is None else self._fd

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # as a text stream refuses it, to its caller: in the writer thread's join it
            # ended that thread, and stderr with it, for the rest of the process (round 36 review)
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._cond:
            if self._gone or not text:
                return len(text)
            if "\n" in text:
                *ended, self._tail = (self._tail + text).split("\n")
                self._lines.extend(line + "\n" for line in ended)
            else:
                self._tail += text
            self._size += len(text)
            if len(self._tail) > self._limit and len(self._tail) > len(text):  # a line never ended: its start goes
                self._size -= len(self._tail) - len(text)
                self._tail = text
                self._dropped += 1
                if self._continues and not self._lines:  # the rest of a line already written: it is cut
                    self._continues, self._broken = False, True
            self._shed()
            self._cond.notify()
        return len(text)

    def _shed(self) -> None:
        """Drop the oldest whole lines waiting until what waits is within the bound, keeping the newest line (and
        the line not yet ended); a line not yet ended that alone passes the bound loses what it had before."""
        while self._size > self._limit and (len(self._lines) > 1 or (self._lines and self._tail)):
            line = self._lines.popleft()
            self._size -= len(line)
            if self._continues:  # the end of a line already written: that line is cut, not gone
                self._continues, self._broken = False, True
                self._dropped += line != "\n"
            else:
                self._dropped += 1

    def flush(self) -> None:
        """Nothing to wait for here: the writer thread flushes what it writes."""

    def drain(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for what waits to be written; whether it was."""
        with self._cond:
            return self._cond.wait_for(lambda: self._gone or not (self._waiting() or self._writing), timeout_s)

    def _waiting(self) -> bool:
        return bool(self._lines or self._tail or self._dropped or self._broken)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._waiting)
                said = "\n" if self._broken else ""
                if self._dropped:  # on a line of its own, where the gap is: before what was kept after it
                    said += (f"{self._name}: {self._dropped:,} log lines were dropped: nobody read {self._stream} while "
                             "they were written\n")  # fmt: skip
                text = said + "".join(self._lines) + self._tail
                self._continues = bool(self._tail)  # the next line waiting ends the one taken here
                self._lines, self._tail, self._size, self._writing = collections.deque(), "", 0, True
                self._dropped, self._broken = 0, False
            try:
                self._target.write(text)
                self._target.flush()
            except (OSError, ValueError):  # closed by the client: nobody will read it
                with self._cond:
                    self._gone = True
            with self._cond:
                self._writing = False
                self._cond.notify_all()
                if self._gone:
                    return


def relay_stderr(name: str = "kbsearch mcp") -> StderrRelay | None:
    """``sys.stderr`` (and the log handlers writing to it) through a :class:`StderrRelay`, for the rest of the
    process: called first by ``kbsearch mcp`` and ``kbsearch serve``. None when there is no stderr (started with
    it closed)."""
    return _relay("stderr", name)


def relay_stdout(name: str = "kbsearch serve") -> StderrRelay | None:
    """``sys.stdout`` through a :class:`StderrRelay` too (rev37b), for ``kbsearch serve``: its functions log as they
    do in Lambda, Powertools' JSON lines and metrics on **stdout** (the search's ``access`` line and its EMF blob,
    ~1 KB a search), and a launcher that reads the banner's URL and no more (rel37's own timing script) blocked the
    server on its next search once that pipe's 64 KiB were full. Called before the functions are imported, so their
    loggers' handlers take the relay as their stream. None when there is no stdout."""
    return _relay("stdout", name)


def _relay(which: str, name: str) -> StderrRelay | None:
    """``sys.<which>`` through a relay, and every log handler that writes to the stream it was (the root's and any
    logger's: Powertools copies its handler onto the ``kbsearch`` loggers)."""
    current = getattr(sys, which)
    if current is None or isinstance(current, StderrRelay):
        return current
    drained = _relay_fd(current) if which == "stderr" else None
    relay = StderrRelay(drained[0] if drained else current, name=name, stream=which)
    if drained:
        relay._fd = current.fileno()
        drain = _FdDrain(drained[1], relay._fd, relay)
        drain.thread.start()
        _FD_DRAINS.append(drain)
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]  # fmt: skip
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is current:
                handler.setStream(relay)
    setattr(sys, which, relay)
    if not _RELAYS:
        atexit.register(_drain_all)
    _RELAYS.append(relay)
    return relay


#: The pipe that stands for file descriptor 2 (:func:`_relay_fd`): its size where the system allows (Linux), so that a
#: thread dump written from a signal's handler (which may hold the interpreter's lock the draining thread needs)
#: fits whole
FD_PIPE_BYTES = 1 << 20


def _relay_fd(current: TextIO) -> tuple[TextIO, int] | None:
    """File descriptor 2 itself made a pipe that a thread drains into the relay (rel38): what writes there below
    Python (faulthandler's ``SIGUSR1`` thread dump, a native library's message, a child process that inherits it)
    went straight to the launcher's pipe, past the relay, and blocked once nobody read it. The stream the relay
    writes to is a copy of the descriptor as it was (``os.dup``): that stream, and the pipe's end to drain. None
    when the descriptor cannot be had (no ``fileno``, a closed descriptor): ``current`` is relayed as it is."""
    try:
        fd = current.fileno()
        current.flush()
        saved = os.dup(fd)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    read_end, write_end = os.pipe()
    try:
        import fcntl

        fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), FD_PIPE_BYTES)
    except (ImportError, OSError):  # not Linux, or above the system's pipe-max-size: the default size
        pass
    encoding = getattr(current, "encoding", None) or "utf-8"
    target = open(saved, "w", encoding=encoding, errors="backslashreplace", closefd=True)  # noqa: SIM115 (for good)
    os.dup2(write_end, fd)
    os.close(write_end)
    _fatal_errors_to(target)
    return target, read_end


def _fatal_errors_to(target: TextIO) -> None:
    """A fatal error's traceback (``PYTHONFAULTHANDLER=1``, ``-X faulthandler``: a segfault in a native library,
    an abort) written to ``target``, the descriptor as it was, never into the drained pipe (rev38b): the handler
    writes, then the process dies at once, its draining thread with it, and what waited in the pipe died too: the
    launcher saw a process gone without a word. The process is ending: a write that waits on its reader costs
    nothing more than before rel38. Left off when it was off."""
    import faulthandler

    if faulthandler.is_enabled():
        faulthandler.enable(file=target, all_threads=True)


class _FdDrain:
    """What is written to the descriptor, read by a thread and handed to ``relay`` (never ``sys.stderr``: code that
    puts back ``sys.__stderr__``, a stream on that descriptor, would loop): never waits on a reader. At exit
    (:meth:`settle`) what is in the pipe reaches the relay before the relay's own drain (rev38b: a native library's
    last lines, a child's, ``sys.__stderr__``'s, written in the instant before the end stayed in the pipe and died
    with the process)."""

    #: Written to the pipe at exit, after everything written before it (a pipe keeps order): the thread has handed
    #: everything before to the relay when it reads this. Never handed on.
    MARK = b"\x00kbsearch-fd2-settled\x00"

    def __init__(self, read_end: int, fd: int, relay: StderrRelay) -> None:
        self._read_end = read_end
        self._fd = fd
        self._relay = relay
        self._settled = threading.Event()
        self.thread = threading.Thread(target=self._run, name="kbsearch-fd2", daemon=True)

    def _run(self) -> None:
        decoder = codecs.getincrementaldecoder(self._relay.encoding)(errors="backslashreplace")
        carry = b""  # the end of what was read that may begin the mark
        while True:
            try:
                data = os.read(self._read_end, 65536)
            except OSError:
                return
            if not data:
                return
            data, carry = carry + data, b""
            settled = self.MARK in data
            if settled:
                data = data.replace(self.MARK, b"")
            else:
                keep = next((n for n in range(len(self.MARK) - 1, 0, -1) if data.endswith(self.MARK[:n])), 0)
                data, carry = data[: len(data) - keep], data[len(data) - keep :]
            text = decoder.decode(data)
            if text:
                self._relay.write(text)
            if settled:
                self._settled.set()

    def settle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for what is in the pipe now to reach the relay; whether it did. A write that would
        wait (the pipe full, its thread gone) is not made."""
        if not self.thread.is_alive():
            return False
        try:
            os.set_blocking(self._fd, False)  # the process is ending: a writer to a full pipe is told, not held
            os.write(self._fd, self.MARK)
        except OSError:
            return False
        return self._settled.wait(timeout_s)


#: The descriptors :func:`_relay` made pipes, settled at exit before the relays are drained.
_FD_DRAINS: list[_FdDrain] = []


#: The relays :func:`_relay` made, drained together at exit.
_RELAYS: list[StderrRelay] = []


def _drain_all() -> None:
    """At exit, what waits in every relay is given :data:`StderrRelay.EXIT_DRAIN_S` in all, not each its own: with
    stdout and stderr both unread (``kbsearch serve``), its end waited twice as long (rev37b)."""
    until = time.monotonic() + StderrRelay.EXIT_DRAIN_S
    for drain in _FD_DRAINS:  # what waits in the pipe first: it is handed to its relay, drained below
        drain.settle(max(0.0, until - time.monotonic()))
    for relay in reversed(_RELAYS):  # stdout's first: the last lines a reader of it waits for
        relay.drain(max(0.0, until - time.monotonic()))
