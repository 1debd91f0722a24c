"""nerfstudio's trainer, made to accept ``--max-num-iterations 0`` (pure feedforward, no refinement).

With zero iterations nerfstudio 1.1.5 still saves the checkpoint, then its local writer fails with
``KeyError: 'step'`` (no step was ever logged) and then divides by the zero iteration count: the run is
complete but exits non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils import writer


@dataclass
class FF3RTrainerConfig(TrainerConfig):
    """nerfstudio's TrainerConfig; ``max_num_iterations`` counts refinement steps after the feedforward pass."""

    _target: Type = field(default_factory=lambda: FF3RTrainer)


class FF3RTrainer(Trainer):
    def _after_train(self) -> None:
        writer.GLOBAL_BUFFER.setdefault("step", self.step)
        writer.GLOBAL_BUFFER.setdefault("steps_per_log", self.config.logging.steps_per_log)
        if not writer.GLOBAL_BUFFER.get("max_iter"):
            writer.GLOBAL_BUFFER["max_iter"] = 1
        super()._after_train()
