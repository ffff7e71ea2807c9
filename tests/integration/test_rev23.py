"""Round 23, the cold review of the round's merges (rev23): cases the merged changes broke that their authors did not
try. Through the real interfaces: the search service against the loopback provider fakes, the search handler with
API Gateway events, ``kbsearch serve`` at the socket, the lease against moto's DynamoDB."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.lease import Lease
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch_tools.fakes import FakeProvider, provider_env
from tests.conftest import copy_store
from tests.integration.test_adv23a import PLAIN_MCP, _with_keys, served_with_keys
from tests.integration.test_hostile_input import handler, request
from tests.integration.test_lease import TABLE, Clock, Recording, _item, dynamodb

__all__ = ["dynamodb", "handler", "served_with_keys"]  # the fixtures, shared

# -- a standard /rerank endpoint answering logits ---------------------------------------------------------------------


class _Logits(FakeProvider):
    """Fireworks' standard contract answering each ``relevance_score`` as the logit of the fake's probability
    (``ln(p / (1 - p))``): a range providers.md does not rule out for that contract (it says "a probability in
    [0, 1]" of DeepInfra's native scores alone)."""

    def _rerank(self, body: dict[str, Any], fault: Any) -> tuple[int, Any]:
        status, answer = super()._rerank(body, fault)
        if status == 200:
            for item in answer["data"]:
                p = min(max(item["relevance_score"], 1e-6), 1 - 1e-6)
                item["relevance_score"] = math.log(p / (1 - p))
        return status, answer


def _reranked(store: Path, reranker: FakeProvider) -> Any:
    env = provider_env(None, reranker, roles=("RERANKER",), fields=True)
    env |= {"reranker_url": env["reranker_fallback_url"], "reranker_api_key": env["reranker_fallback_api_key"],
            "reranker_model": FakeProvider.RERANK_MODEL["fireworks"]}  # fmt: skip
    env = {k: v for k, v in env.items() if "fallback" not in k}
    settings = Settings(**env, qdrant_path=str(store), search_budget_s=5, rerank_weight=1.0)
    service = SearchService(settings, Secrets(settings))
    try:
        return service.search(SearchRequest(query="restore snapshot", expand=False))
    finally:
        service.close()


def test_a_standard_rerank_endpoint_answering_logits_is_read_in_its_order(bm25_index: Path, tmp_path: Path) -> None:
    """Round 23c refused every rerank score outside [0, 1] as "both contracts' probability"; providers.md says that of
    DeepInfra's native ``scores`` only: Fireworks' ``relevance_score`` has no stated range. A ``/rerank`` endpoint
    scoring logits (negative, or above 1) then failed every call, the search degraded ``rerank`` (the fusion order,
    as if no reranker answered). Its scores are read through the logistic now: the same order as the probabilities
    they came from, the same values, within [0, 1]."""
    store = tmp_path / "q"
    copy_store(bm25_index, store)
    honest, logits = FakeProvider("fireworks", api_key="fw-test-key").start(), _Logits("fireworks").start()
    logits.api_key = "fw-test-key"
    try:
        expected, answer = _reranked(store, honest), _reranked(store, logits)
    finally:
        honest.stop()
        logits.stop()
    assert expected.meta.degraded == [] and expected.results, expected.meta
    assert answer.meta.degraded == [], answer.meta
    assert [h.path for h in answer.results] == [h.path for h in expected.results]
    got, want = [h.scores.rerank for h in answer.results], [h.scores.rerank for h in expected.results]
    assert all(g is not None and 0 <= g <= 1 for g in got), got
    assert got == pytest.approx(want, abs=1e-4), (got, want)


# -- one API key sent twice -------------------------------------------------------------------------------------------

KEY = "k1-aaaaaaaaaaaaaaaaaaaa"


@pytest.mark.parametrize("lines", [(KEY, KEY), (f"{KEY}, {KEY}",), (KEY, f" {KEY} ")])
def test_an_event_naming_one_api_key_twice_is_answered_with_its_scope(handler, lines: tuple[str, ...]) -> None:
    """Round 23a made two ``x-api-key`` values a 400 (which scope was meant cannot be told), counting values, not
    keys: a proxy or client library that sends the header twice (or folds the two lines into ``k, k``) with the one
    key was refused, though no scope is in doubt. Two different keys stay a 400."""
    call = handler(ACCESS_GROUPS=json.dumps({"api_keys": {"k-hr": {"name": "hr", "groups": ["hr"]}}}))
    result = call(_with_keys(request("GET", "/whoami", content_type=None), *lines))
    assert result["statusCode"] == 200 and "hr" in json.loads(result["body"])["groups"], result
    rpc = call(_with_keys(request("POST", "/mcp", PLAIN_MCP), *lines))
    assert rpc["statusCode"] == 200, rpc
    two = call(_with_keys(request("GET", "/whoami", content_type=None), KEY, "k2-bbbbbbbbbbbbbbbbbbbb"))
    assert two["statusCode"] == 400, two


@pytest.mark.parametrize("keys", [["hrkey", "hrkey"], ["hrkey,hrkey"], ["hrkey, hrkey", "hrkey"]])
def test_serve_answers_one_api_key_sent_twice_with_its_scope(served_with_keys: Any, keys: list[str]) -> None:
    """The same at ``kbsearch serve``: ``hrkey`` twice was a 400 (on two lines) or a 403 (``hrkey,hrkey``: no key)."""
    with httpx.Client(base_url=served_with_keys.base_url, timeout=30) as client:
        answer = client.get("/whoami", headers=[("x-api-key", k) for k in keys])
        assert answer.status_code == 200 and answer.json()["groups"] == ["hr", "public"], answer.text
        assert client.get("/whoami", headers=[("x-api-key", "hrkey"), ("x-api-key", "pubkey")]).status_code == 400


# -- a laptop that slept through its lease's expiry -------------------------------------------------------------------


def test_a_sync_whose_machine_slept_past_its_lease_goes_on_when_nobody_took_the_lease(dynamodb: Any) -> None:
    """Round 23c's ``Lease.held`` reads the wall clock so that a laptop that slept past the lease's expiry is not sure
    of it; but the renewer waits on the monotonic clock, which stood still through the sleep, so it renews up to
    ``ttl_s / 3`` after waking, and the sync asked at its next note, stopped a healthy run ("lost mid-run (its
    renewals failed ...)": none had failed, and nobody had taken the lease). Past its expiry, ``held`` now asks
    DynamoDB once itself: a lease still this owner's is renewed and held; one another run took is lost; a renewal
    that fails (throttled) leaves it not held, and is not asked again for that expiry."""
    from kbsearch.indexer import _until_lease_lost
    from kbsearch.providers.resilience import Deadline

    clock = Clock()
    with Lease(TABLE, "index#kb", ttl_s=60, client=dynamodb, clock=clock, owner="laptop") as lease:
        deadline = _until_lease_lost(Deadline(), lease)
        clock.now += 3600  # an hour asleep: the wall clock moved, the monotonic one (the renewer's wait) did not
        assert deadline.remaining() > 0 and lease.held() and not lease.lost
        assert _item(dynamodb)["expires_at"] == {"N": str(int(clock.now) + 60)}  # type: ignore[index]
        clock.now += 3600  # asleep again, and another run took the lease meanwhile
        Lease(TABLE, "index#kb", ttl_s=60, client=dynamodb, clock=clock, owner="other").acquire()
        assert deadline.remaining() == 0 and not lease.held() and lease.lost


def test_a_lease_whose_renewal_fails_after_a_sleep_is_not_held(dynamodb: Any) -> None:
    recording = Recording(_Throttled(dynamodb))
    clock = Clock()
    lease = Lease(TABLE, "index#kb", ttl_s=60, client=recording, clock=clock, owner="laptop")
    lease.acquire()
    clock.now += 3600
    assert not lease.held() and not lease.held() and not lease.lost
    assert recording.calls.count("update_item") == 1  # asked once for that expiry, not at every check


class _Throttled:
    """moto's DynamoDB refusing every ``update_item`` as throttled."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_item(self, **_: Any) -> None:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateItem")


# -- the options' end marker --------------------------------------------------------------------------------------------


def test_a_query_word_after_the_options_end_marker_is_named_a_query_word_not_a_typo() -> None:
    """cuts23's typo hints took ``--`` (the end of the options, as any shell user types it) for a misspelt option:
    ``kbsearch search foo --top-k 3 -- bar`` said ``--: did you mean --tag?``, and ``bar`` after it, read as that
    option's value, got no word of the query's. It says the query's words go together now, and names no option."""
    import subprocess

    from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env

    done = subprocess.run([*KBSEARCH_CMD, "search", "foo", "--top-k", "3", "--", "bar"], capture_output=True,
                          text=True, env=subprocess_env(), cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 2, done
    assert "did you mean" not in done.stderr, done.stderr
    assert "a query's words go together" in done.stderr, done.stderr


# -- an export made before round 23b ----------------------------------------------------------------------------------


def test_eval_of_votes_exported_before_notes_carried_their_frontmatter_scores_them_unfiltered(tmp_path: Path) -> None:
    """Round 23b applies each exported vote's ``metadata.filters``, finding the notes' frontmatter and path in the
    corpus's ``metadata``; an export made before it wrote the filters but not the notes' metadata, so each note sat
    at a made-up path with no frontmatter, and every filtered vote matched no note: MRR 0.000 for answers that were
    first, exit 0 (a measured zero). Such a corpus is scored as it was (unfiltered), and eval says the filters were
    not applied and why."""
    import subprocess

    from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env

    runbook = "en/runbooks/Runbook - restore a Qdrant snapshot.md"
    votes = tmp_path / "votes.jsonl"
    records = [
        {"id": f"v{i}", "time": f"2026-12-05T00:00:0{i}+00:00", "query": "snapshot", "filters": filters, "page": 1,
         "hits": [{"path": runbook, "rank": 1}], "vote": "up", "voter": "0" * 32}
        for i, filters in enumerate([{"type": ["runbook"]}, {"path_prefix": "en/runbooks"}])
    ]  # fmt: skip
    votes.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "beir"
    env = subprocess_env()
    export = subprocess.run([*KBSEARCH_CMD, "feedback", "export", "--beir", str(out), "--kb", str(ROOT / "sample-kb"),
                             "--file", str(votes), "--table", "", "--json"], capture_output=True, text=True, cwd=ROOT,
                            env=env, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert export.returncode == 0, export.stderr
    corpus = out / "corpus.jsonl"
    docs = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    assert all("metadata" in d for d in docs)
    old = [{k: v for k, v in d.items() if k != "metadata"} for d in docs]  # the export as round 23a wrote it
    corpus.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in old), encoding="utf-8")
    evaluated = subprocess.run([*KBSEARCH_CMD, "eval", "--beir", str(out), "--phases", "lexical", "--json"],
                               capture_output=True, text=True, cwd=ROOT, env=env, timeout=PROCESS_TIMEOUT_S,
                               check=False)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["queries"] == 2 and report["phases"]["lexical"]["MRR@10"] > 0, report
    assert "filters" in evaluated.stderr and "not applied" in evaluated.stderr, evaluated.stderr


def test_the_sync_threads_asking_at_once_after_a_sleep_all_find_the_lease_held(dynamodb: Any) -> None:
    """The indexer's threads (the embedding pool's calls read the run's deadline too) ask on waking at the same time:
    one renews, and none is told the lease is gone while that renewal is under way."""
    import threading

    recording = Recording(_Slow(dynamodb))
    clock = Clock()
    lease = Lease(TABLE, "index#kb", ttl_s=60, client=recording, clock=clock, owner="laptop")
    lease.acquire()
    clock.now += 3600
    start, answers = threading.Barrier(8), []

    def ask() -> None:
        start.wait()
        answers.append(lease.held())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == [True] * 8, answers
    assert recording.calls.count("update_item") == 1


class _Slow:
    """moto's DynamoDB whose ``update_item`` takes half a second (a renewal in flight while the others ask)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_item(self, **kwargs: Any) -> Any:
        import time

        time.sleep(0.5)
        return self._client.update_item(**kwargs)


# -- a filter of a kind no note holds -----------------------------------------------------------------------------------


def test_a_search_filtered_by_a_tag_when_no_note_has_any_tag_says_so(tmp_path: Path) -> None:
    """cuts23 names a filter value no note holds, then the values notes do; in a KB whose notes hold no tag at all
    (the Obsidian help vault) that list is empty, and it printed ``no note has the tag 'x' (--tag); the tags: `` with
    nothing after it. It says no note has any tag now."""
    import subprocess

    from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env

    kb = tmp_path / "kb"
    kb.mkdir()
    for name in ("alpha", "beta"):
        (kb / f"{name}.md").write_text(f"# {name}\n\nrestore the {name} snapshot\n", encoding="utf-8")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"))

    def kbsearch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip

    assert kbsearch("index", str(kb)).returncode == 0
    shown = kbsearch("search", "restore", "--tag", "runbook")
    assert shown.returncode == 0, shown.stderr
    said = shown.stdout.splitlines()[1:]
    assert said == ["  no note has the tag 'runbook' (--tag): no note has any tag"], shown.stdout
