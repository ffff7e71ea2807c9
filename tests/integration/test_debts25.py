"""Session 25's debts (RELIABILITY.md, "Round 25: debts"), each through the real interfaces."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from kbsearch.config import Secrets, Settings
from kbsearch.events import Change
from kbsearch.indexer import ChangeSync, Indexer, SyncOptions, event_sequencers, run_sync
from kbsearch.qdrant import open_store
from kbsearch.sequencers import ABANDONED_S, DynamoSequencers, FileSequencers
from kbsearch.sources import S3Source
from tests.integration.test_event_races import BUCKET, PREFIX, REGION, TABLE, aws, note

__all__ = ["aws"]  # the fixture, shared with test_event_races


def texts(store: Any) -> dict[str, str]:
    """note path → the text of its chunks, in order."""
    out: dict[str, list[tuple[int, str]]] = {}
    for payload in store.points().values():
        out.setdefault(str(payload["path"]), []).append((int(payload["chunk_index"]), str(payload["text"])))
    return {path: " ".join(t for _, t in sorted(chunks)) for path, chunks in out.items()}


@pytest.mark.parametrize("log_kind", ["dynamodb", "file"])
@pytest.mark.parametrize("later", ["saved again", "deleted"])
def test_a_full_sync_applies_again_the_notes_an_event_batch_claimed_while_it_wrote(
    aws: Any, tmp_path: Path, log_kind: str, later: str
) -> None:
    """An event batch that passed the lease check just before a full sync took the lease claims the note's later
    event and writes what S3 holds then (v2, or the deletion) between the sync's read of v1 and its write of v1:
    driven through the sync's own S3 client (a botocore hook after its GetObject of the note runs the batch). The
    sync reads the claims of the notes it wrote before it ends, and applies again those claimed since
    ABANDONED_S before it started: the index holds v2 (or no note). Before: it held v1, the batch's event was
    applied and logged (its replay stale), so v1 stayed until the next hourly sync."""
    settings = Settings(kb_source=f"s3://{BUCKET}/{PREFIX}", qdrant_path=str(tmp_path / "store"),
                        index_lease_table=TABLE if log_kind == "dynamodb" else "", embedding_api_key=None)  # fmt: skip
    aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}raced.md", Body=note("zeroth"))
    aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}calm.md", Body=note("calm"))
    store = open_store(settings, Secrets(settings))
    batch_source = S3Source(BUCKET, PREFIX, client=boto3.session.Session(region_name=REGION).client("s3"))
    assert Indexer(batch_source, store, None, SyncOptions()).sync().added == 2  # indexed before: v0
    aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}raced.md", Body=note("first"))  # what the sync lists and reads
    ran: list[Any] = []

    def batch() -> None:  # after the sync's read of v1, before its write
        if ran:
            return
        if later == "deleted":
            aws.delete_object(Bucket=BUCKET, Key=f"{PREFIX}raced.md")
        else:
            aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}raced.md", Body=note("second"))
        change = Change("raced.md", f"{PREFIX}raced.md", later == "deleted", "0065F1A0B0C0D0E002")
        ran.append(ChangeSync(batch_source, store, None, SyncOptions(), event_sequencers(settings)).apply([change]))

    sync_client = boto3.session.Session(region_name=REGION).client("s3")
    sync_client.meta.events.register(  # the sync's read of the raced note, marked for the call's end
        "before-call.s3.GetObject", lambda params, context, **_: context.update(raced="raced" in params["url_path"])
    )
    sync_client.meta.events.register(
        "after-call.s3.GetObject", lambda context, **_: batch() if context.get("raced") else None
    )
    try:
        indexer = Indexer(
            S3Source(BUCKET, PREFIX, client=sync_client), store, None, SyncOptions(),
            claims=lambda: event_sequencers(settings),
        )  # fmt: skip
        report = indexer.sync()
        assert len(ran) == 1 and ran[0].error is None and not ran[0].failed_paths, ran
        assert ran[0].updated + ran[0].deleted == 1, ran  # the batch did write v2 (or delete) before the sync's write
        assert report.error is None, report
        held = texts(store)
    finally:
        store.close()
    assert held.get("calm.md", "").endswith("The calm version of the raced note.")
    if later == "deleted":
        assert "raced.md" not in held, held
    else:
        assert held.get("raced.md", "").endswith("The second version of the raced note."), held
    assert report.claimed_meanwhile == 1, report


@pytest.mark.parametrize("log_kind", ["dynamodb", "file"])
def test_a_full_sync_leaves_notes_claimed_long_before_it_and_run_sync_reads_the_claims(
    aws: Any, tmp_path: Path, log_kind: str
) -> None:
    """Only claims made since ABANDONED_S before the sync started are read again (an older claim's batch has
    ended: what it wrote, the sync's listing saw); run_sync gives the Indexer the configured log."""
    settings = Settings(kb_source=f"s3://{BUCKET}/{PREFIX}", qdrant_path=str(tmp_path / "store"),
                        index_lease_table=TABLE if log_kind == "dynamodb" else "", embedding_api_key=None)  # fmt: skip
    file = Path(settings.qdrant_path) / "kb.sequencers.json"  # beside the store, as event_sequencers puts it
    for name in ("old.md", "young.md"):
        aws.put_object(Bucket=BUCKET, Key=f"{PREFIX}{name}", Body=note(name))
    for name, ago in (("old.md", 2 * ABANDONED_S), ("young.md", ABANDONED_S / 2)):
        log: Any = (DynamoSequencers(TABLE, "kb", clock=lambda ago=ago: time.time() - ago) if log_kind == "dynamodb"
                    else FileSequencers(file, clock=lambda ago=ago: time.time() - ago))  # fmt: skip
        assert log.put(name, "0065F1A0B0C0D0E001")
    assert event_sequencers(settings).claims(["old.md", "young.md"]).keys() == {"old.md", "young.md"}
    report = run_sync(settings, Secrets(settings))
    assert report.error is None and report.added == 2, report
    assert report.claimed_meanwhile == 1, report  # young.md read again (unchanged: nothing written twice)
    assert report.added == 2 and report.updated == 0, report


# -- 2: the indexer's Qdrant key, rotated mid-run ---------------------------------------------------------------

QDRANT_KEY_PARAM = "/kb-search/test/qdrant-api-key"


@pytest.mark.parametrize("refusal", [401, 403])
def test_the_indexers_store_rereads_a_qdrant_key_rotated_mid_run(refusal: int) -> None:
    """The indexer's store on Qdrant Cloud (qdrant-client over HTTP to a loopback Qdrant) read the key once, when
    the run opened it: the key rotated in SSM and the old one revoked mid-run, every write after failed ("updating notes'
    payloads failed: UnexpectedResponse: ... 401 (Unauthorized)"), the run with it. Now a 401/403 has it read from SSM again once and the request sent again,
    as the search does: the write goes through, Qdrant asked once with the old key and once with the new. A key
    that stays wrong is one more request, then the StoreError, never a loop; neither key is in it."""
    from kbsearch.errors import StoreError
    from kbsearch.qdrant.store import Store
    from kbsearch_tools.fakes import FakeEndpoint

    endpoint = FakeEndpoint().start()
    current = ["key-1"]

    def respond(method: str, path: str) -> tuple[int, bytes, str] | None:
        if endpoint.requests[-1].headers.get("api-key") != current[0]:
            return refusal, b'{"status": {"error": "Invalid api-key"}, "time": 0.0}', "application/json"
        sent = endpoint.requests[-1].body
        done = [{"operation_id": i, "status": "completed"} for i, _ in enumerate(sent.get("operations", []))]
        return 200, json.dumps({"result": done, "status": "ok", "time": 0.001}).encode(), "application/json"

    endpoint.responder = respond
    write = [(["a.md"], {"access": ["public"], "access_from": "default"})]
    try:
        with mock_aws():
            from aws_lambda_powertools.utilities import parameters

            parameters.clear_caches()
            ssm = boto3.client("ssm", region_name=REGION)
            ssm.put_parameter(Name=QDRANT_KEY_PARAM, Type="SecureString", Value="key-1")
            settings = Settings(qdrant_url=endpoint.url, qdrant_api_key_param=QDRANT_KEY_PARAM)
            store = Store.cloud(settings, Secrets(settings))
            try:
                store.set_payloads(write)  # the run's first write, with the key it started with
                ssm.put_parameter(Name=QDRANT_KEY_PARAM, Type="SecureString", Value="key-2", Overwrite=True)
                current[0] = "key-2"  # rotated, the old key revoked
                endpoint.requests.clear()
                store.set_payloads(write)
                sent = [r.headers.get("api-key") for r in endpoint.requests]
                current[0] = "key-3"  # a key that stays wrong (SSM not updated)
                endpoint.requests.clear()
                with pytest.raises(StoreError) as refused:
                    store.set_payloads(write)
            finally:
                store.close()
                parameters.clear_caches()
    finally:
        endpoint.stop()
    assert sent == ["key-1", "key-2"], sent
    assert len(endpoint.requests) == 1, endpoint.requests  # the same key read again: not sent again
    assert str(refusal) in str(refused.value) and "key-" not in str(refused.value), refused.value


# -- 3: the exit code of a command refused a store another process holds --------------------------------------------


def test_every_command_refused_a_held_store_exits_75_as_a_held_lease_does(tmp_path: Path) -> None:
    """A `kbsearch mcp` holds the embedded store. `kbsearch search` exited 2 (every KbSearchError: a usage error),
    `kbsearch index` 1 (a failed run), while 75 (EX_TEMPFAIL) is what `kbsearch index` exits when another run holds
    the index lease: the same situation (nothing read or changed, run it again later). Both exit 75 now, with the
    message as before (one line naming the holder), and `kbsearch --help` says what 75 means."""
    from tests.integration.test_debts24 import _kbsearch, mcp_holding

    store = tmp_path / "q"
    assert _kbsearch("index", "sample-kb", QDRANT_PATH=str(store)).returncode == 0
    with mcp_holding(store) as holder:
        refused = {
            " ".join(args): _kbsearch(*args, QDRANT_PATH=str(store))
            for args in (("search", "snapshot"), ("search", "--json", "snapshot"), ("index", "sample-kb"),
                         ("index", "--json", "sample-kb"))
        }  # fmt: skip
    codes = {command: done.returncode for command, done in refused.items()}
    assert set(codes.values()) == {75}, codes
    for command in ("search snapshot", "search --json snapshot"):
        done = refused[command]
        assert not done.stdout and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert f"(pid {holder.pid}: kbsearch mcp)" in done.stderr, done.stderr
    assert f"(pid {holder.pid}: kbsearch mcp)" in json.loads(refused["index --json sample-kb"].stdout)["error"]
    shown = _kbsearch("--help")
    assert "75 held elsewhere: another process has the embedded store open, or another run holds the index lease" in (
        " ".join(shown.stdout.split())
    ), shown.stdout


# -- 4: the 6 MB bound counts what is sent ---------------------------------------------------------------------------


def test_a_russian_note_the_answer_holds_in_utf8_is_answered_whole(load_search_app: Any, tmp_path: Path) -> None:
    """`schemas.wire_bytes`, the bound every answer is cut to (ANSWER_BYTES, 5 MiB of Lambda's 6 MB), counted a
    Russian letter as 7 bytes (its JSON ASCII-escaped, escaped again in the function's result), while answers are
    UTF-8 and the python3.13 runtime writes the result in UTF-8: 2 bytes. A 2.3 MB Russian note (MAX_NOTE_BYTES
    raised) was cut (`truncated: ["body"]`) in an answer well within the limit; it is answered whole,
    and the function's result as the runtime sends it stays within 6 MB. (test_answer_size: what is past the bound is still cut.)"""
    from tests.conftest import LAMBDA_ANSWER_BYTES, lambda_result_bytes
    from tests.integration.test_answer_size import RUSSIAN_LINE, _get, _note_app

    body = "# Синхронизация\n\n" + RUSSIAN_LINE * 17_000
    app = _note_app(load_search_app, tmp_path, {"big.md": body}, 4 * 1024**2)
    result, note = _get(app, "big.md")
    assert len(body.encode()) > 2_300_000
    assert result["statusCode"] == 200 and note["truncated"] == [] and note["body"] == body, note["truncated"]
    assert lambda_result_bytes(result) <= LAMBDA_ANSWER_BYTES, lambda_result_bytes(result)


# -- 5: Obsidian's %%comments%% ----------------------------------------------------------------------------------------

COMMENTED = """---
title: Comments
---
# Comments

Visible words about key rotation. This is an %%secretive quokka%% comment.

%%
## Hidden heading
A block about [[Hidden target]] and the word zanzibar.
%%

## Shown

Code `%%` stays, and [[Shown target]].

```md
%% a comment shown as code: kept %%
```
"""


def test_obsidian_comments_are_neither_indexed_nor_shown(load_search_app: Any, tmp_path: Path) -> None:
    """Obsidian hides `%%comments%%` (inline, or a block of lines) in reading view: they were indexed as text, so a
    search for a word only in a comment found the note and its snippet showed the comment; a heading in a block
    comment was a section, a link in it a link of the graph. The vault's one real comment (`%% These headings use
    HTML to avoid cluttering the Outline/Table of contents %%`, en and ru) was searchable so. Now none of it is
    indexed, shown, a heading or a link; `%%` in a code span or a code block is text as written."""
    from kbsearch_tools.local.apigw import HttpRequest, build_event
    from tests.integration.test_answer_size import _get, _note_app

    vault = Path("/work/shared/kb/obsidian-help/en/Editing and formatting/Basic formatting syntax.md")
    notes = {"comments.md": COMMENTED}
    if vault.is_file():
        notes["syntax.md"] = vault.read_text(encoding="utf-8")
    app = _note_app(load_search_app, tmp_path, notes, 1024 * 1024)

    def search(query: str) -> list[dict[str, Any]]:
        event = build_event(HttpRequest("GET", "/search", f"q={query}&top_k=10", [], b""), "/search", {}, "dev")
        result = app(event)
        assert result["statusCode"] == 200, result
        return list(json.loads(result["body"])["results"])

    assert search("zanzibar") == [] and search("quokka") == []
    hits = search("key rotation")
    assert [h["path"] for h in hits][:1] == ["comments.md"], hits
    assert "quokka" not in json.dumps(hits, ensure_ascii=False)
    code = search("comment shown as code")
    assert code and code[0]["path"] == "comments.md" and "%% a comment shown as code" in code[0]["snippet"], code
    result, note = _get(app, "comments.md")
    assert result["statusCode"] == 200, result
    assert [s["heading"] for s in note["sections"]] == ["Comments", "Shown"], note["sections"]
    assert [r["target"] for r in note["links"]["outgoing"]] == ["Shown target"], note["links"]
    if vault.is_file():
        shown = json.dumps(search("avoid cluttering the Outline"), ensure_ascii=False)
        assert "cluttering" not in shown, shown
