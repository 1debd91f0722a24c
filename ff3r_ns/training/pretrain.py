"""``ff3r-pretrain-geometry``: supervised geometry pretraining, a stand-in for VGGT's (stage 1 of 2).

Stage: **geometry pretraining, supervised.** FF3R starts from a pretrained VGGT, which was trained with
ground-truth cameras and depth. When no VGGT checkpoint is at hand (offline, or a preset smaller than
VGGT-1B), this stage plays that part: it trains the geometry encoder (aggregator), the camera head and
the depth head on generated scenes *with their ground-truth depth and cameras*, using VGGT's losses
(:mod:`ff3r_ns.core.geometry_losses`). The network is built without semantic fusion (VGGT has
none); the Gaussian head and feature decoder are frozen here (no loss reaches them).

Its checkpoint (``metadata["stage"] == "geometry-pretraining"``) is the ``--init`` of the
annotation-free stage, :mod:`ff3r_ns.training.train`, which never sees ground truth.

Example::

    ff3r-pretrain-geometry --scenes scenes/train --preset tiny --image-size 112 --steps 3000 --out runs/geometry.pt
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import torch
import tyro
from torch import nn

from ff3r_ns.core.checkpoint import TeacherSettings
from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.network.model import FF3R
from ff3r_ns.cli import command_line, command_view, parse, run_cli
from ff3r_ns.training.config import TrainConfig
from ff3r_ns.training.data import BankContents, ContextBatch
from ff3r_ns.core.geometry_losses import GeometryLossConfig, GeometryLossTerms, geometry_losses
from ff3r_ns.training.loop import TrainSummary, run_training
from ff3r_ns.training.optimizer import GEOMETRY_PREFIXES



class GeometryPretrainingStep(nn.Module):
    """Forward + supervised geometry losses of one step (one module, so DDP wraps all of it)."""

    def __init__(self, network: FF3R, losses: GeometryLossConfig) -> None:
        super().__init__()
        self.network, self.losses = network, losses

    def scene_terms(self, batch: ContextBatch) -> GeometryLossTerms:
        if batch.depth is None or batch.cameras is None:
            raise ValueError(f"scene {batch.scene}: geometry pretraining needs ground-truth depth and cameras")
        out = self.network(batch.images)
        return geometry_losses(self.losses, out.pose_enc, out.depth, out.depth_conf, batch.depth, batch.cameras)

    def forward(self, batches: list[ContextBatch]) -> GeometryLossTerms:
        terms = [self.scene_terms(b) for b in batches]
        mean = lambda name: torch.stack([getattr(t, name) for t in terms]).mean()  # noqa: E731
        return GeometryLossTerms(mean("total"), mean("camera"), mean("depth"), mean("depth_gradient"), mean("scene_scale"))


class GeometryStage:
    """The supervised geometry pretraining stage (see the module docstring)."""

    name = "geometry-pretraining"

    def __init__(self, losses: GeometryLossConfig) -> None:
        self.losses = losses

    def architecture(self, config: TrainConfig) -> FF3RConfig:
        return config.architecture().with_fusion(False)  # VGGT's geometry has no semantic fusion

    def contents(self) -> BankContents:
        return BankContents(teacher=None, geometry=True)

    def prepare(self, network: FF3R) -> None:
        for name, p in network.named_parameters():
            if not name.startswith(GEOMETRY_PREFIXES):  # this stage trains VGGT's modules only
                p.requires_grad_(False)

    def step_module(self, network: FF3R, device: torch.device) -> nn.Module:
        return GeometryPretrainingStep(network, self.losses)

    def teacher(self) -> Optional[TeacherSettings]:
        return None

    def metadata(self) -> dict:
        return {"geometry_losses": asdict(self.losses), "supervised": True, "annotation_free": False}


@dataclass
class GeometryPretrainingCommand:
    """Supervised geometry pretraining (a stand-in for VGGT's): trains the aggregator, camera head and depth head on
    generated scenes with their ground-truth cameras and depth (VGGT's camera loss on pose encodings relative to the
    first view, confidence-weighted depth loss with a gradient term, per-scene scale normalisation). Writes an FF3R
    checkpoint for ff3r-train --init."""

    training: tyro.conf.OmitArgPrefixes[
        command_view(TrainConfig, markers={"fusion": tyro.conf.Suppress}, defaults={"fusion": False})
    ]
    """The settings both stages share (no ``--fusion``: VGGT's geometry, which this stage trains, has no fusion)."""
    losses: tyro.conf.OmitArgPrefixes[GeometryLossConfig] = field(default_factory=GeometryLossConfig)


def main(argv: Optional[Sequence[str]] = None) -> TrainSummary:
    """Parse ``argv`` (tyro, from :class:`GeometryPretrainingCommand`) and pretrain; returns the :class:`TrainSummary`."""
    command = parse(GeometryPretrainingCommand, "ff3r-pretrain-geometry", argv)
    return run_training(command.training, GeometryStage(command.losses), command_line("ff3r-pretrain-geometry", argv))


def entrypoint() -> None:
    """Console script ``ff3r-pretrain-geometry``."""
    run_cli("ff3r-pretrain-geometry", main)


if __name__ == "__main__":
    entrypoint()
