"""The Bloom filter of the public notes' link keys (``kbsearch.links.KeyFilter``), recorded in the collection's
metadata and read by every search: exact for what it holds, bounded in its errors, and safe to read damaged."""

from __future__ import annotations

import json

import pytest

from kbsearch.links import KeyFilter


def test_the_key_filter_holds_every_key_it_was_given_and_few_others() -> None:
    """``KeyFilter``: no key added is ever missed (whatever its script or form); keys never added are found at
    about the designed rate (~1% at capacity), and the record round-trips."""
    import random

    rng = random.Random(20)
    keys = [f"{rng.choice(['отчёт', 'note', 'ünïcode', 'a/b'])} {i} {rng.random()}" for i in range(20_000)]
    made = KeyFilter.of(keys, headroom=1.0)
    assert all(key in made for key in keys)
    others = [f"other {i}" for i in range(20_000)]
    assert sum(key in made for key in others) / len(others) < 0.02
    again = KeyFilter.from_json(json.loads(json.dumps(made.to_json())))
    assert again is not None and again.bits == made.bits and all(key in again for key in keys[:500])
    again.add(["new key"])
    assert "new key" in again and again.count == made.count + 1
    assert 1 not in made and None not in made


def _record() -> dict[str, object]:
    return KeyFilter.of(["a", "b"]).to_json()


@pytest.mark.parametrize(
    "damage",
    [
        {"v": 2}, {"v": "1"}, {"v": None}, {"m": 0}, {"m": -8}, {"m": True}, {"m": 1.5}, {"m": 1 << 40},
        {"k": 0}, {"k": 33}, {"k": "7"}, {"n": -1}, {"capacity": 0}, {"bits": 1}, {"bits": "!!!!"},
        {"bits": ""}, {"bits": "AAAA"}, {"m": 8}, {"bits": None},
    ],
)  # fmt: skip
def test_a_damaged_key_filter_reads_as_none_recorded(damage: dict[str, object]) -> None:
    """Any field of the record out of its type or range, or bits that are not the size's base64: not a filter
    (the search then reads links as before it was recorded), never an exception or a huge allocation."""
    assert KeyFilter.from_json(_record() | damage) is None
    assert KeyFilter.from_json([_record()]) is None and KeyFilter.from_json("x") is None


def test_a_key_filter_for_more_keys_than_a_reader_takes_is_still_read() -> None:
    """A KB of notes with 1,000 aliases each has millions of public keys: the filter sized for twice as many was
    larger than :data:`KeyFilter.MAX_BITS`, the most a search reads (a damaged record's bound), so the indexer wrote
    a filter every search read as none recorded (links naming no note shown: round 18's leak back) and every
    no-change sync derived afresh. It is made at most that large (more false positives past ~13M keys, still read).
    """
    made = KeyFilter.of(["a", "b"], headroom=8e6)  # sized for 16M keys: 160M bits wanted
    read = KeyFilter.from_json(made.to_json())
    assert read is not None and read.size <= KeyFilter.MAX_BITS
    assert "a" in read and "b" in read and read.capacity == made.capacity


def test_graph_keys_are_read_by_their_prefix_or_from_the_fields_a_store_made_before_holds() -> None:
    """A first chunk's keys of one kind: the prefixed ``graph_keys`` (a key that itself starts like a prefix is kept
    whole), else the old field of that kind (a note not rewritten yet); nothing usable reads as none."""
    from kbsearch.links import LINK_KEY, NAME_KEY, PATH_KEY, graph_clauses, graph_keys, stored_keys

    merged = {"graph_keys": graph_keys(["a", "x/a"], ["p:odd"], ["b", "n:c"])}
    assert merged["graph_keys"] == ["p:a", "p:x/a", "n:p:odd", "l:b", "l:n:c"]
    assert [stored_keys(merged, kind) for kind in (PATH_KEY, NAME_KEY, LINK_KEY)] == [["a", "x/a"], ["p:odd"],
                                                                                      ["b", "n:c"]]  # fmt: skip
    old = {"path_keys": ["a"], "name_keys": ["alpha", 3], "link_keys": "b"}
    assert [stored_keys(old, kind) for kind in (PATH_KEY, NAME_KEY, LINK_KEY)] == [["a"], ["alpha"], []]
    # graph_keys wins over an old field the same chunk may still hold; neither: no keys
    assert stored_keys({**old, "graph_keys": ["l:z"]}, PATH_KEY) == [] and stored_keys({}, NAME_KEY) == []
    assert stored_keys({"graph_keys": "p:a"}, PATH_KEY) == []
    assert graph_clauses(NAME_KEY, [], True) == []
    assert graph_clauses(NAME_KEY, ["x"], False) == [{"key": "graph_keys", "match": {"any": ["n:x"]}}]
    assert graph_clauses(LINK_KEY, ["x", "y"], True) == [
        {"key": "graph_keys", "match": {"any": ["l:x", "l:y"]}}, {"key": "link_keys", "match": {"any": ["x", "y"]}}
    ]  # fmt: skip


def test_a_link_names_a_note_exactly_when_the_graph_resolves_it_to_one() -> None:
    """``names_a_note`` (what a count of dangling links asks, stopping at the first note named) answers as
    ``resolve`` does, for every key, linking note and set of candidates: the whole path, a tail, a title, an alias,
    nothing, notes of the same name in many folders (perf38: the count had asked ``resolve`` for every link over
    every candidate, ten copies of the vault taking 10-20 s)."""
    import itertools
    import random

    from kbsearch.links import Linkable, names_a_note, resolve

    rng = random.Random(38)
    keys = ["guide", "ops/guide", "a/ops/guide", "/ops/guide", "/guide", "runbook", "Runbook", "ops", "", "a", "x/y"]
    notes = [
        Linkable(f"{folder}guide.md", title, ("guide", "ops/guide", f"{folder}guide")[: rng.randint(1, 3)], names)
        for folder, title, names in itertools.product(
            ("", "ops/", "a/ops/"), ("Guide", "Runbook"), ((), ("runbook",), ("Runbook", "ops"))
        )
    ]
    for _ in range(2000):
        key, source = rng.choice(keys), rng.choice(["x.md", "ops/x.md", "a/ops/y.md"])
        candidates = rng.sample(notes, rng.randint(0, 6))
        assert names_a_note(key, candidates) == (resolve(key, source, candidates) is not None), (key, candidates)


def test_the_resolver_of_a_note_read_answers_as_resolve_for_every_key_shape() -> None:
    """``Resolver`` (what ``GET /notes`` and the MCP note tools resolve a note's links and backlinks with: each key
    matched once against the notes holding it, rev38a) answers exactly as ``resolve`` over the same notes, and
    ``names_a_note`` says whether it names one (perf38), for keys of every shape: a name, a tail, a whole path,
    anchored at the root (``[[../ops/Guide]]``, ``[[/Guide]]``: adv38), a title, an alias, another case, NFD, one
    naming nothing; linking notes in the notes' folders and elsewhere; namesakes in many folders and depths."""
    import itertools
    import random
    import unicodedata

    from kbsearch.links import Linkable, Resolver, link_key, name_keys, names_a_note, path_keys, resolve

    rng = random.Random(381)
    folders = ["", "ops/", "a/ops/", "b/", "ёлка/"]
    files = ["Guide", "Runbook", "Ёж", "ops"]
    titles = [None, "Guide", "Runbook", "Ёж notes"]
    aliases: list[object] = [None, "runbook", ["Guide", "ops"]]
    every = [
        Linkable(
            f"{folder}{file}.md",
            title or file,
            tuple(path_keys(f"{folder}{file}.md")),
            tuple(name_keys(title or file, alias)),
        )
        for folder, file, title, alias in itertools.product(folders, files, titles, aliases)
    ]
    targets = [f"{r}{f}{n}" for r in ("", "/", " /") for f in folders for n in files]
    targets += ["GUIDE", "/OPS/guide.md", unicodedata.normalize("NFD", "/ёлка/Ёж"), "Ёж notes", "nothing", "/nothing"]
    keys = [k for k in map(link_key, targets) if k is not None]
    assert "/ops/guide" in keys and "guide" in keys and "/ёлка/ёж" in keys
    sources = [f"{folder}x.md" for folder in folders] + ["c/d/x.md"]
    for _ in range(300):
        notes = list({n.path: n for n in rng.sample(every, rng.randint(0, 40))}.values())
        meaning = Resolver(notes)
        for key in rng.sample(keys, 12):
            for source in rng.sample(sources, 3):
                meant = resolve(key, source, notes)
                assert meaning(key, source) is meant, (key, source, [n.path for n in notes])
                assert names_a_note(key, notes) == (meant is not None), (key, [n.path for n in notes])


def test_a_link_from_the_root_to_a_namesake_is_a_link_to_another_note_not_a_self_link() -> None:
    """``links_to_others`` keeps the links that name another note (BM25 discounts their quoted names,
    ``lexical.document_vector``). adv38 read a link from the root by its bare key there, so ``[[../Runbook]]`` in
    ``ops/Runbook.md`` (the root's ``Runbook.md``: another note) was taken for a self-link and dropped, while
    ``[[../ops/Runbook]]`` and ``[[Runbook]]`` do name the note itself (rev38a)."""
    from kbsearch.links import links_to_others

    targets = ["/Runbook", "/ops/Runbook", "Runbook", "ops/Runbook", "/OPS/runbook.md", "/a/ops/Runbook", "/Other"]
    assert links_to_others(targets, "ops/Runbook.md", "Runbook") == ["/Runbook", "/a/ops/Runbook", "/Other"]
    assert links_to_others(["/Guide", "Guide"], "Guide.md", "Guide") == []
