"""Schemathesis (the current 4.x, its own CLI) against the OpenAPI document `kbsearch serve` serves, with all four
phases: examples, coverage, fuzzing and stateful (the links search → search by query string → top hit over MCP).
Fake providers on loopback, sample-kb indexed. No 5xx, every answer as documented (status, body schema, content
type, headers), authentication enforced; Slack commands are signed by a hook so the fuzzer gets past the 401.
Twice: an open KB and a key without scope, then access scopes on (round 32): sample-kb with an ``_access.yaml``
giving one folder to ``hr`` and one to ``security``, the fuzzer's key holding ``hr`` (its searches, reads by path,
lists and MCP calls carry the scope's must-clause; the ``security`` notes are missing to it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from kbsearch.config import Secrets
from kbsearch.indexer import run_sync
from kbsearch_tools.fakes import FakeProvider, provider_env
from kbsearch_tools.local.process import ServeProcess, serve_process
from tests.conftest import ROOT, provider_settings, subprocess_env

API_KEY = "fuzz-api-key"
SLACK_SECRET = "test-signing-secret"
#: KB_FUZZ_PROFILE: "full" (CI, .ci/run: 300 examples per operation and phase, about 4,000 cases in 1.5 minutes on 2
#: quiet cores) or "quick" (make test's default: 60, about 900 cases); the same phases, checks and seed either way.
PROFILE = os.environ.get("KB_FUZZ_PROFILE", "quick")
MAX_EXAMPLES = {"full": 300, "quick": 60}[PROFILE]
#: schemathesis's own limit, and the test's (pytest-timeout) above it, so the process's limit is the one that fires
FUZZ_TIMEOUT_S = {"full": 900, "quick": 400}[PROFILE]
SEED = 20261125
PHASES = "examples,coverage,fuzzing,stateful"
CHECKS = (
    "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance,"
    "response_headers_conformance,missing_required_header,ignored_auth"
)
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


#: the scoped run's access file: a folder the key's group reads, one it does not (the rest public)
ACCESS_FILE = "en/runbooks/: [hr]\nru/ранбуки/: [security]\n"
READABLE, RESTRICTED = "en/runbooks/Runbook - reindex from scratch.md", "ru/ранбуки/Ротация ключей.md"


@pytest.fixture(scope="module", params=["open", "scoped"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    deepinfra = FakeProvider("deepinfra", api_key="di-test-key").start()
    fireworks = FakeProvider("fireworks", api_key="fw-test-key").start()
    root = tmp_path_factory.mktemp("fuzz")
    store, kb, keys, groups = root / "q", ROOT / "sample-kb", API_KEY, None
    if request.param == "scoped":
        from kbsearch_tools.local.keys import caller_mapping, parse_api_keys

        kb, keys = root / "kb", f"{API_KEY}:hr"
        shutil.copytree(ROOT / "sample-kb", kb)
        (kb / "_access.yaml").write_text(ACCESS_FILE, encoding="utf-8")
        groups = caller_mapping(parse_api_keys(keys), None)  # as kbsearch index learns the keys' group sets
    settings_ = provider_settings(deepinfra, fireworks, qdrant_path=str(store), access_groups=groups)
    report = run_sync(settings_, Secrets(settings_), source_uri=str(kb))
    assert report.error is None, report
    env = subprocess_env(
        QDRANT_PATH=str(store), KB_SOURCE=str(kb), KB_LOCAL_API_KEYS=keys,
        EMBEDDING_DIMENSIONS="64", SLACK_SIGNING_SECRET=SLACK_SECRET,
        SLACK_RESPONSE_HOSTS="hooks.slack.invalid",  # signed fuzzed commands never post anywhere real
        POWERTOOLS_LOG_LEVEL="WARNING", **provider_env(deepinfra, fireworks),
    )  # fmt: skip
    try:
        with serve_process(env, cwd=ROOT) as process:
            yield process
    finally:
        deepinfra.stop()
        fireworks.stop()


@pytest.mark.timeout(FUZZ_TIMEOUT_S + 60)  # above the schemathesis run's own limit, so that one fires first
def test_schemathesis_all_phases_no_5xx(served: ServeProcess, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    report = tmp_path / "schemathesis.json"
    command = [
        str(SCHEMATHESIS), "run", f"{served.base_url}/openapi.json", "--header", f"x-api-key: {API_KEY}",
        "--phases", PHASES, "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
        "--request-timeout", "30", "--generation-database", "none", "--no-color",
        "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    hooks = str(ROOT / "tests" / "schemathesis_hooks.py")
    env = subprocess_env(SCHEMATHESIS_HOOKS=hooks, FUZZ_SLACK_SIGNING_SECRET=SLACK_SECRET)
    # its own folder: schemathesis keeps a cache (.schemathesis/) in the working directory
    proc = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=FUZZ_TIMEOUT_S, check=False
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    run = json.loads(report.read_text())
    assert run["schemathesis_version"].startswith("4.")
    assert run["complete"] and run["exit_code"] == 0 and run["failures"] == [] and run["errors"] == []
    assert {phase: info["status"] for phase, info in run["phases"].items()} == {
        "examples": "success", "coverage": "success", "fuzzing": "success", "stateful": "success",
    }  # fmt: skip
    # /search x2, /mcp x2, /health, /slack/command, /slack/interactive, /whoami, /notes, /notes/{path}
    assert run["operations"]["tested"] == 10, run["operations"]
    assert run["test_cases"]["generated"] >= 10 * MAX_EXAMPLES, run["test_cases"]
    assert run["test_cases"]["with_failures"] == 0, run["test_cases"]
    # the signing hook worked: signed commands were accepted (200) and parsed, not only rejected
    slack_rates = run["valid_rates"]["POST /slack/command"]
    assert sum(phase["accepted"] for phase in slack_rates.values()) > 0, slack_rates
    assert "Traceback" not in served.text()
    if request.node.callspec.params["served"] == "scoped":  # the scope was on: the key reads hr's notes, not security's

        def get(path: str) -> httpx.Response:
            return httpx.get(f"{served.base_url}{quote(path)}", headers={"x-api-key": API_KEY}, timeout=30)

        assert get("/whoami").json()["groups"] == ["hr", "public"]
        assert get(f"/notes/{RESTRICTED}").status_code == 404 and get(f"/notes/{READABLE}").status_code == 200
    print(f"schemathesis {run['schemathesis_version']}: {run['test_cases']['generated']} cases, "
          f"{run['running_time']:.0f} s")  # fmt: skip


def test_schema_documents_every_route(served: ServeProcess) -> None:
    document = httpx.get(f"{served.base_url}/openapi.json", headers={"x-api-key": API_KEY}, timeout=10).json()
    assert {"/search", "/mcp", "/slack/command", "/slack/interactive", "/health", "/notes", "/notes/{path}"} <= set(
        document["paths"]
    )
    assert document["paths"]["/search"]["post"]["security"] == [{"ApiKey": []}]
    assert document["paths"]["/mcp"]["post"]["security"] == [{"ApiKey": []}]
    assert "security" not in document["paths"]["/slack/command"]["post"]
    assert "security" not in document["paths"]["/slack/interactive"]["post"]
    for status in ("400", "403", "411", "413", "415", "422", "503"):
        assert status in document["paths"]["/search"]["post"]["responses"], status
    links = document["paths"]["/search"]["post"]["responses"]["200"]["links"]
    assert set(links) == {"ReadTopHit", "SearchByQueryString", "SearchByBody"}
    assert Path(ROOT / "template.yaml").read_text().count("Path: /mcp") == 2  # POST and GET routes exist
