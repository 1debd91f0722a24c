"""Refinement after the feedforward pass: splatfacto's optimiser on FF3R's Gaussians (CPU, tiny scenes).

In-process runs through nerfstudio's own Trainer (as ``ns-train`` builds it), each a few steps on a 10-view room.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from unittest import mock

import pytest
import torch

from benchmarks import timed_runs as vs
from ff3r_ns.core.cameras import opengl_c2w_to_opencv_w2c
from ff3r_ns.method_configs.ff3r_tiny import ff3r_tiny_method


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> Path:
    from ff3r_ns.data.generate import SceneSpec, generate_scene, write_scene

    spec = SceneSpec(seed=5, num_views=18, width=48, height=48)
    out = tmp_path_factory.mktemp("refine") / "room"
    write_scene(generate_scene(spec), out, spec, num_points=100)
    return out


def _config(room: Path, tmp: Path, steps: int, **model_fields):
    """ff3r-tiny for ``steps`` refinement steps with the given model settings taken as they are (no scaling)."""
    cfg = vs.quiet_trainer_config(ff3r_tiny_method.config, room, "cpu", steps, tmp, "t")
    cfg.schedule_reference_steps = cfg.min_schedule_steps = steps  # the settings below are meant literally
    for name, value in model_fields.items():
        setattr(cfg.pipeline.model, name, value)
    return cfg


def _held_out_psnr(pipeline) -> float:
    return vs.evaluate(pipeline).psnr


def test_refinement_lowers_held_out_error(room, tmp_path):
    built = vs.build_trainer(_config(room, tmp_path, 60, warmup_length=1000))
    pipeline = built.trainer.pipeline
    before = _held_out_psnr(pipeline)
    pipeline.train()
    built.trainer.train()
    after = _held_out_psnr(pipeline)
    assert after > before + 0.3, (before, after)


def test_strategy_densifies_and_prunes_as_configured(room, tmp_path):
    """gsplat's DefaultStrategy, built in populate_modules: with every gradient above the threshold, each refinement
    step grows the set; with a high opacity threshold it prunes."""
    cfg = _config(room, tmp_path, 26, warmup_length=2, refine_every=5, densify_grad_thresh=1e-12, cull_alpha_thresh=0.6,
                  reset_alpha_every=100)
    built = vs.build_trainer(cfg)
    model = built.trainer.pipeline.model
    events: list[tuple[str, int, int]] = []
    grow, prune = model.strategy._grow_gs, model.strategy._prune_gs

    def logged_grow(params, optimizers, state, step):
        n0 = len(params["means"])
        out = grow(params, optimizers, state, step)
        events.append(("grow", step, len(params["means"]) - n0))
        return out

    def logged_prune(params, optimizers, state, step):
        n0 = len(params["means"])
        out = prune(params, optimizers, state, step)
        events.append(("prune", step, n0 - len(params["means"])))
        return out

    model.strategy._grow_gs, model.strategy._prune_gs = logged_grow, logged_prune
    n_start = model.num_points
    built.trainer.train()
    # pause_refine_after_reset = training images + refine_every: the first refinement is at step 20 (of 0..25)
    steps = sorted({s for _, s, _ in events})
    assert steps == [20, 25], events
    assert all(n > 0 for kind, _, n in events if kind == "grow"), events
    assert all(n > 0 for kind, _, n in events if kind == "prune"), events
    # Everything that rides along stays aligned with the means (the network's confidences included).
    assert {p.shape[0] for p in model.gauss_params.values()} == {model.num_points} and model.num_points != n_start


def test_camera_optimizer_brings_a_perturbed_pose_back(room, tmp_path):
    """nerfstudio's camera optimizer (SO3xR3) on a posed dataset. The Gaussians are first refined at the true poses
    (a pose can only be recovered against a model that explains the image); then one training camera is knocked
    off by 4 degrees and 2 cm, and optimising only the pose correction moves it back."""
    from nerfstudio.engine.optimizers import AdamOptimizerConfig

    cfg = _config(room, tmp_path, 150, warmup_length=10_000)
    cfg.pipeline.model.camera_optimizer.mode = "SO3xR3"
    for group in cfg.optimizers.values():
        group["scheduler"] = None
    cfg.optimizers["camera_opt"]["optimizer"] = AdamOptimizerConfig(lr=0.0, eps=1e-15)
    built = vs.build_trainer(cfg)
    built.trainer.train()  # phase 1: Gaussians only, at the dataset's poses

    dm, model = built.trainer.pipeline.datamanager, built.trainer.pipeline.model
    for name, opt in built.trainer.optimizers.optimizers.items():  # phase 2: the pose correction only
        for group in opt.param_groups:
            group["lr"] = 2e-3 if name == "camera_opt" else 0.0
    idx = 3
    true_c2w = dm.train_cameras.camera_to_worlds[idx].clone()
    angle = math.radians(4.0)
    rot = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]])
    dm.train_cameras.camera_to_worlds[idx, :3, :3] = rot @ true_c2w[:3, :3]
    dm.train_cameras.camera_to_worlds[idx, :3, 3] += torch.tensor([0.02, 0.0, -0.01])
    next_train = dm.next_train

    def only_the_perturbed_camera(step):
        dm.train_unseen_cameras = [idx]
        return next_train(step)

    dm.next_train = only_the_perturbed_camera
    cam = dm.train_cameras[idx : idx + 1]
    cam.metadata = {"cam_idx": idx}
    k = cam.get_intrinsics_matrices()[0]
    points = model.gauss_params["means"].detach()[::50]

    def pixels(c2w: torch.Tensor) -> torch.Tensor:
        w2c = opengl_c2w_to_opencv_w2c(c2w[None])[0]
        p = points @ w2c[:3, :3].T + w2c[:3, 3]
        return (p @ k.T)[:, :2] / p[:, 2:].clamp_min(1e-6)

    truth = pixels(true_c2w)

    def errors() -> tuple[float, float]:
        """Rotation error (degrees) and the scene's median reprojection error (pixels) at the corrected pose."""
        c2w = model.camera_optimizer.apply_to_camera(cam)[0].detach()
        cos = ((c2w[:3, :3].T @ true_c2w[:3, :3]).trace() - 1) / 2
        return math.degrees(math.acos(float(cos.clamp(-1, 1)))), float((pixels(c2w) - truth).norm(dim=-1).median())

    rot0, px0 = errors()
    built.trainer.config.max_num_iterations = 100
    built.trainer.train()
    rot1, px1 = errors()
    assert rot0 == pytest.approx(4.0, abs=0.01) and px0 > 1.0
    assert rot1 < 0.5 * rot0 and px1 < 0.5 * px0, (rot0, rot1, px0, px1)


def test_nan_stops_naming_the_step_and_the_parameter(room, tmp_path):
    built = vs.build_trainer(_config(room, tmp_path, 5, nan_check_every=1))
    model = built.trainer.pipeline.model
    with torch.no_grad():
        model.gauss_params["scales"][7] = float("nan")
        model.gauss_params["scales"][9] = float("inf")
    with pytest.raises(SystemExit, match=r"step 0: gauss_params\.scales \(2 of"):
        built.trainer.train()


def test_schedule_is_laid_out_for_the_budget(room, tmp_path):
    """splatfacto's 30k settings, compressed to a 3000-step run by the trainer (and not twice when resumed); never
    below the method's floor; ff3r-tiny's short CPU budget runs the start of the 30k schedule."""
    from ff3r_ns.method_configs.ff3r import ff3r_method
    from ff3r_ns.nerfstudio.trainer import FF3RTrainer

    cfg = vs.quiet_trainer_config(ff3r_method.config, room, "cpu", 3000, tmp_path, "s")
    FF3RTrainer(cfg)
    model = cfg.pipeline.model
    assert (model.warmup_length, model.refine_every, model.stop_split_at, model.sh_degree_interval) == (50, 10, 1500, 100)
    assert cfg.optimizers["means"]["scheduler"].max_steps == 3000
    assert cfg.optimizers["camera_opt"]["scheduler"].warmup_steps == 100
    FF3RTrainer(cfg)  # e.g. ns-train --load-config of the saved config
    assert model.stop_split_at == 1500 and cfg.optimizers["means"]["scheduler"].max_steps == 3000

    short = vs.quiet_trainer_config(ff3r_method.config, room, "cpu", 1000, tmp_path, "f")
    FF3RTrainer(short)  # below the 3000-step floor: the first 1000 steps of the 3000-step layout
    assert short.pipeline.model.stop_split_at == 1500 and short.optimizers["means"]["scheduler"].max_steps == 3000

    tiny = vs.quiet_trainer_config(ff3r_tiny_method.config, room, "cpu", 300, tmp_path, "t")
    FF3RTrainer(tiny)
    assert tiny.pipeline.model.warmup_length == 500 and tiny.optimizers["means"]["scheduler"].max_steps == 30_000

    # ff3r's own GPU budget (the config as ns-train builds it, on a CUDA machine): 7500 steps of 4 images, the 30k
    # schedule laid out for 7500 (densification stops at 3750, the position decay ends at 7500).
    gpu = copy.deepcopy(ff3r_method.config)
    gpu.output_dir, gpu.machine.device_type = tmp_path, "cuda"
    with mock.patch("torch.cuda.is_available", return_value=True):
        FF3RTrainer(gpu)
    assert (gpu.max_num_iterations, gpu.pipeline.datamanager.cameras_per_step) == (7500, 4)
    assert gpu.pipeline.model.stop_split_at == 3750 and gpu.optimizers["means"]["scheduler"].max_steps == 7500


def test_fused_adam_matches_adam_and_every_method_uses_it():
    """The fused optimizer is an optimisation only: same updates as plain Adam over a few steps."""
    from nerfstudio.engine.optimizers import AdamOptimizerConfig

    from ff3r_ns.method_configs.ff3r import refinement_optimizers
    from ff3r_ns.nerfstudio.refinement import FusedAdamOptimizerConfig

    torch.manual_seed(0)
    start = torch.randn(500, 3)
    grads = [torch.randn(500, 3) for _ in range(5)]
    results, optimizers = [], []
    for config in (FusedAdamOptimizerConfig(lr=1e-2, eps=1e-15), AdamOptimizerConfig(lr=1e-2, eps=1e-15)):
        p = torch.nn.Parameter(start.clone())
        opt = config.setup([p])
        for g in grads:
            p.grad = g.clone()
            opt.step()
        results.append(p.detach())
        optimizers.append(opt)
    assert optimizers[0].defaults["fused"] is True and not optimizers[1].defaults.get("fused")
    assert not torch.equal(results[0], start)  # it moved
    torch.testing.assert_close(results[0], results[1], rtol=1e-6, atol=1e-7)
    assert all(isinstance(o["optimizer"], FusedAdamOptimizerConfig) for o in refinement_optimizers().values())


def test_short_runs_take_higher_learning_rates_once(tmp_path):
    """A budget below min_schedule_steps multiplies the named groups' rates (initial and final), a full-length run
    keeps splatfacto's, and the laid-out config (as written to config.yml) is not scaled again."""
    import copy

    from ff3r_ns.method_configs.ff3r import refinement_optimizers
    from ff3r_ns.nerfstudio.trainer import SHORT_RUN_LR_SCALE, FF3RTrainer

    base = {name: (g["optimizer"].lr, getattr(g["scheduler"], "lr_final", None)) for name, g in refinement_optimizers().items()}

    def trainer_config(steps: int):
        cfg = copy.deepcopy(ff3r_tiny_method.config)
        cfg.max_num_iterations, cfg.output_dir, cfg.machine.device_type = steps, tmp_path, "cpu"
        FF3RTrainer(cfg)
        return cfg

    short = trainer_config(50)
    for name, group in short.optimizers.items():
        factor = SHORT_RUN_LR_SCALE.get(name, 1.0)
        assert math.isclose(group["optimizer"].lr, base[name][0] * factor, rel_tol=1e-12), name
        if base[name][1] is not None:
            assert math.isclose(group["scheduler"].lr_final, base[name][1] * factor, rel_tol=1e-12), name
    assert SHORT_RUN_LR_SCALE["means"] > 1 and short.short_run_lr_scale == {}
    assert short.pipeline.model.stop_split_at == 0  # the strategy neither densifies nor resets opacities
    resumed = copy.deepcopy(short)
    FF3RTrainer(resumed)
    assert resumed.optimizers["means"]["optimizer"].lr == short.optimizers["means"]["optimizer"].lr
    full = copy.deepcopy(ff3r_tiny_method.config)
    full.max_num_iterations, full.output_dir, full.machine.device_type = 30_000, tmp_path, "cpu"
    FF3RTrainer(full)
    assert full.optimizers["means"]["optimizer"].lr == base["means"][0] and full.pipeline.model.stop_split_at == 15_000
    # A run of ff3r below its 3000-step floor compresses the schedule instead: splatfacto's rates, densification on.
    from ff3r_ns.method_configs.ff3r import ff3r_method

    gpu_short = copy.deepcopy(ff3r_method.config)
    gpu_short.max_num_iterations, gpu_short.output_dir, gpu_short.machine.device_type = 1000, tmp_path, "cpu"
    gpu_short.cpu_max_num_iterations = None
    FF3RTrainer(gpu_short)
    batch = gpu_short.pipeline.datamanager.cameras_per_step  # 4 images per step: sqrt(4) x the rates
    assert math.isclose(gpu_short.optimizers["means"]["optimizer"].lr, base["means"][0] * math.sqrt(batch), rel_tol=1e-12)
    assert batch > 1 and gpu_short.pipeline.model.stop_split_at > 0
    with pytest.raises(ValueError, match="unknown parameter groups"):
        bad = copy.deepcopy(ff3r_tiny_method.config)
        bad.max_num_iterations, bad.output_dir, bad.short_run_lr_scale = 50, tmp_path, {"nope": 2.0}
        FF3RTrainer(bad)


def test_fast_start_boosts_the_first_steps_then_hands_back_splatfacto_s_schedule(tmp_path):
    """FastStartScheduler = nerfstudio's decay x a boost falling linearly from `boost` to 1 over `boost_steps`."""
    import copy

    from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

    from ff3r_ns.method_configs.ff3r import ff3r_method
    from ff3r_ns.nerfstudio.schedule import FastStartSchedulerConfig
    from ff3r_ns.nerfstudio.trainer import SHORT_RUN_LR_SCALE, FF3RTrainer

    def lrs(sched_config, steps):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1e-3)
        sched = sched_config.setup().get_scheduler(opt, 1e-3)
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    plain = ExponentialDecaySchedulerConfig(lr_final=1e-5, max_steps=100)
    boosted = FastStartSchedulerConfig(lr_final=1e-5, max_steps=100, boost=5.0, boost_steps=20)
    a, b = lrs(plain, 40), lrs(boosted, 40)
    assert math.isclose(b[0], 5 * a[0], rel_tol=1e-9) and math.isclose(b[10], 3 * a[10], rel_tol=1e-9)
    assert all(math.isclose(x, y, rel_tol=1e-9) for x, y in zip(a[20:], b[20:]))
    cfg = copy.deepcopy(ff3r_method.config)
    cfg.max_num_iterations, cfg.output_dir, cfg.machine.device_type, cfg.fast_start_steps = 30_000, tmp_path, "cpu", 2000
    cfg.pipeline.datamanager.cameras_per_step = 1  # the rates below are one image's (4 per step take sqrt(4) x)
    cfg.cpu_max_num_iterations = None  # the GPU budget, laid out here on the CPU
    FF3RTrainer(cfg)
    for name, factor in SHORT_RUN_LR_SCALE.items():
        sched = cfg.optimizers[name]["scheduler"]
        assert isinstance(sched, FastStartSchedulerConfig) and sched.boost == factor and sched.boost_steps == 2000
    assert cfg.optimizers["means"]["scheduler"].lr_final == 1.6e-6  # its decay kept
    assert cfg.optimizers["means"]["optimizer"].lr == 1.6e-4 and cfg.pipeline.model.stop_split_at == 15_000


def test_batched_step_is_the_mean_of_single_camera_steps(room, tmp_path):
    """``cameras_per_step=2``: one batched render's photometric loss and its gradient equal the mean of the two
    single-camera ones, and the camera optimizer corrects each camera of the batch as ``apply_to_camera`` does."""
    cfg = _config(room, tmp_path, 10, background_color="black")
    cfg.pipeline.datamanager.cameras_per_step = 2
    cfg.pipeline.model.camera_optimizer.mode = "SO3xR3"
    built = vs.build_trainer(cfg)
    dm, model = built.trainer.pipeline.datamanager, built.trainer.pipeline.model
    model.train()
    model.step_cb(built.trainer.optimizers, 0)  # what the trainer's first step does
    with torch.no_grad():
        model.camera_optimizer.pose_adjustment.normal_(std=0.01)
    cameras, batch = dm.next_train(0)
    assert cameras.shape == (2,) and batch["image"].shape[0] == 2 and batch["image_idx"].tolist() == cameras.metadata["cam_idx"]

    def loss_and_grad(cams, data) -> tuple[float, torch.Tensor]:
        model.gauss_params["means"].grad = None
        loss = model.get_loss_dict(model.get_outputs(cams), data)["main_loss"]
        loss.backward()
        return float(loss), model.gauss_params["means"].grad.clone()

    batched_loss, batched_grad = loss_and_grad(cameras, batch)
    singles = []
    for i, idx in enumerate(cameras.metadata["cam_idx"]):
        cam = cameras[i : i + 1]
        cam.metadata = {"cam_idx": idx}
        singles.append(loss_and_grad(cam, {"image": batch["image"][i], "image_idx": idx}))
        # The batched pose correction of camera i is apply_to_camera's for it alone.
        torch.testing.assert_close(model._optimized_camera_to_worlds(cameras)[i], model.camera_optimizer.apply_to_camera(cam)[0])
    mean_loss = sum(s[0] for s in singles) / 2
    mean_grad = (singles[0][1] + singles[1][1]) / 2
    assert batched_loss == pytest.approx(mean_loss, rel=1e-5)
    assert float((batched_grad - mean_grad).norm() / mean_grad.norm()) < 1e-4
    assert float((singles[0][1] - singles[1][1]).norm() / mean_grad.norm()) > 0.1  # the two views differ


def test_batched_refinement_lowers_held_out_error_at_sqrt_b_rates(room, tmp_path):
    cfg = _config(room, tmp_path, 30, warmup_length=1000)
    cfg.pipeline.datamanager.cameras_per_step = 4
    lr = cfg.optimizers["means"]["optimizer"].lr
    built = vs.build_trainer(cfg)
    assert built.trainer.config.optimizers["means"]["optimizer"].lr == pytest.approx(2.0 * lr)
    assert built.trainer.config.optimizers["camera_opt"]["optimizer"].lr == cfg.optimizers["camera_opt"]["optimizer"].lr
    pipeline = built.trainer.pipeline
    before = _held_out_psnr(pipeline)
    pipeline.train()
    built.trainer.train()
    assert _held_out_psnr(pipeline) > before + 0.3


def _strategy_state(n: int, seed: int = 0):
    """Parameters, optimizers and densification statistics of ``n`` Gaussians for a strategy call."""
    g = torch.Generator().manual_seed(seed)
    params = torch.nn.ParameterDict({
        "means": torch.nn.Parameter(torch.randn(n, 3, generator=g)),
        "scales": torch.nn.Parameter(torch.full((n, 3), -6.0)),  # small: every grown Gaussian is a duplicate
        "quats": torch.nn.Parameter(torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)),
        "opacities": torch.nn.Parameter(torch.randn(n, generator=g)),
    })
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    state = {"grad2d": torch.rand(n, generator=g), "count": torch.ones(n), "radii": None, "scene_scale": 1.0}
    return params, optimizers, state


@pytest.mark.parametrize("budget", [None, 130, 100, 80])
def test_gaussian_budget_grows_the_highest_gradients_and_prunes_the_lowest_opacities(budget):
    """PredictedStartStrategy with max_gaussians: growth takes the candidates with the largest gradients that fit
    (none when the set is already at or above the budget), pruning then removes the lowest opacities beyond it."""
    from ff3r_ns.nerfstudio.refinement import PredictedStartStrategy

    n, thresh = 100, 0.4
    strategy = PredictedStartStrategy(grow_grad2d=thresh, prune_opa=0.0, refine_scale2d_stop_iter=0, max_gaussians=budget,
                                      budget_prune_share=1.0)
    params, optimizers, state = _strategy_state(n)
    grads = state["grad2d"].clone()
    n_dupli, n_split = strategy._grow_gs(params, optimizers, state, step=1000)
    candidates = int((grads > thresh).sum())
    room = candidates if budget is None else max(0, min(candidates, budget - n))
    assert (n_dupli, n_split) == (room, 0) and params["means"].shape[0] == n + room
    # The duplicated ones are the room largest gradients (duplicates are appended copies of their sources).
    grown = params["means"][n:]
    sources = torch.cdist(grown, params["means"][:n]).argmin(-1)
    assert set(sources.tolist()) == set(torch.topk(grads, room).indices.tolist()) if room else grown.numel() == 0
    assert strategy.grow_grad2d == thresh  # the raised threshold is this event's only

    opacities = params["opacities"].detach().clone()
    strategy._prune_gs(params, optimizers, state, step=1000)
    target = min(n + room, budget) if budget is not None else n + room
    assert params["means"].shape[0] == target
    kept = torch.sort(params["opacities"].detach()).values
    assert torch.equal(kept, torch.sort(opacities).values[len(opacities) - target:])  # the highest opacities stay
    assert {p.shape[0] for p in params.values()} == {target} and state["grad2d"].shape[0] == target


def test_a_prediction_far_above_the_budget_comes_down_over_several_events():
    """budget_prune_share of the excess per event (the lowest opacities), at least a twentieth of the budget."""
    from ff3r_ns.nerfstudio.refinement import PredictedStartStrategy

    strategy = PredictedStartStrategy(prune_opa=0.0, max_gaussians=40, budget_prune_share=0.5)
    params, optimizers, state = _strategy_state(100)
    opacities = params["opacities"].detach().clone()
    counts = []
    for _ in range(6):
        strategy._prune_gs(params, optimizers, state, step=1000)
        counts.append(params["means"].shape[0])
    # excess 60 -> 30 -> 15 -> 7 (ceil(7.5) removed) -> 3 (ceil(3.5)) -> 1 (the floor: 40 // 20 = 2) -> 0
    assert counts == [70, 55, 47, 43, 41, 40]
    kept = torch.sort(params["opacities"].detach()).values
    assert torch.equal(kept, torch.sort(opacities).values[-40:])
    with pytest.raises(ValueError, match="budget_prune_share"):
        PredictedStartStrategy(max_gaussians=40, budget_prune_share=0.0)


def test_gpu_refinement_batches_and_budgets_and_a_cpu_fallback_takes_one_image(monkeypatch):
    """ff3r's GPU defaults (4 images per step, the Gaussian budget, which reaches the strategy) and its CPU fallback,
    which renders one image per step; ff3r-tiny, sized for a CPU, takes one image and no budget anyway."""
    import copy

    from ff3r_ns.method_configs.ff3r import GPU_CAMERAS_PER_STEP, GPU_MAX_GAUSSIANS, ff3r_method
    from ff3r_ns.nerfstudio.refinement import build_strategy
    from ff3r_ns.nerfstudio.trainer import resolve_device

    gpu = ff3r_method.config
    assert gpu.pipeline.datamanager.cameras_per_step == GPU_CAMERAS_PER_STEP > 1
    assert build_strategy(gpu.pipeline.model, 10).max_gaussians == GPU_MAX_GAUSSIANS
    tiny = ff3r_tiny_method.config
    assert tiny.pipeline.datamanager.cameras_per_step == 1 and build_strategy(tiny.pipeline.model, 10).max_gaussians is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fallback = copy.deepcopy(gpu)
    assert resolve_device(fallback) == "cpu"
    assert fallback.pipeline.datamanager.cameras_per_step == 1 and gpu.pipeline.datamanager.cameras_per_step > 1
    assert fallback.max_num_iterations == gpu.cpu_max_num_iterations < gpu.max_num_iterations
    # Asked for explicitly, the CPU gets the same budget; a user's own --max-num-iterations is kept.
    asked = copy.deepcopy(gpu)
    asked.machine.device_type = "cpu"
    assert resolve_device(asked) == "cpu" and asked.max_num_iterations == gpu.cpu_max_num_iterations
    assert asked.pipeline.datamanager.cameras_per_step == 1
    own = copy.deepcopy(gpu)
    own.machine.device_type, own.max_num_iterations = "cpu", 500
    resolve_device(own)
    assert own.max_num_iterations == 500 and own.pipeline.datamanager.cameras_per_step == GPU_CAMERAS_PER_STEP


def test_a_run_with_a_gaussian_budget_stays_within_it(room, tmp_path):
    """Through ns-train's loop: a budget below the predicted count brings the set down to it at the first refinement
    event and growth never takes it above (every gradient above the threshold, so the parent alone would grow)."""
    cfg = _config(room, tmp_path, 31, warmup_length=2, refine_every=5, densify_grad_thresh=1e-12, reset_alpha_every=100)
    built = vs.build_trainer(cfg)
    model = built.trainer.pipeline.model
    budget = model.num_points * 3 // 4
    model.strategy.max_gaussians, model.strategy.budget_prune_share = budget, 1.0
    counts: list[int] = []
    prune = model.strategy._prune_gs

    def logged_prune(params, optimizers, state, step):
        out = prune(params, optimizers, state, step)
        counts.append(len(params["means"]))
        return out

    model.strategy._prune_gs = logged_prune
    built.trainer.train()
    assert len(counts) == 3 and all(c == budget for c in counts), (counts, budget)  # events at steps 20, 25, 30
    assert {p.shape[0] for p in model.gauss_params.values()} == {budget}


@pytest.mark.parametrize("refine_decoder", [True, False])
def test_the_feature_decoder_is_refined_with_the_features(room, tmp_path, refine_decoder):
    """With refine_feature_decoder the feature loss moves the decoder (which the viewer and the export then read);
    without, it stays the network's."""
    cfg = _config(room, tmp_path, 8, warmup_length=1000, refine_feature_decoder=refine_decoder)
    built = vs.build_trainer(cfg)
    model = built.trainer.pipeline.model
    assert model.teacher_features.numel() > 0  # the room has labels: the feature loss is on
    before = {k: v.detach().clone() for k, v in model.semantics.decoder.state_dict().items()}
    built.trainer.pipeline.train()
    built.trainer.train()
    after = model.semantics.decoder.state_dict()
    moved = max(float((after[k] - before[k]).abs().max()) for k in before)
    if refine_decoder:
        assert moved > 1e-4, moved  # Adam moves every weight with a gradient by about its rate per step
    else:
        assert moved == 0.0


@pytest.mark.parametrize("cameras", [1, 3])
@pytest.mark.parametrize("absgrad", [False, True])
def test_running_statistics_match_gsplat_s_without_reading_back_from_the_gpu(cameras, absgrad):
    """PredictedStartStrategy._update_state (masked sums over the camera axis) against gsplat's DefaultStrategy
    (torch.where + index_add): the same gradient sums and counts; the screen-size maximum is the maximum over a
    Gaussian's cameras (with one camera, gsplat's value exactly)."""
    from gsplat.strategy import DefaultStrategy

    from ff3r_ns.nerfstudio.refinement import PredictedStartStrategy

    g = torch.Generator().manual_seed(3)
    n, w, h = 50, 64, 48
    radii = torch.randint(0, 6, (cameras, n), generator=g, dtype=torch.int32) * (torch.rand(cameras, n, generator=g) > 0.3)
    means2d = torch.randn(cameras, n, 2, generator=g).requires_grad_()
    (means2d * torch.randn(cameras, n, 2, generator=g)).sum().backward()
    means2d.absgrad = means2d.grad.abs() * 1.5
    info = {"means2d": means2d, "radii": radii, "width": w, "height": h, "n_cameras": cameras, "gaussian_ids": None}
    params = {"means": torch.zeros(n, 3)}
    ours, theirs = ({"grad2d": None, "count": None, "radii": None} for _ in range(2))
    for _ in range(2):  # the second call adds to the first's state
        PredictedStartStrategy(absgrad=absgrad, refine_scale2d_stop_iter=1000)._update_state(params, ours, info)
        DefaultStrategy(absgrad=absgrad, refine_scale2d_stop_iter=1000)._update_state(params, theirs, info)
    assert ours["count"].sum() > 0 and (ours["count"] == 0).any()  # visible and hidden Gaussians both occur
    torch.testing.assert_close(ours["count"], theirs["count"], rtol=0, atol=0)
    torch.testing.assert_close(ours["grad2d"], theirs["grad2d"], rtol=1e-6, atol=1e-7)
    expected = (radii.float() / max(w, h)).amax(0)
    torch.testing.assert_close(ours["radii"], expected, rtol=0, atol=0)
    if cameras == 1:
        torch.testing.assert_close(ours["radii"], theirs["radii"], rtol=0, atol=0)


def test_features_are_rendered_and_refined_every_feature_loss_every_steps(room, tmp_path):
    """feature_loss_every=3: training steps 0, 3, 6 render features and carry the feature loss, the others render
    colour only; evaluation always renders them."""
    cfg = _config(room, tmp_path, 7, warmup_length=1000, feature_loss_every=3)
    built = vs.build_trainer(cfg)
    pipeline = built.trainer.pipeline
    model = pipeline.model
    seen = []
    get_loss_dict = model.get_loss_dict

    def spy(outputs, batch, metrics_dict=None):
        loss = get_loss_dict(outputs, batch, metrics_dict)
        seen.append((model.step, "feature" in outputs, "feature" in loss))
        return loss

    model.get_loss_dict = spy
    pipeline.train()
    built.trainer.train()
    assert seen == [(s, s % 3 == 0, s % 3 == 0) for s in range(7)]
    pipeline.eval()
    with torch.no_grad():
        camera, _ = pipeline.datamanager.next_eval_image(0)
        assert "feature" in model.get_outputs(camera.to(model.device))
    cfg.pipeline.model.feature_loss_every = 0
    with pytest.raises(ValueError, match="feature_loss_every"):
        vs.build_trainer(cfg)
