"""Evaluation metrics: PSNR / SSIM / LPIPS, segmentation (mIoU, accuracy), depth (AbsRel, inliers).

Images are **channels-last** ``[*B, H, W, C]`` in ``[0, 1]`` (what :func:`ff3r_ns.core.render.render`
returns); per-image results come back with the batch shape ``[*B]``. Segmentation and depth results
are small frozen dataclasses, not dicts.

The protocol these serve (LSM's ScanNet protocol, reused by Uni3R and FF3R) is described in
``docs/architecture.md`` ("Evaluation protocol"): https://arxiv.org/abs/2410.18956 (LSM),
https://arxiv.org/abs/2508.03643 (Uni3R).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

MSE_FLOOR = 1e-10
"""PSNR clamps the MSE here, so identical images score ``10 * log10(data_range**2 / 1e-10)`` =
**100 dB** for ``data_range=1`` instead of ``inf`` (an ``inf`` would poison every mean it enters)."""

SSIM_SIGMA = 1.5
SSIM_KERNEL = 11  # int(3.5 * sigma + 0.5) * 2 + 1, torchmetrics' rule for sigma 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03

INLIER_RATIO = 1.03
"""LSM's depth inlier threshold: a pixel is an inlier when ``max(p / g, g / p) < 1.03``."""
DELTA_RATIO = 1.25
"""The usual monocular-depth ``delta < 1.25`` threshold."""


def _check_images(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target images differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim < 3:
        raise ValueError(f"images must be [*B, H, W, C] (channels last), got shape {tuple(pred.shape)}")


# --------------------------------------------------------------------------- PSNR / SSIM
def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image.

    Args:
        pred, target: ``[*B, H, W, C]`` images in ``[0, data_range]``.
        data_range: the value range of the images.

    Returns:
        ``[*B]`` PSNR in dB. The MSE is clamped at :data:`MSE_FLOOR` (1e-10), so identical images
        give 100 dB for ``data_range=1``.

    Example:
        >>> x = torch.zeros(4, 4, 3); psnr(x, x + 0.1).item()  # MSE 0.01 -> 20 dB
        20.0
    """
    _check_images(pred, target)
    mse = (pred.double() - target.double()).pow(2).mean(dim=(-3, -2, -1)).clamp_min(MSE_FLOOR)
    return (10.0 * torch.log10(data_range**2 / mse)).to(pred.dtype)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity per image (Wang et al. 2004), gaussian window 11, sigma 1.5.

    Matches ``torchmetrics.image.StructuralSimilarityIndexMeasure(data_range=...)`` (1.x): constants
    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, reflect padding by 5 pixels, the SSIM map averaged over
    all pixels and channels, variances clamped at 0. Differentiable, so it doubles as a loss.

    Args:
        pred, target: ``[*B, H, W, C]`` images in ``[0, data_range]``, ``H, W >= 6``.
        data_range: the value range ``L`` of the images.

    Returns:
        ``[*B]`` SSIM in ``[-1, 1]`` (1 for identical images).
    """
    _check_images(pred, target)
    *batch, h, w, c = pred.shape
    pad = SSIM_KERNEL // 2
    if h <= pad or w <= pad:
        raise ValueError(f"ssim needs images of at least {pad + 1}x{pad + 1} pixels, got {h}x{w}")
    x = pred.reshape(-1, h, w, c).permute(0, 3, 1, 2)
    y = target.reshape(-1, h, w, c).permute(0, 3, 1, 2)
    n = x.shape[0]
    window = _gaussian_window(SSIM_KERNEL, SSIM_SIGMA, x.dtype, x.device).expand(c, 1, -1, -1)
    stack = torch.cat([x, y, x * x, y * y, x * y])  # one grouped conv for all five moments
    stack = F.pad(stack, (pad, pad, pad, pad), mode="reflect")
    mu_x, mu_y, e_xx, e_yy, e_xy = F.conv2d(stack, window, groups=c).split(n)
    var_x = (e_xx - mu_x**2).clamp_min(0.0)
    var_y = (e_yy - mu_y**2).clamp_min(0.0)
    cov = e_xy - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3)).reshape(batch)


# --------------------------------------------------------------------------- LPIPS
def _torchmetrics_linear_weights() -> Optional[Path]:
    try:
        import torchmetrics.functional.image.lpips as tm_lpips
    except ImportError:
        return None
    return Path(tm_lpips.__file__).parent / "lpips_models" / "alex.pth"


def alexnet_weights_path() -> Path:
    """Where torchvision (and so torchmetrics' LPIPS) looks for ImageNet AlexNet weights.

    ``<torch.hub.get_dir()>/checkpoints/alexnet-owt-7be5be79.pth``; torch.hub honours ``TORCH_HOME``.
    """
    from torchvision.models import AlexNet_Weights

    name = Path(urlparse(AlexNet_Weights.DEFAULT.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def lpips_available() -> bool:
    """True when LPIPS (AlexNet) can be built **without downloading anything**.

    Needs torchvision's AlexNet backbone in the torch hub cache (:func:`alexnet_weights_path`) and
    the LPIPS linear layers that ship inside the torchmetrics wheel. Never touches the network.
    """
    try:
        backbone = alexnet_weights_path()
    except ImportError:
        return False
    linear = _torchmetrics_linear_weights()
    return backbone.is_file() and linear is not None and linear.is_file()


class Lpips:
    """LPIPS-AlexNet (Zhang et al. 2018, https://arxiv.org/abs/1801.03924) on channels-last images.

    Build it with :func:`make_lpips`. Wraps torchmetrics' network (``normalize=True``: inputs in
    [0, 1]); calling it does not accumulate metric state.
    """

    def __init__(self, device: Optional[torch.device | str] = None) -> None:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        self._metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).eval()
        if device is not None:
            self._metric = self._metric.to(device)

    @torch.no_grad()
    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        """``pred, target [*B, H, W, 3]`` in [0, 1] -> ``[*B]`` LPIPS (lower is more similar)."""
        _check_images(pred, target)
        *batch, h, w, c = pred.shape
        if c != 3:
            raise ValueError(f"LPIPS needs RGB images (3 channels), got {c}")
        x = pred.reshape(-1, h, w, c).permute(0, 3, 1, 2).float().clamp(0, 1)
        y = target.reshape(-1, h, w, c).permute(0, 3, 1, 2).float().clamp(0, 1)
        # torchmetrics' ``net`` is the bare LPIPS module; calling the Metric itself would append to its state.
        return self._metric.net(x, y, normalize=True).reshape(batch)


def make_lpips(device: Optional[torch.device | str] = None) -> Optional[Lpips]:
    """An :class:`Lpips` scorer, or ``None`` (with a logged warning) when its weights are not local.

    Example:
        >>> scorer = make_lpips()
        >>> value = scorer(pred, gt) if scorer is not None else None
    """
    if not lpips_available():
        logger.warning(
            "LPIPS disabled: AlexNet weights not found at %s (this project never downloads at run time). "
            "To enable it, copy torchvision's alexnet-owt-7be5be79.pth there (or set TORCH_HOME).",
            alexnet_weights_path(),
        )
        return None
    return Lpips(device)


# --------------------------------------------------------------------------- segmentation
@dataclass(frozen=True)
class SegmentationScores:
    """Segmentation metrics from a confusion matrix.

    Attributes:
        miou: mean IoU over the evaluated classes (see :func:`segmentation_scores`); ``nan`` if none.
        accuracy: fraction of non-ignored pixels whose prediction equals the ground truth.
        iou: ``[K]`` per-class IoU, ``nan`` for the ignore label and for classes excluded from the mean.
        evaluated: ``[K]`` bool, the classes that entered the mean.
        num_pixels: number of non-ignored pixels.
    """

    miou: float
    accuracy: float
    iou: Tensor
    evaluated: Tensor
    num_pixels: int


def confusion_matrix(pred: Tensor, gt: Tensor, num_classes: int, ignore_index: Optional[int] = 0) -> Tensor:
    """Count ``(gt, pred)`` label pairs over pixels whose ground truth is not ``ignore_index``.

    Args:
        pred, gt: integer label maps of the same shape, values in ``[0, num_classes)``.
        num_classes: ``K``, counting the ignore label (the protocol: 9 = ignore + 8 classes).
        ignore_index: ground-truth label to skip (``None``: keep all pixels).

    Returns:
        ``[K, K]`` int64, rows = ground truth, columns = prediction. Sum these over images to get
        dataset-level scores.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt label maps differ in shape: {tuple(pred.shape)} vs {tuple(gt.shape)}")
    if pred.is_floating_point() or gt.is_floating_point():
        raise ValueError("confusion_matrix needs integer label maps (take argmax of scores first)")
    pred, gt = pred.reshape(-1).long(), gt.reshape(-1).long()
    for name, lab in (("pred", pred), ("gt", gt)):
        if lab.numel() and (lab.min() < 0 or lab.max() >= num_classes):
            raise ValueError(f"{name} labels must lie in [0, {num_classes}), got [{lab.min()}, {lab.max()}]")
    if ignore_index is not None:
        keep = gt != ignore_index
        pred, gt = pred[keep], gt[keep]
    return torch.bincount(gt * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def segmentation_scores(confusion: Tensor, ignore_index: Optional[int] = 0) -> SegmentationScores:
    """mIoU and pixel accuracy from a ``[K, K]`` confusion matrix (rows gt, columns prediction).

    ``IoU_c = TP / (TP + FP + FN)`` counted over non-ignored pixels. The mean runs over the classes
    other than ``ignore_index`` that occur in the ground truth **or** the prediction; a class absent
    from both has an undefined IoU (0/0) and is left out rather than counted as 0 or 1. A
    prediction of the ignore label on a labelled pixel counts as a miss for that pixel's class.
    """
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be square [K, K], got {tuple(confusion.shape)}")
    cm = confusion.double()
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    evaluated = union > 0
    if ignore_index is not None:
        evaluated[ignore_index] = False
    iou = torch.where(evaluated, tp / union.clamp_min(1), torch.full_like(tp, math.nan))
    total = cm.sum()
    miou = iou[evaluated].mean().item() if evaluated.any() else math.nan
    accuracy = (tp.sum() / total).item() if total > 0 else math.nan
    return SegmentationScores(miou=miou, accuracy=accuracy, iou=iou.float(), evaluated=evaluated, num_pixels=int(total))


# --------------------------------------------------------------------------- depth
def _median(x: Tensor) -> Tensor:
    """Median of a 1-D tensor, averaging the two middle values for even counts (numpy's rule;
    ``torch.median`` would return the lower one)."""
    n = x.numel()
    lo = torch.kthvalue(x, (n + 1) // 2).values
    hi = torch.kthvalue(x, n // 2 + 1).values
    return (lo + hi) / 2


@dataclass(frozen=True)
class DepthScores:
    """Depth metrics of one depth map after median scaling.

    Attributes:
        abs_rel: mean ``|s p - g| / g``.
        inlier_103: fraction with ``max(s p / g, g / (s p)) < 1.03`` (LSM's "inlier ratio").
        delta_125: fraction with that ratio ``< 1.25``.
        scale: ``s = median(g) / median(p)`` over valid pixels (1 without scaling).
        num_valid: pixels with valid ground truth.
    """

    abs_rel: float
    inlier_103: float
    delta_125: float
    scale: float
    num_valid: int


def depth_metrics(pred: Tensor, gt: Tensor, median_scaling: bool = True) -> DepthScores:
    """AbsRel and ratio inliers of one predicted depth map against ground truth.

    Only pixels with valid ground truth (finite and ``> 0``) count. The prediction is first scaled
    by ``median(gt) / median(pred)`` over those pixels (monodepth2's median scaling, as LSM reports
    depth; even counts average the two middle values, as numpy does). A valid pixel whose
    prediction is not finite and positive counts as an outlier with relative error 1.

    Args:
        pred, gt: depth maps of the same shape (e.g. ``[H, W]``), z-depth.
        median_scaling: apply the scale; off reports metric depth as is.

    Returns:
        :class:`DepthScores`.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt depth differ in shape: {tuple(pred.shape)} vs {tuple(gt.shape)}")
    p, g = pred.reshape(-1).double(), gt.reshape(-1).double()
    valid = torch.isfinite(g) & (g > 0)
    if not valid.any():
        raise ValueError("depth_metrics: the ground truth has no valid pixel (finite and > 0)")
    p, g = p[valid], g[valid]
    usable = torch.isfinite(p) & (p > 0)
    scale = 1.0
    if median_scaling:
        if not usable.any():
            raise ValueError("depth_metrics: no predicted depth is finite and > 0 where the ground truth is valid")
        scale = (_median(g) / _median(p[usable])).item()
    p = p * scale
    abs_rel = torch.where(usable, (p - g).abs() / g, torch.ones_like(g))  # unusable: count as 100 % error
    ratio = torch.where(usable, torch.maximum(p / g, g / p), torch.full_like(g, math.inf))
    return DepthScores(
        abs_rel=abs_rel.mean().item(),
        inlier_103=(ratio < INLIER_RATIO).double().mean().item(),
        delta_125=(ratio < DELTA_RATIO).double().mean().item(),
        scale=scale,
        num_valid=int(valid.sum()),
    )
