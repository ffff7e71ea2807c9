"""Rebuild every replay capture with one command: each ``eval/classes*.yaml`` listing × each model (issue 19, cap39).

    nice -n 10 .venv/bin/python eval/replay/capture_all.py /work/caps39 [--only classes-bil --only use] \\
        [--record /work/caps39/caps.txt]

For each listing (``classes``, ``classes-bil``, ...; ``--only`` keeps the listings and models it names, listings in
its order) and each model (``e5``, ``use``): the corpora the listing reads that are built, not committed
(``.kbsearch/bil``, ``bilg``, ``bilgimp``, ``bilapps``: :data:`BUILDERS`), are built first; then ``capture.py`` runs the real
``kbsearch eval --classes <listing> --oracle <model> --phases lexical,dense,hybrid`` with the model's oracle cache
(``<out>/oracle/<model>.sqlite``) and the timeouts its docstring gives, and writes ``<out>/<model>-<listing>.pkl``
(the eval's own output goes to ``<out>/<model>-<listing>.log``). A capture already there is kept when it is current
(:func:`why_stale`: every class of the listing, read by this tree's ``PARSE_VERSION``, each its committed set as
``replay.py`` checks it); otherwise it is taken again. A failed capture leaves no ``.pkl`` (the partial file is
removed). Each capture prints its name, time and searches; ``--record FILE`` appends each written or kept capture's
path to FILE (once) as soon as it is ready (others can replay it at once). Replay the result with
``.venv/bin/python eval/replay/replay.py $(cat FILE) --detail``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import yaml

from kbsearch.markdown import PARSE_VERSION

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import load, stale_cells
from texts import ROOT

MODELS = ("e5", "use")
#: a corpus a listing reads that is not committed → the script that builds it (and rewrites its committed sets)
BUILDERS = {
    ".kbsearch/bil": "eval/make_bilingual.py",
    ".kbsearch/bilg": "eval/make_bilingual_gnome.py",
    ".kbsearch/bilgimp": "eval/make_bilingual_gimp.py",
    ".kbsearch/bilapps": "eval/make_bilingual_apps.py",
}
#: capture.py's docstring: a cold model on a busy host embeds slower than the providers' defaults allow
TIMEOUTS = {"EMBEDDING_TIMEOUT_S": "900", "EMBEDDING_QUERY_TIMEOUT_S": "120"}
CAPTURE = Path(__file__).with_name("capture.py")


def listings(root: Path = ROOT) -> list[Path]:
    """Every query-class listing of the eval: the ``eval/classes*.yaml`` files (a new one is captured too)."""
    return sorted(root.glob("eval/classes*.yaml"))


def corpora(listing: Path) -> list[str]:
    """The ``corpus:`` directories a listing's classes read, as written there (relative to the repository)."""
    entries = yaml.safe_load(listing.read_text(encoding="utf-8")) or []
    return sorted({str(entry["corpus"]) for entry in entries})


def why_stale(capture: Path, listing: Path, root: Path = ROOT) -> str | None:
    """None when ``capture`` is current for ``listing``; else why not (absent, another reading of notes, a class
    missing or not its committed set: :func:`replay.stale_cells`)."""
    if not capture.is_file():
        return "not captured"
    try:
        with capture.open("rb") as f:
            classes = pickle.load(f)  # noqa: S301 (a capture capture.py wrote)
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        return f"unreadable ({e or type(e).__name__})"
    listed = {str(entry["class"]) for entry in yaml.safe_load(listing.read_text(encoding="utf-8")) or []}
    missing = sorted(listed - set(classes))
    if missing:
        return f"{len(missing)} of the listing's classes not captured (first: {missing[0]})"
    versions = {c.get("parse_version") for c in classes.values()}
    if versions != {PARSE_VERSION}:
        return f"captured by PARSE_VERSION {sorted(versions, key=str)}, this tree reads notes by {PARSE_VERSION}"
    stale = stale_cells(load([capture], texts=False), root)
    if stale:
        return "; ".join(f"{cell}: {what}" for (_, cell), what in sorted(stale.items()))
    return None


def _status(root: Path) -> str:
    """``git status`` of ``eval/`` (what a builder changed: the lines it adds)."""
    return subprocess.run(["git", "status", "--porcelain", "--", "eval"], cwd=root, capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def build(listing: Path, root: Path = ROOT) -> None:
    """Build the corpora ``listing`` reads that are not committed; stop when a builder changed a committed file."""
    for corpus in corpora(listing):
        if corpus not in BUILDERS or (root / corpus).is_dir():
            continue
        started = time.monotonic()
        print(f"  building {corpus}: {BUILDERS[corpus]}", flush=True)
        before = _status(root)
        subprocess.run([sys.executable, BUILDERS[corpus]], cwd=root, check=True, stdout=subprocess.DEVNULL)
        changed = "\n".join(sorted(set(_status(root).splitlines()) - set(before.splitlines())))
        if changed:
            raise SystemExit(f"{BUILDERS[corpus]} changed committed files (the sets would not be the committed "
                             f"ones):\n{changed}")  # fmt: skip
        print(f"  built {corpus} in {time.monotonic() - started:.0f} s", flush=True)


def capture(listing: Path, model: str, out: Path, root: Path = ROOT) -> tuple[Path, int, int]:
    """``capture.py`` over ``listing`` with ``model``: the capture's path, its searches and its classes."""
    target = out / f"{model}-{listing.stem}.pkl"
    partial = target.with_suffix(".partial")
    cache = out / "oracle" / f"{model}.sqlite"
    cache.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(CAPTURE), str(partial), "--", "eval", "--classes", str(listing.relative_to(root)),
               "--oracle", model, "--phases", "lexical,dense,hybrid", "--oracle-cache", str(cache), "--json"]  # fmt: skip
    with target.with_suffix(".log").open("w", encoding="utf-8") as log:
        env = {**os.environ, **TIMEOUTS}
        done = subprocess.run(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise SystemExit(f"{target.name}: capture.py exit {done.returncode} (its output: {target.with_suffix('.log')})")
    with partial.open("rb") as f:
        classes = pickle.load(f)  # noqa: S301 (the capture just written)
    partial.replace(target)
    return target, sum(len(c["rows"]) for c in classes.values()), len(classes)


def chosen(only: list[str], root: Path = ROOT) -> tuple[list[Path], list[str]]:
    """The listings and models ``--only`` names (listings in its order; none named: all of them)."""
    every = {listing.stem: listing for listing in listings(root)}
    unknown = [name for name in only if name not in every and name not in MODELS]
    if unknown:
        raise SystemExit(
            f"--only {unknown[0]}: neither a listing ({', '.join(every)}) nor a model ({', '.join(MODELS)})"
        )
    picked = [every[name] for name in only if name in every] or list(every.values())
    return picked, [m for m in MODELS if m in only] or list(MODELS)


def _recorded(record: Path) -> set[str]:
    return set(record.read_text(encoding="utf-8").split()) if record.is_file() else set()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the directory the captures (and oracle/<model>.sqlite) go to")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="a listing (classes-bil) or model")
    parser.add_argument("--record", type=Path, help="append each ready capture's path to this file")
    args = parser.parse_args(argv)
    picked, models = chosen(args.only)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary = []
    for listing in picked:
        build(listing)
        for model in models:
            target = out / f"{model}-{listing.stem}.pkl"
            reason = why_stale(target, listing)
            if reason is None:
                summary.append(f"{target.name}: current, kept")
                print(f"{target.name}: current, kept", flush=True)
            else:
                print(f"{target.name}: capturing ({reason})", flush=True)
                started = time.monotonic()
                target, searches, classes = capture(listing, model, out)
                line = f"{target.name}: {searches} searches, {classes} classes in {time.monotonic() - started:.0f} s"
                summary.append(line)
                print(line, flush=True)
            if args.record is not None and str(target) not in _recorded(args.record):
                with args.record.open("a", encoding="utf-8") as f:
                    f.write(f"{target}\n")
    print(f"{len(summary)} captures in {out}:\n  " + "\n  ".join(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
