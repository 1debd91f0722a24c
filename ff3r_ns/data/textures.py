"""Procedural solid textures for the synthetic scene generator.

Every pattern is a *solid* texture: a function of a 3D point in the part's own (local) coordinates,
in metres, so a pattern sticks to its object when the object moves and needs no UV mapping. All
randomness comes from an integer hash of lattice coordinates and the material's ``seed``, so the
same material and point always give the same colour (no global random state).

Example:
    >>> m = Material("wood", (0.55, 0.36, 0.2), (0.4, 0.24, 0.12), scale=0.05, seed=3)
    >>> albedo(m, np.zeros((4, 3))).shape
    (4, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Color = tuple[float, float, float]

PATTERNS = ("solid", "noise", "checker", "stripes", "wood", "planks", "tiles", "bands", "plaid", "wainscot")
"""Pattern names understood by :func:`albedo`."""

# Colours that a "bands" pattern (rows of books) draws from.
_BAND_COLORS = np.array(
    [
        [0.62, 0.12, 0.10], [0.10, 0.25, 0.50], [0.85, 0.75, 0.45], [0.15, 0.40, 0.20],
        [0.90, 0.88, 0.82], [0.20, 0.18, 0.18], [0.75, 0.45, 0.10], [0.45, 0.20, 0.45],
    ]
)  # fmt: skip


@dataclass(frozen=True)
class Material:
    """A procedural surface colour.

    Attributes:
        pattern: one of :data:`PATTERNS`.
        color_a: main colour, RGB in [0, 1].
        color_b: second colour (stripes, checker squares, grain, grout, lower wall...).
        scale: period of the pattern in metres (checker square, stripe period, plank width...).
        axis: local axis (0, 1, 2) the pattern runs along (stripes, grain, planks, bands).
        seed: integer seed of the pattern's noise.
        grain: strength of the fine multiplicative noise every pattern gets (0 = flat colour).
        emission: light the surface gives off, as a multiple of its albedo (lamp shades, windows).
    """

    pattern: str
    color_a: Color
    color_b: Color
    scale: float = 0.2
    axis: int = 0
    seed: int = 0
    grain: float = 0.08
    emission: float = 0.0

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"Material.pattern must be one of {PATTERNS}, got {self.pattern!r}")
        if not self.scale > 0:
            raise ValueError(f"Material.scale must be positive, got {self.scale}")
        if self.axis not in (0, 1, 2):
            raise ValueError(f"Material.axis must be 0, 1 or 2, got {self.axis}")


# --------------------------------------------------------------------------- noise
_PRIMES = (0x8DA6B343, 0xD8163841, 0xCB1AB31F, 0x165667B1)


def _fmix(h: np.ndarray) -> np.ndarray:
    """The "lowbias32" integer finaliser: uint32 -> well-mixed float in [0, 1)."""
    h = h ^ (h >> np.uint32(16))
    h *= np.uint32(0x7FEB352D)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x846CA68B)
    h ^= h >> np.uint32(16)
    return h.astype(np.float64) * (1.0 / 4294967296.0)


def _u32(c: np.ndarray) -> np.ndarray:
    return (np.asarray(c).astype(np.int64) & 0xFFFFFFFF).astype(np.uint32)


def _seed32(seed: int) -> np.uint32:
    return np.uint32((seed * 0x9E3779B9 + 0x85EBCA6B) & 0xFFFFFFFF)


def hash01(*coords: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hash integer lattice coordinates (up to four int arrays, broadcast) to floats in [0, 1).

    Each coordinate is multiplied by its own large odd constant, the products are summed (with
    uint32 wrap-around) and the sum goes through a multiply-xorshift finaliser: cheap, vectorised
    and identical on every platform, unlike draws from a global random generator.
    """
    if not 1 <= len(coords) <= len(_PRIMES):
        raise ValueError(f"hash01 takes 1 to {len(_PRIMES)} coordinate arrays, got {len(coords)}")
    h = np.full(np.broadcast(*coords).shape, _seed32(seed), np.uint32)
    for c, prime in zip(coords, _PRIMES):
        h = h + _u32(c) * np.uint32(prime)
    return _fmix(h)


def value_noise(p: np.ndarray, seed: int = 0) -> np.ndarray:
    """Smooth 3D value noise in [0, 1].

    Args:
        p: ``[N, 3]`` points; the lattice spacing is 1.
        seed: noise seed.

    Returns:
        ``[N]`` values: lattice hashes (:func:`hash01`) interpolated with a smoothstep fade.
    """
    i = np.floor(p)
    f = p - i
    u = f * f * (3.0 - 2.0 * f)
    # Per-axis hash terms of the lower and upper lattice planes; a corner's hash is their sum.
    terms = []
    for k in range(3):
        lo = _u32(i[:, k]) * np.uint32(_PRIMES[k])
        terms.append((lo, lo + np.uint32(_PRIMES[k])))
    s32 = _seed32(seed)
    (x0, x1), (y0, y1), (z0, z1) = terms
    ux, uy, uz = u[:, 0], u[:, 1], u[:, 2]

    def along_x(yt: np.ndarray, zt: np.ndarray) -> np.ndarray:
        base = yt + zt + s32
        a, b = _fmix(x0 + base), _fmix(x1 + base)
        return a + (b - a) * ux

    y_lo = along_x(y0, z0)
    y_lo += (along_x(y1, z0) - y_lo) * uy
    y_hi = along_x(y0, z1)
    y_hi += (along_x(y1, z1) - y_hi) * uy
    return y_lo + (y_hi - y_lo) * uz


def fbm(p: np.ndarray, seed: int = 0, octaves: int = 3) -> np.ndarray:
    """Fractal sum of :func:`value_noise` octaves (each twice the frequency, half the weight), in [0, 1]."""
    total, weight, norm = np.zeros(p.shape[0]), 1.0, 0.0
    for k in range(octaves):
        total += weight * value_noise(p * (2.0**k), seed=seed + 101 * k)
        norm += weight
        weight *= 0.5
    return total / norm


# --------------------------------------------------------------------------- patterns
def _lerp(a: Color, b: Color, t: np.ndarray) -> np.ndarray:
    a_, b_ = np.asarray(a), np.asarray(b)
    return a_ + (b_ - a_) * t[:, None]


def _other_axes(axis: int) -> tuple[int, int]:
    return tuple(k for k in range(3) if k != axis)  # type: ignore[return-value]


def _wood(m: Material, p: np.ndarray) -> np.ndarray:
    # Growth rings around the grain axis, warped by noise so they look like cut timber.
    a1, a2 = _other_axes(m.axis)
    stretch = np.ones(3)
    stretch[m.axis] = 0.15  # noise varies slowly along the grain
    warp = fbm(p * stretch / m.scale, seed=m.seed)
    r = np.hypot(p[:, a1] + 3.1, p[:, a2] + 1.7) / m.scale + 2.5 * warp
    rings = (0.5 + 0.5 * np.sin(2 * np.pi * r)) ** 3
    return _lerp(m.color_a, m.color_b, rings)


def _planks(m: Material, p: np.ndarray) -> np.ndarray:
    # Boards of width `scale` running along `axis`, staggered joints, per-board tint, dark seams.
    along = m.axis
    across = 1 if along != 1 else 0
    length = 6.0 * m.scale
    k = np.floor(p[:, across] / m.scale)
    offset = hash01(k, seed=m.seed) * length
    s = (p[:, along] + offset) / length
    j = np.floor(s)
    tint = hash01(k, j, seed=m.seed + 1)
    stretch = np.full(3, 1.0 / (0.3 * m.scale))
    stretch[along] = 1.0 / (3.0 * m.scale)
    grain = fbm(p * stretch, seed=m.seed + 2)
    col = _lerp(m.color_a, m.color_b, 0.6 * tint + 0.4 * grain)
    seam = (np.mod(p[:, across] / m.scale, 1.0) < 0.04) | (np.mod(s, 1.0) < 0.006)
    col[seam] *= 0.55
    return col


def _tiles(m: Material, p: np.ndarray) -> np.ndarray:
    # Square tiles of side `scale` over the two axes other than `axis`, thin grout lines (color_b).
    a1, a2 = _other_axes(m.axis)
    q1, q2 = p[:, a1] / m.scale, p[:, a2] / m.scale
    tint = hash01(np.floor(q1), np.floor(q2), seed=m.seed)
    col = np.asarray(m.color_a)[None] * (0.9 + 0.2 * tint[:, None])
    grout = (np.mod(q1, 1.0) < 0.03) | (np.mod(q2, 1.0) < 0.03)
    col[grout] = m.color_b
    return col


def _bands(m: Material, p: np.ndarray) -> np.ndarray:
    # Rows of book spines: bands of random width along `axis`, each a colour from a fixed palette
    # tinted towards color_a, with a dark gap between spines.
    q = p[:, m.axis] / m.scale
    # Continuous warp (slope < 1, so still monotonic) gives spines of different widths.
    q = q + 0.5 * value_noise(np.stack([0.7 * q, np.zeros_like(q), np.zeros_like(q)], 1), seed=m.seed)
    k = np.floor(q)
    idx = (hash01(k, seed=m.seed + 7) * len(_BAND_COLORS)).astype(np.int64)
    col = 0.8 * _BAND_COLORS[idx] + 0.2 * np.asarray(m.color_a)[None]
    col[np.mod(q, 1.0) < 0.06] *= 0.35
    return col


def albedo(m: Material, p: np.ndarray) -> np.ndarray:
    """Evaluate a material at local points.

    Args:
        m: the material.
        p: ``[N, 3]`` points in the part's local frame, metres.

    Returns:
        ``[N, 3]`` RGB albedo in [0, 1].
    """
    a = m.axis
    if m.pattern == "solid":
        col = np.broadcast_to(np.asarray(m.color_a), p.shape).copy()
    elif m.pattern == "noise":
        col = _lerp(m.color_a, m.color_b, fbm(p / m.scale, seed=m.seed))
    elif m.pattern == "checker":
        parity = np.floor(p / m.scale).astype(np.int64).sum(1) & 1
        col = _lerp(m.color_a, m.color_b, parity.astype(np.float64))
    elif m.pattern == "stripes":
        col = _lerp(m.color_a, m.color_b, (np.mod(p[:, a] / m.scale, 1.0) < 0.5).astype(np.float64))
    elif m.pattern == "wood":
        col = _wood(m, p)
    elif m.pattern == "planks":
        col = _planks(m, p)
    elif m.pattern == "tiles":
        col = _tiles(m, p)
    elif m.pattern == "bands":
        col = _bands(m, p)
    elif m.pattern == "plaid":
        a1, a2 = _other_axes(a)
        s = (np.mod(p[:, a1] / m.scale, 1.0) < 0.3).astype(np.float64) + (np.mod(p[:, a2] / m.scale, 1.0) < 0.3)
        col = _lerp(m.color_a, m.color_b, 0.45 * s)
    else:  # wainscot: color_b below height `scale` (world z is local axis 2 for the room), a trim line on top
        z = p[:, 2]
        col = _lerp(m.color_a, m.color_b, (z < m.scale).astype(np.float64))
        col[np.abs(z - m.scale) < 0.025] *= 0.7
    if m.grain > 0:
        col = col * (1.0 - m.grain + 2.0 * m.grain * fbm(p / 0.06, seed=m.seed + 13, octaves=2))[:, None]
    return np.clip(col, 0.0, 1.0)
