"""Stub the optional modules that nerfstudio imports at import time but an offline GPU machine lacks.

Only for ``scripts/setup_offline_gpu.sh`` (the benchmark machine: torch preinstalled, no network, wheels carried
from ``scripts/gpu_wheels.txt``). nerfstudio 1.1.5 imports a few packages module-wide that none of our runs use
(e.g. ``fpsample``, a point sampler of its data processing). Each missing one gets a placeholder module in
``STUB_DIR`` whose attributes are inert objects, and the names are printed, so a run that did need one fails
visibly instead of importing silently. Never used on a normal install (``scripts/install.sh``).

Usage: ``python3 scripts/offline_stubs.py STUB_DIR`` (then put ``STUB_DIR`` last on ``PYTHONPATH``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

STUB = '''"""Placeholder written by scripts/offline_stubs.py: {name} is not installed on this machine."""


class _Inert:
    def __init__(self, *args, **kwargs): pass
    def __call__(self, *args, **kwargs): return _Inert()
    def __getattr__(self, attr): return _Inert()


def __getattr__(attr):
    return _Inert
'''
ENTRY_MODULES = ("nerfstudio.configs.method_configs", "ff3r_ns.method_configs.ff3r_tiny", "ff3r_ns.method_configs.ff3r")


def stub_missing(stub_dir: Path, entry_modules: tuple[str, ...] = ENTRY_MODULES, max_rounds: int = 30) -> list[str]:
    """Import ``entry_modules``; for each missing top-level module write a placeholder and retry.

    Returns:
        the stubbed names, in the order they were found missing.
    """
    stub_dir.mkdir(parents=True, exist_ok=True)
    sys.path.append(str(stub_dir))
    stubbed: list[str] = []
    for _ in range(max_rounds):
        try:
            for m in entry_modules:
                importlib.import_module(m)
            return stubbed
        except ModuleNotFoundError as e:
            name = (e.name or "").split(".")[0]
            if not name or name in stubbed or name.startswith(("nerfstudio", "ff3r_ns", "torch", "gsplat")):
                raise  # a real dependency, not an optional import: needs its wheel
            (stub_dir / f"{name}.py").write_text(STUB.format(name=name))
            stubbed.append(name)
            roots = tuple({m.split(".")[0] for m in entry_modules})
            for m in [m for m in sys.modules if m.split(".")[0] in roots]:  # re-import the half-imported ones
                del sys.modules[m]
    raise RuntimeError(f"offline_stubs: still failing after {max_rounds} stubs: {stubbed}")


if __name__ == "__main__":
    names = stub_missing(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ff3r_stubs"))
    print(f"offline_stubs: placeholder modules (not installed here, unused by ff3r-ns): {names or 'none'}")
