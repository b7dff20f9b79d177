"""Package-internal imports run one way: no cycles between modules nor between the package's parts (a
subpackage such as ``data/`` or a top-level module such as ``hub.py``), model/ reaches weights/ only through
its two delegations (``Enformer.from_pretrained`` and ``save_pretrained``), and names such as ``hg38`` and
``enformer`` are resolved above ``data/``, ``weights/`` and ``model/`` (which open paths only).

The graph is read from the source with ``ast`` (nothing is imported), so function-level imports count
exactly like module-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "senformer"

# (importing module, function, imported module): the only edges from model/ into weights/.
DELEGATIONS = {
    ("senformer.model.enformer", "from_pretrained", "senformer.weights"),
    ("senformer.model.enformer", "save_pretrained", "senformer.weights"),
}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its ``__init__``)."""
    modules = {}
    for path in sorted((SOURCE / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_package(module: str, files: dict[str, Path]) -> bool:
    return files[module].name == "__init__.py"


def import_edges(files: dict[str, Path]) -> list[tuple[str, str, str | None, int]]:
    """``(importer, imported, enclosing function or None, line)`` for every package-internal import.

    ``from . import x`` names the submodule ``x`` when there is one, else the package itself; an import
    of ``a.b.c`` names the deepest existing module.
    """
    edges = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = module if _is_package(module, files) else module.rpartition(".")[0]
        for node, function in _imports_with_function(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = []
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.append(submodule if submodule in files else base)
            for target in targets:
                resolved = _deepest_module(target, files)
                if resolved is not None and resolved != module:
                    edges.append((module, resolved, function, node.lineno))
    return edges


def _deepest_module(name: str, files: dict[str, Path]) -> str | None:
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in files:
            return candidate
        parts.pop()
    return None


def _imports_with_function(tree: ast.AST):
    """Every import node with the name of the innermost function holding it (None at module level)."""
    stack: list[tuple[ast.AST, str | None]] = [(tree, None)]
    while stack:
        node, function = stack.pop()
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, function
            stack.append((child, inner))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_sees_relative_absolute_and_function_level_imports():
    files = module_files()
    edges = {(importer, function, imported) for importer, imported, function, _ in import_edges(files)}
    # Module-level relative import of a module.
    assert ("senformer.model.enformer", None, "senformer.config") in edges
    # The two delegations, function-level, resolving `from ..weights import load_model` to the package.
    assert DELEGATIONS <= edges
    # `from . import checkpoint as ckpt` inside train/ names the submodule, not train/__init__.
    assert ("senformer.train.loop", None, "senformer.train.checkpoint") in edges


def test_package_imports_have_no_cycle():
    files = module_files()
    graph: dict[str, set[str]] = {module: set() for module in files}
    for importer, imported, function, _ in import_edges(files):
        if (importer, function, imported) not in DELEGATIONS:
            graph[importer].add(imported)
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(component) for component in found)


def test_model_imports_weights_only_through_the_two_delegations():
    files = module_files()
    crossing = sorted(
        (importer, function, imported, line)
        for importer, imported, function, line in import_edges(files)
        if _in(importer, "senformer.model") and _in(imported, "senformer.weights")
    )
    assert {(importer, function, imported) for importer, function, imported, _ in crossing} == DELEGATIONS, crossing
    assert len(crossing) == len(DELEGATIONS), crossing


def part(module: str) -> str:
    """The package part a module belongs to: ``senformer.data.genome`` -> ``senformer.data``."""
    return ".".join(module.split(".")[:2])


def test_the_package_parts_have_no_cycle():
    """Modules may form no cycle and still make their folders one (data/genome -> hub -> weights/loading ->
    data/tfrecord): each part must sit wholly above or below each other part."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for importer, imported, function, _ in import_edges(files):
        if (importer, function, imported) not in DELEGATIONS and part(importer) != part(imported):
            graph.setdefault(part(importer), set()).add(part(imported))
    found = cycles(graph)
    assert not found, "cycles between package parts: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_part_graph_sees_a_circle_through_folders():
    graph = {"senformer.data": {"senformer.hub"}, "senformer.hub": {"senformer.weights"},
             "senformer.weights": {"senformer.data"}, "senformer.io": set()}
    assert cycles(graph) == [["senformer.data", "senformer.hub", "senformer.weights"]]
    assert part("senformer.data.genome") == "senformer.data" and part("senformer.hub") == "senformer.hub"


def test_names_are_resolved_above_data_weights_and_model():
    """``hub`` (names, downloads, the cache) sits above ``weights/``; ``data/`` opens paths and never downloads."""
    files = module_files()
    upward = sorted((importer, imported, line) for importer, imported, _, line in import_edges(files)
                    if any(_in(importer, below) for below in ("senformer.data", "senformer.weights", "senformer.model"))
                    and _in(imported, "senformer.hub"))
    assert upward == []
