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


def load_results(results_dir: Path) -> list[ResultFile]:
    """Every ``*.json`` in ``results_dir``, in README order (known benchmarks first, then by name).

    Raises:
        ValueError: a file is not valid JSON or lacks ``benchmark``/``rows``.
    """
    out = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, dict) or "benchmark" not in data or not isinstance(data.get("rows"), list):
            raise ValueError(f"{path}: not a results envelope (needs 'benchmark' and a 'rows' list)")
        summary = data.get("summary") if isinstance(data.get("summary"), dict) else None
        out.append(ResultFile(
            benchmark=str(data["benchmark"]), path=path, command=str(data.get("command") or "?"),
            commit=data.get("commit"), date=data.get("date"), machine=dict(data.get("machine") or {}),
            quick=bool(data.get("quick", False)), notes=data.get("notes"),
            rows=[r for r in data["rows"] if isinstance(r, dict)], summary=summary))
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(out, key=lambda r: (rank.get(r.benchmark, len(ORDER)), r.benchmark, r.path.name))


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
    "vs_splatfacto": [("method", "method"), ("views", "views"), ("seconds", "seconds"),
                      ("peak_gb", "peak GB", fmt_fixed(2)), ("gaussians", "Gaussians"), ("psnr", "PSNR", fmt_fixed(2)),
                      ("ssim", "SSIM", fmt_fixed(3)), ("speedup_vs_splatfacto_30k", "speed-up vs 30k ×", fmt_fixed(1))],
    "multigpu": [("gpus", "GPUs"), ("global_batch", "global batch"), ("steps_per_second", "steps/s"),
                 ("peak_gb_per_gpu", "peak GB / GPU", fmt_fixed(2)), ("final_loss", "final loss")],
}


def eval_table(r: ResultFile) -> Table:
    rows = list(r.rows) + ([{"scene": "**mean**", **r.summary}] if r.summary else [])
    spec = [("scene", "scene"), *METRIC_SPEC, ("forward_seconds", "forward s", fmt_fixed(3)),
            ("align_seconds", "align s", fmt_fixed(3))]
    return Table(_cols(spec), rows)


def make_table(r: ResultFile) -> Table:
    """The table for ``r``: a dedicated layout, a column spec, or every scalar field in first-seen order."""
    if r.benchmark in TABLES:
        return TABLES[r.benchmark](r)
    if r.benchmark in SIMPLE_SPECS:
        return Table(_cols(SIMPLE_SPECS[r.benchmark]), r.rows, transpose=r.benchmark == "real_sequence")
    keys = list(dict.fromkeys(k for row in r.rows for k, v in row.items() if not isinstance(v, (dict, list))))
    return Table([Column(k, k) for k in keys], r.rows)


TABLES: dict[str, Callable[[ResultFile], Table]] = {
    "network": network_table, "voxelize": voxelize_table, "render": render_table, "eval": eval_table}

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


TARGETS: dict[str, Callable[[ResultFile], list[Target]]] = {"network": network_targets, "voxelize": voxelize_targets}

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


PLOTS: dict[str, Callable[[ResultFile, Path], list[Path]]] = {
    "network": network_plot, "voxelize": voxelize_plot, "render": render_plot}

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
    sections = []
    for r in results:
        table = make_table(r)
        targets = TARGETS[r.benchmark](r) if r.benchmark in TARGETS else []
        plots = PLOTS[r.benchmark](r, plots_dir) if r.benchmark in PLOTS else []
        sections.append(render_section(Section(r, table, targets, plots), readme_dir, link_dir or plots_dir))
    return "\n\n".join([head, *sections])


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
