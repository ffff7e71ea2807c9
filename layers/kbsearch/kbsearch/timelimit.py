"""A bound on CPU-bound work that no deadline check inside reaches: a regular expression that backtracks, a parser's
loop. Python's ``re`` checks for signals while it matches, so a timer signal interrupts even one match."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any


class TimeLimitHit(BaseException):
    """The work ran past its limit (``limit``: the :class:`TimeLimit` it ran past). A BaseException, as
    KeyboardInterrupt is: code under the limit that catches ``Exception`` (a parser's "anything else") does not
    swallow it."""

    def __init__(self, limit: TimeLimit) -> None:
        super().__init__(f"ran past {limit.seconds:g} s")
        self.limit = limit


class TimeLimit:
    """:meth:`start` arms a timer that raises :class:`TimeLimitHit` in the work once ``seconds`` have passed: of the
    process's CPU time (``cpu``: ``ITIMER_PROF``/``SIGPROF``, what the work costs, whatever the host's load), else of
    wall-clock time (``ITIMER_REAL``/``SIGALRM``: a deadline); :meth:`cancel` (always, in a ``finally``) disarms it
    and puts back what was there. Armed only in the main thread of a platform with ``setitimer`` (POSIX), where the
    signal interrupts the work; elsewhere (a thread, Windows) the work runs unbounded (:meth:`start` answers False).
    A timer of the same kind already running (a test runner's ``SIGALRM``) is honoured: the bound is the earlier of
    the two, and the other timer is set again after, less the time spent, with its own handler."""

    def __init__(self, seconds: float, cpu: bool = False) -> None:
        self.seconds = seconds
        self.cpu = cpu
        self._armed = False
        self._previous: Any = None
        self._left = self._interval = self._started = 0.0

    def _kind(self) -> tuple[int, signal.Signals]:
        return (signal.ITIMER_PROF, signal.SIGPROF) if self.cpu else (signal.ITIMER_REAL, signal.SIGALRM)

    def _now(self) -> float:
        return time.process_time() if self.cpu else time.monotonic()

    def start(self) -> bool:
        if self.seconds <= 0 or not hasattr(signal, "setitimer"):
            return False
        if threading.current_thread() is not threading.main_thread():
            return False
        which, signum = self._kind()
        previous = signal.getsignal(signum)
        left, interval = signal.getitimer(which)
        if previous is None or (left and left <= self.seconds):  # a handler set outside Python, an earlier timer
            return False
        self._previous, self._left, self._interval = previous, left, interval
        self._started = self._now()
        signal.signal(signum, self._expired)
        signal.setitimer(which, self.seconds)
        self._armed = True
        return True

    def cancel(self) -> None:
        """Disarm (a signal already on its way raises nothing once this begins) and put back what was there."""
        if not self._armed:
            return
        self._armed = False
        which, signum = self._kind()
        signal.setitimer(which, 0)
        signal.signal(signum, self._previous)
        if self._left:
            signal.setitimer(which, max(self._left - (self._now() - self._started), 1e-6), self._interval)

    def _expired(self, signum: int, frame: object) -> None:
        if self._armed:
            raise TimeLimitHit(self)


def cancel_all(limits: tuple[TimeLimit, ...]) -> None:
    """:meth:`TimeLimit.cancel` each of ``limits``, every one of them even when a limit's signal arrives during a
    cancel (between its check and its disarming: the work ended right at its limit); that hit, the first, is raised
    once all are off (an armed timer left behind would raise in whatever code runs next)."""
    hit: TimeLimitHit | None = None
    for limit in limits:
        while True:
            try:
                limit.cancel()
                break
            except TimeLimitHit as exc:  # each timer fires once: the next cancel() of this limit disarms it
                hit = hit or exc
    if hit is not None:
        raise hit
