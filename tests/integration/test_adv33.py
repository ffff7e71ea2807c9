"""Round 33, the adversarial pass (adv33): concurrency and ordering of S3 events over notes that look alike, and
scopes under attack. Through the real interfaces: moto's bucket sending its notifications to moto's queue, the
indexer handler given them as the Lambda SQS event (duplicated and shuffled, as at-least-once delivery has them),
and the search handler given API Gateway events with an API key's id (its scope from ``ACCESS_GROUPS``)."""

from __future__ import annotations

import json
import random
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from kbsearch.config import Secrets
from kbsearch.indexer import run_sync
from kbsearch_tools.local.apigw import HttpRequest, build_event
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.s3events import EventPath
from tests.integration import test_events as events_tests
from tests.integration.test_events import BUCKET, PREFIX, Indexer, clean_full_sync, points

# Keys that differ only in case or Unicode form, a folder rule's folder in three cases, and notes whose titles,
# aliases and tags collide with each other's when case-folded, restricted and public alike.
KEYS = ["ops/Plan.md", "ops/plan.md", "hr/Pay.md", "HR/pay.md", "café.md", unicodedata.normalize("NFD", "café.md"),
        "pub/Welcome.md", "Hr/Deep/x.md"]  # fmt: skip
RULES = ["", "hr/: [hr]\n", "hr/: [hr]\nops/: [ops]\n", "ops/: [ops, hr]\n", "HR/: [security]\n"]
ACCESS = [None, "[hr]", "[ops]", "public", "[public, hr]"]
NAMES = ["Plan", "plan", "PLAN", "Secret", "secret", "Pay", "café", "CAFÉ"]
TAGS = ["Secret", "secret", "SECRET/x", "straße", "STRASSE"]
LINKS = ["[[secret]]", "[[Secret]]", "[[PLAN]]", "[[CAFÉ]]", "[[plan]]", "[[Plan]]", "[[pay]]", "[[café]]",
         "[[Welcome]]", "[[x]]", ""]  # fmt: skip
GROUPS = ("hr", "ops", "security")

aws = events_tests.aws  # moto's bucket and queue, the lease table


def _note(rng: random.Random, key: str, n: int) -> bytes:
    lines = []
    if access := rng.choice(ACCESS):
        lines.append(f"access: {access}")
    if rng.random() < 0.4:
        lines.append(f"aliases: [{rng.choice(NAMES)}]")
    if rng.random() < 0.3:
        lines.append(f"title: {rng.choice(NAMES)}")
    if rng.random() < 0.3:
        lines.append(f"tags: [{rng.choice(TAGS)}]")
    head = ("---\n" + "\n".join(lines) + "\n---\n") if lines else ""
    return f"{head}# {key} v{n}\n\nquokka {n} {rng.choice(LINKS)} {rng.choice(LINKS)}\n".encode()


def _views(load_search_app: Any, store: str) -> dict[Any, Any]:
    """What each caller (no key: public; a key of each group) is answered over the index at ``store``: a search's
    hits with their links, each key's read by path (status, links, error) and the catalog."""
    mapping = {"api_keys": {g: {"name": g, "groups": [g]} for g in GROUPS}}
    app = load_search_app(QDRANT_PATH=store, KB_SOURCE=f"s3://{BUCKET}/{PREFIX}", ACCESS_GROUPS=json.dumps(mapping))
    out: dict[Any, Any] = {}
    try:
        for caller in (None, *GROUPS):

            def call(event: dict[str, Any], caller: str | None = caller) -> tuple[int, dict[str, Any]]:
                if caller:
                    event["requestContext"]["identity"]["apiKeyId"] = caller
                result = app.module.lambda_handler(event, LambdaContext("kb-search-test-search", 1536, 28))
                return result["statusCode"], json.loads(result["body"])

            raw = json.dumps({"query": "quokka", "top_k": 20, "rerank": False, "expand": False}).encode()
            status, body = call(build_event(HttpRequest("POST", "/search", "", [("Content-Type", "application/json")],
                                                        raw), "/search", {}, "dev", "key"))  # fmt: skip
            hits = sorted((h["path"], h["title"], tuple(h["links"]), tuple(h["tags"])) for h in body.get("results", []))
            out[(caller, "search")] = (status, hits)
            for key in KEYS:
                path = quote(unicodedata.normalize("NFC", key))
                status, body = call(build_event(HttpRequest("GET", "/notes/" + path, "", [], b""), "/notes/{path+}",
                                                {"path": path}, "dev", "key"))  # fmt: skip
                out[(caller, key)] = (status, body.get("title"), body.get("links"), body.get("error"))
            out[(caller, "catalog")] = call(build_event(HttpRequest("GET", "/notes", "", [], b""), "/notes", {}, "dev",
                                                        "key"))  # fmt: skip
    finally:
        app.module.api.container.close()
    return out


@pytest.mark.parametrize("seed", [33])
def test_events_over_look_alike_notes_answer_every_caller_as_a_full_sync_does(
    seed: int, aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_search_app: Any
) -> None:
    """Batches of S3 events over notes that differ only in case or Unicode form, a folder rule written in another
    case, access rules put and deleted, notes made restricted and public again by their frontmatter, titles,
    aliases and tags that collide when case-folded (a restricted ``Secret`` beside a public ``secret``), links to
    each: every record delivered once or twice, the batch shuffled, a message failed sent again. After each batch
    the index holds what a clean full sync of the bucket builds, and every caller (public, each group) is answered
    alike by both: its search hits and their links and tags, each read by path (status, links, the 404), the
    catalog. Held (round 33: 18 seeds of 8 batches); kept as the guard of the class. A collection an event batch
    created, before any full sync, is not compared: it records no restricted link targets, so restricted callers
    see no hit's links until the first full sync (by design: ``visible_links`` hides every link rather than guess)."""
    rng = random.Random(seed)
    indexer = Indexer(monkeypatch, tmp_path, None)
    aws.put(PREFIX + "pub/Welcome.md", b"# Welcome\n\nquokka welcome\n")
    aws.receive()
    first = indexer.settings()
    assert run_sync(first, Secrets(first)).error is None
    present = {"pub/Welcome.md"}
    n = 0
    for step in range(6):
        done: list[tuple[str, ...]] = []
        for _ in range(rng.randint(1, 4)):
            n += 1
            if rng.random() < 0.15:
                rules = rng.choice(RULES)
                if rules:
                    aws.put(PREFIX + "_access.yaml", rules.encode())
                else:
                    aws.delete(PREFIX + "_access.yaml")
                done.append(("rules", rules))
            elif rng.random() < 0.25 and present:
                key = rng.choice(sorted(present))
                aws.delete(PREFIX + key)
                present.discard(key)
                done.append(("delete", key))
            else:
                key, text = rng.choice(KEYS), _note(rng, rng.choice(KEYS), n)
                aws.put(PREFIX + key, text)
                present.add(key)
                done.append(("put", key, text.decode()))
        records = aws.receive()
        records += rng.sample(records, k=len(records) // 2)
        rng.shuffle(records)
        if not records:
            continue
        failed = indexer(records)
        if failed:  # SQS sends a failed message again
            assert indexer([r for r in records if r["messageId"] in failed]) == [], done
        assert points(indexer.settings()) == clean_full_sync(indexer, tmp_path), (step, done)
        full = tmp_path / f"full-{step}"
        settings = indexer.settings(qdrant_path=str(full))
        assert run_sync(settings, Secrets(settings)).error is None
        by_events, by_sync = _views(load_search_app, str(indexer.store)), _views(load_search_app, str(full))
        differ = {k: (by_events[k], by_sync[k]) for k in by_events if by_events[k] != by_sync[k]}
        assert not differ, (step, done, differ)


def test_a_folder_handed_to_a_read_by_path_is_named_a_folder_to_whoever_may_read_a_note_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_search_app: Any
) -> None:
    """``GET /notes`` and ``kb_list`` list a KB's folders (``ru/ранбуки``); handed to a read by path (``GET
    /notes/{path}``, ``kb_get_note``), with or without its trailing '/', the 400 said ``path has an empty segment
    ('//')`` or ``no note is named 'ru/ранбуки'``: neither that it is a folder nor how to see its notes. Now it
    names the folder and how many notes the caller may read in it, and how to list them; a folder of notes the
    caller may not read (``hr/`` to a public key) is answered word for word as a folder that is not there."""
    from tests.integration.test_adv25 import _served as served
    from tests.integration.test_hostile_notes import mcp_event

    monkeypatch.setenv("ACCESS_GROUPS", json.dumps({"api_keys": {"hr-key": {"name": "hr", "groups": ["hr"]}}}))
    notes = {"_access.yaml": "hr/: [hr]\n", "ru/ранбуки/Откат.md": "# Откат\n\nquokka\n",
             "ru/ранбуки/Бэкап.md": "# Бэкап\n\nquokka\n", "hr/Pay.md": "# Pay\n\nquokka\n", "Top.md": "# Top\n\nx\n"}  # fmt: skip
    app, _ = served(tmp_path, load_search_app, notes)

    def rest(path: str, key: str | None) -> tuple[int, str]:
        event = build_event(HttpRequest("GET", "/notes/" + quote(path), "", [], b""), "/notes/{path+}",
                            {"path": quote(path)}, "dev", "key")  # fmt: skip
        if key:
            event["requestContext"]["identity"]["apiKeyId"] = key
        result = app(event)
        return result["statusCode"], str(json.loads(result["body"]).get("message", ""))

    def tool(path: str) -> str:
        result = json.loads(app(mcp_event("kb_get_note", {"path": path}))["body"])["result"]
        assert result["isError"], result
        return str(result["content"][0]["text"])

    for path in ("ru/ранбуки", "ru/ранбуки/", "ru/"):
        status, message = rest(path, None)
        assert status == 400 and "is a folder of 2 notes" in message and "path_prefix 'ru" in message, message
        assert "is a folder of 2 notes" in tool(path), path
    status, message = rest("hr/", "hr-key")
    assert status == 400 and "'hr' is a folder of 1 note:" in message, message
    # to a caller who may read no note in it, as a folder that is not there (with and without the '/')
    for restricted, absent in (("hr/", "zz/"), ("hr", "zz")):
        assert rest(restricted, None) == (400, rest(absent, None)[1].replace("zz", "hr")), restricted
        assert "is a folder of" not in rest(restricted, None)[1]
    assert "path ends with '/': a folder, not a note" in rest("zz/", None)[1]  # it was "empty segment ('//')"
    assert "empty segment ('//')" in rest("ru//Top.md", None)[1]
    # a note's path is read as before
    assert rest("ru/ранбуки/Откат.md", None)[0] == 200


@pytest.mark.parametrize("copy", ["_access (1).yaml", "_access copy.yaml", "_access copy 2.yaml", "_access 2.yaml",
                                  "_access-2.yml"])  # fmt: skip
@pytest.mark.parametrize("where", ["folder", "s3"])
def test_a_copy_of_the_access_file_at_the_root_stops_the_sync_naming_it(tmp_path: Path, copy: str, where: str) -> None:
    """The access file downloaded to edit it beside an older download comes back ``_access (1).yaml`` (a browser,
    Windows), or is duplicated in Finder as ``_access copy.yaml`` / ``_access 2.yaml``; uploaded to the KB root,
    the copy held the rules meant (``hr/: [hr]``) and was an attachment: the sync ran on the old ``_access.yaml``
    and indexed ``hr/`` public, nothing said. Such a name now stops the sync naming it, as ``_access.yml`` does (round
    20); another word (``_accessibility.yaml``) and a backup (``_access.yaml.bak``) stay attachments."""
    from kbsearch.access import Scope
    from kbsearch.config import Settings
    from tests.integration.test_access_index import sync_from, visible, write_kb

    root = tmp_path / "kb"
    write_kb(root, {"hr/Pay.md": "# Pay\nwelcome salary bands\n", "pub/Hello.md": "# Hello\nwelcome all\n"}, None)
    (root / "_access.yaml").write_text("ops/: [ops]\n", encoding="utf-8")  # the rules before the edit
    for other in ("_accessibility.yaml", "_access.yaml.bak"):
        (root / other).write_text("hr/: [hr]\n", encoding="utf-8")
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    report = sync_from(root, settings, where)
    assert report.error is None and report.added == 2  # the guard: neither other name is the access file
    (root / copy).write_text("ops/: [ops]\nhr/: [hr]\n", encoding="utf-8")  # the edit, uploaded as a copy
    report = sync_from(root, settings, where)
    assert report.error is not None and report.error.startswith(f"{copy!r} looks like the access file"), report.error
    (root / copy).replace(root / "_access.yaml")
    report = sync_from(root, settings, where)
    assert report.error is None and visible(settings, Scope.public()) == ["pub/Hello.md"]


#: A folder drawn ``hr`` that is not ``hr``: the letters then a character no font draws (a default-ignorable code
#: point that is no format character, which round 15 already read through).
UNSEEN_HR = {"vs16": "hr\ufe0f", "cgj": "hr\u034f", "hangul-filler": "hr\u3164", "halfwidth-filler": "hr\uffa0",
             "choseong-filler": "hr\u115f", "vs17": "hr\U000e0100", "zwsp": "hr\u200b"}  # fmt: skip


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_a_folder_drawn_as_a_rules_folder_is_under_its_rule(tmp_path: Path, where: str) -> None:
    """``_access.yaml`` gives ``hr/`` to ``hr``; a folder whose name is ``hr`` then a variation selector, a combining
    grapheme joiner or a Hangul filler is drawn ``hr`` in the S3 console, Finder and Obsidian, and its notes were
    indexed public: the rules dropped the format characters only (``hr\\u200b``, round 15, held and kept here). Now
    every default-ignorable character is dropped as the rules compare folders: those notes are ``hr``'s; a folder
    that reads otherwise (``hŕ``) stays public."""
    from kbsearch.access import Scope
    from kbsearch.config import Settings
    from tests.integration.test_access_index import sync_from, visible, write_kb

    notes = {f"{folder}/{name}.md": f"# {name}\nwelcome {name}\n" for name, folder in UNSEEN_HR.items()}
    notes |= {"hr/Pay.md": "# Pay\nwelcome pay\n", "h\u0155/Other.md": "# Other\nwelcome other\n"}
    root = tmp_path / "kb"
    write_kb(root, notes, None)
    (root / "_access.yaml").write_text("hr/: [hr]\n", encoding="utf-8")
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    report = sync_from(root, settings, where)
    assert report.error is None and report.added == len(notes), report
    assert visible(settings, Scope.public()) == ["h\u0155/Other.md"]
    assert len(visible(settings, Scope.of("k", ["hr"]))) == len(notes)


@pytest.mark.parametrize("key", ["access\u3164", "\uffa0access", "acc\u115fess"], ids=["u3164", "uffa0", "u115f"])
def test_an_access_key_holding_a_hangul_filler_never_makes_its_note_public(tmp_path: Path, key: str) -> None:
    """A frontmatter key drawn ``access`` but holding a Hangul filler (a letter of category Lo that no font draws)
    was no declaration: the note, meant for ``hr``, was indexed public. Such a key now reads as the look-alike
    spellings do (a variation selector or a zero-width space already did): the note is skipped naming the key."""
    from kbsearch.access import Scope
    from kbsearch.config import Settings
    from tests.integration.test_access_index import sync_from, visible, write_kb

    root = tmp_path / "kb"
    write_kb(
        root, {"hr/Pay.md": f"---\n{key}: [hr]\n---\n# Pay\nwelcome pay\n", "Hello.md": "# Hello\nwelcome\n"}, None
    )
    settings = Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    report = sync_from(root, settings, "folder")
    assert [s["path"] for s in report.skipped] == ["hr/Pay.md"], report.skipped
    assert "looks like 'access'" in report.skipped[0]["reason"], report.skipped
    assert visible(settings, Scope.public()) == ["Hello.md"]
