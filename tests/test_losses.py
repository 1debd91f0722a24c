"""Loss terms of the annotation-free training (ff3r_ns.core.losses) on hand-made inputs with known answers."""

from __future__ import annotations

import math

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
