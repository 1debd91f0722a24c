"""Typed configuration of the FF3R network (geometry encoder, semantic encoder, fusion, heads).

Presets are classmethods of :class:`FF3RConfig` (``tiny``, ``base``, ``vggt_1b``); variants are made
with :func:`dataclasses.replace`, e.g. ``replace(cfg, fusion=replace(cfg.fusion, enable_fusion=False))``.

Example:
    >>> cfg = FF3RConfig.tiny()
    >>> cfg.geometry.embed_dim, cfg.geometry.depth
    (64, 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Optional, Tuple


@dataclass
class GeometryConfig:
    """The VGGT-style alternating-attention aggregator (https://arxiv.org/abs/2503.11651)."""

    img_size: int = 518
    """Image size the patch-embed position grid was trained at (518 / 14 = 37 patches a side);
    other sizes interpolate the position embedding."""
    patch_size: int = 14
    """Pixels per patch side; input H and W must be multiples of it."""
    embed_dim: int = 1024
    """Token width of the aggregator (and of the DINOv2 patch embedder, whose tokens it consumes)."""
    depth: int = 24
    """Number of frame blocks (and equally of global blocks)."""
    num_heads: int = 16
    """Attention heads in frame and global blocks."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of ``embed_dim``."""
    num_register_tokens: int = 4
    """Register tokens per view (after the one camera token)."""
    qk_norm: bool = True
    """LayerNorm on queries and keys per head (VGGT uses it in the aggregator)."""
    rope_freq: float = 100.0
    """Base frequency of the 2D rotary position embedding; <= 0 disables RoPE."""
    init_values: float = 0.01
    """LayerScale initial value in aggregator blocks."""
    patch_embed: Literal["dinov2", "conv"] = "dinov2"
    """``dinov2``: a DINOv2-with-registers ViT embeds patches (VGGT's default); ``conv``: one conv."""
    patch_embed_depth: int = 24
    """Blocks of the DINOv2 patch embedder (ViT-L: 24)."""
    patch_embed_num_heads: int = 16
    """Heads of the DINOv2 patch embedder."""
    frame_chunk_size: int = 16
    """Views processed together in frame attention; bounds activation memory for many views."""
    grad_checkpoint: bool = False
    """Recompute block activations in backward (training memory for compute)."""


@dataclass
class SemanticConfig:
    """The 2D semantic encoder whose dense patch features feed the fusion layers."""

    kind: Literal["open_clip", "timm"] = "open_clip"
    """Library that builds the encoder: ``open_clip`` (CLIP, with a text side) or ``timm`` (e.g. DINO)."""
    model_name: str = "ViT-B-16"
    """Architecture name in that library (``ViT-B-16``; ``vit_small_patch16_224_dino`` for timm)."""
    checkpoint: Optional[str] = None
    """Local weights file. Flag: ``--pipeline.model.network.semantic.checkpoint``."""
    pretrained: Optional[str] = None
    """Library pretrained tag (downloads when online), e.g. ``openai`` / ``laion2b_s34b_b88k`` for
    open_clip or ``true`` for timm. Flag: ``--pipeline.model.network.semantic.pretrained``."""
    weights: Literal["load", "random"] = "load"
    """``load`` requires ``checkpoint`` or ``pretrained``; ``random`` (tests, tiny runs) allows random init."""
    freeze: bool = True
    """Keep the encoder frozen (no gradients, eval mode)."""
    dense_mode: Literal["maskclip", "tokens"] = "maskclip"
    """open_clip only: how dense features are read. ``maskclip`` takes the last block's value
    embedding (MaskCLIP, https://arxiv.org/abs/2112.01071), which localises far better than
    ``tokens`` (last-layer patch tokens through ``ln_post`` and ``proj``)."""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    """Architecture overrides passed to ``open_clip.create_model`` / ``timm.create_model`` (tiny test models)."""
    grid_patch: Optional[int] = None
    """Input pixels per cell of the dense feature grid the network asks the encoder for (None: the geometry patch
    size, so the grid is the geometry token grid). Finer grids reach the Gaussian features through
    ``FusionConfig.feature_skip``; the fusion layers resample them to the token grid."""


@dataclass
class FusionConfig:
    """Token-wise cross-attention fusion of semantic tokens into geometric tokens."""

    enable_fusion: bool = True
    """Off: no fusion module is built or called, and the semantic encoder is not run by the network."""
    layers: Tuple[int, ...] = (5, 11, 17, 23)
    """Aggregator depths after whose frame+global block pair the fusion runs."""
    direction: Literal["geo_queries_sem", "sem_queries_geo"] = "geo_queries_sem"
    """``geo_queries_sem``: geometric tokens are queries, semantic tokens keys/values (default);
    ``sem_queries_geo``: semantic tokens query geometric tokens and the result is added, grid-aligned,
    to the geometric tokens."""
    num_heads: int = 8
    """Heads of each fusion cross-attention."""
    feature_skip: bool = False
    """Also add the semantic encoder's features, resampled to pixels, to the Gaussian head's semantic feature
    channels through a zero-initialised 1x1 convolution (a direct path, as LSM feeds its 2D features to the Gaussian
    head): the fused geometry tokens alone are a narrow channel for semantics. Off in checkpoints made before it."""
    feature_refine_width: int = 0
    """With ``feature_skip``: width of an image-guided refinement added to the skip (two 3x3 convolutions on the
    upsampled features and the RGB image, then a zero-initialised 1x1 output), which can sharpen the encoder's coarse
    grid at image edges; 0: the linear skip alone."""


@dataclass
class HeadsConfig:
    """Camera, depth and Gaussian heads."""

    dpt_layers: Tuple[int, int, int, int] = (4, 11, 17, 23)
    """Aggregator layers whose tokens feed the DPT heads (VGGT's ``intermediate_layer_idx``)."""
    dpt_features: int = 256
    """DPT fusion width of the depth head."""
    dpt_out_channels: Tuple[int, int, int, int] = (256, 512, 1024, 1024)
    """DPT per-level projection widths of the depth head."""
    camera_trunk_depth: int = 4
    """Transformer blocks in the camera head's trunk."""
    camera_num_heads: int = 16
    """Heads of the camera trunk."""
    camera_iterations: int = 4
    """Iterative refinement steps of the camera head."""
    camera_init_values: float = 0.01
    """LayerScale initial value of the camera trunk's blocks (VGGT: 0.01); only initialisation, trained
    weights overwrite it."""
    gaussian_dpt_features: int = 128
    """DPT fusion width of the Gaussian head (kept smaller: it runs at full resolution)."""
    gaussian_dpt_out_channels: Tuple[int, int, int, int] = (128, 256, 512, 512)
    """DPT per-level projection widths of the Gaussian head."""
    feature_dim: int = 32
    """Low-dimensional semantic feature per Gaussian (rendered, then decoded to ``teacher_dim``)."""
    teacher_dim: int = 512
    """Width of the teacher features the :class:`FeatureDecoder` maps to."""
    sh_degree: int = 0
    """Spherical-harmonics degree of the Gaussian colour."""
    frames_chunk_size: int = 8
    """Views processed together in the dense heads (memory)."""
    anchor_first_view: bool = True
    """Re-express all predicted poses relative to the first, so its extrinsics are exactly identity."""
    fov_range: Tuple[float, float] = (0.1, 3.0)
    """Predicted fields of view (radians) are clamped into this range so intrinsics stay finite."""


@dataclass
class FF3RConfig:
    """The whole network."""

    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    """Geometry encoder (aggregator)."""
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    """Semantic encoder."""
    fusion: FusionConfig = field(default_factory=FusionConfig)
    """Fusion layers."""
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    """Prediction heads."""
    bf16: bool = True
    """Run the aggregator, encoders and fusion under bf16 autocast on CUDA (heads stay fp32, as VGGT)."""

    def validate(self) -> None:
        """Raise ``ValueError`` on inconsistent settings."""
        g, h, f = self.geometry, self.heads, self.fusion
        if g.embed_dim % g.num_heads:
            raise ValueError(f"geometry.embed_dim {g.embed_dim} is not divisible by num_heads {g.num_heads}")
        if (g.embed_dim // g.num_heads) % 4 and g.rope_freq > 0:
            raise ValueError("2D RoPE needs a head dimension divisible by 4")
        for name, layers in (("heads.dpt_layers", h.dpt_layers), ("fusion.layers", f.layers if f.enable_fusion else ())):
            bad = [i for i in layers if not 0 <= i < g.depth]
            if bad:
                raise ValueError(f"{name} {bad} out of range for geometry.depth={g.depth}")
        if len(h.dpt_layers) != 4:
            raise ValueError("heads.dpt_layers needs exactly 4 layers (DPT's four levels)")
        if (2 * g.embed_dim) % h.camera_num_heads:
            raise ValueError("camera trunk width 2*embed_dim must be divisible by heads.camera_num_heads")
        if g.embed_dim % f.num_heads and f.enable_fusion:
            raise ValueError("geometry.embed_dim must be divisible by fusion.num_heads")

    # ------------------------------------------------------------------ presets
    @classmethod
    def vggt_1b(cls) -> "FF3RConfig":
        """VGGT-1B geometry (24+24 blocks, width 1024, 16 heads, DINOv2 ViT-L patch embed)."""
        return cls()

    @classmethod
    def base(cls) -> "FF3RConfig":
        """A mid-size model: width 768, 12+12 blocks, DINOv2 ViT-B-like patch embed."""
        geometry = GeometryConfig(embed_dim=768, depth=12, num_heads=12, patch_embed_depth=12, patch_embed_num_heads=12)
        heads = HeadsConfig(
            dpt_layers=(2, 5, 8, 11), dpt_out_channels=(192, 384, 768, 768), camera_num_heads=12,
        )
        return cls(geometry=geometry, heads=heads, fusion=FusionConfig(layers=(2, 5, 8, 11)))

    @classmethod
    def tiny(cls) -> "FF3RConfig":
        """CPU test size: width 64, 2+2 blocks, one-block patch embed, a random one-layer CLIP."""
        geometry = GeometryConfig(
            img_size=56, embed_dim=64, depth=2, num_heads=4, patch_embed_depth=1, patch_embed_num_heads=4,
            frame_chunk_size=2,
        )
        semantic = SemanticConfig(weights="random", model_kwargs=tiny_open_clip_kwargs())
        heads = HeadsConfig(
            dpt_layers=(0, 1, 1, 1), dpt_features=16, dpt_out_channels=(8, 16, 32, 32),
            camera_trunk_depth=1, camera_num_heads=4, camera_iterations=2,
            gaussian_dpt_features=16, gaussian_dpt_out_channels=(8, 16, 32, 32),
            feature_dim=8, teacher_dim=16, frames_chunk_size=2,
        )
        fusion = FusionConfig(layers=(0, 1), num_heads=4)
        return cls(geometry=geometry, semantic=semantic, fusion=fusion, heads=heads, bf16=False)

    @classmethod
    def tiny_semantic(cls) -> "FF3RConfig":
        """The shipped network (``ff3r_ns/weights/ff3r_tiny.pt``): :meth:`tiny` with the stand-in semantic encoder
        of ``ff3r-pretrain-semantic`` (width 64, 3 blocks, patch 7, read as a 12x12 grid at 84 px; its weights are in
        the checkpoint) feeding the Gaussian features straight through the feature skip and its image-guided
        refinement, and no fusion blocks (measured better than fusion for the tiny width: README, The shipped model)."""
        base = cls.tiny()
        semantic = replace(base.semantic, dense_mode="tokens", model_kwargs=standin_open_clip_kwargs(), grid_patch=7)
        fusion = replace(base.fusion, layers=(), feature_skip=True, feature_refine_width=32)
        return replace(base, semantic=semantic, fusion=fusion)

    def with_fusion(self, enable: bool) -> "FF3RConfig":
        """This config with fusion switched on or off."""
        return replace(self, fusion=replace(self.fusion, enable_fusion=enable))


def tiny_open_clip_kwargs() -> dict[str, Any]:
    """Architecture overrides for a one-layer, width-32 open_clip CLIP (tests; random weights only)."""
    return {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }


def standin_open_clip_kwargs(
    width: int = 64, layers: int = 3, heads: int = 4, patch_size: int = 7, dim: int = 16
) -> dict[str, Any]:
    """``open_clip.create_model`` overrides of the stand-in semantic encoder (``ff3r-pretrain-semantic``): a small
    ViT whose projection outputs the teacher's ``dim`` channels; the text side is a stub (only images are used).
    The defaults are the committed ``ff3r_ns/weights/semantic_standin.pt``'s."""
    if width % heads:
        raise ValueError(f"width {width} is not a multiple of heads {heads}")
    return {
        "embed_dim": dim,
        "vision_cfg": {"image_size": 8 * patch_size, "layers": layers, "width": width, "patch_size": patch_size,
                       "head_width": width // heads},
        "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
    }


PRESETS: Tuple[str, ...] = ("tiny", "tiny_semantic", "base", "vggt_1b")
"""Names of the :class:`FF3RConfig` preset classmethods (``--preset`` of the training and evaluation commands)."""


def preset(name: str) -> FF3RConfig:
    """The preset architecture ``name`` (one of :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return getattr(FF3RConfig, name)()
