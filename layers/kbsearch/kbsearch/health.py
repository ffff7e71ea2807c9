"""Liveness answer for ``GET /health``: configuration only, no I/O and no heavy imports."""

from __future__ import annotations

from typing import Any

from kbsearch import __version__
from kbsearch.config import Settings


def health_status(settings: Settings) -> dict[str, Any]:
    return {
        "status": "ok",
        "version": __version__,
        "collection": settings.qdrant_collection,
        "store": settings.store_kind,
    }
