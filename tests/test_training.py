"""Training commands (ff3r-train, ff3r-pretrain-geometry): data sampling, supervised geometry losses, CPU training
steps that reduce the loss, exact resume, two-process DDP (gloo) and the command lines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ff3r_ns.core.cameras import Cameras, pose_encoding_to_extri_intri, unproject_depth
from ff3r_ns.core.checkpoint import load_checkpoint
from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.network.model import FF3R
from ff3r_ns.data.generate import SceneSpec, generate_scene, write_scene
from ff3r_ns.training import pretrain, train
from ff3r_ns.training.data import sample_window, step_rng
from ff3r_ns.core.geometry_losses import (
    camera_loss, confidence_depth_loss, confidence_gradient_loss, normalise_ground_truth,
)
from ff3r_ns.training.config import TrainConfig
from ff3r_ns.training.optimizer import lr_factor, make_optimizer

VIEWS = 6
FAST = ["--image-size", "28", "--writer", "none", "--no-progress", "--warmup-steps", "1"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Two generated scenes (seeds 1000, 1001: the training range) of 6 views at 56 px."""
    root = tmp_path_factory.mktemp("train_scenes")
    for seed in (1000, 1001):
        spec = SceneSpec(seed=seed, num_views=VIEWS, width=56, height=56, arc=0.3, shadows=False)
        write_scene(generate_scene(spec), root / f"room{seed}", spec, num_points=100)
    return root


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).network


# --------------------------------------------------------------------------- data
def test_sample_window_ranges_and_determinism():
    seen_sizes, seen_strides = set(), set()
    for step in range(200):
        frames = sample_window(32, 2, 8, 3, step_rng(0, 0, step))
        diffs = set(np.diff(frames).tolist())
        assert 2 <= len(frames) <= 8 and frames[0] >= 0 and frames[-1] < 32 and len(diffs) == 1
        seen_sizes.add(len(frames))
        seen_strides |= diffs
    assert seen_sizes == set(range(2, 9)) and seen_strides == {1, 2, 3}
    assert sample_window(32, 2, 8, 3, step_rng(5, 1, 7)) == sample_window(32, 2, 8, 3, step_rng(5, 1, 7))
    assert sample_window(3, 2, 8, 4, step_rng(0, 0, 0))[-1] <= 2  # clamped to the scene
    with pytest.raises(ValueError):
        sample_window(10, 3, 2, 1, step_rng(0, 0, 0))


def test_lr_schedule():
    cfg = TrainConfig(scenes=Path("."), out=Path("x.pt"), steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0) and lr_factor(60, cfg) == pytest.approx(0.55)
    assert lr_factor(110, cfg) == pytest.approx(0.1)
    lin = TrainConfig(scenes=Path("."), out=Path("x.pt"), steps=110, warmup_steps=10, min_lr_ratio=0.0, schedule="linear")
    assert lr_factor(35, lin) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="min-views"):
        TrainConfig(scenes=Path("."), out=Path("x.pt"), min_views=1)


def test_layer_scale_init_reaches_aggregator_and_camera_trunk_and_checkpoints_still_load(tmp_path):
    from ff3r_ns.core.checkpoint import FF3RCheckpoint, save_checkpoint
    from ff3r_ns.core.network.model import FF3R
    from ff3r_ns.core.reconstruct import NetworkSettings, build_network
    from ff3r_ns.cli import parse

    command = parse(pretrain.GeometryPretrainingCommand, "ff3r-pretrain-geometry",
                    ["--scenes", ".", "--out", "x.pt", "--layer-scale-init", "1.0"])
    arch = command.training.architecture()
    assert arch.geometry.init_values == 1.0 and arch.heads.camera_init_values == 1.0
    net = FF3R(arch)
    for block in (net.aggregator.frame_blocks[0], net.aggregator.global_blocks[-1], net.camera_head.trunk[0]):
        assert torch.equal(block.ls1.gamma, torch.ones_like(block.ls1.gamma))
    default = FF3R(TrainConfig(scenes=Path("."), out=Path("x.pt"), fusion=False).architecture())
    assert torch.allclose(default.camera_head.trunk[0].ls2.gamma, torch.tensor(0.01))
    # only the initialisation differs: such a checkpoint loads into the preset's network
    path = save_checkpoint(tmp_path / "ls.pt", FF3RCheckpoint(net.state_dict(), arch))
    loaded = build_network(NetworkSettings(architecture=FF3RConfig.tiny().with_fusion(False), weights=path))
    assert torch.equal(loaded.camera_head.trunk[0].ls1.gamma, torch.ones_like(loaded.camera_head.trunk[0].ls1.gamma))
    with pytest.raises(ValueError, match="layer-scale-init"):
        TrainConfig(scenes=Path("."), out=Path("x.pt"), layer_scale_init=0.0)


# --------------------------------------------------------------------------- supervised geometry losses (stage 1)
def _two_view_scene(scale: float):
    k = torch.tensor([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]]).expand(2, 3, 3)
    w2c = torch.eye(4).repeat(2, 1, 1)
    w2c[:, :3, 3] = torch.tensor([[1.0, 0.5, 2.0], [0.0, 0.2, 2.5]]) * scale  # first camera not at the origin
    c, s = np.cos(0.3), np.sin(0.3)
    w2c[1, :3, :3] = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float32)
    depth = (torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0)) + 1.0) * scale
    depth[0, 0, :4] = 0.0  # invalid pixels
    return depth, Cameras(w2c, k, 16, 16)


def test_normalise_ground_truth_is_first_view_relative_and_scale_free():
    depth, cams = _two_view_scene(1.0)
    gt = normalise_ground_truth(depth, cams)
    assert torch.allclose(gt.pose_enc[0], torch.tensor([0, 0, 0, 0, 0, 0, 1.0, gt.pose_enc[0, 7], gt.pose_enc[0, 8]]), atol=1e-6)
    assert not gt.valid[0, 0, :4].any() and bool(gt.valid[0, 1].all())
    # the normalised valid points lie at mean distance 1 from the first camera
    w2c, k = pose_encoding_to_extri_intri(gt.pose_enc, 16, 16)
    pts = unproject_depth(gt.depth, Cameras(w2c, k, 16, 16))[gt.valid]
    assert float(pts.norm(dim=-1).mean()) == pytest.approx(1.0, abs=1e-5)
    big = normalise_ground_truth(*_two_view_scene(3.0))
    assert torch.allclose(big.pose_enc, gt.pose_enc, atol=1e-5) and torch.allclose(big.depth, gt.depth, atol=1e-5)
    assert float(big.scale) == pytest.approx(3 * float(gt.scale), rel=1e-5)


def test_supervised_geometry_terms_known_values():
    p = torch.zeros(2, 9)
    t = p.clone()
    t[:, 0], t[:, 3], t[:, 7] = 0.3, 0.2, 0.4
    assert float(camera_loss(p, p)) == 0.0
    assert float(camera_loss(p, t, fov_weight=0.5)) == pytest.approx(0.1 + 0.05 + 0.5 * 0.2)
    d, gt = torch.zeros(1, 3, 3), torch.full((1, 3, 3), 0.5)
    valid = torch.ones(1, 3, 3, dtype=torch.bool)
    conf = torch.full((1, 3, 3), 2.0)
    assert float(confidence_depth_loss(d, conf, gt, valid, alpha=0.2)) == pytest.approx(2 * 0.5 - 0.2 * np.log(2.0))
    ramp = torch.arange(3.0).view(1, 1, 3).expand(1, 3, 3)  # residual gradient 1 along x, 0 along y
    assert float(confidence_gradient_loss(ramp, conf, torch.zeros(1, 3, 3), valid)) == pytest.approx(2 * 6 / 12)
    assert float(confidence_gradient_loss(ramp + 5, conf, torch.zeros(1, 3, 3), valid)) == pytest.approx(1.0)  # offset-free


# --------------------------------------------------------------------------- training runs (CPU)
def test_feature_training_reduces_loss(scenes, tmp_path):
    # One scene and min = max = all views: every step sees the same batch, so the loss must go down.
    args = ["--scenes", str(scenes / "room1000"), "--out", str(tmp_path / "f.pt"), "--steps", "25", "--lr", "2e-3",
            "--min-views", str(VIEWS), "--max-views", str(VIEWS), "--schedule", "constant", *FAST,
            "--writer", "tensorboard", "--log-dir", str(tmp_path / "logs"), "--log-every", "5"]
    summary = train.main(args)
    assert list((tmp_path / "logs").glob("events.out.tfevents.*")), "nerfstudio's tensorboard writer wrote nothing"
    h = summary.history
    assert len(h) == 25 and all(np.isfinite(h))
    assert np.mean(h[-5:]) < 0.9 * np.mean(h[:5]), h
    assert set(summary.scalars) >= {"photometric", "feature", "warping", "warping_visible", "grad_norm", "lr"}
    ckpt = load_checkpoint(tmp_path / "f.pt")
    assert ckpt.metadata["stage"] == "feature-training" and ckpt.metadata["step"] == 25
    assert ckpt.metadata["annotation_free"] is True and ckpt.image_size == 28
    assert ckpt.teacher is not None and ckpt.teacher.dim == ckpt.architecture.heads.teacher_dim
    assert ckpt.classes[0] == "unlabeled" and "--steps 25" in ckpt.metadata["command"]


@pytest.fixture
def single_thread():
    """Multi-threaded CPU reductions (index_add_, scatter) may sum in a different order run to run; one thread
    makes the two runs bit-identical, so the test can demand exact equality."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_resume_gives_identical_weights(scenes, tmp_path, single_thread):
    common = ["--scenes", str(scenes), "--steps", "4", "--max-views", "4", "--seed", "3", *FAST]
    full = train.main([*common, "--out", str(tmp_path / "full.pt")])
    part = tmp_path / "part.pt"
    first = train.main([*common, "--out", str(part), "--stop-after", "2"])
    assert first.step == 2 and load_checkpoint(part).metadata["step"] == 2
    second = train.main([*common, "--out", str(part), "--resume"])
    assert second.step == 4 and second.history == pytest.approx(full.history[2:], rel=1e-6, abs=1e-7)
    a, b = _state(tmp_path / "full.pt"), _state(part)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


def test_geometry_pretraining_then_init(scenes, tmp_path):
    geo = tmp_path / "geo.pt"
    summary = pretrain.main(["--scenes", str(scenes / "room1001"), "--out", str(geo), "--steps", "15", "--lr", "2e-3",
                             "--min-views", str(VIEWS), "--max-views", str(VIEWS), "--schedule", "constant", *FAST])
    assert np.mean(summary.history[-3:]) < np.mean(summary.history[:3]), summary.history
    ckpt = load_checkpoint(geo)
    assert ckpt.metadata["stage"] == "geometry-pretraining" and ckpt.metadata["supervised"] is True
    assert ckpt.architecture.fusion.enable_fusion is False and ckpt.teacher is None
    # Only VGGT's modules were trained; the Gaussian head kept its seeded initialisation.
    torch.manual_seed(0)  # the run's seed: the same initial weights
    fresh = FF3R(ckpt.architecture).state_dict()
    for k in fresh:
        if k.startswith(("gaussian_head.", "feature_decoder.")):
            assert torch.equal(fresh[k], ckpt.network[k]), k
    assert any(not torch.equal(fresh[k], ckpt.network[k]) for k in fresh if k.startswith("camera_head."))
    assert any(not torch.equal(fresh[k], ckpt.network[k]) for k in fresh if k.startswith("depth_head."))
    # Stage 2 starts from it (with fusion: the fusion layers are new) with the geometry modules frozen.
    out = tmp_path / "feat.pt"
    train.main(["--scenes", str(scenes), "--out", str(out), "--steps", "2", "--init", str(geo), "--lr", "1e-3",
                "--geometry-lr-scale", "0", *FAST])
    trained = _state(out)
    assert any(k.startswith("fusion.") for k in trained)
    for k, v in ckpt.network.items():
        if k.startswith(("aggregator.", "camera_head.", "depth_head.")):
            assert torch.equal(trained[k], v), k  # loaded by --init, then frozen
    assert any(not torch.equal(trained[k], v) for k, v in ckpt.network.items() if k.startswith("gaussian_head."))
    # Optional distillation from the frozen geometry network (not annotation-free, so recorded as such).
    d = train.main(["--scenes", str(scenes), "--out", str(tmp_path / "distil.pt"), "--steps", "1", "--distill-from", str(geo),
                    "--max-views", "3", *FAST])
    assert d.scalars["distill_pose"] >= 0 and d.scalars["distill_depth"] >= 0
    assert load_checkpoint(tmp_path / "distil.pt").metadata["annotation_free"] is False


def test_time_limit_stops_and_saves(scenes, tmp_path):
    s = train.main(["--scenes", str(scenes), "--out", str(tmp_path / "t.pt"), "--steps", "50", "--time-limit", "0", *FAST])
    # the clock starts after the first step (one-time warm-up such as gsplat's compile is not counted)
    assert s.step == 1 and len(s.history) == 1
    assert load_checkpoint(tmp_path / "t.pt").metadata["step"] == 1


def test_optimizer_groups_scale_geometry_lr():
    net = FF3R(FF3RConfig.tiny())
    cfg = TrainConfig(scenes=Path("."), out=Path("x.pt"), lr=1e-3, geometry_lr_scale=0.1, weight_decay=0.05)
    opt = make_optimizer(net, cfg)
    geo = {id(p) for n, p in net.named_parameters() if n.startswith(("aggregator.", "camera_head.", "depth_head."))}
    for group in opt.param_groups:
        is_geo = {id(p) in geo for p in group["params"]}
        assert len(is_geo) == 1
        assert group["lr"] == pytest.approx(1e-4 if is_geo.pop() else 1e-3)
        assert group["weight_decay"] == (0.05 if group["params"][0].ndim >= 2 else 0.0)
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(trainable)


def test_freeze_keeps_the_named_modules_out_of_the_optimizer_and_fusion_layers_override_the_preset(tmp_path):
    """--freeze gaussian_head with --geometry-lr-scale 0: only the semantic path (fusion, its feature skip, the decoder)
    trains; --fusion-layers with no value builds no fusion block (the skip alone carries the encoder's features)."""
    cfg = TrainConfig(scenes=tmp_path, out=tmp_path / "x.pt", geometry_lr_scale=0.0, freeze=("gaussian_head",),
                      feature_skip=True, fusion_layers=())
    arch = cfg.architecture()
    assert arch.fusion.layers == () and arch.fusion.feature_skip
    net = FF3R(arch)
    assert len(net.fusion.blocks) == 0
    opt = make_optimizer(net, cfg)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    names = {n for n, p in net.named_parameters() if id(p) in in_opt}
    assert names and all(n.startswith(("fusion.", "feature_decoder.")) for n in names), sorted(names)
    assert {"fusion.feature_skip.weight", "feature_decoder.proj.weight"} <= names
    assert not any(p.requires_grad for p in net.gaussian_head.parameters())
    # The preset's layers stay when the flag is absent.
    assert TrainConfig(scenes=tmp_path, out=tmp_path / "x.pt").architecture().fusion.layers == FF3RConfig.tiny().fusion.layers


def test_training_errors_name_the_problem(tmp_path, scenes):
    with pytest.raises(FileNotFoundError, match="no scene folders"):
        train.main(["--scenes", str(tmp_path), "--out", str(tmp_path / "x.pt"), *FAST])
    with pytest.raises(ValueError, match="teacher-dim"):
        train.main(["--scenes", str(scenes), "--out", str(tmp_path / "x.pt"), "--teacher-dim", "7", *FAST])


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        pretrain.main(["--help"])
    assert exc.value.code == 0 and "--camera-weight" in capsys.readouterr().out
    exe = shutil.which("ff3r-train", path=str(Path(sys.executable).parent))
    assert exe is not None, "ff3r-train console script is not installed (pip install -e .)"
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for flag in ("--scenes", "--steps", "--max-views", "--batch-scenes", "--resume", "--writer", "--preset", "--init",
                 "--no-fusion", "--no-warping", "--distill-from", "--seed", "--lr"):
        assert flag in res.stdout


def test_distributed_two_cpu_processes(scenes, tmp_path):
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ff3r_ns.training.train", "--scenes", str(scenes), "--out", str(out), "--steps", "2",
           "--max-views", "3", "--device", "cpu", *FAST]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert "rank 0/2 finished step 2/2" in log and "rank 1/2 finished step 2/2" in log, log[-3000:]
    sums = load_checkpoint(out).metadata["rank_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]  # DDP kept the two ranks' weights identical


# --------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_gpu_training_steps(scenes, tmp_path):
    """Both stages on CUDA (gsplat), with the CPU tests' one repeated batch: each loss must go down as there."""
    same_batch = ["--min-views", str(VIEWS), "--max-views", str(VIEWS), "--schedule", "constant", "--lr", "2e-3",
                  "--device", "cuda", *FAST]  # fmt: skip
    geo = pretrain.main(["--scenes", str(scenes / "room1001"), "--out", str(tmp_path / "g.pt"), "--steps", "15",
                         *same_batch])  # fmt: skip
    assert np.mean(geo.history[-3:]) < np.mean(geo.history[:3]), geo.history
    s = train.main(["--scenes", str(scenes / "room1000"), "--out", str(tmp_path / "f.pt"), "--steps", "25", *same_batch])
    assert s.step == 25 and np.mean(s.history[-5:]) < 0.9 * np.mean(s.history[:5]), s.history


def _flag_fields(cls, prefix: str = "") -> list[tuple[str, str]]:
    """(flag, docstring) of every field tyro makes a flag of, through nested dataclasses, for ``cls``."""
    import dataclasses
    import typing

    from tyro._docstrings import get_field_docstring

    out = []
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        meta = getattr(hints[f.name], "__metadata__", ())
        if any("Suppress" in repr(m) for m in meta):
            continue
        base = typing.get_args(hints[f.name])[0] if meta else hints[f.name]
        if dataclasses.is_dataclass(base):
            omit = any("OmitArgPrefixes" in repr(m) for m in meta)
            out += _flag_fields(base, prefix if omit else f"{prefix}{f.name}.")
            continue
        names = [m.name for m in meta if getattr(m, "name", None)]
        positional = any("Positional" in repr(m) for m in meta)
        flag = None if positional else "--" + (names[0] if names else prefix + f.name).replace("_", "-")
        out.append((flag, get_field_docstring(cls, f.name, ()) or ""))
    return out


@pytest.mark.parametrize("module, main, command, least", [
    ("ff3r_ns.training.train", "main", "FeatureTrainingCommand", 60),
    ("ff3r_ns.training.pretrain", "main", "GeometryPretrainingCommand", 40),
    ("ff3r_ns.training.pretrain_semantic", "main", "SemanticPretrainConfig", 25),
    ("ff3r_ns.data.make_scene", "main", "MakeSceneCommand", 11),
    ("ff3r_ns.export.cli", "entrypoint_export", "ExportCommand", 4),
    ("ff3r_ns.export.cli", "entrypoint_query", "QueryCommand", 8),
    ("ff3r_ns.demo", "main", "DemoConfig", 9),
    ("ff3r_ns.evaluation.cli", "main", "EvalCommand", 19),
    ("ff3r_ns.evaluation.pose_cli", "main", "PoseEvalCommand", 3),
])
def test_help_lists_every_field_with_its_docstring(module, main, command, least, capsys):
    """--help of each tyro command shows one flag per config field (nested ones included; positionals by their
    docstring) with the first words of the field's docstring."""
    import importlib
    import re

    mod = importlib.import_module(module)
    with pytest.raises(SystemExit) as exc:
        getattr(mod, main)(["--help"])
    assert exc.value.code == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", capsys.readouterr().out).split())
    fields = _flag_fields(getattr(mod, command))
    assert len(fields) >= least
    for flag, doc in fields:
        assert flag is None or re.search(re.escape(flag) + r"[ ,=]", text), f"{flag} missing from --help"
        words = " ".join(doc.split()[:4])
        assert doc and words in text, f"{flag}: docstring {words!r} missing from --help"


def test_the_flags_as_readme_and_scripts_spell_them_parse_to_the_config():
    """Command lines written for the argparse-era commands parse to the same settings under tyro."""
    from ff3r_ns.cli import parse

    line = ("--scenes S --out X.pt --preset tiny --image-size 84 --init W --semantic-checkpoint F --feature-skip "
            "--feature-refine-width 32 --fusion-layers --freeze gaussian_head --steps 1500 --lr 5e-4 --geometry-lr-scale 0 "
            "--warmup-steps 200 --max-views 4 --max-stride 2 --batch-scenes 2 --seed 3 --device cpu --no-progress "
            "--writer none --time-limit 450 --log-every 100 --save-every 500 --no-warping --no-fusion "
            "--warping-tolerance 0.1 --photometric-weight 0.7 --teacher-dim 8 --teacher-noise 0.2 --resume")
    c = parse(train.FeatureTrainingCommand, "ff3r-train", line.split())
    t = c.training
    assert (t.fusion_layers, t.freeze, t.feature_skip, t.feature_refine_width, t.progress, t.fusion) == ((), ("gaussian_head",), True, 32, False, False)
    assert (t.steps, t.lr, t.geometry_lr_scale, t.time_limit, t.seed, t.device, t.writer) == (1500, 5e-4, 0.0, 450.0, 3, "cpu", "none")
    assert t.resume == Path("X.pt") and t.init == Path("W") and t.semantic_checkpoint == Path("F")
    assert (c.losses.warping, c.losses.warping_depth_tolerance, c.losses.photometric_weight) == (False, 0.1, 0.7)
    assert (c.teacher.dim, c.teacher.noise) == (8, 0.2)
    d = parse(train.FeatureTrainingCommand, "ff3r-train", ["--scenes", "S", "--out", "X.pt", "--fusion-layers", "0", "2"])
    assert d.training.fusion_layers == (0, 2) and d.training.fusion and d.training.geometry_lr_scale == 0.0
    assert d.training.resume is None and d.teacher.dim is None and d.losses.warping_depth_tolerance == 0.05
    g = parse(pretrain.GeometryPretrainingCommand, "ff3r-pretrain-geometry", ["--scenes", "S", "--out", "g.pt", "--camera-weight", "2"])
    assert not g.training.fusion and g.training.geometry_lr_scale == 1.0 and g.losses.camera_weight == 2.0
    with pytest.raises(SystemExit):  # ff3r-pretrain-geometry builds no fusion layers: no switch for them
        parse(pretrain.GeometryPretrainingCommand, "ff3r-pretrain-geometry", ["--scenes", "S", "--out", "g.pt", "--fusion"])
