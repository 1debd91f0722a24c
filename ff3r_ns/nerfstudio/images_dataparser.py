"""``images-data``: a folder of photos or a video, with **no camera poses**.

FF3R predicts the cameras itself, so this dataparser only has to deliver clean, same-sized RGB images and
a first guess of the intrinsics. What it does, in order:

1. **Inputs.** A folder: every ``.jpg/.jpeg/.png/.bmp/.tif/.tiff/.webp/.pgm/.ppm`` directly inside it, in natural
   order of the file name (``img2`` before ``img10``). A video file: its frames, decoded with PyAV (a
   nerfstudio dependency), rotated by the stream's display matrix (phone videos).
2. **Reading.** EXIF orientation is applied (``PIL.ImageOps.exif_transpose``); grayscale is replicated to
   RGB and RGBA / palette transparency is composited on **black** (the model's background; both are said
   in a log line). Files PIL cannot decode are skipped with a warning naming them; nothing usable left is
   an error.
3. **Subsampling.** At most ``max_images`` frames are kept: ``"even"`` spacing over the sequence, or
   ``"difference"``: evenly spaced in the cumulative mean absolute difference of small grayscale
   thumbnails, so that static stretches of a video give fewer frames than fast motion. One log line
   says what was kept.
4. **One size.** Every frame gets the first kept frame's size (longest side capped at ``max_side``).
   A frame of another size is centre-cropped to that aspect ratio and resized (pixels stay square, the
   borders are lost), with a warning naming it.
5. **Intrinsics.** From the EXIF 35 mm-equivalent focal length when present, by the diagonal definition
   (CIPA DC-008: the 35 mm frame's diagonal is 43.27 mm), ``f_px = f35 * diag_px / 43.27``, which does not
   depend on the EXIF rotation; otherwise a ``default_hfov_deg`` horizontal field-of-view guess (60 deg:
   a phone's main camera is ~65-70 deg, a webcam ~60 deg). Principal point at the image centre.
6. **Placeholder poses.** Every camera-to-world matrix is the identity (all cameras at the origin, looking
   down -z in nerfstudio's OpenGL convention): obviously not a reconstruction, and nothing downstream may
   read geometry into it. ``metadata["poses_are_placeholders"] = True`` tells the model to use its own
   predicted cameras instead.

The processed frames are written as PNGs to a cache folder **outside** the dataset
(``$XDG_CACHE_HOME/ff3r_ns/images-data/<name>-<hash>/``, or ``cache_dir``), keyed by the inputs' names,
sizes and modification times and the settings. nerfstudio reads them from there; a second call
(the eval split, ``ns-export`` re-creating the datamanager) reuses them. The dataset folder is never
written to.

Split: ``eval_mode="all"`` (default) trains on every frame and evaluates on the same frames (there are no
reference poses to evaluate held-out views against); ``"interval"`` holds out every ``eval_interval``-th
frame (indices ``k-1, 2k-1, ...``, so the first frame stays a training view).

Example::

    ns-train ff3r-tiny --data photos/ images-data --max-images 24
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Literal, Optional, Tuple, Type

import numpy as np
import torch
from PIL import Image, ImageOps

from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.plugins.registry_dataparser import DataParserSpecification
from nerfstudio.utils.rich_utils import CONSOLE

from ff3r_ns.data.images import to_rgb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".gif")
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)  # 43.27 mm, the 35 mm film frame
EXIF_IFD = 0x8769
EXIF_FOCAL_35MM = 0xA405
THUMB = (32, 24)  # thumbnail size for the image-difference criterion
CACHE_VERSION = 1


class ImagesDataWarning(UserWarning):
    """A problem with the input that was worked around (skipped or resized file)."""


class ImagesDataError(ValueError):
    """Input that cannot be used at all; the message names the path and the problem."""


@dataclass
class ImagesDataParserConfig(DataParserConfig):
    """Unposed images (a folder of photos, or a video file); see the module docstring."""

    _target: Type = field(default_factory=lambda: ImagesDataParser)
    data: Path = Path()
    """A folder of images, or a video file."""
    max_images: int = 48
    """Keep at most this many frames (0 keeps all)."""
    subsample: Literal["even", "difference"] = "even"
    """How to choose frames from a longer sequence: evenly spaced, or evenly spaced in image change."""
    max_side: int = 1600
    """Longest side of the cached frames in pixels (0 keeps the first frame's size); the network itself
    reads a few hundred pixels, so full-size phone photos would only cost memory."""
    default_hfov_deg: float = 60.0
    """Horizontal field of view assumed for frames without an EXIF 35 mm focal length."""
    eval_mode: Literal["all", "interval"] = "all"
    """"all": every frame trains and evaluates; "interval": every eval_interval-th frame is held out."""
    eval_interval: int = 8
    """Hold-out interval for eval_mode="interval"."""
    cache_dir: Optional[Path] = None
    """Where processed frames go (default $XDG_CACHE_HOME/ff3r_ns/images-data); never inside the data."""


@dataclass
class Frame:
    """One usable input frame after the first (thumbnail) pass.

    Attributes:
        name: file name (folder) or ``frame_<index>`` (video).
        size: ``(width, height)`` after EXIF rotation.
        focal_35mm: EXIF 35 mm-equivalent focal length in mm, or None.
        thumb: ``[24, 32]`` float grayscale thumbnail in [0, 1].
    """

    name: str
    size: Tuple[int, int]
    focal_35mm: Optional[float]
    thumb: np.ndarray


# --------------------------------------------------------------------------- inputs
def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value (``img2`` < ``img10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def list_images(folder: Path) -> List[Path]:
    """Image files directly inside ``folder``, naturally sorted."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))


def looks_unposed(data: Path) -> bool:
    """True for a video file, or a folder with images but no ``transforms.json`` (what ``images-data`` reads).

    Example::

        if isinstance(cfg.dataparser, NerfstudioDataParserConfig) and looks_unposed(data):
            cfg.dataparser = ImagesDataParserConfig(data=data)
    """
    data = Path(data)
    if is_video(data):
        return True
    return data.is_dir() and not (data / "transforms.json").exists() and len(list_images(data)) > 0


def exif_focal_35mm(im: Image.Image) -> Optional[float]:
    """The EXIF ``FocalLengthIn35mmFilm`` tag in mm, or None when absent or zero."""
    try:
        value = im.getexif().get_ifd(EXIF_IFD).get(EXIF_FOCAL_35MM)
        return float(value) if value else None
    except Exception:  # malformed EXIF must not make a readable photo unusable
        return None


def focal_pixels(width: int, height: int, focal_35mm: Optional[float], default_hfov_deg: float) -> float:
    """Focal length in pixels from a 35 mm-equivalent focal length (diagonal definition), else the FoV guess.

    Example::

        >>> round(focal_pixels(4000, 3000, 26.0, 60.0), 1)  # a phone's 26 mm main camera
        3004.6
    """
    if focal_35mm is not None and focal_35mm > 0:
        return focal_35mm * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM
    return (width / 2.0) / math.tan(math.radians(default_hfov_deg) / 2.0)


def _thumb(gray: Image.Image) -> np.ndarray:
    return np.asarray(gray.resize(THUMB, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


def _open_image(path: Path) -> Tuple[Image.Image, Optional[float]]:
    """Decoded, EXIF-rotated image and its EXIF 35 mm focal length; raises on an unreadable file."""
    with Image.open(path) as im:
        focal = exif_focal_35mm(im)
        im.load()  # decode now: truncated or corrupt data raises here, not later in nerfstudio
        return ImageOps.exif_transpose(im), focal


def scan_folder(paths: List[Path]) -> List[Frame]:
    """First pass over image files: size, focal and thumbnail of each readable one; others are warned about."""
    frames, bad = [], []
    for path in paths:
        try:
            im, focal = _open_image(path)
            frames.append(Frame(path.name, im.size, focal, _thumb(to_rgb(im)[0].convert("L"))))
        except Exception as err:  # PIL raises many types for corrupt files
            bad.append(f"{path.name} ({type(err).__name__}: {err})")
    if bad:
        warnings.warn(f"images-data: skipped {len(bad)} unreadable file(s): " + "; ".join(bad), ImagesDataWarning, stacklevel=2)
    return frames


def _video_frames(path: Path) -> Iterator[Image.Image]:
    """Every frame of the first video stream as an upright RGB PIL image."""
    import av  # a nerfstudio dependency; imported lazily so the plugin loads fast

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            im = frame.to_image()
            # Display-matrix rotation (phone videos), counter-clockwise degrees as ffmpeg's autorotate reads it.
            quarter = int(round(getattr(frame, "rotation", 0) or 0) / 90) % 4
            yield im.rotate(90 * quarter, expand=True) if quarter else im


def scan_video(path: Path) -> List[Frame]:
    """First pass over a video: one :class:`Frame` (with thumbnail) per decoded frame."""
    try:
        frames = [Frame(f"frame_{i:05d}", im.size, None, _thumb(im.convert("L"))) for i, im in enumerate(_video_frames(path))]
    except Exception as err:
        raise ImagesDataError(f"{path}: cannot be decoded as a video ({type(err).__name__}: {err})") from None
    return frames


# --------------------------------------------------------------------------- subsampling
def select_frames(thumbs: List[np.ndarray], max_images: int, mode: Literal["even", "difference"]) -> List[int]:
    """Indices (increasing) of at most ``max_images`` frames; the first and last frames are always kept.

    Args:
        thumbs: one ``[h, w]`` grayscale thumbnail per frame (only read for ``mode="difference"``).
        max_images: the most frames to keep (``<= 0`` keeps all).
        mode: ``"even"`` spacing in frame index, or ``"difference"``: even spacing in the cumulative mean
            absolute thumbnail difference (frames where the view changes fast are kept more densely).
    """
    n = len(thumbs)
    if max_images <= 0 or n <= max_images:
        return list(range(n))
    if max_images == 1:
        return [0]
    if mode == "even":
        position = np.arange(n, dtype=np.float64)
    elif mode == "difference":
        step = np.array([np.abs(thumbs[i] - thumbs[i - 1]).mean() for i in range(1, n)], dtype=np.float64)
        # A small floor keeps a frozen video from collapsing every pick onto one frame.
        step = step + 1e-3 * max(step.mean(), 1e-6)
        position = np.concatenate([[0.0], np.cumsum(step)])
    else:
        raise ValueError(f"subsample must be 'even' or 'difference', got {mode!r}")
    targets = np.linspace(0.0, position[-1], max_images)
    picks = np.clip(np.searchsorted(position, targets), 0, n - 1)
    # Nearest of the two neighbours, then de-duplicate (keeps the result increasing).
    left = np.clip(picks - 1, 0, n - 1)
    picks = np.where(np.abs(position[left] - targets) <= np.abs(position[picks] - targets), left, picks)
    return sorted(set(int(i) for i in picks))


def _describe_selection(names: List[str], kept: List[int], mode: str) -> str:
    n = len(names)
    if len(kept) == n:
        return f"images-data: using all {n} frames ({names[0]} .. {names[-1]})"
    shown = ", ".join(names[i] for i in kept[:4]) + (f", ... {names[kept[-1]]}" if len(kept) > 4 else "")
    how = f"evenly spaced, about every {n / len(kept):.1f}th" if mode == "even" else "evenly spaced in image change"
    return f"images-data: kept {len(kept)} of {n} frames ({how}; raise --max-images to keep more): {shown}"


# --------------------------------------------------------------------------- one size
def fit_to(im: Image.Image, size: Tuple[int, int]) -> Tuple[Image.Image, float]:
    """Centre-crop ``im`` to the aspect ratio of ``size`` and resize to it; returns the image and the resize factor."""
    w, h = im.size
    tw, th = size
    if (w, h) == (tw, th):
        return im, 1.0
    if w * th > h * tw:  # too wide: crop the sides
        cw, ch = max(1, round(h * tw / th)), h
    else:
        cw, ch = w, max(1, round(w * th / tw))
    left, top = (w - cw) // 2, (h - ch) // 2
    im = im.crop((left, top, left + cw, top + ch))
    return im.resize((tw, th), Image.Resampling.LANCZOS), tw / cw


def target_size(size: Tuple[int, int], max_side: int) -> Tuple[int, int]:
    w, h = size
    if max_side <= 0 or max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


# --------------------------------------------------------------------------- cache
def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ff3r_ns" / "images-data"


def _cache_key(data: Path, config: ImagesDataParserConfig) -> str:
    h = hashlib.sha1()
    files = [data] if data.is_file() else list_images(data)
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(f"v{CACHE_VERSION}|{config.max_images}|{config.subsample}|{config.max_side}|{config.default_hfov_deg}".encode())
    return h.hexdigest()[:16]


@dataclass
class CachedFrames:
    """The processed frames: PNG paths (all ``width`` x ``height``), focal lengths and source names."""

    paths: List[Path]
    focals: List[float]
    source_names: List[str]
    width: int
    height: int


def build_frames(data: Path, config: ImagesDataParserConfig, out: Path) -> CachedFrames:
    """Read, subsample, normalise and write the frames of ``data`` into the (new) folder ``out``."""
    video = data.is_file()
    frames = scan_video(data) if video else scan_folder(list_images(data))
    if not frames:
        what = "decodable video frames" if video else f"readable images ({', '.join(IMAGE_SUFFIXES)})"
        raise ImagesDataError(f"{data}: no {what} left to reconstruct from")
    kept = select_frames([f.thumb for f in frames], config.max_images, config.subsample)
    CONSOLE.log(_describe_selection([f.name for f in frames], kept, config.subsample))

    opener: Callable[[int], Tuple[Image.Image, Optional[float]]]
    if video:
        wanted, images = set(kept), {}
        for i, im in enumerate(_video_frames(data)):
            if i in wanted:
                images[i] = im
        opener = lambda i: (images[i], None)  # noqa: E731
    else:
        opener = lambda i: _open_image(data / frames[i].name)  # noqa: E731

    size = target_size(frames[kept[0]].size, config.max_side)
    kinds: dict[str, list[str]] = {"gray": [], "alpha": []}
    refit, n_exif = [], 0
    paths, focals = [], []
    for j, i in enumerate(kept):
        im, focal35 = opener(i)
        rgb, kind = to_rgb(im)
        if kind in kinds:
            kinds[kind].append(frames[i].name)
        focal = focal_pixels(rgb.width, rgb.height, focal35, config.default_hfov_deg)
        n_exif += focal35 is not None
        if j > 0 and target_size(rgb.size, config.max_side) != size:
            refit.append(f"{frames[i].name} ({rgb.width}x{rgb.height})")
        rgb, factor = fit_to(rgb, size)
        path = out / f"frame_{j:05d}.png"
        rgb.save(path, compress_level=1)
        paths.append(path)
        focals.append(focal * factor)
    if refit:
        warnings.warn(
            f"images-data: {len(refit)} frame(s) differ in size from the first ({size[0]}x{size[1]}) and were "
            "centre-cropped to its aspect ratio and resized to it: " + "; ".join(refit),
            ImagesDataWarning,
            stacklevel=2,
        )
    if kinds["gray"]:
        CONSOLE.log(f"images-data: {len(kinds['gray'])} grayscale frame(s) replicated to RGB: {', '.join(kinds['gray'][:5])}")
    if kinds["alpha"]:
        CONSOLE.log(f"images-data: {len(kinds['alpha'])} frame(s) with transparency composited on black: {', '.join(kinds['alpha'][:5])}")
    guess = len(kept) - n_exif
    CONSOLE.log(
        f"images-data: {len(kept)} frames of {size[0]}x{size[1]}; focal length from EXIF (35 mm equivalent) for {n_exif}, "
        + (f"a {config.default_hfov_deg:g} deg horizontal field-of-view guess for {guess}" if guess else "none guessed")
        + "; poses are placeholders (the model predicts them)"
    )
    return CachedFrames(paths, focals, [frames[i].name for i in kept], size[0], size[1])


def load_or_build(data: Path, config: ImagesDataParserConfig) -> CachedFrames:
    """The processed frames for ``data``, from the cache when its inputs and settings are unchanged."""
    root = (config.cache_dir or default_cache_root()).expanduser().resolve()
    data_abs = data.resolve()
    if data_abs.is_dir() and (root == data_abs or data_abs in root.parents):
        raise ImagesDataError(f"cache_dir {root} is inside the dataset folder {data_abs}; images-data never writes there")
    folder = root / f"{data_abs.stem or 'data'}-{_cache_key(data_abs, config)}"
    manifest = folder / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        paths = [folder / f for f in m["files"]]
        if all(p.is_file() for p in paths):
            CONSOLE.log(f"images-data: {len(paths)} processed frames from the cache {folder}")
            return CachedFrames(paths, m["focals"], m["source_names"], m["width"], m["height"])
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        frames = build_frames(data_abs, config, tmp)
        record = {"files": [p.name for p in frames.paths], "focals": frames.focals, "source_names": frames.source_names,
                  "width": frames.width, "height": frames.height, "source": str(data_abs)}
        (tmp / "manifest.json").write_text(json.dumps(record, indent=1))
        if folder.exists():  # a stale or half-written cache entry
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return CachedFrames([folder / p.name for p in frames.paths], frames.focals, frames.source_names, frames.width, frames.height)


# --------------------------------------------------------------------------- the dataparser
def split_indices(n: int, eval_mode: str, eval_interval: int, split: str) -> List[int]:
    """Frame indices of ``split`` (see the module docstring for the two modes)."""
    if eval_mode == "all":
        return list(range(n))
    if eval_mode != "interval":
        raise ValueError(f"eval_mode must be 'all' or 'interval', got {eval_mode!r}")
    if eval_interval < 2:
        raise ValueError(f"eval_interval must be >= 2, got {eval_interval}")
    held_out = [i for i in range(n) if i % eval_interval == eval_interval - 1]
    if not held_out:
        raise ImagesDataError(f"eval_interval={eval_interval} holds out no frame of {n}; lower it or use eval_mode='all'")
    return held_out if split != "train" else [i for i in range(n) if i % eval_interval != eval_interval - 1]


class ImagesDataParser(DataParser):
    """Unposed frames with placeholder cameras (see the module docstring)."""

    config: ImagesDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        data = Path(self.config.data)
        if not data.exists():
            raise ImagesDataError(f"{data}: no such file or directory")
        if data.is_file() and not is_video(data):
            raise ImagesDataError(f"{data}: not a folder of images nor a video ({', '.join(VIDEO_SUFFIXES)})")
        frames = load_or_build(data, self.config)
        idx = split_indices(len(frames.paths), self.config.eval_mode, self.config.eval_interval, split)
        n = len(idx)
        focal = torch.tensor([frames.focals[i] for i in idx], dtype=torch.float32)[:, None]
        cameras = Cameras(
            camera_to_worlds=torch.eye(4)[:3, :].expand(n, 3, 4).clone(),
            fx=focal,
            fy=focal.clone(),
            cx=torch.full((n, 1), frames.width / 2.0),
            cy=torch.full((n, 1), frames.height / 2.0),
            width=torch.full((n, 1), frames.width, dtype=torch.int64),
            height=torch.full((n, 1), frames.height, dtype=torch.int64),
            camera_type=CameraType.PERSPECTIVE,
            metadata={},  # ns-export cameras asserts a metadata dict (it adds cam_idx for the camera optimizer)
        )
        return DataparserOutputs(
            image_filenames=[frames.paths[i] for i in idx],
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])),
            metadata={
                "poses_are_placeholders": True,
                "frame_indices": idx,
                "source_names": [frames.source_names[i] for i in idx],
                "source_paths": [source_path(data, frames.source_names[i]) for i in idx],
            },
        )


def source_path(data: Path, name: str) -> Path:
    """The user's own file a processed frame came from: ``data/name`` for a folder, ``video#frame_00012`` for a
    video (the frame's index in the stream)."""
    data = Path(data).resolve()
    return Path(f"{data}#{name}") if data.is_file() else data / name


class ImagesDataset(InputDataset):
    """nerfstudio's ``InputDataset`` whose ``image_filenames`` name the user's own files (what ``ns-export cameras``
    writes next to each pose), while the pixels are read from the processed copies in the cache."""

    @property
    def image_filenames(self) -> List[Path]:
        return list(self.metadata.get("source_paths") or self._dataparser_outputs.image_filenames)


images_dataparser = DataParserSpecification(
    config=ImagesDataParserConfig(),
    description="Unposed photos (a folder, any mix of colour/grayscale, EXIF orientation) or a video; FF3R predicts the cameras.",
)
