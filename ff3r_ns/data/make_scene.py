"""``ff3r-make-scene``: generate a synthetic indoor scene as a nerfstudio-data folder.

Example::

    ff3r-make-scene scenes/room0 --seed 0 --views 32
    ns-train splatfacto --data scenes/room0     # or any method that reads nerfstudio-data

The folder holds ``transforms.json``, ``images/``, ``depth/`` (16-bit PNG, millimetres),
``labels/`` (uint8 class ids) and ``points.ply``; see :mod:`ff3r_ns.data.generate`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from .generate import SceneSpec, generate_scene, write_scene
from .trajectory import TRAJECTORIES


def build_parser() -> argparse.ArgumentParser:
    defaults = SceneSpec()
    p = argparse.ArgumentParser(
        prog="ff3r-make-scene",
        description=(
            "Render a seeded synthetic indoor room (walls, floor, ceiling, chairs, tables, sofas, a bed "
            "and other objects; textured and lit) by exact ray casting and write it as a nerfstudio-data "
            "folder with RGB images, 16-bit millimetre depth PNGs, uint8 class-label PNGs, "
            "OpenGL camera-to-world poses and an initial point cloud (points.ply)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("out", type=Path, help="output folder (created; must be empty unless --overwrite)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="scene seed: room, furniture, materials, lights, path")
    p.add_argument("--views", type=int, default=defaults.num_views, help="number of views along the camera path")
    p.add_argument("--width", type=int, default=defaults.width, help="image width in pixels")
    p.add_argument("--height", type=int, default=defaults.height, help="image height in pixels")
    p.add_argument("--trajectory", choices=TRAJECTORIES, default=defaults.trajectory, help="orbit: ellipse looking at the centre; walk: smooth walk-through")
    p.add_argument("--fov-deg", type=float, default=defaults.fov_deg, help="horizontal field of view in degrees")
    p.add_argument("--arc", type=float, default=defaults.arc, help="fraction of a full loop the path covers (smaller: views closer together)")
    p.add_argument("--no-shadows", action="store_true", help="skip shadow rays (faster, flatter images)")
    p.add_argument("--num-points", type=int, default=20000, help="points written to points.ply")
    p.add_argument("--overwrite", action="store_true", help="replace a scene already in OUT")
    return p


def main(argv: Optional[Sequence[str]] = None) -> Path:
    """Parse ``argv``, generate and write the scene; returns the ``transforms.json`` path."""
    args = build_parser().parse_args(argv)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    spec = SceneSpec(
        seed=args.seed,
        num_views=args.views,
        width=args.width,
        height=args.height,
        trajectory=args.trajectory,
        fov_deg=args.fov_deg,
        arc=args.arc,
        shadows=not args.no_shadows,
    )
    out = Path(args.out)
    if out.exists() and out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} is not empty; pass --overwrite to replace the scene in it")
    t0 = time.perf_counter()
    columns = (TextColumn("rendering"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("views", total=spec.num_views)
        views = generate_scene(spec, on_view=lambda _: progress.advance(task))
    path = write_scene(views, out, spec, num_points=args.num_points, overwrite=args.overwrite)
    elapsed = time.perf_counter() - t0
    print(f"ff3r-make-scene: {spec.num_views} views, {spec.width}x{spec.height}, {spec.trajectory}, seed {spec.seed}, {elapsed:.1f} s -> {path}")
    return path


def entrypoint() -> None:
    """Console-script entry point; bad input exits with a one-line message instead of a traceback."""
    try:
        main()
    except (FileExistsError, NotADirectoryError, ValueError) as err:
        print(f"ff3r-make-scene: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    entrypoint()
