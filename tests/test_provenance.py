"""A checkpoint's command chain: its parents' chains, in order, then its own command."""

from pathlib import Path

import torch

from ff3r_ns.training.provenance import command_chain


def _ckpt(path: Path, **meta) -> Path:
    torch.save({"network": {}, "metadata": meta}, path)
    return path


def test_chain_follows_parents_in_order_and_lists_a_shared_command_once(tmp_path):
    geo = _ckpt(tmp_path / "geo.pt", command="stage1")
    net = _ckpt(tmp_path / "net.pt", command="stage2", command_chain=["stage1", "stage2"])
    standin = tmp_path / "standin.pt"
    torch.save({"state_dict": {}, "ff3r": {"command": "stage0"}}, standin)  # ff3r-pretrain-semantic's layout
    foreign = tmp_path / "open_clip.pt"
    torch.save({"state_dict": {}}, foreign)  # a foundation model's own weights: no command
    assert command_chain("stage3", net, standin) == ["stage1", "stage2", "stage0", "stage3"]
    assert command_chain("stage3", geo, net, None, foreign) == ["stage1", "stage2", "stage3"]
    assert command_chain("only") == ["only"]
