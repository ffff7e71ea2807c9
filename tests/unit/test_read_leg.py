"""Reading one search's answer (kbsearch.qdrant.query.read_leg): best first, equal scores in point-id order whatever
order the engine sent them in, for every kind of id an engine hands over (Edge's ``uuid.UUID``, Cloud's strings,
integer ids, a mix), and every point shape that is not the API's refused."""

from __future__ import annotations

import math
import random
import uuid

import pytest

from kbsearch.errors import StoreError
from kbsearch.qdrant.query import ScoredChunk, rank_key, ranked, read_leg

SCORES = [1.0, 0.5, 0.5, 0.25, 0.0, -0.0, -0.5]


def _ids(rng: random.Random, kind: str, n: int) -> list[object]:
    make = {
        "uuid": lambda: uuid.UUID(int=rng.getrandbits(128)),
        "str": lambda: str(uuid.UUID(int=rng.getrandbits(128))),
        "int": lambda: rng.randrange(10**6),
        "mixed": lambda: rng.choice([uuid.UUID(int=rng.getrandbits(128)), "a1", rng.randrange(100)]),
    }[kind]
    return [make() for _ in range(n)]


@pytest.mark.parametrize("kind", ["uuid", "str", "int", "mixed"])
def test_ranked_orders_as_rank_key_does(kind: str) -> None:
    rng = random.Random(kind)
    for _ in range(200):
        n = rng.randrange(0, 40)
        ids = [i.int if isinstance(i, uuid.UUID) else i for i in _ids(rng, kind, n)]
        chunks = [ScoredChunk(i, rng.choice([*SCORES, rng.random()]), {}) for i in ids]  # type: ignore[arg-type]
        expected = sorted(chunks, key=rank_key)
        ranked(chunks)
        assert chunks == expected


@pytest.mark.parametrize("kind", ["uuid", "str", "int"])
def test_a_leg_reads_the_same_whatever_order_its_ties_came_in(kind: str) -> None:
    rng = random.Random(kind)
    ids = _ids(rng, kind, 30)
    points = [{"id": pid, "score": SCORES[i % 3], "payload": {"path": f"n{i}.md"}} for i, pid in enumerate(ids)]
    first = read_leg(list(points))
    for _ in range(5):
        rng.shuffle(points)
        assert read_leg(list(points)) == first
    assert [c.score for c in first] == sorted((c.score for c in first), reverse=True)
    keys = [c.id for c in first if c.score == 0.5]
    assert keys == sorted(keys)  # a UUID as its integer, which orders as its string does
    if kind == "uuid":
        assert [str(uuid.UUID(int=k)) for k in keys] == sorted(str(uuid.UUID(int=k)) for k in keys)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "point",
    [
        None, [], "point", {"id": "a", "score": None, "payload": {"path": "a.md"}},
        {"id": "a", "score": "0.5", "payload": {"path": "a.md"}}, {"id": "a", "score": True, "payload": {"path": "a.md"}},
        {"id": "a", "score": math.nan, "payload": {"path": "a.md"}}, {"id": "a", "score": math.inf, "payload": None},
        {"id": "a", "score": 10**400, "payload": {"path": "a.md"}}, {"id": "a", "score": 0.5, "payload": []},
        {"id": "a", "score": 0.5, "payload": "x"}, {"id": "a", "score": 0.5, "payload": {"path": 5}},
        {"id": "a", "score": 0.5, "payload": {"path": ["a.md"]}},
    ],
)  # fmt: skip
@pytest.mark.parametrize("bare", [False, True])
def test_a_point_that_is_not_the_api_s_is_refused(point: object, bare: bool) -> None:
    with pytest.raises(StoreError):
        read_leg([{"id": "ok", "score": 0.9, "payload": {"path": "ok.md"}}, point], bare)


@pytest.mark.parametrize("bare", [False, True])
def test_points_without_a_usable_path_are_dropped_or_kept_bare(bare: bool) -> None:
    points = [
        {"id": "a", "score": 0.9, "payload": {"path": "a.md"}},
        {"id": "b", "score": 0.8},
        {"id": "c", "score": 0.7, "payload": None},
        {"id": "d", "score": 0.6, "payload": {}},
        {"id": "e", "score": 0.5, "payload": {"path": ""}},
        {"id": "f", "score": 0.4, "payload": {"path": "x" * 5000}},
        {"id": "g", "score": 0.3, "payload": {"title": "no path"}},
        {"id": "h", "score": 1, "payload": {"path": "h.md"}},  # an integer score is a number
    ]
    chunks = read_leg(points, bare)
    if bare:  # ids and scores are the answer: kept, an unusable path's payload as nothing
        assert [(c.id, c.payload) for c in chunks] == [
            ("h", {"path": "h.md"}), ("a", {"path": "a.md"}), ("b", {}), ("c", {}), ("d", {}), ("e", {}), ("f", {}),
            ("g", {"title": "no path"}),
        ]  # fmt: skip
    else:
        assert [c.id for c in chunks] == ["h", "a"]
    assert all(type(c.score) is float for c in chunks)
