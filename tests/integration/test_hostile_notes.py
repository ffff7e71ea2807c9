"""Hostile notes, hostile keys and a failing store, through the real interfaces: `kbsearch index` as a process,
the indexer's and the search function's handlers, moto's S3, the embedded store and a loopback Qdrant."""

from __future__ import annotations

import importlib.util
import json
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from moto import mock_aws
from pydantic import SecretStr

from kbsearch.config import Secrets, Settings
from kbsearch.errors import StoreError
from kbsearch.indexer import Indexer, SyncOptions, run_sync
from kbsearch.providers.resilience import RetryPolicy
from kbsearch.qdrant import open_store
from kbsearch.sources import LocalSource, S3Source, SourceObject
from kbsearch_tools.fakes import LoopbackHTTPServer, drip
from kbsearch_tools.local.runtime import LambdaContext
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_indexer import snapshot, store_points, write_notes

BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)

#: note → (skipped reason fragment | None, warning fragment | None). Each is a class from issue 11, section 1/2.
HOSTILE: dict[str, tuple[bytes, str | None, str | None]] = {
    "n00.md": (b"---\ntitle: Feb\nupdated: 2024-02-30\n---\n# Feb\n\nbody", None, "'updated' dropped"),
    "n01.md": (b"---\ncreated: 2024-13-45\n---\n# Month\n\nbody", None, "'created' dropped"),
    "n02.md": (b"---\nai_weight: !!float abc\n---\n# F\n\nbody", None, "not a valid float"),
    "n03.md": (b"---\nwhen: !!timestamp nope\n---\n# T\n\nbody", None, "not a valid date"),
    "n04.md": (b"---\nbig: " + b"9" * 5000 + b"\n---\n# Big\n\nbody", None, None),
    "n05.md": (b"---\nx: !!python/object/apply:os.system [id]\n---\n# P\n\nbody", None, "unsupported YAML tag"),
    "recursive.md": (b"---\na: &a [*a]\n---\n# R\n\nbody", "alias", None),
    "laughs.md": (f"---\n{BILLION_LAUGHS}---\n# L\n\nbody".encode(), "alias", None),
    "deep.md": (b"---\nx: " + b"[" * 5000 + b"\n---\n# D\n\nbody", "nested deeper", None),
    "huge.md": (b"---\n" + b"k: v\n" * 20_000 + b"---\n# H\n\nbody", "frontmatter too large", None),
}


class ExplodingReads:
    """A source whose read of one note fails with something no rule foresees (a bug in a reader, say)."""

    def __init__(self, inner: LocalSource, path: str) -> None:
        self.inner, self.path, self.uri = inner, path, inner.uri

    def list(self) -> Iterator[SourceObject]:
        return self.inner.list()

    def read(self, obj: SourceObject) -> bytes:
        if obj.path == self.path:
            raise RuntimeError("reader blew up")
        return self.inner.read(obj)

    def read_path(self, path: str) -> bytes:
        return self.inner.read_path(path)

    def root_names(self) -> Iterable[str]:
        return self.inner.root_names()


def kbsearch_index(kb: Path, qdrant: Path, *extra: str, limit_bytes: int | None = None) -> tuple[int, dict, str]:
    """`kbsearch index --json` as a process; with ``limit_bytes`` no file it writes may grow past that (a full
    disk: writes fail with EFBIG instead of the process being killed)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        assert limit_bytes is not None
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    proc = subprocess.run(
        [*KBSEARCH_CMD, "index", str(kb), "--json", *extra],
        env=subprocess_env(QDRANT_PATH=str(qdrant), EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM=""),
        capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, preexec_fn=limit if limit_bytes else None, check=False,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout), proc.stderr


@pytest.mark.timeout(2 * PROCESS_TIMEOUT_S + 30)
def test_hostile_notes_never_stop_a_sync_and_keep_their_last_good_version(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 6)
    for name in ("recursive.md", "laughs.md", "deep.md", "huge.md"):
        (kb / name).write_text(f"# {name}\n\ngood first version of {name}\n")
    code, first, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and first["skipped"] == [] and first["added"] == 10, stderr
    good = {p["path"]: p["etag"] for p in store_points(Settings(qdrant_path=str(tmp_path / "q")))}

    for name, (raw, _, _) in HOSTILE.items():
        (kb / name).write_bytes(raw)
    (kb / "fresh.md").write_text("# Fresh\n\nstill indexed after all that\n")
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and report["error"] is None and not report["incomplete"], stderr
    assert "Traceback" not in stderr
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    warnings = [(w["path"], w["reason"]) for w in report["warnings"]]
    for name, (_, reason, warning) in HOSTILE.items():
        if reason is not None:
            assert reason in skipped.get(name, ""), (name, skipped)
        else:
            assert name not in skipped, skipped
        if warning is not None:
            assert any(p == name and warning in r for p, r in warnings), (name, warnings)
    assert report["added"] == 1 and report["updated"] == 6
    points = store_points(Settings(qdrant_path=str(tmp_path / "q")))
    after = {p["path"]: p for p in points}
    for name in ("recursive.md", "laughs.md", "deep.md", "huge.md"):
        assert after[name]["etag"] == good[name]  # the last good version is still searchable
    assert after["n00.md"].get("updated") is None and after["n00.md"]["title"] == "Feb"  # the field went, not the note
    assert after["n04.md"]["meta"]["big"] == "9" * 5000
    assert "fresh.md" in after


def test_any_failure_of_one_note_skips_only_that_note(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 4)
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    store = open_store(settings, Secrets(settings))
    try:
        report = Indexer(ExplodingReads(LocalSource(kb), "n02.md"), store, None).sync()
    finally:
        store.close()
    assert report.skipped == [{"path": "n02.md", "reason": "cannot be indexed (RuntimeError)"}]
    assert report.added == 3 and report.error is None and not report.incomplete


# -- storage failures ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(3 * PROCESS_TIMEOUT_S + 30)
def test_a_full_disk_ends_the_run_with_an_error_and_a_rerun_converges(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(ROOT / "sample-kb", kb)
    for i in range(3):
        write_notes(kb, 30, prefix=f"bulk{i}-")
    code, report, stderr = kbsearch_index(kb, tmp_path / "q", limit_bytes=256 * 1024)
    assert code != 0 and "Traceback" not in stderr, stderr
    # where the disk fills first depends on the store (Qdrant Edge preallocates its WAL when the collection is made)
    assert report["error"] is not None and report["error"].startswith("index storage failed: "), report["error"]
    assert report["incomplete"]

    code, rerun, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and rerun["error"] is None and not rerun["incomplete"], stderr
    code, _, _ = kbsearch_index(kb, tmp_path / "clean")
    assert code == 0
    assert snapshot(Settings(qdrant_path=str(tmp_path / "q"))) == snapshot(
        Settings(qdrant_path=str(tmp_path / "clean"))
    )


class FakeQdrant:
    """Just enough of Qdrant's REST API for qdrant_client's sync calls; upserts answer 503 after ``ok_upserts``.
    ``drip_on``: the writes whose ``"METHOD path"`` ends with it are answered one byte every ``drip_s`` seconds;
    ``refusals``: the next upserts are answered these statuses (with a ``Retry-After`` when one is given).
    ``write_answer``: the whole 200 answer of every write (points, payloads, deletes, batches, the collection's
    metadata) instead of Qdrant's ``completed`` (only the writes whose ``"METHOD path"`` ends with ``lie_on``)."""

    def __init__(self, collection_info: dict[str, Any], ok_upserts: int) -> None:
        self.info, self.ok_upserts, self.upserts = collection_info, ok_upserts, 0
        self.write_answer: bytes | None = None
        self.lie_on = ""
        self.scroll_result: Any = None  # instead of no points: every scroll's ``result``
        self.scrolls = 0
        self.drip_on, self.drip_s, self.dripped = "", 0.0, 0  # the writes so answered one byte every drip_s
        self.refusals: list[tuple[int, str | None]] = []  # the next upserts' answers: (status, Retry-After)
        self.on_refusal: Callable[[], None] | None = None  # called as each refusal is answered (before it is)
        self.writes: list[str] = []
        #: called with ``"METHOD path"`` as each request comes, before it is answered
        self.on_request: Callable[[str], None] | None = None
        self.aliases: dict[str, str] = {}  # alias → collection, as ``POST /collections/aliases`` leaves them
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = self.path.split("?")[0]
                if fake.on_request is not None:
                    fake.on_request(f"{self.command} {path}")
                status, result = 200, cast(Any, {"operation_id": 1, "status": "completed"})
                retry_after: str | None = None
                if self.command == "GET" and path.endswith("/aliases"):
                    result = {"aliases": [{"alias_name": a, "collection_name": c} for a, c in fake.aliases.items()]}
                elif path == "/collections/aliases":  # the actions, applied in order
                    for action in json.loads(body or b"{}").get("actions", []):
                        if "delete_alias" in action:
                            fake.aliases.pop(action["delete_alias"]["alias_name"], None)
                        elif "create_alias" in action:
                            made = action["create_alias"]
                            fake.aliases[made["alias_name"]] = made["collection_name"]
                    result = True
                elif path.endswith("/exists"):
                    result = {"exists": True}
                elif self.command == "GET":
                    result = fake.info
                elif path.endswith("/points/scroll"):
                    fake.scrolls += 1
                    result = fake.scroll_result or {"points": [], "next_page_offset": None}
                elif self.command in ("PATCH", "DELETE"):  # the collection's metadata, its drop: Qdrant answers true
                    result = True
                elif self.command == "PUT" and path.endswith("/points"):
                    fake.upserts += 1
                    if fake.refusals:
                        status, retry_after = fake.refusals.pop(0)
                        if fake.on_refusal is not None:
                            fake.on_refusal()
                    elif fake.upserts > fake.ok_upserts:
                        status = 503
                if self.command != "GET" and not path.endswith(("/exists", "/points/scroll")):
                    fake.writes.append(f"{self.command} {path}")
                    lie = f"{self.command} {path}".endswith(fake.lie_on)
                    if fake.drip_on and status == 200 and f"{self.command} {path}".endswith(fake.drip_on):
                        fake.dripped += 1
                        body = json.dumps({"result": result, "status": "ok", "time": 0.0}).encode()
                        drip(self, 200, "application/json", body, {}, fake.drip_s)
                        return
                    if fake.write_answer is not None and status == 200 and lie:
                        self._send(200, fake.write_answer)
                        return
                body = json.dumps(
                    {"result": result, "status": "ok", "time": 0.0}
                    if status == 200
                    else {"status": {"error": "Service Unavailable: overloaded"}, "time": 0.0}
                ).encode()
                self._send(status, body, retry_after)

            def _send(self, status: int, body: bytes, retry_after: str | None = None) -> None:
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.stopped = True  # an answer still dripping ends
        self.server.shutdown()
        self.server.server_close()


def collection_info(folder: Path, **settings: Any) -> dict[str, Any]:
    """Qdrant's ``GET /collections/{c}`` result for a collection with kb-search's schema, as qdrant-client's local
    mode (its models) builds it in ``folder``; ``settings``: others than the defaults (the embedding's dimensions)."""
    local = Settings(qdrant_path=str(folder), qdrant_embedded="local", **settings)
    store = open_store(local, Secrets(local))
    try:
        store.ensure_collection()
        info: dict[str, Any] = store.client.get_collection(store.collection).model_dump(mode="json", exclude_none=True)
        return info
    finally:
        store.close()


@pytest.fixture
def flaky_qdrant(tmp_path: Path) -> Iterator[FakeQdrant]:
    """A Qdrant Cloud stand-in whose collection has kb-search's schema (taken from the embedded store)."""
    fake = FakeQdrant(collection_info(tmp_path / "schema"), ok_upserts=1)
    yield fake
    fake.stop()


def test_qdrant_5xx_mid_run_is_an_error_in_the_report(tmp_path: Path, flaky_qdrant: FakeQdrant) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 12)
    settings = Settings(qdrant_url=flaky_qdrant.url, qdrant_api_key=SecretStr("qdrant-test-key"))
    store = open_store(settings, Secrets(settings))
    try:
        report = Indexer(LocalSource(kb), store, None, SyncOptions(window_chunks=4)).sync()
    finally:
        store.close()
    # one window written, the next refused (a 503, sent again as often as the policy says: adv34): the run stopped
    assert flaky_qdrant.upserts == 1 + RetryPolicy().attempts
    assert report.error is not None and report.incomplete
    assert report.error.startswith("index storage failed: writing") and "503" in report.error
    assert 0 < report.added < 12


WRITE_LIES = {  # a 200 from Qdrant whose body does not say the write was applied
    "wait_timeout": b'{"result": {"operation_id": 1, "status": "wait_timeout"}, "status": "ok", "time": 0.1}',
    "unknown status": b'{"result": {"operation_id": 1, "status": "exploded"}, "status": "ok", "time": 0.1}',
    "no result": b'{"status": "ok", "time": 0.1}',
    "null result": b'{"result": null, "status": "ok", "time": 0.1}',
    "error body": b'{"status": {"error": "Service internal error: disk full"}, "time": 0.1}',
    "not JSON": b"<html>502 Bad Gateway</html>",
    "false": b'{"result": false, "status": "ok", "time": 0.1}',
    "a list": b'{"result": [], "status": "ok", "time": 0.1}',
}


@pytest.mark.parametrize("body", WRITE_LIES.values(), ids=WRITE_LIES.keys())
def test_a_write_qdrant_does_not_say_it_applied_stops_the_sync_and_is_retried(
    tmp_path: Path, flaky_qdrant: FakeQdrant, body: bytes
) -> None:
    """Qdrant Cloud answering a sync's upsert 200 with a body that does not say ``completed`` (``wait_timeout``:
    accepted, not applied; a status it has no word for; an error body; garbage): the run stops with an error
    naming the write, the notes are not counted as indexed, and the next run writes them again (``wait_timeout``
    was taken for success: the report said every note was added)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 3)
    flaky_qdrant.ok_upserts, flaky_qdrant.write_answer, flaky_qdrant.lie_on = 100, body, "PUT /collections/kb/points"
    settings = Settings(qdrant_url=flaky_qdrant.url, qdrant_api_key=SecretStr("qdrant-test-key"))
    store = open_store(settings, Secrets(settings))
    try:
        report = Indexer(LocalSource(kb), store, None, SyncOptions(window_chunks=64)).sync()
        assert report.error is not None and report.incomplete, report
        assert report.error.startswith("index storage failed: writing"), report.error
        assert report.added == 0, report
        flaky_qdrant.write_answer = None  # Qdrant well again: the points hold no note, so all are written
        again = Indexer(LocalSource(kb), store, None, SyncOptions(window_chunks=64)).sync()
    finally:
        store.close()
    assert again.error is None and again.added == 3, again
    assert "qdrant-test-key" not in report.error


WRITES = {
    "delete_note": lambda s: s.delete_note("a.md"),
    "delete_leftovers": lambda s: s.delete_leftovers("a.md", 2),
    "set_payload": lambda s: s.set_payload("a.md", {"access": ["hr"]}),
    "set_payloads": lambda s: s.set_payloads([(["a.md", "b.md"], {"access": ["hr"]})]),
    "merge_metadata": lambda s: s.merge_metadata({"links": {"x": ["hr"]}}),
    "set_metadata": lambda s: s.set_metadata({"links": {"x": ["hr"]}}),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
@pytest.mark.parametrize("body", [WRITE_LIES["wait_timeout"], WRITE_LIES["false"], WRITE_LIES["null result"]],
                         ids=["wait_timeout", "false", "null result"])  # fmt: skip
def test_every_write_qdrant_does_not_say_it_applied_is_a_store_error(
    flaky_qdrant: FakeQdrant, write: Callable[[Any], None], body: bytes
) -> None:
    """Deletes, payload updates (a note's groups) and the collection's metadata (the restricted link list) are
    failures unless Qdrant says they were applied: a StoreError naming the write, never taken as done."""
    flaky_qdrant.write_answer = body
    settings = Settings(qdrant_url=flaky_qdrant.url, qdrant_api_key=SecretStr("qdrant-test-key"))
    store = open_store(settings, Secrets(settings))
    try:
        with pytest.raises(StoreError, match=r" failed: "):
            write(store)
    finally:
        store.close()
    assert flaky_qdrant.writes, "no write reached Qdrant"


PAGE_ID = "0b5f2b1c-8a3e-5c2d-9f1e-3a4b5c6d7e8f"
SCROLLS = {  # a scroll answer Qdrant never gives: a page naming itself (or one already given) as the next
    "the same page": {"points": [{"id": PAGE_ID, "payload": {"path": "a.md", "etag": "x", "chunk_index": 0,
                                                           "n_chunks": 1}}], "next_page_offset": PAGE_ID},
    "no points, an offset": {"points": [], "next_page_offset": PAGE_ID},
    "null id": {"points": [{"id": None, "payload": {"path": "a.md"}}], "next_page_offset": None},
    "list id": {"points": [{"id": [1], "payload": {"path": "a.md"}}], "next_page_offset": None},
    "odd offset": {"points": [], "next_page_offset": {"page": 2}},
}  # fmt: skip


@pytest.mark.parametrize("scroll", SCROLLS.values(), ids=SCROLLS.keys())
def test_a_scroll_that_never_ends_or_names_odd_ids_is_a_storage_error(
    tmp_path: Path, flaky_qdrant: FakeQdrant, scroll: dict[str, Any]
) -> None:
    """Qdrant Cloud paging the index's state with a next page it has already given (the same offset again) or
    points whose ids are of no kind Qdrant writes: the sync ends with a storage error naming the read, nothing
    written (a repeated offset was read for ever: the sync ran until the Lambda's 900 s timeout, each page's
    points read again)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 2)
    flaky_qdrant.scroll_result = scroll
    settings = Settings(qdrant_url=flaky_qdrant.url, qdrant_api_key=SecretStr("qdrant-test-key"))
    store = open_store(settings, Secrets(settings))
    reports: list[Any] = []
    try:
        run = threading.Thread(target=lambda: reports.append(Indexer(LocalSource(kb), store, None).sync()),
                               daemon=True)  # fmt: skip
        run.start()
        run.join(PROCESS_TIMEOUT_S)
    finally:
        flaky_qdrant.scroll_result = None  # let a run that never ended end now
    assert reports, f"the sync did not end ({flaky_qdrant.scrolls} scrolls)"
    store.close()
    (report,) = reports
    assert report.error is not None and report.error.startswith("index storage failed: reading"), report.error
    assert flaky_qdrant.upserts == 0 and flaky_qdrant.scrolls < 10


def test_indexer_handler_reports_a_storage_failure(
    tmp_path: Path, flaky_qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch
) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 12)
    for key, value in {"KB_SOURCE": str(kb), "QDRANT_URL": flaky_qdrant.url, "CHUNK_MAX_TOKENS": "400",
                       "EMBEDDING_BATCH_SIZE": "1", "EMBEDDING_CONCURRENCY": "1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location(f"indexer_app_{uuid.uuid4().hex}", ROOT / "functions/indexer/app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(module.IndexerRunError, match=r"index storage failed: writing \d+ points failed"):
        module.lambda_handler({}, LambdaContext("kb-search-test-indexer", 1024, 900))


def test_an_unopenable_store_is_an_error_in_the_report(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    write_notes(kb, 1)
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    holder = open_store(settings, Secrets(settings))  # the embedded store admits one process at a time
    holder.ensure_collection()  # Qdrant Edge opens its shard (and takes its lock) on first use
    try:
        code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    finally:
        holder.close()
    assert code != 0 and "Traceback" not in stderr
    assert report["error"].startswith("index storage failed: "), report["error"]


# -- keys and identities -------------------------------------------------------------------------------------------


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_s3_keys_are_normalised_and_unsafe_keys_skipped(tmp_path: Path, load_search_app) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="kb-notes")

        def put(key: str, text: str) -> None:
            s3.put_object(Bucket="kb-notes", Key="notes/" + key, Body=text.encode())

        put("ru/Ёлка.md", "# Ёлка NFC\n\nзелёная")
        put(nfd("ru/Ёлка.md"), "# Ёлка NFD\n\nдругая")  # the same path after NFC: one is skipped
        put(nfd("ru/Йогурт.md"), "# Йогурт\n\nтолько NFD")  # stored only decomposed (a macOS upload)
        for key in ("a//b.md", "../up.md", "x/./y.md", "/lead.md", "back\\slash.md", "ctl\x01.md", "ok.md"):
            put(key, f"# {key}\n\ntext")
        settings = Settings(qdrant_path=str(tmp_path / "q"))
        source = S3Source("kb-notes", "notes", s3)
        store = open_store(settings, Secrets(settings))
        try:
            report = Indexer(source, store, None).sync()
        finally:
            store.close()
        reasons = {s["path"]: s["reason"] for s in report.skipped}
        assert "empty segment" in reasons["a//b.md"] and "'..' segment" in reasons["../up.md"]
        assert "'..' segment" in reasons["x/./y.md"] and "starts with '/'" in reasons["/lead.md"]
        assert "backslash" in reasons["back\\slash.md"] and "control character" in reasons["ctl\x01.md"]
        assert "another Unicode form" in reasons["ru/Ёлка.md"] and nfd("notes/ru/Ёлка.md") in reasons["ru/Ёлка.md"]
        assert report.notes_listed == 10 and report.added == 3 and len(report.skipped) == 7
        indexed = {p["path"]: p["title"] for p in store_points(settings)}
        assert indexed == {"ru/Ёлка.md": "Ёлка NFC", "ru/Йогурт.md": "Йогурт", "ok.md": "ok.md"}

        # kb_get_note reads what the indexer indexed, by the path kb_search returns, in either normalisation
        call = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE="s3://kb-notes/notes")

        def get_note(path: str) -> dict[str, Any]:
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "kb_get_note", "arguments": {"path": path}}}  # fmt: skip
            event = {"resource": "/mcp", "path": "/mcp", "httpMethod": "POST", "body": json.dumps(body),
                     "headers": {"Content-Type": "application/json"}, "isBase64Encoded": False,
                     "requestContext": {"requestId": "r", "stage": "dev", "identity": {"sourceIp": "127.0.0.1"}}}  # fmt: skip
            answer = call(event)
            assert answer["statusCode"] == 200, answer
            return dict(json.loads(answer["body"])["result"])

        for path in ("ru/Йогурт.md", nfd("ru/Йогурт.md")):
            result = get_note(path)
            assert not result["isError"] and result["structuredContent"]["path"] == "ru/Йогурт.md"
            assert "только NFD" in result["structuredContent"]["body"]
        assert "зелёная" in get_note(nfd("ru/Ёлка.md"))["structuredContent"]["body"]  # the one indexed
        for bad, reason in (("ru/\x00.md", "control character"), ("a\x00b.md", "control character"),
                            ("a//b.md", "empty segment"), ("/etc/passwd.md", "starts with '/'"),
                            ("..\\x.md", "backslash")):  # fmt: skip
            result = get_note(bad)
            assert result["isError"] and reason in result["content"][0]["text"], (bad, result)


def mcp_event(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    return {"resource": "/mcp", "path": "/mcp", "httpMethod": "POST", "body": json.dumps(body),
            "headers": {"Content-Type": "application/json"}, "isBase64Encoded": False,
            "requestContext": {"requestId": "r", "stage": "dev", "identity": {"sourceIp": "127.0.0.1"}}}  # fmt: skip


def test_kb_get_note_on_hostile_notes_answers_fast_and_small(tmp_path: Path, load_search_app) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, (raw, _, _) in HOSTILE.items():
        (kb / name).write_bytes(raw)
    # a caller's read asks the index first (no index: 503 for every path), and a note not indexed is missing
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    assert run_sync(settings, Secrets(settings), source_uri=str(kb)).error is None
    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb))
    for name, (raw, reason, _) in HOSTILE.items():
        started = time.perf_counter()
        answer = call(mcp_event("kb_get_note", {"path": name}))
        assert time.perf_counter() - started < 30.0 and answer["statusCode"] == 200, name
        assert len(answer["body"]) < 4 * len(raw) + 2000, name  # the note as written, nothing expanded
        result = json.loads(answer["body"])["result"]
        if reason is not None:  # frontmatter the indexer skips: who may read it is unknown, so it is not served
            assert result["isError"] and result["content"][0]["text"].startswith("no note at"), (name, result)
            continue
        assert not result["isError"], (name, result)
        body, front = result["structuredContent"]["body"], result["structuredContent"]["frontmatter"]
        assert body and body in raw.decode() and body in result["content"][0]["text"], name  # as written
        json.dumps(front, allow_nan=False)
    assert json.loads(call(mcp_event("kb_get_note", {"path": "n00.md"}))["body"])["result"]["structuredContent"][
        "frontmatter"
    ] == {"title": "Feb"}  # the field that is not a date is dropped, as in the index


SECRET = "Frontmatter restricted: salary band zebrafinch {n}."


def assert_skipped_never_public(kb: Path, tmp_path: Path, load_search_app: Any, skipped_names: Any,
                                reasons: tuple[str, ...], public: set[str]) -> None:  # fmt: skip
    """``kbsearch index`` of ``kb`` skips exactly ``skipped_names``, each reason holding every one of ``reasons``;
    the index holds ``public`` alone; a public caller finds only those and reads each skipped note as missing."""
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and report["error"] is None, stderr
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == set(skipped_names), skipped
    assert all(all(part in r for part in reasons) for r in skipped.values()), skipped
    assert {p["path"] for p in store_points(Settings(qdrant_path=str(tmp_path / "q")))} == public
    call = load_search_app(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"))
    search = json.loads(call(mcp_event("kb_search", {"query": "salary band zebrafinch", "top_k": 20}))["body"])
    assert {h["path"] for h in search["result"]["structuredContent"]["results"]} == public
    for name in skipped_names:
        result = json.loads(call(mcp_event("kb_get_note", {"path": name}))["body"])["result"]
        assert result["isError"] and result["content"][0]["text"].startswith(f"no note at {name!r}"), (name, result)


#: a frontmatter block opened on the first line and never closed: what follows may be metadata, ``access`` among it
UNCLOSED: dict[str, bytes] = {
    "no closing.md": b"---\naccess: [hr]\ntitle: Salaries\n\n# Salaries\n\n",
    "closing typo.md": b"---\naccess: [hr]\n---x\n# Salaries\n\n",
    "closing indented.md": b"---\naccess: [hr]\n ---\n# Salaries\n\n",
    "four dashes.md": b"---\naccess: [hr]\n----\n# Salaries\n\n",
    "stars.md": b"---\naccess: [hr]\n***\n# Salaries\n\n",
    "crlf.md": b"---\r\naccess: [hr]\r\ntitle: Salaries\r\n\r\n",
    "bom.md": b"\xef\xbb\xbf---  \naccess: hr\n\n",
    "opening then prose.md": b"---\n",
    "lone dashes.md": b"---",  # the whole note (no secret appended)
}


def test_an_unclosed_frontmatter_is_skipped_never_public(tmp_path: Path, load_search_app) -> None:
    """A note whose first line opens a frontmatter block that no later line closes (no closing line, a typo in
    it, an indented one, ``----``, ``***``; CRLF, a BOM, prose right after it, a note of ``---`` alone): skipped with the reason, and to
    a public caller neither searchable nor readable by path (it was indexed public, its ``access: [hr]`` and the
    rest read as prose)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for n, (name, raw) in enumerate(UNCLOSED.items()):
        (kb / name).write_bytes(raw if raw == b"---" else raw + SECRET.format(n=n).encode() + b"\n")
    (kb / "open.md").write_text("---\ntitle: Open\n---\n# Open\n\nA public note about zebrafinch.\n")
    assert_skipped_never_public(kb, tmp_path, load_search_app, UNCLOSED, ("frontmatter is not closed",), {"open.md"})


#: What a reader cannot see before (or after) a first line's ``---``: a second byte-order mark (a file saved twice
#: by a tool adding one), zero-width, word-joiner, no-break and plain spaces, a tab, a soft hyphen; CRLF too.
HIDDEN_OPENINGS = {"bom twice.md": "\ufeff\ufeff---\n", "zwsp.md": "\u200b---\n", "word joiner.md": "\u2060---\n",
                   "nbsp.md": "\u00a0---\n", "space.md": " ---\n", "tab.md": "\t---\n", "soft hyphen.md": "\u00ad---\n",
                   "after.md": "---\u200b\n", "crlf.md": "\u200b---\r\n"}  # fmt: skip


def test_a_frontmatter_opened_behind_an_invisible_character_is_skipped_never_public(
    tmp_path: Path, load_search_app
) -> None:
    """A first line that reads ``---`` but has a character no reader sees before or after it opens no frontmatter
    (for kb-search and Obsidian alike): the block's ``access: [hr]`` declared nothing and the note was indexed
    public, its secret searchable and readable by anyone. When that block declares ``access`` (any spelling), the
    note is skipped with a reason showing the line; without ``access`` it stays prose (indexed), and ``---`` after
    blank lines stays prose as Obsidian reads it."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for n, (name, opening) in enumerate(HIDDEN_OPENINGS.items()):
        eol = "\r\n" if opening.endswith("\r\n") else "\n"
        (kb / name).write_text(opening + eol.join(["access: [hr]", "title: Pay", "---", f"# Pay {n}", "",
                               SECRET.format(n=n), ""]), encoding="utf-8", newline="")  # fmt: skip
    (kb / "no access.md").write_text("\u200b---\ntitle: Plain\n---\n# Plain\n\nA public note about zebrafinch.\n")
    (kb / "open.md").write_text("---\ntitle: Open\n---\n# Open\n\nA public note about zebrafinch.\n")
    assert_skipped_never_public(kb, tmp_path, load_search_app, HIDDEN_OPENINGS, ("not '---'", "declares access"),
                                {"open.md", "no access.md"})  # fmt: skip


#: Line breaks Python's ``splitlines`` and YAML 1.1 know but no Markdown reader breaks lines at (a note pasted from
#: a word processor: U+2028, U+2029, NEL; form and vertical feeds; the information separators).
OTHER_BREAKS = {"ls.md": "\u2028", "ps.md": "\u2029", "nel.md": "\x85", "ff.md": "\x0c", "vt.md": "\x0b", "fs.md": "\x1c",
                "rs.md": "\x1e"}  # fmt: skip


def test_a_frontmatter_opened_by_a_line_break_no_reader_breaks_at_is_skipped_never_public(
    tmp_path: Path, load_search_app
) -> None:
    """A first line ``---`` ended by U+2028 (or NEL, a form feed, ...) opens no frontmatter for any reader: the
    block's ``access: [hr]`` declared nothing and the note was indexed public, its secret searchable and readable
    by anyone. Declaring ``access`` (its lines broken the same way or by line feeds, closed or not), the note is
    skipped naming the character; a block without ``access`` stays prose."""
    kb = tmp_path / "kb"
    kb.mkdir()
    notes = {}
    for n, (name, sep) in enumerate(OTHER_BREAKS.items()):
        eol = sep if n % 2 else "\n"
        notes[name] = (
            "---" + sep + eol.join(["access: [hr]", "title: Pay", "---", f"# Pay {n}", "", SECRET.format(n=n)])
        )
    notes["unclosed.md"] = "---\u2028access: [hr]\u2028title: Pay\u2028\u2028" + SECRET.format(n=99)
    for name, text in notes.items():
        (kb / name).write_text(text, encoding="utf-8", newline="")
    (kb / "prose.md").write_text("---\u2028title: Plain\u2028---\u2028# Plain\n\nA public note about zebrafinch.\n")
    assert_skipped_never_public(kb, tmp_path, load_search_app, notes, ("not a line break", "declares access"),
                                {"prose.md"})  # fmt: skip


#: A frontmatter closed by YAML's ``...`` with ``access`` on a line after it: before the next ``---`` (Obsidian closes
#: only there), indented, in CRLF, or with no ``---`` after it (Obsidian: never closed).
DOTS_BEFORE_ACCESS = {
    "dots.md": "---\ntitle: Pay\n...\naccess: [hr]\n---\n", "dots indented.md": "---\ntitle: Pay\n...\n  access: hr\n---\n",
    "dots crlf.md": "---\r\ntitle: Pay\r\n...\r\naccess: [hr]\r\n---\r\n", "dots no dashes.md": "---\ntitle: Pay\n...\naccess: [hr]\n",
}  # fmt: skip


def test_a_frontmatter_closed_by_dots_before_an_access_line_is_skipped_never_public(
    tmp_path: Path, load_search_app
) -> None:
    """kb-search closed a frontmatter at YAML's ``...``; Obsidian closes one only at ``---``, so an ``access: [hr]``
    between the two is, to the note's author, one of its properties, and here was prose: the note was indexed
    public, its secret searchable and readable by anyone. Such a note is skipped naming the ``...``; a frontmatter
    closed by ``...`` with no ``access`` after it is read as before."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for n, (name, front) in enumerate(DOTS_BEFORE_ACCESS.items()):
        (kb / name).write_text(front + f"# Pay {n}\n\n" + SECRET.format(n=n) + "\n", encoding="utf-8", newline="")
    (kb / "open.md").write_text("---\ntitle: Open\n...\n# Open\n\nA public note about zebrafinch.\n\n---\n\nMore.\n")
    assert_skipped_never_public(kb, tmp_path, load_search_app, DOTS_BEFORE_ACCESS, ("closes at '...'", "access"),
                                {"open.md"})  # fmt: skip


#: ``access`` as it may be typed: a keyboard left on the Russian layout (Cyrillic а, с, е, ѕ look like Latin), full
#: width, an invisible character inside (zero-width space, soft hyphen), an accent, spaces between the letters.
LOOK_ALIKE_KEYS = ["\u0430ccess", "\u0430\u0441\u0441\u0435ss", "acce\u0455\u0455", "ａｃｃｅｓｓ", "acc\u200bess",
                   "access\u00ad", "acc\u00e9ss", "a c c e s s"]  # fmt: skip


def test_an_access_key_spelled_with_look_alike_letters_is_skipped_never_public(tmp_path: Path, load_search_app) -> None:
    """A frontmatter key that looks like ``access`` but is not spelled with its letters declared nothing: the note
    fell to the folder rules or the default, public, and its secret was searchable and readable by anyone. Such a
    note is skipped with a reason naming the key, and answers a public caller as a missing note; ``ACCESS``,
    ``Access`` and ``access`` followed by a no-break space are the key itself."""
    kb = tmp_path / "kb"
    kb.mkdir()
    names = {f"look{n}.md": key for n, key in enumerate(LOOK_ALIKE_KEYS)}
    for n, (name, key) in enumerate(names.items()):
        (kb / name).write_text(f"---\n{key}: [hr]\n---\n# Pay {n}\n\n" + SECRET.format(n=n) + "\n", encoding="utf-8")
    for n, key in enumerate(("ACCESS", "Access", "access\u00a0")):
        (kb / f"real{n}.md").write_text(f"---\n{key}: [hr]\n---\n# Real {n}\n\n" + SECRET.format(n=n) + "\n",
                                        encoding="utf-8")  # fmt: skip
    (kb / "open.md").write_text("---\ntitle: Open\n---\n# Open\n\nA public note about zebrafinch.\n")
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and report["error"] is None, stderr
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == set(names), skipped
    assert all("looks like 'access'" in skipped[name] and ascii(key)[1:-1] in skipped[name]
               for name, key in names.items()), skipped  # fmt: skip
    points = store_points(Settings(qdrant_path=str(tmp_path / "q")))
    assert {p["path"]: p["access"] for p in points} == {
        "open.md": ["public"],
        **{f"real{n}.md": ["hr"] for n in range(3)},
    }
    call = load_search_app(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"))
    search = json.loads(call(mcp_event("kb_search", {"query": "salary band zebrafinch", "top_k": 20}))["body"])
    assert [h["path"] for h in search["result"]["structuredContent"]["results"]] == ["open.md"]
    for name in names:
        result = json.loads(call(mcp_event("kb_get_note", {"path": name}))["body"])["result"]
        assert result["isError"] and result["content"][0]["text"].startswith(f"no note at {name!r}"), (name, result)


WIDE = "---\ntitle: Заметка\n---\n# Заметка\n\nText of a note saved as UTF-16 or UTF-32.\n"
#: note → (bytes, the reason's start): what Windows editors write as "Unicode", and what is plainly not text
ENCODINGS: dict[str, tuple[bytes, str]] = {
    "utf16le.md": (WIDE.encode("utf-16"), "UTF-16 text, not UTF-8"),
    "utf16be.md": (b"\xfe\xff" + WIDE.encode("utf-16-be"), "UTF-16 text, not UTF-8"),
    "utf32le.md": (WIDE.encode("utf-32"), "UTF-32 text, not UTF-8"),
    "utf32be.md": (b"\x00\x00\xfe\xff" + WIDE.encode("utf-32-be"), "UTF-32 text, not UTF-8"),
    "latin1.md": (WIDE.replace("Заметка", "Café").encode("latin-1"), "not UTF-8 (invalid byte at offset"),
    "nul.md": (b"# Binary\n\x00\x01\x02", "binary content (NUL bytes)"),
    "empty.md": (b"", "empty note"),
    "blank.md": (b" \n\t\r\n", "empty note"),
}


def test_notes_in_other_encodings_are_skipped_with_the_encoding_named(tmp_path: Path) -> None:
    """A note saved as UTF-16 or UTF-32 (with their byte-order marks, as Windows editors save "Unicode"), Latin-1,
    binary, empty or blank: skipped with a reason that names what it is (UTF-16 and UTF-32 were "binary content
    (NUL bytes)"); the rest indexed."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, (raw, _) in ENCODINGS.items():
        (kb / name).write_bytes(raw)
    (kb / "ok.md").write_text(WIDE, encoding="utf-8")
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and report["added"] == 1, stderr
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == set(ENCODINGS), skipped
    for name, (_, reason) in ENCODINGS.items():
        assert skipped[name].startswith(reason), (name, skipped[name])


def nfd_text(text: str) -> str:
    return unicodedata.normalize("NFD", text)


FACETS = {"tag": "café", "tag2": "ёлка", "type": "décision", "status": "действующий"}  # each has an NFD form


def test_filter_values_match_whatever_unicode_form_either_side_uses(tmp_path: Path, load_search_app) -> None:
    """Tags, type and status written in NFD by one note (``й`` as ``и`` + U+0306, ``é`` as ``e`` + U+0301: what
    tools on macOS and some editors write) and in NFC by another, filtered for in either form, over POST /search and
    kb_search: both notes match, and kb_list counts one value (an NFC filter missed the NFD note, silently)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, form in (("nfd.md", nfd_text), ("nfc.md", lambda t: unicodedata.normalize("NFC", t))):
        front = (f"tags: [{form(FACETS['tag'])}, {form(FACETS['tag2'])}]\ntype: {form(FACETS['type'])}\n"
                 f"status: {form(FACETS['status'])}\n")  # fmt: skip
        (kb / name).write_text(f"---\n{front}---\n# {name}\n\nzebrafinch facets\n", encoding="utf-8")
    code, _, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0, stderr
    call = load_search_app(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"))
    for key, field in (("tag", "tags"), ("tag2", "tags"), ("type", "type"), ("status", "status")):
        for form in (nfd_text, lambda t: unicodedata.normalize("NFC", t)):
            value = form(FACETS[key])
            body = {"query": "zebrafinch facets", "top_k": 5, "filters": {field: [value]}}
            post = call(
                mcp_event(
                    "kb_search",
                    {
                        "query": "zebrafinch facets",
                        **{{"tags": "tags", "type": "types", "status": "statuses"}[field]: [value]},
                    },
                )
            )
            for answer in (
                json.loads(call({**mcp_event("x", {}), "resource": "/search", "path": "/search",
                                 "body": json.dumps(body)})["body"])["results"],
                json.loads(post["body"])["result"]["structuredContent"]["results"],
            ):  # fmt: skip
                assert sorted(h["path"] for h in answer) == ["nfc.md", "nfd.md"], (key, ascii(value), answer)
    catalog = json.loads(call(mcp_event("kb_list", {}))["body"])["result"]["structuredContent"]
    for field, key in (("tags", "tag"), ("types", "type"), ("statuses", "status")):
        assert [(f["value"], f["count"]) for f in catalog[field] if f["value"].casefold().startswith(
            FACETS[key][:1])] == [(unicodedata.normalize("NFC", FACETS[key]), 2)], catalog[field]  # fmt: skip


def test_a_frontmatter_of_thousands_of_tags_keeps_the_first_hundred_with_a_warning(
    tmp_path: Path, load_search_app
) -> None:
    """Every chunk of a note stores its tags and every search of it reads them back: 12,700 distinct tags (what
    64 KiB of frontmatter holds) on a 938 KB note's 517 chunks took 20 s and 2.5 GB to index, a 158 MB index, and
    76 KB of tags per chunk read back by each search it matched; the list was also deduplicated in quadratic time.
    A note keeps its first 100 tags (the most a hit shows) and the report says so; as a string, as a list, as
    `#tags`, repeated, a note is indexed and found by a tag it kept, never by one it dropped."""
    kb = tmp_path / "kb"
    kb.mkdir()
    body = "# Many tags\n\n" + "zebrafinch tagged " * 2_000 + "\n"
    members = {
        "spaced.md": "tags: " + " ".join(str(i) for i in range(12_700)),
        "listed.md": "tags: [" + ", ".join(f"l{i}" for i in range(9_000)) + "]",
        "hashed.md": 'tags: "' + " ".join(f"#h{i}" for i in range(9_000)) + '"',
        "repeated.md": "tags: " + " ".join(["same", "other"] * 5_000),
    }
    for name, front in members.items():
        (kb / name).write_text(f"---\n{front}\n---\n{body}", encoding="utf-8")
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and report["added"] == 4 and report["skipped"] == [], (report, stderr)
    warned = {w["path"]: w["reason"] for w in report["warnings"]}
    assert warned == {"spaced.md": "tags: 12700 given, the first 100 kept",
                      "listed.md": "tags: 9000 given, the first 100 kept",
                      "hashed.md": "tags: 9000 given, the first 100 kept"}  # fmt: skip
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    kept = {"spaced.md": [str(i) for i in range(100)], "listed.md": [f"l{i}" for i in range(100)],
            "hashed.md": [f"h{i}" for i in range(100)], "repeated.md": ["same", "other"]}  # fmt: skip
    points = store_points(settings)
    assert {p["path"] for p in points} == set(kept)
    assert all(point["tags"] == kept[point["path"]] for point in points)
    call = load_search_app(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"))
    for tag, found in (("99", ["spaced.md"]), ("100", []), ("l42", ["listed.md"]), ("h0", ["hashed.md"]),
                       ("other", ["repeated.md"])):  # fmt: skip
        body_json = {"query": "zebrafinch tagged", "top_k": 10, "filters": {"tags": [tag]}}
        answer = call({**mcp_event("x", {}), "resource": "/search", "path": "/search", "body": json.dumps(body_json)})
        hits = json.loads(answer["body"])["results"]
        assert answer["statusCode"] == 200 and [h["path"] for h in hits] == found, (tag, hits)
        assert all(len(h["tags"]) <= 100 for h in hits)


def test_a_huge_heading_is_cut_in_every_chunks_path_and_its_words_still_found(tmp_path: Path, load_search_app) -> None:
    """Every chunk of a section carries its heading path (title > heading > ...), stored, BM25-indexed and embedded:
    a 549 KB H1 over a 1 MB note's 388 chunks took 77 s and 6.4 GB to index and made a 1.3 GB index (the heading
    size times the chunk count: quadratic in the note). A heading or title over 1,000 characters is cut in the path;
    a heading's whole text opens its section (indexed once, so its last word is still found); a frontmatter title
    that long is cut with a warning."""
    kb = tmp_path / "kb"
    kb.mkdir()
    words = lambda tag, n: " ".join(f"{tag}{i}" for i in range(n))  # noqa: E731
    body = "\n\n" + words("body", 15_000) + "\n"
    members = {
        "h1.md": "# " + words("hone", 20_000) + " lastofhone" + body,
        "nested.md": "".join(
            f"{'#' * level} " + words(f"lvl{level}x", 3_000) + f" lastof{level}\n\npara {level}\n\n"
            for level in range(1, 7)
        )
        + body,
        "title.md": "---\ntitle: " + words("ttl", 6_000) + "\n---\n# Short\n" + body,
    }
    for name, text in members.items():
        (kb / name).write_text(text, encoding="utf-8")
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and report["added"] == 3 and report["skipped"] == [], (report, stderr)
    assert [(w["path"], w["reason"]) for w in report["warnings"]] == [
        ("title.md", f"title: {len(words('ttl', 6_000))} characters, the first 1000 kept")
    ]
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    points = store_points(settings)
    assert max(len(p["title"]) for p in points) <= 1000
    assert max(len(p["heading"]) for p in points) <= 7 * 1000 + 6 * len(" > ")
    assert sum(len(p["heading"]) for p in points) < 3_000_000  # was the heading times its chunk count
    call = load_search_app(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"))
    for word, path in (("lastofhone", "h1.md"), ("lastof3", "nested.md"), ("lastof6", "nested.md")):
        answer = call({**mcp_event("x", {}), "resource": "/search", "path": "/search",
                       "body": json.dumps({"query": word, "top_k": 3})})  # fmt: skip
        hits = json.loads(answer["body"])["results"]
        assert answer["statusCode"] == 200 and hits[0]["path"] == path, (word, hits)
        assert all(len(h["title"]) <= 1000 for h in hits)


def test_a_note_more_than_32_folders_deep_is_skipped_with_its_reason(tmp_path: Path, load_search_app) -> None:
    """Each chunk stores every folder above its note (the ``folders`` keyword index ``path_prefix`` filters on), and
    their total length grows with the square of the depth: a 1 MB note 505 folders down made a 350 MB index (6.4 MB
    at the root) and took 1.4 GB to index. A path more than 32 folders deep cannot be a note's: skipped with the
    reason, refused by path (REST and MCP), its S3 event ignored with the reason; 32 folders is a note like any."""
    kb = tmp_path / "kb"
    body = "# Deep\n\nrestore the deep snapshot\n"
    deep = {depth: "/".join(f"d{i}" for i in range(depth)) + f"/n{depth}.md" for depth in (32, 33)}
    deep[505] = "a/" * 505 + "n505.md"  # 1,014 characters: within a path's 1,024
    for rel in deep.values():
        (kb / rel).parent.mkdir(parents=True, exist_ok=True)
        (kb / rel).write_text(body, encoding="utf-8")
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and report["added"] == 1, (report, stderr)
    assert {s["path"]: s["reason"] for s in report["skipped"]} == {
        deep[d]: "path is more than 32 folders deep: kb_get_note could not reach it" for d in (33, 505)
    }
    call = load_search_app(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"))
    folder = deep[32].rsplit("/", 1)[0]
    answer = call({**mcp_event("x", {}), "resource": "/search", "path": "/search",
                   "body": json.dumps({"query": "restore deep snapshot", "filters": {"path_prefix": folder}})})  # fmt: skip
    assert [h["path"] for h in json.loads(answer["body"])["results"]] == [deep[32]]
    for depth in (33, 505):
        rest = call({**mcp_event("x", {}), "httpMethod": "GET", "resource": "/notes/{path+}",
                     "path": f"/notes/{deep[depth]}", "pathParameters": {"path": deep[depth]}, "body": None})  # fmt: skip
        assert rest["statusCode"] == 400 and json.loads(rest["body"])["error"] == "bad_path", rest
        tool = json.loads(call(mcp_event("kb_get_note", {"path": deep[depth]}))["body"])["result"]
        assert tool["isError"] and "32 folders deep" in tool["content"][0]["text"], tool
    from kbsearch.events import Scope as KeyScope
    from kbsearch.events import read_batch

    key = "kb/" + "/".join(f"d{i}" for i in range(40)) + "/x.md"
    record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": key}}}
    batch = read_batch({"Records": [{"messageId": "m", "eventSource": "aws:sqs",
                                     "body": json.dumps({"Records": [record]})}]}, KeyScope("b", "kb/"))  # fmt: skip
    assert batch.changes == [] and batch.poison == []
    assert batch.ignored == [{"key": key, "reason": "not a usable note path: path is more than 32 folders deep"}]


def test_a_huge_frontmatter_is_stored_once_per_note_not_on_every_chunk(tmp_path: Path, load_search_app) -> None:
    """The frontmatter (``meta``) and the summary were stored on every chunk: a 60 KB summary over a 1 MB note's
    686 chunks made a 101 MB index (9.1 MB now) and every search of it read 60 KB per chunk. The frontmatter is
    kept once, on the first chunk; each chunk keeps the first 2,000 characters of the summary (what a snippet can
    show); the whole summary is still embedded and BM25-indexed with the first chunk (its last word is found)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    summary = " ".join(f"sum{i}" for i in range(5_000)) + " lastofsummary"
    body = "# Big\n\n" + " ".join(f"body{i % 700} restore" for i in range(20_000)) + "\n"
    (kb / "big.md").write_text(f'---\nsummary: "{summary}"\nowner: "{"o" * 15_000}"\n---\n{body}', encoding="utf-8")
    (kb / "bare.md").write_text(f'---\nsummary: "{summary}"\n---\n', encoding="utf-8")  # a summary and no text
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and report["added"] == 2 and report["skipped"] == [], (report, stderr)
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    points = [p for p in store_points(settings) if p["path"] == "big.md"]
    assert len(points) > 50
    first = next(p for p in points if p["chunk_index"] == 0)
    assert first["meta"]["summary"] == summary and first["meta"]["owner"] == "o" * 15_000
    assert all("meta" not in p for p in points if p["chunk_index"] > 0)
    assert all(p["summary"] == summary[:2000] for p in points)
    call = load_search_app(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"))
    answer = call({**mcp_event("x", {}), "resource": "/search", "path": "/search",
                   "body": json.dumps({"query": "lastofsummary", "top_k": 5})})  # fmt: skip
    hits = json.loads(answer["body"])["results"]
    assert answer["statusCode"] == 200 and sorted(h["path"] for h in hits) == ["bare.md", "big.md"], hits
    bare = next(h for h in hits if h["path"] == "bare.md")
    assert bare["snippet"] and summary.startswith(bare["snippet"].rstrip("…").rstrip())


def test_a_note_of_countless_tiny_sections_is_packed_into_a_bounded_number_of_chunks(
    tmp_path: Path, load_search_app
) -> None:
    """A chunk per section: a 1 MB note of 170,000 one-word sections made 170,000 chunks (24 s, 4.0 GB to index,
    the indexer Lambda has 2 GB; an 845 MB index; as many embedding inputs). Past 2,000 chunks a note's pieces are
    packed into chunks of the token budget, each later section opening with its own heading: every word still
    indexed once, a few hundred chunks; a note of ordinary size is chunked as before."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "tiny.md").write_text("# h\nw\n" * 170_000, encoding="utf-8")
    (kb / "named.md").write_text("".join(f"# head{i}\nword{i}\n" for i in range(40_000)), encoding="utf-8")
    (kb / "headings.md").write_text("".join(f"## only{i}\n" for i in range(80_000)), encoding="utf-8")
    (kb / "usual.md").write_text("".join(f"## part {i}\n\ntext of part {i}\n\n" for i in range(150)), encoding="utf-8")
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and report["added"] == 4 and report["skipped"] == [], (report, stderr)
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    per_note: dict[str, int] = {}
    for point in store_points(settings):
        per_note[point["path"]] = per_note.get(point["path"], 0) + 1
    assert per_note["usual.md"] == 150
    # 80,000 empty headings: each is a section of its own words since round 32 (lines32), packed as the others
    assert 0 < per_note["tiny.md"] <= 2000 and 0 < per_note["named.md"] <= 2000, per_note
    assert 0 < per_note["headings.md"] <= 2000, per_note
    call = load_search_app(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"))
    for word, path in (("word0", "named.md"), ("word31337", "named.md"), ("head39999", "named.md"),
                       ("word39999", "named.md"), ("only0", "headings.md"), ("only79999", "headings.md")):  # fmt: skip
        answer = call({**mcp_event("x", {}), "resource": "/search", "path": "/search",
                       "body": json.dumps({"query": word, "top_k": 3})})  # fmt: skip
        hits = json.loads(answer["body"])["results"]
        assert answer["statusCode"] == 200 and hits and hits[0]["path"] == path, (word, hits)


def test_two_notes_with_one_id_are_both_found_and_reported(tmp_path: Path, load_search_app) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("---\nid: KB-1\n---\n# Alpha\n\nzebra crossing rules\n")
    (kb / "b.md").write_text("---\nid: KB-1\n---\n# Beta\n\nzebra stripes\n")
    (kb / "c.md").write_text("---\nid: KB-2\n---\n# Gamma\n\nzebra\n")
    settings = Settings(qdrant_path=str(tmp_path / "q"))
    report = run_sync(settings, Secrets(settings), source_uri=str(kb))
    expected = [
        {"path": "a.md", "reason": "frontmatter id 'KB-1' is also the id of b.md"},
        {"path": "b.md", "reason": "frontmatter id 'KB-1' is also the id of a.md"},
    ]
    assert report.warnings == expected
    assert run_sync(settings, Secrets(settings), source_uri=str(kb)).warnings == expected  # unchanged notes too

    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"))
    event = {"resource": "/search", "path": "/search", "httpMethod": "POST",
             "body": json.dumps({"query": "zebra", "top_k": 5, "rerank": False, "expand": False}),
             "headers": {"Content-Type": "application/json"}, "isBase64Encoded": False,
             "requestContext": {"requestId": "r", "stage": "dev", "identity": {"sourceIp": "127.0.0.1"}}}  # fmt: skip
    answer = call(event)
    assert answer["statusCode"] == 200, answer
    hits = json.loads(answer["body"])["results"]
    assert sorted(h["path"] for h in hits) == ["a.md", "b.md", "c.md"]
    assert sorted(h["doc_id"] for h in hits) == ["KB-1", "KB-1", "KB-2"]


def test_reliability_rows_name_real_tests() -> None:
    text = (ROOT / "RELIABILITY.md").read_text(encoding="utf-8")
    section = text.split("## Hostile notes", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`test_" in line]
    assert len(rows) >= 12
    defined = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    for row in rows:
        names = re.findall(r"`(test_\w+)`", row.rsplit("|", 2)[1])
        assert names, row
        for name in names:
            assert f"def {name}(" in defined, f"RELIABILITY.md names {name}, which does not exist"


#: Frontmatter text values YAML 1.1 types by how they look, as Obsidian (YAML 1.2) shows them: words, numbers kept as
#: written (an octal look, a version, a time of day, digit groups, hex), `.inf`.
WRITTEN = {"tags": ["no", "on", "010", "12:30", "1.10", "1_000", ".inf"], "type": "yes", "status": "off", "id": "0x10"}


def test_text_fields_yaml_would_type_are_indexed_as_written(tmp_path: Path, load_search_app) -> None:
    """`tags: [no, on, 010, 12:30]`, `type: yes`, `status: off`, `id: 0x10`: kb-search read them by YAML 1.1's
    rules, so the note was tagged `False`, `True`, `8`, `750` (`.inf` dropped), of type `True`, status `False`,
    id `16`: kb_list listed those, and a filter for the tag or type as written (as Obsidian shows it) missed the
    note, silently. Text fields are read as written (dates stay dates, `null` stays null); filtered for over POST
    /search and kb_search, the note is found, kb_list counts the values as written, the hits carry the id as written."""
    kb = tmp_path / "kb"
    kb.mkdir()
    front = (f"tags: [{', '.join(WRITTEN['tags'])}, ~]\ntype: {WRITTEN['type']}\nstatus: {WRITTEN['status']}\n"
             f"id: {WRITTEN['id']}\nupdated: 2026-01-02\n")  # fmt: skip
    (kb / "typed.md").write_text(f"---\n{front}---\n# Typed\n\nquokka values\n", encoding="utf-8")
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and not report.get("warnings"), (stderr, report)
    call = load_search_app(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"))
    filters = [("tags", "tags", tag) for tag in WRITTEN["tags"]] + [
        ("type", "types", "yes"),
        ("status", "statuses", "off"),
    ]
    for field, argument, value in filters:
        rest = {"query": "quokka values", "filters": {field: [value]}}
        post = json.loads(call({**mcp_event("x", {}), "resource": "/search", "path": "/search",
                                "body": json.dumps(rest)})["body"])["results"]  # fmt: skip
        tool = json.loads(call(mcp_event("kb_search", {"query": "quokka values", argument: [value]}))["body"])
        for hits in (post, tool["result"]["structuredContent"]["results"]):
            assert [h["path"] for h in hits] == ["typed.md"], (field, value, hits)
    catalog = json.loads(call(mcp_event("kb_list", {}))["body"])["result"]["structuredContent"]
    assert sorted(f["value"] for f in catalog["tags"]) == sorted(WRITTEN["tags"]), catalog["tags"]
    assert [f["value"] for f in catalog["types"]] == ["yes"] and [f["value"] for f in catalog["statuses"]] == ["off"]
    note = json.loads(call(mcp_event("kb_get_note", {"path": "typed.md"}))["body"])["result"]["structuredContent"]
    assert note["frontmatter"]["id"] == "0x10" and note["frontmatter"]["updated"] == "2026-01-02", note
    assert post[0]["doc_id"] == "0x10", post


#: ``access:`` values as YAML 1.1 types them, and the groups their author wrote (Obsidian shows them as written)
WRITTEN_GROUPS = "[no, on, 0777, 1.10, 12:30, 2024-01-01]"
#: a bare yes/no word: everyone, or nobody? (each was skipped as "must be a list of group names, not bool")
SWITCHES = {"switch0.md": "access: no", "switch1.md": "access: off", "switch2.md": "access: true",
            "switch3.md": "ACCESS: Yes"}  # fmt: skip


def _caller(call: Any, key_id: str | None, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    event = mcp_event(tool, arguments)
    event["requestContext"]["identity"]["apiKeyId"] = key_id
    return cast(dict[str, Any], json.loads(call(event)["body"])["result"])


def test_access_groups_yaml_would_type_are_the_groups_as_written(tmp_path: Path, load_search_app) -> None:
    """`access: [no, on, 0777, 1.10, 12:30]` names the groups `no` (Norway's team), `on`, `0777`, `1.10` and
    `12:30`, as written and as Obsidian shows them: YAML 1.1 read them as false, true, 511, 1.1 and 750, and the
    note was skipped (`'False' is not a group name`), in the note's frontmatter and in `_access.yaml` (which stopped
    the sync); a bare date-time (`access: 2024-01-01 10:00:00`) was rewritten into its ISO form and the note
    indexed under `2024-01-01t10:00:00`, a group nobody wrote. Now each list names its groups as written; a bare
    yes/no word (`access: no`, `off`, `true`, `Yes`) is skipped with the reason (it reads as a switch: everyone or
    nobody is not known); the date-time is no group name, skipped. Callers of `no` and `0777` read their notes,
    a public caller reads none of them."""
    kb = tmp_path / "kb"
    (kb / "ops").mkdir(parents=True)
    (kb / "_access.yaml").write_text("ops/: [0777]\n", encoding="utf-8")
    (kb / "ops" / "run.md").write_text("# Runbook\n\n" + SECRET.format(n="ops") + "\n", encoding="utf-8")
    (kb / "norway.md").write_text(f"---\naccess: {WRITTEN_GROUPS}\n---\n# Norway\n\n" + SECRET.format(n="no") + "\n",
                                  encoding="utf-8")  # fmt: skip
    (kb / "stamp.md").write_text("---\naccess: 2024-01-01 10:00:00\n---\n# Stamp\n\n" + SECRET.format(n="t") + "\n",
                                 encoding="utf-8")  # fmt: skip
    for name, line in SWITCHES.items():
        (kb / name).write_text(f"---\n{line}\n---\n# Switch\n\n" + SECRET.format(n=name) + "\n", encoding="utf-8")
    (kb / "open.md").write_text("# Open\n\nA public note about zebrafinch.\n", encoding="utf-8")
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and report["error"] is None, (stderr, report)
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {*SWITCHES, "stamp.md"}, skipped
    for name, line in SWITCHES.items():
        word = line.split(": ")[1]
        assert f"{word!r} reads as a yes/no switch" in skipped[name] and f"write [{word}]" in skipped[name], skipped
    assert "'2024-01-01 10:00:00' is not a group name" in skipped["stamp.md"], skipped
    access = {p["path"]: p["access"] for p in store_points(Settings(qdrant_path=str(tmp_path / "q")))}
    assert access == {"open.md": ["public"], "ops/run.md": ["0777"],
                      "norway.md": ["0777", "1.10", "12:30", "2024-01-01", "no", "on"]}  # fmt: skip
    callers = {"k-no": ["no"], "k-octal": ["0777"]}
    mapping = {"api_keys": {key: {"name": key, "groups": groups} for key, groups in callers.items()}}
    call = load_search_app(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"), ACCESS_GROUPS=json.dumps(mapping))
    found = {}
    for key_id in (None, "k-no", "k-octal"):
        result = _caller(call, key_id, "kb_search", {"query": "salary band zebrafinch", "top_k": 20})
        found[key_id] = {h["path"] for h in result["structuredContent"]["results"]}
    assert found == {None: {"open.md"}, "k-no": {"open.md", "norway.md"},
                     "k-octal": {"open.md", "norway.md", "ops/run.md"}}, found  # fmt: skip
    assert not _caller(call, "k-no", "kb_get_note", {"path": "norway.md"})["isError"]
    for key_id, name in ((None, "norway.md"), ("k-no", "ops/run.md"), ("k-octal", "switch0.md")):
        result = _caller(call, key_id, "kb_get_note", {"path": name})
        assert result["isError"] and result["content"][0]["text"].startswith(f"no note at {name!r}"), (key_id, result)


@pytest.mark.parametrize("rule", ["hr/: off", "hr/: yes", "hr/: [no]\nops/: TRUE"])
def test_an_access_file_rule_of_a_bare_yes_no_word_stops_the_sync(tmp_path: Path, rule: str) -> None:
    """A folder rule `hr/: off` reads as a switch (YAML 1.1's false): the sync stops naming it, nothing indexed
    (as for any rule it cannot read); `hr/: [no]` beside it would name the group `no`."""
    kb = tmp_path / "kb"
    (kb / "hr").mkdir(parents=True)
    (kb / "_access.yaml").write_text(rule + "\n", encoding="utf-8")
    (kb / "hr" / "pay.md").write_text("# Pay\n\n" + SECRET.format(n="hr") + "\n", encoding="utf-8")
    code, report, _ = kbsearch_index(kb, tmp_path / "q")
    word = rule.rsplit(": ", 1)[1]
    assert code != 0 and f"{word!r} reads as a yes/no switch" in report["error"], report
    assert store_points(Settings(qdrant_path=str(tmp_path / "q"))) == []


#: filter values no note can hold: (field, value, what the 422 says)
NEVER_STORED = [("tags", "", "empty"), ("tags", "#", "'#' alone"), ("tags", "  ", "empty"), ("tags", "\u200b", "empty"),
                ("tags", "ops runbook", "no space or comma"), ("tags", "ops,runbook", "no space or comma"),
                ("type", "", "empty"), ("status", " ", "empty")]  # fmt: skip


def test_a_filter_value_no_note_can_hold_is_read_as_stored_or_refused(tmp_path: Path, load_search_app) -> None:
    """A tag filtered for as Obsidian shows it (`#ops`: the indexer stores a note's `#ops` as `ops`), and filter
    values no note can hold (empty, `#` alone, a tag holding a space or comma, where the indexer splits a note's
    tags), and a tag or status holding what no reader sees (`on\u200bcall`, `ac\u00adtive`, stored so: a filter for
    `oncall` missed it): each was searched for, and answered with no hits, silently (over POST and GET /search and
    kb_search). `#ops` is the tag `ops`, values are compared without invisible characters: the notes are found; the
    rest are a 422 naming the field (a tool error over MCP)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "ops.md").write_text("---\ntags: ['#ops', runbook]\ntype: howto\n---\n# Ops\n\nzebrafinch drill\n")
    (kb / "hidden.md").write_text("---\ntags: [on\u200bcall]\nstatus: ac\u00adtive\n---\n# Hidden\n\nzebrafinch drill\n",
                                  encoding="utf-8")  # fmt: skip
    code, _, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0, stderr
    call = load_search_app(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"))

    def post(filters: dict[str, Any]) -> dict[str, Any]:
        body = {"query": "zebrafinch drill", "filters": filters}
        return cast(dict[str, Any], call({**mcp_event("x", {}), "resource": "/search", "path": "/search",
                                          "body": json.dumps(body)}))  # fmt: skip

    def tool(field: str, value: str) -> dict[str, Any]:
        name = {"tags": "tags", "type": "types", "status": "statuses"}[field]
        result = json.loads(call(mcp_event("kb_search", {"query": "zebrafinch drill", name: [value]}))["body"])
        return cast(dict[str, Any], result["result"])

    get = {**mcp_event("x", {}), "resource": "/search", "path": "/search", "httpMethod": "GET", "body": None,
           "queryStringParameters": {"q": "zebrafinch drill", "tags": "#ops"},
           "multiValueQueryStringParameters": {"q": ["zebrafinch drill"], "tags": ["#ops"]}}  # fmt: skip
    for field, value, note in [("tags", "#ops", "ops.md"), ("tags", " # ops ", "ops.md"), ("tags", "ops", "ops.md"),
                               ("tags", "oncall", "hidden.md"), ("tags", "on\u2060call", "hidden.md"),
                               ("status", "active", "hidden.md"), ("status", "ac\u200btive", "hidden.md")]:  # fmt: skip
        answer = post({field: [value]})
        assert answer["statusCode"] == 200 and [h["path"] for h in json.loads(answer["body"])["results"]] == [
            note], (value, answer)  # fmt: skip
        assert [h["path"] for h in tool(field, value)["structuredContent"]["results"]] == [note], ascii(value)
    answer = call(get)
    assert answer["statusCode"] == 200 and [h["path"] for h in json.loads(answer["body"])["results"]] == ["ops.md"]
    for field, value, said in NEVER_STORED:
        answer = post({field: [value]})
        assert answer["statusCode"] == 422, (field, value, answer)
        detail = json.loads(answer["body"])["detail"]
        assert detail[0]["loc"][-1] == field and said in detail[0]["msg"], (field, value, detail)
        result = tool(field, value)
        assert result["isError"] and said in result["content"][0]["text"], (field, value, result)


#: note → its text: what no reader sees, inside the words a search names (NFD, as macOS tools write it; a soft
#: hyphen from a PDF; a zero-width space and a word joiner from a web page; a byte-order mark pasted mid-line)
INVISIBLE = {"nfd.md": unicodedata.normalize("NFD", "Йогуртница для кафе: ёмкость и café crème."),
             "shy.md": "The zebra\u00adfinch colony rotates its quokka\u200bkeys.",
             "joiner.md": "Archive the wom\u2060bat ledger \ufeffnightly."}  # fmt: skip
#: query → the note it names (each query in the other form too)
FINDS = {"йогуртница": "nfd.md", "ёмкость": "nfd.md", "café": "nfd.md", "zebrafinch": "shy.md",
         "quokkakeys": "shy.md", "wombat": "joiner.md"}  # fmt: skip


def _each_query_finds_its_note(
    tmp_path: Path, load_search_app: Any, notes: dict[str, str], queries: list[tuple[str, str]]
) -> None:
    """``notes`` (name → body) indexed by `kbsearch index`, then each query searched through the API (BM25 only:
    no provider) and answered with its note first."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, text in notes.items():
        (kb / name).write_text(f"# {name}\n\n{text}\n", encoding="utf-8")
    code, _, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0, stderr
    call = load_search_app(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"))
    for query, note in queries:
        body = {"query": query, "rerank": False, "expand": False}
        answer = call({**mcp_event("x", {}), "resource": "/search", "path": "/search", "body": json.dumps(body)})
        hits = [h["path"] for h in json.loads(answer["body"])["results"]]
        assert hits[:1] == [note], (ascii(query), hits)


def test_words_split_by_what_no_reader_sees_are_found_by_search(tmp_path: Path, load_search_app) -> None:
    """A note's word in NFD (`й` as `и` + U+0306, `é` as `e` + U+0301) or holding a soft hyphen, a zero-width
    space, a word joiner or a byte-order mark: BM25 split it there (`Йогуртница` was the token `огуртниц`,
    `zebra\u00adfinch` the tokens `zebra` and `finch`), so a search for the word, as its reader sees it, missed the
    note (BM25-only: no hit at all). Notes and queries are read in NFC without those characters: each word is
    found, by a query in either form or with the same invisible character."""
    queries = [(query, note) for word, note in FINDS.items()
               for query in (word, unicodedata.normalize("NFD", word), word[:3] + "\u00ad" + word[3:])]  # fmt: skip
    _each_query_finds_its_note(tmp_path, load_search_app, INVISIBLE, queries)


#: notes whose words are written in compatibility forms (round 16): full-width letters and digits (an IME left in
#: full-width mode, text pasted from a CJK page), half-width katakana, ligatures a PDF's text layer keeps (`ﬁ`, `ﬂ`)
COMPAT = {"wide.md": "Restore the \uff51\uff44\uff52\uff41\uff4e\uff54 \uff53\uff4e\uff41\uff50\uff53\uff48\uff4f\uff54\uff53 "
                     "from ticket \uff14\uff10\uff11\uff12 nightly.",
          "mixed.md": "The \uff31uokka gateway rotates weekly.",
          "ligature.md": "The \ufb01nch ledger is \ufb02attened by the archivist.",
          "kana.md": "\uff76\uff80\uff76\uff85 \uff83\uff9e\uff70\uff80 handbook.",
          "plain.md": "The wombat burrow survey."}  # fmt: skip
#: query → the note it names: each word as it reads, and the plain note found by a query typed in full width
COMPAT_FINDS = {"qdrant": "wide.md", "snapshot": "wide.md", "4012": "wide.md", "quokka": "mixed.md",
                "finch": "ligature.md", "flattened": "ligature.md", "\u30ab\u30bf\u30ab\u30ca": "kana.md",
                "\uff57\uff4f\uff4d\uff42\uff41\uff54": "plain.md", "\uff31\uff35\uff2f\uff2b\uff2b\uff21": "mixed.md"}  # fmt: skip


def test_words_in_compatibility_forms_are_found_by_search(tmp_path: Path, load_search_app) -> None:
    """Full-width letters and digits (`ｑｄｒａｎｔ`, `４０１２`), a full-width capital in a word (`Ｑuokka`), half-width
    katakana, ligatures (`ﬁnch`): BM25 read each as another word than the one its reader sees (`ｑｄｒａｎｔ` a token
    no query in ASCII makes, unstemmed; `ﬁnch` not `finch`), so a search for the word missed the note (BM25-only: no
    hit at all), and a query typed in full width missed the plain note. Notes and queries are read with
    compatibility forms folded (NFKC): each word is found by the word as it reads, in either form."""
    queries = [
        (query, note) for word, note in COMPAT_FINDS.items() for query in (word, unicodedata.normalize("NFKC", word))
    ]
    _each_query_finds_its_note(tmp_path, load_search_app, COMPAT, queries)


#: notes whose words hold a mark no letter composes with (round 16): Russian stress marks as dictionaries and
#: Wikipedia print them (`ве́дать`: е + U+0301, no composed form), a tone or a tilde over a Latin letter (`q̃`)
STRESSED = {"stress.md": "Ве\u0301домость арби\u0301тража хранится у казначе\u0301я.",
            "tilde.md": "The q\u0303uokka ledger is kept by the archivist."}  # fmt: skip
#: query → the note it names (each query also as the note writes it)
STRESSED_FINDS = {"ведомость": "stress.md", "арбитража": "stress.md", "казначея": "stress.md", "quokka": "tilde.md"}


def test_words_holding_a_mark_with_no_composed_form_are_found_by_search(tmp_path: Path, load_search_app) -> None:
    """A Russian word printed with its stress mark (`Ве́домость`: no composed form of е with an acute exists, so NFC
    leaves the mark) or a Latin letter with a mark it has no composed form with (`q̃uokka`): the mark is no word
    character, so BM25 split the word there (`ве́домость` was the tokens `ве` and `домост`) and a search for the word
    as its reader types it missed the note (BM25-only: no hit at all). The diacritical marks left over after
    composition are dropped (`lexical.reading`): the words are found, by a query with or without the mark."""
    queries = []
    for word, note in STRESSED_FINDS.items():
        written = next(w for w in re.findall(r"[\w\u0300-\u036f]+", STRESSED[note])
                       if unicodedata.normalize("NFD", w).lower().replace("\u0301", "").replace("\u0300", "")
                       .replace("\u0303", "").startswith(word[:5]))  # fmt: skip
        queries += [(word, note), (written, note)]
    _each_query_finds_its_note(tmp_path, load_search_app, STRESSED, queries)


#: `access` keys a reader sees as `access`, with a value the reader drops (a yes/no word, a tag it cannot build)
SPACED_ACCESS = {"nbsp.md": "access\u00a0: no", "quoted.md": '"access ": off', "tagged.md": '" Access": !weird x',
                 "cyrillic.md": "\u0430ccess: !weird x"}  # fmt: skip


def test_an_access_key_with_spaces_whose_value_is_dropped_is_never_public(tmp_path: Path, load_search_app) -> None:
    """`access<NBSP>: no` (a no-break space pasted before the colon: YAML's plain key keeps it), `"access ": off`:
    the value is dropped with a warning (a yes/no word, a tag kb-search cannot build), but the warning was matched
    to `access` only for the key spelled exactly, so the note read as declaring nothing and was indexed under the
    default, public, and served to every caller. Each is skipped with the reason, as `access: no` is."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, line in SPACED_ACCESS.items():
        (kb / name).write_text(f"---\n{line}\n---\n# Spaced\n\n" + SECRET.format(n=name) + "\n", encoding="utf-8")
    (kb / "open.md").write_text("# Open\n\nA public note about zebrafinch.\n", encoding="utf-8")
    code, report, stderr = kbsearch_index(kb, tmp_path / "q")
    assert code == 0 and report["error"] is None, (stderr, report)
    assert {s["path"] for s in report["skipped"]} == set(SPACED_ACCESS), report["skipped"]
    assert {p["path"] for p in store_points(Settings(qdrant_path=str(tmp_path / "q")))} == {"open.md"}
    call = load_search_app(KB_SOURCE=str(kb), QDRANT_PATH=str(tmp_path / "q"))
    result = _caller(call, None, "kb_search", {"query": "salary band zebrafinch", "top_k": 20})
    assert {h["path"] for h in result["structuredContent"]["results"]} == {"open.md"}, result
