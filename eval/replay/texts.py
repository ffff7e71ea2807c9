"""A capture's chunks with their heading and text again: ``eval/replay/capture.py`` keeps a payload's ``path``,
``doc_id``, ``lang`` and ``title`` only, where the searches it captured read the whole payload. A fusion rule that reads a
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

try:  # the note's aliases as the indexer writes them into every chunk's payload (rev34e); a tree replayed by
    # ``--compare`` from before then (its ``kbsearch`` first on the path) has none, and its fusion reads none
    from kbsearch.links import payload_aliases
except ImportError:  # pragma: no cover - an older tree's side
    payload_aliases = None

ROOT = Path(__file__).resolve().parents[2]

#: this tree's reading of notes (``PARSE_VERSION``) → the earlier readings that chunk every note of the eval's
#: corpora as it does (``eval/dump_parse.py --diff``): a capture recording one of them replays with its texts.
#: 5 (rel34, a ``$$`` block closed as a fence): the six committed corpora and the bilingual KB, 3,061 notes, 0 differ
#: from 4. 6 (rev34a, a ``$$`` block in a list item ended by the item's end): the same 3,061 notes, 0 differ from 5.
#: 7 (rel35, a ``$$`` in a list item opened only by a closing in the item): the same 3,061 notes, 0 differ from 6.
#: 8 (adv38, a relative link kept from the root): the same 3,061 notes, 0 differ from 7 (none holds a relative link).
#: 9 (adv39, a link to a folder is none): the vault, sample-kb and the five corpora (man, gnome, lo, debdoc, gimp),
#: 3,409 notes, 0 differ from 8 (none links a folder).
READS_ALIKE: dict[int, frozenset[int]] = {
    5: frozenset({4}),
    6: frozenset({4, 5}),
    7: frozenset({4, 5, 6}),
    8: frozenset({4, 5, 6, 7}),
    9: frozenset({4, 5, 6, 7, 8}),
}


def class_entries(root: Path = ROOT) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Cell name → the ``eval/classes*.yaml`` listing its class and the class's entry there (``class``, ``corpus``,
    ``queries``...). A cell is named as ``replay.cell_name`` names it: the class's own name, or ``<corpus>:<class>``
    for a class of ``eval/classes-<corpus>.yaml`` whose name does not start with ``<corpus>-`` (the bilingual KB's
    ``question-en`` is ``bil:question-en``, the vault's ``question-en`` stays itself)."""
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for listing in sorted(root.glob("eval/classes*.yaml")):
        tag = listing.stem.split("-", 1)[1:]
        for entry in yaml.safe_load(listing.read_text(encoding="utf-8")) or []:
            name = str(entry["class"])
            cell = name if not tag or name.startswith(tag[0] + "-") else f"{tag[0]}:{name}"
            out[cell] = (listing, entry)
    return out


def class_corpora(root: Path = ROOT) -> dict[str, Path]:
    """Cell name → its class's corpus directory (:func:`class_entries`)."""
    return {cell: (root / str(entry["corpus"])).resolve() for cell, (_, entry) in class_entries(root).items()}


def corpus_chunks(corpus: Path) -> dict[Any, dict[str, Any]]:
    """Point id (as a uuid string and as Edge's integer) → the chunk's ``heading``, ``text``, ``title``,
    ``chunk_index`` and, where the note has any, ``aliases`` (as the indexer's payload holds them), for every note
    of the corpus."""
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
            aliases = payload_aliases(note.metadata.get("aliases")) if payload_aliases is not None else []
            if aliases:
                fields["aliases"] = aliases
            out[point] = out[uuid.UUID(point).int >> 64] = fields
    return out


def attach(cells: dict[tuple[str, str], dict[str, Any]], root: Path = ROOT) -> dict[tuple[str, str], dict[str, Any]]:
    """Each captured chunk's payload with its heading and text (in place; ``cells`` as ``replay.load`` reads them).

    SystemExit when a cell's class lists a corpus that is not there (the bilingual KB, ``.kbsearch/bil``, is built,
    not committed: a worktree has none until ``eval/make_bilingual.py`` runs in it): its chunks would replay without
    title, heading and text, and the rules reading them (``fusion.phrase_place``, ``_across``'s title) would not run,
    unsaid (session 33, rev33c: ``--compare`` from such a tree moved none of the bilingual cells). A class no
    ``eval/classes*.yaml`` lists (a capture older than its manifest) replays as captured."""
    corpora = class_corpora(root)
    absent = sorted(
        {f"{name} ({corpora[name]})" for _, name in cells if name in corpora and not corpora[name].is_dir()}
    )
    if absent:
        raise SystemExit(
            f"texts: no corpus for {len(absent)} captured cells: {', '.join(absent[:4])}{' ...' if len(absent) > 4 else ''}"
            " — build it (its eval/classes*.yaml says how: eval/make_bilingual.py for .kbsearch/bil) or replay with"
            " --no-texts (the captured payloads as they are)"
        )
    chunks: dict[Path, dict[Any, dict[str, Any]]] = {}
    found = total = 0
    for (_, name), captured in cells.items():
        corpus = corpora.get(name)
        if corpus is None:
            continue  # a class of no listing (a test's): its payloads are counted as not found below
        version = captured.get("parse_version")
        if version is not None and version != PARSE_VERSION and version not in READS_ALIKE.get(PARSE_VERSION, ()):
            raise SystemExit(f"{name} was captured with notes read by PARSE_VERSION {version}, this tree reads them by "
                             f"{PARSE_VERSION}: its chunk ids may name other chunks (replay with --no-texts, or capture "
                             "again)")  # fmt: skip
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
                                raise SystemExit(f"{name}: chunk {c.id} is {fields['path']!r} in {corpus}, "
                                                 f"{c.payload.get('path')!r} in the capture")  # fmt: skip
                            c.payload.update({k: v for k, v in fields.items() if k != "path"})
                            found += 1
    print(f"texts: {found} of {total} captured payloads found their chunk's heading and text", file=sys.stderr)
    return cells
