"""Obsidian ``[[wiki-links]]`` as a graph: the keys that a link and a note are matched by, and which note a link
means.

The indexer stores, on each note's first chunk, the keys of the notes it links to (``link_keys``) and the keys it
can be linked by (``path_keys``: every tail of its path without ``.md``; ``name_keys``: its title and aliases).
Both are keyword payload indexes, so a note's backlinks and the notes its links point at are one filtered Qdrant
query, never a scan, and they are right after every incremental sync by construction: a changed note rewrites only
its own keys, and what links to it is read from the other notes' keys at read time.

Matching is Obsidian's: case-insensitive, ``.md`` optional, a link names a note by its file name or by a tail of
its path (``[[runbooks/Restore]]``). A title or an alias also resolves a link (Obsidian leaves those unresolved;
a reader of the KB means the note). Several candidates: the whole path, then a tail, then a name; then the note in
the linking note's folder, then the shortest path, then the first by path.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

#: Link targets that are attachments, not notes (embeds of images, PDFs, media, canvases).
_ATTACHMENT = re.compile(
    r"\.(png|jpe?g|gif|svg|webp|bmp|avif|tiff?|ico|pdf|mp3|mp4|m4a|wav|ogg|oga|webm|flac|mov|mkv|avi|3gp|canvas|base"
    r"|excalidraw|zip|csv|xlsx?|docx?|pptx?)$",
    re.IGNORECASE,
)
MAX_KEYS = 1000  # per note and field: a note with more links keeps the first ones (a payload stays bounded)
MAX_KEY_CHARS = 512


def _normal(text: str) -> str:
    """The one normalisation of a link target and a note's path (NFC, ``/``-separated, segments trimmed, no empty
    or ``.`` segment, ``.md`` dropped, case-folded); "" when nothing is left."""
    text = unicodedata.normalize("NFC", text).strip().replace("\\", "/")
    parts = [p.strip() for p in text.split("/")]
    parts = [p for p in parts if p and p != "."]
    if not parts:
        return ""
    last = parts[-1]
    if last.lower().endswith(".md"):
        parts[-1] = last[:-3].rstrip()
    return "/".join(p for p in parts if p).casefold()


def _key(text: str) -> str | None:
    key = _normal(text)
    return key if key and len(key) <= MAX_KEY_CHARS else None


def link_key(target: str) -> str | None:
    """The key of a link target (the note part of ``[[target#heading|alias]]``); None for a link to the same note
    (``[[#heading]]``) or to an attachment."""
    if _ATTACHMENT.search(target.strip()):
        return None
    return _key(target)


#: :func:`link_key` remembered for the links searches show: a warm search's hits bring the same notes' links again
#: and again (~90 links a search on the 10x vault, 0.19 ms of normalising for a restricted caller's
#: :func:`kbsearch.access.visible_links`). Bounded: at most this many links (each at most 200 characters).
shown_link_key = functools.lru_cache(maxsize=16_384)(link_key)


def link_keys(targets: Iterable[str]) -> list[str]:
    """A note's outgoing link targets → their unique keys, in order (at most :data:`MAX_KEYS`)."""
    out: dict[str, None] = {}
    for target in targets:
        key = link_key(target)
        if key is not None:
            out[key] = None
            if len(out) == MAX_KEYS:
                break
    return list(out)


def path_keys(path: str) -> list[str]:
    """``a/b/Note.md`` → ``["note", "b/note", "a/b/note"]``: the ways a link can name the note by its path (a path
    too long for a key keeps the tails that fit). The indexer stores them (``path_keys``) and keys the restricted
    link targets by them (:func:`kbsearch.access.restricted_links`), so both match a link's :func:`link_key`."""
    key = _normal(path)
    if not key:
        return []
    parts = key.split("/")
    tails = ("/".join(parts[i:]) for i in range(len(parts) - 1, -1, -1))
    return [tail for tail in tails if len(tail) <= MAX_KEY_CHARS]


def name_keys(title: str | None, aliases: object) -> list[str]:
    """The note's title and frontmatter aliases (a string or a list) as link keys."""
    names: list[object] = [title]
    if isinstance(aliases, str):
        names.append(aliases)
    elif isinstance(aliases, list):
        names.extend(aliases)
    out: dict[str, None] = {}
    for name in names:
        if isinstance(name, str) and not _ATTACHMENT.search(name):
            key = _key(name.replace("/", " "))  # a title is one name, never a path
            if key is not None:
                out[key] = None
        if len(out) == MAX_KEYS:
            break
    return list(out)


@dataclass(frozen=True)
class Linkable:
    """A note as a link can reach it: its path and keys (from the index)."""

    path: str
    title: str
    path_keys: tuple[str, ...]
    name_keys: tuple[str, ...]


def _folder(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def resolve(key: str, source_path: str, candidates: Iterable[Linkable]) -> Linkable | None:
    """The note that the link ``key``, written in the note at ``source_path``, means; None when none matches."""
    best: tuple[tuple[int, int, int, str], Linkable] | None = None
    for note in candidates:
        if note.path_keys and key == note.path_keys[-1]:
            kind = 0  # the whole path
        elif key in note.path_keys:
            kind = 1  # a tail of the path (the file name included)
        elif key in note.name_keys:
            kind = 2  # the title or an alias
        else:
            continue
        rank = (kind, 0 if _folder(note.path) == _folder(source_path) else 1, note.path.count("/"), note.path)
        if best is None or rank < best[0]:
            best = (rank, note)
    return best[1] if best else None
