"""``ns-train ff3r`` as a user types it, and what it does with bad input (CPU subprocesses on tiny scenes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TRAIN = [sys.executable, "-m", "nerfstudio.scripts.train"]


def _run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps log lines at the terminal width
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    from ff3r_ns.data.generate import SceneSpec, generate_scene, write_scene

    spec = SceneSpec(seed=9, num_views=10, width=32, height=32)
    out = tmp_path_factory.mktemp("ns_train") / "scene"
    write_scene(generate_scene(spec), out, spec, num_points=100)
    return out


def test_ns_train_ff3r_with_no_other_flag(scene, tmp_path):
    """No GPU here: the run moves to the CPU and its CPU budget by itself, refines, and ends (the viewer quits).
    Its own run: no flag at all is what it tests (the shared run of tests/conftest.py sets several)."""
    out = _run([*TRAIN, "ff3r", "--data", str(scene)], cwd=tmp_path)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    from ff3r_ns.method_configs.ff3r import CPU_REFINE_STEPS

    assert "no CUDA device: running on the CPU" in log and f"{CPU_REFINE_STEPS} refinement steps on the CPU" in log, log[-4000:]
    runs = list((tmp_path / "outputs").rglob("config.yml"))
    assert len(runs) == 1
    ckpts = sorted(p.name for p in runs[0].parent.glob("nerfstudio_models/*.ckpt"))
    assert ckpts == [f"step-{CPU_REFINE_STEPS - 1:09d}.ckpt"], ckpts
    assert "semantic features refined against the teacher" in log
    assert "cameras_per_step: 1\n" in runs[0].read_text()  # a CPU step renders one image (the GPU default is 4)


def test_a_run_that_stops_at_start_up_leaves_no_run_folder(tmp_path):
    """A missing --data folder: one line (the last) names it, no traceback, no run folder or checkpoint."""
    out = _run([*TRAIN, "ff3r-tiny", "--data", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "out"),
                "--vis", "tensorboard", "--machine.device-type", "cpu"], cwd=tmp_path)
    log = out.stdout + out.stderr
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ff3r: error:") and "no such file or directory" in last, out.stderr[-2000:]
    assert "Traceback" not in log, log[-3000:]
    assert not list(tmp_path.rglob("config.yml")) and not list(tmp_path.rglob("*.ckpt"))


def test_a_camera_list_given_as_data_is_named(scene, tmp_path):
    frames = json.loads((scene / "transforms.json").read_text())["frames"]
    cams = tmp_path / "transforms_train.json"
    cams.write_text(json.dumps([{"file_path": f["file_path"], "transform": f["transform_matrix"][:3]} for f in frames]))
    out = _run([*TRAIN, "ff3r-tiny", "--data", str(cams), "--vis", "tensorboard"], cwd=tmp_path)
    log = out.stdout + out.stderr
    assert out.returncode != 0 and "a camera list as ns-export cameras writes it" in log and "Traceback" not in log, log[-3000:]


def test_degenerate_poses_fall_back_to_the_predicted_cameras(scene, tmp_path):
    """Its own run: the bad poses are the input under test."""
    bad = tmp_path / "bad"
    shutil.copytree(scene, bad)
    meta = json.loads((bad / "transforms.json").read_text())
    for f in meta["frames"]:
        for row in f["transform_matrix"][:3]:
            row[3] = 0.5  # every camera at one point
    (bad / "transforms.json").write_text(json.dumps(meta))
    out = _run([*TRAIN, "ff3r-tiny", "--data", str(bad), "--output-dir", str(tmp_path / "out"), "--vis", "tensorboard",
                "--max-num-iterations", "0"], cwd=tmp_path)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "using the predicted cameras instead" in log and "Traceback" not in log, log[-3000:]


def test_unposed_photos_export_cameras_named_by_the_users_files(scene, tmp_path):
    """A folder of photos without transforms.json trains as unposed images (images-data; a grayscale photo is
    replicated to RGB) and is left as it was; ns-export cameras on the run names the photos themselves, and
    ff3r-pose-eval reads that file. Its own run: the shared one (tests/conftest.py) is posed."""
    from PIL import Image

    photos = tmp_path / "photos"
    shutil.copytree(scene / "images", photos)
    gray = sorted(photos.iterdir())[3]
    Image.open(gray).convert("L").save(gray)
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    out = _run([*TRAIN, "ff3r-tiny", "--data", str(photos), "--output-dir", str(tmp_path / "out"), "--experiment-name",
                "p", "--timestamp", "run", "--vis", "tensorboard", "--max-num-iterations", "10"], cwd=tmp_path)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "reading it as unposed images" in log and "1 grayscale frame(s) replicated to RGB" in log, log[-3000:]
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before  # the dataset folder is untouched
    config = tmp_path / "out" / "p" / "ff3r-tiny" / "run" / "config.yml"
    exp = _run([sys.executable, "-m", "nerfstudio.scripts.exporter", "cameras", "--load-config", str(config),
                "--output-dir", str(tmp_path / "cams")], cwd=tmp_path)
    assert exp.returncode == 0, (exp.stdout + exp.stderr)[-3000:]
    frames = json.loads((tmp_path / "cams" / "transforms_train.json").read_text())
    assert sorted(Path(f["file_path"]) for f in frames) == sorted(p.resolve() for p in photos.iterdir())
    ev = _run([sys.executable, "-m", "ff3r_ns.evaluation.pose_cli", str(tmp_path / "cams" / "transforms_train.json"),
               str(scene / "transforms.json"), "--json", str(tmp_path / "pose.json")], cwd=tmp_path)
    assert ev.returncode == 0, ev.stdout + ev.stderr
    row = json.loads((tmp_path / "pose.json").read_text())
    assert row["num_cameras"] == 10 and 0.0 <= row["auc_30"] <= 1.0 and "focal_err_rel_mean" not in row
