"""Fast CPU backend: gsplat 1.4.0's tile rasterizer as a small compiled C++ library.

Same semantics as :mod:`ff3r_ns.core.render_torch` (the slow reference the tests compare against)
and gsplat's CUDA kernels:

1. Projection (EWA splatting, :func:`project_cpu`): the same arithmetic as
   :func:`ff3r_ns.core.render_torch.project_gaussians`, forward and backward in C++; when the cameras
   need gradients (pose alignment) the torch projection and its autograd are used instead.
2. Tile lists (``isect_tiles``): every Gaussian is listed in the 16x16 tiles its radius box touches,
   each list front to back by depth (ties in memory order), in C++.
3. Compositing (``rasterize_to_pixels`` forward and backward) in C++ over tiles on
   ``torch.get_num_threads()`` OpenMP threads: ``alpha = min(0.999, o * exp(-sigma))``, skipped when
   ``sigma < 0`` or below 1/255, a pixel stops before the transmittance would reach 1e-4; backward
   walks each list back to front as ``rasterize_to_pixels_bwd.cu``. Results do not depend on the
   number of threads (gradients are summed per Gaussian in a fixed order).

``csrc/{rasterize,tiles,project}_cpu.cpp`` form a plain C-ABI library (no torch headers,
so no dependence on torch's C++ ABI), compiled on first use with the system C++ compiler (``$CXX``,
else ``c++``; a few seconds) with OpenMP and loaded with :mod:`ctypes`. The
build is cached in ``$TORCH_EXTENSIONS_DIR/ff3r_ns`` (default ``~/.cache/torch_extensions/ff3r_ns``)
under a hash of the source, the flags, the compiler and the CPU's features (it uses
``-march=native``). When it cannot be built, :func:`is_available` is False, one warning is logged
and ``render()`` uses the torch backend. ``FF3R_CPU_EXTENSION=0`` disables it.

Non-finite Gaussians (NaN / inf in means, quats, scales, opacities or colours, or a projection that
overflows) are culled: they draw nothing and get radius 0.
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
from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ff3r_ns.core.render_torch import TILE_SIZE, Projected, project_gaussians, quat_scale_to_covar

logger = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = (CSRC / "rasterize_cpu.cpp", CSRC / "tiles_cpu.cpp", CSRC / "project_cpu.cpp")
HEADERS = (CSRC / "common.h",)
CFLAGS = ("-std=c++17", "-O3", "-fPIC", "-shared", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math")
ABI_VERSION = 4
MAX_LIST_BYTES = 4 * 1024**3
"""Largest memory the per-tile lists and backward's per-intersection gradient rows may take."""

_P, _I64, _INT, _D = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
_SIGNATURES = {
    "project_fwd": [_P, _P, _P, _P, _P, _I64, _I64, _I64, _I64, _D, _D, _D, _P, _P, _P, _P, _INT],
    "project_bwd": [_P, _P, _P, _P, _P, _I64, _I64, _I64, _I64, _D, _D, _D, _P, _P, _P, _P, _P, _P, _INT],
    "tile_counts": [_P, _P, _I64, _I64, _I64, _P, _INT],
    "tile_lists": [_P, _P, _P, _I64, _I64, _I64, _I64, _P, _P, _P, _INT],
    "rasterize_fwd": [_P, _P, _P, _P, _I64, _P, _P, _P, _I64, _I64, _I64, _I64, _P, _P, _P, _P, _P, _INT],
    "rasterize_bwd": [_P, _I64, _I64, _I64, _P, _P, _P, _P, _P, _P, _P, _I64, _I64, _I64, _P, _P, _P, _P, _P, _P, _INT],
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
            _state.update(available=True, lib=lib, head=lib.ff3r_packed_head(), cached=cached, path=str(path))
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


def _call(name: str, dtype: torch.dtype, *args: Any) -> None:
    """Call ``ff3r_<name>_<f32|f64>``: tensors are passed as pointers (they must be contiguous CPU
    tensors), the number of threads is appended."""
    fn = getattr(_state["lib"], f"ff3r_{name}_{_SUFFIX[dtype]}")
    ptrs = []
    for a in args:
        if isinstance(a, Tensor):
            if not (a.is_contiguous() and a.device.type == "cpu"):
                raise ValueError(f"ff3r_{name}: every tensor must be a contiguous CPU tensor")
            ptrs.append(a.data_ptr())
        else:
            ptrs.append(a)
    fn(*ptrs, torch.get_num_threads())


# --------------------------------------------------------------------------- projection
class _ProjectCPU(torch.autograd.Function):
    """C++ EWA projection with :func:`~ff3r_ns.core.render_torch.project_gaussians`'s semantics;
    differentiable in means, quats and scales (not in the cameras)."""

    @staticmethod
    def forward(ctx, means, quats, scales, world_to_cam, intrinsics, width, height, eps2d, near, far):  # type: ignore[override]
        c_num, n_num = world_to_cam.shape[0], means.shape[0]
        means2d, conics = means.new_empty(c_num, n_num, 2), means.new_empty(c_num, n_num, 3)
        depths, radii = means.new_empty(c_num, n_num), torch.empty(c_num, n_num, dtype=torch.int32)
        args = (n_num, c_num, width, height, float(eps2d), float(near), float(far))
        _call("project_fwd", means.dtype, means, quats, scales, world_to_cam, intrinsics, *args, means2d, conics, depths, radii)
        ctx.mark_non_differentiable(radii)
        ctx.save_for_backward(means, quats, scales, world_to_cam, intrinsics)
        ctx.args = args
        return means2d, conics, depths, radii

    @staticmethod
    @once_differentiable
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii):  # type: ignore[override]
        means, quats, scales, world_to_cam, intrinsics = ctx.saved_tensors
        v_means, v_quats, v_scales = torch.empty_like(means), torch.empty_like(quats), torch.empty_like(scales)
        _call(
            "project_bwd", means.dtype, means, quats, scales, world_to_cam, intrinsics, *ctx.args,
            v_means2d.contiguous(), v_conics.contiguous(), v_depths.contiguous(), v_means, v_quats, v_scales,
        )  # fmt: skip
        return v_means, v_quats, v_scales, None, None, None, None, None, None, None


def project_cpu(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    world_to_cam: Tensor,
    intrinsics: Tensor,
    width: int,
    height: int,
    *,
    eps2d: float = 0.3,
    near: float = 0.01,
    far: float = 1e10,
) -> Projected:
    """EWA projection, as :func:`~ff3r_ns.core.render_torch.project_gaussians` of ``quat_scale_to_covar``.

    In C++ unless the cameras need gradients (pose alignment), then in torch.

    Args:
        means: ``[N, 3]`` world centres.
        quats: ``[N, 4]`` wxyz rotations (any norm).
        scales: ``[N, 3]``.
        world_to_cam: ``[C, 4, 4]`` OpenCV extrinsics.
        intrinsics: ``[C, 3, 3]``.
        width, height: image size in pixels.
        eps2d: blur added to the diagonal of every 2D covariance (px^2).
        near, far: Gaussians with camera z outside ``[near, far]`` are culled.

    Returns:
        :class:`~ff3r_ns.core.render_torch.Projected` (radius 0 where culled).
    """
    if torch.is_grad_enabled() and (world_to_cam.requires_grad or intrinsics.requires_grad):
        covars = quat_scale_to_covar(quats, scales)
        return project_gaussians(means, covars, world_to_cam, intrinsics, width, height, eps2d=eps2d, near=near, far=far)
    dtype = means.dtype
    cams = [t.detach().to(dtype).contiguous() for t in (world_to_cam, intrinsics)]
    m2, con, z, radii = _ProjectCPU.apply(
        means.contiguous(), quats.contiguous(), scales.contiguous(), *cams, width, height, eps2d, near, far
    )
    return Projected(means2d=m2, conics=con, depths=z, radii=radii)


# --------------------------------------------------------------------------- tile lists
def _fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


@torch.no_grad()
def build_tile_lists(
    means2d: Tensor,
    radii: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    *,
    channels: int = 0,
    max_list_bytes: Optional[int] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-tile depth-sorted Gaussian lists, as gsplat's ``isect_tiles`` + ``isect_offset_encode``.

    Args:
        means2d: ``[C, N, 2]`` projected centres.
        radii: ``[C, N]`` int radii, 0 where culled.
        depths: ``[C, N]`` camera z (the sort key).
        width, height: image size (16x16 tiles).
        channels: blended channels ``D``, only to size backward's per-intersection rows in the check.
        max_list_bytes: memory limit of the lists; None uses :data:`MAX_LIST_BYTES`.

    Returns:
        ``tile_offsets [C * tiles_y * tiles_x + 1]`` (int64; the list of tile ``t`` is
        ``ranks[tile_offsets[t]:tile_offsets[t + 1]]``), ``ranks [I]`` (int64 depth ranks of the
        ``M`` Gaussians that touch a tile, increasing along every list) and ``order [M]`` (int64 flat
        index ``c * N + n`` of every rank: front to back, ties in memory order).

    Raises:
        MemoryError: when the lists would exceed the limit (the message gives both sizes).
    """
    c_num, n_num = radii.shape
    dtype = means2d.dtype
    m = means2d.detach().reshape(-1, 2).contiguous()
    r = radii.reshape(-1).to(torch.int32).contiguous()
    counts = torch.empty(c_num * n_num, dtype=torch.int64)
    _call("tile_counts", dtype, m, r, c_num * n_num, width, height, counts)
    total, n_vis = int(counts.sum()), int((counts > 0).sum())
    limit = MAX_LIST_BYTES if max_list_bytes is None else max_list_bytes
    per_isect = 8 + (6 + channels) * means2d.element_size()  # list entry, backward's gradient row
    if total * per_isect > limit or total >= 2**31:  # list positions are int32 in the kernels
        raise MemoryError(
            f"cpu renderer: {total:,} (Gaussian, tile) intersections for {c_num} camera(s) of {width}x{height} "
            f"({n_vis:,} Gaussians on screen) need {_fmt_bytes(total * per_isect)} of per-tile lists, over the "
            f"limit of {_fmt_bytes(limit)} (ff3r_ns.core.render_cpu.MAX_LIST_BYTES); render fewer or smaller "
            "Gaussians, fewer cameras per call or a smaller image"
        )
    tiles = c_num * -(-height // TILE_SIZE) * -(-width // TILE_SIZE)
    offsets = torch.empty(tiles + 1, dtype=torch.int64)
    ranks, order = torch.empty(total, dtype=torch.int64), torch.empty(n_vis, dtype=torch.int64)
    z = depths.detach().reshape(-1).contiguous()
    _call("tile_lists", dtype, m, r, z, c_num * n_num, c_num, width, height, offsets, ranks, order)
    return offsets, ranks, order


# --------------------------------------------------------------------------- compositing
class _RasterizeCPU(torch.autograd.Function):
    """C++ forward / backward of gsplat's ``rasterize_to_pixels`` (no background)."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, offsets, ranks, order, n_cams, width, height):  # type: ignore[override]
        dtype, d, n_vis = colors.dtype, colors.shape[-1], order.numel()
        packed = colors.new_empty(n_vis, _state["head"] + d)  # per Gaussian: geometry, footprint, colour
        img = colors.new_empty(n_cams, height, width, d)
        alpha, trans = colors.new_empty(n_cams, height, width), colors.new_empty(n_cams, height, width)
        last = torch.empty(n_cams, height, width, dtype=torch.int32)
        _call(
            "rasterize_fwd", dtype, means2d, conics, opacities, colors, d, offsets, ranks, order, n_vis, n_cams,
            width, height, packed, img, alpha, trans, last,
        )  # fmt: skip
        ctx.save_for_backward(packed, offsets, ranks, order, trans, last)
        ctx.dims = (opacities.numel(), n_cams, width, height)
        return img, alpha

    @staticmethod
    @once_differentiable
    def backward(ctx, v_img, v_alpha):  # type: ignore[override]
        packed, offsets, ranks, order, trans, last = ctx.saved_tensors
        n, n_cams, width, height = ctx.dims
        n_vis, d = packed.shape[0], packed.shape[1] - _state["head"]
        rows, dense = packed.new_empty(ranks.numel(), 6 + d), packed.new_empty(n_vis, 6 + d)
        v_m, v_c, v_o, v_col = packed.new_empty(n, 2), packed.new_empty(n, 3), packed.new_empty(n), packed.new_empty(n, d)
        _call(
            "rasterize_bwd", packed.dtype, packed, n_vis, n, d, offsets, ranks, order, trans, last,
            v_img.contiguous(), v_alpha.contiguous(), n_cams, width, height, rows, dense, v_m, v_c, v_o, v_col,
        )  # fmt: skip
        return v_m, v_c, v_o, v_col, None, None, None, None, None, None


def rasterize_cpu(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    colors: Tensor,
    radii: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    *,
    max_list_bytes: Optional[int] = None,
) -> tuple[Tensor, Tensor]:
    """Rasterize projected Gaussians with the C++ kernels, as gsplat's ``rasterize_to_pixels``.

    Differentiable with respect to ``means2d``, ``conics``, ``opacities`` and ``colors``.

    Args:
        means2d: ``[C, N, 2]`` projected centres in pixels.
        conics: ``[C, N, 3]`` inverse 2D covariances ``(a, b, c)``.
        opacities: ``[N]`` or ``[C, N]``.
        colors: ``[C, N, D]`` values to blend.
        radii: ``[C, N]`` int radii, 0 where culled (culled entries are never read).
        depths: ``[C, N]`` camera z, the front-to-back order.
        width, height: image size.
        max_list_bytes: see :func:`build_tile_lists`.

    Returns:
        ``[C, H, W, D]`` blended values and ``[C, H, W, 1]`` alpha.
    """
    if not load_extension():
        raise RuntimeError(f"the C++ CPU renderer is not available: {_state.get('error')}")
    if colors.dtype not in _SUFFIX:
        raise ValueError(f"the cpu backend renders float32 or float64, got {colors.dtype}")
    c_num, n_num = radii.shape
    d = colors.shape[-1]
    offsets, ranks, order = build_tile_lists(means2d, radii, depths, width, height, channels=d, max_list_bytes=max_list_bytes)
    img, alpha = _RasterizeCPU.apply(
        means2d.reshape(c_num * n_num, 2).contiguous(),
        conics.reshape(c_num * n_num, 3).contiguous(),
        opacities.expand(c_num, n_num).reshape(-1).contiguous(),
        colors.reshape(c_num * n_num, d).contiguous(),
        offsets,
        ranks,
        order,
        c_num,
        width,
        height,
    )
    return img, alpha[..., None]


# --------------------------------------------------------------------------- full render
def _all_finite(t: Tensor) -> bool:
    """Whether every entry is finite, in one reduction when it is (NaN or inf make the sum non-finite)."""
    t = t.detach()
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _finite_rows(t: Tensor) -> Tensor:
    return torch.isfinite(t.detach().reshape(t.shape[0], -1)).all(-1)


def render_cpu(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    world_to_cam: Tensor,
    intrinsics: Tensor,
    width: int,
    height: int,
    *,
    eps2d: float = 0.3,
    near: float = 0.01,
    far: float = 1e10,
    max_list_bytes: Optional[int] = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Project and rasterize ``N`` Gaussians into ``C`` cameras with expected depth (gsplat's "RGB+ED").

    Args:
        means: ``[N, 3]`` world centres.
        quats: ``[N, 4]`` wxyz rotations (any norm).
        scales: ``[N, 3]``.
        opacities: ``[N]``.
        colors: ``[C, N, D]`` per-camera values to blend (RGB and features).
        world_to_cam: ``[C, 4, 4]`` OpenCV extrinsics.
        intrinsics: ``[C, 3, 3]``.
        width, height: image size.
        eps2d: 2D blur added to every projected covariance (px^2).
        near, far: camera-z clipping planes.
        max_list_bytes: see :func:`build_tile_lists`.

    Returns:
        ``blended [C, H, W, D]``, ``depth [C, H, W, 1]`` (``sum(w z) / alpha``), ``alpha [C, H, W, 1]``,
        ``means2d [C, N, 2]`` (differentiable: the tensor whose gradient densification reads) and
        ``radii [C, N]`` (int32, 0 where culled).
    """
    all_finite = all(_all_finite(t) for t in (means, quats, scales, opacities))
    if not all_finite:  # culled below; finite stand-ins keep NaN out of the projection's graph
        valid = _finite_rows(means) & _finite_rows(quats) & _finite_rows(scales) & torch.isfinite(opacities.detach())
        means = torch.where(valid[:, None], means, torch.zeros_like(means))
        quats = torch.where(valid[:, None], quats, torch.ones_like(quats))
        scales = torch.where(valid[:, None], scales, torch.ones_like(scales))
        opacities = torch.where(valid, opacities, torch.zeros_like(opacities))
    proj = project_cpu(means, quats, scales, world_to_cam, intrinsics, width, height, eps2d=eps2d, near=near, far=far)
    values = torch.cat([colors, proj.depths[..., None]], dim=-1)  # depth rides along as one more channel
    radii = proj.radii
    with torch.no_grad():
        if not all_finite:
            radii = torch.where(valid, radii, torch.zeros_like(radii))
        if not (_all_finite(proj.means2d) and _all_finite(proj.conics)):  # overflow in the projection
            finite = torch.isfinite(proj.means2d).all(-1) & torch.isfinite(proj.conics).all(-1)
            radii = torch.where(finite, radii, torch.zeros_like(radii))
    if not _all_finite(values):  # NaN / inf colours or features: culled too
        finite_values = torch.isfinite(values.detach()).all(-1)
        radii = torch.where(finite_values, radii, torch.zeros_like(radii))
        values = torch.where(finite_values[..., None], values, torch.zeros_like(values))
    img, alpha = rasterize_cpu(
        proj.means2d, proj.conics, opacities, values, radii, proj.depths, width, height, max_list_bytes=max_list_bytes
    )
    depth = img[..., -1:] / alpha.clamp_min(1e-10)
    return img[..., :-1], depth, alpha, proj.means2d, radii
