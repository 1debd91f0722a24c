"""Photos -> 8-bit RGB, whatever their mode (grey, 16-bit grey, paletted, alpha). No nerfstudio import.

Shared by the ``images-data`` dataparser (unposed photo folders) and :func:`ff3r_ns.nerfstudio.scene.load_scene`
(training scenes), so both read the same pixels from the same file.
"""

from __future__ import annotations

import os
from typing import Tuple

import numpy as np
from PIL import Image


def to_rgb(im: Image.Image) -> Tuple[Image.Image, str]:
    """Any PIL image -> 8-bit RGB, and what was done: ``"rgb"``, ``"gray"`` (replicated) or ``"alpha"`` (composited on black)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale PNG / TIFF
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB"), "gray"
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("L", "1", "F"):
        return im.convert("L").convert("RGB"), "gray"
    if im.mode in ("LA", "RGBA", "PA", "La", "RGBa"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        if (rgba[..., 3] < 1.0).any():
            rgb = rgba[..., :3] * rgba[..., 3:]
            kind = "alpha"
        else:
            rgb, kind = rgba[..., :3], ("gray" if im.mode.startswith("L") else "rgb")
        return Image.fromarray((rgb * 255.0 + 0.5).astype(np.uint8)), kind
    return im.convert("RGB"), "rgb"


def read_rgb_float(path: "str | os.PathLike[str]") -> np.ndarray:
    """``[H, W, 3]`` float32 in [0, 1] of the image at ``path`` (through :func:`to_rgb`)."""
    with Image.open(path) as im:
        return np.asarray(to_rgb(im)[0], dtype=np.float32) / 255.0
