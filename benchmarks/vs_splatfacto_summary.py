"""The head-to-head's time-to-quality checks: what ``vs_splatfacto.json``'s rows and ``summary`` mean, and the summary.

``benchmarks.vs_splatfacto`` evaluates both methods' runs at several steps (rows of
:meth:`benchmarks.timed_runs.RunPoint.row`); :func:`summarize` turns those points into one case per scene and view
count (:data:`SUMMARY_DEFINITIONS`), and :data:`DEFINITIONS` is the file's ``definitions`` object.
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Sequence

PSNR_MARGIN_DB = 0.5
"""ff3r "reaches splatfacto's quality" at PSNR >= splatfacto's final PSNR - this margin."""
SPEEDUP_TARGET = 10.0
SPEEDUP_TARGET_VIEWS = (64, 128)
"""The issue's time-to-quality target: splatfacto's final seconds / ff3r's seconds to its quality >= 10 at 64 and
128 views."""


def psnr_at(points: Sequence[tuple[float, float]], seconds: float) -> float:
    """A curve's PSNR at wall time ``seconds``: linear interpolation in time between its evaluated points
    ``(seconds, psnr)``; before the first point, the first point's PSNR; after the last, the last's.

    Raises:
        ValueError: no points.
    """
    pts = sorted(points)
    if not pts:
        raise ValueError("psnr_at: empty curve")
    ts = [t for t, _ in pts]
    if seconds <= ts[0]:
        return pts[0][1]
    if seconds >= ts[-1]:
        return pts[-1][1]
    i = bisect.bisect_right(ts, seconds)
    (t0, p0), (t1, p1) = pts[i - 1], pts[i]
    return p0 if t1 == t0 else p0 + (p1 - p0) * (seconds - t0) / (t1 - t0)


SUMMARY_DEFINITIONS = {
    "splatfacto_psnr_at(t)": "splatfacto's held-out PSNR at wall time t: linear interpolation in seconds (not log) "
                             "between its evaluated points; before its first point, its first point's PSNR (a "
                             "splatfacto model that did not exist yet is credited with its first score); after its "
                             "last point, its final PSNR",
    "final": "a run's last evaluated point (step = its budget)",
    "psnr_threshold": "splatfacto's final PSNR - psnr_margin_db",
    "ff3r_reach_*": "the earliest ff3r point (in step, hence in seconds) with psnr >= psnr_threshold; None if none",
    "speedup": "splatfacto_final_seconds / ff3r_reach_seconds; speedup_met: speedup >= speedup_target (False when "
               "ff3r never reaches psnr_threshold); a target at speedup_target_views",
    "ahead_met": "at every ff3r point with seconds <= splatfacto_final_seconds: ff3r psnr >= splatfacto_psnr_at(its "
                 "seconds), and at every splatfacto point after ff3r's last one (a finished ff3r run): ff3r's final "
                 "psnr >= splatfacto's psnr there; ahead_worst_margin_db is the smallest difference over those "
                 "comparisons (ahead_worst_step: the ff3r step compared, ahead_worst_seconds: the wall time); None when "
                 "no ff3r point lies within splatfacto's run",
    "final_psnr_met": "ff3r final psnr >= splatfacto final psnr",
    "final_gaussians_met": "ff3r final gaussians <= splatfacto final gaussians",
    "met fields": "None when a method's rows are missing",
}


def curve_rows(rows: Sequence[dict[str, Any]], method: str, scene: Any, views: Any) -> list[dict[str, Any]]:
    """One run's evaluated points, by step."""
    mine = [r for r in rows if r.get("method") == method and r.get("scene") == scene and r.get("views") == views
            and r.get("psnr") is not None and r.get("seconds") is not None]
    return sorted(mine, key=lambda r: (r.get("step") or 0, r["seconds"]))


def summarize_case(sf: Sequence[dict[str, Any]], ff: Sequence[dict[str, Any]], margin: float = PSNR_MARGIN_DB,
                   speedup_target: float = SPEEDUP_TARGET) -> dict[str, Any]:
    """The time-to-quality checks of one scene and view count from splatfacto's and ff3r's points (by step)."""
    out: dict[str, Any] = {"splatfacto_points": len(sf), "ff3r_points": len(ff)}
    for name, pts in (("splatfacto", sf), ("ff3r", ff)):
        last = pts[-1] if pts else {}
        for key in ("step", "seconds", "psnr", "gaussians"):
            out[f"{name}_final_{key}"] = last.get(key)
    keys = ("psnr_threshold", "ff3r_reach_step", "ff3r_reach_seconds", "ff3r_reach_psnr", "speedup", "speedup_met",
            "ahead_points", "ahead_worst_margin_db", "ahead_worst_step", "ahead_worst_seconds", "ahead_met",
            "final_psnr_met", "final_gaussians_met")
    out.update(dict.fromkeys(keys))
    if not sf or not ff:
        return out
    sf_final, ff_final = sf[-1], ff[-1]
    threshold = sf_final["psnr"] - margin
    out["psnr_threshold"] = threshold
    reach = next((p for p in ff if p["psnr"] >= threshold), None)
    if reach is not None:
        out.update(ff3r_reach_step=reach.get("step"), ff3r_reach_seconds=reach["seconds"], ff3r_reach_psnr=reach["psnr"])
        out["speedup"] = sf_final["seconds"] / reach["seconds"] if reach["seconds"] > 0 else math.inf
    out["speedup_met"] = out["speedup"] is not None and out["speedup"] >= speedup_target
    curve = [(p["seconds"], p["psnr"]) for p in sf]
    within = [p for p in ff if p["seconds"] <= sf_final["seconds"]]
    out["ahead_points"] = len(within)
    if within:
        gaps = [(p["psnr"] - psnr_at(curve, p["seconds"]), p.get("step"), p["seconds"]) for p in within]
        # A run that ended before splatfacto's is its final result from then on: judged at splatfacto's later points.
        gaps += [(ff_final["psnr"] - p["psnr"], ff_final.get("step"), p["seconds"]) for p in sf
                 if p["seconds"] > ff_final["seconds"]]
        worst, step, seconds = min(gaps, key=lambda g: g[0])
        out.update(ahead_worst_margin_db=worst, ahead_worst_step=step, ahead_worst_seconds=seconds, ahead_met=worst >= 0.0)
    out["final_psnr_met"] = ff_final["psnr"] >= sf_final["psnr"]
    if sf_final.get("gaussians") is not None and ff_final.get("gaussians") is not None:
        out["final_gaussians_met"] = ff_final["gaussians"] <= sf_final["gaussians"]
    return out


def summarize(rows: Sequence[dict[str, Any]], margin: float = PSNR_MARGIN_DB, speedup_target: float = SPEEDUP_TARGET,
              target_views: Sequence[int] = SPEEDUP_TARGET_VIEWS) -> dict[str, Any]:
    """The ``summary`` object: the thresholds and one case per scene and view count (see :data:`SUMMARY_DEFINITIONS`)."""
    cases = []
    for scene, views in dict.fromkeys((r.get("scene"), r.get("views")) for r in rows):
        case = {"scene": scene, "views": views, "speedup_is_target": views in target_views}
        case.update(summarize_case(curve_rows(rows, "splatfacto", scene, views), curve_rows(rows, "ff3r", scene, views),
                                   margin, speedup_target))
        cases.append(case)
    return {"psnr_margin_db": margin, "speedup_target": speedup_target, "speedup_target_views": list(target_views),
            "cases": cases}


DEFINITIONS = {
    "views": "training views; held-out frames (eval_views) are every 8th frame (nerfstudio-data eval_mode=interval), "
             "the same for both methods",
    "step": "optimisation steps done at this point (splatfacto iterations / ff3r refinement steps) of the run's "
            "budget; 0 = before training (for ff3r: its feedforward result; for splatfacto: its initialisation)",
    "seconds": "reconstruction wall time up to this step = data_seconds + setup_seconds + forward_seconds + "
               "merge_seconds + optimize_seconds (CUDA-synchronised at each point); excludes every evaluation "
               "(eval_seconds of this and earlier points) and the one-time gsplat compilation and warm-up",
    "optimize_seconds": "training-loop wall time from the first step to this point, minus the earlier evaluations",
    "peak_gb": "torch.cuda.max_memory_allocated during the reconstruction up to this point, evaluations excluded, GB "
               "(1e9 bytes); reset before each run",
    "psnr/ssim": "means over the held-out frames, ff3r_ns.core.metrics (torchmetrics' definitions) for both methods, "
                 "each model rendering through its own get_outputs_for_camera at the dataset's cameras, full "
                 "resolution",
    "budget": "the run's step count (--steps); splatfacto's step-counted schedule is compressed to it when it is "
              "not 30000, ff3r's method config lays its own out for it",
    **SUMMARY_DEFINITIONS,
}
"""``vs_splatfacto.json``'s ``definitions``: its row fields, then the summary's."""
