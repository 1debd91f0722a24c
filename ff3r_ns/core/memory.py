"""Peak GPU memory of one FF3R forward pass, estimated before anything is allocated.

A scene with too many views for the device should be refused with a number and the flag to change,
not die halfway through the network with a CUDA out-of-memory error. The estimate has four parts:

* **weights**: every parameter in fp32 (bf16 autocast casts them on the fly), counted by building the
  network on PyTorch's ``meta`` device, which allocates nothing;
* **tokens**: the aggregator over ``S * (P + 1 + R)`` tokens of width ``E`` (``P`` patches, one camera and
  ``R`` register tokens per view). With SDPA flash / memory-efficient attention the global attention is
  linear in tokens; what remains per token is the kept DPT layers (``2E`` each) and the working set of one
  block (qkv, attention output, MLP hidden, residuals);
* **pixels**: the pixel-aligned Gaussians of all views, ``S * H * W`` times their fp32 attribute count;
* **heads**: the DPT heads' full-resolution activations, which exist for one chunk of
  ``min(S, heads.frames_chunk_size)`` views at a time.

The per-unit byte counts below were calibrated against the H100 measurements in
``benchmarks/results/network.json`` (``python -m benchmarks.network``: base and vggt-1b, 8 to 128 views at
448x336, bf16): the estimate is within 25 % of every measured peak (``tests/test_robustness.py`` checks it
against that file). Beyond ~100 views the measured peak grows a little faster than linearly (allocator
fragmentation), so the estimate is ~10 % low there; :func:`check_fits` keeps headroom for that.

Example:
    >>> need = estimate_forward_memory(FF3RConfig.vggt_1b(), views=64, height=336, width=448)
    >>> check_fits(need, torch.cuda.mem_get_info()[0])   # raises ForwardMemoryError if it cannot fit
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ff3r_ns.core.network.config import FF3RConfig

GB = 1e9

# Calibration (see the module docstring). Token working set of one aggregator block in units of the token
# width: qkv (3) + attention output (1) + MLP hidden at ratio 4 (4) + residual and norm copies (3).
_TOKEN_WORKSET_WIDTHS = 11.0
# DPT head activations per full-resolution pixel of one chunk view, in fp32 values per fusion channel.
_HEAD_VALUES_PER_FEATURE = 1.75

FLAG_IMAGE_SIZE = "--pipeline.model.network.image-size"
FLAG_HEAD_CHUNK = "--pipeline.model.network.architecture.heads.frames-chunk-size"


class ForwardMemoryError(RuntimeError):
    """The forward pass would not fit in the available device memory (message: estimate and flags)."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one forward pass, by part, in bytes.

    Attributes:
        weights: parameters.
        tokens: aggregator activations (linear in tokens).
        pixels: pixel-aligned Gaussians and depth of all views.
        heads: dense-head activations of one chunk of views.
        views, height, width: the input the estimate is for.
    """

    weights: int
    tokens: int
    pixels: int
    heads: int
    views: int
    height: int
    width: int

    @property
    def total(self) -> int:
        return self.weights + self.tokens + self.pixels + self.heads

    def describe(self) -> str:
        parts = ", ".join(f"{k} {getattr(self, k) / GB:.2f}" for k in ("weights", "tokens", "pixels", "heads"))
        return f"~{self.total / GB:.2f} GB for {self.views} views at {self.width}x{self.height} ({parts} GB)"


_PARAM_COUNTS: dict[str, int] = {}  # repr(config) -> count (configs are unhashable dataclasses)


def _count_parameters_meta(config: FF3RConfig) -> int:
    from ff3r_ns.core.network.model import FF3R

    with torch.device("meta"):  # shapes only, no memory
        n = sum(p.numel() for p in FF3R(config.with_fusion(False)).parameters())
        if config.fusion.enable_fusion:
            n += _semantic_and_fusion_parameters(config)
    return n


def _semantic_and_fusion_parameters(config: FF3RConfig) -> int:
    """Parameters of the semantic encoder and the fusion layers (built on the current ``meta`` device)."""
    from ff3r_ns.core.network.fusion import SemanticFusion

    sem = config.semantic
    if sem.kind == "open_clip":
        import open_clip

        # open_clip.create_model moves the model with .to(), which meta tensors refuse; build the CLIP directly.
        model_cfg = open_clip.get_model_config(sem.model_name)
        if model_cfg is None:
            raise ValueError(f"unknown open_clip model {sem.model_name!r}")
        model = open_clip.CLIP(**{**model_cfg, **sem.model_kwargs})
        width = model.visual.proj.shape[1]
    else:
        import timm

        model = timm.create_model(sem.model_name, pretrained=False, **sem.model_kwargs)
        width = model.num_features
    fusion = SemanticFusion(config.fusion, config.geometry.embed_dim, width, config.heads.feature_dim)
    return sum(p.numel() for m in (model, fusion) for p in m.parameters())


def count_parameters(config: FF3RConfig) -> int:
    """Parameter count of ``FF3R(config)`` without allocating it (``meta`` device).

    Example:
        >>> count_parameters(FF3RConfig.tiny()) > 0
        True
    """
    config = replace(config, semantic=replace(config.semantic, weights="random", checkpoint=None, pretrained=None))
    key = repr(config)
    if key not in _PARAM_COUNTS:
        _PARAM_COUNTS[key] = _count_parameters_meta(config)
    return _PARAM_COUNTS[key]


def forward_memory_breakdown(
    config: FF3RConfig, views: int, height: int, width: int, dtype: torch.dtype = torch.bfloat16
) -> MemoryEstimate:
    """:func:`estimate_forward_memory`, by part.

    Args:
        config: the network.
        views: ``S``, the number of input views.
        height, width: network input size in pixels (multiples of the patch size).
        dtype: activation dtype of the aggregator (``torch.bfloat16`` with autocast, else ``torch.float32``).

    Returns:
        :class:`MemoryEstimate`.
    """
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got {height}x{width}")
    g, h = config.geometry, config.heads
    act_bytes = torch.empty(0, dtype=dtype).element_size()
    patches = (height // g.patch_size) * (width // g.patch_size)
    tokens = views * (patches + 1 + g.num_register_tokens)
    kept_layers = len(set(h.dpt_layers) | {g.depth - 1})
    token_bytes = tokens * g.embed_dim * act_bytes * (2 * kept_layers + _TOKEN_WORKSET_WIDTHS)
    # Pixel Gaussians in fp32: means 3, quats 4, scales 3, opacity 1, SH 3K, feature F, confidence 1.
    attributes = 12 + 3 * (h.sh_degree + 1) ** 2 + h.feature_dim
    pixel_bytes = views * height * width * 4 * attributes
    chunk = min(views, max(1, h.frames_chunk_size))
    head_bytes = chunk * height * width * 4 * _HEAD_VALUES_PER_FEATURE * (h.dpt_features + h.gaussian_dpt_features)
    return MemoryEstimate(
        weights=4 * count_parameters(config), tokens=int(token_bytes), pixels=int(pixel_bytes), heads=int(head_bytes),
        views=views, height=height, width=width,
    )


def estimate_forward_memory(
    config: FF3RConfig, views: int, height: int, width: int, dtype: torch.dtype = torch.bfloat16
) -> int:
    """Estimated peak device memory (bytes) of one inference forward pass of ``FF3R(config)``.

    Args:
        config: the network.
        views: number of input views ``S``.
        height, width: network input size in pixels.
        dtype: activation dtype (``torch.bfloat16`` under autocast, ``torch.float32`` otherwise).

    Returns:
        Bytes (calibrated to ``torch.cuda.max_memory_allocated`` on an H100; see the module docstring).

    Example:
        >>> estimate_forward_memory(FF3RConfig.vggt_1b(), 64, 336, 448) / 1e9   # measured: 12.23
        12.3...
    """
    return forward_memory_breakdown(config, views, height, width, dtype).total


def check_fits(estimate: int | MemoryEstimate, available_bytes: int, headroom: float = 0.1) -> None:
    """Refuse a forward pass that would not fit, before anything is allocated.

    Args:
        estimate: bytes from :func:`estimate_forward_memory`, or a :class:`MemoryEstimate` (better message).
        available_bytes: free device memory, e.g. ``torch.cuda.mem_get_info()[0]``.
        headroom: fraction of ``available_bytes`` kept free for what the estimate does not model
            (allocator fragmentation, the CUDA context of other libraries).

    Raises:
        ForwardMemoryError: ``estimate > (1 - headroom) * available_bytes``; the message gives the estimate
            and the flags that reduce it.
    """
    if not 0.0 <= headroom < 1.0:
        raise ValueError(f"headroom must be in [0, 1), got {headroom}")
    need = estimate.total if isinstance(estimate, MemoryEstimate) else int(estimate)
    budget = (1.0 - headroom) * available_bytes
    if need <= budget:
        return
    what = estimate.describe() if isinstance(estimate, MemoryEstimate) else f"~{need / GB:.2f} GB"
    raise ForwardMemoryError(
        f"FF3R forward pass needs {what}, but only {available_bytes / GB:.2f} GB is available "
        f"({budget / GB:.2f} GB after {headroom:.0%} headroom). Memory grows linearly with the number of views "
        f"and with the pixels per view: use fewer views, lower {FLAG_IMAGE_SIZE}, or lower {FLAG_HEAD_CHUNK} "
        f"(dense heads run over chunks of that many views)."
    )
