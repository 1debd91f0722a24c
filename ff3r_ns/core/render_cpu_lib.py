"""Building and loading the CPU renderer's C++ library (:mod:`ff3r_ns.core.render_cpu` uses it).

``csrc/{rasterize,tiles,project}_cpu.cpp`` form a plain C-ABI library (no torch headers, so no
dependence on torch's C++ ABI), compiled on first use with the system C++ compiler (``$CXX``, else
``c++``; a few seconds) with OpenMP and loaded with :mod:`ctypes`. The build is cached in
``$TORCH_EXTENSIONS_DIR/ff3r_ns`` (default ``~/.cache/torch_extensions/ff3r_ns``) under a hash of the
source, the flags, the compiler and the CPU's features (it uses ``-march=native``). When it cannot be
built, :func:`is_available` is False, one warning is logged and ``render()`` uses the torch backend.
``FF3R_CPU_EXTENSION=0`` disables it.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

logger = logging.getLogger("ff3r_ns.core.render_cpu")  # the name users filter on

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = (CSRC / "rasterize_cpu.cpp", CSRC / "tiles_cpu.cpp", CSRC / "project_cpu.cpp")
HEADERS = (CSRC / "common.h", CSRC / "simd.h")
CFLAGS = ("-std=c++17", "-O3", "-fPIC", "-shared", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math")
ABI_VERSION = 7

_P, _I64, _INT, _D = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
_SIGNATURES = {
    "project_fwd": [_P, _P, _P, _P, _P, _I64, _I64, _I64, _I64, _D, _D, _D, _P, _P, _P, _P, _INT],
    "project_bwd": [_P, _P, _P, _P, _P, _I64, _I64, _I64, _I64, _D, _D, _D, _P, _P, _P, _P, _P, _P, _INT],
    "tile_boxes": [_P, _P, _I64, _I64, _I64, _P, _P, _INT],
    "tile_lists": [_P, _P, _I64, _I64, _I64, _I64, _P, _P, _P, _P, _P, _INT],
    "rasterize_fwd": [_P, _P, _P, _P, _I64, _P, _P, _P, _P, _I64, _I64, _I64, _I64, _P, _P, _P, _P, _P, _P, _INT],
    "rasterize_bwd": [_P, _I64, _I64, _I64, _I64, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _I64, _I64, _I64, _P, _P, _P, _P, _P, _P, _INT],
}
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}

_lock = threading.Lock()
_state: dict[str, Any] = {}


# --------------------------------------------------------------------------- building and loading
def _build_variants() -> list[tuple[list[str], str]]:
    """Compiler flags to try in turn, each with a tag of what the build depends on besides the sources.

    First ``-march=native`` where the CPU's features are known (Linux), with those features in the tag
    so that a cache shared between different CPUs never loads a build made for another one; then
    portable flags; then without OpenMP (one thread) for compilers that lack it.
    """
    try:
        with open("/proc/cpuinfo") as f:
            feats = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        feats = ""
    variants = []
    if feats and os.environ.get("FF3R_CPU_NATIVE", "1") != "0":
        variants.append(([*CFLAGS, "-march=native"], platform.machine() + feats))
    variants.append((list(CFLAGS), platform.machine()))
    variants.append(([f for f in CFLAGS if f != "-fopenmp"], platform.machine()))
    return variants


def _cache_dir() -> Path:
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch_extensions"
    )
    path = Path(root) / "ff3r_ns"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    path = Path(tempfile.gettempdir()) / f"ff3r_ns_extensions_{os.getuid() if hasattr(os, 'getuid') else 0}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _compile(verbose: bool) -> tuple[Path, bool]:
    """Path of the compiled library (built now unless cached) and whether it was cached."""
    if os.environ.get("FF3R_CPU_EXTENSION", "1") == "0":
        raise RuntimeError("disabled by FF3R_CPU_EXTENSION=0")
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not compiler:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout.split("\n")[0]
    texts = [f.read_text() for f in (*SOURCES, *HEADERS)]
    errors = []
    for flags, tag in _build_variants():
        digest = hashlib.sha256("\0".join([*texts, *flags, tag, compiler, version]).encode()).hexdigest()[:16]
        target = _cache_dir() / f"rasterize_cpu_{digest}.so"
        if target.exists():
            return target, True
        tmp = target.with_name(f"{target.stem}.{os.getpid()}.{threading.get_ident()}.tmp.so")
        cmd = [compiler, *flags, *map(str, SOURCES), "-o", str(tmp)]
        if verbose:
            print(" ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode == 0:
            os.replace(tmp, target)  # atomic: concurrent processes may build at once
            return target, False
        tmp.unlink(missing_ok=True)
        errors.append(f"{' '.join(cmd)}:\n{proc.stderr[-1500:]}")
    raise RuntimeError("compiling the CPU renderer failed: " + "\n".join(errors))


def load_extension(verbose: bool = False) -> bool:
    """Compile (first use on a machine) or load (cached) the C++ library; thread-safe, tried once per process.

    Args:
        verbose: print the compiler command.

    Returns:
        True when the library is usable. On failure one warning is logged and the reason is kept in
        :func:`extension_info`.
    """
    with _lock:
        if "available" in _state:
            return _state["available"]
        t0 = time.perf_counter()
        try:
            path, cached = _compile(verbose)
            lib = ctypes.CDLL(str(path))
            if lib.ff3r_abi_version() != ABI_VERSION:
                raise RuntimeError(f"{path} has ABI {lib.ff3r_abi_version()}, expected {ABI_VERSION}")
            for name, args in _SIGNATURES.items():
                for suffix in _SUFFIX.values():
                    fn = getattr(lib, f"ff3r_{name}_{suffix}")
                    fn.argtypes, fn.restype = args, None
            lib.ff3r_packed_stride.argtypes, lib.ff3r_packed_stride.restype = [_I64], _I64
            _state.update(available=True, lib=lib, cached=cached, path=str(path))
        except Exception as err:  # no compiler, read-only file system, ...
            _state.update(available=False, error=f"{type(err).__name__}: {err}")
            logger.warning(
                "ff3r-ns: the C++ CPU renderer is not available (%s); rendering on CPU falls back to the "
                "(much slower) torch backend. Install a C++ compiler (Debian: g++) to enable it.",
                _state["error"].splitlines()[0][:300],
            )
        _state["load_seconds"] = time.perf_counter() - t0
        return _state["available"]


def is_available() -> bool:
    """Whether the C++ backend can be used (compiles it on the first call)."""
    return load_extension()


def extension_info() -> dict[str, Any]:
    """What :func:`load_extension` did: ``available``, ``load_seconds`` (the compile time when not
    ``cached``), ``path`` or ``error``. Empty before the first load."""
    return {k: v for k, v in _state.items() if k != "lib"}


def packed_stride(channels: int) -> int:
    """Values per Gaussian in the rasterizer's packed rows for ``channels`` blended channels."""
    load_extension()
    return int(_state["lib"].ff3r_packed_stride(channels))


def call(name: str, dtype: torch.dtype, *args: Any) -> None:
    """Call ``ff3r_<name>_<f32|f64>``: tensors are passed as pointers (they must be contiguous CPU
    tensors; None is a null pointer), the number of threads is appended."""
    if not load_extension():
        raise RuntimeError(f"the C++ CPU renderer is not available: {_state.get('error')}")
    fn = getattr(_state["lib"], f"ff3r_{name}_{_SUFFIX[dtype]}")
    ptrs = []
    for a in args:
        if a is None:
            ptrs.append(None)
        elif isinstance(a, Tensor):
            if not (a.is_contiguous() and a.device.type == "cpu"):
                raise ValueError(f"ff3r_{name}: every tensor must be a contiguous CPU tensor")
            ptrs.append(a.data_ptr())
        else:
            ptrs.append(a)
    fn(*ptrs, torch.get_num_threads())
