"""What one Lambda container (or one ``kbsearch serve`` process) builds once and reuses: the settings read at
import (never raising: a configuration problem is kept and reported), the secrets resolver, and the services,
built lazily on first use so that ``/health`` and the Slack acknowledgement stay light."""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any

from kbsearch.config import Secrets, Settings, load_handler_settings
from kbsearch.qdrant.query import LAST_SYNC_AT, LAST_SYNC_KIND

if TYPE_CHECKING:
    from kbsearch.errors import ConfigError
    from kbsearch.search import SearchService


class Container:
    """One per container. ``required`` names settings the function cannot work without (``QDRANT_URL`` is
    always required in Lambda); a problem with them is ``config_problem`` and makes :meth:`search` raise it."""

    def __init__(self, *required: str) -> None:
        settings, problem = load_handler_settings(*required)
        self.settings: Settings = settings
        self.config_problem: ConfigError | None = problem
        self.secrets = Secrets(settings)
        self._search: SearchService | None = None
        self._lock = threading.Lock()

    def search(self) -> SearchService:
        """The search service, built on first use (SnapStart snapshots it warm); raises the configuration
        problem when there is one."""
        if self.config_problem is not None:
            raise self.config_problem
        with self._lock:
            if self._search is None:
                from kbsearch.search import SearchService

                self._search = SearchService(self.settings, self.secrets)
            return self._search

    def last_sync(self) -> dict[str, Any] | None:
        """The last successful indexer run (``at``, ``age_s``, ``kind``) as the collection records it, for
        ``/health``: read through the search service only when it is already built (SnapStart builds it before the
        snapshot; ``/health`` itself never loads the search path), and at most once a minute on Qdrant Cloud (every
        2 s on the embedded store: a file read). None when unknown."""
        service = self._search
        if service is None or self.config_problem is not None:
            return None
        recorded = service.collection_metadata()
        at = (recorded or {}).get(LAST_SYNC_AT)
        if not isinstance(at, str):
            return None
        try:
            when = dt.datetime.fromisoformat(at)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        age = max(0, int((dt.datetime.now(dt.UTC) - when).total_seconds()))
        return {"at": at, "age_s": age, "kind": (recorded or {}).get(LAST_SYNC_KIND)}

    def close(self) -> None:
        with self._lock:
            if self._search is not None:
                self._search.close()
                self._search = None
