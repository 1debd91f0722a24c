"""``eval.json`` (the shared benchmark envelope) and ``eval.md`` from per-scene results.

Rows are plain JSON: numbers, or ``null`` where a metric was not measured (no labels, no depth, no LPIPS
weights) -- never ``NaN``, which is not JSON.
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import fmean
from typing import Any, Optional, Sequence

from ff3r_ns.core.metrics import segmentation_scores
from ff3r_ns.envelope import write_result
from ff3r_ns.evaluation.runner import SceneResult, TargetResult

SUMMARY_FIELDS = (
    "psnr_target", "ssim_target", "lpips_target", "psnr_source", "absrel", "absrel_unscaled", "inlier_103", "delta_125",
    "miou_source", "acc_source", "miou_target", "acc_target", "teacher_miou_target", "teacher_acc_target",
    "forward_seconds", "align_seconds", "align_residual_before", "align_residual_after",
)
"""Row fields averaged over scenes into the summary (scenes where a field is null are left out of its mean)."""


def _num(x: Optional[float]) -> Optional[float]:
    """``x`` as a JSON number, None for missing or non-finite values."""
    if x is None or not math.isfinite(float(x)):
        return None
    return float(x)


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return fmean(vals) if vals else None


def scene_row(r: SceneResult) -> dict[str, Any]:
    """One ``eval.json`` row: per-image metrics averaged over the scene's targets; segmentation from the
    scene's summed confusion matrices."""
    t = r.targets
    row: dict[str, Any] = {
        "scene": r.name,
        "path": str(r.path),
        "frames": r.num_frames,
        "groups": r.num_groups,
        "targets": len(t),
        "gaussians": round(r.gaussians),
        "psnr_target": _mean([x.psnr for x in t]),
        "ssim_target": _mean([x.ssim for x in t]),
        "lpips_target": _mean([x.lpips for x in t]),
        "psnr_source": _mean(r.psnr_source),
        "absrel": _mean([x.abs_rel for x in t]),
        "absrel_unscaled": _mean([x.abs_rel_unscaled for x in t]),
        "inlier_103": _mean([x.inlier_103 for x in t]),
        "delta_125": _mean([x.delta_125 for x in t]),
    }
    for key, cm in (("source", r.confusion_source), ("target", r.confusion_target), ("teacher", r.confusion_teacher)):
        scores = segmentation_scores(cm) if cm is not None else None
        prefix = "teacher_" if key == "teacher" else ""
        suffix = "target" if key == "teacher" else key
        row[f"{prefix}miou_{suffix}"] = _num(scores.miou) if scores else None
        row[f"{prefix}acc_{suffix}"] = _num(scores.accuracy) if scores else None
    row.update(
        forward_seconds=r.forward_seconds,
        align_seconds=r.align_seconds,
        align_residual_before=_mean([x.residual_before for x in t]),
        align_residual_after=_mean([x.residual_after for x in t]),
        skipped=dict(r.skipped),
        panels=[str(p) for p in r.panels],
    )
    return {k: _num(v) if isinstance(v, float) else v for k, v in row.items()}


def target_row(scene: str, x: TargetResult) -> dict[str, Any]:
    """One per-target record (kept under ``"targets"`` in ``eval.json``)."""
    return {
        "scene": scene, "target": x.target, "context": list(x.context),
        "psnr": _num(x.psnr), "ssim": _num(x.ssim), "lpips": _num(x.lpips),
        "absrel": _num(x.abs_rel), "absrel_unscaled": _num(x.abs_rel_unscaled),
        "inlier_103": _num(x.inlier_103), "delta_125": _num(x.delta_125),
        "miou": _num(x.miou), "acc": _num(x.accuracy), "teacher_miou": _num(x.teacher_miou),
        "align_residual_before": _num(x.residual_before), "align_residual_after": _num(x.residual_after),
        "align_seconds": _num(x.align_seconds),
    }


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over scenes of :data:`SUMMARY_FIELDS`, plus scene and target counts."""
    out: dict[str, Any] = {"scenes": len(rows), "targets": sum(r["targets"] for r in rows)}
    for key in SUMMARY_FIELDS:
        out[key] = _mean([r.get(key) for r in rows])
    return out


def _fmt(x: Optional[float], digits: int) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


_COLUMNS = (
    ("PSNR tgt", "psnr_target", 2), ("SSIM tgt", "ssim_target", 3), ("LPIPS tgt", "lpips_target", 3),
    ("PSNR src", "psnr_source", 2), ("AbsRel", "absrel", 3), ("AbsRel unscaled", "absrel_unscaled", 3),
    ("inl 1.03", "inlier_103", 3), ("δ<1.25", "delta_125", 3),
    ("mIoU src", "miou_source", 3), ("mIoU tgt", "miou_target", 3), ("acc tgt", "acc_target", 3),
    ("forward s", "forward_seconds", 3), ("align s", "align_seconds", 2),
    ("L1 before", "align_residual_before", 4), ("L1 after", "align_residual_after", 4),
)


def markdown(rows: Sequence[dict[str, Any]], summary: dict[str, Any], model: str, notes: Sequence[str]) -> str:
    """The ``eval.md`` text: notes, one table row per scene and a mean row."""
    lines = [f"# ff3r-eval: {model}", ""]
    lines += [f"> **{n}**" for n in notes]
    if notes:
        lines.append("")
    lines.append("| scene | targets | " + " | ".join(c[0] for c in _COLUMNS) + " |")
    lines.append("|---|---:|" + "---:|" * len(_COLUMNS))
    for r in rows:
        lines.append(f"| {r['scene']} | {r['targets']} | " + " | ".join(_fmt(r.get(k), d) for _, k, d in _COLUMNS) + " |")
    lines.append(f"| **mean** | {summary['targets']} | " + " | ".join(_fmt(summary.get(k), d) for _, k, d in _COLUMNS) + " |")
    # The 2D teacher's own segmentation of the same target pixels, as a baseline row (LSM / Uni3R tables).
    teacher = {"miou_target": summary.get("teacher_miou_target"), "acc_target": summary.get("teacher_acc_target")}
    if teacher["miou_target"] is not None:
        cells = " | ".join(_fmt(teacher.get(k), d) for _, k, d in _COLUMNS)
        lines.append(f"| 2D teacher (baseline) | {summary['targets']} | {cells} |")
    skipped = [f"- {r['scene']}: {what} skipped ({why})" for r in rows for what, why in r["skipped"].items()]
    if skipped:
        lines += ["", "Skipped:", *skipped]
    lines += [
        "",
        "PSNR/SSIM/LPIPS at the photometrically aligned target pose; AbsRel, inlier ratio (1.03) and δ<1.25 "
        "after median scaling (AbsRel unscaled: in the dataset's units, as reconstructed); mIoU and accuracy "
        "over the scene's pixels (label 0 ignored), target views at the aligned pose and source views at the "
        "predicted context cameras; 2D teacher = the teacher's own features on the same target pixels. "
        "\"–\": not measured.",
    ]
    return "\n".join(lines) + "\n"


def write_reports(
    results: Sequence[SceneResult], out_dir: Path, model: str, notes: Sequence[str], settings: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``out_dir/eval.json`` and ``out_dir/eval.md``; returns both paths."""
    rows = [scene_row(r) for r in results]
    summary = summarize(rows)
    targets = [target_row(r.name, x) for r in results for x in r.targets]
    json_path = write_result(
        "eval", rows, out=out_dir / "eval.json", notes="; ".join(notes) or None,
        extra={"summary": summary, "model": model, "settings": settings, "targets": targets},
    )
    md_path = out_dir / "eval.md"
    md_path.write_text(markdown(rows, summary, model, notes))
    return json_path, md_path
