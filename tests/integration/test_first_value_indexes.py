"""The embedded store's front-matter payload indexes (``type``, ``status``, ``updated``, ``tags``:
:data:`FIRST_VALUE_INDEXES`) come with their field's first value, not with the collection: a KB without front matter
never has them (each costs every Qdrant Edge seal a read of every payload; BENCHMARKS.md, session 26). Every answer
stays what a store with every index gives: the catalog's facets and newest notes (REST ``GET /notes``, MCP
``kb_list``), the search's type, status, tag and updated filters (``POST``/``GET /search``, ``kb_search``), before
and after the first note with front matter, each step a fresh process's store (closed and opened again); a store
made with every index (before session 26) is answered alike; and the filters, facets and orderings no surface
builds (``is_empty``, ``must_not``, ``should``, nested, ``is_null``) answer on the store what Edge answers with the
index."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import run_sync
from kbsearch.lexical import SparseVector
from kbsearch.qdrant.embedded import EdgeStore, EmbeddedRetriever
from kbsearch.qdrant.query import PAYLOAD_INDEXES, fusion_request
from kbsearch.qdrant.store import ChunkPoint
from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.integration.test_hostile_notes import mcp_event

#: the front-matter fields whose indexes come with a value (kbsearch.qdrant.query.FIRST_VALUE_INDEXES; spelt out, so
#: that these tests run, and fail, on a version that creates them with the collection)
FIRST_VALUE_INDEXES = frozenset({"type", "status", "updated", "tags", "tag_keys"})

PLAIN = {
    "alpha.md": "# Alpha\n\nzebrafinch alpha notes\n",
    "ops/gamma.md": "# Gamma\n\nzebrafinch gamma notes\n",
    "delta.md": "# Delta\n\nzebrafinch delta notes\n",
}
#: the first note with front matter: a type alone
TYPED = ("typed.md", "---\ntype: memo\n---\n# Typed\n\nzebrafinch typed notes\n")
#: then one with every front-matter field
DATED = (
    "ops/dated.md",
    "---\ntitle: Dated\ntype: runbook\nstatus: active\ntags: [oncall]\nupdated: 2026-03-01\n---\n"
    "# Dated\n\nzebrafinch dated notes\n",
)
#: the search's filters, each with the notes it finds once DATED is indexed (TYPED: type memo)
FILTERS: list[tuple[dict[str, Any], set[str]]] = [
    ({"type": ["runbook"]}, {"ops/dated.md"}),
    ({"type": ["memo", "runbook"]}, {"typed.md", "ops/dated.md"}),
    ({"status": ["active"]}, {"ops/dated.md"}),
    ({"tags": ["oncall"]}, {"ops/dated.md"}),
    ({"updated_after": "2026-01-01"}, {"ops/dated.md"}),
    ({"type": ["memo"], "path_prefix": "ops"}, set()),
]


def test_the_fields_are_the_stores() -> None:
    from kbsearch.qdrant import query

    assert getattr(query, "FIRST_VALUE_INDEXES", None) == FIRST_VALUE_INDEXES


def front_matter_indexes(settings: Settings) -> set[str]:
    """The front-matter payload indexes the store's shard holds (a store opened afresh, closed again)."""
    store = EdgeStore(Path(settings.qdrant_path), settings.qdrant_collection, settings.embedding_dimensions)
    try:
        return set(store.shard.info().payload_schema or {}) & FIRST_VALUE_INDEXES
    finally:
        store.close()


def sync(settings: Settings, folder: Path) -> None:
    report = run_sync(settings, Secrets(settings), source_uri=str(folder))
    assert report.error is None and not report.skipped, (report.error, report.skipped)


@pytest.fixture(params=["as created", "every index"])
def made(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path, Settings]:
    """A KB of notes without front matter and its settings; its store as this version creates it, or made with
    every payload index (as the store was before session 26) and then synced."""
    folder = tmp_path / "kb"
    for rel, text in PLAIN.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="", kb_source=str(folder))  # fmt: skip
    if request.param == "every index":
        store = EdgeStore(tmp_path / "q", settings.qdrant_collection, settings.embedding_dimensions,
                          payload_indexes=PAYLOAD_INDEXES)  # fmt: skip
        try:
            assert store.ensure_collection()
        finally:
            store.close()
    return request.param, folder, settings


@pytest.fixture
def surfaces(load_search_app: Any) -> Iterator[Callable[[Settings], dict[str, Any]]]:
    """What each surface answers on the store as it is, read by a fresh search app (its own store, closed after)."""

    def read(settings: Settings) -> dict[str, Any]:
        call = load_search_app(QDRANT_PATH=settings.qdrant_path, KB_SOURCE=settings.kb_source)
        try:
            return answers(call)
        finally:
            call.module.api.container.close()

    yield read


def rest(call: Callable[[dict[str, Any]], Any], method: str, path: str, query: str = "", body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else b""
    event = build_event(HttpRequest(method, path, query, [("Content-Type", "application/json")], data), path, {},
                        "dev")  # fmt: skip
    answer = call(event)
    assert answer["statusCode"] == 200, answer
    return json.loads(answer["body"])


def mcp(call: Callable[[dict[str, Any]], Any], tool: str, arguments: dict[str, Any]) -> Any:
    answer = call(mcp_event(tool, arguments))
    result = json.loads(answer["body"])["result"]
    assert answer["statusCode"] == 200 and not result.get("isError"), result
    return result["structuredContent"]


def answers(call: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    def counts(catalog: dict[str, Any]) -> dict[str, Any]:
        return {"notes": catalog["notes"], "recent": [n["path"] for n in catalog["recent"]]} | {
            field: {f["value"]: f["count"] for f in catalog[field]} for field in ("tags", "types", "statuses")
        }

    out: dict[str, Any] = {"catalog": counts(rest(call, "GET", "/notes", "recent=5")),
                           "kb_list": counts(mcp(call, "kb_list", {"recent": 5}))}  # fmt: skip
    everything = {
        h["path"] for h in rest(call, "POST", "/search", body={"query": "zebrafinch", "top_k": 20})["results"]
    }
    out["unfiltered"] = everything
    for filters, _ in FILTERS:
        key = json.dumps(filters, sort_keys=True)
        body = {"query": "zebrafinch", "top_k": 20, "filters": filters}
        posted = {h["path"] for h in rest(call, "POST", "/search", body=body)["results"]}
        got = {h["path"] for h in rest(call, "GET", "/search", urlencode({"q": "zebrafinch", "top_k": 20, **filters},
                                                                         doseq=True))["results"]}  # fmt: skip
        names = {"type": "types", "status": "statuses"}
        tool = mcp(call, "kb_search", {"query": "zebrafinch", "top_k": 20,
                                       **{names.get(k, k): v for k, v in filters.items()}})  # fmt: skip
        assert posted == got == {h["path"] for h in tool["results"]}, (filters, posted, got, tool)
        out[key] = posted
    return out


def expected(step: int) -> dict[str, Any]:
    """What every store answers after ``step`` notes with front matter (0: none; 1: TYPED; 2: TYPED and DATED)."""
    notes = set(PLAIN) | ({TYPED[0]} if step >= 1 else set()) | ({DATED[0]} if step >= 2 else set())
    catalog = {
        "notes": len(notes),
        "recent": [DATED[0]] if step >= 2 else [],  # only notes holding 'updated' are ordered by it
        "tags": {"oncall": 1} if step >= 2 else {},
        "types": ({"memo": 1} if step >= 1 else {}) | ({"runbook": 1} if step >= 2 else {}),
        "statuses": {"active": 1} if step >= 2 else {},
    }
    out: dict[str, Any] = {"catalog": catalog, "kb_list": catalog, "unfiltered": notes}
    for filters, found in FILTERS:
        out[json.dumps(filters, sort_keys=True)] = {p for p in found if p in notes}
    return out


def test_front_matter_indexes_come_with_their_first_value_and_every_surface_answers_alike(
    made: tuple[str, Path, Settings], surfaces: Callable[[Settings], dict[str, Any]]
) -> None:
    """Before any front matter, after a note that sets a type alone, after one that sets every field: each step's
    answers on every surface are what a store with every index gives (the same assertions on one), and a store as
    this version creates it holds only the indexes of the fields some note gave a value, across closes and opens."""
    kind, folder, settings = made
    lazy = kind == "as created"
    sync(settings, folder)
    assert front_matter_indexes(settings) == (set() if lazy else FIRST_VALUE_INDEXES)
    assert surfaces(settings) == expected(0)

    (folder / TYPED[0]).write_text(TYPED[1], encoding="utf-8")
    sync(settings, folder)
    assert front_matter_indexes(settings) == ({"type"} if lazy else FIRST_VALUE_INDEXES)
    assert surfaces(settings) == expected(1)

    (folder / DATED[0]).parent.mkdir(parents=True, exist_ok=True)
    (folder / DATED[0]).write_text(DATED[1], encoding="utf-8")
    sync(settings, folder)
    assert front_matter_indexes(settings) == FIRST_VALUE_INDEXES
    assert surfaces(settings) == expected(2)

    # the notes with front matter gone: the indexes stay (they answer as well empty), and so do the answers
    (folder / TYPED[0]).unlink()
    (folder / DATED[0]).unlink()
    sync(settings, folder)
    assert front_matter_indexes(settings) == FIRST_VALUE_INDEXES
    assert surfaces(settings) == expected(0)


# -- the store: what no surface builds, answered as Edge answers it with the index ----------------------------------
DIMS = 4
#: filters on the front-matter fields of points that hold no value of them (missing, null, an empty list)
STORE_FILTERS: list[dict[str, Any]] = [
    {"must": [{"key": "type", "match": {"any": ["memo"]}}]},
    {"must": [{"key": "tags", "match": {"value": "x"}}]},
    {"must": [{"key": "status", "match": {"text": "act"}}]},
    {"must": [{"key": "updated", "range": {"gt": "2020-01-01T00:00:00+00:00"}}]},
    {"must": [{"is_empty": {"key": "tags"}}]},
    {"must": [{"is_empty": {"key": "updated"}}, {"key": "chunk_index", "match": {"value": 0}}]},
    {"must_not": [{"key": "status", "match": {"any": ["active"]}}]},
    {"must_not": [{"is_empty": {"key": "type"}}]},
    {"must_not": [{"key": "type", "match": {"value": "memo"}}, {"key": "path", "match": {"value": "n1.md"}}]},
    {"should": [{"key": "type", "match": {"value": "memo"}}, {"key": "path", "match": {"value": "n1.md"}}]},
    {"should": [{"key": "type", "match": {"value": "memo"}}, {"key": "tags", "match": {"any": ["x"]}}]},
    {"should": [{"is_empty": {"key": "status"}}], "must": [{"key": "path", "match": {"any": ["n1.md", "n2.md"]}}]},
    {"must": [{"must_not": [{"key": "type", "match": {"value": "memo"}}]}, {"key": "chunk_index", "match": {"value": 1}}]},
    {"must": [{"should": [{"key": "updated", "range": {"lt": "2030-01-01T00:00:00Z"}}, {"is_empty": {"key": "updated"}}]}]},
    {"must": [{"is_null": {"key": "type"}}]},
    {"must": [{"key": "type", "match": {"any": ["memo"]}}, {"is_null": {"key": "type"}}]},
]  # fmt: skip


def points(n: int = 12) -> list[ChunkPoint]:
    """Chunks of notes without front matter as a store may hold them: ``tags`` an empty list (the indexer's), or
    missing; ``type`` missing (the indexer's), or null (a store written before)."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        path, index = f"n{i // 2}.md", i % 2
        payload: dict[str, Any] = {"path": path, "chunk_index": index, "text": f"chunk {i}"}
        if i % 3:
            payload["tags"] = []
        if i % 4 == 0:
            payload["type"] = None
        vector = [rng.uniform(-1, 1) for _ in range(DIMS)]
        out.append(ChunkPoint(path, index, payload, SparseVector([i % 5 + 1], [1.0 + i / 10]), vector))  # no ties
    return out


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[str, EdgeStore]]:
    """The same points in a store as this version creates it and in one made with every index."""
    made = {"as created": EdgeStore(tmp_path / "lazy", "c", DIMS),
            "every index": EdgeStore(tmp_path / "every", "c", DIMS, payload_indexes=PAYLOAD_INDEXES)}  # fmt: skip
    for store in made.values():
        store.ensure_collection()
        store.upsert(points())
    yield made
    for store in made.values():
        store.close()


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(str(r["id"]) for r in rows)


def test_filters_facets_and_orderings_on_a_field_without_its_index_answer_as_with_it(
    stores: dict[str, EdgeStore],
) -> None:
    lazy, every = stores["as created"], stores["every index"]
    assert set(lazy.shard.info().payload_schema or {}) & FIRST_VALUE_INDEXES == set()
    assert set(every.shard.info().payload_schema or {}) >= FIRST_VALUE_INDEXES
    vector = [0.3, -0.2, 0.5, 0.1]
    for where in STORE_FILTERS:
        scrolled = {name: ids(s.scroll({"filter": where, "limit": 100}, 5.0)[0]) for name, s in stores.items()}
        assert scrolled["as created"] == scrolled["every index"], where
        assert lazy.has_points(where) is every.has_points(where) is bool(scrolled["every index"]), where
        search = {"query": vector, "using": "dense", "limit": 20, "filter": where, "with_payload": False}
        fused = fusion_request([vector], SparseVector([1, 2], [1.0, 0.5]), where, prefetch_limit=10)
        assert fused is not None
        # a prefetch of its own filter (the others none): the fusion keeps its place
        fused["prefetch"][0]["filter"] = where
        fused.pop("filter")
        for request in (search, fused):
            # equal scores in no fixed order (the engine's): ranked as the search ranks them, by id
            answered = {name: sorted((-round(p["score"], 5), str(p["id"])) for p in s.query(request, 5.0))
                        for name, s in stores.items()}  # fmt: skip
            assert answered["as created"] == answered["every index"], (where, request is fused)
        for key in ("tags", "type", "status"):  # the keyword ones (Edge facets no datetime index)
            faceted = {name: s.facet({"key": key, "filter": where, "limit": 10, "exact": True}, 5.0)
                       for name, s in stores.items()}  # fmt: skip
            assert faceted["as created"] == faceted["every index"] == [], (key, where)
        newest = {"query": {"order_by": {"key": "updated", "direction": "desc"}}, "filter": where, "limit": 5}
        assert lazy.query(newest, 5.0) == every.query(newest, 5.0) == []
    # nothing asked of the store made any index
    assert set(lazy.shard.info().payload_schema or {}) & FIRST_VALUE_INDEXES == set()
    # the retriever the search uses answers the same (its batch: the searches settled one by one)
    retriever = EmbeddedRetriever(lazy)
    batch = [{"query": vector, "using": "dense", "limit": 5, "filter": w} for w in STORE_FILTERS[:6]]
    assert [ids(a) for a in retriever.query_batch(batch, 5.0)] == [ids(a) for a in every.query_batch(batch, 5.0)]


def test_a_value_written_by_a_payload_update_creates_its_index_first(stores: dict[str, EdgeStore]) -> None:
    """Not only a note's write: a payload update that gives a field its first value (here ``status`` on one note's
    chunks) creates the index before it, and the store answers the value from then on, after a close and open."""
    for store in stores.values():
        store.set_payload_where({"must": [{"key": "path", "match": {"value": "n1.md"}}]}, {"status": "active"})
        assert store.facet({"key": "status", "limit": 10, "exact": True}, 5.0) == [("active", 2)]
    lazy = stores["as created"]
    assert set(lazy.shard.info().payload_schema or {}) & FIRST_VALUE_INDEXES == {"status"}
    root = lazy.root
    lazy.close()
    again = stores["as created"] = EdgeStore(root, "c", DIMS)
    assert set(again.shard.info().payload_schema or {}) & FIRST_VALUE_INDEXES == {"status"}
    where = {"must": [{"key": "status", "match": {"value": "active"}}]}
    assert ids(again.scroll({"filter": where, "limit": 10}, 5.0)[0]) == ids(
        stores["every index"].scroll({"filter": where, "limit": 10}, 5.0)[0]
    )
    assert len(again.scroll({"filter": where, "limit": 10}, 5.0)[0]) == 2
    # an empty list or a null is no value: no index for it
    again.upsert([ChunkPoint("n9.md", 0, {"path": "n9.md", "chunk_index": 0, "tags": [], "updated": None},
                             SparseVector([1], [1.0]), [0.1, 0.2, 0.3, 0.4])])  # fmt: skip
    assert set(again.shard.info().payload_schema or {}) & FIRST_VALUE_INDEXES == {"status"}
