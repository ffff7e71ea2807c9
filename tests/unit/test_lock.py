"""Reproducible builds: one lock (uv.lock) whose exports are what `sam build` and `make install` install."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker

ROOT = Path(__file__).resolve().parents[2]
LAYER_REQUIREMENTS = ROOT / "layers/kbsearch/requirements.txt"
DEV_REQUIREMENTS = ROOT / "requirements-dev.txt"
UV = str(Path(sys.executable).with_name("uv"))
#: Shipped by the Lambda python3.13 runtime (boto3 and its dependencies): never in the layer.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "python-dateutil", "six"}


def _pins(text: str) -> dict[str, str]:
    """name → version of every `name==version ; marker` line whose marker holds for this interpreter."""
    pins = {}
    for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)(?: ; ([^\\\n]+))?", text, re.M):
        if m[3] is None or Marker(m[3].strip()).evaluate():
            pins[m[1].lower()] = m[2]
    return pins


def _requirements(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _export(*args: str) -> str:
    cmd = [UV, "export", "--frozen", "--format", "requirements-txt", "--no-emit-project", "--quiet", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _make_lock_args(target: str) -> list[str]:
    """The export flags `make lock` uses for a target file, read from the Makefile itself."""
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(ln for ln in makefile.splitlines() if "$(EXPORT)" in ln and target in ln)
    return line.split("$(EXPORT)", 1)[1].split("-o", 1)[0].split()


@pytest.mark.parametrize("path", [LAYER_REQUIREMENTS, DEV_REQUIREMENTS], ids=["layer", "dev"])
def test_requirement_files_are_the_current_export_of_the_lock(path: Path) -> None:
    expected = _export(*_make_lock_args(str(path.relative_to(ROOT))))
    assert _requirements(path.read_text()) == _requirements(expected), f"run `make lock`: {path.name} is stale"


@pytest.mark.parametrize("path", [LAYER_REQUIREMENTS, DEV_REQUIREMENTS], ids=["layer", "dev"])
def test_every_requirement_is_pinned_with_hashes(path: Path) -> None:
    text = path.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n", 2)[2])
    assert len(blocks) >= 20
    for block in blocks:
        assert re.match(r"^[A-Za-z0-9_.-]+==", block), block[:80]
        assert "--hash=sha256:" in block, f"no hash: {block[:80]}"


def test_layer_holds_no_runtime_provided_package_and_matches_development() -> None:
    layer = _pins(LAYER_REQUIREMENTS.read_text())
    dev = _pins(DEV_REQUIREMENTS.read_text())
    assert not RUNTIME_PROVIDED & set(layer), "the Lambda runtime provides boto3/botocore"
    assert {"pydantic", "numpy", "qdrant-client", "aws-lambda-powertools", "httpx"} <= set(layer)
    # one version of each layer package for the layer (python3.13 arm64) and the tests (this interpreter)
    assert all(dev[name] == version for name, version in layer.items()), "layer and dev pins differ"


def test_this_environment_runs_the_locked_versions() -> None:
    for name, version in _pins(DEV_REQUIREMENTS.read_text()).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # a marker excludes it on this platform
        assert installed == version, f"{name} {installed} installed, {version} locked: run `make install`"


def test_layer_build_installs_the_lock_hash_checked_without_extra_dependencies() -> None:
    makefile = (ROOT / "layers/kbsearch/Makefile").read_text()
    for flag in ("--require-hashes", "--no-deps", "--only-binary=:all:", "--python-version 3.13", "aarch64"):
        assert flag in makefile
    assert "-r requirements.txt" in makefile
