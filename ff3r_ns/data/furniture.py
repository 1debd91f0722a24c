"""Furniture templates for the synthetic scene generator, built from boxes, cylinders and ellipsoids.

Every builder returns a :class:`Template` in its own frame: the footprint is centred on the origin,
the floor is ``z = 0``, the object's front faces ``+y`` and its back ``-y`` (a sofa's back, a bed's
headboard, a cabinet's rear panel). The layout step rotates and moves it into the room.

Colour palettes overlap between classes on purpose (wooden chairs and tables, beige sofas and
walls) so that a model has to use shape and context, not colour alone, to tell the classes apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .primitives import Part, Vec3
from .textures import Color, Material
from ff3r_ns.core.protocol import PROTOCOL_CLASSES

CLASSES = list(PROTOCOL_CLASSES)
"""Class names in id order; id 0 is "ignore" and is never rendered in a closed room."""

WALL, FLOOR, CEILING, CHAIR, TABLE, SOFA, BED, OTHER = range(1, 9)

WOODS: list[Color] = [(0.55, 0.38, 0.22), (0.42, 0.27, 0.15), (0.70, 0.52, 0.33), (0.30, 0.19, 0.11), (0.78, 0.64, 0.45)]
FABRICS: list[Color] = [
    (0.50, 0.50, 0.52), (0.18, 0.22, 0.38), (0.25, 0.38, 0.28), (0.72, 0.65, 0.52),
    (0.60, 0.28, 0.18), (0.38, 0.22, 0.13), (0.35, 0.35, 0.38),
]  # fmt: skip
PLASTICS: list[Color] = [(0.75, 0.15, 0.12), (0.15, 0.35, 0.65), (0.20, 0.55, 0.30), (0.12, 0.12, 0.13), (0.90, 0.90, 0.88), (0.90, 0.70, 0.15)]
LINENS: list[Color] = [(0.92, 0.92, 0.90), (0.88, 0.84, 0.74), (0.70, 0.80, 0.90), (0.62, 0.72, 0.62), (0.88, 0.72, 0.74), (0.60, 0.60, 0.65)]
METALS: list[Color] = [(0.12, 0.12, 0.13), (0.55, 0.56, 0.58), (0.75, 0.62, 0.35)]
PAINTS: list[Color] = [(0.92, 0.92, 0.90), (0.35, 0.38, 0.42), (0.80, 0.78, 0.72), (0.20, 0.30, 0.35)]


@dataclass(frozen=True)
class Template:
    """An object in its own frame, before placement.

    Attributes:
        name: object kind ("chair", "bookshelf", ...).
        label: class id.
        parts: parts in the object frame (front +y, floor z = 0).
        placement: ``"free"`` (anywhere), ``"wall"`` (back against a wall) or ``"mount"`` (hung on
            a wall, above the floor).
        keepout: metres in front (+y) that must stay clear (a door's swing).
    """

    name: str
    label: int
    parts: tuple[Part, ...]
    placement: str
    keepout: float = 0.0

    def __post_init__(self) -> None:
        if self.placement not in ("free", "wall", "mount"):
            raise ValueError(f"Template.placement must be 'free', 'wall' or 'mount', got {self.placement!r}")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds ``(lo [3], hi [3])`` of all parts in the object frame."""
        los, his = zip(*(p.bounds() for p in self.parts))
        return np.min(los, axis=0), np.max(his, axis=0)


# --------------------------------------------------------------------------- helpers
def _pick(rng: np.random.Generator, options: list[Color], jitter: float = 0.04) -> Color:
    c = np.asarray(options[int(rng.integers(len(options)))]) + rng.uniform(-jitter, jitter, 3)
    return tuple(float(v) for v in np.clip(c, 0.0, 1.0))  # type: ignore[return-value]


def _darker(c: Color, f: float = 0.75) -> Color:
    return (c[0] * f, c[1] * f, c[2] * f)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(1 << 30))


def wood(rng: np.random.Generator, axis: int = 0) -> Material:
    c = _pick(rng, WOODS)
    return Material("wood", c, _darker(c, 0.7), scale=float(rng.uniform(0.015, 0.04)), axis=axis, seed=_seed(rng))


def fabric(rng: np.random.Generator, palette: list[Color] = FABRICS) -> Material:
    c = _pick(rng, palette)
    pattern = ["noise", "noise", "stripes", "plaid"][int(rng.integers(4))]
    scale = 0.015 if pattern == "noise" else float(rng.uniform(0.05, 0.12))
    return Material(pattern, c, _darker(c, 0.8), scale=scale, axis=int(rng.integers(2)), seed=_seed(rng), grain=0.1)


def solid(rng: np.random.Generator, palette: list[Color], grain: float = 0.05) -> Material:
    c = _pick(rng, palette)
    return Material("solid", c, c, seed=_seed(rng), grain=grain)


def _box(center: Vec3, half: Vec3, label: int, m: Material) -> Part:
    return Part("box", center, half, 0.0, label, m)


def _cyl(center: Vec3, radius: float, half_h: float, label: int, m: Material) -> Part:
    return Part("cylinder", center, (radius, radius, half_h), 0.0, label, m)


# Footprint, height, thickness, label, material and shape of the legs: chairs, tables, sofas and beds differ in each.
def _legs(hx: float, hy: float, height: float, size: float, label: int, m: Material, round_: bool) -> list[Part]:
    """Four legs of ``height`` at the corners of a ``2hx x 2hy`` rectangle, inset by their size."""
    out = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            c = (sx * (hx - size), sy * (hy - size), height / 2)
            out.append(_cyl(c, size, height / 2, label, m) if round_ else _box(c, (size, size, height / 2), label, m))
    return out


# --------------------------------------------------------------------------- builders
def chair(rng: np.random.Generator) -> Template:
    """Seat, four legs and a back (a full board, or two posts and a top rail)."""
    hx, hy = rng.uniform(0.2, 0.25), rng.uniform(0.2, 0.24)
    seat_h, thick, back_h = rng.uniform(0.42, 0.48), rng.uniform(0.03, 0.05), rng.uniform(0.35, 0.5)
    wooden = rng.random() < 0.5
    seat_m = wood(rng) if wooden else (fabric(rng) if rng.random() < 0.5 else solid(rng, PLASTICS))
    leg_m = seat_m if wooden else solid(rng, METALS)
    parts = _legs(hx, hy, seat_h - thick, 0.02, CHAIR, leg_m, round_=not wooden)
    parts.append(_box((0, 0, seat_h - thick / 2), (hx, hy, thick / 2), CHAIR, seat_m))
    if rng.random() < 0.5:
        parts.append(_box((0, -hy + 0.02, seat_h + back_h / 2), (hx, 0.02, back_h / 2), CHAIR, seat_m))
    else:
        for sx in (-1, 1):
            parts.append(_box((sx * (hx - 0.02), -hy + 0.02, seat_h + back_h / 2), (0.02, 0.02, back_h / 2), CHAIR, leg_m))
        rail = back_h * 0.35
        parts.append(_box((0, -hy + 0.02, seat_h + back_h - rail / 2), (hx - 0.04, 0.018, rail / 2), CHAIR, seat_m))
    return Template("chair", CHAIR, tuple(parts), "free")


def table(rng: np.random.Generator, kind: str = "dining") -> Template:
    """A rectangular dining table or desk, a round table, or a low coffee table."""
    top_m = wood(rng) if rng.random() < 0.6 else solid(rng, PAINTS)
    leg_m = top_m if rng.random() < 0.5 else solid(rng, METALS)
    if kind == "round":
        r, h = rng.uniform(0.4, 0.55), rng.uniform(0.72, 0.77)
        parts = [
            _cyl((0, 0, h - 0.02), r, 0.02, TABLE, top_m),
            _cyl((0, 0, (h - 0.04) / 2), 0.04, (h - 0.04) / 2, TABLE, leg_m),
            _cyl((0, 0, 0.015), 0.25, 0.015, TABLE, leg_m),
        ]
        return Template("round_table", TABLE, tuple(parts), "free")
    if kind == "coffee":
        hx, hy, h = rng.uniform(0.45, 0.6), rng.uniform(0.25, 0.32), rng.uniform(0.38, 0.45)
    elif kind == "desk":
        hx, hy, h = rng.uniform(0.5, 0.7), rng.uniform(0.28, 0.35), rng.uniform(0.72, 0.76)
    else:
        hx, hy, h = rng.uniform(0.45, 0.8), rng.uniform(0.35, 0.45), rng.uniform(0.72, 0.77)
    thick = rng.uniform(0.03, 0.05)
    parts = _legs(hx - 0.03, hy - 0.03, h - thick, 0.025, TABLE, leg_m, round_=rng.random() < 0.3)
    parts.append(_box((0, 0, h - thick / 2), (hx, hy, thick / 2), TABLE, top_m))
    if kind == "coffee":  # a lower shelf
        parts.append(_box((0, 0, 0.12), (hx - 0.05, hy - 0.05, 0.012), TABLE, top_m))
    return Template(kind + "_table", TABLE, tuple(parts), "wall" if kind == "desk" else "free")


def sofa(rng: np.random.Generator) -> Template:
    """Base, seat cushions, back and two arms."""
    hx, hy = rng.uniform(0.8, 1.1), rng.uniform(0.4, 0.47)
    m, leg_m = fabric(rng), solid(rng, WOODS)
    back_t, arm_w, back_top, arm_top = rng.uniform(0.15, 0.22), rng.uniform(0.12, 0.2), rng.uniform(0.75, 0.9), rng.uniform(0.55, 0.65)
    parts = _legs(hx, hy, 0.06, 0.025, SOFA, leg_m, round_=False)
    parts.append(_box((0, 0, 0.23), (hx, hy, 0.17), SOFA, m))  # base z 0.06..0.40
    parts.append(_box((0, -hy + back_t / 2, (0.06 + back_top) / 2), (hx, back_t / 2, (back_top - 0.06) / 2), SOFA, m))
    for sx in (-1, 1):
        parts.append(_box((sx * (hx - arm_w / 2), 0, (0.06 + arm_top) / 2), (arm_w / 2, hy, (arm_top - 0.06) / 2), SOFA, m))
    n_cushions = 2 if hx < 0.95 else 3
    inner = hx - arm_w
    w = 2 * inner / n_cushions
    depth = 2 * hy - back_t
    for k in range(n_cushions):
        cx = -inner + w * (k + 0.5)
        parts.append(_box((cx, -hy + back_t + depth / 2, 0.46), (w / 2 - 0.006, depth / 2 - 0.01, 0.06), SOFA, m))
    return Template("sofa", SOFA, tuple(parts), "wall")


def bed(rng: np.random.Generator) -> Template:
    """Frame, mattress, duvet, pillows and a headboard at the back (-y)."""
    hx, hy = rng.uniform(0.7, 0.9), rng.uniform(1.0, 1.06)
    frame_m = wood(rng, axis=1)
    head_m = frame_m if rng.random() < 0.5 else fabric(rng)
    sheet_m = solid(rng, LINENS[:2], grain=0.04)
    duvet_m = fabric(rng, LINENS)
    head_h, head_t = rng.uniform(0.9, 1.2), 0.04
    # The headboard occupies y in [-hy, -hy + 2 head_t]; the body of the bed the rest, up to +hy.
    body_hy = hy - head_t
    cy = head_t
    parts = _legs(hx, body_hy, 0.1, 0.03, BED, frame_m, round_=False)
    parts = [p.placed(0.0, cy, 0.0) for p in parts]
    parts.append(_box((0, cy, 0.22), (hx, body_hy - 0.001, 0.12), BED, frame_m))  # frame z 0.10..0.34
    parts.append(_box((0, cy, 0.45), (hx - 0.02, body_hy - 0.02, 0.11), BED, sheet_m))  # mattress ..0.56
    duvet_len = 1.35 * body_hy
    parts.append(_box((0, cy + body_hy - duvet_len / 2 + 0.02, 0.465), (hx + 0.01, duvet_len / 2, 0.115), BED, duvet_m))
    n_pillows = 2 if hx > 0.75 else 1
    for k in range(n_pillows):
        px = -hx + 2 * hx * (k + 0.5) / n_pillows
        pillow = Part("ellipsoid", (px, -hy + 2 * head_t + 0.22, 0.6), (hx / n_pillows - 0.06, 0.16, 0.07), 0.0, BED, sheet_m)
        parts.append(pillow)
    parts.append(_box((0, -hy + head_t, head_h / 2), (hx + 0.03, head_t, head_h / 2), BED, head_m))
    return Template("bed", BED, tuple(parts), "wall")


def cabinet(rng: np.random.Generator) -> Template:
    """A body with one or two door panels and handles on its front."""
    hx, hy, h = rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.25), rng.uniform(0.75, 1.9)
    body_m = wood(rng, axis=2) if rng.random() < 0.5 else solid(rng, PAINTS)
    door_m = Material("solid", _darker(body_m.color_a, 0.9), body_m.color_a, seed=body_m.seed + 1, grain=0.05)
    handle_m = solid(rng, METALS)
    parts = [_box((0, 0, h / 2 + 0.03), (hx, hy, h / 2 - 0.03), OTHER, body_m), _box((0, 0, 0.015), (hx - 0.02, hy - 0.02, 0.015), OTHER, handle_m)]
    n_doors = 2 if hx > 0.4 else 1
    dw = 2 * hx / n_doors
    for k in range(n_doors):
        cx = -hx + dw * (k + 0.5)
        parts.append(_box((cx, hy + 0.008, h / 2 + 0.03), (dw / 2 - 0.02, 0.008, h / 2 - 0.06), OTHER, door_m))
        hxs = cx + (dw / 2 - 0.06) * (1 if k == 0 and n_doors == 2 else -1)
        parts.append(_box((hxs, hy + 0.025, h / 2 + 0.1), (0.01, 0.01, 0.06), OTHER, handle_m))
    return Template("cabinet", OTHER, tuple(parts), "wall")


def bookshelf(rng: np.random.Generator) -> Template:
    """Side panels, shelves and rows of books (one box per row, textured with book spines)."""
    hx, hy, h = rng.uniform(0.4, 0.6), 0.16, rng.uniform(1.5, 2.0)
    m = wood(rng) if rng.random() < 0.6 else solid(rng, PAINTS)
    t = 0.02
    parts = [_box((sx * (hx - t / 2), 0, h / 2), (t / 2, hy, h / 2), OTHER, m) for sx in (-1, 1)]
    parts.append(_box((0, -hy + t / 2, h / 2), (hx - t, t / 2, h / 2), OTHER, m))
    n = int(rng.integers(4, 6))
    gap = (h - t) / n
    for k in range(n + 1):
        parts.append(_box((0, t / 2, k * gap + t / 2), (hx - t, hy - t / 2, t / 2), OTHER, m))
        if k < n:
            bh = gap * rng.uniform(0.55, 0.8)
            books = Material("bands", _pick(rng, PLASTICS), (0, 0, 0), scale=0.035, axis=0, seed=_seed(rng))
            fill = rng.uniform(0.5, 0.95) * (hx - t)  # half width of the row of books
            bx = rng.uniform(-(hx - t - fill), hx - t - fill)
            parts.append(_box((bx, (t - 0.02) / 2, k * gap + t + bh / 2), (fill, hy - (t + 0.02) / 2, bh / 2), OTHER, books))
    return Template("bookshelf", OTHER, tuple(parts), "wall")


def lamp(rng: np.random.Generator) -> Template:
    """Floor lamp: base disc, pole and a cylindrical shade."""
    h, r = rng.uniform(1.4, 1.7), rng.uniform(0.16, 0.22)
    metal = solid(rng, METALS)
    shade = Material("noise", (0.92, 0.86, 0.70), (0.85, 0.78, 0.62), scale=0.03, seed=_seed(rng), emission=0.35)
    parts = (
        _cyl((0, 0, 0.015), 0.15, 0.015, OTHER, metal),
        _cyl((0, 0, h / 2), 0.012, h / 2, OTHER, metal),
        _cyl((0, 0, h + 0.1), r, 0.13, OTHER, shade),
    )
    return Template("lamp", OTHER, parts, "wall")


def plant(rng: np.random.Generator) -> Template:
    """A pot with two or three leafy blobs."""
    r, ph = rng.uniform(0.13, 0.2), rng.uniform(0.28, 0.42)
    pot = solid(rng, [(0.70, 0.38, 0.25), (0.90, 0.90, 0.88), (0.25, 0.25, 0.27)])
    leaves = Material("noise", (0.20, 0.45, 0.18), (0.08, 0.25, 0.08), scale=0.04, seed=_seed(rng), grain=0.15)
    parts = [_cyl((0, 0, ph / 2), r, ph / 2, OTHER, pot)]
    for k in range(int(rng.integers(2, 4))):
        a = rng.uniform(0, 2 * np.pi)
        off = 0.3 * r * np.array([np.cos(a), np.sin(a)])
        size = r * rng.uniform(0.9, 1.4)
        parts.append(Part("ellipsoid", (float(off[0]), float(off[1]), ph + size * (0.7 + 0.5 * k)), (size, size, size * 1.1), float(a), OTHER, leaves))
    return Template("plant", OTHER, tuple(parts), "wall")


def picture(rng: np.random.Generator) -> Template:
    """A framed picture hung on a wall: a frame box and a colourful canvas in front of it."""
    hx, hz, zc = rng.uniform(0.2, 0.5), rng.uniform(0.15, 0.35), rng.uniform(1.4, 1.7)
    frame = solid(rng, METALS + WOODS[:2])
    c1, c2 = _pick(rng, PLASTICS + LINENS, 0.1), _pick(rng, PLASTICS + FABRICS, 0.1)
    canvas = Material("noise", c1, c2, scale=float(rng.uniform(0.05, 0.2)), seed=_seed(rng), grain=0.05)
    parts = (
        _box((0, 0.015, zc), (hx, 0.015, hz), OTHER, frame),
        _box((0, 0.02, zc), (hx - 0.03, 0.015, hz - 0.03), OTHER, canvas),
    )
    return Template("picture", OTHER, parts, "mount")


def door(rng: np.random.Generator) -> Template:
    """A door leaf slightly proud of the wall, with a handle; keeps its swing area clear."""
    hx, h = rng.uniform(0.42, 0.48), rng.uniform(2.0, 2.1)
    m = wood(rng, axis=2) if rng.random() < 0.5 else solid(rng, PAINTS[:1] + WOODS[-1:])
    trim = solid(rng, PAINTS[:1])
    parts = (
        _box((0, 0.01, h / 2 + 0.02), (hx + 0.05, 0.01, h / 2 + 0.02), OTHER, trim),
        _box((0, 0.025, h / 2 + 0.005), (hx, 0.02, h / 2), OTHER, m),
        _box((hx - 0.08, 0.06, 1.0), (0.05, 0.015, 0.012), OTHER, solid(rng, METALS)),
    )
    return Template("door", OTHER, parts, "mount", keepout=2 * hx)


def window(rng: np.random.Generator) -> Template:
    """A window on a wall: a white frame, a bright sky-and-treeline pane and a cross bar."""
    hx, z0, z1 = rng.uniform(0.4, 0.75), rng.uniform(0.8, 1.0), rng.uniform(1.9, 2.2)
    frame = solid(rng, PAINTS[:1] + WOODS[-1:])
    sky = Material("noise", (0.72, 0.84, 0.95), (0.45, 0.62, 0.40), scale=float(rng.uniform(0.25, 0.4)), seed=_seed(rng), grain=0.03, emission=0.5)
    zc, hz = (z0 + z1) / 2, (z1 - z0) / 2
    parts = (
        _box((0, 0.02, zc), (hx, 0.02, hz), OTHER, frame),
        _box((0, 0.025, zc), (hx - 0.05, 0.02, hz - 0.05), OTHER, sky),
        _box((0, 0.05, zc), (0.02, 0.01, hz - 0.05), OTHER, frame),
        _box((0, 0.05, zc), (hx - 0.05, 0.01, 0.02), OTHER, frame),
        _box((0, 0.08, z0 - 0.02), (hx + 0.04, 0.08, 0.02), OTHER, frame),  # sill
    )
    return Template("window", OTHER, parts, "mount")


def ceiling_light(radius: float, ceiling: float, m: Material) -> Part:
    """A flat round fixture on the ceiling (class "other") above a point light."""
    return Part("cylinder", (0.0, 0.0, ceiling - 0.03), (radius, radius, 0.03), 0.0, OTHER, m)


OTHER_BUILDERS: dict[str, Callable[[np.random.Generator], Template]] = {
    "cabinet": cabinet,
    "bookshelf": bookshelf,
    "lamp": lamp,
    "plant": plant,
    "picture": picture,
    "door": door,
    "window": window,
}
