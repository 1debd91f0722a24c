"""The README's benchmark plots (PNG), one function per benchmark, drawn from result files only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

from results_format import VS_METHODS, ResultFile, voxel_pairs, vs_rows, fmt_num, render_table  # noqa: E402



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
    """Reconstruction time (log) and held-out PSNR against views, one line per method (the scene with most views)."""
    by_scene: dict[str, list[dict[str, Any]]] = {}
    for x in vs_rows(r):
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
