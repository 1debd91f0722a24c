"""Seeded synthetic indoor scenes, rendered exactly by ray casting, and their nerfstudio-data writer.

:func:`generate_scene` builds a room (walls, floor, ceiling, furniture of the protocol's classes,
procedural textures, point lights) from ``SceneSpec.seed`` and renders ``num_views`` views along a
smooth camera path: colour, exact z-depth and exact class labels at every pixel centre.

:func:`write_scene` writes a **nerfstudio-data** folder::

    transforms.json          camera_model "OPENCV", fl_x fl_y cx cy w h (k1..p2 = 0),
                             ply_file_path, classes (names in id order), ff3r_scene (the spec),
                             frames[i]: file_path, transform_matrix (OpenGL camera-to-world),
                                        depth_file_path, semantic_path
    images/frame_00000.png   8-bit RGB
    depth/frame_00000.png    16-bit grayscale PNG, depth in **millimetres** (z-depth, along the
                             optical axis). nerfstudio's default ``depth_unit_scale_factor=1e-3``
                             turns it into metres; quantisation error <= 0.5 mm, range <= 65.535 m.
    labels/frame_00000.png   8-bit grayscale PNG of class ids (0 = ignore, see ``classes``)
    points.ply               binary little-endian PLY: x y z (float), red green blue (uchar),
                             points on the visible surfaces (splatfacto's initial points)

The world frame is z-up with the floor at ``z = 0`` and the room centred on the origin; metres.

Determinism: the same spec gives byte-identical files. The room, its materials and lights depend
only on ``seed``; the furniture layout on ``seed`` and ``trajectory`` (objects keep clear of the
camera path); ``num_views``, image size and field of view only change where the path is sampled.

Example:
    >>> views = generate_scene(SceneSpec(seed=3, num_views=8, width=64, height=48))
    >>> views.images.shape, views.depth.dtype, views.labels.max() <= 8
    ((8, 48, 64, 3), dtype('float32'), True)
    >>> write_scene(views, Path("scenes/seed3"), SceneSpec(seed=3, num_views=8, width=64, height=48))
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np
from PIL import Image

from .furniture import CLASSES
from .primitives import Scene
from .layout import place_furniture, sample_lights, sample_room
from .raycast import make_accel, render_view
from .trajectory import TRAJECTORIES, CameraPath, look_at, make_path, pinhole

if TYPE_CHECKING:
    from ff3r_ns.core.cameras import Cameras

GENERATOR_VERSION = "1.0"
"""Bumped whenever the same spec would render different pixels."""

# Independent random streams, so that e.g. a change of trajectory does not change the room.
_STREAM_ROOM, _STREAM_PATH, _STREAM_LAYOUT, _STREAM_LIGHTS, _STREAM_POINTS = range(5)


@dataclass
class SceneSpec:
    """What to generate.

    Attributes:
        seed: selects the room, its furniture, materials, lights and camera path.
        num_views: number of rendered views along the path.
        width: image width in pixels.
        height: image height in pixels.
        trajectory: ``"orbit"`` (ellipse around the centre, looking inwards) or ``"walk"``
            (a smooth walk-through looking ahead and partly inwards).
        fov_deg: horizontal field of view in degrees (square pixels, centred principal point).
        arc: fraction of a full loop the path covers (1.0: a closed orbit; smaller: the views
            are closer together).
        shadows: hard shadows from the point lights (one shadow ray per light and pixel).
    """

    seed: int = 0
    num_views: int = 24
    width: int = 256
    height: int = 256
    trajectory: str = "orbit"
    fov_deg: float = 65.0
    arc: float = 1.0
    shadows: bool = True

    def __post_init__(self) -> None:
        if self.num_views < 1:
            raise ValueError(f"SceneSpec.num_views must be >= 1, got {self.num_views}")
        if self.width < 8 or self.height < 8:
            raise ValueError(f"SceneSpec: images must be at least 8x8 pixels, got {self.width}x{self.height}")
        if self.trajectory not in TRAJECTORIES:
            raise ValueError(f"SceneSpec.trajectory must be one of {TRAJECTORIES}, got {self.trajectory!r}")
        if not 10.0 <= self.fov_deg <= 150.0:
            raise ValueError(f"SceneSpec.fov_deg must be in [10, 150] degrees, got {self.fov_deg}")
        if not 0.0 < self.arc <= 1.0:
            raise ValueError(f"SceneSpec.arc must be in (0, 1], got {self.arc}")
        if self.seed < 0:
            raise ValueError(f"SceneSpec.seed must be >= 0, got {self.seed}")


@dataclass
class SceneViews:
    """Rendered views of one generated scene, before they are written (numpy, with the generated geometry);
    :func:`write_scene` writes them as nerfstudio-data, which :func:`ff3r_ns.nerfstudio.scene.load_scene` reads back
    as a :class:`~ff3r_ns.nerfstudio.scene.LoadedScene` (torch, any dataset).

    Attributes:
        images: ``[S, H, W, 3]`` float32 in [0, 1].
        depth: ``[S, H, W]`` float32 z-depth in metres (along the optical axis), exact at pixel centres.
        labels: ``[S, H, W]`` uint8 class ids (indices into ``classes``).
        world_to_cam: ``[S, 4, 4]`` float32 OpenCV extrinsics (x right, y down, z forward).
        intrinsics: ``[S, 3, 3]`` float32 in pixels, principal point at the image centre.
        classes: class names in id order (``CLASSES``).
        scene: the generated geometry (room, objects, lights), for inspection.
    """

    images: np.ndarray
    depth: np.ndarray
    labels: np.ndarray
    world_to_cam: np.ndarray
    intrinsics: np.ndarray
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    scene: Optional[Scene] = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def cameras(self) -> "Cameras":
        """The views' cameras as :class:`ff3r_ns.core.cameras.Cameras` (float32 torch tensors)."""
        import torch

        from ff3r_ns.core.cameras import Cameras

        h, w = self.images.shape[1:3]
        return Cameras(torch.from_numpy(self.world_to_cam.copy()), torch.from_numpy(self.intrinsics.copy()), int(w), int(h))


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def build_scene(spec: SceneSpec) -> tuple[Scene, CameraPath]:
    """The scene geometry and camera path of ``spec`` (no rendering)."""
    room = sample_room(_rng(spec.seed, _STREAM_ROOM))
    path = make_path(spec.trajectory, room.size, _rng(spec.seed, _STREAM_PATH), arc=spec.arc)
    path_xy = path.sample(np.linspace(0.0, 1.0, 400))[0][:, :2]
    objects = place_furniture(_rng(spec.seed, _STREAM_LAYOUT), room, path_xy)
    lights, fixtures = sample_lights(_rng(spec.seed, _STREAM_LIGHTS), room)
    return Scene(room, objects + fixtures, lights), path


def generate_scene(spec: SceneSpec, on_view: Optional[Callable[[int], None]] = None) -> SceneViews:
    """Generate and render one scene.

    Args:
        spec: what to generate.
        on_view: called with the view index after each view is rendered (progress bars).

    Returns:
        :class:`SceneViews` with ``spec.num_views`` views of ``spec.width x spec.height``.
    """
    scene, path = build_scene(spec)
    eye, target = path.sample(path.view_params(spec.num_views))
    w2c = look_at(eye, target)
    k = pinhole(spec.width, spec.height, spec.fov_deg)
    accel = make_accel(scene)
    s, h, w = spec.num_views, spec.height, spec.width
    images = np.empty((s, h, w, 3), np.float32)
    depth = np.empty((s, h, w), np.float32)
    labels = np.empty((s, h, w), np.uint8)
    for i in range(s):
        out = render_view(scene, w2c[i], k, w, h, shadows=spec.shadows, accel=accel)
        images[i], depth[i], labels[i] = out.rgb, out.depth, out.labels
        if on_view is not None:
            on_view(i)
    intr = np.broadcast_to(k, (s, 3, 3)).astype(np.float32)
    return SceneViews(images, depth, labels, w2c.astype(np.float32), intr, list(CLASSES), scene)


# --------------------------------------------------------------------------- writer
def sample_points(views: SceneViews, num_points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points on the visible surfaces: unprojected pixels of all views, a seeded subset.

    Args:
        views: rendered views.
        num_points: how many points (all pixels when there are fewer).
        seed: selects the subset.

    Returns:
        ``xyz [P, 3]`` float32 world points and ``rgb [P, 3]`` uint8 colours.
    """
    s, h, w = views.depth.shape
    total = s * h * w
    idx = np.sort(_rng(seed, _STREAM_POINTS).choice(total, size=min(num_points, total), replace=False))
    view, rem = np.divmod(idx, h * w)
    v, u = np.divmod(rem, w)
    k = views.intrinsics.astype(np.float64)[view]
    z = views.depth.reshape(-1).astype(np.float64)[idx]
    cam = np.stack([(u + 0.5 - k[:, 0, 2]) / k[:, 0, 0] * z, (v + 0.5 - k[:, 1, 2]) / k[:, 1, 1] * z, z], 1)
    w2c = views.world_to_cam.astype(np.float64)[view]
    xyz = np.einsum("nji,nj->ni", w2c[:, :3, :3], cam - w2c[:, :3, 3])  # R^T (x_cam - t)
    rgb = np.round(views.images.reshape(-1, 3)[idx] * 255).astype(np.uint8)
    return xyz.astype(np.float32), rgb


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Binary little-endian PLY with ``x y z`` (float) and ``red green blue`` (uchar) vertices."""
    from plyfile import PlyData, PlyElement

    vert = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vert["x"], vert["y"], vert["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    vert["red"], vert["green"], vert["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    PlyData([PlyElement.describe(vert, "vertex")], text=False, byte_order="<").write(str(path))


def _prepare_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a folder")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir} is not empty; pass overwrite=True (--overwrite) to replace the scene in it")
        # Remove only what a previous scene wrote, so a larger old scene leaves no stale frames.
        for sub in ("images", "depth", "labels"):
            for old in sorted((out_dir / sub).glob("frame_*.png")):
                old.unlink()
        for name in ("transforms.json", "points.ply"):
            (out_dir / name).unlink(missing_ok=True)
    for sub in ("images", "depth", "labels"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)


def write_scene(views: SceneViews, out_dir: Path, spec: SceneSpec, num_points: int = 20000, overwrite: bool = False) -> Path:
    """Write ``views`` as a nerfstudio-data folder (layout in the module docstring).

    Args:
        views: rendered views (from :func:`generate_scene`).
        out_dir: target folder; created if missing.
        spec: the spec that produced ``views`` (recorded in ``transforms.json``).
        num_points: points in ``points.ply``.
        overwrite: replace a scene already in ``out_dir``; without it a non-empty folder is refused.

    Returns:
        Path of the written ``transforms.json``.
    """
    import torch

    from ff3r_ns.core.cameras import opencv_w2c_to_opengl_c2w

    out_dir = Path(out_dir)
    if views.depth.max() * 1000.0 > 65535:
        raise ValueError(f"depth up to {views.depth.max():.1f} m does not fit a 16-bit millimetre PNG (max 65.535 m)")
    _prepare_dir(out_dir, overwrite)
    c2w = opencv_w2c_to_opengl_c2w(torch.from_numpy(views.world_to_cam.astype(np.float64))).numpy()
    k = views.intrinsics[0].astype(np.float64)
    s, h, w = views.depth.shape
    frames = []
    for i in range(s):
        name = f"frame_{i:05d}.png"
        Image.fromarray(np.round(np.clip(views.images[i], 0, 1) * 255).astype(np.uint8), "RGB").save(out_dir / "images" / name)
        depth_mm = np.round(views.depth[i].astype(np.float64) * 1000.0).astype(np.uint16)
        Image.fromarray(depth_mm).save(out_dir / "depth" / name)  # mode I;16 -> 16-bit grayscale PNG
        Image.fromarray(views.labels[i], "L").save(out_dir / "labels" / name)
        frames.append(
            {
                "file_path": f"images/{name}",
                "transform_matrix": [[float(x) for x in row] for row in c2w[i]],
                "depth_file_path": f"depth/{name}",
                "semantic_path": f"labels/{name}",
            }
        )
    xyz, rgb = sample_points(views, num_points, seed=spec.seed)
    write_ply(out_dir / "points.ply", xyz, rgb)
    record = {**dataclasses.asdict(spec), "generator_version": GENERATOR_VERSION, "depth_unit": "millimetre"}
    if views.scene is not None:
        record["room_size"] = [float(v) for v in views.scene.room.size]
    meta = {
        "camera_model": "OPENCV",
        "fl_x": float(k[0, 0]),
        "fl_y": float(k[1, 1]),
        "cx": float(k[0, 2]),
        "cy": float(k[1, 2]),
        "w": int(w),
        "h": int(h),
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "ply_file_path": "points.ply",
        "classes": list(views.classes),
        "ff3r_scene": record,
        "frames": frames,
    }
    path = out_dir / "transforms.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path
