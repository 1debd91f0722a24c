"""Result files in the shared envelope: loading, the table/target types and value formatting.

Shared by :mod:`benchmarks.make_results` (README tables and targets) and :mod:`benchmarks.results_plots` (PNGs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

ENVELOPE_KEYS = ("benchmark", "command", "commit", "date", "machine", "quick", "notes", "rows", "summary")
VS_METHODS = ("ff3r", "splatfacto")
# Known benchmarks first, in reading order; anything else follows alphabetically with a generic table.
ORDER = ("network", "render", "voxelize", "export", "real_sequence", "ablation", "vs_splatfacto", "multigpu", "eval")
TITLES = {"network": "Network forward pass", "render": "Rendering speed", "voxelize": "Voxelization: Gaussian merging",
          "export": "PLY export", "real_sequence": "Real sequence: poses vs COLMAP", "ablation": "Ablation",
          "vs_splatfacto": "FF3R vs splatfacto", "multigpu": "Multi-GPU training", "eval": "Evaluation",
          "refined_miou": "Segmentation after refinement vs the 2D teacher",
          "refined_miou_variants": "Segmentation after GPU refinement: variants of the feature loss",
          "semantic_pretraining": "Stand-in semantic encoder (ff3r-pretrain-semantic)",
          "stage2_semantic_check": "Stage 2 around the stand-in semantic encoder",
          "short_run_lr": "Short-run learning rates (demo room, CPU)", "refinement_curves": "Refinement curves"}


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



def vs_rows(r: ResultFile) -> list[dict[str, Any]]:
    """vs_splatfacto rows by scene (first-seen order), views, method (ff3r first), then step."""
    scenes = list(dict.fromkeys(str(x.get("scene", "")) for x in r.rows))
    rank = {m: i for i, m in enumerate(VS_METHODS)}
    return sorted(r.rows, key=lambda x: (scenes.index(str(x.get("scene", ""))), x.get("views") or 0,
                                         rank.get(x.get("method"), len(rank)), str(x.get("method")),
                                         x.get("step") or 0))


def vs_curves(r: ResultFile) -> dict[tuple, dict[str, list[dict[str, Any]]]]:
    """``{(scene, views): {method: points by step}}`` of a time-to-quality file (points with a PSNR and seconds)."""
    out: dict[tuple, dict[str, list[dict[str, Any]]]] = {}
    for x in vs_rows(r):
        if x.get("psnr") is not None and x.get("seconds") is not None:
            out.setdefault((x.get("scene"), x.get("views")), {}).setdefault(str(x.get("method")), []).append(x)
    return out


def vs_old_shape(r: ResultFile) -> Optional[str]:
    """Why a ``vs_splatfacto`` file cannot be shown ("" / None when it can): rows from before the time-to-quality
    benchmark (one row per method, methods such as ``splatfacto-30k``, no ``step``)."""
    if r.rows and any("step" not in x for x in r.rows):
        return ("rows in the old one-row-per-method shape (no 'step'; methods "
                f"{', '.join(sorted({str(x.get('method')) for x in r.rows}))}); rerun python -m benchmarks.vs_splatfacto "
                "to replace it with time-to-quality curves")
    return None


# ------------------------------------------------------------------------------- row shaping (tables and plots)


def columns(spec: Sequence[tuple]) -> list[Column]:
    return [Column(*s) for s in spec]


def curve_runs(r: ResultFile) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """A ``refinement_curves`` file's runs: (label, commit) -> its evaluated points by step, in first-seen order."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in r.rows:
        if row.get("psnr") is not None and row.get("seconds") is not None:
            runs.setdefault((str(row.get("method")), str(row.get("commit") or r.commit)), []).append(row)
    return {k: sorted(v, key=lambda x: (x.get("step") or 0, x["seconds"])) for k, v in runs.items()}


def curve_summaries(r: ResultFile) -> list[dict[str, Any]]:
    """One row per run of :func:`curve_runs`: its feedforward (step 0), peak and last points."""
    out = []
    for (label, commit), pts in curve_runs(r).items():
        peak, last = max(pts, key=lambda x: x["psnr"]), pts[-1]
        first = pts[0] if pts[0].get("step") == 0 else {}
        out.append({"run": label, "commit": commit, "views": last.get("views"), "budget": last.get("budget"),
                    "step0_psnr": first.get("psnr"), "peak_psnr": peak["psnr"], "peak_step": peak.get("step"),
                    "peak_seconds": peak["seconds"], "last_step": last.get("step"), "last_psnr": last["psnr"],
                    "last_seconds": last["seconds"], "last_gaussians": last.get("gaussians")})
    return out


def voxel_pairs(r: ResultFile) -> list[dict[str, Any]]:
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


def _render_key(row: dict[str, Any]) -> str:
    dev = f" ({row['device']})" if row.get("device") and row.get("backend") == "torch" else ""
    return f"{row.get('backend', '?')}{dev} {row.get('mode', 'forward')}"


def render_table(r: ResultFile) -> Table:
    """Cases down the side, one fps column per backend and mode."""
    series = list(dict.fromkeys(_render_key(row) for row in r.rows))
    cases: dict[tuple, dict[str, Any]] = {}
    for row in r.rows:
        key = (row.get("scene", ""), row.get("gaussians"), str(row.get("resolution")), row.get("channels"))
        c = cases.setdefault(key, {"scene": key[0], "gaussians": key[1], "resolution": key[2], "channels": key[3]})
        c[_render_key(row)] = row.get("fps")
    spec = [("scene", "scene"), ("gaussians", "Gaussians"), ("resolution", "resolution"), ("channels", "channels")]
    spec += [(s, f"{s} fps", fmt_fixed(1)) for s in series]
    return Table(columns(spec), list(cases.values()))
