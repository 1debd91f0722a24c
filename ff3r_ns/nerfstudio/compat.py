"""Small fixes that make nerfstudio 1.1.5 usable on current torch and offline.

* nerfstudio loads checkpoints with ``torch.load(path, map_location="cpu")``; torch >= 2.6 defaults to
  ``weights_only=True`` and refuses the optimizer/scheduler state nerfstudio pickles (nerfstudio issue
  3683). :func:`patch_checkpoint_loading` gives the two nerfstudio modules that load checkpoints
  (``engine.trainer`` and ``utils.eval_utils``) a ``torch`` whose ``load`` defaults to
  ``weights_only=False``; torch itself is left untouched for every other caller. Checkpoints are files the
  user's own ``ns-train`` wrote, which is the case torch documents for ``weights_only=False``.
"""

from __future__ import annotations

import functools
import sys
import types
from typing import Any

import torch


class _TorchWithTrustedLoad(types.ModuleType):
    """Forwards every attribute to ``torch`` except ``load``, which defaults to ``weights_only=False``."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    @functools.wraps(torch.load)
    def load(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("weights_only", False)
        return torch.load(*args, **kwargs)


_PATCHED_MODULES = ("nerfstudio.engine.trainer", "nerfstudio.utils.eval_utils")


def patch_checkpoint_loading() -> None:
    """Idempotent. Called when an ff3r pipeline is built, which both checkpoint loaders do first, so the
    modules are already imported; modules not imported yet are left alone (importing them is slow)."""
    proxy = _TorchWithTrustedLoad()
    for name in _PATCHED_MODULES:
        module = sys.modules.get(name)
        if module is not None and not isinstance(getattr(module, "torch", None), _TorchWithTrustedLoad):
            module.torch = proxy  # type: ignore[attr-defined]
