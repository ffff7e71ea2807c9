"""``GET /health``: liveness and readiness, with no round trip and no heavy imports.

``ready`` says whether a search can be answered now. It is known without querying anything: the configuration;
the outcome of the last search (an unreachable index, a missing collection, a store another process holds: kept
for ``FAILURE_TTL_S``, cleared by the next search that answers); and, for the embedded store before this process
has opened it, a look at its folder (cached for ``PROBE_TTL_S``): is the collection there, and does another process
hold its write-ahead log (Linux's ``/proc/locks``, read without taking a lock, so a probe can never make a starting
``kbsearch index`` fail).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kbsearch import __version__
from kbsearch.config import Settings
from kbsearch.errors import ConfigError
from kbsearch.qdrant.readiness import embedded_problem


def health_status(
    settings: Settings, problem: ConfigError | None = None, index_problems: list[str] | None = None
) -> dict[str, Any]:
    """``status`` is liveness (the function answers); ``ready`` says whether it can search, and if not,
    ``reasons`` names what to fix (a setting, the indexer to run, the process holding the store)."""
    reasons = ([] if problem is None else [str(problem)]) + list(index_problems or [])
    return {
        "status": "ok",
        "ready": not reasons,
        "reasons": reasons,
        "version": __version__,
        "collection": settings.qdrant_collection,
        "store": settings.store_kind,
    }


class Readiness:
    """What ``/health`` knows about the index, cheaply. The search reports each outcome; the embedded store's
    folder is looked at only while this process has not opened it (then its own searches say)."""

    #: A failed search keeps the function not ready this long (or until a search answers): a probe that routes
    #: traffic away then still lets the function find out that the index came back.
    FAILURE_TTL_S = 30.0
    #: How long a look at the embedded store's folder is reused.
    PROBE_TTL_S = 5.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._failure: tuple[float, str] | None = None
        self._probe: tuple[float, str | None] | None = None

    def search_failed(self, public_reason: str) -> None:
        with self._lock:
            self._failure = (time.monotonic(), public_reason)

    def search_answered(self) -> None:
        with self._lock:
            self._failure = None
            self._probe = None

    def problems(self, store_open_here: bool) -> list[str]:
        now = time.monotonic()
        with self._lock:
            if self._failure is not None:
                if now - self._failure[0] < self.FAILURE_TTL_S:
                    return [self._failure[1]]
                self._failure = None
            if self.settings.store_kind == "cloud" or store_open_here:
                return []
            if self._probe is None or now - self._probe[0] >= self.PROBE_TTL_S:
                self._probe = (now, embedded_problem(self.settings))
            problem = self._probe[1]
        return [problem] if problem else []
