"""Token budgets that treat Russian and English alike, and rerank passages without a repeated title."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbsearch.chunking import chunk_note
from kbsearch.notes import parse_note
from kbsearch.qdrant.query import Candidate
from kbsearch.search import blend, passage
from kbsearch.tokens import estimate_tokens, truncate_tokens
from tests.conftest import VAULT

EN = "Restore the collection from the latest snapshot, then run a full sync to pick up newer notes. " * 20
RU = "Восстановите коллекцию из последнего снапшота, затем запустите полную синхронизацию новых заметок. " * 20


def test_russian_and_english_get_the_same_budget_of_text() -> None:
    # The same sentence in both languages is about the same number of tokens for a multilingual tokenizer;
    # UTF-8 bytes / 4 counted the Russian one as almost twice as long.
    en, ru = estimate_tokens(EN), estimate_tokens(RU)
    assert 0.8 < ru / en < 1.25
    cut_en, cut_ru = truncate_tokens(EN, 100), truncate_tokens(RU, 100)
    assert estimate_tokens(cut_en) <= 100 and estimate_tokens(cut_ru) <= 100
    # the same share of the (same) text survives the cut in both languages
    assert 0.8 < (len(cut_ru) / len(RU)) / (len(cut_en) / len(EN)) < 1.25
    assert not cut_en.endswith(" ") and EN.startswith(cut_en) and EN[len(cut_en)] == " "  # at a word boundary
    assert truncate_tokens("short", 100) == "short"


@pytest.mark.skipif(not VAULT.is_dir(), reason="the shared Obsidian vault is not here")
def test_paired_vault_notes_chunk_to_similar_counts() -> None:
    """The en/ and ru/ halves of the Obsidian help vault are the same notes: their chunk counts now agree."""
    counts = {}
    for half in ("en", "ru"):
        root = VAULT / half
        counts[half] = sum(len(chunk_note(parse_note(p.relative_to(root).as_posix(), p.read_bytes())))
                           for p in sorted(Path(root).rglob("*.md")))  # fmt: skip
    assert 0.85 < counts["ru"] / counts["en"] < 1.2, counts


def test_rerank_passage_names_the_title_once() -> None:
    payload = {"title": "Runbook", "heading": "Runbook > Steps", "text": "Do the thing."}
    assert passage(payload, 384) == "Runbook > Steps\nDo the thing."
    other = {"title": "Runbook", "heading": "Steps", "text": "Do the thing."}
    assert passage(other, 384) == "Runbook\nSteps\nDo the thing."
    long = {"title": "T", "heading": "T > H", "text": RU}
    assert estimate_tokens(passage(long, 64)) <= 64


def test_blend_combines_the_rerank_order_with_the_fused_order() -> None:
    cands = [Candidate({"doc_id": d}, 1.0 / (60 + i)) for i, d in enumerate("abc")]
    rerank = [0.1, 0.9, 0.5]  # the reranker prefers b, then c, then a
    assert blend(cands, None, 0.5, 60) is None
    assert blend(cands, rerank, 1.0, 60) == rerank  # the reranker's order and scores, as before
    fused_only = blend(cands, rerank, 0.0, 60)
    assert fused_only is not None and sorted(fused_only, reverse=True) == fused_only
    half = blend(cands, rerank, 0.5, 60)
    assert half is not None
    assert half[1] > half[0] > half[2]  # b: ranks (1, 0); a: (0, 2); c: (2, 1) with a's fused lead breaking the tie
    assert abs(half[1] - (0.5 / 60 + 0.5 / 61)) < 1e-12
