"""The import contract of the package (docs/architecture.md, section 2), read from the source.

Every ``import`` in every module of ``bitfold`` is collected with :mod:`ast`, those inside
functions too (a late import is still a dependency); only ``if TYPE_CHECKING:`` blocks are
left out, since they never run. Then:

* no import circle between the project's modules;
* ``bitfold.compiler`` and ``bitfold.hw`` never import torch or tensorly;
* ``bitfold.compiler`` imports no other stage (``bitfold.artifacts`` alone from the front door);
* ``bitfold.hw`` never imports ``bitfold.train``;
* ``bitfold.pipeline`` never imports ``bitfold.cli`` (the CLI hands it one callable per verb).
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TORCH = ("torch", "torchvision", "tensorly")


def package_dirs() -> dict[str, Path]:
    """``{"bitfold.compiler": ROOT / "compiler", ...}`` from pyproject's package-dir mapping."""
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {pkg: ROOT / d for pkg, d in doc["tool"]["setuptools"]["package-dir"].items()}


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its ``__init__.py``)."""
    out: dict[str, Path] = {}
    for pkg, folder in package_dirs().items():
        for path in folder.glob("*.py"):  # the stage folders are flat; subfolders are packages
            out[pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"] = path
    return out


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            yield from (n for child in node.orelse for n in _imports_of(child))
            continue
        yield from _imports_of(node)


def _imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def imported_names(name: str, path: Path) -> set[str]:
    """Dotted names ``name`` imports: ``from a.b import c`` gives ``a.b`` and ``a.b.c``."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            anchor = ".".join(parts[:len(parts) - node.level + 1])
            base = f"{anchor}.{base}" if base else anchor
        out.add(base)
        out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (directly)."""
    mods = modules()
    return {name: {m for m in imported_names(name, path) if m in mods and m != name}
            for name, path in mods.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_contract_sees_the_whole_package(graph) -> None:
    assert {"bitfold.cli", "bitfold.compiler.ir", "bitfold.hw.mvu", "bitfold.train.trainer",
            "bitfold.sim.runner", "bitfold.boards.flow", "bitfold.interop.importer"} <= set(graph)
    assert "bitfold.compiler.ir" in graph["bitfold.compiler.verify"]  # relative imports resolve
    assert "bitfold.verbs" in graph["bitfold.cli"]  # `from bitfold import verbs`
    assert "bitfold.compiler.memlayout" in graph["bitfold.hw.stages"]  # absolute imports resolve


def test_circles_are_found_with_their_modules() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_between_the_projects_modules(graph) -> None:
    assert circles(graph) == []


@pytest.mark.parametrize("stage", ["bitfold.compiler", "bitfold.hw"])
def test_compiler_and_hw_never_import_torch(stage) -> None:
    bad = {name: sorted(m for m in imported_names(name, path) if m.split(".")[0] in TORCH)
           for name, path in modules().items() if name == stage or name.startswith(stage + ".")}
    assert {k: v for k, v in bad.items() if v} == {}


def _imports_under(graph: dict[str, set[str]], stage: str, forbidden: str) -> dict[str, list[str]]:
    found = {name: sorted(m for m in deps if m == forbidden or m.startswith(forbidden + "."))
             for name, deps in graph.items() if name == stage or name.startswith(stage + ".")}
    return {k: v for k, v in found.items() if v}


@pytest.mark.parametrize("stage, forbidden", [
    ("bitfold.hw", "bitfold.train"),
    ("bitfold.compiler", "bitfold.train"),
    ("bitfold.compiler", "bitfold.hw"),
    ("bitfold.compiler", "bitfold.sim"),
    ("bitfold.compiler", "bitfold.boards"),
    ("bitfold.compiler", "bitfold.interop"),
    ("bitfold.compiler", "bitfold.cli"),
    ("bitfold.compiler", "bitfold.verbs"),
    ("bitfold.compiler", "bitfold.pipeline"),
    ("bitfold.pipeline", "bitfold.cli"),
])
def test_forbidden_layer_imports(graph, stage, forbidden) -> None:
    assert _imports_under(graph, stage, forbidden) == {}
