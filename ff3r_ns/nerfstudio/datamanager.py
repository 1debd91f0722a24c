"""Full-image datamanager that checks its input first and fails with one clear line.

nerfstudio's own errors for a missing folder, an unreadable image or images of different sizes are
assertion tracebacks from deep inside the dataparser or the image cache. :func:`check_nerfstudio_data`
runs before any of that and raises :class:`DataError` naming the file and the problem;
:class:`FF3RDataManager` turns it into ``SystemExit("ff3r: error: ...")`` (exit status 1, one line,
no traceback) before anything is trained or saved.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Dict, Literal, Tuple, Type, Union

import torch
from PIL import Image

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.configs.dataparser_configs import AnnotatedDataParserUnion
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.utils.rich_utils import CONSOLE

from ff3r_ns.core.transforms_json import read_transforms_json, transforms_json_path


class DataError(ValueError):
    """Unusable input data; the message is one line that names the file and the problem."""


def _is_whole_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and float(v).is_integer()


def _frame_image_path(root: Path, frame: dict) -> Path:
    p = Path(frame["file_path"])
    return p if p.is_absolute() else root / p


def check_nerfstudio_data(data: Path, open_images: bool = True) -> None:
    """Check a nerfstudio-data folder (or ``transforms.json`` path) before nerfstudio parses it.

    Args:
        data: the folder holding ``transforms.json``, or the JSON file itself.
        open_images: also open every image (skipped where no image is read, e.g. for export).

    Raises:
        DataError: missing folder or file, no frames, a missing/unreadable image, or images whose size
            differs from the first image or from the size the JSON declares.
    """
    data = Path(data)
    if not data.exists():
        raise DataError(f"{data}: no such file or directory")
    meta_path = transforms_json_path(data)
    root = meta_path.parent
    if not meta_path.exists():
        images = [p for p in root.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")] if root.is_dir() else []
        hint = "it holds no images either" if not images else "it holds images but no camera file"
        raise DataError(f"{meta_path}: not found ({hint}); expected a nerfstudio-data folder with transforms.json")
    try:
        meta, _ = read_transforms_json(meta_path)
    except ValueError as err:
        raise DataError(str(err)) from None
    if isinstance(meta, list) and meta and all(isinstance(f, dict) and "transform" in f for f in meta):
        raise DataError(f"{meta_path}: a camera list as ns-export cameras writes it, not a transforms.json (a JSON "
                        "object with 'frames'); pass the dataset folder, or the images alone")
    if not isinstance(meta, dict):
        raise DataError(f"{meta_path}: expected a JSON object with a 'frames' list, got {type(meta).__name__}")
    frames = meta.get("frames") or []
    if not isinstance(frames, list):
        raise DataError(f"{meta_path}: 'frames' must be a list, got {type(frames).__name__}")
    if not frames:
        raise DataError(f"{meta_path}: lists no frames (no images to reconstruct from)")
    if not open_images:
        return
    # Decoding dominates for many views; PIL releases the GIL while decoding, so threads overlap it.
    workers = max(1, min(16, os.cpu_count() or 1, len(frames)))
    with ThreadPoolExecutor(workers) as pool:
        sizes = list(pool.map(lambda frame: _check_frame(meta_path, meta, frame), frames))
    for frame, size in zip(frames, sizes):
        if size != sizes[0]:
            path = _frame_image_path(root, frame)
            raise DataError(f"{path}: image is {size[0]}x{size[1]}, the first image is {sizes[0][0]}x{sizes[0][1]}; all views must share one size")


def _check_frame(meta_path: Path, meta: dict, frame: object) -> tuple[int, int]:
    """One frame of :func:`check_nerfstudio_data`: its image exists, decodes, is RGB(A) and has the declared
    size. Returns the image's ``(width, height)``."""
    if not isinstance(frame, dict) or "file_path" not in frame:
        raise DataError(f"{meta_path}: a frame has no file_path")
    if not isinstance(frame["file_path"], str) or not frame["file_path"]:
        raise DataError(f"{meta_path}: file_path must be a non-empty string, got {frame['file_path']!r}")
    path = _frame_image_path(meta_path.parent, frame)
    if not path.is_file():
        raise DataError(f"{path}: image listed in {meta_path.name} does not exist")
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:  # verify() leaves the file unusable; reopen to decode the pixels
            im.load()
            size, mode = im.size, im.mode
    except Exception as err:  # PIL raises many types for corrupt files
        raise DataError(f"{path}: unreadable image ({type(err).__name__}: {err})") from None
    if mode not in ("RGB", "RGBA"):
        # nerfstudio's dataset asserts on anything but 3 or 4 channels, with a traceback.
        raise DataError(
            f"{path}: image mode {mode} (not RGB/RGBA), which nerfstudio-data cannot read; convert the images, or "
            "pass a folder of them without transforms.json (read as unposed images, grey replicated to RGB)"
        )
    declared = (frame.get("w", meta.get("w")), frame.get("h", meta.get("h")))
    if None not in declared and not all(_is_whole_number(v) for v in declared):
        raise DataError(f"{meta_path}: w and h must be whole numbers, got w={declared[0]!r}, h={declared[1]!r}")
    if None not in declared and tuple(int(v) for v in declared) != size:
        raise DataError(f"{path}: image is {size[0]}x{size[1]} but {meta_path.name} declares {declared[0]}x{declared[1]}")
    return size


def pose_problem(meta: dict) -> str:
    """What makes a transforms.json's poses unusable for placing a reconstruction ("" when nothing does):
    a missing or non-finite matrix or intrinsic, or every camera at one point."""
    frames = meta.get("frames") or []
    centres = []
    for f in frames:
        m = f.get("transform_matrix")
        values = [v for row in (m or []) for v in row] + [meta.get(k, f.get(k, 0.0)) for k in ("fl_x", "fl_y", "cx", "cy")]
        if not m or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            return "non-finite (NaN/inf) or missing entries in its camera poses or intrinsics"
        centres.append([row[3] for row in m[:3]])
    if len(centres) > 1 and max(max(abs(a - b) for a, b in zip(c, centres[0])) for c in centres) < 1e-9:
        return "all its cameras at one point (no baseline)"
    return ""


def unposed_fallback(data: Path) -> Path | None:
    """For a nerfstudio-data folder whose poses cannot place anything (:func:`pose_problem`), the folder of its
    images, to be read as unposed photos instead (with a one-line warning); None when the poses are usable.

    Raises:
        DataError: the poses are unusable and the frames' images do not make up one folder by themselves.
    """
    meta, meta_path = read_transforms_json(data)
    problem = pose_problem(meta)
    if not problem:
        return None
    images = {_frame_image_path(meta_path.parent, f).resolve() for f in meta["frames"]}
    folders = {p.parent for p in images}
    if len(folders) == 1:
        folder = folders.pop()
        present = {p.resolve() for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")}
        if present == images:
            CONSOLE.log(f"[yellow]ff3r: warning: {meta_path}: {problem}; reading {folder} as unposed photos and using the "
                        "predicted cameras instead")
            return folder
    raise DataError(f"{meta_path}: {problem}, and its images are not one folder of their own to read unposed instead")


@dataclass
class FF3RDataManagerConfig(FullImageDatamanagerConfig):
    """Full images, cached on the model's device (``"gpu"`` means the model's device, also on CPU)."""

    _target: Type = field(default_factory=lambda: FF3RDataManager)
    dataparser: AnnotatedDataParserUnion = field(default_factory=lambda: NerfstudioDataParserConfig(downscale_factor=1))
    """Dataparser (a subcommand, e.g. images-data). The default nerfstudio-data parser has downscale_factor=1 so
    that nerfstudio never writes downscaled copies into the dataset folder; a folder of images without
    transforms.json (or a video file) is read with images-data instead, automatically."""
    cache_images: Literal["cpu", "gpu"] = "gpu"
    """Where images are cached: "gpu" = the model's device (works on CPU); "cpu" pins memory, which needs CUDA."""
    cameras_per_step: int = 1
    """Training images rendered and compared per refinement step (gsplat renders them in one batched call). A
    GPU step is launch-bound (one image: 3 ms of GPU work in a 13 ms step), so a few images per step see more data
    in nearly the same time; the learning rates grow by sqrt of it. ``ns-train ff3r`` takes 4 on a GPU, 1 on a CPU."""


class FF3RDataManager(FullImageDatamanager):
    """``FullImageDatamanager`` that validates its data first (see the module docstring)."""

    def __init__(
        self,
        config: FF3RDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ):
        data = Path(config.data if config.data is not None else config.dataparser.data)
        if isinstance(config.dataparser, NerfstudioDataParserConfig):
            from ff3r_ns.nerfstudio.images_dataparser import ImagesDataParserConfig, looks_unposed

            if looks_unposed(data):
                CONSOLE.log(f"{data}: no transforms.json, reading it as unposed images (images-data); the network predicts the cameras")
                config.dataparser = ImagesDataParserConfig(data=data)
        if isinstance(config.dataparser, NerfstudioDataParserConfig):
            try:
                check_nerfstudio_data(data, open_images=test_mode != "inference")
                unposed = unposed_fallback(data)
            except DataError as err:
                raise SystemExit(f"ff3r: error: {err}") from None
            if unposed is not None:
                from ff3r_ns.nerfstudio.images_dataparser import ImagesDataParserConfig

                config.dataparser = ImagesDataParserConfig(data=unposed)
                config.data = unposed  # --data would point the new dataparser back at the folder
        super().__init__(config, device=device, test_mode=test_mode, world_size=world_size, local_rank=local_rank, **kwargs)

    @cached_property
    def dataset_type(self) -> Type[InputDataset]:
        """Unposed folders get :class:`~ff3r_ns.nerfstudio.images_dataparser.ImagesDataset`, whose file names are
        the user's photos (so that ``ns-export cameras`` names them); posed data nerfstudio's ``InputDataset``."""
        from ff3r_ns.nerfstudio.images_dataparser import ImagesDataParserConfig, ImagesDataset

        return ImagesDataset if isinstance(self.config.dataparser, ImagesDataParserConfig) else InputDataset

    def next_train(self, step: int) -> Tuple[Cameras, Dict]:
        """The next ``cameras_per_step`` training images, each once per pass over the training set.

        Returns:
            cameras ``[B]`` on the host (``metadata["cam_idx"]``: their ``B`` indices, a list when ``B > 1``) and a batch whose
            ``image`` is ``[B, H, W, C]`` and ``image_idx`` ``[B]`` (one camera: nerfstudio's own layout).
        """
        b = self.config.cameras_per_step
        if b <= 1:
            return super().next_train(step)
        idx = [self._next_train_index() for _ in range(b)]
        items = [self.cached_train[i] for i in idx]
        batch = {"image": torch.stack([it["image"] for it in items]).to(self.device),
                 "image_idx": torch.tensor(idx, dtype=torch.long)}
        if "mask" in items[0]:
            batch["mask"] = torch.stack([it["mask"] for it in items]).to(self.device)
        # The cameras stay on the host: the model copies the two tensors it renders with without waiting (a
        # blocking copy, or reading a size back from the GPU, drains its queue every step; see FF3RModel.get_outputs).
        cameras = self.train_cameras[torch.tensor(idx)]
        cameras.metadata = {"cam_idx": idx}
        return cameras, batch

    def _next_train_index(self) -> int:
        # nerfstudio's order: a fresh shuffled pass over the training images whenever one is used up.
        image_idx = self.train_unseen_cameras.pop(0)
        if not self.train_unseen_cameras:
            self.train_unseen_cameras = self.sample_train_cameras()
        return image_idx

    def training_images(self) -> torch.Tensor:
        """``[S, H, W, 3]`` float in [0, 1]: every training image, in dataset order (alpha composited on black)."""
        images = []
        for item in self.cached_train:
            im = item["image"]
            im = im.float() / 255.0 if im.dtype == torch.uint8 else im.float()
            if im.shape[-1] == 4:
                im = im[..., :3] * im[..., 3:]
            images.append(im)
        return torch.stack(images).to(self.device)
