"""The house rules that keep the Lambda layer lean and the data flowing one way, checked on the source tree.

- The runtime package (``kbsearch``, the layer) and the handlers import nothing from the developer tooling
  (``kbsearch_tools``), statically and at run time.
- Parts never import the services (``search``, ``indexer``); nothing in the runtime imports a handler.
- Qdrant has one home, ``kbsearch.qdrant``: nothing else imports qdrant_client or qdrant_edge, and nothing else
  reads the settings that choose between Qdrant Cloud and the embedded store.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, subprocess_env

RUNTIME = ROOT / "layers" / "kbsearch" / "kbsearch"
HANDLERS = ROOT / "functions"
SERVICES = {"kbsearch.search", "kbsearch.indexer", "kbsearch.browse"}
#: the layer above the services: request/command adapters that call them
API_LEVEL = ("kbsearch.api", "kbsearch.slack_worker", "kbsearch.mcp")
TOOLING = ("cli", "bench", "fakes", "local", "eval_runner", "evaluation", "evaluate", "metrics")
QDRANT_HOME = RUNTIME / "qdrant"
#: the settings behind the cloud-or-embedded choice (``Settings.store_kind`` is the one place that reads the URL)
STORE_CHOICE = {"qdrant_url", "qdrant_embedded", "qdrant_path"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(RUNTIME.parent).with_suffix("").parts).removesuffix(".__init__")


def test_the_runtime_and_the_handlers_never_import_the_tooling() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "kbsearch_tools")
        for path in [*RUNTIME.rglob("*.py"), *HANDLERS.rglob("*.py")]
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_layer_holds_no_tooling_modules() -> None:
    present = {p.stem for p in RUNTIME.glob("*.py")} | {p.name for p in RUNTIME.iterdir() if p.is_dir()}
    assert present.isdisjoint(TOOLING), sorted(present & set(TOOLING))


def test_parts_never_import_services_and_nothing_imports_a_handler() -> None:
    for path in RUNTIME.rglob("*.py"):
        name = module_name(path)
        imports = imported_modules(path)
        assert not any(m.startswith(("app", "functions")) for m in imports), name
        if name not in SERVICES and not name.startswith(API_LEVEL):
            assert not (imports & SERVICES), f"{name} (a part) imports a service: {sorted(imports & SERVICES)}"


def test_importing_every_runtime_module_loads_no_tooling() -> None:
    code = (
        "import importlib, pkgutil, sys, kbsearch\n"
        "for m in pkgutil.walk_packages(kbsearch.__path__, 'kbsearch.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'kbsearch_tools'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_qdrant_has_one_home() -> None:
    """Outside ``kbsearch/qdrant`` (and ``config.py``, which defines the settings), no runtime module, handler or
    tool imports a Qdrant library or reads the settings that pick the store: they call ``open_store`` /
    ``open_retriever``."""
    offenders: dict[str, list[str]] = {}
    tools = ROOT / "tools" / "kbsearch_tools"
    for path in [*RUNTIME.rglob("*.py"), *HANDLERS.rglob("*.py"), *tools.rglob("*.py")]:
        if path.is_relative_to(QDRANT_HOME) or path == RUNTIME / "config.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found = {m for m in imported_modules(path) if m.split(".")[0] in ("qdrant_client", "qdrant_edge")}
        found |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in STORE_CHOICE}
        if found:
            offenders[str(path.relative_to(ROOT))] = sorted(found)
    assert offenders == {}
