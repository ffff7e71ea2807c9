"""Round 32: reliability debts left by round 31 (RELIABILITY "Round 32: debts (rel32)"), through the real interfaces:
the indexer handler on moto's S3 (its events and full syncs), the search handler on API Gateway events against a
loopback Qdrant Cloud serving the store the indexer writes (test_rel31's `cloud_env`), MCP over its transports,
`kbsearch` spawned. Each test fails on main's code (`PYTHONPATH=/work/main/layers/kbsearch:/work/main/tools`) unless
said otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Secrets
from kbsearch.indexer import run_sync
from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.s3events import EventPath
from tests.conftest import PROCESS_TIMEOUT_S, subprocess_env
from tests.integration import test_events
from tests.integration.test_events import BUCKET, PREFIX
from tests.integration.test_first_value_indexes import mcp, rest
from tests.integration.test_notes_graph import write_kb
from tests.integration.test_rel31 import _as, aws, cloud_env  # noqa: F401 (fixtures)
from tests.integration.test_tags31 import found, settings_of
from tests.integration.test_walk30 import _STAND_IN_MODEL, INITIALIZE
from tests.integration.test_walk31 import _cached, _oracle_kb

SECRET = b"---\naccess: [hr]\n---\n# Secret\n\nhidden\n"


CALLERS = json.dumps({"api_keys": {"id-pub": ["public"], "id-hr": ["hr"]}})


@dataclass
class Deployed:
    """The indexer handler on moto's S3 writing the store a loopback Qdrant Cloud serves, and search containers."""

    aws: EventPath
    indexer: test_events.Indexer
    endpoint: FakeEndpoint
    load_search_app: Any

    def search_app(self) -> Any:
        """A new search container (its metadata cache empty)."""
        return self.load_search_app(KB_SOURCE=f"s3://{BUCKET}/{PREFIX}", QDRANT_URL=self.endpoint.url,
                                    QDRANT_API_KEY="qk", ACCESS_GROUPS=CALLERS)  # fmt: skip

    def synced(self, by: str) -> None:
        """The bucket's last changes indexed by their S3 events (no batch item failed), or by the scheduled sync
        (the listing diffed against the index) after the events were lost."""
        if by == "event":
            assert self.indexer(self.aws.receive()) == []
            return
        self.aws.receive()  # the events lost
        report = self.indexer.app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 900))
        assert not report.get("error"), report

    def holding(self, notes: dict[str, bytes]) -> Any:
        """The bucket holds these notes, indexed by the scheduled sync (which records the link targets); a warm
        search container that has answered once."""
        self.aws.receive()
        for name, body in notes.items():
            self.aws.put(f"{PREFIX}{name}", body)
        self.synced("full sync")
        return self.search_app()


@pytest.fixture
def deployed(
    aws: EventPath,  # noqa: F811
    cloud_env: tuple[test_events.Indexer, FakeEndpoint],  # noqa: F811
    load_search_app: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Deployed:
    monkeypatch.setenv("ACCESS_GROUPS", CALLERS)  # the indexer's caller mapping is the search's from the start
    indexer, endpoint = cloud_env
    return Deployed(aws, indexer, endpoint, load_search_app)


# -- 1: links to no note, and links by a title, follow a change at a warm search Lambda's next request -------------


@pytest.mark.parametrize("by", ["event", "full sync"])
def test_a_first_restricted_note_hides_links_to_no_note_at_a_warm_search_lambdas_next_request(
    by: str, deployed: Deployed
) -> None:
    """rel31's "Left": whether a link naming no note is shown depends on whether the caller is hidden a note at all
    (else a hidden link would tell a restricted note from a missing one). With no restricted note, the public caller
    sees Welcome's `[[Nowhere]]`; once `Secret.md` (hr) is indexed, a warm search container kept showing it for its
    cached minute (Welcome names no changed key, so it got no new generation), while the links to Secret itself were
    hidden: a link hidden beside one shown told that it names a restricted note. Now a change of the restricted
    notes' group sets gives the notes holding a link to no note the new generation too."""
    app = deployed.holding({"pub/Welcome.md": b"# Welcome\n\nwelcome zebra: read [[Nowhere]].\n"})
    assert _as(app, "id-pub") == (["Nowhere"], ["Nowhere"])
    deployed.aws.put(f"{PREFIX}Secret.md", SECRET)
    deployed.synced(by)
    assert _as(app, "id-pub") == ([], [])
    assert _as(app, "id-hr") == (["Nowhere"], ["Nowhere"])  # hr is hidden no note: links to no note are shown


@pytest.mark.parametrize("by", ["event", "full sync"])
def test_a_created_public_note_shows_the_links_to_it_at_a_warm_search_lambdas_next_request(
    by: str, deployed: Deployed
) -> None:
    """rel31's "Left": a link to a note not written yet is hidden from a caller hidden a note (as any link to no
    note); once the note is created public it names a note the caller reads. Synced by its S3 event, the notes
    linking it got the new generation already (passes on main); synced by a full sync (the event lost), they did
    not, and a warm search container kept hiding the link for its cached minute (fails on main). Now a full sync
    counts a public note new to the recorded filter as a changed key, as an event batch did."""
    app = deployed.holding({"pub/Welcome.md": b"# Welcome\n\nwelcome zebra: read [[Later]].\n", "Secret.md": SECRET})
    assert _as(app, "id-pub") == ([], [])
    deployed.aws.put(f"{PREFIX}Later.md", b"# Later\n\nwritten later\n")
    deployed.synced(by)
    assert _as(app, "id-pub") == (["Later"], [])  # resolved in the graph: a note the caller reads


@pytest.mark.parametrize("change", ["deleted", "renamed"])
@pytest.mark.parametrize("link", ["The Blueprint", "Draft Plan"], ids=["title", "alias"])
def test_a_link_by_a_name_a_public_note_no_longer_has_after_the_scheduled_sync_is_hidden_at_once(
    link: str, change: str, deployed: Deployed
) -> None:
    """rel31's "Left": a public note the scheduled sync finds deleted (its event lost) was known by its path keys
    only, so a note linking it by its title or an alias got no new generation, and a warm search container showed
    that link (to no note now) for its cached minute to a caller hidden a note; likewise a note the sync rewrote
    with another title and aliases. Now the scheduled sync reads the title and alias keys of the notes it deletes or
    rewrites before it does (an event batch read them already)."""
    plan = b"---\ntitle: The Blueprint\naliases: [Draft Plan]\n---\n# Plan body\n\nthe plan\n"
    welcome = f"# Welcome\n\nwelcome zebra: read [[{link}]].\n".encode()
    app = deployed.holding({"pub/Welcome.md": welcome, "ops/plan.md": plan, "Secret.md": SECRET})
    assert _as(app, "id-pub") == ([link], [])
    if change == "deleted":
        deployed.aws.delete(f"{PREFIX}ops/plan.md")
    else:
        deployed.aws.put(f"{PREFIX}ops/plan.md", b"---\ntitle: Roadmap\naliases: [Later Plan]\n---\n# Plan\n\nplan\n")
    deployed.synced("full sync")
    assert _as(app, "id-pub") == ([], [])
    assert _as(deployed.search_app(), "id-pub") == ([], [])  # a new container alike


def test_a_sync_stopped_between_its_stamps_and_its_record_is_healed_by_the_next_full_sync(deployed: Deployed) -> None:
    """rel31's "Left": a sync that gave the notes linking a key it changed a new generation, then stopped before it
    recorded the targets (the process killed, the store gone), left those notes above the record: searches hid
    their links from restricted callers (the safe way: the record may be stale for them) until a later run recorded
    a generation above them. A full sync that changed nothing agreed with the record and wrote nothing, so the links
    stayed hidden until some other change, in every container. Now the sync says the generation it is about to give
    (`access_links_pending`) before it gives it; a later writer finding it above the record records it (the record
    it derives from the index is right by then), a full sync that changed nothing included. The stopped sync's
    writes are made here as it makes them (its two store writes before the record), as no test can kill a Lambda
    between two calls."""
    from kbsearch.config import Secrets
    from kbsearch.indexer import stamp_links
    from kbsearch.links import link_key
    from kbsearch.qdrant import open_store

    app = deployed.holding({"pub/Welcome.md": b"# Welcome\n\nwelcome zebra: read [[Plan]].\n",
                            "Plan.md": b"---\naccess: [public]\n---\n# Plan\n\nthe plan\n", "Secret.md": SECRET})  # fmt: skip
    assert _as(app, "id-pub")[0] == ["Plan"]
    settings = deployed.indexer.settings(qdrant_embedded="local", qdrant_url="")  # the store, as the indexer opens it
    store = open_store(settings, Secrets(settings))
    try:
        generation = int(time.time() * 1000) + 1
        store.merge_metadata({"access_links_pending": generation})
        stamp_links(store, {str(link_key("Plan"))}, generation, store.metadata())
    finally:
        store.close()
    assert _as(app, "id-pub")[0] == []  # the record may be stale for these links: hidden, not guessed
    assert _as(deployed.search_app(), "id-pub")[0] == []
    report = deployed.indexer.app.lambda_handler({}, LambdaContext("kb-search-test-indexer", 2048, 900))
    assert (report["added"], report["updated"], report["deleted"], report["error"]) == (0, 0, 0, None), report
    assert _as(deployed.search_app(), "id-pub")[0] == ["Plan"]
    assert _as(deployed.search_app(), "id-hr")[0] == ["Plan"]


# -- 3: kb_list's tags, one entry a tag as the filter reads it -----------------------------------------------------

#: one tag written four ways (two notes `Tag`, one `TAG`, one `#tag` in its text), a tag nested in it, another tag
TAGGED = {
    "a.md": "---\ntags: [Tag]\n---\n# A\n\nquokka a\n",
    "b.md": "---\ntags: [TAG, ops]\n---\n# B\n\nquokka b\n",
    "c.md": "# C\n\nquokka c #Tag in the text\n",
    "d.md": "---\ntags: [tag/Sub]\n---\n# D\n\nquokka d\n",
    "e.md": "---\ntags: [Ops]\n---\n# E\n\nquokka e\n",
}


def test_kb_list_counts_a_tag_written_several_ways_once_as_its_filter_finds_it(
    tmp_path: Path, load_search_app: Any
) -> None:
    """tags31's "Left" (1): kb_list's (and GET /notes') tags were a facet of the tags as written: `Tag` and `TAG`
    were two entries (counts 2 and 1) while `tags: ["tag"]` finds them as one. Now one entry a tag key, shown as
    most notes write it (`Tag`; `Ops` and `ops` tie: the facet's first), counting the notes its filter finds (its
    nested tags' too, as the filter finds them). Over MCP (kb_list through API Gateway events) and REST alike."""
    folder = write_kb(tmp_path / "kb", TAGGED)
    settings = settings_of(tmp_path, folder)
    report = run_sync(settings, Secrets(settings), source_uri=str(folder))
    assert report.error is None and report.added == len(TAGGED), report
    call = load_search_app(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(folder))
    try:
        listed = {f["value"]: f["count"] for f in mcp(call, "kb_list", {"recent": 0})["tags"]}
        assert {k.casefold() for k in listed} == {"tag", "tag/sub", "ops"}, listed  # one entry a tag
        assert listed["Tag"] == 4 and listed["tag/Sub"] == 1, listed
        assert {k: v for k, v in listed.items() if k.casefold() == "ops"} in ({"ops": 2}, {"Ops": 2}), listed
        for tag, count in listed.items():  # what a filter on the entry finds
            assert len(found(call, [tag])) == count, tag
        assert {f["value"]: f["count"] for f in rest(call, "GET", "/notes")["tags"]} == listed
    finally:
        call.module.api.container.close()


# -- 2: the oracle's cache, one home for every command -------------------------------------------------------------


@pytest.mark.timeout(300)
def test_the_oracles_cache_is_one_file_beside_the_store_that_index_search_and_mcp_share(tmp_path: Path) -> None:
    """rev31b's "Left" (3): the oracle's vectors were cached in `./.kbsearch/oracle` by `kbsearch index`, `serve`,
    `search` (and `eval` not at all), in `QDRANT_PATH/../oracle` by `kbsearch mcp`: with a `QDRANT_PATH` of its own
    the passages `index --oracle` embedded were not the ones `mcp --oracle` found, and a query `search` embedded was
    embedded again by `mcp`. Now one default, beside the store's folder, whatever folder each command runs in:
    `index` (run in the project) fills it, `search` (run elsewhere) adds its query's vector, and `mcp` (an
    assistant's own folder) adds nothing for the same query: no text encoded twice."""
    project, elsewhere, assistant = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "assistant"
    kb = _oracle_kb(project / "kb")
    elsewhere.mkdir()
    assistant.mkdir()
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "data" / "store"))
    cache = tmp_path / "data" / "oracle" / "e5.sqlite"

    def kbsearch(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-c", _STAND_IN_MODEL, *args], input=stdin, capture_output=True,
                              text=True, env=env, cwd=cwd, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    kbsearch(project, "index", "kb", "--oracle", "e5")
    assert cache.is_file(), "index --oracle cached nothing beside the store"
    indexed = _cached(cache)
    searched = kbsearch(elsewhere, "search", "restore the snapshot", "--oracle", "e5", "--no-expand", "--json")
    assert json.loads(searched.stdout)["results"][0]["path"] == "restore.md"
    after_search = _cached(cache)
    assert 0 < after_search - indexed <= 2, "the query's vector, and nothing else, was added"
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "kb_search", "arguments": {"query": "restore the snapshot", "expand": False}}}  # fmt: skip
    mcp = kbsearch(assistant, "mcp", "--kb", str(kb), "--oracle", "e5",
                   stdin=json.dumps(INITIALIZE) + "\n" + json.dumps(call) + "\n")  # fmt: skip
    result = [json.loads(line) for line in mcp.stdout.splitlines()][1]["result"]
    assert not result.get("isError") and result["structuredContent"]["results"][0]["path"] == "restore.md", result
    assert result["structuredContent"]["meta"]["reranker"] == "oracle-e5-biencoder", result
    assert _cached(cache) == after_search, "mcp encoded a text index or search had cached"
    assert not [p for p in (project, elsewhere, assistant) if (p / ".kbsearch").exists()]  # no second cache
