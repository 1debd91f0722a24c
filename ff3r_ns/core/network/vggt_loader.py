"""Load a VGGT checkpoint (https://github.com/facebookresearch/vggt) into :class:`FF3R`.

Our aggregator, camera head and depth head use VGGT's parameter names, so the mapping is by key:
``aggregator.*``, ``camera_head.*`` and ``depth_head.*`` load as they are; VGGT's ``point_head.*`` and
``track_head.*`` have no counterpart and are reported as unexpected-but-ignored. The Gaussian head,
fusion, semantic encoder and feature decoder are FF3R's own and keep their initialisation.
Wrappers (``{"model": ...}``, ``{"state_dict": ...}``) and ``module.`` prefixes are unwrapped.

Example:
    >>> report = load_vggt_checkpoint(model, "/path/to/vggt_1b/model.pt")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Union

import torch
from torch import Tensor, nn

VGGT_PREFIXES = ("aggregator.", "camera_head.", "depth_head.")
"""Modules whose VGGT weights load into FF3R."""
IGNORED_PREFIXES = ("point_head.", "track_head.")
"""VGGT modules FF3R does not have (reported, not loaded)."""


@dataclass
class LoadReport:
    """What :func:`load_vggt_checkpoint` did.

    Attributes:
        loaded: our keys that received checkpoint values.
        missing: our keys under ``VGGT_PREFIXES`` the checkpoint lacked (kept at their init).
        unexpected: checkpoint keys that matched nothing of ours (``ignored`` ones included).
        ignored: the unexpected keys of VGGT's point and track heads, skipped on purpose.
        mismatched: ``(key, checkpoint shape, our shape)`` for keys whose shapes differ (not loaded).
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"VGGT checkpoint: {len(self.loaded)} tensors loaded, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected ({len(self.ignored)} of them point/track head, ignored), "
            f"{len(self.mismatched)} shape mismatches"
        )


def read_state_dict(source: Union[str, os.PathLike, Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """A flat ``{name: tensor}`` from a ``.pt``/``.pth``/``.safetensors`` file or a mapping, unwrapped."""
    if isinstance(source, Mapping):
        sd = dict(source)
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"VGGT checkpoint {path!r} does not exist")
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict", "module"):
        if isinstance(sd.get(wrapper), Mapping):
            sd = dict(sd[wrapper])
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "model."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def map_vggt_key(key: str) -> str | None:
    """Our name for VGGT parameter ``key``, or None when FF3R has no counterpart."""
    return key if key.startswith(VGGT_PREFIXES) else None


@torch.no_grad()
def load_vggt_checkpoint(
    model: nn.Module, source: Union[str, os.PathLike, Mapping[str, Tensor]], strict_shapes: bool = True,
) -> LoadReport:
    """Copy VGGT weights into ``model`` (an :class:`FF3R`) by name, shape-checked.

    Args:
        model: the network (its config must have VGGT's sizes for a full load, e.g. ``FF3RConfig.vggt_1b()``).
        source: checkpoint path or state dict.
        strict_shapes: raise ``ValueError`` listing every shape mismatch (the usual cause: a config that
            is not VGGT's size); with False, mismatched tensors are skipped and reported.

    Returns:
        :class:`LoadReport`.
    """
    sd = read_state_dict(source)
    ours = model.state_dict()
    report = LoadReport()
    to_load: dict[str, Tensor] = {}
    for key, value in sd.items():
        target = map_vggt_key(key)
        if target is None or target not in ours:
            report.unexpected.append(key)
            if key.startswith(IGNORED_PREFIXES):
                report.ignored.append(key)
            continue
        if tuple(value.shape) != tuple(ours[target].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(ours[target].shape)))
            continue
        to_load[target] = value
    if report.mismatched and strict_shapes:
        lines = "\n".join(f"  {k}: checkpoint {a} vs model {b}" for k, a, b in report.mismatched[:20])
        raise ValueError(
            f"VGGT checkpoint shapes do not fit this model ({len(report.mismatched)} tensors); is the config "
            f"FF3RConfig.vggt_1b()?\n{lines}"
        )
    for target, value in to_load.items():
        ours[target].copy_(value.to(ours[target].dtype))
    report.loaded = sorted(to_load)
    report.missing = sorted(k for k in ours if k.startswith(VGGT_PREFIXES) and k not in to_load)
    return report
