"""The search pipeline: expand → embed (one request) → retrieve + fuse (one Qdrant call) → rerank → shape.

Every optional stage degrades instead of failing and says so in ``meta.degraded``:
``expand`` (expansion failed or ran out of budget), ``embed_fallback`` / ``embed`` (fallback used / both failed:
BM25 only), ``rerank_fallback`` / ``rerank`` (fallback answered / both failed: fusion order). Only an unreachable
index is an error (:class:`IndexUnavailable`, a 503).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from kbsearch.access import LinkTargets, Scope, visible_links
from kbsearch.chunking import CONTINUED
from kbsearch.config import Secrets, Settings
from kbsearch.errors import IndexMissing, IndexUnavailable, StoreError
from kbsearch.fusion import FusionParams, analyse, fuse, lexical_variants, path_probes, translated
from kbsearch.lexical import query_vector
from kbsearch.providers.embeddings import Embedder, build_embedder
from kbsearch.providers.expansion import Expander, build_expander
from kbsearch.providers.rerankers import Reranking, build_reranking
from kbsearch.providers.resilience import Deadline, ProviderError, shared_client
from kbsearch.qdrant import open_retriever
from kbsearch.qdrant.query import (
    GRAPH_KEYS_ONLY,
    GRAPH_KEYS_UNINDEXED,
    LINK_NAMES,
    LINKS_AT,
    LINKS_GENERATION,
    RESCORE_ONCE,
    RESTRICTED_LINKS,
    TAG_KEYS_UNINDEXED,
    Candidate,
    Retriever,
    batch_searches,
    filter_json,
    links_generation,
    payload_links,
    reach_recorded,
    retrieve,
    retrieve_legs,
    signature_mismatch,
)
from kbsearch.qdrant.rest import QdrantRest
from kbsearch.schemas import Hit, HitScores, SearchMeta, SearchRequest, SearchResponse, folder_spellings, wire_bytes
from kbsearch.tokens import MAX_CHARS_PER_TOKEN, truncate_tokens

if TYPE_CHECKING:
    from kbsearch.qdrant.store import Store

logger = logging.getLogger(__name__)

Span = Callable[[str], AbstractContextManager[Any]]
T = TypeVar("T")
STATUS_PRIOR = {"deprecated": 0.85, "archived": 0.85, "draft": 0.95}
#: Fused chunks fetched per candidate note: notes have several chunks, and grouping keeps one per note.
CHUNKS_PER_CANDIDATE = 4
LOCKED_STORE = (
    "the local index is open in another process (a running kbsearch serve or kbsearch index): the embedded store "
    "takes one process at a time; stop that process, or reach the running server (kbsearch mcp --remote URL)"
)
#: The stages a search times in ``meta.timings_ms`` (0 when a stage is skipped), before ``total``.
STAGE_NAMES = ("expand", "embed", "retrieve", "rerank")


def _no_span(_name: str) -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


class Stages:
    """The stages of one search: each runs in its tracing span and its time (ms) lands in ``timings``. An optional
    stage that fails with :class:`ProviderError` is named in ``degraded`` and the search goes on without it."""

    def __init__(self, span: Span = _no_span) -> None:
        self.span = span
        self.timings: dict[str, float] = dict.fromkeys(STAGE_NAMES, 0.0)
        self.degraded: list[str] = []

    @contextlib.contextmanager
    def run(self, name: str, degrade_with: str | None = None) -> Iterator[None]:
        """One stage. ``degrade_with``: the stage is optional, and a provider failure is logged with this message
        instead of raised."""
        started = time.perf_counter()
        with self.span(name):
            try:
                yield
            except ProviderError as exc:
                if degrade_with is None:
                    raise
                self.degraded.append(name)
                logger.warning(degrade_with, extra={"error": str(exc)})
        self.timings[name] = (time.perf_counter() - started) * 1000


def _unavailable(exc: StoreError) -> IndexUnavailable:
    """A store failure as a 503: its cause when the store says one a caller may read, else "unreachable"."""
    return IndexUnavailable(str(exc)) if exc.public is None else IndexUnavailable(str(exc), exc.public)


def snippet(text: str, limit: int, continues: bool = True) -> str:
    """The chunk text cut at a word boundary: line breaks and indentation kept (code stays code, lists stay
    lists), runs of blank lines folded to one, trailing spaces dropped. Only the first ``limit *
    MAX_CHARS_PER_TOKEN`` characters are read (a 10 MB text from the store costs what a short one does). A chunk
    that continues a long section opens with the last words of the one before it (:func:`kbsearch.chunking.
    split_section`'s ``… `` paragraph), which start at any word, mid-quote or mid-list (``… палитру команд. > 2.
    Выберите``): the snippet starts at its next paragraph, after a line ``…`` (walk38, the lead: the index's text
    is left as it is, so the ranking and its measurements do not move). ``continues=False``: ``text`` is no
    continuation (a note's first chunk, a summary), so a ``… `` it opens with is the writer's own (rev38c: a note
    opening with a quotation taken up mid-sentence lost the paragraph the search matched)."""
    window = limit * MAX_CHARS_PER_TOKEN
    shown = text[:window]
    if continues and shown.startswith(CONTINUED):
        rest = shown.partition("\n\n")[2]
        shown = "…\n" + rest if rest.strip() else shown
    lines: list[str] = []
    for raw in shown.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.rstrip()
        if line or (lines and lines[-1]):
            lines.append(line)
    flat = "\n".join(lines).strip("\n")
    if len(flat) <= limit:
        return flat if len(text) <= window or not flat else flat + "…"
    cut = flat[:limit]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,.;:\n") + "…"


def passage(payload: dict[str, Any], max_tokens: int) -> str:
    """What the reranker reads: title, heading path and chunk text (the title once: the heading path usually
    starts with it), cut to ``max_tokens`` estimated tokens at a word boundary, whatever the script."""
    window = max(0, max_tokens) * MAX_CHARS_PER_TOKEN  # no more of any field is read (time ∝ the budget)
    title, heading = str(payload.get("title") or "")[:window], str(payload.get("heading") or "")[:window]
    head = heading if title and heading.startswith(title) else f"{title}\n{heading}"
    text = f"{head}\n{str(payload.get('text') or '')[:window]}".strip()
    return truncate_tokens(text, max_tokens)


def prior(payload: dict[str, Any]) -> float:
    """Optional ranking prior (SEARCH_PRIOR): ai_weight in [0, 1] scales by 0.9–1.1; deprecated, archived and
    draft notes are pushed down a little. 1.0 when nothing is known."""
    factor = 1.0
    weight = payload.get("ai_weight")
    if (isinstance(weight, int) and not isinstance(weight, bool)) or (
        isinstance(weight, float) and math.isfinite(weight)
    ):
        factor *= 0.9 + 0.2 * min(1.0, max(0.0, weight))  # clamped before any float(): a huge int cannot overflow
    status = payload.get("status")
    if isinstance(status, str):
        factor *= STATUS_PRIOR.get(status.lower(), 1.0)
    return factor


def blend(candidates: list[Candidate], rerank: list[float] | None, weight: float, k: int) -> list[float] | None:
    """The reranked order combined with the fused one, by rank: ``weight / (k + rerank rank) + (1 - weight) /
    (k + fused rank)`` (zero-based ranks; candidates come in fused order). ``weight`` 1.0 keeps the reranker's
    order (its scores as they are); 0.0 keeps the fused order. Exact matches stay first. None without rerank
    scores."""
    if rerank is None:
        return None
    if weight >= 1.0:
        values = list(rerank)
    else:
        order = sorted(range(len(rerank)), key=lambda i: (-rerank[i], i))
        rerank_rank = {i: r for r, i in enumerate(order)}
        values = [weight / (k + rerank_rank[i]) + (1 - weight) / (k + i) for i in range(len(candidates))]
    # A confident exact match (the fusion's ``exact``) stays ahead of the rest: the reranker orders what the fusion
    # was unsure of, and among exact matches (both values are at most 1, the prior scales by at most 1.1 / 0.85).
    return [2.0 + v if c.exact else v for c, v in zip(candidates, values, strict=True)]


@contextlib.contextmanager
def index_errors() -> Iterator[None]:
    """A missing collection or a store that fails, as :class:`IndexUnavailable` (a 503 / a tool error)."""
    try:
        yield
    except IndexMissing as exc:
        raise IndexUnavailable(f"{exc}: {exc.remedy}", f"the index has not been built yet: {exc.remedy}") from None
    except StoreError as exc:
        raise _unavailable(exc) from None


class SearchService:
    """Built once per container; clients and connections are reused across requests."""

    def __init__(
        self,
        settings: Settings,
        secrets: Secrets,
        store: Store | None = None,
        embedder: Embedder | None = None,
        reranking: Reranking | None = None,
        expander: Expander | None = None,
        wire_providers: bool = True,
        locked_store: Callable[[], str] | None = None,
    ) -> None:
        self.settings = settings
        self.secrets = secrets
        #: what a caller is told when another process holds the embedded store (default :data:`LOCKED_STORE`):
        #: ``kbsearch mcp`` names the holder and gives an assistant's advice
        self.locked_store = locked_store or (lambda: LOCKED_STORE)
        secrets.prepare()  # the SSM client, so that no search's budget pays for building it
        self._retriever: Retriever | None = None
        if store is not None:
            from kbsearch.qdrant.embedded import EmbeddedRetriever

            self._retriever = EmbeddedRetriever(store)
        if wire_providers:
            client = shared_client()
            embedder = embedder or build_embedder(settings, secrets, client, for_queries=True)
            reranking = reranking or build_reranking(settings, secrets, client)
            expander = expander or build_expander(settings, secrets, client)
        self.embedder = embedder
        self.reranking = reranking
        self.expander = expander
        # The embedded store's client is not meant for concurrent use (kbsearch serve runs the Slack worker in a
        # thread); Qdrant Cloud calls are independent HTTP requests and take no lock.
        self._store_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self.fusion_params = FusionParams(
            lexical_weight=settings.search_lexical_weight,
            cross_language=settings.search_cross_language_weight,
            exact_confidence=settings.search_exact_confidence,
            lead_bonus=settings.search_lead_bonus,
        )
        self.retrieval = "hybrid"  # see evaluation_view
        self.max_results: int | None = None
        #: the embedding mismatch, with the metadata read it was found in
        self._signature_checked: tuple[dict[str, Any], str | None] | None = None
        #: the collection's metadata: when read, what was read, and the store's stamp before it was read
        self._metadata_read: tuple[float, dict[str, Any] | None, Hashable | None] | None = None
        #: when the metadata was last read again for a hit's links newer than it (:meth:`_restricted_links`)
        self._stale_read_at = -math.inf
        #: how long after that it may be read again for such a hit: :data:`STALE_REREAD_S`, doubled (up to
        #: :data:`SIGNATURE_TTL_S`) each time a read finds the record still older than the hit's links
        self._stale_wait = self.STALE_REREAD_S
        self._stale_base = -1  # the generation of the record those reads found
        #: the link targets decoded from that metadata, with the raw values (list, filter) they were decoded from
        self._link_targets: tuple[tuple[Any, Any], LinkTargets | None] | None = None

    @property
    def retriever_open(self) -> bool:
        """Whether this service has its retrieval call (the embedded store opened in this process)."""
        return self._retriever is not None

    @property
    def retriever(self) -> Retriever:
        """Qdrant Cloud over REST (no qdrant_client import), or the embedded store; built once per container
        (under a lock: kbsearch serve's Slack thread and a request may both be first, and one embedded store may be
        opened once)."""
        with self._open_lock:
            return self._open_retriever()

    def _open_retriever(self) -> Retriever:
        if self._retriever is None:
            try:
                self._retriever = open_retriever(self.settings, self.secrets)
            except StoreError as exc:
                if "another process has it open" in str(exc):  # Qdrant Edge: one process per store
                    raise IndexUnavailable(str(exc), self.locked_store()) from None
                raise _unavailable(exc) from None
        return self._retriever

    @contextlib.contextmanager
    def _retrieval_slot(self, deadline: Deadline) -> Iterator[None]:
        """Qdrant Cloud serves concurrent queries itself; the embedded store's client takes one at a time, and a
        search that cannot get it within its deadline answers 503 instead of waiting past its budget."""
        retriever = self.retriever
        if isinstance(retriever, QdrantRest):
            yield
            return
        if not self._store_lock.acquire(timeout=max(0.0, deadline.remaining())):
            raise IndexUnavailable(
                "the embedded store stayed busy for the whole search budget", "the search index is busy; try again"
            )
        try:
            yield
        finally:
            self._store_lock.release()

    #: How long the collection's metadata (embedding signature, link targets) is trusted before it is read again,
    #: when the store cannot tell a write without a round trip (Qdrant Cloud; an embedded store's is read again
    #: after each of its writes).
    SIGNATURE_TTL_S = 60.0

    def _embedding_mismatch(self, deadline: Deadline) -> str | None:
        """Why the index's vectors are not comparable with this service's embedder (another model, input
        format or dimensions, or a re-embed under way); None when they are or the index cannot tell."""
        if self.embedder is None:
            return None
        recorded = self._collection_metadata(deadline)
        if recorded is None:
            return None  # the retrieval call reports an unreachable index
        if self._signature_checked is None or self._signature_checked[0] is not recorded:
            self._signature_checked = (recorded, signature_mismatch(recorded, self.embedder.signature))
        return self._signature_checked[1]

    def _collection_metadata(self, deadline: Deadline, max_age_s: float | None = None) -> dict[str, Any] | None:
        """The collection's metadata (embedding signature, restricted link targets, last sync), read at most once
        per ``max_age_s`` (default ``SIGNATURE_TTL_S``), and again as soon as the store's
        :meth:`~kbsearch.qdrant.query.Retriever.metadata_stamp` changes (a sync in this process wrote it: a note's
        ``access`` changed, its links must follow at once); None when it cannot be read."""
        now = time.monotonic()
        max_age = self.SIGNATURE_TTL_S if max_age_s is None else max_age_s
        opened = self._retriever
        stamp = opened.metadata_stamp() if opened is not None else None
        cached = self._metadata_read
        if cached is None or now - cached[0] > max_age or stamp != cached[2]:
            try:
                with self._retrieval_slot(deadline):
                    recorded: dict[str, Any] | None = self.retriever.metadata(
                        max(0.05, min(self.settings.qdrant_timeout_s, deadline.remaining()))
                    )
            except (StoreError, IndexUnavailable):
                recorded = None
            cached = self._metadata_read = (now, recorded, stamp)
        return cached[1]

    def graph_fields(self, deadline: Deadline | None = None) -> tuple[bool, bool]:
        """Which fields the graph's readers match (:func:`kbsearch.links.graph_clauses`): ``graph_keys`` unless the
        collection has payload indexes and none of it (:data:`~kbsearch.qdrant.query.GRAPH_KEYS_UNINDEXED`: made
        before them, the indexer not run since the deploy; Qdrant Cloud in strict mode would refuse the filter),
        and the fields a store made before held the keys in unless every note's first chunk holds its
        ``graph_keys``, as the collection's metadata records it (:data:`~kbsearch.qdrant.query.GRAPH_KEYS_ONLY`).
        Read as the search reads the metadata (cached), within ``deadline`` (default: one Qdrant timeout); both
        when unreadable."""
        recorded = self._collection_metadata(deadline or Deadline(self.settings.qdrant_timeout_s)) or {}
        if recorded.get(GRAPH_KEYS_UNINDEXED) is True:
            return False, True
        return True, recorded.get(GRAPH_KEYS_ONLY) is not True

    def tag_keys_indexed(self, deadline: Deadline) -> bool:
        """Whether ``tag_keys`` may be filtered and faceted on: not when the collection has payload indexes and none
        of it (:data:`~kbsearch.qdrant.query.TAG_KEYS_UNINDEXED`), read as the search reads the metadata (cached)."""
        return (self._collection_metadata(deadline) or {}).get(TAG_KEYS_UNINDEXED) is not True

    def restricted_links(self, deadline: Deadline | None = None, points: Iterable[Any] = ()) -> LinkTargets | None:
        """The notes links may name, as the indexer recorded them (see :func:`kbsearch.access.visible_links`),
        read as the search reads them (cached with the collection's metadata), within ``deadline`` (default: one
        Qdrant timeout), for links of these ``points``' payloads (see :meth:`_restricted_links`)."""
        deadline = deadline or Deadline(self.settings.qdrant_timeout_s)
        return self._restricted_links(deadline, max((links_generation(p.get(LINKS_AT)) for p in points), default=0))

    #: How soon the metadata is read again for a hit whose ``links_at`` is newer than the cached metadata's
    #: generation: not more than once a second per container (a sync between giving its notes a generation and
    #: recording it, or one that failed there, would have every search read it), and, while reads find it still
    #: older, twice as long after each (up to ``SIGNATURE_TTL_S``).
    STALE_REREAD_S = 1.0

    def _restricted_links(self, deadline: Deadline, needed: int = 0) -> LinkTargets | None:
        """The recorded link targets (restricted notes' keys → their groups; the public notes' keys); None when
        not known (links are then hidden from restricted callers). Decoded again only when a read of the metadata
        finds them changed (``/health`` re-reads it every few seconds: the same values are not decoded again).

        ``needed``: the highest generation (:data:`~kbsearch.qdrant.query.LINKS_AT`) of the points whose links
        are shown, from the same answer. A sync that changes the record of a key gives its new generation to the
        notes whose links name it before it records it: a cached record of a lower one is stale for these links
        (Qdrant Cloud's, cached a minute: the search cannot tell a write without a round trip). It is read again
        (at most once per :data:`STALE_REREAD_S`), and while it is still older (the sync has not recorded it yet),
        the targets are not known."""
        recorded = self._collection_metadata(deadline) or {}
        have = links_generation(recorded.get(LINKS_GENERATION))
        if have < needed:
            if have != self._stale_base:  # another record than the one the last reads kept finding: soon again
                self._stale_base, self._stale_wait = have, self.STALE_REREAD_S
            now = time.monotonic()
            if now - self._stale_read_at >= self._stale_wait:
                self._stale_read_at = now
                recorded = self._collection_metadata(deadline, 0.0) or {}
                have = links_generation(recorded.get(LINKS_GENERATION))
                # the same record, still older: a sync between its stamps and its record, or one stopped there
                # (the next writer records it): read again less and less often, not once a second until then
                same = have == self._stale_base
                self._stale_base = have
                self._stale_wait = min(2 * self._stale_wait, self.SIGNATURE_TTL_S) if same else self.STALE_REREAD_S
            if have < needed:
                return None
        values = (recorded.get(RESTRICTED_LINKS), recorded.get(LINK_NAMES))
        cached = self._link_targets
        if cached is None or not all(a is b or a == b for a, b in zip(cached[0], values, strict=True)):
            cached = self._link_targets = (values, LinkTargets.recorded(recorded))
        return cached[1]

    def read_index(self, read: Callable[[Retriever, float], T], budget_s: float | None = None) -> T:
        """One read of the index besides a search (a note's links, the catalog, a page of notes): in the same
        slot as searches (the embedded store takes one call at a time), with ``read(retriever, timeout_s)``:
        ``timeout_s`` is the time the whole read has, shared by its calls when it makes several.
        An index that is missing or unreachable is :class:`IndexUnavailable`, as for a search."""
        deadline = Deadline(budget_s if budget_s is not None else self.settings.search_budget_s)
        with self._retrieval_slot(deadline), index_errors():
            return read(self.retriever, max(0.05, min(self.settings.qdrant_timeout_s, deadline.remaining())))

    def evaluation_view(self, retrieval: str, max_results: int | None = None) -> SearchService:
        """The documented seam for evaluation: this same service (providers, store, breakers, caches) answering
        with one retrieval mode, ``hybrid`` (the product) or ``dense`` / ``lexical`` alone, and ``max_results``
        hits beyond the API's ``top_k`` limit (evaluation depth, e.g. Recall@50). The product never calls it."""
        if retrieval not in ("hybrid", "dense", "lexical"):
            raise ValueError(f"unknown retrieval mode {retrieval!r}")
        self.retriever  # noqa: B018 - open the store first, so that every view shares this one
        view = copy.copy(self)
        view.retrieval, view.max_results = retrieval, max_results
        return view

    def collection_metadata(self, max_age_s: float | None = None) -> dict[str, Any] | None:
        """The collection's metadata as last read (by a search's signature check, or here), read again only when
        older than ``max_age_s`` (default: a minute on Qdrant Cloud, 2 s on the embedded store, a file read):
        ``/health`` reports the last sync from it without a round trip per probe. None when unreadable."""
        if max_age_s is None:
            max_age_s = 60.0 if isinstance(self.retriever, QdrantRest) else 2.0
        return self._collection_metadata(Deadline(2.0), max_age_s)

    def close(self) -> None:
        if self._retriever is not None:
            self._retriever.close()
            self._retriever = None

    def search(
        self,
        request: SearchRequest,
        request_id: str | None = None,
        remaining_s: float | None = None,
        span: Span = _no_span,
        scope: Scope | Callable[[float], Scope] | None = None,
        budget_s: float | None = None,
    ) -> SearchResponse:
        """One search, as every caller makes it (API, Slack, MCP, CLI); evaluation uses :meth:`evaluation_view`.
        ``scope``: who is asking (default: ``public`` only), or how to resolve it within a time limit (called
        after the secrets are read, so the caller mapping comes with them, within this search's budget); what it
        may not read is excluded inside the one Qdrant query, so it reaches neither the reranker nor the answer.
        ``remaining_s``: the time left before the answer is due (Lambda's), of which a second is kept;
        ``budget_s``: the most this search may take (what a JSON-RPC batch has left), besides ``SEARCH_BUDGET_S``."""
        retrieval, max_results = self.retrieval, self.max_results
        started = time.perf_counter()
        budget = self.settings.search_budget_s
        if remaining_s is not None:
            budget = min(budget, remaining_s - 1.0)
        if budget_s is not None:
            budget = min(budget, budget_s)
        deadline = Deadline(max(0.1, budget))
        # Secrets from SSM are read up front (cached afterwards), so that no stage's own budget pays for them.
        self.secrets.prefetch(deadline.within(reserve=min(self.settings.qdrant_timeout_s, 0.3 * budget)).remaining())
        if callable(scope):
            scope = scope(
                max(0.05, deadline.within(reserve=min(self.settings.qdrant_timeout_s, 0.3 * budget)).remaining())
            )
        scope = scope or Scope.public()
        # Expansion and embedding must leave the one call that cannot be skipped (retrieval) time to run.
        before_retrieval = deadline.within(reserve=min(self.settings.qdrant_timeout_s, 0.3 * budget))
        query = request.query
        stages = Stages(span)
        degraded = stages.degraded
        usage: dict[str, dict[str, int]] = {}
        logger.debug("search", extra={"query": query, "top_k": request.top_k})

        variants = [query]
        if request.expand and self.expander is not None:
            with stages.run("expand", degrade_with="expansion failed; searching with the query alone"):
                expansion = self.expander.expand(query, before_retrieval)
                variants.extend(expansion.variants)
                if expansion.tokens:
                    usage.setdefault("expansion", {})[expansion.provider] = expansion.tokens

        dense: list[list[float]] = []
        embedder_name = "none"
        mismatch = (
            self._embedding_mismatch(before_retrieval) if self.embedder is not None and retrieval != "lexical" else None
        )
        if mismatch:
            degraded.append("embed_mismatch")
            logger.warning("dense retrieval off: BM25 only", extra={"reason": mismatch})
        if self.embedder is not None and retrieval != "lexical" and not mismatch:
            with stages.run("embed", degrade_with="embedding failed; BM25 only"):
                embedded, fell_back = self.embedder.embed_one_batch(
                    [self.embedder.format_query(v) for v in variants], before_retrieval
                )
                dense = embedded.vectors
                embedder_name = embedded.provider
                usage.setdefault("embedding", {})[embedded.provider] = embedded.tokens
                if fell_back:
                    degraded.append("embed_fallback")

        filters = request.filters
        with stages.run("retrieve"):
            # how the store wants its dense searches, and which groups and group sets reach chunks by one match (cached
            # with the metadata; read outside the store's slot)
            metadata = self._collection_metadata(deadline) if dense or scope.restricted or filters.tags else None
            query_filter = filter_json(
                tags=filters.tags,
                keyed=(metadata or {}).get(TAG_KEYS_UNINDEXED) is not True,
                types=filters.type,
                statuses=filters.status,
                path_prefix=folder_spellings(filters.path_prefix),
                updated_after=filters.updated_after,
                groups=scope.query_groups(),
                reach=reach_recorded(metadata) if scope.restricted else (),
            )
            once = bool(dense) and bool((metadata or {}).get(RESCORE_ONCE))
            with self._retrieval_slot(deadline), index_errors():
                candidates = self._retrieve(query, variants, dense, query_filter, retrieval, deadline, once)

        rerank_scores: list[float] | None = None
        reranker_name = "none"
        if request.rerank and self.reranking is not None and candidates:
            with stages.run("rerank"):
                budget = self.settings.reranking.passage_tokens  # a property that builds the role: once
                docs = [passage(c.payload, budget) for c in candidates]
                outcome = self.reranking.rerank(query, docs, deadline)
                if outcome.ranked is not None:
                    rerank_scores = outcome.ranked.scores
                    reranker_name = outcome.ranked.provider
                    usage.setdefault("rerank", {})[outcome.ranked.provider] = outcome.ranked.tokens
                    if outcome.fell_back:
                        degraded.append("rerank_fallback")
                else:
                    degraded.append("rerank")
                if outcome.errors:
                    logger.warning("rerank problems", extra={"errors": outcome.errors, "hedged": outcome.hedged})

        results = self._shape(candidates, rerank_scores, request, max_results or request.top_k)
        if scope.restricted and any(hit.links for hit in results):
            restricted = self._restricted_links(deadline, max(links_generation(c.payload.get(LINKS_AT))
                                                              for c in candidates))  # fmt: skip
            results = [h.model_copy(update={"links": visible_links(h.links, restricted, scope)}) for h in results]
        timings = stages.timings
        timings["total"] = (time.perf_counter() - started) * 1000
        meta = SearchMeta(
            request_id=request_id,
            variants=variants,
            embedder=embedder_name,
            reranker=reranker_name,
            degraded=degraded,
            candidates=len(candidates),
            timings_ms={k: round(v, 1) for k, v in timings.items()},
            usage=usage,
        )
        logger.info(
            "access", extra={"caller": scope.caller, "groups": scope.query_groups(), "results": len(results),
                             "request_id": request_id},
        )  # fmt: skip
        return SearchResponse(query=query, results=results, meta=meta)

    def _retrieve(
        self,
        query: str,
        variants: list[str],
        dense: list[list[float]],
        query_filter: dict[str, Any] | None,
        retrieval: str,
        deadline: Deadline,
        rescore_once: bool = False,
    ) -> list[Candidate]:
        """The one Qdrant call. ``SEARCH_FUSION=adaptive``: every leg's candidates in one batch, fused here per query
        (:mod:`kbsearch.fusion`), each dense search rescored once when ``rescore_once``
        (:func:`kbsearch.qdrant.query.dense_search`); ``rrf`` / ``dbsf``: Qdrant's own fusion of the prefetches."""
        s = self.settings
        timeout_s = max(0.05, min(s.qdrant_timeout_s, deadline.remaining()))
        if s.search_fusion == "adaptive":
            evidence = analyse(query)
            lexical = lexical_variants(evidence, variants[1:]) if retrieval != "dense" else []
            searches, legs = batch_searches(
                dense if retrieval != "lexical" else [], lexical, query_filter, s.search_prefetch_limit,
                s.search_hnsw_ef, probes=evidence.terms if retrieval == "hybrid" else (), min_limit=s.search_candidates,
                path_probes=path_probes(evidence, self.fusion_params),
                dense_languages=translated(evidence, variants),
                rescore_once=rescore_once,
            )  # fmt: skip
            results = retrieve_legs(self.retriever, searches, legs, timeout_s)
            return fuse(results, evidence, s.search_candidates, retrieval, self.fusion_params)
        return retrieve(
            self.retriever,
            dense,
            query_vector(query) if retrieval != "dense" else None,
            query_filter,
            limit=s.search_candidates,
            prefetch_limit=s.search_prefetch_limit,
            hnsw_ef=s.search_hnsw_ef,
            rrf_k=s.rrf_k,
            bm25_weight=s.search_bm25_weight,
            fusion=s.search_fusion,
            # chunks, not notes: enough fused chunks that SEARCH_CANDIDATES notes survive grouping
            fused_limit=CHUNKS_PER_CANDIDATE * s.search_candidates,
            timeout_s=timeout_s,
        )

    def _shape(
        self,
        candidates: list[Candidate],
        rerank: list[float] | None,
        request: SearchRequest,
        top_k: int,
    ) -> list[Hit]:
        """The hits: candidates in their final order (rerank blend, prior), ``top_k`` of those over ``min_score``."""
        blended = blend(candidates, rerank, self.settings.reranking.weight, self.settings.rrf_k)
        scored = []
        for i, c in enumerate(candidates):
            base = blended[i] if blended is not None else c.fusion
            final = base * prior(c.payload) if self.settings.search_prior else base
            scored.append((final, c.fusion, i, c, None if rerank is None else rerank[i]))
        scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
        chosen = [s for s in scored if request.min_score is None or s[0] >= request.min_score][:top_k]
        hits: list[Hit] = []
        for final, fusion, _, c, rr in chosen:
            p = c.payload
            hits.append(
                Hit(
                    rank=len(hits) + 1,
                    doc_id=str(p.get("doc_id", p.get("path", ""))),
                    path=str(p.get("path", "")),
                    title=str(p.get("title", "")),
                    heading=str(p.get("heading", "")),
                    snippet=snippet(
                        str(p.get("text") or p.get("summary") or ""),
                        self.settings.snippet_chars,
                        continues=bool(p.get("text")) and p.get("chunk_index") != 0,
                    ),
                    score=round(final, 6),
                    scores=HitScores(rerank=None if rr is None else round(rr, 6), fusion=round(fusion, 6)),
                    tags=hit_list([str(t) for t in p.get("tags") or []]),
                    type=p.get("type"),
                    status=p.get("status"),
                    updated=p.get("updated"),
                    links=hit_list(payload_links(p.get("links"))),
                )
            )
        return hits


#: What a hit's ``tags`` and its ``links`` may each take of an answer (:func:`~kbsearch.schemas.wire_bytes`): the
#: indexer keeps 100 of 200 characters, 140 KB of Russian each as a Lambda's result carries it, so 20 such hits
#: were past Lambda's 6 MB (API Gateway's 502; MCP's answer holds them twice). A note's usual tens of short links
#: are far under it.
HIT_LIST_BYTES = 16 * 1024


def hit_list(items: list[str]) -> list[str]:
    """``items`` as a hit shows them: the first whose answer takes at most :data:`HIT_LIST_BYTES` (an item is 14
    bytes a character at most: an astral character's two escaped surrogates, escaped again; so the usual list is
    taken whole without encoding it)."""
    if sum(map(len, items)) * 14 + 8 * len(items) <= HIT_LIST_BYTES:
        return items
    kept: list[str] = []
    used = 2
    for item in items:
        used += wire_bytes(item) + 1
        if used > HIT_LIST_BYTES:
            break
        kept.append(item)
    return kept
