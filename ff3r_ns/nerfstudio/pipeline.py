"""The pipeline: runs the feedforward reconstruction once before training starts.

When ``ns-train`` builds the pipeline (``test_mode="val"``) the network predicts Gaussians and cameras
from every training image right away, so the optimizers are created for the predicted Gaussians. For
``ns-eval``, ``ns-viewer`` and ``ns-export`` (``test_mode`` "test"/"inference") nothing is predicted:
the checkpoint holds the Gaussians.
"""

from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Literal, Optional, Type

import torch
from torch.cuda.amp.grad_scaler import GradScaler

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from ff3r_ns.core.memory import ForwardMemoryError
from ff3r_ns.core.reconstruct import ReconstructionTimings
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
        # Stage times of the feedforward pass ("val" mode only), for benchmarks/vs_splatfacto.py.
        self.reconstruction_timings: Optional[ReconstructionTimings] = None
        if test_mode == "val":
            # Placeholder poses (images-data) carry no frame to place the prediction in; nor do broken ones.
            reference = None if self.poses_are_placeholders else self._usable_dataset_cameras()
            labels, classes = self._training_labels()
            t0 = time.perf_counter()
            try:
                rec = self.model.reconstruct(self.datamanager.training_images(), reference, labels, classes)
            except (ValueError, FileNotFoundError, ForwardMemoryError) as err:
                raise SystemExit(f"ff3r: error: {err}") from None
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            self.reconstruction_timings = rec.timings(total_seconds=time.perf_counter() - t0)
            self._adopt_predicted_cameras()

    @property
    def poses_are_placeholders(self) -> bool:
        return bool(self.datamanager.train_dataset.metadata.get("poses_are_placeholders", False))

    def _usable_dataset_cameras(self):
        """The training cameras, or None (with a one-line warning) when their poses cannot place anything: a NaN/inf
        entry, or every camera at one point. The run then keeps the predicted cameras, as for unposed photos."""
        cams = self.datamanager.train_dataset.cameras
        c2w = cams.camera_to_worlds
        problem = ""
        if not bool(torch.isfinite(c2w).all()) or not bool(torch.isfinite(cams.get_intrinsics_matrices()).all()):
            problem = "non-finite (NaN/inf) entries in its camera poses or intrinsics"
        elif c2w.shape[0] > 1 and float((c2w[:, :3, 3] - c2w[:1, :3, 3]).norm(dim=-1).max()) < 1e-6:
            problem = "all its cameras at one point (no baseline)"
        if not problem:
            return cams
        data = self.datamanager.config.data or getattr(self.datamanager.config.dataparser, "data", "")
        CONSOLE.log(f"[yellow]ff3r: warning: {data}: {problem}; using the predicted cameras instead")
        self.datamanager.train_dataset.metadata["poses_are_placeholders"] = True
        return None

    def _training_labels(self):
        """Label maps of the training images and the class names, when every frame names a ``semantic_path``."""
        from ff3r_ns.core.transforms_json import transforms_json_path
        from ff3r_ns.nerfstudio.scene import read_label_maps

        data = self.datamanager.config.data or getattr(self.datamanager.config.dataparser, "data", None)
        outputs = getattr(self.datamanager, "train_dataparser_outputs", None)
        if data is None or outputs is None or not transforms_json_path(data).exists():
            return None, []
        return read_label_maps(Path(data), list(outputs.image_filenames))

    def load_pipeline(self, loaded_state, step: int) -> None:
        super().load_pipeline(loaded_state, step)
        self._adopt_predicted_cameras()

    def _adopt_predicted_cameras(self) -> None:
        """For unposed data, replace the placeholder cameras by the predicted ones, so that the viewer shows
        them and evaluation renders from them (the eval split holds the same frames in images-data's
        default "all" mode; other splits keep their placeholders, with a warning)."""
        if not self.poses_are_placeholders or self.model.pred_camera_to_worlds.shape[0] == 0:
            return
        c2w, k = self.model.pred_camera_to_worlds.detach().cpu(), self.model.pred_intrinsics.detach().cpu()
        train_frames = self.datamanager.train_dataset.metadata.get("frame_indices")
        for dataset in (self.datamanager.train_dataset, self.datamanager.eval_dataset):
            if dataset is None or len(dataset) == 0:
                continue
            if len(dataset) != c2w.shape[0] or dataset.metadata.get("frame_indices") != train_frames:
                CONSOLE.log("[yellow]held-out frames of unposed data have no predicted camera; they keep placeholders")
                continue
            cams = dataset.cameras
            cams.camera_to_worlds[...] = c2w.to(cams.camera_to_worlds)
            cams.fx[...], cams.fy[...] = k[:, 0, 0, None].to(cams.fx), k[:, 1, 1, None].to(cams.fy)
            cams.cx[...], cams.cy[...] = k[:, 0, 2, None].to(cams.cx), k[:, 1, 2, None].to(cams.cy)
        if hasattr(self.datamanager, "train_cameras"):
            self.datamanager.train_cameras = self.datamanager.train_dataset.cameras.to(self.device)

    def get_average_image_metrics(self, data_loader, image_prefix: str, step=None, output_path=None, get_std: bool = False):
        if len(data_loader) == 0:
            raise SystemExit(
                "ff3r: error: the dataset has no evaluation images (nerfstudio holds out 10% of the frames, "
                "rounded down: use at least 10 frames, or set the dataparser's eval split), so there is nothing "
                "for ns-eval to measure"
            )
        return super().get_average_image_metrics(data_loader, image_prefix, step, output_path, get_std)
