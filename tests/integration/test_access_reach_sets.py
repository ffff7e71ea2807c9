"""Group-set tokens in ``reach``: a caller holding two groups or more (``hr`` and ``security``) whose set some caller of
the mapping holds is matched by one ``match value`` of its set's token (``hr+security``) on ``reach``, once a full
sync gave the token (by payload update, nothing re-embedded) to every public chunk and every restricted chunk that
shares a group with the set, and recorded it. A token never reaches a chunk none of whose groups is in its set; a
set without a recorded token (new to the mapping, past the cap, a mapping the indexer could not read) is matched by
its groups as before: correct, slower. Recorded tokens are never taken back."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws
from pydantic import SecretStr

from kbsearch.access import MAX_REACH_SETS
from kbsearch.config import Secrets, Settings
from kbsearch.events import Change
from kbsearch.indexer import ChangeSync, Indexer, SyncOptions
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import REACH_SETS, reach_sets
from kbsearch.sources import LocalSource, SourceObject
from kbsearch_tools.local.process import serve_process
from kbsearch_tools.local.runtime import LambdaContext
from tests.conftest import KBSEARCH_CMD, ROOT, subprocess_env
from tests.integration.test_access_index import NOTES, sync, write_kb
from tests.integration.test_access_reach import (
    ACCESS,
    AUDIT,
    BUDGET,
    LEGAL,
    RULES,
    SHARED,
    add_notes,
    assert_exact,
    on_access,
    one_match,
    search_as,
    stored,
)

#: ACCESS with the notes of finance and legal (added by events)
MORE = {**ACCESS, "finance/Budget.md": {"finance"}, "legal/Contract.md": {"legal"},
        "legal/Audit.md": {"finance", "legal"}}  # fmt: skip


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    write_kb(root, NOTES, RULES)
    return root


@pytest.fixture(params=["edge", "local"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(qdrant_path=str(tmp_path / "q"), qdrant_embedded=request.param)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(qdrant_path=str(tmp_path / "q"))


def mapping(*sets: str) -> str:
    """A caller mapping (``ACCESS_GROUPS``) with one API key per set (``hr+security``)."""
    return json.dumps({"api_keys": {f"k{i}": {"name": f"key {i}", "groups": s.split("+")} for i, s in enumerate(sets)}})


def with_callers(settings: Settings, *sets: str) -> Settings:
    """The settings of an indexer that reads this caller mapping (``ACCESS_GROUPS``, as locally)."""
    return settings.model_copy(update={"access_groups": SecretStr(mapping(*sets))})


def recorded_sets(settings: Settings) -> Any:
    with contextlib.closing(open_store(settings, Secrets(settings))) as store:
        return store.metadata().get(REACH_SETS)


def test_a_set_token_is_given_by_payload_update_to_the_chunks_its_set_may_read(any_store: Settings, kb: Path) -> None:
    """Before the mapping names the sets: the matches of their groups. A full sync after: every public chunk and
    every restricted chunk sharing a group with a set holds its token, nothing re-embedded, and such a caller is one
    match; a restricted chunk of no group of the set holds none of its token (``hr``'s note, ``finance+legal``)."""
    settings = any_store
    sync(settings, kb)
    add_notes(settings, kb, {"finance/Budget.md": BUDGET, "legal/Contract.md": LEGAL, "legal/Audit.md": AUDIT})
    sync(settings, kb)  # finance and legal recorded as groups
    before = assert_exact(settings, MORE)
    assert before["hr,security"] == {"should": [one_match("hr"), *on_access("security")]}
    assert recorded_sets(settings) == []
    mapped = with_callers(settings, "hr+security", "finance+legal", "hr", "security+hr")
    report = sync(mapped, kb)
    assert report.added == report.updated == report.chunks_upserted == report.embedding_calls == 0
    assert recorded_sets(settings) == ["finance+legal", "hr+security"]
    reach, _ = stored(settings)
    assert reach["pub/Onboarding.md"] == {("finance", "finance+legal", "hr", "hr+security", "legal", "oncall",
                                          "public", "security")}  # fmt: skip
    assert reach["hr/Salary bands.md"] == {("hr", "hr+security")}
    assert reach["ops/Incident.md"] == {("hr+security", "oncall", "security")}
    assert reach["finance/Budget.md"] == {("finance", "finance+legal")}
    assert reach["legal/Audit.md"] == {("finance", "finance+legal", "legal")}
    clauses = assert_exact(settings, MORE)
    assert clauses["hr,security"] == one_match("hr+security")
    assert clauses["finance,legal"] == one_match("finance+legal")
    assert clauses["hr"] == one_match("hr")  # one group: as before
    assert clauses["hr,oncall,security"] == {"should": [one_match("hr"), *on_access("oncall", "security")]}
    assert clauses["finance,hr"] == {"should": [one_match("finance"), *on_access("hr")]}  # no caller holds it
    assert sync(mapped, kb).chunks_upserted == 0  # converged: nothing more written


def test_a_token_never_reaches_a_chunk_of_no_group_of_its_set(settings: Settings, kb: Path) -> None:
    """``finance+legal`` never reaches ``hr``'s or ``security``'s notes; metadata naming a token the chunks do not
    hold (stale or wrong) can only leave notes out, and the next full sync gives it to every chunk it serves."""
    sync(with_callers(settings, "finance+legal"), kb)
    reach, _ = stored(settings)
    assert reach["hr/Salary bands.md"] == {("hr",)} and reach["ops/Incident.md"] == {("oncall", "security")}
    assert search_as(settings, ["finance", "legal"]) == (["pub/Onboarding.md"], one_match("finance+legal"))
    store = open_store(settings, Secrets(settings))
    try:
        store.merge_metadata({REACH_SETS: ["finance+legal", "hr+oncall", "oncall+hr", "hr+public", "x"]})
    finally:
        store.close()
    found, clause = search_as(settings, ["hr", "oncall"])
    assert clause == one_match("hr+oncall") and found == []  # no chunk holds it yet: none found, none wider
    _, clause = search_as(settings, ["hr", "public"])  # ("hr+public" is no token: hr alone, as before)
    assert clause == one_match("hr")
    with (kb / "hr/Salary bands.md").open("a", encoding="utf-8") as note:
        note.write("more bands\n")
    sync(settings, kb)  # no mapping: the recorded tokens are kept and given (the malformed ones are not read)
    assert sorted(reach_sets({REACH_SETS: recorded_sets(settings)})) == ["finance+legal", "hr+oncall"]
    reach, _ = stored(settings)
    assert reach["ops/Incident.md"] == {("hr+oncall", "oncall", "security")}
    assert reach["security/incidents/Breach.md"] == {("hr+oncall", "oncall", "security")}
    assert reach["hr/Salary bands.md"] == {("hr", "hr+oncall")}
    clauses = assert_exact(settings, ACCESS)
    assert search_as(settings, ["hr", "oncall"]) == (
        ["hr/Salary bands.md", "ops/Incident.md", "pub/Onboarding.md", "security/incidents/Breach.md"],
        one_match("hr+oncall"),
    )
    assert clauses["finance,legal"] == one_match("finance+legal")


def test_a_mapping_that_gains_then_loses_a_set_between_syncs(settings: Settings, kb: Path) -> None:
    """Gained: the old clause until the next full sync, then the token (a payload update); a note an event brings
    after it holds the recorded token from its first write. Lost: the token stays (a search may hold it for a
    minute; its set's callers, if any come back, still match exactly)."""
    sync(settings, kb)
    assert search_as(settings, ["hr", "security"])[1] == {"should": [one_match("hr"), *on_access("security")]}
    gained = with_callers(settings, "hr+security")
    report = sync(gained, kb)
    assert report.chunks_upserted == report.embedding_calls == 0
    assert recorded_sets(settings) == ["hr+security"]
    assert assert_exact(settings, ACCESS)["hr,security"] == one_match("hr+security")
    add_notes(settings, kb, {"finance/Shared.md": SHARED, "finance/Budget.md": BUDGET})  # an event batch
    reach, _ = stored(settings)
    assert reach["finance/Shared.md"] == {("finance", "hr+security", "security")}
    assert reach["finance/Budget.md"] == {("finance",)}
    with_shared = {**ACCESS, "finance/Shared.md": {"finance", "security"}, "finance/Budget.md": {"finance"}}
    assert "finance/Shared.md" in search_as(settings, ["hr", "security"])[0]
    lost = with_callers(settings, "finance+legal")
    sync(lost, kb)
    assert recorded_sets(settings) == ["finance+legal", "hr+security"]
    clauses = assert_exact(settings, with_shared)
    assert clauses["hr,security"] == one_match("hr+security") and clauses["finance,legal"] == one_match("finance+legal")
    reach, _ = stored(settings)
    assert reach["finance/Budget.md"] == {("finance", "finance+legal")}
    assert reach["finance/Shared.md"] == {("finance", "finance+legal", "hr+security", "security")}


def test_an_unreadable_caller_mapping_gives_no_new_token_and_the_sync_goes_on(
    settings: Settings, kb: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Not JSON, or SSM unreachable: a warning naming why (never the mapping), the sync completes, the recorded
    tokens stay (a note indexed meanwhile gets them), no new token."""
    sync(with_callers(settings, "hr+security"), kb)
    caplog.set_level(logging.WARNING, logger="kbsearch.indexer")
    broken = settings.model_copy(update={"access_groups": SecretStr('{"api_keys": {"k1": ["finance", "zqsecretish"')})
    (kb / "finance").mkdir()
    (kb / "finance/Shared.md").write_text(SHARED, encoding="utf-8")
    report = sync(broken, kb)
    assert report.error is None and report.added == 1
    assert "the caller mapping cannot be used" in caplog.text and "zqsecretish" not in caplog.text
    assert [getattr(r, "error", None) for r in caplog.records] == ["ACCESS_GROUPS is not JSON (JSONDecodeError at 45)"]
    assert recorded_sets(settings) == ["hr+security"]
    assert stored(settings)[0]["finance/Shared.md"] == {("finance", "hr+security", "security")}
    caplog.clear()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    unreachable = settings.model_copy(update={"access_groups_param": "/kb-search/test/access-groups"})
    (kb / "legal").mkdir()
    (kb / "legal/Audit.md").write_text(AUDIT, encoding="utf-8")
    report = sync(unreachable, kb)
    assert report.error is None and report.added == 1
    assert "the caller mapping cannot be used" in caplog.text
    assert [str(getattr(r, "error", "")).split(")")[0] for r in caplog.records] == [
        "cannot read secrets from SSM Parameter Store (EndpointConnectionError"
    ]
    assert recorded_sets(settings) == ["hr+security"]
    clauses = assert_exact(settings, {**ACCESS, "finance/Shared.md": {"finance", "security"},
                                      "legal/Audit.md": {"finance", "legal"}})  # fmt: skip
    assert clauses["hr,security"] == one_match("hr+security")
    assert clauses["finance,legal"] == {"should": [one_match("finance"), *on_access("legal")]}


def test_past_the_cap_a_set_gets_no_token_and_its_callers_the_clause_of_their_groups(
    settings: Settings, kb: Path, caplog: pytest.LogCaptureFixture
) -> None:
    groups = [f"g{i:02d}" for i in range(12)]
    sets = [f"{a}+{b}" for i, a in enumerate(groups) for b in groups[i + 1 :]]  # 66 pairs
    assert len(sets) > MAX_REACH_SETS
    caplog.set_level(logging.WARNING, logger="kbsearch.indexer")
    sync(with_callers(settings, "hr+security", *sets), kb)
    recorded = recorded_sets(settings)
    assert len(recorded) == MAX_REACH_SETS and recorded == sorted([*sets, "hr+security"])[:MAX_REACH_SETS]
    assert "more group sets than reach tokens" in caplog.text
    assert search_as(settings, ["g00", "g01"]) == (["pub/Onboarding.md"], one_match("g00+g01"))
    past = sorted([*sets, "hr+security"])[MAX_REACH_SETS:]
    assert past == ["g09+g11", "g10+g11", "hr+security"]
    found, clause = search_as(settings, ["hr", "security"])  # past the cap: its groups, correct
    assert clause == {"should": [one_match("hr"), *on_access("security")]}
    assert found == ["hr/Salary bands.md", "ops/Incident.md", "pub/Onboarding.md", "security/incidents/Breach.md"]
    sync(with_callers(settings, "finance+legal"), kb)  # full: the recorded ones stay, no new one comes in
    assert recorded_sets(settings) == recorded


def test_the_indexer_handler_reads_the_caller_mapping_from_ssm(
    tmp_path: Path, kb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduled event, through the handler: the mapping is the SecureString ``ACCESS_GROUPS_PARAM`` names, as
    for the search function."""
    import importlib.util
    import uuid

    from aws_lambda_powertools.utilities import parameters

    param = "/kb-search/test/access-groups"
    for key, value in {"KB_SOURCE": str(kb), "QDRANT_PATH": str(tmp_path / "q"), "ACCESS_GROUPS_PARAM": param,
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    with mock_aws():
        parameters.clear_caches()
        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name=param, Type="SecureString", Value=mapping("security+hr", "oncall")
        )
        spec = importlib.util.spec_from_file_location(
            f"indexer_app_{uuid.uuid4().hex}", ROOT / "functions/indexer/app.py"
        )
        assert spec and spec.loader
        app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)
        report = app.lambda_handler({"full": False}, LambdaContext("kb-search-test-indexer", 2048, 900))
        parameters.clear_caches()
    assert report["error"] is None and report["added"] == len(NOTES)
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    assert recorded_sets(settings) == ["hr+security"]
    assert assert_exact(settings, ACCESS)["hr,security"] == one_match("hr+security")


def test_kbsearch_serve_and_index_read_the_local_keys_groups(tmp_path: Path, kb: Path) -> None:
    """``KB_LOCAL_API_KEYS=k1:hr+security``: the sync ``kbsearch serve --watch`` runs gives ``hr+security`` its
    token, and the key finds exactly what its groups may read; ``kbsearch index`` reads the local keys too."""
    store = tmp_path / "q"
    env = subprocess_env(QDRANT_PATH=str(store), KB_SOURCE=str(kb), KB_LOCAL_API_KEYS="k1:hr+security,k2:hr,k3")
    with serve_process(env, cwd=ROOT, args=["--watch"]) as served:
        base = served.base_url
        for _ in range(600):
            if "initial sync" in served.text():
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"no initial sync: {served.text()[-3000:]}")
        answer = httpx.get(f"{base}/search", params={"q": "welcome", "top_k": 20}, headers={"x-api-key": "k1"},
                           timeout=30)  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert sorted(h["path"] for h in answer.json()["results"]) == sorted(
            p for p, g in ACCESS.items() if g & {"public", "hr", "security"}
        )
    settings = Settings(qdrant_path=str(store))
    assert recorded_sets(settings) == ["hr+security"]
    index = subprocess.run([*KBSEARCH_CMD, "index", "--json", str(kb)], capture_output=True, text=True, cwd=ROOT,
                           env={**env, "KB_LOCAL_API_KEYS": "k4:finance+legal"}, check=False, timeout=300)  # fmt: skip
    assert index.returncode == 0, index.stderr
    assert recorded_sets(settings) == ["finance+legal", "hr+security"]
    reach, _ = stored(settings)
    assert reach["hr/Salary bands.md"] == {("hr", "hr+security")}
    assert assert_exact(settings, ACCESS)["hr,security"] == one_match("hr+security")


class ConcurrentTokenSync(LocalSource):
    """The KB, read while a full sync (of the KB as it was, ``before``) records a token in the same store, between
    the batch's read of the recorded tokens and its write."""

    def __init__(self, root: Path, before: Path, store: Any) -> None:
        super().__init__(root)
        self.before, self.store, self.done = before, store, False

    def read(self, obj: SourceObject) -> bytes:
        if not self.done and obj.path != "_access.yaml":
            self.done = True
            options = SyncOptions(caller_sets=("hr+security",))
            assert Indexer(LocalSource(self.before), self.store, None, options).sync().error is None
        return super().read(obj)


def test_a_batch_that_read_fewer_tokens_gives_its_restricted_chunks_the_recorded_ones(
    settings: Settings, kb: Path, tmp_path: Path
) -> None:
    sync(settings, kb)
    before = tmp_path / "before"
    shutil.copytree(kb, before)
    (kb / "finance").mkdir()
    (kb / "finance/Shared.md").write_text(SHARED, encoding="utf-8")
    store = open_store(settings, Secrets(settings))
    try:
        report = ChangeSync(ConcurrentTokenSync(kb, before, store), store, None).apply(
            [Change(path="finance/Shared.md", key="finance/Shared.md", removed=False)]
        )
        assert report.error is None and report.added == 1
    finally:
        store.close()
    assert recorded_sets(settings) == ["hr+security"]
    assert stored(settings)[0]["finance/Shared.md"] == {("finance", "hr+security", "security")}
    clauses = assert_exact(settings, {**ACCESS, "finance/Shared.md": {"finance", "security"}})
    assert clauses["hr,security"] == one_match("hr+security")


@pytest.mark.parametrize("note", ["readable", "too large to read again"])
def test_a_token_an_older_writer_left_on_a_note_it_restricted_elsewhere_is_taken_off(
    any_store: Settings, kb: Path, note: str
) -> None:
    """A kb-search older than tokens changes a note's ``access`` alone (``hr`` → ``finance``): its chunks keep
    ``hr+security``, which the set's callers would match. The next full sync writes the note's groups again with
    their ``reach`` (a readable note: its state does not fit), or takes the token off by the groups its chunks record
    (a note it cannot read again)."""
    settings = any_store.model_copy(update={"max_note_bytes": 2048})
    mapped = with_callers(settings, "hr+security")
    sync(mapped, kb)
    with contextlib.closing(open_store(settings, Secrets(settings))) as store:  # the older version's write
        store.set_payloads([(["hr/Salary bands.md"], {"access": ["finance"], "access_from": "folder:hr"})])
    assert "hr/Salary bands.md" in search_as(settings, ["hr", "security"])[0]  # what the older writer left
    grown = note != "readable"
    path = kb / "hr/Salary bands.md"
    path.write_text(path.read_text(encoding="utf-8") + "padding " * 400 * grown, encoding="utf-8")
    assert [s["path"] for s in sync(mapped, kb).skipped] == ["hr/Salary bands.md"] * grown
    groups = ["finance"] if grown else ["hr"]
    reach, _ = stored(settings)
    assert reach["hr/Salary bands.md"] == {tuple(sorted([*groups, *(["hr+security"] if "hr" in groups else [])]))}
    assert assert_exact(settings, {**ACCESS, "hr/Salary bands.md": set(groups)})["hr,security"] == one_match(
        "hr+security"
    )
