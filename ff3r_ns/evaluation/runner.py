"""Evaluate one scene with LSM's ScanNet protocol, as Uni3R and FF3R (docs/architecture.md, "Evaluation protocol").

For every context group of the split: reconstruct from the context views only, in the dataset's frame;
render the context views at the predictor's own cameras (source-view segmentation, source PSNR); for each
target view start from its dataset camera, align the pose photometrically (Uni3R: Adam on a 9-DoF
correction minimising L1, https://arxiv.org/abs/2508.03643), and score rgb / depth / segmentation at the
aligned pose. Segmentation is scored as one confusion matrix per scene (summed over views), so mIoU is a
per-scene dataset-level number, not a mean of per-image mIoUs.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol

import torch
from torch import Tensor

from ff3r_ns.core.cameras import Cameras
from ff3r_ns.core.gaussians import Gaussians
from ff3r_ns.core.metrics import Lpips, confusion_matrix, depth_metrics, psnr, segmentation_scores, ssim
from ff3r_ns.core.pose_align import AlignConfig, align_pose
from ff3r_ns.core.protocol import ContextGroup, group_by_context, nview_split, scannet_split
from ff3r_ns.core.render import render
from ff3r_ns.core.semantics import segment_labels
from ff3r_ns.evaluation.panels import PanelData, write_panel
from ff3r_ns.evaluation.predictor import Model, Prediction, Predictor, SemanticSpace
from ff3r_ns.nerfstudio.scene import LoadedScene, load_scene

SPLITS = ("scannet", "nview")


@dataclass(frozen=True)
class EvalSettings:
    """How scenes are evaluated (what the CLI flags set).

    Attributes:
        split: ``"scannet"`` (targets ``i % 8 in {1, 4}``, context ``i +- 1``) or ``"nview"`` (context on
            ``n_context`` even frames, targets on the odd frames between).
        n_context: context views of the ``nview`` split.
        align: test-time pose alignment (``steps=0`` scores the dataset camera as is).
        max_targets: evaluate at most this many targets per scene (the first ones of the split).
        panels: write at most this many PNG panels per scene.
        backend: renderer backend (``auto``: gsplat on CUDA, the C++ renderer on CPU, torch where it cannot build).
        depth_unit_scale_factor: stored depth -> the dataset's units where ``transforms.json`` does not say
            (None: nerfstudio's 1e-3 for millimetres; :func:`ff3r_ns.nerfstudio.scene.depth_scale`).
    """

    split: str = "scannet"
    n_context: int = 8
    align: AlignConfig = AlignConfig()
    max_targets: Optional[int] = None
    panels: int = 2
    backend: str = "auto"
    depth_unit_scale_factor: Optional[float] = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"--split must be one of {SPLITS}, got {self.split!r}")
        if self.max_targets is not None and self.max_targets < 1:
            raise ValueError(f"--max-targets must be >= 1, got {self.max_targets}")
        if self.panels < 0:
            raise ValueError(f"--panels must be >= 0, got {self.panels}")
        if self.depth_unit_scale_factor is not None and not 0 < self.depth_unit_scale_factor < math.inf:
            raise ValueError(f"--depth-unit-scale-factor must be > 0, got {self.depth_unit_scale_factor}")


@dataclass
class TargetResult:
    """Metrics of one target view (``nan`` where not measured; segmentation fields None without labels).

    Attributes:
        target: frame index of the target.
        context: frame indices it was reconstructed from.
        psnr, ssim: of the render at the aligned pose (clamped to [0, 1]).
        lpips: LPIPS-AlexNet, or None when its weights are not installed.
        abs_rel, inlier_103, delta_125: rendered vs dataset depth after median scaling (the protocol).
        abs_rel_unscaled: AbsRel without the scaling. The reconstruction is already in the dataset's units
            (moved there through the context cameras), and median scaling by ``median(gt) / median(pred)``
            is fragile when the median falls in a gap of a bimodal depth histogram (near furniture, far
            walls): a few edge pixels changing sides move it by several percent.
        miou, accuracy: per-image segmentation of the decoded rendered features.
        teacher_miou: the 2D teacher's own per-image mIoU on the same pixels.
        residual_before, residual_after: L1 photometric residual of the alignment.
        align_seconds: wall time of the alignment.
    """

    target: int
    context: tuple[int, ...]
    psnr: float
    ssim: float
    lpips: Optional[float]
    abs_rel: float
    abs_rel_unscaled: float
    inlier_103: float
    delta_125: float
    miou: Optional[float]
    accuracy: Optional[float]
    teacher_miou: Optional[float]
    residual_before: float
    residual_after: float
    align_seconds: float


@dataclass
class SceneResult:
    """Everything measured on one scene.

    Attributes:
        name: scene name (folder name).
        path: the scene folder.
        num_frames: frames in the scene.
        targets: one :class:`TargetResult` per evaluated target.
        psnr_source: PSNR of every context view rendered at the predictor's camera.
        confusion_target, confusion_source, confusion_teacher: ``[K, K]`` summed confusion matrices
            (rows ground truth), or None when segmentation was skipped.
        forward_seconds: network forward time summed over context groups.
        align_seconds: pose-alignment time summed over targets.
        num_groups: context groups (network runs).
        gaussians: mean Gaussian count per reconstruction.
        skipped: why segmentation / depth was not evaluated (``{"segmentation": reason}``).
        panels: PNG files written.
    """

    name: str
    path: Path
    num_frames: int
    targets: list[TargetResult] = field(default_factory=list)
    psnr_source: list[float] = field(default_factory=list)
    confusion_target: Optional[Tensor] = None
    confusion_source: Optional[Tensor] = None
    confusion_teacher: Optional[Tensor] = None
    forward_seconds: float = 0.0
    align_seconds: float = 0.0
    num_groups: int = 0
    gaussians: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    panels: list[Path] = field(default_factory=list)


class ProgressSink(Protocol):
    """Where the runner reports progress (the CLI's rich progress bar)."""

    def scene_started(self, name: str, num_targets: int) -> None: ...

    def target_done(self) -> None: ...

    def message(self, text: str) -> None: ...


def context_groups(num_frames: int, settings: EvalSettings) -> list[ContextGroup]:
    """The split's context groups, limited to the first ``settings.max_targets`` targets.

    Raises:
        ValueError: when the split leaves no target in a scene of ``num_frames`` frames.
    """
    if settings.split == "scannet":
        splits = scannet_split(num_frames)
    else:
        splits = nview_split(num_frames, settings.n_context)
    if settings.max_targets is not None:
        splits = splits[: settings.max_targets]
    if not splits:
        raise ValueError(f"{num_frames} frames leave no target view under the {settings.split!r} split")
    return group_by_context(splits)


@contextlib.contextmanager
def _quiet_nerfstudio() -> Iterator[None]:
    """Silence nerfstudio's console while its dataparser reads a scene (it warns about eval_mode='all',
    which is exactly what we want: all frames, in order)."""
    from nerfstudio.utils.rich_utils import CONSOLE

    was = CONSOLE.quiet
    CONSOLE.quiet = True
    try:
        yield
    finally:
        CONSOLE.quiet = was


def read_scene(path: Path, device: torch.device, depth_unit_scale_factor: Optional[float] = None) -> LoadedScene:
    """:func:`load_scene` on ``path``, every tensor moved to ``device``."""
    with _quiet_nerfstudio():
        s = load_scene(path, depth_unit_scale_factor)
    move: Callable[[Optional[Tensor]], Optional[Tensor]] = lambda t: None if t is None else t.to(device)
    return LoadedScene(move(s.images), s.cameras.to(device), move(s.depth), move(s.labels), s.classes, s.image_paths)


def semantic_space(scene: LoadedScene, model: Model) -> tuple[Optional[SemanticSpace], Optional[str]]:
    """The scene's :class:`SemanticSpace`, or None and the reason segmentation is skipped."""
    if scene.labels is None:
        return None, "no labels (no 'semantic_path' on every frame of transforms.json)"
    if len(scene.classes) < 2:
        return None, "labels but no 'classes' list in transforms.json"
    if int(scene.labels.max()) >= len(scene.classes):
        return None, f"label id {int(scene.labels.max())} but only {len(scene.classes)} classes are named"
    try:
        return SemanticSpace.build(model.teacher_settings, scene.classes, model.teacher_classes), None
    except ValueError as err:
        return None, str(err)


def _labels(features: Tensor, predictor: Predictor, space: SemanticSpace) -> Tensor:
    """Rendered features ``[..., F]`` -> class ids 1..K-1 (argmax of cosine with the class texts the decoder can express)."""
    return segment_labels(predictor.decode(features), predictor.expressible(space.class_embeddings.to(features.device)))


def _render_fn(gaussians: Gaussians, width: int, height: int, backend: str) -> Callable[[Tensor, Tensor], Tensor]:
    def fn(w2c: Tensor, k: Tensor) -> Tensor:
        return render(gaussians, Cameras(w2c[None], k[None], width, height), backend=backend, render_features=False).rgb[0]

    return fn


def _depth(pred: Tensor, gt: Optional[Tensor]) -> tuple[float, float, float, float]:
    """``(abs_rel, abs_rel_unscaled, inlier_103, delta_125)``; nan without ground truth."""
    if gt is None:
        return math.nan, math.nan, math.nan, math.nan
    if not (torch.isfinite(pred) & (pred > 0) & (gt > 0)).any():
        # An empty render: every pixel is an outlier with relative error 1, as depth_metrics counts
        # unusable pixels, so it drags the mean down instead of dropping out of it.
        return 1.0, 1.0, 0.0, 0.0
    d = depth_metrics(pred, gt)
    return d.abs_rel, depth_metrics(pred, gt, median_scaling=False).abs_rel, d.inlier_103, d.delta_125


def _subtitle(r: TargetResult) -> str:
    parts = [f"PSNR {r.psnr:.2f} dB", f"SSIM {r.ssim:.3f}", f"AbsRel {r.abs_rel:.3f}"]
    if r.miou is not None:
        parts.append(f"mIoU {r.miou:.3f} (teacher {r.teacher_miou:.3f})")
    parts.append(f"L1 {r.residual_before:.3f} -> {r.residual_after:.3f}")
    return "   ".join(parts)


@dataclass
class _SceneRun:
    """What each step of one scene's evaluation reads (and ``result``, which each step adds to).

    Attributes:
        scene: the whole scene on the evaluation device.
        predictor: what is evaluated.
        space: the scene's semantic space, or None when segmentation is skipped.
        settings: the protocol's settings.
        result: the scene's results so far.
        lpips: LPIPS scorer, or None.
    """

    scene: LoadedScene
    predictor: Predictor
    space: Optional[SemanticSpace]
    settings: EvalSettings
    result: SceneResult
    lpips: Optional[Lpips]


@dataclass
class _TargetOutput:
    """One target's render at the aligned pose and its segmentations (what its panel shows).

    Attributes:
        rgb: ``[1, H, W, 3]`` clamped render; ``depth`` ``[H, W]`` rendered depth.
        features: ``[1, H, W, F]`` rendered features, or None without segmentation.
        segmentation, teacher_segmentation: ``[H, W]`` class ids of the render and of the 2D teacher, or None.
    """

    rgb: Tensor
    depth: Tensor
    features: Optional[Tensor]
    segmentation: Optional[Tensor] = None
    teacher_segmentation: Optional[Tensor] = None


# Eight parameters: what to evaluate and where (the first four), then optional outputs and helpers with defaults;
# the CLI and scripts/eval_ablation.py pass them positionally.
@torch.no_grad()
def evaluate_scene(
    path: Path,
    model: Model,
    settings: EvalSettings,
    device: torch.device,
    panel_dir: Optional[Path] = None,
    lpips: Optional[Lpips] = None,
    progress: Optional[ProgressSink] = None,
    name: Optional[str] = None,
) -> SceneResult:
    """Run the protocol on the scene folder ``path``.

    Args:
        path: a nerfstudio-data folder.
        model: what to evaluate (:func:`ff3r_ns.evaluation.predictor.build_model`).
        settings: split, alignment and limits.
        device: where tensors live.
        panel_dir: folder for PNG panels (None: none written).
        lpips: LPIPS scorer, or None.
        progress: progress sink.
        name: scene name in reports and panel file names (default: the folder's name).

    Returns:
        :class:`SceneResult`.
    """
    scene = read_scene(path, device, settings.depth_unit_scale_factor)
    result = SceneResult(name=name or path.name, path=path, num_frames=len(scene))
    groups = context_groups(len(scene), settings)
    run = _SceneRun(scene, model.predictor, _start_scene(scene, model, result, device), settings, result, lpips)
    if progress is not None:
        progress.scene_started(result.name, sum(len(g.targets) for g in groups))
        for what, why in result.skipped.items():
            progress.message(f"{result.name}: {why}: {what} skipped; the other metrics still run")
    for group in groups:
        pred = _reconstruct(run, group, len(groups))
        for t in group.targets:
            out = _evaluate_target(run, pred, group, t)
            if panel_dir is not None and len(result.panels) < settings.panels:
                result.panels.append(_write_target_panel(run, out, group, t, panel_dir))
            if progress is not None:
                progress.target_done()
    return result


def _start_scene(scene: LoadedScene, model: Model, result: SceneResult, device: torch.device) -> Optional[SemanticSpace]:
    """The scene's semantic space (None: segmentation skipped); records what is skipped and why in ``result``, and
    starts its confusion matrices."""
    space, reason = semantic_space(scene, model)
    if reason is not None:
        result.skipped["segmentation"] = reason
    if scene.depth is None:
        result.skipped["depth"] = "no depth (no 'depth_file_path' in transforms.json)"
    if space is not None:
        k = space.num_classes
        result.confusion_target, result.confusion_source, result.confusion_teacher = (
            torch.zeros(k, k, dtype=torch.long, device=device) for _ in range(3)
        )
    return space


def _reconstruct(run: _SceneRun, group: ContextGroup, num_groups: int) -> Prediction:
    """Reconstruct from ``group``'s context views and score them at the predictor's own cameras (source PSNR and
    source segmentation)."""
    result, space = run.result, run.space
    context = run.scene.select(list(group.context))
    pred = run.predictor.predict(context, space)
    result.forward_seconds += pred.forward_seconds
    result.gaussians += pred.gaussians.num / num_groups
    result.num_groups += 1
    src = render(pred.gaussians, pred.context_cameras, backend=run.settings.backend, render_features=space is not None)
    result.psnr_source += psnr(src.rgb.clamp(0, 1), context.images).tolist()
    if space is not None:
        result.confusion_source += confusion_matrix(_labels(src.features, run.predictor, space), context.labels, space.num_classes)
    return pred


def _evaluate_target(run: _SceneRun, pred: Prediction, group: ContextGroup, t: int) -> _TargetOutput:
    """Align target ``t``'s pose, render there and append its :class:`TargetResult` to ``run.result``."""
    settings, scene = run.settings, run.scene
    target = scene.select([t])
    cam, width, height = target.cameras, scene.cameras.width, scene.cameras.height
    aligned = align_pose(
        _render_fn(pred.gaussians, width, height, settings.backend), target.images[0],
        cam.world_to_cam[0].float(), cam.intrinsics[0].float(), settings.align,
    )
    at = Cameras(aligned.world_to_cam[None], aligned.intrinsics[None], width, height)
    rendered = render(pred.gaussians, at, backend=settings.backend, render_features=run.space is not None)
    out = _TargetOutput(rgb=rendered.rgb.clamp(0, 1), depth=rendered.depth[0, ..., 0], features=rendered.features)
    gt_depth = target.depth[0] if target.depth is not None else None
    abs_rel, abs_rel_unscaled, inl, delta = _depth(out.depth, gt_depth)
    miou, acc, teacher_miou = _segment_target(run, out, target, t)
    run.result.align_seconds += aligned.seconds
    lpips = run.lpips(out.rgb, target.images).item() if run.lpips is not None else None
    run.result.targets.append(
        TargetResult(
            target=t, context=group.context,
            psnr=psnr(out.rgb, target.images).item(), ssim=ssim(out.rgb, target.images).item(), lpips=lpips,
            abs_rel=abs_rel, abs_rel_unscaled=abs_rel_unscaled, inlier_103=inl, delta_125=delta,
            miou=miou, accuracy=acc, teacher_miou=teacher_miou,
            residual_before=aligned.residual_l1_before, residual_after=aligned.residual_l1_after,
            align_seconds=aligned.seconds,
        )
    )
    return out


def _segment_target(
    run: _SceneRun, out: _TargetOutput, target: LoadedScene, t: int
) -> tuple[Optional[float], Optional[float], Optional[float]]:
    """``(miou, accuracy, teacher_miou)`` of one target (None without segmentation); sets ``out``'s segmentations
    and adds to the scene's target and teacher confusion matrices."""
    space, result = run.space, run.result
    if space is None:
        return None, None, None
    k = space.num_classes
    out.segmentation = _labels(out.features, run.predictor, space)[0]
    out.teacher_segmentation = segment_labels(space.teacher_features(target.labels, [t]), space.class_embeddings)[0]
    cm = confusion_matrix(out.segmentation, target.labels[0], k)
    cm_teacher = confusion_matrix(out.teacher_segmentation, target.labels[0], k)
    result.confusion_target += cm
    result.confusion_teacher += cm_teacher
    scores = segmentation_scores(cm)
    return scores.miou, scores.accuracy, segmentation_scores(cm_teacher).miou


def _write_target_panel(run: _SceneRun, out: _TargetOutput, group: ContextGroup, t: int, panel_dir: Path) -> Path:
    """The PNG panel of target ``t`` (its result is the last of ``run.result.targets``)."""
    target, result = run.scene.select([t]), run.result
    data = PanelData(
        title=f"{result.name}  target {t}  context {list(group.context)}  ({run.predictor.name})",
        subtitle=_subtitle(result.targets[-1]),
        gt_rgb=target.images[0], rgb=out.rgb[0], depth=out.depth,
        gt_depth=target.depth[0] if target.depth is not None else None,
        features=run.predictor.decode(out.features[0]) if out.features is not None else None,
        segmentation=out.segmentation, gt_labels=target.labels[0] if run.space is not None else None,
        teacher_segmentation=out.teacher_segmentation,
    )
    return write_panel(data, panel_dir / f"{result.name}_target{t:05d}.png")
