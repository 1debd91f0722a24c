"""ff3r-pretrain-semantic: the stand-in semantic encoder learns the teacher's features, and ff3r-train builds the
network around the file it writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ff3r_ns.core.network.model import FF3R
from ff3r_ns.data.generate import SceneSpec, generate_scene, write_scene
from ff3r_ns.training import pretrain_semantic as ps
from ff3r_ns.training.config import TrainConfig

SMALL = ["--image-size", "56", "--width", "32", "--layers", "1", "--heads", "2", "--teacher.dim", "16",
         "--scenes-per-step", "2", "--views-per-scene", "4", "--warmup-steps", "5", "--log-every", "20"]


@pytest.fixture(scope="module")
def rooms(tmp_path_factory) -> Path:
    """Two training rooms (seeds 1000, 1001), 6 views of 56 px."""
    root = tmp_path_factory.mktemp("semantic_rooms")
    for seed in (1000, 1001):
        spec = SceneSpec(seed=seed, num_views=6, width=56, height=56, arc=0.3, shadows=False)
        write_scene(generate_scene(spec), root / f"room{seed}", spec, num_points=100)
    return root


@pytest.fixture(scope="module")
def tiny_init(tmp_path_factory) -> Path:
    """A tiny-preset network checkpoint (random one-layer CLIP, fusion blocks, no feature skip): the kind of
    earlier stage 2 that --init passes to the stand-in stage. Random weights, seeded."""
    from ff3r_ns.core.checkpoint import FF3RCheckpoint, TeacherSettings, save_checkpoint
    from ff3r_ns.core.network.config import FF3RConfig

    torch.manual_seed(0)
    arch = FF3RConfig.tiny()
    path = tmp_path_factory.mktemp("tiny_init") / "stage2.pt"
    return save_checkpoint(path, FF3RCheckpoint(FF3R(arch).state_dict(), arch, 84, TeacherSettings(), ["unlabeled", "wall"]))


def test_pretraining_learns_the_teacher_and_the_network_loads_it(rooms, tmp_path):
    """100 steps halve the loss and segment the rooms (through the nearest teacher class of the coarse 4x4 feature
    grid) far better than the untrained encoder; ff3r-train's --semantic-checkpoint then builds the network's encoder
    from the file's own architecture, frozen, with the trained weights (the same dense features)."""
    out = tmp_path / "semantic.pt"
    argv = ["--scenes", str(rooms), "--eval-scenes", str(rooms), "--out", str(out), "--steps", "100", *SMALL]
    meta = ps.main(argv)
    assert meta["first_loss"] > 0.5 and meta["final_loss"] < 0.5 * meta["first_loss"], meta
    config = ps.SemanticPretrainConfig(scenes=rooms, out=out, image_size=56, width=32, layers=1, heads=2)
    torch.manual_seed(0)
    untrained = ps.evaluate(ps.build_encoder(meta["model_kwargs"]), rooms, config)
    assert meta["eval"]["miou"] > 0.15 and untrained["miou"] < 0.08, (meta["eval"], untrained)
    assert meta["eval"]["teacher_miou"] == untrained["teacher_miou"] > 0.8
    assert ps.read_metadata(out)["command"].startswith("ff3r-pretrain-semantic --scenes")

    config = TrainConfig(scenes=rooms, out=tmp_path / "net.pt", preset="tiny", semantic_checkpoint=out)
    arch = config.architecture()
    assert arch.semantic.model_kwargs == meta["model_kwargs"] and arch.semantic.freeze and arch.semantic.dense_mode == "tokens"
    net = FF3R(arch)
    trained = ps.build_encoder(meta["model_kwargs"])
    trained.model.load_state_dict(torch.load(out, weights_only=False)["state_dict"])
    trained.eval()
    images = torch.rand(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(net.semantic_encoder(images, grid=(4, 4)), trained(images, grid=(4, 4)))
    assert not any(p.requires_grad for p in net.semantic_encoder.parameters())
    out_net = net(torch.rand(2, 3, 56, 56))
    assert out_net.depth.shape[0] == 2


def test_other_files_keep_the_preset_architecture_and_bad_paths_are_named(tmp_path):
    plain = tmp_path / "clip.pt"
    torch.save({"state_dict": {}}, plain)
    assert ps.read_metadata(plain) is None and ps.encoder_settings(plain) == {}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ps.read_metadata(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="multiple of heads"):
        ps.standin_kwargs(ps.SemanticPretrainConfig(scenes=tmp_path, out=tmp_path / "o.pt", width=30, heads=4))


def test_committed_stand_in_encoder_loads_and_names_its_command(tmp_path):
    """ff3r_ns/weights/semantic_standin.pt: the file ff3r-pretrain-semantic wrote (metadata with its command and its
    evaluation on unseen rooms), and a network built around it runs."""
    path = Path(ps.__file__).resolve().parent.parent / "weights" / "semantic_standin.pt"
    meta = ps.read_metadata(path)
    assert meta["command"].startswith("ff3r-pretrain-semantic ") and meta["steps"] == 6000
    assert meta["eval"]["miou"] > 0.5  # unseen rooms; an untrained encoder scores ~0.06
    arch = TrainConfig(scenes=tmp_path, out=tmp_path / "n.pt", preset="tiny", semantic_checkpoint=path).architecture()
    with torch.no_grad():
        out = FF3R(arch).eval()(torch.rand(2, 3, 56, 56))
    assert out.depth.shape[0] == 2


def test_init_from_a_tiny_network_keeps_the_stand_in_encoder(tmp_path, tiny_init):
    """--init STAGE2 with --semantic-checkpoint STANDIN (the stand-in stage of the shipped network): geometry and heads come from the init,
    the encoder stays the stand-in's (not overwritten by the init's random CLIP, whose architecture differs), and
    fusion layers whose width changed start fresh; without the semantic checkpoint the mismatch is still an error."""
    from ff3r_ns.core.checkpoint import load_checkpoint
    from ff3r_ns.training.loop import load_init

    standin = Path(ps.__file__).resolve().parent.parent / "weights" / "semantic_standin.pt"
    arch = TrainConfig(scenes=tmp_path, out=tmp_path / "n.pt", preset="tiny", semantic_checkpoint=standin).architecture()
    net = FF3R(arch)
    encoder_before = {k: v.clone() for k, v in net.semantic_encoder.state_dict().items()}
    load_init(net, arch, tiny_init, own_semantic_encoder=True)
    shipped = load_checkpoint(tiny_init).network
    state = net.state_dict()
    geometry = [k for k in shipped if k.startswith(("aggregator.", "camera_head.", "depth_head.", "gaussian_head."))]
    assert geometry and all(torch.equal(state[k], shipped[k]) for k in geometry)
    assert all(torch.equal(v, encoder_before[k]) for k, v in net.semantic_encoder.state_dict().items())
    assert any(k.startswith("fusion.") and state[k].shape != shipped[k].shape for k in shipped if k in state)
    with pytest.raises(ValueError, match="architecture differs"):
        load_init(FF3R(arch), arch, tiny_init)


def test_a_stage_2_checkpoint_around_the_stand_in_does_not_need_its_file(tmp_path):
    """ff3r-train --semantic-checkpoint FILE writes a network checkpoint that loads without FILE (the encoder's
    weights are in its state dict) and keeps the stand-in's architecture."""
    import shutil

    from ff3r_ns.core.checkpoint import load_checkpoint
    from ff3r_ns.training import train

    scene = tmp_path / "scenes" / "room1000"
    spec = SceneSpec(seed=1000, num_views=4, width=56, height=56, arc=0.3, shadows=False)
    write_scene(generate_scene(spec), scene, spec, num_points=100)
    standin = tmp_path / "standin.pt"
    shutil.copy(Path(ps.__file__).resolve().parent.parent / "weights" / "semantic_standin.pt", standin)
    out = tmp_path / "net.pt"
    train.main(["--scenes", str(tmp_path / "scenes"), "--out", str(out), "--steps", "1", "--max-views", "2",
                "--image-size", "28", "--writer", "none", "--no-progress", "--warmup-steps", "1",
                "--semantic-checkpoint", str(standin)])
    standin_command = ps.read_metadata(standin)["command"]
    standin.unlink()
    ckpt = load_checkpoint(out)
    assert ckpt.metadata["command_chain"] == [standin_command, ckpt.metadata["command"]]
    assert ckpt.architecture.semantic.checkpoint is None and ckpt.architecture.semantic.dense_mode == "tokens"
    net = FF3R(ckpt.architecture)
    net.load_state_dict(ckpt.network)
    assert net.semantic_encoder.embed_dim == 16


def test_a_new_feature_skip_starts_as_the_decoder_inverse_and_reads_the_encoder_grid_it_was_trained_at(tmp_path, tiny_init):
    """--init STAGE2 --semantic-checkpoint STANDIN --feature-skip: the skip the init lacks starts as the feature
    decoder's pseudo-inverse, so decoding the skip's output gives back the encoder's features projected onto the
    decoder's span (checked against a least-squares fit); the committed stand-in, trained with a finer grid (grid_patch
    7), is asked for that grid by the network, not for the geometry token grid."""
    from ff3r_ns.training.loop import load_init

    standin = Path(ps.__file__).resolve().parent.parent / "weights" / "semantic_standin.pt"
    config = TrainConfig(scenes=tmp_path, out=tmp_path / "n.pt", preset="tiny", semantic_checkpoint=standin, feature_skip=True)
    arch = config.architecture()
    assert arch.fusion.feature_skip and arch.semantic.grid_patch == 7
    net = FF3R(arch).eval()
    load_init(net, arch, tiny_init, own_semantic_encoder=True)
    sem = torch.randn(3, net.semantic_encoder.embed_dim, 2, 2, dtype=torch.float64)
    with torch.no_grad():
        skip = net.fusion.feature_residual(sem.float(), size=(2, 2)).double()  # [S, F, 2, 2], no resampling
        w, b = net.feature_decoder.proj.weight.double(), net.feature_decoder.proj.bias.double()
        decoded = torch.einsum("df,sfhw->sdhw", w, skip) + b[None, :, None, None]
        # Least squares: the decodable vector nearest to each encoder feature.
        target = (sem - b[None, :, None, None]).permute(0, 2, 3, 1).reshape(-1, w.shape[0])
        best = torch.linalg.lstsq(w, target.T).solution.T @ w.T + b
    torch.testing.assert_close(decoded.permute(0, 2, 3, 1).reshape(-1, w.shape[0]), best, atol=1e-4, rtol=1e-4)
    assert (decoded - sem).abs().max() > 1e-3  # a real projection (8 of 16 dims), not the identity

    grids = []
    net.semantic_encoder.register_forward_hook(lambda m, args, out: grids.append(tuple(out.shape[-2:])))
    with torch.no_grad():
        net(torch.rand(2, 3, 28, 42))
    assert grids == [(4, 6)]  # 28 / 7 x 42 / 7, not the 2 x 3 geometry grid
