"""tidy33: three paper cuts session 32 left (RELIABILITY.md, "Round 33: tidying (tidy33)"), each through the
interface a person uses: a `.env` that is not UTF-8, a local API key holding `:`, and the Makefile's eval targets
caching the oracle's vectors where `kbsearch index` and `serve` do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from kbsearch_tools.local.process import serve_process
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env

# -- a .env that is not UTF-8 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "where"),
    [("SNIPPET_CHARS=300\n# Пример настроек\nKB_SOURCE=kb\n".encode("cp1251"), "line 2 is not UTF-8 (invalid byte at "
      "offset 20)"),
     (b"\xef\xbb\xbfSNIPPET_CHARS=300\r\nKB_SOURCE=kb\rQDRANT_COLLECTION=caf\xe9\n", "line 3 is not UTF-8 (invalid "
      "byte at offset 56)")],
    ids=["windows-1251 comment", "latin-1 value after a BOM and CR line ends"],
)  # fmt: skip
def test_a_dotenv_that_is_not_utf8_names_its_line_and_byte(tmp_path: Path, content: bytes, where: str) -> None:
    """A `.env` saved in Windows-1251 or Latin-1 stopped every command with `cannot read .env: UnicodeDecodeError`
    and no more (adv32's "left"): which line, which byte, what to do, unsaid. Now it names the line (numbered as
    the `.env`'s other errors number them: a CR alone ends a line there too) and the byte's offset in the file, as
    a note that is not UTF-8 is named; the run stops before anything is read or written."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "note.md").write_text("# Note\n\nquokka\n", encoding="utf-8")
    (tmp_path / ".env").write_bytes(content)
    env = subprocess_env(QDRANT_PATH="", KB_SOURCE="")
    env.pop("QDRANT_PATH"), env.pop("KB_SOURCE")  # as a shell without them: the .env is where they are set
    done = subprocess.run([*KBSEARCH_CMD, "index", "kb"], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stdout + done.stderr[-2000:]
    assert done.stderr == f"kbsearch index: error: cannot read .env: {where}: save the file as UTF-8\n", done.stderr
    assert not (tmp_path / ".kbsearch").exists()


# -- a local API key holding ':' -------------------------------------------------------------------------------------


def test_a_local_api_key_holding_a_colon_is_written_with_it_doubled(tmp_path: Path) -> None:
    """`KB_LOCAL_API_KEYS` splits an entry at its first `:`, so a key holding one could not be given (rev32c's
    "left"): `a:b:hr` is the key `a` with the group `b:hr` (group names hold `:`), and `a::b:hr` stopped
    `kbsearch serve` (the group `:b:hr`). A `:` in a key is now written `::`, the key ending at the first single
    `:`; every form that read before reads the same (a group name never starts with `:`, so an entry whose first
    `:` was doubled was refused): the key `k1` with the group `team::x`, a key with `=`, a key without groups."""
    keys = "pub,a::b:hr,k1:team::x,k=v:hr+security,c:::"
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "q"), KB_LOCAL_API_KEYS=keys)
    with serve_process(env, cwd=ROOT) as server:

        def groups(key: str) -> object:
            answer = httpx.get(f"{server.base_url}/whoami", headers={"x-api-key": key}, timeout=30)
            return answer.json()["groups"] if answer.status_code == 200 else answer.status_code

        assert groups("a:b") == ["hr", "public"]
        assert groups("k1") == ["public", "team::x"]
        assert groups("k=v") == ["hr", "public", "security"]
        assert groups("pub") == ["public"] and groups("c:") == ["public"]
        assert groups("a") == 403 and groups("a::b") == 403 and groups("c") == 403
