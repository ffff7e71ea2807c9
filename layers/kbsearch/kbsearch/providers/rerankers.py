"""Qwen3-Reranker-8B: DeepInfra's native inference API, Fireworks' standard ``/v1/rerank`` as the fallback.

The contract comes from the URL path (``/v1/inference/<model>`` → native ``queries``/``documents`` → ``scores``;
a path ending in ``/rerank`` → standard ``query``/``documents`` → ``data[index, relevance_score]``), unless set
explicitly. :class:`Reranking` adds the fallback, hedging (if the primary has not answered within the hedge
delay, the same request goes to the fallback and the first valid answer wins) and a circuit breaker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from kbsearch.config import Endpoint, Secrets, Settings, rerank_contract
from kbsearch.providers.resilience import (
    Deadline,
    PrimaryFallback,
    ProviderClient,
    RetryPolicy,
    role_clients,
    usage_tokens,
)


@dataclass(frozen=True)
class Ranked:
    scores: list[float]  # scores[i] belongs to documents[i]
    tokens: int
    provider: str


def detect_style(url: str, override: str = "auto") -> str:
    if override in ("native", "standard"):
        return override
    contract = rerank_contract(url)
    if contract:
        return contract
    raise ValueError(f"cannot tell the rerank contract from {url!r}: set the *_API_STYLE setting to native|standard")


class RerankClient(ProviderClient):
    """One rerank endpoint in either contract."""

    def __init__(self, endpoint: Endpoint, secrets: Secrets, client: httpx.Client, policy: RetryPolicy) -> None:
        super().__init__(endpoint, secrets, client, policy)
        self.style = detect_style(endpoint.url, endpoint.api_style)

    def rerank(self, query: str, documents: Sequence[str], deadline: Deadline | None = None) -> Ranked:
        if self.style == "native":
            # Public clients repeat the query once per document; the safe form of the contract.
            payload: dict[str, object] = {"queries": [query] * len(documents), "documents": list(documents)}
        else:
            payload = {
                "model": self.endpoint.model,
                "query": query,
                "documents": list(documents),
                "top_n": len(documents),
                "return_documents": False,
            }
        answer = self.post(payload, deadline)
        scores = (
            self._native(answer, len(documents)) if self.style == "native" else self._standard(answer, len(documents))
        )
        return Ranked(scores, self._tokens(answer), self.endpoint.name)

    @staticmethod
    def _number(value: object) -> float | None:
        """A score as a finite float, or None (not a number, a bool, NaN, infinite, a JSON integer too long)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        try:
            number = float(value)
        except OverflowError:  # a JSON integer of hundreds of digits
            return None
        return number if math.isfinite(number) else None

    @classmethod
    def _finite(cls, value: object) -> float | None:
        """A score of the native contract, a probability in [0, 1] (DeepInfra's, providers.md), or None. The final
        score relies on it: ``RERANK_WEIGHT=1`` takes the scores as they are and an exact match stands 2 above them,
        so a score of 5 put a note above every exact match and 1.7e308 (x the prior) answered ``inf``."""
        number = cls._number(value)
        return number if number is not None and 0.0 <= number <= 1.0 else None

    @staticmethod
    def _probabilities(scores: list[float]) -> list[float]:
        """The standard contract's ``relevance_score`` in [0, 1]. Its range is not part of that contract
        (providers.md says it of DeepInfra's native scores alone; a ``/rerank`` endpoint may answer logits): scores
        all in [0, 1] are taken as they are; an answer with any outside is read as logits, each through the
        logistic function (``1 / (1 + e^-x)``), which keeps the reranker's order and the bound the final score relies
        on. Refusing them made a logit-scoring fallback fail every call (``rerank`` degraded)."""
        if all(0.0 <= s <= 1.0 for s in scores):
            return scores
        return [0.5 * (1.0 + math.tanh(s / 2)) for s in scores]  # the logistic, without overflow at +-1.7e308

    def _native(self, answer: object, n: int) -> list[float]:
        scores = answer.get("scores") if isinstance(answer, dict) else None
        if not isinstance(scores, list) or len(scores) != n:
            raise self._bad(f"expected {n} scores, got {len(scores) if isinstance(scores, list) else 'none'}")
        out = [self._finite(s) for s in scores]
        if any(s is None for s in out):
            raise self._bad("a score is missing, NaN or outside [0, 1]")
        return [s for s in out if s is not None]

    def _standard(self, answer: object, n: int) -> list[float]:
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or len(data) != n:
            raise self._bad(f"expected {n} results, got {len(data) if isinstance(data, list) else 'none'}")
        scores: list[float | None] = [None] * n
        for item in data:
            index = item.get("index") if isinstance(item, dict) else None
            score = self._number(item.get("relevance_score")) if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < n or scores[index] is not None or score is None:
                raise self._bad("bad index or relevance_score (missing, NaN or infinite) in the results")
            scores[index] = score
        return self._probabilities([s for s in scores if s is not None])

    @staticmethod
    def _tokens(answer: object) -> int:
        return usage_tokens(answer, "usage.total_tokens", "input_tokens", "inference_status.tokens_input")


@dataclass(frozen=True)
class RerankOutcome:
    ranked: Ranked | None  # None: both failed (or nothing configured answered)
    fell_back: bool
    hedged: bool
    errors: list[str]


class Reranking(PrimaryFallback[RerankClient]):
    """The primary reranker, hedged by the fallback after ``hedge_delay_s`` (RERANK_HEDGE_MS), behind a circuit
    breaker (see :func:`~kbsearch.providers.resilience.failover`)."""

    def rerank(self, query: str, documents: Sequence[str], deadline: Deadline) -> RerankOutcome:
        outcome = self.call(lambda client, d: client.rerank(query, documents, d), deadline)
        return RerankOutcome(outcome.value, outcome.fell_back, outcome.hedged, outcome.messages)


def build_reranking(settings: Settings, secrets: Secrets, client: httpx.Client) -> Reranking | None:
    role = settings.reranking
    policy = RetryPolicy(attempts=1, timeout_s=role.timeout_s)  # no retries: the fallback is the retry
    clients = role_clients(role, secrets.configured(), lambda e: RerankClient(e, secrets, client, policy))
    if clients is None:
        return None
    primary, fallback, breaker = clients
    return Reranking(primary, fallback, breaker, hedge_delay_s=role.hedge_s)
