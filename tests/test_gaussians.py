"""The Gaussians type: shape checks, flattening, selection, similarity transforms."""

import pytest
import torch

from ff3r_ns.core.cameras import quat_to_mat
from ff3r_ns.core.gaussians import Gaussians, quat_multiply, rgb_to_sh, sh_to_rgb, transform_gaussians


def wxyz_to_mat(q: torch.Tensor) -> torch.Tensor:
    return quat_to_mat(torch.cat([q[..., 1:], q[..., :1]], -1))


def test_shape_errors_name_the_field():
    g = Gaussians.random(4, feature_dim=2)
    with pytest.raises(ValueError, match="opacities"):
        Gaussians(g.means, g.quats, g.scales, g.opacities[:3], g.sh, g.features)
    with pytest.raises(ValueError, match="sh"):
        Gaussians(g.means, g.quats, g.scales, g.opacities, torch.zeros(4, 3, 3), g.features)
    with pytest.raises(ValueError, match="features"):
        Gaussians(g.means, g.quats, g.scales, g.opacities, g.sh, torch.zeros(5, 2))


def test_flatten_select_cat_and_finite_mask():
    g = Gaussians.random(6, feature_dim=3, sh_degree=1)
    batched = g.map(lambda t: t.reshape(2, 3, *t.shape[1:]))
    assert batched.batch_shape == (2,) and batched.num == 3
    flat = batched.flatten()
    assert torch.equal(flat.means, g.means) and torch.equal(flat.sh, g.sh)
    both = Gaussians.cat([g[:2], g[2:]])
    assert torch.equal(both.features, g.features)
    g.scales[4, 1] = float("nan")
    assert g.finite_mask().tolist() == [True, True, True, True, False, True]
    assert g.sh_degree == 1 and g.feature_dim == 3


def test_sh_colour_convention():
    rgb = torch.rand(10, 3)
    assert torch.allclose(sh_to_rgb(rgb_to_sh(rgb)), rgb, atol=1e-6)


def test_transform_rotates_covariances_and_scales():
    g = Gaussians.random(5).map(lambda t: t.double())
    r = quat_to_mat(torch.randn(4, dtype=torch.float64))
    s, t = torch.tensor(1.5, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    moved = transform_gaussians(g, s, r, t)

    def cov(x: Gaussians) -> torch.Tensor:
        rot = wxyz_to_mat(torch.nn.functional.normalize(x.quats, dim=-1))
        return rot @ torch.diag_embed(x.scales**2) @ rot.transpose(-1, -2)

    assert torch.allclose(moved.means, s * g.means @ r.T + t)
    assert torch.allclose(cov(moved), s**2 * r @ cov(g) @ r.T, atol=1e-10)


def test_quat_multiply_composes_rotations():
    a, b = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    a, b = a / a.norm(), b / b.norm()
    assert torch.allclose(wxyz_to_mat(quat_multiply(a, b)), wxyz_to_mat(a) @ wxyz_to_mat(b), atol=1e-12)
