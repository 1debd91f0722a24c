"""Multi-GPU training benchmark: ``ff3r-train`` under ``torchrun`` on 1 and N GPUs at the same global batch.

What it does:

1. generates (or reuses) training scenes with ``ff3r-make-scene`` (seeds 1000.., the training range; cached
   under ``outputs/bench_multigpu/``);
2. on CUDA, a short one-process warm-up run first, so gsplat's first-use JIT compile (~220 s) is cached
   before anything is timed;
3. runs ``torchrun --standalone --nproc_per_node P ff3r-train ...`` for P = 1 (``--batch-scenes G``) and
   P = N (``--batch-scenes G/N``): the same seed, steps and global batch G. ``ff3r-train`` draws each
   step's global batch from one generator and splits it by rank (equal counts, balanced numbers of views),
   and DDP averages the ranks' gradients, so the two runs see the same samples and take the same optimiser
   steps up to floating-point summation order;
4. reads the per-step records ``ff3r-train --metrics-jsonl`` writes (rank 0: loss terms averaged over ranks,
   seconds since training started; every rank's peak CUDA memory at the end), measures steps/s after the
   warm-up steps (the first ``--warmup-fraction`` of them), and compares the two runs' loss curves;
5. writes ``benchmarks/results/multigpu.json`` (the shared envelope, ``benchmarks.common.write_result``)
   and the loss-curve plot ``benchmarks/plots/multigpu.png`` (drawn by ``benchmarks.make_results``, the
   same code that renders the README's results block).

NCCL runs with ``NCCL_NVLS_ENABLE=0`` (NVLink multicast off). ``--device cpu --backend gloo`` runs the same
comparison with CPU processes (one thread each: one process stands for one GPU), which is how the test
suite checks this script.

Usage::

    python -m benchmarks.multigpu                          # 2 GPUs vs 1, 80 steps, global batch 8
    python -m benchmarks.multigpu --device cpu --backend gloo --steps 8 --image-size 28 --quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional, Sequence

from benchmarks.common import PLOTS_DIR, RESULTS_DIR, ROOT, write_result

SHIPPED = ROOT / "ff3r_ns" / "weights" / "ff3r_tiny.pt"
# The shipped model's stage 2 ran ~0.2 s per scene sample on one H100 (1200 steps at batch 2 in 470 s), so 80 steps
# at global batch 8 take ~2 min on one GPU and ~1 min on two: with three launches' start-up, ~5 min after the compile.
DEFAULT_STEPS = 80
DEFAULT_GLOBAL_BATCH = 8  # 4 scenes per GPU: context sizes vary (2..max-views), and a step waits for the slowest
                          # rank, so fewer scenes per GPU would measure that imbalance more than the scaling


def make_scenes(root: Path, count: int, views: int, size: int, jobs: int) -> Path:
    """``count`` scenes (seeds 1000..) of ``views`` views at ``size`` px under ``root``; existing ones are kept.

    Scenes come from the repo's generator (``ff3r-make-scene``, as ``scripts/train_shipped_model.sh`` makes
    them), one process per scene because generation is single-threaded numpy.
    """
    root.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> None:
        seed, trajectory = 1000 + i, ("orbit", "walk")[i % 2]
        out = root / f"room{seed}"
        if (out / "transforms.json").is_file():
            return
        cmd = [sys.executable, "-m", "ff3r_ns.data.make_scene", str(out), "--seed", str(seed), "--views", str(views),
               "--width", str(size), "--height", str(size), "--trajectory", trajectory, "--num-points", "2000",
               "--overwrite"]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if res.returncode != 0:
            raise RuntimeError(f"ff3r-make-scene failed for seed {seed}:\n{res.stderr[-2000:]}")

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        list(pool.map(one, range(count)))
    return root


def launch(nproc: int, train_args: Sequence[str], env: dict[str, str], log: Path) -> float:
    """Run ``torchrun --standalone --nproc_per_node nproc ff3r-train train_args``; returns its wall seconds.

    ``python -m torch.distributed.run`` is ``torchrun``; ``-m ff3r_ns.training.train`` is ``ff3r-train``
    (neither needs the console scripts on PATH). The output goes to ``log``; a failure raises with its tail.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "ff3r_ns.training.train", *train_args]
    print(f"[bench_multigpu] {nproc} process(es): {shlex.join(cmd)}", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"ff3r-train on {nproc} process(es) failed (exit {res.returncode}); log {log}:\n"
                           + log.read_text()[-4000:])
    return wall


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The per-step records and the final record of an ``ff3r-train --metrics-jsonl`` file."""
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    steps = [r for r in records if not r.get("final")]
    final = next((r for r in reversed(records) if r.get("final")), None)
    if not steps or final is None:
        raise ValueError(f"{path}: no step records or no final record (did the run finish?)")
    return steps, final


def steps_per_second(steps: Sequence[dict[str, Any]], warmup_fraction: float) -> tuple[float, int]:
    """Steps/s over the steps after the first ``warmup_fraction`` (at least one step is left out: it holds
    one-time costs such as loading gsplat's kernels and the allocator's growth). Returns (rate, timed steps)."""
    n = len(steps)
    if n < 2:
        raise ValueError("need at least 2 steps to time")
    skip = min(n - 1, max(1, math.ceil(warmup_fraction * n)))
    seconds = steps[-1]["time"] - steps[skip - 1]["time"]
    return (n - skip) / seconds, n - skip


def compare_losses(a: Sequence[float], b: Sequence[float], rtol: float) -> dict[str, Any]:
    """Per-step total-loss differences of two runs and the verdict ``max relative difference <= rtol``."""
    if len(a) != len(b):
        raise ValueError(f"the runs have {len(a)} and {len(b)} steps")
    diff = [abs(x - y) for x, y in zip(a, b)]
    rel = [d / max(abs(x), 1e-12) for d, x in zip(diff, a)]
    finite = all(math.isfinite(v) for v in (*a, *b))
    return {"loss_steps": len(a), "loss_max_abs_diff": max(diff), "loss_mean_abs_diff": sum(diff) / len(diff),
            "loss_max_rel_diff": max(rel), "loss_rtol": rtol, "losses_agree": bool(finite and max(rel) <= rtol)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--nproc", type=int, default=2, help="GPUs (processes) of the multi-GPU run, compared with 1")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    p.add_argument("--backend", choices=("nccl", "gloo"), default=None,
                   help="default: nccl on cuda, gloo on cpu (ff3r-train picks it from the device; checked here)")
    p.add_argument("--global-batch", type=int, default=DEFAULT_GLOBAL_BATCH, help="scenes per step over all ranks (divisible by --nproc)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="steps of each run")
    p.add_argument("--warmup-fraction", type=float, default=0.2, help="leading share of steps left out of steps/s")
    p.add_argument("--rtol", type=float, default=0.01, help="the curves agree when every step's relative total-loss difference is <= this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--image-size", type=int, default=112, help="network input (ff3r-tiny's)")
    p.add_argument("--max-views", type=int, default=8, help="context size is drawn from 2..max-views")
    p.add_argument("--init", default=None, help="ff3r-train --init (default: the shipped ff3r-tiny weights for --preset tiny; 'none': random)")
    p.add_argument("--num-scenes", type=int, default=16)
    p.add_argument("--scene-views", type=int, default=16)
    p.add_argument("--scene-size", type=int, default=112, help="generated image side (px)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel scene generation")
    p.add_argument("--threads-per-proc", type=int, default=None,
                   help="OMP_NUM_THREADS of every rank (default: 1 on cpu, cpus / nproc on cuda, the same in both runs)")
    p.add_argument("--compile-warmup", action=argparse.BooleanOptionalAction, default=None,
                   help="one 2-step run before timing (default: on for cuda, for gsplat's first-use compile)")
    p.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench_multigpu", help="scenes, checkpoints, logs")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "multigpu.json")
    p.add_argument("--plots-dir", type=Path, default=PLOTS_DIR)
    p.add_argument("--quick", action="store_true", help="mark the result as a reduced run")
    p.add_argument("train_extra", nargs=argparse.REMAINDER,
                   help="after '--': more ff3r-train flags for every run (e.g. -- --lr 5e-4)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> Path:
    """Run the comparison; returns the JSON path."""
    args = build_parser().parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    backend = args.backend or ("nccl" if device == "cuda" else "gloo")
    if (device, backend) not in (("cuda", "nccl"), ("cpu", "gloo")):
        raise SystemExit(f"--device {device} --backend {backend}: ff3r-train uses nccl on cuda and gloo on cpu")
    if device == "cuda" and torch.cuda.device_count() < args.nproc:
        raise SystemExit(f"--nproc {args.nproc} but only {torch.cuda.device_count()} CUDA device(s)")
    if args.nproc < 2 or args.global_batch % args.nproc:
        raise SystemExit(f"need --nproc >= 2 dividing --global-batch, got {args.nproc} and {args.global_batch}")
    extra = [a for a in args.train_extra if a != "--"]
    init = args.init if args.init is not None else (str(SHIPPED) if args.preset == "tiny" and SHIPPED.is_file() else "none")
    threads = args.threads_per_proc or (1 if device == "cpu" else max(1, (os.cpu_count() or 1) // args.nproc))
    env = {**os.environ, "NCCL_NVLS_ENABLE": "0", "OMP_NUM_THREADS": str(threads)}

    scenes = make_scenes(args.work / f"scenes_{args.scene_views}v_{args.scene_size}px", args.num_scenes,
                         args.scene_views, args.scene_size, args.jobs)
    common = ["--scenes", str(scenes), "--preset", args.preset, "--image-size", str(args.image_size),
              "--max-views", str(args.max_views), "--seed", str(args.seed), "--device", device, "--writer", "none",
              "--no-progress", "--log-every", str(args.steps), "--save-every", str(args.steps)]
    common += ["--init", init] if init != "none" else []
    if args.compile_warmup if args.compile_warmup is not None else device == "cuda":
        # One scene folder is enough to run gsplat once, and loads faster than all of them.
        warmup = [*common, *extra, "--scenes", str(scenes / "room1000"), "--steps", "2", "--batch-scenes", "1",
                  "--out", str(args.work / "warmup.pt")]
        launch(1, warmup, env, args.work / "logs" / "warmup.log")

    rows: list[dict[str, Any]] = []
    for nproc in (1, args.nproc):
        batch = args.global_batch // nproc
        metrics = args.work / f"metrics_{nproc}.jsonl"
        train_args = [*common, *extra, "--steps", str(args.steps), "--batch-scenes", str(batch),
                      "--out", str(args.work / f"run_{nproc}.pt"), "--metrics-jsonl", str(metrics)]
        wall = launch(nproc, train_args, env, args.work / "logs" / f"run_{nproc}.log")
        steps, final = read_metrics(metrics)
        sps, timed = steps_per_second(steps, args.warmup_fraction)
        peaks = [p for p in final["peak_gb_per_rank"] if p is not None]
        rows.append({
            "gpus": nproc, "device": device, "backend": backend, "batch_per_gpu": batch,
            "global_batch": final["global_batch"], "steps": len(steps), "timed_steps": timed,
            "steps_per_second": sps, "samples_per_second": sps * final["global_batch"],
            "peak_gb_per_gpu": max(peaks) if peaks else None, "peak_gb_per_rank": final["peak_gb_per_rank"],
            "final_loss": steps[-1]["total"], "wall_seconds": wall, "loss_curve": [s["total"] for s in steps],
        })
        print(f"[bench_multigpu] {nproc} process(es): {sps:.3f} steps/s over {timed} steps, wall {wall:.1f} s", flush=True)

    one, many = rows
    many["speedup"] = many["steps_per_second"] / one["steps_per_second"]
    many["scaling_efficiency"] = many["speedup"] / args.nproc
    summary = {"speedup": many["speedup"], "scaling_efficiency": many["scaling_efficiency"],
               **compare_losses(one["loss_curve"], many["loss_curve"], args.rtol)}
    unit = "GPU" if device == "cuda" else "CPU process (1 thread each)" if threads == 1 else f"CPU process ({threads} threads each)"
    notes = (f"ff3r-train under torchrun ({backend}, NCCL_NVLS_ENABLE=0), preset {args.preset}, init {Path(init).name}, "
             f"image size {args.image_size}, 2..{args.max_views} views per context, {args.num_scenes} generated scenes "
             f"(seeds 1000+, {args.scene_views} views at {args.scene_size} px), seed {args.seed}, {args.steps} steps; one {unit} "
             f"per rank, OMP_NUM_THREADS={threads}; 1 rank at --batch-scenes {args.global_batch} vs {args.nproc} ranks at "
             f"--batch-scenes {args.global_batch // args.nproc} (same global batch: the same samples each step, split "
             f"by rank with balanced numbers of views). "
             f"steps/s over the steps after the first {args.warmup_fraction:.0%}"
             + (" (gsplat compiled by a 2-step warm-up run before timing)" if device == "cuda" else "")
             + "; loss curves: per-step total loss averaged over ranks; peak_gb = torch.cuda.max_memory_allocated per rank."
             + (f" Extra ff3r-train flags: {shlex.join(extra)}." if extra else ""))
    path = write_result("multigpu", rows, quick=args.quick or args.steps < DEFAULT_STEPS, notes=notes, out=args.out,
                        extra={"summary": summary})
    from benchmarks import make_results as mr  # the README's plot code (matplotlib: imported only here)

    plots = mr.multigpu_plot(mr.load_result(path), args.plots_dir)
    print(f"[bench_multigpu] speed-up {summary['speedup']:.2f}x (efficiency {summary['scaling_efficiency']:.0%}); "
          f"loss curves: max |diff| {summary['loss_max_abs_diff']:.3g}, max rel {summary['loss_max_rel_diff']:.3g} "
          f"({'agree' if summary['losses_agree'] else 'DIFFER'} at rtol {args.rtol:g}) -> {path}, "
          + ", ".join(str(p) for p in plots), flush=True)
    return path


if __name__ == "__main__":
    main()
