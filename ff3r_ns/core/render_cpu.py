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
   walks each list back to front as ``rasterize_to_pixels_bwd.cu``. The expected depth is blended as
   one more channel inside the kernels (no concatenated copy of the colours). Results do not depend
   on the number of threads (gradients are summed per Gaussian in a fixed order).

The library is built and loaded by :mod:`ff3r_ns.core.render_cpu_lib` (compiled on first use, cached;
when it cannot be built :func:`is_available` is False and ``render()`` uses the torch backend).

Non-finite Gaussians (NaN / inf in means, quats, scales, opacities or colours, or a projection that
overflows) are culled: they draw nothing and get radius 0.
"""

from __future__ import annotations

import threading
from typing import NamedTuple, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ff3r_ns.core.render_cpu_lib import _SUFFIX, call, extension_info, is_available, load_extension, packed_stride
from ff3r_ns.core.render_torch import TILE_SIZE, Projected, project_gaussians, quat_scale_to_covar

__all__ = [
    "MAX_LIST_BYTES", "build_tile_lists", "extension_info", "is_available", "load_extension", "project_cpu",
    "rasterize_cpu", "render_cpu",
]

MAX_LIST_BYTES = 4 * 1024**3
"""Largest memory the per-tile lists and backward's per-intersection gradient rows may take."""


# --------------------------------------------------------------------------- projection
class _ProjectCPU(torch.autograd.Function):
    """C++ EWA projection with :func:`~ff3r_ns.core.render_torch.project_gaussians`'s semantics;
    differentiable in means, quats and scales (not in the cameras)."""

    # torch.autograd.Function.forward receives the kernel's inputs positionally.
    @staticmethod
    def forward(ctx, means, quats, scales, world_to_cam, intrinsics, width, height, eps2d, near, far):  # type: ignore[override]
        c_num, n_num = world_to_cam.shape[0], means.shape[0]
        means2d, conics = means.new_empty(c_num, n_num, 2), means.new_empty(c_num, n_num, 3)
        depths, radii = means.new_empty(c_num, n_num), torch.empty(c_num, n_num, dtype=torch.int32)
        args = (n_num, c_num, width, height, float(eps2d), float(near), float(far))
        call("project_fwd", means.dtype, means, quats, scales, world_to_cam, intrinsics, *args, means2d, conics, depths, radii)
        ctx.mark_non_differentiable(radii)
        ctx.save_for_backward(means, quats, scales, world_to_cam, intrinsics)
        ctx.args = args
        return means2d, conics, depths, radii

    @staticmethod
    @once_differentiable
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii):  # type: ignore[override]
        means, quats, scales, world_to_cam, intrinsics = ctx.saved_tensors
        v_means, v_quats, v_scales = torch.empty_like(means), torch.empty_like(quats), torch.empty_like(scales)
        call(
            "project_bwd", means.dtype, means, quats, scales, world_to_cam, intrinsics, *ctx.args,
            v_means2d.contiguous(), v_conics.contiguous(), v_depths.contiguous(), v_means, v_quats, v_scales,
        )  # fmt: skip
        return v_means, v_quats, v_scales, None, None, None, None, None, None, None


# gsplat's fully_fused_projection arguments (this kernel stands in for it on CPU).
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


class _Lists(NamedTuple):
    """:func:`build_tile_lists`' lists and their transpose (``first [M + 1]``, ``pos [I]`` int32: the list
    entries of rank ``k`` are ``pos[first[k]:first[k + 1]]``, in tile order), which backward sums by."""

    offsets: Tensor
    ranks: Tensor
    order: Tensor
    first: Tensor
    pos: Tensor


# build_tile_lists' arguments (it returns three of the lists this builds).
@torch.no_grad()
def _lists(
    means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int, channels: int, max_list_bytes: Optional[int]
) -> _Lists:
    c_num, n_num = radii.shape
    dtype = means2d.dtype
    m = means2d.detach().reshape(-1, 2).contiguous()
    r = radii.reshape(-1).to(torch.int32).contiguous()
    boxes, totals = torch.empty(c_num * n_num, 4, dtype=torch.int32), torch.empty(2, dtype=torch.int64)
    call("tile_boxes", dtype, m, r, c_num * n_num, width, height, boxes, totals)
    total, n_vis = totals.tolist()
    limit = MAX_LIST_BYTES if max_list_bytes is None else max_list_bytes
    per_isect = 12 + (6 + channels) * means2d.element_size()  # list entry and transpose, backward's gradient row
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
    first, pos = torch.empty(n_vis + 1, dtype=torch.int64), torch.empty(total, dtype=torch.int32)
    z = depths.detach().reshape(-1).contiguous()
    call("tile_lists", dtype, boxes, z, c_num * n_num, c_num, width, height, offsets, ranks, order, first, pos)
    return _Lists(offsets, ranks, order, first, pos)


# gsplat's isect_tiles arguments plus the memory bound of the lists.
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
    lists = _lists(means2d, radii, depths, width, height, channels, max_list_bytes)
    return lists.offsets, lists.ranks, lists.order


# --------------------------------------------------------------------------- compositing
_SCRATCH = threading.local()  # per thread: autograd runs a CPU backward on the thread that called it
MAX_SCRATCH_BYTES = 512 * 1024**2
"""Largest per-intersection gradient buffer backward keeps between calls (larger ones are allocated each time)."""


def _scratch_rows(like: Tensor, n: int, d: int) -> Tensor:
    """An uninitialised ``[n, d]`` buffer for backward's per-intersection gradient rows, kept between calls.

    The buffer is usually above glibc's mmap threshold (32 MB; 180k Gaussians at 128x128 write 40-130 MB of
    rows), so a fresh one is page-faulted in on every backward: measured 70 -> 58 ms per backward on the dense
    bench scene when it is reused. Only used inside one backward call, so one per thread is enough.
    """
    size = max(n * d, 1)
    if size * like.element_size() > MAX_SCRATCH_BYTES:
        return like.new_empty(n, d)
    buf = getattr(_SCRATCH, "rows", None)
    if buf is None or buf.dtype != like.dtype or buf.numel() < size:
        buf = like.new_empty(size)
        _SCRATCH.rows = buf
    return buf[: n * d].view(n, d)


class _RasterizeCPU(torch.autograd.Function):
    """C++ forward / backward of gsplat's ``rasterize_to_pixels`` (no background), with the depth
    channel (``depths``, or None) blended inside the kernels."""

    # torch.autograd.Function.forward receives the kernel's inputs positionally.
    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, depths, lists, n_cams, width, height):  # type: ignore[override]
        offsets, ranks, order = lists.offsets, lists.ranks, lists.order
        dtype, d_col, n_vis = colors.dtype, colors.shape[-1], order.numel()
        has_z = depths is not None
        packed = colors.new_empty(n_vis, packed_stride(d_col + has_z))  # per Gaussian: geometry, footprint, colour
        img = colors.new_empty(n_cams, height, width, d_col)
        depth_img = colors.new_empty(n_cams, height, width) if has_z else None
        alpha, trans = colors.new_empty(n_cams, height, width), colors.new_empty(n_cams, height, width)
        last = torch.empty(n_cams, height, width, dtype=torch.int32)
        call(
            "rasterize_fwd", dtype, means2d, conics, opacities, colors, d_col, depths, offsets, ranks, order, n_vis,
            n_cams, width, height, packed, img, depth_img, alpha, trans, last,
        )  # fmt: skip
        ctx.save_for_backward(packed, offsets, ranks, order, lists.first, lists.pos, trans, last)
        ctx.dims = (opacities.numel(), d_col, has_z, n_cams, width, height)
        if not has_z:
            return img, alpha
        return img, alpha, depth_img

    @staticmethod
    @once_differentiable
    def backward(ctx, v_img, v_alpha, v_depth=None):  # type: ignore[override]
        packed, offsets, ranks, order, first, pos, trans, last = ctx.saved_tensors
        n, d_col, has_z, n_cams, width, height = ctx.dims
        n_vis, d = order.numel(), d_col + has_z
        rows = _scratch_rows(packed, ranks.numel(), 6 + d)
        v_m, v_c, v_o = packed.new_empty(n, 2), packed.new_empty(n, 3), packed.new_empty(n)
        v_col, v_z = packed.new_empty(n, d_col), packed.new_empty(n) if has_z else None
        call(
            "rasterize_bwd", packed.dtype, packed, n_vis, n, d_col, int(has_z), offsets, ranks, order, first, pos, trans, last,
            v_img.contiguous(), v_depth.contiguous() if has_z else None, v_alpha.contiguous(), n_cams, width, height,
            rows, v_m, v_c, v_o, v_col, v_z,
        )  # fmt: skip
        return v_m, v_c, v_o, v_col, v_z, None, None, None, None


def _flat_colors(colors: Tensor, rows: int, d: int) -> Tensor:
    """``colors`` as a contiguous ``[rows, d]`` tensor. One camera's ``[N, D]`` tensor expanded to
    ``[1, N, D]`` (what ``render()`` passes) is replaced by that tensor itself: the same values, and its
    gradient then skips the expansion's backward (a sum over the size-1 axis that costs ~2.5 ms for
    150k Gaussians x 19 channels on two threads)."""
    base = colors._base
    if (
        base is not None and colors.shape[0] == 1 and base.shape == colors.shape[1:] and base.is_contiguous()
        and base.dtype == colors.dtype and base.data_ptr() == colors.data_ptr() and colors.stride()[1:] == base.stride()
        and base.requires_grad == colors.requires_grad
    ):  # fmt: skip
        return base
    return colors.reshape(rows, d).contiguous()


# gsplat's rasterize_to_pixels arguments (this kernel stands in for it on CPU).
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
    blend_depths: bool = False,
) -> tuple[Tensor, ...]:
    """Rasterize projected Gaussians with the C++ kernels, as gsplat's ``rasterize_to_pixels``.

    Differentiable with respect to ``means2d``, ``conics``, ``opacities``, ``colors`` and, with
    ``blend_depths``, ``depths``.

    Args:
        means2d: ``[C, N, 2]`` projected centres in pixels.
        conics: ``[C, N, 3]`` inverse 2D covariances ``(a, b, c)``.
        opacities: ``[N]`` or ``[C, N]``.
        colors: ``[C, N, D]`` values to blend.
        radii: ``[C, N]`` int radii, 0 where culled (culled entries are never read).
        depths: ``[C, N]`` camera z, the front-to-back order.
        width, height: image size.
        max_list_bytes: see :func:`build_tile_lists`.
        blend_depths: also blend ``depths`` as one more channel (gsplat's "ED" numerator).

    Returns:
        ``[C, H, W, D]`` blended values and ``[C, H, W, 1]`` alpha, then with ``blend_depths`` the
        ``[C, H, W, 1]`` alpha-weighted sum of depths.
    """
    if not load_extension():
        raise RuntimeError(f"the C++ CPU renderer is not available: {extension_info().get('error')}")
    if colors.dtype not in _SUFFIX:
        raise ValueError(f"the cpu backend renders float32 or float64, got {colors.dtype}")
    c_num, n_num = radii.shape
    d = colors.shape[-1]
    channels = d + int(blend_depths)
    if width <= 0 or height <= 0:  # nothing to draw (and no tiles to list)
        # Zero gradients (not None) for every input, as a render that draws nothing elsewhere gives.
        link = 0.0 * (colors.sum() + opacities.sum() + means2d.sum() + conics.sum())
        empty = colors.new_zeros(c_num, max(height, 0), max(width, 0), channels) + link
        outs = (empty[..., :d], empty[..., :1] * 0.0)
        return (*outs, empty[..., d:] + 0.0 * depths.sum()) if blend_depths else outs
    lists = _lists(means2d, radii, depths, width, height, channels, max_list_bytes)
    # Broadcast / expanded inputs are copied once here; reshape of a contiguous tensor is free.
    outs = _RasterizeCPU.apply(
        means2d.reshape(c_num * n_num, 2).contiguous(),
        conics.reshape(c_num * n_num, 3).contiguous(),
        opacities.expand(c_num, n_num).reshape(-1).contiguous(),
        _flat_colors(colors, c_num * n_num, d),
        depths.reshape(c_num * n_num).contiguous() if blend_depths else None,
        lists,
        c_num,
        width,
        height,
    )
    if blend_depths:
        img, alpha, depth_sum = outs
        return img, alpha[..., None], depth_sum[..., None]
    img, alpha = outs
    return img, alpha[..., None]


# --------------------------------------------------------------------------- full render
def _all_finite(t: Tensor) -> bool:
    """Whether every entry is finite, in one reduction when it is (NaN or inf make the sum non-finite)."""
    t = t.detach()
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _finite_rows(t: Tensor) -> Tensor:
    return torch.isfinite(t.detach().reshape(t.shape[0], -1)).all(-1)


# gsplat.rasterization's arguments: the CPU backend of render() takes what the CUDA one takes.
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
    radii, depths = proj.radii, proj.depths
    with torch.no_grad():
        if not all_finite:
            radii = torch.where(valid, radii, torch.zeros_like(radii))
        if not (_all_finite(proj.means2d) and _all_finite(proj.conics)):  # overflow in the projection
            finite = torch.isfinite(proj.means2d).all(-1) & torch.isfinite(proj.conics).all(-1)
            radii = torch.where(finite, radii, torch.zeros_like(radii))
    if not (_all_finite(colors) and _all_finite(depths)):  # NaN / inf colours, features or depths: culled too
        finite_values = torch.isfinite(colors.detach()).all(-1) & torch.isfinite(depths.detach())
        radii = torch.where(finite_values, radii, torch.zeros_like(radii))
        colors = torch.where(finite_values[..., None], colors, torch.zeros_like(colors))
        depths = torch.where(finite_values, depths, torch.zeros_like(depths))
    # Depth rides along as one more blended channel inside the kernels (gsplat's "RGB+ED").
    img, alpha, depth_sum = rasterize_cpu(
        proj.means2d, proj.conics, opacities, colors, radii, depths, width, height, max_list_bytes=max_list_bytes,
        blend_depths=True,
    )  # fmt: skip
    depth = depth_sum / alpha.clamp_min(1e-10)
    return img, depth, alpha, proj.means2d, radii
