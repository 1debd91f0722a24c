"""Transformer building blocks with VGGT's / DINOv2's parameter names.

Attention goes through :func:`torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient
kernels on CUDA), with optional per-head QK LayerNorm and 2D rotary position embedding as in VGGT
(https://arxiv.org/abs/2503.11651). State-dict names (``attn.qkv``, ``attn.q_norm``, ``ls1.gamma``,
``mlp.fc1`` ...) match VGGT's so its checkpoint loads by key.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# --------------------------------------------------------------------------- 2D RoPE
class RotaryPositionEmbedding2D(nn.Module):
    """2D rotary position embedding (RoFormer, https://arxiv.org/abs/2104.09864, extended to 2D as in
    CroCo / VGGT): the first half of each head's channels rotates with the patch row, the second with
    the patch column.

    Args:
        frequency: base frequency (VGGT: 100).

    Example:
        >>> rope = RotaryPositionEmbedding2D()
        >>> q = torch.randn(2, 4, 9, 16); pos = patch_positions(2, 3, 3)
        >>> rope(q, pos).shape
        torch.Size([2, 4, 9, 16])
    """

    def __init__(self, frequency: float = 100.0) -> None:
        super().__init__()
        self.frequency = frequency

    @staticmethod
    def _rotate_half(x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([-x2, x1], dim=-1)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """Rotate ``x [B, heads, N, d]`` by integer positions ``pos [B, N, 2]`` (row, column)."""
        half = x.shape[-1] // 2
        inv_freq = 1.0 / (self.frequency ** (torch.arange(0, half, 2, device=x.device).float() / half))
        out = []
        for axis, part in enumerate(x.chunk(2, dim=-1)):
            # Angles straight from the positions (VGGT looks them up in a table sized by pos.max(),
            # which costs a host sync per attention call); same values.
            angles = pos[..., axis, None].float() * inv_freq  # [B, N, half / 2]
            angles = torch.cat([angles, angles], dim=-1)[:, None]  # [B, 1, N, half]
            out.append(part * angles.cos().to(x.dtype) + self._rotate_half(part) * angles.sin().to(x.dtype))
        return torch.cat(out, dim=-1)


def patch_positions(batch: int, grid_h: int, grid_w: int, num_special: int = 0, device=None) -> Tensor:
    """``[batch, num_special + grid_h * grid_w, 2]`` integer (row, column) positions for RoPE.

    Special tokens (camera, registers) get position 0 and patches start at 1, as in VGGT, so that
    special tokens are not rotated relative to each other.
    """
    rows, cols = torch.meshgrid(torch.arange(grid_h, device=device), torch.arange(grid_w, device=device), indexing="ij")
    pos = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=-1)
    if num_special > 0:
        pos = torch.cat([torch.zeros(num_special, 2, dtype=pos.dtype, device=device), pos + 1], dim=0)
    return pos[None].expand(batch, -1, -1)


# --------------------------------------------------------------------------- blocks
class Mlp(nn.Module):
    """Two-layer GELU MLP (``fc1``, ``fc2``)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: Optional[int] = None, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel residual scale (CaiT, https://arxiv.org/abs/2103.17239); parameter ``gamma``."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention through SDPA, with optional QK-norm and 2D RoPE.

    Args:
        dim: token width.
        num_heads: heads (``dim`` divisible by it).
        qk_norm: LayerNorm over each head's queries and keys (``q_norm``, ``k_norm``).
        rope: shared rotary embedding, or None.
        norm_eps: epsilon of the QK LayerNorms.
    """

    def __init__(
        self, dim: int, num_heads: int, qk_norm: bool = False, rope: Optional[RotaryPositionEmbedding2D] = None,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Attention: dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: Tensor, pos: Optional[Tensor] = None) -> Tensor:
        """``x [B, N, C]`` (and ``pos [B, N, 2]`` when RoPE is on) -> ``[B, N, C]``."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        # Same dtype and contiguous [B, heads, N, d] so the flash kernel is eligible under bf16 autocast
        # (LayerNorm outputs fp32 there while v stays bf16).
        q, k, v = (t.to(v.dtype).contiguous() for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x))) `` then ``x + ls2(mlp(norm2(x)))``.

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / ``dim``.
        qk_norm: per-head QK LayerNorm.
        init_values: LayerScale init; None or 0 disables LayerScale (no ``ls*.gamma`` keys).
        rope: rotary embedding shared across blocks, or None.
        norm_eps: LayerNorm epsilon (VGGT's aggregator: 1e-5; DINOv2: 1e-6).
    """

    # The argument lists of VGGT's (DINOv2's) blocks, so their configs and weights map one to one.
    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False,
        init_values: Optional[float] = None, rope: Optional[RotaryPositionEmbedding2D] = None, norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm, rope=rope)
        self.ls1: nn.Module = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2: nn.Module = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: Tensor, pos: Optional[Tensor] = None) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos=pos))
        return x + self.ls2(self.mlp(self.norm2(x)))


# --------------------------------------------------------------------------- patch embedding
class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` convolution (``proj``): ``[B, 3, H, W] -> [B, h*w, C]``."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def interpolate_pos_embed(pos_embed: Tensor, grid_h: int, grid_w: int, num_prefix: int = 1) -> Tensor:
    """Resize a square ViT position embedding ``[1, prefix + M*M, C]`` to ``grid_h x grid_w`` patches.

    Bicubic with antialiasing, computed in fp32, as DINOv2 does (``interpolate_offset=0``, as VGGT sets).
    Returns ``[1, prefix + grid_h*grid_w, C]``.
    """
    prefix, patch = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    m = int(math.sqrt(patch.shape[1]))
    if m * m != patch.shape[1]:
        raise ValueError(f"position embedding has {patch.shape[1]} patch entries, not a square grid")
    if (grid_h, grid_w) == (m, m):
        return pos_embed
    c = patch.shape[-1]
    grid = patch.float().reshape(1, m, m, c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, c).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


class DinoV2PatchEmbed(nn.Module):
    """DINOv2 ViT with register tokens (https://arxiv.org/abs/2309.16588), used as VGGT's patch embedder.

    Parameter names follow DINOv2 / VGGT: ``cls_token [1, 1, C]``, ``pos_embed [1, 1 + M*M, C]``,
    ``register_tokens [1, R, C]``, ``mask_token [1, C]`` (unused, kept for checkpoint compatibility),
    ``patch_embed.proj``, ``blocks.{i}``, ``norm``.

    Args:
        img_size: training image size (sets ``M = img_size // patch_size``).
        patch_size: patch side in pixels.
        embed_dim, depth, num_heads, mlp_ratio: ViT size.
        num_register_tokens: register tokens (VGGT: 4).

    Example:
        >>> m = DinoV2PatchEmbed(img_size=28, patch_size=14, embed_dim=32, depth=1, num_heads=2)
        >>> m(torch.rand(2, 3, 28, 42)).shape
        torch.Size([2, 6, 32])
    """

    # The argument lists of VGGT's (DINOv2's) blocks, so their configs and weights map one to one.
    def __init__(
        self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
        mlp_ratio: float = 4.0, num_register_tokens: int = 4,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim)) if num_register_tokens else None
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, init_values=1.0, norm_eps=1e-6) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        """Normalised images ``[B, 3, H, W]`` -> normalised patch tokens ``[B, (H/p)*(W/p), C]``."""
        b, _, h, w = x.shape
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
        tokens = tokens + interpolate_pos_embed(self.pos_embed, h // self.patch_size, w // self.patch_size)
        if self.register_tokens is not None:
            tokens = torch.cat([tokens[:, :1], self.register_tokens.expand(b, -1, -1), tokens[:, 1:]], dim=1)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)[:, 1 + self.num_register_tokens :]
