"""Placing a feedforward prediction in a posed dataset's frame, view by view.

The network predicts, for every view, a depth map and pixel-aligned Gaussians in its own frame (the first
view's camera at an arbitrary scale), and cameras of its own. When the dataset has camera poses, those are
information the network did not have: a similarity fitted to the camera centres (:func:`align_cameras`)
carries every error of the predicted poses into the reconstruction, and views whose predicted poses are
off by tens of degrees then land in the wrong place.

Instead, each view's Gaussians are re-anchored to *its own* dataset camera:

1. express them in their predicted camera's frame (``x_cam = R_pred x + t_pred``), so only the predicted
   depth and the Gaussians' shape relative to the camera are kept;
2. re-cast every centre along the dataset camera's pixel ray at that depth (the dataset's intrinsics replace
   the predicted ones);
3. scale each view's depth by a factor ``s_i`` fitted so that the views agree photometrically
   (:func:`fit_view_scales`: a plane sweep over scale, each view against its nearest dataset cameras; the
   known baselines fix the absolute scale);
4. move the result into the world with the dataset's camera-to-world.

Rotations follow the camera (``q_world = q(R_ref^T R_pred) * q``) and scales follow the depth and the focal
change (``scale * s_i * f_pred / f_ref``), so a Gaussian keeps its footprint in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ff3r_ns.core.cameras import Cameras, mat_to_quat, pixel_grid
from ff3r_ns.core.gaussians import Gaussians, quat_multiply


@dataclass(frozen=True)
class ScaleFitConfig:
    """How :func:`fit_view_scales` searches each view's depth scale.

    Attributes:
        neighbours: dataset views each view is compared with (nearest camera centres).
        coarse_range: the coarse sweep covers ``[init / range, init * range]``.
        coarse_steps: log-spaced candidates of the coarse sweep.
        fine_steps: candidates of the fine sweep around the coarse minimum (one coarse step either side).
        truncation: photometric errors (mean absolute RGB difference) are capped here, and pixels that fall
            outside a neighbour count as this error, so neither occlusions nor leaving the view can win.
        max_pixels: pixels per view used by the sweep (a strided subset beyond this).
    """

    neighbours: int = 4
    coarse_range: float = 16.0
    coarse_steps: int = 25
    fine_steps: int = 9
    truncation: float = 0.15
    max_pixels: int = 2048


def nearest_views(cameras: Cameras, k: int) -> Tensor:
    """``[S, min(k, S - 1)]`` indices of each camera's nearest other cameras (by centre distance, ties broken by
    viewing direction)."""
    c = cameras.centers
    s = c.shape[0]
    k = min(k, s - 1)
    if k <= 0:
        return torch.zeros(s, 0, dtype=torch.long, device=c.device)
    fwd = cameras.cam_to_world[:, :3, 2]
    dist = torch.cdist(c[None].double(), c[None].double())[0]
    # Opposite-facing cameras share little: push them back (an angle term in units of the median spacing).
    spacing = dist.masked_fill(torch.eye(s, dtype=torch.bool, device=c.device), float("inf")).amin(-1).median()
    angle = 1.0 - (fwd @ fwd.T).double()
    score = dist + spacing.clamp_min(1e-12) * 4.0 * angle
    score.fill_diagonal_(float("inf"))
    return score.topk(k, dim=-1, largest=False).indices


def _ray_directions(cameras: Cameras, height: int, width: int) -> Tensor:
    """``[S, H*W, 3]`` camera-frame rays ``K^-1 [u, v, 1]`` (z = 1) at pixel centres, for cameras of size ``W x H``."""
    uv = pixel_grid(height, width, device=cameras.intrinsics.device, dtype=cameras.intrinsics.dtype).reshape(-1, 2)
    k = cameras.intrinsics
    x = (uv[None, :, 0] - k[:, 0, 2, None]) / k[:, 0, 0, None]
    y = (uv[None, :, 1] - k[:, 1, 2, None]) / k[:, 1, 1, None]
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


@torch.no_grad()
def fit_view_scales(
    depth: Tensor, images: Tensor, cameras: Cameras, init: float | Tensor, config: ScaleFitConfig = ScaleFitConfig()
) -> Tensor:
    """Per-view depth scales that make the views agree photometrically, at known cameras.

    For view ``i`` and candidate ``s``, every (sampled) pixel is lifted to ``s * depth`` along the camera's ray,
    projected into its nearest dataset views and compared with their colours; the error of a pixel is the
    smallest truncated mean absolute RGB difference over the neighbours (occlusions hide a point from some views,
    not from all). The scale with the lowest mean error wins: a coarse log-spaced sweep, then a finer one.

    Args:
        depth: ``[S, H, W]`` predicted z-depth (any common or per-view scale).
        images: ``[S, 3, H, W]`` the same views' colours in [0, 1].
        cameras: ``S`` dataset cameras of size ``W x H`` (intrinsics at this resolution).
        init: initial scale (scalar or ``[S]``), e.g. a similarity's scale; the sweep spans
            ``config.coarse_range`` around it.
        config: :class:`ScaleFitConfig`.

    Returns:
        ``[S]`` scales (``init`` for a view without neighbours).

    Example:
        >>> # two views of a textured plane at z = 2 whose depth is predicted as 1: the scale found is ~2
        >>> scales = fit_view_scales(depth, images, cameras, init=1.0)  # doctest: +SKIP
    """
    s_num, height, width = depth.shape
    dev, dt = depth.device, torch.float32
    init_t = torch.as_tensor(init, dtype=dt, device=dev).expand(s_num).clone()
    nbrs = nearest_views(cameras, config.neighbours)
    if nbrs.shape[1] == 0:
        return init_t
    rays = _ray_directions(cameras.to(dtype=dt), height, width)  # [S, P, 3]
    stride = max(1, math.ceil(height * width / config.max_pixels))
    pix = torch.arange(0, height * width, stride, device=dev)
    rays = rays[:, pix]
    z = depth.reshape(s_num, -1)[:, pix].to(dt)
    colours = images.reshape(s_num, 3, -1)[:, :, pix].to(dt)  # [S, 3, P]
    valid = torch.isfinite(z) & (z > 0)
    z = torch.where(valid, z, torch.zeros_like(z))

    log_r = math.log(config.coarse_range)
    coarse = torch.linspace(-log_r, log_r, config.coarse_steps, device=dev)
    best = _sweep(z, valid, rays, colours, images.to(dt), cameras, nbrs, init_t, coarse, config)
    step = 2 * log_r / (config.coarse_steps - 1)
    fine = torch.linspace(-step, step, config.fine_steps, device=dev)
    return _sweep(z, valid, rays, colours, images.to(dt), cameras, nbrs, best, fine, config)


# The tensors fit_view_scales prepares once and every candidate sweep reads; a private step of it.
def _sweep(
    z: Tensor, valid: Tensor, rays: Tensor, colours: Tensor, images: Tensor, cameras: Cameras, nbrs: Tensor,
    centre: Tensor, log_offsets: Tensor, config: ScaleFitConfig, max_elements: int = 1 << 23,
) -> Tensor:
    """The candidate ``centre * exp(offset)`` of lowest photometric error, per view (see :func:`fit_view_scales`).

    All views of a chunk at once (``max_elements`` bounds views x candidates x pixels): one loop per view cost
    two GPU round trips and ~60 small kernels each, most of the placement's time at 128 views.

    Shapes: ``z, valid [S, P]``, ``rays [S, P, 3]``, ``colours [S, 3, P]``, ``images [S, 3, H, W]``,
    ``nbrs [S, K]``, ``centre [S]``, ``log_offsets [M]``. Returns ``[S]``."""
    s_num, k_num = nbrs.shape
    height, width = images.shape[-2:]
    c2w = cameras.cam_to_world.to(z.dtype)
    w2c = cameras.world_to_cam.to(z.dtype)
    k_mat = cameras.intrinsics.to(z.dtype)
    m_num, p_num = log_offsets.numel(), z.shape[1]
    chunk = max(1, max_elements // max(1, m_num * p_num))
    out = []
    for a in range(0, s_num, chunk):
        v = slice(a, min(a + chunk, s_num))
        cand = centre[v, None] * log_offsets.exp()[None]  # [C, M]
        cam_pts = rays[v, None] * (cand[:, :, None, None] * z[v, None, :, None])  # [C, M, P, 3]
        world = cam_pts @ c2w[v, None, :3, :3].transpose(-1, -2) + c2w[v, None, None, :3, 3]
        err = torch.full(cand.shape + (p_num,), config.truncation, dtype=z.dtype, device=z.device)
        for k in range(k_num):
            j = nbrs[v, k]  # [C]
            pj = world @ w2c[j, None, :3, :3].transpose(-1, -2) + w2c[j, None, None, :3, 3]  # [C, M, P, 3]
            zj = pj[..., 2]
            uv = (pj @ k_mat[j, None].transpose(-1, -2))[..., :2] / zj.clamp_min(1e-8)[..., None]
            inside = (zj > 1e-6) & (uv[..., 0] >= 0) & (uv[..., 0] <= width) & (uv[..., 1] >= 0) & (uv[..., 1] <= height)
            grid = torch.stack([uv[..., 0] / width * 2 - 1, uv[..., 1] / height * 2 - 1], dim=-1)  # [C, M, P, 2]
            sampled = F.grid_sample(images[j], grid.clamp(-2, 2), align_corners=False)  # [C, 3, M, P]
            diff = (sampled - colours[v, :, None, :]).abs().mean(1).clamp_max(config.truncation)
            err = torch.minimum(err, torch.where(inside, diff, torch.full_like(diff, config.truncation)))
        score = (err * valid[v, None]).sum(-1)  # [C, M]
        out.append(cand.gather(1, score.argmin(1, keepdim=True))[:, 0])
    return torch.cat(out)


@dataclass
class Placement:
    """A prediction re-anchored to the dataset's cameras (see the module docstring).

    Attributes:
        gaussians: batch shape ``[S]``, in the dataset's frame.
        depth: ``[S, H, W]`` the predicted depth times each view's scale (dataset units).
        scales: ``[S]`` the fitted per-view depth scales.
    """

    gaussians: Gaussians
    depth: Tensor
    scales: Tensor


def place_views(
    gaussians: Gaussians, depth: Tensor, predicted: Cameras, reference: Cameras, view_scales: Tensor
) -> Placement:
    """Re-anchor each view's pixel-aligned Gaussians to its dataset camera.

    Args:
        gaussians: pixel-aligned Gaussians with batch shape ``[S]``, ``N = H * W`` in row-major pixel order,
            centres on the predicted depth (:class:`~ff3r_ns.core.network.model.FF3ROutput`).
        depth: ``[S, H, W]`` the predicted z-depth.
        predicted: the ``S`` predicted cameras (size ``W x H``).
        reference: the ``S`` dataset cameras, at the same size ``W x H``.
        view_scales: ``[S]`` depth scale of each view (:func:`fit_view_scales`).

    Returns:
        :class:`Placement`.
    """
    s_num, height, width = depth.shape
    if gaussians.batch_shape != (s_num,) or gaussians.means.shape[1] != height * width:
        raise ValueError(f"place_views needs pixel-aligned Gaussians [S={s_num}, N={height * width}], got {tuple(gaussians.means.shape)}")
    dt = gaussians.means.dtype
    ref = reference.to(dtype=dt)
    pred = predicted.to(dtype=dt)
    scale = view_scales.to(dt)
    z = depth.reshape(s_num, -1, 1).to(dt) * scale[:, None, None]
    cam_pts = _ray_directions(ref, height, width) * z  # [S, N, 3]
    c2w = ref.cam_to_world
    means = cam_pts @ c2w[:, :3, :3].transpose(-1, -2) + c2w[:, None, :3, 3]
    # The rotation that takes a predicted-world direction to the dataset's world, through the view's camera.
    rot = c2w[:, :3, :3] @ pred.world_to_cam[:, :3, :3]
    xyzw = mat_to_quat(rot)
    wxyz = torch.cat([xyzw[:, 3:], xyzw[:, :3]], dim=-1)[:, None].expand_as(gaussians.quats)
    f_pred = 0.5 * (pred.intrinsics[:, 0, 0] + pred.intrinsics[:, 1, 1])
    f_ref = 0.5 * (ref.intrinsics[:, 0, 0] + ref.intrinsics[:, 1, 1])
    size = (scale * f_pred / f_ref)[:, None, None]
    placed = Gaussians(
        means=means,
        quats=quat_multiply(wxyz, gaussians.quats),
        scales=gaussians.scales * size,
        opacities=gaussians.opacities,
        sh=gaussians.sh,  # view-dependent colour is left in the predicted frame's orientation (degree 0 in practice)
        features=gaussians.features,
        confidence=gaussians.confidence,
    )
    return Placement(placed, z.reshape(s_num, height, width), scale)
