"""Forward time and peak GPU memory of the FF3R network against the number of views.

Images are 448 x 336 (448 px longest side, 4:3, a 32 x 24 patch grid); weights are random (time and
memory do not depend on their values), including the semantic encoder (open_clip ViT-B-16
architecture). Inference mode, bf16 autocast for encoders and aggregator, fp32 heads.

Usage (on a GPU machine):
    python -m benchmarks.network               # base and vggt_1b, 8..128 views, fusion on
    python -m benchmarks.network --quick       # 8 and 16 views, one timed repeat
    python -m benchmarks.network --configs tiny --device cpu --views 2 --quick   # smoke test on CPU

Writes ``benchmarks/results/network.json`` (rows: config, views, resolution, dtype, fusion, seconds,
peak_gb, status) through :func:`benchmarks.common.write_result`. A case that runs out of memory is
recorded with ``status="oom"`` and larger view counts of that config are skipped (``status="skipped"``).
"""

from __future__ import annotations

import argparse
import gc
from dataclasses import replace
from typing import Any

import torch

from benchmarks.common import timed, write_result
from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.network.model import FF3R

HEIGHT, WIDTH = 336, 448
PRESETS = {"tiny": FF3RConfig.tiny, "base": FF3RConfig.base, "vggt_1b": FF3RConfig.vggt_1b}


def build(name: str, fusion: bool, bf16: bool) -> FF3RConfig:
    cfg = PRESETS[name]().with_fusion(fusion)
    semantic = replace(cfg.semantic, weights="random", checkpoint=None, pretrained=None)
    return replace(cfg, semantic=semantic, bf16=bf16)


def measure(model: FF3R, views: int, device: torch.device, repeats: int) -> tuple[float, float | None]:
    images = torch.rand(views, 3, HEIGHT, WIDTH, device=device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else None

    def run() -> None:
        with torch.inference_mode():
            model(images)

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(run, repeats=repeats, warmup=1, sync=sync)
    peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else None  # GB (1e9 bytes), as every benchmark records it
    return seconds, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["base", "vggt_1b"], choices=sorted(PRESETS))
    ap.add_argument("--views", nargs="+", type=int, default=None, help="view counts (default 8 16 32 64 128)")
    ap.add_argument("--fusion", nargs="+", default=["on"], choices=["on", "off"])
    ap.add_argument("--fp32", action="store_true", help="disable bf16 autocast")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="8 and 16 views, one timed repeat")
    ap.add_argument("--out", default=None, help="result path (default benchmarks/results/network.json)")
    args = ap.parse_args()
    views_list = args.views or ([8, 16] if args.quick else [8, 16, 32, 64, 128])
    repeats = 1 if args.quick else 3
    device = torch.device(args.device)
    dtype = "bf16" if device.type == "cuda" and not args.fp32 else "fp32"  # autocast is CUDA-only
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 heads: TF32 tensor cores
        torch.backends.cudnn.allow_tf32 = True
    rows: list[dict[str, Any]] = []
    for name in args.configs:
        for fusion in args.fusion:
            model = FF3R(build(name, fusion == "on", not args.fp32)).to(device).eval()
            params = sum(p.numel() for p in model.parameters()) / 1e6
            oom = False
            for views in views_list:
                row: dict[str, Any] = {
                    "config": name.replace("_", "-"), "views": views, "resolution": f"{WIDTH}x{HEIGHT}", "dtype": dtype,
                    "fusion": fusion == "on", "params_m": round(params, 1),
                }  # fmt: skip
                if oom:
                    rows.append({**row, "seconds": None, "peak_gb": None, "status": "skipped"})
                    continue
                try:
                    seconds, peak = measure(model, views, device, repeats)
                    rows.append({**row, "seconds": round(seconds, 4), "peak_gb": None if peak is None else round(peak, 2), "status": "ok"})
                except torch.OutOfMemoryError:
                    oom = True
                    rows.append({**row, "seconds": None, "peak_gb": None, "status": "oom"})
                    gc.collect()
                    torch.cuda.empty_cache()
                print(rows[-1], flush=True)
            del model
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    notes = (
        f"{WIDTH}x{HEIGHT} images, random weights, inference mode; median of {repeats} after 1 warm-up; "
        "peak_gb = torch.cuda.max_memory_allocated in GB (1e9 bytes). Target for vggt_1b on one H100: 64 views <= 2.0 s, <= 40 GB."
    )
    path = write_result("network", rows, quick=args.quick, notes=notes, out=args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
