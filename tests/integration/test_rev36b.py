"""Round 36 review (rev36b): a cold review of adv36 and walk36, through the real interfaces (`kbsearch index` and
`kbsearch serve --watch --poll` spawned; the stderr relay of `kbsearch mcp` over real pipes, as adv36's own test).
Each test fails on main at 1abc9b3 (4c42133 + adv36 + walk36) before its fix."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from kbsearch_tools.local.process import serve_process
from tests.conftest import ROOT, subprocess_env
from tests.integration.test_adv36 import kept_or_counted
from tests.integration.test_walk36 import skipped_reasons


def test_a_frontmatter_slip_s_hint_is_right_for_its_yaml_and_quotes_none_of_the_note(tmp_path: Path) -> None:
    """walk36 named a slip in a writer's words, else PyYAML's problem as it says it. Two of those were wrong: a
    value beginning with [ or { followed by more text (`title: [Draft] Q3 plan`, Obsidian's `related: [[A]],
    [[B]]`) was "text after a value's closing quote", where there is no quote; and PyYAML's `found undefined tag
    handle '!...!'` quoted the note's own text (a token, a password) into every report and log line, as the alias
    refusal did with its name. A value beginning with '*' or '&' got PyYAML's `expected alphabetic or numeric
    character`. A key line under one that is no `key: value` (`Meeting notes` above `owner: me`) was told to quote
    a value holding ': ', where there is none."""
    notes = {
        "bracket.md": "---\ntitle: [Draft] Q3 plan\n---\n# Bracket\n\nbody\n",
        "links.md": "---\nrelated: [[Meeting A]], [[Meeting B]]\n---\n# Links\n\nbody\n",
        "brace.md": "---\ntitle: {wip} Quokka plan\n---\n# Brace\n\nbody\n",
        "tag.md": "---\ntoken: !sekretTOKEN77!x rotate\n---\n# Tag\n\nbody\n",
        "tag2.md": "---\ntoken: !sekretTOKEN77! rotate\n---\n# Tag\n\nbody\n",
        "alias.md": "---\npassword: *hunter2Secret\n---\n# Alias\n\nbody\n",
        "bold.md": "---\nsummary: **wombatclaim** here\n---\n# Bold\n\nbody\n",
        "apostrophe.md": "---\ntitle: 'it's mine'\n---\n# Apostrophe\n\nbody\n",  # the quote's hint still its own
        "nocolon.md": "---\nMeeting notes\nowner: me\n---\n# No colon\n\nbody\n",  # a key line missing its ':'
        "indented.md": "---\ntitle: x\n  owner: me\n---\n# Indented\n\nbody\n",
        "colon.md": "---\ntitle: Meeting: Q3 plan\n---\n# Colon\n\nbody\n",  # a ': ' in a value: its own hint
    }
    said, run = skipped_reasons(tmp_path, notes)
    listed = "a value that begins with [ or { is read as a list or a mapping (quote the whole value)"
    above = "a key where none can begin (the line above is no 'key: value', or this one is indented under it)"
    assert said == {
        "bracket.md": f"invalid YAML frontmatter at line 2: {listed}",
        "links.md": f"invalid YAML frontmatter at line 2: {listed}",
        "brace.md": f"invalid YAML frontmatter at line 2: {listed}",
        "tag.md": "invalid YAML frontmatter at line 2: a value cannot begin with '!' (quote the value)",
        "tag2.md": "invalid YAML frontmatter at line 2: a value cannot begin with '!' (quote the value)",
        "alias.md": "frontmatter uses a YAML alias at line 2: a value cannot begin with '*' (quote the value; aliases "
        "are not expanded: they allow exponential 'billion laughs' documents)",
        "bold.md": "invalid YAML frontmatter at line 2: a value cannot begin with '*' (quote the value)",
        "nocolon.md": f"invalid YAML frontmatter at line 3: {above}",
        "indented.md": f"invalid YAML frontmatter at line 3: {above}",
        "colon.md": "invalid YAML frontmatter at line 2: ': ' where no key can begin (quote a value that holds ': ', "
        "or indent the line as its key's)",
        "apostrophe.md": "invalid YAML frontmatter at line 2: text after a value's closing quote (inside '...' a ' is "
        'written \'\', inside "..." a " is \\")',
    }, run.stdout
    for marker in ("sekretTOKEN77", "hunter2Secret", "Draft", "Meeting", "Quokka", "wombatclaim"):
        assert marker not in run.stdout + run.stderr, marker


@pytest.mark.timeout(120)
def test_a_broken_note_saved_under_poll_is_named_once_not_again_when_read_again(tmp_path: Path) -> None:
    """adv36's `--poll` reads a note whose mtime was recent once more ~3 s later, and a read that finds nothing
    new says no line, but a note skipped for its frontmatter is never in the index, so every read of it skips it
    anew: its one save under `kbsearch serve --watch --poll` printed `1 changed note(s): ... 1 skipped: broken.md
    (...)` twice, the second time for no change at all (walk32: a skipped note is named once); and a note read again
    in the same poll as a save was counted in that save's `2 changed note(s)`."""
    from tests.integration.test_freshness import until

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "good.md").write_text("# Good\n\nA good note.\n")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb), EMBEDDING_API_KEY="",
                         EMBEDDING_API_KEY_PARAM="")  # fmt: skip
    with serve_process(env, cwd=ROOT, args=["--watch", "--poll"]) as served:
        log = served.text
        until(lambda: "initial sync" in log(), log=log)
        (kb / "broken.md").write_text("---\ntitle: [unclosed\n---\n\nbody\n")
        until(lambda: "changed note(s)" in log(), log=log)
        time.sleep(6)  # twice RACY_S (3 s): the recent stat is read again meanwhile
        (kb / "good.md").write_text("# Good\n\nA good note, edited.\n")  # a later save still says its line
        until(lambda: "1 updated" in log(), log=log)
        time.sleep(1)
        lines = [line for line in log().splitlines() if "changed note(s)" in line]
    assert len(lines) == 2, lines
    # the save's own line: one note changed (good.md, written just before the start, read again meanwhile, is not)
    assert "1 changed note(s): 0 added, 0 updated, 0 deleted" in lines[0] and "1 skipped: broken.md" in lines[0], lines
    assert "broken.md" not in lines[1] and "0 added, 1 updated, 0 deleted" in lines[1], lines


def _read_all(fd: int, into: bytearray) -> threading.Thread:
    def read() -> None:
        while chunk := os.read(fd, 65536):
            into.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def test_the_stderr_relay_keeps_a_long_line_and_says_its_drops_where_the_gap_is() -> None:
    """adv36's relay (``kbsearch mcp``'s stderr) dropped any write that did not fit beside what waited: a log line
    longer than its 256 K characters was dropped with the reader reading all along, and past the bound a print's
    text (one write) was dropped while its newline (the next) was kept: blank lines, later lines before the count
    that stood for earlier ones, and each print counted as two lines. Over real pipes, as adv36's own test."""
    from kbsearch_tools.mcp_stdio import StderrRelay  # (imported here: main's code before adv36 has none)

    unread, err = os.pipe()
    said = bytearray()
    reader = _read_all(unread, said)
    target = os.fdopen(err, "w", encoding="utf-8")
    relay = StderrRelay(target, limit=8192)
    relay.write("W" * 100_000 + "\n")  # one line twelve times the bound, nothing else waiting, the reader reading
    assert relay.drain(10)
    target.close()
    reader.join(10)
    os.close(unread)
    assert said.decode() == "W" * 100_000 + "\n", said[-200:]

    unread, err = os.pipe()
    fcntl.fcntl(err, fcntl.F_SETPIPE_SZ, 4096)
    target = os.fdopen(err, "w", encoding="utf-8")
    relay = StderrRelay(target, limit=8192)
    for i in range(2000):  # print(): the text, then its newline, two writes
        print(f"line {i:08} of a stray print", file=relay)
    said = bytearray()
    reader = _read_all(unread, said)  # the client reads at last
    assert relay.drain(10)
    target.close()
    reader.join(10)
    os.close(unread)
    # each print kept whole and in order, or counted on a line of its own where it is missing: none cut, glued,
    # blank, or counted twice
    assert kept_or_counted(said.decode(), lambda i: f"line {i:08} of a stray print") == 2000


def test_bytes_written_to_the_relay_are_refused_to_their_writer_and_stderr_goes_on() -> None:
    """A text stream refuses bytes to the one who writes them (`TypeError`); the relay took them, and its writer
    thread's join of what waited raised, ending the thread: every line after, a crash's traceback included, waited
    for nobody, and the exit's drain waited its 2 s for nothing."""
    from kbsearch_tools.mcp_stdio import StderrRelay

    unread, err = os.pipe()
    said = bytearray()
    reader = _read_all(unread, said)
    target = os.fdopen(err, "w", encoding="utf-8")
    relay = StderrRelay(target)
    with pytest.raises(TypeError, match="must be str, not bytes"):
        relay.write(b"a library's bytes\n")  # type: ignore[arg-type]
    relay.write("Traceback (most recent call last): the line after it\n")
    assert relay.drain(10)
    target.close()
    reader.join(10)
    os.close(unread)
    assert said.decode() == "Traceback (most recent call last): the line after it\n"
