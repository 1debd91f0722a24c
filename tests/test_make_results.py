"""benchmarks/make_results.py: README block replacement, tables, target marks, plots, determinism."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import make_results as mr
from benchmarks import results_targets as rt

PREFIX = "# Title\n\nSome text | with a pipe.\n\n## Results\n\n"
SUFFIX = "\n\n## After\n\nMore text.\n"
OLD = "<!-- results:start -->\nstale table that must go\n<!-- results:end -->"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _envelope(name: str, rows: list[dict[str, Any]], device: str = "NVIDIA H100 80GB HBM3", **extra: Any) -> dict:
    return {"benchmark": name, "command": f"python -m benchmarks.{name}", "commit": "abc1234",
            "date": "2026-11-24T06:28:34Z", "machine": {"device": device, "torch": "2.11.0", "gsplat": "1.4.0", "cpus": 16},
            "quick": False, "rows": rows, **extra}


def _network(seconds_64: float = 1.43, gb_64: float = 12.2, device: str = "NVIDIA H100 80GB HBM3") -> dict:
    rows = [{"config": c, "views": v, "resolution": "448x336", "dtype": "bf16", "fusion": True, "seconds": s, "peak_gb": g}
            for c, v, s, g in [("base", 8, 0.1177, 5.92), ("base", 64, 0.7051, 8.75), ("vggt-1b", 8, 0.1348, 9.02),
                               ("vggt-1b", 64, seconds_64, gb_64)]]
    return _envelope("network", rows, device=device)


def _voxelize(out64: int = 3_000_000, out256: int = 4_000_000, purity_sem: float = 1.0, merge64: float = 0.05) -> dict:
    rows = []
    for views, n_in, n_out in ((64, 12_000_000, out64), (256, 48_000_000, out256)):
        for sem, purity in ((False, 0.9998), (True, purity_sem)):
            rows.append({"views": views, "resolution": 448, "semantic": sem, "gaussians_in": n_in,
                         "gaussians_out": n_out + (10 if sem else 0), "merge_seconds": merge64 * views / 64,
                         "forward_seconds": 1.5 if views == 64 else None, "purity": purity})
    return _envelope("voxelize", rows)


def _render() -> dict:
    rows = [{"backend": "gsplat", "device": "cuda", "mode": m, "gaussians": 100000, "resolution": "512x512",
             "channels": 3, "fps": f} for m, f in (("forward", 1231.787), ("forward+backward", 442.549))]
    return _envelope("render", rows)


def _setup(tmp_path: Path, files: dict[str, dict]) -> tuple[Path, Path, Path]:
    results, plots, readme = tmp_path / "results", tmp_path / "out" / "plots", tmp_path / "README.md"
    results.mkdir()
    for name, payload in files.items():
        (results / f"{name}.json").write_text(json.dumps(payload))
    readme.write_text(PREFIX + OLD + SUFFIX)
    return results, plots, readme


def _run(results: Path, plots: Path, readme: Path, *extra: str) -> int:
    return mr.main(["--results-dir", str(results), "--plots-dir", str(plots), "--readme", str(readme), *extra])


def _block(readme: Path) -> str:
    text = readme.read_text()
    return text[text.index(mr.START) + len(mr.START): text.index(mr.END)]


def test_block_replaced_outside_untouched_plots_written(tmp_path: Path) -> None:
    results, plots, readme = _setup(tmp_path, {"network": _network(), "voxelize": _voxelize(), "render": _render()})
    assert _run(results, plots, readme) == 0
    text = readme.read_text()
    assert text.startswith(PREFIX + mr.START) and text.endswith(mr.END + SUFFIX)
    assert "stale table" not in text
    block = _block(readme)
    # Sections in README order, with provenance and rounded cells.
    assert block.index("### Network") < block.index("### Rendering") < block.index("### Voxelization")
    assert "`python -m benchmarks.network` · NVIDIA H100 80GB HBM3" in block and "commit `abc1234`" in block
    assert "| vggt-1b | 64 | 448x336 | bf16 | yes | 1.430 | 12.20 |" in block
    assert "| 100,000 | 512x512 | 3 | 1231.8 | 442.5 |" in block
    assert "| 64 | 448 | 12,000,000 | 3,000,000 | 3,000,010 | 75.0% |" in block
    assert block.count(mr.MET) == 2 + 4 and mr.MISSED not in block
    for name in ("network", "voxelize", "render"):
        png = plots / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
        assert f"![{name}](out/plots/{name}.png)" in block  # relative to the README's folder
    assert sorted(p.name for p in plots.iterdir()) == ["network.png", "render.png", "voxelize.png"]


def test_deterministic_and_check(tmp_path: Path) -> None:
    results, plots, readme = _setup(tmp_path, {"network": _network(), "voxelize": _voxelize(), "render": _render()})
    _run(results, plots, readme)
    first_text, first_pngs = readme.read_text(), {p.name: p.read_bytes() for p in plots.iterdir()}
    _run(results, plots, readme)
    assert readme.read_text() == first_text
    assert {p.name: p.read_bytes() for p in plots.iterdir()} == first_pngs
    assert _run(results, plots, readme, "--check") == 0
    (results / "network.json").write_text(json.dumps(_network(seconds_64=1.9)))
    assert _run(results, plots, readme, "--check") == 1
    assert readme.read_text() == first_text  # --check writes nothing


def test_missed_targets_are_marked(tmp_path: Path) -> None:
    files = {"network": _network(seconds_64=2.5, gb_64=41.0),
             # 60% reduction (met) but x4.5 growth, lower semantic purity, merge 6% of forward.
             "voxelize": _voxelize(out64=4_800_000, out256=21_600_000, purity_sem=0.99, merge64=0.09)}
    results, plots, readme = _setup(tmp_path, files)
    _run(results, plots, readme)
    block = _block(readme)
    assert f"{mr.MISSED}: vggt-1b, 64 views: 2.5 s ≤ 2 s" in block
    assert f"{mr.MISSED}: vggt-1b, 64 views: 41 GB ≤ 40 GB" in block
    assert f"{mr.MET}: 64 views: 60.0% (plain), 60.0% (sem) fewer" in block
    assert f"{mr.MISSED}: 64 views: merge is 6.0% (plain), 6.0% (sem)" in block
    assert f"{mr.MISSED}: 64 → 256 views (×4 input): output grows ×4.50" in block
    assert f"{mr.MISSED}: purity with semantic merging" in block


def test_targets_not_checked_off_h100_or_missing_rows() -> None:
    r = mr.ResultFile("network", Path("network.json"), "cmd", None, None, {"device": "NVIDIA H200"}, False, None,
                      _network(device="NVIDIA H200")["rows"])
    targets = rt.network_targets(r)
    assert [t.met for t in targets] == [None, None] and "target is for one H100" in targets[0].detail
    no_row = rt.network_targets(mr.ResultFile("network", Path("n.json"), "c", None, None, {}, False, None, []))
    assert [t.met for t in no_row] == [None]
    vox = rt.voxelize_targets(mr.ResultFile("voxelize", Path("v.json"), "c", None, None, {}, False, None, []))
    assert all(t.met is None for t in vox)


def test_ablation_unknown_and_empty(tmp_path: Path) -> None:
    ablation = _envelope("ablation", [{"variant": "full", "scenes": 4, "psnr_target": 21.234, "ssim_target": 0.71234,
                                       "absrel": 0.0812, "miou_source": 0.5, "miou_target": 0.45, "acc_target": 0.8}])
    other = _envelope("zeta", [{"a": 1, "b": 0.123456, "skip": [1, 2]}], notes="multi\nline  notes")
    results, plots, readme = _setup(tmp_path, {"ablation": ablation, "zeta": other})
    _run(results, plots, readme)
    block = _block(readme)
    assert "| full | 4 | 21.23 | 0.712 | 0.081 | 0.500 | 0.450 | 0.800 |" in block
    assert "| a | b |" in block and "| 1 | 0.123 |" in block and "skip" not in block
    assert "<sub>Notes: multi line notes</sub>" in block
    assert not plots.exists()  # no plots for these benchmarks
    for p in results.iterdir():
        p.unlink()
    _run(results, plots, readme)
    assert "No results yet." in _block(readme) and readme.read_text().endswith(mr.END + SUFFIX)


def test_bad_input_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        mr.replace_block("no markers here", "x")
    with pytest.raises(ValueError, match="before"):
        mr.replace_block(f"{mr.END} {mr.START}", "x")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        mr.load_results(tmp_path)
    (tmp_path / "broken.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a results envelope"):
        mr.load_results(tmp_path)


def test_fmt_num() -> None:
    assert [mr.fmt_num(v) for v in (None, True, 12845056, 1231.787, 0.1177, 3.0, 0.0, 4.1e-5)] == [
        "–", "yes", "12,845,056", "1,232", "0.118", "3", "0", "4.10e-05"]
    assert mr.fmt_pct(0.73447) == "73.4%" and mr.fmt_fixed(5)(0.99984401) == "0.99984"


def test_refinement_curves_one_row_per_run_and_a_plot_of_the_newest(tmp_path: Path) -> None:
    """Each (label, commit) run is one row: its step-0, peak and last points; the plot shows the newest commit's runs."""
    def pt(label: str, commit: str, step: int, seconds: float, psnr: float, date: str = "2026-12-03") -> dict:
        return {"method": label, "commit": commit, "date": date, "views": 64, "budget": 30_000, "step": step,
                "seconds": seconds, "psnr": psnr, "gaussians": 1000 + step}

    rows = [pt("a", "old1", 0, 2.0, 23.0, "2026-12-01"), pt("a", "old1", 1000, 20.0, 31.0, "2026-12-01"),
            pt("a", "new2", 0, 2.0, 23.0), pt("a", "new2", 1000, 15.0, 33.2), pt("a", "new2", 3000, 45.0, 32.8),
            pt("splatfacto", "old1", 1000, 30.0, 28.0, "2026-12-01")]
    results, plots, readme = _setup(tmp_path, {"refinement_curves": _envelope("refinement_curves", rows)})
    assert _run(results, plots, readme) == 0
    block = _block(readme)
    assert "| a | old1 | 64 | 30,000 | 23.00 | 31.00 | 1,000 | 20.0 | 1,000 | 31.00 | 20.0 | 2,000 |" in block
    assert "| a | new2 | 64 | 30,000 | 23.00 | 33.20 | 1,000 | 15.0 | 3,000 | 32.80 | 45.0 | 4,000 |" in block
    assert "| splatfacto | old1 | 64 | 30,000 | – | 28.00 |" in block  # no step 0: no feedforward point
    assert (plots / "refinement_curves.png").read_bytes()[:8] == PNG_MAGIC
    summaries = mr.curve_summaries(mr.load_result(results / "refinement_curves.json"))
    assert [(s["run"], s["commit"]) for s in summaries] == [("a", "old1"), ("a", "new2"), ("splatfacto", "old1")]
