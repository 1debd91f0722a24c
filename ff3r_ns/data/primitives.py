"""Scene description and exact ray-primitive intersection for the synthetic scene generator.

A scene is a closed box-shaped :class:`Room` (seen from inside) plus :class:`SceneObject` s made of
:class:`Part` s: boxes, vertical capped cylinders and ellipsoids, each placed by a centre and a yaw
(rotation about the world's vertical +z axis). The world is z-up, floor at ``z = 0``, room centred
on the vertical axis through the origin.

Rays are ``o + t * d`` with ``d`` not necessarily unit length: the renderer uses camera-frame
directions with unit z, so the hit parameter ``t`` *is* the z-depth. Every function here returns
``t = inf`` for a miss and only reports hits with ``t > EPS`` entering a primitive from outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .textures import Material

EPS = 1e-6
"""Smallest accepted hit distance (in units of ``|d|``)."""

KINDS = ("box", "cylinder", "ellipsoid")

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Part:
    """One solid primitive.

    Attributes:
        kind: ``"box"``, ``"cylinder"`` (axis along z, radius ``half[0]``, half height ``half[2]``)
            or ``"ellipsoid"`` (semi-axes ``half``).
        center: centre in the parent frame, metres.
        half: half extents (box), ``(r, r, half_height)`` (cylinder) or semi-axes (ellipsoid).
        yaw: rotation about +z in radians.
        label: class id written to the label maps.
        material: its procedural texture, evaluated in the part's local frame.
    """

    kind: str
    center: Vec3
    half: Vec3
    yaw: float
    label: int
    material: Material

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Part.kind must be one of {KINDS}, got {self.kind!r}")
        if min(self.half) <= 0:
            raise ValueError(f"Part.half must be positive, got {self.half}")

    def placed(self, x: float, y: float, yaw: float) -> "Part":
        """This part after rotating its parent frame by ``yaw`` about +z and moving it to ``(x, y)``."""
        c, s = np.cos(yaw), np.sin(yaw)
        cx, cy, cz = self.center
        center = (float(c * cx - s * cy + x), float(s * cx + c * cy + y), float(cz))
        return Part(self.kind, center, self.half, float(self.yaw + yaw), self.label, self.material)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned world bounds ``(lo [3], hi [3])``."""
        h = np.asarray(self.half, dtype=np.float64)
        if self.kind == "box":
            c, s = abs(np.cos(self.yaw)), abs(np.sin(self.yaw))
            ext = np.array([c * h[0] + s * h[1], s * h[0] + c * h[1], h[2]])
        elif self.kind == "cylinder":
            ext = np.array([h[0], h[0], h[2]])
        else:  # an ellipsoid fits in its rotated bounding box
            c, s = abs(np.cos(self.yaw)), abs(np.sin(self.yaw))
            ext = np.array([c * h[0] + s * h[1], s * h[0] + c * h[1], h[2]])
        center = np.asarray(self.center, dtype=np.float64)
        return center - ext, center + ext


@dataclass(frozen=True)
class SceneObject:
    """A piece of furniture: parts that share one class label.

    Attributes:
        name: kind of object, e.g. ``"chair"``, ``"lamp"``.
        label: class id of all its parts.
        parts: its parts in world coordinates.
    """

    name: str
    label: int
    parts: tuple[Part, ...]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned world bounds of all parts, ``(lo [3], hi [3])``."""
        los, his = zip(*(p.bounds() for p in self.parts))
        return np.min(los, axis=0), np.max(his, axis=0)


@dataclass(frozen=True)
class Room:
    """The room's interior: ``[-sx/2, sx/2] x [-sy/2, sy/2] x [0, sz]``.

    Attributes:
        size: ``(sx, sy, sz)`` in metres.
        face_materials: six materials for the faces -x, +x, -y, +y (walls), -z (floor), +z (ceiling),
            evaluated in world coordinates.
        face_labels: class ids of the six faces (wall x4, floor, ceiling).
    """

    size: Vec3
    face_materials: tuple[Material, ...]
    face_labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.face_materials) != 6 or len(self.face_labels) != 6:
            raise ValueError("Room needs six face materials and six face labels (-x, +x, -y, +y, floor, ceiling)")

    @property
    def center(self) -> np.ndarray:
        return np.array([0.0, 0.0, self.size[2] / 2])

    @property
    def half(self) -> np.ndarray:
        return np.asarray(self.size, dtype=np.float64) / 2


@dataclass(frozen=True)
class Light:
    """A point light.

    Attributes:
        position: world position, metres.
        color: RGB intensity (1.0 ~ a bright room light at 1.5 m).
    """

    position: Vec3
    color: Vec3


@dataclass(frozen=True)
class Scene:
    """Everything the renderer needs.

    Attributes:
        room: the enclosing room.
        objects: furniture, in world coordinates.
        lights: point lights (all inside the room).
        ambient: ambient light level added to every surface.
    """

    room: Room
    objects: tuple[SceneObject, ...]
    lights: tuple[Light, ...]
    ambient: float = 0.35

    @property
    def parts(self) -> tuple[Part, ...]:
        """All object parts in a fixed order (the renderer's primitive ids ``6 + index``)."""
        return tuple(p for obj in self.objects for p in obj.parts)


# --------------------------------------------------------------------------- intersection
def _safe_dir(d: np.ndarray) -> np.ndarray:
    # Replace exact zeros so 1/d is finite and signed; a 1e-12 component cannot change any hit we keep.
    return np.where(np.abs(d) < 1e-12, np.where(d < 0, -1e-12, 1e-12), d)


def to_local(part: Part, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays ``[N, 3]`` in world coordinates -> the part's local frame (centred, yaw undone)."""
    c, s = np.cos(part.yaw), np.sin(part.yaw)
    rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # R_z(-yaw)
    return (o - np.asarray(part.center)) @ rot.T, d @ rot.T


def normal_to_world(part: Part, n: np.ndarray) -> np.ndarray:
    """Local normals ``[N, 3]`` -> world normals (rotate by the part's yaw)."""
    c, s = np.cos(part.yaw), np.sin(part.yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return n @ rot.T


def slab(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray, inv: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Ray / axis-aligned box slab test.

    Args:
        o, d: ``[N, 3]`` ray origins (or one common origin ``[3]``) and directions.
        lo, hi: ``[3]`` box corners.
        inv: optional precomputed ``1 / d`` (with zeros replaced), to reuse across boxes.

    Returns:
        ``t_enter [N]``, ``t_exit [N]``, ``axis_enter [N]``, ``axis_exit [N]``; the ray crosses the box
        where ``t_enter <= t_exit``.
    """
    inv = 1.0 / _safe_dir(d) if inv is None else inv
    # Column-wise minimum / maximum: much faster in numpy than reductions over a length-3 axis.
    near, far = [], []
    for k in range(3):
        a, b = (lo[k] - o[..., k]) * inv[:, k], (hi[k] - o[..., k]) * inv[:, k]
        near.append(np.minimum(a, b))
        far.append(np.maximum(a, b))
    t_enter = np.maximum(np.maximum(near[0], near[1]), near[2])
    t_exit = np.minimum(np.minimum(far[0], far[1]), far[2])
    axis_enter = np.where(near[2] >= t_enter, 2, np.where(near[1] >= t_enter, 1, 0))
    axis_exit = np.where(far[2] <= t_exit, 2, np.where(far[1] <= t_exit, 1, 0))
    return t_enter, t_exit, axis_enter, axis_exit


def slab_interval(o: np.ndarray, inv: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``t_enter, t_exit`` of rays (origins ``o [N, 3]`` or ``[3]``, inverse directions ``inv [N, 3]``) through a box."""
    t_enter = t_exit = None
    for k in range(3):
        a, b = (lo[k] - o[..., k]) * inv[:, k], (hi[k] - o[..., k]) * inv[:, k]
        near, far = np.minimum(a, b), np.maximum(a, b)
        t_enter = near if t_enter is None else np.maximum(t_enter, near)
        t_exit = far if t_exit is None else np.minimum(t_exit, far)
    return t_enter, t_exit  # type: ignore[return-value]


def safe_inverse(d: np.ndarray) -> np.ndarray:
    """``1 / d`` with exact zeros replaced by a tiny signed value (finite, correctly signed)."""
    return 1.0 / _safe_dir(d)


def _axis_normal(axis: np.ndarray, d: np.ndarray) -> np.ndarray:
    # Unit normal along `axis`, facing against the ray: the face a ray enters (outside) or the wall
    # it leaves through (inside the room) both face the ray's origin.
    n = np.zeros_like(d)
    rows = np.arange(d.shape[0])
    n[rows, axis] = -np.sign(d[rows, axis])
    return n


def _box(o: np.ndarray, d: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t0, t1, axis, _ = slab(o, d, -h, h)
    hit = (t0 <= t1) & (t0 > EPS)
    return np.where(hit, t0, np.inf), _axis_normal(axis, d)


def _cylinder(o: np.ndarray, d: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, hz = h[0], h[2]
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = 2 * (o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1])
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - r * r
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(disc)) / (2 * a)
    z_side = o[:, 2] + t_side * d[:, 2]
    side_ok = (disc >= 0) & (a > 1e-18) & (t_side > EPS) & (np.abs(z_side) <= hz)
    t = np.where(side_ok, t_side, np.inf)
    n = np.zeros_like(d)
    p_side = o + t_side[:, None] * d
    n[:, 0], n[:, 1] = p_side[:, 0] / r, p_side[:, 1] / r
    dz = _safe_dir(d[:, 2])
    for sign in (1.0, -1.0):  # top cap is entered going down, bottom cap going up
        t_cap = (sign * hz - o[:, 2]) / dz
        p_cap = o + t_cap[:, None] * d
        cap_ok = (sign * dz < 0) & (t_cap > EPS) & (p_cap[:, 0] ** 2 + p_cap[:, 1] ** 2 <= r * r) & (t_cap < t)
        t = np.where(cap_ok, t_cap, t)
        n[cap_ok] = (0.0, 0.0, sign)
    return t, n


def _ellipsoid(o: np.ndarray, d: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Scale to the unit sphere; t is unchanged by the (linear) scaling.
    os_, ds = o / h, d / h
    a = (ds * ds).sum(1)
    b = 2 * (os_ * ds).sum(1)
    c = (os_ * os_).sum(1) - 1.0
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
    ok = (disc >= 0) & (t > EPS)
    t = np.where(ok, t, np.inf)
    p = os_ + np.where(ok, t, 0.0)[:, None] * ds
    n = p / h  # gradient of |x / h|^2
    n /= np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)
    return t, n


def intersect_part(part: Part, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First entry of world rays into one part.

    Args:
        part: the primitive.
        o, d: ``[N, 3]`` world ray origins and directions.

    Returns:
        ``t [N]`` (``inf`` on a miss) and unit **world** normals ``[N, 3]`` facing the ray (only
        meaningful where ``t`` is finite).
    """
    ol, dl = to_local(part, o, d)
    h = np.asarray(part.half, dtype=np.float64)
    fn = {"box": _box, "cylinder": _cylinder, "ellipsoid": _ellipsoid}[part.kind]
    t, n = fn(ol, dl, h)
    return t, normal_to_world(part, n)


def intersect_room(room: Room, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where rays starting inside the room (origins ``[N, 3]`` or one origin ``[3]``) leave it.

    Returns:
        ``t [N]``, unit inward normals ``[N, 3]`` and face ids ``[N]`` (0..5: -x, +x, -y, +y,
        floor, ceiling).
    """
    lo, hi = room.center - room.half, room.center + room.half
    _, t_exit, _, axis = slab(o, d, lo, hi)
    rows = np.arange(d.shape[0])
    face = 2 * axis + (d[rows, axis] > 0)
    return t_exit, _axis_normal(axis, d), face
