"""The layering rules of the house, checked on the source (not on what happens to be imported)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
BANNED = {
    "model": {"asyncio", "websockets", "aiortc", "aiohttp", "aioice", "streaming"},
    "streaming": {"websockets", "aiortc", "aiohttp", "aioice"},
    "server": {"torch", "diffusers", "transformers", "smplx", "pyrender"},
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Absolute module names imported anywhere in a file (top level or inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
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
    assert names == ["torch.nn", "asyncio"]


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
        "from server.cli import build_parser\n"
        "build_parser()\n"
        "loaded = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
