"""``ff3r-demo``: generate a scene, reconstruct it with ``ff3r-tiny`` on the CPU, refine, export and evaluate.

Runs the same commands a user would type (``ff3r-make-scene``, ``ns-train``, ``ns-export``, ``ns-eval``),
each as a subprocess, and ends with the metrics and where the PLY is: the feedforward result
(``--max-num-iterations 0``) and the refined one side by side. Every command it runs is printed first, so the
demo doubles as a usage example.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from rich.console import Console
from rich.table import Table

CONSOLE = Console()


def _run(cmd: Sequence[str], log: Path) -> float:
    """Run ``cmd``, streaming its output to ``log``; raise SystemExit with the log's tail on failure."""
    CONSOLE.print(f"[bold cyan]$ {shlex.join(cmd)}")
    t0 = time.perf_counter()
    with log.open("a") as f, CONSOLE.status(f"running {Path(cmd[0]).name} ... (log: {log})"):
        f.write(f"\n$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(list(cmd), stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise SystemExit(f"ff3r-demo: `{shlex.join(cmd)}` failed (exit {proc.returncode}); end of {log}:\n{tail}")
    return seconds


def _bin(name: str) -> str:
    """The console script ``name`` next to this Python (works in a venv that is not activated)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _run_weights(config: Path) -> Path | None:
    """The network weights the run used (None for a random-init run)."""
    import yaml

    text = config.read_text()
    trainer = yaml.load(text, Loader=yaml.Loader)
    return trainer.pipeline.model.network.weights


@dataclass
class DemoConfig:
    """Generate a scene, reconstruct it with ff3r-tiny on the CPU, refine, export and evaluate."""

    workdir: Path = Path("ff3r_demo")
    """Folder for the scene and the run."""
    seed: int = 7
    """Scene seed."""
    views: int = 24
    """Views in the generated scene (10% are held out for evaluation)."""
    size: int = 128
    """Image width and height in pixels."""
    refine_steps: Optional[int] = None
    """Refinement steps after the feedforward pass (default: the method's; 0 = feedforward only)."""
    method: str = "ff3r-tiny"
    """nerfstudio method to run."""
    eval_targets: int = 2
    """Target views for the protocol evaluation (ff3r-eval)."""
    align_steps: int = 20
    """Test-time pose-alignment steps per target (the protocol uses 100)."""
    extra: str = ""
    """Extra ns-train flags, e.g. '--pipeline.model.network.weights PATH'."""


def _glue_extra(argv: list[str]) -> list[str]:
    """``--extra '--flag value'`` as ``--extra=--flag value``: tyro, unlike argparse, reads a separate value that
    starts with ``--`` as a flag."""
    out, args = [], iter(argv)
    for arg in args:
        out.append(f"--extra={next(args, '')}" if arg == "--extra" else arg)
    return out


def _train_export_eval(args: DemoConfig, scene: Path, work: Path, log: Path, timings: dict[str, float]) -> tuple[Path, dict[str, dict]]:
    """``ns-train`` (feedforward, and refined unless ``--refine-steps 0``), ``ns-export`` of the last run and
    ``ns-eval`` of each; returns the exported run's config and each run's ns-eval results."""
    outputs, export_dir = work / "outputs", work / "export"
    runs: dict[str, Path] = {}
    budgets = {"feedforward": 0, "refined": args.refine_steps}
    if args.refine_steps == 0:
        del budgets["refined"]
    for name, steps in budgets.items():
        flags = [] if steps is None else ["--max-num-iterations", str(steps)]
        timings[f"ns-train ({name})"] = _run(
            [_bin("ns-train"), args.method, "--data", str(scene), "--output-dir", str(outputs),
             "--experiment-name", "demo", "--timestamp", name, "--vis", "tensorboard",
             "--machine.device-type", "cpu", *flags, "--steps-per-eval-image", "1000000", *shlex.split(args.extra)], log,
        )
        runs[name] = outputs / "demo" / args.method / name / "config.yml"
    config = runs.get("refined", runs["feedforward"])
    timings["ns-export"] = _run(
        [_bin("ns-export"), "gaussian-splat", "--load-config", str(config), "--output-dir", str(export_dir)], log,
    )
    evals: dict[str, dict] = {}
    for name, run in runs.items():
        eval_json = export_dir / f"eval_{name}.json"
        timings[f"ns-eval ({name})"] = _run(
            [_bin("ns-eval"), "--load-config", str(run), "--output-path", str(eval_json)], log,
        )
        evals[name] = json.loads(eval_json.read_text())["results"]
    return config, evals


def _table(args: DemoConfig, evals: dict[str, dict], summary: dict, timings: dict[str, float]) -> Table:
    """ns-eval's metrics of each run, the protocol's, and the time of each command."""
    table = Table(title=f"ff3r demo: {args.method} on a generated {args.views}-view scene")
    table.add_column("metric")
    for name in evals:
        table.add_column(name, justify="right")
    for key in ("psnr", "ssim", "lpips", "gaussian_count"):
        if all(key in e for e in evals.values()):
            table.add_row(f"ns-eval {key} (held-out views)", *(f"{e[key]:.4g}" for e in evals.values()))
    table.add_row("time: ns-train", *(f"{timings[f'ns-train ({n})']:.1f} s" for n in evals))
    for key, label in (("psnr_target", "target-view PSNR (protocol)"), ("absrel", "depth AbsRel"),
                       ("miou_target", "target mIoU"), ("teacher_miou_target", "2D teacher mIoU (same pixels)")):
        if summary.get(key) is not None:
            table.add_row(label, f"{summary[key]:.4g}", *[""] * (len(evals) - 1))
    for stage, seconds in timings.items():
        if not stage.startswith("ns-train"):
            table.add_row(f"time: {stage}", f"{seconds:.1f} s", *[""] * (len(evals) - 1))
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (tyro, from :class:`DemoConfig`) and run the demo."""
    import tyro

    args = tyro.cli(DemoConfig, args=_glue_extra(sys.argv[1:] if argv is None else list(argv)), prog="ff3r-demo")
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "demo.log"
    log.write_text("")
    scene = work / "scene"
    timings: dict[str, float] = {}
    if not (scene / "transforms.json").exists():
        timings["make scene"] = _run(
            [_bin("ff3r-make-scene"), str(scene), "--seed", str(args.seed), "--views", str(args.views),
             "--width", str(args.size), "--height", str(args.size)], log,
        )
    config, evals = _train_export_eval(args, scene, work, log, timings)

    # The evaluation protocol (context views -> target view, with test-time pose alignment), on this scene.
    protocol_dir = work / "protocol"
    weights = _run_weights(config)
    eval_cmd = [_bin("ff3r-eval"), str(scene), "--out", str(protocol_dir), "--device", "cpu",
                "--max-targets", str(args.eval_targets), "--align-steps", str(args.align_steps), "--panels", "1"]
    eval_cmd += ["--weights", str(weights)] if weights else ["--random-init"]
    timings["ff3r-eval"] = _run(eval_cmd, log)
    summary = json.loads((protocol_dir / "eval.json").read_text())["summary"]

    export_dir = work / "export"
    CONSOLE.print(_table(args, evals, summary, timings))
    CONSOLE.print(f"PLY: [bold]{export_dir / 'splat.ply'}[/bold]")
    CONSOLE.print(f"metrics: {export_dir}/eval_*.json, {protocol_dir / 'eval.md'} (panels in {protocol_dir / 'panels'})")
    CONSOLE.print(f"run: {config.parent} (ns-viewer --load-config {config})")
    return 0


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
