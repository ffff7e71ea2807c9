"""``reach``: a caller holding one group besides ``public`` is matched by one ``match value`` on the chunks' ``reach``
(a restricted chunk's groups; a public chunk's ``public`` and every group a full sync recorded), never by more than
its groups' ``access`` would match, and by as much once the groups are recorded. A caller of more groups has its
first recorded group matched on ``reach`` in place of ``public`` on ``access``, its other groups on ``access``. A
caller none of whose groups the index records yet (new to it, or metadata read before it was recorded) falls back
to the matches on ``access``, ``public``'s included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kbsearch.access import Scope
from kbsearch.config import Secrets, Settings
from kbsearch.errors import StoreError
from kbsearch.events import Change
from kbsearch.indexer import ChangeSync, give_reach
from kbsearch.qdrant import open_store
from kbsearch.qdrant.embedded import EdgeStore
from kbsearch.qdrant.query import REACH, REACH_GROUPS, TENANT_INDEXES
from kbsearch.qdrant.store import is_tenant
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch.sources import LocalSource, SourceObject
from tests.integration.test_access_index import NOTES, sync, write_kb

RULES = "hr/: [hr]\nsecurity/incidents/: [security, oncall]\n"
#: path → groups, as NOTES and RULES give them
ACCESS: dict[str, set[str]] = {
    "pub/Onboarding.md": {"public"}, "hr/Salary bands.md": {"hr"}, "ops/Incident.md": {"oncall", "security"},
    "security/incidents/Breach.md": {"oncall", "security"},
}  # fmt: skip
CALLERS = [[], ["hr"], ["security"], ["oncall"], ["finance"], ["hr", "security"], ["staff"], ["finance", "hr"],
           ["legal", "staff"], ["finance", "legal"], ["hr", "oncall", "security"]]  # fmt: skip
BUDGET = "---\naccess: [finance]\n---\n# Budget\nwelcome budget zqfin\n"
LEGAL = "---\naccess: [legal]\n---\n# Contract\nwelcome contract zqlegal\n"
AUDIT = "---\naccess: [finance, legal]\n---\n# Audit\nwelcome audit zqaudit\n"
SHARED = "---\naccess: [security, finance]\n---\n# Shared\nwelcome shared zqshared\n"


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    write_kb(root, NOTES, RULES)
    return root


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(qdrant_path=str(tmp_path / "q"))


@pytest.fixture(params=["edge", "local"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The embedded store as Qdrant Edge, and as qdrant-client's local mode (its fallback; the same code as Qdrant
    Cloud's through qdrant-client)."""
    return Settings(qdrant_path=str(tmp_path / "q"), qdrant_embedded=request.param)


class Recording:
    """The service's own retriever, keeping the filter of each search's batch (what reached Qdrant)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.filters: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def query_legs(self, searches: list[dict[str, Any]], bare: Any, timeout_s: float) -> Any:
        self.filters.append(searches[0].get("filter"))
        return self.inner.query_legs(searches, bare, timeout_s)


def search_as(settings: Settings, held: list[str], query: str = "welcome") -> tuple[list[str], Any]:
    """(the paths a caller holding ``held`` finds, the scope clause its search sent)."""
    service = SearchService(settings, Secrets(settings), wire_providers=False)
    recording = Recording(service.retriever)
    service._retriever = recording
    try:
        hits = service.search(SearchRequest(query=query, top_k=20), scope=Scope.of("k", held)).results
        sent = recording.filters[-1]  # the scope alone: a match in the filter's must, or the filter's should
        return sorted(h.path for h in hits), {"should": sent["should"]} if "should" in sent else sent["must"][0]
    finally:
        service.close()


def assert_exact(settings: Settings, access: dict[str, set[str]]) -> dict[str, Any]:
    """Every caller finds exactly the notes its groups may read; returns each caller's clause."""
    clauses = {}
    for held in CALLERS:
        groups = {"public", *held}
        found, clause = search_as(settings, held)
        assert found == sorted(p for p, g in access.items() if g & groups), (held, found)
        clauses[",".join(held)] = clause
    return clauses


def one_match(group: str) -> dict[str, Any]:
    return {"key": REACH, "match": {"value": group}}


def on_access(*groups: str) -> list[dict[str, Any]]:
    return [{"key": "access", "match": {"value": group}} for group in groups]


def stored(settings: Settings) -> tuple[dict[str, set[tuple[str, ...]]], Any]:
    """(path → the ``reach`` values of its chunks, the recorded groups)."""
    store = open_store(settings, Secrets(settings))
    try:
        out: dict[str, set[tuple[str, ...]]] = {}
        for payload in store.points().values():
            out.setdefault(payload["path"], set()).add(tuple(payload.get(REACH) or ()))
        return out, store.metadata().get(REACH_GROUPS)
    finally:
        store.close()


def apply_events(settings: Settings, kb: Path, *paths: str, source: LocalSource | None = None) -> Any:
    store = open_store(settings, Secrets(settings))
    try:
        changes = [Change(path=p, key=p, removed=not (kb / p).exists()) for p in paths]
        report = ChangeSync(source or LocalSource(kb), store, None).apply(changes)
        assert report.error is None and not report.failed_paths, report
        return report
    finally:
        store.close()


def test_a_full_sync_records_the_groups_once_every_public_chunk_holds_them(any_store: Settings, kb: Path) -> None:
    settings = any_store
    sync(settings, kb)
    reach, recorded = stored(settings)
    assert recorded == ["hr", "oncall", "security"]
    assert reach == {
        "pub/Onboarding.md": {("hr", "oncall", "public", "security")}, "hr/Salary bands.md": {("hr",)},
        "ops/Incident.md": {("oncall", "security")}, "security/incidents/Breach.md": {("oncall", "security")},
    }  # fmt: skip
    clauses = assert_exact(settings, ACCESS)
    assert clauses["hr"] == one_match("hr") and clauses["oncall"] == one_match("oncall")
    assert clauses[""] == {"key": "access", "match": {"value": "public"}}  # public alone: as before
    assert clauses["hr,security"] == {"should": [one_match("hr"), *on_access("security")]}  # public's by hr's
    assert clauses["finance"] == {"should": on_access("finance", "public")}  # not recorded


def test_a_group_new_to_the_index_falls_back_until_a_full_sync_gives_it_to_public_notes(
    any_store: Settings, kb: Path
) -> None:
    settings = any_store
    sync(settings, kb)
    (kb / "finance").mkdir()
    (kb / "finance/Budget.md").write_text(BUDGET, encoding="utf-8")
    apply_events(settings, kb, "finance/Budget.md")  # an event batch never records a group
    access = {**ACCESS, "finance/Budget.md": {"finance"}}
    reach, recorded = stored(settings)
    assert recorded == ["hr", "oncall", "security"] and reach["finance/Budget.md"] == {("finance",)}
    clauses = assert_exact(settings, access)
    assert "should" in clauses["finance"] and clauses["hr"] == one_match("hr")
    sync(settings, kb)
    reach, recorded = stored(settings)
    assert recorded == ["finance", "hr", "oncall", "security"]
    assert reach["pub/Onboarding.md"] == {("finance", "hr", "oncall", "public", "security")}
    assert assert_exact(settings, access)["finance"] == one_match("finance")


def test_metadata_naming_a_group_public_chunks_lack_never_widens_a_scope(settings: Settings, kb: Path) -> None:
    """Recorded groups that public chunks do not hold (stale or wrong metadata) can only leave public notes out,
    never show a note its caller may not read; the next full sync gives them to every public chunk."""
    sync(settings, kb)
    (kb / "finance").mkdir()
    (kb / "finance/Budget.md").write_text(BUDGET, encoding="utf-8")
    apply_events(settings, kb, "finance/Budget.md")
    store = open_store(settings, Secrets(settings))
    try:
        store.merge_metadata({REACH_GROUPS: ["finance", "hr", "oncall", "security", "staff"]})
    finally:
        store.close()
    assert search_as(settings, ["finance"]) == (["finance/Budget.md"], one_match("finance"))
    assert search_as(settings, ["staff"]) == ([], one_match("staff"))
    assert search_as(settings, ["hr"]) == (["hr/Salary bands.md", "pub/Onboarding.md"], one_match("hr"))
    report = sync(settings, kb)  # a sync, one that writes no note too, gives the recorded groups to every public
    assert report.added == report.updated == report.access_updated == 0  # chunk (never taken back)
    assert stored(settings)[0]["pub/Onboarding.md"] == {("finance", "hr", "oncall", "public", "security", "staff")}
    assert search_as(settings, ["staff"]) == (["pub/Onboarding.md"], one_match("staff"))
    assert_exact(settings, {**ACCESS, "finance/Budget.md": {"finance"}})


def add_notes(settings: Settings, kb: Path, notes: dict[str, str]) -> None:
    """``notes`` (path → text) written to the KB and indexed by their events (an event batch records no group)."""
    for path, text in notes.items():
        (kb / path).parent.mkdir(parents=True, exist_ok=True)
        (kb / path).write_text(text, encoding="utf-8")
    apply_events(settings, kb, *notes)


def test_a_caller_of_two_groups_is_matched_on_reach_once_its_groups_are_recorded(any_store: Settings, kb: Path) -> None:
    """Two groups new to the index (by events): the matches on ``access``, ``public``'s included. Once a full sync
    recorded them: the first on ``reach`` (the public notes and its own), the other on ``access`` (its restricted
    notes): the same notes, a note of both groups once."""
    settings = any_store
    sync(settings, kb)
    add_notes(settings, kb, {"finance/Budget.md": BUDGET, "legal/Contract.md": LEGAL, "legal/Audit.md": AUDIT})
    access = {**ACCESS, "finance/Budget.md": {"finance"}, "legal/Contract.md": {"legal"},
              "legal/Audit.md": {"finance", "legal"}}  # fmt: skip
    both = ["finance/Budget.md", "legal/Audit.md", "legal/Contract.md", "pub/Onboarding.md"]
    assert stored(settings)[1] == ["hr", "oncall", "security"]
    clauses = assert_exact(settings, access)
    assert clauses["finance,legal"] == {"should": on_access("finance", "legal", "public")}
    assert search_as(settings, ["finance", "legal"])[0] == both
    sync(settings, kb)
    reach, recorded = stored(settings)
    assert recorded == ["finance", "hr", "legal", "oncall", "security"]
    assert reach["legal/Audit.md"] == {("finance", "legal")}
    assert reach["pub/Onboarding.md"] == {("finance", "hr", "legal", "oncall", "public", "security")}
    clauses = assert_exact(settings, access)
    assert clauses["finance,legal"] == {"should": [one_match("finance"), *on_access("legal")]}
    assert clauses["hr,oncall,security"] == {"should": [one_match("hr"), *on_access("oncall", "security")]}
    assert search_as(settings, ["finance", "legal"]) == (both, clauses["finance,legal"])
    assert search_as(settings, ["legal", "staff"])[0] == ["legal/Audit.md", "legal/Contract.md", "pub/Onboarding.md"]


def test_a_caller_of_a_recorded_and_an_unrecorded_group_finds_the_notes_of_either(
    any_store: Settings, kb: Path
) -> None:
    """``hr`` recorded, ``finance`` new to the index (by an event): ``hr`` on ``reach`` (the public notes and hr's),
    ``finance`` on ``access`` (its restricted notes, one shared with ``security``): every note of either group and
    the public ones, never a note of neither (``ops/Incident.md``, ``legal``'s)."""
    settings = any_store
    sync(settings, kb)
    add_notes(settings, kb, {"finance/Budget.md": BUDGET, "finance/Shared.md": SHARED, "legal/Contract.md": LEGAL})
    access = {**ACCESS, "finance/Budget.md": {"finance"}, "finance/Shared.md": {"finance", "security"},
              "legal/Contract.md": {"legal"}}  # fmt: skip
    assert stored(settings)[1] == ["hr", "oncall", "security"]
    clauses = assert_exact(settings, access)
    assert clauses["finance,hr"] == {"should": [one_match("hr"), *on_access("finance")]}
    assert search_as(settings, ["finance", "hr"])[0] == [
        "finance/Budget.md", "finance/Shared.md", "hr/Salary bands.md", "pub/Onboarding.md"
    ]  # fmt: skip
    assert clauses["legal,staff"] == {"should": on_access("legal", "public", "staff")}  # neither recorded
    # metadata naming finance before public chunks hold it (stale or wrong): finance is then the group on reach,
    # and the public notes are left out until a full sync gives them finance; no note of neither group comes in
    store = open_store(settings, Secrets(settings))
    try:
        store.merge_metadata({REACH_GROUPS: ["finance", "hr", "oncall", "security"]})
    finally:
        store.close()
    assert search_as(settings, ["finance", "hr"]) == (
        ["finance/Budget.md", "finance/Shared.md", "hr/Salary bands.md"],
        {"should": [one_match("finance"), *on_access("hr")]},
    )
    with (kb / "hr/Salary bands.md").open("a", encoding="utf-8") as note:
        note.write("more bands\n")
    sync(settings, kb)  # a sync that writes gives the recorded groups to every public chunk
    assert stored(settings)[0]["pub/Onboarding.md"] == {("finance", "hr", "legal", "oncall", "public", "security")}
    assert assert_exact(settings, access)["finance,hr"] == {"should": [one_match("finance"), *on_access("hr")]}


def test_a_note_going_public_restricted_public_between_syncs_and_events(any_store: Settings, kb: Path) -> None:
    settings = any_store
    sync(settings, kb)
    # restricted by a rule, through the access file's event (a payload update, no re-embed)
    (kb / "_access.yaml").write_text(RULES + "pub/: [staff]\n", encoding="utf-8")
    apply_events(settings, kb, "_access.yaml")
    restricted = {**ACCESS, "pub/Onboarding.md": {"staff"}}
    assert stored(settings)[0]["pub/Onboarding.md"] == {("staff",)}
    assert_exact(settings, restricted)
    # public again, by a full sync
    (kb / "_access.yaml").write_text(RULES, encoding="utf-8")
    sync(settings, kb)
    reach, recorded = stored(settings)  # (staff: a group of no note now, and a batch records none)
    assert reach["pub/Onboarding.md"] == {("hr", "oncall", "public", "security")}
    assert recorded == ["hr", "oncall", "security"]
    assert_exact(settings, ACCESS)
    # restricted by its own frontmatter (re-indexed by an event), then public again by an event
    text = (kb / "pub/Onboarding.md").read_text(encoding="utf-8")
    (kb / "pub/Onboarding.md").write_text("---\naccess: [hr]\n---\n" + text, encoding="utf-8")
    apply_events(settings, kb, "pub/Onboarding.md")
    assert stored(settings)[0]["pub/Onboarding.md"] == {("hr",)}
    assert_exact(settings, {**ACCESS, "pub/Onboarding.md": {"hr"}})
    (kb / "pub/Onboarding.md").write_text(text, encoding="utf-8")
    apply_events(settings, kb, "pub/Onboarding.md")
    assert stored(settings)[0]["pub/Onboarding.md"] == {("hr", "oncall", "public", "security")}
    assert_exact(settings, ACCESS)


def test_a_store_from_before_reach_is_searched_as_before_then_filled_in(settings: Settings, kb: Path) -> None:
    import qdrant_edge as edge

    sync(settings, kb)
    store = open_store(settings, Secrets(settings))
    assert isinstance(store, EdgeStore)
    try:  # what the version before wrote: no reach, no reach index, no recorded groups
        ids: list[Any] = [int(i) if i.isdigit() else i for i in store.points()]
        store.shard.update(edge.UpdateOperation.delete_payload(ids, [REACH]))
        store.shard.update(edge.UpdateOperation.delete_field_index(REACH))
        store.set_metadata({k: v for k, v in store.metadata().items() if k != REACH_GROUPS})
        store._written = True
    finally:
        store.close()
    assert stored(settings) == ({p: {()} for p in ACCESS}, None)
    clauses = assert_exact(settings, ACCESS)
    assert all("should" in c or c["key"] == "access" for c in clauses.values())  # nothing recorded: as before
    report = sync(settings, kb)
    assert report.unchanged == 4 and report.added == report.updated == 0  # nothing re-embedded
    reach, recorded = stored(settings)
    assert recorded == ["hr", "oncall", "security"] and reach["hr/Salary bands.md"] == {("hr",)}
    assert reach["ops/Incident.md"] == {("oncall", "security")}
    assert assert_exact(settings, ACCESS)["security"] == one_match("security")


class ConcurrentFullSync(LocalSource):
    """The KB, read while a full sync records one more group in the same store (it gives it to every public chunk,
    records it, and gives it again), between the batch's read of the recorded groups and its write."""

    def __init__(self, root: Path, store: Any) -> None:
        super().__init__(root)
        self.store, self.done = store, False

    def read(self, obj: SourceObject) -> bytes:
        if not self.done and obj.path != "_access.yaml":  # the note's read: after the batch read the groups
            self.done = True
            groups = ["finance", "hr", "oncall", "security"]
            give_reach(self.store, groups)
            self.store.merge_metadata({REACH_GROUPS: groups})
            give_reach(self.store, groups)
        return super().read(obj)


def test_a_batch_that_read_fewer_groups_gives_its_public_chunks_the_recorded_ones(settings: Settings, kb: Path) -> None:
    sync(settings, kb)
    (kb / "pub/Second.md").write_text("# Second\nwelcome second\n", encoding="utf-8")
    store = open_store(settings, Secrets(settings))
    try:
        report = ChangeSync(ConcurrentFullSync(kb, store), store, None).apply(
            [Change(path="pub/Second.md", key="pub/Second.md", removed=False)]
        )
        assert report.error is None and report.added == 1
    finally:
        store.close()
    reach, recorded = stored(settings)
    assert recorded == ["finance", "hr", "oncall", "security"]
    assert reach["pub/Second.md"] == reach["pub/Onboarding.md"] == {("finance", "hr", "oncall", "public", "security")}
    assert search_as(settings, ["finance"]) == (["pub/Onboarding.md", "pub/Second.md"], one_match("finance"))


@pytest.mark.parametrize("note", ["readable", "too large to read again", "too large, made readable by nobody"])
def test_groups_an_older_version_wrote_without_reach_are_written_again_by_the_next_run(
    any_store: Settings, kb: Path, note: str
) -> None:
    """A kb-search older than ``reach`` writing the same collection (a CLI not upgraded, an invocation running
    through a deploy, a rollback and a roll forward) restricts a public note by a payload update of its ``access``
    alone: the note keeps a public chunk's ``reach``, and a one-group caller of another recorded group finds it by
    ``reach``. The next run that reads the note's state (here a full sync; an event batch reads its notes' state
    the same way) takes such groups for none it can use and writes them again, ``reach`` with them; a note it cannot
    read again (grown past the size limit) has its ``reach`` written from the groups its chunks record (none: an older
    version that made it readable by nobody)."""
    settings = any_store.model_copy(update={"max_note_bytes": 2048})
    sync(settings, kb)
    (kb / "_access.yaml").write_text(RULES + "pub/: [hr]\n", encoding="utf-8")
    store = open_store(settings, Secrets(settings))
    try:  # what the older version's rules run writes: the groups alone
        groups = [] if note.endswith("nobody") else ["hr"]
        store.set_payloads([(["pub/Onboarding.md"], {"access": groups, "access_from": "folder:pub"})])
    finally:
        store.close()
    found, clause = search_as(settings, ["security"])
    assert clause == one_match("security") and "pub/Onboarding.md" in found  # what the older writer left
    if note != "readable":
        with (kb / "pub/Onboarding.md").open("a", encoding="utf-8") as grown:
            grown.write("padding " * 400)
    report = sync(settings, kb)
    assert [s["path"] for s in report.skipped] == ([] if note == "readable" else ["pub/Onboarding.md"])
    reach, _ = stored(settings)
    assert reach["pub/Onboarding.md"] == {tuple(groups)}
    assert_exact(settings, {**ACCESS, "pub/Onboarding.md": set(groups)})


def test_groups_an_older_version_wrote_are_repaired_by_any_batch_of_this_version(any_store: Settings, kb: Path) -> None:
    """The older writer's window closes at this version's next run of any kind: an event batch of another note (its
    catch-up looks for restricted chunks whose ``reach`` is not their groups) gives the note its groups' ``reach``,
    and a caller of another recorded group no longer finds it."""
    sync(any_store, kb)
    (kb / "_access.yaml").write_text(RULES + "pub/: [hr]\n", encoding="utf-8")
    store = open_store(any_store, Secrets(any_store))
    try:  # what the older version's rules run writes: the groups alone
        store.set_payloads([(["pub/Onboarding.md"], {"access": ["hr"], "access_from": "folder:pub/"})])
    finally:
        store.close()
    assert "pub/Onboarding.md" in search_as(any_store, ["security"])[0]  # the window
    (kb / "ops/Other.md").write_text("# Other\nwelcome other\n", encoding="utf-8")
    report = apply_events(any_store, kb, "ops/Other.md")
    assert report.chunks_upserted == 1 and report.access_updated == 0  # the note itself not touched
    reach, _ = stored(any_store)
    assert reach["pub/Onboarding.md"] == {("hr",)}
    assert search_as(any_store, ["security"]) == (["ops/Incident.md", "ops/Other.md", "security/incidents/Breach.md"],
                                                  one_match("security"))  # fmt: skip
    assert_exact(any_store, {**ACCESS, "pub/Onboarding.md": {"hr"}, "ops/Other.md": {"public"}})


def test_reach_fits_its_groups_or_the_chunk_records_none() -> None:
    from kbsearch.qdrant.store import recorded_access

    def recorded(access: Any, reach: Any = "absent") -> Any:
        payload = {"access": access, "access_from": "folder:x/"} | ({} if reach == "absent" else {REACH: reach})
        return recorded_access(payload)

    assert recorded(["hr"]) == (("hr",), "folder:x/")  # a store from before reach: filled in by the full sync
    assert recorded(["public"], ["hr", "public", "security"]) == (("public",), "folder:x/")
    assert recorded(["security", "hr"], ["hr", "security"]) == (("hr", "security"), "folder:x/")
    for access, reach in [(["hr"], ["hr", "public", "security"]), (["hr"], ["hr", "security"]), (["hr"], []),
                          (["hr", "security"], ["hr"]), (["public"], ["hr"]), (["hr"], None), (["hr"], "hr")]:  # fmt: skip
        assert recorded(access, reach) is None, (access, reach)


class DiesAtTheCatchUp:
    """The batch's store, failing the write after the batch's own (the catch-up giving its public chunks the groups
    recorded meanwhile): the batch dies between its write and its catch-up, as an invocation killed there would."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.failed = inner, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def set_payload_where(self, where: dict[str, Any], payload: dict[str, Any]) -> None:
        if not self.failed:
            self.failed = True
            raise StoreError("connection reset while writing the catch-up")
        self.inner.set_payload_where(where, payload)


@pytest.mark.parametrize("next_run", ["the batch retried", "another note's batch", "a no-change full sync"])
def test_a_batch_that_dies_between_its_write_and_its_catch_up_is_repaired_by_the_next_run(
    any_store: Settings, kb: Path, next_run: str
) -> None:
    """A full sync records ``finance`` while a batch is between its read of the recorded groups and its write: the
    batch's public chunk lacks ``finance``, and the batch dies before its catch-up gives it. ``finance``'s callers
    miss the note (never wider); the next run, whatever it is (the batch retried, which has nothing to write; another
    note's batch; the schedule's full sync, which changes nothing), gives it the recorded groups."""
    settings = any_store
    sync(settings, kb)
    (kb / "pub/Second.md").write_text("# Second\nwelcome second\n", encoding="utf-8")
    change = Change(path="pub/Second.md", key="pub/Second.md", removed=False)
    store = open_store(settings, Secrets(settings))
    try:
        dying = DiesAtTheCatchUp(store)
        report = ChangeSync(ConcurrentFullSync(kb, store), dying, None).apply([change])  # type: ignore[arg-type]
        assert dying.failed and report.added == 1 and report.error and report.failed_paths == ["pub/Second.md"]
    finally:
        store.close()
    reach, recorded = stored(settings)
    assert recorded == ["finance", "hr", "oncall", "security"]
    assert reach["pub/Second.md"] == {("hr", "oncall", "public", "security")}  # written, not caught up
    assert search_as(settings, ["finance"]) == (["pub/Onboarding.md"], one_match("finance"))  # narrower, never wider
    if next_run == "the batch retried":
        assert apply_events(settings, kb, "pub/Second.md").chunks_upserted == 0  # nothing to write: unchanged
    elif next_run == "another note's batch":
        (kb / "pub/Third.md").write_text("# Third\nwelcome third\n", encoding="utf-8")
        apply_events(settings, kb, "pub/Third.md")
    else:
        full = sync(settings, kb)
        assert full.added == full.updated == full.access_updated == 0
    reach, _ = stored(settings)
    assert reach["pub/Second.md"] == reach["pub/Onboarding.md"] == {("finance", "hr", "oncall", "public", "security")}
    third = {"pub/Third.md": {"public"}} if next_run == "another note's batch" else {}
    assert search_as(settings, ["finance"]) == (sorted(["pub/Onboarding.md", "pub/Second.md", *third]),
                                                one_match("finance"))  # fmt: skip
    assert_exact(settings, {**ACCESS, "pub/Second.md": {"public"}} | third)


def test_reach_is_a_tenant_index_and_a_store_from_before_is_given_one(settings: Settings, kb: Path) -> None:
    """``reach`` is Qdrant's tenant index (``is_tenant``: each segment Edge writes stores its points grouped by it,
    which makes a selective scope's filtered scan cheap). A collection whose ``reach`` index an earlier version made
    without it finds the same notes for every caller, and the next run makes it a tenant index."""
    import qdrant_edge as edge

    sync(settings, kb)
    store = open_store(settings, Secrets(settings))
    assert isinstance(store, EdgeStore)
    try:
        schema = store.shard.info().payload_schema
        assert [name for name, info in schema.items() if is_tenant(info)] == [REACH] == sorted(TENANT_INDEXES)
        store.shard.update(edge.UpdateOperation.create_field_index(REACH, edge.PayloadSchemaType.Keyword))
        store._written = True
        assert not is_tenant(store.shard.info().payload_schema[REACH])  # what an earlier version made
    finally:
        store.close()
    clauses = assert_exact(settings, ACCESS)
    sync(settings, kb)
    store = open_store(settings, Secrets(settings))
    assert isinstance(store, EdgeStore)
    try:
        assert is_tenant(store.shard.info().payload_schema[REACH])
    finally:
        store.close()
    assert assert_exact(settings, ACCESS) == clauses


def test_sealed_segments_grouped_by_reach_serve_a_scope_exactly_while_writes_race(tmp_path: Path) -> None:
    """A segment Edge seals stores its points grouped by ``reach`` (a tenant index), so a caller's one ``match
    value`` matches runs of it. The search's dense leg (each segment's int8 scan, rescored once) under an ``hr``
    caller's clause returns exactly the nearest chunks it may read, and none other while another thread writes
    chunks restricted to ``security`` nearer the query than any (sealing a new, regrouped segment every 200
    points) and moves readable chunks out of the scope."""
    import json
    import threading

    import numpy as np

    from kbsearch.access import reach_of
    from kbsearch.lexical import SparseVector
    from kbsearch.qdrant.query import dense_search, scope_clause
    from kbsearch.qdrant.store import ChunkPoint

    kinds = [["public"], ["hr"], ["security"], ["hr", "security"], ["public"]]
    known = ["hr", "security"]
    settings = Settings.model_validate(
        {"qdrant_path": str(tmp_path), "embedding_dimensions": 32, "qdrant_embedded_graph_from": 200}
    )
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((600, 32))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    groups = [kinds[i % len(kinds)] for i in range(len(vectors))]

    def chunk(path: str, held: list[str], vector: Any) -> ChunkPoint:
        payload = {"path": path, "access": held, REACH: reach_of(held, known)}
        return ChunkPoint(path, 0, payload, SparseVector([1], [1.0]), vector)

    store = open_store(settings, Secrets(settings))
    assert isinstance(store, EdgeStore)
    try:
        store.ensure_collection()
        for start in range(0, len(vectors), 100):  # the indexer's windows: a segment sealed every 200 points
            store.upsert([chunk(f"n{i}.md", groups[i], vectors[i]) for i in range(start, start + 100)])
        shard = tmp_path / "edge" / "kb"
        sealed = [json.loads(p.read_text())["config"]["vector_data"]["dense"]["quantization_config"]
                  for p in shard.glob("segments/*/segment.json")]  # fmt: skip
        assert sum(q is not None for q in sealed) == 3
        clause = scope_clause(["public", "hr"], set(known))
        assert clause == {"key": REACH, "match": {"value": "hr"}}
        readable = {f"n{i}.md" for i, held in enumerate(groups) if {"public", "hr"} & set(held)}
        queries = [vectors[i] + 0.3 * vectors[i + 1] for i in range(0, 40, 4)]

        def nearest(query: Any) -> list[str]:
            leg = store.query({**dense_search(query.tolist(), 10, 256, once=True), "filter": {"must": [clause]},
                               "with_payload": ["path", "access"]}, 10)  # fmt: skip
            for hit in leg:  # never a chunk the caller may not read
                assert {"public", "hr"} & set(hit["payload"]["access"]), hit["payload"]
            return [hit["payload"]["path"] for hit in leg]

        for query in queries:
            cosine = vectors @ query
            exact = [f"n{i}.md" for i in np.argsort(-cosine) if f"n{i}.md" in readable][:10]
            assert nearest(query) == exact
        moved = sorted(readable)[:50]
        errors: list[BaseException] = []

        def write() -> None:
            try:
                for j in range(4):  # 4 x 100 chunks nearer each query than any: two more seals
                    store.upsert([chunk(f"x{j}-{k}.md", ["security"],
                                        queries[k % len(queries)] + 0.01 * rng.standard_normal(32))
                                  for k in range(100)])  # fmt: skip
                    store.set_payloads([(moved[j::4], {"access": ["security"], REACH: ["security"]})])
            except BaseException as exc:  # reported by the test's thread
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        searched = 0
        while writer.is_alive() or searched < len(queries):
            for path in nearest(queries[searched % len(queries)]):
                assert not path.startswith("x"), path
            searched += 1
        writer.join()
        assert not errors, errors
        assert searched > len(queries)
        still = readable - set(moved)
        for query in queries:  # written and moved: the same exact answer over what is still readable
            cosine = vectors @ query
            exact = [f"n{i}.md" for i in np.argsort(-cosine) if f"n{i}.md" in still][:10]
            assert nearest(query) == exact
    finally:
        store.close()


def cloud_index_requests(indexes: dict[str, str], params: dict[str, dict[str, Any] | None]) -> list[Any]:
    """Through qdrant-client (Qdrant Cloud's path), against a loopback Qdrant whose collection has these payload
    indexes (field → kind; ``params``: field → the index's params, as Qdrant answers them): the bodies of the index
    requests :meth:`Store.ensure_payload_indexes` sends."""
    import json

    from qdrant_client.http import models

    from kbsearch.qdrant.store import Store
    from kbsearch_tools.fakes import FakeEndpoint

    schema = {name: models.PayloadIndexInfo.model_validate({"data_type": kind, "points": 0,
                                                            "params": params.get(name)})
              for name, kind in indexes.items()}  # fmt: skip
    info = models.CollectionInfo(
        status=models.CollectionStatus.GREEN, optimizer_status=models.OptimizersStatusOneOf.OK, segments_count=1,
        config=models.CollectionConfig(
            params=models.CollectionParams(), hnsw_config=models.HnswConfig(m=16, ef_construct=128,
                                                                             full_scan_threshold=10_000),
            optimizer_config=models.OptimizersConfig(default_segment_number=0, flush_interval_sec=5),
        ),
        payload_schema=schema,
    )  # fmt: skip
    collection = json.dumps({"result": json.loads(info.model_dump_json(exclude_none=True)), "status": "ok"}).encode()
    done = json.dumps({"result": {"operation_id": 1, "status": "completed"}, "status": "ok"}).encode()
    qdrant = FakeEndpoint().start()
    qdrant.responder = lambda method, path: (200, collection if method == "GET" else done, "application/json")
    try:
        settings = Settings(qdrant_url=qdrant.url, qdrant_api_key="k", embedding_dimensions=32)
        store = Store.cloud(settings, Secrets(settings))
        try:
            store.ensure_payload_indexes()
        finally:
            store.close()
    finally:
        qdrant.stop()
    return [r.body for r in qdrant.requests if r.path.split("?")[0] == "/collections/kb/index"]


@pytest.mark.parametrize("reach_params", [None, {"type": "keyword", "is_tenant": True}])
def test_qdrant_cloud_is_asked_for_reach_as_a_tenant_index_once(reach_params: dict[str, Any] | None) -> None:
    """Through qdrant-client (Qdrant Cloud's path), against a loopback Qdrant: a collection whose ``reach`` index is
    not a tenant index (an earlier version's) is sent that index again with ``is_tenant``, and nothing else; one whose
    index is already a tenant index is sent nothing."""
    from kbsearch.qdrant.query import CLOUD_INDEXES, PAYLOAD_INDEXES

    sent = cloud_index_requests(PAYLOAD_INDEXES | CLOUD_INDEXES, {REACH: reach_params})
    if reach_params is None:
        assert sent == [{"field_name": REACH, "field_schema": {"type": "keyword", "is_tenant": True}}]
    else:
        assert sent == []
