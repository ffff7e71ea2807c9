"""Round 35's cold review of walk35 and adv35 (rev35b): each test fails on main's code at 2f80836 (the merges)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIGNING_PARAM = "/kb-search/test/slack-signing-secret"


def ssm_answer(value: str) -> bytes:
    """SSM's GetParameters answer holding the signing secret (the JSON botocore reads)."""
    param = {"Name": SIGNING_PARAM, "Type": "SecureString", "Value": value, "Version": 1, "DataType": "text"}
    return json.dumps({"Parameters": [param], "InvalidParameters": []}).encode()


def answered(response_url: Any, n: int) -> None:
    """Waits for the local worker to answer the commands taken at their response_url."""
    for _ in range(300):
        if len(response_url.requests) >= n:
            return
        time.sleep(0.1)


def right_forged_right(
    app: Any, response_url: Any, after_first: Callable[[], None], after_forged: Callable[[], None] = lambda: None
) -> None:
    """Three slash commands to ``app``: one signed with the right secret, ``after_first``, one forged,
    ``after_forged``, one signed right again; the forged one is a 401 and both right ones are answered (200, and
    their worker's answer taken at ``response_url``), the secret in none of the three."""
    from tests.integration.test_slack import form, slack_event

    def body(n: int) -> str:
        return form("qdrant snapshot", f"{response_url.url}/commands/{n}", trigger=f"1334522460{n}.7.80")

    first = app(slack_event(body(1), secret="the-signing-secret"))
    after_first()
    forged = app(slack_event(body(2), secret="a-forgers-guess"))
    after_forged()
    real = app(slack_event(body(3), secret="the-signing-secret"))
    answered(response_url, 2)
    assert first["statusCode"] == 200, first
    assert forged["statusCode"] == 401 and "signature mismatch" in forged["body"], forged
    assert real["statusCode"] == 200, real["body"]
    for answer in (first, forged, real):
        assert "the-signing-secret" not in answer["body"]


def test_a_forged_signature_while_ssm_is_slow_does_not_turn_the_next_real_command_into_a_503(
    load_search_app: Any, bm25_index: Path, tmp_path: Path
) -> None:
    """adv35's re-read of the signing secret waits 1.5 s for SSM (Slack's 3 s), where every other read of the
    secrets waits FETCH_TIMEOUT_S (5 s). SSM answering in 2 s (throttled, retried: slow, not down) made a forged
    signature's re-read a *failure* the container remembered for FAILURE_TTL_S (15 s): the next read any request
    needed (the cache's end; ACCESS_GROUPS every 30 s) failed at once without asking SSM, and a command signed with
    the right secret was a 503 `cannot read secrets`. An attacker sending one forged request every 15 s kept it so.
    Now a re-read that fails leaves the container's memory of SSM as it was: the real command reads SSM (2 s) and
    is answered."""
    from kbsearch_tools.fakes import FakeEndpoint
    from tests.conftest import copy_store

    store = tmp_path / "q"
    copy_store(bm25_index, store)
    ssm, response_url = FakeEndpoint().start(), FakeEndpoint().start()
    read_at: list[float] = []

    def slow_ssm() -> None:
        read_at.append(time.monotonic())
        ssm.hang_s = 2.0  # slow, within the 5 s any read of the secrets may take

    try:
        ssm.content_type, ssm.body = "application/x-amz-json-1.1", ssm_answer("the-signing-secret")
        app = load_search_app(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET_PARAM=SIGNING_PARAM, SECRETS_TTL_S="2",
                              AWS_ENDPOINT_URL_SSM=ssm.url, SLACK_RESPONSE_HOSTS="127.0.0.1")  # fmt: skip
        # the forged command, then the cache's end (SECRETS_TTL_S=2)
        right_forged_right(
            app, response_url, slow_ssm, lambda: time.sleep(max(0.0, 2.2 - (time.monotonic() - read_at[0])))
        )
    finally:
        ssm.stop()
        response_url.stop()


GROUPS_PARAM = "/kb-search/test/access-groups"


def test_a_forged_signature_s_re_read_that_ssm_half_answers_keeps_the_signing_secret_read_before(
    load_search_app: Any, bm25_index: Path, tmp_path: Path
) -> None:
    """The re-read reads every SSM parameter of the container (one batch, Powertools' cache cleared). When SSM half
    answers it (GetParameters a 500 InternalServerError, so each parameter is read alone, and the signing secret's
    own read fails again), the signing secret was listed unreadable and every `get` of it raised: a forged
    signature made the next command signed with the right secret a 503, though the value read before was well
    within its TTL (README: a value within its TTL is served while SSM fails). Now a parameter the re-read cannot
    read keeps the value read before."""
    from kbsearch_tools.fakes import FakeEndpoint
    from tests.conftest import copy_store

    store = tmp_path / "q"
    copy_store(bm25_index, store)
    ssm, response_url = FakeEndpoint().start(), FakeEndpoint().start()
    values = {SIGNING_PARAM: "the-signing-secret", GROUPS_PARAM: "{}"}
    failing = {"on": False}

    def param(name: str) -> dict[str, Any]:
        return {"Name": name, "Type": "SecureString", "Value": values[name], "Version": 1, "DataType": "text"}

    def respond(method: str, path: str) -> tuple[int, bytes, str]:
        request = ssm.requests[-1]
        target, asked = request.headers.get("x-amz-target", ""), request.body or {}
        kind = "application/x-amz-json-1.1"
        broken = (500, json.dumps({"__type": "InternalServerError", "message": "internal"}).encode(), kind)
        if target.endswith(".GetParameters"):
            if failing["on"]:
                return broken
            return (
                200,
                json.dumps({"Parameters": [param(n) for n in asked["Names"]], "InvalidParameters": []}).encode(),
                kind,
            )
        if failing["on"] and asked.get("Name") == SIGNING_PARAM:
            return broken
        return 200, json.dumps({"Parameter": param(asked["Name"])}).encode(), kind

    ssm.responder = respond
    try:
        app = load_search_app(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET_PARAM=SIGNING_PARAM,
                              ACCESS_GROUPS_PARAM=GROUPS_PARAM, AWS_ENDPOINT_URL_SSM=ssm.url,
                              SLACK_RESPONSE_HOSTS="127.0.0.1")  # fmt: skip
        right_forged_right(app, response_url, lambda: failing.update(on=True))
    finally:
        ssm.stop()
        response_url.stop()


def test_a_forged_signature_at_a_cold_container_costs_one_ssm_read_not_two(load_search_app: Any) -> None:
    """A new container reads its secrets from SSM at the first request; a forged signature then had SSM read again
    at once (clearing Powertools' cache), though nothing newer could be there: two GetParameters per new container,
    and the forged request held its container for both reads (SSM at 2 s: ~3.6 s). Anyone can make new containers
    (a burst of forged requests): the re-read now skips a value this very request read, and counts it as the
    re-read the next 15 s allow."""
    from kbsearch_tools.fakes import FakeEndpoint
    from tests.integration.test_slack import form, slack_event

    ssm = FakeEndpoint().start()
    try:
        ssm.content_type, ssm.body = "application/x-amz-json-1.1", ssm_answer("the-signing-secret")
        app = load_search_app(SLACK_SIGNING_SECRET_PARAM=SIGNING_PARAM, AWS_ENDPOINT_URL_SSM=ssm.url)
        forged = app(slack_event(form("x", "http://127.0.0.1:9/r"), secret="a-forgers-guess"))
        again = app(slack_event(form("x", "http://127.0.0.1:9/r", trigger="2.2.x"), secret="a-forgers-guess"))
        reads = [r for r in ssm.requests if r.headers.get("x-amz-target", "").endswith(".GetParameters")]
    finally:
        ssm.stop()
    for answer in (forged, again):
        assert answer["statusCode"] == 401 and "signature mismatch" in answer["body"], answer
    assert len(reads) == 1, reads  # the second forged request, within 15 s of that read, reads nothing either
