"""Segmentation after refinement: source- and target-view mIoU of ``ns-train ff3r-tiny`` next to the 2D teacher's.

On generated rooms the project never trained on (seeds below 1000), each run through nerfstudio's own Trainer in
this process, as ``ns-train`` runs it (every 8th frame held out): the feedforward result (step 0) and the refined
one (``--steps``, default the method's CPU budget) are scored on the training views (source) and on the held-out
views (target). Labels come from the rendered semantic features (decoded, argmax of cosine with the class
embeddings, as the viewer's segmentation); the 2D teacher's mIoU is on the same pixels, the teacher's own
features of the ground-truth labels with its per-view noise (training views: the noise the refinement targets had;
held-out views: noise of views never used), i.e. what a view-by-view 2D model would give. The target is 3D consistency beating that teacher at held-out views.

Writes ``benchmarks/results/refined_miou.json`` (rows: ``scene``, ``step``, ``split``, ``views``, ``miou``,
``teacher_miou``, ``psnr``, ``gaussians``, ``seconds``) and a ``summary`` with the means.

Usage:
    python -m benchmarks.refined_miou                         # 4 rooms, 24 frames of 128x128, CPU
    python -m benchmarks.refined_miou --seeds 0 1 2 3 4 5 --steps 3000 --resolution 256   # on a GPU
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from benchmarks import timed_runs as vs
from benchmarks.common import RESULTS_DIR, ROOT, command_line, write_result


@dataclass
class SplitTruth:
    """One split's ground truth in the teacher's (= the model's) class numbering, and the 2D teacher's mIoU on it.

    The same for the feedforward and the refined reconstruction, so it is computed once per split.
    """

    labels: Tensor  # [S, H, W] int64
    teacher_miou: float


@torch.no_grad()
def split_truth(pipeline: Any, split: str, teacher: Any, data: Path) -> SplitTruth:
    """Read one split's label maps and score the 2D teacher on them.

    Args:
        pipeline: a set-up FF3R pipeline.
        split: ``"train"`` (source views) or ``"eval"`` (held-out target views).
        teacher: the offline teacher the network was trained against (``core.reconstruct.load_teacher``).
        data: the scene folder (label maps are read from its ``transforms.json``).
    """
    from ff3r_ns.core.metrics import confusion_matrix, segmentation_scores
    from ff3r_ns.core.semantics import segment_labels, to_teacher_labels
    from ff3r_ns.nerfstudio.scene import read_label_maps

    dm = pipeline.datamanager
    dataset = dm.train_dataset if split == "train" else dm.eval_dataset
    labels, classes = read_label_maps(data, list(dataset.image_filenames))
    if labels is None:
        raise SystemExit(f"{data}: no label maps (semantic_path) to score segmentation against")
    labels = to_teacher_labels(labels, classes, teacher.classes)
    k = len(teacher.classes)
    # Teacher view ids: the training views keep the ids refinement's targets used (their index), held-out views get
    # ids no training view has, so that their teacher noise is independent of what the model was fitted to.
    first_id = 0 if split == "train" else len(dm.train_dataset) + 10_000
    embeddings = pipeline.model.semantics.class_embeddings.cpu()
    cm = torch.zeros(k, k, dtype=torch.long)
    for i in range(labels.shape[0]):
        t = teacher.features(labels[i : i + 1], torch.tensor([first_id + i]))  # [1, D, H, W]
        cm += confusion_matrix(segment_labels(t.permute(0, 2, 3, 1)[0], embeddings), labels[i], k)
    return SplitTruth(labels=labels, teacher_miou=segmentation_scores(cm).miou)


@torch.no_grad()
def score_split(pipeline: Any, split: str, truth: SplitTruth) -> dict[str, float]:
    """mIoU of the rendered segmentation and PSNR over one split's views (the teacher's mIoU from ``truth``)."""
    from ff3r_ns.core.metrics import confusion_matrix, psnr, segmentation_scores

    model = pipeline.model
    dataset = pipeline.datamanager.train_dataset if split == "train" else pipeline.datamanager.eval_dataset
    k = len(model.semantics.classes)
    cm = torch.zeros(k, k, dtype=torch.long)
    psnrs = []
    pipeline.eval()
    try:
        for i in range(len(dataset)):
            out = model.get_outputs_for_camera(dataset.cameras[i : i + 1].to(model.device))
            feats = out["feature"] / out["accumulation"].clamp_min(1e-6)
            cm += confusion_matrix(model.semantics.segment(feats).cpu(), truth.labels[i], k)
            image = dataset.get_image_float32(i).to(model.device)[..., :3]
            psnrs.append(float(psnr(out["rgb"].clamp(0, 1), image)))
    finally:
        pipeline.train()
    return {"views": len(dataset), "miou": segmentation_scores(cm).miou, "teacher_miou": truth.teacher_miou,
            "psnr": sum(psnrs) / len(psnrs)}


def run_scene(args: argparse.Namespace, seed: int) -> list[dict[str, Any]]:
    """Feedforward and refined scores of one generated room."""
    from ff3r_ns.core.checkpoint import load_checkpoint
    from ff3r_ns.core.reconstruct import load_teacher

    scene = vs.generated_scenes([args.views], args.resolution, seed, args.cache_dir)[args.views]
    base_cfg = vs.ff3r_config(args.method)
    steps = args.steps if args.steps is not None else (base_cfg.cpu_max_num_iterations or base_cfg.max_num_iterations)
    cfg = vs.quiet_trainer_config(base_cfg, scene, args.device, steps, args.runs_dir, f"seed{seed}")
    for assignment in args.set:
        vs.set_field(cfg, assignment)
    t0 = time.perf_counter()
    built = vs.build_trainer(cfg)
    pipeline = built.trainer.pipeline
    settings = pipeline.model.config.network
    ckpt = load_checkpoint(settings.weights) if settings.weights is not None else None
    teacher = load_teacher(settings, list(pipeline.model.config.classes), checkpoint=ckpt)
    truths = {split: split_truth(pipeline, split, teacher, scene) for split in ("train", "eval")}
    rows = []

    def record(step: int, seconds: float) -> None:
        for split, name in (("train", "source"), ("eval", "target")):
            s = score_split(pipeline, split, truths[split])
            rows.append({"scene": scene.name, "seed": seed, "step": step, "split": name, **s,
                         "gaussians": pipeline.model.num_points, "seconds": round(seconds, 1)})
            print(f"seed {seed} step {step} {name}: mIoU {s['miou']:.3f} (teacher {s['teacher_miou']:.3f}), "
                  f"PSNR {s['psnr']:.2f} dB", flush=True)

    record(0, time.perf_counter() - t0)
    t1 = time.perf_counter()
    if steps > 0:
        built.trainer.train()
    record(steps, time.perf_counter() - t1)
    vs.release()
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means per (step kind, split): feedforward (step 0) and refined (the last step)."""
    out: dict[str, Any] = {}
    if not rows:  # a run stopped before its first room: nothing to average
        return out
    last = max(r["step"] for r in rows)
    for kind, step in (("feedforward", 0), ("refined", last)):
        for split in ("source", "target"):
            sel = [r for r in rows if r["step"] == step and r["split"] == split]
            if sel:
                out[f"{kind}_{split}_miou"] = round(sum(r["miou"] for r in sel) / len(sel), 4)
                out[f"{kind}_{split}_teacher_miou"] = round(sum(r["teacher_miou"] for r in sel) / len(sel), 4)
    if "refined_target_miou" in out:
        out["target_beats_teacher"] = out["refined_target_miou"] >= out["refined_target_teacher_miou"]
    return out


def main(argv: Optional[Sequence[str]] = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="generated rooms (unseen: < 1000)")
    p.add_argument("--views", type=int, default=21, help="training views per room (every 8th frame held out)")
    p.add_argument("--resolution", type=int, default=128, help="image side in pixels")
    p.add_argument("--method", default="ff3r-tiny", help="registered ff3r method")
    p.add_argument("--steps", type=int, default=None, help="refinement steps (default: the method's CPU budget)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--cache-dir", type=Path, default=ROOT / "outputs" / "refined_miou" / "scenes")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "outputs" / "refined_miou" / "runs")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="config overrides (Python literals), "
                   "e.g. short_run_lr_scale.sem_features=8.0")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "refined_miou.json")
    args = p.parse_args(argv)
    command = command_line("benchmarks.refined_miou", argv)
    notes = ("source = training views, target = held-out views (every 8th frame); teacher_miou = the offline 2D teacher "
             "on the same pixels (its per-view noise: training views the ids refinement's targets used, held-out views ids "
             "no training view has); step 0 = feedforward.")
    rows: list[dict[str, Any]] = []
    for done, seed in enumerate(args.seeds, start=1):
        rows += run_scene(args, seed)
        # Written after every room, so that a run cut short (a lent GPU machine taken back) keeps what it measured.
        scores = summary(rows)
        path = write_result("refined_miou", rows, quick=False, notes=notes, out=args.out, command=command,
                            extra={"summary": scores, "complete": done == len(args.seeds)})
    print(f"wrote {path}: {scores}")
    return path


if __name__ == "__main__":
    main()
