"""scripts/offline_stubs.py: placeholders for optional imports missing on the offline GPU machine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from _scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _module():
    return load_script("offline_stubs")


def test_missing_optional_imports_get_inert_placeholders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "src"
    pkg.mkdir()
    (pkg / "entry_mod_ff3r.py").write_text(
        "import missing_opt_a_ff3r\nfrom missing_opt_b_ff3r import sampler\nVALUE = sampler(3)\n"
    )
    monkeypatch.syspath_prepend(str(pkg))
    stubbed = _module().stub_missing(tmp_path / "stubs", entry_modules=("entry_mod_ff3r",))
    assert stubbed == ["missing_opt_a_ff3r", "missing_opt_b_ff3r"]
    assert sorted(p.name for p in (tmp_path / "stubs").iterdir()) == ["missing_opt_a_ff3r.py", "missing_opt_b_ff3r.py"]
    for name in ("entry_mod_ff3r", "missing_opt_a_ff3r", "missing_opt_b_ff3r"):
        sys.modules.pop(name, None)
    sys.path.remove(str(tmp_path / "stubs"))


def test_a_missing_core_dependency_is_not_stubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "src"
    pkg.mkdir()
    (pkg / "entry_mod2_ff3r.py").write_text("import gsplat_not_here_ff3r\n")
    monkeypatch.syspath_prepend(str(pkg))
    with pytest.raises(ModuleNotFoundError):
        _module().stub_missing(tmp_path / "stubs", entry_modules=("entry_mod2_ff3r",))
    sys.path.remove(str(tmp_path / "stubs"))
