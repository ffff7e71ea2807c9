"""The fault matrix of RELIABILITY.md, row by row: inject each fault on loopback, observe the documented outcome.

The rows are read from RELIABILITY.md; a row this module cannot run, or a runnable case missing from the table,
fails `test_table_and_tests_agree`.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import Indexer, SyncOptions
from kbsearch.qdrant import open_store
from kbsearch.sources import LocalSource, S3Source
from kbsearch_tools.fakes import FakeEndpoint, FakeProvider
from kbsearch_tools.fakes import provider_env as fake_provider_env
from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.conftest import ROOT, copy_store

FAULTS = ("refused", "hang", "drip", "429", "5xx", "malformed", "deep json", "wrong shape", "401")
#: faults the indexer-side S3 rows do not take (boto3 is not behind kb-search's outbound policy; see RELIABILITY.md)
SEARCH_ONLY = ("drip", "deep json")
#: A JSON document nested 100,000 deep: parsing it must be an error, not a RecursionError (a 500).
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
#: every search in the matrix runs with this budget and must answer within it plus this much overhead
#: The search's budget; the bound a test asserts is 5x it (a loaded 2-core machine), and every hang lasts longer
#: than that bound, so an answer within it still proves the budget cut the hang.
BUDGET_S, HANG_S = 4.0, 30.0
PROVIDER_DEPS = {
    # dependency: (which fake, operation, URL setting, the other side failing with it)
    "embedding primary": ("deepinfra", "embeddings", "EMBEDDING_URL", None),
    "embedding fallback": ("fireworks", "embeddings", "EMBEDDING_FALLBACK_URL", ("deepinfra", "embeddings")),
    "expansion": ("deepinfra", "chat", "EXPANSION_URL", None),
    "reranker primary": ("deepinfra", "rerank", "RERANKER_URL", None),
    "reranker fallback": ("fireworks", "rerank", "RERANKER_FALLBACK_URL", ("deepinfra", "rerank")),
}
S3_READ_FAULTS = tuple(f for f in FAULTS if f != "malformed" and f not in SEARCH_ONLY)


def read_table() -> list[tuple[str, str, str]]:
    text = (ROOT / "RELIABILITY.md").read_text(encoding="utf-8")
    section = text.split("## Fault matrix", 1)[1]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and line.startswith("|") and cells[0] not in ("dependency", "---"):
            rows.append((cells[0], cells[1], cells[2]))
        elif rows and not line.startswith("|"):
            break
    return rows


TABLE = read_table()


def runnable_cases() -> set[tuple[str, str]]:
    cases = {(dep, f) for dep in (*PROVIDER_DEPS, "ssm", "qdrant") for f in FAULTS}
    cases |= {("s3 listing", f) for f in FAULTS if f not in SEARCH_ONLY}
    return cases | {("s3 read", f) for f in S3_READ_FAULTS}


def test_table_and_tests_agree() -> None:
    documented = {(dep, fault) for dep, fault, _ in TABLE}
    assert len(documented) == len(TABLE), "a row appears twice"
    assert documented == runnable_cases()


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- search side --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dense_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kbsearch.indexer import run_sync

    fake = FakeProvider("deepinfra", api_key="di-test-key").start()
    try:
        path = tmp_path_factory.mktemp("matrix") / "q"
        settings = Settings.model_validate({"qdrant_path": str(path), "embedding_url": fake.embeddings_url,
                                            "embedding_api_key": fake.api_key, "embedding_dimensions": 64})  # fmt: skip
        run_sync(settings, Secrets(settings), source_uri=str(ROOT / "sample-kb"))
    finally:
        fake.stop()
    return path


@pytest.fixture
def fakes() -> Iterator[dict[str, FakeProvider]]:
    started = {"deepinfra": FakeProvider("deepinfra", api_key="di-test-key").start(),
               "fireworks": FakeProvider("fireworks", api_key="fw-test-key").start()}  # fmt: skip
    yield started
    for fake in started.values():
        fake.stop()


def provider_env(fakes: dict[str, FakeProvider], store: Path) -> dict[str, str]:
    return fake_provider_env(fakes["deepinfra"], fakes["fireworks"]) | {
        "QDRANT_PATH": str(store), "EMBEDDING_DIMENSIONS": "64", "PROVIDER_RETRIES": "0",
        "EMBEDDING_QUERY_TIMEOUT_S": "1.0", "RERANK_TIMEOUT_S": "1.0", "RERANK_HEDGE_MS": "0",
        "EXPANSION_BUDGET_MS": "800", "SEARCH_BUDGET_S": str(BUDGET_S),
    }  # fmt: skip


def search_outcome(call: Callable[[dict[str, Any]], Any]) -> str:
    body = json.dumps({"query": "qdrant snapshot restore"}).encode()
    event = build_event(
        HttpRequest("POST", "/search", "", [("Content-Type", "application/json")], body), "/search", {}, "dev"
    )
    started = time.monotonic()
    result = call(event)
    elapsed = time.monotonic() - started
    assert elapsed < 5 * BUDGET_S, f"the search took {elapsed:.1f}s against a {BUDGET_S}s budget (hangs: {HANG_S}s)"
    status = int(result["statusCode"])
    assert "NaN" not in result["body"] and "Infinity" not in result["body"]
    assert "Traceback" not in result["body"]
    if status == 503:
        return "503, Retry-After" if result["multiValueHeaders"].get("Retry-After") else "503"
    answer = json.loads(result["body"])
    assert answer["results"], "a degraded search still answers"
    degraded = answer["meta"]["degraded"]
    return f"{status}, degraded: {', '.join(degraded)}" if degraded else f"{status}, ok"


def inject(fake: FakeProvider, operation: str, fault: str) -> None:
    table: dict[str, dict[str, Any]] = {
        "hang": {"hang_s": HANG_S}, "429": {"status": 429, "retry_after": "1"}, "5xx": {"status": 503},
        "malformed": {"garbage": True}, "wrong shape": {"short": True}, "401": {"status": 401},
        "drip": {"drip_s": 0.05}, "deep json": {"body": DEEP_JSON},
    }  # fmt: skip
    fake.fail(operation, **table[fault])


def rows_for(*deps: str) -> list[Any]:
    return [pytest.param(d, f, o, id=f"{d}-{f}") for d, f, o in TABLE if d in deps]


@pytest.fixture
def store_copy(dense_index: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "q"
    copy_store(dense_index, dest)
    return dest


@pytest.mark.parametrize(("dep", "fault", "outcome"), rows_for(*PROVIDER_DEPS))
def test_provider_faults(dep: str, fault: str, outcome: str, fakes, store_copy: Path, load_search_app) -> None:
    which, operation, url_setting, also_failing = PROVIDER_DEPS[dep]
    env = provider_env(fakes, store_copy)
    if also_failing is not None:
        fakes[also_failing[0]].fail(also_failing[1], status=503)
    if fault == "refused":
        env[url_setting] = dead_url() + "/" + env[url_setting].split("/", 3)[3]
    else:
        inject(fakes[which], operation, fault)
    assert search_outcome(load_search_app(**env)) == outcome


SSM_ANSWERS: dict[str, tuple[int, bytes]] = {
    "429": (429, b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'),
    "5xx": (500, b'{"__type": "InternalServerError", "message": "internal error"}'),
    "malformed": (200, b"<html>not json</html>"),
    "wrong shape": (200, b'{"Parameters": "surprise", "InvalidParameters": 7}'),
    "401": (400, b'{"__type": "AccessDeniedException", "message": "not authorized to perform ssm:GetParameters"}'),
}


@pytest.mark.parametrize(("dep", "fault", "outcome"), rows_for("ssm"))
def test_ssm_faults(dep: str, fault: str, outcome: str, fakes, store_copy: Path, load_search_app) -> None:
    env = provider_env(fakes, store_copy)
    for name in ("EMBEDDING", "EMBEDDING_FALLBACK", "RERANKER", "RERANKER_FALLBACK", "EXPANSION"):
        env.pop(f"{name}_API_KEY")
        env[f"{name}_API_KEY_PARAM"] = f"/kb-search/test/{name.lower()}"
    endpoint = FakeEndpoint().start()
    try:
        if fault == "refused":
            env["AWS_ENDPOINT_URL_SSM"] = dead_url()
        else:
            endpoint.content_type = "application/x-amz-json-1.1"
            if fault == "hang":
                endpoint.hang_s = 3.5  # over the SSM client's 3 s read timeout
                endpoint.body = b'{"Parameters": [], "InvalidParameters": []}'
            elif fault == "drip":
                endpoint.drip_s = 0.2  # every byte well within botocore's per-read timeout
                endpoint.body = b'{"Parameters": [], "InvalidParameters": []}'
            elif fault == "deep json":
                endpoint.body = DEEP_JSON
            else:
                endpoint.status, endpoint.body = SSM_ANSWERS[fault]
            env["AWS_ENDPOINT_URL_SSM"] = endpoint.url
        assert search_outcome(load_search_app(**env)) == outcome
    finally:
        endpoint.stop()


QDRANT_ANSWERS: dict[str, tuple[int, bytes, str]] = {
    "429": (429, b'{"status": {"error": "Too many requests"}}', "application/json"),
    "5xx": (503, b'{"status": {"error": "Service unavailable"}}', "application/json"),
    "malformed": (200, b"<html>gateway</html>", "text/html"),
    "wrong shape": (200, b'{"result": "nonsense", "status": "ok", "time": 0.0}', "application/json"),
    "401": (401, b'{"status": {"error": "Unauthorized"}}', "application/json"),
}


@pytest.mark.parametrize(("dep", "fault", "outcome"), rows_for("qdrant"))
def test_qdrant_faults(dep: str, fault: str, outcome: str, load_search_app) -> None:
    endpoint = FakeEndpoint().start()
    try:
        url = endpoint.url
        if fault == "refused":
            url = dead_url()
        elif fault in ("hang", "drip"):
            endpoint.hang_s = HANG_S if fault == "hang" else 0.0
            endpoint.drip_s = 0.05 if fault == "drip" else 0.0
            endpoint.body = b'{"result": {"points": []}, "status": "ok", "time": 0.0}'
            endpoint.content_type = "application/json"
        elif fault == "deep json":
            endpoint.body, endpoint.content_type = DEEP_JSON, "application/json"
        else:
            endpoint.status, endpoint.body, endpoint.content_type = QDRANT_ANSWERS[fault]
        # the Qdrant timeout is longer than the budget: the search's own deadline must cut a drip
        call = load_search_app(
            QDRANT_URL=url, QDRANT_TIMEOUT_S="20", QDRANT_API_KEY="qdrant-test-key", SEARCH_BUDGET_S=str(BUDGET_S)
        )
        assert search_outcome(call) == outcome
    finally:
        endpoint.stop()


# -- indexer side ------------------------------------------------------------------------------------------------

NOTE_A = b"# A\n\nfirst version of a"
NOTE_B = b"# B\n\nnote b"


def listing_xml(items: list[tuple[str, bytes]]) -> bytes:
    contents = "".join(
        f"<Contents><Key>{key}</Key><LastModified>2026-11-25T00:00:00.000Z</LastModified>"
        f"<ETag>&quot;{hashlib.md5(body, usedforsecurity=False).hexdigest()}&quot;</ETag><Size>{len(body)}</Size>"
        "<StorageClass>STANDARD</StorageClass></Contents>"
        for key, body in items
    )
    return (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>kb</Name><Prefix></Prefix><KeyCount>{len(items)}</KeyCount><MaxKeys>1000</MaxKeys>"
            f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>").encode()  # fmt: skip


S3_ERRORS: dict[str, tuple[int, bytes, str]] = {
    "429": (429, b"<Error><Code>TooManyRequests</Code><Message>slow down</Message></Error>", "application/xml"),
    "5xx": (503, b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
            "application/xml"),
    "malformed": (200, b"<<< this is not XML", "application/xml"),
    "401": (403, b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>", "application/xml"),
}  # fmt: skip


def indexed_store(tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_bytes(NOTE_A)
    (kb / "b.md").write_bytes(NOTE_B)
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    store = open_store(settings, Secrets(settings))
    try:
        Indexer(LocalSource(kb), store, None).sync()
        before = {p["path"]: p["etag"] for p in store.points().values()}
    finally:
        store.close()
    return settings, before


def s3_sync(settings: Settings, url: str) -> tuple[Any, dict[str, str]]:
    client = boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1",
        config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )  # fmt: skip
    store = open_store(settings, Secrets(settings))
    try:
        report = Indexer(S3Source("kb", "", client), store, None, SyncOptions()).sync()
        after = {p["path"]: p["etag"] for p in store.points().values()}
    finally:
        store.close()
    return report, after


@pytest.mark.parametrize(("dep", "fault", "outcome"), rows_for("s3 listing"))
def test_s3_listing_faults(dep: str, fault: str, outcome: str, tmp_path: Path) -> None:
    settings, before = indexed_store(tmp_path)
    endpoint = FakeEndpoint().start()
    try:
        url = endpoint.url
        if fault == "refused":
            url = dead_url()
        elif fault == "hang":
            endpoint.hang_s = 2.0
        elif fault == "wrong shape":
            endpoint.body, endpoint.content_type = listing_xml([]), "application/xml"
        else:
            endpoint.status, endpoint.body, endpoint.content_type = S3_ERRORS[fault]
        report, after = s3_sync(settings, url)
    finally:
        endpoint.stop()
    assert after == before and report.deleted == 0
    observed = (
        "deletion blocked, 0 deleted" if report.deletion_blocked else ("sync error, 0 deleted" if report.error else "?")
    )
    assert observed == outcome, report


@pytest.mark.parametrize(("dep", "fault", "outcome"), rows_for("s3 read"))
def test_s3_read_faults(dep: str, fault: str, outcome: str, tmp_path: Path) -> None:
    settings, before = indexed_store(tmp_path)
    changed = b"# A\n\nsecond version of a"
    listing = listing_xml([("a.md", changed), ("b.md", NOTE_B)])
    answers = {"refused": (0, b"", "text/plain"), "wrong shape": (200, b"\x89PNG\x00\x00binary", "application/octet-stream"),
               **S3_ERRORS}  # fmt: skip
    endpoint = FakeEndpoint().start()

    def respond(method: str, path: str) -> tuple[int, bytes, str] | None:
        if "list-type=2" in path:
            return 200, listing, "application/xml"
        if fault == "hang":
            return None  # the endpoint's delay applies
        return answers[fault]

    endpoint.responder = respond
    if fault == "hang":
        endpoint.hang_s = 2.0
    try:
        report, after = s3_sync(settings, endpoint.url)
    finally:
        endpoint.stop()
    skipped = {s["path"]: s["reason"] for s in report.skipped}
    assert set(skipped) == {"a.md"} and skipped["a.md"]
    assert re.search(r"\S", skipped["a.md"])
    kept = after == before and report.unchanged == 1 and report.deleted == 0
    assert ("note skipped, last version kept" if kept else "?") == outcome, report


def test_slow_ssm_at_cold_start_costs_no_stage_its_budget(fakes, store_copy: Path, load_search_app) -> None:
    """Every key in SSM, and SSM answering in 1 s (well over the 300 ms expansion budget): the keys are read when
    the container builds its service, so the first search still runs every stage (nothing degraded)."""
    env = provider_env(fakes, store_copy)
    params = []
    for name in ("EMBEDDING", "EMBEDDING_FALLBACK", "RERANKER", "RERANKER_FALLBACK", "EXPANSION"):
        params.append({"Name": f"/kb-search/test/{name.lower()}", "Type": "SecureString", "Value": env.pop(f"{name}_API_KEY"),
                       "Version": 1, "DataType": "text"})  # fmt: skip
        env[f"{name}_API_KEY_PARAM"] = f"/kb-search/test/{name.lower()}"
    endpoint = FakeEndpoint().start()
    try:
        endpoint.content_type = "application/x-amz-json-1.1"
        endpoint.hang_s = 1.0
        endpoint.body = json.dumps({"Parameters": params, "InvalidParameters": []}).encode()
        env["AWS_ENDPOINT_URL_SSM"] = endpoint.url
        assert search_outcome(load_search_app(**env)) == "200, ok"
        assert len(endpoint.requests) == 1  # one batched read, cached for the container
    finally:
        endpoint.stop()


def test_the_ssm_client_is_built_with_the_service_not_in_a_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's import and SSM model cost ~0.5 s on a cold container (more on a busy host): building the client
    belongs to the service's construction, so the first search's budget pays only for the read. Shown by moving
    the endpoint after the service is built: the read still goes where the client was built to go."""
    from kbsearch.search import SearchService

    endpoint = FakeEndpoint().start()
    try:
        endpoint.content_type = "application/x-amz-json-1.1"
        param = {"Name": "/kb-search/test/embedding", "Type": "SecureString", "Value": "di-from-ssm", "Version": 1,
                 "DataType": "text"}  # fmt: skip
        endpoint.body = json.dumps({"Parameters": [param], "InvalidParameters": []}).encode()
        monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", endpoint.url)
        settings = Settings(embedding_api_key_param="/kb-search/test/embedding")
        secrets = Secrets(settings)
        SearchService(settings, secrets, wire_providers=False)
        assert endpoint.requests == []  # built, not read: no network while the service is built
        monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")  # nothing listens there
        assert secrets.get("EMBEDDING_API_KEY", Secrets.FETCH_TIMEOUT_S) == "di-from-ssm"  # a busy host's time too
        assert len(endpoint.requests) == 1
    finally:
        endpoint.stop()
