"""Real spherical harmonics up to degree 4, in gsplat's (and 3DGS's) convention.

The basis is the one of Sloan, "Efficient Spherical Harmonic Evaluation" (JCGT 2013,
https://jcgt.org/published/0002/02/06/), with the constants and sign conventions of gsplat 1.4.0's
``spherical_harmonics`` (``gsplat/cuda/csrc/spherical_harmonics.cuh``), so coefficients trained here
export unchanged to splatfacto / 3DGS PLY files. Colour is ``max(SH(dir) + 0.5, 0)``, the
activation gsplat's ``rasterization`` applies when it evaluates SH itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_SH_DEGREE = 4


def num_sh_bases(degree: int) -> int:
    """Number of coefficients ``K = (degree + 1) ** 2`` of an SH expansion of ``degree``."""
    return (degree + 1) ** 2


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Evaluate the real SH basis functions at unit directions.

    Args:
        degree: highest band, 0..4.
        dirs: ``[..., 3]`` **unit** directions (x, y, z).

    Returns:
        ``[..., (degree + 1) ** 2]`` basis values, ordered by band then by order ``m = -l..l``.

    Example:
        >>> sh_basis(1, torch.tensor([[0.0, 0.0, 1.0]]))
        tensor([[0.2821, -0.0000, 0.4886, -0.0000]])
    """
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be in [0, {MAX_SH_DEGREE}], got {degree}")
    if dirs.shape[-1] != 3:
        raise ValueError(f"dirs must be [..., 3], got {tuple(dirs.shape)}")
    # Bands are built in a list and stacked once (no in-place writes) so autograd stays simple.
    out = [torch.full_like(dirs[..., 0], 0.2820947917738781)]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)
        out += [-0.48860251190292 * y, 0.48860251190292 * z, -0.48860251190292 * x]
    if degree >= 2:
        z2 = z * z
        tmp_b = -1.092548430592079 * z
        c1, s1 = x * x - y * y, 2.0 * x * y
        sh6 = 0.9461746957575601 * z2 - 0.3153915652525201
        out += [0.5462742152960395 * s1, tmp_b * y, sh6, tmp_b * x, 0.5462742152960395 * c1]
    if degree >= 3:
        tmp_c = -2.285228997322329 * z2 + 0.4570457994644658
        tmp_b = 1.445305721320277 * z
        c2, s2 = x * c1 - y * s1, x * s1 + y * c1
        sh12 = z * (1.865881662950577 * z2 - 1.119528997770346)
        out += [
            -0.5900435899266435 * s2, tmp_b * s1, tmp_c * y, sh12,
            tmp_c * x, tmp_b * c1, -0.5900435899266435 * c2,
        ]  # fmt: skip
    if degree >= 4:
        tmp_d = z * (-4.683325804901025 * z2 + 2.007139630671868)
        tmp_c = 3.31161143515146 * z2 - 0.47308734787878
        tmp_b = -1.770130769779931 * z
        c3, s3 = x * c2 - y * s2, x * s2 + y * c2
        sh20 = 1.984313483298443 * z * sh12 - 1.006230589874905 * sh6
        out += [
            0.6258357354491763 * s3, tmp_b * s2, tmp_c * s1, tmp_d * y, sh20,
            tmp_d * x, tmp_c * c1, tmp_b * c2, 0.6258357354491763 * c3,
        ]  # fmt: skip
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, coeffs: Tensor, dirs: Tensor) -> Tensor:
    """Colour of SH coefficients seen along ``dirs``: ``max(sum_k basis_k(dir) * coeffs_k + 0.5, 0)``.

    Matches gsplat 1.4.0's ``rasterization(..., sh_degree=degree)`` colour activation (its
    ``spherical_harmonics`` followed by ``clamp_min(colors + 0.5, 0)``). Only the first
    ``(degree + 1) ** 2`` coefficients are used, so a lower degree can be rendered from a
    higher-degree set (splatfacto's SH warm-up).

    Args:
        degree: SH degree to evaluate, ``(degree + 1) ** 2 <= K``.
        coeffs: ``[..., K, 3]`` coefficients.
        dirs: ``[..., 3]`` viewing directions (camera centre -> Gaussian); normalised here, need
            not be unit. Ignored for degree 0.

    Returns:
        ``[..., 3]`` colour, ``>= 0`` (not clamped above, like gsplat).

    Example:
        >>> from ff3r_ns.core.gaussians import rgb_to_sh
        >>> c = rgb_to_sh(torch.tensor([[0.2, 0.4, 0.6]]))[:, None]  # [1, 1, 3]
        >>> eval_sh(0, c, torch.tensor([[0.0, 0.0, 1.0]]))
        tensor([[0.2000, 0.4000, 0.6000]])
    """
    k = num_sh_bases(degree)
    if coeffs.ndim < 2 or coeffs.shape[-1] != 3:
        raise ValueError(f"coeffs must be [..., K, 3], got {tuple(coeffs.shape)}")
    if coeffs.shape[-2] < k:
        raise ValueError(f"SH degree {degree} needs {k} coefficients, coeffs has {coeffs.shape[-2]}")
    if dirs.shape[:-1] != coeffs.shape[:-2] and degree > 0:
        # Broadcasting is allowed, but a mismatch that cannot broadcast deserves a clear message.
        try:
            torch.broadcast_shapes(dirs.shape[:-1], coeffs.shape[:-2])
        except RuntimeError as e:
            raise ValueError(f"dirs {tuple(dirs.shape)} and coeffs {tuple(coeffs.shape)} do not broadcast") from e
    if degree == 0:
        # No direction needed; skip the normalisation (and its gradient) entirely.
        value = 0.2820947917738781 * coeffs[..., 0, :]
    else:
        basis = sh_basis(degree, F.normalize(dirs, dim=-1))  # [..., k]
        value = (basis[..., :, None] * coeffs[..., :k, :]).sum(dim=-2)
    return torch.clamp_min(value + 0.5, 0.0)
