"""The network: geometry encoder, semantic encoders, fusion, heads, and the FF3R module.

Names are imported lazily (PEP 562) so that reading a config (``ff3r_ns.core.network.config``), which
the nerfstudio entry points do, does not import the model, open_clip or timm.

Example:
    >>> import torch
    >>> from ff3r_ns.core.network import FF3R, FF3RConfig
    >>> out = FF3R(FF3RConfig.tiny())(torch.rand(2, 3, 28, 28))
    >>> out.gaussians.batch_shape
    torch.Size([2])
"""

import importlib
from typing import Any

_EXPORTS = {
    "FF3RConfig": "config", "FusionConfig": "config", "GeometryConfig": "config", "HeadsConfig": "config",
    "SemanticConfig": "config", "FeatureDecoder": "gaussian_head", "FF3R": "model", "FF3ROutput": "model",
    "MissingWeightsError": "semantic", "SemanticEncoder": "semantic", "build_semantic_encoder": "semantic",
    "OfflineTeacher": "teacher", "LoadReport": "vggt_loader", "load_vggt_checkpoint": "vggt_loader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
