"""Regenerate the README's results tables and plots from ``benchmarks/results/*.json``.

Reads every result file in the shared envelope (see ``ff3r_ns/envelope.py``), renders one section per
benchmark (heading, command, machine and commit, a compact table, the issue's targets marked met or
missed, and plots) and writes it between ``<!-- results:start -->`` and ``<!-- results:end -->`` in
README.md. Nothing outside the markers is touched. The output depends only on the JSON files, so
re-running without changes leaves the README (and the PNGs) byte-identical. Files a benchmark cannot render
(a ``vs_splatfacto`` file in the old one-row-per-method shape) are named on stderr and left out.

Usage:
    python -m benchmarks.make_results            # rewrite README block + benchmarks/plots/*.png
    python -m benchmarks.make_results --check    # exit 1 if the README block is out of date
    python -m benchmarks.make_results --results-dir R --readme README.md --plots-dir P
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from benchmarks.common import PLOTS_DIR, RESULTS_DIR, ROOT
from benchmarks.results_format import (
    TITLES, Column, ResultFile, Section, Table, columns, curve_summaries, voxel_pairs, vs_curves, vs_old_shape,
    fmt_fixed, fmt_num, fmt_pct, fmt_scaled, load_result, load_results, markdown_table, render_table,
)
from benchmarks.results_plots import PLOTS, _style, multigpu_plot
from benchmarks.results_targets import MET, MISSED, TARGETS, UNCHECKED, mark, vs_cases

# What the benchmarks and tests use through this module.
__all__ = ["ResultFile", "build_block", "load_result", "load_results", "main", "multigpu_plot", "replace_block",
           "section_markdown", "usable"]
START, END = "<!-- results:start -->", "<!-- results:end -->"


# --------------------------------------------------------------------------------------------- tables


def network_table(r: ResultFile) -> Table:
    spec = [("config", "config"), ("views", "views"), ("resolution", "resolution"), ("dtype", "dtype"),
            ("fusion", "fusion"), ("params_m", "params (M)"), ("seconds", "forward s", fmt_fixed(3)),
            ("peak_gb", "peak GB", fmt_fixed(2))]
    if any(row.get("status", "ok") != "ok" for row in r.rows):
        spec.append(("status", "status"))
    return Table(columns(spec), r.rows)


def voxelize_table(r: ResultFile) -> Table:
    ms = fmt_scaled(1e3)
    spec = [("views", "views"), ("resolution", "res"), ("gaussians_in", "Gaussians in"),
            ("gaussians_out_plain", "out (plain)"), ("gaussians_out_sem", "out (semantic)"),
            ("reduction_plain", "reduction", fmt_pct), ("merge_seconds_plain", "merge ms (plain)", ms),
            ("merge_seconds_sem", "merge ms (sem.)", ms), ("forward_seconds", "forward s", fmt_fixed(3)),
            ("merge_share_sem", "merge / forward (sem.)", fmt_pct), ("purity_plain", "purity (plain)", fmt_fixed(5)),
            ("purity_sem", "purity (sem.)", fmt_fixed(5))]
    return Table(columns(spec), voxel_pairs(r))





METRIC_SPEC = [("psnr_target", "PSNR target", fmt_fixed(2)), ("ssim_target", "SSIM target", fmt_fixed(3)),
               ("absrel", "AbsRel", fmt_fixed(3)), ("miou_source", "mIoU source", fmt_fixed(3)),
               ("miou_target", "mIoU target", fmt_fixed(3)), ("acc_target", "acc target", fmt_fixed(3))]
# Benchmarks whose table is the rows as they are, through these columns (key, header[, formatter]).
SIMPLE_SPECS: dict[str, list[tuple]] = {
    "export": [("gaussians", "Gaussians"), ("sh_degree", "SH degree"), ("feature_dim", "features"),
               ("file_mb", "file MB"), ("write_seconds", "write s", fmt_fixed(3)), ("read_seconds", "read s", fmt_fixed(3)),
               ("nerfstudio_write_seconds_extrapolated", "nerfstudio write s (extrap.)", fmt_fixed(1)),
               ("speedup", "speed-up ×", fmt_fixed(1))],
    "real_sequence": [  # one wide row per sequence: shown transposed
        ("sequence", "sequence"), ("frames", "frames"), ("colmap_registered", "COLMAP registered"),
        ("context_views", "context views"), ("target_views", "target views"), ("network", "network"),
        ("image_size", "image size"), ("rot_err_deg_median", "rotation error ° (median)"),
        ("rel_rot_err_deg_mean", "relative rotation error ° (mean)"),
        ("rel_trans_err_deg_mean", "relative translation direction error ° (mean)"),
        ("trans_err_rel_mean", "translation error, relative (mean)"),
        ("focal_err_rel_mean", "focal error, relative (mean)"), ("auc_5", "AUC@5"), ("auc_15", "AUC@15"),
        ("auc_30", "AUC@30"), ("target_psnr_mean", "target PSNR dB (mean)", fmt_fixed(2)),
        ("forward_s", "forward s", fmt_fixed(3)),
        # the ns-train run on the same context frames, before and after its refinement
        ("run_step0_auc_30", "ns-train run, step 0: AUC@30"), ("run_refined_auc_30", "ns-train run, refined: AUC@30"),
        ("run_step0_auc_5", "ns-train run, step 0: AUC@5"), ("run_refined_auc_5", "ns-train run, refined: AUC@5"),
        ("run_step0_target_psnr_mean", "ns-train run, step 0: target PSNR dB", fmt_fixed(2)),
        ("run_refined_target_psnr_mean", "ns-train run, refined: target PSNR dB", fmt_fixed(2)),
        ("refine_steps", "refinement steps"), ("refine_seconds", "refinement s", fmt_fixed(0))],
    "ablation": [("variant", "variant"), ("scenes", "scenes"), *METRIC_SPEC],
    "stage2_semantic_check": [("variant", "variant"), ("steps", "steps"), ("seconds", "seconds", fmt_fixed(0)),
                              ("targets", "targets"), *METRIC_SPEC, ("teacher_miou_target", "2D teacher mIoU", fmt_fixed(3))],
    "refined_miou": [("seed", "room"), ("step", "step"), ("split", "views"), ("views", "count"),
                     ("miou", "mIoU", fmt_fixed(3)), ("teacher_miou", "2D teacher mIoU", fmt_fixed(3)),
                     ("psnr", "PSNR dB", fmt_fixed(2)), ("gaussians", "Gaussians")],
    "refined_miou_variants": [("variant", "variant"), ("set", "setting"), ("seed", "room"), ("split", "views"),
                              ("miou", "mIoU", fmt_fixed(3)), ("teacher_miou", "2D teacher mIoU", fmt_fixed(3)),
                              ("psnr", "PSNR dB", fmt_fixed(2)), ("gaussians", "Gaussians"), ("commit", "commit")],
    "semantic_pretraining": [("encoder", "encoder"), ("steps", "steps"), ("seconds", "seconds", fmt_fixed(0)),
                             ("final_loss", "final loss (1 - cos)", fmt_fixed(3)), ("miou", "mIoU", fmt_fixed(3)),
                             ("teacher_on_grid_miou", "teacher on the grid", fmt_fixed(3)),
                             ("teacher_miou", "2D teacher mIoU", fmt_fixed(3))],
    "short_run_lr": [("label", "run"), ("changes", "learning rates / settings"), ("budget", "budget"), ("step", "step"),
                     ("psnr", "held-out PSNR dB", fmt_fixed(2)), ("ssim", "SSIM", fmt_fixed(3)), ("gaussians", "Gaussians")],
    "multigpu": [("gpus", "GPUs"), ("batch_per_gpu", "batch / GPU"), ("global_batch", "global batch"),
                 ("timed_steps", "timed steps"), ("steps_per_second", "steps/s", fmt_fixed(3)),
                 ("speedup", "speed-up ×", fmt_fixed(2)), ("scaling_efficiency", "scaling efficiency", fmt_pct),
                 ("peak_gb_per_gpu", "peak GB / GPU", fmt_fixed(2)), ("final_loss", "final loss", fmt_fixed(4))],
}


def eval_table(r: ResultFile) -> Table:
    rows = list(r.rows) + ([{"scene": "**mean**", **r.summary}] if r.summary else [])
    spec = [("scene", "scene"), *METRIC_SPEC, ("forward_seconds", "forward s", fmt_fixed(3)),
            ("align_seconds", "align s", fmt_fixed(3))]
    return Table(columns(spec), rows)


def refinement_curves_table(r: ResultFile) -> Table:
    """One row per run (label and commit): feedforward, peak and last held-out PSNR (every point is in the JSON)."""
    f2, f1 = fmt_fixed(2), fmt_fixed(1)
    spec = [("run", "run"), ("commit", "commit"), ("views", "views"), ("budget", "schedule budget"),
            ("step0_psnr", "step 0 PSNR", f2), ("peak_psnr", "peak PSNR", f2), ("peak_step", "at step"),
            ("peak_seconds", "at s", f1), ("last_step", "last step"), ("last_psnr", "last PSNR", f2),
            ("last_seconds", "last s", f1), ("last_gaussians", "Gaussians")]
    return Table(columns(spec), curve_summaries(r))


TIME_BUDGETS = (1, 3, 10, 30, 100, 300, 1000, 3000)
"""Wall-time budgets (s) the vs_splatfacto table reads each curve at (those up to the slowest run)."""


def _psnr_by(points: Sequence[dict[str, Any]], seconds: float) -> Optional[float]:
    """The PSNR a run had at wall time ``seconds``: its last evaluated point at or before it (None before any)."""
    done = [p for p in points if p["seconds"] <= seconds]
    return done[-1]["psnr"] if done else None


def _single_scene(r: ResultFile) -> bool:
    return len({x.get("scene") for x in r.rows}) <= 1


def vs_splatfacto_table(r: ResultFile) -> Table:
    """One row per scene, view count and method: PSNR at a few wall-time budgets, then the final point."""
    curves = vs_curves(r)
    longest = max((p["seconds"] for runs in curves.values() for pts in runs.values() for p in pts), default=0.0)
    budgets = [t for t in TIME_BUDGETS if t <= longest]
    rows = []
    for (scene, views), runs in curves.items():
        for method, pts in runs.items():
            last = pts[-1]
            row = {"scene": scene, "views": views, "method": method, "budget": last.get("budget"), "points": len(pts),
                   **{f"psnr_at_{t}": _psnr_by(pts, t) for t in budgets}}
            row.update({k: last.get(k) for k in ("step", "seconds", "psnr", "ssim", "lpips", "gaussians", "peak_gb")})
            rows.append(row)
    f2, f3 = fmt_fixed(2), fmt_fixed(3)
    spec = [("scene", "scene"), ("views", "views"), ("method", "method"), ("points", "points"),
            *[(f"psnr_at_{t}", f"PSNR by {t:g} s", f2) for t in budgets],
            ("step", "final step"), ("seconds", "final s"), ("psnr", "final PSNR", f2), ("ssim", "SSIM", f3),
            ("lpips", "LPIPS", f3), ("gaussians", "Gaussians"), ("peak_gb", "peak GB", f2)]
    spec = [c for c in spec if any(x.get(c[0]) is not None for x in rows) or c[0].startswith("psnr_at_")]
    spec = [c for c in spec if not (c[0] == "scene" and _single_scene(r))]
    return Table(columns(spec), rows)


def vs_splatfacto_checks_table(r: ResultFile) -> Table:
    """The summary's time-to-quality checks, one row per scene and view count (✅ / ❌ per check)."""
    s = r.summary or {}
    rows = []
    for c in vs_cases(r):
        reach = c.get("ff3r_reach_seconds")
        rows.append({
            "scene": c.get("scene"), "views": c.get("views"),
            "sf": f"{c['splatfacto_final_psnr']:.2f} dB at {fmt_num(c['splatfacto_final_seconds'])} s",
            "reach": (f"{fmt_num(reach)} s (step {fmt_num(c.get('ff3r_reach_step'))})" if reach is not None
                      else f"never (final {c['ff3r_final_psnr']:.2f} dB)"),
            "speedup": " ".join(x for x in (mark(c.get("speedup_met")) if c.get("speedup_is_target") else "",
                                            f"{fmt_num(c['speedup'])}×" if c.get("speedup") is not None else "–") if x),
            "ahead": (f"{mark(c.get('ahead_met'))} worst {c['ahead_worst_margin_db']:+.2f} dB at "
                      f"{fmt_num(c.get('ahead_worst_seconds'))} s" if c.get("ahead_worst_margin_db") is not None
                      else mark(None)),
            "final": f"{mark(c.get('final_psnr_met'))} {c['ff3r_final_psnr']:.2f} vs {c['splatfacto_final_psnr']:.2f}",
            "gaussians": (f"{mark(c.get('final_gaussians_met'))} {fmt_num(c.get('ff3r_final_gaussians'))} vs "
                          f"{fmt_num(c.get('splatfacto_final_gaussians'))}"),
        })
    margin = fmt_num(s.get("psnr_margin_db", 0.5))
    spec = [("scene", "scene"), ("views", "views"), ("sf", "splatfacto final"),
            ("reach", f"ff3r within {margin} dB at"), ("speedup", "speed-up to it"),
            ("ahead", "ff3r ≥ splatfacto at every ff3r point"), ("final", "final PSNR ff3r vs splatfacto"),
            ("gaussians", "final Gaussians ff3r vs splatfacto")]
    return Table(columns([c for c in spec if not (c[0] == "scene" and _single_scene(r))]), rows)


def vs_splatfacto_more_tables(r: ResultFile) -> list[tuple[str, Table]]:
    """The time-to-quality checks (from ``summary``) and the rendering speed (``render_fps``), when present."""
    out = []
    if vs_cases(r):
        out.append(("Time-to-quality checks (`summary`; interpolation and thresholds in the file's `definitions`):",
                    vs_splatfacto_checks_table(r)))
    fps = [x for x in r.extra.get("render_fps") or [] if isinstance(x, dict)]
    if fps:
        spec = [("method", "method"), ("views", "views"), ("gaussians", "Gaussians"), ("resolution", "resolution"),
                ("channels", "channels"), ("fps", "fps", fmt_fixed(1))]
        out.append(("Rendering speed of the final reconstructions (one camera, expected depth included):",
                    Table(columns(spec), fps)))
    return out


def make_table(r: ResultFile) -> Table:
    """The table for ``r``: a dedicated layout, a column spec, or every scalar field in first-seen order."""
    if r.benchmark in TABLES:
        return TABLES[r.benchmark](r)
    if r.benchmark in SIMPLE_SPECS:
        return Table(columns(SIMPLE_SPECS[r.benchmark]), r.rows, transpose=r.benchmark == "real_sequence")
    keys = list(dict.fromkeys(k for row in r.rows for k, v in row.items() if not isinstance(v, (dict, list))))
    return Table([Column(k, k) for k in keys], r.rows)


TABLES: dict[str, Callable[[ResultFile], Table]] = {
    "network": network_table, "voxelize": voxelize_table, "render": render_table, "eval": eval_table,
    "vs_splatfacto": vs_splatfacto_table, "refinement_curves": refinement_curves_table}
MORE_TABLES: dict[str, Callable[[ResultFile], list[tuple[str, Table]]]] = {"vs_splatfacto": vs_splatfacto_more_tables}

# --------------------------------------------------------------------------------------------- README


def _provenance(r: ResultFile) -> str:
    """Command · device · versions · commit · date, from the envelope."""
    m = r.machine
    parts = [f"`{r.command}`", str(m.get("device", "unknown device"))]
    parts += [f"{k} {m[k]}" for k in ("torch", "gsplat") if m.get(k)]
    if m.get("cpus"):
        parts.append(f"{m['cpus']} CPUs")
    parts.append(f"commit `{r.commit}`" if r.commit else "commit unknown")
    if r.date:
        parts.append(str(r.date)[:10])
    if r.quick:
        parts.append("**quick run**")
    return " · ".join(parts)


def render_section(s: Section, readme_dir: Path, link_dir: Path) -> str:
    """Heading, provenance line, table, target marks, plot links (relative to the README) and notes."""
    r = s.result
    title = TITLES.get(r.benchmark, r.benchmark.replace("_", " ").capitalize())
    out = [f"### {title} (`{r.path.name}`)", "", _provenance(r), "", markdown_table(s.table)]
    if s.targets:
        out += ["", "Targets:", ""]
        out += [f"- {MET if t.met else MISSED if t.met is False else UNCHECKED}: {t.detail}" for t in s.targets]
    for caption, table in s.more_tables:
        out += ["", caption, "", markdown_table(table)]
    for p in s.plots:
        rel = Path(os.path.relpath(link_dir / p.name, readme_dir)).as_posix()
        out += ["", f"![{p.stem}]({rel})"]
    if r.notes:
        out += ["", f"<sub>Notes: {' '.join(str(r.notes).split())}</sub>"]
    return "\n".join(out)


SKIP: dict[str, Callable[[ResultFile], Optional[str]]] = {"vs_splatfacto": vs_old_shape}
"""Per benchmark: why a file of it cannot be rendered (None when it can); such files are left out of the README."""


def skip_reason(r: ResultFile) -> Optional[str]:
    return SKIP[r.benchmark](r) if r.benchmark in SKIP else None


def usable(results: Sequence[ResultFile], warn: bool = True) -> list[ResultFile]:
    """``results`` without the files :func:`skip_reason` rejects (each named on stderr when ``warn``)."""
    out = []
    for r in results:
        why = skip_reason(r)
        if why is None:
            out.append(r)
        elif warn:
            print(f"make_results: skipping {r.path}: {why}", file=sys.stderr)
    return out


def build_block(results: Sequence[ResultFile], plots_dir: Path, readme_dir: Path,
                link_dir: Optional[Path] = None) -> str:
    """The markdown between the markers; plots are written to ``plots_dir`` as a side effect.

    Args:
        results: from :func:`load_results`.
        plots_dir: where the PNGs are written.
        readme_dir: the README's folder (links are relative to it).
        link_dir: the folder the links point into (default ``plots_dir``; ``--check`` writes elsewhere).
    """
    _style()
    head = ("<!-- generated by python -m benchmarks.make_results from benchmarks/results/*.json; edit those, not this -->")
    results = usable(results, warn=False)
    if not results:
        return f"{head}\n\nNo results yet."
    sections = [section_markdown(r, plots_dir, readme_dir, link_dir) for r in results]
    return "\n\n".join([head, *sections])


def section_markdown(r: ResultFile, plots_dir: Path, readme_dir: Path, link_dir: Optional[Path] = None) -> str:
    """One benchmark's README section (see :func:`build_block`); its plots are written to ``plots_dir``.

    Raises:
        ValueError: the file cannot be rendered (:func:`skip_reason`, e.g. an old-shape vs_splatfacto file).
    """
    why = skip_reason(r)
    if why is not None:
        raise ValueError(f"{r.path}: {why}")
    _style()
    table = make_table(r)
    targets = TARGETS[r.benchmark](r) if r.benchmark in TARGETS else []
    plots = PLOTS[r.benchmark](r, plots_dir) if r.benchmark in PLOTS else []
    more = MORE_TABLES[r.benchmark](r) if r.benchmark in MORE_TABLES else []
    return render_section(Section(r, table, targets, plots, more), readme_dir, link_dir or plots_dir)


def replace_block(text: str, block: str) -> str:
    """``text`` with everything strictly between the markers replaced by ``block``.

    Raises:
        ValueError: the markers are missing, repeated or out of order.
    """
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"README must contain exactly one {START} and one {END} "
                         f"(found {text.count(START)} and {text.count(END)})")
    i, j = text.index(START) + len(START), text.index(END)
    if j < i:
        raise ValueError(f"{END} comes before {START} in the README")
    return f"{text[:i]}\n{block}\n{text[j:]}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                    help="folder of result JSON files (default: benchmarks/results)")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md",
                    help="the README whose results block is rewritten (default: README.md)")
    ap.add_argument("--plots-dir", type=Path, default=PLOTS_DIR,
                    help="where the PNGs are written and linked from (default: benchmarks/plots)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if the README block is stale")
    args = ap.parse_args(argv)
    if not args.readme.is_file():
        ap.error(f"README not found: {args.readme}")
    text = args.readme.read_text()
    results = usable(load_results(args.results_dir))
    readme_dir, link_dir = args.readme.resolve().parent, args.plots_dir.resolve()
    if args.check:  # plots go to a throwaway dir so --check never writes into the tree
        with tempfile.TemporaryDirectory() as tmp:
            new = replace_block(text, build_block(results, Path(tmp), readme_dir, link_dir))
        return 0 if new == text else 1
    new = replace_block(text, build_block(results, link_dir, readme_dir))
    if new != text:
        args.readme.write_text(new)
    print(f"{args.readme}: {len(results)} benchmark(s) {'updated' if new != text else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
