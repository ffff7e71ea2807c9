"""What one ``--poll`` pass of ``kbsearch serve --watch`` costs on a KB whose notes all share one mtime (a ``git
checkout``), and when the notes it cannot yet trust are read again (rev36b; committed in round 37 by tidy37: the
script had stayed in ``/tmp``). ``--notes`` notes in 30 folders are written to a scratch folder, then all given one
mtime, the time the watch starts; ``Watcher._polling`` is driven directly for ``--seconds``, its 250 ms wait
replaced by a sleep outside the timing. Prints the polls made, the median and the largest CPU time of a poll
(``time.process_time``, the first poll, which reads every note, left out), and each batch it gave (seconds in,
notes).

    PYTHONPATH=layers/kbsearch:tools nice -n 5 .venv/bin/python eval/bench_poll.py --notes 3000
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from kbsearch_tools.local.live import Watcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as scratch:
        kb, notes = Path(scratch), []
        for i in range(args.notes):
            notes.append(kb / f"d{i % 30}" / f"n{i}.md")
            notes[-1].parent.mkdir(exist_ok=True)
            notes[-1].write_text(f"# Note {i}\n\nword{i}\n", encoding="utf-8")
        now = time.time_ns()  # once all are written (that takes seconds on a loaded machine): the watch starts now
        for note in notes:
            os.utime(note, ns=(now, now))  # one tick: a git checkout
        watcher = Watcher(None, kb, poll=True)  # type: ignore[arg-type]  # a poll reads no index
        watcher.stop_event.wait = lambda timeout=None: False  # type: ignore[method-assign]  # the poll's own work only
        polls = watcher._polling()
        costs: list[float] = []
        batches: list[tuple[float, int]] = []
        started = time.monotonic()
        while time.monotonic() < started + args.seconds:
            cpu = time.process_time()
            got = next(polls)
            costs.append(time.process_time() - cpu)
            if got:
                batches.append((round(time.monotonic() - started, 2), len(got)))
            time.sleep(0.25)
        later = costs[1:] or costs
        print(f"polls {len(costs)}, median CPU per poll {statistics.median(later) * 1000:.1f} ms, "
              f"max {max(later) * 1000:.1f} ms; batches {batches}")  # fmt: skip


if __name__ == "__main__":
    main()
