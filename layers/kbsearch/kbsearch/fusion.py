"""Query-adaptive fusion: one ranking for identifiers, same-language questions and cross-language questions.

The retrieval call (:func:`kbsearch.qdrant.query.retrieve_legs`, one Qdrant round trip) returns every leg's
candidates with its own scores: a dense search per query variant (cosine), a BM25 search for the query and for
each translated variant (the expansion's variant in another script), and a one-term BM25 *probe* per query term
(the best chunks on that term alone, or nothing when no chunk has it: with their payloads for a lookup's required
terms, :func:`path_probes`; else ids and scores, a chunk naming its note through the payload another leg carries of
the same point). This module decides, per query and per note, how much each leg counts, from evidence the search
has anyway:

- **vocabulary**: the query's terms that exist in the index (a probe answered with chunks): ``coverage`` =
  present / all.
  An English question over Russian notes finds only its Latin names in them: low coverage, BM25 counts little.
- **attainable score**: the sum of the probes of the present terms is what a chunk holding every present term at
  its best frequency would score; ``confidence`` of a note = its BM25 score / that sum.
- **language**: a BM25 match counts in full in a note of the leg's language (``lang`` in the payload, recorded by
  the indexer; guessed from the text for notes indexed before), by ``cross_language`` in a note of another one.
  The lexical leg of a translated variant counts for the translation's language. When the query's own dense leg's
  first note is in another language than the query, or it is in the query's language but most of that leg's notes
  are not (the query's language is the KB's minority there), the query's own BM25 matches in notes of the query's
  language count by ``cross_language`` too (:func:`_across`: a question across languages in a KB of both). When
  the leg is divided so (its first note in one language, most of its notes in the other), a note the rare-term
  agreement names (it holds every rare term of the query) keeps its match; a note whose title is the query (word
  for word as BM25 reads them, unstemmed, :func:`kbsearch.lexical.words`) keeps it always: the query names it (a KB
  written in both languages, a page's own title asked in its language while dense puts a page of the other first;
  EVAL.md, session 33, fus33c). Where a query naming no code or menu path is asked across languages outright (dense's
  first note and most of its notes in the other language), a note of the query's language among dense's close calls
  counts no BM25 match at all, unless BM25 is sure of it alone or the query names it by its title: damped, the match
  would still decide between dense's close calls (an English title over a Russian half; session 35, fus35c).
  Where ``_across`` damps nothing and nothing is pinned, a label that names no note of
  its language (no such note titled by it or having it as an alias), whose BM25 matches are many notes alike, while
  dense has a note of the other language near its top in a KB of both, has its own-language BM25 matches counted so
  too (:func:`_unnamed`: a page's title asked in the language the page is not written in; its matches are notes
  mentioning it; session 34).
- **exact match**: when the query looks up something (it has an identifier — digits, ``_``, CamelCase, a path,
  a Latin word in a Russian query; a compound joined by ``-`` only in a query of two words or fewer —, it is a menu
  path, :func:`is_ui_path`, or it has at most ``exact_max_terms`` terms), every required term (its identifiers,
  else all its terms) is in the index, and at most ``exact_notes`` notes hold all of its rare required terms
  (fewer than ``PROBE_DEPTH`` chunks hold each: the probe saw every holder) at ``exact_confidence`` or more of
  their attainable score (by the probes; for a query naming identifiers, by the note's own BM25 chunk too, x the
  language factor in a note of another language; for a menu path, by that chunk in full in a note of any
  language: an English path kept in a Russian note names the note as a Latin identifier would, session 30; a
  common required term's probe sees only its best ``PROBE_DEPTH`` chunks; the notes only that share makes exact
  join the probes' only while all fit in ``exact_notes``, so they never unpin the probes' exact match), those notes
  are an exact match: they come first, ahead of anything dense ranks
  (identifiers, names, numbers, file and setting names), marked ``exact``; the rerank blend keeps them first.
  A question that names identifiers in passing (:func:`questioned`: more than ``exact_max_terms`` of its terms are
  no identifier, no menu path, no foreign proper name in a Russian question) pins a note only where the dense leg
  ranks it among its first ``question_pin_within`` or BM25 (by the lexical value, after the trust and the language
  factor) among its first ``question_pin_lexical`` (:func:`_about`; a note no leg brought, answered by its probe, is
  near neither): "wifi" in "на ноутбуке wifi выключается сочетанием клавиш?" names a note about something else,
  which neither leg puts near its top (EVAL.md, session 32).
  The same holds for a query with no identifier and no menu path asked across languages (:func:`_across`: its own
  dense leg's first note is in another language): "Database Overview" over LibreOffice Help's Russian half, whose
  two English words are rare there only because the notes are Russian, names an English page about something else
  (EVAL.md, session 32, fus32c).
  A question's identifier keeps its pin on a note of another language than the question wherever the legs rank it
  while the question's own dense leg reads the question's language (its first note is in it, :func:`_bridged`): a
  model ranking its own language first (e5) puts no page of the other near its top, and the identifier is the
  question's one bridge to it ("does Sync encrypt my vault with AES-256" → the Russian *Безопасность и
  конфиденциальность* in a KB written in both languages); where dense's first note is already of the other language,
  its ranking there stands ("CD-ROM", "ELF" named in passing by an English question over a Russian half; EVAL.md,
  session 34, fus34c). Nor where an exact match is in the question's language: that note names the code too, dense
  reading the language judged it, and a note of the other language pinned beside or over it names the code in
  passing (session 34, rev34d and the lead: 6 pins over the captures, all relevant, none in a KB of one language).
  A lookup's required terms are probed with their chunks' payloads, so that every holder is named (a note holding
  two identifiers in two chunks, one of them in no leg) and an exact match no dense or BM25 leg brought (common
  words filled BM25's head) is answered with its holder chunk. Every other probe asks for ids and scores (Qdrant reads a
  point's whole payload to return even its path: Edge ~8 µs a point, ~40 points a search); a question's probed
  chunk that no leg carried names no note, and counts against the rare-term agreement's few notes when it could
  hold its note's terms at ``exact_confidence``.
- **a lookup's whole phrase** (:func:`sole_complete`): with no exact match, a lookup (or a label of at most
  :data:`PATH_ITEM_WORDS` terms) of two terms or more whose every term is in the index, and one note alone whose
  BM25 chunk scores above what a chunk missing a required term could (the attainable score less that term's probe;
  when none does, BM25's first note), counting in full (the query's language), holding the query's
  words side by side (:func:`phrase_place`) where dense's first note (another) holds them not at all, or only in
  its text where this note's heading path holds them, is pinned as an exact match too: it holds the phrase ("hiding
  formulas"), the others one of its common words (session 33, fus33b).
- **which pins stand** (:func:`standing_pins`): the gates above are one decision, in a fixed order: the BM25
  share's join, the lookup gate, the whole phrase (with nothing pinned), the question gate (a question's pin near a
  leg's top or across the bridge), then, with nothing standing, ``_unnamed``; it reports each candidate note's reason
  (``fuse(..., reasons=...)``: :data:`EXACT`, :data:`PHRASE`, :data:`ABOUT`, :data:`BRIDGED` stand; session 35).
- otherwise each note scores ``dense + lexical_weight · lexical``: dense = the best variant's cosine, min-max
  scaled between the best cosine and the cosine at rank ``floor_rank`` (one scale for all variants; see
  :func:`dense_floor`: the scale does not depend on how many chunks a leg returns); lexical = the query's own BM25 leg's
  share of the attainable score x language factor x coverage, times a trust ``1 + confidence_gain · (best share
  − 0.5)`` (BM25 whose best chunk reaches little of the attainable score is noise), or a translation's leg (share
  of its own top hit), whichever is higher. Exact matches come first (their score + 1 + ``lexical_weight``), in
  that fused order among themselves, and those that also hold every rare term of the query (the rare-term
  agreement's notes) get that lead twice: of two notes holding "ETH_P_ALL", the one that also holds the query's
  rare word ("unmodified") comes first, whatever dense prefers, in the query's language (a note of another language,
  its values x ``cross_language``, can stay behind one dense and BM25 both rank first; session 22, the man-page
  corpus; the agreement's weight alone left dense the order when dense put the other note far ahead, until session
  29).
- **close calls**: the top of the dense scale (above ``close``, a fifth of the span from the best cosine) counts at
  ``close_weight``. Notes the dense leg ranks that close to its best are a close call, which a weak model's flat top
  cosines make of its first few notes (USE on "does Sync keep uploading my notes in the background when Obsidian is
  closed": 0.610, 0.588, 0.586, then the answer at 0.567): BM25 tells them apart, where the query's words pick one;
  a note further down the dense scale keeps its full distance, so BM25 noise (a paraphrase shares few words with its answer) cannot lift it over dense's close calls. Measured on
  every class with e5 and USE at once (EVAL.md, session 17).
- **BM25's clear lead** (:func:`clear_lead`): BM25's first note gains ``lead_bonus`` when BM25 is sure (its
  lexical value, after the trust, at least ``lead_value``), sure of that one note (ahead of BM25's second by
  ``lead_margin`` of its value) and the dense leg has it among its first ``lead_within`` notes: between the first
  few notes of a weak dense model, a sure BM25 decides ("how to search only inside a given property value": the
  Search plugin's note, dense's third, first). A note dense ranks lower gets nothing: there a strong dense model is
  right more often than BM25 (EVAL.md, session 25).
- **dense's stray first** (:func:`stray_lead`): BM25's first note gains ``stray_bonus`` wherever dense ranks it
  when BM25 is sure (``lead_value``) of it alone (ahead of BM25's second by ``stray_margin`` of its value) and the
  dense leg's first note is another one that holds few of the query's words (its lexical value under
  ``stray_share`` of BM25's first's) and is no clear first (dense's second note is a close call, above ``close``):
  a dense model matching the topic, not the question. A strong model's first note that misses the query's words
  usually stands clear of its second (EVAL.md, session 29). Where the clear lead's gate holds too (dense's second or
  third), the note gains the larger of the two bonuses.

Equal scores are ordered by note path (and chunks by point id), so a search ranks the same way every run.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kbsearch.lexical import (
    SparseVector,
    code_terms,
    identifier_terms,
    proper_names,
    query_language,
    query_vector,
    term_id,
    text_language,
    tokenize,
    words,
)
from kbsearch.qdrant.query import PROBE_DEPTH, Candidate, Leg, ScoredChunk, candidate, rank_key, scored_chunk
from kbsearch.tokens import MAX_CHARS_PER_TOKEN


@dataclass(frozen=True)
class FusionParams:
    """The fusion's constants (measured on every query class at once: EVAL.md)."""

    lexical_weight: float = 0.7  # SEARCH_LEXICAL_WEIGHT: a fully covered same-language BM25 leg, against dense 1.0
    cross_language: float = 0.1  # SEARCH_CROSS_LANGUAGE_WEIGHT: a BM25 match in a note of another language
    exact_confidence: float = 0.3  # SEARCH_EXACT_CONFIDENCE: share of the attainable BM25 score of an exact match
    exact_notes: int = 3  # at most this many notes may reach it (more: the terms are common, not an exact match)
    exact_max_terms: int = 2  # a query of more terms is a question (an exact match needs an identifier then)
    confidence_gain: float = 2.0  # the lexical weight grows with the share of the attainable score BM25's best
    # chunk reaches: x (1 + gain x (share - 0.5)), 0 at a share of 0.25, 2 at a full share
    rare_agreement: float = 0.3  # the few notes holding every rare term of the query (see fuse)
    floor_rank: int = 200  # the dense scale's floor: the cosine at this rank (extrapolated for a shallower leg)
    floor_slope: float = 1.1  # how far the cosine falls per doubling of the rank, against the previous doubling
    close: float = 0.8  # the dense scale's top part (above this), where notes are close to the dense leg's best...
    close_weight: float = 0.5  # ...counts at this weight: BM25 tells the dense leg's close calls apart
    lead_bonus: float = 0.075  # SEARCH_LEAD_BONUS: added to BM25's first note when BM25 is sure of it alone...
    lead_value: float = 0.3  # ...its lexical value (after the trust) at least this,
    lead_margin: float = 0.075  # ...ahead of BM25's second note by this share of its value,
    lead_within: int = 3  # ...and among the dense leg's first this many notes (BM25 decides dense's first few)
    stray_bonus: float = 0.2  # added to BM25's first note, wherever dense ranks it, when BM25 is
    stray_margin: float = 0.2  # ...sure (``lead_value``) of it alone (ahead of its second by this share of its value)
    stray_share: float = 0.4  # ...and dense's first holds under this share of that value, with no clear first
    question_pin_within: int = 3  # a question naming an identifier in passing (or a query of plain words asked
    # across languages) pins a note only among dense's first
    question_pin_lexical: int = 2  # ...this many notes or BM25's first this many (0 and 0: every exact match pins)
    unnamed_within: int = 5  # a label no note of its language is titled by, whose BM25 matches are many alike,
    # counts them as matches in another language when dense has a note of another language among its first this many
    # (0: never; :func:`_unnamed`)...
    unnamed_share: float = 0.2  # ...and at least this share of the dense leg's notes is of another language


@dataclass(frozen=True)
class QueryEvidence:
    """What the query itself says: its language (script), its BM25 terms, which of them are identifiers, whether it
    is a menu path (:func:`is_ui_path`). Made once per query by :func:`analyse`; the search and the fusion read it."""

    text: str
    language: str | None
    terms: tuple[int, ...]  # term ids, in query order, unique
    identifiers: frozenset[int] = field(default_factory=frozenset)
    ui_path: bool = False  # a menu path (:func:`is_ui_path`): read once, where the query is analysed
    names: frozenset[int] = field(default_factory=frozenset)  # foreign proper names (:func:`lexical.proper_names`)
    codes: frozenset[int] = field(default_factory=frozenset)  # identifiers that are codes (:func:`lexical.code_terms`)


def required_terms(evidence: QueryEvidence) -> list[int]:
    """The terms an exact match must hold: the query's identifiers when it has any, else all its terms; all the
    terms of a menu path (:func:`is_ui_path`): its items name one place together, and its Latin words in a Russian
    path are often the common ones ("- LibreOffice Writer - Автозаголовок")."""
    if evidence.ui_path:
        return list(evidence.terms)
    return [t for t in evidence.terms if t in evidence.identifiers] or list(evidence.terms)


#: A menu path's separators: ``-``, ``–``, ``>`` or ``→`` standing alone between words (not ``—``, prose's dash).
_PATH_SEPARATORS = frozenset("-–>→")
#: The most words a menu path's item has ("Position and Size", "Split Window").
PATH_ITEM_WORDS = 3


def _menu_item(words: list[str]) -> bool:
    """A menu item: at most :data:`PATH_ITEM_WORDS` words, its first letter a capital (a UI label: "Split Window",
    "3D View", "Сервис"); an item with no letter ("2021", "100", "-5") is none."""
    first = next((c for word in words for c in word if c.isalpha()), "")
    return len(words) <= PATH_ITEM_WORDS and first.isupper()


def is_ui_path(text: str) -> bool:
    """A menu path ("Format - Text - Uppercase", "Tools > Options > LibreOffice Writer"): two items or more, each a
    menu item (:func:`_menu_item`: at most :data:`PATH_ITEM_WORDS` words, its first letter a capital), joined by a
    separator standing alone. A company KB's notes keep their product's UI paths in its language, English in a
    Russian note; the path names one place, as an identifier does. A sentence with a dash ("Slideshow Remote
    Control – Impress Remote User Guide", "нет команды Формат - Страница на защищённом листе") has a longer item;
    a question after a spaced hyphen Russian writes for a dash ("Qdrant - это база векторов", "Ошибка 502 - что
    делать"), an English one ("kb-search - how to deploy"), a comparison or a range ("price > 100", "2019 - 2021")
    an item that starts lowercase or holds no letter (rev30a). The words are split once, no regular expression:
    linear in the query's length."""
    if "-" not in text and "–" not in text and ">" not in text and "→" not in text:
        return False  # most queries hold no separator (a search asks up to three times)
    items: list[list[str]] = [[]]
    for word in text.split():
        if word in _PATH_SEPARATORS:
            items.append([])
        else:
            items[-1].append(word)
    items = [words for words in items if words]  # a separator at either end, or two in a row
    return len(items) >= 2 and all(_menu_item(words) for words in items)


def is_lookup(evidence: QueryEvidence, p: FusionParams) -> bool:
    """A query that looks something up (it may pin an exact match): an identifier, a menu path
    (:func:`is_ui_path`), or at most ``exact_max_terms`` terms."""
    return bool(evidence.identifiers) or len(evidence.terms) <= p.exact_max_terms or evidence.ui_path


def questioned(evidence: QueryEvidence, p: FusionParams) -> bool:
    """A question that names identifiers in passing: more than ``exact_max_terms`` of its terms are no identifier
    ("на ноутбуке wifi выключается сочетанием клавиш?", "which CPU platforms did older Debian releases like 2.0 and
    2.1 ship for"; not "Alt+F10 Плиточное", not "ETH_P_ALL unmodified"), it is no menu path, and it writes no
    foreign proper name (:func:`kbsearch.lexical.proper_names`: "есть ли руководство по переносу моих заметок из
    Logseq" asks about Logseq)."""
    if evidence.ui_path or not evidence.identifiers or evidence.names & evidence.identifiers:
        return False
    return sum(1 for t in evidence.terms if t not in evidence.identifiers) > p.exact_max_terms


def path_probes(evidence: QueryEvidence, p: FusionParams) -> frozenset[int]:
    """The probes that ask for their chunks' payloads: a lookup's required terms, whose every holder an exact match
    must name (a note holding two identifiers in two chunks, one of them in no leg, is one). The others ask for ids
    and scores (Qdrant reads a point's whole payload to return even its path: Edge ~8 µs a point)."""
    return frozenset(required_terms(evidence)) if is_lookup(evidence, p) else frozenset()


def analyse(query: str) -> QueryEvidence:
    """The query's evidence (:class:`QueryEvidence`), once per query: its terms, language, identifiers and whether it
    is a menu path; everything after (the probes, the exact match, the fusion) reads it from here."""
    terms = tuple(dict.fromkeys(term_id(t) for t in tokenize(query)))
    language = query_language(query)
    identifiers = frozenset(term_id(t) for t in identifier_terms(query, language))
    # a foreign proper name matters only as an identifier (:func:`questioned`): not read in a query without one
    names = frozenset(term_id(t) for t in proper_names(query, language)) if identifiers else frozenset()
    # a code bridges a question to a note of another language (:func:`_bridged`): read with an identifier only
    codes = frozenset(term_id(t) for t in code_terms(query)) & identifiers if identifiers else frozenset()
    return QueryEvidence(query, language, terms, identifiers, is_ui_path(query), names, codes)


def lexical_variants(evidence: QueryEvidence, variants: Sequence[str]) -> list[tuple[SparseVector, str | None]]:
    """The BM25 legs: the query's own, and one per variant in another language than the query (a translation
    by the expansion model), which then counts for that language."""
    # the query's own terms, as query_vector makes them (each once, weight 1, by id)
    legs = [(SparseVector(sorted(evidence.terms), [1.0] * len(evidence.terms)), evidence.language)]
    for variant in variants:
        language = query_language(variant)
        if language is not None and language != evidence.language and all(lang != language for _, lang in legs):
            legs.append((query_vector(variant), language))
    return legs


def translated(evidence: QueryEvidence, variants: Sequence[str]) -> list[str | None]:
    """Per query variant (the query first), the language of a variant written in another language than the query
    (a translation by the expansion model), else None: a translation's cosines (across languages, lower) do not
    set the dense scale's floor."""
    out: list[str | None] = [None]
    for variant in variants[1:]:
        language = query_language(variant)
        out.append(language if language is not None and language != evidence.language else None)
    return out


#: The fewest chunks a leg must hold for its floor to be extrapolated (fewer: its last cosine).
MIN_EXTRAPOLATED = 16


def dense_floor(leg: Leg, chunks: Sequence[ScoredChunk], p: FusionParams) -> float:
    """The cosine at rank ``p.floor_rank`` of a dense leg, the floor of the dense scale. A leg that returned that
    many chunks has it; one that returned fewer than it asked for holds every chunk there is (a small index, a
    narrow filter): its last. A leg cut short by its own limit (the search asks for fewer chunks than the rank, to
    carry fewer payloads) extrapolates: in the tail of a ranking the cosine falls about evenly per doubling of the
    rank, the fall from rank 100 to 200 about ``floor_slope`` times the fall from 50 to 100 (measured 1.08-1.10
    with e5 and USE over the eval sets); the estimate carries the last halving's fall, times the slope, over each
    remaining doubling (within 4.5% of the scale for 80% of their queries from 100 chunks; a leg of fewer than
    :data:`MIN_EXTRAPOLATED` chunks is not extrapolated).
    The ranking is then the same whatever the legs' depth, up to that estimate."""
    n = len(chunks)
    last = chunks[-1].score
    if n >= p.floor_rank:
        return chunks[p.floor_rank - 1].score
    if leg.limit is None or n < leg.limit or n < MIN_EXTRAPOLATED:
        return last
    half = chunks[n // 2 - 1].score
    return last - p.floor_slope * math.log2(p.floor_rank / n) * (half - last)


def carried(results: Sequence[tuple[Leg, list[ScoredChunk]]]) -> dict[int | str, dict[str, Any]]:
    """Point id → payload, for every chunk a dense or BM25 leg brought with its payload."""
    return {c.id: c.payload for leg, chunks in results if not leg.bare and leg.kind in ("dense", "lexical")
            for c in chunks}  # fmt: skip


def resolved(
    results: Sequence[tuple[Leg, list[ScoredChunk]]], known: dict[int | str, dict[str, Any]]
) -> list[tuple[Leg, list[ScoredChunk]]]:
    """The bare legs (ids and scores only: a rewrite's dense search, each BM25 leg's tail) read through the payloads
    the other legs carry (``known``: :func:`carried`): a chunk whose payload a dense or BM25 leg brought (the same
    point) counts with that payload, a tail chunk as a chunk of its BM25 leg; the others are dropped (no note to
    credit, nothing to rerank)."""
    carry = known.get
    tails: dict[int, list[ScoredChunk]] = {}
    out: list[tuple[Leg, list[ScoredChunk]]] = []
    for leg, came in results:
        chunks = ([scored_chunk((i, score, payload)) for i, score, _ in came if (payload := carry(i)) is not None]
                  if leg.bare else came)  # fmt: skip
        if leg.kind == "lexical-tail":
            tails.setdefault(leg.variant, []).extend(chunks)
        else:
            out.append((leg, chunks))
    return [(leg, chunks + tails.get(leg.variant, []) if leg.kind == "lexical" else chunks) for leg, chunks in out]


def _holders(
    probe_legs: Sequence[tuple[Leg, list[ScoredChunk]]], known: dict[int | str, dict[str, Any]]
) -> tuple[dict[str, dict[int | None, float]], dict[int | None, list[float]], dict[str, ScoredChunk]]:
    """Note → the probed terms it holds (each at its best chunk's score); per term the scores of its probe's
    chunks that name no note; and note → its best chunk a probe brought with its payload. A lookup's required terms
    are probed with their chunks' payloads (:func:`path_probes`: every holder named, as an exact match needs); the
    other probes ask for ids and scores, and their chunk names its note through the payload a dense or BM25 leg
    carried of the same point."""
    holders: dict[str, dict[int | None, float]] = {}
    strays: dict[int | None, list[float]] = {}
    brought: dict[str, ScoredChunk] = {}
    for leg, chunks in probe_legs:
        lost = strays[leg.term] = []
        for c in chunks:
            own = bool(c.payload)  # a probe that asked for payloads
            payload = c.payload if own else known.get(c.id)
            if payload is None:
                lost.append(c.score)
                continue
            note = _note(c if own else ScoredChunk(c.id, c.score, payload))
            held = holders.setdefault(note, {})
            held[leg.term] = max(held.get(leg.term, 0.0), c.score)
            if own and (note not in brought or rank_key(c) < rank_key(brought[note])):
                brought[note] = c
    return holders, strays, brought


#: Fused notes best first (the score negated), equal scores by path.
_BEST_FIRST = operator.itemgetter(0, 1)
_SCORE = operator.itemgetter(1)


def _note(chunk: ScoredChunk) -> str:
    path = chunk.payload.get("path")  # read_leg keeps a leg's chunk only with a path (a string)
    return path if type(path) is str and path else str(chunk.payload.get("doc_id") or chunk.id)


#: How much of a chunk's title and text is read to judge its language: as many characters as the longest chunk's
#: tokens can hold (CHUNK_MAX_TOKENS is at most 8,000 tokens of at most 16 characters each; whitespace, which costs
#: no token, can make a chunk longer, but the window then still holds more letters than any language needs);
#: what a store answers beyond that (a 10 MB chunk took 1.6 s of the search's budget here, more on a busy host,
#: and the rerank after it found no time left) is not read.
LANGUAGE_WINDOW = 8000 * MAX_CHARS_PER_TOKEN


def _note_language(payload: dict[str, Any], cache: dict[str, str | None]) -> str | None:
    path = str(payload.get("path") or "")
    if path not in cache:
        recorded = payload.get("lang")
        if isinstance(recorded, str):
            cache[path] = recorded
        else:  # indexed before the language was recorded: judge by what this chunk says
            title, text = str(payload.get("title") or ""), str(payload.get("text") or "")
            cache[path] = text_language(f"{title[:LANGUAGE_WINDOW]}\n{text[:LANGUAGE_WINDOW]}")
    return cache[path]


def _single(legs: Sequence[list[ScoredChunk]], limit: int) -> list[Candidate]:
    """One leg kind alone (``dense`` or ``lexical`` evaluation): every note's best chunk by its raw score."""
    best: dict[str, ScoredChunk] = {}
    for chunks in legs:
        for c in chunks:
            note = _note(c)
            kept = best.get(note)
            if kept is None or rank_key(c) < rank_key(kept):
                best[note] = c
    ranked = sorted(best.items(), key=lambda item: (-item[1].score, item[0]))
    return [candidate(c.payload, c.score) for _, c in ranked[:limit]]


@dataclass(slots=True)
class _Note:
    dense: float = 0.0
    lexical: float = 0.0
    confidence: float = 0.0  # of the query's own BM25 leg
    translated: float = 0.0  # the best of the translated variants' BM25 legs
    dense_chunk: ScoredChunk | None = None
    lexical_chunk: ScoredChunk | None = None
    translated_chunk: ScoredChunk | None = None


def _about(n: _Note, notes: dict[str, _Note], p: FusionParams) -> bool:
    """Whether a leg puts the note near its top for the whole question: among BM25's first
    ``p.question_pin_lexical`` notes by the lexical value (after the trust and the language factor), or among the
    dense leg's first ``p.question_pin_within``."""
    lexical, dense = n.lexical, n.dense
    if lexical > 0 and sum(1 for m in notes.values() if m.lexical > lexical) < p.question_pin_lexical:
        return True
    return dense > 0 and sum(1 for m in notes.values() if m.dense > dense) < p.question_pin_within


def _bridged(n: _Note, evidence: QueryEvidence, languages: dict[str, str | None], reads_own: bool) -> bool:
    """Whether a question naming identifiers keeps its pin on the note ``n`` however far the legs rank it: the note
    is in another language than the question while the question's own dense leg reads the question's language
    (``reads_own``: its first note is in it, and no exact match is in it: rev34d). A model ranking its own language
    first (e5 over a KB written in both languages: for 98 of 110 English questions whose answer is Russian its first
    note is English) puts no page of the other language near its top; the identifier the question names ("AES-256",
    "CNAME", "PT1H30M") is its one bridge to it. Where dense's first note is of the other language, dense reads that language and its ranking
    stands: the pinned note names the identifier in passing ("CD-ROM", "OK", "ELF"; EVAL.md, session 34, fus34c).
    The bridge is a code (``evidence.codes``, :func:`kbsearch.lexical.code_terms`): "OK" or "CD" are identifiers
    (two capitals), words a UI and both languages' prose write ("нажмите OK"), no bridge (rev34d's finding 5; every
    right bridge over the captures is a code: EVAL.md, session 35, fus35b)."""
    if not reads_own or not evidence.codes:
        return False
    theirs = _its_language(n, languages)
    return theirs is not None and theirs != evidence.language


def _its_language(n: _Note, languages: dict[str, str | None]) -> str | None:
    """The language of the note's chunk the fusion holds (its BM25 chunk, else its dense one)."""
    chunk = n.lexical_chunk or n.dense_chunk
    return _note_language(chunk.payload, languages) if chunk is not None else None


def _bm25_first(notes: dict[str, _Note]) -> tuple[str | None, float, float]:
    """BM25's first note by its lexical value (after the trust), that value, and the second note's."""
    lead, first, second = None, 0.0, 0.0
    for note, n in notes.items():
        value = n.lexical
        if value > first:
            lead, first, second = note, value, first
        elif value > second:
            second = value
    return lead, first, second


def clear_lead(notes: dict[str, _Note], p: FusionParams) -> str | None:
    """BM25's first note when BM25 is sure, and sure of that one note, and the dense leg has it among its first
    few: its lexical value (share of the attainable score x language factor x coverage x the leg's trust) is at
    least ``p.lead_value``, it leads BM25's second note by ``p.lead_margin`` of its value or more, and fewer than
    ``p.lead_within`` notes are above it on the dense scale; else None (and None when ``p.lead_bonus`` is 0)."""
    if p.lead_bonus <= 0:
        return None
    lead, first, second = _bm25_first(notes)
    if lead is None or first < p.lead_value or (first - second) / first < p.lead_margin:
        return None
    dense = notes[lead].dense
    if dense <= 0 or sum(n.dense > dense for n in notes.values()) >= p.lead_within:
        return None
    return lead


def stray_lead(notes: dict[str, _Note], p: FusionParams) -> str | None:
    """BM25's first note when the dense leg's first is a stray: BM25 is sure (its lexical value at least
    ``p.lead_value``) and sure of that one note (ahead of BM25's second by ``p.stray_margin`` of its value), while
    dense's first note is another one that holds few of the query's words (its lexical value under
    ``p.stray_share`` of BM25's first's) and is no clear first (dense's second note is above ``p.close`` on the dense
    scale, a close call). That is a dense model matching the topic, not the question: USE on "keep the recently used
    files list for only a week" has its first five notes within 0.1 of its best on the dense scale, none about
    recent files; BM25 is sure of the answer, dense's 34th. Wherever dense ranks BM25's note, it gains
    ``p.stray_bonus``; else None (and None when ``p.stray_bonus`` is 0). A strong model's first note that misses the
    query's words usually stands clear of its second (EVAL.md, session 29)."""
    if p.stray_bonus <= 0:
        return None
    lead, first, second = _bm25_first(notes)
    if lead is None or first < p.lead_value or (first - second) / first < p.stray_margin:
        return None
    top, best, runner = None, -1.0, -1.0  # dense's first note, its value, the second note's value
    for note, n in notes.items():
        dense = n.dense
        if dense > best or (dense == best and top is not None and note < top):
            top, best, runner = note, dense, best
        elif dense > runner:
            runner = dense
    if top is None or top == lead or runner <= p.close or notes[top].lexical >= p.stray_share * first:
        return None
    return lead


#: Where a phrase ends in a chunk's text (:func:`phrase_place`): a sentence's end (``.``, ``!``, ``?`` or ``…``
#: before a space or a line break). Not a bare line break: a list of the words ("- Merge", "- Subtract",
#: "- Intersect") or a table's cells hold them as a label names them. The heading path is read whole: "Command
#: palette > Pinned commands" names the palette's pinned commands (rev33a: each split there lost right pins).
_NO_BREAK = re.compile(r"(?!)")
_TEXT_BREAK = re.compile(r"(?<=[.!?…])\s+")


def phrase_place(chunk: ScoredChunk | None, terms: tuple[int, ...]) -> int:
    """Where the chunk holds the query's terms side by side: 2 in its heading path (title > headings), 1 in its
    text, 0 nowhere. Side by side: a run of as many consecutive tokens (stop words dropped, stemmed:
    :func:`kbsearch.lexical.tokenize`) as the query has terms, each of them once, in any order (an index entry
    inverts its words: "formulas; hiding"), in the heading path (read whole: a title and its section), or within one
    sentence of the text (:data:`_TEXT_BREAK`: "Select Hide." and "Formulas are shown." are two sentences, not the
    phrase; rev33a).
    Each part is read up to :data:`LANGUAGE_WINDOW` characters."""
    if chunk is None or not terms:
        return 0
    size, wanted = len(terms), set(terms)
    payload = chunk.payload
    for place, part, breaks in ((2, payload.get("heading"), _NO_BREAK), (1, payload.get("text"), _TEXT_BREAK)):
        if isinstance(part, str):
            for piece in breaks.split(part[:LANGUAGE_WINDOW]):
                ids = [term_id(t) for t in tokenize(piece)]
                if any(set(ids[i : i + size]) == wanted for i in range(len(ids) - size + 1)):
                    return place
    return 0


def sole_complete(
    notes: dict[str, _Note],
    evidence: QueryEvidence,
    present: list[int],
    probes: dict[int | None, float],
    coverage: float,
    gain: float,
    p: FusionParams,
) -> str | None:
    """The one note whose query BM25 chunk provably holds every required term (:func:`required_terms`) of a
    lookup (:func:`is_lookup`) or a label (at most :data:`PATH_ITEM_WORDS` terms, as a menu item's) of two terms or
    more, all of them in the index (``present``: the terms their probes found), or, when no chunk is proven so,
    BM25's first note; pinned when it holds the whole query as a phrase (:func:`phrase_place`) in a better place
    than dense's first note.

    The proof of every term: the chunk scores above the attainable score (the present terms' probes' best scores
    summed) less the smallest required term's probe, which is the most a chunk missing any required term can score
    (each term adds at most its probe's best). One note alone, of every note the legs carried, and its match
    counting in full (a note of the query's language: not x ``cross_language``). That proves the words are in one
    chunk, not that they name its subject: "ряд вычисление" over LibreOffice Help's Russian half is held by a note
    whose title says "Вычисление суммы для ряда ячеек", about something else; "факсы настройка LibreOffice" by the
    main page, whose one required term is "LibreOffice" (its identifier), in every note. So the words must stand
    side by side in that chunk (an index phrase, "hiding formulas" in "Select Hide formula"; a title, "Inserting Page
    Numbers of Continuation Pages"), and dense's first note, when it is another, must hold them so in a lesser place:
    nowhere, or in its text where this note's heading path holds them. The main page quotes the fax page's title in
    its list of topics ("Отправка факсов и настройка LibreOffice"): over dense's first, the fax page, whose title
    holds the phrase, it is not pinned; the fax page, sole complete in English, is pinned over the main page
    dense put first. No other note's BM25 chunk may hold the phrase in as good a place: two pages of one title
    ("Official website" in ``en/`` and in ``archive/``) are named alike, and pinning BM25's first of them by a hair
    kept it ahead of its twin whatever the reranker said (session 33, rev33c). Where no chunk is proven to hold every word (a long chunk's score falls short of the bound),
    the phrase side by side in BM25's first note is the evidence: "Пропускать пустые строки Пропускать", a UI
    label of three terms, is BM25's first and nowhere in USE's dense leg. A query of more terms is a question or a
    description, whose words standing together in some note name a passage, not the note's subject ("how to
    change the name of the configuration folder" over the Obsidian vault). EVAL.md, session 32 (fus32b) and
    session 33 (fus33b)."""
    required = [probes[t] for t in required_terms(evidence) if t in probes]
    label = len(evidence.terms) <= PATH_ITEM_WORDS  # a label's few words, as a menu item's
    if not (label or is_lookup(evidence, p)) or len(present) < 2 or coverage < 1.0 or not required:
        return None
    attainable = sum(probes[t] for t in present)
    bound = attainable - min(required)
    found = None
    for note, n in notes.items():
        its = n.lexical_chunk
        if its is not None and its is not n.translated_chunk and its.score > bound:
            if found is not None:
                return None
            found = note
    if found is None:  # no note proven to hold every word: BM25's first, if it holds them side by side
        found = min(notes, key=lambda note: (-notes[note].lexical, note), default=None)
        if found is None or notes[found].lexical_chunk is notes[found].translated_chunk:
            return None
    n = notes[found]  # its share x the trust, or x cross_language too (0.1: under half of it) in another language
    full = gain * min(1.0, n.lexical_chunk.score / attainable) if n.lexical_chunk is not None else 0.0
    if n.lexical < 0.5 * full or full <= 0.0:
        return None
    place = phrase_place(n.lexical_chunk, evidence.terms)
    top = notes[min(notes, key=lambda note: (-notes[note].dense, note))]  # dense's first (equal values: by path)
    if top is not n and top.dense > 0.0:
        rival = max(phrase_place(top.dense_chunk, evidence.terms), phrase_place(top.lexical_chunk, evidence.terms))
    else:
        rival = 0
    if place <= rival:
        return None
    for other in notes.values():  # another note holding the phrase as well (two pages of one title): none alone
        its = other.lexical_chunk
        if other is not n and its is not other.translated_chunk and phrase_place(its, evidence.terms) >= place:
            return None
    return found


def _names(payload: dict[str, Any], named: tuple[str, ...], *, aliases: bool = True) -> bool:
    """Whether the query (``named``: its words, :func:`kbsearch.lexical.words`) names the chunk's note: its title, or
    (with ``aliases``) one of its aliases (the payload's ``aliases``, :func:`kbsearch.links.payload_aliases`: a name
    no text BM25 reads of the note holds), word for word. A note indexed before its aliases were carried is named by
    its title only.

    ``_across`` reads the title alone: there the query's own-language note it would exempt competes with a note of
    the other language the query may name by its title, and the vault gives a page's translated title as an alias
    of the other language's page ("Markdown": the Russian page so titled, the English *Basic formatting syntax* so
    aliased; its match exempted, it came ahead: bil33's expanded captures 0 better / 2 worse, session 34 review)."""
    if not named:
        return False
    if words(str(payload.get("title") or "")[:LANGUAGE_WINDOW]) == named:
        return True
    if not aliases:
        return False
    names = payload.get("aliases")
    return isinstance(names, list) and any(isinstance(a, str) and words(a) == named for a in names)


def _across(notes: dict[str, _Note], asked: list[ScoredChunk], language: str, languages: dict[str, str | None],
            agree: dict[str, float], named: tuple[str, ...], p: FusionParams,
            plain: bool = False) -> tuple[bool, bool, set[str]]:  # fmt: skip
    """A question across languages in a KB of both: when the first note of the query's own dense leg (``asked``: its
    chunks; not a translation's leg, whose first note is in the translation's language by design) is in another
    language than the query, the query's own BM25 matches in notes of the query's language count as a match in
    another language does (x ``p.cross_language``). The dense model puts the answer across languages, and BM25's
    same-language matches are then the few notes of the query's language that share its words (a Russian KB's notes
    that keep an English section: EVAL.md, session 28, LibreOffice Help); a translated variant's match is left as it
    is. An exact match stays pinned; pinned notes are ordered by the damped values. The rare-term agreement is not
    damped (rev28c: damping it too replayed 7 searches better, 8 worse).

    The same when the first note is in the query's language but most of the leg's notes (each once, of those
    recording their ``lang``) are not: the query's language is the KB's minority, and a model that prefers its own
    language put one of that minority first (e5 on LibreOffice Help's Russian half puts one of its 69 English pages
    first for 164 of 418 English titles, 96 of them wrong). When the leg is divided so, its first note in one language and most of its notes in the other
    (that case, or a KB of the query's language whose dense first note is one of its few pages of another: a
    Russian KB's pasted English page), the notes the rare-term agreement names (``agree``: each holds every rare
    term of the query, at most a few do) keep their match: they are a known item's holders, not notes that happen
    to share its common words (EVAL.md, session 29).

    A note whose title is the query (``named``: the query's :func:`kbsearch.lexical.words`, as BM25 reads them
    unstemmed: case, ``ё``/``е``, punctuation, quotes and markup aside; the title's the same way) keeps its match in either case: the query names that note, which a note holding its words does not. In a KB
    written in both languages a page's own title asked in its language ("Official website", "Теги") is answered by
    BM25's match, while dense (USE) puts a page of the other language first; in a translated KB, a page left
    untranslated ("Pivot Chart" over LibreOffice Help's Russian half) is the answer by its title (EVAL.md, session
    33, fus33c: 29 searches better, none worse).

    Where the query is plain (``plain``: no code, :func:`kbsearch.lexical.code_terms`, and no menu path) and asked
    across languages outright (dense's first note and most of its notes in another language; where notes of the leg
    record no language, also counting each by its text), a note of the query's language among dense's close calls
    (its dense value at least ``p.close``) counts no BM25 match at all: damped, its match would still decide between
    dense's close calls, which count at ``close_weight``, and it is the few notes of the query's language sharing
    its words ("Creating Gradient Fills" over LibreOffice Help's Russian half, e5: an English-recorded page tipped
    over dense's right first). BM25's first note of the query's language keeps its damped match where BM25 is sure
    of it alone (its value at least ``p.lead_value``, ahead of the next such note by ``p.stray_margin`` of it, as
    :func:`stray_lead` reads BM25), as does a note the query names by its title. A code reads the same in both
    languages: a query naming one is left as it was (EVAL.md, session 35, fus35c: 32 searches better, 5 worse).

    The close calls' silence is returned, not applied: the pin gates (:func:`standing_pins`) read the notes as the
    damping left them, and :func:`fuse` silences them after (rev: a silenced rival lifted a wrong exact match into
    BM25's first two, where the question gate let it stand), after :func:`clear_lead` and :func:`stray_lead` too
    (rev35c: a silenced first of dense's, holding every word of the query, read as a stray first).

    Returns whether the first note is in another language than the query (the query is asked across languages),
    whether it damped the query's own-language matches, and the notes to silence once the pins are decided."""
    first = max(asked, key=_SCORE)
    theirs = _note_language(first.payload, languages)
    if theirs is None:
        return False, False, set()
    silent = False  # the query's own-language close calls count no BM25 match (plain, asked across outright)
    if theirs != language and not agree and not plain:
        divided = False  # nothing to spare: the leg's languages do not matter
    else:
        recorded: dict[Any, Any] = {}  # the leg's notes (each once) and the language each records
        held: dict[Any, dict[str, Any]] = {}  # each note's first chunk's payload
        for c in asked:
            payload = c.payload
            if (path := payload.get("path")) not in held:
                held[path], recorded[path] = payload, payload.get("lang")
        same = sum(1 for lang in recorded.values() if lang == language)
        other = sum(1 for lang in recorded.values() if lang is not None and lang != language)
        if theirs == language and other <= same:
            return False, False, set()
        divided = other > same if theirs == language else same > other  # first note in one language, most in the other
        silent = plain and theirs != language and other > same
        if silent and None in recorded.values():  # notes indexed before the language was recorded: judged by their
            judged = [_note_language(payload, languages) for payload in held.values()]  # text (rev35c)
            silent = sum(1 for lang in judged if lang is not None and lang != language) > judged.count(language)
    own = [(n.lexical, note) for note, n in notes.items()
           if (its := n.lexical_chunk) is not None and its is not n.translated_chunk
           and _note_language(its.payload, languages) == language]  # fmt: skip
    sure = None  # BM25's first note of the query's language, where BM25 is sure of it alone
    silenced: set[str] = set()
    if silent and own:
        own.sort(key=lambda row: (-row[0], row[1]))  # by value, ties by path
        value, second = own[0][0], own[1][0] if len(own) > 1 else 0.0
        if value >= p.lead_value and value - second >= p.stray_margin * value:
            sure = own[0][1]
    for _, note in own:
        n = notes[note]
        its = n.lexical_chunk
        if its is None or (divided and note in agree):
            continue
        if _names(its.payload, named, aliases=False):
            continue  # the query names this note: its title
        n.lexical *= p.cross_language
        if silent and note != sure and n.dense >= p.close:
            silenced.add(note)  # a close call of dense's: its damped match would still decide between them
    return theirs != language, True, silenced


def _unnamed(notes: dict[str, _Note], asked: list[ScoredChunk], evidence: QueryEvidence, named: tuple[str, ...],
             languages: dict[str, str | None], p: FusionParams) -> bool:  # fmt: skip
    """Whether the query is a label that names no note of its language while the KB holds the other language near
    it: then its own BM25 matches in notes of its language count as matches in another language do
    (x ``p.cross_language``, as :func:`_across` counts them; :func:`fuse` applies it where nothing is pinned and
    ``_across`` damped nothing).

    A label: at most :data:`PATH_ITEM_WORDS` terms, no identifier, no menu path. It names no note of its language:
    no note of the query's language the legs carried is titled by it or has it as an alias (word for word,
    :func:`_names`, as ``_across``'s exemption reads a title: a page named by its alias is the page's, not a
    mention, session 34 review, rev34e). Its own BM25 matches (not a translation's) are many alike:
    more than ``p.exact_notes`` notes score within ``p.close`` of the first (the words are common in that language,
    mentioned in many notes, the note of none: an exact match may be at most that many notes). And the KB is
    written in both languages near the query: the query's own dense leg (``asked``; a translation's leg puts the
    other language first by design) has a note of another language among its first ``p.unnamed_within`` notes, and
    at least ``p.unnamed_share`` of its notes are of another language, not a translated half's few leftover pages
    (LibreOffice Help's Russian half, whose Russian index entries BM25 answers).

    That is a page's title asked in the language the page is *not* written in, over a KB written in both:
    "Свойства" over the Obsidian vault whose *Properties* page is English, where the Russian notes holding the word
    (a CLI reference's section "Свойства", a glossary line, "how to" lists) took the first ten places from dense's
    second, the English page (USE). A label BM25 matches in one note or a few (an index entry, a known item's rare
    words) keeps its match (EVAL.md, session 34, fus34b)."""
    if (
        p.unnamed_within <= 0
        or not evidence.terms
        or len(evidence.terms) > PATH_ITEM_WORDS
        or evidence.identifiers
        or evidence.ui_path
    ):
        return False
    language = evidence.language
    matched = [  # the query's own BM25 matches (a translation's leg, where it counts more, is another query's)
        n.lexical for n in notes.values() if n.lexical_chunk is not None and n.lexical_chunk is not n.translated_chunk
    ]
    first = max(matched, default=0.0)
    if first <= 0.0 or sum(value >= p.close * first for value in matched) <= p.exact_notes:
        return False
    own: dict[str, str | None] = {}  # the query's own dense leg's notes, best first, and their languages
    for c in sorted(asked, key=rank_key):
        path = c.payload.get("path")
        if type(path) is str and path not in own:
            own[path] = _note_language(c.payload, languages)
    if not any(lang not in (None, language) for lang in list(own.values())[: p.unnamed_within]):
        return False
    known = [lang for lang in own.values() if lang is not None]
    if sum(lang != language for lang in known) < p.unnamed_share * len(known):
        return False
    for n in notes.values():
        its = n.lexical_chunk or n.dense_chunk
        if its is not None and _note_language(its.payload, languages) == language and _names(its.payload, named):
            return False  # the query names this note: its title or an alias
    return True


#: Why an exact match stands or falls (:func:`standing_pins`), one reason per candidate note, by the gate that
#: decided it last. Standing: ``EXACT``, ``PHRASE``, ``ABOUT``, ``BRIDGED``; the others fall.
JOINED_OUT = "joined out"  # 1: only its BM25 share made it one, and with those the candidates were too many
NO_LOOKUP = "no lookup"  # 2: the query looks nothing up (:func:`is_lookup`)
TOO_MANY = "too many"  # 2: more than ``exact_notes`` notes hold the required terms
EXACT = "exact"  # 2: a lookup's exact match
PHRASE = "phrase"  # 3: with no exact match, the one note holding a lookup's whole phrase (:func:`sole_complete`)
PHRASE_DAMPED = "phrase damped"  # 3: ...whose match ``_across`` damped (the query asked across languages)
ABOUT = "about"  # 4: a question's pin near a leg's top (:func:`_about`)
BRIDGED = "bridged"  # 4: a question's pin of another language while dense reads the question's (:func:`_bridged`)
ANSWERED = "answered"  # 4: a question's pin no leg brought (answered by its probe): taken back
AWAY = "away"  # 4: a question's pin near neither leg's top, and no bridge


@dataclass(slots=True)
class Pins:
    """What :func:`standing_pins` decided: the notes pinned (exact matches, first in the fusion), each candidate
    note's reason (:data:`EXACT`...), and whether the query's own-language BM25 matches count as another language's
    (:func:`_unnamed`: decided only when nothing stands)."""

    pinned: set[str]
    reasons: dict[str, str]
    unnamed: bool = False


def _lookup_pins(
    exact: list[str], by_probes: list[str], evidence: QueryEvidence, p: FusionParams, reasons: dict[str, str] | None
) -> set[str]:
    """Gates 1 and 2 of :func:`standing_pins`: the BM25 share's notes join the probes' only while all of them fit in
    ``p.exact_notes`` (they never unpin what the probes found), and a lookup (:func:`is_lookup`) pins at most that
    many notes. With ``reasons``, each candidate's reason is recorded there."""
    joined = exact
    if len(exact) > p.exact_notes:
        joined = by_probes
        if reasons is not None:
            for note in exact:
                reasons[note] = JOINED_OUT
    if not is_lookup(evidence, p):
        fell = NO_LOOKUP
    elif not joined or len(joined) > p.exact_notes:
        fell = TOO_MANY
    else:
        if reasons is not None:
            for note in joined:
                reasons[note] = EXACT
        return set(joined)
    if reasons is not None:
        for note in joined:
            reasons[note] = fell
    return set()


def standing_pins(
    notes: dict[str, _Note],
    evidence: QueryEvidence,
    exact: list[str],
    by_probes: list[str],
    whole: str | None,
    undamped: float,
    answered: set[str],
    across: bool,
    damped: bool,
    asked: list[list[ScoredChunk]],
    languages: dict[str, str | None],
    named: tuple[str, ...],
    p: FusionParams,
) -> Pins:
    """Which exact matches stand, each candidate's reason, in this order (each gate reads what the one before left):

    1. **the BM25 share's join**: ``exact`` (the notes holding every required term by their probes, ``by_probes``,
       or by their own BM25 share) are the candidates only while all of them fit in ``p.exact_notes``; else the
       probes' alone (:data:`JOINED_OUT`).
    2. **the lookup gate**: a lookup (:func:`is_lookup`) pins them, at most ``p.exact_notes`` (:data:`EXACT`,
       :data:`NO_LOOKUP`, :data:`TOO_MANY`). :func:`fuse` reads gates 1-2 ahead (:func:`_lookup_pins`), to answer
       a pin no leg brought with its probe's chunk before the rare-term agreement and the trust.
    3. **the whole phrase**: with nothing pinned, :func:`sole_complete`'s note (``whole``, found by ``fuse`` before
       ``_across`` damped anything: its lexical value then was ``undamped``) is pinned unless ``_across`` damped it
       (:data:`PHRASE`, :data:`PHRASE_DAMPED`).
    4. **the question gate**: a question naming identifiers in passing (:func:`questioned`), or a query of plain
       words asked across languages (``across``: its dense leg's first note in another language), keeps a pin only
       near a leg's top (:func:`_about`, :data:`ABOUT`) or across the bridge (:func:`_bridged`, :data:`BRIDGED`: the
       question names a code, dense reads its language, ``reads_own``, and no pin is in it); a pin no leg brought
       (``answered``) is near neither: its value, given for the pin alone, is taken back (set to 0 in ``notes``;
       :data:`ANSWERED`), the others fall (:data:`AWAY`).
    5. **nothing standing**: where ``_across`` damped nothing (``damped``), whether the query is a label naming no
       note of its language (:func:`_unnamed`): ``fuse`` then counts its own-language BM25 matches as another
       language's."""
    reasons: dict[str, str] = {}
    pinned = _lookup_pins(exact, by_probes, evidence, p, reasons)  # 1, 2
    if whole is not None:  # 3 (found only with nothing pinned)
        if notes[whole].lexical >= undamped:  # not asked across languages (``_across`` left it)
            pinned, reasons[whole] = {whole}, PHRASE
        else:
            reasons[whole] = PHRASE_DAMPED
    language = evidence.language
    if (
        pinned
        and (p.question_pin_within > 0 or p.question_pin_lexical > 0)
        and (questioned(evidence, p) or (across and not evidence.identifiers and not evidence.ui_path))
    ):  # 4
        # a question's identifier named in passing, or a query of plain words asked across languages (its dense
        # leg's first note in another language: the words are "rare" only because the KB's notes are in that other
        # language): its exact match must be near a leg's top (session 32, fus32a and fus32c); a note no leg
        # brought is near neither (its value was its share of the identifier, or of a plain query's words, given for
        # the pin alone: taken back, so it ranks by its rare-term agreement; rev32d: the same in both cases)
        # (session 34: or of another language while dense reads the question's own, :func:`_bridged`)
        # (rev34d: only while no exact match is in the question's language: one there names the code too, and
        # dense, reading that language, judged it; the bridge is the question's one way to the other language)
        reads_own = (
            language is not None
            and bool(asked)
            and _note_language(max(asked[0], key=_SCORE).payload, languages) == language
            and all(_its_language(notes[note], languages) != language for note in pinned)
        )
        for note in pinned:  # every pin judged before a value is taken back (``_about`` reads them all)
            if note in answered:
                reasons[note] = ANSWERED
            elif _about(notes[note], notes, p):
                reasons[note] = ABOUT
            elif _bridged(notes[note], evidence, languages, reads_own):
                reasons[note] = BRIDGED
            else:
                reasons[note] = AWAY
        for note in answered & pinned:
            notes[note].lexical = 0.0
        pinned = {note for note in pinned if reasons[note] in (ABOUT, BRIDGED)}
    unnamed = (
        not pinned
        and not damped
        and language is not None
        and bool(asked)
        and _unnamed(notes, asked[0], evidence, named, languages, p)
    )  # 5
    return Pins(pinned, reasons, unnamed)


def fuse(
    results: Sequence[tuple[Leg, list[ScoredChunk]]],
    evidence: QueryEvidence,
    limit: int,
    mode: str = "hybrid",
    params: FusionParams | None = None,
    reasons: dict[str, str] | None = None,
) -> list[Candidate]:
    """Every leg's scored chunks → one candidate per note (its best chunk), best first. ``mode`` ``dense`` or
    ``lexical`` ranks by that leg kind alone (evaluation); ``hybrid`` is the adaptive fusion (module doc).
    ``reasons``, when given, receives each exact-match candidate's note → why it stands or falls
    (:func:`standing_pins`: ``exact``, ``phrase``, ``about``, ``bridged`` stand; the others fall)."""
    p = params or FusionParams()
    # the dense scale: the best cosine over every dense leg as it came (bare ones included), the floor over those
    # in the query's language (a translation's cosines run lower: they would compress the query's own)
    cosines = [(leg, chunks) for leg, chunks in results if leg.kind == "dense" and chunks]
    top = max((chunks[0].score for _, chunks in cosines), default=0.0)
    floor = min((dense_floor(leg, chunks, p) for leg, chunks in cosines if leg.language is None), default=0.0)
    # each probe's best score and depth (its chunks name their notes below: :func:`_holders`)
    probe_legs = [(leg, chunks) for leg, chunks in results if leg.kind == "probe"]
    probes = {leg.term: (chunks[0].score if chunks else 0.0) for leg, chunks in probe_legs}
    depth = {leg.term: len(chunks) for leg, chunks in probe_legs}
    known = carried(results)
    results = resolved([(leg, chunks) for leg, chunks in results if leg.kind != "probe"], known)
    dense_legs = [chunks for leg, chunks in results if leg.kind == "dense" and chunks]
    lexical_legs = [(leg, chunks) for leg, chunks in results if leg.kind == "lexical" and chunks]
    if mode == "dense":
        return _single(dense_legs, limit)
    if mode == "lexical":
        return _single([chunks for _, chunks in lexical_legs], limit)
    probed = [t for t in evidence.terms if t in probes]
    present = [t for t in probed if probes[t] > 0]
    coverage = len(present) / len(probed) if probed else (1.0 if lexical_legs else 0.0)
    attainable = sum(probes[t] for t in present)

    notes: dict[str, _Note] = {}
    # the variants' cosines on one scale (the best top, the lowest floor): a rewrite's own best hit is not
    # promoted to the query's
    span = top - floor
    noted = notes.get  # the loops below read ~500 chunks a search: no call per chunk but what must be one
    for chunks in dense_legs:
        for c in chunks:
            if span > 0:
                value = (c.score - floor) / span
                value = value if value > 0.0 else 0.0  # below the floor: nothing
            else:
                value = 1.0
            path = c.payload.get("path")
            note = path if type(path) is str and path else _note(c)
            n = noted(note)
            if n is None:
                notes[note] = _Note(dense=value, dense_chunk=c)
            elif n.dense_chunk is None or value > n.dense:
                n.dense, n.dense_chunk = value, c
    languages: dict[str, str | None] = {}
    for leg, chunks in lexical_legs:
        own = leg.variant == 0
        scale = attainable if own and attainable > 0 else chunks[0].score
        # the query's own leg counts by how much of its vocabulary the index holds; a translation's leg (its
        # terms were not probed) by its own top hit
        covered = coverage if own else 1.0
        for c in chunks:
            payload = c.payload
            path = payload.get("path")
            if type(path) is str and path:
                note = path
                language = languages[path] if path in languages else _note_language(payload, languages)
            else:
                note, language = _note(c), _note_language(payload, languages)
            n = noted(note)
            if n is None:
                n = notes[note] = _Note()
            share = min(1.0, c.score / scale) if scale > 0 else 0.0
            same = leg.language is None or language is None or language == leg.language
            value = share * (1.0 if same else p.cross_language) * covered
            if own:
                n.confidence = max(n.confidence, share)
                if n.lexical_chunk is None or value > n.lexical:
                    n.lexical, n.lexical_chunk = value, c
            elif n.translated_chunk is None or value > n.translated:
                n.translated, n.translated_chunk = value, c

    # Which notes hold the probed terms: wanted only when a term is rare (the exact match and the rare-term agreement
    # judge by the rare terms; a query of common words has none)
    rare_terms = any(0 < n < PROBE_DEPTH for n in depth.values())
    holders, strays, brought = _holders(probe_legs, known) if rare_terms else ({}, {}, {})

    # Exact matches: the notes that hold every required term (the identifiers when the query has any, else all its
    # terms), judged by the rare ones (fewer than PROBE_DEPTH chunks hold them, so the probe saw every holder),
    # holding them strongly enough, and only a few such notes.
    required = [t for t in required_terms(evidence) if t in probes]
    exact: list[str] = []
    by_probes: list[str] = []  # the exact matches the probes alone found
    rare = [t for t in required if depth.get(t, 0) < PROBE_DEPTH]
    potent: dict[int | None, int] = {}  # per required term: its chunks no leg named that could be such a note's
    if required and rare and all(probes[t] > 0 for t in required):
        need = sum(probes[t] for t in required)
        ui_path = evidence.ui_path  # a menu path's BM25 share counts as an identifier's, in full
        # (a chunk whose score, with every other required term at its best, reaches the confidence; a lookup's
        # required terms are probed with payloads, so only a question's are ever unnamed)
        potent = {t: sum(need - probes[t] + s >= p.exact_confidence * need for s in strays.get(t, ()))
                  for t in required}  # fmt: skip
        for note, held in holders.items():
            if all(t in held for t in rare):
                confidence = sum(held.get(t, 0.0) for t in required) / need
                # a query naming identifiers: the note's own BM25 share counts too (a common required term, "alt"
                # of "Alt+F10", is probed only to PROBE_DEPTH chunks, which a long note holding it may miss), by
                # the language factor in a note of another language, as the lexical value counts it
                n = notes.get(note)
                its = n.lexical_chunk if (evidence.identifiers or ui_path) and n is not None else None
                share = n.confidence if its is not None and n is not None else 0.0
                bm25 = 0.0
                if its is not None:
                    language = _note_language(its.payload, languages)
                    same = ui_path or evidence.language is None or language is None or language == evidence.language
                    bm25 = share * (1.0 if same else p.cross_language)
                if confidence >= p.exact_confidence:
                    by_probes.append(note)
                if confidence >= p.exact_confidence or bm25 >= p.exact_confidence:
                    exact.append(note)
                    notes.setdefault(note, _Note()).confidence = max(confidence, share)
    # gates 1 and 2 of :func:`standing_pins`, read ahead: a lookup's exact match no leg brought is answered with its
    # probe's chunk before the rare-term agreement and the trust read the notes (the later gates read them after)
    pinned = _lookup_pins(exact, by_probes, evidence, p, None)
    answered = set()  # the exact matches no dense or BM25 leg brought: answered with the chunk their probe brought
    for note in pinned:
        n = notes[note]
        if n.dense_chunk is None and n.lexical_chunk is None and n.translated_chunk is None and note in brought:
            n.lexical, n.lexical_chunk = n.confidence * coverage, brought[note]
            answered.add(note)
    # Rare-term agreement: the few notes that hold every rare term of the query (fewer than PROBE_DEPTH chunks hold
    # it) get ``rare_agreement`` x their share of those terms' attainable score (x the language factor in a note of
    # another language): "Time Machine" and "File History" in a long question name the note that holds them,
    # whatever a weak dense model ranks first. With exact matches pinned it orders them: of the notes holding the
    # identifier, the one holding the query's other rare words too comes first ("ETH_P_ALL unmodified").
    agree: dict[str, float] = {}
    rare_all = [t for t in evidence.terms if probes.get(t, 0.0) > 0 and depth.get(t, 0) < PROBE_DEPTH]
    if rare_all:
        need = sum(probes[t] for t in rare_all)
        agreeing = [note for note, held in holders.items() if note in notes and all(t in held for t in rare_all)]
        # a note no leg carries that holds every rare term strongly enough to be an exact match is one of the crowd
        # (as when every probe was named by path): each unnamed chunk that could be one counts
        unnamed = min((potent.get(t, len(strays.get(t, ()))) for t in rare_all), default=0) if potent else 0
        crowd = len(agreeing) + unnamed
        for note in agreeing if crowd <= p.exact_notes else ():
            its = notes[note].dense_chunk or notes[note].lexical_chunk
            language = _note_language(its.payload, languages) if its else None
            same = evidence.language is None or language is None or language == evidence.language
            agree[note] = sum(holders[note][t] for t in rare_all) / need * (1.0 if same else p.cross_language)
    top = max((n.confidence for n in notes.values()), default=0.0)
    gain = max(0.0, 1.0 + p.confidence_gain * (top - 0.5))  # how far the query's own BM25 leg is trusted
    for n in notes.values():  # the trust; a translated variant's leg where it counts more
        if n.translated > gain * n.lexical:
            n.lexical, n.lexical_chunk = n.translated, n.translated_chunk
        else:
            n.lexical *= gain
    asked = [chunks for leg, chunks in results if leg.kind == "dense" and leg.variant == 0 and chunks]
    whole = None if pinned else sole_complete(notes, evidence, present, probes, coverage, gain, p)
    undamped = notes[whole].lexical if whole is not None else 0.0
    language = evidence.language
    named = words(evidence.text)
    plain = not evidence.codes and not evidence.ui_path  # "OK", "Wi-Fi": identifiers, no code (rev35c)
    across, damped, silenced = (
        _across(notes, asked[0], language, languages, agree, named, p, plain)
        if language is not None and asked
        else (False, False, set())
    )
    pins = standing_pins(notes, evidence, exact, by_probes, whole, undamped, answered, across, damped, asked,
                         languages, named, p)  # fmt: skip
    pinned = pins.pinned
    if reasons is not None:
        reasons.update(pins.reasons)
    if pins.unnamed:
        # a label naming no note of its language, its BM25 matches many alike, the other language near dense's top
        for n in notes.values():
            its = n.lexical_chunk
            if its is not None and its is not n.translated_chunk and _note_language(its.payload, languages) == language:
                n.lexical *= p.cross_language
    stray = stray_lead(notes, p)
    lead = clear_lead(notes, p)
    # ``_across``'s close calls count no BM25 match, once the pins are decided and BM25's lead and dense's stray first
    # are read as the damping left them (rev35c: silenced before, dense's first holding the query's words read as a
    # stray, and BM25's sure first far down dense's leg gained the stray bonus over it)
    for note in silenced - pinned:
        notes[note].lexical = 0.0
    weight, close = p.lexical_weight, p.close
    scored = []
    for note, n in notes.items():
        dense = n.dense if n.dense <= close else close + p.close_weight * (n.dense - close)
        score = dense + weight * n.lexical + p.rare_agreement * agree.get(note, 0.0)
        if note in (lead, stray):  # one note (BM25's first); where both gates hold, the larger bonus
            score += max(p.lead_bonus if note == lead else 0.0, p.stray_bonus if note == stray else 0.0)
        if note in pinned:  # ahead of any unpinned note, in fused order among themselves; those holding every rare
            # term of the query too (the rare-term agreement's notes) ahead of those that do not
            score += (1.0 + p.lexical_weight) * (2 if note in agree else 1)
        chunk = n.lexical_chunk if (note in pinned or weight * n.lexical > n.dense) else n.dense_chunk
        chunk = chunk or n.dense_chunk or n.lexical_chunk
        if chunk is not None:
            scored.append((-score, note, chunk))
    scored.sort(key=_BEST_FIRST)
    return [candidate(chunk.payload, -score, exact=note in pinned) for score, note, chunk in scored[:limit]]
