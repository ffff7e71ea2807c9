"""The suite-wide secret guard (tests/conftest.py) really catches leaks."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import _RecordCollector, check_response, leaked_secrets


def test_collector_sees_secrets_in_messages_extras_and_tracebacks() -> None:
    collector = _RecordCollector()
    log = logging.getLogger("guard-selftest")
    log.propagate = False  # these records are leaks on purpose: keep them away from the suite's own guard
    log.addHandler(collector)
    log.setLevel(logging.DEBUG)
    try:
        log.debug("key is %s", "di-test-key")
        log.info("plain", extra={"header": "Bearer fw-test-key"})
        try:
            raise RuntimeError("qdrant-test-key")
        except RuntimeError:
            log.exception("boom")
    finally:
        log.removeHandler(collector)
    found = [leaked_secrets(text) for text in collector.texts]
    assert found == [["di-test-key"], ["fw-test-key"], ["qdrant-test-key"]]


def test_response_check_catches_secrets_and_internals() -> None:
    with pytest.raises(AssertionError, match="secret"):
        check_response({"statusCode": 200, "body": '{"token": "test-signing-secret"}'})
    with pytest.raises(AssertionError, match="Traceback"):
        check_response({"statusCode": 500, "body": "Traceback (most recent call last): ..."})
    check_response({"statusCode": 200, "body": '{"ok": true}'})
