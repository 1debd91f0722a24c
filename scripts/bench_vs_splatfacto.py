"""Head to head with splatfacto on one GPU: time, quality, memory and Gaussian count from 8 to 256 views.

On generated rooms with 8, 16, 32, 64, 128 and 256 training views (and any nerfstudio-data folder given with
``--data``), through nerfstudio's own Trainer, in this process, with the same dataparser and held-out frames for
both methods (every 8th frame; generated orbits get extra frames so that ``views`` training frames remain):

- ``splatfacto-30k``: nerfstudio's splatfacto as shipped; ``splatfacto-7k``: the same run after 7k iterations
  (a snapshot, as 3DGS reports 7k; its evaluation time is excluded from the 30k run);
- ``ff3r``: ff3r-tiny feedforward only (shipped weights); ``ff3r+refine``: the same run after N refinement steps.

Each row records the stage times (data loading, setup, network forward, voxel merge, optimisation), peak GPU
memory, Gaussian count, held-out PSNR / SSIM (LPIPS only when its weights are on disk) and, for ff3r rows, the
speed-up: splatfacto's seconds / ff3r's seconds at the same view count, where seconds is the reconstruction's
wall time without evaluation. Also measured: rendering fps of the reconstructions at 512x512 and 1920x1080.

Writes ``benchmarks/results/vs_splatfacto.json`` (``--out``), its README section as ``.md`` next to it, and
``benchmarks/plots/vs_splatfacto.png``; ``python scripts/make_results.py`` puts the section into the README.
Results are written after every view count, so an interrupted run keeps the finished ones.

Usage (GPU; gsplat compiles its kernels on the first call, about 220 s, which is not timed):
    python scripts/bench_vs_splatfacto.py --quick            # 8 and 64 views, splatfacto 3000 it. (compressed
                                                             # schedule), 150 refinement steps: a few minutes
    python scripts/bench_vs_splatfacto.py --views 8 16 32    # the full settings, a few view counts per command,
    python scripts/bench_vs_splatfacto.py --views 64 --append    # ... added to the same file
    python scripts/bench_vs_splatfacto.py --data DATASET --views   # a nerfstudio-data folder only
    python scripts/bench_vs_splatfacto.py --device cpu --skip-splatfacto --views 5 --resolution 64   # CPU check
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # run from a checkout without installing; make_results

from ff3r_ns import bench_vs_splatfacto as vs  # noqa: E402
from ff3r_ns.benchmarks import ENVELOPE_KEYS, RESULTS_DIR, machine_info, write_result  # noqa: E402

FULL = {"views": [8, 16, 32, 64, 128, 256], "splatfacto_iters": [30_000, 7_000], "refine_steps": 300}
QUICK = {"views": [8, 64], "splatfacto_iters": [3_000, 700], "refine_steps": 150}
FPS_RESOLUTIONS = ["512x512", "1920x1080"]
DEFINITIONS = {
    "views": "training views; held-out frames (eval_views) are every 8th frame (nerfstudio-data eval_mode=interval), "
             "the same for both methods",
    "seconds": "reconstruction wall time = data_seconds + setup_seconds + forward_seconds + merge_seconds + "
               "optimize_seconds (CUDA-synchronised); excludes evaluation (eval_seconds) and the one-time gsplat "
               "compilation and warm-up",
    "speedup_vs_splatfacto_30k": "splatfacto-30k seconds / this row's seconds, same scene and view count, same run",
    "splatfacto-7k": "the splatfacto-30k run stopped after its short budget (a snapshot; evaluated there, its "
                     "evaluation time excluded from the 30k row)",
    "ff3r+refine": "the ff3r run continued with refinement steps (its seconds include the feedforward stages)",
    "peak_gb": "torch.cuda.max_memory_allocated during the reconstruction, GB (1e9 bytes), reset before each method",
    "psnr/ssim": "means over the held-out frames, ff3r_ns.core.metrics (torchmetrics' definitions) for both methods, "
                 "each model rendering through its own get_outputs_for_camera at the dataset's cameras",
}


PREFIX = ["[vs_splatfacto]"]


def log(msg: str) -> None:
    print(f"{PREFIX[0]} {msg}", flush=True)


def parse_resolution(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"reduced run for one 10-minute command: views {QUICK['views']}, splatfacto "
                        f"{QUICK['splatfacto_iters']} iterations (compressed schedule), {QUICK['refine_steps']} refinement steps")
    p.add_argument("--views", type=int, nargs="*", default=None,
                   help=f"training view counts of the generated scenes (default {FULL['views']}; none: --data only)")
    p.add_argument("--data", type=Path, nargs="*", default=[], help="nerfstudio-data folders to run as well")
    p.add_argument("--splatfacto-iters", type=int, nargs="+", default=None, metavar="N",
                   help=f"FULL [SHORT] iterations (default {FULL['splatfacto_iters']}; SHORT defaults to 7/30 of FULL, "
                        "0 skips it); FULL other than 30000 compresses splatfacto's schedule to it")
    p.add_argument("--refine-steps", type=int, default=None,
                   help=f"ff3r refinement steps (default {FULL['refine_steps']}; 0: feedforward only)")
    p.add_argument("--skip-splatfacto", action="store_true", help="ff3r rows only (splatfacto needs CUDA)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    p.add_argument("--ff3r-method", default="ff3r-tiny", choices=("ff3r-tiny", "ff3r"))
    p.add_argument("--weights", type=Path, default=None,
                   help="FF3R checkpoint (default: the method's, i.e. the shipped ff3r_tiny.pt)")
    p.add_argument("--ff3r-image-size", type=int, default=None, help="network input size (default: the method's)")
    p.add_argument("--resolution", type=int, default=256, help="generated image side (px)")
    p.add_argument("--seed", type=int, default=0, help="generated room (training used seeds >= 1000)")
    p.add_argument("--downscale-factor", type=int, default=1, help="nerfstudio-data downscale_factor (both methods)")
    p.add_argument("--fps-views", type=int, default=None,
                   help="view count whose reconstructions are timed for fps (default 64, else the largest)")
    p.add_argument("--fps-resolutions", nargs="*", default=FPS_RESOLUTIONS, help="WxH (none: skip the fps rows)")
    p.add_argument("--fps-repeats", type=int, default=20)
    p.add_argument("--no-warmup", action="store_true",
                   help="skip the untimed warm-up runs (first timings then include CUDA set-up)")
    p.add_argument("--cache-dir", type=Path, default=ROOT / "outputs" / "bench_vs_splatfacto" / "scenes")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "outputs" / "bench_vs_splatfacto" / "runs")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "vs_splatfacto.json")
    p.add_argument("--plots-dir", type=Path, default=ROOT / "benchmarks" / "plots")
    p.add_argument("--append", action="store_true",
                   help="keep the rows of other scenes/view counts already in --out (same device and mode)")
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the preset's defaults (quick or full) into unset options and check them."""
    preset = QUICK if args.quick else FULL
    args.views = preset["views"] if args.views is None else args.views
    iters = args.splatfacto_iters or preset["splatfacto_iters"]
    if len(iters) > 2 or iters[0] < 1:
        raise SystemExit("--splatfacto-iters takes FULL [SHORT] with FULL >= 1")
    args.full_iters = iters[0]
    args.short_iters = iters[1] if len(iters) == 2 else round(iters[0] * vs.SHORT_FRACTION)
    if not 0 <= args.short_iters < args.full_iters:
        raise SystemExit(f"--splatfacto-iters: SHORT ({args.short_iters}) must be below FULL ({args.full_iters})")
    args.refine_steps = preset["refine_steps"] if args.refine_steps is None else args.refine_steps
    if args.device == "cpu" and not args.skip_splatfacto:
        raise SystemExit("splatfacto needs CUDA (gsplat has no CPU kernels): use a GPU or pass --skip-splatfacto")
    if not args.views and not args.data:
        raise SystemExit("nothing to run: give --views and/or --data")
    args.fps_resolutions = [parse_resolution(r) for r in args.fps_resolutions]
    counts = list(args.views)
    args.fps_views = args.fps_views or (64 if 64 in counts else max(counts, default=None))
    args.mode = "quick" if args.quick else "full"
    return args


def preflight(args: argparse.Namespace) -> None:
    """Name missing packages before any work (nerfstudio's errors would surface minutes later)."""
    needed = ["nerfstudio", "plyfile", "torchmetrics"] + ([] if args.skip_splatfacto else ["gsplat", "pytorch_msssim"])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"missing Python packages: {', '.join(missing)}")
    if not args.skip_splatfacto and importlib.util.find_spec("sklearn") is None:
        log("scikit-learn not installed: splatfacto's initial scales use the same nearest-neighbour distances from torch")
    if importlib.util.find_spec("open3d") is None:
        log("open3d not installed: initial points are read with plyfile (both methods use that dataparser anyway)")


# ------------------------------------------------------------------------------------------------ runs


def warm_up(args: argparse.Namespace, scene: Path) -> None:
    """Untimed: gsplat's kernels (compiled on first use), CUDA libraries and imports, one short run per method."""
    from ff3r_ns.core.cameras import Cameras
    from ff3r_ns.core.gaussians import Gaussians
    from ff3r_ns.core.render import render

    if args.device == "cuda":
        t0 = time.perf_counter()
        g = Gaussians.random(100, feature_dim=4, device="cuda")
        k = torch.tensor([[[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]]], device="cuda")
        render(g, Cameras(torch.eye(4, device="cuda")[None], k, 64, 64))
        torch.cuda.synchronize()
        log(f"warm-up: gsplat kernels ready after {time.perf_counter() - t0:.0f} s (first use compiles them; not timed)")
    t0 = time.perf_counter()
    steps = 2 if args.device == "cuda" else 0  # a refinement step on the CPU takes tens of seconds
    cfg = vs.quiet_trainer_config(ff3r_cfg(args), scene, args.device, steps, args.runs_dir, "warmup")
    vs.build_trainer(cfg).trainer.train()
    if not args.skip_splatfacto:
        cfg = vs.quiet_trainer_config(vs.splatfacto_config(args.full_iters), scene, args.device, 20, args.runs_dir, "warmup")
        vs.build_trainer(cfg).trainer.train()
    vs.release()
    log(f"warm-up: one short run per method in {time.perf_counter() - t0:.1f} s (not timed)")


def ff3r_cfg(args: argparse.Namespace) -> Any:
    return vs.ff3r_config(args.ff3r_method, args.weights, args.ff3r_image_size)


def _eval(tag: str, record: vs.RunRecord, pipeline: Any, lpips: Any) -> None:
    record.evaluation = e = vs.evaluate(pipeline, lpips)
    lp = f", LPIPS {e.lpips:.3f}" if e.lpips is not None else ""
    log(f"{tag} {record.method}: eval PSNR {e.psnr:.2f} dB, SSIM {e.ssim:.3f}{lp} on {e.images} held-out views "
        f"at {e.resolution} ({e.seconds:.1f} s, not timed)")


def _progress(tag: str, name: str, trainer: Any, total: int, start: list[float]) -> None:
    every = max(1, total // 10)

    def report(step: int) -> None:
        if step and (step + 1) % every == 0:
            n = trainer.pipeline.model.num_points
            log(f"{tag} {name}: step {step + 1}/{total}, {time.perf_counter() - start[0]:.1f} s, {n:,} Gaussians")

    vs.add_callback(trainer, report, every=1)


def run_ff3r(args: argparse.Namespace, data: Path, scene: str, fps: bool,
             lpips: Any) -> tuple[list[vs.RunRecord], list[dict]]:
    """ff3r feedforward, evaluated, then (``--refine-steps``) refined and evaluated again."""
    cfg = vs.quiet_trainer_config(ff3r_cfg(args), data, args.device, args.refine_steps, args.runs_dir, "ff3r",
                                  args.downscale_factor)
    built = vs.build_trainer(cfg)
    pipeline = built.trainer.pipeline
    t = pipeline.reconstruction_timings
    dm = pipeline.datamanager
    tag = f"[{scene}, {len(dm.train_dataset)} views]"
    ff = vs.RunRecord(method="ff3r", scene=scene, views=len(dm.train_dataset), eval_views=len(dm.eval_dataset),
                      iterations=0, data_seconds=built.data_seconds,
                      setup_seconds=built.total_seconds - built.data_seconds - t.forward_seconds - t.merge_seconds,
                      optimize_seconds=0.0, peak_gb=vs.peak_gb(args.device), gaussians=pipeline.model.num_points,
                      forward_seconds=t.forward_seconds, merge_seconds=t.merge_seconds,
                      gaussians_predicted=t.gaussians_predicted)
    log(f"{tag} ff3r: data {ff.data_seconds:.2f} s, forward {ff.forward_seconds:.3f} s, merge {ff.merge_seconds:.3f} s, "
        f"setup {ff.setup_seconds:.2f} s -> {ff.gaussians:,} Gaussians (of {t.gaussians_predicted:,}); total "
        f"{ff.seconds:.2f} s" + (f", peak {ff.peak_gb:.2f} GB" if ff.peak_gb is not None else ""))
    _eval(tag, ff, pipeline, lpips)
    records, fps_rows = [ff], []
    if fps:
        fps_rows = fps_of(args, "ff3r", scene, ff.views, vs.splat_gaussians(pipeline.model), pipeline, tag)
    if args.refine_steps > 0:
        vs.reset_peak(args.device)  # the refined run's peak: the larger of the feedforward's and the refinement's
        start = [time.perf_counter()]
        _progress(tag, "ff3r+refine", built.trainer, args.refine_steps, start)
        built.trainer.train()
        vs.sync(args.device)
        peak = vs.peak_gb(args.device)
        rf = vs.with_method(ff, method="ff3r+refine", iterations=args.refine_steps,
                            optimize_seconds=time.perf_counter() - start[0],
                            peak_gb=max(ff.peak_gb, peak) if peak is not None else None)
        log(f"{tag} ff3r+refine: {args.refine_steps} steps in {rf.optimize_seconds:.2f} s; total {rf.seconds:.2f} s")
        _eval(tag, rf, pipeline, lpips)
        records.append(rf)
    return records, fps_rows


def run_splatfacto(args: argparse.Namespace, data: Path, scene: str, fps: bool,
                   lpips: Any) -> tuple[list[vs.RunRecord], list[dict]]:
    """One splatfacto run of the full budget, evaluated at the short budget on the way (a snapshot) and at the end."""
    cfg = vs.quiet_trainer_config(vs.splatfacto_config(args.full_iters), data, args.device, args.full_iters,
                                  args.runs_dir, "splatfacto", args.downscale_factor)
    built = vs.build_trainer(cfg)
    trainer, pipeline = built.trainer, built.trainer.pipeline
    dm = pipeline.datamanager
    tag = f"[{scene}, {len(dm.train_dataset)} views]"
    full = vs.RunRecord(method="splatfacto-30k", scene=scene, views=len(dm.train_dataset),
                        eval_views=len(dm.eval_dataset), iterations=args.full_iters, data_seconds=built.data_seconds,
                        setup_seconds=built.total_seconds - built.data_seconds, optimize_seconds=0.0, peak_gb=None,
                        gaussians=0)  # optimize_seconds, peak_gb and gaussians are filled in after training
    log(f"{tag} splatfacto: data {full.data_seconds:.2f} s, setup {full.setup_seconds:.2f} s "
        f"({pipeline.model.num_points:,} initial Gaussians); {args.full_iters} iterations next")
    start, excluded, records = [time.perf_counter()], [0.0], []

    def snapshot(step: int) -> None:
        vs.sync(args.device)
        short = vs.with_method(full, method="splatfacto-7k", iterations=step + 1,
                               optimize_seconds=time.perf_counter() - start[0], peak_gb=vs.peak_gb(args.device),
                               gaussians=pipeline.model.num_points)
        log(f"{tag} splatfacto-7k: {step + 1} iterations in {short.optimize_seconds:.1f} s, {short.gaussians:,} Gaussians")
        t0 = time.perf_counter()
        _eval(tag, short, pipeline, lpips)
        pipeline.train()
        records.append(short)
        vs.reset_peak(args.device)  # keep the evaluation's memory out of the 30k peak (maxed with the 7k peak below)
        vs.sync(args.device)
        excluded[0] += time.perf_counter() - t0

    if args.short_iters:
        vs.add_callback(trainer, snapshot, at=(args.short_iters - 1,))
    _progress(tag, "splatfacto", trainer, args.full_iters, start)
    start[0] = time.perf_counter()
    trainer.train()
    vs.sync(args.device)
    peaks = [p for p in [vs.peak_gb(args.device), *(r.peak_gb for r in records)] if p is not None]
    full.optimize_seconds = time.perf_counter() - start[0] - excluded[0]
    full.peak_gb, full.gaussians = (max(peaks) if peaks else None), pipeline.model.num_points
    log(f"{tag} splatfacto-30k: {args.full_iters} iterations in {full.optimize_seconds:.1f} s, {full.gaussians:,} "
        f"Gaussians; total {full.seconds:.1f} s" + (f", peak {full.peak_gb:.2f} GB" if full.peak_gb is not None else ""))
    _eval(tag, full, pipeline, lpips)
    fps_rows = []
    if fps:
        fps_rows = fps_of(args, "splatfacto-30k", scene, full.views, vs.splat_gaussians(pipeline.model), pipeline, tag,
                          rgb_only=True)
    return [full, *records], fps_rows


def fps_of(args: argparse.Namespace, method: str, scene: str, views: int, gaussians: Any, pipeline: Any, tag: str,
           rgb_only: bool = False) -> list[dict]:
    """Rendering fps of a finished reconstruction from the first held-out camera (RGB, and RGB + features)."""
    if not args.fps_resolutions:
        return []
    rows = vs.render_fps(gaussians, vs.first_eval_camera(pipeline), args.fps_resolutions,
                         (False,) if rgb_only else (False, True), repeats=args.fps_repeats)
    for r in rows:
        r.update(method=method, scene=scene, views=views)
        log(f"{tag} {method} render: {r['resolution']}, {r['channels']} channels, {r['gaussians']:,} Gaussians: "
            f"{r['fps']:.1f} fps")
    return rows


# ---------------------------------------------------------------------------------------------- output


def _previous(args: argparse.Namespace) -> dict[str, Any]:
    """The rows of --out that this run keeps (--append), after checking they come from a comparable run."""
    if not args.append or not args.out.exists():
        return {"rows": [], "render_fps": [], "commands": [], "kept": {}}
    old = json.loads(args.out.read_text())
    device = machine_info()["device"]
    if old.get("machine", {}).get("device") != device or old.get("mode") != args.mode:
        raise SystemExit(f"--append: {args.out} holds a {old.get('mode')} run on {old.get('machine', {}).get('device')}, "
                         f"this is a {args.mode} run on {device}; use another --out")
    # Keys this script does not write (e.g. rows recorded by hand, such as cold-start timings) are kept as they are.
    ours = ENVELOPE_KEYS | {"render_fps", "commands", "mode", "definitions", "settings"}  # the latter from save()
    return {"rows": old.get("rows", []), "render_fps": old.get("render_fps", []),
            "commands": old.get("commands") or [old.get("command")],
            "kept": {k: v for k, v in old.items() if k not in ours}}


def save(args: argparse.Namespace, rows: list[dict], fps_rows: list[dict], previous: dict[str, Any]) -> Path:
    """Write the JSON (keeping --append rows of other scenes/view counts), its README section and the plot."""
    mine = {(r["scene"], r["views"]) for r in rows}
    kept = [r for r in previous["rows"] if (r.get("scene"), r.get("views")) not in mine]
    kept_fps = [r for r in previous["render_fps"] if (r.get("scene"), r.get("views")) not in mine]
    command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    commands = [*previous["commands"], command]
    all_rows = kept + rows
    vs.add_speedups(all_rows)
    notes = (f"{'QUICK RUN: ' if args.quick else ''}splatfacto {args.full_iters} / {args.short_iters} iterations"
             f"{' (its 30k schedule compressed to this budget)' if args.full_iters != vs.SPLATFACTO_FULL_ITERS else ''}; "
             f"ff3r = {args.ff3r_method} ({args.weights or 'shipped weights'}), {args.refine_steps} refinement steps; "
             f"generated rooms seed {args.seed} at {args.resolution}x{args.resolution}, orbit, held-out frames between "
             "training frames; seconds = data + setup + forward + merge + optimize, without evaluation; LPIPS only "
             "where its weights are on disk.")
    extra = {**previous["kept"], "mode": args.mode, "render_fps": kept_fps + fps_rows, "definitions": DEFINITIONS, "commands": commands,
             "settings": {"views": args.views, "data": [str(d) for d in args.data],
                          "splatfacto_iters": [args.full_iters, args.short_iters],
                          "refine_steps": args.refine_steps, "ff3r_method": args.ff3r_method,
                          "weights": str(args.weights) if args.weights else None, "resolution": args.resolution,
                          "seed": args.seed, "eval_interval": vs.EVAL_INTERVAL}}
    path = write_result("vs_splatfacto", all_rows, quick=args.quick, notes=notes, out=args.out,
                        command="; ".join(commands), extra=extra)
    md = report(path, args.plots_dir)
    path.with_suffix(".md").write_text(md + "\n")
    return path


def report(path: Path, plots_dir: Path) -> str:
    """The README section of ``path`` (table, targets, fps table, plot), rendered by scripts/make_results.py."""
    import make_results as mr  # scripts/ is on sys.path (above)

    return mr.section_markdown(mr.load_result(path), Path(plots_dir), path.resolve().parent, Path(plots_dir).resolve())


def main(argv: Optional[Sequence[str]] = None) -> Path:
    args = resolve(build_parser().parse_args(argv))
    PREFIX[0] = "[vs_splatfacto QUICK]" if args.quick else "[vs_splatfacto]"
    preflight(args)
    label = "QUICK RUN (reduced view counts and iterations; not the issue's 30k comparison)" if args.quick else "full run"
    log(f"mode: {label}; views {args.views}, data {[str(d) for d in args.data]}, splatfacto "
        f"{'skipped' if args.skip_splatfacto else f'{args.full_iters}/{args.short_iters} iterations'}, "
        f"ff3r refinement {args.refine_steps} steps, device {args.device}")
    previous = _previous(args)
    t0 = time.perf_counter()
    scenes = vs.generated_scenes(args.views, args.resolution, args.seed, args.cache_dir)
    log(f"scenes ready in {time.perf_counter() - t0:.1f} s under {args.cache_dir}")
    jobs = [(f"generated-seed{args.seed}", scenes[v], v == args.fps_views) for v in args.views]
    jobs += [(Path(d).name, Path(d), False) for d in args.data]
    if not args.no_warmup:
        warm_up(args, scenes[min(args.views)] if args.views else jobs[0][1])
    from ff3r_ns.core.metrics import make_lpips

    lpips = make_lpips(args.device)
    rows: list[dict] = []
    fps_rows: list[dict] = []
    path = args.out
    for name, data, fps in jobs:
        records, fps_here = run_ff3r(args, data, name, fps, lpips)
        if not args.skip_splatfacto:
            more, fps_more = run_splatfacto(args, data, name, fps, lpips)
            records, fps_here = records + more, fps_here + fps_more
        rows += [r.row() for r in records]
        fps_rows += fps_here
        path = save(args, rows, fps_rows, previous)
        for r in (x for x in rows if x["scene"] == name and x.get("speedup_vs_splatfacto_30k")):
            if r["views"] == records[0].views:
                log(f"[{name}, {r['views']} views] {r['method']}: {r['speedup_vs_splatfacto_30k']:,.1f}x faster than "
                    "splatfacto-30k")
        log(f"wrote {path} ({len(rows)} rows so far)")
    print(report(path, args.plots_dir))
    log(f"mode: {label}. Wrote {path}, {path.with_suffix('.md')} and {Path(args.plots_dir) / 'vs_splatfacto.png'}")
    return path


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
