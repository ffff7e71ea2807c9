"""Access groups at index time: stored in every chunk, changed by a payload update (never a re-embed), malformed
declarations skip the note (and remove its old version), a malformed access file stops the sync."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import boto3
import pytest
from moto import mock_aws

from kbsearch.access import Scope
from kbsearch.config import Secrets, Settings
from kbsearch.indexer import SyncReport, run_sync
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import RESTRICTED_LINKS
from kbsearch.schemas import SearchRequest
from kbsearch.search import SearchService
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import provider_settings

NOTES = {
    "pub/Onboarding.md": "# Onboarding\nwelcome aboard, read [[Salary bands|the pay page]] and the handbook\n",
    "hr/Salary bands.md": "# Salary bands\nwelcome salary bands for engineers\n",
    "ops/Incident.md": "---\naccess: [security, oncall]\n---\n# Incident\nwelcome incident review\n",
    "security/incidents/Breach.md": "# Breach\nwelcome breach timeline\n",
}


def write_kb(root: Path, notes: dict[str, str], rules: str | None) -> None:
    for path, text in notes.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    if rules is not None:
        (root / "_access.yaml").write_text(rules, encoding="utf-8")


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    write_kb(root, NOTES, "hr/: [hr]\nsecurity/incidents/: [security, oncall]\n")
    return root


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    provider = FakeProvider("deepinfra", api_key="di-test-key").start()
    yield provider
    provider.stop()


def settings_for(tmp_path: Path, fake: FakeProvider, **extra: Any) -> Settings:
    return provider_settings(fake, qdrant_path=str(tmp_path / "q"), **extra)


def sync(settings: Settings, kb: Path) -> SyncReport:
    report = run_sync(settings, Secrets(settings), source_uri=str(kb))
    assert report.error is None or report.error.startswith("_access.yaml"), report.error
    return report


def access_by_path(settings: Settings) -> dict[str, set[tuple[tuple[str, ...], str]]]:
    store = open_store(settings, Secrets(settings))
    try:
        out: dict[str, set[tuple[tuple[str, ...], str]]] = {}
        for payload in store.points().values():
            out.setdefault(payload["path"], set()).add((tuple(payload["access"]), payload["access_from"]))
        return out
    finally:
        store.close()


def visible(settings: Settings, scope: Scope, query: str = "welcome") -> list[str]:
    service = SearchService(settings, Secrets(settings), wire_providers=False)
    try:
        return sorted(h.path for h in service.search(SearchRequest(query=query, top_k=20), scope=scope).results)
    finally:
        service.close()


def test_groups_are_stored_on_every_chunk(tmp_path: Path, kb: Path, fake: FakeProvider) -> None:
    settings = settings_for(tmp_path, fake)
    report = sync(settings, kb)
    assert report.added == 4 and not report.skipped
    assert access_by_path(settings) == {
        "pub/Onboarding.md": {(("public",), "default")},
        "hr/Salary bands.md": {(("hr",), "folder:hr")},
        "ops/Incident.md": {(("oncall", "security"), "frontmatter")},
        "security/incidents/Breach.md": {(("oncall", "security"), "folder:security/incidents")},
    }
    assert visible(settings, Scope.public()) == ["pub/Onboarding.md"]
    assert visible(settings, Scope.of("k", ["oncall"])) == [
        "ops/Incident.md", "pub/Onboarding.md", "security/incidents/Breach.md"
    ]  # fmt: skip
    store = open_store(settings, Secrets(settings))
    try:
        restricted = store.metadata()[RESTRICTED_LINKS]
    finally:
        store.close()
    assert restricted["salary bands"] == ["hr"] and "onboarding" not in restricted


def test_a_rule_change_updates_the_payload_without_embedding(tmp_path: Path, kb: Path, fake: FakeProvider) -> None:
    settings = settings_for(tmp_path, fake)
    sync(settings, kb)
    embedded_before = len(fake.calls("embeddings"))
    assert embedded_before > 0
    (kb / "_access.yaml").write_text("hr/: [hr, finance]\npub/: [staff]\n", encoding="utf-8")
    report = sync(settings, kb)
    assert len(fake.calls("embeddings")) == embedded_before  # nothing re-embedded
    assert report.unchanged == 4 and report.updated == 0 and report.chunks_upserted == 0
    assert report.access_updated == 3  # hr (groups), pub (rule now), security/incidents (rule gone)
    groups = access_by_path(settings)
    assert groups["hr/Salary bands.md"] == {(("finance", "hr"), "folder:hr")}
    assert groups["pub/Onboarding.md"] == {(("staff",), "folder:pub")}
    assert groups["security/incidents/Breach.md"] == {(("public",), "default")}
    assert groups["ops/Incident.md"] == {(("oncall", "security"), "frontmatter")}  # the note's own word stands
    assert visible(settings, Scope.public()) == ["security/incidents/Breach.md"]
    assert "hr/Salary bands.md" in visible(settings, Scope.of("k", ["finance"]))
    # a third run with nothing changed touches nothing
    again = sync(settings, kb)
    assert again.access_updated == 0 and len(fake.calls("embeddings")) == embedded_before


def test_default_deny_and_its_change(tmp_path: Path, kb: Path, fake: FakeProvider) -> None:
    settings = settings_for(tmp_path, fake, access_default="deny")
    sync(settings, kb)
    assert access_by_path(settings)["pub/Onboarding.md"] == {((), "default")}
    assert visible(settings, Scope.public()) == []
    assert "pub/Onboarding.md" in visible(settings, Scope.unrestricted())
    embedded = len(fake.calls("embeddings"))
    opened = settings_for(tmp_path, fake, access_default="public")
    assert sync(opened, kb).access_updated == 1 and len(fake.calls("embeddings")) == embedded
    assert visible(opened, Scope.public()) == ["pub/Onboarding.md"]


@pytest.mark.parametrize("declaration", ["access: []", "access: {hr: 1}", "access: [h r]", "access: !!binary '*'"])
def test_a_malformed_declaration_skips_the_note_and_removes_its_old_version(
    tmp_path: Path, kb: Path, fake: FakeProvider, declaration: str
) -> None:
    settings = settings_for(tmp_path, fake)
    sync(settings, kb)
    assert "pub/Onboarding.md" in visible(settings, Scope.public())
    (kb / "pub/Onboarding.md").write_text(f"---\n{declaration}\n---\n# Onboarding\nwelcome\n", encoding="utf-8")
    report = sync(settings, kb)
    [skipped] = report.skipped
    assert skipped["path"] == "pub/Onboarding.md" and "not indexed" in skipped["reason"]
    assert "previous version was removed" in skipped["reason"]
    assert "pub/Onboarding.md" not in access_by_path(settings)
    assert "pub/Onboarding.md" not in visible(settings, Scope.unrestricted())


@pytest.mark.parametrize("rules", ["hr/: []\n", "hr/: [hr\n", "- hr\n", "hr/: &a [x]\nops/: *a\n", "../x/: [a]\n"])
def test_a_malformed_access_file_stops_the_sync(tmp_path: Path, kb: Path, fake: FakeProvider, rules: str) -> None:
    settings = settings_for(tmp_path, fake)
    sync(settings, kb)
    before = access_by_path(settings)
    (kb / "_access.yaml").write_text(rules, encoding="utf-8")
    (kb / "pub/New.md").write_text("# New\nwelcome new\n", encoding="utf-8")
    report = sync(settings, kb)
    assert report.error is not None and report.error.startswith("_access.yaml") and report.incomplete
    assert report.added == 0 and access_by_path(settings) == before  # nothing changed, nothing made public
    assert visible(settings, Scope.public()) == ["pub/Onboarding.md"]


@pytest.mark.parametrize("rule", ["hr/*", "hr/**", "'*'", "'**/hr'", "h?/", "'*.md'", "hr/*/"])
def test_an_access_file_rule_written_as_a_pattern_stops_the_sync(
    tmp_path: Path, kb: Path, fake: FakeProvider, rule: str
) -> None:
    """A rule written as a glob (``hr/*: [hr]``, as .gitignore and CODEOWNERS are): the rules name folders, and
    no note or folder of an Obsidian vault has ``*`` or ``?`` in its name, so it matched nothing and the notes it
    meant were indexed public. The sync stops naming the rule and how to write it; nothing changes."""
    settings = settings_for(tmp_path, fake)
    sync(settings, kb)
    before = access_by_path(settings)
    (kb / "_access.yaml").write_text(f"{rule}: [hr]\n", encoding="utf-8")
    (kb / "pub/New.md").write_text("# New\nwelcome new\n", encoding="utf-8")
    report = sync(settings, kb)
    assert report.error is not None and report.error.startswith("_access.yaml") and report.incomplete, report.error
    assert "a pattern" in report.error and "hr/: [hr]" in report.error, report.error
    assert report.added == 0 and access_by_path(settings) == before


def test_a_broken_new_version_keeps_the_old_one_under_the_new_rules(
    tmp_path: Path, kb: Path, fake: FakeProvider
) -> None:
    settings = settings_for(tmp_path, fake)
    sync(settings, kb)
    (kb / "pub/Onboarding.md").write_text("---\ntitle: [unclosed\n---\n# Onboarding\n", encoding="utf-8")
    (kb / "_access.yaml").write_text("hr/: [hr]\npub/: [staff]\n", encoding="utf-8")
    report = sync(settings, kb)
    assert [s["path"] for s in report.skipped] == ["pub/Onboarding.md"]
    assert access_by_path(settings)["pub/Onboarding.md"] == {(("staff",), "folder:pub")}
    assert "pub/Onboarding.md" not in visible(settings, Scope.public())


@pytest.mark.parametrize("how", ["too large", "the run's deadline", "the embedder down"])
def test_a_changed_note_that_is_not_written_keeps_its_old_version_under_the_new_rules(
    tmp_path: Path, kb: Path, fake: FakeProvider, how: str
) -> None:
    """Whatever keeps a changed note's new version from being written (a skip before parsing: too large; a run
    stopped by its deadline; the embedding provider down, every run of the outage), its last version, still
    searchable, is under today's folder rules, as the unchanged notes of its folder are: it stayed public while
    its folder was restricted, run after run."""
    from kbsearch.providers.resilience import Deadline

    settings = settings_for(tmp_path, fake, max_note_bytes=2048)
    (kb / "pub/Other.md").write_text("# Other\nwelcome other\n", encoding="utf-8")
    sync(settings, kb)
    (kb / "_access.yaml").write_text("hr/: [hr]\npub/: [staff]\n", encoding="utf-8")
    with (kb / "pub/Onboarding.md").open("a", encoding="utf-8") as note:
        note.write("padding " * 400 if how == "too large" else "an edit\n")
    if how == "the embedder down":
        fake.fail("embeddings", status=500)
    stop_at = Deadline(0.0) if how == "the run's deadline" else None
    report = run_sync(settings, Secrets(settings), source_uri=str(kb), stop_at=stop_at)
    assert report.chunks_upserted == 0, report
    groups = access_by_path(settings)
    assert groups["pub/Onboarding.md"] == groups["pub/Other.md"] == {(("staff",), "folder:pub")}
    assert not {"pub/Onboarding.md", "pub/Other.md"} & set(visible(settings, Scope.public()))
    assert {"pub/Onboarding.md", "pub/Other.md"} <= set(visible(settings, Scope.of("k", ["staff"])))


def test_an_index_from_before_access_scopes_is_filled_in_without_embedding(
    tmp_path: Path, kb: Path, fake: FakeProvider
) -> None:
    import qdrant_edge as edge

    from kbsearch.qdrant.embedded import EdgeStore

    settings = settings_for(tmp_path, fake)
    sync(settings, kb)
    store = open_store(settings, Secrets(settings))
    assert isinstance(store, EdgeStore)
    try:  # what an older kb-search wrote: no access fields, no access index
        ids: list[Any] = [int(i) if i.isdigit() else i for i in store.points()]  # integer ids as Edge takes them
        store.shard.update(edge.UpdateOperation.delete_payload(ids, ["access", "access_from"]))
        store.shard.update(edge.UpdateOperation.delete_field_index("access"))
        store._written = True
    finally:
        store.close()
    assert visible(settings, Scope.public()) == []  # nothing unlabelled is served to a restricted scope
    embedded = len(fake.calls("embeddings"))
    report = sync(settings, kb)
    assert report.access_updated == 4 and report.unchanged == 4 and len(fake.calls("embeddings")) == embedded
    assert access_by_path(settings)["ops/Incident.md"] == {(("oncall", "security"), "frontmatter")}
    assert visible(settings, Scope.public()) == ["pub/Onboarding.md"]
    store = open_store(settings, Secrets(settings))
    try:
        assert "access" in store.shard.info().payload_schema  # type: ignore[attr-defined]
    finally:
        store.close()


def test_an_access_file_event_cut_short_is_retried_not_lost(tmp_path: Path, kb: Path) -> None:
    """The access file's event past its run's deadline fails back (SQS retries it; ``--watch`` reports it) and
    what it updated is already right; the retry completes it. A public caller never sees a newly restricted note
    once the run that owns the event completes."""
    from kbsearch.events import Change
    from kbsearch.indexer import ChangeSync
    from kbsearch.providers.resilience import Deadline
    from kbsearch.sources import LocalSource

    settings = Settings(qdrant_path=str(tmp_path / "q"))
    sync(settings, kb)
    assert visible(settings, Scope.public()) == ["pub/Onboarding.md"]
    (kb / "_access.yaml").write_text("hr/: [hr]\npub/: [staff]\n", encoding="utf-8")
    change = Change(path="_access.yaml", key="_access.yaml", removed=False)
    store = open_store(settings, Secrets(settings))
    try:
        cut = ChangeSync(LocalSource(kb), store, None).apply([change], stop_at=Deadline(0))
        assert cut.failed_paths == ["_access.yaml"] and cut.incomplete and cut.access_updated == 0
        done = ChangeSync(LocalSource(kb), store, None).apply([change])
        assert done.failed_paths == [] and done.error is None and done.access_updated == 2  # pub/, security/
    finally:
        store.close()
    assert visible(settings, Scope.public()) == ["security/incidents/Breach.md"]
    assert visible(settings, Scope.of("k", ["staff"])) == ["pub/Onboarding.md", "security/incidents/Breach.md"]


#: Names an access file is given by mistake at the KB root: the other YAML extension, no underscore, upper case, a
#: Cyrillic а (a Russian layout), both at once.
MISTAKEN = ["_access.yml", "access.yaml", "_ACCESS.YAML", "_\u0430ccess.yaml", "_Access.yml"]
#: ... and its extension so mistyped: a Cyrillic а or у, full width, a trailing space, dot or zero-width space (each
#: was taken for an attachment: the rules were not read and ``hr/`` was indexed public).
MISTYPED_EXTENSIONS = ["_access.y\u0430ml", "_access.\u0443ml", "_access.\uff59\uff41\uff4d\uff4c", "_access.yaml ",
                       "_access.yaml.", "_access.yml\u200b", "_access.yml\x01"]  # fmt: skip


def sync_from(root: Path, settings: Settings, where: str) -> SyncReport:
    """A full sync of the folder ``root`` as it is (``folder``), or of its files put in a moto bucket (``s3``)."""
    if where == "folder":
        return run_sync(settings, Secrets(settings), source_uri=str(root))
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        for file in root.rglob("*"):
            if file.is_file():
                s3.put_object(Bucket="kb-notes", Key="kb/" + file.relative_to(root).as_posix(), Body=file.read_bytes())
        return run_sync(settings, Secrets(settings), source_uri="s3://kb-notes/kb/")


@pytest.mark.parametrize("name", MISTAKEN + MISTYPED_EXTENSIONS)
@pytest.mark.parametrize("where", ["folder", "s3"])
def test_an_access_file_under_another_name_stops_the_sync(tmp_path: Path, name: str, where: str) -> None:
    """A KB whose rules file is named ``_access.yml`` (or the like) had no rules: every note of ``hr/`` was indexed
    public. A name at the KB root that looks like the access file stops the sync, naming it, and nothing is indexed;
    renamed, the rules apply. The same file in a folder below the root is an attachment like any other."""
    notes = {"hr/Pay.md": "# Pay\nwelcome salary bands\n", "pub/Hello.md": "# Hello\nwelcome all\n"}
    root = tmp_path / "kb"
    write_kb(root, notes, None)
    (root / name).write_text("hr/: [hr]\n", encoding="utf-8")
    (root / "pub" / name).write_text("not: [rules]\n", encoding="utf-8")
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip

    report = sync_from(root, settings, where)
    assert report.incomplete and report.added == 0 and report.error is not None
    assert report.error.startswith(f"{name!r} looks like the access file but is not named '_access.yaml'")
    assert visible(settings, Scope.public()) == []
    (root / name).rename(root / "_access.yaml")
    report = sync_from(root, settings, where)
    assert report.error is None and report.added == 2
    assert visible(settings, Scope.public()) == ["pub/Hello.md"]
    assert sorted(visible(settings, Scope.of("k", ["hr"]))) == ["hr/Pay.md", "pub/Hello.md"]


@pytest.mark.parametrize("folder", ["hr", "hr/pay", "pub"])
@pytest.mark.parametrize("where", ["folder", "s3"])
def test_an_access_file_in_a_folder_stops_the_sync(tmp_path: Path, folder: str, where: str) -> None:
    """``hr/_access.yaml`` (a per-folder access file, as ``.htaccess`` is one) was an attachment like any other: its
    rules were not read and ``hr/Pay.md`` was indexed public, with nothing said. A full sync stops naming it and
    indexes nothing; its rules moved to the root's access file, they apply."""
    notes = {"hr/Pay.md": "# Pay\nwelcome salary bands\n", "pub/Hello.md": "# Hello\nwelcome all\n"}
    root = tmp_path / "kb"
    write_kb(root, notes, None)
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / "_access.yaml").write_text("hr/: [hr]\n", encoding="utf-8")
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip

    report = sync_from(root, settings, where)
    assert report.incomplete and report.added == 0 and report.error is not None
    assert report.error.startswith(f"'{folder}/_access.yaml' is an access file in a folder: only the KB root's")
    assert visible(settings, Scope.public()) == []
    (root / folder / "_access.yaml").rename(root / "_access.yaml")
    report = sync_from(root, settings, where)
    assert report.error is None and report.added == 2
    assert visible(settings, Scope.public()) == ["pub/Hello.md"]
    assert sorted(visible(settings, Scope.of("k", ["hr"]))) == ["hr/Pay.md", "pub/Hello.md"]


def apply_event(root: Path, settings: Settings, where: str, path: str, key: str | None = None) -> Any:
    """An event run (``ChangeSync``) of the note ``path`` saved in the folder ``root`` as it is (``folder``), or
    with its files put in a moto bucket (``s3``): the run's report. ``key``: the note's key within the KB as the
    event names it (default ``path``)."""
    from kbsearch.events import Change
    from kbsearch.indexer import ChangeSync
    from kbsearch.sources import LocalSource, S3Source

    prefix = "kb/" if where == "s3" else ""
    with mock_aws():
        if where == "folder":
            source: Any = LocalSource(root)
        else:
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket="kb-notes")
            for file in root.rglob("*"):
                if file.is_file():
                    s3.put_object(Bucket="kb-notes", Key=prefix + file.relative_to(root).as_posix(),
                                  Body=file.read_bytes())  # fmt: skip
            source = S3Source("kb-notes", "kb", client=s3)
        store = open_store(settings, Secrets(settings))
        try:
            return ChangeSync(source, store, None).apply([Change(path=path, key=prefix + (key or path), removed=False)])
        finally:
            store.close()


@pytest.mark.parametrize("name", MISTAKEN[:3] + MISTYPED_EXTENSIONS)
@pytest.mark.parametrize("where", ["folder", "s3"])
def test_an_access_file_under_another_name_stops_the_events_too(tmp_path: Path, name: str, where: str) -> None:
    """Between full syncs notes arrive by events (the access file's name is never an event: the bucket notifies
    ``.md`` and ``_access.yaml`` only). Once a look-alike of the access file lies at the root, an event run fails
    as a full sync does (the message is retried; nothing is indexed under rules that were not read), and after the
    rename the retried event indexes the note under the rules. A look-alike below the root is an attachment."""

    root = tmp_path / "kb"
    write_kb(root, {"pub/Hello.md": "# Hello\nwelcome all\n"}, None)
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    sync(settings, root)
    (root / "hr").mkdir()
    (root / "hr" / "Pay.md").write_text("# Pay\nwelcome salary bands\n", encoding="utf-8")
    (root / name).write_text("hr/: [hr]\n", encoding="utf-8")
    (root / "pub" / "_access.yml").write_text("not: [rules]\n", encoding="utf-8")
    report = apply_event(root, settings, where, "hr/Pay.md")
    assert report.incomplete and report.failed_paths == ["hr/Pay.md"] and report.error is not None
    assert report.error.startswith(f"{name!r} looks like the access file but is not named '_access.yaml'")
    assert visible(settings, Scope.public()) == ["pub/Hello.md"]  # hr/Pay.md not indexed public
    (root / name).rename(root / "_access.yaml")
    report = apply_event(root, settings, where, "hr/Pay.md")
    assert report.error is None and report.failed_paths == []
    assert visible(settings, Scope.public()) == ["pub/Hello.md"]
    assert sorted(visible(settings, Scope.of("k", ["hr"]))) == ["hr/Pay.md", "pub/Hello.md"]


@pytest.mark.parametrize(("note", "folder"), [("hr/Pay.md", "hr"), ("hr/deep/er/Pay.md", "hr"),
                                             ("hr/deep/er/Pay.md", "hr/deep/er")])  # fmt: skip
@pytest.mark.parametrize("where", ["folder", "s3"])
def test_an_access_file_in_a_folder_above_a_note_stops_its_event(
    tmp_path: Path, note: str, folder: str, where: str
) -> None:
    """``hr/_access.yaml`` stops a full sync (its rules are never read); an event of a note below it was indexed
    public under the root's rules, between full syncs. The event run now looks in each folder above the notes it
    indexes: the note is failed (retried), naming the file, and nothing is indexed; a note elsewhere is indexed as
    before; with the rules moved to the root, the retried event indexes the note under them."""
    root = tmp_path / "kb"
    write_kb(root, {"pub/Hello.md": "# Hello\nwelcome all\n"}, None)
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    sync(settings, root)
    (root / note).parent.mkdir(parents=True)
    (root / note).write_text("# Pay\nwelcome salary bands\n", encoding="utf-8")
    (root / folder / "_access.yaml").write_text("hr/: [hr]\n", encoding="utf-8")
    (root / "pub" / "News.md").write_text("# News\nwelcome news\n", encoding="utf-8")

    report = apply_event(root, settings, where, note)
    assert report.incomplete and report.failed_paths == [note] and report.error is not None
    assert report.error.startswith(f"'{folder}/_access.yaml' is an access file in a folder: only the KB root's")
    assert visible(settings, Scope.public()) == ["pub/Hello.md"]  # the note not indexed public
    report = apply_event(root, settings, where, "pub/News.md")  # no access file above it
    assert report.error is None and report.added == 1
    (root / folder / "_access.yaml").rename(root / "_access.yaml")
    report = apply_event(root, settings, where, note)
    assert report.error is None and report.failed_paths == [] and report.added == 1
    assert sorted(visible(settings, Scope.public())) == ["pub/Hello.md", "pub/News.md"]
    assert note in visible(settings, Scope.of("k", ["hr"]))


@pytest.mark.parametrize(("note_form", "file_form"), [("NFD", "NFD"), ("NFC", "NFD"), ("NFD", "NFC")])
@pytest.mark.parametrize("where", ["folder", "s3"])
def test_an_access_file_in_a_folder_spelt_in_another_unicode_form_stops_its_event(
    tmp_path: Path, note_form: Literal["NFC", "NFD"], file_form: Literal["NFC", "NFD"], where: str
) -> None:
    """A folder named in Cyrillic with ё or й has two spellings (a Mac writes the decomposed one, NFD); a full sync
    reads both as one folder (note paths are NFC) and stops on ``Отчёты/_access.yaml`` in either. The event run
    looked for the access file only under the note path's NFC spelling: a folder uploaded from a Mac (its keys NFD),
    or its access file written there, had the note indexed public between full syncs."""
    root = tmp_path / "kb"
    write_kb(root, {"pub/Hello.md": "# Hello\nwelcome all\n"}, None)
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    sync(settings, root)
    note_folder, file_folder = (unicodedata.normalize(form, "Отчёты") for form in (note_form, file_form))
    for folder in {note_folder, file_folder}:
        (root / folder).mkdir()
    (root / note_folder / "Pay.md").write_text("# Pay\nwelcome salary bands\n", encoding="utf-8")
    (root / file_folder / "_access.yaml").write_text("Отчёты/: [hr]\n", encoding="utf-8")
    path = unicodedata.normalize("NFC", "Отчёты/Pay.md")  # an event's note path (events.Scope.path)

    report = apply_event(root, settings, where, path, key=f"{note_folder}/Pay.md")
    assert report.incomplete and report.failed_paths == [path] and report.error is not None
    assert report.error.startswith(f"'{path.split('/')[0]}/_access.yaml' is an access file in a folder")
    assert visible(settings, Scope.public()) == ["pub/Hello.md"]  # the note not indexed public
    assert sync_from(root, settings, where).error == report.error  # what a full sync says of it


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_an_access_file_in_a_folder_spelt_in_mixed_unicode_forms_stops_its_event(tmp_path: Path, where: str) -> None:
    """A key can spell its folders in different forms (``Отчёты`` decomposed, as a Mac uploaded it, then ``Мой``
    composed, added under it by another tool): neither its NFC nor its NFD spelling is the key's, so the event run
    must look under the key's own spelling too, or the note below ``Отчёты/Мой/_access.yaml`` is indexed public
    while a full sync stops on the file."""
    root = tmp_path / "kb"
    write_kb(root, {"pub/Hello.md": "# Hello\nwelcome all\n"}, None)
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    sync(settings, root)
    folder = f"{unicodedata.normalize('NFD', 'Отчёты')}/{unicodedata.normalize('NFC', 'Мой')}"
    (root / folder).mkdir(parents=True)
    (root / folder / "Pay.md").write_text("# Pay\nwelcome salary bands\n", encoding="utf-8")
    (root / folder / "_access.yaml").write_text("Отчёты/: [hr]\n", encoding="utf-8")
    path = unicodedata.normalize("NFC", f"{folder}/Pay.md")

    report = apply_event(root, settings, where, path, key=f"{folder}/Pay.md")
    assert report.incomplete and report.failed_paths == [path] and report.error is not None
    assert report.error.startswith(f"'{path.rsplit('/', 1)[0]}/_access.yaml' is an access file in a folder")
    assert visible(settings, Scope.public()) == ["pub/Hello.md"]  # the note not indexed public
    assert sync_from(root, settings, where).error == report.error  # what a full sync says of it


ROOT_KINDS = ["folder", "symlink to a folder", "symlink to a folder outside the KB", "symlink to a file",
              "dangling symlink"]  # fmt: skip


@pytest.mark.parametrize("name", ["_access.yml", "_access.yaml"])
@pytest.mark.parametrize("kind", ROOT_KINDS)
def test_a_root_entry_named_like_the_access_file_is_judged_alike_by_the_sync_and_the_events(
    tmp_path: Path, kind: str, name: str
) -> None:
    """A folder (or a link to one) at the root named ``_access.yml`` holds notes, not rules: a full sync indexes
    them, and so does an event run (a link to a folder was counted as a root file by the event run alone: every
    batch failed, for good, while full syncs passed). A link to a file, or a dangling one, under that name stops
    both, as a file does. So for the exact name ``_access.yaml``: a folder (or a link to one) holds notes, which a
    full sync indexed under no rules while an event run read the folder as the access file and failed every
    batch's notes ("not a regular file (a folder)", ``kbsearch serve --watch``), and the note reader answered
    every restricted read 503; now both index its notes and the reader reads no rules from it. A link to a file
    named ``_access.yaml`` is the access file to both; a dangling one stops both."""
    from kbsearch.access import ACCESS_FILE
    from kbsearch.events import Change
    from kbsearch.indexer import ChangeSync
    from kbsearch.reader import NoteReader
    from kbsearch.sources import LocalSource

    root = tmp_path / "kb"
    write_kb(root, {"pub/Hello.md": "# Hello\nwelcome all\n"}, None)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.md").write_text("# X\nwelcome x\n", encoding="utf-8")
    inside: list[str] = []
    if kind == "folder":
        (root / name).mkdir()
        (root / name / "Inside.md").write_text("# Inside\nwelcome inside\n", encoding="utf-8")
        inside = [f"{name}/Inside.md", f"{name}/Later.md"]
    elif kind == "symlink to a folder":
        (root / "sub").mkdir()
        (root / name).symlink_to(root / "sub", target_is_directory=True)
    elif kind == "symlink to a folder outside the KB":
        (root / name).symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    elif kind == "symlink to a file":
        (root / "pub" / "rules.txt").write_text("hr/: [hr]\n", encoding="utf-8")
        (root / name).symlink_to(root / "pub" / "rules.txt")
    else:
        (root / name).symlink_to(root / "gone.yaml")
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    full = run_sync(settings, Secrets(settings), source_uri=str(root))
    (root / "pub" / "New.md").write_text("# New\nwelcome new\n", encoding="utf-8")
    changes = [Change(path="pub/New.md", key="pub/New.md", removed=False)]
    if inside:
        (root / name / "Later.md").write_text("# Later\nwelcome later\n", encoding="utf-8")
        changes.append(Change(path=inside[1], key=inside[1], removed=False))
    store = open_store(settings, Secrets(settings))
    try:
        events = ChangeSync(LocalSource(root), store, None).apply(changes)
    finally:
        store.close()
    reader = NoteReader(lambda: LocalSource(root))  # by path, as kb_get_note reads: the rules first
    if kind == "dangling symlink" or (kind == "symlink to a file" and name != ACCESS_FILE):
        assert full.error is not None and events.error is not None
        if name != ACCESS_FILE:
            assert full.error.startswith("'_access.yml' looks like the access file")
            assert events.error.startswith("'_access.yml' looks like the access file")
        assert sorted(events.failed_paths) == sorted(c.path for c in changes)
        assert visible(settings, Scope.public()) == []
    else:
        assert full.error is None and events.error is None and events.failed_paths == []
        assert visible(settings, Scope.public()) == sorted(["pub/Hello.md", "pub/New.md", *inside])
        assert reader.read("pub/Hello.md", Scope.public()).startswith(b"# Hello")


@contextmanager
def s3_kb(tmp_path: Path, objects: dict[str, bytes]) -> Iterator[tuple[Settings, Any]]:
    """Settings of an embedded store under ``tmp_path`` and no embedder, and moto's S3 client, its bucket
    ``kb-notes`` holding ``objects`` under ``kb/`` (``s3://kb-notes/kb/``): for a KB no folder can hold (an S3
    prefix named as a file, a 1,000-byte name)."""
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        for key, body in objects.items():
            s3.put_object(Bucket="kb-notes", Key=f"kb/{key}", Body=body)
        yield settings, s3


@pytest.mark.parametrize("name", ["_access.yml", "_access.yaml"])
@pytest.mark.parametrize("placeholder", [False, True], ids=["prefix", "prefix with a folder object"])
def test_a_prefix_named_like_the_access_file_holds_notes_on_s3(tmp_path: Path, name: str, placeholder: bool) -> None:
    """On S3 a "folder" is a prefix: ``kb/_access.yaml/Inside.md`` (with or without the console's folder object
    ``kb/_access.yaml/``) is a note, and no object is the access file. The full sync, an event run and the note
    reader agree with the folder's judgement: its notes are indexed and no rules are read."""
    from kbsearch.events import Change
    from kbsearch.indexer import ChangeSync
    from kbsearch.reader import NoteReader
    from kbsearch.sources import S3Source

    objects = {"pub/Hello.md": b"# Hello\nwelcome all\n", f"{name}/Inside.md": b"# Inside\nwelcome inside\n"}
    with s3_kb(tmp_path, objects | ({f"{name}/": b""} if placeholder else {})) as (settings, s3):
        full = run_sync(settings, Secrets(settings), source_uri="s3://kb-notes/kb/")
        s3.put_object(Bucket="kb-notes", Key=f"kb/{name}/Later.md", Body=b"# Later\nwelcome later\n")
        store = open_store(settings, Secrets(settings))
        try:
            events = ChangeSync(S3Source("kb-notes", "kb/", s3), store, None).apply(
                [Change(path=f"{name}/Later.md", key=f"kb/{name}/Later.md", removed=False)]
            )
        finally:
            store.close()
        read = NoteReader(lambda: S3Source("kb-notes", "kb/", s3)).read("pub/Hello.md", Scope.public())
    assert full.error is None and full.added == 2 and events.error is None and events.failed_paths == []
    assert visible(settings, Scope.public()) == sorted(["pub/Hello.md", f"{name}/Inside.md", f"{name}/Later.md"])
    assert read.startswith(b"# Hello")


#: Folders whose names YAML reads as another type when a rule names them without a slash: numbered folders (``01``
#: is the octal 1, ``010`` is 8), versions (``1.10`` is the float 1.1), hex, digit groups, a sign, ``~`` (null).
TYPED_NAMES = ["01", "010", "1.10", "2.50", "0x1F", "1_000", "+1", "~", "1:30"]


@pytest.mark.parametrize("folder", TYPED_NAMES)
def test_a_folder_rule_reaches_a_folder_yaml_would_read_as_a_number(tmp_path: Path, folder: str) -> None:
    """``01: [hr]``, ``1.10: [hr]``: a rule's folder is its name as written, not the number YAML reads in it (the
    rule was read for the folder ``1``, ``1.1``, ``31``, ``null``...: the folder's notes were indexed public)."""
    root = tmp_path / "kb"
    write_kb(root, {f"{folder}/Pay.md": "# Pay\nwelcome salary bands\n", "pub/Hello.md": "# Hello\nwelcome all\n"},
             f"{folder}: [hr]\n")  # fmt: skip
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    report = run_sync(settings, Secrets(settings), source_uri=str(root))
    assert report.error is None and report.added == 2, report
    assert visible(settings, Scope.public()) == ["pub/Hello.md"]
    assert visible(settings, Scope.of("k", ["hr"])) == sorted([f"{folder}/Pay.md", "pub/Hello.md"])


#: A folder and the rule meant for it, one of them spelled with what a reader does not see: a trailing space or
#: no-break space, a zero-width space, full width, a space before the slash or a zero-width space in the rule.
UNSEEN = [("HR ", "hr/"), ("hr\u00a0", "hr/"), ("hr\u200b", "hr/"), ("\uff48\uff52", "hr/"), ("hr", '"hr /"'),
          ("hr", '"hr\u200b/"')]  # fmt: skip


@pytest.mark.parametrize(("folder", "rule"), UNSEEN)
@pytest.mark.parametrize("where", ["folder", "s3"])
def test_a_folder_rule_reaches_its_folder_whatever_a_reader_cannot_see(
    tmp_path: Path, folder: str, rule: str, where: str
) -> None:
    """A rule ``hr/: [hr]`` and a folder that reads ``hr`` but is spelled with a trailing space, an invisible
    character or full-width letters (or the rule so spelled) never matched: the folder's notes were indexed
    public. The rules compare what a reader sees: the notes are the ``hr`` group's, in search and by path."""
    root = tmp_path / "kb"
    write_kb(root, {f"{folder}/Pay.md": "# Pay\nwelcome salary bands\n", "pub/Hello.md": "# Hello\nwelcome all\n"},
             f"{rule}: [hr]\n")  # fmt: skip
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    if where == "folder":
        report = run_sync(settings, Secrets(settings), source_uri=str(root))
    else:
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket="kb-notes")
            for file in root.rglob("*"):
                if file.is_file():
                    s3.put_object(Bucket="kb-notes", Key="kb/" + file.relative_to(root).as_posix(),
                                  Body=file.read_bytes())  # fmt: skip
            report = run_sync(settings, Secrets(settings), source_uri="s3://kb-notes/kb/")
    assert report.error is None and report.added == 2, report
    assert visible(settings, Scope.public()) == ["pub/Hello.md"]
    assert visible(settings, Scope.of("k", ["hr"])) == sorted([f"{folder}/Pay.md", "pub/Hello.md"])
    groups = {path: {g for g, _ in entries} for path, entries in access_by_path(settings).items()}
    assert groups[f"{folder}/Pay.md"] == {("hr",)}
    from kbsearch.reader import NoteReader
    from kbsearch.sources import LocalSource, SourceError

    reader = NoteReader(lambda: LocalSource(root))  # by path, as kb_get_note and GET /notes/{path} read
    with pytest.raises(SourceError, match="no note at"):
        reader.read(f"{folder}/Pay.md", Scope.public())
    assert reader.read(f"{folder}/Pay.md", Scope.of("k", ["hr"])).startswith(b"# Pay")


def test_an_access_file_event_reads_a_note_stored_decomposed_whose_groups_the_index_lacks(
    tmp_path: Path, kb: Path
) -> None:
    """The access file's event re-reads the notes whose groups the index does not record (indexed before access
    scopes) by their path: a note whose file name is decomposed (a macOS copy: `hr/Café.md` as `e` + U+0301) is
    looked up under any name that spells its path, as a full sync lists it. It was looked up under the composed
    name alone, found nowhere and left without groups (readable by no restricted caller) until the next full sync."""
    import unicodedata

    import qdrant_edge as edge

    from kbsearch.events import Change
    from kbsearch.indexer import ChangeSync
    from kbsearch.qdrant.embedded import EdgeStore
    from kbsearch.sources import LocalSource

    path = unicodedata.normalize("NFC", "hr/Café.md")
    (kb / unicodedata.normalize("NFD", path)).write_text("# Café\n\nwelcome to the café\n", encoding="utf-8")
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    sync(settings, kb)
    assert access_by_path(settings)[path] == {(("hr",), "folder:hr")}
    store = open_store(settings, Secrets(settings))
    assert isinstance(store, EdgeStore)
    try:  # what an older kb-search wrote: no access fields
        ids: list[Any] = [int(i) if i.isdigit() else i for i in store.points()]
        store.shard.update(edge.UpdateOperation.delete_payload(ids, ["access", "access_from"]))
        store._written = True
        (kb / "_access.yaml").write_text(
            "hr/: [hr, staff]\nsecurity/incidents/: [security, oncall]\n", encoding="utf-8"
        )
        report = ChangeSync(LocalSource(kb), store, None).apply([Change("_access.yaml", "_access.yaml", False)])
        assert report.error is None and report.skipped == [], report
    finally:
        store.close()
    assert access_by_path(settings)[path] == {(("hr", "staff"), "folder:hr")}
