"""The ``kbsearch`` console script's entry point (pyproject.toml ``[project.scripts]``). A Ctrl-C while the CLI is
still being imported (~50 ms: argparse, logging, typing, kb-search's own modules) or reads its arguments ends the
command as a later one does, one line and exit 130, not with Python's ``KeyboardInterrupt`` traceback. It imports
only ``os``, ``signal`` and ``sys`` before its handler is in place: what comes earlier is Python's own start-up."""

import os
import signal
import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM: `kill <pid>`, `docker stop`, systemd


class Terminated(KeyboardInterrupt):
    """A SIGTERM a command asked to receive as an exception (``kbsearch serve``): a ``KeyboardInterrupt``, so every
    clean-up that runs on a Ctrl-C runs on it too; the CLI ends it with its own line and exit 143."""


#: Whether this entry point started the CLI (the console script), so it may decide what a Ctrl-C does; the CLI
#: called in-process (tests, ``python -m kbsearch_tools.cli``) leaves the caller's SIGINT handling alone.
_in_charge: list[bool] = []


def _command() -> str:
    """How the CLI names itself in its messages before it has read its arguments: ``kbsearch index`` (the first
    argument that is not an option and reads as a command name), else ``kbsearch``."""
    word = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    return f"kbsearch {word}" if word.isascii() and word.isidentifier() else "kbsearch"


def _interrupted(_signum: int, _frame: object) -> None:
    """Ctrl-C before the CLI catches it: one line, exit 130. Nothing has been written or changed yet, so the
    process ends here, whatever module was half-imported."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C again while this one is reported: one line still
    os.write(2, f"\n{_command()}: interrupted\n".encode())
    os._exit(EXIT_INTERRUPTED)


def _terminated(_signum: int, _frame: object) -> None:
    """SIGTERM before ``kbsearch serve`` takes it over (the CLI still loading): its one line and 143, as later;
    nothing has been started yet."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.write(2, f"{_command()}: terminated\n".encode())
    os._exit(EXIT_TERMINATED)


#: The commands a SIGTERM shuts down with their one line and 143 (the CLI's ``kbsearch serve``), from the start;
#: the others keep Python's default (the kernel lets go of what they hold).
TERMINATED_COMMANDS = frozenset({"kbsearch serve"})


def interrupts_raise() -> None:
    """From here on a Ctrl-C is Python's ``KeyboardInterrupt``: the CLI catches it around its command, whose own
    clean-up (a partial index summary, a server closing) then runs."""
    if _in_charge and signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def interrupts_ignored() -> None:
    """The CLI has caught a Ctrl-C and is reporting it: further ones are ignored, so a key held down cannot turn
    the one line into a traceback from whatever runs next (the report, Python's shut-down)."""
    if _in_charge:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def main() -> int:
    # Only where Python put its own handler: a process started with Ctrl-C ignored (nohup, a background job of a
    # script) keeps ignoring it.
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted)
        _in_charge.append(True)
    if _command() in TERMINATED_COMMANDS and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)  # until cmd_serve raises it as an interrupt (the CLI's)
    from kbsearch_tools.cli import main as cli_main

    return cli_main()
