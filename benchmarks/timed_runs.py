"""FF3R and splatfacto, in-process, as time-to-quality curves: the measuring helpers of ``benchmarks.vs_splatfacto``
(and of ``benchmarks.refinement_curves``, ``benchmarks.refined_miou``, ``benchmarks.step_profile``, ...).

Both methods run through nerfstudio's own ``Trainer`` and pipeline, built from their registered configs
(nerfstudio's ``splatfacto``, this package's ``ff3r`` / ``ff3r-tiny`` / ...), with the same dataparser
(nerfstudio-data, :class:`~benchmarks.offline_splatfacto.PlyPointsNerfstudioDataParserConfig`) and the
same held-out frames (every ``EVAL_INTERVAL``-th). Nothing is written but nerfstudio's
``dataparser_transforms.json`` (and ff3r's ``config.yml``): no viewer, no event writers, no checkpoints.

One run per method, scene and view count, of the whole step budget, evaluated on the way
(:func:`train_and_evaluate`) at the steps :func:`eval_steps` lists (ff3r also at step 0: its feedforward result).
Each evaluated point is one :class:`RunPoint`. Stages (seconds, CUDA-synchronised):

- ``data``: the datamanager's setup and the caching of the training images (dataparser, image decoding; for
  ff3r also its input checks);
- ``forward`` / ``merge`` (ff3r): the network's forward pass / the voxel merge (``FF3RPipeline.reconstruction_timings``);
- ``setup``: the rest of pipeline and optimizer setup (ff3r: reading the weights and the teacher, alignment to
  the dataset frame; splatfacto: initial Gaussians from the points, nearest-neighbour scales);
- ``optimize``: the training loop up to the point (splatfacto's iterations; ff3r's refinement steps), without the
  evaluations of earlier points;
- ``eval``: rendering the held-out views and scoring them (excluded from ``seconds``).

``seconds`` = data + setup + forward + merge + optimize: the reconstruction's wall time up to that step, without
evaluation. :func:`benchmarks.vs_splatfacto_summary.summarize` turns the points into the issue's time-to-quality
checks.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import importlib
import math
import os
import pkgutil
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

SPLATFACTO_FULL_ITERS = 30_000
"""splatfacto's shipped iteration count; other budgets run its schedule compressed (:func:`splatfacto_config`)."""
EVAL_INTERVAL = 8
"""nerfstudio-data ``eval_mode="interval"``: frames ``i % 8 == 0`` are held out, for both methods."""
DEFAULT_EVAL_STEPS = (250, 500, 1000, 2000, 3000, 7000, 15000, 30000)
"""Where a 30k run is evaluated (see :func:`eval_steps` for other budgets)."""
MIN_POINTS = 8
"""Evaluated points a run should have (a curve, not two dots)."""


# ------------------------------------------------------------------------------------------- records


@dataclass
class EvalResult:
    """Held-out-view scores of one model: means over ``images`` frames rendered at ``resolution``."""

    psnr: float
    ssim: float
    lpips: Optional[float]
    images: int
    resolution: str
    seconds: float
    render_fps: float


@dataclass
class RunPoint:
    """One evaluated point of one method's run on one scene: stage times (s), peak memory (GB), Gaussians, scores.

    ``step`` optimisation steps of the run's ``budget`` are done (0: before training; for ff3r its feedforward
    result). The setup stages are the run's; ``optimize_seconds`` is the training time up to ``step``.
    """

    method: str
    scene: str
    views: int
    eval_views: int
    budget: int
    step: int
    data_seconds: float
    setup_seconds: float
    optimize_seconds: float
    peak_gb: Optional[float]
    gaussians: int
    forward_seconds: Optional[float] = None
    merge_seconds: Optional[float] = None
    gaussians_predicted: Optional[int] = None
    evaluation: Optional[EvalResult] = None

    @property
    def seconds(self) -> float:
        """Reconstruction wall time up to ``step``: every stage but evaluation."""
        return (self.data_seconds + self.setup_seconds + (self.forward_seconds or 0.0) + (self.merge_seconds or 0.0)
                + self.optimize_seconds)

    def row(self) -> dict[str, Any]:
        """The JSON row: ``vs_splatfacto.json``'s fields (``benchmarks.vs_splatfacto_summary.DEFINITIONS``) and the
        stage breakdown."""
        e = self.evaluation
        out = {"method": self.method, "scene": self.scene, "views": self.views, "eval_views": self.eval_views,
               "step": self.step, "budget": self.budget, "seconds": self.seconds, "psnr": e.psnr if e else None,
               "ssim": e.ssim if e else None, "lpips": e.lpips if e else None, "gaussians": self.gaussians,
               "peak_gb": self.peak_gb, "data_seconds": self.data_seconds, "setup_seconds": self.setup_seconds,
               "forward_seconds": self.forward_seconds, "merge_seconds": self.merge_seconds,
               "optimize_seconds": self.optimize_seconds, "gaussians_predicted": self.gaussians_predicted}
        out.update({"eval_seconds": e.seconds if e else None, "eval_render_fps": e.render_fps if e else None,
                    "eval_resolution": e.resolution if e else None})
        return out


def with_method(record: RunPoint, **changes: Any) -> RunPoint:
    """A copy of ``record`` with fields changed (and no evaluation yet)."""
    return dataclasses.replace(record, evaluation=None, **changes)


# ------------------------------------------------------------------------------------------ eval steps


def eval_steps(budget: int, requested: Optional[Sequence[int]] = None, minimum: int = MIN_POINTS) -> list[int]:
    """The steps at which a run of ``budget`` steps is evaluated, ascending, always ending at ``budget``.

    Args:
        budget: the run's step count (>= 0).
        requested: explicit steps (0 = before training); those above ``budget`` are dropped. None: the default,
            :data:`DEFAULT_EVAL_STEPS` clipped to ``budget``, or, when that leaves fewer than ``minimum`` points
            (budgets below 30k), :data:`DEFAULT_EVAL_STEPS` scaled by ``budget / 30000`` (the same places in the
            compressed schedule).

    Raises:
        ValueError: a negative budget or step.
    """
    if budget < 0 or any(s < 0 for s in requested or ()):
        raise ValueError(f"eval steps and budget must be >= 0 (budget {budget}, steps {list(requested or ())})")
    if requested is not None:
        return sorted({s for s in requested if s <= budget} | {budget})
    steps = {s for s in DEFAULT_EVAL_STEPS if s <= budget} | {budget}
    if len(steps) < minimum:
        scaled = {max(1, round(s * budget / SPLATFACTO_FULL_ITERS)) for s in DEFAULT_EVAL_STEPS}
        steps = {s for s in scaled if s <= budget} | {budget}
    return sorted(steps)


# -------------------------------------------------------------------------------------------- scenes


def frames_for_training_views(views: int, eval_interval: int = EVAL_INTERVAL) -> int:
    """The frame count ``M`` whose interval split leaves exactly ``views`` training frames (``M - ceil(M/k)``)."""
    m = views
    while m - math.ceil(m / eval_interval) < views:
        m += 1
    return m


def _write_generated(spec: Any, folder: Path) -> Path:
    """Render ``spec`` into ``folder`` (via a temporary sibling, so an interrupted run leaves no half scene)."""
    from ff3r_ns.data.generate import generate_scene, write_scene

    tmp = folder.with_name(folder.name + ".tmp")
    write_scene(generate_scene(spec), tmp, spec, overwrite=True)
    tmp.rename(folder)
    return folder


def generated_scenes(view_counts: Sequence[int], resolution: int, seed: int, cache_dir: Path,
                     workers: int = 0) -> dict[int, Path]:
    """nerfstudio-data folders of generated room ``seed`` with ``views`` training frames each (cached).

    Each scene is a closed orbit of ``frames_for_training_views(views)`` frames, so the held-out frames lie
    between training frames. Missing scenes are rendered in parallel processes (one per scene).
    """
    from concurrent.futures import ProcessPoolExecutor

    from ff3r_ns.data.generate import GENERATOR_VERSION, SceneSpec

    out, todo = {}, {}
    for v in view_counts:
        frames = frames_for_training_views(v)
        folder = Path(cache_dir) / f"seed{seed}_train{v}_of{frames}_{resolution}px_gen{GENERATOR_VERSION}"
        out[v] = folder
        if not (folder / "transforms.json").exists():
            todo[v] = (SceneSpec(seed=seed, num_views=frames, width=resolution, height=resolution), folder)
    if todo:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        n = min(len(todo), workers or os.cpu_count() or 1)
        with ProcessPoolExecutor(n) as pool:
            list(pool.map(_write_generated, *zip(*todo.values())))
    return out


# ------------------------------------------------------------------------------------------- configs


def dataparser_config(data: Path, downscale_factor: int = 1) -> Any:
    """The one dataparser both methods use: nerfstudio-data, interval split, points read without open3d."""
    from benchmarks.offline_splatfacto import PlyPointsNerfstudioDataParserConfig

    return PlyPointsNerfstudioDataParserConfig(data=Path(data), downscale_factor=downscale_factor, eval_mode="interval",
                                               eval_interval=EVAL_INTERVAL, load_3D_points=True)


def quiet_trainer_config(config: Any, data: Path, device: str, iterations: int, out_dir: Path, label: str,
                         downscale_factor: int = 1) -> Any:
    """A copy of a method's ``TrainerConfig`` for in-process timing: our dataparser on ``data``, ``iterations``
    steps, no viewer, no event writers, no evaluation during training, no profiler."""
    config = copy.deepcopy(config)
    dm = config.pipeline.datamanager
    dm.data = Path(data)
    dm.dataparser = dataparser_config(data, downscale_factor)
    config.machine.device_type = device
    config.max_num_iterations = iterations
    # TrainerConfig enables the viewer and writers by substring checks on ``vis``: "none" matches none of them.
    config.vis = "none"
    config.steps_per_eval_image = config.steps_per_eval_batch = config.steps_per_eval_all_images = 0
    config.steps_per_save = 0
    config.logging.local_writer.enable = False
    config.logging.profiler = "none"
    config.viewer.quit_on_train_completion = True
    config.output_dir = Path(out_dir)
    config.experiment_name = Path(data).name
    config.timestamp = label
    return config


def splatfacto_config(full_iters: int) -> Any:
    """nerfstudio's ``splatfacto`` (offline variant, same settings) with its schedule scaled to ``full_iters``.

    At 30k nothing changes. Otherwise every setting counted in iterations (densification, resolution and SH
    schedules, learning-rate decay) is multiplied by ``full_iters / 30000``
    (:func:`ff3r_ns.nerfstudio.schedule.scale_schedule`): the shipped schedule, compressed.
    """
    from nerfstudio.configs.method_configs import method_configs

    from benchmarks.offline_splatfacto import make_offline
    from ff3r_ns.nerfstudio.schedule import scale_schedule

    config = make_offline(method_configs["splatfacto"])
    scale_schedule(config, full_iters, SPLATFACTO_FULL_ITERS)
    return config


def ff3r_methods() -> dict[str, Any]:
    """This package's registered methods, ``{name: MethodSpecification}``: every one defined in a module of
    :mod:`ff3r_ns.method_configs` (the modules ``pyproject.toml`` registers with nerfstudio), by name."""
    from nerfstudio.plugins.types import MethodSpecification

    import ff3r_ns.method_configs as package

    found: dict[str, Any] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, MethodSpecification):
                found[value.config.method_name] = value
    return dict(sorted(found.items()))


def ff3r_config(method: str = "ff3r", weights: Optional[Path] = None, image_size: Optional[int] = None) -> Any:
    """A copy of this package's registered ``method`` config, with other network weights or input size if given.

    Raises:
        ValueError: ``method`` is not one of :func:`ff3r_methods`.
    """
    methods = ff3r_methods()
    if method not in methods:
        raise ValueError(f"unknown ff3r method {method!r} (registered: {', '.join(methods)})")
    config = copy.deepcopy(methods[method].config)
    if weights is not None:
        config.pipeline.model.network.weights = Path(weights)
    if image_size is not None:
        config.pipeline.model.network.image_size = image_size
    return config


def set_field(config: Any, assignment: str) -> None:
    """``a.b.c=VALUE`` (a Python literal) on a nested config (dict keys or attributes): a benchmark's ``--set``."""
    path, value = assignment.split("=", 1)
    *parents, last = path.split(".")
    obj = config
    for name in parents:
        obj = obj[name] if isinstance(obj, dict) else getattr(obj, name)
    value = eval(value, {})  # noqa: S307 - a developer's own command line
    if isinstance(obj, dict):
        obj[last] = value
    else:
        setattr(obj, last, value)


# ------------------------------------------------------------------------------------------- running


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def peak_gb(device: str) -> Optional[float]:
    """``torch.cuda.max_memory_allocated`` in GB (1e9 bytes) since the last reset; None on CPU."""
    return torch.cuda.max_memory_allocated() / 1e9 if torch.device(device).type == "cuda" else None


def reset_peak(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def seed_everything(seed: int) -> None:
    """What ``ns-train`` does with ``machine.seed`` before building the trainer."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class BuiltTrainer:
    """A set-up trainer and the wall time of its setup: ``data_seconds`` of ``total_seconds``."""

    trainer: Any
    data_seconds: float
    total_seconds: float


def build_trainer(config: Any) -> BuiltTrainer:
    """``config.setup()`` + ``Trainer.setup()``, timed, with the datamanager's share timed separately."""
    device = config.machine.device_type
    dm_config = config.pipeline.datamanager
    data_seconds: list[float] = []
    setup_datamanager = dm_config.setup

    def timed_setup(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = setup_datamanager(*args, **kwargs)
        # nerfstudio decodes and caches the training images on first use (a cached_property): do it here, so that
        # image loading counts as data loading for both methods, not as ff3r's setup or splatfacto's first step.
        if hasattr(type(out), "cached_train"):
            _ = out.cached_train
        sync(device)
        data_seconds.append(time.perf_counter() - t0)
        return out

    object.__setattr__(dm_config, "setup", timed_setup)  # instance attribute: the shared config class is untouched
    release()  # the previous run's memory must not count towards this run's peak
    seed_everything(config.machine.seed)
    reset_peak(device)
    trainer = config.setup(local_rank=0, world_size=1)
    t0 = time.perf_counter()
    trainer.setup()
    sync(device)
    total = time.perf_counter() - t0
    del dm_config.setup
    trainer.save_checkpoint = lambda *a, **k: None  # evaluation happens in-process: no checkpoint is needed
    return BuiltTrainer(trainer, sum(data_seconds), total)


def add_callback(trainer: Any, func: Callable[[int], None], every: Optional[int] = None,
                 at: Optional[tuple[int, ...]] = None) -> None:
    """Run ``func(step)`` after training iterations (every ``every`` steps, or at the steps ``at``)."""
    from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

    trainer.callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                                              lambda step: func(step), update_every_num_iters=every, iters=at))


def train_and_evaluate(trainer: Any, base: RunPoint, steps: Sequence[int], evaluate_fn: Callable[[Any], EvalResult],
                       on_point: Optional[Callable[[RunPoint], None]] = None,
                       clock: Callable[[], float] = time.perf_counter) -> list[RunPoint]:
    """Train ``trainer`` through its budget, evaluating at ``steps``; one record per evaluated point.

    Step 0 is evaluated before the first iteration, step ``s > 0`` right after iteration ``s`` (nerfstudio's step
    ``s - 1``, after the model's own callbacks such as densification). At each point the device is synchronised,
    ``optimize_seconds`` = training wall time so far minus the time every earlier evaluation took, and ``peak_gb``
    = the largest allocation so far outside evaluations (the counter is reset after each evaluation and the
    maxima are carried); then ``evaluate_fn(pipeline)`` runs (untimed) and ``on_point(record)`` (untimed).

    Args:
        trainer: a set-up nerfstudio ``Trainer`` (``max_num_iterations`` = the budget).
        base: the run's setup stages (data, setup, forward, merge), ``peak_gb`` after setup, scene and budget;
            copied into each point.
        steps: the steps to evaluate at (from :func:`eval_steps`; each <= ``base.budget``).
        evaluate_fn: scores the pipeline's held-out views (:func:`evaluate`).
        on_point: called with each finished record (logging, writing partial results).
        clock: the wall clock (tests pass a fake one).
    """
    pipeline = trainer.pipeline
    device = str(pipeline.device)
    records: list[RunPoint] = []
    excluded, peak, start = [0.0], [base.peak_gb], [clock()]

    def point(done: int) -> None:
        sync(device)
        optimize = clock() - start[0] - excluded[0] if done > 0 else 0.0
        now = peak_gb(device)
        if now is not None:
            peak[0] = now if peak[0] is None else max(peak[0], now)
        record = with_method(base, step=done, optimize_seconds=optimize, peak_gb=peak[0],
                             gaussians=pipeline.model.num_points)
        t0 = clock()
        record.evaluation = evaluate_fn(pipeline)
        pipeline.train()
        sync(device)
        reset_peak(device)  # the evaluation's memory stays out of the next points' peak
        if on_point is not None:
            on_point(record)
        excluded[0] += clock() - t0
        records.append(record)

    wanted = sorted(set(steps))
    if any(s > base.budget for s in wanted):
        raise ValueError(f"eval steps {wanted} go past the budget {base.budget}")
    if 0 in wanted:
        point(0)
    later = tuple(s - 1 for s in wanted if s > 0)
    if later:
        add_callback(trainer, lambda step: point(step + 1), at=later)
    start[0], excluded[0] = clock(), 0.0  # step 0's evaluation came before the clock started
    trainer.train()
    sync(device)
    return records


@torch.no_grad()
def evaluate(pipeline: Any, lpips: Optional[Callable] = None) -> EvalResult:
    """PSNR / SSIM (/ LPIPS) of every held-out frame, the same functions for both methods.

    Each model renders through its own ``get_outputs_for_camera`` at the dataset's camera and scores against
    its own ``get_gt_img`` (splatfacto's resolution schedule downsizes both alike; at the end of either budget
    it is at full resolution). Metrics: :mod:`ff3r_ns.core.metrics` (torchmetrics' definitions).
    """
    from ff3r_ns.core import metrics

    model, device = pipeline.model, str(pipeline.device)
    model.eval()
    t_start, render_s = time.perf_counter(), 0.0
    scores: list[tuple[float, float, Optional[float]]] = []
    size = "?"
    for camera, batch in pipeline.datamanager.fixed_indices_eval_dataloader:
        sync(device)
        t0 = time.perf_counter()
        outputs = model.get_outputs_for_camera(camera)
        sync(device)
        render_s += time.perf_counter() - t0
        pred = outputs["rgb"].clamp(0.0, 1.0)
        gt = model.composite_with_background(model.get_gt_img(batch["image"]), outputs["background"])[..., :3]
        size = f"{pred.shape[1]}x{pred.shape[0]}"
        lp = float(lpips(pred, gt)) if lpips is not None else None
        scores.append((float(metrics.psnr(pred, gt)), float(metrics.ssim(pred, gt)), lp))
    if not scores:
        raise ValueError("the dataset has no held-out frames (eval split is empty)")
    mean = lambda i: float(np.mean([s[i] for s in scores])) if scores[0][i] is not None else None  # noqa: E731
    return EvalResult(mean(0), mean(1), mean(2), len(scores), size, time.perf_counter() - t_start,
                      len(scores) / max(render_s, 1e-9))


def release() -> None:
    """Free what finished runs left (nerfstudio's objects hold reference cycles) and return cached GPU memory."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
