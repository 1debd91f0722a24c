"""Loss terms of the annotation-free training (ff3r_ns.core.losses) on hand-made inputs with known answers."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ff3r_ns.core.cameras import Cameras
from ff3r_ns.core.losses import (
    LossConfig, LossInputs, LossTerms, compute_losses, cosine_distance, depth_distillation_loss, feature_rendering_loss,
    feature_warping_loss, photometric_loss, pose_distillation_loss, reprojection_loss, resize_maps, view_pairs, warp_views,
)

H = W = 8
FOCAL, DEPTH, BASELINE = 10.0, 2.0, 0.4  # shift = FOCAL * BASELINE / DEPTH = 2 pixels exactly


def stereo_cameras(dtype=torch.float32) -> Cameras:
    """View 0 at the origin, view 1 moved +0.4 along x: a pixel at depth 2 moves 2 pixels left from view 0 to 1."""
    k = torch.tensor([[FOCAL, 0, W / 2], [0, FOCAL, H / 2], [0, 0, 1]], dtype=dtype).expand(2, 3, 3)
    w2c = torch.eye(4, dtype=dtype).repeat(2, 1, 1)
    w2c[1, 0, 3] = -BASELINE
    return Cameras(w2c, k, W, H)


def consistent_features(dim: int = 5, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """``[2, H, W, D]``: one random map over world columns 0..W+1, seen by view 0 at columns 0..W-1 and by
    view 1 at columns 2..W+1 (the 2-pixel disparity of :func:`stereo_cameras`)."""
    g = torch.randn(H, W + 2, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return torch.stack([g[:, :W], g[:, 2:]])


# --------------------------------------------------------------------------- photometric
@pytest.mark.parametrize("kind", ["l1_ssim", "mse"])
def test_photometric_zero_for_identical_images(kind):
    img = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(0))
    assert float(photometric_loss(img, img.clone(), kind=kind)) == pytest.approx(0.0, abs=1e-6)
    assert float(photometric_loss(img, 1 - img, kind=kind)) > 0.1


def test_photometric_known_values():
    a, b = torch.full((1, 12, 12, 3), 0.5), torch.full((1, 12, 12, 3), 0.7)
    assert float(photometric_loss(a, b, kind="mse")) == pytest.approx(0.04, abs=1e-7)
    assert float(photometric_loss(a, b, ssim_weight=0.0)) == pytest.approx(0.2, abs=1e-7)
    # constant images: SSIM's structure term is 1, luminance (2*.5*.7 + C1) / (.25 + .49 + C1)
    c1 = 0.01**2
    lum = (2 * 0.5 * 0.7 + c1) / (0.25 + 0.49 + c1)
    assert float(photometric_loss(a, b, ssim_weight=0.2)) == pytest.approx(0.8 * 0.2 + 0.2 * (1 - lum), abs=1e-5)
    with pytest.raises(ValueError, match="kind"):
        photometric_loss(a, b, kind="l2")
    with pytest.raises(ValueError, match="shapes differ"):
        photometric_loss(a, b[:, :6])


# --------------------------------------------------------------------------- features
def test_cosine_distance_known_values_and_mask():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])  # cos 1, 0, -1
    assert float(cosine_distance(x, y)) == pytest.approx((0 + 1 + 2) / 3)
    assert float(cosine_distance(x, y, torch.tensor([True, False, True]))) == pytest.approx(1.0)
    assert float(cosine_distance(x, y, torch.zeros(3, dtype=torch.bool))) == 0.0


def test_feature_rendering_loss_scale_invariant_and_angle():
    t = F.normalize(torch.randn(2, 4, 4, 6, generator=torch.Generator().manual_seed(1)), dim=-1)
    assert float(feature_rendering_loss(3.0 * t, t)) == pytest.approx(0.0, abs=1e-6)
    # rotate every feature by 60 degrees in a plane orthogonal to it: 1 - cos 60 = 0.5
    ortho = torch.randn(t.shape, generator=torch.Generator().manual_seed(7))
    ortho = F.normalize(ortho - (ortho * t).sum(-1, keepdim=True) * t, dim=-1)
    rotated = math.cos(math.pi / 3) * t + math.sin(math.pi / 3) * ortho
    assert float(feature_rendering_loss(rotated, t)) == pytest.approx(0.5, abs=1e-5)


def test_resize_maps_is_area_mean_and_commutes_with_affine_decoder():
    x = torch.randn(2, 8, 6, 3, generator=torch.Generator().manual_seed(2))
    small = resize_maps(x, (4, 3))
    assert torch.allclose(small[0, 0, 0], x[0, :2, :2].mean(dim=(0, 1)), atol=1e-6)
    dec = torch.nn.Linear(3, 5)
    assert torch.allclose(dec(small), resize_maps(dec(x), (4, 3)), atol=1e-5)


# --------------------------------------------------------------------------- warping
def test_view_pairs():
    i, j = view_pairs(4)
    assert len(i) == 12 and bool((i != j).all())
    i, j = view_pairs(5, window=1)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (3, 4), (4, 3)]


def test_warp_views_disparity_and_visibility():
    cams, depth = stereo_cameras(), torch.full((2, H, W), DEPTH)
    warp = warp_views(depth, cams, (torch.tensor([0, 1]), torch.tensor([1, 0])))
    u0 = torch.arange(W) + 0.5
    assert torch.allclose(warp.uv[0, 3, :, 0], u0 - 2, atol=1e-5)  # view 0 -> 1: two pixels left
    assert torch.allclose(warp.uv[1, 3, :, 0], u0 + 2, atol=1e-5)
    assert torch.allclose(warp.uv[0, :, 0, 1], torch.arange(H) + 0.5, atol=1e-5)  # rows unchanged
    assert warp.visible[0].sum(-1).tolist() == [6] * H and not warp.visible[0, :, :2].any()
    assert warp.visible[1].sum(-1).tolist() == [6] * H and not warp.visible[1, :, 6:].any()


def test_warping_loss_zero_for_consistent_features():
    feats = consistent_features()
    loss, visible = feature_warping_loss(feats, feats, torch.full((2, H, W), DEPTH), stereo_cameras())
    assert float(loss) < 1e-6
    assert float(visible) == pytest.approx(0.75)  # 6 of 8 columns in each direction
    # the decoder's scale does not matter (cosine)
    loss2, _ = feature_warping_loss(4.0 * feats, feats, torch.full((2, H, W), DEPTH), stereo_cameras())
    assert float(loss2) < 1e-6


def test_warping_loss_grows_with_inconsistency():
    feats = consistent_features()
    direction = torch.randn(feats.shape[-1], generator=torch.Generator().manual_seed(3))
    depth, cams = torch.full((2, H, W), DEPTH), stereo_cameras()
    losses = []
    for bias in (0.0, 0.3, 1.0, 3.0):
        teacher = feats.clone()
        teacher[0] += bias * direction  # view 0's teacher disagrees with what view 1 sees of the same points
        losses.append(float(feature_warping_loss(feats, teacher, depth, cams)[0]))
    assert losses[0] < 1e-6
    assert all(b > a + 1e-3 for a, b in zip(losses, losses[1:])), losses


def test_warping_occlusion_test_masks_occluded_pixels():
    feats = consistent_features()
    depth, cams = torch.full((2, H, W), DEPTH), stereo_cameras()
    garbage = feats.clone()
    garbage[1, :, 3:5] = torch.randn(H, 2, feats.shape[-1], generator=torch.Generator().manual_seed(4))
    # Without an occluder, the garbage in view 1 is seen by view 0's pixels: the loss is large.
    assert float(feature_warping_loss(garbage, garbage, depth, cams)[0]) > 0.05
    # With a nearer occluder at view 1's columns 3-4, view 0's pixels behind it fail the depth test, and
    # view 1's occluder pixels land where view 0 sees the wall: the loss is 0 again.
    occluded = depth.clone()
    occluded[1, :, 3:5] = 1.0
    loss, visible = feature_warping_loss(garbage, garbage, occluded, cams)
    assert float(loss) < 1e-6
    assert float(visible) == pytest.approx(0.5)  # 4 of 8 columns in each direction


def test_warping_loss_gradient_matches_finite_differences():
    feats = consistent_features(dim=3, dtype=torch.float64)
    teacher = feats + 0.3 * torch.randn(feats.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    depth = torch.full((2, H, W), DEPTH, dtype=torch.float64)
    cams = stereo_cameras(torch.float64)
    dec = feats.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: feature_warping_loss(d, teacher, depth, cams)[0], (dec,), eps=1e-6, atol=1e-7)


def test_warping_single_view_and_bad_shapes():
    f = torch.randn(1, H, W, 4)
    loss, vis = feature_warping_loss(f, f, torch.ones(1, H, W), stereo_cameras()[:1])
    assert float(loss) == 0.0 and float(vis) == 0.0
    with pytest.raises(ValueError, match="must agree"):
        feature_warping_loss(f, f[..., :2], torch.ones(1, H, W), stereo_cameras()[:1])


# --------------------------------------------------------------------------- distillation
def test_distillation_known_values():
    p = torch.zeros(2, 9)
    t = torch.zeros(2, 9)
    t[0, 0], t[1, 1] = 0.5, 3.0  # Huber(0.5) = 0.125, Huber(3) = 3 - 0.5 = 2.5 with delta 1
    assert float(pose_distillation_loss(p, t)) == pytest.approx((0.125 + 2.5) / 18)
    d, td = torch.ones(1, 2, 2), torch.tensor([[[1.0, 3.0], [0.0, 1.0]]])
    assert float(depth_distillation_loss(d, td, "mse")) == pytest.approx((4 + 1) / 4)
    assert float(depth_distillation_loss(d, td, "l1")) == pytest.approx((2 + 1) / 4)
    mask = torch.tensor([[[True, True], [False, True]]])
    assert float(depth_distillation_loss(d, td, "l1", mask)) == pytest.approx(2 / 3)
    # the teacher is frozen: no gradient reaches it
    tt = td.clone().requires_grad_(True)
    depth_distillation_loss(d.clone().requires_grad_(True), tt).backward()
    assert tt.grad is None


# --------------------------------------------------------------------------- all terms
def _inputs(distill: bool) -> LossInputs:
    g = torch.Generator().manual_seed(6)
    feats = consistent_features(dim=4)
    cams = stereo_cameras()
    return LossInputs(
        images=torch.rand(2, H, W, 3, generator=g), rendered_rgb=torch.rand(2, H, W, 3, generator=g),
        rendered_features=feats, teacher=torch.randn(2, H // 2, W // 2, 4, generator=g),
        depth=torch.full((2, H, W), DEPTH), cameras=cams, pose_enc=torch.zeros(2, 9),
        teacher_pose_enc=torch.full((2, 9), 0.1) if distill else None,
        teacher_depth=torch.full((2, H, W), 2.5) if distill else None,
    )


def test_compute_losses_total_is_weighted_sum():
    cfg = LossConfig(photometric_weight=0.7, feature_weight=1.3, warping_weight=0.4, distillation=True)
    dec = torch.nn.Identity()
    terms = compute_losses(cfg, _inputs(True), dec)
    expected = (0.7 * terms.photometric + 1.3 * terms.feature + 0.4 * terms.warping + 0.5 * terms.reprojection
                + 10.0 * terms.distill_pose + 1.0 * terms.distill_depth)
    assert float(terms.total) == pytest.approx(float(expected), rel=1e-6)
    assert float(terms.distill_depth) == pytest.approx(0.25)
    assert float(terms.distill_pose) == pytest.approx(0.5 * 0.01)
    assert set(terms.scalars()) == {"total", "photometric", "feature", "warping", "reprojection", "distill_pose",
                                    "distill_depth", "warping_visible", "reprojection_visible"}


def test_compute_losses_switches():
    terms = compute_losses(LossConfig(warping=False, feature=False, reprojection=False), _inputs(False), torch.nn.Identity())
    assert terms.feature is None and terms.warping is None and terms.distill_pose is None and terms.reprojection is None
    assert float(terms.total) == pytest.approx(float(terms.photometric))
    with pytest.raises(ValueError, match="geometry-teacher"):
        compute_losses(LossConfig(distillation=True), _inputs(False), torch.nn.Identity())


def test_loss_terms_mean_and_config_validation():
    a = LossTerms(total=torch.tensor(1.0), photometric=torch.tensor(2.0))
    b = LossTerms(total=torch.tensor(3.0), photometric=torch.tensor(4.0))
    m = LossTerms.mean([a, b])
    assert float(m.total) == 2.0 and float(m.photometric) == 3.0 and m.feature is None
    for bad in ({"feature_resolution": 0.0}, {"warping_depth_tolerance": 0.0}, {"photometric_kind": "l2"}, {"warping_window": -1}):
        with pytest.raises(ValueError):
            LossConfig(**bad)


# --------------------------------------------------------------------------- reprojection
def _ramp_images() -> torch.Tensor:
    """``[2, H, W, 3]``: a colour ramp over world columns, seen with the 2-pixel disparity of :func:`stereo_cameras`."""
    cols = torch.arange(W + 2, dtype=torch.float32) * 0.05 + 0.1
    world = torch.stack([cols, 0.5 * cols, 1 - cols], dim=-1)[None].expand(H, -1, -1)
    return torch.stack([world[:, :W], world[:, 2:]])


def test_reprojection_zero_for_consistent_geometry_and_pulls_wrong_depth_back():
    images, cams = _ramp_images(), stereo_cameras()
    loss, visible = reprojection_loss(images, torch.full((2, H, W), DEPTH), cams)
    assert float(loss) < 1e-6 and float(visible) == pytest.approx(0.75)
    # depth 10% too far: the disparity is 10/11 of 2 px, each reprojected pixel is 0.18 px off on a ramp of
    # 0.05 per pixel and channel (mean slope over the channels (1 + 0.5 + 1) / 3)
    depth = torch.full((2, H, W), DEPTH * 1.1, requires_grad=True)
    loss, _ = reprojection_loss(images, depth, cams)
    assert float(loss.detach()) == pytest.approx(0.05 * (2 - 20 / 11) * (2.5 / 3), rel=0.05)
    loss.backward()
    assert float(depth.grad.sum()) > 0  # gradient descent brings the depth nearer, towards the truth


def test_compute_losses_includes_reprojection():
    cfg = LossConfig(feature=False, warping=False, reprojection_weight=0.3)
    terms = compute_losses(cfg, _inputs(False), torch.nn.Identity())
    assert float(terms.total) == pytest.approx(float(terms.photometric + 0.3 * terms.reprojection), rel=1e-6)
    assert terms.reprojection_visible is not None


# --------------------------------------------------------------------------- known answers (issue 18 item 3)
# Views of a textured plane (analytic depth) and of a generated room (ray-traced depth), with feature maps that
# are a smooth function of the world point each pixel sees, computed independently of ff3r_ns.core.cameras:
# exact geometry must give (near) zero warping loss, wrong depth or pose a clearly larger one.
PLANE_Z, PS, PF = 4.0, 32, 20.0  # plane z = 4 (world), 32x32 views, focal 20 px
_TEX = torch.tensor([[1.3, -0.7, 0.4, 2.1], [0.5, 1.9, -1.2, 0.3]])


def _rot_y(c: float, s: float) -> torch.Tensor:
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_x(c: float, s: float) -> torch.Tensor:
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def plane_cameras(size: int = PS) -> Cameras:
    """Three OpenCV cameras looking at the plane: the reference, one moved +2 in x and yawed towards -x (cos 0.96,
    sin 0.28), one moved and pitched; all camera-to-world rotations written out, then inverted."""
    rots = [torch.eye(3), _rot_y(0.96, -0.28), _rot_x(0.98, 0.2) @ _rot_y(0.995, 0.0998749)]
    centres = [torch.zeros(3), torch.tensor([2.0, 0.0, 0.0]), torch.tensor([-0.5, 0.8, 0.3])]
    w2c = torch.eye(4).repeat(3, 1, 1)
    for i, (r, c) in enumerate(zip(rots, centres)):
        w2c[i, :3, :3], w2c[i, :3, 3] = r.T, -r.T @ c
    f = PF * size / PS
    k = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]]).expand(3, 3, 3)
    return Cameras(w2c, k, size, size)


def plane_geometry(cams: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``[S, h, w]`` z-depth of the plane and ``[S, h, w, 3]`` world points, by ray-plane intersection."""
    h, w = cams.height, cams.width
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    depth, points = [], []
    for i in range(len(cams)):
        k, w2c = cams.intrinsics[i], cams.world_to_cam[i]
        r, t = w2c[:3, :3].T, -w2c[:3, :3].T @ w2c[:3, 3]  # camera-to-world
        ray = torch.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], torch.ones_like(u)], -1) @ r.T
        z = (PLANE_Z - t[2]) / ray[..., 2]  # the ray has unit camera-z, so this is the z-depth
        depth.append(z)
        points.append(t + z[..., None] * ray)
    return torch.stack(depth), torch.stack(points)


def texture(points: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` world points -> ``[..., 8]`` smooth features of the plane coordinates (x, y)."""
    a = points[..., :2] @ _TEX
    return torch.cat([torch.sin(a), torch.cos(a)], dim=-1)


def test_plane_warp_matches_hand_projection():
    cams = plane_cameras()
    depth, _ = plane_geometry(cams)
    assert float(depth[0, 8, 20]) == pytest.approx(4.0)
    warp = warp_views(depth, cams, (torch.tensor([0]), torch.tensor([1])))
    # pixel (u, v) = (20.5, 8.5) of view 0 sees (0.9, -1.5, 4); relative to camera 1 at (2, 0, 0): (-1.1, -1.5, 4);
    # camera 1's axes (columns of its camera-to-world rotation): x (0.96, 0, 0.28), z (-0.28, 0, 0.96), so
    # x_cam = -1.056 + 1.12 = 0.064, y_cam = -1.5, z_cam = 0.308 + 3.84 = 4.148
    u, v = 16 + 20 * 0.064 / 4.148, 16 + 20 * -1.5 / 4.148
    assert warp.uv[0, 8, 20].tolist() == pytest.approx([u, v], abs=1e-4)
    assert bool(warp.visible[0, 8, 20])
    # and back: view 1's depth at that spot is 4.148, so the reverse warp lands on (20.5, 8.5)
    back = warp_views(depth, cams, (torch.tensor([1]), torch.tensor([0])))
    px = int(u), int(v)
    lands = back.uv[0, px[1], px[0]]
    # pixel centre (int(u) + 0.5, int(v) + 0.5) of view 1 is near (u, v), so it lands near (20.5, 8.5)
    assert lands.tolist() == pytest.approx([20.5, 8.5], abs=1.0)


def test_plane_warping_loss_zero_for_exact_geometry_larger_for_wrong_depth_or_pose():
    cams = plane_cameras()
    depth, points = plane_geometry(cams)
    feats = texture(points)
    exact, vis = feature_warping_loss(feats, feats, depth, cams)
    assert float(exact) < 1e-3 and float(vis) > 0.4
    too_far, _ = feature_warping_loss(feats, feats, 1.2 * depth, cams, depth_tolerance=10.0)
    w2c = cams.world_to_cam.clone()
    w2c[1:, 0, 3] += 0.3  # views 1, 2 shifted 0.3 along their x axis
    shifted, _ = feature_warping_loss(feats, feats, depth, Cameras(w2c, cams.intrinsics, PS, PS), depth_tolerance=10.0)
    assert float(too_far) > 10 * float(exact) + 0.02, (float(exact), float(too_far))
    assert float(shifted) > 10 * float(exact) + 0.02, (float(exact), float(shifted))
    # the reprojection loss of a textured image behaves the same way
    images = 0.5 + 0.5 * feats[..., :3]
    rep, _ = reprojection_loss(images, depth, cams, window=0)
    rep_far, _ = reprojection_loss(images, 1.2 * depth, cams, window=0, depth_tolerance=10.0)
    assert float(rep) < 5e-3 and float(rep_far) > 5 * float(rep) + 0.01


def test_plane_warping_at_lower_feature_resolution():
    full, low = plane_cameras(), plane_cameras().resized(PS // 2, PS // 2)
    depth, points = plane_geometry(full)
    # intrinsics scale with the image (edges at integers, centres at +0.5): half the focal and principal point
    assert torch.allclose(low.intrinsics[0], torch.tensor([[10.0, 0, 8], [0, 10.0, 8], [0, 0, 1]]))
    depth_low, points_low = plane_geometry(low)
    warp_low = warp_views(depth_low, low, (torch.tensor([0]), torch.tensor([1])))
    warp_full = warp_views(depth, full, (torch.tensor([0]), torch.tensor([1])))
    # low-res pixel (r, c) has its centre where full-res pixels (2r, 2c) .. (2r+1, 2c+1) meet: same world point,
    # so its warped coordinates are half of the full-res projection of that point
    from ff3r_ns.core.cameras import project_points

    uv_full, _ = project_points(points_low[0].reshape(1, -1, 3), full[1:2])
    assert torch.allclose(warp_low.uv[0].reshape(-1, 2), uv_full[0] / 2, atol=1e-4)
    assert (warp_full.visible.float().mean() - warp_low.visible.float().mean()).abs() < 0.05
    # the training path: full-res rendered features and depth, teacher at half resolution, identity decoder
    feats, teacher = texture(points), texture(points_low)
    inputs = LossInputs(
        images=torch.zeros(3, PS, PS, 3), rendered_rgb=torch.zeros(3, PS, PS, 3), rendered_features=feats, teacher=teacher,
        depth=depth, cameras=full, pose_enc=torch.zeros(3, 9),
    )
    cfg = LossConfig(photometric=False, feature=True, reprojection=False, warping_window=0)
    terms = compute_losses(cfg, inputs, torch.nn.Identity())
    assert float(terms.feature) < 2e-3 and float(terms.warping) < 2e-3 and float(terms.warping_visible) > 0.4
    wrong = compute_losses(cfg, replace(inputs, depth=1.2 * depth), torch.nn.Identity())
    assert float(wrong.warping) > 5 * float(terms.warping) + 0.005, (float(terms.warping), float(wrong.warping))


def test_plane_occluded_pixels_are_masked():
    cams = plane_cameras()
    depth, points = plane_geometry(cams)
    feats = texture(points)
    # a box in front of the plane, seen by view 1 only at its columns 8..15: nearer depth, garbage features
    occluded, garbage = depth.clone(), feats.clone()
    occluded[1, :, 8:16] *= 0.5
    garbage[1, :, 8:16] = -feats[1, :, 8:16]
    pairs = (torch.tensor([0]), torch.tensor([1]))
    warp = warp_views(occluded, cams, pairs)
    target_col = warp.uv[0, ..., 0]
    hidden = (target_col > 8.5) & (target_col < 15.5)  # land on the box (away from its bilinear edges)
    assert hidden.sum() > 20 and not warp.visible[0][hidden].any()
    rows = warp.uv[0, ..., 1]
    free = ((target_col > 0.5) & (target_col < 7) | (target_col > 17) & (target_col < PS - 0.5)) & (rows > 0.5) & (rows < PS - 0.5)
    assert free.sum() > 200
    assert warp.visible[0][free].all()
    masked, _ = feature_warping_loss(garbage, garbage, occluded, cams)
    unmasked, _ = feature_warping_loss(garbage, garbage, occluded, cams, depth_tolerance=1e6)
    assert float(masked) < 1e-3 < 0.05 < float(unmasked)


@pytest.fixture(scope="module")
def room():
    """Three consecutive 32x32 views of generated room 0 with exact depth; features of the world points each
    pixel sees, from the generator's own ray construction (not ff3r_ns.core.cameras)."""
    import numpy as np

    from ff3r_ns.data.generate import SceneSpec, generate_scene
    from ff3r_ns.data.raycast import camera_rays

    views = generate_scene(SceneSpec(seed=0, num_views=24, width=32, height=32, shadows=False))
    idx = [0, 1, 2]
    pts = []
    for i in idx:
        o, d = camera_rays(views.world_to_cam[i].astype(np.float64), views.intrinsics[i].astype(np.float64), 32, 32)
        pts.append(o[None] + views.depth[i].reshape(-1, 1).astype(np.float64) * d)
    points = torch.tensor(np.stack(pts)).float().reshape(3, 32, 32, 3)
    a = torch.randn(3, 8, generator=torch.Generator().manual_seed(0)) * 2.0
    feats = torch.cat([torch.sin(points @ a), torch.cos(points @ a)], dim=-1)
    cams = Cameras(torch.tensor(views.world_to_cam[idx]), torch.tensor(views.intrinsics[idx]), 32, 32)
    return torch.tensor(views.depth[idx]), cams, points, feats, torch.tensor(views.images[idx])


def test_room_warp_matches_independent_projection_and_true_visibility(room):
    import numpy as np

    depth, cams, points, _, _ = room
    src, dst = view_pairs(3)
    warp = warp_views(depth, cams, (src, dst))
    for p, (i, j) in enumerate(zip(src.tolist(), dst.tolist())):
        pw = points[i].reshape(-1, 3).double().numpy()
        w2c, k = cams.world_to_cam[j].double().numpy(), cams.intrinsics[j].double().numpy()
        cam = pw @ w2c[:3, :3].T + w2c[:3, 3]
        uv = (cam @ k.T)[:, :2] / cam[:, 2:]
        assert np.abs(uv - warp.uv[p].reshape(-1, 2).double().numpy()).max() < 1e-3
        # ray-traced truth: the point is what view j sees at the pixel it falls in (nearest pixel, 5%)
        col, row = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
        inside = (col >= 0) & (col < 32) & (row >= 0) & (row < 32) & (cam[:, 2] > 0)
        seen = np.full(len(pw), np.nan)
        seen[inside] = depth[j].numpy()[row[inside], col[inside]]
        truth = inside & (np.abs(cam[:, 2] - seen) <= 0.05 * seen)
        got = warp.visible[p].reshape(-1).numpy()
        assert (truth != got).mean() < 0.08, (i, j, (truth != got).mean())
        assert 0.5 < got.mean() and (~truth & got).mean() < 0.02  # rarely calls a hidden point visible


def test_room_warping_loss_zero_for_exact_depth_larger_for_wrong(room):
    depth, cams, _, feats, images = room
    exact, vis = feature_warping_loss(feats, feats, depth, cams)
    assert float(exact) < 5e-3 and float(vis) > 0.7
    no_occlusion_test, _ = feature_warping_loss(feats, feats, depth, cams, depth_tolerance=1e6)
    assert float(no_occlusion_test) > 5 * float(exact)  # the furniture hides parts of the room from other views
    too_far, _ = feature_warping_loss(feats, feats, 1.2 * depth, cams, depth_tolerance=1e6)
    w2c = cams.world_to_cam.clone()
    w2c[1:, 0, 3] += 0.1
    shifted, _ = feature_warping_loss(feats, feats, depth, Cameras(w2c, cams.intrinsics, 32, 32), depth_tolerance=1e6)
    assert float(too_far) > float(no_occlusion_test) + 0.005 and float(shifted) > float(no_occlusion_test) + 0.005
    rep, _ = reprojection_loss(images, depth, cams)
    rep_far, _ = reprojection_loss(images, 1.2 * depth, cams)
    assert float(rep_far) > float(rep)


def test_warping_gradients_reach_rendered_features_not_geometry():
    cams = plane_cameras()
    depth, points = plane_geometry(cams)
    feats = texture(points)
    rendered = (feats + 0.1).requires_grad_(True)
    d = depth.clone().requires_grad_(True)
    w2c = cams.world_to_cam.clone().requires_grad_(True)
    teacher = feats.clone()
    inputs = LossInputs(
        images=torch.zeros(3, PS, PS, 3), rendered_rgb=torch.zeros(3, PS, PS, 3), rendered_features=rendered,
        teacher=teacher, depth=d, cameras=Cameras(w2c, cams.intrinsics, PS, PS), pose_enc=torch.zeros(3, 9),
    )
    only_warp = LossConfig(photometric=False, feature=False, reprojection=False, feature_resolution=1.0)
    compute_losses(only_warp, inputs, torch.nn.Identity()).total.backward()
    assert rendered.grad is not None and rendered.grad.abs().sum() > 0
    # the rendered features of the *target* view j are pulled, at every view (all are targets of some pair)
    assert all(rendered.grad[i].abs().sum() > 0 for i in range(3))
    assert d.grad is None and w2c.grad is None  # geometry guides the features, is not bent by them
    # switched to differentiable geometry, the depth does get a gradient
    compute_losses(replace(only_warp, warping_detach_geometry=False), inputs, torch.nn.Identity()).total.backward()
    assert d.grad is not None and d.grad.abs().sum() > 0
