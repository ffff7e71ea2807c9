"""Where the KB lives: an S3 prefix or a local folder, behind one interface.

A listing yields every object under the root with its ``path`` (the key relative to the root, ``/``-separated,
Unicode NFC: the same for a folder and for S3), ETag, size and modification time, but for hidden files and
folders (:func:`hidden`: a name starting with '.', such as Obsidian's ``.trash``), which neither lists. Only ``.md``
files are notes; everything else is counted as an attachment. A listing that fails part-way raises
:class:`SourceError`: callers never see a partial listing (which would look like deletions).

A folder's entries that are not regular files (FIFOs, sockets, devices, dangling symlinks, symlink loops, symlinks
that lead outside the folder, files that cannot be opened, names that are not UTF-8) are listed with a ``problem``
and never opened in a way that can block: every entry is ``lstat``-ed first, only a regular file is opened, with
``O_NONBLOCK``, and checked again on the open descriptor. A note that is a symlink to another file of the KB is
listed with a ``problem`` too, and ``drop`` (what was indexed at its path is removed): a folder's access rules judge
a note by its path, and the link would carry the file it names past its own folder's rules; reads by path and
:func:`head` refuse it, and a path through a linked folder. A note that is one file with another note of the KB (a
hard link: the same inode at two paths, none of them the original) is listed with a ``problem`` and ``drop`` at
every path of it, and refused by path (:data:`HARD_LINKED_NOTE`). A folder that cannot be listed is listed as a ``problem``
too (``folder=True``), so nothing under it looks deleted. Reads by path refuse the same entries, without blocking.

Paths are identities, so the indexer and ``kb_get_note`` agree on them through the helpers here: a path is
:func:`note_path` (NFC) of the key; :func:`path_problem` says why a path cannot be a note's identity (empty, ``.``
or ``..`` segments, a leading ``/``, backslashes, control characters); when several keys have the same path,
:func:`preferred` picks the one both of them use (the key already in NFC, else the smallest).
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import hashlib
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import unquote, unquote_plus

from kbsearch.errors import KbSearchError, aws_error_code

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef

    from kbsearch.providers.resilience import Deadline

T = TypeVar("T")
NOTE_SUFFIX = ".md"
#: At most this many S3 calls a Lambda run's end cut (:meth:`S3Source._within`) may still run, across the warm
#: container's runs; while they do, no S3 call of a run with an end is started (it fails at once, saying so).
MAX_ABANDONED = 2


def is_note_name(name: str) -> bool:
    """Whether a file or key name is a note's: it ends ``.md`` in any case (``x.MD``, ``x.Md``; not ``.markdown``).
    The one test the full sync (both sources), the change events and ``serve --watch`` apply."""
    return name.lower().endswith(NOTE_SUFFIX)


class SourceError(KbSearchError):
    """The KB source cannot be listed or read."""


class NoteArchived(SourceError):
    """S3 refused a note's GET because the object is in an archive class and not restored (``InvalidObjectState``):
    the one read failure the indexer remembers (``archived_notes``); any other (a 503, a timeout) is tried again at
    the next sync (rev36c: a restored GLACIER note whose GET was throttled once was skipped until a full sync)."""


class NoteUnreadable(SourceError):
    """The entry at a note's path exists but is not a note that can be read (a FIFO, a device, a dangling
    symlink, ...): ``reason`` says which, and names no server path, so a caller may be told."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read {path!r}: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class SourceObject:
    path: str  # identity in the index: relative, '/'-separated, NFC
    key: str  # where to read it: the S3 key or the file's path relative to the root as found on disk
    etag: str
    size: int
    modified: str | None = None
    #: why the entry cannot be read (not a regular file, a dangling symlink, ...): listed so the indexer can say so
    #: and keep what it indexed from it, never read
    problem: str | None = None
    #: the entry is a folder that cannot be listed (``path`` ends with '/'): what is indexed under it is kept
    folder: bool = False
    #: the entry can never be a note (a link to another file of the KB): what was indexed at its path is removed
    drop: bool = False
    #: S3's storage class as the listing (or a HEAD) gives it (``GLACIER``, ``DEEP_ARCHIVE``, ...); None for a
    #: folder's file and for STANDARD (:func:`_storage_class`)
    storage_class: str | None = None

    @property
    def is_note(self) -> bool:
        return self.folder or is_note_name(self.path)


class Source(Protocol):
    uri: str

    def list(self) -> Iterator[SourceObject]: ...

    def read(self, obj: SourceObject) -> bytes: ...

    def read_path(self, path: str) -> bytes: ...

    def root_names(self) -> Iterable[str]:
        """The names of the files at the KB root, folders left out: one listing of the root alone (an event run
        looks there for an access file under another name, :func:`kbsearch.access.refuse_mistaken_access_file`),
        read as they are consumed (a page at a time on S3: the run stops asking at its deadline)."""
        ...


MAX_PATH_CHARS = 1024
#: Folders a note's path may go down: each chunk stores every folder above its note (the ``folders`` keyword index
#: that ``path_prefix`` filters on), their length grows with the square of the depth, so a 1 MB note 505 folders
#: down (1,009 characters of ``a/``) made a 350 MB index for its 687 chunks (6.4 MB at the root).
MAX_FOLDER_DEPTH = 32
#: Unicode categories Cc (C0 and C1 controls, DEL) and Cs (surrogates): fixed sets by Unicode's stability policy.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)


def note_path(path: str) -> str:
    """A note's identity: the relative path in Unicode NFC."""
    return _nfc(path)


def shown_path(path: str) -> str:
    """``path`` as its reader sees it: compatibility forms folded (NFKC: ``ｅｎ／runbooks`` typed in full width is
    ``en/runbooks``), the characters no reader sees dropped (format characters: a zero-width space or joiner, a soft
    hyphen, a bidi mark or embedding, a byte-order mark), the spaces around each segment left out."""
    if not path.isascii():  # ASCII holds no format character, and NFKC leaves it as it is
        path = "".join(c for c in unicodedata.normalize("NFKC", path) if unicodedata.category(c) != "Cf")
    return "/".join(segment.strip() for segment in path.split("/"))


def hidden(path: str) -> bool:
    """Whether ``path`` names a hidden file or is in a hidden folder (a name starting with '.': Obsidian's ``.trash``
    and ``.obsidian``, a dot-file): never a note, from a folder or from S3 alike (the folder listing, ``--watch`` and
    the root listing skipped them; the S3 listing and S3's events indexed them, the vault's trash included). A ``.``
    or ``..`` segment is no name: :func:`path_problem` says why such a key is skipped."""
    return any(part.startswith(".") and part not in (".", "..") for part in path.split("/"))


def is_s3_uri(uri: str) -> bool:
    """Whether the KB source ``uri`` names S3 (``s3://bucket/prefix``): its scheme in any case, as URI schemes are
    (RFC 3986 3.1); ``S3://b/p`` was read as a folder of that name."""
    return uri[:5].lower() == "s3://"


def no_notes(uri: str, others: int) -> str:
    """What a listing that holds no note says: what a note is and where it was looked for (a folder's absolute
    path, an S3 bucket and prefix), and how much else was there, so an empty sync is not a bare "0 listed"."""
    s3 = is_s3_uri(uri)
    where = f"under {uri}" if s3 else f"in {os.path.abspath(uri)}"
    kind = "object" if s3 else "file"
    what = f"a key ending in {NOTE_SUFFIX}" if s3 else f"a file ending in {NOTE_SUFFIX}"
    listed = f"{others} other {kind}{'' if others == 1 else 's'} listed there" if others else f"no {kind} listed there"
    hint = ": check the bucket and prefix (KB_SOURCE)" if s3 and not others else ""
    return (f"no notes {where}: a note is {what}, outside hidden files and folders (a name starting with '.'); "
            f"{listed}{hint}")  # fmt: skip


def _modified(mtime: float) -> str | None:
    """A file's mtime as ISO 8601; None when no date can hold it (a filesystem's clock or ``touch -d`` past the
    year 9999, as tmpfs, XFS and btrfs store: one such file was a ``ValueError`` traceback that stopped the whole
    listing, nothing indexed)."""
    try:
        return dt.datetime.fromtimestamp(mtime, dt.UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return None


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot identify a note (``kb_get_note`` could not reach it, or it could escape the root);
    None when it is fine."""
    if not path:
        return "empty path"
    if len(path) > MAX_PATH_CHARS:
        return f"path longer than {MAX_PATH_CHARS} characters"
    if path.startswith("/"):
        return "path starts with '/'"
    if "\\" in path:
        return "path contains a backslash"
    if _CONTROL.search(path):
        return "path contains a control character"
    segments = path.split("/")
    if "" in segments[:-1]:
        return "path has an empty segment ('//')"
    if not segments[-1]:  # a folder as it is typed (``en/runbooks/``): it wrote no '//'
        return "path ends with '/': a folder, not a note"
    if "." in segments or ".." in segments:
        return "path has a '.' or '..' segment, which could lead outside the KB"
    if len(segments) - 1 > MAX_FOLDER_DEPTH:
        return f"path is more than {MAX_FOLDER_DEPTH} folders deep"
    return None


#: A ``%`` that starts no percent-escape (``%zz``, a lone ``%``, ``%2``).
_BAD_ESCAPE = re.compile("%(?![0-9A-Fa-f]{2})")


def percent_decoded(raw: str, plus: bool = False) -> str:
    """A path as a URL or an S3 notification carries it (percent-encoded; ``plus``: ``+`` for a space) → the path;
    ``ValueError`` saying why it is none: a ``%`` that starts no escape (a percent sign is ``%25``; the escape was
    kept as text: ``/notes/a%zz.md`` read the note ``a%zz.md``, whose URL is ``a%25zz.md``) or escapes that decode
    to no UTF-8 (``%E9``: its bytes would become U+FFFD)."""
    if _BAD_ESCAPE.search(raw):
        raise ValueError("a '%' that starts no percent-escape (a percent sign is %25)")
    try:
        return unquote_plus(raw, errors="strict") if plus else unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 once percent-decoded") from None


@functools.cache
def _spelled_otherwise() -> dict[str, frozenset[str]]:
    """Character → the other code points NFC makes it of, first (``K`` ← the Kelvin sign, U+0915 ← U+0958, a
    unified ideograph ← its compatibility twin): canonical decompositions stop below U+30000 (~20 ms, once)."""
    out: dict[str, set[str]] = {}
    for cp in range(0x30000):
        c = chr(cp)
        n = unicodedata.normalize("NFC", c)
        if n != c:
            out.setdefault(n[0], set()).add(c)
    return {k: frozenset(v) for k, v in out.items()}


#: The most starts :func:`key_prefixes` follows past the characters another code point spells (each is a listing).
MAX_KEY_STARTS = 4


def key_prefixes(path: str) -> list[str]:
    """Starts that every key whose NFC form is the NFC ``path`` begins with one of (what :meth:`S3Source._find`
    lists): the path up to the first character normalisation may spell otherwise, followed by each way a key can
    begin that character (itself, its decomposition's base and partial compositions, the code points NFC makes it
    of). A way that spells the whole character (itself, a code point NFC makes it, its base and its single mark) is
    followed by the rest of the path up to the next such character, while that makes at most
    :data:`MAX_KEY_STARTS` starts (the start ended at the first one: under ``Knowledge/``, ``K`` being the Kelvin
    sign's too, or ``Über/``, each lookup listed every key beginning ``K`` or ``U``: the whole folder). A combining
    mark there, or after the character (marks may come in another order): the start alone. Not found this way: a
    key holding several marks out of order and partly composed (no uploader writes one)."""
    combining, normalize = unicodedata.combining, unicodedata.normalize
    done: set[str] = set()  # starts the keys beginning so go on from in any spelling
    heads, at = [""], 0  # the spellings of path[:at] whose keys go on with path[at:]
    for i, c in enumerate(path):
        if c.isascii() and c not in "K;`":  # ASCII that no other code point becomes: the common case
            continue
        if combining(c):
            return sorted(done | {h + path[at:i] for h in heads})
        others = _spelled_otherwise().get(c, frozenset())
        decomposed = normalize("NFD", c)
        if decomposed == c and not others:
            continue
        base, marks = decomposed[0], decomposed[1:]
        starts = {c, *others, *(normalize("NFC", decomposed[:k])[0] for k in range(1, len(decomposed))),
                  *(normalize("NFC", base + mark)[0] for mark in marks)}  # fmt: skip
        # with the code points NFC makes each of them (the Kelvin sign and a dot below are a K with a dot below)
        starts |= {o for start in starts for o in _spelled_otherwise().get(start, ()) if normalize("NFC", o) == start}
        if i + 1 < len(path) and combining(path[i + 1]):  # its marks and the next ones may be spelled in any order
            return (
                sorted(path[:i] + way for way in starts) if at == 0 else sorted(done | {h + path[at:i] for h in heads})
            )
        whole = {way for way in starts if normalize("NFC", way) == c}  # spelling exactly ``c``: the key goes on
        ends = starts - whole  # the ways a key beginning so may go on from in any spelling
        if len(marks) == 1 and normalize("NFC", base) == base:  # a base, then its mark: nothing else
            bases = {way for way in starts if normalize("NFC", way) == base}
            spelled = {marks, *(m for m in _spelled_otherwise().get(marks, ()) if normalize("NFC", m) == marks)}
            whole |= {b + m for b in bases for m in spelled}
            ends -= bases
        after = [h + path[at:i] + way for h in heads for way in sorted(whole)]
        ended = {h + path[at:i] + way for h in heads for way in ends}
        if len(done) + len(ended) + len(after) > MAX_KEY_STARTS:  # as many listings: this character ends them
            here = {h + path[at:i] + way for h in heads for way in starts}
            return sorted(done | (here if len(done) + len(here) <= MAX_KEY_STARTS or at == 0 else
                                  {h + path[at:i] for h in heads}))  # fmt: skip
        done |= ended
        heads, at = after, i + 1
        if not heads:
            return sorted(done)
    return sorted(done | {h + path[at:] for h in heads})


def preferred(keys: list[str]) -> str:
    """Of several keys with the same NFC path, the one that is indexed and read: already NFC, else the smallest."""
    return min(keys, key=lambda k: (k != _nfc(k), k))


def tilde_meant(path: str | os.PathLike[str]) -> str:
    """For a path that starts with ``~`` (as a home folder is typed at a shell): the folder it names once expanded,
    which no shell did (an assistant's config launches ``kbsearch mcp`` with its ``args`` and ``env`` as written, as
    a ``.env`` gives them): ``: '~' is not expanded here (no shell reads these settings): give the absolute path,
    /home/ana/kb`` (walk38: "KB folder ~/kb does not exist (in <the assistant's folder>)"); else ``""``."""
    text = os.fspath(path)
    if not text.startswith("~"):
        return ""
    expanded = os.path.expanduser(text)
    if expanded == text:
        return ": '~' is not expanded here (no shell reads these settings): give the absolute path"
    return f": '~' is not expanded here (no shell reads these settings): give the absolute path, {expanded}"


def path_meant(path: Path, folder: bool = True) -> str:
    """For a folder (or, ``folder=False``, a file) that is not there: where a relative one was looked for, and the
    entry of its kind beside it with the closest name (``sampl-kb``: did you mean sample-kb?;
    ``events/serch.json``: did you mean events/search.json?). It said "does not exist or is not a folder" (or "No
    such file or directory"), which left the typo, or the working folder, to be found."""
    import difflib

    where = f" (in {Path.cwd()})" if not path.is_absolute() else ""
    if str(path).startswith("~"):
        return where + tilde_meant(path)
    parent = path.parent
    try:
        names = sorted(entry.name for entry in os.scandir(parent)
                       if entry.is_dir() == folder and not entry.name.startswith("."))  # fmt: skip
    except OSError:
        return where
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.75)
    return where + (f": did you mean {parent / close[0] if str(parent) != '.' else close[0]}?" if close else "")


class LocalSource:
    """A folder. The ETag of a note is the MD5 of its content (what S3 reports for a single-part upload);
    attachments are not read at all."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.uri = str(self.root)
        if not self.root.is_dir():
            if self.root.exists():  # a note (`kbsearch index notes/a.md`), or any file: "does not exist" misled
                raise SourceError(f"KB folder {self.root} is a file, not a folder: give the folder of the notes (or "
                                  "s3://bucket/prefix); one note alone is not a KB")  # fmt: skip
            raise SourceError(f"KB folder {self.root} does not exist{path_meant(self.root)}")

    def list(self) -> Iterator[SourceObject]:
        root = str(self.root)
        unlistable: list[OSError] = []
        twins: dict[tuple[int, int], list[SourceObject]] = {}  # notes that are one file at several paths, by inode
        try:
            for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable.append):
                # plain strings, not Path objects: a listing runs on every sync, changed or not
                folder = "" if dirpath == root else os.path.relpath(dirpath, root).replace(os.sep, "/") + "/"
                for error in unlistable:  # a sub-folder os.walk could not list: say so, delete nothing under it
                    rel = os.path.relpath(error.filename or dirpath, root).replace(os.sep, "/") + "/"
                    yield _problem_entry(rel, f"folder cannot be listed: {_reason(error)}", folder=True)
                unlistable.clear()
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                    # os.walk does not descend into a linked folder: say so rather than ignore its notes silently
                    yield _problem_entry(folder + name + "/", "symlink to a folder (not followed)", folder=True)
                for name in sorted(filenames):
                    if not name.startswith("."):
                        entry, shared = self._entry(os.path.join(dirpath, name), folder + name)
                        if shared is None:
                            yield entry
                        else:  # told once every path of the KB is known
                            twins.setdefault(shared, []).append(entry)
            for error in unlistable:
                if os.path.normpath(error.filename or "") == os.path.normpath(root):
                    raise error  # the root itself: there is no listing at all
                rel = os.path.relpath(error.filename or root, root).replace(os.sep, "/") + "/"
                yield _problem_entry(rel, f"folder cannot be listed: {_reason(error)}", folder=True)
            for entries in twins.values():
                alone = len(entries) == 1  # its other names are outside the KB (or hidden): a note like any
                yield from (e if alone else _problem_entry(e.key, HARD_LINKED_NOTE, drop=True) for e in entries)
        except OSError as exc:
            raise SourceError(f"listing {self.root} failed: {exc}") from None

    def root_names(self) -> Iterable[str]:
        """The root's entries that the listing gives as files: a link to a folder is a folder (the listing says
        "symlink to a folder"); a link to a file, a dangling one or a loop is a file, as there."""
        try:
            with os.scandir(self.root) as entries:
                return sorted(_nfc(e.name) for e in entries
                              if not e.name.startswith(".") and not e.is_dir())  # fmt: skip
        except OSError as exc:
            raise SourceError(f"listing {self.root} failed: {exc}") from None

    def _entry(self, full: str, rel: str) -> tuple[SourceObject, tuple[int, int] | None]:
        """One directory entry: a readable regular file (a note is hashed), or a ``problem`` saying why not; and, for
        a note that is a file of several names (``st_nlink`` > 1: maybe other paths of the KB), its inode."""
        if _CONTROL.search(rel) and not _valid_utf8(rel):
            return _problem_entry(rel, "file name is not valid UTF-8"), None
        try:
            info = os.lstat(full)
            linked = stat.S_ISLNK(info.st_mode)
            if linked:
                info = os.stat(full)  # the target: ENOENT (dangling) and ELOOP (a loop) land below
                if not _inside(os.path.realpath(full), str(self.root)):
                    return _problem_entry(rel, "symlink to a file outside the KB folder"), None
        except OSError as exc:
            return _problem_entry(rel, _reason(exc)), None
        kind = _kind(info.st_mode)
        if kind is not None:
            return _problem_entry(rel, f"not a regular file ({kind})"), None
        if linked and _linked_elsewhere(full, str(self.root)):
            return _problem_entry(rel, LINKED_NOTE, drop=True), None
        path = _nfc(rel)
        etag = ""
        note = is_note_name(path)
        if note and info.st_size > MAX_FILE_BYTES:
            etag = f"large-{info.st_size}-{info.st_mtime_ns}"
        elif note:
            try:
                etag = _md5(full)
            except NoteUnreadable as exc:
                return _problem_entry(rel, exc.reason), None
            except OSError as exc:
                return _problem_entry(rel, _reason(exc)), None
        modified = _modified(info.st_mtime)
        # (an inode of 0 is a file system that does not number its files: nothing to tell two names by)
        shared = (info.st_dev, info.st_ino) if note and not linked and info.st_nlink > 1 and info.st_ino else None
        return SourceObject(path=path, key=rel, etag=etag, size=info.st_size, modified=modified), shared

    def read(self, obj: SourceObject) -> bytes:
        """The note as listed: its bytes, unless they are no longer the version the listing hashed (``obj.etag``,
        the MD5 of a note's content): a note saved since is a SourceError (the next run lists the new version),
        as S3 answers a GET for a version that is gone (:meth:`S3Source.read`)."""
        if obj.problem:
            raise SourceError(obj.problem)
        # the listing (or :func:`head`) that gave ``obj`` told a hard-linked note already: no walk of the KB per note
        # read (a KB whose notes all have a name outside it, a ``cp -al`` or rsnapshot copy, made a sync quadratic)
        body = self._at(_checked(obj.key), exact=False, body=True, hard_links=False)
        if _MD5_HEX.fullmatch(obj.etag) and hashlib.md5(body, usedforsecurity=False).hexdigest() != obj.etag:
            raise SourceError(f"cannot read {obj.path!r}: changed since it was listed (the next run reads the new "
                              "version)")  # fmt: skip
        return body

    def read_path(self, path: str) -> bytes:
        return self._at(_checked(path), exact=False, body=True)

    def entry_problem(self, path: str) -> str | None:
        """Why the entry at exactly ``path`` (no other Unicode form is looked for) is no note :meth:`read_path`
        could read, as read_path says it (``not a regular file (a FIFO)``, ``dangling symlink ...``, ``larger than
        64 MiB ...``), from its metadata alone, never a byte of it. None when nothing is there or it is a regular
        file within the size limit: one ``lstat`` tells both, so a file and no file cost alike (a file's
        permissions are not tried: one that cannot be opened is None too). Any other entry (a link, a FIFO, a
        folder) is checked as read_path checks it, opened non-blocking and ``fstat``-ed, never read."""
        path = _checked(path)
        try:
            info = os.lstat(self.root / path)
        except OSError:
            return None  # nothing there, or a segment that is no folder: read_path finds no note either
        if stat.S_ISREG(info.st_mode):
            if info.st_size > MAX_FILE_BYTES:
                return _too_large(info.st_size)
            return HARD_LINKED_NOTE if _hard_linked_elsewhere(str(self.root / path), info, str(self.root)) else None
        try:
            self._at(path, exact=True, body=False)
        except NoteUnreadable as exc:
            return exc.reason
        except SourceError:
            return None
        return None

    def _at(self, path: str, exact: bool, body: bool, hard_links: bool = True) -> bytes:
        """The note at ``path`` (``body``: its bytes; else b"" once it is known to be readable); ``hard_links``:
        whether to walk the KB for another name of a file of several names (False: a listing told it already)."""
        try:
            full = self._find(path, exact)
            if not _inside(os.path.realpath(full), str(self.root)):
                raise NoteUnreadable(path, "symlink to a file outside the KB folder")
            if _linked_elsewhere(str(full), str(self.root)):
                _read_regular(str(full), body=False)  # a FIFO, a folder: said as such
                raise NoteUnreadable(path, LINKED_NOTE)
            if hard_links and _hard_linked_elsewhere(str(full), os.stat(full), str(self.root)):
                raise NoteUnreadable(path, HARD_LINKED_NOTE)
            return _read_regular(str(full), body)
        except NoteUnreadable as exc:
            raise NoteUnreadable(path, exc.reason) from None
        except OSError as exc:
            if exc.errno in (errno.ENOENT, None) and not os.path.islink(self.root / path):
                raise SourceError(f"no note at {path!r}") from None
            raise NoteUnreadable(path, _reason(exc)) from None

    def _find(self, path: str, exact: bool = False) -> Path:
        """The file whose NFC path is ``path``, whatever normalisation its name has on disk (as the listing): of
        the entries that spell it, the :func:`preferred` one, as the listing picks it; ``exact``: the file of that
        very name only. Every spelling of each folder is followed (the preferred folder alone missed a file that
        only its twin folder holds: ``é/x.md`` in the decomposed ``é/`` beside a composed one)."""
        full = self.root / path
        if os.path.lexists(full):
            return full
        if exact:
            raise FileNotFoundError(path)
        spelled = [""]  # the relative paths on disk that spell the segments so far
        for segment in path.split("/"):
            spelled = [f"{rel}/{name}" if rel else name for rel in spelled if (self.root / rel).is_dir()
                       for name in os.listdir(self.root / rel) if _nfc(name) == segment]  # fmt: skip
            if not spelled:
                raise FileNotFoundError(path)
        return self.root / preferred(spelled)


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))  # fmt: skip
_MD5_HEX = re.compile(r"[0-9a-f]{32}")
#: a note is hashed and read in pieces of this size (a huge file never sits in memory whole for its ETag)
_READ_PIECE = 1 << 20
#: a file larger than this is neither hashed by the listing (its ETag is its size and mtime: no sync reads gigabytes
#: to learn it is too large to index) nor read by path (``kb_get_note`` would hold it in memory)
MAX_FILE_BYTES = 64 * 1024 * 1024


def _kind(mode: int) -> str | None:
    """What a non-regular file is ("a FIFO", ...); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _reason(exc: OSError) -> str:
    """An OSError as a reason a person can act on (never the server's own path)."""
    known: dict[int, str] = {errno.ENOENT: "dangling symlink (its target does not exist)", errno.ELOOP: "symlink loop",
             errno.EACCES: "permission denied", errno.EPERM: "permission denied",
             errno.EISDIR: "not a regular file (a folder)", errno.ENOTDIR: "a path segment is not a folder",
             errno.ENAMETOOLONG: "name too long"}  # fmt: skip
    return known.get(exc.errno or 0) or (exc.strerror or type(exc).__name__)


def _problem_entry(rel: str, problem: str, folder: bool = False, drop: bool = False) -> SourceObject:
    """An entry that is listed but never read; a name that is not UTF-8 is shown with its bytes escaped."""
    shown = os.fsencode(rel).decode("utf-8", "backslashreplace") if not _valid_utf8(rel) else _nfc(rel)
    return SourceObject(path=shown, key=rel, etag="", size=0, problem=problem, folder=folder, drop=drop)


def _valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _inside(real: str, root: str) -> bool:
    real_root = os.path.realpath(root)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


#: Why a note that is a symlink to another file of the KB (or is reached through a linked folder) is no note. The
#: target is not named: a caller reading the link's path may be told this, and the target may be a path it may not
#: read.
LINKED_NOTE = (
    "symlink to another file of the KB (a note is read at its own path only, under its own folder's access rules)"
)


def _linked_elsewhere(full: str, root: str) -> bool:
    """Whether the file at ``full`` (under ``root``) is, through a symlink (its own, or a linked folder on the way),
    a file at another path: a folder's rules judge a note by its path, so a link in a public folder to a note in a
    restricted one was indexed, and read, as public (and an edit of the target never reached it under --watch).
    The access file is not a note: a link may be it (:data:`kbsearch.access.ACCESS_FILE`, judged by its name)."""
    if not is_note_name(full):
        return False
    return os.path.realpath(full) != os.path.join(os.path.realpath(root), os.path.relpath(full, root))


#: Why a note that is one file with another note of the KB (a hard link: the same file at two paths) is no note, at
#: any of its paths: none of them is the original, and a folder's rules judge a note by its path, so the file would
#: be public at a public path and restricted at the other (an edit of either reaching both). The other path is not
#: named.
HARD_LINKED_NOTE = (
    "hard link to another note of the KB (one file at several paths: a note is read at its own path only, under its "
    "own folder's access rules; keep one path, and a copy or a [[link]] at the others)"
)


def _hard_linked_elsewhere(full: str, info: os.stat_result, root: str) -> bool:
    """Whether the note at ``full`` (its ``stat``: ``info``) is also another note's file in the KB, found by a walk of
    the KB's notes, only for a file of several names (a read by path or an event has no listing to tell it)."""
    if info.st_nlink < 2 or not info.st_ino or not is_note_name(full):
        return False
    here = os.path.normpath(full)
    # the walk meets the file itself too, under its name as the folder spells it: on a case- or
    # normalisation-insensitive file system (macOS, Windows) a read by ``Note.md`` or by the NFC form of an NFD name
    # is not that spelling, so when the file was not met by the very path asked, one name met is its own
    walked = not any(part.startswith(".") for part in os.path.relpath(here, root).split(os.sep))
    met_here, others = False, 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or not is_note_name(name):
                continue
            other = os.path.join(dirpath, name)
            try:
                seen = os.lstat(other)
            except OSError:
                continue
            if seen.st_ino != info.st_ino or seen.st_dev != info.st_dev:
                continue
            if os.path.normpath(other) == here:
                met_here = True
            else:
                others += 1
            if others >= (1 if met_here or not walked else 2):
                return True
    return others >= (1 if met_here or not walked else 2)


def _open_regular(full: str) -> int:
    """A descriptor of ``full`` if it is a regular file: ``stat`` first, then opened with ``O_NONBLOCK`` (a FIFO that
    replaced the file in between cannot block the open) and checked again on the descriptor itself."""
    kind = _kind(os.stat(full).st_mode)  # a socket or a device is refused before any open
    if kind is not None:
        raise NoteUnreadable(full, f"not a regular file ({kind})")
    fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        kind = _kind(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if kind is not None:
        os.close(fd)
        raise NoteUnreadable(full, f"not a regular file ({kind})")
    return fd


def _md5(full: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    fd = _open_regular(full)
    try:
        while piece := os.read(fd, _READ_PIECE):
            digest.update(piece)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _too_large(size: int) -> str:
    return f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB ({size} bytes)"


def _read_regular(full: str, body: bool = True) -> bytes:
    """The file's bytes (``body`` False: b"" once it is known to be a regular file within the size limit)."""
    fd = _open_regular(full)
    try:
        size = os.fstat(fd).st_size
        if size > MAX_FILE_BYTES:
            raise NoteUnreadable(full, _too_large(size))
        if not body:
            return b""
        pieces, total = [], 0
        while piece := os.read(fd, _READ_PIECE):
            pieces.append(piece)
            total += len(piece)
            if total > MAX_FILE_BYTES:  # it grew while being read
                raise NoteUnreadable(full, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB (still growing)")
        return b"".join(pieces)
    finally:
        os.close(fd)


#: How many pages in a row may list no key and no folder while S3 says the listing goes on (S3 fills its pages).
EMPTY_PAGES = 100


class S3Source:
    """``s3://bucket/prefix``: a paginated ListObjectsV2 (ETag, size, last-modified), GetObject per changed note.
    ``budget_s``: the time a reader on the request path has for one read (:func:`reader_timeouts`); None: the
    indexer's patient client (5 s to connect, 20 s a socket read, four attempts)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: S3Client | None = None,
        budget_s: float | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        """``deadline``: a listing's page and a note's read end by it (a Lambda run's end), however slowly S3
        answers (botocore's timeouts are per socket read): each runs on a helper thread waited on no longer
        (:func:`~kbsearch.providers.resilience.call_within`); past it, a :class:`SourceError` saying so."""
        self.bucket = bucket
        self.deadline = deadline
        # as written: ``s3://bucket//x`` is the key prefix ``/x/`` (as ``aws s3 ls`` and the template's EventBridge
        # rule read it), never ``x/``, another KB's
        self.prefix = prefix
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self.uri = f"s3://{bucket}/{self.prefix}"
        if client is None:
            import boto3
            from botocore.config import Config

            connect_s, read_s, attempts = (5.0, 20.0, 4) if budget_s is None else reader_timeouts(budget_s)
            config = Config(connect_timeout=connect_s, read_timeout=read_s,
                            retries={"max_attempts": attempts, "mode": "standard"})  # fmt: skip
            client = boto3.client("s3", config=config)
        self.client = client

    def list(self, stop_at: Deadline | None = None) -> Iterator[SourceObject]:
        """The notes under the prefix; ``stop_at``: a listing still going at it is a failed listing."""
        try:
            for page in self._pages(stop_at, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    rel = key[len(self.prefix) :]
                    if key.endswith("/") or hidden(rel):
                        continue  # a "folder" placeholder object; a hidden file or folder, as a folder's listing
                    modified = item.get("LastModified")
                    yield SourceObject(
                        path=_nfc(rel),
                        key=key,
                        etag=str(item.get("ETag", "")).strip('"'),
                        size=int(item.get("Size", 0)),
                        modified=modified.isoformat() if modified else None,
                        storage_class=_storage_class(item),
                    )
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"listing {self.uri} failed: {_aws_message(exc)}") from None

    def _pages(self, stop_at: Deadline | None = None, **params: Any) -> Iterator[Any]:
        """ListObjectsV2's pages, each asked for as the one before is consumed. A page that says the listing goes on
        (``IsTruncated``) must name a next page no page named before: one naming none ended the listing there
        (botocore's paginator stops quietly), so the notes after it looked deleted and a full sync deleted them
        (under the mass-delete guard's ratio); tokens that come back after another (A, B, A) were followed for ever
        (the paginator catches only a token repeated at once), the sync held until the function's timeout. A page that
        says the listing ended (``IsTruncated`` false or absent) yet names a next page contradicts itself: followed or
        not, notes may be missed. Fresh tokens for ever (a lying S3, or a bucket too large to list in a run) were
        followed until the function's timeout: a listing still going at ``stop_at`` (the run's deadline) fails
        too. Without a deadline (``kbsearch index``) such a listing ran until Ctrl-C: a page must also list keys after
        every key listed before (S3 lists each key once, in ascending order; fresh tokens over the same keys broke
        that), and at most :data:`EMPTY_PAGES` pages in a row may list nothing. Each is a :class:`SourceError` (a
        failed listing: nothing deleted)."""
        seen: set[str] = set()
        token = ""
        last, empty = "", 0  # the greatest key listed; the pages in a row that listed nothing
        while True:
            if token and stop_at is not None and stop_at.remaining() <= 0:
                raise SourceError(f"listing {self.uri} failed: S3 was still naming next pages at the run's deadline "
                                  f"({len(seen) + 1:,} pages read); nothing deleted, the next run lists again")  # fmt: skip
            asked: dict[str, Any] = {"Bucket": self.bucket, **params, **({"ContinuationToken": token} if token else {})}
            page = self._within(functools.partial(self.client.list_objects_v2, **asked), f"listing {self.uri} failed")
            keys = [item["Key"] for item in page.get("Contents") or [] if isinstance(item.get("Key"), str)]
            for key in keys:
                if key <= last:  # code points order as UTF-8 bytes do, S3's order
                    raise SourceError(f"listing {self.uri} failed: S3 listed a key again or out of order on page "
                                      f"{len(seen) + 1:,} (a listing gives each key once, in ascending order); "
                                      "nothing deleted, the next run lists again")  # fmt: skip
                last = key
            empty = 0 if keys or page.get("CommonPrefixes") else empty + 1
            if empty > EMPTY_PAGES and page.get("IsTruncated"):
                raise SourceError(f"listing {self.uri} failed: S3 named {empty:,} next pages in a row that listed "
                                  "nothing; nothing deleted, the next run lists again")  # fmt: skip
            yield page
            token = page.get("NextContinuationToken") or ""
            if not page.get("IsTruncated"):
                if token:  # S3 names a next page only when there is one: which half of the page lies is unknown
                    raise SourceError(f"listing {self.uri} failed: S3 said the listing ended but named a next page")
                return
            if not isinstance(token, str) or not token.strip():
                raise SourceError(f"listing {self.uri} failed: S3 said the listing goes on but named no next page")
            if token in seen:
                raise SourceError(f"listing {self.uri} failed: S3 named a next page it had already given")
            seen.add(token)

    def root_names(self) -> Iterator[str]:
        """ListObjectsV2 under the prefix with ``Delimiter="/"``, a page (1,000 keys) as it is consumed: the root's
        keys (its folders come back as common prefixes, not read)."""
        try:
            for page in self._pages(Prefix=self.prefix, Delimiter="/"):
                for item in page.get("Contents", []):
                    name = item["Key"][len(self.prefix) :]
                    if not name.endswith("/") and not hidden(name):  # as a folder's root: macOS's `._x` too
                        yield _nfc(name)
        except SourceError:  # a listing whose pages lie (_pages) says so itself
            raise
        except Exception as exc:
            raise SourceError(f"listing {self.uri} failed: {_aws_message(exc)}") from None

    def read(self, obj: SourceObject) -> bytes:
        """The version of the note the listing (or HEAD) named, ``obj.etag``: an object replaced since is not read
        (S3's 412, a SourceError: the next run lists the new version). Read without the condition, a note saved
        between the listing and the GET was indexed under the ETag of the version listed, and when that version
        was saved again (a draft undone) every later run took the index for current: the draft stayed for good."""
        return self._get(obj.key, obj.etag)

    def read_path(self, path: str) -> bytes:
        path = _checked(path)
        try:
            return self._get(self.prefix + path)
        except SourceError as exc:
            if not str(exc).startswith("no note"):
                raise
        key = self._find(path)  # the key may be stored in another Unicode normalisation (macOS uploads are NFD)
        if key is None:
            raise SourceError(f"no note at {path!r}")
        return self._get(key)

    def entry_problem(self, path: str) -> str | None:
        """Why the object at exactly ``path`` (no other Unicode form is listed for) is no note :meth:`read_path`
        could read, as read_path says it (``larger than 64 MiB ...``), from one HEAD: never a byte of it. None when
        nothing is there or read_path would read it; :class:`SourceError` when S3 does not answer."""
        meta = self.head_key(self.prefix + _checked(path))
        if meta is None:
            return None
        declared = meta.get("ContentLength")
        if isinstance(declared, int) and declared > MAX_FILE_BYTES:
            return _too_large(declared)
        return None

    def head_key(self, key: str) -> HeadObjectOutputTypeDef | None:
        """S3's HEAD answer for ``key``, None when no object is there; :class:`SourceError` when S3 does not
        answer, or not by :attr:`deadline` (the one HEAD both :meth:`entry_problem` and :func:`head` make)."""
        if not holds(key):
            return None
        try:  # ended by the run's end, as a read is (rel35: botocore's timeouts are per socket read)
            return self._within(
                lambda: self.client.head_object(Bucket=self.bucket, Key=key), f"cannot read s3://{self.bucket}/{key}"
            )
        except SourceError:
            raise
        except Exception as exc:
            if aws_error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise SourceError(f"cannot read s3://{self.bucket}/{key}: {_aws_message(exc)}") from None

    def _find(self, path: str) -> str | None:
        """The key whose NFC path is ``path`` (what the listing indexed), by listing the keys that share its start
        a spelling can have (:func:`key_prefixes`): a few keys, not the folder (the start was cut at the first
        non-ASCII character: each such read under a Cyrillic folder listed all of it)."""
        keys: list[str] = []
        try:
            for start in key_prefixes(path):
                if not holds(self.prefix + start):
                    continue  # no key begins so
                for page in self._pages(Prefix=self.prefix + start):
                    keys += [i["Key"] for i in page.get("Contents", []) if _nfc(i["Key"][len(self.prefix) :]) == path]
        except SourceError:  # a listing whose pages lie (_pages) says so itself
            raise
        except Exception as exc:
            raise SourceError(f"listing {self.uri} failed: {_aws_message(exc)}") from None
        return preferred(keys) if keys else None

    def _within(self, fn: Callable[[], T], failed: str) -> T:
        """``fn()``, ended by :attr:`deadline` when there is one (``failed``: what the SourceError then says). None
        is started once the deadline has passed (S3 is not asked: a thread started then was waited on for 0 s and
        left reading, its note blamed on S3), nor while :data:`MAX_ABANDONED` calls cut at an earlier deadline
        still run (a warm Lambda's runs over an S3 that drips each left threads and sockets reading)."""
        if self.deadline is None:
            return fn()
        from kbsearch.providers.resilience import TooManyAbandoned, abandoned_calls, call_within

        left = self.deadline.remaining()
        if left <= 0:
            raise SourceError(f"{failed}: the run's end came before S3 was asked; the next run reads it again")
        try:
            return call_within(fn, left, "kbsearch-s3", abandoned_calls("kbsearch-s3", MAX_ABANDONED))
        except TooManyAbandoned:
            raise SourceError(
                f"{failed}: {MAX_ABANDONED} reads from S3 cut at a run's end are still running (S3 answering too "
                "slowly); not asked, the next run reads it again"
            ) from None
        except TimeoutError:
            raise SourceError(
                f"{failed}: S3 gave no whole answer by the run's end; the next run reads it again"
            ) from None

    def _get(self, key: str, etag: str = "") -> bytes:
        """:meth:`_get_now`, ended by :attr:`deadline`."""
        return self._within(lambda: self._get_now(key, etag), f"cannot read s3://{self.bucket}/{key}")

    def _get_now(self, key: str, etag: str = "") -> bytes:
        """The object's bytes, at most :data:`MAX_FILE_BYTES` of them (as a folder's files): a larger object is
        refused from its declared length unread, and one that sends more than it declared stops being read there
        (it was read whole into memory: a note replaced by gigabytes between a listing and a read, or read by
        path, could take the function's memory). A body that ends before its declared length (the connection
        closed early) is no note: SourceError, retried by the next run. botocore checks the length only of a read
        without a size, so a cut body was indexed as the note, under the listing's ETag of the whole one, and no
        later run read it again."""
        if not holds(key):
            raise SourceError(f"no note at {key!r}")
        try:
            if etag:  # the version listed, or S3's 412
                answer = self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=f'"{etag}"')
            else:
                answer = self.client.get_object(Bucket=self.bucket, Key=key)
            stream = answer["Body"]
            try:
                sent = _opaque(answer.get("ETag"))  # a store that ignores If-Match: the answer names its version
                if etag and sent and sent != _opaque(etag):
                    raise SourceError(f"cannot read s3://{self.bucket}/{key}: {CHANGED}")
                declared = answer.get("ContentLength")
                if isinstance(declared, int) and declared > MAX_FILE_BYTES:
                    raise NoteUnreadable(key, _too_large(declared))
                body: bytes = stream.read(MAX_FILE_BYTES + 1)
            finally:
                stream.close()
        except SourceError:  # NoteUnreadable too
            raise
        except Exception as exc:
            code = aws_error_code(exc)
            if code in ("NoSuchKey", "404"):
                raise SourceError(f"no note at {key!r}") from None
            if code in ("PreconditionFailed", "412"):
                raise SourceError(f"cannot read s3://{self.bucket}/{key}: {CHANGED}") from None
            if code == "InvalidObjectState":  # archived, not restored: what the indexer remembers (NoteArchived)
                tier = _access_tier(exc)  # Intelligent-Tiering's archive tiers: no listing names them
                raise NoteArchived(f"cannot read s3://{self.bucket}/{key}: {tier}{_aws_message(exc)}") from None
            raise SourceError(f"cannot read s3://{self.bucket}/{key}: {_aws_message(exc)}") from None
        if len(body) > MAX_FILE_BYTES:
            raise NoteUnreadable(key, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB (more than it declared)")
        if type(declared) is int and len(body) < declared:
            raise SourceError(f"cannot read s3://{self.bucket}/{key}: the object ended after {len(body)} of its "
                              f"{declared} bytes (the connection closed early)")  # fmt: skip
        return stored_decoded(key, body, answer.get("ContentEncoding"))


#: The codings a note stored compressed may name (``aws s3 cp --content-encoding gzip``, a static-site deploy that
#: gzips what it uploads): S3 keeps the bytes and the header, and every HTTP client reading the object decodes it.
_INFLATE = {"gzip": 31, "x-gzip": 31, "deflate": 15}
#: ``deflate`` as zlib's format (RFC 1950, what the coding names) and as raw deflate (RFC 1951, no header, which some
#: servers and tools send under the same label): tried in that order, as browsers do (Firefox, Chromium).
_ZLIB, _RAW_DEFLATE = 15, -15
#: The shortest stream in zlib's format (header, an empty block, Adler-32): 8 bytes.
_EMPTY_ZLIB = b"x\x9c\x03\x00\x00\x00\x00\x01"


def stored_decoded(key: str, body: bytes, coding: object) -> bytes:
    """An object's bytes as its ``Content-Encoding`` says they are coded, decoded (at most :data:`MAX_FILE_BYTES`
    of it: a bomb is a note too large). No coding, ``identity`` or ``aws-chunked`` (an upload's framing, not the
    object's, which some S3-compatible stores keep), or bytes that are not in the coding named (a label only) are
    the bytes as stored; ``deflate`` is zlib's format, else raw deflate (no header, as browsers read it: it was read
    as stored and skipped) unless that reads UTF-8 text into bytes no note holds (a label over plain text); a coding kb-search does not decode (``br``, ``zstd``, several) is :class:`NoteUnreadable`
    naming it. Each such note was skipped as ``binary content (NUL bytes)`` or ``not valid UTF-8``."""
    codings = [c.strip().lower() for c in str(coding or "").split(",")]
    codings = [c for c in codings if c not in ("", "identity", "aws-chunked")]
    if not codings:
        return body
    if len(codings) > 1 or codings[0] not in _INFLATE:
        named = ", ".join(codings)[:60]
        raise NoteUnreadable(key, f"stored compressed (Content-Encoding: {named}), which kb-search does not decode: "
                                  "upload it uncompressed (or gzip-compressed)")  # fmt: skip
    wbits = _INFLATE[codings[0]]
    if wbits == 31 and not body.startswith(b"\x1f\x8b"):
        return body  # labelled gzip, not gzip: read as stored, as before
    return _inflated(key, body, wbits, codings[0])


#: How much of a compressed note is handed to the inflater at once (:func:`_inflated`).
_INFLATE_FEED_BYTES = 64 * 1024


def _inflated(key: str, body: bytes, wbits: int, coding: str) -> bytes:
    """``body`` inflated (:func:`stored_decoded`): gzip's members one after another (``cat a.gz b.gz``, as gzip
    itself reads them), at most :data:`MAX_FILE_BYTES` out. The input is fed :data:`_INFLATE_FEED_BYTES` at a time
    and the output gathered once: fed whole, each member's ``unused_data`` copied the rest of the body, and each
    member's output copied all before it, so a note of many small members took time in the square of its size
    (3.2 million empty members in 64 MiB: hours of one core, the indexer Lambda timed out on it every run)."""
    import zlib

    view, plain, at = memoryview(body), bytearray(), 0
    while True:
        inflater = zlib.decompressobj(wbits)
        pending = view[at : at + _INFLATE_FEED_BYTES]
        at += len(pending)
        try:
            while True:
                plain += inflater.decompress(pending, MAX_FILE_BYTES + 1 - len(plain))
                if len(plain) > MAX_FILE_BYTES:
                    raise NoteUnreadable(key, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB once inflated "
                                              f"(Content-Encoding: {coding})")  # fmt: skip
                if inflater.eof:
                    at -= len(inflater.unused_data)  # the next member's start, given back
                    break
                pending = view[at : at + _INFLATE_FEED_BYTES]  # all fed was taken: the output is under its bound
                if not pending:
                    raise NoteUnreadable(key, f"stored compressed (Content-Encoding: {coding}) and cut short: its "
                                              "data ends early")  # fmt: skip
                at += len(pending)
        except zlib.error:
            if wbits == _ZLIB:  # labelled deflate, not zlib's format: raw deflate, as browsers read it
                return _inflated(key, body, _RAW_DEFLATE, coding)
            if wbits == _RAW_DEFLATE:  # nor raw deflate: a label only, read as stored, as before
                return body
            raise NoteUnreadable(key, f"stored compressed (Content-Encoding: {coding}) but does not inflate") from None
        except NoteUnreadable:
            if wbits == _RAW_DEFLATE and len(plain) <= MAX_FILE_BYTES:  # raw deflate ending early: no deflate
                return body
            if wbits == _ZLIB and len(body) < len(_EMPTY_ZLIB):  # shorter than any zlib stream (a note of one byte,
                # or "x ", a header by chance): raw deflate's reading, else as stored (it was skipped as "cut short")
                return _inflated(key, body, _RAW_DEFLATE, coding)
            raise
        if wbits == _RAW_DEFLATE and (at != len(body) or (not _utf8_text(plain) and _utf8_text(body))):
            # raw deflate ending before the bytes do, or inflating text into bytes no note holds (no checksum tells a
            # raw stream: 2 in 20,000 short plain texts inflate to their last byte, RELIABILITY.md "Round 31 review"):
            # plain bytes a raw inflater read a block in
            return body
        if wbits != 31 or at == len(body) or (body[at] == 0 and body.count(0, at) == len(body) - at):
            return bytes(plain)  # zeros after the last member: padding, as gzip reads it


def _utf8_text(data: bytes | bytearray) -> bool:
    """``data`` could be a note's text: UTF-8 without a NUL byte (:func:`kbsearch.notes.decode_note` skips the rest)."""
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


#: Why a read of the version a listing or HEAD named got none: S3's 412 to its ``If-Match``, or an answer naming
#: another version (a store that ignores the condition).
CHANGED = "changed since it was listed (the next run reads the new version)"


def _opaque(etag: object) -> str:
    """An ETag as compared: without quotes or a weak marker, in lower case (the same version's tag as a listing and
    a GET of one store may write it)."""
    return str(etag or "").strip().removeprefix("W/").strip('"').lower()


#: The longest key S3 holds, in bytes of its UTF-8 (a note path's bound, :data:`MAX_PATH_CHARS`, counts characters).
MAX_KEY_BYTES = 1024


def holds(key: str) -> bool:
    """Whether S3 can hold an object at ``key``: at most :data:`MAX_KEY_BYTES` bytes. S3 answers a HEAD, GET or
    listing naming a longer one 400 ``KeyTooLongError``, which was read as S3 failing: a read by such a path (a
    note path of 1,024 characters may be 2,000 bytes of Cyrillic) was a 503 'try again shortly'; no note is there."""
    return len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES


def _checked(path: str) -> str:
    """A requested path (``kb_get_note``) → its NFC form, or :class:`SourceError` if no note can have it."""
    path = _nfc(path)
    problem = path_problem(path)
    if problem:
        raise SourceError(f"{path!r} is not a note path: {problem}")
    return path


def _access_tier(exc: Exception) -> str:
    """The Intelligent-Tiering archive tier S3's ``InvalidObjectState`` names (its ``AccessTier``), as the start of
    the reason: ``in S3 Intelligent-Tiering's ARCHIVE_ACCESS tier, not restored; ``; "" when it names none."""
    tier = (getattr(exc, "response", None) or {}).get("AccessTier") or (
        (getattr(exc, "response", None) or {}).get("Error", {}).get("AccessTier")
    )
    return f"in S3 Intelligent-Tiering's {tier} tier, not restored; " if isinstance(tier, str) and tier else ""


def _aws_message(exc: Exception) -> str:
    """botocore's error as one line; where no credentials were found (``kbsearch index s3://...`` on a laptop with
    no AWS profile), what provides them: it said only "NoCredentialsError: Unable to locate credentials" (walk33)."""
    said = f"{type(exc).__name__}: {exc}"
    if type(exc).__name__ == "NoCredentialsError":  # by name: botocore is imported only with an S3 source
        said += (" (AWS credentials: aws configure, or AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; "
                 "a folder's path needs none)")  # fmt: skip
    return said


def reader_timeouts(budget_s: float) -> tuple[float, float, int]:
    """botocore's connect and socket-read timeouts and attempts for a read that has ``budget_s``: at most the
    budget each, two attempts (a quick 5xx is worth one more), so that a read abandoned at the budget
    (:class:`kbsearch.reader.NoteReader`) ends within a few budgets of its start (the indexer's client, 5 + 20 s
    four times, kept such a thread ~100 s against a bucket that hangs). A bucket that drips its answer, each byte
    within the read timeout, is not bounded here."""
    budget = max(0.5, budget_s)
    return min(5.0, budget), budget, 2


def open_source(
    uri: str, s3_client: S3Client | None = None, budget_s: float | None = None, deadline: Deadline | None = None
) -> Source:
    """``s3://bucket/prefix`` or a folder path. ``budget_s``: a request path's reads (S3's client timeouts from
    it, :func:`reader_timeouts`); ``deadline``: S3's listing pages and reads end by it (a Lambda run's end)."""
    if not uri:
        raise SourceError("no KB source: pass a folder or s3://bucket/prefix (or set KB_SOURCE)")
    if is_s3_uri(uri):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise SourceError(f"bad S3 URI {uri!r}: expected s3://bucket/prefix")
        return S3Source(bucket, prefix, s3_client, budget_s, deadline)
    return LocalSource(uri)


def listed(source: Source, stop_at: Deadline | None = None) -> Iterator[SourceObject]:
    """``source.list()``, an S3 listing bounded by ``stop_at`` (a folder's ends with its files)."""
    return source.list(stop_at) if isinstance(source, S3Source) else source.list()


def _storage_class(entry: Any) -> str | None:
    """An S3 listing entry's or HEAD's ``StorageClass``; None for STANDARD (which a HEAD does not name), so that a
    listing's entry and a HEAD's of the same object are alike."""
    value = entry.get("StorageClass")
    return value if isinstance(value, str) and value != "STANDARD" else None


def restored(source: Source, obj: SourceObject) -> bool:
    """Whether S3 holds a restored copy of the archived object ``obj`` (one HEAD: ``Restore: ongoing-request="false",
    expiry-date=...``; an INTELLIGENT_TIERING object whose HEAD names no ``ArchiveStatus``, out of its archive
    tiers), so that a GET of it is served; False for a folder's file, an object not restored or whose
    restore is under way, and when S3 does not answer the HEAD (:class:`SourceError`, the caller's to handle)."""
    if not isinstance(source, S3Source):
        return False
    meta = source.head_key(obj.key)
    if meta is None:
        return False
    if obj.storage_class == "INTELLIGENT_TIERING" and not meta.get("ArchiveStatus"):
        return True  # out of its archive tiers (a restore moves it to Frequent Access): a GET is served
    return 'ongoing-request="false"' in str(meta.get("Restore") or "")


def entry_problem(source: Source, path: str) -> str | None:
    """Why the entry at ``path`` is no note ``read_path`` could read (a FIFO, a dangling symlink, an object over
    the size limit), from its metadata alone: never a byte of it, whatever its size (on a folder a few system
    calls on that one name, the file opened non-blocking and never read; on S3 one HEAD of that one key). None when nothing is there, when read_path would read it,
    and for a source that cannot tell (what the note reader answers a restricted caller about a note the index does
    not hold for it: :class:`kbsearch.reader.NoteReader`)."""
    if isinstance(source, LocalSource | S3Source):
        return source.entry_problem(path)
    return None


def head(source: Source, key: str) -> SourceObject | None:
    """One object's current listing entry by its key (an S3 HEAD; a stat and an MD5 of a file), None when it
    does not exist (or, in a folder, is not a regular file). What an event-driven run reads instead of a listing;
    raises :class:`SourceError` when the answer is neither."""
    if isinstance(source, S3Source):
        meta = source.head_key(key)
        if meta is None:
            return None
        modified = meta.get("LastModified")
        return SourceObject(
            path=_nfc(key[len(source.prefix) :]), key=key, etag=str(meta.get("ETag", "")).strip('"'),
            size=int(meta.get("ContentLength", 0)), modified=modified.isoformat() if modified else None,
            storage_class=_storage_class(meta),
        )  # fmt: skip
    if isinstance(source, LocalSource):
        import stat as stat_module

        full = os.path.join(source.root, key)
        try:  # non-blocking: a FIFO put where a note was must not hang the run
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise SourceError(f"cannot read {key!r}: {exc.strerror}") from None
        if stat_module.S_ISDIR(os.fstat(fd).st_mode):  # a folder (or a link to one): no file (fdopen raised)
            os.close(fd)
            return None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if (not stat_module.S_ISREG(info.st_mode) or _linked_elsewhere(full, str(source.root))
                    or _hard_linked_elsewhere(full, info, str(source.root))):  # fmt: skip
                return None  # a link to another file of the KB is no note: what was indexed at its path goes
            try:
                etag = hashlib.md5(handle.read(), usedforsecurity=False).hexdigest()
            except OSError as exc:
                raise SourceError(f"cannot read {key!r}: {exc.strerror}") from None
        when = _modified(info.st_mtime)
        return SourceObject(path=_nfc(key), key=key, etag=etag, size=info.st_size, modified=when)
    raise SourceError(f"{type(source).__name__} cannot look up single objects")


def current(source: Source, key: str) -> SourceObject | None:
    """The entry a full sync indexes now at the note path of ``key`` (its NFC form), whatever the key an event
    named: of the keys that spell that path, the :func:`preferred` one (already NFC, else the smallest), as a full
    sync's listing picks it; None when no key spells it. What an event-driven run applies: an event of one twin
    (``café.md`` uploaded from macOS decomposed, beside the composed one) applied that twin's object (its HEAD), so
    its edit replaced the note the full sync indexes and its deletion (the duplicate cleaned up) removed the note
    while the other key still held it, until the next full sync. A key already NFC and present is the one (one
    HEAD, as before); otherwise the few keys that can spell the path are listed (:func:`key_prefixes`; none for a
    path no other code points spell)."""
    prefix = getattr(source, "prefix", "")
    rel = key[len(prefix) :] if key.startswith(prefix) else key
    path = _nfc(rel)
    if rel == path:
        obj = head(source, key)
        if obj is not None or key_prefixes(path) == [path]:
            return obj
    if isinstance(source, S3Source):
        found = source._find(path)
        return None if found is None else head(source, found)
    if isinstance(source, LocalSource):
        try:
            full = source._find(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise SourceError(f"cannot read {path!r}: {exc.strerror}") from None
        return head(source, os.path.relpath(full, source.root).replace(os.sep, "/"))
    return head(source, key)
