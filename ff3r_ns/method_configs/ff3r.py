"""``ns-train ff3r``: the best network this project ships, then splatfacto-grade refinement.

Pure wiring. The network is the shipped one (``ff3r_ns/weights/ff3r_tiny.pt``, trained on generated rooms; see
the README); ``--pipeline.model.network.weights`` overrides it. Refinement runs splatfacto's optimiser for
:data:`GPU_REFINE_STEPS` steps of :data:`GPU_CAMERAS_PER_STEP` images on a GPU, :data:`CPU_REFINE_STEPS` on a CPU;
``--max-num-iterations 0`` keeps the feedforward result.
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.plugins.types import MethodSpecification

from ff3r_ns.core.checkpoint import SHIPPED_TINY_WEIGHTS
from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.reconstruct import NetworkSettings
from ff3r_ns.nerfstudio.datamanager import FF3RDataManagerConfig
from ff3r_ns.nerfstudio.model import FF3RModelConfig
from ff3r_ns.nerfstudio.pipeline import FF3RPipelineConfig
from ff3r_ns.nerfstudio.refinement import FusedAdamOptimizerConfig
from ff3r_ns.nerfstudio.schedule import SPLATFACTO_STEPS
from ff3r_ns.nerfstudio.trainer import FF3RTrainerConfig

GPU_REFINE_STEPS = 7_500
"""Refinement steps on a GPU: at :data:`GPU_CAMERAS_PER_STEP` images per step, as many training images as
splatfacto's 30k steps of one (its schedules are laid out for the budget by the trainer). Measured on the 64-view
room (H200, ``python -m benchmarks.vs_splatfacto --views 64 --ff3r-steps 7500``, commit 42c3f31): 33.32 dB held-out PSNR
after 118 s with 199k Gaussians, against splatfacto's 32.64 dB after 30k steps (325 s, 211k Gaussians); the same
room's 30k-step run at 4 images per step ended lower (32.83 dB after 457 s, ``scripts/gpu/tune_session.py``)."""
CPU_REFINE_STEPS = 1500
"""Refinement steps when no GPU is found: the first steps of the 30k schedule, at the trainer's short-run learning
rates, without densification. Measured on the demo room (``ff3r-demo``, 2 CPU cores, ns-eval PSNR at the held-out
views, feedforward 20.46 dB; the feature loss every second step): 1000 steps 26.35 dB in 84 s of ns-train, 1500 steps
26.64 dB in 119 s, 2000 steps 26.55 dB in 171 s; at 1500 steps a cooldown of the rates over the last 30 % / 50 % gave
26.40 / 26.23 dB, opacities x8 26.48 dB, every rate x2 26.35 dB (session 12, commit after fc6f2fb)."""

GPU_CAMERAS_PER_STEP = 4
"""Training images per GPU refinement step (a step is launch-bound: four images cost little more than one)."""
GPU_MAX_GAUSSIANS = 200_000
"""The GPU refinement's Gaussian budget. Measured on the 64-view room (H200, 30k schedule,
``scripts/gpu/tune_session.py``): with it, 4 images per step reach 32.44 dB held-out PSNR at 21 s and 33.23 dB at
10k steps; without it the set grows to 0.7-2M Gaussians and PSNR falls back to 32.2 dB by 3000 steps (splatfacto:
32.91 dB with 211k after 30k steps). Large, detailed scenes want more (``--pipeline.model.max-gaussians``)."""

FEATURE_LOSS_EVERY = 2
"""The feature loss on every second refinement step (:attr:`FF3RModelConfig.feature_loss_every`). H200, 128-view
room, 7500 steps, afb590f: held-out PSNR 34.18 dB at step 2200 and 34.63 dB final against 34.15 and 34.62 dB with the
loss on every step (benchmarks/results/vs_splatfacto.json, refinement_curves.json), and a quarter of a step's time is
the feature loss (benchmarks/results/step_profile.json). CPU, demo room, 1500 steps: 26.64 dB against 26.55 dB every
step and 26.49 dB every fourth."""

SHIPPED_NETWORK = NetworkSettings(
    architecture=FF3RConfig.tiny_semantic(), image_size=84, weights=SHIPPED_TINY_WEIGHTS, voxel_size=0.011  # ~0.9 / 84 px
)
"""The shipped network: input 84 px on the longest side (what it was trained at), merging voxel ~0.9 px."""


def _adam(lr: float, final: float | None = None, warmup: int = 0) -> dict:
    scheduler = None
    if final is not None:
        scheduler = ExponentialDecaySchedulerConfig(
            lr_final=final, max_steps=SPLATFACTO_STEPS, warmup_steps=warmup, lr_pre_warmup=0 if warmup else 1e-8
        )
    return {"optimizer": FusedAdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": scheduler}


def refinement_optimizers() -> dict:
    """splatfacto's per-parameter Adam settings (learning rates and decays written for 30k steps, scaled to the
    run's budget by the trainer; short runs multiply some rates, see ``FF3RTrainerConfig.short_run_lr_scale``),
    plus the semantic features at splatfacto's colour rate and the feature decoder."""
    return {
        "means": _adam(1.6e-4, final=1.6e-6),
        "features_dc": _adam(0.0025),
        "features_rest": _adam(0.0025 / 20),
        "opacities": _adam(0.05),
        "scales": _adam(0.005),
        "quats": _adam(0.001),
        "sem_features": _adam(0.0025),
        "feature_decoder": _adam(3e-3),  # the 1x1 feature decoder (FF3RModelConfig.refine_feature_decoder)
        "confidences": _adam(0.0),  # the network's confidences ride along, never optimised
        "camera_opt": _adam(1e-4, final=5e-7, warmup=1000),
    }


def ff3r_trainer_config(method_name: str, network: NetworkSettings, refine_steps: int,
                        cpu_refine_steps: int | None = CPU_REFINE_STEPS, min_schedule_steps: int = 3000,
                        gpu_refinement: bool = True) -> FF3RTrainerConfig:
    """The trainer config shared by every ff3r variant (``gpu_refinement``: :data:`GPU_CAMERAS_PER_STEP` images per
    step, the :data:`GPU_MAX_GAUSSIANS` budget; a run that falls back to the CPU takes one image per step); every
    variant takes the feature loss every :data:`FEATURE_LOSS_EVERY` steps."""
    return FF3RTrainerConfig(
        min_schedule_steps=min_schedule_steps,
        method_name=method_name,
        steps_per_eval_image=100,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=100_000,
        max_num_iterations=refine_steps,
        default_max_num_iterations=refine_steps,
        cpu_max_num_iterations=cpu_refine_steps,
        mixed_precision=False,
        pipeline=FF3RPipelineConfig(
            datamanager=FF3RDataManagerConfig(cameras_per_step=GPU_CAMERAS_PER_STEP if gpu_refinement else 1),
            model=FF3RModelConfig(network=network, max_gaussians=GPU_MAX_GAUSSIANS if gpu_refinement else None,
                                  feature_loss_every=FEATURE_LOSS_EVERY),
        ),
        optimizers=refinement_optimizers(),
        # Training ends when refinement does; ns-viewer --load-config inspects the result afterwards.
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15, quit_on_train_completion=True),
        vis="viewer",
    )


ff3r_method = MethodSpecification(
    config=ff3r_trainer_config("ff3r", SHIPPED_NETWORK, refine_steps=GPU_REFINE_STEPS),
    description="FF3R: feedforward Gaussians, cameras, depth and semantic features, then splatfacto-grade refinement.",
)
