"""Read a whole nerfstudio-data scene (images, cameras, and depth / labels where present) into tensors.

Used by the commands that work on many scenes outside ``ns-train`` (training, evaluation,
benchmarks). Poses and intrinsics come through nerfstudio's own dataparser (so any nerfstudio-data
folder works, and the frame order is nerfstudio's: sorted by image file name), with no re-orientation,
re-centring or re-scaling, so depths stay in the dataset's units.

Label convention (see the README): per frame ``"semantic_path"``, a uint8 PNG of class ids with
0 = ignore; top-level ``"classes"``, the class names in id order. Depth: ``"depth_file_path"``, read
with nerfstudio's reader (``get_depth_image_from_path``), which multiplies the stored values by
``depth_unit_scale_factor``, 16-bit PNG and ``.npy`` alike. nerfstudio takes that factor from its dataparser's
flag (default 1e-3: millimetre PNGs -> metres); here a top-level ``"depth_unit_scale_factor"`` in
``transforms.json`` says it for the dataset (e.g. 1.0 for ``.npy`` depth in metres), else the caller's default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ff3r_ns.core.cameras import Cameras, opengl_c2w_to_opencv_w2c
from ff3r_ns.core.transforms_json import read_transforms_json
from ff3r_ns.data.images import read_rgb_float


@dataclass
class LoadedScene:
    """One scene read from a nerfstudio-data folder, all frames, in nerfstudio's frame order (a generated scene
    before it is written is a :class:`ff3r_ns.data.generate.SceneViews`).

    Attributes:
        images: ``[S, H, W, 3]`` float32 in [0, 1].
        cameras: OpenCV cameras in the dataset's frame and units.
        depth: ``[S, H, W]`` float32 z-depth in the dataset's units (0 = invalid), or None.
        labels: ``[S, H, W]`` int64 class ids (0 = ignore), or None.
        classes: class names in id order (empty without labels).
        image_paths: one path per frame.
    """

    images: Tensor
    cameras: Cameras
    depth: Optional[Tensor]
    labels: Optional[Tensor]
    classes: list[str]
    image_paths: list[Path]

    def __len__(self) -> int:
        return self.images.shape[0]

    def select(self, indices: list[int]) -> "LoadedScene":
        """The frames ``indices``, in that order."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return LoadedScene(
            images=self.images[idx],
            cameras=self.cameras[idx],
            depth=self.depth[idx] if self.depth is not None else None,
            labels=self.labels[idx] if self.labels is not None else None,
            classes=self.classes,
            image_paths=[self.image_paths[i] for i in indices],
        )


DEPTH_UNIT_SCALE_FACTOR = 1e-3
"""nerfstudio's default ``depth_unit_scale_factor``: stored depth in millimetres -> metres."""


def depth_scale(meta: dict, default: Optional[float] = None) -> float:
    """The factor that turns a scene's stored depth values into its units: ``transforms.json``'s
    ``"depth_unit_scale_factor"`` where it says, else ``default``, else :data:`DEPTH_UNIT_SCALE_FACTOR`.

    Raises:
        ValueError: a factor that is not a positive finite number.
    """
    value = meta.get("depth_unit_scale_factor", DEPTH_UNIT_SCALE_FACTOR if default is None else default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"depth_unit_scale_factor must be a positive number, got {value!r}")
    return float(value)


def read_depth(path: Path, height: int, width: int, scale: float) -> Tensor:
    """``[height, width]`` float32 depth of one ``depth_file_path`` (nerfstudio's reader: PNG or ``.npy``, values times
    ``scale``, nearest-resized)."""
    from nerfstudio.data.utils.data_utils import get_depth_image_from_path

    return get_depth_image_from_path(Path(path), height, width, scale)[..., 0].float()


def load_scene(data: Path, depth_unit_scale_factor: Optional[float] = None) -> LoadedScene:
    """Read every frame of a nerfstudio-data folder.

    Args:
        data: folder with ``transforms.json``.
        depth_unit_scale_factor: factor for depth files where ``transforms.json`` does not give one (None:
            nerfstudio's 1e-3, millimetre PNGs -> metres); see :func:`depth_scale`.

    Returns:
        :class:`LoadedScene`.
    """
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
    from nerfstudio.utils.rich_utils import CONSOLE

    data = Path(data)
    scale = depth_scale(_read_meta(data)[0], depth_unit_scale_factor)
    parser = NerfstudioDataParserConfig(
        data=data, downscale_factor=1, orientation_method="none", center_method="none", auto_scale_poses=False,
        eval_mode="all", depth_unit_scale_factor=scale,
    ).setup()
    # eval_mode="all" makes the dataparser warn about camera optimisation, which reading frames never does;
    # a training bank reads thousands of scenes, so keep that warning out of the log.
    quiet, CONSOLE.quiet = CONSOLE.quiet, True
    try:
        out = parser.get_dataparser_outputs(split="train")
    finally:
        CONSOLE.quiet = quiet
    cams = out.cameras
    w2c = opengl_c2w_to_opencv_w2c(cams.camera_to_worlds.float())
    width, height = int(cams.width[0]), int(cams.height[0])
    cameras = Cameras(w2c, cams.get_intrinsics_matrices().float(), width, height)
    paths = [Path(p) for p in out.image_filenames]

    images = torch.stack([torch.from_numpy(read_rgb_float(p)) for p in paths])

    depth = None
    depth_files = out.metadata.get("depth_filenames")
    if depth_files:
        depth = torch.stack([read_depth(Path(f), height, width, scale) for f in depth_files])

    labels, classes = read_label_maps(data, paths)
    return LoadedScene(images=images, cameras=cameras, depth=depth, labels=labels, classes=classes, image_paths=paths)


def read_label_maps(data: Path, image_paths: list[Path]) -> tuple[Optional[Tensor], list[str]]:
    """The label maps of ``image_paths`` (frames of ``data/transforms.json``), by the convention above.

    Args:
        data: the nerfstudio-data folder (or its ``transforms.json``).
        image_paths: the frames' image files, in the order wanted (e.g. a dataparser's ``image_filenames``).

    Returns:
        ``[S, H, W]`` int64 class ids (0 = ignore) and the class names in id order, or ``(None, classes)`` when
        some frame has no ``semantic_path``.
    """
    meta, root = _read_meta(data)
    by_image = {(root / f["file_path"]).resolve(): f for f in meta.get("frames", []) if isinstance(f, dict) and "file_path" in f}
    frames = [by_image.get(Path(p).resolve(), {}) for p in image_paths]
    classes: list[str] = list(meta.get("classes", []))
    if not frames or not all("semantic_path" in f for f in frames):
        return None, classes
    labels = torch.stack(
        [torch.from_numpy(np.asarray(Image.open(root / f["semantic_path"]), dtype=np.int64)) for f in frames]
    )
    return labels, classes


def _read_meta(data: Path) -> tuple[dict, Path]:
    """``transforms.json`` of ``data`` (the folder or the file itself) and the folder its paths are relative to."""
    meta, meta_path = read_transforms_json(data)
    return meta, meta_path.parent
