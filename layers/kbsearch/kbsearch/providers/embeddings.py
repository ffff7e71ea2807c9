"""Qwen3-Embedding-8B over OpenAI-compatible endpoints: DeepInfra primary, Fireworks fallback.

Documents get no instruction; queries get Qwen's ``Instruct: ...\\nQuery:`` prefix. Inputs are batched by count
and by estimated tokens, a bounded number of requests run at once, every vector is checked (count, dimension,
finite) and L2-normalised. Documents' vectors are checked and normalised as one numpy array per request, and the
indexer gets one array for all of them; a search's few query vectors stay Python lists, so the search path never
imports numpy (~0.1 s of a cold start). DeepInfra's path (``/v1/openai/embeddings``) takes ``encoding_format``;
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

import httpx

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
from kbsearch.tokens import estimate_tokens

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

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
    """One request's unit vectors in input order: lists (queries) or a 2-D float64 array (documents)."""

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


def _normalise(vector: list[float]) -> list[float] | None:
    """Unit length, or None when the vector has no usable length (it underflows to 0 or overflows)."""
    norm = math.hypot(*vector)
    if not (math.isfinite(norm) and norm > 0):
        return None
    unit = [x / norm for x in vector]
    return unit if any(unit) else None


_NUMBERS = frozenset({float, int})


class EmbeddingClient(ProviderClient):
    """One OpenAI-compatible embeddings endpoint."""

    def __init__(
        self,
        endpoint: Endpoint,
        dimensions: int,
        secrets: Secrets,
        client: httpx.Client,
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
        """Query vectors as Python lists (no numpy on the search path)."""
        answer = self._post(texts, deadline)
        return Embedded(self._unit_lists(self._rows(answer, len(texts))), self._tokens(answer), self.endpoint.name)

    def embed_array(self, texts: Sequence[str], deadline: Deadline | None = None) -> Embedded[NDArray[np.float64]]:
        """Document vectors as one ``len(texts)`` x ``dimensions`` float64 array."""
        answer = self._post(texts, deadline)
        return Embedded(self._unit_array(self._rows(answer, len(texts))), self._tokens(answer), self.endpoint.name)

    def _rows(self, answer: object, expected: int) -> list[list[Any]]:
        """The answer's embeddings in input order, each a list of ``dimensions`` numbers (not yet checked)."""
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

    def _unit_lists(self, rows: list[list[Any]]) -> list[list[float]]:
        vectors = []
        for index, vector in enumerate(rows):
            try:
                floats = [float(x) for x in vector]
            except OverflowError:
                raise self._bad(f"embedding {index} has out-of-range values") from None
            if not all(math.isfinite(x) for x in floats) or not any(floats):
                raise self._bad(f"embedding {index} is zero or not finite")
            unit = _normalise(floats)
            if unit is None:
                raise self._bad(f"embedding {index} has no usable length (it underflows or overflows)")
            vectors.append(unit)
        return vectors

    def _unit_array(self, rows: list[list[Any]]) -> NDArray[np.float64]:
        """The same checks as :meth:`_unit_lists`, on the whole request at once. The norm is taken as
        ``peak * |x / peak|`` (peak = the largest magnitude), which neither underflows to 0 nor overflows before
        the true norm does, as ``math.hypot``."""
        import numpy as np

        try:
            matrix = np.array(rows, dtype=np.float64).reshape(len(rows), self.dimensions)
        except OverflowError:  # an integer too large for a float; name the first such embedding
            index = next(i for i, row in enumerate(rows) if not _fits_float(row))
            raise self._bad(f"embedding {index} has out-of-range values") from None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            peak = np.abs(matrix).max(axis=1, initial=0.0)
            unusable = ~np.isfinite(peak) | (peak == 0)
            if unusable.any():
                raise self._bad(f"embedding {int(np.argmax(unusable))} is zero or not finite")
            scaled = matrix / peak[:, None]
            length = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
            overflows = ~np.isfinite(peak * length)
        if overflows.any():
            raise self._bad(f"embedding {int(np.argmax(overflows))} has no usable length (it underflows or overflows)")
        unit: NDArray[np.float64] = scaled / length[:, None]
        return unit

    @staticmethod
    def _tokens(answer: object) -> int:
        return usage_tokens(answer, "usage.prompt_tokens", "usage.total_tokens")


def _fits_float(row: list[Any]) -> bool:
    try:
        [float(x) for x in row]
    except OverflowError:
        return False
    return True


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

    def batches(self, texts: Sequence[str]) -> list[list[int]]:
        """Indices of ``texts`` grouped into requests of at most ``batch_size`` items and ``batch_tokens``."""
        groups: list[list[int]] = []
        current: list[int] = []
        tokens = 0
        for i, text in enumerate(texts):
            cost = estimate_tokens(text)
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
        self, texts: Sequence[str], deadline: Deadline | None = None, stats: EmbeddingStats | None = None
    ) -> NDArray[np.float64]:
        """Unit vectors of ``texts`` as one ``len(texts)`` x ``dimensions`` float64 array, in input order."""
        import numpy as np

        stats = stats if stats is not None else EmbeddingStats()
        groups = self.batches(texts)
        out = np.empty((len(texts), self.dimensions), dtype=np.float64)

        def run(group: list[int]) -> None:
            result, fell_back = self._failover(lambda client, d: client.embed_array([texts[i] for i in group], d),
                                               deadline)  # fmt: skip
            with self._lock:
                stats.add(result, fell_back)
            out[group] = result.vectors

        if len(groups) <= 1 or self.concurrency <= 1:
            for group in groups:
                run(group)
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(groups))) as pool:
                for future in [pool.submit(run, g) for g in groups]:
                    future.result()
        return out


def build_embedder(
    settings: Settings, secrets: Secrets, client: httpx.Client, for_queries: bool = False
) -> Embedder | None:
    """The configured embedder, or None when no embedding key is configured (then search is BM25-only).

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
