"""The evaluation protocol's building blocks: view splits against hand-written lists, and test-time
pose alignment recovering a known perturbation."""

from __future__ import annotations

import math

import pytest
import torch

from ff3r_ns.core.pose_align import (
    AlignConfig,
    align_pose,
    apply_correction,
    axis_angle_to_matrix,
    rotation_6d_to_matrix,
)
from ff3r_ns.core.protocol import ContextGroup, Split, group_by_context, nview_split, scannet_split


def test_scannet_split_on_24_frames() -> None:
    assert scannet_split(24) == [
        Split(context=(0, 2), target=1),
        Split(context=(3, 5), target=4),
        Split(context=(8, 10), target=9),
        Split(context=(11, 13), target=12),
        Split(context=(16, 18), target=17),
        Split(context=(19, 21), target=20),
    ]


def test_scannet_split_drops_targets_without_both_neighbours() -> None:
    assert [s.target for s in scannet_split(18)] == [1, 4, 9, 12]  # 17 would need frame 18
    assert [s.target for s in scannet_split(19)] == [1, 4, 9, 12, 17]
    assert scannet_split(2) == [] and scannet_split(0) == []


def test_split_accepts_a_list_and_validates() -> None:
    assert Split(context=[3, 5], target=4) == Split(context=(3, 5), target=4)
    with pytest.raises(ValueError, match="also a context frame"):
        Split(context=(3, 4), target=4)


def test_nview_split_hand_cases() -> None:
    s = nview_split(9, 3)
    assert all(x.context == (0, 4, 8) for x in s) and [x.target for x in s] == [1, 3, 5, 7]
    s = nview_split(10, 5)  # exactly 5 even frames: all of them
    assert s[0].context == (0, 2, 4, 6, 8) and [x.target for x in s] == [1, 3, 5, 7]
    s = nview_split(13, 4)  # 7 even frames -> positions 0, 2, 4, 6
    assert s[0].context == (0, 4, 8, 12) and [x.target for x in s] == [1, 3, 5, 7, 9, 11]
    s = nview_split(12, 4)  # 6 even frames -> positions round(0, 1.67, 3.33, 5) = 0, 2, 3, 5
    assert s[0].context == (0, 4, 6, 10) and [x.target for x in s] == [1, 3, 5, 7, 9]
    assert nview_split(4, 2) == [Split(context=(0, 2), target=1)]


def test_nview_split_rejects_impossible_requests() -> None:
    with pytest.raises(ValueError, match="n_context >= 2"):
        nview_split(10, 1)
    with pytest.raises(ValueError, match="only 3 even frames"):
        nview_split(6, 4)


def test_group_by_context() -> None:
    assert group_by_context(nview_split(9, 3)) == [ContextGroup(context=(0, 4, 8), targets=(1, 3, 5, 7))]
    assert group_by_context(scannet_split(10)) == [  # 9 has no frame 10
        ContextGroup(context=(0, 2), targets=(1,)),
        ContextGroup(context=(3, 5), targets=(4,)),
    ]


# --------------------------------------------------------------------------- test-time pose alignment
_SIZE, _FOCAL = 24, 20.0


def _surface_scene(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """A textured height field in front of the identity camera: points ``[n*n, 3]``, colours ``[n*n, 3]``.

    Depth varies from 1.3 to 3.7 so rotation and translation are distinguishable (on a flat
    fronto-parallel plane a small rotation and a small translation look alike).
    """
    v, u = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    z = 2.5 + 1.2 * torch.sin(2.1 * u + 0.3) * torch.cos(1.7 * v)
    half = _SIZE / 2 / _FOCAL
    pts = torch.stack([u * z * half, v * z * half, z], dim=-1).reshape(-1, 3)
    col = torch.stack(
        [0.5 + 0.4 * torch.sin(6 * u + 1), 0.5 + 0.4 * torch.cos(5 * v), 0.5 + 0.4 * torch.sin(4 * (u + v))], dim=-1
    )
    return pts, col.reshape(-1, 3)


def _soft_splat(points: torch.Tensor, colors: torch.Tensor, sigma_px: float = 0.8):
    """A tiny differentiable renderer: each pixel is the Gaussian-weighted mean colour of the
    projected points (no occlusion; fine for the small motions tested here)."""
    ys, xs = torch.meshgrid(torch.arange(_SIZE) + 0.5, torch.arange(_SIZE) + 0.5, indexing="ij")
    pix = torch.stack([xs, ys], dim=-1).reshape(-1, 1, 2)

    def render_fn(w2c: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        cam = points @ w2c[:3, :3].T + w2c[:3, 3]
        uvw = cam @ k.T
        uv = uvw[:, :2] / uvw[:, 2:]
        w = torch.exp(-((pix - uv[None]) ** 2).sum(-1) / (2 * sigma_px**2))
        return ((w @ colors) / (w.sum(-1, keepdim=True) + 1e-6)).reshape(_SIZE, _SIZE, 3)

    return render_fn


def _pose_error(w2c: torch.Tensor, gt: torch.Tensor) -> tuple[float, float]:
    """(rotation error in degrees, translation error) of ``w2c`` against ``gt``, in float64."""
    rel = w2c.double() @ torch.linalg.inv(gt.double())
    r = rel[:3, :3]
    sin = (r - r.T).norm() / (2 * math.sqrt(2))  # |vee(R - R^T)| / 2, well conditioned near 0
    cos = (r.trace() - 1) / 2
    return math.degrees(math.atan2(float(sin), float(cos))), float(rel[:3, 3].norm())


def _perturbed_problem(seed: int):
    gen = torch.Generator().manual_seed(seed)
    pts, col = _surface_scene()
    render_fn = _soft_splat(pts, col)
    k = torch.tensor([[_FOCAL, 0, _SIZE / 2], [0, _FOCAL, _SIZE / 2], [0, 0, 1.0]])
    gt = torch.eye(4)
    axis = torch.nn.functional.normalize(torch.randn(3, generator=gen), dim=0)
    direction = torch.nn.functional.normalize(torch.randn(3, generator=gen), dim=0)
    pert = torch.eye(4)
    pert[:3, :3] = axis_angle_to_matrix(axis * math.radians(2.0))  # 2 degrees
    pert[:3, 3] = direction * 0.05  # 2 % of the ~2.5 scene depth
    return render_fn, render_fn(gt, k), pert @ gt, gt, k


@pytest.mark.parametrize("seed", [0, 1])
def test_pose_alignment_recovers_a_small_perturbation(seed: int) -> None:
    render_fn, target, init, gt, k = _perturbed_problem(seed)
    rot0, trans0 = _pose_error(init, gt)
    assert rot0 == pytest.approx(2.0, abs=1e-3) and trans0 == pytest.approx(0.05, rel=0.05)
    res = align_pose(render_fn, target, init, k, AlignConfig())  # Uni3R: rot6d, 100 steps, lr 5e-3
    rot, trans = _pose_error(res.world_to_cam, gt)
    assert res.steps == 100 and res.seconds > 0
    assert res.residual_l1_after < 0.1 * res.residual_l1_before
    assert rot < 0.3 and trans < 0.01, (rot, trans)
    torch.testing.assert_close(res.intrinsics, k)  # rot6d leaves intrinsics alone
    # the reported residual is the one of the returned camera
    assert (render_fn(res.world_to_cam, res.intrinsics) - target).abs().mean().item() == pytest.approx(
        res.residual_l1_after, rel=1e-5
    )


def test_pose_alignment_with_intrinsics_recovers_focal_and_pose() -> None:
    render_fn, target, init, gt, k = _perturbed_problem(0)
    k_off = k.clone()
    k_off[:2, :2] *= 1.03  # a 3 % focal error on top of the pose error
    res = align_pose(render_fn, target, init, k_off, AlignConfig(parametrization="intrinsics"))
    rot, trans = _pose_error(res.world_to_cam, gt)
    assert res.residual_l1_after < 0.1 * res.residual_l1_before
    assert rot < 0.3 and trans < 0.02, (rot, trans)
    assert res.intrinsics[0, 0].item() == pytest.approx(_FOCAL, rel=0.01)
    assert res.intrinsics[0, 0] == res.intrinsics[1, 1]


def test_alignment_only_differentiates_the_correction() -> None:
    pts, col = _surface_scene(8)
    col = col.clone().requires_grad_(True)  # e.g. a model's parameters captured by render_fn
    render_fn = _soft_splat(pts, col)
    k = torch.tensor([[_FOCAL, 0, _SIZE / 2], [0, _FOCAL, _SIZE / 2], [0, 0, 1.0]])
    with torch.no_grad():  # alignment must still work inside an evaluation no_grad block
        target = render_fn(torch.eye(4), k)
        res = align_pose(render_fn, target, torch.eye(4), k, AlignConfig(steps=2))
    assert col.grad is None
    assert res.residual_l1_before == pytest.approx(0.0, abs=1e-6)
    zero = align_pose(render_fn, target, torch.eye(4), k, AlignConfig(steps=0))
    assert zero.residual_l1_before == zero.residual_l1_after and torch.equal(zero.world_to_cam, torch.eye(4))


def test_correction_parametrizations() -> None:
    w2c = torch.eye(4, dtype=torch.float64)
    w2c[:3, 3] = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    k = torch.tensor([[30.0, 0, 16], [0, 28.0, 12], [0, 0, 1]], dtype=torch.float64)
    for p in ("rot6d", "intrinsics"):
        out_w, out_k = apply_correction(torch.zeros(9, dtype=torch.float64), w2c, k, 32, 24, p)
        torch.testing.assert_close(out_w, w2c)
        torch.testing.assert_close(out_k, k)
    # 90 degrees about z, translation 1 along x, focal x2, principal point +1/4 width, -1/2 height
    delta = torch.tensor([0, 0, math.pi / 2, 1, 0, 0, math.log(2.0), 0.25, -0.5], dtype=torch.float64)
    out_w, out_k = apply_correction(delta, torch.eye(4, dtype=torch.float64), k, 32, 24, "intrinsics")
    expected = torch.tensor([[0.0, -1, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(out_w, expected)
    torch.testing.assert_close(out_k, torch.tensor([[60.0, 0, 24], [0, 56, 0], [0, 0, 1]], dtype=torch.float64))
    rot6 = rotation_6d_to_matrix(torch.tensor([0.0, -1, 0, 1, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(rot6, expected[:3, :3])  # the code is the first two rows
    # gradients of both parametrizations, checked against finite differences
    d0 = (0.05 * torch.randn(9, generator=torch.Generator().manual_seed(5), dtype=torch.float64)).requires_grad_(True)
    for p in ("rot6d", "intrinsics"):
        assert torch.autograd.gradcheck(lambda d: apply_correction(d, w2c, k, 32, 24, p), (d0,), eps=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="parametrization"):
        AlignConfig(parametrization="se3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"render_fn returned \(24, 24, 3\)"):
        align_pose(_soft_splat(*_surface_scene(4)), torch.zeros(8, 8, 3), torch.eye(4), k.float())


def _splat_alignment(device: torch.device, backend: str, size: int = 64):
    """Pose recovery through the project's renderer: a perturbed camera of a Gaussian height field."""
    from ff3r_ns.core.cameras import Cameras
    from ff3r_ns.core.gaussians import Gaussians, rgb_to_sh
    from ff3r_ns.core.render import render

    focal = 56.0 * size / 64
    pts, col = _surface_scene(int(1.5 * size))
    pts = pts * torch.tensor([size / 2 / focal / 0.6, size / 2 / focal / 0.6, 1.0])  # fill this camera's view
    n = pts.shape[0]
    gaussians = Gaussians(
        means=pts.to(device),
        quats=torch.tensor([1.0, 0, 0, 0], device=device).expand(n, 4).contiguous(),
        scales=torch.full((n, 3), 1.3 / size, device=device),
        opacities=torch.full((n,), 0.95, device=device),
        sh=rgb_to_sh(col)[:, None].to(device),
        features=torch.zeros(n, 0, device=device),
    )

    def render_fn(w2c: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        cams = Cameras(w2c[None], k[None], size, size)
        return render(gaussians, cams, backend=backend, render_features=False).rgb[0]

    k = torch.tensor([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]], device=device)
    gt = torch.eye(4, device=device)
    pert = torch.eye(4)
    axis = torch.nn.functional.normalize(torch.tensor([0.3, -0.8, 0.5]), dim=0)
    pert[:3, :3] = axis_angle_to_matrix(axis * math.radians(2.0))
    pert[:3, 3] = torch.tensor([0.03, -0.03, 0.03])
    res = align_pose(render_fn, render_fn(gt, k), pert.to(device) @ gt, k, AlignConfig())
    rot, trans = _pose_error(res.world_to_cam.cpu(), gt.cpu())
    return res, rot, trans


@pytest.mark.gpu
def test_pose_alignment_with_gsplat_renderer() -> None:
    """The same recovery through ``render(..., backend="gsplat")`` at 64x64 with Uni3R's settings."""
    res, rot, trans = _splat_alignment(torch.device("cuda"), "gsplat")
    print(f"gsplat pose alignment: {res.seconds:.3f} s for {res.steps} steps, rot {rot:.3f} deg, trans {trans:.4f}")
    assert res.residual_l1_after < 0.2 * res.residual_l1_before
    assert rot < 0.5 and trans < 0.015, (rot, trans)


def test_pose_alignment_with_project_renderer_torch_backend() -> None:
    """The CPU reference rasterizer of ``ff3r_ns.core.render`` at 24x24."""
    res, rot, trans = _splat_alignment(torch.device("cpu"), "torch", size=24)
    assert res.residual_l1_after < 0.2 * res.residual_l1_before
    assert rot < 0.5 and trans < 0.015, (rot, trans)
