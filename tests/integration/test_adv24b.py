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


# -- a heading underlined (setext) ------------------------------------------------------------------------------------


def test_a_heading_underlined_with_equals_or_dashes_is_a_section(tmp_path: Path, load_search_app: Any) -> None:
    """A heading written as a line underlined by ``===`` (H1) or ``---`` (H2), as Markdown has allowed since its
    first version and Obsidian shows in its outline, was prose: the note's title was its file name, a read of
    ``section=Rollback`` a 404 (``no_section``), every chunk under no heading. A rule after a list item, a rule
    after a blank line and ``***`` stay rules."""
    notes = {
        "Alpha.md": "# Alpha\n\nalpha text\n",
        "ops/runbook.md": "Restore runbook\n===============\n\nintro words\n\nRollback\n--------\n\n"
        "zorblax steps, see [[Alpha]]\n\n- an item\n---\n\nafter a rule\n\n---\n\nanother rule\n***\n\nend\n",
    }
    app = _indexed(tmp_path, load_search_app, notes)
    note = get_note(app, "ops/runbook.md")
    assert note["title"] == "Restore runbook"
    assert [s["path"] for s in note["sections"]] == [["Restore runbook"], ["Restore runbook", "Rollback"]]
    assert outgoing(note) == ["Alpha"]
    body = get_note(app, "ops/runbook.md", "Rollback")["body"]
    assert body.startswith("Rollback\n--------\n\nzorblax") and body.rstrip().endswith("end"), body
    hit = next(h for h in search(app, "zorblax") if h["path"] == "ops/runbook.md")
    assert hit["title"] == "Restore runbook" and hit["heading"].endswith("Rollback"), hit


# -- a link written as a Markdown link --------------------------------------------------------------------------------


def test_markdown_links_to_notes_are_links_of_the_graph(tmp_path: Path, load_search_app: Any) -> None:
    """Obsidian writes a link as ``[text](Note.md)`` when "Use [[Wikilinks]]" is off (paths percent-encoded, by
    name, from the vault's root or relative to the note: its three settings), and its graph and backlinks count
    them. They were no links: a KB written so had no backlinks at all, its notes' outgoing links empty. URLs,
    attachments, code spans, fenced code and a path out of the KB stay no links."""
    notes = {
        "Alpha.md": "# Alpha\n\nalpha text\n",
        "ops/Beta.md": "# Beta\n\nbeta text\n",
        "ops/Gamma.md": "# Gamma\n\n## Setup\n\nsteps\n",
        "ops/Delta.md": "# Delta\n\ndelta text\n",
        "Three laws of motion.md": "# Laws\n\nNewton\n",
        "notes/Links.md": "# Links\n\nBy name [the alpha note](Alpha.md), from the root [beta](ops/Beta.md), "
        "encoded [laws](Three%20laws%20of%20motion.md), relative [setup](../ops/Gamma.md#Setup) and "
        '[again](<../Three laws of motion.md>), without its extension [delta](ops/Delta "Delta").\n\n'
        "Not notes: [site](https://example.com/Alpha.md), ![pic](diagram.png), [mail](mailto:a@b.md), "
        "`[code](ops/Beta.md)`, [out](../../Outside.md), [web](//example.com/x.md), [page](index.html), "
        "[here](#Heading).\n\n"
        "```\n[fenced](ops/Gamma.md)\n```\n",
    }
    app = _indexed(tmp_path, load_search_app, notes)
    links = get_note(app, "notes/Links.md")["links"]["outgoing"]
    # the relative `../Three laws of motion.md` is a link from the root (adv38: `/Three laws of motion`), another
    # link than the one by name, to the same note (as `[[Gamma]]` and `[[ops/Gamma]]` are two links)
    assert [link["path"] for link in links] == [
        "Alpha.md", "ops/Beta.md", "Three laws of motion.md", "ops/Gamma.md", "Three laws of motion.md",
        "ops/Delta.md"]  # fmt: skip
    for path in ("Alpha.md", "ops/Beta.md", "ops/Gamma.md", "Three laws of motion.md", "ops/Delta.md"):
        assert backlinks(get_note(app, path)) == ["notes/Links.md"], path


# -- a heading indented by up to three spaces -------------------------------------------------------------------------


def test_a_heading_indented_by_up_to_three_spaces_is_a_section(tmp_path: Path, load_search_app: Any) -> None:
    """``   ## Rollback`` (one to three spaces before the ``#``: a note pasted from an indented list or a web page)
    is a heading to CommonMark, to Obsidian and to kb-search's own Slack rendering; the indexer and a read by path
    took it for prose (no section ``Rollback``: a 404; the chunks under the heading above it). Four spaces make
    indented code, no heading."""
    notes = {
        "ops.md": "# Ops\n\nintro\n\n   ## Rollback\n\nzorblax steps\n\n  ### Details\n\nfine print\n\n"
        "    ## not a heading\n\nend\n",
    }
    app = _indexed(tmp_path, load_search_app, notes)
    note = get_note(app, "ops.md")
    assert [s["path"] for s in note["sections"]] == [["Ops"], ["Ops", "Rollback"], ["Ops", "Rollback", "Details"]]
    assert get_note(app, "ops.md", "Rollback")["body"].startswith("   ## Rollback\n\nzorblax")
    hit = next(h for h in search(app, "zorblax") if h["path"] == "ops.md")
    assert hit["heading"] == "Ops > Rollback", hit["heading"]


# -- a note in UTF-16 or UTF-32 without a byte-order mark -------------------------------------------------------------

#: A note as written, saved without a byte-order mark (PowerShell's ``Out-File -Encoding unicode`` writes one; .NET's
#: ``UnicodeEncoding(false, false)``, ``iconv -t UTF-16LE`` and many export tools do not), English and Russian.
NOTE_TEXT = "---\ntitle: Заметка\n---\n# Заметка\n\nRestore the snapshot, then восстановить индекс.\n"
NO_BOM = {
    "le16.md": (NOTE_TEXT.encode("utf-16-le"), "UTF-16 text without a byte-order mark, not UTF-8"),
    "be16.md": (NOTE_TEXT.encode("utf-16-be"), "UTF-16 text without a byte-order mark, not UTF-8"),
    "le32.md": (NOTE_TEXT.encode("utf-32-le"), "UTF-32 text without a byte-order mark, not UTF-8"),
    "be32.md": (NOTE_TEXT.encode("utf-32-be"), "UTF-32 text without a byte-order mark, not UTF-8"),
    "binary.md": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)), "binary content"),
    "nul.md": (b"# Binary\n\x00\x01\x02", "binary content (NUL bytes)"),
}


def test_a_note_in_utf16_or_utf32_without_a_byte_order_mark_is_skipped_naming_its_encoding(tmp_path: Path) -> None:
    """A note in UTF-16 or UTF-32 without a byte-order mark was skipped as ``binary content (NUL bytes)``: its
    author, looking at a text file any editor opens, was told it is binary. The reason names the encoding now and
    how to mend it, as it did for those with a mark; binary bytes stay binary content; the rest is indexed."""
    from tests.integration.test_hostile_notes import kbsearch_index

    kb = tmp_path / "kb"
    kb.mkdir()
    for name, (raw, _) in NO_BOM.items():
        (kb / name).write_bytes(raw)
    (kb / "ok.md").write_text(NOTE_TEXT, encoding="utf-8")
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and report["added"] == 1, stderr
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == set(NO_BOM), skipped
    for name, (_, reason) in NO_BOM.items():
        assert skipped[name].startswith(reason), (name, skipped[name])
    assert "(save the note as UTF-8)" in skipped["le16.md"]


# -- a heading inside an HTML comment ---------------------------------------------------------------------------------


def test_a_heading_inside_an_html_comment_is_no_section(tmp_path: Path, load_search_app: Any) -> None:
    """A section commented out (``<!--`` up to the line holding ``-->``: CommonMark's HTML block, shown by no
    reader) held headings the indexer took for sections: the text after the comment was filed under the hidden
    heading (a hit for the live install steps was headed ``Deprecated steps``), and a read of ``section=Install``
    stopped at the hidden heading, without those steps. A one-line comment ends where it is."""
    notes = {
        "guide.md": "# Guide\n\n## Install\n\n<!--\n## Deprecated steps\n\nold zephyr way\n-->\n\n"
        "Run quokka install.\n\n<!-- one line -->\n## Usage\n\nuse it\n",
    }
    app = _indexed(tmp_path, load_search_app, notes)
    note = get_note(app, "guide.md")
    assert [s["path"] for s in note["sections"]] == [["Guide"], ["Guide", "Install"], ["Guide", "Usage"]]
    assert "Run quokka install." in get_note(app, "guide.md", "Install")["body"]
    hit = next(h for h in search(app, "quokka install") if h["path"] == "guide.md")
    assert hit["heading"] == "Guide > Install", hit["heading"]
