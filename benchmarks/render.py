"""Rendering speed of the backends; writes ``benchmarks/results/render.json``.

CPU (one process, the same scenes): the C++ backend (``"cpu"``) against the pure-torch reference
compositor (``"torch"``) on 180k Gaussians at 128x128 with RGB + 16 feature channels + expected depth,
forward and backward timed separately (the loss sums rgb, features and depth); ``speedup`` is the
reference's forward+backward time over the row's. Three scenes:

- ``demo``: the real feedforward Gaussians of the demo scene (``ff3r-make-scene`` room, seed 7, 24
  views, 128x128; the shipped ``ff3r-tiny`` network run on the 22 training views as ``ns-train``
  does, per-view placement at the dataset's cameras, voxel merge: 142k Gaussians), rendered at the
  first training camera; the network's 8 feature channels are repeated to 16, so that the case
  blends RGB + 16 features + depth like the others. Built once (about 15 s) and cached under
  ``$TMPDIR/ff3r_bench_render``;
- ``demo_similarity``: the same network output placed as the previous release placed it (one similarity fitted
  to the predicted camera centres, ``placement="similarity"``: the 8.85 dB demo), the case in which the issue
  measured the reference at 18 s forward + 28 s backward: far larger, overlapping footprints;
- ``dense``: flat, semi-transparent Gaussians (scale 0.1, 50:1 discs, opacity 0.02-0.1) filling the
  view: long per-tile lists that never reach the transmittance stop, the regime of refining a
  predicted reconstruction, where the reference needs tens of seconds per step;
- ``random``: ``Gaussians.random`` with scales shrinking as the count grows (0.6 x the mean spacing,
  opacity 0.2-0.9): short lists, pixels saturate after a few layers, the reference's best case.

The first-use compile time of the C++ library is measured in a fresh cache. GPU (gsplat, skipped
without CUDA): forward and forward+backward fps sweeps. Rows of devices this run does not measure are
kept from the existing file (with that file's provenance under ``kept``).

Usage:
    python -m benchmarks.render                         # CPU comparison (+ gsplat sweep on a GPU)
    python -m benchmarks.render --quick                 # one repeat, fewer configurations
    python -m benchmarks.render --backends gsplat       # GPU sweep only
    python -m benchmarks.render --backends cpu torch --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any, Callable, Optional

import torch

from benchmarks.common import RESULTS_DIR, timed, write_result
from ff3r_ns.core.cameras import Cameras
from ff3r_ns.core.gaussians import Gaussians
from ff3r_ns.core.render import render

RESOLUTIONS = {"128x128": (128, 128), "512x512": (512, 512), "1920x1080": (1920, 1080)}
FEATURES = {3: 0, 19: 16}  # channels -> feature dim (3 RGB + F)
PARAMS = ("means", "quats", "scales", "opacities", "sh", "features")
CPU_CASE = dict(gaussians=180_000, resolution="128x128", channels=19)
CPU_SCENES = ("demo", "demo_similarity", "dense", "random")
DEMO_SCENE = dict(seed=7, views=24, size=128)
CPU_REPEATS = 5  # times the reference's repeats, for the C++ backend


def make_scene(
    n: int, feature_dim: int, width: int, height: int, device: str, kind: str = "random"
) -> tuple[Gaussians, Cameras]:
    """``n`` Gaussians in the cube [-1, 1]^2 x [3, 5] seen by one camera at the origin looking along +z.

    Args:
        n: number of Gaussians.
        feature_dim: feature channels per Gaussian.
        width, height: image size; the focal length is ``1.2 * max(width, height)``.
        device: where the tensors live.
        kind: ``"random"`` (scale ``0.6 * (8 / n)^(1/3)``, opacity 0.2-0.9) or ``"dense"`` (scale 0.1
            with the third axis 50x thinner, opacity 0.02-0.1).

    Returns:
        The Gaussians and the camera.
    """
    gen = torch.Generator().manual_seed(0)
    if kind == "random":
        scale = 0.6 * (8.0 / n) ** (1.0 / 3.0)  # ~0.6x the mean spacing: every pixel sees several layers
        g = Gaussians.random(n, feature_dim=feature_dim, scale=scale, generator=gen)
    elif kind == "dense":
        g = Gaussians.random(n, feature_dim=feature_dim, scale=0.1, generator=gen)
        g.scales[:, 2] *= 0.02
        g.opacities = 0.02 + 0.08 * torch.rand(n, generator=gen)
    else:
        raise ValueError(f"unknown scene {kind!r}")
    f = 1.2 * max(width, height)
    k = torch.tensor([[[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]]])
    return g.to(device), Cameras(torch.eye(4)[None], k, width, height).to(device)


def demo_scene(cache_dir: Optional[Path] = None, placement: str = "per_view") -> tuple[Gaussians, Cameras]:
    """The demo scene's feedforward Gaussians (see the module docstring) and its first training camera.

    Args:
        cache_dir: where the generated scene and the Gaussians are kept (default
            ``$TMPDIR/ff3r_bench_render``); they are built on the first call.
        placement: ``NetworkSettings.placement`` ("per_view", today's default, or "similarity").

    Returns:
        ``N`` Gaussians with 16 feature channels and one 128x128 camera.
    """
    cfg = DEMO_SCENE
    cache = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "ff3r_bench_render"
    suffix = "" if placement == "per_view" else f"_{placement}"
    path = cache / f"demo_seed{cfg['seed']}_{cfg['views']}v_{cfg['size']}px{suffix}.pt"
    if not path.exists():
        import numpy as np
        from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
        from PIL import Image

        from ff3r_ns.core.reconstruct import run_network
        from ff3r_ns.data.make_scene import main as make_scene_main
        from ff3r_ns.method_configs.ff3r import SHIPPED_NETWORK
        from ff3r_ns.nerfstudio.model import ns_to_core_cameras

        scene = cache / f"demo_seed{cfg['seed']}_{cfg['views']}v_{cfg['size']}px"
        if not (scene / "transforms.json").exists():
            size = str(cfg["size"])
            make_scene_main([str(scene), "--seed", str(cfg["seed"]), "--views", str(cfg["views"]), "--width", size,
                             "--height", size, "--overwrite"])  # fmt: skip
        # The training split and dataset cameras exactly as ns-train's datamanager reads them.
        data = NerfstudioDataParserConfig(data=scene, downscale_factor=1).setup().get_dataparser_outputs("train")
        images = torch.stack(
            [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).float() / 255.0 for f in data.image_filenames]
        )
        with torch.no_grad():
            settings = dataclasses.replace(SHIPPED_NETWORK, placement=placement)
            rec = run_network(settings, images, ns_to_core_cameras(data.cameras))
        g, cams = rec.gaussians, rec.cameras
        fields = {k: getattr(g, k).contiguous() for k in PARAMS}
        fields["features"] = torch.cat([g.features, g.features.flip(-1)], dim=-1)  # 8 -> 16 channels
        cache.mkdir(parents=True, exist_ok=True)
        torch.save({"gaussians": fields, "world_to_cam": cams.world_to_cam, "intrinsics": cams.intrinsics,
                    "width": cams.width, "height": cams.height}, path)  # fmt: skip
    saved = torch.load(path)
    cams = Cameras(saved["world_to_cam"][:1], saved["intrinsics"][:1], saved["width"], saved["height"])
    return Gaussians(**saved["gaussians"]), cams


def _loss(out) -> torch.Tensor:
    return out.rgb.sum() + out.depth.sum() + (out.features.sum() if out.features is not None else 0.0)


def measure(g: Gaussians, cams: Cameras, backend: str, train: bool, repeats: int) -> float:
    """Median seconds per frame (forward, or forward+backward when ``train``)."""
    sync: Optional[Callable[[], None]] = torch.cuda.synchronize if g.device.type == "cuda" else None
    params = {n: getattr(g, n).clone().requires_grad_(train) for n in PARAMS}

    def step() -> None:
        if train:
            _loss(render(Gaussians(**params), cams, backend=backend)).backward()
        else:
            with torch.no_grad():
                render(Gaussians(**params), cams, backend=backend)

    return timed(step, repeats=repeats, warmup=1, sync=sync)


def measure_split(g: Gaussians, cams: Cameras, backend: str, repeats: int, warmup: int = 1) -> tuple[float, float]:
    """Median seconds of a training step's forward and of its backward, timed separately (CPU)."""
    params = {n: getattr(g, n).clone().requires_grad_(True) for n in PARAMS}
    fwd, bwd = [], []
    for i in range(warmup + repeats):
        for p in params.values():
            p.grad = None
        t0 = time.perf_counter()
        loss = _loss(render(Gaussians(**params), cams, backend=backend))
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if i >= warmup:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    return median(fwd), median(bwd)


def cpu_comparison(backends: list[str], repeats: int, scenes: tuple[str, ...], quick: bool = False) -> list[dict[str, Any]]:
    """Rows for the CPU backends on :data:`CPU_CASE`, the reference (``"torch"``) last in each scene."""
    width, height = RESOLUTIONS[CPU_CASE["resolution"]]
    rows: list[dict[str, Any]] = []
    for kind in scenes:
        if kind in ("demo", "demo_similarity"):
            g, cams = demo_scene(placement="per_view" if kind == "demo" else "similarity")
        else:
            g, cams = make_scene(CPU_CASE["gaussians"], FEATURES[CPU_CASE["channels"]], width, height, "cpu", kind)
        case = dict(CPU_CASE, gaussians=g.num, resolution=f"{cams.width}x{cams.height}", channels=3 + g.feature_dim)
        # The C++ backend takes tens of milliseconds, so more repeats cost nothing and steady the median.
        times = {
            b: measure_split(g, cams, b, repeats if b == "torch" else CPU_REPEATS * repeats, warmup=0 if quick and b == "torch" else 1)
            for b in backends
        }
        ref = sum(times["torch"]) if "torch" in times else None
        for b, (fwd, bwd) in times.items():
            row = dict(backend=b, device="cpu", scene=kind, mode="forward+backward", **case,
                       threads=torch.get_num_threads(), forward_seconds=round(fwd, 4), backward_seconds=round(bwd, 4),
                       fps=round(1.0 / (fwd + bwd), 3), speedup=round(ref / (fwd + bwd), 1) if ref else None)  # fmt: skip
            print(row, flush=True)
            rows.append(row)
    return rows


def sweep(backend: str, device: str, counts: list[int], resolutions: list[str], repeats: int, budget_s: float) -> list[dict[str, Any]]:
    """Forward and forward+backward fps over counts x resolutions x channel counts."""
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


def compile_fresh() -> dict[str, Any]:
    """Build the C++ CPU library in an empty cache and report how long its first use took."""
    from ff3r_ns.core import render_cpu

    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("TORCH_EXTENSIONS_DIR")
        os.environ["TORCH_EXTENSIONS_DIR"] = tmp
        try:
            ok = render_cpu.load_extension()
        finally:
            if old is None:
                os.environ.pop("TORCH_EXTENSIONS_DIR")
            else:
                os.environ["TORCH_EXTENSIONS_DIR"] = old
    info = render_cpu.extension_info()
    return {"available": ok, "compile_seconds": round(info["load_seconds"], 2), "cached": info.get("cached"),
            "error": info.get("error")}  # fmt: skip


def kept_rows(path: Path, devices: set[str]) -> tuple[list[dict[str, Any]], Optional[dict[str, Any]]]:
    """Rows of ``path`` for devices this run did not measure, and that file's provenance."""
    if not path.exists():
        return [], None
    old = json.loads(path.read_text())
    rows = [r for r in old.get("rows", []) if r.get("device") not in devices]
    if not rows:
        return [], None
    devices = sorted({r.get("device") for r in rows})
    if isinstance(old.get("kept"), dict) and set(devices) <= set(old["kept"].get("devices", [])):
        return rows, old["kept"]  # kept already: its provenance is the older file's
    prov = {k: old.get(k) for k in ("command", "commit", "date", "machine", "quick", "notes")}
    prov["devices"] = devices
    return rows, prov


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repeat (no warm-up for the reference), fewer configurations")
    parser.add_argument("--backends", nargs="+", default=["cpu", "torch", "gsplat"], choices=["cpu", "torch", "gsplat"])
    parser.add_argument("--scenes", nargs="+", default=list(CPU_SCENES), choices=list(CPU_SCENES), help="CPU scenes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="output JSON (default: benchmarks/results/render.json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else RESULTS_DIR / "render.json"

    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    measured: set[str] = set()
    cpu_backends = [b for b in ("cpu", "torch") if b in args.backends]
    if cpu_backends:
        if "cpu" in cpu_backends:
            extra["cpu_extension"] = compile_fresh()
            print("cpu extension:", extra["cpu_extension"], flush=True)
        extra["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
        rows += cpu_comparison(cpu_backends, repeats=1 if args.quick else 3, scenes=tuple(args.scenes), quick=args.quick)
        extra["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        measured.add("cpu")
    if "gsplat" in args.backends:
        if torch.cuda.is_available():
            counts = [100_000] if args.quick else [100_000, 1_000_000]
            rows += sweep("gsplat", "cuda", counts, ["512x512", "1920x1080"], repeats=5 if args.quick else 20, budget_s=60)
            measured.add("cuda")
        else:
            print("no CUDA device: skipping the gsplat backend")
    old_rows, prov = kept_rows(out, measured)
    if prov:
        extra["kept"] = prov
    reps = 1 if args.quick else 3
    notes = (
        f"CPU: one process, torch threads={torch.get_num_threads()}, medians of {reps} steps (reference) and "
        f"{CPU_REPEATS * reps} steps (C++) after one warm-up step; fps = 1 / (forward + backward); speedup against the "
        "torch reference compositor on the same scene in the same run; compile_seconds: first use of the C++ library in "
        "an empty cache; load_average_before/after: os.getloadavg() around the CPU timings (the machine is shared). "
        "Scenes: demo = the demo room's real feedforward Gaussians (ff3r-make-scene seed 7, 24 views, 128x128; shipped "
        "ff3r-tiny on the 22 training views, per-view placement, voxel merge), first training camera, the 8 predicted "
        "feature channels repeated to 16; demo_similarity = the same placed by one similarity of the predicted cameras "
        "(the previous release's placement, in which the issue measured the reference); synthetic: one camera at the origin, f = 1.2 * max(W, H), Gaussians.random in "
        "[-1,1]^2 x [3,5]; dense: scale 0.1 (x0.5-1.5), third axis x0.02, opacity 0.02-0.1; random: scale "
        "0.6*(8/N)^(1/3), opacity 0.2-0.9; depth always rendered."
    )
    if old_rows:
        notes += " Rows of devices not measured in this run (" + ", ".join(prov["devices"]) + ") are kept from the previous file, whose provenance is under 'kept'."
    path = write_result("render", rows + old_rows, quick=args.quick, notes=notes, out=out, extra=extra)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
