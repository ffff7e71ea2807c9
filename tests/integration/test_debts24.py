"""Session 24's debts (debts24): what session 23 left, each through the real interface."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env


def _kbsearch(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, env=subprocess_env(**env), cwd=ROOT,
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip


def _call(id_: int, name: str, arguments: dict[str, Any]) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": "tools/call",
                       "params": {"name": name, "arguments": arguments}}) + "\n"  # fmt: skip


# -- a second kbsearch mcp on a store another one holds ------------------------------------------------------------


@contextlib.contextmanager
def mcp_holding(store: Path) -> Iterator[subprocess.Popen[str]]:
    """A `kbsearch mcp` that has opened the embedded store at ``store`` (its first call answered) and keeps it
    (``--idle-close 0``) until the block ends."""
    holder = subprocess.Popen([*KBSEARCH_CMD, "mcp", "--kb", "sample-kb", "--idle-close", "0"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env=subprocess_env(QDRANT_PATH=str(store)), cwd=ROOT)  # fmt: skip
    assert holder.stdin is not None and holder.stdout is not None
    try:
        holder.stdin.write(_call(1, "kb_list", {}))
        holder.stdin.flush()
        assert json.loads(holder.stdout.readline())["result"]["isError"] is False  # the store is open, and kept
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=PROCESS_TIMEOUT_S)


def test_a_second_mcp_on_a_store_another_mcp_holds_names_it_and_says_it_lets_go(tmp_path: Path) -> None:
    """Two assistants each launch `kbsearch mcp` on one local index. The second one's tool error said "(a running
    kbsearch serve or kbsearch index) ... stop that process": it names the holder (its pid: kbsearch mcp) and the
    advice that fits (it lets go after --idle-close; call again then, or share one kbsearch serve)."""
    store = tmp_path / "q"
    assert _kbsearch("index", "sample-kb", QDRANT_PATH=str(store)).returncode == 0
    with mcp_holding(store) as first:
        second = subprocess.run([*KBSEARCH_CMD, "mcp", "--kb", "sample-kb"], input=_call(1, "kb_search", {"query": "x"}),
                                capture_output=True, text=True, env=subprocess_env(QDRANT_PATH=str(store)), cwd=ROOT,
                                timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert second.returncode == 0, second.stderr
    answer = json.loads(second.stdout.splitlines()[0])["result"]
    text = answer["content"][0]["text"]
    assert answer["isError"] is True
    assert f"(pid {first.pid}: kbsearch mcp)" in text, text
    assert "--idle-close" in text and "call the tool again" in text, text
    assert "serve or kbsearch index" not in text and str(store) not in text, text  # no path said
    assert "Traceback" not in second.stderr


# -- UTF-8 answers ---------------------------------------------------------------------------------------------------


def _russian_search(app: Any, query: str = "ротация ключей") -> dict[str, Any]:
    from urllib.parse import quote

    from kbsearch_tools.local.apigw import HttpRequest, build_event

    event = build_event(HttpRequest("GET", "/search", f"q={quote(query)}&top_k=5", [], b""), "/search", {}, "dev")
    return dict(app(event))


def test_json_answers_are_utf8_not_ascii_escaped_and_lone_surrogates_stay_safe(
    bm25_store: Path, load_search_app: Any
) -> None:
    """A Russian answer was `\\u0440\\u043e...` (six bytes a letter, three times UTF-8's two): the search Lambda's
    JSON (search, notes, MCP HTTP: one serializer) is UTF-8 now. A lone surrogate in what is echoed (a query string
    API Gateway handed on with one: no UTF-8 encodes it) is kept as its JSON escape, never a 500 or a body that
    cannot be sent (kbsearch serve encodes the body as UTF-8)."""
    app = load_search_app(QDRANT_PATH=str(bm25_store), KB_SOURCE=str(ROOT / "sample-kb"))
    result = _russian_search(app)
    assert result["statusCode"] == 200, result
    body = result["body"]
    answer = json.loads(body)
    assert answer["results"] and "\\u04" not in body and "ротация" in body, body[:300]
    assert json.loads(body.encode("utf-8")) == answer
    from kbsearch_tools.local.apigw import HttpRequest, build_event

    event = build_event(HttpRequest("GET", "/search", "q=x", [], b""), "/search", {}, "dev")
    for params in ("queryStringParameters", "multiValueQueryStringParameters"):
        if event.get(params):
            event[params]["q"] = "ключ\ud800" if params == "queryStringParameters" else ["ключ\ud800"]
    odd = app(event)
    assert odd["statusCode"] < 500, odd
    assert "\\ud800" in odd["body"] or "ключ" not in odd["body"], odd["body"][:300]
    odd["body"].encode("utf-8")  # sendable: no lone surrogate left raw


def test_kbsearch_serve_and_mcp_http_answer_utf8(bm25_store: Path) -> None:
    """The same through `kbsearch serve` (its HTTP answers are the Lambda's bodies as UTF-8 bytes) for /search and
    /mcp's tools/call."""
    import httpx

    from kbsearch_tools.local.process import serve_process

    env = subprocess_env(QDRANT_PATH=str(bm25_store), KB_SOURCE=str(ROOT / "sample-kb"))
    with serve_process(env, cwd=ROOT) as server:
        found = httpx.get(f"{server.base_url}/search", params={"q": "ротация ключей"}, timeout=60)
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "kb_search", "arguments": {"query": "ротация ключей"}}}  # fmt: skip
        mcp = httpx.post(f"{server.base_url}/mcp", json=rpc, timeout=60,
                         headers={"Accept": "application/json, text/event-stream"})  # fmt: skip
    for answer in (found, mcp):
        assert answer.status_code == 200, answer.text[:300]
        assert answer.headers["content-type"].startswith("application/json"), answer.headers
        assert b"\\u04" not in answer.content and "ротация".encode() in answer.content, answer.content[:300]


# -- kbsearch index against a listing that never ends ----------------------------------------------------------------


def test_kbsearch_index_on_fresh_next_pages_over_the_same_keys_stops_with_a_clear_error(tmp_path: Path) -> None:
    """S3 (a loopback fake speaking ListObjectsV2) names a fresh next page for ever, listing the same two notes
    again: the Lambda stops at its deadline (round 23d), but `kbsearch index` has none and listed until Ctrl-C. A
    listing gives each key once, in ascending order: a page listing a key again fails the listing at once,
    nothing deleted, exit 1 with the error said."""
    from kbsearch_tools.fakes import FakeEndpoint
    from tests.integration.test_lying_objects import _listing_page

    notes = [(f"n{i}.md", f"# N{i}\n\nnote {i}".encode()) for i in range(2)]
    pages = [0]

    def respond(method: str, path: str) -> tuple[int, bytes, str]:
        if "list-type=2" not in path:
            return 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml"
        pages[0] += 1
        return 200, _listing_page(notes, True, f"T{pages[0]}"), "application/xml"

    endpoint = FakeEndpoint().start()
    endpoint.responder = respond
    try:
        shown = subprocess.run([*KBSEARCH_CMD, "index", "s3://kb"], capture_output=True, text=True, cwd=ROOT,
                               env=subprocess_env(QDRANT_PATH=str(tmp_path / "q"), AWS_ACCESS_KEY_ID="x",
                                                  AWS_SECRET_ACCESS_KEY="y", AWS_DEFAULT_REGION="us-east-1",
                                                  AWS_ENDPOINT_URL=endpoint.url),
                               timeout=120, check=False)  # fmt: skip
    finally:
        endpoint.stop()
    assert shown.returncode == 1, (shown.returncode, shown.stdout, shown.stderr)
    assert "listing s3://kb/ failed: S3 listed a key again or out of order on page 2" in shown.stdout + shown.stderr
    assert pages[0] == 2 and "Traceback" not in shown.stderr, (pages, shown.stderr)


# -- tag, type and status filters: NFC on both sides -----------------------------------------------------------------


def test_full_width_tags_and_types_match_as_written_on_both_sides(tmp_path: Path, load_search_app: Any) -> None:
    """The rule (README, round 24): tags, `type` and `status` compare in NFC, not NFKC, at the index and in the
    filter alike: `ｄｅｖｏｐｓ` (full width) finds the note tagged so and only it, `devops` the plain one and only
    it, `#ｄｅｖｏｐｓ` as `ｄｅｖｏｐｓ`; the same for `type`. Pinned, not changed (it held before)."""
    from urllib.parse import quote

    from kbsearch_tools.local.apigw import HttpRequest, build_event
    from tests.conftest import index_bm25

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "wide.md").write_text(
        "---\ntags: [ｄｅｖｏｐｓ]\ntype: ｒｕｎｂｏｏｋ\n---\n# Wide\n\nabout deploys\n", "utf-8"
    )
    (kb / "narrow.md").write_text("---\ntags: [devops]\ntype: runbook\n---\n# Narrow\n\nabout deploys\n", "utf-8")
    assert index_bm25(kb, tmp_path / "q").error is None
    app = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb))
    found = {}
    for name, value in (("tags", "devops"), ("tags", "ｄｅｖｏｐｓ"), ("tags", "#ｄｅｖｏｐｓ"), ("type", "runbook"),
                        ("type", "ｒｕｎｂｏｏｋ")):  # fmt: skip
        query = f"q=deploys&{name}={quote(value)}"
        result = app(build_event(HttpRequest("GET", "/search", query, [], b""), "/search", {}, "dev"))
        assert result["statusCode"] == 200, result
        found[(name, value)] = [hit["path"] for hit in json.loads(result["body"])["results"]]
    assert found == {("tags", "devops"): ["narrow.md"], ("tags", "ｄｅｖｏｐｓ"): ["wide.md"],
                     ("tags", "#ｄｅｖｏｐｓ"): ["wide.md"], ("type", "runbook"): ["narrow.md"],
                     ("type", "ｒｕｎｂｏｏｋ"): ["wide.md"]}, found  # fmt: skip


# -- kbsearch search: snippets wrapped to the terminal ---------------------------------------------------------------


def test_kbsearch_search_wraps_snippets_to_the_terminal_width(bm25_store: Path) -> None:
    """`COLUMNS=40 kbsearch search`: the snippets ran past the terminal's width (one long line each, the terminal
    wrapping them under column 0); they are wrapped at word breaks under their indent, as the progress bar fits the
    width. Piped without COLUMNS the output is as it was (a script's input unchanged)."""
    env = {"QDRANT_PATH": str(bm25_store)}
    narrow = _kbsearch("search", "rotate keys", "--no-rerank", COLUMNS="40", **env)
    piped = _kbsearch("search", "rotate keys", "--no-rerank", **env)
    assert narrow.returncode == 0 and piped.returncode == 0, narrow.stderr + piped.stderr
    snippet_lines = [
        line for line in narrow.stdout.splitlines()[1:]
        if line.startswith(" " * 15) and ".md" not in line and not line.lstrip().startswith("§")
    ]  # fmt: skip
    assert snippet_lines and all(len(line) <= 40 for line in snippet_lines), snippet_lines
    assert any(len(line) > 40 for line in piped.stdout.splitlines()[1:] if line.startswith(" " * 15))
    text = ["".join(shown.stdout.split("\n", 1)[1].split()) for shown in (narrow, piped)]  # past the timing line
    assert text[0] == text[1]  # the same text, only wrapped (a word longer than the width broken in it)
