"""The FF3R network: composes the geometry encoder, semantic encoder, fusion and heads.

FF3R (arXiv 2604.09862): unposed views -> VGGT-style geometry tokens with semantic context fused in ->
cameras, depth and pixel-aligned Gaussians carrying colour and a low-dimensional semantic feature.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from ff3r_ns.core.cameras import (
    Cameras, extri_intri_to_pose_encoding, invert_rigid, pose_encoding_to_extri_intri, unproject_depth,
)
from ff3r_ns.core.gaussians import Gaussians
from ff3r_ns.core.network.camera_head import CameraHead
from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.network.dpt_head import DPTHead
from ff3r_ns.core.network.fusion import SemanticFusion
from ff3r_ns.core.network.gaussian_head import FeatureDecoder, GaussianHead, GaussianLayout
from ff3r_ns.core.network.geometry import Aggregator
from ff3r_ns.core.network.semantic import SemanticEncoder, build_semantic_encoder


@dataclass
class FF3ROutput:
    """What :class:`FF3R` predicts for ``S`` views of ``H x W`` pixels.

    Attributes:
        pose_enc: ``[S, 9]`` VGGT encoding ``[T, quat_xyzw, fov_h, fov_w]`` (world-to-camera, OpenCV);
            the first view is the identity frame when ``heads.anchor_first_view``.
        cameras: :class:`Cameras` built from ``pose_enc``, size ``W x H``.
        depth: ``[S, H, W]`` z-depth.
        depth_conf: ``[S, H, W]`` depth confidence (>= 1).
        points: ``[S, H, W, 3]`` world points, ``unproject_depth(depth, cameras)``.
        gaussians: :class:`Gaussians` with batch shape ``[S]``, ``N = H * W`` in row-major pixel order;
            ``means == points``.
    """

    pose_enc: Tensor
    cameras: Cameras
    depth: Tensor
    depth_conf: Tensor
    points: Tensor
    gaussians: Gaussians


def anchor_to_first_view(pose_enc: Tensor, height: int, width: int) -> Tensor:
    """Re-express ``[S, 9]`` pose encodings relative to the first view (whose extrinsics become identity)."""
    w2c, k = pose_encoding_to_extri_intri(pose_enc, height, width)
    rel = w2c @ invert_rigid(w2c[:1])
    rel = torch.cat([torch.eye(4, dtype=rel.dtype, device=rel.device)[None], rel[1:]], dim=0)
    return extri_intri_to_pose_encoding(rel, k, height, width)


class FF3R(nn.Module):
    """Feed-forward feature 3D reconstruction from unposed images.

    Args:
        config: :class:`FF3RConfig`.

    Example:
        >>> model = FF3R(FF3RConfig.tiny())
        >>> out = model(torch.rand(2, 3, 28, 42))
        >>> out.pose_enc.shape, out.depth.shape, out.gaussians.means.shape
        (torch.Size([2, 9]), torch.Size([2, 28, 42]), torch.Size([2, 1176, 3]))
    """

    feature_decoder: FeatureDecoder

    def __init__(self, config: FF3RConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        g, h = config.geometry, config.heads
        dim = 2 * g.embed_dim  # heads read frame and global outputs concatenated
        self.aggregator = Aggregator(g)
        self.camera_head = CameraHead(
            dim, h.camera_trunk_depth, h.camera_num_heads, g.mlp_ratio, h.camera_init_values, h.camera_iterations
        )
        self.depth_head = DPTHead(
            dim_in=dim, layers=h.dpt_layers, patch_size=g.patch_size, output_dim=2, features=h.dpt_features,
            out_channels=h.dpt_out_channels,
        )
        self.gaussian_head = GaussianHead(
            dim, h.dpt_layers, GaussianLayout(h.sh_degree, h.feature_dim), g.patch_size,
            h.gaussian_dpt_features, h.gaussian_dpt_out_channels,
        )
        self.feature_decoder = FeatureDecoder(h.feature_dim, h.teacher_dim)
        self.semantic_encoder: Optional[SemanticEncoder] = None
        self.fusion: Optional[SemanticFusion] = None
        if config.fusion.enable_fusion:
            self.semantic_encoder = build_semantic_encoder(config.semantic)
            self.fusion = SemanticFusion(config.fusion, g.embed_dim, self.semantic_encoder.embed_dim, h.feature_dim)

    def _check(self, images: Tensor) -> None:
        p = self.config.geometry.patch_size
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"FF3R expects images [S, 3, H, W] in [0, 1], got shape {tuple(images.shape)}")
        if images.shape[-2] % p or images.shape[-1] % p:
            raise ValueError(f"FF3R: image height and width must be multiples of {p}, got {tuple(images.shape[-2:])}")

    def forward(self, images: Tensor, semantic_tokens: Optional[Tensor] = None) -> FF3ROutput:
        """Predict cameras, depth and Gaussians for the views of one scene.

        Args:
            images: ``[S, 3, H, W]`` in [0, 1], ``H`` and ``W`` multiples of 14.
            semantic_tokens: optional precomputed semantic features ``[S, D, h, w]``; otherwise the
                semantic encoder runs on ``images`` (only when fusion is enabled).

        Returns:
            :class:`FF3ROutput`.
        """
        self._check(images)
        cfg, h = self.config, self.config.heads
        s, _, height, width = images.shape
        grid = (height // cfg.geometry.patch_size, width // cfg.geometry.patch_size)
        bf16 = cfg.bf16 and images.is_cuda
        with torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext():
            sem = None
            if self.fusion is not None:
                if semantic_tokens is None:
                    gp = cfg.semantic.grid_patch or cfg.geometry.patch_size
                    semantic_tokens = self.semantic_encoder(images, grid=(max(1, height // gp), max(1, width // gp)))
                if self.fusion.layers:  # without fusion blocks the tokens only feed the feature skip
                    sem = self.fusion.prepare(semantic_tokens, grid)
            keep = set(h.dpt_layers) | {cfg.geometry.depth - 1}
            geo = self.aggregator(images, keep, self.fusion, sem)
        # Heads in fp32, as VGGT (pose and depth regression is precision-sensitive).
        with torch.autocast("cuda", enabled=False) if bf16 else nullcontext():
            pose_enc = self.camera_head(geo.layers[cfg.geometry.depth - 1][:, 0].float())
            pose_enc = torch.cat([pose_enc[:, :7], pose_enc[:, 7:].clamp(*h.fov_range)], dim=-1)
            if h.anchor_first_view:
                pose_enc = anchor_to_first_view(pose_enc, height, width)
            w2c, k = pose_encoding_to_extri_intri(pose_enc, height, width)
            cameras = Cameras(w2c, k, width, height)
            depth, conf, raw = [], [], []
            for c0 in range(0, s, max(1, h.frames_chunk_size)):
                views = slice(c0, c0 + h.frames_chunk_size)
                d, c = self.depth_head(geo.layers, geo.patch_start_idx, geo.grid, (height, width), views=views)
                depth.append(d[..., 0])
                conf.append(c)
                skip = None if self.fusion is None else self.fusion.feature_residual(
                    semantic_tokens[views], (height, width), images[views].float())
                raw.append(self.gaussian_head(geo.layers, images.float(), geo.patch_start_idx, geo.grid, views=views,
                                              feature_residual=skip))
            depth_t, conf_t = torch.cat(depth), torch.cat(conf)
            points = unproject_depth(depth_t, cameras)
            gaussians = self.gaussian_head.to_gaussians(torch.cat(raw), images.float(), depth_t, points, cameras)
        return FF3ROutput(pose_enc, cameras, depth_t, conf_t, points, gaussians)
