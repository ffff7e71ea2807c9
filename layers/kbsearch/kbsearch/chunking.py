"""Note sections → chunks: one per section, split with a small overlap when a section is over the token budget.

Code fences are kept whole unless a single fence alone is over the budget. The text that gets embedded is the
heading path ("Title > Section > Subsection"), the note's summary on the first chunk, and the chunk text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kbsearch.markdown import fence_closed, fence_opened
from kbsearch.tokens import NO_COUNTS, Counts, counts, estimate, estimate_tokens, minus, plus

if TYPE_CHECKING:  # notes loads the YAML parser, which only parsing needs (embeddings import this module)
    from kbsearch.notes import Note

DEFAULT_MAX_TOKENS = 400
DEFAULT_OVERLAP_TOKENS = 40
#: How a chunk that continues a long section opens: the last words of the chunk before it follow, one paragraph
#: (:func:`split_section`); a snippet starts after that paragraph (:func:`kbsearch.search.snippet`).
CONTINUED = "… "
#: Chunks one note may make before its small sections are packed together (the largest note of the Obsidian vault
#: makes 158): a 1 MB note of 170,000 one-word sections made 170,000 chunks, 24 s, 4.0 GB (the indexer Lambda
#: has 2 GB) and an 845 MB index.
MAX_CHUNKS = 2_000
_SENTENCE = re.compile(r"(?<=[.!?…])\s+")


@dataclass(frozen=True)
class Chunk:
    index: int
    heading: str  # the heading path, "Title > Section > Subsection"
    text: str  # what a reader sees: the chunk of the section
    embed_text: str  # what is embedded and BM25-indexed
    # ``counts(embed_text)``, when the indexer took them where it parsed the note (its parsing process, for a large
    # sync): the embedding's batches are budgeted from them instead of counting every text again in the indexing
    # process, under its one interpreter lock (:meth:`kbsearch.providers.embeddings.Embedder.batches`)
    embed_counts: Counts | None = None


def _blocks(text: str) -> list[tuple[str, bool]]:
    """Paragraphs separated by blank lines, code fences as single blocks: (text, is_code)."""
    blocks: list[tuple[str, bool]] = []
    current: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        opened = fence_opened(line) if fence is None else None
        if opened is not None:
            if current:
                blocks.append(("\n".join(current), False))
                current = []
            fence = opened
            current.append(line)
            continue
        if fence is not None:
            current.append(line)
            if fence_closed(line, fence):
                blocks.append(("\n".join(current), True))
                current, fence = [], None
            continue
        if not line.strip():
            if current:
                blocks.append(("\n".join(current), False))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append(("\n".join(current), fence is not None))
    return blocks


def _split_oversized(block: str, is_code: bool, max_tokens: int) -> list[str]:
    """One block over the budget → pieces under it: lines for code, sentences then words for prose."""
    units = block.split("\n") if is_code else [s for s in _SENTENCE.split(block) if s]
    pieces: list[str] = []
    current: list[str] = []
    current_counts = NO_COUNTS
    joiner = "\n" if is_code else " "
    for unit in units:
        unit_counts = counts(unit)
        if estimate(unit_counts) > max_tokens:
            unit_parts: list[tuple[str, Counts]] = []
            part: list[str] = []
            part_counts = NO_COUNTS
            for word in unit.split(" "):
                rest, rest_counts = word, counts(word)
                if part and estimate(plus(part_counts, rest_counts)) > max_tokens:
                    unit_parts.append((" ".join(part), part_counts))
                    part, part_counts = [], NO_COUNTS
                while estimate(rest_counts) > max_tokens:  # one enormous "word" (base64, a minified line)
                    cut = max_tokens  # no character is more than one estimated token
                    head = counts(rest[:cut])
                    unit_parts.append((rest[:cut], head))
                    rest, rest_counts = rest[cut:], minus(rest_counts, head)
                part.append(rest)
                part_counts = plus(part_counts, rest_counts)
            if part:
                unit_parts.append((" ".join(part), part_counts))
        else:
            unit_parts = [(unit, unit_counts)]
        for piece, piece_counts in unit_parts:
            if current and estimate(plus(current_counts, piece_counts)) > max_tokens:
                pieces.append(joiner.join(current))
                current, current_counts = [], NO_COUNTS
            current.append(piece)
            current_counts = plus(current_counts, piece_counts)
    if current:
        pieces.append(joiner.join(current))
    return pieces


def _tail(text: str, tokens: int) -> str:
    """The last words of ``text`` worth about ``tokens`` tokens (the overlap carried into the next chunk)."""
    if tokens <= 0:
        return ""
    words = text.split()
    out: list[str] = []
    so_far = NO_COUNTS
    for word in reversed(words):
        with_word = plus(so_far, counts(word))
        if estimate(with_word) > tokens:
            break
        out.append(word)
        so_far = with_word
    return " ".join(reversed(out))


def split_section(
    text: str, max_tokens: int = DEFAULT_MAX_TOKENS, overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
) -> list[str]:
    if estimate_tokens(text) <= max_tokens:
        return [text]
    units: list[tuple[str, bool, Counts]] = []
    for block, is_code in _blocks(text):
        block_counts = counts(block)
        if estimate(block_counts) > max_tokens:
            units.extend((piece, is_code, counts(piece)) for piece in _split_oversized(block, is_code, max_tokens))
        else:
            units.append((block, is_code, block_counts))
    chunks: list[str] = []
    current: list[str] = []
    current_counts = NO_COUNTS
    last_code = False
    for block, is_code, block_counts in units:
        if current and estimate(plus(current_counts, block_counts)) > max_tokens:
            chunks.append("\n\n".join(current))
            overlap = "" if (last_code or is_code) else _tail(current[-1], overlap_tokens)
            current, current_counts = [], NO_COUNTS
            if overlap and estimate_tokens(overlap) + estimate(block_counts) < max_tokens:
                current.append(f"{CONTINUED}{overlap}")
                current_counts = counts(current[0])
        current.append(block)
        current_counts = plus(current_counts, block_counts)
        last_code = is_code
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def _packed(pieces: list[tuple[str, str]], max_tokens: int) -> list[tuple[str, str]]:
    """Consecutive pieces packed into chunks of at most ``max_tokens`` (a piece already that large stays alone):
    a packed chunk takes its first piece's heading path, and each later piece of another section opens with that
    section's own heading, so every word is still indexed once."""
    out: list[tuple[str, str]] = []
    heading, used = "", 0
    texts: list[str] = []
    for path, text in pieces:
        line = text if not texts or path == heading else f"{path.rsplit(' > ', 1)[-1]}\n{text}"
        cost = estimate_tokens(line)
        if texts and used + cost > max_tokens:
            out.append((heading, "\n\n".join(texts)))
            texts, used, line, cost = [], 0, text, estimate_tokens(text)
        if not texts:
            heading = path
        texts.append(line)
        used += cost
    if texts:
        out.append((heading, "\n\n".join(texts)))
    return out


def chunk_note(
    note: Note, max_tokens: int = DEFAULT_MAX_TOKENS, overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
) -> list[Chunk]:
    """Every note yields at least one chunk (its title and summary), so it can be found by title."""
    pieces: list[tuple[str, str]] = []
    for section in note.sections:
        heading = " > ".join((note.title, *section.headings))
        pieces.extend((heading, text) for text in split_section(section.text, max_tokens, overlap_tokens))
    if not pieces:
        pieces.append((note.title, note.summary or ""))
    if len(pieces) > MAX_CHUNKS:
        pieces = _packed(pieces, max_tokens)
    return [Chunk(index=index, heading=heading, text=text, embed_text=embed_text(index, heading, note.summary, text))
            for index, (heading, text) in enumerate(pieces)]  # fmt: skip


def embed_text(index: int, heading: str, summary: str | None, text: str) -> str:
    """What a chunk embeds and BM25 indexes: its heading path, the note's summary on the first chunk (unless it is
    the chunk's text), the chunk's text. The indexer rebuilds it from a stored chunk's payload too (its BM25
    vector read anew: :meth:`kbsearch.indexer.Indexer._reread_bm25`)."""
    parts = [heading]
    if index == 0 and summary and summary != text:
        parts.append(summary)
    if text:
        parts.append(text)
    return "\n\n".join(parts)


def lexical_text(index: int, embedded: str, note_id: str | None) -> str:
    """What BM25 indexes of a chunk: what it embeds (:func:`embed_text`) and, on a note's first chunk, the note's
    front-matter ``id`` (``KB-013``, ``ADR-003``): a reader looks a note up by its id, which appears nowhere else in
    its text (a search for it found other notes), and which no dense model reads as more than noise, so it is not
    embedded (a note given an id is not embedded again)."""
    return f"{embedded}\n\n{note_id}" if index == 0 and note_id else embedded
