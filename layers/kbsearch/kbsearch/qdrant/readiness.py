"""Whether the embedded store can answer a search, from its folder alone: no engine is loaded and no lock is
taken (``GET /health`` calls this; see :class:`kbsearch.health.Readiness`). Light: ``os`` and ``pathlib`` only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kbsearch.config import Settings

#: What builds an embedded store's index (the store is this machine's: the command is the one to run); a search
#: of it says it too (``kbsearch.qdrant.query.index_missing``).
EMBEDDED_REMEDY = "run the indexer first (kbsearch index <your KB folder>)"
NOT_BUILT = f"the index has not been built yet: {EMBEDDED_REMEDY}"
HELD = "the embedded store is open in another process (pid {pid}: {holder}); searches answer once it closes"
NOT_A_FOLDER = "the embedded store's folder (QDRANT_PATH) is a file or a link to nowhere: set QDRANT_PATH to a folder"
LOCAL_MODE = (
    "the embedded store holds an index from qdrant-client's local mode, which Qdrant Edge does not read: "
    "rebuild it with kbsearch index <your KB folder>"
)


def path_problem(root: Path) -> str | None:
    """Why ``QDRANT_PATH`` cannot hold the embedded store: it, or a folder above it, is a file (None: it is a
    folder, or one that can be created). A file there read as an index never built, and the indexer then failed on
    the store's own files (``NotADirectoryError``). A symbolic link there that leads nowhere (dangling, or a loop)
    read as an index never built too, and the indexer then failed on ``File exists (os error 17)`` or ``Too many
    levels of symbolic links``: it is named as such."""
    for path in (root, *root.parents):
        if path.is_symlink() and not path.exists():  # exists() follows the link: False for a dangling one or a loop
            return (f"QDRANT_PATH {root} is not a folder ({path} is a symbolic link to nowhere: dangling, or a "
                    "loop): point it at a folder (created if missing)")  # fmt: skip
        if path.exists():
            if path.is_dir():
                return None
            return f"QDRANT_PATH {root} is not a folder ({path} is a file): point it at a folder (created if missing)"
    return None


def embedded_problem(settings: Settings) -> str | None:
    """Why the embedded store cannot answer a search, from its folder alone (None: it looks usable)."""
    root = Path(settings.qdrant_path)
    collection = settings.qdrant_collection
    if path_problem(root) is not None:
        return NOT_A_FOLDER  # public (GET /health): no server folder named
    if settings.qdrant_embedded == "local":
        return None if (root / "collection" / collection).is_dir() else NOT_BUILT
    shard = root / "edge" / collection
    if not (shard / "edge_config.json").is_file():
        local = (root / "meta.json").is_file() and (root / "collection").is_dir()
        return LOCAL_MODE if local else NOT_BUILT
    holder = store_holder(settings)
    return HELD.format(pid=holder, holder=holder_named(holder)) if holder is not None else None


def recorded_model(settings: Settings) -> str | None:
    """The embedding model the embedded Edge store records it was built with (None: none recorded, or no such
    store, or a file that cannot be read), read from its metadata file alone: no engine loaded, no shard opened
    (``kbsearch serve`` asks at every start; opening the shard for it cost ~0.13 s on the vault's store)."""
    return _recorded(settings, "embedding_model")


def recorded_source(settings: Settings) -> str | None:
    """The KB folder (or S3 URI) the embedded Edge store records it was built from, read as :func:`recorded_model`
    reads the model (None: none recorded, or no such store): what to re-index, named in a note that said "<your KB
    folder>" of a folder the index knows; None for Qdrant Cloud, whose collection records none."""
    from kbsearch.qdrant.query import SOURCE_KEY

    return None if settings.qdrant_url else _recorded(settings, SOURCE_KEY)


def recorded_groups(settings: Settings) -> list[str] | None:
    """The access groups the embedded Edge store's notes are restricted to, as its last full sync recorded them
    (``access_reach``; [] when every note is public), read as :func:`recorded_model` reads the model: what a
    ``--scope`` group no note holds is told against. None on Qdrant Cloud, or where none is recorded."""
    from kbsearch.qdrant.query import REACH_GROUPS

    value = None if settings.qdrant_url else _recorded_value(settings, REACH_GROUPS)
    if not isinstance(value, list) or not all(isinstance(group, str) for group in value):
        return None
    return value


def _recorded(settings: Settings, key: str) -> str | None:
    value = _recorded_value(settings, key)
    return value if isinstance(value, str) and value else None


def _recorded_value(settings: Settings, key: str) -> object:
    import json

    path = Path(settings.qdrant_path) / "edge" / f"{settings.qdrant_collection}.metadata.json"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data.get(key) if isinstance(data, dict) else None


def held_message(settings: Settings, gone: str, advice: dict[str, str], otherwise: str) -> str:
    """What a caller is told when another process holds the embedded store: which ``kbsearch`` command (its pid,
    as ``GET /health`` names it; no path), then ``advice`` for that command (by :func:`holder_named`'s name), else
    ``otherwise``; ``gone`` when none holds it any more. A ``kbsearch serve``'s advice may name where it answers:
    ``{url}`` is its URL (:func:`serve_url`, else :data:`DEFAULT_SERVE_URL`), ``{unsure}`` empty when that URL was
    read from its command line, else :data:`UNSURE_PORT` (walk33: ``kbsearch serve --port 3733`` was named as
    ``http://127.0.0.1:3000``, where nothing answered)."""
    pid = store_holder(settings)
    if pid is None:  # it let go meanwhile
        return gone
    holder = holder_named(pid)
    url = serve_url(pid) if holder == "kbsearch serve" else None
    said = advice.get(holder, otherwise).format(url=url or DEFAULT_SERVE_URL, unsure="" if url else UNSURE_PORT)
    return (f"the local index is open in another process (pid {pid}: {holder}), and the embedded store takes one "
            f"process at a time: {said}")  # fmt: skip


#: Where a ``kbsearch serve`` answers when its command line does not tell (``--port 0``), and what is said beside it.
DEFAULT_SERVE_URL = "http://127.0.0.1:3000"
UNSURE_PORT = " (the port kbsearch serve printed; 3000 by default)"


def serve_url(pid: int | None) -> str | None:
    """The URL a ``kbsearch serve`` (process ``pid``) answers on, from the ``--host`` and ``--port`` of its command
    line (defaults 127.0.0.1 and 3000): a search refused by its store was told ``http://127.0.0.1:3000`` whatever
    port it served. None when it cannot be told (``--port 0`` picks a free one; no ``/proc``)."""
    argv = _command_line(pid) if pid is not None else None
    if argv is None:
        return None
    options = {"--host": "127.0.0.1", "--port": "3000"}
    rest = argv[argv.index("serve") + 1 :] if "serve" in argv else []
    for at, arg in enumerate(rest):
        name, equals, value = arg.partition("=")
        if name in options:
            options[name] = value if equals else (rest[at + 1] if at + 1 < len(rest) else "")
    host, port = options["--host"], options["--port"]
    if not port.isdigit() or int(port) == 0:
        return None
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 (bound to every address: loopback is one)
    return f"http://{f'[{host}]' if ':' in host else host}:{int(port)}"


def held_for_syncs(settings: Settings, source: str | None, rebuild: bool = False) -> str:
    """What a sync refused by a held embedded store adds to its error (after ``...: another process has it open
    (pid N: <holder>)``): what to do for that holder. ``kbsearch index`` said it; the indexer function run locally
    (``kbsearch invoke IndexerFunction`` beside the ``kbsearch serve`` README starts first) said only "index
    storage failed: ... another process has it open (pid N: kbsearch serve)" (walk33). ``source`` is the KB the
    sync was given, named in the command that hands it to a server; a rebuild is never handed over (a server
    syncs, it does not drop its store), so it is told to stop the server (it was told a server takes it)."""
    import shlex

    pid = store_holder(settings)
    if pid is None:
        return ": it has let go since: run this again"
    folder = shlex.quote(source) if source else "<your KB folder>"
    holder = holder_named(pid)
    if rebuild and holder == "kbsearch serve":
        return (": a kbsearch serve syncs into its store but does not rebuild it: stop that server, run this again, "
                "then start it again")  # fmt: skip
    return {
        "kbsearch index": ": another kbsearch index is syncing into it; run this again once it has ended",
        "kbsearch mcp": ": an assistant's kbsearch mcp is answering from it; it lets go after --idle-close seconds "
        "(5) without a call: run this again then (or stop the assistant)",
        "kbsearch serve": f": a kbsearch serve of this version takes the sync itself: kbsearch index {folder} hands "
        "it over (kbsearch serve --watch syncs every save); otherwise stop that server and run this again, or index "
        "into another QDRANT_PATH",
    }.get(
        holder,
        ". A kbsearch serve (or another kbsearch) holds it: a kbsearch serve of this version takes the sync itself "
        f"(kbsearch index {folder} hands it over; kbsearch serve --watch syncs every save); otherwise stop that "
        "process and run this again, or index into another QDRANT_PATH",
    )


def held_for_requests(settings: Settings) -> str:
    """What a request to the API function run locally (``kbsearch invoke``, a second ``kbsearch serve``) is told when
    another process holds the embedded store. The shared text guessed the holder and said "stop that process, or
    reach the running server (kbsearch mcp --remote URL)": an assistant's bridge, to whoever had sent a REST
    request."""
    return held_message(
        settings,
        "the local index was open in another process a moment ago; send the request again",
        {
            "kbsearch serve": "send the request to that server, {url}{unsure}, or stop it",
            "kbsearch index": "a sync is writing it; send the request again once it has ended",
            "kbsearch mcp": "an assistant's server, which lets go of it after its --idle-close seconds without a "
            "call (default 5): send the request again then",
        },
        "send the request again once it has ended, or stop it",
    )


def store_holder(settings: Settings) -> int | None:
    """The pid of another process holding the embedded store (Qdrant Edge's shard) open; None when none does: its
    owner lock (``<collection>.lock``, ``EdgeStore._own``), held alone while a sync reopens its shard or creates
    it, else Edge's lock on its WAL (a store of a version before the owner lock)."""
    shard = Path(settings.qdrant_path) / "edge" / settings.qdrant_collection
    owner = lock_holder(owner_lock(shard))
    return owner if owner is not None else lock_holder(shard / "wal")


def owner_lock(shard: Path) -> Path:
    """The file whose ``flock`` makes a process the embedded store's owner (``<collection>.lock`` beside its shard)."""
    return shard.parent / f"{shard.name}.lock"


#: The commands of ``kbsearch`` (tools/kbsearch_tools/cli.py) that open the embedded store.
_STORE_COMMANDS = ("serve", "index", "mcp", "invoke", "search", "eval", "bench", "feedback")
#: What is said of a holder that is not recognisably a ``kbsearch`` command.
UNNAMED_HOLDER = "a kbsearch serve or index?"


def holder_named(pid: int) -> str:
    """Which ``kbsearch`` command process ``pid`` is (``kbsearch index``), from its command line, for the operator
    told another process holds the store: "a kbsearch serve or index?" left them to find out, and the advice for a
    second ``kbsearch index`` (wait for it) is not the advice for a server (stop it, or let it take the sync). Only
    the command's name is said, none of its arguments (a path, a URL). Not a ``kbsearch`` command, or no
    ``/proc``: :data:`UNNAMED_HOLDER`."""
    argv = _command_line(pid)
    if argv is None:
        return UNNAMED_HOLDER
    for at, arg in enumerate(argv):
        # the console script (its shebang runs python with it) or ``python -m kbsearch_tools.cli``
        if arg.rsplit("/", 1)[-1] == "kbsearch" or (arg == "kbsearch_tools.cli" and argv[at - 1 : at] == ["-m"]):
            command = next((word for word in argv[at + 1 :] if not word.startswith("-")), None)
            return f"kbsearch {command}" if command in _STORE_COMMANDS else UNNAMED_HOLDER
    return UNNAMED_HOLDER


def _command_line(pid: int) -> list[str] | None:
    """Process ``pid``'s arguments (None: no such process, or no ``/proc``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [arg.decode("utf-8", "replace") for arg in handle.read(1 << 16).split(b"\0") if arg]
    except OSError:
        return None


def held_by(settings: Settings) -> str | None:
    """Which process holds the embedded store open, for its operator (it names the folder; not a public reason):
    None when none does."""
    holder = store_holder(settings)
    if holder is None:
        return None
    return (f"the embedded store at {settings.qdrant_path} is open in another process (pid {holder}: "
            f"{holder_named(holder)})")  # fmt: skip


def missing_index(settings: Settings) -> str | None:
    """Where an embedded store was looked for and not found, for the one at a terminal (the default store is
    ``.kbsearch/qdrant`` in the working folder, so a search run from another folder than the index's finds none);
    None on Qdrant Cloud."""
    if settings.qdrant_url:
        return None
    if str(settings.qdrant_path).startswith("~"):  # as typed at a shell, in an assistant's config (walk38)
        from kbsearch.sources import tilde_meant

        return f"no index in {Path(settings.qdrant_path).resolve()} (QDRANT_PATH){tilde_meant(settings.qdrant_path)}"
    return (f"no index in {Path(settings.qdrant_path).resolve()} (QDRANT_PATH; default .kbsearch/qdrant in the "
            "working folder): build it with kbsearch index <your KB folder>, or run this where you did")  # fmt: skip


def lock_holder(path: Path) -> int | None:
    """The pid of another process holding a lock on ``path`` (as Qdrant Edge locks its WAL folder), read from
    ``/proc/locks`` without taking one; None when none does, or where ``/proc/locks`` does not exist."""
    try:
        info = path.stat()
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            table = handle.read(1 << 20)
    except OSError:
        return None
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 3611 fe:00:2164253 0 EOF" (a blocked waiter's line has "->" after the id)
        if "->" in fields or len(fields) < 6 or fields[5] != wanted:
            continue
        try:
            pid = int(fields[4])
        except ValueError:
            continue
        if pid != os.getpid():
            return pid
    return None
