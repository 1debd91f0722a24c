"""The nerfstudio model: FF3R's predicted Gaussians inside a ``SplatfactoModel``.

One feedforward pass of the network over a scene's training images (:meth:`FF3RModel.reconstruct`, run
by :class:`~ff3r_ns.nerfstudio.pipeline.FF3RPipeline` before training) fills ``gauss_params`` with the
predicted Gaussians and stores the predicted training cameras. ``ns-train`` steps then *refine* those
Gaussians with the same losses (``--max-num-iterations 0`` keeps the pure feedforward result), always
rendering at the network's own predicted cameras. Because the result lives in ``gauss_params`` like
splatfacto's, ``ns-viewer``, ``ns-eval`` and ``ns-export gaussian-splat`` work from the checkpoint without
re-running the network.

The predicted reconstruction is expressed in the first view's frame at an arbitrary scale. When the
dataset has camera poses, it is moved into the dataset's frame by the similarity that best carries the
predicted training cameras onto the dataset's (:func:`~ff3r_ns.core.cameras.align_cameras`), so that
held-out views and the viewer's cameras look at the right place. The predicted cameras themselves are
kept for training.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type, Union

import torch
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.cameras import Cameras as NSCameras
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.models.base_model import ModelConfig
from nerfstudio.models.splatfacto import SplatfactoModel
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import ViewerText

from ff3r_ns.core.cameras import Cameras, opencv_w2c_to_opengl_c2w, opengl_c2w_to_opencv_w2c
from ff3r_ns.core.checkpoint import load_checkpoint
from ff3r_ns.core.gaussians import Gaussians, sh_to_rgb
from ff3r_ns.core.protocol import PROTOCOL_CLASSES
from ff3r_ns.core.reconstruct import NetworkSettings, Reconstruction, build_network, load_teacher, run_network
from ff3r_ns.core.semantics import SemanticReadout, class_colors

GAUSSIAN_PARAM_NAMES = ("means", "scales", "quats", "features_dc", "features_rest", "opacities", "sem_features")


@dataclass
class FF3RModelConfig(ModelConfig):
    """FF3R: feedforward Gaussians, cameras, depth and semantic features from the training images."""

    _target: Type = field(default_factory=lambda: FF3RModel)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    """The feedforward network: architecture, weights and input size."""
    background_color: Literal["random", "black", "white"] = "black"
    """Background composited under the rendering (random during training only)."""
    ssim_lambda: float = 0.2
    """Weight of the SSIM term in the photometric loss (the rest is L1)."""
    output_depth_during_training: bool = True
    """Render expected depth during training too (always on for evaluation)."""
    classes: Tuple[str, ...] = PROTOCOL_CLASSES
    """Class names in label-id order, for the segmentation output and text queries (id 0 = unlabeled)."""

    @property
    def sh_degree(self) -> int:
        """Read by ``ns-export gaussian-splat`` (as for splatfacto) to decide whether to write ``f_rest_*``."""
        return self.network.sh_degree


class FF3RModel(SplatfactoModel):
    """Splatfacto-compatible container for FF3R's predicted Gaussians (see the module docstring)."""

    config: FF3RModelConfig

    # ------------------------------------------------------------------ setup
    def populate_modules(self) -> None:
        # Not SplatfactoModel.populate_modules: that one seeds Gaussians from points, moves tensors to CUDA and
        # builds an LPIPS metric that downloads AlexNet.
        from ff3r_ns.core import metrics

        k = (self.config.network.sh_degree + 1) ** 2
        f = self.config.network.feature_dim
        self.gauss_params = torch.nn.ParameterDict(
            {
                "means": Parameter(torch.zeros(0, 3)),
                "scales": Parameter(torch.zeros(0, 3)),
                "quats": Parameter(torch.zeros(0, 4)),
                "features_dc": Parameter(torch.zeros(0, 3)),
                "features_rest": Parameter(torch.zeros(0, k - 1, 3)),
                "opacities": Parameter(torch.zeros(0, 1)),
                "sem_features": Parameter(torch.zeros(0, f)),
            }
        )
        # Predicted training cameras (OpenGL camera-to-world, and intrinsics at the dataset's image size).
        self.register_buffer("pred_camera_to_worlds", torch.zeros(0, 3, 4))
        self.register_buffer("pred_intrinsics", torch.zeros(0, 3, 3))
        # Per-Gaussian confidence logits from the network (shown in the viewer, not optimised).
        self.register_buffer("confidences", torch.zeros(0))
        heads = self.config.network.architecture.heads
        self.semantics = SemanticReadout(heads.feature_dim, heads.teacher_dim, self.config.classes)
        self.query_text = ""
        self.viewer_query = ViewerText(
            "Semantic query", "", cb_hook=self._on_query, hint="a class name, e.g. sofa; adds a 'relevancy' output"
        )
        self.psnr = metrics.psnr
        self.ssim = metrics.ssim
        self.lpips = metrics.make_lpips()  # None (with a logged reason) unless its weights are on disk
        self.step = 0
        self.crop_box: Optional[OrientedBox] = None
        self.background_color = torch.zeros(3) if self.config.background_color != "white" else torch.ones(3)

    @property
    def reconstructed(self) -> bool:
        return self.gauss_params["means"].shape[0] > 0

    # ------------------------------------------------------------------ Splatfacto's accessors (SH convention)
    @property
    def colors(self) -> Tensor:
        return sh_to_rgb(self.features_dc).clamp(0.0, 1.0)

    @property
    def shs_0(self) -> Tensor:
        return self.features_dc

    def gaussians(self) -> Gaussians:
        """The current Gaussians as the core type (activated attributes)."""
        p = self.gauss_params
        return Gaussians(
            means=p["means"],
            quats=p["quats"],
            scales=torch.exp(p["scales"]),
            opacities=torch.sigmoid(p["opacities"]).squeeze(-1),
            sh=torch.cat([p["features_dc"][:, None, :], p["features_rest"]], dim=1),
            features=p["sem_features"],
        )

    # ------------------------------------------------------------------ feedforward
    @torch.no_grad()
    def reconstruct(self, images: Tensor, dataset_cameras: Optional[NSCameras]) -> Reconstruction:
        """Run the network once over the training images and store its Gaussians and cameras.

        Args:
            images: ``[S, H, W, 3]`` float in [0, 1], the training images in dataset order.
            dataset_cameras: the dataset's cameras for those images (their poses are only used to express
                the result in the dataset's frame), or None for an unposed dataset.
        """
        ref = ns_to_core_cameras(dataset_cameras) if dataset_cameras is not None else None
        settings = self.config.network
        # Read the checkpoint file once: it holds both the weights and the teacher the features were trained against.
        ckpt = load_checkpoint(settings.weights) if settings.weights is not None else None
        network = build_network(settings, self.device, checkpoint=ckpt)
        rec = run_network(settings, images.to(self.device), ref, network=network)
        self.semantics.set_from(network.feature_decoder, load_teacher(settings, list(self.config.classes), checkpoint=ckpt))
        g = rec.gaussians
        eps = 1e-6
        self.gauss_params = torch.nn.ParameterDict(
            {
                "means": Parameter(g.means.contiguous()),
                "scales": Parameter(torch.log(g.scales.clamp_min(eps))),
                "quats": Parameter(torch.nn.functional.normalize(g.quats, dim=-1)),
                "features_dc": Parameter(g.sh[:, 0, :].contiguous()),
                "features_rest": Parameter(g.sh[:, 1:, :].contiguous()),
                "opacities": Parameter(torch.logit(g.opacities.clamp(eps, 1 - eps))[:, None]),
                "sem_features": Parameter(g.features.contiguous()),
            }
        ).to(self.device)
        self.pred_camera_to_worlds = opencv_w2c_to_opengl_c2w(rec.cameras.world_to_cam)[:, :3, :].to(self.device)
        self.pred_intrinsics = rec.cameras.intrinsics.to(self.device)
        conf = g.confidence if g.confidence is not None else torch.zeros(g.num, device=g.device)
        self.confidences = conf.detach().to(self.device)
        CONSOLE.log(rec.summary())
        return rec

    def load_state_dict(self, state_dict, **kwargs):  # type: ignore[override]
        # Resize the empty placeholders to the checkpoint's Gaussian count before loading.
        for name in GAUSSIAN_PARAM_NAMES:
            key = f"gauss_params.{name}"
            if key in state_dict:
                self.gauss_params[name] = Parameter(torch.zeros_like(state_dict[key], device=self.device))
        for name in ("pred_camera_to_worlds", "pred_intrinsics", "confidences"):
            if name in state_dict:
                setattr(self, name, torch.zeros_like(state_dict[name], device=self.device))
        return torch.nn.Module.load_state_dict(self, state_dict, **kwargs)

    # ------------------------------------------------------------------ optimisation
    def get_gaussian_param_groups(self) -> Dict[str, List[Parameter]]:
        return {name: [self.gauss_params[name]] for name in GAUSSIAN_PARAM_NAMES}

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return self.get_gaussian_param_groups()

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        # No densification: the network decides where Gaussians are. Keep Splatfacto's step bookkeeping.
        from nerfstudio.engine.callbacks import TrainingCallbackLocation

        return [
            TrainingCallback(
                [TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                self.step_cb,
                args=[training_callback_attributes.optimizers],
            )
        ]

    def _get_downscale_factor(self) -> int:
        return 1

    # ------------------------------------------------------------------ rendering
    def _render_cameras(self, camera: NSCameras) -> Cameras:
        """The cameras to render ``camera`` with: during training, the network's predicted camera for that image."""
        cams = ns_to_core_cameras(camera)
        idx = (camera.metadata or {}).get("cam_idx")
        if self.training and idx is not None and idx < self.pred_camera_to_worlds.shape[0]:
            w2c = opengl_c2w_to_opencv_w2c(self.pred_camera_to_worlds[idx : idx + 1])
            k = self.pred_intrinsics[idx : idx + 1]
            cams = Cameras(w2c, k, cams.width, cams.height)
        return cams

    def get_outputs(self, camera: NSCameras) -> Dict[str, Union[Tensor, List]]:
        """Render rgb, depth, accumulation and the low-dimensional semantic ``feature`` map for one camera."""
        from ff3r_ns.core.render import render

        if not isinstance(camera, NSCameras) or camera.shape[0] != 1:
            raise ValueError("FF3RModel.get_outputs takes one nerfstudio camera")
        cams = self._render_cameras(camera)
        background = self._get_background_color()
        gaussians = self.gaussians()
        # Outside training the network's confidence is rendered too, as one more feature channel.
        with_confidence = not self.training and self.confidences.shape[0] == gaussians.num
        if with_confidence:
            conf = torch.sigmoid(self.confidences)[:, None]
            gaussians = dataclasses.replace(gaussians, features=torch.cat([gaussians.features, conf], dim=-1))
        if self.crop_box is not None and not self.training:
            gaussians = gaussians[self.crop_box.within(gaussians.means).squeeze()]
        if gaussians.num == 0:
            return self.get_empty_outputs(cams.width, cams.height, background)
        out = render(gaussians, cams.to(self.device), background=background)
        alpha = out.alpha[0]
        outputs: Dict[str, Union[Tensor, List]] = {
            "rgb": out.rgb[0].clamp(0.0, 1.0),
            "depth": out.depth[0],
            "accumulation": alpha,
            "background": background if self.training else background.expand(cams.height, cams.width, 3),
        }
        if out.features is not None:
            features = out.features[0]
            if with_confidence:
                outputs["confidence"] = features[..., -1:] / alpha.clamp_min(1e-6)
                features = features[..., :-1]
            outputs["feature"] = features
            if not self.training:
                outputs.update(self._semantic_outputs(features, alpha))
        return outputs

    def _on_query(self, element: ViewerText) -> None:
        self.query_text = element.value.strip()

    @torch.no_grad()
    def _semantic_outputs(self, features: Tensor, alpha: Tensor) -> Dict[str, Tensor]:
        """Viewer/eval extras: class segmentation (colours) and, when a query is set, its relevancy map."""
        # Rendered features are alpha-weighted sums; normalise so that coverage does not change the class.
        feats = features / alpha.clamp_min(1e-6)
        labels = self.semantics.segment(feats)
        seg = class_colors(len(self.config.classes)).to(feats)[labels] * (alpha > 0.5)
        extra = {"segmentation": seg}
        if self.query_text:
            try:
                extra["relevancy"] = self.semantics.relevancy(feats, self.query_text)[..., None] * (alpha > 0.5)
            except KeyError as err:
                CONSOLE.log(f"[yellow]query {self.query_text!r}: {err}")
                self.query_text = ""
        return extra

    # ------------------------------------------------------------------ losses and metrics
    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        gt = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        return {"psnr": self.psnr(outputs["rgb"].detach(), gt), "gaussian_count": torch.tensor(float(self.num_points))}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        from ff3r_ns.core.losses import photometric_loss

        gt = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        pred = outputs["rgb"]
        if "mask" in batch:
            mask = batch["mask"].to(self.device)
            gt, pred = gt * mask, pred * mask
        return {"photometric": photometric_loss(pred, gt, ssim_weight=self.config.ssim_lambda)}

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        gt = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        pred = outputs["rgb"]
        metrics = {"psnr": float(self.psnr(pred, gt)), "ssim": float(self.ssim(pred, gt))}
        if self.lpips is not None:
            metrics["lpips"] = float(self.lpips(pred, gt))
        metrics["gaussian_count"] = float(self.num_points)
        return metrics, {"img": torch.cat([gt, pred], dim=1)}


def ns_to_core_cameras(camera: NSCameras) -> Cameras:
    """nerfstudio cameras (OpenGL camera-to-world, one image size) -> :class:`~ff3r_ns.core.cameras.Cameras`."""
    camera = camera.flatten() if len(camera.shape) > 1 else camera
    widths, heights = camera.width.flatten(), camera.height.flatten()
    if (widths != widths[0]).any() or (heights != heights[0]).any():
        raise ValueError("all cameras must share one image size")
    w2c = opengl_c2w_to_opencv_w2c(camera.camera_to_worlds)
    return Cameras(w2c, camera.get_intrinsics_matrices().to(w2c), int(widths[0]), int(heights[0]))
