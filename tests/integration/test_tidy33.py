"""tidy33: three paper cuts session 32 left (RELIABILITY.md, "Round 33: tidying (tidy33)"), each through the
interface a person uses: a `.env` that is not UTF-8, a local API key holding `:`, and the Makefile's eval targets
caching the oracle's vectors where `kbsearch index` and `serve` do."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from kbsearch_tools.local.process import serve_process
from kbsearch_tools.oracle import unavailable
from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env
from tests.integration.test_walk30 import _STAND_IN_MODEL
from tests.integration.test_walk31 import _cached

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


# -- make eval ORACLE=e5 and make eval-*: one oracle cache ----------------------------------------------------------


@pytest.mark.timeout(300)
def test_make_s_evals_cache_the_oracle_s_vectors_where_index_and_serve_do(tmp_path: Path) -> None:
    """`make eval ORACLE=e5` and every `make eval-*` passed `--oracle-cache .kbsearch/oracle/<model>.sqlite`, while
    `kbsearch index`/`serve --oracle` (rel32) cache beside the store, `QDRANT_PATH/../oracle`: with a `QDRANT_PATH`
    of one's own, the make targets encoded again every text index had encoded (rev32c's "left"). The targets now
    name no cache, so kbsearch's one default serves them all: after `kbsearch index sample-kb --oracle e5`, the
    eval `make eval ORACLE=e5` runs first adds only its queries' vectors to index's cache (with test_oracle's
    stand-in for the model: no inference)."""
    if shutil.which("make") is None:
        pytest.skip("no make here")
    reason = unavailable("e5")
    if reason:
        pytest.skip(reason)
    env = subprocess_env(QDRANT_PATH=str(tmp_path / "data" / "store"))
    cache = tmp_path / "data" / "oracle" / "e5.sqlite"
    targets = re.findall(r"^(eval-[a-z]+):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    assert len(targets) >= 7, targets
    planned: list[str] = []
    for target in ["eval", *targets]:
        plan = subprocess.run(["make", "-n", target, *(["ORACLE=e5"] if target == "eval" else [])], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, check=True)  # fmt: skip
        evals = [line.split("kbsearch eval ", 1)[1] for line in plan.stdout.splitlines() if "kbsearch eval " in line]
        assert evals and all("--oracle " in line and "--oracle-cache" not in line for line in evals), plan.stdout
        planned += evals

    def kbsearch(*args: str) -> None:
        done = subprocess.run([sys.executable, "-c", _STAND_IN_MODEL, *args], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=PROCESS_TIMEOUT_S, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]

    kbsearch("index", "sample-kb", "--oracle", "e5")
    indexed = _cached(cache)
    assert planned[0] == "--kb sample-kb --queries eval/sample-kb-queries.yaml --oracle e5", planned[0]
    kbsearch("eval", *shlex.split(planned[0]))
    queries = yaml.safe_load((ROOT / "eval" / "sample-kb-queries.yaml").read_text(encoding="utf-8"))
    assert 0 < _cached(cache) - indexed <= len(queries), (indexed, _cached(cache), len(queries))
