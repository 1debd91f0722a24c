"""Refinement settings compared on one GPU in one warm process: each a curve on the 64-view room up to --stop steps.

For the lent GPU machine, before the head-to-head benchmark (``scripts/gpu/bench_session.sh``): which defaults to
run it with. Each variant is ``python -m benchmarks.refinement_curves`` with ``--set`` overrides; rows go to one JSON.

Usage (after ``source scripts/setup_offline_gpu.sh``; writes under RESDIR, outside the repository):
    python scripts/gpu/tune_session.py RESDIR [--stop 3000] [--variants base fast2000 ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the benchmarks package, from any working directory

from benchmarks import refinement_curves as rc  # noqa: E402
from benchmarks import timed_runs as vs  # noqa: E402

LEAN = ["pipeline.model.feature_loss_weight=0.0", "pipeline.model.refine_every=50", "pipeline.model.warmup_length=200"]


class Variant(NamedTuple):
    """``--set`` overrides of the ff3r method config and the step budget its schedules are laid out for (a run of it
    stops there at the latest)."""

    overrides: list[str]
    budget: int = 30_000


def _run(batch: int, cap: int | None, *more: str, budget: int = 30_000) -> Variant:
    """``batch`` images per step and a Gaussian budget ``cap`` (None: unbounded growth), spelled out so that a
    label keeps its meaning when the method's defaults change."""
    return Variant([f"pipeline.datamanager.cameras_per_step={batch}", f"pipeline.model.max_gaussians={cap}", *more],
                   budget)


VARIANTS: dict[str, Variant] = {
    "defaults": Variant([]),  # the method as shipped
    "base": _run(1, None),
    "fast2000": _run(1, None, "fast_start_steps=2000"),
    "fast1000": _run(1, None, "fast_start_steps=1000"),
    "fast2000_lean": _run(1, None, "fast_start_steps=2000", *LEAN),
    "lean": _run(1, None, *LEAN),
    "batch2": _run(2, None),
    "batch4": _run(4, None),
    "batch8": _run(8, None),
    # Batches densify far more (1.4M Gaussians after 3000 steps at 4 per step): a higher growth threshold.
    "batch4_g2": _run(4, None, "pipeline.model.densify_grad_thresh=0.0016"),
    "batch4_g4": _run(4, None, "pipeline.model.densify_grad_thresh=0.0032"),
    "batch2_g2": _run(2, None, "pipeline.model.densify_grad_thresh=0.0016"),
    # A Gaussian budget instead (splatfacto ends the 64-view room with 211k).
    "base_cap200k": _run(1, 200_000),
    "batch2_cap200k": _run(2, 200_000),
    "batch2_cap300k": _run(2, 300_000),
    "batch4_cap200k": _run(4, 200_000),
    "batch4_cap150k": _run(4, 150_000),
    # As many training images as splatfacto's 30k steps: the schedule laid out for 30k / B steps.
    "batch4_cap200k_7500": _run(4, 200_000, budget=7500),
    "batch4_cap150k_7500": _run(4, 150_000, budget=7500),
    "batch2_cap200k_15000": _run(2, 200_000, budget=15_000),
    # The shipped GPU budget (7500 steps of 4) with and without splatfacto's opacity resets: at 128 views the
    # curve gains 0.76 dB between steps 1750 and 2000, after the reset at 1500 (a43bccb's benchmark).
    "shipped_7500": Variant([], budget=7500),
    "shipped_7500_no_reset": Variant(["pipeline.model.reset_alpha_every=1000"], budget=7500),
    "shipped_7500_reset1500": Variant(["pipeline.model.reset_alpha_every=60"], budget=7500),  # 60 x 25 steps
    # The feature loss is a quarter of a step's time on an H200 (step_profile.json): every second step only.
    "shipped_7500_feature_every2": Variant(["pipeline.model.feature_loss_every=2"], budget=7500),
}
"""Label -> its :class:`Variant`."""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("resdir", type=Path)
    p.add_argument("--stop", type=int, default=3000, help="steps per curve (the 30k schedule, stopped early)")
    p.add_argument("--views", type=int, default=64)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--points", type=int, nargs="+", default=None, help="steps to evaluate (as refinement_curves' --points)")
    args = p.parse_args(argv)
    scene = vs.generated_scenes([args.views], 256, 0, args.resdir / "scenes")[args.views]
    for label in args.variants:
        v = VARIANTS[label]
        rc.main([str(scene), "--label", label, "--budget", str(v.budget), "--stop", str(min(args.stop, v.budget)),
                 "--out", str(args.resdir / "tune.json"),
                 *(["--points", *map(str, args.points)] if args.points else []), *(["--set", *v.overrides] if v.overrides else [])])


if __name__ == "__main__":
    main()
