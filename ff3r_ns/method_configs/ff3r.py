"""``ns-train ff3r``: the full-size FF3R network (VGGT-1B-sized geometry encoder).

Pure wiring. Needs weights: ``--pipeline.model.network.weights PATH``.
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.plugins.types import MethodSpecification

from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.reconstruct import NetworkSettings
from ff3r_ns.nerfstudio.datamanager import FF3RDataManagerConfig
from ff3r_ns.nerfstudio.model import FF3RModelConfig
from ff3r_ns.nerfstudio.pipeline import FF3RPipelineConfig
from ff3r_ns.nerfstudio.trainer import FF3RTrainerConfig


def _adam(lr: float) -> dict:
    return {"optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": None}


def refinement_optimizers() -> dict:
    """Per-parameter Adam settings for refining predicted Gaussians (splatfacto's learning rates; the means'
    rate decays over 1000 steps, independent of ``--max-num-iterations``, which users change on the CLI)."""
    return {
        "means": {
            "optimizer": AdamOptimizerConfig(lr=1.6e-4, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=1.6e-6, max_steps=1000),
        },
        "features_dc": _adam(0.0025),
        "features_rest": _adam(0.0025 / 20),
        "opacities": _adam(0.05),
        "scales": _adam(0.005),
        "quats": _adam(0.001),
        "sem_features": _adam(0.0025),
    }


def ff3r_trainer_config(method_name: str, network: NetworkSettings, refine_steps: int) -> FF3RTrainerConfig:
    """The trainer config shared by every ff3r variant."""
    return FF3RTrainerConfig(
        method_name=method_name,
        steps_per_eval_image=100,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=100_000,
        max_num_iterations=refine_steps,
        mixed_precision=False,
        pipeline=FF3RPipelineConfig(
            datamanager=FF3RDataManagerConfig(),
            model=FF3RModelConfig(network=network),
        ),
        optimizers=refinement_optimizers(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


ff3r_method = MethodSpecification(
    config=ff3r_trainer_config(
        "ff3r", NetworkSettings(architecture=FF3RConfig.vggt_1b(), image_size=518, voxel_size=0.002), refine_steps=500
    ),
    description="FF3R: feedforward Gaussians, cameras, depth and semantic features from unposed images (full size).",
)
