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

import argparse
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ff3r_ns.core.checkpoint import TeacherSettings, load_checkpoint
from ff3r_ns.core.losses import LossConfig, LossInputs, LossTerms, compute_losses
from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.network.model import FF3R
from ff3r_ns.core.render import render
from ff3r_ns.training.cli import add_train_args, command_line, run_cli, train_config
from ff3r_ns.training.data import BankContents, ContextBatch
from ff3r_ns.training.loop import TrainConfig, TrainSummary, run_training


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ff3r-train",
        description=(
            "Annotation-free training of the FF3R network over every scene folder under --scenes: photometric, "
            "feature-rendering and geometry-guided feature-warping losses, rendered at the network's own predicted "
            "cameras (no poses, depth or labels are compared with predictions). Runs under torchrun for DDP."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # Geometry modules frozen by default: with them learning, the self-rendering losses let the views' depths
    # drift apart (cross-view visibility collapsing to 0 in our runs), even with the reprojection term.
    add_train_args(p, geometry_lr_scale=0.0)
    d = LossConfig()
    g = p.add_argument_group("losses")
    g.add_argument("--no-fusion", action="store_true", help="build the network without semantic fusion (ablation)")
    g.add_argument("--no-warping", action="store_true", help="switch off the geometry-guided feature warping loss (ablation)")
    g.add_argument("--no-photometric", action="store_true", help="switch off the photometric loss")
    g.add_argument("--no-feature", action="store_true", help="switch off the feature-rendering loss")
    g.add_argument("--no-reprojection", action="store_true", help="switch off the photometric reprojection between views")
    g.add_argument("--reprojection-weight", type=float, default=d.reprojection_weight)
    g.add_argument("--photometric-kind", choices=("l1_ssim", "mse"), default=d.photometric_kind, help="photometric penalty")
    g.add_argument("--photometric-weight", type=float, default=d.photometric_weight)
    g.add_argument("--feature-weight", type=float, default=d.feature_weight)
    g.add_argument("--warping-weight", type=float, default=d.warping_weight)
    g.add_argument("--warping-window", type=int, default=d.warping_window, help="warp between views at most this far apart (0: all)")
    g.add_argument("--warping-tolerance", type=float, default=d.warping_depth_tolerance, help="relative depth tolerance of the occlusion test")
    g.add_argument("--feature-resolution", type=float, default=d.feature_resolution, help="feature losses at this fraction of the input size")
    g.add_argument("--voxel-size", type=float, default=0.0, help="merge Gaussians by voxel before rendering (0: off)")
    g.add_argument("--distill-from", type=Path, default=None,
                   help="frozen geometry network (FF3R checkpoint) to distil cameras and depth from; NOT annotation-free")
    t = p.add_argument_group("offline teacher")
    td = TeacherSettings()
    t.add_argument("--teacher-dim", type=int, default=None, help="teacher feature width (default: the preset's heads.teacher_dim)")
    t.add_argument("--teacher-noise", type=float, default=td.noise)
    t.add_argument("--teacher-blur", type=float, default=td.blur)
    t.add_argument("--teacher-view-bias", type=float, default=td.view_bias)
    t.add_argument("--teacher-seed", type=int, default=td.seed)
    return p


def main(argv: Optional[Sequence[str]] = None) -> TrainSummary:
    """Parse ``argv`` and train; returns the :class:`TrainSummary`."""
    args = build_parser().parse_args(argv)
    config = train_config(args, fusion=not args.no_fusion)
    losses = replace(
        LossConfig(), photometric=not args.no_photometric, feature=not args.no_feature, warping=not args.no_warping,
        reprojection=not args.no_reprojection, reprojection_weight=args.reprojection_weight,
        photometric_kind=args.photometric_kind, photometric_weight=args.photometric_weight,
        feature_weight=args.feature_weight, warping_weight=args.warping_weight, warping_window=args.warping_window,
        warping_depth_tolerance=args.warping_tolerance, feature_resolution=args.feature_resolution,
        distillation=args.distill_from is not None,
    )
    dim = args.teacher_dim if args.teacher_dim is not None else config.architecture().heads.teacher_dim
    teacher = TeacherSettings(dim=dim, noise=args.teacher_noise, blur=args.teacher_blur, view_bias=args.teacher_view_bias, seed=args.teacher_seed)
    stage = FeatureStage(losses, teacher, args.voxel_size, args.distill_from)
    return run_training(config, stage, command_line("ff3r-train", argv))


def entrypoint() -> None:
    """Console script ``ff3r-train``."""
    run_cli("ff3r-train", main)


if __name__ == "__main__":
    entrypoint()
