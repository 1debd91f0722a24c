"""``render(gaussians, cameras)``: RGB, semantic features, expected depth and alpha in one pass.

Three backends with the same semantics:

- ``"gsplat"``: gsplat 1.4.0's CUDA ``rasterization`` (the version nerfstudio 1.1.5 pins), one call
  for all cameras, blending ``[rgb | features | depth]`` as one colour tensor (``render_mode="RGB+ED"``).
- ``"cpu"``: :mod:`ff3r_ns.core.render_cpu`, the same projection, tile lists and compositing (forward and
  backward) in a small C++ library compiled on first use; the CPU default when it builds.
- ``"torch"``: :mod:`ff3r_ns.core.render_torch`, a pure-torch reimplementation of the same rules: the slow,
  obviously correct reference the others are tested against (and the CPU fallback).

Colours are evaluated from SH per camera in torch (:func:`ff3r_ns.core.sh.eval_sh`) for both
backends, so the only difference between them is the rasterizer itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ff3r_ns.core.cameras import Cameras
from ff3r_ns.core.gaussians import Gaussians
from ff3r_ns.core.render_torch import project_gaussians, quat_scale_to_covar, rasterize_torch
from ff3r_ns.core.sh import MAX_SH_DEGREE, eval_sh

BACKENDS = ("auto", "gsplat", "cpu", "torch")
EPS2D = 0.3  # gsplat's default 2D blur (px^2), also used by splatfacto


@dataclass
class RenderOutput:
    """Rendered images of ``C`` cameras.

    Attributes:
        rgb: ``[C, H, W, 3]`` colour, background composited under it.
        features: ``[C, H, W, F]`` alpha-weighted sum of Gaussian features (no background, not
            normalised), or None when the Gaussians have no features or they were not requested.
        depth: ``[C, H, W, 1]`` expected z-depth ``sum(w z) / sum(w)`` (gsplat's "ED"; 0 where empty).
        alpha: ``[C, H, W, 1]`` accumulated opacity.
        means2d: ``[C, N, 2]`` projected centres in pixels, the tensor whose gradient densification reads
            (gsplat's ``info["means2d"]``; call ``retain_grad()`` before backward), or None for an empty set.
        radii: ``[C, N]`` int screen radii in pixels, 0 where culled (gsplat's ``info["radii"]``), or None.
        absgrad: whether ``means2d.absgrad`` will hold the per-pixel sum of ``|dL/dmeans2d|`` after backward
            (asked for with ``absgrad=True``; only the gsplat backend provides it).
    """

    rgb: Tensor
    features: Optional[Tensor]
    depth: Tensor
    alpha: Tensor
    means2d: Optional[Tensor] = None
    radii: Optional[Tensor] = None
    absgrad: bool = False


# gsplat.rasterization's keyword arguments, which every backend below honours.
def render(
    gaussians: Gaussians,
    cameras: Cameras,
    *,
    backend: str = "auto",
    background: Optional[Tensor] = None,
    sh_degree: Optional[int] = None,
    render_features: bool = True,
    near: float = 0.01,
    far: float = 1e10,
    absgrad: bool = False,
) -> RenderOutput:
    """Render one set of Gaussians into ``C`` cameras of the same size.

    Differentiable with respect to every Gaussian attribute (means, quats, scales, opacities, sh,
    features) and to the background.

    Args:
        gaussians: one unbatched set (``means [N, 3]``...).
        cameras: ``C`` OpenCV cameras (``world_to_cam [C, 4, 4]``; a single ``[4, 4]`` camera is
            treated as ``C = 1``).
        backend: ``"gsplat"`` (CUDA tensors only), ``"cpu"`` (CPU tensors, the C++ renderer), ``"torch"``
            (any device, the reference) or ``"auto"`` (gsplat on CUDA, cpu on CPU when it builds, else torch).
        background: ``[3]`` or ``[C, 3]`` colour composited under ``rgb`` only:
            ``rgb = sum + (1 - alpha) * background``. None means black.
        sh_degree: SH degree to evaluate; None uses every coefficient present.
        render_features: also blend ``gaussians.features``.
        near, far: camera-z clipping planes.
        absgrad: also accumulate ``|dL/dmeans2d|`` per pixel into ``means2d.absgrad`` (gsplat backend only;
            ``RenderOutput.absgrad`` says whether it was done), as splatfacto's densification reads it.

    Returns:
        :class:`RenderOutput`.

    Example:
        >>> g = Gaussians.random(1000, feature_dim=8)
        >>> k = torch.tensor([[[64.0, 0, 32], [0, 64.0, 32], [0, 0, 1]]])
        >>> out = render(g, Cameras(torch.eye(4)[None], k, 64, 64), backend="torch")
        >>> out.rgb.shape, out.features.shape, out.depth.shape
        (torch.Size([1, 64, 64, 3]), torch.Size([1, 64, 64, 8]), torch.Size([1, 64, 64, 1]))
    """
    world_to_cam, intrinsics = _check_inputs(gaussians, cameras)
    backend = _resolve_backend(backend, gaussians)
    c_num, dtype = world_to_cam.shape[0], gaussians.means.dtype
    degree = gaussians.sh_degree if sh_degree is None else sh_degree
    if not 0 <= degree <= min(gaussians.sh_degree, MAX_SH_DEGREE):
        raise ValueError(f"sh_degree={sh_degree} but the Gaussians carry degree {gaussians.sh_degree} (max {MAX_SH_DEGREE})")
    bg = _check_background(background, c_num, gaussians.means)
    n_feat = gaussians.feature_dim if render_features else 0

    centres = cameras.to(dtype=dtype).cam_to_world[..., :3, 3].reshape(c_num, 3)
    dirs = gaussians.means[None] - centres[:, None]  # [C, N, 3]: camera -> Gaussian, as gsplat
    colors = _colors(gaussians, eval_sh(degree, gaussians.sh, dirs), c_num, n_feat)

    means2d = radii = None
    if gaussians.num == 0 or cameras.width == 0 or cameras.height == 0:
        blended = colors.new_zeros(c_num, cameras.height, cameras.width, colors.shape[-1]) + 0.0 * colors.sum()
        depth = alpha = blended[..., :1] * 0.0
    elif backend == "gsplat":
        blended, depth, alpha, means2d, radii = _render_gsplat(gaussians, world_to_cam, intrinsics, colors, cameras, near, far, absgrad)
    elif backend == "cpu":
        blended, depth, alpha, means2d, radii = _render_cpu(gaussians, world_to_cam, intrinsics, colors, cameras, near, far)
    else:
        blended, depth, alpha, means2d, radii = _render_torch(gaussians, world_to_cam, intrinsics, colors, cameras, near, far)

    out_rgb = blended[..., :3]
    if bg is not None:
        out_rgb = out_rgb + (1.0 - alpha) * bg[:, None, None, :]
    return RenderOutput(
        rgb=out_rgb,
        features=blended[..., 3:] if n_feat > 0 else None,
        depth=depth,
        alpha=alpha,
        means2d=means2d,
        radii=radii,
        absgrad=absgrad and backend == "gsplat" and means2d is not None,
    )


def _colors(gaussians: Gaussians, rgb: Tensor, c_num: int, n_feat: int) -> Tensor:
    """``[C, N, 3 + F]``: per-camera RGB and the features, blended as one colour.

    ``torch.cat`` of expanded (stride-0) inputs takes a slow path on CPU (4-20 ms for 150k Gaussians on two
    threads, against 0.5 ms for dense ones), so the camera axis is added after concatenating when it can be.
    """
    n = gaussians.num
    if n_feat == 0:
        return rgb.expand(c_num, n, 3)
    if rgb.ndim == 2 or rgb.shape[0] == 1:  # SH degree 0, or one camera: colours shared by every camera
        return torch.cat([rgb.reshape(n, 3), gaussians.features], dim=-1).expand(c_num, n, 3 + n_feat)
    return torch.cat([rgb, gaussians.features[None].expand(c_num, n, n_feat).contiguous()], dim=-1)


# Each backend returns (blended [C, H, W, D], depth, alpha, means2d [C, N, 2], radii [C, N]).
_BackendResult = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


# One signature for the three backends, so render() can pick any of them.
def _render_torch(
    gaussians: Gaussians, world_to_cam: Tensor, intrinsics: Tensor, colors: Tensor, cameras: Cameras, near: float, far: float
) -> _BackendResult:
    covars = quat_scale_to_covar(gaussians.quats, gaussians.scales)
    proj = project_gaussians(
        gaussians.means, covars, world_to_cam, intrinsics, cameras.width, cameras.height, eps2d=EPS2D, near=near, far=far
    )
    # Depth rides along as one more blended channel, like gsplat's "RGB+ED".
    values = torch.cat([colors, proj.depths[..., None]], dim=-1)
    img, alpha = rasterize_torch(proj, gaussians.opacities, values, cameras.width, cameras.height)
    depth = img[..., -1:] / alpha.clamp_min(1e-10)
    return img[..., :-1], depth, alpha, proj.means2d, proj.radii


# One signature for the three backends, so render() can pick any of them.
def _render_cpu(
    gaussians: Gaussians, world_to_cam: Tensor, intrinsics: Tensor, colors: Tensor, cameras: Cameras, near: float, far: float
) -> _BackendResult:
    from ff3r_ns.core.render_cpu import render_cpu  # lazy: compiles the C++ extension on first use

    return render_cpu(
        gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, colors, world_to_cam, intrinsics,
        cameras.width, cameras.height, eps2d=EPS2D, near=near, far=far,
    )  # fmt: skip


# One signature for the three backends, so render() can pick any of them.
def _render_gsplat(
    gaussians: Gaussians, world_to_cam: Tensor, intrinsics: Tensor, colors: Tensor, cameras: Cameras, near: float,
    far: float, absgrad: bool = False,
) -> _BackendResult:
    from gsplat import rasterization  # lazy: compiles CUDA code on first use

    if gaussians.means.dtype != torch.float32:
        raise ValueError(f"the gsplat backend needs float32 Gaussians, got {gaussians.means.dtype}")
    # sh_degree=None: colors are final values; gsplat pads channel counts it has no kernel for.
    # packed=False (as splatfacto): info's means2d and radii are dense [C, N], the layout the strategy reads.
    img, alpha, info = rasterization(
        means=gaussians.means,
        quats=gaussians.quats,
        scales=gaussians.scales,
        opacities=gaussians.opacities,
        colors=colors.contiguous(),
        viewmats=world_to_cam.float().contiguous(),
        Ks=intrinsics.float().contiguous(),
        width=cameras.width,
        height=cameras.height,
        near_plane=near,
        far_plane=far,
        eps2d=EPS2D,
        sh_degree=None,
        render_mode="RGB+ED",
        packed=False,
        absgrad=absgrad,
    )
    return img[..., :-1], img[..., -1:], alpha, info["means2d"], info["radii"]


# --------------------------------------------------------------------------- input checks
def _check_inputs(gaussians: Gaussians, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """Validate shapes and devices; return ``world_to_cam [C, 4, 4]`` and ``intrinsics [C, 3, 3]``."""
    if len(gaussians.batch_shape) != 0:
        raise ValueError(
            f"render() takes one unbatched set of Gaussians (means [N, 3]); got batch shape "
            f"{tuple(gaussians.batch_shape)}: render each set separately or call flatten()"
        )
    w2c, k = cameras.world_to_cam, cameras.intrinsics
    if w2c.ndim == 2:
        w2c, k = w2c[None], k[None]
    if w2c.ndim != 3:
        raise ValueError(f"render() needs cameras with world_to_cam [C, 4, 4], got {tuple(cameras.world_to_cam.shape)}")
    if w2c.shape[0] == 0:
        raise ValueError("render() needs at least one camera")
    if int(cameras.width) < 0 or int(cameras.height) < 0:
        raise ValueError(f"image size must not be negative, got {cameras.width} x {cameras.height}")
    if w2c.device != gaussians.device:
        raise ValueError(f"cameras are on {w2c.device} but Gaussians on {gaussians.device}")
    dtype = gaussians.means.dtype
    return w2c.to(dtype), k.to(dtype)


def _check_background(background: Optional[Tensor], c_num: int, like: Tensor) -> Optional[Tensor]:
    if background is None:
        return None
    if background.shape == (3,):
        return background.to(like)[None].expand(c_num, 3)
    if background.shape == (c_num, 3):
        return background.to(like)
    raise ValueError(f"background must be [3] or [C={c_num}, 3], got {tuple(background.shape)}")


def _resolve_backend(backend: str, gaussians: Gaussians) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    on_cuda, on_cpu = gaussians.device.type == "cuda", gaussians.device.type == "cpu"
    if backend == "auto":
        if on_cuda:
            return "gsplat"
        backend = "cpu" if on_cpu and gaussians.means.dtype in (torch.float32, torch.float64) else "torch"
    if backend == "gsplat" and not on_cuda:
        raise ValueError(
            f"backend='gsplat' needs CUDA tensors (gsplat has no CPU kernels), but the Gaussians are on "
            f"{gaussians.device}; use backend='cpu', 'torch' or 'auto' on CPU"
        )
    if backend == "cpu":
        if not on_cpu:
            raise ValueError(f"backend='cpu' needs CPU tensors, but the Gaussians are on {gaussians.device}")
        from ff3r_ns.core.render_cpu import is_available  # compiles on first use; warns once if it cannot

        if not is_available():
            return "torch"
    return backend
