"""The restricted link targets (``RESTRICTED_LINKS``) against the writers that rewrite them: a link into a note a
caller may not read is hidden from that caller, and a link to a note that is gone answers exactly as a link to a
note that never existed, whatever order event batches and full syncs write in.

Through real interfaces: S3 events from moto's bucket through the indexer handler, the lease table in moto's
DynamoDB, the embedded Qdrant Edge store, searches through the search handler as API Gateway calls it. The
interleavings are driven by the sync's own progress callback, its source's listing and the lease table's calls
(no sleeps as synchronisation)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from kbsearch.access import Scope
from kbsearch.config import Secrets, Settings
from kbsearch.events import Scope as KeyScope
from kbsearch.events import read_batch
from kbsearch.indexer import ChangeSync, Indexer, SyncOptions, SyncReport, run_sync
from kbsearch.lease import Lease, short_lease
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import LINK_NAMES, RESTRICTED_LINKS
from kbsearch.sequencers import DynamoSequencers
from kbsearch.sources import open_source
from kbsearch_tools.local.apigw import HttpRequest, build_event, parse_result
from kbsearch_tools.s3events import EventPath, sqs_event
from tests.integration.test_events import (
    BUCKET,
    CALLERS,
    PREFIX,
    TABLE,
    api_hits,
    assert_as_a_full_sync,
    doc,
    hits_as,
)
from tests.integration.test_events import Indexer as Handler
from tests.integration.test_events import aws as aws  # noqa: PLC0414 (the fixture, shared)
from tests.integration.test_events import restricted_list as recorded


def note_links(load_search_app: Any, settings: Settings, key_id: str | None, path: str) -> dict[str, Any]:
    """``GET /notes/{path}``'s ``links`` as the caller with ``key_id`` (None: no key) gets them, a new container."""
    app = load_search_app(QDRANT_PATH=settings.qdrant_path, ACCESS_GROUPS=json.dumps(CALLERS))
    try:
        event = build_event(HttpRequest("GET", f"/notes/{path}", "", [], b""), "/notes/{path+}", {"path": path}, "dev")
        event["requestContext"]["identity"]["apiKeyId"] = key_id
        answer = parse_result(app(event))
        assert answer.status == 200, answer.body
        return dict(json.loads(answer.body)["links"])
    finally:
        app.module.api.container.close()


def outgoing(load_search_app: Any, settings: Settings, key_id: str | None, path: str) -> list[dict[str, Any]]:
    """``GET /notes/{path}``'s outgoing links as the caller with ``key_id`` gets them."""
    return list(note_links(load_search_app, settings, key_id, path)["outgoing"])


def test_a_deleted_restricted_note_answers_as_a_note_that_never_existed(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_search_app: Any
) -> None:
    """A public note links to restricted notes and to a note that never existed. For a caller from whom a
    restricted note is hidden, a link naming no note is hidden too (in a search hit and in the note's outgoing
    links), so the links left out tell nothing of which names are restricted notes. The restricted note is deleted
    (an S3 ObjectRemoved event, no reconcile): for every caller the link to it answers exactly as the link to the
    note that never existed. A key another note still carries keeps that note's groups; a move drops the old key;
    with no restricted note left, a link naming no note is shown to everyone."""
    handler = Handler(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}_access.yaml", b"hr/: [hr]\n")
    aws.put(f"{PREFIX}pub/welcome.md", doc("Welcome", "welcome: see [[Plan|the plan]], [[Ghost]] and [[Budget]]"))
    aws.put(f"{PREFIX}hr/Plan.md", doc("Plan", "the plan"))
    aws.put(f"{PREFIX}hr/deep/Budget.md", doc("Budget", "the hr budget"))
    aws.put(f"{PREFIX}finance/Budget.md", doc("Budget", "the finance budget", "access: [finance]\n"))
    assert handler(aws.receive()) == []
    settings = handler.settings()
    assert run_sync(settings, Secrets(settings)).error is None  # the list is recorded once by a full sync
    assert api_hits(load_search_app, settings, None)["pub/welcome.md"] == []  # Plan, Budget restricted; Ghost none
    assert api_hits(load_search_app, settings, "id-hr")["pub/welcome.md"] == ["Plan", "Budget"]  # finance/Budget
    assert api_hits(load_search_app, settings, "id-fin")["pub/welcome.md"] == ["Budget"]
    for key_id in (None, "id-hr", "id-fin", "id-staff"):
        assert "Ghost" not in [r["target"] for r in outgoing(load_search_app, settings, key_id, "pub/welcome.md")]

    aws.delete(f"{PREFIX}hr/Plan.md")  # deleted: one ObjectRemoved event, no reconcile
    assert handler(aws.receive()) == []
    for key_id in (None, "id-hr", "id-fin", "id-staff"):
        links = api_hits(load_search_app, settings, key_id)["pub/welcome.md"]
        assert "Plan" not in links and "Ghost" not in links, (key_id, links)  # finance/Budget still hidden
        refs = {ref["target"] for ref in outgoing(load_search_app, settings, key_id, "pub/welcome.md")}
        assert "Plan" not in refs and "Ghost" not in refs, (key_id, refs)  # as the note that never existed
    assert "plan" not in recorded(settings)

    aws.delete(f"{PREFIX}hr/deep/Budget.md")  # another note still carries "budget": finance's groups stay
    assert handler(aws.receive()) == []
    assert recorded(settings)["budget"] == ["finance"]
    assert "Budget" not in api_hits(load_search_app, settings, "id-hr")["pub/welcome.md"]  # hr may not read it
    assert api_hits(load_search_app, settings, "id-fin")["pub/welcome.md"] == ["Plan", "Ghost", "Budget"]  # none hidden
    assert_as_a_full_sync(handler, tmp_path)

    aws.delete(f"{PREFIX}finance/Budget.md")  # moved out of its name (delete + create): no note is Budget now
    aws.put(f"{PREFIX}finance/Budget 2027.md", doc("Budget 2027", "the next budget", "access: [finance]\n"))
    assert handler(aws.receive()) == []
    assert api_hits(load_search_app, settings, None)["pub/welcome.md"] == []  # Budget 2027 is hidden from it
    assert api_hits(load_search_app, settings, "id-fin")["pub/welcome.md"] == ["Plan", "Ghost", "Budget"]
    assert_as_a_full_sync(handler, tmp_path)

    aws.delete(f"{PREFIX}finance/Budget 2027.md")  # no restricted note left: nothing a link could tell
    assert handler(aws.receive()) == []
    assert api_hits(load_search_app, settings, None)["pub/welcome.md"] == ["Plan", "Ghost", "Budget"]
    paths = {ref["target"]: ref["path"] for ref in outgoing(load_search_app, settings, None, "pub/welcome.md")}
    assert paths == {"Plan": None, "Ghost": None, "Budget": None}
    assert_as_a_full_sync(handler, tmp_path)


def test_the_same_key_in_one_batch_public_restricted_and_gone(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch deletes the restricted carrier of a key and adds a public one (shown), then another batch
    deletes the public one and adds a restricted one (hidden): the list follows what the index holds."""
    handler = Handler(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}pub/welcome.md", doc("Welcome", "welcome: see [[Plan]]"))
    aws.put(f"{PREFIX}a/Plan.md", doc("Plan", "a plan", "access: [hr]\n"))
    assert handler(aws.receive()) == []
    settings = handler.settings()
    assert run_sync(settings, Secrets(settings)).error is None
    assert hits_as(settings, Scope.public()) == {"pub/welcome.md": []}
    aws.delete(f"{PREFIX}a/Plan.md")
    aws.put(f"{PREFIX}b/Plan.md", doc("Plan", "b plan"))
    assert handler(aws.receive()) == []
    assert hits_as(settings, Scope.public(), "welcome")["pub/welcome.md"] == ["Plan"]
    aws.delete(f"{PREFIX}b/Plan.md")
    aws.put(f"{PREFIX}c/Plan.md", doc("Plan", "c plan", "access: [finance]\n"))
    assert handler(aws.receive()) == []
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == []
    assert hits_as(settings, Scope.of("k", ["finance"]))["pub/welcome.md"] == ["Plan"]
    assert_as_a_full_sync(handler, tmp_path)


def _s3_settings(tmp_path: Path) -> Settings:
    return Settings(kb_source=f"s3://{BUCKET}/{PREFIX}", qdrant_path=str(tmp_path / "store"), index_lease_table=TABLE,
                    embedding_api_key=None)  # fmt: skip


def test_a_full_sync_keeps_the_entry_of_a_batch_that_wrote_while_it_ran(aws: EventPath, tmp_path: Path) -> None:
    """An event batch that started before a full sync took the index lease writes a restricted note (and its
    entry in the list) after the sync listed the KB: the sync's own rewrite of the list, under the ``links`` lease,
    derives it from the index and keeps the entry. The batch runs inside the sync, between its listing and its
    rewrite of the list (the sync's progress callback, called once per note it indexes)."""
    settings = _s3_settings(tmp_path)
    aws.receive()
    aws.put(f"{PREFIX}pub/welcome.md", doc("Welcome", "welcome: see [[Plan]] and [[Ghost]]"))
    assert run_sync(settings, Secrets(settings)).error is None
    aws.put(f"{PREFIX}pub/other.md", doc("Other", "welcome other"))  # work for the next full sync
    aws.receive()  # (its own event: the full sync below covers it)

    source = open_source(settings.kb_source)
    store = open_store(settings, Secrets(settings))
    links_lock = partial(short_lease, settings, "links")
    batches: list[dict[str, Any]] = []

    def batch_meanwhile(done: int, total: int, path: str) -> None:
        if batches:
            return
        aws.put(f"{PREFIX}hr/Plan.md", doc("Plan", "the plan", "access: [hr]\n"))
        changes = read_batch(sqs_event(aws.receive()), KeyScope(BUCKET, PREFIX)).changes
        sync = ChangeSync(source, store, None, SyncOptions(), DynamoSequencers(TABLE, "kb"), links_lock)
        report = sync.apply(changes)
        assert report.error is None and report.added == 1
        batches.append(dict(store.metadata()[RESTRICTED_LINKS]))

    try:
        report = Indexer(source, store, None, SyncOptions(full=True), batch_meanwhile, links_lock).sync()
    finally:
        store.close()
    assert batches == [{"plan": ["hr"], "hr/plan": ["hr"]}]  # the batch ran in the middle, and recorded its entry
    assert report.error is None and report.updated == 1 and report.added == 1  # pub/other.md, listed before
    assert recorded(settings) == batches[0]  # the sync's rewrite kept it
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == []  # Ghost names no note: hidden with Plan
    assert hits_as(settings, Scope.of("k", ["hr"]))["pub/welcome.md"] == ["Plan", "Ghost"]


def test_a_full_sync_rewrites_the_list_only_with_the_links_lease(aws: EventPath, tmp_path: Path) -> None:
    """While another writer holds the ``links`` lease, a full sync does not write the list at all: it says the
    run is incomplete (the list untouched), and the next run, with the lease free, records it."""
    settings = _s3_settings(tmp_path)
    aws.receive()
    aws.put(f"{PREFIX}pub/welcome.md", doc("Welcome", "welcome: see [[Plan]]"))
    assert run_sync(settings, Secrets(settings)).error is None
    assert recorded(settings) == {}
    aws.put(f"{PREFIX}hr/Plan.md", doc("Plan", "the plan", "access: [hr]\n"))
    holder = Lease(TABLE, "links#kb", ttl_s=60, owner="a batch mid-rewrite")
    holder.acquire()
    try:
        impatient = partial(short_lease, settings, "links", 0.3)
        source, store = open_source(settings.kb_source), open_store(settings, Secrets(settings))
        try:
            report = Indexer(source, store, None, SyncOptions(), None, impatient).sync()
        finally:
            store.close()
        assert report.incomplete and report.error and "restricted link targets were not recorded" in report.error
        assert report.added == 1 and recorded(settings) == {}  # the note is written; the list is not
    finally:
        holder.release()
    report = run_sync(settings, Secrets(settings))
    assert report.error is None and not report.incomplete
    assert recorded(settings) == {"plan": ["hr"], "hr/plan": ["hr"]}


def write(root: Path, notes: dict[str, str]) -> None:
    for path, text in notes.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")


def test_links_by_a_restricted_notes_title_or_alias_are_hidden_too(tmp_path: Path, load_search_app: Any) -> None:
    """A link names a note by its path, its title or an alias (kbsearch.links.resolve): a link into a restricted
    note by its title or alias is hidden from a caller who may not read it, as a link by its path is (the title
    and the alias are the restricted note's words: they never reach that caller), in a search hit and in the
    linking note's outgoing links; a public note of that name shows it. A link naming no note is hidden from a
    caller from whom any restricted note is hidden (it would tell the two apart)."""
    kb = tmp_path / "kb"
    write(kb, {
        "_access.yaml": "hr/: [hr]\n",
        "pub/welcome.md": "# Welcome\nwelcome: see [[Q3 Forecast|the forecast]], [[Pay grid|the pay page]], "
                          "[[Ghost]] and [[Open plan]]\n",
        "finance/budget.md": "---\naccess: [finance]\naliases: [Q3 Forecast]\n---\n# Budget\nthe budget\n",
        "hr/bands.md": "---\ntitle: Pay grid\n---\n# Bands\nthe bands\n",
        "hr/open.md": "---\ntitle: Open plan\n---\n# Open\nrestricted, but a public note has its title\n",
        "pub/open.md": "---\ntitle: Open plan\n---\n# Open\nthe public one\n",
    })  # fmt: skip
    settings = Settings(qdrant_path=str(tmp_path / "q"), embedding_api_key=None)
    assert run_sync(settings, Secrets(settings), source_uri=str(kb)).error is None
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == ["Open plan"]
    assert hits_as(settings, Scope.of("k", ["finance"]))["pub/welcome.md"] == ["Q3 Forecast", "Open plan"]
    assert hits_as(settings, Scope.of("k", ["hr"]))["pub/welcome.md"] == ["Pay grid", "Open plan"]
    every = ["Q3 Forecast", "Pay grid", "Ghost", "Open plan"]
    assert hits_as(settings, Scope.of("k", ["hr", "finance"]))["pub/welcome.md"] == every  # hidden nothing
    app = load_search_app(QDRANT_PATH=settings.qdrant_path, KB_SOURCE=str(kb), ACCESS_GROUPS=json.dumps(CALLERS))
    try:
        event = build_event(HttpRequest("GET", "/notes/pub/welcome.md", "", [], b""), "/notes/{path+}",
                            {"path": "pub/welcome.md"}, "dev")  # fmt: skip
        answer = parse_result(app(event))
        assert answer.status == 200
        refs = json.loads(answer.body)["links"]["outgoing"]
        assert {r["target"] for r in refs} == {"Open plan"}, refs
        links = json.dumps(json.loads(answer.body)["links"])  # (the prose is shown as its author wrote it)
        assert "Forecast" not in links and "Pay grid" not in links
    finally:
        app.module.api.container.close()


def test_events_follow_a_restricted_notes_title_and_aliases(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit that changes a restricted note's aliases hides links by the new alias, and links by the old one
    answer as links to no note (hidden from a caller from whom a restricted note is hidden); a public note of the
    title shows its links; the delete of the last restricted note shows every link."""
    handler = Handler(monkeypatch, tmp_path, None)
    aws.receive()
    aws.put(f"{PREFIX}_access.yaml", b"hr/: [hr]\n")
    aws.put(f"{PREFIX}pub/welcome.md", doc("Welcome", "welcome: [[Pay grid|x]], [[Old name|y]], [[New name|z]]"))
    aws.put(f"{PREFIX}hr/bands.md", doc("Bands", "the bands", "title: Pay grid\naliases: [Old name]\n"))
    assert handler(aws.receive()) == []
    settings = handler.settings()
    assert run_sync(settings, Secrets(settings)).error is None
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == []

    aws.put(f"{PREFIX}hr/bands.md", doc("Bands", "the bands", "title: Pay grid\naliases: [New name]\n"))
    assert handler(aws.receive()) == []
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == []
    assert hits_as(settings, Scope.of("k", ["hr"]))["pub/welcome.md"] == ["Pay grid", "Old name", "New name"]
    assert_as_a_full_sync(handler, tmp_path)

    aws.put(f"{PREFIX}pub/grid.md", doc("Grid", "a public note of that title", "title: Pay grid\n"))
    assert handler(aws.receive()) == []  # a public note now has the title: its links are shown
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == ["Pay grid"]

    aws.delete(f"{PREFIX}hr/bands.md")
    assert handler(aws.receive()) == []
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == ["Pay grid", "Old name", "New name"]
    assert recorded(settings) == {}
    assert_as_a_full_sync(handler, tmp_path)


def test_a_no_change_full_sync_reads_nothing_more_and_an_old_list_is_derived_once(tmp_path: Path) -> None:
    """A sync that changes nothing, whose recorded list agrees with its listing, makes no index read for the list
    (one listing and one state read, as before). A list recorded by an earlier version (no format mark; it may
    hold the key of a note deleted since, and no public notes' keys: a link naming no note is shown, as that
    version showed it) is derived afresh by the next sync, changes or not, and the link is then hidden."""
    from kbsearch.indexer import LINKS_FORMAT
    from kbsearch_tools.bench_access import CountingStore

    kb = tmp_path / "kb"
    write(kb, {"_access.yaml": "hr/: [hr]\n", "pub/welcome.md": "# Welcome\nsee [[Pay grid]] and [[Gone]]\n",
               "hr/bands.md": "---\ntitle: Pay grid\n---\n# Bands\nthe bands\n"})  # fmt: skip
    settings = Settings(qdrant_path=str(tmp_path / "q"), embedding_api_key=None)
    assert run_sync(settings, Secrets(settings), source_uri=str(kb)).error is None
    expected = {"bands": ["hr"], "hr/bands": ["hr"], "pay grid": ["hr"]}
    assert recorded(settings) == expected

    def sync_counted() -> CountingStore:
        store = CountingStore(open_store(settings, Secrets(settings)))
        try:
            report = Indexer(open_source(str(kb)), store, None, SyncOptions()).sync()  # type: ignore[arg-type]
            assert report.error is None and report.unchanged == 2
        finally:
            store.close()
        return store

    assert sync_counted().calls["scroll"] == 0 and recorded(settings) == expected
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == []  # Pay grid restricted, Gone no note
    store = open_store(settings, Secrets(settings))
    try:  # as an earlier version left it: no format mark, the key of a note deleted since
        metadata = store.metadata()
        metadata.pop(LINKS_FORMAT)
        metadata.pop(LINK_NAMES)
        store.set_metadata(metadata | {RESTRICTED_LINKS: expected | {"hr/old": ["hr"]}})
    finally:
        store.close()
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == ["Gone"]  # read as that version wrote it
    assert sync_counted().calls["scroll"] > 0 and recorded(settings) == expected
    assert sync_counted().calls["scroll"] == 0  # derived once
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == []


def test_a_no_change_sync_short_cuts_the_list_only_when_every_note_is_public(tmp_path: Path) -> None:
    """A sync that changes nothing in an all-public KB, with nothing recorded, reads nothing for the list; the same
    sync with a note made restricted only by its frontmatter access, or whose groups are unknown, and the list lost,
    still derives the list (the short cut holds only where nothing can be implied)."""
    from kbsearch.indexer import LINKS_FORMAT
    from kbsearch_tools.bench_access import CountingStore

    kb = tmp_path / "kb"
    write(kb, {"pub/welcome.md": "# Welcome\nsee [[Pay grid]]\n", "pub/other.md": "# Other\ntext\n"})
    settings = Settings(qdrant_path=str(tmp_path / "q"), embedding_api_key=None)
    assert run_sync(settings, Secrets(settings), source_uri=str(kb)).error is None
    assert recorded(settings) == {}

    def sync_counted() -> CountingStore:
        store = CountingStore(open_store(settings, Secrets(settings)))
        try:
            report = Indexer(open_source(str(kb)), store, None, SyncOptions()).sync()  # type: ignore[arg-type]
            assert report.error is None
        finally:
            store.close()
        return store

    assert sync_counted().calls["scroll"] == 0 and recorded(settings) == {}
    write(kb, {"pub/bands.md": "---\ntitle: Pay grid\naccess: [hr]\n---\n# Bands\nthe bands\n"})
    assert run_sync(settings, Secrets(settings), source_uri=str(kb)).error is None
    expected = {"bands": ["hr"], "pay grid": ["hr"], "pub/bands": ["hr"]}
    assert recorded(settings) == expected
    store = open_store(settings, Secrets(settings))
    try:  # the list lost (its format mark kept): the next sync, which changes nothing, must derive it again
        metadata = store.metadata()
        assert metadata[LINKS_FORMAT]
        store.set_metadata(metadata | {RESTRICTED_LINKS: {}})
    finally:
        store.close()
    assert sync_counted().calls["scroll"] > 0 and recorded(settings) == expected
    assert sync_counted().calls["scroll"] == 0 and recorded(settings) == expected


def test_a_full_sync_waits_for_a_batch_holding_the_links_lease_and_keeps_its_entry(
    aws: EventPath, tmp_path: Path
) -> None:
    """The other interleaving: an event batch holds the ``links`` lease (its note written, its entry not yet) when
    the full sync comes to rewrite the list. The sync waits for its turn (its attempt to take the lease is seen in
    the lease table), the batch writes its entry and lets go, and the sync's rewrite, read under the lease, keeps
    it. Driven by the sync's progress callback and the lease table's own calls (botocore events), not by sleeps."""
    import threading

    import boto3

    settings = _s3_settings(tmp_path)
    aws.receive()
    aws.put(f"{PREFIX}pub/welcome.md", doc("Welcome", "welcome: see [[Plan]] and [[Ghost]]"))
    assert run_sync(settings, Secrets(settings)).error is None
    aws.put(f"{PREFIX}pub/other.md", doc("Other", "welcome other"))  # work for the next full sync
    aws.receive()

    attempts: list[str] = []
    held, sync_waiting = threading.Event(), threading.Event()

    def seen(params: dict[str, Any], **_: Any) -> None:  # every attempt to take a lease in the table
        if params.get("Item", {}).get("pk", {}).get("S") == "links#kb":
            attempts.append(params["Item"]["owner"]["S"])
            if held.is_set() and len(attempts) > 1:
                sync_waiting.set()  # someone else tries while the batch holds it: the sync, waiting its turn

    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-parameter-build.dynamodb.PutItem", seen)
    source = open_source(settings.kb_source)
    store = open_store(settings, Secrets(settings))
    batch_report: list[Any] = []

    class BatchTurn:
        """The batch's turn on the lease: taken, then held until the sync is seen waiting for it."""

        def __enter__(self) -> None:
            self.lease = short_lease(settings, "links")
            self.lease.__enter__()
            held.set()
            assert sync_waiting.wait(60), "the full sync never asked for the links lease"

        def __exit__(self, *exc: Any) -> None:
            self.lease.__exit__(*exc)

    def batch() -> None:
        aws.put(f"{PREFIX}hr/Plan.md", doc("Plan", "the plan", "access: [hr]\n"))
        changes = read_batch(sqs_event(aws.receive()), KeyScope(BUCKET, PREFIX)).changes
        sync = ChangeSync(source, store, None, SyncOptions(), DynamoSequencers(TABLE, "kb"), BatchTurn)
        batch_report.append(sync.apply(changes))

    thread = threading.Thread(target=batch)

    def start_the_batch(done: int, total: int, path: str) -> None:  # after the sync listed the KB
        if not thread.is_alive() and not batch_report:
            thread.start()
            assert held.wait(60), "the batch never took the links lease"

    try:
        report = Indexer(source, store, None, SyncOptions(full=True), start_the_batch,
                         partial(short_lease, settings, "links", 60.0)).sync()  # fmt: skip
        thread.join(60)
    finally:
        store.close()
        boto3.setup_default_session()
    assert not thread.is_alive() and batch_report[0].error is None and batch_report[0].added == 1
    assert report.error is None and sync_waiting.is_set() and len(set(attempts)) == 2  # the batch's, the sync's
    assert recorded(settings) == {"plan": ["hr"], "hr/plan": ["hr"]}
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == []
    assert hits_as(settings, Scope.of("k", ["hr"]))["pub/welcome.md"] == ["Plan", "Ghost"]


def _sync_with_a_batch_after_its_listing(
    aws: EventPath, settings: Settings, key: str, body: bytes
) -> tuple[SyncReport, set[str]]:
    """A full sync of the bucket during which, right after it is listed, an event batch applies ``body`` put at
    ``key``: its report, and the paths the index holds after it."""
    from kbsearch.sources import S3Source

    store = open_store(settings, Secrets(settings))

    class ListingThenBatch(S3Source):
        def list(self, stop_at: Any = None) -> Any:
            listed = list(super().list(stop_at))
            aws.put(key, body)
            changes = read_batch(sqs_event(aws.receive()), KeyScope(BUCKET, PREFIX)).changes
            batch = ChangeSync(open_source(settings.kb_source), store, None, SyncOptions(),
                               DynamoSequencers(TABLE, "kb"), partial(short_lease, settings, "links"))  # fmt: skip
            assert batch.apply(changes).added == 1
            return iter(listed)

    source = open_source(settings.kb_source)
    assert isinstance(source, S3Source)
    try:
        report = Indexer(ListingThenBatch(BUCKET, PREFIX, source.client), store, None, SyncOptions(), None,
                         partial(short_lease, settings, "links")).sync()  # fmt: skip
        return report, {p["path"] for p in store.points().values()}
    finally:
        store.close()


def test_a_full_sync_never_deletes_a_note_a_batch_wrote_after_its_listing(aws: EventPath, tmp_path: Path) -> None:
    """The same interleaving for the note itself: a batch writes a restricted note between the full sync's listing
    and its read of the index, so the index holds a note the listing lacks. The sync looks it up before deleting
    it, keeps it (with a warning), and its list keeps the note's entry; a note really gone is still deleted."""
    settings = _s3_settings(tmp_path)
    aws.receive()
    aws.put(f"{PREFIX}pub/welcome.md", doc("Welcome", "welcome: see [[Plan]] and [[Old]]"))
    aws.put(f"{PREFIX}pub/old.md", doc("Old", "welcome old"))
    for name in ("a", "b", "c"):
        aws.put(f"{PREFIX}pub/{name}.md", doc(name, f"welcome {name}"))
    assert run_sync(settings, Secrets(settings)).error is None
    aws.delete(f"{PREFIX}pub/old.md")  # gone from the bucket; its event is lost, the sync deletes it
    aws.receive()
    report, paths = _sync_with_a_batch_after_its_listing(
        aws, settings, f"{PREFIX}hr/Plan.md", doc("Plan", "the plan", "access: [hr]\n")
    )
    assert report.error is None and report.deleted == 1  # pub/old.md
    assert paths == {"pub/welcome.md", "pub/a.md", "pub/b.md", "pub/c.md", "hr/Plan.md"}
    assert {"path": "hr/Plan.md", "reason": "not deleted: written after this run listed the KB"} in report.warnings
    assert recorded(settings) == {"plan": ["hr"], "hr/plan": ["hr"]}
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == []  # Old is gone: hidden as Plan is
    assert hits_as(settings, Scope.of("k", ["hr"]))["pub/welcome.md"] == ["Plan", "Old"]


def test_a_link_to_a_restricted_note_with_a_long_name_is_never_shown_cut(tmp_path: Path, load_search_app: Any) -> None:
    """A hit's link list was cut to 200 characters a target, then checked against the restricted link targets,
    which match whole names: a public note's aliased link to a restricted note named (or aliased) in over 200
    characters showed the first 200 of them to every caller, while the note's text showed only the alias. A target
    over 200 characters is not in a hit's list (the index stores the targets a hit can show whole, and a store that
    holds longer ones has them dropped, not cut); ``GET /notes/{path}`` still hides it from callers outside the
    groups and shows it to those in them. A target too long to be a key (a 600-character title) is listed nowhere."""
    long_name = ("Layoffs planned for the platform team in March " * 6)[:235].strip()
    alias = ("Reorganisation of the data platform and the sales teams " * 6)[:300].strip()
    kb = tmp_path / "kb"
    (kb / "hr").mkdir(parents=True)
    (kb / "hr" / f"{long_name}.md").write_text("---\naccess: [hr]\n---\n# Plan\n\nwelcome the plan\n", encoding="utf-8")
    (kb / "hr" / "Reorg.md").write_text(f"---\naccess: [hr]\naliases: [{alias}]\n---\n# Reorg\n\nwelcome reorg\n",
                                        encoding="utf-8")  # fmt: skip
    title = ("Memo on the acquisition of the competitor announced next quarter " * 10)[:600].strip()
    (kb / "hr" / "Memo.md").write_text(f"---\naccess: [hr]\ntitle: {title}\n---\nwelcome memo\n", encoding="utf-8")
    (kb / "pub.md").write_text(f"# Pub\n\nwelcome, see [[{long_name}|the plan]], [[{alias}|the reorg]], [[Reorg]]"
                               f" and [[{title}|the memo]]\n", encoding="utf-8")  # fmt: skip
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="", kb_source=str(kb))  # fmt: skip
    assert run_sync(settings, Secrets(settings)).added == 4
    for key_id in (None, "id-fin", "id-hr"):
        links = api_hits(load_search_app, settings, key_id)["pub.md"]
        shown = json.dumps(links)
        assert "Layoffs" not in shown and "Reorganisation" not in shown and "Memo" not in shown, (key_id, links)
        assert links == (["Reorg"] if key_id == "id-hr" else []), (key_id, links)
    # a 600-character title is longer than a key may be: a link by it is no link (outgoing lists keyed targets only)
    for key_id, visible in ((None, False), ("id-fin", False), ("id-hr", True)):
        refs = outgoing(load_search_app, settings, key_id, "pub.md")
        assert ({r["target"] for r in refs} == {long_name, alias, "Reorg"}) is visible, (key_id, refs)
        assert visible or refs == [], (key_id, refs)


def test_a_full_sync_never_deletes_a_note_a_batch_wrote_after_its_listing_under_a_decomposed_key(
    aws: EventPath, tmp_path: Path
) -> None:
    """The same, the note uploaded from macOS (its key decomposed: `pub/Café.md` as `e` + U+0301): the lookup before
    the deletion finds it under that key (it asked for the composed key alone, found nothing and deleted the note
    the batch had just written, until the next run)."""
    import unicodedata

    settings = _s3_settings(tmp_path)
    aws.receive()
    aws.put(f"{PREFIX}pub/welcome.md", doc("Welcome", "welcome"))
    assert run_sync(settings, Secrets(settings)).error is None
    aws.receive()
    key = unicodedata.normalize("NFD", f"{PREFIX}pub/Café.md")
    report, paths = _sync_with_a_batch_after_its_listing(aws, settings, key, doc("Café", "welcome café"))
    assert report.error is None and report.deleted == 0, report
    assert paths == {"pub/welcome.md", "pub/Café.md"}


def test_event_batches_never_fill_the_key_filter_past_what_it_was_sized_for(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_search_app: Any
) -> None:
    """The public notes' keys (``LINK_NAMES``) are sized by the full sync that records them (twice its keys); event
    batches add the keys of the notes they make public. A KB that grows by events (three public notes of 1,000
    aliases each, after a sync of a few notes) filled it past that size: ~40% of the names of no note then read as
    a note's, shown, while the links naming a restricted note stayed hidden (round 18's leak back), and the hourly
    full sync, finding nothing changed, kept it so. A batch that would fill it rebuilds it from the index, sized
    afresh, and the names of no note stay hidden (at most the ~1% the filter holds by chance)."""
    handler = Handler(monkeypatch, tmp_path, None)
    aws.receive()
    ghosts = [f"Ghost {i}" for i in range(90)]
    aws.put(f"{PREFIX}_access.yaml", b"hr/: [hr]\n")
    aws.put(f"{PREFIX}hr/Plan.md", doc("Plan", "the plan"))
    aws.put(
        f"{PREFIX}pub/welcome.md",
        doc("Welcome", "welcome, see [[Plan]], [[Name 2 500]], " + ", ".join(f"[[{g}]]" for g in ghosts)),
    )
    assert handler(aws.receive()) == []
    settings = handler.settings()
    assert run_sync(settings, Secrets(settings)).error is None
    assert api_hits(load_search_app, settings, None)["pub/welcome.md"] == []

    for n in range(3):
        aliases = ", ".join(f"Name {n} {i}" for i in range(1000))
        aws.put(f"{PREFIX}pub/names-{n}.md", doc(f"Names {n}", "many names", f"aliases: [{aliases}]\n"))
        assert handler(aws.receive()) == []
    for sync in ("events", "a full sync that finds nothing changed"):
        shown = api_hits(load_search_app, settings, None)["pub/welcome.md"]
        assert "Plan" not in shown and "Name 2 500" in shown, (sync, shown)  # a public note's alias: shown
        assert len([link for link in shown if link.startswith("Ghost")]) <= 3, (sync, shown)
        assert run_sync(settings, Secrets(settings)).error is None


def test_a_no_change_full_sync_repairs_public_keys_missing_from_the_filter(tmp_path: Path) -> None:
    """A batch that wrote a new public note and died before recording its keys (the hourly sync ran before its
    retry) left the filter without them: a restricted caller saw no link to that public note. The sync that finds
    nothing changed checked the restricted list alone against its listing and kept the filter so; it now derives
    the list and the filter afresh when a public note's path is not in the filter, or it holds more keys than
    it was sized for."""
    from kbsearch.links import KeyFilter

    kb = tmp_path / "kb"
    write(kb, {"_access.yaml": "hr/: [hr]\n", "pub/welcome.md": "# Welcome\nsee [[Pay grid]] and [[News]]\n",
               "pub/news.md": "# News\nthe news\n", "hr/bands.md": "---\ntitle: Pay grid\n---\n# Bands\nthe bands\n"})  # fmt: skip
    settings = Settings(qdrant_path=str(tmp_path / "q"), embedding_api_key=None)
    assert run_sync(settings, Secrets(settings), source_uri=str(kb)).error is None
    assert hits_as(settings, Scope.public())["pub/welcome.md"] == ["News"]

    full = KeyFilter.of(["welcome", "pub/welcome", "news", "pub/news"])
    full.add(f"gone {i}" for i in range(KeyFilter.MIN_CAPACITY))  # notes gone since, added by batches
    for left in (KeyFilter.of(["welcome", "pub/welcome"]), full):
        store = open_store(settings, Secrets(settings))
        try:  # the first misses "news"; the second holds every public key, but more than it was sized for
            store.merge_metadata({LINK_NAMES: left.to_json()})
        finally:
            store.close()
        expected = ["News"] if left.capacity < left.count else []
        assert hits_as(settings, Scope.public())["pub/welcome.md"] == expected
        report = run_sync(settings, Secrets(settings), source_uri=str(kb))
        assert report.error is None and report.unchanged == 3
        assert hits_as(settings, Scope.public())["pub/welcome.md"] == ["News"]
        store = open_store(settings, Secrets(settings))
        try:
            named = KeyFilter.from_json(store.metadata().get(LINK_NAMES))
        finally:
            store.close()
        assert named is not None and named.capacity == KeyFilter.MIN_CAPACITY and named.count == 4


def test_the_link_targets_are_decoded_again_only_when_they_change(tmp_path: Path) -> None:
    """A search service decodes the recorded list and filter once: a re-read of the metadata (``/health`` re-reads
    it every 2 s on the embedded store) that finds them unchanged keeps the decoded ones (and what they remember per
    group set); a sync into the same store that changes them is read at the next re-read, and a link to the note it
    made public is shown."""
    from kbsearch.schemas import SearchRequest
    from kbsearch.search import SearchService

    kb = tmp_path / "kb"
    write(kb, {"_access.yaml": "hr/: [hr]\n", "pub/welcome.md": "# Welcome\nwelcome: see [[Pay grid]] and [[News]]\n",
               "hr/bands.md": "---\ntitle: Pay grid\n---\n# Bands\nthe bands\n"})  # fmt: skip
    settings = Settings(qdrant_path=str(tmp_path / "q"), embedding_api_key=None)
    store = open_store(settings, Secrets(settings))
    service = SearchService(settings, Secrets(settings), store=store, wire_providers=False)
    try:
        assert Indexer(open_source(str(kb)), store, None, SyncOptions()).sync().error is None
        first = service.restricted_links()
        assert first is not None and first.hides_a_note(Scope.public())
        assert service.collection_metadata(max_age_s=0) is not None  # read again: a new dict, the same values
        assert service.restricted_links() is first
        hits = service.search(SearchRequest(query="welcome", top_k=5), scope=Scope.public()).results
        assert {h.path: h.links for h in hits}["pub/welcome.md"] == []  # News names no note yet

        write(kb, {"pub/news.md": "# News\nthe news\n"})
        assert Indexer(open_source(str(kb)), store, None, SyncOptions()).sync().error is None
        assert service.collection_metadata(max_age_s=0) is not None
        after = service.restricted_links()
        assert after is not first and after is not None and after.names is not None and "news" in after.names
        hits = service.search(SearchRequest(query="welcome", top_k=5), scope=Scope.public()).results
        assert {h.path: h.links for h in hits}["pub/welcome.md"] == ["News"]
    finally:
        service.close()
        store.close()
