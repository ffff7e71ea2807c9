"""The note graph and browsing: the indexer's link keys, a note read whole or by section with resolved links and
backlinks, kept right by incremental syncs; the catalog (facets, recent notes) and pages of notes with cursors; on
Qdrant Edge and on qdrant-client's local mode (which runs the same Query/scroll/facet JSON Qdrant Cloud gets); and
``GET /notes/{path}`` / ``GET /notes`` through API Gateway events."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from qdrant_client import models

from kbsearch.access import Scope
from kbsearch.browse import BrowseService, InvalidCursor, NoteProblem, encode_cursor
from kbsearch.config import Secrets, Settings
from kbsearch.indexer import link_carriers, run_sync
from kbsearch.lexical import document_vector
from kbsearch.links import GRAPH_KEYS, LINK_KEY, OLD_GRAPH_FIELDS, link_key, path_keys, stored_keys
from kbsearch.qdrant import open_store
from kbsearch.qdrant.embedded import EdgeStore
from kbsearch.qdrant.query import GRAPH_KEYS_ONLY, held_request, payload_links
from kbsearch.qdrant.store import ChunkPoint
from kbsearch.reader import NoteReader
from kbsearch.search import SearchService
from kbsearch.sources import open_source
from kbsearch_tools.fakes import FakeProvider
from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.conftest import ROOT, VAULT, provider_settings
from tests.integration.test_hostile_notes import mcp_event

ALL = Scope.unrestricted("test")
NOTES = {
    "Hub.md": "---\ntitle: Hub\ntags: [graph, hub]\ntype: index\nstatus: active\nupdated: 2026-03-01\n---\n"
    "# Hub\n\nSee [[Alpha]], [[ops/Beta|the beta note]], [[Gamma.md#Setup]], [[Missing note]], ![[diagram.png]],\n"
    "[[#Local heading]], `[[Not a link]]` and [[Alpha]] again.\n\n```\n[[Fenced]]\n```\n\n## Local heading\ntext\n",
    "Alpha.md": "---\ntitle: Alpha\ntags: [graph]\ntype: note\nstatus: draft\nupdated: 2026-02-01\n---\n"
    "# Alpha\n\nBack to [[Hub]].\n\n## Setup\n\nAlpha setup.\n\n### Details\n\nfine print\n\n## Usage\n\nuse it\n",
    "ops/Beta.md": "---\ntitle: Beta\ntags: [ops]\ntype: note\nupdated: 2026-01-15\n---\n# Beta\n\n[[hub]] in lower case.\n",
    "ops/Gamma.md": "---\ntitle: Gamma\naliases: [G-note]\ntype: runbook\nupdated: 2026-01-01\n---\n"
    "# Gamma\n\n## Setup\n\nsteps\n",
    "archive/Beta.md": "---\ntitle: Old beta\ntype: note\n---\nAn older namesake. Links [[G-note]].\n",
    "archive/Lonely.md": "# Lonely\n\nNobody links here; it links [[archive/Beta]].\n",
}


def write_kb(root: Path, notes: dict[str, str]) -> Path:
    for rel, text in notes.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(params=["edge", "local"])
def kb(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Settings]]:
    """A small linked KB and its settings, on Qdrant Edge and on qdrant-client's local mode."""
    folder = write_kb(tmp_path / "kb", NOTES)
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="", qdrant_embedded=request.param, kb_source=str(folder))  # fmt: skip
    yield folder, settings


def sync(settings: Settings, folder: Path) -> Any:
    report = run_sync(settings, Secrets(settings), source_uri=str(folder))
    assert report.error is None, report.error
    return report


@pytest.fixture
def browse_of() -> Iterator[Any]:
    opened: list[SearchService] = []

    def make(settings: Settings) -> BrowseService:
        search = SearchService(settings, Secrets(settings), wire_providers=False)
        opened.append(search)
        return BrowseService(search, NoteReader(lambda: open_source(settings.kb_source)))

    yield make
    for search in opened:
        search.close()


def refs(items: list[Any]) -> list[tuple[str, str | None]]:
    return [(r.target, r.path) for r in items]


def test_link_keys_follow_obsidian() -> None:
    assert path_keys("a/B c/Note.md") == ["note", "b c/note", "a/b c/note"]
    assert link_key("Note.MD") == link_key("./Note") == "note"
    assert link_key("/note") == link_key("/Note.md") == "/note"  # from the root: the whole path alone (adv38)
    assert link_key("Folder/Sub/Note") == "folder/sub/note"
    for attachment in ("x.png", "Doc.PDF", "board.canvas", "clip.mp4"):
        assert link_key(attachment) is None
    assert link_key("") is None and link_key("  /  ") is None
    assert link_key("x" * 600) is None  # longer than a keyword key may be


def test_a_note_with_its_links_backlinks_and_sections(kb: tuple[Path, Settings], browse_of: Any) -> None:
    folder, settings = kb
    sync(settings, folder)
    browse = browse_of(settings)
    hub = browse.note("Hub.md", None, ALL)
    assert hub.title == "Hub" and hub.frontmatter["tags"] == ["graph", "hub"] and hub.degraded == []
    assert hub.links is not None
    # in order, once each; attachments, same-note links, code spans and fences are not links to notes
    assert refs(hub.links.outgoing) == [
        ("Alpha", "Alpha.md"), ("ops/Beta", "ops/Beta.md"), ("Gamma.md", "ops/Gamma.md"), ("Missing note", None),
    ]  # fmt: skip
    # [[Hub]] from Alpha and [[hub]] from ops/Beta (case-insensitive); Lonely does not link here
    assert refs(hub.links.backlinks) == [("Alpha.md", "Alpha.md"), ("ops/Beta.md", "ops/Beta.md")]
    assert [s.heading for s in hub.sections] == ["Hub", "Local heading"]

    gamma = browse.note("ops/Gamma.md", None, ALL)
    assert gamma.links is not None
    # Hub's [[Gamma.md#Setup]] by file name, archive/Beta's [[G-note]] by alias
    assert [r.path for r in gamma.links.backlinks] == ["Hub.md", "archive/Beta.md"]

    # [[ops/Beta]] and [[hub]] mean ops/Beta.md; [[archive/Beta]] means the namesake; [[Beta]] is neither's alone
    old = browse.note("archive/Beta.md", None, ALL)
    assert old.links is not None and [r.path for r in old.links.backlinks] == ["archive/Lonely.md"]
    beta = browse.note("ops/Beta.md", None, ALL)
    assert beta.links is not None and [r.path for r in beta.links.backlinks] == ["Hub.md"]

    setup = browse.note("Alpha.md", "setup", ALL)
    assert setup.section == ["Alpha", "Setup"]
    assert setup.body.startswith("## Setup") and "fine print" in setup.body and "use it" not in setup.body
    assert browse.note("Alpha.md", "Alpha > Setup > Details", ALL).body == "### Details\n\nfine print"
    assert browse.note("Alpha.md", "## usage", ALL).body == "## Usage\n\nuse it"
    with pytest.raises(NoteProblem) as missing:
        browse.note("Alpha.md", "Nope", ALL)
    assert missing.value.kind == "no_section" and "Alpha > Setup > Details" in str(missing.value)


def test_incremental_syncs_keep_backlinks_right(kb: tuple[Path, Settings], browse_of: Any) -> None:
    folder, settings = kb
    sync(settings, folder)

    def backlinks(path: str) -> list[str]:
        browse = browse_of(settings)
        note = browse.note(path, None, ALL)
        browse.search.close()
        assert note.links is not None
        return [r.path for r in note.links.backlinks]

    assert backlinks("Alpha.md") == ["Hub.md"]
    # Hub drops its link to Alpha: Alpha's backlinks lose Hub, with no other note rewritten
    (folder / "Hub.md").write_text(NOTES["Hub.md"].replace("[[Alpha]]", "Alpha"), encoding="utf-8")
    report = sync(settings, folder)
    assert report.updated == 1 and report.unchanged == len(NOTES) - 1
    assert backlinks("Alpha.md") == []
    # a new note links to Alpha; a deleted note's links are gone with it
    (folder / "New.md").write_text("# New\n\n[[alpha]]\n", encoding="utf-8")
    (folder / "ops/Beta.md").unlink()
    report = sync(settings, folder)
    assert (report.added, report.deleted) == (1, 1)
    assert backlinks("Alpha.md") == ["New.md"]
    assert backlinks("Hub.md") == ["Alpha.md"]
    # with ops/Beta gone, Hub's [[ops/Beta]] is unresolved, and a bare [[Beta]] would mean the namesake
    browse = browse_of(settings)
    hub = browse.note("Hub.md", None, ALL)
    assert hub.links is not None and ("ops/Beta", None) in refs(hub.links.outgoing)


def graph_answers(settings: Settings, browse_of: Any) -> dict[str, Any]:
    """What the graph answers of every note: its outgoing links resolved, its backlinks; and the notes a name means
    (a path tail, a title, an alias), and the restricted-link carriers of every note's keys."""
    browse = browse_of(settings)
    out: dict[str, Any] = {}
    for path in sorted(NOTES):
        note = browse.note(path, None, ALL)
        assert note.links is not None and note.degraded == []
        out[path] = (refs(note.links.outgoing), refs(note.links.backlinks), note.links.backlinks_truncated)
    for name in ("Alpha", "G-note", "ops/Beta", "old beta", "lonely", "nobody"):
        out[name] = browse._named(name, ALL, None)
    browse.search.close()
    store = open_store(settings, Secrets(settings))
    try:
        out["carriers"] = link_carriers(store, {k for p in NOTES for k in path_keys(p)} | {"g-note", "hub", "old beta"})
    finally:
        store.close()
    return out


def as_written_before(settings: Settings, paths: Iterable[str]) -> None:
    """Make the store as a kb-search before ``graph_keys`` wrote it, through the store's own interface: these notes'
    first chunks hold their keys in ``path_keys``, ``name_keys``, ``link_keys`` (unprefixed), the collection's
    metadata does not record :data:`GRAPH_KEYS_ONLY`, and (Qdrant Edge) it indexes those three fields instead of
    ``graph_keys``."""
    import qdrant_edge as edge

    store = open_store(settings, Secrets(settings))
    try:
        paths = set(paths)
        dense = {p["path"]: v for p, v in store.note_points(sorted(paths)) if p.get("chunk_index") == 0}
        for p in store.points().values():
            if p["path"] in paths and p["chunk_index"] == 0:
                old = {k: v for k, v in p.items() if k != GRAPH_KEYS}
                old |= {field: stored_keys(p, kind) for kind, field in OLD_GRAPH_FIELDS.items()}
                assert old["path_keys"] == path_keys(p["path"])
                store.upsert([ChunkPoint(p["path"], 0, old, document_vector(p["text"]), dense[p["path"]])])
        store.set_metadata({k: v for k, v in store.metadata().items() if k != GRAPH_KEYS_ONLY})
        if isinstance(store, EdgeStore):
            store.shard.update(edge.UpdateOperation.delete_field_index(GRAPH_KEYS))
            for field in OLD_GRAPH_FIELDS.values():
                store.shard.update(edge.UpdateOperation.create_field_index(field, edge.PayloadSchemaType.Keyword))
            store._written = True
    finally:
        store.close()


def first_chunks(settings: Settings) -> dict[str, dict[str, Any]]:
    store = open_store(settings, Secrets(settings))
    try:
        return {p["path"]: p for p in store.points().values() if p["chunk_index"] == 0}
    finally:
        store.close()


@pytest.mark.parametrize("old", ["every note", "one note"])
def test_a_store_written_before_graph_keys_answers_alike_and_its_next_sync_rewrites_it_once(
    kb: tuple[Path, Settings], browse_of: Any, old: str
) -> None:
    """A store whose notes hold their graph keys in the three fields of a kb-search before ``graph_keys`` (all of
    them, or one note among notes written now) answers every graph question as the store written now does (the
    readers match and read the old fields too); its next sync rewrites each such note once (and records that every
    note holds ``graph_keys``, after which the readers ask it alone), the sync after rewrites nothing; the answers
    stay the same throughout."""
    folder, settings = kb
    sync(settings, folder)
    assert first_chunks(settings)["Alpha.md"][GRAPH_KEYS] == ["p:alpha", "n:alpha", "l:hub"]
    expected = graph_answers(settings, browse_of)
    assert expected["Hub.md"][1] == [("Alpha.md", "Alpha.md"), ("ops/Beta.md", "ops/Beta.md")]
    assert expected["G-note"] == "ops/Gamma.md" and expected["nobody"] is None
    written_before = sorted(NOTES) if old == "every note" else ["Alpha.md"]
    as_written_before(settings, written_before)
    before = first_chunks(settings)
    assert all(GRAPH_KEYS not in before[p] and "link_keys" in before[p] for p in written_before)
    assert graph_answers(settings, browse_of) == expected

    report = sync(settings, folder)
    assert report.updated == len(written_before) and report.unchanged == len(NOTES) - len(written_before)
    after = first_chunks(settings)
    assert all(GRAPH_KEYS in p and not {"path_keys", "name_keys", "link_keys"} & set(p) for p in after.values())
    store = open_store(settings, Secrets(settings))
    try:
        assert store.metadata()[GRAPH_KEYS_ONLY] is True
        if isinstance(store, EdgeStore):  # a collection made before keeps its indexes and gains graph_keys
            assert {GRAPH_KEYS, *OLD_GRAPH_FIELDS.values()} <= set(store.shard.info().payload_schema)
    finally:
        store.close()
    assert graph_answers(settings, browse_of) == expected
    again = sync(settings, folder)
    assert again.updated == 0 and again.unchanged == len(NOTES)
    assert graph_answers(settings, browse_of) == expected


@pytest.mark.parametrize("backend", ["edge", "local"])
def test_the_sync_that_gives_an_older_store_its_graph_keys_embeds_nothing_again(
    backend: str, tmp_path: Path, deepinfra: FakeProvider
) -> None:
    """With an embedding provider (the loopback DeepInfra): the full sync that rewrites a store made before
    ``graph_keys`` keeps every unchanged note's stored dense vectors (its text did not change: none of its chunks is
    sent to the provider, each vector stays as it was), while a note whose text changed meanwhile is embedded as any
    changed note is; the sync after it rewrites nothing."""
    folder = write_kb(tmp_path / "kb", NOTES)
    settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"), qdrant_embedded=backend,
                                 kb_source=str(folder))  # fmt: skip
    first = sync(settings, folder)
    assert first.added == len(NOTES) and first.embedding_calls > 0
    as_written_before(settings, NOTES)

    def dense() -> dict[tuple[str, int], list[float] | None]:
        store = open_store(settings, Secrets(settings))
        try:
            return {(p["path"], p["chunk_index"]): v for p, v in store.note_points(sorted(NOTES))}
        finally:
            store.close()

    before = dense()
    assert before and all(v is not None for v in before.values())
    changed = "Alpha.md"
    (folder / changed).write_text(NOTES[changed].replace("fine print", "finer print"), encoding="utf-8")
    requests = len(deepinfra.calls("embeddings"))

    report = sync(settings, folder)
    assert report.updated == len(NOTES) and report.incomplete is False, report
    alpha = sum(1 for path, _ in before if path == changed)
    sent = [text for call in deepinfra.calls("embeddings")[requests:] for text in call.body["input"]]
    assert len(sent) == alpha and any("finer print" in text for text in sent), sent
    after = dense()
    assert {k: v for k, v in after.items() if k[0] != changed} == {k: v for k, v in before.items() if k[0] != changed}
    assert all(GRAPH_KEYS in p and "link_keys" not in p for p in first_chunks(settings).values())
    again = sync(settings, folder)
    assert again.updated == 0 and again.embedding_calls == 0 and again.unchanged == len(NOTES)


def test_catalog_counts_notes_and_lists_recent_ones(kb: tuple[Path, Settings], browse_of: Any) -> None:
    folder, settings = kb
    sync(settings, folder)
    browse = browse_of(settings)
    catalog = browse.catalog(None, 3, ALL)
    assert catalog.notes == len(NOTES)
    assert {f.value: f.count for f in catalog.tags} == {"graph": 2, "hub": 1, "ops": 1}
    assert {f.value: f.count for f in catalog.types} == {"note": 3, "index": 1, "runbook": 1}
    assert {f.value: f.count for f in catalog.statuses} == {"active": 1, "draft": 1}
    assert {f.value: f.count for f in catalog.folders} == {"ops": 2, "archive": 2}
    assert [n.path for n in catalog.recent] == ["Hub.md", "Alpha.md", "ops/Beta.md"]  # newest 'updated' first
    narrowed = browse.catalog("/ops/", 10, ALL)
    assert narrowed.notes == 2 and [n.path for n in narrowed.recent] == ["ops/Beta.md", "ops/Gamma.md"]
    assert browse.catalog("nowhere", 10, ALL).notes == 0


def test_pages_cover_every_note_once_and_refuse_cursors_never_issued(kb: tuple[Path, Settings], browse_of: Any) -> None:
    folder, settings = kb
    sync(settings, folder)
    browse = browse_of(settings)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        notes, cursor = browse.page(cursor, ALL, limit=4)
        seen += [n.path for n in notes]
        if cursor is None:
            break
    assert sorted(seen) == sorted(NOTES)
    for bad in ("", "x", "n1.", "n1.!!!!", "n1." + "A" * 5000, encode_cursor("nowhere.md"), encode_cursor("../x.md"),
                encode_cursor("Hub.md") + "=", "n2." + encode_cursor("Hub.md")[3:]):  # fmt: skip
        with pytest.raises(InvalidCursor):
            browse.page(bad, ALL, limit=4)
    # a cursor whose note was deleted since is no longer valid
    _, cursor = browse.page(None, ALL, limit=1)
    assert cursor is not None
    browse.search.close()
    (folder / _cursor_path(cursor)).unlink()
    sync(settings, folder)
    with pytest.raises(InvalidCursor):
        browse_of(settings).page(cursor, ALL, limit=1)


def _cursor_path(cursor: str) -> str:
    from kbsearch.browse import decode_cursor

    return decode_cursor(cursor)


def test_scroll_facet_and_ordered_queries_are_qdrants_own_json() -> None:
    """What the browse service sends is valid Qdrant REST JSON (qdrant_client's models accept it as is)."""
    where = {"must": [{"key": "chunk_index", "match": {"value": 0}}, {"key": "folders", "match": {"value": "ops"}}]}
    models.ScrollRequest.model_validate({"filter": where, "limit": 5, "offset": "2f1b5a52-7f4e-5a39-9d39-35d3b7c1c0aa",
                                         "with_payload": {"include": ["path"]}, "with_vector": False})  # fmt: skip
    models.FacetRequest.model_validate({"key": "tags", "filter": where, "limit": 10, "exact": True})
    query = models.QueryRequest.model_validate(
        {"query": {"order_by": {"key": "updated", "direction": "desc"}}, "filter": where, "limit": 3,
         "with_payload": {"include": ["path"]}, "with_vector": False}
    )  # fmt: skip
    assert isinstance(query.query, models.OrderByQuery)
    graph = {"must": [{"key": "chunk_index", "match": {"value": 0}}],
             "should": [{"key": "graph_keys", "match": {"any": ["l:hub"]}}]}  # fmt: skip
    models.QueryRequest.model_validate({"filter": graph, "limit": 500, "with_payload": {"include": ["path"]}})
    held = models.ScrollRequest.model_validate(held_request("ops/Gamma.md", ["hr", "public"]))  # a read's first ask
    assert held.filter is not None and held.limit == 1


def test_a_note_comes_back_without_links_when_the_index_is_missing(tmp_path: Path, browse_of: Any) -> None:
    folder = write_kb(tmp_path / "kb", NOTES)
    settings = Settings(qdrant_path=str(tmp_path / "none"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="", kb_source=str(folder))  # fmt: skip
    note = browse_of(settings).note("Alpha.md", None, ALL)
    assert note.links is None and note.degraded == ["links"] and note.title == "Alpha"


def test_the_obsidian_vault_graph(tmp_path: Path, browse_of: Any) -> None:
    """The real vault: every resolved outgoing link of a note shows this note among the target's backlinks."""
    if not VAULT.is_dir():
        pytest.skip("the Obsidian help vault is not present")
    source = VAULT / "en"
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="", kb_source=str(source))  # fmt: skip
    sync(settings, source)
    browse = browse_of(settings)
    start = "Obsidian Sync/Introduction to Obsidian Sync.md"
    note = browse.note(start, None, ALL)
    assert note.links is not None and note.links.backlinks, "a much-linked note has backlinks"
    resolved = [r for r in note.links.outgoing if r.path is not None][:5]
    assert resolved
    for ref in resolved:
        target = browse.note(ref.path, None, ALL)
        assert target.links is not None
        assert start in [b.path for b in target.links.backlinks] or target.links.backlinks_truncated


def test_links_in_a_table_with_their_pipe_escaped_are_links_to_the_note(tmp_path: Path, browse_of: Any) -> None:
    """A link with an alias inside a Markdown table is written ``[[Note\\|alias]]`` (a bare ``|`` would end the
    cell; Obsidian's own syntax, 84 times in its help vault): the note is ``Note``, as for ``[[Note|alias]]``. The
    backslash was kept in the target (``Alpha\\``): no such note, so the link was unresolved and the target
    lost the backlink (26 of the vault's links)."""
    notes = {
        "Alpha.md": "# Alpha\n\n## Setup\n\nsteps\n",
        "ops/Beta.md": "# Beta\n\nbeta text\n",
        "Table.md": "# Table\n\n| what | where |\n|---|---|\n| first | [[Alpha\\|the alpha note]] |\n"
        "| setup | [[ops/Beta#Usage\\|beta usage]] and ![[diagram.png\\|100]] |\n| plain | [[Alpha#Setup|setup]] |\n",
    }
    folder = write_kb(tmp_path / "kb", notes)
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="", kb_source=str(folder))  # fmt: skip
    sync(settings, folder)
    browse = browse_of(settings)
    table = browse.note("Table.md", None, ALL)
    assert table.links is not None
    assert refs(table.links.outgoing) == [("Alpha", "Alpha.md"), ("ops/Beta", "ops/Beta.md")]
    for path in ("Alpha.md", "ops/Beta.md"):
        target = browse.note(path, None, ALL)
        assert target.links is not None and [b.path for b in target.links.backlinks] == ["Table.md"]


# -- REST: GET /notes/{path}, GET /notes ------------------------------------------------------------------------------


@pytest.fixture
def api(load_search_app: Any, tmp_path: Path) -> Any:
    folder = write_kb(tmp_path / "kb", NOTES)
    store = tmp_path / "q"
    settings = Settings(qdrant_path=str(store), qdrant_url="", embedding_api_key=None, embedding_api_key_param="")
    sync(settings, folder)
    return load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(folder))


def get(app: Any, path: str, query: dict[str, str] | None = None, raw_path: str | None = None) -> tuple[int, Any]:
    from kbsearch_tools.local.apigw import HttpRequest, build_event

    resource, params = "/notes", {}
    if path.startswith("/notes/"):
        resource, params = "/notes/{path+}", {"path": (raw_path or path)[len("/notes/") :]}
    qs = "&".join(f"{k}={quote(v)}" for k, v in (query or {}).items())
    event = build_event(HttpRequest("GET", raw_path or path, qs, [], b""), resource, params, "dev")
    result = app(event)
    return result["statusCode"], json.loads(result["body"])


def test_rest_note_with_sections_and_links(api: Any) -> None:
    status, body = get(api, "/notes/Alpha.md", {"section": "Setup"})
    assert status == 200 and body["section"] == ["Alpha", "Setup"] and body["links"]["backlinks"][0]["path"] == "Hub.md"
    status, body = get(api, "/notes/ops/Gamma.md", raw_path="/notes/ops%2FGamma.md")
    assert status == 200 and body["title"] == "Gamma"
    status, body = get(api, "/notes/ops/Gamma.md", raw_path="/notes/ops/Gam%6Da.md")
    assert status == 200 and body["path"] == "ops/Gamma.md"


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        ("/notes/..%2FHub.md", 400, "bad_path"),
        ("/notes/ops/..%2F..%2Fetc%2Fpasswd.md", 400, "bad_path"),
        ("/notes/Hub%00.md", 400, "bad_path"),
        ("/notes/%FF%FE.md", 400, "bad_path"),
        ("/notes/ops//Gamma.md", 400, "bad_path"),
        ("/notes/Hub.txt", 400, "bad_path"),
        ("/notes/Nowhere.md", 404, "not_found"),
        ("/notes/" + "a/" * 600 + "x.md", 400, "bad_path"),
    ],
)
def test_rest_refuses_bad_paths_with_a_clear_4xx(api: Any, raw: str, status: int, code: str) -> None:
    got, body = get(api, "/notes/x", raw_path=raw)
    assert (got, body["error"]) == (status, code), body


#: Notes whose names hold a percent sign, and URLs whose '%' starts no escape (a percent sign is `%25`).
PERCENT_NOTES = {"100%.md": "# Full\n\nAll of it.\n", "a%zz.md": "# Zz\n\nA literal escape.\n"}
NO_ESCAPES = ["100%.md", "a%zz.md", "a%2.md", "x%/a.md", "%.md", "a%g1.md"]


def test_a_path_whose_percent_starts_no_escape_is_400_never_another_note(load_search_app: Any, tmp_path: Path) -> None:
    """`GET /notes/a%zz.md` and `resources/read` of `kb://note/100%.md`: a `%` starting no escape was kept as text,
    so the URL read the note `a%zz.md` (whose URL is `a%25zz.md`): two URLs for one note, one of them no URL at
    all, where S3 notifications of such keys are refused (round 14). Now a 400 `bad_path` naming the `%` (-32002 over
    MCP); the notes are read by their URLs, `%25`."""
    folder = write_kb(tmp_path / "kb", {**NOTES, **PERCENT_NOTES})
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    sync(settings, folder)
    app = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(folder))
    for name in PERCENT_NOTES:
        status, body = get(app, "/notes/x", raw_path="/notes/" + quote(name))
        assert status == 200 and body["path"] == name, body
    for raw in NO_ESCAPES:
        status, body = get(app, "/notes/x", raw_path="/notes/" + raw)
        assert (status, body["error"]) == (400, "bad_path") and "a '%' that starts no percent-escape" in body["message"]
    for raw, expected in [(quote("100%.md"), "100%.md"), ("100%.md", None), ("a%zz.md", None)]:
        request = {"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": f"kb://note/{raw}"}}
        event = build_event(HttpRequest("POST", "/mcp", "", [("Content-Type", "application/json")],
                                        json.dumps(request).encode()), "/mcp", {}, "dev")  # fmt: skip
        answer = json.loads(app(event)["body"])
        if expected is None:
            error = answer["error"]
            assert error["code"] == -32002 and "starts no percent-escape" in error["message"], answer
        else:
            assert answer["result"]["contents"][0]["uri"] == f"kb://note/{quote(expected)}", answer


def test_rest_unknown_section_is_404_listing_headings(api: Any) -> None:
    status, body = get(api, "/notes/Alpha.md", {"section": "nope"})
    assert status == 404 and body["error"] == "no_section" and "Alpha > Usage" in body["message"]


def test_rest_section_over_its_documented_bound_is_422_never_echoed(api: Any) -> None:
    """``?section=`` over the 500 characters the API documents (and ``kb_get_note`` enforces): 422 naming the
    field; it was looked up and echoed whole in the 404 (up to the request line's 64 KiB)."""
    for section in ("y" * 501, "я" * 8000, "> " * 4000 + "x"):
        status, body = get(api, "/notes/Alpha.md", {"section": section})
        assert status == 422 and body["detail"][0]["loc"] == ["query", "section"], body
        assert len(json.dumps(body)) < 500
    status, body = get(api, "/notes/Alpha.md", {"section": " " * 600 + "Usage" + " " * 600})  # spaces aside: 5
    assert status == 200, body


def test_rest_catalog(api: Any) -> None:
    status, body = get(api, "/notes", {"recent": "2", "path_prefix": "ops"})
    assert status == 200 and body["notes"] == 2 and len(body["recent"]) == 2
    for bad in ("-1", "51", "x", "1.5", ""):
        status, body = get(api, "/notes", {"recent": bad})
        assert status == 422, bad


def test_sample_kb_notes_resolve(load_search_app: Any, bm25_index: Path, tmp_path: Path) -> None:
    from tests.conftest import copy_store

    store = tmp_path / "q"
    copy_store(bm25_index, store)
    app = load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(ROOT / "sample-kb"))
    status, body = get(app, "/notes/en/architecture/System overview.md",
                       raw_path="/notes/en/architecture/System%20overview.md")  # fmt: skip
    assert status == 200
    assert {r["path"] for r in body["links"]["outgoing"]} >= {"en/providers/DeepInfra.md", "en/providers/Fireworks.md"}
    assert "en/Onboarding.md" in [r["path"] for r in body["links"]["backlinks"]]  # by title: [[kb-search system ...]]


def test_a_scope_sees_links_counts_and_pages_of_the_notes_it_may_read_only(tmp_path: Path, browse_of: Any) -> None:
    """A restricted note (frontmatter ``access: [hr]``) is, to a public caller, a missing note: not readable, no
    backlink from it, no link to it listed, not counted, not paged, its cursor unknown. To ``hr`` it is there."""
    notes = dict(NOTES)
    notes["Secret.md"] = (
        "---\ntitle: Secret\naccess: [hr]\ntags: [secret-tag]\ntype: memo\n---\n# Secret\n\n[[Alpha]]\n"
    )
    notes["Hub.md"] = NOTES["Hub.md"].replace("[[Missing note]]", "[[Secret]]")
    folder = write_kb(tmp_path / "kb", notes)
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="", kb_source=str(folder))  # fmt: skip
    sync(settings, folder)
    browse = browse_of(settings)
    public, hr = Scope.public("someone"), Scope.of("hr-person", ["hr"])
    with pytest.raises(NoteProblem) as hidden:
        browse.note("Secret.md", None, public)
    assert hidden.value.kind == "not_found" and str(hidden.value) == "no note at 'Secret.md'; use kb_search to find " \
        "the right path"  # fmt: skip
    alpha = browse.note("Alpha.md", None, public)
    assert alpha.links is not None and [r.path for r in alpha.links.backlinks] == ["Hub.md"]
    hub = browse.note("Hub.md", None, public)
    assert hub.links is not None and "Secret" not in [r.target for r in hub.links.outgoing]  # as a hit's links
    catalog = browse.catalog(None, 50, public)
    assert catalog.notes == len(NOTES) and "secret-tag" not in {t.value for t in catalog.tags}
    assert "memo" not in {t.value for t in catalog.types} and "Secret.md" not in [n.path for n in catalog.recent]
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page, cursor = browse.page(cursor, public, limit=3)
        seen += [n.path for n in page]
        if cursor is None:
            break
    assert "Secret.md" not in seen and len(seen) == len(NOTES)
    with pytest.raises(InvalidCursor):
        browse.page(encode_cursor("Secret.md"), public, limit=3)
    # the hr group reads it, with its links
    secret = browse.note("Secret.md", None, hr)
    assert secret.links is not None and [r.path for r in secret.links.outgoing] == ["Alpha.md"]
    hub = browse.note("Hub.md", None, hr)
    assert hub.links is not None and ("Secret", "Secret.md") in refs(hub.links.outgoing)
    alpha = browse.note("Alpha.md", None, hr)
    assert alpha.links is not None and [r.path for r in alpha.links.backlinks] == ["Hub.md", "Secret.md"]
    assert browse.catalog(None, 0, hr).notes == len(notes)
    assert browse.page(encode_cursor("Secret.md"), hr, limit=3)[0][0].path == "Secret.md"


# -- link graphs built to hurt ---------------------------------------------------------------------------------------
#: Notes whose links are the hostile part: 20,000 distinct targets; one target 100,000 times; one target in 3,000
#: spellings (case, ``.md``, ``./``, a heading, an alias); 2,000 targets of 400 characters and 300 of 600 (over
#: a key's 512); a note linking to itself every way; a three-note cycle.
LINK_SHAPES = {
    "many.md": "# Many\n\n" + " ".join(f"[[n{i}]]" for i in range(20_000)) + "\n",
    "echo.md": "# Echo\n\n" + "[[Many]] " * 100_000 + "\n",
    "spellings.md": "# Spellings\n\n"
    + " ".join(
        f"[[{s}]]" for i in range(500) for s in ("Many", "MANY", "many.md", "./Many", f"Many#h{i}", f"Many|alias {i}")
    )
    + "\n",
    "long.md": "# Long\n\n"
    + " ".join(f"[[{str(i).rjust(400, 'x')}]]" for i in range(2_000))
    + " "
    + " ".join(f"[[{str(i).rjust(600, 'y')}]]" for i in range(300))
    + "\n",
    "self.md": "# Self\n\n[[self]] [[Self.md]] [[self#Self]] [[#Self]] [[self|me]] ![[self]]\n",
    "cycle/a.md": "# A\n\nTo [[b]].\n",
    "cycle/b.md": "# B\n\nTo [[c]].\n",
    "cycle/c.md": "# C\n\nTo [[a]].\n",
}


def test_notes_with_huge_or_tangled_link_graphs_stay_bounded(load_search_app: Any, tmp_path: Path) -> None:
    """A note's links were checked each against every one before it (20,000 distinct links: 1.4 s to parse,
    80,000 in a note under the 1 MiB limit: 25 s) and the whole list was stored on each of its chunks (that note:
    571 chunks, 3 minutes, 14.9 GB of memory and 487 MB of index for one `kbsearch index`). A note keeps its first
    1,000 distinct targets (its text still shows every link), a chunk stores the 100 a hit shows; reading such a
    note by path, its backlinks, self-links and cycles answer as for any note."""
    folder = write_kb(tmp_path / "kb", LINK_SHAPES)
    store = tmp_path / "q"
    settings = Settings(qdrant_path=str(store), qdrant_url="", embedding_api_key=None, embedding_api_key_param="")
    report = sync(settings, folder)
    assert report.added == len(LINK_SHAPES) and report.skipped == []
    opened = open_store(settings, Secrets(settings))
    try:
        points = list(opened.points().values())
    finally:
        opened.close()
    assert max(len(payload_links(p.get("links"))) for p in points) == 100
    assert max(len(stored_keys(p, LINK_KEY)) for p in points) == 1000
    many = [p for p in points if p["path"] == "many.md"]
    assert len(many) > 1 and all(p["links"] == "\n".join(f"n{i}" for i in range(100)) for p in many)
    assert stored_keys(next(p for p in points if p["path"] == "long.md" and p["chunk_index"] == 0), LINK_KEY) == [
        str(i).rjust(400, "x") for i in range(1000)
    ]  # the first 1,000 distinct targets; those over a key's 512 characters could never be keys anyway

    api = load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(folder))
    status, body = get(api, "/notes/many.md")
    assert status == 200 and body["links"]["outgoing"][:2] == [
        {"target": "n0", "path": None, "title": None}, {"target": "n1", "path": None, "title": None}
    ]  # fmt: skip
    assert len(body["links"]["outgoing"]) == 1000 and "[[n19999]]" in body["body"]
    assert [r["path"] for r in body["links"]["backlinks"]] == ["echo.md", "spellings.md"]  # once each
    status, body = get(api, "/notes/spellings.md")
    assert status == 200 and [(r["target"], r["path"]) for r in body["links"]["outgoing"]] == [
        ("Many", "many.md"), ("/Many", "many.md"),  # `[[./Many]]` is a path from the root (adv38): another link
    ]  # fmt: skip
    status, body = get(api, "/notes/self.md")
    assert status == 200 and [(r["target"], r["path"]) for r in body["links"]["outgoing"]] == [("self", "self.md")]
    assert body["links"]["backlinks"] == []  # a note is not its own backlink
    for name, to, back in (("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b")):
        status, body = get(api, f"/notes/cycle/{name}.md")
        assert status == 200 and [r["path"] for r in body["links"]["outgoing"]] == [f"cycle/{to}.md"]
        assert [r["path"] for r in body["links"]["backlinks"]] == [f"cycle/{back}.md"]
    event = build_event(HttpRequest("POST", "/search", "", [("Content-Type", "application/json")],
                                    json.dumps({"query": "many", "top_k": 10}).encode()), "/search", {}, "dev")  # fmt: skip
    result = api(event)
    hits = json.loads(result["body"])["results"]
    assert result["statusCode"] == 200 and hits and all(len(h["links"]) <= 100 for h in hits)


#: headings written as no reader sees them, each with the name a reader types for it (round 16)
ODD_HEADINGS = {
    unicodedata.normalize("NFD", "Настройка йогуртницы"): "настройка йогуртницы",  # a note saved by a macOS tool
    "Zebra\u00adfinch care": "zebrafinch care",  # a soft hyphen pasted from a PDF
    "Quokka\u200bkeys": "Quokkakeys",  # a zero-width space
    "\uff31\uff44\uff52\uff41\uff4e\uff54 backup": "Qdrant backup",  # full width
    # a letter of the other script that looks the same (round 37): a Cyrillic Е and С, a Latin a
    "Ошибка \u0415RR-4012": "ошибка ERR-4012",
    "\u0421anary rollout": "Canary rollout",
    "Новая п\x61пка": "новая папка",
}


def test_a_section_is_found_by_its_heading_as_a_reader_types_it(load_search_app: Any, tmp_path: Path) -> None:
    """`?section=` and `kb_get_note`'s `section` named a heading that was written in NFD (`й` as `и` + U+0306), with
    a soft hyphen or a zero-width space inside a word, or in full-width letters: the heading was matched code point
    by code point, so the name as its reader types it (and as an assistant echoes it back) was a 404 `no section`
    listing a heading that looked the same. Headings and the name asked for are compared as BM25 reads them
    (`lexical.reading`), case- and space-insensitive as before. Round 37: so was a heading holding a letter of the
    other script that looks the same (`Ошибка ЕRR-4012` with a Cyrillic `Е`, `Новая пaпка` with a Latin `a`): words
    mixing the scripts are read in one (`lexical.folded`)."""
    body = "".join(f"## {heading}\n\ntext of {i}\n\n" for i, heading in enumerate(ODD_HEADINGS))
    folder = write_kb(tmp_path / "kb", {"Odd.md": f"# Odd\n\n{body}"})
    store = tmp_path / "q"
    settings = Settings(qdrant_path=str(store), qdrant_url="", embedding_api_key=None, embedding_api_key_param="")
    sync(settings, folder)
    app = load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(folder))
    for i, (heading, typed) in enumerate(ODD_HEADINGS.items()):
        for asked in (typed, heading, f"Odd > {typed}"):
            status, answer = get(app, "/notes/Odd.md", {"section": asked})
            assert status == 200 and answer["section"] == ["Odd", heading], (ascii(asked), answer)
            assert f"text of {i}" in answer["body"], answer
        result = json.loads(app(mcp_event("kb_get_note", {"path": "Odd.md", "section": typed}))["body"])["result"]
        assert result["structuredContent"]["section"] == ["Odd", heading], (ascii(typed), result)
    status, answer = get(app, "/notes/Odd.md", {"section": "Zebra finch care"})  # another name: still a 404
    assert status == 404 and answer["error"] == "no_section", answer


def test_a_section_whose_heading_holds_the_path_separator_is_found_by_its_text(
    load_search_app: Any, tmp_path: Path
) -> None:
    """A heading that holds ` > ` itself (`## Settings > Files and links`, as a menu path is written): the name was
    always split at `>` as a heading path (`Settings`, then `Files and links` under it), so the heading could not
    be asked for at all (404 `no_section` listing it). A name that is a heading's whole text is that heading; a
    heading path's tail as before."""
    folder = write_kb(tmp_path / "kb", {"Menu.md": "# Menu\n\n## Settings > Files and links\n\nmenu text\n\n"
                                                   "## Rotation\n\n### Steps\n\nsteps text\n"})  # fmt: skip
    store = tmp_path / "q"
    settings = Settings(qdrant_path=str(store), qdrant_url="", embedding_api_key=None, embedding_api_key_param="")
    sync(settings, folder)
    app = load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(folder))
    for asked in ("Settings > Files and links", "settings >  files and LINKS", "Menu > Settings > Files and links"):
        status, answer = get(app, "/notes/Menu.md", {"section": asked})
        assert status == 200 and answer["section"] == ["Menu", "Settings > Files and links"], (asked, answer)
    status, answer = get(app, "/notes/Menu.md", {"section": "Rotation > Steps"})
    assert status == 200 and answer["section"] == ["Menu", "Rotation", "Steps"], answer


@pytest.mark.parametrize("recorded", [True, False])
def test_qdrant_cloud_is_asked_for_graph_keys_alone_once_every_note_holds_them(
    recorded: bool, tmp_path: Path, load_search_app: Any
) -> None:
    """Through Qdrant Cloud's REST path (a loopback Qdrant answering one note written now and one a kb-search before
    ``graph_keys`` wrote): a note's links are one batch of two searches (round 35: the notes its links mean, the
    notes linking to it), their graph conditions on the prefixed ``graph_keys`` alone
    when the collection records :data:`GRAPH_KEYS_ONLY` (a collection made now does not index the old fields, and
    Qdrant Cloud's strict mode refuses a filter on a field without an index), and on the three old fields too when
    it does not (a store made before, which indexes them); the answer reads both shapes alike."""
    from kbsearch_tools.fakes import FakeEndpoint
    from tests.integration.test_store_answers import qdrant_answering

    folder = write_kb(tmp_path / "kb", NOTES)
    endpoint = FakeEndpoint().start()
    metadata: dict[str, Any] = {"access_restricted_links": {}} | ({GRAPH_KEYS_ONLY: True} if recorded else {})
    answer = [
        {"id": 1, "payload": {"path": "Alpha.md", "title": "Alpha", GRAPH_KEYS: ["p:alpha", "n:alpha", "l:hub"]}},
        {"id": 2, "payload": {"path": "ops/Beta.md", "title": "Beta", "path_keys": ["beta", "ops/beta"],
                              "name_keys": ["beta"], "link_keys": ["hub"]}},
    ]  # fmt: skip

    endpoint.responder = qdrant_answering(answer, metadata, endpoint=endpoint)
    try:
        app = load_search_app(KB_SOURCE=str(folder), QDRANT_URL=endpoint.url, QDRANT_API_KEY="qdrant-test-key")
        got = app(build_event(HttpRequest("GET", "/notes/Hub.md", "", [], b""), "/notes/{path+}",
                              {"path": "Hub.md"}, "dev"))  # fmt: skip
    finally:
        endpoint.stop()
    assert got["statusCode"] == 200, got
    links = json.loads(got["body"])["links"]
    assert [(r["target"], r["path"]) for r in links["outgoing"]][:2] == [("Alpha", "Alpha.md"),
                                                                          ("ops/Beta", "ops/Beta.md")]  # fmt: skip
    assert [r["path"] for r in links["backlinks"]] == ["Alpha.md", "ops/Beta.md"]
    (batch,) = [r.body for r in endpoint.requests if r.path.split("?")[0] == "/collections/kb/points/query/batch"]
    meant, linking = (search["filter"]["should"] for search in batch["searches"])  # one batch of two searches
    old = {} if recorded else OLD_GRAPH_FIELDS
    assert {c["key"] for c in meant} == {GRAPH_KEYS, *(v for k, v in old.items() if k != LINK_KEY)}
    assert {c["key"] for c in linking} == {GRAPH_KEYS, *(v for k, v in old.items() if k == LINK_KEY)}
    assert {"key": GRAPH_KEYS, "match": {"any": ["l:hub", "l:/hub"]}} in linking  # and a link from the root (adv38)
    assert all(k.startswith(("p:", "n:")) for c in meant if c["key"] == GRAPH_KEYS for k in c["match"]["any"])
    assert all(k.startswith("l:") for c in linking if c["key"] == GRAPH_KEYS for k in c["match"]["any"])


def test_qdrant_cloud_collection_made_before_is_sent_the_graph_keys_index_alone() -> None:
    """Through qdrant-client (Qdrant Cloud's path), against a loopback Qdrant: a collection whose payload indexes are
    a kb-search's before ``graph_keys`` (``path_keys``, ``name_keys``, ``link_keys`` among them) is sent one new
    index, ``graph_keys`` as a keyword index, and nothing else."""
    from kbsearch.qdrant.query import CLOUD_INDEXES, PAYLOAD_INDEXES, REACH
    from tests.integration.test_access_reach import cloud_index_requests

    before = {k: v for k, v in (PAYLOAD_INDEXES | CLOUD_INDEXES).items() if k != GRAPH_KEYS}
    before |= dict.fromkeys(OLD_GRAPH_FIELDS.values(), "keyword")
    sent = cloud_index_requests(before, {REACH: {"type": "keyword", "is_tenant": True}})
    assert sent == [{"field_name": GRAPH_KEYS, "field_schema": "keyword"}]
