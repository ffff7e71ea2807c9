"""Round 32, the adversarial pass (adv32): what the ``kbsearch`` CLIs and the settings take as text and URLs and
then send. Through the real interfaces: ``kbsearch`` spawned, its arguments as a terminal's bytes (``subprocess``
with bytes); the search handler with API Gateway events. Each test fails on main's code where it claims a fix (run
with ``PYTHONPATH`` on main's layer and tools)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, copy_store, subprocess_env

PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'


def _kbsearch(tmp_path: Path, args: list[str | bytes], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), SLACK_SIGNING_SECRET="adv32-secret", KB_API_KEY="k",
                         LC_ALL="C.UTF-8", LANG="C.UTF-8")  # fmt: skip
    return subprocess.run([*KBSEARCH_CMD, *args], input=stdin, capture_output=True, cwd=ROOT, env=env,
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "said"),
    [(["slack", b"restore a snapshot \xff"], "argument text: 'restore a snapshot \\xff' is not UTF-8 text"),
     (["slack", "--print-curl", b"caf\xe9"], "argument text: 'caf\\xe9' is not UTF-8 text"),
     (["slack", "--user", b"U\xff", "qdrant"], "argument --user: 'U\\xff' is not UTF-8 text"),
     (["slack", "--print-curl", "q", "--response-url", b"http://127.0.0.1:9/\xff"],
      "argument --response-url: 'http://127.0.0.1:9/\\xff' is not UTF-8 text"),
     (["slack", "--api", "http://127.0.0.1:abc", "qdrant"],
      "argument --api: expected an http(s) URL such as http://127.0.0.1:3000: 'http://127.0.0.1:abc' is not a valid "
      "URL"),
     (["slack", "--api", "http://[::1", "qdrant"], "argument --api: expected an http(s) URL"),
     (["slack", "--api", b"http://127.0.0.1:3000/\xff", "qdrant"],
      "'http://127.0.0.1:3000/\\xff' holds bytes that are not UTF-8"),
     (["serve", "--host", b"127.0.0.\xff"], "argument --host: '127.0.0.\\xff' is not UTF-8 text")],
)  # fmt: skip
def test_a_cli_argument_no_request_can_carry_is_refused_with_the_usage(
    tmp_path: Path, args: list[str | bytes], said: str
) -> None:
    """Python holds a terminal's bytes that are not UTF-8 (a Latin-1 locale, a pasted file name) in ``sys.argv`` as
    lone surrogates; ``kbsearch slack`` put them in the form it signs and ``kbsearch serve --host`` in its socket:
    a ``UnicodeEncodeError`` or ``TypeError: encoding of hostname failed`` traceback. An ``--api`` whose port is
    no number (``:abc``) or an unclosed ``[`` was an ``httpx.InvalidURL`` traceback (``notaurl`` and ``ftp://``
    were already one line). Now each is refused as a usage error (exit 2), one line naming the option and the
    bytes escaped."""
    done = _kbsearch(tmp_path, args)
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err, err[-2000:]
    assert said in err and err.strip().splitlines()[-1].startswith(f"kbsearch {args[0]!s}: error: "), err[-1000:]


@pytest.mark.parametrize(
    ("url", "said"),
    [("http://127.0.0.1:abc", "'http://127.0.0.1:abc' is not a valid URL"),
     (b"http://127.0.0.1:3000/\xff", "'http://127.0.0.1:3000/\\xff' holds bytes that are not UTF-8"),
     ("http://user:pa55word@127.0.0.1:x/", "'http://127.0.0.1:x/' is not a valid URL")],
)  # fmt: skip
def test_kbsearch_mcp_remote_to_a_url_no_request_can_go_to_is_refused_at_start(
    tmp_path: Path, url: str | bytes, said: str
) -> None:
    """``kbsearch mcp --remote`` refused a URL of another scheme at start, but one whose port is no number, or
    holding bytes that are not UTF-8, started the bridge: each request was then answered -32603 "the bridge ...
    failed on this request (InvalidURL): send it again; if it fails again, report it" (an internal error, for a
    mistyped option). Now it stops at start (exit 2), naming the URL without its user-info, answering nothing."""
    done = _kbsearch(tmp_path, ["mcp", "--remote", url], stdin=PING)
    err = done.stderr.decode()
    assert done.returncode == 2 and done.stdout == b"" and "Traceback" not in err, (done.stdout, err[-2000:])
    assert said in err and "--remote takes an http(s) URL" in err and "pa55word" not in err, err


def test_the_urls_and_text_these_options_take_still_work(tmp_path: Path) -> None:
    """Guards the check's reach (passes before and after): UTF-8 words, an IPv6 loopback URL with its port, a
    path, an https URL."""
    curl = _kbsearch(tmp_path, ["slack", "--print-curl", "--api", "http://[::1]:3000/prod", "восстановить снапшот é"])
    assert curl.returncode == 0 and b"http://[::1]:3000/prod/slack/command" in curl.stdout, curl.stderr[-2000:]
    bridged = _kbsearch(tmp_path, ["mcp", "--remote", "https://127.0.0.1:1/prod/é"], stdin=PING)
    assert bridged.returncode == 0 and b'"id":1' in bridged.stdout and b"-32001" in bridged.stdout, bridged


# -- a setting's URL whose host httpx cannot read -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "url"),
    [("QDRANT_URL", "http://xn--a:6333"), ("QDRANT_URL", "https://xn--zz.eu-central-1-0.aws.cloud.qdrant.io:6333"),
     ("QDRANT_URL", "http://\u2488.example:6333"), ("EMBEDDING_URL", "https://xn--a.example/v1/openai"),
     ("RERANKER_URL", "https://xn--a.example/v1/inference/Qwen/Qwen3-Reranker-8B")],
)  # fmt: skip
def test_a_url_setting_whose_host_is_no_domain_name_is_a_503_naming_it_never_a_500(
    load_search_app: Any, bm25_index: Path, tmp_path: Path, setting: str, url: str
) -> None:
    """The URL settings were checked with ``urlsplit``, which takes any host; httpx reads the host only when it
    sends (``xn--`` then no valid punycode, a character IDNA forbids such as U+2488 ``⒈``) and raised idna's
    ``InvalidCodepoint`` or a punycode ``UnicodeError`` from inside the call: with such a ``QDRANT_URL`` every
    search was a 500 ("unexpected error", a traceback in the log); such an ``EMBEDDING_URL`` or ``RERANKER_URL``
    degraded every search with a warning naming no setting. Now the setting is refused as ``EMBEDDING_URL=notaurl``
    already was: a 503 ``not_configured`` naming it, never its value (a URL may carry credentials)."""
    copy_store(bm25_index, tmp_path / "q")
    app = load_search_app(**{setting: url, "QDRANT_PATH": str(tmp_path / "q"), "QDRANT_API_KEY": "k",
                             "EMBEDDING_API_KEY": "k"})  # fmt: skip
    event = build_event(HttpRequest("POST", "/search", "", [("Content-Type", "application/json")],
                                    json.dumps({"query": "restore a snapshot"}).encode()), "/search", {}, "dev")  # fmt: skip
    result = app(event)
    answer = json.loads(result["body"])
    assert result["statusCode"] == 503 and answer["error"] == "not_configured", result
    assert f"invalid setting {setting}" in answer["message"] and "IDNA" in answer["message"], answer
    assert "xn--" not in answer["message"] and "\u2488" not in answer["message"], answer


# -- a signing secret that is not UTF-8 ---------------------------------------------------------------------------

LATIN1_SECRET = (
    "xyzzy-s\udce9cr3t"  # the shell's bytes b"xyzzy-s\xe9cr3t", as Python holds them (os.fsencode gives them back)
)


def test_a_slack_signing_secret_that_is_not_utf8_is_named_never_a_traceback(
    tmp_path: Path, load_search_app: Any
) -> None:
    """A ``SLACK_SIGNING_SECRET`` set from a shell or file in Latin-1 (only possible locally: Lambda's environment
    and SSM hold UTF-8): ``kbsearch slack`` signed with it, a ``UnicodeEncodeError`` traceback; the search handler
    (``kbsearch serve``) answered each Slack request 503 ``slack_unavailable`` logging "the store of seen Slack
    signatures failed", a cause that was not it. Now it is an invalid setting named as any other: the CLI one line
    (exit 2); the handler answers Slack 503 ``slack_not_configured`` and ``/health`` names the variable (as for every
    invalid setting, searches answer 503 ``not_configured`` too), the secret never shown."""
    done = subprocess.run([*KBSEARCH_CMD, "slack", "--print-curl", "qdrant"], capture_output=True, cwd=ROOT,
                          env=subprocess_env(SLACK_SIGNING_SECRET=LATIN1_SECRET), timeout=PROCESS_TIMEOUT_S,
                          check=False)  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err and done.stdout == b"", err[-2000:]
    assert "invalid setting SLACK_SIGNING_SECRET: holds bytes that are not UTF-8" in err and "xyzzy" not in err, err
    app = load_search_app(SLACK_SIGNING_SECRET=LATIN1_SECRET, QDRANT_PATH=str(tmp_path / "q"))
    body = (
        b"command=%2Fkb&text=qdrant&team_id=T1&channel_id=C1&user_id=U1&response_url=https%3A%2F%2Fhooks.slack.com%2Fx"
    )
    headers = [("Content-Type", "application/x-www-form-urlencoded"), ("X-Slack-Request-Timestamp", "1"),
               ("X-Slack-Signature", "v0=" + "0" * 64)]  # fmt: skip
    result = app(build_event(HttpRequest("POST", "/slack/command", "", headers, body), "/slack/command", {}, "dev"))
    answer = json.loads(result["body"])
    assert result["statusCode"] == 503 and answer["error"] == "slack_not_configured", result
    health = json.loads(app(build_event(HttpRequest("GET", "/health", "", [], b""), "/health", {}, "dev"))["body"])
    assert health["ready"] is False and "xyzzy" not in json.dumps(health), health
    assert any("invalid setting SLACK_SIGNING_SECRET" in reason for reason in health["reasons"]), health


@pytest.mark.parametrize(
    ("setting", "url"),
    [("QDRANT_URL", "http://127.0.0.1:1/\udcff"), ("QDRANT_URL", "http://127.0.0.1:1/?a=\udce9"),
     ("QDRANT_URL", "http://qdr\udce9nt.example:6333"), ("EXPANSION_URL", "https://api.deepinfra.com/v1/\udcff")],
)  # fmt: skip
def test_a_url_setting_holding_bytes_that_are_not_utf8_is_one_line_naming_it(
    tmp_path: Path, setting: str, url: str
) -> None:
    """A URL setting from a shell in another encoding (Python holds the bytes as lone surrogates): ``kbsearch
    search`` with such a ``QDRANT_URL`` or ``EXPANSION_URL`` ended in httpx's ``UnicodeEncodeError`` traceback
    (exit 1; the settings check had taken them). Now the setting is invalid, named, one line (exit 2), its value
    never shown."""
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), QDRANT_API_KEY="k", EXPANSION_API_KEY="k",
                         **{setting: url})  # fmt: skip
    done = subprocess.run([*KBSEARCH_CMD, "search", "qdrant"], capture_output=True, cwd=tmp_path, env=env,
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err, err[-2000:]
    assert f"invalid setting {setting}: " in err and "127.0.0.1" not in err and "deepinfra" not in err, err


# -- a .env line that sets a setting but does not read ------------------------------------------------------------


@pytest.mark.parametrize(
    "line", ['QDRANT_URL="https://xyz.eu-central-1-0.aws.cloud.qdrant.io:6333', "export QDRANT_URL='https://xyz",
             'QDRANT_URL="https://xyz.cloud.qdrant.io" :6333']
)  # fmt: skip
def test_a_dotenv_line_setting_qdrant_url_that_does_not_read_stops_kbsearch_index(tmp_path: Path, line: str) -> None:
    """A ``.env`` line ``KEY=`` whose value does not read (a quote left open, text after the closing quote) was
    skipped without a word (python-dotenv at least warns): the setting fell back to its default, and ``kbsearch
    index`` with ``QDRANT_URL`` so misquoted wrote a local store in the working folder and said it had indexed the
    KB (exit 0), the cloud collection untouched. Now the run stops before anything is read or written, naming the
    file, the line and the setting, never the value."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "note.md").write_text("# Note\n\nquokka\n", encoding="utf-8")
    (tmp_path / ".env").write_text(f"SNIPPET_CHARS=300\n{line}\n", encoding="utf-8")
    env = subprocess_env(QDRANT_PATH="", QDRANT_URL="")
    env.pop("QDRANT_PATH"), env.pop("QDRANT_URL")  # as a shell without them: the .env is where they are set
    done = subprocess.run([*KBSEARCH_CMD, "index", str(kb)], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stdout + done.stderr[-2000:]
    assert "cannot read .env: line 2 sets QDRANT_URL but its value does not read" in done.stderr, done.stderr
    assert "xyz" not in done.stderr and not (tmp_path / ".kbsearch").exists(), done.stderr


# -- a local API key no header carries ----------------------------------------------------------------------------


@pytest.mark.parametrize("keys", ["good,k\udcff:hr", "good,k\u0451y:hr", "good,k\u200by"])
def test_a_local_api_key_no_header_carries_is_named_at_start(tmp_path: Path, keys: str) -> None:
    """``KB_LOCAL_API_KEYS`` holding a shell's bytes that are not UTF-8 stopped ``kbsearch serve`` and ``kbsearch
    index`` with a ``UnicodeEncodeError`` traceback (a key's id is its hash); a key with a letter like ``ё`` or an
    invisible character started the server, whose every request with it was then 403 (a header carries
    printable ASCII; API Gateway's keys are so). Now ``kbsearch serve`` stops naming the entry's position, never
    the key; ``kbsearch index`` reads no group sets from keys it cannot read (its rule: the server names the
    problem) and indexes."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "note.md").write_text("# Note\n\nquokka\n", encoding="utf-8")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_LOCAL_API_KEYS=keys, KB_SOURCE=str(kb))
    served = subprocess.run([*KBSEARCH_CMD, "serve", "--port", "0"], capture_output=True, text=True, cwd=ROOT,
                            env=env, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert served.returncode == 2 and "Traceback" not in served.stderr, served.stderr[-2000:]
    assert "KB_LOCAL_API_KEYS entry 2: a key is printable ASCII" in served.stderr, served.stderr
    indexed = subprocess.run([*KBSEARCH_CMD, "index", str(kb)], capture_output=True, text=True, cwd=tmp_path,
                             env=env, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert indexed.returncode == 0 and "Traceback" not in indexed.stderr, indexed.stdout + indexed.stderr[-2000:]


# -- a model name that is not UTF-8 -------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["EXPANSION_MODEL", "EMBEDDING_FALLBACK_MODEL"])
def test_a_model_setting_holding_bytes_that_are_not_utf8_is_a_503_naming_it_never_a_500(
    load_search_app: Any, bm25_index: Path, tmp_path: Path, setting: str
) -> None:
    """A model name set from a shell in another encoding went into the provider's JSON body, whose encoding
    raised ``UnicodeEncodeError``: with such an ``EXPANSION_MODEL`` every search was a 500 (loopback fakes of
    DeepInfra and Fireworks, the embedded store); with such an ``EMBEDDING_FALLBACK_MODEL`` a search whose primary
    failed (DeepInfra's embeddings answering 503, as here) went without the fallback, naming no setting. Now every text setting but the file names
    and the provider keys is checked for UTF-8 when the settings are read (``Settings._utf8_text``): 503
    ``not_configured`` naming the variable, never its value."""
    from kbsearch_tools.fakes import FakeProvider, provider_env

    deepinfra = FakeProvider("deepinfra", api_key="di-test-key").start()
    fireworks = FakeProvider("fireworks", api_key="fw-test-key").start()
    deepinfra.fail("embeddings", status=503)  # the fallback's model is sent when the primary fails
    try:
        copy_store(bm25_index, tmp_path / "q")
        app = load_search_app(**provider_env(deepinfra, fireworks), QDRANT_PATH=str(tmp_path / "q"),
                              EMBEDDING_DIMENSIONS="64", **{setting: "Qwen/Qwen3-\udcff"})  # fmt: skip
        event = build_event(HttpRequest("POST", "/search", "", [("Content-Type", "application/json")],
                                        json.dumps({"query": "restore a snapshot"}).encode()), "/search", {}, "dev")  # fmt: skip
        result = app(event)
    finally:
        deepinfra.stop()
        fireworks.stop()
    answer = json.loads(result["body"])
    assert result["statusCode"] == 503 and answer["error"] == "not_configured", result
    assert answer["message"].startswith(f"invalid setting {setting}: holds bytes that are not UTF-8"), answer
