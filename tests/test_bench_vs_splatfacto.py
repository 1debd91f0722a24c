"""scripts/bench_vs_splatfacto.py: a CPU run (ff3r only), the offline splatfacto glue, the result table and plot."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ff3r_ns import bench_vs_splatfacto as vs

from _scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


_load_script = load_script


@pytest.fixture(scope="module")
def bench() -> Any:
    return _load_script("bench_vs_splatfacto")


@pytest.fixture(scope="module")
def mr() -> Any:
    return _load_script("make_results")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-frame 48x48 generated room (5 training views + 1 held out) with 300 points."""
    from ff3r_ns.data.generate import SceneSpec, generate_scene, write_scene

    spec = SceneSpec(seed=3, num_views=6, width=48, height=48)
    out = tmp_path_factory.mktemp("scene") / "room"
    write_scene(generate_scene(spec), out, spec, num_points=300)
    return out


# ------------------------------------------------------------------------------------------ end to end


def test_cpu_quick_run_writes_labelled_result(bench: Any, tmp_path: Path) -> None:
    out = tmp_path / "results" / "vs_splatfacto.json"
    plots = tmp_path / "plots"
    bench.main(["--quick", "--device", "cpu", "--skip-splatfacto", "--views", "5", "--resolution", "48",
                "--refine-steps", "0", "--ff3r-image-size", "56", "--fps-resolutions", "16x16", "--fps-repeats", "1",
                "--no-warmup", "--out", str(out), "--plots-dir", str(plots), "--cache-dir", str(tmp_path / "scenes"),
                "--runs-dir", str(tmp_path / "runs")])
    data = json.loads(out.read_text())
    assert data["benchmark"] == "vs_splatfacto" and data["quick"] is True and data["mode"] == "quick"
    assert data["notes"].startswith("QUICK RUN") and {"device", "torch", "gsplat"} <= set(data["machine"])
    assert "seconds" in data["definitions"] and data["settings"]["refine_steps"] == 0
    (row,) = data["rows"]
    assert (row["method"], row["views"], row["eval_views"], row["iterations"]) == ("ff3r", 5, 1, 0)
    stages = ("data_seconds", "setup_seconds", "forward_seconds", "merge_seconds", "optimize_seconds")
    for key in (*stages, "seconds", "psnr", "ssim", "eval_seconds", "eval_render_fps"):
        assert isinstance(row[key], float) and math.isfinite(row[key]) and row[key] >= 0, key
    assert row["seconds"] == pytest.approx(sum(row[k] for k in stages))
    assert 0 < row["gaussians"] <= row["gaussians_predicted"]
    assert row["peak_gb"] is None and row["speedup_vs_splatfacto_30k"] is None  # CPU; no splatfacto row
    assert row["eval_resolution"] == "48x48"
    fps = data["render_fps"]
    assert {(r["method"], r["resolution"]) for r in fps} == {("ff3r", "16x16")}
    assert sorted(r["channels"] for r in fps)[0] == 3 and all(r["fps"] > 0 for r in fps)
    md = out.with_suffix(".md").read_text()
    assert "**quick run**" in md and "| ff3r |" in md and "Rendering speed" in md
    assert (plots / "vs_splatfacto.png").read_bytes().startswith(PNG_MAGIC)


def test_append_keeps_rows_and_keys_it_does_not_write(bench: Any, tmp_path: Path) -> None:
    from ff3r_ns.benchmarks import machine_info

    out = tmp_path / "vs.json"
    old = {"benchmark": "vs_splatfacto", "machine": machine_info(), "mode": "full", "rows": [{"views": 64}],
           "render_fps": [], "command": "python first", "cold_start_rows": [{"method": "ff3r", "seconds": 3.9}]}
    out.write_text(json.dumps(old))
    import argparse

    previous = bench._previous(argparse.Namespace(append=True, out=out, mode="full"))
    assert previous["rows"] == [{"views": 64}] and previous["commands"] == ["python first"]
    assert previous["kept"] == {"cold_start_rows": old["cold_start_rows"]}
    with pytest.raises(SystemExit, match="quick run"):
        bench._previous(argparse.Namespace(append=True, out=out, mode="quick"))


def test_cuda_is_required_for_splatfacto(bench: Any) -> None:
    with pytest.raises(SystemExit, match="skip-splatfacto"):
        bench.resolve(bench.build_parser().parse_args(["--device", "cpu"]))


def test_presets_and_overrides(bench: Any) -> None:
    quick = bench.resolve(bench.build_parser().parse_args(["--quick", "--skip-splatfacto"]))
    assert (quick.views, quick.full_iters, quick.short_iters, quick.mode) == ([8, 64], 3000, 700, "quick")
    assert quick.fps_views == 64 and quick.fps_resolutions == [(512, 512), (1920, 1080)]
    args = bench.resolve(bench.build_parser().parse_args(
        ["--skip-splatfacto", "--views", "8", "16", "--splatfacto-iters", "2000", "--refine-steps", "7"]))
    assert (args.views, args.full_iters, args.short_iters, args.refine_steps, args.mode) == ([8, 16], 2000, 467, 7, "full")
    assert args.fps_views == 16
    with pytest.raises(SystemExit):
        bench.resolve(bench.build_parser().parse_args(["--skip-splatfacto", "--splatfacto-iters", "100", "200"]))


# ------------------------------------------------------------------------------------ helpers, configs


def test_frames_for_training_views_leave_exactly_that_many() -> None:
    for views in range(1, 300):
        m = vs.frames_for_training_views(views)
        assert m - math.ceil(m / vs.EVAL_INTERVAL) == views
        assert (m - 1) - math.ceil((m - 1) / vs.EVAL_INTERVAL) < views  # the smallest such count
    assert vs.frames_for_training_views(64) == 74


def test_speedups_are_splatfacto_seconds_over_ff3r_seconds() -> None:
    rows = [{"method": "ff3r", "scene": "a", "views": 8, "seconds": 2.0},
            {"method": "ff3r+refine", "scene": "a", "views": 8, "seconds": 4.0},
            {"method": "splatfacto-30k", "scene": "a", "views": 8, "seconds": 400.0},
            {"method": "splatfacto-7k", "scene": "a", "views": 8, "seconds": 100.0},
            {"method": "ff3r", "scene": "b", "views": 8, "seconds": 1.0}]
    vs.add_speedups(rows)
    assert (rows[0]["speedup_vs_splatfacto_30k"], rows[0]["speedup_vs_splatfacto_7k"]) == (200.0, 50.0)
    assert rows[1]["speedup_vs_splatfacto_30k"] == 100.0
    assert rows[4]["speedup_vs_splatfacto_30k"] is None and "speedup_vs_splatfacto_30k" not in rows[2]


def test_splatfacto_config_is_shipped_at_30k_and_compressed_otherwise() -> None:
    from nerfstudio.configs.method_configs import method_configs

    from ff3r_ns.nerfstudio.offline_splatfacto import OfflineSplatfactoModelConfig, PlyPointsNerfstudioDataParserConfig

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

    from ff3r_ns.core import metrics
    from ff3r_ns.nerfstudio.offline_splatfacto import OfflineSplatfactoModelConfig

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

    from ff3r_ns.nerfstudio.offline_splatfacto import knn_distances

    x = torch.rand(700, 3, generator=torch.Generator().manual_seed(0))
    d, i = knn_distances(x, 3, chunk=256)
    ref_d, ref_i = NearestNeighbors(n_neighbors=4).fit(x.numpy()).kneighbors(x.numpy())
    np.testing.assert_allclose(d, ref_d[:, 1:], rtol=1e-4, atol=1e-6)
    assert d.dtype == np.float32 and i.shape == (700, 3) and (i == ref_i[:, 1:]).mean() > 0.99


def test_camera_at_keeps_pose_and_horizontal_fov() -> None:
    from ff3r_ns.core.cameras import Cameras

    k = torch.tensor([[[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]]])
    cam = vs.camera_at(Cameras(torch.eye(4)[None], k, 128, 128), 1920, 1080)
    assert (cam.width, cam.height) == (1920, 1080)
    torch.testing.assert_close(cam.intrinsics[0], torch.tensor([[1500.0, 0, 960], [0, 1500.0, 540], [0, 0, 1]]))


# ---------------------------------------------------------------------------------- table, targets, plot


def _synthetic(quick: bool = False, psnr_refine: float = 24.5, ff3r_64: float = 1.0) -> dict[str, Any]:
    rows = []
    for views, sf_seconds, sf_gauss in ((8, 150.0, 200_000), (64, 240.0, 400_000), (128, 300.0, 500_000)):
        ff = ff3r_64 if views == 64 else 1.2
        rows += [
            {"method": "splatfacto-30k", "scene": "generated-seed0", "views": views, "iterations": 30_000,
             "seconds": sf_seconds, "data_seconds": 0.5, "setup_seconds": 1.0, "optimize_seconds": sf_seconds - 1.5,
             "peak_gb": 2.0, "gaussians": sf_gauss, "psnr": 25.0, "ssim": 0.8, "lpips": None},
            {"method": "splatfacto-7k", "scene": "generated-seed0", "views": views, "iterations": 7_000,
             "seconds": sf_seconds / 4, "peak_gb": 1.5, "gaussians": sf_gauss // 2, "psnr": 23.0, "ssim": 0.7, "lpips": None},
            {"method": "ff3r", "scene": "generated-seed0", "views": views, "iterations": 0, "seconds": ff,
             "data_seconds": 0.4, "setup_seconds": 0.3, "forward_seconds": 0.2, "merge_seconds": 0.1,
             "optimize_seconds": 0.0, "peak_gb": 1.0, "gaussians": 300_000, "psnr": 15.0, "ssim": 0.4, "lpips": None},
            {"method": "ff3r+refine", "scene": "generated-seed0", "views": views, "iterations": 300, "seconds": 6.0,
             "peak_gb": 1.2, "gaussians": 300_000, "psnr": psnr_refine, "ssim": 0.75, "lpips": None},
        ]
    vs.add_speedups(rows)
    fps = [{"method": "ff3r", "scene": "generated-seed0", "views": 64, "gaussians": 300_000, "resolution": r,
            "channels": c, "fps": 500.0} for r in ("512x512", "1920x1080") for c in (3, 11)]
    return {"benchmark": "vs_splatfacto", "command": "python scripts/bench_vs_splatfacto.py", "commit": "abc1234",
            "date": "2026-11-25T10:00:00Z", "machine": {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0",
                                                         "gsplat": "1.4.0", "cpus": 16},
            "quick": quick, "mode": "quick" if quick else "full", "rows": rows, "render_fps": fps}


def _section(mr: Any, tmp_path: Path, payload: dict[str, Any]) -> str:
    path = tmp_path / "vs_splatfacto.json"
    path.write_text(json.dumps(payload))
    return mr.section_markdown(mr.load_result(path), tmp_path / "plots", tmp_path)


def test_table_targets_and_plot_from_a_synthetic_result(mr: Any, tmp_path: Path) -> None:
    md = _section(mr, tmp_path, _synthetic())
    assert "### FF3R vs splatfacto (`vs_splatfacto.json`)" in md
    lines = [line for line in md.splitlines() if line.startswith("| 64 |")]
    assert [line.split(" | ")[1] for line in lines] == ["ff3r", "ff3r+refine", "splatfacto-7k", "splatfacto-30k"]
    assert "LPIPS" not in md and "| scene |" not in md  # no values / one scene: columns left out
    assert "✅ met: ff3r at 64 views: 240× faster" in md and "❌ missed: ff3r at 128 views: 250×" not in md
    assert "✅ met: ff3r+refine at 64 views: PSNR 24.50 vs 25.00 dB" in md
    assert "✅ met: 64 views: ff3r keeps 300,000 Gaussians after merging < splatfacto-30k's 400,000" in md
    assert "| ff3r | 64 | 300,000 | 1920x1080 | 11 | 500.0 |" in md
    assert (tmp_path / "plots" / "vs_splatfacto.png").read_bytes().startswith(PNG_MAGIC)
    missed = _section(mr, tmp_path, _synthetic(psnr_refine=23.0, ff3r_64=2.0))
    assert "❌ missed: ff3r at 64 views: 120× faster" in missed and "❌ missed: ff3r+refine at 64 views" in missed


def test_quick_results_are_not_judged_against_the_30k_targets(mr: Any, tmp_path: Path) -> None:
    payload = _synthetic(quick=True)
    for row in payload["rows"]:
        if row["method"] == "splatfacto-30k":
            row["iterations"] = 3000
    md = _section(mr, tmp_path, payload)
    assert "**quick run**" in md and "✅" not in md and "❌" not in md
    assert md.count("➖ not checked") == 4 and "splatfacto-30k ran 3,000 iterations" in md


def test_make_results_without_the_file_and_with_it(mr: Any, tmp_path: Path) -> None:
    results, readme = tmp_path / "results", tmp_path / "README.md"
    results.mkdir()
    readme.write_text(f"# x\n\n{mr.START}\n{mr.END}\n")
    assert mr.main(["--results-dir", str(results), "--plots-dir", str(tmp_path / "p"), "--readme", str(readme)]) == 0
    assert "No results yet." in readme.read_text()
    (results / "vs_splatfacto.json").write_text(json.dumps(_synthetic()))
    assert mr.main(["--results-dir", str(results), "--plots-dir", str(tmp_path / "p"), "--readme", str(readme)]) == 0
    assert "### FF3R vs splatfacto" in readme.read_text()


# ------------------------------------------------------------------------------------------------ GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_both_methods_tiny_budget(bench: Any, tmp_path: Path) -> None:
    out = tmp_path / "vs.json"
    bench.main(["--views", "8", "--resolution", "64", "--splatfacto-iters", "200", "50", "--refine-steps", "5",
                "--fps-resolutions", "64x64", "--fps-repeats", "2", "--out", str(out), "--plots-dir", str(tmp_path),
                "--cache-dir", str(tmp_path / "scenes"), "--runs-dir", str(tmp_path / "runs")])
    data = json.loads(out.read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"ff3r", "ff3r+refine", "splatfacto-7k", "splatfacto-30k"}
    assert rows["splatfacto-7k"]["iterations"] == 50 and rows["splatfacto-30k"]["iterations"] == 200
    for r in rows.values():
        assert r["peak_gb"] > 0 and r["gaussians"] > 0 and math.isfinite(r["psnr"]) and r["seconds"] > 0
    assert rows["ff3r"]["speedup_vs_splatfacto_30k"] > 0
    assert {r["method"] for r in data["render_fps"]} == {"ff3r", "splatfacto-30k"}
