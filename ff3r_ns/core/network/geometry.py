"""The geometry encoder: VGGT's alternating-attention aggregator (https://arxiv.org/abs/2503.11651).

Each view's image becomes DINOv2 patch tokens, prefixed by one camera token and ``R`` register tokens.
Then ``depth`` rounds of *frame* attention (tokens of one view; run over chunks of views so activation
memory grows gently with the view count) and *global* attention (the tokens of all views together)
follow. The first view gets its own camera/register tokens (``camera_token[:, 0]``), all others share
``camera_token[:, 1]``: that is how the network knows which view defines the world frame.

Parameter names match VGGT's ``aggregator.*`` so a VGGT checkpoint loads by key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ff3r_ns.core.network.config import GeometryConfig
from ff3r_ns.core.network.layers import Block, DinoV2PatchEmbed, PatchEmbed, RotaryPositionEmbedding2D, patch_positions

if TYPE_CHECKING:
    from ff3r_ns.core.network.fusion import SemanticFusion

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class GeometryTokens:
    """Aggregator output.

    Attributes:
        layers: ``{layer index: [S, P, 2C]}`` -- frame and global block outputs concatenated on
            channels, only for the requested layers (VGGT keeps all; we keep what heads use).
        patch_start_idx: index of the first patch token in ``P`` (``1 + num_register_tokens``).
        grid: ``(H / patch, W / patch)`` patch grid.
    """

    layers: dict[int, Tensor]
    patch_start_idx: int
    grid: tuple[int, int]


def _first_and_rest(token: Tensor, num_views: int) -> Tensor:
    """``[1, 2, n, C]`` -> ``[S, n, C]``: index 0 for the first view, index 1 for every other view."""
    first = token[0, :1]
    rest = token[0, 1:2].expand(num_views - 1, -1, -1)
    return torch.cat([first, rest], dim=0)


class Aggregator(nn.Module):
    """Alternating frame / global attention over the views of one scene.

    Args:
        config: :class:`GeometryConfig`.

    Example:
        >>> from ff3r_ns.core.network.config import FF3RConfig
        >>> agg = Aggregator(FF3RConfig.tiny().geometry)
        >>> out = agg(torch.rand(3, 3, 28, 42), keep_layers={1})
        >>> out.layers[1].shape  # 3 views, 1 + 4 special + 2*3 patches, 2 * 64
        torch.Size([3, 11, 128])
    """

    def __init__(self, config: GeometryConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.patch_size = c.patch_size
        if c.patch_embed == "dinov2":
            self.patch_embed: nn.Module = DinoV2PatchEmbed(
                c.img_size, c.patch_size, c.embed_dim, c.patch_embed_depth, c.patch_embed_num_heads,
                c.mlp_ratio, c.num_register_tokens,
            )
        elif c.patch_embed == "conv":
            self.patch_embed = PatchEmbed(c.patch_size, c.embed_dim)
        else:
            raise ValueError(f"GeometryConfig.patch_embed must be 'dinov2' or 'conv', got {c.patch_embed!r}")
        self.rope = RotaryPositionEmbedding2D(c.rope_freq) if c.rope_freq > 0 else None

        def make_block() -> Block:
            return Block(c.embed_dim, c.num_heads, c.mlp_ratio, qk_norm=c.qk_norm, init_values=c.init_values, rope=self.rope)

        self.frame_blocks = nn.ModuleList([make_block() for _ in range(c.depth)])
        self.global_blocks = nn.ModuleList([make_block() for _ in range(c.depth)])
        # Two sets: index 0 for the first (reference) view, index 1 for all others.
        self.camera_token = nn.Parameter(torch.randn(1, 2, 1, c.embed_dim) * 1e-6)
        self.register_token = nn.Parameter(torch.randn(1, 2, c.num_register_tokens, c.embed_dim) * 1e-6)
        self.patch_start_idx = 1 + c.num_register_tokens
        self.register_buffer("_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _run(self, block: Block, x: Tensor, pos: Optional[Tensor]) -> Tensor:
        if self.config.grad_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, pos, use_reentrant=False)
        return block(x, pos=pos)

    def forward(
        self,
        images: Tensor,
        keep_layers: Iterable[int],
        fusion: Optional["SemanticFusion"] = None,
        semantic_tokens: Optional[Tensor] = None,
    ) -> GeometryTokens:
        """Encode the views of one scene.

        Args:
            images: ``[S, 3, H, W]`` in [0, 1]; ``H, W`` multiples of ``patch_size``.
            keep_layers: layer indices whose outputs are returned.
            fusion: fusion module called after the frame+global pair of each of its ``layers``.
            semantic_tokens: ``[S, h*w, C]`` semantic tokens on the patch grid, from
                :meth:`SemanticFusion.prepare`, for ``fusion``.

        Returns:
            :class:`GeometryTokens`.
        """
        s, _, h, w = images.shape
        p = self.patch_size
        grid = (h // p, w // p)
        x = (images - self._mean.to(images.dtype)) / self._std.to(images.dtype)
        patches = self.patch_embed(x)  # [S, h*w, C]
        special = [_first_and_rest(t, s).to(patches.dtype) for t in (self.camera_token, self.register_token)]
        tokens = torch.cat([*special, patches], dim=1)
        n_tok, dim = tokens.shape[1], tokens.shape[2]
        pos = None
        if self.rope is not None:
            pos = patch_positions(s, *grid, num_special=self.patch_start_idx, device=images.device)
        keep = set(keep_layers)
        chunk = max(1, self.config.frame_chunk_size)
        out: dict[int, Tensor] = {}
        for i in range(self.config.depth):
            # frame attention, chunked over views
            parts = []
            for c0 in range(0, s, chunk):
                t = tokens[c0 : c0 + chunk]
                parts.append(self._run(self.frame_blocks[i], t, None if pos is None else pos[: t.shape[0]]))
            tokens = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
            frame_out = tokens
            # global attention over all views' tokens
            gpos = None if pos is None else pos.reshape(1, s * n_tok, 2)
            tokens = self._run(self.global_blocks[i], tokens.reshape(1, s * n_tok, dim), gpos).reshape(s, n_tok, dim)
            if fusion is not None and i in fusion.layers:
                if semantic_tokens is None:
                    raise ValueError("Aggregator: fusion is enabled but no semantic tokens were given")
                tokens = fusion(i, tokens, semantic_tokens, self.patch_start_idx)
            if i in keep:
                out[i] = torch.cat([frame_out, tokens], dim=-1)
        return GeometryTokens(layers=out, patch_start_idx=self.patch_start_idx, grid=grid)
