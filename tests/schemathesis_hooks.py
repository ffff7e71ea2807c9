"""Schemathesis hooks for the fuzz run (``SCHEMATHESIS_HOOKS=tests/schemathesis_hooks.py``): sign generated Slack
commands and interactions the way Slack does, so the fuzzer reaches what runs after the signature check (form parsing, replay
guard, the hand-off), not only the 401. A case whose generator already chose a signature header keeps it (and is
expected to get a 401)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import schemathesis

from kbsearch.slack import sign


def _form_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    if isinstance(body, Mapping):
        return urlencode(body, doseq=True).encode("utf-8", "surrogatepass")
    return json.dumps(body).encode("utf-8")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    secret = os.environ.get("FUZZ_SLACK_SIGNING_SECRET")
    if not secret or case.operation.path not in ("/slack/command", "/slack/interactive"):
        return
    headers = case.headers or {}
    if any(name.lower() == "x-slack-signature" for name in headers):
        return
    raw = _form_bytes(case.body)
    case.body = raw  # sent as these exact bytes
    stamp = str(int(time.time()))
    case.headers = {**headers, "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sign(secret, stamp, raw)}
