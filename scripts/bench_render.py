"""Rendering speed of both backends: frames per second for forward and forward+backward.

The torch backend runs on CPU, gsplat on CUDA (skipped without a GPU). One camera per frame, a
random cloud of Gaussians that fills the view (``Gaussians.random``, with scales shrinking as the
count grows so the overlap per pixel stays comparable), 3 channels (RGB) or 3 + 16 (RGB + features);
expected depth is always rendered. Writes ``benchmarks/results/render.json``.

Usage:
    python scripts/bench_render.py            # full sweep (the CPU part takes several minutes)
    python scripts/bench_render.py --quick    # a few configurations
    OMP_NUM_THREADS=1 python scripts/bench_render.py --backends torch --threads 1
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ff3r_ns.benchmarks import timed, write_result
from ff3r_ns.core.cameras import Cameras
from ff3r_ns.core.gaussians import Gaussians
from ff3r_ns.core.render import render

RESOLUTIONS = {"128x128": (128, 128), "512x512": (512, 512), "1920x1080": (1920, 1080)}
FEATURES = {3: 0, 19: 16}  # channels -> feature dim (3 RGB + F)


def make_scene(n: int, feature_dim: int, width: int, height: int, device: str) -> tuple[Gaussians, Cameras]:
    """``n`` Gaussians in the cube [-1, 1]^2 x [3, 5] seen by one camera at the origin looking along +z."""
    gen = torch.Generator().manual_seed(0)
    scale = 0.6 * (8.0 / n) ** (1.0 / 3.0)  # ~0.6x the mean spacing: every pixel sees several layers
    g = Gaussians.random(n, feature_dim=feature_dim, scale=scale, generator=gen)
    f = 1.2 * max(width, height)
    k = torch.tensor([[[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]]])
    return g.to(device), Cameras(torch.eye(4)[None], k, width, height).to(device)


def measure(g: Gaussians, cams: Cameras, backend: str, train: bool, repeats: int) -> float:
    """Median seconds per frame."""
    sync: Optional[Callable[[], None]] = torch.cuda.synchronize if g.device.type == "cuda" else None
    names = ("means", "quats", "scales", "opacities", "sh", "features")
    params = {n: getattr(g, n).clone().requires_grad_(train) for n in names}

    def step() -> None:
        if train:
            out = render(Gaussians(**params), cams, backend=backend)
            loss = out.rgb.sum() + out.depth.sum() + (out.features.sum() if out.features is not None else 0.0)
            loss.backward()
        else:
            with torch.no_grad():
                render(Gaussians(**params), cams, backend=backend)

    return timed(step, repeats=repeats, warmup=1, sync=sync)


def sweep(backend: str, device: str, counts: list[int], resolutions: list[str], repeats: int, budget_s: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n, res, channels in itertools.product(counts, resolutions, FEATURES):
        width, height = RESOLUTIONS[res]
        g, cams = make_scene(n, FEATURES[channels], width, height, device)
        for mode in ("forward", "forward+backward"):
            sec = measure(g, cams, backend, mode != "forward", repeats)
            row = dict(backend=backend, device=device, mode=mode, gaussians=n, resolution=res, channels=channels,
                       fps=round(1.0 / sec, 3), ms=round(1e3 * sec, 2))  # fmt: skip
            print(row, flush=True)
            rows.append(row)
            if sec * repeats > budget_s:  # keep the sweep bounded: larger settings would only be slower
                break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few configurations, fewer repeats")
    parser.add_argument("--backends", nargs="+", default=["torch", "gsplat"], choices=["torch", "gsplat"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="output JSON (default: benchmarks/results/render.json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows: list[dict[str, Any]] = []
    if "torch" in args.backends:
        if args.quick:
            rows += sweep("torch", "cpu", [20_000], ["128x128", "512x512"], repeats=2, budget_s=20)
        else:
            rows += sweep("torch", "cpu", [20_000, 100_000], list(RESOLUTIONS), repeats=3, budget_s=60)
    if "gsplat" in args.backends:
        if torch.cuda.is_available():
            counts = [100_000] if args.quick else [100_000, 1_000_000]
            rows += sweep("gsplat", "cuda", counts, ["512x512", "1920x1080"], repeats=5 if args.quick else 20, budget_s=60)
        else:
            print("no CUDA device: skipping the gsplat backend")
    notes = (
        f"one camera per frame; torch CPU threads={torch.get_num_threads()}; scene: Gaussians.random in "
        "[-1,1]^2 x [3,5], scale 0.6*(8/N)^(1/3), f = 1.2 * max(W, H); depth always rendered"
    )
    path = write_result("render", rows, quick=args.quick, notes=notes, out=Path(args.out) if args.out else None)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
