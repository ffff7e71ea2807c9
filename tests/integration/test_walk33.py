"""Round 33: a new user's hour (walk33): README followed from a fresh clone, through the real interfaces (`kbsearch`
spawned as processes, the way a user starts them; handlers through `kbsearch invoke` and `kbsearch serve`). Each
test fails on main's code before its fix."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from kbsearch_tools.local.live import wait_until
from kbsearch_tools.local.process import serve_process
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env


def _kbsearch(
    *args: str, cwd: Path | str = ROOT, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, cwd=cwd, env=subprocess_env(**env),
                          input=stdin, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _indexed(tmp_path: Path) -> tuple[Path, str]:
    kb = tmp_path / "my kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nsnapshot\n")
    store = str(tmp_path / "q")
    assert _kbsearch("index", str(kb), cwd=tmp_path, QDRANT_PATH=store).returncode == 0
    return kb, store


@pytest.mark.timeout(5 * PROCESS_TIMEOUT_S)
def test_the_indexer_function_invoked_beside_a_serve_says_what_to_do(tmp_path: Path) -> None:
    """README's Local use runs `kbsearch serve`, then `kbsearch invoke IndexerFunction --event
    events/indexer_schedule.json` ("needs KB_SOURCE"). With the server up (after a search), the function failed
    with `index storage failed: cannot open the embedded store at ...: another process has it open (pid N: kbsearch
    serve)` and nothing else, where `kbsearch index` says what to do; the function's error says it now, naming the
    KB it was given. And `kbsearch index --rebuild` beside a server was told "a kbsearch serve ... takes the sync
    itself (kbsearch index hands it over ...)": a rebuild is never handed over; it is told to stop the server."""
    kb, store = _indexed(tmp_path)
    with serve_process(subprocess_env(QDRANT_PATH=store), cwd=ROOT) as served:
        assert httpx.get(f"{served.base_url}/search", params={"q": "snapshot"}, timeout=30).status_code == 200
        invoked = _kbsearch("invoke", "IndexerFunction", "--event", "events/indexer_schedule.json",
                            QDRANT_PATH=store, KB_SOURCE=str(kb))  # fmt: skip
        rebuilt = _kbsearch("index", "--rebuild", str(kb), cwd=tmp_path, QDRANT_PATH=store)
        pid = served.process.pid
    assert invoked.returncode == 1, invoked.stderr  # the function failed: its error is the result printed
    error = json.loads(invoked.stdout)
    assert error["errorType"] == "IndexerRunError", error
    assert error["errorMessage"].endswith(
        f"another process has it open (pid {pid}: kbsearch serve): a kbsearch serve of this version takes the sync "
        f"itself: kbsearch index '{kb}' hands it over (kbsearch serve --watch syncs every save); otherwise stop that "
        "server and run this again, or index into another QDRANT_PATH"
    ), error
    assert rebuilt.returncode == 75, rebuilt.stdout + rebuilt.stderr  # held elsewhere, nothing changed
    said = next(line for line in rebuilt.stdout.splitlines() if line.startswith("  error: "))
    assert said.endswith(f"(pid {pid}: kbsearch serve): a kbsearch serve syncs into its store but does not rebuild "
                         "it: stop that server, run this again, then start it again"), said  # fmt: skip


@pytest.mark.timeout(4 * PROCESS_TIMEOUT_S)
def test_a_request_and_an_assistant_refused_by_a_serve_are_told_the_url_it_serves(tmp_path: Path) -> None:
    """`kbsearch serve --port N` (3000 taken by another server, or `make run PORT=...`), then README's `kbsearch
    invoke SearchFunction --event events/search.json` and an assistant's `kbsearch mcp`: the 503 said "send the
    request to that server (the URL its banner printed, http://127.0.0.1:3000 by default)" and the tool "launch
    this server as kbsearch mcp --remote http://127.0.0.1:3000 (the port kbsearch serve printed)": a URL where
    nothing answered, though `kbsearch search` names the server's own (round 24). Both name it now."""
    _, store = _indexed(tmp_path)
    port = _free_port()
    with serve_process(subprocess_env(QDRANT_PATH=store), cwd=ROOT, args=["--port", str(port)]) as served:
        assert served.base_url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{served.base_url}/search", params={"q": "snapshot"}, timeout=30).status_code == 200
        invoked = _kbsearch("invoke", "SearchFunction", "--event", "events/search.json", QDRANT_PATH=store)
        session = [
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "kb_search", "arguments": {"query": "snapshot"}}},
        ]  # fmt: skip
        assistant = _kbsearch("mcp", cwd=tmp_path, stdin="".join(json.dumps(m) + "\n" for m in session),
                              QDRANT_PATH=store)  # fmt: skip
        pid = served.process.pid
    assert invoked.returncode == 0, invoked.stderr
    result = json.loads(invoked.stdout)
    assert result["statusCode"] == 503, result
    assert json.loads(result["body"])["message"] == (
        f"the local index is open in another process (pid {pid}: kbsearch serve), and the embedded store takes one "
        f"process at a time: send the request to that server, http://127.0.0.1:{port}, or stop it"
    ), result
    assert assistant.returncode == 0, assistant.stderr
    answer = json.loads(assistant.stdout.splitlines()[-1])["result"]
    assert answer["isError"] is True, answer
    assert answer["content"][0]["text"] == (
        f"the local index is open in another process (pid {pid}: kbsearch serve), and the embedded store takes one "
        f"process at a time: launch this server as kbsearch mcp --remote http://127.0.0.1:{port} to search through "
        "it, or stop it"
    ), answer


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S)
def test_a_note_read_over_rest_names_the_rest_search(tmp_path: Path) -> None:
    """`curl .../notes/KB-020` (a hit's `doc_id`) and `curl .../notes/<a path no note has>` at `kbsearch serve`
    answered "... (use kb_search to find one)" and "...; use kb_search to find the right path": the MCP tool's
    name, to a REST caller, whose search is `GET /search`. The REST answers name it now; `kb_get_note`'s still name
    `kb_search` (test_adv25, test_paper_cuts_23)."""
    _, store = _indexed(tmp_path)
    with serve_process(subprocess_env(QDRANT_PATH=store), cwd=ROOT) as served:
        named = httpx.get(f"{served.base_url}/notes/A", timeout=30)
        missing = httpx.get(f"{served.base_url}/notes/nope.md", timeout=30)
    assert named.status_code == 400, named.text
    assert named.json()["message"] == (
        "not a note path: note paths end in .md: did you mean 'a.md'? (use GET /search?q=... to find one)"
    ), named.text
    assert missing.status_code == 404, missing.text
    assert missing.json()["message"] == "no note at 'nope.md'; use GET /search?q=... to find the right path"


def test_the_access_file_is_not_counted_as_an_attachment_ignored(tmp_path: Path) -> None:
    """README's Access section: an `_access.yaml` at the KB root gives folders their groups. `kbsearch index` of
    a KB with one (and one picture) said `2 attachments ignored`: the rules it had just applied were counted as a
    file it ignored. The summary counts the picture alone now, in the singular; `--json` the same."""
    kb = tmp_path / "kb"
    (kb / "hr").mkdir(parents=True)
    (kb / "hr" / "pay.md").write_text("# Pay\n\nsalary bands\n")
    (kb / "a.md").write_text("# A\n\nsnapshot\n")
    (kb / "diagram.png").write_bytes(b"\x89PNG\r\n")
    (kb / "_access.yaml").write_text("hr/: [hr]\n")
    summary = _kbsearch("index", str(kb), cwd=tmp_path, QDRANT_PATH=str(tmp_path / "q"))
    assert summary.returncode == 0, summary.stderr
    assert summary.stdout.splitlines()[1].endswith("0 skipped; 1 attachment ignored"), summary.stdout
    again = _kbsearch("index", str(kb), "--full", "--json", cwd=tmp_path, QDRANT_PATH=str(tmp_path / "q"))
    assert json.loads(again.stdout)["attachments_ignored"] == 1, again.stdout
    hidden = _kbsearch("search", "salary", "--scope", "public", cwd=tmp_path, QDRANT_PATH=str(tmp_path / "q"))
    assert hidden.stdout.startswith("0 results"), hidden.stdout  # the rules were read


def test_a_misspelt_template_parameter_names_the_one_meant() -> None:
    """`kbsearch invoke ... --parameter-overrides stage=prod` (and `kbsearch serve`'s) said `unknown template
    parameter stage`, where README promises a misspelt option or choice is named beside the one meant (`kbsearch
    invoke searchfunction` lists the functions). A parameter in another case, a setting's name given for the
    parameter that sets it, or a slip names the parameter; a name like none lists them. Exit 2, stdout empty."""
    cases = {
        "stage=prod": "unknown template parameter stage: did you mean Stage?",
        "EMBEDDING_DIMENSIONS=512": "unknown template parameter EMBEDDING_DIMENSIONS: did you mean EmbeddingDimensions?",
        "EmbedingDimensions=512": "unknown template parameter EmbedingDimensions: did you mean EmbeddingDimensions?",
    }
    for override, said in cases.items():
        run = _kbsearch("invoke", "SearchFunction", "--event", "events/health.json", "--parameter-overrides", override)
        assert run.returncode == 2 and not run.stdout, (run.returncode, run.stdout)
        assert run.stderr == f"kbsearch invoke: error: {said}\n", run.stderr
    listed = _kbsearch("serve", "--port", "0", "--parameter-overrides", "Nope=1")
    assert listed.returncode == 2 and not listed.stdout, (listed.returncode, listed.stdout)
    assert listed.stderr.startswith(
        "kbsearch serve: error: unknown template parameter Nope (the template's parameters: Stage, SsmPrefix, "
    ), listed.stderr
    assert "EmbeddingDimensions, " in listed.stderr, listed.stderr


def test_parameter_overrides_before_the_function_name_the_word_taken() -> None:
    """`kbsearch invoke --parameter-overrides Stage=prod SearchFunction --event events/health.json`: the option
    takes every word up to the next option, so it took the function's name, and the command said "the following
    arguments are required: LogicalId", of a command line that gives it. The word taken is named now, and where the
    LogicalId goes; with it first, the same overrides run."""
    taken = _kbsearch(
        "invoke", "--parameter-overrides", "Stage=prod", "SearchFunction", "--event", "events/health.json"
    )
    assert taken.returncode == 2 and not taken.stdout, (taken.returncode, taken.stdout)
    assert taken.stderr.splitlines()[-1] == (
        "kbsearch invoke: error: argument --parameter-overrides: 'SearchFunction' is not NAME=VALUE (the option "
        "takes every word up to the next option: put the other arguments, a function's LogicalId, before it)"
    ), taken.stderr
    first = _kbsearch(
        "invoke", "SearchFunction", "--parameter-overrides", "Stage=prod", "--event", "events/health.json"
    )
    assert first.returncode == 0 and json.loads(first.stdout)["statusCode"] == 200, first.stderr


@pytest.mark.timeout(5 * PROCESS_TIMEOUT_S)
def test_a_scope_group_no_note_is_restricted_to_is_said(tmp_path: Path) -> None:
    """README: `kbsearch search --scope hr,security` searches as such a caller. `--scope hrr` (a slip for `hr`)
    searched as `public` alone and said nothing: `0 results`, as if the group's notes held no match. A group no
    note of the index is restricted to (as its last full sync recorded them) is said on stderr, with the group
    meant; a group that holds notes, nothing. `kbsearch mcp --scope` logs it (an assistant's log pane), and
    `kbsearch serve`'s banner says it of a `KB_LOCAL_API_KEYS` key's group (by the key's position)."""
    kb = tmp_path / "kb"
    (kb / "hr").mkdir(parents=True)
    (kb / "hr" / "pay.md").write_text("# Pay\n\nsalary bands\n")
    (kb / "_access.yaml").write_text("hr/: [hr]\n")
    store = str(tmp_path / "q")
    assert _kbsearch("index", str(kb), cwd=tmp_path, QDRANT_PATH=store).returncode == 0
    slip = _kbsearch("search", "salary", "--scope", "hrr", cwd=tmp_path, QDRANT_PATH=store)
    assert slip.returncode == 0 and slip.stdout.startswith("0 results"), slip.stdout
    assert slip.stderr == (
        "note: no note is restricted to the group 'hrr' (--scope; the index's groups: hr, as of its last full sync), "
        "so it adds nothing to public: did you mean 'hr'?\n"
    ), slip.stderr
    held = _kbsearch("search", "salary", "--scope", "hr", cwd=tmp_path, QDRANT_PATH=store)
    assert held.returncode == 0 and held.stdout.startswith("1 result") and held.stderr == "", held
    keys = subprocess_env(QDRANT_PATH=store, KB_LOCAL_API_KEYS="k1:hr,k2:hrr")  # README: key1:hr+security,key2
    with serve_process(keys, cwd=ROOT) as served:
        wait_until(lambda: "KB_LOCAL_API_KEYS #2" in served.text(), 20)  # the banner, printed at once
        banner = served.text()
    assert (
        "  note: no note is restricted to the group 'hrr' (KB_LOCAL_API_KEYS #2; the index's groups: hr, as of "
        "its last full sync), so it adds nothing to public: did you mean 'hr'?\n" in banner
    ), banner
    assert "#1" not in banner and "k2" not in banner, banner  # a key is never shown
    assistant = _kbsearch("mcp", "--scope", "hrr", cwd=tmp_path, stdin="", QDRANT_PATH=store)  # its log pane
    assert assistant.returncode == 0, assistant.stderr
    assert (
        "WARNING kbsearch.mcp.stdio: no note is restricted to the group 'hrr' (--scope; the index's groups: hr, "
        "as of its last full sync), so it adds nothing to public: did you mean 'hr'?" in assistant.stderr
    ), assistant


def test_kbsearch_eval_of_a_split_or_phase_it_has_not_names_the_one_meant() -> None:
    """README's Evaluation: `kbsearch eval --beir DIR [--split test] [--phases lexical,dense,hybrid,...]`.
    `--split dev` of a set judged for `test` said `cannot read tests/fixtures/beir-mini/qrels/dev.tsv: No such
    file or directory`, and `--phases lexical,hybird` listed the phases without the one meant. Both name it now,
    exit 2, stdout empty (nothing indexed)."""
    for options, said in (
        (["--split", "dev"], "no split 'dev' in tests/fixtures/beir-mini: its qrels/ holds test (--split test)"),
        (["--phases", "lexical,hybird"], "unknown phase(s) hybird (hybird: did you mean hybrid?); choose from "
         "lexical, dense, hybrid, expanded, reranked"),
    ):  # fmt: skip
        run = _kbsearch("eval", "--beir", "tests/fixtures/beir-mini", *options)
        assert run.returncode == 2 and not run.stdout, (run.returncode, run.stdout)
        assert run.stderr.splitlines()[-1] == f"kbsearch eval: error: {said}", run.stderr


def test_kbsearch_index_of_s3_without_credentials_says_what_provides_them(tmp_path: Path) -> None:
    """README's Local use: `kbsearch index sample-kb` syncs "a folder (or s3://bucket/prefix)". On a laptop with no
    AWS profile the S3 form said `listing s3://... failed: NoCredentialsError: Unable to locate credentials` (walk31
    left it): which credentials, set how, was left to botocore's documentation. It names the ways now."""
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("AWS_")}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION="us-east-1", QDRANT_PATH=str(tmp_path / "q"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"))  # fmt: skip
    run = subprocess.run([*KBSEARCH_CMD, "index", "s3://my-kb-bucket/notes/"], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1] == (
        "  error: listing s3://my-kb-bucket/notes/ failed: NoCredentialsError: Unable to locate credentials (AWS "
        "credentials: aws configure, or AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; a folder's path "
        "needs none)"
    ), run.stdout


def test_the_bridge_to_a_local_serve_does_not_warn_of_a_key_it_needs_not(tmp_path: Path) -> None:
    """README: run `kbsearch serve --oracle e5` and give an assistant `kbsearch mcp --remote http://127.0.0.1:3000`.
    With no `KB_API_KEY` (a local serve asks for none unless `KB_LOCAL_API_KEYS` is set) the bridge logged
    `WARNING ... KB_API_KEY is not set: requests go to http://127.0.0.1:3000/mcp without an API key` in the
    assistant's log pane at every launch. To a loopback URL it is said only with -v now; to a deployment, still."""
    local = _kbsearch("mcp", "--remote", "http://127.0.0.1:3000", cwd=tmp_path, stdin="")
    assert local.returncode == 0 and local.stderr == "", local.stderr
    deployed = _kbsearch("mcp", "--remote", "https://api.example.invalid/prod", cwd=tmp_path, stdin="")
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stderr == ("WARNING kbsearch.mcp.stdio: KB_API_KEY is not set: requests go to "
                               "https://api.example.invalid/prod/mcp without an API key\n"), deployed.stderr  # fmt: skip


@pytest.mark.timeout(2 * PROCESS_TIMEOUT_S)
def test_kbsearch_bench_search_says_what_it_does_before_its_figures() -> None:
    """README's Benchmarks: `kbsearch bench search`. Its `--help` says `--json` prints "with no progress lines on
    stderr", but without `--json` a run of few queries printed none either: ~25 s of silence on 2 cores (the
    store of 5,000 generated chunks is built first), then the table. It says what it is building and then what it
    searches; `--json` stays silent."""
    args = ("bench", "search", "--queries", "2", "--chunks", "100", "--concurrency", "2")
    run = _kbsearch(*args)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == "  indexing 100 generated chunks into a throw-away store (fake embedder at full speed)", lines
    assert lines[1].startswith("  indexed 100 chunks in ") and lines[1].endswith(
        " s; searching 2 queries one at a time, then 2 in flight"
    ), lines
    assert run.stdout.startswith("bench search: 100 chunks, 2 queries"), run.stdout
    quiet = _kbsearch(*args, "--json")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert json.loads(quiet.stdout)["indexed_chunks"] == 100
