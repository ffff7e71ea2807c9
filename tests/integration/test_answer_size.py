"""Every answer fits what Lambda can return (a synchronous invoke answers at most 6 MB, the API's JSON escaped once
more inside the function's result): a note read by path (``GET /notes/{path}``, ``kb_get_note``, MCP
``resources/read``) is cut, and says what was cut, rather than become API Gateway's 502 or a function that runs out
of memory. The classes: a long body (a Russian note: twice over MCP), a body of control characters, a
note whose heading list grows with the square of its size, a frontmatter, outgoing links; through API Gateway events
(the suite's ``check_response`` holds every handler answer of every test to Lambda's limit)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
from kbsearch.mcp.resources import CUT_NOTICE
from kbsearch.schemas import ANSWER_BYTES
from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.conftest import LAMBDA_ANSWER_BYTES, lambda_result_bytes
from tests.integration.test_hostile_notes import mcp_event

RUSSIAN_LINE = "Настройка синхронизации хранилища между устройствами без потери заметок.\n"  # 73 letters


def _note_app(load_search_app: Any, tmp_path: Path, notes: dict[str, str], max_bytes: int) -> Any:
    kb = tmp_path / "kb"
    for name, text in notes.items():
        (kb / name).parent.mkdir(parents=True, exist_ok=True)
        (kb / name).write_text(text, encoding="utf-8")
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="", max_note_bytes=max_bytes)  # fmt: skip
    report = run_sync(settings, Secrets(settings), source_uri=str(kb))
    assert report.error is None and not report.skipped, report
    return load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb), MAX_NOTE_BYTES=str(max_bytes))


def _get(app: Any, path: str, section: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    query = f"section={section}" if section else ""
    event = build_event(HttpRequest("GET", f"/notes/{path}", query, [], b""), "/notes/{path+}", {"path": path}, "dev")
    if section:
        event["queryStringParameters"] = {"section": section}
    result = app(event)
    return result, json.loads(result["body"])


def _mcp(app: Any, message: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    event = mcp_event("kb_get_note", {})
    event["body"] = json.dumps({"jsonrpc": "2.0", "id": 1, **message})
    result = app(event)
    return result, json.loads(result["body"])


def _size(result: dict[str, Any]) -> int:
    return lambda_result_bytes(result)


def test_a_long_russian_note_is_cut_at_a_line_to_fit_every_answer(load_search_app: Any, tmp_path: Path) -> None:
    """A 3.9 MB Russian note (MAX_NOTE_BYTES raised to 4 MiB): its JSON was ~13 MB in the function's result while
    answers were ASCII-escaped; in UTF-8 (the answers, and the python3.13 runtime's result) ~4 MB, answered whole by
    `GET /notes`. Over MCP its answer holds the note twice (~8 MB): cut at a line, and says so."""
    body = "# Синхронизация\n\n" + RUSSIAN_LINE * 27_000 + "\n## Последний раздел\n\nконец\n"
    app = _note_app(load_search_app, tmp_path, {"big.md": body}, 4 * 1024 * 1024)

    result, note = _get(app, "big.md")
    assert result["statusCode"] == 200 and note["truncated"] == [] and note["body"] == body, note["truncated"]
    assert _size(result) <= LAMBDA_ANSWER_BYTES
    assert [s["heading"] for s in note["sections"]] == ["Синхронизация", "Последний раздел"]
    result, part = _get(app, "big.md", "Последний раздел")
    assert result["statusCode"] == 200 and part["body"] == "## Последний раздел\n\nконец" and part["truncated"] == []

    result, answer = _mcp(app, {"method": "tools/call", "params": {"name": "kb_get_note",
                                                                 "arguments": {"path": "big.md"}}})  # fmt: skip
    assert result["statusCode"] == 200 and _size(result) <= LAMBDA_ANSWER_BYTES, _size(result)
    structured = answer["result"]["structuredContent"]
    assert structured["truncated"] == ["body"] and body.startswith(structured["body"])
    assert structured["body"].endswith("заметок.") and len(structured["body"]) > 500_000
    assert structured["body"] in answer["result"]["content"][0]["text"]

    result, answer = _mcp(app, {"method": "resources/read", "params": {"uri": "kb://note/big.md"}})
    assert result["statusCode"] == 200 and _size(result) <= LAMBDA_ANSWER_BYTES, _size(result)
    text = answer["result"]["contents"][0]["text"]
    assert text == body and CUT_NOTICE not in text  # once, ~4 MB: whole (it was cut while counted ASCII-escaped)


def test_a_note_of_control_characters_is_cut_by_what_its_json_takes(load_search_app: Any, tmp_path: Path) -> None:
    """U+0001 is one byte in the note and six in its JSON (``\\u0001``), seven in the function's result."""
    body = "# Control\n\n" + ("\x01" * 99 + "\n") * 9_000
    app = _note_app(load_search_app, tmp_path, {"ctl.md": body}, 1024 * 1024)
    result, note = _get(app, "ctl.md")
    assert result["statusCode"] == 200 and note["truncated"] == ["body"] and _size(result) <= LAMBDA_ANSWER_BYTES
    assert body.startswith(note["body"]) and note["body"].endswith("\x01")


def test_headings_under_a_huge_heading_are_listed_within_a_bound(load_search_app: Any, tmp_path: Path) -> None:
    """Each listed section names the headings above it: 20,000 under one of 100,000 characters was a 2 GB answer
    (70 s, and past any Lambda's memory) for a 300 KB note. Headings are listed as the indexer cuts them (1,000
    characters), and as many as 256 KiB of the answer holds."""
    body = "# " + "H" * 100_000 + "\n\n" + "".join(f"## s{i}\nx\n" for i in range(20_000))
    app = _note_app(load_search_app, tmp_path, {"heads.md": body}, 1024 * 1024)
    result, note = _get(app, "heads.md")
    assert result["statusCode"] == 200 and note["truncated"] == ["sections"] and _size(result) <= LAMBDA_ANSWER_BYTES
    assert note["body"] == body and note["title"] == "H" * 999 + "…"
    sections = note["sections"]
    assert 100 < len(sections) < 20_000 and sections[1]["path"] == ["H" * 999 + "…", "s0"]
    assert all(s["heading"] == f"s{i - 1}" for i, s in enumerate(sections) if i)  # the first ones, in order
    result, part = _get(app, "heads.md", "s19999")  # an unlisted section is still read by its heading
    assert result["statusCode"] == 200 and part["body"] == "## s19999\nx"


@pytest.mark.parametrize("part", ["frontmatter", "links"])
def test_a_huge_frontmatter_or_link_list_is_cut_and_named(load_search_app: Any, tmp_path: Path, part: str) -> None:
    """A frontmatter of 45,000 emoji (within the parser's 65,536 characters) was left out while an emoji counted 12
    bytes (ASCII-escaped twice); in UTF-8 it is 4 (~180 KB, within FRONTMATTER_BYTES): answered whole. 1,000 links
    of 190 Russian letters (~0.8 MB) are listed as far as 256 KiB holds; the body, and what fits, are answered."""
    if part == "frontmatter":
        text = "---\ntitle: Большая\ndescription: >-\n" + ("  " + "😀" * 99 + "\n") * 450 + "---\n# Большая\n\nтекст\n"
    else:
        text = "# Ссылки\n\n" + "".join(f"[[{'ж' * 190}{i}]]\n" for i in range(1_000))
    app = _note_app(load_search_app, tmp_path, {"n.md": text}, 1024 * 1024)
    result, note = _get(app, "n.md")
    cut = [] if part == "frontmatter" else [part]
    assert result["statusCode"] == 200 and note["truncated"] == cut and _size(result) <= LAMBDA_ANSWER_BYTES
    if part == "frontmatter":
        assert note["frontmatter"]["description"] == " ".join(["😀" * 99] * 450)  # folded (>-)
        assert note["title"] == "Большая" and note["body"] == "# Большая\n\nтекст\n"
    else:
        outgoing = note["links"]["outgoing"]
        assert 10 < len(outgoing) < 1_000 and [r["target"] for r in outgoing] == [
            f"{'ж' * 190}{i}" for i in range(len(outgoing))
        ]
        assert note["body"] == text


@pytest.mark.parametrize("count", [1_000, 1_500])
def test_a_note_with_more_links_than_are_kept_says_its_link_list_is_cut(
    load_search_app: Any, tmp_path: Path, count: int
) -> None:
    """A note names more distinct links than the first 1,000 kept (``MAX_LINKS``): its outgoing list, small enough
    to fit the answer, was answered as the whole list with ``truncated: []`` (backlinks and headings say so). Exactly
    1,000 is the whole list; a link repeated past the 1,000th is not another."""
    text = "# Many\n\n" + "".join(f"[[n{i}]]\n" for i in range(count)) + "[[n0]] again\n"
    app = _note_app(load_search_app, tmp_path, {"many.md": text}, 1024 * 1024)
    result, note = _get(app, "many.md")
    assert result["statusCode"] == 200 and _size(result) <= LAMBDA_ANSWER_BYTES
    assert [r["target"] for r in note["links"]["outgoing"]] == [f"n{i}" for i in range(1_000)]
    assert note["truncated"] == ([] if count == 1_000 else ["links"]), note["truncated"]
    assert note["body"] == text


def test_an_ordinary_note_is_answered_whole_with_nothing_cut(load_search_app: Any, tmp_path: Path) -> None:
    text = "---\ntitle: Обычная\ntags: [a]\n---\n# Обычная\n\n" + RUSSIAN_LINE * 100 + "\n## Раздел\n\n[[Другая]]\n"
    app = _note_app(load_search_app, tmp_path, {"n.md": text}, 1024 * 1024)
    result, note = _get(app, "n.md")
    assert result["statusCode"] == 200 and note["truncated"] == [] and note["frontmatter"]["tags"] == ["a"]
    assert note["body"] == text.split("---\n", 2)[2] and len(note["sections"]) == 2
    assert [r["target"] for r in note["links"]["outgoing"]] == ["Другая"]
    assert ANSWER_BYTES < LAMBDA_ANSWER_BYTES


def test_twenty_hits_with_the_longest_tags_and_links_fit_every_answer(load_search_app: Any, tmp_path: Path) -> None:
    """The indexer keeps 100 tags and 100 links of up to 200 characters a note: 20 hits of them in Russian were ~10 MB
    as the function's result (MCP's kb_search shows the tags twice). Each list a hit shows is cut to 16 KiB of the
    answer, in order; a note's ordinary tags and links are shown whole (the ordinary note among the hits)."""

    def note(i: int) -> str:
        tags = "\n".join(f"  - {'т' * 196}{i:02d}{j:02d}" for j in range(100))
        links = "".join(f"[[{'ж' * 196}{j:02d}]]\n" for j in range(100))
        return f"---\ntitle: Заметка {i}\ntags:\n{tags}\n---\n# Заметка {i}\n\nобщий раздел\n\n{links}"

    notes = {f"n{i:02d}.md": note(i) for i in range(20)}
    notes["plain.md"] = "---\ntags: [a, b]\n---\n# Plain\n\nобщий [[Other]] [[Third]]\n"
    app = _note_app(load_search_app, tmp_path, notes, 1024 * 1024)
    event = build_event(HttpRequest("POST", "/search", "", [("Content-Type", "application/json")],
                                    json.dumps({"query": "общий", "top_k": 20}).encode()), "/search", {}, "dev")  # fmt: skip
    result = app(event)
    hits = json.loads(result["body"])["results"]
    assert result["statusCode"] == 200 and len(hits) == 20 and _size(result) <= LAMBDA_ANSWER_BYTES, _size(result)
    for hit in hits:
        if hit["path"] == "plain.md":
            assert hit["tags"] == ["a", "b"] and hit["links"] == ["Other", "Third"]
            continue
        i = int(hit["path"][1:3])
        assert 5 <= len(hit["tags"]) < 100 and hit["tags"] == [
            f"{'т' * 196}{i:02d}{j:02d}" for j in range(len(hit["tags"]))
        ]
        assert 5 <= len(hit["links"]) < 100 and hit["links"] == [
            f"{'ж' * 196}{j:02d}" for j in range(len(hit["links"]))
        ]
    result, answer = _mcp(app, {"method": "tools/call", "params": {"name": "kb_search",
                                                                 "arguments": {"query": "общий", "top_k": 20}}})  # fmt: skip
    assert result["statusCode"] == 200 and _size(result) <= LAMBDA_ANSWER_BYTES, _size(result)
    assert len(answer["result"]["structuredContent"]["results"]) == 20


def test_a_section_under_a_huge_heading_and_its_404_fit_the_answer(load_search_app: Any, tmp_path: Path) -> None:
    """A section read under a heading of 1.5 million Russian letters (3 MB of the note, 10.5 MB as the function's
    result carries it): ``section`` named the headings above it uncut (a 10.5 MB answer, its body cut to nothing
    to make room in vain), and a section not in the note was a 404 listing up to 40 heading paths uncut (21 MB).
    They are named as the indexer cuts a heading (1,000 characters), as ``sections`` already lists them."""
    huge = "ж" * 1_500_000
    text = f"# {huge}\n\n## Шаги\n\nтекст шага\n"
    app = _note_app(load_search_app, tmp_path, {"deep.md": text}, 4 * 1024 * 1024)
    cut = "ж" * 999 + "…"
    result, note = _get(app, "deep.md", "Шаги")
    assert _size(result) <= LAMBDA_ANSWER_BYTES, _size(result)
    assert result["statusCode"] == 200 and note["section"] == [cut, "Шаги"] and note["truncated"] == []
    assert note["body"] == "## Шаги\n\nтекст шага"
    result, problem = _get(app, "deep.md", "Нет такого")
    assert _size(result) <= LAMBDA_ANSWER_BYTES, _size(result)
    assert result["statusCode"] == 404 and f"{cut} > Шаги" in json.dumps(problem, ensure_ascii=False)

    mcp = {"name": "kb_get_note", "arguments": {"path": "deep.md", "section": "Шаги"}}
    result, answer = _mcp(app, {"method": "tools/call", "params": mcp})
    assert result["statusCode"] == 200 and _size(result) <= LAMBDA_ANSWER_BYTES, _size(result)
    assert answer["result"]["structuredContent"]["section"] == [cut, "Шаги"]
