"""Where a refinement step's time goes on one GPU: ms per step of config variants, and a torch.profiler table.

At 128 views ff3r reaches splatfacto's final PSNR - 0.5 dB at step ~2000-2250, about 1-10 % later than 10x sooner
(``benchmarks/results/vs_splatfacto.json``), so the step's own cost decides that target. Each variant trains
``--steps`` iterations of the shipped method (schedule laid out for its 7500) and reports the synchronised wall time per
step over the second half; then one run is profiled over ``--profile-steps`` iterations after ``--warmup``.

Usage (after ``source scripts/setup_offline_gpu.sh``; writes RESDIR/step_profile.json, in the envelope of
``benchmarks/results/``, and the profiler tables RESDIR/profile_*.txt):
    python -m benchmarks.step_profile RESDIR --views 128
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from benchmarks import timed_runs as vs
from benchmarks.common import ROOT, write_result

VARIANTS: dict[str, list[str]] = {
    "shipped": [],
    "no_feature_loss": ["pipeline.model.feature_loss_weight=0.0"],
    "fixed_decoder": ["pipeline.model.refine_feature_decoder=False"],
    "no_scale_reg": ["pipeline.model.use_scale_regularization=False"],
    "batch2": ["pipeline.datamanager.cameras_per_step=2"],
    "feature_every2": ["pipeline.model.feature_loss_every=2"],
}
"""Label -> ``--set`` overrides of the shipped ``ff3r`` config."""


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _trainer(scene: Path, overrides: Sequence[str], label: str, budget: int) -> Any:
    cfg = vs.quiet_trainer_config(vs.ff3r_config("ff3r"), scene, DEVICE, budget, ROOT / "outputs" / "profile", label)
    for assignment in overrides:
        vs.set_field(cfg, assignment)
    return vs.build_trainer(cfg).trainer


def time_variant(scene: Path, views: int, label: str, steps: int, budget: int) -> dict[str, Any]:
    """Synchronised wall time per step over the second half of ``steps`` iterations."""
    trainer = _trainer(scene, VARIANTS[label], label, budget)
    marks: dict[int, float] = {}

    def mark(step: int) -> None:
        if step + 1 in (steps // 2, steps):
            vs.sync(DEVICE)
            marks[step + 1] = time.perf_counter()
        if step + 1 >= steps:
            trainer.stop_training = True

    vs.add_callback(trainer, mark)
    trainer.train()
    ms = 1000 * (marks[steps] - marks[steps // 2]) / (steps - steps // 2)
    row = {"variant": label, "overrides": VARIANTS[label], "views": views, "steps": steps, "ms_per_step": round(ms, 3),
           "gaussians": trainer.pipeline.model.num_points}
    print(row, flush=True)
    vs.release()
    return row


def profile(scene: Path, resdir: Path, warmup: int, active: int, budget: int) -> None:
    """torch.profiler over ``active`` iterations after ``warmup``: tables by self CUDA and self CPU time."""
    from torch.profiler import ProfilerActivity, schedule

    trainer = _trainer(scene, [], "profile", budget)
    prof = torch.profiler.profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else []),
                                  schedule=schedule(wait=0, warmup=warmup, active=active, repeat=1))

    def step(it: int) -> None:
        prof.step()
        if it + 1 >= warmup + active + 1:
            trainer.stop_training = True

    vs.add_callback(trainer, step)
    with prof:
        trainer.train()
    averages = prof.key_averages()
    keys = ("self_cuda_time_total",) if DEVICE == "cuda" else ()
    for key in (*keys, "self_cpu_time_total", "cpu_time_total"):
        table = averages.table(sort_by=key, row_limit=40, max_name_column_width=90)
        (resdir / f"profile_{key}.txt").write_text(table)
        print(key, "\n", "\n".join(table.splitlines()[:28]), flush=True)
    vs.release()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("resdir", type=Path)
    p.add_argument("--views", type=int, default=128)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--steps", type=int, default=1000, help="iterations per timed variant")
    p.add_argument("--budget", type=int, default=7500, help="steps the schedules are laid out for")
    p.add_argument("--warmup", type=int, default=400)
    p.add_argument("--profile-steps", type=int, default=50, help="0: no profiler run")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args(argv)
    args.resdir.mkdir(parents=True, exist_ok=True)
    scene = vs.generated_scenes([args.views], args.resolution, 0, args.resdir / "scenes")[args.views]
    if args.profile_steps > 0:
        profile(scene, args.resdir, args.warmup, args.profile_steps, args.budget)
    rows = []
    for label in args.variants:
        rows.append(time_variant(scene, args.views, label, args.steps, args.budget))
        write_result("step_profile", rows, out=args.resdir / "step_profile.json",
                     notes=f"ms per refinement step (synchronised wall time) over steps {args.steps // 2}-{args.steps} of the "
                           f"shipped ff3r method on the generated {args.views}-view room, schedule laid out for {args.budget} steps")


if __name__ == "__main__":
    main()
