"""kbsearch.timelimit: a bound of CPU or wall-clock time that interrupts one regular expression's match, in the main
thread only, and leaves any other interval timer (pytest-timeout's) as it found it."""

from __future__ import annotations

import re
import signal
import threading

import pytest

from kbsearch.timelimit import TimeLimit, TimeLimitHit

#: A pattern that backtracks exponentially on a run of ``a`` with no ``b``: 2^40 paths, hours of one ``re.match``.
CATASTROPHIC = re.compile(r"(a+)+b")


@pytest.mark.parametrize("cpu", [True, False], ids=["cpu", "wall"])
def test_one_backtracking_match_is_interrupted_by_cpu_time_too(cpu: bool) -> None:
    bound = TimeLimit(0.2, cpu=cpu)
    with pytest.raises(TimeLimitHit) as hit:
        try:
            assert bound.start()
            CATASTROPHIC.match("a" * 40)
        finally:
            bound.cancel()
    assert hit.value.limit is bound
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0) and signal.getsignal(signal.SIGPROF) == signal.SIG_DFL


def test_one_backtracking_match_is_interrupted_and_an_outer_timer_is_put_back() -> None:
    def outer(signum: int, frame: object) -> None:
        raise AssertionError("the outer timer fired")

    previous = signal.signal(signal.SIGALRM, outer)
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        bound = TimeLimit(0.2)
        with pytest.raises(TimeLimitHit):
            try:
                assert bound.start()
                CATASTROPHIC.match("a" * 40)
            finally:
                bound.cancel()
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 90.0 < left < 100.0 and signal.getsignal(signal.SIGALRM) is outer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_limit_past_an_outer_timer_or_outside_the_main_thread_is_not_set() -> None:
    previous = signal.getsignal(signal.SIGALRM)
    signal.signal(signal.SIGALRM, lambda signum, frame: None)
    signal.setitimer(signal.ITIMER_REAL, 50.0)
    try:
        assert TimeLimit(60.0).start() is False  # the earlier timer is the bound: left to its owner
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    started: list[bool] = []
    thread = threading.Thread(target=lambda: started.append(TimeLimit(1.0).start()))
    thread.start()
    thread.join()
    assert started == [False]
