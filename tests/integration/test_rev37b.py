"""Round 37's cold review of rel37 and perf37 (rev37b). Each test fails on main's code before its fix."""

from __future__ import annotations

import fcntl
import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import KBSEARCH_CMD, ROOT, subprocess_env
from tests.integration.test_rev36b import _read_all


def _search(url: str, answered: list[int]) -> None:
    body = json.dumps({"query": "alpha"}).encode()
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answered.append(response.status)


@pytest.mark.timeout(300)
def test_kbsearch_serve_answers_every_search_while_nobody_reads_its_stdout_past_the_banner(tmp_path: Path) -> None:
    """rel37 put `kbsearch serve`'s stderr behind the relay, but its functions log as they do in Lambda: Powertools'
    JSON lines (the search's ``access`` line) and its EMF metrics go to **stdout**, ~1 KB a search. A launcher that
    reads the banner's URL from stdout and nothing more (rel37's own timing script does) blocked the server on a
    search once that pipe was full: every request after it unanswered. Spawned; both pipes shrunk to one page (4,096
    bytes) and neither read after the banner; 60 searches, each answered; then stdout read: every access line, in
    order."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# Alpha\n\nalpha beta gamma\n")
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_SOURCE=str(kb), EMBEDDING_API_KEY="",
                         EMBEDDING_API_KEY_PARAM="")  # fmt: skip
    subprocess.run([*KBSEARCH_CMD, "index", str(kb)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    process = subprocess.Popen([*KBSEARCH_CMD, "serve", "--host", "127.0.0.1", "--port", "0"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    fcntl.fcntl(process.stderr.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    try:
        banner = process.stdout.readline().decode()
        assert " on http://" in banner, banner
        base = banner.split(" on ")[1].strip()
        while not process.stdout.readline().startswith(b"try: "):  # the launcher has its URL: it reads no more
            pass
        for i in range(60):
            answered: list[int] = []
            asking = threading.Thread(target=_search, args=(f"{base}/search?i={i}", answered), daemon=True)
            asking.start()
            asking.join(30)
            assert answered == [200], f"no answer to search {i} within 30 s: the server is blocked"  # main: ~3
        said, noted = bytearray(), bytearray()
        readers = [_read_all(process.stdout.fileno(), said), _read_all(process.stderr.fileno(), noted)]
        time.sleep(1.0)
        process.terminate()
        assert process.wait(30) in (0, 143, -15)
        for reader in readers:
            reader.join(10)
        access = [json.loads(line) for line in said.decode().splitlines() if '"message":"access"' in line]
        assert len(access) == 60, said.decode()[-800:]  # 60 lines of ~1 KB are within the relay's bound: none lost
        assert all(line["caller"] == "anonymous" for line in access)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
