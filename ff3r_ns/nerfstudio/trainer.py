"""nerfstudio's trainer, with what ff3r needs before and after the loop.

- **Device.** ``ns-train ff3r --data SCENE`` with no other flag runs where it can: on the GPU when there is one,
  else on the CPU (nerfstudio's default ``--machine.device-type cuda`` would fail there). On the CPU, asked for or
  fallen back to, a run that left ``--max-num-iterations`` at the method's default gets a CPU-sized step budget
  and one image per step.
- **Schedules.** The model's densification, SH and learning-rate schedules are splatfacto's, written for 30k
  steps; they are laid out for the run's own budget (:func:`~ff3r_ns.nerfstudio.schedule.scale_schedule`). A run
  that takes only the start of the uncompressed schedule (a CPU budget, ``ff3r-tiny``) has higher learning rates
  (``short_run_lr_scale``) and no densification (``short_run_densify``): splatfacto's rates are written for 30k
  steps from random colours and opacities, not for a few hundred steps from a prediction. Several images per step
  (``--pipeline.datamanager.cameras-per-step B``) take sqrt(B) larger steps, as gsplat's batched trainer.
- **No half runs.** ``ns-train`` writes ``config.yml`` before the trainer exists, so a run that stops at start-up
  (no ``--data``, bad images, no weights) would leave a folder that looks like a run. The config is written once
  the pipeline is set up.
- **Zero iterations** (pure feedforward): nerfstudio 1.1.5 saves the checkpoint, then its local writer fails with
  ``KeyError: 'step'`` (no step was ever logged) and divides by the zero iteration count.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Dict, Literal, Optional, Type

import torch
from tyro.conf import Suppress

from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils import writer
from nerfstudio.utils.rich_utils import CONSOLE

from ff3r_ns.nerfstudio.schedule import SPLATFACTO_STEPS, add_fast_start, scale_learning_rates, scale_schedule


SHORT_RUN_LR_SCALE = {"means": 10.0, "scales": 8.0, "features_dc": 8.0, "opacities": 4.0, "sem_features": 8.0}
"""Measured on the demo room (22 views, 128 px, CPU, ff3r-tiny): 500 steps reach 25.48 dB held-out PSNR with the
first four, 22.25 dB with splatfacto's rates (feedforward 20.62 dB; benchmarks/results/short_run_lr.json); the
semantic features' x8 lifts held-out mIoU after 1000 steps on 4 unseen rooms from 0.729 to 0.780
(benchmarks/results/refined_miou.json)."""

# Configs whose pipeline is set up (kept out of the config itself, which is written to config.yml).
_READY_TO_SAVE: set[int] = set()


@dataclass
class FF3RTrainerConfig(TrainerConfig):
    """nerfstudio's TrainerConfig; ``max_num_iterations`` counts refinement steps after the feedforward pass."""

    _target: Type = field(default_factory=lambda: FF3RTrainer)
    cpu_max_num_iterations: Optional[int] = None
    """Refinement steps when the run falls back to the CPU (no CUDA device) and --max-num-iterations was left at
    the method's default; None keeps --max-num-iterations."""
    schedule_reference_steps: int = SPLATFACTO_STEPS
    """The budget the model's step-counted settings and learning-rate schedules are written for (splatfacto's
    30k); they are stretched or compressed to --max-num-iterations."""
    min_schedule_steps: int = 3000
    """Schedules are never compressed below this budget: a shorter run takes the first --max-num-iterations steps of
    the schedule laid out for this many (compressed further, densification and the learning-rate decay would
    leave a short run no time to fit)."""
    short_run_lr_scale: Dict[str, float] = field(default_factory=lambda: dict(SHORT_RUN_LR_SCALE))
    """Learning-rate multipliers (parameter group -> factor) for a run shorter than min_schedule_steps that takes
    the start of the uncompressed schedule (a CPU budget, ff3r-tiny); factors of 1 keep splatfacto's rates."""
    short_run_densify: bool = False
    """Densify, prune and reset opacities in a short run (see short_run_lr_scale). Off: a short run polishes the
    prediction (at the short-run rates, densifying from step 500 lost 1 dB on the demo room by step 1000)."""
    fast_start_steps: int = 0
    """A full-length run's first steps at the short-run rates (short_run_lr_scale), the boost decaying linearly to
    splatfacto's rates over this many steps; 0: off (not yet measured on a GPU)."""
    default_max_num_iterations: Suppress[Optional[int]] = None
    # The method's own --max-num-iterations, set by the method config (how a user's override is recognised).

    def save_config(self) -> None:
        """Deferred until the pipeline is set up (see the module docstring); :meth:`FF3RTrainer.setup` writes it."""
        if id(self) in _READY_TO_SAVE:
            super().save_config()


def resolve_device(config: FF3RTrainerConfig) -> Literal["cpu", "cuda", "mps"]:
    """The device the run uses: the requested one, or the CPU when CUDA was asked for (nerfstudio's default) but
    there is none. On the CPU (asked for or fallen back to) a run that kept the method's default step budget gets
    ``cpu_max_num_iterations`` steps of one image each instead."""
    device = config.machine.device_type
    if device == "cuda" and not torch.cuda.is_available():
        CONSOLE.log("[yellow]ff3r: no CUDA device: running on the CPU (pass --machine.device-type cpu to silence this)")
        device = "cpu"
        config.machine.device_type = device
    kept_default = config.max_num_iterations == config.default_max_num_iterations
    if device == "cpu" and config.cpu_max_num_iterations is not None and kept_default:
        CONSOLE.log(
            f"ff3r: {config.cpu_max_num_iterations} refinement steps on the CPU instead of {config.max_num_iterations} "
            "(pass --max-num-iterations to choose)"
        )
        config.max_num_iterations = config.cpu_max_num_iterations
        # A CPU budget is short: the start of the full schedule uses it best (measured on the demo room: 300
        # steps gave +1.3 dB in 35 s this way, +0.9 dB in 210 s with the schedule compressed to 300; with the
        # short-run learning rates 1500 steps give +6.2 dB on the demo).
        config.min_schedule_steps = config.schedule_reference_steps
        # Several images per step pay off only where a step is launch-bound (a GPU); on a CPU each costs its own.
        config.pipeline.datamanager.cameras_per_step = 1
    return device


class FF3RTrainer(Trainer):
    config: FF3RTrainerConfig

    def __init__(self, config: FF3RTrainerConfig, local_rank: int = 0, world_size: int = 1) -> None:
        resolve_device(config)
        if config.max_num_iterations > 0:
            layout = max(config.max_num_iterations, config.min_schedule_steps)
            scale_schedule(config, layout, config.schedule_reference_steps, min_refine_every=10)
            # A short run: the start of the uncompressed schedule (the regime the factors were measured in).
            if config.max_num_iterations < layout == config.schedule_reference_steps:
                scale_learning_rates(config, config.short_run_lr_scale, "short_run_lr_scale")
                if not config.short_run_densify:
                    # refine_stop_iter 0: the strategy neither grows, prunes nor resets opacities.
                    config.pipeline.model.stop_split_at = 0
            elif config.fast_start_steps > 0:
                add_fast_start(config, config.short_run_lr_scale, config.fast_start_steps, "short_run_lr_scale")
            batch = getattr(config.pipeline.datamanager, "cameras_per_step", 1)
            if batch > 1:
                # A gradient averaged over B images is less noisy: gsplat's batched trainer takes sqrt(B) larger steps.
                groups = {name: math.sqrt(batch) for name in config.optimizers if name != "camera_opt"}
                scale_learning_rates(config, groups, "cameras_per_step")
            # The config now holds the laid-out schedule and rates: a run resumed from its config.yml must not scale
            # them twice.
            config.schedule_reference_steps = layout
            config.short_run_lr_scale = {}
        super().__init__(config, local_rank, world_size)

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        # Write config.yml as soon as the pipeline exists (the run is real then), before the viewer, which needs
        # the run folder: wrap this config's pipeline.setup once (an instance attribute; the class is untouched).
        pipeline_config = self.config.pipeline
        setup_pipeline = pipeline_config.setup

        def setup_then_save(*args, **kwargs):
            pipeline = setup_pipeline(*args, **kwargs)
            del pipeline_config.setup  # before the config is written out
            if self.local_rank == 0:
                _READY_TO_SAVE.add(id(self.config))
                try:
                    self.config.save_config()
                finally:
                    _READY_TO_SAVE.discard(id(self.config))
            return pipeline

        object.__setattr__(pipeline_config, "setup", setup_then_save)
        try:
            super().setup(test_mode)
        finally:
            pipeline_config.__dict__.pop("setup", None)

    def _after_train(self) -> None:
        writer.GLOBAL_BUFFER.setdefault("step", self.step)
        writer.GLOBAL_BUFFER.setdefault("steps_per_log", self.config.logging.steps_per_log)
        if not writer.GLOBAL_BUFFER.get("max_iter"):
            writer.GLOBAL_BUFFER["max_iter"] = 1
        super()._after_train()
