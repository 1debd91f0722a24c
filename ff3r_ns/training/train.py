"""``ff3r-train``: annotation-free training of the FF3R network on many scenes (stage 2 of 2).

Stage: **feature training, annotation-free.** The network sees only the context images; its losses
(:mod:`ff3r_ns.core.losses`) compare renderings *at its own predicted cameras* with the input images
(photometric) and with a 2D teacher's features (feature rendering and geometry-guided feature warping).
No pose, depth or label is compared with a prediction. On generated scenes the 2D teacher is the
:class:`~ff3r_ns.core.network.teacher.OfflineTeacher`, which turns label maps into blurred, noisy,
view-inconsistent features like a real 2D foundation model's (labels are its input only). The optional
distillation from a frozen geometry network (``--distill-from``) is *not* annotation-free and is off
by default.

By default the geometry modules (aggregator, camera and depth heads) stay as ``--init`` left them
(``--geometry-lr-scale 0``): trained by these losses alone, the views' predicted depths drift apart (the
cross-view visibility of the warping term falls to 0 within ~100 steps in our CPU runs). Fusion layers,
Gaussian head and feature decoder always train. ``--geometry-lr-scale 1`` trains everything.

Stage 1, the supervised geometry pretraining that stands in for VGGT's, is
:mod:`ff3r_ns.training.pretrain`; start from it with ``--init``.

Example::

    ff3r-train --scenes scenes/train --preset tiny --image-size 112 --steps 2000 --max-views 8 \\
        --init runs/geometry.pt --out runs/ff3r_tiny.pt
    torchrun --nproc_per_node 4 $(which ff3r-train) --scenes scenes/train --out runs/ff3r.pt   # DDP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Optional, Sequence

import torch
import tyro
from torch import nn

from ff3r_ns.core.checkpoint import TeacherSettings, load_checkpoint
from ff3r_ns.core.losses import LossConfig, LossInputs, LossTerms, compute_losses
from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.network.model import FF3R
from ff3r_ns.core.render import render
from ff3r_ns.cli import command_line, command_view, parse, run_cli
from ff3r_ns.training.config import TrainConfig
from ff3r_ns.training.data import BankContents, ContextBatch
from ff3r_ns.training.loop import TrainSummary, run_training


class FeatureTrainingStep(nn.Module):
    """Forward + render + losses of one step, as one module (so DDP wraps all of it).

    Args:
        network: the FF3R network being trained.
        losses: :class:`LossConfig`.
        voxel_size: merge Gaussians by voxel before rendering (fraction of the scene scale; 0 = off).
        geometry_teacher: frozen network for the optional distillation terms, or None.
    """

    def __init__(self, network: FF3R, losses: LossConfig, voxel_size: float = 0.0, geometry_teacher: Optional[FF3R] = None) -> None:
        super().__init__()
        self.network, self.losses, self.voxel_size = network, losses, voxel_size
        self.geometry_teacher = geometry_teacher
        if losses.distillation and geometry_teacher is None:
            raise ValueError("distillation is on but no geometry teacher was given (--distill-from CKPT)")

    def scene_terms(self, batch: ContextBatch) -> LossTerms:
        out = self.network(batch.images)
        gaussians = out.gaussians.flatten()
        if self.voxel_size > 0:
            from ff3r_ns.core.voxelize import VoxelConfig, estimate_scene_scale, voxelize

            scale = estimate_scene_scale(gaussians.means.detach(), out.cameras.centers.detach())
            gaussians = voxelize(gaussians, VoxelConfig(voxel_size=self.voxel_size), scale=scale).gaussians
        needs_features = self.losses.feature or self.losses.warping
        rendered = render(gaussians, out.cameras, render_features=needs_features)  # at the predicted cameras
        teacher_pose = teacher_depth = None
        if self.losses.distillation:
            with torch.no_grad():
                t = self.geometry_teacher(batch.images)
            teacher_pose, teacher_depth = t.pose_enc, t.depth
        inputs = LossInputs(
            images=batch.images.permute(0, 2, 3, 1), rendered_rgb=rendered.rgb, rendered_features=rendered.features,
            teacher=batch.teacher, depth=out.depth, cameras=out.cameras, pose_enc=out.pose_enc,
            teacher_pose_enc=teacher_pose, teacher_depth=teacher_depth,
        )
        return compute_losses(self.losses, inputs, self.network.feature_decoder)

    def forward(self, batches: list[ContextBatch]) -> LossTerms:
        return LossTerms.mean([self.scene_terms(b) for b in batches])


class FeatureStage:
    """The annotation-free feature-training stage (see the module docstring).

    Args:
        losses: :class:`LossConfig`.
        teacher: offline-teacher settings (``dim`` must equal the network's ``heads.teacher_dim``).
        voxel_size: voxel merge before rendering (0 = off).
        distill_from: frozen geometry-teacher checkpoint for the optional distillation terms.
    """

    name = "feature-training"

    def __init__(self, losses: LossConfig, teacher: TeacherSettings, voxel_size: float = 0.0, distill_from: Optional[Path] = None) -> None:
        self.losses, self.teacher_settings, self.voxel_size, self.distill_from = losses, teacher, voxel_size, distill_from

    def architecture(self, config: TrainConfig) -> FF3RConfig:
        arch = config.architecture()
        if arch.heads.teacher_dim != self.teacher_settings.dim:
            raise ValueError(
                f"--teacher-dim {self.teacher_settings.dim} differs from the network's heads.teacher_dim {arch.heads.teacher_dim}"
            )
        return arch

    def contents(self) -> BankContents:
        return BankContents(teacher=self.teacher_settings, feature_fraction=self.losses.feature_resolution)

    def prepare(self, network: FF3R) -> None:
        """Everything except the frozen semantic encoder trains."""

    def step_module(self, network: FF3R, device: torch.device) -> nn.Module:
        teacher = None
        if self.losses.distillation:
            if self.distill_from is None:
                raise ValueError("--distill needs --distill-from CKPT (a frozen geometry network)")
            ckpt = load_checkpoint(self.distill_from)
            teacher = FF3R(ckpt.architecture)
            teacher.load_state_dict(ckpt.network)
            teacher.requires_grad_(False)
            teacher = teacher.to(device).eval()
        return FeatureTrainingStep(network, self.losses, self.voxel_size, teacher)

    def teacher(self) -> Optional[TeacherSettings]:
        return self.teacher_settings

    def metadata(self) -> dict:
        return {"losses": asdict(self.losses), "voxel_size": self.voxel_size, "annotation_free": not self.losses.distillation}


TrainingFlags = command_view(TrainConfig, defaults={"geometry_lr_scale": 0.0})
"""``TrainConfig`` as ff3r-train's flags: geometry modules frozen by default. With them learning, the self-rendering
losses let the views' depths drift apart (cross-view visibility collapsing to 0 in our runs), even with the
reprojection term."""

LossFlags = command_view(
    LossConfig, markers={"warping_depth_tolerance": tyro.conf.arg(aliases=("--warping-tolerance",)),
                         "distillation": tyro.conf.Suppress},  # on exactly when --distill-from names a network
)
"""``LossConfig`` as ff3r-train's flags (``--warping-tolerance``: the flag's earlier spelling)."""

TeacherFlags = command_view(
    TeacherSettings, types={"dim": Optional[int]}, defaults={"dim": None},
    markers={f.name: tyro.conf.arg(name=f"teacher-{f.name}", prefix_name=False) for f in fields(TeacherSettings)},
)
"""``TeacherSettings`` as ``--teacher-*`` flags; ``--teacher-dim`` defaults to the preset's ``heads.teacher_dim``."""


@dataclass
class FeatureTrainingCommand:
    """Annotation-free training of the FF3R network over every scene folder under --scenes: photometric,
    feature-rendering and geometry-guided feature-warping losses, rendered at the network's own predicted cameras
    (no poses, depth or labels are compared with predictions). Runs under torchrun for DDP."""

    training: tyro.conf.OmitArgPrefixes[TrainingFlags]
    """The settings both stages share."""
    losses: tyro.conf.OmitArgPrefixes[LossFlags] = field(default_factory=LossFlags)
    """Weights and on/off switches of the annotation-free losses."""
    teacher: TeacherFlags = field(default_factory=TeacherFlags)
    """The offline 2D teacher whose features the feature losses compare with."""
    voxel_size: float = 0.0
    """Merge Gaussians by voxel before rendering (fraction of the scene scale; 0: off)."""
    distill_from: Optional[Path] = None
    """Frozen geometry network (FF3R checkpoint) to distil cameras and depth from; NOT annotation-free."""


def main(argv: Optional[Sequence[str]] = None) -> TrainSummary:
    """Parse ``argv`` (tyro, from :class:`FeatureTrainingCommand`) and train; returns the :class:`TrainSummary`."""
    command = parse(FeatureTrainingCommand, "ff3r-train", argv)
    config = command.training
    losses = replace(command.losses, distillation=command.distill_from is not None)
    dim = command.teacher.dim if command.teacher.dim is not None else config.architecture().heads.teacher_dim
    teacher = TeacherSettings(**{**asdict(command.teacher), "dim": dim})
    stage = FeatureStage(losses, teacher, command.voxel_size, command.distill_from)
    return run_training(config, stage, command_line("ff3r-train", argv))


def entrypoint() -> None:
    """Console script ``ff3r-train``."""
    run_cli("ff3r-train", main)


if __name__ == "__main__":
    entrypoint()
