"""The repository as committed: no file holds a merge's conflict markers (a merge of this session left both versions
of a RELIABILITY.md row between them, and only a test that parses that table noticed)."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT

#: Lines git writes around the two sides of a conflict (``=======`` alone is also Markdown's heading underline).
MARKERS = ("<<<<<<< ", ">>>>>>> ")


def test_no_committed_file_holds_conflict_markers() -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    found = []
    for name in filter(None, files):
        path = ROOT / name.decode()
        if not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
            if line.startswith(tuple(m.encode() for m in MARKERS)):
                found.append(f"{name.decode()}:{number}")
    assert not found, f"conflict markers in {found[:10]}"


def test_no_committed_link_points_outside_the_repository() -> None:
    """A worktree's ``.venv`` and ``node_modules`` are links to the main checkout's; committed (a helper's ``git add
    -A``: ``.venv/`` in .gitignore matches a directory only), a fresh clone held a link to a folder it does not have,
    and checking one out over the main checkout's real ``.venv`` replaced it (session 31)."""
    staged = subprocess.run(["git", "ls-files", "-s", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    found = []
    for entry in filter(None, staged.split(b"\0")):
        mode, _, rest = entry.partition(b" ")
        if mode == b"120000":
            name = rest.split(b"\t", 1)[1].decode()
            link = ROOT / name
            target = link.readlink() if link.is_symlink() else None  # a fresh clone's link: git's text of it
            if (
                target is None
                or target.is_absolute()
                or not (link.parent / target).resolve().is_relative_to(ROOT.resolve())
            ):
                found.append(name)
    assert not found, f"links committed that point outside the repository: {found}"
