"""Training data: every scene folder under a directory, cached in memory at the network's input size,
and seeded sampling of overlapping context windows.

Both training stages read scenes through :func:`ff3r_ns.nerfstudio.scene.load_scene` (nerfstudio's own
dataparser). What each stage may *use* differs and is chosen by :class:`BankContents`:

* feature training (annotation-free): images, plus the labels only to synthesise the offline
  teacher's 2D features (they stand in for a 2D foundation model; no label is ever compared with a
  prediction);
* geometry pretraining (supervised, VGGT's role): images, ground-truth depth and cameras.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ff3r_ns.core.cameras import Cameras
from ff3r_ns.core.checkpoint import TeacherSettings
from ff3r_ns.core.losses import feature_size
from ff3r_ns.core.reconstruct import network_input_size, resize_images


def scene_folders_under(root: Path) -> list[Path]:
    """Every folder under ``root`` (itself included) that holds a ``transforms.json``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"scene directory not found: {root}")
    scenes = sorted(p.parent for p in root.rglob("transforms.json"))
    if not scenes:
        raise FileNotFoundError(f"no scene folders (with transforms.json) under {root}; make some with ff3r-make-scene")
    return scenes


@dataclass(frozen=True)
class BankContents:
    """What to keep of each scene.

    Attributes:
        teacher: offline-teacher settings; teacher features are computed once per scene (needs labels).
        feature_fraction: resolution of the cached teacher features as a fraction of the network input.
        geometry: keep ground-truth depth and cameras (geometry pretraining only).
    """

    teacher: Optional[TeacherSettings] = None
    feature_fraction: float = 0.5
    geometry: bool = False


@dataclass
class CachedScene:
    """One scene at the network's input size ``h x w``.

    Attributes:
        name: folder path relative to the scene directory.
        images: ``[S, 3, h, w]`` float32 in [0, 1].
        teacher: ``[S, hf, wf, D]`` float16 unit teacher features at the feature-loss resolution, or None.
        depth: ``[S, h, w]`` ground-truth z-depth (0 = invalid; nearest-resized), or None.
        cameras: ground-truth cameras of size ``w x h``, or None.
        classes: class names in label-id order.
    """

    name: str
    images: Tensor
    teacher: Optional[Tensor]
    depth: Optional[Tensor]
    cameras: Optional[Cameras]
    classes: list[str]

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class ContextBatch:
    """The context views of one scene for one training step (on the training device).

    Attributes:
        scene: scene name.
        frames: ``[S]`` frame indices in the scene.
        images: ``[S, 3, h, w]``.
        teacher: ``[S, hf, wf, D]`` float32 teacher features, or None.
        depth: ``[S, h, w]`` ground-truth depth, or None (feature training never has it).
        cameras: ground-truth cameras, or None (feature training never has them).
    """

    scene: str
    frames: Tensor
    images: Tensor
    teacher: Optional[Tensor]
    depth: Optional[Tensor]
    cameras: Optional[Cameras]


def scene_view_ids(name: str, num_views: int) -> Tensor:
    """Teacher view ids: distinct per scene and frame (so view biases differ between scenes), stable across runs."""
    base = (zlib.crc32(name.encode()) % 100_000) * 10_000
    return torch.arange(num_views) + base


class SceneBank:
    """All training scenes, read once and cached in CPU memory.

    Args:
        root: directory searched for scene folders (:func:`scene_folders_under`).
        image_size: longest side of the network input (sides rounded to multiples of ``patch``).
        contents: :class:`BankContents`.
        patch: the network's patch size.
        scenes: read only these folders (e.g. one rank's share); default all under ``root``.
    """

    def __init__(
        self, root: Path, image_size: int, contents: BankContents, patch: int = 14, scenes: Optional[list[Path]] = None,
    ) -> None:
        self.root = Path(root)
        self.image_size, self.contents, self.patch = image_size, contents, patch
        self.paths = scenes if scenes is not None else scene_folders_under(self.root)
        self.scenes = [self._load(p) for p in self.paths]
        self.classes = self.scenes[0].classes
        for s in self.scenes:
            if contents.teacher is not None and s.classes != self.classes:
                raise ValueError(f"scene {s.name} has classes {s.classes}, others {self.classes}: one teacher needs one class list")

    def __len__(self) -> int:
        return len(self.scenes)

    def _load(self, path: Path) -> CachedScene:
        from ff3r_ns.nerfstudio.scene import load_scene  # nerfstudio import is slow; only when reading

        scene = load_scene(path)
        name = str(path.relative_to(self.root)) if path != self.root else path.name
        height, width = scene.images.shape[1:3]
        h, w = network_input_size(height, width, self.image_size, self.patch)
        teacher = None
        if self.contents.teacher is not None:
            if scene.labels is None or not scene.classes:
                raise ValueError(f"scene {path} has no labels/classes: the offline teacher needs them (semantic_path, classes)")
            t = self.contents.teacher.build(scene.classes)
            feats = t.features(scene.labels, scene_view_ids(name, len(scene)))  # [S, D, H, W]
            hf, wf = feature_size(h, w, self.contents.feature_fraction)
            feats = F.interpolate(feats, size=(hf, wf), mode="area")
            teacher = F.normalize(feats, dim=1).permute(0, 2, 3, 1).to(torch.float16).contiguous()
        depth = cameras = None
        if self.contents.geometry:
            if scene.depth is None:
                raise ValueError(f"scene {path} has no depth (depth_file_path): geometry pretraining needs it")
            depth = F.interpolate(scene.depth[:, None], size=(h, w), mode="nearest")[:, 0]
            cameras = scene.cameras.resized(w, h)
        return CachedScene(name, resize_images(scene.images, (h, w)), teacher, depth, cameras, scene.classes)

    def batch(self, scene_index: int, frames: list[int], device: torch.device | str) -> ContextBatch:
        """The views ``frames`` of scene ``scene_index`` on ``device``."""
        s = self.scenes[scene_index]
        idx = torch.as_tensor(frames, dtype=torch.long)
        return ContextBatch(
            scene=s.name,
            frames=idx,
            images=s.images[idx].to(device),
            teacher=s.teacher[idx].to(device=device, dtype=torch.float32) if s.teacher is not None else None,
            depth=s.depth[idx].to(device) if s.depth is not None else None,
            cameras=s.cameras[idx].to(device) if s.cameras is not None else None,
        )


def sample_window(num_frames: int, min_views: int, max_views: int, max_stride: int, rng: np.random.Generator) -> list[int]:
    """Frame indices of a random context: ``n`` views (``min_views..max_views``), a contiguous or strided window.

    Consecutive frames of a generated path overlap, so a window with a small stride keeps views overlapping
    (as the feature warping needs). The order is random only in its start; frames ascend.

    Args:
        num_frames: frames in the scene.
        min_views, max_views: range of the context size (clamped to ``num_frames``).
        max_stride: largest step between chosen frames.
        rng: numpy generator.

    Returns:
        sorted frame indices.

    Example:
        >>> sample_window(32, 2, 8, 2, np.random.default_rng(0))  # doctest: +SKIP
        [11, 13, 15, 17, 19]
    """
    if num_frames < 1:
        raise ValueError("sample_window: the scene has no frames")
    if min_views < 1 or max_views < min_views or max_stride < 1:
        raise ValueError(f"sample_window: need 1 <= min_views <= max_views and max_stride >= 1, got {min_views}, {max_views}, {max_stride}")
    hi = min(max_views, num_frames)
    n = int(rng.integers(min(min_views, hi), hi + 1))
    stride_cap = max(1, min(max_stride, (num_frames - 1) // max(1, n - 1)))
    stride = int(rng.integers(1, stride_cap + 1))
    span = (n - 1) * stride + 1
    start = int(rng.integers(0, num_frames - span + 1))
    return list(range(start, start + span, stride))


def step_rng(seed: int, rank: int, step: int) -> np.random.Generator:
    """The data generator of one rank at one step: a pure function of (seed, rank, step), so a resumed run
    samples exactly what an uninterrupted one would."""
    return np.random.default_rng([seed, rank, step])
