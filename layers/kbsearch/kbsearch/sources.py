"""Where the KB lives: an S3 prefix or a local folder, behind one interface.

A listing yields every object under the root with its ``path`` (the key relative to the root, ``/``-separated,
Unicode NFC: the same for a folder and for S3), ETag, size and modification time. Only ``.md`` files are notes;
everything else is counted as an attachment. A listing that fails part-way raises :class:`SourceError`: callers
never see a partial listing (which would look like deletions).

Paths are identities, so the indexer and ``kb_get_note`` agree on them through the helpers here: a path is
:func:`note_path` (NFC) of the key; :func:`path_problem` says why a path cannot be a note's identity (empty, ``.``
or ``..`` segments, a leading ``/``, backslashes, control characters); when several keys have the same path,
:func:`preferred` picks the one both of them use (the key already in NFC, else the smallest).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kbsearch.errors import KbSearchError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

NOTE_SUFFIX = ".md"


class SourceError(KbSearchError):
    """The KB source cannot be listed or read."""


@dataclass(frozen=True)
class SourceObject:
    path: str  # identity in the index: relative, '/'-separated, NFC
    key: str  # where to read it: the S3 key or the file's path relative to the root as found on disk
    etag: str
    size: int
    modified: str | None = None

    @property
    def is_note(self) -> bool:
        return self.path.lower().endswith(NOTE_SUFFIX)


class Source(Protocol):
    uri: str

    def list(self) -> Iterator[SourceObject]: ...

    def read(self, obj: SourceObject) -> bytes: ...

    def read_path(self, path: str) -> bytes: ...


MAX_PATH_CHARS = 1024
#: Unicode categories Cc (C0 and C1 controls, DEL) and Cs (surrogates): fixed sets by Unicode's stability policy.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)


def note_path(path: str) -> str:
    """A note's identity: the relative path in Unicode NFC."""
    return _nfc(path)


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
    if "" in segments:
        return "path has an empty segment ('//')"
    if "." in segments or ".." in segments:
        return "path has a '.' or '..' segment, which could lead outside the KB"
    return None


def preferred(keys: list[str]) -> str:
    """Of several keys with the same NFC path, the one that is indexed and read: already NFC, else the smallest."""
    return min(keys, key=lambda k: (k != _nfc(k), k))


class LocalSource:
    """A folder. The ETag of a note is the MD5 of its content (what S3 reports for a single-part upload);
    attachments are not read at all."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.uri = str(self.root)
        if not self.root.is_dir():
            raise SourceError(f"KB folder {self.root} does not exist or is not a folder")

    def list(self) -> Iterator[SourceObject]:
        root = str(self.root)
        try:
            for dirpath, dirnames, filenames in os.walk(root, onerror=self._raise):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                # plain strings, not Path objects: a listing runs on every sync, changed or not
                folder = "" if dirpath == root else os.path.relpath(dirpath, root).replace(os.sep, "/") + "/"
                for name in sorted(filenames):
                    if name.startswith("."):
                        continue
                    full = os.path.join(dirpath, name)
                    rel = folder + name
                    stat = os.stat(full)
                    path = _nfc(rel)
                    is_note = path.lower().endswith(NOTE_SUFFIX)
                    etag = ""
                    if is_note:
                        with open(full, "rb") as handle:
                            etag = hashlib.md5(handle.read(), usedforsecurity=False).hexdigest()
                    modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).isoformat()
                    yield SourceObject(path=path, key=rel, etag=etag, size=stat.st_size, modified=modified)
        except OSError as exc:
            raise SourceError(f"listing {self.root} failed: {exc}") from None

    @staticmethod
    def _raise(exc: OSError) -> None:
        raise exc

    def read(self, obj: SourceObject) -> bytes:
        return self.read_path(obj.key)

    def read_path(self, path: str) -> bytes:
        path = _checked(path)
        try:
            full = self._find(path)
            if not full.resolve().is_relative_to(self.root.resolve()):
                raise SourceError(f"{path!r} is outside the KB folder")
            return full.read_bytes()
        except FileNotFoundError:
            raise SourceError(f"no note at {path!r}") from None
        except OSError as exc:
            raise SourceError(f"cannot read {path!r}: {exc.strerror}") from None

    def _find(self, path: str) -> Path:
        """The file whose NFC path is ``path``, whatever normalisation its name has on disk (as the listing)."""
        full = self.root / path
        if full.exists():
            return full
        here = self.root
        for segment in path.split("/"):
            names = [n for n in os.listdir(here) if _nfc(n) == segment] if here.is_dir() else []
            if not names:
                raise FileNotFoundError(path)
            here = here / preferred(names)
        return here


class S3Source:
    """``s3://bucket/prefix``: a paginated ListObjectsV2 (ETag, size, last-modified), GetObject per changed note."""

    def __init__(self, bucket: str, prefix: str = "", client: S3Client | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.lstrip("/")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self.uri = f"s3://{bucket}/{self.prefix}"
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 4, "mode": "standard"})
            client = boto3.client("s3", config=config)
        self.client = client

    def list(self) -> Iterator[SourceObject]:
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key.endswith("/"):
                        continue  # a "folder" placeholder object
                    rel = key[len(self.prefix) :]
                    modified = item.get("LastModified")
                    yield SourceObject(
                        path=_nfc(rel),
                        key=key,
                        etag=str(item.get("ETag", "")).strip('"'),
                        size=int(item.get("Size", 0)),
                        modified=modified.isoformat() if modified else None,
                    )
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"listing {self.uri} failed: {_aws_message(exc)}") from None

    def read(self, obj: SourceObject) -> bytes:
        return self._get(obj.key)

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

    def _find(self, path: str) -> str | None:
        """The key whose NFC path is ``path`` (what the listing indexed), by listing the keys that share its
        leading ASCII part (which no normalisation changes)."""
        ascii_head = path[: next((i for i, c in enumerate(path) if ord(c) > 127), len(path))]
        keys: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + ascii_head):
                keys += [i["Key"] for i in page.get("Contents", []) if _nfc(i["Key"][len(self.prefix) :]) == path]
        except Exception as exc:
            raise SourceError(f"listing {self.uri} failed: {_aws_message(exc)}") from None
        return preferred(keys) if keys else None

    def _get(self, key: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            code = _aws_code(exc)
            if code in ("NoSuchKey", "404"):
                raise SourceError(f"no note at {key!r}") from None
            raise SourceError(f"cannot read s3://{self.bucket}/{key}: {_aws_message(exc)}") from None
        return body


def _checked(path: str) -> str:
    """A requested path (``kb_get_note``) → its NFC form, or :class:`SourceError` if no note can have it."""
    path = _nfc(path)
    problem = path_problem(path)
    if problem:
        raise SourceError(f"{path!r} is not a note path: {problem}")
    return path


def _aws_code(exc: Exception) -> str:
    response: Any = getattr(exc, "response", None)
    return str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _aws_message(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def open_source(uri: str, s3_client: S3Client | None = None) -> Source:
    """``s3://bucket/prefix`` or a folder path."""
    if not uri:
        raise SourceError("no KB source: pass a folder or s3://bucket/prefix (or set KB_SOURCE)")
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise SourceError(f"bad S3 URI {uri!r}: expected s3://bucket/prefix")
        return S3Source(bucket, prefix, s3_client)
    return LocalSource(uri)


def head(source: Source, key: str) -> SourceObject | None:
    """One object's current listing entry by its key (an S3 HEAD; a stat and an MD5 of a file), None when it
    does not exist (or, in a folder, is not a regular file). What an event-driven run reads instead of a listing;
    raises :class:`SourceError` when the answer is neither."""
    if isinstance(source, S3Source):
        try:
            meta = source.client.head_object(Bucket=source.bucket, Key=key)
        except Exception as exc:
            if _aws_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise SourceError(f"cannot read s3://{source.bucket}/{key}: {_aws_message(exc)}") from None
        modified = meta.get("LastModified")
        return SourceObject(
            path=_nfc(key[len(source.prefix) :]), key=key, etag=str(meta.get("ETag", "")).strip('"'),
            size=int(meta.get("ContentLength", 0)), modified=modified.isoformat() if modified else None,
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
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat_module.S_ISREG(info.st_mode):
                return None
            try:
                etag = hashlib.md5(handle.read(), usedforsecurity=False).hexdigest()
            except OSError as exc:
                raise SourceError(f"cannot read {key!r}: {exc.strerror}") from None
        when = dt.datetime.fromtimestamp(info.st_mtime, dt.UTC).isoformat()
        return SourceObject(path=_nfc(key), key=key, etag=etag, size=info.st_size, modified=when)
    raise SourceError(f"{type(source).__name__} cannot look up single objects")
