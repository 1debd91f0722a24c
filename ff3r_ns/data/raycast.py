"""Exact ray casting of a :class:`~ff3r_ns.data.primitives.Scene`: colour, z-depth and class labels.

One ray per pixel, through the pixel centre (``+0.5``, the convention of
:func:`ff3r_ns.core.cameras.pixel_grid`), so depth and labels are exact at every pixel centre and
unprojecting a depth map with ``ff3r_ns.core.cameras.unproject_depth`` gives points *on* the
surfaces. Shading is ambient + Lambertian from point lights with hard shadows (one shadow ray per
light per pixel). Everything is vectorised numpy in float64 on the CPU.

Example:
    >>> out = render_view(scene, w2c, K, 64, 48)   # scene from ff3r_ns.data.layout
    >>> out.rgb.shape, out.depth.shape, out.labels.dtype
    ((48, 64, 3), (48, 64), dtype('uint8'))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .primitives import EPS, Scene, intersect_part, intersect_room, safe_inverse, slab_interval, to_local
from .textures import albedo

NUM_ROOM_FACES = 6
"""Primitive ids ``0..5`` are the room's faces; id ``6 + i`` is ``scene.parts[i]``."""


@dataclass
class ViewRender:
    """One rendered view.

    Attributes:
        rgb: ``[H, W, 3]`` float32 in [0, 1].
        depth: ``[H, W]`` float32 z-depth in metres.
        labels: ``[H, W]`` uint8 class ids.
    """

    rgb: np.ndarray
    depth: np.ndarray
    labels: np.ndarray


@dataclass
class Hits:
    """Nearest hits of ``N`` rays.

    Attributes:
        t: ``[N]`` ray parameter of the hit (z-depth for camera rays with unit z).
        normal: ``[N, 3]`` unit world normals facing the ray.
        prim: ``[N]`` primitive ids (see :data:`NUM_ROOM_FACES`).
    """

    t: np.ndarray
    normal: np.ndarray
    prim: np.ndarray


class _Accel:
    """Culling for rays that share one origin (a camera centre, or a light for shadow rays).

    Each object has a bounding sphere and a bounding box. A ray tests an object's parts only if its
    direction falls in the cone the sphere subtends from the origin (one dot product per ray), then
    only if it crosses the box before its current nearest hit: a one-level bounding-volume hierarchy.
    """

    def __init__(self, scene: Scene) -> None:
        self.parts = scene.parts
        self.groups: list[tuple[np.ndarray, np.ndarray, np.ndarray, float, list[int]]] = []
        i = 0
        for obj in scene.objects:
            lo, hi = obj.bounds()
            lo, hi = lo - 1e-6, hi + 1e-6
            self.groups.append((lo, hi, (lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2), list(range(i, i + len(obj.parts)))))
            i += len(obj.parts)

    def _candidates(self, origin: np.ndarray, unit: np.ndarray, inv: np.ndarray, group: tuple, t_max: np.ndarray | float) -> np.ndarray:
        """Indices of rays that may hit ``group`` before ``t_max`` (a superset of the true hits)."""
        lo, hi, center, radius, _ = group
        v = center - origin
        dist = float(np.linalg.norm(v))
        if dist > radius:  # outside the sphere: keep the rays inside its cone
            cos_half = np.sqrt(1.0 - (radius / dist) ** 2)
            cand = np.nonzero(unit @ (v / dist) >= cos_half - 1e-9)[0]
        else:
            cand = np.arange(len(unit))
        if cand.size == 0:
            return cand
        t0, t1 = slab_interval(origin, inv[cand], lo, hi)
        limit = t_max[cand] if isinstance(t_max, np.ndarray) else t_max
        return cand[(t0 <= t1) & (t1 > EPS) & (t0 < limit)]

    def nearest(self, origin: np.ndarray, d: np.ndarray, t: np.ndarray, n: np.ndarray, prim: np.ndarray) -> None:
        """Lower ``t`` (and update ``n``, ``prim``) in place wherever a part is hit earlier."""
        inv = safe_inverse(d)
        unit = d / np.linalg.norm(d, axis=1, keepdims=True)
        for group in self.groups:
            cand = self._candidates(origin, unit, inv, group, t)
            if cand.size == 0:
                continue
            oc, dc = np.broadcast_to(origin, (cand.size, 3)), d[cand]
            for pid in group[4]:
                tp, np_ = intersect_part(self.parts[pid], oc, dc)
                better = tp < t[cand]
                if better.any():
                    idx = cand[better]
                    t[idx], n[idx], prim[idx] = tp[better], np_[better], NUM_ROOM_FACES + pid

    def blocked(self, origin: np.ndarray, d: np.ndarray, t_max: float = 1.0) -> np.ndarray:
        """``[N]`` True where a part is entered with ``EPS < t < t_max`` (shadow rays from a light)."""
        out = np.zeros(len(d), dtype=bool)
        inv = safe_inverse(d)
        unit = d / np.linalg.norm(d, axis=1, keepdims=True)
        for group in self.groups:
            cand = self._candidates(origin, unit, inv, group, t_max)
            cand = cand[~out[cand]]
            for pid in group[4]:
                if cand.size == 0:
                    break
                tp, _ = intersect_part(self.parts[pid], np.broadcast_to(origin, (cand.size, 3)), d[cand])
                hit = tp < t_max
                out[cand[hit]] = True
                cand = cand[~hit]
        return out


def trace(scene: Scene, origin: np.ndarray, d: np.ndarray, accel: _Accel | None = None) -> Hits:
    """Nearest surface along rays from one point inside the room.

    Args:
        scene: the scene.
        origin: ``[3]`` common ray origin (a camera centre), inside the room and outside all objects.
        d: ``[N, 3]`` ray directions.
        accel: a prebuilt acceleration structure for ``scene`` (built when omitted).

    Returns:
        :class:`Hits`; every ray hits something because the room is closed.
    """
    accel = accel or _Accel(scene)
    origin = np.asarray(origin, dtype=np.float64)
    t, n, face = intersect_room(scene.room, origin, d)
    prim = face.astype(np.int64)
    accel.nearest(origin, d, t, n, prim)
    return Hits(t, n, prim)


def labels_of(scene: Scene, prim: np.ndarray) -> np.ndarray:
    """Class ids ``[N]`` (uint8) of primitive ids ``[N]``."""
    table = np.array(list(scene.room.face_labels) + [p.label for p in scene.parts], dtype=np.uint8)
    return table[prim]


def shade(scene: Scene, p: np.ndarray, n: np.ndarray, prim: np.ndarray, shadows: bool, accel: _Accel) -> np.ndarray:
    """Lit colour ``[N, 3]`` of surface points ``p`` with normals ``n`` on primitives ``prim``."""
    col = np.zeros_like(p)
    emission = np.zeros(len(p))
    parts = scene.parts
    for pid in np.unique(prim):
        m = prim == pid
        if pid < NUM_ROOM_FACES:
            material = scene.room.face_materials[pid]
            col[m] = albedo(material, p[m])
        else:
            part = parts[pid - NUM_ROOM_FACES]
            material = part.material
            local, _ = to_local(part, p[m], p[m])
            col[m] = albedo(material, local)
        emission[m] = material.emission
    light = (scene.ambient + emission)[:, None] * np.ones(3)
    lifted = p + 1e-4 * n  # just off the surface, so a shadow ray does not stop at its own primitive
    for lt in scene.lights:
        pos = np.asarray(lt.position, dtype=np.float64)
        to_light = pos - lifted
        dist = np.linalg.norm(to_light, axis=1)
        ndl = np.maximum((n * to_light).sum(1) / dist, 0.0)
        if shadows:
            # Shadow rays run from the light to the (lifted) point, so they share one origin.
            idx = np.nonzero(ndl > 0)[0]
            vis = np.zeros(len(p), dtype=bool)
            vis[idx] = ~accel.blocked(pos, lifted[idx] - pos, 1.0)
            ndl = ndl * vis
        falloff = 1.0 / (1.0 + (dist / 3.0) ** 2)  # soft inverse-square: rooms stay lit at the far wall
        light += (ndl * falloff)[:, None] * np.asarray(lt.color)[None]
    return np.clip(col * light, 0.0, 1.0)


def camera_rays(w2c: np.ndarray, k: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """World rays through pixel centres with unit camera-z direction component.

    Args:
        w2c: ``[4, 4]`` OpenCV world-to-camera.
        k: ``[3, 3]`` intrinsics.
        width, height: image size.

    Returns:
        the camera centre ``o [3]`` and ``d [H*W, 3]`` (row-major pixel order); ``o + t d`` is at
        z-depth ``t``.
    """
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    cam = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    r_c2w = w2c[:3, :3].T
    return -r_c2w @ w2c[:3, 3], cam @ r_c2w.T


# One pinhole view: scene, pose, intrinsics, size, and the shadow and acceleration options.
def render_view(scene: Scene, w2c: np.ndarray, k: np.ndarray, width: int, height: int, shadows: bool = True, accel: _Accel | None = None) -> ViewRender:
    """Render one pinhole view.

    Args:
        scene: the scene.
        w2c: ``[4, 4]`` OpenCV world-to-camera (camera inside the room).
        k: ``[3, 3]`` intrinsics in pixels.
        width, height: image size.
        shadows: cast one shadow ray per light and pixel.
        accel: a prebuilt acceleration structure (reuse it across views of one scene).

    Returns:
        :class:`ViewRender` with colour, z-depth and labels.
    """
    accel = accel or _Accel(scene)
    o, d = camera_rays(np.asarray(w2c, np.float64), np.asarray(k, np.float64), width, height)
    hits = trace(scene, o, d, accel)
    p = o[None] + hits.t[:, None] * d
    rgb = shade(scene, p, hits.normal, hits.prim, shadows, accel)
    return ViewRender(
        rgb=rgb.reshape(height, width, 3).astype(np.float32),
        depth=hits.t.reshape(height, width).astype(np.float32),
        labels=labels_of(scene, hits.prim).reshape(height, width),
    )


def make_accel(scene: Scene) -> _Accel:
    """Build the per-object bounding boxes once for many :func:`render_view` calls."""
    return _Accel(scene)
