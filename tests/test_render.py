"""Tests of ``ff3r_ns.core.render`` (torch backend on CPU; gsplat agreement on GPU) and ``core.sh``.

The CPU tests check the torch backend against (1) closed-form single-Gaussian images, (2) an
independent sequential reference — gsplat's own pure-torch projection followed by a
Gaussian-by-Gaussian front-to-back loop with gsplat's rules — for values and autograd gradients,
and (3) finite differences. Run ``pytest tests/test_render.py -m gpu -s`` on a CUDA machine for the
gsplat-vs-torch comparison, which prints the differences.
"""

from __future__ import annotations

import math

import pytest
import torch

from ff3r_ns.core.cameras import Cameras
from ff3r_ns.core.gaussians import Gaussians, rgb_to_sh
from ff3r_ns.core.render import RenderOutput, render
from ff3r_ns.core.render_torch import intersect_tiles, project_gaussians, quat_scale_to_covar, rasterize_torch
from ff3r_ns.core.sh import eval_sh, sh_basis

from _render_cases import one_gaussian, pinhole  # noqa: E402

F64 = torch.float64
PARAMS = ("means", "quats", "scales", "opacities", "sh", "features")


# --------------------------------------------------------------------------- helpers
def random_scene(n: int, seed: int, feature_dim: int = 3, sh_degree: int = 1, dtype=F64) -> Gaussians:
    """Dense overlapping Gaussians with high opacities, so that skip and stop rules all trigger."""
    g = Gaussians.random(n, feature_dim=feature_dim, sh_degree=sh_degree, scale=0.15, generator=torch.Generator().manual_seed(seed))
    g = g.to(dtype)
    g.opacities = 0.5 + 0.49 * torch.rand(n, dtype=dtype, generator=torch.Generator().manual_seed(seed + 1))
    return g


def two_cameras(width: int, height: int, dtype=F64) -> Cameras:
    w2c = torch.eye(4, dtype=dtype).repeat(2, 1, 1)
    angle = 0.2  # second camera: rotated about y and shifted
    w2c[1, 0, 0], w2c[1, 0, 2], w2c[1, 2, 0], w2c[1, 2, 2] = math.cos(angle), math.sin(angle), -math.sin(angle), math.cos(angle)
    w2c[1, :3, 3] = torch.tensor([0.3, -0.1, -0.5], dtype=dtype)
    return Cameras(w2c, pinhole(0.8 * width, width / 2, height / 2, 2, dtype), width, height)


def reference_render(g: Gaussians, cams: Cameras, background=None, near=0.01, far=1e10, tile=16):
    """gsplat's torch projection + a sequential front-to-back loop implementing gsplat's CUDA rules."""
    impl = pytest.importorskip("gsplat.cuda._torch_impl")
    w2c, k, width, height = cams.world_to_cam, cams.intrinsics, cams.width, cams.height
    covars, _ = impl._quat_scale_to_covar_preci(g.quats, g.scales, compute_preci=False)
    radii, means2d, depths, conics, _ = impl._fully_fused_projection(g.means, covars, w2c, k, width, height, 0.3, near, far)
    centres = torch.linalg.inv(w2c)[:, :3, 3]
    rgb = eval_sh(g.sh_degree, g.sh, g.means[None] - centres[:, None]).expand(len(w2c), -1, 3)
    values = torch.cat([rgb, g.features.expand(len(w2c), -1, -1), depths[..., None]], -1)
    v, u = torch.meshgrid(
        torch.arange(height, dtype=g.means.dtype) + 0.5, torch.arange(width, dtype=g.means.dtype) + 0.5, indexing="ij"
    )
    tile_x, tile_y = (u // tile).long(), (v // tile).long()
    images, alphas = [], []
    for c in range(len(w2c)):
        acc = torch.zeros(height, width, values.shape[-1], dtype=g.means.dtype)
        trans = torch.ones(height, width, dtype=g.means.dtype)
        done = torch.zeros(height, width, dtype=torch.bool)
        for n in torch.sort(depths[c].detach(), stable=True).indices.tolist():
            r = int(radii[c, n])
            if r <= 0:
                continue
            mx, my = means2d[c, n].tolist()
            box = (
                (tile_x >= math.floor((mx - r) / tile)) & (tile_x < math.ceil((mx + r) / tile))
                & (tile_y >= math.floor((my - r) / tile)) & (tile_y < math.ceil((my + r) / tile))
            )  # fmt: skip
            a, b, cc = conics[c, n]
            dx, dy = means2d[c, n, 0] - u, means2d[c, n, 1] - v
            sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
            alpha = torch.clamp_max(g.opacities[n] * torch.exp(-sigma), 0.999)
            use = box & ~done & (sigma >= 0) & (alpha >= 1 / 255)
            next_t = trans * (1 - alpha)
            stop = use & (next_t <= 1e-4)
            done, use = done | stop, use & ~stop
            acc = acc + torch.where(use, alpha * trans, torch.zeros_like(alpha))[..., None] * values[c, n]
            trans = torch.where(use, next_t, trans)
        images.append(acc)
        alphas.append(1 - trans)
    img, alpha = torch.stack(images), torch.stack(alphas)[..., None]
    out_rgb = img[..., :3] if background is None else img[..., :3] + (1 - alpha) * background[:, None, None]
    return RenderOutput(out_rgb, img[..., 3:-1], img[..., -1:] / alpha.clamp_min(1e-10), alpha)


def outputs(o: RenderOutput) -> list[torch.Tensor]:
    return [o.rgb, o.features, o.depth, o.alpha]


# --------------------------------------------------------------------------- spherical harmonics
@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_eval_sh_matches_gsplat_reference(degree):
    impl = pytest.importorskip("gsplat.cuda._torch_impl")
    gen = torch.Generator().manual_seed(degree)
    coeffs = torch.randn(50, 25, 3, dtype=F64, generator=gen)
    dirs = torch.randn(50, 3, dtype=F64, generator=gen) * 3.0
    expected = torch.clamp_min(impl._spherical_harmonics(degree, dirs, coeffs) + 0.5, 0.0)
    torch.testing.assert_close(eval_sh(degree, coeffs, dirs), expected, rtol=0, atol=1e-12)


def test_sh_basis_is_orthonormal():
    # Monte-Carlo-free check: a Fibonacci sphere integrates degree <= 8 products very accurately.
    n = 20000
    i = torch.arange(n, dtype=F64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    dirs = torch.stack([torch.sqrt(1 - z * z) * torch.cos(phi), torch.sqrt(1 - z * z) * torch.sin(phi), z], -1)
    basis = sh_basis(4, dirs)
    gram = basis.T @ basis * (4 * math.pi / n)
    torch.testing.assert_close(gram, torch.eye(25, dtype=F64), rtol=0, atol=2e-4)


def test_eval_sh_degree0_is_rgb_and_clamps_at_zero():
    rgb = torch.tensor([[0.1, 0.5, 1.7], [-0.4, 0.0, 0.3]], dtype=F64)
    col = eval_sh(0, rgb_to_sh(rgb)[:, None], torch.zeros(2, 3, dtype=F64))
    torch.testing.assert_close(col, rgb.clamp_min(0.0), rtol=0, atol=1e-15)


def test_eval_sh_errors():
    with pytest.raises(ValueError, match="needs 9 coefficients"):
        eval_sh(2, torch.zeros(4, 4, 3), torch.ones(4, 3))
    with pytest.raises(ValueError, match="SH degree"):
        sh_basis(5, torch.ones(1, 3))


# --------------------------------------------------------------------------- projection
def test_projection_matches_gsplat_reference():
    impl = pytest.importorskip("gsplat.cuda._torch_impl")
    g = random_scene(200, seed=0)
    g.means = g.means * torch.tensor([3.0, 3.0, 2.0], dtype=F64) - torch.tensor([0, 0, 3.0], dtype=F64)  # some behind / off-screen
    cams = two_cameras(40, 30)
    covars = quat_scale_to_covar(g.quats, g.scales)
    ours = project_gaussians(g.means, covars, cams.world_to_cam, cams.intrinsics, 40, 30, near=0.2, far=5.5)
    ref_cov, _ = impl._quat_scale_to_covar_preci(g.quats, g.scales, compute_preci=False)
    radii, means2d, depths, conics, _ = impl._fully_fused_projection(
        g.means, ref_cov, cams.world_to_cam, cams.intrinsics, 40, 30, 0.3, 0.2, 5.5
    )
    torch.testing.assert_close(covars, ref_cov, rtol=0, atol=1e-14)
    assert torch.equal(ours.radii, radii)
    vis = radii > 0
    assert 0 < int(vis.sum()) < vis.numel()  # the scene exercises both culled and visible Gaussians
    for a, b in [(ours.means2d, means2d), (ours.conics, conics), (ours.depths, depths)]:
        torch.testing.assert_close(a[vis], b[vis], rtol=1e-12, atol=1e-12)


def test_tile_lists_match_gsplat_reference():
    impl = pytest.importorskip("gsplat.cuda._torch_impl")
    g = random_scene(60, seed=3)
    cams = two_cameras(50, 35, dtype=torch.float32)
    g = g.to(torch.float32)
    proj = project_gaussians(g.means, quat_scale_to_covar(g.quats, g.scales), cams.world_to_cam, cams.intrinsics, 50, 35)
    lists = intersect_tiles(proj, 50, 35)
    _, isect_ids, flatten_ids = impl._isect_tiles(proj.means2d, proj.radii, proj.depths, 16, lists.tiles_x, lists.tiles_y)
    tile_n_bits = (lists.tiles_x * lists.tiles_y).bit_length()
    tiles_per_cam = lists.tiles_x * lists.tiles_y
    ref_tile = (isect_ids >> 32 >> tile_n_bits) * tiles_per_cam + ((isect_ids >> 32) & ((1 << tile_n_bits) - 1))
    for i, tile in enumerate(lists.tile_ids.tolist()):
        ours = lists.gaussian_ids[lists.offsets[i] : lists.offsets[i + 1]]
        assert torch.equal(ours, flatten_ids[ref_tile == tile].long()), f"tile {tile}"
    assert int(lists.counts.sum()) == isect_ids.numel()
    assert torch.all(lists.counts[:-1] >= lists.counts[1:])


# --------------------------------------------------------------------------- analytic single Gaussian
def test_single_gaussian_peak_alpha_depth_features():
    # Centre projects exactly onto the centre of pixel (12, 7): u = 24 * 0.25 / 2 + 9.5 = 12.5.
    g = one_gaussian((0.25, -0.125, 2.0), scale=0.05, opacity=0.7)
    cams = Cameras(torch.eye(4, dtype=F64)[None], pinhole(24.0, 9.5, 9.0), 32, 20)
    bg = torch.tensor([0.3, 0.1, 0.6], dtype=F64)
    out = render(g, cams, background=bg, backend="torch")
    rgb = torch.tensor([0.2, 0.5, 0.9], dtype=F64)
    torch.testing.assert_close(out.alpha[0, 7, 12, 0], torch.tensor(0.7, dtype=F64), rtol=0, atol=1e-14)
    torch.testing.assert_close(out.rgb[0, 7, 12], 0.7 * rgb + 0.3 * bg, rtol=0, atol=1e-14)
    torch.testing.assert_close(out.features[0, 7, 12], 0.7 * torch.tensor([1.0, -2.0], dtype=F64), rtol=0, atol=1e-14)
    covered = out.alpha[0, ..., 0] > 0
    assert covered.sum() > 4
    torch.testing.assert_close(out.depth[0][covered], torch.full_like(out.depth[0][covered], 2.0), rtol=0, atol=1e-12)
    assert torch.all(out.depth[0][~covered] == 0)
    # Background only where nothing was drawn; alpha peaks at the centre.
    torch.testing.assert_close(out.rgb[0][~covered], bg.expand(int((~covered).sum()), 3), rtol=0, atol=0)
    assert out.alpha.argmax() == 7 * 32 + 12


def test_single_gaussian_footprint_matches_ewa():
    # On the optical axis the Jacobian is diag(f/z): pixel variance = (f s / z)^2 + eps2d.
    f, s, z, opacity, u0 = 40.0, 0.3, 2.0, 0.99, 12.9
    g = one_gaussian((0.0, 0.0, z), scale=s, opacity=opacity)
    cams = Cameras(torch.eye(4, dtype=F64)[None], pinhole(f, u0, 8.5), 48, 17)
    row = render(g, cams, backend="torch").alpha[0, 8, :, 0]
    var = (f * s / z) ** 2 + 0.3
    u = torch.arange(48, dtype=F64) + 0.5
    expected = opacity * torch.exp(-0.5 * (u - u0) ** 2 / var)
    # gsplat's radius: eigenvalue b + sqrt(max(b^2 - det, 0.01)) = var + 0.1 for an isotropic footprint.
    radius = math.ceil(3 * math.sqrt(var + 0.1))
    assert radius == 19
    # The Gaussian is listed in tiles floor((u0 - r) / 16) .. ceil((u0 + r) / 16) - 1 = 0..1, so
    # pixels from u = 32 on get nothing although alpha would still exceed 1/255 there (as in gsplat).
    assert expected[32] > 1 / 255
    expected = torch.where((u < 32) & (expected >= 1 / 255), expected, torch.zeros_like(expected))
    torch.testing.assert_close(row, expected, rtol=0, atol=1e-14)
    assert int((row > 0).sum()) == 32


def test_front_to_back_order_and_memory_order_invariance():
    near_red = one_gaussian((0.0, 0.0, 2.0), scale=0.1, opacity=0.9, rgb=(1.0, 0.0, 0.0), feats=(1.0, 0.0))
    far_green = one_gaussian((0.0, 0.0, 3.0), scale=0.15, opacity=0.8, rgb=(0.0, 1.0, 0.0), feats=(0.0, 1.0))
    cams = Cameras(torch.eye(4, dtype=F64)[None], pinhole(30.0, 8.5, 8.5), 17, 17)
    a = render(Gaussians.cat([near_red, far_green]), cams, backend="torch")
    b = render(Gaussians.cat([far_green, near_red]), cams, backend="torch")
    for x, y in zip(outputs(a), outputs(b)):
        assert torch.equal(x, y)
    centre = a.rgb[0, 8, 8]
    torch.testing.assert_close(centre, torch.tensor([0.9, 0.1 * 0.8, 0.0], dtype=F64), rtol=0, atol=1e-14)
    torch.testing.assert_close(a.alpha[0, 8, 8, 0], torch.tensor(1 - 0.1 * 0.2, dtype=F64), rtol=0, atol=1e-14)
    expected_depth = (0.9 * 2.0 + 0.08 * 3.0) / 0.98
    torch.testing.assert_close(a.depth[0, 8, 8, 0], torch.tensor(expected_depth, dtype=F64), rtol=0, atol=1e-13)
    # An almost opaque wall in front stops the pixel before the far Gaussian (transmittance rule).
    wall = [one_gaussian((0.0, 0.0, 1.0 + 0.01 * i), 0.3, 0.95, rgb=(0.0, 0.0, 1.0)) for i in range(3)]
    c = render(Gaussians.cat([*wall, far_green]), cams, backend="torch")
    torch.testing.assert_close(c.rgb[0, 8, 8], torch.tensor([0.0, 0.0, 1 - 0.05**3], dtype=F64), rtol=0, atol=1e-14)
    wall4 = [one_gaussian((0.0, 0.0, 1.0 + 0.01 * i), 0.3, 0.95, rgb=(0.0, 0.0, 1.0)) for i in range(4)]
    d = render(Gaussians.cat([*wall4, far_green]), cams, backend="torch")
    # 0.05^4 < 1e-4: the 4th layer would end the pixel, so it is excluded (gsplat's exclusive stop).
    torch.testing.assert_close(d.alpha[0, 8, 8, 0], torch.tensor(1 - 0.05**3, dtype=F64), rtol=0, atol=1e-14)


def test_culling_near_far_and_behind():
    cams = Cameras(torch.eye(4, dtype=F64)[None], pinhole(20.0, 8.0, 8.0), 16, 16)
    for z, near, far in [(-1.0, 0.01, 1e10), (0.005, 0.01, 1e10), (0.0, 0.01, 1e10), (0.5, 0.6, 1e10), (5.0, 0.01, 4.0)]:
        g = one_gaussian((0.0, 0.0, z), 0.1, 0.9)
        g.means.requires_grad_(True)
        out = render(g, cams, near=near, far=far, backend="torch")
        assert torch.all(out.alpha == 0) and torch.all(out.depth == 0) and torch.all(out.rgb == 0), (z, near, far)
        # Culled Gaussians still backpropagate (zeros, no NaN from z <= 0), so training never breaks.
        sum(t.sum() for t in outputs(out)).backward()
        assert torch.equal(g.means.grad, torch.zeros_like(g.means)), (z, near, far)
    off_screen = render(one_gaussian((3.0, 0.0, 1.0), 0.01, 0.9), cams, backend="torch")
    assert torch.all(off_screen.alpha == 0)
    assert render(one_gaussian((0.0, 0.0, 0.7), 0.1, 0.9), cams, near=0.6, backend="torch").alpha.max() > 0.5


# --------------------------------------------------------------------------- against the sequential reference
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_matches_sequential_reference(dtype, monkeypatch):
    g = random_scene(250, seed=1, dtype=dtype)
    cams = two_cameras(37, 21, dtype)  # not a multiple of the tile size
    bg = torch.rand(2, 3, dtype=dtype, generator=torch.Generator().manual_seed(5))
    ref = reference_render(g, cams, bg)
    out = render(g, cams, background=bg, backend="torch")
    tol = 1e-12 if dtype == F64 else 1e-5
    for name, a, b in zip(["rgb", "features", "depth", "alpha"], outputs(out), outputs(ref)):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=name)
    # The scene is dense enough that the transmittance stop changes the image: without it, no match.
    import ff3r_ns.core.render_torch as render_torch

    monkeypatch.setattr(render_torch, "_LOG_T_MIN", -math.inf)
    no_stop = render(g, cams, background=bg, backend="torch")
    assert (no_stop.rgb - ref.rgb).abs().max() > 1e-4 and (ref.alpha > 0.999).float().mean() > 0.2


def _loss_grads(fn, g: Gaussians, bg: torch.Tensor, weights: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    params = {name: getattr(g, name).clone().requires_grad_(True) for name in PARAMS}
    bg = bg.clone().requires_grad_(True)
    loss = sum((o * w).sum() for o, w in zip(outputs(fn(Gaussians(**params), bg)), weights))
    loss.backward()
    return {**{name: p.grad for name, p in params.items()}, "background": bg.grad}


@pytest.mark.parametrize("knobs", [{}, {"block": 3, "chunk_elements": 2000}, {"block": 2, "save_elements": 50000}])
def test_gradients_match_autograd_of_reference(knobs, monkeypatch):
    """Custom backward (all block / chunk / save-or-recompute paths) vs autograd of the reference."""
    import ff3r_ns.core.render as render_module

    cams = two_cameras(26, 19)
    # In front of the others, opaque and centred on pixel (10, 9) of camera 0: its alpha clamps to
    # 0.999 there, where gsplat passes no gradient to opacity and footprint.
    clamped = one_gaussian((-2.5 * 1.5 / 20.8, 0.0, 1.5), scale=0.05, opacity=1.0, feats=(0.5, 0.5))
    clamped.sh = torch.cat([clamped.sh, torch.zeros(1, 3, 3, dtype=F64)], dim=1)
    g = Gaussians.cat([random_scene(120, seed=2, feature_dim=2), clamped])
    gen = torch.Generator().manual_seed(7)
    weights = [torch.randn(2, 19, 26, ch, dtype=F64, generator=gen) for ch in (3, 2, 1, 1)]
    bg = torch.tensor([0.2, 0.7, 0.4], dtype=F64)
    ref = _loss_grads(lambda gg, b: reference_render(gg, cams, b.expand(2, 3)), g, bg, weights)
    monkeypatch.setattr(render_module, "rasterize_torch", lambda *a, **k: rasterize_torch(*a, **knobs, **k))
    ours = _loss_grads(lambda gg, b: render(gg, cams, background=b, backend="torch"), g, bg, weights)
    for name in ref:
        assert ref[name].abs().max() > 0, name
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-10, atol=1e-10 * float(ref[name].abs().max()), msg=name)


def test_gradcheck_finite_differences():
    """Central differences in float64 on an 8x8 image with 3 large, overlapping, semi-transparent
    Gaussians (alpha > 1/255 everywhere and transmittance far from the stop, so the image is smooth)."""
    gen = torch.Generator().manual_seed(0)
    g = Gaussians(
        means=torch.tensor([[0.1, -0.05, 2.0], [-0.15, 0.1, 2.5], [0.05, 0.15, 3.0]], dtype=F64),
        quats=torch.randn(3, 4, dtype=F64, generator=gen),
        scales=torch.tensor([[0.9, 0.7, 0.8], [0.8, 1.1, 0.7], [1.2, 1.0, 0.9]], dtype=F64),
        opacities=torch.tensor([0.6, 0.75, 0.85], dtype=F64),
        sh=torch.randn(3, 4, 3, dtype=F64, generator=gen) * 0.3,
        features=torch.randn(3, 2, dtype=F64, generator=gen),
    )
    cams = Cameras(torch.eye(4, dtype=F64)[None], pinhole(10.0, 4.0, 4.0), 8, 8)

    def fn(means, quats, scales, opacities, sh, features, bg):
        out = render(Gaussians(means, quats, scales, opacities, sh, features), cams, background=bg, backend="torch")
        return torch.cat([t.reshape(-1) for t in outputs(out)])

    inputs = [getattr(g, name).clone().requires_grad_(True) for name in PARAMS]
    inputs.append(torch.tensor([0.1, 0.2, 0.3], dtype=F64, requires_grad=True))
    alpha = render(g, cams, backend="torch").alpha
    assert alpha.min() > 0.3 and alpha.max() < 0.99
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_gradient_through_frustum_clamp():
    """A large Gaussian outside 1.3x the frustum (x/z clamped in the Jacobian) still differentiates correctly."""
    g = one_gaussian((2.2, 0.0, 2.0), scale=0.9, opacity=0.9)
    cams = Cameras(torch.eye(4, dtype=F64)[None], pinhole(8.0, 4.0, 4.0), 8, 8)
    assert 2.2 / 2.0 > 1.3 * 0.5  # clamped: lim_x_pos = (8 - 4) / 8 + 0.3 * 0.5
    weights = torch.randn(1, 8, 8, 3, dtype=F64, generator=torch.Generator().manual_seed(3))

    def fn(means, scales):
        out = render(Gaussians(means, g.quats, scales, g.opacities, g.sh, g.features), cams, backend="torch")
        return (out.rgb * weights).sum()

    means, scales = g.means.clone().requires_grad_(True), g.scales.clone().requires_grad_(True)
    assert render(g, cams, backend="torch").alpha.min() > 1 / 255
    assert torch.autograd.gradcheck(fn, (means, scales), eps=1e-6, atol=1e-8, rtol=1e-6)


# --------------------------------------------------------------------------- API behaviour
def test_multiple_cameras_equal_single_renders_and_per_camera_background():
    g = random_scene(80, seed=4)
    cams = two_cameras(20, 18)
    bg = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    both = render(g, cams, background=bg, backend="torch")
    for c in range(2):
        single = render(g, cams[c : c + 1], background=bg[c], backend="torch")
        for x, y in zip(outputs(both), outputs(single)):
            torch.testing.assert_close(x[c : c + 1], y, rtol=0, atol=1e-14)
    assert not torch.allclose(both.rgb[0], both.rgb[1])


def test_sh_degree_features_flags_and_empty_set():
    g = random_scene(30, seed=6, feature_dim=4, sh_degree=2)
    cams = two_cameras(16, 16)
    full, low = render(g, cams, backend="torch"), render(g, cams, sh_degree=0, backend="torch")
    g0 = Gaussians(g.means, g.quats, g.scales, g.opacities, g.sh[:, :1], g.features)
    torch.testing.assert_close(low.rgb, render(g0, cams, backend="torch").rgb, rtol=0, atol=0)
    assert not torch.allclose(full.rgb, low.rgb)
    assert render(g, cams, render_features=False, backend="torch").features is None
    no_feat = Gaussians(g.means, g.quats, g.scales, g.opacities, g.sh, g.features[:, :0])
    assert render(no_feat, cams, backend="torch").features is None
    empty = render(Gaussians.empty(feature_dim=4).to(F64), cams, background=torch.ones(3, dtype=F64))
    assert empty.rgb.shape == (2, 16, 16, 3) and empty.features.shape == (2, 16, 16, 4)
    assert torch.all(empty.rgb == 1) and torch.all(empty.alpha == 0) and torch.all(empty.depth == 0)
    e = Gaussians.empty(feature_dim=4).to(F64)
    e.sh.requires_grad_(True)
    sum(t.sum() for t in outputs(render(e, cams))).backward()  # an empty set must not break training
    assert e.sh.grad.shape == (0, 1, 3)


def test_single_unbatched_camera_and_auto_backend():
    g = random_scene(40, seed=8)
    cams = two_cameras(16, 12)
    one = Cameras(cams.world_to_cam[1], cams.intrinsics[1], 16, 12)
    out = render(g, one)  # "auto" on CPU -> torch
    torch.testing.assert_close(out.rgb, render(g, cams, backend="torch").rgb[1:], rtol=0, atol=1e-14)


def test_input_errors():
    g = random_scene(10, seed=9)
    cams = two_cameras(16, 16)
    with pytest.raises(ValueError, match="needs CUDA"):
        render(g, cams, backend="gsplat")
    with pytest.raises(ValueError, match="backend must be one of"):
        render(g, cams, backend="opengl")
    with pytest.raises(ValueError, match="background must be"):
        render(g, cams, background=torch.zeros(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="sh_degree"):
        render(g, cams, sh_degree=2)
    batched = Gaussians(*(getattr(g, n)[None].expand(2, *getattr(g, n).shape) for n in PARAMS))
    with pytest.raises(ValueError, match="unbatched"):
        render(batched, cams)
    with pytest.raises(ValueError, match="at least one camera"):
        render(g, Cameras(torch.zeros(0, 4, 4, dtype=F64), torch.zeros(0, 3, 3, dtype=F64), 16, 16))


# --------------------------------------------------------------------------- GPU: gsplat vs torch
def _diff(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    d = (a.detach().float() - b.detach().float()).abs()
    return float(d.max()), float(d.mean())


def backend_agreement(device: str, backends: tuple[str, str] = ("gsplat", "torch")) -> dict[str, tuple[float, ...]]:
    """Render one random scene (3000 Gaussians, 2 cameras, 128x128, 8 feature channels, SH degree 1)
    with two backends and print the differences.

    Returns:
        ``name -> (max abs diff, mean abs diff)`` for rgb, features, depth, alpha and
        ``"depth (alpha > 0.05)"``; ``"grad <param>" -> (max abs, mean abs, relative L2, max |grad|)``
        for the gradients of a random linear loss (relative to the first backend).
    """
    g = Gaussians.random(3000, feature_dim=8, sh_degree=1, generator=torch.Generator().manual_seed(0)).to(device)
    w2c = torch.eye(4).repeat(2, 1, 1)
    w2c[1, :3, 3] = torch.tensor([0.2, -0.1, 0.3])
    cams = Cameras(w2c, pinhole(128.0, 64.0, 64.0, 2, torch.float32), 128, 128).to(device)
    bg = torch.tensor([0.1, 0.2, 0.3], device=device)
    gen = torch.Generator().manual_seed(1)
    weights = [torch.randn(2, 128, 128, ch, generator=gen).to(device) for ch in (3, 8, 1, 1)]
    results = []
    for backend in backends:
        params = {n: getattr(g, n).clone().requires_grad_(True) for n in PARAMS}
        out = render(Gaussians(**params), cams, background=bg, backend=backend)
        sum((o * w).sum() for o, w in zip(outputs(out), weights)).backward()
        results.append((out, {n: p.grad for n, p in params.items()}))
    (oa, ga), (ob, gb) = results
    report: dict[str, tuple[float, ...]] = {}
    for name, a, b in zip(["rgb", "features", "depth", "alpha"], outputs(oa), outputs(ob)):
        report[name] = _diff(a, b)
    # Expected depth divides by alpha: where a faint edge pixel flips its only Gaussian in or out
    # (alpha vs 1/255), depth jumps between 0 and z. Bound it where coverage is real.
    covered = (oa.alpha > 0.05) & (ob.alpha > 0.05)
    report["depth (alpha > 0.05)"] = _diff(oa.depth[covered], ob.depth[covered])
    print(f"\n{backends[0]} vs {backends[1]} on {device}")
    for name, (mx, mean) in list(report.items()):
        print(f"  {name:22s} max abs {mx:.3e}  mean abs {mean:.3e}")
    for name in PARAMS:
        mx, mean = _diff(ga[name], gb[name])
        rel = float((ga[name] - gb[name]).norm() / ga[name].norm())
        scale = float(ga[name].abs().max())
        report[f"grad {name}"] = (mx, mean, rel, scale)
        print(f"  grad {name:17s} max abs {mx:.3e}  mean abs {mean:.3e}  rel L2 {rel:.2e}  (max |grad| {scale:.2e})")
    return report


@pytest.mark.gpu
def test_gsplat_and_torch_backends_agree():
    """gsplat vs torch backend on the same scene; run with ``-s`` to see the numbers.

    Tolerances: gsplat runs in float32 with ``__expf`` (a few ulp) and a sequential per-pixel
    product for the transmittance; ours sums ``log(1 - alpha)``. That gives ~1e-6 differences per
    pixel; isolated pixels may flip a discrete decision (alpha vs 1/255, transmittance vs 1e-4),
    which moves that pixel by about 1/255 * |value| (features ~N(0, 1)): max < 2e-2, mean < 1e-3.
    Gradients are compared relative to their scale.
    """
    r = backend_agreement("cuda")
    for name in ["rgb", "features", "depth (alpha > 0.05)", "alpha"]:
        assert r[name][0] < 2e-2 and r[name][1] < 1e-3, name
    assert r["depth"][1] < 1e-3
    for name in PARAMS:
        mx, _, rel, scale = r[f"grad {name}"]
        assert rel < 1e-2 and mx < 5e-2 * scale, name


def test_gsplat_glue_arguments(monkeypatch):
    """The gsplat call (CPU-checkable part): one call, [C, N, 3 + F] colours, RGB+ED, float32; the
    returned last channel is taken as depth. gsplat itself is replaced by the torch rasterizer."""
    gsplat = pytest.importorskip("gsplat")
    import ff3r_ns.core.render as render_module

    calls = []

    def fake_rasterization(**kw):
        calls.append(kw)
        proj = project_gaussians(
            kw["means"], quat_scale_to_covar(kw["quats"], kw["scales"]), kw["viewmats"], kw["Ks"],
            kw["width"], kw["height"], eps2d=kw["eps2d"], near=kw["near_plane"], far=kw["far_plane"],
        )  # fmt: skip
        values = torch.cat([kw["colors"], proj.depths[..., None]], -1)
        img, alpha = rasterize_torch(proj, kw["opacities"], values, kw["width"], kw["height"])
        info = {"means2d": proj.means2d, "radii": proj.radii}
        return torch.cat([img[..., :-1], img[..., -1:] / alpha.clamp_min(1e-10)], -1), alpha, info

    monkeypatch.setattr(gsplat, "rasterization", fake_rasterization)
    monkeypatch.setattr(render_module, "_resolve_backend", lambda backend, g: backend)
    g = random_scene(50, seed=11, feature_dim=5, dtype=torch.float32)
    cams = two_cameras(24, 20, torch.float32)
    bg = torch.tensor([0.5, 0.5, 0.5])
    a = render(g, cams, backend="gsplat", background=bg, near=0.1, far=50.0)
    b = render(g, cams, backend="torch", background=bg, near=0.1, far=50.0)
    kw = calls[0]
    assert kw["colors"].shape == (2, 50, 8) and kw["sh_degree"] is None and kw["render_mode"] == "RGB+ED"
    assert kw["viewmats"].dtype == torch.float32 and (kw["near_plane"], kw["far_plane"], kw["eps2d"]) == (0.1, 50.0, 0.3)
    # splatfacto's layout for densification: dense [C, N] info, absgrad only when asked for
    assert kw["packed"] is False and kw["absgrad"] is False and not a.absgrad
    assert a.means2d.shape == (2, 50, 2) and a.radii.shape == (2, 50)
    render(g, cams, backend="gsplat", absgrad=True)
    assert calls[-1]["absgrad"] is True
    for x, y in zip(outputs(a), outputs(b)):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="float32"):
        render(g.to(F64), cams, backend="gsplat")
