"""Pose evaluation: similarity invariance, known perturbations, VGGT-style AUC, transforms.json CLI."""

import json
import math

import pytest
import torch

from ff3r_ns.core.cameras import Cameras, intrinsics_matrix, invert_rigid, opencv_w2c_to_opengl_c2w
from ff3r_ns.core.pose_eval import (
    cameras_from_transforms,
    direction_angle_deg,
    evaluate_poses,
    pose_auc,
    rotation_angle_deg,
)
from ff3r_ns.evaluation.pose_cli import main as pose_eval_main


def axis_angle(axis, deg) -> torch.Tensor:
    axis = torch.as_tensor(axis, dtype=torch.float64)
    axis = axis / axis.norm()
    k = torch.zeros(3, 3, dtype=torch.float64)
    k[0, 1], k[0, 2], k[1, 2] = -axis[2], axis[1], -axis[0]
    k = k - k.T
    a = math.radians(deg)
    return torch.eye(3, dtype=torch.float64) + math.sin(a) * k + (1 - math.cos(a)) * k @ k


def random_cameras(n: int, seed: int = 0, width: int = 64, height: int = 48) -> Cameras:
    g = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    for i in range(n):
        c2w[i, :3, :3] = axis_angle(torch.randn(3, generator=g, dtype=torch.float64), float(torch.rand(1, generator=g)) * 60)
        c2w[i, :3, 3] = torch.randn(3, generator=g, dtype=torch.float64)
    f = torch.full((n,), 50.0, dtype=torch.float64)
    k = intrinsics_matrix(f, f, torch.full_like(f, width / 2), torch.full_like(f, height / 2))
    return Cameras(invert_rigid(c2w), k, width, height)


def moved(cams: Cameras, scale: float, rot: torch.Tensor, trans: torch.Tensor) -> Cameras:
    """The same rig in a world changed by x -> scale * rot @ x + trans."""
    c2w = invert_rigid(cams.world_to_cam)
    out = c2w.clone()
    out[:, :3, :3] = rot @ c2w[:, :3, :3]
    out[:, :3, 3] = scale * c2w[:, :3, 3] @ rot.T + trans
    return Cameras(invert_rigid(out), cams.intrinsics.clone(), cams.width, cams.height)


def test_similarity_gives_zero_error():
    ref = random_cameras(6)
    pred = moved(ref, 0.37, axis_angle([1.0, 2.0, -0.5], 73.0), torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64))
    e = evaluate_poses(pred, ref)
    assert e.rotation_error_deg.max() < 1e-5
    assert e.translation_error.max() < 1e-9
    assert e.rel_rotation_error_deg.max() < 1e-5
    assert e.rel_translation_error_deg.max() < 1e-5
    assert e.auc == {5: 1.0, 15: 1.0, 30: 1.0}
    assert e.focal_error.max() < 1e-12
    assert float(e.alignment.scale) == pytest.approx(1 / 0.37, rel=1e-9)
    assert e.rel_rotation_error_deg.shape == (15,)


def test_one_rotated_camera_known_errors():
    ref = random_cameras(5, seed=1)
    c2w = invert_rigid(ref.world_to_cam).clone()
    c2w[2, :3, :3] = c2w[2, :3, :3] @ axis_angle([0.0, 1.0, 0.0], 10.0)  # turn camera 2 about its own y axis
    pred = Cameras(invert_rigid(c2w), ref.intrinsics.clone(), ref.width, ref.height)
    e = evaluate_poses(pred, ref)
    # Centres are untouched: the alignment is the identity and only camera 2 is off, by exactly 10 deg.
    assert e.rotation_error_deg[2].item() == pytest.approx(10.0, abs=1e-6)
    assert torch.cat([e.rotation_error_deg[:2], e.rotation_error_deg[3:]]).max() < 1e-6
    assert e.translation_error.max() < 1e-9
    # Pairs with camera 2 have a 10 deg relative rotation error; pairs without it none.
    pairs = torch.combinations(torch.arange(5), 2)
    with2 = (pairs == 2).any(dim=1)
    assert torch.allclose(e.rel_rotation_error_deg[with2], torch.full((4,), 10.0, dtype=torch.float64), atol=1e-6)
    assert e.rel_rotation_error_deg[~with2].max() < 1e-6
    # 6 of 10 pairs are exact; the 4 pairs with camera 2 (10 deg) never count below 5 deg.
    assert e.auc[5] == pytest.approx(0.6, abs=1e-12)


def test_translation_offset_known_error():
    ref = random_cameras(4, seed=2)
    c2w = invert_rigid(ref.world_to_cam).clone()
    c2w[:, :3, 3] += torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)  # a pure shift: absorbed by the alignment
    shifted = Cameras(invert_rigid(c2w), ref.intrinsics, ref.width, ref.height)
    assert evaluate_poses(shifted, ref).translation_error.max() < 1e-9
    # Moving one centre by d moves the aligned residuals; their sum of squares is d^2 * (1 - 1/n) for a
    # pure translation fit, and Umeyama's extra freedom can only lower it.
    c2w[0, :3, 3] += torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64)
    e = evaluate_poses(Cameras(invert_rigid(c2w), ref.intrinsics, ref.width, ref.height), ref)
    ss = float((e.translation_error**2).sum())
    assert 0.0 < ss <= 0.09 * (1 - 1 / 4) + 1e-12


def test_focal_error_is_relative_and_size_aware():
    ref = random_cameras(3, seed=3)
    k = ref.intrinsics.clone()
    k[:, 0, 0] *= 1.1
    pred = Cameras(ref.world_to_cam.clone(), k, ref.width, ref.height)
    e = evaluate_poses(pred, ref)
    assert torch.allclose(e.focal_error[:, 0], torch.full((3,), 0.1, dtype=torch.float64), atol=1e-12)
    assert e.focal_error[:, 1].max() < 1e-12
    # The same prediction at half resolution is not a focal error.
    half = Cameras(ref.world_to_cam.clone(), ref.intrinsics * torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64)[:, None], 32, 24)
    assert evaluate_poses(half, ref).focal_error.max() < 1e-12


def test_auc_hand_cases():
    # Fractions below k = 1..5: [.5, .5, 1, 1, 1] -> 0.8
    assert pose_auc(torch.tensor([0.5, 2.5]), 5) == pytest.approx(0.8)
    # 3 of 4 pairs below 1 deg, one at 100 deg: 0.75 at every threshold.
    assert pose_auc(torch.tensor([0.0, 0.2, 0.9, 100.0]), 30) == pytest.approx(0.75)
    # An error of exactly the threshold counts in the last (closed) bin, as numpy.histogram's.
    assert pose_auc(torch.tensor([5.0]), 5) == pytest.approx(0.2)
    assert pose_auc(torch.tensor([4.0]), 5) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        pose_auc(torch.tensor([]), 5)


def test_angle_helpers():
    r = axis_angle([0.3, -1.0, 0.2], 1e-4)
    assert rotation_angle_deg(r, torch.eye(3, dtype=torch.float64)).item() == pytest.approx(1e-4, rel=1e-6)
    a = torch.tensor([1.0, 0.0, 0.0])
    assert direction_angle_deg(a, torch.tensor([-2.0, 0.0, 0.0])).item() == pytest.approx(0.0, abs=1e-9)  # folded
    assert direction_angle_deg(a, torch.tensor([-2.0, 0.0, 0.0]), sign_ambiguous=False).item() == pytest.approx(180.0)
    assert direction_angle_deg(a, torch.tensor([1.0, 1.0, 0.0])).item() == pytest.approx(45.0)
    assert direction_angle_deg(a, torch.zeros(3)).item() == 90.0


def test_bad_input_errors():
    ref = random_cameras(4)
    with pytest.raises(ValueError, match="4 reference cameras"):
        evaluate_poses(random_cameras(3), ref)
    with pytest.raises(ValueError, match="at least 3 cameras"):
        evaluate_poses(random_cameras(2), random_cameras(2, seed=5))
    bad = Cameras(ref.world_to_cam.clone(), ref.intrinsics.clone(), 64, 48)
    bad.world_to_cam[0, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_poses(bad, ref)


def write_transforms(path, cams: Cameras, names):
    c2w = opencv_w2c_to_opengl_c2w(cams.world_to_cam)
    k = cams.intrinsics
    frames = [
        {"file_path": f"images/{n}", "transform_matrix": c2w[i].tolist(), "fl_x": float(k[i, 0, 0]), "fl_y": float(k[i, 1, 1])}
        for i, n in enumerate(names)
    ]
    meta = {"cx": cams.width / 2, "cy": cams.height / 2, "w": cams.width, "h": cams.height, "frames": frames}
    path.write_text(json.dumps(meta))


def test_cli_matches_frames_by_name(tmp_path, capsys):
    ref = random_cameras(5, seed=4)
    names = [f"f{i}.png" for i in range(5)]
    write_transforms(tmp_path / "ref.json", ref, names)
    pred = moved(ref, 2.0, axis_angle([0.0, 0.0, 1.0], 30.0), torch.zeros(3, dtype=torch.float64))
    order = [3, 1, 4, 0]  # a different order and one frame missing
    write_transforms(tmp_path / "pred.json", pred[torch.tensor(order)], [names[i] for i in order])
    read_names, read = cameras_from_transforms(tmp_path / "ref.json")
    assert read_names == names
    assert torch.allclose(read.world_to_cam, ref.world_to_cam, atol=1e-9)
    out = tmp_path / "summary.json"
    assert pose_eval_main([str(tmp_path / "pred.json"), str(tmp_path / "ref.json"), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["frames"] == ["f0.png", "f1.png", "f3.png", "f4.png"]
    assert summary["num_cameras"] == 4
    assert summary["rot_err_deg_mean"] < 1e-5 and summary["auc_30"] == 1.0
    assert pose_eval_main([str(tmp_path / "pred.json"), str(tmp_path / "missing.json")]) == 1
    assert "cannot be read" in capsys.readouterr().err


@pytest.mark.gpu
def test_cuda_cameras_match_cpu():
    ref = random_cameras(5, seed=6)
    c2w = invert_rigid(ref.world_to_cam).clone()
    # 7.3 deg, not 7: an error exactly on an AUC bin edge (whole degrees) falls on either side with the last bit
    c2w[1, :3, :3] = c2w[1, :3, :3] @ axis_angle([1.0, 0.0, 0.0], 7.3)
    pred = Cameras(invert_rigid(c2w), ref.intrinsics.clone(), ref.width, ref.height)
    cpu = evaluate_poses(pred, ref)
    gpu = evaluate_poses(pred.to("cuda"), ref.to("cuda"))
    assert gpu.rotation_error_deg.device.type == "cuda"
    assert torch.allclose(gpu.rotation_error_deg.cpu(), cpu.rotation_error_deg, atol=1e-9)
    # the same bins; the AUC's sum may differ in the last bit between devices (seen on an H100: 0.6000000000000001)
    assert gpu.auc.keys() == cpu.auc.keys()
    assert all(gpu.auc[k] == pytest.approx(cpu.auc[k], abs=1e-12) for k in cpu.auc)
