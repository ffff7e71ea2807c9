"""Round 31: reliability debts left by round 30 (RELIABILITY "Round 31: debts (rel31)"), through the real interfaces:
the indexer and search handlers, moto's S3 and its events, the store the tests use for Qdrant Cloud. Each test fails
on main's code before its fix (`PYTHONPATH=/work/main/layers/kbsearch:/work/main/tools`) unless said otherwise."""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch.config import Settings
from kbsearch.qdrant.embedded import open_embedded
from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.apigw import HttpRequest, build_event, parse_result
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.s3events import EventPath
from tests.integration import test_events
from tests.integration.test_adv30 import assert_indexed_and_read
from tests.integration.test_events import BUCKET, PREFIX

aws = test_events.aws  # moto's S3, SQS and the lease table, as the event tests use them

# -- 1: an access change an S3 event syncs, seen by a warm search Lambda on Qdrant Cloud ----------------------------


def qdrant_cloud(settings: Settings) -> FakeEndpoint:
    """A loopback Qdrant Cloud answering the search Lambda's REST calls from the store the indexer handler writes
    (qdrant-client's local mode: UUID point ids, as Cloud's), opened for each request and closed after (the
    indexer opens it for each run): the collection's GET (its metadata, as Qdrant Cloud's ``config.metadata``),
    queries, batches and scrolls; anything else a 404."""
    endpoint = FakeEndpoint().start()

    def respond(method: str, path: str) -> tuple[int, bytes, str]:
        sent = endpoint.requests[-1].body
        store = open_embedded(settings)
        try:
            if method == "GET" and path.rstrip("/").endswith("/collections/kb"):
                result: Any = {"config": {"params": {}, "metadata": store.metadata()}}
            elif path.endswith("/points/query/batch"):
                result = [{"points": points} for points in store.query_batch(sent["searches"], 5.0)]
            elif path.endswith("/points/query"):
                result = {"points": store.query(sent, 5.0)}
            elif path.endswith("/points/scroll"):
                points, offset = store.scroll(sent, 5.0)
                result = {"points": points, "next_page_offset": offset}
            else:
                return 404, b'{"status": {"error": "Not found"}}', "application/json"
        finally:
            store.close()
        return (
            200,
            json.dumps({"result": result, "status": "ok", "time": 0.001}, default=str).encode(),
            "application/json",
        )

    endpoint.responder = respond
    return endpoint


def _as(app: Callable[[dict[str, Any]], Any], key_id: str) -> tuple[list[str], list[str]]:
    """(a search hit's links, Welcome's unresolved outgoing links in the note graph) as the caller ``key_id`` gets
    them from the search Lambda."""
    event = build_event(HttpRequest("POST", "/search", "", [("Content-Type", "application/json")],
                                    json.dumps({"query": "welcome zebra", "top_k": 1}).encode()),
                        "/search", {}, "dev")  # fmt: skip
    event["requestContext"]["identity"]["apiKeyId"] = key_id
    answer = parse_result(app(event))
    assert answer.status == 200, answer.body
    hits = json.loads(answer.body)["results"]
    assert hits and hits[0]["path"] == "pub/Welcome.md", hits
    event = build_event(HttpRequest("GET", "/notes/pub/Welcome.md", "", [], b""), "/notes/{path+}",
                        {"path": "pub/Welcome.md"}, "dev")  # fmt: skip
    event["requestContext"]["identity"]["apiKeyId"] = key_id
    answer = parse_result(app(event))
    assert answer.status == 200, answer.body
    graph = [r["target"] for r in json.loads(answer.body)["links"]["outgoing"] if r["path"] is None]
    return sorted(hits[0]["links"]), sorted(graph)


@pytest.fixture
def cloud_env(
    aws: EventPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[test_events.Indexer, FakeEndpoint]]:
    """The indexer handler (events and full syncs) writing a store that a loopback Qdrant Cloud serves."""
    monkeypatch.setenv("QDRANT_EMBEDDED", "local")
    indexer = test_events.Indexer(monkeypatch, tmp_path, None)
    endpoint = qdrant_cloud(indexer.settings(qdrant_embedded="local"))
    try:
        yield indexer, endpoint
    finally:
        endpoint.stop()


def fully_synced(aws: EventPath, indexer: test_events.Indexer, name: str, body: bytes) -> None:
    """The bucket holds `pub/Welcome.md` linking `[[name]]`, the note `name.md` (``body``) and `Secret.md` (hr
    only: a public caller is hidden a note), indexed by a full sync of the indexer handler (which records the link
    targets; an event batch never records a list first)."""
    aws.receive()
    aws.put(f"{PREFIX}pub/Welcome.md", f"# Welcome\n\nwelcome zebra: read [[{name}]].\n".encode())
    aws.put(f"{PREFIX}{name}.md", body)
    aws.put(f"{PREFIX}Secret.md", b"---\naccess: [hr]\n---\n# Secret\n\nhidden\n")
    aws.receive()
    indexer.app.lambda_handler({"full": True}, LambdaContext("kb-search-test-indexer", 2048, 900))


def test_an_access_change_an_s3_event_syncs_hides_its_links_at_a_warm_search_lambdas_next_request(
    aws: EventPath, cloud_env: tuple[test_events.Indexer, FakeEndpoint], load_search_app: Any
) -> None:
    """rel30's "Left": deployed, the search Lambda caches Qdrant Cloud's collection metadata (the link targets)
    for 60 s, and cannot tell that the indexer Lambda wrote it without a round trip: after an S3 event synced a
    public note turned `access: [hr]`, a warm search container kept showing the public caller Welcome's link to it
    (in a hit and in the note graph) for up to a minute. Now the sync gives the notes whose links name the note a
    new generation (their payload's `links_at`) before it records the targets, the search reads it in its one
    query, and reads the metadata again when it is newer than its cache: the link is hidden at the next request,
    still shown to hr; the search after it is one Qdrant request again."""
    indexer, endpoint = cloud_env
    fully_synced(aws, indexer, "Plan", b"---\naccess: [public]\n---\n# Plan\n\nthe plan\n")
    app = hidden_once_restricted(aws, indexer, endpoint, load_search_app, "Plan")
    before = len(endpoint.requests)
    _as(app, "id-pub")
    asked = [r.path for r in endpoint.requests[before:]]
    # the search's one batch and the note graph's one (round 35: its two searches in one batch), no metadata read
    assert asked.count("/collections/kb/points/query/batch") == 2 and "/collections/kb" not in asked, asked


def hidden_once_restricted(
    aws: EventPath, indexer: test_events.Indexer, endpoint: FakeEndpoint, load_search_app: Any, link: str
) -> Callable[[dict[str, Any]], Any]:
    """A warm search Lambda shows the public caller Welcome's ``link`` to the public `Plan.md` (resolved in the
    graph); an S3 event turns Plan `access: [hr]`; at the next request the link is hidden from the public caller
    and still shown to hr (rel31; a link from the root, rev38a). The warm search Lambda."""
    app = load_search_app(KB_SOURCE=f"s3://{BUCKET}/{PREFIX}", QDRANT_URL=endpoint.url, QDRANT_API_KEY="qk",
                          ACCESS_GROUPS=json.dumps({"api_keys": {"id-pub": ["public"], "id-hr": ["hr"]}}))  # fmt: skip
    assert _as(app, "id-pub") == ([link], [])  # resolved in the graph: Plan is a note the caller reads
    aws.put(f"{PREFIX}Plan.md", b"---\naccess: [hr]\n---\n# Plan\n\nthe plan\n")
    assert indexer(aws.receive()) == []
    assert _as(app, "id-pub") == ([], [])
    assert _as(app, "id-hr") == ([link], [])
    return app


@pytest.mark.parametrize("by", ["event", "full sync"])
def test_a_deleted_public_notes_link_is_hidden_without_a_full_sync(
    by: str, aws: EventPath, cloud_env: tuple[test_events.Indexer, FakeEndpoint], load_search_app: Any
) -> None:
    """rel30's "Left": a deleted public note's key stayed in the public notes' key filter (`LINK_NAMES`) until a
    full sync, so a link to it stayed shown, as a note's, to a caller from whom a note is hidden (one who sees a
    link to no note hidden), in a new search container too; and after a full sync, in a warm one for its cached
    minute. Now an event deleting it has the filter rebuilt from the indexed notes, and either sync gives the notes
    linking it a new generation: the link is hidden as a link to no note is, in the warm container and a new one."""
    indexer, endpoint = cloud_env
    fully_synced(aws, indexer, "Gone", b"# Gone\n\nsoon gone\n")
    env = {"KB_SOURCE": f"s3://{BUCKET}/{PREFIX}", "QDRANT_URL": endpoint.url, "QDRANT_API_KEY": "qk",
           "ACCESS_GROUPS": json.dumps({"api_keys": {"id-pub": ["public"]}})}  # fmt: skip
    warm = load_search_app(**env)
    assert _as(warm, "id-pub") == (["Gone"], [])
    aws.delete(f"{PREFIX}Gone.md")
    if by == "event":
        assert indexer(aws.receive()) == []
    else:
        aws.receive()  # the event lost: the scheduled sync finds the note gone
        report = indexer.app.lambda_handler({"full": True}, LambdaContext("kb-search-test-indexer", 2048, 900))
        assert report["deleted"] == 1, report
    assert _as(warm, "id-pub") == ([], [])
    assert _as(load_search_app(**env), "id-pub") == ([], [])


# -- 2: Content-Encoding: deflate over raw deflate (no zlib header) -------------------------------------------------

NOTE = "# Quokka runbook\n\nRestore the quokka snapshot, then check it.\n"


def raw_deflate(data: bytes) -> bytes:
    """Deflate with no zlib header or checksum (RFC 1951), as some servers and tools send under `deflate`."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("body", "expect"),
    [(raw_deflate(NOTE.encode()), NOTE), (raw_deflate(NOTE.encode() * 400), NOTE * 400),
     (NOTE.encode(), NOTE), (b"c" + NOTE.encode(), "c" + NOTE), (zlib.compress(NOTE.encode()), NOTE)],
    ids=["raw deflate", "raw deflate, 25 KB", "labelled, plain", "labelled, plain starting like a raw block",
         "zlib deflate"],
)  # fmt: skip
def test_a_note_stored_as_raw_deflate_on_s3_is_indexed_and_read_as_its_text(
    body: bytes, expect: str, tmp_path: Path
) -> None:
    """rev30b's "Left" (2): `Content-Encoding: deflate` over raw deflate (RFC 1951, no zlib header: what some servers
    send, and what browsers read after zlib's format fails) was read as stored and skipped as `binary content (NUL
    bytes)` or `not valid UTF-8`. Now zlib's format is tried, then raw deflate; bytes in neither (a label only) read
    as stored, as before. The raw cases fail on main's code; the plain and zlib ones guard the rest."""
    assert_indexed_and_read(body, "deflate", expect, tmp_path)


# -- 3: what the capped Qdrant answer transport holds for a large legitimate page -----------------------------------


@pytest.mark.parametrize("coding", ["plain", "gzip"])
def test_the_indexers_qdrant_transport_holds_a_large_answer_about_once(coding: str) -> None:
    """rev30b's "Left" (1): the capped transport (`CappedAnswers`, the indexer's qdrant-client on Qdrant Cloud) read
    each answer as a list of chunks joined at the end, holding it twice at once: a 2,048-point scroll page of
    4,096-dimension vectors (107 MB) peaked at 214 MB in the transport alone (tracemalloc; RELIABILITY.md "Round 31").
    Now one growing buffer whose bytes are handed on: about once (x1.01 there). Here a 19 MB page of the same shape,
    through a loopback endpoint, plain and gzip-coded."""
    import gzip
    import tracemalloc

    import httpx

    from kbsearch.qdrant.rest import CappedAnswers

    rng = random.Random(0)  # decimals of a unit vector's size, each point its own (gzip takes them ~2.3 to 1)
    vectors = (",".join(f"{rng.gauss(0, 0.016):.8f}" for _ in range(4096)) for _ in range(400))
    points = ",".join(
        f'{{"id":{i},"payload":{{"path":"n{i}.md"}},"vector":{{"dense":[{v}]}}}}' for i, v in enumerate(vectors)
    )
    body = f'{{"result":{{"points":[{points}],"next_page_offset":null}},"status":"ok","time":0.0}}'.encode()
    assert len(body) > 16_000_000
    endpoint = FakeEndpoint().start()
    endpoint.content_type = "application/json"
    endpoint.body = gzip.compress(body, 1) if coding == "gzip" else body
    if coding == "gzip":
        endpoint.headers = {"Content-Encoding": "gzip"}
    transport = CappedAnswers(httpx.Client())
    try:
        transport.handle_request(httpx.Request("POST", endpoint.url + "/warm", json={})).read()  # the connection
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            answer = transport.handle_request(httpx.Request("POST", endpoint.url + "/collections/kb/points/scroll",
                                                            json={}))  # fmt: skip
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert answer.read() == body
    finally:
        transport.close()
        endpoint.stop()
    assert peak < 1.5 * len(body), (peak, len(body))
