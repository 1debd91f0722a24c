"""Test-time pose alignment of a target view before novel-view metrics.

A pose-free model predicts its own cameras in its own frame, so a ground-truth target pose does not
quite fit its Gaussians. The protocol (Uni3R, https://arxiv.org/abs/2508.03643, ``TestLoss`` with
``pose_align_steps=100`` in its ``scripts/test.sh``) therefore optimises a small camera correction
per target view with Adam (lr 5e-3, 100 steps) on the L1 photometric error against the target
image, with the Gaussians frozen, and measures PSNR/SSIM/LPIPS at the corrected pose.

Uni3R's 9 numbers are a 3-vector translation plus a 6D rotation (Zhou et al. 2019) added to the
identity's 6D code, composed as ``w2c @ [R | t]`` (a correction in world coordinates). We offer:

* ``"rot6d"`` -- Uni3R's 9-DoF (6D rotation + translation), but applied in the **camera** frame,
  ``[R | t] @ w2c``, so the rotation turns about the camera's own centre; in world coordinates a
  rotation about the origin drags a distant camera along and couples with the translation.
* ``"intrinsics"`` -- axis-angle rotation (3) + translation (3) + log focal scale (1, shared by
  ``fx, fy``) + principal-point offset (2, in units of image width / height). Use it when the
  predicted focal length may be off too.

Both start at the identity correction, and Adam's step size (``lr``) is the same for every number,
so translation units are the scene's and the principal offset is relative to the image size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

RenderFn = Callable[[Tensor, Tensor], Tensor]
"""``render_fn(world_to_cam [4, 4], intrinsics [3, 3]) -> rgb [H, W, 3]``, differentiable in both."""

Parametrization = Literal["rot6d", "intrinsics"]


@dataclass(frozen=True)
class AlignConfig:
    """Settings of :func:`align_pose` (defaults: Uni3R's protocol).

    Attributes:
        steps: Adam steps.
        lr: Adam learning rate.
        parametrization: ``"rot6d"`` or ``"intrinsics"`` (see the module docstring).
    """

    steps: int = 100
    lr: float = 5e-3
    parametrization: Parametrization = "rot6d"

    def __post_init__(self) -> None:
        if self.steps < 0 or self.lr <= 0:
            raise ValueError(f"AlignConfig needs steps >= 0 and lr > 0, got steps={self.steps}, lr={self.lr}")
        if self.parametrization not in ("rot6d", "intrinsics"):
            raise ValueError(f"parametrization must be 'rot6d' or 'intrinsics', got {self.parametrization!r}")


@dataclass(frozen=True)
class AlignResult:
    """Outcome of :func:`align_pose`.

    Attributes:
        world_to_cam: ``[4, 4]`` corrected OpenCV extrinsics (detached).
        intrinsics: ``[3, 3]`` corrected intrinsics (unchanged for ``"rot6d"``).
        residual_l1_before: mean absolute error of the render at the initial camera.
        residual_l1_after: the same at the returned camera.
        steps: optimiser steps taken.
        seconds: wall time of the alignment (renders included).
    """

    world_to_cam: Tensor
    intrinsics: Tensor
    residual_l1_before: float
    residual_l1_after: float
    steps: int
    seconds: float


_IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def rotation_6d_to_matrix(d6: Tensor) -> Tensor:
    """6D rotation code ``[..., 6]`` (two rows, Gram-Schmidt) -> ``[..., 3, 3]`` (Zhou et al. 2019,
    https://arxiv.org/abs/1812.07035); ``(1, 0, 0, 0, 1, 0)`` is the identity."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-2)


def axis_angle_to_matrix(v: Tensor) -> Tensor:
    """Axis-angle ``[3]`` (direction = axis, norm = angle in radians) -> ``[3, 3]``.

    Uses the matrix exponential of the skew matrix: exact, and smooth at zero (Rodrigues' formula
    divides by the angle there).
    """
    zero = torch.zeros((), dtype=v.dtype, device=v.device)
    skew = torch.stack(
        [torch.stack([zero, -v[2], v[1]]), torch.stack([v[2], zero, -v[0]]), torch.stack([-v[1], v[0], zero])]
    )
    return torch.linalg.matrix_exp(skew)


def apply_correction(
    delta: Tensor, world_to_cam: Tensor, intrinsics: Tensor, width: int, height: int, parametrization: Parametrization
) -> tuple[Tensor, Tensor]:
    """The camera after a 9-number correction ``delta`` (zeros = no change).

    Args:
        delta: ``[9]``; ``"rot6d"``: ``[t(3), d6(6)]`` (Uni3R's order); ``"intrinsics"``:
            ``[axis_angle(3), t(3), log_focal_scale, du, dv]``.
        world_to_cam: ``[4, 4]`` OpenCV extrinsics.
        intrinsics: ``[3, 3]``.
        width, height: image size, the unit of the principal-point offset.

    Returns:
        ``world_to_cam [4, 4]``, ``intrinsics [3, 3]``.
    """
    if delta.shape != (9,):
        raise ValueError(f"delta must be [9], got {tuple(delta.shape)}")
    if parametrization == "rot6d":
        t = delta[:3]
        r = rotation_6d_to_matrix(delta[3:] + delta.new_tensor(_IDENTITY_6D))
        k = intrinsics
    else:
        r, t = axis_angle_to_matrix(delta[:3]), delta[3:6]
        scale = torch.exp(delta[6])
        # Rebuild K from (scaled focals, shifted principal point), keeping skew and the bottom row.
        fx, fy = intrinsics[0, 0] * scale, intrinsics[1, 1] * scale
        cx, cy = intrinsics[0, 2] + delta[7] * width, intrinsics[1, 2] + delta[8] * height
        k = torch.stack(
            [
                torch.stack([fx, intrinsics[0, 1], cx]),
                torch.stack([intrinsics[1, 0], fy, cy]),
                intrinsics[2],
            ]
        )
    top = torch.cat([r, t[:, None]], dim=1)
    correction = torch.cat([top, delta.new_tensor([[0.0, 0.0, 0.0, 1.0]])], dim=0)
    return correction @ world_to_cam, k


def _l1(render_fn: RenderFn, w2c: Tensor, k: Tensor, target: Tensor) -> Tensor:
    rgb = render_fn(w2c, k)
    if rgb.shape != target.shape:
        raise ValueError(f"render_fn returned {tuple(rgb.shape)} but the target image is {tuple(target.shape)}")
    return (rgb - target).abs().mean()


def align_pose(
    render_fn: RenderFn,
    target_rgb: Tensor,
    world_to_cam: Tensor,
    intrinsics: Tensor,
    config: AlignConfig = AlignConfig(),
) -> AlignResult:
    """Refine one target camera so the render matches ``target_rgb`` (L1), the Gaussians frozen.

    The parameters are the 9 numbers of :func:`apply_correction`, starting at zero; Adam with
    ``config.lr`` runs ``config.steps`` steps and the camera after the last step is returned (as
    Uni3R does: no best-of tracking). Gradients are taken with ``torch.autograd.grad`` with respect
    to the correction only, so a ``render_fn`` closing over trainable tensors leaves their
    ``.grad`` untouched.

    Args:
        render_fn: differentiable ``(world_to_cam [4, 4], intrinsics [3, 3]) -> rgb [H, W, 3]``.
        target_rgb: ``[H, W, 3]`` target image in [0, 1].
        world_to_cam: ``[4, 4]`` initial OpenCV extrinsics (e.g. the ground-truth pose expressed in
            the model's frame).
        intrinsics: ``[3, 3]`` initial intrinsics.
        config: :class:`AlignConfig`.

    Returns:
        :class:`AlignResult`.

    Example:
        >>> render_fn = lambda w2c, k: render(gaussians, Cameras(w2c[None], k[None], W, H)).rgb[0]
        >>> res = align_pose(render_fn, gt_rgb, w2c, k)
        >>> psnr(render_fn(res.world_to_cam, res.intrinsics), gt_rgb)
    """
    if target_rgb.ndim != 3:
        raise ValueError(f"target_rgb must be [H, W, C], got {tuple(target_rgb.shape)}")
    if world_to_cam.shape != (4, 4) or intrinsics.shape != (3, 3):
        raise ValueError(
            f"align_pose needs world_to_cam [4, 4] and intrinsics [3, 3], got "
            f"{tuple(world_to_cam.shape)} and {tuple(intrinsics.shape)}"
        )
    height, width = target_rgb.shape[:2]
    w2c0 = world_to_cam.detach()
    k0 = intrinsics.detach().to(w2c0.dtype)
    target = target_rgb.detach()
    start = time.perf_counter()
    delta = torch.zeros(9, dtype=w2c0.dtype, device=w2c0.device, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=config.lr)

    def loss_at(d: Tensor) -> Tensor:
        w2c, k = apply_correction(d, w2c0, k0, width, height, config.parametrization)
        return _l1(render_fn, w2c, k, target)

    with torch.enable_grad():  # callers usually evaluate under no_grad
        before = None
        for _ in range(config.steps):
            loss = loss_at(delta)
            if before is None:
                before = loss.item()
            (grad,) = torch.autograd.grad(loss, [delta])
            delta.grad = grad
            opt.step()
    with torch.no_grad():
        w2c, k = apply_correction(delta.detach(), w2c0, k0, width, height, config.parametrization)
        after = _l1(render_fn, w2c, k, target).item()
    if before is None:  # steps == 0
        before = after
    return AlignResult(
        world_to_cam=w2c.detach(),
        intrinsics=k.detach(),
        residual_l1_before=before,
        residual_l1_after=after,
        steps=config.steps,
        seconds=time.perf_counter() - start,
    )
