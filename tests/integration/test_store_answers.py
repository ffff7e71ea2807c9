"""Numbers and shapes from the store, through the real search handler against a loopback Qdrant (REST path):
numbers of any type or size are a 503 or a dropped point (never a 500), points without a payload or a path are
dropped and counted in the log, and a huge chunk text costs what its token budget allows, not what it weighs."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kbsearch.search import passage, snippet
from kbsearch.tokens import MAX_CHARS_PER_TOKEN, estimate_tokens, truncate_tokens
from kbsearch_tools.fakes import FakeEndpoint, FakeProvider, provider_env
from kbsearch_tools.local.apigw import HttpRequest, build_event

BIG = "1" + "0" * 400  # an integer JSON allows and no float can hold


def point(pid: int | str, path: str | None = "en/a.md", score: str = "0.5", **payload: Any) -> str:
    body = {"path": path, "title": "A", "heading": "A", "text": "a note", **payload} if path is not None else payload
    return f'{{"id": {pid}, "version": 1, "score": {score}, "payload": {json.dumps(body)}}}'


OK_TAIL = ', "status": "ok", "time": 0.001'


def answer(*points: str, tail: str = OK_TAIL) -> tuple[str, str]:
    """What the fake Qdrant answers: the points (a JSON array's text, numbers as written) and what follows
    ``result`` in the answer object."""
    return "[" + ", ".join(points) + "]", tail


class FakeQdrant:
    """A loopback Qdrant answering ``POST .../points/query`` and ``.../points/query/batch`` (one point list per
    search of the batch) with the same points, written as given (a number too large for a float included); a
    search that asks for no payload (``"with_payload": false``) gets their ids and scores alone, as Qdrant sends."""

    def __init__(self, endpoint: FakeEndpoint) -> None:
        self.endpoint = endpoint
        self.points, self.tail = answer(point(1))
        endpoint.responder = self.respond

    def respond(self, method: str, path: str) -> tuple[int, bytes, str] | None:
        if not path.endswith(("/points/query", "/points/query/batch")):
            return None
        one = f'{{"points": {self.points}}}'
        if path.endswith("/batch"):
            sent = self.endpoint.requests[-1].body
            searches = (sent.get("searches") or []) if isinstance(sent, dict) else [{}]
            result = "[" + ", ".join(one if s.get("with_payload") is not False else self.bare() for s in searches) + "]"
        else:
            result = one
        return 200, f'{{"result": {result}{self.tail}}}'.encode(), "application/json"

    def bare(self) -> str:
        """The points without their payloads, ids and scores written as given."""
        try:  # ids as JSON values; scores as written (a number no float holds stays that number)
            points = json.loads(self.points, parse_float=str, parse_constant=str)
        except ValueError:
            return f'{{"points": {self.points}}}'  # not JSON at all: the same garbage for every search
        if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
            return f'{{"points": {self.points}}}'

        def score(value: object) -> str:
            return value if isinstance(value, str) else json.dumps(value)

        return (
            '{"points": ['
            + ", ".join(f'{{"id": {json.dumps(p.get("id"))}, "score": {score(p.get("score"))}}}' for p in points)
            + "]}"
        )


@pytest.fixture
def qdrant() -> Iterator[FakeQdrant]:
    endpoint = FakeEndpoint().start()
    yield FakeQdrant(endpoint)
    endpoint.stop()


@pytest.fixture
def search(qdrant: FakeQdrant, load_search_app) -> Callable[..., dict[str, Any]]:
    def run(body: tuple[str, str], **env: str) -> dict[str, Any]:
        qdrant.points, qdrant.tail = body
        call = load_search_app(QDRANT_URL=qdrant.endpoint.url, QDRANT_API_KEY="qdrant-test-key", **env)
        raw = json.dumps({"query": "restore a snapshot", "top_k": 5}).encode()
        event = build_event(HttpRequest("POST", "/search", "", [("Content-Type", "application/json")], raw),
                            "/search", {}, "dev")  # fmt: skip
        result = call(event)
        assert result["statusCode"] in (200, 503), result
        assert qdrant.endpoint.requests, "the search never asked Qdrant"
        return result

    return run


@pytest.mark.parametrize(
    "body",
    [
        answer(point(1, score=BIG)),
        answer(point(1, score="-" + BIG)),
        answer(point(1, score="1e400")),
        answer(point(1), point(2, path="en/b.md", ai_weight=int(BIG))),  # a payload number, not a score
        answer(point(int(BIG))),  # an id
        answer(point(1, tags=["a"], meta={"n": [1, 2, int(BIG)]})),  # deep inside
        answer(point(1), tail=f', "status": "ok", "time": {BIG}'),  # Qdrant's own timing field
        answer(point(1), tail=f', "usage": {{"cpu": {BIG}}}'),
    ],
    ids=["score", "negative score", "score 1e400", "payload", "id", "nested", "time", "usage"],
)
def test_a_number_too_large_for_a_float_is_a_503_never_a_500(search, body: tuple[str, str]) -> None:
    result = search(body)
    assert result["statusCode"] == 503 and json.loads(result["body"])["error"] == "index_unavailable"


@pytest.mark.parametrize(
    ("score", "weight"),
    [("1", 1), ("0", 0), ("-1", -5), ("1e-300", 0.5), ("123456789012345678901234567890", 2**70), ("0.5", 1e308),
     ("1.7976931348623157e308", -1e308)],
)  # fmt: skip
def test_numbers_a_float_can_hold_are_answered(search, score: str, weight: float) -> None:
    result = search(answer(point(1, score=score, ai_weight=weight)), SEARCH_PRIOR="true")
    assert result["statusCode"] == 200, result
    assert [h["path"] for h in json.loads(result["body"])["results"]] == ["en/a.md"]


@pytest.mark.parametrize(
    "body",
    [
        answer(point(1), tail=', "status": {"error": "Service internal error: 1 of 1 read operations failed"}'),
        answer(tail=', "status": {"error": "Wrong input: Collection is being re-created"}, "time": 0.001'),
        answer(point(1), tail=', "status": "error", "time": 0.001'),
        answer(point(1), tail=', "status": ["ok"], "time": 0.001'),
    ],
    ids=["error with points", "error with none", "prose", "a list"],
)
def test_an_answer_whose_status_is_not_ok_is_a_503_never_its_result(search, body: tuple[str, str]) -> None:
    """Round 23c: a 200 whose envelope says Qdrant failed (``status: {"error": ...}``, what Qdrant sends with its
    4xx/5xx, or any status but ``ok``) beside a ``result``: the result was taken as the answer, 200 with its hits or
    with none, as if the KB held nothing. It is the store failing now: 503 ``index_unavailable``."""
    result = search(body)
    assert result["statusCode"] == 503 and json.loads(result["body"])["error"] == "index_unavailable", result


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_points_without_a_payload_or_a_path_are_dropped_and_counted(search) -> None:
    bare = [
        '{"id": 11, "version": 1, "score": 0.9}',  # no payload at all
        '{"id": 12, "version": 1, "score": 0.9, "payload": null}',
        '{"id": 13, "version": 1, "score": 0.9, "payload": {}}',
        point(14, path=None, title="no path", doc_id="KB-1"),
        point(15, path=""),
    ]
    records = Records()
    logging.getLogger("kbsearch.qdrant.query").addHandler(records)
    try:
        result = search(answer(*bare[:2], point(1), *bare[2:], point(2, path="en/b.md")))
    finally:
        logging.getLogger("kbsearch.qdrant.query").removeHandler(records)
    assert result["statusCode"] == 200
    hits = json.loads(result["body"])["results"]
    assert [h["path"] for h in hits] == ["en/a.md", "en/b.md"] and all(h["path"] for h in hits)
    dropped = [r for r in records.records if r.getMessage() == "points without a payload path dropped"]
    # one line per leg of the search's one Qdrant call (each leg's answer here holds the same points)
    assert dropped and all(r.__dict__["dropped_points"] == len(bare) for r in dropped)
    only_bare = search(answer(*bare))
    assert only_bare["statusCode"] == 200 and json.loads(only_bare["body"])["results"] == []


ODD_IDS = {  # point ids Qdrant never writes (a UUID or an unsigned 64-bit integer), or writes twice
    "string": ['"not-a-uuid"', '"KB-1"'], "empty string": ['""', '"x"'], "negative": ["-5", "-9223372036854775809"],
    "huge": ["18446744073709551616", str(2**100)], "null": ["null", "null"], "float": ["1.5", "2.0"],
    "boolean": ["true", "false"], "list": ["[1, 2]", "[]"], "object": ['{"uuid": "x"}', "{}"],
    "repeated": ["7", "7"], "mixed": ['"0b5f2b1c-8a3e-5c2d-9f1e-3a4b5c6d7e8f"', "3"],
    "uuid and its integer": ['"00000000-0000-0000-0000-000000000001"', "1"],
}  # fmt: skip


@pytest.mark.parametrize("ids", ODD_IDS.values(), ids=ODD_IDS.keys())
def test_odd_point_ids_from_the_store_are_answered_never_a_500(search, ids: list[str]) -> None:
    """Two notes whose points carry ids of no kind Qdrant writes (strings that are no UUID, negative, beyond 64
    bits, null, floats, booleans, lists, objects, the same id twice), in every leg (payload legs and the bare BM25
    tails that bring ids and scores alone): answered 200 with both notes (a hit is its note's path: an id only
    joins a bare leg's score to a payload), never a 500."""
    first, second = ids
    result = search(answer(point(first, score="0.9"), point(second, path="en/b.md", score="0.8")))
    assert result["statusCode"] == 200, result
    assert sorted(h["path"] for h in json.loads(result["body"])["results"]) == ["en/a.md", "en/b.md"]


# -- big text from the store --------------------------------------------------------------------------------------

TEN_MB = ("restore the snapshot " * 500_000)[: 10 * 1024 * 1024]


@pytest.mark.parametrize(
    "text",
    [TEN_MB, "я" * 10_000_000, " " * 10_000_000, "a" + " " * 10_000_000 + "b", "1" * 10_000_000,
     ("x " + "\n" * 1000) * 10_000],
    ids=["words", "cyrillic", "spaces", "spaced", "digits", "newlines"],
)  # fmt: skip
def test_cutting_a_huge_text_reads_only_the_budget(text: str) -> None:
    """The cut of a 10 MB text is the cut of its first ``budget x MAX_CHARS_PER_TOKEN`` characters: nothing past
    them is read, so the time is the budget's. The clock bound is ~100x what it takes here (a few ms)."""
    budget = 384
    window = budget * MAX_CHARS_PER_TOKEN
    started = time.perf_counter()
    cut = truncate_tokens(text, budget)
    rerank = passage({"title": "T", "heading": "T > Steps", "text": text}, budget)
    short = snippet(text, 300)
    elapsed = time.perf_counter() - started
    # nothing past the window changes the cut: the text could go on with anything
    assert cut == truncate_tokens(text[:window] + " other words", budget) and len(cut) <= window
    assert estimate_tokens(cut) <= budget and estimate_tokens(rerank) <= budget and len(rerank) <= window
    assert len(short) <= 301 and short == snippet(text[: 300 * MAX_CHARS_PER_TOKEN] + " other words", 300)
    assert elapsed < 1.0, f"{elapsed:.3f} s to cut a {len(text):,}-character text"


def test_a_10_mb_chunk_from_the_store_is_searched_and_reranked_within_budget(search, deepinfra: FakeProvider) -> None:
    """The whole search over a 10 MB chunk: 200, a short snippet, a reranker passage within its budget."""
    result = search(
        answer(point(1, text=TEN_MB), point(2, path="en/b.md")), **provider_env(deepinfra, roles=["RERANKER"])
    )
    assert result["statusCode"] == 200
    body = json.loads(result["body"])
    assert body["meta"]["degraded"] == [] and len(body["results"][0]["snippet"]) <= 301
    (rerank,) = deepinfra.calls("rerank")
    assert all(len(doc) <= 384 * MAX_CHARS_PER_TOKEN for doc in rerank.body["documents"])


def test_oversized_fields_from_the_store_cannot_swell_the_answer(search) -> None:
    """A store holding a 5 MB title and heading, 100,000 tags, 5 MB links and a 2,000-character path: the answer
    stays small (Lambda refuses answers over 6 MB with a 500 of its own), the point with that path is dropped."""
    huge = point(1, title="T" * 5_000_000, heading="H" * 5_000_000, tags=["t"] * 100_000, links=["L" * 5_000_000],
                 doc_id="D" * 1_000_000, status="s" * 1_000_000)  # fmt: skip
    long_path = point(2, path="a/" * 1000 + "x.md")
    result = search(answer(huge, long_path, point(3, path="en/b.md")))
    assert result["statusCode"] == 200 and len(result["body"]) < 100_000, len(result["body"])
    hits = json.loads(result["body"])["results"]
    assert [h["path"] for h in hits] == ["en/a.md", "en/b.md"]
    assert len(hits[0]["title"]) == 2000 and len(hits[0]["tags"]) == 100 and len(json.dumps(hits[0]["links"])) < 30_000


def no_restricted_links(qdrant: FakeQdrant) -> None:
    """The fake's collection records no restricted link targets: a public caller's hits show their links."""
    points_of = qdrant.respond
    info = {"result": {"config": {"params": {}, "metadata": {"access_restricted_links": {}}}}, "status": "ok"}

    def respond(method: str, path: str) -> tuple[int, bytes, str] | None:
        if method == "GET" and path.endswith("/collections/kb"):
            return 200, json.dumps(info).encode(), "application/json"
        return points_of(method, path)

    qdrant.endpoint.responder = respond


def test_link_targets_over_the_bound_are_dropped_never_cut(search, qdrant: FakeQdrant) -> None:
    """An index written before the indexer kept only link targets a hit can show whole: a target over 200
    characters from the store is left out of the hit's links (cut, its first 200 characters passed the restricted
    link check, which matches whole names), the others kept in order; other lists (tags) are still cut."""
    no_restricted_links(qdrant)
    long_target = "Layoffs planned " + "x" * 250
    result = search(answer(point(1, links=["Alpha", long_target, "Beta"], tags=["t" * 300])))
    assert result["statusCode"] == 200, result
    (hit,) = json.loads(result["body"])["results"]
    assert hit["links"] == ["Alpha", "Beta"] and hit["tags"] == ["t" * 200]


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("Alpha\nBeta", ["Alpha", "Beta"]),  # the indexer's form: one string
        (["Alpha", "Beta"], ["Alpha", "Beta"]),  # points written before: a list
        ("Alpha\n" + "x" * 250 + "\nBeta", ["Alpha", "Beta"]),  # a target over the bound dropped, never cut
        ("\n".join(f"n{i}" for i in range(150)), [f"n{i}" for i in range(100)]),  # the first 100
        ("", []),
    ],
    ids=["string", "list", "long target", "150 targets", "empty"],
)
def test_links_stored_as_one_string_or_a_list_answer_as_a_list(
    search, qdrant: FakeQdrant, stored: object, shown: list[str]
) -> None:
    """A chunk's ``links`` as Qdrant Cloud returns it, in either form a store may hold (one string of targets
    joined by newlines, as the indexer writes them; a list, as it wrote them before): the hit's links are the same
    JSON list of strings, with the same bounds (the first 100 targets, one over 200 characters left out)."""
    no_restricted_links(qdrant)
    result = search(answer(point(1, links=stored)))
    assert result["statusCode"] == 200, result
    assert json.loads(result["body"])["results"][0]["links"] == shown


@pytest.mark.parametrize("stored", [5, 1.5, True, None, {"a": 1}, [1, 2], [["a"]], ["a", None]],
                         ids=["number", "float", "bool", "null", "object", "numbers", "nested", "null item"])  # fmt: skip
def test_links_neither_a_string_nor_a_list_of_strings_are_the_store_error(search, stored: object) -> None:
    """A ``links`` another writer left that is neither form the indexer writes: the search is the store's 503
    (``index_unavailable``), never a 500 or a hit showing it; beside it a string is read."""
    assert search(answer(point(1, links="Alpha\nBeta")))["statusCode"] == 200
    result = search(answer(point(1, links=stored)))
    assert result["statusCode"] == 503 and json.loads(result["body"])["error"] == "index_unavailable", result


@pytest.mark.parametrize(
    "entry",
    [5, None, "public", True, 1.5, [["public"]], [{"group": "public"}], ["hr", 5], [None], {"public": True}],
    ids=["number", "null", "string", "bool", "float", "nested list", "object in list", "number in list",
         "null in list", "object"],
)  # fmt: skip
def test_a_restricted_link_entry_of_the_wrong_shape_hides_its_link_never_a_500(
    search, qdrant: FakeQdrant, entry: object
) -> None:
    """The collection's restricted link targets (metadata: link key → groups) give a key a value that is not a
    list of group names: the groups of the notes it names are not known, so its link is hidden from a restricted
    caller (as a note of unknown groups is readable by nobody), the other links shown, and the search answers. A
    value that is not iterable or holds lists or objects was a TypeError in the access check: a 500 with a
    traceback on every restricted caller's search (and note read) whose hits link to that key; an object's keys
    were read as its groups (``{"public": true}`` showed the link to everyone)."""
    points_of = qdrant.respond
    links = {"plans": ["hr"], "layoffs planned": entry}

    def respond(method: str, path: str) -> tuple[int, bytes, str] | None:
        if method == "GET" and path.endswith("/collections/kb"):
            info = {"result": {"config": {"params": {}, "metadata": {"access_restricted_links": links}}}}
            return 200, json.dumps(info).encode(), "application/json"
        return points_of(method, path)

    qdrant.endpoint.responder = respond
    result = search(answer(point(1, links=["Layoffs planned", "Alpha"])))
    assert result["statusCode"] == 200, result
    assert json.loads(result["body"])["results"][0]["links"] == ["Alpha"]
    links["layoffs planned"] = ["public"]  # well formed (a new container reads it again): the link is shown
    result = search(answer(point(1, links=["Layoffs planned", "Alpha"])))
    assert json.loads(result["body"])["results"][0]["links"] == ["Layoffs planned", "Alpha"]


# -- more than was asked for ----------------------------------------------------------------------------------------


def qdrant_answering(
    points: list[dict[str, Any]],
    metadata: dict[str, Any],
    hits: list[dict[str, Any]] | None = None,
    endpoint: FakeEndpoint | None = None,
) -> Callable[[str, str], tuple[int, bytes, str] | None]:
    """A loopback Qdrant's answers (a :class:`FakeEndpoint` responder): every query and scroll these points (one
    page), each search of a query batch too (the batch read from ``endpoint``'s last request), every facet these
    hits, the collection ``kb``'s GET this metadata; anything else a 404."""

    def respond(method: str, path: str) -> tuple[int, bytes, str] | None:
        if hits is not None and path.endswith("/facet"):
            result: Any = {"hits": hits}
        elif endpoint is not None and path.split("?", maxsplit=1)[0].endswith("/points/query/batch"):
            result = [{"points": points} for _ in endpoint.requests[-1].body["searches"]]
        elif path.endswith(("/points/query", "/points/scroll")):
            result = {"points": points, "next_page_offset": None}
        elif method == "GET" and path.rstrip("/").endswith("/collections/kb"):
            result = {"config": {"params": {}, "metadata": metadata}}
        else:
            return 404, b'{"status": {"error": "Not found"}}', "application/json"
        return 200, json.dumps({"result": result, "status": "ok", "time": 0.001}).encode(), "application/json"

    return respond


def test_more_points_than_asked_for_are_cut_to_the_limit(tmp_path, load_search_app) -> None:
    """A Qdrant answering every query, scroll and facet with 3,000 points or hits whatever the request's ``limit``:
    a note's backlinks are at most the 500 the links query asks for and the catalog's lists their limits (the
    backlinks of 3,000 notes were each resolved against all the others, the square of their number of steps, and
    every one of them listed in the answer; the catalog listed 3,000 tags)."""
    n = 3_000
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nThe note a.\n", encoding="utf-8")
    endpoint = FakeEndpoint().start()

    points = [{"id": i + 1, "payload": {
        "path": f"b{i}.md", "title": f"B{i}", "path_keys": [f"b{i}.md", f"b{i}"], "name_keys": [f"b{i}"],
        "link_keys": ["a"], "updated": "2026-01-01"}} for i in range(n)]  # fmt: skip
    endpoint.responder = qdrant_answering(points, {"access_restricted_links": {}},
                                          [{"value": f"t{i}", "count": 1} for i in range(n)], endpoint)  # fmt: skip
    try:
        app = load_search_app(KB_SOURCE=str(kb), QDRANT_URL=endpoint.url, QDRANT_API_KEY="qdrant-test-key")
        note = app(build_event(HttpRequest("GET", "/notes/a.md", "", [], b""), "/notes/{path+}", {"path": "a.md"},
                               "dev"))  # fmt: skip
        catalog = app(build_event(HttpRequest("GET", "/notes", "recent=5", [], b""), "/notes", {}, "dev"))
    finally:
        endpoint.stop()
    assert note["statusCode"] == 200, note
    links = json.loads(note["body"])["links"]
    assert len(links["backlinks"]) == 500 and links["backlinks_truncated"], len(links["backlinks"])
    assert catalog["statusCode"] == 200, catalog
    body = json.loads(catalog["body"])
    assert len(body["tags"]) == 200 and len(body["types"]) == 50 and len(body["recent"]) == 5, {
        k: len(v) for k, v in body.items() if isinstance(v, list)
    }
