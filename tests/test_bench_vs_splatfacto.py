"""benchmarks/vs_splatfacto.py: eval steps, the untimed evaluation, the time-to-quality summary, a CPU run
(ff3r only), the offline splatfacto glue, the README section and plot."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch

from benchmarks import make_results
from benchmarks import timed_runs as vs
from benchmarks import vs_splatfacto
from benchmarks.vs_splatfacto_summary import psnr_at, summarize

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STAGES = ("data_seconds", "setup_seconds", "forward_seconds", "merge_seconds", "optimize_seconds")


@pytest.fixture(scope="module")
def bench() -> Any:
    return vs_splatfacto


@pytest.fixture(scope="module")
def mr() -> Any:
    return make_results


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-frame 48x48 generated room (5 training views + 1 held out) with 300 points."""
    from ff3r_ns.data.generate import SceneSpec, generate_scene, write_scene

    spec = SceneSpec(seed=3, num_views=6, width=48, height=48)
    out = tmp_path_factory.mktemp("scene") / "room"
    write_scene(generate_scene(spec), out, spec, num_points=300)
    return out


def _args(bench: Any, *argv: str) -> argparse.Namespace:
    return bench.resolve(bench.build_parser().parse_args(list(argv)))


# ------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_cpu_run_writes_one_row_per_evaluated_point(bench: Any, tmp_path: Path) -> None:
    out = tmp_path / "results" / "vs_splatfacto.json"
    plots = tmp_path / "plots"
    # ff3r's own budget (--ff3r-steps) below splatfacto's --steps: its rows stop at it.
    bench.main(["--device", "cpu", "--skip-splatfacto", "--views", "5", "--resolution", "32", "--steps", "6",
                "--ff3r-steps", "4", "--eval-steps", "2", "4", "--ff3r-image-size", "56", "--fps-resolutions", "16x16", "--fps-repeats", "1",
                "--no-warmup",
                "--out", str(out), "--plots-dir", str(plots), "--cache-dir", str(tmp_path / "scenes"),
                "--runs-dir", str(tmp_path / "runs")])
    data = json.loads(out.read_text())
    assert data["benchmark"] == "vs_splatfacto" and data["quick"] is False and data["mode"] == "full"
    assert {"device", "torch", "gsplat"} <= set(data["machine"]) and data["commit"] and data["date"]
    assert {"seconds", "step", "splatfacto_psnr_at(t)"} <= set(data["definitions"])
    assert data["settings"]["steps"] == 6 and data["settings"]["ff3r_steps"] == 4 and data["settings"]["ff3r_method"] == "ff3r"
    rows = data["rows"]
    assert [(r["method"], r["step"], r["budget"], r["views"], r["eval_views"]) for r in rows] == [
        ("ff3r", s, 4, 5, 1) for s in (0, 2, 4)]
    for r in rows:
        for key in (*STAGES, "seconds", "psnr", "ssim", "eval_seconds"):
            assert isinstance(r[key], float) and math.isfinite(r[key]) and r[key] >= 0, key
        assert r["seconds"] == pytest.approx(sum(r[k] for k in STAGES))
        assert 0 < r["gaussians"] <= r["gaussians_predicted"] and r["peak_gb"] is None  # CPU
        assert r["eval_resolution"] == "32x32" and r["scene"] == "generated-seed0"
    seconds = [r["seconds"] for r in rows]
    assert seconds == sorted(seconds) and len(set(seconds)) == 3  # strictly increasing
    assert rows[0]["optimize_seconds"] == 0.0 and rows[1]["optimize_seconds"] > 0
    assert {k: rows[0][k] for k in STAGES[:4]} == {k: rows[2][k] for k in STAGES[:4]}  # one run: one setup
    (case,) = data["summary"]["cases"]
    assert (case["views"], case["ff3r_points"], case["splatfacto_points"], case["ff3r_final_step"]) == (5, 3, 0, 4)
    assert case["speedup_met"] is None and case["ahead_met"] is None  # no splatfacto: nothing judged
    assert {(r["method"], r["resolution"], r["step"]) for r in data["render_fps"]} == {("ff3r", "16x16", 4)}
    md = out.with_suffix(".md").read_text()
    assert "| 5 | ff3r | 3 |" in md and "Rendering speed" in md and "**quick run**" not in md
    assert (plots / "vs_splatfacto.png").read_bytes().startswith(PNG_MAGIC)


# ----------------------------------------------------------------------------------------- eval steps


def test_eval_steps_clip_scale_and_explicit() -> None:
    assert vs.eval_steps(30_000) == list(vs.DEFAULT_EVAL_STEPS)
    assert vs.eval_steps(50_000) == [*vs.DEFAULT_EVAL_STEPS, 50_000]  # the budget is always the last point
    # Clipping 15k leaves 7 points (< 8): the 30k list scaled to the budget instead.
    assert vs.eval_steps(15_000) == [125, 250, 500, 1000, 1500, 3500, 7500, 15_000]
    assert vs.eval_steps(3000) == [25, 50, 100, 200, 300, 700, 1500, 3000]
    assert vs.eval_steps(4) == [1, 2, 4]
    assert vs.eval_steps(4, [2, 4, 9]) == [2, 4]  # past the budget: dropped
    assert vs.eval_steps(10, [0, 5]) == [0, 5, 10]
    assert vs.eval_steps(0) == [0]
    with pytest.raises(ValueError):
        vs.eval_steps(10, [-1, 5])


def test_presets_and_overrides(bench: Any) -> None:
    full = _args(bench, "--skip-splatfacto")
    assert (full.views, full.steps, full.mode, full.methods) == ([8, 32, 64, 128], 30_000, "full", ["ff3r"])
    assert full.eval_steps == [0, *vs.DEFAULT_EVAL_STEPS]  # both scored before training too
    # ff3r's own 7500-step budget: splatfacto's points inside it and the same points scaled to it
    assert full.ff3r_eval_steps == [0, 62, 125, 250, 500, 750, 1000, 1750, 2000, 3000, 3750, 7000, 7500]
    assert full.out.name == "vs_splatfacto.json" and full.fps_views == 64
    assert full.fps_resolutions == [(512, 512), (1920, 1080)]
    quick = _args(bench, "--quick", "--skip-splatfacto")
    assert (quick.views, quick.steps, quick.mode, quick.out.name) == ([8, 64], 3000, "quick", "vs_splatfacto_quick.json")
    assert quick.eval_steps == quick.ff3r_eval_steps == [0, 250, 500, 1000, 1500, 2000, 2500, 3000]
    cpu = _args(bench, "--device", "cpu", "--skip-splatfacto", "--views", "5", "--steps", "4", "--eval-steps", "2", "4", "7")
    assert (cpu.eval_steps, cpu.ff3r_eval_steps, cpu.dropped_eval_steps, cpu.fps_views) == ([0, 2, 4], [0, 2, 4], [7], 5)
    # A full run takes ff3r's own budget (as ns-train would); --ff3r-steps sets it, with splatfacto's steps inside it.
    from ff3r_ns.method_configs.ff3r import ff3r_method

    assert full.ff3r_steps == ff3r_method.config.max_num_iterations
    short = _args(bench, "--skip-splatfacto", "--ff3r-steps", "7500")
    assert short.steps == 30_000 and short.ff3r_steps == 7500 and short.ff3r_eval_steps[-1] == 7500
    assert set(short.ff3r_eval_steps) >= {0, 250, 500, 1000, 2000, 3000, 7000} | set(vs.eval_steps(7500))
    assert _args(bench, "--skip-splatfacto", "--steps", "900").ff3r_steps == 900  # --steps: both methods
    sf = _args(bench, "--device", "cuda", "--skip-ff3r", "--views", "8", "--steps", "3000")
    assert sf.methods == ["splatfacto"] and sf.eval_steps == [0, *vs.eval_steps(3000)]
    for bad in (["--skip-ff3r", "--skip-splatfacto"], ["--skip-splatfacto", "--steps", "0"],
                ["--skip-splatfacto", "--eval-steps", "-5"], ["--skip-splatfacto", "--views"]):
        with pytest.raises(SystemExit):
            _args(bench, *bad)


def test_cuda_is_required_for_splatfacto(bench: Any) -> None:
    with pytest.raises(SystemExit, match="skip-splatfacto"):
        _args(bench, "--device", "cpu")


def test_ff3r_methods_are_looked_up_not_listed(bench: Any) -> None:
    methods = vs.ff3r_methods()
    assert {"ff3r", "ff3r-tiny"} <= set(methods)
    assert all(spec.config.method_name == name for name, spec in methods.items())
    choices = next(a.choices for a in bench.build_parser()._actions if a.dest == "ff3r_method")
    assert list(choices) == list(methods)
    cfg = vs.ff3r_config("ff3r-tiny", weights=Path("w.pt"), image_size=56)
    assert cfg.method_name == "ff3r-tiny" and cfg.pipeline.model.network.image_size == 56
    assert cfg.pipeline.model.network.weights == Path("w.pt")
    assert methods["ff3r-tiny"].config.pipeline.model.network.weights != Path("w.pt")  # a copy
    with pytest.raises(ValueError, match="ff3r-tiny"):
        vs.ff3r_config("nope")


# --------------------------------------------------------------------------- evaluation is not timed


class _Clock:
    """A fake wall clock: training steps and evaluations advance it by known amounts."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class _FakeTrainer:
    """What train_and_evaluate uses of nerfstudio's Trainer: callbacks, a pipeline and a loop (1 s per step)."""

    def __init__(self, steps: int, clock: _Clock) -> None:
        from types import SimpleNamespace

        self.callbacks: list[Any] = []
        self.steps, self.clock = steps, clock
        self.pipeline = SimpleNamespace(device="cpu", model=SimpleNamespace(num_points=100), training=True)
        self.pipeline.train = lambda: setattr(self.pipeline, "training", True)

    def train(self) -> None:
        from nerfstudio.engine.callbacks import TrainingCallbackLocation

        for step in range(self.steps):
            assert self.pipeline.training, "evaluation left the pipeline in eval mode"
            self.clock.t += 1.0
            self.pipeline.model.num_points += 10
            for cb in self.callbacks:
                cb.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)


def test_seconds_exclude_slow_evaluations() -> None:
    clock = _Clock()
    trainer = _FakeTrainer(10, clock)
    evaluated: list[int] = []

    def slow_eval(pipeline: Any) -> vs.EvalResult:  # 100 s per evaluation, in eval mode
        pipeline.training = False
        evaluated.append(pipeline.model.num_points)
        clock.t += 100.0
        return vs.EvalResult(20.0 + len(evaluated), 0.5, None, 1, "8x8", 100.0, 1.0)

    base = vs.RunPoint(method="ff3r", scene="s", views=4, eval_views=1, budget=10, step=0, data_seconds=2.0,
                        setup_seconds=3.0, optimize_seconds=0.0, peak_gb=None, gaussians=100, forward_seconds=0.5,
                        merge_seconds=0.25)
    seen: list[int] = []
    records = vs.train_and_evaluate(trainer, base, [0, 1, 4, 10], slow_eval, on_point=lambda r: seen.append(r.step),
                                    clock=clock)
    assert [r.step for r in records] == seen == [0, 1, 4, 10]
    assert [r.optimize_seconds for r in records] == [0.0, 1.0, 4.0, 10.0]  # no 100 s evaluation in any of them
    assert [r.seconds for r in records] == [5.75, 6.75, 9.75, 15.75]
    assert [r.gaussians for r in records] == evaluated == [100, 110, 140, 200]
    assert [r.evaluation.psnr for r in records] == [21.0, 22.0, 23.0, 24.0]
    assert all(r.budget == 10 and r.data_seconds == 2.0 for r in records)
    without_zero = vs.train_and_evaluate(_FakeTrainer(5, clock), dataclasses.replace(base, budget=5), [3, 5],
                                         slow_eval, clock=clock)
    assert [(r.step, r.optimize_seconds) for r in without_zero] == [(3, 3.0), (5, 5.0)]
    with pytest.raises(ValueError, match="budget"):
        vs.train_and_evaluate(_FakeTrainer(10, clock), base, [5, 20], slow_eval, clock=clock)


# ---------------------------------------------------------------------------- time-to-quality summary


def test_psnr_at_interpolates_in_time_and_holds_the_ends() -> None:
    curve = [(40.0, 26.0), (10.0, 20.0), (100.0, 30.0)]  # unsorted on purpose
    assert psnr_at(curve, 1.0) == 20.0  # before splatfacto's first point: its first point's PSNR
    assert psnr_at(curve, 10.0) == 20.0 and psnr_at(curve, 40.0) == 26.0
    assert psnr_at(curve, 20.0) == pytest.approx(22.0)  # linear in seconds, not log
    assert psnr_at(curve, 70.0) == pytest.approx(28.0)
    assert psnr_at(curve, 500.0) == 30.0  # after the last: the final PSNR
    with pytest.raises(ValueError):
        psnr_at([], 1.0)


def _pt(method: str, step: int, seconds: float, psnr: float, gaussians: int = 100_000, views: int = 64,
        budget: int = 30_000) -> dict[str, Any]:
    return {"method": method, "scene": "generated-seed0", "views": views, "step": step, "budget": budget,
            "seconds": seconds, "psnr": psnr, "ssim": 0.9, "lpips": None, "gaussians": gaussians, "peak_gb": 1.0}


def _sf(views: int = 64, budget: int = 30_000) -> list[dict[str, Any]]:
    return [_pt("splatfacto", s, t, p, g, views, budget) for s, t, p, g in
            ((250, 10.0, 20.0, 50_000), (1000, 40.0, 26.0, 100_000), (7000, 100.0, 30.0, 180_000),
             (30_000, 300.0, 32.0, 200_000))]


def _ff(views: int = 64, budget: int = 30_000, **changes: float) -> list[dict[str, Any]]:
    """ff3r ahead everywhere: reaches 31.5 dB (32 - 0.5) at 20 s (15x sooner), ends at 32.5 dB with 150k Gaussians."""
    pts = {"p0": (0, 1.0, 25.0), "p250": (250, 5.0, 28.0), "p1000": (1000, 20.0, 31.6), "p30k": (30_000, 290.0, 32.5)}
    out = []
    for name, (s, t, p) in pts.items():
        out.append(_pt("ff3r", s, t, changes.get(name, p), 150_000 if name == "p30k" else 120_000, views, budget))
    if "gaussians" in changes:
        out[-1]["gaussians"] = int(changes["gaussians"])
    return out


def _case(rows: list[dict[str, Any]]) -> dict[str, Any]:
    (case,) = summarize(rows)["cases"]
    return case


def test_summary_all_targets_met() -> None:
    c = _case(_ff() + _sf())
    assert (c["views"], c["speedup_is_target"], c["splatfacto_points"], c["ff3r_points"]) == (64, True, 4, 4)
    assert (c["splatfacto_final_psnr"], c["splatfacto_final_seconds"], c["splatfacto_final_gaussians"]) == (32.0, 300.0, 200_000)
    assert (c["psnr_threshold"], c["ff3r_reach_step"], c["ff3r_reach_seconds"]) == (31.5, 1000, 20.0)
    assert c["speedup"] == 15.0 and c["speedup_met"] is True
    # ff3r - splatfacto_psnr_at(t): 1 s: 25-20; 5 s: 28-20; 20 s: 31.6-22; 290 s: 32.5-31.9; and after ff3r ended,
    # its final against splatfacto's 300 s point: 32.5-32.0 (the worst)
    assert c["ahead_points"] == 4 and c["ahead_met"] is True
    assert c["ahead_worst_margin_db"] == pytest.approx(0.5) and (c["ahead_worst_step"], c["ahead_worst_seconds"]) == (30_000, 300.0)
    assert c["final_psnr_met"] is True and c["final_gaussians_met"] is True


def test_summary_each_target_can_fail() -> None:
    slow = _case(_ff(p1000=31.0) + _sf())  # first within 0.5 dB only at 290 s
    assert slow["ff3r_reach_seconds"] == 290.0 and slow["speedup"] == pytest.approx(300 / 290) and slow["speedup_met"] is False
    never = _case(_ff(p1000=31.0, p30k=31.4) + _sf())
    assert never["ff3r_reach_seconds"] is None and never["speedup"] is None and never["speedup_met"] is False
    assert never["final_psnr_met"] is False
    behind = _case(_ff(p250=19.0) + _sf())  # before splatfacto's first point it counts as 20 dB
    assert behind["ahead_met"] is False and (behind["ahead_worst_step"], behind["ahead_worst_seconds"]) == (250, 5.0)
    assert behind["ahead_worst_margin_db"] == pytest.approx(-1.0) and behind["speedup_met"] is True
    between = _case(_ff(p1000=21.9) + _sf())  # 20 s: splatfacto interpolated to 22.0 dB
    assert between["ahead_met"] is False and between["ahead_worst_margin_db"] == pytest.approx(-0.1)
    fat = _case(_ff(gaussians=200_001) + _sf())
    assert fat["final_gaussians_met"] is False and fat["final_psnr_met"] is True and fat["ahead_met"] is True
    equal = _case(_ff(gaussians=200_000, p30k=32.0) + _sf())  # ties count as met (>=, <=)
    assert equal["final_gaussians_met"] is True and equal["final_psnr_met"] is True


def test_summary_judges_a_shorter_ff3r_run_by_its_final_result_until_splatfacto_ends() -> None:
    """A run of fewer steps (e.g. several images per step) ends early: later budgets get its final PSNR."""
    short = [p for p in _ff() if p["step"] < 30_000] + [_pt("ff3r", 7500, 60.0, 30.5, 150_000, budget=7500)]
    c = _case(short + _sf())
    # 100 s: splatfacto 30.0 < 30.5; 300 s: splatfacto 32.0 > 30.5: behind by 1.5 dB at splatfacto's last point
    assert c["ahead_met"] is False and c["ahead_worst_margin_db"] == pytest.approx(-1.5)
    assert (c["ahead_worst_step"], c["ahead_worst_seconds"]) == (7500, 300.0) and c["final_psnr_met"] is False
    better = [p for p in _ff() if p["step"] < 30_000] + [_pt("ff3r", 7500, 60.0, 32.2, 150_000, budget=7500)]
    b = _case(better + _sf())
    assert b["ahead_met"] is True and b["ahead_worst_margin_db"] == pytest.approx(0.2) and b["final_psnr_met"] is True


def test_summary_ignores_ff3r_points_after_splatfacto_finished_and_missing_methods() -> None:
    late = _ff() + [_pt("ff3r", 40_000, 350.0, 5.0)]  # after splatfacto's final time: not compared
    c = _case(late + _sf())
    assert c["ahead_points"] == 4 and c["ahead_met"] is True and c["ff3r_final_psnr"] == 5.0
    only_ff = _case(_ff())
    assert only_ff["ff3r_points"] == 4 and only_ff["splatfacto_final_psnr"] is None
    assert all(only_ff[k] is None for k in ("speedup_met", "ahead_met", "final_psnr_met", "final_gaussians_met"))
    two = summarize(_ff(8) + _sf(8) + _ff(128) + _sf(128))
    assert [(c["views"], c["speedup_is_target"]) for c in two["cases"]] == [(8, False), (128, True)]
    assert (two["psnr_margin_db"], two["speedup_target"], two["speedup_target_views"]) == (0.5, 10.0, [64, 128])


# ------------------------------------------------------------------------------------------- --append


def test_append_keeps_other_runs_and_keys_it_does_not_write(bench: Any, tmp_path: Path) -> None:
    from ff3r_ns.envelope import machine_info

    out = tmp_path / "vs.json"
    old_rows = _sf(64) + _ff(64) + _ff(8)
    old = {"benchmark": "vs_splatfacto", "machine": machine_info(), "mode": "full", "rows": old_rows,
           "render_fps": [], "command": "python first", "settings": {"steps": 30_000},
           "cold_start_rows": [{"method": "ff3r", "seconds": 3.9}]}
    out.write_text(json.dumps(old))
    args = _args(bench, "--skip-splatfacto", "--views", "64", "--ff3r-steps", "30000", "--append", "--out", str(out),
                 "--plots-dir", str(tmp_path / "plots"))  # the fixtures' ff3r budget, not ff3r's own 7500
    previous = bench._previous(args)
    assert previous["rows"] == old_rows and previous["commands"] == ["python first"]
    assert previous["kept"] == {"cold_start_rows": old["cold_start_rows"]}
    new_ff = _ff(64, p30k=33.0)  # this command's ff3r run at 64 views replaces the old one, nothing else
    bench.save(args, new_ff, [], previous)
    data = json.loads(out.read_text())
    got = {(r["method"], r["views"]) for r in data["rows"]}
    assert got == {("splatfacto", 64), ("ff3r", 64), ("ff3r", 8)} and len(data["rows"]) == 12
    assert [r["psnr"] for r in data["rows"] if r["method"] == "ff3r" and r["views"] == 64][-1] == 33.0
    assert data["cold_start_rows"] == old["cold_start_rows"] and data["commands"][0] == "python first"
    case64 = next(c for c in data["summary"]["cases"] if c["views"] == 64)  # recomputed over all rows
    assert case64["ff3r_final_psnr"] == 33.0 and case64["splatfacto_final_psnr"] == 32.0
    with pytest.raises(SystemExit, match="quick run"):
        bench._previous(_args(bench, "--quick", "--skip-splatfacto", "--append", "--out", str(out)))
    with pytest.raises(SystemExit, match="30000 steps"):
        bench._previous(_args(bench, "--skip-splatfacto", "--steps", "3000", "--append", "--out", str(out)))
    out.write_text(json.dumps({**old, "rows": [{"method": "splatfacto-30k", "views": 64}]}))
    with pytest.raises(SystemExit, match="old one-row-per-method shape"):
        bench._previous(args)
    assert bench._previous(argparse.Namespace(**{**vars(args), "append": False}))["rows"] == []


# ------------------------------------------------------------------------------------ scenes, configs


def test_frames_for_training_views_leave_exactly_that_many() -> None:
    for views in range(1, 300):
        m = vs.frames_for_training_views(views)
        assert m - math.ceil(m / vs.EVAL_INTERVAL) == views
        assert (m - 1) - math.ceil((m - 1) / vs.EVAL_INTERVAL) < views  # the smallest such count
    assert vs.frames_for_training_views(64) == 74


def test_splatfacto_config_is_shipped_at_30k_and_compressed_otherwise() -> None:
    from nerfstudio.configs.method_configs import method_configs

    from benchmarks.offline_splatfacto import OfflineSplatfactoModelConfig, PlyPointsNerfstudioDataParserConfig

    shipped = method_configs["splatfacto"]
    full = vs.splatfacto_config(30_000)
    assert isinstance(full.pipeline.model, OfflineSplatfactoModelConfig)
    assert isinstance(full.pipeline.datamanager.dataparser, PlyPointsNerfstudioDataParserConfig)
    for f in dataclasses.fields(shipped.pipeline.model):
        if f.name != "_target":
            assert getattr(full.pipeline.model, f.name) == getattr(shipped.pipeline.model, f.name), f.name
    assert full.optimizers["means"]["scheduler"].max_steps == 30_000
    short = vs.splatfacto_config(3_000)
    m = short.pipeline.model
    steps = (m.refine_every, m.resolution_schedule, m.warmup_length, m.stop_split_at, m.sh_degree_interval)
    assert steps == (10, 300, 50, 1500, 100)
    assert m.reset_alpha_every == shipped.pipeline.model.reset_alpha_every  # counted in refine intervals
    assert short.optimizers["means"]["scheduler"].max_steps == 3_000
    assert shipped.pipeline.model.refine_every == 100  # the registered config is untouched


def test_quiet_trainer_config_same_dataparser_for_both(tmp_path: Path, scene: Path) -> None:
    a = vs.quiet_trainer_config(vs.ff3r_config(), scene, "cpu", 0, tmp_path, "ff3r")
    b = vs.quiet_trainer_config(vs.splatfacto_config(30_000), scene, "cuda", 30_000, tmp_path, "splatfacto")
    assert a.pipeline.datamanager.dataparser == b.pipeline.datamanager.dataparser
    dp = a.pipeline.datamanager.dataparser
    assert (dp.eval_mode, dp.eval_interval, dp.downscale_factor, dp.load_3D_points) == ("interval", 8, 1, True)
    for c in (a, b):
        assert not (c.is_viewer_enabled() or c.is_tensorboard_enabled() or c.is_wandb_enabled() or c.is_comet_enabled())
        assert c.steps_per_eval_image == c.steps_per_eval_all_images == c.steps_per_save == 0


# ------------------------------------------------------------------------------ offline splatfacto glue


def test_points_reach_the_dataparser_without_open3d(scene: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
    from plyfile import PlyData

    monkeypatch.setitem(sys.modules, "open3d", None)  # `import open3d` now raises ImportError
    with pytest.raises(ImportError):
        NerfstudioDataParserConfig(data=scene, load_3D_points=True, downscale_factor=1).setup().get_dataparser_outputs("train")
    out = vs.dataparser_config(scene).setup().get_dataparser_outputs("train")
    xyz, rgb = out.metadata["points3D_xyz"], out.metadata["points3D_rgb"]
    assert xyz.shape == (300, 3) and xyz.dtype == torch.float32 and rgb.shape == (300, 3) and rgb.dtype == torch.uint8
    v = PlyData.read(str(scene / "points.ply"))["vertex"]
    raw = torch.from_numpy(np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32))
    expected = (torch.cat([raw, torch.ones(300, 1)], 1) @ out.dataparser_transform.T) * out.dataparser_scale
    torch.testing.assert_close(xyz, expected)
    np.testing.assert_array_equal(rgb.numpy(), np.stack([v["red"], v["green"], v["blue"]], 1))
    assert len(out.image_filenames) == 5  # frames 1..5; frame 0 is held out


def test_points_match_nerfstudios_open3d_reader(scene: Path) -> None:
    pytest.importorskip("open3d")
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    kwargs = dict(data=scene, load_3D_points=True, downscale_factor=1)
    theirs = NerfstudioDataParserConfig(**kwargs).setup().get_dataparser_outputs("train").metadata
    ours = vs.dataparser_config(scene).setup().get_dataparser_outputs("train").metadata
    torch.testing.assert_close(ours["points3D_xyz"], theirs["points3D_xyz"])
    assert (ours["points3D_rgb"].int() - theirs["points3D_rgb"].int()).abs().max() <= 1  # open3d's float round trip


def test_read_points_ply_float_colours_and_no_colours(tmp_path: Path) -> None:
    from plyfile import PlyData, PlyElement

    from ff3r_ns.export.ply import read_points_ply

    vert = np.array([(0.0, 1.0, 2.0, 1.0, 0.5, 0.0)], dtype=[(n, "<f4") for n in ("x", "y", "z", "red", "green", "blue")])
    PlyData([PlyElement.describe(vert, "vertex")]).write(str(tmp_path / "a.ply"))
    xyz, rgb = read_points_ply(tmp_path / "a.ply")
    np.testing.assert_array_equal(xyz, [[0.0, 1.0, 2.0]])
    np.testing.assert_array_equal(rgb, [[255, 128, 0]])
    bare = np.array([(0.0, 1.0, 2.0)], dtype=[(n, "<f8") for n in ("x", "y", "z")])
    PlyData([PlyElement.describe(bare, "vertex")]).write(str(tmp_path / "b.ply"))
    assert read_points_ply(tmp_path / "b.ply")[1].tolist() == [[0, 0, 0]]
    with pytest.raises(FileNotFoundError):
        read_points_ply(tmp_path / "missing.ply")


def test_offline_splatfacto_never_builds_lpips_without_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchmetrics.image.lpip as lpip_module
    from nerfstudio.data.scene_box import SceneBox

    from benchmarks.offline_splatfacto import OfflineSplatfactoModelConfig
    from ff3r_ns.core import metrics

    def download(*_: Any, **__: Any) -> None:
        raise AssertionError("torchmetrics' LPIPS was built (it downloads AlexNet)")

    monkeypatch.setattr(metrics, "lpips_available", lambda: False)
    monkeypatch.setattr(lpip_module, "LearnedPerceptualImagePatchSimilarity", download)
    # Random initial points: splatfacto's seeded path calls .cuda(), which a CPU test cannot.
    model = OfflineSplatfactoModelConfig(num_random=500).setup(
        scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=4, metadata={}, seed_points=None)
    assert model.num_points == 500
    assert math.isnan(float(model.lpips(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))))
    assert lpip_module.LearnedPerceptualImagePatchSimilarity is download  # the patch was undone


def test_knn_fallback_matches_sklearn() -> None:
    from sklearn.neighbors import NearestNeighbors

    from benchmarks.offline_splatfacto import knn_distances

    x = torch.rand(700, 3, generator=torch.Generator().manual_seed(0))
    d, i = knn_distances(x, 3, chunk=256)
    ref_d, ref_i = NearestNeighbors(n_neighbors=4).fit(x.numpy()).kneighbors(x.numpy())
    np.testing.assert_allclose(d, ref_d[:, 1:], rtol=1e-4, atol=1e-6)
    assert d.dtype == np.float32 and i.shape == (700, 3) and (i == ref_i[:, 1:]).mean() > 0.99


def test_camera_at_keeps_pose_and_horizontal_fov() -> None:
    from ff3r_ns.core.cameras import Cameras

    k = torch.tensor([[[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]]])
    cam = vs_splatfacto.camera_at(Cameras(torch.eye(4)[None], k, 128, 128), 1920, 1080)
    assert (cam.width, cam.height) == (1920, 1080)
    torch.testing.assert_close(cam.intrinsics[0], torch.tensor([[1500.0, 0, 960], [0, 1500.0, 540], [0, 0, 1]]))


# ---------------------------------------------------------------------------------- table, targets, plot


def _payload(quick: bool = False, device: str = "NVIDIA H200", budget: int = 30_000,
             ff: Optional[dict[int, dict[str, float]]] = None) -> dict[str, Any]:
    """A time-to-quality result at 8, 64 and 128 views; ``ff`` changes ff3r's points per view count."""
    rows = []
    for views in (8, 64, 128):
        rows += _ff(views, budget, **(ff or {}).get(views, {})) + _sf(views, budget)
    return {"benchmark": "vs_splatfacto", "command": "python -m benchmarks.vs_splatfacto", "commit": "abc1234",
            "date": "2026-12-01T10:00:00Z", "machine": {"device": device, "torch": "2.11.0", "gsplat": "1.4.0",
                                                         "cpus": 16},
            "quick": quick, "mode": "quick" if quick else "full", "rows": rows, "summary": summarize(rows),
            "render_fps": [{"method": "ff3r", "scene": "generated-seed0", "views": 64, "gaussians": 150_000,
                            "resolution": "1920x1080", "channels": 11, "fps": 500.0}]}


def _section(mr: Any, tmp_path: Path, payload: dict[str, Any], name: str = "vs_splatfacto.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return mr.section_markdown(mr.load_result(path), tmp_path / "plots", tmp_path)


def test_section_tables_targets_and_plot(mr: Any, tmp_path: Path) -> None:
    md = _section(mr, tmp_path, _payload())
    assert "### FF3R vs splatfacto (`vs_splatfacto.json`)" in md and "| scene |" not in md  # one scene
    header = next(line for line in md.splitlines() if line.startswith("| views | method |"))
    assert "PSNR by 1 s" in header and "PSNR by 300 s" in header and "PSNR by 1000 s" not in header and "LPIPS" not in header
    # PSNR by 1, 3, 10, 30, 100, 300 s: the last point at or before each budget.
    assert "| 64 | ff3r | 4 | 25.00 | 25.00 | 28.00 | 31.60 | 31.60 | 32.50 | 30,000 | 290 | 32.50 |" in md
    assert "| 64 | splatfacto | 4 | – | – | 20.00 | 20.00 | 30.00 | 32.00 | 30,000 | 300 | 32.00 |" in md
    assert "✅ met: 64 views: ff3r reaches 31.50 dB (splatfacto's final 32.00 − 0.5) at 20 s vs splatfacto's 300 s: 15× ≥ 10×" in md
    assert "✅ met: 128 views: ff3r reaches" in md and ": 8 views: ff3r reaches" not in md  # 8 views: no speed-up target
    assert "✅ met: ff3r's PSNR ≥ splatfacto's (interpolated in time)" in md and "64 views ✅ worst +0.50 dB at 300 s" in md
    assert "✅ met: final PSNR ff3r ≥ splatfacto: 8 views ✅ 32.50 vs 32.00 dB" in md
    assert "✅ met: final Gaussians ff3r ≤ splatfacto" in md and mr.MISSED not in md
    assert "| 64 | 32.00 dB at 300 s | 20 s (step 1,000) | ✅ 15× | ✅ worst +0.50 dB at 300 s |" in md
    assert "| 8 | 32.00 dB at 300 s | 20 s (step 1,000) | 15× | ✅" in md  # no speed-up target at 8 views
    assert "| ff3r | 64 | 150,000 | 1920x1080 | 11 | 500.0 |" in md
    assert (tmp_path / "plots" / "vs_splatfacto.png").read_bytes().startswith(PNG_MAGIC)
    missed = _section(mr, tmp_path, _payload(ff={64: {"p1000": 31.0}, 128: {"p250": 19.0, "gaussians": 300_000}}))
    assert "❌ missed: 64 views: ff3r reaches 31.50 dB" in missed and "1.03× ≥ 10×" in missed
    assert "❌ missed: ff3r's PSNR ≥ splatfacto's" in missed and "128 views ❌ worst -1.00 dB at 5 s" in missed
    assert "❌ missed: final Gaussians ff3r ≤ splatfacto" in missed and "✅ met: final PSNR" in missed
    never = _section(mr, tmp_path, _payload(ff={128: {"p1000": 31.0, "p30k": 31.4}}))
    assert "❌ missed: 128 views: ff3r never within 0.5 dB of splatfacto's final 32.00 dB (final 31.40 dB" in never
    assert "| 128 | 32.00 dB at 300 s | never (final 31.40 dB) | ❌ – |" in never


def test_quick_and_cpu_results_are_not_judged(mr: Any, tmp_path: Path) -> None:
    quick = _section(mr, tmp_path, _payload(quick=True, budget=3000), "vs_splatfacto_quick.json")
    assert "**quick run**" in quick and "✅ met" not in quick and "❌ missed" not in quick
    assert quick.count("➖ not checked") == 5 and "(quick run: 3,000 steps; the targets are for 30k)" in quick
    assert (tmp_path / "plots" / "vs_splatfacto_quick.png").read_bytes().startswith(PNG_MAGIC)
    cpu = _section(mr, tmp_path, _payload(device="cpu"))
    assert cpu.count("➖ not checked") == 5 and "measured on CPU" in cpu
    only_ff = _payload()
    only_ff["rows"] = [r for r in only_ff["rows"] if r["method"] == "ff3r"]
    only_ff["summary"] = summarize(only_ff["rows"])
    md = _section(mr, tmp_path, only_ff)
    assert "➖ not checked: no view count with both methods" in md and "Time-to-quality checks" not in md


def test_make_results_renders_new_files_and_skips_old_shape(mr: Any, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    results, readme = tmp_path / "results", tmp_path / "README.md"
    results.mkdir()
    readme.write_text(f"# x\n\n{mr.START}\n{mr.END}\n")
    argv = ["--results-dir", str(results), "--plots-dir", str(tmp_path / "p"), "--readme", str(readme)]
    old = {"benchmark": "vs_splatfacto", "command": "c", "machine": {}, "quick": False,
           "rows": [{"method": "splatfacto-30k", "views": 64, "seconds": 300.0, "psnr": 32.0}]}
    (results / "vs_splatfacto.json").write_text(json.dumps(old))
    assert mr.main(argv) == 0
    assert "No results yet." in readme.read_text()
    err = capsys.readouterr().err
    assert "skipping" in err and "vs_splatfacto.json" in err and "old one-row-per-method shape" in err
    with pytest.raises(ValueError, match="old one-row-per-method shape"):
        mr.section_markdown(mr.load_result(results / "vs_splatfacto.json"), tmp_path / "p", tmp_path)
    (results / "vs_splatfacto.json").write_text(json.dumps(_payload()))
    assert mr.main(argv) == 0
    text = readme.read_text()
    assert "### FF3R vs splatfacto" in text and "Time-to-quality checks" in text
    assert mr.main([*argv, "--check"]) == 0  # up to date


# ------------------------------------------------------------------------------------------------ GPU


@pytest.mark.gpu
def test_gpu_both_methods_tiny_budget(bench: Any, tmp_path: Path) -> None:
    out = tmp_path / "vs.json"
    bench.main(["--views", "8", "--resolution", "64", "--steps", "200", "--eval-steps", "50", "100",
                "--fps-resolutions", "64x64", "--fps-repeats", "2", "--out", str(out), "--plots-dir", str(tmp_path),
                "--cache-dir", str(tmp_path / "scenes"), "--runs-dir", str(tmp_path / "runs")])
    data = json.loads(out.read_text())
    steps = {m: [r["step"] for r in data["rows"] if r["method"] == m] for m in ("ff3r", "splatfacto")}
    # step 0: ff3r's feedforward result, splatfacto's initialisation (measured on an H200: both rise from there)
    assert steps == {"ff3r": [0, 50, 100, 200], "splatfacto": [0, 50, 100, 200]}
    for r in data["rows"]:
        assert r["peak_gb"] > 0 and r["gaussians"] > 0 and math.isfinite(r["psnr"]) and r["seconds"] > 0
    for m in ("ff3r", "splatfacto"):
        psnr = {r["step"]: r["psnr"] for r in data["rows"] if r["method"] == m}
        assert psnr[200] > psnr[0] + 1.0, (m, psnr)
    (case,) = data["summary"]["cases"]
    assert case["speedup_met"] is not None and case["ahead_met"] is not None
    assert {r["method"] for r in data["render_fps"]} == {"ff3r", "splatfacto"}


def test_warm_up_runs_the_methods_in_reverse_so_the_first_timed_run_follows_its_own(tmp_path, monkeypatch):
    """The method timed first is warmed up last (a run straight after another method's warm-up paid a one-off)."""
    bench = vs_splatfacto
    order: list[str] = []
    monkeypatch.setattr(vs, "quiet_trainer_config", lambda cfg, *a, **k: cfg)
    monkeypatch.setattr(vs, "ff3r_config", lambda *a, **k: "ff3r")
    monkeypatch.setattr(vs, "splatfacto_config", lambda steps: "splatfacto")

    class Built:
        def __init__(self, cfg: str) -> None:
            self.trainer = argparse.Namespace(train=lambda: order.append(cfg))
            self.total_seconds, self.data_seconds = 1.0, 0.5

    monkeypatch.setattr(vs, "build_trainer", Built)
    args = argparse.Namespace(device="cpu", methods=["ff3r", "splatfacto"], runs_dir=tmp_path, steps=30_000,
                              ff3r_method="ff3r", weights=None, ff3r_image_size=None)
    bench.warm_up(args, tmp_path)
    assert order == ["splatfacto", "ff3r"]
    args.methods = ["splatfacto"]
    bench.warm_up(args, tmp_path)
    assert order[2:] == ["splatfacto"]
