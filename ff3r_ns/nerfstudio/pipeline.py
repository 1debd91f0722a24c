"""The pipeline: runs the feedforward reconstruction once before training starts.

When ``ns-train`` builds the pipeline (``test_mode="val"``) the network predicts Gaussians and cameras
from every training image right away, so the optimizers are created for the predicted Gaussians. For
``ns-eval``, ``ns-viewer`` and ``ns-export`` (``test_mode`` "test"/"inference") nothing is predicted:
the checkpoint holds the Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Type

import torch
from torch.cuda.amp.grad_scaler import GradScaler

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig

from ff3r_ns.nerfstudio.compat import patch_checkpoint_loading


@dataclass
class FF3RPipelineConfig(VanillaPipelineConfig):
    """Pipeline that reconstructs the scene with one forward pass before refinement."""

    _target: Type = field(default_factory=lambda: FF3RPipeline)


class FF3RPipeline(VanillaPipeline):
    def __init__(
        self,
        config: FF3RPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[GradScaler] = None,
    ):
        # Both checkpoint loaders (trainer, eval_utils) build the pipeline first, then call torch.load.
        patch_checkpoint_loading()
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        if test_mode == "val":
            try:
                self.model.reconstruct(self.datamanager.training_images(), self.datamanager.train_dataset.cameras)
            except (ValueError, FileNotFoundError) as err:
                raise SystemExit(f"ff3r: error: {err}") from None

    def get_average_image_metrics(self, data_loader, image_prefix: str, step=None, output_path=None, get_std: bool = False):
        if len(data_loader) == 0:
            raise SystemExit(
                "ff3r: error: the dataset has no evaluation images (nerfstudio holds out 10% of the frames, "
                "rounded down: use at least 10 frames, or set the dataparser's eval split), so there is nothing "
                "for ns-eval to measure"
            )
        return super().get_average_image_metrics(data_loader, image_prefix, step, output_path, get_std)
