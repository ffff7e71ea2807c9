"""BM25 sparse vectors, computed in the project (the same code for notes and queries).

Tokens: Unicode words of the text read as :func:`reading` gives it (the characters no reader sees dropped: zero-width
spaces and joiners, soft hyphens, word joiners, byte-order marks, bidi marks and controls, :data:`_INVISIBLE`; then
compatibility forms folded, NFKC; then the diacritical marks no letter composed with dropped), lower-cased, ``ё`` →
``е``, stop words dropped (Russian and English), each word stemmed with the Snowball stemmer of its script
(Cyrillic → Russian, Latin → English; others kept as they are). A note or a query in NFD (``й`` as ``и`` + U+0306,
as macOS tools write it), holding a soft hyphen or a zero-width space inside a word (pasted from a web page or a
PDF), written in full-width letters (``ｑｄｒａｎｔ``: an input method left in full-width mode), half-width katakana or
ligatures (``ﬁnch`` from a PDF's text layer), or printed with stress marks (``ве́домость``: a mark no letter
composes with), or mixing Latin and Cyrillic letters that look alike (``ЕRR-4012`` with a Cyrillic ``Е``, ``пaпка``
with a Latin ``a``: :func:`one_script`) splits no word and reads as its reader sees it (``Йогурт`` was the token ``огурт``,
``qd\u00adrant`` the tokens ``qd`` and ``rant``, ``ｑｄｒａｎｔ`` a token no query typed in ASCII makes,
``ве́домость`` the tokens ``ве`` and ``домост``, ``ЕRR`` the token ``еrr``: a search for the word missed the note,
silently).
Term ids: the first 4 bytes of BLAKE2b of the stem, so every process and machine agrees.

Documents carry BM25's term-frequency part, ``tf·(k1+1) / (tf + k1·(1 − b + b·dl/avgdl))`` with k1 = 1.2,
b = 0.75; the collection's sparse vector has Qdrant's IDF modifier, so the server supplies the IDF at query
time; the words of a chunk that quote the name of a note it links to count only where the chunk holds them
nowhere else (:func:`document_vector`'s ``links``). ``avgdl`` is a constant (:data:`AVG_DOC_TOKENS`) rather than
the corpus mean: weights then never drift as the KB changes, and an incremental sync never has to rewrite unchanged
notes. Queries send weight 1.0 per term.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kbsearch.links import link_key

if TYPE_CHECKING:
    import snowballstemmer

#: The version of BM25's reading of text: what sparse vector :func:`document_vector` makes of a given text. Bump it
#: whenever the same text would make another vector (:func:`reading`, :func:`tokenize`, the stop words, the
#: stemmers, :func:`term_id`, the weights): the indexer records it in the collection's metadata
#: (:data:`kbsearch.qdrant.query.BM25_READING`), and a sync that finds an older one (or none) rewrites every chunk's
#: sparse vector from its stored payload, without embedding anything (:meth:`kbsearch.indexer.Indexer.sync`);
#: queries are read the new way at once, so a stale index misses notes silently (``x²`` is the token ``x2``).
#: 1: before round 15 (none recorded); 2: NFC without invisible characters (round 15); 3: NFKC, the leftover
#: marks dropped, glued symbols set apart, a capital dotted I read as ``i`` (round 16); 4: a note's first chunk
#: holds its front-matter ``id`` too (:func:`kbsearch.chunking.lexical_text`, session 24); 5: a chunk quoting the name
#: of a note it links to counts the name's words only where it holds them nowhere else (:func:`document_vector`'s
#: ``links``, read from the payload's ``links``; session 31); 6: a word mixing Latin and Cyrillic look-alikes read in
#: the one script its reader sees (:func:`one_script`: ``ЕRR-4012`` with a Cyrillic ``Е`` is ``err``; round 37); 7:
#: a code of look-alikes (``0xСА``) read in Latin, a letter of any Cyrillic alphabet (``ә``) making a word Cyrillic,
#: a Latin ``i`` in a word that cannot be Latin read as ``і`` (rev37d, round 37); 8: a code whose letters are all
#: Cyrillic look-alikes read in Latin (``А4``, ``1С``: ``a4``, ``1c``; adv38, round 38); 9: an acronym in capitals
#: typed in both scripts read in Latin (``АВC``: ``abc``; walk39, round 39).
READING_VERSION = 9

K1 = 1.2
B = 0.75
#: Mean chunk length in tokens after stop-word removal, measured on the Obsidian help vault (3,255 chunks: 45)
#: with the default 400-token chunk budget; see README "BM25".
AVG_DOC_TOKENS = 45.0
MAX_TOKEN_CHARS = 40

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_CYRILLIC = re.compile(r"[а-яё]")
#: Format characters (Cf) a reader does not see, inside or between words.
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_LATIN = re.compile(r"[a-z]")
#: The diacritical marks (Latin, Cyrillic, Greek: the Combining Diacritical Marks blocks) still standing alone after
#: composition: a mark no letter composes with (a Russian stress mark, ``е`` + U+0301 as dictionaries and Wikipedia
#: print it; ``q̃``) is no word character, so it split the word there (``ве́домость``: ``ве`` and ``домост``).
_LEFTOVER_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


#: The blocks that hold the symbols of :data:`_GLUED_SYMBOLS` (letterlike, enclosed, CJK compatibility, presentation
#: forms): one cheap scan tells a text that has none (most: 0.7 ms for 90,000 characters of Russian).
_SYMBOL_BLOCKS = ((0x20A0, 0x2150), (0x2460, 0x2500), (0x2E80, 0x2FE0), (0x3190, 0x3400), (0xFB00, 0x10000),
                  (0x1F100, 0x1F300))  # fmt: skip
_IN_SYMBOL_BLOCKS = re.compile("[" + "".join(f"{chr(a)}-{chr(b - 1)}" for a, b in _SYMBOL_BLOCKS) + "]")


#: The symbols that are no word character but whose compatibility form is letters or digits (``№`` → ``No``,
#: ``™`` → ``TM``, ``℃`` → ``°C``, ``Ⓐ``, ``㎏``), all inside :data:`_SYMBOL_BLOCKS`: NFKC glued them to the word beside
#: them (``№123`` was the token ``no123``, ``Docker™`` ``dockertm``: a search for ``123`` or ``docker`` missed a note it
#: found before), so they are set apart by spaces first, as a reader reads them. Written out as ranges (a class of
#: ~900 single characters scanned 20x slower; derived at import they cost every cold start ~2 ms):
#: ``test_glued_symbols_are_what_nfkc_spells_with_letters`` derives them from Python's Unicode data.
_GLUED_SYMBOLS = re.compile(
    "["
    "\u20a8\u2100-\u2101\u2103\u2105-\u2106\u2109\u2116\u2120-\u2122\u213b\u249c-\u24e9\u2e9f\u2ef3"
    "\u2f00-\u2fd5\u3196-\u319f\u3200-\u321e\u322a-\u3247\u3250\u3260-\u327e\u328a-\u32b0"
    "\u32c0-\u33ff\ufdfc\U0001f110-\U0001f12e\U0001f130-\U0001f14f\U0001f16a-\U0001f16c\U0001f190"
    "\U0001f200-\U0001f202\U0001f210-\U0001f23b\U0001f240-\U0001f248\U0001f250-\U0001f251"
    "]"
)
#: Anything :func:`reading` changes in a text already in NFKC: an invisible character, a symbol of
#: :data:`_SYMBOL_BLOCKS`, a leftover mark; a text with none of them, and in NFKC, is read as it is (one scan instead
#: of four passes: the tokenizer's cost on the vault +50% without it, BENCHMARKS "Session 16").
_UNUSUAL = re.compile(
    "[" + _INVISIBLE.pattern[1:-1] + _IN_SYMBOL_BLOCKS.pattern[1:-1] + _LEFTOVER_MARKS.pattern[1:-1] + "]"
)

STOP_WORDS_EN = frozenset(
    """a about above after again against all am an and any are aren as at be because been before being below
    between both but by can cannot could did didn do does doesn doing don down during each few for from further
    had hadn has hasn have haven having he her here hers herself him himself his how i if in into is isn it its
    itself just let me more most mustn my myself no nor not now of off on once only or other ought our ours
    ourselves out over own same shan she should shouldn so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was wasn we were weren what when where
    which while who whom why will with won would wouldn you your yours yourself yourselves s t d ll m re ve""".split()
)

STOP_WORDS_RU = frozenset(
    """а без более бы был была были было быть в вам вас весь во вот все всего всех вы где да даже для до его ее ей
    ему если есть еще же за здесь и из или им их к как какая какой когда кто ли либо между меня мне много может
    мой мы на над надо наш не него нее нет ни них но ну о об однако он она они оно от очень по под при с со так
    также такой там те тем то того тоже той только том ты у уже хотя чего чей чем что чтобы чье чья эта эти это
    этого этой этом этот я ею будет будут был бывает вдруг ведь впрочем всегда всю иногда куда нельзя никогда
    ними ним нибудь потом потому почти раз разве сам свою себе себя сейчас сказал совсем теперь тогда тот три
    тут уж чуть эту""".replace("ё", "е").split()
)

_local = threading.local()


def _stemmers() -> tuple[snowballstemmer.stemmer, snowballstemmer.stemmer]:
    pair = getattr(_local, "stemmers", None)
    if pair is None:
        import snowballstemmer  # loads every language's stemmer: only when text is tokenized (not a no-change sync)

        pair = (snowballstemmer.stemmer("russian"), snowballstemmer.stemmer("english"))
        _local.stemmers = pair
    return pair


#: Cyrillic letters a reader cannot tell from a Latin one (``Е`` and ``E``; ``н`` is the capital ``Н`` beside ``H``, ``в``
#: the capital ``В`` beside ``B``: BM25 reads a word lower-cased), and the Latin letters a reader cannot tell from a
#: Russian one. A keyboard layout switched a letter late writes them (``С`` is the Latin ``C``'s key on a Russian
#: keyboard), and so do a chat's paste and an OCR'd scan: ``ЕRR-4012`` with a Cyrillic ``Е``, ``пaпка`` with a Latin ``a``.
_CYRILLIC_LOOK_ALIKES = "авекмнорстухіјѕԁԛԝӏАВЕКМНОРСТУХІЈЅԀԚԜӀ"
_LATIN_LOOK_ALIKES = "abcehkmoptxyABCEHKMOPTXY"
#: and the Latin ``i``, the Ukrainian and Belarusian ``і`` a Russian keyboard lacks (``iнформацiя`` typed so is
#: ``інформація``): read so only in a word that cannot be Latin (``iОС`` with a Cyrillic ``О``, ``С`` stays ``iOS``;
#: rev37d).
_LATIN_LOOK_ALIKES_I = _LATIN_LOOK_ALIKES + "iI"
_TO_LATIN = str.maketrans(_CYRILLIC_LOOK_ALIKES, "abekmhopctyxijsdqwlABEKMHOPCTYXIJSDQWL")
_TO_CYRILLIC = str.maketrans(_LATIN_LOOK_ALIKES_I, "авсенкмортхуАВСЕНКМОРТХУіІ")
#: A Cyrillic letter of any alphabet (the Cyrillic and Cyrillic Supplement blocks, their combining marks left out):
#: the look-alikes of other alphabets (``і``, ``ј``, ``ѕ``, ``ԁ``, ``ԛ``, ``ԝ``, ``ӏ``) that a Latin word typed with
#: them holds, and the letters no Latin one looks like (Kazakh ``ә``, ``ң``, Ukrainian ``ї``, ``є``), which make a
#: word Cyrillic (``әкe`` with a Latin ``e`` is ``әке``, not ``әke``: rev37d); a Latin one.
_CYRILLIC_ANY = re.compile("[\u0400-\u0482\u048a-\u052f]", re.IGNORECASE)
_LATIN_ANY = re.compile("[a-z]", re.IGNORECASE)
#: Where a word mixes the two scripts: a letter of one beside a letter of the other (one scan tells a text that has
#: none, :func:`as_seen`).
_SCRIPTS_MEET = re.compile(
    f"{_LATIN_ANY.pattern}{_CYRILLIC_ANY.pattern}|{_CYRILLIC_ANY.pattern}{_LATIN_ANY.pattern}", re.IGNORECASE
)
_DIGIT = re.compile(r"\d")
#: The most letters a code in Cyrillic look-alikes alone holds to be read as the Latin code (:func:`one_script`)
CODE_LETTERS = 3
#: A Cyrillic letter beside a digit: where a code in Cyrillic look-alikes may be (``А4``, ``1С``; :func:`as_seen`).
_CODE_MEETS = re.compile(f"\\d{_CYRILLIC_ANY.pattern}|{_CYRILLIC_ANY.pattern}\\d")
#: The capitals each script writes alike (``A`` and ``А``, ``C`` and ``С``): a word of them alone, in capitals,
#: typed in both scripts (``АВC``: a Cyrillic ``А``, ``В``, a Latin ``C``) is an acronym or a code, written in Latin
#: letters (:func:`_look_alike_acronym`; walk39).
_LATIN_CAPITALS = "ABCEHKMOPTXY"
_CYRILLIC_CAPITALS = "АВЕКМНОРСТУХ"


#: Two such capitals of the two scripts side by side: what :func:`_capitals_meet` looks for where each script writes
#: many (a text in capitals of both languages).
_CAPITALS_MEET = re.compile(f"[{_LATIN_CAPITALS}][{_CYRILLIC_CAPITALS}]|[{_CYRILLIC_CAPITALS}][{_LATIN_CAPITALS}]")
#: The most Latin capitals :func:`_capitals_meet` looks beside one by one; past them, one regex scan.
_CAPITALS_LOOKED_AT = 64


def _capitals_meet(text: str) -> bool:
    """Whether two such capitals of the two scripts stand side by side in ``text``: where such a word may be. Found
    by ``str.find`` of each Latin one (a Russian note holds few), not by a regex, whose scan of every character
    doubled the cost of reading a Russian note (:func:`_lowered`; walk39); none where the text holds no Cyrillic one
    (an English note in capitals holding one character not ASCII, a dash, was read 40 times as slowly, looked
    beside each of its capitals: rev39a), and past :data:`_CAPITALS_LOOKED_AT` of them the regex after all."""
    if not any(c in text for c in _CYRILLIC_CAPITALS):
        return False
    looked = 0
    for latin in _LATIN_CAPITALS:
        at = text.find(latin)
        while at != -1:
            after = text[at + 1 : at + 2]
            if (at and text[at - 1] in _CYRILLIC_CAPITALS) or (after and after in _CYRILLIC_CAPITALS):
                return True
            looked += 1
            if looked > _CAPITALS_LOOKED_AT:
                return _CAPITALS_MEET.search(text) is not None
            at = text.find(latin, at + 1)
    return False


def _look_alike_acronym(word: str) -> bool:
    """A word in capitals of at most :data:`CODE_LETTERS` letters, each one the two scripts write alike, of both
    scripts (``АВC``, ``СPU`` is no such word: ``U`` has no Cyrillic look-alike and is Latin anyway): lower-cased,
    the majority rule read it as Cyrillic (``авс``), an acronym as often Latin as Russian in lower case (``вeс``,
    ``сoк``); in capitals it is an acronym or a code, and a code is written in Latin letters (rev37d, adv38)."""
    return (
        len(word) <= CODE_LETTERS
        and all(c in _LATIN_CAPITALS or c in _CYRILLIC_CAPITALS for c in word)
        and any(c in _LATIN_CAPITALS for c in word)
        and any(c in _CYRILLIC_CAPITALS for c in word)
    )


def _acronyms_in_latin(text: str) -> str:
    """``text`` with each word :func:`_look_alike_acronym` takes written in Latin letters, before it is lower-cased
    (lower-cased, ``авc`` cannot be told from a Russian word typed with a Latin letter); else ``text`` itself."""
    if text.isascii() or not _capitals_meet(text):
        return text
    return _WORD.sub(lambda m: m[0].translate(_TO_LATIN) if _look_alike_acronym(m[0]) else m[0], text)


def one_script(word: str) -> str:
    """A word that mixes Latin and Cyrillic letters, written in the one script its reader sees: the Cyrillic letters
    of a word whose every Cyrillic letter has a Latin look-alike become Latin (``ЕRR`` with a Cyrillic ``Е``:
    ``ERR``; ``СPU``: ``CPU``), the Latin letters of a word whose every Latin letter has a Cyrillic look-alike
    Cyrillic (``пaпке``: ``папке``); when both are possible, the script most of its letters are in (a tie: Latin),
    Latin for a word holding a digit (``0xСА`` with a Cyrillic ``С`` and ``А``: the code ``0xCA``; so is a code in
    Cyrillic look-alikes alone, ``А4``, ``1С``: ``A4``, ``1C``, and ``Б1-А2``'s ``А2``, adv38); a Latin ``i``
    in a word that cannot be Latin is the Ukrainian ``і`` (``iнформацiя``: ``інформація``).
    A word with a letter of each script that has no look-alike (``dockerфайл``) is kept as written, as is every
    word in one script. A Russian ending glued to a Latin name (``VPNа``) becomes Latin (``VPNa``): found by
    neither spelling before, nor now. The Obsidian help vault holds one mixed word (``\\nосновной``, a literal
    ``\\n``): kept."""
    if word.isascii() or not _CYRILLIC_ANY.search(word):
        return word
    if _look_alike_acronym(word):  # ``АВC`` in capitals: the acronym ``ABC`` (walk39)
        return word.translate(_TO_LATIN)
    if not _LATIN_ANY.search(word):
        # a code whose letters are all Cyrillic look-alikes (``А4``, ``1С``, ``В5``: the Latin code to its reader,
        # typed on a Russian layout or by habit) is the Latin code; a word of letters alone stays Russian, and so
        # does a word of more letters than a code holds (``строке1``, glued to its digit; adv38)
        if _DIGIT.search(word):
            letters = _CYRILLIC_ANY.findall(word)
            if len(letters) <= CODE_LETTERS and all(c in _CYRILLIC_LOOK_ALIKES for c in letters):
                return word.translate(_TO_LATIN)
        return word
    cyrillic = _CYRILLIC_ANY.findall(word)
    latin = _LATIN_ANY.findall(word)
    to_latin = all(c in _CYRILLIC_LOOK_ALIKES for c in cyrillic)
    to_cyrillic = all(c in _LATIN_LOOK_ALIKES for c in latin)
    # a word with a digit is a code (``0xСА``, ``А1B2``), and a code is written in Latin letters (rev37d)
    if to_latin and (not to_cyrillic or len(latin) >= len(cyrillic) or any(c.isdigit() for c in word)):
        return word.translate(_TO_LATIN)
    if to_cyrillic or (not to_latin and all(c in _LATIN_LOOK_ALIKES_I for c in latin)):
        return word.translate(_TO_CYRILLIC)
    return word


def as_seen(text: str) -> str:
    """``text`` as BM25 reads it (:func:`reading`), each word mixing Latin and Cyrillic look-alikes in the one
    script its reader sees (:func:`one_script`), its case kept: what a query's language, identifiers, codes and names
    are judged on (``ЕRR-4012`` with a Cyrillic ``Е`` is the code ``ERR-4012`` of no language, not a Russian word)."""
    text = reading(text)
    if text.isascii() or (_SCRIPTS_MEET.search(text) is None and _CODE_MEETS.search(text) is None):
        return text
    return _WORD.sub(lambda word: one_script(word[0]), text)


def _stem(word: str) -> str | None:
    """Stem of one lower-cased word with ``ё`` folded, or None for a stop word; a word mixing Latin and Cyrillic
    look-alikes is read in the one script its reader sees (:func:`one_script`)."""
    word = one_script(word)
    if word in STOP_WORDS_RU or word in STOP_WORDS_EN:
        return None
    ru, en = _stemmers()
    if _CYRILLIC.search(word) and not _LATIN.search(word):
        return str(ru.stemWord(word))
    if _LATIN.search(word) and not _CYRILLIC.search(word):
        return str(en.stemWord(word.replace("’", "'")))
    return word


#: Caches of what a word stems to (None: a stop word or an over-long token) and of a stem's term id: a KB's
#: vocabulary is small and its words repeat (the 10x vault: 920,000 tokens, ~20,000 words), and each costs a Snowball
#: stemmer or a BLAKE2b digest. Plain dicts (a lookup is the whole cost of a known word), emptied when they reach
#: :data:`CACHE_WORDS` so that a process indexing any text stays bounded; shared by threads (a dict's get and set
#: are atomic, and a word computed twice is computed the same).
_STEMS: dict[str, str | None] = {}
_TERM_IDS: dict[str, int] = {}
CACHE_WORDS = 200_000


def _stem_cached(word: str) -> str | None:
    if len(_STEMS) >= CACHE_WORDS:
        _STEMS.clear()
    stem = _STEMS[word] = _stem(word) if len(word) <= MAX_TOKEN_CHARS else None
    return stem


def visible(text: str) -> str:
    """``text`` as a reader sees it: in NFC, without the characters no reader sees (:data:`_INVISIBLE`)."""
    return text if text.isascii() else _INVISIBLE.sub("", unicodedata.normalize("NFC", text))


def reading(text: str) -> str:
    """``text`` as BM25 reads it (notes and queries alike): without the characters no reader sees
    (:data:`_INVISIBLE`), with compatibility forms folded (NFKC: full-width and half-width forms, ligatures,
    superscripts, circled and other presentation forms; NFD composed as NFC does), then without the diacritical
    marks no letter composed with (:data:`_LEFTOVER_MARKS`: a stress mark is read as the word it stresses; the
    marks of other scripts, Devanagari's or Arabic's, still split a word, alike in notes and queries). Tags, types
    and statuses are compared as :func:`visible` gives them (NFC), as Obsidian shows them."""
    if text.isascii() or (_UNUSUAL.search(text) is None and unicodedata.is_normalized("NFKC", text)):
        return text  # most notes (225 of the vault's 270 non-ASCII ones): one scan, and NFKC's quick check
    text = _INVISIBLE.sub("", text)
    if _IN_SYMBOL_BLOCKS.search(text):  # ``№123`` is ``No 123``, not ``No123``
        text = _GLUED_SYMBOLS.sub(r" \g<0> ", text)
    return _LEFTOVER_MARKS.sub("", unicodedata.normalize("NFKC", text))


#: Where a note's tags given as one string are split (``ops, db``, ``ops db``): no stored tag holds these.
TAG_BREAK = re.compile(r"[,\s]+")


def bare_tag(text: str) -> str:
    """A tag as the indexer stores it and a filter compares it: as a reader sees it, without Obsidian's ``#``."""
    return visible(text).strip().lstrip("#").strip()


#: Levels of a nested tag that each give a parent key (:func:`tag_keys`): ``a/b/c`` is found by ``a`` and ``a/b``;
#: a tag nested deeper is found by its first levels' parents and by itself (a tag of 5,000 levels gave 5,000 keys
#: on each chunk of its note).
MAX_TAG_DEPTH = 10
#: A tag key's length: a longer key is cut, the filter's alike (two tags sharing their first 256 characters are one).
MAX_TAG_KEY_CHARS = 256


def tag_key(tag: str) -> str:
    """A tag as Obsidian compares it, the one form a filter and a note's ``tag_keys`` share: as a reader sees it,
    without ``#``, case-folded (``Project``, ``PROJECT`` and ``project`` are one tag; ``Straße`` and ``STRASSE``;
    ``İ`` folds to ``i``, as BM25 reads it; ``ё`` is not ``е``), its levels without empty ones (``a//b/`` is
    ``a/b``), cut at :data:`MAX_TAG_KEY_CHARS`. Empty for a tag of nothing."""
    folded = unicodedata.normalize("NFC", bare_tag(tag).casefold().replace("i\u0307", "i"))
    return "/".join(level for level in folded.split("/") if level)[:MAX_TAG_KEY_CHARS]


def tag_keys(tags: Iterable[str]) -> list[str]:
    """What a note's tags are found by (its ``tag_keys`` payload field): each tag's :func:`tag_key` and its parents'
    (``Project/Beta`` → ``project``, ``project/beta``), as ``folders`` holds a path's, unique, in order."""
    out: dict[str, None] = {}
    for tag in tags:
        key = tag_key(tag)
        if not key:
            continue
        levels = key.split("/")
        for depth in range(1, min(len(levels), MAX_TAG_DEPTH)):
            out["/".join(levels[:depth])[:MAX_TAG_KEY_CHARS]] = None
        out[key] = None
    return list(out)


def folded(text: str) -> str:
    """``text`` as a reader types it: read as BM25 reads it (:func:`reading`), its whitespace runs one space,
    case-folded, each word mixing Latin and Cyrillic look-alikes in the one script its reader sees
    (:func:`one_script`) (a title or a heading named by its words, whatever its form)."""
    text = " ".join(_acronyms_in_latin(reading(text)).split()).casefold()
    return text if text.isascii() else _WORD.sub(lambda word: one_script(word[0]), text)


@functools.lru_cache(maxsize=4096)  # a KB's titles, compared search after search (~1 µs each, ~0.1 µs cached)
def words(text: str) -> tuple[str, ...]:
    """The words of ``text`` as BM25 reads them before stemming, in order, stop words kept: read (:func:`reading`),
    lower-cased, ``ё`` as ``е``; punctuation, quotes and markup no word (a title named by its words: "ежик" names
    "Ёжик", "official website?" and ``"Official website"`` name "Official website.", not "Official website list")."""
    return tuple(one_script(word) for word in _WORD.findall(_lowered(text)))


def _lowered(text: str) -> str:
    """``text`` as its words are read: :func:`reading`, lower-cased, ``ё`` as ``е``; nothing invisible in a word;
    ``İ`` lower-cases to ``i`` + U+0307 (a mark again, after reading dropped the marks: ``İstanbul`` was the tokens
    ``i`` and ``stanbul``)."""
    return _acronyms_in_latin(reading(text)).lower().replace("ё", "е").replace("i\u0307", "i")


def tokenize(text: str) -> list[str]:
    """Stemmed tokens of ``text`` in order (stop words and over-long tokens dropped)."""
    out: list[str] = []
    stems = _STEMS
    for word in _WORD.findall(_lowered(text)):
        try:
            stem = stems[word]
        except KeyError:
            stem = _stem_cached(word)
        if stem:
            out.append(stem)
    return out


def term_id(term: str) -> int:
    tid = _TERM_IDS.get(term)
    if tid is None:
        if len(_TERM_IDS) >= CACHE_WORDS:
            _TERM_IDS.clear()
        tid = _TERM_IDS[term] = int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "big")
    return tid


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]

    def __len__(self) -> int:
        return len(self.indices)


def _to_sparse(weights: dict[int, float]) -> SparseVector:
    items = sorted(weights.items())
    return SparseVector([i for i, _ in items], [w for _, w in items])


#: A link's target counts as a name the linking chunk quotes (:func:`linked_tokens`) from this many words up (its
#: stems, stop words dropped: "Runbook - restore a Qdrant snapshot" is four). A shorter one ("excluded from
#: [[Search]] and [[Graph view]]", "[[Collaborate on a Publish site]]") is words of the sentence, what the chunk is
#: about: not counting those cost the Obsidian vault's long-note and detail questions their notes (from 1 word up),
#: and e5's detail-en a second relevant note (from 3 up; EVAL.md, "Session 31: ... (link31)").
LINK_NAME_MIN_TOKENS = 4


#: The key of a :func:`_linked_names` node that ends a name (no token is empty).
_NAME_END = ""


@functools.lru_cache(maxsize=64)  # a note's chunks come one after another, each with the note's links
def _linked_names(links: tuple[str, ...]) -> dict[str, Any]:
    """The names :func:`linked_tokens` looks for, as a trie of their tokens (:data:`_NAME_END` where one ends): a
    position is walked once along it, whatever number of names share its first words (each such name was sliced and
    compared at every position: a 1 MiB note of 100 links sharing their first words, 2 to 3.6 s of BM25, now 0.1 to
    0.2 s; RELIABILITY.md "Round 31 review"). A payload's names are at most 200 characters: the walk is bounded."""
    names: dict[str, Any] = {}
    for link in links:
        name = tokenize(link) if link_key(link) is not None else []
        if len(name) >= LINK_NAME_MIN_TOKENS:
            node = names
            for token in name:
                node = node.setdefault(token, {})
            node[_NAME_END] = True
    return names


def linked_tokens(tokens: list[str], links: Sequence[str]) -> list[bool]:
    """Which of a chunk's ``tokens`` (:func:`tokenize`) quote a linked note's name: each run of them that is the
    whole name of one of the note's link targets (``links``: the note part of ``[[target]]``, which a link without
    an alias shows) of at least :data:`LINK_NAME_MIN_TOKENS` words, leftmost and longest first, never overlapping.
    An attachment (an embedded image's file name) names no note (:func:`kbsearch.links.link_key`)."""
    marked = [False] * len(tokens)
    if not tokens or not links:
        return marked
    names = _linked_names(tuple(links))
    if not names:
        return marked
    i, n = 0, len(tokens)
    while i < n:
        node, longest, j = names.get(tokens[i]), 0, i
        while node is not None:
            j += 1
            if _NAME_END in node:
                longest = j - i
            node = node.get(tokens[j]) if j < n else None
        if longest:
            marked[i : i + longest] = [True] * longest
            i += longest
        else:
            i += 1
    return marked


def document_vector(
    text: str, avgdl: float = AVG_DOC_TOKENS, k1: float = K1, b: float = B, links: Sequence[str] = ()
) -> SparseVector:
    """A chunk's BM25 vector. ``links``: its note's link targets to other notes (the payload's ``links`` without those
    naming the note itself: :func:`kbsearch.links.links_to_others`, which the indexer applies). A link's text names the
    note it points to, not the one it is in: where the chunk quotes a linked note's name (:func:`linked_tokens`),
    the name's words count only if the chunk holds them nowhere else (a word only the link brings, often the one
    English word of a Russian note, is still found); they count in its length (a reader sees them). The text a
    chunk shows and embeds is unchanged."""
    tokens = tokenize(text)
    if not tokens:
        return SparseVector([], [])
    dl = len(tokens)
    norm = k1 * (1 - b + b * dl / avgdl)
    counts = Counter(tokens)
    marks = linked_tokens(tokens, links) if links else None
    if marks is not None and any(marks):
        own = Counter(t for t, linked in zip(tokens, marks, strict=True) if not linked)
        counts = Counter({t: own[t] or tf for t, tf in counts.items()})
    weights: dict[int, float] = {}
    for term, tf in counts.items():
        tid = term_id(term)
        # Two stems hashing to one id (rare) add up, as they would in one posting list.
        weights[tid] = weights.get(tid, 0.0) + tf * (k1 + 1) / (tf + norm)
    return _to_sparse(weights)


def query_vector(text: str) -> SparseVector:
    return _to_sparse({term_id(t): 1.0 for t in set(tokenize(text))})


_CYRILLIC_LETTER = re.compile(r"[а-яё]", re.IGNORECASE)
_LATIN_LETTER = re.compile(r"[a-z]", re.IGNORECASE)


def text_language(text: str) -> str | None:
    """``ru`` when at least a third of the letters are Cyrillic (Russian notes quote Latin code, names and UI
    strings), ``en`` when the letters are Latin, None without letters of either script."""
    cyrillic = len(_CYRILLIC_LETTER.findall(text))
    latin = len(_LATIN_LETTER.findall(text))
    if cyrillic + latin == 0:
        return None
    return "ru" if 3 * cyrillic >= cyrillic + latin else "en"


#: A word that names something exactly: digits, ``_``, inner capitals (CamelCase), two capitals (GDPR, QDRANT),
#: joined by ``.`` ``/`` ``:`` ``+`` ``-`` (``app.json``, ``ERR-4012``, ``base:query``), or a file extension, a
#: word opening with ``.`` (``.dbf``, ``.oth``: a known item, which an English title asked across languages must
#: not take for plain words, EVAL.md, rev32d).
_SIGNS = r"\d|_|[a-zа-яё][A-ZА-ЯЁ]|[^\W_][./:+\\][^\W_]|^\.[^\W_]"
_NAME_SIGNS = _SIGNS + r"|[A-ZА-ЯЁ]{2}"
_IDENTIFIER = re.compile(_NAME_SIGNS + r"|[^\W_]-[^\W_]")
#: The same without the ``-`` join: a word joined only by ``-`` between letters ("right-click", "e-mail",
#: "side-by-side", "псевдо-файловая") is an ordinary compound in a question, and names something
#: ("gnome-cl-list", "kb-search") only in a query of at most :data:`COMPOUND_NAME_MAX_WORDS` words (EVAL.md, session
#: 27: in a question it pinned the few notes holding the compound as exact matches, and in a Russian half those were
#: the notes with an English paragraph left untranslated). A command-line option ("--squeeze-blank") names
#: something in any query.
_NAMED = re.compile(_NAME_SIGNS + r"|^-\S*[^\W_]-[^\W_]")
#: A code (:func:`code_terms`): a name's signs with three capitals or more, not two ("CNAME", "NAS", "USB", not "OK",
#: "CD": words a UI and both languages' prose write), a command-line option's join.
_CODE = re.compile(_SIGNS + r"|[A-ZА-ЯЁ]{3}|^-\S*[^\W_]-[^\W_]")
COMPOUND_NAME_MAX_WORDS = 2
#: A word of a query: it holds a letter or a digit (a ``-`` or ``—`` set apart is none).
_WORDLIKE = re.compile(r"[^\W_]")


def _naming(words: list[str]) -> re.Pattern[str]:
    """What names something in a query of these words (as :func:`reading` gives them, split at whitespace):
    :data:`_IDENTIFIER` in a query of at most :data:`COMPOUND_NAME_MAX_WORDS` words, else :data:`_NAMED`."""
    count = sum(1 for w in words if _WORDLIKE.search(w))
    return _IDENTIFIER if count <= COMPOUND_NAME_MAX_WORDS else _NAMED


@functools.lru_cache(maxsize=1024)  # a search asks twice of each variant (its BM25 leg, its dense leg's scale)
def query_language(query: str) -> str | None:
    """A query's language, judged word by word (a query is a few words; a long one names things), over its words
    that are not identifiers (as :func:`identifier_terms` takes them: ``QDRANT_URL``, ``ERR-4012``, ``app.json``
    belong to no language; "что-то" in a question of more than two words is a Russian word): Russian when at least
    a third of them are Cyrillic, as :func:`text_language` judges letters. "как
    задать EMBEDDING_API_KEY и QDRANT_URL" and "сбой ERR_CONNECTION_REFUSED в deploy pipeline" are Russian
    questions, though most of their letters are Latin; "how to set up индексатор" is English. Beside a Cyrillic word,
    a Latin word opening with a capital is a name or a label quoted from an English interface and is not counted
    either: "Edit Layer Attributes опускать" is Russian (EVAL.md, session 36, the lead); not in an English sentence
    (:func:`_english_grammar`): "How do I use Синхронизация" is English (session 36 review, rev36a). The label may be
    hyphenated or accented ("Drag-and-Drop", "Préférences"); in a sentence opening with an English function word, a
    Cyrillic word opening with a capital is a Russian label and is not counted ("Where is Настройки" is English;
    'Где Кнопка "Open in new tab"' stays Russian: session 37 review, rev37a), and a sentence typed in
    capitals is read by its function words ("HOW DO I USE Синхронизация": session 37, lang37). A query of
    identifiers alone is judged by all of its letters. The query is read as BM25 reads it (:func:`reading`: a
    query typed in full width, or a word holding a look-alike of the other script, is judged as its reader sees it:
    :func:`as_seen`)."""
    query = as_seen(query)
    words = query.split()
    naming = _naming(words)
    bare = [w.strip(_WORD_PUNCTUATION) for w in words]
    # A sentence typed in capitals ("HOW DO I USE Синхронизация", "WHERE IS Настройки"): two capitals make every
    # word a name, but an English function word is no name, so where the query opens with one and holds another,
    # those in capitals are counted (EVAL.md, session 37, lang37). One alone may be an acronym ("IT отдел"), and a
    # function word in capitals after other words ("поиск AND OR NOT") stays a name. Nor beside a Russian word in
    # lower case: a sentence in capitals quotes a Russian label as it is written, with a capital ("WHERE IS
    # Настройки"); a Russian word in lower case is the sentence's own, and the capitals before it an English name
    # or acronym it names ("IT AS A SERVICE договор", "DO NOT DISTURB режим": walk39, rev37a's leftover). Not in an
    # English question ("HOW DO I OPEN настройки", "WHAT IS THE сайт": a name opens with no question word), nor where
    # the capitals go on after the Russian word ("HOW TO ADD A вложение TO A NOTE"): English sentences, as their
    # forms in lower case are judged (rev39a: walk39 read them as Russian).
    shouted = (
        bool(bare)
        and _shouted_function_word(bare[0])
        and sum(map(_shouted_function_word, bare)) >= 2
        and not _names_a_russian_word(bare)
    )
    kept = [i for i, w in enumerate(bare) if not naming.search(w) or (shouted and _shouted_function_word(w))]
    stripped = [bare[i] for i in kept]
    english = shouted or _english_grammar(stripped)
    if any(_CYRILLIC_LETTER.search(w) for w in stripped) and not english:
        # Beside a Russian word, a Latin word that opens with a capital is a name or a label the writer quotes
        # from an English interface ("Edit Layer Attributes опускать", "Author: Emil Brink регистрации",
        # "Drag-and-Drop", "Élément"): it belongs to no language, as an identifier does (EVAL.md, session 36: the
        # lead; hyphens and accents, session 37, lang37). Not in an English sentence, whose first word and "I" are
        # capitals too (EVAL.md, session 36 review, rev36a).
        stripped = [w for w in stripped if not _quoted_name(w)] or stripped
    elif shouted or _english_grammar(stripped[:1]):
        # In an English sentence, a Cyrillic word opening with a capital, not as the query's first word, is a label
        # quoted from a Russian interface ("Where is Настройки", "What Is Хранилище"): it belongs to no language
        # either (EVAL.md, session 37, lang37). A lower-case one is a Russian word the question uses and counts.
        # Only in a sentence that opens in English: a lower-case function word further on may belong to an English
        # phrase or label a Russian sentence quotes ('Где Кнопка "Open in new tab"', "Ошибка out of memory При
        # Индексации", "Как Настроить Синхронизацию on a Mac"), whose capitalised Russian words are its own
        # (EVAL.md, session 37 review, rev37a).
        stripped = [bare[i] for i in kept if i == 0 or not _QUOTED_LABEL.match(bare[i])] or stripped
    languages = [text_language(w) for w in stripped]
    judged = [lang for lang in languages if lang is not None]
    if not judged:
        return text_language(query)
    return "ru" if 3 * judged.count("ru") >= len(judged) else "en"


_WORD_PUNCTUATION = "\"'`«»()[]{},;!?"


def _english_grammar(words: list[str]) -> bool:
    """Whether these words (a query's, stripped, identifiers left out) are an English sentence: an English function
    word (:data:`STOP_WORDS_EN`) written in lower case, or opening the query ("How do I use Синхронизация", "Can I
    rename Заметки", "Why does Синхронизация fail"). A sentence's first word and "I" open with a capital in any
    sentence, so they are no quoted name; a label quoted in a Russian query ("Edit Layer Attributes опускать",
    "Save As Template сохраняет") opens with a content word and capitalises its function words (EVAL.md, session 36
    review, rev36a)."""
    for i, word in enumerate(words):
        if _CYRILLIC_LETTER.search(word):
            continue
        bare = word.rstrip(":.")
        lower = bare.lower()
        if lower in STOP_WORDS_EN and (i == 0 or lower in (bare, "i")):
            return True
    return False


#: Latin letters, accented ones too (``é``, ``Ä``, ``ł``): a name quoted from a French or German interface is Latin.
_LATIN_LETTERS = "A-Za-zÀ-ÖØ-öø-ɏ"
#: A Latin word, joined by ``-`` between letters or not ("Drag-and-Drop", "Jean-Luc", "Élément"); its capital is
#: checked by :func:`_quoted_name`.
_QUOTED_NAME = re.compile(rf"[{_LATIN_LETTERS}][{_LATIN_LETTERS}'’]*(?:-[{_LATIN_LETTERS}'’]+)*[:.]?$")
#: A Cyrillic word opening with a capital (:func:`query_language`: in an English sentence, a quoted Russian label).
_QUOTED_LABEL = re.compile(r"[А-ЯЁ][а-яёА-ЯЁ'’]*(?:-[а-яёА-ЯЁ'’]+)*[:.]?$")


def _quoted_name(word: str) -> bool:
    """A Latin word opening with a capital (:func:`query_language`: beside a Russian word, a quoted English name)."""
    return word[:1].isupper() and _QUOTED_NAME.match(word) is not None


#: The English words that open a question: a sentence in capitals opening with one asks in English, whatever Russian
#: word in lower case it names ("HOW DO I OPEN настройки"; rev39a).
_QUESTION_OPENERS = frozenset("how what where when why which who whom whose".split())


def _names_a_russian_word(bare: list[str]) -> bool:
    """Whether the capitals of a query opening with an English function word in capitals name a Russian word typed in
    lower case that ends it ("IT AS A SERVICE договор"): a Russian question about an English name, not an English
    question (no question word opens it, no function word in capitals follows the Russian word; walk39, rev39a)."""
    first = next((i for i, w in enumerate(bare) if _CYRILLIC_LETTER.search(w) and w[:1].islower()), None)
    return (
        first is not None
        and bare[0].rstrip(":.").lower() not in _QUESTION_OPENERS
        and not any(map(_shouted_function_word, bare[first + 1 :]))
    )


def _shouted_function_word(word: str) -> bool:
    """An English function word (:data:`STOP_WORDS_EN`) typed in capitals ("HOW", "DO", "I"): two capitals would make
    it a name (:data:`_NAMED`)."""
    bare = word.rstrip(":.")
    return bare.isupper() and bare.isalpha() and bare.lower() in STOP_WORDS_EN


def identifier_terms(query: str, language: str | None = None) -> frozenset[str]:
    """The stemmed terms of the query's identifier-like words (see :data:`_IDENTIFIER`; in a query of more than
    :data:`COMPOUND_NAME_MAX_WORDS` words, counting those with a letter or a digit, :data:`_NAMED`, which takes a
    compound joined by ``-`` alone for a word), and of its Latin words when the query is Russian (a setting, a
    product or a file name inside a Russian question). ``language``: the query's (:func:`query_language`), when
    the caller has it. The query is read as BM25 reads it (:func:`reading`: ``ＱＤＲＡＮＴ＿ＵＲＬ`` typed in full width is the identifier ``QDRANT_URL``)."""
    russian = (language or query_language(query)) == "ru"
    words = as_seen(query).split()
    pattern = _naming(words)
    out: set[str] = set()
    for raw in words:
        word = raw.strip(_WORD_PUNCTUATION)
        if pattern.search(word) or (russian and _LATIN_LETTER.search(word) and not _CYRILLIC_LETTER.search(word)):
            out.update(tokenize(word))
    return frozenset(out)


def code_terms(query: str) -> frozenset[str]:
    """The stemmed terms of the query's codes: its words with a digit, ``_``, inner capitals, a ``.`` ``/`` ``:``
    ``+`` join, a leading ``.``, three capitals or more, or a command-line option (:data:`_CODE`) — in any language
    ("PT1H30M", "duration('5h')", "AES-256", "CNAME", "NAS", "USB"). Fewer than :func:`identifier_terms` takes: no
    two capitals alone ("OK", "CD") and no plain Latin word of a Russian query ("wifi"), which name UI vocabulary
    or a borrowed word both languages write. A question's code is its one bridge to a note of another language
    (:func:`kbsearch.fusion._bridged`); an identifier that is no code is none (EVAL.md, session 35, fus35b)."""
    out: set[str] = set()
    for raw in as_seen(query).split():
        word = raw.strip(_WORD_PUNCTUATION)
        if _CODE.search(word):
            out.update(tokenize(word))
    return frozenset(out)


def proper_names(query: str, language: str | None = None) -> frozenset[str]:
    """The stemmed terms of the Latin words a Russian query writes with a capital ("Logseq", "Dataview", "Google
    Keep"): a foreign proper name, the product or the service the question is about. Russian writes a borrowed
    common word in lower case ("wifi", "ad-hoc", "dpkg" as a command), and a number or a join ("2.0", "10-й",
    "разрешить/запретить") is no name either: those are identifiers (:func:`identifier_terms`) a question may name in
    passing (EVAL.md, sessions 31 and 32). ``language``: the query's (:func:`query_language`), when the caller has it.
    An English query has none (its capitals are a sentence's). The capital is the word's first letter or digit, the
    word Latin as :func:`identifier_terms` reads it (a Latin letter, no Cyrillic one): "Øresund", "Évernote" and
    ".NET" are names too (a capital outside ASCII, a word opening with a sign), "3D" is none. So is every word it
    opens with a capital: an acronym ("PDF", "NMU"), a code ("ERR-4012", "QDRANT_URL"), a Latin word a Russian
    sentence opens with ("Wifi выключается..."): their question keeps its pin wherever the legs rank the note, as
    before session 32 (replayed on session 32's captures, leaving acronyms or a sentence's first word out of the
    names moves no search: EVAL.md, rev32a). "iPhone", "macOS" (a capital inside) are no names, nor is a word of two
    capitals or one alone ("OK", "CD", "TV", the "C" of "C++"): a UI's label or a word both languages write, no code
    (:func:`code_terms`) and no product the question asks about (EVAL.md, session 35 review, rev35a)."""
    if (language or query_language(query)) != "ru":
        return frozenset()
    out: set[str] = set()
    for raw in as_seen(query).split():
        word = raw.strip(_WORD_PUNCTUATION)
        first = next((c for c in word if c.isalnum()), "")  # "3D", "2FA" open with a number: no name
        # "OK", "CD", "C++": two capitals or fewer, no code (:data:`_CODE`), no name
        short = word.isupper() and sum(c.isalpha() for c in word) <= 2 and not _CODE.search(word)
        if first.isupper() and not short and _LATIN_LETTER.search(word) and not _CYRILLIC_LETTER.search(word):
            out.update(tokenize(word))
    return frozenset(out)
