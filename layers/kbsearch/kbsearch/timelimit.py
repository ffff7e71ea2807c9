"""A wall-clock bound on CPU-bound work that no deadline check inside reaches: a regular expression that
backtracks, a parser's loop. Python's ``re`` checks for signals while it matches, so a timer signal interrupts even
one match."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any


class TimeLimitHit(BaseException):
    """The work ran past its limit. A BaseException, as KeyboardInterrupt is: code under the limit that catches
    ``Exception`` (a parser's "anything else") does not swallow it."""


class TimeLimit:
    """:meth:`start` arms a timer that raises :class:`TimeLimitHit` in the work once ``seconds`` of wall-clock
    time have passed; :meth:`cancel` (always, in a ``finally``) disarms it and puts back what was there. Armed only
    in the main thread of a platform with ``setitimer`` (POSIX), where the signal interrupts the work; elsewhere (a
    thread, Windows) the work runs unbounded (:meth:`start` answers False). An interval timer already running (a
    test runner's, say) is honoured: the bound is the earlier of the two, and the other timer is set again after,
    less the time spent, with its own handler."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._armed = False
        self._previous: Any = None
        self._left = self._interval = self._started = 0.0

    def start(self) -> bool:
        if self.seconds <= 0 or not hasattr(signal, "setitimer"):
            return False
        if threading.current_thread() is not threading.main_thread():
            return False
        previous = signal.getsignal(signal.SIGALRM)
        left, interval = signal.getitimer(signal.ITIMER_REAL)
        if previous is None or (left and left <= self.seconds):  # a handler set outside Python, an earlier timer
            return False
        self._previous, self._left, self._interval = previous, left, interval
        self._started = time.monotonic()
        signal.signal(signal.SIGALRM, self._expired)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        self._armed = True
        return True

    def cancel(self) -> None:
        """Disarm (a signal already on its way raises nothing once this begins) and put back what was there."""
        if not self._armed:
            return
        self._armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous)
        if self._left:
            spent = time.monotonic() - self._started
            signal.setitimer(signal.ITIMER_REAL, max(self._left - spent, 1e-6), self._interval)

    def _expired(self, signum: int, frame: object) -> None:
        if self._armed:
            raise TimeLimitHit()
