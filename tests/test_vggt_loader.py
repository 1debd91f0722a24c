"""VGGT checkpoint loading, against a state dict built with VGGT's own names and shapes.

``vggt_state_dict`` below is written from VGGT's source (vggt/models/vggt.py, aggregator.py,
heads/camera_head.py, heads/dpt_head.py, layers/block.py, layers/attention.py,
layers/vision_transformer.py), not from our modules, so a naming slip on our side fails the test.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.network.model import FF3R
from ff3r_ns.core.network.vggt_loader import LoadReport, load_vggt_checkpoint, read_state_dict


def _block(prefix: str, dim: int, head_dim: int, qk_norm: bool, layerscale: bool, mlp_ratio: int = 4) -> dict:
    """vggt/layers/block.py Block: norm1, attn (qkv, q_norm/k_norm if qk_norm, proj), ls1, norm2, mlp, ls2."""
    s = {
        "norm1.weight": (dim,), "norm1.bias": (dim,),
        "attn.qkv.weight": (3 * dim, dim), "attn.qkv.bias": (3 * dim,),
        "attn.proj.weight": (dim, dim), "attn.proj.bias": (dim,),
        "norm2.weight": (dim,), "norm2.bias": (dim,),
        "mlp.fc1.weight": (mlp_ratio * dim, dim), "mlp.fc1.bias": (mlp_ratio * dim,),
        "mlp.fc2.weight": (dim, mlp_ratio * dim), "mlp.fc2.bias": (dim,),
    }  # fmt: skip
    if qk_norm:
        s.update({"attn.q_norm.weight": (head_dim,), "attn.q_norm.bias": (head_dim,),
                  "attn.k_norm.weight": (head_dim,), "attn.k_norm.bias": (head_dim,)})  # fmt: skip
    if layerscale:
        s.update({"ls1.gamma": (dim,), "ls2.gamma": (dim,)})
    return {f"{prefix}.{k}": v for k, v in s.items()}


def _dpt(prefix: str, dim_in: int, features: int, oc: tuple[int, ...], output_dim: int) -> dict:
    """vggt/heads/dpt_head.py DPTHead (feature_only=False)."""
    s = {"norm.weight": (dim_in,), "norm.bias": (dim_in,)}
    for i, c in enumerate(oc):
        s[f"projects.{i}.weight"] = (c, dim_in, 1, 1)
        s[f"projects.{i}.bias"] = (c,)
        s[f"scratch.layer{i + 1}_rn.weight"] = (features, c, 3, 3)  # bias=False
    # ConvTranspose2d weights are [in, out, k, k]; index 2 is Identity
    s.update({"resize_layers.0.weight": (oc[0], oc[0], 4, 4), "resize_layers.0.bias": (oc[0],),
              "resize_layers.1.weight": (oc[1], oc[1], 2, 2), "resize_layers.1.bias": (oc[1],),
              "resize_layers.3.weight": (oc[3], oc[3], 3, 3), "resize_layers.3.bias": (oc[3],)})  # fmt: skip
    for r in (1, 2, 3, 4):
        units = ("resConfUnit2",) if r == 4 else ("resConfUnit1", "resConfUnit2")  # refinenet4: has_residual=False
        s[f"scratch.refinenet{r}.out_conv.weight"] = (features, features, 1, 1)
        s[f"scratch.refinenet{r}.out_conv.bias"] = (features,)
        for u in units:
            for conv in ("conv1", "conv2"):
                s[f"scratch.refinenet{r}.{u}.{conv}.weight"] = (features, features, 3, 3)
                s[f"scratch.refinenet{r}.{u}.{conv}.bias"] = (features,)
    s.update({"scratch.output_conv1.weight": (features // 2, features, 3, 3), "scratch.output_conv1.bias": (features // 2,),
              "scratch.output_conv2.0.weight": (32, features // 2, 3, 3), "scratch.output_conv2.0.bias": (32,),
              "scratch.output_conv2.2.weight": (output_dim, 32, 1, 1), "scratch.output_conv2.2.bias": (output_dim,)})  # fmt: skip
    return {f"{prefix}.{k}": v for k, v in s.items()}


def vggt_shapes(
    embed_dim: int, depth: int, num_heads: int, dino_depth: int, img_size: int, patch: int = 14, registers: int = 4,
    cam_trunk: int = 4, dpt_features: int = 256, dpt_oc: tuple[int, ...] = (256, 512, 1024, 1024),
) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a VGGT model (``VGGT(img_size, patch_size, embed_dim)``) at a given size."""
    c, d = embed_dim, 2 * embed_dim
    grid = img_size // patch
    s: dict[str, tuple[int, ...]] = {
        "aggregator.camera_token": (1, 2, 1, c),
        "aggregator.register_token": (1, 2, registers, c),
        # DINOv2 ViT (vit_large with registers) as patch_embed
        "aggregator.patch_embed.cls_token": (1, 1, c),
        "aggregator.patch_embed.pos_embed": (1, 1 + grid * grid, c),
        "aggregator.patch_embed.register_tokens": (1, registers, c),
        "aggregator.patch_embed.mask_token": (1, c),
        "aggregator.patch_embed.patch_embed.proj.weight": (c, 3, patch, patch),
        "aggregator.patch_embed.patch_embed.proj.bias": (c,),
        "aggregator.patch_embed.norm.weight": (c,),
        "aggregator.patch_embed.norm.bias": (c,),
    }
    for i in range(dino_depth):  # DINOv2 blocks: init_values=1.0 (LayerScale), no qk-norm
        s.update(_block(f"aggregator.patch_embed.blocks.{i}", c, c // num_heads, qk_norm=False, layerscale=True))
    for i in range(depth):  # aggregator blocks: qk_norm=True, init_values=0.01
        s.update(_block(f"aggregator.frame_blocks.{i}", c, c // num_heads, qk_norm=True, layerscale=True))
        s.update(_block(f"aggregator.global_blocks.{i}", c, c // num_heads, qk_norm=True, layerscale=True))
    # camera head on 2C tokens
    for i in range(cam_trunk):
        s.update(_block(f"camera_head.trunk.{i}", d, 0, qk_norm=False, layerscale=True))
    s.update({
        "camera_head.token_norm.weight": (d,), "camera_head.token_norm.bias": (d,),
        "camera_head.trunk_norm.weight": (d,), "camera_head.trunk_norm.bias": (d,),
        "camera_head.empty_pose_tokens": (1, 1, 9),
        "camera_head.embed_pose.weight": (d, 9), "camera_head.embed_pose.bias": (d,),
        "camera_head.poseLN_modulation.1.weight": (3 * d, d), "camera_head.poseLN_modulation.1.bias": (3 * d,),
        "camera_head.pose_branch.fc1.weight": (d // 2, d), "camera_head.pose_branch.fc1.bias": (d // 2,),
        "camera_head.pose_branch.fc2.weight": (9, d // 2), "camera_head.pose_branch.fc2.bias": (9,),
    })  # fmt: skip
    s.update(_dpt("depth_head", d, dpt_features, dpt_oc, output_dim=2))
    s.update(_dpt("point_head", d, dpt_features, dpt_oc, output_dim=4))
    # a few track-head keys (its full structure is irrelevant: it must be ignored)
    s.update({"track_head.feature_extractor.norm.weight": (d,), "track_head.tracker.fmap_norm.weight": (128,)})
    return s


def _tiny_cfg() -> FF3RConfig:
    return FF3RConfig.tiny().with_fusion(False)


def _tiny_vggt_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    cfg = _tiny_cfg()
    g, h = cfg.geometry, cfg.heads
    shapes = vggt_shapes(g.embed_dim, g.depth, g.num_heads, g.patch_embed_depth, g.img_size,
                         cam_trunk=h.camera_trunk_depth, dpt_features=h.dpt_features, dpt_oc=h.dpt_out_channels)  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    # small values, like trained weights, so that the loaded tiny model runs without overflow
    return {k: 0.02 * torch.randn(v, generator=gen) for k, v in shapes.items()}


def test_every_vggt_key_maps_and_loads() -> None:
    model = FF3R(_tiny_cfg())
    sd = _tiny_vggt_state_dict()
    report = load_vggt_checkpoint(model, sd)
    assert isinstance(report, LoadReport)
    assert report.missing == [] and report.mismatched == []
    expected = sorted(k for k in sd if k.startswith(("aggregator.", "camera_head.", "depth_head.")))
    assert report.loaded == expected
    assert sorted(report.unexpected) == sorted(report.ignored)
    assert sorted(report.ignored) == sorted(k for k in sd if k.startswith(("point_head.", "track_head.")))
    ours = model.state_dict()
    for k in expected:
        assert torch.equal(ours[k], sd[k]), k
    # every parameter of the VGGT-covered modules came from the checkpoint
    covered = [k for k in ours if k.startswith(("aggregator.", "camera_head.", "depth_head."))]
    assert sorted(covered) == expected
    assert "1" in report.summary() and "ignored" in report.summary()


def test_load_from_file_with_wrappers(tmp_path) -> None:
    sd = _tiny_vggt_state_dict(seed=1)
    path = tmp_path / "vggt.pt"
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, path)
    assert read_state_dict(path).keys() == sd.keys()
    model = FF3R(_tiny_cfg())
    report = load_vggt_checkpoint(model, path)
    assert report.missing == [] and len(report.loaded) == len([k for k in sd if not k.startswith(("point", "track"))])
    assert torch.equal(model.aggregator.camera_token, sd["aggregator.camera_token"])
    with torch.no_grad():  # the loaded model runs
        out = model(torch.rand(2, 3, 28, 42))
    assert torch.isfinite(out.depth).all()


def test_shape_mismatch_is_reported() -> None:
    cfg = _tiny_cfg()
    wider = replace(cfg, heads=replace(cfg.heads, dpt_features=32))  # not the checkpoint's size
    sd = _tiny_vggt_state_dict()
    with pytest.raises(ValueError, match="depth_head.scratch"):
        load_vggt_checkpoint(FF3R(wider), sd)
    report = load_vggt_checkpoint(FF3R(wider), sd, strict_shapes=False)
    assert report.mismatched and all(k.startswith("depth_head.") for k, _, _ in report.mismatched)
    assert set(report.missing) == {k for k, _, _ in report.mismatched}


def test_missing_keys_are_reported() -> None:
    sd = _tiny_vggt_state_dict()
    del sd["camera_head.empty_pose_tokens"]
    report = load_vggt_checkpoint(FF3R(_tiny_cfg()), sd)
    assert report.missing == ["camera_head.empty_pose_tokens"]


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vggt_checkpoint(FF3R(_tiny_cfg()), "/nonexistent/vggt.pt")


def test_vggt_1b_shapes_match_our_full_size_model() -> None:
    """Our vggt_1b config has exactly VGGT-1B's parameter names and shapes (meta device: no memory)."""
    shapes = vggt_shapes(1024, 24, 16, 24, 518)
    with torch.device("meta"):
        model = FF3R(FFConfig_vggt_geometry_only())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith(("aggregator.", "camera_head.", "depth_head."))}
    theirs = {k: v for k, v in shapes.items() if k.startswith(("aggregator.", "camera_head.", "depth_head."))}
    assert ours == theirs
    n = sum(v.numel() for k, v in model.state_dict().items() if k in theirs)
    assert 0.9e9 < n < 1.3e9  # "VGGT-1B"


def FFConfig_vggt_geometry_only() -> FF3RConfig:  # noqa: N802
    return FF3RConfig.vggt_1b().with_fusion(False)
