"""The leak suite: on every surface and for every kind of caller, nothing of a note the caller may not read (its
path, title, headings, text, a link to it) appears, and "forbidden" is indistinguishable from "missing".

The KB holds public notes (a folder rule), a folder-ruled note (hr/), a Cyrillic folder-ruled note, a single-group
and a multi-group frontmatter note, a folder-ruled multi-group note, and a note no rule lists (default deny).
Surfaces: GET/POST /search with every filter (path_prefix into each restricted folder included), /whoami, MCP
kb_search and kb_get_note in both protocol eras, Slack /kb and /kb share (signed, end to end through the worker),
``kbsearch search --scope``. Callers: no key, an unknown key, keys with one or several groups, Slack channels and
users.
"""

from __future__ import annotations

import json
import subprocess
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kbsearch import slack
from kbsearch.access import Scope
from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import REACH, REACH_GROUPS, REACH_SETS, reach_token
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.apigw import HttpRequest, build_event, parse_result
from tests.conftest import KBSEARCH_CMD, copy_store, subprocess_env
from tests.integration.test_access_reach import Recording

RULES = "pub/: [public]\nhr/: [hr]\nкадры/: [hr]\nsecurity/incidents/: [security, oncall]\n"
FRONT = "tags: [guide]\ntype: guide\nstatus: active\nupdated: 2026-05-01\n"


def note(title: str, body: str, access: str | None = None) -> str:
    extra = f"access: {access}\n" if access else ""
    return f"---\n{extra}{FRONT}---\n# {title}\n{body}\n"


#: path → (text, groups, markers that must never reach a caller who may not read it)
NOTES: dict[str, tuple[str, list[str], list[str]]] = {
    # A note's prose is shown as written to whoever may read it, so links here carry aliases: the name of a note a
    # reader may not open never appears in the text; the link itself (``links``) is what access must hide.
    "pub/Welcome.md": (note("Welcome", "welcome handbook: read [[Salary bands|the pay page]], [[security/incidents/"
                            "Breach 2026|the incident page]], [[Budget|the money page]], [[Onboarding]] and [[Never written|the "
                            "missing page]]"),
                       ["public"], []),
    "pub/Onboarding.md": (note("Onboarding", "welcome onboarding steps"), ["public"], []),
    "hr/Salary bands.md": (note("Salary bands", "welcome zqhrtoken bands\n## Grades zqhrheading\nwelcome grades, "
                                "see [[Onboarding]]"), ["hr"], ["Salary bands", "zqhrtoken", "zqhrheading"]),
    "кадры/Зарплата й.md": (note("Зарплата й", "welcome zqrutoken"), ["hr"], ["Зарплата", "zqrutoken"]),
    "finance/Budget.md": (note("Budget", "welcome zqfintoken\n## Forecast zqfinheading\nwelcome", "[finance]"),
                          ["finance"], ["Budget", "zqfintoken", "zqfinheading"]),
    "ops/Incident review.md": (note("Incident review", "welcome zqsectoken", "[security, oncall]"),
                               ["oncall", "security"], ["Incident review", "zqsectoken"]),
    "security/incidents/Breach 2026.md": (note("Breach 2026", "welcome zqbreachtoken, see [[Salary bands|pay]]"),
                                          ["oncall", "security"], ["Breach 2026", "zqbreachtoken"]),
    "misc/Unlisted.md": (note("Unlisted", "welcome zqdenytoken"), [], ["Unlisted", "zqdenytoken"]),
}  # fmt: skip

CALLER_MAP: dict[str, dict[str, Any]] = {
    "api_keys": {"id-hr": ["hr"], "id-sec": ["security"], "id-fin": {"name": "finance bot", "groups": ["finance"]},
                 "id-oncall-hr": ["oncall", "hr"], "id-both": ["hr", "security"]},
    "slack": {"T1": ["oncall"], "T1/C-hr": ["hr"], "T1/C-hr/U-sec": ["hr", "security"]},
}  # fmt: skip
KEY_GROUPS: dict[str | None, set[str]] = {
    None: set(), "id-unknown": set(), "id-hr": {"hr"}, "id-sec": {"security"}, "id-fin": {"finance"},
    "id-oncall-hr": {"oncall", "hr"}, "id-both": {"hr", "security"},
}  # fmt: skip
#: The caller mapping the index was built with: CALLER_MAP before ``hr+security`` was given to a key and a Slack
#: user. ``id-oncall-hr`` is one match of its set's reach token; ``id-both`` and ``T1/C-hr/U-sec`` (added to the
#: mapping since the last full sync) the matches of their groups.
INDEXED_MAP = {"api_keys": {k: v for k, v in CALLER_MAP["api_keys"].items() if k != "id-both"},
               "slack": {k: v for k, v in CALLER_MAP["slack"].items() if k != "T1/C-hr/U-sec"}}  # fmt: skip
FILTERS: list[dict[str, Any]] = [
    {}, {"tags": ["guide"]}, {"type": ["guide"]}, {"status": ["active"]}, {"updated_after": "2026-01-01"},
    {"path_prefix": "hr"}, {"path_prefix": "security/incidents"}, {"path_prefix": "кадры"}, {"path_prefix": "misc"},
    {"path_prefix": "finance"},
]  # fmt: skip


def readable(groups: set[str]) -> set[str]:
    held = groups | {"public"}
    return {p for p, (_, g, _) in NOTES.items() if held & set(g)}


def forbidden_markers(groups: set[str]) -> list[str]:
    visible = readable(groups)
    out = []
    for path, (_, _, markers) in NOTES.items():
        if path not in visible:
            out += [path, path.removesuffix(".md"), *markers]
    return out


def assert_no_leak(text: str, groups: set[str], where: str) -> None:
    for marker in forbidden_markers(groups):
        for form in {marker, json.dumps(marker)[1:-1], unicodedata.normalize("NFD", marker)}:
            assert form not in text, f"{where}: {marker!r} reached a caller holding {sorted(groups)}"


def write_kb(root: Path, notes: dict[str, tuple[str, list[str], list[str]]]) -> None:
    for path, (text, _, _) in notes.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    (root / "_access.yaml").write_text(RULES, encoding="utf-8")


@pytest.fixture(scope="module")
def leak_kb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The KB and its BM25 index (default deny), built once by the real indexer."""
    root = tmp_path_factory.mktemp("leaks")
    kb = root / "kb"
    write_kb(kb, NOTES)
    store = root / "q"
    settings = Settings(qdrant_path=str(store), qdrant_url="", embedding_api_key=None, access_default="deny",
                        access_groups=json.dumps(INDEXED_MAP))  # fmt: skip
    report = run_sync(settings, Secrets(settings), source_uri=str(kb))
    assert report.added == len(NOTES) and not report.skipped and report.error is None
    written = open_store(settings, Secrets(settings))
    try:
        assert written.metadata()[REACH_SETS] == ["hr+oncall"]  # callers of hr+security: their groups' matches
    finally:
        written.close()
    return kb, store


@pytest.fixture
def app(load_search_app, leak_kb: tuple[Path, Path], tmp_path: Path) -> Callable[[dict[str, Any]], Any]:
    kb, store = leak_kb
    copy_store(store, tmp_path / "q")
    return load_search_app(
        QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb), ACCESS_DEFAULT="deny", ACCESS_GROUPS=json.dumps(CALLER_MAP),
        SLACK_SIGNING_SECRET="test-signing-secret", SLACK_RESPONSE_HOSTS="127.0.0.1", SLACK_TOP_K="10",
    )  # fmt: skip


def call(app: Callable[[dict[str, Any]], Any], method: str, path: str, key_id: str | None, query: str = "",
         body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, str]:  # fmt: skip
    data = json.dumps(body).encode() if body is not None else b""
    hdrs = [("Content-Type", "application/json"), *(headers or {}).items()]
    event = build_event(HttpRequest(method, path, query, hdrs, data), path, {}, "dev", api_key=None)
    event["requestContext"]["identity"]["apiKeyId"] = key_id
    answer = parse_result(app(event))
    return answer.status, answer.body.decode("utf-8")


def paths_in(body: str) -> set[str]:
    return {hit["path"] for hit in json.loads(body)["results"]}


@pytest.mark.parametrize("key_id", list(KEY_GROUPS))
def test_rest_search_with_every_filter(app, key_id: str | None) -> None:
    from urllib.parse import urlencode

    groups = KEY_GROUPS[key_id]
    seen: set[str] = set()
    for filters in FILTERS:
        status, text = call(app, "POST", "/search", key_id, body={"query": "welcome", "top_k": 20, "filters": filters})
        assert status == 200, text
        assert_no_leak(text, groups, f"POST /search {filters}")
        found = paths_in(text)
        assert found <= readable(groups)
        seen |= found
        query = urlencode({"q": "welcome", "top_k": 20, **filters}, doseq=True)
        status, text = call(app, "GET", "/search", key_id, query=query)
        assert status == 200 and paths_in(text) == found, text
        assert_no_leak(text, groups, f"GET /search {filters}")
    assert seen == readable(groups)  # everything the caller may read is found: the filter is not just "nothing"
    for token in ("zqhrtoken", "zqfintoken", "zqsectoken", "zqbreachtoken", "zqdenytoken", "zqrutoken"):
        status, text = call(app, "POST", "/search", key_id, body={"query": token, "top_k": 20})
        answer = json.loads(text)  # the answer repeats the caller's own query; nothing else may carry the token
        assert_no_leak(json.dumps([answer["results"], answer["meta"]["candidates"]]), groups, f"search {token}")
        assert json.loads(text)["meta"]["candidates"] == len(paths_in(text))  # counts leak nothing either
    status, text = call(app, "GET", "/whoami", key_id)
    assert status == 200 and set(json.loads(text)["groups"]) == groups | {"public"}
    assert all(other not in text for other in KEY_GROUPS if other and other != key_id)  # only its own id


def test_links_into_restricted_notes_are_hidden(app) -> None:
    """A hit's links leave out those naming a note its caller may not read, and (every caller here being hidden
    some note: misc/Unlisted.md is readable by nobody) those naming no note, so the two cannot be told apart."""
    for key_id, groups in KEY_GROUPS.items():
        _, text = call(app, "POST", "/search", key_id, body={"query": "handbook", "top_k": 20})
        [welcome] = [h for h in json.loads(text)["results"] if h["path"] == "pub/Welcome.md"]
        expected = {"Onboarding"} | ({"Salary bands"} if "hr" in groups else set())
        expected |= {"security/incidents/Breach 2026"} if groups & {"security", "oncall"} else set()
        expected |= {"Budget"} if "finance" in groups else set()
        assert set(welcome["links"]) == expected, (key_id, welcome["links"])


def mcp(app, key_id: str | None, era: str, tool: str, arguments: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                               "params": {"name": tool, "arguments": arguments}}  # fmt: skip
    headers: dict[str, str] = {}
    if era == "modern":
        request["params"]["_meta"] = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                      "io.modelcontextprotocol/clientCapabilities": {}}  # fmt: skip
        headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": tool}
    status, text = call(app, "POST", "/mcp", key_id, body=request, headers=headers)
    return status, json.loads(text)


def path_variants(path: str) -> list[str]:
    """Ways a client may spell a note's path: as is, decomposed (NFD), another case."""
    return sorted({path, unicodedata.normalize("NFD", path), path.upper(), path.swapcase(), path.lower()})


@pytest.mark.parametrize("era", ["legacy", "modern"])
@pytest.mark.parametrize("key_id", [None, "id-hr", "id-sec", "id-oncall-hr"])
def test_mcp_tools_in_both_eras(app, key_id: str | None, era: str) -> None:
    groups = KEY_GROUPS[key_id]
    status, answer = mcp(app, key_id, era, "kb_search", {"query": "welcome", "top_k": 20})
    assert status == 200 and not answer["result"]["isError"]
    assert_no_leak(json.dumps(answer, ensure_ascii=False), groups, f"kb_search ({era})")
    assert {h["path"] for h in answer["result"]["structuredContent"]["results"]} == readable(groups)

    def shape(path: str, reply: dict[str, Any]) -> str:
        return json.dumps(reply, ensure_ascii=False).replace(json.dumps(path, ensure_ascii=False)[1:-1], "<path>")

    _, missing = mcp(app, key_id, era, "kb_get_note", {"path": "nowhere/Nothing here.md"})
    assert missing["result"]["isError"]
    missing_shape = shape("nowhere/Nothing here.md", missing)
    for path in NOTES:
        for variant in path_variants(path):
            status, reply = mcp(app, key_id, era, "kb_get_note", {"path": variant})
            assert status == 200
            text = json.dumps(reply, ensure_ascii=False)
            if path in readable(groups) and variant in (path, unicodedata.normalize("NFD", path)):
                assert not reply["result"]["isError"] and reply["result"]["structuredContent"]["path"] == path
                continue
            assert reply["result"]["isError"]
            # forbidden and missing: the same answer but for the path the caller sent (which it repeats)
            shown = unicodedata.normalize("NFC", variant)
            assert shape(shown, reply) == missing_shape, (variant, text)
            assert_no_leak(shape(shown, reply), groups, f"kb_get_note {variant!r} ({era})")


@pytest.fixture
def response_url() -> Iterator[FakeEndpoint]:
    endpoint = FakeEndpoint().start()
    yield endpoint
    endpoint.stop()


@pytest.mark.parametrize(
    ("channel", "user", "share", "groups"),
    [
        ("C-hr", "U-sec", False, {"hr", "security"}),  # the asker's own answer: user in channel
        ("C-hr", "U-sec", True, {"hr"}),  # shared into the channel: the channel's scope, not the asker's
        ("C-hr", "U-other", False, {"hr"}),
        ("C-else", "U-sec", False, {"oncall"}),  # the workspace's
        ("C-else", "U-sec", True, {"oncall"}),
    ],
)
def test_slack_kb_and_share(app, response_url: FakeEndpoint, channel: str, user: str, share: bool,
                            groups: set[str]) -> None:  # fmt: skip
    from urllib.parse import urlencode

    text = ("share " if share else "") + "welcome"
    body = urlencode(
        {
            "team_id": "T1",
            "channel_id": channel,
            "user_id": user,
            "command": "/kb",
            "text": text,
            "response_url": response_url.url + "/r",
            "trigger_id": f"t-{channel}-{user}-{share}",
        }
    )
    stamp = str(int(time.time()))
    headers = [("Content-Type", "application/x-www-form-urlencoded"), ("X-Slack-Request-Timestamp", stamp),
               ("X-Slack-Signature", slack.sign("test-signing-secret", stamp, body.encode()))]  # fmt: skip
    event = build_event(HttpRequest("POST", "/slack/command", "", headers, body.encode()), "/slack/command", {}, "dev")
    assert parse_result(app(event)).status == 200
    assert response_url.wait(30), "the worker never answered"
    (post,) = response_url.requests
    posted = json.dumps(post.body, ensure_ascii=False)
    assert_no_leak(posted, groups, f"Slack {channel}/{user} share={share}")
    for path in readable(groups) - {"pub/Welcome.md", "pub/Onboarding.md"}:
        assert NOTES[path][2][0] in posted  # what the scope may read is there (top_k 10 holds it all)


@pytest.mark.parametrize(
    ("scope", "groups"), [("public", set()), ("hr", {"hr"}), ("security,oncall", {"security", "oncall"})]
)
def test_cli_search_scope(leak_kb: tuple[Path, Path], tmp_path: Path, scope: str, groups: set[str]) -> None:
    copy_store(leak_kb[1], tmp_path / "q")
    for extra in ([], ["--path-prefix", "hr"], ["--path-prefix", "security/incidents"]):
        proc = subprocess.run(
            [*KBSEARCH_CMD, "search", "welcome", "--top-k", "20", "--scope", scope, "--json", *extra],
            capture_output=True, text=True, env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")), timeout=120,
            check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert_no_leak(proc.stdout + proc.stderr, groups, f"kbsearch search --scope {scope} {extra}")
        assert {h["path"] for h in json.loads(proc.stdout)["results"]} <= readable(groups)
    bad = subprocess.run([*KBSEARCH_CMD, "search", "x", "--scope", "h r/.."], capture_output=True, text=True,
                         env=subprocess_env(QDRANT_PATH=str(tmp_path / "q")), timeout=120, check=False)  # fmt: skip
    assert bad.returncode != 0 and "invalid --scope" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("scope", ["", " ", ","])
def test_kbsearch_mcp_with_an_empty_scope_reads_as_public_never_as_everyone(
    leak_kb: tuple[Path, Path], tmp_path: Path, scope: str
) -> None:
    """``kbsearch mcp --scope ""`` (an assistant's config passing a variable that was not set) answers as
    ``kbsearch search --scope ""`` does, for ``public`` alone: it answered as the operator, every note of every
    group (``if scope_text``: the empty text was taken for no --scope at all)."""
    kb, store = leak_kb
    copy_store(store, tmp_path / "q")
    messages: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
         "params": {"name": "kb_search", "arguments": {"query": "welcome", "top_k": 20}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "kb_list", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 3, "method": "resources/list"},
        *({"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call",
           "params": {"name": "kb_get_note", "arguments": {"path": path}}} for i, path in enumerate(NOTES)),
    ]  # fmt: skip
    proc = subprocess.run(
        [*KBSEARCH_CMD, "mcp", "--scope", scope, "--idle-close", "0"],
        input="".join(json.dumps(m) + "\n" for m in messages).encode(), capture_output=True, timeout=120,
        env=subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb)), check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr[-2000:]
    answers = {a["id"]: a for a in map(json.loads, proc.stdout.splitlines())}
    assert sorted(answers) == [1, 2, 3, *range(10, 10 + len(NOTES))]
    read = {path for i, path in enumerate(NOTES) if not answers[10 + i]["result"]["isError"]}
    # the search, the catalog and the resources; a note read gives its markdown as written (its links' targets)
    assert_no_leak(json.dumps([answers[1], answers[2], answers[3]]), set(), f"kbsearch mcp --scope {scope!r}")
    assert read == readable(set()), read


@pytest.mark.parametrize("remote", ["", " "])
def test_kbsearch_mcp_with_an_empty_remote_is_refused_never_the_operators_local_store(
    leak_kb: tuple[Path, Path], tmp_path: Path, remote: str
) -> None:
    """Round 21: ``kbsearch mcp --remote "$KB_URL"`` with the variable unset (an assistant's config meant for a
    deployment, whose API key holds some groups) served the local index as the operator instead: every note of
    every group of a store on that machine (``if args.remote``: the empty URL was taken for no --remote at all, as
    round 18's ``--scope ""`` was)."""
    kb, store = leak_kb
    copy_store(store, tmp_path / "q")
    search = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
              "params": {"name": "kb_search", "arguments": {"query": "welcome", "top_k": 20}}}  # fmt: skip
    proc = subprocess.run(
        [*KBSEARCH_CMD, "mcp", "--remote", remote], input=(json.dumps(search) + "\n").encode(), capture_output=True,
        timeout=120, env=subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb)), check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == b"", proc.stdout[-2000:]
    assert proc.stderr.decode().strip().splitlines()[-1] == (
        f"kbsearch mcp: error: --remote names no URL (got {remote!r}): give the deployment's URL, or leave --remote "
        "out to serve the local index"
    ), proc.stderr[-2000:]


def test_a_note_whose_access_changes_between_two_syncs(load_search_app, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    notes = dict(NOTES)
    notes["pub/Changing.md"] = (note("Changing", "welcome zqchangetoken"), ["public"], [])
    write_kb(kb, notes)
    store = tmp_path / "q"
    settings = Settings(qdrant_path=str(store), access_default="deny")

    def app_now() -> Callable[[dict[str, Any]], Any]:
        return load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(kb), ACCESS_DEFAULT="deny",
                               ACCESS_GROUPS=json.dumps(CALLER_MAP))  # fmt: skip

    assert run_sync(settings, Secrets(settings), source_uri=str(kb)).added == len(notes)
    first = app_now()
    assert "pub/Changing.md" in paths_in(call(first, "POST", "/search", None, body={"query": "zqchangetoken"})[1])
    first.module.api.container.close()  # type: ignore[attr-defined]
    # the note is made hr-only (frontmatter), and hr/ is opened to finance (a rule: a payload-only update)
    (kb / "pub/Changing.md").write_text(note("Changing", "welcome zqchangetoken", "[hr]"), encoding="utf-8")
    (kb / "_access.yaml").write_text(RULES.replace("hr/: [hr]", "hr/: [hr, finance]"), encoding="utf-8")
    report = run_sync(settings, Secrets(settings), source_uri=str(kb))
    assert report.updated == 1 and report.access_updated == 1
    second = app_now()
    for key_id in (None, "id-sec", "id-fin"):
        _, text = call(second, "POST", "/search", key_id, body={"query": "zqchangetoken welcome", "top_k": 20})
        results = json.dumps(json.loads(text)["results"])  # (the answer repeats the query itself)
        assert "Changing" not in results and "zqchangetoken" not in results
        _, answer = mcp(second, key_id, "modern", "kb_get_note", {"path": "pub/Changing.md"})
        assert answer["result"]["isError"] and "zqchangetoken" not in json.dumps(answer)
    _, text = call(second, "POST", "/search", "id-hr", body={"query": "zqchangetoken", "top_k": 20})
    assert "pub/Changing.md" in paths_in(text)
    _, text = call(second, "POST", "/search", "id-fin", body={"query": "zqhrtoken", "top_k": 20})
    assert paths_in(text) == {"hr/Salary bands.md"}  # the rule change reached the payload


# -- the property: whatever the notes, groups and query, every hit is readable by the caller -------------------

GROUPS = ["hr", "finance", "security", "oncall", "public"]
WORDS = ["alpha", "beta", "gamma", "delta", "omega", "альфа", "бета"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    notes=st.lists(
        st.tuples(st.sampled_from(["", "hr/", "ops/", "ops/deep/"]), st.lists(st.sampled_from(GROUPS), max_size=3),
                  st.lists(st.sampled_from(WORDS), min_size=1, max_size=6)),
        min_size=1, max_size=12,
    ),
    rules=st.dictionaries(st.sampled_from(["hr/", "ops/", "ops/deep/"]),
                          st.lists(st.sampled_from(GROUPS), min_size=1, max_size=2), max_size=3),
    default=st.sampled_from(["public", "deny"]),
    callers=st.lists(st.lists(st.sampled_from(GROUPS[:-1]), max_size=3), min_size=1, max_size=4),
    several=st.lists(st.lists(st.sampled_from([*GROUPS[:-1], "staff"]), min_size=2, max_size=4, unique=True),
                     min_size=1, max_size=2),
    query=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
    recorded=st.none() | st.lists(st.sampled_from([*GROUPS[:-1], "staff"]), max_size=3),
    mapped=st.lists(st.booleans(), min_size=2, max_size=2),
    recorded_sets=st.none() | st.lists(st.sampled_from(["hr+security", "finance+oncall", "hr+staff", "hr+oncall"]),
                                       max_size=2),
    next_run=st.booleans(),
)  # fmt: skip
def test_every_hit_is_readable_by_its_caller(
    tmp_path_factory: pytest.TempPathFactory, notes: list[tuple[str, list[str], list[str]]],
    rules: dict[str, list[str]], default: str, callers: list[list[str]], several: list[list[str]],
    query: list[str], recorded: list[str] | None, mapped: list[bool], recorded_sets: list[str] | None,
    next_run: bool,
) -> None:  # fmt: skip
    """``recorded``: the groups of ``reach`` the collection's metadata names, as a search may read them (stale, or
    wrong): a caller holding one of them has the first it holds matched on ``reach`` (in place of ``public`` on
    ``access``; ``several``: callers of two groups or more, always drawn), whose hits are still readable, and
    complete when the sync gave every public chunk those groups. ``mapped``: which of the ``several`` callers' sets
    the caller mapping the indexer reads holds (a set's reach token, one match; the others: their groups), and
    ``recorded_sets`` the tokens the metadata names as a search may read them (stale or wrong). ``next_run``: the
    metadata records those beside what the sync gave (chunks lack what it records, as a batch that died before its
    catch-up leaves them), then a full sync that changes no note runs: it gives every chunk what the metadata
    records, so every caller's hits are complete again."""
    root = tmp_path_factory.mktemp("prop")
    expected: dict[str, set[str]] = {}
    for i, (folder, groups, words) in enumerate(notes):
        path = f"{folder}n{i}.md"
        front = f"---\naccess: [{', '.join(groups)}]\n---\n" if groups else ""
        (root / "kb" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "kb" / path).write_text(f"{front}# n{i}\n{' '.join(words)}\n", encoding="utf-8")
        rule = max((r for r in rules if path.startswith(r)), key=len, default=None)
        expected[path] = set(groups) if groups else set(rules[rule]) if rule else ({"public"} if default == "public"
                                                                                  else set())  # fmt: skip
    (root / "kb" / "_access.yaml").write_text("".join(f"{r}: [{', '.join(g)}]\n" for r, g in rules.items()))
    tokens = sorted({t for held, m in zip(several, mapped, strict=False) if m and (t := reach_token(held))})
    callers_map = {"api_keys": {f"k{i}": t.split("+") for i, t in enumerate(tokens)}}
    cfg = Settings(qdrant_path=str(root / "q"), access_default=default, access_groups=json.dumps(callers_map))
    assert run_sync(cfg, Secrets(cfg), source_uri=str(root / "kb")).added == len(notes)
    complete = True
    store = open_store(cfg, Secrets(cfg))
    try:
        given_to_public = store.metadata()[REACH_GROUPS]  # every public chunk holds them
        given_sets = store.metadata()[REACH_SETS]  # every chunk a set may read holds its token
        assert given_sets == tokens
        if next_run:  # what a full sync records while a batch's chunks lack it: more than the chunks hold
            recorded = sorted(set(given_to_public) | set(recorded or []))
            recorded_sets = sorted(set(given_sets) | set(recorded_sets or []))
        if recorded is not None:
            complete = set(recorded) <= set(given_to_public)
            store.merge_metadata({REACH_GROUPS: recorded})
        if recorded_sets is not None:
            complete = complete and set(recorded_sets) <= set(given_sets)
            store.merge_metadata({REACH_SETS: recorded_sets})
    finally:
        store.close()
    read = given_to_public if recorded is None else recorded  # what the search reads
    read_sets = given_sets if recorded_sets is None else recorded_sets
    if next_run:
        report = run_sync(cfg, Secrets(cfg), source_uri=str(root / "kb"))
        assert report.error is None and report.added == report.updated == report.access_updated == 0
        store = open_store(cfg, Secrets(cfg))
        try:
            read, read_sets = store.metadata()[REACH_GROUPS], store.metadata()[REACH_SETS]
        finally:
            store.close()
        complete = True
    service = SearchService(cfg, Secrets(cfg), wire_providers=False)
    recording = Recording(service.retriever)
    service._retriever = recording
    try:
        for held in [*callers, *several]:
            scope = Scope.of("prop", held)
            recording.filters.clear()
            hits = service.search(SearchRequest(query=" ".join(query), top_k=20), scope=scope).results
            on_reach = sorted(set(held) & set(read))
            token = reach_token(held)
            if token is not None and token in read_sets:  # the set's token alone, or the first recorded group, or none
                on_reach = [token]
            for sent in recording.filters:
                matches = sent.get("should") or sent["must"]
                wanted_on_reach = [{"key": REACH, "match": {"value": on_reach[0]}}] if on_reach else []
                assert [m for m in matches if m["key"] == REACH] == wanted_on_reach, (held, read, sent)
            for hit in hits:
                assert expected[hit.path] & scope.groups, (hit.path, expected[hit.path], held)  # type: ignore[operator]
            matching = {p for p, g in expected.items() if g & (scope.groups or set())}
            words_of = {f"{f}n{i}.md": set(w) for i, (f, _, w) in enumerate(notes)}
            wanted = {p for p in matching if words_of[p] & set(query)}
            assert {h.path for h in hits} == wanted if complete else {h.path for h in hits} <= wanted
    finally:
        service.close()


def test_openapi_says_which_scope_a_key_has(app) -> None:
    status, text = call(app, "GET", "/openapi.json", "id-hr")
    doc = json.loads(text)
    whoami = doc["paths"]["/whoami"]["get"]
    assert status == 200 and whoami["security"] == [{"ApiKey": []}]
    assert "groups" in json.dumps(whoami["responses"]["200"]) and "/whoami" in doc["components"]["securitySchemes"][
        "ApiKey"]["description"]  # fmt: skip
    status, text = call(app, "POST", "/search", "id-hr", body={"query": "welcome"})
    assert status == 200


# -- the browse surfaces: GET /notes/{path}, GET /notes, kb_list, kb_get_note sections and links, resources ------


def get_note(app, key_id: str | None, path: str, section: str | None = None) -> tuple[int, str]:
    from urllib.parse import quote, urlencode

    encoded = quote(path, safe="/")
    event = build_event(HttpRequest("GET", f"/notes/{encoded}", urlencode({"section": section}) if section else "",
                                    [], b""), "/notes/{path+}", {"path": encoded}, "dev")  # fmt: skip
    event["requestContext"]["identity"]["apiKeyId"] = key_id
    answer = parse_result(app(event))
    return answer.status, answer.body.decode("utf-8")


def without(path: str, text: str) -> str:
    """The answer with the path the caller sent taken out (an answer may repeat the caller's own input)."""
    for form in (json.dumps(path)[1:-1], json.dumps(path, ensure_ascii=False)[1:-1], repr(path)[1:-1], path):
        text = text.replace(form, "<path>")
    return text


@pytest.mark.parametrize("key_id", [None, "id-hr", "id-sec"])
def test_get_notes_by_path_forbidden_is_missing(app, key_id: str | None) -> None:
    groups = KEY_GROUPS[key_id]
    missing = {
        section: get_note(app, key_id, "nowhere/Nothing here.md", section) for section in (None, "Grades zqhrheading")
    }
    for section, (status, text) in missing.items():
        assert status == 404, text
        missing[section] = (status, without("nowhere/Nothing here.md", text))
    for path in NOTES:
        for variant in path_variants(path):
            for section in (None, "Grades zqhrheading"):
                status, text = get_note(app, key_id, variant, section)
                shown = unicodedata.normalize("NFC", variant)
                if path in readable(groups) and shown == path:
                    if section is None or path == "hr/Salary bands.md":
                        assert status == 200, text
                        continue
                    assert status == 404 and "no section" in text  # a readable note without that section
                    continue
                assert (status, without(shown, text)) == missing[section], (variant, section, text)
                # (the caller's own section name is not an answer's leak)
                answer = without(shown, text).replace(section or "<none>", "<section>")
                assert_no_leak(answer, groups, f"GET /notes/{variant} section={section}")


@pytest.mark.parametrize("key_id", list(KEY_GROUPS))
def test_links_backlinks_catalog_and_lists_name_only_readable_notes(app, key_id: str | None) -> None:
    groups = KEY_GROUPS[key_id]
    visible = readable(groups)
    for path in ("pub/Onboarding.md", "pub/Welcome.md"):
        status, text = get_note(app, key_id, path)
        links = json.loads(text)["links"]
        assert status == 200 and links is not None
        resolved = {ref["path"] for ref in links["outgoing"] + links["backlinks"] if ref["path"]}
        assert resolved <= visible, (path, resolved - visible)
        assert_no_leak(json.dumps(links["backlinks"], ensure_ascii=False), groups, f"backlinks of {path}")
        # no unresolved link is shown: one naming no note would stand beside those left out (every caller here is
        # hidden a note), telling which names are restricted notes
        assert all(ref["path"] for ref in links["outgoing"]), links["outgoing"]
    _, text = get_note(app, key_id, "pub/Onboarding.md")
    backlinks = {ref["path"] for ref in json.loads(text)["links"]["backlinks"]}
    assert backlinks == {"pub/Welcome.md"} | ({"hr/Salary bands.md"} if "hr" in groups else set())
    status, text = call(app, "GET", "/notes", key_id, query="recent=50")
    catalog = json.loads(text)
    assert status == 200 and catalog["notes"] == len(visible), catalog
    assert_no_leak(text, groups, "GET /notes")
    assert {n["path"] for n in catalog["recent"]} == visible
    folders = {f["value"] for f in catalog["folders"]}
    expected_folders = {p.rsplit("/", 1)[0] for p in visible}
    expected_folders |= {f.rsplit("/", 1)[0] for f in expected_folders if "/" in f}  # every level
    assert folders == expected_folders
    for era in ("legacy", "modern"):
        status, answer = mcp(app, key_id, era, "kb_list", {"recent": 50})
        assert status == 200 and not answer["result"]["isError"]
        assert_no_leak(json.dumps(answer, ensure_ascii=False), groups, f"kb_list ({era})")
        assert answer["result"]["structuredContent"]["notes"] == len(visible)


def rpc(app, key_id: str | None, era: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    import base64

    request: dict[str, Any] = {"jsonrpc": "2.0", "id": 9, "method": method, "params": dict(params)}
    headers: dict[str, str] = {}
    if era == "modern":
        request["params"]["_meta"] = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                      "io.modelcontextprotocol/clientCapabilities": {}}  # fmt: skip
        headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
        if "name" in params:
            headers["Mcp-Name"] = params["name"]
        if "uri" in params:
            headers["Mcp-Name"] = "=?base64?" + base64.b64encode(params["uri"].encode()).decode() + "?="
    _, text = call(app, "POST", "/mcp", key_id, body=request, headers=headers)
    return dict(json.loads(text))


@pytest.mark.parametrize("era", ["legacy", "modern"])
@pytest.mark.parametrize("key_id", [None, "id-hr"])
def test_resources_list_and_read(app, key_id: str | None, era: str) -> None:
    from kbsearch.mcp.resources import note_uri

    groups = KEY_GROUPS[key_id]
    listed = rpc(app, key_id, era, "resources/list", {})
    assert_no_leak(json.dumps(listed, ensure_ascii=False), groups, f"resources/list ({era})")
    assert {r["uri"] for r in listed["result"]["resources"]} == {note_uri(p) for p in readable(groups)}
    missing = rpc(app, key_id, era, "resources/read", {"uri": note_uri("nowhere/Nothing here.md")})
    for path in NOTES:
        uri = note_uri(path)
        answer = rpc(app, key_id, era, "resources/read", {"uri": uri})
        if path in readable(groups):
            assert answer["result"]["contents"][0]["uri"] == uri
            continue
        shape = json.dumps(answer, ensure_ascii=False).replace(uri, "<uri>").replace(path, "<path>")
        expected = json.dumps(missing, ensure_ascii=False).replace(note_uri("nowhere/Nothing here.md"), "<uri>")
        assert shape == expected.replace("nowhere/Nothing here.md", "<path>"), shape
        assert_no_leak(shape, groups, f"resources/read {path} ({era})")


def test_slack_share_button_posts_with_the_channels_scope(app, response_url: FakeEndpoint) -> None:
    """U-sec asks in C-hr (their own answer: hr + security); pressing Share posts into C-hr, read by the whole
    channel, so the shared answer is searched again with the channel's scope (hr): no security note reaches it."""
    from urllib.parse import urlencode

    def signed(path: str, body: str) -> dict[str, Any]:
        stamp = str(int(time.time()))
        headers = [("Content-Type", "application/x-www-form-urlencoded"), ("X-Slack-Request-Timestamp", stamp),
                   ("X-Slack-Signature", slack.sign("test-signing-secret", stamp, body.encode()))]  # fmt: skip
        return build_event(HttpRequest("POST", path, "", headers, body.encode()), path, {}, "dev")

    ask = urlencode({"team_id": "T1", "channel_id": "C-hr", "user_id": "U-sec", "command": "/kb", "text": "welcome",
                     "response_url": response_url.url + "/answer", "trigger_id": "t-share-1"})  # fmt: skip
    assert parse_result(app(signed("/slack/command", ask))).status == 200
    assert response_url.wait(30)
    private = json.dumps(response_url.requests[0].body, ensure_ascii=False)
    assert "zqsectoken" in private or "Incident review" in private or "Breach 2026" in private  # the asker's scope
    share = next(element for block in response_url.requests[0].body["blocks"]
                 for element in [*block.get("elements", []), block.get("accessory") or {}]
                 if element.get("action_id") == "kb_share")  # fmt: skip
    payload = {"type": "block_actions", "user": {"id": "U-sec", "username": "sec", "team_id": "T1"},
               "team": {"id": "T1", "domain": "example"}, "channel": {"id": "C-hr", "name": "hr"},
               "container": {"type": "message", "message_ts": "1.1", "is_ephemeral": True}, "api_app_id": "A1",
               "trigger_id": "9.8.7", "response_url": response_url.url + "/share",
               "actions": [{"type": "button", "action_id": "kb_share", "block_id": "kb_answer", "action_ts": "1.2",
                            "text": share["text"], **({"value": share["value"]} if "value" in share else {})}]}  # fmt: skip
    body = urlencode({"payload": json.dumps(payload, ensure_ascii=False)})
    assert parse_result(app(signed("/slack/interactive", body))).status == 200
    deadline = time.monotonic() + 30
    while len(response_url.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    shared = response_url.requests[1].body
    assert shared["response_type"] == "in_channel"
    assert_no_leak(json.dumps(shared, ensure_ascii=False), {"hr"}, "Slack Share button into C-hr")
    assert "Salary bands" in json.dumps(shared, ensure_ascii=False)  # what the channel may read is there


def test_one_audit_line_per_request_without_secrets(app, caplog: pytest.LogCaptureFixture) -> None:
    """Every read logs one ``access`` line: the caller's key id, its groups and the result count; never a key's
    value, never note text."""
    import logging

    caplog.set_level(logging.INFO, logger="kbsearch")
    requests = [
        lambda: call(app, "POST", "/search", "id-hr", body={"query": "welcome", "top_k": 20}),
        lambda: call(app, "GET", "/notes", "id-hr", query="recent=5"),
        lambda: get_note(app, "id-hr", "hr/Salary bands.md"),
        lambda: mcp(app, "id-hr", "legacy", "kb_get_note", {"path": "finance/Budget.md"}),
    ]
    for make in requests:
        caplog.clear()
        make()
        lines = [r for r in caplog.records if r.getMessage() == "access"]
        assert len(lines) == 1, [r.getMessage() for r in caplog.records]
        line = lines[0].__dict__
        assert line["caller"] == "apikey:id-hr" and line["groups"] == ["hr", "public"]
        assert isinstance(line["results"], int)
        assert "zq" not in json.dumps(line, default=str)  # no note text


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_notes_catalog_resources_and_links_for_every_caller(app, era: str) -> None:
    """GET /notes/{path}, GET /notes, kb_list, resources/list and resources/read: a caller reads, counts, pages and
    links only the notes its groups may read; a forbidden note answers exactly as a missing one."""
    from urllib.parse import quote

    for key_id, groups in KEY_GROUPS.items():
        visible = readable(groups)
        _, missing = call(app, "GET", "/notes/pub/Nowhere.md", key_id)
        for path in NOTES:
            status, text = call(app, "GET", "/notes/" + quote(path), key_id)
            if path in visible:
                assert status == 200, (key_id, path, text)
                assert_no_leak(json.dumps(json.loads(text)["links"]), groups, f"GET /notes/{path} links")
            else:
                expected = json.loads(missing)
                expected["message"] = expected["message"].replace("pub/Nowhere.md", path)
                assert status == 404 and json.loads(text) == expected, (key_id, path, text)
        status, text = call(app, "GET", "/notes", key_id, query="recent=50")
        catalog = json.loads(text)
        assert status == 200 and catalog["notes"] == len(visible) and {n["path"] for n in catalog["recent"]} <= visible
        assert_no_leak(text, groups, "GET /notes")
        listed = rpc(app, key_id, era, "tools/call", {"name": "kb_list", "arguments": {"recent": 50}})["result"]
        assert listed["structuredContent"]["notes"] == len(visible)
        assert_no_leak(json.dumps(listed), groups, "kb_list")
        pages: list[dict[str, Any]] = []
        params: dict[str, Any] = {}
        for _ in range(10):
            page = rpc(app, key_id, era, "resources/list", params)["result"]
            pages += page["resources"]
            if "nextCursor" not in page:
                break
            params = {"cursor": page["nextCursor"]}
        assert {r["name"] for r in pages} == visible
        assert_no_leak(json.dumps(pages), groups, "resources/list")
        unknown = rpc(app, key_id, era, "resources/read", {"uri": "kb://note/pub/Nowhere.md"})["error"]
        for path in NOTES:
            answer = rpc(app, key_id, era, "resources/read", {"uri": "kb://note/" + quote(path)})
            if path in visible:
                assert answer["result"]["contents"][0]["uri"] == "kb://note/" + quote(path)
            else:
                error = answer["error"]
                assert error["code"] == unknown["code"] and error["message"] == unknown["message"].replace(
                    "pub/Nowhere.md", path
                ), (key_id, path, error)


def test_no_shared_cache_may_keep_an_answer_for_another_caller(app) -> None:
    """API keys travel in ``x-api-key``, which HTTP caches do not key on (unlike ``Authorization``): a CDN or proxy
    in front of the API that kept an hr caller's ``GET /notes/hr/...`` would hand it to the next caller of that
    URL. Every answer, of every route and status (a note read, forbidden, missing; the catalog, /whoami, searches,
    errors), forbids any shared cache to store it."""
    from urllib.parse import quote

    mcp_call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "kb_get_note", "arguments": {"path": "hr/Salary bands.md"}}}  # fmt: skip
    requests: list[tuple[str, str, str, Any, str | None]] = [
        ("GET", "/notes/hr/Salary bands.md", "", None, "id-hr"), ("GET", "/notes/hr/Salary bands.md", "", None, None),
        ("GET", "/notes/nowhere/Nothing.md", "", None, "id-hr"), ("GET", "/notes/кадры/Зарплата й.md", "", None, "id-hr"),
        ("GET", "/notes/hr/Salary bands.md", "section=Grades%20zqhrheading", None, "id-hr"),
        ("GET", "/notes/hr/Salary bands.md", "section=nothing", None, "id-hr"),
        ("GET", "/notes", "recent=5", None, "id-hr"), ("GET", "/notes", "recent=999", None, "id-hr"),
        ("GET", "/notes", "path_prefix=hr", None, None), ("GET", "/whoami", "", None, "id-hr"),
        ("GET", "/search", "q=welcome", None, "id-hr"), ("GET", "/search", "", None, "id-hr"),
        ("POST", "/search", "", {"query": "welcome"}, "id-hr"), ("POST", "/mcp", "", mcp_call, "id-hr"),
        ("GET", "/health", "", None, "id-hr"), ("GET", "/openapi.json", "", None, None),
        ("GET", "/nowhere", "", None, "id-hr"), ("POST", "/search", "", b"{not json", "id-hr"),
        ("POST", "/search", "", {"query": "x" * 70_000}, "id-hr"), ("POST", "/mcp", "", {"q": "x" * 70_000}, None),
    ]  # fmt: skip
    for method, path, query, body, key_id in requests:
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        if path.startswith("/notes/"):
            encoded = quote(path.removeprefix("/notes/"), safe="/")
            request = HttpRequest(method, "/notes/" + encoded, query, [], data)
            event = build_event(request, "/notes/{path+}", {"path": encoded}, "dev")
        else:
            event = build_event(HttpRequest(method, path, query, [("Content-Type", "application/json")], data), path,
                                {}, "dev", api_key=None)  # fmt: skip
        event["requestContext"]["identity"]["apiKeyId"] = key_id
        answer = parse_result(app(event))
        cache = ", ".join(v for k, v in answer.headers if k.lower() == "cache-control")
        assert "private" in cache and "no-store" in cache, (method, path, query, answer.status, cache)


def test_what_cannot_be_read_tells_nothing_of_what_exists(load_search_app, tmp_path: Path) -> None:
    """Reads by path answer a path the caller may not read as a missing one, whatever is at it: an entry that is
    no note (a FIFO, a dangling symlink) in a restricted folder is "missing" (in a folder the caller may read,
    its reason is told); and while the access file cannot be used, every read by a restricted caller is "cannot
    be read right now", a missing path too (else the answer would tell which paths hold notes)."""
    import os

    kb = tmp_path / "kb"
    write_kb(kb, {p: NOTES[p] for p in ("pub/Welcome.md", "hr/Salary bands.md", "finance/Budget.md")})
    os.mkfifo(kb / "hr" / "Queue.md")
    (kb / "hr" / "Gone.md").symlink_to(kb / "hr" / "nowhere.md")
    os.mkfifo(kb / "pub" / "Pipe.md")
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None, access_default="deny")
    assert run_sync(settings, Secrets(settings), source_uri=str(kb)).error is None

    def load() -> Any:
        return load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb), ACCESS_DEFAULT="deny",
                               ACCESS_GROUPS=json.dumps(CALLER_MAP))  # fmt: skip

    def answers(app: Any, key_id: str | None, paths: list[str]) -> dict[str, tuple[int, str]]:
        out = {}
        for path in paths:
            status, text = get_note(app, key_id, path)
            out[path] = (status, without(path, text))
        return out

    app = load()
    try:
        for key_id in (None, "id-fin"):
            got = answers(app, key_id, ["nowhere/Nothing.md", "hr/Queue.md", "hr/Gone.md", "hr/Salary bands.md"])
            assert len(set(got.values())) == 1 and got["hr/Queue.md"][0] == 404, got
        status, text = get_note(app, None, "pub/Pipe.md")  # a folder the caller may read: the reason is told
        assert status == 422 and "FIFO" in text, text
        status, _ = get_note(app, "id-hr", "hr/Queue.md")
        assert status == 422
    finally:
        app.module.api.container.close()
    (kb / "_access.yaml").write_text("hr/: [\n", encoding="utf-8")  # unusable from now on
    app = load()
    try:
        for key_id in (None, "id-hr", "id-fin"):
            paths = ["nowhere/Nothing.md", "hr/Salary bands.md", "finance/Budget.md", "pub/Welcome.md"]
            got = answers(app, key_id, paths)
            assert len(set(got.values())) == 1 and got["pub/Welcome.md"][0] == 503, (key_id, got)
    finally:
        app.module.api.container.close()


# -- the time of an answer: what the source serves for a read by path ----------------------------------------------

BIG = "security/incidents/Forensics.md"  # ~2.5 MB, the folder rule's (security, oncall)


def big_note() -> str:
    section = "welcome zqbigtoken disk images, memory captures and timelines of the breach. " * 20
    return note("Forensics", "\n\n".join(f"## Part {i}\n{section}" for i in range(1600)))


@pytest.fixture
def s3_kb(load_search_app, tmp_path: Path) -> Iterator[tuple[Any, list[tuple[str, str]], list[int]]]:
    """The leak suite's KB (and a large restricted note) in a moto bucket, indexed from it, and the search
    handler reading notes from it (``KB_SOURCE=s3://``): every S3 call the handler makes, as (operation, key),
    and the bytes each GetObject serves (botocore's event hooks on boto3's default session, as the handler's own
    client is made from it)."""
    import boto3
    from moto import mock_aws

    notes = dict(NOTES)
    notes[BIG] = (big_note(), ["oncall", "security"], ["Forensics", "zqbigtoken"])
    notes["pub/Narrowed.md"] = (note("Narrowed", "welcome zqnarrowtoken " * 40_000, "[finance]"), ["finance"],
                                ["Narrowed", "zqnarrowtoken"])  # fmt: skip
    notes["pub/Changing.md"] = (note("Changing", "welcome zqchangetoken"), ["public"], [])
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        for path, (text, _, _) in notes.items():
            s3.put_object(Bucket="kb-notes", Key=f"kb/{path}", Body=text.encode("utf-8"))
        s3.put_object(Bucket="kb-notes", Key="kb/_access.yaml", Body=RULES.encode("utf-8"))
        settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                            access_default="deny", max_note_bytes=4 * 1024 * 1024)  # fmt: skip
        report = run_sync(settings, Secrets(settings), source_uri="s3://kb-notes/kb/")
        assert report.error is None and report.added == len(notes) and not report.skipped, report
        # the note is narrowed in the bucket after it was indexed (public): the index lags the source
        s3.put_object(Bucket="kb-notes", Key="kb/pub/Changing.md",
                      Body=note("Changing", "welcome zqchangetoken", "[finance]").encode("utf-8"))  # fmt: skip
        calls: list[tuple[str, str]] = []
        served: list[int] = []
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register(
            "before-parameter-build.s3",
            lambda params, model, **_: calls.append((model.name, str(params.get("Key") or params.get("Prefix")))),
        )
        boto3.DEFAULT_SESSION.events.register(
            "after-call.s3.GetObject", lambda parsed, **_: served.append(int(parsed.get("ContentLength") or 0))
        )
        try:
            app = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE="s3://kb-notes/kb/",
                                  ACCESS_DEFAULT="deny", ACCESS_GROUPS=json.dumps(CALLER_MAP))  # fmt: skip
            yield app, calls, served
            app.module.api.container.close()
        finally:
            boto3.setup_default_session()  # a fresh session: the hooks go with the old one


def test_a_forbidden_note_costs_the_source_what_a_missing_one_does(s3_kb) -> None:
    """A restricted caller's read by path of a note it may not read (a 2.5 MB note in a folder it may not read,
    a 1 MB note its frontmatter narrows in a folder it may) asks the source exactly what a read of a path where
    nothing is asks, and no byte of the note is served: the index is asked first. (The reader read the whole note
    from S3, parsed its frontmatter, and only then answered "missing": a missing path answered at once, so the
    time told a restricted caller that a large note was there.) Over REST and MCP kb_get_note, for callers without
    the note's groups; a caller with them is served the note (the hooks see what a read costs). A note narrowed in
    the bucket but not yet re-indexed stays unreadable: the source's own frontmatter is still checked."""
    app, calls, served = s3_kb

    def cost(read: Callable[[], tuple[int, str]], path: str) -> tuple[tuple[int, str], list[tuple[str, str]], int]:
        calls.clear()
        served.clear()
        status, text = read()
        return (status, without(path, text)), [(op, key.replace(path, "<path>")) for op, key in calls], sum(served)

    def rest(key_id: str | None, path: str) -> Callable[[], tuple[int, str]]:
        return lambda: get_note(app, key_id, path)

    def tool(key_id: str | None, path: str) -> Callable[[], tuple[int, str]]:
        def read() -> tuple[int, str]:
            status, reply = mcp(app, key_id, "modern", "kb_get_note", {"path": path})
            return status, json.dumps(reply, ensure_ascii=False)

        return read

    for key_id in (None, "id-hr", "id-fin", "id-sec"):
        get_note(app, key_id, "pub/Welcome.md")  # the access file is read once (cached): not part of any read below
    pairs = [(BIG, "security/incidents/Nothing here.md"), ("pub/Narrowed.md", "pub/Nothing here.md")]
    for surface in (rest, tool):
        for key_id in (None, "id-hr", "id-fin"):
            for forbidden, nowhere in pairs:
                if forbidden == "pub/Narrowed.md" and key_id == "id-fin":
                    continue  # finance may read it
                answer, asked, bytes_served = cost(surface(key_id, forbidden), forbidden)
                assert (answer, asked, bytes_served) == cost(surface(key_id, nowhere), nowhere), (surface, key_id)
                assert bytes_served == 0 and not [op for op, _ in asked if op == "GetObject"], asked
                assert_no_leak(answer[1], KEY_GROUPS[key_id], f"{surface.__name__} {forbidden}")
        # who may read it is served it: the hooks see a read's cost
        answer, asked, bytes_served = cost(surface("id-sec", BIG), BIG)
        assert answer[0] == 200 and "zqbigtoken" in answer[1] and ("GetObject", "kb/<path>") in asked
        assert bytes_served == len(big_note().encode()) > 2_000_000
        # narrowed in the bucket, not yet in the index: the stricter wins
        answer, _, _ = cost(surface(None, "pub/Changing.md"), "pub/Changing.md")
        assert answer == cost(surface(None, "pub/Nothing here.md"), "pub/Nothing here.md")[0]
        assert "zqchangetoken" not in answer[1]
        answer, _, _ = cost(surface("id-fin", "pub/Changing.md"), "pub/Changing.md")
        assert answer[0] == 200 and "zqchangetoken" in answer[1]


@pytest.fixture
def cloud(leak_kb: tuple[Path, Path], tmp_path: Path) -> Iterator[tuple[FakeEndpoint, list[str]]]:
    """A loopback Qdrant Cloud over the leak suite's KB: its scrolls and queries run as sent by qdrant-client's
    local mode (Qdrant's own filter semantics: ``has_id`` with the UUIDs Cloud's points have), anything else is a
    404; ``down`` in the list given back: every request answers 503."""
    from kbsearch.qdrant.embedded import open_embedded

    kb, _ = leak_kb
    settings = Settings(qdrant_path=str(tmp_path / "local"), qdrant_url="", embedding_api_key=None,
                        access_default="deny", qdrant_embedded="local")  # fmt: skip
    assert run_sync(settings, Secrets(settings), source_uri=str(kb)).added == len(NOTES)
    store = open_embedded(settings)
    endpoint = FakeEndpoint().start()
    mode: list[str] = []

    def respond(method: str, path: str) -> tuple[int, bytes, str]:
        if mode:
            return 503, b'{"status": {"error": "down"}}', "application/json"
        sent = endpoint.requests[-1].body
        if path.endswith("/points/scroll"):
            points, offset = store.scroll(sent, 5.0)
            result: Any = {"points": points, "next_page_offset": offset}
        elif path.endswith("/points/query"):
            result = {"points": store.query(sent, 5.0)}
        else:
            return 404, b'{"status": {"error": "not here"}}', "application/json"
        return 200, json.dumps({"result": result, "status": "ok", "time": 0.0}).encode(), "application/json"

    endpoint.responder = respond
    yield endpoint, mode
    endpoint.stop()
    store.close()


@pytest.mark.parametrize("store", ["embedded", "cloud"])
def test_reads_by_path_ask_the_index_first_and_a_store_that_cannot_answer_is_a_503_for_every_path(
    load_search_app, leak_kb: tuple[Path, Path], tmp_path: Path, cloud: tuple[FakeEndpoint, list[str]], store: str
) -> None:
    """A restricted caller's read by path asks the index first, on the embedded store (Qdrant Edge, integer point
    ids) and on Qdrant Cloud (REST, UUIDs) alike: a readable note is served, a forbidden one answers as a missing
    one. When the index cannot be asked (no collection, Qdrant down) every such read is the same 503, a readable
    note's, a forbidden one's and a missing path's (a readable note must not turn "missing" silently, and the kind
    of answer must not tell which paths hold notes)."""
    kb, built = leak_kb
    endpoint, mode = cloud
    copy_store(built, tmp_path / "q")
    env = {"QDRANT_PATH": str(tmp_path / "q")} if store == "embedded" else {
        "QDRANT_URL": endpoint.url, "QDRANT_API_KEY": "qdrant-test-key"}  # fmt: skip
    paths = ["pub/Welcome.md", "hr/Salary bands.md", "finance/Budget.md", "nowhere/Nothing here.md"]

    def answers(key_id: str | None) -> dict[str, tuple[int, str, str]]:
        out = {}
        for path in paths:
            status, text = get_note(app, key_id, path)
            _, reply = mcp(app, key_id, "modern", "kb_get_note", {"path": path})
            out[path] = (status, without(path, text), without(path, json.dumps(reply, ensure_ascii=False)))
        return out

    app = load_search_app(KB_SOURCE=str(kb), ACCESS_DEFAULT="deny", ACCESS_GROUPS=json.dumps(CALLER_MAP), **env)
    try:
        for key_id in (None, "id-hr", "id-fin"):
            got = answers(key_id)
            missing = got.pop("nowhere/Nothing here.md")
            assert missing[0] == 404
            for path, answer in got.items():
                if path in readable(KEY_GROUPS[key_id]):
                    assert answer[0] == 200 and '"isError": false' in answer[2], (key_id, path, answer)
                else:
                    assert answer == missing, (key_id, path)
        if store == "cloud":  # the question Cloud was asked: the note's first chunk by id, within the scope
            scrolls = [r.body for r in endpoint.requests if r.path.endswith("/points/scroll")]
            assert scrolls and all(s["limit"] == 1 and s["filter"]["must"][0]["has_id"] for s in scrolls)
    finally:
        app.module.api.container.close()
    if store == "embedded":
        env["QDRANT_PATH"] = str(tmp_path / "none")  # no collection: the indexer never ran
    else:
        mode.append("down")
    app = load_search_app(KB_SOURCE=str(kb), ACCESS_DEFAULT="deny", ACCESS_GROUPS=json.dumps(CALLER_MAP), **env)
    try:
        for key_id in (None, "id-hr"):
            got = answers(key_id)
            assert len(set(got.values())) == 1, (key_id, got)
            status, text, reply = got["pub/Welcome.md"]
            assert status == 503 and json.loads(text)["error"] == "index_unavailable" and '"isError": true' in reply
    finally:
        app.module.api.container.close()
