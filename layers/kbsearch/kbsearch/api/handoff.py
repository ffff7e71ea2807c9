"""Handing a slash command to the worker after the acknowledgement: an asynchronous Lambda invoke in AWS (with
the worker's retries and failure destination), a background thread locally."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kbsearch.errors import KbSearchError

logger = logging.getLogger(__name__)


class LambdaHandoff:
    def __init__(self, function_name: str, client: Any = None) -> None:
        self.function_name = function_name
        self._client = client

    def __call__(self, job: dict[str, Any]) -> None:
        if self._client is None:
            import boto3

            self._client = boto3.client("lambda")
        self._client.invoke(
            FunctionName=self.function_name,
            InvocationType="Event",
            Payload=json.dumps({"slack_job": job}).encode(),
        )


class ThreadHandoff:
    def __init__(self, target: Callable[[dict[str, Any]], Any]) -> None:
        self.target = target

    def __call__(self, job: dict[str, Any]) -> None:
        def run() -> None:
            try:
                self.target(job)
            except KbSearchError as exc:  # a failure it knows (response_url refused the answer): one line
                logger.error("local Slack worker failed: %s", exc)
            except Exception:
                logger.exception("local Slack worker failed")

        threading.Thread(target=run, name="slack-worker", daemon=True).start()
