"""Supervised geometry losses of the **geometry pretraining stage** only (``ff3r-pretrain-geometry``).

This stage plays the part of VGGT's supervised pretraining (https://arxiv.org/abs/2503.11651) when no
VGGT checkpoint is available: it *uses ground-truth cameras and depth* of generated scenes. The
feature-training stage (:mod:`ff3r_ns.core.losses`) never does.

VGGT's recipe, reproduced here:

* ground truth is expressed relative to the first view and scale-normalised per scene so that the mean
  distance of valid ground-truth points from the first camera is 1 (:func:`normalise_ground_truth`);
* camera loss: L1 on the 9-number pose encodings (translation, rotation quaternion, field of view with
  half weight), predictions taken as they come out of the anchored camera head;
* depth loss: confidence-weighted L1 with a log-confidence penalty, ``c |d - d*| - alpha log c``, plus
  the same on the spatial gradients of the residual.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from ff3r_ns.core.cameras import Cameras, extri_intri_to_pose_encoding, invert_rigid, unproject_depth


@dataclass
class GeometryLossConfig:
    """Weights of the supervised geometry losses (VGGT's defaults)."""

    camera_weight: float = 5.0
    """Weight of the camera loss (VGGT: 5)."""
    fov_weight: float = 0.5
    """Weight of the field-of-view part inside the camera loss (VGGT: 0.5)."""
    depth_weight: float = 1.0
    """Weight of the confidence-weighted depth loss."""
    gradient_weight: float = 1.0
    """Weight of the confidence-weighted gradient term of the depth loss."""
    conf_alpha: float = 0.2
    """``alpha`` of the ``- alpha log c`` confidence regulariser (VGGT: 0.2)."""


@dataclass
class GeometryLossTerms:
    """Unweighted supervised terms (0-dim tensors) and their weighted total."""

    total: Tensor
    camera: Tensor
    depth: Tensor
    depth_gradient: Tensor
    scene_scale: Tensor

    def scalars(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name).detach()) for f in fields(self)}


@dataclass
class NormalisedGeometry:
    """Ground truth relative to the first view and scale-normalised.

    Attributes:
        pose_enc: ``[S, 9]`` pose encodings (first view: identity extrinsics).
        depth: ``[S, H, W]`` depth divided by ``scale`` (0 = invalid).
        valid: ``[S, H, W]`` bool.
        scale: 0-dim, the mean distance of valid points from the first camera before normalising.
    """

    pose_enc: Tensor
    depth: Tensor
    valid: Tensor
    scale: Tensor


def normalise_ground_truth(depth: Tensor, cameras: Cameras) -> NormalisedGeometry:
    """VGGT's per-scene normalisation: first camera at the origin, mean valid point distance 1.

    Args:
        depth: ``[S, H, W]`` z-depth (<= 0 invalid).
        cameras: ``S`` cameras of size ``W x H``.

    Returns:
        :class:`NormalisedGeometry`.
    """
    s, h, w = depth.shape
    w2c = cameras.world_to_cam.float() @ invert_rigid(cameras.world_to_cam[:1].float())
    rel = Cameras(w2c, cameras.intrinsics.float(), cameras.width, cameras.height)
    valid = depth > 0
    if not valid.any():
        raise ValueError("normalise_ground_truth: no valid depth pixel in the context views")
    points = unproject_depth(depth.float(), rel)  # first camera's frame
    scale = points[valid].norm(dim=-1).mean().clamp_min(1e-6)
    w2c = torch.cat([w2c[:, :3, :3], w2c[:, :3, 3:] / scale], dim=-1)
    w2c = torch.cat([w2c, w2c.new_tensor([0, 0, 0, 1.0]).expand(s, 1, 4)], dim=1)
    enc = extri_intri_to_pose_encoding(w2c, rel.intrinsics, h, w)
    return NormalisedGeometry(enc, torch.where(valid, depth / scale, torch.zeros_like(depth)), valid, scale)


def camera_loss(pred: Tensor, target: Tensor, fov_weight: float = 0.5) -> Tensor:
    """L1 on pose encodings ``[S, 9]``: translation + rotation + ``fov_weight`` * field of view (VGGT)."""
    if pred.shape != target.shape or pred.shape[-1] != 9:
        raise ValueError(f"camera_loss: expected two [S, 9] encodings, got {tuple(pred.shape)} and {tuple(target.shape)}")
    d = (pred - target).abs()
    return d[:, :3].mean() + d[:, 3:7].mean() + fov_weight * d[:, 7:].mean()


def confidence_depth_loss(pred: Tensor, conf: Tensor, target: Tensor, valid: Tensor, alpha: float = 0.2) -> Tensor:
    """``mean_valid(c |d - d*| - alpha log c)`` (VGGT's aleatoric-uncertainty depth loss); ``conf >= 1``."""
    err = conf * (pred - target).abs() - alpha * torch.log(conf)
    return err[valid].mean() if valid.any() else err.sum() * 0.0


def confidence_gradient_loss(pred: Tensor, conf: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Confidence-weighted L1 of the spatial gradients of the residual ``d - d*`` (VGGT's ``grad`` term);
    only pixel pairs where both pixels are valid count."""
    r = pred - target
    total, count = r.new_zeros(()), r.new_zeros(())
    for dim in (1, 2):
        n = r.shape[dim] - 1
        a, b = [slice(None)] * 3, [slice(None)] * 3
        a[dim], b[dim] = slice(1, None), slice(0, n)
        pair = valid[tuple(a)] & valid[tuple(b)]
        g = (r[tuple(a)] - r[tuple(b)]).abs() * 0.5 * (conf[tuple(a)] + conf[tuple(b)])
        total = total + (g * pair).sum()
        count = count + pair.sum()
    return total / count.clamp_min(1.0)


def geometry_losses(
    config: GeometryLossConfig, pose_enc: Tensor, depth: Tensor, depth_conf: Tensor, gt_depth: Tensor, gt_cameras: Cameras,
) -> GeometryLossTerms:
    """All supervised terms for one scene's context views.

    Args:
        config: :class:`GeometryLossConfig`.
        pose_enc: ``[S, 9]`` predicted encodings (anchored at the first view).
        depth: ``[S, H, W]`` predicted depth; ``depth_conf`` its confidence (>= 1).
        gt_depth: ``[S, H, W]`` ground-truth depth (0 invalid); ``gt_cameras`` ground-truth cameras.

    Returns:
        :class:`GeometryLossTerms`.
    """
    gt = normalise_ground_truth(gt_depth, gt_cameras)
    cam = camera_loss(pose_enc, gt.pose_enc, config.fov_weight)
    dep = confidence_depth_loss(depth, depth_conf, gt.depth, gt.valid, config.conf_alpha)
    grad = confidence_gradient_loss(depth, depth_conf, gt.depth, gt.valid)
    total = config.camera_weight * cam + config.depth_weight * dep + config.gradient_weight * grad
    return GeometryLossTerms(total, cam, dep, grad, gt.scale.detach())
