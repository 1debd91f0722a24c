"""PNG panels of one evaluated target view: input, rendering, error, depth, feature PCA, segmentation.

Drawn with matplotlib's object API (``Figure`` + Agg), never ``pyplot``, so no global backend or figure
state is touched and nothing needs a display.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ff3r_ns.core.palette import class_colors

ERROR_MAX = 0.5
"""Mean absolute RGB error shown at full brightness (fixed, so panels are comparable)."""


@dataclass
class PanelData:
    """What one panel shows (tensors on any device; ``H x W`` everywhere).

    Attributes:
        title: figure title.
        subtitle: one line of metrics under the title.
        gt_rgb, rgb: ``[H, W, 3]`` target image and rendering at the aligned pose, in [0, 1].
        depth: ``[H, W]`` rendered depth; ``gt_depth`` the dataset's (0 = invalid) or None.
        features: ``[H, W, D]`` decoded rendered features, or None.
        segmentation, teacher_segmentation, gt_labels: ``[H, W]`` class ids, or None without labels.
    """

    title: str
    subtitle: str
    gt_rgb: Tensor
    rgb: Tensor
    depth: Tensor
    gt_depth: Optional[Tensor] = None
    features: Optional[Tensor] = None
    segmentation: Optional[Tensor] = None
    teacher_segmentation: Optional[Tensor] = None
    gt_labels: Optional[Tensor] = None


def feature_pca(features: Tensor) -> np.ndarray:
    """``[H, W, D]`` -> ``[H, W, 3]`` in [0, 1]: the first three principal components, each stretched
    between its 1st and 99th percentile (so a few outliers do not wash the image out).

    Example:
        >>> feature_pca(torch.rand(8, 8, 16)).shape
        (8, 8, 3)
    """
    if features.ndim != 3:
        raise ValueError(f"feature_pca expects [H, W, D], got {tuple(features.shape)}")
    h, w, d = features.shape
    x = features.detach().reshape(-1, d).double().cpu()
    x = x - x.mean(0)
    comps = torch.zeros(x.shape[0], 3, dtype=torch.float64)
    if d > 0 and x.abs().sum() > 0:
        _, _, vt = torch.linalg.svd(x, full_matrices=False)
        proj = x @ vt[:3].T
        comps[:, : proj.shape[1]] = proj
    lo = torch.quantile(comps, 0.01, dim=0)
    hi = torch.quantile(comps, 0.99, dim=0)
    out = ((comps - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
    return out.reshape(h, w, 3).float().numpy()


def colourize_labels(labels: Tensor) -> np.ndarray:
    """``[H, W]`` class ids -> ``[H, W, 3]`` colours of the class palette (:func:`ff3r_ns.core.palette.class_colors`)."""
    ids = labels.detach().long().cpu()
    num = int(ids.max()) + 1 if ids.numel() else 1
    return class_colors(num)[ids].numpy()


def _np(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def write_panel(data: PanelData, path: Path) -> Path:
    """Draw ``data`` as a 3x3 grid with titles and write it to ``path`` (PNG).

    Rows: input / rendering / error map; rendered depth / dataset depth / feature PCA; segmentation /
    2D teacher's segmentation / ground-truth labels. Missing inputs are drawn as an empty tile that says
    why.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(9.6, 10.2), dpi=100)
    axes = fig.subplots(3, 3)
    gt_depth = data.gt_depth
    valid = gt_depth[gt_depth > 0] if gt_depth is not None else data.depth[data.depth > 0]
    vmin, vmax = (float(valid.min()), float(valid.max())) if valid.numel() else (0.0, 1.0)
    error = (data.rgb - data.gt_rgb).abs().mean(-1)
    tiles = [
        ("input (target view)", _np(data.gt_rgb.clamp(0, 1)), {}),
        ("rendering (aligned pose)", _np(data.rgb.clamp(0, 1)), {}),
        (f"|error| (0..{ERROR_MAX})", _np(error), {"cmap": "magma", "vmin": 0.0, "vmax": ERROR_MAX}),
        ("rendered depth", _np(data.depth), {"cmap": "viridis", "vmin": vmin, "vmax": vmax}),
        ("dataset depth", None if gt_depth is None else _np(gt_depth), {"cmap": "viridis", "vmin": vmin, "vmax": vmax}),
        ("feature PCA", None if data.features is None else feature_pca(data.features), {}),
        ("segmentation", None if data.segmentation is None else colourize_labels(data.segmentation), {}),
        ("2D teacher", None if data.teacher_segmentation is None else colourize_labels(data.teacher_segmentation), {}),
        ("ground-truth labels", None if data.gt_labels is None else colourize_labels(data.gt_labels), {}),
    ]
    for ax, (name, image, kwargs) in zip(axes.flat, tiles):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=10)
        if image is None:
            ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes, color="grey")
            continue
        shown = ax.imshow(image, interpolation="nearest", **kwargs)
        if "cmap" in kwargs:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"{data.title}\n{data.subtitle}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path
