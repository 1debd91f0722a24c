"""The :class:`Gaussians` type: one set of 3D Gaussians (or a batch of sets), shape-checked.

Every stage after the Gaussian head passes this type, never a dict. Attributes are stored
*activated* (scales in world units, opacities in [0, 1]); the nerfstudio glue converts to the
log / logit parameterisation that splatfacto and the 3DGS PLY format use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
"""Zeroth spherical-harmonics basis constant: ``rgb = 0.5 + SH_C0 * sh_dc``."""


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """Colour in [0, 1] to the degree-0 SH coefficient (the 3DGS convention)."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh: Tensor) -> Tensor:
    """Degree-0 SH coefficient to colour (not clamped)."""
    return sh * SH_C0 + 0.5


@dataclass
class Gaussians:
    """A set of 3D Gaussians with colour and semantic features.

    All fields share the leading batch shape ``B...`` (empty for one set) and the Gaussian
    count ``N``.

    Attributes:
        means: ``[*B, N, 3]`` centres in world coordinates.
        quats: ``[*B, N, 4]`` rotations as quaternions ``(w, x, y, z)``; need not be normalised.
        scales: ``[*B, N, 3]`` standard deviations along the rotated axes, world units (> 0).
        opacities: ``[*B, N]`` in [0, 1].
        sh: ``[*B, N, K, 3]`` spherical-harmonics colour coefficients, ``K = (degree + 1) ** 2``.
        features: ``[*B, N, F]`` low-dimensional semantic features (``F`` may be 0).
        confidence: ``[*B, N]`` per-Gaussian confidence logits used by the voxel merge, or None.

    Example:
        >>> g = Gaussians.random(100, feature_dim=16)
        >>> g.num, g.sh_degree, g.feature_dim
        (100, 0, 16)
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh: Tensor
    features: Tensor
    confidence: Optional[Tensor] = None

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------- shape facts
    @property
    def batch_shape(self) -> torch.Size:
        return self.means.shape[:-2]

    @property
    def num(self) -> int:
        """Gaussians per set (``N``)."""
        return self.means.shape[-2]

    @property
    def sh_degree(self) -> int:
        k = self.sh.shape[-2]
        degree = int(round(k**0.5)) - 1
        return degree

    @property
    def feature_dim(self) -> int:
        return self.features.shape[-1]

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def colors(self) -> Tensor:
        """``[*B, N, 3]`` view-independent colour from the degree-0 coefficient (clamped to [0, 1])."""
        return sh_to_rgb(self.sh[..., 0, :]).clamp(0.0, 1.0)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field whose shape disagrees with ``means``."""
        if self.means.ndim < 2 or self.means.shape[-1] != 3:
            raise ValueError(f"Gaussians.means must be [..., N, 3], got {tuple(self.means.shape)}")
        lead = self.means.shape[:-1]
        expected = {
            "quats": (*lead, 4),
            "scales": (*lead, 3),
            "opacities": tuple(lead),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != tuple(shape):
                raise ValueError(f"Gaussians.{name} must have shape {tuple(shape)}, got {got}")
        if self.sh.shape[:-2] != lead or self.sh.shape[-1] != 3:
            raise ValueError(f"Gaussians.sh must be [..., N, K, 3] with N matching means, got {tuple(self.sh.shape)}")
        k = self.sh.shape[-2]
        if int(round(k**0.5)) ** 2 != k:
            raise ValueError(f"Gaussians.sh has K={k} coefficients, which is not a square (K = (degree + 1) ** 2)")
        if self.features.shape[:-1] != lead:
            raise ValueError(f"Gaussians.features must be [..., N, F] with N matching means, got {tuple(self.features.shape)}")
        if self.confidence is not None and tuple(self.confidence.shape) != tuple(lead):
            raise ValueError(f"Gaussians.confidence must have shape {tuple(lead)}, got {tuple(self.confidence.shape)}")

    # ----------------------------------------------------------------- constructors
    @classmethod
    def empty(cls, feature_dim: int = 0, sh_degree: int = 0, device: torch.device | str = "cpu") -> "Gaussians":
        """A set of zero Gaussians."""
        return cls.random(0, feature_dim=feature_dim, sh_degree=sh_degree, device=device)

    @classmethod
    def random(
        cls,
        n: int,
        feature_dim: int = 0,
        sh_degree: int = 0,
        scale: float = 0.05,
        device: torch.device | str = "cpu",
        generator: Optional[torch.Generator] = None,
    ) -> "Gaussians":
        """``n`` Gaussians scattered in the unit cube in front of the origin (for tests and demos)."""
        kw = dict(device=device)
        rand = lambda *s: torch.rand(*s, generator=generator, **kw)  # noqa: E731
        randn = lambda *s: torch.randn(*s, generator=generator, **kw)  # noqa: E731
        means = rand(n, 3) * 2.0 - 1.0
        means[:, 2] += 4.0
        k = (sh_degree + 1) ** 2
        return cls(
            means=means,
            quats=randn(n, 4),
            scales=scale * (0.5 + rand(n, 3)),
            opacities=0.2 + 0.7 * rand(n),
            sh=randn(n, k, 3) * 0.5,
            features=randn(n, feature_dim),
            confidence=randn(n),
        )

    # ----------------------------------------------------------------- transforms
    def fields(self) -> Iterator[tuple[str, Optional[Tensor]]]:
        for f in dataclasses.fields(self):
            yield f.name, getattr(self, f.name)

    def map(self, fn) -> "Gaussians":
        """Apply ``fn`` to every tensor field (None stays None)."""
        return Gaussians(**{k: (fn(v) if v is not None else None) for k, v in self.fields()})

    def to(self, *args, **kwargs) -> "Gaussians":
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "Gaussians":
        return self.map(lambda t: t.detach())

    def flatten(self) -> "Gaussians":
        """Merge all batch dims into the Gaussian dim: ``[*B, N, ...] -> [prod(B) * N, ...]``."""
        nb = len(self.batch_shape)
        if nb == 0:
            return self
        out = {}
        for k, v in self.fields():
            if v is None:
                out[k] = None
                continue
            tail = v.shape[nb + 1 :]
            out[k] = v.reshape(-1, *tail)
        return Gaussians(**out)

    def __getitem__(self, index) -> "Gaussians":
        """Select Gaussians of an unbatched set with a mask, index tensor or slice."""
        if len(self.batch_shape) != 0:
            raise ValueError("indexing selects Gaussians of one set; call flatten() first")
        return self.map(lambda t: t[index])

    @staticmethod
    def cat(sets: Sequence["Gaussians"]) -> "Gaussians":
        """Concatenate unbatched sets along the Gaussian dim."""
        if len(sets) == 0:
            raise ValueError("Gaussians.cat needs at least one set")
        has_conf = all(s.confidence is not None for s in sets)
        out = {}
        for name, _ in sets[0].fields():
            if name == "confidence" and not has_conf:
                out[name] = None
            else:
                out[name] = torch.cat([getattr(s, name) for s in sets], dim=0)
        return Gaussians(**out)

    def finite_mask(self) -> Tensor:
        """``[*B, N]`` bool: True where every attribute of the Gaussian is finite."""
        ok = torch.ones(self.means.shape[:-1], dtype=torch.bool, device=self.device)
        for name, v in self.fields():
            if v is None:
                continue
            lead_ndim = self.means.ndim - 1
            flat = v.reshape(*v.shape[:lead_ndim], -1) if v.ndim > lead_ndim else v[..., None]
            ok &= torch.isfinite(flat).all(dim=-1)
        return ok


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product of ``(w, x, y, z)`` quaternions, broadcasting over leading dims."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def transform_gaussians(g: Gaussians, scale: Tensor, rotation: Tensor, translation: Tensor) -> Gaussians:
    """Move Gaussians by the similarity ``x -> scale * rotation @ x + translation``.

    Args:
        g: any batch shape.
        scale: scalar tensor; rotation: ``[3, 3]``; translation: ``[3]``.

    Spherical-harmonics coefficients of degree > 0 are not rotated (only correct for degree 0, which
    is what the network predicts by default).
    """
    from ff3r_ns.core.cameras import mat_to_quat

    xyzw = mat_to_quat(rotation.to(g.means.dtype))
    r_wxyz = torch.cat([xyzw[3:], xyzw[:3]])
    return dataclasses.replace(
        g,
        means=scale * g.means @ rotation.T.to(g.means.dtype) + translation.to(g.means.dtype),
        quats=quat_multiply(r_wxyz.expand_as(g.quats), g.quats),
        scales=g.scales * scale,
    )
