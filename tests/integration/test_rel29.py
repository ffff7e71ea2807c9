"""Round 29: reliability debts left by round 28 (RELIABILITY "Round 29: debts (rel29)"), through the real interfaces:
`kbsearch serve` and `kbsearch index` spawned. Each test fails on main's code before its fix
(`PYTHONPATH=/work/main/layers/kbsearch:/work/main/tools`)."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.local.process import serve_process
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_adv26 import SLOW_NOTE
from tests.integration.test_adv28a import one_request, read_answer, served_with_few_files
from tests.integration.test_adv28b import index_under, merge_store_metadata, store_metadata

# -- 1: a client dripping its requests on every connection ----------------------------------------------------------


def test_requests_dripped_on_every_connection_make_room_for_another_client_once_slow(tmp_path: Path) -> None:
    """rev28b's "Left": 64 connections (the limit under `ulimit -n 256`) each sending its request a byte every 0.5 s
    (every read within the 10 s idle timeout; a request within 30 s each, again and again) were all busy, never
    closed to make room: every other client was answered 429 for as long as they dripped. Now, with every slot taken
    and none idle, the request arriving longest (5 s or more) is answered 408 and closed, and the new client is
    served; the others keep dripping."""
    with served_with_few_files(tmp_path) as (port, err):
        pool = [socket.create_connection(("127.0.0.1", port), timeout=8) for _ in range(64)]
        try:
            for conn in pool:
                conn.sendall(b"POST /search HTTP/1.1\r\nHost: localhost\r\n")
                time.sleep(0.01)  # the first begun first: the one arriving longest
            early = one_request(port)
            assert early.startswith(b"HTTP/1.1 429"), early  # arriving under 5 s: still busy, never closed
            started = time.monotonic()
            while time.monotonic() - started < 6:  # a byte a connection every 0.5 s, past SLOW_EVICT_AFTER_S (5 s)
                for conn in pool:
                    conn.sendall(b"X")
                time.sleep(0.5)
            other = one_request(port)
            assert other.startswith(b"HTTP/1.1 200"), other  # it was a 429 Too Many Requests
            timed_out = read_answer(pool[0])
            assert timed_out.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), timed_out
            assert b"Connection: close\r\n" in timed_out and timed_out.endswith(b'{"message": "Request Timeout"}')
            for conn in pool[1:]:  # the rest were not closed: their requests end and are answered
                conn.sendall(b"-Y: 1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                assert read_answer(conn).startswith(b"HTTP/1.1 "), "answered"
        finally:
            for conn in pool:
                conn.close()
    said = "making room: 64 connections open at once, none idle; closing the request arriving longest"
    assert said in err[0], err[0][-3000:]
    assert "Traceback" not in err[0], err[0][-3000:]


# -- 3: a sync's log lines under kbsearch serve carry no search's Lambda context ------------------------------------


def _index(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, "index", *args], capture_output=True, text=True, env=subprocess_env(**env),
                          cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip


def _log_lines(output: list[str], message: str) -> list[dict[str, object]]:
    """The JSON log lines of ``output`` whose message begins with ``message``."""
    lines = [json.loads(line) for chunk in output for line in chunk.splitlines() if line.startswith("{")]
    return [line for line in lines if str(line.get("message", "")).startswith(message)]


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S)
def test_a_sync_handed_to_serve_logs_without_the_last_searchs_lambda_context(tmp_path: Path) -> None:
    """adv28b's "Found, left": a sync handed to `kbsearch serve` logged its `note skipped` line with the Lambda
    context of the last search the server answered (`function_name: kb-search-dev-search`, that request's
    `function_request_id`, `cold_start`): Powertools' keys were process-wide, and the server runs the search
    handler and the syncs in one process. Now an invocation's keys are its thread's, for that invocation: the
    sync's line carries none, and a search's own lines still carry theirs."""
    kb, store = tmp_path / "kb", tmp_path / "q"
    kb.mkdir()
    (kb / "a.md").write_text("# Alpha\n\nalpha backup rotation\n")
    env = {"QDRANT_PATH": str(store), "EMBEDDING_API_KEY": "", "EMBEDDING_API_KEY_PARAM": ""}
    assert _index(str(kb), **env).returncode == 0
    (kb / "bad.md").write_text("---\ntitle: [unclosed\n---\n\nbody\n")  # invalid YAML: skipped with a reason
    with serve_process(subprocess_env(**env, LOG_LEVEL="INFO", POWERTOOLS_LOG_LEVEL="INFO"), cwd=ROOT) as served:
        request = urllib.request.Request(f"{served.base_url}/search", data=b'{"query": "nonexistentterm"}',
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=PROCESS_TIMEOUT_S) as answer:
            assert answer.status == 200
        proc = _index(str(kb), **env)
        assert proc.returncode == 0 and "handed to the kbsearch serve" in proc.stderr, proc.stderr
        deadline = time.monotonic() + 10
        while not _log_lines(served.output, "note skipped: bad.md") and time.monotonic() < deadline:
            time.sleep(0.1)
        output = list(served.output)
    skipped, searched = _log_lines(output, "note skipped: bad.md"), _log_lines(output, "access")
    assert skipped and searched, "".join(output)[-3000:]
    for line in skipped:
        leaked = {k: v for k, v in line.items() if k.startswith("function_") or k == "cold_start"}
        assert not leaked, line  # it carried kb-search-dev-search's function_request_id
    assert searched[0]["function_name"] == "kb-search-dev-search" and searched[0]["cold_start"] is True
    assert isinstance(searched[0]["function_request_id"], str), searched[0]  # the search's own line: its context


# -- 2: kbsearch index --full tries every note again -----------------------------------------------------------------


def _skip_reason(report: dict[str, Any], path: str) -> str | None:
    return next((s["reason"] for s in report["skipped"] if s["path"] == path), None)


@pytest.mark.timeout(4 * PROCESS_TIMEOUT_S)
def test_a_full_index_tries_again_every_note_refused_as_slow_on_an_earlier_run(tmp_path: Path) -> None:
    """adv28b's "Found, left": `kbsearch index --full` skipped unparsed a note refused on an earlier run for a parse
    past NOTE_PARSE_LIMIT_S (it re-embedded, it did not re-parse refusals), and nothing said how else to retry but
    editing the note or raising the limit. Now a full sync tries every note again: one refused on a loaded host
    that parses well now is indexed and its entry dropped, one still too slow is refused anew (under this run's
    limit); every refusal's reason names `kbsearch index --full`."""
    kb, store = tmp_path / "kb", tmp_path / "q"
    kb.mkdir()
    (kb / "good.md").write_text("# Good\n\nA good note.\n")
    (kb / "slow.md").write_bytes(SLOW_NOTE)
    first = index_under(kb, store, "0.25")
    assert (_skip_reason(first, "slow.md") or "").endswith("(a full sync (kbsearch index --full) tries it again)")
    late = b"# Late\n\nA note refused while the host was loaded.\n"
    (kb / "late.md").write_bytes(late)
    etag = hashlib.md5(late, usedforsecurity=False).hexdigest()
    recorded = store_metadata(store)
    merge_store_metadata(store, {  # as a run on a loaded host writes it: its parse ran past 30 s
        "parse_refused": recorded["parse_refused"] | {"late.md": etag},
        "parse_refused_limits": recorded["parse_refused_limits"] | {"late.md": {"etag": etag, "limit_s": 30}},
    })  # fmt: skip
    again = index_under(kb, store, "0.25")
    for path in ("late.md", "slow.md"):
        why = _skip_reason(again, path) or ""
        assert "on an earlier run" in why and why.endswith("(a full sync (kbsearch index --full) tries it again)")
    full = index_under(kb, store, "0.25", "--full")
    assert _skip_reason(full, "late.md") is None and full["added"] == 1, full  # it was skipped: "on an earlier run"
    why = _skip_reason(full, "slow.md") or ""
    assert why.startswith("its parse ran past 0.25 s") and "on an earlier run" not in why, why  # parsed again
    slow_etag = hashlib.md5(SLOW_NOTE, usedforsecurity=False).hexdigest()
    assert store_metadata(store)["parse_refused"] == {"slow.md": slow_etag}  # late.md's entry dropped


# -- 4: two runs under different limits refusing one version keep the higher -------------------------------------


@pytest.mark.timeout(4 * PROCESS_TIMEOUT_S)
def test_a_refusal_another_run_recorded_under_a_higher_limit_is_kept_not_overwritten_by_a_lower(
    tmp_path: Path,
) -> None:
    """rev28a's "Left": two runs refusing one version of a note under different NOTE_PARSE_LIMIT_S (two versions'
    Lambdas, an event batch beside a full sync) merged the record as the last writer's limit, not the higher: a
    run under 0.25 s ending after one under 0.5 s had recorded the note left 0.25, and the next run under a limit
    between the two parsed it once more. Here `kbsearch index` under 0.25 s refuses the note first of its 600; while
    it indexes the rest, the record is written as the other run writes it (the same version, 0.5 s); the run's
    merge keeps 0.5."""
    kb, store = tmp_path / "kb", tmp_path / "q"
    kb.mkdir()
    (kb / "x.md").write_text("# X\n\nthe first note.\n")
    index_under(kb, store, "0.25")
    (kb / "0-slow.md").write_bytes(SLOW_NOTE)  # first in the run's order
    for i in range(600):  # past PARSE_PROCESS_FROM: parsed ahead; seconds of work after the slow note
        (kb / f"n{i:04}.md").write_text(f"# Note {i}\n\nbody {i} of the run\n")
    env = subprocess_env(QDRANT_PATH=str(store), EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM="",
                         NOTE_PARSE_LIMIT_S="0.25")  # fmt: skip
    run = subprocess.Popen([*KBSEARCH_CMD, "--verbose", "index", str(kb), "--json"], env=env, cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert run.stderr is not None
        seen = []
        for line in run.stderr:
            seen.append(line)
            if "note skipped: 0-slow.md: its parse ran past 0.25 s" in line:
                break
        assert seen and "0-slow.md" in seen[-1], "".join(seen)[-3000:]
        etag = hashlib.md5(SLOW_NOTE, usedforsecurity=False).hexdigest()
        metadata_file = next(store.glob("**/*.metadata.json"))
        recorded = json.loads(metadata_file.read_text())
        recorded["parse_refused"] = recorded.get("parse_refused", {}) | {"0-slow.md": etag}
        limits = recorded.get("parse_refused_limits", {}) | {"0-slow.md": {"etag": etag, "limit_s": 0.5}}
        recorded["parse_refused_limits"] = limits
        written = metadata_file.with_suffix(".other")
        written.write_text(json.dumps(recorded))
        written.replace(metadata_file)  # as the embedded store writes it (EdgeStore.set_metadata)
        out, err = run.communicate(timeout=PROCESS_TIMEOUT_S)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0 and json.loads(out)["added"] == 600, err[-3000:]
    assert store_metadata(store)["parse_refused_limits"]["0-slow.md"] == {"etag": etag, "limit_s": 0.5}  # was 0.25
