"""The shipped network (ff3r_ns/weights/ff3r_tiny.pt): it loads into the methods' architecture, names the command
chain that made it, and a short training run continued from it lowers the loss (the next round of training)."""

from __future__ import annotations

import numpy as np
import pytest

from ff3r_ns.core.checkpoint import SHIPPED_TINY_WEIGHTS, load_checkpoint, weight_mismatch
from ff3r_ns.core.reconstruct import build_network
from ff3r_ns.data.generate import SceneSpec, generate_scene, write_scene
from ff3r_ns.method_configs.ff3r import SHIPPED_NETWORK
from ff3r_ns.training import train


def test_the_shipped_file_loads_into_the_methods_network_and_names_its_command_chain():
    assert SHIPPED_TINY_WEIGHTS.stat().st_size < 50e6  # the repository's limit for shipped weights
    ckpt = load_checkpoint(SHIPPED_TINY_WEIGHTS)
    assert weight_mismatch(SHIPPED_NETWORK.architecture, ckpt.architecture) == []
    net = build_network(SHIPPED_NETWORK, checkpoint=ckpt)
    assert net.semantic_encoder is not None and net.fusion.feature_skip is not None
    chain = ckpt.metadata["command_chain"]
    assert chain[-1] == ckpt.metadata["command"]
    # stages in order: geometry pretraining, stage 2, the stand-in encoder, the semantic path
    tools = [c.split()[0] if not c.startswith("python") else c.split()[1] for c in chain]
    firsts = [tools.index(t) for t in ("ff3r-pretrain-geometry", "ff3r-train", "ff3r-pretrain-semantic")]
    assert firsts == sorted(firsts), chain
    assert "scripts/make_training_scenes.py" in tools
    assert "--semantic-checkpoint" in chain[-1] and "--init" in chain[-1]


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    root = tmp_path_factory.mktemp("shipped_rooms")
    spec = SceneSpec(seed=1000, num_views=4, width=56, height=56, arc=0.3, shadows=False)
    write_scene(generate_scene(spec), root / "room1000", spec, num_points=100)
    return root / "room1000"


def test_training_continued_from_the_shipped_network_lowers_the_loss(room, tmp_path):
    """--preset tiny_semantic --init SHIPPED: the shipped architecture, every weight from the file; one batch seen
    again and again (all four views, constant rate) must be fitted better."""
    summary = train.main(["--scenes", str(room), "--out", str(tmp_path / "next.pt"), "--preset", "tiny_semantic",
                          "--init", str(SHIPPED_TINY_WEIGHTS), "--steps", "12", "--lr", "2e-3", "--min-views", "4",
                          "--max-views", "4", "--schedule", "constant", "--image-size", "56", "--writer", "none",
                          "--no-progress", "--warmup-steps", "1", "--geometry-lr-scale", "0"])
    h = summary.history
    assert np.mean(h[-3:]) < 0.9 * np.mean(h[:3]), h
    chain = load_checkpoint(tmp_path / "next.pt").metadata["command_chain"]
    assert chain[:-1] == load_checkpoint(SHIPPED_TINY_WEIGHTS).metadata["command_chain"]
