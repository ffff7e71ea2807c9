"""The one outbound policy: every call kb-search makes over HTTP (embedding, rerank and chat providers, Qdrant
Cloud's REST API, Slack ``response_url``) goes through :func:`send`.

- **Wall-clock deadlines**, not per-read timeouts: a :class:`Deadline` bounds name resolution + connect + send +
  the whole answer. The shared client's network backend clamps every socket operation to the deadline of the call
  running on that thread, so a server that drips its answer a byte at a time is cut off when the deadline passes,
  and a resolver that hangs is waited on no longer than the deadline either.
- **Retries** with exponential backoff and full jitter on connection errors, timeouts, 429 and 5xx, honouring
  ``Retry-After``, never past the deadline; **secret refresh** once on 401/403 (a rotated key).
- **Answers are untrusted**: size-capped, decoded as strict JSON (no ``NaN``, bounded nesting), and every error
  message is redacted of secret values and bearer tokens before it reaches an exception or a log.
- **Failover** (:func:`failover`): primary, then fallback, behind a :class:`CircuitBreaker`, optionally hedged
  (the fallback starts when the primary is slow). Each attempt runs on its own short-lived thread, so a stuck
  primary never holds a worker the fallback needs, and a primary that lost to a hedge counts as a failure.
  Every provider role with a fallback is a :class:`PrimaryFallback` over one :class:`ProviderClient` per endpoint,
  built from its settings group (``Settings.embedding``, ``Settings.reranking``) by :func:`role_clients`.
"""

from __future__ import annotations

import codecs
import email.utils
import functools
import io
import json
import math
import random
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic_core import from_json

from kbsearch.config import Breaker, Endpoint, Secrets
from kbsearch.errors import ConfigError, KbSearchError

if TYPE_CHECKING:  # httpx (and httpcore under it) are imported by the first call: a sync that embeds nothing never
    import httpx  # pays them (BENCHMARKS.md, "Session 20: the no-change sync's CPU")

RETRYABLE = frozenset({"connect", "timeout", "rate_limited", "server"})
#: The largest answer read from any dependency (a 2,048 x 4,096-d embedding batch as JSON is ~170 MB; the
#: indexer's batches are far smaller). Past it the answer is a failure, not a memory spike.
MAX_ANSWER_BYTES = 64 * 1024 * 1024

T = TypeVar("T")


class ProviderError(KbSearchError):
    """An outbound call failed. ``kind``: connect, timeout, rate_limited, server, auth, client, malformed, or
    budget (the caller's deadline had passed before anything was sent: not the dependency's fault)."""

    def __init__(self, provider: str, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.kind = kind
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 10.0
    timeout_s: float = 30.0  # one attempt's wall-clock limit (connect + send + whole answer)


# -- deadlines -------------------------------------------------------------------------------------------------


class Deadline:
    """A point in monotonic time; ``None`` seconds means no deadline."""

    def __init__(self, seconds: float | None = None) -> None:
        self.at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float:
        return float("inf") if self.at is None else self.at - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def within(self, seconds: float | None = None, reserve: float = 0.0) -> Deadline:
        """A sub-deadline: at most ``seconds`` from now, and ``reserve`` seconds before this one ends (time kept
        for the stages after it)."""
        limits = [time.monotonic() + seconds] if seconds is not None else []
        if self.at is not None:
            limits.append(self.at - reserve)
        child = Deadline()
        child.at = min(limits) if limits else None
        return child


_active = threading.local()


@contextmanager
def bounded(deadline: Deadline) -> Iterator[None]:
    """Bound every socket operation of this thread's HTTP calls by ``deadline`` (see :class:`kbsearch.providers.transport._DeadlineBackend`)."""
    previous = getattr(_active, "deadline", None)
    _active.deadline = deadline
    try:
        yield
    finally:
        _active.deadline = previous


def _clamp(timeout: float | None, error: type[Exception]) -> float | None:
    deadline: Deadline | None = getattr(_active, "deadline", None)
    if deadline is None or deadline.at is None:
        return timeout
    left = deadline.remaining()
    if left <= 0:
        raise error("the call's deadline passed")
    return left if timeout is None else min(timeout, left)


#: ``socket.getaddrinfo``'s shape: (host, port) → address infos, whose ``[4][0]`` is an address.
Resolver = Callable[[str, int], list[tuple[Any, ...]]]


def system_resolver(host: str, port: int) -> list[tuple[Any, ...]]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def shared_client() -> httpx.Client:
    """One pooled client per process (a warm Lambda container reuses its connections)."""
    global _client  # noqa: PLW0603 - process-wide connection pool
    with _client_lock:
        if _client is None:
            import httpx

            from kbsearch.providers.transport import deadline_transport

            limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
            _client = httpx.Client(transport=deadline_transport(limits=limits), headers={"User-Agent": "kb-search"})
        return _client


# -- untrusted answers -----------------------------------------------------------------------------------------

_BEARER = re.compile(r"(?i)\b(bearer|api[-_ ]?key|token|authorization)(\s*[:=]?\s*)([A-Za-z0-9._~+/=-]{6,})")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without any of ``secrets`` and without anything that looks like a bearer token or key."""
    for value in secrets:
        if value and len(value) >= 4:
            text = text.replace(value, "[redacted]")
    return _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)


_FLOAT_MAX = sys.float_info.max


def _all_finite(value: Any) -> bool:
    """No float in ``value`` (decoded JSON) is inf or NaN, and no integer is too large for a float (it would
    overflow wherever it meets one: a score, a weight). A list of numbers is summed in C first (a finite sum
    means no element is inf, NaN or too large), so an embedding answer's 65,000 floats cost a few C loops, not a
    Python call each; only a list that is not all numbers, or whose sum is not finite, is looked at item by
    item."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is float:
            if not math.isfinite(item):
                return False
        elif type(item) is int:
            if not -_FLOAT_MAX <= item <= _FLOAT_MAX:
                return False
        elif type(item) is dict:
            stack.extend(item.values())
        elif type(item) is list:
            try:
                if math.isfinite(sum(item, 0.0)):
                    continue
            except (TypeError, OverflowError):  # not all numbers, or an int too large for a float
                pass
            stack.extend(x for x in item if type(x) in (float, int, dict, list))
    return True


def loads(raw: bytes | str) -> Any:
    """Strict JSON: no NaN/Infinity (neither the literals nor numbers that overflow to them), nesting bounded by
    the decoder (a deep document is an error, not a crash), UTF-8 only. Raises ValueError for anything else.

    pydantic-core's parser (Rust, already loaded with pydantic) decodes an embedding answer ~7x faster than the
    standard library, whose float parsing dominated indexing; it refuses the literals and nests at most 200 deep,
    and numbers that overflow to ±inf (integers too large for a float included) are refused here."""
    if isinstance(raw, bytes) and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        value = from_json(raw, allow_inf_nan=False, cache_strings=False)
    except ValueError as exc:
        raise ValueError(str(exc)[:200]) from None
    if not _all_finite(value):
        raise ValueError("a number is out of range (it overflows to infinity)")
    return value


def usage_tokens(answer: object, *keys: str) -> int:
    """Token usage from an answer: the first of ``keys`` (dotted, e.g. ``usage.total_tokens``) that holds a
    non-negative finite number; 0 when none does (a garbled usage block is not worth failing a call)."""
    for key in keys:
        value: object = answer
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not (0 <= value < 2**53):
            continue
        if isinstance(value, int) and not 0 <= value < 2**53:
            continue
        return int(value)
    return 0


def retry_after_s(response: httpx.Response) -> float | None:
    """The seconds an answer's ``Retry-After`` asks for (a number or an HTTP date; a past date is 0), or None when it
    says none or nothing that reads."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _error_detail(raw: bytes) -> str:
    """The dependency's own error message (DeepInfra ``detail``, OpenAI/Fireworks ``error.message``), short."""
    try:
        body = loads(raw)
    except ValueError:
        return raw[:4000].decode("utf-8", errors="replace")
    return _error_text(body)


def _error_text(body: Any) -> str:
    """The error message of a decoded error body (:func:`_error_detail`)."""
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("error") or body.get("message")
        if isinstance(detail, dict):
            detail = detail.get("message") or detail.get("error") or detail.get("type")
        if detail is not None:
            return (detail if isinstance(detail, str) else json.dumps(detail))[:4000]
    return str(body)[:4000]


# -- one call --------------------------------------------------------------------------------------------------


@dataclass
class Outbound:
    """One outbound request. ``headers`` is called before every attempt with the seconds the attempt has left (it
    reads the current key, from SSM within that time, and may raise :class:`ProviderError` ``auth``); ``refresh``
    is called once after a 401/403 (reread a rotated key)."""

    name: str
    method: str
    url: str
    body: Any = None
    headers: Callable[[float], dict[str, str]] = lambda _left: {}
    refresh: Callable[[], None] | None = None
    expect_json: bool = True
    secret_values: Callable[[], Iterable[str]] = tuple
    max_bytes: int = MAX_ANSWER_BYTES


@dataclass
class Answer:
    status: int
    data: Any
    headers: dict[str, str] = field(default_factory=dict)


def read_capped(response: httpx.Response, limit: int, name: str) -> bytes:
    """A streamed answer's body, at most ``limit`` bytes of it decoded (a gzip bomb counts as what it inflates
    to); more is a ``malformed`` :class:`ProviderError`, refused from a declared length before a byte is read."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ProviderError(name, "malformed", f"answer of {declared} bytes is over the {limit}-byte limit")
    # gathered in one growing buffer whose bytes are handed on as they are (CPython's BytesIO.getvalue shares them):
    # a list of the chunks joined at the end held the answer twice at once (a 26 MB scroll page of 1,024-dimension
    # vectors: a 52 MB peak in the indexer's Qdrant transport, RELIABILITY.md "Round 31")
    buffer = io.BytesIO()
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise ProviderError(name, "malformed", f"answer is over the {limit}-byte limit")
        buffer.write(chunk)
    return buffer.getvalue()


def header_safe(value: str) -> bool:
    """Whether an HTTP header can carry ``value`` as it is: printable ASCII, spaces and tabs (httpx encodes header
    values as ASCII: anything else was a ``UnicodeEncodeError``, a line break or NUL a protocol error)."""
    return all(" " <= c <= "~" or c == "\t" for c in value)


def _attempt(client: httpx.Client, call: Outbound, attempt_deadline: Deadline) -> tuple[httpx.Response, bytes]:
    import httpx

    headers = call.headers(max(0.0, attempt_deadline.remaining()))  # a key read from SSM fits in the attempt
    unsafe = sorted(k for k, v in headers.items() if not header_safe(v))
    if unsafe:  # a credential pasted with a smart quote, a zero-width space, a line break: never sendable
        raise ProviderError(call.name, "auth", f"the {'/'.join(unsafe)} header would hold characters HTTP cannot "
                            "carry (non-ASCII or control characters)")  # fmt: skip
    left = attempt_deadline.remaining()
    if left <= 0.005:
        raise ProviderError(call.name, "budget", "no time left before the deadline")
    content = None if call.body is None else json.dumps(call.body, ensure_ascii=False).encode()
    if content is not None:
        headers = {"Content-Type": "application/json", **headers}
    with bounded(attempt_deadline):
        try:
            with client.stream(call.method, call.url, content=content, headers=headers, timeout=left) as response:
                raw = read_capped(response, call.max_bytes, call.name)
        except httpx.TimeoutException:
            raise ProviderError(call.name, "timeout", f"no complete answer within {left:.2f}s") from None
        except httpx.DecodingError:  # a Content-Encoding (gzip, deflate) its bytes are not: not a transport error
            encoding = response.headers.get("Content-Encoding", "")[:40]
            raise ProviderError(call.name, "malformed", f"answer is not the {encoding!r} it says it is") from None
        except httpx.TransportError as exc:
            raise ProviderError(call.name, "connect", f"connection failed ({type(exc).__name__})") from None
    return response, raw


def send(
    client: httpx.Client,
    call: Outbound,
    policy: RetryPolicy,
    deadline: Deadline | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Answer:
    """Make ``call`` under ``policy`` within ``deadline``; the decoded answer, or :class:`ProviderError` whose
    message is redacted of secrets."""
    try:
        return _send(client, call, policy, deadline or Deadline(), sleep)
    except ProviderError as exc:
        # redact the whole text first, then shorten it: a key cut in half would escape redaction
        message = redact(str(exc).removeprefix(f"{call.name}: "), call.secret_values())
        message = message if len(message) <= 300 else message[:299] + "…"
        raise ProviderError(call.name, exc.kind, message, exc.status) from None


def _send(
    client: httpx.Client, call: Outbound, policy: RetryPolicy, deadline: Deadline, sleep: Callable[[float], None]
) -> Answer:
    refreshed = False
    attempt = 0
    while True:
        retry_after: float | None = None
        said = detail = ""
        try:
            response, raw = _attempt(client, call, deadline.within(policy.timeout_s))
        except ProviderError as exc:
            if not exc.retryable:
                raise
            error = exc
        else:
            status = response.status_code
            if status in (401, 403):
                if not refreshed and call.refresh is not None:
                    refreshed = True  # the key may have been rotated: reread it once, retry at once
                    call.refresh()
                    continue
                raise ProviderError(call.name, "auth", f"HTTP {status}: {_error_detail(raw)}", status)
            if status == 429 or status >= 500:
                kind, said = (
                    ("rate_limited", "rate limited (HTTP 429)") if status == 429 else ("server", f"HTTP {status}")
                )
                detail = _error_detail(raw)
                error = ProviderError(call.name, kind, f"{said}: {detail}", status)
                retry_after = retry_after_s(response)
            elif status >= 400:
                raise ProviderError(call.name, "client", f"HTTP {status}: {_error_detail(raw)}", status)
            elif status >= 300:  # never followed (the key would go where the answer says); nor is its body an answer
                raise ProviderError(call.name, "client", f"HTTP {status}: a redirect, not followed (check the URL)",
                                    status)  # fmt: skip
            elif not call.expect_json:
                return Answer(status, raw, dict(response.headers))
            else:
                try:
                    return Answer(status, loads(raw), dict(response.headers))
                except ValueError as exc:
                    raise ProviderError(call.name, "malformed", f"answer is not JSON ({exc})", status) from None
        attempt += 1
        if attempt >= policy.attempts:
            raise error
        backoff = random.uniform(0, min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1)))
        if retry_after is not None and retry_after > min(policy.max_delay_s, deadline.remaining()):
            # a retry sooner than asked is refused again (and spends the provider's patience): fail now, so the
            # caller's fallback or degradation comes at once, the wait named
            can = min(policy.max_delay_s, max(0.0, deadline.remaining()))
            raise ProviderError(call.name, error.kind, f"{said}, asking for {retry_after:g}s before a retry "
                                f"(Retry-After), more than this call can wait ({can:.1f}s): {detail}",
                                error.status)  # fmt: skip
        # never sooner than asked, and a Retry-After of 0 (or a date past) is no reason to retry without a backoff
        delay = max(retry_after, backoff) if retry_after is not None else backoff
        if delay >= deadline.remaining():
            raise error
        sleep(delay)


def bearer_call(endpoint: Endpoint, secrets: Any, payload: dict[str, Any]) -> Outbound:
    """A provider request: ``POST`` JSON with the endpoint's key as a bearer token (read from ``secrets`` at each
    attempt, refreshed once on 401)."""

    def headers(left_s: float) -> dict[str, str]:
        try:
            key = secrets.get(endpoint.secret, timeout_s=left_s)
        except ConfigError as exc:  # SSM unreachable or denied: this provider is unusable, the caller degrades
            raise ProviderError(endpoint.name, "auth", f"cannot read the API key: {exc}") from None
        if not key:
            raise ProviderError(endpoint.name, "auth", f"no API key configured ({endpoint.secret})")
        if not header_safe(key) or any(c.isspace() for c in key):
            raise ProviderError(endpoint.name, "auth", f"the API key ({endpoint.secret}) holds characters no key "
                                "has (non-ASCII, control characters or spaces: a pasted quote or zero-width space?)")  # fmt: skip
        return {"Authorization": f"Bearer {key}"}

    return Outbound(
        endpoint.name,
        "POST",
        endpoint.url,
        payload,
        headers=headers,
        refresh=secrets.refresh,
        secret_values=secrets.known_values,
    )


def post_json(
    client: httpx.Client,
    endpoint: Endpoint,
    secrets: Any,
    payload: dict[str, Any],
    policy: RetryPolicy,
    deadline: Deadline | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """POST ``payload`` to a provider and return the decoded JSON answer, or raise :class:`ProviderError`."""
    return send(client, bearer_call(endpoint, secrets, payload), policy, deadline, sleep).data


# -- failover --------------------------------------------------------------------------------------------------


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


@dataclass
class Outcome(Generic[T]):
    value: T | None  # None: every configured endpoint failed
    fell_back: bool = False
    hedged: bool = False
    errors: list[ProviderError] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        return [str(e) for e in self.errors]


def _spawn(fn: Callable[[], T], name: str) -> Future[T]:
    """Run ``fn`` on its own daemon thread (a stuck call never holds a pooled worker that another call needs)."""
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class Abandoned:
    """The calls :func:`call_within` gave up waiting on that still run (each its thread, its socket), at most
    ``most`` of them: a peer that drips every answer would otherwise leave one more thread reading at every cut,
    run after run of a warm Lambda (threads, sockets and their buffers piling up)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._running: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def count(self) -> int:
        """How many still run."""
        with self._lock:
            self._running = {f for f in self._running if not f.done()}
            return len(self._running)

    def full(self) -> bool:
        return self.count() >= self.most

    def add(self, future: Future[Any]) -> None:
        with self._lock:
            if not future.done():
                self._running.add(future)


@functools.cache
def abandoned_calls(name: str, most: int) -> Abandoned:
    """This process's record of the calls named ``name`` that :func:`call_within` gave up on (one per name: every
    run or request of a warm Lambda shares it)."""
    return Abandoned(most)


class TooManyAbandoned(TimeoutError):
    """:func:`call_within` refused to start a call: :attr:`Abandoned.most` calls given up on still run."""


def call_within(fn: Callable[[], T], seconds: float, name: str, abandoned: Abandoned | None = None) -> T:
    """``fn()`` on its own daemon thread, waited on no longer than ``seconds``: TimeoutError after that (the thread
    is abandoned and ends when ``fn`` does). For a blocking call whose own timeouts are per socket read (botocore's),
    which a peer that hangs between retries or drips its answer keeps alive far past any request's budget.
    ``abandoned``: the calls given up on are counted there, and while its most still run no call is started
    (:class:`TooManyAbandoned`)."""
    if abandoned is not None and abandoned.full():
        raise TooManyAbandoned(f"{abandoned.most} earlier calls given up on still run")
    future = _spawn(fn, name)
    try:
        return future.result(timeout=max(0.0, seconds))
    except TimeoutError:
        if abandoned is not None:
            abandoned.add(future)
        raise


def _as_provider_error(exc: BaseException, name: str) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    return ProviderError(name, "malformed", f"unexpected failure ({type(exc).__name__})")


def failover(
    primary: Callable[[Deadline], T],
    fallback: Callable[[Deadline], T] | None,
    breaker: CircuitBreaker,
    deadline: Deadline,
    hedge_delay_s: float | None = None,
    names: tuple[str, str] = ("primary", "fallback"),
) -> Outcome[T]:
    """The primary, then the fallback on its failure, within ``deadline`` (the primary gets at most half of it
    when there is a fallback). An open breaker skips the primary.
    With ``hedge_delay_s`` the fallback also starts when the primary has not answered by then, and the first
    valid answer wins; a primary that failed, or lost to the hedge, counts as a failure for the breaker."""
    outcome: Outcome[T] = Outcome(None)
    if breaker.is_open:
        outcome.errors.append(ProviderError(names[0], "server", "circuit open"))
        return _fallback_only(fallback, deadline, outcome, names[1])
    if hedge_delay_s is None or fallback is None:
        # With a fallback and a finite deadline, the primary may use half of what is left: a slow primary must
        # not leave the fallback no time at all.
        first = deadline.within(deadline.remaining() / 2) if fallback is not None and deadline.at else deadline
        try:
            outcome.value = primary(first)
        except Exception as exc:  # any failure, garbled answers included, is the primary's: degrade, never raise
            error = _as_provider_error(exc, names[0])
            if error.kind != "budget":  # our own spent deadline says nothing about the dependency
                breaker.failure()
            outcome.errors.append(error)
            return _fallback_only(fallback, deadline, outcome, names[1])
        breaker.success()
        return outcome
    return _hedged(primary, fallback, breaker, deadline, hedge_delay_s, outcome, names)


def _fallback_only(
    fallback: Callable[[Deadline], T] | None, deadline: Deadline, outcome: Outcome[T], name: str
) -> Outcome[T]:
    if fallback is None:
        return outcome
    try:
        outcome.value = fallback(deadline)
        outcome.fell_back = True
    except Exception as exc:
        outcome.errors.append(_as_provider_error(exc, name))
    return outcome


def _hedged(
    primary: Callable[[Deadline], T],
    fallback: Callable[[Deadline], T],
    breaker: CircuitBreaker,
    deadline: Deadline,
    hedge_delay_s: float,
    outcome: Outcome[T],
    names: tuple[str, str],
) -> Outcome[T]:
    judged = threading.Event()  # the primary's result has been counted by the breaker (once per call)

    def judge(success: bool) -> None:
        if not judged.is_set():
            judged.set()
            breaker.success() if success else breaker.failure()

    first = _spawn(lambda: primary(deadline), f"{names[0]}-call")

    def primary_done(future: Future[T]) -> None:
        exc = future.exception()
        if not (isinstance(exc, ProviderError) and exc.kind == "budget"):
            judge(exc is None)

    first.add_done_callback(primary_done)
    pending: dict[Future[T], str] = {first: "primary"}
    hedge_at: float | None = time.monotonic() + hedge_delay_s
    fallback_started = False
    while pending:
        remaining = deadline.remaining()
        if remaining <= 0:
            outcome.errors.append(ProviderError(names[0], "timeout", "budget exhausted"))
            break
        timeout = remaining if hedge_at is None else max(0.0, min(remaining, hedge_at - time.monotonic()))
        done, _ = wait(list(pending), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            role = pending.pop(future)
            exc = future.exception()
            if exc is None:
                if role == "fallback":
                    judge(False)  # the primary was slower than the hedge and than the fallback: a slow failure
                    outcome.fell_back = True
                outcome.value = future.result()
                return outcome
            outcome.errors.append(_as_provider_error(exc, names[0] if role == "primary" else names[1]))
            if role == "primary" and not fallback_started:
                hedge_at = None  # the primary failed before the hedge: ask the fallback now
                fallback_started = True
                pending[_spawn(lambda: fallback(deadline), f"{names[1]}-call")] = "fallback"
        if not done and hedge_at is not None and time.monotonic() >= hedge_at:
            hedge_at = None
            outcome.hedged = fallback_started = True
            pending[_spawn(lambda: fallback(deadline), f"{names[1]}-call")] = "fallback"
    if first.running() or not first.done():
        judge(False)  # still no answer at the deadline: slow is a failure
    return outcome


# -- primary + fallback ----------------------------------------------------------------------------------------


class ProviderClient:
    """One provider endpoint: its key read from ``secrets`` at each call, every call under ``policy`` on ``client``
    (None: the process's :func:`shared_client`, made by the first call: a sync that embeds nothing makes none)."""

    def __init__(self, endpoint: Endpoint, secrets: Secrets, client: httpx.Client | None, policy: RetryPolicy) -> None:
        self.endpoint = endpoint
        self.secrets = secrets
        self._client = client
        self.policy = policy

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = shared_client()
        return self._client

    #: The top-level keys of the answers providers give (embeddings and Fireworks' rerank ``data``, DeepInfra's
    #: rerank ``scores``, chat ``choices``).
    ANSWER_KEYS = frozenset({"data", "scores", "choices"})

    def post(self, payload: dict[str, Any], deadline: Deadline | None = None) -> Any:
        """The endpoint's decoded answer to ``payload`` (:func:`post_json`). A 200 whose body is the provider's error
        shape (DeepInfra's ``detail``, Fireworks' ``error``) and no answer is ``malformed`` with the provider's own
        message (redacted of secrets), not the shape the answer lacks."""
        answer = post_json(self.client, self.endpoint, self.secrets, payload, self.policy, deadline)
        if (
            isinstance(answer, dict)
            and not self.ANSWER_KEYS & answer.keys()
            and ("error" in answer or "detail" in answer)
        ):
            text = redact(_error_text(answer), self.secrets.known_values())
            raise self._bad(f"answered 200 with an error: {text if len(text) <= 200 else text[:199] + '…'}")
        return answer

    def _bad(self, message: str) -> ProviderError:
        """The error for an answer that cannot be used."""
        return ProviderError(self.endpoint.name, "malformed", message)


class FailoverRole(Protocol):
    """Settings of a role served by a primary endpoint and a fallback behind a breaker (``Settings.embedding``,
    ``Settings.reranking``)."""

    @property
    def primary(self) -> Endpoint: ...
    @property
    def fallback(self) -> Endpoint: ...
    @property
    def breaker(self) -> Breaker: ...


C = TypeVar("C", bound=ProviderClient)


def role_clients(
    role: FailoverRole, configured: Collection[str], client: Callable[[Endpoint], C]
) -> tuple[C, C | None, CircuitBreaker] | None:
    """A role's clients, built by ``client``: the primary, the fallback when its URL and key are configured
    (``configured``: the configured secrets), and the role's breaker; None when the primary is not configured."""
    if not role.primary.usable(configured):
        return None
    fallback = client(role.fallback) if role.fallback.usable(configured) else None
    return client(role.primary), fallback, CircuitBreaker(role.breaker.threshold, role.breaker.cooldown_s)


class PrimaryFallback(Generic[C]):
    """A primary client, an optional fallback and the breaker between them: one call of both is :meth:`call`
    (hedged after ``hedge_delay_s`` when that is set)."""

    def __init__(
        self,
        primary: C,
        fallback: C | None = None,
        breaker: CircuitBreaker | None = None,
        hedge_delay_s: float | None = None,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.breaker = breaker or CircuitBreaker()
        self.hedge_delay_s = hedge_delay_s

    @property
    def name(self) -> str:
        return self.primary.endpoint.name

    def call(self, fn: Callable[[C, Deadline], T], deadline: Deadline) -> Outcome[T]:
        """``fn(client, deadline)`` on the primary, then the fallback (see :func:`failover`)."""
        fallback = self.fallback
        return failover(
            lambda d: fn(self.primary, d),
            (lambda d: fn(fallback, d)) if fallback is not None else None,
            self.breaker,
            deadline,
            hedge_delay_s=self.hedge_delay_s,
            names=(self.primary.endpoint.name, fallback.endpoint.name if fallback else "none"),
        )
