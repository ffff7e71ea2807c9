"""Round 24a, the adversarial pass on the request surface: a folder or a note path as a reader copies or types it
(full width, the characters no reader sees, spaces around a segment), on every surface that takes one. Through the
search handler with API Gateway events (REST and ``/mcp``) over sample-kb's embedded store."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.integration.test_hostile_input import call_tool, handler, request, searched_paths

__all__ = ["handler"]  # the fixture, shared with test_hostile_input

#: ``en/runbooks`` as a reader types or pastes it: an input method left in full width (the slash too), a zero-width
#: space or a soft hyphen copied with the name, a bidi mark a right-to-left editor adds, an embedding pair around it,
#: a word joiner, a byte-order mark, a space before a slash.
FOLDERS = {
    "full width": "ｅｎ／ｒｕｎｂｏｏｋｓ",
    "full-width letters": "ｅｎ/runbooks",
    "a zero-width space after it": "en/runbooks\u200b",
    "a soft hyphen inside": "en/run\u00adbooks",
    "a left-to-right mark before it": "\u200een/runbooks",
    "an embedding around it": "\u202aen/runbooks\u202c",
    "a word joiner": "en\u2060/runbooks",
    "a byte-order mark": "\ufeffen/runbooks",
    "a space before the slash": "en /runbooks",
}


def _folder_notes(call: Any, prefix: str) -> dict[str, list[str]]:
    """What each surface answers for ``path_prefix``: the search's hits (POST, GET, kb_search), and the notes the
    catalog counts (GET /notes, kb_list)."""
    out = {surface: searched_paths(call, prefix, surface) for surface in ("post", "get", "mcp")}
    listed = call(request("GET", "/notes", query=urlencode({"path_prefix": prefix, "recent": 50}), content_type=None))
    assert listed["statusCode"] == 200, listed["body"]
    out["GET /notes"] = sorted(n["path"] for n in json.loads(listed["body"])["recent"])
    tool = call_tool(call, "kb_list", {"path_prefix": prefix, "recent": 50})
    assert tool["isError"] is False, tool
    out["kb_list"] = sorted(n["path"] for n in tool["structuredContent"]["recent"])
    return out


@pytest.mark.parametrize("spelling", FOLDERS.values(), ids=FOLDERS.keys())
def test_a_folder_as_a_reader_types_it_filters_that_folder_on_every_surface(handler, spelling: str) -> None:
    """A ``path_prefix`` naming ``en/runbooks`` as its reader sees it, spelt with full-width forms or holding a
    character no reader sees: every surface answered 200 with no hits and no notes (the filter matched the
    characters, and no folder holds them), which the caller took for an empty folder. Tags were already read so
    (a zero-width space in a tag is no part of it); a folder is read the same way now, beside its spelling as
    given (a folder whose name does hold such a character is still found by it)."""
    call = handler()
    plain = _folder_notes(call, "en/runbooks")
    assert all(plain.values()) and all(p.startswith("en/runbooks/") for paths in plain.values() for p in paths), plain
    assert _folder_notes(call, spelling) == plain


@pytest.mark.parametrize("spelling", ["．．", "ｅｎ/．．/ru", "\u200b..\u200b"])
def test_a_folder_a_reader_reads_as_climbing_out_is_never_searched_as_one(handler, spelling: str) -> None:
    """Full-width dots (``．．``) are a folder of that name as written (no note is in it: no hits); folded, they would
    be ``..``, which is never searched: the folded spelling is dropped, the filter is not widened to the KB's root."""
    call = handler()
    raw = json.dumps({"query": "qdrant", "filters": {"path_prefix": spelling}}).encode()
    result = call(request("POST", "/search", raw))
    assert result["statusCode"] in (200, 422), result["body"]
    if result["statusCode"] == 200:
        assert json.loads(result["body"])["results"] == [], result["body"]


#: ``en/Glossary.md`` as a reader copies it: from a rendered page (a zero-width space, a soft hyphen, a bidi mark),
#: typed in full width, with the space a selection takes after it, a byte-order mark from a file's first line.
NOTE_PATHS = {
    "a zero-width space after it": "en/Glossary.md\u200b",
    "a soft hyphen inside": "en/Glos\u00adsary.md",
    "a right-to-left mark before it": "\u200fen/Glossary.md",
    "full-width letters": "ｅｎ/Glossary.md",
    "a full-width dot": "en/Glossary．md",
    "a byte-order mark": "\ufeffen/Glossary.md",
    "a trailing space": "en/Glossary.md ",
    "a zero-width joiner in the folder": "e\u200dn/Glossary.md",
}


def _read_everywhere(call: Any, path: str) -> dict[str, Any]:
    """The note ``path`` names, through ``GET /notes/{path}``, ``kb_get_note`` and ``resources/read``: the path each
    answered, or its error."""
    out: dict[str, Any] = {}
    result = call(request("GET", "/notes/" + quote(path), content_type=None))
    body = json.loads(result["body"])
    out["rest"] = body.get("path") if result["statusCode"] == 200 else (result["statusCode"], body.get("message"))
    tool = call_tool(call, "kb_get_note", {"path": path})
    out["kb_get_note"] = tool["structuredContent"]["path"] if not tool["isError"] else tool["content"][0]["text"]
    raw = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "resources/read",
                      "params": {"uri": "kb://note/" + quote(path)}}).encode()  # fmt: skip
    answer = json.loads(call(request("POST", "/mcp", raw))["body"])
    out["resources/read"] = answer["result"]["contents"][0]["uri"] if "result" in answer else answer["error"]
    return out


@pytest.mark.parametrize("spelling", NOTE_PATHS.values(), ids=NOTE_PATHS.keys())
def test_a_note_path_as_a_reader_copies_it_reads_that_note_on_every_surface(handler, spelling: str) -> None:
    """A note's path as its reader sees it, holding a character no reader sees or spelt in full width: a 404 "no
    note at" a path that looks like the note's, or, when the noise came after ``.md``, a 400 suggesting the path
    with ``.md`` added once more (``did you mean 'en/Glossary.md\\u200b.md'?``); a trailing space was a 400 on REST
    and the note on ``kb_get_note`` (which strips it). The note is read by its path as given when there is one, and
    otherwise by the path a reader sees in it, on every surface."""
    call = handler()
    got = _read_everywhere(call, spelling)
    assert got == {"rest": "en/Glossary.md", "kb_get_note": "en/Glossary.md",
                   "resources/read": "kb://note/en/Glossary.md"}, got  # fmt: skip


def test_a_note_path_that_is_no_note_however_read_names_the_path_given(handler) -> None:
    """A path that is no note as given nor as read: the 404 names it as given, never a path the caller did not send
    (and never a suggestion of ``.md`` after ``.md``)."""
    call = handler()
    got = _read_everywhere(call, "en/Nothing\u200b.md")
    assert got["rest"][0] == 404 and "Nothing\\u200b.md" in got["rest"][1], got
    bad = _read_everywhere(call, "en/Nothing.md\u200b")
    assert all(".md.md" not in json.dumps(v) and "md\\\\u200b.md" not in json.dumps(v) for v in bad.values()), bad
