"""Vectorised 3DGS PLY writer and reader, with optional per-Gaussian semantic features (and a point cloud reader).

The layout is the one the Inria 3DGS code, nerfstudio's ``ns-export gaussian-splat`` and common viewers use
(binary little endian, every property ``float``), in this order::

    x y z nx ny nz f_dc_0..2 f_rest_0..3(K-1)-1 opacity scale_0..2 rot_0..3 [f_sem_0..F-1]

with the stored (pre-activation) conventions: opacity is a logit, scales are logs, rotations are wxyz
quaternions, normals are zero, and ``f_rest`` is channel-major (all red coefficients, then green, then
blue), i.e. nerfstudio's ``features_rest [N, K-1, 3]`` transposed to ``[N, 3, K-1]`` as in Inria's code.
``f_sem_*`` are FF3R's low-dimensional semantic features; viewers ignore properties they do not know.

nerfstudio 1.1.5 writes each value with a Python loop (minutes for millions of Gaussians); here the
vertices are one numpy structured array written with a single ``write`` (about a second for 1M).

Example:
    >>> splat = SplatArrays.from_gaussians(gaussians)
    >>> stats = write_splat_ply("splat.ply", splat)
    >>> back = read_splat_ply("splat.ply")
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ff3r_ns.core.gaussians import Gaussians

LOGGER = logging.getLogger(__name__)

LOW_OPACITY_LOGIT = -5.5373
"""logit(1/255): nerfstudio's exporter drops Gaussians below it (gsplat skips them when rasterising)."""


@dataclass
class SplatArrays:
    """Gaussians as float32 numpy arrays in the stored 3DGS PLY convention.

    Attributes:
        means: ``[N, 3]`` centres.
        sh_dc: ``[N, 3]`` degree-0 SH coefficients (``f_dc_*``).
        sh_rest: ``[N, K-1, 3]`` higher SH coefficients, coefficient-major as nerfstudio's ``features_rest``.
        opacity_logits: ``[N]`` opacity logits.
        log_scales: ``[N, 3]`` log scales.
        quats: ``[N, 4]`` rotation quaternions, wxyz.
        sem_features: ``[N, F]`` semantic features (``f_sem_*``), or None.
    """

    means: np.ndarray
    sh_dc: np.ndarray
    sh_rest: np.ndarray
    opacity_logits: np.ndarray
    log_scales: np.ndarray
    quats: np.ndarray
    sem_features: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                setattr(self, f.name, np.ascontiguousarray(v, dtype=np.float32))
        n = self.means.shape[0]
        expected = {"means": (n, 3), "sh_dc": (n, 3), "opacity_logits": (n,), "log_scales": (n, 3), "quats": (n, 4)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"SplatArrays.{name} must be {shape}, got {getattr(self, name).shape}")
        if self.sh_rest.ndim != 3 or self.sh_rest.shape[0] != n or self.sh_rest.shape[2] != 3:
            raise ValueError(f"SplatArrays.sh_rest must be [{n}, K-1, 3], got {self.sh_rest.shape}")
        if self.sem_features is not None and (self.sem_features.ndim != 2 or self.sem_features.shape[0] != n):
            raise ValueError(f"SplatArrays.sem_features must be [{n}, F], got {self.sem_features.shape}")

    @property
    def num(self) -> int:
        return self.means.shape[0]

    @property
    def feature_dim(self) -> int:
        return 0 if self.sem_features is None else self.sem_features.shape[1]

    @classmethod
    def from_gaussians(cls, g: Gaussians, eps: float = 1e-6) -> "SplatArrays":
        """Stored convention from activated :class:`Gaussians` (unbatched): ``logit(opacity)``, ``log(scale)``.

        Opacities are clamped to ``[eps, 1 - eps]`` and scales to ``>= eps`` first, as ``FF3RModel`` does,
        so that exactly 0 or 1 do not become infinite. NaN stays NaN (the writer drops it).
        """
        if len(g.batch_shape) != 0:
            raise ValueError("SplatArrays.from_gaussians takes one unbatched set; call flatten() first")

        def np32(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().cpu().numpy()

        return cls(
            means=np32(g.means),
            sh_dc=np32(g.sh[:, 0, :]),
            sh_rest=np32(g.sh[:, 1:, :]),
            opacity_logits=np32(torch.logit(g.opacities.clamp(eps, 1 - eps))),
            log_scales=np32(torch.log(g.scales.clamp_min(eps))),
            quats=np32(g.quats),
            sem_features=None if g.features.shape[-1] == 0 else np32(g.features),
        )

    def to_gaussians(self) -> Gaussians:
        """Activated :class:`Gaussians` (sigmoid opacity, exp scale, normalised quaternions)."""
        t = torch.from_numpy
        feats = self.sem_features if self.sem_features is not None else np.zeros((self.num, 0), np.float32)
        return Gaussians(
            means=t(self.means.copy()),
            quats=torch.nn.functional.normalize(t(self.quats.copy()), dim=-1),
            scales=torch.exp(t(self.log_scales.copy())),
            opacities=torch.sigmoid(t(self.opacity_logits.copy())),
            sh=torch.cat([t(self.sh_dc.copy())[:, None, :], t(self.sh_rest.copy())], dim=1),
            features=t(feats.copy()),
        )

    def finite_mask(self) -> np.ndarray:
        """``[N]`` bool: True where every stored value of the Gaussian is finite."""
        mask = np.ones(self.num, dtype=bool)
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                mask &= np.isfinite(v.reshape(self.num, -1)).all(axis=1)
        return mask

    def select(self, mask: np.ndarray) -> "SplatArrays":
        """The Gaussians where ``mask`` (bool ``[N]`` or indices) holds."""
        return SplatArrays(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[mask]) for f in fields(self)})


def property_names(num_rest_coeffs: int, feature_dim: int) -> list[str]:
    """PLY vertex property names in file order for ``K - 1 = num_rest_coeffs`` and ``F = feature_dim``."""
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * num_rest_coeffs)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    names += [f"f_sem_{i}" for i in range(feature_dim)]
    return names


def _vertex_array(splat: SplatArrays) -> np.ndarray:
    """All Gaussians as one ``[N, P]`` float32 block in :func:`property_names` order."""
    n = splat.num
    rest = splat.sh_rest.transpose(0, 2, 1).reshape(n, 3 * splat.sh_rest.shape[1])  # Inria order: [N, 3, K-1]
    parts = [splat.means, np.zeros((n, 3), np.float32), splat.sh_dc, rest, splat.opacity_logits[:, None],
             splat.log_scales, splat.quats]  # fmt: skip
    if splat.sem_features is not None:
        parts.append(splat.sem_features)
    return np.concatenate(parts, axis=1)


@dataclass(frozen=True)
class PlyWriteStats:
    """What :func:`write_splat_ply` wrote.

    Attributes:
        path: the file written.
        written: Gaussians in the file.
        dropped_nonfinite: Gaussians removed because some value was NaN or infinite.
        dropped_low_opacity: finite Gaussians removed for an opacity logit below ``min_opacity_logit``.
    """

    path: Path
    written: int
    dropped_nonfinite: int
    dropped_low_opacity: int


def write_splat_ply(
    path: Union[str, Path],
    splat: SplatArrays,
    min_opacity_logit: Optional[float] = None,
    comments: Sequence[str] = (),
) -> PlyWriteStats:
    """Write a 3DGS PLY (binary little endian) with one vectorised write.

    Gaussians with any non-finite value are never written: they are removed, counted and logged.

    Args:
        path: output ``.ply``; parent folders are created.
        splat: the Gaussians (:class:`SplatArrays`).
        min_opacity_logit: also drop Gaussians whose opacity logit is below this (nerfstudio's exporter uses
            :data:`LOW_OPACITY_LOGIT`); None keeps them.
        comments: extra ``comment`` header lines (one line each).

    Returns:
        :class:`PlyWriteStats`.
    """
    path = Path(path)
    finite = splat.finite_mask()
    keep = finite.copy()
    low = np.zeros_like(keep)
    if min_opacity_logit is not None:
        low = finite & (splat.opacity_logits < min_opacity_logit)
        keep &= ~low
    dropped_nonfinite, dropped_low = int((~finite).sum()), int(low.sum())
    if dropped_nonfinite:
        LOGGER.warning("%s: removed %d Gaussians with NaN/inf values (not written)", path.name, dropped_nonfinite)
    if dropped_low:
        LOGGER.info("%s: removed %d Gaussians with opacity below sigmoid(%g)", path.name, dropped_low, min_opacity_logit)
    kept = splat.select(keep) if not keep.all() else splat
    block = _vertex_array(kept)
    names = property_names(kept.sh_rest.shape[1], kept.feature_dim)
    if any("\n" in c for c in comments):
        raise ValueError("PLY comments must be single lines")
    header = ["ply", "format binary_little_endian 1.0", *(f"comment {c}" for c in comments), "comment Vertical Axis: z",
              f"element vertex {kept.num}", *(f"property float {n}" for n in names), "end_header"]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        block.astype("<f4", copy=False).tofile(f)  # no extra bytes copy
    return PlyWriteStats(path, kept.num, dropped_nonfinite, dropped_low)


def _stack(data: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """``[N, len(names)]`` float32 from the named columns (``[N, 0]`` for no names)."""
    out = np.empty((len(data), len(names)), dtype=np.float32)
    for i, n in enumerate(names):
        out[:, i] = data[n]
    return out


def _read_vertices(path: Union[str, Path], what: str) -> tuple[Path, np.ndarray, set[str]]:
    """``(path, vertex records, property names)`` of a PLY; ``what`` names the expected content in errors.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no ``vertex`` element.
    """
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PLY file not found: {path}")
    ply = PlyData.read(str(path))
    if "vertex" not in ply:
        raise ValueError(f"{path}: no 'vertex' element; not a {what} PLY")
    data = ply["vertex"].data
    return path, data, set(data.dtype.names)


def read_splat_ply(path: Union[str, Path]) -> SplatArrays:
    """Read a 3DGS PLY (ours, nerfstudio's or Inria's) into :class:`SplatArrays`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file has no ``vertex`` element or lacks a 3DGS property (named in the message).
    """
    path, data, names = _read_vertices(path, "Gaussian splat")
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", *(f"scale_{i}" for i in range(3)),
                *(f"rot_{i}" for i in range(4))]  # fmt: skip
    missing = [n for n in required if n not in names]
    if missing:
        raise ValueError(f"{path}: not a 3DGS PLY, missing properties {missing}")
    n = len(data)
    num_rest = sum(1 for k in names if k.startswith("f_rest_"))
    if num_rest % 3:
        raise ValueError(f"{path}: {num_rest} f_rest_* properties is not a multiple of 3")
    rest = _stack(data, [f"f_rest_{i}" for i in range(num_rest)]).reshape(n, 3, num_rest // 3).transpose(0, 2, 1)
    num_sem = sum(1 for k in names if k.startswith("f_sem_"))
    return SplatArrays(
        means=_stack(data, ["x", "y", "z"]),
        sh_dc=_stack(data, ["f_dc_0", "f_dc_1", "f_dc_2"]),
        sh_rest=rest,
        opacity_logits=np.asarray(data["opacity"], dtype=np.float32),
        log_scales=_stack(data, [f"scale_{i}" for i in range(3)]),
        quats=_stack(data, [f"rot_{i}" for i in range(4)]),
        sem_features=_stack(data, [f"f_sem_{i}" for i in range(num_sem)]) if num_sem else None,
    )


def read_points_ply(path: Union[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    """Read a coloured point cloud PLY (``x y z`` and, optionally, ``red green blue``) without open3d.

    This is the format of ``points.ply`` that ``ff3r-make-scene`` writes and nerfstudio-data's ``ply_file_path``
    names (splatfacto's initial points); any numeric property type is accepted.

    Returns:
        ``xyz [P, 3]`` float32 and ``rgb [P, 3]`` uint8 (zeros when the file has no colours).

    Raises:
        FileNotFoundError: no such file.
        ValueError: no ``vertex`` element, or no ``x y z``.
    """
    path, data, names = _read_vertices(path, "point cloud")
    if not {"x", "y", "z"} <= names:
        raise ValueError(f"{path}: a point cloud PLY needs x, y and z properties, found {sorted(names)}")
    xyz = _stack(data, ["x", "y", "z"])
    if {"red", "green", "blue"} <= names:
        rgb = np.stack([np.asarray(data[c]) for c in ("red", "green", "blue")], axis=1)
        if np.issubdtype(rgb.dtype, np.floating):  # float colours are in [0, 1] (as open3d reads them)
            rgb = np.round(np.clip(rgb, 0.0, 1.0) * 255.0)
        rgb = rgb.astype(np.uint8)
    else:
        rgb = np.zeros((len(data), 3), dtype=np.uint8)
    return xyz, rgb
