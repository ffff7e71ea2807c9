"""eval/replay/hubs.py (session 36, fus36c): each chunk's hubness from the oracle's vector cache, as the oracle
writes it (:class:`kbsearch_tools.oracle._Cache`'s keys), over a corpus chunked as the indexer chunks it."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from kbsearch.chunking import chunk_note
from kbsearch.notes import parse_note
from kbsearch_tools.oracle import _Cache
from tests.conftest import ROOT

NOTES = {
    "hub.md": "# Hub\n\nEverything about the application in general, its settings, its syncing and its imports.\n",
    "sync.md": "# Sync\n\nHow to sync notes between devices with end-to-end encryption.\n",
    "import.md": "# Import\n\nHow to import notes from another application.\n",
    "theme.md": "# Themes\n\nHow to change the colours and the fonts of the interface.\n",
    "синхронизация.md": "# Синхронизация\n\nКак синхронизировать заметки между устройствами с шифрованием.\n",
    "импорт.md": "# Импорт\n\nКак импортировать заметки из другого приложения.\n",
}


def _hubs() -> ModuleType:
    sys.path.insert(0, str(ROOT / "eval" / "replay"))
    spec = importlib.util.spec_from_file_location("hubs", ROOT / "eval" / "replay" / "hubs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_r_r_across_and_the_k_occurrence_from_the_nearest_chunks_of_other_notes(
    tmp_path: Path,
) -> None:
    corpus = tmp_path / "kb"
    corpus.mkdir()
    notes = {**NOTES, "twin.md": "# Twin\n\n## One\n\nColours of the theme.\n\n## Two\n\nFonts of the theme.\n"}
    axes = {"sync.md": 0, "import.md": 1, "theme.md": 2, "twin.md": 2, "синхронизация.md": 0, "импорт.md": 1}
    cache = _Cache("e5", tmp_path / "e5.sqlite")
    rng = np.random.default_rng(7)
    vectors: dict[tuple[str, int], np.ndarray] = {}
    for path, text in notes.items():
        (corpus / path).write_text(text, encoding="utf-8")
        vector = np.zeros(8)
        if path == "hub.md":
            vector[:3] = 1.0  # as near to the three topics as to each other
        else:
            vector[axes[path]] = 1.0
            vector[3 if path.isascii() else 4] = 0.6  # each language its own direction too
        vector = vector + rng.normal(0, 0.01, 8)
        vector /= np.linalg.norm(vector)
        for chunk in chunk_note(parse_note(path, text.encode())):  # twin.md: two chunks, one vector
            cache.put({cache.key(chunk.embed_text, False): [float(x) for x in vector]})
            vectors[(path, chunk.index)] = vector
    table, found, total = _hubs().corpus_table(corpus, "e5", sqlite3.connect(tmp_path / "e5.sqlite"), k=2)
    assert found == total == len(vectors) == len(notes) + 1

    def expected(key: tuple[str, int], across: bool) -> float:
        near = sorted(
            (float(vectors[key] @ v) for other, v in vectors.items()
             if other[0] != key[0] and (not across or other[0].isascii() != key[0].isascii())),
            reverse=True,
        )  # fmt: skip
        return sum(near[:2]) / 2

    def nearest(key: tuple[str, int]) -> list[tuple[str, int]]:
        others = [other for other in vectors if other[0] != key[0]]
        return sorted(others, key=lambda other: -float(vectors[key] @ vectors[other]))[:2]

    # k-occurrence: how many chunks have it among their 2 nearest (over all chunks: 2 Russian chunks are fewer than 5 k)
    occurrence = {key: sum(key in nearest(other) for other in vectors) for key in vectors}
    assert sum(occurrence.values()) == 2 * len(vectors)
    for key, (_, r, r_across, n) in table.items():
        assert abs(r - expected(key, False)) < 1e-5, key
        assert abs(r_across - expected(key, True)) < 1e-5, key
        assert n == occurrence[key], key
    # twin.md's two chunks (one vector) are not each other's neighbours; theme.md, twin.md's sibling, has the
    # highest r by that sibling alone (the family effect EVAL.md names), not hub.md, near every topic at once
    assert table[("twin.md", 0)][1] < 0.99 < table[("theme.md", 0)][1]
    assert max(table, key=lambda key: table[key][1])[0] == "theme.md"
    # across: the English sync note's nearest Russian notes, not its English neighbours
    assert table[("sync.md", 0)][2] < table[("sync.md", 0)][1]
