"""The layering rules of the house, checked on the source (not on what happens to be imported).

model/ <- streaming/ <- server/, one way; app/ composes every layer and bench/ measures the
composed application; nothing below them imports either. Every ``import`` statement counts,
also one inside a function or under ``TYPE_CHECKING``: a dependency is a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "bench", "clients", "model", "server", "streaming")
NETWORK = {"asyncio", "websockets", "aiortc", "aiohttp", "aioice"}
TOP = {"app", "bench"}

# package -> top-level modules it must never import
BANNED = {
    "model": NETWORK | {"streaming", "server", "clients"} | TOP,
    "streaming": (NETWORK - {"asyncio"}) | {"server", "clients"} | TOP,
    "server": {"torch", "diffusers", "transformers", "smplx", "pyrender"} | TOP,
}


def imported_modules(path: Path, module: str = "") -> list[tuple[int, str]]:
    """Absolute module names imported anywhere in a file (top level or inside functions).

    module: the file's own dotted name, to resolve relative imports (``from . import x``).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module:
                name = node.module
            else:
                continue
            found.append((node.lineno, name))
            # ``from package import module`` depends on that module.
            found.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names)
    return found


def violations(package: str, banned: set[str]) -> list[str]:
    problems = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in imported_modules(path):
            if name.split(".")[0] in banned:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return problems


@pytest.mark.parametrize("package", sorted(BANNED))
def test_package_never_imports_banned_modules(package: str) -> None:
    assert (ROOT / package).is_dir()
    assert violations(package, BANNED[package]) == []


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import torch.nn as nn\n    from asyncio import sleep\n")
    names = [name for _, name in imported_modules(bad)]
    assert names == ["torch.nn", "asyncio", "asyncio.sleep"]


def module_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """The project's import graph: module -> project modules it imports."""
    files = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges = set()
        for _, imported in imported_modules(path, name):
            if imported in files and imported != name:
                edges.add(imported)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as a cycle path
    through the component starting at its smallest module name."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One closed path inside ``component`` (breadth-first back to its first module)."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def test_project_has_no_import_cycle() -> None:
    cycles = find_cycles(module_graph(ROOT, PACKAGES))
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_cycle_finder_names_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from . import c\n")
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text("from pkg.a import thing\n")
    graph = module_graph(tmp_path, ("pkg",))
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_server_import_does_not_load_torch() -> None:
    """Importing every server module (and the CLI) must not pull torch in transitively."""
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "server").rglob("*.py")
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name.removesuffix('.__init__'))\n"
        "from app.cli import build_parser\n"
        "build_parser()\n"
        "loaded = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
