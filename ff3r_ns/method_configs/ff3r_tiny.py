"""``ns-train ff3r-tiny``: a network small enough for a CPU, derived from ``ff3r``."""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from ff3r_ns.core.checkpoint import SHIPPED_TINY_WEIGHTS
from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.reconstruct import NetworkSettings
from ff3r_ns.method_configs.ff3r import ff3r_trainer_config

# The shipped weights (trained on generated rooms, see the README); --pipeline.model.network.weights overrides.
TINY_NETWORK = NetworkSettings(
    architecture=FF3RConfig.tiny(), image_size=84, weights=SHIPPED_TINY_WEIGHTS, voxel_size=0.011  # ~0.9 / 84 px
)

ff3r_tiny_method = MethodSpecification(
    # Refinement renders on the CPU (tens of seconds per step at 128 px): pure feedforward by default.
    config=ff3r_trainer_config("ff3r-tiny", TINY_NETWORK, refine_steps=0),
    description="FF3R with a tiny network that runs on a CPU (tests, demos).",
)
