"""Round 31, the adversarial pass (adv31): what one answer gives, handed back to the next call. Through the search
handler's API Gateway events on the embedded store (``POST /search``, ``GET /notes/{path}``, ``POST /mcp``). Each
test fails on main's code where it claims a fix (run with ``PYTHONPATH`` on main's layer and tools)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.integration.test_adv24b import search
from tests.integration.test_adv25 import _served as served
from tests.integration.test_hostile_notes import mcp_event

# A vault as Obsidian writes one: the note's name is its title, no H1 repeats it (the Obsidian help vault's notes are
# all so); a note whose frontmatter title is not its H1; and one whose H1 is its title (sample-kb's way, which
# worked).
NOTES = {
    "en/Bases syntax.md": "Intro to the syntax.\n\n## Types\n\nquokka types are checked.\n\n## Views\n\n"
                          "### Filters\n\nwombat filters narrow a view.\n",
    "ops/restore.md": "---\ntitle: Restoring a snapshot\n---\n# Snapshot restore\n\n## Steps\n\n"
                      "numbat steps come first.\n",
    "ops/Qdrant Cloud.md": "# Qdrant Cloud\n\n## Snapshots\n\nbilby snapshots nightly.\n",
}  # fmt: skip


def _served(tmp_path: Path, load_search_app: Any) -> Any:
    return served(tmp_path, load_search_app, NOTES)[0]


def _section_read(app: Any, path: str, section: str) -> dict[str, Any]:
    event = build_event(HttpRequest("GET", "/notes/" + quote(path), f"section={quote(section)}", [], b""),
                        "/notes/{path+}", {"path": path}, "dev")  # fmt: skip
    result = app(event)
    return {"status": result["statusCode"], **json.loads(result["body"])}


def _tool_read(app: Any, path: str, section: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(app(mcp_event("kb_get_note", {"path": path, "section": section}))["body"])
    return result["result"]


def test_the_heading_a_hit_shows_names_its_section_to_a_read_by_path(tmp_path: Path, load_search_app: Any) -> None:
    """A hit's ``heading`` is its note's title, then the section's heading path (``Bases syntax > Types``); the
    section a read by path takes is named by a heading or a tail of its heading path, which holds the title only
    when an H1 repeats it. So in a vault whose titles are the notes' names (Obsidian's way: 2,805 of the 2,813
    section headings hits carry over the Obsidian help vault), and in a note whose frontmatter title is not its
    H1, the heading kb_search gave, handed to ``kb_get_note(path, section)`` or ``GET /notes/{path}?section=``,
    was refused: ``no section 'Bases syntax > Types'``. It names its section now; a hit of the note's head (the
    title alone) names the whole note; a heading that is no section of the note is still refused."""
    app = _served(tmp_path, load_search_app)
    cases = [("quokka", "en/Bases syntax.md", "Bases syntax > Types", "quokka types"),
             ("wombat", "en/Bases syntax.md", "Bases syntax > Views > Filters", "wombat filters"),
             ("numbat", "ops/restore.md", "Restoring a snapshot > Snapshot restore > Steps", "numbat steps"),
             ("bilby", "ops/Qdrant Cloud.md", "Qdrant Cloud > Snapshots", "bilby snapshots")]  # fmt: skip
    for query, path, heading, words in cases:
        hit = next(h for h in search(app, query) if h["path"] == path)
        assert hit["heading"] == heading, hit
        read = _section_read(app, path, hit["heading"])
        assert read["status"] == 200 and words in read["body"] and read["section"][-1] == heading.split(" > ")[-1], (heading, read)  # fmt: skip
        tool = _tool_read(app, path, hit["heading"])
        assert not tool.get("isError") and words in tool["structuredContent"]["body"], (heading, tool)
    # the note's head: its title alone names the whole note, as an H1 repeating the title does
    whole = _section_read(app, "en/Bases syntax.md", "bases SYNTAX")
    assert whole["status"] == 200 and "quokka" in whole["body"] and "wombat" in whole["body"], whole
    # still refused: a heading the note does not hold, the title before one it does not hold, another note's title
    for wanted in ("Bases syntax > Steps", "Restoring a snapshot > Types", "Qdrant Cloud > Types"):
        refused = _section_read(app, "en/Bases syntax.md", wanted)
        assert refused["status"] == 404 and refused["error"] == "no_section", (wanted, refused)


def _path_read(app: Any, path: str) -> dict[str, Any]:
    # API Gateway REST passes the path parameter percent-encoded, as the request line holds it
    event = build_event(HttpRequest("GET", "/notes/" + quote(path), "", [], b""), "/notes/{path+}",
                        {"path": quote(path)}, "dev")  # fmt: skip
    result = app(event)
    return {"status": result["statusCode"], **json.loads(result["body"])}


def test_a_link_as_a_notes_text_writes_it_handed_to_a_read_names_the_note_meant(
    tmp_path: Path, load_search_app: Any
) -> None:
    """A note read by path shows its markdown, links as written: ``[[Bases syntax#Types|the types]]``. An assistant
    handing such a link (or its ``Note#Heading`` part) to ``kb_get_note`` was told ``no note is named 'Bases
    syntax#Types'``, though round 25 made ``Bases syntax`` name its note. The note part of a link is read as
    ``[[...]]`` reads it: the 400 names the note meant, and the section, as for any name; a link to no note, and
    an attachment, still name none."""
    app = _served(tmp_path, load_search_app)
    meant = {"Bases syntax#Types": "did you mean 'en/Bases syntax.md' with section 'Types'?",
             "[[Bases syntax#Types|the types]]": "did you mean 'en/Bases syntax.md' with section 'Types'?",
             "Bases syntax | the syntax": "did you mean 'en/Bases syntax.md'?",
             "![[Bases syntax]]": "did you mean 'en/Bases syntax.md'?",
             "restore#Steps": "did you mean 'ops/restore.md' with section 'Steps'?",
             "Bases syntax#^block-1": "did you mean 'en/Bases syntax.md'?"}  # fmt: skip
    for name, words in meant.items():
        read = _path_read(app, name)
        assert read["status"] == 400 and words in read["message"], (name, read)
        tool = json.loads(app(mcp_event("kb_get_note", {"path": name}))["body"])["result"]
        assert tool["isError"] and words in tool["content"][0]["text"], (name, tool)
    for name in ("Nowhere#Types", "[[Nowhere]]", "[[image.png]]"):
        read = _path_read(app, name)
        assert read["status"] == 400 and "did you mean" not in read["message"], (name, read)


def test_a_markdown_links_target_handed_to_a_read_names_the_note_meant(tmp_path: Path, load_search_app: Any) -> None:
    """A Markdown link's target as a note's text writes it: percent-escaped (``Three%20laws%20of%20motion.md``: 30
    such links in the Obsidian help vault) or relative to the linking note (``../ops/Qdrant%20Cloud.md``). Handed
    to a read as a path it was ``no note at 'ops/Qdrant%20Cloud.md'`` or a bare ``'..' segment`` 400, naming
    nothing. The 404 and the 400 now name the note the target means, read as a link reads it (its escapes
    decoded, its climb and fragment left out, then named as ``[[...]]`` names it); a target naming no note, or a
    climb to a file of the server, still name none."""
    app = _served(tmp_path, load_search_app)
    meant = {"ops/Qdrant%20Cloud.md": (404, "did you mean 'ops/Qdrant Cloud.md'?"),
             "Bases%20syntax.md": (404, "did you mean 'en/Bases syntax.md'?"),
             "../ops/Qdrant%20Cloud.md#Snapshots": (400, "did you mean 'ops/Qdrant Cloud.md'?"),
             "./restore.md": (400, "did you mean 'ops/restore.md'?")}  # fmt: skip
    for path, (status, words) in meant.items():
        read = _path_read(app, path)
        assert read["status"] == status and words in read["message"], (path, read)
        tool = json.loads(app(mcp_event("kb_get_note", {"path": path}))["body"])["result"]
        assert tool["isError"] and words in tool["content"][0]["text"], (path, tool)
    for path in ("Nowhere%20else.md", "../../etc/passwd", "../Nowhere.md", "ops/Qdrant Cloud.mdx"):
        read = _path_read(app, path)
        assert read["status"] in (400, 404) and "did you mean" not in read["message"], (path, read)
