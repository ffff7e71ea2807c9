"""Folder entries that are not regular files, and names that are not UTF-8, through the real interfaces:
`kbsearch index --json` as a process (also with the capabilities that let root read anything dropped, so
"permission denied" is real), the indexer service, and `kb_get_note` through the search handler. Each kind is
skipped with its reason, never opened in a way that can block, and the rest is indexed; reads by path refuse them
and the server keeps answering."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import SyncReport, run_sync
from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.conftest import KBSEARCH_CMD, subprocess_env
from tests.integration.test_hostile_notes import _caller
from tests.integration.test_indexer import store_points, write_notes

#: how long any one call may take before the test calls it blocked (a FIFO open blocks forever)
BLOCKED_S = 45  # two of these (a kbsearch process's limit) stay under the 120 s a test may take

#: entry name → the reason the report gives (every one of them ends in .md: each would be a note)
REASONS = {
    "fifo.md": "not a regular file (a FIFO)",
    "socket.md": "not a regular file (a socket)",
    "device.md": "not a regular file (a character device)",
    "dangling.md": "dangling symlink (its target does not exist)",
    "loop.md": "symlink loop",
    "loop-a.md": "symlink loop",
    "zero.md": "symlink to a file outside the KB folder",
    "outside.md": "symlink to a file outside the KB folder",
    "into-fifo.md": "not a regular file (a FIFO)",
    "linked/": "symlink to a folder (not followed)",
}


def make_hostile(kb: Path, outside: Path) -> set[str]:
    """Every kind of non-regular entry next to the notes in ``kb``; the names made (mknod may be refused)."""
    made = set(REASONS)
    os.mkfifo(kb / "fifo.md")
    here = Path.cwd()
    os.chdir(kb)  # an AF_UNIX address is limited to 108 bytes: bind by a relative name
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind("socket.md")
    finally:
        os.chdir(here)
    try:
        os.mknod(kb / "device.md", 0o644 | 0o020000, os.makedev(1, 3))  # a character device: /dev/null's numbers
    except PermissionError:
        made.discard("device.md")
    (kb / "dangling.md").symlink_to("nowhere.md")
    (kb / "loop.md").symlink_to("loop.md")
    (kb / "loop-a.md").symlink_to("loop-b.md")
    (kb / "loop-b.md").symlink_to("loop-a.md")
    made.add("loop-b.md")
    (kb / "zero.md").symlink_to("/dev/zero")  # a read that never ends, were it opened
    outside.write_text("# Secret\n\nnot part of the KB\n")
    (kb / "outside.md").symlink_to(outside)
    (kb / "into-fifo.md").symlink_to("fifo.md")
    (kb / "sub").mkdir()
    (kb / "sub" / "inner.md").write_text("# Inner\n\nindexed once\n")
    (kb / "linked").symlink_to("sub")
    (kb / "folder.md").mkdir()  # a folder named like a note: walked into, never read as a note
    (kb / "folder.md" / "deep.md").write_text("# Deep\n\nin a folder named like a note\n")
    return made


def expected(made: set[str]) -> dict[str, str]:
    reasons = {name: reason for name, reason in REASONS.items() if name in made}
    if "loop-b.md" in made:
        reasons["loop-b.md"] = "symlink loop"
    return reasons


def in_thread(call: Callable[[], Any]) -> Any:
    """``call()`` on a thread, failing the test (instead of hanging it) if it blocks."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(BLOCKED_S)
    assert not thread.is_alive(), f"blocked for {BLOCKED_S} s"
    if errors:
        raise errors[0]
    return result[0]


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "kb"
    folder.mkdir()
    write_notes(folder, 3)
    yield folder


def skipped(report: dict[str, Any]) -> dict[str, str]:
    return {item["path"]: item["reason"] for item in report["skipped"]}


def index_process(kb: Path, store: Path, *prefix: str, env: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    proc = subprocess.run(
        [*prefix, *KBSEARCH_CMD, "index", str(kb), "--json"],
        env=subprocess_env(QDRANT_PATH=str(store), EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM="", **(env or {})),
        capture_output=True, timeout=BLOCKED_S * 2, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace")


def test_kbsearch_index_skips_every_kind_with_its_reason(kb: Path, tmp_path: Path) -> None:
    made = make_hostile(kb, tmp_path / "outside.md")
    code, out, stderr = index_process(kb, tmp_path / "q")
    assert code == 0 and "Traceback" not in stderr, stderr
    report = json.loads(out.decode("utf-8"))
    assert report["error"] is None and not report["incomplete"]
    assert skipped(report) == expected(made)
    indexed = {p["path"] for p in store_points(Settings(qdrant_path=str(tmp_path / "q")))}
    assert indexed == {"n00.md", "n01.md", "n02.md", "sub/inner.md", "folder.md/deep.md"}


def test_the_indexer_service_skips_them_and_keeps_what_they_replaced(kb: Path, tmp_path: Path) -> None:
    """A note that becomes a FIFO, a dangling symlink or a loop is skipped and its indexed version stays (as for any
    bad note); a folder that becomes a symlink keeps its notes too; nothing is deleted for them."""
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    (kb / "sub").mkdir()
    (kb / "sub" / "inner.md").write_text("# Inner\n\nindexed once\n")
    first: SyncReport = in_thread(lambda: run_sync(settings, Secrets(settings), source_uri=str(kb)))
    assert first.added == 4 and first.skipped == []
    for name, replace in (("n00.md", os.mkfifo), ("n01.md", lambda p: p.symlink_to("gone.md")),
                          ("n02.md", lambda p: p.symlink_to(p.name))):  # fmt: skip
        (kb / name).unlink()
        replace(kb / name)
    shutil.move(kb / "sub", tmp_path / "sub-moved")
    (kb / "sub").symlink_to(tmp_path / "sub-moved")
    (kb / "new.md").write_text("# New\n\nstill indexed\n")
    second: SyncReport = in_thread(lambda: run_sync(settings, Secrets(settings), source_uri=str(kb)))
    assert {s["path"]: s["reason"] for s in second.skipped} == {
        "n00.md": "not a regular file (a FIFO)",
        "n01.md": "dangling symlink (its target does not exist)",
        "n02.md": "symlink loop",
        "sub/": "symlink to a folder (not followed)",
    }
    assert second.added == 1 and second.deleted == 0 and second.error is None
    indexed = {p["path"] for p in store_points(settings)}
    assert indexed == {"n00.md", "n01.md", "n02.md", "sub/inner.md", "new.md"}


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
@pytest.mark.timeout(3 * 2 * BLOCKED_S + 30)  # three kbsearch index processes
def test_unreadable_files_and_folders_are_skipped_not_fatal(kb: Path, tmp_path: Path) -> None:
    """Mode 000 does not stop root (CAP_DAC_OVERRIDE): the process runs with that and CAP_DAC_READ_SEARCH dropped
    from its bounding set, so "permission denied" is the kernel's own answer."""
    (kb / "unreadable.md").write_text("# U\n\nno one may read this\n")
    (kb / "unreadable.md").chmod(0)
    (kb / "locked").mkdir()
    (kb / "locked" / "inside.md").write_text("# Inside\n\nin a folder no one may list\n")
    (kb / "locked").chmod(0)
    store = tmp_path / "q"
    drop = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")
    try:
        code, out, stderr = index_process(kb, store, *drop)
    finally:
        (kb / "locked").chmod(0o755)
    assert code == 0 and "Traceback" not in stderr, stderr
    report = json.loads(out)
    assert skipped(report) == {"unreadable.md": "permission denied",
                               "locked/": "folder cannot be listed: permission denied"}  # fmt: skip
    assert report["added"] == 3 and report["error"] is None
    # once readable, the same run indexes them; a folder that cannot be listed later deletes nothing under it
    (kb / "unreadable.md").chmod(0o644)
    code, out, _ = index_process(kb, store)
    assert code == 0 and json.loads(out)["added"] == 2
    (kb / "locked").chmod(0)
    try:
        code, out, _ = index_process(kb, store, *drop)
    finally:
        (kb / "locked").chmod(0o755)
    report = json.loads(out)
    assert report["deleted"] == 0 and "locked/" in skipped(report)
    assert "locked/inside.md" in {p["path"] for p in store_points(Settings(qdrant_path=str(store)))}


@pytest.mark.parametrize("locale", ["C.UTF-8", "C"])
@pytest.mark.timeout(2 * 2 * BLOCKED_S + 30)  # two kbsearch index processes
def test_a_file_name_that_is_not_utf8_is_valid_json_with_an_accurate_reason(kb: Path, tmp_path: Path,
                                                                            locale: str) -> None:  # fmt: skip
    """In a UTF-8 locale and in the C locale (where Python writes undecodable names back as raw bytes)."""
    for raw in (b"caf\xe9.md", b"\xff\xfe.md", b"ok-\xed\xa0\x80.md", b"\xc3.md"):  # Latin-1, BOM-ish, CESU, cut
        (kb / os.fsdecode(raw)).write_bytes(b"# Latin-1 name\n\nbody\n")
    nested = kb / os.fsdecode(b"dossier-\xe9t\xe9")
    nested.mkdir()
    (nested / "inside.md").write_text("# Inside\n\nin a folder whose name is not UTF-8\n")
    code, out, stderr = index_process(kb, tmp_path / "q", env={"LC_ALL": locale, "PYTHONIOENCODING": ""})
    assert code == 0, stderr
    report = json.loads(out.decode("utf-8"))  # strict: raises on invalid UTF-8
    assert skipped(report) == {
        "caf\\xe9.md": "file name is not valid UTF-8",
        "\\xff\\xfe.md": "file name is not valid UTF-8",
        "ok-\\xed\\xa0\\x80.md": "file name is not valid UTF-8",
        "\\xc3.md": "file name is not valid UTF-8",
        "dossier-\\xe9t\\xe9/inside.md": "file name is not valid UTF-8",
    }
    assert report["added"] == 3
    # the summary (no --json) is valid UTF-8 too
    proc = subprocess.run([*KBSEARCH_CMD, "index", str(kb)], capture_output=True, timeout=BLOCKED_S * 2, check=False,
                          env=subprocess_env(QDRANT_PATH=str(tmp_path / "q"), LC_ALL=locale))  # fmt: skip
    assert proc.returncode == 0 and "skipped caf\\xe9.md: file name is not valid UTF-8" in proc.stdout.decode("utf-8")


# -- reads by path: kb_get_note ----------------------------------------------------------------------------------


def call_tool(call: Callable[[dict[str, Any]], Any], path: str) -> dict[str, Any]:
    raw = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "kb_get_note", "arguments": {"path": path}}}).encode()  # fmt: skip
    event = build_event(HttpRequest("POST", "/mcp", "", [("Content-Type", "application/json")], raw), "/mcp", {}, "dev")
    result = in_thread(lambda: call(event))
    assert result["statusCode"] == 200, result
    return json.loads(result["body"])["result"]


def test_kb_get_note_refuses_them_without_blocking_and_the_server_keeps_answering(
    kb: Path, tmp_path: Path, bm25_index: Path, load_search_app
) -> None:
    made = make_hostile(kb, tmp_path / "outside.md")
    (kb / "plain.md").write_text("# Plain\n\nreadable\n")
    # a caller's read asks the index first (no index: 503 for every path), and a note not yet indexed is missing
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    assert run_sync(settings, Secrets(settings), source_uri=str(kb)).error is None
    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb))
    health = build_event(HttpRequest("GET", "/health", "", [], b""), "/health", {}, "dev")
    reasons = {name: reason for name, reason in expected(made).items() if name.endswith(".md")}
    reasons["folder.md"] = "not a regular file (a folder)"
    for name, reason in reasons.items():
        result = call_tool(call, name)
        text = result["content"][0]["text"]
        assert result["isError"] is True and text == f"the note at {name!r} cannot be read: {reason}", (name, text)
        assert str(tmp_path) not in text
        assert in_thread(lambda: call(health))["statusCode"] == 200  # the server still answers
    assert "no note at 'missing.md'" in call_tool(call, "missing.md")["content"][0]["text"]
    assert call_tool(call, "plain.md")["structuredContent"]["body"] == "# Plain\n\nreadable\n"


def test_a_huge_sparse_note_is_neither_hashed_nor_read(kb: Path, tmp_path: Path, load_search_app) -> None:
    """A 20 GB note (sparse: it costs no disk): the listing does not read it to hash it, the sync skips it by its
    size, and kb_get_note refuses it instead of holding it in memory."""
    with open(kb / "huge.md", "wb") as handle:
        handle.truncate(20 * 1024**3)
    code, out, stderr = index_process(kb, tmp_path / "q")
    assert code == 0, stderr
    report = json.loads(out)
    assert (
        skipped(report)["huge.md"].startswith(f"too large: {20 * 1024**3} bytes (limit 1048576, MAX_NOTE_BYTES): ")
        and report["added"] == 3
    )
    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb))
    result = call_tool(call, "huge.md")
    assert result["isError"] is True
    assert (
        result["content"][0]["text"]
        == f"the note at 'huge.md' cannot be read: larger than 64 MiB ({20 * 1024**3} bytes)"
    )


#: what a link to another file of the KB is skipped with (the target is never named: a caller may be told)
LINKED = "symlink to another file of the KB (a note is read at its own path only, under its own folder's access rules)"


def test_a_link_to_a_restricted_note_is_never_indexed_under_its_own_folders_rules(
    tmp_path: Path, load_search_app
) -> None:
    """`pub/shortcut.md -> ../hr/pay.md` (a shortcut to an HR note from a public folder; Obsidian shows it there):
    the link was indexed as a note of `pub/`, public, holding the HR note's text, so a caller without `hr` found
    and read it (and a later edit of `hr/pay.md` never reached it under `--watch`). A link to another file of the
    KB is skipped with its reason and what was indexed at its path is removed (a copy it replaced, or its text
    from a version before this one); the target stays indexed at its own path for its own callers. A read by a
    path through a linked folder (`pub/hrdir/pay.md`) is refused too."""
    kb = tmp_path / "kb"
    (kb / "hr").mkdir(parents=True)
    (kb / "pub").mkdir()
    (kb / "_access.yaml").write_text("hr/: [hr]\n", encoding="utf-8")
    (kb / "hr" / "pay.md").write_text("# Pay\n\nThe salary band zebrafinch is confidential.\n", encoding="utf-8")
    (kb / "pub" / "open.md").write_text("# Open\n\nA public note about zebrafinch feeders.\n", encoding="utf-8")
    (kb / "pub" / "shortcut.md").write_text("# Shortcut\n\nSee the pay note.\n", encoding="utf-8")
    code, out, stderr = index_process(kb, tmp_path / "q")
    assert code == 0, stderr
    (kb / "pub" / "shortcut.md").unlink()
    (kb / "pub" / "shortcut.md").symlink_to("../hr/pay.md")  # the copy replaced by a link
    (kb / "pub" / "alias.md").symlink_to(kb / "hr" / "pay.md")  # an absolute link into the KB
    (kb / "pub" / "hrdir").symlink_to("../hr")
    code, out, stderr = index_process(kb, tmp_path / "q")
    assert code == 0 and "Traceback" not in stderr, stderr
    report = json.loads(out.decode("utf-8"))
    assert skipped(report) == {"pub/shortcut.md": LINKED, "pub/alias.md": LINKED,
                               "pub/hrdir/": "symlink to a folder (not followed)"}  # fmt: skip
    indexed = {p["path"]: p["access"] for p in store_points(Settings(qdrant_path=str(tmp_path / "q")))}
    assert indexed == {"hr/pay.md": ["hr"], "pub/open.md": ["public"]}
    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb))
    search = _caller(call, None, "kb_search", {"query": "salary band zebrafinch", "top_k": 20})
    assert {h["path"] for h in search["structuredContent"]["results"]} == {"pub/open.md"}, search
    for path in ("pub/shortcut.md", "pub/alias.md", "pub/hrdir/pay.md"):
        result = _caller(call, None, "kb_get_note", {"path": path})
        assert result["isError"] is True and "zebrafinch" not in json.dumps(result), (path, result)


#: what a note that is one file with another note of the KB (a hard link) is skipped with, at every path of it
HARD_LINKED = (
    "hard link to another note of the KB (one file at several paths: a note is read at its own path only, under its "
    "own folder's access rules; keep one path, and a copy or a [[link]] at the others)"
)


def test_a_hard_link_to_a_restricted_note_is_never_indexed_or_read_at_either_path(
    tmp_path: Path, load_search_app
) -> None:
    """`ln hr/pay.md pub/pay.md`: one file at two paths of the KB, neither of them the original. It was indexed at
    both, the public path public with the HR note's text (round 16's "left": found and read by a caller without
    `hr`). Each path of it is skipped with its reason (the other path not named), nothing is indexed at either,
    and a read by either path is refused; a note whose other name is outside the KB is a note like any."""
    kb, outside = tmp_path / "kb", tmp_path / "elsewhere"
    (kb / "hr").mkdir(parents=True)
    (kb / "pub").mkdir()
    outside.mkdir()
    (kb / "_access.yaml").write_text("hr/: [hr]\n", encoding="utf-8")
    (kb / "hr" / "pay.md").write_text("# Pay\n\nThe salary band zebrafinch is confidential.\n", encoding="utf-8")
    (kb / "pub" / "open.md").write_text("# Open\n\nA public note about zebrafinch feeders.\n", encoding="utf-8")
    (outside / "kept.md").write_text("# Kept\n\nA zebrafinch backup kept outside.\n", encoding="utf-8")
    os.link(outside / "kept.md", kb / "pub" / "kept.md")  # its other name is no path of the KB
    code, _, stderr = index_process(kb, tmp_path / "q")
    assert code == 0, stderr
    os.link(kb / "hr" / "pay.md", kb / "pub" / "pay.md")
    code, out, stderr = index_process(kb, tmp_path / "q")
    assert code == 0 and "Traceback" not in stderr, stderr
    report = json.loads(out.decode("utf-8"))
    assert skipped(report) == {"hr/pay.md": HARD_LINKED, "pub/pay.md": HARD_LINKED}
    indexed = {p["path"]: p["access"] for p in store_points(Settings(qdrant_path=str(tmp_path / "q")))}
    assert indexed == {"pub/open.md": ["public"], "pub/kept.md": ["public"]}
    (kb / "pub" / "pay.md").unlink()  # one path again: the note is back, under its own folder's rules
    code, out, stderr = index_process(kb, tmp_path / "q")
    indexed = {p["path"]: p["access"] for p in store_points(Settings(qdrant_path=str(tmp_path / "q")))}
    assert code == 0 and indexed["hr/pay.md"] == ["hr"] and "pub/pay.md" not in indexed, stderr
    os.link(kb / "hr" / "pay.md", kb / "pub" / "pay.md")
    assert index_process(kb, tmp_path / "q")[0] == 0
    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb))
    search = _caller(call, None, "kb_search", {"query": "salary band zebrafinch", "top_k": 20})
    assert {h["path"] for h in search["structuredContent"]["results"]} == {"pub/open.md", "pub/kept.md"}, search
    for path in ("pub/pay.md", "hr/pay.md"):
        result = _caller(call, None, "kb_get_note", {"path": path})
        assert result["isError"] is True and "zebrafinch" not in json.dumps(result), (path, result)
    # (at the public path the reason; at hr/'s, a caller without `hr` is answered as for a missing note)
    assert HARD_LINKED in _caller(call, None, "kb_get_note", {"path": "pub/pay.md"})["content"][0]["text"]
    assert "zebrafinch" in json.dumps(_caller(call, None, "kb_get_note", {"path": "pub/kept.md"}))


def test_links_indexed_before_are_removed_even_when_the_mass_delete_guard_holds_the_rest(tmp_path: Path) -> None:
    """A KB whose public notes are links to restricted ones (``pub/x.md -> ../hr/pay.md``), indexed by a version
    before round 16 under the links' folder rules (public, the HR text), upgraded: most of the index is links, so
    the first sync's deletions went over ``max_delete_ratio`` and the guard kept them all, the HR text public at
    the links' paths until an operator reran with --allow-mass-delete. A link is listed (no source gone missing):
    it goes whatever the guard says; the guard still holds a real mass deletion."""
    kb = tmp_path / "kb"
    (kb / "hr").mkdir(parents=True)
    (kb / "pub").mkdir()
    (kb / "_access.yaml").write_text("hr/: [hr]\n", encoding="utf-8")
    (kb / "hr" / "pay.md").write_text("# Pay\n\nThe salary band zebrafinch is confidential.\n", encoding="utf-8")
    links = ("a.md", "b.md", "c.md")
    for name in links:  # as the version before indexed the links: the target's text under pub/'s rules
        (kb / "pub" / name).write_text("# Pay\n\nThe salary band zebrafinch is confidential.\n", encoding="utf-8")
    code, _, stderr = index_process(kb, tmp_path / "q")
    assert code == 0, stderr
    for name in links:
        (kb / "pub" / name).unlink()
        (kb / "pub" / name).symlink_to("../hr/pay.md")
    code, out, stderr = index_process(kb, tmp_path / "q")
    assert code == 0 and "Traceback" not in stderr, stderr
    indexed = {p["path"]: p["access"] for p in store_points(Settings(qdrant_path=str(tmp_path / "q")))}
    assert indexed == {"hr/pay.md": ["hr"]}, json.loads(out.decode("utf-8")).get("deletion_blocked")
    (kb / "hr" / "pay.md").unlink()  # a real mass deletion (the only note gone) is still held
    (kb / "hr" / "other.md").write_text("# Other\n", encoding="utf-8")
    (kb / "hr" / "more.md").write_text("# More\n", encoding="utf-8")
    code, out, stderr = index_process(kb, tmp_path / "q")
    report = json.loads(out.decode("utf-8"))
    assert (
        code == 0
        and report["deleted"] == 0
        and "hr/pay.md" in {p["path"] for p in store_points(Settings(qdrant_path=str(tmp_path / "q")))}
    ), report
