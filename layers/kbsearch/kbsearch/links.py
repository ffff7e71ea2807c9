"""Obsidian ``[[wiki-links]]`` as a graph: the keys that a link and a note are matched by, and which note a link
means.

The indexer stores, on each note's first chunk, the keys of the notes it links to (:func:`link_keys`) and the keys
it can be linked by (:func:`path_keys`: every tail of its path without ``.md``; :func:`name_keys`: its title and
aliases), in one list ``graph_keys``, each key prefixed by its kind (:func:`graph_keys`). That is one keyword
payload index (three, one a kind, cost Qdrant Edge two more index builds at every seal: BENCHMARKS.md, "Session
26"), so a note's backlinks and the notes its links point at are one filtered Qdrant query, never a scan, and they
are right after every incremental sync by construction: a changed note rewrites only its own keys, and what links
to it is read from the other notes' keys at read time.

Matching is Obsidian's: case-insensitive, ``.md`` optional, a link names a note by its file name or by a tail of
its path (``[[runbooks/Restore]]``). A title or an alias also resolves a link (Obsidian leaves those unresolved;
a reader of the KB means the note). Several candidates: the whole path, then a tail, then a name; then the note in
the linking note's folder, then the shortest path, then the first by path.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: Link targets that are attachments, not notes (embeds of images, PDFs, media, canvases).
_ATTACHMENT = re.compile(
    r"\.(png|jpe?g|gif|svg|webp|bmp|avif|tiff?|ico|pdf|mp3|mp4|m4a|wav|ogg|oga|webm|flac|mov|mkv|avi|3gp|canvas|base"
    r"|excalidraw|zip|csv|xlsx?|docx?|pptx?)$",
    re.IGNORECASE,
)
MAX_KEYS = 1000  # per note and kind: a note with more links keeps the first ones (a payload stays bounded)
MAX_KEY_CHARS = 512
#: The first chunk's payload field of the note's graph keys: its path keys, name keys and link keys, each prefixed
#: by its kind (:data:`PATH_KEY`, :data:`NAME_KEY`, :data:`LINK_KEY`), under one keyword payload index.
GRAPH_KEYS = "graph_keys"
PATH_KEY, NAME_KEY, LINK_KEY = "p:", "n:", "l:"
#: The fields a store written before ``graph_keys`` holds each kind in (a note's first chunk; unprefixed keys),
#: read beside it until the next sync rewrites the note (:func:`graph_clauses`, :func:`stored_keys`).
OLD_GRAPH_FIELDS = {PATH_KEY: "path_keys", NAME_KEY: "name_keys", LINK_KEY: "link_keys"}


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


def is_attachment(name: str) -> bool:
    """Whether a link's note part names an attachment (an image, a PDF, a canvas ...), not a note."""
    return bool(_ATTACHMENT.search(name.strip()))


#: The mark of a link key anchored at the KB's root (:func:`link_key`): only a note's whole path matches it.
ROOT = "/"


def link_key(target: str) -> str | None:
    """The key of a link target (the note part of ``[[target#heading|alias]]``); None for a link to the same note
    (``[[#heading]]``) or to an attachment. A target written from the KB's root (``/ops/Runbook``: what
    :func:`kbsearch.notes.relative_note` makes of ``[[../ops/Runbook]]``) keeps its leading :data:`ROOT`: only the
    note at that whole path matches it (:func:`resolve`), never a namesake elsewhere, as Obsidian leaves a relative
    link whose note is not there unresolved (adv38)."""
    if is_attachment(target):
        return None
    key = _key(target)
    if key is not None and unicodedata.normalize("NFC", target).lstrip().startswith(ROOT):
        return ROOT + key
    return key


def unanchored(key: str) -> str:
    """A link key without its :data:`ROOT` mark: the path key a note at that whole path holds (what the graph's
    filters ask the index for; :func:`resolve` then keeps the whole path alone)."""
    return key[len(ROOT) :] if key.startswith(ROOT) else key


def anchored_keys(path: str) -> list[str]:
    """The anchored link key (:data:`ROOT` + its whole path key) that names the note at ``path``: a note's backlinks
    and a deleted note's dangling links are looked for under it too (:func:`keys_naming`)."""
    keys = path_keys(path)
    return [ROOT + keys[-1]] if keys else []


def keys_naming(path: str) -> list[str]:
    """Every link key naming the note at ``path`` by its path: its :func:`path_keys` and its :func:`anchored_keys`
    (the links a deleted note leaves dangling are those to these)."""
    return [*path_keys(path), *anchored_keys(path)]


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
    too long for a key keeps the tails that fit). The indexer stores them (``graph_keys``) and keys the restricted
    link targets by them (:func:`kbsearch.access.restricted_links`), so both match a link's :func:`link_key`."""
    key = _normal(path)
    if not key:
        return []
    parts = key.split("/")
    tails = ("/".join(parts[i:]) for i in range(len(parts) - 1, -1, -1))
    return [tail for tail in tails if len(tail) <= MAX_KEY_CHARS]


def _aliases(aliases: object) -> list[object]:
    """A note's frontmatter ``aliases`` (a string or a list) as a list of names, as written."""
    if isinstance(aliases, str):
        return [aliases]
    return list(aliases) if isinstance(aliases, list) else []


#: What a chunk's payload carries of its note's aliases (:func:`payload_aliases`): at most this many, each of at
#: most this many characters (every chunk carries them, as it carries the title: a 1 MB note's 686 chunks with
#: 8 x 100 characters each hold 0.5 MB more at worst).
MAX_PAYLOAD_ALIASES = 8
MAX_PAYLOAD_ALIAS_CHARS = 100


def payload_aliases(aliases: object) -> list[str]:
    """The note's frontmatter aliases a search reads (the chunk payload's ``aliases``): a name a reader asks the note
    by that appears nowhere in what BM25 or dense read of it (its heading path, summary and text), so that the
    fusion reads a query naming the note by its alias as it reads one naming it by its title
    (:func:`kbsearch.fusion._names`). Texts only, stripped, the first :data:`MAX_PAYLOAD_ALIASES` of at most
    :data:`MAX_PAYLOAD_ALIAS_CHARS` characters (a longer one names no note a reader types: left out, not cut)."""
    out: dict[str, None] = {}
    for name in _aliases(aliases):
        if isinstance(name, str) and 0 < len(name.strip()) <= MAX_PAYLOAD_ALIAS_CHARS:
            out[name.strip()] = None
            if len(out) == MAX_PAYLOAD_ALIASES:
                break
    return list(out)


def name_keys(title: str | None, aliases: object) -> list[str]:
    """The note's title and frontmatter aliases (a string or a list) as link keys."""
    names: list[object] = [title, *_aliases(aliases)]
    out: dict[str, None] = {}
    for name in names:
        if isinstance(name, str) and not _ATTACHMENT.search(name):
            key = _key(name.replace("/", " "))  # a title is one name, never a path
            if key is not None:
                out[key] = None
        if len(out) == MAX_KEYS:
            break
    return list(out)


def links_to_others(targets: Iterable[str], path: str, title: object) -> list[str]:
    """A note's link targets without those naming the note itself by its path or title (``[[Own title#Section]]``):
    the links whose words BM25 counts as another note's name (:func:`kbsearch.lexical.document_vector`'s ``links``).
    The title heads each of the note's chunks (its heading path): a self-link discounted it there (rev31a). A link
    from the root names the note only by its whole path (``[[../Runbook]]`` in ``ops/Runbook.md`` is the root's
    ``Runbook.md``, another note: rev38a)."""
    own = {*path_keys(path), *name_keys(title if isinstance(title, str) else None, None), *anchored_keys(path)}
    return [target for target in targets if (link_key(target) or "") not in own]


def graph_keys(paths: Iterable[str], names: Iterable[str], links: Iterable[str]) -> list[str]:
    """A note's :func:`path_keys`, :func:`name_keys` and :func:`link_keys` as its ``graph_keys``: each prefixed by
    its kind, in that order (a key may be there under two kinds: a note named as another's path tail)."""
    return [*(PATH_KEY + k for k in paths), *(NAME_KEY + k for k in names), *(LINK_KEY + k for k in links)]


def stored_keys(payload: Mapping[str, object], kind: str) -> list[str]:
    """A first chunk's keys of one ``kind`` (:data:`PATH_KEY`, ...), unprefixed: from its ``graph_keys``, else
    (a note a store made before has not rewritten yet) from that kind's old field (:data:`OLD_GRAPH_FIELDS`); []
    when it holds none (or not a list of strings)."""
    merged = payload.get(GRAPH_KEYS)
    if isinstance(merged, list):
        cut = len(kind)
        return [k[cut:] for k in merged if isinstance(k, str) and k.startswith(kind)]
    old = payload.get(OLD_GRAPH_FIELDS[kind])
    return [k for k in old if isinstance(k, str)] if isinstance(old, list) else []


def graph_clauses(
    kind: str, keys: Sequence[str], old_fields: bool, graph_field: bool = True
) -> list[dict[str, object]]:
    """Filter conditions (for a ``should``) matching a first chunk that holds any of ``keys`` as ``kind``: with
    ``graph_field``, a ``match any`` of the prefixed keys on ``graph_keys`` (without: a collection made before them
    that has no index of it yet, which Qdrant Cloud in strict mode refuses a filter on) and, with ``old_fields`` (a
    store whose notes may not all hold ``graph_keys`` yet), of the keys on that kind's old field (which such a
    store still indexes); [] for no keys."""
    if not keys:
        return []
    clauses: list[dict[str, object]] = []
    if graph_field:
        clauses.append({"key": GRAPH_KEYS, "match": {"any": [kind + k for k in keys]}})
    if old_fields:
        clauses.append({"key": OLD_GRAPH_FIELDS[kind], "match": {"any": list(keys)}})
    return clauses


@dataclass(frozen=True)
class Linkable:
    """A note as a link can reach it: its path and keys (from the index)."""

    path: str
    title: str
    path_keys: tuple[str, ...]
    name_keys: tuple[str, ...]


def linkable(payload: Mapping[str, object]) -> Linkable | None:
    """A note's first chunk's payload (its ``path``, ``title`` and graph keys) as a link can reach the note; None
    when it holds no path."""
    path, title = payload.get("path"), payload.get("title")
    if not isinstance(path, str):
        return None
    return Linkable(path, title if isinstance(title, str) and title else path,
                    tuple(stored_keys(payload, PATH_KEY)), tuple(stored_keys(payload, NAME_KEY)))  # fmt: skip


def _folder(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


#: The version of how a link's key is resolved to a note (:func:`resolve`, and how the indexer reads a note's keys
#: into candidates for it): a count of the links naming no note made by another version is made again
#: (``kbsearch.indexer.DANGLING_RECORD``), as a change of how notes are read moves ``PARSE_VERSION``. Raise it with any
#: change that makes a link resolve differently (2: rel38, the first recorded, with adv38's
#: links anchored at the root; a record without one is older).
RESOLVE_VERSION = 2


def _match(key: str, note: Linkable) -> int | None:
    """How the link ``key`` names ``note``: 0 its whole path, 1 a tail of its path (the file name included), 2 its
    title or an alias; None when it does not name it."""
    if note.path_keys and unanchored(key) == note.path_keys[-1]:
        return 0
    if key.startswith(ROOT):
        return None  # a key anchored at the root: the whole path alone
    if key in note.path_keys:
        return 1
    if key in note.name_keys:
        return 2
    return None


def keyed(notes: Iterable[Linkable]) -> dict[str, list[Linkable]]:
    """``notes`` under each of their path and name keys: the only notes a link ``key`` can name are
    ``keyed(notes)[unanchored(key)]`` (:func:`_match` asks no other), so :func:`resolve` and :func:`names_a_note`
    ask those alone, not every note read (rev38a: a note's links and backlinks resolved each link over the whole
    pool, 1.2M matches for a hub of 500 backlinks, 500 links and 500 namesakes)."""
    out: dict[str, list[Linkable]] = {}
    for note in notes:
        for key in {*note.path_keys, *note.name_keys}:
            out.setdefault(key, []).append(note)
    return out


def names_a_note(key: str, candidates: Iterable[Linkable]) -> bool:
    """Whether the link ``key`` names any of ``candidates`` (:func:`resolve` is not None), stopping at the first it
    names: a count of dangling links asks only this, never which note is meant."""
    return any(_match(key, note) is not None for note in candidates)


def resolve(key: str, source_path: str, candidates: Iterable[Linkable]) -> Linkable | None:
    """The note that the link ``key``, written in the note at ``source_path``, means; None when none matches."""
    best: tuple[tuple[int, int, int, str], Linkable] | None = None
    for note in candidates:
        kind = _match(key, note)
        if kind is None:
            continue
        rank = (kind, 0 if _folder(note.path) == _folder(source_path) else 1, note.path.count("/"), note.path)
        if best is None or rank < best[0]:
            best = (rank, note)
    return best[1] if best else None


class Resolver:
    """:func:`resolve` over one set of notes, asked for many links: a link's key is matched against the notes
    holding it alone (:func:`keyed`), once per key, and each linking note's folder then picks among the best of
    each folder (resolve's order: how the key names the note, the linking note's folder first, the shortest path,
    the first path). A note's links and backlinks (``browse``) resolved every link over every note read: 500 links
    and 500 backlinks of a hub with 500 namesakes were 1.2M matches, 0.5 s of a ``GET /notes`` (rev38a)."""

    def __init__(self, notes: Iterable[Linkable]) -> None:
        self._keyed = keyed(notes)
        #: per key: the best note it names anywhere, and the best in each folder, ranked (kind, depth, path)
        self._best: dict[str, tuple[Linkable | None, int, dict[str, tuple[int, Linkable]]]] = {}

    def __call__(self, key: str, source_path: str) -> Linkable | None:
        """What ``resolve(key, source_path, notes)`` answers."""
        best = self._best.get(key)
        if best is None:
            anywhere: tuple[tuple[int, int, str], Linkable] | None = None
            by_folder: dict[str, tuple[tuple[int, int, str], Linkable]] = {}
            for note in self._keyed.get(unanchored(key), ()):
                kind = _match(key, note)
                if kind is None:
                    continue
                rank = (kind, note.path.count("/"), note.path)
                folder = _folder(note.path)
                if folder not in by_folder or rank < by_folder[folder][0]:
                    by_folder[folder] = (rank, note)
                if anywhere is None or rank < anywhere[0]:
                    anywhere = (rank, note)
            folders = {folder: (rank[0], note) for folder, (rank, note) in by_folder.items()}
            best = self._best[key] = (None, 0, folders) if anywhere is None else (anywhere[1], anywhere[0][0], folders)
        meant, kind, folders = best
        here = folders.get(_folder(source_path))
        # the best note in the linking note's folder wins unless another names it better (a lower kind)
        return here[1] if here is not None and here[0] <= kind else meant


class KeyFilter:
    """A Bloom filter of link keys: the keys of every note a link may be shown as naming (the indexer records the
    keys of the public notes, :func:`kbsearch.access.restricted_links`), so that a search can tell, with no
    call to the index, a link that names no note at all from one that names a note. Its size is the notes' keys'
    (about 10 bits a key), never the links'. A key it holds is always found; a key it does not hold is found with
    a probability of about 1% while it holds up to ``capacity`` keys (more are still taken: the rate then grows; so
    it does past ~13M keys, as a filter is never made larger than a search reads, :data:`MAX_BITS`).

    Recorded as ``{"v": 1, "m": <bits>, "k": <probes>, "n": <keys added>, "capacity": ..., "bits": <base64>}``; a
    key's probes are ``(h1 + i·h2) mod m`` for i < k, h1 and h2 the two halves of its 16-byte BLAKE2b digest."""

    VERSION = 1
    BITS_PER_KEY = 10  # with PROBES 7: ~0.8% false positives at capacity
    PROBES = 7
    MIN_CAPACITY = 1024
    REMEMBERED = 16_384
    MAX_BITS = 1 << 27  # 16 MiB: a recorded filter larger than this is not read (a damaged or hostile record)

    def __init__(self, bits: bytearray, probes: int, capacity: int, count: int = 0) -> None:
        self.bits, self.probes, self.capacity, self.count = bits, probes, capacity, count
        self.size = len(bits) * 8
        #: answers already given (a warm search's hits bring the same notes' links again and again); bounded
        self._known: dict[str, bool] = {}

    @classmethod
    def of(cls, keys: Iterable[str], headroom: float = 2.0) -> KeyFilter:
        """A filter holding ``keys``, sized for ``headroom`` times as many (keys added later, by events), and at
        most :data:`MAX_BITS` large, so that a search reads it (past ~13M keys more names read as held)."""
        keys = list(dict.fromkeys(keys))
        capacity = max(cls.MIN_CAPACITY, int(len(keys) * headroom))
        made = cls(bytearray(min(-(-capacity * cls.BITS_PER_KEY // 8), cls.MAX_BITS // 8)), cls.PROBES, capacity)
        made.add(keys)
        return made

    def _probes(self, key: str) -> tuple[int, int]:
        """(h1, h2) of ``key``: its probes are ``(h1 + i·h2) mod m``."""
        import hashlib

        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little") | 1

    def add(self, keys: Iterable[str]) -> None:
        bits, size = self.bits, self.size
        for key in keys:
            h1, h2 = self._probes(key)
            for i in range(self.probes):
                bit = (h1 + i * h2) % size
                bits[bit >> 3] |= 1 << (bit & 7)
            self.count += 1
        self._known.clear()

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        known = self._known.get(key)
        if known is None:
            if len(self._known) >= self.REMEMBERED:
                self._known.clear()
            h1, h2 = self._probes(key)
            bits, size = self.bits, self.size
            known = True
            for i in range(self.probes):
                bit = (h1 + i * h2) % size
                if not bits[bit >> 3] & (1 << (bit & 7)):
                    known = False
                    break
            self._known[key] = known
        return known

    def to_json(self) -> dict[str, object]:
        import base64

        return {"v": self.VERSION, "m": self.size, "k": self.probes, "n": self.count, "capacity": self.capacity,
                "bits": base64.b64encode(self.bits).decode("ascii")}  # fmt: skip

    @classmethod
    def from_json(cls, recorded: object) -> KeyFilter | None:
        """The filter as recorded; None when there is none or it is not one this version reads."""
        import base64
        import binascii

        if not isinstance(recorded, dict) or recorded.get("v") != cls.VERSION:
            return None
        size, probes, count, capacity = (recorded.get(k) for k in ("m", "k", "n", "capacity"))
        encoded = recorded.get("bits")
        if not (type(size) is int and type(probes) is int and type(count) is int and type(capacity) is int):
            return None
        if not (0 < size <= cls.MAX_BITS and 0 < probes <= 32 and count >= 0 and capacity > 0):
            return None
        if not isinstance(encoded, str) or len(encoded) != 4 * -(-size // 24):  # base64 of size / 8 bytes
            return None
        try:
            bits = bytearray(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            return None
        if len(bits) * 8 != size:
            return None
        return cls(bits, probes, capacity, count)
