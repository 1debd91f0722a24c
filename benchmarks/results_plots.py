"""The README's benchmark plots (PNG), one function per benchmark, drawn from result files only."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from benchmarks.results_format import (  # noqa: E402
    VS_METHODS, ResultFile, curve_runs, voxel_pairs, vs_curves, fmt_num, render_table,
)



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
    pairs = [p for p in voxel_pairs(r) if p.get("views")]
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
    """Held-out PSNR against reconstruction time (log), one subplot per scene and view count, both methods, a
    marker at every evaluated point; dotted: splatfacto's final PSNR - the summary's margin (ff3r's target)."""
    curves = vs_curves(r)
    if not curves:
        return []
    margin = (r.summary or {}).get("psnr_margin_db", 0.5)
    styles = {"ff3r": ("o", "tab:blue"), "splatfacto": ("s", "tab:red")}
    n = len(curves)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.0, 3.6 * cols + 0.6), 3.3 * rows + 0.8), layout="constrained",
                             squeeze=False)
    one_scene = len({scene for scene, _ in curves}) <= 1
    for ax, ((scene, views), runs) in zip(axes.flat, curves.items()):
        for method in dict.fromkeys([*VS_METHODS, *runs]):
            pts = runs.get(method)
            if not pts:
                continue
            marker, color = styles.get(method, ("x", None))
            ax.plot([p["seconds"] for p in pts], [p["psnr"] for p in pts], marker=marker, markersize=4, color=color,
                    label=f"{method} ({fmt_num(pts[-1].get('budget') or pts[-1].get('step'))} steps)")
            if method == "ff3r" and pts[0].get("step") == 0:
                ax.annotate("feedforward", (pts[0]["seconds"], pts[0]["psnr"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=7, color=color)
        sf = runs.get("splatfacto")
        if sf:
            ax.axhline(sf[-1]["psnr"] - margin, color="tab:red", linestyle=":", linewidth=1,
                       label=f"splatfacto final − {fmt_num(margin)} dB")
        ax.set_xscale("log")
        times = [p["seconds"] for pts in runs.values() for p in pts if p["seconds"] > 0]
        if times:  # whole decades, so that labelled ticks show even on a narrow range
            ax.set_xlim(10 ** math.floor(math.log10(min(times) / 1.2)), 10 ** math.ceil(math.log10(max(times) * 1.2)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("reconstruction time (s, log)")
        ax.set_ylabel("held-out PSNR (dB)")
        ax.set_title(f"{views} views" + ("" if one_scene else f", {scene}"))
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    legend: dict[str, Any] = {}  # one legend for all subplots (labels in first-seen order)
    for ax in list(axes.flat)[:n]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=len(legend))
    quick = ", QUICK RUN (reduced steps)" if r.quick else ""
    scene = f", {next(iter(curves))[0]}" if one_scene else ""
    fig.suptitle(f"FF3R vs splatfacto: time to quality{scene}, {r.machine.get('device', '?')}{quick}")
    return [_save(fig, plots_dir / f"{r.path.stem}.png")]  # one plot per result file (quick and full runs)


def refinement_curves_plot(r: ResultFile, plots_dir: Path) -> list[Path]:
    """Held-out PSNR against time (log) for the newest commit's runs, and splatfacto's curves for reference."""
    runs = curve_runs(r)
    if not runs:
        return []
    newest = max(runs, key=lambda k: max(str(p.get("date") or "") for p in runs[k]))[1]
    views = {p.get("views") for k, v in runs.items() if k[1] == newest for p in v}
    # splatfacto's curves only at the newest runs' view counts: another room size is another curve
    shown = {k: v for k, v in runs.items() if k[1] == newest or (k[0] == "splatfacto" and v[0].get("views") in views)}
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    palette = [f"C{i}" for i in range(10) if i != 3]  # C3 (red) is splatfacto's alone
    ours = iter(palette * len(shown))
    for (label, commit), pts in shown.items():
        style = {"color": "tab:red", "linestyle": "--"} if label == "splatfacto" else {"color": next(ours)}
        ax.plot([max(p["seconds"], 1e-3) for p in pts], [p["psnr"] for p in pts], marker="o", markersize=3,
                label=f"{label} ({commit}, {pts[0].get('views')} views, {fmt_num(pts[-1].get('gaussians'))} G)", **style)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    late = [p["psnr"] for pts in shown.values() for p in pts if (p.get("step") or 0) >= 1000]
    if late:  # the part of the curves that differs; early points fall below
        ax.set_ylim(bottom=math.floor(min(late)) - 1)
    ax.set_xlabel("wall time (s, log)")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Refinement curves, commit {newest} and splatfacto, {r.machine.get('device', '?')}")
    return [_save(fig, plots_dir / f"{r.path.stem}.png")]


PLOTS: dict[str, Callable[[ResultFile, Path], list[Path]]] = {
    "network": network_plot, "voxelize": voxelize_plot, "render": render_plot, "multigpu": multigpu_plot,
    "vs_splatfacto": vs_splatfacto_plot, "refinement_curves": refinement_curves_plot}
