"""Round 24c's adversarial pass (RELIABILITY.md, "Round 24c: the adversarial pass (adv24c)"): dependencies that are
slow or lie, configuration, concurrency, through the real interfaces (the search handler with API Gateway events,
``kbsearch`` processes, the loopback provider fakes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kbsearch_tools.fakes import FakeProvider
from kbsearch_tools.fakes import provider_env as fake_provider_env
from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, copy_store, subprocess_env
from tests.integration.test_fault_matrix import dense_index, fakes, provider_env

__all__ = ["dense_index", "fakes"]  # the fixtures, shared with test_fault_matrix

# -- settings no consumer can hold --------------------------------------------------------------------------------

#: Values the settings accepted (``gt=0``, ``ge=0``, no upper bound) that failed where they were used.
BEYOND = "1" + "0" * 20  # past a 64-bit integer


@pytest.mark.parametrize("value", [BEYOND, "100001"])
def test_a_search_setting_past_what_the_store_holds_is_one_message_at_load_never_a_500(
    value: str, fakes: Any, dense_index: Path, load_search_app: Any, tmp_path: Path
) -> None:
    """``SEARCH_HNSW_EF`` past a 64-bit integer was accepted (``ge=4``, no bound) and every search was a 500
    (``OverflowError: int too big to convert`` building Edge's search parameters; Qdrant Cloud refuses it as a bad
    request). It is bounded at 100,000 (``MAX_HNSW_EF``, 390x the default): ``/health`` names it, searches are 503
    ``not_configured``, as for any invalid setting."""
    store = tmp_path / "s"
    copy_store(dense_index, store)
    call = load_search_app(**(provider_env(fakes, store) | {"SEARCH_HNSW_EF": value}))
    health = json.loads(call(build_event(HttpRequest("GET", "/health", "", [], b""), "/health", {}, "dev"))["body"])
    assert health["ready"] is False
    assert health["reasons"] == ["invalid setting SEARCH_HNSW_EF: Input should be less than or equal to 100000"]
    body = json.dumps({"query": "qdrant snapshot restore"}).encode()
    search = call(build_event(HttpRequest("POST", "/search", "", [("Content-Type", "application/json")], body),
                              "/search", {}, "dev"))  # fmt: skip
    assert search["statusCode"] == 503 and json.loads(search["body"])["error"] == "not_configured"


@pytest.fixture
def deepinfra_only() -> Any:
    fake = FakeProvider("deepinfra", api_key="di-test-key").start()
    yield fake
    fake.stop()


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        # every embedding call: "deepinfra: unexpected failure (OverflowError)" (a wait the clock cannot hold)
        ("EMBEDDING_TIMEOUT_S", "inf", "Input should be a finite number"),
        ("EMBEDDING_TIMEOUT_S", "1e300", "Input should be less than or equal to 900"),
        # the sync's tally of changes its events missed: a traceback (OverflowError in a timedelta), exit 1
        ("EVENT_GRACE_S", "inf", "Input should be a finite number"),
        ("EVENT_GRACE_S", "1e300", "Input should be less than or equal to 1209600"),
        # creating the collection: "index storage failed: ... OverflowError: int too big to convert"
        ("QDRANT_EMBEDDED_GRAPH_FROM", BEYOND, "Input should be less than or equal to 1000000"),
    ],
)
def test_an_index_setting_no_wait_or_store_can_hold_stops_kbsearch_index_naming_it(
    name: str, value: str, reason: str, deepinfra_only: FakeProvider, tmp_path: Path
) -> None:
    """``kbsearch index`` with a duration of ``inf`` or 1e300 s, or a segment size past 64 bits: each was accepted
    and failed in use (exit 1 with an OverflowError, or a traceback). Now one line naming the setting, exit 2,
    nothing created, as any invalid setting."""
    store = tmp_path / "q"
    env = subprocess_env(**fake_provider_env(deepinfra_only), EMBEDDING_DIMENSIONS="64", QDRANT_PATH=str(store),
                         **{name: value})  # fmt: skip
    proc = subprocess.run([*KBSEARCH_CMD, "index", str(ROOT / "sample-kb")], capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, check=False, env=env)  # fmt: skip
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr[-2000:])
    assert proc.stderr.strip() == f"kbsearch index: error: invalid setting {name}: {reason}"
    assert not store.exists() and not deepinfra_only.calls("embeddings")
