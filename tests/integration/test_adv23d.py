"""Round 23d of the adversarial pass (RELIABILITY.md "Round 23d: the adversarial pass (adv23d)"): through the
real interfaces, the search handler's API Gateway events, the Slack worker, `kbsearch` processes, the full sync
against a loopback S3."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbsearch import slack
from kbsearch.config import Settings
from kbsearch.providers.resilience import shared_client
from kbsearch.slack_worker import MemoryDeduper, handle_job
from kbsearch_tools.fakes import FakeEndpoint
from tests.conftest import copy_store
from tests.integration.test_slack import SECRET, form, slack_event


@pytest.fixture
def response_url() -> Iterator[FakeEndpoint]:
    endpoint = FakeEndpoint().start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def app(load_search_app, bm25_index: Path, tmp_path: Path):
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    return load_search_app(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET=SECRET, SLACK_RESPONSE_HOSTS="127.0.0.1")


# -- 6: the acknowledgement shows the question as the answer does ----------------------------------------------


@pytest.mark.parametrize("bad", ["\x01", "\x00", "\x7f", "\x1b[31m", "\u202e", "\r"])
def test_the_slack_acknowledgement_never_echoes_a_control_character_of_the_question(
    app, response_url: FakeEndpoint, bad: str
) -> None:
    result = app(slack_event(form(f"snap{bad}shot", response_url.url + "/commands/1")))
    assert result["statusCode"] == 200
    text = json.loads(result["body"])["text"]
    assert text.startswith("Searching for “snap") and "shot”…" in text
    assert not [c for c in text if (ord(c) < 0x20 and c != "\n") or c == "\x7f" or "\u202a" <= c <= "\u202e"], text
    assert response_url.wait(20), "the worker never answered"
    apology = slack.apology(f"snap{bad}shot")["text"]
    assert not [c for c in apology if ord(c) < 0x20 or c == "\x7f" or "\u202a" <= c <= "\u202e"], apology


# -- 2: response_url must be Slack's --------------------------------------------------------------------------


def _job(url: str) -> dict:
    return slack.parse_command(form("qdrant", url).encode()).to_job()


@pytest.mark.parametrize(
    "template",
    ["http://127.0.0.1:{port}/x", "https://127.0.0.1:{port}/x", "http://169.254.169.254/latest/meta-data/",
     "https://hooks.slack.com.evil.test/x", "https://hooks.slack.com@127.0.0.1:{port}/x",
     "https://hooks.slack.com:443@127.0.0.1:{port}/x", "http://[::1]:{port}/x", "https://[::ffff:127.0.0.1]:{port}/x",
     "https://hooks.slack.com./x", "https://HOOKS.SLACK.COM.evil.test/x", "https://hooks.slack.com%2e127.0.0.1/x",
     "https://127.0.0.1:{port}#@hooks.slack.com/x", "https://127.0.0.1:{port}?@hooks.slack.com/x",
     "file:///etc/passwd", "//hooks.slack.com/x"],
)  # fmt: skip
def test_a_response_url_off_slacks_host_is_never_posted_to(tmp_path: Path, response_url: FakeEndpoint,
                                                          template: str) -> None:  # fmt: skip
    settings = Settings(qdrant_path=str(tmp_path / "q"))  # the default: hooks.slack.com over https only
    url = template.format(port=response_url.url.rsplit(":", 1)[1])
    assert handle_job(_job(url), lambda: None, MemoryDeduper(), shared_client(), settings) == "rejected"  # type: ignore[arg-type,return-value]
    time.sleep(0.1)
    assert response_url.requests == []


@pytest.mark.parametrize(
    "url",
    ["https://user:pass@hooks.slack.com/commands/1", "https://127.0.0.1\\@hooks.slack.com/commands/1",
     "https://127.0.0.1;@hooks.slack.com/commands/1", "https://hooks.slack.com\t/commands/1",
     "https://hooks.sla\nck.com/commands/1", " https://hooks.slack.com/commands/1"],
)  # fmt: skip
def test_a_response_url_another_parser_could_read_otherwise_is_refused(url: str) -> None:
    """userinfo, white space or controls, a backslash: Slack sends none; urlsplit and the HTTP client may disagree
    on the host of such a URL (urlsplit drops tabs and newlines, httpx refuses them)."""
    assert not slack.allowed_response_url(url, ("hooks.slack.com",))
    assert slack.allowed_response_url("https://hooks.slack.com/commands/T1/2/abc", ("hooks.slack.com",))


def test_a_redirect_from_an_allowed_response_url_is_not_followed(tmp_path: Path) -> None:
    elsewhere = FakeEndpoint().start()
    hop = FakeEndpoint(status=307)
    hop.headers = {"Location": elsewhere.url + "/stolen"}
    hop.start()
    try:
        settings = Settings(qdrant_path=str(tmp_path / "q"), slack_response_hosts="127.0.0.1")
        job = slack.parse_command(form("help", hop.url + "/commands/1").encode()).to_job()
        assert handle_job(job, lambda: None, MemoryDeduper(), shared_client(), settings) == "expired"  # type: ignore[arg-type,return-value]
        assert len(hop.requests) == 1
        time.sleep(0.1)
        assert elsewhere.requests == []
    finally:
        hop.stop()
        elsewhere.stop()


# -- 3: a listing that never ends -------------------------------------------------------------------------------


def _lying_s3(tmp_path: Path, notes: list[tuple[str, bytes]], respond) -> tuple:
    """Six notes indexed from a folder, then an S3 client on a loopback endpoint answering ``respond``."""
    import boto3
    from botocore.config import Config

    from kbsearch.config import Secrets
    from kbsearch.indexer import Indexer
    from kbsearch.qdrant import open_store
    from kbsearch.sources import LocalSource

    kb = tmp_path / "kb"
    kb.mkdir()
    for name, text in notes:
        (kb / name).write_bytes(text)
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    store = open_store(settings, Secrets(settings))
    try:
        Indexer(LocalSource(kb), store, None).sync()
    finally:
        store.close()
    endpoint = FakeEndpoint().start()
    endpoint.responder = respond
    client = boto3.client(
        "s3", endpoint_url=endpoint.url, region_name="us-east-1",
        config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )  # fmt: skip
    return settings, endpoint, client


def test_a_listing_of_fresh_next_pages_for_ever_stops_at_the_runs_deadline_deleting_nothing(tmp_path: Path) -> None:
    """S3 answers every page with one new key and a next page never named before (T1, T2, ...): the full sync
    followed them until the function's timeout (round 23a's "Left"). It stops at the run's deadline now, a failed
    listing naming it and the pages read, nothing deleted."""
    import threading
    from typing import Any

    from kbsearch.config import Secrets
    from kbsearch.indexer import Indexer, SyncOptions
    from kbsearch.providers.resilience import Deadline
    from kbsearch.qdrant import open_store
    from kbsearch.sources import S3Source
    from tests.integration.test_lying_objects import _listing_page

    notes = [(f"n{i}.md", f"# N{i}\n\nnote {i}".encode()) for i in range(6)]
    pages = [0]

    def respond(method: str, path: str) -> tuple[int, bytes, str]:
        if "list-type=2" not in path:
            return 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml"
        pages[0] += 1  # a fresh key on each (ascending, as S3 lists; keys listed again fail sooner: round 24)
        return 200, _listing_page([(f"p{pages[0]:09d}.md", b"# P\n")], True, f"T{pages[0]}"), "application/xml"

    settings, endpoint, client = _lying_s3(tmp_path, notes, respond)
    store = open_store(settings, Secrets(settings))
    outcome: list[Any] = []
    try:
        indexer = Indexer(S3Source("kb", "", client), store, None, SyncOptions())
        sync = threading.Thread(target=lambda: outcome.append(indexer.sync(Deadline(3))), daemon=True)
        sync.start()
        sync.join(60)
        assert outcome, f"the sync is still listing after 60 s ({pages[0]} pages)"
        after = sorted({p["path"] for p in store.points().values()})
    finally:
        endpoint.stop()
        store.close()
    report = outcome[0]
    assert after == [name for name, _ in notes] and report.deleted == 0 and report.incomplete, report
    assert report.error.startswith("listing s3://kb/ failed: S3 was still naming next pages at the run's deadline")
    assert "pages read" in report.error and "nothing deleted" in report.error, report.error


# -- 4: s3://bucket//x ------------------------------------------------------------------------------------------


def test_an_s3_uri_with_a_prefix_starting_with_a_slash_names_those_keys(tmp_path: Path) -> None:
    """``s3://kb//x`` was read as the prefix ``x/``, so a KB under ``/x/`` (keys starting with ``/``, which S3
    allows and the template's ``KbPrefix`` + EventBridge rule match as written) could not be named and a prefix
    typed with a ``/`` indexed another KB. It is the key prefix ``/x/`` now, as ``aws s3 ls s3://kb//x/`` reads it."""
    import boto3
    from moto import mock_aws

    from kbsearch.config import Secrets
    from kbsearch.indexer import run_sync
    from kbsearch.sources import open_source
    from tests.integration.test_events import open_points

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        s3.put_object(Bucket="kb-notes", Key="/x/slashed.md", Body=b"# Slashed\n\nunder /x/")
        s3.put_object(Bucket="kb-notes", Key="x/plain.md", Body=b"# Plain\n\nunder x/")
        source = open_source("s3://kb-notes//x")
        assert source.uri == "s3://kb-notes//x/"
        assert [o.path for o in source.list()] == ["slashed.md"]
        assert source.read_path("slashed.md").startswith(b"# Slashed")
        settings = Settings(qdrant_path=str(tmp_path / "q"), kb_source="s3://kb-notes//x")
        assert run_sync(settings, Secrets(settings)).error is None
        assert {p["path"] for p in open_points(settings)} == {"slashed.md"}
        assert [o.path for o in open_source("s3://kb-notes/x").list()] == ["plain.md"]


# -- 7: kbsearch mcp's stderr in an assistant's log pane -------------------------------------------------------


def test_kbsearch_mcp_logs_warnings_only_unless_asked_for_more(bm25_index: Path, tmp_path: Path) -> None:
    """An assistant shows a stdio server's stderr in its log pane (the MCP spec: stderr is for logging, which a
    client may capture, forward or ignore): ``kbsearch mcp`` wrote an INFO ``access`` line for every search and
    note read. Warnings and errors only now; ``kbsearch -v mcp`` logs everything, the access lines too."""
    import subprocess

    from tests.conftest import KBSEARCH_CMD, ROOT, subprocess_env
    from tests.integration.test_mcp_stdio import INIT, call, line

    store = tmp_path / "q"
    copy_store(bm25_index, store)
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"))
    lines = [line(INIT), line({"jsonrpc": "2.0", "method": "notifications/initialized"}),
             call(2, "kb_search", {"query": "qdrant snapshot"}), call(3, "kb_get_note", {"path": "en/Glossary.md"}),
             call(4, "kb_get_note", {"path": "en/no such note.md"})]  # fmt: skip
    for verbose in ([], ["-v"]):
        proc = subprocess.run([*KBSEARCH_CMD, *verbose, "mcp"], input=b"".join(lines), capture_output=True, env=env,
                              cwd=ROOT, timeout=120, check=False)  # fmt: skip
        stderr = proc.stderr.decode("utf-8", "replace")
        answers = [json.loads(a) for a in proc.stdout.split(b"\n") if a]
        assert proc.returncode == 0 and [a.get("id") for a in answers] == [1, 2, 3, 4], (answers, stderr)
        assert "Traceback" not in stderr
        if verbose:
            assert "INFO kbsearch.search: access" in stderr, stderr
        else:
            assert [ln for ln in stderr.splitlines() if not ln.startswith(("WARNING ", "ERROR "))] == [], stderr


# -- 5: Expect: 100-continue at kbsearch serve ------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_with_keys(bm25_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from kbsearch_tools.local.process import serve_process
    from tests.conftest import ROOT, subprocess_env

    store = tmp_path_factory.mktemp("adv23d") / "q"
    copy_store(bm25_index, store)
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"), KB_LOCAL_API_KEYS="pubkey,hrkey:hr")
    with serve_process(env, cwd=ROOT) as process:
        yield process
    text = process.text()
    assert "Traceback" not in text and "pubkey" not in text and "hrkey" not in text, text[-3000:]


@pytest.mark.parametrize(
    ("target", "headers", "status"),
    [("/search", "", 403), ("/search", "x-api-key: wrong\n", 403), ("/search", "x-api-key: pubkey, hrkey\n", 400),
     ("/nowhere", "x-api-key: pubkey\n", 403), ("/search", "x-api-key: pubkey\nHost: evil.example\n", 403)],
)  # fmt: skip
def test_serve_refuses_a_request_api_gateway_refuses_by_its_headers_without_100_continue(
    served_with_keys, target: str, headers: str, status: int
) -> None:
    """``Expect: 100-continue`` asks whether to send the body: a request refused whatever its body (no key, a wrong
    one, two, no route, a Host not this machine's) got "100 Continue" first, then the refusal after its body was
    sent (RFC 9110 10.1.1: the final status instead). Now the refusal comes at once, the connection closed."""
    from tests.integration.test_serve_socket import exchange, gateway_error, req

    host = "" if "Host:" in headers else "Host: 127.0.0.1\n"
    head = (f"POST {target} HTTP/1.1\n{host}Content-Type: application/json\nExpect: 100-continue\n"
            f"Content-Length: 50000\n{headers}")  # fmt: skip
    raw = exchange(served_with_keys.base_url, req(head), half_close=False, timeout=30)
    assert not raw.startswith(b"HTTP/1.1 100"), raw[:200]
    gateway_error(raw, status)


def test_serve_still_sends_100_continue_when_the_headers_are_fine(served_with_keys) -> None:
    """A good key: "100 Continue", then the body, then the answer. A coded body (the function's 415, not the
    gateway's) still gets "100 Continue": API Gateway passes the body on and the function refuses it."""
    import socket

    from tests.integration.test_serve_socket import address, req, responses

    body = b'{"query": "snapshot"}'
    for extra, status in (("", 200), ("Content-Encoding: gzip\n", 415)):
        head = (f"POST /search HTTP/1.1\nHost: 127.0.0.1\nx-api-key: pubkey\nContent-Type: application/json\n"
                f"Expect: 100-continue\nContent-Length: {len(body)}\n{extra}")  # fmt: skip
        with socket.create_connection(address(served_with_keys.base_url), timeout=30) as sock:
            sock.sendall(req(head))
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(body)
            sock.shutdown(socket.SHUT_WR)
            raw = b"".join(iter(lambda: sock.recv(65536), b""))
        ((got, _, _),) = responses(raw)
        assert got == status


# -- 8: a votes file of millions of lines -----------------------------------------------------------------------


def _export_rss_kb(votes: Path, out: Path) -> tuple[int, int, str]:
    """``kbsearch feedback export`` in a process of its own: its exit code, its peak RSS (KB) and its stderr."""
    import subprocess
    import sys

    from tests.conftest import ROOT, subprocess_env

    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over an exec (pytest's own RSS would be the floor)
    code = ("import sys\nfrom kbsearch_tools.cli import main\n"
            f"code = main(['feedback', 'export', '--beir', {str(out)!r}, '--kb', 'sample-kb', '--file', {str(votes)!r},"
            " '--table', '', '--json'])\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0].split()[1]\n"
            "print('RSS', hwm, file=sys.stderr)\nsys.exit(code)\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), cwd=ROOT,
                          timeout=300, check=False)  # fmt: skip
    rss = int(proc.stderr.rsplit("RSS ", 1)[1].split()[0]) if "RSS " in proc.stderr else -1
    return proc.returncode, rss, proc.stderr


def test_feedback_export_holds_a_vote_in_a_fraction_of_its_record(tmp_path: Path) -> None:
    """Every vote read was held as its whole record (5.4 KB with ten hits: 540 MB for 100,000 votes, so a 1 GB
    file, 1.2 M votes, took 6.5 GB and an OOM kill); the export holds what it reads of each now (its hits' paths
    interned). 60,000 votes (1,000 questions, each voted by 60) on sample-kb's notes: the peak RSS over one vote's (a wide margin: ~1/3 of before)."""
    from kbsearch.feedback import vote_record
    from tests.conftest import ROOT

    notes = sorted(str(p.relative_to(ROOT / "sample-kb")) for p in (ROOT / "sample-kb").rglob("*.md"))[:10]
    lines = [json.dumps(vote_record(f"question {i % 1000}", {}, 0, notes, 1, "up", f"voter{i}")) + "\n"
             for i in range(60_000)]  # fmt: skip
    many, one = tmp_path / "many.jsonl", tmp_path / "one.jsonl"
    many.write_text("".join(lines))
    one.write_text(lines[0])
    code, base, err = _export_rss_kb(one, tmp_path / "o1")
    assert code == 0, err
    code, peak, err = _export_rss_kb(many, tmp_path / "o2")
    assert code == 0 and "Traceback" not in err, err
    assert json.loads((tmp_path / "o2" / "queries.jsonl").read_text().splitlines()[0])["text"].startswith("question")
    assert peak - base < 120_000, (base, peak)  # before: 340 MB over; now 45


def test_a_votes_line_with_no_end_is_refused_unread(tmp_path: Path) -> None:
    """A line of 3 MB with no newline (a file cut or not a votes file) was read whole into memory (a 1 GB one, 1 GB
    and then its parse): a line over 1 MiB is no vote, named by its number, read no further."""
    votes = tmp_path / "votes.jsonl"
    votes.write_text('{"id": "a", "vote": "up", "query": "q", "hits": []}\n{"query": "' + "x" * 3_000_000)
    code, _, err = _export_rss_kb(votes, tmp_path / "o")
    assert code == 2 and "votes.jsonl:2: a line longer than 1024 KiB is no vote" in err, err


# -- 1: two processes on one embedded store ---------------------------------------------------------------------


def test_kbsearch_index_while_an_assistants_mcp_holds_the_store_says_to_wait_for_it(
    bm25_index: Path, tmp_path: Path
) -> None:
    """``kbsearch index`` (and ``--rebuild``) while a ``kbsearch mcp`` holds the store (an assistant's search within
    its ``--idle-close``): refused, the holder named (``pid N: kbsearch mcp``), nothing written, but the advice was a
    server's ("a kbsearch serve of this version takes the sync itself ... stop that process"). It says the mcp lets
    go after its idle time now; once it has, the same index runs, no lock or mark left behind."""
    import subprocess

    from tests.conftest import KBSEARCH_CMD, ROOT, subprocess_env
    from tests.integration.test_mcp_stdio import INIT, call, line

    store = tmp_path / "q"
    copy_store(bm25_index, store)
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"))
    mcp = subprocess.Popen([*KBSEARCH_CMD, "mcp", "--idle-close", "120"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, cwd=ROOT)  # fmt: skip
    assert mcp.stdin and mcp.stdout
    try:
        mcp.stdin.write(line(INIT) + call(2, "kb_search", {"query": "snapshot"}))
        mcp.stdin.flush()
        assert json.loads(mcp.stdout.readline())["id"] == 1
        assert json.loads(mcp.stdout.readline())["result"]["isError"] is False  # it holds the store now
        for rebuild in ([], ["--rebuild"]):
            proc = subprocess.run([*KBSEARCH_CMD, "index", *rebuild, "sample-kb"], capture_output=True, text=True,
                                  env=env, cwd=ROOT, timeout=120, check=False)  # fmt: skip
            assert proc.returncode == 75 and "Traceback" not in proc.stderr, proc.stderr  # held elsewhere (was 1)
            assert f"(pid {mcp.pid}: kbsearch mcp)" in proc.stdout, proc.stdout
            assert "lets go after --idle-close" in proc.stdout and "kbsearch serve of this version" not in proc.stdout
    finally:
        mcp.stdin.close()
        assert mcp.wait(60) == 0
    after = subprocess.run([*KBSEARCH_CMD, "index", "sample-kb"], capture_output=True, text=True, env=env, cwd=ROOT,
                           timeout=120, check=False)  # fmt: skip
    assert after.returncode == 0, after.stdout + after.stderr
    assert not list(store.rglob("*.opening"))
