"""A capture's chunks with their heading and text again: ``eval/replay/capture.py`` keeps a payload's ``path``,
``doc_id`` and ``lang`` only, where the searches it captured read the whole payload. A fusion rule that reads a
chunk's words (``kbsearch.fusion.phrase_place``, session 33) replays only with them: each class's corpus (its
``corpus:`` in ``eval/classes*.yaml``) is chunked again as the indexer chunks it (``parse_note``, ``chunk_note``
with the default 400 / 40 tokens) and each captured chunk finds its own by point id (``uuid5(path#index)``; Qdrant
Edge answers the id's first 64 bits). ``eval/replay/replay.py`` and ``side.py`` call :func:`attach` unless
``--no-texts``; it says on stderr how many payloads found their chunk (all, when the corpora are the captured ones).
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from kbsearch.chunking import chunk_note
from kbsearch.markdown import PARSE_VERSION
from kbsearch.notes import NoteError, parse_note
from kbsearch.qdrant.query import point_id

ROOT = Path(__file__).resolve().parents[2]


def class_corpora(capture: Path | None = None, root: Path = ROOT) -> dict[str, Path]:
    """Class name → its corpus directory: from the listing the capture was made with (``e5-classes-bil.pkl`` →
    ``eval/classes-bil.yaml``) when there is one, else from every ``eval/classes*.yaml``. Class names repeat
    across listings (``known-item-en`` is the vault's in ``classes.yaml`` and the bilingual KB's in
    ``classes-bil.yaml``): a name two listings give different corpora is refused, not read from the last (rev33a:
    the bilingual captures' classes read the vault's English or Russian half)."""
    listings = sorted(root.glob("eval/classes*.yaml"))
    if capture is not None:
        own = root / "eval" / f"{capture.stem.partition('-')[2]}.yaml"
        if own in listings:
            listings = [own]
    out: dict[str, Path] = {}
    ambiguous: set[str] = set()
    for listing in listings:
        for entry in yaml.safe_load(listing.read_text(encoding="utf-8")) or []:
            name, corpus = str(entry["class"]), (root / str(entry["corpus"])).resolve()
            if out.get(name, corpus) != corpus:
                ambiguous.add(name)
            out[name] = corpus
    for name in ambiguous:
        out[name] = AMBIGUOUS
    return out


#: A class two listings give different corpora (:func:`class_corpora`).
AMBIGUOUS = Path("/nonexistent/ambiguous-class")


def corpus_chunks(corpus: Path) -> dict[Any, dict[str, Any]]:
    """Point id (as a uuid string and as Edge's integer) → the chunk's ``heading``, ``text``, ``title`` and
    ``chunk_index``, for every note of the corpus."""
    out: dict[Any, dict[str, Any]] = {}
    for file in sorted(corpus.rglob("*.md")):
        path = file.relative_to(corpus).as_posix()
        try:
            note = parse_note(path, file.read_bytes())
        except (NoteError, OSError):
            continue  # the indexer skips it too: no chunk of it was captured
        for chunk in chunk_note(note):
            point = point_id(path, chunk.index)
            fields = {
                "path": path,
                "title": note.title,
                "heading": chunk.heading,
                "text": chunk.text,
                "chunk_index": chunk.index,
            }
            out[point] = out[uuid.UUID(point).int >> 64] = fields
    return out


def attach(
    cells: dict[tuple[str, str], dict[str, Any]], capture: Path | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Each captured chunk's payload with its heading and text (in place; ``cells`` as ``replay.load`` reads them,
    from the one capture file ``capture``). Stops, rather than attach another chunk's text or none: a class whose
    corpus is ambiguous or not on this machine, a capture made with another reading of notes' bodies
    (``parse_version``, recorded by ``capture.py`` since rev33a: the same point id is another chunk then), a chunk
    found at another path."""
    corpora = class_corpora(capture)
    chunks: dict[Path, dict[Any, dict[str, Any]]] = {}
    found = total = 0
    named = capture or "the capture"
    for (_, name), captured in cells.items():
        corpus = corpora.get(name)
        if corpus is None:
            continue  # a class of no listing (a test's): its payloads are counted as not found below
        if corpus == AMBIGUOUS:
            raise SystemExit(f"{named}: class {name!r} has different corpora in eval/classes*.yaml; name the capture "
                             "<model>-<listing>.pkl after its listing, or replay with --no-texts")  # fmt: skip
        if not corpus.is_dir():
            raise SystemExit(f"{named}: class {name!r}'s corpus {corpus} is not here (build it as its listing says, "
                             "or replay with --no-texts)")  # fmt: skip
        version = captured.get("parse_version")
        if version is not None and version != PARSE_VERSION:
            raise SystemExit(f"{named}: class {name!r} was captured with notes read by PARSE_VERSION {version}, this "
                             f"tree reads them by {PARSE_VERSION}: its chunk ids may name other chunks (replay with "
                             "--no-texts, or capture again)")  # fmt: skip
        known = chunks.get(corpus)
        if known is None:
            known = chunks[corpus] = corpus_chunks(corpus)
        for _, _, results, _, _ in captured["rows"]:
            for _, came in results:
                for c in came:
                    if c.payload:
                        total += 1
                        fields = known.get(c.id)
                        if fields is not None:
                            if fields["path"] != c.payload.get("path"):
                                raise SystemExit(f"{named}: class {name!r}: chunk {c.id} is {fields['path']!r} in "
                                                 f"{corpus}, {c.payload.get('path')!r} in the capture")  # fmt: skip
                            c.payload.update({k: v for k, v in fields.items() if k != "path"})
                            found += 1
    print(f"texts: {found} of {total} captured payloads found their chunk's heading and text", file=sys.stderr)
    return cells
