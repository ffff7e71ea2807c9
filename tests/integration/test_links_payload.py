"""A note's link targets stored as one string on each of its chunks (issue 25: Edge's binding and every payload
index at a seal read one value, not one per target), and read back as a hit's list of links, whichever form a point
holds: the embedded Qdrant Edge store written by the indexer, an older point's list written through the store, and
searches through the search handler as API Gateway calls it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
from kbsearch.qdrant import open_store
from kbsearch_tools.local.apigw import HttpRequest, build_event, parse_result

LONG = "L" * 250  # a target over the 200 characters a hit shows: dropped, never cut


def _kb(root: Path) -> None:
    root.mkdir()
    prose = "\n\n".join(f"## Part {i}\n\n" + "rotate the archive keys on schedule. " * 60 for i in range(4))
    (root / "hub.md").write_text(f"# Hub\n\nrotate: see [[Alpha]], [[Beta|the beta]] and [[{LONG}]].\n\n{prose}\n")
    (root / "plain.md").write_text(f"# Plain\n\nrotate the archive keys, no links here.\n\n{prose}\n")
    (root / "old.md").write_text("# Old\n\nrotate the archive keys: see [[Gamma]] and [[Delta]].\n")


def _points(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    store = open_store(settings, Secrets(settings))
    try:
        by_path: dict[str, list[dict[str, Any]]] = {}
        for payload in store.points().values():
            by_path.setdefault(payload["path"], []).append(payload)
        return by_path
    finally:
        store.close()


def _api_links(load_search_app: Any, settings: Settings) -> dict[str, list[str]]:
    """``POST /search`` through the search handler (a new container): path → the hit's links, as JSON gives them."""
    app = load_search_app(QDRANT_PATH=settings.qdrant_path)
    try:
        body = json.dumps({"query": "rotate the archive keys", "top_k": 10}).encode()
        event = build_event(HttpRequest("POST", "/search", "", [("Content-Type", "application/json")], body),
                            "/search", {}, "dev")  # fmt: skip
        answer = parse_result(app(event))
        assert answer.status == 200, answer.body
        return {hit["path"]: hit["links"] for hit in json.loads(answer.body)["results"]}
    finally:
        app.module.api.container.close()


def test_links_are_one_string_a_chunk_and_older_lists_still_answer(tmp_path: Path, load_search_app: Any) -> None:
    """The indexer stores a note's links on each chunk as one string, the targets joined by a newline (a target over
    the bound left out, never cut), and no field for a note without links; a point written before (its links a
    list, set through the store as the indexer wrote them) answers beside them: every hit's links a JSON list."""
    kb = tmp_path / "kb"
    _kb(kb)
    settings = Settings(qdrant_path=str(tmp_path / "q"), kb_source=str(kb))
    report = run_sync(settings, Secrets(settings))
    assert report.error is None and report.added == 3, report
    points = _points(settings)
    assert len(points["hub.md"]) > 1 and len(points["plain.md"]) > 1
    assert all(p["links"] == "Alpha\nBeta" for p in points["hub.md"]), [p.get("links") for p in points["hub.md"]]
    assert all("links" not in p for p in points["plain.md"])
    assert points["old.md"][0]["links"] == "Gamma\nDelta"
    store = open_store(settings, Secrets(settings))
    try:  # old.md as the indexer wrote it before: a list of targets
        store.set_payload("old.md", {"links": ["Gamma", "Delta"]})
    finally:
        store.close()
    assert _points(settings)["old.md"][0]["links"] == ["Gamma", "Delta"]
    hits = _api_links(load_search_app, settings)
    assert hits == {"hub.md": ["Alpha", "Beta"], "plain.md": [], "old.md": ["Gamma", "Delta"]}, hits
