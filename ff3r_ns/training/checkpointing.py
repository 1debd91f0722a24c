"""A training run's files: the FF3R checkpoint (``--out``, weights and provenance) and, next to it, the training
state (``<stem>.state.pt``: optimizer, scheduler, step, RNG) that ``--resume`` continues from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ff3r_ns.core.checkpoint import FF3RCheckpoint, TeacherSettings, load_checkpoint, save_checkpoint, weight_mismatch
from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.training.config import TrainConfig
from ff3r_ns.training.provenance import command_chain


@dataclass
class RunRecord:
    """What a checkpoint records about the run that wrote it, fixed for the run's whole length."""

    config: TrainConfig
    stage: str
    """The stage's name (``metadata["stage"]``)."""
    architecture: FF3RConfig
    """The network's architecture, as the stage builds it."""
    teacher: Optional[TeacherSettings]
    classes: list[str]
    """Class names of the scenes, in label-id order."""
    scenes: int
    """Number of training scenes."""
    command: str
    """The command as typed."""
    stage_metadata: dict[str, Any] = field(default_factory=dict)
    """The stage's own entries (its losses, ...), added to the checkpoint's metadata."""


@dataclass
class TrainingState:
    """What changes step by step and ``--resume`` restores."""

    network: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    step: int = 0
    """Steps completed."""


def state_path(checkpoint: Path) -> Path:
    """``run.pt`` -> ``run.state.pt``: the optimizer/scheduler/step/RNG file next to a checkpoint."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".state.pt")


def save_training(record: RunRecord, state: TrainingState, rank_checksums: list[float]) -> None:
    """Write ``record.config.out`` (weights and metadata) and its training state (rank 0 calls this)."""
    config = record.config
    meta = {
        "stage": record.stage, "step": state.step, "steps": config.steps, "seed": config.seed, "command": record.command,
        "command_chain": command_chain(record.command, config.init, config.semantic_checkpoint),
        "preset": config.preset, "fusion": config.fusion, "scenes": record.scenes, "rank_checksums": rank_checksums,
        "train_config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        **record.stage_metadata,
    }
    arch = record.architecture
    if arch.semantic.checkpoint is not None:
        # The encoder's weights are in the state dict: the checkpoint must not need the file it was built from.
        arch = replace(arch, semantic=replace(arch.semantic, checkpoint=None, weights="random"))
    save_checkpoint(config.out, FF3RCheckpoint(
        network=state.network.state_dict(), architecture=arch, image_size=config.image_size,
        teacher=record.teacher, classes=list(record.classes), metadata=meta,
    ))
    saved = {
        "step": state.step, "optimizer": state.optimizer.state_dict(), "scheduler": state.scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    tmp = state_path(config.out).with_suffix(".tmp")
    torch.save(saved, tmp)
    tmp.replace(state_path(config.out))


def resume_training(path: Path, architecture: FF3RConfig, state: TrainingState) -> None:
    """Load ``path``'s weights and its training state into ``state`` (RNG included); errors name what differs."""
    ckpt = load_checkpoint(path)
    diff = weight_mismatch(architecture, ckpt.architecture)
    if diff:
        raise ValueError(f"--resume {path}: it was trained with a different network: " + "; ".join(diff[:4]))
    if not state_path(path).is_file():
        raise FileNotFoundError(f"--resume needs the training state {state_path(path)} next to the checkpoint")
    state.network.load_state_dict(ckpt.network)
    saved = torch.load(state_path(path), map_location="cpu", weights_only=True)
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    if saved["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    state.step = int(saved["step"])
