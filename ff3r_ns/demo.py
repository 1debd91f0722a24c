"""``ff3r-demo``: generate a scene, reconstruct it with ``ff3r-tiny`` on the CPU, export and evaluate.

Runs the same commands a user would type (``ff3r-make-scene``, ``ns-train``, ``ns-export``, ``ns-eval``),
each as a subprocess, and ends with the metrics and where the PLY is. Every command it runs is printed
first, so the demo doubles as a usage example.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ff3r-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("ff3r_demo"), help="folder for the scene and the run (default: ./ff3r_demo)")
    parser.add_argument("--seed", type=int, default=7, help="scene seed")
    parser.add_argument("--views", type=int, default=24, help="views in the generated scene (10%% are held out for evaluation)")
    parser.add_argument("--size", type=int, default=128, help="image width and height in pixels")
    parser.add_argument("--refine-steps", type=int, default=100, help="refinement steps after the feedforward pass (0 = pure feedforward)")
    parser.add_argument("--method", default="ff3r-tiny", help="nerfstudio method to run")
    parser.add_argument("--extra", default="", help="extra ns-train flags, e.g. '--pipeline.model.network.weights PATH'")
    args = parser.parse_args(argv)

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "demo.log"
    log.write_text("")
    scene = work / "scene"
    outputs = work / "outputs"
    export_dir = work / "export"
    timings: dict[str, float] = {}

    if not (scene / "transforms.json").exists():
        timings["make scene"] = _run(
            [_bin("ff3r-make-scene"), str(scene), "--seed", str(args.seed), "--views", str(args.views),
             "--width", str(args.size), "--height", str(args.size)], log,
        )
    timings["ns-train"] = _run(
        [_bin("ns-train"), args.method, "--data", str(scene), "--output-dir", str(outputs),
         "--experiment-name", "demo", "--timestamp", "run", "--vis", "tensorboard",
         "--machine.device-type", "cpu", "--max-num-iterations", str(args.refine_steps),
         "--steps-per-eval-image", "1000000", *shlex.split(args.extra)], log,
    )
    config = outputs / "demo" / args.method / "run" / "config.yml"
    timings["ns-export"] = _run(
        [_bin("ns-export"), "gaussian-splat", "--load-config", str(config), "--output-dir", str(export_dir)], log,
    )
    eval_json = export_dir / "eval.json"
    timings["ns-eval"] = _run(
        [_bin("ns-eval"), "--load-config", str(config), "--output-path", str(eval_json)], log,
    )

    results = json.loads(eval_json.read_text())["results"]
    table = Table(title=f"ff3r demo: {args.method} on a generated {args.views}-view scene (held-out views)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("psnr", "ssim", "lpips", "gaussian_count", "fps"):
        if key in results:
            table.add_row(key, f"{results[key]:.4g}")
    for stage, seconds in timings.items():
        table.add_row(f"time: {stage}", f"{seconds:.1f} s")
    CONSOLE.print(table)
    CONSOLE.print(f"PLY: [bold]{export_dir / 'splat.ply'}[/bold]")
    CONSOLE.print(f"metrics: {eval_json}\nrun: {config.parent} (ns-viewer --load-config {config})")
    return 0


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
