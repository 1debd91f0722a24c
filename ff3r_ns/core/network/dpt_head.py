"""DPT dense head (Ranftl et al., https://arxiv.org/abs/2103.13413) in VGGT's form and parameter names.

Four aggregator layers are normalised, projected, resized to four scales (x4, x2, x1, x0.5 of the patch
grid), fused coarse-to-fine by residual conv units, upsampled to the input resolution and, unless
``feature_only``, mapped to ``output_dim`` channels; the last channel is a confidence.
Names (``norm``, ``projects``, ``resize_layers``, ``scratch.layer*_rn``, ``scratch.refinenet*``,
``scratch.output_conv*``) match VGGT's ``depth_head.*`` so its checkpoint loads by key.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_MAX_INTERP_ELEMENTS = 1 << 30  # F.interpolate overflows int32 indexing beyond ~2**31 elements


def create_uv_grid(width: int, height: int, aspect_ratio: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[height, width, 2]`` centred (u, v) coordinates spanning the unit-diagonal image rectangle (VGGT)."""
    diag = (aspect_ratio**2 + 1.0) ** 0.5
    span_x, span_y = aspect_ratio / diag, 1.0 / diag
    xs = torch.linspace(-span_x * (width - 1) / width, span_x * (width - 1) / width, width, dtype=dtype, device=device)
    ys = torch.linspace(-span_y * (height - 1) / height, span_y * (height - 1) / height, height, dtype=dtype, device=device)
    uu, vv = torch.meshgrid(xs, ys, indexing="xy")
    return torch.stack([uu, vv], dim=-1)


def _sincos(dim: int, pos: Tensor, omega_0: float = 100.0) -> Tensor:
    omega = torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2.0)
    omega = 1.0 / omega_0**omega
    out = torch.outer(pos.reshape(-1).double(), omega)
    return torch.cat([out.sin(), out.cos()], dim=1).float()


def position_grid_to_embed(grid: Tensor, dim: int, omega_0: float = 100.0) -> Tensor:
    """``[H, W, 2]`` -> ``[H, W, dim]`` sinusoidal embedding (half the channels per axis)."""
    h, w, _ = grid.shape
    flat = grid.reshape(-1, 2)
    return torch.cat([_sincos(dim // 2, flat[:, 0], omega_0), _sincos(dim // 2, flat[:, 1], omega_0)], dim=-1).view(h, w, dim)


def add_pos_embed(x: Tensor, width: int, height: int, ratio: float = 0.1) -> Tensor:
    """Add VGGT's fixed UV sin-cos embedding (scaled by ``ratio``) to ``x [B, C, h, w]``."""
    grid = create_uv_grid(x.shape[-1], x.shape[-2], width / height, torch.float32, x.device)
    pe = (position_grid_to_embed(grid, x.shape[1]) * ratio).permute(2, 0, 1)[None].to(x.dtype)
    return x + pe


def interpolate(x: Tensor, size: Sequence[int], align_corners: bool = True) -> Tensor:
    """Bilinear resize of ``[B, C, h, w]``, chunked over the batch when the output would be too large."""
    size = (int(size[0]), int(size[1]))
    per_item = x.shape[1] * size[0] * size[1]
    if per_item * x.shape[0] <= _MAX_INTERP_ELEMENTS:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
    step = max(1, _MAX_INTERP_ELEMENTS // per_item)
    return torch.cat([F.interpolate(c, size=size, mode="bilinear", align_corners=align_corners) for c in x.split(step)])


class ResidualConvUnit(nn.Module):
    """``relu(x) + conv2(relu(conv1(relu(x))))``.

    The skip adds ``relu(x)``, not ``x``: DPT/VGGT apply an in-place ReLU to the input before the skip,
    and pretrained weights expect that; we reproduce it without mutating the caller's tensor.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FeatureFusionBlock(nn.Module):
    """Add the skip (after a residual unit), refine, upsample (to ``size`` or x2), 1x1 ``out_conv``."""

    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features) if has_residual else None
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Optional[Tensor] = None, size: Optional[Sequence[int]] = None) -> Tensor:
        if self.resConfUnit1 is not None and skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        size = size if size is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        return self.out_conv(interpolate(x, size, align_corners=True))


def activate_depth(out: Tensor, activation: str = "exp", conf_activation: str = "expp1") -> tuple[Tensor, Tensor]:
    """Split ``[B, K+1, H, W]`` into activated values ``[B, H, W, K]`` and confidence ``[B, H, W]``.

    ``exp``: positive depth; ``expp1``: confidence ``1 + exp(c)`` >= 1 (VGGT's aleatoric confidence).
    """
    fmap = out.permute(0, 2, 3, 1)
    val, conf = fmap[..., :-1], fmap[..., -1]
    if activation == "exp":
        val = torch.exp(val)
    elif activation != "linear":
        raise ValueError(f"unknown DPT activation {activation!r}")
    if conf_activation == "expp1":
        conf = 1 + conf.exp()
    elif conf_activation == "expp0":
        conf = conf.exp()
    elif conf_activation != "linear":
        raise ValueError(f"unknown DPT confidence activation {conf_activation!r}")
    return val, conf


class DPTHead(nn.Module):
    """Dense prediction from four aggregator layers.

    Args:
        dim_in: token width (``2 * embed_dim``: frame and global outputs concatenated).
        layers: the four aggregator layer indices to read.
        patch_size: pixels per patch.
        output_dim: output channels including the confidence channel (depth head: 2).
        features: fusion width.
        out_channels: projection width per level.
        feature_only: return the fused ``[B, features, H, W]`` map instead of predictions.

    Example:
        >>> head = DPTHead(dim_in=8, layers=(0, 0, 0, 0), features=8, out_channels=(4, 4, 4, 4))
        >>> tokens = {0: torch.rand(2, 1 + 6, 8)}
        >>> depth, conf = head(tokens, patch_start_idx=1, grid=(2, 3), image_hw=(28, 42))
        >>> depth.shape, conf.shape
        (torch.Size([2, 28, 42, 1]), torch.Size([2, 28, 42]))
    """

    # VGGT's DPTHead constructor, argument for argument, so its configs and weights map one to one.
    def __init__(
        self, dim_in: int, layers: Sequence[int], patch_size: int = 14, output_dim: int = 2, features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024), feature_only: bool = False,
        activation: str = "exp", conf_activation: str = "expp1",
    ) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.patch_size = patch_size
        self.feature_only = feature_only
        self.activation, self.conf_activation = activation, conf_activation
        oc = list(out_channels)
        if len(oc) != 4 or any(c % 4 for c in oc) or features % 8:
            raise ValueError(
                f"DPTHead needs 4 out_channels divisible by 4 and features divisible by 8 (sin-cos position "
                f"embedding), got {oc} and {features}"
            )
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList([nn.Conv2d(dim_in, c, 1) for c in oc])
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(oc[0], oc[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(oc[1], oc[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(oc[3], oc[3], kernel_size=3, stride=2, padding=1),
        ])  # fmt: skip
        self.scratch = nn.Module()
        for i, c in enumerate(oc, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        self.scratch.refinenet1 = FeatureFusionBlock(features)
        self.scratch.refinenet2 = FeatureFusionBlock(features)
        self.scratch.refinenet3 = FeatureFusionBlock(features)
        self.scratch.refinenet4 = FeatureFusionBlock(features, has_residual=False)
        if feature_only:
            self.scratch.output_conv1 = nn.Conv2d(features, features, 3, padding=1)
        else:
            self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
            self.scratch.output_conv2 = nn.Sequential(
                nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, output_dim, 1)
            )

    def forward(
        self, tokens: dict[int, Tensor], patch_start_idx: int, grid: tuple[int, int], image_hw: tuple[int, int],
        views: slice = slice(None),
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Run on the views selected by ``views`` (heads are chunked over views by the caller).

        Args:
            tokens: ``{layer: [S, P, dim_in]}`` aggregator outputs.
            patch_start_idx: first patch token.
            grid: patch grid ``(h, w)``.
            image_hw: output size ``(H, W)`` (``grid * patch_size``).
            views: which views to process.

        Returns:
            ``feature_only``: ``[s, features, H, W]``; else values ``[s, H, W, output_dim - 1]`` and
            confidence ``[s, H, W]``.
        """
        gh, gw = grid
        height, width = image_hw
        feats = []
        for level, layer in enumerate(self.layers):
            x = tokens[layer][views, patch_start_idx:].to(self.norm.weight.dtype)  # fp32 head on bf16 tokens
            x = self.norm(x)
            x = x.permute(0, 2, 1).reshape(x.shape[0], x.shape[-1], gh, gw)
            x = add_pos_embed(self.projects[level](x), width, height)
            feats.append(self.resize_layers[level](x))
        sc = self.scratch
        l1, l2, l3, l4 = sc.layer1_rn(feats[0]), sc.layer2_rn(feats[1]), sc.layer3_rn(feats[2]), sc.layer4_rn(feats[3])
        out = sc.refinenet4(l4, size=l3.shape[2:])
        out = sc.refinenet3(out, l3, size=l2.shape[2:])
        out = sc.refinenet2(out, l2, size=l1.shape[2:])
        out = sc.refinenet1(out, l1)
        out = sc.output_conv1(out)
        out = add_pos_embed(interpolate(out, (gh * self.patch_size, gw * self.patch_size)), width, height)
        if self.feature_only:
            return out
        return activate_depth(sc.output_conv2(out), self.activation, self.conf_activation)
