"""Round 28a's review of round 28b (rev28a): through the real interfaces (`kbsearch index` spawned, the search
handler with API Gateway events on the embedded store). Each test fails on main's code before its fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# -- a note over a read by path's bound whose access was taken from the caller since it was indexed ----------------


def test_a_note_too_large_to_read_by_path_whose_access_was_revoked_since_indexing_is_missing_not_too_large(
    tmp_path: Path, load_search_app: Any
) -> None:
    """Round 28b answered a read by path of a note over 4 MiB that the index holds for the caller with 422 `too
    large: N bytes`, before the note's own declaration was read: a note made hr-only since the last sync (the index
    stale) was "too large: 4550029 bytes" to a public caller, its existence and size told, where a note of any
    other size is "no note at" the path (404), as the current declaration decides a read by path. Now the
    declaration (in the note's first bytes) is read first: a caller it excludes is told nothing more."""
    from kbsearch_tools.local.apigw import HttpRequest, build_event
    from tests.integration.test_adv28b import indexed_large
    from tests.integration.test_hostile_notes import mcp_event

    kb = tmp_path / "kb"
    kb.mkdir()
    body = "# Big\n\n" + "quokka " * 650_000 + "\n"  # one line, 4.5 MB
    (kb / "big.md").write_text(body)
    (kb / "small.md").write_text("# Small\n\nquokka\n")
    app = indexed_large(kb, tmp_path / "q", load_search_app, 2)

    def read(path: str) -> dict[str, Any]:
        return dict(app(build_event(HttpRequest("GET", f"/notes/{path}", "", [], b""), "/notes/{path+}",
                                    {"path": path}, "dev")))  # fmt: skip

    assert read("big.md")["statusCode"] == 422  # round 28b's case: the note is the caller's, said too large
    assert read("small.md")["statusCode"] == 200
    for path, text in (("big.md", body), ("small.md", "# Small\n\nquokka\n")):  # made hr-only, not synced since
        (kb / path).write_text("---\naccess: [hr]\n---\n" + text)
    for path in ("big.md", "small.md"):
        answer = read(path)
        assert answer["statusCode"] == 404, (path, answer)
        assert "too large" not in answer["body"] and "bytes" not in answer["body"], answer["body"]
        tool = json.loads(app(mcp_event("kb_get_note", {"path": path}))["body"])["result"]
        assert tool["isError"] and "too large" not in json.dumps(tool), tool
    # the declaration read from the note's first bytes lets its readers through: still said too large to them
    (kb / "big.md").write_text("---\naccess: [public]\n---\n" + body)
    assert read("big.md")["statusCode"] == 422


# -- the refusal record (parse_refused): entries of another writer, and the record as an older kbsearch reads it ------


def test_a_refusal_entry_whose_limit_is_an_integer_past_a_float_is_read_as_unrecorded_never_a_failed_run(
    tmp_path: Path,
) -> None:
    """`Refusal.read` put an entry's `limit_s` through `math.isfinite`, which raises OverflowError on an integer
    past a float's range (`{"etag": ..., "limit_s": 1e400 written as digits}`: JSON has no integer bound, and the
    embedded store's metadata is a JSON file): every `kbsearch index` of that store ended with a traceback before
    its first note. Now such a limit is of no use like any other (read as not recorded) and the entry, of a version
    the note is no longer at, is dropped."""
    from tests.integration.test_adv28b import index_under, merge_store_metadata, store_metadata

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nA note.\n")
    store = tmp_path / "q"
    index_under(kb, store, "30")
    merge_store_metadata(store, {"parse_refused": {"a.md": {"etag": "an older version", "limit_s": 10**400}}})
    (kb / "a.md").write_text("# A\n\nA note, edited.\n")
    report = index_under(kb, store, "30")  # (asserts rc 0 and no traceback)
    assert report["updated"] == 1 and not report["skipped"], report
    assert store_metadata(store).get("parse_refused") == {}


def test_a_refusal_is_recorded_as_every_kbsearch_since_round_26_reads_it_and_an_older_writers_rewrite_keeps_limits(
    tmp_path: Path,
) -> None:
    """Round 28b wrote a refusal as `{"etag", "limit_s"}` in `parse_refused`, where a kbsearch before it reads the
    etag alone: the Lambdas of the older version sharing the collection (a rolling deploy, a rollback) parsed every
    such note again (probe: `kbsearch index` of 52355d7 after this one, NOTE_PARSE_LIMIT_S=0.25: `its parse ran past
    0.25 s` anew) and, writing the record, dropped every such entry, of any note. Now `parse_refused` stays path →
    etag and the limit is beside it (`parse_refused_limits`, of that etag); an older kbsearch's rewrite of
    `parse_refused` (the etag alone, the limits' key untouched) leaves the note refused under that limit, and a
    raised limit parses it again."""
    from tests.integration.test_adv26 import SLOW_NOTE
    from tests.integration.test_adv28b import index_under, merge_store_metadata, slow_reason, store_metadata

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "good.md").write_text("# Good\n\nA good note.\n")
    (kb / "slow.md").write_bytes(SLOW_NOTE)
    store = tmp_path / "q"
    index_under(kb, store, "0.25")
    recorded = store_metadata(store)
    etag = recorded["parse_refused"]["slow.md"]
    assert isinstance(etag, str), recorded["parse_refused"]  # what a kbsearch before round 28b reads
    assert recorded["parse_refused_limits"] == {"slow.md": {"etag": etag, "limit_s": 0.25}}
    # an older kbsearch writing the record: path → etag, another note's entry among them, the limits' key untouched
    merge_store_metadata(store, {"parse_refused": {"slow.md": etag, "gone.md": "an etag"}})
    again = index_under(kb, store, "0.25")
    assert "ran past 0.25 s, NOTE_PARSE_LIMIT_S as it was then" in (slow_reason(again) or ""), again
    raised = index_under(kb, store, "1")  # above the recorded 0.25, below the default a bare etag reads as
    assert "earlier run" not in (slow_reason(raised) or ""), raised  # tried again (indexed, or refused anew)
