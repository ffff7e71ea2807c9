"""kb-search's developer tooling: the ``kbsearch`` command (index, search, serve, invoke, eval, bench), the local
Lambda runtime, provider fakes and evaluation. Installed by ``make install``; never part of the Lambda layer (the
runtime package ``kbsearch`` imports nothing from here)."""

from __future__ import annotations

from pathlib import Path

from kbsearch.errors import KbSearchError


class TemplateError(KbSearchError):
    """template.yaml cannot be read, or does not define what was asked for."""


def repo_root() -> Path:
    """The kb-search checkout this tooling runs from (template.yaml beside tools/), else the current folder."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "template.yaml").is_file() else Path.cwd()
