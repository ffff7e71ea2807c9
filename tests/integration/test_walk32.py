"""Round 32: a new user's hour (walk32): README followed from a fresh clone, through the real interfaces (`kbsearch`
and `make` spawned as processes, the way a user starts them). Each test fails on main's code before its fix."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from kbsearch_tools.fakes import FakeProvider, provider_env
from kbsearch_tools.local.live import wait_until
from kbsearch_tools.local.process import serve_process
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env


def _kbsearch(*args: str, cwd: Path | str = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, cwd=cwd, env=subprocess_env(**env),
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip


def _invoked_body(run: subprocess.CompletedProcess[str]) -> tuple[int, dict[str, object]]:
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    return result["statusCode"], json.loads(result["body"])


def test_make_eval_takes_the_oracle_as_make_run_and_make_index_do() -> None:
    """README: `make run ORACLE=e5` (and `make index`, `make serve`, every `make eval-*`) take ORACLE; `make eval
    ORACLE=e5`, the next thing to try, ran both evals without it: every phase but BM25 "skipped: needs an embedding
    provider", ORACLE ignored without a word. It passes the oracle now, its vectors cached where the other targets
    keep them (kbsearch's default beside the store since tidy33: test_tidy33); without ORACLE, as before."""
    if shutil.which("make") is None:
        pytest.skip("no make here")
    for oracle, expected in (("e5", " --oracle e5"), ("", "")):
        planned = subprocess.run(["make", "-n", "eval", *([f"ORACLE={oracle}"] if oracle else [])], cwd=ROOT,
                                 capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, check=True)  # fmt: skip
        evals = [line.rstrip() for line in planned.stdout.splitlines() if "kbsearch eval " in line]
        assert [line.split("kbsearch eval ", 1)[1] for line in evals] == [
            f"--kb sample-kb --queries eval/sample-kb-queries.yaml{expected}",
            f"--beir tests/fixtures/beir-mini{expected}",
        ], planned.stdout


def test_kbsearch_feedback_export_without_a_kb_names_its_option(tmp_path: Path) -> None:
    """README's Slack walk ends `kbsearch feedback export --beir /tmp/votes --kb sample-kb`. Without `--kb` (and no
    KB_SOURCE) it said `no KB source: pass a folder or s3://bucket/prefix, or set KB_SOURCE`, and the folder passed
    as `kbsearch index` takes it, after the command, was `unrecognized arguments: sample-kb`. Both name `--kb`
    now (as `kbsearch eval sample-kb` and `kbsearch mcp sample-kb` do)."""
    (tmp_path / "sample-kb").mkdir()
    alone = _kbsearch("feedback", "export", "--beir", str(tmp_path / "votes"), cwd=tmp_path)
    assert alone.returncode == 2 and not alone.stdout, (alone.returncode, alone.stdout)
    assert alone.stderr == ("kbsearch feedback: error: no KB source: pass --kb FOLDER (or --kb s3://bucket/prefix), "
                            "or set KB_SOURCE\n"), alone.stderr  # fmt: skip
    for command in (("feedback", "export", "--beir", str(tmp_path / "votes")), ("eval",), ("mcp",)):
        placed = _kbsearch(*command, "sample-kb", cwd=tmp_path)
        assert placed.returncode == 2 and not placed.stdout, (placed.returncode, placed.stdout)
        assert placed.stderr.splitlines()[-1].endswith(
            "error: unrecognized arguments: sample-kb (a KB folder is given as --kb sample-kb)"
        ), placed.stderr
    assert not (tmp_path / "votes").exists()


def test_a_request_to_the_function_while_a_serve_holds_the_store_says_which_and_where_to_send_it(
    tmp_path: Path,
) -> None:
    """README lists `kbsearch serve` and then `kbsearch invoke SearchFunction --event events/...`: with the server
    still running, the search event answered 503 `the local index is open in another process (a running kbsearch
    serve or kbsearch index) ...; stop that process, or reach the running server (kbsearch mcp --remote URL)`: an
    assistant's bridge, to a REST request, and the holder guessed where `GET /health` names it. It names the
    holder now (its pid and command, as health does) and says to send the request to that server, or stop it."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nsnapshot\n")
    store = str(tmp_path / "q")
    assert _kbsearch("index", str(kb), cwd=tmp_path, QDRANT_PATH=store).returncode == 0
    with serve_process(subprocess_env(QDRANT_PATH=store), cwd=ROOT) as served:
        assert httpx.get(f"{served.base_url}/search", params={"q": "snapshot"}, timeout=30).status_code == 200
        runs = [_kbsearch("invoke", "SearchFunction", "--event", f"events/{event}", QDRANT_PATH=store)
                for event in ("search.json", "search_get.json")]  # fmt: skip
        pid = served.process.pid
    for run in runs:
        status, body = _invoked_body(run)
        assert status == 503 and body["error"] == "index_unavailable", body
        assert body["message"] == (
            f"the local index is open in another process (pid {pid}: kbsearch serve), and the embedded store takes "
            "one process at a time: send the request to that server, http://127.0.0.1:3000 (the port kbsearch serve "
            "printed; 3000 by default), or stop it"
        ), body
        assert str(tmp_path) not in run.stdout  # no folder in what the caller is shown


def test_the_slack_event_without_a_signing_secret_names_the_setting() -> None:
    """`kbsearch invoke SearchFunction --event events/slack_command.json` (or a `/kb` to a `kbsearch serve` started
    without the secret) answered 503 `the Slack signing secret is not configured`: which setting is the server's
    log's to say, and the caller of `kbsearch serve` sees only the answer. It names the setting now (never a
    value)."""
    status, body = _invoked_body(_kbsearch("invoke", "SearchFunction", "--event", "events/slack_command.json"))
    assert status == 503 and body["error"] == "slack_not_configured", body
    assert body["message"] == ("the Slack signing secret is not configured: set SLACK_SIGNING_SECRET (deployed: the "
                               "stage's slack-signing-secret SSM parameter)"), body  # fmt: skip


def test_kbsearch_search_help_says_updated_after_takes_a_date_time() -> None:
    """`kbsearch search --help` said `--updated-after UPDATED_AFTER  ISO date`; README and the option itself take a
    date or a date-time (`2026-01-01T09:30:00Z`), and only notes updated after it."""
    shown = _kbsearch("search", "--help")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert ("--updated-after UPDATED_AFTER notes updated after this ISO date or date-time (2026-01-01, "
            "2026-01-01T09:30:00Z)") in text, shown.stdout  # fmt: skip
    dated = _kbsearch("search", "snapshot", "--updated-after", "2026-01-01T09:30:00Z", "--json",
                      QDRANT_PATH="/nonexistent/walk32")  # fmt: skip
    assert "--updated-after" not in dated.stderr, dated.stderr  # accepted: only the missing index is said


def test_kbsearch_eval_beir_of_a_wrong_folder_names_the_one_meant(tmp_path: Path) -> None:
    """README's Slack walk ends `kbsearch eval --beir /tmp/votes`; `make eval` scores `tests/fixtures/beir-mini`. A
    slip in the folder said `BEIR folder /tmp/vots does not exist` (a KB folder, `--queries` or `--event` name the
    one beside it), the set's `corpus.jsonl` given for its folder "does not exist", and the folder above a set
    `cannot read tests/fixtures/corpus.jsonl: No such file or directory`. Each names what was meant now."""
    fixtures = tmp_path / "fixtures"
    shutil.copytree(ROOT / "tests" / "fixtures" / "beir-mini", fixtures / "beir-mini")
    (tmp_path / "empty").mkdir()
    cases = {
        "fixtures/beir-mni": f"BEIR folder fixtures/beir-mni does not exist (in {tmp_path}): did you mean "
        "fixtures/beir-mini?",
        "fixtures/beir-mini/corpus.jsonl": "BEIR folder fixtures/beir-mini/corpus.jsonl is a file, not a folder: "
        "--beir takes the folder holding corpus.jsonl, queries.jsonl and qrels/ (here fixtures/beir-mini)",
        "fixtures": "fixtures is no BEIR folder: no corpus.jsonl in it; the BEIR folders in it: fixtures/beir-mini",
        "empty": "empty is no BEIR folder: no corpus.jsonl in it (--beir takes a folder of corpus.jsonl, "
        "queries.jsonl and qrels/<split>.tsv)",
    }
    for given, said in cases.items():
        run = _kbsearch("eval", "--beir", given, cwd=tmp_path)
        assert run.returncode == 2 and not run.stdout, (given, run.returncode, run.stdout)
        assert run.stderr == f"kbsearch eval: error: {said}\n", run.stderr


def test_a_dotenv_line_that_is_not_name_equals_value_is_named_by_its_number(tmp_path: Path) -> None:
    """README: settings come from the environment or `./.env`. A `.env` line written `KB_SOURCE kb` or `KEY: value`
    (YAML's way) was ignored without a word, and `kbsearch index` then said `no KB source: ... or set KB_SOURCE` of
    the setting the file seemed to set. Each such line is named now by its number (never its text: it may hold a
    key); comments, blank lines and `export NAME=value` are read as before."""
    (tmp_path / "kb").mkdir()
    (tmp_path / ".env").write_text(
        "# local settings\n\nKB_SOURCE kb\nexport QDRANT_PATH=q\nEMBEDDING_API_KEY: sk-walk32-secret\n"
    )
    run = _kbsearch("index", cwd=tmp_path)
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert run.stderr.splitlines() == [
        "kbsearch index: note: .env line 3 is not NAME=value and is ignored",
        "kbsearch index: note: .env line 5 is not NAME=value and is ignored",
        "kbsearch index: error: no KB source: pass a folder or s3://bucket/prefix, or set KB_SOURCE",
    ], run.stderr
    assert "sk-walk32" not in run.stdout + run.stderr


def test_kbsearch_slack_pressing_open_without_a_note_url_pattern_says_what_makes_it(tmp_path: Path) -> None:
    """README and `kbsearch slack --help` list `kb_open_1` among the buttons `--press` takes; against a `kbsearch
    serve` without KB_NOTE_URL_PATTERN it said only `the answer has no kb_open_1 button (it has: kb_share, ...)`.
    It names the setting now; with it set, the button is there."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "restore.md").write_text("# Restore a snapshot\n\nRestore the collection from its snapshot.\n")
    env = {"SLACK_SIGNING_SECRET": "local-secret", "SLACK_RESPONSE_HOSTS": "127.0.0.1",
           "QDRANT_PATH": str(tmp_path / "q")}  # fmt: skip
    assert _kbsearch("index", str(kb), QDRANT_PATH=env["QDRANT_PATH"]).returncode == 0
    for pattern in ("", "https://wiki.example.com/kb/{path}"):
        with serve_process(subprocess_env(**env, KB_NOTE_URL_PATTERN=pattern), cwd=ROOT) as served:
            pressed = _kbsearch("slack", "--api", served.base_url, "restore", "--press", "kb_open_1",
                                SLACK_SIGNING_SECRET="local-secret")  # fmt: skip
        if pattern:
            assert pressed.returncode == 0 and "── pressed kb_open_1 ──" in pressed.stdout, pressed.stderr
            continue
        assert pressed.returncode == 2, (pressed.returncode, pressed.stdout, pressed.stderr)
        assert pressed.stderr.strip().endswith(
            "error: the answer has no kb_open_1 button (it has: kb_share, kb_vote_up, kb_vote_down); an Open button "
            "is a note's link, made when the server has KB_NOTE_URL_PATTERN set (e.g. "
            "https://wiki.example.com/kb/{path})"
        ), pressed.stderr


def test_kbsearch_mcp_answers_in_utf8_a_person_can_read(tmp_path: Path) -> None:
    """README: `kbsearch mcp` started at a terminal takes a message a line. Its answers were ASCII JSON, a Russian
    search's `\\u0420\\u043e\\u0442...` (six bytes a letter, three times UTF-8's) where the HTTP answers have been
    UTF-8 since round 24. They are UTF-8 now, one line each; a note's U+2028 (a line separator to Python's
    `splitlines`) stays an escape (the same string to a JSON reader), so no answer's text splits its line."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "keys.md").write_text("# Ротация ключей\n\nКлючи провайдеров меняют раз в квартал.\u2028Вторая строка.\n")
    assert _kbsearch("index", str(kb), QDRANT_PATH=str(tmp_path / "q")).returncode == 0
    calls = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "kb_search", "arguments": {"query": "ротация ключей", "expand": False}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "kb_get_note", "arguments": {"path": "keys.md"}}},
    ]  # fmt: skip
    sent = b"".join(json.dumps(call).encode() + b"\n" for call in calls)
    run = subprocess.run([*KBSEARCH_CMD, "mcp", "--kb", str(kb)], input=sent, capture_output=True, cwd=tmp_path,
                         env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")), timeout=PROCESS_TIMEOUT_S,
                         check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4, run.stdout[:500]  # three answers, three lines
    answers = [json.loads(line.decode("utf-8")) for line in lines[:-1]]
    assert [a["id"] for a in answers] == [1, 2, 3], answers
    assert "Ротация ключей".encode() in lines[1] and b"\\u0420" not in lines[1], lines[1][:300]
    assert "Ротация ключей" in answers[1]["result"]["content"][0]["text"]
    assert b"\\u2028" in lines[2] and "\u2028".encode() not in lines[2], lines[2][:300]
    assert "\u2028Вторая строка." in answers[2]["result"]["structuredContent"]["body"]


def test_a_note_on_a_bm25_only_search_names_the_folder_the_index_was_built_from(tmp_path: Path) -> None:
    """`kbsearch serve --oracle e5` (or a search with an embedder) over an index built BM25 only said `kbsearch index
    <your KB folder> --oracle e5 embeds it`, of an index that records the folder it was built from (`kbsearch serve
    --watch` and `kbsearch mcp` read it). The note names that folder now, quoted as a shell takes it."""
    kb = tmp_path / "my kb"
    kb.mkdir()
    (kb / "restore.md").write_text("# Restore a snapshot\n\nRestore the collection from its snapshot.\n")
    store = str(tmp_path / "q")
    assert _kbsearch("index", str(kb), QDRANT_PATH=store).returncode == 0
    searched = _kbsearch("search", "restore", cwd=tmp_path, QDRANT_PATH=store, EMBEDDING_API_KEY="k",
                         EMBEDDING_URL="http://127.0.0.1:9/v1/openai/embeddings")  # fmt: skip
    assert searched.returncode == 0, searched.stderr
    assert ("note: the index was built BM25 only (it records no embedding model), so this search is BM25 only: "
            f"kbsearch index '{kb}' embeds it with Qwen/Qwen3-Embedding-8B") in searched.stderr, searched.stderr  # fmt: skip


def watched_save(tmp_path: Path, notes: dict[str, str], name: str, text: str) -> tuple[Path, str, str, str]:
    """A folder of ``notes`` (name: text) under `kbsearch serve --watch`; once its initial sync is said, ``name``
    saved with ``text``: (the folder, the server's output, its initial sync's line, the line of that save's sync)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for note, written in notes.items():
        (kb / note).write_text(written)
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"))
    with serve_process(env, cwd=ROOT, args=("--watch", str(kb))) as served:
        assert wait_until(lambda: "initial sync:" in served.text(), 60), served.text()
        (kb / name).write_text(text)
        assert wait_until(lambda: "1 changed note(s)" in served.text(), 30), served.text()
        output = served.text()
    lines = output.splitlines()
    initial = next(line for line in lines if "initial sync:" in line)
    return kb, output, initial, next(line for line in lines if "1 changed note(s)" in line)


def test_kbsearch_serve_watch_names_a_skipped_note_once(tmp_path: Path) -> None:
    """`make run` said sample-kb's broken note three times: `kbsearch index`'s summary, then, under `kbsearch serve
    --watch`, Lambda's JSON record (`{"level":"WARNING",...,"message":"note skipped: ..."}`) and the watch's own line
    naming it and why. The watch's syncs leave the JSON record out now (`kbsearch -v serve` keeps it); past the
    first three its line says which command names the rest."""
    notes = {"good.md": "# Good\n\nA good note.\n"} | {
        f"broken{i}.md": "---\ntitle: [unclosed\n---\n\nbody\n" for i in range(5)
    }
    kb, output, initial, saved = watched_save(
        tmp_path, notes, "broken0.md", "---\ntitle: [still unclosed\n---\n\nbody again\n"
    )
    assert "note skipped" not in output, output
    assert initial.endswith(
        "; 5 skipped: broken0.md (invalid YAML frontmatter at line 2: a list's [ not closed by ]); broken1.md (invalid "
        "YAML frontmatter at line 2: a list's [ not closed by ]); broken2.md (invalid YAML frontmatter at line 2: a "
        f"list's [ not closed by ]); and 2 more (kbsearch index {kb} names each)"
    ), initial
    broken = "broken0.md (invalid YAML frontmatter at line 2: a list's [ not closed by ])"
    assert saved.endswith(f"; 1 skipped: {broken}"), saved


def test_kbsearch_eval_says_what_else_runs_the_expanded_phase(deepinfra: FakeProvider) -> None:
    """`make eval ORACLE=e5` runs every phase with the model but `expanded`, skipped `needs an expansion model
    (EXPANSION_API_KEY)`: a key this user has not got, though README's `--classes ... --oracle e5 --phases
    ...,expanded` runs it with none (the manifest's translations). The reason names that way too. (An embedder,
    here the loopback fake's, as the oracle would be: without one the phase's embedding is the reason.)"""
    env = provider_env(deepinfra, roles=("EMBEDDING",)) | {"EMBEDDING_DIMENSIONS": "64"}
    run = _kbsearch("eval", "--kb", "sample-kb", "--queries", "eval/sample-kb-queries.yaml", "--phases",
                    "lexical,expanded", "--limit", "2", "--json", **env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["skipped"] == {
        "expanded": "needs an expansion model (EXPANSION_API_KEY; or --classes with --oracle: each query's "
        "translation from the manifest's parallel class)"
    }, run.stdout
