"""The import directions of docs/architecture.md hold: every module under ``ff3r_ns/`` is parsed (``ast``, imports
inside functions included) and each import checked against the table the doc lists, read from the doc itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ff3r_ns"
DOC = ROOT / "docs" / "architecture.md"


class Rule(NamedTuple):
    """One row of the doc's table: the parts of ``ff3r_ns`` a part may import, the outside libraries it may not."""

    may_import: frozenset[str]
    never: frozenset[str]


class Import(NamedTuple):
    module: str  # the importing module, e.g. ff3r_ns.core.render
    target: str  # the imported module, absolute, e.g. ff3r_ns.core.cameras or nerfstudio.utils
    line: int


def read_rules(text: str) -> dict[str, Rule]:
    """The table rows ``| `part` | `a`, `b` | `lib` |`` of docs/architecture.md."""
    rules = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.fullmatch(r"`[\w.]+`", cells[0]):
            continue
        names = [frozenset(re.findall(r"`([\w.]+)`", c)) for c in cells[1:]]
        rules[cells[0].strip("`")] = Rule(*names)
    return rules


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(text: str, module: str, is_package: bool = False) -> Iterator[Import]:
    """Every import statement of one module's source, at any depth, relative imports made absolute."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            yield from (Import(module, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield Import(module, target, node.lineno)


def part_of(module: str) -> str:
    """``ff3r_ns.core.network.model`` -> ``core``; ``ff3r_ns.cli`` -> ``cli``."""
    return module.split(".")[1] if module.count(".") else ""


def violation(imp: Import, rules: dict[str, Rule]) -> str | None:
    """Why ``imp`` breaks the table, or None."""
    src = part_of(imp.module)
    if src == "":  # ff3r_ns/__init__.py
        rule = Rule(frozenset(), frozenset({"nerfstudio", "benchmarks"}))
    elif src not in rules:
        return f"{imp.module} is in no row of docs/architecture.md's table (add its part there)"
    else:
        rule = rules[src]
    top = imp.target.split(".")[0]
    if top != "ff3r_ns":
        return f"imports {imp.target} (never: {sorted(rule.never)})" if top in rule.never else None
    dst = part_of(imp.target)
    if dst in ("", src):
        return None
    allowed = dst in rule.may_import or any(imp.target == m or imp.target.startswith(m + ".")
                                            for m in ("ff3r_ns." + p for p in rule.may_import if "." in p))
    return None if allowed else f"imports {imp.target} ({src} may import {sorted(rule.may_import)})"


def violations(paths: list[Path], rules: dict[str, Rule]) -> list[str]:
    found = []
    for p in paths:
        for imp in imports_of(p.read_text(), module_name(p), p.name == "__init__.py"):
            why = violation(imp, rules)
            if why is not None:
                found.append(f"{p.relative_to(ROOT)}:{imp.line}: {why}")
    return found


@pytest.fixture(scope="module")
def rules() -> dict[str, Rule]:
    return read_rules(DOC.read_text())


def test_the_doc_lists_every_part_of_the_package(rules: dict[str, Rule]) -> None:
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    parts |= {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    assert parts - {"weights"} <= set(rules), sorted(parts - set(rules))
    assert rules["core"].may_import == frozenset() and {"nerfstudio", "tyro"} <= rules["core"].never
    assert "nerfstudio" not in rules["data"].may_import and "nerfstudio" not in rules["training"].may_import


def test_every_import_of_the_package_runs_the_allowed_way(rules: dict[str, Rule]) -> None:
    found = violations(sorted(PACKAGE.rglob("*.py")), rules)
    assert not found, "imports against docs/architecture.md:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("part", "line", "expected"),
    [
        ("core", "from nerfstudio.utils.rich_utils import CONSOLE", "never"),
        ("core", "from ff3r_ns.data.furniture import CLASSES", "may import"),
        ("core", "import tyro", "never"),
        ("data", "from ff3r_ns.nerfstudio.scene import load_scene", "may import"),
        ("training", "from ff3r_ns.nerfstudio.model import FF3RModel", "may import"),
        ("nerfstudio", "from ff3r_ns.export.ply import write_splat_ply", "may import"),
        ("evaluation", "import benchmarks.common", "never"),
        ("training", "from ff3r_ns.nerfstudio.scene import load_scene", None),
        ("core", "from .cameras import Cameras", None),
    ],
)
def test_a_forbidden_import_is_caught(rules: dict[str, Rule], part: str, line: str, expected: str | None) -> None:
    """The check itself: the import, at function level in a module of ``part``, is flagged (or not)."""
    imports = list(imports_of(f"def f():\n    {line}\n", f"ff3r_ns.{part}.probe"))
    reasons = [violation(imp, rules) for imp in imports]
    if expected is None:
        assert reasons == [None]
    else:
        assert len(reasons) == 1 and reasons[0] is not None and expected in reasons[0], reasons
