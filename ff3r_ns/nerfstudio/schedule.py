"""Splatfacto's step-counted schedules, laid out for another step budget.

nerfstudio's splatfacto counts everything in iterations of a 30k-step run: when densification starts and
stops, how often it runs, when the SH degree grows, how the learning rates decay. A run of another length
(ff3r's refinement, or a compressed splatfacto for a quick benchmark) gets the same schedule, stretched or
compressed by ``steps / 30000``: :func:`scale_schedule`. Learning rates can be multiplied for a whole run
(:func:`scale_learning_rates`, a short run) or for its first steps only (:func:`add_fast_start`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Type

from nerfstudio.engine.schedulers import ExponentialDecayScheduler, ExponentialDecaySchedulerConfig
from torch.optim import Optimizer, lr_scheduler

SPLATFACTO_STEPS = 30_000
"""The budget splatfacto's settings are written for."""

STEP_FIELDS = ("warmup_length", "refine_every", "resolution_schedule", "sh_degree_interval", "stop_screen_size_at",
               "stop_split_at")
"""Model settings counted in iterations (``reset_alpha_every`` counts refinement intervals, so it follows
``refine_every``)."""


def scale_schedule(config: Any, steps: int, reference: int = SPLATFACTO_STEPS, min_refine_every: int = 1) -> None:
    """Stretch or compress, in place, every iteration-counted setting of a splatfacto-style ``TrainerConfig``.

    Model fields :data:`STEP_FIELDS` and every optimizer scheduler's ``max_steps`` / ``warmup_steps`` are
    multiplied by ``steps / reference`` (rounded, at least 1). At ``steps == reference`` nothing changes.

    Args:
        config: a nerfstudio ``TrainerConfig`` whose ``pipeline.model`` has splatfacto's fields.
        steps: the run's iteration budget.
        reference: the budget the settings were written for.
        min_refine_every: floor for ``refine_every`` (densification statistics need a few steps to mean anything).

    Example:
        >>> from nerfstudio.configs.method_configs import method_configs
        >>> cfg = copy.deepcopy(method_configs["splatfacto"]); scale_schedule(cfg, 3000)  # doctest: +SKIP
        >>> cfg.pipeline.model.stop_split_at, cfg.optimizers["means"]["scheduler"].max_steps  # doctest: +SKIP
        (1500, 3000)
    """
    if steps < 0 or reference <= 0:
        raise ValueError(f"scale_schedule: steps must be >= 0 and reference > 0, got {steps} and {reference}")
    factor = steps / reference
    if factor == 1.0 or steps == 0:
        return
    model = config.pipeline.model
    for name in STEP_FIELDS:
        if hasattr(model, name):
            setattr(model, name, max(1, round(getattr(model, name) * factor)))
    if hasattr(model, "refine_every"):
        model.refine_every = max(min_refine_every, model.refine_every)
    for group in config.optimizers.values():
        sched = group.get("scheduler")
        for name in ("max_steps", "warmup_steps"):
            if sched is not None and getattr(sched, name, 0):
                setattr(sched, name, max(1, round(getattr(sched, name) * factor)))


def _groups(config: Any, factors: Dict[str, float], what: str) -> None:
    unknown = sorted(set(factors) - set(config.optimizers))
    if unknown:
        raise ValueError(f"{what} names unknown parameter groups {unknown} (known: {sorted(config.optimizers)})")


def scale_learning_rates(config: Any, factors: Dict[str, float], what: str = "factors") -> None:
    """Multiply, in place, the initial and final learning rate of each named optimizer group by its factor.

    Args:
        config: a trainer config with ``optimizers`` (``{group: {"optimizer": ..., "scheduler": ...}}``).
        factors: group name -> factor.
        what: how the error message names ``factors`` (e.g. the config field they came from).

    Raises:
        ValueError: a name that is not one of ``config.optimizers``.
    """
    _groups(config, factors, what)
    for name, factor in factors.items():
        group = config.optimizers[name]
        group["optimizer"].lr *= factor
        sched = group.get("scheduler")
        if sched is not None and getattr(sched, "lr_final", None) is not None:
            sched.lr_final *= factor


@dataclass
class FastStartSchedulerConfig(ExponentialDecaySchedulerConfig):
    """nerfstudio's exponential decay (``lr_final`` None: constant), times a boost that starts at ``boost`` and falls
    linearly to 1 over ``boost_steps`` steps: a feedforward start takes large steps first, then splatfacto's."""

    _target: Type = field(default_factory=lambda: FastStartScheduler)
    boost: float = 1.0
    """Learning-rate multiplier at step 0."""
    boost_steps: int = 0
    """Steps over which the multiplier falls to 1."""


class FastStartScheduler(ExponentialDecayScheduler):
    config: FastStartSchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        base: Callable[[int], float] = super().get_scheduler(optimizer, lr_init).lr_lambdas[0]
        k, n = self.config.boost, max(1, self.config.boost_steps)
        return lr_scheduler.LambdaLR(optimizer, lr_lambda=lambda step: base(step) * (1.0 + (k - 1.0) * max(0.0, 1.0 - step / n)))


def add_fast_start(config: Any, factors: Dict[str, float], steps: int, what: str = "factors") -> None:
    """Give each named optimizer group of ``config`` a :class:`FastStartSchedulerConfig` (its decay kept; a group
    without a schedule keeps a constant rate) boosted by its factor over the first ``steps`` steps."""
    _groups(config, factors, what)
    decay_fields = [f.name for f in dataclasses.fields(ExponentialDecaySchedulerConfig) if f.name != "_target"]
    for name, factor in factors.items():
        group = config.optimizers[name]
        old = group.get("scheduler")
        kept = {k: getattr(old, k) for k in decay_fields} if isinstance(old, ExponentialDecaySchedulerConfig) else {}
        group["scheduler"] = FastStartSchedulerConfig(**kept, boost=factor, boost_steps=steps)
