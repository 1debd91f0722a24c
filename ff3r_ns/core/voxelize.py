"""Semantics-aware voxel merging of pixel-aligned Gaussians (FF3R, arXiv 2604.09862, section 3).

A feed-forward model predicts one Gaussian per pixel of every view, so a surface seen by ``S`` views
is covered ``S`` times. The geometry-only recipe of AnySplat (arXiv 2505.23716) snaps every centre to
a voxel, ``round(mu / eps)``, and replaces the Gaussians of one voxel by their confidence-softmax
weighted mean: hard assignment, soft weights, so gradients reach every attribute and the
confidences. FF3R adds one rule: Gaussians whose semantic features disagree are never merged, and
semantic agreement raises a Gaussian's weight.

Pipeline (all vectorised; the only Python loop is over grouping *rounds*, at most
``VoxelConfig.max_rounds``, never over voxels):

1. voxel id of each Gaussian: ``round(mu / (voxel_size * scale))`` hashed to one int64, then
   ``torch.unique(..., return_inverse=True)``;
2. semantic groups inside each voxel (:func:`semantic_groups`), or one group per voxel when
   ``semantic=False`` (the AnySplat ablation);
3. weight logits ``confidence + beta * cos(feature, group mean feature)``, a softmax per group
   (``scatter_reduce`` amax for stability, ``index_add`` for the sums);
4. merged attributes (see :func:`voxelize` for the space each one is averaged in).

Scale normalisation: ``voxel_size`` is relative to the scene scale. Callers pass ``scale`` (world
units per normalised unit); by default it is :func:`estimate_scene_scale` of the centres, the
median distance of the points to their reference camera (VGGT's first view, the world origin
of a predicted scene) or, without cameras, to the points' median. The default
``voxel_size = 0.002`` is for 448 px views of about 65 degrees: a voxel is then about the
footprint of one pixel at the median depth (2 * tan(32.5 deg) / 448 = 0.0028), so pixels of one
view rarely merge with each other while views that see the same surface do. How much merges
depends on ``voxel_size * resolution``; on generated orbit scenes (``python -m benchmarks.voxelize``)
112 px at 0.008, which matches 448 px at 0.002, removes 22 / 35 / 52 / 69 % of the Gaussians at
8 / 16 / 32 / 64 views. For other resolutions scale it as ``0.9 / resolution``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ff3r_ns.core.gaussians import Gaussians

_INT64_SAFE = 2**62


@dataclass(frozen=True)
class VoxelConfig:
    """How :func:`voxelize` merges.

    Attributes:
        voxel_size: voxel edge in normalised scene units (multiplied by the ``scale`` passed to
            :func:`voxelize`). AnySplat uses 0.001-0.002 of the normalised scene scale.
        semantic: split voxels into semantic groups (FF3R); ``False`` gives geometry-only merging
            (AnySplat) for the ablation.
        cos_threshold: two features "agree" when the cosine between them is at least this.
        beta: weight of semantic agreement in the weight logits
            (``logit = confidence + beta * cos(feature, group mean)``); 0 disables it.
        max_rounds: at most this many leader-grouping rounds; Gaussians still unassigned after
            them stay unmerged (singletons), so disagreeing features are never merged.
        rounding: ``"round"`` (AnySplat, voxel centred on the lattice points) or ``"floor"``.
    """

    voxel_size: float = 0.002
    semantic: bool = True
    cos_threshold: float = 0.6
    beta: float = 1.0
    max_rounds: int = 8
    rounding: str = "round"

    def __post_init__(self) -> None:
        if not self.voxel_size > 0:
            raise ValueError(f"VoxelConfig.voxel_size must be > 0, got {self.voxel_size}")
        if not -1.0 <= self.cos_threshold <= 1.0:
            raise ValueError(f"VoxelConfig.cos_threshold must be in [-1, 1], got {self.cos_threshold}")
        if self.max_rounds < 1:
            raise ValueError(f"VoxelConfig.max_rounds must be >= 1, got {self.max_rounds}")
        if self.rounding not in ("round", "floor"):
            raise ValueError(f"VoxelConfig.rounding must be 'round' or 'floor', got {self.rounding!r}")


@dataclass
class VoxelResult:
    """Output of :func:`voxelize`.

    Attributes:
        gaussians: ``M`` merged Gaussians (unbatched).
        inverse: ``[N]`` int64, index in ``gaussians`` of the merged Gaussian each input went into.
        weights: ``[N]`` merge weight of each input (they sum to 1 within each merged Gaussian).
        num_voxels: number of occupied voxels (``<= M``; equal when ``semantic=False``).
    """

    gaussians: Gaussians
    inverse: Tensor
    weights: Tensor
    num_voxels: int


def estimate_scene_scale(means: Tensor, camera_centers: Optional[Tensor] = None) -> Tensor:
    """A robust scene scale: the median distance of the points to the reference camera.

    Args:
        means: ``[N, 3]`` centres (not differentiated through).
        camera_centers: ``[S, 3]`` camera centres; the first is the reference (VGGT's frame 0).
            Without cameras, the median distance to the coordinate-wise median point is used.

    Returns:
        Scalar tensor (> 0; 1 when ``N == 0`` or all points coincide).

    Example:
        >>> scale = estimate_scene_scale(g.means, cams.centers)
        >>> merged = voxelize(g, VoxelConfig(), scale=scale)
    """
    means = means.detach()
    if means.shape[0] == 0:
        return torch.ones((), dtype=means.dtype, device=means.device)
    ref = camera_centers[0].to(means) if camera_centers is not None else means.median(dim=0).values
    d = (means - ref).norm(dim=-1).median()
    return torch.where(d > 0, d, torch.ones_like(d))


def voxel_ids(means: Tensor, size: float | Tensor, rounding: str = "round") -> tuple[Tensor, Tensor]:
    """Voxel of each point.

    Args:
        means: ``[N, 3]`` points.
        size: voxel edge in the points' units.
        rounding: ``"round"`` or ``"floor"``.

    Returns:
        ``inverse [N]`` (voxel index in ``0..V-1``) and ``coords [V, 3]`` integer lattice
        coordinates of the occupied voxels, sorted lexicographically.
    """
    scaled = means.detach() / size
    idx = (scaled.round() if rounding == "round" else scaled.floor()).long()
    lo = idx.min(dim=0).values
    k = idx - lo
    ext = (k.max(dim=0).values + 1).tolist()
    if ext[0] * ext[1] * ext[2] < _INT64_SAFE:
        # One int64 key per voxel: a 1D unique is much faster than unique(dim=0).
        key = (k[:, 0] * ext[1] + k[:, 1]) * ext[2] + k[:, 2]
        uniq, inverse = torch.unique(key, return_inverse=True)
        coords = torch.stack([uniq // (ext[1] * ext[2]), (uniq // ext[2]) % ext[1], uniq % ext[2]], dim=-1) + lo
        return inverse, coords
    coords, inverse = torch.unique(idx, dim=0, return_inverse=True)
    return inverse, coords


def _segment_argmax(values: Tensor, seg: Tensor, num: int) -> Tensor:
    """Per segment, the index of the largest value (lowest index on ties); ``N`` for empty segments."""
    n = values.shape[0]
    vmax = torch.full((num,), -torch.inf, dtype=values.dtype, device=values.device)
    vmax = vmax.scatter_reduce(0, seg, values, "amax", include_self=True)
    ar = torch.arange(n, device=values.device)
    cand = torch.where(values == vmax[seg], ar, torch.full_like(ar, n))
    return torch.full((num,), n, dtype=torch.long, device=values.device).scatter_reduce(0, seg, cand, "amin")


def semantic_groups(
    features: Tensor,
    confidence: Tensor,
    voxel: Tensor,
    num_voxels: int,
    config: VoxelConfig,
    prototypes: Optional[Tensor] = None,
) -> Tensor:
    """Split every voxel into groups of agreeing features (hard, not differentiated).

    Without prototypes: greedy *leader* grouping, vectorised over voxels. In each round, the
    most confident unassigned Gaussian of every voxel becomes a leader and takes every unassigned
    Gaussian of its voxel whose feature has cosine ``>= config.cos_threshold`` with its own. Rounds
    repeat until all are assigned (usually 1-2 rounds: a voxel rarely straddles more than two
    classes); after ``config.max_rounds`` the rest stay singletons. We chose this over quantising the
    feature direction (e.g. random-hyperplane hashing) because hashing splits near-identical
    features that fall on two sides of a hyperplane, and over fixed prototypes because learned
    features have no class list at training time. Leaders are picked by confidence (lowest
    index on exact ties), so the grouping does not depend on the input order.

    With ``prototypes`` ``[C, F]`` (e.g. text embeddings of class names): the group is the nearest
    prototype by cosine.

    Args:
        features: ``[N, F]`` semantic features.
        confidence: ``[N]`` confidences (leaders are the most confident).
        voxel: ``[N]`` voxel index of each Gaussian.
        num_voxels: ``V``.
        config: its ``cos_threshold`` (agreement threshold on the cosine) and ``max_rounds`` (grouping rounds
            before the rest become singletons) are read.
        prototypes: optional ``[C, F]`` class prototypes.

    Returns:
        ``[N]`` int64 sub-group id inside the voxel (unique only together with ``voxel``).
    """
    n = features.shape[0]
    fhat = F.normalize(features.detach(), dim=-1)
    if prototypes is not None:
        if prototypes.ndim != 2 or prototypes.shape[1] != features.shape[1]:
            raise ValueError(f"prototypes must be [C, {features.shape[1]}], got {tuple(prototypes.shape)}")
        return (fhat @ F.normalize(prototypes.detach().to(fhat), dim=-1).T).argmax(dim=-1)
    conf, max_rounds = confidence.detach(), config.max_rounds
    sub = torch.empty(n, dtype=torch.long, device=features.device)
    # Indices of the unassigned Gaussians, ascending; later rounds only touch these (few).
    rest = torch.arange(n, device=features.device)
    for r in range(max_rounds):
        v, c, f = (voxel, conf, fhat) if r == 0 else (voxel[rest], conf[rest], fhat[rest])
        lead_of = _segment_argmax(c, v, num_voxels)[v]  # every voxel in v has a member
        cos = (f * f[lead_of]).sum(dim=-1)
        join = (cos >= config.cos_threshold) | (torch.arange(v.shape[0], device=v.device) == lead_of)
        sub[rest[join]] = r
        rest = rest[~join]
        if rest.numel() == 0:
            return sub
    # Leftovers: each its own group (ids >= max_rounds cannot collide with round ids).
    sub[rest] = max_rounds + rest
    return sub


def _segment_softmax(logits: Tensor, seg: Tensor, num: int) -> Tensor:
    """Softmax of ``logits [N]`` within each of ``num`` segments; exact gradients (max is detached)."""
    m = torch.full((num,), -torch.inf, dtype=logits.dtype, device=logits.device)
    m = m.scatter_reduce(0, seg, logits.detach(), "amax", include_self=True)
    e = torch.exp(logits - m[seg])
    denom = torch.zeros(num, dtype=logits.dtype, device=logits.device).index_add(0, seg, e)
    return e / denom[seg]


def _segment_sum(values: Tensor, seg: Tensor, num: int) -> Tensor:
    return torch.zeros((num, *values.shape[1:]), dtype=values.dtype, device=values.device).index_add(0, seg, values)


def _segment_logsumexp(x: Tensor, seg: Tensor, num: int) -> Tensor:
    m = torch.full((num,), -torch.inf, dtype=x.dtype, device=x.device)
    m = m.scatter_reduce(0, seg, x.detach(), "amax", include_self=True)
    return m + torch.log(_segment_sum(torch.exp(x - m[seg]), seg, num))


def _check_input(g: Gaussians, config: VoxelConfig) -> None:
    if len(g.batch_shape) != 0:
        raise ValueError(f"voxelize takes one unbatched set; got batch shape {tuple(g.batch_shape)} (call .flatten() first)")
    if g.confidence is not None:
        bad = int((~torch.isfinite(g.confidence)).sum())
        if bad:
            raise ValueError(f"voxelize: {bad} of {g.num} confidence values are NaN or infinite")
    bad = int((~torch.isfinite(g.means).all(dim=-1)).sum())
    if bad:
        raise ValueError(f"voxelize: {bad} of {g.num} Gaussian centres are NaN or infinite")
    if config.semantic and g.feature_dim == 0:
        raise ValueError("voxelize: semantic merging needs features (feature_dim is 0); use VoxelConfig(semantic=False)")


def voxelize(
    gaussians: Gaussians,
    config: VoxelConfig = VoxelConfig(),
    scale: Optional[float | Tensor] = None,
    prototypes: Optional[Tensor] = None,
) -> VoxelResult:
    """Merge Gaussians by voxel and, when ``config.semantic``, by semantic group.

    Within each group ``g`` the weights are ``w_i = softmax_g(c_i + beta * cos(f_i, mean_g f))``
    (``mean_g f``: the unweighted mean of the group's unit features; ``beta`` term only when
    semantic), and the merged Gaussian is:

    * **means, sh, features**: ``sum_i w_i x_i``.
    * **quats**: inputs normalised, sign-aligned to the group's highest-weight member (so ``q``
      and ``-q`` do not cancel), ``sum_i w_i q_i``, renormalised.
    * **scales**: weighted mean in log space, ``exp(sum_i w_i log s_i)``. Chosen over moment
      matching because it keeps the merged Gaussian's rotation (moment matching would need an
      eigendecomposition whose gradients blow up for near-isotropic Gaussians), stays within the
      members' range and is scale-equivariant; voxels are about a pixel footprint wide, so the
      spread of the centres that moment matching would add is small anyway.
    * **opacities**: weighted mean of the opacity in [0, 1]. Members of a group are the same
      surface seen from several views, not stacked layers, so compositing them
      (``1 - prod(1 - a)``) would over-count; the mean also stays in [0, 1].
    * **confidence**: ``logsumexp`` of the members' confidences: the log of the softmax
      denominator, so merging merged sets again weights them exactly as one merge of all their
      members would (with ``beta = 0``), and a singleton keeps its confidence.

    The assignment (voxels, groups, the quaternion sign) is hard; everything else is
    differentiable with respect to every attribute and the confidences.

    Args:
        gaussians: an unbatched set of ``N`` Gaussians (``Gaussians.flatten()`` per-view batches
            first). ``confidence`` None means equal weights (and a None confidence out).
        config: voxel size, semantic grouping and weighting.
        scale: world units per normalised unit; default :func:`estimate_scene_scale`
            ``(gaussians.means)``. The voxel edge is ``config.voxel_size * scale``.
        prototypes: optional ``[C, F]`` class prototypes; groups are then "nearest prototype"
            instead of leader grouping (see :func:`semantic_groups`).

    Returns:
        :class:`VoxelResult` with ``M <= N`` merged Gaussians and the ``inverse [N]`` map.

    Raises:
        ValueError: batched input, NaN/inf confidences or centres (with their count), or
            ``semantic=True`` without features.

    Example:
        >>> g = per_view_gaussians.flatten()
        >>> out = voxelize(g, VoxelConfig(voxel_size=0.002), scale=estimate_scene_scale(g.means, cams.centers))
        >>> out.gaussians.num, out.inverse.shape
    """
    _check_input(gaussians, config)
    g = gaussians
    n = g.num
    conf = g.confidence if g.confidence is not None else torch.zeros(n, dtype=g.means.dtype, device=g.device)
    if n == 0:
        empty_w = torch.zeros(0, dtype=g.means.dtype, device=g.device)
        empty_i = torch.zeros(0, dtype=torch.long, device=g.device)
        return VoxelResult(gaussians=g, inverse=empty_i, weights=empty_w, num_voxels=0)
    if scale is None:
        scale = estimate_scene_scale(g.means)
    voxel, _ = voxel_ids(g.means, torch.as_tensor(scale, dtype=g.means.dtype) * config.voxel_size, config.rounding)
    num_voxels = int(voxel.max()) + 1

    if config.semantic:
        sub = semantic_groups(g.features, conf, voxel, num_voxels, config, prototypes)
        # sub <= max_rounds + n (or < C), so this key fits int64 for any n below ~3e9.
        _, inverse = torch.unique(voxel * (int(sub.max()) + 1) + sub, return_inverse=True)
    else:
        inverse = voxel
    m = int(inverse.max()) + 1

    logits = conf
    if config.semantic and config.beta != 0.0:
        fhat = F.normalize(g.features, dim=-1)
        centre = F.normalize(_segment_sum(fhat, inverse, m), dim=-1)
        logits = conf + config.beta * (fhat * centre[inverse]).sum(dim=-1)
    w = _segment_softmax(logits, inverse, m)

    def wmean(x: Tensor) -> Tensor:
        return _segment_sum(w.view(-1, *([1] * (x.ndim - 1))) * x, inverse, m)

    q = F.normalize(g.quats, dim=-1)
    lead = _segment_argmax(logits.detach(), inverse, m)
    sign = torch.where((q * q[lead][inverse]).sum(dim=-1, keepdim=True) >= 0, 1.0, -1.0).to(q)
    merged = Gaussians(
        means=wmean(g.means),
        quats=F.normalize(wmean(sign * q), dim=-1),
        scales=torch.exp(wmean(torch.log(g.scales))),
        opacities=wmean(g.opacities),
        sh=wmean(g.sh),
        features=wmean(g.features),
        confidence=_segment_logsumexp(conf, inverse, m) if g.confidence is not None else None,
    )
    return VoxelResult(gaussians=merged, inverse=inverse, weights=w, num_voxels=num_voxels)


def group_purity(
    inverse: Tensor, labels: Tensor, merged_features: Tensor, prototypes: Tensor, mask: Optional[Tensor] = None
) -> float:
    """Share of merged Gaussians whose feature's nearest prototype is the majority input label.

    Args:
        inverse: ``[N]`` merged index of each input (``VoxelResult.inverse``).
        labels: ``[N]`` int class of each input, ``0..C-1`` (index into ``prototypes``).
        merged_features: ``[M, F]`` merged features.
        prototypes: ``[C, F]`` class prototypes.
        mask: optional ``[M]`` bool, measure only these merged Gaussians (e.g. class boundaries).

    Returns:
        Purity in [0, 1] (1.0 for an empty set).
    """
    m, c = merged_features.shape[0], prototypes.shape[0]
    if m == 0:
        return 1.0
    counts = torch.zeros(m * c, dtype=torch.long, device=inverse.device)
    counts.index_add_(0, inverse * c + labels.long(), torch.ones_like(inverse))
    majority = counts.view(m, c).argmax(dim=-1)
    nearest = (F.normalize(merged_features.detach(), dim=-1) @ F.normalize(prototypes.to(merged_features), dim=-1).T).argmax(-1)
    ok = majority == nearest
    if mask is not None:
        ok = ok[mask]
    return float(ok.double().mean()) if ok.numel() else 1.0
