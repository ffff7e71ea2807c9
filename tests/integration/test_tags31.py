"""Round 31: tags as Obsidian reads them (tags31). Obsidian's tags are case-insensitive (``#tag`` and ``#TAG`` are one
tag), nested (``tag:inbox`` finds ``#inbox/to-read``) and written in the text as well as in ``tags:`` (the vault's
``Editing and formatting/Tags.md``). kb-search stored the frontmatter's tags as written and filtered by exact value.
Through the real interfaces: notes indexed into the embedded store, searched through API Gateway events (REST POST
and GET, MCP's kb_search), ``kbsearch search`` spawned; a loopback Qdrant Cloud in strict mode. Each test fails on
main's code unless said otherwise."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import SyncReport, run_sync
from kbsearch.qdrant import open_store
from kbsearch_tools.fakes import FakeProvider
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, provider_settings, subprocess_env
from tests.integration.test_first_value_indexes import rest
from tests.integration.test_hostile_notes import mcp_event
from tests.integration.test_notes_graph import write_kb

#: RELIABILITY.md's round 30 KB, and the classes of ``tags`` YAML gives (each note says "quokka")
KB = {
    "alpha.md": "---\ntags: [project/alpha, Project/Beta]\n---\n# Alpha\n\nquokka alpha\n",
    "plain.md": "---\ntags: [project]\n---\n# Plain\n\nquokka plain\n",
    "gamma.md": "# Gamma\n\nquokka gamma #project/gamma, in the text\n",
    "street.md": "---\ntags: Straße\n---\n# Street\n\nquokka street\n",
    "istanbul.md": "---\ntags: '#İstanbul, travel'\n---\n# Istanbul\n\nquokka istanbul\n",
    "ru.md": "---\ntags:\n  - Проект/Альфа\n---\n# Проект\n\nquokka проект\n",
    "number.md": "---\ntags: 2024\n---\n# Number\n\nquokka number\n",
    "bool.md": "---\ntags: [yes, no]\n---\n# Bool\n\nquokka bool\n",
    "date.md": "---\ntags: 2026-01-02\n---\n# Date\n\nquokka date\n",
    "null.md": "---\ntags:\n---\n# Null\n\nquokka null #Empty-Front\n",
    "nested.md": "---\ntags: [[a, b], ok]\n---\n# Nested\n\nquokka nested\n",
    "mapping.md": "---\ntags: {ops: 1}\n---\n# Mapping\n\nquokka mapping\n",
    "long.md": "---\ntags: ["
    + "/".join(f"l{i}" for i in range(40))
    + ", "
    + "x" * 3000
    + "]\n---\n# Long\n\nquokka long\n",
    "code.md": "# Code\n\nquokka code `#inspan` [[Note#Heading]] https://example.com/page#fragment C# &#35;x #1984\n\n"
    "```\n#incode\n```\n\n%% #hidden %%\n<!-- #commented -->\n\n#y1984 and #Emoji🎉.\n",
}
#: a filter (as a caller types it) → the notes it finds
FOUND: dict[str, set[str]] = {
    "project": {"alpha.md", "plain.md", "gamma.md"},
    "Project": {"alpha.md", "plain.md", "gamma.md"},
    "#PROJECT": {"alpha.md", "plain.md", "gamma.md"},
    "project/beta": {"alpha.md"},
    "project/ALPHA": {"alpha.md"},
    "project/gamma": {"gamma.md"},
    "project/": {"alpha.md", "plain.md", "gamma.md"},
    "proj": set(),  # a parent is a whole level, not a prefix of one
    "alpha": set(),  # nor a level of another tag
    "STRASSE": {"street.md"},  # case-folded: ß is ss, as Unicode folds it
    "strasse": {"street.md"},
    "istanbul": {"istanbul.md"},  # the dotted capital I folds to i
    "İSTANBUL": {"istanbul.md"},
    "Travel": {"istanbul.md"},
    "проект": {"ru.md"},
    "ПРОЕКТ/альфа": {"ru.md"},
    "2024": {"number.md"},
    "yes": {"bool.md"},
    "NO": {"bool.md"},
    "2026-01-02": {"date.md"},
    "empty-front": {"null.md"},
    "ok": {"nested.md"},
    "l0": {"long.md"},
    "L0/l1/l2": {"long.md"},
    "/".join(f"l{i}" for i in range(40)): {"long.md"},  # the whole tag, deeper than the parents kept
    "x" * 3000: {"long.md"},
    "X" * 3000: {"long.md"},
    "y1984": {"code.md"},
    "emoji🎉": {"code.md"},
    "inspan": set(),
    "incode": set(),
    "hidden": set(),
    "commented": set(),
    "heading": set(),
    "fragment": set(),
    "1984": set(),
}


def settings_of(tmp_path: Path, folder: Path) -> Settings:
    return Settings(qdrant_path=str(tmp_path / "q"), qdrant_url="", embedding_api_key=None,
                    embedding_api_key_param="", kb_source=str(folder))  # fmt: skip


def found(call: Callable[[dict[str, Any]], Any], tags: list[str]) -> set[str]:
    """The notes a search for quokka with these tags finds, the same through POST and GET /search and kb_search."""
    body = {"query": "quokka", "top_k": 20, "rerank": False, "expand": False, "filters": {"tags": tags}}
    posted = {h["path"] for h in rest(call, "POST", "/search", body=body)["results"]}
    query = urlencode({"q": "quokka", "top_k": 20, "rerank": "false", "expand": "false", "tags": tags}, doseq=True)
    got = {h["path"] for h in rest(call, "GET", "/search", query)["results"]}
    answer = call(mcp_event("kb_search", {"query": "quokka", "top_k": 20, "tags": tags}))
    result = json.loads(answer["body"])["result"]
    assert answer["statusCode"] == 200 and not result.get("isError"), result
    tool = {h["path"] for h in result["structuredContent"]["results"]}
    assert posted == got == tool, (tags, posted, got, tool)
    return posted


def test_a_tag_filter_finds_notes_as_obsidian_does_on_every_surface(tmp_path: Path, load_search_app: Any) -> None:
    """On RELIABILITY.md's KB (round 30's "Found, left"): `--tag project` found only the note tagged `project`,
    `project/beta` and `project/gamma` nothing. Now a filter matches a note's tag whatever its case (Unicode's
    folding: `Straße` is `STRASSE`, `İstanbul` is `istanbul`, `Проект` is `проект`), its parents (`project` finds
    `project/alpha`), and the tags written in its text (`#project/gamma`; not in code, a comment, a URL's fragment, a
    wiki-link's heading, nor `#1984`). Every class of `tags` YAML gives is indexed (none skipped), the tags shown as
    written. Several tags: a note with any of them, as the API said."""
    folder = write_kb(tmp_path / "kb", KB)
    report = run_sync(settings_of(tmp_path, folder), Secrets(settings_of(tmp_path, folder)), source_uri=str(folder))
    assert report.error is None and not report.skipped and report.added == len(KB), report
    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(folder))
    try:
        everything = found(call, [])
        assert everything == set(KB), everything
        misses = {tag: (got, want) for tag, want in FOUND.items() if (got := found(call, [tag])) != want}
        assert misses == {}, misses
        assert found(call, ["project/beta", "проект"]) == {"alpha.md", "ru.md"}  # any of them
        body = {"query": "quokka", "top_k": 20, "rerank": False, "expand": False}
        shown = {h["path"]: h["tags"] for h in rest(call, "POST", "/search", body=body)["results"]}
        assert shown["alpha.md"] == ["project/alpha", "Project/Beta"]  # as written
        assert shown["gamma.md"] == ["project/gamma"] and shown["street.md"] == ["Straße"]
        assert shown["istanbul.md"] == ["İstanbul", "travel"] and shown["null.md"] == ["Empty-Front"]
        assert shown["code.md"] == ["y1984", "Emoji🎉"], shown["code.md"]
        catalog = {f["value"] for f in rest(call, "GET", "/notes")["tags"]}  # kb_list's tags: the text's too
        assert {"project/gamma", "Empty-Front", "y1984"} <= catalog, catalog
    finally:
        call.module.api.container.close()


def test_slack_tag_filter_finds_as_obsidian_does(tmp_path: Path, load_search_app: Any) -> None:
    """`/kb tag:PROJECT/beta quokka` (Slack's filters are the search's): the note tagged `Project/Beta` is the
    answer, and `tag:project` finds the note whose `#project/gamma` is in its text."""
    from kbsearch_tools.fakes import FakeEndpoint
    from tests.integration.test_slack_interactive import SECRET, command_body, signed_event, wait_for

    folder = write_kb(tmp_path / "kb", {k: KB[k] for k in ("alpha.md", "plain.md", "gamma.md")})
    report = run_sync(settings_of(tmp_path, folder), Secrets(settings_of(tmp_path, folder)), source_uri=str(folder))
    assert report.error is None and report.added == 3, report
    hook = FakeEndpoint().start()
    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"), SLACK_SIGNING_SECRET=SECRET,
                           SLACK_RESPONSE_HOSTS="127.0.0.1", SLACK_TOP_K="5")  # fmt: skip
    try:
        for text, want, unwanted in (("tag:PROJECT/beta quokka", "alpha.md", ("plain.md", "gamma.md")),
                                     ("tag:project quokka", "gamma.md", ())):  # fmt: skip
            before = len(hook.requests)
            event = signed_event("/slack/command", command_body(text, hook.url + "/r", trigger=text))
            assert call(event)["statusCode"] == 200
            answer = json.dumps(wait_for(hook, before + 1)[-1], ensure_ascii=False)
            assert want in answer and not any(u in answer for u in unwanted), (text, answer)
    finally:
        hook.stop()
        call.module.api.container.close()


def kbsearch(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, env=subprocess_env(**env),
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip


def test_kbsearch_search_tag_finds_as_obsidian_does_and_names_no_tag_a_note_holds_as_missing(tmp_path: Path) -> None:
    """`kbsearch search quokka --tag project/beta` (the brief's case) found nothing; and a search of no hits said
    "no note has the tag 'PROJECT' (--tag): did you mean 'project'?" of a tag notes hold. `--help` says the meaning."""
    folder = write_kb(tmp_path / "kb", {k: KB[k] for k in ("alpha.md", "plain.md", "gamma.md")})
    store = str(tmp_path / "q")
    assert kbsearch("index", str(folder), QDRANT_PATH=store).returncode == 0
    for tag, want in (("project", ["alpha.md", "gamma.md", "plain.md"]), ("project/beta", ["alpha.md"]),
                      ("Project/Gamma", ["gamma.md"])):  # fmt: skip
        shown = kbsearch("search", "quokka", "--tag", tag, "--json", "--top-k", "10", QDRANT_PATH=store)
        assert shown.returncode == 0, shown.stderr
        assert sorted(h["path"] for h in json.loads(shown.stdout)["results"]) == want, (tag, shown.stdout)
    none = kbsearch("search", "zzzzqx", "--tag", "PROJECT/alpha", QDRANT_PATH=store)
    assert none.returncode == 0 and none.stdout.splitlines()[1:] == [], none.stdout  # a tag notes hold: nothing said
    typo = kbsearch("search", "zzzzqx", "--tag", "projcet", QDRANT_PATH=store)
    assert "no note has the tag 'projcet' (--tag)" in typo.stdout, typo.stdout
    helped = kbsearch("search", "--help")
    assert "whatever the case, nested tags too" in " ".join(helped.stdout.split()), helped.stdout


def test_notes_indexed_before_tag_keys_match_as_before_then_are_rewritten_without_embedding(tmp_path: Path) -> None:
    """A store written before round 31 (no `tag_keys`, no index of it, the text's tags not in `tags`): a search by
    this code matches its notes as before (by `tags` as written), and the next `kbsearch index` (any sync) rewrites
    each note's payload (its text unchanged: nothing embedded again), after which the filters find as Obsidian
    does; the sync after that finds every note unchanged."""
    import qdrant_edge as edge

    from kbsearch.qdrant.embedded import EdgeStore
    from kbsearch.schemas import SearchRequest
    from kbsearch.search import SearchService

    folder = write_kb(tmp_path / "kb", {k: KB[k] for k in ("alpha.md", "plain.md", "gamma.md")})
    fake = FakeProvider("deepinfra", api_key="di-test-key").start()
    try:
        settings = provider_settings(fake, qdrant_path=str(tmp_path / "q"))

        def sync() -> SyncReport:
            report = run_sync(settings, Secrets(settings), source_uri=str(folder))
            assert report.error is None and not report.skipped, report
            return report

        def search(tag: str) -> set[str]:
            service = SearchService(settings, Secrets(settings))
            try:
                request = SearchRequest.model_validate({"query": "quokka", "top_k": 10, "rerank": False,
                                                        "expand": False, "filters": {"tags": [tag]}})  # fmt: skip
                return {h.path for h in service.search(request).results}
            finally:
                service.close()

        assert sync().added == 3
        store = open_store(settings, Secrets(settings))
        assert isinstance(store, EdgeStore)
        try:  # what a kb-search before round 31 wrote
            ids: list[Any] = [int(i) if i.isdigit() else i for i in store.points()]
            store.shard.update(edge.UpdateOperation.delete_payload(ids, ["tag_keys"]))
            store.shard.update(edge.UpdateOperation.delete_field_index("tag_keys"))
            store.set_payload("gamma.md", {"tags": []})
            store._written = True
        finally:
            store.close()
        assert search("project") == {"plain.md"} and search("project/alpha") == {"alpha.md"}  # as before
        assert search("project/beta") == set()
        embedded = len(fake.calls("embeddings"))
        report = sync()
        assert report.updated == 3 and len(fake.calls("embeddings")) == embedded, report
        assert search("project") == {"alpha.md", "plain.md", "gamma.md"} and search("PROJECT/BETA") == {"alpha.md"}
        again = sync()
        assert again.unchanged == 3 and again.updated == 0, again
    finally:
        fake.stop()


def test_a_tag_filter_on_a_qdrant_cloud_collection_without_the_tag_keys_index_is_not_refused(
    tmp_path: Path, load_search_app: Any
) -> None:
    """Between a deploy and the indexer's first run after it, the collection has no `tag_keys` index, and Qdrant
    Cloud in strict mode refuses a filter on a field without one: the search then matches `tags` alone (as before);
    after the indexer's run (which creates the index) the filter names `tag_keys`, indexed. Main's code never names
    `tag_keys` (it fails at the first check, no such index made): this guards this change's own risk."""
    from tests.integration.test_adv26 import StrictQdrant
    from tests.integration.test_hostile_notes import collection_info

    folder = write_kb(tmp_path / "kb", {k: KB[k] for k in ("alpha.md", "plain.md")})
    strict = StrictQdrant(collection_info(tmp_path / "schema", embedding_dimensions=32))
    try:
        cloud = Settings(qdrant_url=strict.url, qdrant_api_key="k", embedding_dimensions=32,
                         embedding_api_key=None, embedding_api_key_param="")  # fmt: skip
        assert run_sync(cloud, Secrets(cloud), source_uri=str(folder), full=True).error is None
        assert "tag_keys" in strict.indexed
        strict.indexed.discard("tag_keys")  # the collection as a version before round 31 made it
        body = {"query": "quokka", "top_k": 5, "rerank": False, "expand": False, "filters": {"tags": ["project"]}}
        app = load_search_app(QDRANT_URL=strict.url, QDRANT_API_KEY="k", KB_SOURCE=str(folder),
                              EMBEDDING_DIMENSIONS="32", EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM="")  # fmt: skip
        rest(app, "POST", "/search", body=body)
        assert strict.refused == [] and "tag_keys" not in strict.asked, strict.refused
        app.module.api.container.close()
        assert run_sync(cloud, Secrets(cloud), source_uri=str(folder), full=True).error is None
        assert "tag_keys" in strict.indexed
        app = load_search_app(QDRANT_URL=strict.url, QDRANT_API_KEY="k", KB_SOURCE=str(folder),
                              EMBEDDING_DIMENSIONS="32", EMBEDDING_API_KEY="", EMBEDDING_API_KEY_PARAM="")  # fmt: skip
        rest(app, "POST", "/search", body=body)
        assert strict.refused == [] and "tag_keys" in strict.asked, strict.refused
    finally:
        strict.stop()


@pytest.mark.parametrize(
    ("body", "tags"),
    [
        ("#ops and #Ops/db, #DB.", ["ops", "Ops/db", "DB"]),
        ("# Heading\n#top at the start\nmid#word x#y", ["top"]),
        ("a [link](#anchor) and [[Note#Part]] and <https://x.org/#frag>", []),
        ("``#span`` `#one` #after", ["after"]),
        ("~~~\n#fenced\n~~~\n#out", ["out"]),
        ("%%\n#hidden\n%%\n#shown", ["shown"]),
        ("#1984 #2024/01 #y1984 #_ #-", ["y1984", "_", "-"]),
        ("#a/b/ #x!y #дом? #家", ["a/b", "x", "дом", "家"]),
        ("#Tag, #TAG and #tag/sub #Tag", ["Tag", "tag/sub"]),  # one tag whatever the case: as first written
        ("> ```css\n> a { color: #ff0000; }\n> ```\n> #quoted", ["quoted"]),  # a code block in a quote
    ],
)
def test_the_tags_written_in_a_notes_text_as_obsidian_reads_them(body: str, tags: list[str]) -> None:
    """Obsidian's rules for a tag in the text (the vault's Tags page): `#` at a line's start or after a space, then
    letters, digits, `_`, `-`, `/` and other non-punctuation (emoji, CJK), at least one no digit; not a heading's
    `# `, not in code (spans, fences), a comment, a link's `#fragment`, `[[Note#Heading]]`. Read by the parser the
    indexer runs (main's had no tags from the text: every case with one fails there)."""
    from kbsearch.notes import parse_note

    assert parse_note("n.md", body.encode()).tags == tags
