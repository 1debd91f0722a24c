"""One feedforward reconstruction: images -> network -> (voxel merge) -> clean Gaussians + cameras.

This is the path every user-facing command shares (``ns-train ff3r``, ``ff3r-eval``, the benchmarks):

1. resize the images to the network's input size (longest side ``image_size``, both sides multiples of
   the patch size);
2. run :class:`~ff3r_ns.core.network.model.FF3R` once;
3. merge the pixel-aligned Gaussians by voxel when ``voxel_size > 0``;
4. drop Gaussians with non-finite attributes (counted and reported, never kept);
5. optionally move everything into a reference frame (the dataset's cameras) by a similarity, and express
   the predicted cameras at the reference image size.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ff3r_ns.core.cameras import Cameras, Sim3, align_cameras
from ff3r_ns.core.gaussians import Gaussians, transform_gaussians
from ff3r_ns.core.network.config import FF3RConfig


@dataclass
class NetworkSettings:
    """Which network to run and how (a nerfstudio-style config: every field is a CLI flag)."""

    architecture: FF3RConfig = field(default_factory=FF3RConfig.base)
    """The network's architecture (presets: FF3RConfig.tiny / base / vggt_1b)."""
    weights: Optional[Path] = None
    """FF3R network checkpoint (a .pt state dict written by ff3r's training). Without it, and without
    --random-init, the run stops and names this flag."""
    random_init: bool = False
    """Run a randomly initialised network (for pipeline checks only: the reconstruction is meaningless)."""
    image_size: int = 224
    """Longest side of the network input in pixels (each side is rounded to a multiple of the patch size)."""
    voxel_size: float = 0.0
    """Voxel size for merging Gaussians, as a fraction of the scene scale (0 keeps every pixel's Gaussian)."""
    semantic_merge: bool = True
    """Never merge Gaussians whose semantic features disagree (off = geometry-only merging, as AnySplat)."""
    placement: Literal["per_view", "similarity"] = "per_view"
    """How a prediction enters a posed dataset's frame: "per_view" re-anchors every view's Gaussians to its own
    dataset camera with a fitted depth scale (ff3r_ns.core.placement); "similarity" moves the whole prediction by
    the one similarity that best carries the predicted cameras onto the dataset's."""

    @property
    def sh_degree(self) -> int:
        return self.architecture.heads.sh_degree

    @property
    def feature_dim(self) -> int:
        return self.architecture.heads.feature_dim


@dataclass
class Reconstruction:
    """The result of :func:`run_network`.

    Attributes:
        gaussians: merged, finite Gaussians (unbatched), in the reference frame when one was given.
        cameras: the ``S`` cameras the Gaussians are consistent with, at the reference image size (else the
            network's input size): the predicted ones, moved by ``to_reference`` under "similarity" placement
            or without a reference; the reference cameras themselves under "per_view" placement.
        depth: ``[S, h, w]`` predicted z-depth at the network's input size (reference-frame units).
        to_reference: the similarity that best carries the predicted cameras onto the reference (identity
            without one); under "per_view" placement only the starting point of the per-view scale fit.
        view_scales: ``[S]`` per-view depth scales of "per_view" placement, or None.
        gaussians_predicted: pixel-aligned Gaussians before merging.
        dropped_nonfinite: Gaussians removed for NaN/inf attributes.
        forward_seconds: wall time of the network's forward pass.
        merge_seconds: wall time of the placement, the non-finite filter and the voxel merge.
    """

    gaussians: Gaussians
    cameras: Cameras
    depth: Tensor
    to_reference: Sim3
    gaussians_predicted: int
    dropped_nonfinite: int
    forward_seconds: float
    merge_seconds: float
    view_scales: Optional[Tensor] = None

    def timings(self, total_seconds: Optional[float] = None) -> "ReconstructionTimings":
        """Its stage times and Gaussian counts, without the tensors (``total_seconds``: as the caller timed it)."""
        return ReconstructionTimings(
            self.forward_seconds, self.merge_seconds, total_seconds, self.gaussians_predicted, self.gaussians.num
        )

    def summary(self) -> str:
        return (
            f"FF3R: {self.cameras.world_to_cam.shape[0]} views -> {self.gaussians_predicted:,} Gaussians predicted, "
            f"{self.gaussians.num:,} kept (dropped {self.dropped_nonfinite} non-finite); "
            f"forward {self.forward_seconds:.2f} s, merge {self.merge_seconds:.2f} s"
        )


@dataclass(frozen=True)
class ReconstructionTimings:
    """Where one reconstruction's wall time went, in seconds (CUDA-synchronised), and its Gaussian counts.

    Attributes:
        forward_seconds: the network's forward pass.
        merge_seconds: the non-finite filter and the voxel merge.
        total_seconds: the whole reconstruction as its caller timed it (with loading the weights and the teacher,
            resizing the images and the alignment to the reference frame), or None.
        gaussians_predicted: pixel-aligned Gaussians before merging.
        gaussians_kept: Gaussians after merging and the non-finite filter.
    """

    forward_seconds: float
    merge_seconds: float
    total_seconds: Optional[float]
    gaussians_predicted: int
    gaussians_kept: int


def network_input_size(height: int, width: int, longest: int, patch: int = 14) -> tuple[int, int]:
    """``(h, w)`` with the longest side ~``longest``, aspect kept, both multiples of ``patch``."""
    s = longest / max(height, width)
    h = max(patch, int(round(height * s / patch)) * patch)
    w = max(patch, int(round(width * s / patch)) * patch)
    return h, w


def build_network(settings: NetworkSettings, device: torch.device | str = "cpu", checkpoint=None) -> torch.nn.Module:
    """The FF3R network for ``settings`` with its weights loaded (or random, when asked for).

    ``checkpoint``: the already loaded :class:`~ff3r_ns.core.checkpoint.FF3RCheckpoint` of ``settings.weights``
    (saves reading a large file twice when the caller also needs its teacher)."""
    from ff3r_ns.core.network.model import FF3R

    if settings.weights is not None:
        from ff3r_ns.core.checkpoint import load_checkpoint, weight_mismatch

        ckpt = checkpoint if checkpoint is not None else load_checkpoint(settings.weights)
        diff = weight_mismatch(settings.architecture, ckpt.architecture)
        if diff:
            raise ValueError(
                f"{settings.weights} was trained with a different network: " + "; ".join(diff[:4])
                + (f" (+{len(diff) - 4} more)" if len(diff) > 4 else "")
                + ". Use the method it was trained for, or set --pipeline.model.network.architecture.* to match."
            )
        net = FF3R(settings.architecture)
        missing, unexpected = net.load_state_dict(ckpt.network, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{settings.weights} does not match the network: {len(missing)} missing keys (e.g. {missing[:3]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
            )
    elif settings.random_init:
        net = FF3R(settings.architecture)
    else:
        raise ValueError(
            "No weights for the FF3R network: pass --pipeline.model.network.weights PATH (an FF3R checkpoint), "
            "or --pipeline.model.network.random-init True to check the pipeline with a random network."
        )
    return net.to(device).eval()


def load_teacher(settings: NetworkSettings, classes: list[str], checkpoint=None):
    """The offline teacher whose class embeddings the network's features were trained against.

    From the checkpoint when ``settings.weights`` has one (``checkpoint``: that file, already loaded);
    otherwise the default :class:`~ff3r_ns.core.checkpoint.TeacherSettings` at the architecture's teacher width.
    """
    from ff3r_ns.core.checkpoint import TeacherSettings, load_checkpoint

    if settings.weights is not None:
        ckpt = checkpoint if checkpoint is not None else load_checkpoint(settings.weights)
        if ckpt.teacher is not None:
            return ckpt.teacher.build(list(ckpt.classes) or list(classes))
    return TeacherSettings(dim=settings.architecture.heads.teacher_dim).build(list(classes))


def resize_images(images: Tensor, size: tuple[int, int]) -> Tensor:
    """``[S, H, W, 3]`` in [0, 1] -> ``[S, 3, h, w]`` (antialiased bilinear)."""
    x = images.permute(0, 3, 1, 2).float()
    if tuple(x.shape[-2:]) == tuple(size):
        return x.contiguous()
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _network_size(settings: NetworkSettings, images: Tensor) -> tuple[int, int]:
    """The network's input ``(h, w)`` for ``images`` ``[S, H, W, 3]``; errors on a wrong shape, no image, or (on CUDA)
    a view count that cannot fit, before the weights or activations take any memory."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [S, H, W, 3], got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("run_network needs at least one image, got 0 (is the dataset or the selection of views empty?)")
    size = network_input_size(images.shape[1], images.shape[2], settings.image_size)
    if images.device.type == "cuda":
        from ff3r_ns.core.memory import check_fits, forward_memory_breakdown

        dtype = torch.bfloat16 if settings.architecture.bf16 else torch.float32
        breakdown = forward_memory_breakdown(settings.architecture, images.shape[0], size[0], size[1], dtype)
        check_fits(breakdown, torch.cuda.mem_get_info(images.device)[0])
    return size


def _merge(settings: NetworkSettings, gaussians: Gaussians, cameras: Cameras) -> Gaussians:
    """``settings``' voxel merge of ``gaussians`` (voxel edge relative to the scene's scale)."""
    from ff3r_ns.core.voxelize import VoxelConfig, estimate_scene_scale, voxelize

    config = VoxelConfig(voxel_size=settings.voxel_size, semantic=settings.semantic_merge)
    scale = estimate_scene_scale(gaussians.means, cameras.centers)
    return voxelize(gaussians, config, scale=scale).gaussians


@torch.no_grad()
def run_network(
    settings: NetworkSettings,
    images: Tensor,
    reference: Optional[Cameras] = None,
    network: Optional[torch.nn.Module] = None,
) -> Reconstruction:
    """Reconstruct one scene in a single forward pass.

    Args:
        settings: network settings.
        images: ``[S, H, W, 3]`` float in [0, 1], all of one size.
        reference: the dataset's cameras for the same images (only their poses and image size are used), or
            None to keep the network's own frame (first view at the origin).
        network: an already built network (else built from ``settings``).

    Returns:
        :class:`Reconstruction`.
    """
    size = _network_size(settings, images)
    device = images.device
    s, height, width, _ = images.shape
    net = network if network is not None else build_network(settings, device)
    x = resize_images(images, size)

    t0 = time.perf_counter()
    out = net(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    forward_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    cameras, depth, batched = out.cameras, out.depth, out.gaussians
    to_ref = Sim3.identity(device=device)
    view_scales = None
    if reference is not None:
        if len(reference) != s:
            raise ValueError(f"{len(reference)} reference cameras for {s} images")
        reference = reference.to(device)
        to_ref = align_cameras(
            cameras.world_to_cam.float(), reference.world_to_cam.float(), source_scale=float(depth.median())
        )
        if settings.placement == "per_view":
            from ff3r_ns.core.placement import fit_view_scales, place_views

            ref_small = reference.resized(x.shape[-1], x.shape[-2])
            view_scales = fit_view_scales(depth, x, ref_small, init=to_ref.scale)
            placed = place_views(batched, depth, cameras, ref_small, view_scales)
            batched, depth, cameras = placed.gaussians, placed.depth, ref_small
    predicted = batched.flatten()
    finite = predicted.finite_mask()
    gaussians = predicted[finite]
    if settings.voxel_size > 0 and gaussians.num > 0:
        gaussians = _merge(settings, gaussians, cameras)
    if reference is not None and settings.placement == "similarity":
        gaussians = transform_gaussians(gaussians, to_ref.scale, to_ref.rotation, to_ref.translation)
        cameras = Cameras(to_ref.apply_world_to_cam(cameras.world_to_cam.float()), cameras.intrinsics, cameras.width, cameras.height)
        depth = depth * to_ref.scale
    if device.type == "cuda":
        torch.cuda.synchronize()  # else the merge's kernels would still be running when the clock stops
    merge_seconds = time.perf_counter() - t0
    cameras = cameras.resized(width, height)
    return Reconstruction(
        gaussians=gaussians.detach(),
        cameras=cameras,
        depth=depth,
        to_reference=to_ref,
        gaussians_predicted=predicted.num,
        dropped_nonfinite=int((~finite).sum()),
        forward_seconds=forward_seconds,
        merge_seconds=merge_seconds,
        view_scales=view_scales,
    )


def normalized(rec: Reconstruction) -> Reconstruction:
    """``rec`` moved and scaled as nerfstudio-data normalises poses: camera centres centred on their mean, the
    largest centre coordinate 1 (so splatfacto's absolute learning rates and thresholds apply to unposed scenes).

    Cameras at (nearly) one point give no length: the median Gaussian distance from them becomes 1 instead.
    """
    centres = rec.cameras.centers.double()
    mean = centres.mean(0)
    spread = float((centres - mean).abs().max()) if centres.shape[0] > 1 else 0.0
    if spread <= 1e-6:
        d = (rec.gaussians.means.double() - mean).norm(dim=-1)
        spread = float(d.median()) if d.numel() else 1.0
    scale = 1.0 / max(spread, 1e-12)
    dev, dt = rec.gaussians.means.device, rec.gaussians.means.dtype
    sim = Sim3(torch.tensor(scale, device=dev, dtype=dt), torch.eye(3, device=dev, dtype=dt), (-scale * mean).to(dev, dt))
    cams = rec.cameras
    return dataclasses.replace(
        rec,
        gaussians=transform_gaussians(rec.gaussians, sim.scale, sim.rotation, sim.translation),
        cameras=Cameras(sim.apply_world_to_cam(cams.world_to_cam.to(dt)), cams.intrinsics, cams.width, cams.height),
        depth=rec.depth * scale,
        to_reference=Sim3(sim.scale * rec.to_reference.scale, rec.to_reference.rotation,
                          sim.scale * rec.to_reference.translation + sim.translation),
    )
