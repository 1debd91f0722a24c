"""Tests of the C++ CPU backend (``render(..., backend="cpu")``, :mod:`ff3r_ns.core.render_cpu`).

The reference is today's pure-torch compositor (``backend="torch"``, itself checked against gsplat's
rules in ``test_render.py``): values within 1e-5 and gradients (means, quats, scales, opacities, sh,
features, background and the ``means2d`` tensor densification reads) within 1e-4 relative L2 in
float32; 1e-12 and 1e-10 in float64, where the two agree to rounding. The scenes mix overlapping,
behind-camera, off-screen, tiny, huge, flat and clamped (opacity ~1) Gaussians in two cameras whose
images are not multiples of the tile size. Then closed-form cases, edge cases, threads and the
fallback without a compiler. The C++ library compiles on first use (a few seconds, then cached).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import ff3r_ns.core.render as render_module
from ff3r_ns.core import render_cpu, render_cpu_lib
from ff3r_ns.core.cameras import Cameras
from ff3r_ns.core.gaussians import Gaussians, rgb_to_sh
from ff3r_ns.core.render import RenderOutput, render
from ff3r_ns.core.render_torch import project_gaussians, quat_scale_to_covar

from _render_cases import one_gaussian, pinhole  # noqa: E402

F32, F64 = torch.float32, torch.float64
PARAMS = ("means", "quats", "scales", "opacities", "sh", "features")
needs_ext = pytest.mark.skipif(not render_cpu.is_available(), reason=f"C++ CPU renderer: {render_cpu.extension_info().get('error')}")


# --------------------------------------------------------------------------- helpers
def mixed_scene(n: int, seed: int, dtype=F32, feature_dim: int = 3) -> Gaussians:
    """Overlapping Gaussians of every kind: behind the camera, off-screen, tiny, huge, flat, opaque."""
    gen = torch.Generator().manual_seed(seed)
    g = Gaussians.random(n, feature_dim=feature_dim, sh_degree=1, scale=0.08, generator=gen).to(F64)
    u = torch.rand(n, generator=gen, dtype=F64)
    g.means = g.means * torch.tensor([1.6, 1.6, 1.0], dtype=F64) - torch.tensor([0.0, 0.0, 1.5], dtype=F64)  # z in [1.5, 3.5]
    g.means[u < 0.08, 2] -= 3.0  # behind the camera or at its plane
    g.scales[(u >= 0.08) & (u < 0.2)] *= 1e-3  # tiny: the 0.3 px^2 blur dominates
    g.scales[(u >= 0.2) & (u < 0.25)] *= 15.0  # huge: cover the whole image
    g.scales[(u >= 0.25) & (u < 0.5), 2] *= 0.02  # flat discs, often seen edge-on
    g.opacities = 0.02 + 0.97 * torch.rand(n, generator=gen, dtype=F64)
    g.opacities[(u >= 0.2) & (u < 0.25)] *= 0.05  # faint
    g.opacities[(u >= 0.5) & (u < 0.55)] = 1.0  # alpha clamps at 0.999
    return g.to(dtype)


def two_cameras(width: int, height: int, dtype=F32) -> Cameras:
    w2c = torch.eye(4, dtype=dtype).repeat(2, 1, 1)
    angle = 0.25
    w2c[1, 0, 0], w2c[1, 0, 2], w2c[1, 2, 0], w2c[1, 2, 2] = math.cos(angle), math.sin(angle), -math.sin(angle), math.cos(angle)
    w2c[1, :3, 3] = torch.tensor([0.3, -0.1, 0.4], dtype=dtype)
    return Cameras(w2c, pinhole(0.8 * width, width / 2, height / 2, 2, dtype), width, height)


def outputs(o: RenderOutput) -> list[torch.Tensor]:
    return [o.rgb, o.features, o.depth, o.alpha]


def run(g: Gaussians, cams: Cameras, backend: str, bg: torch.Tensor, seed: int = 0):
    """Render with every input requiring grad; a random linear loss on every output; return outputs and grads."""
    params = {name: getattr(g, name).clone().requires_grad_(True) for name in PARAMS}
    bg = bg.clone().requires_grad_(True)
    out = render(Gaussians(**params), cams, background=bg, backend=backend)
    out.means2d.retain_grad()
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outputs(out) if o is not None)
    loss.backward()
    grads = {**{name: p.grad for name, p in params.items()}, "background": bg.grad, "means2d": out.means2d.grad}
    return out, grads


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


# --------------------------------------------------------------------------- against the reference
@needs_ext
@pytest.mark.parametrize(
    "dtype, n, seed, size",
    [(F32, 800, 0, (37, 21)), (F32, 2000, 1, (64, 48)), (F32, 500, 2, (16, 16)), (F64, 800, 0, (37, 21)), (F64, 1500, 3, (50, 33))],
)
def test_matches_reference_values_and_gradients(dtype, n, seed, size):
    g, cams = mixed_scene(n, seed, dtype), two_cameras(*size, dtype=dtype)
    bg = torch.tensor([0.2, 0.6, 0.3], dtype=dtype)
    (a, ga), (b, gb) = run(g, cams, "cpu", bg), run(g, cams, "torch", bg)
    assert torch.equal(a.radii, b.radii) and int((a.radii > 0).sum()) > n // 2
    assert int((a.radii == 0).sum()) > 0  # some are culled
    tol = 1e-5 if dtype == F32 else 1e-12
    for name, x, y in zip(["rgb", "features", "depth", "alpha"], outputs(a), outputs(b)):
        torch.testing.assert_close(x, y, rtol=tol, atol=tol, msg=name)
    assert (b.alpha > 0.999).any() and (b.alpha < 0.9).any()  # saturated (early stop) and thin pixels
    gtol = 1e-4 if dtype == F32 else 1e-10
    for name in gb:
        assert gb[name].abs().max() > 0, name
        assert rel_l2(ga[name], gb[name]) < gtol, (name, rel_l2(ga[name], gb[name]))
    torch.testing.assert_close(a.means2d, b.means2d, rtol=tol, atol=tol)


@needs_ext
@pytest.mark.parametrize("feature_dim", [0, 4, 8, 13, 16, 30])
def test_matches_reference_for_every_channel_count(feature_dim):
    """Blended channels D = 3 + F + depth of 4, 8, 12, 17, 20 and 34: the kernels pad them to whole vectors
    of 8 (the padded widths 8, 16 and 24 have their own compiled kernels, 40 the generic one), and the
    padding must never leak into outputs or gradients."""
    g, cams = mixed_scene(600, 20 + feature_dim, F32, feature_dim=max(feature_dim, 1)), two_cameras(40, 27)
    g.features = g.features[:, :feature_dim].contiguous()  # [N, 0]: RGB and depth only
    bg = torch.tensor([0.4, 0.1, 0.7])
    (a, ga), (b, gb) = run(g, cams, "cpu", bg), run(g, cams, "torch", bg)
    for name, x, y in zip(["rgb", "features", "depth", "alpha"], outputs(a), outputs(b)):
        if y is None:
            assert x is None and feature_dim == 0
            continue
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5, msg=name)
    for name in gb:
        if gb[name] is None:
            assert ga[name] is None
            continue
        assert rel_l2(ga[name], gb[name]) < 1e-4, (name, rel_l2(ga[name], gb[name]))


@needs_ext
@pytest.mark.parametrize("dtype", [F32, F64])
def test_projection_matches_reference(dtype):
    """C++ EWA projection vs render_torch.project_gaussians: values, radii and gradients, with
    Gaussians behind the camera, beyond the near / far planes and outside the 1.3x frustum clamp."""
    g = mixed_scene(500, 11, dtype)
    g.means = g.means * torch.tensor([2.5, 2.5, 1.5], dtype=dtype)  # many outside the clamped frustum
    g.quats[:3] = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1e-14, 0.0, 0.0, 0.0], [2.0, -1.0, 0.5, 0.1]], dtype=dtype)
    cams = two_cameras(40, 30, dtype)
    gen = torch.Generator().manual_seed(1)
    weights = [torch.randn(2, 500, k, generator=gen, dtype=dtype) for k in (2, 3, 1)]
    results = []
    for fn in (render_cpu.project_cpu, None):
        leaves = [t.clone().requires_grad_(True) for t in (g.means, g.quats, g.scales)]
        if fn is None:
            p = project_gaussians(leaves[0], quat_scale_to_covar(leaves[1], leaves[2]), cams.world_to_cam, cams.intrinsics, 40, 30, near=0.5, far=4.0)
        else:
            p = fn(*leaves, cams.world_to_cam, cams.intrinsics, 40, 30, near=0.5, far=4.0)
        vis = p.radii > 0
        loss = sum(((t * w).sum(-1) * vis).sum() for t, w in zip([p.means2d, p.conics, p.depths[..., None]], weights))
        loss.backward()
        results.append((p, [t.grad for t in leaves]))
    (a, ga), (b, gb) = results
    assert torch.equal(a.radii, b.radii) and 0 < int((a.radii > 0).sum()) < 1000
    tol = 1e-5 if dtype == F32 else 1e-12
    vis = a.radii > 0
    for x, y in [(a.means2d, b.means2d), (a.conics, b.conics), (a.depths, b.depths)]:
        torch.testing.assert_close(x[vis], y[vis], rtol=tol, atol=tol)
    for x, y in zip(ga, gb):
        assert rel_l2(x, y) < (1e-4 if dtype == F32 else 1e-10)


@needs_ext
@pytest.mark.parametrize("dtype", [F32, F64])
def test_projection_backward_of_a_sparse_subset_matches_reference(dtype):
    """Backward gathers the Gaussians with a non-zero cotangent into lane blocks: with thousands of
    Gaussians of which a scattered fifth get one (many blocks, chunks and partial blocks), gradients match
    the reference, the others get exactly zero, and one or two threads give the same bits."""
    n = 5000
    g = mixed_scene(n, 31, dtype)
    cams = two_cameras(40, 30, dtype)
    keep = torch.rand(n, generator=torch.Generator().manual_seed(2)) < 0.2
    gen = torch.Generator().manual_seed(3)
    weights = [torch.randn(2, n, k, generator=gen, dtype=dtype) * keep[None, :, None] for k in (2, 3, 1)]

    def grads(fn, threads: int) -> list[torch.Tensor]:
        leaves = [t.clone().requires_grad_(True) for t in (g.means, g.quats, g.scales)]
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            if fn is None:
                p = project_gaussians(leaves[0], quat_scale_to_covar(leaves[1], leaves[2]), cams.world_to_cam, cams.intrinsics, 40, 30)
            else:
                p = fn(*leaves, cams.world_to_cam, cams.intrinsics, 40, 30)
            vis = p.radii > 0
            sum(((t * w).sum(-1) * vis).sum() for t, w in zip([p.means2d, p.conics, p.depths[..., None]], weights)).backward()
        finally:
            torch.set_num_threads(before)
        return [t.grad for t in leaves]

    one, two, ref = grads(render_cpu.project_cpu, 1), grads(render_cpu.project_cpu, 2), grads(None, 1)
    for x, y, z in zip(one, two, ref):
        assert torch.equal(x, y)
        assert torch.all(x[~keep] == 0) and x[keep].abs().max() > 0
        assert rel_l2(x, z) < (1e-4 if dtype == F32 else 1e-10)


@needs_ext
def test_tile_lists_transpose_gives_every_rank_its_entries_in_tile_order():
    """Backward sums a Gaussian's rows through the lists' transpose (first, pos): the entries of rank k are
    exactly the list positions holding k, in increasing tile order, for one camera (the range path, on one
    and on two threads) and for two (the per-camera path)."""
    g = mixed_scene(40_000, 23, F32)
    for cams in (two_cameras(70, 45), Cameras(two_cameras(70, 45).world_to_cam[:1], two_cameras(70, 45).intrinsics[:1], 70, 45)):
        proj = project_gaussians(g.means, quat_scale_to_covar(g.quats, g.scales), cams.world_to_cam, cams.intrinsics, 70, 45)
        threads = torch.get_num_threads()
        try:
            results = []
            for nt in (1, 2):
                torch.set_num_threads(nt)
                results.append(render_cpu._lists(proj.means2d, proj.radii, proj.depths, 70, 45, 4, None))
        finally:
            torch.set_num_threads(threads)
        assert all(torch.equal(x, y) for x, y in zip(*results))
        lists = results[0]
        assert lists.order.numel() > 2 * 8192  # two ranges on two threads (one camera)
        tile_of = torch.repeat_interleave(torch.arange(lists.offsets.numel() - 1), lists.offsets[1:] - lists.offsets[:-1])
        expect = torch.sort(lists.ranks * (lists.offsets.numel() - 1) + tile_of).indices  # by rank, then tile (unique keys)
        assert torch.equal(lists.pos.long(), expect)
        counts = torch.bincount(lists.ranks, minlength=lists.order.numel())
        assert torch.equal(lists.first, torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]))


@needs_ext
def test_tile_lists_match_reference():
    """Per-tile lists equal render_torch.intersect_tiles' (same tiles, same front-to-back order, ties
    in depth kept in memory order)."""
    from ff3r_ns.core.render_torch import intersect_tiles

    g, cams = mixed_scene(700, 13, F32), two_cameras(50, 35)
    g.means[100:140] = g.means[100:101]  # equal depths
    proj = project_gaussians(g.means, quat_scale_to_covar(g.quats, g.scales), cams.world_to_cam, cams.intrinsics, 50, 35)
    offsets, ranks, order = render_cpu.build_tile_lists(proj.means2d, proj.radii, proj.depths, 50, 35)
    ref = intersect_tiles(proj, 50, 35)
    assert int(offsets[-1]) == ref.gaussian_ids.numel()
    assert torch.equal(offsets[1:] > offsets[:-1], torch.isin(torch.arange(offsets.numel() - 1), ref.tile_ids))
    for i, tile in enumerate(ref.tile_ids.tolist()):
        entries = ranks[offsets[tile] : offsets[tile + 1]]
        assert torch.all(entries[1:] > entries[:-1])  # ranks increase along a list
        assert torch.equal(order[entries], ref.gaussian_ids[ref.offsets[i] : ref.offsets[i + 1]]), tile


@needs_ext
def test_tile_lists_of_one_camera_split_between_threads():
    """One camera with many Gaussians (the lists are then built by ranges of Gaussians on every thread)
    gives the reference's lists, the same on one thread and on two."""
    from ff3r_ns.core.render_torch import intersect_tiles

    g, cams = mixed_scene(40_000, 21, F32), two_cameras(70, 45)
    g.means[1000:1400] = g.means[1000:1001]  # equal depths
    proj = project_gaussians(g.means, quat_scale_to_covar(g.quats, g.scales), cams.world_to_cam[:1], cams.intrinsics[:1], 70, 45)
    assert int((proj.radii > 0).sum()) > 3 * 8192  # the split path runs
    threads = torch.get_num_threads()
    try:
        lists = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            lists.append(render_cpu.build_tile_lists(proj.means2d, proj.radii, proj.depths, 70, 45))
    finally:
        torch.set_num_threads(threads)
    for other in lists[1:]:
        assert all(torch.equal(x, y) for x, y in zip(lists[0], other))
    offsets, ranks, order = lists[1]
    ref = intersect_tiles(proj, 70, 45)
    assert int(offsets[-1]) == ref.gaussian_ids.numel()
    for i, tile in enumerate(ref.tile_ids.tolist()):
        entries = ranks[offsets[tile] : offsets[tile + 1]]
        assert torch.equal(order[entries], ref.gaussian_ids[ref.offsets[i] : ref.offsets[i + 1]]), tile


@needs_ext
def test_camera_gradients_for_pose_alignment():
    """With cameras that need gradients (test-time pose alignment) the cpu backend differentiates
    world_to_cam and intrinsics as the reference does."""
    g, cams = mixed_scene(300, 12, F64), two_cameras(30, 24, F64)
    grads = []
    for backend in ("cpu", "torch"):
        w2c, k = cams.world_to_cam.clone().requires_grad_(True), cams.intrinsics.clone().requires_grad_(True)
        out = render(g, Cameras(w2c, k, 30, 24), backend=backend)
        (out.rgb.square().sum() + out.depth.sum() + out.features.sum()).backward()
        grads.append((w2c.grad, k.grad))
    for x, y in zip(*grads):
        assert x.abs().max() > 0 and rel_l2(x, y) < 1e-10


# --------------------------------------------------------------------------- closed-form cases
@needs_ext
@pytest.mark.parametrize("dtype", [F32, F64])
def test_single_gaussian_centre_is_opacity_times_colour(dtype):
    g = one_gaussian((0.25, -0.125, 2.0), scale=0.05, opacity=0.7, dtype=dtype)  # centre on pixel (12, 7)
    cams = Cameras(torch.eye(4, dtype=dtype)[None], pinhole(24.0, 9.5, 9.0, dtype=dtype), 32, 20)
    bg = torch.tensor([0.3, 0.1, 0.6], dtype=dtype)
    out = render(g, cams, background=bg, backend="cpu")
    tol = 1e-6 if dtype == F32 else 1e-14
    rgb = torch.tensor([0.2, 0.5, 0.9], dtype=dtype)
    torch.testing.assert_close(out.alpha[0, 7, 12, 0], torch.tensor(0.7, dtype=dtype), rtol=0, atol=tol)
    torch.testing.assert_close(out.rgb[0, 7, 12], 0.7 * rgb + 0.3 * bg, rtol=0, atol=tol)
    torch.testing.assert_close(out.features[0, 7, 12], 0.7 * torch.tensor([1.0, -2.0], dtype=dtype), rtol=0, atol=tol)
    covered = out.alpha[0, ..., 0] > 0  # depth = sum(w z) / alpha loses digits where alpha ~ 1/255
    torch.testing.assert_close(out.depth[0][covered], torch.full_like(out.depth[0][covered], 2.0), rtol=10 * tol, atol=0)
    assert torch.all(out.depth[0][~covered] == 0) and out.alpha.argmax() == 7 * 32 + 12
    assert out.radii.dtype == torch.int32 and out.radii.shape == (1, 1) and int(out.radii) > 0


@needs_ext
def test_single_gaussian_footprint_is_the_closed_form():
    """An isotropic Gaussian on the optical axis projects to variance (f s / z)^2 + eps2d in both axes:
    every pixel's alpha is o exp(-r^2 / 2 var), zero where that is below 1/255; the radius is gsplat's
    ceil(3 sqrt(var + 0.1))."""
    f, s, z, o = 24.0, 0.05, 2.0, 0.8
    g = one_gaussian((0.0, 0.0, z), scale=s, opacity=o)
    cams = Cameras(torch.eye(4, dtype=F64)[None], pinhole(f, 12.5, 7.5), 29, 19)  # centre on pixel (12, 7)
    out = render(g, cams, backend="cpu")
    var = (f * s / z) ** 2 + 0.3
    ys, xs = torch.meshgrid(torch.arange(19, dtype=F64) + 0.5, torch.arange(29, dtype=F64) + 0.5, indexing="ij")
    expected = o * torch.exp(-((xs - 12.5) ** 2 + (ys - 7.5) ** 2) / (2 * var))
    expected = torch.where(expected >= 1 / 255, expected, torch.zeros_like(expected))
    torch.testing.assert_close(out.alpha[0, ..., 0], expected, rtol=0, atol=1e-12)
    assert 10 < int((expected > 0).sum()) < 19 * 29  # the cut at 1/255 is inside the image
    assert int(out.radii) == math.ceil(3 * math.sqrt(var + 0.1))
    torch.testing.assert_close(out.features[0], expected[..., None] * torch.tensor([1.0, -2.0], dtype=F64), rtol=0, atol=1e-12)


@needs_ext
def test_opacity_scales_alpha_until_the_clamp():
    cams = Cameras(torch.eye(4, dtype=F64)[None], pinhole(40.0, 12.5, 8.5), 25, 17)
    alphas = {o: render(one_gaussian((0.0, 0.0, 2.0), 0.2, o), cams, backend="cpu").alpha[0, ..., 0] for o in (0.2, 0.4, 1.0)}
    both = alphas[0.2] >= 1 / 255
    assert int(both.sum()) > 20
    torch.testing.assert_close(alphas[0.4][both], 2 * alphas[0.2][both], rtol=1e-13, atol=0)
    assert float(alphas[1.0].max()) == pytest.approx(0.999, abs=1e-15)  # alpha = min(0.999, o * exp(-sigma))
    # At the clamped centre the opacity gets no gradient from that pixel (gsplat's rule).
    g = one_gaussian((0.0, 0.0, 2.0), 0.2, 1.0)
    g.opacities.requires_grad_(True)
    render(g, cams, backend="cpu").alpha[0, 8, 12, 0].backward()
    assert float(g.opacities.grad) == 0.0


@needs_ext
def test_front_to_back_order_and_early_stop():
    near_red = one_gaussian((0.0, 0.0, 2.0), scale=0.1, opacity=0.9, rgb=(1.0, 0.0, 0.0), feats=(1.0, 0.0))
    far_green = one_gaussian((0.0, 0.0, 3.0), scale=0.15, opacity=0.8, rgb=(0.0, 1.0, 0.0), feats=(0.0, 1.0))
    cams = Cameras(torch.eye(4, dtype=F64)[None], pinhole(30.0, 8.5, 8.5), 17, 17)
    a = render(Gaussians.cat([near_red, far_green]), cams, backend="cpu")
    b = render(Gaussians.cat([far_green, near_red]), cams, backend="cpu")
    for x, y in zip(outputs(a), outputs(b)):
        assert torch.equal(x, y)  # memory order does not matter
    torch.testing.assert_close(a.rgb[0, 8, 8], torch.tensor([0.9, 0.1 * 0.8, 0.0], dtype=F64), rtol=0, atol=1e-14)
    torch.testing.assert_close(a.depth[0, 8, 8, 0], torch.tensor((0.9 * 2.0 + 0.08 * 3.0) / 0.98, dtype=F64), rtol=0, atol=1e-13)
    # A near, almost opaque Gaussian hides the far one.
    wall = one_gaussian((0.0, 0.0, 1.0), 0.3, 0.999, rgb=(0.0, 0.0, 1.0))
    c = render(Gaussians.cat([far_green, wall]), cams, backend="cpu")
    assert float(c.rgb[0, 8, 8, 1]) < 1e-3 * 0.8 + 1e-12 and float(c.rgb[0, 8, 8, 2]) > 0.998
    # 0.05^4 < 1e-4: a 4th layer of 0.95 would end the pixel, so it is excluded (gsplat's exclusive stop).
    walls = [one_gaussian((0.0, 0.0, 1.0 + 0.01 * i), 0.3, 0.95, rgb=(0.0, 0.0, 1.0)) for i in range(4)]
    d = render(Gaussians.cat([*walls, far_green]), cams, backend="cpu")
    torch.testing.assert_close(d.alpha[0, 8, 8, 0], torch.tensor(1 - 0.05**3, dtype=F64), rtol=0, atol=1e-14)
    torch.testing.assert_close(d.rgb[0, 8, 8], torch.tensor([0.0, 0.0, 1 - 0.05**3], dtype=F64), rtol=0, atol=1e-14)


# --------------------------------------------------------------------------- edge cases
@needs_ext
def test_non_finite_gaussians_are_culled():
    base = mixed_scene(200, 4, F32)
    bad = mixed_scene(5, 5, F32)
    bad.means[0, 0] = math.nan
    bad.scales[1, 2] = math.inf
    bad.opacities[2] = math.nan
    bad.quats[3, 1] = -math.inf
    bad.features[4, 0] = math.nan
    g = Gaussians.cat([base, bad])
    cams, bg = two_cameras(30, 22), torch.tensor([0.1, 0.2, 0.3])
    (a, ga), (b, gb) = run(g, cams, "cpu", bg), run(base, cams, "cpu", bg)
    for x, y in zip(outputs(a), outputs(b)):
        assert torch.isfinite(x).all()
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6)
    assert torch.all(a.radii[:, 200:] == 0) and torch.equal(a.radii[:, :200], b.radii)
    assert torch.isfinite(a.means2d).all() and torch.isfinite(ga["means2d"]).all()
    for name in PARAMS:  # the finite Gaussians' gradients are untouched
        torch.testing.assert_close(ga[name][:200], gb[name], rtol=1e-5, atol=1e-7, msg=name)


@needs_ext
def test_empty_behind_and_enormous():
    cams = two_cameras(24, 18, F64)
    behind = mixed_scene(50, 6, F64)
    behind.means[:, 2] = -behind.means[:, 2].abs() - 1.0
    a, ga = run(behind, cams, "cpu", torch.ones(3, dtype=F64))
    assert torch.all(a.alpha == 0) and torch.all(a.depth == 0) and torch.all(a.rgb == 1) and torch.all(a.radii == 0)
    assert torch.all(ga["means"] == 0) and a.means2d.shape == (2, 50, 2)
    empty = render(Gaussians.empty(feature_dim=2).to(F64), cams, backend="cpu")
    assert empty.rgb.shape == (2, 18, 24, 3) and torch.all(empty.alpha == 0)
    # A footprint far beyond int32 pixels covers the image instead of overflowing.
    huge = one_gaussian((0.0, 0.0, 2.0), 1e8, 0.5)
    for backend in ("cpu", "torch"):
        out = render(huge, cams, backend=backend)
        assert int(out.radii.min()) == 2**30
        torch.testing.assert_close(out.alpha, torch.full_like(out.alpha, 0.5), rtol=0, atol=1e-12)
    # A zero-size image renders empty through render() on every backend, with zero gradients.
    for backend in ("cpu", "torch"):
        g = mixed_scene(30, 4, F64, feature_dim=4)
        means = g.means.clone().requires_grad_(True)
        g = Gaussians(means=means, quats=g.quats, scales=g.scales, opacities=g.opacities, sh=g.sh, features=g.features)
        out = render(g, Cameras(cams.world_to_cam, cams.intrinsics, 0, 18), backend=backend, background=torch.ones(3, dtype=F64))
        assert out.rgb.shape == (2, 18, 0, 3) and out.features.shape == (2, 18, 0, 4) and out.alpha.shape == (2, 18, 0, 1)
        (out.rgb.sum() + out.features.sum()).backward()
        assert means.grad is not None and torch.all(means.grad == 0)
    with pytest.raises(ValueError, match="must not be negative"):
        render(huge, Cameras(cams.world_to_cam, cams.intrinsics, -1, 18), backend="cpu")


@needs_ext
@pytest.mark.parametrize("size", [(0, 18), (24, 0), (0, 0)])
def test_zero_size_images_render_empty(size):
    """render_cpu on a zero-width or zero-height image returns empty images and zero gradients."""
    g, cams = mixed_scene(80, 14, F64), two_cameras(24, 18, F64)
    leaves = {name: getattr(g, name).clone().requires_grad_(True) for name in ("means", "quats", "scales", "opacities")}
    colors = torch.rand(2, 80, 5, dtype=F64, requires_grad=True)
    img, depth, alpha, means2d, radii = render_cpu.render_cpu(
        *leaves.values(), colors, cams.world_to_cam, cams.intrinsics, *size
    )  # fmt: skip
    width, height = size
    assert img.shape == (2, height, width, 5) and depth.shape == alpha.shape == (2, height, width, 1)
    assert means2d.shape == (2, 80, 2) and radii.shape == (2, 80)
    (img.sum() + depth.sum() + alpha.sum()).backward()
    for t in [*leaves.values(), colors]:
        assert t.grad is not None and torch.all(t.grad == 0)


@needs_ext
def test_empty_and_all_invalid_sets_render_the_background():
    cams, bg = two_cameras(20, 14, F32), torch.tensor([0.25, 0.5, 0.75])
    empty = Gaussians.empty(feature_dim=3)
    img, depth, alpha, means2d, radii = render_cpu.render_cpu(
        empty.means, empty.quats, empty.scales, empty.opacities, torch.zeros(2, 0, 6), cams.world_to_cam, cams.intrinsics, 20, 14
    )  # fmt: skip
    assert img.shape == (2, 14, 20, 6) and torch.all(img == 0) and torch.all(alpha == 0) and torch.all(depth == 0)
    assert radii.shape == (2, 0)
    nan = mixed_scene(40, 15, F32)
    nan.means[:, 0] = math.nan
    out, grads = run(nan, cams, "cpu", bg)
    assert torch.all(out.alpha == 0) and torch.all(out.depth == 0) and torch.all(out.radii == 0)
    assert torch.equal(out.rgb, bg.expand_as(out.rgb)) and torch.all(out.features == 0)
    # (means get NaN gradients through render()'s SH evaluation of NaN view directions, not from the renderer)
    for name in ("quats", "scales", "opacities", "features", "means2d"):
        assert torch.all(grads[name] == 0), name
    assert torch.isfinite(grads["background"]).all() and grads["background"].abs().sum() > 0


@needs_ext
def test_list_memory_limit_raises_a_clear_error(monkeypatch):
    g, cams = mixed_scene(300, 7, F32), two_cameras(40, 30)
    monkeypatch.setattr(render_cpu, "MAX_LIST_BYTES", 10_000)
    with pytest.raises(MemoryError, match=r"intersections for 2 camera\(s\) of 40x30 .* need [0-9.]+ [kM]B .* over the limit of 10.0 kB"):
        render(g, cams, backend="cpu")


def _rasterize_with_grads(inputs: list[torch.Tensor], radii, depths, width, height, weights):
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    img, alpha = render_cpu.rasterize_cpu(*leaves, radii, depths, width, height)
    ((img * weights[0]).sum() + (alpha * weights[1]).sum()).backward()
    return [img, alpha] + [t.grad for t in leaves]


@needs_ext
def test_threads_do_not_change_results_and_calls_are_thread_safe():
    """The C++ part is bitwise independent of the thread count (torch's own GEMMs in the projection
    need not be); concurrent renders from several Python threads give the serial result."""
    g, cams = mixed_scene(600, 8, F32), two_cameras(48, 40)
    proj = project_gaussians(g.means, quat_scale_to_covar(g.quats, g.scales), cams.world_to_cam, cams.intrinsics, 48, 40)
    colors = torch.randn(2, 600, 7, generator=torch.Generator().manual_seed(0))
    inputs = [proj.means2d.detach(), proj.conics.detach(), g.opacities, colors]
    weights = [torch.randn(2, 40, 48, 7), torch.randn(2, 40, 48, 1)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _rasterize_with_grads(inputs, proj.radii, proj.depths, 48, 40, weights)
        torch.set_num_threads(2)
        two = _rasterize_with_grads(inputs, proj.radii, proj.depths, 48, 40, weights)
    finally:
        torch.set_num_threads(threads)
    for x, y in zip(one, two):
        assert torch.equal(x, y)
    bg = torch.tensor([0.5, 0.5, 0.5])
    two = run(g, cams, "cpu", bg)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: run(g, cams, "cpu", bg), range(3)))
    for out, grads in results:
        assert all(torch.equal(x, y) for x, y in zip(outputs(out), outputs(two[0])))
        assert all(torch.equal(grads[n], two[1][n]) for n in grads)


# --------------------------------------------------------------------------- backend selection
@needs_ext
def test_backend_selection():
    g = mixed_scene(20, 9, F32)
    assert "cpu" in render_module.BACKENDS
    assert render_module._resolve_backend("auto", g) == "cpu"
    assert render_module._resolve_backend("auto", g.to(torch.bfloat16)) == "torch"
    assert render_module._resolve_backend("cpu", g) == "cpu"
    with pytest.raises(ValueError, match="needs CPU tensors"):
        render_module._resolve_backend("cpu", g.to("meta"))
    with pytest.raises(ValueError, match="float32 or float64"):
        render_cpu.rasterize_cpu(
            torch.zeros(1, 1, 2, dtype=torch.float16), torch.ones(1, 1, 3, dtype=torch.float16), torch.ones(1, dtype=torch.float16),
            torch.ones(1, 1, 3, dtype=torch.float16), torch.ones(1, 1, dtype=torch.int32), torch.ones(1, 1, dtype=torch.float16), 8, 8,
        )  # fmt: skip
    cams = two_cameras(20, 20)
    torch.testing.assert_close(render(g, cams).rgb, render(g, cams, backend="cpu").rgb, rtol=0, atol=0)


def test_falls_back_to_torch_with_one_warning(monkeypatch, caplog):
    """Without a compiler (here: disabled) the cpu backend warns once and renders with the torch backend."""
    monkeypatch.setattr(render_cpu_lib, "_state", {})
    monkeypatch.setenv("FF3R_CPU_EXTENSION", "0")
    g, cams = mixed_scene(60, 10, F32), two_cameras(20, 16)
    with caplog.at_level(logging.WARNING, logger="ff3r_ns.core.render_cpu"):
        a = render(g, cams, backend="cpu")
        b = render(g, cams)
    assert render_module._resolve_backend("auto", g) == "torch"
    warnings = [r for r in caplog.records if "C++ CPU renderer is not available" in r.getMessage()]
    assert len(warnings) == 1 and "FF3R_CPU_EXTENSION=0" in warnings[0].getMessage()
    c = render(g, cams, backend="torch")
    for x, y, z in zip(outputs(a), outputs(b), outputs(c)):
        assert torch.equal(x, z) and torch.equal(y, z)
    assert render_cpu.extension_info()["available"] is False


@needs_ext
def test_backward_reuses_its_scratch_buffer_without_stale_rows(monkeypatch):
    """Backward keeps its per-intersection gradient buffer between calls (render_cpu._scratch_rows): a large
    render, then a small one in the reused (dirty) buffer, gives the small one's gradients from a fresh buffer;
    above MAX_SCRATCH_BYTES a buffer is allocated per call and not kept."""
    bg = torch.tensor([0.1, 0.2, 0.3])
    small, small_cams = mixed_scene(300, 41), two_cameras(30, 20)
    render_cpu._SCRATCH.__dict__.clear()
    _, fresh = run(small, small_cams, "cpu", bg)
    run(mixed_scene(3000, 42), two_cameras(64, 48), "cpu", bg)  # fills a larger buffer
    kept = render_cpu._SCRATCH.rows
    _, reused = run(small, small_cams, "cpu", bg)
    assert render_cpu._SCRATCH.rows is kept  # the same storage, now holding stale rows past the small run's
    for name in fresh:
        assert torch.equal(fresh[name], reused[name]), name
    monkeypatch.setattr(render_cpu, "MAX_SCRATCH_BYTES", 1024)
    _, uncached = run(small, small_cams, "cpu", bg)
    assert render_cpu._SCRATCH.rows is kept
    for name in fresh:
        assert torch.equal(fresh[name], uncached[name]), name
