"""Qdrant's language in kb-search: the names (vectors, payload fields, point ids), the Query API JSON of a search
and of a filter, and how an answer is read back.

The search's query and every filter (the search's and the indexer's deletes) are written here once, as Qdrant's JSON
(the body of ``POST /collections/{c}/points/query``, Qdrant's filter objects), and run as they are by Qdrant Cloud
(:mod:`kbsearch.qdrant.rest`, over REST), validated into qdrant_client's models (``model_validate``;
:mod:`kbsearch.qdrant.store`) or translated into Qdrant Edge's objects (:mod:`kbsearch.qdrant.embedded`). Contract
tests check that this JSON is what qdrant_client itself sends and that its Edge translation is what Edge's own API
builds.

The answer side lives here too (:class:`Candidate`, :func:`group`, :func:`retrieve`): reading a scored point means
knowing the payload the indexer writes, which is this module's subject, and both retrievers return the same points.
No qdrant_client or httpx import here: the search path and ``/health`` stay light.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import operator
import uuid
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, Protocol

from kbsearch.errors import IndexMissing, StoreError
from kbsearch.lexical import SparseVector, tag_key
from kbsearch.qdrant.readiness import EMBEDDED_REMEDY

DENSE = "dense"  # the named dense vector (cosine)
SPARSE = "bm25"  # the named sparse vector (BM25 term weights; Qdrant applies IDF)
#: What a collection records about its dense vectors (collection metadata): model, dimensions, input format.
SIGNATURE_KEYS = ("embedding_model", "embedding_dimensions", "embedding_input_format")
#: metadata key of an embedded collection: the absolute KB folder it was built from (kb_get_note reads notes there
#: when KB_SOURCE is not set)
SOURCE_KEY = "kb_source"
#: Collection metadata: link keys naming only non-public notes → their groups (kbsearch.access.visible_links).
RESTRICTED_LINKS = "access_restricted_links"
#: Collection metadata: the link keys of the public notes, as a Bloom filter (kbsearch.links.KeyFilter), so that a
#: link naming no note can be hidden like one naming a restricted note (kbsearch.access.visible_links).
LINK_NAMES = "access_link_names"
#: Collection metadata: the generation of the recorded link targets (:data:`RESTRICTED_LINKS`, :data:`LINK_NAMES`),
#: higher each time a sync changes what they say of a key recorded before (the last one plus one, or the time in ms
#: when that is larger: it rises across a rebuild's new collection too).
LINKS_GENERATION = "access_links_generation"
#: Collection metadata: the generation a sync is about to give the notes whose links name a key it changes, written
#: before it gives it (under the ``links`` lease). Above :data:`LINKS_GENERATION`, it tells the next writer that a
#: sync stopped between those stamps and its record (killed, its store gone): the record then rises to it whether
#: or not its values change, and a full sync that changed nothing records it, so searches trust the record again.
LINKS_PENDING = "access_links_pending"
#: Payload field of every chunk: the generation of the recorded link targets its note's links need at least. A sync
#: writes its notes with the generation it read, and, before it records a new one, gives it to every note whose
#: links name a key it changes: a search that finds a hit's generation above its cached metadata's (read without a
#: round trip: the query answered it) knows the metadata is stale for that hit's links (Qdrant Cloud, where the
#: search cannot tell a write of the metadata without reading it).
LINKS_AT = "links_at"
REBUILDING = "embedding_rebuilding"  # metadata key while a re-embed runs: the vectors are of two models
#: Never stored: the size of the collection's dense vectors, which the search's read of the metadata
#: (:meth:`Retriever.metadata`) adds from the collection's own vector config in the same read (Qdrant Cloud's
#: ``GET /collections/{c}``, the Edge shard's config file). A collection recording no signature (built BM25 only,
#: or before signatures were recorded) is then still never asked for vectors of another size.
DENSE_SIZE = "dense_size"
#: Never stored: whether a dense search should rescore once per search (:func:`dense_search`) rather than in each
#: segment, which the embedded store's metadata read adds (:meth:`EdgeStore.rescore_once`); absent: in each segment.
RESCORE_ONCE = "rescore_once"
#: Metadata keys of BM25's reading: the version (:data:`kbsearch.lexical.READING_VERSION`) every chunk's sparse
#: vector is read with (none recorded: an older one), and, while a sync rewrites them (stopped by its deadline), how
#: far it got (``{"version": v, "after": the next point id to read}``: the next sync carries on from there).
BM25_READING, BM25_READING_FROM = "bm25_reading", "bm25_reading_from"
#: Metadata key, true when every note's first chunk holds its ``graph_keys`` (a collection made with them, or one
#: made before whose notes a sync has all rewritten since): the graph's readers then match ``graph_keys`` alone, not
#: the three fields a store made before held the keys in (:func:`kbsearch.links.graph_clauses`), which such a
#: collection does not index (Qdrant Cloud's strict mode refuses a filter on a field without an index; Qdrant Edge
#: reads the payload of every first chunk for it).
GRAPH_KEYS_ONLY = "graph_keys_only"
#: Metadata key: the reading of notes' bodies (:data:`kbsearch.markdown.PARSE_VERSION`) every note's chunks were
#: made with (none recorded: an older one). A full sync that finds another reads every note again (its stored dense
#: vectors reused for the chunks whose text did not change), then records it.
NOTES_READING = "notes_reading"
#: Metadata key: how far the full syncs reading every note again for a new reading got, while one run cannot read
#: them all (a large KB, a Lambda's time limit): ``{"version": the reading, "after": the last path of the notes read
#: again in path order, "missed": the notes before it that could not be read}``; the next full sync reads only the
#: notes after it and the missed ones. A record of another version than today's counts for nothing.
NOTES_READING_FROM = "notes_reading_from"
#: Never stored: true when the collection has payload indexes (Qdrant Cloud's ``payload_schema``, in the same read
#: as its metadata) and none of ``graph_keys`` (none at all is not this case): a collection made before them, between a deploy and the indexer's
#: first run after it (which creates the index and rewrites the notes). Its notes hold the old fields alone, and
#: Qdrant Cloud in strict mode refuses a filter on a field without an index: the graph's readers match the old
#: fields alone (:func:`kbsearch.links.graph_clauses`).
GRAPH_KEYS_UNINDEXED = "graph_keys_unindexed"
#: Metadata keys of the last successful indexer run (when, and full | reconcile | events | watch): /health's answer.
LAST_SYNC_AT, LAST_SYNC_KIND = "last_sync_at", "last_sync_kind"
#: The payload indexes every collection gets (field → Qdrant's payload schema type; the embedded store's the
#: :data:`FIRST_VALUE_INDEXES` only with their field's first value), one for each field a filter, a facet or an
#: ordering reads: ``path`` (a note's points: deletes, updates, reads), ``tags``/``type``/``status``/
#: ``folders``/``updated`` (the search's filters, the catalog's facets and its newest notes), ``chunk_index`` (a
#: note's first chunk, leftovers past its last), ``access``/``reach`` (every search's scope), ``graph_keys`` (the
#: link graph, :mod:`kbsearch.links`). ``doc_id`` is matched only by a lookup on a miss, so Edge has no index of it
#: (Qdrant Cloud has, :data:`CLOUD_INDEXES`): Qdrant Edge builds each index at every seal from every payload, ~0.45 s
#: of the indexing process's CPU per index at 10x the vault (BENCHMARKS.md, "Session 14"). A collection made before
#: keeps its ``doc_id`` index, and its ``path_keys``/``name_keys``/``link_keys`` ones (the graph's keys before
#: ``graph_keys``, :data:`GRAPH_KEYS_ONLY`).
#: Payload field: what a note's tags are found by, each tag case-folded with its parents (``Project/Beta`` →
#: ``project``, ``project/beta``: :func:`kbsearch.lexical.tag_keys`), as ``folders`` holds a path's; a tag filter
#: matches it beside ``tags`` (:func:`filter_json`), so a point written before it still matches as it did.
TAG_KEYS = "tag_keys"
#: Never stored: true when the collection has payload indexes (Qdrant Cloud's ``payload_schema``, read with its
#: metadata) and none of :data:`TAG_KEYS`: made before it, the indexer not run since the deploy (it creates the index
#: and rewrites the notes). A tag filter then matches ``tags`` alone (Qdrant Cloud in strict mode refuses a filter on
#: a field without an index).
TAG_KEYS_UNINDEXED = "tag_keys_unindexed"
PAYLOAD_INDEXES = {
    "path": "keyword", "tags": "keyword", TAG_KEYS: "keyword", "type": "keyword", "status": "keyword",
    "folders": "keyword", "chunk_index": "integer", "updated": "datetime", "access": "keyword",
    "graph_keys": "keyword", "reach": "keyword",
}  # fmt: skip
#: The payload indexes of the front-matter fields that the embedded store (Qdrant Edge) creates only before it writes
#: the first point holding a value for the field (not missing, null or ``[]``), not with the collection: on a KB
#: without front matter no point ever holds one, and each index costs every seal a read of every payload whatever it
#: finds (+0.16 cpu-s a seal of 10,000 points; the four, ~1.3 cpu-s of the indexing process at 10x the vault:
#: BENCHMARKS.md, "Session 25: what each payload index costs a seal"). Until a field has its index the store settles
#: every filter, facet and ordering on it itself (:func:`settled`, :func:`settled_search`): no point holds a value of
#: it. A store made before keeps its four indexes; Qdrant Cloud's collections get all of :data:`PAYLOAD_INDEXES`
#: (their seals are the server's).
FIRST_VALUE_INDEXES = frozenset({"tags", TAG_KEYS, "type", "status", "updated"})
#: Payload field: who reaches a chunk by one value (:func:`kbsearch.access.reach_of`): a restricted chunk's groups
#: and the tokens (:func:`reach_token`) of the caller group sets that share one of them, a public chunk's ``public``,
#: every group of :data:`REACH_GROUPS` and every token of :data:`REACH_SETS`. A caller holding one group besides
#: ``public``, or a set whose token is recorded, is then one ``match value`` (:func:`scope_clause`), which Qdrant
#: checks at a fraction of the cost of a ``should``; another caller of more groups has one of them matched on it in
#: place of ``public`` on ``access``.
REACH = "reach"
#: The payload indexes Qdrant keeps as tenant indexes (``is_tenant``): when it writes a segment (a seal, a merge) it
#: stores the segment's points grouped by the field's values instead of in point-id order (a hash, so at random). A
#: scope's one ``match value`` on :data:`REACH` then matches a few runs of a segment's points, not a share of them
#: scattered over it, and Qdrant Edge's filtered scan of the int8 vectors costs about what the plain scan does:
#: on the 10x vault, a caller excluding a fifth of the chunks +1.23 -> +0.39 ms in Edge's batch, its dense leg +0.54
#: -> -0.22 ms (BENCHMARKS.md, "Access scopes", session 15). The same points match, with the same scores; a
#: collection made before gets the index's new form from the indexer (``ensure_payload_indexes``) and the grouping
#: in each segment written from then on.
TENANT_INDEXES = frozenset({REACH})
#: Collection metadata: the groups every public chunk's ``reach`` holds (written by a full sync only after it gave
#: them to every public chunk; absent in a store written before ``reach``: every search then uses the matches on ``access``).
REACH_GROUPS = "access_reach"
#: Collection metadata: the group-set tokens (:func:`reach_token`) every chunk a set may read carries in its ``reach``
#: (written by a full sync only after it gave them to every such chunk; never taken back): a caller holding exactly
#: such a set (and ``public``) is then one ``match value`` on :data:`REACH`.
REACH_SETS = "access_reach_sets"
#: What joins the groups of a set in its token: a character no group name holds (``kbsearch.access.normalize_group``:
#: letters, digits, ``_ . : -``), so a token is never taken for a group, nor a group for a token.
SET_JOIN = "+"
#: The payload indexes Qdrant Cloud's collection gets besides :data:`PAYLOAD_INDEXES`: fields a filter matches only
#: now and then, which Qdrant Edge reads from the payloads instead (an index there costs every seal): ``doc_id`` (a
#: note asked for by its frontmatter id, ``BrowseService._named``, on a miss) and ``etag`` (the guard of a BM25
#: re-reading's writes, ``Indexer._reread_bm25``). Qdrant Cloud in strict mode (``strict_mode_config``'s
#: ``unindexed_filtering_retrieve`` / ``unindexed_filtering_update`` false) refuses a filter on a field without one.
CLOUD_INDEXES = {"doc_id": "keyword", "etag": "keyword"}
POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://kb-search/points")
_NAMESPACE_BYTES = POINT_NAMESPACE.bytes

logger = logging.getLogger(__name__)


def point_id(path: str, chunk_index: int) -> str:
    """A chunk's point id: uuid5 of ``path#chunk_index`` (re-running anything converges)."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{path}#{chunk_index}"))


def point_number(path: str, chunk_index: int) -> int:
    """A chunk's point id in the embedded store: the first 64 bits of :func:`point_id`'s UUID, as the unsigned
    64-bit integer id Qdrant also takes. Qdrant Edge hands a search's integer ids over as Python ints and its UUIDs
    as ``uuid.UUID`` objects, made one by one: ~0.8 ms of a search's ~700 points (0.79 → 0.45 ms in the engine, 0.50
    → 0.03 ms reading them). It orders as the UUID's string does (equal scores rank alike on Edge and Cloud); two of
    a million chunks share one with a chance of 3 in 100 million. Computed as ``uuid.uuid5`` does (SHA-1 of the
    namespace and the name, the version nibble set to 5) without making the ``UUID``: a third of the cost, once per
    point written."""
    digest = hashlib.sha1(_NAMESPACE_BYTES + f"{path}#{chunk_index}".encode(), usedforsecurity=False).digest()
    return (int.from_bytes(digest[:8], "big") & ~0xF000) | 0x5000


def signature_id(signature: dict[str, Any]) -> str:
    """A short id of an embedding signature, stored on every chunk embedded with it."""
    raw = "|".join(str(signature.get(k)) for k in SIGNATURE_KEYS)
    return uuid.uuid5(POINT_NAMESPACE, raw).hex[:12]


def folders_of(path: str) -> list[str]:
    """``a/b/c.md`` → ``["a", "a/b"]``: what ``path_prefix`` filters match."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def folders_clause(spellings: Sequence[str]) -> dict[str, Any] | None:
    """The condition of a ``path_prefix`` filter: notes in the folder, given in one or more spellings (as written,
    as its reader sees it: :func:`kbsearch.schemas.folder_spellings`); None for none."""
    folders = list(dict.fromkeys(s.strip("/") for s in spellings if s.strip("/")))
    if not folders:
        return None
    return {"key": "folders", "match": {"value": folders[0]} if len(folders) == 1 else {"any": folders}}


def index_missing(collection: str, detail: str = "", embedded: bool = False) -> IndexMissing:
    """The error of a search whose collection is not there (the indexer has not run yet), whichever store; an
    ``embedded`` store's names the command that builds it."""
    exc = IndexMissing(f"collection {collection!r} does not exist" + (f" ({detail})" if detail else ""))
    if embedded:
        exc.remedy = EMBEDDED_REMEDY
    return exc


def unreachable(why: str) -> StoreError:
    """The error of a Qdrant that did not answer (Cloud over REST or through qdrant-client)."""
    return StoreError(f"Qdrant is not reachable ({why})")


def signature_mismatch(recorded: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """Why the collection's vectors cannot be compared with ``wanted``'s (None: they can). A collection that
    records no signature (built BM25 only, or before signatures were recorded) is taken as it is, unless its
    dense vectors (``DENSE_SIZE``, when the read knew it) are of another size than ``wanted``'s: Qdrant refuses
    such a query outright (every search was a 503)."""
    if recorded.get(REBUILDING) is not None:
        return "the index is being re-embedded with another model"
    if any(recorded.get(k) is not None for k in SIGNATURE_KEYS) and any(
        recorded.get(k) != wanted.get(k) for k in SIGNATURE_KEYS
    ):
        shown = "/".join(str(recorded.get(k)) for k in SIGNATURE_KEYS)
        return f"the index was embedded with {shown}"
    size, dims = recorded.get(DENSE_SIZE), wanted.get("embedding_dimensions")
    if type(size) is int and type(dims) is int and size != dims:
        return f"the index's dense vectors have {size} dimensions, the embedder's {dims}"
    return None


def dense_size(vectors: Any) -> int | None:
    """The size of the dense vector in a collection's vector config as Qdrant spells it (``{"dense": {"size":
    1024, ...}}``: Cloud's ``config.params.vectors``, Edge's ``edge_config.json``); None when it does not say."""
    dense = vectors.get(DENSE) if isinstance(vectors, dict) else None
    size = dense.get("size") if isinstance(dense, dict) else None
    return size if type(size) is int and size > 0 else None


@dataclass(frozen=True)
class Candidate:
    """The best chunk of one note, with its fused score. ``exact``: the fusion found it a confident exact match
    (the lexical leg's evidence put it first outright); the rerank blend keeps it first."""

    payload: dict[str, Any]
    fusion: float
    exact: bool = False


def filter_json(
    tags: list[str] | None = None,
    types: list[str] | None = None,
    statuses: list[str] | None = None,
    path_prefix: str | Sequence[str] | None = None,
    updated_after: dt.date | None = None,
    groups: Sequence[str] | None = None,
    reach: Collection[str] = (),
    keyed: bool = True,
) -> dict[str, Any] | None:
    """The search's filter, the one place it is built: the request's filters and the caller's scope. ``tags``: a
    note with any of them, as Obsidian finds a tag (:func:`tags_clause`; ``keyed`` False: on ``tags`` alone, as
    written, for a collection without the :data:`TAG_KEYS` index). ``groups``
    (:meth:`kbsearch.access.Scope.query_groups`; None: unrestricted) is a clause every point must meet, on the
    chunks' ``access`` and ``reach`` fields (:func:`scope_clause`), so what the caller may not read never leaves
    Qdrant: :func:`fusion_request` puts this filter on every prefetch and on the fused query. ``reach``: the groups
    and group-set tokens the collection's metadata records (:func:`reach_recorded`).

    A scope of several matches is the filter's own ``should`` (at least one of them), beside the ``must`` of the
    request's filters, not a ``should`` nested in the ``must``: the same points, and Qdrant's engine checks it at
    ~1 ms less a search (Edge, the 10x vault, the search's batch; BENCHMARKS.md, "Access scopes", session 12)."""
    must: list[dict[str, Any]] = []
    should: list[dict[str, Any]] = []
    if groups is not None:
        clause = scope_clause(groups, reach)
        if "should" in clause:
            should = clause["should"]
        else:
            must.append(clause)
    if tags:
        must.append(tags_clause(tags, keyed))
    if types:
        must.append({"key": "type", "match": {"any": list(types)}})
    if statuses:
        must.append({"key": "status", "match": {"any": list(statuses)}})
    folders = folders_clause([path_prefix] if isinstance(path_prefix, str) else path_prefix or [])
    if folders:
        must.append(folders)
    if updated_after:
        when = (
            updated_after if isinstance(updated_after, dt.datetime) else dt.datetime.combine(updated_after, dt.time())
        )
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        must.append({"key": "updated", "range": {"gt": when.isoformat()}})
    where = ({"must": must} if must else {}) | ({"should": should} if should else {})
    return where or None


def holds_value(value: Any) -> bool:
    """Whether a payload value is one a filter can match (Qdrant's ``is_empty`` is false for it): not missing (None
    here), null or an empty list."""
    return value is not None and value != []


#: A condition that no point meets, for a prefetch whose filter :func:`settled` found matches nothing (the query
#: around it may still find points through its other prefetches): an empty ``has_id``, which Qdrant answers from its
#: id tracker.
NO_POINT: dict[str, Any] = {"must": [{"has_id": []}]}


def tags_clause(tags: Sequence[str], keyed: bool = True) -> dict[str, Any]:
    """A note with any of ``tags``, as Obsidian's ``tag:`` search finds one: case-insensitive and nested (``project``
    finds ``Project`` and ``project/alpha``), on :data:`TAG_KEYS` (:func:`kbsearch.lexical.tag_key` of each), or on
    ``tags`` as written (a point written before :data:`TAG_KEYS` matches as it did); ``keyed`` False: ``tags``
    alone."""
    written = {"key": "tags", "match": {"any": list(tags)}}
    keys = list(dict.fromkeys(k for k in map(tag_key, tags) if k))
    if not keyed or not keys:
        return written
    return {"should": [written, {"key": TAG_KEYS, "match": {"any": keys}}]}


def settled(where: dict[str, Any] | None, absent: Collection[str]) -> dict[str, Any] | bool:
    """A filter's JSON on a store where no point holds a value (:func:`holds_value`) of the fields ``absent``, with
    each condition on such a field settled: a ``match`` (but ``except``), a ``range`` or a geo condition meets no
    point, ``is_empty`` every point, ``values_count`` every point or none as a count of 0 meets its bounds (Qdrant
    counts 0 values for a missing field: ``lt 1`` meets it); ``must``, ``should`` and ``must_not`` (nested ones too)
    simplified accordingly. True: it matches every point (no filter is needed; None is that too), False: none,
    else the filter with what is left. What cannot be settled without reading payloads (``is_null``, ``except``)
    or is not a filter Qdrant's JSON knows (other keys) is kept as it is, for Qdrant to check. Qdrant Edge checks a
    condition on a field without a payload index by reading every candidate's payload: 316 ms for one dense query
    filtered on ``type`` at 10x the vault, against 0.1 ms with the index (BENCHMARKS.md, session 25)."""
    if where is None:
        return True
    if not absent or not isinstance(where, dict):
        return where
    return _settled_filter(where, frozenset(absent))


def _settled_filter(where: dict[str, Any], absent: frozenset[str]) -> dict[str, Any] | bool:
    if not set(where) <= {"must", "should", "must_not"}:  # min_should and the like: Qdrant's to check
        return where
    clauses = {name: _conditions(where.get(name)) for name in ("must", "should", "must_not")}
    verdicts = {name: [_settled_condition(c, absent) for c in conditions] for name, conditions in clauses.items()}
    if any(v is False for v in verdicts["must"]) or any(v is True for v in verdicts["must_not"]):
        return False
    if clauses["should"] and all(v is False for v in verdicts["should"]):
        return False  # none of them can be met
    if all(v is c for name in clauses for v, c in zip(verdicts[name], clauses[name], strict=True)):
        return where  # nothing settled
    out: dict[str, Any] = {}
    must = [v for v in verdicts["must"] if v is not True]
    if must:
        out["must"] = must
    if not any(v is True for v in verdicts["should"]):  # one met: the clause is
        should = [v for v in verdicts["should"] if v is not False]
        if should:
            out["should"] = should
    must_not = [v for v in verdicts["must_not"] if v is not False]
    if must_not:
        out["must_not"] = must_not
    return out or True


def _conditions(value: Any) -> list[Any]:
    """A filter's clause as a list (Qdrant takes one condition in place of a list)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _settled_condition(condition: Any, absent: frozenset[str]) -> Any:
    if not isinstance(condition, dict):
        return condition
    if any(k in condition for k in ("must", "should", "must_not")):
        return _settled_filter(condition, absent)
    empty = condition.get("is_empty")
    if isinstance(empty, dict) and empty.get("key") in absent:
        return True
    if condition.get("key") not in absent:
        return condition
    match = condition.get("match")
    if isinstance(match, dict) and "except" not in match:
        return False
    if "range" in condition or any(str(k).startswith("geo_") for k in condition):
        return False
    count = condition.get("values_count")
    if isinstance(count, dict):
        bounds = (("lt", operator.lt), ("lte", operator.le), ("gt", operator.gt), ("gte", operator.ge))
        return all(test(0, count[name]) for name, test in bounds if isinstance(count.get(name), int | float))
    return condition


def settled_search(search: dict[str, Any], absent: Collection[str]) -> dict[str, Any] | None:
    """A Query API search (or a facet's or a scroll's request) on a store where no point holds a value of the
    fields ``absent``, with its filters :func:`settled`, its prefetches' too (one that finds no point becomes
    :data:`NO_POINT`'s, its place in the fusion kept); None when it answers no point without asking: its own filter
    matches none, or it orders by such a field (Qdrant returns only the points holding the ``order_by`` field, and
    Edge refuses the ordering without its index). The same object when nothing is settled."""
    if not absent:
        return search
    query = search.get("query")
    order = query.get("order_by") if isinstance(query, dict) else None
    if (order.get("key") if isinstance(order, dict) else order) in absent:
        return None
    where = settled(search.get("filter"), absent)
    if where is False:
        return None
    prefetches = _conditions(search.get("prefetch"))
    inner = [settled_search(p, absent) if isinstance(p, dict) else p for p in prefetches]
    if where is (search.get("filter") or True) and all(i is p for i, p in zip(inner, prefetches, strict=True)):
        return search
    out = {k: v for k, v in search.items() if k != "filter"} | ({} if where is True else {"filter": where})
    if prefetches:
        out["prefetch"] = [i if i is not None else _matching_none(p) for i, p in zip(inner, prefetches, strict=True)]
    return out


def _matching_none(prefetch: dict[str, Any]) -> dict[str, Any]:
    """A prefetch that finds no point: its limit, no query, the filter :data:`NO_POINT`."""
    return {"limit": prefetch.get("limit", 10), "filter": NO_POINT}


def scope_clause(groups: Sequence[str], reach: Collection[str] = ()) -> dict[str, Any]:
    """The caller's scope as one condition: a chunk whose ``access`` holds any of ``groups``. ``reach``: what the
    collection's metadata records (:func:`reach_recorded`): the groups every public chunk's :data:`REACH` holds
    (:data:`REACH_GROUPS`) and the tokens of the group sets every chunk a set may read holds (:data:`REACH_SETS`).
    Costs on Edge, the 10x vault (BENCHMARKS.md, "Access scopes"), added to a warm search's p50:

    - a caller of two groups or more whose set's token (:func:`reach_token`) is recorded: that one ``match value``
      on :data:`REACH` (a public chunk's ``reach`` holds every recorded token; a restricted chunk's, the tokens of
      the sets that share a group with its ``access``): the same points, close to a one-group caller's cost (session
      13, load 4-9: +1.3-2.5 ms, median +1.5, against +3.3 ms for the ``should`` below on main, and +0.8-1.2 ms
      for a one-group caller in the same hour);
    - a caller of one group ``g`` that is in ``reach``: ``g`` matched on :data:`REACH` in place of ``public`` on
      ``access``, one ``match value`` (+0.6-0.8 ms against +4.1 ms for the two; session 11);
    - otherwise a ``should`` of one ``match value`` per group (:func:`filter_json` makes it the filter's own; not
      ``match any``, dearer), the first recorded group by name matched on :data:`REACH` in place of ``public`` on
      ``access`` (its other groups stay matches on ``access``): what costs is the ``should`` itself (+2.2-2.8 ms
      for two groups; sessions 7 and 12). A set with no recorded token (new to the caller mapping since the last
      full sync, past :data:`kbsearch.access.MAX_REACH_SETS`, or an indexer that could not read the mapping) is
      matched so: correct, slower.

    Never wider: a chunk's ``reach`` holds a group beyond its own only when the chunk is public, and a token only when
    the chunk is public or its ``access`` shares a group with the token's set (:func:`kbsearch.access.reach_of`),
    whatever the metadata says; a ``reach`` stale or missing (a group or set new to the index, a store from before)
    can only leave chunks out, and such a group or token is not recorded until a full sync gave it to every chunk it
    serves. A scope without ``public`` (no caller's: every :class:`kbsearch.access.Scope` holds it) is matched on
    ``access`` alone: ``reach`` would find public chunks."""
    if not groups:
        raise ValueError("a restricted scope holds at least one group")
    wanted = sorted(set(groups))
    own = [group for group in wanted if group != PUBLIC_GROUP]
    token = reach_token(own)
    if PUBLIC_GROUP in wanted and token is not None and token in reach:
        return {"key": REACH, "match": {"value": token}}
    recorded = [group for group in own if group in reach]
    if PUBLIC_GROUP in wanted and recorded:
        first = recorded[0]
        clauses = [{"key": REACH, "match": {"value": first}}]
        clauses += [{"key": "access", "match": {"value": group}} for group in own if group != first]
    else:
        clauses = [{"key": "access", "match": {"value": group}} for group in wanted]
    return clauses[0] if len(clauses) == 1 else {"should": clauses}


#: The group every caller holds (:data:`kbsearch.access.PUBLIC`; this module imports no access code).
PUBLIC_GROUP = "public"


def reach_token(groups: Collection[str]) -> str | None:
    """The token of a caller's group set in :data:`REACH`: its groups but ``public``, sorted, joined by
    :data:`SET_JOIN` (``hr+security``); None for a set of fewer than two such groups (one group is its own name)."""
    own = sorted(set(groups) - {PUBLIC_GROUP})
    return SET_JOIN.join(own) if len(own) > 1 else None


def token_groups(value: str) -> frozenset[str]:
    """The groups of a :data:`REACH` value: a token's set, or a group alone."""
    return frozenset(value.split(SET_JOIN))


def _recorded(metadata: dict[str, Any] | None, key: str) -> frozenset[str]:
    value = (metadata or {}).get(key)
    if type(value) is not list or not all(type(g) is str for g in value):
        return frozenset()
    return frozenset(value)


def reach_groups(metadata: dict[str, Any] | None) -> frozenset[str]:
    """The groups a collection's metadata says every public chunk reaches (:data:`REACH_GROUPS`); none when it
    says nothing usable (a store written before, another shape)."""
    return frozenset(g for g in _recorded(metadata, REACH_GROUPS) if SET_JOIN not in g)


def reach_sets(metadata: dict[str, Any] | None) -> frozenset[str]:
    """The group-set tokens a collection's metadata says every chunk they serve carries (:data:`REACH_SETS`); none
    when it says nothing usable."""
    return frozenset(t for t in _recorded(metadata, REACH_SETS) if reach_token(token_groups(t)) == t)


def reach_recorded(metadata: dict[str, Any] | None) -> frozenset[str]:
    """What a search matches on :data:`REACH` (:func:`scope_clause`): the recorded groups and set tokens."""
    return reach_groups(metadata) | reach_sets(metadata)


def path_filter(path: str, from_chunk: int | None = None) -> dict[str, Any]:
    """The points of one note (but its chunks ``0 .. from_chunk - 1``): what the indexer deletes. A point of the
    note whose ``chunk_index`` is no chunk of its version (a later one, or text, a fraction, none: another
    writer's) is among them; a range (``gte``) left those for ever."""
    where: dict[str, Any] = {"must": [{"key": "path", "match": {"value": path}}]}
    if from_chunk:
        where["must_not"] = [{"key": "chunk_index", "match": {"any": list(range(from_chunk))}}]
    return where


def held_request(path: str, groups: Sequence[str]) -> dict[str, Any]:
    """A scroll for the first chunk of the note at ``path`` if a caller holding ``groups`` may read it: by the
    chunk's point id (a ``has_id`` lookup, whose cost is the same whether the note is there or not, readable or not,
    one chunk or thousands), its path (the id is a hash) and the scope's clause. Empty alike for a note that is not
    indexed and one the groups may not read (the note reader's first question to a restricted caller's read)."""
    must = [{"has_id": [point_id(path, 0)]}, {"key": "path", "match": {"value": path}}, scope_clause(groups)]
    return {"filter": {"must": must}, "limit": 1, "with_payload": False, "with_vector": False}


#: How many int8 candidates a dense search rescores per chunk it returns (Qdrant's ``oversampling``), and the
#: search params that have Qdrant do it in each quantized segment.
RESCORE_OVERSAMPLING = 2
IN_SEGMENTS = {"rescore": True, "oversampling": float(RESCORE_OVERSAMPLING)}


def fusion_request(
    dense: Sequence[list[float]],
    sparse: SparseVector | None,
    query_filter: dict[str, Any] | None,
    prefetch_limit: int = 50,
    hnsw_ef: int = 256,
    rrf_k: int = 60,
    bm25_weight: float = 1.0,
    fusion: str = "rrf",
    fused_limit: int | None = None,
) -> dict[str, Any] | None:
    """A dense prefetch per query variant plus a BM25 prefetch, each filtered and limited, fused server-side with
    RRF (k = ``rrf_k``; the plain ``{"fusion": "rrf"}`` would use k = 2). The whole fused list comes back (at
    most prefetches x limit chunks) and :func:`group` keeps each note's best chunk, so every score is exactly
    Σ 1/(k + rank) over the prefetches. ``bm25_weight`` ≠ 1 weighs the BM25 prefetch against the dense ones
    (Qdrant's weighted RRF, ``{"rrf": {"k", "weights"}}``: rank r counts as r / weight). None when there is
    nothing to search with. ``fusion="dbsf"``: Qdrant's distribution-based score fusion instead (each leg's
    scores normalised by mean ± 3σ, then summed; no k, no weights). ``fused_limit``: how many fused chunks come
    back (default all of them, prefetches x limit)."""
    params = {"hnsw_ef": hnsw_ef, "quantization": dict(IN_SEGMENTS)}
    prefetch: list[dict[str, Any]] = [
        {"query": list(vector), "using": DENSE, "limit": prefetch_limit, "params": params} for vector in dense
    ]
    if sparse is not None and len(sparse):
        prefetch.append(
            {
                "query": {"indices": list(sparse.indices), "values": list(sparse.values)},
                "using": SPARSE,
                "limit": prefetch_limit,
            }
        )
    if not prefetch:
        return None
    rrf: dict[str, Any] = {"k": rrf_k}
    if bm25_weight != 1.0 and dense and len(prefetch) > len(dense):
        rrf["weights"] = [1.0] * len(dense) + [bm25_weight]
    return filtered_everywhere({
        "prefetch": prefetch,
        "query": {"fusion": "dbsf"} if fusion == "dbsf" else {"rrf": rrf},
        "limit": min(fused_limit, prefetch_limit * len(prefetch)) if fused_limit else prefetch_limit * len(prefetch),
        "with_payload": SEARCH_PAYLOAD,
        "with_vector": False,
    }, query_filter)  # fmt: skip


def dense_search(vector: Sequence[float], limit: int, hnsw_ef: int, once: bool = False) -> dict[str, Any]:
    """A dense search for ``vector``'s ``limit`` nearest chunks, every one with its exact score. By default with
    Qdrant's own rescoring (``rescore``, ``oversampling`` 2): each quantized segment ranks ``2 x limit`` chunks by
    its int8 vectors and rescores them with its floats. ``once``: two stages of one query instead, a prefetch that
    takes the ``2 x limit`` best by the int8 vectors alone (no rescoring in the segments) and the query over it that
    rescores those once with the floats (``ignore`` the quantization) and keeps ``limit``. Rescoring in each segment
    reads ``2 x limit`` floats per sealed segment: at 100x the vault (31 sealed segments, limit 200) 12,400 pages
    read at random a search against 400; when those floats are cached (read ahead: 10x) the second stage costs more
    than it saves (+0.2-0.3 ms), and on a store with no sealed segment ~0.5 ms (BENCHMARKS.md, "Rescoring once").
    The seed's server-side RRF (:func:`fusion_request`) always rescores in the segments: its ranks are the engine's
    order, and over a prefetch's ids the engine orders equal scores by no fixed rule."""
    nearest = {"nearest": list(vector)}
    if not once:
        return {
            "query": nearest,
            "using": DENSE,
            "limit": limit,
            "params": {"hnsw_ef": hnsw_ef, "quantization": dict(IN_SEGMENTS)},
        }
    return {
        "prefetch": [{"query": nearest, "using": DENSE, "limit": RESCORE_OVERSAMPLING * limit,
                      "params": {"hnsw_ef": hnsw_ef, "quantization": {"rescore": False}}}],
        "query": nearest, "using": DENSE, "limit": limit, "params": {"quantization": {"ignore": True}},
    }  # fmt: skip


def filtered_everywhere(request: dict[str, Any], query_filter: dict[str, Any] | None) -> dict[str, Any]:
    """``request`` with ``query_filter`` on the fused query and on every prefetch, nested ones included, whatever
    the fusion's shape: the scope's clause reaches every leg. Returns ``request`` (changed in place)."""
    if query_filter is None:
        return request

    def apply(node: dict[str, Any]) -> None:
        node["filter"] = _and(node.get("filter"), query_filter)
        for inner in node.get("prefetch") or []:
            apply(inner)

    apply(request)
    return request


def _and(first: dict[str, Any] | None, second: dict[str, Any]) -> dict[str, Any]:
    if first is None or first == second:
        return second
    return {"must": [first, second]}


def group(points: Sequence[dict[str, Any]], limit: int) -> list[Candidate]:
    """Fused points → one candidate per note, its best chunk, best first (equal scores by point id). A note is
    its path: two notes that share a frontmatter ``id`` are two hits; a point with no payload or no path is
    dropped (by :func:`read_leg`, and counted in the log)."""
    out: list[Candidate] = []
    seen: set[str] = set()
    for chunk in read_leg(list(points)):  # equal fused scores in point-id order, every run
        payload, score = chunk.payload, chunk.score
        doc = payload["path"]
        if doc in seen:
            continue
        seen.add(doc)
        out.append(candidate(payload, score))
        if len(out) == limit:
            break
    return out


#: The payload fields a candidate is made of, as the indexer writes them: (field, may be null, cut at
#: :data:`MAX_FIELD_CHARS`); ``tags`` is a list of strings, ``links`` one string (:func:`stored_links`) or, in points
#: written before, a list of strings.
_TEXT_FIELDS = (
    ("path", False, False), ("doc_id", False, True), ("title", False, True), ("heading", False, True),
    ("text", False, False), ("summary", True, False), ("type", True, True), ("status", True, True),
    ("updated", True, True),
)  # fmt: skip
_ABSENT = object()


def candidate(payload: dict[str, Any], fusion: float, exact: bool = False) -> Candidate:
    """A candidate of a chunk's payload, checked and bounded in one pass: StoreError when a field is not what the
    indexer writes (a title that is a number, a tag list of objects); each field cut to its bound (the same dict
    when none is over it, the indexer's payloads; else a copy with the cuts)."""
    get = payload.get
    cuts: dict[str, Any] = {}
    for key, nullable, bounded in _TEXT_FIELDS:
        value = get(key, _ABSENT)
        if type(value) is str:
            if bounded and len(value) > MAX_FIELD_CHARS:
                cuts[key] = value[:MAX_FIELD_CHARS]
        elif value is not _ABSENT and not (nullable and value is None) and not isinstance(value, str):
            raise _not_the_api()
    tags = get("tags", _ABSENT)
    if tags is not _ABSENT:
        if type(tags) is not list or (tags and not set(map(type, tags)) <= _STR):  # C-level: 100 tags, no loop
            raise _not_the_api()
        if len(tags) > MAX_LIST_ITEMS or (tags and max(map(len, tags)) > MAX_ITEM_CHARS):
            cuts["tags"] = [i[:MAX_ITEM_CHARS] for i in tags[:MAX_LIST_ITEMS]]
    links = get("links", _ABSENT)
    if type(links) is str:  # the indexer's form (:func:`stored_links`); the bounds apply to its targets
        if links.count(LINK_SEPARATOR) >= MAX_LIST_ITEMS or (
            len(links) > MAX_ITEM_CHARS and max(map(len, links.split(LINK_SEPARATOR))) > MAX_ITEM_CHARS
        ):
            cuts["links"] = _bounded_links(links.split(LINK_SEPARATOR))
    elif links is not _ABSENT:  # a list of targets: points written before links were one string
        if type(links) is not list or (links and not set(map(type, links)) <= _STR):
            raise _not_the_api()
        if len(links) > MAX_LIST_ITEMS or (links and max(map(len, links)) > MAX_ITEM_CHARS):
            cuts["links"] = _bounded_links(links)
    return Candidate({**payload, **cuts} if cuts else payload, fusion, exact)


_STR = {str}


def _bounded_links(targets: list[str]) -> list[str]:
    """The first :data:`MAX_LIST_ITEMS` targets, a target over :data:`MAX_ITEM_CHARS` dropped, never cut: the
    restricted-link check (:func:`kbsearch.access.visible_links`) matches whole names, and the first 200 characters
    of a restricted note's long name passed it."""
    return [t for t in targets[:MAX_LIST_ITEMS] if len(t) <= MAX_ITEM_CHARS]


#: What joins a note's link targets in its chunks' ``links`` payload field: a wiki-link target never holds a
#: newline (:mod:`kbsearch.notes` reads links line by line, and its link pattern excludes one).
LINK_SEPARATOR = "\n"


def stored_links(targets: Sequence[str]) -> str | None:
    """A note's link targets as its chunks' payloads keep them: one string, the targets joined by
    :data:`LINK_SEPARATOR` (Edge's binding and each payload index at a seal read one value, not one per target:
    BENCHMARKS.md, "Session 21"), the first :data:`MAX_LIST_ITEMS` of at most :data:`MAX_ITEM_CHARS` characters (a
    longer one is dropped, never cut); None when there are none (the field is then left out)."""
    kept = [t for t in targets if len(t) <= MAX_ITEM_CHARS][:MAX_LIST_ITEMS]
    return LINK_SEPARATOR.join(kept) if kept else None


def payload_links(value: Any) -> list[str]:
    """A chunk's link targets from its payload's ``links``, as a candidate holds it: the joined string the indexer
    writes (:func:`stored_links`), a list (points written before, and a candidate's bounded copy), or nothing."""
    if type(value) is str:
        return value.split(LINK_SEPARATOR) if value else []
    return [str(link) for link in value or ()]


def links_generation(value: object) -> int:
    """A generation of the link targets as the metadata (:data:`LINKS_GENERATION`) or a payload
    (:data:`LINKS_AT`) holds it: a non-negative integer; anything else (none recorded: a store written before) is
    0."""
    return value if type(value) is int and value > 0 else 0


def _not_the_api() -> StoreError:
    return StoreError("Qdrant's answer is not what the API returns")


#: What an answer carries of a point, at most (the indexer writes far less): a store that holds a 10 MB title or
#: 100,000 tags cannot make an answer over Lambda's 6 MB (a 500 from the runtime); ``text`` and ``summary`` are
#: cut where they are read (rerank passages and snippets read budget x 16 characters); a point whose path is
#: longer than any the indexer writes is dropped (:func:`read_leg`).
MAX_FIELD_CHARS, MAX_LIST_ITEMS, MAX_ITEM_CHARS, MAX_PATH_CHARS = 2000, 100, 200, 1024


class Retriever(Protocol):
    def metadata(self, timeout_s: float) -> dict[str, Any]:
        """The collection's metadata, with the size of its dense vectors as ``DENSE_SIZE`` when known."""
        ...

    def metadata_stamp(self) -> Hashable | None:
        """What changes whenever the collection's metadata is written, read with no round trip to Qdrant: a search
        that cached the metadata reads it again when the stamp differs (a sync changed a note's ``access``: the
        link targets must follow it at once). None: not known without a round trip (Qdrant Cloud)."""
        ...

    def query(self, request: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]: ...

    def scroll(self, request: dict[str, Any], timeout_s: float) -> tuple[list[dict[str, Any]], str | None]:
        """``POST /collections/{c}/points/scroll`` (filter, limit, offset, with_payload) → the points (id,
        payload) and the next page's offset (None: last page)."""
        ...

    def facet(self, request: dict[str, Any], timeout_s: float) -> list[tuple[Any, int]]:
        """``POST /collections/{c}/facet`` (key, filter, limit, exact) → (value, count), most frequent first."""
        ...

    def query_batch(self, searches: list[dict[str, Any]], timeout_s: float) -> list[list[dict[str, Any]]]: ...

    def query_legs(
        self, searches: list[dict[str, Any]], bare: Sequence[bool], timeout_s: float
    ) -> list[list[ScoredChunk]]:
        """:meth:`query_batch`'s answers read into each search's scored chunks (:func:`read_legs`; ``bare``: the
        searches that asked for ids and scores alone). An engine in this process reads its own points."""
        ...

    def close(self) -> None: ...


def retrieve(
    retriever: Retriever,
    dense: Sequence[list[float]],
    sparse: SparseVector | None,
    query_filter: dict[str, Any] | None,
    limit: int = 50,
    prefetch_limit: int = 50,
    hnsw_ef: int = 256,
    rrf_k: int = 60,
    timeout_s: float = 10.0,
    bm25_weight: float = 1.0,
    fusion: str = "rrf",
    fused_limit: int | None = None,
) -> list[Candidate]:
    """The search's one retrieval call: the fused query, then one candidate per note (best first)."""
    request = fusion_request(
        dense, sparse, query_filter, prefetch_limit, hnsw_ef, rrf_k, bm25_weight, fusion, fused_limit
    )
    if request is None:
        return []
    return group(retriever.query(request, timeout_s), limit)


# -- the adaptive fusion's one call: each leg's candidates with their own scores (``/points/query/batch``) ------
#: What every search of the batch (and the fused query) returns of a chunk's payload, one place: exactly what the
#: search reads of a candidate — the fusion (path, doc_id, lang; title and aliases: a query naming the note), the
#: ranking prior (ai_weight, status), the reranker's passage (title, heading, text) and a hit (summary, tags, type,
#: updated, links) — so the one Qdrant call brings every field an answer needs and none it does not (the index's bookkeeping: etags, hashes, access
#: groups, link keys, free metadata; ``chunk_index``: a note's first chunk is no continuation, :func:`kbsearch.search.
#: snippet`). BM25 tails, rewrites' dense searches and most probes carry none (ids and
#: scores: their chunks count through the payloads the other legs carry, :func:`kbsearch.fusion.resolved`).
SEARCH_PAYLOAD: dict[str, Any] = {"include": [
    "path", "doc_id", "lang", "ai_weight", "status", "title", "aliases", "heading", "text", "summary", "tags", "type",
    "updated", "links", LINKS_AT, "chunk_index",
]}  # fmt: skip
#: Ranks a BM25 leg's tail repeats of its head (ties at the boundary).
TAIL_OVERLAP = 8
#: Query terms probed for their best single-term scores (how rare each is, whether the index has it at all, which
#: notes hold it), and how many chunks each probe returns (every holder of a rare term is seen); what a probe of a
#: lookup's required term reads of each (:func:`kbsearch.fusion.path_probes`; the others: ids and scores): the whole
#: search payload, so that an exact match no other leg brought is answered with the chunk that holds its terms
#: (Qdrant reads a point's whole payload to return even its path).
MAX_PROBES = 8
PROBE_DEPTH = 8
PROBE_PAYLOAD = SEARCH_PAYLOAD


@dataclass(frozen=True)
class Leg:
    """One search of the batch. ``kind``: ``dense`` (a query variant's vector; ``language``: a translation's,
    :func:`kbsearch.fusion.translated`), ``lexical`` (a variant's BM25 terms; ``language`` is the variant's), ``lexical-tail`` (the same BM25 search's next chunks, ids and scores
    only), ``probe`` (one BM25 term alone, its best :data:`PROBE_DEPTH` chunks,
    ids and scores, or their paths: ``term``)."""

    kind: str
    variant: int = 0
    language: str | None = None
    term: int | None = None
    limit: int | None = None  # the chunks asked for: a leg that returns fewer holds every match there is
    bare: bool = False  # ids and scores only (no payload): its chunks count through another leg's payloads


class ScoredChunk(NamedTuple):
    """A leg's chunk: its point id, its score, its payload (empty for a bare leg). A tuple: a search reads
    hundreds of them. The id is a string or an integer as the answer's JSON has it, the embedded store's integer id
    (:func:`point_number`), or the integer of a ``uuid.UUID`` the embedded engine hands over for a store written
    before (each orders as the UUID's string does, and hashes and compares in C: a string made of it would cost a
    third of what a point costs)."""

    id: int | str
    score: float
    payload: dict[str, Any]


#: A :class:`ScoredChunk` of an ``(id, score, payload)`` tuple, made at C level (a search makes ~700 of them).
scored_chunk = partial(tuple.__new__, ScoredChunk)


def scoped(searches: list[dict[str, Any]], query_filter: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every search of the batch under the request's filter (the caller's scope included): the one place a
    filter reaches the legs, so that nothing outside it is ranked, probed or counted."""
    for search in searches:
        filtered_everywhere(search, query_filter)
    return searches


def batch_searches(
    dense: Sequence[list[float]],
    lexical: Sequence[tuple[SparseVector, str | None]],
    query_filter: dict[str, Any] | None,
    prefetch_limit: int = 50,
    hnsw_ef: int = 256,
    probes: Sequence[int] = (),
    min_limit: int = 50,
    path_probes: Collection[int] = (),
    dense_languages: Sequence[str | None] = (),
    rescore_once: bool = False,
) -> tuple[list[dict[str, Any]], list[Leg]]:
    """The searches of the one batch call (``POST /collections/{c}/points/query/batch``, ``{"searches": [...]}``):
    a dense search per query variant (the query's ``prefetch_limit`` chunks with their payloads, each rewrite's
    ``min_limit`` as ids and scores), a BM25 search per lexical variant (its language recorded for the fusion;
    half of ``prefetch_limit`` chunks with payloads beside a dense leg, then ids and scores on to twice the limit;
    all of it with payloads without a dense leg),
    and a one-term BM25 probe (its best :data:`PROBE_DEPTH` chunks, ids and scores; with their paths for a term in
    ``path_probes``: :func:`kbsearch.fusion.path_probes`) per term in ``probes``; each
    under ``query_filter``. ``rescore_once``: each dense search's form (:func:`dense_search`)."""
    searches: list[dict[str, Any]] = []
    legs: list[Leg] = []
    # the query's own vector brings its chunks' payloads; a rewrite's (its candidates overlap the query's) ranks
    # ``min_limit`` chunks as ids and scores, which raise the dense score of the notes the other legs carry
    for i, vector in enumerate(dense):
        limit = prefetch_limit if i == 0 else min(min_limit, prefetch_limit)
        searches.append({**dense_search(vector, limit, hnsw_ef, rescore_once),
                         "with_payload": SEARCH_PAYLOAD if i == 0 else False, "with_vector": False})  # fmt: skip
        language = dense_languages[i] if i < len(dense_languages) else None
        legs.append(Leg("dense", i, language, limit=limit, bare=i > 0))
    # A BM25 leg brings half as many payloads when a dense leg brings the rest, then ranks on to twice the prefetch
    # limit as ids and scores only (its *tail*: the same search with an ``offset``, cheap, since the payloads are
    # what costs): a tail chunk whose payload another leg carries still lends its note its BM25 evidence (a
    # paraphrase's words reach deep into a BM25 ranking).
    lexical_limit = max(1, prefetch_limit // 2) if dense else prefetch_limit
    for i, (sparse, language) in enumerate(lexical):
        if len(sparse):
            searches.append({"query": {"nearest": {"indices": list(sparse.indices), "values": list(sparse.values)}},
                             "using": SPARSE, "limit": lexical_limit, "with_payload": SEARCH_PAYLOAD,
                             "with_vector": False})  # fmt: skip
            legs.append(Leg("lexical", i, language, limit=lexical_limit))
            if dense:  # without a dense leg no payload could name a tail's chunks
                # the tail starts a few ranks inside the head: chunks tied at the boundary (engines order equal
                # scores as they like, search by search) are in one or the other, whatever each search does
                start = max(0, lexical_limit - TAIL_OVERLAP)
                tail = 2 * prefetch_limit - start
                searches.append({**searches[-1], "offset": start, "limit": tail, "with_payload": False})
                legs.append(Leg("lexical-tail", i, language, limit=tail, bare=True))
    for term in probes[:MAX_PROBES]:
        named = term in path_probes
        searches.append({"query": {"nearest": {"indices": [term], "values": [1.0]}}, "using": SPARSE,
                         "limit": PROBE_DEPTH, "with_payload": PROBE_PAYLOAD if named else False,
                         "with_vector": False})  # fmt: skip
        legs.append(Leg("probe", term=term, limit=PROBE_DEPTH, bare=not named))
    return scoped(searches, query_filter), legs


def read_leg(points: object, bare: bool = False) -> list[ScoredChunk]:
    """One search's answer → scored chunks, best first, ties broken by point id (the engines return equal scores
    in no fixed order: the same search must rank the same way every time). ``bare``: a search that asked for no
    payload (ids and scores are its answer).

    Each point is checked as the Query API returns it: an answer of the wrong shape (a point that is not an
    object, a null, string or non-finite score, a payload that is not an object, a path that is not a string)
    means the index is not usable (StoreError). A point with no payload or no path is dropped (nothing a hit could
    name or open; counted in the log), as is one whose path is longer than any the indexer writes (a bare leg
    keeps its id and score). The payload's other fields are checked where a candidate is made of it
    (:func:`candidate`): a search reads hundreds of chunks and answers with a few dozen. One loop, no call per
    point: a search reads ~700 of them."""
    if not isinstance(points, list):
        raise _not_the_api()
    out: list[ScoredChunk] = []
    dropped = 0
    finite = math.isfinite
    for point in points:
        if type(point) is not dict:
            raise _not_the_api()
        score = point.get("score")
        if type(score) is not float:  # what every engine sends; anything else is looked at closely
            score = _number(score)
        if not finite(score):
            raise _not_the_api()
        payload = point.get("payload")
        if type(payload) is dict and payload:
            path = payload.get("path")  # what every leg reads of a chunk (a note is its path)
            if type(path) is not str:
                if path is not None:
                    raise _not_the_api()
                if not bare:
                    dropped += 1
                    continue
            elif not path or len(path) > MAX_PATH_CHARS:  # no note the indexer writes has such a path
                if not bare:
                    dropped += 1
                    continue
                payload = {}
        elif payload is None or type(payload) is dict:  # a search that asked for ids and scores alone
            if not bare:
                dropped += 1
                continue
            payload = {}
        else:
            raise _not_the_api()
        pid = point.get("id")  # Edge's uuid.UUID as its integer, a string or an integer id as it is
        out.append(ScoredChunk(pid.int if type(pid) is uuid.UUID else pid if type(pid) is str or type(pid) is int
                               else str(pid), score, payload))  # fmt: skip
    return leg_read(out, dropped)


def leg_read(out: list[ScoredChunk], dropped: int) -> list[ScoredChunk]:
    """A leg's chunks once read, ``dropped`` points without a usable path left out (logged): in rank order, ties
    broken by point id."""
    if dropped:
        logger.warning("points without a payload path dropped", extra={"dropped_points": dropped})
    scores = [c.score for c in out]
    if any(map(operator.le, scores, scores[1:])):  # the engine's order has ties (or is not its order): fix it
        ranked(out)
    return out


def read_legs(answers: object, bare: Sequence[bool]) -> list[list[ScoredChunk]]:
    """A batch's answers as the Query API returns them (one point list per search) → each search's chunks
    (:func:`read_leg`)."""
    if not isinstance(answers, list) or len(answers) != len(bare):
        raise _not_the_api()
    return [read_leg(points, b) for points, b in zip(answers, bare, strict=True)]


_BY_ID, _BY_SCORE = operator.itemgetter(0), operator.itemgetter(1)


def ranked(chunks: list[ScoredChunk]) -> None:
    """Sort ``chunks`` in place by :func:`rank_key`: two stable sorts on C-level keys (by id, then by score, best
    first: equal scores keep their id order), a tenth of the cost of a Python key per chunk (a store of copies ties
    on every score); ids of two kinds (strings beside UUIDs' integers) by :func:`rank_key` itself."""
    try:
        chunks.sort(key=_BY_ID)
    except TypeError:
        chunks.sort(key=rank_key)
        return
    chunks.sort(key=_BY_SCORE, reverse=True)


def _number(score: object) -> float:
    """A score that is not a float as JSON decoding makes it: an int is one (as a float), anything else is not."""
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise _not_the_api()
    try:
        return float(score)  # an integer too large for a float raises here, not in the ranking
    except OverflowError:
        raise _not_the_api() from None


def rank_key(chunk: ScoredChunk) -> tuple[float, bool, int | str]:
    """Best first, equal scores by point id (a UUID's integer orders as its string; a store that mixes UUIDs with
    integer ids has its string ids after them, never compared with them)."""
    return -chunk.score, type(chunk.id) is str, chunk.id


def retrieve_legs(
    retriever: Retriever, searches: list[dict[str, Any]], legs: list[Leg], timeout_s: float
) -> list[tuple[Leg, list[ScoredChunk]]]:
    """The search's one retrieval call for the adaptive fusion: every leg's candidates with its own scores."""
    if not searches:
        return []
    read = retriever.query_legs(searches, [leg.bare for leg in legs], timeout_s)
    if not isinstance(read, list) or len(read) != len(searches):
        raise _not_the_api()
    return list(zip(legs, read, strict=True))
