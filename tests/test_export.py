"""Vectorised 3DGS PLY export with semantic features, the sidecar, ff3r-export and ff3r-query."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from _commands import run_command

from ff3r_ns.core.checkpoint import TeacherSettings
from ff3r_ns.core.gaussians import Gaussians
from ff3r_ns.export.ply import LOW_OPACITY_LOGIT, SplatArrays, property_names, read_splat_ply, write_splat_ply
from ff3r_ns.export.sidecar import SemanticSidecar, UnknownQueryError, sidecar_path

CLASSES = ["unlabeled", "wall", "floor", "ceiling", "chair", "table", "sofa", "bed", "other"]


def random_splat(n: int, sh_degree: int, feature_dim: int, seed: int = 0) -> SplatArrays:
    g = Gaussians.random(n, feature_dim=feature_dim, sh_degree=sh_degree, generator=torch.Generator().manual_seed(seed))
    return SplatArrays.from_gaussians(g)


def header_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    end = data.index(b"end_header\n")
    return data[:end].decode().splitlines()


def body(path: Path) -> bytes:
    data = path.read_bytes()
    return data[data.index(b"end_header\n") + len(b"end_header\n") :]


def test_round_trip_is_exact_and_f_rest_is_channel_major(tmp_path):
    splat = random_splat(50, sh_degree=2, feature_dim=5)
    stats = write_splat_ply(tmp_path / "a.ply", splat)
    assert (stats.written, stats.dropped_nonfinite, stats.dropped_low_opacity) == (50, 0, 0)
    back = read_splat_ply(tmp_path / "a.ply")
    for name in ("means", "sh_dc", "sh_rest", "opacity_logits", "log_scales", "quats", "sem_features"):
        np.testing.assert_array_equal(getattr(back, name), getattr(splat, name), err_msg=name)

    from plyfile import PlyData

    v = PlyData.read(str(tmp_path / "a.ply"))["vertex"]
    assert list(v.data.dtype.names) == property_names(8, 5)
    assert all(v.data.dtype[k] == np.dtype("<f4") for k in v.data.dtype.names)
    # Inria order: f_rest_i for i < K-1 are all red coefficients (nerfstudio's features_rest[:, i, 0]).
    np.testing.assert_array_equal(v["f_rest_0"], splat.sh_rest[:, 0, 0])
    np.testing.assert_array_equal(v["f_rest_1"], splat.sh_rest[:, 1, 0])
    np.testing.assert_array_equal(v["f_rest_8"], splat.sh_rest[:, 0, 1])
    np.testing.assert_array_equal(v["f_sem_4"], splat.sem_features[:, 4])
    np.testing.assert_array_equal(v["nx"], 0.0)


def test_stored_conventions_invert_activation():
    g = Gaussians.random(20, feature_dim=3, sh_degree=1, generator=torch.Generator().manual_seed(1))
    back = SplatArrays.from_gaussians(g).to_gaussians()
    torch.testing.assert_close(back.opacities, g.opacities, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(back.scales, g.scales, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(back.quats, torch.nn.functional.normalize(g.quats, dim=-1))
    torch.testing.assert_close(back.sh, g.sh)
    torch.testing.assert_close(back.features, g.features)


def _nerfstudio_map(splat: SplatArrays) -> "OrderedDict[str, np.ndarray]":
    """The property dict ``ns-export gaussian-splat`` builds (nerfstudio 1.1.5, exporter.py), same slicing."""
    n = splat.num
    m: OrderedDict[str, np.ndarray] = OrderedDict()
    for i, k in enumerate("xyz"):
        m[k] = splat.means[:, i]
    for k in ("nx", "ny", "nz"):
        m[k] = np.zeros(n, dtype=np.float32)
    for i in range(3):
        m[f"f_dc_{i}"] = splat.sh_dc[:, i, None]
    rest = torch.from_numpy(splat.sh_rest).transpose(1, 2).contiguous().numpy().reshape((n, -1))
    for i in range(rest.shape[-1]):
        m[f"f_rest_{i}"] = rest[:, i, None]
    m["opacity"] = splat.opacity_logits[:, None]
    for i in range(3):
        m[f"scale_{i}"] = splat.log_scales[:, i, None]
    for i in range(4):
        m[f"rot_{i}"] = splat.quats[:, i, None]
    return m


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_byte_compatible_with_nerfstudio_writer(tmp_path, sh_degree):
    from nerfstudio.scripts.exporter import ExportGaussianSplat

    splat = random_splat(40, sh_degree=sh_degree, feature_dim=0, seed=sh_degree)
    ExportGaussianSplat.write_ply(str(tmp_path / "ns.ply"), splat.num, _nerfstudio_map(splat))
    write_splat_ply(tmp_path / "ours.ply", splat)
    ns_props = [line for line in header_lines(tmp_path / "ns.ply") if line.startswith(("property", "element", "format"))]
    our_props = [line for line in header_lines(tmp_path / "ours.ply") if line.startswith(("property", "element", "format"))]
    assert our_props == ns_props
    assert body(tmp_path / "ours.ply") == body(tmp_path / "ns.ply")

    # With semantic features the standard part of every vertex is unchanged, the features follow it.
    sem = SplatArrays(**{**splat.__dict__, "sem_features": np.arange(40 * 4, dtype=np.float32).reshape(40, 4)})
    write_splat_ply(tmp_path / "sem.ply", sem)
    p = len(ns_props) - 2
    ours = np.frombuffer(body(tmp_path / "sem.ply"), dtype="<f4").reshape(40, p + 4)
    ns = np.frombuffer(body(tmp_path / "ns.ply"), dtype="<f4").reshape(40, p)
    np.testing.assert_array_equal(ours[:, :p], ns)
    np.testing.assert_array_equal(ours[:, p:], sem.sem_features)


def test_low_opacity_dropped_like_nerfstudio_only_when_asked(tmp_path):
    splat = random_splat(10, sh_degree=0, feature_dim=2)
    splat.opacity_logits[[2, 7]] = LOW_OPACITY_LOGIT - 1.0
    assert write_splat_ply(tmp_path / "all.ply", splat).written == 10
    stats = write_splat_ply(tmp_path / "hi.ply", splat, min_opacity_logit=LOW_OPACITY_LOGIT)
    assert (stats.written, stats.dropped_low_opacity, stats.dropped_nonfinite) == (8, 2, 0)
    keep = np.ones(10, bool)
    keep[[2, 7]] = False
    np.testing.assert_array_equal(read_splat_ply(tmp_path / "hi.ply").means, splat.means[keep])


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"quats must be \(3, 4\)"):
        SplatArrays(np.zeros((3, 3)), np.zeros((3, 3)), np.zeros((3, 0, 3)), np.zeros(3), np.zeros((3, 3)), np.zeros((3, 3)))
    (tmp_path / "pts.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n")
    with pytest.raises(ValueError, match="missing properties"):
        read_splat_ply(tmp_path / "pts.ply")
    with pytest.raises(FileNotFoundError):
        read_splat_ply(tmp_path / "nope.ply")


# ---------------------------------------------------------------------------------------------- sidecar and query
def class_scene(tmp_path: Path, n_chair: int = 7, n_sofa: int = 11) -> tuple[Path, SemanticSidecar]:
    """A splat whose features decode exactly to noisy chair / sofa embeddings (identity decoder, F = D = 16)."""
    teacher = TeacherSettings(dim=16).build(CLASSES)
    emb = teacher.class_embeddings()
    gen = torch.Generator().manual_seed(3)
    feats = torch.cat([emb[4].expand(n_chair, 16), emb[6].expand(n_sofa, 16)]) + 0.05 * torch.randn(n_chair + n_sofa, 16, generator=gen)
    g = Gaussians.random(n_chair + n_sofa, feature_dim=16, generator=gen)
    g = Gaussians(g.means, g.quats, g.scales, g.opacities, g.sh, feats)
    side = SemanticSidecar(torch.eye(16), torch.zeros(16), CLASSES, emb, TeacherSettings(dim=16))
    ply = tmp_path / "splat.ply"
    write_splat_ply(ply, SplatArrays.from_gaussians(g))
    side.save(sidecar_path(ply))
    return ply, side


def test_sidecar_round_trip_and_query_variants(tmp_path):
    ply, side = class_scene(tmp_path)
    loaded = SemanticSidecar.load(sidecar_path(ply))
    torch.testing.assert_close(loaded.class_embeddings, side.class_embeddings, rtol=0, atol=0)
    assert loaded.classes == CLASSES and loaded.teacher == TeacherSettings(dim=16) and not loaded.random_decoder
    for text in ("chair", "a chair", "chairs", "A photo of a chair."):
        q = loaded.text_query(text)
        torch.testing.assert_close(q.embedding, side.class_embeddings[4])
        assert q.negatives.shape == (len(CLASSES) - 2, 16)  # every other class but "unlabeled" (never predicted)
    with pytest.raises(UnknownQueryError, match="'banana' is not one of the exported classes"):
        loaded.text_query("banana")
    with pytest.raises(ValueError, match="decoder expects 16"):
        loaded.decode(torch.zeros(2, 8))


def test_query_selects_exactly_the_class_and_writes_queryable_subset(tmp_path):
    from ff3r_ns.export.cli import query_ply

    ply, _ = class_scene(tmp_path)
    result = query_ply(ply, "chairs", out=tmp_path / "sub" / "chairs.ply")
    assert (result.matched, result.total) == (7, 18)
    assert bool((result.relevancy[:7] > 0.9).all()) and bool((result.relevancy[7:] < 0.1).all())
    sub = read_splat_ply(tmp_path / "sub" / "chairs.ply")
    np.testing.assert_array_equal(sub.means, read_splat_ply(ply).means[:7])
    again = query_ply(tmp_path / "sub" / "chairs.ply", "sofa")  # its sidecar was copied next to it
    assert again.matched == 0 and again.out is None


def test_query_cli_prints_count_and_fails_cleanly(tmp_path, capsys):
    from ff3r_ns.export.cli import entrypoint_query

    ply, _ = class_scene(tmp_path)
    entrypoint_query([str(ply), "a sofa", "--threshold", "0.6"])
    out = capsys.readouterr().out
    assert "11 of 18 Gaussians match 'a sofa' (relevancy > 0.6)" in out
    assert (tmp_path / "splat_a_sofa.ply").is_file() and (tmp_path / "splat_a_sofa.ff3r.pt").is_file()
    with pytest.raises(SystemExit, match="ff3r-query: error: 'lamp' is not one of the exported classes"):
        entrypoint_query([str(ply), "lamp"])
    with pytest.raises(SystemExit, match=r"threshold must be in \[0, 1\)"):
        entrypoint_query([str(ply), "chair", "--threshold", "1.5"])
    write_splat_ply(tmp_path / "plain.ply", random_splat(4, 0, 0))
    with pytest.raises(SystemExit, match="has no f_sem_"):
        entrypoint_query([str(tmp_path / "plain.ply"), "chair"])


# ---------------------------------------------------------------------------------------------- export from a model
def tiny_model(weights: Path | None = None):
    from nerfstudio.data.scene_box import SceneBox

    from ff3r_ns.core.network.config import FF3RConfig
    from ff3r_ns.core.reconstruct import NetworkSettings
    from ff3r_ns.nerfstudio.model import FF3RModelConfig

    net = NetworkSettings(architecture=FF3RConfig.tiny(), random_init=weights is None, weights=weights, image_size=56)
    config = FF3RModelConfig(network=net)
    model = config.setup(scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=2, metadata={})
    torch.manual_seed(0)
    model.reconstruct(torch.rand(2, 56, 56, 3), None)
    return model


def test_export_model_writes_gauss_params_and_random_sidecar(tmp_path):
    from ff3r_ns.export.cli import export_model

    model = tiny_model()
    p = model.gauss_params
    with torch.no_grad():
        p["opacities"][:3] = -10.0  # below 1/255: dropped as ns-export does
        p["means"][5, 0] = float("nan")  # non-finite: dropped and counted
    result = export_model(model, tmp_path / "out")
    n = p["means"].shape[0]
    assert (result.ply.written, result.ply.dropped_low_opacity, result.ply.dropped_nonfinite) == (n - 4, 3, 1)
    back = read_splat_ply(tmp_path / "out" / "splat.ply")
    keep = torch.ones(n, dtype=torch.bool)
    keep[[0, 1, 2, 5]] = False
    np.testing.assert_array_equal(back.means, p["means"][keep].detach().numpy())
    np.testing.assert_array_equal(back.log_scales, p["scales"][keep].detach().numpy())
    np.testing.assert_array_equal(back.sem_features, p["sem_features"][keep].detach().numpy())
    side = SemanticSidecar.load(result.sidecar)
    assert side.random_decoder and side.feature_dim == 8 and side.teacher_dim == 16 and side.classes == CLASSES
    # The decoder and embeddings the model saved (the viewer's), so ff3r-query agrees with the viewer.
    torch.testing.assert_close(side.decoder_weight, model.semantics.decoder.proj.weight.detach(), rtol=0, atol=0)
    torch.testing.assert_close(side.class_embeddings, model.semantics.class_embeddings, rtol=0, atol=0)
    feats = p["sem_features"][keep][:50].detach()
    rel = query_relevancy(side, feats, "sofa")
    torch.testing.assert_close(rel, model.semantics.relevancy(feats, "sofa"))


def query_relevancy(side: SemanticSidecar, feats: torch.Tensor, text: str) -> torch.Tensor:
    from ff3r_ns.core.queries import relevancy

    return relevancy(side.decode(feats), side.text_query(text))


def test_random_init_fallback_sidecar_is_seeded_and_flagged():
    from ff3r_ns.core.network.config import FF3RConfig
    from ff3r_ns.core.reconstruct import NetworkSettings
    from ff3r_ns.export.cli import sidecar_for_network

    settings = NetworkSettings(architecture=FF3RConfig.tiny(), random_init=True)
    a, b = sidecar_for_network(settings), sidecar_for_network(settings, classes=["unlabeled", "lamp", "desk"])
    assert a.random_decoder and a.classes == CLASSES and "CLASSES" in a.source["classes"]
    torch.testing.assert_close(a.decoder_weight, b.decoder_weight, rtol=0, atol=0)  # seeded
    assert b.classes == ["unlabeled", "lamp", "desk"] and b.class_embeddings.shape == (3, 16)
    with pytest.raises(ValueError, match="neither network.weights nor network.random-init"):
        sidecar_for_network(NetworkSettings(architecture=FF3RConfig.tiny()))


def test_export_sidecar_takes_decoder_and_teacher_from_checkpoint(tmp_path):
    from ff3r_ns.core.checkpoint import FF3RCheckpoint, save_checkpoint
    from ff3r_ns.core.network.config import FF3RConfig
    from ff3r_ns.core.network.model import FF3R
    from ff3r_ns.core.reconstruct import NetworkSettings
    from ff3r_ns.export.cli import sidecar_for_network

    torch.manual_seed(1)
    net = FF3R(FF3RConfig.tiny())
    teacher = TeacherSettings(dim=16, seed=5)
    path = save_checkpoint(tmp_path / "net.pt", FF3RCheckpoint(net.state_dict(), FF3RConfig.tiny(), 56, teacher, ["wall", "lamp"]))
    side = sidecar_for_network(NetworkSettings(architecture=FF3RConfig.tiny(), weights=path))
    torch.testing.assert_close(side.decoder_weight, net.feature_decoder.proj.weight.detach(), rtol=0, atol=0)
    torch.testing.assert_close(side.decoder_bias, net.feature_decoder.proj.bias.detach(), rtol=0, atol=0)
    assert side.classes == ["wall", "lamp"] and side.teacher == teacher and not side.random_decoder
    torch.testing.assert_close(side.class_embeddings, teacher.build(["wall", "lamp"]).class_embeddings())
    feats = torch.randn(4, 8)
    torch.testing.assert_close(side.decode(feats), net.feature_decoder(feats).detach())


@pytest.mark.slow
def test_ff3r_export_and_query_commands_on_a_trained_run(trained_run, tmp_path):
    """ff3r-export -> ff3r-query, as subprocesses, on the shared ``ns-train ff3r-tiny`` run (tests/conftest.py)."""
    printed = run_command("ff3r-export", "--load-config", str(trained_run.config), "--output-dir", str(tmp_path / "export"))
    assert "splat.ply" in printed and (tmp_path / "export" / "splat.ff3r.pt").is_file()
    splat = read_splat_ply(tmp_path / "export" / "splat.ply")
    assert splat.num > 1000 and splat.feature_dim == 8 and splat.finite_mask().all()
    printed = run_command("ff3r-query", str(tmp_path / "export" / "splat.ply"), "chair", "--threshold", "0.0")
    assert f"{splat.num:,} of {splat.num:,} Gaussians match 'chair'" in printed
