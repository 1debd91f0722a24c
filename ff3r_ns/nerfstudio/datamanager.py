"""Full-image datamanager that checks its input first and fails with one clear line.

nerfstudio's own errors for a missing folder, an unreadable image or images of different sizes are
assertion tracebacks from deep inside the dataparser or the image cache. :func:`check_nerfstudio_data`
runs before any of that and raises :class:`DataError` naming the file and the problem;
:class:`FF3RDataManager` turns it into ``SystemExit("ff3r: error: ...")`` (exit status 1, one line,
no traceback) before anything is trained or saved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Type, Union

import torch
from PIL import Image

from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig
from nerfstudio.data.dataparsers.base_dataparser import DataParserConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig


class DataError(ValueError):
    """Unusable input data; the message is one line that names the file and the problem."""


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
    meta_path = data if data.suffix == ".json" else data / "transforms.json"
    root = meta_path.parent
    if not meta_path.exists():
        images = [p for p in root.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")] if root.is_dir() else []
        hint = "it holds no images either" if not images else "it holds images but no camera file"
        raise DataError(f"{meta_path}: not found ({hint}); expected a nerfstudio-data folder with transforms.json")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{meta_path}: cannot be parsed as JSON ({err})") from None
    frames = meta.get("frames") or []
    if not frames:
        raise DataError(f"{meta_path}: lists no frames (no images to reconstruct from)")
    if not open_images:
        return
    first: Optional[tuple[int, int]] = None
    for frame in frames:
        if "file_path" not in frame:
            raise DataError(f"{meta_path}: a frame has no file_path")
        path = _frame_image_path(root, frame)
        if not path.is_file():
            raise DataError(f"{path}: image listed in {meta_path.name} does not exist")
        try:
            with Image.open(path) as im:
                im.verify()
            with Image.open(path) as im:  # verify() leaves the file unusable; reopen to decode the pixels
                im.load()
                size = im.size
        except Exception as err:  # PIL raises many types for corrupt files
            raise DataError(f"{path}: unreadable image ({type(err).__name__}: {err})") from None
        declared = (frame.get("w", meta.get("w")), frame.get("h", meta.get("h")))
        if None not in declared and tuple(int(v) for v in declared) != size:
            raise DataError(f"{path}: image is {size[0]}x{size[1]} but {meta_path.name} declares {declared[0]}x{declared[1]}")
        if first is None:
            first = size
        elif size != first:
            raise DataError(f"{path}: image is {size[0]}x{size[1]}, the first image is {first[0]}x{first[1]}; all views must share one size")


@dataclass
class FF3RDataManagerConfig(FullImageDatamanagerConfig):
    """Full images, cached on the model's device (``"gpu"`` means the model's device, also on CPU)."""

    _target: Type = field(default_factory=lambda: FF3RDataManager)
    dataparser: DataParserConfig = field(default_factory=lambda: NerfstudioDataParserConfig(downscale_factor=1))
    """Dataparser; downscale_factor=1 so that nerfstudio never writes downscaled copies into the dataset folder."""
    cache_images: Literal["cpu", "gpu"] = "gpu"
    """Where images are cached: "gpu" = the model's device (works on CPU); "cpu" pins memory, which needs CUDA."""


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
            try:
                check_nerfstudio_data(data, open_images=test_mode != "inference")
            except DataError as err:
                raise SystemExit(f"ff3r: error: {err}") from None
        super().__init__(config, device=device, test_mode=test_mode, world_size=world_size, local_rank=local_rank, **kwargs)

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
