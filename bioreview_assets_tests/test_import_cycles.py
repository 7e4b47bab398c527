"""The import guard: no import cycle between the package's modules or between its packages, and the layer contracts.

Every import statement anywhere in a module counts: top level and inside functions (a lazy import still ties the two
modules together), absolute and relative (`from . import x`, `from ..core import y`, `from .fp8_kernels import z`).
Imports under `if TYPE_CHECKING:` are left out: they are never executed, they only name types for annotations.

Run as a script to print what the guard finds: `python -m bioreview_assets_tests.test_import_cycles`.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bioreview_assets"


def _module(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The absolute module of `from <node.module> import ...` written in module `name` (a package if `is_package`)."""
    if not node.level:
        return node.module or ""
    # Level 1 is the package holding the module: the module itself for an __init__, its parent otherwise.
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` / `if typing.TYPE_CHECKING:` (its `else:` branch runs, and counts).

    Left out because they are never executed: they only name types for annotations (under `from __future__ import
    annotations`), so they cannot make an import fail or a module half-initialised.
    """
    def guard(test: ast.expr) -> bool:
        return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")

    return {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and guard(node.test)
            for body in node.body for n in ast.walk(body)}


def imports(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> every module it imports anywhere in its body, resolved to absolute names, ours and others'.

    `from pkg import name` counts as `pkg.name` where that is one of our modules, as `pkg` otherwise (the name then
    comes from pkg's __init__).
    """
    paths = {_module(path, root): path for path in root.rglob("*.py")}
    found: dict[str, set[str]] = {}
    for name, path in paths.items():
        names: set[str] = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        skipped = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(node, name, path.name == "__init__.py")
                for alias in node.names:
                    names.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in paths else source)
        found[name] = names - {name}
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the modules of the package it imports anywhere in its body."""
    found = imports(root)
    return {name: {m for m in names if m in found} for name, names in found.items()}


def packages(root: Path = PACKAGE) -> set[str]:
    """The packages (folders with an __init__.py) under root, root included."""
    return {_module(path, root) for path in root.rglob("__init__.py")}


def package_cycles(graph: dict[str, set[str]], packages: set[str]) -> list[list[str]]:
    """Cycles between packages, at every level of the tree.

    For each package, its children (subpackages and modules) are the nodes, each subpackage collapsed with
    everything under it (`bioreview_assets.ml.training.fp8` counts as `bioreview_assets.ml.training` at the `ml`
    level, as `bioreview_assets.ml` at the root); a cycle between them is a package cycle even where no module
    cycle exists (`config/systems.py` -> a loose `settings.py` -> `config/k8s.py`, as the tree once had). A
    package's own loose modules stay nodes of their own rather than one node with the package: `ml/` holds both the
    models its subpackages load and services above them, so lumping it would tie every layer to every other and
    hide the cycles between them. Any cycle between two
    packages anywhere in the tree shows up at the level of their common parent.
    """
    found: list[list[str]] = []
    for package in sorted(packages):
        prefix = package + "."

        def child(module: str) -> str | None:
            return prefix + module[len(prefix):].split(".")[0] if module.startswith(prefix) else None

        collapsed: dict[str, set[str]] = {}
        for module, targets in graph.items():
            if (mine := child(module)) is not None:
                collapsed.setdefault(mine, set()).update(
                    other for target in targets if (other := child(target)) not in (None, mine))
        found += cycles(collapsed)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# Layer contracts (the README's architecture; the full layout is in docs/graph.md): (the layers a rule is about,
# what they must not import, why). A name covers the module of that name and everything under it; a layer's own
# modules are always allowed to it (core -> core).
_ROOT = PACKAGE.name
DAGSTER = ("dagster", "dagster_k8s", "dagster_postgres", "dagster_webserver")
TORCH = ("torch", "transformers", "peft", "trl", "vllm", "bitsandbytes", "sentence_transformers", "triton")
CONTRACTS: list[tuple[tuple[str, ...], tuple[str, ...], str]] = [
    ((f"{_ROOT}.core",), (_ROOT, *DAGSTER, "torch"),
     "core is pure Python, usable without Dagster or torch, and imports nothing else of the package"),
    ((f"{_ROOT}.store", f"{_ROOT}.ml", f"{_ROOT}.reporting", f"{_ROOT}.services"),
     (f"{_ROOT}.assets", f"{_ROOT}.orchestration", f"{_ROOT}.definitions", f"{_ROOT}.checks", f"{_ROOT}.cli",
      *DAGSTER),
     "the layers below the Dagster glue never import it, nor Dagster itself"),
    ((f"{_ROOT}.core", f"{_ROOT}.store", f"{_ROOT}.ml", f"{_ROOT}.services", f"{_ROOT}.reporting", f"{_ROOT}.checks",
      f"{_ROOT}.doctor", f"{_ROOT}.sample", f"{_ROOT}.assets", f"{_ROOT}.orchestration"),
     (f"{_ROOT}.config.loader",),
     "configuration is loaded once, by the entry points (cli/) and definitions.py, and passed down: below them a "
     "function takes the typed spec it needs (a ModelConfig, a MatcherSpec, the ConfigSnapshot the definitions are "
     "built from), never a name to look up"),
    ((f"{_ROOT}.ml",), (f"{_ROOT}.services", f"{_ROOT}.reporting"),
     "ml is the model code (torch, transformers, peft, trl, vLLM) and the pieces only it uses: the services that "
     "orchestrate it, and the reports, sit above it"),
    ((f"{_ROOT}.services",), TORCH,
     "services hold no model code of their own: what loads or runs a model lives in ml/ (imported lazily)"),
    ((f"{_ROOT}.store",), (f"{_ROOT}.ml", f"{_ROOT}.services", f"{_ROOT}.reporting"),
     "the store (and its typed records) sits below every layer that reads or writes artefacts"),
    ((f"{_ROOT}.reporting",), (f"{_ROOT}.ml", f"{_ROOT}.services", *TORCH),
     "reports are built from stored records, never from models"),
]
# Existing violations the guard tolerates: (importer, imported) -> why it is not fixed yet. The guard fails on any
# violation not listed here, and on an entry here that no longer occurs. Empty: the tree keeps every contract.
ALLOWED: dict[tuple[str, str], str] = {}


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(found: dict[str, set[str]], contracts=CONTRACTS) -> set[tuple[str, str]]:
    """(importer, imported) pairs that break a contract; `found` is `imports()`'s answer."""
    broken: set[tuple[str, str]] = set()
    for layers, forbidden, _why in contracts:
        for module, names in found.items():
            if not any(_under(module, layer) for layer in layers):
                continue
            for name in names:
                # Inside a layer, its own modules are fine even where the root package is forbidden (core -> core).
                if any(_under(name, layer) for layer in layers):
                    continue
                if any(_under(name, bad) for bad in forbidden):
                    broken.add((module, name))
    return broken


def test_no_module_cycles():
    assert cycles(import_graph()) == []


def test_no_package_cycles():
    assert package_cycles(import_graph(), packages()) == []


def test_layer_contracts():
    broken = violations(imports())
    rules = "; ".join(f"{', '.join(layers)} must not import {', '.join(bad)}: {why}" for layers, bad, why in CONTRACTS)
    assert sorted(broken - ALLOWED.keys()) == [], rules
    assert sorted(ALLOWED.keys() - broken) == [], "allow-listed violations that no longer occur: drop them"


def _plant(root: Path, files: dict[str, str]) -> Path:
    """A fake package `fake` under root with the given files (relative path -> source)."""
    package = root / "fake"
    for relative, source in {"__init__.py": "", **files}.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(source)
    return package


def test_guard_sees_a_relative_module_cycle(tmp_path):
    package = _plant(tmp_path, {
        "sub/__init__.py": "",
        "sub/a.py": "from .b import helper\n",
        "sub/b.py": "def helper():\n    from . import a\n    return a\n",
    })
    graph = import_graph(package)
    assert cycles(graph) == [["fake.sub.a", "fake.sub.b"]]
    assert package_cycles(graph, packages(package)) == [["fake.sub.a", "fake.sub.b"]]  # siblings of `sub` too


def test_guard_resolves_every_relative_form(tmp_path):
    package = _plant(tmp_path, {
        "core/__init__.py": "",
        "core/y.py": "",
        "ml/__init__.py": "from . import x\n",
        "ml/x.py": "from ..core import y\nfrom ..core.y import thing\nfrom .. import core\n",
        "ml/deep/__init__.py": "from ...core import y\n",
    })
    graph = import_graph(package)
    assert graph["fake.ml"] == {"fake.ml.x"}
    assert graph["fake.ml.x"] == {"fake.core.y", "fake.core"}
    assert graph["fake.ml.deep"] == {"fake.core.y"}


def test_guard_ignores_type_checking_imports(tmp_path):
    package = _plant(tmp_path, {
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
        "b.py": "from .a import thing\n",
    })
    assert cycles(import_graph(package)) == []


def test_guard_sees_a_package_cycle(tmp_path):
    # No module cycle: one/a -> two/b -> one/c, but the packages `one` and `two` import each other.
    package = _plant(tmp_path, {
        "one/__init__.py": "",
        "one/a.py": "from ..two import b\n",
        "one/c.py": "",
        "two/__init__.py": "",
        "two/b.py": "def late():\n    from fake.one import c\n",
        "loose.py": "from .one import a\n",
    })
    graph = import_graph(package)
    assert cycles(graph) == []
    assert package_cycles(graph, packages(package)) == [["fake.one", "fake.two"]]


def test_guard_sees_a_cycle_between_a_package_and_a_loose_module(tmp_path):
    # The shape config/ <-> settings.py had: the package's models below the loader, its registry above it.
    package = _plant(tmp_path, {
        "cfg/__init__.py": "",
        "cfg/models.py": "",
        "cfg/registry.py": "from .. import settings\n",
        "settings.py": "from .cfg.models import Model\n",
    })
    graph = import_graph(package)
    assert cycles(graph) == []
    assert package_cycles(graph, packages(package)) == [["fake.cfg", "fake.settings"]]


def test_guard_sees_a_lower_layer_calling_the_config_loader(tmp_path):
    package = _plant(tmp_path, {
        "config/__init__.py": "",
        "config/loader.py": "def load_model(name):\n    return name\n",
        "config/model.py": "class ModelConfig:\n    pass\n",
        "ml/__init__.py": "",
        "ml/typed.py": "from ..config.model import ModelConfig\n",
        "ml/looks_up.py": "def cfg(name):\n    from fake.config.loader import load_model\n    return load_model(name)\n",
    })
    contracts = [(("fake.ml",), ("fake.config.loader",), "ml takes typed specs")]
    assert violations(imports(package), contracts) == {("fake.ml.looks_up", "fake.config.loader")}


def test_guard_sees_a_broken_contract(tmp_path):
    package = _plant(tmp_path, {
        "core/__init__.py": "",
        "core/pure.py": "import os\nimport dagster.foo\nfrom . import other\n",
        "core/other.py": "def f():\n    from ..assets import glue\n",
        "assets/__init__.py": "",
        "assets/glue.py": "import dagster\n",
    })
    contracts = [(("fake.core",), ("fake", "dagster"), "core imports nothing of ours")]
    assert violations(imports(package), contracts) == {("fake.core.other", "fake.assets.glue"),
                                                       ("fake.core.pure", "dagster.foo")}


def test_guard_sees_ml_climbing_into_services_and_services_importing_torch(tmp_path):
    package = _plant(tmp_path, {
        "ml/__init__.py": "",
        "ml/model.py": "import torch\n",
        "ml/train.py": "def late():\n    from ..services import publish\n",
        "services/__init__.py": "",
        "services/publish.py": "from ..ml import model\nfrom transformers import AutoModel\n",
    })
    contracts = [(("fake.ml",), ("fake.services",), "ml imports no service"),
                 (("fake.services",), TORCH, "services hold no model code")]
    assert violations(imports(package), contracts) == {("fake.ml.train", "fake.services.publish"),
                                                       ("fake.services.publish", "transformers")}


if __name__ == "__main__":
    graph = import_graph()
    for title, found in (("module cycles", cycles(graph)), ("package cycles", package_cycles(graph, packages()))):
        print(f"{title}:")
        for cycle in found or [["none"]]:
            print("  " + " <-> ".join(cycle))
    print("layer contracts broken:")
    for importer, imported in sorted(violations(imports())):
        print(f"  {importer} -> {imported}" + ("  (allow-listed)" if (importer, imported) in ALLOWED else ""))
