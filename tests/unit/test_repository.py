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
