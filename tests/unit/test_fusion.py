"""The adaptive fusion itself (kbsearch.fusion), leg results in, one ranking out: identifiers make the exact match
win outright, cross-language queries lean on dense, a translated variant's BM25 counts for its language, ties
break the same way every run, and the rerank blend keeps a confident exact match first."""

from __future__ import annotations

import random
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbsearch import fusion
from kbsearch.fusion import (
    LANGUAGE_WINDOW,
    FusionParams,
    QueryEvidence,
    analyse,
    fuse,
    is_lookup,
    is_ui_path,
    lexical_variants,
    path_probes,
    questioned,
    translated,
)
from kbsearch.lexical import identifier_terms, proper_names, query_language, query_vector, term_id, tokenize
from kbsearch.qdrant.query import PROBE_DEPTH, Candidate, Leg, ScoredChunk
from kbsearch.search import blend


def chunk(path: str, score: float, lang: str | None = "en", index: int = 0) -> ScoredChunk:
    return ScoredChunk(f"{path}#{index}", score, {"path": path, "lang": lang, "text": path})


def dense_leg(*paths: str, lang: str = "en", top: float = 0.9, step: float = 0.01) -> tuple[Leg, list[ScoredChunk]]:
    return Leg("dense", 0), [chunk(p, top - i * step, lang) for i, p in enumerate(paths)]


def probes(
    query: str, scores: dict[str, float], holders: tuple[str, ...] = ("elsewhere.md",)
) -> list[tuple[Leg, list[ScoredChunk]]]:
    """One probe per query term, as the search asks for it (:func:`path_probes`: a lookup's required terms with
    their chunks' paths, the others ids and scores, a holder then counting for its note through the payload another
    leg carries of the same chunk, :func:`chunk`'s first): its best chunk scores ``scores[stem]`` (a stem missing
    from it: no chunk has the term), in each of the notes ``holders`` (best first, a little less each)."""
    named = path_probes(analyse(query), FusionParams())
    out = []
    for stem in dict.fromkeys(tokenize(query)):
        term, hits = term_id(stem), []
        if stem in scores:
            hits = [ScoredChunk(f"{path}#0", scores[stem] * (1 - i / 20), {"path": path} if term in named else {})
                    for i, path in enumerate(holders)]  # fmt: skip
        out.append((Leg("probe", term=term, bare=term not in named), hits))
    return out


def paths(candidates: list[Candidate]) -> list[str]:
    return [c.payload["path"] for c in candidates]


DISTRACTORS = [f"n{i:02d}.md" for i in range(30)]


@pytest.mark.parametrize("query", ["QDRANT_URL", "ERR-4012", "app.json", "date_modify", "SyncthingConfig",
                                   "как задать QDRANT_URL", "ошибка 4012"])  # fmt: skip
def test_an_identifier_s_exact_match_wins_outright_even_when_dense_ranks_it_tenth(query: str) -> None:
    evidence = analyse(query)
    assert evidence.identifiers
    language = evidence.language
    attainable = 6.0 * len(set(tokenize(query)))
    results = [
        dense_leg(*DISTRACTORS[:9], "target.md", *DISTRACTORS[9:], lang=language or "en"),
        (
            Leg("lexical", 0, language),
            [chunk("target.md", attainable * 0.97, language)]
            + [chunk(p, 1.0 - i * 0.01, language) for i, p in enumerate(DISTRACTORS[:5])],
        ),
        *probes(query, {t: 6.0 for t in tokenize(query)}, ("target.md",)),
    ]
    fused = fuse(results, evidence, 20)
    assert paths(fused)[0] == "target.md" and fused[0].exact
    assert not any(c.exact for c in fused[1:])


def test_a_name_that_is_rare_wins_too_but_a_common_word_does_not_pin_anything() -> None:
    rare = analyse("Syncthing")
    results = [dense_leg(*DISTRACTORS[:6], "sync.md"), (Leg("lexical", 0, "en"), [chunk("sync.md", 5.8)]),
               *probes("Syncthing", {"syncth": 6.0}, ("sync.md",))]  # fmt: skip
    assert paths(fuse(results, rare, 10))[0] == "sync.md"
    common = analyse("notes")  # many notes hold the term about as often as the best one: no exact match
    lexical = [chunk(p, 2.0 - i * 0.01) for i, p in enumerate(DISTRACTORS[:10])]
    results = [dense_leg("z.md", *DISTRACTORS), (Leg("lexical", 0, "en"), lexical),
               *probes("notes", {"note": 2.0}, tuple(DISTRACTORS[:8]))]  # fmt: skip
    fused = fuse(results, common, 10)
    assert not any(c.exact for c in fused)


@pytest.mark.parametrize(
    ("query", "named"),
    [("ERR-4012 timeout in deploy", {"err", "4012"}), ("Syncthing", {"syncth"}), ("sync settings", {"sync", "set"}),
     ("can I use time machine or file history to back up my vault", set())],
)  # fmt: skip
def test_a_lookup_s_required_terms_are_probed_with_their_paths_and_every_other_term_bare(
    query: str, named: set[str]
) -> None:
    """An exact match must name every holder of its required terms (a note holding two identifiers in two chunks,
    one of them in no leg); every other probe asks for ids and scores (Qdrant reads a point's whole payload even
    for its path)."""
    from kbsearch.qdrant.query import PROBE_PAYLOAD, batch_searches

    evidence = analyse(query)
    assert path_probes(evidence, FusionParams()) == {term_id(t) for t in named}
    searches, legs = batch_searches([[0.1, 0.2]], lexical_variants(evidence, []), None, probes=evidence.terms,
                                    path_probes=path_probes(evidence, FusionParams()))  # fmt: skip
    asked = {
        leg.term: (search["with_payload"], leg.bare)
        for search, leg in zip(searches, legs, strict=True)
        if leg.kind == "probe"
    }
    assert asked == {t: ((PROBE_PAYLOAD, False) if t in {term_id(n) for n in named} else (False, True))
                     for t in evidence.terms}  # fmt: skip


def test_a_note_holding_two_identifiers_in_two_chunks_is_an_exact_match_though_one_chunk_came_in_no_leg() -> None:
    """ "ERR-4012 QDRANT_URL": the note names the error in its first chunk (BM25 carried it) and the setting in its
    fourth (no leg did): the setting's probe names the note by its path."""
    evidence = analyse("ERR-4012 QDRANT_URL")
    named = path_probes(evidence, FusionParams())
    assert named == set(evidence.terms)
    error = {term_id(t) for t in tokenize("ERR-4012")}
    lexical = (Leg("lexical", 0, "en"), [chunk("target.md", 5.0), chunk("other.md", 1.0)])
    held = [(Leg("probe", term=t), [ScoredChunk("target.md#0" if t in error else "target.md#3", 6.0,
                                                {"path": "target.md"})]) for t in evidence.terms]  # fmt: skip
    fused = fuse([dense_leg(*DISTRACTORS[:9], "target.md"), lexical, *held], evidence, 10)
    assert paths(fused)[0] == "target.md" and fused[0].exact
    # asked bare (as a question's probes are), the fourth chunk would name no note: no exact match
    bare = [(Leg("probe", term=leg.term, bare=True), [c._replace(payload={}) for c in chunks]) for leg, chunks in held]
    assert not any(c.exact for c in fuse([dense_leg(*DISTRACTORS[:9], "target.md"), lexical, *bare], evidence, 10))


def test_an_exact_match_no_leg_brought_is_answered_with_the_chunk_its_probe_brought() -> None:
    """ "what does 404 do": the one note that holds 404 is in neither the dense nor the BM25 leg (common words fill
    BM25's head); the identifier's probe brought its chunk with the payload, and the note comes first with it."""
    evidence = analyse("what does 404 do in code")
    assert is_lookup(evidence, FusionParams()) and path_probes(evidence, FusionParams()) == {term_id("404")}
    holder = ScoredChunk("permalinks.md#2", 7.0, {"path": "permalinks.md", "lang": "en", "text": "a 404 page"})
    legs = [dense_leg(*DISTRACTORS[:20]), (Leg("lexical", 0, "en"), [chunk(p, 3.0 - i / 10) for i, p in
                                                                    enumerate(DISTRACTORS[:10])])]  # fmt: skip
    number = (Leg("probe", term=term_id("404")), [holder])
    common = [(leg, hits) for leg, hits in probes("what does do in code", {"code": 2.0}, tuple(DISTRACTORS[:8]))]
    fused = fuse([*legs, number, *common], evidence, 10)
    assert paths(fused)[0] == "permalinks.md" and fused[0].exact and fused[0].payload["text"] == "a 404 page"
    assert not any(c.exact for c in fused[1:])
    # held by too many notes to be an exact match: nothing is added
    crowd = (Leg("probe", term=term_id("404")), [holder, *(chunk(p, 6.0) for p in DISTRACTORS[20:24])])
    assert "permalinks.md" not in paths(fuse([*legs, crowd, *common], evidence, 10))


def test_a_cross_language_question_leans_on_dense() -> None:
    """An English question over Russian notes: BM25 finds only the Latin name ("Obsidian") in them, in notes that
    do not answer it; dense ranks the answer first and keeps it there."""
    query = "how do I restore a deleted file in Obsidian"
    evidence = analyse(query)
    answer, noise = "ru/Восстановление.md", [f"ru/шум{i}.md" for i in range(8)]
    results = [
        (Leg("dense", 0), [chunk(answer, 0.88, "ru")] + [chunk(p, 0.86 - i * 0.005, "ru") for i, p in enumerate(noise)]),
        (Leg("lexical", 0, "en"), [chunk(p, 1.2 - i * 0.1, "ru") for i, p in enumerate(noise)]),
        *probes(query, {"obsidian": 1.2}),  # the index has none of the other terms
    ]  # fmt: skip
    fused = fuse(results, evidence, 10)
    assert paths(fused)[0] == answer and not any(c.exact for c in fused)
    # even a full-weight lexical leg cannot outvote dense here: the match is in notes of another language
    heavy = fuse(results, evidence, 10, params=FusionParams(lexical_weight=4.0))
    assert paths(heavy)[0] == answer


def test_a_translated_variant_s_bm25_counts_for_its_language() -> None:
    query, translation = "restore a snapshot", "восстановить снапшот"
    evidence = analyse(query)
    legs = lexical_variants(evidence, ["recover a snapshot", translation])
    assert [lang for _, lang in legs] == ["en", "ru"]  # the same-language rewrite adds no BM25 leg
    # dense prefers a.md clearly (b.md is no close call: 0.80 against 0.72 on a scale down to 0.41)
    dense = (Leg("dense", 0), [chunk("ru/a.md", 0.80, "ru"), chunk("ru/b.md", 0.72, "ru")]
             + [chunk(f"ru/{p}", 0.70 - i * 0.01, "ru") for i, p in enumerate(DISTRACTORS)])  # fmt: skip
    ru_bm25 = (Leg("lexical", 1, "ru"), [chunk("ru/b.md", 9.0, "ru")])
    fused = fuse([dense, (Leg("lexical", 0, "en"), []), ru_bm25, *probes(query, {})], evidence, 10)
    assert paths(fused)[0] == "ru/b.md"  # the translation's exact words in a Russian note: full weight
    as_if_english = (Leg("lexical", 1, "en"), [chunk("ru/b.md", 9.0, "ru")])
    fused = fuse([dense, (Leg("lexical", 0, "en"), []), as_if_english, *probes(query, {})], evidence, 10)
    assert paths(fused)[0] == "ru/a.md"  # the same match counted as another language's: dense decides


@pytest.mark.parametrize(
    ("query", "translation"),
    [
        ("как задать EMBEDDING_API_KEY и QDRANT_URL", "how to set EMBEDDING_API_KEY and QDRANT_URL"),
        ("ошибка ERR_CONNECTION_REFUSED в deploy pipeline", "ERR_CONNECTION_REFUSED error in the deploy pipeline"),
        ("где лежит kbsearch.yaml и config/edge_config.json", "where are kbsearch.yaml and config/edge_config.json"),
    ],
)
def test_a_russian_question_of_mostly_latin_identifiers_is_russian(query: str, translation: str) -> None:
    """Identifiers belong to no language: a Russian question naming settings, codes and files is Russian, however
    many of its letters are Latin; its Latin words are what it looks up, and the expansion's English variant (not a
    Russian rewrite) is the translation whose BM25 counts for English."""
    evidence = analyse(query)
    assert evidence.language == "ru"
    assert (
        term_id("qdrant") in evidence.identifiers
        or term_id("deploy") in evidence.identifiers
        or any(term_id(t) in evidence.identifiers for t in tokenize("kbsearch.yaml"))
    )
    rewrite = query.replace("ошибка", "сбой").replace("задать", "указать").replace("лежит", "находится")
    assert translated(evidence, [query, rewrite, translation]) == [None, None, "en"]
    assert [lang for _, lang in lexical_variants(evidence, [rewrite, translation])] == ["ru", "en"]
    assert analyse(translation).language == "en"
    assert analyse("how to set up индексатор").language == "en"  # a Russian name in an English question


def test_a_same_language_question_gets_both_legs() -> None:
    query = "rotate provider keys without downtime"
    evidence = analyse(query)
    # dense prefers a.md by a hair, BM25 prefers b.md clearly: fused, b.md first; neither is an exact match
    results = [dense_leg("a.md", "b.md", *DISTRACTORS, step=0.002),
               (Leg("lexical", 0, "en"), [chunk("b.md", 7.0), chunk("a.md", 4.0), chunk("n00.md", 3.9)]),
               *probes(query, {t: 3.0 for t in tokenize(query)})]  # fmt: skip
    fused = fuse(results, evidence, 10)
    assert paths(fused)[:2] == ["b.md", "a.md"] and not any(c.exact for c in fused)


@pytest.mark.parametrize(("dense_rank", "first"), [(3, "faq.md"), (12, "switch.md")])
def test_bm25_tells_the_dense_leg_s_close_calls_apart_and_only_those(dense_rank: int, first: str) -> None:
    """A weak model's flat top: the answer is dense's fourth note, a hair below its first (0.90 against 0.87 on a
    scale down to 0.57), and BM25 ranks it a little ahead of dense's first. Among close calls BM25 decides; at full
    dense weight (``close_weight`` 1.0) dense's first would have stayed first. Twelfth on the dense leg the same
    BM25 lead does not lift the note over dense's first: it is no close call."""
    query = "does sync keep uploading notes in the background"
    notes = ["switch.md", "intro.md", "android.md", *DISTRACTORS]
    notes.insert(dense_rank, "faq.md")
    results = [dense_leg(*notes, step=0.01),
               (Leg("lexical", 0, "en"), [chunk("faq.md", 11.7), chunk("switch.md", 10.8), chunk("n05.md", 8.0)]),
               *probes(query, {t: 3.0 for t in tokenize(query)})]  # fmt: skip
    assert paths(fuse(results, analyse(query), 10))[0] == first
    assert paths(fuse(results, analyse(query), 10, params=FusionParams(close_weight=1.0)))[0] == "switch.md"


@pytest.mark.parametrize(
    ("first_share", "second_share", "above", "first", "looser"),
    [(0.5, 0.43, 2, "search.md", None),  # BM25 sure (value 2 x 0.5 x 0.5 = 0.5), of one note (leads by 14% of it)
     (0.374, 0.281, 2, "switch.md", FusionParams(lead_value=0.25)),  # a clear lead, BM25 unsure (value 0.28)
     (0.5, 0.47, 2, "switch.md", FusionParams(lead_margin=0.05)),  # BM25 sure, but of two notes (leads by 6%)
     (0.5, 0.43, 3, "switch.md", FusionParams(lead_within=4))],  # sure of one note, but dense's fourth
)  # fmt: skip
def test_bm25_s_sure_first_note_wins_among_dense_s_first_three_and_an_unsure_one_does_not(
    first_share: float, second_share: float, above: int, first: str, looser: FusionParams | None
) -> None:
    """BM25's first note is dense's third (fourth: ``above`` notes over it), a little below dense's first (0.86
    against 0.90 on a scale down to 0.55); BM25 ranks it ahead of dense's first, but not by enough to win on the
    two legs' weighted sum alone. When BM25 is sure of it (its lexical value, share x the leg's trust, is 0.3 or
    more) and of it alone (it leads BM25's second note by 0.075 of its value or more), and dense has it among its
    first three notes, the clear-lead bonus makes it first; an unsure BM25, one about as sure of dense's first, or
    a note dense ranks fourth, does not (with that gate loosened, it does). Without the bonus (``lead_bonus`` 0)
    dense's first stays first."""
    query = "how to search only inside a given property value"
    attainable = 3.0 * len(set(tokenize(query)))
    notes = [*[("switch.md", 0.90), ("intro.md", 0.88), ("guide.md", 0.87)][:above], ("search.md", 0.86)]
    notes += [(p, 0.70 - i * 0.005) for i, p in enumerate(DISTRACTORS)]
    results = [(Leg("dense", 0), [chunk(p, score) for p, score in notes]),
               (Leg("lexical", 0, "en"), [chunk("search.md", first_share * attainable),
                                          chunk("switch.md", second_share * attainable),
                                          chunk("n05.md", 0.1 * attainable)]),
               *probes(query, {t: 3.0 for t in tokenize(query)}, tuple(DISTRACTORS[20:28]))]  # fmt: skip
    assert paths(fuse(results, analyse(query), 10))[0] == first
    assert paths(fuse(results, analyse(query), 10, params=FusionParams(lead_bonus=0.0)))[0] == "switch.md"
    if looser is not None:  # the gate it missed is what kept it second
        assert paths(fuse(results, analyse(query), 10, params=looser))[0] == "search.md"


@pytest.mark.parametrize(
    ("topic_share", "second_share", "runner", "first", "looser"),
    [(0.1, 0.35, 0.89, "answer.md", None),  # dense's first holds few of the words, its top is flat, BM25 sure of one
     (0.1, 0.35, 0.80, "topic.md", FusionParams(close=0.7)),  # dense's first stands clear of its second
     (0.25, 0.35, 0.89, "topic.md", FusionParams(stray_share=0.6)),  # dense's first holds the query's words too
     (0.1, 0.45, 0.89, "topic.md", FusionParams(stray_margin=0.05))],  # BM25 sure, but not of one note (10% ahead)
)  # fmt: skip
def test_bm25_s_sure_first_note_wins_wherever_dense_ranks_it_when_dense_s_first_is_a_stray(
    topic_share: float, second_share: float, runner: float, first: str, looser: FusionParams | None
) -> None:
    """A weak model's flat top on a topic neighbour: dense's first note (0.90) barely holds the query's words
    (BM25 share 0.1), its second is a close call (0.89 on a scale down to 0.55), and BM25 is sure (value 0.5) of a
    note dense ranks tenth, 30% ahead of BM25's second. Beyond dense's first three the clear lead does not reach it;
    the stray bonus does. When dense's first stands clear of its second, holds the query's words (share 0.25), or
    BM25 leads its second by only 10%, dense's first stays first (with that gate loosened, it does not). Without
    the bonus (``stray_bonus`` 0) dense's first stays first."""
    query = "keep the recently used files list for only a week"
    attainable = 3.0 * len(set(tokenize(query)))
    notes = [("topic.md", 0.90), ("near.md", runner), *[(p, 0.79 - i * 0.005) for i, p in enumerate(DISTRACTORS[:8])]]
    notes += [("answer.md", 0.75), *[(p, 0.70 - i * 0.005) for i, p in enumerate(DISTRACTORS[8:])], ("last.md", 0.55)]
    results = [(Leg("dense", 0), [chunk(p, score) for p, score in notes]),
               (Leg("lexical", 0, "en"), [chunk("answer.md", 0.5 * attainable),
                                          chunk("n20.md", second_share * attainable),
                                          chunk("topic.md", topic_share * attainable)]),
               *probes(query, {t: 3.0 for t in tokenize(query)}, tuple(DISTRACTORS[20:28]))]  # fmt: skip
    assert paths(fuse(results, analyse(query), 10))[0] == first
    assert paths(fuse(results, analyse(query), 10, params=FusionParams(stray_bonus=0.0)))[0] == "topic.md"
    if looser is not None:  # the gate it missed is what kept dense's first first
        assert paths(fuse(results, analyse(query), 10, params=looser))[0] == "answer.md"


@pytest.mark.parametrize("above", [2, 3])
def test_bm25_s_sure_first_note_gains_the_stray_bonus_at_dense_s_third_as_at_its_fourth(above: int) -> None:
    """Dense's first is a stray (holds BM25 share 0.1, its second a close call at 0.89) and BM25 is sure (value
    0.4) of a note dense ranks below its close calls (0.75 on a scale down to 0.55). Third on dense (two notes
    above it), the clear lead's gate (dense's first three) holds too; the stray bonus, the larger, still counts
    there, as it does fourth: the note dense ranks higher does not get the smaller bonus (the clear lead's 0.075
    replaced the stray's 0.2, and the note stayed third where a note dense ranked fourth came first)."""
    query = "keep the recently used files list for only a week"
    attainable = 3.0 * len(set(tokenize(query)))
    notes = [("topic.md", 0.90), ("near.md", 0.89), ("mid.md", 0.76)][:above]
    notes += [("answer.md", 0.75), *[(p, 0.70 - i * 0.005) for i, p in enumerate(DISTRACTORS[:20])], ("last.md", 0.55)]
    results = [(Leg("dense", 0), [chunk(p, score) for p, score in notes]),
               (Leg("lexical", 0, "en"), [chunk("answer.md", 0.4 * attainable),
                                          chunk("n20.md", 0.28 * attainable),
                                          chunk("topic.md", 0.1 * attainable)]),
               *probes(query, {t: 3.0 for t in tokenize(query)}, tuple(DISTRACTORS[20:28]))]  # fmt: skip
    assert paths(fuse(results, analyse(query), 10))[0] == "answer.md"
    assert paths(fuse(results, analyse(query), 10, params=FusionParams(stray_bonus=0.0)))[0] == "topic.md"


def test_ties_break_by_note_path_and_point_id_whatever_the_input_order() -> None:
    evidence = analyse("tie")
    chunks = [chunk(f"t{i}.md", 1.0) for i in range(12)]
    rankings = set()
    for seed in range(5):
        shuffled = chunks[:]
        random.Random(seed).shuffle(shuffled)
        for mode in ("lexical", "hybrid"):
            common = probes("tie", {"tie": 3.0}, tuple(f"t{i}.md" for i in range(8)))  # the term is no exact match
            fused = fuse([(Leg("lexical", 0, "en"), shuffled), *common], evidence, 12, mode)
            rankings.add((mode, tuple(paths(fused))))
    assert rankings == {(m, tuple(sorted(f"t{i}.md" for i in range(12)))) for m in ("lexical", "hybrid")}


def test_modes_rank_by_one_leg_kind_alone() -> None:
    evidence = analyse("alpha")
    results = [dense_leg("d1.md", "d2.md"), (Leg("lexical", 0, "en"), [chunk("l1.md", 3.0), chunk("d2.md", 2.0)]),
               *probes("alpha", {"alpha": 3.0})]  # fmt: skip
    assert paths(fuse(results, evidence, 10, "dense")) == ["d1.md", "d2.md"]
    assert paths(fuse(results, evidence, 10, "lexical")) == ["l1.md", "d2.md"]


def test_the_rerank_blend_keeps_a_confident_exact_match_first() -> None:
    candidates = [Candidate({"path": "exact.md"}, 3.9, exact=True)] + [
        Candidate({"path": f"{i}.md"}, 1.0 - i / 10) for i in range(5)
    ]
    rerank = [0.01, 0.99, 0.98, 0.97, 0.96, 0.95]  # the reranker puts the exact match last
    for weight in (0.0, 0.2, 0.5, 1.0):
        blended = blend(candidates, rerank, weight, 2)
        assert blended is not None
        values: list[float] = blended
        order = sorted(range(len(values)), key=lambda i: -values[i])
        assert order[0] == 0, weight
        assert order[1:] == sorted(order[1:], key=lambda i: -rerank[i]) or weight < 1.0
    # without an exact match the reranker's order stands at weight 1
    plain = [Candidate(c.payload, c.fusion) for c in candidates]
    alone = blend(plain, rerank, 1.0, 2)
    assert alone is not None and max(range(6), key=alone.__getitem__) == 1


# -- legs that carry fewer payloads: the dense scale's floor and the BM25 tails -------------------------------
def _log_linear_leg(n: int, limit: int | None, top: float = 0.86, per_doubling: float = 0.012) -> list[ScoredChunk]:
    """A dense leg of ``n`` chunks whose cosine falls ``per_doubling`` each time the rank doubles (the tail of a
    real ranking, measured with e5 and USE: EVAL.md), slightly faster each doubling (x 1.1)."""
    import math

    def cosine(rank: int) -> float:
        doublings = math.log2(rank)
        return top - per_doubling * sum(1.1**k for k in range(int(doublings))) - per_doubling * (doublings % 1)

    return [chunk(f"n{r:03d}.md", cosine(r)) for r in range(1, n + 1)]


def test_the_dense_floor_is_the_cosine_at_its_rank_whatever_the_depth() -> None:
    from kbsearch.fusion import dense_floor

    p = FusionParams()
    deep = _log_linear_leg(300, 300)
    at_rank = deep[p.floor_rank - 1].score
    assert dense_floor(Leg("dense", limit=300), deep, p) == at_rank  # the leg has that rank
    estimate = dense_floor(Leg("dense", limit=100), deep[:100], p)  # cut by its own limit: extrapolated
    assert abs(estimate - at_rank) < 0.05 * (deep[0].score - at_rank)
    # fewer chunks than asked for: the leg holds every chunk there is (a small index, a narrow scope)
    assert dense_floor(Leg("dense", limit=100), deep[:40], p) == deep[39].score
    assert dense_floor(Leg("dense"), deep[:100], p) == deep[99].score  # a leg that does not say: its last


def test_a_shallower_dense_leg_ranks_the_same() -> None:
    """The fused order of the notes a 100-chunk leg holds is the order a 300-chunk leg gives them (the scale's floor
    does not move with the depth), lexical evidence included."""
    query = "vault sync settings"
    evidence = analyse(query)
    deep = _log_linear_leg(300, 300)
    rng = random.Random(5)
    lexical = sorted((chunk(c.payload["path"], rng.uniform(0.5, 6.0)) for c in rng.sample(deep[:100], 40)),
                     key=lambda c: -c.score)  # fmt: skip
    legs = [(Leg("lexical", 0, "en", limit=100), lexical), *probes(query, {"vault": 3.0, "sync": 2.0, "setting": 2.0})]
    full = fuse([(Leg("dense", 0, limit=300), deep), *legs], evidence, 30)
    short = fuse([(Leg("dense", 0, limit=100), deep[:100]), *legs], evidence, 30)
    assert paths(short)[:20] == paths(full)[:20]


def test_a_bm25_tail_lends_its_score_to_a_note_another_leg_carries() -> None:
    """A BM25 leg's tail comes as ids and scores only: a chunk there that a dense leg carries counts as a BM25 match
    of its note; one no leg carries is dropped (no note to credit, nothing to rerank)."""
    query = "quiet reading mode"
    evidence = analyse(query)
    dense = (Leg("dense", 0, limit=100), [chunk("a.md", 0.80), chunk("b.md", 0.79), chunk("c.md", 0.60)])
    lexical = (Leg("lexical", 0, "en", limit=1), [chunk("c.md", 3.0)])
    tail = [ScoredChunk("b.md#0", 2.0, {}), ScoredChunk("unknown#3", 2.5, {})]
    terms = probes(query, {"quiet": 1.5, "read": 1.5, "mode": 1.5})
    without = fuse([dense, lexical, *terms], evidence, 10)
    with_tail = fuse([dense, lexical, (Leg("lexical-tail", 0, "en", limit=100, bare=True), tail), *terms], evidence, 10)
    assert paths(without)[:2] == ["a.md", "b.md"] and paths(with_tail)[:2] == ["b.md", "a.md"]
    assert "unknown" not in " ".join(paths(with_tail)) and len(with_tail) == len(without)
    b = next(c for c in with_tail if c.payload["path"] == "b.md")
    assert b.payload["text"] == "b.md"  # the carried payload: the reranker and the hit read it


def test_a_rewrites_dense_leg_raises_the_notes_the_other_legs_carry() -> None:
    """A rewrite's dense search comes as ids and scores: its cosine counts for a note whose chunk another leg
    carries (the best variant's cosine, one scale for all); a chunk no leg carries is dropped."""
    query = "calm evening walks"
    evidence = analyse(query)
    own = (Leg("dense", 0, limit=3), [chunk("a.md", 0.80), chunk("b.md", 0.70), chunk("c.md", 0.60)])
    rewrite = (Leg("dense", 1, limit=50, bare=True), [ScoredChunk("c.md#0", 0.85, {}), ScoredChunk("x.md#0", 0.9, {})])
    terms = probes(query, {})
    assert paths(fuse([own, *terms], evidence, 10)) == ["a.md", "b.md", "c.md"]
    fused = fuse([own, rewrite, *terms], evidence, 10)
    assert paths(fused) == ["c.md", "a.md", "b.md"] and fused[0].payload["text"] == "c.md"


def test_a_translation_s_dense_leg_does_not_stretch_the_dense_scale() -> None:
    """The expansion's translation (a variant in another language, :func:`kbsearch.fusion.translated`) has its own
    dense leg, whose cosines across languages run lower: they count for the notes they rank, but the dense scale's
    floor is the query-language legs', so the query's own balance of dense and BM25 is the same with or without it
    (measured: EVAL.md, "Expansion that translates")."""
    query = "walks in the evening"
    evidence = analyse(query)
    assert translated(evidence, [query, "вечерние прогулки", "evening walks"]) == [None, "ru", None]
    own = (Leg("dense", 0, limit=20), [chunk(f"n{i}.md", 0.80 - i * 0.01) for i in range(20)])
    lexical = (Leg("lexical", 0, "en", limit=50), [chunk("n9.md", 6.0), chunk("n3.md", 2.0)])
    terms = probes(query, {"walk": 3.0, "even": 3.0}, holders=("n9.md", "n3.md", "n4.md", "n5.md"))
    alone = fuse([own, lexical, *terms], evidence, 10)
    low = [ScoredChunk(f"n{i}.md#0", 0.40 - i * 0.01, {}) for i in range(20)]
    for language in ("ru", None):  # a translation; a same-language rewrite (its floor counts)
        with_it = fuse([own, (Leg("dense", 1, language, limit=50, bare=True), low), lexical, *terms], evidence, 10)
        same = [(c.payload["path"], round(c.fusion, 6)) for c in with_it] == [
            (c.payload["path"], round(c.fusion, 6)) for c in alone]  # fmt: skip
        assert same is (language == "ru")


def test_the_few_notes_holding_every_rare_term_of_a_question_rise() -> None:
    """A long question naming rare things ("Time Machine", "File History") ranks first the note that holds them
    all, when dense (a weak model) prefers others; a note of another language gets the cross-language share of
    that lift; rare terms many notes hold lift none."""
    query = "can I use time machine or file history to back up my vault"
    evidence = analyse(query)
    assert not evidence.identifiers and len(evidence.terms) > FusionParams().exact_max_terms  # a question
    dense = (Leg("dense", 0, limit=100), [chunk("create.md", 0.62), chunk("stores.md", 0.615),
                                          chunk("backup.md", 0.60), chunk("other.md", 0.45)])  # fmt: skip
    common = {"use": 1.0, "file": 1.0, "back": 1.0, "vault": 1.0}
    rare = {"time": 2.0, "machin": 3.0, "histori": 2.5}
    assert all(term_id(s) in evidence.terms for s in rare)

    def terms(holder: str, crowd: int = 1) -> list[tuple[Leg, list[ScoredChunk]]]:
        out = []
        for leg, _ in probes(query, common | rare, ("create.md", "stores.md")):
            stem = next(s for s in common | rare if term_id(s) == leg.term)
            if stem in rare:  # the rare terms: one note holds them (or ``crowd`` notes do)
                held = [ScoredChunk(f"{p}#0", rare[stem], {}) for p in [holder, *DISTRACTORS[: crowd - 1]]]
            else:  # common terms: more chunks than a probe returns
                held = [ScoredChunk(f"c{i}.md#0", common[stem], {}) for i in range(8)]
            out.append((leg, held))
        return out

    # BM25 about as sure of dense's first (within the clear lead's margin: that rule is not what lifts it here)
    lexical = (Leg("lexical", 0, "en", limit=50), [chunk("backup.md", 4.0), chunk("create.md", 3.8)])
    assert paths(fuse([dense, lexical, *terms("backup.md")], evidence, 10))[0] == "backup.md"
    # five more notes hold them, in chunks no leg carried (a question's probes name no note): none rises
    assert paths(fuse([dense, lexical, *terms("backup.md", crowd=6)], evidence, 10))[0] == "create.md"
    assert paths(fuse([dense, lexical, *terms("backup.md", crowd=3)], evidence, 10))[0] == "backup.md"
    assert paths(fuse([dense, lexical, *terms("nowhere.md")], evidence, 10))[0] == "create.md"  # no leg carries it
    russian = (Leg("dense", 0, limit=100), [*dense[1][:2], chunk("backup.md", 0.60, "ru"), dense[1][3]])
    lexical_ru = (Leg("lexical", 0, "en", limit=50), [chunk("backup.md", 4.0, "ru"), chunk("create.md", 3.8)])
    assert paths(fuse([russian, lexical_ru, *terms("backup.md")], evidence, 10))[0] == "create.md"


def test_a_leg_deeper_than_the_floor_rank_scores_nothing_below_the_floor() -> None:
    """SEARCH_PREFETCH_LIMIT above the floor's rank: the chunks below rank 200 count 0 on the dense scale, never
    less (a negative dense value would rank a note dense found below one it never found)."""
    deep = _log_linear_leg(300, 300)
    fused = fuse([(Leg("dense", 0, limit=300), deep), *probes("anything", {})], analyse("anything"), 300)
    assert len(fused) == 300 and min(c.fusion for c in fused) == 0.0
    assert [c.payload["path"] for c in fused[:200]] == [c.payload["path"] for c in deep[:200]]


def test_no_bm25_tail_without_a_dense_leg_and_the_tail_overlaps_its_head() -> None:
    """BM25 alone (embeddings down, or lexical evaluation) brings all its payloads and no tail (nothing could name
    a tail's chunks); beside a dense leg the tail starts 8 ranks inside the head (ties at the boundary)."""
    from kbsearch.lexical import query_vector
    from kbsearch.qdrant.query import TAIL_OVERLAP, batch_searches

    alone, legs = batch_searches([], [(query_vector("vault sync"), "en")], None, prefetch_limit=100)
    assert [leg.kind for leg in legs] == ["lexical"] and alone[0]["limit"] == 100 and "offset" not in alone[0]
    both, legs = batch_searches([[0.1, 0.2]], [(query_vector("vault sync"), "en")], None, prefetch_limit=100)
    head, tail = both[1], both[2]
    assert [leg.kind for leg in legs] == ["dense", "lexical", "lexical-tail"]
    assert head["limit"] == 50 and tail["offset"] == 50 - TAIL_OVERLAP and tail["offset"] + tail["limit"] == 200
    assert tail["with_payload"] is False and head["with_payload"] != False  # noqa: E712


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80) | st.sampled_from(
    ["how to set QDRANT_URL", "как задать QDRANT_URL и ключи", "ERR-4012 ERR-4012", "ёлка елка", "a_b c-d e.f"]
))  # fmt: skip
def test_the_query_s_own_bm25_leg_is_its_query_vector(query: str) -> None:
    """The query's own BM25 leg is made of the terms the evidence already holds: the same vector as
    ``query_vector`` (each term once, weight 1, by id), and the identifiers judged with the language computed once."""
    evidence = analyse(query)
    assert lexical_variants(evidence, [])[0] == (query_vector(query), query_language(query))
    assert identifier_terms(query, evidence.language) == identifier_terms(query)


def test_a_chunk_without_a_recorded_language_is_judged_by_a_window_of_its_text() -> None:
    """A chunk indexed before the language was recorded is judged by what it says, up to LANGUAGE_WINDOW characters
    (more than any chunk the indexer writes): what a store answers past that is not read, so a 10 MB chunk costs the
    search's budget no more than a whole chunk does. Here the window is Russian and the 3x longer tail Latin."""
    query = "восстановить снапшот"
    evidence = analyse(query)
    long = ScoredChunk("ru/long.md#0", 9.0, {"path": "ru/long.md", "text": "снапшот " * (LANGUAGE_WINDOW // 8)
                                             + "x" * (3 * LANGUAGE_WINDOW)})  # fmt: skip
    terms = {t: 9.0 for t in tokenize(query)}  # the index holds every term
    fused = fuse([(Leg("lexical", 0, "ru"), [long, chunk("ru/b.md", 8.5, "ru")]), *probes(query, terms)], evidence, 10)
    ranked = [p for p in paths(fused) if p.startswith("ru/")]  # (the probes' holder elsewhere.md aside)
    assert ranked == ["ru/long.md", "ru/b.md"]  # judged Russian, as its window reads: no cross-language cut


def test_among_exact_matches_the_note_holding_the_query_s_other_rare_word_comes_first() -> None:
    """ "ETH_P_ALL unmodified" (the man-page known items): two notes hold the identifier, so both are exact matches,
    but only packet.md holds the rare word too; dense (which does not read the identifier) prefers wavelan.md. The
    rare-term agreement orders the exact matches: packet.md first, wavelan.md still pinned second, ahead of dense's
    first unpinned note."""
    query = "ETH_P_ALL unmodified"
    evidence = analyse(query)
    assert evidence.identifiers and is_lookup(evidence, FusionParams())
    holders = {"eth": ("wavelan.md", "packet.md"), "p": ("wavelan.md", "packet.md"), "unmodifi": ("packet.md",)}
    named = path_probes(evidence, FusionParams())
    held = []
    for stem, notes in holders.items():
        term = term_id(stem)
        assert term in evidence.terms
        held.append((Leg("probe", term=term, bare=term not in named),
                     [ScoredChunk(f"{p}#0", 5.0 - i * 0.1, {"path": p} if term in named else {})
                      for i, p in enumerate(notes)]))  # fmt: skip
    dense = dense_leg("wavelan.md", *DISTRACTORS[:4], "packet.md", *DISTRACTORS[4:])  # packet.md sixth
    lexical = (Leg("lexical", 0, "en"), [chunk("packet.md", 9.6), chunk("wavelan.md", 9.5)])  # a hair apart
    fused = fuse([dense, lexical, *held], evidence, 10)
    assert paths(fused)[:2] == ["packet.md", "wavelan.md"]
    assert fused[0].exact and fused[1].exact and not fused[2].exact


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("Press and hold the left mouse button to right-click.", set()),  # a compound in a question: a word
        ("Maximize two windows side-by-side.", set()),
        ("псевдо-файловая система с информацией о процессах", set()),
        ("gnome-cl-list", {"gnome", "cl", "list"}),  # a compound alone, or in two words, names something
        ("right-click menu", {"right", "click"}),
        ("ERR-4012 timeout in deploy", {"err", "4012"}),  # a digit, capitals, `.` `/` `:` `+` `_`: in any query
        ("what does Alt+F10 do to a window", {"alt", "f10"}),
        ("where is app.json kept", {"app", "json"}),
        ("как включить wi-fi на ноутбуке", {"wi", "fi"}),  # a Latin word in a Russian question, as before
    ],
)  # fmt: skip
def test_a_compound_joined_by_a_hyphen_names_something_only_in_a_query_of_two_words_or_fewer(
    query: str, named: set[str]
) -> None:
    """EVAL.md, session 27 (GNOME Help, blind): "right-click" in an English question over Russian notes pinned the
    few Russian notes with an English paragraph left untranslated as exact matches, above dense's right first note."""
    assert identifier_terms(query) == named


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("kb-search - config", "kb-search"),  # a dash or a stray mark set apart is no word: two words
        ("kb-search — config", "kb-search"),
        ("kb-search – config ?", "kb-search"),
        ("what does --squeeze-blank do", "--squeeze-blank"),  # a command-line option names something in any query
        ("use --dry-run flag now", "--dry-run"),
        ("cat -s --squeeze-blank input.txt", "--squeeze-blank input.txt"),
    ],
)  # fmt: skip
def test_a_compound_s_query_counts_its_words_and_an_option_is_a_name_in_any_query(query: str, named: str) -> None:
    """The query's length is its words (a ``-`` or ``—`` between two words is none: "kb-search — config" is a
    two-word query, as its reader and BM25 read it); a compound after ``-`` or ``--`` is a command-line option,
    which was an identifier in any query before the compound rule and still is (the man-page corpus)."""
    assert identifier_terms(query) == set(tokenize(named))


@pytest.mark.parametrize(
    ("query", "language", "named"),
    [
        ("что-то вроде Docker Compose volumes", "ru", {"docker", "compos", "volum"}),  # a Russian compound in a
        ("где-нибудь в настройках sync vault", "ru", {"sync", "vault"}),  # question is a Russian word
        ("how to right-click a file", "en", set()),
    ],
)  # fmt: skip
def test_the_query_s_language_is_judged_over_the_words_that_are_not_its_identifiers(
    query: str, language: str, named: set[str]
) -> None:
    """:func:`query_language` skips a query's identifiers as :func:`identifier_terms` takes them: a compound joined
    by ``-`` in a question of more than two words is a word of its language (it was skipped, and "что-то вроде
    Docker Compose volumes" was judged English by its three Latin words: no Latin word an identifier)."""
    assert query_language(query) == language
    assert identifier_terms(query) == named  # a Russian question's Latin words name something


def test_an_exact_match_by_its_own_bm25_share_where_a_common_term_s_probe_missed_it() -> None:
    """ "Alt+F10 unmaximized" (GNOME Help's known items): `alt` is common, so its probe brings the best 8 chunks
    holding it and not the long note that answers; `f10` is rare, and the answer's one mention scores low in its long
    chunk. Judged by the probes alone, only nav.md (both keys, apart, in short chunks) was an exact match and came
    first; the answer's own BM25 chunk reaches most of the attainable score, so it is an exact match too, and BM25
    and the rare word order the two."""
    query = "Alt+F10 unmaximized"
    evidence = analyse(query)
    assert {term_id("alt"), term_id("f10")} == evidence.identifiers
    named = path_probes(evidence, FusionParams())
    holders = {"alt": [("nav.md", 4.0)] + [(p, 3.9 - i * 0.1) for i, p in enumerate(DISTRACTORS[:7])],
               "f10": [("nav.md", 6.0), ("max.md", 2.0)], "unmaxim": [("max.md", 6.0)]}  # fmt: skip
    held = []
    for stem, notes in holders.items():
        term = term_id(stem)
        held.append((Leg("probe", term=term, bare=term not in named),
                     [ScoredChunk(f"{p}#0", s, {"path": p} if term in named else {}) for p, s in notes]))  # fmt: skip
    dense = dense_leg("nav.md", "max.md", *DISTRACTORS)
    lexical = (Leg("lexical", 0, "en"), [chunk("max.md", 11.0), chunk("nav.md", 9.0)])  # of 16 attainable
    fused = fuse([dense, lexical, *held], evidence, 10)
    assert paths(fused)[:2] == ["max.md", "nav.md"]
    assert fused[0].exact and fused[1].exact and not fused[2].exact


def _alt_f10(
    lexical: list[ScoredChunk], f10: list[tuple[str, float]], reasons: dict[str, str] | None = None
) -> list[Candidate]:
    """ "Alt+F10 unmaximized" as in the test above: `alt` common (its probe: nav.md and 7 others), `f10` rare (held
    by ``f10``), the query's own BM25 leg ``lexical`` (of 16 attainable); dense ranks nav.md and max.md 11th and
    12th."""
    evidence = analyse("Alt+F10 unmaximized")
    named = path_probes(evidence, FusionParams())
    holders = {"alt": [("nav.md", 4.0)] + [(p, 3.9 - i * 0.1) for i, p in enumerate(DISTRACTORS[:7])],
               "f10": f10, "unmaxim": [("max.md", 6.0)]}  # fmt: skip
    held = []
    for stem, notes in holders.items():
        term = term_id(stem)
        held.append((Leg("probe", term=term, bare=term not in named),
                     [ScoredChunk(f"{p}#0", s, {"path": p} if term in named else {}) for p, s in notes]))  # fmt: skip
    dense = dense_leg(*DISTRACTORS[10:20], "nav.md", "max.md", "ru/max.md")
    return fuse([dense, (Leg("lexical", 0, "en"), lexical), *held], evidence, 10, reasons=reasons)


def test_notes_exact_by_their_bm25_share_alone_do_not_unpin_the_exact_match_the_probes_found() -> None:
    """Three notes mention F10 once in passing, in chunks the query's other word fills (BM25 shares of 0.375):
    by their own BM25 share they were exact matches too, four in all, more than ``exact_notes``, so nothing was
    pinned: nav.md, which holds both keys at their best and was pinned before the BM25-share rule, lost its exact
    mark (the one the rerank blend keeps first). The probes' exact match stays pinned; the notes the BM25 share
    adds join it only while all of them fit."""
    lexical = [chunk("nav.md", 9.0), chunk("a.md", 6.0), chunk("b.md", 6.0), chunk("c.md", 6.0)]
    fused = _alt_f10(lexical, [("nav.md", 6.0), ("a.md", 1.0), ("b.md", 1.0), ("c.md", 1.0)])
    assert paths(fused)[0] == "nav.md" and fused[0].exact
    assert [c.exact for c in fused[1:]] == [False] * (len(fused) - 1)


def test_a_note_of_another_language_is_not_an_exact_match_by_its_bm25_share() -> None:
    """An English query's BM25 share in a Russian note (an English paragraph left untranslated) counts by
    ``cross_language`` elsewhere in the fusion (the lexical value, the rare-term agreement); as an exact match's
    share it counted in full, so ru/max.md, holding F10 once in passing, was pinned above English notes."""
    lexical = [chunk("ru/max.md", 11.0, "ru"), chunk("nav.md", 9.0)]
    fused = _alt_f10(lexical, [("nav.md", 6.0), ("ru/max.md", 1.0)])
    assert paths(fused)[0] == "nav.md" and fused[0].exact
    assert not any(c.exact for c in fused if c.payload["path"] == "ru/max.md")


def test_a_question_dense_answers_across_languages_is_not_taken_by_bm25_in_the_few_notes_of_its_own_language() -> None:
    """A Russian KB whose few notes keep an English section (recorded ``lang: en``): an English question whose answer
    dense ranks first is a Russian note; BM25 finds the question's words in full only in the English-language notes,
    which do not answer it. Those matches count as a match in another language does: dense's answer stays first
    (EVAL.md, session 28: LibreOffice Help's cross-en-to-ru). Where dense's first note is in the query's language,
    or the match is a translated variant's, nothing changes."""
    query = "protecting cells from changes"
    evidence = analyse(query)
    answer, english = "ru/cell_protect.md", "ru/protection.md"
    noise = [f"ru/шум{i:02d}.md" for i in range(30)]
    dense = (Leg("dense", 0), [chunk(answer, 0.88, "ru"), chunk(english, 0.80, "en")]
             + [chunk(p, 0.84 - i * 0.01, "ru") for i, p in enumerate(noise)])  # fmt: skip
    bm25 = (Leg("lexical", 0, "en"), [chunk(english, 9.0, "en"), chunk(noise[0], 2.0, "ru")])
    terms = {t: 3.0 for t in tokenize(query)}
    fused = fuse([dense, bm25, *probes(query, terms)], evidence, 10)
    assert paths(fused)[0] == answer and not any(c.exact for c in fused)
    # dense's first note and most of its leg in the query's language: BM25's same-language match counts in full
    same = (Leg("dense", 0), [chunk("ru/other.md", 0.88, "en"), chunk(english, 0.80, "en")]
            + [chunk(p, 0.84 - i * 0.01, "en") for i, p in enumerate(noise)])  # fmt: skip
    assert paths(fuse([same, bm25, *probes(query, terms)], evidence, 10))[0] == english
    # ...and a translation's dense leg, whose first note is in the translation's language, does not say otherwise
    translation = (Leg("dense", 1, "ru"), [chunk(answer, 0.95, "ru")])
    assert paths(fuse([same, translation, bm25, *probes(query, terms)], evidence, 10))[0] == english
    # a translated variant's BM25 leg counts for its own language as before
    ru_bm25 = (Leg("lexical", 1, "ru"), [chunk(noise[5], 9.0, "ru")])
    translated_first = fuse([dense, (Leg("lexical", 0, "en"), []), ru_bm25, *probes(query, {})], evidence, 10)
    assert paths(translated_first)[0] == noise[5]


@pytest.mark.parametrize(("query", "sure", "first"), [
    ("creating gradient fills", False, "ru/gradient.md"),  # a plain title: the damped close call decides nothing
    ("creating gradient fills", True, "ru/background.md"),  # BM25 sure of it alone: its damped match stands
    ("creating gradient fills GradientStyle", False, "ru/background.md"),  # a code reads the same in both languages
])  # fmt: skip
def test_a_damped_match_does_not_decide_between_dense_s_close_calls_across_languages(
    query: str, sure: bool, first: str
) -> None:
    """An English title over LibreOffice Help's Russian half (e5, "Creating Gradient Fills"): dense ranks the Russian
    answer first and a note recorded English (a page of mostly English UI labels) a close second; most of dense's
    notes are Russian. ``_across`` damps the English note's BM25 match (x ``cross_language``), but dense's close calls
    count at ``close_weight``, so even the damped match put it first. Among dense's close calls a match of the
    query's language counts nothing there; BM25's first note of the query's language keeps its damped match where
    BM25 is sure of it alone (no other note of that language near it), and a query naming a code is left as it was
    (EVAL.md, session 35, fus35c)."""
    evidence = analyse(query)
    assert evidence.language == "en" and bool(evidence.identifiers) == ("GradientStyle" in query)
    answer, english = "ru/gradient.md", "ru/background.md"
    noise = [f"ru/шум{i:02d}.md" for i in range(30)]
    dense = (Leg("dense", 0), [chunk(answer, 0.88, "ru"), chunk(english, 0.875, "en")]
             + [chunk(p, 0.80 - i * 0.005, "ru") for i, p in enumerate(noise)])  # fmt: skip
    bm25 = [chunk(english, 9.0, "en"), chunk(noise[0], 2.0, "ru")]
    if not sure:  # another English-recorded note near it, which dense does not put near its top
        bm25.insert(1, chunk("ru/lines.md", 8.5, "en"))
    common = tuple(f"c{i:02d}.md" for i in range(PROBE_DEPTH))  # every term common: no exact match, no agreement
    held = probes(query, {t: 3.0 for t in tokenize(query)}, common)
    fused = fuse([dense, (Leg("lexical", 0, "en"), bm25), *held], evidence, 10)
    assert paths(fused)[0] == first and not any(c.exact for c in fused)


@pytest.mark.parametrize(("holds_words", "first"), [
    (True, "ru/protection.md"),  # dense's first holds every word of the query: the silence makes it no stray
    (False, "ru/document_protect.md"),  # dense's first holds none of them: BM25's sure first gains the stray bonus
])  # fmt: skip
def test_a_silenced_close_call_is_no_stray_first_for_bm25_s_translated_lead(holds_words: bool, first: str) -> None:
    """The expanded phase (rev35c): the Russian translation's dense leg puts an English-recorded note of a Russian
    half first (a cosine above the query's own leg's best), holding every word of the English question; BM25's
    first is a Russian note dense ranks 12th, which only the translation's BM25 leg matches (0.4 of its best).
    ``_across`` silences the English close call's damped match, so that it does not decide between dense's close
    calls; the silence must not also tell :func:`stray_lead` that dense's first holds none of the query's words
    (3c36eb1 and fus35c before its silence: dense's first stays first). Where dense's first holds none of them, the
    stray bonus still goes to BM25's sure first."""
    query = "protecting cells from changes"
    evidence = analyse(query)
    answer, english, other, far = (
        "ru/cell_protect.md",
        "ru/protection.md",
        "ru/protect_sheet.md",
        "ru/document_protect.md",
    )
    noise = [f"ru/шум{i:02d}.md" for i in range(30)]
    asked = (Leg("dense", 0), [chunk(answer, 0.88, "ru")] + [chunk(p, 0.87 - i * 0.005, "ru") for i, p in enumerate(noise[:10])]
             + [chunk(far, 0.80, "ru")] + [chunk(p, 0.70 - i * 0.005, "ru") for i, p in enumerate(noise[10:])])  # fmt: skip
    translation = (Leg("dense", 1, "ru"), [chunk(english, 0.95, "en"), chunk(answer, 0.93, "ru")])
    terms = {t: 3.0 for t in tokenize(query)}
    attainable = sum(terms.values())
    own = [chunk(other, attainable * 0.92, "en")] + ([chunk(english, attainable, "en")] if holds_words else [])
    bm25 = (Leg("lexical", 0, "en"), own)
    bm25_ru = (Leg("lexical", 1, "ru"), [chunk(english, 10.0, "en"), chunk(far, 4.0, "ru")])
    common = tuple(f"c{i:02d}.md" for i in range(PROBE_DEPTH))  # every term common: no exact match, no agreement
    fused = fuse([asked, translation, bm25, bm25_ru, *probes(query, terms, common)], evidence, 10)
    assert paths(fused)[0] == first and not any(c.exact for c in fused)


@pytest.mark.parametrize(("query", "first"), [
    ("как экспортировать заметки кнопкой OK", "en/export.md"),  # two capitals: a UI word both languages write
    ("как экспортировать заметки на Wi-Fi", "en/export.md"),  # a foreign proper name, no code
    ("как экспортировать заметки в PDF", "ru/export.md"),  # a code reads the same in both languages: left as it was
])  # fmt: skip
def test_only_a_code_keeps_a_damped_close_call_s_match_across_languages(query: str, first: str) -> None:
    """A Russian question over a KB mostly English (rev35c): dense ranks the English answer first and a Russian note
    a close second; ``_across`` damps the Russian note's BM25 match and, the question plain, silences it among
    dense's close calls. "OK" or "Wi-Fi" are identifiers but no code (:func:`kbsearch.lexical.code_terms`): words a
    UI and both languages' prose write ("нажмите OK"), as the bridge reads them (fus35b); the question stays plain
    and its damped match decides nothing (3c36eb1 and fus35c: the Russian note first). A code ("PDF") reads the same
    in both languages: its match is left as it was (EVAL.md, session 35, fus35c)."""
    evidence = analyse(query)
    assert evidence.language == "ru" and evidence.identifiers and bool(evidence.codes) == ("PDF" in query)
    answer, russian = "en/export.md", "ru/export.md"
    noise = [f"en/noise{i:02d}.md" for i in range(30)]
    dense = (Leg("dense", 0), [chunk(answer, 0.88, "en"), chunk(russian, 0.875, "ru")]
             + [chunk(p, 0.80 - i * 0.005, "en") for i, p in enumerate(noise)])  # fmt: skip
    bm25 = (Leg("lexical", 0, "ru"), [chunk(russian, 9.0, "ru"), chunk("en/lines.md", 8.5, "ru"),
                                      chunk(noise[0], 2.0, "en")])  # fmt: skip
    common = tuple(f"c{i:02d}.md" for i in range(PROBE_DEPTH))  # every term common: no exact match, no agreement
    held = probes(query, {t: 3.0 for t in tokenize(query)}, common)
    fused = fuse([dense, bm25, *held], evidence, 10)
    assert paths(fused)[0] == first and not any(c.exact for c in fused)


@pytest.mark.parametrize("recorded", [True, False])
def test_a_dense_leg_s_languages_are_counted_alike_recorded_or_judged_by_the_text(recorded: bool) -> None:
    """A Russian question over a Russian KB whose notes were indexed before the language was recorded (rev35c): dense
    puts an English page first, three English pages (recorded ``en``) and twenty Russian ones in its leg. Counting
    only the recorded languages read the leg as mostly English, so the question as asked across languages
    outright, and ``_across`` silenced the Russian answer's BM25 match among dense's close calls; the same notes with
    their language recorded keep it. A note's language is its recorded one, else its text's (:func:`_note_language`),
    wherever the silence reads it."""
    query = "как защитить ячейки от изменений"
    evidence = analyse(query)
    answer = "ru/answer.md"
    text = "Защита ячеек листа от изменений: выберите ячейки и откройте свойства."

    def russian(path: str, score: float) -> ScoredChunk:
        return ScoredChunk(f"{path}#0", score, {"path": path, "lang": "ru" if recorded else None, "text": text})

    dense = (Leg("dense", 0), [chunk("en/a.md", 0.88, "en"), russian(answer, 0.875), chunk("en/b.md", 0.86, "en"),
             chunk("en/c.md", 0.85, "en")] + [russian(f"ru/n{i:02d}.md", 0.84 - i * 0.005) for i in range(20)])  # fmt: skip
    bm25 = (Leg("lexical", 0, "ru"), [russian(answer, 9.0), russian("ru/n00.md", 8.5)])
    common = tuple(f"c{i:02d}.md" for i in range(PROBE_DEPTH))  # every term common: no exact match, no agreement
    fused = fuse([dense, bm25, *probes(query, {t: 3.0 for t in tokenize(query)}, common)], evidence, 10)
    assert paths(fused)[0] == answer and not any(c.exact for c in fused)


def test_a_known_item_in_a_kb_of_its_language_keeps_its_bm25_match_when_dense_puts_a_page_of_another_first() -> None:
    """A Russian KB with a few pages left in English (recorded ``lang: en``): dense ranks one of them first for a
    Russian known item ("Пропорциональный сдвиг затрагивают", LibreOffice Help's swriter-tablemode, USE) and misses
    the one note that holds every word of it. Most of dense's notes are Russian, so this is no question across
    languages: the note holding every rare term keeps its BM25 match and comes first (EVAL.md, session 29). In a KB
    mostly of the other language, the same Russian note's match counts as a match in another language does."""
    query = "пропорциональный сдвиг затрагивают"
    evidence = analyse(query)
    assert evidence.language == "ru" and not is_lookup(evidence, FusionParams())
    answer, english = "ru/tablemode.md", "ru/redaction.md"
    bm25 = (Leg("lexical", 0, "ru"), [chunk(answer, 9.0, "ru"), chunk("ru/шум.md", 2.0, "ru")])
    held = probes(query, {t: 3.0 for t in tokenize(query)}, (answer,))

    def first(noise: str) -> str:
        dense = (Leg("dense", 0), [chunk(english, 0.90, "en")]
                 + [chunk(f"{noise}/n{i:02d}.md", 0.86 - i * 0.01, noise) for i in range(30)])  # fmt: skip
        return paths(fuse([dense, bm25, *held], evidence, 10))[0]

    assert first("ru") == answer
    assert first("en") == english


def _titled(path: str, score: float, lang: str, title: str) -> ScoredChunk:
    return ScoredChunk(f"{path}#0", score, {"path": path, "lang": lang, "title": title, "text": path})


@pytest.mark.parametrize(("query", "title", "first"), [
    ("Official website", "Official website", "own/official.md"),  # the query names the note: its title, whole
    ("official   WEBSITE", "Official website", "own/official.md"),  # as a reader types it (case, spaces)
    ("Официальный сайт", "Официальный сайт", "own/official.md"),  # the same in a Russian query over Russian notes
    ("Official website", "Official website list", "other/domains.md"),  # no title of the query's: the damping holds
    ("Workspace", "Workspaces", "other/domains.md"),  # another word's title (the core plugin's page, not the pane's)
    # rev33c: word for word as BM25 reads them (case, ё/е, punctuation, quotes, markup aside); a different title not
    ("Официальный сайт", unicodedata.normalize("NFD", "Официальный сайт"), "own/official.md"),  # NFD title (й)
    ("ежик в тумане", "Ёжик в тумане", "own/official.md"),  # typed with е, titled with ё (BM25 reads both as е)
    ("Ёжик в тумане", "Ежик в тумане", "own/official.md"),  # and the other way round
    ("Official website?", "Official website", "own/official.md"),  # a question mark typed after it
    ('"Official website"', "Official website", "own/official.md"),  # quoted as a phrase
    ("Official website", "Official website.", "own/official.md"),  # a title ending in a full stop
    ("Official website", "**Official** website", "own/official.md"),  # a first H1 with its markup (the title)
    ("Official website", "Official website (Obsidian)", "other/domains.md"),  # more words: another title
    ("Official website", "Official websites", "other/domains.md"),  # another word (not stemmed: a title is exact)
])  # fmt: skip
def test_a_title_asked_in_a_kb_of_both_languages_keeps_its_own_language_s_page_first(
    query: str, title: str, first: str
) -> None:
    """A KB written in two languages (each page in one): a page's own title asked in its language ("Official
    website", USE) finds that page first by BM25, while dense puts a page of the other language first. ``_across``
    counted the page's BM25 match as a match in another language (the query's own-language notes read as a
    translated KB's leftovers), so dense's first stayed first: USE's bilingual title-en and title-ru lost to their
    BM25 leg (EVAL.md, session 33, fus33c). A note whose title is the query is named by it: its match counts in full.
    A note whose title only shares the query's words stays damped."""
    evidence = analyse(query)
    own = evidence.language or "en"
    other = "ru" if own == "en" else "en"
    page = "own/official.md"
    noise = [f"n{i:02d}.md" for i in range(30)]
    # dense: a page of the other language first (other/), the titled page of the query's (own/) 13th, its leg of
    # both languages
    ranked = [chunk("other/domains.md", 0.88, other)] + [chunk(p, 0.86 - i * 0.005, other if i % 2 else own)
                                                      for i, p in enumerate(noise)]  # fmt: skip
    ranked.insert(12, _titled(page, 0.80, own, title))
    dense = (Leg("dense", 0), ranked)
    bm25 = (Leg("lexical", 0, own), [_titled(page, 9.0, own, title), chunk(noise[2], 1.0, own)])
    common = tuple(f"c{i:02d}.md" for i in range(PROBE_DEPTH))  # every term common: no exact match, no agreement
    fused = fuse([dense, bm25, *probes(query, {t: 3.0 for t in tokenize(query)}, common)], evidence, 10)
    assert paths(fused)[0] == first and not any(c.exact for c in fused)


def test_of_two_exact_matches_the_one_holding_the_query_s_rare_word_too_comes_first_however_far_dense_puts_it() -> None:
    """Two notes hold the identifier ("XSLT seamlessly", LibreOffice Help with e5): both are exact matches, but only
    the answer holds the query's rare word too (the rare-term agreement's one note). Dense puts the other first and
    does not bring the answer; its agreement (x ``rare_agreement``) was too little against that, so the exact
    matches came in dense's order. The exact matches holding every rare term now come before the others (EVAL.md,
    session 29)."""
    query = "XSLT seamlessly"
    evidence = analyse(query)
    assert evidence.identifiers and is_lookup(evidence, FusionParams())
    named = path_probes(evidence, FusionParams())
    answer, other = "xsltfilter.md", "xsltfilter_create.md"
    holders = {"xslt": [(other, 6.0), (answer, 5.7)], "seamless": [(answer, 6.0)]}
    assert set(holders) == set(tokenize(query))
    held = []
    for stem, notes in holders.items():
        term = term_id(stem)
        held.append((Leg("probe", term=term, bare=term not in named),
                     [ScoredChunk(f"{p}#0", s, {"path": p} if term in named else {}) for p, s in notes]))  # fmt: skip
    dense = dense_leg(other, *DISTRACTORS[:20])
    bm25 = (Leg("lexical", 0, "en"), [chunk(answer, 11.0), chunk(other, 8.0)])
    fused = fuse([dense, bm25, *held], evidence, 10)
    assert paths(fused)[:2] == [answer, other] and fused[0].exact and fused[1].exact


def test_a_question_in_the_kb_s_minority_language_is_not_taken_by_bm25_in_that_minority() -> None:
    """A Russian KB with a few English pages (recorded ``lang: en``): a model that prefers its own language puts one
    of them first for an English title, so dense's first note is in the query's language, though most of the dense
    leg is Russian. BM25 finds the title's words in full only in the English pages, and lifted one dense ranks far
    down above the Russian answer dense ranks second. Most of the leg in another language counts as dense's first
    note there does: the English pages' matches count by ``cross_language`` (EVAL.md, session 29: LibreOffice Help's
    cross-en-to-ru with e5). A note holding every rare term of the query keeps its match, and in a KB mostly of the
    query's language nothing changes."""
    query = "protecting cells from changes"
    evidence = analyse(query)
    first, answer, english = "ru/protection.md", "ru/cell_protect.md", "ru/redlining.md"
    noise = [f"ru/шум{i:02d}.md" for i in range(30)]
    dense = (Leg("dense", 0), [chunk(first, 0.90, "en"), chunk(answer, 0.89, "ru")]
             + [chunk(p, 0.86 - i * 0.005, "ru") for i, p in enumerate(noise)] + [chunk(english, 0.70, "en")])  # fmt: skip
    bm25 = (Leg("lexical", 0, "en"), [chunk(english, 9.0, "en"), chunk(first, 8.0, "en")])
    terms = {t: 3.0 for t in tokenize(query)}
    assert paths(fuse([dense, bm25, *probes(query, terms)], evidence, 10))[:2] == [first, answer]
    # a note holding every rare term of the query (the rare-term agreement's one) keeps its match
    held = paths(fuse([dense, bm25, *probes(query, terms, (english,))], evidence, 10))
    assert held.index(english) < held.index(answer)
    # a KB mostly of the query's language: BM25's same-language match counts in full, as before
    mostly_english = (Leg("dense", 0), [chunk(first, 0.90, "en"), chunk(answer, 0.89, "ru")]
                      + [chunk(p, 0.86 - i * 0.005, "en") for i, p in enumerate(noise)]
                      + [chunk(english, 0.70, "en")])  # fmt: skip
    fused = paths(fuse([mostly_english, bm25, *probes(query, terms)], evidence, 10))
    assert fused.index(english) < fused.index(answer)


@pytest.mark.parametrize(("query", "path"), [
    ("Format - Text - Uppercase", True), ("Tools > Options > LibreOffice Writer", True),
    ("- LibreOffice Writer - AutoCaption", True), ("Position and Size - Rotation", True),
    ("Вставка – Медиа – Фотоальбом", True), ("View → Split Window", True),
    ("Slideshow Remote Control – Impress Remote User Guide", False),  # a title: an item of four words
    ("нет команды Формат - Страница на защищённом листе", False),  # a question with a dash in it
    ("Подключение к Интернету — без проводов.", False),  # prose's dash
    ("Cross-fading", False), ("format text uppercase", False)])  # fmt: skip
def test_a_menu_path_is_items_of_a_few_words_joined_by_a_separator_standing_alone(query: str, path: bool) -> None:
    assert is_ui_path(query) is path
    evidence = analyse(query)  # read once, where the query is analysed (session 31): the fusion reads the field
    assert evidence.ui_path is path
    assert is_lookup(evidence, FusionParams()) is (path or len(evidence.terms) <= 2)


def _probed(
    evidence: QueryEvidence, holders: dict[str, list[tuple[str, float]]]
) -> list[tuple[Leg, list[ScoredChunk]]]:
    """One probe per stem of ``holders``, its chunks (note, score) as the search asks for them (:func:`path_probes`:
    with their paths for a lookup's required terms, else ids and scores)."""
    named = path_probes(evidence, FusionParams())
    return [(Leg("probe", term=term_id(stem), bare=term_id(stem) not in named),
             [ScoredChunk(f"{p}#0", s, {"path": p} if term_id(stem) in named else {}) for p, s in notes])
            for stem, notes in holders.items()]  # fmt: skip


def _russian_dense(
    answer: str, rank: int | None, noise: list[str], step: float = 0.01, lang: str = "ru"
) -> tuple[Leg, list[ScoredChunk]]:
    """A dense leg of Russian notes: ``noise`` from 0.90 down by ``step``, ``answer`` (a note in ``lang``) at
    ``rank`` (None: not in the leg)."""
    notes = list(noise) if rank is None else [*noise[: rank - 1], answer, *noise[rank - 1 :]]
    return Leg("dense", 0), [chunk(p, 0.90 - i * step, lang if p == answer else "ru") for i, p in enumerate(notes)]


def test_an_english_menu_path_kept_in_a_russian_note_is_an_exact_match() -> None:
    """A Russian KB keeps its product's English UI paths ("Shape - Convert - To Curve" in LibreOffice Help's
    simpress-text2curve, dense's 11th with e5, 13th with USE). The query reads English: three words, no identifier,
    so it was a question, not a lookup, and its BM25 match in the Russian note counted x ``cross_language``: dense's
    Russian neighbours came first. A menu path names one place, as an identifier does: it is a lookup, and the
    note's own BM25 share counts in full, whatever the note's language (EVAL.md, session 30). The same words
    without the separators stay a question."""
    query = "Shape - Convert - To Curve"
    answer = "ru/text2curve.md"
    noise = [f"ru/n{i:02d}.md" for i in range(30)]
    dense = _russian_dense(answer, 11, noise)
    bm25 = (
        Leg("lexical", 0, "en"),
        [chunk(answer, 11.0, "ru"), chunk(noise[0], 8.0, "ru"), chunk(noise[1], 5.0, "ru")],
    )

    def fused(text: str) -> list[Candidate]:
        evidence = analyse(text)
        assert evidence.language == "en" and not evidence.identifiers
        # shape and convert common (8 chunks each, the answer's not among them), curve in the answer alone
        held = _probed(evidence, {"shape": [(p, 6.8 - i * 0.1) for i, p in enumerate(noise[:8])],
                                  "convert": [(p, 7.7 - i * 0.1) for i, p in enumerate(noise[2:10])],
                                  "curv": [(answer, 4.8)]})  # fmt: skip
        return fuse([dense, bm25, *held], evidence, 10)

    path = fused(query)
    assert paths(path)[0] == answer and path[0].exact
    assert not any(c.exact for c in path[1:])
    words = fused("shape convert to curve")
    assert paths(words)[0] != answer and not any(c.exact for c in words)


def test_a_russian_menu_path_whose_latin_items_are_common_pins_the_note_holding_its_rare_word() -> None:
    """ "- LibreOffice Writer - Автозаголовок" (LibreOffice Help's swriter-captions, dense's 24th with e5): the
    Latin words of a Russian query are its identifiers, so they alone were required of an exact match; here they are
    the product's name, in most notes (their probes: 8 chunks, the answer's not among them), and no rare term was
    left to pin anything. A menu path requires all of its terms: the rare Russian item names the note."""
    query = "- LibreOffice Writer - Автозаголовок"
    evidence = analyse(query)
    assert evidence.language == "ru" and evidence.identifiers == {term_id("libreoffic"), term_id("writer")}
    answer = "ru/captions.md"
    noise = [f"ru/n{i:02d}.md" for i in range(30)]
    dense = _russian_dense(answer, 24, noise, 0.005)
    bm25 = (Leg("lexical", 0, "ru"), [chunk(noise[0], 9.0, "ru"), chunk(answer, 8.5, "ru"), chunk(noise[1], 8.4, "ru")])
    held = _probed(evidence, {"libreoffic": [(p, 3.0 - i * 0.1) for i, p in enumerate(noise[:8])],
                              "writer": [(p, 3.5 - i * 0.1) for i, p in enumerate(noise[1:9])],
                              "автозаголовок": [(answer, 7.0)]})  # fmt: skip
    fused = fuse([dense, bm25, *held], evidence, 10)
    assert paths(fused)[0] == answer and fused[0].exact


@pytest.mark.parametrize("query", [
    "Qdrant - это база векторов", "снапшот - как восстановить", "kb-search - how to deploy",
    "Qdrant Cloud - pricing", "Ошибка 502 - что делать", "Slack - как подключить", "price > 100", "2019 - 2021",
    "temperature - -5", "a > b", "- - -", "Format -Text", "Format − Text", "Format — Text"])  # fmt: skip
def test_a_question_or_a_comparison_with_a_spaced_dash_is_no_menu_path(query: str) -> None:
    """Russian writes a spaced hyphen for a dash ("Qdrant - это ..."), English titles and questions hold " - ", and
    comparisons and ranges hold ``>`` and ``-`` standing alone: their items after the first start lowercase, or
    with no letter at all. A menu item is a UI label, capitalised ("Format - Text - Uppercase", "Сервис - Язык -
    Тезаурус"): each item's first letter is a capital (rev30a)."""
    assert not is_ui_path(query)


@pytest.mark.parametrize("query", ["Format\u00a0-\u00a0Text", "Format - Text -", "- LibreOffice Writer - AutoCaption",
                                   "Shape - Cross-fading fading", "Tools > 3D View", "Вставка – Медиа – Фотоальбом"])  # fmt: skip
def test_a_menu_path_s_edges_ends_no_break_spaces_an_item_opening_with_a_digit(query: str) -> None:
    assert is_ui_path(query)


def test_a_russian_question_with_a_dash_keeps_its_identifier_s_exact_match() -> None:
    """ "Ошибка 502 - что делать": a Russian question with a spaced hyphen for a dash, its identifier "502" held by
    one note. Read as a menu path it required every term of an exact match, "дела" too (a rare word, in other
    notes, not the runbook's), so no note held them all: the runbook lost its pin and dense's Russian neighbours
    came first. It is no menu path (its second item starts lowercase): the identifier alone is required, the
    runbook is pinned (rev30a)."""
    query = "Ошибка 502 - что делать"
    evidence = analyse(query)
    assert evidence.language == "ru" and evidence.identifiers == {term_id("502")}
    answer = "ru/502.md"
    noise = [f"ru/n{i:02d}.md" for i in range(30)]
    dense = _russian_dense(answer, 8, noise)
    bm25 = (Leg("lexical", 0, "ru"), [chunk(noise[0], 9.0, "ru"), chunk(noise[1], 8.8, "ru"), chunk(answer, 6.0, "ru")])
    held = _probed(evidence, {"ошибк": [(p, 3.0 - i * 0.1) for i, p in enumerate(noise[:8])],
                              "502": [(answer, 5.0)],
                              "дела": [(noise[0], 4.0), (noise[1], 3.9), (noise[5], 3.5)]})  # fmt: skip
    fused = fuse([dense, bm25, *held], evidence, 10)
    assert paths(fused)[0] == answer and fused[0].exact


def _a_question_naming(
    query: str, term: str, dense_rank: int, bm25_rank: int, reasons: dict[str, str] | None = None
) -> tuple[list[Candidate], str, str]:
    """A Russian question of the vault or GNOME Help naming ``term`` (an identifier) in passing: one note holds it
    (``holder``, dense's ``dense_rank``-th and BM25's ``bm25_rank``-th), the query's other words are common (each
    held by ``PROBE_DEPTH`` chunks), and the note both legs put first (``first``) is about the question."""
    evidence = analyse(query)
    noise = [f"ru/n{i:02d}.md" for i in range(30)]
    holder, first = "ru/holder.md", noise[0]
    dense = _russian_dense(holder, dense_rank, noise)
    ranked = [*noise[: bm25_rank - 1], holder, *noise[bm25_rank - 1 : 12]]
    bm25 = (Leg("lexical", 0, "ru"), [chunk(p, 9.0 - 0.5 * i, "ru") for i, p in enumerate(ranked)])
    common = {stem: [(p, 3.0) for p in noise[:PROBE_DEPTH]] for stem in tokenize(query) if stem != term}
    held = _probed(evidence, {term: [(holder, 5.0)], **common})
    return fuse([dense, bm25, *held], evidence, 10, reasons=reasons), holder, first


def test_a_question_s_identifier_named_in_passing_pins_its_note_only_near_a_leg_s_top() -> None:
    """ "на ноутбуке wifi выключается сочетанием клавиш?" (GNOME Help, e5 and USE): "wifi" is an identifier (a Latin
    word in a Russian question) and the one note holding it, about something else, was pinned first though neither
    leg puts it near its top (dense's 20th, BM25's 7th); "which CPU platforms did older Debian releases like 2.0 and
    2.1 ship for" the same (Debian's docs). A question naming an identifier in passing pins its note only among
    dense's first three or BM25's first two; elsewhere the note ranks by its fused score (session 32)."""
    fused, holder, first = _a_question_naming("на ноутбуке wifi выключается сочетанием клавиш?", "wifi", 20, 7)
    assert paths(fused)[0] == first
    assert holder in paths(fused) and not any(c.exact for c in fused)


def test_a_question_s_identifier_held_by_a_note_no_leg_brought_pins_it_no_more() -> None:
    """The note holding the question's identifier is in neither leg (common words filled BM25's head; dense ranks it
    past its 100 chunks): its probe answers it, and its value for the pin was its share of the identifier's score
    (1.0), ahead of every note BM25 carried, so it counted as "BM25's first" and kept the pin a note BM25 ranks
    7th loses. Neither leg puts it near its top: it is pinned no more, and ranks by its rare-term agreement alone."""
    query = "на ноутбуке wifi выключается сочетанием клавиш?"
    evidence = analyse(query)
    noise = [f"ru/n{i:02d}.md" for i in range(30)]
    holder = "ru/holder.md"
    dense = Leg("dense", 0), [chunk(p, 0.90 - i * 0.01, "ru") for i, p in enumerate(noise)]
    bm25 = (Leg("lexical", 0, "ru"), [chunk(p, 9.0 - 0.5 * i, "ru") for i, p in enumerate(noise[:12])])
    common = {stem: [(p, 3.0) for p in noise[:PROBE_DEPTH]] for stem in tokenize(query) if stem != "wifi"}
    held = _probed(evidence, {"wifi": [(holder, 5.0)], **common})
    fused = fuse([dense, bm25, *held], evidence, 40)
    assert paths(fused)[0] == noise[0] and not any(c.exact for c in fused)
    assert holder not in paths(fused)[:12]


@pytest.mark.parametrize(
    ("query", "term", "dense_rank", "bm25_rank"),
    [("на ноутбуке wifi выключается сочетанием клавиш?", "wifi", 3, 7),  # dense's third
     ("на ноутбуке wifi выключается сочетанием клавиш?", "wifi", 20, 2),  # BM25's second ("aptitude ... dpkg")
     ("есть ли руководство по переносу моих заметок из Logseq", "logseq", 20, 7),  # a foreign proper name
     ("где лежат отчёты по проекту Øresund за прошлый год", "øresund", 20, 7)],  # its capital not ASCII
)  # fmt: skip
def test_a_question_s_pin_stays_near_a_leg_s_top_or_for_a_foreign_proper_name(
    query: str, term: str, dense_rank: int, bm25_rank: int
) -> None:
    """The pin stays where a leg puts the note near its top ("чем отличаются aptitude, synaptic, apt и dpkg":
    *faq-pkgprogs*, BM25's second) and where a Russian question writes the identifier with a capital, a foreign proper
    name the question asks about ("... из Logseq": *Импорт заметок*, far down both legs)."""
    fused, holder, _ = _a_question_naming(query, term, dense_rank, bm25_rank)
    assert paths(fused)[0] == holder and fused[0].exact


@pytest.mark.parametrize(
    ("query", "names"),
    [("есть ли руководство по переносу моих заметок из Logseq", {"logseq"}),
     ("можно ли использовать Time Machine для резервной копии", {"time", "machin"}),
     ("на ноутбуке wifi выключается сочетанием клавиш?", set()),
     ("чем отличаются aptitude, synaptic, apt и dpkg", set()),
     ("напечатать документ начиная с 10-й страницы", set()),
     ("how to embed a YouTube video in a note", set()),
     ("где лежат отчёты по проекту Øresund за прошлый год", {"øresund"}),  # a capital outside ASCII
     ("как перенести заметки из Évernote в хранилище", {"évernot"}),
     ("как подключить библиотеку .NET к хранилищу", {"net"}),  # the first letter is the capital
     ("как подключить библиотеку .net к хранилищу", set()),
     ("как повернуть 3D модель в заметке", set()),  # a number first
     ("что делает кнопка OK в окне экспорта", set()),  # two capitals alone: a UI's word (rev35a)
     ("можно ли записать хранилище на CD для архива", set()),
     ("как собрать плагин на C++ для хранилища", set()),
     ("экспорт хранилища в PDF с картинками", {"pdf"})],  # three capitals: an acronym stays a name
)  # fmt: skip
def test_a_foreign_proper_name_is_a_latin_word_a_russian_query_writes_with_a_capital(query: str, names: set) -> None:
    assert analyse(query).names == {term_id(t) for t in names}
    assert proper_names(query) == frozenset(names)


def _an_english_title_over_russian_notes(page_dense_rank: int | None) -> list[Candidate]:
    """ "Database Overview" over LibreOffice Help's Russian half (e5, session 32): dense puts the Russian answer
    first; the two English words are held by one English page of the Russian half (*swriter-protection*-like), the
    only holder of both, so it was pinned as an exact match. BM25's Russian notes quoting English labels rank above
    it once ``_across`` damps its match; dense ranks it ``page_dense_rank``-th (None: not at all)."""
    query = "Database Overview"
    evidence = analyse(query)
    assert evidence.language == "en" and not evidence.identifiers
    answer, page = "ru/database_main.md", "ru/protection-en.md"
    noise = [f"ru/n{i:02d}.md" for i in range(30)]
    dense = _russian_dense(page, page_dense_rank, [answer, *noise], lang="en")
    bm25 = (
        Leg("lexical", 0, "en"),
        [chunk("ru/a-en.md", 8.0, "en"), chunk("ru/b-en.md", 7.5, "en"), chunk(page, 7.0, "en")],
    )
    held = _probed(
        evidence, {"databas": [("ru/a-en.md", 4.0), (page, 3.8)], "overview": [("ru/b-en.md", 3.5), (page, 3.2)]}
    )
    return fuse([dense, bm25, *held], evidence, 40)


def test_a_plain_title_asked_across_languages_pins_its_exact_match_only_near_a_leg_s_top() -> None:
    """An English title of common words over a Russian KB: its words are "rare" there only because the notes are
    Russian, and the page holding both (BM25's third, not in dense's first three) is no
    known item: dense's first, the answer, stays first (e5 LibreOffice: "Sorting Data", "Database Overview",
    "Version Management", "Animating Text"; fus32c). Main pinned the page first."""
    fused = _an_english_title_over_russian_notes(None)
    assert paths(fused)[0] == "ru/database_main.md"
    assert "ru/protection-en.md" in paths(fused) and not any(c.exact for c in fused)


def test_a_plain_title_asked_across_languages_keeps_its_pin_near_dense_s_top() -> None:
    """The same page among dense's first three keeps its pin ("Slide Transition", "Digital Signature": the known
    items of LibreOffice's Russian half are English labels a leg puts near its top)."""
    fused = _an_english_title_over_russian_notes(2)
    assert paths(fused)[0] == "ru/protection-en.md" and fused[0].exact


@pytest.mark.parametrize("answer_dense_rank", [None, 5])
def test_a_file_extension_asked_across_languages_keeps_its_pin(answer_dense_rank: int | None) -> None:
    """A known item that is a file extension (".dbf", ".oth": LibreOffice's known items) asked in English over a
    Russian KB: the English page about the format holds it, and so do two Russian notes that list it in passing,
    which BM25 ranks above the page once ``_across`` damps the page's match. The extension names one thing, as
    "app.json" does: it is an identifier, so fus32c's rule for plain words asked across languages (pin only near a
    leg's top) leaves its exact match alone, and the page holding the query's rare term in the query's own language
    comes first, wherever dense ranks it. Main read ".dbf" as a plain word and unpinned the page (rev32d)."""
    query = ".dbf"
    evidence = analyse(query)
    assert evidence.language == "en"
    answer = "en/dbase-format.md"
    noise = [f"ru/n{i:02d}.md" for i in range(30)]
    dense = _russian_dense(answer, answer_dense_rank, noise, lang="en")
    bm25 = (
        Leg("lexical", 0, "en"),
        [chunk("ru/import.md", 4.0, "ru"), chunk("ru/formats.md", 3.8, "ru"), chunk(answer, 3.7, "en")],
    )
    held = _probed(evidence, {"dbf": [("ru/import.md", 4.0), ("ru/formats.md", 3.8), (answer, 3.7)]})
    fused = fuse([dense, bm25, *held], evidence, 40)
    assert paths(fused)[0] == answer and fused[0].exact
    assert {c.payload["path"] for c in fused if c.exact} == {answer, "ru/import.md", "ru/formats.md"}
    assert evidence.identifiers == {term_id("dbf")} and analyse("open a .dbf file").identifiers == evidence.identifiers
    assert not analyse("OK, now I know what Debian is... what is Linux?!").identifiers - {term_id("ok")}


def test_a_plain_title_asked_across_languages_does_not_pin_a_note_no_leg_brought() -> None:
    """The merge of fus32c's rule with rev32a's (main ``97d671b``): a note no dense or BM25 leg brought, answered by
    its probes alone, is near neither leg's top, for a plain title asked across languages as for a question; its
    value, given for the pin, is taken back, and dense's Russian answer stays first (rev32d)."""
    query = "Database Overview"
    evidence = analyse(query)
    answer, page = "ru/database_main.md", "ru/protection-en.md"
    noise = [f"ru/n{i:02d}.md" for i in range(30)]
    dense = _russian_dense(answer, 1, noise)
    bm25 = (Leg("lexical", 0, "en"), [chunk("ru/a-en.md", 4.0, "en"), chunk("ru/b-en.md", 3.9, "en")])
    held = _probed(evidence, {"databas": [(page, 4.0), ("ru/a-en.md", 1.0)], "overview": [(page, 3.5)]})
    fused = fuse([dense, bm25, *held], evidence, 40)
    assert paths(fused)[0] == answer and not any(c.exact for c in fused)
    assert page in paths(fused)


def _lookup(
    query: str,
    text: str,
    lang: str = "en",
    dense_first: tuple[str, str] | None = None,
    heading: str = "Protecting Cells from Changes",
    reasons: dict[str, str] | None = None,
) -> list[Candidate]:
    """A lookup of two common words (eight chunks or more hold each: no probe sees every holder, nothing is rare):
    the note ``answer.md``'s chunk (BM25 7.1, its ``text`` given) scores above the best chunk holding one of them
    (6.5), so it provably holds both; eight notes hold one word; dense ranks the answer 25th and puts ``n00.md``
    first, whose heading and text are ``dense_first`` (else its path); the answer's heading path is ``heading``."""
    first, second = tokenize(query)

    def held(path: str, score: float, heading: str, body: str) -> ScoredChunk:
        return ScoredChunk(f"{path}#0", score, {"path": path, "lang": lang, "heading": heading, "text": body})

    one = [chunk(p, 6.5 - i * 0.1, lang) for i, p in enumerate(DISTRACTORS[:8])]  # one word each, the first's best
    answer = held("answer.md", 7.1, heading, text)
    leg, cosines = dense_leg(*DISTRACTORS[:24], "answer.md", *DISTRACTORS[24:], lang=lang)
    if dense_first is not None:
        cosines[0] = held(DISTRACTORS[0], cosines[0].score, *dense_first)
    results = [(leg, cosines), (Leg("lexical", 0, query_language(query)), [answer, *one]),
               (Leg("probe", term=term_id(first)), one),
               (Leg("probe", term=term_id(second)), [chunk(p, 4.8 - i * 0.05, lang) for i, p in enumerate(DISTRACTORS[8:16])])]  # fmt: skip
    return fuse(results, analyse(query), 10, reasons=reasons)


def test_a_lookup_s_words_side_by_side_in_the_one_note_holding_both_is_its_exact_match() -> None:
    """Session 33 (fus33b): "hiding formulas", a LibreOffice Help index entry, BM25's first and USE's 72nd (hybrid's
    20th at main). Its chunk provably holds both words (above what a chunk missing either could score) and holds them
    side by side ("Select Hide formula to hide..."), and dense's first holds them nowhere so: pinned first."""
    evidence = analyse("hiding formulas")
    assert not evidence.identifiers and is_lookup(evidence, FusionParams())
    fused = _lookup("hiding formulas", "Select Hide formula to hide and to protect formulas from changes.")
    assert paths(fused)[0] == "answer.md" and fused[0].exact
    assert not any(c.exact for c in fused[1:])
    turned = _lookup("hiding formulas", "Formulas, hide: select the option.")  # any order: "formulas; hiding"
    assert paths(turned)[0] == "answer.md" and turned[0].exact


def test_a_lookup_s_words_held_apart_pin_nothing() -> None:
    """fus32b's rule (refused, session 32) pinned the note holding every word wherever the words stood: "ряд
    вычисление" pinned "Вычисление суммы для ряда ячеек в таблице" over dense's right first. Words apart in the
    chunk prove co-occurrence, not the phrase: dense keeps its first."""
    fused = _lookup("ряд вычисление", "Вычисление суммы для ряда ячеек в таблице.", lang="ru")
    assert not any(c.exact for c in fused) and paths(fused)[0] == DISTRACTORS[0]


def test_a_lookup_s_phrase_that_dense_s_first_holds_too_pins_nothing() -> None:
    """ "факсы настройка LibreOffice": BM25's sole complete note is the main page, which quotes the fax page's title
    in its list of topics; dense's first, the fax page, holds the phrase in its own title. The phrase does not tell
    them apart: dense keeps its first."""
    fused = _lookup("hiding formulas", "Select Hide formula to hide.", dense_first=("Hiding Formulas", ""))
    assert not any(c.exact for c in fused) and paths(fused)[0] == DISTRACTORS[0]
    both = _lookup("hiding formulas", "", heading="Hiding Formulas", dense_first=("Hiding Formulas", ""))
    assert not any(c.exact for c in both) and paths(both)[0] == DISTRACTORS[0]


def test_a_lookup_s_phrase_in_its_note_s_title_is_pinned_over_dense_s_first_quoting_it() -> None:
    """ "faxes configuring LibreOffice" (USE, LibreOffice Help's English half): the fax page's title holds the phrase
    ("Sending Faxes and Configuring LibreOffice for Faxing"); dense's first, the main page, holds it in its list of
    topics. A title naming the phrase is the note about it, a text quoting it is not: the fax page is pinned (at main,
    hybrid's second)."""
    fused = _lookup(
        "hiding formulas",
        "Select the options.",
        heading="Hiding Formulas",
        dense_first=("Calc Help", "Topics: Hiding Formulas; Renaming Sheets."),
    )
    assert paths(fused)[0] == "answer.md" and fused[0].exact


def test_a_label_s_words_side_by_side_in_bm25_s_first_pin_it_where_dense_misses_it() -> None:
    """Session 33 (fus33b): "Пропускать пустые строки Пропускать" (a LibreOffice Help known item: a UI label, three
    terms, so no lookup), whose answer is BM25's first and nowhere in USE's dense leg (hybrid's 6th at main). Its
    chunk (9.0) is not provably complete (the bound is 15.0 less 5.0), but it holds the label's words side by side
    and dense's first does not: pinned. A question of more words is left as it was."""
    query = "Пропускать пустые строки Пропускать"
    evidence = analyse(query)
    assert len(evidence.terms) == 3 and not is_lookup(evidence, FusionParams())
    answer = ScoredChunk("answer.md#0", 9.0, {"path": "answer.md", "lang": "ru", "heading": "Сводная таблица",
                                              "text": "Флажок «Пропускать пустые строки» в диалоге источника."})  # fmt: skip
    words = [chunk(p, 8.0 - i * 0.1, "ru") for i, p in enumerate(DISTRACTORS[:8])]  # one or two words each
    results = [dense_leg(*DISTRACTORS[10:30], lang="ru"), (Leg("lexical", 0, "ru"), [answer, *words]),
               *[(Leg("probe", term=t), [chunk(p, 5.0 - i * 0.1, "ru") for i, p in enumerate(DISTRACTORS[:8])])
                 for t in evidence.terms]]  # fmt: skip
    fused = fuse(results, evidence, 10)
    assert paths(fused)[0] == "answer.md" and fused[0].exact
    apart = ScoredChunk("answer.md#0", 9.0, {"path": "answer.md", "lang": "ru", "heading": "Сводная таблица",
                                             "text": "Пропускать строки таблицы, если они пустые."})  # fmt: skip
    results[1] = (Leg("lexical", 0, "ru"), [apart, *words])
    assert not any(c.exact for c in fuse(results, evidence, 10))


@pytest.mark.parametrize(("across", "twin"), [(True, False), (True, True), (False, False), (False, True)])
def test_a_title_s_phrase_is_pinned_in_its_one_page_not_in_one_of_two_pages_of_that_title(
    across: bool, twin: bool
) -> None:
    """Two pages of one title in one language ("Official website" in ``en/`` and ``archive/``), their BM25 chunks
    below the bound that proves every term (no note sole complete): the whole-phrase pin fell back to BM25's first,
    ahead of its twin by a hair, and pinned it (an exact match: the rerank blend keeps it ahead whatever the
    reranker says), in a KB of the query's language and, since the title exemption left its match undamped, across
    languages too. The twin holds the phrase as well, in its heading path (the title, as the indexer writes it on
    every chunk): it names neither alone, so neither is pinned. One page of that title alone is pinned (session 33,
    rev33c)."""
    query = "Official website"
    evidence = analyse(query)
    own, other = "en", "ru"
    page, copy = "own/official.md", "archive/official.md"

    def titled(path: str, score: float) -> ScoredChunk:
        return ScoredChunk(f"{path}#0", score, {"path": path, "lang": own, "title": query, "heading": query,
                                                "text": "The address of the site."})  # fmt: skip

    noise = [f"n{i:02d}.md" for i in range(30)]
    ranked = [chunk("other/domains.md", 0.88, other if across else own)] + [
        chunk(p, 0.86 - i * 0.005, other if across and i % 2 else own) for i, p in enumerate(noise)
    ]
    ranked.insert(12, titled(page, 0.80))
    lexical = [titled(page, 2.5), chunk(noise[2], 1.0, own)]
    if twin:
        ranked.insert(5, titled(copy, 0.83))
        lexical.insert(1, titled(copy, 2.4))
    common = tuple(f"c{i:02d}.md" for i in range(PROBE_DEPTH))  # every term common: no exact match by the probes
    legs = [(Leg("dense", 0), ranked), (Leg("lexical", 0, own), lexical)]
    fused = fuse([*legs, *probes(query, {t: 3.0 for t in tokenize(query)}, common)], evidence, 10)
    pinned = [c.payload["path"] for c in fused if c.exact]
    assert pinned == ([] if twin else [page])


def test_a_lookup_s_words_across_a_sentence_or_a_paragraph_are_not_side_by_side() -> None:
    """Review of fus33b (rev33a): "side by side" was a run of tokens over the whole text, so "Select Hide." ending
    one paragraph and "Formulas are shown." opening the next held "hiding formulas" as an index entry does (in the
    bilingual capture: "...must be published. | Site Collaboration" pinned *Manage sites* for "Collaborate on a
    Publish site", wrongly). Words in two sentences are co-occurrence, not the phrase (fus33b's own reading): no
    pin, dense keeps its first. The phrase inside one sentence, or a list of its words, is still pinned."""
    for text in ("Select Hide.\n\nFormulas are shown.", "Select Hide. Formulas are shown.", "Hide it!\nFormulas"):
        fused = _lookup("hiding formulas", text)
        assert not any(c.exact for c in fused) and paths(fused)[0] == DISTRACTORS[0], text
    kept = _lookup("hiding formulas", "First, save.\n\nThen select Hide formula to protect it.")
    assert paths(kept)[0] == "answer.md" and kept[0].exact
    listed = _lookup("hiding formulas", "Options:\n\n- Hide\n\n- Formulas")  # a list of the words: no sentence ends
    assert paths(listed)[0] == "answer.md" and listed[0].exact


def test_a_lookup_s_words_across_two_headings_of_the_path_are_side_by_side() -> None:
    """Review of fus33b (rev33a), a guard: the heading path is read whole, a title and its section as one name
    ("Command palette > Pinned commands" is the palette's pinned commands; "Obsidian URI > Open Vault Manager").
    Read heading by heading, 3 of the 4 pins it removed from the captures were right (and first already)."""
    fused = _lookup("palette pinning", "Select the options.", heading="Command palette > Pinned commands")
    assert paths(fused)[0] == "answer.md" and fused[0].exact


def _a_code_question_over_both_languages(
    dense_lang: str, reasons: dict[str, str] | None = None
) -> tuple[list[Candidate], str, str]:
    """ "does Sync encrypt my vault with AES-256" in a KB written in both languages (bil33's `code-en`, e5): the one
    note holding the code is the Russian answer (*Безопасность и конфиденциальность*), dense's 20th and BM25's 7th
    (its match x ``cross_language``); the question's other words are common. Dense's notes are ``dense_lang``: e5
    reads English (its first note English, as for 98 of 110 such questions), a KB's Russian half reads Russian."""
    query = "does Sync encrypt my vault with AES-256"
    evidence = analyse(query)
    assert evidence.language == "en" and {term_id("ae"), term_id("256")} <= evidence.identifiers
    answer = "ru/security.md"
    noise = [f"{dense_lang}/n{i:02d}.md" for i in range(30)]
    dense = _russian_dense(answer, 20, noise, lang="ru")
    dense = dense[0], [chunk(c.payload["path"], c.score, c.payload["lang"] if c.payload["path"] == answer else
                             dense_lang) for c in dense[1]]  # fmt: skip
    ranked = [*noise[:6], answer, *noise[6:12]]
    bm25 = (Leg("lexical", 0, "en"), [chunk(p, 9.0 - 0.5 * i, "ru" if p == answer else dense_lang)
                                      for i, p in enumerate(ranked)])  # fmt: skip
    common = {s: [(p, 3.0) for p in noise[:PROBE_DEPTH]] for s in ("sync", "encrypt", "vault")}
    held = _probed(evidence, {"ae": [(answer, 5.0)], "256": [(answer, 4.0)], **common})
    return fuse([dense, bm25, *held], evidence, 10, reasons=reasons), answer, noise[0]


def test_a_question_s_code_pins_its_note_of_the_other_language_while_dense_reads_the_question_s_own() -> None:
    """bil33's e5 ``code-en`` (−0.108): an English question naming a code whose page is Russian. e5 ranks its own
    language first, so the Russian page is near neither leg's top and fus32a's gate took the pin: the identifier is
    the question's one bridge to the other language. It keeps its pin there while dense's first note is in the
    question's language (session 34, fus34c: 9 searches better, none worse, over every capture)."""
    fused, answer, _ = _a_code_question_over_both_languages("en")
    assert paths(fused)[0] == answer and fused[0].exact


def test_a_question_s_code_in_passing_pins_no_note_of_the_other_language_where_dense_reads_that_language() -> None:
    """The guard: "CD-ROM", "OK", "ELF" named by an English question over a Russian half (Debian's docs, man pages:
    dense's first note Russian, often the answer). Dense reads the other language there, and its ranking stands: a
    note holding the code far down both legs is not pinned (bil33's C3, refused: 5 held-out searches worse)."""
    fused, holder, first = _a_code_question_over_both_languages("ru")
    assert paths(fused)[0] == first and not any(c.exact for c in fused)
    assert holder not in paths(fused)[:3]


def _a_title_asked_in_the_other_language(query: str, bm25: dict[str, float], *, titled: str | None = None,
                                         english_rank: int = 1, both: bool = True,
                                         translation: bool = False) -> list[str]:  # fmt: skip
    """A KB written in two languages (each page in one): ``query`` (Russian) is the title of an English page, which
    dense ranks ``english_rank`` (0: first) among Russian notes and, with ``both``, English ones from its 12th note on
    (a third of the leg: a KB written in both languages; else the page is its one English note); BM25 (``bm25``:
    note → score) finds the query's words in Russian notes only, one of them titled ``titled`` (None: none titled
    so). With ``translation``, the query's English translation has its own dense leg, English notes first (an
    expanded search). Every term common (no exact match, no rare-term agreement). The fused order of the notes."""
    answer = "en/properties.md"
    notes = [(f"en/n{i:02d}.md", "en") if both and i >= 12 and i % 2 == 0 else (f"ru/n{i:02d}.md", "ru")
             for i in range(30)]  # fmt: skip
    # dense's first a Russian note about something near (0.90), then the English page (0.80: dense's second), the
    # other notes further down (0.72, 0.71, ...)
    ranked = [chunk(p, 0.90 if i == 0 else 0.73 - i * 0.01, lang) for i, (p, lang) in enumerate(notes)]
    ranked.insert(
        english_rank, chunk(answer, 0.80 if english_rank == 1 else ranked[english_rank - 1].score - 0.001, "en")
    )

    def lexical(path: str, score: float) -> ScoredChunk:
        return _titled(path, score, "ru", titled if path == "ru/n03.md" and titled else path.removesuffix(".md"))

    terms = len(set(tokenize(query)))  # each term's probe 3.0: a chunk of every term at its best scores 3.0 each
    legs = [(Leg("dense", 0), ranked), (Leg("lexical", 0, "ru"), [lexical(p, s * terms) for p, s in bm25.items()])]
    if translation:
        legs.append((Leg("dense", 1, "en"), [chunk(f"en/t{i:02d}.md", 0.85 - i * 0.01, "en") for i in range(20)]))
    common = tuple(f"c{i:02d}.md" for i in range(PROBE_DEPTH))
    fused = fuse([*legs, *probes(query, {t: 3.0 for t in tokenize(query)}, common)], analyse(query), 10)
    assert not any(c.exact for c in fused)
    return paths(fused)


#: BM25 finds the query's words alike in many Russian notes (a reference's section of that name, a glossary line,
#: link lists): none stands out.
_MENTIONS = {"ru/n03.md": 3.0, "ru/n05.md": 2.95, "ru/n07.md": 2.9, "ru/n09.md": 2.85, "ru/n11.md": 2.8}


@pytest.mark.parametrize("query", ["Свойства", "Палитра команд", "Ежедневные заметки"])
def test_a_title_asked_in_the_language_its_page_is_not_written_in_is_dense_s_not_its_mentions(query: str) -> None:
    """USE over a KB written in two languages: "Свойства", the title of the English *Properties* page, asked in
    Russian. Dense ranks the English page second; BM25 finds the word alike in five Russian notes that mention it,
    and their matches counted in full took the first places from dense's second (the answer 16th). The query names
    no note of its language, its BM25 matches are many alike, and dense has a note of the other language near its
    top: those matches count as matches in another language (EVAL.md, session 34, fus34b)."""
    fused = _a_title_asked_in_the_other_language(query, _MENTIONS)
    assert fused.index("en/properties.md") <= 1
    assert all(fused.index("en/properties.md") < fused.index(note) for note in _MENTIONS if note in fused[1:])


@pytest.mark.parametrize(("query", "case"), [
    ("Свойства", "titled"),  # a Russian note is titled by the query: it names that note
    ("Свойства", "sure"),  # BM25 sure of one note (an index entry, a known item's words): not many alike
    ("Свойства", "far"),  # no note of the other language among dense's first five
    ("Свойства", "few"),  # the English page dense's one English note: a translated half's leftover, not a KB of both
    ("Свойства", "translated"),  # the same, the translation's own dense leg English: the query's own leg is read
    ("как переименовать свойства заметки в мобильном приложении", "question"),  # a question: more terms than a label
])  # fmt: skip
def test_a_label_that_names_a_note_or_that_bm25_is_sure_of_keeps_its_match(query: str, case: str) -> None:
    """The damping's guards: where the query names a note of its language, BM25's first stands out, dense has no
    note of the other language near its top or few on its scale, or the query is a question, BM25's Russian matches
    count in full as before: its first note comes ahead of the English page."""
    bm25 = {"ru/n03.md": 3.0, "ru/n05.md": 1.5, "ru/n07.md": 1.4} if case == "sure" else _MENTIONS
    fused = _a_title_asked_in_the_other_language(
        query,
        bm25,
        titled=query if case == "titled" else None,
        english_rank=8 if case == "far" else 1,
        both=case not in ("few", "translated"),
        translation=case == "translated",
    )
    assert "en/properties.md" not in fused[: fused.index("ru/n03.md")]


def _a_page_named_by_its_alias(aliases: list[str] | None, alias_rank: int = 4) -> list[str]:
    """A KB written in two languages, as :func:`_a_title_asked_in_the_other_language`'s: the Russian query "Свойства"
    is an alias of the Russian page ``ru/metadata.md`` (titled "Метаданные"; ``aliases``: its payload's, None: a
    note indexed without them), which BM25 finds first among the five alike Russian mentions and dense ranks
    ``alias_rank`` (0: first), after dense's first Russian note (0.90) and the English *Properties* page (0.80).
    The fused order of the notes."""
    query, page = "Свойства", "ru/metadata.md"
    notes = [(f"en/n{i:02d}.md", "en") if i >= 12 and i % 2 == 0 else (f"ru/n{i:02d}.md", "ru") for i in range(30)]
    ranked = [chunk(p, 0.90 if i == 0 else 0.73 - i * 0.01, lang) for i, (p, lang) in enumerate(notes)]
    ranked.insert(1, chunk("en/properties.md", 0.80, "en"))
    ranked.insert(alias_rank, chunk(page, ranked[alias_rank - 1].score - 0.0005, "ru"))
    terms = len(set(tokenize(query)))
    own = _titled(page, 3.0 * terms, "ru", "Метаданные")
    if aliases is not None:
        own.payload["aliases"] = aliases
    mentions = [_titled(p, (s - 0.02) * terms, "ru", p.removesuffix(".md")) for p, s in _MENTIONS.items()]
    legs = [(Leg("dense", 0), ranked), (Leg("lexical", 0, "ru"), [own, *mentions])]
    common = tuple(f"c{i:02d}.md" for i in range(PROBE_DEPTH))
    fused = fuse([*legs, *probes(query, {t: 3.0 for t in tokenize(query)}, common)], analyse(query), 10)
    assert not any(c.exact for c in fused)
    return paths(fused)


@pytest.mark.parametrize("aliases", [["Свойства"], ["metadata", "свойства"]])
def test_a_label_naming_a_page_of_its_language_by_its_alias_keeps_its_match(aliases: list[str]) -> None:
    """rev34e: a label naming a page of its language by an alias (frontmatter ``aliases``, which no text BM25 reads
    of the page holds) over a KB of both languages, BM25 finding its words alike in the page and four mentions:
    fus34b's ``_unnamed`` read the page as "titled by nothing" and counted its own match at a tenth with the
    mentions', so dense's English *Properties* page (its second) and first Russian note went ahead of it (3rd;
    1st with the rule off). The payload's aliases name the page as its title would: the label names a note of its
    language, its match counts (EVAL.md, session 34 review)."""
    fused = _a_page_named_by_its_alias(aliases)
    assert fused[0] == "ru/metadata.md"


def test_a_page_indexed_without_its_aliases_is_read_as_before() -> None:
    """The same page indexed before its aliases were carried (no ``aliases`` in its payload), or an alias that is
    not the query: the label names no note of its language, as fus34b reads it, and dense's English page comes
    ahead of the page BM25 finds first among the alike mentions."""
    for fused in (_a_page_named_by_its_alias(None), _a_page_named_by_its_alias(["Метаданные заметки"])):
        assert fused.index("en/properties.md") < fused.index("ru/metadata.md")


def test_across_reads_a_title_not_an_alias() -> None:
    """rev34e: ``_across`` (dense's first note in another language) exempts from its damping only a note of the
    query's language *titled* by the query. The vault gives a page's translated title as an alias of the other
    language's page: "Markdown" asked over a KB of both, dense's first the Russian page titled "Markdown" (the
    answer), BM25's first the English *Basic formatting syntax*, aliased "Markdown", among English mentions. Read as
    a name, the alias kept that page's match and it came first (bil33's expanded captures: 0 better / 2 worse); its
    match counts as the other mentions' do, and the Russian page stays first."""
    query = "Markdown"
    answer, aliased = "ru/markdown.md", "en/basic.md"
    ranked = [_titled(answer, 0.90, "ru", "Markdown")]
    ranked += [chunk(f"ru/n{i:02d}.md", 0.80 - i * 0.01, "ru") if i % 2 else chunk(f"en/n{i:02d}.md", 0.80 - i * 0.01, "en")
               for i in range(30)]  # fmt: skip
    own = _titled(aliased, 3.0, "en", "Basic formatting syntax")
    own.payload["aliases"] = ["Markdown"]
    mentions = [_titled(f"en/m{i}.md", 2.9 - i * 0.05, "en", f"m{i}") for i in range(4)]
    legs = [(Leg("dense", 0), ranked), (Leg("lexical", 0, "en"), [own, *mentions])]
    common = tuple(f"c{i:02d}.md" for i in range(PROBE_DEPTH))
    fused = paths(fuse([*legs, *probes(query, {t: 3.0 for t in tokenize(query)}, common)], analyse(query), 10))
    assert fused[0] == answer, fused


def _a_code_held_in_passing_by_a_note_of_the_other_language(
    query: str, code: dict[str, float], own: str | None, own_dense: int, own_bm25: int
) -> tuple[list[Candidate], str]:
    """An English question naming a code (``code``: its stems' probe scores) in a KB written in both languages, dense
    reading English (its notes English but the holder's: e5). The Russian note ``ru/passing.md`` names the code in
    passing (dense's 20th, BM25's 9th, its match x ``cross_language``); the English note ``own`` (None: none), if
    any, holds it too, dense's ``own_dense``-th and BM25's ``own_bm25``-th, the question's common words filling
    BM25's head. Returns the fusion and dense's first note."""
    evidence = analyse(query)
    assert evidence.language == "en" and questioned(evidence, FusionParams())
    holder = "ru/passing.md"
    noise = [f"en/n{i:02d}.md" for i in range(30)]
    ranked = list(noise)
    if own is not None:
        ranked.insert(own_dense - 1, own)
    ranked.insert(19, holder)
    dense = Leg("dense", 0), [chunk(p, 0.90 - i * 0.01, "ru" if p == holder else "en") for i, p in enumerate(ranked)]
    lexical = [p for p in noise[:12] if p != own]
    if own is not None:
        lexical.insert(own_bm25 - 1, own)
    lexical.insert(8, holder)
    bm25 = (Leg("lexical", 0, "en"), [chunk(p, 9.0 - 0.4 * i, "ru" if p == holder else "en")
                                      for i, p in enumerate(lexical)])  # fmt: skip
    holders = [holder] if own is None else [own, holder]
    common = {s: [(p, 3.0) for p in noise[:PROBE_DEPTH]] for s in tokenize(query) if term_id(s) not in
              evidence.identifiers}  # fmt: skip
    held = _probed(evidence, {**{s: [(h, v) for h in holders] for s, v in code.items()}, **common})
    return fuse([dense, bm25, *held], evidence, 10), ranked[0]


def test_a_code_s_note_of_the_other_language_is_not_pinned_over_the_question_s_own_holder() -> None:
    """rev34d: the bridge is the question's one way to the other language only where no note of its own language
    holds the code. Here the English page holds "AES-256" too, far down both legs (fus32a's gate unpins it: named in
    passing), and a Russian note names it in passing: fus34c's ``_bridged`` pinned the Russian note alone, first
    and ``exact``, over the question's own holder, which dense, reading English, had judged."""
    fused, _ = _a_code_held_in_passing_by_a_note_of_the_other_language(
        "does Sync encrypt my vault with AES-256", {"ae": 5.0, "256": 4.0}, "en/encryption.md", 8, 5
    )
    assert not any(c.exact for c in fused)
    assert "ru/passing.md" not in paths(fused)[: paths(fused).index("en/encryption.md")]


def test_a_code_held_far_down_in_a_kb_of_one_language_is_not_pinned() -> None:
    """The bridge needs a note of another language: in a KB of the question's language alone a note naming the code
    far down both legs stays unpinned (fus32a's gate), dense reading that language or not."""
    query = "does Sync encrypt my vault with AES-256"
    evidence = analyse(query)
    noise = [f"en/n{i:02d}.md" for i in range(30)]
    holder = "en/passing.md"
    dense = dense_leg(*noise[:19], holder, *noise[19:])
    bm25 = (Leg("lexical", 0, "en"), [chunk(p, 9.0 - 0.4 * i) for i, p in enumerate([*noise[:8], holder])])
    common = {s: [(p, 3.0) for p in noise[:PROBE_DEPTH]] for s in ("sync", "encrypt", "vault")}
    fused = fuse([dense, bm25, *_probed(evidence, {"ae": [(holder, 5.0)], "256": [(holder, 4.0)], **common})],
                 evidence, 10)  # fmt: skip
    assert paths(fused)[0] == noise[0] and not any(c.exact for c in fused)


def test_a_code_the_question_s_own_language_holds_near_the_top_builds_no_bridge() -> None:
    """Session 34 (the lead, after rev34d): the bridge is the question's one way to the other language only where no
    note of its own language holds the code, near the legs' top or not. Here the English page holding "MCP" is
    dense's second and BM25's first, pinned; the Russian note naming it in passing was pinned beside it as a second
    exact match by rev34d's narrower form (only a far own-language holder refused the bridge). Over the captures that
    form pinned 16 notes, 9 relevant, its 7 wrong ones in KBs of one language (sample-kb "MCP", Debian "synaptic",
    LibreOffice ".oxt", man "RPC"); refusing the bridge wherever an own-language note holds the code pins 6, all
    relevant (EVAL.md, session 34, rev34d)."""
    fused, _ = _a_code_held_in_passing_by_a_note_of_the_other_language(
        "which clients can connect to the MCP server", {"mcp": 5.0}, "en/mcp.md", 2, 1
    )
    exact = [c.payload["path"] for c in fused if c.exact]
    assert "ru/passing.md" not in exact and exact == ["en/mcp.md"], exact


def _pin_reasons(case: str) -> tuple[dict[str, str], dict[str, str]]:
    """The scenario ``case`` fused with its reasons asked for: (the reasons ``fuse`` reported, those expected)."""
    reasons: dict[str, str] = {}
    if case == "exact":
        query = "Syncthing"
        results = [dense_leg(*DISTRACTORS[:6], "sync.md"), (Leg("lexical", 0, "en"), [chunk("sync.md", 5.8)]),
                   *probes(query, {"syncth": 6.0}, ("sync.md",))]  # fmt: skip
        fuse(results, analyse(query), 10, reasons=reasons)
        return reasons, {"sync.md": fusion.EXACT}
    if case == "joined out":  # a, b, c exact by their BM25 share alone: four in all, the probes' nav.md stands
        lexical = [chunk("nav.md", 9.0), chunk("a.md", 6.0), chunk("b.md", 6.0), chunk("c.md", 6.0)]
        _alt_f10(lexical, [("nav.md", 6.0), ("a.md", 1.0), ("b.md", 1.0), ("c.md", 1.0)], reasons)
        return reasons, {"nav.md": fusion.EXACT, **dict.fromkeys(["a.md", "b.md", "c.md"], fusion.JOINED_OUT)}
    if case == "too many":  # 404 held by five notes
        query = "what does 404 do in code"
        legs = [dense_leg(*DISTRACTORS[:20]), (Leg("lexical", 0, "en"), [chunk(p, 3.0 - i / 10) for i, p in
                                                                        enumerate(DISTRACTORS[:10])])]  # fmt: skip
        crowd = (Leg("probe", term=term_id("404")), [chunk(p, 6.0) for p in DISTRACTORS[20:25]])
        common = probes("what does do in code", {"code": 2.0}, tuple(DISTRACTORS[:8]))
        fuse([*legs, crowd, *common], analyse(query), 10, reasons=reasons)
        return reasons, dict.fromkeys(DISTRACTORS[20:25], fusion.TOO_MANY)
    if case == "no lookup":  # a question of plain words (no identifier), every word held by one note: no lookup
        query = "can I use time machine or file history to back up my vault"
        evidence = analyse(query)
        assert not is_lookup(evidence, FusionParams())
        results = [dense_leg(*DISTRACTORS[:9], "target.md"), (Leg("lexical", 0, "en"), [chunk("target.md", 9.0)]),
                   *probes(query, {t: 3.0 for t in tokenize(query)}, ("target.md",))]  # fmt: skip
        fuse(results, evidence, 10, reasons=reasons)
        return reasons, {"target.md": fusion.NO_LOOKUP}
    if case == "phrase":
        _lookup("hiding formulas", "Select Hide formula to hide and to protect formulas from changes.",
                reasons=reasons)  # fmt: skip
        return reasons, {"answer.md": fusion.PHRASE}
    if case == "phrase damped":  # the phrase's one note as above, dense's first a Russian note: asked across
        query, lexical = "hiding formulas", [chunk(p, 6.5 - i * 0.1) for i, p in enumerate(DISTRACTORS[:8])]
        payload = {"path": "answer.md", "lang": "en", "heading": "Protecting Cells from Changes",
                   "text": "Select Hide formula to hide and to protect formulas from changes."}  # fmt: skip
        leg, cosines = dense_leg(*DISTRACTORS[:24], "answer.md", *DISTRACTORS[24:])
        cosines[0] = chunk("ru/first.md", cosines[0].score, "ru")
        results = [(leg, cosines), (Leg("lexical", 0, "en"), [ScoredChunk("answer.md#0", 7.1, payload), *lexical]),
                   (Leg("probe", term=term_id("hide")), lexical),
                   (Leg("probe", term=term_id("formula")), [chunk(p, 4.8 - i * 0.05) for i, p in
                                                            enumerate(DISTRACTORS[8:16])])]  # fmt: skip
        fuse(results, analyse(query), 10, reasons=reasons)
        return reasons, {"answer.md": fusion.PHRASE_DAMPED}
    if case in ("about", "away"):  # "wifi" named in passing: the holder dense's third, or far down both legs
        _, holder, _ = _a_question_naming("на ноутбуке wifi выключается сочетанием клавиш?", "wifi",
                                          3 if case == "about" else 20, 7, reasons)  # fmt: skip
        return reasons, {holder: fusion.ABOUT if case == "about" else fusion.AWAY}
    if case == "answered":  # "wifi"'s one holder in neither leg: its probe answered it, the question gate took it
        query = "на ноутбуке wifi выключается сочетанием клавиш?"
        noise = [f"ru/n{i:02d}.md" for i in range(30)]
        dense = Leg("dense", 0), [chunk(p, 0.90 - i * 0.01, "ru") for i, p in enumerate(noise)]
        bm25 = (Leg("lexical", 0, "ru"), [chunk(p, 9.0 - 0.5 * i, "ru") for i, p in enumerate(noise[:12])])
        words = {stem: [(p, 3.0) for p in noise[:PROBE_DEPTH]] for stem in tokenize(query) if stem != "wifi"}
        held = _probed(analyse(query), {"wifi": [("ru/holder.md", 5.0)], **words})
        fuse([dense, bm25, *held], analyse(query), 40, reasons=reasons)
        return reasons, {"ru/holder.md": fusion.ANSWERED}
    assert case == "bridged"
    _, answer, _ = _a_code_question_over_both_languages("en", reasons)
    return reasons, {answer: fusion.BRIDGED}


@pytest.mark.parametrize(
    "case",
    ["exact", "joined out", "too many", "no lookup", "phrase", "phrase damped", "about", "away", "answered", "bridged"],
)
def test_fuse_reports_why_each_exact_match_stands_or_falls(case: str) -> None:
    """Session 35 (fus35b): which exact matches stand is one decision, :func:`kbsearch.fusion.standing_pins`, its
    gates in a fixed order (the BM25 share's join, the lookup gate, the whole phrase, the question gate); ``fuse``
    reports each candidate's reason when asked (``reasons``), the gate that decided it last. A note that stands is
    ``exact`` in the fusion; one that falls is not."""
    reported, expected = _pin_reasons(case)
    assert reported == expected


@pytest.mark.parametrize(
    ("query", "code"),
    [("what happens when I press OK in the export dialog", {"ok": 5.0}),
     ("can I burn my vault to a CD for the archive", {"cd": 5.0})],
)  # fmt: skip
def test_a_question_s_common_two_letter_word_builds_no_bridge_to_a_note_of_the_other_language(
    query: str, code: dict[str, float]
) -> None:
    """rev34d's finding 5 (session 35, fus35b): "OK" and "CD" are identifiers (two capitals), and a Russian note
    saying "нажмите OK" far down both legs was pinned first, ``exact``, by the bridge (:func:`_bridged`), over the
    English answer dense put first: UI vocabulary both languages write, not a code. A word bridges when it is a
    code: a digit, ``_``, a join sign, CamelCase, or three capitals or more, as every right bridge over the captures
    is ("PT1H30M", "duration('5h')", "CNAME", "AES-256", "NAS", "USB"; EVAL.md, session 35, fus35b)."""
    fused, first = _a_code_held_in_passing_by_a_note_of_the_other_language(query, code, None, 0, 0)
    assert paths(fused)[0] == first and not any(c.exact for c in fused)


@pytest.mark.parametrize(
    ("query", "code"),
    [("which CNAME record do I create for my own domain on Publish", {"cname": 5.0}),
     ("is it a good idea to back up my vault to a NAS", {"nas": 5.0}),
     ("how do I turn a video length like PT1H30M into hours and minutes", {"pt1h30m": 5.0})],
)  # fmt: skip
def test_a_question_s_code_still_bridges_to_its_note_of_the_other_language(query: str, code: dict[str, float]) -> None:
    """The right bridges the captures hold (bil33's e5 ``code-en`` and ``cross-en-to-ru``) keep their pin: a code of
    three capitals or more, or with a digit."""
    fused, _ = _a_code_held_in_passing_by_a_note_of_the_other_language(query, code, None, 0, 0)
    assert paths(fused)[0] == "ru/passing.md" and fused[0].exact


def _a_russian_question_over_an_english_holder(query: str) -> tuple[list[Candidate], str]:
    """A Russian question whose identifiers one English note, ``en/passing.md``, holds in passing: dense (reading
    Russian) ranks it 20th, BM25 9th; the question's other words are common, held by the Russian notes both legs put
    first (``ru/n00.md`` first). Returns the fusion and the holder."""
    evidence = analyse(query)
    holder, noise = "en/passing.md", [f"ru/n{i:02d}.md" for i in range(30)]
    ranked = [*noise[:19], holder, *noise[19:]]
    dense = Leg("dense", 0), [chunk(p, 0.90 - i * 0.01, "en" if p == holder else "ru") for i, p in enumerate(ranked)]
    lexical = [*noise[:8], holder, *noise[8:12]]
    bm25 = (Leg("lexical", 0, "ru"), [chunk(p, 9.0 - 0.4 * i, "en" if p == holder else "ru")
                                      for i, p in enumerate(lexical)])  # fmt: skip
    common = {s: [(p, 3.0) for p in noise[:PROBE_DEPTH]] for s in tokenize(query) if term_id(s) not in
              evidence.identifiers}  # fmt: skip
    codes = {s: [(holder, 5.0)] for s in tokenize(query) if term_id(s) in evidence.identifiers}
    fused = fuse([dense, bm25, *_probed(evidence, {**codes, **common})], evidence, 10)
    return fused, holder


@pytest.mark.parametrize(
    ("query", "word", "bridges"),
    [("что делает команда synaptic в окне установки", "synapt", False),
     ("что значит код err-4012 в окне экспорта", "4012", True)],
)  # fmt: skip
def test_a_russian_question_bridges_to_an_english_note_by_a_code_only(query: str, word: str, bridges: bool) -> None:
    """The Russian side of rev34d's finding 5: a Latin word in a Russian question is an identifier ("synaptic"),
    and an English note naming it in passing, far down both legs while dense reads Russian, was pinned first by the
    bridge (session 34: "чем отличаются aptitude, synaptic, apt и dpkg" pinned the English *faq-synaptic*, wrong).
    Only a code bridges ("err-4012": a digit). ("OK" written so in a Russian question is a foreign proper name,
    :func:`kbsearch.lexical.proper_names`: the question asks about it, and its pin stands without the bridge.)"""
    evidence = analyse(query)
    assert evidence.language == "ru" and questioned(evidence, FusionParams()) and term_id(word) in evidence.identifiers
    fused, holder = _a_russian_question_over_an_english_holder(query)
    assert (paths(fused)[0] == holder and fused[0].exact) is bridges, paths(fused)
    assert any(c.exact for c in fused) is bridges


def test_a_close_call_s_silence_does_not_lift_an_exact_match_past_the_question_gate() -> None:
    """fus35c silences, across languages, the query's own-language notes among dense's close calls. Applied before
    the pin gates, the silence lifted a note holding the query's words into BM25's first two (its rivals counted
    nothing), where the question gate (:func:`_about`) let its pin stand though no leg put it near its top: e5's
    "Hardening the system" over Debian's Russian half pinned *maint-defaultrules* second. The gates read the notes as
    the damping left them; the silence comes after (the lead, session 35)."""
    query = "hardening the system"
    evidence = analyse(query)
    assert evidence.language == "en" and not evidence.identifiers and is_lookup(evidence, FusionParams())
    answer, rivals, wrong = "ru/hardening.md", ("ru/rival1.md", "ru/rival2.md"), "ru/defaultrules.md"
    noise = [f"ru/шум{i:02d}.md" for i in range(30)]
    ranked = [chunk(answer, 0.88, "ru"), chunk(rivals[0], 0.875, "en"), chunk(rivals[1], 0.872, "en")]
    ranked += [chunk(p, 0.80 - i * 0.005, "ru") for i, p in enumerate(noise)]
    ranked.insert(12, chunk(wrong, 0.74, "en"))  # far from dense's top
    bm25 = [chunk(rivals[0], 9.0, "en"), chunk(rivals[1], 8.8, "en"), chunk(wrong, 8.0, "en"), chunk(noise[0], 1.0)]
    held = probes(query, {t: 6.0 for t in tokenize(query)}, (wrong,))  # only it holds every (rare) term
    reasons: dict[str, str] = {}
    fused = fuse([(Leg("dense", 0), ranked), (Leg("lexical", 0, "en"), bm25), *held], evidence, 10, reasons=reasons)
    assert paths(fused)[0] == answer and not any(c.exact for c in fused), (paths(fused)[:4], reasons)
    assert reasons.get(wrong) == "away", reasons


@pytest.mark.parametrize(
    "query",
    ["что делает кнопка OK в окне экспорта", "почему после нажатия OK заметка не сохраняется",
     "можно ли записать хранилище на CD для архива"],
)  # fmt: skip
def test_a_russian_question_s_two_capitals_are_no_proper_name_and_pin_nothing_far_down_both_legs(query: str) -> None:
    """Session 35 review (rev35a): "OK" and "CD" are no code (fus35b: no bridge), but :func:`proper_names` read the
    capitalised Latin word as a foreign proper name the question asks about, and a question writing one is not
    :func:`questioned`: an English note holding "OK" in passing, far down both legs while dense reads Russian, was
    pinned first, ``exact``, by the lookup gate, over the Russian notes both legs put first. The English question
    "what happens when I press OK in the export dialog" was gated (fus32a); the Russian one now is too: two capitals
    alone name a UI's or both languages' common word, not a product ("Logseq", "PDF" stay names)."""
    fused, holder = _a_russian_question_over_an_english_holder(query)
    assert paths(fused)[0] == "ru/n00.md" and not any(c.exact for c in fused), paths(fused)
    assert holder not in paths(fused)[:3]  # it ranks by the legs, far down both


def _bm25_first_of_its_language_leads(query: str, holds: tuple[str, ...], evidence: QueryEvidence, lang: str) -> bool:
    """A known item or a question whose BM25 first (``target.md``, every term, well ahead) is a note of ``lang``,
    the query's own, which dense ranks last behind notes of that language; the next BM25 notes are of the other
    language. Whether the fused ranking puts BM25's first first."""
    other = "en" if lang == "ru" else "ru"
    results = [
        dense_leg(*DISTRACTORS, "target.md", lang=lang, step=0.002),
        (Leg("lexical", 0, evidence.language),
         [chunk("target.md", 10.8, lang), chunk("target.md", 8.0, lang, 1), chunk("group.md", 6.1, other),
          chunk("mask.md", 5.9, other)]),
        *probes(query, {t: 3.0 for t in holds}, ("target.md", "group.md")),
    ]  # fmt: skip
    return paths(fuse(results, evidence, 10))[0] == "target.md"


@pytest.mark.parametrize(
    ("query", "holds"),
    [("Edit Layer Attributes опускать", ("edit", "layer", "attribut", "опуска")),  # GIMP's known items
     ("Author: Emil Brink регистрации", ("author", "emil", "brink", "регистрац"))],  # Debian's
)  # fmt: skip
def test_an_english_label_beside_a_russian_word_is_a_russian_query_whose_bm25_first_is_not_damped(
    query: str, holds: tuple[str, ...]
) -> None:
    """A known item of a Russian half: a label quoted from the English interface ("Edit Layer Attributes") and a
    Russian word of the note. Its three Latin words outnumbered the Russian one, so the query was judged English, its
    BM25 leg counted across languages over a Russian KB, and BM25's first note (every term, well ahead) fell below
    dense's Russian notes: 43rd with e5 in GIMP's blind corpus, out of the ten in Debian's (EVAL.md, session 36, the
    lead). Beside a Russian word a Latin word opening with a capital is a quoted name: the query is Russian."""
    assert set(holds) <= set(tokenize(query))
    evidence = analyse(query)
    assert evidence.language == "ru"
    assert query_language("how to set up индексатор") == "en"  # a Russian name in an English question, as before
    assert query_language("How to set up Индексатор") == "en"  # the rule reads Latin capitals only
    assert _bm25_first_of_its_language_leads(query, holds, evidence, "ru")


@pytest.mark.parametrize(
    ("query", "holds"),
    [("How do I use Синхронизация", ("use", "синхронизац")), ("Can I rename Заметки", ("renam", "заметк")),
     ("Why does Синхронизация fail", ("fail", "синхронизац"))],
)  # fmt: skip
def test_an_english_question_naming_a_russian_term_stays_english_and_its_english_bm25_first_leads(
    query: str, holds: tuple[str, ...]
) -> None:
    """An English question that names a Russian term. Its first word and "I" open with a capital as in any English
    sentence: session 36's quoted-name rule (the lead) left "do use" beside "Синхронизация", a third Cyrillic, and
    judged it Russian; its Latin words then became identifiers and a Russian note holding only the Russian word came
    first over the English note holding the question's words (EVAL.md, session 36 review, rev36a). An English
    function word in lower case, or opening the query, is English grammar: the capitals are no quoted names."""
    assert set(holds) <= set(tokenize(query))
    evidence = analyse(query)
    assert evidence.language == "en"
    assert query_language("Edit Layer Attributes опускать") == "ru"  # a quoted label opens with a content word
    assert query_language("Save As Template сохраняет") == "ru"  # and capitalises its function words
    assert _bm25_first_of_its_language_leads(query, holds, evidence, "en")


@pytest.mark.parametrize(
    ("query", "holds"),
    [("Where is Настройки", ("настройк",)), ("What Is Хранилище", ("хранилищ",)),  # a Russian label, capitalised
     ("HOW DO I USE Синхронизация", ("use", "синхронизац")),  # a sentence typed in capitals
     ("WHERE CAN I FIND Настройки", ("find", "настройк"))],
)  # fmt: skip
def test_an_english_question_naming_a_russian_label_or_typed_in_capitals_is_english_and_its_english_bm25_first_leads(
    query: str, holds: tuple[str, ...]
) -> None:
    """Session 36's misreadings left (rev36a): "Where is Настройки" had two English words against one Russian, a
    third, and was judged Russian; "HOW DO I USE Синхронизация" had every English word a name (two capitals) and
    only the Russian one counted. Judged Russian, the English note holding the question's words lost to dense's
    Russian notes. In an English sentence a Cyrillic word opening with a capital is a label quoted from a Russian
    interface, as a Latin one is beside a Russian word; an English function word in capitals is no name where the
    query opens with one and holds another (EVAL.md, session 37, lang37)."""
    assert set(holds) <= set(tokenize(query))
    evidence = analyse(query)
    assert evidence.language == "en"
    assert query_language("What is индексатор") == "ru"  # documents the current judgement, left (EVAL.md, session 37)
    assert query_language("Настройки where is") == "ru"  # a query's first word opens with a capital in any language
    assert query_language("IT отдел настройки") == "ru"  # one function word in capitals may be an acronym
    assert query_language("поиск AND OR NOT") == "ru"  # function words in capitals after a Russian word are names
    assert _bm25_first_of_its_language_leads(query, holds, evidence, "en")


@pytest.mark.parametrize(
    ("query", "holds"),
    [('Где Кнопка "Open in new tab"', ("кнопк", "open", "new", "tab")),  # an English label holding "in"
     ("Ошибка out of memory При Индексации", ("ошибк", "memori", "индексац")),  # an English phrase, Title Case
     ("Как Настроить Синхронизацию on a Mac", ("настро", "синхронизац", "mac"))],
)  # fmt: skip
def test_a_russian_sentence_quoting_an_english_phrase_keeps_its_capitalised_russian_words_and_is_russian(
    query: str, holds: tuple[str, ...]
) -> None:
    """Session 37's rule (lang37) dropped every capitalised Cyrillic word but the first from a query the grammar
    check calls English, and that check fires on any lower-case English function word: the "in" of a quoted label
    ("Open in new tab"), the "of" of an error ("out of memory"). The Russian sentence's own capitalised words (Title
    Case, a button's name) were dropped, it was judged English, and its Russian BM25 first fell below dense's
    notes; Slack answered it in English; as the expansion's rewrite of an English question it was no translation
    (no Russian BM25 leg). The Russian label is dropped only in a sentence that opens in English (EVAL.md, session
    37 review, rev37a)."""
    assert set(holds) <= set(tokenize(query))
    evidence = analyse(query)
    assert evidence.language == "ru"
    assert query_language("Where is Настройки") == "en"  # a sentence opening in English still quotes a label
    ask = "Where is the button"
    question = analyse(ask)
    assert [lang for _, lang in lexical_variants(question, [ask, query])] == ["en", "ru"]
    assert translated(question, [ask, query]) == [None, "ru"]
    assert _bm25_first_of_its_language_leads(query, holds, evidence, "ru")


@pytest.mark.parametrize(
    ("query", "holds"),
    [("Drag-and-Drop Side-by-Side Picture-in-Picture режим", ("drag", "side", "pictur", "реж")),  # hyphenated
     ("Aperçu Préférences Général опускать", ("aperçu", "préférenc", "général", "опуска"))],  # accented
)  # fmt: skip
def test_a_hyphenated_or_accented_latin_label_beside_a_russian_word_is_a_russian_query(
    query: str, holds: tuple[str, ...]
) -> None:
    """Session 36's quoted-name rule (the lead) read a Latin word opening with a capital beside a Russian word as a
    label, but only ``[A-Z][A-Za-z]*``: "Drag-and-Drop" (a ``-`` between letters) and "Préférences" (an accented
    letter) still counted as English words, and three of them outvoted one Russian word as "Edit Layer Attributes"
    did before (EVAL.md, session 36 review, rev36a). They are quoted labels too (EVAL.md, session 37, lang37)."""
    assert set(holds) <= set(tokenize(query))
    evidence = analyse(query)
    assert evidence.language == "ru"
    assert query_language("drag-and-drop side-by-side picture-in-picture режим") == "en"  # lower case still counts
    assert _bm25_first_of_its_language_leads(query, holds, evidence, "ru")


@pytest.mark.parametrize("translation", ["How do I open Хранилище", "Where can I find Хранилище"])
def test_an_english_translation_keeping_a_russian_term_is_a_translation_whose_bm25_counts_for_english(
    translation: str,
) -> None:
    """The expansion's English translation of a Russian question may keep the Russian term it could not translate.
    Session 36's quoted-name rule (the lead) set "How" and "I" aside and judged "do open Хранилище" Russian, so the
    translation was no translation: the search asked no English BM25 leg, and an English note holding its words was
    left to dense (EVAL.md, session 36 review, rev36a)."""
    query = "как открыть хранилище"
    evidence = analyse(query)
    assert evidence.language == "ru"
    assert translated(evidence, [query, translation]) == [None, "en"]
    legs = lexical_variants(evidence, [translation])
    assert [lang for _, lang in legs] == ["ru", "en"]
    dense = (Leg("dense", 0), [chunk("en/a.md", 0.80, "en"), chunk("en/b.md", 0.72, "en")]
             + [chunk(f"en/{p}", 0.70 - i * 0.01, "en") for i, p in enumerate(DISTRACTORS)])  # fmt: skip
    en_bm25 = (Leg("lexical", 1, legs[1][1]), [chunk("en/b.md", 9.0, "en")])
    fused = fuse([dense, (Leg("lexical", 0, "ru"), []), en_bm25, *probes(query, {})], evidence, 10)
    assert paths(fused)[0] == "en/b.md"  # the translation's exact words in an English note: full weight
