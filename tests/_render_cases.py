"""Small renderer test cases shared by the reference-renderer and CPU-renderer tests."""

from __future__ import annotations

import torch

from ff3r_ns.core.gaussians import Gaussians, rgb_to_sh

F64 = torch.float64


def pinhole(f: float, cx: float, cy: float, n: int = 1, dtype=F64) -> torch.Tensor:
    """``[n, 3, 3]`` intrinsics of a square-pixel pinhole camera."""
    return torch.tensor([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]], dtype=dtype).repeat(n, 1, 1)


def one_gaussian(xyz, scale, opacity, rgb=(0.2, 0.5, 0.9), feats=(1.0, -2.0), dtype=F64) -> Gaussians:
    """One isotropic Gaussian with a colour and two feature channels."""
    return Gaussians(
        means=torch.tensor([xyz], dtype=dtype),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=dtype),
        scales=torch.full((1, 3), scale, dtype=dtype),
        opacities=torch.tensor([opacity], dtype=dtype),
        sh=rgb_to_sh(torch.tensor([[rgb]], dtype=dtype)),
        features=torch.tensor([feats], dtype=dtype),
    )
