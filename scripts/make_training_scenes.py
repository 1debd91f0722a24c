"""Generate the training scenes of the shipped model: ``room<seed>`` folders, seeds ``first_seed ..``.

Scene ``i`` (seed ``first_seed + i``) cycles through four image sizes, the two trajectories and five arcs,
so a set of scenes mixes aspect ratios, orbits and walk-throughs, and wide and narrow view spacings.
Evaluation uses seeds below 1000, which training never sees.

All scenes are generated in ``--jobs`` worker processes that import the generator once. One
``ff3r-make-scene`` process per scene spends most of its time starting up: on a 2-core CPU, 6.2 s per 32-view
112 px room that way, against 0.9 s in a worker.
Folders that already hold a ``transforms.json`` are kept, so an interrupted run resumes.

Example::

    python scripts/make_training_scenes.py outputs/train_shipped/scenes --count 64 --views 32 --jobs 16
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

from ff3r_ns.data.generate import SceneSpec, generate_scene, write_scene

SIZES = ((112, 112), (140, 112), (168, 112), (128, 128))
"""Image sizes (width, height), cycled with the scene index."""
TRAJECTORIES = ("orbit", "walk")
ARCS = (1.0, 0.6, 0.8, 0.5, 0.9)
"""Fraction of a full loop each path covers, cycled with the scene index."""
NUM_POINTS = 2000
"""Points in each scene's ``points.ply`` (training reads none; kept small)."""


def training_scene_spec(index: int, views: int, first_seed: int = 1000) -> SceneSpec:
    """The :class:`SceneSpec` of training scene ``index`` (seed ``first_seed + index``)."""
    width, height = SIZES[index % len(SIZES)]
    return SceneSpec(
        seed=first_seed + index, num_views=views, width=width, height=height,
        trajectory=TRAJECTORIES[index % len(TRAJECTORIES)], arc=ARCS[index % len(ARCS)],
    )


def _make(job: tuple[SceneSpec, Path]) -> Path:
    spec, out = job
    if not (out / "transforms.json").is_file():
        write_scene(generate_scene(spec), out, spec, num_points=NUM_POINTS, overwrite=True)
    return out


def make_training_scenes(root: Path, count: int, views: int, jobs: int, first_seed: int = 1000) -> list[Path]:
    """Write (or keep) ``count`` training scenes under ``root``; returns their folders in seed order."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    specs = [training_scene_spec(i, views, first_seed) for i in range(count)]
    work = [(s, Path(root) / f"room{s.seed}") for s in specs]
    columns = (TextColumn("scenes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress, ProcessPoolExecutor(max_workers=jobs) as pool:
        task = progress.add_task("scenes", total=count)
        for _ in pool.map(_make, work, chunksize=4):
            progress.advance(task)
    return [out for _, out in work]


def main(argv: Optional[Sequence[str]] = None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("root", type=Path, help="folder that receives the room<seed> scene folders")
    p.add_argument("--count", type=int, default=64, help="number of scenes")
    p.add_argument("--views", type=int, default=32, help="views per scene")
    p.add_argument("--first-seed", type=int, default=1000, help="seed of the first scene (evaluation uses < 1000)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    args = p.parse_args(argv)
    if args.count < 1 or args.views < 2 or args.jobs < 1:
        p.error("--count and --jobs must be >= 1 and --views >= 2")
    if args.first_seed < 1000:
        p.error("--first-seed must be >= 1000: seeds below 1000 are the evaluation's")
    t0 = time.perf_counter()
    paths = make_training_scenes(args.root, args.count, args.views, args.jobs, args.first_seed)
    print(f"make_training_scenes: {len(paths)} scenes ({args.views} views) in {args.root}, {time.perf_counter() - t0:.1f} s")
    return paths


if __name__ == "__main__":
    main()
