"""``ff3r-eval``: the evaluation protocol (novel views, depth, segmentation) on nerfstudio-data scenes.

Example:
    ff3r-eval scenes/ --weights ff3r.pt --out eval_out            # every scene folder under scenes/
    ff3r-eval scenes/seed3 --random-init --preset tiny --align-steps 10   # pipeline check only
    ff3r-eval scenes/seed3 --oracle                                 # protocol sanity check from ground truth

Writes ``OUT/eval.json`` (shared benchmark envelope: one row per scene, a summary, per-target records),
``OUT/eval.md`` and ``OUT/panels/*.png``. Exit status 2 on bad input (missing folder, no
``transforms.json``, contradictory flags), with one ``ff3r-eval: error: ...`` line on stderr.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, Sequence

import torch
import tyro
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ff3r_ns.cli import parse
from ff3r_ns.core.network.config import PRESETS
from ff3r_ns.core.pose_align import AlignConfig, Parametrization
from ff3r_ns.core.render import BACKENDS

if TYPE_CHECKING:  # the heavy imports (network, nerfstudio) wait until the flags are checked
    from ff3r_ns.evaluation.predictor import Model
    from ff3r_ns.evaluation.runner import EvalSettings

PROG = "ff3r-eval"


class InputError(ValueError):
    """Bad command-line input: reported as one line, exit status 2."""


def named_scene_folders(paths: Sequence[Path]) -> list[Path]:
    """Scene folders named on the command line: each path is a folder with ``transforms.json``, or a parent whose
    direct sub-folders have one (sorted by name). Unlike training's :func:`~ff3r_ns.training.data.scene_folders_under`
    it does not search deeper: an evaluation names its scenes.

    Raises:
        InputError: no path, a path that does not exist, is not a folder, or holds no scene.
    """
    if not paths:
        raise InputError("no scene folders given: pass SCENES... (nerfstudio-data folders, or parents of several)")
    scenes: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError(f"scene folder not found: {p}")
        if not p.is_dir():
            raise InputError(f"not a folder: {p} (pass a nerfstudio-data folder with transforms.json)")
        if (p / "transforms.json").is_file():
            scenes.append(p)
            continue
        subs = sorted(d for d in p.iterdir() if d.is_dir() and (d / "transforms.json").is_file())
        if not subs:
            raise InputError(f"no transforms.json in {p} (nor in any folder directly under it): not a nerfstudio-data scene")
        scenes.extend(subs)
    return scenes


def scene_names(scenes: Sequence[Path]) -> list[str]:
    """Folder names, prefixed by the parent's name where two scenes share one."""
    names = [s.name for s in scenes]
    return [f"{s.parent.name}_{s.name}" if names.count(s.name) > 1 else s.name for s in scenes]


Device = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class EvalCommand:
    """The evaluation protocol (novel views, depth, segmentation) on nerfstudio-data scenes. What to evaluate: one
    of --weights, --random-init, --oracle."""

    scenes: Annotated[tyro.conf.Positional[tuple[Path, ...]], tyro.conf.arg(metavar="SCENES")]
    """nerfstudio-data folders, or parents of several"""
    weights: Optional[Path] = None
    """FF3R checkpoint (architecture and teacher read from it)"""
    random_init: bool = False
    """an untrained network of --preset (pipeline check only)"""
    preset: Literal[PRESETS] = "tiny"  # type: ignore[valid-type]  # the one PRESETS list
    """architecture for --random-init"""
    oracle: bool = False
    """Gaussians from the ground truth of the context views (protocol check)"""
    image_size: Optional[int] = None
    """network input's longest side (default: the checkpoint's)"""
    voxel_size: float = 0.0
    """merge the network's Gaussians by voxel, relative to the scene scale (0: off; ~0.9 / resolution)"""
    semantic_merge: bool = True
    """semantics-aware voxel merging (FF3R's); --no-semantic-merge: geometry-only (ablation)"""
    split: Literal["scannet", "nview"] = "scannet"
    """view split (docs/architecture.md, "Evaluation protocol")"""
    n_context: int = 8
    """context views of the nview split"""
    align_steps: int = 100
    """test-time pose-alignment Adam steps (0: none)"""
    align_lr: float = 5e-3
    """pose-alignment learning rate"""
    align_param: Parametrization = "rot6d"
    """pose correction parametrization"""
    max_targets: Optional[int] = None
    """evaluate at most K targets per scene"""
    depth_unit_scale_factor: Optional[float] = None
    """stored depth x this = the dataset's units, for datasets whose transforms.json does not say (its
    'depth_unit_scale_factor'); default nerfstudio's 1e-3 (millimetres), 1.0 for .npy metres"""
    out: Path = Path("ff3r_eval")
    """output folder"""
    device: Optional[Device] = None
    """default: cuda when available"""
    backend: Literal[BACKENDS] = "auto"  # type: ignore[valid-type]  # the renderer's one list
    """renderer (auto: gsplat on CUDA, the C++ renderer on CPU)"""
    panels: int = 2
    """PNG panels per scene (at most)"""


class _RichSink:
    """:class:`ff3r_ns.evaluation.runner.ProgressSink` on a rich progress bar (scenes and targets)."""

    def __init__(self, progress: Progress, num_scenes: int) -> None:
        self.progress = progress
        self.scenes = progress.add_task("scenes", total=num_scenes)
        self.targets = progress.add_task("targets", total=0)

    def scene_started(self, name: str, num_targets: int) -> None:
        self.progress.reset(self.targets, total=num_targets, description=f"{name}: targets")

    def target_done(self) -> None:
        self.progress.advance(self.targets)

    def scene_done(self) -> None:
        self.progress.advance(self.scenes)

    def message(self, text: str) -> None:
        self.progress.console.print(f"[yellow]{PROG}: {text}")


def _summary_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="ff3r-eval")
    cols = (("scene", "scene", None), ("PSNR", "psnr_target", 2), ("SSIM", "ssim_target", 3), ("AbsRel", "absrel", 3),
            ("mIoU src", "miou_source", 3), ("mIoU tgt", "miou_target", 3), ("teacher", "teacher_miou_target", 3),
            ("fwd s", "forward_seconds", 3), ("align s", "align_seconds", 2))
    for name, _, _ in cols:
        table.add_column(name, justify="left" if name == "scene" else "right")
    for r in rows:
        table.add_row(*(str(r[k]) if d is None else ("–" if r.get(k) is None else f"{r[k]:.{d}f}") for _, k, d in cols))
    return table


def _device(name: Optional[str]) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda but torch sees no CUDA device")
    return torch.device(name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` (tyro, from :class:`EvalCommand`) and run ``ff3r-eval``; returns the exit status."""
    args = parse(EvalCommand, PROG, argv)
    console = Console(soft_wrap=True)
    try:
        from ff3r_ns.evaluation.predictor import ModelChoice, build_model
        from ff3r_ns.evaluation.runner import EvalSettings

        scenes = named_scene_folders(args.scenes)
        device = _device(args.device)
        settings = EvalSettings(
            split=args.split, n_context=args.n_context,
            align=AlignConfig(steps=args.align_steps, lr=args.align_lr, parametrization=args.align_param),
            max_targets=args.max_targets, panels=args.panels, backend=args.backend,
            depth_unit_scale_factor=args.depth_unit_scale_factor,
        )
        choice = ModelChoice(
            args.weights, args.random_init, args.preset, args.oracle, args.image_size,
            voxel_size=args.voxel_size, semantic_merge=args.semantic_merge,
        )
        model = build_model(choice, device)
    except (ValueError, FileNotFoundError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return _run(args, scenes, settings, model, device, console)


def _run(
    args: EvalCommand, scenes: list[Path], settings: "EvalSettings", model: "Model", device: torch.device,
    console: Console,
) -> int:
    from ff3r_ns.core.metrics import make_lpips
    from ff3r_ns.evaluation.report import scene_row, write_reports
    from ff3r_ns.evaluation.runner import evaluate_scene

    notes = list(model.notes)
    for note in notes:
        console.print(f"[bold red]{PROG}: {note}" if model.predictor.random_init or args.oracle else f"[yellow]{PROG}: {note}")
    lpips = make_lpips(device)
    if lpips is None:
        notes.append("LPIPS not measured (AlexNet weights not installed)")
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        sink = _RichSink(progress, len(scenes))
        for path, name in zip(scenes, scene_names(scenes)):
            try:
                result = evaluate_scene(path, model, settings, device, args.out / "panels", lpips, sink, name=name)
            except (ValueError, FileNotFoundError) as err:
                progress.stop()
                print(f"{PROG}: error: {path}: {err}", file=sys.stderr)
                return 2
            results.append(result)
            sink.scene_done()
    record = {
        "split": settings.split, "n_context": settings.n_context if settings.split == "nview" else 2,
        "align_steps": settings.align.steps, "align_lr": settings.align.lr, "align_param": settings.align.parametrization,
        "max_targets": settings.max_targets, "device": str(device), "backend": settings.backend,
        "weights": str(args.weights) if args.weights else None, "random_init": args.random_init,
        "preset": args.preset if args.random_init else None, "oracle": args.oracle,
        "voxel_size": args.voxel_size, "semantic_merge": args.semantic_merge,
        "depth_unit_scale_factor": settings.depth_unit_scale_factor,
    }
    json_path, md_path = write_reports(results, args.out, model.predictor.name, notes, record)
    console.print(_summary_table([scene_row(r) for r in results]))
    if model.predictor.random_init:
        console.print(f"[bold red]{PROG}: RANDOM INIT: these numbers only check the pipeline, they measure no model.")
    console.print(f"{PROG}: wrote {json_path}, {md_path} and {sum(len(r.panels) for r in results)} panels under {args.out / 'panels'}")
    return 0


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
