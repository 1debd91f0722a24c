"""The nerfstudio model: FF3R's predicted Gaussians, refined as splatfacto refines its own.

One feedforward pass of the network over a scene's training images (:meth:`FF3RModel.reconstruct`, run by
:class:`~ff3r_ns.nerfstudio.pipeline.FF3RPipeline` before training) fills ``gauss_params`` with the predicted
Gaussians, placed in the dataset's frame view by view (:mod:`ff3r_ns.core.placement`) when the dataset has
poses. ``ns-train`` steps then refine them at the dataset's cameras (for unposed data: the predicted cameras,
adopted as the dataset's) exactly as splatfacto optimises: gsplat's ``DefaultStrategy`` densifies and prunes,
the SH degree grows every ``sh_degree_interval`` steps, nerfstudio's camera optimizer corrects poses, and the
semantic features follow the teacher the network was trained with. ``--max-num-iterations 0`` keeps the pure
feedforward result. Because the result lives in ``gauss_params`` like splatfacto's, ``ns-viewer``, ``ns-eval``
and ``ns-export gaussian-splat`` work from the checkpoint without re-running the network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Sequence, Tuple, Type, Union

import torch
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.cameras import Cameras as NSCameras
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.splatfacto import SplatfactoModel, SplatfactoModelConfig
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import ViewerText

from ff3r_ns.core.cameras import Cameras, opencv_w2c_to_opengl_c2w, opengl_c2w_to_opencv_w2c
from ff3r_ns.core.checkpoint import load_checkpoint
from ff3r_ns.core.gaussians import Gaussians, sh_to_rgb
from ff3r_ns.core.protocol import PROTOCOL_CLASSES
from ff3r_ns.core.reconstruct import NetworkSettings, Reconstruction, build_network, load_teacher, normalized, run_network
from ff3r_ns.core.palette import class_colors
from ff3r_ns.core.semantics import SemanticReadout
from ff3r_ns.core.sh import num_sh_bases
from ff3r_ns.nerfstudio.refinement import NonFiniteRefinementError, build_strategy, check_finite, scene_scale

GAUSSIAN_PARAM_NAMES = ("means", "scales", "quats", "features_dc", "features_rest", "opacities", "sem_features")
"""The optimised per-Gaussian parameters (``gauss_params`` also holds the network's ``confidences``, fixed)."""


@dataclass
class FF3RModelConfig(SplatfactoModelConfig):
    """FF3R: feedforward Gaussians, cameras, depth and semantic features, refined with splatfacto's optimiser.

    Every splatfacto setting (densification, pruning, SH schedule, camera optimizer, SSIM weight) applies to the
    refinement; those counted in steps are laid out for 30k steps and scaled to --max-num-iterations by the trainer.
    """

    _target: Type = field(default_factory=lambda: FF3RModel)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    """The feedforward network: architecture, weights, input size, placement and voxel merging."""
    num_downscales: int = 0
    """Splatfacto starts at 1/2^d resolution; the feedforward start is already good at full resolution."""
    warmup_length: int = 500
    """Steps before densification starts (at the 30k reference budget)."""
    unposed_camera_optimizer: Literal["off", "SO3xR3", "SE3"] = "SO3xR3"
    """Camera pose refinement for unposed data (images-data), whose cameras are the network's predictions.
    Posed data uses --pipeline.model.camera-optimizer.mode (off by default, as splatfacto)."""
    feature_loss_weight: float = 1.0
    """Weight of 1 - cos(decoded rendered feature, teacher feature) during refinement (0: features stay as
    predicted). Needs teacher features for the training images (labelled scenes with the offline teacher)."""
    feature_resolution: float = 0.5
    """Fraction of the image size at which the feature loss is computed (LSM, Uni3R: half resolution)."""
    feature_loss_every: int = 1
    """Render features and take the feature loss every this many refinement steps (the other steps render colour
    only). On an H200 the feature loss is a quarter of a step's time (128 views: 10.2 against 7.5 ms per step,
    benchmarks/results/step_profile.json)."""
    refine_feature_decoder: bool = True
    """Refine the network's feature decoder (one small affine map shared by every Gaussian) with the feature loss
    too: its low-rank output span then adapts to the scene's classes instead of the training set's. The viewer,
    ns-export and ff3r-query read with the refined decoder."""
    max_gaussians: Optional[int] = None
    """Gaussian budget of the refinement (None: splatfacto's unbounded growth). A refinement event grows only the
    highest-gradient candidates that fit and prunes the lowest opacities beyond it; the prediction may start above
    it (about one Gaussian per network input pixel) and is brought down from the first event, after warmup_length."""
    budget_prune_share: float = 0.5
    """Share of the excess over max_gaussians that one refinement event prunes (the lowest opacities; at least a
    twentieth of the budget): a prediction far above the budget comes down over a few events. 1.0: in one cut,
    which at 128 views (662k predicted, 200k budget) dropped the held-out PSNR from 26.9 to 22.1 dB between steps 125
    and 250 (H200 benchmark, commit 1ffc7de); with 0.5 it rose to 27.1 dB there and ended 0.1 dB higher."""
    nan_check_every: int = 100
    """Check the Gaussians for NaN/inf every this many refinement steps (stops the run naming the parameter)."""
    classes: Tuple[str, ...] = PROTOCOL_CLASSES
    """Class names in label-id order, for the segmentation output and text queries (id 0 = unlabeled)."""


class FF3RModel(SplatfactoModel):
    """Splatfacto with FF3R's predicted Gaussians as its start (see the module docstring)."""

    config: FF3RModelConfig

    # ------------------------------------------------------------------ setup
    def populate_modules(self) -> None:
        # SplatfactoModel.populate_modules, less three things: it seeds Gaussians from points (the network places
        # them here, in reconstruct()), moves its colours to CUDA, and builds an LPIPS metric that downloads AlexNet.
        from ff3r_ns.core import metrics

        if self.config.feature_loss_every < 1:
            raise ValueError(f"feature_loss_every must be >= 1, got {self.config.feature_loss_every}")
        self.gauss_params = torch.nn.ParameterDict(self._empty_params())
        # Predicted training cameras (OpenGL camera-to-world, intrinsics at the dataset's image size): what unposed
        # data adopts as its cameras.
        self.register_buffer("pred_camera_to_worlds", torch.zeros(0, 3, 4))
        self.register_buffer("pred_intrinsics", torch.zeros(0, 3, 3))
        # Teacher features of the training images for the feature loss ([S, h, w, D]); rebuilt, never saved.
        self.register_buffer("teacher_features", torch.zeros(0), persistent=False)
        heads = self.config.network.architecture.heads
        self.semantics = SemanticReadout(heads.feature_dim, heads.teacher_dim, self.config.classes)
        self.semantics.decoder.requires_grad_(self.config.refine_feature_decoder)
        self.query_text = ""
        self.viewer_query = ViewerText(
            "Semantic query", "", cb_hook=self._on_query, hint="a class name, e.g. sofa; adds a 'relevancy' output"
        )
        unposed = bool((self.kwargs.get("metadata") or {}).get("poses_are_placeholders", False))
        mode = self.config.unposed_camera_optimizer if unposed else self.config.camera_optimizer.mode
        self.camera_optimizer = dataclasses.replace(self.config.camera_optimizer, mode=mode).setup(
            num_cameras=self.num_train_data, device="cpu"
        )
        self.psnr = metrics.psnr
        self.ssim = metrics.ssim
        self.lpips = metrics.make_lpips()  # None (with a logged reason) unless its weights are on disk
        self.step = 0
        self.crop_box = None
        self.background_color = torch.tensor([0.1490, 0.1647, 0.2157])  # viser's background, as splatfacto
        if self.config.background_color != "random":
            self.background_color = torch.full((3,), 1.0 if self.config.background_color == "white" else 0.0)
        self.strategy = build_strategy(self.config, self.num_train_data)
        self.strategy_state = self.strategy.initialize_state(scene_scale=1.0)
        self._warned_absgrad = False

    def _empty_params(self, n: int = 0) -> Dict[str, Parameter]:
        k, f = num_sh_bases(self.config.sh_degree), self.config.network.feature_dim
        shapes = {"means": (3,), "scales": (3,), "quats": (4,), "features_dc": (3,), "features_rest": (k - 1, 3),
                  "opacities": (1,), "sem_features": (f,)}
        params = {name: Parameter(torch.zeros(n, *shape)) for name, shape in shapes.items()}
        # The network's per-Gaussian confidence logits ride along (the strategy keeps them aligned when it
        # duplicates, splits and prunes) but are never optimised.
        params["confidences"] = Parameter(torch.zeros(n), requires_grad=False)
        return params

    @property
    def reconstructed(self) -> bool:
        return self.gauss_params["means"].shape[0] > 0

    @property
    def confidences(self) -> Tensor:
        return self.gauss_params["confidences"]

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
    def reconstruct(
        self, images: Tensor, dataset_cameras: Optional[NSCameras], labels: Optional[Tensor] = None,
        label_classes: Sequence[str] = (),
    ) -> Reconstruction:
        """Run the network once over the training images; store its Gaussians, cameras and refinement targets.

        Args:
            images: ``[S, H, W, 3]`` float in [0, 1], the training images in dataset order.
            dataset_cameras: the dataset's cameras for those images (the predicted Gaussians are placed view by
                view at them), or None for an unposed dataset (the predicted cameras are kept).
            labels: ``[S, H, W]`` class ids of the same images (0 = ignore), for the feature loss against the
                offline teacher, or None.
            label_classes: the dataset's class names in id order (with ``labels``).
        """
        ref = ns_to_core_cameras(dataset_cameras) if dataset_cameras is not None else None
        settings = self.config.network
        # Read the checkpoint file once: it holds both the weights and the teacher the features were trained against.
        ckpt = load_checkpoint(settings.weights) if settings.weights is not None else None
        network = build_network(settings, self.device, checkpoint=ckpt)
        rec = run_network(settings, images.to(self.device), ref, network=network)
        if ref is None:
            rec = normalized(rec)  # the network's frame has an arbitrary scale; give it nerfstudio-data's
        teacher = load_teacher(settings, list(self.config.classes), checkpoint=ckpt)
        self.semantics.set_from(network.feature_decoder, teacher)
        self.set_gaussians(rec.gaussians)
        self._set_refinement_targets(network, teacher, images, labels, label_classes)
        self.pred_camera_to_worlds = opencv_w2c_to_opengl_c2w(rec.cameras.world_to_cam)[:, :3, :].to(self.device)
        self.pred_intrinsics = rec.cameras.intrinsics.to(self.device)
        self.strategy_state["scene_scale"] = scene_scale(rec.cameras.centers.to(self.device), rec.gaussians.means)
        CONSOLE.log(rec.summary())
        return rec

    def set_gaussians(self, g: Gaussians) -> None:
        """Fill ``gauss_params`` from activated Gaussians (SH padded with zeros up to ``config.sh_degree``)."""
        eps = 1e-6
        k = num_sh_bases(self.config.sh_degree)
        if g.sh.shape[1] > k:
            raise ValueError(f"the network predicts SH degree {g.sh_degree}, above --pipeline.model.sh-degree {self.config.sh_degree}")
        rest = torch.cat([g.sh[:, 1:, :], g.sh.new_zeros(g.num, k - g.sh.shape[1], 3)], dim=1)
        conf = g.confidence if g.confidence is not None else torch.zeros(g.num, device=g.device)
        values = {
            "means": g.means, "scales": torch.log(g.scales.clamp_min(eps)),
            "quats": torch.nn.functional.normalize(g.quats, dim=-1), "features_dc": g.sh[:, 0, :], "features_rest": rest,
            "opacities": torch.logit(g.opacities.clamp(eps, 1 - eps))[:, None], "sem_features": g.features,
        }
        params = {name: Parameter(v.detach().contiguous().to(self.device)) for name, v in values.items()}
        params["confidences"] = Parameter(conf.detach().contiguous().to(self.device), requires_grad=False)
        self.gauss_params = torch.nn.ParameterDict(params)

    def _set_refinement_targets(
        self, network: torch.nn.Module, teacher, images: Tensor, labels: Optional[Tensor], label_classes: Sequence[str]
    ) -> None:
        """The feature loss's targets: the offline teacher's features of the labels, else a pretrained semantic
        encoder's dense features, else none (the features stay as predicted; the log says why)."""
        from ff3r_ns.core.losses import feature_size
        from ff3r_ns.core.semantics import encoder_targets, teacher_targets

        self.teacher_features = torch.zeros(0, device=self.device)
        size = feature_size(images.shape[1], images.shape[2], self.config.feature_resolution)
        encoder = getattr(network, "semantic_encoder", None)
        pretrained = encoder is not None and getattr(self.config.network.architecture.semantic, "weights", "random") != "random"
        if self.config.feature_loss_weight <= 0:
            why = "--pipeline.model.feature-loss-weight is 0"
        elif labels is not None and label_classes:
            # On the run's device: on its CPU the per-view lookup, blur and resize were most of ff3r's setup on a GPU
            # machine (the noise still comes from the teacher's CPU generators: the same values).
            labels = labels.to(self.device)
            self.teacher_features = teacher_targets(teacher, labels, label_classes, size).half()
            why = ""
        elif pretrained and encoder.embed_dim == teacher.dim:
            self.teacher_features = encoder_targets(encoder, images.to(self.device), size).to(torch.float16)
            why = ""
        else:
            why = "no labels for the offline teacher (semantic_path) and no pretrained semantic encoder"
        if why:
            CONSOLE.log(f"ff3r: semantic features are not refined ({why}); they stay as the network predicted them")
        elif self.config.feature_loss_weight > 0:
            t = self.teacher_features
            CONSOLE.log(f"ff3r: semantic features refined against the teacher ({t.shape[-1]} channels at {t.shape[2]}x{t.shape[1]})")

    def load_state_dict(self, state_dict, **kwargs):  # type: ignore[override]
        # Resize the empty placeholders to the checkpoint's Gaussian count before loading, as SplatfactoModel does;
        # a checkpoint is a finished run, so the SH degree is the full one.
        self.step = 30000
        n = state_dict["gauss_params.means"].shape[0] if "gauss_params.means" in state_dict else 0
        params = self._empty_params(n)
        for name, p in params.items():
            key = f"gauss_params.{name}"
            if key in state_dict:
                p = Parameter(torch.zeros_like(state_dict[key]), requires_grad=p.requires_grad)
            params[name] = p.to(self.device) if isinstance(p, Parameter) else p
        self.gauss_params = torch.nn.ParameterDict(params)
        state_dict = {**state_dict}
        state_dict.setdefault("gauss_params.confidences", self.gauss_params["confidences"])
        for name in ("pred_camera_to_worlds", "pred_intrinsics"):
            if name in state_dict:
                setattr(self, name, torch.zeros_like(state_dict[name], device=self.device))
        return torch.nn.Module.load_state_dict(self, state_dict, **kwargs)

    # ------------------------------------------------------------------ optimisation
    def get_gaussian_param_groups(self) -> Dict[str, List[Parameter]]:
        # "confidences" too: gsplat's strategy needs an optimizer for every entry of gauss_params (its learning
        # rate is 0 and it has no gradient, so it never moves).
        return {name: [self.gauss_params[name]] for name in (*GAUSSIAN_PARAM_NAMES, "confidences")}

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        # Always a group (the optimizer config names it); frozen (populate_modules), it never has a gradient.
        return {**super().get_param_groups(), "feature_decoder": list(self.semantics.decoder.parameters())}

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        # Splatfacto's two callbacks (step bookkeeping, densification after backward) and a NaN guard.
        return super().get_training_callbacks(training_callback_attributes) + [
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self._check_finite,
                             update_every_num_iters=max(1, self.config.nan_check_every))
        ]

    def _check_finite(self, step: int) -> None:
        try:
            check_finite({n: self.gauss_params[n] for n in GAUSSIAN_PARAM_NAMES}, step)
        except NonFiniteRefinementError as err:
            raise SystemExit(f"ff3r: error: {err}") from None

    # ------------------------------------------------------------------ rendering
    def _training_features(self) -> bool:
        return self.training and self.teacher_features.numel() > 0

    def get_outputs(self, camera: NSCameras) -> Dict[str, Union[Tensor, List]]:
        """Render rgb, depth, accumulation and the low-dimensional semantic ``feature`` map.

        Args:
            camera: one nerfstudio camera (outputs ``[H, W, ...]``, nerfstudio's layout), or in training ``B``
                cameras of one image size (``--pipeline.datamanager.cameras-per-step``; outputs ``[B, H, W, ...]``).
        """
        from ff3r_ns.core.render import render

        if not isinstance(camera, NSCameras) or len(camera.shape) != 1 or (camera.shape[0] != 1 and not self.training):
            raise ValueError("FF3RModel.get_outputs takes one nerfstudio camera (several only in training)")
        batched = camera.shape[0] > 1
        c2w = self._optimized_camera_to_worlds(camera) if self.training else camera.camera_to_worlds.to(self.device)
        d = self._get_downscale_factor()
        camera.rescale_output_resolution(1 / d)
        k, width, height = _to(camera.get_intrinsics_matrices(), self.device), int(camera.width[0]), int(camera.height[0])
        camera.rescale_output_resolution(d)
        cams = Cameras(opengl_c2w_to_opencv_w2c(c2w), k, width, height)
        background = self._get_background_color()
        gaussians = self.gaussians()
        # Outside training the network's confidence is rendered too, as one more feature channel.
        with_confidence = not self.training
        if with_confidence:
            conf = torch.sigmoid(self.confidences)[:, None]
            gaussians = dataclasses.replace(gaussians, features=torch.cat([gaussians.features, conf], dim=-1))
        if self.crop_box is not None and not self.training:
            gaussians = gaussians[self.crop_box.within(gaussians.means).squeeze()]
        if gaussians.num == 0:
            return self.get_empty_outputs(width, height, background)
        degree = min(self.step // self.config.sh_degree_interval, self.config.sh_degree)
        with_features = not self.training or (self._training_features() and self.step % self.config.feature_loss_every == 0)
        out = render(gaussians, cams, background=background, sh_degree=degree, render_features=with_features,
                     absgrad=self.training and self.strategy.absgrad)
        if self.training:
            self._densification_info(out, width, height)
        pick = (lambda x: x) if batched else (lambda x: x[0])
        alpha = pick(out.alpha)
        outputs: Dict[str, Union[Tensor, List]] = {
            "rgb": pick(out.rgb).clamp(0.0, 1.0),
            "depth": pick(out.depth),
            "accumulation": alpha,
            "background": background if self.training else background.expand(height, width, 3),
        }
        if out.features is not None:
            features = pick(out.features)
            if with_confidence:
                outputs["confidence"] = features[..., -1:] / alpha.clamp_min(1e-6)
                features = features[..., :-1]
            outputs["feature"] = features
            if not self.training:
                outputs.update(self._semantic_outputs(features, alpha))
        return outputs

    def _optimized_camera_to_worlds(self, camera: NSCameras) -> Tensor:
        """``[B, 3, 4]`` camera-to-world with the camera optimizer's corrections: nerfstudio's ``apply_to_camera``,
        which takes one camera index, here for the ``B`` of a batched step (``metadata["cam_idx"]`` a list)."""
        idx = (camera.metadata or {}).get("cam_idx")
        if not isinstance(idx, list):
            return self.camera_optimizer.apply_to_camera(camera).to(self.device)
        c2w = _to(camera.camera_to_worlds, self.device)
        if self.camera_optimizer.config.mode == "off":
            return c2w
        adj = self.camera_optimizer(_to(torch.tensor(idx, dtype=torch.long), self.device)).to(c2w)
        # Rotation applied to the world-frame directions, translation added to the origin (as apply_to_camera).
        return torch.cat([torch.bmm(adj[:, :3, :3], c2w[:, :3, :3]), c2w[:, :3, 3:] + adj[:, :3, 3:]], dim=-1)

    def _densification_info(self, out, width: int, height: int) -> None:
        """Hand gsplat's strategy what its ``rasterization`` info would hold, then let it keep the 2D gradients."""
        if self.strategy.absgrad and not out.absgrad and not self._warned_absgrad:
            # Only gsplat's kernels accumulate |dL/dmeans2d| per pixel; elsewhere densify on the plain gradient,
            # whose threshold is a quarter of absgrad's (3DGS's 0.0002 against splatfacto's 0.0008).
            CONSOLE.log("ff3r: this renderer has no absgrad; densification uses the plain 2D gradient")
            self.strategy.absgrad = False
            self.strategy.grow_grad2d = self.config.densify_grad_thresh / 4
            self._warned_absgrad = True
        self.info = {"means2d": out.means2d, "radii": out.radii, "width": width, "height": height,
                     "n_cameras": out.means2d.shape[0],
                     "gaussian_ids": None}
        self.strategy.step_pre_backward(self.gauss_params, self.optimizers, self.strategy_state, self.step, self.info)

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
    def composite_with_background(self, image: Tensor, background: Tensor) -> Tensor:
        """Splatfacto's, for ``[H, W, C]`` and batched ``[B, H, W, C]`` images (it reads the channel count from
        dimension 2, the width of a batch)."""
        if image.shape[-1] != 4:
            return image
        alpha = image[..., 3:]
        return alpha * image[..., :3] + (1 - alpha) * background

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        gt = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        metrics = {"psnr": self.psnr(outputs["rgb"].detach(), gt), "gaussian_count": torch.tensor(float(self.num_points))}
        self.camera_optimizer.get_metrics_dict(metrics)
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        from ff3r_ns.core import losses

        gt = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        pred = outputs["rgb"]
        if "mask" in batch:
            mask = self._downscale_if_required(batch["mask"]).to(self.device)
            gt, pred = gt * mask, pred * mask
        if pred.dim() == 3:  # one camera: nerfstudio's [H, W, 3]
            gt, pred = gt[None], pred[None]
        loss = {"main_loss": losses.photometric_loss(pred, gt, ssim_weight=self.config.ssim_lambda)}
        if self.config.use_scale_regularization and self.step % 10 == 0:
            loss["scale_reg"] = 0.1 * losses.scale_ratio_loss(torch.exp(self.gauss_params["scales"]), self.config.max_gauss_ratio)
        if self.training and self._training_features() and "feature" in outputs:
            loss["feature"] = self.config.feature_loss_weight * self._feature_loss(outputs, batch)
        if self.training:
            self.camera_optimizer.get_loss_dict(loss)
        return loss

    def _feature_loss(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]) -> Tensor:
        """``1 - cos`` between the decoded rendered features and the teacher's, on covered pixels."""
        from ff3r_ns.core.losses import cosine_distance, resize_maps

        idx = batch.get("image_idx", 0)  # an int (one camera) or [B] indices
        rows = [idx] if isinstance(idx, int) else torch.as_tensor(idx).flatten().tolist()
        # Rows picked by host integers: indexing with a host tensor would copy it to the GPU and wait.
        teacher = torch.stack([self.teacher_features[i] for i in rows]).float()  # [B, h, w, D]
        size = tuple(teacher.shape[1:3])
        alpha, feats = outputs["accumulation"], outputs["feature"]
        if alpha.dim() == 3:  # one camera
            alpha, feats = alpha[None], feats[None]
        alpha = resize_maps(alpha, size)
        feats = resize_maps(feats, size) / alpha.clamp_min(1e-6)
        return cosine_distance(self.semantics.decode(feats), teacher, mask=alpha[..., 0] > 0.5)

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


def _to(x: Tensor, device: torch.device) -> Tensor:
    """``x`` on ``device``, copied from the host without waiting for the GPU's queue to drain (a blocking copy does).
    Safe from pageable memory: CUDA stages the source before the call returns."""
    return x.to(device, non_blocking=True)


def ns_to_core_cameras(camera: NSCameras) -> Cameras:
    """nerfstudio cameras (OpenGL camera-to-world, one image size) -> :class:`~ff3r_ns.core.cameras.Cameras`."""
    camera = camera.flatten() if len(camera.shape) > 1 else camera
    widths, heights = camera.width.flatten(), camera.height.flatten()
    if (widths != widths[0]).any() or (heights != heights[0]).any():
        raise ValueError("all cameras must share one image size")
    w2c = opengl_c2w_to_opencv_w2c(camera.camera_to_worlds)
    return Cameras(w2c, camera.get_intrinsics_matrices().to(w2c), int(widths[0]), int(heights[0]))
