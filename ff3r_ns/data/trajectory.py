"""Camera paths inside the room and pinhole cameras along them.

Two kinds of path, both smooth so that consecutive views overlap strongly (the evaluation protocol
uses views ``i - 1`` and ``i + 1`` as context for target ``i``):

- ``"orbit"``: an ellipse around the room's centre, the camera looking at a point that wanders
  slowly around the centre, with a gentle height variation;
- ``"walk"``: an open, irregular loop through random waypoints (a Catmull-Rom spline, sampled at
  constant speed), the camera looking ahead along the path but turned part-way towards the centre
  so that it sees the room rather than the nearest wall, with a small walking bob.

Cameras are OpenCV (x right, y down, z forward), world-to-camera, in the world's z-up frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRAJECTORIES = ("orbit", "walk")


@dataclass(frozen=True)
class CameraPath:
    """A smooth camera path parametrised by ``s`` in [0, 1].

    Attributes:
        kind: ``"orbit"`` or ``"walk"``.
        control: ``[K, 2]`` walk waypoints as nested tuples (unused for an orbit).
        radii: orbit semi-axes ``(rx, ry)`` in metres.
        phase: orbit start angle (radians).
        direction: +1 (counter-clockwise) or -1.
        arc: fraction of the full ellipse the orbit covers (1.0 = closed loop).
        height: mean eye height in metres.
        target_z: height of the point an orbit looks at / a walk's look pitch reference.
        wobble: phase of the slow height / target variations.
    """

    kind: str
    control: tuple[tuple[float, float], ...]
    radii: tuple[float, float]
    phase: float
    direction: float
    arc: float
    height: float
    target_z: float
    wobble: float

    @property
    def closed(self) -> bool:
        """True when the last view would coincide with the first (a full orbit)."""
        return self.kind == "orbit" and self.arc >= 1.0

    def view_params(self, num_views: int) -> np.ndarray:
        """``[num_views]`` path parameters of the views, evenly spaced (no duplicate on a closed loop)."""
        if num_views == 1:
            return np.zeros(1)
        return np.arange(num_views) / (num_views if self.closed else num_views - 1)

    def sample(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eye positions and look-at targets.

        Args:
            s: ``[N]`` path parameters in [0, 1].

        Returns:
            ``eye [N, 3]`` and ``target [N, 3]`` in world coordinates.
        """
        s = np.asarray(s, dtype=np.float64)
        if self.kind == "orbit":
            theta = self.phase + self.direction * 2 * np.pi * self.arc * s
            rx, ry = self.radii
            eye = np.stack([rx * np.cos(theta), ry * np.sin(theta), self.height + 0.08 * np.sin(2 * theta + self.wobble)], 1)
            # The look-at point circles the centre three times per loop: views differ in more than position.
            w = 3 * theta + self.wobble
            target = np.stack([0.3 * np.cos(w), 0.3 * np.sin(w), self.target_z + 0.1 * np.sin(w)], 1)
            return eye, target
        xy, tangent, length = _catmull_rom_const_speed(np.asarray(self.control), s)
        z = self.height + 0.025 * np.sin(2 * np.pi * s * length / 0.7 + self.wobble)  # a step every ~0.7 m
        eye = np.concatenate([xy, z[:, None]], 1)
        to_centre = -xy / np.linalg.norm(xy, axis=1, keepdims=True).clip(1e-6)
        look = tangent + 0.8 * to_centre
        look /= np.linalg.norm(look, axis=1, keepdims=True).clip(1e-6)
        # Look 2 m ahead, down to target_z: a walker's slightly lowered gaze.
        target = np.concatenate([xy + 2.0 * look, np.full((len(s), 1), self.target_z)], 1)
        return eye, target


def _catmull_rom(ctrl: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Uniform Catmull-Rom spline through ``ctrl [K, 2]`` (ends clamped), at ``u`` in [0, K-1]."""
    k = len(ctrl)
    pts = np.concatenate([2 * ctrl[:1] - ctrl[1:2], ctrl, 2 * ctrl[-1:] - ctrl[-2:-1]])
    i = np.clip(np.floor(u).astype(np.int64), 0, k - 2)
    t = (u - i)[:, None]
    p0, p1, p2, p3 = pts[i], pts[i + 1], pts[i + 2], pts[i + 3]
    return 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)


def _catmull_rom_const_speed(ctrl: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Points, unit tangents and total length of the spline, re-parametrised by arc length ``s`` in [0, 1]."""
    dense_u = np.linspace(0.0, len(ctrl) - 1, 2048)
    dense = _catmull_rom(ctrl, dense_u)
    seg = np.linalg.norm(np.diff(dense, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    length = float(cum[-1])
    u = np.interp(s * length, cum, dense_u)
    du = 1e-3
    xy = _catmull_rom(ctrl, u)
    tangent = _catmull_rom(ctrl, np.clip(u + du, 0, len(ctrl) - 1)) - _catmull_rom(ctrl, np.clip(u - du, 0, len(ctrl) - 1))
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True).clip(1e-12)
    return xy, tangent, length


def make_path(kind: str, room_size: tuple[float, float, float], rng: np.random.Generator, arc: float = 1.0) -> CameraPath:
    """A random camera path of ``kind`` in a room of ``room_size`` (metres, room centred on the origin).

    Args:
        kind: ``"orbit"`` or ``"walk"``.
        room_size: ``(sx, sy, sz)``.
        rng: random generator (the only source of randomness).
        arc: fraction of a full loop to cover (an orbit's angle / 360 deg, a walk's loop fraction).

    Returns:
        The path; it keeps at least ~0.8 m from the walls.
    """
    if kind not in TRAJECTORIES:
        raise ValueError(f"trajectory must be one of {TRAJECTORIES}, got {kind!r}")
    if not 0.0 < arc <= 1.0:
        raise ValueError(f"arc must be in (0, 1], got {arc}")
    sx, sy, sz = room_size
    phase = float(rng.uniform(0, 2 * np.pi))
    direction = float(rng.choice([-1.0, 1.0]))
    height = float(rng.uniform(1.35, 1.6))
    target_z = float(rng.uniform(1.0, 1.25))
    wobble = float(rng.uniform(0, 2 * np.pi))
    frac = float(rng.uniform(0.45, 0.55))
    radii = (frac * sx / 2, frac * sy / 2)
    control: tuple[tuple[float, float], ...] = ()
    if kind == "walk":
        k = 6
        angles = phase + direction * 2 * np.pi * 0.8 * arc * np.linspace(0, 1, k)
        r = rng.uniform(0.35, 0.6, size=k)
        control = tuple((float(r[i] * sx / 2 * np.cos(a)), float(r[i] * sy / 2 * np.sin(a))) for i, a in enumerate(angles))
    return CameraPath(kind, control, radii, phase, direction, arc, height, target_z, wobble)


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera matrices looking from ``eye`` to ``target`` with world +z up.

    Args:
        eye, target: ``[N, 3]``.

    Returns:
        ``[N, 4, 4]`` float64 extrinsics (camera x right, y down, z forward; no roll).
    """
    f = target - eye
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    up = np.array([0.0, 0.0, 1.0])
    r = np.cross(f, up)
    if np.any(np.linalg.norm(r, axis=1) < 1e-6):
        raise ValueError("look_at: a camera looks straight up or down; its roll is undefined")
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    d = np.cross(f, r)  # x cross y = z in a right-handed camera frame, so y = z cross x
    rot_c2w = np.stack([r, d, f], axis=2)  # columns are the camera axes in world coordinates
    w2c = np.zeros((len(eye), 4, 4))
    w2c[:, :3, :3] = rot_c2w.transpose(0, 2, 1)
    w2c[:, :3, 3] = -np.einsum("nij,nj->ni", w2c[:, :3, :3], eye)
    w2c[:, 3, 3] = 1.0
    return w2c


def pinhole(width: int, height: int, fov_deg: float) -> np.ndarray:
    """``[3, 3]`` intrinsics with square pixels, ``fov_deg`` horizontal, principal point at the image centre."""
    if not 1.0 < fov_deg < 170.0:
        raise ValueError(f"fov_deg must be in (1, 170), got {fov_deg}")
    f = (width / 2) / np.tan(np.deg2rad(fov_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
