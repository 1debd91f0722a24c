"""Token-wise cross-attention fusion of semantic tokens into the geometry encoder.

FF3R injects semantic context into the geometric tokens at several depths of the geometry transformer.
Each fusion layer is a residual cross-attention whose output projection starts at zero, so enabling
fusion on top of a pretrained geometry encoder changes nothing at step 0 (the ControlNet / zero-conv
idea, https://arxiv.org/abs/2302.05543) and the network learns how much semantics to let in.

Attention is per view: the patch tokens of view ``s`` attend to the semantic tokens of view ``s``.
Semantic features are resampled to the geometry patch grid and projected to the geometry width once
per forward (:meth:`SemanticFusion.prepare`). With ``FusionConfig.feature_skip`` they also reach the Gaussian head's
semantic features directly (:meth:`SemanticFusion.feature_residual`).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ff3r_ns.core.network.config import FusionConfig

_DIRECTIONS = ("geo_queries_sem", "sem_queries_geo")


class CrossAttentionFusion(nn.Module):
    """One residual cross-attention between grid-aligned geometric and semantic tokens.

    Args:
        dim: token width (the geometry width).
        num_heads: attention heads.
        direction: ``geo_queries_sem`` (geometric tokens query semantic ones) or ``sem_queries_geo``
            (semantic tokens query geometric ones; the result, aligned with the geometry grid, is added
            to the geometric tokens).
    """

    def __init__(self, dim: int, num_heads: int, direction: str = "geo_queries_sem") -> None:
        super().__init__()
        if direction not in _DIRECTIONS:
            raise ValueError(f"fusion direction must be one of {_DIRECTIONS}, got {direction!r}")
        self.direction = direction
        self.num_heads = num_heads
        self.norm_geo = nn.LayerNorm(dim)
        self.norm_sem = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, geo: Tensor, sem: Tensor) -> Tensor:
        """``geo [S, N, C]`` patch tokens, ``sem [S, N, C]`` semantic tokens -> updated ``geo [S, N, C]``."""
        g, m = self.norm_geo(geo), self.norm_sem(sem)
        queries, context = (g, m) if self.direction == "geo_queries_sem" else (m, g)
        s, n, c = queries.shape
        h, d = self.num_heads, c // self.num_heads
        q = self.q(queries).reshape(s, n, h, d).transpose(1, 2)
        k, v = self.kv(context).reshape(s, context.shape[1], 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        q, k, v = (t.to(v.dtype).contiguous() for t in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(s, n, c)
        return geo + self.out(att).to(geo.dtype)


class SemanticFusion(nn.Module):
    """Fusion layers at configured aggregator depths.

    Args:
        config: :class:`FusionConfig` (``layers``, ``direction``, ``num_heads``, ``feature_skip``).
        geo_dim: geometry token width ``C``.
        sem_dim: semantic feature width ``D``.
        feature_dim: the Gaussians' semantic feature width ``F`` (needed with ``config.feature_skip``).

    Example:
        >>> fusion = SemanticFusion(FusionConfig(layers=(0,), num_heads=2, feature_skip=True), 8, 6, feature_dim=4)
        >>> sem = fusion.prepare(torch.rand(2, 6, 5, 5), grid=(2, 3))
        >>> fusion(0, torch.rand(2, 1 + 6, 8), sem, patch_start_idx=1).shape
        torch.Size([2, 7, 8])
        >>> fusion.feature_residual(torch.rand(2, 6, 5, 5), size=(28, 42)).shape  # zero at initialisation
        torch.Size([2, 4, 28, 42])
    """

    def __init__(self, config: FusionConfig, geo_dim: int, sem_dim: int, feature_dim: int = 0) -> None:
        super().__init__()
        self.layers = frozenset(config.layers)
        self.sem_proj = nn.Linear(sem_dim, geo_dim)
        self.blocks = nn.ModuleDict(
            {str(i): CrossAttentionFusion(geo_dim, config.num_heads, config.direction) for i in sorted(self.layers)}
        )
        self.feature_skip: Optional[nn.Conv2d] = None
        if config.feature_skip:
            if feature_dim < 1:
                raise ValueError("FusionConfig.feature_skip needs the Gaussians' feature_dim")
            # Zero-initialised, as the fusion blocks' output: a trained network's predictions are unchanged at step 0.
            self.feature_skip = nn.Conv2d(sem_dim, feature_dim, 1)
            nn.init.zeros_(self.feature_skip.weight)
            nn.init.zeros_(self.feature_skip.bias)
        self.feature_refine: Optional[nn.Sequential] = None
        if config.feature_skip and config.feature_refine_width > 0:
            w = config.feature_refine_width
            self.feature_refine = nn.Sequential(
                nn.Conv2d(sem_dim + 3, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
                nn.Conv2d(w, feature_dim, 1),
            )
            nn.init.zeros_(self.feature_refine[-1].weight)
            nn.init.zeros_(self.feature_refine[-1].bias)

    def prepare(self, semantic: Tensor, grid: tuple[int, int]) -> Tensor:
        """Resample ``semantic [S, D, h, w]`` to the patch ``grid`` and project: ``[S, gh*gw, C]``."""
        if semantic.ndim != 4:
            raise ValueError(f"semantic features must be [S, D, h, w], got {tuple(semantic.shape)}")
        if tuple(semantic.shape[-2:]) != tuple(grid):
            semantic = F.interpolate(semantic, size=grid, mode="bilinear", align_corners=False)
        return self.sem_proj(semantic.flatten(2).transpose(1, 2).to(self.sem_proj.weight.dtype))

    def feature_residual(self, semantic: Tensor, size: tuple[int, int], images: Optional[Tensor] = None) -> Optional[Tensor]:
        """``semantic [S, D, h, w]`` resampled (bilinear) to ``size = (H, W)`` and mapped to ``[S, F, H, W]``, the
        residual added to the Gaussians' semantic features; None without ``feature_skip``. ``images [S, 3, H, W]`` in
        [0, 1] guide the refinement (``FusionConfig.feature_refine_width``), which needs them."""
        if self.feature_skip is None:
            return None
        weight = self.feature_skip.weight
        up = F.interpolate(semantic.to(weight.dtype), size=size, mode="bilinear", align_corners=False)
        out = self.feature_skip(up)
        if self.feature_refine is not None:
            if images is None or tuple(images.shape[-2:]) != tuple(size):
                raise ValueError(f"the feature refinement needs the images at {size}")
            out = out + self.feature_refine(torch.cat([up, images.to(weight.dtype) * 2 - 1], dim=1))
        return out

    @torch.no_grad()
    def start_feature_skip_as_inverse(self, decoder_weight: Tensor, decoder_bias: Tensor) -> None:
        """Set the skip to the pseudo-inverse of the feature decoder (``decoder_weight [D, F]``, ``decoder_bias [D]``),
        so that decoding the skip's output returns the encoder's features projected onto the decoder's span: a
        network whose Gaussian head has not learnt semantics starts from the encoder's instead of from nothing
        (it needs an encoder whose features are the teacher's kind, e.g. ``ff3r-pretrain-semantic``'s)."""
        if self.feature_skip is None:
            raise ValueError("this fusion module has no feature skip (FusionConfig.feature_skip)")
        pinv = torch.linalg.pinv(decoder_weight.detach().double())  # [F, D]
        if pinv.shape != self.feature_skip.weight.shape[:2]:
            raise ValueError(f"decoder {tuple(decoder_weight.shape)} does not match the skip {tuple(self.feature_skip.weight.shape[:2])}")
        self.feature_skip.weight.copy_(pinv[:, :, None, None])
        self.feature_skip.bias.copy_(-(pinv @ decoder_bias.detach().double()))

    def forward(self, layer: int, tokens: Tensor, semantic_tokens: Tensor, patch_start_idx: int) -> Tensor:
        """Fuse at aggregator ``layer``: ``tokens [S, P, C]`` -> ``[S, P, C]`` (special tokens untouched)."""
        special, patches = tokens[:, :patch_start_idx], tokens[:, patch_start_idx:]
        if semantic_tokens.shape[:2] != patches.shape[:2]:
            raise ValueError(
                f"semantic tokens {tuple(semantic_tokens.shape)} do not match geometry patches {tuple(patches.shape)}"
            )
        patches = self.blocks[str(layer)](patches, semantic_tokens.to(patches.dtype))
        return torch.cat([special, patches], dim=1)
