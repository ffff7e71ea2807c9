"""Round 24b, the adversarial pass on the indexing side: what a Markdown reader takes a note's lines for, and what
the indexer, the note graph and a read by path take them for. Through the indexer service on a folder and the
search handler's API Gateway events (``POST /search``, ``GET /notes/{path}``) on the embedded store. Each test
fails on the tree before its fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from kbsearch.config import Settings
from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.integration.test_notes_graph import sync, write_kb


def _indexed(tmp_path: Path, load_search_app: Any, notes: dict[str, str]) -> Any:
    """``notes`` written to a folder, indexed (BM25 only) and served by the search handler."""
    folder = write_kb(tmp_path / "kb", notes)
    store = tmp_path / "q"
    settings = Settings(qdrant_path=str(store), qdrant_url="", embedding_api_key=None, embedding_api_key_param="")
    report = sync(settings, folder)
    assert report.skipped == [], report.skipped
    return load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(folder))


def get_note(app: Any, path: str, section: str | None = None) -> dict[str, Any]:
    qs = f"section={quote(section)}" if section else ""
    event = build_event(HttpRequest("GET", "/notes/" + quote(path), qs, [], b""), "/notes/{path+}", {"path": path},
                        "dev")  # fmt: skip
    result = app(event)
    assert result["statusCode"] == 200, result["body"]
    return json.loads(result["body"])


def search(app: Any, query: str) -> list[dict[str, Any]]:
    raw = json.dumps({"query": query, "top_k": 5, "rerank": False, "expand": False}).encode()
    event = build_event(HttpRequest("POST", "/search", "", [("Content-Type", "application/json")], raw),
                        "/search", {}, "dev")  # fmt: skip
    result = app(event)
    assert result["statusCode"] == 200, result["body"]
    hits: list[dict[str, Any]] = json.loads(result["body"])["results"]
    return hits


def outgoing(body: dict[str, Any]) -> list[str]:
    return [link["target"] for link in body["links"]["outgoing"]]


def backlinks(body: dict[str, Any]) -> list[str]:
    return [link["path"] for link in body["links"]["backlinks"]]


# -- a line that opens no code block ----------------------------------------------------------------------------------

#: Lines starting with a run of backticks whose rest holds a backtick: inline code (CommonMark 4.5: "the info
#: string may not contain backticks"; Obsidian reads them so), as a note pasted from Slack or a chat writes a
#: one-line snippet. Each is followed by a section that links to Alpha.
NOT_FENCES = {
    "slack-paste": "```kubectl get pods -n ops``` lists the pods.",
    "spaced": "``` `code` ```",
    "four": "````x```` and more",
    "indented": "   ```js foo()``` runs it",
}


@pytest.mark.parametrize("line", NOT_FENCES.values(), ids=NOT_FENCES.keys())
def test_a_line_of_inline_code_opens_no_code_block(tmp_path: Path, load_search_app: Any, line: str) -> None:
    """A line of inline code starting with three backticks was taken for a code fence never closed: the rest of
    the note was one code block, its headings no sections (a read of ``section=Rollback`` a 404, every chunk
    under the note's first heading) and its ``[[links]]`` no links (Alpha lost its backlink). A real fence
    (``~~~`` with backticks in its info string, and a fenced ``[[link]]``) still is one."""
    notes = {
        "Alpha.md": "# Alpha\n\nalpha text\n",
        "Ops.md": f"# Ops\n\n## Pods\n\n{line}\n\n## Rollback\n\nzorblax steps, see [[Alpha]].\n\n"
        "~~~ `info`\n## not a heading\n[[Fenced]]\n~~~\n",
    }
    app = _indexed(tmp_path, load_search_app, notes)
    ops = get_note(app, "Ops.md")
    assert [s["heading"] for s in ops["sections"]] == ["Ops", "Pods", "Rollback"], ops["sections"]
    assert outgoing(ops) == ["Alpha"]
    assert backlinks(get_note(app, "Alpha.md")) == ["Ops.md"]
    assert get_note(app, "Ops.md", "Rollback")["body"].startswith("## Rollback\n\nzorblax")
    hit = next(h for h in search(app, "zorblax") if h["path"] == "Ops.md")
    assert hit["heading"].endswith("Rollback"), hit["heading"]
