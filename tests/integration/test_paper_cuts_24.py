"""Paper cuts, round 24: what a new user still hit after round 23, each through the interface that user touches
(`kbsearch` as a spawned process; README against the template it documents)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from kbsearch_tools.local.process import serve_process
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env


def _kbsearch(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, env=subprocess_env(**env), cwd=cwd,
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip


# -- kbsearch search: a bad option named as it was typed ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--top-k", "0"], "--top-k: results are 1-20, got 0"),
        (["--top-k", "21"], "--top-k: results are 1-20, got 21"),
        (["--tag", ""], "--tag: an empty value matches no note"),
        (["--path-prefix", ""], None),  # not given: no error
        (["--updated-after", "2026-13-01"],
         "--updated-after: Input should be a valid date or datetime, month value is outside expected range of 1-12"),
        (["--updated-after", "yesterday"],
         "--updated-after: must be an ISO date or date-time string, e.g. 2026-01-01 or 2026-01-01T09:30:00Z"),
    ],
)  # fmt: skip
def test_a_bad_search_option_is_named_as_typed_and_said_once(args: list[str], said: str | None, tmp_path: Path) -> None:
    """`kbsearch search x --top-k 0` said "invalid search: top_k: ...", `--tag ""` "tags: Value error, ...": the
    API's field names, not the options typed; a month 13 was said twice, once per member of the date/date-time
    union (`updated_after.date: ...; updated_after.datetime: ...`)."""
    proc = _kbsearch("search", "x", *args, QDRANT_PATH=str(tmp_path / "q"))
    if said is None:
        assert "invalid search" not in proc.stderr, proc.stderr
        return
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.strip() == f"kbsearch search: error: invalid search: {said}", proc.stderr


def test_a_query_that_cannot_be_searched_is_said_once(tmp_path: Path) -> None:
    proc = _kbsearch("search", "???", QDRANT_PATH=str(tmp_path / "q"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("kbsearch search: error: invalid search: the query has no letter or digit: "
                                   "nothing to search for"), proc.stderr  # fmt: skip


# -- kbsearch search while a kbsearch serve holds the store: the URL it serves ---------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S)
def test_a_search_refused_by_a_server_holding_the_store_names_the_url_it_serves(tmp_path: Path) -> None:
    """`kbsearch search` while a `kbsearch serve --port 3024` held the store was told "search through that kbsearch
    serve (curl 'http://127.0.0.1:3000/search?q=...', on the port it printed)": a URL where nothing answers. The
    server's own port is read from its command line."""
    store = tmp_path / "q"
    env = subprocess_env(QDRANT_PATH=str(store))
    assert _kbsearch("index", str(ROOT / "sample-kb"), QDRANT_PATH=str(store)).returncode == 0
    port = _free_port()
    with serve_process(env | {"KB_SOURCE": str(ROOT / "sample-kb")}, cwd=ROOT, args=("--port", str(port))) as served:
        assert served.base_url == f"http://127.0.0.1:{port}", served.base_url
        assert httpx.get(served.base_url + "/search", params={"q": "snapshot"}, timeout=30).status_code == 200
        proc = _kbsearch("search", "snapshot", QDRANT_PATH=str(store))
    assert proc.returncode == 75 and proc.stdout == "", proc.stderr  # held elsewhere (was 2)
    assert proc.stderr.strip().endswith(
        f": kbsearch serve); stop it, or search through that kbsearch serve (curl "
        f"'http://127.0.0.1:{port}/search?q=...')"
    ), proc.stderr


# -- kbsearch index of a second KB into the first one's store -------------------------------------------------------


def test_indexing_another_folder_into_a_store_names_the_folder_it_was_built_from(tmp_path: Path) -> None:
    """`kbsearch index sample-kb`, then `kbsearch index ../other-kb` (the default store is one per working folder):
    the second run added its notes beside the first KB's and said "deletions blocked: would delete 35 of 35 indexed
    notes ... If that is intended, rerun with --allow-mass-delete", advice that deletes the first KB. It says the
    index was built from another folder, and what keeps the two apart."""
    store, other = tmp_path / "q", tmp_path / "other-kb"
    shutil.copytree(ROOT / "sample-kb" / "en" / "runbooks", other)
    assert _kbsearch("index", str(ROOT / "sample-kb"), QDRANT_PATH=str(store)).returncode == 0
    proc = _kbsearch("index", str(other), QDRANT_PATH=str(store))
    assert proc.returncode == 0, proc.stderr
    blocked = [line for line in proc.stdout.splitlines() if line.startswith("  deletions blocked: ")]
    assert blocked == [
        "  deletions blocked: would delete 35 of 35 indexed notes (100% > 50%); nothing deleted. This index was built "
        f"from another folder, {ROOT / 'sample-kb'}, whose notes it keeps beside this one's: to keep this KB apart, "
        "index it into its own store (QDRANT_PATH=<another folder>); to replace that KB with this one, kbsearch index "
        "--rebuild"
    ], proc.stdout
    again = _kbsearch("index", str(other), QDRANT_PATH=str(tmp_path / "q2"))  # its own store: nothing blocked
    assert again.returncode == 0 and "deletions blocked" not in again.stdout, again.stdout
    for note in other.glob("*.md"):  # the folder it was built from, emptied: the advice is the guard's own
        note.unlink()
    same = _kbsearch("index", str(other), QDRANT_PATH=str(tmp_path / "q2"))
    assert "nothing deleted. If that is intended, rerun with --allow-mass-delete" in same.stdout, same.stdout
    assert "built from another folder" not in same.stdout, same.stdout


# -- a misspelt setting, whatever the command -----------------------------------------------------------------------


def test_a_misspelt_setting_is_noted_whatever_the_command(tmp_path: Path) -> None:
    """`QDRANT_PAHT=/x kbsearch search ...` searched the default store, `SERCH_BUDGET_S=3` kept 10 s, with nothing
    said: only a missing KB_SOURCE or EMBEDDING_API_KEY named the variable meant (round 20). Every command now
    notes each variable set one slip away from a setting, once, on stderr; those two still where they are missed."""
    store = tmp_path / "q"
    assert _kbsearch("index", str(ROOT / "sample-kb"), QDRANT_PATH=str(store)).returncode == 0
    proc = _kbsearch("search", "snapshot", QDRANT_PATH=str(store), QDRANT_PAHT=str(tmp_path / "x"),
                     SERCH_BUDGET_S="3", KB_SOURCE_NOTES="far from any setting")  # fmt: skip
    assert proc.returncode == 0 and " for 'snapshot' in " in proc.stdout, proc.stderr
    assert proc.stderr.splitlines() == [
        "kbsearch search: note: QDRANT_PAHT is not a setting and is ignored: a typo for QDRANT_PATH?",
        "kbsearch search: note: SERCH_BUDGET_S is not a setting and is ignored: a typo for SEARCH_BUDGET_S?",
    ], proc.stderr
    plain = _kbsearch("search", "snapshot", QDRANT_PATH=str(store), KB_SOURCE_NOTES="x", HOME_DIR="y")
    assert plain.returncode == 0 and plain.stderr == "", plain.stderr
    missed = _kbsearch("index", QDRANT_PATH=str(store), KBSOURCE=str(ROOT / "sample-kb"))  # named where missed, once
    assert missed.stderr.strip() == ("kbsearch index: error: no KB source: pass a folder or s3://bucket/prefix, or "
                                     "set KB_SOURCE (KBSOURCE is set: a typo for KB_SOURCE?)"), missed.stderr  # fmt: skip


# -- a KB folder that is not there ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["index", "sampl-kb"], "kbsearch index: error: KB folder sampl-kb does not exist (in {root}): did you mean "
                                "sample-kb?"),
        (["index", "{root}/sample_kb"], "kbsearch index: error: KB folder {root}/sample_kb does not exist: did you "
                                        "mean {root}/sample-kb?"),
        (["mcp", "--kb", "smple-kb"], "kbsearch mcp: error: KB folder smple-kb does not exist (in {root}): did you "
                                      "mean sample-kb?"),
        (["index", "{root}/no-such-folder-at-all"], "kbsearch index: error: KB folder {root}/no-such-folder-at-all does "
                                                    "not exist"),
    ],
)  # fmt: skip
def test_a_kb_folder_that_is_not_there_names_the_folder_meant(args: list[str], said: str, tmp_path: Path) -> None:
    """`kbsearch index sampl-kb` said "KB folder sampl-kb does not exist or is not a folder": neither the folder a
    relative path was looked for in, nor the one beside it that was meant."""
    proc = _kbsearch(*[arg.replace("{root}", str(ROOT)) for arg in args], QDRANT_PATH=str(tmp_path / "q"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == said.replace("{root}", str(ROOT)), proc.stderr


# -- the deploy story: README against template.yaml -----------------------------------------------------------------


def _template() -> dict[str, dict[str, object]]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)  # noqa: S506 (SafeLoader, tags as None)


def test_readme_names_every_template_parameter_in_its_table_and_every_output() -> None:
    """A new operator reads README's table of template parameters to deploy: `ExtraApiKeys` and `ExistingApiKeyIds`
    (more API keys, each with its access groups) were not in it, and six of the stack's outputs
    (`AccessGroupsParameter`, the event queue and its DLQ, ...) were named nowhere."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("Template parameters (`sam deploy --parameter-overrides`):", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([A-Z][A-Za-z0-9]+)`", "\n".join(row.split("|")[1] for row in table.splitlines()
                                                                    if row.startswith("| `"))))  # fmt: skip
    template = _template()
    assert sorted(set(template["Parameters"]) - named) == []
    assert sorted(name for name in template["Outputs"] if f"`{name}`" not in readme) == []


# -- a Slack answer's footer ------------------------------------------------------------------------------------------


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S)
def test_a_slack_answer_says_how_long_it_took_and_how_many_without_zeros(tmp_path: Path) -> None:
    """README's Slack walk (`kbsearch slack "qdrant snapshot"` against `kbsearch serve`): every answer's footer read
    "results 1–5 · 0.0 s" (a BM25 search of tens of ms, shown in seconds to one decimal), and an answer of one hit
    "results 1–1". Under a second the time is in milliseconds now, and one hit is "result 1"."""
    store = tmp_path / "q"
    assert _kbsearch("index", str(ROOT / "sample-kb"), QDRANT_PATH=str(store)).returncode == 0
    env = subprocess_env(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET="local-secret", SLACK_RESPONSE_HOSTS="127.0.0.1")
    with serve_process(env, cwd=ROOT) as served:
        many = _kbsearch("slack", "--api", served.base_url, "qdrant snapshot", QDRANT_PATH=str(store),
                         SLACK_SIGNING_SECRET="local-secret")  # fmt: skip
        one = _kbsearch("slack", "--api", served.base_url, "ротация ключей", QDRANT_PATH=str(store),
                        SLACK_SIGNING_SECRET="local-secret")  # fmt: skip
    assert many.returncode == 0 and one.returncode == 0, (many.stderr, one.stderr)
    footers = [line.strip() for line in many.stdout.splitlines() if line.strip().startswith("results ")]
    assert len(footers) == 1 and re.fullmatch(r"results 1–5 · (\d{1,3} ms|[1-9]\d*\.\d s)", footers[0]), many.stdout
    assert " 0.0 s" not in many.stdout, many.stdout
    footer = [line.strip().split(" · ")[0] for line in one.stdout.splitlines() if line.strip().startswith("результат")]
    assert footer == ["результат 1"], one.stdout  # a Russian question's answer is in Russian (walk35)


# -- make help ------------------------------------------------------------------------------------------------------


def test_make_alone_or_make_help_lists_every_target() -> None:
    """`make help` was "No rule to make target 'help'", and plain `make` started an install: the targets and their
    `##` descriptions were in the Makefile only. Both list every target now (`make format` and `make clean` had
    none), and `make run`'s line says its URL, not `$(HOST):$(PORT)`."""
    makefile = (ROOT / "Makefile").read_text()
    targets = [line.split(":", 1)[0] for line in makefile.splitlines() if re.match(r"[a-z][a-z-]*:", line)]
    for args in (["help"], []):
        proc = subprocess.run(["make", "-s", "-C", str(ROOT), *args], capture_output=True, text=True,
                              timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        listed = [line.split()[1] for line in proc.stdout.splitlines()]
        assert listed == targets, (listed, targets)
        assert "$(" not in proc.stdout, proc.stdout


# -- kbsearch mcp by hand --------------------------------------------------------------------------------------------


def _mcp(lines: list[str], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, "mcp", *args], input="".join(line + "\n" for line in lines),
                          capture_output=True, text=True, env=subprocess_env(**env), cwd=ROOT,
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip


INITIALIZE = ('{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
              '"capabilities":{},"clientInfo":{"name":"by-hand","version":"1"}}}')  # fmt: skip


@pytest.mark.parametrize("remote", [False, True])
def test_a_line_typed_by_hand_that_is_not_json_is_called_a_line(remote: bool, tmp_path: Path) -> None:
    """README's stdio walk types JSON-RPC a line at a time; a typo in one answered "Parse error: the request body
    is not valid JSON" (HTTP's word, over stdio), locally and through --remote alike."""
    args = ["--remote", "http://127.0.0.1:9"] if remote else ["--kb", str(ROOT / "sample-kb")]
    proc = _mcp(["{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"", "\xff"], *args,
                QDRANT_PATH=str(tmp_path / "q"), KB_API_KEY="k")  # fmt: skip
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [answer["error"]["message"] for answer in answers] == ["Parse error: the line is not valid JSON"] * 2, (
        proc.stdout
    )


def test_a_note_not_there_is_the_callers_answer_not_a_warning_in_the_log(tmp_path: Path) -> None:
    """`kb_get_note` of a path no note has answered isError with what to do, and `kbsearch mcp` (which logs warnings
    only, into the assistant's log) also wrote "WARNING kbsearch.browse: a note could not be read (error=no note at
    'en/nope.md')" for each: the caller's miss, not the operator's problem."""
    store = tmp_path / "q"
    assert _kbsearch("index", str(ROOT / "sample-kb"), QDRANT_PATH=str(store)).returncode == 0
    call = ('{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"kb_get_note","arguments":'
            '{"path":"en/nope.md"}}}')  # fmt: skip
    proc = _mcp([INITIALIZE, call], "--kb", str(ROOT / "sample-kb"), QDRANT_PATH=str(store))
    answer = json.loads(proc.stdout.splitlines()[-1])
    assert answer["result"]["isError"] is True, answer
    assert answer["result"]["content"][0]["text"] == "no note at 'en/nope.md'; use kb_search to find the right path"
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S)
def test_a_second_kb_handed_to_a_server_names_the_folder_the_index_was_built_from(tmp_path: Path) -> None:
    """The same second KB, its `kbsearch index` handed to the `kbsearch serve` holding the store (README's walk runs
    one): the server's sync said "If that is intended, rerun with --allow-mass-delete" too."""
    store, other = tmp_path / "q", tmp_path / "other-kb"
    shutil.copytree(ROOT / "sample-kb" / "en" / "runbooks", other)
    assert _kbsearch("index", str(ROOT / "sample-kb"), QDRANT_PATH=str(store)).returncode == 0
    with serve_process(subprocess_env(QDRANT_PATH=str(store)), cwd=ROOT):
        proc = _kbsearch("index", str(other), QDRANT_PATH=str(store))
    assert proc.returncode == 0 and "handed to the kbsearch serve" in proc.stderr, proc.stderr
    blocked = [line for line in proc.stdout.splitlines() if line.startswith("  deletions blocked: ")]
    assert len(blocked) == 1 and f"This index was built from another folder, {ROOT / 'sample-kb'}, " in blocked[0]
    assert "--allow-mass-delete" not in blocked[0], blocked


def test_mcp_remote_on_this_machine_with_nothing_listening_says_what_to_start(tmp_path: Path) -> None:
    """README: "bridge to it with --remote http://127.0.0.1:3000". With no `kbsearch serve` there, every message
    answered "cannot reach http://127.0.0.1:3000/mcp (ConnectError): check the URL and the network": on this
    machine it is the server that is missing, not the network."""
    port = _free_port()
    proc = _mcp([INITIALIZE], "--remote", f"http://127.0.0.1:{port}", KB_API_KEY="k", QDRANT_PATH=str(tmp_path / "q"))
    (answer,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert answer["error"]["message"] == (f"cannot reach http://127.0.0.1:{port}/mcp (ConnectError): nothing listens "
                                          f"on port {port} of this machine: is a kbsearch serve --port {port} "
                                          "running?"), answer  # fmt: skip
    far = _mcp([INITIALIZE], "--remote", "http://kb-search.invalid", KB_API_KEY="k", QDRANT_PATH=str(tmp_path / "q"))
    assert json.loads(far.stdout)["error"]["message"].endswith(": check the URL and the network"), far.stdout


# -- kbsearch invoke --event: a file that is not there (the lead, after cuts24's "left") ------------------------------


def test_an_event_file_that_is_not_there_names_the_one_meant() -> None:
    """`kbsearch invoke SearchFunction --event events/serch.json` said "No such file or directory", leaving the typo
    to be found among events/; it names the file beside it with the closest name, and where a relative path was
    looked for."""
    typo = _kbsearch("invoke", "SearchFunction", "--event", "events/serch.json")
    assert typo.returncode == 2 and typo.stdout == "", typo.stderr
    assert typo.stderr.strip() == (f"kbsearch invoke: error: cannot read event file events/serch.json: no such file "
                                   f"(in {ROOT}): did you mean events/search.json?"), typo.stderr  # fmt: skip
    far = _kbsearch("invoke", "SearchFunction", "--event", str(ROOT / "events" / "nothing-like-it.json"))
    assert far.returncode == 2 and far.stderr.strip().endswith("nothing-like-it.json: no such file"), far.stderr
