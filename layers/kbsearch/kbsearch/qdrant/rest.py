"""Qdrant Cloud for the search: the Query API JSON of :mod:`kbsearch.qdrant.query` sent over REST with the shared
httpx client, under the one outbound policy (:mod:`kbsearch.providers.resilience`). No qdrant_client here: its
~0.6 s import stays off the Lambda search path. And the Qdrant key as both reach Cloud (the indexer's
qdrant-client too, :class:`RereadKey`): read per request, read again once after a 401/403."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from kbsearch.errors import ConfigError, StoreError
from kbsearch.links import GRAPH_KEYS
from kbsearch.providers.resilience import (
    MAX_ANSWER_BYTES,
    Deadline,
    Outbound,
    ProviderError,
    RetryPolicy,
    bounded,
    header_safe,
    read_capped,
    retry_after_s,
    send,
)
from kbsearch.qdrant.query import (
    DENSE_SIZE,
    GRAPH_KEYS_UNINDEXED,
    TAG_KEYS,
    TAG_KEYS_UNINDEXED,
    ScoredChunk,
    dense_size,
    index_missing,
    read_legs,
    unreachable,
)

if TYPE_CHECKING:
    from kbsearch.config import Secrets


def _at_most(items: list[Any], request: dict[str, Any]) -> list[Any]:
    """An answer's points (or facet hits) cut to the ``limit`` the request asked for (Qdrant's default 10): more
    is no answer Qdrant gives, and what reads them (a note's backlinks, resolved against each other) costs the
    square of their number."""
    limit = request.get("limit", 10)
    return items[:limit] if type(limit) is int and limit >= 0 else items


def qdrant_key(secrets: Secrets) -> str:
    """``QDRANT_API_KEY`` as the secrets hold it now; StoreError when no HTTP header can carry it (httpx's
    UnicodeEncodeError, a traceback, at the first request)."""
    key = secrets.get("QDRANT_API_KEY") or ""
    if not header_safe(key):
        raise StoreError("QDRANT_API_KEY holds characters no HTTP header can carry (non-ASCII or control "
                         "characters: a pasted quote or zero-width space?)")  # fmt: skip
    return key


class RereadKey(httpx.Auth):
    """qdrant-client's requests (the indexer's store on Qdrant Cloud) carry the key as the secrets hold it at each
    request, and a 401/403 has it read from SSM again once (``Secrets.refresh``, what the search's Qdrant calls and
    every provider do: ``Outbound.refresh``) and the request sent again with it: a key rotated, the old one revoked,
    mid-run no longer fails the run's writes. An httpx auth flow (qdrant-client gives ``auth`` to its httpx client)."""

    requires_request_body = True  # sent again whole
    requires_response_body = False

    def __init__(self, secrets: Secrets) -> None:
        self._secrets = secrets

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = qdrant_key(self._secrets)
        if key:
            request.headers["api-key"] = key
        response = yield request
        if response.status_code in (401, 403):
            self._secrets.refresh()
            again = qdrant_key(self._secrets)
            if again != key:  # the same key refused again tells nothing new: its answer stands
                if again:
                    request.headers["api-key"] = again
                else:
                    request.headers.pop("api-key", None)
                yield request


#: The largest answer the indexer's qdrant-client reads from Qdrant Cloud, decoded: its largest legitimate page,
#: 2,048 points with their dense vectors (:meth:`~kbsearch.qdrant.store.Store.note_points`), is ~28 MB as JSON at
#: 1,024 dimensions and ~115 MB at 4,096.
QDRANT_ANSWER_BYTES = 4 * MAX_ANSWER_BYTES


class AnswerTooLarge(httpx.TransportError):
    """Qdrant answered the indexer's qdrant-client more than :data:`QDRANT_ANSWER_BYTES` (or a body declared so)."""


class CappedAnswers(httpx.BaseTransport):
    """qdrant-client's transport (the indexer's store on Qdrant Cloud): each answer read whole here, at most ``limit``
    bytes of it decoded (:func:`~kbsearch.providers.resilience.read_capped`, as every call of the outbound policy
    reads), and handed on decoded. qdrant-client read any answer whole into memory: a 1 MB gzip body inflating to
    1 GiB took ``kbsearch index`` to 2.2 GB of memory (the indexer Lambda has 2,048 MB) before it failed as not
    JSON. Past the limit the request fails with :class:`AnswerTooLarge` (a StoreError naming it: the run stops).

    Each request is sent by ``inner``, an httpx client of its own: httpx reads the environment's proxies
    (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) only for a client given no transport, so a transport here in
    place of its own sent the indexer straight to ``QDRANT_URL`` behind a proxy (the search went through it)."""

    def __init__(self, inner: httpx.Client, limit: int = QDRANT_ANSWER_BYTES, deadline: Deadline | None = None) -> None:
        """``deadline``: when given, every exchange (connecting, sending, the whole answer) ends by it, whatever the
        per-read timeouts (``inner`` must be a :func:`~kbsearch.providers.transport.deadline_client`): the run's
        end for a Lambda's sync, so a Qdrant that drips its answer cannot hold the run past it."""
        self._inner = inner
        self._limit = limit
        self._deadline = deadline

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            with bounded(self._deadline) if self._deadline is not None else nullcontext():
                response = self._inner.send(request, stream=True)  # the request's own timeouts (its extensions) kept
                try:
                    body = read_capped(response, self._limit, "qdrant")
                except ProviderError as exc:
                    raise AnswerTooLarge(f"Qdrant's {str(exc).removeprefix('qdrant: ')}", request=request) from None
                finally:
                    response.close()
        except httpx.TimeoutException as exc:
            if self._deadline is None or self._deadline.remaining() > 0.05:
                raise  # the request's own timeout (QDRANT_TIMEOUT_S)
            raise type(exc)("no whole answer from Qdrant by the run's end", request=request) from None
        gone = ("content-encoding", "content-length", "transfer-encoding")  # the body handed on is decoded, whole
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in gone]
        return httpx.Response(response.status_code, headers=headers, content=body, extensions=response.extensions)

    def close(self) -> None:
        self._inner.close()


#: Qdrant's answers that say a request was not done, for now: a rate limit (429, strict mode's, with a
#: ``Retry-After``) or a node shedding load (503).
REFUSED_FOR_NOW = frozenset({429, 503})


class QdrantRefused(httpx.TransportError):
    """Qdrant refused a request for longer than the run can wait (its ``Retry-After``), or while the run lost its
    index lease."""


class SentAgain(httpx.BaseTransport):
    """The indexer's Qdrant requests sent again when Qdrant refuses them for now (:data:`REFUSED_FOR_NOW`): after
    the ``Retry-After`` it asks for, else the policy's backoff, at most ``policy.attempts`` times, never past
    ``deadline`` (the run's end) nor sooner than asked. Every request the indexer sends Qdrant is idempotent
    (points by fixed ids, deletes and payloads by filter, the metadata's values), and a refused one was not
    applied. A wait asked for past what the run can (or ``policy.max_delay_s``) fails the request at once,
    naming it: :class:`QdrantRefused`, a :class:`~kbsearch.errors.StoreError` where it was made. Without it the
    first 429 of a write rate limit stopped the sync. ``held``: whether the run still holds its index lease, asked
    before each sending again; once it does not, :class:`QdrantRefused` naming the lost lease (a write sent after its
    wait, another run holding the lease by then, put the note's version this run read over the one that run
    wrote)."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        deadline: Deadline | None = None,
        policy: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen
        sleep: Callable[[float], None] = time.sleep,
        held: Callable[[], bool] | None = None,
    ) -> None:
        self._inner, self._deadline, self._policy, self._sleep = inner, deadline, policy, sleep
        self._held = held

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        policy = self._policy
        attempt = 0
        while True:
            response = self._inner.handle_request(request)
            attempt += 1
            if response.status_code not in REFUSED_FOR_NOW or attempt >= policy.attempts:
                return response
            left = self._deadline.remaining() if self._deadline is not None else math.inf
            asked = retry_after_s(response)
            if asked is not None and asked > min(policy.max_delay_s, left):
                can = min(policy.max_delay_s, max(0.0, left))
                raise QdrantRefused(f"Qdrant answered HTTP {response.status_code} asking for {asked:g}s before a "
                                    f"retry (Retry-After), more than this run can wait ({can:.1f}s)",
                                    request=request)  # fmt: skip
            backoff = random.uniform(0, min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1)))
            delay = max(asked, backoff) if asked is not None else backoff
            if delay >= left:
                return response
            self._sleep(delay)
            if self._held is not None and not self._held():
                raise QdrantRefused(f"Qdrant answered HTTP {response.status_code}, not sent again: this run lost its "
                                    "index lease while it waited", request=request)  # fmt: skip

    def close(self) -> None:
        self._inner.close()


class QdrantRest:
    """Qdrant Cloud over REST: ``POST /collections/{c}/points/query`` or ``/points/query/batch`` (a missing
    collection is its 404, so a search makes one round trip)."""

    def __init__(
        self,
        url: str,
        collection: str,
        api_key: Callable[[], str | None],
        client: httpx.Client,
        timeout_s: float,
        refresh: Callable[[], None] | None = None,
    ) -> None:
        """``refresh``: forgets the cached key, called once when Qdrant answers 401/403 (a key rotated in SSM is
        read again at once, as a provider's is, not after ``SECRETS_TTL_S``)."""
        self.base = url.rstrip("/") + f"/collections/{quote(collection, safe='')}"
        self.collection = collection
        self._api_key = api_key
        self._refresh = refresh
        self._client = client
        self._timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any] | None, timeout_s: float) -> Any:
        """One request under the shared outbound policy (one attempt: a search has no time for retries; the
        caller's deadline bounds the whole exchange). Any failure or answer of the wrong shape is a StoreError."""
        keys: list[str] = []

        def headers(_left_s: float) -> dict[str, str]:
            try:
                key = self._api_key()
            except ConfigError:
                raise ProviderError("qdrant", "auth", "cannot read the Qdrant API key") from None
            if key:
                keys.append(key)
            return {"api-key": key} if key else {}

        call = Outbound("qdrant", method, self.base + path, body, headers=headers, refresh=self._refresh,
                        secret_values=lambda: keys)  # fmt: skip
        try:
            answer = send(self._client, call, RetryPolicy(attempts=1, timeout_s=timeout_s))
        except ProviderError as exc:
            if exc.status == 404:
                raise index_missing(self.collection, "Qdrant answered 404") from None
            if exc.status is not None:
                raise StoreError(f"Qdrant answered HTTP {exc.status}") from None
            if exc.kind == "malformed":
                raise StoreError("Qdrant's answer is not what the API returns") from None
            raise unreachable(exc.kind) from None
        if answer.status != 200 or not isinstance(answer.data, dict) or "result" not in answer.data:
            raise StoreError("Qdrant's answer is not what the API returns")
        status = answer.data.get("status", "ok")  # Qdrant's envelope: "ok", or {"error": ...} with its 4xx/5xx
        if status != "ok":  # a result beside an error is none: its points (or none) are no answer to trust
            raise StoreError("Qdrant answered 200 saying it failed (its status is not 'ok')")
        return answer.data["result"]

    def metadata(self, timeout_s: float) -> dict[str, Any]:
        """The collection's metadata (``GET /collections/{c}``, ``result.config.metadata``; {} when none), with
        the size of its dense vectors from the same answer (``config.params.vectors``) as ``DENSE_SIZE``, and
        ``GRAPH_KEYS_UNINDEXED`` when it has payload indexes (``payload_schema``) and none of ``graph_keys``: a
        collection with no payload index at all is no collection made before ``graph_keys`` (the indexer creates its
        indexes with it), and its notes may hold ``graph_keys`` alone; without strict mode they are read unindexed,
        in strict mode every filter is refused, whichever fields it names. ``TAG_KEYS_UNINDEXED`` alike, for
        ``tag_keys`` (a tag filter then matches ``tags`` alone)."""
        result = self._call("GET", "", None, timeout_s)
        config = result.get("config") if isinstance(result, dict) else None
        if not isinstance(config, dict):
            raise StoreError("Qdrant's answer is not what the API returns")
        metadata = config.get("metadata")
        derived = (DENSE_SIZE, GRAPH_KEYS_UNINDEXED, TAG_KEYS_UNINDEXED)
        recorded = {k: v for k, v in metadata.items() if k not in derived} if isinstance(metadata, dict) else {}
        params = config.get("params")
        size = dense_size(params.get("vectors") if isinstance(params, dict) else None)
        schema = result.get("payload_schema")
        unindexed = isinstance(schema, dict) and bool(schema) and GRAPH_KEYS not in schema
        untagged = isinstance(schema, dict) and bool(schema) and TAG_KEYS not in schema
        return recorded | ({DENSE_SIZE: size} if size is not None else {}) | (
            {GRAPH_KEYS_UNINDEXED: True} if unindexed else {}) | (
            {TAG_KEYS_UNINDEXED: True} if untagged else {})  # fmt: skip

    def metadata_stamp(self) -> None:
        """Not known without a round trip: another process (the indexer) writes the metadata."""
        return None

    def query(self, request: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
        result = self._call("POST", "/points/query", request, timeout_s)
        points = result.get("points") if isinstance(result, dict) else None
        if not isinstance(points, list):
            raise StoreError("Qdrant's answer is not what the API returns")
        return _at_most(points, request)

    def scroll(self, request: dict[str, Any], timeout_s: float) -> tuple[list[dict[str, Any]], str | None]:
        result = self._call("POST", "/points/scroll", request, timeout_s)
        points = result.get("points") if isinstance(result, dict) else None
        offset = result.get("next_page_offset") if isinstance(result, dict) else None
        if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
            raise StoreError("Qdrant's answer is not what the API returns")
        return _at_most(points, request), None if offset is None else str(offset)

    def facet(self, request: dict[str, Any], timeout_s: float) -> list[tuple[Any, int]]:
        result = self._call("POST", "/facet", request, timeout_s)
        hits = result.get("hits") if isinstance(result, dict) else None
        if not isinstance(hits, list) or not all(
            isinstance(h, dict) and isinstance(h.get("count"), int) and not isinstance(h.get("count"), bool)
            for h in hits
        ):
            raise StoreError("Qdrant's answer is not what the API returns")
        return [(h.get("value"), int(h["count"])) for h in _at_most(hits, request)]

    def query_batch(self, searches: list[dict[str, Any]], timeout_s: float) -> list[list[dict[str, Any]]]:
        """Several searches in one round trip (``POST /points/query/batch``): one point list per search."""
        result = self._call("POST", "/points/query/batch", {"searches": searches}, timeout_s)
        if not isinstance(result, list) or len(result) != len(searches):
            raise StoreError("Qdrant's answer is not what the API returns")
        out = []
        for item, search in zip(result, searches, strict=True):
            points = item.get("points") if isinstance(item, dict) else None
            if not isinstance(points, list):
                raise StoreError("Qdrant's answer is not what the API returns")
            out.append(_at_most(points, search))
        return out

    def query_legs(
        self, searches: list[dict[str, Any]], bare: Sequence[bool], timeout_s: float
    ) -> list[list[ScoredChunk]]:
        """The batch's one round trip, each search's points read into chunks (:func:`read_legs`)."""
        return read_legs(self.query_batch(searches, timeout_s), bare)

    def close(self) -> None:
        """The httpx client is shared; nothing to close."""
