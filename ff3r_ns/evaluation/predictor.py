"""What ``ff3r-eval`` evaluates: the FF3R network, or a ground-truth oracle, behind one interface.

A :class:`Predictor` turns the context views of one scene into Gaussians (in the dataset's frame) plus
the cameras it believes the context views were taken from, and decodes rendered low-dimensional
features into the teacher's space. :class:`SemanticSpace` holds the teacher and the class embeddings
every prediction is scored against.

* :class:`NetworkPredictor`: ``run_network(..., reference=context cameras)`` -- the real thing.
* :class:`OraclePredictor`: Gaussians unprojected from the dataset's depth with the dataset's cameras,
  coloured by the images, carrying the teacher's clean class embedding of each pixel's label. It
  measures the protocol itself (renderer, alignment, metrics): every number it scores below perfect
  is the protocol's own floor at that image size, not a model error.
"""

from __future__ import annotations

import dataclasses

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ff3r_ns.core.cameras import Cameras, unproject_depth
from ff3r_ns.core.classes import label_lut
from ff3r_ns.core.checkpoint import TeacherSettings, load_checkpoint
from ff3r_ns.core.gaussians import Gaussians, rgb_to_sh
from ff3r_ns.core.network.config import FF3RConfig, preset
from ff3r_ns.core.network.teacher import OfflineTeacher
from ff3r_ns.core.reconstruct import NetworkSettings, build_network, run_network
from ff3r_ns.nerfstudio.scene import LoadedScene

ORACLE_SCALE = 0.3
"""Oracle Gaussian standard deviation in pixels of its own view (``scale = 0.3 * depth / focal``).
Small, because the rasterizer already adds a 0.3 px^2 screen-space blur; measured on generated 56 px
scenes, 0.1-0.3 px give the same target PSNR within 0.5 dB and larger values blur (0.7 px: -1.5 dB)."""
ORACLE_OPACITY = 0.99
RANDOM_INIT_SEED = 0
"""Seed of ``--random-init`` networks, so pipeline checks are reproducible."""


@dataclass
class Prediction:
    """One reconstruction from the context views of a group.

    Attributes:
        gaussians: unbatched Gaussians in the dataset's frame and units.
        context_cameras: ``S`` cameras the predictor assigns to the context views (dataset frame, dataset
            image size); source-view metrics render here.
        forward_seconds: wall time of the network's forward pass (0 for the oracle's unprojection).
    """

    gaussians: Gaussians
    context_cameras: Cameras
    forward_seconds: float


class Predictor(Protocol):
    """Interface of what is evaluated."""

    name: str
    random_init: bool

    def predict(self, context: LoadedScene, semantic: Optional["SemanticSpace"]) -> Prediction:
        """Reconstruct from ``context`` (its images; the oracle also reads its depth, labels and cameras,
        and takes its features from ``semantic``, None when the scene has no labels)."""
        ...

    def decode(self, features: Tensor) -> Tensor:
        """Rendered features ``[..., F]`` -> teacher-space features ``[..., D]``."""
        ...

    def expressible(self, embeddings: Tensor) -> Tensor:
        """``[T, D]`` text embeddings as :meth:`decode`'s outputs can express them (unit norm)."""
        ...


@dataclass
class SemanticSpace:
    """The teacher and the text embeddings of one scene's classes.

    Attributes:
        teacher: the offline teacher (its own class list, which may be ordered differently from the scene's).
        class_embeddings: ``[K, D]`` the teacher's embedding of each scene label id (label 0 is "ignore", whatever
            the scene calls it, and never predicted: :func:`ff3r_ns.core.semantics.segment_labels`).
        label_to_teacher: ``[K]`` int64, scene label id -> teacher class id.
    """

    teacher: OfflineTeacher
    class_embeddings: Tensor
    label_to_teacher: Tensor

    @property
    def num_classes(self) -> int:
        """``K``: the scene's classes including the ignore label 0."""
        return self.label_to_teacher.shape[0]

    @classmethod
    def build(cls, settings: TeacherSettings, scene_classes: Sequence[str], teacher_classes: Optional[Sequence[str]] = None) -> "SemanticSpace":
        """Teacher from ``settings`` over ``teacher_classes`` (default: the scene's), embeddings of the scene's classes.

        Raises:
            ValueError: fewer than two scene classes, or a scene class (other than the ignore label) the teacher does not know.
        """
        scene_classes = list(scene_classes)
        if len(scene_classes) < 2:
            raise ValueError(f"segmentation needs the ignore label plus at least one class, got classes={scene_classes}")
        teacher = settings.build(list(teacher_classes) if teacher_classes else scene_classes)
        lut = label_lut(scene_classes, teacher.classes)
        unknown = [scene_classes[i] for i, t in enumerate(lut) if t is None]
        if unknown:
            raise ValueError(
                f"the scene's classes {scene_classes} are not all known to the teacher (classes {teacher.classes}): {unknown}"
            )
        label_to_teacher = torch.tensor(lut, dtype=torch.long)
        return cls(teacher=teacher, class_embeddings=teacher.class_embeddings()[label_to_teacher], label_to_teacher=label_to_teacher)

    def teacher_features(self, labels: Tensor, view_ids: Sequence[int]) -> Tensor:
        """The 2D teacher's features ``[S, H, W, D]`` (noise, blur, view bias) for scene label maps ``[S, H, W]``."""
        lut = self.label_to_teacher.to(labels.device)
        ids = torch.as_tensor(list(view_ids), dtype=torch.long)
        return self.teacher.features(lut[labels.long()], ids).permute(0, 2, 3, 1)

    def clean_embeddings(self, labels: Tensor) -> Tensor:
        """``[..., D]`` the teacher's noiseless class embedding of every scene label."""
        emb = self.teacher.class_embeddings().to(labels.device)
        return emb[self.label_to_teacher.to(labels.device)[labels.long()]]


class NetworkPredictor:
    """FF3R: one forward pass over the context views, moved into the dataset's frame by one similarity of their cameras.

    Args:
        settings: network settings (architecture, image size, weights or random init).
        device: where the network runs.
    """

    def __init__(self, settings: NetworkSettings, device: torch.device | str) -> None:
        # The protocol (LSM's) evaluates a pose-free prediction: it enters the dataset's frame by one similarity of
        # the context cameras, not by re-anchoring each view to its known pose as ns-train does.
        self.settings = dataclasses.replace(settings, placement="similarity")
        self.network = build_network(settings, device)
        self.name = "ff3r (random init)" if settings.random_init else f"ff3r ({settings.weights})"
        self.random_init = settings.random_init

    def predict(self, context: LoadedScene, semantic: Optional[SemanticSpace] = None) -> Prediction:
        rec = run_network(self.settings, context.images, reference=context.cameras, network=self.network)
        return Prediction(rec.gaussians, rec.cameras.to(context.images.device), rec.forward_seconds)

    @torch.no_grad()
    def decode(self, features: Tensor) -> Tensor:
        return self.network.feature_decoder(features)

    def expressible(self, embeddings: Tensor) -> Tensor:
        return self.network.feature_decoder.expressible(embeddings)


class OraclePredictor:
    """Gaussians from the dataset's ground truth of the context views (a protocol sanity check).

    Every context pixel with valid depth becomes one Gaussian at ``unproject_depth(gt depth, gt camera)``,
    coloured by the pixel, isotropic with standard deviation :data:`ORACLE_SCALE` pixels at its depth,
    opacity :data:`ORACLE_OPACITY`, and (with labels) the teacher's clean embedding of its label as
    feature (no features without labels); the decoder is the identity.
    """

    def __init__(self) -> None:
        self.name = "oracle (ground-truth depth, cameras, labels)"
        self.random_init = False

    def predict(self, context: LoadedScene, semantic: Optional[SemanticSpace] = None) -> Prediction:
        if context.depth is None:
            raise ValueError("--oracle needs ground-truth depth (depth_file_path in transforms.json)")
        t0 = time.perf_counter()
        depth, cams = context.depth, context.cameras
        points = unproject_depth(depth, cams)
        focal = cams.intrinsics[:, :2, :2].diagonal(dim1=-2, dim2=-1).mean(-1)  # [S]
        valid = torch.isfinite(depth) & (depth > 0)
        n = int(valid.sum())
        scale = (depth / focal[:, None, None] * ORACLE_SCALE)[valid]
        if semantic is not None and context.labels is not None:
            features = semantic.clean_embeddings(context.labels[valid])
        else:
            features = depth.new_zeros(n, 0)
        gaussians = Gaussians(
            means=points[valid],
            quats=depth.new_tensor([1.0, 0.0, 0.0, 0.0]).expand(n, 4).contiguous(),
            scales=scale[:, None].expand(n, 3).contiguous(),
            opacities=depth.new_full((n,), ORACLE_OPACITY),
            sh=rgb_to_sh(context.images[valid])[:, None, :],
            features=features.float(),
        )
        return Prediction(gaussians, cams, time.perf_counter() - t0)

    def decode(self, features: Tensor) -> Tensor:
        return features

    def expressible(self, embeddings: Tensor) -> Tensor:
        return F.normalize(embeddings.float(), dim=-1)  # the identity decoder expresses everything


@dataclass(frozen=True)
class ModelChoice:
    """What the command line asked to evaluate.

    Attributes:
        weights: FF3R checkpoint, or None.
        random_init: random network of ``preset``.
        preset: architecture preset for random init (``tiny``, ``base``, ``vggt_1b``).
        oracle: evaluate the ground-truth oracle instead of a network.
        image_size: network input's longest side; None: the checkpoint's, or (random init) the smaller of
            the preset's position grid and 224.
        voxel_size: voxel merging of the network's Gaussians, relative to the scene scale (0: no merging;
            :mod:`ff3r_ns.core.voxelize` suggests ``~0.9 / resolution``).
        semantic_merge: semantics-aware merging (FF3R); False merges by geometry only (the AnySplat ablation).
    """

    weights: Optional[Path] = None
    random_init: bool = False
    preset: str = "tiny"
    oracle: bool = False
    image_size: Optional[int] = None
    voxel_size: float = 0.0
    semantic_merge: bool = True

    def __post_init__(self) -> None:
        if not self.voxel_size >= 0:  # also rejects NaN
            raise ValueError(f"--voxel-size must be >= 0 (0: no merging), got {self.voxel_size}")
        if self.oracle and (self.voxel_size > 0 or not self.semantic_merge):
            raise ValueError("--voxel-size / --no-semantic-merge act on the network's Gaussians, not on --oracle")
        if not self.semantic_merge and self.voxel_size == 0:
            raise ValueError("--no-semantic-merge needs --voxel-size > 0 (without merging there is nothing to ablate)")


@dataclass
class Model:
    """A built predictor and the teacher its features are scored with.

    Attributes:
        predictor: network or oracle.
        teacher_settings: settings of the offline teacher (from the checkpoint, or defaults).
        teacher_classes: the teacher's class list from the checkpoint, or None (use each scene's).
        notes: human-readable remarks for the report (random init, defaulted teacher, ...).
    """

    predictor: Predictor
    teacher_settings: TeacherSettings
    teacher_classes: Optional[list[str]]
    notes: list[str]


def build_model(choice: ModelChoice, device: torch.device | str) -> Model:
    """Build what ``choice`` names.

    Raises:
        ValueError: contradictory or missing flags, an unknown preset, or a bad checkpoint.
        FileNotFoundError: a missing checkpoint file.
    """
    if choice.weights is not None and choice.random_init:
        raise ValueError("pass either --weights CKPT or --random-init, not both")
    notes: list[str] = []
    if choice.oracle:
        ckpt_teacher, classes = None, None
        if choice.weights is not None:
            ckpt = load_checkpoint(choice.weights)
            ckpt_teacher, classes = ckpt.teacher, ckpt.classes or None
        notes.append("ORACLE: Gaussians from ground-truth depth, cameras and labels (protocol sanity check, not a model)")
        return Model(OraclePredictor(), ckpt_teacher or TeacherSettings(), classes, notes)
    if choice.weights is not None:
        ckpt = load_checkpoint(choice.weights)
        arch = ckpt.architecture
        # The semantic encoder's weights are inside the FF3R state dict; do not ask for its own file.
        arch = replace(arch, semantic=replace(arch.semantic, weights="random", checkpoint=None, pretrained=None))
        settings = NetworkSettings(
            architecture=arch, weights=Path(choice.weights), image_size=choice.image_size or ckpt.image_size,
            voxel_size=choice.voxel_size, semantic_merge=choice.semantic_merge,
        )
        teacher = ckpt.teacher
        if teacher is None:
            teacher = TeacherSettings(dim=arch.heads.teacher_dim)
            notes.append(f"{choice.weights} records no teacher; using the default offline teacher (dim {teacher.dim})")
        return Model(NetworkPredictor(settings, device), teacher, ckpt.classes or None, notes)
    if choice.random_init:
        arch: FF3RConfig = preset(choice.preset)  # names the choices when unknown
        size = choice.image_size or min(arch.geometry.img_size, NetworkSettings.image_size)
        settings = NetworkSettings(
            architecture=arch, random_init=True, image_size=size, voxel_size=choice.voxel_size,
            semantic_merge=choice.semantic_merge,
        )
        with torch.random.fork_rng(devices=[]):  # the same random network every run, global RNG untouched
            torch.manual_seed(RANDOM_INIT_SEED)
            predictor = NetworkPredictor(settings, device)
        notes.append(
            f"RANDOM INIT ({choice.preset}): the network is untrained; these numbers only check the pipeline"
        )
        return Model(predictor, TeacherSettings(dim=arch.heads.teacher_dim), None, notes)
    raise ValueError("nothing to evaluate: pass --weights CKPT (an FF3R checkpoint), --random-init [--preset tiny], or --oracle")
