"""``ns-train ff3r-large``: the full-size network (VGGT-1B-sized geometry encoder) for users who bring weights.

Pure wiring. Needs ``--pipeline.model.network.weights PATH`` (an FF3R checkpoint of this architecture) and a GPU.
"""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.reconstruct import NetworkSettings
from ff3r_ns.method_configs.ff3r import GPU_REFINE_STEPS, ff3r_trainer_config

LARGE_NETWORK = NetworkSettings(architecture=FF3RConfig.vggt_1b(), image_size=518, voxel_size=0.002)

ff3r_large_method = MethodSpecification(
    config=ff3r_trainer_config("ff3r-large", LARGE_NETWORK, refine_steps=GPU_REFINE_STEPS),
    description="FF3R with the full-size (VGGT-1B-sized) network; bring weights with --pipeline.model.network.weights.",
)
