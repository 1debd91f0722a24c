"""Real-photo check: FF3R on ViSP's hand-held ``mbt/cube`` sequence, against a pycolmap reconstruction.

Debian's ``visp-images-data`` package ships a 218-frame, 640x480 grayscale hand-held sequence of a cube
on a desk, with calibrated intrinsics in ``cube.xml``. This script

1. keeps ``--frames`` evenly spaced frames and writes them as an **unposed** PNG folder (no poses, no
   intrinsics file), then reads that folder through the ``images-data`` dataparser (grayscale is
   replicated to RGB there, and logged);
2. reconstructs the same frames with pycolmap on the CPU (SIFT, exhaustive matching, incremental
   mapping with the calibrated pinhole intrinsics held fixed) for reference poses;
3. holds out every ``--holdout-every``-th frame as a target view, runs FF3R once on the other (context)
   frames, and reports, on the context frames COLMAP registered:
   pose accuracy (:func:`ff3r_ns.core.pose_eval.evaluate_poses`: aligned rotation/translation errors,
   VGGT-style AUC@5/15/30, focal error against ``cube.xml``), and, after moving the reconstruction into
   COLMAP's frame by the similarity fitted on the context cameras, the PSNR of the held-out frames
   rendered at COLMAP's poses;
4. writes ``benchmarks/results/real_sequence.json`` (:func:`benchmarks.common.write_result`).

Setup (once)::

    apt-get update && apt-get install -y visp-images-data
    pip install 'ff3r-ns[real]'            # pycolmap

Run::

    python -m benchmarks.real_sequence                       # tiny random-init network (pipeline check)
    python -m benchmarks.real_sequence --weights CKPT --preset base --image-size 224 --device cuda

With a random network the pose numbers are meaningless (AUC near 0); they become a real measurement with
trained weights. The COLMAP poses are cached in ``WORKDIR/colmap/poses.json``; on a machine without the
Debian package or pycolmap, copy ``mbt/cube``, ``mbt/cube.xml`` and the work folder there and pass
``--source COPY/cube --workdir COPY_OF_WORKDIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from PIL import Image

from ff3r_ns.core.cameras import Cameras
from ff3r_ns.core.pose_eval import evaluate_poses
from ff3r_ns.method_configs.ff3r import CPU_REFINE_STEPS

DEFAULT_SOURCE = Path("/usr/share/visp-images-data/ViSP-images/mbt/cube")


@dataclass
class Calibration:
    """Pinhole intrinsics of the ViSP sequence (``cube.xml``: ``px py u0 v0``)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def matrix(self) -> torch.Tensor:
        return torch.tensor([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def read_calibration(xml_path: Path) -> Calibration:
    cam = ET.parse(xml_path).getroot().find("camera")
    if cam is None:
        raise SystemExit(f"{xml_path}: no <camera> element")
    value = lambda tag: float(cam.findtext(tag))  # noqa: E731
    return Calibration(value("px"), value("py"), value("u0"), value("v0"))


def make_unposed_folder(source: Path, out: Path, frames: int) -> List[str]:
    """Copy ``frames`` evenly spaced frames of ``source`` (PGM) into ``out`` as grayscale PNGs; returns the names."""
    files = sorted(source.glob("image*.pgm"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if len(files) < frames:
        raise SystemExit(f"{source}: {len(files)} frames, fewer than --frames {frames}")
    keep = np.unique(np.round(np.linspace(0, len(files) - 1, frames)).astype(int))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    names = []
    for i in keep:
        name = files[i].stem + ".png"
        with Image.open(files[i]) as im:
            im.save(out / name)  # stays single-channel: the dataparser's grayscale path is part of the check
        names.append(name)
    print(f"real_sequence: {len(names)} of {len(files)} frames of {source} -> {out}")
    return names


def colmap_reference(images: Path, work: Path, calib: Calibration, threads: int) -> dict:
    """``{image name: world_to_cam [4, 4] float64}`` for the frames pycolmap registers (largest model).

    The result is kept in ``work/poses.json`` and reused while the frame names are the same, so the check can
    run on a machine without pycolmap (copy the work folder along).
    """
    cache = work / "poses.json"
    names = sorted(p.name for p in images.glob("*.png"))
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved["names"] == names:
            print(f"real_sequence: COLMAP poses of {len(saved['poses'])} frames from {cache}")
            return {k: torch.tensor(v, dtype=torch.float64) for k, v in saved["poses"].items()}
    try:
        import pycolmap
    except ImportError:
        raise SystemExit("pycolmap is not installed: pip install pycolmap (or 'ff3r-ns[real]')") from None
    db = work / "database.db"
    sparse = work / "sparse"
    for p in (db, sparse):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    sparse.mkdir(parents=True)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    reader.camera_params = f"{calib.fx},{calib.fy},{calib.cx},{calib.cy}"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = threads
    pycolmap.extract_features(db, images, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    pycolmap.match_exhaustive(db, device=pycolmap.Device.cpu)
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = threads
    options.ba_refine_focal_length = False  # the calibration is known: keep it, so only poses are estimated
    options.ba_refine_principal_point = False
    options.ba_refine_extra_params = False
    models = pycolmap.incremental_mapping(db, images, sparse, options)
    if not models:
        raise SystemExit("pycolmap registered no model on this sequence (no reference poses)")
    rec = max(models.values(), key=lambda r: r.num_reg_images())
    poses = {}
    for image in rec.images.values():
        cfw = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :] = torch.from_numpy(np.asarray(cfw.matrix(), dtype=np.float64))
        poses[image.name] = m
    print(f"real_sequence: pycolmap registered {len(poses)} frames")
    cache.write_text(json.dumps({"names": names, "poses": {k: v.tolist() for k, v in poses.items()}}))
    return poses


def network_settings(args: argparse.Namespace):
    from ff3r_ns.core.network.config import FF3RConfig
    from ff3r_ns.core.reconstruct import NetworkSettings

    arch = getattr(FF3RConfig, args.preset)()
    # placement="similarity": the prediction is pose-free; COLMAP's context poses only align it for scoring.
    return NetworkSettings(architecture=arch, weights=args.weights, random_init=args.weights is None,
                           image_size=args.image_size, voxel_size=args.voxel_size, placement="similarity")


@dataclass
class RefinedScores:
    """Poses and held-out PSNR of one ns-train run on the context frames, before and after its refinement."""

    before: dict
    after: dict
    steps: int
    seconds: float


def refine_and_score(args: argparse.Namespace, context_dir: Path, context_names: List[str], ref: Cameras,
                     targets: Cameras, target_images: torch.Tensor) -> RefinedScores:
    """``ns-train ff3r-tiny`` (in process) on the unposed context frames: score its cameras and Gaussians at step 0
    and after ``--refine-steps`` steps (Gaussians and, through nerfstudio's camera optimizer, poses).

    Cameras are the run's own (the adopted predictions, corrected by the camera optimizer); for the held-out
    PSNR the run is moved into COLMAP's frame by the similarity of its context cameras onto COLMAP's, then the
    targets are rendered at COLMAP's poses (``targets``, at the comparison size, against ``target_images``).
    """
    from benchmarks import timed_runs as vs
    from ff3r_ns.core.cameras import align_cameras, opengl_c2w_to_opencv_w2c
    from ff3r_ns.core.gaussians import transform_gaussians
    from ff3r_ns.core.metrics import psnr
    from ff3r_ns.core.render import render
    from ff3r_ns.method_configs.ff3r_tiny import ff3r_tiny_method
    from ff3r_ns.nerfstudio.images_dataparser import ImagesDataParserConfig

    cfg = vs.quiet_trainer_config(ff3r_tiny_method.config, context_dir, args.device, args.refine_steps,
                                  args.workdir / "runs", "refine")
    cfg.pipeline.datamanager.dataparser = ImagesDataParserConfig(data=context_dir, max_images=0, cache_dir=args.workdir / "cache")
    cfg.pipeline.model.network = dataclasses.replace(
        cfg.pipeline.model.network, weights=args.weights, random_init=args.weights is None, image_size=args.image_size,
        voxel_size=args.voxel_size,
    )
    built = vs.build_trainer(cfg)
    pipeline = built.trainer.pipeline
    model, dm = pipeline.model, pipeline.datamanager
    names = list(dm.train_dataset.metadata["source_names"])
    order = torch.tensor([names.index(n) for n in context_names])

    def score() -> dict:
        with torch.no_grad():
            cams = dm.train_dataset.cameras
            c2w = []
            for i in order.tolist():
                cam = cams[i : i + 1].to(model.device)
                cam.metadata = {"cam_idx": i}
                c2w.append(model.camera_optimizer.apply_to_camera(cam)[0])
            w2c = opengl_c2w_to_opencv_w2c(torch.stack(c2w).cpu().double())
            k = cams.get_intrinsics_matrices()[order].double()
            run_cams = Cameras(w2c, k, int(cams.width[0]), int(cams.height[0]))
            errors = evaluate_poses(run_cams, ref).summary()
            sim = align_cameras(w2c.float(), ref.world_to_cam.float())
            g = model.gaussians().detach().to("cpu")
            g = transform_gaussians(g, sim.scale, sim.rotation, sim.translation)
            scores = [float(psnr(render(g, targets[j : j + 1], background=torch.zeros(3)).rgb[0].clamp(0, 1), target_images[j]))
                      for j in range(len(targets))]
        return {**errors, "target_psnr_mean": float(np.mean(scores)) if scores else None, "gaussians": model.num_points}

    before = score()
    t0 = time.perf_counter()
    built.trainer.train()
    seconds = time.perf_counter() - t0
    return RefinedScores(before, score(), args.refine_steps, seconds)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the ViSP mbt/cube frame folder")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ff3r_real_sequence"))
    parser.add_argument("--frames", type=int, default=28, help="frames kept from the 218")
    parser.add_argument("--holdout-every", type=int, default=4, help="every k-th kept frame is a target view")
    parser.add_argument("--weights", type=Path, default=None, help="FF3R checkpoint (default: random init)")
    parser.add_argument("--preset", choices=["tiny", "base", "vggt_1b"], default="tiny")
    parser.add_argument("--image-size", type=int, default=112, help="network input longest side")
    parser.add_argument("--voxel-size", type=float, default=0.0)
    parser.add_argument("--render-width", type=int, default=160, help="width at which target views are compared")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2, help="pycolmap CPU threads")
    parser.add_argument("--refine-steps", type=int, default=CPU_REFINE_STEPS,
                        help="refinement steps of the ns-train run on the context frames (default: ff3r-tiny's; 0: "
                             "feedforward rows only)")
    parser.add_argument("--quick", action="store_true", help="12 frames (a smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/real_sequence.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames = 12
    if not args.source.is_dir():
        raise SystemExit(f"{args.source}: not found; install it with: apt-get update && apt-get install -y visp-images-data")
    calib = read_calibration(args.source.parent / "cube.xml")

    from benchmarks.common import write_result
    from ff3r_ns.core.metrics import psnr
    from ff3r_ns.core.reconstruct import run_network
    from ff3r_ns.core.render import render
    from ff3r_ns.nerfstudio.images_dataparser import ImagesDataParserConfig

    images_dir = args.workdir / "images"
    names = make_unposed_folder(args.source, images_dir, args.frames)
    t0 = time.perf_counter()
    poses = colmap_reference(images_dir, args.workdir / "colmap", calib, args.threads)
    colmap_s = time.perf_counter() - t0

    outputs = ImagesDataParserConfig(data=images_dir, max_images=0, cache_dir=args.workdir / "cache").setup().get_dataparser_outputs("train")
    assert outputs.metadata["source_names"] == names
    images = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0) for p in outputs.image_filenames])
    height, width = images.shape[1:3]

    k = args.holdout_every
    context = [i for i in range(len(names)) if i % k != k - 1 and names[i] in poses]
    targets = [i for i in range(len(names)) if i % k == k - 1 and names[i] in poses]
    if len(context) < 3:
        raise SystemExit(f"only {len(context)} context frames have COLMAP poses; need 3")

    def ref_cameras(idx: List[int]) -> Cameras:
        w2c = torch.stack([poses[names[i]] for i in idx])
        return Cameras(w2c, calib.matrix().expand(len(idx), 3, 3).clone(), width, height)

    settings = network_settings(args)
    ctx_images = images[context].to(args.device)
    # Unposed prediction (network frame) for pose accuracy; the same run aligned to COLMAP for rendering.
    from ff3r_ns.core.reconstruct import build_network

    torch.manual_seed(0)  # a random-init network is then the same network every run
    net = build_network(settings, args.device)
    unposed = run_network(settings, ctx_images, None, network=net)
    errors = evaluate_poses(unposed.cameras.to("cpu"), ref_cameras(context))
    aligned = run_network(settings, ctx_images, ref_cameras(context).to(args.device), network=net)

    target_psnr: List[float] = []
    scale = args.render_width / width
    rw, rh = args.render_width, int(round(height * scale))
    cams = ref_cameras(targets).resized(rw, rh)
    cams = Cameras(cams.world_to_cam.float(), cams.intrinsics.float(), rw, rh).to(args.device)
    gt = torch.nn.functional.interpolate(images[targets].permute(0, 3, 1, 2), size=(rh, rw), mode="bilinear",
                                         antialias=True, align_corners=False).permute(0, 2, 3, 1).to(args.device)
    for j in range(len(targets)):
        out = render(aligned.gaussians, cams[j : j + 1], background=torch.zeros(3, device=args.device))
        target_psnr.append(float(psnr(out.rgb[0].clamp(0, 1), gt[j])))

    refined = None
    if args.refine_steps > 0:
        context_dir = args.workdir / "context"
        if context_dir.exists():
            shutil.rmtree(context_dir)
        context_dir.mkdir(parents=True)
        for i in context:
            shutil.copy2(images_dir / names[i], context_dir / names[i])
        refined = refine_and_score(args, context_dir, [names[i] for i in context], ref_cameras(context),
                                   cams.to("cpu"), gt.cpu())

    row = {
        "sequence": "visp-images-data mbt/cube",
        "frames": len(names),
        "colmap_registered": len(poses),
        "context_views": len(context),
        "target_views": len(targets),
        "network": str(args.weights) if args.weights else f"{args.preset} random-init",
        "image_size": args.image_size,
        **errors.summary(),
        "target_psnr_mean": float(np.mean(target_psnr)) if target_psnr else None,
        "target_psnr": target_psnr,
        "render_width": args.render_width,
        "forward_s": unposed.forward_seconds,
        "colmap_s": colmap_s,
        "device": args.device,
    }
    if refined is not None:
        keep = ("auc_5", "auc_15", "auc_30", "rot_err_deg_mean", "rel_rot_err_deg_mean", "trans_err_rel_mean",
                "target_psnr_mean", "gaussians")
        row.update({f"run_step0_{k}": refined.before.get(k) for k in keep})
        row.update({f"run_refined_{k}": refined.after.get(k) for k in keep})
        row.update({"refine_steps": refined.steps, "refine_seconds": refined.seconds})
    notes = ("Reference poses: pycolmap (SIFT, exhaustive matching, fixed cube.xml pinhole intrinsics). Pose metrics on "
             "context frames (unposed prediction vs COLMAP); target PSNR at COLMAP poses after the similarity fitted "
             "on the context cameras, no per-view pose refinement. run_step0_* / run_refined_*: ns-train ff3r-tiny (in "
             "process) on the unposed context frames, scored with its own cameras (the adopted predictions, and after "
             "refinement the camera optimizer's corrections) before and after refine_steps steps; its held-out PSNR at "
             "COLMAP's poses after the similarity of its context cameras onto COLMAP's. A random-init network gives "
             "meaningless numbers.")
    path = write_result("real_sequence", [row], quick=args.quick, notes=notes, out=args.out)
    for key in ("colmap_registered", "context_views", "target_views", "rot_err_deg_mean", "trans_err_rel_mean", "auc_5",
                "auc_15", "auc_30", "focal_err_rel_mean", "target_psnr_mean"):
        print(f"{key:>22s}  {row[key]}")
    for key in (k for k in row if k.startswith("run_") or k.startswith("refine_")):
        print(f"{key:>32s}  {row[key]}")
    print(f"real_sequence: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
