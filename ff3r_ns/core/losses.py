"""Loss terms of FF3R's annotation-free training, one small function each, weights and switches in :class:`LossConfig`.

Stage: **feature training** (``ff3r-train``). Every default term uses only the input images and a 2D
teacher's features: no poses, depth or labels (docs/architecture.md, "Annotation-free training").
Renderings are always made at the network's own predicted cameras (AnySplat, https://arxiv.org/abs/2505.23716),
so no ground-truth pose is needed; a Monodepth2-style photometric reprojection between the context views keeps
the predicted geometry multi-view consistent. The optional distillation terms need a frozen *geometry teacher
network* and are therefore outside the annotation-free setting; they are off by default.

Conventions: images and feature maps are channels-last ``[S, H, W, C]``; depth ``[S, H, W]``; the
supervised losses of the geometry pretraining stage (``ff3r-pretrain-geometry``) live beside them, in
:mod:`ff3r_ns.core.geometry_losses`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ff3r_ns.core.cameras import Cameras, project_points, unproject_depth
from ff3r_ns.core.metrics import ssim


@dataclass
class LossConfig:
    """Weights and on/off switches of the training losses (a term that is off is not computed)."""

    photometric: bool = True
    """Photometric loss between the rendered context views and the input images."""
    photometric_weight: float = 1.0
    """Weight of the photometric term."""
    photometric_kind: Literal["l1_ssim", "mse"] = "l1_ssim"
    """``l1_ssim``: 3DGS's ``(1 - w) L1 + w (1 - SSIM)``; ``mse``: mean squared error (AnySplat, pixelSplat)."""
    ssim_weight: float = 0.2
    """``w`` of the ``l1_ssim`` loss (3DGS: 0.2)."""
    feature: bool = True
    """Feature-rendering loss ``1 - cos(decoded rendered feature, teacher feature)``."""
    feature_weight: float = 1.0
    """Weight of the feature-rendering term."""
    feature_resolution: float = 0.5
    """Fraction of the network resolution at which feature losses are evaluated (LSM: 0.5)."""
    warping: bool = True
    """Geometry-guided feature warping (:func:`feature_warping_loss`); ``--no-warping`` for the ablation."""
    warping_weight: float = 0.5
    """Weight of the warping term."""
    warping_window: int = 2
    """Warp each view into the views at most this many positions away in the context (0: all pairs)."""
    warping_depth_tolerance: float = 0.05
    """Occlusion test: a warped pixel is visible when its depth in the target view is within this relative
    tolerance of the target view's predicted depth."""
    warping_detach_geometry: bool = True
    """Stop gradients of the warping term into depth and cameras: the geometry guides the features, the
    features do not bend the geometry."""
    reprojection: bool = True
    """Photometric reprojection between context views (:func:`reprojection_loss`): keeps predicted depth and
    cameras multi-view consistent, which rendering each view at its own predicted camera does not enforce."""
    reprojection_weight: float = 0.5
    """Weight of the reprojection term."""
    reprojection_window: int = 1
    """Reproject each view into the views at most this many positions away (0: all pairs)."""
    distillation: bool = False
    """Distil cameras and depth from a frozen geometry teacher network (AnySplat). NOT annotation-free in
    spirit: it needs a pretrained geometry model. Off by default."""
    distill_pose_weight: float = 10.0
    """Weight of the Huber loss on pose encodings (AnySplat: 10)."""
    distill_depth_weight: float = 1.0
    """Weight of the depth distillation loss (AnySplat: 1)."""
    distill_depth_kind: Literal["mse", "l1"] = "mse"
    """Depth distillation penalty."""
    huber_delta: float = 1.0
    """Transition point of the Huber loss on pose encodings."""

    def __post_init__(self) -> None:
        if not 0.0 < self.feature_resolution <= 1.0:
            raise ValueError(f"LossConfig.feature_resolution must be in (0, 1], got {self.feature_resolution}")
        if not 0.0 <= self.ssim_weight <= 1.0:
            raise ValueError(f"LossConfig.ssim_weight must be in [0, 1], got {self.ssim_weight}")
        if self.warping_depth_tolerance <= 0:
            raise ValueError(f"LossConfig.warping_depth_tolerance must be > 0, got {self.warping_depth_tolerance}")
        if self.warping_window < 0 or self.reprojection_window < 0:
            raise ValueError(f"LossConfig: warping_window and reprojection_window must be >= 0, got {self.warping_window}, {self.reprojection_window}")
        if self.photometric_kind not in ("l1_ssim", "mse"):
            raise ValueError(f"LossConfig.photometric_kind must be 'l1_ssim' or 'mse', got {self.photometric_kind!r}")
        if self.distill_depth_kind not in ("mse", "l1"):
            raise ValueError(f"LossConfig.distill_depth_kind must be 'mse' or 'l1', got {self.distill_depth_kind!r}")


@dataclass
class LossTerms:
    """Unweighted loss values of one step (0-dim tensors; a term that is off is ``None``) and their weighted total.

    Attributes:
        total: weighted sum of the terms that are on (what is back-propagated).
        photometric, feature, warping, reprojection, distill_pose, distill_depth: the unweighted terms.
        warping_visible, reprojection_visible: fraction of warped pixels that passed the visibility test
            (diagnostics, no gradient).
    """

    total: Tensor
    photometric: Optional[Tensor] = None
    feature: Optional[Tensor] = None
    warping: Optional[Tensor] = None
    reprojection: Optional[Tensor] = None
    distill_pose: Optional[Tensor] = None
    distill_depth: Optional[Tensor] = None
    warping_visible: Optional[Tensor] = None
    reprojection_visible: Optional[Tensor] = None

    def scalars(self) -> dict[str, float]:
        """``{name: value}`` of every computed term, for logging."""
        return {f.name: float(getattr(self, f.name).detach()) for f in fields(self) if getattr(self, f.name) is not None}

    @staticmethod
    def mean(terms: "list[LossTerms]") -> "LossTerms":
        """Term-wise mean over scenes (a term counts where it was computed)."""
        if not terms:
            raise ValueError("LossTerms.mean needs at least one LossTerms")
        out = {}
        for f in fields(LossTerms):
            values = [getattr(t, f.name) for t in terms if getattr(t, f.name) is not None]
            out[f.name] = torch.stack(values).mean() if values else None
        return LossTerms(**out)


# --------------------------------------------------------------------------- photometric
def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error."""
    return (pred - target).abs().mean()


def mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error."""
    return (pred - target).square().mean()


def ssim_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``1 - SSIM`` averaged over the batch."""
    return 1.0 - ssim(pred, target).mean()


def photometric_loss(pred: Tensor, target: Tensor, ssim_weight: float = 0.2, kind: str = "l1_ssim") -> Tensor:
    """3DGS's photometric loss ``(1 - w) * L1 + w * (1 - SSIM)`` (Kerbl et al. 2023, eq. 7), or MSE.

    Args:
        pred, target: ``[S, H, W, 3]`` in [0, 1].
        ssim_weight: ``w`` (``l1_ssim`` only).
        kind: ``"l1_ssim"`` or ``"mse"``.

    Returns:
        0-dim loss; 0 for identical images.
    """
    if pred.shape != target.shape:
        raise ValueError(f"photometric_loss: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    if kind == "mse":
        return mse_loss(pred, target)
    if kind != "l1_ssim":
        raise ValueError(f"photometric_loss: kind must be 'l1_ssim' or 'mse', got {kind!r}")
    loss = (1.0 - ssim_weight) * l1_loss(pred, target)
    if ssim_weight > 0:
        loss = loss + ssim_weight * ssim_loss(pred, target)
    return loss


def scale_ratio_loss(scales: Tensor, max_ratio: float = 10.0) -> Tensor:
    """PhysGaussian's penalty on needle-like Gaussians: mean of ``max(s_max / s_min, r) - r`` (splatfacto's
    ``use_scale_regularization``; splatfacto weights it by 0.1).

    Args:
        scales: ``[N, 3]`` positive scales.
        max_ratio: ``r``, the largest ratio of largest to smallest axis that costs nothing.

    Returns:
        0-dim loss; 0 when no Gaussian is more elongated than ``r``.
    """
    ratio = scales.amax(dim=-1) / scales.amin(dim=-1).clamp_min(1e-12)
    return (torch.clamp_min(ratio, max_ratio) - max_ratio).mean() if scales.numel() else scales.new_zeros(())


# --------------------------------------------------------------------------- features
def resize_maps(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Area-resize channels-last maps ``[S, H, W, C]`` to ``[S, h, w, C]`` (identity when the size matches).

    Area averaging commutes with the (affine) feature decoder, so low-dimensional rendered features can be
    downsampled *before* decoding at no loss of exactness.
    """
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    return F.interpolate(x.permute(0, 3, 1, 2), size=size, mode="area").permute(0, 2, 3, 1)


def feature_size(height: int, width: int, fraction: float) -> tuple[int, int]:
    """``(h, w)`` of the feature-loss resolution: ``fraction`` of ``(height, width)``, at least 1 pixel."""
    return max(1, int(round(height * fraction))), max(1, int(round(width * fraction)))


def cosine_distance(pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Mean of ``1 - cos(pred, target)`` over the last dimension.

    Args:
        pred, target: ``[..., D]``.
        mask: optional ``[...]`` weights (bool or float); the mean is taken over the masked pixels
            (0 when the mask is empty).

    Returns:
        0-dim loss in [0, 2].
    """
    if pred.shape != target.shape:
        raise ValueError(f"cosine_distance: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    dist = 1.0 - F.cosine_similarity(pred, target, dim=-1, eps=1e-8)
    if mask is None:
        return dist.mean()
    w = mask.to(dist.dtype)
    return (dist * w).sum() / w.sum().clamp_min(1.0)


def feature_rendering_loss(decoded: Tensor, teacher: Tensor) -> Tensor:
    """LSM / Uni3R's feature loss ``1 - cos(decoded rendered feature, teacher feature)``, averaged over pixels.

    Args:
        decoded: ``[S, h, w, D]`` rendered low-dimensional features lifted by the feature decoder.
        teacher: ``[S, h, w, D]`` teacher features of the same views at the same resolution.

    Returns:
        0-dim loss; 0 when every decoded feature points along its teacher feature.
    """
    return cosine_distance(decoded, teacher)


@dataclass
class WarpResult:
    """Features of source views carried into target views through predicted depth and cameras.

    Attributes:
        source: ``[P]`` source view index ``i`` of each pair.
        target: ``[P]`` target view index ``j`` of each pair.
        uv: ``[P, h, w, 2]`` where each pixel of view ``i`` lands in view ``j`` (pixel units).
        visible: ``[P, h, w]`` bool: in front of camera ``j``, inside its image, and not occluded
            (relative depth difference to ``j``'s predicted depth within the tolerance).
    """

    source: Tensor
    target: Tensor
    uv: Tensor
    visible: Tensor


def view_pairs(num_views: int, window: int = 0, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Ordered pairs ``(i, j)``, ``i != j``, with ``|i - j| <= window`` (``window = 0``: all pairs)."""
    idx = torch.arange(num_views, device=device)
    i, j = torch.meshgrid(idx, idx, indexing="ij")
    keep = i != j
    if window > 0:
        keep &= (i - j).abs() <= window
    return i[keep], j[keep]


def _sample(maps: Tensor, uv: Tensor, mode: str = "bilinear") -> Tensor:
    """Sample channels-last ``maps [P, H, W, C]`` at pixel coordinates ``uv [P, h, w, 2]`` -> ``[P, h, w, C]``."""
    height, width = maps.shape[1:3]
    # Pixel centres sit at +0.5 (cameras.pixel_grid), which is align_corners=False's convention.
    grid = torch.stack([uv[..., 0] / width * 2 - 1, uv[..., 1] / height * 2 - 1], dim=-1)
    out = F.grid_sample(maps.permute(0, 3, 1, 2), grid.to(maps.dtype), mode=mode, padding_mode="border", align_corners=False)
    return out.permute(0, 2, 3, 1)


def warp_views(depth: Tensor, cameras: Cameras, pairs: tuple[Tensor, Tensor], depth_tolerance: float = 0.05) -> WarpResult:
    """Reproject every pixel of view ``i`` into view ``j`` through ``i``'s depth, with an occlusion test.

    Pixel ``p`` of view ``i`` is lifted to the world with ``depth[i]`` and camera ``i``
    (:func:`~ff3r_ns.core.cameras.unproject_depth`), projected into camera ``j`` at ``uv`` with z-depth
    ``z``, and kept when ``z > 0``, ``uv`` falls inside the image, and
    ``|z - depth[j](uv)| <= depth_tolerance * depth[j](uv)`` (otherwise something nearer occludes it in
    ``j``, or it is a depth outlier).

    Args:
        depth: ``[S, h, w]`` z-depth.
        cameras: ``S`` cameras of size ``w x h``.
        pairs: ``(source [P], target [P])`` view indices, e.g. from :func:`view_pairs`.
        depth_tolerance: relative depth tolerance of the occlusion test.

    Returns:
        :class:`WarpResult`.
    """
    s, h, w = depth.shape
    if len(cameras) != s or (cameras.width, cameras.height) != (w, h):
        raise ValueError(f"warp_views: {len(cameras)} cameras of {cameras.width}x{cameras.height} for depth {tuple(depth.shape)}")
    src, dst = pairs
    points = unproject_depth(depth, cameras)  # [S, h, w, 3]
    uv, z = project_points(points[src].reshape(len(src), h * w, 3), cameras[dst])
    uv, z = uv.reshape(-1, h, w, 2), z.reshape(-1, h, w)
    seen = _sample(depth[dst][..., None], uv, mode="bilinear")[..., 0]
    inside = (uv[..., 0] >= 0) & (uv[..., 0] <= w) & (uv[..., 1] >= 0) & (uv[..., 1] <= h)
    visible = (z > 1e-6) & inside & ((z - seen).abs() <= depth_tolerance * seen.abs())
    return WarpResult(src, dst, uv, visible)


def feature_warping_loss(
    decoded: Tensor, teacher: Tensor, depth: Tensor, cameras: Cameras, window: int = 0, depth_tolerance: float = 0.05,
) -> tuple[Tensor, Tensor]:
    """Geometry-guided feature warping: view ``i``'s teacher features, warped into view ``j``, must match the
    features the network renders in view ``j``.

    For every ordered pair ``(i, j)`` (see :func:`view_pairs`) and every pixel ``p`` of view ``i`` visible in
    view ``j`` (:func:`warp_views`: predicted depth, predicted cameras, occlusion test)::

        loss = mean over (i, j, p) visible of  1 - cos( decoded_j(uv_ij(p)),  teacher_i(p) )

    with ``decoded_j`` bilinearly sampled at the reprojected location. The rendered features of one view
    are thus pulled towards the teacher features of the *same surface point* seen from the other views,
    so per-view inconsistencies of the 2D teacher (noise, view-dependent bias) average out across views
    (FF3R's motivation), and occluded pixels contribute nothing. It is 0 when the decoded features of
    view ``j`` agree in direction with every other view's teacher features at corresponding points, and
    grows as they disagree.

    Args:
        decoded: ``[S, h, w, D]`` decoded rendered features of the context views.
        teacher: ``[S, h, w, D]`` teacher features of the same views.
        depth: ``[S, h, w]`` predicted z-depth (detach it to keep gradients out of the geometry).
        cameras: ``S`` predicted cameras of size ``w x h``.
        window: pairs ``|i - j| <= window`` (0: all ordered pairs).
        depth_tolerance: relative tolerance of the occlusion test.

    Returns:
        ``(loss, visible_fraction)``: 0-dim tensors; the loss is 0 when no pixel is visible (or ``S = 1``).

    Example:
        >>> k = torch.tensor([[10.0, 0, 4], [0, 10.0, 4], [0, 0, 1]]).expand(2, 3, 3)
        >>> cams = Cameras(torch.eye(4).expand(2, 4, 4), k, 8, 8)
        >>> f = torch.randn(1, 8, 8, 4).expand(2, -1, -1, -1)
        >>> loss, vis = feature_warping_loss(f, f, torch.ones(2, 8, 8), cams)
        >>> float(loss) < 1e-6, float(vis)
        (True, 1.0)
    """
    s = decoded.shape[0]
    if decoded.shape != teacher.shape or decoded.shape[:3] != depth.shape:
        raise ValueError(
            f"feature_warping_loss: decoded {tuple(decoded.shape)}, teacher {tuple(teacher.shape)} and depth "
            f"{tuple(depth.shape)} must agree on [S, h, w]"
        )
    if s < 2:
        zero = decoded.sum() * 0.0
        return zero, zero.detach()
    pairs = view_pairs(s, window, device=decoded.device)
    warp = warp_views(depth, cameras, pairs, depth_tolerance)
    rendered_at = _sample(decoded[warp.target], warp.uv)  # [P, h, w, D]: view j's features where i's pixels land
    loss = cosine_distance(rendered_at, teacher[warp.source], warp.visible)
    return loss, warp.visible.float().mean().detach()


def reprojection_loss(
    images: Tensor, depth: Tensor, cameras: Cameras, window: int = 1, depth_tolerance: float = 0.05,
) -> tuple[Tensor, Tensor]:
    """Photometric reprojection between context views, as in self-supervised depth (Monodepth2,
    https://arxiv.org/abs/1806.01260): ``mean |image_i(p) - image_j(uv_ij(p))|`` over pixels of view ``i``
    visible in view ``j``.

    Annotation-free geometry signal. Rendering every context view at its own predicted camera (the
    photometric term) barely constrains geometry: a pixel-aligned Gaussian projects back onto its own
    pixel at any depth. Here the gradient reaches depth and cameras through the sampling location
    ``uv_ij`` (bilinear sampling of ``image_j``). The visibility mask (:func:`warp_views`) is a hard test with
    no gradient, so nothing rewards hiding pixels from the other views.

    Args:
        images: ``[S, H, W, 3]`` context views.
        depth: ``[S, H, W]`` predicted z-depth (gradients flow into it).
        cameras: ``S`` predicted cameras of size ``W x H`` (gradients flow into them).
        window: pairs ``|i - j| <= window`` (0: all).
        depth_tolerance: relative tolerance of the occlusion test.

    Returns:
        ``(loss, visible_fraction)``; 0 for ``S = 1`` or when nothing is visible, and 0 when the geometry
        maps every visible pixel onto a pixel of the same colour.
    """
    s = images.shape[0]
    if images.shape[:3] != depth.shape:
        raise ValueError(f"reprojection_loss: images {tuple(images.shape)} and depth {tuple(depth.shape)} must agree on [S, H, W]")
    if s < 2:
        zero = depth.sum() * 0.0
        return zero, zero.detach()
    warp = warp_views(depth, cameras, view_pairs(s, window, device=images.device), depth_tolerance)  # differentiable uv
    seen = _sample(images[warp.target], warp.uv)
    err = (seen - images[warp.source]).abs().mean(-1)
    w = warp.visible.to(err.dtype)
    return (err * w).sum() / w.sum().clamp_min(1.0), warp.visible.float().mean()


# --------------------------------------------------------------------------- optional distillation
def pose_distillation_loss(pred: Tensor, teacher: Tensor, delta: float = 1.0) -> Tensor:
    """Huber loss between pose encodings ``[S, 9]`` of the student and a frozen geometry teacher (AnySplat).

    Not annotation-free: the teacher is a pretrained geometry network.
    """
    if pred.shape != teacher.shape:
        raise ValueError(f"pose_distillation_loss: shapes differ, {tuple(pred.shape)} vs {tuple(teacher.shape)}")
    return F.huber_loss(pred, teacher.detach(), delta=delta)


def depth_distillation_loss(pred: Tensor, teacher: Tensor, kind: str = "mse", mask: Optional[Tensor] = None) -> Tensor:
    """MSE (AnySplat) or L1 between student and frozen-teacher depth maps ``[S, H, W]`` (optionally masked).

    Not annotation-free: the teacher is a pretrained geometry network.
    """
    if pred.shape != teacher.shape:
        raise ValueError(f"depth_distillation_loss: shapes differ, {tuple(pred.shape)} vs {tuple(teacher.shape)}")
    diff = pred - teacher.detach()
    err = diff.square() if kind == "mse" else diff.abs() if kind == "l1" else None
    if err is None:
        raise ValueError(f"depth_distillation_loss: kind must be 'mse' or 'l1', got {kind!r}")
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype)
    return (err * m).sum() / m.sum().clamp_min(1.0)


# --------------------------------------------------------------------------- all terms
@dataclass
class LossInputs:
    """What the losses of one scene need (all at the network's input resolution ``H x W``).

    Attributes:
        images: ``[S, H, W, 3]`` input views in [0, 1].
        rendered_rgb: ``[S, H, W, 3]`` the Gaussians rendered at the predicted cameras.
        rendered_features: ``[S, H, W, F]`` rendered low-dimensional features, or None (feature terms off).
        teacher: ``[S, h, w, D]`` teacher features at the feature-loss resolution, or None.
        depth: ``[S, H, W]`` predicted z-depth.
        cameras: ``S`` predicted cameras of size ``W x H``.
        pose_enc: ``[S, 9]`` predicted pose encodings.
        teacher_pose_enc: ``[S, 9]`` frozen geometry teacher's pose encodings (distillation only).
        teacher_depth: ``[S, H, W]`` frozen geometry teacher's depth (distillation only).
    """

    images: Tensor
    rendered_rgb: Tensor
    rendered_features: Optional[Tensor]
    teacher: Optional[Tensor]
    depth: Tensor
    cameras: Cameras
    pose_enc: Tensor
    teacher_pose_enc: Optional[Tensor] = None
    teacher_depth: Optional[Tensor] = None


def compute_losses(config: LossConfig, inputs: LossInputs, decoder: torch.nn.Module) -> LossTerms:
    """Every term that is switched on in ``config``, and their weighted total.

    Feature terms run at ``config.feature_resolution``: rendered features are area-downsampled *then*
    decoded (exact, the decoder being affine); the teacher is expected at that size already.

    Args:
        config: :class:`LossConfig`.
        inputs: :class:`LossInputs`.
        decoder: the network's :class:`~ff3r_ns.core.network.gaussian_head.FeatureDecoder` (``[..., F] -> [..., D]``).

    Returns:
        :class:`LossTerms`.
    """
    total = inputs.rendered_rgb.new_zeros(())
    terms: dict[str, Tensor] = {}
    if config.photometric:
        terms["photometric"] = photometric_loss(inputs.rendered_rgb, inputs.images, config.ssim_weight, config.photometric_kind)
        total = total + config.photometric_weight * terms["photometric"]
    if config.feature or config.warping:
        if inputs.rendered_features is None or inputs.teacher is None:
            raise ValueError("compute_losses: the feature and warping terms need rendered features and teacher features")
        size = tuple(inputs.teacher.shape[1:3])
        decoded = decoder(resize_maps(inputs.rendered_features, size))
        if config.feature:
            terms["feature"] = feature_rendering_loss(decoded, inputs.teacher)
            total = total + config.feature_weight * terms["feature"]
        if config.warping:
            depth = resize_maps(inputs.depth[..., None], size)[..., 0]
            cameras = inputs.cameras.resized(size[1], size[0])
            if config.warping_detach_geometry:
                depth = depth.detach()
                cameras = Cameras(cameras.world_to_cam.detach(), cameras.intrinsics.detach(), cameras.width, cameras.height)
            terms["warping"], terms["warping_visible"] = feature_warping_loss(
                decoded, inputs.teacher, depth, cameras, config.warping_window, config.warping_depth_tolerance
            )
            total = total + config.warping_weight * terms["warping"]
    if config.reprojection:
        terms["reprojection"], terms["reprojection_visible"] = reprojection_loss(
            inputs.images, inputs.depth, inputs.cameras, config.reprojection_window, config.warping_depth_tolerance
        )
        total = total + config.reprojection_weight * terms["reprojection"]
    if config.distillation:
        if inputs.teacher_pose_enc is None or inputs.teacher_depth is None:
            raise ValueError("compute_losses: distillation is on but no geometry-teacher predictions were given")
        terms["distill_pose"] = pose_distillation_loss(inputs.pose_enc, inputs.teacher_pose_enc, config.huber_delta)
        terms["distill_depth"] = depth_distillation_loss(inputs.depth, inputs.teacher_depth, config.distill_depth_kind)
        total = total + config.distill_pose_weight * terms["distill_pose"] + config.distill_depth_weight * terms["distill_depth"]
    return LossTerms(total=total, **terms)
