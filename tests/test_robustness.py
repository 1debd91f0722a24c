"""Bad inputs fail early and clearly; nothing bad is written; the dataset folder is never touched (issue 8)."""

from __future__ import annotations

import hashlib
import json
import logging
import resource
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ff3r_ns.core.gaussians import Gaussians
from ff3r_ns.core.memory import (
    FLAG_HEAD_CHUNK, FLAG_IMAGE_SIZE, ForwardMemoryError, check_fits, count_parameters, estimate_forward_memory,
    forward_memory_breakdown,
)
from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.reconstruct import NetworkSettings, run_network
from ff3r_ns.export.ply import SplatArrays, read_splat_ply, write_splat_ply

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "network.json"


def tiny_settings(**kw) -> NetworkSettings:
    return NetworkSettings(architecture=FF3RConfig.tiny(), random_init=True, image_size=56, **kw)


# ---------------------------------------------------------------------------------------------- non-finite Gaussians
def test_nonfinite_gaussians_are_removed_counted_logged_never_written(tmp_path, caplog):
    g = Gaussians.random(12, feature_dim=4, sh_degree=1, generator=torch.Generator().manual_seed(0))
    splat = SplatArrays.from_gaussians(g)
    splat.means[1, 2] = np.nan
    splat.sem_features[4, 0] = np.inf
    splat.sh_rest[6, 2, 1] = -np.inf
    splat.opacity_logits[9] = np.nan
    with caplog.at_level(logging.WARNING, logger="ff3r_ns.export.ply"):
        stats = write_splat_ply(tmp_path / "s.ply", splat)
    assert (stats.written, stats.dropped_nonfinite) == (8, 4)
    assert "removed 4 Gaussians with NaN/inf" in caplog.text
    back = read_splat_ply(tmp_path / "s.ply")
    assert back.finite_mask().all()
    keep = np.setdiff1d(np.arange(12), [1, 4, 6, 9])
    np.testing.assert_array_equal(back.means, splat.means[keep])
    np.testing.assert_array_equal(back.sem_features, splat.sem_features[keep])


def test_all_nonfinite_writes_an_empty_valid_ply(tmp_path):
    splat = SplatArrays.from_gaussians(Gaussians.random(3, feature_dim=2))
    splat.quats[:] = np.nan
    stats = write_splat_ply(tmp_path / "e.ply", splat)
    assert (stats.written, stats.dropped_nonfinite) == (0, 3)
    assert read_splat_ply(tmp_path / "e.ply").num == 0


# ---------------------------------------------------------------------------------------------- view counts
def test_one_input_image_reconstructs():
    torch.manual_seed(0)
    rec = run_network(tiny_settings(), torch.rand(1, 40, 50, 3))
    assert rec.cameras.world_to_cam.shape == (1, 4, 4)
    torch.testing.assert_close(rec.cameras.world_to_cam[0], torch.eye(4))  # the single view is the reference frame
    assert (rec.cameras.width, rec.cameras.height) == (50, 40)
    assert rec.gaussians.num == rec.gaussians_predicted == 42 * 56
    assert bool(rec.gaussians.finite_mask().all())


def test_zero_input_images_give_a_clear_error():
    # Needs a guard at the top of core/reconstruct.run_network (see the helper's report to the lead).
    with pytest.raises(ValueError, match="at least one image"):
        run_network(tiny_settings(), torch.rand(0, 40, 50, 3))


def test_zero_frames_in_dataset_give_a_data_error(tmp_path):
    from ff3r_ns.nerfstudio.datamanager import DataError, check_nerfstudio_data

    (tmp_path / "transforms.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(DataError, match="lists no frames"):
        check_nerfstudio_data(tmp_path)


# ---------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_from_a_different_config_names_the_mismatch(tmp_path):
    from ff3r_ns.core.checkpoint import FF3RCheckpoint, save_checkpoint
    from ff3r_ns.core.network.model import FF3R
    from ff3r_ns.core.reconstruct import build_network

    tiny = FF3RConfig.tiny()
    saved = FF3R(tiny).state_dict()
    path = save_checkpoint(tmp_path / "tiny.pt", FF3RCheckpoint(saved, tiny))

    def loads_the_saved_weights(settings: NetworkSettings) -> bool:
        loaded = build_network(settings).state_dict()
        return loaded.keys() == saved.keys() and all(torch.equal(loaded[k], v) for k, v in saved.items())

    assert loads_the_saved_weights(NetworkSettings(architecture=FF3RConfig.tiny(), weights=path))
    wider = replace(tiny, heads=replace(tiny.heads, feature_dim=16))
    with pytest.raises(ValueError, match=r"different network: heads\.feature_dim: configured 16, checkpoint has 8"):
        build_network(NetworkSettings(architecture=wider, weights=path))
    deeper = replace(tiny, geometry=replace(tiny.geometry, depth=3))
    with pytest.raises(ValueError, match=r"geometry\.depth: configured 3, checkpoint has 2"):
        build_network(NetworkSettings(architecture=deeper, weights=path))
    # chunking and precision change neither shapes nor meaning: the same weights load
    chunked = replace(tiny, bf16=True, geometry=replace(tiny.geometry, frame_chunk_size=64),
                      heads=replace(tiny.heads, frames_chunk_size=32))
    assert loads_the_saved_weights(NetworkSettings(architecture=chunked, weights=path))


# ---------------------------------------------------------------------------------------------- memory estimate
def measured_rows() -> list[dict]:
    rows = json.loads(RESULTS.read_text())["rows"]
    return [r for r in rows if r["status"] == "ok" and r["peak_gb"] is not None and r["config"] in ("base", "vggt-1b")]


PRESETS = {"base": FF3RConfig.base, "vggt-1b": FF3RConfig.vggt_1b}


def test_parameter_count_without_allocation_matches_the_benchmark():
    rows = measured_rows()
    assert rows, f"no measured rows in {RESULTS}"
    for name in {r["config"] for r in rows}:
        params_m = next(r["params_m"] for r in rows if r["config"] == name)
        assert count_parameters(PRESETS[name]()) / 1e6 == pytest.approx(params_m, abs=0.05), name


def test_memory_estimate_within_25_percent_of_measured_h100_peaks():
    for r in measured_rows():
        width, height = map(int, r["resolution"].split("x"))
        dtype = torch.bfloat16 if r["dtype"] == "bf16" else torch.float32
        est = estimate_forward_memory(PRESETS[r["config"]](), r["views"], height, width, dtype) / 1e9
        assert est == pytest.approx(r["peak_gb"], rel=0.25), r


def test_memory_estimate_is_linear_in_views_beyond_the_head_chunk():
    cfg = FF3RConfig.base()
    m = [estimate_forward_memory(cfg, s, 336, 448) for s in (16, 32, 64)]
    assert m[2] - m[1] == 2 * (m[1] - m[0]) and m[1] > m[0] > 0
    assert estimate_forward_memory(cfg, 16, 336, 448, torch.float32) > m[0]  # fp32 tokens cost twice bf16's


def test_absurd_view_count_is_refused_before_allocating():
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    est = forward_memory_breakdown(FF3RConfig.vggt_1b(), views=100_000, height=336, width=448)
    with pytest.raises(ForwardMemoryError) as info:
        check_fits(est, available_bytes=80 * 10**9)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 500, f"estimating grew the process by {grown_mb:.0f} MB"  # the real weights alone are 5.3 GB
    msg = str(info.value)
    assert f"~{est.total / 1e9:.2f} GB for 100000 views at 448x336" in msg and "80.00 GB is available" in msg
    assert FLAG_IMAGE_SIZE in msg and FLAG_HEAD_CHUNK in msg
    check_fits(estimate_forward_memory(FF3RConfig.vggt_1b(), 64, 336, 448), available_bytes=80 * 10**9)  # fits: no error
    with pytest.raises(ValueError, match="views must be >= 1"):
        estimate_forward_memory(FF3RConfig.tiny(), 0, 56, 56)


# ---------------------------------------------------------------------------------------------- transforms.json fuzz
_json_scalars = st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8)
_json = st.recursive(_json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8)
_file_path = st.sampled_from(["img.png", "./img.png", "missing.png", "bad.png", "", "img.png/x"]) | _json
_size = st.sampled_from([8, 6, 0, -1]) | _json
_frame = st.fixed_dictionaries(
    {}, optional={"file_path": _file_path, "w": _size, "h": _size, "transform_matrix": _json}
) | _json  # fmt: skip
_meta = st.fixed_dictionaries({}, optional={"frames": st.lists(_frame, max_size=3) | _json, "w": _size, "h": _size}) | _json


def _dataset(meta) -> Path:
    root = Path(tempfile.mkdtemp(prefix="ff3r_fuzz_"))
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "img.png")  # an 8x6 image
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meta=_meta)
def test_transforms_json_fuzz_accepts_or_raises_data_error(meta):
    from ff3r_ns.nerfstudio.datamanager import DataError, check_nerfstudio_data

    root = _dataset(meta)
    try:
        check_nerfstudio_data(root)
    except DataError:
        pass  # any other exception type fails the test, with hypothesis's minimal example


def test_transforms_json_not_json_is_a_data_error(tmp_path):
    from ff3r_ns.nerfstudio.datamanager import DataError, check_nerfstudio_data

    (tmp_path / "transforms.json").write_bytes(b"{\"frames\": [\xff")
    with pytest.raises(DataError):
        check_nerfstudio_data(tmp_path)


# ---------------------------------------------------------------------------------------------- dataset is read-only
def folder_digest(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: relative path -> (sha256, mtime_ns); directories too (mtime only)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir", p.stat().st_mtime_ns)
    out["."] = ("dir", root.stat().st_mtime_ns)
    return out


def test_dataset_folder_is_not_modified_by_reconstruction_and_export(tmp_path):
    from nerfstudio.data.scene_box import SceneBox

    from ff3r_ns.data.generate import SceneSpec, generate_scene, write_scene
    from ff3r_ns.export.cli import export_model, query_ply
    from ff3r_ns.nerfstudio.datamanager import FF3RDataManagerConfig
    from ff3r_ns.nerfstudio.model import FF3RModelConfig

    spec = SceneSpec(seed=1, num_views=3, width=56, height=42, shadows=False)
    data = write_scene(generate_scene(spec), tmp_path / "scene", spec, num_points=200)
    before = folder_digest(data)

    dm = FF3RDataManagerConfig(data=data).setup(device="cpu", test_mode="val")
    images = dm.training_images()
    model = FF3RModelConfig(network=tiny_settings()).setup(
        scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=images.shape[0], metadata={}
    )
    torch.manual_seed(0)
    model.reconstruct(images, dm.train_dataparser_outputs.cameras)
    result = export_model(model, tmp_path / "export")
    query_ply(result.ply.path, "wall", threshold=0.0)

    assert folder_digest(data) == before
    assert result.ply.written > 0 and result.ply.path.parent == tmp_path / "export"


@pytest.mark.gpu
@pytest.mark.parametrize("views", [8, 32])
def test_memory_estimate_matches_measured_peak_on_gpu(views):
    """The estimate against ``torch.cuda.max_memory_allocated`` of a real forward (base preset, random weights)."""
    from ff3r_ns.core.network.model import FF3R

    cfg = FF3RConfig.base()
    cfg = replace(cfg, semantic=replace(cfg.semantic, weights="random", checkpoint=None, pretrained=None))
    import gc

    gc.collect()
    torch.cuda.empty_cache()
    # tensors that earlier tests of this process still hold are not this forward's: count from them
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    model = FF3R(cfg).cuda().eval()
    with torch.inference_mode():
        model(torch.rand(views, 3, 336, 448, device="cuda"))
    peak = torch.cuda.max_memory_allocated() - before
    del model
    torch.cuda.empty_cache()
    assert estimate_forward_memory(cfg, views, 336, 448) == pytest.approx(peak, rel=0.25)
