"""Hubness of a corpus's chunks in a model's embedding space, from the oracle's vector cache (issue 19, fus36c).

CSLS (Conneau et al. 2018) scores a query against a document as ``2·cos(q, d) − r_q − r_d``, ``r_d`` the document's mean
cosine to its ``k`` nearest neighbours: a document close to everything (a hub, first in the leg whatever the query
asks) is discounted. The captures hold no vectors; the oracle's cache does (``kbsearch_tools.oracle``: a row per
model, mode and text, keyed by ``sha256("<model>\\0<is_query>\\0<text>")``, the text a chunk's ``embed_text`` with e5's
``passage: `` stripped). Each corpus is chunked again as the indexer chunks it (``eval/replay/texts.py``) and every
chunk's ``r`` is the mean cosine to its ``k`` nearest chunks of the same corpus, the chunks of its own note excluded;
its ``r across``, the same over the chunks of the other language only (the notes' ``lang`` as the indexer records it:
CSLS's other side, the hub of a cross-language leg), ``r`` where the corpus holds fewer than ``k`` such chunks.

    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/replay/hubs.py e5 [--cache COPY] [--top 8]

    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/replay/hubs.py e5 --cache COPY --answers CAPTURE.pkl ...

prints, per corpus: the chunks found in the cache, the median and spread of ``r``, and the notes with the highest
``r`` (a note's ``r``: its highest chunk's), by each measure. :func:`tables` is what ``eval/replay/variants_s36_fus36c.py`` reads.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from texts import ROOT, class_corpora

from kbsearch.chunking import Chunk, chunk_note
from kbsearch.lexical import text_language
from kbsearch.notes import NoteError, parse_note

#: chunk key (path, chunk index) → (its text as the payload holds it, r, r over the other language's chunks only
#: (r where the corpus holds fewer than ``k`` chunks of another language), its k-occurrence across: how many chunks
#: of the other language have it among their ``k`` nearest of its language (over all chunks of other notes where
#: either language holds fewer than ``5 k`` chunks: a KB of one language))
Table = dict[tuple[str, int], tuple[str, float, float, float]]


def _key(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\x00{0}\x00{text}".encode()).hexdigest()


#: a corpus's chunks found in the cache: their keys (path, chunk index), texts, notes' languages, unit vectors (a row
#: each), and the count of all its chunks
Vectors = tuple[list[tuple[str, int]], list[str], list[str], np.ndarray | None, int]


def indexed_notes(corpus: Path) -> Iterator[tuple[str, list[Chunk], str | None]]:
    """Each note of ``corpus`` as the indexer reads it: its path, its chunks and its language (the payload's
    ``lang``: ``text_language`` of its title and chunks); a note the indexer skips is left out."""
    for file in sorted(corpus.rglob("*.md")):
        path = file.relative_to(corpus).as_posix()
        try:
            note = parse_note(path, file.read_bytes())
        except (NoteError, OSError):
            continue
        chunks = chunk_note(note)
        yield path, chunks, text_language(note.title + "\n" + "\n".join(c.text for c in chunks))


def corpus_vectors(corpus: Path, model: str, db: sqlite3.Connection) -> Vectors:
    """Each chunk of ``corpus`` as the indexer chunks it, with its vector from the cache (unit length), where found."""
    keys: list[tuple[str, int]] = []
    texts: list[str] = []
    languages: list[str] = []
    vectors: list[np.ndarray] = []
    total = 0
    for path, chunks, lang in indexed_notes(corpus):
        language = str(lang)
        for chunk in chunks:
            total += 1
            row = db.execute("SELECT vec FROM v WHERE k = ?", (_key(model, chunk.embed_text),)).fetchone()
            if row is None:
                continue
            keys.append((path, chunk.index))
            texts.append(chunk.text)
            languages.append(language)
            vectors.append(np.frombuffer(bytes(row[0]), dtype="<f4"))
    if not vectors:
        return keys, texts, languages, None, total
    m = np.stack(vectors).astype(np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return keys, texts, languages, m, total


def corpus_table(corpus: Path, model: str, db: sqlite3.Connection, k: int = 10) -> tuple[Table, int, int]:
    """The corpus's chunks' ``r`` (mean cosine to the ``k`` nearest chunks of other notes), the chunks found in the
    cache and all chunks."""
    keys, texts, languages, m, total = corpus_vectors(corpus, model, db)
    if m is None:
        return {}, 0, total
    sims = m @ m.T
    notes = np.array([p for p, _ in keys])
    sims[notes[:, None] == notes[None, :]] = -np.inf  # the note's own chunks (itself included) are no neighbours
    r = _mean_nearest(sims, k)
    everything = sims.copy()
    lang = np.array(languages)
    sims[lang[:, None] == lang[None, :]] = -np.inf  # the other language's chunks only (CSLS's other side)
    crossed = np.isfinite(sims).sum(axis=1) >= k
    rx = np.where(crossed, _mean_nearest(sims, k), r)
    both = min(np.unique(lang, return_counts=True)[1]) >= 5 * k and len(set(languages)) > 1
    occurrence = _occurrence(sims if both else everything, k)
    rows = zip(keys, texts, r, rx, occurrence, strict=True)
    return {key: (text, float(v), float(x), float(n)) for key, text, v, x, n in rows}, len(keys), total


def _occurrence(sims: np.ndarray, k: int) -> np.ndarray:
    """How many rows have each column among their ``k`` nearest (finite) columns: the k-occurrence ``N_k``."""
    order = np.argsort(-sims, axis=1)[:, :k]
    chosen = np.take_along_axis(sims, order, axis=1)
    return np.bincount(order[np.isfinite(chosen)], minlength=sims.shape[1]).astype(float)


def _mean_nearest(sims: np.ndarray, k: int) -> np.ndarray:
    near = -np.sort(-sims, axis=1)[:, : min(k, sims.shape[1] - 1)]
    near[~np.isfinite(near)] = np.nan  # fewer neighbours than k: the mean of those there are
    counted = np.isfinite(near).sum(axis=1)
    return np.where(counted > 0, np.nansum(near, axis=1) / np.maximum(counted, 1), 0.0)


def connect(model: str, cache: str | None = None) -> sqlite3.Connection:
    """The oracle's vector cache, read only: ``cache`` (a copy: ``sqlite3 .kbsearch/oracle/e5.sqlite ".backup
    COPY"``), else ``$HUBS_CACHE``, else ``.kbsearch/oracle/<model>.sqlite`` (what ``kbsearch eval --oracle`` fills)."""
    path = Path(cache or os.environ.get("HUBS_CACHE") or ROOT / ".kbsearch" / "oracle" / f"{model}.sqlite")
    if not path.is_file():
        raise SystemExit(f"hubs: no oracle cache at {path} (--cache COPY, or HUBS_CACHE)")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def tables(model: str, cache: str | None = None, k: int = 10) -> dict[str, Table]:
    """Every eval corpus's table for ``model`` (a few seconds: each corpus chunked, its vectors read)."""
    db = connect(model, cache)
    return {str(c): corpus_table(c, model, db, k)[0] for c in sorted(set(class_corpora().values())) if c.is_dir()}


def answers(model: str, captures: list[Path], cache: str | None) -> None:
    """Per captured cell: the mean ``r − median`` (and ``r across``) of its searches' relevant notes (a note's r: its
    highest chunk's), and the share of them above the corpus's median: whether the answers are hubs."""
    from replay import load

    found = tables(model, cache)
    corpora = class_corpora()
    for (_, cell), captured in sorted(load(captures, texts=False).items()):
        table = found.get(str(corpora.get(cell)))
        if not table:
            continue
        line = f"{model} {cell:24}"
        for column, label in ((1, "r"), (2, "r across")):
            notes: dict[str, float] = {}
            for (path, _), row in table.items():
                notes[path] = max(notes.get(path, -1.0), row[column])
            median = float(np.median(list(notes.values())))
            off = [notes[p] - median for _, relevant, *_ in captured["rows"] for p in relevant if p in notes]
            above = sum(1 for x in off if x > 0) / max(1, len(off))
            line += f"  {label}: relevant − median {np.mean(off) if off else 0.0:+.4f}, above the median {above:.2f}"
        print(line)


def main(argv: list[str]) -> int:
    model = argv[0]
    if "--answers" in argv:
        captures = [Path(a) for a in argv[argv.index("--answers") + 1 :] if a.endswith(".pkl")]
        answers(model, captures, argv[argv.index("--cache") + 1] if "--cache" in argv else None)
        return 0
    cache = argv[argv.index("--cache") + 1] if "--cache" in argv else None
    top = int(argv[argv.index("--top") + 1]) if "--top" in argv else 8
    db = connect(model, cache)
    for corpus in sorted(set(class_corpora().values())):
        if not corpus.is_dir():
            continue
        table, found, total = corpus_table(corpus, model, db)
        if not table:
            print(f"{model} {corpus}: none of {total} chunks in the cache")
            continue
        for column, label in ((1, "r"), (2, "r across"), (3, "k-occurrence across")):
            r = np.array([row[column] for row in table.values()])
            best: dict[str, float] = {}
            for (path, _), row in table.items():
                best[path] = max(best.get(path, -1.0), row[column])
            q = np.percentile(r, [10, 50, 90])
            print(f"{model} {corpus}: {found} of {total} chunks, {len(best)} notes; {label} p10 {q[0]:.3f} median "
                  f"{q[1]:.3f} p90 {q[2]:.3f} max {r.max():.3f}")  # fmt: skip
            for path, v in sorted(best.items(), key=lambda item: -item[1])[:top]:
                print(f"    {v:.3f} (+{v - q[1]:.3f})  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
