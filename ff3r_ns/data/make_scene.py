"""``ff3r-make-scene``: generate a synthetic indoor scene as a nerfstudio-data folder.

Example::

    ff3r-make-scene scenes/room0 --seed 0 --views 32
    ns-train splatfacto --data scenes/room0     # or any method that reads nerfstudio-data

The folder holds ``transforms.json``, ``images/``, ``depth/`` (16-bit PNG, millimetres),
``labels/`` (uint8 class ids) and ``points.ply``; see :mod:`ff3r_ns.data.generate`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional, Sequence

import tyro

from ff3r_ns.cli import command_view, parse

from .generate import SceneSpec, generate_scene, write_scene
from .trajectory import TRAJECTORIES


SceneFlags = command_view(
    SceneSpec, markers={"num_views": tyro.conf.arg(name="views")}, types={"trajectory": Literal[TRAJECTORIES]},
)
"""``SceneSpec`` as ff3r-make-scene's flags (``--views``: its earlier spelling of ``num_views``)."""


@dataclass
class MakeSceneCommand:
    """Render a seeded synthetic indoor room (walls, floor, ceiling, chairs, tables, sofas, a bed and other objects;
    textured and lit) by exact ray casting and write it as a nerfstudio-data folder with RGB images, 16-bit
    millimetre depth PNGs, uint8 class-label PNGs, OpenGL camera-to-world poses and an initial point cloud
    (points.ply)."""

    out: Annotated[tyro.conf.Positional[Path], tyro.conf.arg(metavar="OUT")]
    """Output folder (created; must be empty unless --overwrite)."""
    scene: tyro.conf.OmitArgPrefixes[SceneFlags] = field(default_factory=SceneFlags)
    """What to generate."""
    num_points: int = 20000
    """Points written to points.ply."""
    overwrite: bool = False
    """Replace a scene already in OUT."""


def main(argv: Optional[Sequence[str]] = None) -> Path:
    """Parse ``argv`` (tyro, from :class:`MakeSceneCommand`), generate and write the scene; returns the
    ``transforms.json`` path."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    args = parse(MakeSceneCommand, "ff3r-make-scene", argv)
    spec = SceneSpec(**asdict(args.scene))
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
