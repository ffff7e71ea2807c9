"""The one home for Qdrant, and the one place that chooses between Qdrant Cloud and the embedded store.

- :mod:`~kbsearch.qdrant.query`: the names (vectors, payload fields, point ids), the Query API JSON of a search and of
  a filter, the embedding-signature check, and how an answer is read (the :class:`Retriever` seam).
- :mod:`~kbsearch.qdrant.rest`: Qdrant Cloud for the search, over REST (no qdrant_client import).
- :mod:`~kbsearch.qdrant.store`: the indexer's store seam, on qdrant-client (Qdrant Cloud; local mode).
- :mod:`~kbsearch.qdrant.embedded`: the embedded store, Qdrant Edge in-process or qdrant-client's local mode.

``QDRANT_URL`` set (``Settings.store_kind == "cloud"``) means Qdrant Cloud, else the embedded store at
``QDRANT_PATH``: :func:`open_store` (the indexer, tools) and :func:`open_retriever` (the search) are the only two
places that act on it. Importing this package loads neither qdrant_client nor qdrant_edge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from kbsearch.config import Secrets, Settings
    from kbsearch.providers.resilience import Deadline
    from kbsearch.qdrant.query import Retriever
    from kbsearch.qdrant.store import Store


def open_store(
    settings: Settings,
    secrets: Secrets,
    rebuild: bool = False,
    deadline: Deadline | None = None,
    held: Callable[[float], bool] | None = None,
) -> Store:
    """The indexer's store: Qdrant Cloud through qdrant-client, or the embedded store (Qdrant Edge, else
    qdrant-client's local mode with a one-line notice). Raises StoreError when it cannot be opened. ``rebuild``: the
    embedded Edge collection is dropped without being opened (it may be one Edge cannot load). ``deadline``: Qdrant
    Cloud's every request ends by it (a Lambda run's end), however slowly Qdrant answers; the embedded store makes
    no request. ``held``: whether the run still holds its index lease for the seconds given (a write's margin: its
    request timeout and the clocks' slack, :func:`kbsearch.lease.write_margin`; the embedded store's, the slack
    alone): once it says no, every write of either store is refused before it is sent (:meth:`~kbsearch.qdrant.store.Store.may_write`, a
    :class:`~kbsearch.errors.LeaseLostError`), and Qdrant Cloud's refused requests are not sent again."""
    if settings.store_kind == "cloud":
        from kbsearch.qdrant.store import Store

        return Store.cloud(settings, secrets, deadline, held)
    from kbsearch.lease import write_margin
    from kbsearch.qdrant.embedded import open_embedded

    store = open_embedded(settings, rebuild=rebuild)
    store.held, store.write_margin_s = held, write_margin(0.0)  # in-process: no request timeout, the slack alone
    return store


def open_retriever(settings: Settings, secrets: Secrets) -> Retriever:
    """The search's retrieval call: Qdrant Cloud over REST with the shared httpx client (the key read per call,
    and read from SSM again once after a 401/403, so a rotated key is picked up), or the embedded store opened in this process. Raises StoreError when the
    embedded store cannot be opened."""
    if settings.store_kind == "cloud":
        from kbsearch.providers.resilience import shared_client
        from kbsearch.qdrant.rest import QdrantRest

        return QdrantRest(
            settings.qdrant_url, settings.qdrant_collection, lambda: secrets.get("QDRANT_API_KEY"), shared_client(),
            settings.qdrant_timeout_s, refresh=secrets.refresh,
        )  # fmt: skip
    from kbsearch.qdrant.embedded import EmbeddedRetriever, open_embedded

    return EmbeddedRetriever(open_embedded(settings, search=True))


def beside_store(settings: Settings, suffix: str) -> Path | None:
    """A file beside the embedded store's collection (``QDRANT_PATH/<collection><suffix>``) for state that belongs
    with it (the event sequencer log); None for Qdrant Cloud."""
    if settings.store_kind == "cloud":
        return None
    from pathlib import Path

    return Path(settings.qdrant_path) / f"{settings.qdrant_collection}{suffix}"


def store_folder(settings: Settings) -> Path:
    """The embedded store's folder (``QDRANT_PATH``, its default too), absolute: what is kept beside it outside the
    store (the oracle's vector cache of ``kbsearch mcp --oracle``) is found from it whatever the working folder."""
    from pathlib import Path

    return Path(settings.qdrant_path).absolute()
