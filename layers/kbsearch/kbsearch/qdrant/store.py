"""The indexer's store: the collection's schema, the index's view of each note, and per-note writes.

:class:`Store` runs them on qdrant-client: Qdrant Cloud for the indexer (:meth:`Store.cloud`; the search reaches
Cloud over REST instead, :mod:`kbsearch.qdrant.rest`) and qdrant-client's local mode, the embedded store's fallback
where the platform has no Qdrant Edge wheel. :class:`kbsearch.qdrant.embedded.EdgeStore` is the same seam on Qdrant
Edge. Which one a process gets is decided once, by :func:`kbsearch.qdrant.open_store`.
Points: id = uuid5(path + "#" + chunk_index); named vectors ``dense`` (cosine) and ``bm25`` (sparse, IDF).
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import warnings
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast
from urllib.parse import urlsplit

from kbsearch.errors import LeaseLostError, StoreError
from kbsearch.lexical import SparseVector
from kbsearch.links import GRAPH_KEYS, NAME_KEY, OLD_GRAPH_FIELDS
from kbsearch.qdrant.query import (
    CLOUD_INDEXES,
    DENSE,
    PAYLOAD_INDEXES,
    PUBLIC_GROUP,
    REACH,
    SET_JOIN,
    SPARSE,
    TAG_KEYS,
    TENANT_INDEXES,
    ScoredChunk,
    dense_size,
    path_filter,
    point_id,
    read_legs,
    token_groups,
    unreachable,
)

if TYPE_CHECKING:  # qdrant_client (~0.5 s to import) is loaded only by the stores that use it
    import numpy as np
    from numpy.typing import NDArray
    from qdrant_client import QdrantClient

    from kbsearch.config import Secrets, Settings
    from kbsearch.providers.resilience import Deadline

#: The first chunk's payload field that says the note's link-graph keys are stored as they are now (one prefixed
#: list, :data:`kbsearch.links.GRAPH_KEYS`): a first chunk without it (indexed before the graph was stored, or before
#: its three fields were one) has its note rewritten by the next sync.
GRAPH_FIELD = GRAPH_KEYS
#: The field a store made before ``graph_keys`` holds a note's title and aliases in as link keys (a note not yet
#: rewritten: the names an event run finds its links by, beside the ``n:`` keys of ``graph_keys``).
NAME_FIELD = OLD_GRAPH_FIELDS[NAME_KEY]
STATE_FIELDS = ["path", "etag", "chunk_index", "n_chunks", "dense", "doc_id", "embedding", "access", "access_from",
                REACH, GRAPH_FIELD, TAG_KEYS]  # fmt: skip
#: Payload field: a hash of what a chunk's dense vector embeds (model signature + embedded text); an event-driven
#: run reuses the stored vector of a chunk whose hash is unchanged instead of embedding it again.
EMBED_HASH = "embed_hash"

logger = logging.getLogger(__name__)

_writes = itertools.count(1)
_writes_lock = threading.Lock()
_written = [0]  # the last of them


def metadata_written() -> None:
    """Note that this process wrote a collection's metadata (any store's: a search reads it again, whichever it
    cached; :meth:`Store.metadata_stamp`)."""
    with _writes_lock:
        _written[0] = next(_writes)


class SchemaMismatchError(StoreError):
    """The collection exists with another schema; writing into it would corrupt the index."""


@contextmanager
def storage_errors(action: str) -> Iterator[None]:
    """Any failure of the store while ``action`` (a full disk, the embedded store's sqlite errors, a Qdrant 5xx
    or a dropped connection) → :class:`StoreError` naming what failed, for the sync report."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise StoreError(f"{action} failed: {type(exc).__name__}" + (f": {detail}" if detail else "")) from None


_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="Store")


def writes(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """A method of the store that writes: refused before it sends anything once the run that opened the store no
    longer holds its index lease (:meth:`Store.may_write`). Every write of every store kind is one of these, so a
    write path of the indexer needs no lease check of its own (rel35: there were a dozen, one per write site)."""

    @functools.wraps(method)
    def guarded(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        self.may_write(method.__name__)
        return method(self, *args, **kwargs)

    return guarded


#: What Qdrant says of a write it has applied (``wait=true``: ``completed``; ``acknowledged``: taken into its
#: write-ahead log). Anything else (``wait_timeout``: accepted, not yet applied; a status it has no word for)
#: is not a write done: the run stops there and the next one finds the note unwritten.
APPLIED = frozenset({"completed", "acknowledged"})


def applied(result: object, action: str) -> None:
    """Raise :class:`StoreError` unless ``result`` (qdrant-client's answer to a write: an ``UpdateResult``, a list
    of them for a batch, ``True`` for a collection update) says Qdrant applied the write."""
    if result is True:
        return
    results = result if isinstance(result, list) and result else [result]
    for each in results:
        status = getattr(each, "status", None)
        value = getattr(status, "value", status)
        if value not in APPLIED:
            said = f"status {str(value)[:40]!r}" if value is not None else f"{type(each).__name__} {str(each)[:40]!r}"
            raise StoreError(f"{action} failed: Qdrant did not say it was applied ({said})")


def next_page(offset: Any, seen: set[str]) -> Any:
    """A scroll's next-page offset as Qdrant answered it (None: the last page), ``seen`` holding the offsets the
    same scroll was given before: a page named again would be read for ever (Qdrant's pages advance through the
    ids), so that is a :class:`StoreError`."""
    if offset is None:
        return None
    key = repr(offset)
    if key in seen:
        raise StoreError("reading the index failed: Qdrant's scroll named a page it had already given (the same "
                         "offset again)")  # fmt: skip
    seen.add(key)
    return offset


def check_vectors(
    collection: str, dimensions: int, remedy: str, *, dense: dict[str, Any] | None, sparse: dict[str, Any] | None
) -> None:
    """:class:`SchemaMismatchError` unless the collection's vectors are kb-search's: ``dense`` and ``sparse`` are
    the named vectors' parameters as Qdrant's JSON spells them (None: no such vector), from qdrant-client's
    collection info or an Edge shard's config; ``remedy`` says what to delete instead of using another name."""
    problems = []
    if dense is None:
        problems.append(f"no dense vector named {DENSE!r}")
    else:
        if dense.get("size") != dimensions:
            problems.append(f"dense size {dense.get('size')} but EMBEDDING_DIMENSIONS={dimensions}")
        if dense.get("distance") != "Cosine":
            problems.append(f"dense distance {dense.get('distance')} (expected Cosine)")
    if sparse is None:
        problems.append(f"no sparse vector named {SPARSE!r}")
    elif str(sparse.get("modifier") or "").lower() != "idf":
        problems.append("sparse vector without the IDF modifier")
    if problems:
        raise SchemaMismatchError(
            f"collection {collection!r} does not match kb-search's schema: {'; '.join(problems)}. "
            f"Use another QDRANT_COLLECTION, or {remedy} and run a full sync."
        )


@dataclass
class NoteState:
    """What the index holds for one path: chunk indexes per etag, and what each chunk says the note has."""

    chunks: dict[str, set[int]] = field(default_factory=dict)
    n_chunks: dict[str, set[int]] = field(default_factory=dict)
    dense: bool = True
    points: int = 0
    doc_ids: dict[str, str] = field(default_factory=dict)  # etag → the frontmatter id (or path) it was indexed with
    embeddings: set[str] = field(default_factory=set)  # signature ids of the chunks' vectors
    accesses: set[tuple[tuple[str, ...], str] | None] = field(default_factory=set)  # (groups, from) per chunk
    graph: bool = True  # False: a first chunk written before the link graph was stored
    tagged: bool = True  # False: a first chunk written before its tags' keys were (``tag_keys``)

    def add(
        self, etag: str, chunk_index: int, n_chunks: int, dense: bool, doc_id: str | None = None, embedding: str = "",
        access: tuple[tuple[str, ...], str] | None = None,
    ) -> None:  # fmt: skip
        self.accesses.add(access)
        self.chunks.setdefault(etag, set()).add(chunk_index)
        self.n_chunks.setdefault(etag, set()).add(n_chunks)
        self.dense = self.dense and dense
        self.embeddings.add(embedding)
        self.points += 1
        if doc_id is not None:
            self.doc_ids[etag] = doc_id

    def access(self) -> tuple[tuple[str, ...], str] | None:
        """The groups every chunk records and where they came from; None when a chunk records none (indexed
        before access scopes) or the chunks disagree (a payload update cut short)."""
        return next(iter(self.accesses)) if len(self.accesses) == 1 else None

    def doc_id(self) -> str | None:
        """The id of the complete version, if there is one."""
        etag = self.complete_etag()
        return self.doc_ids.get(etag) if etag is not None else None

    def complete_etag(self) -> str | None:
        """The etag whose chunks 0..n-1 are all present (a whole version of the note), if there is one."""
        for etag, indexes in self.chunks.items():
            ns = self.n_chunks[etag]
            if len(ns) == 1:
                (n,) = ns
                if indexes == set(range(n)):
                    return etag
        return None

    def has_orphans(self) -> bool:
        etag = self.complete_etag()
        return etag is None or self.points != len(self.chunks[etag])

    def encode(self) -> list[Any]:
        """As JSON values (the embedded store's saved state, :meth:`decode`): a set of chunk indexes 0..n-1 is n."""
        accesses = sorted(([list(a[0]), a[1]] if a is not None else None for a in self.accesses), key=repr)
        return [
            {etag: _ints(indexes) for etag, indexes in self.chunks.items()},
            {etag: sorted(ns) for etag, ns in self.n_chunks.items()},
            self.dense, self.points, self.doc_ids, sorted(self.embeddings), accesses, self.graph, self.tagged,
        ]  # fmt: skip

    @classmethod
    def decode(cls, value: Any) -> NoteState:
        """:meth:`encode`'s value back; ValueError (or TypeError) for anything else."""
        chunks, n_chunks, dense, points, doc_ids, embeddings, accesses, graph, tagged = value
        if not (isinstance(chunks, dict) and isinstance(n_chunks, dict) and isinstance(doc_ids, dict)):
            raise ValueError("not a note's state")
        if not (type(dense) is bool and type(graph) is bool and type(tagged) is bool and type(points) is int
                and points >= 0):  # fmt: skip
            raise ValueError("not a note's state")
        if chunks.keys() != n_chunks.keys() or not all(isinstance(v, str) for v in (*doc_ids.values(), *embeddings)):
            raise ValueError("not a note's state")
        return cls(
            chunks={str(e): _int_set(v) for e, v in chunks.items()},
            n_chunks={str(e): {_int(n) for n in ns} for e, ns in n_chunks.items()},
            dense=dense, points=points, doc_ids=dict(doc_ids), embeddings=set(embeddings),
            accesses={None if a is None else _access(a) for a in accesses}, graph=graph, tagged=tagged,
        )  # fmt: skip


def _ints(values: set[int]) -> int | list[int]:
    n = len(values)
    return n if n and min(values) == 0 and max(values) == n - 1 else sorted(values)


def _int(value: Any) -> int:
    if type(value) is not int:
        raise ValueError("not an integer")
    return value


def _int_set(value: Any) -> set[int]:
    return set(range(_int(value))) if type(value) is int else {_int(v) for v in value}


def _access(value: Any) -> tuple[tuple[str, ...], str]:
    groups, source = value
    if not isinstance(source, str) or not all(isinstance(g, str) for g in groups):
        raise ValueError("not an access record")
    return tuple(groups), source


def add_state(state: dict[str, NoteState], p: dict[str, Any]) -> None:
    """Add one point's state fields (``STATE_FIELDS``) to ``state``."""
    path = p.get("path")
    if not isinstance(path, str):
        return
    doc_id = p.get("doc_id")
    # a chunk_index or n_chunks the indexer never writes (text, null, a fraction, a boolean: another writer's) is
    # no chunk of any version: the note is repaired or rewritten, and that point deleted (it stopped every sync)
    index, count = p.get("chunk_index", -1), p.get("n_chunks", 0)
    if type(index) is not int or type(count) is not int:
        index, count = -1, 0
    state.setdefault(path, NoteState()).add(
        str(p.get("etag", "")), index, count,
        bool(p.get("dense")), doc_id if isinstance(doc_id, str) else None, str(p.get("embedding", "")),
        recorded_access(p),
    )  # fmt: skip
    if index == 0 and GRAPH_FIELD not in p:
        state[path].graph = False
    if index == 0 and TAG_KEYS not in p:
        state[path].tagged = False


#: Notes one payload update operation names (a ``match any`` of this many paths), and operations per batch request.
PATHS_PER_OPERATION = 1024
OPERATIONS_PER_REQUEST = 64


def paths_filter(paths: Sequence[str]) -> dict[str, Any]:
    """The points of these notes."""
    return {"must": [{"key": "path", "match": {"any": sorted(set(paths))}}]}


def payload_operations(
    updates: Sequence[tuple[Sequence[str], dict[str, Any]]],
) -> list[tuple[list[str], dict[str, Any]]]:
    """(notes, payload) updates → one (notes, payload) per operation: at most :data:`PATHS_PER_OPERATION` notes
    each, in the order given (a note named twice gets the later payload, as separate updates would give it)."""
    out: list[tuple[list[str], dict[str, Any]]] = []
    for paths, payload in updates:
        ordered = sorted(set(paths))
        out += [(ordered[i : i + PATHS_PER_OPERATION], payload) for i in range(0, len(ordered), PATHS_PER_OPERATION)]
    return out


def recorded_access(payload: dict[str, Any]) -> tuple[tuple[str, ...], str] | None:
    """A chunk's recorded (groups, where they came from), or None when it records none usable."""
    groups, source = payload.get("access"), payload.get("access_from")
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups) or not isinstance(source, str):
        return None
    if not reach_fits(groups, payload.get(REACH, groups)):
        return None  # groups written without their reach: the note's groups are written again, with it
    return tuple(sorted(groups)), source


def reach_fits(groups: Sequence[str], reach: object) -> bool:
    """Whether a chunk's ``reach`` (:data:`kbsearch.qdrant.query.REACH`) is what its ``access`` groups give it: a
    restricted chunk's, exactly its groups beside tokens of group sets (:data:`kbsearch.qdrant.query.SET_JOIN`) each
    sharing one of them; a public chunk's, ``public`` among others. A kb-search older than
    ``reach`` writing the same collection changes ``access`` by a payload update and leaves ``reach`` as it was: a
    note it restricted kept a public chunk's ``reach``, readable by any one-group caller of the recorded groups.
    Such a chunk records no usable groups (:func:`recorded_access`), so the next run that reads it writes the
    note's groups again, ``reach`` with them (a chunk with no ``reach``, from a store written before it, fits:
    the full sync fills it in)."""
    if not isinstance(reach, list):
        return False
    if PUBLIC_GROUP in groups:
        return PUBLIC_GROUP in reach
    if not all(isinstance(value, str) for value in reach):
        return False
    own = set(groups)
    tokens = [value for value in reach if SET_JOIN in value]
    plain = set(reach) - set(tokens)
    return plain == own and all(not own.isdisjoint(token_groups(token)) for token in tokens)


@dataclass(frozen=True)
class ChunkPoint:
    path: str
    chunk_index: int
    payload: dict[str, Any]
    sparse: SparseVector
    dense: list[float] | NDArray[np.float64] | None  # the embedder's lists; a numpy row is taken too


def dense_list(vector: list[float] | NDArray[np.float64]) -> list[float]:
    """A dense vector as the Qdrant clients hold it: Qdrant Edge reads a numpy row element by element (~5x slower
    than a list) and qdrant-client's models turn it into a list anyway, so a row becomes a list once, in C."""
    return vector if isinstance(vector, list) else vector.tolist()


def named_vectors(chunk: ChunkPoint, sparse_vector: Callable[..., Any]) -> dict[str, Any]:
    """The chunk's named vectors as a Qdrant client takes them: ``dense`` as a list, ``bm25`` (when the chunk has
    terms) built by that client's own sparse-vector type (``sparse_vector(indices=..., values=...)``)."""
    vector: dict[str, Any] = {}
    if chunk.dense is not None:
        vector[DENSE] = dense_list(chunk.dense)
    if len(chunk.sparse):
        vector[SPARSE] = sparse_vector(indices=chunk.sparse.indices, values=chunk.sparse.values)
    return vector


def index_schema(name: str, kind: str) -> Any:
    """The payload index of field ``name`` (a :data:`PAYLOAD_INDEXES` kind) as qdrant-client takes it: a keyword
    index in :data:`TENANT_INDEXES` with ``is_tenant`` (``{"type": "keyword", "is_tenant": true}``), any other its
    schema type alone."""
    from qdrant_client import models

    if name in TENANT_INDEXES:
        return models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
    return models.PayloadSchemaType(kind)


def is_tenant(info: Any) -> bool:
    """Whether a payload index (qdrant-client's or Edge's ``PayloadIndexInfo``) is a tenant index."""
    return getattr(getattr(info, "params", None), "is_tenant", None) is True


class Store:
    #: Whether the run writing through this store still holds its index lease for the seconds given
    #: (``open_store(held=...)``: a sync's :meth:`kbsearch.lease.Lease.held`); None: no lease (an event batch,
    #: ``kbsearch index``, a search), every write goes. Once it says no, every write is refused (:meth:`may_write`).
    held: Callable[[float], bool] | None = None
    #: How long the lease must still hold for a write to be started (:func:`kbsearch.lease.write_margin` of the
    #: store's request timeout: ``open_store`` sets it): a write sent has ended before the lease can pass to another
    #: run (round 36). 0: the lease need only be held now.
    write_margin_s: float = 0.0

    def __init__(self, client: QdrantClient, collection: str, dimensions: int, embedded: bool) -> None:
        self.client = client
        self.collection = collection
        self.dimensions = dimensions
        self.embedded = embedded
        self._owns_client = True

    # -- collections behind an alias (Qdrant Cloud: ``kbsearch index --rebuild``) -------------------------------
    def sibling(self, collection: str) -> Store:
        """The same Qdrant, another collection; it shares this store's client (closing it closes nothing)."""
        other = type(self)(self.client, collection, self.dimensions, self.embedded)
        other._owns_client = False
        other.held, other.write_margin_s = self.held, self.write_margin_s
        return other

    def may_write(self, action: str) -> None:
        """Raise :class:`~kbsearch.errors.LeaseLostError` unless the run that opened this store holds its index
        lease for :attr:`write_margin_s` more (:attr:`held`): called before every write is sent (:func:`writes`),
        asked anew each time (a compare of clocks while the lease surely holds that long, else DynamoDB once: a
        renewal, the write started on the lease it renewed). A write so started ends before the lease could pass to
        another run; Qdrant takes no fencing token, so a write started later could land beside the next holder's."""
        if self.held is not None and not self.held(self.write_margin_s):
            raise LeaseLostError(
                f"{action.strip('_').replace('_', ' ')} refused: this run no longer holds its index lease for the "
                f"{self.write_margin_s:g} s a write may take (another run may hold it by then); nothing was sent"
            )

    def alias_target(self, alias: str) -> str | None:
        """The collection ``alias`` points to; None when it is not an alias."""
        with storage_errors("reading the collection aliases"):
            aliases = self.client.get_aliases().aliases
        return next((a.collection_name for a in aliases if a.alias_name == alias), None)

    def point_alias(self, alias: str, collection: str) -> None:
        """Make ``alias`` name ``collection``, atomically (one aliases request: searches through the alias see
        the old collection or the new one, never neither). A collection that itself has the alias's name (built
        before aliases were used) is dropped first: that one switch leaves the name unresolvable for the length
        of one request."""
        from qdrant_client import models

        actions: list[Any] = []
        if self.alias_target(alias) is not None:
            actions.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        elif self.sibling(alias).exists():
            self.may_write("dropping a collection")
            with storage_errors(f"dropping the collection {alias!r} to put an alias in its place"):
                self.client.delete_collection(alias)
        actions.append(
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))
        )
        self.may_write("switching the alias")  # asked after the reads above: as late as it can be (rev34a)
        with storage_errors(f"pointing the alias {alias!r} at {collection!r}"):
            self.client.update_collection_aliases(change_aliases_operations=actions)

    @classmethod
    def cloud(
        cls,
        settings: Settings,
        secrets: Secrets,
        deadline: Deadline | None = None,
        held: Callable[[float], bool] | None = None,
    ) -> Store:
        """Qdrant Cloud through qdrant-client (``QDRANT_URL``, the key from ``QDRANT_API_KEY``). ``deadline``: every
        request ends by it (the run's end), however slowly Qdrant answers (:class:`~kbsearch.qdrant.rest.
        CappedAnswers`): a request after it fails at once, a :class:`StoreError` where it is made. ``held``: whether
        the run still holds its index lease (a request Qdrant refused for now is not sent again once it does not:
        :class:`~kbsearch.qdrant.rest.SentAgain`)."""
        import httpx
        from qdrant_client import QdrantClient

        from kbsearch.lease import write_margin
        from kbsearch.providers.transport import deadline_client
        from kbsearch.qdrant.rest import CappedAnswers, RereadKey, SentAgain, qdrant_key

        key = qdrant_key(secrets)  # a key no header can carry is refused before anything is sent
        host = urlsplit(settings.qdrant_url if "//" in settings.qdrant_url else f"//{settings.qdrant_url}").hostname
        # qdrant-client's own choice, which a transport given to it replaces: no kept-alive connections on loopback
        local = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        inner = httpx.Client(limits=local) if host in ("localhost", "127.0.0.1") else httpx.Client()  # env proxies
        if deadline is not None:  # each socket operation waits at most until the deadline: the exchange ends by it
            inner = deadline_client(inner)
        margin = write_margin(settings.qdrant_timeout_s)
        again = None if held is None else (lambda: held(margin))  # a request sent again: as a write started
        client = QdrantClient(
            url=settings.qdrant_url,
            https=True if key else None,  # as api_key=key made it: a URL without a scheme is reached over TLS
            timeout=int(max(1, settings.qdrant_timeout_s)),
            check_compatibility=False,
            auth=RereadKey(secrets),  # given to its httpx client
            # every answer read within a bound, decoded; a request Qdrant refuses for now sent again when it says
            transport=SentAgain(CappedAnswers(inner, deadline=deadline), deadline, held=again),
        )
        store = cls(client, settings.qdrant_collection, settings.embedding_dimensions, embedded=False)
        store.held, store.write_margin_s = held, margin
        return store

    def close(self) -> None:
        if not self._owns_client:
            return
        try:
            self.client.close()
        except Exception as exc:  # a store that failed mid-run may fail to close too; the report has the cause
            logger.warning("closing the store failed", extra={"error": type(exc).__name__})

    # -- schema -----------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        try:
            return bool(self.client.collection_exists(self.collection))
        except Exception as exc:
            from kbsearch.qdrant.rest import AnswerTooLarge

            source = getattr(exc, "source", exc)  # qdrant-client's ResponseHandlingException wraps the transport's
            if isinstance(source, AnswerTooLarge):  # Qdrant answered, too much: not "not reachable"
                raise StoreError(f"checking for the collection failed: {source}") from None
            raise unreachable(type(exc).__name__) from None

    @writes
    def ensure_collection(self, signature: dict[str, Any] | None = None) -> bool:
        """Create the collection when missing (returns True; ``signature`` recorded), else check its schema."""
        from qdrant_client import models

        if self.exists():
            with storage_errors("reading the collection's schema"):
                self.check_schema()
            self.ensure_payload_indexes()
            return False
        with storage_errors(f"creating the collection {self.collection!r}"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the embedded store ignores HNSW/quantization/indexes, with a warning
            self.client.create_collection(
                self.collection,
                vectors_config={DENSE: models.VectorParams(size=self.dimensions, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                hnsw_config=models.HnswConfigDiff(m=16, ef_construct=128),
                quantization_config=models.ScalarQuantization(
                    scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
                ),
                on_disk_payload=True,
                metadata=dict(signature) if signature else None,
            )
            for name, kind in (PAYLOAD_INDEXES | CLOUD_INDEXES).items():
                self.client.create_payload_index(self.collection, name, index_schema(name, kind))
        metadata_written()
        return True

    @writes
    def ensure_payload_indexes(self) -> None:
        """Create the payload indexes a collection made by an older version lacks (``access``; ``doc_id`` and
        ``etag``, :data:`CLOUD_INDEXES`), and make a :data:`TENANT_INDEXES` index made before without ``is_tenant``
        a tenant index (each segment drops the old index, then builds the new one from the payloads: meanwhile its
        matches are checked in the payloads, exact and slower; the segments its optimiser writes from then on group
        their points by its values)."""
        with storage_errors("creating payload indexes"):
            schema = self.client.get_collection(self.collection).payload_schema or {}
            for name, kind in (PAYLOAD_INDEXES | CLOUD_INDEXES).items():
                if name not in schema or (name in TENANT_INDEXES and not is_tenant(schema[name])):
                    self.client.create_payload_index(self.collection, name, index_schema(name, kind))

    def metadata(self) -> dict[str, Any]:
        """The collection's metadata (the embedding signature it records); {} when none."""
        with storage_errors("reading the collection's metadata"):
            return dict(self.client.get_collection(self.collection).config.metadata or {})

    def dense_size(self) -> int | None:
        """The size of the collection's dense vectors, as its config says (None: it does not say)."""
        with storage_errors("reading the collection's schema"):
            vectors = self.client.get_collection(self.collection).config.params.vectors
        if isinstance(vectors, dict) and DENSE in vectors:
            return dense_size({DENSE: vectors[DENSE].model_dump(mode="json")})
        return None

    @writes
    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace the recorded embedding signature (keys not given are cleared)."""
        current = self.metadata()
        update: dict[str, Any] = {k: None for k in current if k not in metadata}
        update.update(metadata)
        with storage_errors("recording the collection's metadata"):
            applied(
                self.client.update_collection(self.collection, metadata=update), "recording the collection's metadata"
            )
        metadata_written()

    @writes
    def merge_metadata(self, values: dict[str, Any]) -> None:
        """Set these metadata keys, leaving the others as they are (Qdrant merges a metadata update)."""
        with storage_errors("recording the collection's metadata"):
            applied(
                self.client.update_collection(self.collection, metadata=values), "recording the collection's metadata"
            )
        metadata_written()

    @writes
    def drop(self) -> None:
        """Delete the collection (the indexer rebuilds it when the embedding dimensions change)."""
        with storage_errors(f"deleting the collection {self.collection!r}"):
            self.client.delete_collection(self.collection)
        metadata_written()

    def metadata_stamp(self) -> Hashable:
        """What changes whenever this process writes a collection's metadata (:func:`metadata_written`): the only
        writer of an embedded store's (one process holds it). A store another process writes (Qdrant Cloud's, by
        the indexer) is not followed by it."""
        return _written[0]

    def check_schema(self) -> None:
        params = self.client.get_collection(self.collection).config.params
        dense = (params.vectors if isinstance(params.vectors, dict) else {}).get(DENSE)
        sparse = (params.sparse_vectors or {}).get(SPARSE)
        check_vectors(
            self.collection, self.dimensions, "delete the collection",
            dense=dense.model_dump(mode="json") if dense is not None else None,
            sparse=sparse.model_dump(mode="json") if sparse is not None else None,
        )  # fmt: skip

    # -- state --------------------------------------------------------------------------------------------------
    def _scroll(self, fields: list[str] | bool) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point as (id, payload with ``fields``)."""
        offset: Any = None
        seen: set[str] = set()
        while True:
            points, offset = self.client.scroll(
                self.collection, limit=2048, offset=offset, with_payload=fields, with_vectors=False
            )
            for point in points:
                yield str(point.id), dict(point.payload or {})
            if next_page(offset, seen) is None:
                return

    def indexed_state(self) -> dict[str, NoteState]:
        state: dict[str, NoteState] = {}
        with storage_errors("reading the index's state"):
            for _, p in self._scroll(STATE_FIELDS):
                add_state(state, p)
        return state

    def note_points(self, paths: list[str]) -> list[tuple[dict[str, Any], list[float] | None]]:
        """The points of these notes only (an event-driven run never scrolls the whole collection): the state
        fields (its graph keys among them), ``embed_hash`` and the old ``name_keys`` of each, with its dense vector
        (reused for chunks whose text did not change)."""
        from qdrant_client import models

        if not paths:
            return []
        selector = models.Filter.model_validate({"must": [{"key": "path", "match": {"any": sorted(set(paths))}}]})
        out: list[tuple[dict[str, Any], list[float] | None]] = []
        offset: Any = None
        seen: set[str] = set()
        with storage_errors("reading notes' points"):
            while True:
                points, offset = self.client.scroll(
                    self.collection, scroll_filter=selector, limit=2048, offset=offset,
                    with_payload=[*STATE_FIELDS, EMBED_HASH, NAME_FIELD], with_vectors=[DENSE],
                )  # fmt: skip
                for point in points:
                    vector = point.vector.get(DENSE) if isinstance(point.vector, dict) else None
                    out.append(
                        (
                            dict(point.payload or {}),
                            [float(x) for x in cast(list[float], vector)] if isinstance(vector, list) else None,
                        )
                    )
                if next_page(offset, seen) is None:
                    return out

    def points(self) -> dict[str, dict[str, Any]]:
        """Every point's payload by id (tests and diagnostics)."""
        return dict(self._scroll(True))

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    # -- writes ------------------------------------------------------------------------------------------------
    @writes
    def upsert(self, chunks: list[ChunkPoint]) -> None:
        from qdrant_client import models

        points = [
            models.PointStruct(id=point_id(c.path, c.chunk_index), vector=named_vectors(c, models.SparseVector),
                               payload=c.payload)
            for c in chunks
        ]  # fmt: skip
        if points:
            with storage_errors(f"writing {len(points)} points"):
                applied(self.client.upsert(self.collection, points=points, wait=True), f"writing {len(points)} points")

    # -- reads -------------------------------------------------------------------------------------------------
    def query(self, request: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
        """Run Query API JSON (the body of ``POST /collections/{c}/points/query``), validated into
        qdrant_client models (local mode takes no JSON)."""
        from qdrant_client import models

        try:
            req = models.QueryRequest.model_validate(request)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # local mode warns that it ignores hnsw_ef/quantization
                result = self.client.query_points(
                    self.collection,
                    prefetch=req.prefetch,
                    query=req.query,
                    using=req.using,
                    query_filter=req.filter,
                    limit=req.limit or 10,
                    with_payload=req.with_payload if req.with_payload is not None else False,
                    with_vectors=req.with_vector or False,
                    timeout=max(1, int(timeout_s)),
                )
        except Exception as exc:
            raise StoreError(f"Qdrant query failed ({type(exc).__name__})") from None
        return [{"id": str(p.id), "score": p.score, "payload": p.payload} for p in result.points]

    def scroll(self, request: dict[str, Any], timeout_s: float) -> tuple[list[dict[str, Any]], str | None]:
        """Run a scroll request's JSON (filter, limit, offset, with_payload) through qdrant-client."""
        from qdrant_client import models

        try:
            req = models.ScrollRequest.model_validate(request)
            points, offset = self.client.scroll(
                self.collection, scroll_filter=req.filter, limit=req.limit or 10, offset=req.offset,
                with_payload=req.with_payload if req.with_payload is not None else True, with_vectors=False,
                timeout=max(1, int(timeout_s)),
            )  # fmt: skip
        except Exception as exc:
            raise StoreError(f"Qdrant scroll failed ({type(exc).__name__})") from None
        return [{"id": str(p.id), "payload": p.payload} for p in points], None if offset is None else str(offset)

    def facet(self, request: dict[str, Any], timeout_s: float) -> list[tuple[Any, int]]:
        """Run a facet request's JSON (key, filter, limit, exact) through qdrant-client."""
        from qdrant_client import models

        try:
            req = models.FacetRequest.model_validate(request)
            answer = self.client.facet(
                self.collection, key=req.key, facet_filter=req.filter, limit=req.limit or 10, exact=bool(req.exact),
                timeout=max(1, int(timeout_s)),
            )  # fmt: skip
        except Exception as exc:
            raise StoreError(f"Qdrant facet failed ({type(exc).__name__})") from None
        return [(hit.value, int(hit.count)) for hit in answer.hits]

    def query_batch(self, searches: list[dict[str, Any]], timeout_s: float) -> list[list[dict[str, Any]]]:
        """Several Query API searches in one call (``query_batch_points``)."""
        from qdrant_client import models

        try:
            requests = [models.QueryRequest.model_validate(s) for s in searches]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # local mode warns that it ignores hnsw_ef/quantization
                answers = self.client.query_batch_points(self.collection, requests, timeout=max(1, int(timeout_s)))
        except Exception as exc:
            raise StoreError(f"Qdrant query failed ({type(exc).__name__})") from None
        return [[{"id": str(p.id), "score": p.score, "payload": p.payload} for p in a.points] for a in answers]

    def query_legs(
        self, searches: list[dict[str, Any]], bare: Sequence[bool], timeout_s: float
    ) -> list[list[ScoredChunk]]:
        """:meth:`query_batch`, each search's points read into chunks (:func:`read_legs`)."""
        return read_legs(self.query_batch(searches, timeout_s), bare)

    @writes
    def set_payload(self, path: str, payload: dict[str, Any]) -> None:
        """Set ``payload``'s fields on every chunk of the note (no vector is touched: nothing is re-embedded)."""
        from qdrant_client import models

        selector = models.Filter.model_validate(path_filter(path))
        with storage_errors("updating a note's payload"):
            applied(self.client.set_payload(self.collection, payload, points=selector, wait=True),
                    "updating a note's payload")  # fmt: skip

    @writes
    def set_payloads(self, updates: Sequence[tuple[Sequence[str], dict[str, Any]]]) -> None:
        """Set each payload's fields on every chunk of its notes (vectors untouched): Qdrant's batch update
        (``POST /collections/{c}/points/batch``), one ``set_payload`` operation by filter per payload and
        :data:`PATHS_PER_OPERATION` notes, :data:`OPERATIONS_PER_REQUEST` operations a request. Operations apply
        in order; a failure leaves the earlier ones applied (each note whole: the next sync finds the rest)."""
        from qdrant_client import models

        operations = [
            models.SetPayloadOperation(
                set_payload=models.SetPayload(payload=payload, filter=models.Filter.model_validate(paths_filter(paths)))
            )
            for paths, payload in payload_operations(updates)
        ]
        with storage_errors("updating notes' payloads"):
            for start in range(0, len(operations), OPERATIONS_PER_REQUEST):
                batch = operations[start : start + OPERATIONS_PER_REQUEST]
                answers = self.client.batch_update_points(self.collection, batch, wait=True)
                if not isinstance(answers, list) or len(answers) != len(batch):
                    raise StoreError("updating notes' payloads failed: Qdrant did not say it was applied "
                                     f"({len(answers) if isinstance(answers, list) else 'no'} answers to {len(batch)})")  # fmt: skip
                applied(answers, "updating notes' payloads")

    @writes
    def set_sparse(self, vectors: Sequence[tuple[str, SparseVector]], where: dict[str, Any]) -> None:
        """Give these points (their ids as :meth:`scroll` answers them) these BM25 vectors, those ``where`` (a
        filter's JSON) selects when the write applies (a point written anew meanwhile is left as it was written):
        Qdrant's update of vectors (``PUT /collections/{c}/points/vectors``), one request; the dense vector and the
        payload are untouched. An empty vector is written as one (the chunk then has no term)."""
        from qdrant_client import models

        if not vectors:
            return
        points = [models.PointVectors(id=pid, vector={SPARSE: models.SparseVector(indices=v.indices, values=v.values)})
                  for pid, v in vectors]  # fmt: skip
        with storage_errors(f"rewriting the BM25 vectors of {len(points)} points"):
            applied(self.client.update_vectors(self.collection, points, wait=True,
                                               update_filter=models.Filter.model_validate(where)),
                    f"rewriting the BM25 vectors of {len(points)} points")  # fmt: skip

    def has_points(self, where: dict[str, Any]) -> bool:
        """Whether any point matches ``where`` (a filter's JSON): a scroll of one point, no payload (the indexer's
        question before a write by filter that may have nothing to do)."""
        from qdrant_client import models

        with storage_errors("reading the index"):
            points, _ = self.client.scroll(self.collection, scroll_filter=models.Filter.model_validate(where), limit=1,
                                           with_payload=False, with_vectors=False)  # fmt: skip
        return bool(points)

    @writes
    def set_payload_where(self, where: dict[str, Any], payload: dict[str, Any]) -> None:
        """Set ``payload``'s fields on every point ``where`` (a filter's JSON) selects, in one operation (vectors
        untouched): Qdrant evaluates the filter and writes each point it selects as one update, so a point's other
        fields are those of its latest write (the indexer gives public chunks the groups of ``reach`` so)."""
        from qdrant_client import models

        with storage_errors("updating points' payloads"):
            applied(self.client.set_payload(self.collection, payload, points=models.Filter.model_validate(where),
                                            wait=True), "updating points' payloads")  # fmt: skip

    @writes
    def delete_note(self, path: str) -> None:
        from qdrant_client import models

        selector = models.FilterSelector(filter=models.Filter.model_validate(path_filter(path)))
        with storage_errors("deleting a note's points"):
            applied(self.client.delete(self.collection, selector, wait=True), "deleting a note's points")

    @writes
    def delete_leftovers(self, path: str, n_chunks: int) -> None:
        """Remove the note's chunks from ``n_chunks`` on (left by an older, longer version)."""
        from qdrant_client import models

        selector = models.FilterSelector(filter=models.Filter.model_validate(path_filter(path, n_chunks)))
        with storage_errors("deleting a note's leftover points"):
            applied(self.client.delete(self.collection, selector, wait=True), "deleting a note's leftover points")
