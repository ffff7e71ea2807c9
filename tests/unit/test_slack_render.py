"""Slack rendering: note Markdown → mrkdwn and answers → Block Kit, validated against Slack's published limits over
every note of the Obsidian vault and classes of hostile text."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from kbsearch.chunking import chunk_note
from kbsearch.notes import parse_note
from kbsearch.schemas import Hit, HitScores, SearchMeta, SearchResponse
from kbsearch.search import snippet
from kbsearch.slack_render import (
    ACTION_DOWN,
    ACTION_MORE,
    ACTION_SHARE,
    ACTION_UP,
    AnswerState,
    View,
    inline,
    note_url,
    render_answer,
    to_mrkdwn,
    url_pattern,
)
from tests.conftest import ROOT

VAULT = ROOT.parent / "shared" / "kb" / "obsidian-help"

# Slack's published Block Kit limits (https://api.slack.com/reference/block-kit/blocks, .../block-elements).
LIMITS = {"blocks": 50, "section_text": 3000, "header_text": 150, "context_elements": 10, "actions_elements": 25,
          "button_text": 75, "action_id": 255, "block_id": 255, "value": 2000, "url": 3000, "message_text": 13_000}  # fmt: skip
_OUR_LINK = re.compile(r"<(?:https?://[^\s<>|]+|mailto:[^\s<>|]+)(?:\|[^<>|]*)?>")


def mrkdwn_problems(text: str, where: str) -> list[str]:
    """Escaping and structure of one mrkdwn text: the only ``<…>`` are links we wrote (no ``<!channel>``,
    ``<@U…>``, ``<#C…>``), every ``&`` starts an entity, fences are balanced."""
    problems = []
    if re.fullmatch(r"asked by <@[UW][A-Z0-9]+>", text):  # the one mention we write: the person who shared
        return []
    bare = _OUR_LINK.sub("", text)
    if "<" in bare or ">" in bare.replace("\n>", "\n").lstrip(">"):
        problems.append(f"{where}: unescaped < or > outside a link: {bare[:120]!r}")
    if re.search(r"&(?!amp;|lt;|gt;)", text):
        problems.append(f"{where}: an & that is not an entity")
    if text.count("```") % 2:
        problems.append(f"{where}: unbalanced code fence")
    return problems


def block_kit_problems(message: dict[str, Any]) -> list[str]:
    """Everything in ``message`` that breaks a published Block Kit limit or lets note text act as markup."""
    problems: list[str] = []
    blocks = message.get("blocks", [])
    if len(blocks) > LIMITS["blocks"]:
        problems.append(f"{len(blocks)} blocks")
    total = len(message.get("text", ""))
    problems += mrkdwn_problems(message.get("text", ""), "notification text")
    for i, block in enumerate(blocks):
        kind = block["type"]
        if len(block.get("block_id", "")) > LIMITS["block_id"]:
            problems.append(f"block {i}: block_id too long")
        if kind == "section":
            text = block["text"]["text"]
            total += len(text)
            if not 0 < len(text) <= LIMITS["section_text"]:
                problems.append(f"block {i}: section text of {len(text)} chars")
            if block["text"]["type"] == "mrkdwn":
                problems += mrkdwn_problems(text, f"block {i}")
            if "accessory" in block:
                problems += _element_problems(block["accessory"], f"block {i} accessory")
        elif kind == "header":
            text = block["text"]["text"]
            total += len(text)
            if block["text"]["type"] != "plain_text" or not 0 < len(text) <= LIMITS["header_text"]:
                problems.append(f"block {i}: header of {len(text)} chars")
        elif kind == "context":
            elements = block["elements"]
            if not 0 < len(elements) <= LIMITS["context_elements"]:
                problems.append(f"block {i}: {len(elements)} context elements")
            for element in elements:
                total += len(element["text"])
                if not 0 < len(element["text"]) <= LIMITS["section_text"]:
                    problems.append(f"block {i}: context text of {len(element['text'])} chars")
                problems += mrkdwn_problems(element["text"], f"block {i} context")
        elif kind == "actions":
            elements = block["elements"]
            if not 0 < len(elements) <= LIMITS["actions_elements"]:
                problems.append(f"block {i}: {len(elements)} actions")
            ids = [e["action_id"] for e in elements]
            if len(set(ids)) != len(ids):
                problems.append(f"block {i}: duplicate action ids")
            for element in elements:
                problems += _element_problems(element, f"block {i} action")
        elif kind != "divider":
            problems.append(f"block {i}: unexpected type {kind}")
    if total > LIMITS["message_text"]:
        problems.append(f"{total} characters of text in all")
    return problems


def _element_problems(element: dict[str, Any], where: str) -> list[str]:
    problems = []
    if element["type"] != "button":
        return [f"{where}: not a button"]
    if not 0 < len(element["text"]["text"]) <= LIMITS["button_text"]:
        problems.append(f"{where}: button text of {len(element['text']['text'])} chars")
    if not 0 < len(element["action_id"]) <= LIMITS["action_id"]:
        problems.append(f"{where}: action_id of {len(element['action_id'])} chars")
    if len(element.get("value", "")) > LIMITS["value"]:
        problems.append(f"{where}: value of {len(element['value'])} chars")
    if "url" in element and (len(element["url"]) > LIMITS["url"] or not element["url"].startswith("https://")):
        problems.append(f"{where}: bad url")
    return problems


def shown_text(message: dict[str, Any]) -> list[str]:
    """Every mrkdwn text Slack displays (button values are data; plain_text is never parsed for mentions)."""
    texts = [message.get("text", "")]
    for block in message.get("blocks", []):
        for obj in [block.get("text") or {}, *block.get("elements", [])]:
            if obj.get("type") == "mrkdwn":
                texts.append(obj["text"])
    return texts


def make_answer(hits: list[tuple[str, str, str]], query: str = "q", degraded: list[str] | None = None,
                **extra: Any) -> SearchResponse:  # fmt: skip
    results = [
        Hit(rank=i + 1, doc_id=f"d{i}", path=path, title=title, heading=f"{title} > Section", snippet=text,
            score=0.5, scores=HitScores(rerank=0.5, fusion=0.01), tags=extra.get("tags", ["runbook"]),
            type=extra.get("type", "runbook"), status="active", updated="2026-01-02", links=[])
        for i, (path, title, text) in enumerate(hits)
    ]  # fmt: skip
    meta = SearchMeta(request_id="r", variants=[query], embedder="none", reranker="none", degraded=degraded or [],
                      candidates=len(results), timings_ms={"total": 812.0}, usage={})  # fmt: skip
    return SearchResponse(query=query, results=results, meta=meta)


PATTERN = "https://git.example.com/kb/blob/main/{path_md}"


def views() -> Iterator[View]:
    yield View(per_page=5)
    yield View(per_page=10, url_pattern=PATTERN, filters={"tags": ["runbook"], "path_prefix": "ru/ранбуки"})
    yield View(share=True, asked_by="U2147483697", per_page=5, url_pattern="https://wiki.example.com/{path}")


# -- the vault ---------------------------------------------------------------------------------------------------


def vault_hits() -> Iterator[tuple[str, str, str, str]]:
    for path in sorted(VAULT.rglob("*.md")):
        rel = path.relative_to(VAULT).as_posix()
        note = parse_note(rel, path.read_bytes())
        for chunk in chunk_note(note):
            yield rel, note.title, chunk.heading, chunk.text


@pytest.mark.skipif(not VAULT.is_dir(), reason="the Obsidian vault (../shared/kb/obsidian-help) is absent")
def test_every_note_of_the_vault_renders_within_block_kit_limits() -> None:
    hits = list(vault_hits())
    assert len({h[0] for h in hits}) > 300
    checked = 0
    for size in (300, 1200, 20_000):  # the default SNIPPET_CHARS, a generous one, and whole chunks
        page: list[tuple[str, str, str]] = []
        for path, title, _heading, text in hits:
            page.append((path, title, snippet(text, size)))
            if len(page) == 10:
                for view in views():
                    message = render_answer(make_answer(page, "q <&>", degraded=["rerank"]), view)
                    problems = block_kit_problems(message)
                    assert not problems, (path, view, problems[:5])
                    checked += 1
                page = []
    assert checked > 100
    # every chunk of every note, alone, at the tightest and at the section limit
    for path, _title, _heading, text in hits:
        for limit in (200, 3000):
            out = to_mrkdwn(text, limit)
            assert len(out) <= limit, path
            assert not mrkdwn_problems(out, path), (path, mrkdwn_problems(out, path))


@pytest.mark.skipif(not VAULT.is_dir(), reason="the Obsidian vault (../shared/kb/obsidian-help) is absent")
def test_vault_code_blocks_keep_their_lines() -> None:
    """A chunk with a fenced code block: every code line of the answer is a whole source line (escaped) or the
    last one, cut with "…"; the fence is closed."""
    seen = 0
    for path, _title, _heading, text in vault_hits():
        if "```" not in text or "\n|" in text:  # (tables become code blocks of aligned cells: tested below)
            continue
        out = to_mrkdwn(text, 1500)
        source_lines = {ln.expandtabs(4).rstrip().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                        for ln in text.split("\n")}  # fmt: skip
        inside = False
        for line in out.split("\n"):
            if line == "```":
                inside = not inside
                continue
            if inside:
                assert line.replace("\u200b", "") in source_lines or line.endswith("…"), (path, line)
        assert not inside, path
        seen += 1
    assert seen > 5


# -- Markdown → mrkdwn -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [("**bold** and __also__", "*bold* and *also*"), ("*it* and _it_", "_it_ and _it_"), ("~~gone~~", "~gone~"),
     ("`a < b && c`", "`a &lt; b &amp;&amp; c`"), ("[docs](https://x.example/a?b=1&c=2)", "<https://x.example/a?b=1&amp;c=2|docs>"),
     ("[bad](javascript:alert(1))", "bad)"), ("[[Note#Head|shown]] and [[Other]]", "shown and Other"),
     ("![alt text](https://x.example/i.png)", "alt text"), ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
     ("<https://x.example>", "<https://x.example>"), ("[a|b](https://x.example/p|q)", "<https://x.example/p%7Cq|a¦b>"),
     ("[[a[b]] [see [1]](https://x.example) [a[b](https://x.example)", "[[a[b]] [see [1]](https://x.example) [a<https://x.example|b>"),
     ("[[[[Note]] [x]([x](https://x.example/a) <https://a<https://x.example>", "[[Note [x](<https://x.example/a|x> &lt;https://a<https://x.example>"),
     ("[q](https://x.example/?a[0]=1&b[]=2) [v6](http://[::1]:8080/) ![shot](https://x.example/a[1].png)",
      "<https://x.example/?a[0]=1&amp;b[]=2|q> <http://[::1]:8080/|v6> shot")],
)  # fmt: skip
def test_inline_markdown(markdown: str, mrkdwn: str) -> None:
    assert inline(markdown) == mrkdwn


def test_a_headings_closing_hashes_go_and_its_own_stay() -> None:
    """CommonMark: a closing ``#`` run follows a space (``# Using C#`` keeps its ``#``; it rendered ``*Using C*``),
    as the note parser reads headings."""
    for markdown, mrkdwn in (("# Using C#", "*Using C#*"), ("## Steps ##", "*Steps*"), ("# C# #", "*C#*"),
                             ("### F# and C# ###  ", "*F# and C#*"), ("# #", "")):  # fmt: skip
        assert to_mrkdwn(markdown, 300) == mrkdwn, markdown


def test_tables_become_aligned_code_blocks() -> None:
    md = ("| вариант | гибрид | ссылка |\n|---|:---:|---|\n| Qdrant **Cloud** | да | [k](https://x.example) a \\| b |\n"
          "| OpenSearch | <нет> | [[Pipelines|пайплайны]] |\nafter | not a table")  # fmt: skip
    assert to_mrkdwn(md, 3000) == (
        "```\nвариант       гибрид  ссылка\n------------  ------  ---------\nQdrant Cloud  да      k a ¦ b\n"
        "OpenSearch    &lt;нет&gt;   пайплайны\n```\nafter | not a table"
    )


def test_block_markdown() -> None:
    md = ("# Title\n\n\n- one\n  - nested\n- [ ] todo\n- [x] done\n3. third\n> quoted\n> [!warning] Careful\n---\n"
          "```python\nif a < b:\n    print('&')\n```\nafter")  # fmt: skip
    assert to_mrkdwn(md, 3000) == (
        "*Title*\n\n• one\n    ◦ nested\n☐ todo\n☑ done\n3. third\n>quoted\n>*Warning:* Careful\n───\n"
        "```\nif a &lt; b:\n    print('&amp;')\n```\nafter"
    )


# -- hostile text ------------------------------------------------------------------------------------------------

HOSTILE = {
    "unclosed_fence": "intro\n```bash\nrm -rf <dir> && echo done\nsecond line\n",
    "unclosed_tilde_fence": "~~~\ncode\n" * 3,
    "fence_in_fence": "````\n```\ninner\n```\n````\nafter",
    "10kb_line": "word " * 2000,
    "10kb_no_spaces": "x" * 10_000,
    "10kb_code_line": "```\n" + "y" * 10_000 + "\n```",
    "10kb_entities": "<&>" * 3400,
    "mentions": "<!channel> <!here> <!everyone> <@U123> <@W123|name> <#C123> <!subteam^S123> <!date^1|x>",
    "link_mentions": "[click](<!channel>) [x](https://a.example/<!here>) <https://a.example|<!channel>>",
    "entities": "&lt; &gt; &amp; &#60; &amp;lt;",
    "emoji": "👍🏽 👨‍👩‍👧‍👦 🇺🇦 :white_check_mark: " * 300,
    "rtl": "שלום עולם مرحبا بالعالم \u202eevil\u202c \u2067iso\u2069 " * 200,
    "control": "a\x00b\x07c\x1bd\r\ne\rf",
    "markup_soup": "*_~`" * 2000 + "**" * 2000 + "[](" * 1000,
    "deep_list": "".join("  " * i + "- item\n" for i in range(300)),
    "many_lines": "\n".join(f"line {i}" for i in range(5000)),
    "only_fences": "```\n" * 500,
    "wide_table": ("| a " * 3000 + "|\n") * 3 + "|" + "---|" * 3000 + "x\n",
    "table_soup": "|\n||\n|[[a|b]]|`|`|\\||\n" * 500,
    # runs that made every ``[`` (``<``) try the characters up to the next bracket's bound and every way to give
    # them back: 40 KB of each took 12 s ("["), 6 s ("[["), 18 s ("[x](") and 3 s ("<http://") to render
    "bracket_run": "[" * 40_000,
    "table_link_run": ("| " + "![x](" * 16_000 + " | b |\n|---|---|\n") * 2,
    "wiki_open_run": "[[" * 20_000,
    "link_open_run": "[x](" * 10_000,
    "wiki_alias_run": "[[a|" * 10_000,
    "image_open_run": "![" * 20_000,
    "autolink_run": "<http://" * 5_000,
    # a heading's closing run was found by re-reading the rest of the line at every character (18 s for 40 KB), and
    # each level of a nested quote copied the rest of the line (4 s for 80 KB of ">")
    "heading_hash_run": "# a" + " #" * 20_000 + "x",
    "quoted_heading_hash_run": "> # a" + " #" * 20_000 + "x",
    "nested_quote_run": ">" * 80_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_snippets_render_inert_and_within_limits(name: str) -> None:
    text = HOSTILE[name]
    for limit in (50, 300, 3000):
        out = to_mrkdwn(text, limit)
        assert len(out) <= limit
        assert not mrkdwn_problems(out, name), mrkdwn_problems(out, name)
        assert "\x00" not in out and "\u202e" not in out
    hostile_title = text[:400]
    answer = make_answer([(f"ru/{name}/{i} <!channel>.md", hostile_title, text) for i in range(10)], query=text[:1000],
                         tags=[text[:50], "<@U1>"], type=text[:30])  # fmt: skip
    for view in views():
        message = render_answer(answer, view)
        assert not block_kit_problems(message), block_kit_problems(message)[:5]
        empty = render_answer(make_answer([], query=text[:1000]), view)  # no hits: the question echoed, escaped
        assert not block_kit_problems(empty), block_kit_problems(empty)[:5]
        dumped = json.dumps(shown_text(message), ensure_ascii=False)
        for mention in ("<!channel>", "<!here>", "<@U123>", "<#C123>", "<!everyone>"):
            assert mention not in dumped


def test_code_block_cut_at_a_line_boundary_with_the_fence_closed() -> None:
    code = "```python\n" + "\n".join(f"print({i})  # <{i}>" for i in range(200)) + "\n```\nafter"
    out = to_mrkdwn(code, 400)
    lines = out.split("\n")
    assert lines[0] == "```" and lines[-1] == "```" and lines[-2] == "…"
    assert all(re.fullmatch(r"print\(\d+\)  # &lt;\d+&gt;", ln) for ln in lines[1:-2])
    assert "after" not in out


# -- answers -----------------------------------------------------------------------------------------------------


def test_answer_shape_no_scores_degraded_in_words_buttons() -> None:
    hits = [(f"en/runbooks/Note {i}.md", f"Note {i}", "Use **this** `cmd`") for i in range(6)]
    message = render_answer(
        make_answer(hits, "restore", degraded=["rerank", "expand"]), View(per_page=5, filters={"tags": ["a"]})
    )
    dumped = json.dumps(message, ensure_ascii=False)
    assert "score" not in dumped and "0.5" not in dumped and "degraded" not in dumped
    assert "results are not reranked" in dumped and "not rephrased" in dumped
    assert message["blocks"][0]["type"] == "header" and "restore" in message["blocks"][0]["text"]["text"]
    assert "`en/runbooks/Note 0.md`" in dumped  # no URL pattern: the path as code
    assert "§ Section" in dumped and "runbook" in dumped and "filters: tag `a`" in dumped
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    ids = [e["action_id"] for e in actions["elements"]]
    assert ids == [ACTION_SHARE, ACTION_MORE, ACTION_UP, ACTION_DOWN]  # 6 hits for 5 a page: there is more
    vote = AnswerState.decode(actions["elements"][2]["value"])
    assert vote.query == "restore" and vote.hits == tuple(f"en/runbooks/Note {i}.md" for i in range(5))
    more = AnswerState.decode(actions["elements"][1]["value"])
    assert more.page == 1 and more.filters == {"tags": ["a"]}
    assert not block_kit_problems(message)
    last_page = render_answer(make_answer(hits), View(per_page=5, page=1))
    (actions,) = [b for b in last_page["blocks"] if b["type"] == "actions"]
    assert ACTION_MORE not in [e["action_id"] for e in actions["elements"]]
    assert "result 6 · " in json.dumps(last_page, ensure_ascii=False)  # one hit: "result 6", not "results 6–6"


def test_emphasis_marks_in_plain_text_are_shown_not_read_as_bold_or_strike() -> None:
    """Slack cannot escape ``*`` or ``~``: a title's asterisk ended the hit's bold title early and two tildes
    struck out what was between them. Plain text shows them as look-alikes; code spans (paths, tags) as written."""
    hits = [("notes/C* guide ~a~.md", "C* guide for ~/x and ~/y", "text")]
    message = render_answer(make_answer(hits, query="C* ~x~", tags=["c*"], type="how*to"), View(per_page=5))
    texts = shown_text(message)
    assert any(t.startswith("*1. C∗ guide for ∼/x and ∼/y*") for t in texts), texts
    dumped = json.dumps(texts, ensure_ascii=False)
    assert "`c*`" in dumped and "`notes/C* guide ~a~.md`" in dumped and "how∗to" in dumped
    assert message["blocks"][0]["text"] == {"type": "plain_text", "text": "🔎 C* ~x~", "emoji": True}  # never parsed
    assert "“C∗ ∼x∼”" in message["text"]  # the notification's mrkdwn
    assert not block_kit_problems(message)


def test_shared_answer_says_who_asked_and_has_no_private_buttons() -> None:
    message = render_answer(make_answer([("a.md", "A", "x")]), View(share=True, asked_by="U2147483697"))
    assert message["response_type"] == "in_channel"
    assert "asked by <@U2147483697>" in json.dumps(message)
    assert not [b for b in message["blocks"] if b["type"] == "actions"]
    forged = render_answer(make_answer([("a.md", "A", "x")]), View(share=True, asked_by="U1> <!channel"))
    assert "<!channel" not in json.dumps(forged) and not block_kit_problems(forged)


def test_links_from_the_url_pattern() -> None:
    assert note_url("https://git.example.com/kb/blob/main/{path}", "ru/ранбуки/a b.md") == (
        "https://git.example.com/kb/blob/main/ru/%D1%80%D0%B0%D0%BD%D0%B1%D1%83%D0%BA%D0%B8/a%20b"
    )
    assert note_url("https://git.example.com/kb/{path_md}", "en/x.md") == "https://git.example.com/kb/en/x.md"
    assert note_url("", "en/x.md") is None and note_url("javascript:{path}", "x.md") is None
    assert url_pattern("", "https://kb.example.com/") == "https://kb.example.com/{path_md}"  # the older setting
    message = render_answer(make_answer([("en/x & y.md", "X", "t")]), View(url_pattern="https://w.example/{path}"))
    section = message["blocks"][1]
    assert section["text"]["text"].startswith("*1. <https://w.example/en/x%20%26%20y|X>*")
    assert section["accessory"]["url"] == "https://w.example/en/x%20%26%20y"
    assert "en/x" not in json.dumps(message["blocks"][2])  # no path line when there is a link


def test_button_state_round_trips_and_long_questions_lose_only_their_buttons() -> None:
    state = AnswerState('вопрос "x"', {"tags": ["a"], "path_prefix": "ru/ранбуки"}, 2, ("a.md", "b.md"))
    assert AnswerState.decode(state.encode(with_hits=True)) == state
    for bad in (
        "",
        "[]",
        '{"q": ""}',
        '{"q": "x", "p": 99}',
        '{"q": "x", "h": [1]}',
        "x" * 2001,
        '{"q": "x", "p": true}',
    ):
        with pytest.raises(ValueError):
            AnswerState.decode(bad)
    long_paths = [(f"{'п' * 400}/{i}.md", "T", "x") for i in range(5)]
    message = render_answer(make_answer(long_paths, "q"), View())
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    assert AnswerState.decode(actions["elements"][-1]["value"]).hits == ()  # found again when the vote arrives
    huge = render_answer(make_answer([("a.md", "A", "x")], "\x01" * 1 + '"' * 1000), View())
    assert not [b for b in huge["blocks"] if b["type"] == "actions"] and not block_kit_problems(huge)


def test_one_hit_is_one_note_in_the_notification_text() -> None:
    """The message's ``text`` (what a notification shows) said "1 notes for …"; so did ``kb_list``'s text."""
    from kbsearch.mcp.tools import render_catalog
    from kbsearch.schemas import CatalogResponse

    one = render_answer(make_answer([("en/a.md", "A", "text")], "restore"), View(per_page=5))
    two = render_answer(make_answer([("en/a.md", "A", "text"), ("en/b.md", "B", "text")], "restore"), View())
    assert one["text"] == "1 note for “restore”" and two["text"] == "2 notes for “restore”"
    catalog = CatalogResponse(notes=1, tags=[], types=[], statuses=[], folders=[], recent=[])
    assert render_catalog(catalog).startswith("1 note.\n")
