"""The sync against the embedded Qdrant, a loopback embedding fake, real folders and moto's S3."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import json
import random
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from moto import mock_aws

from kbsearch.chunking import chunk_note
from kbsearch.config import Secrets, Settings
from kbsearch.indexer import GC_YOUNG_WHILE_WRITING, Indexer, SyncOptions, SyncReport
from kbsearch.notes import NoteError, parse_note
from kbsearch.providers.embeddings import build_embedder
from kbsearch.providers.resilience import Deadline, ProviderError, shared_client
from kbsearch.qdrant import open_store
from kbsearch.qdrant.query import filter_json, point_id, point_number
from kbsearch.qdrant.store import Store
from kbsearch.sources import LocalSource, S3Source, Source, SourceError, SourceObject
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import ROOT, VAULT, provider_settings

NOTE = """---
id: {id}
title: {title}
tags: [ops, qdrant]
type: runbook
status: active
updated: 2026-01-0{n}
---
# {title}

Intro about {title}.

## Steps

Run the thing number {n}. See [[Other note|the other one]].
"""


def write_notes(root: Path, count: int, prefix: str = "n") -> None:
    for i in range(count):
        (root / f"{prefix}{i:02d}.md").write_text(
            NOTE.format(id=f"{prefix}-{i}", title=f"Note {prefix}{i}", n=i % 9 + 1)
        )


def store_for(settings: Settings) -> Store:
    return open_store(settings, Secrets(settings))


def run(source: Source, settings: Settings, **options: Any) -> SyncReport:
    store = store_for(settings)
    try:
        embedder = build_embedder(settings, Secrets(settings), shared_client())
        return Indexer(source, store, embedder, SyncOptions.from_settings(settings, **options)).sync()
    finally:
        store.close()


def snapshot(settings: Settings) -> dict[str, str]:
    """point id → hash of its payload (without the indexing time): equal snapshots are equal collections."""
    store = store_for(settings)
    try:
        points = store.points()
    finally:
        store.close()
    out = {}
    for pid, payload in points.items():
        payload.pop("indexed_at", None)
        payload.pop("links_at", None)  # the link targets' generation: the store's history
        out[pid] = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return out


def assert_exact_chunks(settings: Settings, root: Path) -> None:
    """For every note on disk, the points in Qdrant are exactly its chunks: no orphans, no duplicates."""
    store = store_for(settings)
    try:
        points = store.points()
        edge = type(store).__name__ == "EdgeStore"
    finally:
        store.close()
    expected: dict[str, str] = {}
    for file in root.rglob("*.md"):
        rel = file.relative_to(root).as_posix()
        try:
            note = parse_note(rel, file.read_bytes())
        except NoteError:
            continue  # skipped by the indexer (never indexed here)
        for chunk in chunk_note(note):
            # the embedded engine's points have integer ids (point_number), Qdrant Cloud's and local mode's UUIDs
            expected[str(point_number(rel, chunk.index)) if edge else point_id(rel, chunk.index)] = rel
    assert {pid: p["path"] for pid, p in points.items()} == expected


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    if not VAULT.is_dir():
        pytest.skip("shared/kb/obsidian-help is not present")
    dest = tmp_path / "vault"
    shutil.copytree(VAULT, dest)
    return dest


def test_vault_sync_modify_delete_rename_add(vault: Path, tmp_path: Path, deepinfra: FakeProvider) -> None:
    settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"))
    source = LocalSource(vault)
    notes = sorted(p for p in vault.rglob("*.md"))
    assert len(notes) == 346

    first = run(source, settings)
    assert first.added == 346 and first.skipped == [] and first.dense and not first.incomplete
    assert first.attachments_ignored == 134
    assert first.embedding_calls == len(deepinfra.calls("embeddings")) > 0
    assert_exact_chunks(settings, vault)

    rng = random.Random(7)
    picked = rng.sample(notes, 12)
    modified, deleted, renamed = picked[:5], picked[5:8], picked[8:10]
    for p in modified:
        p.write_text(
            p.read_text(encoding="utf-8") + "\n\n## Added section\n\nFresh text about ёлки.\n", encoding="utf-8"
        )
    for p in deleted:
        p.unlink()
    for p in renamed:
        p.rename(p.with_name("Renamed " + p.name))
    (vault / "en" / "Brand new.md").write_text("# Brand new\n\nA new note about [[Embed files]].\n")
    (vault / "ru" / "Новая заметка.md").write_text("---\ntags: новое\n---\n# Новая\n\nТекст заметки.\n")

    before = len(deepinfra.calls("embeddings"))
    second = run(source, settings)
    assert (second.added, second.updated, second.deleted, second.unchanged) == (4, 5, 5, 346 - 10)
    assert second.skipped == [] and not second.incomplete
    # unchanged notes cost nothing: every text embedded belongs to a changed or new note
    changed_paths = {p.relative_to(vault).as_posix() for p in modified} | {"en/Brand new.md", "ru/Новая заметка.md"}
    changed_paths |= {p.with_name("Renamed " + p.name).relative_to(vault).as_posix() for p in renamed}
    expected_texts = [
        c.embed_text for rel in sorted(changed_paths) for c in chunk_note(parse_note(rel, (vault / rel).read_bytes()))
    ]
    sent = [t for r in deepinfra.calls("embeddings")[before:] for t in r.body["input"]]
    assert sorted(sent) == sorted(expected_texts)
    assert second.embedding_calls == len(deepinfra.calls("embeddings")) - before
    assert_exact_chunks(settings, vault)

    third = run(source, settings)
    assert (third.added, third.updated, third.deleted, third.unchanged) == (0, 0, 0, 345)
    assert third.embedding_calls == 0 and third.chunks_upserted == 0 and third.chunks_deleted == 0


def test_no_key_indexes_sparse_only_then_embeds_when_a_key_appears(tmp_path: Path, deepinfra: FakeProvider) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 3)
    sparse_only = Settings(qdrant_path=str(tmp_path / "q"), embedding_dimensions=64)
    report = run(LocalSource(kb), sparse_only)
    assert report.dense is False and report.added == 3 and report.embedding_calls == 0
    with_key = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"))
    report = run(LocalSource(kb), with_key)
    assert report.dense is True and report.updated == 3 and report.embedding_calls == 1


def test_s3_source_through_moto(tmp_path: Path, deepinfra: FakeProvider) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")
        body = NOTE.format(id="x", title="Ротация ключей", n=1).encode()
        s3.put_object(Bucket="kb-notes", Key="notes/ru/Заметки/ротация ключей.md", Body=body)
        s3.put_object(
            Bucket="kb-notes", Key="notes/en/with space.md", Body=NOTE.format(id="y", title="Spaces", n=2).encode()
        )
        s3.put_object(Bucket="kb-notes", Key="notes/img/pic.png", Body=b"\x89PNG\x00")
        s3.put_object(Bucket="kb-notes", Key="notes/folder/", Body=b"")
        s3.put_object(Bucket="kb-notes", Key="elsewhere/skip.md", Body=b"# not under the prefix")
        for i in range(1200):  # more than one ListObjectsV2 page (1000)
            s3.put_object(Bucket="kb-notes", Key=f"notes/att/{i:04d}.txt", Body=b"x")
        settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"))
        source = S3Source("kb-notes", "notes", s3)
        report = run(source, settings)
        assert report.added == 2 and report.attachments_ignored == 1201 and report.skipped == []
        store = store_for(settings)
        paths = {p["path"] for p in store.points().values()}
        store.close()
        assert paths == {"ru/Заметки/ротация ключей.md", "en/with space.md"}
        assert source.read_path("ru/Заметки/ротация ключей.md") == body
        with pytest.raises(SourceError, match="no note"):
            source.read_path("missing.md")
        again = run(source, settings)
        assert again.unchanged == 2 and again.embedding_calls == 0
        s3.delete_object(Bucket="kb-notes", Key="notes/en/with space.md")
        s3.put_object(Bucket="kb-notes", Key="notes/en/new.md", Body=b"# New\n\ntext")
        third = run(source, settings)
        assert (third.added, third.deleted, third.unchanged) == (1, 1, 1)


class FailingListing:
    """A source whose listing breaks after ``after`` objects (a lost page, a timeout)."""

    def __init__(self, inner: LocalSource, after: int) -> None:
        self.inner = inner
        self.after = after
        self.uri = inner.uri

    def list(self) -> Iterator[SourceObject]:
        for i, obj in enumerate(self.inner.list()):
            if i == self.after:
                raise SourceError("listing failed: connection reset")
            yield obj

    def read(self, obj: SourceObject) -> bytes:
        return self.inner.read(obj)

    def read_path(self, path: str) -> bytes:
        return self.inner.read_path(path)

    def root_names(self) -> Iterable[str]:
        return self.inner.root_names()


def test_listing_failure_deletes_nothing(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 10)
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    run(LocalSource(kb), settings)
    before = snapshot(settings)
    report = run(FailingListing(LocalSource(kb), after=3), settings)
    assert report.error and "listing failed" in report.error and report.incomplete
    assert report.deleted == 0 and snapshot(settings) == before


def test_mass_delete_guard_and_override(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 10)
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    run(LocalSource(kb), settings)
    for p in sorted(kb.glob("*.md"))[:6]:
        p.unlink()
    blocked = run(LocalSource(kb), settings)
    assert blocked.deleted == 0 and blocked.deletion_blocked and "6 of 10" in blocked.deletion_blocked
    assert len({p["path"] for p in store_points(settings)}) == 10
    allowed = run(LocalSource(kb), settings, allow_mass_delete=True)
    assert allowed.deleted == 6 and allowed.deletion_blocked is None
    assert_exact_chunks(settings, kb)


def store_points(settings: Settings) -> list[dict[str, Any]]:
    store = store_for(settings)
    try:
        return list(store.points().values())
    finally:
        store.close()


def test_bad_notes_are_skipped_and_keep_their_last_good_version(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 6)
    settings = Settings(qdrant_path=str(tmp_path / "q"), max_note_bytes=4096)
    run(LocalSource(kb), settings)
    good = {p["path"]: p["etag"] for p in store_points(settings)}
    (kb / "n00.md").write_text("---\ntitle: [unclosed\n---\nbody")
    (kb / "n01.md").write_bytes("# Заметка\n".encode("cp1251"))
    (kb / "n02.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (kb / "n03.md").write_text("   \n\n")
    (kb / "n04.md").write_text("# big\n\n" + "word " * 2000)
    (kb / "new-bad.md").write_text("---\n- a list\n- not a mapping\n---\n")
    (kb / "new-good.md").write_text("# Fine\n\nstill indexed")
    report = run(LocalSource(kb), settings)
    reasons = {s["path"]: s["reason"] for s in report.skipped}
    assert set(reasons) == {"n00.md", "n01.md", "n02.md", "n03.md", "n04.md", "new-bad.md"}
    assert "invalid YAML" in reasons["n00.md"]
    assert "not UTF-8" in reasons["n01.md"]
    assert "binary" in reasons["n02.md"]
    assert "empty" in reasons["n03.md"]
    assert "too large" in reasons["n04.md"]
    assert "not a mapping" in reasons["new-bad.md"]
    assert report.added == 1 and report.unchanged == 1
    after = {p["path"]: p["etag"] for p in store_points(settings)}
    for path in ("n00.md", "n01.md", "n02.md", "n03.md", "n04.md"):
        assert after[path] == good[path]  # the last good version is still searchable


def test_a_note_without_front_matter_stores_no_nulls_and_every_filter_sees_it_as_before(tmp_path: Path) -> None:
    """The front-matter fields a note does not set are left out of its chunks' payloads (``UNSET_OMITTED``), not stored
    as nulls; every filter, facet and ordering the product runs on them matches, counts and orders as it did."""
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 2)  # type runbook, status active, updated 2026-01-01 / -02
    (kb / "bare.md").write_text("# Bare\n\nNo front matter here. See [[n00]].\n\n## More\n\n" + "words " * 300)
    (kb / "partial.md").write_text("---\ntype: howto\n---\n# Partial\n\nOnly a type.\n")
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    run(LocalSource(kb), settings)
    points = store_points(settings)
    by_path: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        by_path.setdefault(p["path"], []).append(p)
    assert len(by_path["bare.md"]) > 1
    for p in by_path["bare.md"]:
        assert not {"type", "status", "summary", "ai_weight", "created", "updated"} & set(p), p  # left out, not null
    for p in by_path["partial.md"]:
        assert p["type"] == "howto"  # what a note sets is stored
        assert not {"status", "summary", "ai_weight", "created", "updated"} & set(p)
    for p in by_path["n00.md"]:
        assert (p["type"], p["status"], p["updated"]) == ("runbook", "active", "2026-01-01")
    store = store_for(settings)
    try:

        def paths(where: dict[str, Any] | None) -> set[str]:
            found, _ = store.scroll({"filter": where, "limit": 1000, "with_payload": ["path"]}, 10.0)
            return {hit["payload"]["path"] for hit in found}

        typed, all_paths = {"n00.md", "n01.md"}, {"n00.md", "n01.md", "bare.md", "partial.md"}
        assert paths(filter_json(types=["runbook"])) == typed
        assert paths(filter_json(types=["howto"])) == {"partial.md"}
        assert paths(filter_json(statuses=["active"])) == typed
        assert paths(filter_json(updated_after=dt.date(2026, 1, 1))) == {"n01.md"}
        assert paths({"must": [{"is_empty": {"key": "type"}}]}) == {"bare.md"}
        assert paths({"must": [{"is_empty": {"key": "updated"}}]}) == {"bare.md", "partial.md"}
        assert paths({"must_not": [{"key": "status", "match": {"value": "active"}}]}) == {"bare.md", "partial.md"}
        assert paths(None) == all_paths
        first = {"must": [{"key": "chunk_index", "match": {"value": 0}}]}
        assert dict(store.facet({"key": "type", "filter": first, "limit": 10, "exact": True}, 10.0)) == {
            "runbook": 2, "howto": 1}  # fmt: skip
        assert dict(store.facet({"key": "status", "filter": first, "limit": 10, "exact": True}, 10.0)) == {"active": 2}
        newest = store.query({"query": {"order_by": {"key": "updated", "direction": "desc"}}, "filter": first,
                              "limit": 10, "with_payload": ["path"]}, 10.0)  # fmt: skip
        assert [hit["payload"]["path"] for hit in newest] == ["n01.md", "n00.md"]
    finally:
        store.close()


def hostile_kb(kb: Path) -> None:
    """sample-kb, edited into every outcome a note's parse can have: bad YAML, not UTF-8, binary, empty, too
    large, a root that is not a mapping, an unusable access declaration, a dropped field (a warning), a folder
    rule, and notes that are fine."""
    shutil.copytree(ROOT / "sample-kb", kb)
    write_notes(kb, 6)
    (kb / "_access.yaml").write_text("n0/: [hr]\n")
    (kb / "n00.md").write_text("---\ntitle: [unclosed\n---\nbody")
    (kb / "n01.md").write_bytes("# Заметка\n".encode("cp1251"))
    (kb / "n02.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (kb / "n03.md").write_text("   \n\n")
    (kb / "n04.md").write_text("# big\n\n" + "word " * 20_000)
    (kb / "bad-root.md").write_text("---\n- a list\n- not a mapping\n---\n")
    (kb / "bad-access.md").write_text('---\naccess: ["Not A Group!"]\n---\n# Secret\n\nbody')
    (kb / "dropped.md").write_text("---\ntitle: Dates\nwhen: 2024-02-30\n---\n# Dates\n\nA date that does not exist.")


@pytest.mark.parametrize("embedded", [False, True])
def test_notes_parsed_in_another_process_index_as_parsed_here(
    tmp_path: Path, deepinfra: FakeProvider, monkeypatch: pytest.MonkeyPatch, embedded: bool
) -> None:
    """A large sync of a folder parses its notes in another process (PARSE_PROCESS_FROM notes and up): the same
    points, payloads, skips, warnings and counts as parsing them in the indexing process, bad notes included, with
    a window's worth of notes parsed ahead of a deadline (CountdownDeadline) dropped and resumed."""
    from kbsearch import indexer

    kb = tmp_path / "kb"
    hostile_kb(kb)
    reports, snapshots = [], []
    elsewhere: list[int] = []
    parse_ahead = indexer.parse_ahead

    def counted(*args: Any) -> Any:
        elsewhere.append(len(args[1]))
        return parse_ahead(*args)

    monkeypatch.setattr(indexer, "parse_ahead", counted)
    for threshold in (10**9, 1):
        monkeypatch.setattr(indexer, "PARSE_PROCESS_FROM", threshold)
        monkeypatch.setattr(indexer, "PARSE_BATCH", 3)
        settings = provider_settings(deepinfra if embedded else None, qdrant_path=str(tmp_path / f"q{threshold}"),
                                     max_note_bytes=40_000)  # fmt: skip
        store = store_for(settings)
        embedder = build_embedder(settings, Secrets(settings), shared_client())
        try:
            cut = Indexer(LocalSource(kb), store, embedder, SyncOptions.from_settings(settings, window_chunks=8)).sync(
                stop_at=CountdownDeadline(20)
            )
            report = Indexer(
                LocalSource(kb), store, embedder, SyncOptions.from_settings(settings, window_chunks=8)
            ).sync()
        finally:
            store.close()
        assert cut.incomplete and cut.added > 0 and report.added + report.unchanged > cut.added
        reports.append([{k: v for k, v in r.to_dict().items() if k not in ("duration_ms", "access_standing")}
                        | {"standing": (r.access_standing or {}).get("count")} for r in (cut, report)])  # fmt: skip
        snapshots.append(snapshot(settings))
    assert elsewhere and all(elsewhere)  # the second pair of syncs parsed in the other process, the first did not
    assert reports[0] == reports[1]
    assert snapshots[0] == snapshots[1]
    skipped = {s["path"] for s in reports[0][0]["skipped"]} | {s["path"] for s in reports[0][1]["skipped"]}
    assert {"n00.md", "n01.md", "n02.md", "n03.md", "n04.md", "bad-root.md", "bad-access.md"} <= skipped
    assert any(w["path"] == "dropped.md" for r in reports[0] for w in r["warnings"])


def test_a_parsing_process_killed_mid_sync_leaves_the_rest_to_the_indexing_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The parsing process dies (the OOM killer, a signal) while it holds notes parsed ahead and the indexer still
    needs more: what it sent is indexed, the rest is parsed in the indexing process with a warning, and the index
    holds exactly the KB's chunks."""
    import multiprocessing
    import os
    import signal
    import time

    from kbsearch import indexer

    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 200)  # the indexer reads them for seconds (0.1 s an embedding call): the kill lands mid-sync
    monkeypatch.setattr(indexer, "PARSE_PROCESS_FROM", 1)
    monkeypatch.setattr(indexer, "PARSE_BATCH", 1)  # 200 batches, PARSE_AHEAD of them held unread
    monkeypatch.setattr(indexer, "PARSE_POLL_S", 0.2)
    killed: list[int] = []

    def kill_the_parser() -> None:
        deadline = time.monotonic() + 60
        while not multiprocessing.active_children() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # it has parsed ahead and waits for the indexer to read
        for child in multiprocessing.active_children():
            os.kill(child.pid or 0, signal.SIGKILL)
            killed.append(child.pid or 0)

    fake = FakeProvider("deepinfra", api_key="di-test-key", latency={"embeddings": 0.1}).start()
    try:
        settings = provider_settings(fake, qdrant_path=str(tmp_path / "q"))
        killer = threading.Thread(target=kill_the_parser)
        killer.start()
        with caplog.at_level("WARNING", logger="kbsearch"):
            report = run(LocalSource(kb), settings, window_chunks=4)
        killer.join()
    finally:
        fake.stop()
    assert killed, "the parsing process never started"
    # killed while it parsed a note (a loaded host: not yet ahead), that note is skipped on this run (round 28b: the
    # note that ends one process is not handed to the next); killed while it waited, none is
    skipped = [s["path"] for s in report.skipped]
    assert report.error is None and report.added == 200 - len(skipped) and len(skipped) <= 1, report
    assert all(s["reason"].startswith("the parsing process ended while parsing it") for s in report.skipped), report
    assert "notes are parsed in the indexing process (ChildProcessError)" in caplog.text, caplog.text
    for path in skipped:
        (kb / path).unlink()  # the KB as indexed
    assert_exact_chunks(settings, kb)


def test_a_script_without_a_main_guard_is_not_run_again_by_the_parsing_process(tmp_path: Path) -> None:
    """The parsing process is spawned (a fresh interpreter), which imports the caller's ``__main__`` again unless
    the indexer hides it: a script that indexes at import time would then index twice, at once, into one store."""
    import os
    import subprocess
    import sys

    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 4)
    script = tmp_path / "index_it.py"
    script.write_text(
        "import kbsearch.indexer as ix\n"
        "from kbsearch.config import Secrets, Settings\n"
        "ix.PARSE_PROCESS_FROM = 1\n"
        "print('script ran', flush=True)\n"
        f"s = Settings(qdrant_path={str(tmp_path / 'q')!r})\n"
        f"r = ix.run_sync(s, Secrets(s), source_uri={str(kb)!r})\n"
        "print('indexed', r.added, r.error, flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=120,
                          env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["script ran", "indexed 4 None"], done.stdout + done.stderr[-2000:]


class Crash(Exception):
    pass


class CrashingStore:
    """The real store (whichever the embedded one is), failing on its k-th write (upsert or delete), as a process
    killed mid-sync would."""

    def __init__(self, inner: Store, crash_at: int) -> None:
        self.inner = inner
        self.writes = 0
        self.crash_at = crash_at

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _tick(self) -> None:
        self.writes += 1
        if self.writes == self.crash_at:
            raise Crash(f"crash at write {self.crash_at}")

    def upsert(self, chunks: Any) -> None:
        self._tick()
        self.inner.upsert(chunks)

    def delete_note(self, path: str) -> None:
        self._tick()
        self.inner.delete_note(path)

    def delete_leftovers(self, path: str, n_chunks: int) -> None:
        self._tick()
        self.inner.delete_leftovers(path, n_chunks)


def mutate(kb: Path) -> None:
    """Shrink, grow, delete, rename and add notes: every kind of write the sync makes."""
    (kb / "n00.md").write_text("# Short now\n\none chunk")
    (kb / "n01.md").write_text((kb / "n01.md").read_text() + "\n## More\n\nmore\n\n## Even more\n\nmore again\n")
    (kb / "n02.md").unlink()
    (kb / "n03.md").rename(kb / "n03-renamed.md")
    (kb / "fresh.md").write_text("# Fresh\n\nnew one")


def count_writes(tmp_path: Path, window: int) -> int:
    """How many writes the mutation sync makes (the crash test crashes at every one of them)."""
    kb = tmp_path / "count-kb"
    kb.mkdir()
    write_notes(kb, 8)
    settings = Settings(qdrant_path=str(tmp_path / "count-q"))
    run(LocalSource(kb), settings)
    mutate(kb)
    store = CrashingStore(store_for(settings), crash_at=0)
    try:
        Indexer(LocalSource(kb), cast(Store, store), None, SyncOptions(window_chunks=window)).sync()
    finally:
        store.close()
    return store.writes


@pytest.mark.parametrize("window", [1, 3, 64])
def test_crash_at_every_write_then_sync_equals_clean_build(
    tmp_path: Path, window: int, deepinfra: FakeProvider
) -> None:
    writes = count_writes(tmp_path, window)
    assert writes >= 4  # 2 deletes, at least 1 upsert, 1 leftover delete
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 8)
    mutate(kb)
    clean = provider_settings(deepinfra, qdrant_path=str(tmp_path / "clean"))
    run(LocalSource(kb), clean)
    expected = snapshot(clean)
    for crash_at in range(1, writes + 1):
        shutil.rmtree(kb)
        kb.mkdir()
        write_notes(kb, 8)
        settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / f"q{crash_at}"), embedding_batch_size=2)
        run(LocalSource(kb), settings)
        mutate(kb)
        store = CrashingStore(store_for(settings), crash_at)
        embedder = build_embedder(settings, Secrets(settings), shared_client())
        try:
            with pytest.raises(Crash):
                Indexer(LocalSource(kb), cast(Store, store), embedder, SyncOptions(window_chunks=window)).sync()
        finally:
            store.close()
        recovered = run(LocalSource(kb), settings)
        assert not recovered.incomplete
        assert snapshot(settings) == expected, f"crash at write {crash_at} left a different collection"
        assert run(LocalSource(kb), settings).unchanged == 8  # and then it is quiet


class WindowLog:
    """The store and the embedder of one sync, recording the windows each embeds and writes; the embedder fails
    on window ``fail_window``."""

    def __init__(self, store: Store, embedder: Any, fail_window: int | None = None) -> None:
        self.store, self.embedder, self.fail_window = store, embedder, fail_window
        self.events: list[tuple[str, int]] = []
        self.upserted: list[list[str]] = []
        self.embed_documents = embedder.embed_documents
        embedder.embed_documents = self._embed

    def _embed(
        self,
        texts: Any,
        deadline: Any = None,
        stats: Any = None,
        known: Any = None,
        into: Any = None,
        go_on: Any = None,
    ) -> Any:
        window = sum(1 for kind, _ in self.events if kind == "embed")
        self.embedding(window)
        self.events.append(("embed", window))
        if window == self.fail_window:
            raise ProviderError("deepinfra", "server", "injected")
        return self.embed_documents(texts, deadline, stats, known, into, go_on)

    def embedding(self, window: int) -> None:
        """Called as window ``window`` (0-based) starts to be embedded: for a subclass to watch."""

    def upsert(self, chunks: Any) -> None:
        self.events.append(("upsert", len(self.upserted)))
        self.upserted.append(sorted({c.path for c in chunks}))
        self.store.upsert(chunks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def logged_sync(
    tmp_path: Path, deepinfra: FakeProvider, make_log: Callable[[Store, Any], WindowLog]
) -> tuple[Path, Settings, WindowLog, SyncReport]:
    """A full sync of 8 notes, 2 to a window (4 chunks), through the log ``make_log`` makes of its store and
    embedder: (the vault, its settings, the log, the report)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 8)
    settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"))
    store = store_for(settings)
    log = make_log(store, build_embedder(settings, Secrets(settings), shared_client()))
    try:
        report = Indexer(LocalSource(kb), cast(Store, log), log.embedder, SyncOptions(window_chunks=4)).sync()
    finally:
        store.close()
    return kb, settings, log, report


def test_a_failed_embedding_leaves_the_windows_before_it_written(tmp_path: Path, deepinfra: FakeProvider) -> None:
    """The provider fails on the third window: the two before are written, nothing after, and the report says so;
    the next run indexes the rest."""
    kb, settings, log, report = logged_sync(tmp_path, deepinfra, lambda s, e: WindowLog(s, e, fail_window=2))
    assert report.incomplete and report.error == "embedding failed: deepinfra: injected"
    assert log.upserted == [["n00.md", "n01.md"], ["n02.md", "n03.md"]]
    assert report.added == 4 and report.chunks_upserted == 8
    resumed = run(LocalSource(kb), settings)
    assert resumed.added == 4 and resumed.unchanged == 4 and not resumed.incomplete
    assert_exact_chunks(settings, kb)


class OverlapLog(WindowLog):
    """A :class:`WindowLog` whose write of window k waits (up to 5 s) for window k + 1's embedding to start, and
    records whether it did: a sync that embedded each window only after writing the one before never would."""

    def __init__(self, store: Store, embedder: Any, windows: int) -> None:
        super().__init__(store, embedder)
        self.windows = windows
        self.started = [threading.Event() for _ in range(windows)]
        self.overlapped: list[bool] = []

    def embedding(self, window: int) -> None:
        self.started[window].set()

    def upsert(self, chunks: Any) -> None:
        k = len(self.upserted)
        if k + 1 < self.windows:
            self.overlapped.append(self.started[k + 1].wait(timeout=5))
        super().upsert(chunks)


def test_the_next_window_is_embedded_while_one_is_written(tmp_path: Path, deepinfra: FakeProvider) -> None:
    """The provider works while the store does: window k + 1 is being embedded while window k is written; the
    windows are still written in order, each once, with the vectors a sync one window at a time writes."""
    kb, settings, log, report = logged_sync(tmp_path, deepinfra, lambda s, e: OverlapLog(s, e, windows=4))
    assert isinstance(log, OverlapLog) and not report.incomplete and report.added == 8 and report.embedding_calls == 4
    assert log.overlapped == [True, True, True]
    assert log.upserted == [["n00.md", "n01.md"], ["n02.md", "n03.md"], ["n04.md", "n05.md"], ["n06.md", "n07.md"]]
    assert_exact_chunks(settings, kb)


class ThresholdLog(WindowLog):
    """A :class:`WindowLog` that records the collector's thresholds at each write."""

    def __init__(self, store: Store, embedder: Any, fail_window: int | None = None) -> None:
        super().__init__(store, embedder, fail_window)
        self.thresholds: list[tuple[int, int, int]] = []

    def upsert(self, chunks: Any) -> None:
        self.thresholds.append(gc.get_threshold())
        super().upsert(chunks)


@pytest.mark.parametrize("fail_window", [None, 2])
def test_the_collector_runs_less_often_while_notes_are_written_and_as_before_after(
    tmp_path: Path, deepinfra: FakeProvider, fail_window: int | None
) -> None:
    """While windows are written the cyclic collector's first threshold is at least GC_YOUNG_WHILE_WRITING (a
    window's vectors and payloads are not walked again every 700 allocations); after the sync, whether it ended
    or the provider failed, the thresholds are what they were."""
    before = gc.get_threshold()
    kb, settings, log, report = logged_sync(tmp_path, deepinfra, lambda s, e: ThresholdLog(s, e, fail_window))
    assert isinstance(log, ThresholdLog) and log.thresholds and report.incomplete == (fail_window is not None)
    assert all(t == (max(GC_YOUNG_WHILE_WRITING, before[0]), *before[1:]) for t in log.thresholds), log.thresholds
    assert gc.get_threshold() == before
    if fail_window is None:
        assert_exact_chunks(settings, kb)


class CountdownDeadline(Deadline):
    """Lets ``n`` notes start, then says time is up (a Lambda about to hit its timeout)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def remaining(self) -> float:
        self.n -= 1
        return 1.0 if self.n >= 0 else 0.0


def test_deadline_stops_cleanly_and_the_next_run_resumes(tmp_path: Path, deepinfra: FakeProvider) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 12)
    settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"))
    store = store_for(settings)
    embedder = build_embedder(settings, Secrets(settings), shared_client())
    try:
        report = Indexer(LocalSource(kb), store, embedder, SyncOptions(window_chunks=4)).sync(
            stop_at=CountdownDeadline(5)
        )
    finally:
        store.close()
    assert report.incomplete and report.error is None
    assert report.added + report.remaining == 12 and 0 < report.added < 12
    resumed = run(LocalSource(kb), settings)
    assert resumed.added == 12 - report.added and resumed.unchanged == report.added and not resumed.incomplete
    assert_exact_chunks(settings, kb)


def test_full_sync_reembeds_everything(tmp_path: Path, deepinfra: FakeProvider) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 4)
    settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"))
    run(LocalSource(kb), settings)
    report = run(LocalSource(kb), settings, full=True)
    assert report.updated == 4 and report.embedding_calls >= 1 and report.full


def test_schema_mismatch_rebuilds_the_embedded_store(tmp_path: Path) -> None:
    """The embedded store is a local copy of the KB: another schema rebuilds it, with one line saying so (Qdrant
    Cloud stops instead and names --rebuild: tests/integration/test_rebuild.py)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 1)
    run(LocalSource(kb), Settings(qdrant_path=str(tmp_path / "q"), embedding_dimensions=64))
    write_notes(kb, 2)
    report = run(LocalSource(kb), Settings(qdrant_path=str(tmp_path / "q"), embedding_dimensions=128))
    assert report.error is None and not report.incomplete and report.added == 2
    assert report.reembedded == (
        "the local collection was rebuilt and every note re-indexed (dense size 64 but EMBEDDING_DIMENSIONS=128)"
    )


@pytest.mark.parametrize("seed", range(20))
def test_chaos_seeded_crash_or_timeout_then_sync_equals_clean_build(
    tmp_path: Path, seed: int, deepinfra: FakeProvider
) -> None:
    """sample-kb, a random mix of edits, then a sync that dies at a random point: an exception at a random write,
    or a simulated Lambda timeout after a random number of notes. A normal sync must converge to a clean build."""
    rng = random.Random(seed)
    kb = tmp_path / "kb"
    shutil.copytree(ROOT / "sample-kb", kb)
    settings = provider_settings(deepinfra, qdrant_path=str(tmp_path / "q"), embedding_batch_size=4)
    run(LocalSource(kb), settings)
    notes = sorted(kb.rglob("*.md"))
    for path in rng.sample(notes, rng.randint(1, 6)):
        action = rng.choice(["edit", "grow", "shrink", "delete", "rename"])
        if action == "edit":
            path.write_text(path.read_text(encoding="utf-8") + f"\n\nedit {seed}\n", encoding="utf-8")
        elif action == "grow":
            path.write_text(path.read_text(encoding="utf-8") + "".join(f"\n\n## S{i}\n\ntext {i}" for i in range(5)))
        elif action == "shrink":
            path.write_text(f"# {path.stem}\n\nshort now\n", encoding="utf-8")
        elif action == "delete":
            path.unlink()
        else:
            path.rename(path.with_name(f"moved-{seed}-{path.name}"))
    for i in range(rng.randint(0, 3)):
        (kb / f"new-{seed}-{i}.md").write_text(f"# New {i}\n\nadded by seed {seed}\n", encoding="utf-8")
    store = CrashingStore(store_for(settings), crash_at=rng.randint(1, 6))
    embedder = build_embedder(settings, Secrets(settings), shared_client())
    indexer = Indexer(LocalSource(kb), cast(Store, store), embedder, SyncOptions(window_chunks=rng.choice([2, 8, 64])))
    try:
        if rng.random() < 0.5:
            store.crash_at = 0  # no exception: the Lambda runs out of time instead
            report = indexer.sync(stop_at=CountdownDeadline(rng.randint(0, 4)))
            assert report.incomplete or report.remaining == 0
        else:
            with contextlib.suppress(Crash):  # the crash may come after the last write: then no exception
                indexer.sync()
    finally:
        store.close()
    recovered = run(LocalSource(kb), settings)
    assert not recovered.incomplete and recovered.error is None
    clean = provider_settings(deepinfra, qdrant_path=str(tmp_path / "clean"), embedding_batch_size=4)
    run(LocalSource(kb), clean)
    assert snapshot(settings) == snapshot(clean)
    assert_exact_chunks(settings, kb)


STRAY_STATES = {  # a point of a note whose state fields are not the indexer's (another writer, a hand edit)
    "chunk_index text": {"chunk_index": "x", "n_chunks": 2},
    "chunk_index null": {"chunk_index": None, "n_chunks": 2},
    "chunk_index float": {"chunk_index": 0.5, "n_chunks": 2},
    "chunk_index bool": {"chunk_index": True, "n_chunks": 2},
    "chunk_index 1e308": {"chunk_index": 1e308, "n_chunks": 2},
    "no chunk fields": {},
    # a chunk index the filter reads as one of the note's (a list holding one; a valid one beside an n_chunks of
    # no type): kept, and the note repaired by every run (one delete call) until the point is removed by hand
    "chunk_index list": {"chunk_index": [0], "n_chunks": 2, "kept": True},
    "n_chunks text": {"chunk_index": 0, "n_chunks": "two", "kept": True},
    "n_chunks object": {"chunk_index": 0, "n_chunks": {"n": 2}, "kept": True},
}


@pytest.mark.parametrize("fields", STRAY_STATES.values(), ids=STRAY_STATES.keys())
def test_a_point_whose_state_fields_are_not_the_indexers_never_stops_a_sync(
    tmp_path: Path, fields: dict[str, Any]
) -> None:
    """Points of a note (and of a note the KB no longer has) whose ``chunk_index`` or ``n_chunks`` is text, null,
    a list, a fraction, a boolean, a huge float or missing, as another writer may leave them: every sync runs to
    the end, and the points whose ``chunk_index`` is no chunk of the note are removed: the collection converges to
    a clean build and the next run changes nothing (each was a ValueError or TypeError reading the index's state,
    so every sync stopped, nothing more indexed until the collection was rebuilt; strays of a fraction, a boolean
    or no chunk fields stayed, the note repaired by every run)."""
    import uuid

    from qdrant_client import models

    fields = dict(fields)
    kept = fields.pop("kept", False)
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 3)
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_embedded="local")
    assert run(LocalSource(kb), settings).error is None
    store = store_for(settings)
    try:
        store.client.upsert(store.collection, points=[
            models.PointStruct(id=str(uuid.uuid4()), vector={},
                               payload={"path": path, "etag": "other", **fields, "text": "stray"})
            for path in ("n00.md", "gone.md")
        ])  # fmt: skip
    finally:
        store.close()
    report = run(LocalSource(kb), settings)
    assert report.error is None and not report.incomplete, report
    again = run(LocalSource(kb), settings)
    assert again.error is None and not (again.updated or again.deleted), again
    if kept:
        return
    assert again.unchanged == 3 and not again.repaired, again
    clean = Settings(qdrant_path=str(tmp_path / "clean"), qdrant_embedded="local")
    run(LocalSource(kb), clean)
    assert snapshot(settings) == snapshot(clean)
