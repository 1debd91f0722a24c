"""Time the vectorised PLY writer (and reader) against nerfstudio 1.1.5's per-element writer.

Usage::

    python -m benchmarks.export                 # 1M Gaussians, SH degree 0 and 3, 32 semantic channels
    python -m benchmarks.export --quick         # 100k Gaussians

nerfstudio's ``ExportGaussianSplat.write_ply`` loops in Python over every value; it is timed on a subset
(``--ns-subset``, default 20k Gaussians) and its per-Gaussian time scaled to the full count (it is linear).
Writes ``benchmarks/results/export.json`` through :func:`benchmarks.common.write_result`; CPU only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import timed, write_result
from ff3r_ns.export.ply import SplatArrays, read_splat_ply, write_splat_ply


def random_splat(n: int, sh_degree: int, feature_dim: int, seed: int = 0) -> SplatArrays:
    rng = np.random.default_rng(seed)
    k = (sh_degree + 1) ** 2
    f32 = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
    return SplatArrays(f32(n, 3), f32(n, 3), f32(n, k - 1, 3), f32(n), f32(n, 3), f32(n, 4), f32(n, feature_dim) if feature_dim else None)


def nerfstudio_seconds_per_gaussian(splat: SplatArrays, path: Path) -> float:
    """nerfstudio's writer on ``splat`` (standard properties and f_sem_* as extra float columns)."""
    from nerfstudio.scripts.exporter import ExportGaussianSplat

    n = splat.num
    m: OrderedDict[str, np.ndarray] = OrderedDict()
    for i, k in enumerate("xyz"):
        m[k] = splat.means[:, i]
    for k in ("nx", "ny", "nz"):
        m[k] = np.zeros(n, np.float32)
    for i in range(3):
        m[f"f_dc_{i}"] = splat.sh_dc[:, i]
    rest = splat.sh_rest.transpose(0, 2, 1).reshape(n, -1)
    for i in range(rest.shape[1]):
        m[f"f_rest_{i}"] = rest[:, i]
    m["opacity"] = splat.opacity_logits
    for i in range(3):
        m[f"scale_{i}"] = splat.log_scales[:, i]
    for i in range(4):
        m[f"rot_{i}"] = splat.quats[:, i]
    for i in range(splat.feature_dim):
        m[f"f_sem_{i}"] = splat.sem_features[:, i]
    t0 = time.perf_counter()
    ExportGaussianSplat.write_ply(str(path), n, m)
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=None, help="Gaussians (default 1,000,000; 100,000 with --quick)")
    ap.add_argument("--feature-dim", type=int, default=32)
    ap.add_argument("--ns-subset", type=int, default=20_000, help="Gaussians for nerfstudio's writer (0 skips it)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None, help="result path (default benchmarks/results/export.json)")
    args = ap.parse_args()
    n = args.count or (100_000 if args.quick else 1_000_000)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "splat.ply"
        for sh_degree in (0, 3):
            splat = random_splat(n, sh_degree, args.feature_dim)
            write_s = timed(lambda: write_splat_ply(path, splat), repeats=3, warmup=1)
            size_mb = path.stat().st_size / 1e6
            read_s = timed(lambda: read_splat_ply(path), repeats=3, warmup=1)
            row: dict[str, Any] = {
                "gaussians": n, "sh_degree": sh_degree, "feature_dim": args.feature_dim, "file_mb": round(size_mb, 1),
                "write_seconds": round(write_s, 3), "read_seconds": round(read_s, 3),
            }  # fmt: skip
            if args.ns_subset:
                per = nerfstudio_seconds_per_gaussian(random_splat(args.ns_subset, sh_degree, args.feature_dim), path)
                row["nerfstudio_write_seconds_extrapolated"] = round(per * n, 1)
                row["speedup"] = round(per * n / write_s, 1)
            rows.append(row)
            print(row, flush=True)
    notes = (
        f"CPU; median of 3 after 1 warm-up; write includes the non-finite filter. nerfstudio 1.1.5 "
        f"ExportGaussianSplat.write_ply timed once on {args.ns_subset} Gaussians and scaled linearly to {n}."
    )
    print(f"wrote {write_result('export', rows, quick=args.quick, notes=notes, out=args.out)}")


if __name__ == "__main__":
    main()
