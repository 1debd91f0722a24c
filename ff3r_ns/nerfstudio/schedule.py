"""Splatfacto's step-counted schedules, laid out for another step budget.

nerfstudio's splatfacto counts everything in iterations of a 30k-step run: when densification starts and
stops, how often it runs, when the SH degree grows, how the learning rates decay. A run of another length
(ff3r's refinement, or a compressed splatfacto for a quick benchmark) gets the same schedule, stretched or
compressed by ``steps / 30000``: :func:`scale_schedule`.
"""

from __future__ import annotations

from typing import Any

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
