"""Camera conventions, VGGT pose encoding, unprojection and alignment."""

import math

import pytest
import torch

from ff3r_ns.core.cameras import (
    Cameras,
    Sim3,
    align_cameras,
    extri_intri_to_pose_encoding,
    intrinsics_matrix,
    invert_rigid,
    mat_to_quat,
    opencv_w2c_to_opengl_c2w,
    opengl_c2w_to_opencv_w2c,
    pose_encoding_to_extri_intri,
    project_points,
    quat_to_mat,
    to_homogeneous,
    umeyama,
    unproject_depth,
)


def random_w2c(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    r = quat_to_mat(torch.randn(n, 4, generator=g, dtype=torch.float64))
    t = torch.randn(n, 3, 1, generator=g, dtype=torch.float64)
    return to_homogeneous(torch.cat([r, t], -1))


def test_quaternion_round_trip_including_near_180_degrees():
    q = torch.randn(1000, 4, dtype=torch.float64)
    # rotations by ~180 degrees (w ~ 0) exercise the non-w pivots of Shepperd's method
    q[:10, 3] = 1e-9
    r = quat_to_mat(q)
    assert torch.allclose(quat_to_mat(mat_to_quat(r)), r, atol=1e-10)
    assert (mat_to_quat(r)[:, 3] >= 0).all()
    assert torch.allclose(r @ r.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(r), atol=1e-12)


def test_quaternion_order_is_xyzw_like_vggt():
    # 90 degrees about z: x -> y. In xyzw order the quaternion is (0, 0, sin 45, cos 45).
    q = torch.tensor([0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)], dtype=torch.float64)
    r = quat_to_mat(q)
    assert torch.allclose(r @ torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0.0, 1, 0], dtype=torch.float64), atol=1e-12)


def test_pose_encoding_round_trip():
    w2c = random_w2c(7)
    h, w = 280, 378
    k = intrinsics_matrix(torch.full((7,), 300.0), torch.full((7,), 310.0), torch.full((7,), w / 2), torch.full((7,), h / 2)).double()
    enc = extri_intri_to_pose_encoding(w2c, k, h, w)
    assert enc.shape == (7, 9)
    w2c2, k2 = pose_encoding_to_extri_intri(enc, h, w)
    assert torch.allclose(w2c2, w2c, atol=1e-10)
    assert torch.allclose(k2, k, atol=1e-9)
    # field of view of a 300 px focal length over 378 px
    assert torch.allclose(enc[:, 8], torch.full((7,), 2 * math.atan(189 / 300), dtype=torch.float64))


def test_opengl_opencv_round_trip_and_axes():
    w2c = random_w2c(5)
    c2w_gl = opencv_w2c_to_opengl_c2w(w2c)
    assert torch.allclose(opengl_c2w_to_opencv_w2c(c2w_gl), w2c, atol=1e-12)
    assert torch.allclose(opengl_c2w_to_opencv_w2c(c2w_gl[:, :3, :]), w2c, atol=1e-12)
    # An OpenGL camera at the origin looking down -z sees the world point (0, 0, -2) at OpenCV depth +2.
    w2c_cv = opengl_c2w_to_opencv_w2c(torch.eye(4, dtype=torch.float64)[None])
    p = w2c_cv[0] @ torch.tensor([0.0, 0.0, -2.0, 1.0], dtype=torch.float64)
    assert torch.allclose(p[:3], torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64))


def test_unproject_then_project_returns_pixel_centres_and_depth():
    w2c = random_w2c(3).float()
    k = intrinsics_matrix(torch.full((3,), 50.0), torch.full((3,), 55.0), torch.full((3,), 16.0), torch.full((3,), 12.0))
    cams = Cameras(w2c, k, 32, 24)
    depth = 1.0 + torch.rand(3, 24, 32)
    pts = unproject_depth(depth, cams)
    uv, z = project_points(pts.reshape(3, -1, 3), cams)
    grid_u = torch.arange(32) + 0.5
    assert torch.allclose(z.reshape(3, 24, 32), depth, atol=1e-4)
    assert torch.allclose(uv.reshape(3, 24, 32, 2)[..., 0], grid_u.expand(3, 24, 32), atol=1e-3)


def test_umeyama_recovers_similarity():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(50, 3, generator=g, dtype=torch.float64)
    r = quat_to_mat(torch.randn(4, generator=g, dtype=torch.float64))
    dst = 1.7 * src @ r.T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    s, r2, t = umeyama(src, dst)
    assert abs(float(s) - 1.7) < 1e-10 and torch.allclose(r2, r, atol=1e-10)
    assert torch.allclose(t, torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize("n", [1, 2, 6])
def test_align_cameras_recovers_similarity(n):
    w2c = random_w2c(n, seed=n)
    sim = Sim3(torch.tensor(0.4, dtype=torch.float64), quat_to_mat(torch.randn(4, dtype=torch.float64)), torch.randn(3, dtype=torch.float64))
    target = sim.apply_world_to_cam(w2c)
    est = align_cameras(w2c, target)
    assert torch.allclose(est.apply_world_to_cam(w2c), target, atol=1e-9)
    if n > 1:
        assert abs(float(est.scale) - 0.4) < 1e-9


def test_align_cameras_scale_does_not_collapse_for_wrong_positions():
    """Camera positions that do not correspond (shuffled) give a least-squares scale near 0; the spread ratio
    is used instead, so a depth scale fitted around it still starts near the right magnitude."""
    w2c = random_w2c(12, seed=3)
    sim = Sim3(torch.tensor(2.5, dtype=torch.float64), torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    target = sim.apply_world_to_cam(w2c)
    c2w = invert_rigid(w2c)
    perm = torch.tensor([5, 9, 0, 11, 2, 7, 4, 1, 10, 3, 8, 6])
    shuffled = c2w.clone()
    shuffled[:, :3, 3] = c2w[perm, :3, 3]  # right orientations, positions of other views
    est = align_cameras(invert_rigid(shuffled), target)
    xs = c2w[:, :3, 3] - c2w[:, :3, 3].mean(0)
    assert float(est.scale) == pytest.approx(2.5, rel=1e-6)  # same spread as the source, times 2.5
    lsq = float((xs[perm] * (2.5 * xs)).sum() / xs.pow(2).sum())
    assert lsq < 0.5 * 2.5  # what the least-squares scale alone would have been


def test_sim3_moves_points_with_cameras():
    # A point seen at depth d by a camera is seen at depth s*d after both move by the same similarity.
    w2c = random_w2c(1)
    k = torch.eye(3, dtype=torch.float64)[None]
    sim = Sim3(torch.tensor(2.0, dtype=torch.float64), quat_to_mat(torch.randn(4, dtype=torch.float64)), torch.randn(3, dtype=torch.float64))
    p = invert_rigid(w2c)[:, :3, 3] + invert_rigid(w2c)[:, :3, 2] * 3.0  # 3 units in front
    _, z = project_points(p[:, None], Cameras(w2c, k, 1, 1))
    _, z2 = project_points(sim.apply_points(p)[:, None], Cameras(sim.apply_world_to_cam(w2c), k, 1, 1))
    assert torch.allclose(z, torch.tensor([[3.0]], dtype=torch.float64)) and torch.allclose(z2, 2 * z)
