"""Round 29: the adversarial pass (adv29): a new user's first hour from a fresh clone, scopes under every caller,
the S3 event path, through the real interfaces (`kbsearch` spawned as a process). Each test fails on main's code
before its fix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import KBSEARCH_CMD, PROCESS_TIMEOUT_S, ROOT, subprocess_env

# -- 1: a file an option names: not there, or YAML that does not parse --------------------------------------------

TEMPLATE = str(ROOT / "template.yaml")
EVENT = str(ROOT / "events" / "health.json")


def kbsearch(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, *args], capture_output=True, text=True, cwd=cwd, timeout=PROCESS_TIMEOUT_S,
                          env=subprocess_env(QDRANT_PATH=str(cwd / "q")), check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "said"),
    [(["invoke", "SearchFunction", "-e", EVENT, "--template", "templat.yaml"],
      "kbsearch invoke: error: cannot read template {tmp}/templat.yaml: no such file: did you mean "
      "{tmp}/template.yaml?"),
     (["invoke", "SearchFunction", "-e", EVENT, "--template", TEMPLATE, "--env-vars", "env.jsn"],
      "kbsearch invoke: error: cannot read env vars file env.jsn: no such file (in {tmp}): did you mean env.json?"),
     (["eval", "--kb", "kb", "--queries", "queries.yml"],
      "kbsearch eval: error: cannot read queries file queries.yml: no such file (in {tmp}): did you mean "
      "queries.yaml?"),
     (["eval", "--classes", "clases.yaml"],
      "kbsearch eval: error: cannot read the class manifest clases.yaml: no such file (in {tmp}): did you mean "
      "classes.yaml?"),
     (["eval", "--classes", "dangling.yaml"],
      "kbsearch eval: error: cannot read the class manifest dangling.yaml: a symbolic link to nothing")],
)  # fmt: skip
def test_a_file_an_option_names_that_is_not_there_names_the_one_meant(
    args: list[str], said: str, tmp_path: Path
) -> None:
    """Only `--event` named the file meant: `--template`, `--env-vars`, `--queries` and `--classes` said "No such
    file or directory", the typo (or the working folder) left to be found. Each now says where a relative one was
    looked for and the file beside it with the closest name, as `--event` does."""
    for name in ("template.yaml", "env.json", "queries.yaml", "classes.yaml"):
        (tmp_path / name).write_text("[]\n")
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "gone.yaml")
    (tmp_path / "kb").mkdir()
    proc = kbsearch(tmp_path, *args)
    assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)
    assert proc.stderr.strip() == said.replace("{tmp}", str(tmp_path)), proc.stderr


@pytest.mark.parametrize(
    ("args", "what"),
    [(["invoke", "SearchFunction", "-e", EVENT, "--template", "{bad}"], "kbsearch invoke: error: template {bad}"),
     (["eval", "--kb", "kb", "--queries", "{bad}"], "kbsearch eval: error: queries file {bad}"),
     (["eval", "--classes", "{bad}"], "kbsearch eval: error: the class manifest {bad}")],
)  # fmt: skip
def test_a_yaml_file_an_option_names_that_does_not_parse_is_one_line_with_its_line_and_column(
    args: list[str], what: str, tmp_path: Path
) -> None:
    """PyYAML's message is several lines naming the text `"<unicode string>"` with an excerpt and a caret: the error
    line showed it as escaped newlines (`while parsing a flow sequence\\n  in "<unicode string>", line 1, column
    4:\\n    a: [b\\n       ^\\nexpected ...`). Now one line: where in the file, what, and since where."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [b\nc: d\n")
    (tmp_path / "kb").mkdir()
    proc = kbsearch(tmp_path, *[arg.replace("{bad}", str(bad)) for arg in args])
    assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)
    assert proc.stderr.strip().startswith(what.replace("{bad}", str(bad)) + " is not valid YAML"), proc.stderr
    assert proc.stderr.strip().endswith(
        ": line 2, column 2: expected ',' or ']', but got ':' (while parsing a flow sequence from line 1, column 4)"
    ), proc.stderr
    assert "\\n" not in proc.stderr and "<unicode string>" not in proc.stderr, proc.stderr
