"""nerfstudio's splatfacto, made to run without network access and without open3d: the head-to-head benchmark's
competitor (``benchmarks.vs_splatfacto``, through :mod:`benchmarks.timed_runs`); nothing in ``ff3r_ns`` uses it.

Two things stop nerfstudio 1.1.5's own splatfacto on such a machine, and one optional dependency may be missing:

* nerfstudio-data reads ``ply_file_path`` (splatfacto's initial points) through open3d
  (``Nerfstudio._load_3D_points``). :class:`PlyPointsNerfstudio` reads the same file with plyfile
  (:func:`ff3r_ns.export.ply.read_points_ply`) and applies the same transform and scale, whether or not
  open3d is installed.
* ``SplatfactoModel.populate_modules`` builds torchmetrics' LPIPS, which downloads AlexNet weights.
  :class:`OfflineSplatfactoModel` lets it build LPIPS only when the weights are on disk
  (:func:`ff3r_ns.core.metrics.lpips_available`); otherwise its ``lpips`` returns NaN.
* splatfacto sizes its initial Gaussians from scikit-learn's nearest neighbours; where scikit-learn is not
  installed, the same distances come from torch (:func:`knn_distances`).

Everything else (losses, densification, schedules, rasterisation) is nerfstudio's own code:
:func:`make_offline` only swaps the dataparser and model classes of a ``TrainerConfig``, keeping every setting.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Type
from unittest import mock

import numpy as np
import torch

from nerfstudio.data.dataparsers.nerfstudio_dataparser import Nerfstudio, NerfstudioDataParserConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.splatfacto import SplatfactoModel, SplatfactoModelConfig


class PlyPointsNerfstudio(Nerfstudio):
    """nerfstudio-data, reading ``ply_file_path`` with plyfile instead of open3d (same outputs)."""

    def _load_3D_points(
        self, ply_file_path: Path, transform_matrix: torch.Tensor, scale_factor: float
    ) -> Optional[Dict[str, torch.Tensor]]:
        """Points of ``ply_file_path`` in the dataparser's frame, as nerfstudio's open3d version returns them.

        Returns:
            ``{"points3D_xyz": [P, 3] float32, "points3D_rgb": [P, 3] uint8}``, or None for an empty cloud.
        """
        from ff3r_ns.export.ply import read_points_ply

        xyz, rgb = read_points_ply(ply_file_path)
        if len(xyz) == 0:
            return None
        points = torch.from_numpy(xyz)
        points = torch.cat([points, torch.ones_like(points[..., :1])], -1) @ transform_matrix.T  # [P, 3]
        return {"points3D_xyz": points * scale_factor, "points3D_rgb": torch.from_numpy(rgb)}


@dataclass
class PlyPointsNerfstudioDataParserConfig(NerfstudioDataParserConfig):
    """``NerfstudioDataParserConfig`` whose points are read without open3d (every other setting unchanged)."""

    _target: Type = field(default_factory=lambda: PlyPointsNerfstudio)


def _nan_lpips(*_: Any, **__: Any) -> torch.Tensor:
    return torch.tensor(float("nan"))


def _no_lpips_class(*_: Any, **__: Any) -> Any:
    """Stands in for torchmetrics' LPIPS class while splatfacto builds its metrics: constructs nothing."""
    return _nan_lpips


def knn_distances(x: torch.Tensor, k: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of each point's ``k`` nearest other points (scikit-learn's result, in torch).

    Args:
        x: ``[P, 3]`` points.
        k: neighbours per point (the point itself excluded).
        chunk: query rows per distance block (memory: ``chunk x P`` floats). Runs on the GPU when there is one.

    Returns:
        ``distances [P, k]`` and ``indices [P, k]``, float32 numpy arrays (as ``SplatfactoModel.k_nearest_sklearn``).
    """
    x = x.detach().float().to("cuda" if torch.cuda.is_available() else "cpu")
    k_eff = min(k + 1, x.shape[0])
    dists, idx = [], []
    for start in range(0, x.shape[0], chunk):
        # Exact differences, not the |a|^2 + |b|^2 - 2ab shortcut (which loses digits for close points).
        d = torch.cdist(x[start : start + chunk], x, compute_mode="donot_use_mm_for_euclid_dist")
        d, i = d.topk(k_eff, dim=1, largest=False)
        dists.append(d[:, 1:])
        idx.append(i[:, 1:])
    return torch.cat(dists).cpu().numpy().astype(np.float32), torch.cat(idx).cpu().numpy().astype(np.float32)


class OfflineSplatfactoModel(SplatfactoModel):
    """``SplatfactoModel`` that never downloads LPIPS weights and works without scikit-learn (module docstring)."""

    def populate_modules(self) -> None:
        from ff3r_ns.core import metrics

        if metrics.lpips_available():
            super().populate_modules()
            return
        import torchmetrics.image.lpip as lpip_module

        # splatfacto imports the class inside populate_modules and constructs it there (which downloads AlexNet):
        # swapping the module attribute for that call is the one way in short of copying populate_modules.
        with mock.patch.object(lpip_module, "LearnedPerceptualImagePatchSimilarity", _no_lpips_class):
            super().populate_modules()

    def k_nearest_sklearn(self, x: torch.Tensor, k: int):  # type: ignore[override]
        if importlib.util.find_spec("sklearn") is not None:
            return super().k_nearest_sklearn(x, k)
        return knn_distances(x, k)


@dataclass
class OfflineSplatfactoModelConfig(SplatfactoModelConfig):
    """``SplatfactoModelConfig`` for :class:`OfflineSplatfactoModel` (every setting unchanged)."""

    _target: Type = field(default_factory=lambda: OfflineSplatfactoModel)


def _retarget(config: Any, cls: type) -> Any:
    """``config``'s field values in the config subclass ``cls`` (its ``_target`` comes from ``cls``)."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "_target"}
    return cls(**values)


def make_offline(config: TrainerConfig) -> TrainerConfig:
    """A copy of ``config`` whose nerfstudio-data parser and splatfacto model run offline (module docstring).

    A dataparser or model of another type is left as it is.
    """
    config = copy.deepcopy(config)
    dm = config.pipeline.datamanager
    if type(dm.dataparser) is NerfstudioDataParserConfig:
        dm.dataparser = _retarget(dm.dataparser, PlyPointsNerfstudioDataParserConfig)
    if type(config.pipeline.model) is SplatfactoModelConfig:
        config.pipeline.model = _retarget(config.pipeline.model, OfflineSplatfactoModelConfig)
    return config
