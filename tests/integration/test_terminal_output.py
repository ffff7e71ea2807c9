"""What the ``kbsearch`` command prints for a person at a terminal, when notes and file names carry what a
terminal acts on: escape sequences (ESC, and the 8-bit CSI), carriage returns, line breaks, bidi overrides.
Through the real command (a subprocess, output captured as bytes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kbsearch_tools.fakes import FakeProvider, provider_env
from tests.conftest import KBSEARCH_CMD, subprocess_env

#: Characters a terminal acts on rather than shows (the line break is tested on its own: it may end a line).
ACTED_ON = ["\x1b", "\x07", "\r", "\x08", "\x9b", "\x7f", "\u202e", "\u2066"]

#: File names built to act on the terminal: a new line forged in the report, a line overwritten, colours, an
#: 8-bit CSI, backspaces, a bidi override (right-to-left: ``gpj.md`` shows as ``md.jpg``).
NAMES = {
    "a\nskipped nothing: all fine.md": "a\\nskipped nothing: all fine.md",
    "b\rall good.md": "b\\rall good.md",
    "c\x1b[2J\x1b]0;title\x07.md": "c\\x1b[2J\\x1b]0;title\\x07.md",
    "d\x9b31m.md": "d\\x9b31m.md",
    "e\x08\x08\x08.md": "e\\x08\\x08\\x08.md",
}

#: Note text that reaches `kbsearch search`'s output: a heading (the title), a snippet, tags.
NOTE = (
    '---\ntags: [zebra, "t\\e[5m"]\n---\n'
    "# Zebra \x1b]0;owned\x07 \x1b[31mred \u202eevil \u2066iso\u2069\n\n"
    "zebra body \x1b[2J cleared \x9b1m bold \r overwritten \x7f \x08 back \u202e reversed \x1b[8m hidden zebra\n"
)


def _run(*args: str, **env: str) -> tuple[int, str, str]:
    proc = subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, timeout=120, check=False,
                          env=subprocess_env(**env))  # fmt: skip
    return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")


def _acted_on(text: str) -> list[str]:
    return sorted({c for c in text if c in ACTED_ON})


def test_index_and_search_output_shows_what_notes_carry_never_acts_on_it(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    for name in NAMES:
        (kb / name).write_text("# Named\n\nzebra\n")
    (kb / "gpj\u202e.md").write_text("# Reversed name\n\nzebra\n")  # indexed: the override is shown escaped
    (kb / "zebra.md").write_text(NOTE)
    store = str(tmp_path / "q")

    code, out, err = _run("index", str(kb), QDRANT_PATH=store)
    assert code == 0, err
    assert _acted_on(out + err) == [], (out, err)
    skipped = [line for line in out.splitlines() if line.startswith("  skipped ")]
    assert len(skipped) == len(NAMES)  # one line each: no line forged by a name's line break
    for shown in NAMES.values():
        assert f"  skipped {shown}: path contains a control character" in out, out

    code, out, err = _run("search", "zebra", "--top-k", "5", QDRANT_PATH=store, KB_SOURCE=str(kb))
    assert code == 0, err
    assert _acted_on(out + err) == [], (out, err)
    assert "Zebra \\x1b]0;owned\\x07 \\x1b[31mred \\u202eevil \\u2066iso\\u2069" in out, out
    assert "\\x1b[2J cleared" in out and "\\x9b1m bold" in out and "gpj\\u202e.md" in out, out


def test_a_warning_s_structured_fields_reach_the_terminal(tmp_path: Path, deepinfra: FakeProvider) -> None:
    """A log record's ``extra`` fields (what the Lambda's JSON logs carry as keys) follow the message on a terminal:
    `kbsearch search` whose embedder fails says why ("embedding failed; BM25 only (error=…)"), with the provider's
    own words escaped like any text, not a bare "embedding failed". The per-request audit line ("access") is not
    printed by the one-shot command unless ``-v`` (the one asking is at this terminal); with ``-v`` it names its
    fields."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "zebra.md").write_text("# Zebra\n\nzebra body\n")
    store = str(tmp_path / "q")
    env = {"QDRANT_PATH": store, "KB_SOURCE": str(kb)}
    assert _run("index", str(kb), **env)[0] == 0
    deepinfra.fail("embeddings", status=400, body=b'{"detail": "model \\u001b[31mbusy\\r"}')
    env |= provider_env(deepinfra, roles=["EMBEDDING"])
    code, out, err = _run("search", "zebra", "--no-rerank", **env)
    assert code == 0 and "Zebra" in out, err
    warning = next(line for line in err.splitlines() if "embedding failed; BM25 only" in line)
    assert "(error=" in warning and "400" in warning, err
    assert _acted_on(err) == [], err
    assert "access" not in err, err
    code, _, err = _run("search", "zebra", "--no-rerank", **env, EMBEDDING_DIMENSIONS="64")
    mismatch = ("WARNING kbsearch.search: dense retrieval off: BM25 only (reason=the index's dense vectors have 1024 "
                "dimensions, the embedder's 64)")  # fmt: skip
    assert code == 0 and mismatch in err, err
    code, _, err = _run("-v", "search", "zebra", "--no-rerank", **env)
    audit = next(line for line in err.splitlines() if line.startswith("INFO kbsearch.search: access"))
    assert "caller=cli" in audit and "results=1" in audit, audit
