"""Freshness you can see: ``/health`` reports the last successful sync and its age, from the collection's
metadata, without a round trip per probe."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
from kbsearch.qdrant import open_store
from kbsearch_tools.local.apigw import HttpRequest, build_event
from kbsearch_tools.local.process import ServeProcess, serve_process
from tests.conftest import KBSEARCH_CMD, ROOT, subprocess_env


def event(method: str, path: str, query: str = "") -> dict[str, Any]:
    return build_event(HttpRequest(method, path, query, [], b""), path, {}, "dev")


def test_health_reports_the_last_sync_and_its_age(tmp_path: Path, load_search_app: Callable[..., Any]) -> None:
    store = tmp_path / "q"
    settings = Settings(qdrant_path=str(store))
    assert run_sync(settings, Secrets(settings), source_uri=str(ROOT / "sample-kb")).error is None
    call = load_search_app(QDRANT_PATH=str(store))
    health = json.loads(call(event("GET", "/health"))["body"])
    assert health["status"] == "ok" and health["last_sync"] is None  # /health alone never builds the search path
    assert call(event("GET", "/search", "q=restore+snapshot"))["statusCode"] == 200
    health = json.loads(call(event("GET", "/health"))["body"])
    last = health["last_sync"]
    assert last["kind"] == "reconcile" and 0 <= last["age_s"] < 300
    assert dt.datetime.fromisoformat(last["at"]) <= dt.datetime.now(dt.UTC)
    service = call.module.api.container.search()
    reads: list[float] = []
    retriever = service.retriever
    original = retriever.metadata

    def counting(timeout_s: float = 10.0) -> dict[str, Any]:
        reads.append(time.monotonic())
        return original(timeout_s)

    retriever.metadata = counting  # count the store reads behind the probes (the probe itself runs unpatched)
    started = time.monotonic()
    for _ in range(20):
        assert json.loads(call(event("GET", "/health"))["body"])["last_sync"]["at"] == last["at"]
    elapsed = time.monotonic() - started
    assert len(reads) <= 1 + elapsed / 2  # at most one read per 2 s on the embedded store, not one per probe


# -- kbsearch serve --watch ------------------------------------------------------------------------------------

NOTE = "---\ntitle: {title}\ntags: [watch]\n---\n# {title}\n\n{body}\n\n## More\n\nSecond section: {body}.\n"


def search_paths(base: str, query: str) -> list[str]:
    answer = httpx.get(f"{base}/search", params={"q": query, "top_k": 20, "rerank": "false"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return [hit["path"] for hit in answer.json()["results"]]


def until(predicate: Callable[[], bool], timeout_s: float = 60.0, log: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    assert predicate(), f"condition not met in time; server output:\n{log()[-4000:]}"


@contextlib.contextmanager
def watching(
    tmp_path: Path, notes: dict[str, str], **settings: str
) -> Iterator[tuple[ServeProcess, dict[str, str], Path]]:
    """`kbsearch serve --watch` of a folder holding ``notes`` (path → text), BM25 only (with these ``settings``),
    once its initial sync is done: the server, its environment, the folder."""
    from tests.integration.test_notes_graph import write_kb

    kb = write_kb(tmp_path / "kb", notes)
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb), EMBEDDING_API_KEY="",
                         EMBEDDING_API_KEY_PARAM="", **settings)  # fmt: skip
    with serve_process(env, cwd=ROOT, args=["--watch"]) as served:
        until(lambda: "initial sync" in served.text(), log=served.text)
        yield served, env, kb


def snapshot(path: Path) -> dict[str, str]:
    settings = Settings(qdrant_path=str(path))
    store = open_store(settings, Secrets(settings))
    try:
        points = store.points()
    finally:
        store.close()
    out = {}
    for pid, payload in points.items():
        payload.pop("indexed_at", None)
        payload.pop("links_at", None)  # the link targets' generation: the store's history
        out[pid] = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return out


@pytest.mark.parametrize("poll", [False, True], ids=["events", "polling"])
def test_watch_mode_converges_to_a_full_sync_whatever_the_editor_does(tmp_path: Path, poll: bool) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(ROOT / "sample-kb", kb)
    store = tmp_path / "q"
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(kb))
    args = ["--watch", *(["--poll"] if poll else [])]
    with serve_process(env, cwd=ROOT, args=args) as served:
        base = served.base_url
        until(lambda: "initial sync" in served.text())
        statuses: list[int] = []
        stop = threading.Event()

        def hammer() -> None:  # searches all along: never a 503 while the index changes underneath
            while not stop.is_set():
                statuses.append(httpx.get(f"{base}/search", params={"q": "snapshot"}, timeout=30).status_code)

        thread = threading.Thread(target=hammer, daemon=True)
        thread.start()
        try:
            # a plain save
            (kb / "en" / "zorblax.md").write_text(NOTE.format(title="Zorblax", body="zorblax frobnicator"))
            log = served.text
            until(lambda: "en/zorblax.md" in search_paths(base, "zorblax"), log=log)
            # temporary file + rename over the note (vim, VS Code, most editors)
            tmp = kb / "en" / ".zorblax.md.swp"
            tmp.write_text(NOTE.format(title="Zorblax", body="quuxification only"))
            os.replace(tmp, kb / "en" / "zorblax.md")
            until(lambda: "en/zorblax.md" in search_paths(base, "quuxification"), log=log)
            assert "en/zorblax.md" not in search_paths(base, "frobnicator")
            # delete + create under another name (a rename through the file manager)
            (kb / "en" / "zorblax.md").unlink()
            (kb / "en" / "renamed.md").write_text(NOTE.format(title="Renamed", body="quuxification again"))
            until(lambda: search_paths(base, "quuxification") == ["en/renamed.md"], log=log)
            # a burst of saves of one note: the last one wins
            for i in range(30):
                (kb / "en" / "renamed.md").write_text(NOTE.format(title="Renamed", body=f"burstword{i} quux"))
            until(lambda: search_paths(base, "burstword29") == ["en/renamed.md"], log=log)
            # a checkout touching 500 notes: new folder of notes, edits, deletes, a folder renamed
            (kb / "bulk").mkdir()
            for i in range(500):
                (kb / "bulk" / f"n{i:03}.md").write_text(NOTE.format(title=f"Bulk {i}", body=f"bulkterm item{i}"))
            for i in range(0, 500, 5):
                (kb / "bulk" / f"n{i:03}.md").unlink()
            for i in range(1, 500, 7):
                (kb / "bulk" / f"n{i:03}.md").write_text(NOTE.format(title=f"Bulk {i}", body=f"edited{i} term"))
            os.rename(kb / "ru", kb / "ру-переименовано")
            until(lambda: "bulk/n499.md" in search_paths(base, "item499"), log=log)
            until(lambda: "bulk/n008.md" in search_paths(base, "edited8"), log=log)
            moved = "ру-переименовано/Инцидент с массовым удалением.md"
            until(lambda: moved in search_paths(base, "INC-107 массовым удалением"), log=log)  # the last change
            time.sleep(1.5)  # past the watcher's grouping (at most 1 s) of anything still in flight
            handed = subprocess.run(  # `kbsearch index` while the server holds the store: the server runs it
                [*KBSEARCH_CMD, "index", "--json", str(kb)], env=env, cwd=ROOT, capture_output=True, text=True,
                timeout=300, check=False,
            )  # fmt: skip
            assert handed.returncode == 0, handed.stderr
            assert "handed to the kbsearch serve" in handed.stderr
            done = json.loads(handed.stdout)  # the watcher alone applied the checkout: the full diff finds nothing
            assert (done["added"], done["updated"], done["deleted"]) == (0, 0, 0), done
        finally:
            stop.set()
            thread.join(timeout=60)
        assert statuses and set(statuses) == {200}
        time.sleep(1.0)  # the last debounce window
        again = subprocess.run(
            [*KBSEARCH_CMD, "index", "--json", str(kb)], env=env, cwd=ROOT, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        report = json.loads(again.stdout)
        assert (report["added"], report["updated"], report["deleted"]) == (0, 0, 0), report  # already converged
    clean = tmp_path / "clean"
    settings = Settings(qdrant_path=str(clean))
    assert run_sync(settings, Secrets(settings), source_uri=str(kb)).error is None
    assert snapshot(store) == snapshot(clean)


@pytest.mark.parametrize("poll", [False, True], ids=["events", "polling"])
def test_watch_mode_applies_an_access_file_change_at_once(tmp_path: Path, poll: bool) -> None:
    """Under ``kbsearch serve --watch`` a save of the KB-root ``_access.yaml`` reaches every note's groups in the
    run it triggers (no full sync): a folder restricted is gone for a caller without a key, relaxed it is back."""
    kb = tmp_path / "kb"
    for path, title, body in (("pub/welcome.md", "Welcome", "zqwelcome"), ("hr/pay.md", "Pay", "zqpay bands"),
                              ("hr/deep/review.md", "Review", "zqpay review")):  # fmt: skip
        (kb / path).parent.mkdir(parents=True, exist_ok=True)
        (kb / path).write_text(NOTE.format(title=title, body=body), encoding="utf-8")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb))
    with serve_process(env, cwd=ROOT, args=["--watch", *(["--poll"] if poll else [])]) as served:
        base, log = served.base_url, served.text
        until(lambda: "initial sync" in served.text())
        assert sorted(search_paths(base, "zqpay")) == ["hr/deep/review.md", "hr/pay.md"]
        (kb / "_access.yaml").write_text("hr/: [hr]\n", encoding="utf-8")
        until(lambda: search_paths(base, "zqpay") == [], log=log)
        assert search_paths(base, "zqwelcome") == ["pub/welcome.md"]
        (kb / "_access.yaml").write_text("hr/: [\n", encoding="utf-8")  # unusable: nothing changes, it says why
        until(lambda: "error: _access.yaml" in served.text(), log=log)
        (kb / "pub" / "late.md").write_text(NOTE.format(title="Late", body="zqlate"), encoding="utf-8")
        until(lambda: served.text().count("error: _access.yaml") >= 2, log=log)  # a save meanwhile waits too
        assert search_paths(base, "zqpay") == [] and search_paths(base, "zqlate") == []
        (kb / "_access.yaml").write_text("hr/deep/: [hr]\n", encoding="utf-8")  # changed: only hr/deep/
        until(lambda: search_paths(base, "zqpay") == ["hr/pay.md"], log=log)
        assert search_paths(base, "zqlate") == ["pub/late.md"]  # retried with the change that fixed the file
        (kb / "_access.yaml").unlink()  # deleted: public again
        until(lambda: sorted(search_paths(base, "zqpay")) == ["hr/deep/review.md", "hr/pay.md"], log=log)
        assert "initial sync" in log() and "incremental sync" not in log()  # applied as changes, no full sync


def test_index_while_a_plain_server_holds_the_store_hands_off_or_says_what_to_do(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(ROOT / "sample-kb", kb)
    store = tmp_path / "q"
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(kb))
    subprocess.run([*KBSEARCH_CMD, "index", str(kb)], env=env, cwd=ROOT, capture_output=True, check=True)
    with serve_process(env, cwd=ROOT) as served:
        assert httpx.get(f"{served.base_url}/search", params={"q": "snapshot"}, timeout=30).status_code == 200
        (kb / "en" / "handoff.md").write_text(NOTE.format(title="Handoff", body="handoffword"))
        run = subprocess.run(
            [*KBSEARCH_CMD, "index", "--json", str(kb)], env=env, cwd=ROOT, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["added"] == 1
        assert search_paths(served.base_url, "handoffword") == ["en/handoff.md"]
        # without the hand-off socket (an older server, or another tool holding the store): what to do, exactly
        (store / "kb.serve.sock").unlink()
        blocked = subprocess.run(
            [*KBSEARCH_CMD, "index", str(kb)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
            check=False,
        )  # fmt: skip
        assert blocked.returncode == 75 and "Traceback" not in blocked.stderr + blocked.stdout  # held elsewhere
        assert "another process has it open" in blocked.stdout and "kbsearch serve" in blocked.stdout


@pytest.mark.parametrize("poll", [False, True], ids=["events", "polling"])
def test_watch_mode_never_deletes_most_of_the_index_for_a_folder_gone_missing(tmp_path: Path, poll: bool) -> None:
    """The watched folder emptied at once (an unmounted network share leaves its empty mount point, as `--poll`'s
    walk sees it; the folder moved away and an empty one made in its place): the watch applied every note as
    deleted, one by one (the per-note changes bypassed the mass-delete guard a full sync keeps,
    `MAX_DELETE_RATIO`), and when the share came back it re-read and re-embedded every note. Now a batch that
    would delete more than that share of the indexed notes runs the full sync, whose guard blocks it, says so, and
    keeps the index; the folder back, nothing is re-indexed."""
    kb, away = tmp_path / "kb", tmp_path / "kb.away"
    notes = {f"n{i}.md": NOTE.format(title=f"Mount {i}", body=f"zqmount item{i}") for i in range(8)}
    for name, text in notes.items():
        (kb / "sub" / name).parent.mkdir(parents=True, exist_ok=True)
        (kb / "sub" / name).write_text(text, encoding="utf-8")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb))
    with serve_process(env, cwd=ROOT, args=["--watch", *(["--poll"] if poll else [])]) as served:
        base, log = served.base_url, served.text
        until(lambda: "initial sync" in served.text())
        assert len(search_paths(base, "zqmount")) == 8
        (kb / "sub").rename(away)  # the share's files gone at once; its mount point stays
        until(lambda: "would delete 8 of 8 indexed notes" in served.text(), log=log)
        assert len(search_paths(base, "zqmount")) == 8, log()
        away.rename(kb / "sub")
        time.sleep(1.5)  # the folder back: whatever the watch does, nothing is re-indexed
        assert len(search_paths(base, "zqmount")) == 8, log()
        runs = re.findall(r"--watch: ([^:\n]+(?:: [^:\n]+)?): (\d+) added, (\d+) updated, (\d+) deleted", log())
        assert runs[0][0] == "initial sync" and len(runs) >= 2, runs
        assert all(run[1:] == ("0", "0", "0") for run in runs[1:]), runs  # nothing deleted, nothing re-indexed


@pytest.mark.parametrize("hard", [False, True], ids=["symlink", "hard-link"])
@pytest.mark.parametrize("poll", [False, True], ids=["events", "polling"])
def test_watch_mode_never_indexes_a_link_to_a_restricted_note_as_public(tmp_path: Path, poll: bool, hard: bool) -> None:
    """A link saved under `--watch` in a public folder to a note of a restricted one (`pub/shortcut.md ->
    ../hr/pay.md`, or `ln hr/pay.md pub/shortcut.md`): the event run read it as a note of `pub/` and indexed the HR
    note's text as public, found and read by a caller without a key. It is no note (as a full sync lists it):
    nothing indexed at its path, the read by path refused; the HR note stays its group's (a hard link's other path
    is no note either: neither is the original)."""
    kb = tmp_path / "kb"
    for path, title, body in (("pub/welcome.md", "Welcome", "zqwelcome"), ("hr/pay.md", "Pay", "zqpay bands")):
        (kb / path).parent.mkdir(parents=True, exist_ok=True)
        (kb / path).write_text(NOTE.format(title=title, body=body), encoding="utf-8")
    (kb / "_access.yaml").write_text("hr/: [hr]\n", encoding="utf-8")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb))
    with serve_process(env, cwd=ROOT, args=["--watch", *(["--poll"] if poll else [])]) as served:
        base, log = served.base_url, served.text
        until(lambda: "initial sync" in served.text())
        assert search_paths(base, "zqpay") == [] and search_paths(base, "zqwelcome") == ["pub/welcome.md"]
        if hard:
            os.link(kb / "hr" / "pay.md", kb / "pub" / "shortcut.md")
        else:
            (kb / "pub" / "shortcut.md").symlink_to("../hr/pay.md")
        time.sleep(0.5)
        (kb / "pub" / "late.md").write_text(NOTE.format(title="Late", body="zqlate"), encoding="utf-8")
        until(lambda: search_paths(base, "zqlate") == ["pub/late.md"], log=log)  # the link's change applied before
        assert search_paths(base, "zqpay") == [], log()
        read = httpx.get(f"{base}/notes/pub/shortcut.md", timeout=30)  # an entry that is no note, as a FIFO is
        reason = "hard link to another note of the KB" if hard else "symlink to another file of the KB"
        assert read.status_code == 422 and reason in read.text, read.text
        assert "zqpay" not in read.text and "hr/pay" not in read.text


def test_watch_mode_applies_an_edit_of_the_file_the_access_file_links_to(tmp_path: Path) -> None:
    """`_access.yaml` kept as a link to a file elsewhere in the KB (`config/rules.yaml`, a folder of settings): an
    edit of the target restricting `hr/` reached no note under `--watch` with file events (the event names the
    target, which is neither a note nor the root's access file, so it was dropped; polling stats the link and saw
    it), and the HR notes stayed public until the server restarted. An event of the file the access file resolves
    to is the access file's."""
    kb = tmp_path / "kb"
    for path, title, body in (("pub/welcome.md", "Welcome", "zqwelcome"), ("hr/pay.md", "Pay", "zqpay bands")):
        (kb / path).parent.mkdir(parents=True, exist_ok=True)
        (kb / path).write_text(NOTE.format(title=title, body=body), encoding="utf-8")
    (kb / "config").mkdir()
    (kb / "config" / "rules.yaml").write_text("pub/: [public]\n", encoding="utf-8")
    (kb / "_access.yaml").symlink_to("config/rules.yaml")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb))
    with serve_process(env, cwd=ROOT, args=["--watch"]) as served:
        base, log = served.base_url, served.text
        until(lambda: "initial sync" in served.text())
        assert search_paths(base, "zqpay") == ["hr/pay.md"]
        (kb / "config" / "rules.yaml").write_text("hr/: [hr]\n", encoding="utf-8")
        until(lambda: search_paths(base, "zqpay") == [], timeout_s=20, log=log)
        assert search_paths(base, "zqwelcome") == ["pub/welcome.md"]
