"""Pixel-aligned Gaussian head and the feature decoder.

The Gaussian head is a feature-only DPT on the aggregator tokens (its own weights, as AnySplat's
Gaussian head, https://arxiv.org/abs/2505.23716), concatenated with a light conv embedding of the
image (high-frequency colour detail the 14-pixel tokens blur), and a 1x1 output conv giving, per
pixel: opacity, scale, rotation, SH colour, a low-dimensional semantic feature and a confidence logit.

Centres are the unprojected predicted depth (not predicted here). Scales are tied to the pixel
footprint ``depth / focal`` so a pixel-aligned Gaussian covers about one pixel whatever the depth;
rotations are predicted in the camera frame and moved to the world frame with the camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ff3r_ns.core.cameras import Cameras, mat_to_quat
from ff3r_ns.core.gaussians import Gaussians, quat_multiply, rgb_to_sh
from ff3r_ns.core.network.dpt_head import DPTHead
from ff3r_ns.core.queries import expressible


@dataclass(frozen=True)
class GaussianLayout:
    """Channel layout of the Gaussian head's raw output.

    Attributes:
        sh_degree: SH degree (``K = (sh_degree + 1) ** 2`` coefficients per colour channel).
        feature_dim: semantic feature channels.
    """

    sh_degree: int
    feature_dim: int

    @property
    def num_sh(self) -> int:
        return (self.sh_degree + 1) ** 2

    @property
    def sizes(self) -> dict[str, int]:
        """Channels per attribute, in output order."""
        return {"opacity": 1, "scale": 3, "rotation": 4, "sh": 3 * self.num_sh, "feature": self.feature_dim, "confidence": 1}

    @property
    def channels(self) -> int:
        return sum(self.sizes.values())

    def offset(self, name: str) -> int:
        """First channel of attribute ``name`` in the raw output."""
        names = list(self.sizes)
        return sum(self.sizes[n] for n in names[: names.index(name)])


class GaussianHead(nn.Module):
    """Per-pixel Gaussian parameters from aggregator tokens and the image.

    Args:
        dim_in: token width (``2 * embed_dim``).
        layers: the four aggregator layers to read.
        layout: :class:`GaussianLayout`.
        patch_size: pixels per patch.
        features: DPT fusion width.
        out_channels: DPT per-level widths.
        image_channels: width of the image embedding.

    Example:
        >>> head = GaussianHead(8, (0, 0, 0, 0), GaussianLayout(0, 4), features=8, out_channels=(4, 4, 4, 4))
        >>> raw = head({0: torch.rand(2, 7, 8)}, torch.rand(2, 3, 28, 42), patch_start_idx=1, grid=(2, 3))
        >>> raw.shape  # 1 + 3 + 4 + 3 + 4 + 1 channels
        torch.Size([2, 16, 28, 42])
    """

    # DPTHead's arguments (the head is a DPT) plus the layout and the image branch's width.
    def __init__(
        self, dim_in: int, layers: Sequence[int], layout: GaussianLayout, patch_size: int = 14, features: int = 128,
        out_channels: Sequence[int] = (128, 256, 512, 512), image_channels: int = 32,
    ) -> None:
        super().__init__()
        self.layout = layout
        self.dpt = DPTHead(
            dim_in=dim_in, layers=layers, patch_size=patch_size, features=features, out_channels=out_channels,
            feature_only=True,
        )
        self.image_embed = nn.Sequential(
            nn.Conv2d(3, image_channels, 3, padding=1), nn.ReLU(), nn.Conv2d(image_channels, image_channels, 3, padding=1)
        )
        self.out = nn.Sequential(
            nn.Conv2d(features + image_channels, features, 3, padding=1), nn.ReLU(), nn.Conv2d(features, layout.channels, 1)
        )
        # Small initial outputs: colour starts at the input pixel's colour, rotation at the camera's.
        nn.init.normal_(self.out[-1].weight, std=1e-3)
        nn.init.zeros_(self.out[-1].bias)

    def forward(
        self, tokens: dict[int, Tensor], images: Tensor, patch_start_idx: int, grid: tuple[int, int],
        views: slice = slice(None), feature_residual: Optional[Tensor] = None,
    ) -> Tensor:
        """Raw parameters ``[s, layout.channels, H, W]`` for ``images[views]`` (``images [S, 3, H, W]`` in [0, 1]);
        ``feature_residual [s, feature_dim, H, W]`` is added to the semantic feature channels."""
        img = images[views]
        feats = self.dpt(tokens, patch_start_idx, grid, tuple(img.shape[-2:]), views=views)
        raw = self.out(torch.cat([feats, self.image_embed(img * 2 - 1)], dim=1))
        if feature_residual is None:
            return raw
        lo = self.layout.offset("feature")
        hi = lo + self.layout.feature_dim
        return torch.cat([raw[:, :lo], raw[:, lo:hi] + feature_residual.to(raw.dtype), raw[:, hi:]], dim=1)

    def to_gaussians(self, raw: Tensor, images: Tensor, depth: Tensor, points: Tensor, cameras: Cameras) -> Gaussians:
        """Activate raw parameters into world-space :class:`Gaussians` with batch shape ``[S]``, ``N = H*W``.

        Args:
            raw: ``[S, C, H, W]`` from :meth:`forward`.
            images: ``[S, 3, H, W]`` in [0, 1] (the DC colour is a residual on the pixel colour).
            depth: ``[S, H, W]`` z-depth (sets the pixel footprint).
            points: ``[S, H, W, 3]`` world centres.
            cameras: the ``S`` predicted cameras.
        """
        s, _, h, w = raw.shape
        flat = raw.permute(0, 2, 3, 1).reshape(s, h * w, -1)
        parts = dict(zip(self.layout.sizes, flat.split(list(self.layout.sizes.values()), dim=-1)))
        k = cameras.intrinsics.to(raw.dtype)
        focal = 0.5 * (k[:, 0, 0] + k[:, 1, 1])  # [S]
        footprint = depth.reshape(s, h * w, 1) / focal[:, None, None]
        scales = F.softplus(parts["scale"]) * footprint
        identity = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=raw.dtype, device=raw.device)
        q_cam = F.normalize(parts["rotation"] + identity, dim=-1)
        c2w_xyzw = mat_to_quat(cameras.cam_to_world[:, :3, :3].to(raw.dtype))
        c2w_wxyz = torch.cat([c2w_xyzw[:, 3:], c2w_xyzw[:, :3]], dim=-1)[:, None]
        quats = quat_multiply(c2w_wxyz.expand_as(q_cam), q_cam)
        sh = parts["sh"].reshape(s, h * w, self.layout.num_sh, 3)
        rgb = images.permute(0, 2, 3, 1).reshape(s, h * w, 3).to(raw.dtype)
        sh = torch.cat([sh[:, :, :1] + rgb_to_sh(rgb)[:, :, None], sh[:, :, 1:]], dim=2)
        return Gaussians(
            means=points.reshape(s, h * w, 3),
            quats=quats,
            scales=scales,
            opacities=torch.sigmoid(parts["opacity"][..., 0]),
            sh=sh,
            features=parts["feature"],
            confidence=parts["confidence"][..., 0],
        )


class FeatureDecoder(nn.Module):
    """Lift low-dimensional rendered features to the teacher's dimension (a 1x1 convolution).

    As in LSM / Feature-3DGS (https://arxiv.org/abs/2312.03203): render ``feature_dim`` channels
    (cheap in the rasteriser) and decode after rendering.

    Args:
        feature_dim: input channels ``F``.
        teacher_dim: output channels ``D``.

    Example:
        >>> dec = FeatureDecoder(16, 512)
        >>> dec(torch.rand(2, 8, 8, 16)).shape  # channels last
        torch.Size([2, 8, 8, 512])
        >>> dec.forward_maps(torch.rand(2, 16, 8, 8)).shape  # channels first
        torch.Size([2, 512, 8, 8])
    """

    def __init__(self, feature_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.feature_dim, self.teacher_dim = feature_dim, teacher_dim
        self.proj = nn.Linear(feature_dim, teacher_dim)

    def forward(self, features: Tensor) -> Tensor:
        """``[..., F]`` -> ``[..., D]``."""
        if features.shape[-1] != self.feature_dim:
            raise ValueError(f"FeatureDecoder expects {self.feature_dim} channels last, got {tuple(features.shape)}")
        return self.proj(features)

    def forward_maps(self, features: Tensor) -> Tensor:
        """``[B, F, H, W]`` -> ``[B, D, H, W]``."""
        return self.forward(features.movedim(1, -1)).movedim(-1, 1)

    def expressible(self, embeddings: Tensor) -> Tensor:
        """``[T, D]`` -> ``[T, D]``: embeddings projected onto this decoder's output span
        (:func:`ff3r_ns.core.queries.expressible`), for comparing with decoded features."""
        return expressible(embeddings, self.proj.weight, self.proj.bias)
