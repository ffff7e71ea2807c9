"""What one Lambda container (or one ``kbsearch serve`` process) builds once and reuses: the settings read at
import (never raising: a configuration problem is kept and reported), the secrets resolver, and the services,
built lazily on first use so that ``/health`` and the Slack acknowledgement stay light."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kbsearch.access import CallerMap, CallerMapError, Scope
from kbsearch.config import Secrets, Settings, load_handler_settings
from kbsearch.errors import ConfigError
from kbsearch.health import Readiness
from kbsearch.qdrant.query import LAST_SYNC_AT, LAST_SYNC_KIND

if TYPE_CHECKING:
    from kbsearch.browse import BrowseService
    from kbsearch.reader import NoteReader
    from kbsearch.search import SearchService

logger = logging.getLogger(__name__)


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
        self._browse: BrowseService | None = None
        self._reader: NoteReader | None = None
        self._lock = threading.Lock()
        self._callers: tuple[str | None, CallerMap] = (None, CallerMap.empty())

    # -- who is asking ----------------------------------------------------------------------------------------
    def callers(self, timeout_s: float | None = None) -> CallerMap:
        """The caller mapping (``ACCESS_GROUPS``: SSM SecureString in Lambda, read with the other secrets and
        cached ``ACCESS_GROUPS_TTL_S``, so a change needs no redeploy). Unreadable or malformed → no mapping:
        every caller holds ``public`` only (logged), never more; so does a failed re-read past the TTL (a stale
        copy could hold a grant just revoked)."""
        try:
            raw = self.secrets.get("ACCESS_GROUPS", timeout_s)
        except ConfigError as exc:
            logger.error("the caller mapping cannot be read; callers get public notes only", extra={"error": str(exc)})
            return CallerMap.empty()
        if raw != self._callers[0]:
            try:
                parsed = CallerMap.parse(raw)
            except CallerMapError as exc:
                logger.error("the caller mapping is unusable; callers get public notes only", extra={"error": str(exc)})
                parsed = CallerMap.empty()
            self._callers = (raw, parsed)
        return self._callers[1]

    def api_scope(self, event: Mapping[str, Any], timeout_s: float | None = None) -> Scope:
        """An API Gateway caller's scope, from ``requestContext.identity.apiKeyId`` (the key's id; its value is
        never read or logged here)."""
        context = event.get("requestContext") if isinstance(event, Mapping) else None
        identity = context.get("identity") if isinstance(context, Mapping) else None
        key_id = identity.get("apiKeyId") if isinstance(identity, Mapping) else None
        return self.callers(timeout_s).for_api_key(key_id if isinstance(key_id, str) and key_id else None)

    def slack_scope(self, team: str, channel: str, user: str | None, share: bool) -> Scope:
        """A Slack caller's scope (an answer shared into the channel: the channel's)."""
        return self.callers().for_slack(team, channel, user, share)

    def reader(self) -> NoteReader:
        """Notes by path for a scope (kb_get_note, GET /notes/{path}), over ``KB_SOURCE``."""
        with self._lock:
            if self._reader is None:
                from kbsearch.reader import NoteReader
                from kbsearch.sources import open_source

                budget_s = self.settings.search_budget_s
                self._reader = NoteReader(lambda: open_source(self.kb_source(), budget_s=budget_s),
                                          default=self.settings.access_default, budget_s=budget_s)  # fmt: skip
            return self._reader

    def kb_source(self) -> str:
        """``KB_SOURCE``, else the folder an embedded index records it was built from (``kbsearch serve`` without
        KB_SOURCE); ConfigError naming the setting when neither is known."""
        uri = self.settings.kb_source or self._remembered_source()
        if not uri:
            raise ConfigError(
                "KB_SOURCE is not set (and the index does not record the folder it was built from): set it to the "
                "KB folder or s3://bucket/prefix the index was built from"
            )
        return uri

    def _remembered_source(self) -> str | None:
        if self.settings.store_kind != "embedded" or self.config_problem is not None:
            return None
        from kbsearch.errors import IndexUnavailable, StoreError
        from kbsearch.qdrant.query import SOURCE_KEY

        try:
            folder = self.search().retriever.metadata(5.0).get(SOURCE_KEY)
        except (StoreError, IndexUnavailable):
            return None
        return folder if isinstance(folder, str) and folder else None

    def search(self) -> SearchService:
        """The search service, built on first use (SnapStart snapshots it warm); raises the configuration
        problem when there is one."""
        if self.config_problem is not None:
            raise self.config_problem
        with self._lock:
            if self._search is None:
                from kbsearch.qdrant.readiness import held_for_requests
                from kbsearch.search import SearchService

                settings = self.settings  # a held embedded store: which process holds it, and what to do (local only)
                self._search = SearchService(settings, self.secrets, locked_store=lambda: held_for_requests(settings))
            return self._search

    def index_problems(self) -> list[str]:
        """Why a search cannot be answered now, known without a round trip (see :class:`Readiness`)."""
        if self.config_problem is not None:
            return []
        service = self._search
        return self.readiness.problems(store_open_here=service is not None and service.retriever_open)

    def browse(self) -> BrowseService:
        """Reading notes (sections, links), the catalog and pages of notes for a caller's scope, over the search
        service's index connection and the note reader (``KB_SOURCE``, opened on first read); built on first use."""
        search, reader = self.search(), self.reader()
        with self._lock:
            if self._browse is None:
                from kbsearch.browse import BrowseService

                self._browse = BrowseService(search, reader)
            return self._browse

    def last_sync(self) -> dict[str, Any] | None:
        """The last successful indexer run (``at``, ``age_s``, ``kind``) as the collection records it, for
        ``/health``: read through the search service only when it is already built (SnapStart builds it before the
        snapshot; ``/health`` itself never loads the search path), and at most once a minute on Qdrant Cloud (every
        2 s on the embedded store: a file read). None when unknown."""
        service = self._search
        # only through a store this process already has open: /health never opens one (a store held by another
        # process, a full disk) and never fails because it cannot
        if service is None or self.config_problem is not None or not service.retriever_open:
            return None
        from kbsearch.errors import IndexUnavailable, StoreError

        try:
            recorded = service.collection_metadata()
        except (StoreError, IndexUnavailable):
            return None
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
