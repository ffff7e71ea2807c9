"""Round 39's adversarial pass (adv39): input nobody had tested, through the real interfaces (RELIABILITY.md,
"Round 39: the adversarial pass (adv39)")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.test_access_links import note_links
from tests.integration.test_adv37 import synced_kb

#: A note linking folders every way a writer does: a wiki-link to a folder (`[[ops/]]`, from the root `[[/ops/]]`,
#: with a heading or an alias), and Markdown links to a folder's index page as a wiki exported from Git or MkDocs
#: writes them (`[Runbooks](runbooks/)`, `[Deep](a/b/)`), a folder as a path's last part (`[here](ops/.)`,
#: `[[a/b/..]]`), beside one link to a note (`[[ops/Pager]]`) that stays.
FOLDER_LINKS = {
    "pub/Welcome.md": (
        "# Welcome\n\nThe teams: [[ops/]], [[/ops/|operations]], [[ops/#On call]].\n\n"
        "Start with [Runbooks](runbooks/) and [Deep](a/b/), then [[ops/Pager]].\n\n"
        "The same folders as a path's last part: [here](ops/.), [[ops/.]], [[a/b/..]].\n"
    ),
    "ops/Pager.md": "# Pager\n\nwho is on call\n",
    "Ops.md": "# Ops\n\nthe root note named ops\n",
    "teams/Runbooks.md": "# Runbooks\n\na note named runbooks in another folder\n",
    "a/b.md": "# B\n\nthe note at a/b\n",
}


def test_a_link_to_a_folder_links_no_note_named_as_the_folder(tmp_path: Path, load_search_app: Any) -> None:
    """`[[ops/]]` and `[Runbooks](runbooks/)` name a folder (its index page, in a wiki exported from Git or MkDocs),
    which Obsidian leaves unresolved; rev37d made `[[./]]` and `[[../]]` no link, but a folder named otherwise was
    read as the note of its name: `ops` resolved to `Ops.md`, `runbooks` to `teams/Runbooks.md`, `a/b` to `a/b.md`
    (outgoing links the writer never wrote, backlinks on notes never linked; `[here](ops/.)` and `[[ops/.]]` too). A
    link whose path's last part is empty, `.` or `..` is none; the link to `ops/Pager` stays."""
    settings, report = synced_kb(tmp_path, FOLDER_LINKS)
    assert report.error is None, report.error
    welcome = note_links(load_search_app, settings, None, "pub/Welcome.md")
    assert [(r["target"], r["path"]) for r in welcome["outgoing"]] == [("ops/Pager", "ops/Pager.md")]
    for path in ("Ops.md", "teams/Runbooks.md", "a/b.md"):
        assert note_links(load_search_app, settings, None, path)["backlinks"] == [], path
    assert [r["path"] for r in note_links(load_search_app, settings, None, "ops/Pager.md")["backlinks"]] == [
        "pub/Welcome.md"
    ]
    assert report.dangling_links == 0, report.dangling
