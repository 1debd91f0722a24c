"""Benchmark the semantics-aware voxel merge on generated scenes -> benchmarks/results/voxelize.json.

Input Gaussians imitate the network's pixel-aligned output: the ground-truth depth of every view is
unprojected with the ground-truth cameras (``unproject_depth``), colours come from the images, and
features are a per-class prototype plus Gaussian noise, imitating a noisy 2D teacher (prototypes
are orthonormal, so the noise, not the prototypes, decides how close two classes come). The
confidence is random (standard normal x 0.5): ground-truth depth carries no uncertainty to derive
it from.

Rows: ``{views, resolution, semantic, gaussians_in, gaussians_out, merge_seconds, forward_seconds,
purity}`` plus ``voxels``, ``reduction``, ``label_pure_share`` (share of merged Gaussians whose
inputs all carry one label), ``boundary_purity`` (purity over the merged Gaussians of voxels whose
inputs carry several labels, where merging can mix classes) and ``boundary_share`` (their share). ``forward_seconds`` is the network's forward time at that view count
from ``benchmarks/results/network.json`` (config vggt-1b, else base), else null.

Usage:
    python -m benchmarks.voxelize                       # 8..256 views at 448 px, cuda if available
    python -m benchmarks.voxelize --quick --device cpu --resolution 112
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from benchmarks.common import RESULTS_DIR, timed, write_result
from ff3r_ns.core.cameras import Cameras, unproject_depth
from ff3r_ns.core.gaussians import Gaussians, rgb_to_sh
from ff3r_ns.core.voxelize import VoxelConfig, estimate_scene_scale, group_purity, voxel_ids, voxelize
from ff3r_ns.data.generate import SceneViews

FEATURE_DIM = 16
FEATURE_NOISE = 0.1  # per channel; |noise| ~ 0.4, cosine to the own prototype ~ 0.93
VIEWS = (8, 16, 32, 64, 128, 256)
QUICK_VIEWS = (8, 16, 32)
CACHE_DIR = Path("/tmp/ff3r_voxel_scenes")


def _render_chunk(spec: Any, indices: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render views ``indices`` of ``spec`` exactly as ``generate_scene`` does (one worker's share)."""
    from ff3r_ns.data.generate import build_scene
    from ff3r_ns.data.raycast import make_accel, render_view
    from ff3r_ns.data.trajectory import look_at, pinhole

    scene, path = build_scene(spec)
    eye, target = path.sample(path.view_params(spec.num_views)[indices])
    w2c = look_at(eye, target)
    k = pinhole(spec.width, spec.height, spec.fov_deg)
    accel = make_accel(scene)
    outs = [render_view(scene, w2c[i], k, spec.width, spec.height, shadows=spec.shadows, accel=accel) for i in range(len(indices))]
    rgb = np.stack([(np.clip(o.rgb, 0, 1) * 255).round().astype(np.uint8) for o in outs])
    return rgb, np.stack([o.depth for o in outs]), np.stack([o.labels for o in outs]), w2c.astype(np.float32), k


def _generator_fingerprint() -> str:
    """Hash of the generator's sources, so a changed generator never reads a stale cache."""
    import ff3r_ns.data

    digest = hashlib.sha1()
    for f in sorted(Path(ff3r_ns.data.__file__).parent.glob("*.py")):
        digest.update(f.read_bytes())
    return digest.hexdigest()[:10]


def generated_scene_views(
    views: int, resolution: int, seed: int, cache_dir: Path = CACHE_DIR, workers: int = 0
) -> SceneViews:
    """``views`` orbit views of generated scene ``seed`` (``ff3r_ns.data.generate``), cached as npz.

    The cache file name carries a hash of the generator's sources. The views are rendered in ``workers`` processes (default: all CPUs) with the generator's own
    functions, so the result equals ``generate_scene(SceneSpec(seed, views, resolution, resolution))``.
    """
    path = cache_dir / f"scene_v{views}_r{resolution}_s{seed}_{_generator_fingerprint()}.npz"
    if not path.exists():
        from concurrent.futures import ProcessPoolExecutor

        from ff3r_ns.data.generate import CLASSES, SceneSpec

        spec = SceneSpec(seed=seed, num_views=views, width=resolution, height=resolution)
        workers = min(workers or os.cpu_count() or 1, views)
        chunks = [c.tolist() for c in np.array_split(np.arange(views), workers)]
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_render_chunk, [spec] * len(chunks), chunks))
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(
            tmp,
            images=np.concatenate([p[0] for p in parts]),
            depth=np.concatenate([p[1] for p in parts]).astype(np.float32),
            labels=np.concatenate([p[2] for p in parts]).astype(np.uint8),
            world_to_cam=np.concatenate([p[3] for p in parts]),
            intrinsics=np.broadcast_to(parts[0][4], (views, 3, 3)).astype(np.float32),
            classes=np.array(list(CLASSES)),
        )
        tmp.rename(path)
    z = np.load(path)
    return SceneViews(
        images=z["images"].astype(np.float32) / 255.0,
        depth=z["depth"],
        labels=z["labels"],
        world_to_cam=z["world_to_cam"].astype(np.float32),
        intrinsics=z["intrinsics"],
        classes=[str(c) for c in z["classes"]],
    )


def subset(scene: SceneViews, views: int) -> SceneViews:
    """Every ``S / views``-th view: on the closed orbit this is exactly the ``views``-view scene."""
    s = scene.depth.shape[0]
    if s % views:
        raise ValueError(f"{views} views is not a divisor of the {s} generated views")
    sl = slice(None, None, s // views)
    return SceneViews(
        scene.images[sl], scene.depth[sl], scene.labels[sl], scene.world_to_cam[sl], scene.intrinsics[sl], scene.classes
    )


def class_prototypes(num_classes: int, dim: int = FEATURE_DIM, seed: int = 0) -> torch.Tensor:
    """``[C, dim]`` orthonormal class prototypes (``C <= dim``)."""
    if num_classes > dim:
        raise ValueError(f"{num_classes} classes need feature_dim >= {num_classes}, got {dim}")
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))
    return q[:num_classes].contiguous()


def pixel_gaussians(scene: Any, prototypes: torch.Tensor, device: str, seed: int = 0) -> tuple[Gaussians, torch.Tensor, torch.Tensor]:
    """One Gaussian per valid pixel of every view, as the network's Gaussian head would predict.

    Args:
        scene: anything with ``images [S,H,W,3]``, ``depth [S,H,W]``, ``labels [S,H,W]``,
            ``cameras()`` (a ``SceneViews``).
        prototypes: ``[C, F]`` class prototypes; features are ``prototypes[label] + noise``.
        device: where to build them.

    Returns:
        Unbatched ``Gaussians`` (N = valid pixels), ``labels [N]`` and the camera centres ``[S, 3]``.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    cams = scene.cameras().to(device)
    depth = torch.as_tensor(np.asarray(scene.depth), dtype=torch.float32, device=device)
    valid = torch.isfinite(depth) & (depth > 0)
    pts = unproject_depth(torch.where(valid, depth, torch.ones_like(depth)), cams)[valid]
    rgb = torch.as_tensor(np.asarray(scene.images), dtype=torch.float32, device=device)[valid]
    labels = torch.as_tensor(np.asarray(scene.labels), device=device).long()[valid]
    # Isotropic scale of one pixel footprint: depth / focal length.
    fx = cams.intrinsics[:, 0, 0][:, None, None].expand_as(depth)[valid]
    n = pts.shape[0]
    randn = lambda *s: torch.randn(*s, generator=gen).to(device)  # noqa: E731
    protos = prototypes.to(device)
    g = Gaussians(
        means=pts,
        quats=randn(n, 4),
        scales=(depth[valid] / fx)[:, None].expand(n, 3).contiguous(),
        opacities=0.5 + 0.4 * torch.rand(n, generator=gen).to(device),
        sh=rgb_to_sh(rgb)[:, None, :],
        features=protos[labels] + FEATURE_NOISE * randn(n, protos.shape[1]),
        confidence=0.5 * randn(n),
    )
    return g, labels, cams.centers


def forward_seconds(views: int, path: Path = RESULTS_DIR / "network.json") -> Optional[float]:
    """The network's forward time at ``views`` from the network benchmark (vggt-1b, else base)."""
    if not path.exists():
        return None
    rows = json.loads(path.read_text()).get("rows", [])
    for config in ("vggt-1b", "base"):
        for r in rows:
            if r.get("config") == config and r.get("views") == views:
                for key in ("forward_seconds", "seconds", "time_s"):
                    if r.get(key) is not None:
                        return float(r[key])
    return None


def measure(scene: Any, semantic: bool, device: str, voxel_size: float, repeats: int = 3) -> dict[str, Any]:
    """Merge one scene's pixel Gaussians and return one result row (without ``forward_seconds``)."""
    protos = class_prototypes(len(scene.classes))
    g, labels, centers = pixel_gaussians(scene, protos, device)
    cfg = VoxelConfig(voxel_size=voxel_size, semantic=semantic)
    scale = estimate_scene_scale(g.means, centers)
    sync = torch.cuda.synchronize if g.device.type == "cuda" else None
    seconds = timed(lambda: voxelize(g, cfg, scale=scale), repeats=repeats, warmup=1, sync=sync)
    out = voxelize(g, cfg, scale=scale)
    m = out.gaussians.num
    n_lab = torch.zeros(m * len(scene.classes), dtype=torch.long, device=g.device)
    n_lab.index_add_(0, out.inverse * len(scene.classes) + labels, torch.ones_like(labels))
    single = ((n_lab.view(m, -1) > 0).sum(-1) == 1).double().mean()
    # Boundary voxels: voxels whose inputs carry more than one label (where merging can mix classes).
    voxel = torch.zeros(m, dtype=torch.long, device=g.device).index_put_((out.inverse,), voxel_ids(g.means, scale * voxel_size)[0])
    v_lab = torch.zeros(out.num_voxels * len(scene.classes), dtype=torch.long, device=g.device)
    v_lab.index_add_(0, voxel[out.inverse] * len(scene.classes) + labels, torch.ones_like(labels))
    boundary = ((v_lab.view(out.num_voxels, -1) > 0).sum(-1) > 1)[voxel]
    s, h, w = np.asarray(scene.depth).shape
    return {
        "views": int(s),
        "resolution": int(max(h, w)),
        "semantic": semantic,
        "gaussians_in": g.num,
        "gaussians_out": m,
        "voxels": out.num_voxels,
        "reduction": 1.0 - m / max(g.num, 1),
        "merge_seconds": seconds,
        "purity": group_purity(out.inverse, labels, out.gaussians.features, protos),
        "label_pure_share": float(single),
        "boundary_purity": group_purity(out.inverse, labels, out.gaussians.features, protos, mask=boundary),
        "boundary_share": float(boundary.double().mean()),
        "voxel_size": voxel_size,
        "device": str(g.device),
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"views {QUICK_VIEWS} only")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resolution", type=int, default=448)
    p.add_argument("--voxel-size", type=float, default=VoxelConfig().voxel_size)
    p.add_argument("--views", type=int, nargs="*", default=None, help="override the view counts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    p.add_argument("--workers", type=int, default=0, help="scene rendering processes (0: all CPUs)")
    p.add_argument("--out", type=Path, default=None, help="default benchmarks/results/voxelize.json")
    args = p.parse_args(argv)
    views = args.views or (QUICK_VIEWS if args.quick else VIEWS)
    full = generated_scene_views(max(views), args.resolution, args.seed, args.cache_dir, args.workers)
    rows = []
    for v in views:
        scene = subset(full, v)
        for semantic in (False, True):
            row = measure(scene, semantic, args.device, args.voxel_size, args.repeats)
            row["forward_seconds"] = forward_seconds(v)
            rows.append(row)
            print(json.dumps(row))
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    path = write_result(
        "voxelize",
        rows,
        quick=args.quick,
        out=args.out,
        notes=(
            "Pixel Gaussians from ground-truth depth and cameras of generated scenes; features = orthonormal class "
            f"prototype + N(0, {FEATURE_NOISE}^2) noise per channel (a noisy 2D teacher); confidence N(0, 0.5^2). "
            "voxel_size is relative to the median distance of the points to the first camera."
        ),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
