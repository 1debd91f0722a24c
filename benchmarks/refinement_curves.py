"""One method's held-out PSNR against wall time on one scene, for tuning refinement settings (one GPU).

Unlike ``benchmarks.vs_splatfacto`` (the head-to-head benchmark, every run to its full budget), a curve can
stop early while keeping the schedule of the full budget (``--stop``), and any config field can be overridden,
so that settings are compared on the part of the curve that matters before committing GPU time to full runs.
Rows are appended to ``--out`` (the shared envelope, ``"benchmark": "refinement_curves"``).

Usage:
    python -m benchmarks.refinement_curves SCENE --method ff3r --stop 5000
    python -m benchmarks.refinement_curves SCENE --method splatfacto
    python -m benchmarks.refinement_curves SCENE --label denser --set pipeline.model.refine_every=50 \\
        pipeline.model.warmup_length=200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from benchmarks import timed_runs as vs
from benchmarks.common import RESULTS_DIR, ROOT, command_line, write_result

POINTS = (0, 250, 500, 1000, 1500, 2000, 3000, 4000, 5000, 7000, 10000, 15000, 20000, 30000)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("scene", type=Path, help="nerfstudio-data folder (every 8th frame held out)")
    p.add_argument("--method", default="ff3r", help="ff3r (or another registered ff3r method) or splatfacto")
    p.add_argument("--budget", type=int, default=30000, help="steps the schedules are laid out for")
    p.add_argument("--stop", type=int, default=None, help="stop after this many steps (default: the budget)")
    p.add_argument("--label", default=None, help="row label (default: the method)")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="config overrides")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "refinement_curves.json")
    p.add_argument("--points", type=int, nargs="+", default=None,
                   help=f"steps to evaluate (default: {', '.join(map(str, POINTS))}, up to --stop)")
    args = p.parse_args(argv)
    stop = args.stop or args.budget
    label = args.label or args.method
    vs.seed_everything(0)
    base_cfg = vs.splatfacto_config(args.budget) if args.method == "splatfacto" else vs.ff3r_config(args.method)
    cfg = vs.quiet_trainer_config(base_cfg, args.scene, args.device, args.budget, ROOT / "outputs" / "curves", label)
    for assignment in args.set:
        vs.set_field(cfg, assignment)
    built = vs.build_trainer(cfg)
    trainer, pipeline = built.trainer, built.trainer.pipeline
    t = getattr(pipeline, "reconstruction_timings", None)
    network = (t.forward_seconds + t.merge_seconds) if t else 0.0
    base = vs.RunPoint(
        method=label, scene=args.scene.name, views=len(pipeline.datamanager.train_dataset),
        eval_views=len(pipeline.datamanager.eval_dataset), budget=args.budget, step=0, data_seconds=built.data_seconds,
        setup_seconds=built.total_seconds - built.data_seconds - network, optimize_seconds=0.0,
        peak_gb=vs.peak_gb(args.device), gaussians=pipeline.model.num_points,
        forward_seconds=t.forward_seconds if t else None, merge_seconds=t.merge_seconds if t else None,
    )
    rows: list[dict[str, Any]] = []

    def on_point(record: vs.RunPoint) -> None:
        row = {**record.row(), "overrides": args.set}
        rows.append(row)
        print(f"[{label}] step {row['step']}: {row['seconds']:.1f} s, PSNR {row['psnr']:.2f}, SSIM {row['ssim']:.3f}, "
              f"{row['gaussians']:,} Gaussians", flush=True)
        if row["step"] >= stop:
            trainer.stop_training = True

    steps = sorted({s for s in (args.points or POINTS) if s <= stop} | {stop})
    if args.method == "splatfacto":
        steps = [s for s in steps if s > 0]
    vs.train_and_evaluate(trainer, base, steps, vs.evaluate, on_point=on_point)
    old = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    command = command_line("benchmarks.refinement_curves", argv or None)
    return write_result("refinement_curves", old + rows, quick=stop < args.budget, out=args.out, command=command,
                        notes="each row one evaluated point of a run whose schedule is laid out for `budget` steps; "
                              "runs stopped early are marked by their last step < budget")


if __name__ == "__main__":
    main()
