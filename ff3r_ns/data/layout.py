"""Random room layouts: room size and materials, lights, and furniture placed without overlaps.

Placement is rejection sampling on oriented footprints: a candidate is kept when its footprint
(a rotated rectangle, padded) overlaps no earlier object whose height range it shares, stays in the
room, and keeps clear of the camera path, so that no camera ends up inside or against furniture.
Big, wall-bound objects go first; chairs are put around tables, facing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import furniture as fu
from .primitives import Light, Room, SceneObject
from .textures import Material

Pose = tuple[float, float, float]
"""``(x, y, yaw)`` of an object's frame in the room."""

PAD = 0.05
"""Gap kept between furniture footprints, metres."""
PATH_CLEARANCE = 0.45
"""Minimum horizontal distance from the camera path to the tall parts of floor-standing objects, metres."""
LOW_TOP = 0.65
"""Parts whose top is below this height (metres) may lie under the camera path (cameras fly >= 1.35 m)."""

WALL_COLORS = [(0.86, 0.84, 0.78), (0.82, 0.84, 0.86), (0.74, 0.80, 0.85), (0.78, 0.84, 0.74), (0.90, 0.85, 0.70), (0.88, 0.80, 0.76)]
CARPETS = [(0.45, 0.45, 0.47), (0.30, 0.35, 0.50), (0.62, 0.55, 0.45), (0.50, 0.30, 0.28)]
TILES = [(0.80, 0.78, 0.74), (0.55, 0.55, 0.56), (0.70, 0.62, 0.52)]


@dataclass(frozen=True)
class Footprint:
    """A padded, oriented floor rectangle with a height range.

    Attributes:
        center: ``(x, y)`` world centre.
        half: ``(hx, hy)`` half extents along the rectangle's own axes.
        yaw: rotation about +z.
        z: ``(z_min, z_max)``.
    """

    center: tuple[float, float]
    half: tuple[float, float]
    yaw: float
    z: tuple[float, float]

    def corners(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        hx, hy = self.half
        local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
        return local @ np.array([[c, s], [-s, c]]) + np.asarray(self.center)

    def axes(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, s], [-s, c]])

    def overlaps(self, other: "Footprint") -> bool:
        """Separating-axis test of the two rectangles, and of the height ranges."""
        if self.z[1] <= other.z[0] or other.z[1] <= self.z[0]:
            return False
        a, b = self.corners(), other.corners()
        for axis in np.concatenate([self.axes(), other.axes()]):
            pa, pb = a @ axis, b @ axis
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
        return True

    def distance(self, pts: np.ndarray) -> np.ndarray:
        """Horizontal distance from points ``[N, 2]`` to the rectangle (0 inside)."""
        local = (pts - np.asarray(self.center)) @ self.axes().T
        out = np.maximum(np.abs(local) - np.asarray(self.half), 0.0)
        return np.linalg.norm(out, axis=1)


def sample_room(rng: np.random.Generator) -> Room:
    """A room of 5-6.5 x 4.2-5.5 x 2.6-3.0 m with painted walls (one accent wall), a floor and a ceiling."""
    size = (float(rng.uniform(5.0, 6.5)), float(rng.uniform(4.2, 5.5)), float(rng.uniform(2.6, 3.0)))
    seed = int(rng.integers(1 << 30))
    base, accent = rng.choice(len(WALL_COLORS), size=2, replace=False)
    style = ["noise", "stripes", "wainscot"][int(rng.integers(3))]
    lower = tuple(float(v) for v in np.asarray(WALL_COLORS[base]) * 0.8)

    def wall(color_idx: int, axis: int) -> Material:
        c = WALL_COLORS[color_idx]
        if style == "stripes":
            return Material("stripes", c, tuple(v * 0.93 for v in c), scale=0.25, axis=axis, seed=seed, grain=0.04)
        if style == "wainscot":
            return Material("wainscot", c, lower, scale=0.9, seed=seed, grain=0.04)
        return Material("noise", c, tuple(v * 0.9 for v in c), scale=0.4, seed=seed, grain=0.05)

    accent_face = int(rng.integers(4))
    walls = [wall(accent if f == accent_face else base, axis=1 if f < 2 else 0) for f in range(4)]
    floor_kind = int(rng.integers(3))
    if floor_kind == 0:
        c = fu.WOODS[int(rng.integers(len(fu.WOODS)))]
        floor = Material("planks", c, tuple(v * 0.75 for v in c), scale=float(rng.uniform(0.12, 0.2)), axis=int(rng.integers(2)), seed=seed + 1)
    elif floor_kind == 1:
        c = TILES[int(rng.integers(len(TILES)))]
        floor = Material("tiles", c, (0.35, 0.35, 0.35), scale=float(rng.uniform(0.3, 0.6)), axis=2, seed=seed + 1)
    else:
        c = CARPETS[int(rng.integers(len(CARPETS)))]
        floor = Material("noise", c, tuple(v * 0.8 for v in c), scale=0.05, seed=seed + 1, grain=0.15)
    ceiling = Material("tiles", (0.94, 0.94, 0.92), (0.75, 0.75, 0.74), scale=0.6, axis=2, seed=seed + 2, grain=0.02)
    labels = (fu.WALL,) * 4 + (fu.FLOOR, fu.CEILING)
    return Room(size, tuple(walls) + (floor, ceiling), labels)


def sample_lights(rng: np.random.Generator, room: Room) -> tuple[tuple[Light, ...], tuple[SceneObject, ...]]:
    """One or two ceiling lights: point lights 0.3 m below round fixtures (class "other")."""
    sx, sy, sz = room.size
    n = int(rng.integers(1, 3))
    lights, fixtures = [], []
    fixture_m = Material("solid", (0.98, 0.97, 0.92), (0.98, 0.97, 0.92), grain=0.0, emission=0.6)
    for k in range(n):
        # Two lights sit in opposite halves of the long axis so the room is lit evenly.
        x = (sx / 4) * (1 if k == 0 else -1) * (n - 1) + rng.uniform(-0.15, 0.15) * sx
        y = rng.uniform(-0.2, 0.2) * sy
        intensity = (1.1 if n == 1 else 0.8) * np.array([1.0, rng.uniform(0.93, 1.0), rng.uniform(0.82, 0.95)])
        lights.append(Light((float(x), float(y), sz - 0.3), tuple(float(v) for v in intensity)))
        part = fu.ceiling_light(float(rng.uniform(0.15, 0.22)), sz, fixture_m).placed(float(x), float(y), 0.0)
        fixtures.append(SceneObject("ceiling_light", fu.OTHER, (part,)))
    return tuple(lights), tuple(fixtures)


class _Placer:
    """Rejection sampler that keeps track of the footprints already used."""

    def __init__(self, room: Room, path_xy: np.ndarray, rng: np.random.Generator) -> None:
        self.room, self.path_xy, self.rng = room, path_xy, rng
        self.used: list[Footprint] = []
        self.objects: list[SceneObject] = []

    @staticmethod
    def footprint(lo: np.ndarray, hi: np.ndarray, x: float, y: float, yaw: float, pad: float = PAD) -> Footprint:
        """The padded footprint of object-frame bounds ``lo, hi`` after placing the object at ``(x, y, yaw)``."""
        c, s = np.cos(yaw), np.sin(yaw)
        cx, cy = (lo[:2] + hi[:2]) / 2
        center = (float(c * cx - s * cy + x), float(s * cx + c * cy + y))
        half = (float((hi[0] - lo[0]) / 2 + pad), float((hi[1] - lo[1]) / 2 + pad))
        return Footprint(center, half, yaw, (float(lo[2]), float(hi[2])))

    def fits(self, t: fu.Template, x: float, y: float, yaw: float) -> Footprint | None:
        """The footprint of ``t`` placed at ``(x, y, yaw)`` if that pose is valid, else None."""
        lo, hi = t.bounds()
        hi = hi + np.array([0.0, t.keepout, 0.0])
        fp = self.footprint(lo, hi, x, y, yaw)
        sx, sy, _ = self.room.size
        corners = fp.corners()
        # PAD lets wall-bound objects sit against the wall (their padded footprint may cross it).
        if np.any(np.abs(corners[:, 0]) > sx / 2 + PAD + 1e-9) or np.any(np.abs(corners[:, 1]) > sy / 2 + PAD + 1e-9):
            return None
        if any(fp.overlaps(u) for u in self.used):
            return None
        # Cameras keep clear of tall parts; they may pass over low ones (a bed, a sofa's seat)
        # because they stay at least ~0.7 m above them.
        tall = [p.bounds() for p in t.parts if p.bounds()[1][2] > LOW_TOP]
        if t.placement != "mount" and tall:
            tlo, thi = np.min([b[0] for b in tall], axis=0), np.max([b[1] for b in tall], axis=0)
            if self.footprint(tlo, thi, x, y, yaw, pad=0.0).distance(self.path_xy).min() < PATH_CLEARANCE:
                return None
        return fp

    def add(self, t: fu.Template, x: float, y: float, yaw: float) -> bool:
        fp = self.fits(t, x, y, yaw)
        if fp is None:
            return False
        self.used.append(fp)
        self.objects.append(SceneObject(t.name, t.label, tuple(p.placed(x, y, yaw) for p in t.parts)))
        return True

    def wall_pose(self, t: fu.Template) -> Pose:
        """A random pose with the template's back (-y) against a random wall, facing into the room."""
        sx, sy, _ = self.room.size
        lo, hi = t.bounds()
        wall = int(self.rng.integers(4))
        n = np.array([(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)][wall])  # inward normals: -x, +x, -y, +y walls
        yaw = float(np.arctan2(-n[0], n[1]))  # rotates the template's +y onto the inward normal
        tangent = np.array([np.cos(yaw), np.sin(yaw)])  # where the template's +x goes
        dist = (sx if wall < 2 else sy) / 2
        span = max((sy if wall < 2 else sx) / 2 - (hi[0] - lo[0]) / 2 - 0.02, 0.0)
        along = float(self.rng.uniform(-span, span))
        # Back face 1 cm off the wall; the footprint's centre `along` the wall.
        origin = (-dist + 0.01 - lo[1]) * n + (along - (lo[0] + hi[0]) / 2) * tangent
        return float(origin[0]), float(origin[1]), yaw

    def free_pose(self) -> Pose:
        """A random pose anywhere in the room, yaw near a multiple of 90 degrees."""
        sx, sy, _ = self.room.size
        x = float(self.rng.uniform(-sx / 2 + 0.5, sx / 2 - 0.5))
        y = float(self.rng.uniform(-sy / 2 + 0.5, sy / 2 - 0.5))
        yaw = float(self.rng.integers(4) * np.pi / 2 + self.rng.uniform(-0.15, 0.15))
        return x, y, yaw

    def place(self, t: fu.Template, tries: int = 200) -> Pose | None:
        """Place a template at a random valid pose; the pose, or None when no try fits."""
        for _ in range(tries):
            pose = self.wall_pose(t) if t.placement in ("wall", "mount") else self.free_pose()
            if self.add(t, *pose):
                return pose
        return None

    def chairs_around(self, table: fu.Template, pose: Pose, count: int) -> int:
        """Put up to ``count`` chairs at the sides of a placed table, facing it; returns how many fit."""
        lo, hi = table.bounds()
        x0, y0, yaw0 = pose
        # (x, y) sides of the table frame: the middle of each edge, and half-way to the corners.
        slots = [(0.0, 1), (0.0, -1), (1.0, 0), (-1.0, 0), (0.5, 1), (-0.5, 1), (0.5, -1), (-0.5, -1)]
        placed = 0
        for k in self.rng.permutation(len(slots)):
            if placed >= count:
                break
            chair = fu.chair(self.rng)
            clo, chi = chair.bounds()
            depth = (chi[1] - clo[1]) / 2
            ax, ay = slots[k]
            # Slot centre in the table frame: just outside the table edge on that side.
            # Both footprints are padded by PAD, so the chair's front stays > 2 PAD from the edge.
            gap = depth + 2 * PAD + 0.03
            lx = ax * (hi[0] + gap) if ay == 0 else ax * hi[0]
            ly = ay * (hi[1] + gap) if ay != 0 else 0.0
            facing = np.array([-np.sign(ax), 0.0]) if ay == 0 else np.array([0.0, -float(ay)])  # table frame
            c, s = np.cos(yaw0), np.sin(yaw0)
            x, y = x0 + c * lx - s * ly, y0 + s * lx + c * ly
            towards = np.array([c * facing[0] - s * facing[1], s * facing[0] + c * facing[1]])
            yaw = float(np.arctan2(-towards[0], towards[1]) + self.rng.uniform(-0.15, 0.15))
            placed += self.add(chair, float(x), float(y), yaw)
        return placed


def place_furniture(rng: np.random.Generator, room: Room, path_xy: np.ndarray) -> tuple[SceneObject, ...]:
    """Furniture of every class except wall / floor / ceiling, placed around the camera path.

    Args:
        rng: random generator.
        room: the room.
        path_xy: ``[M, 2]`` dense samples of the camera path (objects keep clear of it).

    Returns:
        The placed objects. Each class gets at least one object whenever the room allows it: the
        first object of a class is retried with fresh random templates before giving up.
    """
    placer = _Placer(room, path_xy, rng)

    def place_some(make: Callable[[np.random.Generator], fu.Template], count: int, required: bool) -> list[tuple[fu.Template, Pose]]:
        """Place up to ``count`` objects from ``make``; a required first one gets 8 fresh templates."""
        out = []
        attempts = 8 if required else 1
        for i in range(count):
            for _ in range(attempts if i == 0 else 1):
                t = make(rng)
                pose = placer.place(t)
                if pose is not None:
                    out.append((t, pose))
                    break
        return out

    place_some(fu.bed, 1, True)
    place_some(fu.sofa, int(rng.integers(1, 3)), True)
    tables = place_some(lambda r: fu.table(r, ["dining", "dining", "round", "desk"][int(r.integers(4))]), int(rng.integers(1, 3)), True)
    tables += place_some(lambda r: fu.table(r, "coffee"), int(rng.integers(0, 2)), False)
    n_chairs = 0
    for t, pose in tables:
        if t.name == "coffee_table":
            continue
        want = 1 if t.name == "desk_table" else int(rng.integers(2, 5))
        n_chairs += placer.chairs_around(t, pose, want)
    place_some(fu.chair, int(rng.integers(1, 4)) if n_chairs else 2, n_chairs == 0)
    others = ["cabinet", "bookshelf", "lamp", "plant", "plant", "picture", "picture", "picture", "door", "window", "window"]
    for name in rng.permutation(others)[: int(rng.integers(5, 10))]:
        place_some(fu.OTHER_BUILDERS[str(name)], 1, True)
    return tuple(placer.objects)


