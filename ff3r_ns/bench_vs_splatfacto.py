"""Measuring helpers for ``scripts/bench_vs_splatfacto.py``: FF3R and splatfacto, in-process, stage by stage.

Both methods run through nerfstudio's own ``Trainer`` and pipeline, built from their registered configs
(nerfstudio's ``splatfacto``, this package's ``ff3r-tiny`` / ``ff3r``), with the same dataparser
(nerfstudio-data, :class:`~ff3r_ns.nerfstudio.offline_splatfacto.PlyPointsNerfstudioDataParserConfig`) and the
same held-out frames (every ``EVAL_INTERVAL``-th). Nothing is written but nerfstudio's
``dataparser_transforms.json``: no viewer, no event writers, no checkpoints.

Stages (seconds, CUDA-synchronised; one :class:`RunRecord` per method and scene):

- ``data``: the datamanager's setup and the caching of the training images (dataparser, image decoding; for
  ff3r also its input checks);
- ``forward`` / ``merge`` (ff3r): the network's forward pass / the voxel merge (``FF3RPipeline.reconstruction_timings``);
- ``setup``: the rest of pipeline and optimizer setup (ff3r: reading the weights and the teacher, alignment to
  the dataset frame; splatfacto: initial Gaussians from the points, nearest-neighbour scales);
- ``optimize``: the training loop (splatfacto's iterations; ff3r's refinement steps);
- ``eval``: rendering the held-out views and scoring them (excluded from ``seconds``).

``seconds`` = data + setup + forward + merge + optimize: the reconstruction's wall time, without evaluation.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import math
import os
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
"""splatfacto's shipped iteration count; other full budgets run its schedule compressed (:func:`splatfacto_config`)."""
SHORT_FRACTION = 7 / 30
"""The short budget's share of the full one (7k of 30k): a snapshot of the same run, as 3DGS reports 7k."""
EVAL_INTERVAL = 8
"""nerfstudio-data ``eval_mode="interval"``: frames ``i % 8 == 0`` are held out, for both methods."""
# splatfacto settings counted in iterations: scaled together when the full budget is not 30k.
# (reset_alpha_every counts refinement intervals, so it follows refine_every.)
SPLATFACTO_STEP_FIELDS = ("warmup_length", "refine_every", "resolution_schedule", "sh_degree_interval",
                          "stop_screen_size_at", "stop_split_at")
METHOD_ORDER = ("ff3r", "ff3r+refine", "splatfacto-7k", "splatfacto-30k")


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
    """One method on one scene: stage times (s), peak memory (GB), Gaussians and held-out scores."""

    method: str
    scene: str
    views: int
    eval_views: int
    iterations: int
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
        """Reconstruction wall time: every stage but evaluation."""
        return (self.data_seconds + self.setup_seconds + (self.forward_seconds or 0.0) + (self.merge_seconds or 0.0)
                + self.optimize_seconds)

    def row(self) -> dict[str, Any]:
        """The JSON row (BENCHMARKS.md's ``vs_splatfacto.json`` fields plus the stage breakdown)."""
        e = self.evaluation
        out = {"method": self.method, "scene": self.scene, "views": self.views, "eval_views": self.eval_views,
               "iterations": self.iterations, "seconds": self.seconds, "data_seconds": self.data_seconds,
               "setup_seconds": self.setup_seconds, "forward_seconds": self.forward_seconds,
               "merge_seconds": self.merge_seconds, "optimize_seconds": self.optimize_seconds,
               "peak_gb": self.peak_gb, "gaussians": self.gaussians, "gaussians_predicted": self.gaussians_predicted}
        out.update({"psnr": e.psnr if e else None, "ssim": e.ssim if e else None, "lpips": e.lpips if e else None,
                    "eval_seconds": e.seconds if e else None, "eval_render_fps": e.render_fps if e else None,
                    "eval_resolution": e.resolution if e else None})
        return out


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """Give every ff3r row ``speedup_vs_splatfacto_30k`` / ``_7k``: splatfacto's seconds / ff3r's, same scene."""
    for row in rows:
        if not str(row.get("method")).startswith("ff3r"):
            continue
        for budget in ("30k", "7k"):
            ref = next((r for r in rows if r.get("method") == f"splatfacto-{budget}" and r.get("scene") == row.get("scene")
                        and r.get("views") == row.get("views")), None)
            ok = ref is not None and ref.get("seconds") and row.get("seconds")
            row[f"speedup_vs_splatfacto_{budget}"] = ref["seconds"] / row["seconds"] if ok else None


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
    schedules, learning-rate decay) is multiplied by ``full_iters / 30000``: the shipped schedule, compressed.
    """
    from nerfstudio.configs.method_configs import method_configs

    from ff3r_ns.nerfstudio.offline_splatfacto import make_offline

    config = make_offline(method_configs["splatfacto"])
    factor = full_iters / SPLATFACTO_FULL_ITERS
    if factor != 1.0:
        model = config.pipeline.model
        for name in SPLATFACTO_STEP_FIELDS:
            setattr(model, name, max(1, round(getattr(model, name) * factor)))
        for group in config.optimizers.values():
            sched = group.get("scheduler")
            for name in ("max_steps", "warmup_steps"):
                if sched is not None and getattr(sched, name, 0):
                    setattr(sched, name, max(1, round(getattr(sched, name) * factor)))
    return config


def ff3r_config(method: str = "ff3r-tiny", weights: Optional[Path] = None, image_size: Optional[int] = None) -> Any:
    """This package's registered ``method`` config, with other network weights or input size if given."""
    if method == "ff3r-tiny":
        from ff3r_ns.method_configs.ff3r_tiny import ff3r_tiny_method as spec
    elif method == "ff3r":
        from ff3r_ns.method_configs.ff3r import ff3r_method as spec
    else:
        raise ValueError(f"unknown ff3r method {method!r} (ff3r-tiny or ff3r)")
    config = copy.deepcopy(spec.config)
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


def with_method(record: RunRecord, **changes: Any) -> RunRecord:
    """A copy of ``record`` with fields changed (and no evaluation yet)."""
    return dataclasses.replace(record, evaluation=None, **changes)
