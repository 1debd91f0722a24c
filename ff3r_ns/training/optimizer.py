"""AdamW over the parameters a stage trains, and its learning-rate schedule (linear warm-up, then cosine or
linear decay)."""

from __future__ import annotations

import math
from typing import Literal, Protocol

import torch
from torch import nn

from ff3r_ns.training.config import TrainConfig

GEOMETRY_PREFIXES = ("aggregator.", "camera_head.", "depth_head.")
"""VGGT's modules: what ``geometry_lr_scale`` applies to (the fusion layers live in ``fusion.``)."""


class Schedule(Protocol):
    """The fields :func:`lr_factor` reads (``TrainConfig`` and ``SemanticPretrainConfig`` have them)."""

    steps: int
    warmup_steps: int
    schedule: Literal["cosine", "linear", "constant"]
    min_lr_ratio: float


def lr_factor(step: int, config: Schedule) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine or linear decay to ``min_lr_ratio``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    t = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    decay = 0.5 * (1 + math.cos(math.pi * t)) if config.schedule == "cosine" else 1.0 - t
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * decay


def make_optimizer(net: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and norms; geometry modules at ``geometry_lr_scale`` (0: frozen); the modules
    named in ``config.freeze`` frozen."""
    frozen = (GEOMETRY_PREFIXES if config.geometry_lr_scale == 0 else ()) + tuple(f"{m.rstrip('.')}." for m in config.freeze)
    for name, p in net.named_parameters():
        if name.startswith(frozen):
            p.requires_grad_(False)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in net.named_parameters():
        if p.requires_grad:
            groups.setdefault((name.startswith(GEOMETRY_PREFIXES), p.ndim >= 2), []).append(p)
    return torch.optim.AdamW(
        [{"params": ps, "lr": config.lr * (config.geometry_lr_scale if geo else 1.0),
          "weight_decay": config.weight_decay if decay else 0.0} for (geo, decay), ps in sorted(groups.items())],
        lr=config.lr, betas=(0.9, 0.95),
    )


def make_scheduler(opt: torch.optim.Optimizer, config: Schedule) -> torch.optim.lr_scheduler.LambdaLR:
    """``opt``'s learning rates times :func:`lr_factor` (stepped once per optimisation step)."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, config))
