"""Shared fixtures: a clean environment per test (no shell or .env leakage), repo paths, AWS via moto."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import SECRET_NAMES, Settings
from kbsearch_tools.fakes import FakeProvider, provider_env

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VAULT = SHARED / "kb" / "obsidian-help"
KBSEARCH_CMD = [sys.executable, "-m", "kbsearch_tools.cli"]
#: The limit of one kbsearch process a test starts: under the 120 s a test may take (pytest-timeout, pyproject.toml),
#: so the process's own timeout fires first, with its output; ~10x what indexing sample-kb takes on a loaded 2-core
#: machine. A test that starts several marks its own limit (@pytest.mark.timeout) above their sum.
PROCESS_TIMEOUT_S = 100

_SETTING_VARS = {name.upper() for name in Settings.model_fields} | {f"{n}_PARAM" for n in SECRET_NAMES}
_LAMBDA_VARS = {
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_SAM_LOCAL",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "_HANDLER",
    "KB_LOCAL_API_KEYS",
}


#: Every secret value any test hands to kb-search. None may appear in a log record, captured output or response.
SECRET_VALUES = (
    "di-test-key", "fw-test-key", "di-key", "fw-key", "qdrant-test-key", "qdrant-plain-secret",
    "di-secret-value-123", "fw-secret-value-456", "slack-signing-secret-789", "8f742231b10e8888abcd99yyyzzz85a5",
    "test-signing-secret", "stale-key", "wrong-again", "fw-plain-secret",
)  # fmt: skip


def leaked_secrets(text: str) -> list[str]:
    return [value for value in SECRET_VALUES if value in text]


class _RecordCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.getMessage()} {record.__dict__!r}"
        except Exception:  # a record whose message cannot be built is itself worth a look
            text = repr(record.__dict__)
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        self.texts.append(text)


@pytest.fixture(autouse=True)
def secret_guard() -> Iterator[None]:
    """Collects every log record of kb-search (at DEBUG) and of its libraries during the test; fails the test if
    any carries a secret value. Captured stdout/stderr are checked by the report hook below."""
    collector = _RecordCollector()
    root = logging.getLogger()
    kbsearch_logger = logging.getLogger("kbsearch")
    previous = kbsearch_logger.level
    kbsearch_logger.setLevel(logging.DEBUG)
    root.addHandler(collector)
    try:
        yield
    finally:
        root.removeHandler(collector)
        kbsearch_logger.setLevel(previous)
    leaked = leaked_secrets("\n".join(collector.texts))
    assert not leaked, f"secret value(s) in log records: {leaked}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Fails a passing test whose captured stdout, stderr or log output carries a secret value (Powertools'
    JSON logs go to stdout)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.passed:
        return
    leaked = leaked_secrets("\n".join(content for _, content in report.sections))
    if leaked:
        report.outcome = "failed"
        report.longrepr = f"secret value(s) leaked into captured output: {leaked}"


#: What a synchronous Lambda invoke can answer (the function's result as JSON): "the maximum payload size is 6 MB";
#: past it API Gateway answers 502.
LAMBDA_ANSWER_BYTES = 6 * 1000 * 1000


def lambda_result_bytes(result: Any) -> int:
    """What the function's result takes as the python3.13 runtime sends it: JSON not ASCII-escaped (awslambdaric's
    marshaller, ``ensure_ascii=False`` from python3.12), in UTF-8."""
    return len(json.dumps(result, default=str, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def check_response(result: Any) -> None:
    """What any handler answers: within Lambda's answer size; no secret values; error bodies without tracebacks or
    local paths."""
    text = json.dumps(result, default=str)
    size = lambda_result_bytes(result)
    assert size <= LAMBDA_ANSWER_BYTES, f"an answer of {size:,} bytes: past Lambda's 6 MB"
    assert not leaked_secrets(text), f"secret value(s) in a response: {leaked_secrets(text)}"
    if isinstance(result, dict) and int(result.get("statusCode", 200)) >= 400:
        body = str(result.get("body") or "")
        for marker in ("Traceback", 'File "', "site-packages", str(ROOT), "/tmp/"):
            assert marker not in body, f"error body exposes internals ({marker!r}): {body[:300]}"


@pytest.fixture(autouse=True, scope="session")
def interrupts_as_at_a_terminal() -> None:
    """The processes tests start and then stop with Ctrl-C (`kbsearch serve`, `mcp`, the console script) start with
    SIGINT as a terminal gives it, whatever started the test run: a run launched as a background job or under
    `nohup` ignores SIGINT (a shell sets that for an asynchronous command), every process it starts inherits the
    ignoring, and such a `kbsearch serve` rightly keeps ignoring Ctrl-C (as `kbsearch_entry` does by design). In a
    run launched so, three tests waited 100 s each on a server that ignored their Ctrl-C."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _interrupt_state() -> tuple[Any, bool]:
    """This thread's SIGINT handler, and whether SIGINT is blocked in it (what a process it starts inherits)."""
    import signal

    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    return signal.getsignal(signal.SIGINT), blocked


@pytest.fixture(autouse=True)
def interrupts_as_found() -> Iterator[None]:
    """A test leaves the worker's SIGINT as it found it: a handler replaced, or the signal left blocked, is
    inherited by every process the worker starts after (a `kbsearch serve` or `mcp` a later test stops with Ctrl-C
    then never stops). Fails the test that changed it, naming what changed, and puts it back."""
    import signal

    before = _interrupt_state()
    yield
    after = _interrupt_state()
    if after != before:
        signal.signal(signal.SIGINT, before[0])
        signal.pthread_sigmask(signal.SIG_UNBLOCK if not before[1] else signal.SIG_BLOCK, [signal.SIGINT])
        pytest.fail(f"the test left SIGINT changed: {before} -> {after}")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test starts without kb-search settings, Lambda markers or real AWS credentials."""
    for name in list(os.environ):
        if name in _SETTING_VARS or name in _LAMBDA_VARS:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "KbSearchTest")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    # Settings also read ./.env: run each test from an empty folder unless it chooses otherwise.
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    yield


@pytest.fixture
def repo_root() -> Path:
    return ROOT


def copy_store(src: Path, dst: Path) -> None:
    """Copy an embedded store keeping its files sparse: Qdrant Edge preallocates 32 MiB files (WAL, mmap pages)
    that hold ~1 MiB of data; shutil.copytree would write every zero (a suite of such copies filled 58 GB)."""
    subprocess.run(["cp", "-a", "--sparse=always", str(src), str(dst)], check=True)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The current (cleaned) environment plus ``extra``, for child processes."""
    env = {k: v for k, v in os.environ.items() if k not in _SETTING_VARS and k not in _LAMBDA_VARS}
    env.update(extra)
    return env


@pytest.fixture
def deepinfra() -> Iterator[FakeProvider]:
    fake = FakeProvider("deepinfra", api_key="di-test-key").start()
    yield fake
    fake.stop()


@pytest.fixture
def fireworks() -> Iterator[FakeProvider]:
    fake = FakeProvider("fireworks", api_key="fw-test-key").start()
    yield fake
    fake.stop()


def provider_settings(
    deepinfra: FakeProvider | None, fireworks: FakeProvider | None = None, **extra: object
) -> Settings:
    """Settings pointing at the loopback fakes (64-dim embeddings keep the tests quick)."""
    values: dict[str, object] = {"embedding_dimensions": 64, "provider_retries": 1}
    values |= provider_env(deepinfra, fireworks, fields=True)
    values |= extra
    return Settings(**values)


@pytest.fixture
def load_search_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Callable[[dict[str, Any]], Any]]]:
    """Imports functions/search/app.py afresh with the given environment, like a new container, and returns
    a function that invokes its handler with an event and a Lambda context."""
    import importlib.util
    import uuid

    from kbsearch_tools.local.runtime import LambdaContext

    loaded: list[Any] = []

    def load(**env: str) -> Callable[[dict[str, Any]], Any]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.syspath_prepend(str(ROOT / "functions" / "search"))
        name = f"search_app_{uuid.uuid4().hex}"
        spec = importlib.util.spec_from_file_location(name, ROOT / "functions/search/app.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        loaded.append(module)

        def call(event: dict[str, Any]) -> Any:
            result = module.lambda_handler(event, LambdaContext("kb-search-test-search", 1536, 28))
            check_response(result)
            return result

        call.module = module  # type: ignore[attr-defined]
        return call

    yield load
    for module in loaded:
        module.api.container.close()


def index_bm25(source: Path, path: Path) -> Any:
    """Index the KB folder ``source`` into an embedded store at ``path``, BM25 only; the sync's report."""
    from kbsearch.config import Secrets
    from kbsearch.indexer import run_sync

    # explicit: a session fixture may run before clean_env has cleared the shell's settings
    settings = Settings(qdrant_path=str(path), qdrant_url="", embedding_api_key=None, embedding_api_key_param="")
    return run_sync(settings, Secrets(settings), source_uri=str(source))


@pytest.fixture(scope="session")
def bm25_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample-kb indexed once, BM25 only, for tests that search it (copy it before opening: one client per path)."""
    path = tmp_path_factory.mktemp("sample-bm25") / "q"
    index_bm25(ROOT / "sample-kb", path)
    return path


@pytest.fixture
def bm25_store(bm25_index: Path, tmp_path: Path) -> Path:
    """A copy of :func:`bm25_index` of this test's own."""
    path = tmp_path / "q"
    copy_store(bm25_index, path)
    return path
