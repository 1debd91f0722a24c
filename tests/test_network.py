"""Tests of the FF3R network (tiny configs, CPU; the GPU test is marked ``gpu``)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ff3r_ns.core.cameras import (
    Cameras, extri_intri_to_pose_encoding, intrinsics_matrix, invert_rigid, pose_encoding_to_extri_intri,
    quat_to_mat, unproject_depth,
)
from ff3r_ns.core.gaussians import rgb_to_sh
from ff3r_ns.core.network.camera_head import CameraHead
from ff3r_ns.core.network.config import FF3RConfig, SemanticConfig, tiny_open_clip_kwargs
from ff3r_ns.core.network.fusion import SemanticFusion
from ff3r_ns.core.network.gaussian_head import GaussianHead, GaussianLayout
from ff3r_ns.core.network.layers import RotaryPositionEmbedding2D, interpolate_pos_embed, patch_positions
from ff3r_ns.core.network.model import FF3R, anchor_to_first_view
from ff3r_ns.core.network.semantic import (
    CHECKPOINT_FLAG, MissingWeightsError, OpenCLIPEncoder, TimmViTEncoder, build_semantic_encoder,
)
from ff3r_ns.core.network.teacher import OfflineTeacher

H, W = 28, 42  # 2 x 3 patches


def _images(s: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(s, 3, H, W, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model() -> FF3R:
    torch.manual_seed(0)
    return FF3R(FF3RConfig.tiny()).eval()


@pytest.fixture(scope="module")
def tiny_clip() -> OpenCLIPEncoder:
    torch.manual_seed(0)
    return build_semantic_encoder(SemanticConfig(weights="random", model_kwargs=tiny_open_clip_kwargs()))


# ----------------------------------------------------------------------------- shapes and contract
@pytest.mark.parametrize("s", [1, 2, 5])
def test_output_shapes(model: FF3R, s: int) -> None:
    with torch.no_grad():
        out = model(_images(s))
    f = model.config.heads.feature_dim
    assert out.pose_enc.shape == (s, 9)
    assert out.cameras.world_to_cam.shape == (s, 4, 4) and out.cameras.intrinsics.shape == (s, 3, 3)
    assert (out.cameras.width, out.cameras.height) == (W, H)
    assert out.depth.shape == (s, H, W) and out.depth_conf.shape == (s, H, W)
    assert out.points.shape == (s, H, W, 3)
    g = out.gaussians
    assert g.batch_shape == (s,) and g.num == H * W
    assert g.sh.shape == (s, H * W, 1, 3) and g.features.shape == (s, H * W, f) and g.confidence.shape == (s, H * W)
    assert torch.equal(g.means, out.points.reshape(s, H * W, 3))
    assert (out.depth > 0).all() and (out.depth_conf >= 1).all()
    assert ((g.opacities > 0) & (g.opacities < 1)).all() and (g.scales > 0).all()
    assert torch.allclose(g.quats.norm(dim=-1), torch.ones(s, H * W), atol=1e-5)
    assert model.feature_decoder(g.features).shape == (s, H * W, model.config.heads.teacher_dim)


def test_bad_input_errors(model: FF3R) -> None:
    with pytest.raises(ValueError, match="multiples of 14"):
        model(torch.rand(2, 3, 30, 42))
    with pytest.raises(ValueError, match=r"\[S, 3, H, W\]"):
        model(torch.rand(2, 4, 28, 42))


def test_pose_encoding_round_trip_and_first_view_identity(model: FF3R) -> None:
    with torch.no_grad():
        out = model(_images(4, seed=1))
    assert torch.equal(out.cameras.world_to_cam[0], torch.eye(4))
    assert torch.equal(out.pose_enc[0, :7], torch.tensor([0, 0, 0, 0, 0, 0, 1.0]))
    enc = extri_intri_to_pose_encoding(out.cameras.world_to_cam, out.cameras.intrinsics, H, W)
    q, q_ref = enc[:, 3:7], out.pose_enc[:, 3:7]
    q_ref = torch.where((q * q_ref).sum(-1, keepdim=True) < 0, -q_ref, q_ref)  # q and -q are one rotation
    assert torch.allclose(enc[:, :3], out.pose_enc[:, :3], atol=1e-6)
    assert torch.allclose(q, q_ref, atol=1e-6)
    assert torch.allclose(enc[:, 7:], out.pose_enc[:, 7:], atol=1e-6)
    lo, hi = model.config.heads.fov_range
    assert ((out.pose_enc[:, 7:] >= lo) & (out.pose_enc[:, 7:] <= hi)).all()
    # principal point at the centre, focal from the field of view
    k = out.cameras.intrinsics
    assert torch.allclose(k[:, 0, 2], torch.full((4,), W / 2)) and torch.allclose(k[:, 1, 2], torch.full((4,), H / 2))
    assert torch.allclose(k[:, 0, 0], (W / 2) / torch.tan(out.pose_enc[:, 8] / 2), rtol=1e-6)


def test_anchor_preserves_relative_poses() -> None:
    g = torch.Generator().manual_seed(3)
    enc = torch.cat([torch.randn(3, 3, generator=g), torch.randn(3, 4, generator=g), torch.full((3, 2), 1.1)], dim=-1)
    anchored = anchor_to_first_view(enc, H, W)
    a, _ = pose_encoding_to_extri_intri(enc, H, W)
    b, _ = pose_encoding_to_extri_intri(anchored, H, W)
    assert torch.allclose(b[0], torch.eye(4), atol=1e-6)
    for i in range(3):
        for j in range(3):  # camera i relative to camera j is unchanged
            assert torch.allclose(a[i] @ invert_rigid(a[j]), b[i] @ invert_rigid(b[j]), atol=1e-5)
    assert torch.allclose(anchored[:, 7:], enc[:, 7:], atol=1e-6)


def test_points_are_unprojected_depth(model: FF3R) -> None:
    with torch.no_grad():
        out = model(_images(3))
    assert torch.allclose(out.points, unproject_depth(out.depth, out.cameras), atol=1e-6)


def test_unprojection_of_plane_lands_on_plane() -> None:
    """A camera tilted over the plane z = 5: analytic depth + true camera -> the true plane points."""
    h, w, plane_z = 14, 28, 5.0
    angle = 0.3
    rot = torch.tensor([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]])
    centre = torch.tensor([0.4, -0.2, 1.0])
    c2w = torch.eye(4)
    c2w[:3, :3], c2w[:3, 3] = rot, centre
    w2c = invert_rigid(c2w)[None]
    k = intrinsics_matrix(torch.tensor([20.0]), torch.tensor([22.0]), torch.tensor([w / 2]), torch.tensor([h / 2]))
    cams = Cameras(w2c, k, w, h)
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    rays_cam = torch.stack([(u - w / 2) / 20.0, (v - h / 2) / 22.0, torch.ones_like(u)], dim=-1)  # z = 1
    rays_world = rays_cam @ rot.T
    t = (plane_z - centre[2]) / rays_world[..., 2]  # ray parameter == z-depth since ray z_cam = 1
    truth = centre + t[..., None] * rays_world
    pts = unproject_depth(t[None], cams)[0]
    assert torch.allclose(pts, truth, atol=1e-5)
    assert torch.allclose(pts[..., 2], torch.full((h, w), plane_z), atol=1e-5)
    # pose encoding of the true camera round-trips to the same points
    enc = extri_intri_to_pose_encoding(w2c, k, h, w)
    w2c2, k2 = pose_encoding_to_extri_intri(enc, h, w)
    k2_fx_fy = torch.stack([k2[0, 0, 0], k2[0, 1, 1]])
    assert torch.allclose(k2_fx_fy, torch.tensor([20.0, 22.0]), rtol=1e-5)
    assert torch.allclose(unproject_depth(t[None], Cameras(w2c2, k2, w, h))[0], truth, atol=1e-4)


# ----------------------------------------------------------------------------- chunking
def test_chunking_does_not_change_results() -> None:
    torch.manual_seed(1)
    cfg = FF3RConfig.tiny().with_fusion(False)
    a = FF3R(cfg).eval()
    b = FF3R(replace(cfg, geometry=replace(cfg.geometry, frame_chunk_size=16),
                     heads=replace(cfg.heads, frames_chunk_size=16))).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        oa, ob = a(_images(5)), b(_images(5))
    assert torch.allclose(oa.depth, ob.depth, rtol=1e-5, atol=1e-6)
    assert torch.allclose(oa.pose_enc, ob.pose_enc, atol=1e-5)
    assert torch.allclose(oa.gaussians.features, ob.gaussians.features, atol=1e-5)


# ----------------------------------------------------------------------------- fusion
def test_fusion_zero_init_then_perturbed() -> None:
    torch.manual_seed(2)
    on = FF3R(FF3RConfig.tiny()).eval()
    off = FF3R(FF3RConfig.tiny().with_fusion(False)).eval()
    result = off.load_state_dict(on.state_dict(), strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys and all(k.startswith(("fusion.", "semantic_encoder.")) for k in result.unexpected_keys)
    imgs = _images(3)
    with torch.no_grad():
        o_on, o_off = on(imgs), off(imgs)
    # zero-initialised output projections: enabling fusion changes nothing at start
    assert torch.equal(o_on.depth, o_off.depth) and torch.equal(o_on.pose_enc, o_off.pose_enc)
    with torch.no_grad():
        for blk in on.fusion.blocks.values():
            blk.out.weight.normal_(std=0.5)
        o_pert = on(imgs)
    assert (o_pert.depth - o_off.depth).abs().max() > 1e-4
    assert (o_pert.gaussians.features - o_off.gaussians.features).abs().max() > 1e-5
    # given semantic tokens replace the encoder: different tokens, different output
    with torch.no_grad():
        o_tok = on(imgs, semantic_tokens=torch.randn(3, on.semantic_encoder.embed_dim, 2, 3))
    assert (o_tok.depth - o_pert.depth).abs().max() > 1e-5


def test_feature_skip_adds_the_upsampled_semantic_features_to_the_gaussian_features_only() -> None:
    torch.manual_seed(3)
    base = FF3R(FF3RConfig.tiny()).eval()
    cfg = FF3RConfig.tiny()
    skip = FF3R(replace(cfg, fusion=replace(cfg.fusion, feature_skip=True))).eval()
    result = skip.load_state_dict(base.state_dict(), strict=False)
    assert result.missing_keys == ["fusion.feature_skip.weight", "fusion.feature_skip.bias"]
    imgs = _images(3)
    tokens = torch.randn(3, base.semantic_encoder.embed_dim, 2, 3)
    with torch.no_grad():
        o_base, o_skip = base(imgs, semantic_tokens=tokens), skip(imgs, semantic_tokens=tokens)
        assert torch.equal(o_skip.gaussians.features, o_base.gaussians.features)  # zero-initialised: no change at start
        skip.fusion.feature_skip.weight.normal_()
        skip.fusion.feature_skip.bias.normal_()
        o_on = skip(imgs, semantic_tokens=tokens)
    # Reference: bilinear resampling of the tokens to pixels, then the 1x1 map, pixel by pixel.
    up = F.interpolate(tokens, size=(H, W), mode="bilinear", align_corners=False)  # [S, D, H, W]
    w, b = skip.fusion.feature_skip.weight[:, :, 0, 0], skip.fusion.feature_skip.bias
    expected = torch.einsum("fd,sdhw->shwf", w, up).reshape(3, H * W, -1) + b
    assert torch.allclose(o_on.gaussians.features - o_base.gaussians.features, expected, atol=1e-5)
    assert expected.abs().max() > 0.1
    # Nothing else moves: geometry, colour and opacity are the base network's.
    for name in ("means", "scales", "quats", "opacities", "sh"):
        assert torch.equal(getattr(o_on.gaussians, name), getattr(o_base.gaussians, name)), name
    assert torch.equal(o_on.depth, o_base.depth) and torch.equal(o_on.pose_enc, o_base.pose_enc)


def test_feature_refinement_starts_at_zero_then_follows_image_edges() -> None:
    from ff3r_ns.core.network.config import FusionConfig

    torch.manual_seed(4)
    cfg = FusionConfig(layers=(), num_heads=2, feature_skip=True, feature_refine_width=8)
    fusion = SemanticFusion(cfg, geo_dim=8, sem_dim=6, feature_dim=4)
    linear = SemanticFusion(replace(cfg, feature_refine_width=0), geo_dim=8, sem_dim=6, feature_dim=4)
    linear.load_state_dict(fusion.state_dict(), strict=False)
    with torch.no_grad():
        fusion.feature_skip.weight.normal_(), linear.feature_skip.weight.copy_(fusion.feature_skip.weight)
    sem, images = torch.randn(2, 6, 3, 3), torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(fusion.feature_residual(sem, (12, 12), images), linear.feature_residual(sem, (12, 12)))
        fusion.feature_refine[-1].weight.normal_()
        edge = images.clone()
        edge[:, :, :, 6:] = 1.0 - edge[:, :, :, 6:]  # a different image under the same features
        a, b = fusion.feature_residual(sem, (12, 12), images), fusion.feature_residual(sem, (12, 12), edge)
    assert (a - b).abs().max() > 1e-3  # the image guides it
    # 3x3 convolutions twice: pixels more than two columns from the change see the same inputs
    assert torch.allclose(a[..., :3], b[..., :3], atol=1e-6)
    with pytest.raises(ValueError, match="needs the images"):
        fusion.feature_residual(sem, (12, 12))


def test_fusion_off_builds_and_calls_no_fusion(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"fusion": 0, "encoder": 0}
    orig_fusion = SemanticFusion.forward

    def counting(self, *args, **kwargs):
        calls["fusion"] += 1
        return orig_fusion(self, *args, **kwargs)

    monkeypatch.setattr(SemanticFusion, "forward", counting)
    off = FF3R(FF3RConfig.tiny().with_fusion(False))
    assert off.fusion is None and off.semantic_encoder is None
    assert not any(isinstance(m, SemanticFusion) for m in off.modules())
    with torch.no_grad():
        off(_images(2))
    assert calls["fusion"] == 0
    on = FF3R(FF3RConfig.tiny())
    with torch.no_grad():
        on(_images(2))
    assert calls["fusion"] == len(on.config.fusion.layers)


def test_semantic_tokens_skip_the_encoder(model: FF3R, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("semantic encoder must not run when semantic_tokens are given")

    monkeypatch.setattr(model.semantic_encoder, "forward", boom)
    with torch.no_grad():
        out = model(_images(2), semantic_tokens=torch.randn(2, model.semantic_encoder.embed_dim, 4, 4))
    assert out.depth.shape == (2, H, W)


@pytest.mark.parametrize("direction", ["geo_queries_sem", "sem_queries_geo"])
def test_fusion_directions(direction: str) -> None:
    from ff3r_ns.core.network.config import FusionConfig

    torch.manual_seed(0)
    fusion = SemanticFusion(FusionConfig(layers=(0,), num_heads=2, direction=direction), geo_dim=8, sem_dim=6)
    tokens = torch.randn(2, 1 + 6, 8)
    sem = fusion.prepare(torch.randn(2, 6, 4, 4), grid=(2, 3))
    assert sem.shape == (2, 6, 8)
    assert torch.equal(fusion(0, tokens, sem, 1), tokens)  # zero init
    with torch.no_grad():
        fusion.blocks["0"].out.weight.normal_()
    out = fusion(0, tokens, sem, 1)
    assert torch.equal(out[:, :1], tokens[:, :1])  # special tokens untouched
    assert (out[:, 1:] - tokens[:, 1:]).abs().min() > 0
    # each view attends only to its own semantic tokens
    sem2 = sem.clone()
    sem2[1] += 1.0
    out2 = fusion(0, tokens, sem2, 1)
    assert torch.equal(out2[0], out[0]) and not torch.equal(out2[1], out[1])


# ----------------------------------------------------------------------------- semantic encoders
def test_missing_semantic_weights_error() -> None:
    cfg = FF3RConfig.tiny()
    no_weights = replace(cfg, semantic=replace(cfg.semantic, weights="load"))
    with pytest.raises(MissingWeightsError, match=CHECKPOINT_FLAG.replace(".", r"\.")):
        FF3R(no_weights)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FF3R(replace(cfg, semantic=replace(cfg.semantic, weights="load", checkpoint="/nonexistent/clip.pt")))
    FF3R(no_weights.with_fusion(False))  # geometry-only needs no semantic weights


def test_open_clip_dense_and_text(tiny_clip: OpenCLIPEncoder) -> None:
    x = torch.rand(2, 3, 30, 50)
    feats = tiny_clip(x, grid=(2, 3))
    assert feats.shape == (2, tiny_clip.embed_dim, 2, 3)
    assert tiny_clip(x).shape == (2, tiny_clip.embed_dim, 2, 3)  # nearest patch multiple: 32 x 48
    text = tiny_clip.encode_text(["a chair", "a table", "a chair"])
    assert text.shape == (3, tiny_clip.embed_dim)
    assert torch.allclose(text.norm(dim=-1), torch.ones(3), atol=1e-5) and torch.equal(text[0], text[2])
    tiny_clip.train()
    assert not tiny_clip.training and not any(p.requires_grad for p in tiny_clip.parameters())
    tokens_mode = OpenCLIPEncoder(tiny_clip.model, tiny_clip.tokenizer, dense_mode="tokens")
    other = tokens_mode(x, grid=(2, 3))
    assert other.shape == feats.shape and not torch.allclose(other, feats)


def test_maskclip_features_are_value_embeddings(tiny_clip: OpenCLIPEncoder) -> None:
    """With one block, MaskCLIP features depend on each patch alone (no attention mixing)."""
    x = torch.rand(1, 3, 32, 48)
    y = x.clone()
    y[..., :16, :16] = torch.rand(3, 16, 16)  # change patch (0, 0) only
    a, b = tiny_clip(x), tiny_clip(y)
    diff = (a - b).abs().amax(dim=1)[0]
    assert diff[0, 0] > 1e-4 and diff.flatten()[1:].max() == 0


def test_timm_encoder() -> None:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    enc = TimmViTEncoder(VisionTransformer(img_size=32, patch_size=16, embed_dim=24, depth=1, num_heads=2, num_classes=0))
    out = enc(torch.rand(3, 3, 48, 64))
    assert out.shape == (3, 24, 3, 4) and not enc.training
    # At the ViT's own size its position embedding needs no interpolation: timm's own patch tokens come out.
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    tokens = enc.model.forward_features((x - mean) / std)[:, 1:]  # [2, 4, 24], less the class token
    torch.testing.assert_close(enc(x), tokens.transpose(1, 2).reshape(2, 24, 2, 2))
    with pytest.raises(NotImplementedError, match="no text encoder"):
        enc.encode_text(["chair"])


# ----------------------------------------------------------------------------- teacher
CLASSES = ["unlabeled", "wall", "floor", "chair", "table", "sofa"]


def test_teacher_text_encoding() -> None:
    t = OfflineTeacher(CLASSES, dim=16, seed=0)
    emb = t.class_embeddings()
    assert torch.allclose(emb @ emb.T, torch.eye(len(CLASSES)), atol=1e-5)  # orthonormal
    for text in ["chair", "a chair", "chairs", "A photo of a chair.", "the Chair"]:
        assert torch.equal(t.encode_text([text])[0], emb[3]), text
    assert torch.equal(t.encode_text(["tables", "sofas"]), emb[[4, 5]])
    with pytest.raises(KeyError, match="not one of the classes"):
        t.encode_text(["a giraffe"])


def test_teacher_with_text_encoder(tiny_clip: OpenCLIPEncoder) -> None:
    t = OfflineTeacher(CLASSES, dim=tiny_clip.embed_dim, seed=0, text_encoder=tiny_clip.encode_text)
    assert torch.allclose(t.class_embeddings(), tiny_clip.encode_text(CLASSES), atol=1e-6)
    assert torch.allclose(t.encode_text(["a giraffe"])[0], tiny_clip.encode_text(["a giraffe"])[0], atol=1e-6)
    assert torch.equal(t.encode_text(["chairs"])[0], t.class_embeddings()[3])


def test_teacher_features_flaws_and_determinism() -> None:
    labels = torch.zeros(2, 24, 24, dtype=torch.long)
    labels[:, :, 12:] = 3
    views = torch.tensor([0, 7])
    clean = OfflineTeacher(CLASSES, dim=16, seed=0)
    f = clean.features(labels, views)
    assert torch.equal(f, clean.class_embeddings()[labels].permute(0, 3, 1, 2))
    noisy = OfflineTeacher(CLASSES, dim=16, noise=0.3, blur=0.0, view_bias=0.5, seed=4)
    a, b = noisy.features(labels, views), noisy.features(labels, views)
    assert torch.equal(a, b)  # deterministic
    again = noisy.features(labels[:1], views[1:])  # view 7 alone gives the same map
    assert torch.equal(again[0], a[1])
    assert not torch.allclose(a[0], a[1])  # views differ
    assert torch.allclose(a.norm(dim=1), torch.ones(2, 24, 24), atol=1e-5)
    # the class still dominates: cosine to the true class beats every other class
    sims = torch.einsum("sdhw,cd->schw", a, noisy.class_embeddings())
    assert (sims.argmax(1) == labels).float().mean() > 0.99
    blurred = OfflineTeacher(CLASSES, dim=16, blur=2.0, seed=0).features(labels, views)
    emb = clean.class_embeddings()
    assert torch.allclose(blurred[0, :, 5, 2], emb[0], atol=1e-4)  # far from the boundary: exact class
    mid = blurred[0, :, 5, 11]  # next to the boundary: a mix of both classes
    assert 0.2 < float(mid @ emb[3]) < float(mid @ emb[0]) < 0.99
    with pytest.raises(ValueError, match="labels must lie"):
        clean.features(torch.full((1, 4, 4), 9), torch.tensor([0]))



def test_teacher_noise_from_threads_and_chunks_equals_one_view_at_a_time() -> None:
    """The per-view noise is drawn ahead in parallel threads: the values are those of one view at a time, and each
    view still has its own flaws."""
    from ff3r_ns.core.semantics import teacher_targets

    teacher = OfflineTeacher(CLASSES, dim=16, noise=0.3, blur=1.5, view_bias=0.1, seed=3)
    ids = [4, 0, 9, 2, 7]
    together = teacher.view_offsets(ids, 12, 10)
    assert together.shape == (5, 16, 12, 10)
    for k, v in enumerate(ids):
        assert torch.equal(together[k], teacher.view_offset(v, 12, 10))
    assert not torch.allclose(together[0], together[1], atol=0.05)
    assert teacher.view_offsets([], 12, 10).shape == (0, 16, 12, 10)
    assert len(list(teacher.iter_view_offsets(range(40), 4, 4))) == 40  # more views than the look-ahead window
    labels = torch.randint(0, len(CLASSES), (7, 24, 20), generator=torch.Generator().manual_seed(0))
    targets = teacher_targets(teacher, labels, CLASSES, (12, 10))
    assert targets.shape == (7, 12, 10, 16)
    for i in (0, 6):
        one = F.interpolate(teacher.features(labels[i : i + 1], torch.tensor([i])), size=(12, 10), mode="area")
        assert (targets[i] - F.normalize(one, dim=1)[0].permute(1, 2, 0)).abs().max() < 1e-6
    assert not torch.allclose(targets[0], teacher_targets(teacher, labels[1:2], CLASSES, (12, 10))[0], atol=0.05)

# ----------------------------------------------------------------------------- heads and layers
def test_gaussian_head_activation_ties_scale_to_footprint() -> None:
    head = GaussianHead(8, (0, 0, 0, 0), GaussianLayout(1, 4), features=8, out_channels=(4, 4, 4, 4))
    s, h, w = 2, 4, 6
    raw = torch.zeros(s, head.layout.channels, h, w)
    imgs = torch.rand(s, 3, h, w)
    depth = torch.rand(s, h, w) + 1.0
    rot = quat_to_mat(torch.tensor([[0.1, 0.2, 0.3, 0.9], [0.0, 0.0, 0.0, 1.0]]))
    w2c = torch.eye(4).repeat(s, 1, 1)
    w2c[:, :3, :3] = rot
    k = intrinsics_matrix(torch.tensor([10.0, 20.0]), torch.tensor([10.0, 20.0]), torch.full((2,), 3.0), torch.full((2,), 2.0))
    cams = Cameras(w2c, k, w, h)
    g = head.to_gaussians(raw, imgs, depth, unproject_depth(depth, cams), cams)
    foot = depth.reshape(s, -1) / torch.tensor([10.0, 20.0])[:, None]
    assert torch.allclose(g.scales, math.log(2) * foot[..., None].expand(-1, -1, 3), rtol=1e-6)
    assert torch.allclose(g.sh[:, :, 0], rgb_to_sh(imgs.permute(0, 2, 3, 1).reshape(s, -1, 3)), atol=1e-6)
    assert torch.equal(g.sh[:, :, 1:], torch.zeros(s, h * w, 3, 3)) and g.sh.shape[2] == 4
    # zero raw rotation = the camera's own orientation in the world: quat(c2w)
    c2w_rot = invert_rigid(w2c)[:, :3, :3]
    wxyz = g.quats[:, 0]
    assert torch.allclose(quat_to_mat(torch.cat([wxyz[:, 1:], wxyz[:, :1]], -1)), c2w_rot, atol=1e-5)
    assert torch.allclose(g.opacities, torch.full((s, h * w), 0.5))


def test_rope_is_relative() -> None:
    rope = RotaryPositionEmbedding2D(100.0)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)

    def dot(pq, pk):
        return float((rope(q, torch.tensor([[pq]])) * rope(k, torch.tensor([[pk]]))).sum())

    assert dot([1, 2], [3, 5]) == pytest.approx(dot([4, 3], [6, 6]), abs=1e-5)  # same offset (2, 3)
    assert dot([1, 2], [3, 5]) != pytest.approx(dot([1, 2], [3, 6]), abs=1e-3)
    pos = patch_positions(1, 2, 3, num_special=5)
    assert pos.shape == (1, 11, 2) and pos[0, :5].abs().sum() == 0 and pos[0, 5].tolist() == [1, 1]
    x = torch.randn(1, 2, 11, 16, generator=g)
    assert torch.allclose(rope(x, pos).norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_pos_embed_interpolation() -> None:
    pe = torch.randn(1, 1 + 16, 8)
    assert interpolate_pos_embed(pe, 4, 4) is pe
    out = interpolate_pos_embed(pe, 2, 6)
    assert out.shape == (1, 13, 8) and torch.equal(out[:, 0], pe[:, 0])


def test_camera_head_iterations() -> None:
    torch.manual_seed(0)
    head = CameraHead(16, trunk_depth=1, num_heads=2, iterations=3)
    preds = head(torch.randn(4, 16), all_iterations=True)
    assert len(preds) == 3 and all(p.shape == (4, 9) for p in preds)
    assert (preds[-1][:, 7:] >= 0).all()
    assert preds[-1][:, 7:].mean().item() == pytest.approx(1.0, abs=0.3)  # prior ~1 rad field of view


# ----------------------------------------------------------------------------- gradients
def test_gradients_reach_every_trainable_parameter() -> None:
    torch.manual_seed(3)
    model = FF3R(FF3RConfig.tiny()).train()
    with torch.no_grad():
        for blk in model.fusion.blocks.values():  # otherwise q/kv get exactly zero gradient (zero out-proj)
            blk.out.weight.normal_(std=0.1)
    out = model(_images(3))
    g = out.gaussians
    loss = (
        out.depth.mean() + out.depth_conf.mean() + out.pose_enc[1:].pow(2).sum()
        + g.opacities.mean() + g.scales.mean() + g.quats[..., 1:].mean() + g.sh.mean() + g.confidence.mean()
        + model.feature_decoder(g.features).pow(2).mean()
    )
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert no_grad == []
    assert not any(p.requires_grad for p in model.semantic_encoder.parameters())  # frozen
    for name in ("camera_head", "depth_head", "gaussian_head", "feature_decoder", "aggregator", "fusion"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert grads and all(torch.isfinite(gr).all() for gr in grads), name


# ----------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_bf16_forward_on_gpu() -> None:
    torch.manual_seed(0)
    cfg = FF3RConfig.tiny()
    model = FF3R(replace(cfg, bf16=True)).cuda().eval()
    imgs = _images(4).cuda()
    with torch.no_grad():
        out = model(imgs)
        model.config = replace(cfg, bf16=False)
        ref = model(imgs)
    assert out.depth.dtype == torch.float32 and torch.isfinite(out.depth).all()
    assert torch.allclose(out.depth, ref.depth, rtol=0.05)
    assert torch.equal(out.cameras.world_to_cam[0], torch.eye(4, device="cuda"))


@pytest.mark.gpu
def test_teacher_targets_on_gpu_equal_the_cpu_ones() -> None:
    """Refinement computes the teacher's targets on the run's device; the noise comes from CPU generators either way."""
    from ff3r_ns.core.network.teacher import OfflineTeacher
    from ff3r_ns.core.semantics import teacher_targets

    classes = ["unlabeled", "wall", "floor", "chair"]
    teacher = OfflineTeacher(classes, dim=16, noise=0.3, blur=1.5, view_bias=0.1, seed=3)
    labels = torch.randint(0, 4, (3, 40, 56), generator=torch.Generator().manual_seed(0))
    cpu = teacher_targets(teacher, labels, classes, (20, 28))
    gpu = teacher_targets(teacher, labels.cuda(), classes, (20, 28))
    # cuDNN may blur in TF32 (torch's default for convolutions): ~1e-3 of unit-norm features; a missing blur, noise
    # or view bias moves them by more than 0.05
    assert gpu.device.type == "cuda" and (gpu.cpu() - cpu).abs().max() < 2e-3


def test_rope_matches_vggt_table_formula() -> None:
    """VGGT builds cos/sin tables (inv_freq = base^(-2i/d), angles duplicated) and looks them up per axis."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 11, 16, generator=g)
    pos = patch_positions(2, 2, 3, num_special=5)
    half = 8
    inv = 1.0 / (100.0 ** (torch.arange(0, half, 2).float() / half))
    table = torch.einsum("i,j->ij", torch.arange(int(pos.max()) + 1).float(), inv)
    cos, sin = torch.cat([table, table], -1).cos(), torch.cat([table, table], -1).sin()
    parts = []
    for axis, part in enumerate(x.chunk(2, dim=-1)):
        c, s = torch.nn.functional.embedding(pos[..., axis], cos)[:, None], torch.nn.functional.embedding(pos[..., axis], sin)[:, None]
        p1, p2 = part.chunk(2, dim=-1)
        parts.append(part * c + torch.cat([-p2, p1], dim=-1) * s)
    assert torch.allclose(RotaryPositionEmbedding2D(100.0)(x, pos), torch.cat(parts, dim=-1), atol=1e-6)
