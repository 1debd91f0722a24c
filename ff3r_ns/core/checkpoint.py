"""The FF3R network checkpoint file: weights plus everything needed to use them again.

A checkpoint records the architecture (so a mismatching config is caught by name, not by a wall of
missing keys), the input size it was trained at, and the offline teacher it was distilled from (so
evaluation builds the same class embeddings). Saved with ``torch.save`` as plain tensors, lists,
numbers and strings, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import Tensor

from ff3r_ns.core.network.config import FF3RConfig, FusionConfig, GeometryConfig, HeadsConfig, SemanticConfig

FORMAT_VERSION = 1

SHIPPED_TINY_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "ff3r_tiny.pt"
"""The ff3r-tiny network this project trained (scripts/train_shipped_model.sh) and ships in the package."""


@dataclass
class TeacherSettings:
    """Arguments of :class:`~ff3r_ns.core.network.teacher.OfflineTeacher` (besides the class list)."""

    dim: int = 16
    """Teacher feature width (the network's ``heads.teacher_dim``)."""
    noise: float = 0.3
    """Expected norm of per-pixel, per-view noise."""
    blur: float = 1.5
    """Gaussian blur sigma in pixels (soft boundaries)."""
    view_bias: float = 0.3
    """Expected norm of one offset per view (cross-view inconsistency)."""
    seed: int = 0
    """Seed of the class embeddings, noise and biases."""

    def build(self, classes: list[str]):
        from ff3r_ns.core.network.teacher import OfflineTeacher

        return OfflineTeacher(classes, self.dim, self.noise, self.blur, self.view_bias, self.seed)


@dataclass
class FF3RCheckpoint:
    """Contents of a network checkpoint file.

    Attributes:
        network: the FF3R state dict.
        architecture: the config the weights belong to.
        image_size: longest input side used in training.
        teacher: offline-teacher settings used for the feature losses, or None.
        classes: class names of the teacher, in label-id order.
        metadata: free-form provenance (steps, seeds, command, stage).
    """

    network: dict[str, Tensor]
    architecture: FF3RConfig
    image_size: int = 224
    teacher: Optional[TeacherSettings] = None
    classes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def config_to_dict(config: FF3RConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(d: dict[str, Any]) -> FF3RConfig:
    """Inverse of :func:`config_to_dict` (tuples restored, unknown keys rejected by name)."""

    def build(cls, values: dict[str, Any]):
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(values) - set(names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields in checkpoint: {sorted(unknown)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**kwargs)

    return FF3RConfig(
        geometry=build(GeometryConfig, d["geometry"]),
        semantic=build(SemanticConfig, d["semantic"]),
        fusion=build(FusionConfig, d["fusion"]),
        heads=build(HeadsConfig, d["heads"]),
        bf16=d.get("bf16", True),
    )


def save_checkpoint(path: Union[str, Path], ckpt: FF3RCheckpoint) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "network": {k: v.detach().cpu() for k, v in ckpt.network.items()},
        "architecture": config_to_dict(ckpt.architecture),
        "image_size": ckpt.image_size,
        "teacher": dataclasses.asdict(ckpt.teacher) if ckpt.teacher is not None else None,
        "classes": list(ckpt.classes),
        "metadata": ckpt.metadata,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint under the final name
    return path


def load_checkpoint(path: Union[str, Path]) -> FF3RCheckpoint:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FF3R checkpoint not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "network" not in payload or "architecture" not in payload:
        raise ValueError(f"{path} is not an FF3R checkpoint (expected keys 'network' and 'architecture')")
    teacher = TeacherSettings(**payload["teacher"]) if payload.get("teacher") else None
    return FF3RCheckpoint(
        network=payload["network"],
        architecture=config_from_dict(payload["architecture"]),
        image_size=int(payload.get("image_size", 224)),
        teacher=teacher,
        classes=list(payload.get("classes", [])),
        metadata=dict(payload.get("metadata", {})),
    )


def describe_mismatch(expected: FF3RConfig, found: FF3RConfig) -> list[str]:
    """Human-readable differences ``section.field: expected X, checkpoint has Y``."""
    out = []
    a, b = config_to_dict(expected), config_to_dict(found)
    for section in a:
        if isinstance(a[section], dict):
            for k in a[section]:
                va, vb = a[section][k], b.get(section, {}).get(k)
                if isinstance(va, tuple):
                    va = list(va)
                if isinstance(vb, tuple):
                    vb = list(vb)
                if va != vb:
                    out.append(f"{section}.{k}: configured {va}, checkpoint has {vb}")
        elif a[section] != b.get(section):
            out.append(f"{section}: configured {a[section]}, checkpoint has {b.get(section)}")
    return out


BENIGN_DIFFS = ("bf16", "semantic.checkpoint", "semantic.pretrained", "semantic.weights", "semantic.freeze",
                "geometry.frame_chunk_size", "geometry.grad_checkpoint", "heads.frames_chunk_size",
                "geometry.init_values", "heads.camera_init_values")
"""Settings that change neither the weights' shapes nor their meaning (precision, chunking, where weights come from,
initial LayerScale values)."""


def weight_mismatch(expected: FF3RConfig, found: FF3RConfig, also_ignore: tuple[str, ...] = ()) -> list[str]:
    """:func:`describe_mismatch` without :data:`BENIGN_DIFFS` (and ``also_ignore`` prefixes): the differences that
    make ``found``'s weights unusable for ``expected``."""
    return [d for d in describe_mismatch(expected, found) if not d.startswith(BENIGN_DIFFS + tuple(also_ignore))]
