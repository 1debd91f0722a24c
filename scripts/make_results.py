"""Regenerate the README's results tables and plots from ``benchmarks/results/*.json``.

Reads every result file in the shared envelope (see ``ff3r_ns/benchmarks.py``), renders one section per
benchmark (heading, command, machine and commit, a compact table, the issue's targets marked met or
missed, and plots) and writes it between ``<!-- results:start -->`` and ``<!-- results:end -->`` in
README.md. Nothing outside the markers is touched. The output depends only on the JSON files, so
re-running without changes leaves the README (and the PNGs) byte-identical.

Usage:
    python scripts/make_results.py            # rewrite README block + benchmarks/plots/*.png
    python scripts/make_results.py --check    # exit 1 if the README block is out of date
    python scripts/make_results.py --results-dir R --readme README.md --plots-dir P
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- results:start -->", "<!-- results:end -->"
# Known benchmarks first, in reading order; anything else follows alphabetically with a generic table.
ORDER = ("network", "render", "voxelize", "export", "real_sequence", "ablation", "vs_splatfacto", "multigpu", "eval")
TITLES = {"network": "Network forward pass", "render": "Rendering speed", "voxelize": "Voxelization: Gaussian merging",
          "export": "PLY export", "real_sequence": "Real sequence: poses vs COLMAP", "ablation": "Ablation",
          "vs_splatfacto": "FF3R vs splatfacto", "multigpu": "Multi-GPU training", "eval": "Evaluation"}
MET, MISSED, UNCHECKED = "✅ met", "❌ missed", "➖ not checked"
ENVELOPE_KEYS = ("benchmark", "command", "commit", "date", "machine", "quick", "notes", "rows", "summary")


# ----------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ResultFile:
    """One ``benchmarks/results/<name>.json`` in the shared envelope."""

    benchmark: str
    path: Path
    command: str
    commit: Optional[str]
    date: Optional[str]
    machine: dict[str, Any]
    quick: bool
    notes: Optional[str]
    rows: list[dict[str, Any]]
    summary: Optional[dict[str, Any]] = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Top-level keys outside the envelope (e.g. vs_splatfacto's ``render_fps``)."""


@dataclass(frozen=True)
class Column:
    """A table column: row key, header text and cell formatter."""

    key: str
    header: str
    fmt: Callable[[Any], str] = lambda v: fmt_num(v)


@dataclass(frozen=True)
class Table:
    """Rows (dicts) shown through ``columns``; ``transpose`` puts the columns down the side."""

    columns: list[Column]
    rows: list[dict[str, Any]]
    transpose: bool = False


@dataclass(frozen=True)
class Target:
    """One target from the issue: ``met`` is None when it could not be checked."""

    met: Optional[bool]
    detail: str


@dataclass(frozen=True)
class Section:
    """Everything one benchmark contributes to the README."""

    result: ResultFile
    table: Table
    targets: list[Target] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    more_tables: list[tuple[str, Table]] = field(default_factory=list)
    """Further (caption, table) pairs shown after the targets."""


def load_results(results_dir: Path) -> list[ResultFile]:
    """Every ``*.json`` in ``results_dir``, in README order (known benchmarks first, then by name).

    Raises:
        ValueError: a file is not valid JSON or lacks ``benchmark``/``rows``.
    """
    out = [load_result(path) for path in sorted(Path(results_dir).glob("*.json"))]
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(out, key=lambda r: (rank.get(r.benchmark, len(ORDER)), r.benchmark, r.path.name))


def load_result(path: Path) -> ResultFile:
    """One result file.

    Raises:
        ValueError: it is not valid JSON or lacks ``benchmark``/``rows``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or "benchmark" not in data or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path}: not a results envelope (needs 'benchmark' and a 'rows' list)")
    summary = data.get("summary") if isinstance(data.get("summary"), dict) else None
    extra = {k: v for k, v in data.items() if k not in ENVELOPE_KEYS}
    return ResultFile(
        benchmark=str(data["benchmark"]), path=path, command=str(data.get("command") or "?"),
        commit=data.get("commit"), date=data.get("date"), machine=dict(data.get("machine") or {}),
        quick=bool(data.get("quick", False)), notes=data.get("notes"),
        rows=[r for r in data["rows"] if isinstance(r, dict)], summary=summary, extra=extra)


# ----------------------------------------------------------------------------------------- formatting


def fmt_num(v: Any, digits: int = 3) -> str:
    """Round for reading: ints with thousands separators, floats to ``digits`` significant digits."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:
            return "nan"
        if abs(v) >= 10 ** digits:
            return f"{v:,.0f}"
        if v == 0 or abs(v) >= 1e-3:  # round to significant digits, then drop the exponent form
            return f"{float(f'{v:.{digits}g}'):g}"
        return f"{v:.{digits - 1}e}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt_num(x, digits) for x in v)
    return str(v)


def fmt_pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def fmt_fixed(decimals: int) -> Callable[[Any], str]:
    return lambda v: "–" if v is None else f"{v:.{decimals}f}"


def fmt_scaled(scale: float) -> Callable[[Any], str]:
    return lambda v: "–" if v is None else fmt_num(v * scale)


def markdown_table(table: Table) -> str:
    """A GitHub markdown table; only columns that some row has are shown."""
    cols = [c for c in table.columns if any(c.key in r for r in table.rows)]
    cell = lambda c, r: c.fmt(r.get(c.key)).replace("|", "\\|")  # noqa: E731
    if table.transpose:
        header = ["", *[str(i + 1) if len(table.rows) > 1 else "value" for i in range(len(table.rows))]]
        body = [[c.header, *[cell(c, r) for r in table.rows]] for c in cols]
    else:
        header = [c.header for c in cols]
        body = [[cell(c, r) for c in cols] for r in table.rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- tables


def _cols(spec: Sequence[tuple]) -> list[Column]:
    return [Column(*s) for s in spec]


def network_table(r: ResultFile) -> Table:
    spec = [("config", "config"), ("views", "views"), ("resolution", "resolution"), ("dtype", "dtype"),
            ("fusion", "fusion"), ("params_m", "params (M)"), ("seconds", "forward s", fmt_fixed(3)),
            ("peak_gb", "peak GB", fmt_fixed(2))]
    if any(row.get("status", "ok") != "ok" for row in r.rows):
        spec.append(("status", "status"))
    return Table(_cols(spec), r.rows)


def _voxel_pairs(r: ResultFile) -> list[dict[str, Any]]:
    """One row per (views, resolution) with the plain and semantic merges side by side."""
    pairs: dict[tuple, dict[str, Any]] = {}
    for row in r.rows:
        key = (row.get("views"), str(row.get("resolution")))
        p = pairs.setdefault(key, {"views": row.get("views"), "resolution": row.get("resolution")})
        tag = "sem" if row.get("semantic") else "plain"
        p["gaussians_in"] = row.get("gaussians_in")
        p["forward_seconds"] = row.get("forward_seconds")
        for k in ("gaussians_out", "merge_seconds", "purity"):
            p[f"{k}_{tag}"] = row.get(k)
        if row.get("gaussians_in") and row.get("gaussians_out") is not None:
            p[f"reduction_{tag}"] = 1 - row["gaussians_out"] / row["gaussians_in"]
        if row.get("forward_seconds") and row.get("merge_seconds") is not None:
            p[f"merge_share_{tag}"] = row["merge_seconds"] / row["forward_seconds"]
    return [pairs[k] for k in sorted(pairs, key=lambda k: (k[0] or 0, k[1]))]


def voxelize_table(r: ResultFile) -> Table:
    ms = fmt_scaled(1e3)
    spec = [("views", "views"), ("resolution", "res"), ("gaussians_in", "Gaussians in"),
            ("gaussians_out_plain", "out (plain)"), ("gaussians_out_sem", "out (semantic)"),
            ("reduction_plain", "reduction", fmt_pct), ("merge_seconds_plain", "merge ms (plain)", ms),
            ("merge_seconds_sem", "merge ms (sem.)", ms), ("forward_seconds", "forward s", fmt_fixed(3)),
            ("merge_share_sem", "merge / forward (sem.)", fmt_pct), ("purity_plain", "purity (plain)", fmt_fixed(5)),
            ("purity_sem", "purity (sem.)", fmt_fixed(5))]
    return Table(_cols(spec), _voxel_pairs(r))


def _render_key(row: dict[str, Any]) -> str:
    dev = f" ({row['device']})" if row.get("device") and row.get("backend") == "torch" else ""
    return f"{row.get('backend', '?')}{dev} {row.get('mode', 'forward')}"


def render_table(r: ResultFile) -> Table:
    """Cases down the side, one fps column per backend and mode."""
    series = list(dict.fromkeys(_render_key(row) for row in r.rows))
    cases: dict[tuple, dict[str, Any]] = {}
    for row in r.rows:
        key = (row.get("gaussians"), str(row.get("resolution")), row.get("channels"))
        c = cases.setdefault(key, {"gaussians": key[0], "resolution": key[1], "channels": key[2]})
        c[_render_key(row)] = row.get("fps")
    spec = [("gaussians", "Gaussians"), ("resolution", "resolution"), ("channels", "channels")]
    spec += [(s, f"{s} fps", fmt_fixed(1)) for s in series]
    return Table(_cols(spec), list(cases.values()))


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
        ("forward_s", "forward s", fmt_fixed(3))],
    "ablation": [("variant", "variant"), ("scenes", "scenes"), *METRIC_SPEC],
    "multigpu": [("gpus", "GPUs"), ("batch_per_gpu", "batch / GPU"), ("global_batch", "global batch"),
                 ("timed_steps", "timed steps"), ("steps_per_second", "steps/s", fmt_fixed(3)),
                 ("speedup", "speed-up ×", fmt_fixed(2)), ("scaling_efficiency", "scaling efficiency", fmt_pct),
                 ("peak_gb_per_gpu", "peak GB / GPU", fmt_fixed(2)), ("final_loss", "final loss", fmt_fixed(4))],
}


def eval_table(r: ResultFile) -> Table:
    rows = list(r.rows) + ([{"scene": "**mean**", **r.summary}] if r.summary else [])
    spec = [("scene", "scene"), *METRIC_SPEC, ("forward_seconds", "forward s", fmt_fixed(3)),
            ("align_seconds", "align s", fmt_fixed(3))]
    return Table(_cols(spec), rows)


VS_METHODS = ("ff3r", "ff3r+refine", "splatfacto-7k", "splatfacto-30k")


def _vs_rows(r: ResultFile) -> list[dict[str, Any]]:
    """vs_splatfacto rows by scene (first-seen order), views, then method (ff3r first)."""
    scenes = list(dict.fromkeys(str(x.get("scene", "")) for x in r.rows))
    rank = {m: i for i, m in enumerate(VS_METHODS)}
    return sorted(r.rows, key=lambda x: (scenes.index(str(x.get("scene", ""))), x.get("views") or 0,
                                         rank.get(x.get("method"), len(rank))))


def vs_splatfacto_table(r: ResultFile) -> Table:
    """One row per method and view count with the stage breakdown; columns without any value are left out."""
    rows = _vs_rows(r)
    f2, f3 = fmt_fixed(2), fmt_fixed(3)
    spec = [("scene", "scene"), ("views", "views"), ("method", "method"), ("iterations", "iterations"),
            ("seconds", "total s"), ("data_seconds", "data s", f2), ("setup_seconds", "setup s", f2),
            ("forward_seconds", "forward s", f3), ("merge_seconds", "merge s", f3), ("optimize_seconds", "optimize s"),
            ("peak_gb", "peak GB", f2), ("gaussians", "Gaussians"), ("psnr", "PSNR", f2), ("ssim", "SSIM", f3),
            ("lpips", "LPIPS", f3), ("speedup_vs_splatfacto_30k", "speed-up vs 30k ×", fmt_fixed(1)),
            ("speedup_vs_splatfacto_7k", "speed-up vs 7k ×", fmt_fixed(1))]
    single_scene = len({x.get("scene") for x in rows}) <= 1
    spec = [c for c in spec if any(x.get(c[0]) is not None for x in rows) and not (c[0] == "scene" and single_scene)]
    return Table(_cols(spec), rows)


def vs_splatfacto_more_tables(r: ResultFile) -> list[tuple[str, Table]]:
    """Rendering speed of the finished reconstructions (``render_fps``), when measured."""
    fps = [x for x in r.extra.get("render_fps") or [] if isinstance(x, dict)]
    if not fps:
        return []
    spec = [("method", "method"), ("views", "views"), ("gaussians", "Gaussians"), ("resolution", "resolution"),
            ("channels", "channels"), ("fps", "fps", fmt_fixed(1))]
    return [("Rendering speed of the reconstructions (one camera, expected depth included):", Table(_cols(spec), fps))]


def make_table(r: ResultFile) -> Table:
    """The table for ``r``: a dedicated layout, a column spec, or every scalar field in first-seen order."""
    if r.benchmark in TABLES:
        return TABLES[r.benchmark](r)
    if r.benchmark in SIMPLE_SPECS:
        return Table(_cols(SIMPLE_SPECS[r.benchmark]), r.rows, transpose=r.benchmark == "real_sequence")
    keys = list(dict.fromkeys(k for row in r.rows for k, v in row.items() if not isinstance(v, (dict, list))))
    return Table([Column(k, k) for k in keys], r.rows)


TABLES: dict[str, Callable[[ResultFile], Table]] = {
    "network": network_table, "voxelize": voxelize_table, "render": render_table, "eval": eval_table,
    "vs_splatfacto": vs_splatfacto_table}
MORE_TABLES: dict[str, Callable[[ResultFile], list[tuple[str, Table]]]] = {"vs_splatfacto": vs_splatfacto_more_tables}

# -------------------------------------------------------------------------------------------- targets


def network_targets(r: ResultFile) -> list[Target]:
    """vggt-1b at 64 views on one H100: forward <= 2.0 s and peak memory <= 40 GB."""
    is_1b = lambda x: str(x.get("config")).replace("_", "-") == "vggt-1b"  # noqa: E731 (files may spell vggt_1b)
    row = next((x for x in r.rows if is_1b(x) and x.get("views") == 64), None)
    if row is None:
        return [Target(None, "vggt-1b, 64 views: no such row")]
    device = str(r.machine.get("device", "?"))
    where = "" if "H100" in device else f" (measured on {device}; the target is for one H100)"
    out = []
    for key, limit, unit in (("seconds", 2.0, "s"), ("peak_gb", 40.0, "GB")):
        v = row.get(key)
        if v is None or row.get("status", "ok") != "ok":
            out.append(Target(False if not where else None, f"vggt-1b, 64 views: {row.get('status', 'no value')} "
                              f"(target ≤ {limit:g} {unit}){where}"))
        else:
            out.append(Target(v <= limit if not where else None,
                              f"vggt-1b, 64 views: {fmt_num(v)} {unit} ≤ {limit:g} {unit}{where}"))
    return out


def voxelize_targets(r: ResultFile) -> list[Target]:
    """>= 50% fewer at 64 views, sub-linear growth 64 -> 256, merge < 5% of forward, purity higher with semantics."""
    pairs = {p["views"]: p for p in _voxel_pairs(r)}
    out = []
    p64, p256 = pairs.get(64), pairs.get(256)
    if p64 is None:
        out.append(Target(None, "no 64-view rows"))
    else:
        reds = [(t, p64[f"reduction_{t}"]) for t in ("plain", "sem") if f"reduction_{t}" in p64]
        text = ", ".join(f"{fmt_pct(v)} ({t})" for t, v in reds)
        out.append(Target(all(v >= 0.5 for _, v in reds) if reds else None, f"64 views: {text} fewer Gaussians ≥ 50%"))
        shares = [(t, p64[f"merge_share_{t}"]) for t in ("plain", "sem") if f"merge_share_{t}" in p64]
        text = ", ".join(f"{fmt_pct(v)} ({t})" for t, v in shares) or "no forward time"
        out.append(Target(all(v < 0.05 for _, v in shares) if shares else None,
                          f"64 views: merge is {text} of the forward < 5%"))
    if p64 is None or p256 is None:
        out.append(Target(None, "growth 64 → 256 views: rows missing"))
    else:
        growth = [(t, p256[f"gaussians_out_{t}"] / p64[f"gaussians_out_{t}"]) for t in ("plain", "sem")
                  if p64.get(f"gaussians_out_{t}") and p256.get(f"gaussians_out_{t}") is not None]
        text = ", ".join(f"×{g:.2f} ({t})" for t, g in growth)
        out.append(Target(all(g < 4.0 for _, g in growth) if growth else None,
                          f"64 → 256 views (×4 input): output grows {text}, sub-linear"))
    both = [p for p in pairs.values() if p.get("purity_plain") is not None and p.get("purity_sem") is not None]
    if not both:
        out.append(Target(None, "purity: no plain/semantic pairs"))
    else:
        ok = all(p["purity_sem"] >= p["purity_plain"] for p in both)
        ok = ok and any(p["purity_sem"] > p["purity_plain"] for p in both)
        lo_p, lo_s = min(p["purity_plain"] for p in both), min(p["purity_sem"] for p in both)
        out.append(Target(ok, f"purity with semantic merging ≥ plain at all {len(both)} view counts, higher at some "
                              f"(lowest: {lo_s:.5f} semantic vs {lo_p:.5f} plain)"))
    return out


def multigpu_targets(r: ResultFile) -> list[Target]:
    """The multi-GPU run reaches >= 1.8x the one-GPU steps/s at the same global batch; the two loss curves agree."""
    row = max((x for x in r.rows if x.get("speedup") is not None), key=lambda x: x.get("gpus") or 0, default=None)
    out = []
    if row is None:
        out.append(Target(None, "no multi-GPU row with a speed-up"))
    else:
        on_gpu = row.get("device", r.machine.get("device")) != "cpu"
        where = "" if on_gpu else " (measured with CPU processes; the target is for GPUs)"
        out.append(Target(row["speedup"] >= 1.8 if on_gpu else None,
                          f"{row.get('gpus')} GPUs: {row['speedup']:.2f}× the one-GPU steps/s ≥ 1.8×{where}"))
    s = r.summary or {}
    if "losses_agree" not in s:
        out.append(Target(None, "loss curves: not compared"))
    else:
        out.append(Target(bool(s["losses_agree"]),
                          f"loss curves agree over {s.get('loss_steps', '?')} steps: max relative difference "
                          f"{fmt_num(s.get('loss_max_rel_diff'))} ≤ {fmt_num(s.get('loss_rtol'))} (max |Δ| "
                          f"{fmt_num(s.get('loss_max_abs_diff'))}, mean |Δ| {fmt_num(s.get('loss_mean_abs_diff'))})"))
    return out


def _vs_pick(r: ResultFile, method: str, views: int) -> Optional[dict[str, Any]]:
    """The first row (generated scenes come first) of ``method`` at ``views`` views."""
    return next((x for x in r.rows if x.get("method") == method and x.get("views") == views), None)


def _vs_caveat(r: ResultFile, splatfacto: dict[str, Any]) -> str:
    """Why a target cannot be judged from this file ("" when it can): it is set for 30k iterations on one GPU."""
    iters = splatfacto.get("iterations")
    if r.quick or (iters is not None and iters != 30_000):
        return f" (quick run: splatfacto-30k ran {fmt_num(iters)} iterations; the target is for 30k)"
    if str(r.machine.get("device", "cpu")) == "cpu":
        return " (measured on CPU; the target is for one GPU)"
    return ""


def vs_splatfacto_targets(r: ResultFile) -> list[Target]:
    """ff3r >= 180x (64 views) / 200x (128) faster than splatfacto-30k; ff3r+refine within 1 dB of it at 64 views
    while >= 20x faster; fewer Gaussians after merging than splatfacto's final count at 64 views."""
    out = []
    for views, need in ((64, 180.0), (128, 200.0)):
        ff, sf = _vs_pick(r, "ff3r", views), _vs_pick(r, "splatfacto-30k", views)
        if ff is None or sf is None or not ff.get("seconds") or not sf.get("seconds"):
            out.append(Target(None, f"ff3r vs splatfacto-30k at {views} views: rows missing (target ≥ {need:g}×)"))
            continue
        speed, why = sf["seconds"] / ff["seconds"], _vs_caveat(r, sf)
        out.append(Target(None if why else speed >= need, f"ff3r at {views} views: {speed:,.0f}× faster than "
                          f"splatfacto-30k ({fmt_num(ff['seconds'])} s vs {fmt_num(sf['seconds'])} s) ≥ {need:g}×{why}"))
    ffr, sf = _vs_pick(r, "ff3r+refine", 64), _vs_pick(r, "splatfacto-30k", 64)
    if ffr is None or sf is None or None in (ffr.get("psnr"), sf.get("psnr")) or not ffr.get("seconds"):
        out.append(Target(None, "ff3r+refine vs splatfacto-30k at 64 views: rows missing (target: within 1 dB, ≥ 20×)"))
    else:
        gap, speed, why = sf["psnr"] - ffr["psnr"], sf["seconds"] / ffr["seconds"], _vs_caveat(r, sf)
        out.append(Target(None if why else (gap <= 1.0 and speed >= 20.0),
                          f"ff3r+refine at 64 views: PSNR {ffr['psnr']:.2f} vs {sf['psnr']:.2f} dB (gap {gap:.2f} "
                          f"≤ 1 dB) while {speed:,.1f}× faster ≥ 20×{why}"))
    ff, sf = _vs_pick(r, "ff3r", 64), _vs_pick(r, "splatfacto-30k", 64)
    if ff is None or sf is None or ff.get("gaussians") is None or sf.get("gaussians") is None:
        out.append(Target(None, "Gaussians at 64 views: rows missing (target: ff3r after merging < splatfacto-30k)"))
    else:
        why = _vs_caveat(r, sf)
        out.append(Target(None if why else ff["gaussians"] < sf["gaussians"], f"64 views: ff3r keeps "
                          f"{fmt_num(ff['gaussians'])} Gaussians after merging < splatfacto-30k's {fmt_num(sf['gaussians'])}{why}"))
    return out


TARGETS: dict[str, Callable[[ResultFile], list[Target]]] = {
    "network": network_targets, "voxelize": voxelize_targets, "multigpu": multigpu_targets,
    "vs_splatfacto": vs_splatfacto_targets}

# ---------------------------------------------------------------------------------------------- plots


def _style() -> None:
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 110, "font.size": 10, "axes.grid": True,
                         "grid.alpha": 0.3, "legend.fontsize": 9})


def _save(fig: "plt.Figure", path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # No "Software" stamp: the PNG then depends only on the data, not on the matplotlib version.
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def _views_axis(ax: "plt.Axes", views: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(views)), [str(v) for v in sorted(set(views))])
    ax.minorticks_off()
    ax.set_xlabel("views")


def network_plot(r: ResultFile, plots_dir: Path) -> list[Path]:
    """Forward time and peak memory vs views, one line per config, with the vggt-1b targets marked."""
    ok = [x for x in r.rows if x.get("seconds") is not None and x.get("views") is not None]
    configs = list(dict.fromkeys(str(x.get("config")) for x in ok))
    if not ok:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    for ax, key, label, limit, unit in ((axes[0], "seconds", "forward time (s)", 2.0, "s"),
                                        (axes[1], "peak_gb", "peak memory (GB)", 40.0, "GB")):
        for cfg in configs:
            pts = sorted((x["views"], x[key]) for x in ok if str(x.get("config")) == cfg and x.get(key) is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=cfg)
        ax.plot([64], [limit], marker="*", markersize=14, color="tab:red", linestyle="none", label="target")
        ax.annotate(f"target: vggt-1b,\n64 views ≤ {limit:g} {unit}", (64, limit), textcoords="offset points",
                    xytext=(-12, 0), ha="right", va="center", fontsize=8, color="tab:red")
        _views_axis(ax, [x["views"] for x in ok] + [64])
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.12 * max([limit] + [x[key] for x in ok if x.get(key) is not None]))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles[:-1], labels[:-1], loc="outside lower center", ncols=len(configs))
    res = sorted({str(x.get("resolution")) for x in ok})
    fig.suptitle(f"Network forward, {', '.join(res)}, {r.machine.get('device', '?')}")
    return [_save(fig, plots_dir / "network.png")]


def _line(ax: "plt.Axes", pairs: Sequence[dict[str, Any]], key: str, label: str, marker: str) -> list[tuple]:
    """Plot ``key`` vs views where present; returns the points."""
    pts = [(p["views"], p[key]) for p in pairs if p.get(key) is not None]
    if pts:
        ax.plot(*zip(*pts), marker=marker, label=label)
    return pts


def voxelize_plot(r: ResultFile, plots_dir: Path) -> list[Path]:
    """Gaussians in/out vs views (log-log) and merge vs forward time."""
    pairs = [p for p in _voxel_pairs(r) if p.get("views")]
    if not pairs:
        return []
    views = [p["views"] for p in pairs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    curves = (("gaussians_in", "in (pixel Gaussians)", "o"), ("gaussians_out_plain", "out, plain merge", "s"),
              ("gaussians_out_sem", "out, semantic merge", "x"))
    for key, label, m in curves:
        _line(a, pairs, key, label, m)
    a.set_yscale("log")
    a.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    a.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:g}M"))
    _views_axis(a, views)
    a.set_ylabel("Gaussians")
    a.set_title("Gaussians vs views (log-log)")
    a.legend(loc="upper left")
    for key, label, m in (("merge_seconds_plain", "merge, plain", "s"), ("merge_seconds_sem", "merge, semantic", "x"),
                          ("forward_seconds", "network forward (vggt-1b)", "o")):
        pts = _line(b, pairs, key, label, m)
        if key == "forward_seconds" and pts:  # the target: merge < 5% of the forward
            b.plot([v for v, _ in pts], [0.05 * t for _, t in pts], "k:", label="5% of forward (target bound)")
    b.set_yscale("log")
    _views_axis(b, views)
    b.set_ylabel("seconds")
    b.set_title("merge time vs forward time")
    if b.get_lines():  # headroom above the data for the legend
        b.set_ylim(top=30 * max(line.get_ydata().max() for line in b.get_lines()))
    b.legend(loc="upper left")
    fig.suptitle(f"Voxelization, {r.machine.get('device', '?')}")
    return [_save(fig, plots_dir / "voxelize.png")]


def render_plot(r: ResultFile, plots_dir: Path) -> list[Path]:
    """Grouped fps bars: one group per (Gaussians, resolution, channels), one bar per backend and mode."""
    t = render_table(r)
    series = [c.key for c in t.columns[3:]]
    if not t.rows or not series:
        return []
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(t.rows) + 2), 4.2), layout="constrained")
    width = 0.8 / len(series)
    for i, s in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(t.rows))]
        ys = [row.get(s) or 0.0 for row in t.rows]
        bars = ax.bar(xs, ys, width, label=s)
        ax.bar_label(bars, labels=[f"{y:.0f}" if y else "" for y in ys], fontsize=7, padding=1)
    labels = [f"{fmt_num(c['gaussians'])}\n{c['resolution']}\n{c['channels']} ch" for c in t.rows]
    ax.set_xticks(range(len(t.rows)), labels, fontsize=8)
    ax.set_ylabel("frames per second")
    ax.grid(axis="x", visible=False)
    ax.legend()
    ax.set_title(f"Rendering speed, {r.machine.get('device', '?')}")
    return [_save(fig, plots_dir / "render.png")]


def multigpu_plot(r: ResultFile, plots_dir: Path) -> list[Path]:
    """Per-step total loss of each run (same seed and global batch) and each run's difference from the 1-GPU run."""
    runs = sorted((x for x in r.rows if x.get("loss_curve")), key=lambda x: x.get("gpus") or 0)
    if not runs:
        return []
    def label(x: dict[str, Any]) -> str:
        n, unit = x.get("gpus"), ("process", "processes") if x.get("device") == "cpu" else ("GPU", "GPUs")
        return f"{n} {unit[n != 1]} × batch {x.get('batch_per_gpu', '?')}"

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    base = runs[0]["loss_curve"]
    for x in runs:
        curve = x["loss_curve"]
        a.plot(range(1, len(curve) + 1), curve, label=label(x), linewidth=1.2)
        if x is not runs[0] and len(curve) == len(base):
            b.plot(range(1, len(curve) + 1), [c - c0 for c, c0 in zip(curve, base)], label=label(x))
    timed = runs[0].get("timed_steps")
    if timed:  # the steps before it were left out of steps/s (warm-up)
        for ax in (a, b):
            ax.axvline(len(base) - timed + 0.5, color="k", linestyle=":", linewidth=1, label="timing starts")
    a.set_xlabel("step")
    a.set_ylabel("total loss (global batch mean)")
    a.set_title(f"loss curves, global batch {runs[0].get('global_batch', '?')}")
    a.legend()
    b.set_xlabel("step")
    b.set_ylabel("loss difference")
    b.set_title(f"difference from {label(runs[0])}")
    b.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if b.get_lines():
        b.legend()
    fig.suptitle(f"Multi-GPU training, {r.machine.get('device', '?')}")
    return [_save(fig, plots_dir / "multigpu.png")]


def vs_splatfacto_plot(r: ResultFile, plots_dir: Path) -> list[Path]:
    """Reconstruction time (log) and held-out PSNR against views, one line per method (the scene with most views)."""
    by_scene: dict[str, list[dict[str, Any]]] = {}
    for x in _vs_rows(r):
        if x.get("views") is not None:
            by_scene.setdefault(str(x.get("scene", "")), []).append(x)
    if not by_scene:
        return []
    scene, rows = max(by_scene.items(), key=lambda kv: len({x["views"] for x in kv[1]}))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    styles = {"ff3r": ("o", "tab:blue"), "ff3r+refine": ("s", "tab:cyan"), "splatfacto-7k": ("^", "tab:orange"),
              "splatfacto-30k": ("v", "tab:red")}
    for method in list(dict.fromkeys([*VS_METHODS, *(str(x.get("method")) for x in rows)])):
        mine = [x for x in rows if x.get("method") == method]
        if not mine:
            continue
        iters = {x.get("iterations") for x in mine}
        shown = ", ".join(fmt_num(i) for i in sorted(i for i in iters if i is not None))
        label = {"ff3r+refine": f"{method} ({shown} steps)"}.get(method, method)
        if method.startswith("splatfacto") and not iters <= {30_000, 7_000}:
            label = f"{method} ({shown} it.)"
        marker, color = styles.get(method, ("x", None))
        for ax, key in ((a, "seconds"), (b, "psnr")):
            pts = sorted((x["views"], x[key]) for x in mine if x.get(key) is not None)
            if pts:
                ax.plot(*zip(*pts), marker=marker, color=color, label=label)
    views = [x["views"] for x in rows]
    for ax, ylabel, title in ((a, "reconstruction time (s)", "time (data + setup + forward + merge + optimize)"),
                              (b, "PSNR (dB)", "held-out views")):
        _views_axis(ax, views)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    a.set_yscale("log")
    a.legend()
    quick = ", QUICK RUN (reduced iterations)" if r.quick else ""
    fig.suptitle(f"FF3R vs splatfacto, {scene}, {r.machine.get('device', '?')}{quick}")
    return [_save(fig, plots_dir / f"{r.path.stem}.png")]  # one plot per result file (quick and full runs)


PLOTS: dict[str, Callable[[ResultFile, Path], list[Path]]] = {
    "network": network_plot, "voxelize": voxelize_plot, "render": render_plot, "multigpu": multigpu_plot,
    "vs_splatfacto": vs_splatfacto_plot}

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
    head = ("<!-- generated by scripts/make_results.py from benchmarks/results/*.json; edit those, not this -->")
    if not results:
        return f"{head}\n\nNo results yet."
    sections = [section_markdown(r, plots_dir, readme_dir, link_dir) for r in results]
    return "\n\n".join([head, *sections])


def section_markdown(r: ResultFile, plots_dir: Path, readme_dir: Path, link_dir: Optional[Path] = None) -> str:
    """One benchmark's README section (see :func:`build_block`); its plots are written to ``plots_dir``."""
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
    ap.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--plots-dir", type=Path, default=ROOT / "benchmarks" / "plots")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if the README block is stale")
    args = ap.parse_args(argv)
    if not args.readme.is_file():
        ap.error(f"README not found: {args.readme}")
    text = args.readme.read_text()
    results = load_results(args.results_dir)
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
