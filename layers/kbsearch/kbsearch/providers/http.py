"""The HTTP policy every provider call shares: bearer auth from :class:`~kbsearch.config.Secrets` (refreshed
once on 401), timeouts bounded by a deadline, retries with exponential backoff and full jitter on connection
errors, timeouts, 429 and 5xx (honouring ``Retry-After``), and errors that say what failed without secrets."""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from kbsearch.config import Secrets
from kbsearch.errors import ConfigError, KbSearchError

RETRYABLE = frozenset({"connect", "timeout", "rate_limited", "server"})


class ProviderError(KbSearchError):
    """A provider call failed. ``kind``: connect, timeout, rate_limited, server, auth, client, malformed."""

    def __init__(self, provider: str, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.kind = kind
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


@dataclass(frozen=True)
class Endpoint:
    name: str  # the provider's name as reported (deepinfra, fireworks, ...)
    url: str
    model: str
    secret: str  # the secret setting holding its key, e.g. EMBEDDING_API_KEY


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 10.0
    timeout_s: float = 30.0


class Deadline:
    """A point in monotonic time; ``None`` seconds means no deadline."""

    def __init__(self, seconds: float | None = None) -> None:
        self.at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float:
        return float("inf") if self.at is None else self.at - time.monotonic()


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def shared_client() -> httpx.Client:
    """One pooled client per process (a warm Lambda container reuses its connections)."""
    global _client  # noqa: PLW0603 - process-wide connection pool
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
                headers={"User-Agent": "kb-search"},
            )
        return _client


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_detail(response: httpx.Response) -> str:
    """The provider's own error message (DeepInfra ``detail``, OpenAI/Fireworks ``error.message``), short."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("error") or body.get("message")
        if isinstance(detail, dict):
            detail = detail.get("message") or detail.get("type")
        if detail is not None:
            return (detail if isinstance(detail, str) else json.dumps(detail))[:200]
    return str(body)[:200]


def post_json(
    client: httpx.Client,
    endpoint: Endpoint,
    secrets: Secrets,
    payload: dict[str, Any],
    policy: RetryPolicy,
    deadline: Deadline | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """POST ``payload`` and return the decoded JSON answer, or raise :class:`ProviderError`."""
    deadline = deadline or Deadline()
    refreshed = False
    attempt = 0
    while True:
        try:
            key = secrets.get(endpoint.secret)
        except ConfigError as exc:  # SSM unreachable or denied: this provider is unusable, the caller degrades
            raise ProviderError(endpoint.name, "auth", f"cannot read the API key: {exc}") from None
        if not key:
            raise ProviderError(endpoint.name, "auth", f"no API key configured ({endpoint.secret})")
        timeout = min(policy.timeout_s, deadline.remaining())
        if timeout <= 0.01:
            raise ProviderError(endpoint.name, "timeout", "no time left before the deadline")
        retry_after: float | None = None
        try:
            response = client.post(
                endpoint.url, json=payload, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
            )
        except httpx.TimeoutException:
            error = ProviderError(endpoint.name, "timeout", f"no answer within {timeout:.2f}s")
        except httpx.TransportError as exc:
            error = ProviderError(endpoint.name, "connect", f"connection failed ({type(exc).__name__})")
        else:
            status = response.status_code
            if status in (401, 403):
                if not refreshed:
                    refreshed = True  # the key may have been rotated: reread it once, retry at once
                    secrets.refresh()
                    continue
                raise ProviderError(endpoint.name, "auth", f"HTTP {status}: {_error_detail(response)}", status)
            if status == 429 or status >= 500:
                kind = "rate_limited" if status == 429 else "server"
                error = ProviderError(endpoint.name, kind, f"HTTP {status}: {_error_detail(response)}", status)
                retry_after = _retry_after(response)
            elif status >= 400:
                raise ProviderError(endpoint.name, "client", f"HTTP {status}: {_error_detail(response)}", status)
            else:
                try:
                    return response.json()
                except ValueError:
                    raise ProviderError(endpoint.name, "malformed", "answer is not JSON", status) from None
        attempt += 1
        if attempt >= policy.attempts:
            raise error
        backoff = random.uniform(0, min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1)))
        delay = min(policy.max_delay_s, retry_after) if retry_after is not None else backoff
        if delay >= deadline.remaining():
            raise error
        sleep(delay)


class CircuitBreaker:
    """After ``threshold`` consecutive failures the breaker opens for ``cooldown_s``: callers skip the primary
    and go straight to the fallback. The first call after the cooldown is a trial; success closes it."""

    def __init__(self, threshold: int = 3, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return False
            # past the cooldown the breaker is half-open: a trial call goes through
            return self._clock() - self._opened_at < self.cooldown_s

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self.threshold:
                self._opened_at = self._clock()
