"""Measuring helpers for ``scripts/bench_vs_splatfacto.py``: FF3R and splatfacto, in-process, as time-to-quality curves.

Both methods run through nerfstudio's own ``Trainer`` and pipeline, built from their registered configs
(nerfstudio's ``splatfacto``, this package's ``ff3r`` / ``ff3r-tiny`` / ...), with the same dataparser
(nerfstudio-data, :class:`~ff3r_ns.nerfstudio.offline_splatfacto.PlyPointsNerfstudioDataParserConfig`) and the
same held-out frames (every ``EVAL_INTERVAL``-th). Nothing is written but nerfstudio's
``dataparser_transforms.json`` (and ff3r's ``config.yml``): no viewer, no event writers, no checkpoints.

One run per method, scene and view count, of the whole step budget, evaluated on the way
(:func:`train_and_evaluate`) at the steps :func:`eval_steps` lists (ff3r also at step 0: its feedforward result).
Each evaluated point is one :class:`RunRecord`. Stages (seconds, CUDA-synchronised):

- ``data``: the datamanager's setup and the caching of the training images (dataparser, image decoding; for
  ff3r also its input checks);
- ``forward`` / ``merge`` (ff3r): the network's forward pass / the voxel merge (``FF3RPipeline.reconstruction_timings``);
- ``setup``: the rest of pipeline and optimizer setup (ff3r: reading the weights and the teacher, alignment to
  the dataset frame; splatfacto: initial Gaussians from the points, nearest-neighbour scales);
- ``optimize``: the training loop up to the point (splatfacto's iterations; ff3r's refinement steps), without the
  evaluations of earlier points;
- ``eval``: rendering the held-out views and scoring them (excluded from ``seconds``).

``seconds`` = data + setup + forward + merge + optimize: the reconstruction's wall time up to that step, without
evaluation. :func:`summarize` turns the points into the issue's time-to-quality checks.
"""

from __future__ import annotations

import bisect
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

from ff3r_ns.core.cameras import Cameras
from ff3r_ns.core.gaussians import Gaussians

SPLATFACTO_FULL_ITERS = 30_000
"""splatfacto's shipped iteration count; other budgets run its schedule compressed (:func:`splatfacto_config`)."""
EVAL_INTERVAL = 8
"""nerfstudio-data ``eval_mode="interval"``: frames ``i % 8 == 0`` are held out, for both methods."""
DEFAULT_EVAL_STEPS = (250, 500, 1000, 2000, 3000, 7000, 15000, 30000)
"""Where a 30k run is evaluated (see :func:`eval_steps` for other budgets)."""
MIN_POINTS = 8
"""Evaluated points a run should have (a curve, not two dots)."""
PSNR_MARGIN_DB = 0.5
"""ff3r "reaches splatfacto's quality" at PSNR >= splatfacto's final PSNR - this margin."""
SPEEDUP_TARGET = 10.0
SPEEDUP_TARGET_VIEWS = (64, 128)
"""The issue's time-to-quality target: splatfacto's final seconds / ff3r's seconds to its quality >= 10 at 64 and
128 views."""


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
class RunRecord:
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
        """The JSON row (BENCHMARKS.md's ``vs_splatfacto.json`` fields plus the stage breakdown)."""
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


def with_method(record: RunRecord, **changes: Any) -> RunRecord:
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


# ------------------------------------------------------------------------------------------- summary


def psnr_at(points: Sequence[tuple[float, float]], seconds: float) -> float:
    """A curve's PSNR at wall time ``seconds``: linear interpolation in time between its evaluated points
    ``(seconds, psnr)``; before the first point, the first point's PSNR; after the last, the last's.

    Raises:
        ValueError: no points.
    """
    pts = sorted(points)
    if not pts:
        raise ValueError("psnr_at: empty curve")
    ts = [t for t, _ in pts]
    if seconds <= ts[0]:
        return pts[0][1]
    if seconds >= ts[-1]:
        return pts[-1][1]
    i = bisect.bisect_right(ts, seconds)
    (t0, p0), (t1, p1) = pts[i - 1], pts[i]
    return p0 if t1 == t0 else p0 + (p1 - p0) * (seconds - t0) / (t1 - t0)


SUMMARY_DEFINITIONS = {
    "splatfacto_psnr_at(t)": "splatfacto's held-out PSNR at wall time t: linear interpolation in seconds (not log) "
                             "between its evaluated points; before its first point, its first point's PSNR (a "
                             "splatfacto model that did not exist yet is credited with its first score); after its "
                             "last point, its final PSNR",
    "final": "a run's last evaluated point (step = its budget)",
    "psnr_threshold": "splatfacto's final PSNR - psnr_margin_db",
    "ff3r_reach_*": "the earliest ff3r point (in step, hence in seconds) with psnr >= psnr_threshold; None if none",
    "speedup": "splatfacto_final_seconds / ff3r_reach_seconds; speedup_met: speedup >= speedup_target (False when "
               "ff3r never reaches psnr_threshold); a target at speedup_target_views",
    "ahead_met": "at every ff3r point with seconds <= splatfacto_final_seconds: ff3r psnr >= splatfacto_psnr_at(its "
                 "seconds), and at every splatfacto point after ff3r's last one (a finished ff3r run): ff3r's final "
                 "psnr >= splatfacto's psnr there; ahead_worst_margin_db is the smallest difference over those "
                 "comparisons (ahead_worst_step: the ff3r step compared, ahead_worst_seconds: the wall time); None when "
                 "no ff3r point lies within splatfacto's run",
    "final_psnr_met": "ff3r final psnr >= splatfacto final psnr",
    "final_gaussians_met": "ff3r final gaussians <= splatfacto final gaussians",
    "met fields": "None when a method's rows are missing",
}


def curve_rows(rows: Sequence[dict[str, Any]], method: str, scene: Any, views: Any) -> list[dict[str, Any]]:
    """One run's evaluated points, by step."""
    mine = [r for r in rows if r.get("method") == method and r.get("scene") == scene and r.get("views") == views
            and r.get("psnr") is not None and r.get("seconds") is not None]
    return sorted(mine, key=lambda r: (r.get("step") or 0, r["seconds"]))


def summarize_case(sf: Sequence[dict[str, Any]], ff: Sequence[dict[str, Any]], margin: float = PSNR_MARGIN_DB,
                   speedup_target: float = SPEEDUP_TARGET) -> dict[str, Any]:
    """The time-to-quality checks of one scene and view count from splatfacto's and ff3r's points (by step)."""
    out: dict[str, Any] = {"splatfacto_points": len(sf), "ff3r_points": len(ff)}
    for name, pts in (("splatfacto", sf), ("ff3r", ff)):
        last = pts[-1] if pts else {}
        for key in ("step", "seconds", "psnr", "gaussians"):
            out[f"{name}_final_{key}"] = last.get(key)
    keys = ("psnr_threshold", "ff3r_reach_step", "ff3r_reach_seconds", "ff3r_reach_psnr", "speedup", "speedup_met",
            "ahead_points", "ahead_worst_margin_db", "ahead_worst_step", "ahead_worst_seconds", "ahead_met",
            "final_psnr_met", "final_gaussians_met")
    out.update(dict.fromkeys(keys))
    if not sf or not ff:
        return out
    sf_final, ff_final = sf[-1], ff[-1]
    threshold = sf_final["psnr"] - margin
    out["psnr_threshold"] = threshold
    reach = next((p for p in ff if p["psnr"] >= threshold), None)
    if reach is not None:
        out.update(ff3r_reach_step=reach.get("step"), ff3r_reach_seconds=reach["seconds"], ff3r_reach_psnr=reach["psnr"])
        out["speedup"] = sf_final["seconds"] / reach["seconds"] if reach["seconds"] > 0 else math.inf
    out["speedup_met"] = out["speedup"] is not None and out["speedup"] >= speedup_target
    curve = [(p["seconds"], p["psnr"]) for p in sf]
    within = [p for p in ff if p["seconds"] <= sf_final["seconds"]]
    out["ahead_points"] = len(within)
    if within:
        gaps = [(p["psnr"] - psnr_at(curve, p["seconds"]), p.get("step"), p["seconds"]) for p in within]
        # A run that ended before splatfacto's is its final result from then on: judged at splatfacto's later points.
        gaps += [(ff_final["psnr"] - p["psnr"], ff_final.get("step"), p["seconds"]) for p in sf
                 if p["seconds"] > ff_final["seconds"]]
        worst, step, seconds = min(gaps, key=lambda g: g[0])
        out.update(ahead_worst_margin_db=worst, ahead_worst_step=step, ahead_worst_seconds=seconds, ahead_met=worst >= 0.0)
    out["final_psnr_met"] = ff_final["psnr"] >= sf_final["psnr"]
    if sf_final.get("gaussians") is not None and ff_final.get("gaussians") is not None:
        out["final_gaussians_met"] = ff_final["gaussians"] <= sf_final["gaussians"]
    return out


def summarize(rows: Sequence[dict[str, Any]], margin: float = PSNR_MARGIN_DB, speedup_target: float = SPEEDUP_TARGET,
              target_views: Sequence[int] = SPEEDUP_TARGET_VIEWS) -> dict[str, Any]:
    """The ``summary`` object: the thresholds and one case per scene and view count (see :data:`SUMMARY_DEFINITIONS`)."""
    cases = []
    for scene, views in dict.fromkeys((r.get("scene"), r.get("views")) for r in rows):
        case = {"scene": scene, "views": views, "speedup_is_target": views in target_views}
        case.update(summarize_case(curve_rows(rows, "splatfacto", scene, views), curve_rows(rows, "ff3r", scene, views),
                                   margin, speedup_target))
        cases.append(case)
    return {"psnr_margin_db": margin, "speedup_target": speedup_target, "speedup_target_views": list(target_views),
            "cases": cases}


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
    from ff3r_ns.nerfstudio.offline_splatfacto import PlyPointsNerfstudioDataParserConfig

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

    from ff3r_ns.nerfstudio.offline_splatfacto import make_offline
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


def train_and_evaluate(trainer: Any, base: RunRecord, steps: Sequence[int], evaluate_fn: Callable[[Any], EvalResult],
                       on_point: Optional[Callable[[RunRecord], None]] = None,
                       clock: Callable[[], float] = time.perf_counter) -> list[RunRecord]:
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
    records: list[RunRecord] = []
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


# ---------------------------------------------------------------------------------------- render fps


def splat_gaussians(model: Any) -> Gaussians:
    """A SplatfactoModel's (or FF3RModel's) ``gauss_params`` as activated :class:`Gaussians` (features if any)."""
    p = model.gauss_params
    n = p["means"].shape[0]
    features = p["sem_features"] if "sem_features" in p else p["means"].new_zeros(n, 0)
    return Gaussians(means=p["means"], quats=torch.nn.functional.normalize(p["quats"], dim=-1),
                     scales=torch.exp(p["scales"]), opacities=torch.sigmoid(p["opacities"]).squeeze(-1),
                     sh=torch.cat([p["features_dc"][:, None, :], p["features_rest"]], dim=1),
                     features=features).detach()


def camera_at(camera: Cameras, width: int, height: int) -> Cameras:
    """One camera with ``camera``'s pose and horizontal field of view, at ``width x height`` (square pixels)."""
    f = float(camera.intrinsics[0, 0, 0]) * width / camera.width
    k = torch.tensor([[[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]]])
    return Cameras(camera.world_to_cam[:1], k.to(camera.world_to_cam), width, height)


@torch.no_grad()
def render_fps(gaussians: Gaussians, camera: Cameras, resolutions: Sequence[tuple[int, int]], features: Sequence[bool],
               repeats: int = 20, warmup: int = 3) -> list[dict[str, Any]]:
    """Frames per second of :func:`ff3r_ns.core.render.render` (gsplat on CUDA), median of ``repeats`` frames.

    Args:
        gaussians: the reconstruction.
        camera: the pose to render from (its field of view is kept, see :func:`camera_at`).
        resolutions: ``(width, height)`` pairs.
        features: for each entry, a row with (True) or without (False) the semantic feature channels.
    """
    from ff3r_ns.benchmarks import timed
    from ff3r_ns.core.render import render

    device = str(gaussians.device)
    rows = []
    for (w, h) in resolutions:
        cam = camera_at(camera, w, h).to(gaussians.device)
        for with_features in features:
            if with_features and gaussians.feature_dim == 0:
                continue
            sec = timed(lambda: render(gaussians, cam, render_features=with_features), repeats=repeats, warmup=warmup,
                        sync=lambda: sync(device))
            rows.append({"gaussians": gaussians.num, "resolution": f"{w}x{h}",
                         "channels": 3 + (gaussians.feature_dim if with_features else 0), "fps": 1.0 / sec,
                         "ms": 1e3 * sec})
    return rows


def first_eval_camera(pipeline: Any) -> Cameras:
    """The first held-out frame's camera (dataset frame) as a core camera."""
    from ff3r_ns.nerfstudio.model import ns_to_core_cameras

    return ns_to_core_cameras(pipeline.datamanager.eval_dataset.cameras[0:1])

