"""The benchmarks live outside the installed package: ``ff3r_ns`` never imports them and does not ship them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent


def _imported_top_levels(path: Path) -> set[str]:
    """The top-level package of every absolute import in ``path`` (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_installed_package_never_imports_benchmarks() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "ff3r_ns").rglob("*.py"))
                 if "benchmarks" in _imported_top_levels(p)]
    assert offenders == []
    # The scan sees imports: a benchmark module importing the package is found as such.
    assert "ff3r_ns" in _imported_top_levels(ROOT / "benchmarks" / "common.py")


def test_package_discovery_ships_ff3r_ns_only() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(str(ROOT), include=find["include"])
    assert "ff3r_ns" in packages and "ff3r_ns.core" in packages
    assert not [p for p in packages if not p.startswith("ff3r_ns")]
    assert "benchmarks" in find_packages(str(ROOT))  # it is a package: discovery would find it without the filter
