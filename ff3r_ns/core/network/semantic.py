"""Semantic encoders behind one interface: dense patch features (and text embeddings where there is a text side).

* :class:`OpenCLIPEncoder` -- CLIP through open_clip. Dense features are, by default, MaskCLIP-style
  (https://arxiv.org/abs/2112.01071): the last block's *value* embedding of every patch, through the
  output projection, ``ln_post`` and ``proj``, without the last block's query-key attention, residual
  and MLP (ClearCLIP, https://arxiv.org/abs/2407.12442, shows the residual and MLP hurt locality).
  This puts patch features in the joint image-text space, so text queries segment them directly.
  ``dense_mode="tokens"`` instead takes the last layer's patch tokens through ``ln_post`` and ``proj``.
* :class:`TimmViTEncoder` -- a timm ViT (e.g. DINO): last-layer normalised patch tokens; no text side.

Weights come from a local file (``checkpoint``) or a library tag (``pretrained``, which may download);
with neither, construction fails with a message naming the flag, unless ``weights="random"``.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ff3r_ns.core.network.config import SemanticConfig
from ff3r_ns.core.network.layers import interpolate_pos_embed

CHECKPOINT_FLAG = "--pipeline.model.network.semantic.checkpoint"
PRETRAINED_FLAG = "--pipeline.model.network.semantic.pretrained"


class MissingWeightsError(ValueError):
    """A pretrained component was asked for without a checkpoint path or pretrained tag."""


def resolve_weights(config: SemanticConfig) -> Optional[str]:
    """The checkpoint path or pretrained tag to load, None for random init, or a clear error."""
    if config.checkpoint:
        if not os.path.isfile(config.checkpoint):
            raise FileNotFoundError(f"semantic encoder checkpoint {config.checkpoint!r} does not exist ({CHECKPOINT_FLAG})")
        return config.checkpoint
    if config.pretrained:
        return config.pretrained
    if config.weights == "random":
        return None
    raise MissingWeightsError(
        f"The semantic encoder {config.kind}:{config.model_name} needs weights: pass a local file with "
        f"{CHECKPOINT_FLAG} PATH, or a library tag with {PRETRAINED_FLAG} TAG (downloads when online). "
        "Random weights are only for tests (weights='random')."
    )


class SemanticEncoder(nn.Module):
    """Interface: ``forward(images [S, 3, H, W] in [0, 1]) -> [S, D, h, w]``; ``encode_text(texts) -> [T, D]``.

    Attributes:
        embed_dim: ``D``.
        patch_size: pixels per output feature cell.
        frozen: no gradients; stays in eval mode.
    """

    embed_dim: int
    patch_size: int
    frozen: bool

    def __init__(self, mean: Sequence[float], std: Sequence[float], freeze: bool) -> None:
        super().__init__()
        self.register_buffer("_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.frozen = freeze

    def _freeze_if_needed(self) -> None:
        if self.frozen:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> "SemanticEncoder":
        return super().train(mode and not self.frozen)

    def _prepare(self, images: Tensor, grid: Optional[tuple[int, int]]) -> tuple[Tensor, tuple[int, int]]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"semantic encoder expects images [S, 3, H, W], got {tuple(images.shape)}")
        p = self.patch_size
        if grid is None:
            grid = (max(1, round(images.shape[-2] / p)), max(1, round(images.shape[-1] / p)))
        size = (grid[0] * p, grid[1] * p)
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
        return (images - self._mean.to(images.dtype)) / self._std.to(images.dtype), grid

    def forward(self, images: Tensor, grid: Optional[tuple[int, int]] = None) -> Tensor:
        """Dense features ``[S, D, gh, gw]``; images are resized to ``grid * patch_size`` (default: the
        nearest multiple of the patch size)."""
        x, grid = self._prepare(images, grid)
        with torch.no_grad() if self.frozen else nullcontext():
            tokens = self._dense_tokens(x, grid)  # [S, gh*gw, D]
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *grid)

    def _dense_tokens(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        raise NotImplementedError

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """Unit-norm text embeddings ``[T, D]`` in the dense features' space."""
        raise NotImplementedError(
            f"{type(self).__name__} has no text encoder; use the open_clip encoder or the OfflineTeacher for text queries"
        )


class _LazyTokenizer:
    """open_clip's tokenizer for ``model_name``, built on first use: building it reads its vocabulary (about 0.1 s
    of every ``ns-train ff3r`` set-up), and refinement never encodes text."""

    def __init__(self, model_name: str, context_length: int) -> None:
        self.model_name, self.context_length = model_name, context_length
        self._tokenizer: Optional[Callable[[list[str]], Tensor]] = None

    def __call__(self, texts: list[str]) -> Tensor:
        if self._tokenizer is None:
            import open_clip

            self._tokenizer = open_clip.get_tokenizer(self.model_name, context_length=self.context_length)
        return self._tokenizer(texts)


class OpenCLIPEncoder(SemanticEncoder):
    """CLIP image + text encoder from open_clip.

    Args:
        model: an ``open_clip.CLIP`` with a ViT vision tower.
        tokenizer: the matching open_clip tokenizer.
        dense_mode: ``maskclip`` or ``tokens`` (module docstring).
        freeze: keep frozen.

    Example:
        >>> import open_clip
        >>> m = open_clip.create_model("ViT-B-16", pretrained=None, embed_dim=16,
        ...     vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=16, head_width=16),
        ...     text_cfg=dict(context_length=8, vocab_size=49408, width=32, heads=2, layers=1))
        >>> enc = OpenCLIPEncoder(m, open_clip.get_tokenizer("ViT-B-16", context_length=8))
        >>> enc(torch.rand(2, 3, 32, 48)).shape, enc.encode_text(["a chair"]).shape
        (torch.Size([2, 16, 2, 3]), torch.Size([1, 16]))
    """

    def __init__(self, model: nn.Module, tokenizer, dense_mode: str = "maskclip", freeze: bool = True) -> None:
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        visual = model.visual
        if not hasattr(visual, "conv1"):
            raise ValueError("OpenCLIPEncoder needs an open_clip ViT vision tower (conv1 / transformer / proj)")
        mean = getattr(visual, "image_mean", None) or OPENAI_DATASET_MEAN
        std = getattr(visual, "image_std", None) or OPENAI_DATASET_STD
        super().__init__(mean, std, freeze)
        if dense_mode not in ("maskclip", "tokens"):
            raise ValueError(f"dense_mode must be 'maskclip' or 'tokens', got {dense_mode!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.dense_mode = dense_mode
        self.patch_size = visual.conv1.kernel_size[0]
        self.embed_dim = visual.proj.shape[1]
        self._freeze_if_needed()

    @classmethod
    def from_config(cls, config: SemanticConfig) -> "OpenCLIPEncoder":
        import open_clip

        weights = resolve_weights(config)
        model = open_clip.create_model(config.model_name, pretrained=weights, **config.model_kwargs)
        ctx = model.context_length if hasattr(model, "context_length") else 77
        return cls(model, _LazyTokenizer(config.model_name, ctx), config.dense_mode, config.freeze)

    def _dense_tokens(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        v = self.model.visual
        t = v.conv1(x).flatten(2).transpose(1, 2)  # [S, N, W]
        cls = v.class_embedding.to(t.dtype).expand(t.shape[0], 1, -1)
        t = torch.cat([cls, t], dim=1)
        t = t + interpolate_pos_embed(v.positional_embedding[None], *grid).to(t.dtype)
        t = v.ln_pre(t)
        blocks = v.transformer.resblocks
        batch_first = getattr(v.transformer, "batch_first", True)
        t = t if batch_first else t.transpose(0, 1)
        for blk in blocks[:-1]:
            t = blk(t)
        last = blocks[-1]
        t = t if batch_first else t.transpose(0, 1)
        if self.dense_mode == "maskclip":
            attn = last.attn
            width = t.shape[-1]
            y = last.ln_1(t)
            vals = F.linear(y, attn.in_proj_weight[2 * width :], attn.in_proj_bias[2 * width :])
            t = last.ls_1(attn.out_proj(vals))
        else:
            t = last(t if batch_first else t.transpose(0, 1))
            t = t if batch_first else t.transpose(0, 1)
        return v.ln_post(t[:, 1:]) @ v.proj

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        device = self._mean.device
        tokens = self.tokenizer(list(texts)).to(device)
        with torch.no_grad() if self.frozen else nullcontext():
            return F.normalize(self.model.encode_text(tokens), dim=-1)


class TimmViTEncoder(SemanticEncoder):
    """A timm ViT (e.g. DINO ``vit_small_patch16_224_dino``): normalised last-layer patch tokens.

    Args:
        model: a timm ``VisionTransformer``.
        freeze: keep frozen.

    Example:
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> vit = VisionTransformer(img_size=32, patch_size=16, embed_dim=48, depth=1, num_heads=2, num_classes=0)
        >>> TimmViTEncoder(vit)(torch.rand(2, 3, 32, 48)).shape
        torch.Size([2, 48, 2, 3])
    """

    def __init__(self, model: nn.Module, freeze: bool = True) -> None:
        cfg = getattr(model, "default_cfg", None) or {}
        super().__init__(cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225)), freeze)
        if not hasattr(model, "patch_embed") or not hasattr(model, "blocks"):
            raise ValueError("TimmViTEncoder needs a timm VisionTransformer (patch_embed / blocks / norm)")
        self.model = model
        self.patch_size = model.patch_embed.proj.kernel_size[0]
        self.embed_dim = model.embed_dim
        self.num_prefix = 1 + (1 if getattr(model, "dist_token", None) is not None else 0)
        self._freeze_if_needed()

    @classmethod
    def from_config(cls, config: SemanticConfig) -> "TimmViTEncoder":
        import timm

        weights = resolve_weights(config)
        kwargs = dict(config.model_kwargs, num_classes=0)
        if weights is None:
            model = timm.create_model(config.model_name, pretrained=False, **kwargs)
        elif config.checkpoint:
            model = timm.create_model(config.model_name, pretrained=False, checkpoint_path=config.checkpoint, **kwargs)
        else:
            model = timm.create_model(config.model_name, pretrained=True, **kwargs)
        return cls(model, config.freeze)

    def _dense_tokens(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        m = self.model
        t = m.patch_embed.proj(x).flatten(2).transpose(1, 2)
        prefix = [m.cls_token.expand(t.shape[0], -1, -1)]
        if self.num_prefix == 2:
            prefix.append(m.dist_token.expand(t.shape[0], -1, -1))
        t = torch.cat([*prefix, t], dim=1)
        t = t + interpolate_pos_embed(m.pos_embed, *grid, num_prefix=self.num_prefix).to(t.dtype)
        for blk in m.blocks:
            t = blk(t)
        return m.norm(t)[:, self.num_prefix :]


def build_semantic_encoder(config: SemanticConfig) -> SemanticEncoder:
    """The encoder that ``config.kind`` names (see :class:`SemanticConfig`)."""
    if config.kind == "open_clip":
        return OpenCLIPEncoder.from_config(config)
    if config.kind == "timm":
        return TimmViTEncoder.from_config(config)
    raise ValueError(f"SemanticConfig.kind must be 'open_clip' or 'timm', got {config.kind!r}")
