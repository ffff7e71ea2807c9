"""Multi-query expansion: an OpenAI-compatible chat model writes N rewrites of the query as JSON, one of them a
translation into the other language (ru ↔ en). Bounded by a latency budget; answers are cached in the warm
container (LRU with TTL). Any failure returns no variants and the search goes on with the query alone."""

from __future__ import annotations

import threading
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

import httpx

from kbsearch.config import Endpoint, Secrets, Settings
from kbsearch.providers.resilience import Deadline, ProviderClient, RetryPolicy, loads, usage_tokens
from kbsearch.schemas import has_something_to_search

SYSTEM_PROMPT = (
    "You rewrite search queries for a company knowledge base written in Russian and English. "
    "Given a query, write {n} different rewrites that could find the same notes: rephrasings, synonyms or more "
    "specific wordings. Exactly one rewrite must be a translation of the query into the other language "
    "(Russian if the query is English, English if it is Russian). Keep product names, code and identifiers "
    'as they are. Answer with JSON only: {{"queries": ["...", "..."]}} /no_think'
)
#: The longest answer read: the model is asked for at most 300 tokens, so more is a provider that does not do as it
#: is told (its answer is not parsed: refused as unusable, the search goes on with the query alone).
MAX_CONTENT_CHARS = 16 * 1024


@dataclass(frozen=True)
class Expansion:
    variants: list[str]
    tokens: int
    provider: str
    cached: bool


class _TtlLru:
    def __init__(self, size: int, ttl_s: float) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, tuple[float, list[str], int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[list[str], int] | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            stored, variants, tokens = item
            if time.monotonic() - stored > self.ttl_s:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return variants, tokens

    def put(self, key: str, variants: list[str], tokens: int) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = (time.monotonic(), variants, tokens)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def _without_thinking(text: str) -> str:
    """``text`` without its closed ``<think>…</think>`` blocks (an unclosed one is kept), in linear time: the
    regular expression this replaces rescanned the rest of the answer from every unclosed ``<think>``."""
    kept: list[str] = []
    at = 0
    while (start := text.find("<think>", at)) >= 0 and (end := text.find("</think>", start + 7)) >= 0:
        kept.append(text[at:start])
        at = end + 8
    kept.append(text[at:])
    return "".join(kept)


def _unfenced(text: str) -> str:
    """``text`` without Markdown fences (a line opening with three backticks and an optional ``json``, three
    backticks closing a line), line by line in linear time (the expression this replaces backtracked over every
    run of whitespace: quadratic)."""
    lines = []
    for raw in text.split("\n"):
        line = (raw[7:] if raw.startswith("```json") else raw[3:]) if raw.startswith("```") else raw
        stripped = line.rstrip()
        lines.append(stripped[:-3] if stripped.endswith("```") else line)
    return "\n".join(lines)


def _same(text: str) -> str:
    """What two rewrites share when they are the same search: Unicode compatibility form (NFC/NFD, full-width
    letters), case, and without invisible format characters (zero-width spaces and joiners, bidi marks)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in folded if unicodedata.category(c) != "Cf").strip()


def _words(item: str) -> str:
    """A rewrite as it is searched: its words one space apart (tabs and line breaks are spaces), control
    characters dropped (NUL, a terminal's escape sequences, BEL, DEL, C1: used as written, they were sent to the
    embedder and back to the caller in ``meta.variants``)."""
    kept = "".join(c for c in item if c.isspace() or unicodedata.category(c) != "Cc")
    return " ".join(kept.split())


def parse_variants(content: str, query: str, n: int) -> list[str]:
    """Rewrites from the model's answer (JSON object, list, or fenced JSON; ``<think>`` blocks dropped), at most
    ``n``, none the query or another rewrite in another Unicode form, case or with invisible characters, none
    without a letter or digit (punctuation, controls: nothing to search), control characters dropped. Linear in
    the answer; an answer over :data:`MAX_CONTENT_CHARS` is refused (``ValueError``) unread."""
    if len(content) > MAX_CONTENT_CHARS:
        raise ValueError(f"the answer is {len(content)} characters long, over {MAX_CONTENT_CHARS}")
    text = _unfenced(_without_thinking(content).strip()).strip()
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError("no JSON in the answer")
    data = loads(text[start:])
    items = data.get("queries") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError("no list of queries in the answer")
    seen = {_same(query)}
    out: list[str] = []
    for item in items:
        if len(out) >= n:
            break
        if not isinstance(item, str):
            continue
        variant = _words(item)[:1000]
        key = _same(variant)
        if key and key not in seen and has_something_to_search(key):  # no letter or digit: nothing to search
            seen.add(key)
            out.append(variant)
    return out


class Expander(ProviderClient):
    """One chat endpoint, one attempt within ``budget_s`` (EXPANSION_BUDGET_MS), answers cached."""

    def __init__(
        self,
        endpoint: Endpoint,
        secrets: Secrets,
        client: httpx.Client,
        n: int = 3,
        budget_s: float = 0.8,
        cache_size: int = 512,
        cache_ttl_s: float = 3600,
    ) -> None:
        super().__init__(endpoint, secrets, client, RetryPolicy(attempts=1, timeout_s=budget_s))
        self.n = n
        self.budget_s = budget_s
        self.cache = _TtlLru(cache_size, cache_ttl_s)

    @property
    def name(self) -> str:
        return self.endpoint.name

    def expand(self, query: str, deadline: Deadline) -> Expansion:
        """Raises :class:`ProviderError` on any failure (the caller degrades)."""
        key = f"{self.n}\x00{query}"
        hit = self.cache.get(key)
        if hit is not None:
            return Expansion(hit[0], 0, self.endpoint.name, cached=True)
        budget = deadline.within(self.budget_s)
        payload = {
            "model": self.endpoint.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT.format(n=self.n)},
                {"role": "user", "content": query},
            ],
            "temperature": 0.2,
            "max_tokens": 300,
        }
        answer = self.post(payload, budget)
        try:
            content = answer["choices"][0]["message"]["content"]
            variants = parse_variants(str(content), query, self.n)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise self._bad(f"unusable expansion answer ({exc})") from None
        tokens = usage_tokens(answer, "usage.total_tokens")
        self.cache.put(key, variants, tokens)
        return Expansion(variants, tokens, self.endpoint.name, cached=False)


def build_expander(settings: Settings, secrets: Secrets, client: httpx.Client) -> Expander | None:
    role = settings.expansion
    if not role.primary.usable(secrets.configured()):
        return None
    return Expander(
        role.primary,
        secrets,
        client,
        n=role.variants,
        budget_s=role.budget_s,
        cache_size=role.cache_size,
        cache_ttl_s=role.cache_ttl_s,
    )
