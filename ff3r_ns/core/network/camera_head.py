"""VGGT's camera head: iterative refinement of the 9-number pose encoding from the camera tokens.

Each iteration embeds the current estimate, modulates the (normalised) camera tokens with it
(adaLN, as in DiT, https://arxiv.org/abs/2212.09748), runs a small transformer trunk across the views
and adds a predicted residual. Output per iteration: ``[T(3), quat_xyzw(4), fov_h, fov_w]`` with
VGGT's activations (linear translation and quaternion, ReLU field of view). Parameter names match
VGGT's ``camera_head.*``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ff3r_ns.core.network.layers import Block, Mlp

POSE_DIM = 9


class CameraHead(nn.Module):
    """Camera head.

    Args:
        dim_in: camera-token width (``2 * embed_dim``).
        trunk_depth: transformer blocks in the trunk.
        num_heads: trunk heads.
        mlp_ratio: trunk MLP ratio.
        init_values: trunk LayerScale init.
        iterations: refinement steps (VGGT: 4).

    Example:
        >>> head = CameraHead(16, trunk_depth=1, num_heads=2, iterations=2)
        >>> head(torch.rand(3, 5, 16)).shape  # camera tokens of 3 views
        torch.Size([3, 9])
    """

    def __init__(
        self, dim_in: int, trunk_depth: int = 4, num_heads: int = 16, mlp_ratio: float = 4.0,
        init_values: float = 0.01, iterations: int = 4,
    ) -> None:
        super().__init__()
        self.iterations = iterations
        self.trunk = nn.Sequential(*[Block(dim_in, num_heads, mlp_ratio, init_values=init_values) for _ in range(trunk_depth)])
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_DIM))
        self.embed_pose = nn.Linear(POSE_DIM, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, POSE_DIM)
        self.reset_prior()

    @torch.no_grad()
    def reset_prior(self, fov: float = 1.0) -> None:
        """Start from identity rotations and a ~57 degree field of view (for training from scratch).

        The residuals of all iterations add up, so each contributes ``1 / iterations`` of the prior.
        Loading a VGGT checkpoint overwrites this.
        """
        fc2 = self.pose_branch.fc2
        fc2.weight.mul_(0.1)
        fc2.bias.zero_()
        fc2.bias[6] = 1.0 / self.iterations  # quaternion w
        fc2.bias[7:9] = fov / self.iterations

    def forward(self, camera_tokens: Tensor, all_iterations: bool = False) -> Tensor | list[Tensor]:
        """Camera tokens ``[S, P, dim_in]`` (token 0 is used) or ``[S, dim_in]`` -> pose encodings ``[S, 9]``
        (or the list over iterations when ``all_iterations``)."""
        tokens = camera_tokens[:, 0] if camera_tokens.ndim == 3 else camera_tokens
        tokens = self.token_norm(tokens)[None]  # [1, S, C]: the trunk attends across views
        pred = None
        preds = []
        for _ in range(self.iterations):
            # VGGT detaches the previous estimate: each step learns a residual, no backprop through steps.
            inp = self.embed_pose(self.empty_pose_tokens.expand(1, tokens.shape[1], -1) if pred is None else pred.detach())
            shift, scale, gate = self.poseLN_modulation(inp).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            pred = delta if pred is None else pred + delta
            preds.append(activate_pose(pred)[0])
        return preds if all_iterations else preds[-1]


def activate_pose(pose: Tensor) -> Tensor:
    """VGGT's activation: translation and quaternion linear, field of view through ReLU."""
    return torch.cat([pose[..., :7], F.relu(pose[..., 7:])], dim=-1)
