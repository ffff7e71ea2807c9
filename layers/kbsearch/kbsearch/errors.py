"""Exceptions shared by the kbsearch parts. Messages are safe to show: they never carry a secret value."""

from __future__ import annotations

from typing import Any


class KbSearchError(Exception):
    """Base class of kb-search's own errors."""


class ConfigError(KbSearchError):
    """A setting is missing or invalid; the message names it."""


class StoreError(KbSearchError):
    """Qdrant cannot be reached or the collection is not usable. ``public``, when set, is a cause a caller may be
    told (it names no host or path): "another process has the embedded store open", say."""

    def __init__(self, detail: str, public: str | None = None) -> None:
        super().__init__(detail)
        self.public = public


class LeaseLostError(StoreError):
    """A write refused by the store because the run that opened it no longer holds its index lease
    (:meth:`kbsearch.qdrant.store.Store.may_write`): another run may hold it, and a write of this run's could set
    back what that run wrote. Nothing was sent; the run stops, incomplete, and the lease's new holder carries on."""


class StoreHeld(StoreError):
    """The embedded store is open in another process (its lock is held): nothing was read or changed, and the same
    call succeeds once that process lets go (``kbsearch`` exits 75, as for an index lease another run holds)."""


class IndexMissing(StoreError):
    """The collection does not exist (the indexer has not run yet). ``remedy`` is what builds it, said to a caller
    after "the index has not been built yet: "; the embedded store's names the command (round 36: an assistant's
    ``kb_search`` said "run the indexer first" where ``GET /health`` of the same store named ``kbsearch index``)."""

    remedy = "run the indexer first"


class IndexUnavailable(KbSearchError):
    """The index cannot be queried (Qdrant down, collection missing): answer 503 with Retry-After.

    ``str(exc)`` is the detail for logs and operators (it may name hosts and paths); ``public`` is what a caller
    may be told."""

    def __init__(self, detail: str, public: str = "the search index is unreachable; try again shortly") -> None:
        super().__init__(detail)
        self.public = public


def aws_error_code(exc: BaseException) -> str:
    """The error code an AWS client error carries (``ConditionalCheckFailedException``, ``NoSuchKey``), or ``""``
    for any other exception (a timeout, a connection refused, a response without one)."""
    response: Any = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    return str(error.get("Code") or "") if isinstance(error, dict) else ""
