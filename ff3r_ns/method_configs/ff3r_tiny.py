"""``ns-train ff3r-tiny``: the shipped network with a short refinement, sized for a CPU."""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from ff3r_ns.method_configs.ff3r import CPU_REFINE_STEPS, SHIPPED_NETWORK, ff3r_trainer_config
from ff3r_ns.nerfstudio.schedule import SPLATFACTO_STEPS

TINY_NETWORK = SHIPPED_NETWORK

ff3r_tiny_method = MethodSpecification(
    # A short budget takes the first steps of splatfacto's 30k schedule (no compression) with the trainer's
    # short-run learning rates: on a CPU that is both faster (densification has not started) and better than the
    # schedule squeezed into the budget.
    config=ff3r_trainer_config("ff3r-tiny", TINY_NETWORK, refine_steps=CPU_REFINE_STEPS, cpu_refine_steps=None,
                               min_schedule_steps=SPLATFACTO_STEPS, gpu_refinement=False),
    description="FF3R with the shipped network and a short refinement that fits a CPU (tests, demos).",
)
