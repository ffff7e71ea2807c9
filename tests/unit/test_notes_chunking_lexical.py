from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbsearch.chunking import chunk_note, split_section
from kbsearch.lexical import as_seen, document_vector, query_vector, term_id, tokenize
from kbsearch.notes import NoteError, normalize_tags, parse_note
from kbsearch.tokens import estimate_tokens

FULL = """---
id: KB-42
title: Rotating provider keys
status: active
source: https://wiki.example.com/keys
tags: [runbook, "#security", deepinfra]
type: runbook
summary: How to rotate the DeepInfra and Fireworks keys without downtime.
ai_weight: 0.8
created: 2025-03-01
updated: 2025-11-02T10:30:00
owner: platform-team
---
# Rotating provider keys

Keys live in SSM, see [[SSM parameters|the parameter list]] and [[Qdrant Cloud#API keys]].

## Steps

1. Put the new key: ![[rotate.png]]
2. Wait for [[Secrets cache]] to expire.

```bash
# not a heading
aws ssm put-parameter --name /kb-search/prod/deepinfra-api-key --type SecureString --overwrite
echo "[[not a link]]"
```

### Checking

Call `[[literal]]` and look at the 401 rate.

## Rollback

Restore the previous version.
"""


def test_frontmatter_metadata_and_links() -> None:
    note = parse_note("ops/keys.md", FULL.encode())
    assert note.doc_id == "KB-42"
    assert note.title == "Rotating provider keys"
    assert note.tags == ["runbook", "security", "deepinfra"]
    assert (note.type, note.status, note.ai_weight) == ("runbook", "active", 0.8)
    assert note.created == "2025-03-01" and note.updated == "2025-11-02T10:30:00"
    assert note.summary is not None and note.summary.startswith("How to rotate")
    assert note.metadata["owner"] == "platform-team"  # unknown keys are kept
    assert note.links == ["SSM parameters", "Qdrant Cloud", "rotate.png", "Secrets cache"]
    headings = [s.headings for s in note.sections]
    assert headings == [(), ("Steps",), ("Steps", "Checking"), ("Rollback",)]
    intro = note.sections[0].text
    assert "see the parameter list and Qdrant Cloud > API keys." in intro
    steps = note.sections[1].text
    assert "# not a heading" in steps and '"[[not a link]]"' in steps  # code stays as written
    assert "`[[literal]]`" in note.sections[2].text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a, b c", ["a", "b", "c"]),
        (["#x", "y", "#x"], ["x", "y"]),
        ("#solo", ["solo"]),
        (None, []),
        ([1, None, "z"], ["1", "z"]),
        ("", []),
    ],
)
def test_tag_forms(value: object, expected: list[str]) -> None:
    assert normalize_tags(value) == expected


def test_title_falls_back_to_h1_then_file_name() -> None:
    assert parse_note("a/b.md", b"# From H1\n\ntext").title == "From H1"
    assert parse_note("a/Имя файла.md", b"just text").title == "Имя файла"
    note = parse_note("x.md", b"---\ntitle: FM\n---\n# Other H1\n\ntext")
    assert note.title == "FM" and note.sections[0].headings == ("Other H1",)


def test_frontmatter_only_note_still_has_a_chunk() -> None:
    note = parse_note("x.md", b"---\ntitle: Only meta\nsummary: A summary.\n---\n")
    chunks = chunk_note(note)
    assert len(chunks) == 1 and "A summary." in chunks[0].embed_text and chunks[0].heading == "Only meta"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"---\nkey: [oops\n---\nbody", "invalid YAML frontmatter"),
        (b"---\njust a string\n---\nbody", "not a mapping"),
        ("тест".encode("cp1251"), "not UTF-8"),
        (b"abc\x00def", "binary"),
        (b"  \n\t\n", "empty"),
    ],
)
def test_bad_notes_raise_note_error(raw: bytes, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        parse_note("bad.md", raw)


def test_size_limit_and_bom() -> None:
    with pytest.raises(NoteError, match="too large"):
        parse_note("big.md", b"x" * 2000, max_bytes=1000)
    assert parse_note("bom.md", "\ufeff# Title\n\ntext".encode()).title == "Title"


def test_chunks_carry_heading_paths_and_embed_text() -> None:
    note = parse_note("ops/keys.md", FULL.encode())
    chunks = chunk_note(note)
    assert [c.heading for c in chunks] == [
        "Rotating provider keys",
        "Rotating provider keys > Steps",
        "Rotating provider keys > Steps > Checking",
        "Rotating provider keys > Rollback",
    ]
    assert chunks[0].embed_text.startswith("Rotating provider keys\n\nHow to rotate")
    assert "How to rotate" not in chunks[1].embed_text  # the summary only on the first chunk
    assert chunks[2].embed_text.startswith("Rotating provider keys > Steps > Checking\n\n")


def test_long_sections_split_with_overlap_and_code_kept_whole() -> None:
    para = " ".join(f"word{i}" for i in range(120))  # ~ 200 tokens
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(30)) + "\n```"
    text = "\n\n".join([para, para, code, para])
    pieces = split_section(text, max_tokens=300, overlap_tokens=20)
    assert len(pieces) >= 3
    assert all(estimate_tokens(p) <= 300 for p in pieces)
    assert sum(code in p for p in pieces) == 1  # the fence is never cut
    assert any(p.startswith("… ") for p in pieces)  # overlap carried into a continuation


def test_oversized_code_fence_and_giant_word_are_split() -> None:
    code = "```\n" + "\n".join("line " * 20 for _ in range(100)) + "\n```"
    assert all(estimate_tokens(p) <= 200 for p in split_section(code, max_tokens=200))
    blob = "A" * 10_000
    assert all(estimate_tokens(p) <= 200 for p in split_section(blob, max_tokens=200))


def test_tokenizer_russian_and_english() -> None:
    assert tokenize("ёлки") == tokenize("елки") == tokenize("Ёлки")
    assert tokenize("ёлкам")[0] == tokenize("ёлки")[0]
    assert tokenize("заметки")[0] == tokenize("заметкам")[0]
    assert tokenize("indexing")[0] == tokenize("indexed")[0] == tokenize("index")[0]
    assert tokenize("the notes and a runbook") == ["note", "runbook"]  # stop words dropped
    assert tokenize("и в на заметка") == tokenize("заметка")
    assert tokenize("Qdrant-1.16 snake_case x²") == ["qdrant", "1", "16", "snake", "case", "x2"]  # NFKC: ² is 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["Qdrant", "qdrant's", "ёлки", "Ёлкам", "the", "и", "x" * 41, "x" * 40, "don’t",
                                 "заметкам", "index", "indexed", "snake_case", "日本語", "mixedкириллица", "x²"]),
                max_size=30))  # fmt: skip
def test_tokens_and_term_ids_are_the_same_with_the_caches_full_or_emptied(words: list[str]) -> None:
    """The stem and term-id caches change nothing, whatever they hold: the tokens and vectors of a text are
    what the stemmer and the digest make of each word, before, across and after the caches are emptied."""
    import hashlib
    import re

    from kbsearch import lexical

    text = " ".join(words)
    expected = [s for w in re.findall(lexical._WORD, lexical.reading(text).lower().replace("ё", "е"))
                if len(w) <= lexical.MAX_TOKEN_CHARS and (s := lexical._stem(w))]  # fmt: skip
    ids = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=4).digest(), "big") for t in expected]
    original = lexical.CACHE_WORDS
    try:
        for bound in (original, 3, 1):
            lexical.CACHE_WORDS = bound
            for _ in range(2):
                assert tokenize(text) == expected
                assert [term_id(t) for t in expected] == ids
                assert sorted(document_vector(text).indices) == sorted(set(ids))
            lexical._STEMS.clear()
            lexical._TERM_IDS.clear()
        assert tokenize(text) == expected
        assert len(lexical._STEMS) <= 1 and len(lexical._TERM_IDS) <= 1  # bounded
    finally:
        lexical.CACHE_WORDS = original


def test_term_ids_are_stable_across_processes() -> None:
    # fixed values: a change here breaks every existing index
    assert term_id("qdrant") == 3738887970
    assert term_id("елк") == 4040593017


def test_bm25_document_and_query_vectors() -> None:
    doc = document_vector("Qdrant qdrant snapshot")
    q = query_vector("qdrant qdrant snapshots")
    assert q.values == [1.0, 1.0] and sorted(q.indices) == q.indices
    weights = dict(zip(doc.indices, doc.values, strict=True))
    assert weights[term_id("qdrant")] > weights[term_id("snapshot")]
    # k1 = 1.2, b = 0.75, avgdl = 45: tf=1, dl=3 → 2.2 / (1 + 1.2 * (0.25 + 0.75 * 3 / 45))
    assert weights[term_id("snapshot")] == pytest.approx(2.2 / (1 + 1.2 * (0.25 + 0.75 * 3 / 45)))
    assert len(document_vector("the and of")) == 0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=3000))
def test_parser_never_raises_anything_but_note_error(text: str) -> None:
    try:
        note = parse_note("p.md", text.encode("utf-8"))
    except NoteError:
        return
    chunks = chunk_note(note, max_tokens=80, overlap_tokens=10)
    assert chunks and [c.index for c in chunks] == list(range(len(chunks)))
    # every word of every section reaches some chunk
    joined = "\n".join(c.text for c in chunks)
    for section in note.sections:
        for word in section.text.split():
            assert word[:160] in joined


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=500))
def test_tokenizer_is_total_and_lowercase(text: str) -> None:
    tokens = tokenize(text)
    assert all(t and t == t.lower() and "ё" not in t for t in tokens)
    vec = document_vector(text)
    assert len(set(vec.indices)) == len(vec.indices)
    assert all(v > 0 for v in vec.values)


def test_symbols_nfkc_spells_with_letters_glue_no_word_to_their_neighbour() -> None:
    """``№``, ``™``, ``℃`` are no word character: before NFKC a note's ``№123`` was the token ``123`` and ``Docker™``
    ``docker``; NFKC spells them ``No``, ``TM``, ``°C``, which must not join the word beside them (``no123``,
    ``dockertm``: a search for ``приказ 123`` or ``docker`` missed the note it found before)."""
    assert "123" in tokenize("приказ №123")
    assert set(tokenize("приказ 123")) <= set(tokenize("приказ №123"))
    assert "docker" in tokenize("Docker™ Desktop")
    assert "35" in tokenize("до 35℃")
    assert tokenize("ＱＤＲＡＮＴ snake_case x²") == ["qdrant", "snake", "case", "x2"]  # full width still folded
    assert tokenize("ﬁnch") == ["finch"]


def test_a_capital_dotted_i_reads_as_the_word_it_starts() -> None:
    """``İ`` (Turkish, Azerbaijani: ``İstanbul``, ``İzmir``) lower-cases to ``i`` + U+0307, a combining mark after
    :func:`reading` dropped the marks: the word split there (``i``, a stop word, and ``stanbul``), so a search for
    ``istanbul`` missed the note."""
    assert tokenize("İstanbul office") == tokenize("istanbul office") == ["istanbul", "offic"]
    assert tokenize("İZMİR") == tokenize("izmir")


_READING_ALPHABET = st.sampled_from(
    [
        *"aZ ё\u0301\u0306й№™℃²ﬁ\u00ad\u200b\u200e\ufeffＱ＿ｑ\u00a8\u00b4İ\u0307,.",
        "\u2460",
        "\u33cf",
        "\U0001f100",
        "\u0915\u093f",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_READING_ALPHABET, max_size=30).map("".join))
def test_reading_reads_a_text_as_its_every_step_would(text: str) -> None:
    """:func:`reading`'s shortcut for a text with nothing to change (one scan and NFKC's quick check) gives what
    the whole reading gives: invisible characters dropped, the glued symbols set apart, NFKC, leftover marks
    dropped."""
    import unicodedata

    from kbsearch import lexical

    whole = lexical._INVISIBLE.sub("", text)
    whole = lexical._GLUED_SYMBOLS.sub(r" \g<0> ", whole)
    whole = lexical._LEFTOVER_MARKS.sub("", unicodedata.normalize("NFKC", whole))
    assert lexical.reading(text) == whole


def test_glued_symbols_are_what_nfkc_spells_with_letters() -> None:
    """``lexical._GLUED_SYMBOLS`` is written out: it is every character of ``_SYMBOL_BLOCKS`` that is no word
    character but whose NFKC form holds a letter or a digit (``№``, ``™``, ``℃``), as Python's Unicode data says."""
    import re
    import unicodedata

    from kbsearch import lexical

    word = re.compile(r"[^\W_]")
    derived = {
        code
        for start, end in lexical._SYMBOL_BLOCKS
        for code in range(start, end)
        if not word.match(chr(code)) and word.search(unicodedata.normalize("NFKC", chr(code)))
    }
    written = {
        code
        for start, end in lexical._SYMBOL_BLOCKS
        for code in range(start, end)
        if lexical._GLUED_SYMBOLS.match(chr(code))
    }
    assert written == derived


#: Texts whose BM25 vectors pin the reading (each kind of text a change of it has touched): NFD, invisible
#: characters, full width, ligatures, superscripts, stress marks, glued symbols, a capital dotted I, stop words and
#: the stemmers of both scripts, apostrophes, over-long tokens.
READING_CANARY = (
    "Йогуртница ёмкость café", "zebra\u00adfinch qd\u200brant \ufeffword", "\uff51\uff44\uff52\uff41\uff4e\uff54 "
    "\uff14\uff10\uff11\uff12 \uff31uokka \uff76\uff80\uff76\uff85", "\ufb01nch \ufb02attened x² H₂O",
    "Ве\u0301домость q\u0303uokka", "№123 Docker™ 20℃ ㎏", "İstanbul DİKKAT", "The runners were running and ran",
    "Мы бежали по дорогам, и они бегут", "don't it’s O'Reilly", "a" * 41 + " short",
    "\u0415RR-4012 п\x61пке \u0421PU \x63оздать сoк dockerфайл",  # reading 6: look-alikes of the other script
    "0x\u0421\u0410 \u04d9\u043a\x65 \x69нформац\x69я",  # reading 7: a code in Latin, ә Cyrillic, i as і (rev37d)
    "\u04104 1\u0421 \u04111-\u04102 110\u0432",  # reading 8: a code in Cyrillic look-alikes alone is Latin (adv38)
    "\u0410\u0412\x43 \u0421\x4fK \u0412\x45\u0421\u0422\u041e",  # reading 9: an acronym in capitals of both scripts is Latin
)  # fmt: skip


#: Chunks quoting the names of notes they link to (reading 5): long names, short ones, an attachment's, a name
#: whose words the chunk also holds outside the link and one whose words only the link brings.
LINKED_CANARY = (
    ("Snapshots are taken nightly; restoring one is described in Runbook - restore a Qdrant snapshot; a site "
     "published with others: Collaborate on a Publish site",
     ["Runbook - restore a Qdrant snapshot", "Search", "lucide-menu.svg", "Collaborate on a Publish site"]),
    ("Порядок описан в Grafana alerting escalation policy; see lucide menu svg and Search",
     ["Grafana alerting escalation policy", "Search", "lucide-menu.svg"]),
)  # fmt: skip


def test_the_reading_version_names_the_reading() -> None:
    """A change of what BM25 makes of a text (the reading, the tokens, the stemmers, the term ids, the weights) must
    bump ``lexical.READING_VERSION``: indexes built before then have their BM25 vectors read anew by the next sync
    (the indexer rewrites them when the recorded version is older). This digest of the canary texts' vectors fails
    when the reading changed; bump the version and record the new digest with it."""
    import hashlib
    import json

    from kbsearch.lexical import READING_VERSION

    read = [
        *map(document_vector, READING_CANARY),
        *(document_vector(text, links=links) for text, links in LINKED_CANARY),
    ]
    vectors = [[v.indices, [round(x, 9) for x in v.values]] for v in read]
    digest = hashlib.sha256(json.dumps(vectors).encode()).hexdigest()[:16]
    assert (READING_VERSION, digest) == (9, "54ab80a38e79083b"), (
        "BM25's reading changed: bump READING_VERSION, record the digest"
    )


def test_a_code_in_cyrillic_look_alikes_alone_is_read_as_the_latin_code() -> None:
    """`А4` (a Cyrillic `А`: the paper size as Russian text writes it), `1С` (the software, a Cyrillic `С`) and the
    `А2` of `Б1-А2` are in one script, which adv37 never touched: `A4`, `1C` and `Б1-A2` typed in Latin were other
    tokens. A word holding a digit whose letters are all Cyrillic look-alikes is the Latin code; a word of letters
    alone stays Russian (`сок`), and so does a code with a letter no Latin one looks like (`б1`)."""
    assert tokenize("\u04104") == tokenize("A4") == ["a4"]
    assert tokenize("1\u0421") == tokenize("1C") == ["1c"]
    assert tokenize("\u04111-\u04102") == tokenize("\u04111-A2") == ["б1", "a2"]
    assert tokenize("сок АВТО") == ["сок", "авт"]
    assert as_seen("формат \u04104") == "формат A4"


def test_a_word_mixing_latin_and_cyrillic_look_alikes_is_read_in_the_script_its_reader_sees() -> None:
    """`ЕRR-4012` with a Cyrillic `Е`, `СPU` with a Cyrillic `С`, `пaпке` and `cоздать` with a Latin `a`, `c`: BM25 read
    tokens no query in one script makes (`еrr`, `пaпке` unstemmed). Each is read as the word its reader sees; a
    word whose letters of both scripts cannot all be look-alikes is kept, and so is every word in one script."""
    assert tokenize("\u0415RR-4012") == tokenize("ERR-4012") == ["err", "4012"]
    assert tokenize("\u0421PU") == tokenize("CPU")
    assert tokenize("п\x61пке") == tokenize("папке") and tokenize("\x63оздать") == tokenize("создать")
    assert tokenize("с\x6fк") == tokenize("сок")  # both scripts possible: most letters Cyrillic
    assert tokenize("dockerфайл") == ["dockerфайл"]  # ф has no Latin look-alike, r no Cyrillic one: as written
    assert tokenize("Сок Cop") == ["сок", "cop"]  # one script each: untouched


@pytest.mark.parametrize(
    ("typed", "seen"),
    [("\u0415RR-4012", "ERR-4012"), ("\u0421PU", "CPU"), ("\u0421anary", "Canary"),
     ("как настроить \u0421anary", "как настроить Canary"), ("\x63инхронизация", "синхронизация"),
     ("ошибка \u0415RR-4012 при выгрузке", "ошибка ERR-4012 при выгрузке")],
)  # fmt: skip
def test_a_query_holding_a_look_alike_of_the_other_script_is_judged_as_the_query_its_reader_sees(
    typed: str, seen: str
) -> None:
    """`ЕRR-4012` with a Cyrillic `Е` was judged a Russian query (`СPU`, `Сanary` too), and `как настроить Сanary` read
    no foreign name: the fusion's evidence (language, identifiers, codes, names) differed from the one the query
    its reader sees gets, so the search trusted its legs otherwise. Each is judged on its words read in one script."""
    from kbsearch.fusion import analyse

    got, want = analyse(typed), analyse(seen)
    assert (got.language, got.terms, got.identifiers, got.codes, got.names) == (
        want.language, want.terms, want.identifiers, want.codes, want.names,
    ), typed  # fmt: skip
