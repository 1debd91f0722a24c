"""Time to quality against splatfacto on one GPU: held-out PSNR against wall time, both methods, 8 to 128 views.

On generated rooms with 8, 32, 64 and 128 training views (and any nerfstudio-data folder given with ``--data``),
through nerfstudio's own Trainer, in this process, with the same dataparser and held-out frames for both methods
(every 8th frame; generated orbits get extra frames so that ``views`` training frames remain):

- ``splatfacto``: nerfstudio's splatfacto as shipped, one run of ``--steps`` iterations (30k; another budget
  compresses its schedule to it);
- ``ff3r``: the registered ff3r method (``--ff3r-method``): the feedforward reconstruction at setup, then its
  refinement steps (its method config lays its schedule out for that budget): the method's own budget, as
  ``ns-train`` runs it, unless ``--steps`` (both methods) or ``--ff3r-steps`` says otherwise.

Each run is evaluated at ``--eval-steps`` and at step 0 (ff3r: its feedforward result; splatfacto: its
initialisation): one row per point with
``seconds`` = the reconstruction's wall time up to that step (data loading, setup, network forward, voxel merge,
optimisation so far; CUDA-synchronised; the evaluations themselves are not counted), held-out PSNR / SSIM (LPIPS
only when its weights are on disk), Gaussian count and peak GPU memory. A ``summary`` holds, per view count, the
time-to-quality checks: splatfacto's final PSNR, the first ff3r point within 0.5 dB of it and the speed-up to it
(target >= 10x at 64 and 128 views), whether ff3r is ahead of splatfacto's curve at every one of its points, and
whether its final PSNR and Gaussian count beat splatfacto's (definitions in the file).
Also measured, unless ``--fps-resolutions`` is given empty: rendering fps of each finished reconstruction
(``--fps-views``) at 512x512 and 1920x1080.

Writes ``benchmarks/results/vs_splatfacto.json`` (``--out``; ``vs_splatfacto_quick.json`` with ``--quick``), its
README section as ``.md`` next to it, and ``benchmarks/plots/<out name>.png``; ``python -m benchmarks.make_results``
puts the section into the README. Results are written after every run, so an interrupted command keeps the
finished ones.

Usage (GPU; gsplat compiles its kernels on a machine's first use, about 200 s, which is not timed; a 30k run of one
method at one view count takes about 5-6 minutes on an H100: where commands have a time limit, run one method and
view count per command and join them with --append; a command without --append replaces the file):
    python -m benchmarks.vs_splatfacto --quick           # 8 and 64 views, 3000 steps each: one 10-minute command
    python -m benchmarks.vs_splatfacto --views 64 --skip-ff3r                  # splatfacto 30k at 64 views
    python -m benchmarks.vs_splatfacto --views 64 --skip-splatfacto --append   # ff3r (its 7500) into the same file
    python -m benchmarks.vs_splatfacto --data DATASET --views        # a nerfstudio-data folder only
    python -m benchmarks.vs_splatfacto --device cpu --skip-splatfacto --views 5 --resolution 32 --steps 4 \
        --eval-steps 2 4                                                # CPU check (ff3r rows only)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from benchmarks import timed_runs as vs
from benchmarks.common import (
    ENVELOPE_KEYS, PLOTS_DIR, RESULTS_DIR, ROOT, command_line, machine_info, timed, write_result,
)
from benchmarks.vs_splatfacto_summary import DEFINITIONS, summarize
from ff3r_ns.core.cameras import Cameras
from ff3r_ns.core.gaussians import Gaussians

FULL = {"views": [8, 32, 64, 128], "steps": vs.SPLATFACTO_FULL_ITERS, "eval_steps": None}
QUICK = {"views": [8, 64], "steps": 3000, "eval_steps": [0, 250, 500, 1000, 1500, 2000, 2500, 3000]}
FPS_RESOLUTIONS = ["512x512", "1920x1080"]


PREFIX = ["[vs_splatfacto]"]


def log(msg: str) -> None:
    print(f"{PREFIX[0]} {msg}", flush=True)


def parse_resolution(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


class _Help(argparse.RawDescriptionHelpFormatter):
    """The module docstring as the description; "(default: X)" where the help text does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    methods = list(vs.ff3r_methods())
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_Help)
    p.add_argument("--quick", action="store_true",
                   help=f"reduced run for one 10-minute GPU command: views {QUICK['views']}, {QUICK['steps']} steps per "
                        f"method (splatfacto's schedule compressed), evaluated at {QUICK['eval_steps']}; writes "
                        "vs_splatfacto_quick.json, marked quick")
    p.add_argument("--views", type=int, nargs="*", default=None,
                   help=f"training view counts of the generated scenes (default {FULL['views']}; none: --data only)")
    p.add_argument("--data", type=Path, nargs="*", default=[], help="nerfstudio-data folders to run as well")
    p.add_argument("--steps", type=int, default=None,
                   help=f"steps per run for both methods (default {FULL['steps']}); splatfacto's schedule is compressed "
                        "to it, ff3r's method config lays its own out for it")
    p.add_argument("--ff3r-steps", type=int, default=None,
                   help="ff3r's refinement steps when they differ from --steps, e.g. 7500 with 4 images per step: as "
                        "many training images as splatfacto's 30k steps of one (default: a full run without --steps "
                        "takes the method's own --max-num-iterations, as ns-train does; otherwise --steps)")
    p.add_argument("--eval-steps", type=int, nargs="+", default=None, metavar="STEP",
                   help=f"steps to evaluate at (the budget is always added, steps past it dropped; 0 = before "
                        f"training, always done). Default: {list(vs.DEFAULT_EVAL_STEPS)} clipped to --steps, "
                        f"or that list scaled to --steps when clipping leaves fewer than {vs.MIN_POINTS} points")
    p.add_argument("--skip-splatfacto", action="store_true", help="ff3r rows only (splatfacto needs CUDA)")
    p.add_argument("--skip-ff3r", action="store_true",
                   help="splatfacto rows only (e.g. one method per command, joined with --append)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"),
                   help="where both methods run (default: cuda when there is one)")
    p.add_argument("--ff3r-method", default="ff3r" if "ff3r" in methods else methods[0], choices=methods,
                   help="registered ff3r method (ff3r_ns.method_configs)")
    p.add_argument("--weights", type=Path, default=None, help="FF3R checkpoint (default: the method's)")
    p.add_argument("--ff3r-image-size", type=int, default=None, help="network input size (default: the method's)")
    p.add_argument("--resolution", type=int, default=256, help="generated image side (px)")
    p.add_argument("--seed", type=int, default=0, help="generated room (training used seeds >= 1000)")
    p.add_argument("--downscale-factor", type=int, default=1, help="nerfstudio-data downscale_factor (both methods)")
    p.add_argument("--fps-views", type=int, default=None,
                   help="view count whose final reconstructions are timed for fps (default 64, else the largest)")
    p.add_argument("--fps-resolutions", nargs="*", default=FPS_RESOLUTIONS, help="WxH (none: skip the fps rows)")
    p.add_argument("--fps-repeats", type=int, default=20, help="frames timed per fps row (median)")
    p.add_argument("--no-warmup", action="store_true",
                   help="skip the untimed warm-up runs (first timings then include CUDA set-up and gsplat's compile)")
    p.add_argument("--cache-dir", type=Path, default=ROOT / "outputs" / "bench_vs_splatfacto" / "scenes",
                   help="generated scenes (reused between commands)")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "outputs" / "bench_vs_splatfacto" / "runs",
                   help="nerfstudio output folders (dataparser transforms, ff3r's config.yml; no checkpoints)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"result JSON (default {RESULTS_DIR / 'vs_splatfacto.json'}; with --quick "
                        f"{RESULTS_DIR / 'vs_splatfacto_quick.json'})")
    p.add_argument("--plots-dir", type=Path, default=PLOTS_DIR, help="where the PNG goes")
    p.add_argument("--append", action="store_true",
                   help="keep the rows of other methods/scenes/view counts already in --out (same device, mode and "
                        "--steps)")
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the preset's defaults (quick or full) into unset options and check them."""
    preset = QUICK if args.quick else FULL
    args.views = preset["views"] if args.views is None else args.views
    if args.ff3r_steps is None:
        # A full run without --steps runs each method as ns-train does; otherwise both take --steps.
        own = args.steps is None and not args.quick
        args.ff3r_steps = ff3r_cfg(args).max_num_iterations if own else args.steps or preset["steps"]
    args.steps = preset["steps"] if args.steps is None else args.steps
    if args.steps < 1:
        raise SystemExit("--steps must be >= 1")
    requested = args.eval_steps if args.eval_steps is not None else preset["eval_steps"]
    if any(s < 0 for s in requested or ()):
        raise SystemExit("--eval-steps must be >= 0")
    if args.ff3r_steps < 1:
        raise SystemExit("--ff3r-steps must be >= 1")
    # Both methods are also scored before training (ff3r: its feedforward result; splatfacto: its initialisation
    # from the dataset's points), so that neither curve is credited with a score before it had one.
    args.eval_steps = sorted({0, *vs.eval_steps(args.steps, requested)})
    args.dropped_eval_steps = sorted(s for s in requested or () if s > max(args.steps, args.ff3r_steps))
    # A shorter ff3r run: its own places in the schedule and splatfacto's steps within it (a finer curve early on).
    args.ff3r_eval_steps = sorted({0, *vs.eval_steps(args.ff3r_steps, requested),
                                   *(s for s in args.eval_steps if s <= args.ff3r_steps)})
    if args.skip_ff3r and args.skip_splatfacto:
        raise SystemExit("--skip-ff3r and --skip-splatfacto leave nothing to run")
    if args.device == "cpu" and not args.skip_splatfacto:
        raise SystemExit("splatfacto needs CUDA (gsplat has no CPU kernels): use a GPU or pass --skip-splatfacto")
    if not args.views and not args.data:
        raise SystemExit("nothing to run: give --views and/or --data")
    args.fps_resolutions = [parse_resolution(r) for r in args.fps_resolutions]
    counts = list(args.views)
    args.fps_views = args.fps_views or (64 if 64 in counts else max(counts, default=None))
    args.mode = "quick" if args.quick else "full"
    args.out = args.out or RESULTS_DIR / ("vs_splatfacto_quick.json" if args.quick else "vs_splatfacto.json")
    args.methods = [m for m, skip in (("ff3r", args.skip_ff3r), ("splatfacto", args.skip_splatfacto)) if not skip]
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
    from ff3r_ns.core.render import render

    if args.device == "cuda":
        t0 = time.perf_counter()
        g = Gaussians.random(100, feature_dim=4, device="cuda")
        k = torch.tensor([[[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]]], device="cuda")
        render(g, Cameras(torch.eye(4, device="cuda")[None], k, 64, 64))
        torch.cuda.synchronize()
        log(f"warm-up: gsplat kernels ready after {time.perf_counter() - t0:.0f} s (first use compiles them; not timed)")
    t0 = time.perf_counter()
    # In the reverse of the timed order, so that the run timed first follows its own warm-up: on an H200 the first
    # ff3r run after splatfacto's warm-up paid a one-off 3.9 s in its setup (5.13 s; 1.25 and 1.20 s in the next
    # two runs of the same process), which no user's ns-train process pays.
    for method in reversed(args.methods):
        steps = 0 if method == "ff3r" and args.device != "cuda" else 20  # a refinement step on the CPU can take seconds
        built = vs.build_trainer(vs.quiet_trainer_config(method_config(args, method), scene, args.device, steps,
                                                         args.runs_dir, "warmup"))
        built.trainer.train()
        log(f"warm-up: {method} set up in {built.total_seconds:.2f} s (data {built.data_seconds:.2f} s; not timed)")
    vs.release()
    log(f"warm-up: one short run per method in {time.perf_counter() - t0:.1f} s (not timed)")


def ff3r_cfg(args: argparse.Namespace) -> Any:
    return vs.ff3r_config(args.ff3r_method, args.weights, args.ff3r_image_size)


def method_config(args: argparse.Namespace, method: str) -> Any:
    """The trainer config ``method`` ("ff3r" or "splatfacto") runs with, before the scene and budget are set."""
    return ff3r_cfg(args) if method == "ff3r" else vs.splatfacto_config(args.steps)


def _progress(tag: str, name: str, trainer: Any, total: int) -> None:
    every = max(1, total // 10)

    def report(step: int) -> None:
        if (step + 1) % every == 0:
            log(f"{tag} {name}: step {step + 1}/{total}, {trainer.pipeline.model.num_points:,} Gaussians")

    vs.add_callback(trainer, report, every=1)


def _logger(tag: str) -> Any:
    def point(r: vs.RunPoint) -> None:
        e = r.evaluation
        lp = f", LPIPS {e.lpips:.3f}" if e.lpips is not None else ""
        peak = f", peak {r.peak_gb:.2f} GB" if r.peak_gb is not None else ""
        log(f"{tag} {r.method} step {r.step}/{r.budget}: {r.seconds:.2f} s, PSNR {e.psnr:.2f} dB, SSIM {e.ssim:.3f}{lp}, "
            f"{r.gaussians:,} Gaussians{peak} (eval of {e.images} views at {e.resolution}: {e.seconds:.2f} s, not timed)")

    return point


def run_method(args: argparse.Namespace, method: str, data: Path, scene: str, fps: bool,
               lpips: Any) -> tuple[list[vs.RunPoint], list[dict]]:
    """One run of ``method`` ("ff3r" or "splatfacto") over the whole budget, evaluated at its eval steps."""
    is_ff3r = method == "ff3r"
    steps, eval_at = (args.ff3r_steps, args.ff3r_eval_steps) if is_ff3r else (args.steps, args.eval_steps)
    cfg = vs.quiet_trainer_config(method_config(args, method), data, args.device, steps, args.runs_dir, method, args.downscale_factor)
    built = vs.build_trainer(cfg)
    trainer, pipeline = built.trainer, built.trainer.pipeline
    dm = pipeline.datamanager
    tag = f"[{scene}, {len(dm.train_dataset)} views]"
    t = pipeline.reconstruction_timings if is_ff3r else None
    forward, merge = (t.forward_seconds, t.merge_seconds) if t is not None else (None, None)
    base = vs.RunPoint(method=method, scene=scene, views=len(dm.train_dataset), eval_views=len(dm.eval_dataset),
                        budget=steps, step=0, data_seconds=built.data_seconds,
                        setup_seconds=built.total_seconds - built.data_seconds - (forward or 0.0) - (merge or 0.0),
                        optimize_seconds=0.0, peak_gb=vs.peak_gb(args.device), gaussians=pipeline.model.num_points,
                        forward_seconds=forward, merge_seconds=merge,
                        gaussians_predicted=t.gaussians_predicted if t is not None else None)
    stages = f", forward {forward:.3f} s, merge {merge:.3f} s" if t is not None else ""
    log(f"{tag} {method}: data {base.data_seconds:.2f} s{stages}, setup {base.setup_seconds:.2f} s -> "
        f"{base.gaussians:,} Gaussians; {steps} steps next, evaluated at {eval_at}")
    _progress(tag, method, trainer, steps)
    records = vs.train_and_evaluate(trainer, base, eval_at, lambda p: vs.evaluate(p, lpips), _logger(tag))
    last = records[-1]
    log(f"{tag} {method}: {last.step} steps, {last.seconds:.1f} s in all ({last.optimize_seconds:.1f} s optimising), "
        f"final PSNR {last.evaluation.psnr:.2f} dB")
    fps_rows = fps_of(args, method, scene, base.views, steps, splat_gaussians(pipeline.model), pipeline, tag,
                      rgb_only=not is_ff3r) if fps else []
    return records, fps_rows


def fps_of(args: argparse.Namespace, method: str, scene: str, views: int, step: int, gaussians: Any, pipeline: Any,
           tag: str, rgb_only: bool = False) -> list[dict]:
    """Rendering fps of a finished reconstruction from the first held-out camera (RGB, and RGB + features)."""
    if not args.fps_resolutions:
        return []
    rows = render_fps(gaussians, first_eval_camera(pipeline), args.fps_resolutions,
                      (False,) if rgb_only else (False, True), repeats=args.fps_repeats)
    for r in rows:
        r.update(method=method, scene=scene, views=views, step=step)
        log(f"{tag} {method} render: {r['resolution']}, {r['channels']} channels, {r['gaussians']:,} Gaussians: "
            f"{r['fps']:.1f} fps")
    return rows


def splat_gaussians(model: Any) -> Gaussians:
    """A SplatfactoModel's (or FF3RModel's) ``gauss_params`` as activated :class:`Gaussians` (features if any)."""
    p = model.gauss_params
    n = p["means"].shape[0]
    features = p["sem_features"] if "sem_features" in p else p["means"].new_zeros(n, 0)
    return Gaussians(means=p["means"], quats=torch.nn.functional.normalize(p["quats"], dim=-1),
                     scales=torch.exp(p["scales"]), opacities=torch.sigmoid(p["opacities"]).squeeze(-1),
                     sh=torch.cat([p["features_dc"][:, None, :], p["features_rest"]], dim=1),
                     features=features).detach()


def camera_at(camera: Cameras, width: int, height: int) -> Cameras:
    """One camera with ``camera``'s pose and horizontal field of view, at ``width x height`` (square pixels)."""
    f = float(camera.intrinsics[0, 0, 0]) * width / camera.width
    k = torch.tensor([[[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]]])
    return Cameras(camera.world_to_cam[:1], k.to(camera.world_to_cam), width, height)


@torch.no_grad()
def render_fps(gaussians: Gaussians, camera: Cameras, resolutions: Sequence[tuple[int, int]], features: Sequence[bool],
               repeats: int = 20, warmup: int = 3) -> list[dict[str, Any]]:
    """Frames per second of :func:`ff3r_ns.core.render.render` (gsplat on CUDA), median of ``repeats`` frames.

    Args:
        gaussians: the reconstruction.
        camera: the pose to render from (its field of view is kept, see :func:`camera_at`).
        resolutions: ``(width, height)`` pairs.
        features: for each entry, a row with (True) or without (False) the semantic feature channels.
    """
    from ff3r_ns.core.render import render

    device = str(gaussians.device)
    rows = []
    for (w, h) in resolutions:
        cam = camera_at(camera, w, h).to(gaussians.device)
        for with_features in features:
            if with_features and gaussians.feature_dim == 0:
                continue
            sec = timed(lambda: render(gaussians, cam, render_features=with_features), repeats=repeats, warmup=warmup,
                        sync=lambda: vs.sync(device))
            rows.append({"gaussians": gaussians.num, "resolution": f"{w}x{h}",
                         "channels": 3 + (gaussians.feature_dim if with_features else 0), "fps": 1.0 / sec,
                         "ms": 1e3 * sec})
    return rows


def first_eval_camera(pipeline: Any) -> Cameras:
    """The first held-out frame's camera (dataset frame) as a core camera."""
    from ff3r_ns.nerfstudio.model import ns_to_core_cameras

    return ns_to_core_cameras(pipeline.datamanager.eval_dataset.cameras[0:1])


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
    rows = old.get("rows", [])
    if any("step" not in r for r in rows):
        raise SystemExit(f"--append: {args.out} holds rows in the old one-row-per-method shape (no 'step'); run "
                         "without --append to replace it, or use another --out")
    settings = old.get("settings", {})
    steps = settings.get("steps")
    if steps is not None and steps != args.steps:
        raise SystemExit(f"--append: {args.out} holds runs of {steps} steps, this is {args.steps}; use another --out")
    ff3r_steps = settings.get("ff3r_steps", steps)
    if ff3r_steps is not None and ff3r_steps != args.ff3r_steps:
        raise SystemExit(f"--append: {args.out} holds ff3r runs of {ff3r_steps} steps, this is {args.ff3r_steps}; use "
                         "another --out")
    # Keys this script does not write (e.g. rows recorded by hand, such as cold-start timings) are kept as they are.
    ours = ENVELOPE_KEYS | {"render_fps", "commands", "mode", "definitions", "settings", "summary"}
    return {"rows": rows, "render_fps": old.get("render_fps", []), "commands": old.get("commands") or [old.get("command")],
            "kept": {k: v for k, v in old.items() if k not in ours}}


def _ff3r_budget(args: argparse.Namespace) -> str:
    """How the notes and the log name ff3r's own budget, where it is not --steps."""
    if args.ff3r_steps == args.steps:
        return ""
    return f" (ff3r: {args.ff3r_steps} steps, evaluated at {args.ff3r_eval_steps})"


def _key(r: dict) -> tuple:
    return r.get("method"), r.get("scene"), r.get("views")


def save(args: argparse.Namespace, rows: list[dict], fps_rows: list[dict], previous: dict[str, Any]) -> Path:
    """Write the JSON (keeping --append rows of other runs), its summary, README section and plot."""
    mine = {_key(r) for r in rows} | {_key(r) for r in fps_rows}
    kept = [r for r in previous["rows"] if _key(r) not in mine]
    kept_fps = [r for r in previous["render_fps"] if _key(r) not in mine]
    command = command_line()
    commands = [*previous["commands"], command]
    all_rows = kept + rows
    compressed = " (splatfacto's 30k schedule compressed to it)" if args.steps != vs.SPLATFACTO_FULL_ITERS else ""
    notes = (f"{'QUICK RUN (reduced view counts and steps; not the 30k comparison): ' if args.quick else ''}"
             f"{args.steps} steps per run{compressed}{_ff3r_budget(args)}, evaluated at {args.eval_steps} (step 0: "
             "before training, for ff3r its feedforward result); "
             f"ff3r = {args.ff3r_method} ({args.weights or 'its configured weights'}); generated rooms seed "
             f"{args.seed} at {args.resolution}x{args.resolution}, orbit, held-out frames between training frames; "
             "seconds = data + setup + forward + merge + optimisation so far, without evaluation; LPIPS only where "
             "its weights are on disk.")
    extra = {**previous["kept"], "mode": args.mode, "summary": summarize(all_rows),
             "render_fps": kept_fps + fps_rows, "definitions": DEFINITIONS, "commands": commands,
             "settings": {"views": args.views, "data": [str(d) for d in args.data], "steps": args.steps,
                          "ff3r_steps": args.ff3r_steps, "eval_steps": args.eval_steps,
                          "ff3r_eval_steps": args.ff3r_eval_steps,
                          "methods": args.methods, "ff3r_method": args.ff3r_method,
                          "weights": str(args.weights) if args.weights else None, "resolution": args.resolution,
                          "seed": args.seed, "eval_interval": vs.EVAL_INTERVAL}}
    path = write_result("vs_splatfacto", all_rows, quick=args.quick, notes=notes, out=args.out,
                        command="; ".join(commands), extra=extra)
    md = report(path, args.plots_dir)
    path.with_suffix(".md").write_text(md + "\n")
    return path


def report(path: Path, plots_dir: Path) -> str:
    """The README section of ``path`` (tables, targets, plot), rendered by ``benchmarks.make_results``."""
    from benchmarks import make_results as mr

    return mr.section_markdown(mr.load_result(path), Path(plots_dir), path.resolve().parent, Path(plots_dir).resolve())


def _log_summary(path: Path) -> None:
    for c in json.loads(path.read_text()).get("summary", {}).get("cases", []):
        if c.get("speedup_met") is None:
            continue
        reach = (f"ff3r reaches {c['psnr_threshold']:.2f} dB at {c['ff3r_reach_seconds']:.1f} s (step "
                 f"{c['ff3r_reach_step']}): {c['speedup']:.1f}x" if c["ff3r_reach_seconds"] is not None
                 else f"ff3r never reaches {c['psnr_threshold']:.2f} dB")
        log(f"[{c['scene']}, {c['views']} views] splatfacto final {c['splatfacto_final_psnr']:.2f} dB at "
            f"{c['splatfacto_final_seconds']:.1f} s; {reach}; ahead everywhere: {c['ahead_met']}; final PSNR >=: "
            f"{c['final_psnr_met']}; Gaussians <=: {c['final_gaussians_met']}")


def main(argv: Optional[Sequence[str]] = None) -> Path:
    args = resolve(build_parser().parse_args(argv))
    PREFIX[0] = "[vs_splatfacto QUICK]" if args.quick else "[vs_splatfacto]"
    preflight(args)
    label = "QUICK RUN (reduced view counts and steps; not the 30k comparison)" if args.quick else "full run"
    log(f"mode: {label}; views {args.views}, data {[str(d) for d in args.data]}, methods {args.methods} "
        f"(ff3r = {args.ff3r_method}), {args.steps} steps each{_ff3r_budget(args)}, evaluated at {args.eval_steps}, "
        f"device {args.device}")
    if args.dropped_eval_steps:
        log(f"--eval-steps {args.dropped_eval_steps} are past --steps {args.steps}: dropped")
    if len(args.eval_steps) < vs.MIN_POINTS:
        log(f"note: {len(args.eval_steps)} evaluation points per run (fewer than {vs.MIN_POINTS}: a short curve)")
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
        for method in args.methods:
            records, fps_here = run_method(args, method, data, name, fps, lpips)
            rows += [r.row() for r in records]
            fps_rows += fps_here
            path = save(args, rows, fps_rows, previous)
            log(f"wrote {path} ({len(rows)} rows so far)")
            vs.release()
    _log_summary(path)
    print(report(path, args.plots_dir))
    log(f"mode: {label}. Wrote {path}, {path.with_suffix('.md')} and {Path(args.plots_dir) / (path.stem + '.png')}")
    return path


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
