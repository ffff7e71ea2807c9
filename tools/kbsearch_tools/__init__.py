"""kb-search's developer tooling: the ``kbsearch`` command (index, search, serve, invoke, eval, bench), the local
Lambda runtime, provider fakes and evaluation. Installed by ``make install``; never part of the Lambda layer (the
runtime package ``kbsearch`` imports nothing from here)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kbsearch.errors import KbSearchError


class TemplateError(KbSearchError):
    """template.yaml cannot be read, or does not define what was asked for."""


def repo_root() -> Path:
    """The kb-search checkout this tooling runs from (template.yaml beside tools/), else the current folder."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "template.yaml").is_file() else Path.cwd()


def read_file(
    path: str | os.PathLike[str], what: str, limit: int, error: type[Exception] = KbSearchError, stdin: bool = False
) -> bytes:
    """The bytes of a file an option names (with ``stdin``, ``-`` is stdin), at most ``limit``: ``error`` saying
    ``cannot read <what>`` or that it is larger than ``limit`` (``/dev/zero``, ``/dev/urandom``, a pipe that never
    ends, a file named by mistake). Each was read whole into memory: a ``MemoryError`` traceback, or the host's
    memory filled first. A file that is not there is said so with where a relative one was looked for and the
    file beside it with the closest name (``--queries eval/sample-kb-querys.yaml``: did you mean
    eval/sample-kb-queries.yaml?), as ``--event`` said it alone: the others said "No such file or directory"."""
    try:
        if stdin and str(path) == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as handle:
                raw = handle.read(limit + 1)
    except FileNotFoundError:
        if os.path.lexists(path):  # a dangling symbolic link: it is there, what it names is not
            raise error(f"cannot read {what}: a symbolic link to nothing") from None
        from kbsearch.sources import path_meant

        raise error(f"cannot read {what}: no such file{path_meant(Path(path), folder=False)}") from None
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > limit:
        raise error(f"{what} is larger than {limit:,} bytes (the most it may be): nothing read")
    return raw


def yaml_problem(exc: Exception) -> str:
    """What a YAML parser's error says, in one line with the file's own line and column (``line 2, column 2:
    expected ',' or ']', but got ':' (while parsing a flow sequence from line 1, column 4)``): PyYAML's text is
    several lines naming the text ``"<unicode string>"`` with an excerpt, shown as escaped newlines."""
    problem = getattr(exc, "problem", None)
    if not isinstance(problem, str):
        return " ".join(str(exc).split())
    mark, start = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    since = f" from line {start.line + 1}, column {start.column + 1}" if start is not None else ""
    return f"{where}{problem}" + (f" ({context}{since})" if isinstance(context, str) else "")


def utf8_text(raw: bytes, what: str, error: type[Exception] = KbSearchError) -> str:
    """A file's bytes as text (UTF-8, a byte-order mark dropped); ``error`` naming the first byte that is not."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8 (invalid byte at offset {exc.start})") from None


def argument_shown(value: str) -> str:
    """An argument as the person typed it, for a message: bytes that are not UTF-8 (which Python holds in
    ``sys.argv`` as lone surrogates, U+DC80-U+DCFF) shown escaped (``q\\xff``), so the message itself can be written."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no byte gives: escaped as it is
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


def not_utf8_argument(value: str) -> str | None:
    """Why ``value`` (a command-line argument) cannot be sent anywhere: the bytes of a terminal or a script that
    are not UTF-8 (a Latin-1 locale, a pasted file name), which no UTF-8 request body, form or header can carry;
    None when it is text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"'{argument_shown(value)}' is not UTF-8 text (a terminal or script in another encoding?)"
    return None


def http_url_problem(url: str) -> str | None:
    """Why ``url`` is no http(s) URL a request can be sent to (what the CLIs' URL options take), or None: the URL
    settings' own check (:func:`kbsearch.config.url_problem`: another scheme or none, no host, a port that is no
    number, a host IDNA cannot read, bytes that are not UTF-8), the URL quoted without its user-info (no password
    shown). Each was a traceback (``httpx.InvalidURL``, ``UnicodeEncodeError``) or a bridge answering every request
    "Internal error"."""
    import re

    from kbsearch.config import url_problem

    problem = url_problem(url.strip()) if url.strip() else "is empty"
    if problem is None:
        return None
    shown = re.sub(r"//[^/?#]*@", "//", argument_shown(url))
    return f"'{shown}' {problem}"


def closest(word: str, choices: Sequence[str], cutoff: float = 0.5) -> str | None:
    """The one of ``choices`` ``word`` was most likely meant to be (``serch`` → ``search``, ``e6`` → ``e5``), or
    None: what every "did you mean" of the ``kbsearch`` commands names."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return close[0] if close else None


def not_built_from(settings: Any, given: str, named: str) -> str | None:
    """What to say when ``given`` (the KB folder notes are read from: ``--kb`` or ``KB_SOURCE``, ``named``) is not
    the folder the embedded index records it was built from (walk34): an assistant's ``kbsearch mcp --kb other``
    found a note with ``kb_search`` and was told "no note at '<its path>'" by ``kb_get_note`` of that very hit, and
    nothing said why. None when they are the same folder, or either is unknown or in S3 (read from the store's
    metadata file, no shard opened: ``readiness.recorded_source``)."""
    import shlex

    from kbsearch.qdrant.readiness import recorded_source
    from kbsearch.sources import is_s3_uri

    built = recorded_source(settings)
    if not built or not given.strip() or is_s3_uri(built) or is_s3_uri(given):
        return None
    if Path(given).expanduser().resolve() == Path(built).expanduser().resolve():
        return None
    return (f"{named} {shlex.quote(given)} is not the folder the index was built from ({shlex.quote(built)}): "
            "searches find that folder's notes and notes are read from this one, so a hit's note can be missing: "
            f"give {named} {shlex.quote(built)}, or index this folder (kbsearch index {shlex.quote(given)})")  # fmt: skip


def groups_no_note_holds(settings: Any, scope: Any, given: str = "--scope") -> list[str]:
    """For a ``--scope`` (``kbsearch search``, ``kbsearch mcp``): each of its groups no note of the embedded index is
    restricted to, as the index's last full sync recorded them, with the group meant (``--scope hrr``: it searched
    as ``public`` alone, and nothing said so; walk33). None said on Qdrant Cloud, for an unrestricted scope, or of an
    index recording none. ``given``: where the groups were given (``KB_LOCAL_API_KEYS #1`` for a local key's)."""
    from kbsearch.access import PUBLIC
    from kbsearch.qdrant.readiness import recorded_groups

    recorded = recorded_groups(settings) if scope.groups is not None else None
    if recorded is None:
        return []
    said = []
    for group in sorted(set(scope.groups) - set(recorded) - {PUBLIC}):
        meant = closest(group, recorded)
        known = (
            f"the index's groups: {', '.join(sorted(recorded))}" if recorded else "every note of the index is public"
        )
        said.append(f"no note is restricted to the group {group!r} ({given}; {known}, as of its last full sync), so "
                    "it adds nothing to public" + (f": did you mean {meant!r}?" if meant else ""))  # fmt: skip
    return said


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, without a port) names this machine's loopback interface."""
    import ipaddress

    host = host.strip().strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
