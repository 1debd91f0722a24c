"""scripts/camera_check.py: the camera-head diagnostic (errors next to the constant-pose baselines)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ff3r_ns.core.checkpoint import SHIPPED_TINY_WEIGHTS
from ff3r_ns.data.generate import SceneSpec, generate_scene, write_scene

from _scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _module():
    return load_script("camera_check")


def test_quaternion_angle_known_rotations() -> None:
    angle = _module().quaternion_angle_deg
    identity = torch.tensor([0.0, 0, 0, 1], dtype=torch.float64)
    quarter_turn_z = torch.tensor([0.0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)], dtype=torch.float64)
    assert float(angle(identity, quarter_turn_z)) == pytest.approx(90.0, abs=1e-3)
    assert float(angle(quarter_turn_z, -quarter_turn_z)) == pytest.approx(0.0, abs=1e-5)  # q and -q: same rotation


def test_check_reports_errors_next_to_baselines(tmp_path: Path) -> None:
    spec = SceneSpec(seed=3, num_views=6, width=56, height=56)
    write_scene(generate_scene(spec), tmp_path / "scenes" / "room3", spec, num_points=50)
    r = _module().check(SHIPPED_TINY_WEIGHTS, tmp_path / "scenes")
    assert all(math.isfinite(v) for v in r.values())
    assert r["translation_length_gt"] > 0.01 and r["rotation_identity_baseline_deg"] > 1.0  # the views do move
    # the triangle inequality ties the translation error to the two lengths
    assert abs(r["translation_length_gt"] - r["translation_length_pred"]) <= r["translation_error"] + 1e-5
    # neighbouring pairs move less than the default six-frame windows
    pairs = _module().check(SHIPPED_TINY_WEIGHTS, tmp_path / "scenes", windows=[[0, 1], [2, 3]])
    assert 0 < pairs["rotation_identity_baseline_deg"] < r["rotation_identity_baseline_deg"]
    assert 0 < pairs["translation_length_gt"] < r["translation_length_gt"]
