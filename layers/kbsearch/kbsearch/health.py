"""Liveness answer for ``GET /health``: configuration only, no I/O and no heavy imports."""

from __future__ import annotations

from typing import Any

from kbsearch import __version__
from kbsearch.config import Settings
from kbsearch.errors import ConfigError


def health_status(settings: Settings, problem: ConfigError | None = None) -> dict[str, Any]:
    """``status`` is liveness (the function answers); ``ready`` says whether it can search, and if not,
    ``reasons`` names the settings to fix."""
    return {
        "status": "ok",
        "ready": problem is None,
        "reasons": [] if problem is None else [str(problem)],
        "version": __version__,
        "collection": settings.qdrant_collection,
        "store": settings.store_kind,
    }
