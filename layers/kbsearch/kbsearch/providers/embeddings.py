"""Qwen3-Embedding-8B over OpenAI-compatible endpoints: DeepInfra primary, Fireworks fallback.

Documents get no instruction; queries get Qwen's ``Instruct: ...\\nQuery:`` prefix. Inputs are batched by count
and by estimated tokens, a bounded number of requests run at once, every vector is checked (count, dimension,
numbers only) and L2-normalised. Vectors stay the lists of floats the JSON decoder made, the form both Qdrant
clients take: each row is checked by one C pass over its item types and one for its length (``math.hypot``, exact
without overflow or underflow), then divided by it once; no copy into numpy and back (which cost as much as the
checks, and ~0.1 s of numpy import in every indexing run). DeepInfra's path (``/v1/openai/embeddings``) takes ``encoding_format``;
Fireworks' schema rejects unknown fields, so it is sent only where the path says OpenAI-style DeepInfra.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit

from kbsearch.config import Endpoint, Secrets, Settings
from kbsearch.providers.resilience import (
    CircuitBreaker,
    Deadline,
    PrimaryFallback,
    ProviderClient,
    ProviderError,
    RetryPolicy,
    role_clients,
    usage_tokens,
)
from kbsearch.tokens import Counts, counts, estimate, estimate_tokens, plus

if TYPE_CHECKING:
    import httpx

QUERY_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def query_text(query: str, instruction: str = QUERY_INSTRUCTION) -> str:
    """Qwen3's query format: no space after ``Query:``; the instruction in English whatever the language."""
    return f"Instruct: {instruction}\nQuery:{query}"


#: EMBEDDING_INPUT_FORMAT values: how a model wants queries and documents dressed.
INPUT_FORMATS = ("qwen3", "e5", "none")


def format_query(query: str, input_format: str = "qwen3") -> str:
    """A query as the model expects it: Qwen3's instruction, e5's ``query: ``, or as it is."""
    if input_format == "qwen3":
        return query_text(query)
    if input_format == "e5":
        return f"query: {query}"
    return query


def format_document(text: str, input_format: str = "qwen3") -> str:
    """A document as the model expects it: e5's ``passage: ``; Qwen3 and none take it bare."""
    return f"passage: {text}" if input_format == "e5" else text


V = TypeVar("V")


@dataclass(frozen=True)
class Embedded(Generic[V]):
    """One request's unit vectors in input order."""

    vectors: V
    tokens: int
    provider: str


@dataclass
class EmbeddingStats:
    calls: int = 0
    tokens: int = 0
    providers: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0

    def add(self, result: Embedded[Any], fell_back: bool) -> None:
        self.calls += 1
        self.tokens += result.tokens
        self.providers[result.provider] += 1
        self.fallbacks += int(fell_back)


_NUMBERS = frozenset({float, int})


class EmbeddingClient(ProviderClient):
    """One OpenAI-compatible embeddings endpoint."""

    def __init__(
        self,
        endpoint: Endpoint,
        dimensions: int,
        secrets: Secrets,
        client: httpx.Client | None,
        policy: RetryPolicy,
    ) -> None:
        super().__init__(endpoint, secrets, client, policy)
        self.dimensions = dimensions
        self.send_encoding_format = "/openai/" in urlsplit(endpoint.url).path

    def _post(self, texts: Sequence[str], deadline: Deadline | None) -> Any:
        payload: dict[str, object] = {"model": self.endpoint.model, "input": list(texts), "dimensions": self.dimensions}
        if self.send_encoding_format:
            payload["encoding_format"] = "float"
        return self.post(payload, deadline)

    def embed(self, texts: Sequence[str], deadline: Deadline | None = None) -> Embedded[list[list[float]]]:
        """Unit vectors of ``texts``, in input order, as lists of floats (queries and documents alike)."""
        answer = self._post(texts, deadline)
        return Embedded(self._unit_rows(self._rows(answer, len(texts))), self._tokens(answer), self.endpoint.name)

    def _rows(self, answer: object, expected: int) -> list[list[Any]]:
        """The answer's embeddings in input order, each a list of ``dimensions`` numbers (not yet normalised)."""
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or len(data) != expected:
            got = len(data) if isinstance(data, list) else "no"
            raise self._bad(f"expected {expected} embeddings, got {got}")
        rows: list[list[Any] | None] = [None] * expected
        for position, item in enumerate(data):
            index = item.get("index", position) if isinstance(item, dict) else None
            vector = item.get("embedding") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < expected or rows[index] is not None:
                raise self._bad(f"bad or repeated index {index!r}")
            if not isinstance(vector, list) or len(vector) != self.dimensions:
                size = len(vector) if isinstance(vector, list) else "no"
                raise self._bad(f"embedding {index} has dimension {size}, expected {self.dimensions}")
            if not set(map(type, vector)) <= _NUMBERS:  # bools, strings, nulls, lists
                raise self._bad(f"embedding {index} has non-numeric values")
            rows[index] = vector
        return [row for row in rows if row is not None]

    def _unit_rows(self, rows: list[list[Any]]) -> list[list[float]]:
        """Each row (numbers only, finite: the decoder refuses NaN, infinities and numbers that overflow to them)
        divided by its length. ``math.hypot`` takes the length exactly, without overflowing or underflowing before
        the true length does, and every quotient is then in [-1, 1] and not all zero."""
        vectors = []
        for index, vector in enumerate(rows):
            try:
                norm = math.hypot(*vector)
            except OverflowError:  # an integer too large for a float
                raise self._bad(f"embedding {index} has out-of-range values") from None
            if norm == 0:
                raise self._bad(f"embedding {index} is zero or not finite")
            if not math.isfinite(norm):
                raise self._bad(f"embedding {index} has no usable length (it underflows or overflows)")
            vectors.append([x / norm for x in vector])
        return vectors

    @staticmethod
    def _tokens(answer: object) -> int:
        return usage_tokens(answer, "usage.prompt_tokens", "usage.total_tokens")


class Embedder(PrimaryFallback[EmbeddingClient]):
    """Primary with fallback, batching and bounded concurrency. A primary error (after its retries) sends the
    batch to the fallback; a breaker skips a primary that keeps failing."""

    def __init__(
        self,
        primary: EmbeddingClient,
        fallback: EmbeddingClient | None = None,
        batch_size: int = 32,
        batch_tokens: int = 16_000,
        concurrency: int = 4,
        breaker: CircuitBreaker | None = None,
        input_format: str = "qwen3",
    ) -> None:
        super().__init__(primary, fallback, breaker)
        self.input_format = input_format
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.concurrency = concurrency
        self.dimensions = primary.dimensions
        self._lock = threading.Lock()

    @property
    def signature(self) -> dict[str, Any]:
        """What a collection built with this embedder records: its vectors are comparable only with these."""
        return {"embedding_model": self.primary.endpoint.model, "embedding_dimensions": self.dimensions,
                "embedding_input_format": self.input_format}  # fmt: skip

    def format_query(self, query: str) -> str:
        return format_query(query, self.input_format)

    def format_document(self, text: str) -> str:
        return format_document(text, self.input_format)

    def batches(self, texts: Sequence[str], known: Sequence[Counts | None] | None = None) -> list[list[int]]:
        """Indices of ``texts`` grouped into requests of at most ``batch_size`` items and ``batch_tokens``.
        ``known``: each text's :func:`kbsearch.tokens.counts` before :meth:`format_document` (None: not known),
        which the indexer takes where it parses a note (its parsing process, for a large sync), so that the texts
        are not read again here; the format's prefix is added (``counts`` of text joined after whitespace add up),
        so the estimates, and the batches, are those of the formatted texts."""
        groups: list[list[int]] = []
        current: list[int] = []
        tokens = 0
        prefix = counts(self.format_document(""))
        for i, text in enumerate(texts):
            given = known[i] if known is not None else None
            cost = estimate_tokens(text) if given is None else estimate(plus(prefix, given))
            if current and (len(current) >= self.batch_size or tokens + cost > self.batch_tokens):
                groups.append(current)
                current, tokens = [], 0
            current.append(i)
            tokens += cost
        if current:
            groups.append(current)
        return groups

    def embed_one_batch(
        self, texts: Sequence[str], deadline: Deadline | None = None
    ) -> tuple[Embedded[list[list[float]]], bool]:
        """(result, whether the fallback answered); :class:`ProviderError` when no endpoint answered."""
        return self._failover(lambda client, d: client.embed(texts, d), deadline)

    def _failover(
        self, call: Callable[[EmbeddingClient, Deadline], Embedded[V]], deadline: Deadline | None
    ) -> tuple[Embedded[V], bool]:
        outcome = self.call(call, deadline or Deadline())
        if outcome.value is None:
            if outcome.errors:
                raise outcome.errors[-1]
            raise ProviderError(self.primary.endpoint.name, "server", "circuit open and no fallback configured")
        return outcome.value, outcome.fell_back

    def embed_documents(
        self,
        texts: Sequence[str],
        deadline: Deadline | None = None,
        stats: EmbeddingStats | None = None,
        known: Sequence[Counts | None] | None = None,
        into: list[list[float]] | None = None,
        go_on: Callable[[], bool] | None = None,
    ) -> list[list[float]]:
        """Unit vectors of ``texts`` in input order, as lists of floats (the form the stores write); ``known``: the
        texts' token counts where already taken (:meth:`batches`). ``into``: a list of ``len(texts)`` empty lists,
        each filled as its request answers, so that the caller keeps what came back before a request failed (the
        failure is raised as ever: a text not embedded keeps its empty list).

        Once a request fails (no endpoint answered it: the fallback exhausted, a 401, the run's end), or ``go_on``
        says no (the caller's run stopped: its index lease lost), no request not yet sent is sent: at
        ``EMBEDDING_CONCURRENCY`` above 1 those queued behind it were sent all the same, each paid for or failing
        in turn (rel35). Requests already in flight finish, and their answers are kept."""
        stats = stats if stats is not None else EmbeddingStats()
        groups = self.batches(texts, known)
        out: list[list[float]] = into if into is not None else [[] for _ in texts]
        if len(out) != len(texts):
            raise ValueError(f"into holds {len(out)} lists for {len(texts)} texts")
        failed = threading.Event()

        def run(group: list[int]) -> None:
            if failed.is_set():
                return  # not sent: the first failure is raised
            if go_on is not None and not go_on():
                failed.set()
                raise ProviderError(self.name, "budget", "not sent: the run stopped (its index lease was lost)")
            try:
                result, fell_back = self.embed_one_batch([texts[i] for i in group], deadline)
            except BaseException:
                failed.set()
                raise
            with self._lock:
                stats.add(result, fell_back)
            for i, vector in zip(group, result.vectors, strict=True):
                out[i] = vector

        if len(groups) <= 1 or self.concurrency <= 1:
            for group in groups:
                run(group)
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(groups))) as pool:
                futures = [pool.submit(run, g) for g in groups]
                errors = [exc for exc in (f.exception() for f in futures) if exc is not None]
            if errors:  # the first to fail (the others, sent before it was known, failed alike or after it)
                raise errors[0]
        return out


def build_embedder(
    settings: Settings, secrets: Secrets, client: httpx.Client | None, for_queries: bool = False
) -> Embedder | None:
    """The configured embedder, or None when no embedding key is configured (then search is BM25-only). ``client``:
    None for the process's shared client, made when the embedder first calls (a sync that embeds nothing makes none).

    ``for_queries``: one attempt per provider with the short query timeout (the fallback is the retry), as a
    search has a latency budget; indexing retries with backoff instead."""
    role = settings.embedding
    if for_queries:
        policy = RetryPolicy(attempts=1, timeout_s=role.query_timeout_s)
    else:
        policy = RetryPolicy(attempts=role.retries + 1, timeout_s=role.timeout_s)
    clients = role_clients(
        role, secrets.configured(), lambda e: EmbeddingClient(e, role.dimensions, secrets, client, policy)
    )
    if clients is None:
        return None
    primary, fallback, breaker = clients
    return Embedder(
        primary,
        fallback,
        batch_size=role.batch_size,
        batch_tokens=role.batch_tokens,
        concurrency=role.concurrency,
        breaker=breaker,
        input_format=role.input_format,
    )
