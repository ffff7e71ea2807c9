"""Round 33's cold review of adv33's access changes (rev33d): the copy of the access file that stops a sync, the
folder rules' fold, and the folder named on a read by path, each through the real interfaces (the indexer over a
folder and moto's S3, the search handler given API Gateway events with an API key's id, MCP over the same handler)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from kbsearch_tools.local.apigw import HttpRequest, build_event
from tests.integration import test_events as events_tests

aws = events_tests.aws  # moto's bucket and queue, the lease table


def test_a_folder_answer_counts_only_the_notes_the_caller_may_read_on_every_read_by_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_search_app: Any
) -> None:
    """A folder holding public and restricted notes (``hr/`` with a note declared ``public``, and a deeper folder
    of ``hr``'s only) is counted per caller, never the folder's size: a public key is told of the one public note,
    an ``hr`` key of all three, on ``GET /notes/{path}``, ``kb_get_note`` and ``resources/read`` alike; a folder
    whose notes are all restricted (``hr/deep``) answers a public caller word for word as an absent folder, in
    either spelling (with and without the trailing '/')."""
    from tests.integration.test_adv25 import _served as served
    from tests.integration.test_hostile_notes import mcp_event

    monkeypatch.setenv("ACCESS_GROUPS", json.dumps({"api_keys": {"hr-key": {"name": "hr", "groups": ["hr"]}}}))
    notes = {"_access.yaml": "hr/: [hr]\n", "hr/Pay.md": "# Pay\n\nquokka\n",
             "hr/Open.md": "---\naccess: public\n---\n# Open\n\nquokka\n", "hr/deep/Bands.md": "# Bands\n\nquokka\n",
             "Top.md": "# Top\n\nx\n"}  # fmt: skip
    app, _ = served(tmp_path, load_search_app, notes)

    def keyed(event: dict[str, Any], key: str | None) -> dict[str, Any]:
        if key:
            event["requestContext"]["identity"]["apiKeyId"] = key
        return event

    def rest(path: str, key: str | None) -> str:
        event = build_event(HttpRequest("GET", "/notes/" + quote(path), "", [], b""), "/notes/{path+}",
                            {"path": quote(path)}, "dev", "key")  # fmt: skip
        result = app(keyed(event, key))
        assert result["statusCode"] == 400, (path, result)
        return str(json.loads(result["body"])["message"])

    def tool(path: str, key: str | None) -> str:
        result = json.loads(app(keyed(mcp_event("kb_get_note", {"path": path}), key))["body"])["result"]
        assert result["isError"], result
        return str(result["content"][0]["text"])

    def resource(path: str, key: str | None) -> str:
        event = mcp_event("kb_get_note", {})
        body = {"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "kb://note/" + quote(path)}}
        event["body"] = json.dumps(body)
        answer = json.loads(app(keyed(event, key))["body"])
        assert "error" in answer, answer
        return str(answer["error"]["message"])

    for read in (rest, tool):
        for path in ("hr", "hr/"):
            assert "is a folder of 1 note:" in read(path, None), (read.__name__, path)
            assert "is a folder of 3 notes:" in read(path, "hr-key"), (read.__name__, path)
        for path, absent in (("hr/deep", "hr/zzzz"), ("hr/deep/", "hr/zzzz/")):
            assert read(path, None) == read(absent, None).replace(absent.rstrip("/"), path.rstrip("/")), path
            assert "is a folder of 1 note:" in read(path, "hr-key"), (read.__name__, path)
    # resources/read names a note by its URI: whatever it says of a folder, it says nothing a public caller
    # may not know (it is answered as the same URI of an absent folder)
    for path, absent in (("hr/deep", "hr/zzzz"), ("hr/deep/", "hr/zzzz/")):
        assert resource(path, None) == resource(absent, None).replace(absent.rstrip("/"), path.rstrip("/")), path


#: Copies of the access file as other systems name them: macOS Finder in Russian (``копия``, ``копия 2``), Windows
#: Explorer in Russian (`` — копия``, `` — копия (2)``) and English past the first copy (`` - Copy (2)``,
#: `` - Copy - Copy``), GNOME Files (``(copy)``, ``(another copy)``), Finder's copy of a numbered one (``2 copy``), a
#: download of a download (``(1) (1)``). adv33 stopped the sync on ``_access (1).yaml``, ``_access copy.yaml``, ``_access
#: 2.yaml``; these were attachments still, their rules not read.
LOCALIZED_COPIES = ["_access копия.yaml", "_access копия 2.yaml", "_access — копия.yaml", "_access — копия (2).yml",
                    "_access - Copy (2).yaml", "_access - Copy - Copy.yaml", "_access (copy).yaml",
                    "_access (another copy).yaml", "_access 2 copy.yaml", "_access (1) (1).yaml"]  # fmt: skip


@pytest.mark.parametrize(
    ("copy", "where"), [(name, "folder") for name in LOCALIZED_COPIES] + [(LOCALIZED_COPIES[0], "s3")]
)
def test_a_copy_of_the_access_file_named_in_russian_or_by_another_system_stops_the_sync(
    tmp_path: Path, copy: str, where: str
) -> None:
    """The KB's authors write Russian: a Finder or Explorer in Russian names the duplicate of ``_access.yaml``
    ``_access копия.yaml`` / ``_access — копия.yaml``; uploaded to the root with the rules meant (``hr/: [hr]``), it
    was an attachment and ``hr/Pay.md`` was indexed public, nothing said (adv33 read the English marks only). Such a
    copy now stops the sync naming it, as ``_access (1).yaml`` does; the index stays as it was."""
    from kbsearch.access import Scope
    from kbsearch.config import Settings
    from tests.integration.test_access_index import sync_from, visible, write_kb

    root = tmp_path / "kb"
    write_kb(root, {"hr/Pay.md": "# Pay\nwelcome salary bands\n", "pub/Hello.md": "# Hello\nwelcome all\n"}, None)
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    (root / "_access.yaml").write_text("hr/: [hr]\n", encoding="utf-8")
    # the guard: a note named after the rules and a copy in a folder (not the root) are a note and an attachment
    (root / "_access notes.md").write_text("# Access notes\nwho reads hr\n", encoding="utf-8")
    (root / "hr" / copy).write_text("hr/: [hr]\n", encoding="utf-8")
    report = sync_from(root, settings, where)
    assert report.error is None and report.added == 3, report
    (root / "_access.yaml").replace(root / copy)  # the rules renamed as a copy (the old file removed)
    (root / "pub/New.md").write_text("# New\nwelcome new\n", encoding="utf-8")
    report = sync_from(root, settings, where)
    assert report.error is not None and report.error.startswith(f"{copy!r} looks like the access file"), report.error
    assert visible(settings, Scope.public()) == ["pub/Hello.md"]  # as it was: hr/Pay.md not public, New not added


@pytest.mark.parametrize(
    "rules",
    ["team/: [team]\nteam/secret/\u3164/: [public]\n", "\u3164/: [public]\nteam/: [team]\n",
     "team/: [team]\nteam/secret/\u200b/: [public]\n", "team/: [team]\nteam/secret/\ufe0f\u034f/: [public]\n"],
    ids=["hangul-filler-below", "hangul-filler-root", "zwsp-below", "vs-cgj-below"],
)  # fmt: skip
def test_a_rule_for_a_folder_named_only_with_unseen_characters_is_refused_never_widened(
    tmp_path: Path, rules: str
) -> None:
    """A folder named with a Hangul filler alone (``ㅤ``, a "blank" name) is a folder of its own; its rule
    ``team/secret/ㅤ/: [public]`` meant it. adv33's fold drops the filler, so the rule's folder read
    ``team/secret`` and opened every note there to everyone (``team/secret/Plan.md``, ``team``'s by ``team/``); a
    rule ``ㅤ/`` became a rule of the whole KB (every note no other rule holds; under ``ACCESS_DEFAULT=deny`` read
    by nobody, then by its groups). A zero-width space alone did so since round 15. Such a rule now stops the sync
    naming it: the fold may only make a folder the one a reader sees, never another one."""
    from kbsearch.access import Scope
    from kbsearch.config import Settings
    from tests.integration.test_access_index import sync_from, visible, write_kb

    root = tmp_path / "kb"
    write_kb(root, {"team/secret/Plan.md": "# Plan\nwelcome plan\n", "misc/Note.md": "# Note\nwelcome note\n",
                    "team/secret/\u3164/Open.md": "# Open\nwelcome open\n"}, rules)  # fmt: skip
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    report = sync_from(root, settings, "folder")
    shown = visible(settings, Scope.public())
    assert report.error is not None and "no reader sees" in report.error, (report.error, shown)


def test_a_copy_uploaded_to_the_bucket_changes_nothing_and_stops_events_and_schedule_alike(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through moto's bucket, queue and the indexer handler: ``_access копия.yaml`` uploaded beside the old rules
    is no note (the bucket sends events of ``.md`` keys only, as template.yaml's filter; any record it sends is
    handled): the index is as it was; the next note's event fails and is retried (the batch's notes wait, as a
    full sync's), and the schedule's run stops naming the copy."""
    from kbsearch.config import Secrets
    from kbsearch.indexer import run_sync
    from tests.integration.test_events import PREFIX, Indexer, points

    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.put(PREFIX + "_access.yaml", b"ops/: [ops]\n")
    aws.put(PREFIX + "hr/Pay.md", b"# Pay\n\nquokka\n")
    aws.receive()
    settings = indexer.settings()
    assert run_sync(settings, Secrets(settings)).error is None
    before = points(settings)
    aws.put(PREFIX + "_access копия.yaml", b"ops/: [ops]\nhr/: [hr]\n")
    records = aws.receive()
    assert not records or indexer(records) == []
    assert points(settings) == before
    aws.put(PREFIX + "hr/New.md", b"# New\n\nquokka\n")
    records = aws.receive()
    assert len(indexer(records)) == len(records) == 1  # retried, not indexed
    assert points(settings) == before
    report = run_sync(settings, Secrets(settings))
    assert report.error is not None and report.error.startswith("'_access копия.yaml' looks like the access file")
    assert points(settings) == before


def test_a_root_name_of_a_thousand_digits_is_read_at_once_as_no_copy(tmp_path: Path) -> None:
    """An S3 key at the root ``_access`` + 1,000 digits + ``x.yaml`` (S3 keys reach 1,024 bytes) is no copy of the
    access file; reading it as one tried every split of the digits into copy marks (``_access 2 copy``'s repeats):
    400 digits took 22 s, 1,000 hours, and the sync stood still (this test then fails at pytest's timeout). Each
    run of digits is now one mark: the sync runs, the file an attachment."""
    from kbsearch.config import Secrets
    from kbsearch.indexer import run_sync
    from tests.integration.test_access_index import s3_kb

    objects = {"Hello.md": b"# Hello\nwelcome\n", "_access" + "1" * 1000 + "x.yaml": b"hr/: [hr]\n"}
    with s3_kb(tmp_path, objects) as (settings, _):
        report = run_sync(settings, Secrets(settings), source_uri="s3://kb-notes/kb/")
    assert report.error is None and report.added == 1, report
