"""What one Lambda container (or one ``kbsearch serve`` process) builds once and reuses: the settings read at
import (never raising: a configuration problem is kept and reported), the secrets resolver, and the services,
built lazily on first use so that ``/health`` and the Slack acknowledgement stay light."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from kbsearch.config import Secrets, Settings, load_handler_settings
from kbsearch.health import Readiness

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
        self.readiness = Readiness(settings)  # what /health says about the index (no round trip)
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

    def index_problems(self) -> list[str]:
        """Why a search cannot be answered now, known without a round trip (see :class:`Readiness`)."""
        if self.config_problem is not None:
            return []
        service = self._search
        return self.readiness.problems(store_open_here=service is not None and service.retriever_open)

    def close(self) -> None:
        with self._lock:
            if self._search is not None:
                self._search.close()
                self._search = None
